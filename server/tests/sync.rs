//! Delta sync (`/v1/collections/{c}/changes`) against a real server on both dialects.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{Backend, TestServer, signup};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use common::{NOTES_VIEW as VIEW, create_note as create, notes_schema};

async fn sync_page(s: &TestServer, token: &str, query: &str) -> Value {
    s.get(
        &format!("/v1/collections/notes/changes{query}"),
        Some(token),
    )
    .await
    .expect(200)
    .clone()
}

/// Applies every page from `cursor` (None = initial) to `replica` until `has_more` is false.
async fn sync_all(
    s: &TestServer,
    token: &str,
    cursor: Option<String>,
    limit: usize,
    replica: &mut BTreeMap<String, Value>,
) -> String {
    let mut cursor = cursor;
    loop {
        let q = match &cursor {
            Some(c) => format!("?since={c}&limit={limit}"),
            None => format!("?limit={limit}"),
        };
        let page = sync_page(s, token, &q).await;
        if page["reset"] == json!(true) {
            replica.clear();
        }
        for ch in page["changes"].as_array().unwrap() {
            let id = ch["id"].as_str().unwrap().to_owned();
            match ch["op"].as_str().unwrap() {
                "delete" => {
                    assert!(
                        ch["record"].is_null(),
                        "a tombstone carries only the id: {ch}"
                    );
                    replica.remove(&id);
                }
                _ => {
                    replica.insert(id, ch["record"].clone());
                }
            }
        }
        cursor = Some(page["cursor"].as_str().unwrap().to_owned());
        if page["has_more"] != json!(true) {
            return cursor.unwrap();
        }
    }
}

