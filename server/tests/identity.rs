//! Identity over HTTP on SQLite and PostgreSQL: sign-up, sign-in, tokens, sessions, anonymous
//! upgrade, recovery by email through a real SMTP server, admin support actions, API keys,
//! the audit chain and rate limits.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::smtp::SmtpSink;
use common::{Backend, TestServer, signup};
use ferrobase_server::access::AdminRole;
use reqwest::Method;
use serde_json::{Value, json};

on_both!(
    signup_login_and_me,
    refresh_rotates_and_reuse_revokes,
    logout_and_sessions,
    anonymous_upgrade_keeps_data,
    disabled_users_and_support_actions,
    bad_tokens_are_401,
    api_keys,
    audit_chain_detects_tampering,
);
on_both_backends!(
    expired_access_token,
    password_reset_and_verification_by_email,
    rate_limits,
    forwarded_client_address
);

async fn signup_login_and_me(s: &TestServer) {
    let r = s.post("/v1/auth/signup", None, json!({"email": "Ann@Example.com", "password": "a long password", "data": {"name": "Ann"}})).await;
    let b = r.expect(201).clone();
    assert_eq!(b["user"]["email"], "ann@example.com");
    assert_eq!(b["user"]["name"], "Ann");
    assert_eq!(b["user"]["email_verified"], false);
    assert_eq!(b["token_type"], "Bearer");
    assert!(b["refresh_token"].as_str().unwrap().starts_with("fbr_"));
    assert!(b["user"].get("password_hash").is_none());
    let token = b["access_token"].as_str().unwrap();
    let me = s.get("/v1/auth/me", Some(token)).await;
    assert_eq!(me.expect(200)["email"], "ann@example.com");
    for k in [
        "id",
        "email",
        "email_verified",
        "name",
        "avatar",
        "is_anonymous",
        "created_at",
        "updated_at",
        "version",
    ] {
        assert!(me.body.get(k).is_some(), "{k} missing from {}", me.body);
    }
    s.post(
        "/v1/auth/signup",
        None,
        json!({"email": "ann@example.com", "password": "another password"}),
    )
    .await
    .problem(409, "conflict");
    s.post(
        "/v1/auth/signup",
        None,
        json!({"email": "not-an-email", "password": "a long password"}),
    )
    .await
    .problem(422, "validation_failed");
    s.post(
        "/v1/auth/signup",
        None,
        json!({"email": "b@example.com", "password": "short"}),
    )
    .await
    .problem(422, "validation_failed");
    s.post(
        "/v1/auth/signup",
        None,
        json!({"email": "b@example.com", "password": "x".repeat(5000)}),
    )
    .await
    .problem(422, "validation_failed");
    s.post("/v1/auth/signup", None, json!({"email": "b@example.com", "password": "a long password", "data": {"email_verified": true}})).await.problem(422, "validation_failed");
    s.post("/v1/auth/signup", None, json!({"email": "b@example.com"}))
        .await
        .problem(422, "validation_failed");

    let r = s
        .post(
            "/v1/auth/login",
            None,
            json!({"email": "ANN@example.com", "password": "a long password"}),
        )
        .await;
    assert_eq!(r.expect(200)["user"]["name"], "Ann");
    s.post(
        "/v1/auth/login",
        None,
        json!({"email": "ann@example.com", "password": "wrong password"}),
    )
    .await
    .problem(401, "invalid_credentials");
    s.post(
        "/v1/auth/login",
        None,
        json!({"email": "nobody@example.com", "password": "wrong password"}),
    )
    .await
    .problem(401, "invalid_credentials");
    s.post("/v1/auth/login", None, json!({"email": "", "password": ""}))
        .await
        .problem(401, "invalid_credentials");

    // profile updates, but not the built-in fields
    let r = s
        .patch("/v1/auth/me", Some(token), json!({"name": "Ann B"}))
        .await;
    assert_eq!(r.expect(200)["name"], "Ann B");
    s.patch("/v1/auth/me", Some(token), json!({"email_verified": true}))
        .await
        .problem(422, "validation_failed");
    // password change needs the current password, then signs other sessions out
    s.patch(
        "/v1/auth/me",
        Some(token),
        json!({"password": "new long password"}),
    )
    .await
    .problem(422, "validation_failed");
    s.patch(
        "/v1/auth/me",
        Some(token),
        json!({"password": "new long password", "current_password": "nope nope"}),
    )
    .await
    .problem(401, "invalid_credentials");
    s.patch(
        "/v1/auth/me",
        Some(token),
        json!({"password": "new long password", "current_password": "a long password"}),
    )
    .await
    .expect(200);
    s.post(
        "/v1/auth/login",
        None,
        json!({"email": "ann@example.com", "password": "new long password"}),
    )
    .await
    .expect(200);
    // deleting the account ends its tokens
    s.delete("/v1/auth/me", Some(token)).await.expect(204);
    s.get("/v1/auth/me", Some(token))
        .await
        .problem(401, "unauthenticated");
    s.post(
        "/v1/auth/login",
        None,
        json!({"email": "ann@example.com", "password": "new long password"}),
    )
    .await
    .problem(401, "invalid_credentials");
}

