//! Idempotency keys: a mutating request sent with `Idempotency-Key: <client uuid>` runs once;
//! a retry with the same key and the same request gets the first answer back (with
//! `Idempotent-Replayed: true`) and has no second effect.
//!
//! Why: a mobile client that loses its connection after sending a create cannot tell whether
//! the server saw it. With a key it simply sends it again; the server answers from what it
//! kept instead of creating a second record.
//!
//! How, in the order a request meets it (the HTTP glue is `http::idempotency`):
//! 1. **Scope.** Keys are per caller ([`scope`]): a user, an admin, an API key; anonymous
//!    callers share one scope. Another caller sending the same key runs fresh.
//! 2. **Derivation** ([`Key`]). From (scope, key) come three values, so that the table never
//!    holds anything a reader of the database could use: the row id (a hash, not the key), a
//!    keyed fingerprint of the request (a plain hash of a signup body would let a reader of the
//!    table test passwords offline), and the AES-256-GCM key that seals the stored response
//!    (signup answers with tokens, API-key creation with a key shown once; both are kept only
//!    as hashes elsewhere, and an idempotency row must not undo that).
//! 3. **On this process** ([`Idempotency::begin`]): a request with the key running here, or
//!    answered and not yet stored, answers at once without running anything: a different
//!    fingerprint is 422 `idempotency_key_reused`, an answer is replayed, a running request is
//!    409 `idempotency_in_progress`.
//! 4. **Run and claim.** Otherwise the handler runs, and the claim ([`claim_statement`]) rides
//!    with its first write, as the first statement of that write's own transaction
//!    ([`crate::db::FirstWrite`]): one `INSERT … ON CONFLICT DO UPDATE … WHERE` that only one
//!    request can win, on both databases, so replicas sharing a PostgreSQL database agree on
//!    who runs a request. The claim and the effect commit together or not at all, and a claim
//!    costs no commit of its own. The same statement takes over a claim whose lease ran out
//!    (its process crashed after the write) and a row older than [`RETENTION`] (pruning has
//!    not reached it). A claim that loses (an earlier request with the key, or another
//!    replica's running one) has its write rolled back, and the request answers from the row
//!    ([`lookup`]) as in step 3; so does a handler that wrote nothing, when the row holds
//!    something. (Looking the row up before every run would cost each request a read that
//!    only retries need; a retry runs its handler, but nothing it writes commits.) While the
//!    handler runs on after its write the lease is renewed ([`renew`]).
//! 5. **Store.** [`release`] deletes the claim of an answer a retry should re-run
//!    ([`storable`]); any other answer is sent at once and stored right after, in batches of
//!    up to [`STORE_BATCH`] per statement ([`store`]), held in [`Idempotency`] until then. A
//!    request that wrote nothing (a validation error) claimed nothing: its answer makes the row.
//! 6. **Prune** ([`prune`]): rows older than [`RETENTION`] are deleted once a minute in small
//!    batches, so no writer waits long behind the delete.
//!
//! The known limit: a crash between the write's commit and the answer's leaves a claim; a
//! retry gets 409 until the lease ends and then runs the request again. Creates with a
//! client-chosen id then answer 409 `conflict` instead of creating a second record. (A crash
//! before the write commits leaves nothing: the retry runs at once.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{digest, hmac};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::access::Principal;
use crate::db::{ColType, Db, Param};
use crate::error::Error;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The response header on a replayed answer.
pub const REPLAYED: &str = "idempotent-replayed";
/// Longest accepted key.
pub const MAX_KEY_LEN: usize = 255;
/// How long a claim blocks retries without being renewed: past it, the process that took the
/// claim is presumed dead and a retry may take the claim over.
pub const LEASE: Duration = Duration::from_secs(60);
/// How often a running request renews its claim (well inside [`LEASE`]).
pub const RENEW_EVERY: Duration = Duration::from_secs(20);
/// How long a key is kept (at least; pruning runs once a minute).
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Rows deleted per pruning statement: small, so a writer queued behind it waits little.
pub const PRUNE_BATCH: i64 = 500;
/// Most batches per pruning run; the rest waits for the next minute.
const PRUNE_MAX_BATCHES: usize = 200;
/// Largest response body kept for replay. Mutating answers are records and lists of them,
/// bounded by the request body limit; one past this is answered but not kept.
pub const MAX_STORED: usize = 8 << 20;

/// The scope keys live in: one per caller, anonymous callers share one.
pub fn scope(p: &Principal) -> String {
    match p {
        Principal::Anonymous => "anon".to_owned(),
        Principal::User { id, .. } => format!("user:{id}"),
        Principal::Admin { id, .. } => format!("admin:{id}"),
        Principal::ApiKey { id, .. } => format!("key:{id}"),
    }
}

