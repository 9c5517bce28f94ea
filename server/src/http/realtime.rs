//! `GET /v1/realtime`: Server-Sent Events of record changes (see `crate::realtime`).

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::extract::{Auth, bearer, client_ip, resolve_token};
use crate::access::{Op, Principal, access};
use crate::error::{Code, Error};
use crate::realtime::stream::{self, Start, Topic};

/// Most topics one stream may subscribe to.
pub const MAX_TOPICS: usize = 50;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RealtimeQuery {
    /// Comma-separated topics: a collection (`posts`) or one record (`posts/<id>`).
    pub collections: Option<String>,
    /// An access token, for clients that cannot send headers (browser `EventSource`).
    pub token: Option<String>,
}

/// Parses `?collections=`: 1 to [`MAX_TOPICS`] topics, each `name` or `name/id`.
pub fn parse_topics(raw: Option<&str>) -> Result<Vec<Topic>, Error> {
    let bad = |msg: String| Error::bad_request(msg).with("parameter", "collections");
    let raw = raw.unwrap_or("").trim();
    if raw.is_empty() {
        return Err(bad(
            "Name at least one collection: `?collections=posts`.".into()
        ));
    }
    let mut topics: Vec<Topic> = Vec::new();
    for part in raw.split(',') {
        let part = part.trim();
        let (collection, id) = match part.split_once('/') {
            Some((c, id)) => (c, Some(id)),
            None => (part, None),
        };
        let name_ok = !collection.is_empty()
            && collection.len() <= 64
            && collection
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let id_ok = id.is_none_or(|id| {
            !id.is_empty()
                && id.len() <= 64
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        if !name_ok || !id_ok {
            return Err(bad(format!(
                "`{}` is not a topic (`collection` or `collection/record-id`).",
                part.chars().take(80).collect::<String>()
            )));
        }
        let topic = Topic {
            collection: collection.to_owned(),
            id: id.map(str::to_owned),
        };
        if !topics.contains(&topic) {
            topics.push(topic);
        }
        if topics.len() > MAX_TOPICS {
            return Err(bad(format!("At most {MAX_TOPICS} topics per stream.")));
        }
    }
    Ok(topics)
}

/// Subscribe to record changes (Server-Sent Events).
///
/// Events: `ready` (`{"subscriptions":[…]}`, first, with the current cursor as its id), `record`
/// (`id:` = change sequence; `{"collection","op","record","seq"}`, deletes carry only the id),
/// `reset` (`{"reason":"gap_too_old"|"rules_changed"|"unknown_cursor"}`: resync, then the stream
/// continues live). Reconnect with `Last-Event-ID` to get what was missed.
#[utoipa::path(get, path = "/v1/realtime", tag = "realtime",
    operation_id = "realtime_subscribe", security((), ("bearer" = [])),
    params(RealtimeQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    responses((status = 200, description = "An event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "Bad topics or Last-Event-ID", body = crate::openapi::Problem),
        (status = 404, description = "Unknown collection", body = crate::openapi::Problem),
        (status = 429, description = "Too many open streams", body = crate::openapi::Problem)))]
pub async fn subscribe(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<RealtimeQuery>,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> Result<Response, Error> {
    // The header's token wins; `?token=` serves browsers' EventSource.
    let (principal, token) = match (&principal, bearer(&headers), q.token.as_deref()) {
        (Principal::Anonymous, None, Some(t)) if !t.is_empty() => {
            (resolve_token(&state, t).await?, Some(t.to_owned()))
        }
        (_, Some(t), _) => (principal, Some(t.to_owned())),
        _ => (principal, None),
    };
    let topics = parse_topics(q.collections.as_deref())?;
    let catalog = state.catalog.current();
    for t in &topics {
        let info = catalog
            .get(&t.collection)
            .ok_or_else(|| Error::not_found(format!("No collection `{}`.", t.collection)))?;
        access(&principal, info.rules.view.as_ref(), Op::View, info.name())?;
    }
    let start = match headers.get("last-event-id") {
        None => Start::Now,
        Some(v) => {
            let s = v.to_str().unwrap_or("").trim();
            if s.is_empty() {
                Start::Now
            } else {
                Start::After(s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    Error::new(
                        Code::BadRequest,
                        "`Last-Event-ID` must be an event id this server sent.",
                    )
                    .with("parameter", "Last-Event-ID")
                })?)
            }
        }
    };
    let ip = client_ip(&headers, req.extensions(), state.settings.trust_proxy);
    let user = match &principal {
        Principal::User { id, .. } => Some(id.clone()),
        _ => None,
    };
    let hub = state.realtime.clone();
    // Subscribe before the stream decides where it starts (nothing falls in between) and
    // before admission wakes the hub (which only tails the log while someone listens).
    let rx = hub.subscribe();
    let slot = hub.admit(ip, user)?;
    let reauth: Option<stream::Reauth> = token.map(|t| {
        let state = state.clone();
        Box::new(move || {
            let (state, t) = (state.clone(), t.clone());
            Box::pin(async move { resolve_token(&state, &t).await })
                as futures::future::BoxFuture<'static, _>
        }) as stream::Reauth
    });
    let sub = stream::open(hub.clone(), slot, rx, topics, principal, reauth, start).await?;
    // The stream yields finished SSE frames (shared between streams) and its own heartbeats.
    let mut resp = Body::from_stream(sub.into_stream()).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tell nginx-style proxies not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn topics() {
        let t = parse_topics(Some("posts, comments/0193-ab,posts")).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].id.as_deref(), Some("0193-ab"));
        for bad in [
            "", " ", "posts,", "a/b/c", "../x", "po sts", "posts/", "x/'",
        ] {
            assert!(parse_topics(Some(bad)).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..51).map(|i| format!("c{i}")).collect();
        assert!(parse_topics(Some(&many.join(","))).is_err());
    }

    proptest! {
        #[test]
        fn topics_never_panic(s in ".{0,200}") {
            let _ = parse_topics(Some(&s));
        }
    }
}
