//! Unit tests of the engine against a recording [`Host`] (not the server's).
//!
//! Layout: compiling and references here; `hooks` (outcomes of before/after/cron), `limits`
//! (the sandbox limits and the wall-time budget), `ctx` (what a script reaches, the HTTP
//! allow-list), `convert` (JSON round trip, property-tested).

mod convert;
mod ctx;
mod hooks;
mod limits;

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