/// Routes that ignore the header: sign-in (user and admin), refresh, one-time codes, file
/// tokens and resumable uploads. A sign-in is safe to repeat as it is (each attempt checks the
/// password and opens its own session), and so is asking for a file token (each answer is a
/// fresh 5-minute token; a replay a day later would hand out an expired one); refresh tokens
/// and one-time codes are single-use by design, and their reuse is a security signal (a spent
/// refresh token presented again revokes its session) that a stored answer would hide.
/// Resumable uploads (tus, `/v1/uploads`) resume by `Upload-Offset`, their own idempotency.
pub fn exempt(path: &str) -> bool {
    matches!(
        path,
        "/v1/auth/login" | "/v1/admin/auth/login" | "/v1/auth/refresh" | "/v1/files/token"
    ) || path.starts_with("/v1/auth/otp/")
        || path == "/v1/uploads"
        || path.starts_with("/v1/uploads/")
}

/// Whether a response is kept for replay. Not kept: answers a retry should re-run because
/// the next attempt may well succeed — server errors (5xx), missing or refused credentials
/// (401, 403: the caller may sign in or be granted access) and rate limits (429). Everything
/// else, validation errors and conflicts included, is the request's answer and is replayed.
pub fn storable(status: StatusCode) -> bool {
    !(status.is_server_error()
        || matches!(
            status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
        ))
}

/// Response headers kept with an answer: what describes the body and the resource. Not kept:
/// `x-request-id` (each attempt has its own), `content-length` (recomputed), anything set per
/// attempt by the layers around the handler (CORS, `date`).
pub fn kept_header(name: &str) -> bool {
    matches!(
        name,
        "content-type"
            | "content-location"
            | "location"
            | "etag"
            | "last-modified"
            | "cache-control"
            | "content-disposition"
    ) || name.starts_with("upload-")
        || name.starts_with("tus-")
}

/// The `Idempotency-Key` header: `None` when absent; 400 naming the header when it is empty,
/// longer than [`MAX_KEY_LEN`], not visible ASCII, or sent twice.
pub fn parse_key(headers: &HeaderMap) -> Result<Option<String>, Error> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bad = |why: &str| {
        Error::bad_request(format!(
            "Invalid `Idempotency-Key`: {why}. Send a new random UUID per request."
        ))
        .with("parameter", "Idempotency-Key")
    };
    if values.next().is_some() {
        return Err(bad("sent more than once"));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return Err(bad("empty"));
    }
    if bytes.len() > MAX_KEY_LEN {
        return Err(bad(&format!("longer than {MAX_KEY_LEN} characters")));
    }
    if !bytes.iter().all(|b| b.is_ascii_graphic()) {
        return Err(bad("only visible ASCII characters are allowed"));
    }
    // All visible ASCII, so valid UTF-8.
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// Bytes kept of the row id and the fingerprint (HMAC-SHA-256 truncated to 128 bits, far past
/// any collision). Why not all 32: the id is the key of a B-tree that takes one insert per
/// claim at a random position, and on SQLite each commit writes every page it touched; shorter
/// entries keep that index smaller and cut the write-ahead log a claim costs by about a tenth.
const HASH_BYTES: usize = 16;

/// What one (scope, key) pair derives: the row id, the fingerprint key and the sealing key.
pub struct Key {
    /// Hex row id (128 bits): the key itself is never stored.
    id: String,
    fingerprint: hmac::Key,
    seal: LessSafeKey,
}

