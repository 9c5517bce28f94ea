//! Realtime over SSE (`/v1/realtime`) against a real server on both dialects.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::sse::{SseClient, SseEvent};
use common::{Backend, TestServer, signup};
use serde_json::{Value, json};

use common::{NOTES_VIEW as VIEW, create_note as create, notes_schema};

async fn open(s: &TestServer, topics: &str, token: Option<&str>, last: Option<&str>) -> SseClient {
    let url = format!("{}/v1/realtime?collections={topics}", s.base);
    let (c, body) = SseClient::open(&s.client, &url, token, last).await;
    assert_eq!(c.status, 200, "{body}");
    c
}

async fn ready(c: &mut SseClient) -> SseEvent {
    let e = c.expect().await;
    assert_eq!(e.event, "ready", "{e:?}");
    e
}

fn rec(e: &SseEvent) -> (&str, &str) {
    (
        e.data["op"].as_str().unwrap_or(""),
        e.data["record"]["id"].as_str().unwrap_or(""),
    )
}

async fn live_events_in_commit_order(s: &TestServer) {
    s.apply(notes_schema(VIEW)).await;
    let (alice, a_tok, _) = signup(s, "alice@example.com").await;
    let mut c = open(s, "notes", Some(&a_tok), None).await;
    let r = ready(&mut c).await;
    assert_eq!(r.data, json!({"subscriptions": ["notes"]}));
    assert!(r.id.is_some(), "ready carries the cursor as its id");
    let id = create(s, &a_tok, &alice, "one", false).await;
    s.patch(
        &format!("/v1/collections/notes/records/{id}"),
        Some(&a_tok),
        json!({"title": "two"}),
    )
    .await
    .expect(200);
    s.delete(&format!("/v1/collections/notes/records/{id}"), Some(&a_tok))
        .await
        .expect(204);
    let (e1, e2, e3) = (c.expect().await, c.expect().await, c.expect().await);
    assert_eq!(e1.event, "record");
    assert_eq!(rec(&e1), ("create", id.as_str()));
    assert_eq!(e1.data["collection"], json!("notes"));
    assert_eq!(e1.data["record"]["title"], json!("one"));
    assert_eq!(rec(&e2), ("update", id.as_str()));
    assert_eq!(e2.data["record"]["title"], json!("two"));
    assert_eq!(rec(&e3), ("delete", id.as_str()));
    assert_eq!(
        e3.data["record"],
        json!({"id": id}),
        "a delete carries only the id"
    );
    let ids: Vec<i64> = [&e1, &e2, &e3]
        .iter()
        .map(|e| e.id.as_deref().unwrap().parse().unwrap())
        .collect();
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "{ids:?}");
    assert_eq!(e1.data["seq"], json!(ids[0]));

    // A single-record topic sees only that record.
    let other = create(s, &a_tok, &alice, "x", false).await;
    let target = create(s, &a_tok, &alice, "y", false).await;
    let mut one = open(s, &format!("notes/{target}"), Some(&a_tok), None).await;
    ready(&mut one).await;
    for id in [&other, &target] {
        s.patch(
            &format!("/v1/collections/notes/records/{id}"),
            Some(&a_tok),
            json!({"title": "z"}),
        )
        .await
        .expect(200);
    }
    let e = one.expect().await;
    assert_eq!(rec(&e), ("update", target.as_str()));
    one.quiet(Duration::from_millis(300)).await;
}

