//! `ctx` as Rhai sees it: custom types whose only methods are the ones registered here, each
//! a thin, argument-checking bridge to the [`Host`].
//!
//! ```text
//! ctx.auth            #{id, email, role}         ctx.db.get(c, id)            record or ()
//! ctx.previous        stored record or ()         ctx.db.find(c, filter[, #{sort, limit}])
//! ctx.now()           "2025-01-31T12:00:00.000Z"  ctx.db.create(c, map) / update(c, id, map)
//! ctx.log(msg)                                    ctx.db.delete(c, id)
//! ctx.push.send(map)  push id                     ctx.mail.send(#{to, subject, text})
//! ctx.http.request(#{method, url, headers, body}) -> #{status, headers, body}
//! ```
//!
//! A refused or failed call raises a *system* error: uncatchable by `try`/`catch`, so a script
//! cannot swallow a failed statement of the write's transaction, nor mistake it for a `throw`.
//! The error carries the line of the call (Rhai drops positions of system errors).

use std::cell::RefCell;
use std::sync::Arc;

use rhai::{Dynamic, Engine, EvalAltResult, Map as RhaiMap, NativeCallContext};
use serde_json::Value;

use crate::convert::{map_to_json, to_dynamic};
use crate::host::{Call, Host};

type RhaiResult<T = Dynamic> = Result<T, Box<EvalAltResult>>;

/// What one run's `ctx` holds.
pub(crate) struct CallState {
    pub(crate) host: Arc<dyn Host>,
    auth: RhaiMap,
    previous: Dynamic,
    pub(crate) http_allow: Arc<[String]>,
}

/// `ctx` (type name `Ctx`). Every handle shares the run's state.
#[derive(Clone)]
pub(crate) struct Ctx(Arc<CallState>);

#[derive(Clone)]
struct Db(Arc<CallState>);
#[derive(Clone)]
struct Push(Arc<CallState>);
#[derive(Clone)]
struct Mail(Arc<CallState>);
#[derive(Clone)]
pub(crate) struct Http(pub(crate) Arc<CallState>);

impl Ctx {
    pub(crate) fn new(call: &Call, http_allow: Arc<[String]>) -> Self {
        let auth: RhaiMap = [
            ("id".into(), Dynamic::from(call.auth.id.clone())),
            ("email".into(), Dynamic::from(call.auth.email.clone())),
            ("role".into(), Dynamic::from(call.auth.role.clone())),
        ]
        .into_iter()
        .collect();
        Ctx(Arc::new(CallState {
            host: call.host.clone(),
            auth,
            previous: call.previous.as_ref().map_or(Dynamic::UNIT, to_dynamic),
            http_allow,
        }))
    }
}

/// A refused or failed `ctx` call; travels boxed inside `EvalAltResult::ErrorSystem`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct CtxFailure {
    pub(crate) line: Option<usize>,
    pub(crate) message: String,
}

pub(crate) fn fail(
    nc: &NativeCallContext,
    what: &str,
    message: impl std::fmt::Display,
) -> Box<EvalAltResult> {
    let message = format!("{what}: {message}");
    let line = nc.call_position().line();
    Box::new(EvalAltResult::ErrorSystem(
        String::new(),
        Box::new(CtxFailure { line, message }),
    ))
}

thread_local! {
    /// The host of the run on this thread, for `print` and `debug` (engine-wide callbacks).
    static LOG_HOST: RefCell<Option<Arc<dyn Host>>> = const { RefCell::new(None) };
}

/// Routes `print`/`debug` of this thread to `host` for the life of the guard.
pub(crate) struct LogGuard(Option<Arc<dyn Host>>);

impl LogGuard {
    pub(crate) fn set(host: Arc<dyn Host>) -> Self {
        LogGuard(LOG_HOST.with(|h| h.replace(Some(host))))
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let previous = self.0.take();
        LOG_HOST.with(|h| *h.borrow_mut() = previous);
    }
}

fn log_to_current(message: &str) {
    LOG_HOST.with(|h| {
        if let Some(host) = h.borrow().as_ref() {
            host.log(message);
        }
    });
}

fn display(value: &Dynamic) -> String {
    if value.is_string() {
        value.to_string()
    } else {
        format!("{value}")
    }
}

/// Registers `ctx` and its handles on the engine, and routes `print`/`debug` to the host log.
pub(crate) fn register(engine: &mut Engine) {
    engine.on_print(log_to_current);
    engine.on_debug(|s, _, _| log_to_current(s));

    engine
        .register_type_with_name::<Ctx>("Ctx")
        .register_get("auth", |c: &mut Ctx| Dynamic::from_map(c.0.auth.clone()))
        .register_get("previous", |c: &mut Ctx| c.0.previous.clone())
        .register_get("db", |c: &mut Ctx| Db(c.0.clone()))
        .register_get("push", |c: &mut Ctx| Push(c.0.clone()))
        .register_get("mail", |c: &mut Ctx| Mail(c.0.clone()))
        .register_get("http", |c: &mut Ctx| Http(c.0.clone()))
        .register_fn("now", |_: &mut Ctx| now_rfc3339())
        .register_fn("log", |c: &mut Ctx, msg: Dynamic| {
            c.0.host.log(&display(&msg))
        });

    engine
        .register_type_with_name::<Db>("Db")
        .register_fn("get", db_get)
        .register_fn(
            "find",
            |nc: NativeCallContext, db: &mut Db, c: &str, f: &str| {
                db_find(nc, db, c, f, RhaiMap::new())
            },
        )
        .register_fn("find", db_find)
        .register_fn("create", db_create)
        .register_fn("update", db_update)
        .register_fn("delete", db_delete);
    engine
        .register_type_with_name::<Push>("Push")
        .register_fn("send", push_send);
    engine
        .register_type_with_name::<Mail>("Mail")
        .register_fn("send", mail_send);
    engine
        .register_type_with_name::<Http>("Http")
        .register_fn("request", crate::http::request);
}

