//! The rules matrix: a private per-owner collection and a public-read/owner-write one, every
//! operation by the owner, another user, an anonymous caller, a support admin and API keys,
//! through list, view, create, update, delete, batch and expand — on both dialects.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestServer, signup};
use ferrobase_server::access::AdminRole;
use serde_json::{Value, json};

on_both!(rules_matrix, rule_expressions_with_auth_and_data);

fn schema() -> Value {
    json!([
        {"name": "diaries", "fields": {"text": {"type": "text"}, "owner": {"type": "relation", "collection": "users", "required": true}},
         "rules": {"list": "owner = @auth.id", "view": "owner = @auth.id", "create": "@auth.id != '' && @data.owner = @auth.id",
                   "update": "owner = @auth.id", "delete": "owner = @auth.id"}},
        {"name": "posts", "fields": {"title": {"type": "text"}, "owner": {"type": "relation", "collection": "users", "required": true},
                                      "diary": {"type": "relation", "collection": "diaries"}},
         "rules": {"list": "true", "view": "true", "create": "@auth.id != '' && @data.owner = @auth.id",
                   "update": "owner = @auth.id", "delete": "owner = @auth.id"}}
    ])
}

async fn rules_matrix(s: &TestServer) {
    s.apply(schema()).await;
    let (alice, a_tok, _) = signup(s, "alice@example.com").await;
    let (bob, b_tok, _) = signup(s, "bob@example.com").await;
    let support = s
        .admin_with_role("support@example.com", AdminRole::Support)
        .await;
    let owner_admin = s.admin().await;
    let reader = s
        .post(
            "/v1/admin/api-keys",
            Some(&owner_admin),
            json!({"name": "r", "scopes": ["records:read"]}),
        )
        .await
        .expect(201)["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let writer = s
        .post(
            "/v1/admin/api-keys",
            Some(&owner_admin),
            json!({"name": "w", "scopes": ["records:write"]}),
        )
        .await
        .expect(201)["key"]
        .as_str()
        .unwrap()
        .to_owned();

    // create: only for yourself
    let d = s
        .post(
            "/v1/collections/diaries/records",
            Some(&a_tok),
            json!({"text": "dear diary", "owner": alice}),
        )
        .await
        .expect(201)
        .clone();
    let did = d["id"].as_str().unwrap().to_owned();
    s.post(
        "/v1/collections/diaries/records",
        Some(&b_tok),
        json!({"text": "forged", "owner": alice}),
    )
    .await
    .problem(403, "forbidden");
    s.post(
        "/v1/collections/diaries/records",
        None,
        json!({"text": "anon", "owner": alice}),
    )
    .await
    .problem(401, "unauthenticated");
    s.post(
        "/v1/collections/diaries/records",
        Some(&support),
        json!({"text": "x", "owner": alice}),
    )
    .await
    .problem(403, "forbidden");
    s.post(
        "/v1/collections/diaries/records",
        Some(&reader),
        json!({"text": "x", "owner": alice}),
    )
    .await
    .problem(403, "forbidden");
    s.post(
        "/v1/collections/diaries/records",
        Some(&writer),
        json!({"text": "by key", "owner": bob}),
    )
    .await
    .expect(201);
    // bob cannot relate his post to alice's diary: he cannot view it
    let r = s
        .post(
            "/v1/collections/posts/records",
            Some(&b_tok),
            json!({"title": "b", "owner": bob, "diary": did}),
        )
        .await;
    r.problem(422, "validation_failed");
    let p = s
        .post(
            "/v1/collections/posts/records",
            Some(&a_tok),
            json!({"title": "hello", "owner": alice, "diary": did}),
        )
        .await
        .expect(201)
        .clone();
    let pid = p["id"].as_str().unwrap().to_owned();

    // list: each sees their own diaries; anonymous sees none (200, empty); admins and read keys see all
    let count = |tok: Option<String>| async move {
        let r = s
            .get("/v1/collections/diaries/records?count=true", tok.as_deref())
            .await;
        (r.status.as_u16(), r.body["total"].as_i64().unwrap_or(-1))
    };
    assert_eq!(count(Some(a_tok.clone())).await, (200, 1));
    assert_eq!(count(Some(b_tok.clone())).await, (200, 1));
    assert_eq!(count(None).await, (200, 0));
    assert_eq!(count(Some(support.clone())).await, (200, 2));
    assert_eq!(count(Some(reader.clone())).await, (200, 2));
    assert_eq!(count(Some(writer.clone())).await.0, 403);

    // view: hidden records are 404, not 403
    let dpath = format!("/v1/collections/diaries/records/{did}");
    s.get(&dpath, Some(&a_tok)).await.expect(200);
    s.get(&dpath, Some(&b_tok)).await.problem(404, "not_found");
    s.get(&dpath, None).await.problem(404, "not_found");
    s.get(&dpath, Some(&support)).await.expect(200);
    s.get(&dpath, Some(&reader)).await.expect(200);

    // update/delete of a public post: visible to all, changeable by its owner only
    let ppath = format!("/v1/collections/posts/records/{pid}");
    s.patch(&ppath, Some(&b_tok), json!({"title": "hijack"}))
        .await
        .problem(403, "forbidden");
    s.patch(&ppath, None, json!({"title": "hijack"}))
        .await
        .problem(401, "unauthenticated");
    s.patch(&ppath, Some(&support), json!({"title": "hijack"}))
        .await
        .problem(403, "forbidden");
    s.patch(&ppath, Some(&reader), json!({"title": "hijack"}))
        .await
        .problem(403, "forbidden");
    s.delete(&ppath, Some(&b_tok))
        .await
        .problem(403, "forbidden");
    s.patch(&ppath, Some(&a_tok), json!({"title": "edited"}))
        .await
        .expect(200);
    // on a private diary, others get 404 (existence is not revealed)
    s.patch(&dpath, Some(&b_tok), json!({"text": "x"}))
        .await
        .problem(404, "not_found");
    s.delete(&dpath, Some(&b_tok))
        .await
        .problem(404, "not_found");
    s.delete(&dpath, None).await.problem(404, "not_found");

    // expand: each expanded collection keeps its own view rule
    let r = s
        .get("/v1/collections/posts/records?expand=diary", Some(&b_tok))
        .await;
    assert_eq!(
        r.expect(200)["items"][0]["expand"]["diary"],
        Value::Null,
        "bob may not see alice's diary"
    );
    let r = s
        .get("/v1/collections/posts/records?expand=diary", None)
        .await;
    assert_eq!(r.expect(200)["items"][0]["expand"]["diary"], Value::Null);
    let r = s.get(&format!("{ppath}?expand=diary"), Some(&a_tok)).await;
    assert_eq!(r.expect(200)["expand"]["diary"]["text"], "dear diary");
    let r = s
        .get("/v1/collections/posts/records?expand=diary", Some(&support))
        .await;
    assert_eq!(
        r.expect(200)["items"][0]["expand"]["diary"]["text"],
        "dear diary"
    );

    // batch: the same rules per operation, all or nothing
    let r = s
        .post("/v1/batch", Some(&b_tok), json!({"operations": [
            {"method": "POST", "path": "/v1/collections/diaries/records", "body": {"text": "ok", "owner": bob}},
            {"method": "PATCH", "path": ppath, "body": {"title": "batch hijack"}},
        ]}))
        .await;
    assert_eq!(r.problem(403, "forbidden")["operation"], 1);
    assert_eq!(
        count(Some(b_tok.clone())).await,
        (200, 1),
        "nothing from the failed batch"
    );
    let r = s
        .post(
            "/v1/batch",
            Some(&b_tok),
            json!({"operations": [{"method": "DELETE", "path": dpath}]}),
        )
        .await;
    r.problem(404, "not_found");
    s.get(&ppath, None).await.expect(200);
    assert_eq!(s.get(&ppath, None).await.body["title"], "edited");

    // users: a user sees only themselves by default
    let r = s.get("/v1/collections/users/records", Some(&a_tok)).await;
    let items = r.expect(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], alice.as_str());
    assert!(items[0].get("password_hash").is_none());
    s.get(
        &format!("/v1/collections/users/records/{bob}"),
        Some(&a_tok),
    )
    .await
    .problem(404, "not_found");
    s.post(
        "/v1/collections/users/records",
        Some(&owner_admin),
        json!({"name": "x"}),
    )
    .await
    .problem(403, "forbidden");
    s.delete(&dpath, Some(&a_tok)).await.expect(204);
}

