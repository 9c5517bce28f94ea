//! Trigger scripts on the command line: the compile check `plan` and `apply` run before
//! talking to the server (a script that does not compile, or a hook naming a function that does
//! not exist, exits 2 with file and line and nothing is applied), and `ferrobase triggers test`,
//! which runs one hook locally on a record.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use ferrobase_triggers::{
    Auth, BeforeOutcome, Call, Host, HostError, HostResult, HttpRequest, HttpResponse, RunError,
    Scripts,
};
use serde_json::{Map, Value};

use crate::Failure;

/// Arity of every hook: `(record, ctx)` for before-hooks, `(change, ctx)` for after-hooks.
const HOOK_ARITY: usize = 2;

/// Compiles the project's scripts and checks every collection's hook references.
pub fn check_project(p: &ferrobase_schema::Project) -> Result<(), Failure> {
    let scripts = compile(&p.scripts)?;
    let mut errors = Vec::new();
    for c in &p.collections {
        for (hook, target) in &c.triggers {
            if let Err(e) = scripts.check_reference(target, HOOK_ARITY) {
                errors.push(format!(
                    "  collections/{}.toml: [triggers] {hook}: {e}",
                    c.name
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::usage(format!(
            "trigger references do not resolve:\n{}",
            errors.join("\n")
        )))
    }
}

fn compile(files: &BTreeMap<String, String>) -> Result<Scripts, Failure> {
    Scripts::compile(files).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        Failure::usage(format!(
            "trigger scripts do not compile:\n{}",
            lines.join("\n")
        ))
    })
}

#[derive(Args)]
pub struct TestArgs {
    /// The hook, as in a collection file: `triggers/posts.rhai#before_create`.
    pub hook: String,
    /// The record (before-hooks) or change (`{"op", "record", "previous"}`, after-hooks) as JSON.
    #[arg(long)]
    pub record: String,
    /// The caller, as JSON `{"id", "email", "role"}` (default: anonymous).
    #[arg(long)]
    pub auth: Option<String>,
    /// The stored record, for `before_update` / `before_delete` (`ctx.previous`).
    #[arg(long)]
    pub previous: Option<String>,
    /// Project folder (scripts are read relative to it).
    #[arg(long, default_value = ".")]
    pub project: PathBuf,
}

/// `ctx` for a local run: logs go to stderr; the database, push, mail and HTTP are the
/// server's, so here they fail with a message saying so (the script stops there, with its
/// line).
struct LocalHost;

fn unavailable<T>(what: &str) -> HostResult<T> {
    Err(HostError::new(format!(
        "{what} is not available in `ferrobase triggers test` (it runs against a server)"
    )))
}

impl Host for LocalHost {
    fn db_get(&self, _: &str, _: &str) -> HostResult<Option<Value>> {
        unavailable("ctx.db")
    }
    fn db_find(&self, _: &str, _: &str, _: Option<&str>, _: Option<u64>) -> HostResult<Vec<Value>> {
        unavailable("ctx.db")
    }
    fn db_create(&self, _: &str, _: Map<String, Value>) -> HostResult<Value> {
        unavailable("ctx.db")
    }
    fn db_update(&self, _: &str, _: &str, _: Map<String, Value>) -> HostResult<Value> {
        unavailable("ctx.db")
    }
    fn db_delete(&self, _: &str, _: &str) -> HostResult<()> {
        unavailable("ctx.db")
    }
    fn push_send(&self, _: Value) -> HostResult<String> {
        unavailable("ctx.push")
    }
    fn mail_send(&self, _: &str, _: &str, _: &str) -> HostResult<()> {
        unavailable("ctx.mail")
    }
    fn http_request(&self, _: HttpRequest) -> HostResult<HttpResponse> {
        unavailable("ctx.http")
    }
    fn log(&self, message: &str) {
        eprintln!("log: {message}");
    }
}

fn json_arg(flag: &str, text: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|e| Failure::usage(format!("{flag} is not JSON: {e}")))
}

/// Exit 0 with the record (or nothing, for after-hooks) on stdout; 1 with the thrown message
/// or the failure; 2 for usage and compile errors.
pub fn test(a: TestArgs) -> Result<u8, Failure> {
    let (file, _) = a
        .hook
        .split_once('#')
        .ok_or_else(|| Failure::usage("name the hook as FILE#function"))?;
    let source = std::fs::read_to_string(a.project.join(file))
        .map_err(|e| Failure::usage(format!("cannot read {file}: {e}")))?;
    let scripts = compile(&BTreeMap::from([(file.to_owned(), source)]))?;
    let hook = scripts
        .check_reference(&a.hook, HOOK_ARITY)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let input = json_arg("--record", &a.record)?;
    let mut call = Call::new(Arc::new(LocalHost));
    if let Some(auth) = &a.auth {
        let v = json_arg("--auth", auth)?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        call = call.with_auth(Auth {
            id: s("id"),
            email: s("email"),
            role: s("role"),
        });
    }
    if let Some(prev) = &a.previous {
        call = call.with_previous(json_arg("--previous", prev)?);
    }
    let outcome = if hook.function.starts_with("after_") {
        scripts.after(&hook, input, call).map(|()| None)
    } else if hook.function.starts_with("before_delete") {
        scripts.before_delete(&hook, input, call).map(Some)
    } else {
        scripts.before(&hook, input, call).map(Some)
    };
    match outcome {
        Ok(Some(BeforeOutcome::Write(record))) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&Value::Object(record)).unwrap_or_default()
            );
            Ok(0)
        }
        Ok(None) => Ok(0),
        Ok(Some(BeforeOutcome::Rejected(message))) => {
            println!("rejected: {message}");
            Ok(1)
        }
        Err(e @ RunError::Failed { .. }) => Err(Failure::runtime(format!("the hook failed: {e}"))),
    }
}
