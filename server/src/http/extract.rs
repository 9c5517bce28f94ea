//! Extractors that turn request parts into domain inputs, failing with problem+json: the
//! caller ([`Auth`]), JSON bodies ([`JsonBody`], [`JsonObject`]) and `If-Match`.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::AppState;
use crate::access::Principal;
use crate::error::{Code, Error};

/// The authenticated caller. A missing token is anonymous; an invalid or expired one is 401,
/// never silently anonymous.
///
/// The [`authenticate`] middleware resolves the token once for every route (so a public route
/// such as signup refuses a bad token too) and leaves the result in the request extensions;
/// this extractor takes it from there.
pub struct Auth(pub Principal);

/// The caller as resolved by [`authenticate`].
#[derive(Clone)]
struct Resolved(Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        if let Some(Resolved(p)) = parts.extensions.get::<Resolved>() {
            return Ok(Auth(p.clone()));
        }
        resolve(&parts.headers, state).await.map(Auth)
    }
}

/// The caller named by the `Authorization` header: anonymous without one, else 401 unless
/// the token is valid.
async fn resolve(headers: &axum::http::HeaderMap, state: &AppState) -> Result<Principal, Error> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Principal::Anonymous);
    };
    let value = value
        .to_str()
        .map_err(|_| Error::unauthenticated("The Authorization header is not valid text."))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| Error::unauthenticated("Use `Authorization: Bearer <token>`."))?;
    resolve_token(state, token).await
}

/// The `Bearer` token of `headers`, if one is sent.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
}

/// The caller a token names (user access token, admin token or API key), or 401.
pub async fn resolve_token(state: &AppState, token: &str) -> Result<Principal, Error> {
    if token.starts_with(crate::admin::TOKEN_PREFIX) && token.len() <= 128 {
        return crate::admin::resolve_token(&state.db, token).await;
    }
    if token.starts_with(crate::apikeys::PREFIX) && token.len() <= 128 {
        return crate::apikeys::resolve(&state.db, token).await;
    }
    state.auth().principal(token).await
}

/// Middleware on every `/v1` route that takes credentials (all but health and readiness): an
/// invalid or expired token is 401 on any of them, public ones included, never anonymous.
///
/// It also hands a mutating request that carries `Idempotency-Key` to
/// [`super::idempotency::run`], which needs the caller (keys are scoped to it); doing that here
/// rather than in a layer of its own spares every other request a boxed future.
pub async fn authenticate(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match resolve(req.headers(), &state).await {
        Ok(p) => {
            let scope = super::idempotency::wanted(&req).then(|| crate::idempotency::scope(&p));
            req.extensions_mut().insert(Resolved(p));
            match scope {
                Some(scope) => super::idempotency::run(&state, scope, req, next).await,
                None => next.run(req).await,
            }
        }
        Err(e) => e.into_response(),
    }
}

/// Where the request came from, for sessions, rate limits and the audit log: the peer address
/// (a proxy's forwarded headers are not trusted: they are client-controlled) and user agent.
pub struct ClientOrigin(pub crate::audit::Origin);

/// The client's address: the peer, or with `trust_proxy` the last `X-Forwarded-For` entry.
pub fn client_ip(
    headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
    trust_proxy: bool,
) -> Option<String> {
    if trust_proxy
        && let Some(last) = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|s| !s.is_empty())
        && let Ok(ip) = last.parse::<std::net::IpAddr>()
    {
        return Some(ip.to_string());
    }
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

impl FromRequestParts<AppState> for ClientOrigin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let ip = client_ip(
            &parts.headers,
            &parts.extensions,
            state.settings.trust_proxy,
        );
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(300).collect());
        Ok(ClientOrigin(crate::audit::Origin { ip, user_agent }))
    }
}