/// `ctx.now()`: UTC, milliseconds, the same shape as the server's timestamps.
fn now_rfc3339() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn db_get(nc: NativeCallContext, db: &mut Db, collection: &str, id: &str) -> RhaiResult {
    match db.0.host.db_get(collection, id) {
        Ok(Some(record)) => Ok(to_dynamic(&record)),
        Ok(None) => Ok(Dynamic::UNIT),
        Err(e) => Err(fail(&nc, "ctx.db.get", e)),
    }
}

fn db_find(
    nc: NativeCallContext,
    db: &mut Db,
    collection: &str,
    filter: &str,
    options: RhaiMap,
) -> RhaiResult {
    const WHAT: &str = "ctx.db.find";
    let mut sort = None;
    let mut limit = None;
    for (key, value) in options {
        match key.as_str() {
            "sort" if value.is_unit() => {}
            "sort" => match value.into_immutable_string() {
                Ok(s) => sort = Some(s),
                Err(t) => return Err(fail(&nc, WHAT, format!("sort must be a string, not {t}"))),
            },
            "limit" if value.is_unit() => {}
            "limit" => match value.as_int().ok().and_then(|i| u64::try_from(i).ok()) {
                Some(n) => limit = Some(n),
                None => return Err(fail(&nc, WHAT, "limit must be a non-negative integer")),
            },
            other => return Err(fail(&nc, WHAT, format!("unknown option {other:?}"))),
        }
    }
    match db
        .0
        .host
        .db_find(collection, filter, sort.as_deref(), limit)
    {
        Ok(records) => Ok(Dynamic::from_array(
            records.iter().map(to_dynamic).collect(),
        )),
        Err(e) => Err(fail(&nc, WHAT, e)),
    }
}

fn db_create(nc: NativeCallContext, db: &mut Db, collection: &str, record: RhaiMap) -> RhaiResult {
    let record = map_to_json(&record, "record").map_err(|e| fail(&nc, "ctx.db.create", e))?;
    match db.0.host.db_create(collection, record) {
        Ok(created) => Ok(to_dynamic(&created)),
        Err(e) => Err(fail(&nc, "ctx.db.create", e)),
    }
}

fn db_update(
    nc: NativeCallContext,
    db: &mut Db,
    collection: &str,
    id: &str,
    patch: RhaiMap,
) -> RhaiResult {
    let patch = map_to_json(&patch, "patch").map_err(|e| fail(&nc, "ctx.db.update", e))?;
    match db.0.host.db_update(collection, id, patch) {
        Ok(updated) => Ok(to_dynamic(&updated)),
        Err(e) => Err(fail(&nc, "ctx.db.update", e)),
    }
}

fn db_delete(nc: NativeCallContext, db: &mut Db, collection: &str, id: &str) -> RhaiResult<()> {
    db.0.host
        .db_delete(collection, id)
        .map_err(|e| fail(&nc, "ctx.db.delete", e))
}

fn push_send(nc: NativeCallContext, push: &mut Push, body: RhaiMap) -> RhaiResult<String> {
    let body = map_to_json(&body, "body").map_err(|e| fail(&nc, "ctx.push.send", e))?;
    push.0
        .host
        .push_send(Value::Object(body))
        .map_err(|e| fail(&nc, "ctx.push.send", e))
}

fn mail_send(nc: NativeCallContext, mail: &mut Mail, message: RhaiMap) -> RhaiResult<()> {
    const WHAT: &str = "ctx.mail.send";
    let (mut to, mut subject, mut text) = (None, None, None);
    for (key, value) in message {
        let slot = match key.as_str() {
            "to" => &mut to,
            "subject" => &mut subject,
            "text" => &mut text,
            other => return Err(fail(&nc, WHAT, format!("unknown field {other:?}"))),
        };
        *slot = Some(
            value
                .into_immutable_string()
                .map_err(|t| fail(&nc, WHAT, format!("{key} must be a string, not {t}")))?,
        );
    }
    let (Some(to), Some(subject), Some(text)) = (to, subject, text) else {
        return Err(fail(&nc, WHAT, "to, subject and text are required"));
    };
    mail.0
        .host
        .mail_send(&to, &subject, &text)
        .map_err(|e| fail(&nc, WHAT, e))
}
