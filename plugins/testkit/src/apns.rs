//! A loopback APNs that speaks Apple's documented provider API ("Sending notification requests
//! to APNs", "Handling notification responses from APNs") closely enough that the real plugin
//! cannot tell the difference.
//!
//! Why a real TLS + HTTP/2 server instead of a mock: the parts of a push provider that break in
//! production are the transport ones (ALPN h2, stream limits, one connection shared by many
//! sends, client certificates, a JWT Apple would refuse). Only a server that speaks the
//! protocol tests those.
//!
//! What it does:
//! - TLS with a freshly generated CA ([`FakeApns::ca_pem`]) and a server certificate for
//!   `127.0.0.1`; ALPN `h2` only, HTTP/2 only, with the configured
//!   SETTINGS_MAX_CONCURRENT_STREAMS ([`ApnsOptions::max_concurrent_streams`]).
//! - [`ApnsAuth::Token`]: `authorization: bearer <jwt>` is verified like Apple does (ES256
//!   with the configured public key, `kid`, `iss`, `iat` at most one hour old).
//!   [`ApnsAuth::Certificate`]: the TLS handshake requires a client certificate issued by the
//!   fake's CA ([`FakeApns::client_identity`]); a client without one never gets a response.
//! - The request checks of Apple's error table, in this order: method (405
//!   `MethodNotAllowed`), path `/3/device/{token}` (404 `BadPath`, 400 `MissingDeviceToken`),
//!   repeated `apns-*` headers (400 `DuplicateHeaders`), the provider token (403
//!   `MissingProviderToken` / `InvalidProviderToken` / `ExpiredProviderToken`), `apns-topic`
//!   (400 `MissingTopic`, or `TopicDisallowed` when it is not [`ApnsOptions::topic`]),
//!   `apns-push-type` (400 `InvalidPushType`), `apns-priority` 1, 5 or 10 and not 10 for
//!   `background` (400 `BadPriority`), `apns-id` a UUID (400 `BadMessageId`),
//!   `apns-collapse-id` at most 64 bytes (400 `BadCollapseId`), `apns-expiration` an integer
//!   (400 `BadExpirationDate`), the body at most 4096 bytes (413 `PayloadTooLarge`) and a JSON
//!   object (400 `PayloadEmpty`; Apple documents no reason for malformed JSON).
//! - Answers like Apple's: an `apns-id` header on every response (the request's, or a new
//!   UUID), error bodies `{"reason": "…"}`, with `"timestamp"` (milliseconds) on 410s.
//!   [`ApnsOptions::latency`] is slept before each answer.
//!
//! Outcomes scripted by device token, after every check above has passed:
//!
//! | token starts with | answer |
//! |---|---|
//! | `unregistered` | 410 `Unregistered` (with `timestamp`) |
//! | `expired` | 410 `ExpiredToken` (with `timestamp`) |
//! | `baddevice` | 400 `BadDeviceToken` |
//! | `busy<N>` (`busy2-abc`) | the first N requests for that exact token: 429 `TooManyRequests`, then 200 |
//! | `down<N>` (`down1-abc`) | the first N requests for that exact token: 503 `ServiceUnavailable` with `retry-after: 1`, then 200 |
//! | anything else | 200 |
//!
//! (`busy`/`down` without digits mean N = 1.) Every request, failing ones included, is kept
//! in [`FakeApns::requests`] (unless [`ApnsOptions::record_requests`] is off) and counted in
//! [`FakeApns::tally`].
//!
//! A provider token that verified once is remembered (its `iat` still ages it out), as a
//! provider reuses one token for up to an hour: the fake's CPU then goes to answering, not to
//! an ES256 check per request, which matters when it shares a machine with a benchmark.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::{Counter, Tally};

/// Apple's limit for a regular (non-VoIP) notification payload.
const MAX_PAYLOAD: usize = 4096;
const MAX_COLLAPSE_ID: usize = 64;
/// Apple refuses provider tokens issued more than an hour ago.
const TOKEN_MAX_AGE_SECS: u64 = 3600;
const PUSH_TYPES: &[&str] = &[
    "alert",
    "background",
    "location",
    "voip",
    "complication",
    "fileprovider",
    "mdm",
    "liveactivity",
    "pushtotalk",
    "widgets",
];