async fn rules_filter_every_event(s: &TestServer) {
    s.apply(notes_schema(VIEW)).await;
    let (alice, a_tok, _) = signup(s, "amy@example.com").await;
    let (_bob, b_tok, _) = signup(s, "ben@example.com").await;
    let mut bob = open(s, "notes", Some(&b_tok), None).await;
    ready(&mut bob).await;
    let mut anon = open(s, "notes", None, None).await;
    ready(&mut anon).await;

    let private = create(s, &a_tok, &alice, "secret", false).await;
    s.patch(
        &format!("/v1/collections/notes/records/{private}"),
        Some(&a_tok),
        json!({"title": "still secret"}),
    )
    .await
    .expect(200);
    s.delete(
        &format!("/v1/collections/notes/records/{private}"),
        Some(&a_tok),
    )
    .await
    .expect(204);
    let shared = create(s, &a_tok, &alice, "hello", true).await;
    // Bob's first event is the public one: nothing of the private record reached him, not
    // even its id on deletion.
    let e = bob.expect().await;
    assert_eq!(rec(&e), ("create", shared.as_str()));
    let e = anon.expect().await;
    assert_eq!(rec(&e), ("create", shared.as_str()));

    // Made private: whoever could see it gets a delete; then its changes stop reaching them.
    s.patch(
        &format!("/v1/collections/notes/records/{shared}"),
        Some(&a_tok),
        json!({"public": false}),
    )
    .await
    .expect(200);
    for c in [&mut bob, &mut anon] {
        let e = c.expect().await;
        assert_eq!(rec(&e), ("delete", shared.as_str()));
        assert_eq!(e.data["record"], json!({"id": shared}));
    }
    s.patch(
        &format!("/v1/collections/notes/records/{shared}"),
        Some(&a_tok),
        json!({"title": "hidden edit"}),
    )
    .await
    .expect(200);
    bob.quiet(Duration::from_millis(400)).await;

    // A locked collection: 401 anonymous, 403 for a user, before any stream starts; unknown → 404.
    let url = |t: &str| format!("{}/v1/realtime?collections={t}", s.base);
    let (c, body) = SseClient::open(&s.client, &url("locked"), None, None).await;
    assert_eq!(
        (c.status, body["code"].clone()),
        (401, json!("unauthenticated"))
    );
    let (c, body) = SseClient::open(&s.client, &url("notes,locked"), Some(&b_tok), None).await;
    assert_eq!((c.status, body["code"].clone()), (403, json!("forbidden")));
    let (c, _) = SseClient::open(&s.client, &url("nope"), Some(&b_tok), None).await;
    assert_eq!(c.status, 404);
    for bad in ["", "a/b/c", "..%2Fx", "notes/%27"] {
        let (c, body) = SseClient::open(&s.client, &url(bad), Some(&b_tok), None).await;
        assert_eq!(
            (c.status, body["code"].clone()),
            (400, json!("bad_request")),
            "{bad}"
        );
    }
    let (c, body) = SseClient::open(&s.client, &url("notes"), Some(&b_tok), Some("bogus")).await;
    assert_eq!(
        (c.status, body["code"].clone()),
        (400, json!("bad_request"))
    );
    // Admins see everything.
    let admin = s.admin().await;
    let mut adm = open(s, "locked", Some(&admin), None).await;
    ready(&mut adm).await;
}

