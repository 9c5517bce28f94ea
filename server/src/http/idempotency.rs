//! The `Idempotency-Key` header on mutating `/v1` routes: HTTP glue over
//! [`crate::idempotency`], which owns the table, the derivation of ids and fingerprints, and
//! what is stored.
//!
//! Called by the `authenticate` middleware (one layer, so requests pay no extra boxed future
//! for it) once the caller is known; requests without the header, and reads, never reach it.
//! A request that runs runs its handler in a task of its own: when the client hangs up
//! mid-request (the case a retry exists for) the handler still finishes and its answer is
//! stored, so the retry gets a replay instead of waiting out a lease. The answer is sent as
//! soon as the handler is done and stored right after (see `idempotency::Idempotency`).
//! (Graceful shutdown waits for open connections, so for every handler whose client is still
//! there, and then for the answers queued to be stored; a handler whose client left may be
//! cut short by the database closing, and its claim, if its write made one, then expires with
//! its lease.)

use std::future::Future;
use std::panic::AssertUnwindSafe;

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures::FutureExt;

use super::AppState;
use super::middleware::REQUEST_ID;
use crate::db::{FirstWrite, FirstWriteState};
use crate::error::{Code, Error};
use crate::idempotency::{self as idem, Claim, Key, RequestBody, Stored, Ticket};
use std::sync::Arc;

/// Whether a request asks for idempotency: a mutating method and the header (valid or not).
pub fn wanted(req: &Request) -> bool {
    matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) && req.headers().contains_key(idem::HEADER)
        && routed(req)
}

/// Whether the router serves this method on the matched path. A method a path does not take
/// must get its 405 (the key is not looked at), and the middleware runs before the router
/// decides that; the contract lists exactly the served operations (a test checks it).
fn routed(req: &Request) -> bool {
    use std::collections::HashSet;
    use std::sync::OnceLock;
    static SERVED: OnceLock<HashSet<(String, String)>> = OnceLock::new();
    let served = SERVED.get_or_init(|| {
        let doc = crate::openapi::generic();
        let mut out = HashSet::new();
        if let Some(paths) = doc["paths"].as_object() {
            for (path, item) in paths {
                if let Some(ops) = item.as_object() {
                    for method in ops.keys() {
                        out.insert((method.to_ascii_uppercase(), path.clone()));
                    }
                }
            }
        }
        out
    });
    let Some(matched) = req.extensions().get::<axum::extract::MatchedPath>() else {
        return false;
    };
    served.contains(&(
        req.method().as_str().to_owned(),
        matched.as_str().to_owned(),
    ))
}

/// Runs a request that carries `Idempotency-Key` for the caller `scope`.
pub async fn run(state: &AppState, scope: String, req: Request, next: Next) -> Response {
    match prepare(state, &scope, req).await {
        Ok(Prepared::Pass(req)) => next.run(req).await,
        Ok(Prepared::Answer(response)) => response,
        Ok(Prepared::Run(claimed)) => run_claimed(state.clone(), *claimed, next)
            .await
            .unwrap_or_else(|e| e.into_response()),
        Err(e) => e.into_response(),
    }
}

enum Prepared {
    /// An exempt route: the header is ignored.
    Pass(Request),
    /// Answered without running the handler: replay, in progress, reused.
    Answer(Response),
    /// Nobody holds the key: this request runs (boxed: a key is large, and this is the rare
    /// variant).
    Run(Box<Claimed>),
}

struct Claimed {
    req: Request,
    key: Key,
    fingerprint: String,
}

