//! `Idempotency-Key` on mutating routes, black-box over HTTP (claims seeded through the
//! server's own database handle where timing must be deterministic), on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::Utc;
use common::{Backend, Resp, TestServer, blog_schema, signup};
use ferrobase_server::access::Principal;
use ferrobase_server::db::{ColType, DbError, FirstWriteState, Param};
use ferrobase_server::idempotency::{self, Claim, Key, Ticket};
use reqwest::Method;
use serde_json::{Value, json};

on_both!(
    a_retry_replays_the_first_answer,
    another_request_with_the_key_is_422,
    key_order_and_whitespace_are_the_same_body,
    keys_are_scoped_to_the_caller,
    exempt_routes_and_reads_ignore_the_header,
    concurrent_retries_create_one_record,
    a_running_claim_is_409,
    the_claim_commits_with_the_write_or_not_at_all,
    an_abandoned_claim_is_taken_over_after_its_lease,
    refusals_and_server_errors_are_not_stored,
    client_errors_and_conflicts_are_replayed,
    patch_delete_and_batch_are_idempotent,
    malformed_keys_are_400,
    pruning_removes_old_keys,
    stored_answers_hold_no_readable_secrets,
);
on_both_backends!(
    rate_limited_answers_are_not_stored,
    uploads_are_idempotent_without_being_buffered,
    keys_survive_a_restart
);

/// A client that hangs up mid-request does not cancel it: the answer is stored and the retry
/// replays it. PostgreSQL only, where the request can be held deterministically: a
/// transaction that inserted the same record id makes the request's INSERT wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_still_completes_and_is_kept() {
    let Some(s) = TestServer::start(Backend::Postgres).await else {
        return;
    };
    s.apply(blog_schema()).await;
    let id = uuid::Uuid::now_v7().to_string();
    let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = {
        let (db, id) = (s.state.db.clone(), id.clone());
        tokio::spawn(async move {
            db.write(move |mut c| {
                Box::pin(async move {
                    c.execute(
                        "INSERT INTO c_posts (id, created_at, updated_at, title) VALUES ($1, $2, $2, 'held')",
                        &[Param::Text(id), Param::Time(Utc::now())],
                    )
                    .await?;
                    let _ = held_tx.send(());
                    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
                    // Rolled back: the request's own insert then goes through.
                    Err::<(), _>(ferrobase_server::db::DbError::Aborted)
                })
            })
            .await
        })
    };
    held_rx.await.unwrap();
    let key = new_key();
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let gave_up = impatient
        .post(format!("{}{POSTS}", s.base))
        .header("idempotency-key", &key)
        .json(&json!({"id": id, "title": "mine"}))
        .send()
        .await;
    assert!(gave_up.is_err(), "the request should still be waiting");
    drop(impatient);
    assert!(holder.await.unwrap().is_err());
    // The request finishes on its own; the retry sees it running, then its answer.
    let mut answer = None;
    for _ in 0..50 {
        let r = post_key(&s, None, &key, json!({"id": id, "title": "mine"})).await;
        if r.status == 409 {
            r.problem(409, "idempotency_in_progress");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        }
        answer = Some(r);
        break;
    }
    let r = answer.expect("the abandoned request never finished");
    assert!(replayed(&r), "the retry did not run it again: {}", r.body);
    assert_eq!(r.expect(201)["title"], "mine");
    assert_eq!(count(&s, "posts").await, 1);
    s.stop().await;
}

/// The 50 racing retries again on SQLite with `synchronous = full`: every write then goes
/// through the writer thread, so requests interleave between claim and completion (with
/// `normal` a lone write commits inline and the winner usually finishes before the others
/// claim, so they all replay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_through_group_commit() {
    let s = TestServer::start_with(Backend::Sqlite, |c| {
        c.database.synchronous = "full".into();
    })
    .await
    .unwrap();
    let in_flight = concurrent_retries(&s).await;
    assert!(in_flight > 0, "the race was not exercised");
    s.stop().await;
}

const POSTS: &str = "/v1/collections/posts/records";