/// Reads the body as JSON, after checking its media type.
async fn read_json(req: Request, state: &AppState) -> Result<Value, Error> {
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(Error::new(
                Code::UnsupportedMediaType,
                format!("Send JSON with `Content-Type: application/json` (got `{essence}`)."),
            ));
        }
    }
    let bytes = Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            Error::new(Code::PayloadTooLarge, "The request body is too large.")
        } else {
            Error::bad_request(format!("Cannot read the request body: {e}"))
        }
    })?;
    if bytes.is_empty() {
        return Err(Error::new(
            Code::InvalidJson,
            "The request body is empty; send a JSON object.",
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::new(
            Code::InvalidJson,
            format!("The body is not valid JSON: {e}"),
        )
        .with("line", e.line())
        .with("column", e.column())
    })
}

/// A JSON object body (record writes).
pub struct JsonObject(pub Map<String, Value>);

impl FromRequest<AppState> for JsonObject {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Error> {
        match read_json(req, state).await? {
            Value::Object(m) => Ok(JsonObject(m)),
            _ => Err(Error::new(
                Code::InvalidJson,
                "The body must be a JSON object.",
            )),
        }
    }
}

/// A JSON body of a known shape; a shape mismatch is 422 naming what is wrong, and so is
/// a string holding U+0000 (PostgreSQL text cannot store it; both dialects refuse it alike).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Error> {
        let value = read_json(req, state).await?;
        reject_nul(&value)?;
        decode(value).map(JsonBody)
    }
}

/// 422 `validation_failed` naming the first string (value or key) that holds U+0000, by its
/// path (`email`, `data.name`, `collections[0].rules.list`).
pub fn reject_nul(value: &Value) -> Result<(), Error> {
    match crate::records::validate::nul_path(value) {
        Some(path) => {
            let name = if path.is_empty() { "body" } else { &path };
            Err(Error::field(name, crate::records::validate::NUL_MESSAGE))
        }
        None => Ok(()),
    }
}

/// A JSON value into a body type; a mismatch is 422 `validation_failed` whose `errors` name
/// the field: a missing or unknown one by its own name, a mistyped one by its path.
pub fn decode<T: DeserializeOwned>(value: Value) -> Result<T, Error> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        let (field, text) = shape_problem(&path, &message);
        let mut err = Error::field(&field, text);
        err.detail = format!("The body does not have the expected shape: {message}");
        err
    })
}

/// (field, message) for one serde error at `path` (`.` when at the top).
fn shape_problem(path: &str, message: &str) -> (String, String) {
    let prefix = if path == "." || path.is_empty() {
        String::new()
    } else {
        format!("{path}.")
    };
    let quoted = |after: &str| -> Option<String> {
        let rest = message.strip_prefix(after)?;
        let rest = rest.strip_prefix('`')?;
        rest.split_once('`').map(|(name, _)| name.to_owned())
    };
    if let Some(name) = quoted("missing field ") {
        return (format!("{prefix}{name}"), "is required".to_owned());
    }
    if let Some(name) = quoted("unknown field ") {
        // The path already ends with the unknown key itself.
        let field = if path.ends_with(name.as_str()) {
            path.to_owned()
        } else {
            format!("{prefix}{name}")
        };
        let field: String = field.chars().take(128).collect();
        return (field, "is not a known field".to_owned());
    }
    let field = if prefix.is_empty() {
        "body".to_owned()
    } else {
        path.to_owned()
    };
    // serde's own wording (`invalid type: integer `1`, expected a string`) without a position.
    let text = message
        .split(" at line ")
        .next()
        .unwrap_or(message)
        .to_owned();
    (field, text)
}

/// `If-Match: "3"` → `Some(3)`.
pub fn if_match(parts: &axum::http::HeaderMap) -> Result<Option<i64>, Error> {
    let Some(v) = parts.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    let s = s.strip_prefix("W/").unwrap_or(s).trim_matches('"');
    s.parse::<i64>().map(Some).map_err(|_| {
        Error::bad_request("`If-Match` must be a record version such as \"3\".")
            .with("parameter", "If-Match")
    })
}
