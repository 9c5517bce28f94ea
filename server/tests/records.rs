//! Records API, black-box over HTTP, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestServer, blog_schema};
use reqwest::Method;
use serde_json::{Value, json};

on_both!(
    create_view_update_delete,
    list_filter_sort_page,
    validation_errors,
    client_ids_and_conflicts,
    if_match_versions,
    stale_deletes_and_racing_updates,
    expand_and_fields,
    batch_is_all_or_nothing,
    locked_collections_need_admin,
    bad_list_parameters,
    injection_is_inert,
    unique_index_conflict,
    change_log_and_concurrent_writes,
);

async fn create_view_update_delete(s: &TestServer) {
    s.apply(blog_schema()).await;
    let r = s
        .post(
            "/v1/collections/posts/records",
            None,
            json!({"title": "Hello", "views": 3}),
        )
        .await;
    let rec = r.expect(201).clone();
    let id = rec["id"].as_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    assert_eq!(rec["version"], 1);
    assert_eq!(rec["published"], false, "default applied");
    assert_eq!(rec["body"], Value::Null, "unset optional fields are null");
    assert_eq!(rec["views"].as_f64(), Some(3.0));
    assert_eq!(r.headers["etag"], "\"1\"");

    let r = s
        .get(&format!("/v1/collections/posts/records/{id}"), None)
        .await;
    assert_eq!(r.expect(200)["title"], "Hello");
    assert_eq!(r.headers["etag"], "\"1\"");

    let r = s
        .patch(
            &format!("/v1/collections/posts/records/{id}"),
            None,
            json!({"title": "Hi", "rank": 7}),
        )
        .await;
    let up = r.expect(200);
    assert_eq!(up["title"], "Hi");
    assert_eq!(up["rank"], 7);
    assert_eq!(up["version"], 2);
    assert_eq!(up["created_at"], rec["created_at"]);
    assert!(up["updated_at"].as_str().unwrap() >= rec["updated_at"].as_str().unwrap());

    s.delete(&format!("/v1/collections/posts/records/{id}"), None)
        .await
        .expect(204);
    s.get(&format!("/v1/collections/posts/records/{id}"), None)
        .await
        .problem(404, "not_found");
    s.delete(&format!("/v1/collections/posts/records/{id}"), None)
        .await
        .problem(404, "not_found");
    s.get("/v1/collections/nope/records", None)
        .await
        .problem(404, "not_found");
}

async fn list_filter_sort_page(s: &TestServer) {
    s.apply(blog_schema()).await;
    let token = s.admin().await;
    let mut ops = Vec::new();
    for i in 0..30 {
        ops.push(
            json!({"method": "POST", "path": "/v1/collections/posts/records", "body": {
                "title": format!("post {i:02} {}", if i % 3 == 0 { "Rust" } else { "other" }),
                "views": i * 10,
                "published": i % 2 == 0,
                "status": if i % 5 == 0 { Value::Null } else { json!("live") },
            }}),
        );
    }
    s.post("/v1/batch", Some(&token), json!({"operations": ops}))
        .await
        .expect(200);

    // filter + sort
    let r = s.get("/v1/collections/posts/records?filter=views%20%3E%20100%20%26%26%20published%20%3D%20true&sort=-views", None).await;
    let items = r.expect(200)["items"].as_array().unwrap().clone();
    let views: Vec<f64> = items.iter().map(|i| i["views"].as_f64().unwrap()).collect();
    assert_eq!(
        views,
        vec![
            280.0, 260.0, 240.0, 220.0, 200.0, 180.0, 160.0, 140.0, 120.0
        ]
    );
    assert!(r.body.get("total").is_none(), "total only with count=true");

    // contains, case-insensitive
    let r = s
        .get(
            "/v1/collections/posts/records?filter=title%20~%20'rust'&count=true",
            None,
        )
        .await;
    assert_eq!(r.expect(200)["total"], 10);

    // null semantics
    let r = s
        .get(
            "/v1/collections/posts/records?filter=status%20%3D%20null&count=true&limit=1",
            None,
        )
        .await;
    assert_eq!(r.expect(200)["total"], 6);
    let r = s
        .get(
            "/v1/collections/posts/records?filter=status%20!%3D%20'live'&count=true&limit=1",
            None,
        )
        .await;
    assert_eq!(r.expect(200)["total"], 6, "!= includes nulls");

    // paging through everything with a cursor visits each record once, in order
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => {
                format!("/v1/collections/posts/records?limit=7&sort=-published,title&cursor={c}")
            }
            None => "/v1/collections/posts/records?limit=7&sort=-published,title".to_owned(),
        };
        let r = s.get(&path, None).await;
        let body = r.expect(200).clone();
        for it in body["items"].as_array().unwrap() {
            seen.push((
                it["published"].as_bool().unwrap(),
                it["title"].as_str().unwrap().to_owned(),
            ));
        }
        match body["next_cursor"].as_str() {
            Some(c) => {
                cursor = Some(c.to_owned());
                // a record inserted mid-paging does not shift the pages
                if seen.len() == 7 {
                    s.post(
                        "/v1/collections/posts/records",
                        None,
                        json!({"title": "aaa late", "published": true}),
                    )
                    .await
                    .expect(201);
                }
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 30, "every record once: {seen:?}");
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    assert_eq!(seen, sorted);

    // default limit 50, total with count
    let r = s
        .get("/v1/collections/posts/records?count=true", None)
        .await;
    let b = r.expect(200);
    assert_eq!(b["total"], 31);
    assert_eq!(b["items"].as_array().unwrap().len(), 31);
    assert_eq!(b["next_cursor"], Value::Null);

    // in-list (the late post has the default 0 views)
    let r = s
        .get(
            "/v1/collections/posts/records?filter=views%20in%20%5B0%2C%2010%2C%2020%5D&count=true",
            None,
        )
        .await;
    assert_eq!(r.expect(200)["total"], 4);
}

