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
//! 4. **Run and claim.** Otherwise the handler runs, and the claim
//!    ([`Table::claim_statement`]) rides with its first write, as the first statement of that
//!    write's own transaction ([`crate::db::FirstWrite`]). On PostgreSQL it is one
//!    `INSERT … ON CONFLICT DO UPDATE … WHERE` that only one request can win, so replicas
//!    sharing the database agree on who runs a request; on SQLite (one process, which already
//!    runs one request per key at a time) it appends a row, or takes an existing one over on
//!    the same conditions (see [`table`] for why the table has no index on ids there). The claim and the effect commit together or not at all, and a claim
//!    costs no commit of its own. The same statement takes over a claim whose lease ran out
//!    (its process crashed after the write) and a row older than [`RETENTION`] (pruning has
//!    not reached it). A claim that loses (an earlier request with the key, or another
//!    replica's running one) has its write rolled back, and the request answers from the row
//!    ([`Table::lookup`]) as in step 3; so does a handler that wrote nothing, when the row holds
//!    something. (Looking the row up before every run would cost each request a read that
//!    only retries need; a retry runs its handler, but nothing it writes commits.) While the
//!    handler runs on after its write the lease is renewed ([`Table::renew`]).
//! 5. **Store.** [`Table::release`] deletes the claim of an answer a retry should re-run
//!    ([`storable`]); any other answer is sent at once and stored right after, in batches of
//!    up to [`STORE_BATCH`] per commit ([`Table::store`]), held in [`Idempotency`] until then. A
//!    request that wrote nothing (a validation error) claimed nothing: its answer makes the row.
//! 6. **Prune** ([`Table::prune`]): rows older than [`RETENTION`] are deleted once a minute in small
//!    batches, so no writer waits long behind the delete.
//!
//! The known limit: a crash between the write's commit and the answer's leaves a claim; a
//! retry gets 409 until the lease ends and then runs the request again. Creates with a
//! client-chosen id then answer 409 `conflict` instead of creating a second record. (A crash
//! before the write commits leaves nothing: the retry runs at once.)

use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{digest, hmac};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::access::Principal;

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
    /// The same 128 bits as a number (SQLite's in-memory map of rows is keyed by it).
    num: u128,
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
        let id_tag = hmac::sign(&secret, b"id");
        let id_bytes: [u8; HASH_BYTES] = id_tag.as_ref()[..HASH_BYTES]
            .try_into()
            .map_err(|_| Error::internal("an HMAC-SHA-256 tag is shorter than 16 bytes"))?;
        let (id, num) = (hex(&id_bytes), u128::from_be_bytes(id_bytes));
        let fingerprint = hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&secret, b"fp").as_ref());
        let enc = hmac::sign(&secret, b"enc");
        // A 32-byte key is always valid for AES-256; the error cannot happen.
        let seal = UnboundKey::new(&AES_256_GCM, enc.as_ref())
            .map_err(|_| Error::internal("AES-256 refused a 32-byte key"))?;
        Ok(Key {
            id,
            num,
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

mod registry;
mod table;

pub use registry::Idempotency;
pub use table::{Claim, Completion, Table, Ticket};

/// The hasher of the in-memory maps keyed by id: foldhash, seeded per process (SipHash, the
/// standard one, was ~1 µs of every keyed write for two look-ups; ids are public functions of
/// the client's key, so an unseeded hash would let a client grind colliding keys).
pub type IdHash = foldhash::quality::RandomState;

/// Most answers one commit stores.
pub const STORE_BATCH: usize = 64;

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
