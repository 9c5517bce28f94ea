//! The one table of stable error codes and the problem+json (RFC 9457) body every error becomes.
//!
//! Domain modules return [`Error`] (or their own error converted into it) so the HTTP layer has
//! exactly one place that turns failures into responses. A 5xx never shows its cause: the cause
//! is logged once, with the request id, and the client gets `internal`.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::db::DbError;

/// Stable, machine-readable error codes (the `code` member of every problem).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    BadRequest,
    InvalidJson,
    InvalidFilter,
    ValidationFailed,
    Unauthenticated,
    TokenExpired,
    InvalidCredentials,
    InvalidToken,
    AccountDisabled,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    /// A retry with an `Idempotency-Key` whose first request is still running.
    IdempotencyInProgress,
    VersionMismatch,
    PayloadTooLarge,
    UnsupportedMediaType,
    /// An `Idempotency-Key` sent again with a different request (method, path or body).
    IdempotencyKeyReused,
    DestructiveChange,
    RateLimited,
    Unavailable,
    Internal,
}

impl Code {
    /// (status, code, title) — the single source of truth for each code.
    pub const fn parts(self) -> (StatusCode, &'static str, &'static str) {
        use Code::*;
        match self {
            BadRequest => (StatusCode::BAD_REQUEST, "bad_request", "Bad request"),
            InvalidJson => (StatusCode::BAD_REQUEST, "invalid_json", "Invalid JSON"),
            InvalidFilter => (StatusCode::BAD_REQUEST, "invalid_filter", "Invalid filter"),
            ValidationFailed => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "Validation failed",
            ),
            Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
            ),
            TokenExpired => (StatusCode::UNAUTHORIZED, "token_expired", "Token expired"),
            InvalidCredentials => (
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "Invalid credentials",
            ),
            InvalidToken => (
                StatusCode::BAD_REQUEST,
                "invalid_token",
                "Invalid or expired token",
            ),
            AccountDisabled => (
                StatusCode::FORBIDDEN,
                "account_disabled",
                "Account disabled",
            ),
            Forbidden => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            Conflict => (StatusCode::CONFLICT, "conflict", "Conflict"),
            IdempotencyInProgress => (
                StatusCode::CONFLICT,
                "idempotency_in_progress",
                "Request in progress",
            ),
            VersionMismatch => (
                StatusCode::PRECONDITION_FAILED,
                "version_mismatch",
                "Version mismatch",
            ),
            PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
            ),
            IdempotencyKeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "Idempotency key reused",
            ),
            DestructiveChange => (
                StatusCode::CONFLICT,
                "destructive_change",
                "Destructive change refused",
            ),
            RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many requests",
            ),
            Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
            ),
        }
    }
}

/// A failure that becomes a problem+json response. Boxed so `Result<T, Error>` stays small on
/// the hot path; fields are reached through `Deref`.
#[derive(Debug)]
pub struct Error(Box<Problem>);

/// The parts of a problem.
#[derive(Debug)]
pub struct Problem {
    pub code: Code,
    pub detail: String,
    /// Per-field messages (`validation_failed`, `conflict`).
    pub errors: Option<BTreeMap<String, String>>,
    /// Extra members (`position`, `current`, `operation`, …).
    pub extra: Map<String, Value>,
    /// The hidden cause of an internal error, logged and never sent.
    pub cause: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Self(Box::new(Problem {
            code,
            detail: detail.into(),
            errors: None,
            extra: Map::new(),
            cause: None,
        }))
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(Code::BadRequest, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(Code::NotFound, detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(Code::Forbidden, detail)
    }
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(Code::Unauthenticated, detail)
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(Code::Conflict, detail)
    }
    /// An internal failure: `cause` is logged, the client sees only `internal`.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let mut e = Self::new(Code::Internal, "The server failed to handle the request.");
        e.cause = Some(cause.to_string());
        e
    }
    /// `validation_failed` with one message per field.
    pub fn validation(errors: BTreeMap<String, String>) -> Self {
        let n = errors.len();
        let mut e = Self::new(
            Code::ValidationFailed,
            if n == 1 {
                "1 field is invalid".to_owned()
            } else {
                format!("{n} fields are invalid")
            },
        );
        e.errors = Some(errors);
        e
    }
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(BTreeMap::from([(field.to_owned(), message.into())]))
    }
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
    pub fn status(&self) -> StatusCode {
        self.code.parts().0
    }

    /// The problem+json body.
    pub fn body(&self) -> Value {
        let (status, code, title) = self.code.parts();
        let mut body = json!({
            "type": "about:blank",
            "status": status.as_u16(),
            "code": code,
            "title": title,
            "detail": self.detail,
        });
        if let (Some(errors), Some(obj)) = (&self.errors, body.as_object_mut()) {
            obj.insert("errors".into(), json!(errors));
        }
        if let Some(obj) = body.as_object_mut() {
            if let Ok(id) = crate::http::middleware::REQUEST_ID.try_with(Clone::clone) {
                obj.insert("request_id".into(), Value::String(id));
            }
            for (k, v) in &self.extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        body
    }
}

impl std::ops::Deref for Error {
    type Target = Problem;
    fn deref(&self) -> &Problem {
        &self.0
    }
}

impl std::ops::DerefMut for Error {
    fn deref_mut(&mut self) -> &mut Problem {
        &mut self.0
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.parts().1, self.detail)
    }
}

impl std::error::Error for Error {}

/// A PostgreSQL data exception (SQLSTATE class 22: a NUL byte in text `22021`, `\u0000` in
/// jsonb `22P05`, a number out of range, …) is the request's fault, not the server's: 400
/// `bad_request`. Request paths validate such input first with a field-named 422; this is the
/// backstop so a value that slips past them is never a 500. The cause is still logged.
fn data_exception(e: &DbError) -> Option<Error> {
    let DbError::Sqlx(sqlx::Error::Database(db)) = e else {
        return None;
    };
    let code = db.code()?;
    // SQLSTATEs are five characters; SQLite's numeric codes never look like `22…` of length 5.
    if code.len() != 5 || !code.starts_with("22") {
        return None;
    }
    let mut err = Error::bad_request(
        "A value in the request cannot be stored or compared (for example text containing U+0000).",
    );
    err.cause = Some(format!("data exception {code}: {}", db.message()));
    Some(err)
}

impl From<DbError> for Error {
    fn from(e: DbError) -> Self {
        if matches!(e, DbError::Preempted) {
            // The idempotency middleware answers for such a request; this is what anything
            // else would see.
            return Error::new(
                Code::IdempotencyInProgress,
                "A request with this Idempotency-Key is being processed; retry shortly.",
            );
        }
        if let Some(err) = data_exception(&e) {
            return err;
        }
        if e.is_transient() {
            let mut err = Error::new(Code::Unavailable, "The database is busy; retry shortly.");
            err.cause = Some(e.to_string());
            return err;
        }
        Error::internal(e)
    }
}

/// The cause of a 5xx, carried to the logging middleware in the response extensions.
#[derive(Clone, Debug)]
pub struct HiddenCause(pub String);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, axum::Json(self.body())).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.code == Code::RateLimited
            && let Some(secs) = self.extra.get("retry_after").and_then(Value::as_u64)
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if let Some(cause) = self.0.cause {
            response.extensions_mut().insert(HiddenCause(cause));
        }
        response
    }
}
