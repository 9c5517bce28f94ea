//! Edges found by the conformance fuzzer (tests/e2e/schemathesis.sh), on SQLite and PostgreSQL:
//! framework rejections answer problem+json, schema `flags` must be an object, and a PATCH
//! with an invalid body is 422 even when its `If-Match` is stale too.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestServer, blog_schema};
use reqwest::Method;
use serde_json::json;

on_both!(
    framework_rejections_are_problems,
    schema_flags_must_be_an_object,
    invalid_body_beats_stale_version,
    cors_preflight_lists_the_requested_headers,
    cors_responses_expose_client_headers,
);

/// The names in a comma-separated header, lowercased.
fn header_list(r: &common::Resp, name: &str) -> Vec<String> {
    r.headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `Access-Control-Allow-Headers: *` does not cover `Authorization` (Fetch standard), and
/// `X-Client-*` cannot be a wildcard: a preflight is answered with the headers it asks for.
async fn cors_preflight_lists_the_requested_headers(s: &TestServer) {
    let asked = "authorization,if-match,idempotency-key,x-client-version";
    let r = s
        .request_with(
            Method::OPTIONS,
            "/v1/collections/posts/records/0190c0de-0000-7000-8000-000000000000",
            None,
            None,
            &[
                ("Origin", "https://app.example"),
                ("Access-Control-Request-Method", "PATCH"),
                ("Access-Control-Request-Headers", asked),
            ],
        )
        .await;
    assert!(r.status.is_success(), "preflight: {}", r.status);
    let allowed = header_list(&r, "access-control-allow-headers");
    for h in asked.split(',') {
        assert!(allowed.contains(&h.to_owned()), "{h} not in {allowed:?}");
    }
    assert!(!allowed.contains(&"*".to_owned()), "{allowed:?}");
    assert!(header_list(&r, "access-control-allow-methods").contains(&"patch".to_owned()));
    assert_eq!(r.headers["access-control-allow-origin"], "*");
    // Caches must key the answer on the requested headers.
    assert!(
        header_list(&r, "vary").contains(&"access-control-request-headers".to_owned()),
        "{:?}",
        r.headers
    );

    // Other client headers are answered the same way.
    let r = s
        .request_with(
            Method::OPTIONS,
            "/v1/auth/login",
            None,
            None,
            &[
                ("Origin", "https://app.example"),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "content-type,x-client-platform,x-client-build",
                ),
            ],
        )
        .await;
    let allowed = header_list(&r, "access-control-allow-headers");
    for h in ["content-type", "x-client-platform", "x-client-build"] {
        assert!(allowed.contains(&h.to_owned()), "{h} not in {allowed:?}");
    }
}