impl Key {
    pub fn new(scope: &str, key: &str) -> Result<Key, Error> {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"ferrobase idempotency v1\0");
        ctx.update(scope.as_bytes());
        ctx.update(b"\0");
        ctx.update(key.as_bytes());
        let secret = hmac::Key::new(hmac::HMAC_SHA256, ctx.finish().as_ref());
        let id = hex(&hmac::sign(&secret, b"id").as_ref()[..HASH_BYTES]);
        let fingerprint = hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&secret, b"fp").as_ref());
        let enc = hmac::sign(&secret, b"enc");
        // A 32-byte key is always valid for AES-256; the error cannot happen.
        let seal = UnboundKey::new(&AES_256_GCM, enc.as_ref())
            .map_err(|_| Error::internal("AES-256 refused a 32-byte key"))?;
        Ok(Key {
            id,
            fingerprint,
            seal: LessSafeKey::new(seal),
        })
    }

    /// The row id (exposed for tests and tools that seed rows).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What makes two requests "the same": method, path and query, `If-Match`, and the body
    /// (see [`RequestBody`]). Keyed by the derived secret, so the stored value says nothing
    /// about the body to someone without the client's key.
    pub fn fingerprint(
        &self,
        method: &str,
        path_and_query: &str,
        if_match: Option<&[u8]>,
        body: RequestBody<'_>,
    ) -> String {
        let mut ctx = hmac::Context::with_key(&self.fingerprint);
        let mut field = |bytes: &[u8]| {
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(bytes);
        };
        field(method.as_bytes());
        field(path_and_query.as_bytes());
        field(if_match.unwrap_or(b"-"));
        match body {
            RequestBody::Bytes(bytes) => field(&canonical_body(bytes)),
            RequestBody::Streamed {
                content_type,
                disposition,
                length,
            } => {
                field(b"s");
                field(content_type);
                field(disposition);
                field(length);
            }
        }
        hex(&ctx.sign().as_ref()[..HASH_BYTES])
    }

    /// Seals an answer: base64 of nonce, ciphertext and tag; the row id and status are bound
    /// in as associated data, so a sealed answer cannot be moved to another row or status.
    fn seal(&self, stored: &Stored) -> Result<String, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| Error::internal("no random nonce"))?;
        let mut buf = stored.encode();
        self.seal
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad(stored.status)),
                &mut buf,
            )
            .map_err(|_| Error::internal("sealing an idempotent response failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(base64::engine::general_purpose::STANDARD_NO_PAD.encode(out))
    }

    fn open(&self, status: u16, sealed: &str) -> Result<Stored, Error> {
        let broken = || Error::internal("a stored idempotent response does not open");
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(sealed)
            .map_err(|_| broken())?;
        if raw.len() < NONCE_LEN {
            return Err(broken());
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| broken())?;
        let mut rest = rest.to_vec();
        let plain = self
            .seal
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad(status)),
                &mut rest,
            )
            .map_err(|_| broken())?;
        Stored::decode(status, plain).ok_or_else(broken)
    }

    fn aad(&self, status: u16) -> Vec<u8> {
        let mut aad = self.id.as_bytes().to_vec();
        aad.extend_from_slice(&status.to_be_bytes());
        aad
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// A request body as [`Key::fingerprint`] sees it.
#[derive(Clone, Copy, Debug)]
pub enum RequestBody<'a> {
    /// A buffered body (every route but uploads): the same JSON value (key order and
    /// whitespace do not matter, see [`canonical_json`]), or the same bytes if it is not JSON.
    Bytes(&'a [u8]),
    /// An upload streamed to storage ([`streamed`]): compared by what describes it, never held
    /// in memory. `content_type` is the essence only (a multipart boundary differs between
    /// attempts), `disposition` the raw `Content-Disposition` (the file name of a raw upload),
    /// `length` the `Content-Length` of a raw upload (empty for multipart, whose length
    /// includes the boundary).
    Streamed {
        content_type: &'a [u8],
        disposition: &'a [u8],
        length: &'a [u8],
    },
}

/// Whether a request's body is streamed to storage rather than buffered: a multipart create
/// or update, or a raw file upload (`PUT /v1/collections/{c}/records/{id}/files/{field}`).
/// Those may be far larger than the JSON body limit, so they are fingerprinted by their
/// headers ([`RequestBody::Streamed`]).
pub fn streamed(method: &str, path: &str, content_type: Option<&str>) -> bool {
    let multipart = content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|e| e.trim().eq_ignore_ascii_case("multipart/form-data"))
    });
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let raw_upload = method == "PUT"
        && matches!(
            segments.as_slice(),
            ["v1", "collections", _, "records", _, "files", _]
        );
    multipart || raw_upload
}

/// The body as the fingerprint sees it: `j` + [`canonical_json`] when it parses as JSON,
/// `r` + the bytes otherwise (an empty body is `r` alone).
fn canonical_body(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 1);
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            out.push(b'j');
            canonical_json(&v, &mut out);
        }
        Err(_) => {
            out.push(b'r');
            out.extend_from_slice(body);
        }
    }
    out
}

/// One canonical text per JSON value: object members sorted by key (byte order), no
/// whitespace, strings and numbers as serde_json writes them. Numbers keep the form the
/// server parses them to: `1` and `1.0` differ (an integer field treats them differently),
/// `1e2` and `100.0` are the same. Recursion is bounded by serde_json's nesting limit (128).
pub fn canonical_json(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_string(k, out);
                out.push(b':');
                canonical_json(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(v, out);
            }
            out.push(b']');
        }
        Value::String(s) => write_json_string(s, out),
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
    }
}

fn write_json_string(s: &str, out: &mut Vec<u8>) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// A kept answer: status, the [`kept_header`]s and the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Stored {
    /// Length-prefixed headers, then the body: `u16` count, per header `u16` name length,
    /// name, `u32` value length, value; the rest is the body.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 64);
        let headers: Vec<_> = self
            .headers
            .iter()
            .filter(|(n, v)| n.len() <= usize::from(u16::MAX) && v.len() <= u32::MAX as usize)
            .take(usize::from(u16::MAX))
            .collect();
        out.extend_from_slice(&(headers.len() as u16).to_be_bytes());
        for (name, value) in headers {
            out.extend_from_slice(&(name.len() as u16).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(value.len() as u32).to_be_bytes());
            out.extend_from_slice(value);
        }
        out.extend_from_slice(&self.body);
        out
    }

    fn decode(status: u16, mut raw: &[u8]) -> Option<Stored> {
        fn take<'a>(raw: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if raw.len() < n {
                return None;
            }
            let (head, rest) = raw.split_at(n);
            *raw = rest;
            Some(head)
        }
        let count = u16::from_be_bytes(take(&mut raw, 2)?.try_into().ok()?);
        let mut headers = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let n = u16::from_be_bytes(take(&mut raw, 2)?.try_into().ok()?);
            let name = std::str::from_utf8(take(&mut raw, usize::from(n))?).ok()?;
            let n = u32::from_be_bytes(take(&mut raw, 4)?.try_into().ok()?);
            let value = take(&mut raw, n as usize)?;
            headers.push((name.to_owned(), value.to_vec()));
        }
        Some(Stored {
            status,
            headers,
            body: raw.to_vec(),
        })
    }
}