async fn prepare(state: &AppState, scope: &str, req: Request) -> Result<Prepared, Error> {
    // Inside `/v1` the router sees the path without its prefix; the client's URI is kept.
    let uri = req
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| req.uri().clone(), |o| o.0.clone());
    if idem::exempt(uri.path()) {
        return Ok(Prepared::Pass(req));
    }
    let Some(raw_key) = idem::parse_key(req.headers())? else {
        return Ok(Prepared::Pass(req));
    };
    let (parts, body) = req.into_parts();
    let key = Key::new(scope, &raw_key)?;
    let path_and_query = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let method = parts.method.as_str();
    let if_match = parts
        .headers
        .get(header::IF_MATCH)
        .map(HeaderValue::as_bytes);
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let (body, fingerprint) = if idem::streamed(method, uri.path(), content_type) {
        // Uploads go to storage as they arrive, under their own size limits: not buffered.
        let essence = content_type
            .and_then(|ct| ct.split(';').next())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let header_bytes = |name| {
            parts
                .headers
                .get(name)
                .map_or(&b""[..], HeaderValue::as_bytes)
        };
        let length = if essence == "multipart/form-data" {
            &b""[..]
        } else {
            header_bytes(header::CONTENT_LENGTH)
        };
        let fingerprint = key.fingerprint(
            method,
            path_and_query,
            if_match,
            RequestBody::Streamed {
                content_type: essence.as_bytes(),
                disposition: header_bytes(header::CONTENT_DISPOSITION),
                length,
            },
        );
        (body, fingerprint)
    } else {
        let bytes = read_body(body, state.settings.body_limit).await?;
        let fingerprint =
            key.fingerprint(method, path_and_query, if_match, RequestBody::Bytes(&bytes));
        (Body::from(bytes), fingerprint)
    };
    // Another request with the key on this process answers at once. Anything the table
    // holds is found by the claim riding with the handler's first write (a completed or
    // running claim refuses it, and the write is rolled back) or, for a handler that wrote
    // nothing, by a look-up once it is done: a look-up before every run would cost each
    // request a read for what only retries need.
    if let Err(found) = state.idempotency.begin(&key, &fingerprint) {
        return answer(found).map(Prepared::Answer);
    }
    Ok(Prepared::Run(Box::new(Claimed {
        req: Request::from_parts(parts, body),
        key,
        fingerprint,
    })))
}

/// The answer to a request that does not run because of what `found` says.
fn answer(found: Claim) -> Result<Response, Error> {
    match found {
        Claim::Replay(stored) => Ok(replay(stored)),
        // Free here means the row vanished between losing the claim and reading it (its
        // claim was just released): the holder is done, and the retry runs.
        Claim::InFlight | Claim::Free => {
            let mut r = Error::new(
                Code::IdempotencyInProgress,
                "A request with this Idempotency-Key is still being processed; retry shortly.",
            )
            .with("parameter", "Idempotency-Key")
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Ok(r)
        }
        Claim::Reused => Err(Error::new(
            Code::IdempotencyKeyReused,
            "This Idempotency-Key was already used for a different request (method, path, \
             If-Match or body); send a new key for a new request.",
        )
        .with("parameter", "Idempotency-Key")),
    }
}

/// The body, up to the JSON body limit (the handler would refuse more with the same 413).
async fn read_body(body: Body, limit: usize) -> Result<Bytes, Error> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            Error::new(Code::PayloadTooLarge, "The request body is too large.")
        } else {
            Error::bad_request(format!("Cannot read the request body: {e}"))
        }
    })
}

/// Runs the handler in its own task (see the module doc), with the claim riding on its first
/// write, and settles the claim. The answer comes back as soon as it is known; the task then
/// stores it (see [`idem::Idempotency`]).
async fn run_claimed(state: AppState, claimed: Claimed, next: Next) -> Result<Response, Error> {
    let Claimed {
        req,
        key,
        fingerprint,
    } = claimed;
    let request_id = REQUEST_ID.try_with(Clone::clone).ok();
    let (answer_tx, answered) = tokio::sync::oneshot::channel::<Response>();
    let task = async move {
        let began = Utc::now();
        let ticket = Ticket::new(&key);
        let table = state.idempotency.table();
        let claim = table.claim_statement(&ticket, &fingerprint, began);
        let handler = AssertUnwindSafe(claim.scope(next.run(req))).catch_unwind();
        let response = match renewing(table, &ticket, &claim, handler).await {
            Ok(r) => r,
            Err(panic) => super::middleware::panic_response(panic),
        };
        // Unless the write committed the claim, what the table holds is the answer: a write
        // refused because the key is held (an earlier request with it, or another replica's
        // running one) was rolled back; a handler that wrote nothing claimed nothing, and
        // answers for itself only when the table holds nothing for the key either.
        let claimed = claim.state() == FirstWriteState::Committed;
        let from_table = match claim.state() {
            FirstWriteState::Committed => None,
            FirstWriteState::NotYet => {
                match Box::pin(table.lookup(&key, &fingerprint, Utc::now())).await {
                    Ok(Claim::Free) => None,
                    found => Some(found),
                }
            }
            FirstWriteState::Refused => {
                Some(Box::pin(table.lookup(&key, &fingerprint, Utc::now())).await)
            }
        };
        if let Some(found) = from_table {
            state.idempotency.end(&key);
            let _ = answer_tx.send(
                found
                    .and_then(answer)
                    .unwrap_or_else(IntoResponse::into_response),
            );
            return;
        }
        match settle(table, &ticket, claimed, response).await {
            Settled::Answer(response) => {
                state.idempotency.end(&key);
                let _ = answer_tx.send(response);
            }
            Settled::Store(response, stored) => {
                // Kept in memory before the client can see the answer, so a retry that races
                // the store replays it instead of finding the key still running; sent before
                // the store, so the client does not wait for its commit.
                let stored = Arc::new(stored);
                state.idempotency.keep(&key, Arc::clone(&stored));
                let _ = answer_tx.send(response);
                state
                    .idempotency
                    .answered(&key, &ticket, &fingerprint, began, stored)
                    .await;
            }
        }
    };
    // Problems built inside the task carry the request id like any other.
    match request_id {
        Some(id) => drop(tokio::spawn(REQUEST_ID.scope(id, task))),
        None => drop(tokio::spawn(task)),
    }
    answered
        .await
        .map_err(|_| Error::internal("an idempotent request's task ended without an answer"))
}