/// How a [`FakeApns`] behaves.
#[derive(Clone, Debug)]
pub struct ApnsOptions {
    /// Slept before each answer (to keep requests in flight at once).
    pub latency: Duration,
    /// The server's SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_concurrent_streams: u32,
    /// Provider token or client certificate.
    pub auth: ApnsAuth,
    /// The only `apns-topic` accepted.
    pub topic: String,
    /// Keep every request for [`FakeApns::requests`]. Off for long runs, whose memory would
    /// grow with each request; [`FakeApns::tally`] counts either way.
    pub record_requests: bool,
}

impl Default for ApnsOptions {
    /// No latency, 1000 streams, token auth with [`signing_key`], topic `com.example.app`.
    fn default() -> Self {
        ApnsOptions {
            latency: Duration::ZERO,
            max_concurrent_streams: 1000,
            auth: signing_key().auth(),
            topic: "com.example.app".to_owned(),
            record_requests: true,
        }
    }
}

/// Which provider authentication the fake demands.
#[derive(Clone, Debug)]
pub enum ApnsAuth {
    /// JWT provider tokens signed with the private half of `public_key_pem` (SPKI PEM).
    Token {
        team_id: String,
        key_id: String,
        public_key_pem: String,
    },
    /// A TLS client certificate issued by the fake's CA ([`FakeApns::client_identity`]).
    Certificate,
}

/// A P-256 key pair in the shapes Apple hands out (`.p8`) and the fake verifies with.
#[derive(Clone, Debug)]
pub struct SigningKey {
    /// The private key as PKCS#8 PEM, like the `.p8` file from Apple's developer portal.
    pub p8_pem: String,
    /// The public key as SPKI PEM.
    pub public_key_pem: String,
    /// `KEY1234567`.
    pub key_id: String,
    /// `TEAM123456`.
    pub team_id: String,
}

impl SigningKey {
    /// A new key, distinct from [`signing_key`] (to test a key the fake does not know).
    pub fn generate() -> SigningKey {
        let key = KeyPair::generate().expect("generating a P-256 key");
        SigningKey {
            p8_pem: key.serialize_pem(),
            public_key_pem: key.public_key_pem(),
            key_id: "KEY1234567".to_owned(),
            team_id: "TEAM123456".to_owned(),
        }
    }

    /// [`ApnsAuth::Token`] accepting JWTs signed with this key.
    pub fn auth(&self) -> ApnsAuth {
        ApnsAuth::Token {
            team_id: self.team_id.clone(),
            key_id: self.key_id.clone(),
            public_key_pem: self.public_key_pem.clone(),
        }
    }
}

/// The test signing key: generated once per process, and the key that
/// [`ApnsOptions::default`] accepts, so `signing_key().p8_pem` can go straight into the
/// provider's config.
pub fn signing_key() -> SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(SigningKey::generate).clone()
}

/// One request the fake received, and the status it answered.
#[derive(Clone, Debug, PartialEq)]
pub struct ApnsRequest {
    /// The `{token}` of `/3/device/{token}` (empty for other paths).
    pub token: String,
    /// Every regular header (lower-case names; not the HTTP/2 pseudo-headers).
    pub headers: BTreeMap<String, String>,
    /// The body as JSON (`Null` when it was not JSON).
    pub body: Value,
    pub status: u16,
}

