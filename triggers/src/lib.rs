//! The Ferrobase trigger engine: Rhai hooks on record writes and crons, in a sandbox.
//!
//! Collections name their hooks as `file.rhai#function` (`[triggers] before_create =
//! "triggers/posts.rhai#before_create"`). The server compiles the project's scripts once
//! ([`Sandbox::compile`] → [`Scripts`]) and runs a hook per write on a blocking thread:
//!
//! ```
//! use std::collections::BTreeMap;
//! # use std::sync::Arc;
//! # use ferrobase_triggers::*;
//! # struct NoHost;
//! # impl Host for NoHost {
//! #   fn db_get(&self, _: &str, _: &str) -> HostResult<Option<serde_json::Value>> { Ok(None) }
//! #   fn db_find(&self, _: &str, _: &str, _: Option<&str>, _: Option<u64>) -> HostResult<Vec<serde_json::Value>> { Ok(vec![]) }
//! #   fn db_create(&self, _: &str, r: serde_json::Map<String, serde_json::Value>) -> HostResult<serde_json::Value> { Ok(r.into()) }
//! #   fn db_update(&self, _: &str, _: &str, r: serde_json::Map<String, serde_json::Value>) -> HostResult<serde_json::Value> { Ok(r.into()) }
//! #   fn db_delete(&self, _: &str, _: &str) -> HostResult<()> { Ok(()) }
//! #   fn push_send(&self, _: serde_json::Value) -> HostResult<String> { Ok("p1".into()) }
//! #   fn mail_send(&self, _: &str, _: &str, _: &str) -> HostResult<()> { Ok(()) }
//! #   fn http_request(&self, _: HttpRequest) -> HostResult<HttpResponse> { Ok(HttpResponse::default()) }
//! #   fn log(&self, _: &str) {}
//! # }
//! let files = BTreeMap::from([(
//!     "triggers/posts.rhai".to_string(),
//!     r#"fn before_create(record, ctx) {
//!            if record.title.len() > 100 { throw "title is too long"; }
//!            record.slug = record.title.to_lower();
//!            record
//!        }"#
//!     .to_string(),
//! )]);
//! let scripts = Scripts::compile(&files).expect("compiles");
//! let hook = scripts.check_reference("triggers/posts.rhai#before_create", 2).expect("defined");
//! let call = Call::new(Arc::new(NoHost));
//! let out = scripts.before(&hook, serde_json::json!({"title": "Hello"}), call).expect("runs");
//! let BeforeOutcome::Write(record) = out else { panic!("rejected") };
//! assert_eq!(record["slug"], "hello");
//! ```
//!
//! # The sandbox
//!
//! A script reaches exactly this:
//! - its arguments (`record`, `change`) — copies; only the returned record is written;
//! - `ctx`, whose only members are these, each a call into the server's [`Host`] with checked
//!   arguments (or a value of the [`Call`]):
//!
//!   ```text
//!   ctx.auth            #{id, email, role}         ctx.db.get(c, id)            record or ()
//!   ctx.previous        stored record or ()         ctx.db.find(c, filter[, #{sort, limit}])
//!   ctx.now()           "2025-01-31T12:00:00.000Z"  ctx.db.create(c, map) / update(c, id, map)
//!   ctx.log(msg)                                    ctx.db.delete(c, id)
//!   ctx.push.send(map)  push id                     ctx.mail.send(#{to, subject, text})
//!   ctx.http.request(#{method, url, headers, body}) -> #{status, headers, body}
//!   ```
//! - Rhai's standard library of pure functions (strings, arrays, maps, math); `print` and
//!   `debug` go to the host's log.
//!
//! And nothing else: Rhai has no file, process, network or environment access of its own;
//! `import` does not exist (the `no_module` feature compiles module resolution out); `eval`
//! is a disabled symbol (it would compile code past `ferrobase plan`); scripts cannot define
//! syntax (`no_custom_syntax`). `ctx.http.request` reaches only hosts on the allow-list, and
//! a URL that is not `http`/`https`, is malformed or names another host fails the run before
//! the host is called. Failures of `ctx` calls are uncatchable by the script.
//!
//! Every limit exists because a hook runs inside a write (or on a shared worker) and must not
//! be able to take the server down with it; see [`Limits`] for each one. Limits stop the
//! script with a [`RunError`] of kind [`FailureKind::Limit`] or [`FailureKind::WallTime`].
//!
//! # Outcomes and the server's answers
//! - [`BeforeOutcome::Write`]: write the returned record (or the input, if the hook returned `()`).
//! - [`BeforeOutcome::Rejected`]: the script called `throw` → 422 `trigger_rejected`, the
//!   message as `detail`.
//! - [`RunError::Failed`]: anything else → 500 `trigger_failed` without details; file,
//!   function, line and message go to the log.
//!
//! # Layout
//! - [`scripts`](crate::scripts): the shared engine ([`Sandbox`]), compiling ([`Scripts`]),
//!   references ([`ScriptRef`]) and the checks of `ferrobase plan`.
//! - `run`: `before`, `before_delete`, `after`, `cron` and the mapping of Rhai errors.
//! - [`host`](crate::host): the [`Host`] trait and the per-run [`Call`].
//! - `ctx` and `http`: the Rhai side of `ctx`, and the allow-list.
//! - [`limits`](crate::limits): [`Limits`] and the wall-time deadline.
//! - [`convert`](crate::convert): JSON ↔ Rhai values.

pub mod convert;
mod ctx;
mod error;
pub mod host;
mod http;
pub mod limits;
mod run;
pub mod scripts;

pub use error::{FailureKind, RunError, ScriptError};
pub use host::{Auth, Call, Host, HostError, HostResult, HttpRequest, HttpResponse};
pub use http::check_url;
pub use limits::Limits;
pub use run::BeforeOutcome;
pub use scripts::{Config, Sandbox, ScriptRef, Scripts};

#[cfg(test)]
mod tests;

// Shared across blocking threads: keep these `Send + Sync` (the `sync` feature of rhai).
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Scripts>();
    assert_send_sync::<Sandbox>();
    assert_send_sync::<Call>();
};