async fn validation_errors(s: &TestServer) {
    s.apply(blog_schema()).await;
    let r = s
        .post(
            "/v1/collections/posts/records",
            None,
            json!({"title": "x".repeat(201), "views": "many", "status": "gone", "tags": ["rust", "cobol"], "typo": 1,
                   "version": 3, "due": "yesterday", "site": "ftp://x", "place": {"lat": 100, "lon": 0}, "rank": 1.5}),
        )
        .await;
    let b = r.problem(422, "validation_failed");
    let errors = b["errors"].as_object().unwrap();
    for f in [
        "title", "views", "status", "tags", "typo", "version", "due", "site", "place", "rank",
    ] {
        assert!(errors.contains_key(f), "{f} missing in {errors:?}");
    }
    let r = s
        .post(
            "/v1/collections/posts/records",
            None,
            json!({"body": "no title"}),
        )
        .await;
    assert_eq!(
        r.problem(422, "validation_failed")["errors"]["title"],
        "is required"
    );
    // nothing was written
    let r = s
        .get("/v1/collections/posts/records?count=true", None)
        .await;
    assert_eq!(r.expect(200)["total"], 0);

    // relation must exist
    let r = s
        .post(
            "/v1/collections/posts/records",
            None,
            json!({"title": "t", "author": uuid::Uuid::now_v7().to_string()}),
        )
        .await;
    assert!(
        r.problem(422, "validation_failed")["errors"]["author"]
            .as_str()
            .unwrap()
            .contains("no record")
    );

    // malformed bodies
    let r = s
        .request_with(
            Method::POST,
            "/v1/collections/posts/records",
            None,
            None,
            &[("content-type", "application/json")],
        )
        .await;
    r.problem(400, "invalid_json");
    let resp = s
        .client
        .post(format!("{}/v1/collections/posts/records", s.base))
        .header("content-type", "application/json")
        .body("{\"title\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = s
        .client
        .post(format!("{}/v1/collections/posts/records", s.base))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let r = s
        .post("/v1/collections/posts/records", None, json!([1, 2]))
        .await;
    r.problem(400, "invalid_json");
    // oversized body
    let big = json!({"title": "t", "body": "x".repeat(2 * 1024 * 1024)});
    let r = s.post("/v1/collections/posts/records", None, big).await;
    r.problem(413, "payload_too_large");
}

async fn client_ids_and_conflicts(s: &TestServer) {
    s.apply(blog_schema()).await;
    let id = uuid::Uuid::now_v7().to_string();
    let r = s
        .post(
            "/v1/collections/posts/records",
            None,
            json!({"id": id, "title": "offline"}),
        )
        .await;
    assert_eq!(r.expect(201)["id"], id.as_str());
    let r = s
        .post(
            "/v1/collections/posts/records",
            None,
            json!({"id": id, "title": "again"}),
        )
        .await;
    r.problem(409, "conflict");
    let r = s
        .post(
            "/v1/collections/posts/records",
            None,
            json!({"id": "not-a-uuid", "title": "x"}),
        )
        .await;
    assert!(r.problem(422, "validation_failed")["errors"]["id"].is_string());
    let r = s
        .patch(
            &format!("/v1/collections/posts/records/{id}"),
            None,
            json!({"id": uuid::Uuid::now_v7().to_string()}),
        )
        .await;
    r.problem(422, "validation_failed");
}

async fn if_match_versions(s: &TestServer) {
    s.apply(blog_schema()).await;
    let rec = s
        .post(
            "/v1/collections/posts/records",
            None,
            json!({"title": "v1"}),
        )
        .await
        .expect(201)
        .clone();
    let path = format!(
        "/v1/collections/posts/records/{}",
        rec["id"].as_str().unwrap()
    );
    let r = s
        .request_with(
            Method::PATCH,
            &path,
            None,
            Some(json!({"title": "v2"})),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(r.expect(200)["version"], 2);
    let r = s
        .request_with(
            Method::PATCH,
            &path,
            None,
            Some(json!({"title": "stale"})),
            &[("if-match", "\"1\"")],
        )
        .await;
    let b = r.problem(412, "version_mismatch");
    assert_eq!(b["current"]["title"], "v2");
    assert_eq!(b["current"]["version"], 2);
    let r = s
        .request_with(
            Method::PATCH,
            &path,
            None,
            Some(json!({"title": "x"})),
            &[("if-match", "garbage")],
        )
        .await;
    r.problem(400, "bad_request");
    assert_eq!(s.get(&path, None).await.expect(200)["title"], "v2");
}

/// `If-Match` on DELETE (an offline client's stale delete must not destroy newer data), in a
/// batch too; `last_write_wins` ignores it; and the version is checked by the write statement
/// itself, so of many writers that read the same version exactly one wins (on PostgreSQL a
/// single write runs without a transaction around its read).
async fn stale_deletes_and_racing_updates(s: &TestServer) {
    s.apply(json!([
        {"name": "memos", "fields": {"text": {"type": "text"}},
         "rules": {"list": "true", "view": "true", "create": "true", "update": "true", "delete": "true"}},
        {"name": "drafts", "fields": {"text": {"type": "text"}}, "conflict": "last_write_wins",
         "rules": {"list": "true", "view": "true", "create": "true", "update": "true", "delete": "true"}}
    ]))
    .await;
    let create = |c: &'static str| async move {
        let r = s
            .post(
                &format!("/v1/collections/{c}/records"),
                None,
                json!({"text": "v1"}),
            )
            .await;
        format!(
            "/v1/collections/{c}/records/{}",
            r.expect(201)["id"].as_str().unwrap()
        )
    };
    let path = create("memos").await;
    s.patch(&path, None, json!({"text": "v2"}))
        .await
        .expect(200);

    // Stale, garbage, then current If-Match on DELETE.
    let r = s
        .request_with(Method::DELETE, &path, None, None, &[("if-match", "\"1\"")])
        .await;
    let b = r.problem(412, "version_mismatch");
    assert_eq!(b["current"]["version"], 2);
    assert_eq!(b["current"]["text"], "v2");
    s.get(&path, None).await.expect(200);
    let r = s
        .request_with(Method::DELETE, &path, None, None, &[("if-match", "two")])
        .await;
    r.problem(400, "bad_request");

    // The same in a batch: nothing applied.
    let r = s
        .post(
            "/v1/batch",
            None,
            json!({"operations": [
                {"method": "PATCH", "path": path, "body": {"text": "batched"}},
                {"method": "DELETE", "path": path, "if_match": 1}
            ]}),
        )
        .await;
    let b = r.problem(412, "version_mismatch");
    assert_eq!(b["operation"], 1);
    assert_eq!(s.get(&path, None).await.expect(200)["text"], "v2");

    // Twelve updates based on version 2 at once: one wins, the others see the winner.
    let racers = (0..12).map(|i| {
        let path = path.clone();
        async move {
            s.request_with(
                Method::PATCH,
                &path,
                None,
                Some(json!({"text": format!("racer {i}")})),
                &[("if-match", "\"2\"")],
            )
            .await
        }
    });
    let results = futures::future::join_all(racers).await;
    let won: Vec<_> = results.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        won.len(),
        1,
        "{:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in results.iter().filter(|r| r.status != 200) {
        assert_eq!(r.status, 412);
        assert_eq!(r.body["current"]["version"], 3);
    }
    let current = s.get(&path, None).await;
    assert_eq!(current.expect(200)["text"], won[0].body["text"]);
    // Deleting the version just read works; afterwards the record is gone.
    let r = s
        .request_with(Method::DELETE, &path, None, None, &[("if-match", "\"3\"")])
        .await;
    assert_eq!(r.status, 204);
    s.get(&path, None).await.problem(404, "not_found");

    // last_write_wins: a stale If-Match changes nothing.
    let draft = create("drafts").await;
    s.patch(&draft, None, json!({"text": "v2"}))
        .await
        .expect(200);
    let r = s
        .request_with(Method::DELETE, &draft, None, None, &[("if-match", "\"1\"")])
        .await;
    assert_eq!(r.status, 204);
    s.get(&draft, None).await.problem(404, "not_found");
}