/// A cross-origin response lets the app read the headers it needs (`*` is not used).
async fn cors_responses_expose_client_headers(s: &TestServer) {
    let token = s.admin().await;
    s.post(
        "/v1/admin/schema/apply",
        Some(&token),
        json!({"collections": blog_schema()}),
    )
    .await
    .expect(200);
    let id = s
        .post(
            "/v1/collections/posts/records",
            Some(&token),
            json!({"title": "hello"}),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .request_with(
            Method::GET,
            &format!("/v1/collections/posts/records/{id}"),
            None,
            None,
            &[("Origin", "https://app.example")],
        )
        .await;
    r.expect(200);
    assert!(r.headers.get("etag").is_some());
    assert_eq!(r.headers["access-control-allow-origin"], "*");
    let exposed = header_list(&r, "access-control-expose-headers");
    for h in ["etag", "retry-after", "idempotent-replayed", "x-request-id"] {
        assert!(exposed.contains(&h.to_owned()), "{h} not in {exposed:?}");
    }
    assert!(!exposed.contains(&"*".to_owned()), "{exposed:?}");
}

async fn framework_rejections_are_problems(s: &TestServer) {
    let token = s.admin().await;
    s.post(
        "/v1/admin/schema/apply",
        Some(&token),
        json!({"collections": blog_schema()}),
    )
    .await
    .expect(200);
    let id = s
        .post(
            "/v1/collections/posts/records",
            Some(&token),
            json!({"title": "hello"}),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Repeated query parameters: axum's `Query` refuses them; the answer is still a problem.
    for path in [
        "/v1/collections/posts/records?limit=1&limit=2".to_owned(),
        format!("/v1/collections/posts/records/{id}?fields=title&fields=body"),
        "/v1/admin/users?limit=1&limit=2".to_owned(),
        "/v1/admin/audit?cursor=a&cursor=b".to_owned(),
    ] {
        let r = s.get(&path, Some(&token)).await;
        let body = r.problem(400, "bad_request");
        assert!(
            body["detail"].as_str().unwrap().contains("duplicate"),
            "{path}: the framework's message is the detail: {body}"
        );
        assert!(r.headers.get("x-request-id").is_some());
    }

    // A path segment that is not UTF-8.
    s.get("/v1/collections/posts/records/%FF%FE", Some(&token))
        .await
        .problem(400, "bad_request");

    // Unknown routes and wrong methods stay problems, with `Allow`.
    s.get("/v1/no/such/route", None)
        .await
        .problem(404, "not_found");
    let r = s
        .request(Method::PUT, "/v1/collections/posts/records", None, None)
        .await;
    r.problem(405, "method_not_allowed");
    assert!(r.headers.get("allow").is_some());

    // A body over the limit.
    let big = "x".repeat(2 * 1024 * 1024);
    s.post(
        "/v1/collections/posts/records",
        Some(&token),
        json!({"title": "t", "body": big}),
    )
    .await
    .problem(413, "payload_too_large");
}

async fn schema_flags_must_be_an_object(s: &TestServer) {
    let token = s.admin().await;
    for route in ["/v1/admin/schema/plan", "/v1/admin/schema/apply"] {
        for flags in [json!([1, 2]), json!(3), json!("on"), json!(true)] {
            let r = s
                .post(
                    route,
                    Some(&token),
                    json!({"collections": [], "flags": flags}),
                )
                .await;
            let body = r.problem(422, "validation_failed");
            assert!(body["errors"]["flags"].is_string(), "{route}: {body}");
        }
    }
    for flags in [json!(null), json!({}), json!({"new_feed": true})] {
        s.post(
            "/v1/admin/schema/plan",
            Some(&token),
            json!({"collections": blog_schema(), "flags": flags}),
        )
        .await
        .expect(200);
    }
    s.post(
        "/v1/admin/schema/apply",
        Some(&token),
        json!({"collections": blog_schema(), "flags": {"new_feed": true}}),
    )
    .await
    .expect(200);
}

async fn invalid_body_beats_stale_version(s: &TestServer) {
    let token = s.admin().await;
    s.post(
        "/v1/admin/schema/apply",
        Some(&token),
        json!({"collections": blog_schema()}),
    )
    .await
    .expect(200);
    let id = s
        .post(
            "/v1/collections/posts/records",
            Some(&token),
            json!({"title": "v1"}),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/collections/posts/records/{id}");
    s.patch(&path, Some(&token), json!({"title": "v2"}))
        .await
        .expect(200);
    // Stale version and an unknown field: the body is refused first.
    let r = s
        .request_with(
            Method::PATCH,
            &path,
            Some(&token),
            Some(json!({"nope": 1})),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert!(r.problem(422, "validation_failed")["errors"]["nope"].is_string());
    // Stale version and a valid body: 412 with the current record.
    let r = s
        .request_with(
            Method::PATCH,
            &path,
            Some(&token),
            Some(json!({"title": "v3"})),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(r.problem(412, "version_mismatch")["current"]["version"], 2);
    // Nothing was written.
    assert_eq!(s.get(&path, Some(&token)).await.expect(200)["title"], "v2");
}
