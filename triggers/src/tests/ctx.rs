//! What `ctx` reaches, argument checks and the HTTP allow-list.

use super::*;

#[test]
fn http_to_a_host_not_allowed_never_reaches_the_host() {
    for url in [
        "https://evil.test/x",
        "https://api.example.com@evil.test/",
        "ftp://api.example.com/",
        "file:///etc/passwd",
        "not a url",
        "https://api.example.com.evil.test/",
    ] {
        let src = format!(
            "fn before_create(record, ctx) {{\n  ctx.http.request(#{{url: \"{url}\"}});\n  record\n}}"
        );
        let (out, host) = before(&src, json!({}));
        let (kind, line, message) = failure(out);
        assert_eq!(kind, FailureKind::Host, "{url}");
        assert!(message.contains("not allowed"), "{url}: {message}");
        assert_eq!(line, Some(2), "{url}");
        assert!(host.calls().is_empty(), "{url}");
    }
}

#[test]
fn host_failures_cannot_be_caught() {
    let src = "fn before_create(record, ctx) {\n  try { ctx.http.request(#{url: \"https://evil.test\"}); } catch (e) { }\n  record\n}";
    let (out, _) = before(src, json!({}));
    assert_eq!(failure(out).0, FailureKind::Host);

    let host = Arc::new(Recorder {
        fail_db: true,
        ..Recorder::default()
    });
    let s = compile(
        "fn before_create(record, ctx) {\n  try { ctx.db.get(\"c\", \"1\") } catch { }\n  record\n}",
    );
    let out = s.before(&hook("before_create"), json!({}), call(&host));
    let (kind, line, message) = failure(out);
    assert_eq!((kind, line), (FailureKind::Host, Some(2)));
    assert!(message.contains("database is locked"), "{message}");
}

#[test]
fn http_to_an_allowed_host_calls_the_host_with_the_parsed_request() {
    let src = r#"fn before_create(record, ctx) {
        let r = ctx.http.request(#{method: "post", url: "https://API.example.com/v1?q=1",
                                   headers: #{"X-Key": "k", n: 2}, body: #{a: [1, 2]}});
        record.status = r.status;
        record.body = r.body;
        record.ct = r.headers["content-type"];
        record
    }"#;
    let (out, host) = before(src, json!({}));
    let BeforeOutcome::Write(r) = out.unwrap() else {
        panic!()
    };
    assert_eq!(
        Value::Object(r),
        json!({"status": 201, "body": "ok", "ct": "text/plain"})
    );
    assert_eq!(
        host.calls(),
        vec![json!([
            "http",
            "POST",
            "https://api.example.com/v1?q=1",
            "api.example.com",
            {"X-Key": "k", "n": "2", "content-type": "application/json"},
            "{\"a\":[1,2]}"
        ])]
    );
}