async fn expand_and_fields(s: &TestServer) {
    s.apply(blog_schema()).await;
    let a = s
        .post(
            "/v1/collections/authors/records",
            Some(&s.admin().await),
            json!({"name": "Ann"}),
        )
        .await
        .expect(201)
        .clone();
    let p = s
        .post(
            "/v1/collections/posts/records",
            None,
            json!({"title": "by ann", "author": a["id"]}),
        )
        .await
        .expect(201)
        .clone();
    let r = s
        .get(
            "/v1/collections/posts/records?expand=author&fields=title,author,expand",
            None,
        )
        .await;
    let item = &r.expect(200)["items"][0];
    assert_eq!(item["expand"]["author"]["name"], "Ann");
    assert_eq!(item["id"], p["id"]);
    assert!(
        item.get("views").is_none(),
        "fields limits the output: {item}"
    );
    let r = s
        .get(
            &format!(
                "/v1/collections/posts/records/{}?expand=author",
                p["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(r.expect(200)["expand"]["author"]["name"], "Ann");
    s.get("/v1/collections/posts/records?expand=title", None)
        .await
        .problem(400, "bad_request");
    s.get("/v1/collections/posts/records?fields=nope", None)
        .await
        .problem(400, "bad_request");
}

async fn batch_is_all_or_nothing(s: &TestServer) {
    s.apply(blog_schema()).await;
    let keep = s
        .post(
            "/v1/collections/posts/records",
            None,
            json!({"title": "keep"}),
        )
        .await
        .expect(201)
        .clone();
    let keep_path = format!(
        "/v1/collections/posts/records/{}",
        keep["id"].as_str().unwrap()
    );
    let r = s
        .post("/v1/batch", None, json!({"operations": [
            {"method": "POST", "path": "/v1/collections/posts/records", "body": {"title": "a"}},
            {"method": "PATCH", "path": keep_path, "body": {"title": "changed"}},
            {"method": "POST", "path": "/v1/collections/posts/records", "body": {"views": "bad"}},
        ]}))
        .await;
    let b = r.problem(422, "validation_failed");
    assert_eq!(b["operation"], 2);
    assert_eq!(
        s.get(&keep_path, None).await.expect(200)["title"],
        "keep",
        "nothing applied"
    );
    assert_eq!(
        s.get("/v1/collections/posts/records?count=true", None)
            .await
            .expect(200)["total"],
        1
    );

    let r = s
        .post(
            "/v1/batch",
            None,
            json!({"operations": [
                {"method": "POST", "path": "/v1/collections/posts/records", "body": {"title": "a"}},
                {"method": "PATCH", "path": keep_path, "body": {"title": "changed"}},
                {"method": "DELETE", "path": keep_path},
            ]}),
        )
        .await;
    let results = r.expect(200)["results"].as_array().unwrap().clone();
    assert_eq!(
        results
            .iter()
            .map(|x| x["status"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![201, 200, 204]
    );
    s.get(&keep_path, None).await.problem(404, "not_found");
    s.post("/v1/batch", None, json!({"operations": []}))
        .await
        .problem(422, "validation_failed");
    let r = s
        .post(
            "/v1/batch",
            None,
            json!({"operations": [{"method": "GET", "path": "/v1/health"}]}),
        )
        .await;
    assert_eq!(r.problem(400, "bad_request")["operation"], 0);
}

async fn locked_collections_need_admin(s: &TestServer) {
    s.apply(json!([{"name": "secrets", "fields": {"v": {"type": "text"}}}]))
        .await;
    s.get("/v1/collections/secrets/records", None)
        .await
        .problem(401, "unauthenticated");
    s.post("/v1/collections/secrets/records", None, json!({"v": "x"}))
        .await
        .problem(401, "unauthenticated");
    let token = s.admin().await;
    let rec = s
        .post(
            "/v1/collections/secrets/records",
            Some(&token),
            json!({"v": "x"}),
        )
        .await
        .expect(201)
        .clone();
    s.get(
        &format!(
            "/v1/collections/secrets/records/{}",
            rec["id"].as_str().unwrap()
        ),
        None,
    )
    .await
    .problem(401, "unauthenticated");
    assert_eq!(
        s.get("/v1/collections/secrets/records", Some(&token))
            .await
            .expect(200)["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // a viewer admin reads but does not write
    let viewer = s
        .admin_with_role(
            "viewer@example.com",
            ferrobase_server::access::AdminRole::Viewer,
        )
        .await;
    s.get("/v1/collections/secrets/records", Some(&viewer))
        .await
        .expect(200);
    s.post(
        "/v1/collections/secrets/records",
        Some(&viewer),
        json!({"v": "y"}),
    )
    .await
    .problem(403, "forbidden");
    // garbage tokens are never anonymous
    s.get("/v1/collections/secrets/records", Some("garbage"))
        .await
        .problem(401, "unauthenticated");
    s.get("/v1/collections/secrets/records", Some("fba_forged"))
        .await
        .problem(401, "unauthenticated");
}

async fn bad_list_parameters(s: &TestServer) {
    s.apply(blog_schema()).await;
    for q in [
        "limit=0",
        "limit=501",
        "limit=abc",
        "sort=nope",
        "sort=meta",
        "cursor=zzz",
        "count=maybe",
        "count=",
        "sort=title,title",
    ] {
        let r = s
            .get(&format!("/v1/collections/posts/records?{q}"), None)
            .await;
        r.problem(400, "bad_request");
    }
    for (f, pos) in [
        ("title%20%3D", 7usize),
        ("nope%20%3D%201", 0),
        ("views%20%3E%20'abc'", 8),
        ("(title%20%3D%20'a'", 11),
    ] {
        let r = s
            .get(&format!("/v1/collections/posts/records?filter={f}"), None)
            .await;
        let b = r.problem(400, "invalid_filter");
        assert!(b["position"].as_u64().is_some(), "{b}");
        let _ = pos;
    }
}

async fn injection_is_inert(s: &TestServer) {
    s.apply(blog_schema()).await;
    s.post(
        "/v1/collections/posts/records",
        None,
        json!({"title": "safe"}),
    )
    .await
    .expect(201);
    let attacks = [
        "title%20%3D%20'x''%3B%20DROP%20TABLE%20c_posts%3B%20--'",
        "title%20%3D%20%22%5C%22%20OR%201%3D1%20--%22",
        "title%3B%20DROP%20TABLE%20c_posts",
        "%22title%22%20%3D%20'a'",
    ];
    for a in attacks {
        let r = s
            .get(&format!("/v1/collections/posts/records?filter={a}"), None)
            .await;
        assert!(
            r.status.as_u16() == 200 || r.status.as_u16() == 400,
            "{}",
            r.body
        );
        if r.status.as_u16() == 200 {
            assert_eq!(r.body["items"].as_array().unwrap().len(), 0);
        }
    }
    let r = s
        .get(
            "/v1/collections/posts/records?sort=title%3B%20DROP%20TABLE%20c_posts",
            None,
        )
        .await;
    r.problem(400, "bad_request");
    let r = s
        .post(
            "/v1/collections/posts/records",
            None,
            json!({"title": "'); DROP TABLE c_posts; --"}),
        )
        .await;
    r.expect(201);
    let r = s
        .get("/v1/collections/posts/records?count=true", None)
        .await;
    assert_eq!(r.expect(200)["total"], 2, "data unchanged");
}

async fn unique_index_conflict(s: &TestServer) {
    s.apply(blog_schema()).await;
    let token = s.admin().await;
    s.post(
        "/v1/collections/authors/records",
        Some(&token),
        json!({"name": "A", "email": "a@example.com"}),
    )
    .await
    .expect(201);
    let r = s
        .post(
            "/v1/collections/authors/records",
            Some(&token),
            json!({"name": "B", "email": "a@example.com"}),
        )
        .await;
    let b = r.problem(409, "conflict");
    assert!(b["errors"]["email"].is_string(), "{b}");
}

/// The change log rows of record collections (not `users`), in order.
async fn changes(s: &TestServer) -> Vec<(String, String, String)> {
    use ferrobase_server::db::ColType;
    let rows = s
        .state
        .db
        .read(|mut c| {
            Box::pin(async move {
                c.fetch(
                    "SELECT collection, record_id, op FROM _fb_changes WHERE collection <> 'users' ORDER BY seq",
                    &[],
                    &[ColType::Text, ColType::Text, ColType::Text],
                )
                .await
                .map_err(ferrobase_server::error::Error::from)
            })
        })
        .await
        .unwrap();
    rows.into_iter()
        .map(|r| {
            let mut it = r.into_iter().map(|p| p.into_string().unwrap_or_default());
            (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
        })
        .collect()
}

async fn change_log_and_concurrent_writes(s: &TestServer) {
    s.apply(blog_schema()).await;
    let rec = s
        .post("/v1/collections/posts/records", None, json!({"title": "a"}))
        .await
        .expect(201)
        .clone();
    let id = rec["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/collections/posts/records/{id}");
    s.patch(&path, None, json!({"title": "b"}))
        .await
        .expect(200);
    // failed writes leave no trace in the log
    s.patch(&path, None, json!({"views": "x"}))
        .await
        .problem(422, "validation_failed");
    s.post(
        "/v1/collections/posts/records",
        None,
        json!({"id": id, "title": "dup"}),
    )
    .await
    .problem(409, "conflict");
    s.delete(&path, None).await.expect(204);
    let log = changes(s).await;
    let ops: Vec<&str> = log.iter().map(|(_, _, op)| op.as_str()).collect();
    assert_eq!(ops, ["create", "update", "delete"], "{log:?}");
    assert!(log.iter().all(|(c, r, _)| c == "posts" && *r == id));

    // many concurrent writers, some failing: every acknowledged write is there, once, with its
    // log row; the failures change nothing (they share group commits with the successes)
    let taken = uuid::Uuid::now_v7().to_string();
    s.post(
        "/v1/collections/posts/records",
        None,
        json!({"id": taken, "title": "taken"}),
    )
    .await
    .expect(201);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (client, base, taken) = (s.client.clone(), s.base.clone(), taken.clone());
        tasks.push(tokio::spawn(async move {
            let body = match i % 3 {
                0 => json!({"id": taken, "title": "conflict"}),
                1 => json!({"title": 5}),
                _ => json!({"title": format!("ok {i}")}),
            };
            let r = client
                .post(format!("{base}/v1/collections/posts/records"))
                .json(&body)
                .send()
                .await
                .unwrap();
            (i, r.status().as_u16())
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (i, status) = t.await.unwrap();
        let want = match i % 3 {
            0 => 409,
            1 => 422,
            _ => 201,
        };
        assert_eq!(status, want, "request {i}");
        ok += usize::from(status == 201);
    }
    let r = s
        .get("/v1/collections/posts/records?count=true&limit=1", None)
        .await;
    assert_eq!(r.expect(200)["total"], ok + 1);
    let creates = changes(s)
        .await
        .iter()
        .filter(|(_, _, op)| op == "create")
        .count();
    assert_eq!(creates, ok + 2, "one log row per created record");
}