/// What `token` can list right now, by id.
async fn server_state(s: &TestServer, token: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("?limit=500&cursor={c}"),
            None => "?limit=500".to_owned(),
        };
        let page = s
            .get(&format!("/v1/collections/notes/records{q}"), Some(token))
            .await
            .expect(200)
            .clone();
        for r in page["items"].as_array().unwrap() {
            out.insert(r["id"].as_str().unwrap().to_owned(), r.clone());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

async fn initial_then_incremental(s: &TestServer) {
    s.apply(notes_schema(VIEW)).await;
    let (alice, a_tok, _) = signup(s, "alice@example.com").await;
    let (_bob, b_tok, _) = signup(s, "bob@example.com").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(create(s, &a_tok, &alice, &format!("n{i}"), i % 2 == 0).await);
    }
    // Initial sync in pages of 3: Alice sees all 7, Bob the 4 public ones.
    let mut a_rep = BTreeMap::new();
    let a_cursor = sync_all(s, &a_tok, None, 3, &mut a_rep).await;
    assert_eq!(a_rep.len(), 7);
    let mut b_rep = BTreeMap::new();
    let b_cursor = sync_all(s, &b_tok, None, 3, &mut b_rep).await;
    assert_eq!(b_rep.len(), 4);
    assert!(b_rep.values().all(|r| r["public"] == json!(true)));

    // Several changes of one record collapse; a deletion is a tombstone; a record made
    // private is a tombstone for Bob, who could see it.
    for t in ["a", "b", "c"] {
        s.patch(
            &format!("/v1/collections/notes/records/{}", ids[0]),
            Some(&a_tok),
            json!({"title": t}),
        )
        .await
        .expect(200);
    }
    s.delete(
        &format!("/v1/collections/notes/records/{}", ids[2]),
        Some(&a_tok),
    )
    .await
    .expect(204);
    s.patch(
        &format!("/v1/collections/notes/records/{}", ids[4]),
        Some(&a_tok),
        json!({"public": false}),
    )
    .await
    .expect(200);
    // A private note changed and deleted: Bob never saw it and hears nothing of it.
    s.patch(
        &format!("/v1/collections/notes/records/{}", ids[1]),
        Some(&a_tok),
        json!({"title": "secret"}),
    )
    .await
    .expect(200);
    s.delete(
        &format!("/v1/collections/notes/records/{}", ids[3]),
        Some(&a_tok),
    )
    .await
    .expect(204);

    let page = sync_page(s, &a_tok, &format!("?since={a_cursor}")).await;
    let changes = page["changes"].as_array().unwrap();
    let of = |id: &str| changes.iter().filter(|c| c["id"] == json!(id)).count();
    assert_eq!(of(&ids[0]), 1, "collapsed: {page}");
    let first = changes.iter().find(|c| c["id"] == json!(ids[0])).unwrap();
    assert_eq!(first["op"], json!("update"));
    assert_eq!(first["record"]["title"], json!("c"));
    let seqs: Vec<i64> = changes.iter().map(|c| c["seq"].as_i64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in log order: {seqs:?}"
    );
    assert_eq!(page["has_more"], json!(false));

    let page = sync_page(s, &b_tok, &format!("?since={b_cursor}")).await;
    let changes = page["changes"].as_array().unwrap();
    let ops: BTreeMap<String, String> = changes
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_owned(),
                c["op"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(ops.get(&ids[0]).map(String::as_str), Some("update"));
    assert_eq!(ops.get(&ids[2]).map(String::as_str), Some("delete"));
    assert_eq!(ops.get(&ids[4]).map(String::as_str), Some("delete"));
    assert!(
        !ops.contains_key(&ids[1]),
        "never-visible note leaked: {page}"
    );
    assert!(
        !ops.contains_key(&ids[3]),
        "never-visible deletion leaked: {page}"
    );
    assert_eq!(changes.len(), 3, "{page}");

    // `since=now`: nothing, and the current cursor; syncing from it sees only newer changes.
    let now = sync_page(s, &a_tok, "?since=now").await;
    assert_eq!(now["changes"], json!([]));
    let c = now["cursor"].as_str().unwrap().to_owned();
    create(s, &a_tok, &alice, "after", false).await;
    let page = sync_page(s, &a_tok, &format!("?since={c}")).await;
    assert_eq!(page["changes"].as_array().unwrap().len(), 1);
    assert_eq!(page["changes"][0]["op"], json!("create"));
}

async fn bad_requests_and_access(s: &TestServer) {
    s.apply(json!([
        {"name": "notes", "fields": {"owner": {"type": "text"}}, "rules": {"view": "owner = @auth.id"}},
        {"name": "locked", "fields": {"x": {"type": "text"}}}
    ]))
    .await;
    let (_, tok, _) = signup(s, "carol@example.com").await;
    for q in [
        "?since=abc",
        "?since=-3",
        "?since=i.1.",
        "?since=i.x.y",
        "?limit=0",
        "?limit=5001",
        "?limit=ten",
    ] {
        let r = s
            .get(&format!("/v1/collections/notes/changes{q}"), Some(&tok))
            .await;
        r.problem(400, "bad_request");
    }
    s.get("/v1/collections/nope/changes", Some(&tok))
        .await
        .problem(404, "not_found");
    s.get("/v1/collections/locked/changes", Some(&tok))
        .await
        .problem(403, "forbidden");
    s.get("/v1/collections/locked/changes", None)
        .await
        .problem(401, "unauthenticated");
    // A cursor from the future (a restored database, a forged value) starts over.
    let page = sync_page(s, &tok, "?since=999999999").await;
    assert_eq!(page["reset"], json!(true));
    let admin = s.admin().await;
    let r = s.get("/v1/collections/locked/changes", Some(&admin)).await;
    r.expect(200);
}

async fn gap_and_rule_change_reset(s: &TestServer) {
    s.apply(notes_schema(VIEW)).await;
    let (alice, a_tok, _) = signup(s, "dave@example.com").await;
    let (_, b_tok, _) = signup(s, "erin@example.com").await;
    let private = create(s, &a_tok, &alice, "mine", false).await;
    create(s, &a_tok, &alice, "shared", true).await;
    let mut rep = BTreeMap::new();
    let cursor = sync_all(s, &b_tok, None, 100, &mut rep).await;
    assert_eq!(rep.len(), 1);

    // The view rule opens up: Bob's copy is stale without any record changing.
    s.apply(notes_schema("true")).await;
    let page = sync_page(s, &b_tok, &format!("?since={cursor}")).await;
    assert_eq!(page["reset"], json!(true), "{page}");
    let cursor = sync_all(s, &b_tok, Some(cursor), 100, &mut rep).await;
    assert!(rep.contains_key(&private));
    assert_eq!(rep.len(), 2);

    // Retention removed changes after the cursor: reset as well.
    create(s, &a_tok, &alice, "x", true).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let pruned = ferrobase_server::changes::prune(&s.state.db, std::time::Duration::from_millis(1))
        .await
        .unwrap();
    assert!(pruned > 0);
    let page = sync_page(s, &b_tok, &format!("?since={cursor}")).await;
    assert_eq!(page["reset"], json!(true));
    assert_eq!(page["changes"].as_array().unwrap().len(), 3);
}

/// A client replica converges to what the server shows it, whatever happened in between:
/// random creates, updates (visibility flips included), deletes, view-rule changes, and syncs
/// at random points with random page sizes.
async fn converges(backend: Backend) {
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    s.apply(notes_schema(VIEW)).await;
    let (alice, a_tok, _) = signup(&s, "fay@example.com").await;
    let (bob, b_tok, _) = signup(&s, "gus@example.com").await;
    let users = [(alice, a_tok), (bob, b_tok)];
    for seed in 0..4u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut replicas: Vec<(BTreeMap<String, Value>, Option<String>)> =
            vec![(BTreeMap::new(), None), (BTreeMap::new(), None)];
        let mut mine: Vec<(usize, String)> = Vec::new();
        for step in 0..60 {
            let u = rng.random_range(0..2usize);
            let (uid, tok) = (&users[u].0, &users[u].1);
            match rng.random_range(0..10) {
                0..=3 => {
                    let id = create(
                        &s,
                        tok,
                        uid,
                        &format!("s{seed}-{step}"),
                        rng.random_bool(0.5),
                    )
                    .await;
                    mine.push((u, id));
                }
                4..=5 if !mine.is_empty() => {
                    let (owner, id) = mine[rng.random_range(0..mine.len())].clone();
                    s.patch(
                        &format!("/v1/collections/notes/records/{id}"),
                        Some(&users[owner].1),
                        json!({"public": rng.random_bool(0.5), "title": format!("u{step}")}),
                    )
                    .await
                    .expect(200);
                }
                6 if !mine.is_empty() => {
                    let (owner, id) = mine.swap_remove(rng.random_range(0..mine.len()));
                    s.delete(
                        &format!("/v1/collections/notes/records/{id}"),
                        Some(&users[owner].1),
                    )
                    .await
                    .expect(204);
                }
                7 if rng.random_bool(0.2) => {
                    let view = if rng.random_bool(0.5) {
                        VIEW
                    } else {
                        "owner = @auth.id"
                    };
                    s.apply(notes_schema(view)).await;
                }
                _ => {
                    let r = rng.random_range(0..2usize);
                    let limit = rng.random_range(1..6usize);
                    let (rep, cur) = &mut replicas[r];
                    let next = sync_all(&s, &users[r].1, cur.clone(), limit, rep).await;
                    *cur = Some(next);
                }
            }
        }
        for r in 0..2 {
            let (rep, cur) = &mut replicas[r];
            sync_all(&s, &users[r].1, cur.clone(), 7, rep).await;
            let truth = server_state(&s, &users[r].1).await;
            assert_eq!(
                rep.keys().collect::<Vec<_>>(),
                truth.keys().collect::<Vec<_>>(),
                "seed {seed}, user {r}: ids differ"
            );
            for (id, rec) in &truth {
                assert_eq!(&rep[id], rec, "seed {seed}, user {r}: record {id} differs");
            }
        }
        s.apply(notes_schema(VIEW)).await;
    }
    s.stop().await;
}

on_both!(
    initial_then_incremental,
    bad_requests_and_access,
    gap_and_rule_change_reset
);
on_both_backends!(converges);
