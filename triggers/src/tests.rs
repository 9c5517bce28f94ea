//! Unit tests of the engine against a recording [`Host`] (not the server's).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::*;

/// Records every host call as a JSON line; answers from canned values.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<Value>>,
    logs: Mutex<Vec<String>>,
    stored: Mutex<BTreeMap<String, Value>>,
    fail_db: bool,
}

impl Recorder {
    fn calls(&self) -> Vec<Value> {
        self.calls.lock().unwrap().clone()
    }
    fn record(&self, call: Value) {
        self.calls.lock().unwrap().push(call);
    }
}

impl Host for Recorder {
    fn db_get(&self, collection: &str, id: &str) -> HostResult<Option<Value>> {
        self.record(json!(["db_get", collection, id]));
        if self.fail_db {
            return Err(HostError::new("database is locked"));
        }
        Ok(self.stored.lock().unwrap().get(id).cloned())
    }
    fn db_find(
        &self,
        collection: &str,
        filter: &str,
        sort: Option<&str>,
        limit: Option<u64>,
    ) -> HostResult<Vec<Value>> {
        self.record(json!(["db_find", collection, filter, sort, limit]));
        Ok(vec![json!({"id": "a"}), json!({"id": "b"})])
    }
    fn db_create(&self, collection: &str, record: Map<String, Value>) -> HostResult<Value> {
        self.record(json!(["db_create", collection, record]));
        let mut created = record;
        created.insert("id".into(), json!("new1"));
        Ok(Value::Object(created))
    }
    fn db_update(
        &self,
        collection: &str,
        id: &str,
        patch: Map<String, Value>,
    ) -> HostResult<Value> {
        self.record(json!(["db_update", collection, id, patch]));
        Ok(json!({"id": id, "updated": true}))
    }
    fn db_delete(&self, collection: &str, id: &str) -> HostResult<()> {
        self.record(json!(["db_delete", collection, id]));
        Ok(())
    }
    fn push_send(&self, body: Value) -> HostResult<String> {
        self.record(json!(["push_send", body]));
        Ok("push1".into())
    }
    fn mail_send(&self, to: &str, subject: &str, text: &str) -> HostResult<()> {
        self.record(json!(["mail_send", to, subject, text]));
        Ok(())
    }
    fn http_request(&self, r: HttpRequest) -> HostResult<HttpResponse> {
        self.record(json!(["http", r.method, r.url, r.host, r.headers, r.body]));
        Ok(HttpResponse {
            status: 201,
            headers: BTreeMap::from([("content-type".into(), "text/plain".into())]),
            body: "ok".into(),
        })
    }
    fn log(&self, message: &str) {
        self.logs.lock().unwrap().push(message.to_string());
    }
}

const FILE: &str = "triggers/t.rhai";

fn sandbox(limits: Limits) -> Sandbox {
    Sandbox::new(Config {
        limits,
        http_allow: vec!["API.example.com".into()],
    })
}

fn compile_with(sandbox: &Sandbox, source: &str) -> Scripts {
    let files = BTreeMap::from([(FILE.to_string(), source.to_string())]);
    match sandbox.compile(&files) {
        Ok(s) => s,
        Err(e) => panic!("compile: {e:?}"),
    }
}

fn compile(source: &str) -> Scripts {
    compile_with(&sandbox(Limits::default()), source)
}

fn hook(function: &str) -> ScriptRef {
    ScriptRef::new(FILE, function)
}

fn call(host: &Arc<Recorder>) -> Call {
    Call::new(host.clone())
}

/// Runs `before_create` of `source` on `record`.
fn before(source: &str, record: Value) -> (Result<BeforeOutcome, RunError>, Arc<Recorder>) {
    let host = Arc::new(Recorder::default());
    let out = compile(source).before(&hook("before_create"), record, call(&host));
    (out, host)
}

