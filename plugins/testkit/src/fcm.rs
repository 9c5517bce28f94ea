//! A loopback FCM HTTP v1 server with its own Google OAuth token endpoint.
//!
//! Why both in one fake: the FCM plugin's credentials are a service-account key whose
//! `token_uri` says where to trade a signed JWT for an access token. [`FakeFcm`] generates a
//! fresh RSA key, hands out a key JSON whose `token_uri` points at its own `/token`, checks
//! the grant like Google does, and then only accepts the access tokens it issued. A test
//! therefore exercises the real OAuth flow, token caching and the send path, all on
//! 127.0.0.1 (plain HTTP/1.1, or h2c with prior knowledge: axum serves both).
//!
//! # Endpoints
//!
//! - `POST /token`: the JWT-bearer grant (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`,
//!   `assertion=<JWT>`). The RS256 signature is checked over the raw signing input (gcp_auth
//!   writes padded base64url segments, which Google accepts and JWT libraries refuse), then
//!   `iss` = `client_email`, `aud` = `token_uri`, `scope` lists `firebase.messaging` and
//!   `exp` is in the future. Granted: `{"access_token","expires_in":3600,"token_type":"Bearer"}`;
//!   otherwise 400 `{"error":"invalid_grant"}`. Every request counts in
//!   [`FakeFcm::token_requests`], granted or not.
//! - `POST /v1/projects/{project}/messages:send`, checked in this order:
//!   1. `Authorization: Bearer <a token this fake issued>`, else 401 `UNAUTHENTICATED`
//!      ([`FakeFcm::revoke_tokens`] makes every issued token fail here);
//!   2. `{project}` = [`FcmOptions::project_id`], else 403 `PERMISSION_DENIED` (what Google
//!      answers when the caller has no `cloudmessaging.messages.create` on the project);
//!   3. the body: JSON, only the documented `message` fields, `message.token` a non-empty
//!      string, `data` values strings, `android.priority` `HIGH`/`NORMAL`, `android.ttl` like
//!      `"3600s"`, `apns.headers` / `webpush.headers` values strings; else 400
//!      `INVALID_ARGUMENT`;
//!   4. [`FcmOptions::latency`] is slept (counted in [`FakeFcm::max_in_flight`]);
//!   5. the outcome scripted by the device token:
//!
//! | token starts with | answer |
//! |---|---|
//! | `unregistered` | 404 `NOT_FOUND`, errorCode `UNREGISTERED` |
//! | `invalid` | 400 `INVALID_ARGUMENT`, errorCode `INVALID_ARGUMENT` |
//! | `mismatch` | 403 `PERMISSION_DENIED`, errorCode `SENDER_ID_MISMATCH` |
//! | `busy<N>` (`busy2-abc`) | the first N requests for that exact token: 429 `RESOURCE_EXHAUSTED`, errorCode `QUOTA_EXCEEDED`, `retry-after: 1`; then success |
//! | `down<N>` | the first N: 503 `UNAVAILABLE`, errorCode `UNAVAILABLE` (no `retry-after`); then success |
//! | `internal<N>` | the first N: 500 `INTERNAL`, errorCode `INTERNAL`; then success |
//! | anything else | 200 `{"name":"projects/<p>/messages/<n>"}` |
//!
//! A missing N counts as 1. Error bodies have Google's `google.rpc.Status` shape:
//! `{"error":{"code":404,"message":"…","status":"NOT_FOUND","details":[{"@type":
//! "type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}`
//! (401 and the project check carry no `FcmError` detail, as with Google).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _, UnparsedPublicKey};
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Value, json};

use crate::{Counter, Tally};

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const FCM_ERROR: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";

/// base64url that takes segments with or without padding, like Google's token endpoint.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How the fake behaves.
#[derive(Clone, Debug)]
pub struct FcmOptions {
    /// Slept in every `messages:send` before it answers (to hold many sends in flight).
    pub latency: Duration,
    /// The only project `messages:send` accepts, and the key JSON's `project_id`.
    pub project_id: String,
    /// Keep every `messages:send` for [`FakeFcm::requests`]. Off for long runs, whose memory
    /// would grow with each request; [`FakeFcm::tally`] counts either way.
    pub record_requests: bool,
}