/// The right to store a request's answer and, once its write committed the claim, to renew
/// or give the claim up.
#[derive(Clone, Debug)]
pub struct Ticket {
    id: String,
    /// Random per request: a completion or release by a process whose claim was taken over
    /// matches no row.
    owner: i64,
}

impl Ticket {
    /// A ticket for one run of a request with `key`.
    pub fn new(key: &Key) -> Ticket {
        Ticket {
            id: key.id.clone(),
            owner: rand::random(),
        }
    }
}

/// What is known about a key before its request runs.
#[derive(Debug)]
pub enum Claim {
    /// Nobody holds it (never used, past retention, or its holder died): run the request.
    Free,
    /// The first request's answer.
    Replay(Stored),
    /// The first request is still running.
    InFlight,
    /// The key was used for a different request.
    Reused,
}

/// The requests with a key that run in this process, and the answers of those that are done
/// but not stored yet, by row id; plus the queue that stores those answers.
///
/// Why in memory: a second request with the same key on this process must neither run nor
/// wait for the database to say no, and an answer is sent to its client before it is stored
/// (storing waits for the next batch of [`STORE_BATCH`]), so a retry in between is answered
/// from here. On another PostgreSQL replica such a retry gets 409 for those milliseconds; the
/// database (see [`claim_statement`]) is what keeps replicas from running a request twice.
pub struct Idempotency {
    running: Arc<Running>,
    store: tokio::sync::mpsc::Sender<Completion>,
}

type Running = std::sync::Mutex<HashMap<String, RunningRequest>>;

struct RunningRequest {
    fingerprint: String,
    answer: Option<Arc<Stored>>,
}

fn lock(running: &Running) -> std::sync::MutexGuard<'_, HashMap<String, RunningRequest>> {
    // A panic while holding the lock cannot leave the map half-written: use it anyway.
    running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Most answers one statement stores.
pub const STORE_BATCH: usize = 64;
/// How long the store task waits after an answer arrives for others to store with it.
const STORE_LINGER: Duration = Duration::from_millis(2);
/// Answers waiting to be stored before a request waits for room (after sending its answer).
const STORE_QUEUE: usize = 4096;

