//! Outcomes of before, before_delete, after and cron hooks.

use super::*;

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