/// A running loopback APNs; stops when dropped.
pub struct FakeApns {
    base_url: String,
    pki: Pki,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for FakeApns {
    fn drop(&mut self) {
        // The accept task owns the connection tasks (a JoinSet): aborting it closes them all.
        self.task.abort();
    }
}

impl FakeApns {
    /// Starts a fake on `127.0.0.1` and a free port. Panics if it cannot (a test setup bug).
    pub async fn start(opts: ApnsOptions) -> FakeApns {
        let pki = Pki::generate();
        let tls = server_tls(&pki, matches!(opts.auth, ApnsAuth::Certificate));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        let decoding_key = match &opts.auth {
            ApnsAuth::Token { public_key_pem, .. } => Some(
                DecodingKey::from_ec_pem(public_key_pem.as_bytes())
                    .expect("ApnsAuth::Token public_key_pem is not an EC public key PEM"),
            ),
            ApnsAuth::Certificate => None,
        };
        let state = Arc::new(State {
            opts,
            decoding_key,
            requests: Mutex::default(),
            counter: Mutex::default(),
            attempts: Mutex::default(),
            issued_at: Mutex::default(),
            verified: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
        });
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let task = tokio::spawn(accept_loop(listener, acceptor, state.clone()));
        FakeApns {
            base_url: format!("https://127.0.0.1:{port}"),
            pki,
            state,
            task,
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// PEM of the CA that signed the server (and client) certificates.
    pub fn ca_pem(&self) -> String {
        self.pki.ca_pem.clone()
    }

    /// `(cert_pem, key_pem)` of a client certificate issued by the fake's CA, accepted in
    /// [`ApnsAuth::Certificate`] mode.
    pub fn client_identity(&self) -> (String, String) {
        (
            self.pki.client_cert_pem.clone(),
            self.pki.client_key_pem.clone(),
        )
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<ApnsRequest> {
        lock(&self.state.requests).clone()
    }

    /// Counts of every request answered so far (per token, per status).
    pub fn tally(&self) -> Tally {
        lock(&self.state.counter).tally()
    }

    /// The highest number of requests being handled at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// The distinct `iat` values of the validly signed JWTs seen, in order of first use.
    pub fn jwt_issued_at(&self) -> Vec<u64> {
        lock(&self.state.issued_at).clone()
    }

    /// How many TCP connections were accepted (including ones whose TLS handshake failed).
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

struct State {
    opts: ApnsOptions,
    /// Set in token mode.
    decoding_key: Option<DecodingKey>,
    requests: Mutex<Vec<ApnsRequest>>,
    counter: Mutex<Counter>,
    /// Requests per device token, for the `busy<N>` / `down<N>` scripts.
    attempts: Mutex<HashMap<String, u32>>,
    issued_at: Mutex<Vec<u64>>,
    /// The last provider token that verified, with its `iat`.
    verified: Mutex<Option<(String, u64)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    connections: AtomicUsize,
}

/// A test must not lose its recorded requests because another thread panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                state.connections.fetch_add(1, Ordering::SeqCst);
                connections.spawn(serve_connection(tcp, acceptor.clone(), state.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(tcp: TcpStream, acceptor: TlsAcceptor, state: Arc<State>) {
    // A failed handshake (unknown CA on the client side, no client certificate, no h2 in
    // ALPN) just closes the connection, as Apple's front end does.
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2.max_concurrent_streams(state.opts.max_concurrent_streams);
    let service = service_fn(move |request| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, request).await) }
    });
    let _ = http2.serve_connection(TokioIo::new(tls), service).await;
}

/// Counts a request as in flight until dropped.
struct InFlight<'a>(&'a State);

impl<'a> InFlight<'a> {
    fn enter(state: &'a State) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the fake answers: a status and Apple's reason.
struct Answer {
    status: u16,
    reason: Option<&'static str>,
    retry_after: Option<u64>,
}

fn ok() -> Answer {
    Answer {
        status: 200,
        reason: None,
        retry_after: None,
    }
}

fn error(status: u16, reason: &'static str) -> Answer {
    Answer {
        status,
        reason: Some(reason),
        retry_after: None,
    }
}

async fn handle(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let _in_flight = InFlight::enter(state);
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    if !state.opts.latency.is_zero() {
        tokio::time::sleep(state.opts.latency).await;
    }
    let path = parts.uri.path();
    let token = path.strip_prefix("/3/device/").unwrap_or_default();
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    let answer = state
        .check(&parts.method, path, &parts.headers, &headers, &body)
        .unwrap_or_else(|refused| refused);
    let answer = if answer.status == 200 {
        state.scripted(token)
    } else {
        answer
    };

    lock(&state.counter).count(token, answer.status);
    if state.opts.record_requests {
        lock(&state.requests).push(ApnsRequest {
            token: token.to_owned(),
            headers: headers.clone(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            status: answer.status,
        });
    }

    let apns_id = headers
        .get("apns-id")
        .filter(|id| is_uuid(id))
        .cloned()
        .unwrap_or_else(|| uuid::Uuid::new_v4().hyphenated().to_string());
    let mut response = Response::builder()
        .status(answer.status)
        .header("apns-id", apns_id);
    if let Some(seconds) = answer.retry_after {
        response = response.header("retry-after", seconds);
    }
    let body = match answer.reason {
        None => Bytes::new(),
        Some(reason) if answer.status == 410 => {
            Bytes::from(json!({"reason": reason, "timestamp": unix_millis()}).to_string())
        }
        Some(reason) => Bytes::from(json!({ "reason": reason }).to_string()),
    };
    response
        .body(Full::new(body))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

impl State {
    /// Apple's request checks; `Err` is the refusal.
    fn check(
        &self,
        method: &Method,
        path: &str,
        raw_headers: &HeaderMap,
        headers: &BTreeMap<String, String>,
        body: &[u8],
    ) -> Result<Answer, Answer> {
        if method != Method::POST {
            return Err(error(405, "MethodNotAllowed"));
        }
        let Some(token) = path.strip_prefix("/3/device/") else {
            return Err(error(404, "BadPath"));
        };
        if token.is_empty() {
            return Err(error(400, "MissingDeviceToken"));
        }
        if token.contains('/') {
            return Err(error(404, "BadPath"));
        }
        let repeated = raw_headers.keys().any(|name| {
            name.as_str().starts_with("apns-") && raw_headers.get_all(name).iter().count() > 1
        });
        if repeated {
            return Err(error(400, "DuplicateHeaders"));
        }
        if let (
            ApnsAuth::Token {
                team_id, key_id, ..
            },
            Some(key),
        ) = (&self.opts.auth, &self.decoding_key)
        {
            self.check_provider_token(headers.get("authorization"), team_id, key_id, key)?;
        }
        match headers.get("apns-topic") {
            None => return Err(error(400, "MissingTopic")),
            Some(topic) if *topic != self.opts.topic => return Err(error(400, "TopicDisallowed")),
            Some(_) => {}
        }
        let push_type = headers.get("apns-push-type").map(String::as_str);
        if !push_type.is_some_and(|t| PUSH_TYPES.contains(&t)) {
            return Err(error(400, "InvalidPushType"));
        }
        if let Some(priority) = headers.get("apns-priority") {
            let valid = matches!(priority.as_str(), "1" | "5" | "10");
            if !valid || (priority == "10" && push_type == Some("background")) {
                return Err(error(400, "BadPriority"));
            }
        }
        if headers.get("apns-id").is_some_and(|id| !is_uuid(id)) {
            return Err(error(400, "BadMessageId"));
        }
        if headers
            .get("apns-collapse-id")
            .is_some_and(|id| id.len() > MAX_COLLAPSE_ID)
        {
            return Err(error(400, "BadCollapseId"));
        }
        if headers
            .get("apns-expiration")
            .is_some_and(|e| e.parse::<u64>().is_err())
        {
            return Err(error(400, "BadExpirationDate"));
        }
        if body.len() > MAX_PAYLOAD {
            return Err(error(413, "PayloadTooLarge"));
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(_)) => Ok(ok()),
            _ => Err(error(400, "PayloadEmpty")),
        }
    }

    fn check_provider_token(
        &self,
        authorization: Option<&String>,
        team_id: &str,
        key_id: &str,
        key: &DecodingKey,
    ) -> Result<(), Answer> {
        #[derive(serde::Deserialize)]
        struct Claims {
            iss: String,
            iat: u64,
        }
        let Some(jwt) = authorization.and_then(|value| {
            value
                .strip_prefix("bearer ")
                .or_else(|| value.strip_prefix("Bearer "))
        }) else {
            return Err(error(403, "MissingProviderToken"));
        };
        let cached = lock(&self.verified)
            .as_ref()
            .filter(|(seen, _)| seen == jwt)
            .map(|(_, iat)| *iat);
        if let Some(iat) = cached {
            return fresh(iat);
        }
        let invalid = || error(403, "InvalidProviderToken");
        let header = jsonwebtoken::decode_header(jwt).map_err(|_| invalid())?;
        if header.alg != Algorithm::ES256 || header.kid.as_deref() != Some(key_id) {
            return Err(invalid());
        }
        // Apple's tokens carry no `exp`: the age is judged from `iat`.
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<Claims>(jwt, key, &validation)
            .map_err(|_| invalid())?
            .claims;
        if claims.iss != team_id {
            return Err(invalid());
        }
        {
            let mut seen = lock(&self.issued_at);
            if !seen.contains(&claims.iat) {
                seen.push(claims.iat);
            }
        }
        *lock(&self.verified) = Some((jwt.to_owned(), claims.iat));
        fresh(claims.iat)
    }

    /// The outcome table of the module doc, keyed by device token.
    fn scripted(&self, token: &str) -> Answer {
        if token.starts_with("unregistered") {
            return error(410, "Unregistered");
        }
        if token.starts_with("expired") {
            return error(410, "ExpiredToken");
        }
        if token.starts_with("baddevice") {
            return error(400, "BadDeviceToken");
        }
        for (prefix, status, reason, retry_after) in [
            ("busy", 429, "TooManyRequests", None),
            ("down", 503, "ServiceUnavailable", Some(1)),
        ] {
            let Some(rest) = token.strip_prefix(prefix) else {
                continue;
            };
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let failures: u32 = digits.parse().unwrap_or(1);
            let mut attempts = lock(&self.attempts);
            let seen = attempts.entry(token.to_owned()).or_insert(0);
            *seen += 1;
            if *seen <= failures {
                return Answer {
                    status,
                    reason: Some(reason),
                    retry_after,
                };
            }
        }
        ok()
    }
}

/// Apple refuses a token issued more than an hour ago.
fn fresh(iat: u64) -> Result<(), Answer> {
    if unix_seconds().saturating_sub(iat) > TOKEN_MAX_AGE_SECS {
        return Err(error(403, "ExpiredProviderToken"));
    }
    Ok(())
}

/// Apple's `apns-id` form: 8-4-4-4-12 hexadecimal digits.
fn is_uuid(id: &str) -> bool {
    id.len() == 36 && uuid::Uuid::try_parse(id).is_ok()
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The fake's certificates, all generated at start.
struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server_cert_der: CertificateDer<'static>,
    server_key_der: Vec<u8>,
    client_cert_pem: String,
    client_key_pem: String,
}

impl Pki {
    fn generate() -> Pki {
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Ferrobase test APNs CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().expect("generating the CA key");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("signing the CA");

        let leaf = |names: Vec<String>, common_name: &str, usage: ExtendedKeyUsagePurpose| {
            let mut params = CertificateParams::new(names).expect("certificate names");
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().expect("generating a certificate key");
            let cert = params.signed_by(&key, &ca).expect("signing a certificate");
            (cert, key)
        };
        let (server_cert, server_key) = leaf(
            vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            "api.push.apple.com (fake)",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            Vec::new(),
            "Apple Push Services: com.example.app (fake)",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        Pki {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            server_cert_der: server_cert.der().clone(),
            server_key_der: server_key.serialize_der(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
        }
    }
}

/// rustls on aws-lc-rs, named explicitly so that a build which also enables ring in rustls
/// (feature unification elsewhere in a workspace) cannot make the default ambiguous.
fn server_tls(pki: &Pki, require_client_cert: bool) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS protocol versions");
    let builder = if require_client_cert {
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca_der.clone()).expect("adding the CA");
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .expect("client certificate verifier");
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key_der.clone()));
    let mut config = builder
        .with_single_cert(vec![pki.server_cert_der.clone()], key)
        .expect("server certificate");
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}
