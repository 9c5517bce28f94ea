//! Admin sign-in and schema plan/apply/history over HTTP, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestServer, blog_schema};
use serde_json::{Value, json};

on_both!(
    admin_login,
    plan_apply_is_atomic_and_idempotent,
    destructive_changes_need_consent,
    invalid_schemas_are_refused,
    rename_keeps_data,
    health_ready_and_problem_shapes,
);

async fn admin_login(s: &TestServer) {
    let token = s.admin().await;
    assert!(token.starts_with("fba_"));
    let r = s
        .post(
            "/v1/admin/auth/login",
            None,
            json!({"email": "OWNER@example.com", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(
        r.expect(200)["admin"]["role"],
        "owner",
        "emails compare case-insensitively"
    );
    let r = s
        .post(
            "/v1/admin/auth/login",
            None,
            json!({"email": "owner@example.com", "password": "wrong password"}),
        )
        .await;
    r.problem(401, "invalid_credentials");
    let r = s
        .post(
            "/v1/admin/auth/login",
            None,
            json!({"email": "nobody@example.com", "password": "wrong password"}),
        )
        .await;
    r.problem(401, "invalid_credentials");
    let r = s
        .post("/v1/admin/auth/login", None, json!({"email": "x"}))
        .await;
    r.problem(422, "validation_failed");
    s.get("/v1/admin/schema", None)
        .await
        .problem(401, "unauthenticated");
    s.get("/v1/admin/schema", Some("fba_nope"))
        .await
        .problem(401, "unauthenticated");
    let r = s.get("/v1/admin/schema", Some(&token)).await;
    assert_eq!(r.expect(200)["version"], 0);
}

async fn plan_apply_is_atomic_and_idempotent(s: &TestServer) {
    let token = s.admin().await;
    let r = s
        .post(
            "/v1/admin/schema/plan",
            Some(&token),
            json!({"collections": blog_schema()}),
        )
        .await;
    let changes = r.expect(200)["changes"].as_array().unwrap().clone();
    assert!(
        changes
            .iter()
            .any(|c| c["kind"] == "create_collection" && c["collection"] == "posts")
    );
    assert!(changes.iter().all(|c| c["destructive"] == false));
    let r = s
        .post(
            "/v1/admin/schema/apply",
            Some(&token),
            json!({"collections": blog_schema()}),
        )
        .await;
    let b = r.expect(200);
    assert_eq!(b["version"], 1);
    assert_eq!(b["applied"], true);
    // re-applying is a no-op
    let r = s
        .post(
            "/v1/admin/schema/apply",
            Some(&token),
            json!({"collections": blog_schema()}),
        )
        .await;
    let b = r.expect(200);
    assert_eq!(b["version"], 1);
    assert_eq!(b["applied"], false);
    let r = s
        .post(
            "/v1/admin/schema/plan",
            Some(&token),
            json!({"collections": blog_schema()}),
        )
        .await;
    assert_eq!(r.expect(200)["changes"], json!([]));
    // a change that the database refuses rolls back everything: unique index over duplicates
    s.post(
        "/v1/collections/posts/records",
        None,
        json!({"title": "same"}),
    )
    .await
    .expect(201);
    s.post(
        "/v1/collections/posts/records",
        None,
        json!({"title": "same"}),
    )
    .await
    .expect(201);
    let mut schema = blog_schema();
    schema[1]["fields"]["subtitle"] = json!({"type": "text"});
    schema[1]["indexes"] = json!([{"fields": ["title"], "unique": true}]);
    let r = s
        .post(
            "/v1/admin/schema/apply",
            Some(&token),
            json!({"collections": schema}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 409, "{}", r.body);
    let r = s.get("/v1/admin/schema", Some(&token)).await;
    assert_eq!(r.expect(200)["version"], 1);
    // the new field was not added either
    let r = s
        .post(
            "/v1/collections/posts/records",
            None,
            json!({"title": "t", "subtitle": "x"}),
        )
        .await;
    r.problem(422, "validation_failed");
    let r = s.get("/v1/admin/schema/history", Some(&token)).await;
    assert_eq!(r.expect(200)["items"].as_array().unwrap().len(), 1);
    // the schema as stored round-trips
    let got = s.get("/v1/admin/schema", Some(&token)).await.expect(200)["collections"].clone();
    let r = s
        .post(
            "/v1/admin/schema/plan",
            Some(&token),
            json!({"collections": got}),
        )
        .await;
    assert_eq!(r.expect(200)["changes"], json!([]));
}

async fn destructive_changes_need_consent(s: &TestServer) {
    let token = s.admin().await;
    s.apply(blog_schema()).await;
    s.post(
        "/v1/collections/posts/records",
        None,
        json!({"title": "t", "body": "b"}),
    )
    .await
    .expect(201);
    let mut schema = blog_schema();
    schema[1]["fields"].as_object_mut().unwrap().remove("body");
    let r = s
        .post(
            "/v1/admin/schema/plan",
            Some(&token),
            json!({"collections": schema}),
        )
        .await;
    let changes = r.expect(200)["changes"].as_array().unwrap().clone();
    assert!(
        changes
            .iter()
            .any(|c| c["kind"] == "remove_field" && c["destructive"] == true),
        "{changes:?}"
    );
    let r = s
        .post(
            "/v1/admin/schema/apply",
            Some(&token),
            json!({"collections": schema}),
        )
        .await;
    r.problem(409, "destructive_change");
    assert_eq!(
        s.get("/v1/collections/posts/records", None)
            .await
            .expect(200)["items"][0]["body"],
        "b"
    );
    let r = s
        .post(
            "/v1/admin/schema/apply",
            Some(&token),
            json!({"collections": schema, "allow_destructive": true}),
        )
        .await;
    r.expect(200);
    assert!(
        s.get("/v1/collections/posts/records", None)
            .await
            .expect(200)["items"][0]
            .get("body")
            .is_none()
    );
    // viewers cannot apply
    let viewer = s
        .admin_with_role("v@example.com", ferrobase_server::access::AdminRole::Viewer)
        .await;
    s.post(
        "/v1/admin/schema/apply",
        Some(&viewer),
        json!({"collections": []}),
    )
    .await
    .problem(403, "forbidden");
}

async fn invalid_schemas_are_refused(s: &TestServer) {
    let token = s.admin().await;
    let cases = [
        json!([{"name": "Bad Name", "fields": {}}]),
        json!([{"name": "p", "fields": {"x": {"type": "nope"}}}]),
        json!([{"name": "p", "fields": {"x": {"type": "text", "maxx": 3}}}]),
        json!([{"name": "p", "fields": {"x": {"type": "text"}}, "rules": {"list": "x ==="}}]),
        json!([{"name": "p", "fields": {"x": {"type": "text"}}, "rules": {"list": ""}}]),
        json!([{"name": "p", "fields": {"x": {"type": "relation", "collection": "ghost"}}}]),
        json!([{"name": "p", "fields": {"id": {"type": "text"}}}]),
    ];
    for c in cases {
        let r = s
            .post(
                "/v1/admin/schema/apply",
                Some(&token),
                json!({"collections": c}),
            )
            .await;
        assert_eq!(r.status.as_u16(), 422, "{c} → {}", r.body);
    }
    assert_eq!(
        s.get("/v1/admin/schema", Some(&token)).await.expect(200)["version"],
        0
    );
}

async fn rename_keeps_data(s: &TestServer) {
    s.apply(blog_schema()).await;
    let rec = s
        .post(
            "/v1/collections/posts/records",
            None,
            json!({"title": "t", "body": "keep me"}),
        )
        .await
        .expect(201)
        .clone();
    let mut schema = blog_schema();
    let fields = schema[1]["fields"].as_object_mut().unwrap();
    fields.remove("body");
    fields.insert(
        "content".into(),
        json!({"type": "text", "renamed_from": "body"}),
    );
    let r = s.apply(schema.clone()).await;
    assert!(
        r["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "rename_field"),
        "{r}"
    );
    let got = s
        .get(
            &format!(
                "/v1/collections/posts/records/{}",
                rec["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(got.expect(200)["content"], "keep me");
    let token = s.admin().await;
    let r = s
        .post(
            "/v1/admin/schema/plan",
            Some(&token),
            json!({"collections": schema}),
        )
        .await;
    assert_eq!(r.expect(200)["changes"], json!([]));
}

async fn health_ready_and_problem_shapes(s: &TestServer) {
    let r = s.get("/v1/health", Some("garbage")).await;
    assert_eq!(r.expect(200)["status"], "ok");
    assert!(r.headers.get("x-request-id").is_some());
    s.get("/v1/ready", None).await.expect(200);
    let r = s.get("/v1/nope", None).await;
    let b = r.problem(404, "not_found").clone();
    assert_eq!(
        b["request_id"].as_str(),
        r.headers["x-request-id"].to_str().ok()
    );
    let r = s
        .request(reqwest::Method::PUT, "/v1/health", None, None)
        .await;
    r.problem(405, "method_not_allowed");
    let r = s
        .request_with(
            reqwest::Method::GET,
            "/v1/health",
            None,
            None,
            &[("x-request-id", "abc-123")],
        )
        .await;
    assert_eq!(r.headers["x-request-id"], "abc-123");
    let long = "a".repeat(200);
    let r = s
        .request_with(
            reqwest::Method::GET,
            "/v1/health",
            None,
            None,
            &[("x-request-id", long.as_str())],
        )
        .await;
    assert_ne!(r.headers["x-request-id"].to_str().unwrap(), long);
    let r = s
        .request_with(
            reqwest::Method::GET,
            "/v1/health",
            None,
            None,
            &[("x-request-id", "bad id!")],
        )
        .await;
    assert_ne!(r.headers["x-request-id"], "bad id!");
    let _: Value = r.body;
}
