//! Cross-cutting request handling: request ids, logging of hidden 5xx causes, and turning the
//! framework's own rejections (unknown route, wrong method, panics) into problem+json.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{Code, Error, HiddenCause};

tokio::task_local! {
    /// The current request's id, so every problem body and log line can carry it.
    pub static REQUEST_ID: String;
}

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A client id is echoed only if it is short and plain, so logs and headers stay safe.
fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub async fn request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| acceptable(s))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut response = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    if let Some(cause) = response.extensions().get::<HiddenCause>() {
        tracing::error!(request_id = %id, %method, %path, status = response.status().as_u16(), cause = %cause.0, "request failed");
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}

/// Routes that do not exist.
pub async fn not_found() -> Error {
    Error::not_found("No such route.")
}

/// Re-shapes plain-text framework responses (405 from the router) as problems.
pub async fn problem_shapes(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_none_or(|ct| ct != "application/problem+json")
    {
        let allow = response.headers().get(axum::http::header::ALLOW).cloned();
        let mut r = Error::new(
            Code::MethodNotAllowed,
            "This route does not accept that method.",
        )
        .into_response();
        if let Some(allow) = allow {
            r.headers_mut().insert(axum::http::header::ALLOW, allow);
        }
        return r;
    }
    response
}

/// A panic is a bug: answer `internal` and log it, never tear down the connection silently.
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".into());
    Error::internal(format!("panic: {msg}")).into_response()
}

/// The global per-IP request budget.
pub async fn global_rate_limit(
    axum::extract::State(limits): axum::extract::State<crate::ratelimit::Limits>,
    req: Request,
    next: Next,
) -> Response {
    let ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    if let Err(e) = limits.check(crate::ratelimit::Bucket::Global, &ip) {
        return e.into_response();
    }
    next.run(req).await
}