/// Drop the connection mid-stream while writes go on, reconnect with Last-Event-ID: every
/// event exactly once, in order.
async fn resume_loses_nothing(s: &TestServer) {
    s.apply(notes_schema(VIEW)).await;
    let (alice, a_tok, _) = signup(s, "cal@example.com").await;
    let mut c = open(s, "notes", Some(&a_tok), None).await;
    ready(&mut c).await;
    let writer = {
        let (base, tok, owner) = (s.base.clone(), a_tok.clone(), alice.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut ids = Vec::new();
            for i in 0..60 {
                let r: Value = client
                    .post(format!("{base}/v1/collections/notes/records"))
                    .bearer_auth(&tok)
                    .json(&json!({"owner": owner, "title": format!("t{i}")}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                ids.push(r["id"].as_str().unwrap().to_owned());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            ids
        })
    };
    let mut seen: Vec<String> = Vec::new();
    let mut last = None;
    for _ in 0..10 {
        let e = c.expect().await;
        seen.push(rec(&e).1.to_owned());
        last = e.id.clone();
    }
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = open(s, "notes", Some(&a_tok), last.as_deref()).await;
    ready(&mut c).await;
    let ids = writer.await.unwrap();
    while seen.len() < ids.len() {
        let e = c.expect().await;
        assert_eq!(e.event, "record");
        seen.push(rec(&e).1.to_owned());
    }
    assert_eq!(seen, ids, "nothing lost, nothing duplicated, in order");
    c.quiet(Duration::from_millis(300)).await;

    // A reconnect from before the retained log: reset, then live.
    tokio::time::sleep(Duration::from_millis(20)).await;
    ferrobase_server::changes::prune(&s.state.db, Duration::from_millis(1))
        .await
        .unwrap();
    let mut c = open(s, "notes", Some(&a_tok), Some("1")).await;
    ready(&mut c).await;
    let e = c.expect().await;
    assert_eq!(e.event, "reset");
    assert_eq!(e.data, json!({"reason": "gap_too_old"}));
    let id = create(s, &a_tok, &alice, "live", false).await;
    assert_eq!(rec(&c.expect().await), ("create", id.as_str()));

    // A view rule change tells subscribers to resync.
    s.apply(notes_schema("true")).await;
    let e = c.expect().await;
    assert_eq!(e.event, "reset");
    assert_eq!(e.data["reason"], json!("rules_changed"));
}

async fn credentials_end_streams(backend: Backend) {
    let Some(s) = TestServer::start_with(backend, |c| {
        c.realtime.auth_recheck = "1s".into();
        c.realtime.max_per_user = 3;
    })
    .await
    else {
        return;
    };
    s.apply(notes_schema(VIEW)).await;
    let (_, tok, _) = signup(&s, "dan@example.com").await;
    // Browsers: ?token=; a bad one is 401.
    let url = format!("{}/v1/realtime?collections=notes&token={tok}", s.base);
    let (mut by_query, _) = SseClient::open(&s.client, &url, None, None).await;
    assert_eq!(by_query.status, 200);
    ready(&mut by_query).await;
    let url = format!("{}/v1/realtime?collections=notes&token=garbage", s.base);
    let (c, body) = SseClient::open(&s.client, &url, None, None).await;
    assert_eq!(
        (c.status, body["code"].clone()),
        (401, json!("unauthenticated"))
    );
    // The per-user limit: a fourth stream is refused with 429.
    let mut others = Vec::new();
    for _ in 0..2 {
        let mut c = open(&s, "notes", Some(&tok), None).await;
        ready(&mut c).await;
        others.push(c);
    }
    let url = format!("{}/v1/realtime?collections=notes", s.base);
    let (c, body) = SseClient::open(&s.client, &url, Some(&tok), None).await;
    assert_eq!(
        (c.status, body["code"].clone()),
        (429, json!("rate_limited"))
    );
    // Closing one frees a slot.
    drop(others.pop());
    let mut freed = None;
    for _ in 0..50 {
        let (c, _) = SseClient::open(&s.client, &url, Some(&tok), None).await;
        if c.status == 200 {
            freed = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut freed = freed.expect("a closed stream frees its slot");
    ready(&mut freed).await;
    // Logout ends the session: every stream of it closes within the recheck interval.
    s.post("/v1/auth/logout", Some(&tok), json!({})).await;
    assert!(by_query.closed(Duration::from_secs(4)).await);
    assert!(freed.closed(Duration::from_secs(4)).await);
    s.stop().await;
}

async fn per_ip_limit(backend: Backend) {
    let Some(s) = TestServer::start_with(backend, |c| c.realtime.max_per_ip = 5).await else {
        return;
    };
    s.apply(notes_schema("true")).await;
    let mut open_ones = Vec::new();
    let mut refused = 0;
    for _ in 0..20 {
        let url = format!("{}/v1/realtime?collections=notes", s.base);
        let (c, body) = SseClient::open(&s.client, &url, None, None).await;
        match c.status {
            200 => open_ones.push(c),
            429 => {
                assert_eq!(body["code"], json!("rate_limited"));
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((open_ones.len(), refused), (5, 15));
    // The server stays responsive.
    s.get("/v1/health", None).await.expect(200);
    s.stop().await;
}

/// Two replicas on one PostgreSQL database: a write through one reaches the other's
/// subscribers within a second.
async fn replicas_share_events(backend: Backend) {
    if backend != Backend::Postgres {
        return;
    }
    let Some(a) = TestServer::start(backend).await else {
        return;
    };
    a.apply(notes_schema(VIEW)).await;
    let b = a.replica(|_| {}).await;
    let (alice, tok, _) = signup(&a, "eve@example.com").await;
    let mut on_b = open(&b, "notes", Some(&tok), None).await;
    ready(&mut on_b).await;
    let mut on_a = open(&a, "notes", Some(&tok), None).await;
    ready(&mut on_a).await;
    for i in 0..5 {
        let via = if i % 2 == 0 { &a } else { &b };
        let started = std::time::Instant::now();
        let id = create(via, &tok, &alice, &format!("r{i}"), false).await;
        for c in [&mut on_a, &mut on_b] {
            let e = c
                .next(Duration::from_secs(1))
                .await
                .expect("event within 1 s");
            assert_eq!(rec(&e), ("create", id.as_str()));
        }
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    // Sync cursors work across replicas too.
    let page = b
        .get("/v1/collections/notes/changes?since=0", Some(&tok))
        .await
        .expect(200)
        .clone();
    assert_eq!(page["changes"].as_array().unwrap().len(), 5);
    b.stop().await;
    a.stop().await;
}

/// Reads from `conn` into `got` until `done(got)` holds; panics after 5 s.
async fn read_until(
    conn: &mut tokio::net::TcpStream,
    got: &mut Vec<u8>,
    done: impl Fn(&str) -> bool,
) {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done(&String::from_utf8_lossy(got)) {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Ok(Ok(0)) => panic!("closed early; got {}", String::from_utf8_lossy(got)),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("{e}; got {}", String::from_utf8_lossy(got)),
            Err(_) => panic!("timed out; got {}", String::from_utf8_lossy(got)),
        }
    }
}

/// The wire as a plain HTTP/1.1 client sees it, on both ways a stream is served: a
/// connection that opens with the stream request (answered chunked with `connection:
/// close`, its slot freed when the peer hangs up), and a keep-alive connection that carried
/// another request first (answered by the general HTTP server).
async fn raw_http11_streams(backend: Backend) {
    use tokio::io::AsyncWriteExt;
    let Some(s) = TestServer::start_with(backend, |c| {
        c.realtime.max_per_ip = 1;
        c.realtime.heartbeat = "1s".into();
    })
    .await
    else {
        return;
    };
    s.apply(notes_schema("true")).await;
    let (alice, tok, _) = signup(&s, "raw@example.com").await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let stream_head = "GET /v1/realtime?collections=notes HTTP/1.1\r\nHost: x\r\n\
                       Origin: http://app.example\r\nAccept: text/event-stream\r\n\r\n";

    // 1. The stream request first: head, then the ready event and a live one, as chunks.
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(stream_head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    read_until(&mut conn, &mut got, |t| t.contains("event: ready")).await;
    let text = String::from_utf8_lossy(&got).to_lowercase();
    let (head, _) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    for h in [
        "content-type: text/event-stream",
        "transfer-encoding: chunked",
        "connection: close",
        "access-control-allow-origin: ",
        "x-request-id: ",
    ] {
        assert!(head.contains(h), "{h} missing from {head}");
    }
    let id = create(&s, &tok, &alice, "over the wire", false).await;
    read_until(&mut conn, &mut got, |t| t.contains(&id)).await;
    // A heartbeat (an SSE comment, its own chunk) comes every interval.
    read_until(&mut conn, &mut got, |t| t.contains("\r\n:\n\n\r\n")).await;
    // Every chunk is framed: a hex length line, exactly that many bytes, CRLF.
    let body = &got[head.len() + 4..];
    let mut rest = body;
    let mut events = String::new();
    while !rest.is_empty() {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let len =
            usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16).unwrap();
        let data = &rest[line_end + 2..line_end + 2 + len];
        assert_eq!(&rest[line_end + 2 + len..line_end + 4 + len], b"\r\n");
        events.push_str(std::str::from_utf8(data).unwrap());
        rest = &rest[line_end + 4 + len..];
    }
    let parsed = common::sse::parse(&mut events);
    assert_eq!(parsed.len(), 2, "{parsed:?}");
    assert_eq!(rec(&parsed[1]), ("create", id.as_str()));
    // The one slot this address has is taken until the peer hangs up, then freed.
    let url = format!("{}/v1/realtime?collections=notes", s.base);
    let (c, body) = SseClient::open(&s.client, &url, None, None).await;
    assert_eq!(
        (c.status, body["code"].clone()),
        (429, json!("rate_limited"))
    );
    drop(conn);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (c, _) = SseClient::open(&s.client, &url, None, None).await;
        if c.status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 2. A keep-alive connection that asked something else first, then the stream (retried
    //    while the slot of the stream just dropped is still being freed).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let (mut conn, mut got) = loop {
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        conn.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        read_until(&mut conn, &mut got, |t| {
            t.contains("\r\n\r\n") && t.ends_with('}')
        })
        .await;
        assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
        conn.write_all(stream_head.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        read_until(&mut conn, &mut got, |t| {
            t.contains("event: ready") || t.contains("rate_limited")
        })
        .await;
        if String::from_utf8_lossy(&got).contains("event: ready") {
            break (conn, got);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let head = String::from_utf8_lossy(&got).to_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    let id = create(&s, &tok, &alice, "kept alive", false).await;
    read_until(&mut conn, &mut got, |t| t.contains(&id)).await;
    let seen = got.len();
    read_until(&mut conn, &mut got, |t| t[seen..].contains(":\n\n")).await;
    drop(conn);
    s.stop().await;
}

on_both!(
    live_events_in_commit_order,
    rules_filter_every_event,
    resume_loses_nothing
);
on_both_backends!(
    credentials_end_streams,
    per_ip_limit,
    replicas_share_events,
    raw_http11_streams
);