async fn refresh_rotates_and_reuse_revokes(s: &TestServer) {
    let (_, access, refresh1) = signup(s, "r@example.com").await;
    let r = s
        .post("/v1/auth/refresh", None, json!({"refresh_token": refresh1}))
        .await;
    let b = r.expect(200).clone();
    let refresh2 = b["refresh_token"].as_str().unwrap().to_owned();
    let access2 = b["access_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh1, refresh2);
    s.get("/v1/auth/me", Some(&access2)).await.expect(200);
    // the spent token comes back: theft is assumed, the session ends
    s.post("/v1/auth/refresh", None, json!({"refresh_token": refresh1}))
        .await
        .problem(401, "unauthenticated");
    s.post("/v1/auth/refresh", None, json!({"refresh_token": refresh2}))
        .await
        .problem(401, "unauthenticated");
    s.get("/v1/auth/me", Some(&access2))
        .await
        .problem(401, "unauthenticated");
    s.get("/v1/auth/me", Some(&access))
        .await
        .problem(401, "unauthenticated");
    s.post(
        "/v1/auth/refresh",
        None,
        json!({"refresh_token": "fbr_garbage"}),
    )
    .await
    .problem(401, "unauthenticated");
    s.post("/v1/auth/refresh", None, json!({"refresh_token": 42}))
        .await
        .problem(422, "validation_failed");
    let admin = s.admin().await;
    let r = s
        .get("/v1/admin/audit?action=auth.refresh_reuse", Some(&admin))
        .await;
    assert_eq!(r.expect(200)["items"].as_array().unwrap().len(), 1);
}

async fn logout_and_sessions(s: &TestServer) {
    let (_, a1, _) = signup(s, "l@example.com").await;
    let login = |_: ()| async {
        let r = s
            .post(
                "/v1/auth/login",
                None,
                json!({"email": "l@example.com", "password": "a long password"}),
            )
            .await;
        let b = r.expect(200).clone();
        (
            b["access_token"].as_str().unwrap().to_owned(),
            b["refresh_token"].as_str().unwrap().to_owned(),
        )
    };
    let (a2, _) = login(()).await;
    let (a3, r3) = login(()).await;
    let r = s.get("/v1/auth/sessions", Some(&a1)).await;
    let items = r.expect(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 3);
    assert_eq!(items.iter().filter(|i| i["current"] == true).count(), 1);
    for k in [
        "id",
        "current",
        "created_at",
        "last_used_at",
        "ip",
        "user_agent",
    ] {
        assert!(items[0].get(k).is_some());
    }
    // revoke the second session by id
    let me2 = s.get("/v1/auth/sessions", Some(&a2)).await;
    let sid2 = me2.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.delete(&format!("/v1/auth/sessions/{sid2}"), Some(&a1))
        .await
        .expect(204);
    s.get("/v1/auth/me", Some(&a2))
        .await
        .problem(401, "unauthenticated");
    // logout ends the current session, its refresh token too
    s.request(Method::POST, "/v1/auth/logout", Some(&a3), None)
        .await
        .expect(204);
    s.get("/v1/auth/me", Some(&a3))
        .await
        .problem(401, "unauthenticated");
    s.post("/v1/auth/refresh", None, json!({"refresh_token": r3}))
        .await
        .problem(401, "unauthenticated");
    // revoke all others
    let (a4, _) = login(()).await;
    let r = s.delete("/v1/auth/sessions", Some(&a1)).await;
    assert_eq!(r.expect(200)["revoked"], 1);
    s.get("/v1/auth/me", Some(&a4))
        .await
        .problem(401, "unauthenticated");
    s.get("/v1/auth/me", Some(&a1)).await.expect(200);
    s.request(Method::POST, "/v1/auth/logout", None, None)
        .await
        .problem(401, "unauthenticated");
}

async fn anonymous_upgrade_keeps_data(s: &TestServer) {
    s.apply(json!([{"name": "notes", "fields": {"text": {"type": "text"}, "owner": {"type": "relation", "collection": "users"}},
        "rules": {"list": "owner = @auth.id", "view": "owner = @auth.id", "create": "@auth.id != '' && @data.owner = @auth.id",
                  "update": "owner = @auth.id", "delete": "owner = @auth.id"}}])).await;
    let r = s
        .request(Method::POST, "/v1/auth/anonymous", None, None)
        .await;
    let b = r.expect(201).clone();
    assert_eq!(b["user"]["is_anonymous"], true);
    assert_eq!(b["user"]["email"], Value::Null);
    let (uid, token) = (
        b["user"]["id"].as_str().unwrap().to_owned(),
        b["access_token"].as_str().unwrap().to_owned(),
    );
    s.post(
        "/v1/collections/notes/records",
        Some(&token),
        json!({"text": "mine", "owner": uid}),
    )
    .await
    .expect(201);
    s.patch(
        "/v1/auth/me",
        Some(&token),
        json!({"email": "guest@example.com"}),
    )
    .await
    .problem(422, "validation_failed");
    let r = s
        .patch(
            "/v1/auth/me",
            Some(&token),
            json!({"email": "guest@example.com", "password": "a long password"}),
        )
        .await;
    let u = r.expect(200);
    assert_eq!(u["is_anonymous"], false);
    assert_eq!(u["id"], uid.as_str());
    let r = s
        .post(
            "/v1/auth/login",
            None,
            json!({"email": "guest@example.com", "password": "a long password"}),
        )
        .await;
    let t2 = r.expect(200)["access_token"].as_str().unwrap().to_owned();
    let r = s.get("/v1/collections/notes/records", Some(&t2)).await;
    assert_eq!(r.expect(200)["items"][0]["text"], "mine");
}

async fn disabled_users_and_support_actions(s: &TestServer) {
    let (uid, token, refresh) = signup(s, "d@example.com").await;
    let support = s
        .admin_with_role("support@example.com", AdminRole::Support)
        .await;
    let viewer = s
        .admin_with_role("viewer@example.com", AdminRole::Viewer)
        .await;
    let r = s.get("/v1/admin/users?q=d%40example", Some(&viewer)).await;
    let items = r.expect(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["disabled"], false);
    s.post(
        &format!("/v1/admin/users/{uid}/disable"),
        Some(&viewer),
        json!({}),
    )
    .await
    .problem(403, "forbidden");
    let r = s
        .post(
            &format!("/v1/admin/users/{uid}/disable"),
            Some(&support),
            json!({}),
        )
        .await;
    assert_eq!(r.expect(200)["disabled"], true);
    s.get("/v1/auth/me", Some(&token))
        .await
        .problem(401, "unauthenticated");
    s.post("/v1/auth/refresh", None, json!({"refresh_token": refresh}))
        .await
        .problem(401, "unauthenticated");
    s.post(
        "/v1/auth/login",
        None,
        json!({"email": "d@example.com", "password": "a long password"}),
    )
    .await
    .problem(403, "account_disabled");
    s.post(
        "/v1/auth/login",
        None,
        json!({"email": "d@example.com", "password": "bad password"}),
    )
    .await
    .problem(401, "invalid_credentials");
    s.post(
        &format!("/v1/admin/users/{uid}/enable"),
        Some(&support),
        json!({}),
    )
    .await
    .expect(200);
    let r = s
        .post(
            "/v1/auth/login",
            None,
            json!({"email": "d@example.com", "password": "a long password"}),
        )
        .await;
    let t2 = r.expect(200)["access_token"].as_str().unwrap().to_owned();
    s.post(
        &format!("/v1/admin/users/{uid}/revoke-sessions"),
        Some(&support),
        json!({}),
    )
    .await
    .expect(200);
    s.get("/v1/auth/me", Some(&t2))
        .await
        .problem(401, "unauthenticated");
    let r = s
        .get(&format!("/v1/admin/users/{uid}/export"), Some(&support))
        .await;
    assert_eq!(r.expect(200)["user"]["email"], "d@example.com");
    s.delete(&format!("/v1/admin/users/{uid}"), Some(&support))
        .await
        .problem(403, "forbidden");
    s.delete(&format!("/v1/admin/users/{uid}"), Some(&s.admin().await))
        .await
        .expect(204);
    s.get(&format!("/v1/admin/users/{uid}"), Some(&support))
        .await
        .problem(404, "not_found");
    // every admin action is audited
    let owner = s.admin().await;
    let r = s
        .get(&format!("/v1/admin/audit?target=user:{uid}"), Some(&owner))
        .await;
    let actions: Vec<String> = r.expect(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    for a in [
        "admin.user.disable",
        "admin.user.enable",
        "admin.user.revoke_sessions",
        "admin.user.export",
        "user.delete",
    ] {
        assert!(
            actions.contains(&a.to_owned()),
            "{a} missing in {actions:?}"
        );
    }
    let e = &r.body["items"][0];
    for k in [
        "id",
        "at",
        "actor",
        "action",
        "target",
        "ip",
        "user_agent",
        "details",
        "hash",
        "prev_hash",
    ] {
        assert!(e.get(k).is_some(), "{k} missing in {e}");
    }
    assert_eq!(e["actor"]["type"], "admin");
    // only owners manage admins
    s.post(
        "/v1/admin/admins",
        Some(&support),
        json!({"email": "x@example.com", "password": "a long password", "role": "admin"}),
    )
    .await
    .problem(403, "forbidden");
    let r = s
        .post(
            "/v1/admin/admins",
            Some(&owner),
            json!({"email": "x@example.com", "password": "a long password", "role": "admin"}),
        )
        .await;
    let new_id = r.expect(201)["id"].as_str().unwrap().to_owned();
    assert_eq!(
        s.get("/v1/admin/admins", Some(&owner)).await.expect(200)["items"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    s.delete(&format!("/v1/admin/admins/{new_id}"), Some(&owner))
        .await
        .expect(204);
}

async fn bad_tokens_are_401(s: &TestServer) {
    let (_, token, _) = signup(s, "t@example.com").await;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    // alg: none
    let none_header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let forged_none = format!("{none_header}.{}.", parts[1]);
    // tampered claims
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!(uuid::Uuid::now_v7().to_string());
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    // signed with another key
    let header: Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = header["kid"].as_str().map(str::to_owned);
    let other = jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"another key entirely"),
    )
    .unwrap();
    for bad in [
        forged_none.as_str(),
        tampered.as_str(),
        other.as_str(),
        "garbage",
        "a.b.c",
        "",
        "fba_x",
        "fbk_x",
        &"x".repeat(5000),
    ] {
        let r = s.get("/v1/auth/me", Some(bad)).await;
        assert_eq!(r.status.as_u16(), 401, "{bad}: {}", r.body);
        // never anonymous, also on public routes
        let r = s.get("/v1/collections/users/records", Some(bad)).await;
        assert_eq!(r.status.as_u16(), 401);
    }
    s.request_with(
        Method::GET,
        "/v1/auth/me",
        None,
        None,
        &[("authorization", "Basic abc")],
    )
    .await
    .problem(401, "unauthenticated");
}

async fn api_keys(s: &TestServer) {
    s.apply(json!([{"name": "secrets", "fields": {"v": {"type": "text"}}}]))
        .await;
    let owner = s.admin().await;
    s.post(
        "/v1/admin/api-keys",
        Some(&owner),
        json!({"name": "ci", "scopes": ["records:read", "bogus"]}),
    )
    .await
    .problem(422, "validation_failed");
    s.post(
        "/v1/admin/api-keys",
        Some(&owner),
        json!({"name": "ci", "scopes": []}),
    )
    .await
    .problem(422, "validation_failed");
    let r = s
        .post(
            "/v1/admin/api-keys",
            Some(&owner),
            json!({"name": "reader", "scopes": ["records:read"]}),
        )
        .await;
    let b = r.expect(201).clone();
    let reader = b["key"].as_str().unwrap().to_owned();
    assert!(reader.starts_with("fbk_"));
    let r = s
        .post(
            "/v1/admin/api-keys",
            Some(&owner),
            json!({"name": "writer", "scopes": ["records:write", "records:read"]}),
        )
        .await;
    let writer = r.expect(201)["key"].as_str().unwrap().to_owned();
    let rec = s
        .post(
            "/v1/collections/secrets/records",
            Some(&writer),
            json!({"v": "s"}),
        )
        .await
        .expect(201)
        .clone();
    s.post(
        "/v1/collections/secrets/records",
        Some(&reader),
        json!({"v": "s"}),
    )
    .await
    .problem(403, "forbidden");
    assert_eq!(
        s.get("/v1/collections/secrets/records", Some(&reader))
            .await
            .expect(200)["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    s.get(
        &format!(
            "/v1/collections/secrets/records/{}",
            rec["id"].as_str().unwrap()
        ),
        Some(&reader),
    )
    .await
    .expect(200);
    s.get("/v1/admin/schema", Some(&reader))
        .await
        .problem(403, "forbidden");
    // the list never shows the secret
    let r = s.get("/v1/admin/api-keys", Some(&owner)).await;
    assert!(!r.expect(200).to_string().contains(&reader));
    s.delete(
        &format!("/v1/admin/api-keys/{}", b["id"].as_str().unwrap()),
        Some(&owner),
    )
    .await
    .expect(204);
    s.get("/v1/collections/secrets/records", Some(&reader))
        .await
        .problem(401, "unauthenticated");
}

async fn audit_chain_detects_tampering(s: &TestServer) {
    let owner = s.admin().await;
    s.post(
        "/v1/admin/api-keys",
        Some(&owner),
        json!({"name": "k1", "scopes": ["records:read"]}),
    )
    .await
    .expect(201);
    signup(s, "a1@example.com").await;
    s.post(
        "/v1/auth/login",
        None,
        json!({"email": "a1@example.com", "password": "wrong password"}),
    )
    .await
    .problem(401, "invalid_credentials");
    let n = ferrobase_server::audit::verify(&s.state.db).await.unwrap();
    assert!(n >= 3, "{n}");
    let r = s
        .get("/v1/admin/audit?action=auth.login_failed", Some(&owner))
        .await;
    assert_eq!(
        r.expect(200)["items"][0]["actor"]["email"],
        "a1@example.com"
    );
    // tamper with one row: verification names it
    s.state
        .db
        .write(|mut c| {
            Box::pin(async move {
                c.execute(
                    "UPDATE _fb_audit SET ip = '10.0.0.1' WHERE action = 'auth.signup'",
                    &[],
                )
                .await?;
                Ok::<_, ferrobase_server::error::Error>(())
            })
        })
        .await
        .unwrap();
    let err = ferrobase_server::audit::verify(&s.state.db)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("altered"), "{err}");
}

async fn expired_access_token(backend: Backend) {
    let Some(s) = TestServer::start_with(backend, |c| c.auth.access_token_ttl = "1s".into()).await
    else {
        return;
    };
    let (_, token, refresh) = signup(&s, "e@example.com").await;
    s.get("/v1/auth/me", Some(&token)).await.expect(200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    s.get("/v1/auth/me", Some(&token))
        .await
        .problem(401, "token_expired");
    let r = s
        .post("/v1/auth/refresh", None, json!({"refresh_token": refresh}))
        .await;
    let fresh = r.expect(200)["access_token"].as_str().unwrap().to_owned();
    s.get("/v1/auth/me", Some(&fresh)).await.expect(200);
    s.stop().await;
}

fn token_from(msg: &common::smtp::Message) -> String {
    let text = msg.text();
    let i = text.find("token=").expect("link with a token");
    text[i + 6..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

async fn password_reset_and_verification_by_email(backend: Backend) {
    let sink = SmtpSink::start().await;
    let cfg = sink.config();
    let Some(s) = TestServer::start_with(backend, move |c| {
        c.smtp = cfg;
        c.mail.link_base = "https://app.example/auth".into();
        c.mail.app_name = "Photoshare".into();
    })
    .await
    else {
        return;
    };
    let (_, token, _) = signup(&s, "m@example.com").await;
    // verification mail on signup
    let msg = sink
        .wait_for("m@example.com", Duration::from_secs(10))
        .await
        .expect("verification mail");
    assert!(msg.subject().contains("Photoshare"), "{}", msg.subject());
    assert!(
        msg.text()
            .contains("https://app.example/auth/verify-email?token=")
    );
    let vt = token_from(&msg);
    s.post("/v1/auth/verify-email/confirm", None, json!({"token": vt}))
        .await
        .expect(200);
    assert_eq!(
        s.get("/v1/auth/me", Some(&token)).await.expect(200)["email_verified"],
        true
    );
    s.post("/v1/auth/verify-email/confirm", None, json!({"token": vt}))
        .await
        .problem(400, "invalid_token");

    // reset: unknown email answers the same
    s.post(
        "/v1/auth/password-reset/request",
        None,
        json!({"email": "nobody@example.com"}),
    )
    .await
    .expect(202);
    s.post(
        "/v1/auth/password-reset/request",
        None,
        json!({"email": "M@example.com"}),
    )
    .await
    .expect(202);
    let msg = loop {
        let msgs = sink.messages();
        if let Some(m) = msgs
            .iter()
            .find(|m| m.text().contains("reset-password?token="))
        {
            break m.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        sink.messages()
            .iter()
            .all(|m| !m.to.iter().any(|t| t.contains("nobody")))
    );
    let rt = token_from(&msg);
    s.post(
        "/v1/auth/password-reset/confirm",
        None,
        json!({"token": rt, "password": "short"}),
    )
    .await
    .problem(422, "validation_failed");
    s.post(
        "/v1/auth/password-reset/confirm",
        None,
        json!({"token": rt, "password": "brand new password"}),
    )
    .await
    .expect(200);
    s.post(
        "/v1/auth/password-reset/confirm",
        None,
        json!({"token": rt, "password": "brand new password 2"}),
    )
    .await
    .problem(400, "invalid_token");
    s.post(
        "/v1/auth/password-reset/confirm",
        None,
        json!({"token": "forged", "password": "brand new password"}),
    )
    .await
    .problem(400, "invalid_token");
    // the old session ended, the new password works
    s.get("/v1/auth/me", Some(&token))
        .await
        .problem(401, "unauthenticated");
    s.post(
        "/v1/auth/login",
        None,
        json!({"email": "m@example.com", "password": "brand new password"}),
    )
    .await
    .expect(200);
    s.stop().await;
}

async fn rate_limits(backend: Backend) {
    let Some(s) = TestServer::start_with(backend, |c| {
        c.auth.rate_limits.enabled = true;
        c.auth.rate_limits.login = "3/min".into();
    })
    .await
    else {
        return;
    };
    signup(&s, "rl@example.com").await;
    for _ in 0..3 {
        s.post(
            "/v1/auth/login",
            None,
            json!({"email": "rl@example.com", "password": "wrong password"}),
        )
        .await
        .problem(401, "invalid_credentials");
    }
    let r = s
        .post(
            "/v1/auth/login",
            None,
            json!({"email": "rl@example.com", "password": "a long password"}),
        )
        .await;
    r.problem(429, "rate_limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // another account from the same address is not affected
    s.post(
        "/v1/auth/login",
        None,
        json!({"email": "other@example.com", "password": "whatever pw"}),
    )
    .await
    .problem(401, "invalid_credentials");
    s.stop().await;
}

async fn session_ip(s: &TestServer, email: &str, xff: &str) -> String {
    let r = s
        .request_with(
            Method::POST,
            "/v1/auth/signup",
            None,
            Some(json!({"email": email, "password": "a long password"})),
            &[("x-forwarded-for", xff)],
        )
        .await;
    let token = r.expect(201)["access_token"].as_str().unwrap().to_owned();
    let r = s.get("/v1/auth/sessions", Some(&token)).await;
    r.expect(200)["items"][0]["ip"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn forwarded_client_address(backend: Backend) {
    // Direct clients cannot claim another address...
    let Some(s) = TestServer::start(backend).await else {
        return;
    };
    assert_eq!(
        session_ip(&s, "x1@example.com", "203.0.113.7").await,
        "127.0.0.1"
    );
    s.stop().await;
    // ...but behind a trusted proxy the address it appended is the client's.
    let Some(s) = TestServer::start_with(backend, |c| c.http.trust_proxy = true).await else {
        return;
    };
    assert_eq!(
        session_ip(&s, "x2@example.com", "198.51.100.1, 203.0.113.7").await,
        "203.0.113.7"
    );
    s.stop().await;
}