impl Idempotency {
    /// The registry, and a task that stores answers in batches on `db` (it ends when the
    /// registry is dropped, after storing what was queued).
    pub fn spawn(db: Db) -> Idempotency {
        let running: Arc<Running> = Arc::default();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Completion>(STORE_QUEUE);
        let map = running.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(STORE_BATCH);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                // A moment for company: under load one statement then stores dozens of
                // answers in one commit instead of one or two (nobody waits on it: the
                // answers went out already, and retries here are answered from memory).
                tokio::time::sleep(STORE_LINGER).await;
                while batch.len() < STORE_BATCH {
                    match rx.try_recv() {
                        Ok(c) => batch.push(c),
                        Err(_) => break,
                    }
                }
                let ids: Vec<String> = batch.iter().map(|c| c.ticket.id.clone()).collect();
                match store(&db, std::mem::take(&mut batch)).await {
                    Ok(n) if n < ids.len() as u64 => tracing::warn!(
                        lost = ids.len() as u64 - n,
                        "idempotency claims were taken over before their answers were stored"
                    ),
                    Ok(_) => {}
                    // Those claims then block retries until their leases end.
                    Err(e) => tracing::warn!(error = %e, "storing idempotent responses failed"),
                }
                let mut running = lock(&map);
                for id in ids {
                    running.remove(&id);
                }
            }
        });
        Idempotency { running, store: tx }
    }

    /// Marks `key` as running here, or says why it may not run: another request with it runs
    /// (or just answered) on this process.
    pub fn begin(&self, key: &Key, fingerprint: &str) -> Result<(), Claim> {
        let mut running = lock(&self.running);
        if let Some(r) = running.get(&key.id) {
            return Err(if r.fingerprint != fingerprint {
                Claim::Reused
            } else if let Some(answer) = &r.answer {
                Claim::Replay(Stored::clone(answer))
            } else {
                Claim::InFlight
            });
        }
        running.insert(
            key.id.clone(),
            RunningRequest {
                fingerprint: fingerprint.to_owned(),
                answer: None,
            },
        );
        Ok(())
    }

    /// Forgets a request that [`begin`](Self::begin) marked, with no answer to store.
    pub fn end(&self, key: &Key) {
        lock(&self.running).remove(&key.id);
    }

    /// Keeps `stored` for retries on this process and queues it to be stored; forgotten
    /// once stored. `at` is when the request began.
    pub async fn answered(
        &self,
        key: &Key,
        ticket: &Ticket,
        fingerprint: &str,
        at: DateTime<Utc>,
        stored: Arc<Stored>,
    ) {
        let completion = match Completion::new(key, ticket, fingerprint, at, &stored) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "sealing an idempotent response failed");
                self.end(key);
                return;
            }
        };
        self.keep(key, stored);
        if self.store.send(completion).await.is_err() {
            self.end(key);
        }
    }

    /// Keeps `stored` as the answer of the request with `key` running here (marked by
    /// [`begin`](Self::begin)), for retries until it is stored.
    pub fn keep(&self, key: &Key, stored: Arc<Stored>) {
        if let Some(r) = lock(&self.running).get_mut(&key.id) {
            r.answer = Some(stored);
        }
    }

    /// Keys running or waiting to be stored here (tests, metrics).
    pub fn len(&self) -> usize {
        lock(&self.running).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits (up to `limit`) until every queued answer is stored: at shutdown, before the
    /// database closes.
    pub async fn drain(&self, limit: Duration) {
        let until = tokio::time::Instant::now() + limit;
        while self.store.capacity() < STORE_QUEUE || !self.is_empty() {
            if tokio::time::Instant::now() >= until {
                tracing::warn!(
                    waiting = self.len(),
                    "idempotent answers still unstored at shutdown"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// An answer to store: the row the request's claim made (or a new one when its request wrote
/// nothing).
#[derive(Clone, Debug)]
pub struct Completion {
    ticket: Ticket,
    fingerprint: String,
    at: DateTime<Utc>,
    status: u16,
    sealed: String,
}

impl Completion {
    /// The answer of the request holding `ticket`, sealed under `key`.
    pub fn new(
        key: &Key,
        ticket: &Ticket,
        fingerprint: &str,
        at: DateTime<Utc>,
        stored: &Stored,
    ) -> Result<Completion, Error> {
        Ok(Completion {
            ticket: ticket.clone(),
            fingerprint: fingerprint.to_owned(),
            at,
            status: stored.status,
            sealed: key.seal(stored)?,
        })
    }
}

/// Takes the key: a new row, or one whose claim was abandoned (same request, lease over: its
/// process died) or that is past [`RETENTION`] (pruning has not reached it).
const CLAIM: &str = "INSERT INTO _fb_idempotency (id, fingerprint, owner, created_at, lease_until) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (id) DO UPDATE SET fingerprint = excluded.fingerprint, owner = excluded.owner, \
     created_at = excluded.created_at, lease_until = excluded.lease_until, status = NULL, \
     response = NULL \
     WHERE (_fb_idempotency.status IS NULL AND _fb_idempotency.lease_until < $4 \
     AND _fb_idempotency.fingerprint = excluded.fingerprint) \
     OR _fb_idempotency.created_at < $6";

/// The claim of a request holding `ticket`, made at `now`, as the statement that rides with
/// its first write ([`crate::db::FirstWrite`]): the claim commits with the request's effect,
/// or not at all. Of any number of requests racing for one key on any number of replicas,
/// exactly one claims it (the row's primary key decides, in the database); the others' writes
/// are rolled back.
pub fn claim_statement(
    ticket: &Ticket,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Arc<crate::db::FirstWrite> {
    crate::db::FirstWrite::new(CLAIM, claim_params(ticket, fingerprint, now))
}

fn claim_params(ticket: &Ticket, fingerprint: &str, now: DateTime<Utc>) -> Vec<Param> {
    vec![
        Param::Text(ticket.id.clone()),
        Param::Text(fingerprint.to_owned()),
        Param::Int(ticket.owner),
        Param::Time(now),
        Param::Time(now + delta(LEASE)),
        Param::Time(retention_cutoff(now)),
    ]
}

/// Claims `key` in a transaction of its own, with no effect beside it: `false` when it is
/// held. What a request's first write does with [`claim_statement`]; for tests and tools
/// that need a claim in a given state.
pub async fn claim_alone(
    db: &Db,
    ticket: &Ticket,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let params = claim_params(ticket, fingerprint, now);
    let n = db
        .write_one(move |mut c| Box::pin(async move { c.execute(CLAIM, &params).await }))
        .await?;
    Ok(n == 1)
}

/// What the table says about `key` for a request with `fingerprint`, at `now`.
pub async fn lookup(
    db: &Db,
    key: &Key,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Result<Claim, Error> {
    let id = key.id.clone();
    let row = db
        .read_by_key(move |mut c| {
            Box::pin(async move {
                c.fetch_one(
                    "SELECT fingerprint, status, response, created_at, lease_until \
                     FROM _fb_idempotency WHERE id = $1",
                    &[Param::Text(id)],
                    &[
                        ColType::Text,
                        ColType::Int,
                        ColType::Text,
                        ColType::Time,
                        ColType::Time,
                    ],
                )
                .await
            })
        })
        .await?;
    let Some(row) = row else {
        return Ok(Claim::Free);
    };
    let mut row = row.into_iter();
    let stored_fp = row.next().and_then(Param::into_string).unwrap_or_default();
    let status = row.next().and_then(|p| p.as_i64());
    let response = row.next().and_then(Param::into_string);
    let time = |p: Option<Param>| match p {
        Some(Param::Time(t)) => Some(t),
        _ => None,
    };
    let created_at = time(row.next());
    let lease_until = time(row.next());
    if created_at.is_some_and(|t| t < retention_cutoff(now)) {
        return Ok(Claim::Free);
    }
    if stored_fp != fingerprint {
        return Ok(Claim::Reused);
    }
    Ok(match (status, response) {
        (Some(status), Some(sealed)) => {
            let status = u16::try_from(status)
                .map_err(|_| Error::internal("a stored idempotent status is out of range"))?;
            Claim::Replay(key.open(status, &sealed)?)
        }
        _ if lease_until.is_some_and(|t| t < now) => Claim::Free,
        _ => Claim::InFlight,
    })
}

/// Extends a committed claim's lease; `false` when the claim is no longer this ticket's.
pub async fn renew(db: &Db, ticket: &Ticket, now: DateTime<Utc>) -> Result<bool, Error> {
    let params = vec![
        Param::Text(ticket.id.clone()),
        Param::Int(ticket.owner),
        Param::Time(now + delta(LEASE)),
    ];
    let n = db
        .write_one(move |mut c| {
            Box::pin(async move {
                c.execute(
                    "UPDATE _fb_idempotency SET lease_until = $3 \
                     WHERE id = $1 AND owner = $2 AND status IS NULL",
                    &params,
                )
                .await
            })
        })
        .await?;
    Ok(n == 1)
}

/// Stores answers, [`STORE_BATCH`] per statement: each fills its ticket's claim, or makes a
/// row when its request wrote nothing (and so claimed nothing), taking over what [`CLAIM`]
/// may take over. The number stored; one whose claim another request took over meanwhile is
/// not (its answer went to its own client only).
pub async fn store(db: &Db, completions: Vec<Completion>) -> Result<u64, Error> {
    let mut total = 0;
    for chunk in completions.chunks(STORE_BATCH) {
        let mut sql = String::from(
            "INSERT INTO _fb_idempotency \
             (id, fingerprint, owner, created_at, lease_until, status, response) VALUES ",
        );
        let mut params = Vec::with_capacity(chunk.len() * 6 + 1);
        for (i, c) in chunk.iter().enumerate() {
            let n = i * 6;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 4,
                n + 5,
                n + 6
            ));
            params.extend([
                Param::Text(c.ticket.id.clone()),
                Param::Text(c.fingerprint.clone()),
                Param::Int(c.ticket.owner),
                Param::Time(c.at),
                Param::Int(i64::from(c.status)),
                Param::Text(c.sealed.clone()),
            ]);
        }
        let cutoff = chunk.len() * 6 + 1;
        sql.push_str(&format!(
            " ON CONFLICT (id) DO UPDATE SET fingerprint = excluded.fingerprint, \
             owner = excluded.owner, created_at = excluded.created_at, \
             lease_until = excluded.lease_until, status = excluded.status, \
             response = excluded.response \
             WHERE (_fb_idempotency.owner = excluded.owner AND _fb_idempotency.status IS NULL) \
             OR (_fb_idempotency.status IS NULL AND _fb_idempotency.lease_until < excluded.created_at \
             AND _fb_idempotency.fingerprint = excluded.fingerprint) \
             OR _fb_idempotency.created_at < ${cutoff}"
        ));
        // The oldest answer of the batch decides what counts as past retention.
        let oldest = chunk.iter().map(|c| c.at).min().unwrap_or_else(Utc::now);
        params.push(Param::Time(retention_cutoff(oldest)));
        total += db
            .write_one(move |mut c| Box::pin(async move { c.execute(&sql, &params).await }))
            .await?;
    }
    Ok(total)
}

/// Gives a committed claim up (its answer is not [`storable`]), so a retry runs the request
/// again.
pub async fn release(db: &Db, ticket: &Ticket) -> Result<(), Error> {
    let params = vec![Param::Text(ticket.id.clone()), Param::Int(ticket.owner)];
    db.write_one(move |mut c| {
        Box::pin(async move {
            c.execute(
                "DELETE FROM _fb_idempotency WHERE id = $1 AND owner = $2 AND status IS NULL",
                &params,
            )
            .await
        })
    })
    .await?;
    Ok(())
}

/// Deletes rows created before `before`, [`PRUNE_BATCH`] per statement with a pause between
/// statements (writers queued meanwhile go first); the number deleted. Stops after a bounded
/// number of batches: the next run (a minute later) continues.
pub async fn prune(db: &Db, before: DateTime<Utc>) -> Result<u64, Error> {
    let mut total = 0;
    for _ in 0..PRUNE_MAX_BATCHES {
        let n = db
            .write_one(move |mut c| {
                Box::pin(async move {
                    c.execute(
                        "DELETE FROM _fb_idempotency WHERE id IN (SELECT id FROM _fb_idempotency \
                         WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
                        &[Param::Time(before), Param::Int(PRUNE_BATCH)],
                    )
                    .await
                })
            })
            .await?;
        total += n;
        if n < PRUNE_BATCH as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(total)
}

/// Rows created before this are past [`RETENTION`] at `now`: pruned, and never replayed.
pub fn retention_cutoff(now: DateTime<Utc>) -> DateTime<Utc> {
    now - delta(RETENTION)
}

/// A constant above as a chrono span (they are all far inside its range).
fn delta(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::Code;
    use axum::http::HeaderValue;
    use proptest::prelude::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        let mut out = Vec::new();
        canonical_json(v, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn fp(key: &Key, body: &str) -> String {
        key.fingerprint(
            "POST",
            "/v1/collections/posts/records",
            None,
            RequestBody::Bytes(body.as_bytes()),
        )
    }

    #[test]
    fn canonical_form_sorts_keys_at_every_depth_and_drops_whitespace() {
        let v: Value = serde_json::from_str(
            r#" { "b" : 1, "a" : [ {"d": 2, "c": "x\"y"}, null, true ], "é": {"z": {}, "y": []} } "#,
        )
        .unwrap();
        assert_eq!(
            canon(&v),
            r#"{"a":[{"c":"x\"y","d":2},null,true],"b":1,"é":{"y":[],"z":{}}}"#
        );
        // Arrays keep their order: it is part of the value.
        assert_ne!(canon(&json!([1, 2])), canon(&json!([2, 1])));
        // Numbers as the server reads them.
        assert_eq!(canon(&serde_json::from_str("1e2").unwrap()), "100.0");
        assert_ne!(canon(&json!(1)), canon(&json!(1.0)));
    }

    #[test]
    fn same_json_value_same_fingerprint_anything_else_differs() {
        let key = Key::new("user:1", "k-1").unwrap();
        let a = fp(&key, r#"{"title":"Hi","views":3}"#);
        assert_eq!(a, fp(&key, "{\n  \"views\": 3,\n  \"title\": \"Hi\"\n}"));
        assert_ne!(a, fp(&key, r#"{"title":"Hi","views":4}"#));
        assert_ne!(a, fp(&key, r#"{"title":"Hi"}"#));
        let body = RequestBody::Bytes(br#"{"title":"Hi","views":3}"#);
        let path = "/v1/collections/posts/records";
        assert_ne!(a, key.fingerprint("PATCH", path, None, body));
        assert_ne!(
            a,
            key.fingerprint("POST", "/v1/collections/other/records", None, body)
        );
        assert_ne!(
            a,
            key.fingerprint("POST", &format!("{path}?x=1"), None, body)
        );
        assert_ne!(a, key.fingerprint("POST", path, Some(b"\"1\""), body));
        // Another scope or key derives another fingerprint key.
        assert_ne!(
            a,
            fp(
                &Key::new("user:2", "k-1").unwrap(),
                r#"{"title":"Hi","views":3}"#
            )
        );
        assert_ne!(
            a,
            fp(
                &Key::new("user:1", "k-2").unwrap(),
                r#"{"title":"Hi","views":3}"#
            )
        );
        // Bodies that are not JSON count by their bytes, and never equal a JSON body.
        assert_eq!(fp(&key, "not json"), fp(&key, "not json"));
        assert_ne!(fp(&key, "not json"), fp(&key, "not  json"));
        assert_ne!(fp(&key, ""), fp(&key, "\"\""));
    }

    #[test]
    fn uploads_count_by_their_headers_and_never_equal_a_buffered_body() {
        let key = Key::new("user:1", "k").unwrap();
        let up = |ct: &'static [u8], disposition: &'static [u8], length: &'static [u8]| {
            key.fingerprint(
                "PUT",
                "/v1/collections/a/records/1/files/f",
                None,
                RequestBody::Streamed {
                    content_type: ct,
                    disposition,
                    length,
                },
            )
        };
        let a = up(b"image/png", b"attachment; filename=\"a.png\"", b"100");
        assert_eq!(
            a,
            up(b"image/png", b"attachment; filename=\"a.png\"", b"100")
        );
        assert_ne!(
            a,
            up(b"image/png", b"attachment; filename=\"b.png\"", b"100")
        );
        assert_ne!(
            a,
            up(b"image/png", b"attachment; filename=\"a.png\"", b"101")
        );
        assert_ne!(
            a,
            up(b"image/jpeg", b"attachment; filename=\"a.png\"", b"100")
        );
        let buffered = key.fingerprint(
            "PUT",
            "/v1/collections/a/records/1/files/f",
            None,
            RequestBody::Bytes(b""),
        );
        assert_ne!(up(b"", b"", b""), buffered);
    }

    #[test]
    fn multipart_bodies_and_raw_uploads_are_streamed() {
        let file = "/v1/collections/albums/records/r1/files/cover";
        assert!(streamed("PUT", file, None));
        assert!(streamed("PUT", file, Some("application/json")));
        assert!(!streamed("PATCH", file, None));
        let records = "/v1/collections/albums/records";
        assert!(streamed(
            "POST",
            records,
            Some("multipart/form-data; boundary=x")
        ));
        assert!(streamed(
            "PATCH",
            &format!("{records}/r1"),
            Some("Multipart/Form-Data;boundary=y")
        ));
        assert!(!streamed("POST", records, Some("application/json")));
        assert!(!streamed("POST", records, None));
        assert!(!streamed(
            "PUT",
            "/v1/collections/albums/records/r1/files",
            None
        ));
    }

    #[test]
    fn ids_are_per_scope_and_do_not_contain_the_key() {
        let a = Key::new("anon", "0190a5f3-7d7e-7c1e-9a55-6c7f3b0e2a11").unwrap();
        assert_eq!(a.id().len(), 2 * HASH_BYTES);
        assert!(!a.id().contains("0190a5f3"));
        assert_eq!(
            a.id(),
            Key::new("anon", "0190a5f3-7d7e-7c1e-9a55-6c7f3b0e2a11")
                .unwrap()
                .id()
        );
        assert_ne!(
            a.id(),
            Key::new("user:x", "0190a5f3-7d7e-7c1e-9a55-6c7f3b0e2a11")
                .unwrap()
                .id()
        );
        // The separator keeps (scope, key) pairs apart.
        assert_ne!(
            Key::new("ab", "c").unwrap().id(),
            Key::new("a", "bc").unwrap().id()
        );
    }

    #[test]
    fn sealed_answers_open_only_with_their_key_row_and_status() {
        let key = Key::new("user:1", "k").unwrap();
        let stored = Stored {
            status: 201,
            headers: vec![
                ("content-type".into(), b"application/json".to_vec()),
                ("etag".into(), b"\"1\"".to_vec()),
            ],
            body: br#"{"access_token":"secret"}"#.to_vec(),
        };
        let sealed = key.seal(&stored).unwrap();
        assert!(!sealed.contains("secret"));
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(&sealed)
            .unwrap();
        assert!(
            !raw.windows(6).any(|w| w == b"secret"),
            "the body is encrypted"
        );
        assert_eq!(key.open(201, &sealed).unwrap(), stored);
        assert!(key.open(200, &sealed).is_err(), "status is authenticated");
        assert!(
            Key::new("user:1", "k2")
                .unwrap()
                .open(201, &sealed)
                .is_err()
        );
        assert!(Key::new("user:2", "k").unwrap().open(201, &sealed).is_err());
        assert!(key.open(201, "!!").is_err());
        assert!(key.open(201, "").is_err());
        let empty = Stored {
            status: 204,
            headers: vec![],
            body: vec![],
        };
        assert_eq!(key.open(204, &key.seal(&empty).unwrap()).unwrap(), empty);
    }

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(HEADER, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        assert_eq!(parse_key(&headers(&[])).unwrap(), None);
        let uuid = "0190a5f3-7d7e-7c1e-9a55-6c7f3b0e2a11";
        assert_eq!(
            parse_key(&headers(&[uuid.as_bytes()])).unwrap().as_deref(),
            Some(uuid)
        );
        let longest = "k".repeat(255);
        assert!(parse_key(&headers(&[longest.as_bytes()])).is_ok());
        let too_long = "k".repeat(256);
        for bad in [
            &b""[..],
            too_long.as_bytes(),
            b"a b",
            b"tab\there",
            "caf\u{e9}".as_bytes(),
            b"\xff",
        ] {
            let e = parse_key(&headers(&[bad])).unwrap_err();
            assert_eq!(e.code, Code::BadRequest, "{bad:?}");
            assert_eq!(e.extra["parameter"], "Idempotency-Key");
        }
        let twice = parse_key(&headers(&[b"a", b"b"])).unwrap_err();
        assert!(twice.detail.contains("more than once"), "{}", twice.detail);
    }

    #[test]
    fn retryable_answers_are_not_stored() {
        for s in [200, 201, 204, 400, 404, 409, 412, 413, 422] {
            assert!(storable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [401, 403, 429, 500, 502, 503] {
            assert!(!storable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    #[test]
    fn sign_in_refresh_otp_file_tokens_and_tus_are_exempt() {
        for p in [
            "/v1/auth/login",
            "/v1/admin/auth/login",
            "/v1/auth/refresh",
            "/v1/auth/otp/request",
            "/v1/auth/otp/verify",
            "/v1/files/token",
            "/v1/uploads",
            "/v1/uploads/abc",
        ] {
            assert!(exempt(p), "{p}");
        }
        for p in [
            "/v1/auth/signup",
            "/v1/auth/logout",
            "/v1/batch",
            "/v1/collections/posts/records",
            "/v1/admin/api-keys",
            "/v1/collections/a/records/1/files/f",
            "/v1/uploadsx",
        ] {
            assert!(!exempt(p), "{p}");
        }
    }

    /// Any JSON value (bounded depth and size).
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// The same value with every object's members in another order (a seeded shuffle).
    fn permute(v: &Value, seed: &mut u64) -> Value {
        match v {
            Value::Object(m) => {
                let mut members: Vec<(String, Value)> = m
                    .iter()
                    .map(|(k, v)| (k.clone(), permute(v, seed)))
                    .collect();
                for i in (1..members.len()).rev() {
                    *seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    members.swap(i, (*seed >> 33) as usize % (i + 1));
                }
                Value::Object(members.into_iter().collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(|v| permute(v, seed)).collect()),
            other => other.clone(),
        }
    }

    proptest! {
        #[test]
        fn key_order_and_whitespace_never_change_the_fingerprint(v in json_value(), mut seed in any::<u64>()) {
            let key = Key::new("anon", "k").unwrap();
            let compact = serde_json::to_string(&v).unwrap();
            let shuffled = serde_json::to_string_pretty(&permute(&v, &mut seed)).unwrap();
            prop_assert_eq!(fp(&key, &compact), fp(&key, &shuffled));
        }

        #[test]
        fn different_values_have_different_fingerprints(a in json_value(), b in json_value()) {
            prop_assume!(a != b);
            let key = Key::new("anon", "k").unwrap();
            prop_assert_ne!(
                fp(&key, &serde_json::to_string(&a).unwrap()),
                fp(&key, &serde_json::to_string(&b).unwrap())
            );
        }
    }
}