#[test]
fn ctx_db_push_mail_and_log_reach_the_host() {
    let src = r#"fn after_create(change, ctx) {
        let got = ctx.db.get("posts", change.record.id);
        let missing = ctx.db.get("posts", "nope");
        let found = ctx.db.find("posts", "published = true", #{sort: "-created_at", limit: 5});
        let all = ctx.db.find("tags", "");
        let created = ctx.db.create("audit", #{post: change.record.id, op: change.op, n: found.len()});
        ctx.db.update("posts", "p1", #{views: got.views + 1, missing: missing == ()});
        ctx.db.delete("drafts", created.id);
        let id = ctx.push.send(#{users: [ctx.auth.id], title: "hi"});
        ctx.mail.send(#{to: ctx.auth.email, subject: `push ${id}`, text: "body"});
        ctx.log("done " + all.len());
        print("printed");
    }"#;
    let host = Arc::new(Recorder::default());
    host.stored
        .lock()
        .unwrap()
        .insert("p1".into(), json!({"id": "p1", "views": 41}));
    let s = compile(src);
    let auth = Auth {
        id: "u1".into(),
        email: "u1@example.com".into(),
        role: "user".into(),
    };
    let change = json!({"op": "create", "record": {"id": "p1"}, "previous": null});
    s.after(&hook("after_create"), change, call(&host).with_auth(auth))
        .unwrap();
    assert_eq!(
        host.calls(),
        vec![
            json!(["db_get", "posts", "p1"]),
            json!(["db_get", "posts", "nope"]),
            json!(["db_find", "posts", "published = true", "-created_at", 5]),
            json!(["db_find", "tags", "", null, null]),
            json!(["db_create", "audit", {"post": "p1", "op": "create", "n": 2}]),
            json!(["db_update", "posts", "p1", {"views": 42, "missing": true}]),
            json!(["db_delete", "drafts", "new1"]),
            json!(["push_send", {"users": ["u1"], "title": "hi"}]),
            json!(["mail_send", "u1@example.com", "push push1", "body"]),
        ]
    );
    assert_eq!(*host.logs.lock().unwrap(), vec!["done 2", "printed"]);
}

#[test]
fn ctx_call_arguments_are_checked() {
    for (body, needle) in [
        (
            "ctx.mail.send(#{to: \"a@b.c\", subject: \"s\"})",
            "required",
        ),
        (
            "ctx.mail.send(#{to: \"a\", subject: \"s\", text: \"t\", cc: \"x\"})",
            "unknown field",
        ),
        ("ctx.db.find(\"c\", \"\", #{limit: -1})", "limit"),
        ("ctx.db.find(\"c\", \"\", #{page: 2})", "unknown option"),
        (
            "ctx.http.request(#{method: \"TRACE\", url: \"https://api.example.com\"})",
            "method",
        ),
        ("ctx.db.create(\"c\", #{f: Fn(\"x\")})", "record.f"),
    ] {
        let src = format!("fn before_create(record, ctx) {{ {body}; record }}");
        let (out, host) = before(&src, json!({}));
        let (kind, _, message) = failure(out);
        assert_eq!(kind, FailureKind::Host, "{body}");
        assert!(message.contains(needle), "{body}: {message}");
        assert!(host.calls().is_empty(), "{body}");
    }
}

#[test]
fn ctx_auth_previous_and_now() {
    let src = r#"fn before_update(record, ctx) {
        record.by = ctx.auth.id;
        record.role = ctx.auth.role;
        record.was = ctx.previous.title;
        record.at = ctx.now();
        record
    }"#;
    let s = compile(src);
    let host = Arc::new(Recorder::default());
    let auth = Auth {
        id: "u7".into(),
        role: "admin".into(),
        ..Auth::default()
    };
    let c = call(&host)
        .with_auth(auth)
        .with_previous(json!({"title": "old"}));
    let BeforeOutcome::Write(r) = s
        .before(&hook("before_update"), json!({"title": "new"}), c)
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (&r["by"], &r["role"], &r["was"]),
        (&json!("u7"), &json!("admin"), &json!("old"))
    );
    let at = r["at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
    assert!(at.ends_with('Z'), "{at}");

    // Anonymous: id "", no previous.
    let src = "fn before_create(record, ctx) { record.anon = ctx.auth.id == \"\" && ctx.previous == (); record }";
    let (out, _) = before(src, json!({}));
    let BeforeOutcome::Write(r) = out.unwrap() else {
        panic!()
    };
    assert_eq!(r["anon"], json!(true));
}

#[test]
fn check_url_rules() {
    let allow = vec!["api.example.com".to_string()];
    let (url, host) = check_url("HTTP://Api.Example.com:8080/a", &allow).unwrap();
    assert_eq!(
        (url.as_str(), host.as_str()),
        ("http://api.example.com:8080/a", "api.example.com")
    );
    assert!(check_url("https://api.example.com./", &allow).is_err());
    assert!(check_url("https://127.0.0.1/", &allow).is_err());
    assert!(check_url("data:text/plain,hi", &allow).is_err());
}
