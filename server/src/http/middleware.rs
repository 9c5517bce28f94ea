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
    // A clone of the URI shares its buffer (no copy of the path per request).
    let uri = req.uri().clone();
    let mut response = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    if let Some(cause) = response.extensions().get::<HiddenCause>() {
        tracing::error!(request_id = %id, %method, path = %uri.path(), status = response.status().as_u16(), cause = %cause.0, "request failed");
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

/// The checks every request passes before routing, and the reshaping of what comes back, as
/// one layer (each `from_fn` layer boxes the request's future once more): a URI holding
/// U+0000 is refused, the global per-IP budget is taken, and framework text errors become
/// problems.
pub async fn edge(
    axum::extract::State((limits, trust_proxy)): axum::extract::State<(
        crate::ratelimit::Limits,
        bool,
    )>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(refusal) = refuse_nul_in_uri(req.uri()) {
        return refusal;
    }
    if limits.enabled() {
        let ip = super::extract::client_ip(req.headers(), req.extensions(), trust_proxy)
            .unwrap_or_default();
        if let Err(e) = limits.check(crate::ratelimit::Bucket::Global, &ip) {
            return e.into_response();
        }
    }
    problem_shape(next.run(req).await).await
}

/// Re-shapes plain-text framework responses as problems: any 4xx whose body is not JSON (the
/// router's 405, axum's query/path rejections, a body limit's 413, …) becomes problem+json
/// with the matching code, so no route leaks a framework text error.
async fn problem_shape(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|ct| ct.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.trim().to_ascii_lowercase();
            ct.starts_with("application/json") || ct.starts_with("application/problem+json")
        });
    if !status.is_client_error() || is_json {
        return response;
    }
    let code = match status {
        StatusCode::BAD_REQUEST => Code::BadRequest,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => Code::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => Code::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Code::UnsupportedMediaType,
        StatusCode::UNPROCESSABLE_ENTITY => Code::ValidationFailed,
        _ => return response,
    };
    let allow = response.headers().get(axum::http::header::ALLOW).cloned();
    let detail = match code {
        Code::BadRequest => {
            // The framework's own message (e.g. `Failed to deserialize query string: duplicate
            // field `limit``), bounded.
            let bytes = axum::body::to_bytes(response.into_body(), 4096)
                .await
                .unwrap_or_default();
            let text: String = String::from_utf8_lossy(&bytes).chars().take(500).collect();
            if text.trim().is_empty() {
                "The request is malformed.".to_owned()
            } else {
                text.trim().to_owned()
            }
        }
        Code::NotFound => "No such route.".to_owned(),
        Code::MethodNotAllowed => "This route does not accept that method.".to_owned(),
        Code::PayloadTooLarge => "The body is over the server's limit.".to_owned(),
        Code::UnsupportedMediaType => "Send `Content-Type: application/json`.".to_owned(),
        _ => "The request is invalid.".to_owned(),
    };
    let mut r = Error::new(code, detail).into_response();
    if let Some(allow) = allow {
        r.headers_mut().insert(axum::http::header::ALLOW, allow);
    }
    r
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

/// A URI holding `%00` (U+0000): no id, name or query value may carry it (PostgreSQL text
/// cannot), so it is refused up front the same way on both dialects: in the path → 404 (no
/// such resource can exist), in the query → 400 `bad_request` naming the parameter.
fn refuse_nul_in_uri(uri: &axum::http::Uri) -> Option<Response> {
    if has_nul(uri.path()) {
        return Some(
            Error::not_found("No such resource: the path contains U+0000.").into_response(),
        );
    }
    if let Some(query) = uri.query()
        && let Some(pair) = query.split('&').find(|pair| has_nul(pair))
    {
        let name: String = pair
            .split('=')
            .next()
            .unwrap_or("")
            .chars()
            .take(64)
            .collect();
        let name = if has_nul(&name) {
            "query".to_owned()
        } else {
            name
        };
        return Some(
            Error::bad_request(format!(
                "Invalid `{name}`: must not contain the NUL character (U+0000)."
            ))
            .with("parameter", name)
            .into_response(),
        );
    }
    None
}

fn has_nul(raw: &str) -> bool {
    raw.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}