async fn rule_expressions_with_auth_and_data(s: &TestServer) {
    s.apply(json!([
        {"name": "users", "fields": {"nickname": {"type": "text", "max": 30}}},
        {"name": "items", "fields": {"title": {"type": "text"}, "level": {"type": "integer"}},
         "rules": {"list": "@auth.verified = true || level < 3", "view": "true",
                   "create": "@auth.id != '' && @data.level <= 5", "update": "@auth.email ~ '@staff.example'"}}
    ])).await;
    let (_, tok, _) = signup(s, "u@example.com").await;
    let (_, staff, _) = signup(s, "boss@staff.example").await;
    s.post(
        "/v1/collections/items/records",
        Some(&tok),
        json!({"title": "a", "level": 9}),
    )
    .await
    .problem(403, "forbidden");
    let it = s
        .post(
            "/v1/collections/items/records",
            Some(&tok),
            json!({"title": "a", "level": 5}),
        )
        .await
        .expect(201)
        .clone();
    s.post(
        "/v1/collections/items/records",
        Some(&tok),
        json!({"title": "b", "level": 1}),
    )
    .await
    .expect(201);
    let r = s
        .get("/v1/collections/items/records?count=true", Some(&tok))
        .await;
    assert_eq!(
        r.expect(200)["total"],
        1,
        "unverified users see only level < 3"
    );
    let path = format!(
        "/v1/collections/items/records/{}",
        it["id"].as_str().unwrap()
    );
    s.patch(&path, Some(&tok), json!({"title": "x"}))
        .await
        .problem(403, "forbidden");
    s.patch(&path, Some(&staff), json!({"title": "x"}))
        .await
        .expect(200);
    // the users collection was extended with a field
    let r = s
        .patch("/v1/auth/me", Some(&tok), json!({"nickname": "you"}))
        .await;
    assert_eq!(r.expect(200)["nickname"], "you");
    s.patch(
        "/v1/auth/me",
        Some(&tok),
        json!({"nickname": "x".repeat(31)}),
    )
    .await
    .problem(422, "validation_failed");
}