/// Awaits `fut`, renewing the claim's lease every [`idem::RENEW_EVERY`] once its write
/// committed it.
async fn renewing<F: Future>(
    table: &idem::Table,
    ticket: &Ticket,
    claim: &FirstWrite,
    fut: F,
) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    loop {
        tokio::select! {
            biased;
            out = &mut fut => return out,
            () = tokio::time::sleep(idem::RENEW_EVERY) => {
                if claim.state() != FirstWriteState::Committed {
                    continue;
                }
                match Box::pin(table.renew(ticket, Utc::now())).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!("an idempotency claim was taken over while its request ran"),
                    Err(e) => tracing::warn!(error = %e, "renewing an idempotency claim failed"),
                }
            }
        }
    }
}

/// What to do with a handler's answer.
enum Settled {
    /// Send it; the claim (if its write made one) is already given up (not storable, too
    /// large, unreadable).
    Answer(Response),
    /// Send it, then store it.
    Store(Response, Stored),
}

/// Gives the claim up when a retry should run the request again; otherwise buffers the answer
/// and takes the part that is kept. `claimed`: the handler's write committed the claim.
async fn settle(
    table: &idem::Table,
    ticket: &Ticket,
    claimed: bool,
    response: Response,
) -> Settled {
    let release = || async {
        if claimed && let Err(e) = Box::pin(table.release(ticket)).await {
            // The claim then blocks retries until its lease ends.
            tracing::warn!(error = %e, "releasing an idempotency claim failed");
        }
    };
    let status = response.status();
    if !idem::storable(status) {
        release().await;
        return Settled::Answer(response);
    }
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            release().await;
            return Settled::Answer(
                Error::internal(format!("reading a response body: {e}")).into_response(),
            );
        }
    };
    if bytes.len() > idem::MAX_STORED {
        tracing::warn!(
            bytes = bytes.len(),
            "an idempotent response is too large to keep; a retry runs the request again"
        );
        release().await;
        return Settled::Answer(Response::from_parts(parts, Body::from(bytes)));
    }
    let stored = Stored {
        status: status.as_u16(),
        headers: parts
            .headers
            .iter()
            .filter(|(n, _)| idem::kept_header(n.as_str()))
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect(),
        body: bytes.to_vec(),
    };
    Settled::Store(Response::from_parts(parts, Body::from(bytes)), stored)
}

/// The stored answer, marked as a replay.
fn replay(stored: Stored) -> Response {
    let mut r = Response::new(Body::from(stored.body));
    *r.status_mut() =
        axum::http::StatusCode::from_u16(stored.status).unwrap_or(axum::http::StatusCode::OK);
    let headers = r.headers_mut();
    for (name, value) in stored.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            headers.append(n, v);
        }
    }
    headers.insert(
        HeaderName::from_static(idem::REPLAYED),
        HeaderValue::from_static("true"),
    );
    r
}