/// A request with a raw body (`None`: no body) that may answer 500.
async fn send(
    s: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Resp {
    let mut req = s.client.request(method, format!("{}{path}", s.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Resp {
        status,
        body,
        headers,
    }
}

async fn post_key(s: &TestServer, token: Option<&str>, key: &str, body: Value) -> Resp {
    s.request_with(
        Method::POST,
        POSTS,
        token,
        Some(body),
        &[("idempotency-key", key)],
    )
    .await
}

fn replayed(r: &Resp) -> bool {
    match r.headers.get("idempotent-replayed") {
        None => false,
        Some(v) => {
            assert_eq!(v, "true");
            true
        }
    }
}

async fn count(s: &TestServer, collection: &str) -> i64 {
    let token = s.admin().await;
    let r = s
        .get(
            &format!("/v1/collections/{collection}/records?count=true&limit=1"),
            Some(&token),
        )
        .await;
    r.expect(200)["total"].as_i64().unwrap()
}

async fn idem_rows(s: &TestServer) -> i64 {
    s.state
        .db
        .read(|mut c| {
            Box::pin(async move {
                let r = c
                    .fetch_one(
                        "SELECT CAST(count(*) AS BIGINT) FROM _fb_idempotency",
                        &[],
                        &[ColType::Int],
                    )
                    .await?;
                Ok::<_, ferrobase_server::db::DbError>(r.and_then(|r| r[0].as_i64()).unwrap())
            })
        })
        .await
        .unwrap()
}

fn new_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The anonymous caller's derivation of `key` and the fingerprint of `POST posts` with `body`.
fn anon_post(key: &str, body: &str) -> (Key, String) {
    let k = Key::new(&idempotency::scope(&Principal::Anonymous), key).unwrap();
    let fp = k.fingerprint(
        "POST",
        POSTS,
        None,
        idempotency::RequestBody::Bytes(body.as_bytes()),
    );
    (k, fp)
}

async fn a_retry_replays_the_first_answer(s: &TestServer) {
    s.apply(blog_schema()).await;
    let key = new_key();
    let first = post_key(s, None, &key, json!({"title": "Hello"})).await;
    let rec = first.expect(201).clone();
    assert!(!replayed(&first), "the first answer is not a replay");
    let again = post_key(s, None, &key, json!({"title": "Hello"})).await;
    assert_eq!(again.expect(201), &rec, "same status and body");
    assert!(replayed(&again));
    assert_eq!(again.headers["etag"], first.headers["etag"]);
    assert_eq!(again.headers["content-type"], "application/json");
    assert_ne!(
        again.headers["x-request-id"], first.headers["x-request-id"],
        "each attempt keeps its own request id"
    );
    assert_eq!(count(s, "posts").await, 1, "no second effect");
    // Without a key, the same body is a second record.
    s.post(POSTS, None, json!({"title": "Hello"}))
        .await
        .expect(201);
    assert_eq!(count(s, "posts").await, 2);
}

async fn another_request_with_the_key_is_422(s: &TestServer) {
    s.apply(blog_schema()).await;
    let key = new_key();
    post_key(s, None, &key, json!({"title": "One"}))
        .await
        .expect(201);
    let r = post_key(s, None, &key, json!({"title": "Two"})).await;
    r.problem(422, "idempotency_key_reused");
    assert_eq!(r.body["parameter"], "Idempotency-Key");
    // Another path or method with the key is another request too.
    let r = s
        .request_with(
            Method::POST,
            "/v1/collections/authors/records",
            Some(&s.admin().await),
            Some(json!({"title": "One"})),
            &[("idempotency-key", &key)],
        )
        .await;
    // The admin is another scope: there the key is fresh (and the body invalid for authors).
    r.problem(422, "validation_failed");
    let r = s
        .request_with(
            Method::POST,
            &format!("{POSTS}?x=1"),
            None,
            Some(json!({"title": "One"})),
            &[("idempotency-key", &key)],
        )
        .await;
    r.problem(422, "idempotency_key_reused");
    assert_eq!(count(s, "posts").await, 1);
}

async fn key_order_and_whitespace_are_the_same_body(s: &TestServer) {
    s.apply(blog_schema()).await;
    let key = new_key();
    let first = send(
        s,
        Method::POST,
        POSTS,
        None,
        Some(r#"{"title":"Same","views":3,"meta":{"a":1,"b":[1,2]}}"#),
        &[("idempotency-key", &key)],
    )
    .await;
    let rec = first.expect(201).clone();
    let again = send(
        s,
        Method::POST,
        POSTS,
        None,
        Some("{\n  \"meta\" : { \"b\" : [ 1, 2 ], \"a\" : 1 },\n  \"views\": 3,\n  \"title\": \"Same\"\n}\n"),
        &[("idempotency-key", &key)],
    )
    .await;
    assert_eq!(again.expect(201), &rec);
    assert!(replayed(&again));
    // Array order is part of the value.
    let other = send(
        s,
        Method::POST,
        POSTS,
        None,
        Some(r#"{"title":"Same","views":3,"meta":{"a":1,"b":[2,1]}}"#),
        &[("idempotency-key", &key)],
    )
    .await;
    other.problem(422, "idempotency_key_reused");
    assert_eq!(count(s, "posts").await, 1);
}

async fn keys_are_scoped_to_the_caller(s: &TestServer) {
    s.apply(blog_schema()).await;
    let (_, alice, _) = signup(s, "alice@example.com").await;
    let (_, bob, _) = signup(s, "bob@example.com").await;
    let admin = s.admin().await;
    let api_key = s
        .post(
            "/v1/admin/api-keys",
            Some(&admin),
            json!({"name": "ci", "scopes": ["records:write", "records:read"]}),
        )
        .await
        .expect(201)["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = new_key();
    let body = json!({"title": "Mine"});
    let mut ids = std::collections::BTreeSet::new();
    for token in [Some(&alice), Some(&bob), Some(&admin), Some(&api_key), None] {
        let r = post_key(s, token.map(String::as_str), &key, body.clone()).await;
        assert!(!replayed(&r), "another caller's key is not this caller's");
        ids.insert(r.expect(201)["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 5, "each caller ran the request itself");
    // Each caller's retry replays that caller's own answer.
    let r = post_key(s, Some(&bob), &key, body.clone()).await;
    assert!(replayed(&r));
    assert!(ids.contains(r.expect(201)["id"].as_str().unwrap()));
    // Anonymous callers share one scope: a second anonymous client with the key gets the
    // first one's answer (another client, so nothing in common but the key).
    let other_client = reqwest::Client::new();
    let r = other_client
        .post(format!("{}{POSTS}", s.base))
        .header("idempotency-key", &key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(count(s, "posts").await, 5);
}

async fn exempt_routes_and_reads_ignore_the_header(s: &TestServer) {
    let (_, _, refresh) = signup(s, "carol@example.com").await;
    let key = new_key();
    let creds = json!({"email": "carol@example.com", "password": "a long password"});
    let headers = [("idempotency-key", key.as_str())];
    let a = s
        .request_with(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(creds.clone()),
            &headers,
        )
        .await;
    let b = s
        .request_with(Method::POST, "/v1/auth/login", None, Some(creds), &headers)
        .await;
    assert!(!replayed(&a) && !replayed(&b));
    assert_ne!(
        a.expect(200)["refresh_token"],
        b.expect(200)["refresh_token"],
        "each sign-in ran"
    );
    // Refresh: a replay would hand out the same pair again; instead the spent token is refused.
    let body = json!({"refresh_token": refresh});
    let first = s
        .request_with(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(body.clone()),
            &headers,
        )
        .await;
    first.expect(200);
    let again = s
        .request_with(Method::POST, "/v1/auth/refresh", None, Some(body), &headers)
        .await;
    assert!(!replayed(&again));
    assert_eq!(again.status, 401, "{}", again.body);
    // Admin sign-in too, even with a malformed key.
    s.admin().await;
    let admin_creds = json!({"email": "owner@example.com", "password": "correct horse battery"});
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let r = s
            .request_with(
                Method::POST,
                "/v1/admin/auth/login",
                None,
                Some(admin_creds.clone()),
                &[("idempotency-key", "not a valid key")],
            )
            .await;
        assert!(!replayed(&r));
        tokens.push(r.expect(200)["token"].clone());
    }
    assert_ne!(tokens[0], tokens[1]);
    // Reads ignore the header, malformed or not.
    s.apply(blog_schema()).await;
    let r = s
        .request_with(
            Method::GET,
            POSTS,
            None,
            None,
            &[("idempotency-key", "not a valid key")],
        )
        .await;
    r.expect(200);
    assert_eq!(idem_rows(s).await, 0, "nothing was claimed");
}

async fn concurrent_retries_create_one_record(s: &TestServer) {
    concurrent_retries(s).await;
}

/// 50 identical requests with one key at once: one runs, the rest replay it or are told it
/// is in flight. The number told so.
async fn concurrent_retries(s: &TestServer) -> usize {
    s.apply(blog_schema()).await;
    let key = new_key();
    // Open the connections first, then release all 50 requests at once: they race for real
    // instead of queueing behind connection set-up.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let warm: Vec<_> = (0..50)
        .map(|_| {
            let (client, base) = (client.clone(), s.base.clone());
            tokio::spawn(async move { client.get(format!("{base}/v1/health")).send().await })
        })
        .collect();
    for w in warm {
        w.await.unwrap().unwrap();
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (client, base, key) = (client.clone(), s.base.clone(), key.clone());
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let r = client
                .post(format!("{base}{POSTS}"))
                .header("idempotency-key", key)
                .json(&json!({"title": "Once"}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let replay = r.headers().contains_key("idempotent-replayed");
            let retry_after = r.headers().contains_key("retry-after");
            let body: Value = r.json().await.unwrap();
            (status, replay, retry_after, body)
        }));
    }
    let mut created = Vec::new();
    let mut originals = 0;
    let mut in_flight = 0;
    for t in tasks {
        let (status, replay, retry_after, body) = t.await.unwrap();
        match status {
            201 => {
                if !replay {
                    originals += 1;
                }
                created.push(body["id"].as_str().unwrap().to_owned());
            }
            409 => {
                assert_eq!(body["code"], "idempotency_in_progress", "{body}");
                assert!(retry_after, "a 409 in progress says when to retry");
                in_flight += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    eprintln!("{} created/replayed, {in_flight} in flight", created.len());
    assert_eq!(originals, 1, "exactly one request ran");
    assert!(created.iter().all(|id| *id == created[0]), "{created:?}");
    assert_eq!(created.len() + in_flight, 50);
    assert_eq!(count(s, "posts").await, 1);
    assert_eq!(idem_rows(s).await, 1);
    let r = post_key(s, None, &key, json!({"title": "Once"})).await;
    assert!(replayed(&r));
    assert_eq!(r.expect(201)["id"].as_str().unwrap(), created[0]);
    in_flight
}

async fn a_running_claim_is_409(s: &TestServer) {
    s.apply(blog_schema()).await;
    let key = new_key();
    let body = r#"{"title":"Busy"}"#;
    let (k, fp) = anon_post(&key, body);
    // A claim in the table: another replica's request whose write committed and runs on.
    let ticket = Ticket::new(&k);
    assert!(
        s.state
            .idempotency
            .table()
            .claim_alone(&ticket, &fp, Utc::now())
            .await
            .unwrap()
    );
    let headers = [("idempotency-key", key.as_str())];
    let r = send(s, Method::POST, POSTS, None, Some(body), &headers).await;
    r.problem(409, "idempotency_in_progress");
    assert_eq!(r.headers["retry-after"], "1");
    // A different body is refused as a reuse even while the first runs.
    let other = r#"{"title":"x"}"#;
    let r = send(s, Method::POST, POSTS, None, Some(other), &headers).await;
    r.problem(422, "idempotency_key_reused");
    assert_eq!(count(s, "posts").await, 0);
    // Once the claim is given up, the retry runs.
    s.state.idempotency.table().release(&ticket).await.unwrap();
    // A request running on this process answers from memory, before the table is read: 409
    // while it runs, 422 for another body, and its answer once it has one (sent, not stored).
    s.state.idempotency.begin(&k, &fp).unwrap();
    send(s, Method::POST, POSTS, None, Some(body), &headers)
        .await
        .problem(409, "idempotency_in_progress");
    send(s, Method::POST, POSTS, None, Some(other), &headers)
        .await
        .problem(422, "idempotency_key_reused");
    let sent = idempotency::Stored {
        status: 201,
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        body: br#"{"sent":"not yet stored"}"#.to_vec(),
    };
    s.state.idempotency.keep(&k, std::sync::Arc::new(sent));
    let r = send(s, Method::POST, POSTS, None, Some(body), &headers).await;
    assert!(replayed(&r));
    assert_eq!(r.expect(201), &json!({"sent": "not yet stored"}));
    send(s, Method::POST, POSTS, None, Some(other), &headers)
        .await
        .problem(422, "idempotency_key_reused");
    s.state.idempotency.end(&k);
    let r = send(s, Method::POST, POSTS, None, Some(body), &headers).await;
    r.expect(201);
    assert!(!replayed(&r));
    assert_eq!(count(s, "posts").await, 1);
    assert!(replayed(
        &send(s, Method::POST, POSTS, None, Some(body), &headers).await
    ));
}

/// The claim is the first statement of the request's first write: it commits with the write
/// or not at all, and a key another request holds rolls the write back.
async fn the_claim_commits_with_the_write_or_not_at_all(s: &TestServer) {
    s.apply(blog_schema()).await;
    let body = r#"{"title":"Atomic"}"#;
    let insert = |db: ferrobase_server::db::Db, title: &'static str, fail: bool| async move {
        db.write(move |mut c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO c_posts (id, created_at, updated_at, title) VALUES ($1, $2, $2, $3)",
                    &[
                        Param::Text(uuid::Uuid::now_v7().to_string()),
                        Param::Time(Utc::now()),
                        Param::Text(title.into()),
                    ],
                )
                .await?;
                if fail {
                    return Err(DbError::Aborted);
                }
                Ok(())
            })
        })
        .await
    };
    // A write that fails takes its claim with it; the next write in the scope claims.
    let (k, fp) = anon_post(&new_key(), body);
    let ticket = Ticket::new(&k);
    let claim = s
        .state
        .idempotency
        .table()
        .claim_statement(&ticket, &fp, Utc::now());
    let db = s.state.db.clone();
    claim
        .scope(async {
            assert!(insert(db.clone(), "rolled back", true).await.is_err());
            assert_eq!(claim.state(), FirstWriteState::NotYet);
            assert_eq!(idem_rows(s).await, 0);
            insert(db.clone(), "first", false).await.unwrap();
            assert_eq!(claim.state(), FirstWriteState::Committed);
            // Later writes in the scope run alone.
            insert(db.clone(), "second", false).await.unwrap();
        })
        .await;
    assert_eq!(idem_rows(s).await, 1);
    assert_eq!(count(s, "posts").await, 2);
    assert!(matches!(
        s.state
            .idempotency
            .table()
            .lookup(&k, &fp, Utc::now())
            .await
            .unwrap(),
        Claim::InFlight
    ));
    // Another request with the key: its write is refused and leaves nothing.
    let rival = s
        .state
        .idempotency
        .table()
        .claim_statement(&Ticket::new(&k), &fp, Utc::now());
    let err = rival
        .scope(insert(s.state.db.clone(), "rival", false))
        .await
        .unwrap_err();
    assert!(matches!(err, DbError::Preempted), "{err}");
    assert_eq!(rival.state(), FirstWriteState::Refused);
    assert_eq!(count(s, "posts").await, 2);
    // `write_one` jobs claim the same way.
    let (k2, fp2) = anon_post(&new_key(), body);
    let one = s
        .state
        .idempotency
        .table()
        .claim_statement(&Ticket::new(&k2), &fp2, Utc::now());
    one.scope(s.state.db.write_one(|mut c| {
        Box::pin(async move {
            c.execute(
                "INSERT INTO c_posts (id, created_at, updated_at, title) VALUES ($1, $2, $2, 'one')",
                &[
                    Param::Text(uuid::Uuid::now_v7().to_string()),
                    Param::Time(Utc::now()),
                ],
            )
            .await
        })
    }))
    .await
    .unwrap();
    assert_eq!(one.state(), FirstWriteState::Committed);
    assert_eq!(idem_rows(s).await, 2);
    assert_eq!(count(s, "posts").await, 3);
    // The stored answer fills the claim; a completion by a ticket that holds nothing stores
    // nothing.
    let kept = idempotency::Stored {
        status: 201,
        headers: vec![],
        body: b"{}".to_vec(),
    };
    let stranger =
        idempotency::Completion::new(&k, &Ticket::new(&k), &fp, Utc::now(), &kept).unwrap();
    let mine = idempotency::Completion::new(&k, &ticket, &fp, Utc::now(), &kept).unwrap();
    assert_eq!(
        s.state
            .idempotency
            .table()
            .store(vec![stranger, mine])
            .await
            .unwrap(),
        1
    );
    assert!(matches!(
        s.state.idempotency.table().lookup(&k, &fp, Utc::now())
            .await
            .unwrap(),
        Claim::Replay(r) if r == kept
    ));
}

/// Two replicas race for one key (PostgreSQL): the other's claim is in a transaction that has
/// not committed when this request looks, so the request runs; its claim waits for that
/// transaction and then matches no row, its write is rolled back, and it answers 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_lost_at_commit_rolls_the_write_back() {
    let Some(s) = TestServer::start(Backend::Postgres).await else {
        return;
    };
    s.apply(blog_schema()).await;
    let key = new_key();
    let body = r#"{"title":"Raced"}"#;
    let (k, fp) = anon_post(&key, body);
    let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = {
        let db = s.state.db.clone();
        let claim = s
            .state
            .idempotency
            .table()
            .claim_statement(&Ticket::new(&k), &fp, Utc::now());
        tokio::spawn(async move {
            claim
                .scope(db.write(move |_c| {
                    Box::pin(async move {
                        let _ = held_tx.send(());
                        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
                        Ok::<(), DbError>(())
                    })
                }))
                .await
                .unwrap();
            claim.state()
        })
    };
    held_rx.await.unwrap();
    let r = send(
        &s,
        Method::POST,
        POSTS,
        None,
        Some(body),
        &[("idempotency-key", key.as_str())],
    )
    .await;
    r.problem(409, "idempotency_in_progress");
    assert_eq!(holder.await.unwrap(), FirstWriteState::Committed);
    assert_eq!(
        count(&s, "posts").await,
        0,
        "the loser's create was rolled back"
    );
    assert_eq!(idem_rows(&s).await, 1);
    s.stop().await;
}

async fn an_abandoned_claim_is_taken_over_after_its_lease(s: &TestServer) {
    s.apply(blog_schema()).await;
    let body = r#"{"title":"Crashed"}"#;
    // A claim 30 s old still holds its lease (60 s).
    let key = new_key();
    let (k, fp) = anon_post(&key, body);
    let recent = Utc::now() - chrono::TimeDelta::seconds(30);
    assert!(
        s.state
            .idempotency
            .table()
            .claim_alone(&Ticket::new(&k), &fp, recent)
            .await
            .unwrap()
    );
    let headers = [("idempotency-key", key.as_str())];
    send(s, Method::POST, POSTS, None, Some(body), &headers)
        .await
        .problem(409, "idempotency_in_progress");
    // One left 2 minutes ago by a process that died: the retry takes it over and runs.
    let key = new_key();
    let (k, fp) = anon_post(&key, body);
    let old = Utc::now() - chrono::TimeDelta::seconds(120);
    let dead = Ticket::new(&k);
    assert!(
        s.state
            .idempotency
            .table()
            .claim_alone(&dead, &fp, old)
            .await
            .unwrap()
    );
    let headers = [("idempotency-key", key.as_str())];
    let r = send(s, Method::POST, POSTS, None, Some(body), &headers).await;
    let rec = r.expect(201).clone();
    assert!(!replayed(&r));
    wait_stored(s).await;
    // The dead process's ticket no longer matches: it can neither store nor release.
    let stale = idempotency::Stored {
        status: 500,
        headers: vec![],
        body: b"stale".to_vec(),
    };
    assert_eq!(store_answer(s, &k, &dead, &fp, Utc::now(), &stale).await, 0);
    s.state.idempotency.table().release(&dead).await.unwrap();
    let r = send(s, Method::POST, POSTS, None, Some(body), &headers).await;
    assert!(replayed(&r));
    assert_eq!(r.expect(201), &rec);
    // While the request that took a claim over runs, the old holder can neither store an
    // answer nor give the claim up.
    let key = new_key();
    let (k, fp) = anon_post(&key, body);
    let dead = Ticket::new(&k);
    let live = Ticket::new(&k);
    assert!(
        s.state
            .idempotency
            .table()
            .claim_alone(&dead, &fp, old)
            .await
            .unwrap()
    );
    assert!(
        s.state
            .idempotency
            .table()
            .claim_alone(&live, &fp, Utc::now())
            .await
            .unwrap(),
        "an expired lease is taken over"
    );
    assert_eq!(store_answer(s, &k, &dead, &fp, Utc::now(), &stale).await, 0);
    s.state.idempotency.table().release(&dead).await.unwrap();
    assert!(
        !s.state
            .idempotency
            .table()
            .renew(&dead, Utc::now())
            .await
            .unwrap()
    );
    assert!(
        s.state
            .idempotency
            .table()
            .renew(&live, Utc::now())
            .await
            .unwrap()
    );
    let headers = [("idempotency-key", key.as_str())];
    send(s, Method::POST, POSTS, None, Some(body), &headers)
        .await
        .problem(409, "idempotency_in_progress");
    let kept = idempotency::Stored {
        status: 201,
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        body: br#"{"kept":true}"#.to_vec(),
    };
    assert_eq!(store_answer(s, &k, &live, &fp, Utc::now(), &kept).await, 1);
    let r = send(s, Method::POST, POSTS, None, Some(body), &headers).await;
    assert!(replayed(&r));
    assert_eq!(r.expect(201), &json!({"kept": true}));
    // An abandoned claim with another body is not taken over: that is a reuse.
    let key = new_key();
    let (k, fp) = anon_post(&key, body);
    s.state
        .idempotency
        .table()
        .claim_alone(&Ticket::new(&k), &fp, old)
        .await
        .unwrap();
    send(
        s,
        Method::POST,
        POSTS,
        None,
        Some(r#"{"title":"other"}"#),
        &[("idempotency-key", key.as_str())],
    )
    .await
    .problem(422, "idempotency_key_reused");
    assert_eq!(count(s, "posts").await, 1);
    // A request that writes nothing (refused by validation) takes an abandoned claim over with
    // its answer, and a retry gets that answer.
    let key = new_key();
    let invalid = r#"{"title":"t","no_such_field":1}"#;
    let (k, fp) = anon_post(&key, invalid);
    s.state
        .idempotency
        .table()
        .claim_alone(&Ticket::new(&k), &fp, old)
        .await
        .unwrap();
    let headers = [("idempotency-key", key.as_str())];
    let first = send(s, Method::POST, POSTS, None, Some(invalid), &headers).await;
    assert!(!replayed(&first));
    let problem = first.problem(422, "validation_failed").clone();
    wait_stored(s).await;
    let again = send(s, Method::POST, POSTS, None, Some(invalid), &headers).await;
    assert!(replayed(&again), "the answer took the abandoned row over");
    assert_eq!(again.problem(422, "validation_failed"), &problem);
    assert_eq!(count(s, "posts").await, 1);
}

/// Stores `answer` for the request holding `ticket` (key `k`, fingerprint `fp`, begun `at`),
/// as the server's store task does; the number of rows that took it.
async fn store_answer(
    s: &TestServer,
    k: &Key,
    ticket: &Ticket,
    fp: &str,
    at: chrono::DateTime<Utc>,
    answer: &idempotency::Stored,
) -> u64 {
    let done = idempotency::Completion::new(k, ticket, fp, at, answer).unwrap();
    s.state.idempotency.table().store(vec![done]).await.unwrap()
}

/// Waits until every answer sent is stored.
async fn wait_stored(s: &TestServer) {
    for _ in 0..200 {
        if s.state.idempotency.is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("answers were never stored");
}

async fn refusals_and_server_errors_are_not_stored(s: &TestServer) {
    let mut schema = blog_schema();
    // Creating posts needs a signed-in user whose email is verified: anonymous → 401, an
    // unverified user → 403.
    schema[1]["rules"]["create"] = json!("@auth.verified = true");
    s.apply(schema).await;
    let (_, dave, _) = signup(s, "dave@example.com").await;
    let key = new_key();
    post_key(s, None, &key, json!({"title": "t"}))
        .await
        .problem(401, "unauthenticated");
    post_key(s, Some(&dave), &key, json!({"title": "t"}))
        .await
        .problem(403, "forbidden");
    assert_eq!(idem_rows(s).await, 0, "401 and 403 released their claims");
    // Access granted: the same key and body now run, instead of replaying the refusal.
    s.apply(blog_schema()).await;
    let r = post_key(s, Some(&dave), &key, json!({"title": "t"})).await;
    r.expect(201);
    assert!(!replayed(&r));
    let r = post_key(s, None, &key, json!({"title": "t"})).await;
    r.expect(201);
    assert!(!replayed(&r));
    assert_eq!(idem_rows(s).await, 2);

    // A server error (the table vanished behind the server's back) is not kept either.
    s.state
        .db
        .write(|mut c| Box::pin(async move { c.execute_script("DROP TABLE c_posts").await }))
        .await
        .unwrap();
    let key = new_key();
    let headers = [("idempotency-key", key.as_str())];
    let r = send(
        s,
        Method::POST,
        POSTS,
        None,
        Some(r#"{"title":"t"}"#),
        &headers,
    )
    .await;
    r.problem(500, "internal");
    assert_eq!(idem_rows(s).await, 2, "the 500 released its claim");
    let r = send(
        s,
        Method::POST,
        POSTS,
        None,
        Some(r#"{"title":"t"}"#),
        &headers,
    )
    .await;
    assert!(!replayed(&r), "the retry ran again");
    r.problem(500, "internal");
}

async fn rate_limited_answers_are_not_stored(backend: Backend) {
    let Some(s) = TestServer::start_with(backend, |c| {
        c.auth.rate_limits.enabled = true;
        c.auth.rate_limits.signup = "1/min".into();
    })
    .await
    else {
        return;
    };
    signup(&s, "first@example.com").await;
    let key = new_key();
    let r = s
        .request_with(
            Method::POST,
            "/v1/auth/signup",
            None,
            Some(json!({"email": "second@example.com", "password": "a long password"})),
            &[("idempotency-key", &key)],
        )
        .await;
    r.problem(429, "rate_limited");
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(idem_rows(&s).await, 0, "the 429 released its claim");
    s.stop().await;
}

async fn client_errors_and_conflicts_are_replayed(s: &TestServer) {
    s.apply(blog_schema()).await;
    // A validation error is the request's answer: replayed, and the record is not created
    // by the retry even though the same body would still fail.
    let key = new_key();
    let first = post_key(s, None, &key, json!({"views": 1})).await;
    first.problem(422, "validation_failed");
    let again = post_key(s, None, &key, json!({"views": 1})).await;
    again.problem(422, "validation_failed");
    assert!(replayed(&again));
    assert_eq!(again.body["errors"], first.body["errors"]);
    assert_eq!(
        again.body["request_id"], first.body["request_id"],
        "the stored problem is the first one"
    );
    // A create with a client-chosen id that exists: 409 conflict, kept.
    let id = uuid::Uuid::now_v7().to_string();
    s.post(POSTS, None, json!({"id": id, "title": "a"}))
        .await
        .expect(201);
    let key = new_key();
    post_key(s, None, &key, json!({"id": id, "title": "a"}))
        .await
        .problem(409, "conflict");
    let r = post_key(s, None, &key, json!({"id": id, "title": "a"})).await;
    r.problem(409, "conflict");
    assert!(replayed(&r));
    // A body that is not JSON is fingerprinted by its bytes and its 400 replayed.
    let key = new_key();
    let headers = [("idempotency-key", key.as_str())];
    send(s, Method::POST, POSTS, None, Some("{oops"), &headers)
        .await
        .problem(400, "invalid_json");
    let r = send(s, Method::POST, POSTS, None, Some("{oops"), &headers).await;
    r.problem(400, "invalid_json");
    assert!(replayed(&r));
    send(s, Method::POST, POSTS, None, Some("{oops!"), &headers)
        .await
        .problem(422, "idempotency_key_reused");
    assert_eq!(count(s, "posts").await, 1);
}

async fn patch_delete_and_batch_are_idempotent(s: &TestServer) {
    s.apply(blog_schema()).await;
    let created = s
        .post(POSTS, None, json!({"title": "v1"}))
        .await
        .expect(201)
        .clone();
    let id = created["id"].as_str().unwrap().to_owned();
    let item = format!("{POSTS}/{id}");

    let key = new_key();
    let patch = |key: String| {
        let item = item.clone();
        async move {
            s.request_with(
                Method::PATCH,
                &item,
                None,
                Some(json!({"title": "v2"})),
                &[("idempotency-key", &key), ("if-match", "\"1\"")],
            )
            .await
        }
    };
    let first = patch(key.clone()).await;
    assert_eq!(first.expect(200)["version"], 2);
    let again = patch(key.clone()).await;
    assert!(replayed(&again), "not a 412: the retry did not run");
    assert_eq!(again.expect(200)["version"], 2);
    assert_eq!(again.headers["etag"], "\"2\"");
    assert_eq!(
        s.get(&item, None).await.expect(200)["version"],
        2,
        "updated once"
    );
    // The same key with another If-Match is another request.
    let r = s
        .request_with(
            Method::PATCH,
            &item,
            None,
            Some(json!({"title": "v2"})),
            &[("idempotency-key", &key), ("if-match", "\"2\"")],
        )
        .await;
    r.problem(422, "idempotency_key_reused");

    // Batch: two creates, retried.
    let key = new_key();
    let ops = json!({"operations": [
        {"method": "POST", "path": POSTS, "body": {"title": "b1"}},
        {"method": "POST", "path": POSTS, "body": {"title": "b2"}},
    ]});
    let headers = [("idempotency-key", key.as_str())];
    let first = s
        .request_with(Method::POST, "/v1/batch", None, Some(ops.clone()), &headers)
        .await;
    let results = first.expect(200).clone();
    let again = s
        .request_with(Method::POST, "/v1/batch", None, Some(ops), &headers)
        .await;
    assert!(replayed(&again));
    assert_eq!(again.expect(200), &results);
    assert_eq!(count(s, "posts").await, 3);

    // Delete: the retry answers 204 again, not 404.
    let key = new_key();
    let headers = [("idempotency-key", key.as_str())];
    let first = s
        .request_with(Method::DELETE, &item, None, None, &headers)
        .await;
    first.expect(204);
    let again = s
        .request_with(Method::DELETE, &item, None, None, &headers)
        .await;
    again.expect(204);
    assert!(replayed(&again));
    s.delete(&item, None).await.problem(404, "not_found");
    assert_eq!(count(s, "posts").await, 2);
}

async fn malformed_keys_are_400(s: &TestServer) {
    s.apply(blog_schema()).await;
    let too_long = "k".repeat(256);
    for bad in ["", too_long.as_str(), "with space", "tab\there"] {
        let r = s
            .request_with(
                Method::POST,
                POSTS,
                None,
                Some(json!({"title": "t"})),
                &[("idempotency-key", bad)],
            )
            .await;
        r.problem(400, "bad_request");
        assert_eq!(r.body["parameter"], "Idempotency-Key", "{bad:?}");
    }
    // Bytes outside ASCII.
    let r = s
        .client
        .post(format!("{}{POSTS}", s.base))
        .header(
            "idempotency-key",
            reqwest::header::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        )
        .json(&json!({"title": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "bad_request");
    // Sent twice.
    let r = s
        .client
        .post(format!("{}{POSTS}", s.base))
        .header("idempotency-key", "a")
        .header("idempotency-key", "b")
        .json(&json!({"title": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // 255 visible characters are fine.
    let longest: String = (0..255).map(|i| (b'!' + (i % 94) as u8) as char).collect();
    post_key(s, None, &longest, json!({"title": "t"}))
        .await
        .expect(201);
    assert_eq!(count(s, "posts").await, 1, "refused requests did not run");
}

async fn pruning_removes_old_keys(s: &TestServer) {
    s.apply(blog_schema()).await;
    let key = new_key();
    let first = post_key(s, None, &key, json!({"title": "p"})).await;
    let id = first.expect(201)["id"].clone();
    wait_stored(s).await;
    // Old rows, as if left from two days ago: more than one batch.
    let old = Utc::now() - chrono::TimeDelta::hours(48);
    let n_old = (idempotency::PRUNE_BATCH * 2 + 7) as usize;
    s.state
        .db
        .write(move |mut c| {
            Box::pin(async move {
                for i in 0..n_old {
                    c.execute(
                        "INSERT INTO _fb_idempotency (id, fingerprint, owner, created_at, lease_until, status, response) \
                         VALUES ($1, 'fp', 1, $2, $2, 201, '')",
                        &[Param::Text(format!("old-{i}")), Param::Time(old)],
                    )
                    .await?;
                }
                Ok::<_, ferrobase_server::db::DbError>(())
            })
        })
        .await
        .unwrap();
    assert_eq!(idem_rows(s).await, n_old as i64 + 1);
    let cutoff = idempotency::retention_cutoff(Utc::now());
    let deleted = s.state.idempotency.table().prune(cutoff).await.unwrap();
    assert_eq!(deleted, n_old as u64, "every old row, in several batches");
    assert_eq!(idem_rows(s).await, 1, "the fresh key stays");
    let again = post_key(s, None, &key, json!({"title": "p"})).await;
    assert!(replayed(&again));
    assert_eq!(again.expect(201)["id"], id);
    // Pruned: the key is fresh again.
    s.state
        .idempotency
        .table()
        .prune(Utc::now() + chrono::TimeDelta::seconds(1))
        .await
        .unwrap();
    assert_eq!(idem_rows(s).await, 0);
    let r = post_key(s, None, &key, json!({"title": "p"})).await;
    assert!(!replayed(&r));
    assert_ne!(r.expect(201)["id"], id);
    // A kept answer older than the retention is not replayed even before pruning reaches it.
    let key = new_key();
    let body = r#"{"title":"expired"}"#;
    let (k, fp) = anon_post(&key, body);
    let day_ago = Utc::now() - chrono::TimeDelta::hours(25);
    let ticket = Ticket::new(&k);
    assert!(
        s.state
            .idempotency
            .table()
            .claim_alone(&ticket, &fp, day_ago)
            .await
            .unwrap()
    );
    let stale = idempotency::Stored {
        status: 201,
        headers: vec![],
        body: b"{}".to_vec(),
    };
    assert_eq!(store_answer(s, &k, &ticket, &fp, day_ago, &stale).await, 1);
    let r = send(
        s,
        Method::POST,
        POSTS,
        None,
        Some(body),
        &[("idempotency-key", key.as_str())],
    )
    .await;
    assert!(!replayed(&r));
    assert_eq!(r.expect(201)["title"], "expired");
}

async fn stored_answers_hold_no_readable_secrets(s: &TestServer) {
    let key = new_key();
    let body = json!({"email": "erin@example.com", "password": "a long password"});
    let headers = [("idempotency-key", key.as_str())];
    let first = s
        .request_with(
            Method::POST,
            "/v1/auth/signup",
            None,
            Some(body.clone()),
            &headers,
        )
        .await;
    let pair = first.expect(201).clone();
    // The retry gets the same tokens back instead of 409 "email taken".
    let again = s
        .request_with(Method::POST, "/v1/auth/signup", None, Some(body), &headers)
        .await;
    assert!(replayed(&again));
    assert_eq!(again.expect(201), &pair);
    // The answer is stored right after it was sent: wait for that commit.
    let mut rows = Vec::new();
    for _ in 0..100 {
        rows = s
            .state
            .db
            .read(|mut c| {
                Box::pin(async move {
                    c.fetch(
                        "SELECT id, fingerprint, response FROM _fb_idempotency",
                        &[],
                        &[ColType::Text, ColType::Text, ColType::Text],
                    )
                    .await
                })
            })
            .await
            .unwrap();
        if rows.len() == 1 && rows[0][2].as_str().is_some() && s.state.idempotency.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(rows.len(), 1);
    assert!(rows[0][2].as_str().is_some_and(|r| r.len() > 100), "stored");
    assert!(s.state.idempotency.is_empty(), "nothing left pending");
    let row: String = rows[0]
        .iter()
        .map(|p| p.as_str().unwrap_or_default().to_owned())
        .collect();
    for secret in [
        pair["access_token"].as_str().unwrap(),
        pair["refresh_token"].as_str().unwrap(),
        key.as_str(),
        "erin@example.com",
    ] {
        assert!(!row.contains(secret), "the row holds `{secret}` in clear");
    }
    // The access token in the replay still works.
    let token = again.body["access_token"].as_str().unwrap();
    s.get("/v1/auth/me", Some(token)).await.expect(200);
}

/// Multipart creates and raw uploads, larger than the JSON body limit (4 KB here), stream to
/// storage with a key too: a retry (with a new multipart boundary, as clients make one per
/// attempt) replays, a retry naming another file is a reuse, and file tokens ignore the key.
async fn uploads_are_idempotent_without_being_buffered(backend: Backend) {
    let Some(s) = TestServer::start_with(backend, |c| {
        c.http.body_limit = "4KB".into();
        c.storage.max_file_size = "1MB".into();
    })
    .await
    else {
        return;
    };
    s.apply(json!([{
        "name": "docs",
        "fields": {
            "title": {"type": "text"},
            "files": {"type": "file", "multiple": true, "max_files": 5}
        },
        "rules": {"list": "true", "view": "true", "create": "true", "update": "true", "delete": "true"}
    }]))
    .await;
    let bytes: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let key = new_key();
    let form = || {
        reqwest::multipart::Form::new()
            .part(
                "data",
                reqwest::multipart::Part::text(r#"{"title":"m"}"#)
                    .mime_str("application/json")
                    .unwrap(),
            )
            .part(
                "files",
                reqwest::multipart::Part::bytes(bytes.clone()).file_name("a.bin"),
            )
    };
    let create = || async {
        let r = s
            .client
            .post(format!("{}/v1/collections/docs/records", s.base))
            .header("idempotency-key", &key)
            .multipart(form())
            .send()
            .await
            .unwrap();
        let replay = r.headers().contains_key("idempotent-replayed");
        (
            r.status().as_u16(),
            replay,
            r.json::<Value>().await.unwrap(),
        )
    };
    let (st, replay, first) = create().await;
    assert_eq!(st, 201, "{first}");
    assert!(!replay);
    let (st, replay, again) = create().await;
    assert_eq!(st, 201, "{again}");
    assert!(replay, "a retry with another boundary replays");
    assert_eq!(again, first);
    assert_eq!(count(&s, "docs").await, 1);

    let id = first["id"].as_str().unwrap().to_owned();
    let put = |key: String, name: &'static str| {
        let (url, bytes) = (
            format!("{}/v1/collections/docs/records/{id}/files/files", s.base),
            bytes.clone(),
        );
        let client = s.client.clone();
        async move {
            let r = client
                .put(url)
                .header("idempotency-key", key)
                .header(
                    "content-disposition",
                    format!("attachment; filename=\"{name}\""),
                )
                .header("content-type", "application/octet-stream")
                .body(bytes)
                .send()
                .await
                .unwrap();
            let replay = r.headers().contains_key("idempotent-replayed");
            (
                r.status().as_u16(),
                replay,
                r.json::<Value>().await.unwrap(),
            )
        }
    };
    let key = new_key();
    let (st, replay, up) = put(key.clone(), "b.bin").await;
    assert_eq!(st, 200, "{up}");
    assert!(!replay);
    let (st, replay, again) = put(key.clone(), "b.bin").await;
    assert_eq!(st, 200, "{again}");
    assert!(replay);
    assert_eq!(again, up);
    let (st, _, reused) = put(key.clone(), "c.bin").await;
    assert_eq!(st, 422, "{reused}");
    assert_eq!(reused["code"], "idempotency_key_reused");
    let rec = s
        .get(&format!("/v1/collections/docs/records/{id}"), None)
        .await;
    assert_eq!(
        rec.expect(200)["files"].as_array().unwrap().len(),
        2,
        "one file from the create, one from the first PUT: {}",
        rec.body
    );

    // A JSON body over the limit is still refused before anything is claimed.
    let r = s
        .request_with(
            Method::POST,
            "/v1/collections/docs/records",
            None,
            Some(json!({"title": "x".repeat(5000)})),
            &[("idempotency-key", &new_key())],
        )
        .await;
    r.problem(413, "payload_too_large");

    // File tokens ignore the key: each answer is a fresh token.
    let (_, user, _) = signup(&s, "tok@example.com").await;
    for _ in 0..2 {
        let r = s
            .request_with(
                Method::POST,
                "/v1/files/token",
                Some(&user),
                Some(json!({})),
                &[("idempotency-key", &key)],
            )
            .await;
        r.expect(200);
        assert!(!replayed(&r));
    }
    s.stop().await;
}

/// Kept answers and running claims outlive the process: after a restart on the same data a
/// retry is replayed, a claim still within its lease blocks its key, a new key runs, and
/// pruning still finds every row (on SQLite the rows' ids are read back into memory at start,
/// see `idempotency::table`).
async fn keys_survive_a_restart(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    s.apply(blog_schema()).await;
    let key = new_key();
    let first = post_key(&s, None, &key, json!({"title": "Before"})).await;
    let rec = first.expect(201).clone();
    wait_stored(&s).await;
    // A claim whose process died mid-request, its lease still running.
    let held = new_key();
    let (k, fp) = anon_post(&held, r#"{"title":"Held"}"#);
    assert!(
        s.state
            .idempotency
            .table()
            .claim_alone(&Ticket::new(&k), &fp, Utc::now())
            .await
            .unwrap()
    );
    let s = s.restart().await;
    if backend == Backend::Sqlite {
        assert_eq!(
            s.state.idempotency.table().known(),
            2,
            "both rows were read back"
        );
    }
    let again = post_key(&s, None, &key, json!({"title": "Before"})).await;
    assert!(replayed(&again));
    assert_eq!(again.expect(201), &rec);
    let r = send(
        &s,
        Method::POST,
        POSTS,
        None,
        Some(r#"{"title":"Held"}"#),
        &[("idempotency-key", held.as_str())],
    )
    .await;
    r.problem(409, "idempotency_in_progress");
    let fresh = post_key(&s, None, &new_key(), json!({"title": "After"})).await;
    assert!(!replayed(&fresh));
    fresh.expect(201);
    assert_eq!(count(&s, "posts").await, 2, "one record per key");
    wait_stored(&s).await;
    let gone = s
        .state
        .idempotency
        .table()
        .prune(Utc::now() + chrono::TimeDelta::seconds(1))
        .await
        .unwrap();
    assert_eq!(gone, 3);
    assert_eq!(idem_rows(&s).await, 0);
    if backend == Backend::Sqlite {
        assert_eq!(
            s.state.idempotency.table().known(),
            0,
            "pruned rows are forgotten"
        );
    }
    s.stop().await;
}