fn failure(out: Result<BeforeOutcome, RunError>) -> (FailureKind, Option<usize>, String) {
    match out {
        Err(RunError::Failed {
            file,
            function,
            line,
            kind,
            message,
        }) => {
            assert_eq!((file.as_str(), function.as_str()), (FILE, "before_create"));
            (kind, line, message)
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn compile_error_names_file_line_and_column() {
    let files = BTreeMap::from([
        ("triggers/ok.rhai".to_string(), "fn a(x) { x }".to_string()),
        (
            "triggers/bad.rhai".to_string(),
            "fn a(x) {\n  let y = ;\n}".to_string(),
        ),
    ]);
    let errors = Scripts::compile(&files).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(e.file, "triggers/bad.rhai");
    assert_eq!(e.line, Some(2));
    assert!(e.column.is_some());
    assert!(e.to_string().starts_with("triggers/bad.rhai:2:"), "{e}");
}

#[test]
fn undefined_variable_is_a_compile_error() {
    let files = BTreeMap::from([(
        FILE.to_string(),
        "fn f(r, ctx) {\n  r.x = nope;\n}".to_string(),
    )]);
    let errors = Scripts::compile(&files).unwrap_err();
    assert_eq!(errors[0].line, Some(2), "{errors:?}");
    assert!(errors[0].message.contains("nope"), "{errors:?}");
}

#[test]
fn missing_function_and_reference_checks() {
    let s = compile("fn before_create(record, ctx) { record }\nfn cleanup(ctx) {}");
    assert!(s.function_exists(FILE, "before_create", 2));
    assert!(!s.function_exists(FILE, "before_create", 1));
    assert!(!s.function_exists("triggers/x.rhai", "before_create", 2));
    assert_eq!(
        s.check_reference("triggers/t.rhai#before_create", 2)
            .unwrap(),
        hook("before_create")
    );
    s.check_reference("triggers/t.rhai#cleanup", 1).unwrap();

    let e = s
        .check_reference("triggers/t.rhai#before_update", 2)
        .unwrap_err();
    assert_eq!(e.file, FILE);
    assert!(e.message.contains("before_update is not defined"), "{e}");
    let e = s.check_reference("triggers/t.rhai#cleanup", 2).unwrap_err();
    assert!(e.message.contains("takes 1 parameter"), "{e}");
    let e = s.check_reference("triggers/none.rhai#f", 2).unwrap_err();
    assert_eq!(e.file, "triggers/none.rhai");
    assert!(e.message.contains("no such script"), "{e}");
    assert!(s.check_reference("triggers/t.rhai", 2).is_err());
    assert!(s.check_reference("triggers/t.rhai#", 2).is_err());

    // Running a stale reference is a failure, not a panic.
    let host = Arc::new(Recorder::default());
    let out = s.before(&hook("before_update"), json!({}), call(&host));
    assert_eq!(out.unwrap_err().kind(), FailureKind::NotFound);
}

const SLUG: &str = r#"
fn before_create(record, ctx) {
    if record.title.len() > 100 { throw "title is too long"; }
    record.title.trim();
    // String methods change the string in place (and return ()).
    let slug = record.title.to_lower();
    slug.replace(" ", "-");
    record.slug = slug;
    record
}
"#;

#[test]
fn before_hook_modifies_a_field_and_adds_a_slug() {
    let (out, _) = before(SLUG, json!({"title": "  Hello World ", "n": 1}));
    assert_eq!(
        out.unwrap(),
        BeforeOutcome::Write(
            json!({"title": "Hello World", "slug": "hello-world", "n": 1})
                .as_object()
                .unwrap()
                .clone()
        )
    );
}

#[test]
fn unit_return_writes_the_input_unchanged() {
    let (out, _) = before(
        "fn before_create(record, ctx) { record.x = 1; }",
        json!({"a": 1}),
    );
    let BeforeOutcome::Write(r) = out.unwrap() else {
        panic!()
    };
    assert_eq!(Value::Object(r), json!({"a": 1}));
}

#[test]
fn throw_rejects_with_the_message() {
    let title = "x".repeat(101);
    let (out, _) = before(SLUG, json!({ "title": title }));
    assert_eq!(
        out.unwrap(),
        BeforeOutcome::Rejected("title is too long".into())
    );

    // From a nested function, a non-string value, a bare throw.
    let src = "fn check(r) { if r.n > 1 { throw \"too big\"; } }\n\
               fn before_create(record, ctx) { check(record); if record.n < 0 { throw #{a: 1}; } \
               if record.n == 0 { throw; } record }";
    let (out, _) = before(src, json!({"n": 2}));
    assert_eq!(out.unwrap(), BeforeOutcome::Rejected("too big".into()));
    let (out, _) = before(src, json!({"n": -1}));
    assert_eq!(out.unwrap(), BeforeOutcome::Rejected("#{\"a\": 1}".into()));
    let (out, _) = before(src, json!({"n": 0}));
    assert_eq!(out.unwrap(), BeforeOutcome::Rejected("rejected".into()));
}

#[test]
fn runtime_error_fails_with_file_function_and_line() {
    let (out, _) = before(
        "fn before_create(record, ctx) {\n  let x = 1;\n  record.title + x.nope\n}",
        json!({"title": "a"}),
    );
    let (kind, line, message) = failure(out);
    assert_eq!(kind, FailureKind::Runtime);
    assert_eq!(line, Some(3), "{message}");

    // Inside a helper function: the line is the helper's.
    let (out, _) = before(
        "fn helper(r) {\n  r.a / 0\n}\nfn before_create(record, ctx) {\n  helper(record)\n}",
        json!({"a": 1}),
    );
    let (kind, line, message) = failure(out);
    assert_eq!(kind, FailureKind::Runtime);
    assert_eq!(line, Some(2), "{message}");
    assert!(message.contains("helper"), "{message}");
}

#[test]
fn returning_something_else_than_a_record_fails() {
    let (out, _) = before("fn before_create(record, ctx) { 42 }", json!({}));
    let (kind, _, message) = failure(out);
    assert_eq!(kind, FailureKind::Conversion);
    assert!(message.contains("i64"), "{message}");

    let (out, _) = before(
        "fn before_create(record, ctx) { record.meta = #{f: Fn(\"x\")}; record }",
        json!({}),
    );
    let (kind, _, message) = failure(out);
    assert_eq!(kind, FailureKind::Conversion);
    assert!(message.contains("record.meta.f"), "{message}");
}

#[test]
fn infinite_loop_is_stopped_by_the_operations_limit() {
    let start = Instant::now();
    let (out, _) = before("fn before_create(record, ctx) { loop {} }", json!({}));
    let (kind, _, message) = failure(out);
    assert_eq!(kind, FailureKind::Limit);
    assert!(message.contains("too many operations"), "{message}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn wall_time_budget_stops_a_loop() {
    let budget = Duration::from_millis(50);
    let limits = Limits {
        max_operations: 0, // unlimited: only the budget can stop it
        wall_time: budget,
        ..Limits::default()
    };
    let s = compile_with(
        &sandbox(limits),
        "fn before_create(record, ctx) { loop {} }",
    );
    let host = Arc::new(Recorder::default());
    let start = Instant::now();
    let out = s.before(&hook("before_create"), json!({}), call(&host));
    let elapsed = start.elapsed();
    let (kind, _, message) = failure(out);
    assert_eq!(kind, FailureKind::WallTime, "{message}");
    assert!(elapsed >= budget, "{elapsed:?}");
    assert!(elapsed < budget * 10, "{elapsed:?}");

    // The per-call override, and the deadline does not outlive its call.
    let s = compile("fn before_create(record, ctx) { loop {} }\nfn ok(r, ctx) { r }");
    let start = Instant::now();
    let out = s.before(
        &hook("before_create"),
        json!({}),
        call(&host).with_wall_time(Duration::ZERO),
    );
    assert!(start.elapsed() < Duration::from_millis(100));
    assert_eq!(out.unwrap_err().kind(), FailureKind::WallTime);
    assert!(s.before(&hook("ok"), json!({}), call(&host)).is_ok());
}

#[test]
fn deep_recursion_hits_the_call_depth_limit() {
    let (out, _) = before(
        "fn down(n) { down(n + 1) }\nfn before_create(record, ctx) { down(0) }",
        json!({}),
    );
    let (kind, _, message) = failure(out);
    assert_eq!(kind, FailureKind::Limit);
    assert!(message.contains("max_call_levels"), "{message}");
}

#[test]
fn growing_strings_arrays_and_maps_hit_the_size_limits() {
    for body in [
        "let s = \"ab\"; loop { s += s; }",
        "let a = []; loop { a.push(1); }",
        // Rhai measures a map when it is assigned or returned, not on each `m[k] = v` (a map
        // grown in an endless loop is stopped by the operations limit instead).
        "let m = #{}; for i in 0..20000 { m[`k${i}`] = i; } m.len()",
    ] {
        let src = format!("fn before_create(record, ctx) {{ {body} }}");
        // Give the debug build all the time and operations it needs, so that the size limit is
        // what stops it.
        let limits = Limits {
            wall_time: Duration::from_secs(60),
            max_operations: 0,
            ..Limits::default()
        };
        let host = Arc::new(Recorder::default());
        let out = compile_with(&sandbox(limits), &src).before(
            &hook("before_create"),
            json!({}),
            call(&host),
        );
        let (kind, _, message) = failure(out);
        assert_eq!(kind, FailureKind::Limit, "{body}: {message}");
        assert!(message.contains("too large"), "{body}: {message}");
    }
}

#[test]
fn a_returned_record_over_the_limits_fails() {
    // Rhai does not measure a map grown by `m[k] = v` when it is returned: the engine checks
    // the record it is handed back.
    let limits = Limits {
        max_map_len: 10,
        max_array_len: 10,
        ..Limits::default()
    };
    for body in [
        "for i in 0..11 { record[`k${i}`] = i; }",
        "record.a = []; for i in 0..11 { record.a.push(i); }",
        "record.m = #{}; for i in 0..11 { record.m[`k${i}`] = i; }",
    ] {
        let src = format!("fn before_create(record, ctx) {{ {body} record }}");
        let host = Arc::new(Recorder::default());
        let out = compile_with(&sandbox(limits.clone()), &src).before(
            &hook("before_create"),
            json!({}),
            call(&host),
        );
        let (kind, _, message) = failure(out);
        assert_eq!(kind, FailureKind::Limit, "{body}: {message}");
    }
}

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
fn before_delete_ignores_the_return_value_but_may_throw() {
    let s = compile("fn before_delete(record, ctx) { if record.locked { throw \"locked\"; } 42 }");
    let host = Arc::new(Recorder::default());
    let h = hook("before_delete");
    let out = s
        .before_delete(&h, json!({"locked": false}), call(&host))
        .unwrap();
    assert_eq!(
        out,
        BeforeOutcome::Write(json!({"locked": false}).as_object().unwrap().clone())
    );
    let out = s
        .before_delete(&h, json!({"locked": true}), call(&host))
        .unwrap();
    assert_eq!(out, BeforeOutcome::Rejected("locked".into()));
}

#[test]
fn after_and_cron_report_throws_as_failures() {
    let s = compile(
        "fn after_create(change, ctx) { throw \"boom\"; }\nfn cleanup(ctx) { ctx.log(\"ran\"); }",
    );
    let host = Arc::new(Recorder::default());
    let e = s
        .after(&hook("after_create"), json!({"op": "create"}), call(&host))
        .unwrap_err();
    assert_eq!(e.kind(), FailureKind::Thrown);
    assert!(e.message().contains("boom"));
    s.cron(&hook("cleanup"), call(&host)).unwrap();
    assert_eq!(*host.logs.lock().unwrap(), vec!["ran"]);
}

#[test]
fn eval_and_import_are_refused() {
    for src in [
        "fn before_create(record, ctx) { eval(\"1\") }",
        "fn before_create(record, ctx) { import \"x\" as y; record }",
        "import \"x\" as y;\nfn before_create(record, ctx) { record }",
    ] {
        let files = BTreeMap::from([(FILE.to_string(), src.to_string())]);
        // Refused at compile time, so `ferrobase plan` reports them with file and line.
        let errors = Scripts::compile(&files).unwrap_err();
        assert_eq!((errors[0].file.as_str(), errors[0].line), (FILE, Some(1)));
        assert!(
            errors[0].message.contains("eval") || errors[0].message.contains("import"),
            "{errors:?}"
        );
    }
}

#[test]
fn top_level_statements_are_never_run() {
    let s = compile("print(\"at load\");\nfn before_create(record, ctx) { record }");
    let host = Arc::new(Recorder::default());
    s.before(&hook("before_create"), json!({}), call(&host))
        .unwrap();
    assert!(host.logs.lock().unwrap().is_empty());
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

#[test]
fn one_engine_many_threads() {
    let s = compile(SLUG);
    std::thread::scope(|scope| {
        for t in 0..4 {
            let s = &s;
            scope.spawn(move || {
                let host = Arc::new(Recorder::default());
                for i in 0..50 {
                    let title = format!("T {t} {i}");
                    let out = s.before(
                        &hook("before_create"),
                        json!({ "title": title }),
                        call(&host),
                    );
                    let BeforeOutcome::Write(r) = out.unwrap() else {
                        panic!()
                    };
                    assert_eq!(r["slug"], json!(format!("t-{t}-{i}")));
                }
            });
        }
    });
}

mod json_round_trip {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use crate::convert::{to_dynamic, to_json};

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            // Finite floats (JSON has no NaN or infinities).
            (-1e15f64..1e15).prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    fn json_object() -> impl Strategy<Value = Value> {
        prop::collection::btree_map(".{0,8}", json_value(), 0..8)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    proptest! {
        #[test]
        fn json_to_rhai_and_back_is_the_identity(value in json_object()) {
            let back = to_json(&to_dynamic(&value), "record").unwrap();
            prop_assert_eq!(back, value);
        }
    }
}
