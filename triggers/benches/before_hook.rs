//! One `before_create` per write: validate a title, set a slug (target ≤ 50 µs at the median).
//!
//! `cargo bench -p ferrobase-triggers --bench before_hook`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use ferrobase_triggers::{
    BeforeOutcome, Call, Host, HostError, HostResult, HttpRequest, HttpResponse, Scripts,
};
use serde_json::{Map, Value, json};

const SCRIPT: &str = r#"
fn before_create(record, ctx) {
    let title = record.title;
    if type_of(title) != "string" || title.is_empty() { throw "title is required"; }
    if title.len() > 200 { throw "title is too long"; }
    let slug = title.to_lower();
    slug.trim();
    slug.replace(" ", "-");
    record.slug = slug;
    record.author = ctx.auth.id;
    record
}
"#;

/// The hook touches no host service.
struct Unused;

impl Host for Unused {
    fn db_get(&self, _: &str, _: &str) -> HostResult<Option<Value>> {
        Err(HostError::new("unused"))
    }
    fn db_find(&self, _: &str, _: &str, _: Option<&str>, _: Option<u64>) -> HostResult<Vec<Value>> {
        Err(HostError::new("unused"))
    }
    fn db_create(&self, _: &str, _: Map<String, Value>) -> HostResult<Value> {
        Err(HostError::new("unused"))
    }
    fn db_update(&self, _: &str, _: &str, _: Map<String, Value>) -> HostResult<Value> {
        Err(HostError::new("unused"))
    }
    fn db_delete(&self, _: &str, _: &str) -> HostResult<()> {
        Err(HostError::new("unused"))
    }
    fn push_send(&self, _: Value) -> HostResult<String> {
        Err(HostError::new("unused"))
    }
    fn mail_send(&self, _: &str, _: &str, _: &str) -> HostResult<()> {
        Err(HostError::new("unused"))
    }
    fn http_request(&self, _: HttpRequest) -> HostResult<HttpResponse> {
        Err(HostError::new("unused"))
    }
    fn log(&self, _: &str) {}
}

fn before_hook(c: &mut Criterion) {
    let files = BTreeMap::from([("triggers/posts.rhai".to_string(), SCRIPT.to_string())]);
    let scripts = Scripts::compile(&files).expect("compiles");
    let hook = scripts
        .check_reference("triggers/posts.rhai#before_create", 2)
        .expect("defined");
    let host: Arc<dyn Host> = Arc::new(Unused);
    let record = json!({
        "title": "Hello Ferrobase World",
        "body": "First post, with a body of a realistic length for a blog post preview.",
        "published": true,
        "tags": ["intro", "news"],
    });

    let out = scripts.before(&hook, record.clone(), Call::new(host.clone()));
    assert!(
        matches!(&out, Ok(BeforeOutcome::Write(r)) if r["slug"] == "hello-ferrobase-world"),
        "{out:?}"
    );

    c.bench_function("before_create: validate title, set slug", |b| {
        b.iter(|| {
            let out = scripts
                .before(&hook, black_box(record.clone()), Call::new(host.clone()))
                .expect("runs");
            match out {
                BeforeOutcome::Write(r) => black_box(r),
                BeforeOutcome::Rejected(m) => panic!("rejected: {m}"),
            }
        })
    });
}

criterion_group!(benches, before_hook);
criterion_main!(benches);
