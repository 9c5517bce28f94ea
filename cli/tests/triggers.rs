//! `ferrobase triggers test` and the trigger check of `plan`, through the built binary.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("collections")).unwrap();
    std::fs::create_dir_all(root.join("triggers")).unwrap();
    std::fs::write(
        root.join("ferrobase.toml"),
        "[project]\nname = \"app\"\n[environments.local]\nserver = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    std::fs::write(
        root.join("collections/posts.toml"),
        "name = \"posts\"\n[fields]\ntitle = { type = \"text\" }\n[triggers]\nbefore_create = \"triggers/posts.rhai#before_create\"\n",
    )
    .unwrap();
    std::fs::write(
        root.join("triggers/posts.rhai"),
        r#"fn before_create(record, ctx) {
    if record.title == "" { throw "a post needs a title"; }
    let slug = record.title;
    slug.make_lower();
    record.slug = slug;
    record.by = ctx.auth.id;
    record
}
fn uses_db(record, ctx) { ctx.db.get("posts", "x") }
"#,
    )
    .unwrap();
    dir
}

fn run(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrobase"))
        .current_dir(dir)
        .env_remove("FERROBASE_TOKEN")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn triggers_test_prints_the_record_or_the_thrown_message() {
    let p = project();
    let hook = "triggers/posts.rhai#before_create";
    let (code, out, err) = run(
        p.path(),
        &[
            "triggers",
            "test",
            hook,
            "--record",
            r#"{"title":"Hello World"}"#,
            "--auth",
            r#"{"id":"u1"}"#,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["slug"], "hello world");
    assert_eq!(v["by"], "u1");

    let (code, out, _) = run(
        p.path(),
        &["triggers", "test", hook, "--record", r#"{"title":""}"#],
    );
    assert_eq!(code, 1);
    assert!(out.contains("a post needs a title"), "{out}");

    // ctx.db belongs to the server: the run fails with the reason, exit 1.
    let (code, _, err) = run(
        p.path(),
        &[
            "triggers",
            "test",
            "triggers/posts.rhai#uses_db",
            "--record",
            "{}",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("not available"), "{err}");

    let (code, _, err) = run(
        p.path(),
        &[
            "triggers",
            "test",
            "triggers/posts.rhai#nope",
            "--record",
            "{}",
        ],
    );
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = run(
        p.path(),
        &["triggers", "test", hook, "--record", "not json"],
    );
    assert_eq!(code, 2);
}

#[test]
fn plan_refuses_scripts_that_do_not_compile_before_calling_the_server() {
    let p = project();
    std::fs::write(
        p.path().join("triggers/posts.rhai"),
        "fn before_create(record, ctx) {\n  record.title =\n}\n",
    )
    .unwrap();
    let (code, _, err) = run(p.path(), &["plan"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("triggers/posts.rhai:"), "file and line: {err}");

    let (code, _, err) = run(
        p.path(),
        &[
            "triggers",
            "test",
            "triggers/posts.rhai#before_create",
            "--record",
            "{}",
        ],
    );
    assert_eq!(code, 2, "{err}");

    // A hook naming a function the script does not define.
    std::fs::write(
        p.path().join("triggers/posts.rhai"),
        "fn other(record, ctx) { record }\n",
    )
    .unwrap();
    let (code, _, err) = run(p.path(), &["plan"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("before_create"), "{err}");
}
