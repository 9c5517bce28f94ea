//! Edges found by the conformance fuzzer (tests/e2e/schemathesis.sh), on SQLite and PostgreSQL:
//! framework rejections answer problem+json, schema `flags` must be an object, and a PATCH
//! with an invalid body is 422 even when its `If-Match` is stale too. And the defects a
//! black-box suite found acting as a new user: U+0000 in any string (a PostgreSQL 500), a bad
//! token ignored on public routes, body shape errors that named no field, and what the count
//! of a rule-filtered list costs.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Backend, TestServer, blog_schema, signup};
use reqwest::Method;
use serde_json::{Value, json};

on_both!(
    framework_rejections_are_problems,
    schema_flags_must_be_an_object,
    invalid_body_beats_stale_version,
    cors_preflight_lists_the_requested_headers,
    cors_responses_expose_client_headers,
    nul_characters_are_refused_alike,
    bad_token_is_401_on_public_routes,
    body_shape_errors_name_the_field,
    owner_rule_count_uses_the_owner_index,
    cancelled_and_lost_connections_are_not_reused,
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
    let (_, id) = s.blog_post("hello").await;
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
    let (token, id) = s.blog_post("hello").await;

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
    let (token, id) = s.blog_post("v1").await;
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

/// A string holding U+0000 anywhere it could reach the database: a 4xx naming what is wrong,
/// the same on both dialects (PostgreSQL text cannot hold it; the kit fails on any 500).
async fn nul_characters_are_refused_alike(s: &TestServer) {
    let admin = s.admin().await;
    s.apply(blog_schema()).await;
    let (_, user, refresh) = signup(s, "nul@example.com").await;
    let posts = "/v1/collections/posts/records";
    let id = s
        .post(posts, None, json!({"title": "kept"}))
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let record = format!("{posts}/{id}");

    // Record writes: 422 naming the field, for text, select, relation and json values.
    for (field, value) in [
        ("title", json!("a\u{0}b")),
        ("body", json!("\u{0}")),
        ("status", json!("live\u{0}")),
        ("author", json!("x\u{0}")),
        ("meta", json!({"k": ["ok", "a\u{0}"]})),
        ("meta", json!({"k\u{0}": 1})),
    ] {
        let mut body = json!({"title": "t"});
        body[field] = value;
        let r = s.post(posts, None, body.clone()).await;
        let b = r.problem(422, "validation_failed");
        assert!(
            b["errors"][field].as_str().unwrap().contains("U+0000"),
            "{b}"
        );
        let r = s.patch(&record, None, body).await;
        assert!(r.problem(422, "validation_failed")["errors"][field].is_string());
    }
    // Batch: the failing operation's problem, with its index; a NUL id in a path is 404.
    let r = s
        .post(
            "/v1/batch",
            None,
            json!({"operations": [
                {"method": "POST", "path": posts, "body": {"title": "fine"}},
                {"method": "POST", "path": posts, "body": {"title": "a\u{0}"}}]}),
        )
        .await;
    let b = r.problem(422, "validation_failed");
    assert_eq!(b["operation"], 1);
    assert!(b["errors"]["title"].is_string());
    let r = s
        .post(
            "/v1/batch",
            None,
            json!({"operations": [{"method": "DELETE", "path": format!("{posts}/a\u{0}b")}]}),
        )
        .await;
    assert_eq!(r.problem(404, "not_found")["operation"], 0);

    // Query parameters (filter literals, sort, fields, cursor, admin search): 400 naming it.
    for (param, query) in [
        ("filter", "filter=title%3D'a%00b'"),
        ("filter", "filter=title~'%00'"),
        ("sort", "sort=title%00"),
        ("fields", "fields=%00"),
        ("cursor", "cursor=%00"),
    ] {
        let r = s.get(&format!("{posts}?{query}"), Some(&user)).await;
        assert_eq!(r.problem(400, "bad_request")["parameter"], param, "{query}");
    }
    // A cursor whose decoded values hold U+0000.
    let cursor = base64_url(&json!({"s": "title", "v": ["a\u{0}", "b\u{0}"]}).to_string());
    let r = s
        .get(&format!("{posts}?sort=title&cursor={cursor}"), None)
        .await;
    assert_eq!(r.problem(400, "bad_request")["parameter"], "cursor");
    for path in [
        "/v1/admin/users?q=a%00",
        "/v1/admin/audit?actor=user:%00",
        "/v1/admin/audit?action=%00",
    ] {
        s.get(path, Some(&admin)).await.problem(400, "bad_request");
    }
    // Ids in paths: no such resource.
    for path in [
        format!("{posts}/a%00b"),
        "/v1/admin/users/a%00b".to_owned(),
        "/v1/collections/po%00sts/records".to_owned(),
    ] {
        s.get(&path, Some(&admin)).await.problem(404, "not_found");
    }
    s.delete(&format!("{posts}/a%00b"), None)
        .await
        .problem(404, "not_found");
    s.delete("/v1/auth/sessions/a%00b", Some(&user))
        .await
        .problem(404, "not_found");

    // Identity and admin bodies: 422 naming the field.
    for (route, body, field) in [
        (
            "/v1/auth/signup",
            json!({"email": "a\u{0}@example.com", "password": "a long password"}),
            "email",
        ),
        (
            "/v1/auth/signup",
            json!({"email": "n2@example.com", "password": "a long\u{0} password"}),
            "password",
        ),
        (
            "/v1/auth/signup",
            json!({"email": "n3@example.com", "password": "a long password", "data": {"name": "\u{0}"}}),
            "data.name",
        ),
        (
            "/v1/auth/login",
            json!({"email": "nul@example.com\u{0}", "password": "a long password"}),
            "email",
        ),
        (
            "/v1/auth/refresh",
            json!({"refresh_token": format!("{refresh}\u{0}")}),
            "refresh_token",
        ),
        (
            "/v1/auth/password-reset/request",
            json!({"email": "nul\u{0}@example.com"}),
            "email",
        ),
        (
            "/v1/auth/password-reset/confirm",
            json!({"token": "\u{0}", "password": "a long password"}),
            "token",
        ),
        (
            "/v1/auth/verify-email/confirm",
            json!({"token": "\u{0}"}),
            "token",
        ),
        (
            "/v1/admin/auth/login",
            json!({"email": "\u{0}", "password": "x"}),
            "email",
        ),
    ] {
        let r = s.post(route, None, body).await;
        let b = r.problem(422, "validation_failed");
        assert!(b["errors"][field].is_string(), "{route}: {b}");
    }
    let r = s
        .post(
            "/v1/admin/api-keys",
            Some(&admin),
            json!({"name": "k\u{0}", "scopes": ["records:read"]}),
        )
        .await;
    assert!(r.problem(422, "validation_failed")["errors"]["name"].is_string());
    let r = s
        .patch("/v1/auth/me", Some(&user), json!({"name": "\u{0}"}))
        .await;
    assert!(r.problem(422, "validation_failed")["errors"]["name"].is_string());

    // Nothing was written; the account still signs in.
    let r = s.get(&format!("{posts}?count=true"), None).await;
    assert_eq!(
        r.expect(200)["total"],
        1,
        "only the kept record: the batch applied nothing"
    );
    s.post(
        "/v1/auth/login",
        None,
        json!({"email": "nul@example.com", "password": "a long password"}),
    )
    .await
    .expect(200);
}

fn base64_url(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, x)| n | u32::from(*x) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// API.md: an invalid or expired token on ANY route is 401, never anonymous; only health and
/// readiness ignore credentials.
async fn bad_token_is_401_on_public_routes(s: &TestServer) {
    s.apply(blog_schema()).await;
    let (_, user, _) = signup(s, "token@example.com").await;
    let bad = Some("garbage");
    let fake_admin = Some("fba_0123456789abcdef");
    let fake_key = Some("fbk_0123456789abcdef");
    for token in [bad, fake_admin, fake_key] {
        for (method, path, body) in [
            (
                Method::POST,
                "/v1/auth/signup",
                Some(json!({"email": "new@example.com", "password": "a long password"})),
            ),
            (
                Method::POST,
                "/v1/auth/login",
                Some(json!({"email": "token@example.com", "password": "a long password"})),
            ),
            (
                Method::POST,
                "/v1/auth/refresh",
                Some(json!({"refresh_token": "fbr_x"})),
            ),
            (Method::POST, "/v1/auth/anonymous", None),
            (
                Method::POST,
                "/v1/auth/password-reset/request",
                Some(json!({"email": "token@example.com"})),
            ),
            (
                Method::POST,
                "/v1/auth/password-reset/confirm",
                Some(json!({"token": "x", "password": "a long password"})),
            ),
            (
                Method::POST,
                "/v1/auth/verify-email/confirm",
                Some(json!({"token": "x"})),
            ),
            (
                Method::POST,
                "/v1/admin/auth/login",
                Some(json!({"email": "owner@example.com", "password": "x"})),
            ),
            (Method::GET, "/v1/openapi.json", None),
            (Method::GET, "/v1/collections/posts/records", None),
            (
                Method::POST,
                "/v1/collections/posts/records",
                Some(json!({"title": "open rule"})),
            ),
            (
                Method::POST,
                "/v1/batch",
                Some(
                    json!({"operations": [{"method": "POST", "path": "/v1/collections/posts/records", "body": {"title": "b"}}]}),
                ),
            ),
        ] {
            let r = s.request(method, path, token, body).await;
            r.problem(401, "unauthenticated");
        }
    }
    // Nothing happened: no account, no record.
    s.post(
        "/v1/auth/login",
        None,
        json!({"email": "new@example.com", "password": "a long password"}),
    )
    .await
    .problem(401, "invalid_credentials");
    let r = s
        .get("/v1/collections/posts/records?count=true", None)
        .await;
    assert_eq!(r.expect(200)["total"], 0);
    // Health and readiness ignore credentials; a valid token still works on public routes.
    s.get("/v1/health", bad).await.expect(200);
    s.get("/v1/ready", bad).await.expect(200);
    s.get("/v1/collections/posts/records", Some(&user))
        .await
        .expect(200);
    s.get("/v1/openapi.json", Some(&user)).await.expect(200);
    // A token the header cannot carry as a bearer is refused as well.
    let r = s
        .request_with(
            Method::POST,
            "/v1/auth/signup",
            None,
            Some(json!({"email": "new@example.com", "password": "a long password"})),
            &[("authorization", "Basic Zm9vOmJhcg==")],
        )
        .await;
    r.problem(401, "unauthenticated");
}

/// A body missing a required field, carrying an unknown one or a mistyped one: 422 whose
/// `errors` name that field, on every identity and admin body.
async fn body_shape_errors_name_the_field(s: &TestServer) {
    let admin = s.admin().await;
    let pw = "a long password";
    for (route, body, field, token) in [
        ("/v1/auth/signup", json!({"password": pw}), "email", None),
        (
            "/v1/auth/signup",
            json!({"email": "s@example.com"}),
            "password",
            None,
        ),
        (
            "/v1/auth/signup",
            json!({"email": "s@example.com", "password": pw, "nick": "x"}),
            "nick",
            None,
        ),
        (
            "/v1/auth/signup",
            json!({"email": 7, "password": pw}),
            "email",
            None,
        ),
        (
            "/v1/auth/login",
            json!({"email": "s@example.com"}),
            "password",
            None,
        ),
        (
            "/v1/auth/login",
            json!({"email": "s@example.com", "password": pw, "remember": true}),
            "remember",
            None,
        ),
        ("/v1/auth/refresh", json!({}), "refresh_token", None),
        (
            "/v1/auth/refresh",
            json!({"refresh_token": ["x"]}),
            "refresh_token",
            None,
        ),
        (
            "/v1/auth/password-reset/request",
            json!({"mail": "s@example.com"}),
            "mail",
            None,
        ),
        (
            "/v1/auth/password-reset/confirm",
            json!({"token": "x"}),
            "password",
            None,
        ),
        ("/v1/auth/verify-email/confirm", json!({}), "token", None),
        (
            "/v1/admin/auth/login",
            json!({"email": "owner@example.com"}),
            "password",
            None,
        ),
        (
            "/v1/admin/api-keys",
            json!({"scopes": ["records:read"]}),
            "name",
            Some(admin.as_str()),
        ),
        (
            "/v1/admin/api-keys",
            json!({"name": "k", "scopes": ["records:read"], "x": 1}),
            "x",
            Some(admin.as_str()),
        ),
        (
            "/v1/admin/admins",
            json!({"email": "a2@example.com", "role": "viewer"}),
            "password",
            Some(admin.as_str()),
        ),
        (
            "/v1/admin/schema/plan",
            json!({"collections": 5}),
            "collections",
            Some(admin.as_str()),
        ),
        (
            "/v1/batch",
            json!({"operations": [{"path": "/v1/collections/x/records"}]}),
            "operations[0].method",
            None,
        ),
    ] {
        let r = s.post(route, token, body).await;
        let b = r.problem(422, "validation_failed");
        let errors = b["errors"].as_object().unwrap();
        assert!(
            errors.get(field).is_some_and(Value::is_string),
            "{route}: errors must name `{field}`: {b}"
        );
    }
}

/// `count=true` over an owner rule: exact, and a bare count(*) both dialects answer from the
/// `(owner, id)` index (SQLite: a covering index search) rather than by scanning the table.
async fn owner_rule_count_uses_the_owner_index(s: &TestServer) {
    use ferrobase_server::access::Principal;
    use ferrobase_server::db::{ColType, DbError};
    use ferrobase_server::records::{Actor, list::count_query};

    s.apply(json!([{
        "name": "notes",
        "fields": {"text": {"type": "text"}, "owner": {"type": "relation", "collection": "users", "required": true}},
        "rules": {"list": "owner = @auth.id", "view": "owner = @auth.id",
                  "create": "@data.owner = @auth.id"},
        "indexes": [{"fields": ["owner"]}]
    }]))
    .await;
    let (me, token, _) = signup(s, "counter@example.com").await;
    let (other, other_token, _) = signup(s, "other@example.com").await;
    for (owner, t, n) in [(&me, &token, 3), (&other, &other_token, 2)] {
        for i in 0..n {
            s.post(
                "/v1/collections/notes/records",
                Some(t),
                json!({"text": format!("n{i}"), "owner": owner}),
            )
            .await
            .expect(201);
        }
    }
    let r = s
        .get(
            "/v1/collections/notes/records?count=true&limit=1",
            Some(&token),
        )
        .await;
    let b = r.expect(200);
    assert_eq!(b["total"], 3, "exact: only the caller's notes");
    assert_eq!(b["items"].as_array().unwrap().len(), 1);

    let info = s.state.catalog.current().get("notes").unwrap();
    let actor = Actor::new(Principal::User {
        id: me.clone(),
        email: "counter@example.com".into(),
        verified: false,
        role: String::new(),
        tenant: String::new(),
        session: String::new(),
    });
    let pg = s.backend == Backend::Postgres;
    let dialect = s.state.db.dialect();
    for filter in [None, Some("text != 'n9'")] {
        let (sql, params) = count_query(&info, &actor, filter, dialect).unwrap();
        assert!(
            sql.starts_with("SELECT count(*) FROM \"c_notes\" WHERE "),
            "{sql}"
        );
        assert!(!sql.contains("ORDER BY") && !sql.contains("JOIN"), "{sql}");
        let explain = sql.clone();
        let plan: Vec<String> = s
            .state
            .db
            .write(move |mut c| {
                Box::pin(async move {
                    let rows = if pg {
                        // A handful of rows: the planner would scan the table because it is
                        // cheapest; forbid that to learn whether an index can answer.
                        c.execute("SET LOCAL enable_seqscan = off", &[]).await?;
                        c.fetch(&format!("EXPLAIN {explain}"), &params, &[ColType::Text])
                            .await?
                    } else {
                        c.fetch(
                            &format!("EXPLAIN QUERY PLAN {explain}"),
                            &params,
                            &[ColType::Int, ColType::Int, ColType::Int, ColType::Text],
                        )
                        .await?
                    };
                    Ok::<_, DbError>(
                        rows.into_iter()
                            .filter_map(|r| r.last().and_then(|p| p.as_str().map(str::to_owned)))
                            .collect(),
                    )
                })
            })
            .await
            .unwrap();
        let plan = plan.join("\n");
        assert!(
            plan.contains("i_notes_"),
            "the owner index serves the count: {plan}\n{sql}"
        );
        if pg {
            assert!(!plan.contains("Seq Scan"), "{plan}");
        } else {
            assert!(!plan.contains("SCAN c_notes"), "{plan}");
            if filter.is_none() {
                assert!(plan.contains("COVERING INDEX"), "{plan}");
            }
        }
    }

    // An open list rule adds no condition: the count is a bare `count(*)` (SQLite answers it
    // from the b-tree's page counts; `WHERE TRUE` made it test every row, 20× slower).
    s.apply(json!([{
        "name": "open_notes",
        "fields": {"text": {"type": "text"}},
        "rules": {"list": "true", "create": "true"}
    }]))
    .await;
    for i in 0..4 {
        s.post(
            "/v1/collections/open_notes/records",
            None,
            json!({"text": format!("o{i}")}),
        )
        .await
        .expect(201);
    }
    let info = s.state.catalog.current().get("open_notes").unwrap();
    let (sql, params) = count_query(&info, &actor, None, dialect).unwrap();
    assert_eq!(sql, "SELECT count(*) FROM \"c_open_notes\"");
    assert!(params.is_empty());
    let (sql, _) = count_query(&info, &actor, Some("text != 'o1'"), dialect).unwrap();
    assert!(
        sql.starts_with("SELECT count(*) FROM \"c_open_notes\" WHERE "),
        "{sql}"
    );
    let r = s
        .get(
            "/v1/collections/open_notes/records?count=true&limit=1",
            None,
        )
        .await;
    assert_eq!(r.expect(200)["total"], 4);
    let r = s
        .get(
            "/v1/collections/open_notes/records?count=true&limit=1&filter=text%20!%3D%20'o1'",
            None,
        )
        .await;
    assert_eq!(r.expect(200)["total"], 3);
}

/// A read whose future is dropped mid-statement (a client gone, a timeout) and a connection
/// the database killed must not poison later requests. On PostgreSQL the pool (`db/pg.rs`)
/// returns a connection without a ping, so it must close those two instead: the cancelled
/// job's backend and the killed one are never handed out again, and pooled connections are
/// reused (no connection per request).
async fn cancelled_and_lost_connections_are_not_reused(s: &TestServer) {
    use ferrobase_server::db::{ColType, DbError};
    let pg = s.backend == Backend::Postgres;
    let db = s.state.db.clone();
    let pid_sql = if pg {
        "SELECT CAST(pg_backend_pid() AS BIGINT)"
    } else {
        "SELECT CAST(1 AS BIGINT)"
    };
    let read_pid = || {
        let db = db.clone();
        async move {
            db.read(move |mut c| {
                Box::pin(async move {
                    let row = c.fetch_one(pid_sql, &[], &[ColType::Int]).await?;
                    Ok::<_, DbError>(row.and_then(|r| r[0].as_i64()).unwrap_or(-1))
                })
            })
            .await
        }
    };

    // Sequential reads share the pool's few connections.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        seen.insert(read_pid().await.unwrap());
    }
    assert!(seen.len() <= 3, "a connection per request? {seen:?}");

    // A read cancelled while its statement runs.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let slow = if pg {
        "SELECT CAST(pg_backend_pid() AS BIGINT) FROM (SELECT pg_sleep(1)) AS s"
    } else {
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) \
         SELECT count(*) FROM n"
    };
    let db2 = db.clone();
    let cancelled = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        db2.read(move |mut c| {
            Box::pin(async move {
                let me = c.fetch_one(pid_sql, &[], &[ColType::Int]).await?;
                let _ = tx.send(me.and_then(|r| r[0].as_i64()).unwrap_or(-1));
                c.fetch(slow, &[], &[ColType::Int]).await?;
                Ok::<_, DbError>(())
            })
        }),
    )
    .await;
    assert!(cancelled.is_err(), "the slow read should have been cut off");
    let cancelled_pid = rx.await.unwrap();
    for _ in 0..20 {
        let pid = read_pid().await.unwrap();
        if pg {
            assert_ne!(
                pid, cancelled_pid,
                "a cancelled job's connection was reused"
            );
        }
    }
    if !pg {
        return;
    }

    // A connection PostgreSQL terminated: at most the request that finds it fails, and it is
    // never handed out again.
    use sqlx::Connection;
    let victim = read_pid().await.unwrap();
    let mut admin = sqlx::PgConnection::connect(&common::pg_base_url())
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend($1::int)")
        .bind(victim)
        .execute(&mut admin)
        .await
        .unwrap();
    let mut failures = 0;
    for _ in 0..20 {
        match read_pid().await {
            Ok(pid) => assert_ne!(pid, victim, "a terminated connection was reused"),
            Err(_) => failures += 1,
        }
    }
    assert!(
        failures <= 1,
        "{failures} reads failed after one lost connection"
    );
}
