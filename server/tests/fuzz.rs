//! Property tests over HTTP: random bodies, filters, sorts and query strings never produce a
//! server error (the test kit fails on any 500) and never change data they should not.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Backend, TestServer, blog_schema};
use proptest::prelude::*;
use serde_json::{Value, json};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        Just(json!("2026-01-31T12:00:00Z")),
        Just(json!("0196f1d2-9d4e-7c1a-9a4e-4f2d7e9b1c3a")),
        // PostgreSQL text and jsonb cannot hold U+0000: always a 422, never a 500.
        Just(json!("a\u{0}b")),
        ".{0,8}\u{0}.{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z_\u{0}]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_body() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        Just("title"),
        Just("body"),
        Just("views"),
        Just("rank"),
        Just("published"),
        Just("status"),
        Just("tags"),
        Just("author"),
        Just("meta"),
        Just("due"),
        Just("site"),
        Just("place"),
        Just("id"),
        Just("version"),
        Just("nope"),
    ];
    prop::collection::btree_map(field, arb_json(), 0..8)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

fn arb_filter() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("title".to_owned()),
        Just("views".to_owned()),
        Just("published".to_owned()),
        Just("due".to_owned()),
        Just("tags".to_owned()),
        Just("@auth.id".to_owned()),
        Just("@now".to_owned()),
        Just("'x'".to_owned()),
        Just("3.5".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("['a', 1]".to_owned()),
        Just("'a\u{0}b'".to_owned()),
        "[ -~]{0,6}",
    ];
    let op = prop_oneof![
        Just("="),
        Just("!="),
        Just(">"),
        Just("<="),
        Just("~"),
        Just("!~"),
        Just("in"),
        Just("&&"),
        Just("||"),
        Just("!"),
        Just("("),
        Just(")")
    ];
    prop::collection::vec((atom, op), 0..6).prop_map(|parts| {
        parts
            .into_iter()
            .map(|(a, o)| format!("{a} {o} "))
            .collect::<String>()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn fuzz_on(backend: Backend) {
    let rt = runtime();
    let Some(server) = rt.block_on(async {
        let s = TestServer::start(backend).await?;
        s.apply(blog_schema()).await;
        s.post(
            "/v1/collections/posts/records",
            None,
            json!({"title": "anchor"}),
        )
        .await
        .expect(201);
        Some(s)
    }) else {
        return;
    };
    let config = ProptestConfig {
        cases: 150,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(body in arb_body(), filter in arb_filter(), sort in "[-a-z_,]{0,20}", limit in "[0-9a-z-]{0,4}")| {
        rt.block_on(async {
            let r = server.post("/v1/collections/posts/records", None, body.clone()).await;
            let st = r.status.as_u16();
            prop_assert!(st == 201 || st == 422 || st == 409, "create → {st}: {}", r.body);
            let r = server.request(reqwest::Method::GET, &format!("/v1/collections/posts/records?filter={}&sort={}&limit={}",
                urlencode(&filter), urlencode(&sort), urlencode(&limit)), None, None).await;
            let st = r.status.as_u16();
            prop_assert!(st == 200 || st == 400, "list → {st}: {}", r.body);
            let r = server.patch("/v1/collections/posts/records/00000000-0000-7000-8000-000000000000", None, body).await;
            prop_assert!(matches!(r.status.as_u16(), 404 | 422), "patch → {}", r.body);
            Ok(())
        })?;
    });
    rt.block_on(async {
        let r = server
            .get(
                "/v1/collections/posts/records?filter=title%3D'anchor'&count=true",
                None,
            )
            .await;
        assert_eq!(r.expect(200)["total"], 1, "the anchor record is untouched");
        server.stop().await;
    });
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn random_input_never_breaks_the_server_sqlite() {
    fuzz_on(Backend::Sqlite);
}

#[test]
fn random_input_never_breaks_the_server_postgres() {
    fuzz_on(Backend::Postgres);
}

/// Bodies for the push routes: their own keys with random values, nested targets.
fn arb_push_body() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("platform"),
        Just("token"),
        Just("timezone"),
        Just("topics"),
        Just("locale"),
        Just("app_version"),
        Just("categories"),
        Just("quiet_hours"),
        Just("to"),
        Just("title"),
        Just("body"),
        Just("data"),
        Just("category"),
        Just("collapse_id"),
        Just("ttl_seconds"),
        Just("priority"),
        Just("send_at"),
        Just("nope"),
    ];
    let value = prop_oneof![
        arb_json(),
        Just(json!("ios")),
        Just(json!({"users": ["u1"]})),
        Just(json!({"topic": "news"})),
        Just(json!({"devices": []})),
        Just(json!({"start": "22:00", "end": "07:00"})),
        Just(json!({"marketing": false})),
        Just(json!(["news", "a b"])),
        Just(json!("Europe/Berlin")),
    ];
    prop::collection::btree_map(key, value, 0..7)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

fn push_fuzz_on(backend: Backend) {
    let rt = runtime();
    let Some((server, admin, user)) = rt.block_on(async {
        let s = TestServer::start(backend).await?;
        let admin = s.admin().await;
        let (_, user, _) = common::signup(&s, "fuzz@example.com").await;
        Some((s, admin, user))
    }) else {
        return;
    };
    let config = ProptestConfig {
        cases: 100,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(body in arb_push_body())| {
        rt.block_on(async {
            let r = server.post("/v1/devices", Some(&user), body.clone()).await;
            prop_assert!(matches!(r.status.as_u16(), 200 | 201 | 422), "devices → {}", r.body);
            let r = server.put("/v1/me/notifications", Some(&user), body.clone()).await;
            prop_assert!(matches!(r.status.as_u16(), 200 | 422), "prefs → {}", r.body);
            let r = server.post("/v1/push", Some(&admin), body).await;
            prop_assert!(matches!(r.status.as_u16(), 202 | 422), "push → {}", r.body);
            Ok(())
        })?;
    });
    rt.block_on(server.stop());
}

#[test]
fn random_push_bodies_never_break_the_server_sqlite() {
    push_fuzz_on(Backend::Sqlite);
}

#[test]
fn random_push_bodies_never_break_the_server_postgres() {
    push_fuzz_on(Backend::Postgres);
}