impl Default for FcmOptions {
    fn default() -> Self {
        FcmOptions {
            latency: Duration::ZERO,
            project_id: "demo-proj".into(),
            record_requests: true,
        }
    }
}

/// One `messages:send` request as the fake saw it, with the status it answered.
#[derive(Clone, Debug)]
pub struct FcmRequest {
    /// `message.token`, or empty when the body had none.
    pub token: String,
    /// The whole JSON body (`Null` when it was not JSON).
    pub body: Value,
    /// The `Authorization` header as sent (`Bearer …`), or empty.
    pub authorization: String,
    /// The HTTP status the fake answered.
    pub status: u16,
}

/// A running fake FCM + OAuth server on 127.0.0.1; stops when dropped.
pub struct FakeFcm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

struct Shared {
    opts: FcmOptions,
    client_email: String,
    token_uri: String,
    private_key_pem: String,
    /// PKCS#1 `RSAPublicKey` DER, what `UnparsedPublicKey` takes.
    public_key: Vec<u8>,
    issued: Mutex<HashSet<String>>,
    token_requests: AtomicUsize,
    requests: Mutex<Vec<FcmRequest>>,
    counter: Mutex<Counter>,
    /// Requests seen per device token, for the `busy<N>` / `down<N>` scripts.
    attempts: Mutex<HashMap<String, u32>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    sent: AtomicUsize,
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FakeFcm {
    /// Generates a key, binds 127.0.0.1 on a free port and starts serving.
    pub async fn start(opts: FcmOptions) -> FakeFcm {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("fake FCM: cannot bind 127.0.0.1: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("fake FCM: no local address: {e}"));
        let key = KeyPair::generate(KeySize::Rsa2048)
            .unwrap_or_else(|e| panic!("fake FCM: RSA key generation failed: {e}"));
        let pkcs8: Pkcs8V1Der = key
            .as_der()
            .unwrap_or_else(|e| panic!("fake FCM: PKCS#8 encoding failed: {e}"));
        let shared = Arc::new(Shared {
            client_email: format!("ferrobase-test@{}.iam.gserviceaccount.com", opts.project_id),
            token_uri: format!("http://{addr}/token"),
            private_key_pem: pem("PRIVATE KEY", pkcs8.as_ref()),
            public_key: key.public_key().as_ref().to_vec(),
            opts,
            issued: Mutex::default(),
            token_requests: AtomicUsize::new(0),
            requests: Mutex::default(),
            counter: Mutex::default(),
            attempts: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            sent: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/token", post(token))
            .route("/v1/projects/{project}/messages:send", post(send))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeFcm {
            addr,
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:<port>`, the plugin's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A service-account key JSON (the shape Google's console downloads) for this fake: its
    /// RSA key, `client_email`, `project_id` and a `token_uri` pointing at this fake.
    pub fn service_account_json(&self) -> String {
        let s = &self.shared;
        json!({
            "type": "service_account",
            "project_id": s.opts.project_id,
            "private_key_id": "fake-key-1",
            "private_key": s.private_key_pem,
            "client_email": s.client_email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": s.token_uri,
        })
        .to_string()
    }

    /// Every `messages:send` request, in the order they were answered.
    pub fn requests(&self) -> Vec<FcmRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Counts of every `messages:send` answered so far (per device token, per status).
    pub fn tally(&self) -> Tally {
        lock(&self.shared.counter).tally()
    }

    /// How many OAuth token requests (`POST /token`) arrived, granted or not.
    pub fn token_requests(&self) -> usize {
        self.shared.token_requests.load(Ordering::SeqCst)
    }

    /// The most `messages:send` requests that were being handled at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Forgets every access token issued so far: the next send with one gets 401, as when
    /// Google revokes a token before it expires.
    pub fn revoke_tokens(&self) {
        lock(&self.shared.issued).clear();
    }
}

impl Drop for FakeFcm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn token(
    State(s): State<Arc<Shared>>,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let n = s.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
    let grant = form
        .map_err(|e| format!("bad form: {e}"))
        .and_then(|Form(f)| check_grant(&s, &f));
    match grant {
        Ok(()) => {
            let access_token = format!("ya29.fake-{}-{n}-{}", s.opts.project_id, now_secs());
            lock(&s.issued).insert(access_token.clone());
            let body =
                json!({"access_token": access_token, "expires_in": 3600, "token_type": "Bearer"});
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Err(why) => {
            let body = json!({"error": "invalid_grant", "error_description": why});
            (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
        }
    }
}

/// Checks a JWT-bearer grant the way Google's token endpoint does.
fn check_grant(s: &Shared, form: &HashMap<String, String>) -> Result<(), String> {
    if form.get("grant_type").map(String::as_str) != Some(GRANT_TYPE) {
        return Err("unsupported grant_type".into());
    }
    let jwt = form.get("assertion").ok_or("no assertion")?;
    let mut parts = jwt.split('.');
    let (Some(head), Some(claims), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("assertion is not a JWT".into());
    };
    let decode = |seg: &str| {
        B64URL
            .decode(seg)
            .map_err(|e| format!("bad base64url: {e}"))
    };
    let signing_input = &jwt[..head.len() + 1 + claims.len()];
    UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &s.public_key)
        .verify(signing_input.as_bytes(), &decode(sig)?)
        .map_err(|_| "Invalid JWT Signature.")?;
    let head: Value = serde_json::from_slice(&decode(head)?).map_err(|e| e.to_string())?;
    let claims: Value = serde_json::from_slice(&decode(claims)?).map_err(|e| e.to_string())?;
    if head["alg"] != "RS256" {
        return Err("alg must be RS256".into());
    }
    if claims["iss"] != s.client_email.as_str() {
        return Err("iss is not the service account's client_email".into());
    }
    if claims["aud"] != s.token_uri.as_str() {
        return Err("aud is not the token_uri".into());
    }
    let scopes = claims["scope"].as_str().unwrap_or_default();
    if !scopes.split_whitespace().any(|sc| sc == SCOPE) {
        return Err(format!("scope does not include {SCOPE}"));
    }
    if claims["exp"].as_i64().is_none_or(|exp| exp <= now_secs()) {
        return Err(
            "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe".into(),
        );
    }
    Ok(())
}

/// Counts a `messages:send` in flight until dropped.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(s: &'a Shared) -> Self {
        let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        s.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(s)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A scripted or checked answer: status, body and an optional `retry-after`.
struct Answer {
    status: StatusCode,
    body: Value,
    retry_after: Option<u64>,
}

impl Answer {
    fn error(status: StatusCode, name: &str, message: &str, fcm_code: Option<&str>) -> Self {
        let mut error = json!({"code": status.as_u16(), "message": message, "status": name});
        if let Some(code) = fcm_code {
            error["details"] = json!([{"@type": FCM_ERROR, "errorCode": code}]);
        }
        Answer {
            status,
            body: json!({"error": error}),
            retry_after: None,
        }
    }

    fn invalid(message: &str) -> Self {
        let status = StatusCode::BAD_REQUEST;
        Answer::error(
            status,
            "INVALID_ARGUMENT",
            message,
            Some("INVALID_ARGUMENT"),
        )
    }
}

async fn send(
    State(s): State<Arc<Shared>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let _counted = InFlight::enter(&s);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let token = body["message"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let answer = match check_send(&s, &project, &authorization, &body) {
        Err(answer) => answer,
        Ok(()) => {
            tokio::time::sleep(s.opts.latency).await;
            scripted(&s, &token)
        }
    };
    lock(&s.counter).count(&token, answer.status.as_u16());
    if s.opts.record_requests {
        lock(&s.requests).push(FcmRequest {
            token,
            body,
            authorization,
            status: answer.status.as_u16(),
        });
    }
    let mut response = (answer.status, axum::Json(answer.body)).into_response();
    if let Some(secs) = answer.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, secs.into());
    }
    response
}

fn check_send(s: &Shared, project: &str, authorization: &str, body: &Value) -> Result<(), Answer> {
    let bearer = authorization.strip_prefix("Bearer ").unwrap_or_default();
    if !lock(&s.issued).contains(bearer) {
        return Err(Answer::error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential.",
            None,
        ));
    }
    if project != s.opts.project_id {
        return Err(Answer::error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            &format!(
                "Permission 'cloudmessaging.messages.create' denied on resource \
                 '//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist)."
            ),
            None,
        ));
    }
    check_message(body).map_err(|m| Answer::invalid(&m))
}

/// The body checks Google makes that a provider bug would trip.
fn check_message(body: &Value) -> Result<(), String> {
    const FIELDS: [&str; 10] = [
        "name",
        "data",
        "notification",
        "android",
        "webpush",
        "apns",
        "fcm_options",
        "token",
        "topic",
        "condition",
    ];
    let message = body
        .get("message")
        .and_then(Value::as_object)
        .ok_or("Invalid JSON payload received: no message object")?;
    if let Some(k) = message.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "Invalid JSON payload received. Unknown name \"{k}\" at 'message'"
        ));
    }
    if message
        .get("token")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(
            "message.token must be a non-empty string (this fake sends to tokens only)".into(),
        );
    }
    strings_only(message.get("data"), "message.data")?;
    if let Some(android) = message.get("android") {
        if let Some(p) = android.get("priority")
            && p != "HIGH"
            && p != "NORMAL"
        {
            return Err(format!("Invalid value at 'message.android.priority' ({p})"));
        }
        if let Some(ttl) = android.get("ttl") {
            let digits = ttl.as_str().and_then(|t| t.strip_suffix('s'));
            if digits.is_none_or(|d| d.is_empty() || d.parse::<f64>().is_err()) {
                return Err(format!("Invalid value at 'message.android.ttl' ({ttl})"));
            }
        }
    }
    strings_only(
        message.get("apns").and_then(|a| a.get("headers")),
        "message.apns.headers",
    )?;
    strings_only(
        message.get("webpush").and_then(|w| w.get("headers")),
        "message.webpush.headers",
    )
}

fn strings_only(map: Option<&Value>, field: &str) -> Result<(), String> {
    let Some(map) = map else { return Ok(()) };
    let map = map
        .as_object()
        .ok_or(format!("Invalid value at '{field}': not a map"))?;
    match map.iter().find(|(_, v)| !v.is_string()) {
        Some((k, v)) => Err(format!(
            "Invalid value at '{field}[{k}]' ({v}): must be a string"
        )),
        None => Ok(()),
    }
}

/// The outcome the device token scripts (see the module doc).
fn scripted(s: &Shared, token: &str) -> Answer {
    let times = |prefix: &str| -> Option<u32> {
        let rest = token.strip_prefix(prefix)?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let n = digits.parse().unwrap_or(1);
        let mut attempts = lock(&s.attempts);
        let seen = attempts.entry(token.to_owned()).or_insert(0);
        *seen += 1;
        (*seen <= n).then_some(n)
    };
    if token.starts_with("unregistered") {
        return Answer::error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Requested entity was not found.",
            Some("UNREGISTERED"),
        );
    }
    if token.starts_with("invalid") {
        return Answer::invalid("The registration token is not a valid FCM registration token");
    }
    if token.starts_with("mismatch") {
        let status = StatusCode::FORBIDDEN;
        return Answer::error(
            status,
            "PERMISSION_DENIED",
            "SenderId mismatch",
            Some("SENDER_ID_MISMATCH"),
        );
    }
    if times("busy").is_some() {
        let mut answer = Answer::error(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Send requests'.",
            Some("QUOTA_EXCEEDED"),
        );
        answer.retry_after = Some(1);
        return answer;
    }
    if times("down").is_some() {
        let status = StatusCode::SERVICE_UNAVAILABLE;
        return Answer::error(
            status,
            "UNAVAILABLE",
            "The service is currently unavailable.",
            Some("UNAVAILABLE"),
        );
    }
    if times("internal").is_some() {
        let status = StatusCode::INTERNAL_SERVER_ERROR;
        return Answer::error(
            status,
            "INTERNAL",
            "Internal error encountered.",
            Some("INTERNAL"),
        );
    }
    let n = s.sent.fetch_add(1, Ordering::SeqCst) + 1;
    let name = format!("projects/{}/messages/0:{n}", s.opts.project_id);
    Answer {
        status: StatusCode::OK,
        body: json!({ "name": name }),
        retry_after: None,
    }
}
