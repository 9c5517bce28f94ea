//! What the server provides to hooks: the [`Host`] trait behind `ctx`, and the [`Call`] that
//! describes one run (who is calling, the stored record, which host).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

/// A failed host operation. The message goes to the log with the hook's file, function and
/// line; it never reaches an API response, and a script cannot catch it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HostError(pub String);

impl HostError {
    pub fn new(message: impl Into<String>) -> Self {
        HostError(message.into())
    }
}

pub type HostResult<T> = Result<T, HostError>;

/// The server's side of `ctx`. Every method is synchronous: the server runs hooks on a
/// blocking thread (never on an async worker), and blocks on its own async code inside.
///
/// `db_*` run with admin privileges (rules are not applied); for before-hooks inside the
/// write's transaction, for after-hooks and crons in their own. Records cross as JSON.
pub trait Host: Send + Sync {
    /// `ctx.db.get(collection, id)`: the record, or `None` (Rhai `()`) when there is none.
    fn db_get(&self, collection: &str, id: &str) -> HostResult<Option<Value>>;
    /// `ctx.db.find(collection, filter, #{sort, limit})`: `filter` is the filter language of
    /// the records API (`""` for all), `sort` its `sort` parameter (`"-created_at,title"`).
    /// The host applies its own maximum to `limit`.
    fn db_find(
        &self,
        collection: &str,
        filter: &str,
        sort: Option<&str>,
        limit: Option<u64>,
    ) -> HostResult<Vec<Value>>;
    /// `ctx.db.create(collection, map)`: the created record.
    fn db_create(&self, collection: &str, record: Map<String, Value>) -> HostResult<Value>;
    /// `ctx.db.update(collection, id, map)`: `map` is a patch; returns the updated record.
    fn db_update(&self, collection: &str, id: &str, patch: Map<String, Value>)
    -> HostResult<Value>;
    /// `ctx.db.delete(collection, id)`.
    fn db_delete(&self, collection: &str, id: &str) -> HostResult<()>;
    /// `ctx.push.send(map)`: `body` is the body of `POST /v1/push`; returns the push id.
    fn push_send(&self, body: Value) -> HostResult<String>;
    /// `ctx.mail.send(#{to, subject, text})`.
    fn mail_send(&self, to: &str, subject: &str, text: &str) -> HostResult<()>;
    /// `ctx.http.request(#{method, url, headers, body})`. The engine has already checked the
    /// URL against the allow-list; the host must not follow redirects (a redirect could leave
    /// the list), must time out, and should cap the response size.
    fn http_request(&self, request: HttpRequest) -> HostResult<HttpResponse>;
    /// `ctx.log(msg)` and Rhai's `print`/`debug`.
    fn log(&self, message: &str);
}

/// An outgoing request of `ctx.http.request`, already checked against the allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Upper case: `GET`, `HEAD`, `POST`, `PUT`, `PATCH` or `DELETE` (default `GET`).
    pub method: String,
    /// The URL as parsed and normalised (`http` or `https`, an allowed host).
    pub url: String,
    /// The host part of `url`, lower case, as matched against the allow-list.
    pub host: String,
    /// Header names as the script wrote them; values converted to strings.
    pub headers: BTreeMap<String, String>,
    /// A string body as given; a map or array body is sent as JSON (with `content-type:
    /// application/json` unless the script set one); `None` for no body.
    pub body: Option<String>,
}

/// The answer to an [`HttpRequest`]; the script sees `#{status, headers, body}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// The caller of the write (`ctx.auth` is `#{id, email, role}`). The default is anonymous:
/// every field `""`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    pub id: String,
    pub email: String,
    pub role: String,
}

/// One hook run: what `ctx` holds besides the sandbox's own functions.
#[derive(Clone)]
pub struct Call {
    /// `ctx.auth`.
    pub auth: Auth,
    /// `ctx.previous`: the stored record for `before_update` (and `before_delete`);
    /// `None` is Rhai `()`.
    pub previous: Option<Value>,
    /// The server's implementation of `ctx.db`, `ctx.push`, `ctx.mail`, `ctx.http`, `ctx.log`.
    pub host: Arc<dyn Host>,
    /// Overrides [`crate::Limits::wall_time`] for this run (after-hooks and crons may be
    /// given more time than a before-hook inside a write).
    pub wall_time: Option<Duration>,
}

impl Call {
    /// An anonymous call with no stored record.
    pub fn new(host: Arc<dyn Host>) -> Self {
        Call {
            auth: Auth::default(),
            previous: None,
            host,
            wall_time: None,
        }
    }

    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    pub fn with_previous(mut self, previous: Value) -> Self {
        self.previous = Some(previous);
        self
    }

    pub fn with_wall_time(mut self, wall_time: Duration) -> Self {
        self.wall_time = Some(wall_time);
        self
    }
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("auth", &self.auth)
            .field("previous", &self.previous)
            .field("wall_time", &self.wall_time)
            .finish_non_exhaustive()
    }
}
