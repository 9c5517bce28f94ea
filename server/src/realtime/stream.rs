//! One subscriber's stream: `ready`, then anything missed since its cursor (read from the log),
//! then live batches from the hub, each change filtered by the subscriber's view rule.
//!
//! What a subscriber is sent for a change it subscribed to:
//! - the record is visible to it now → `create` / `update` with the record;
//! - not visible now (deleted, or changed out of sight) but visible before (its logged `old`
//!   state passes the rule) → `delete` with only the id;
//! - otherwise nothing, so nobody learns even the id of a record they never could see.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::json;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::{Batch, Event, Hub, PAGE, Slot, to_events};
use crate::access::{Access, Op, Principal, access};
use crate::changes::{self, ChangeOp};
use crate::error::Error;
use crate::records::Actor;

/// An SSE comment, sent every heartbeat interval so that proxies and clients see a live
/// connection (clients ignore it).
const HEARTBEAT: Bytes = Bytes::from_static(b":\n\n");

/// One SSE frame: `event:`, optional `id:` and `retry:` lines, and `data:` on one line (JSON
/// as serialized here never holds a line break), ended by a blank line.
pub fn frame(event: &str, id: Option<i64>, retry: Option<Duration>, data: &str) -> Bytes {
    debug_assert!(!data.contains(['\n', '\r']), "SSE data must be one line");
    let mut out = String::with_capacity(data.len() + event.len() + 40);
    out.push_str("event: ");
    out.push_str(event);
    out.push('\n');
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(&id.to_string());
        out.push('\n');
    }
    if let Some(retry) = retry {
        out.push_str("retry: ");
        out.push_str(&retry.as_millis().to_string());
        out.push('\n');
    }
    out.push_str("data: ");
    out.push_str(data);
    out.push_str("\n\n");
    Bytes::from(out)
}

/// Re-resolves the subscriber's credentials: an `Err` (expired token, ended session, disabled
/// user) ends the stream.
pub type Reauth = Box<dyn Fn() -> BoxFuture<'static, Result<Principal, Error>> + Send + Sync>;

/// What a stream listens to: whole collections, or single records of one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topic {
    pub collection: String,
    pub id: Option<String>,
}

impl Topic {
    /// As written in `?collections=`: `posts` or `posts/<id>`.
    pub fn label(&self) -> String {
        match &self.id {
            Some(id) => format!("{}/{id}", self.collection),
            None => self.collection.clone(),
        }
    }
}

/// Where a new stream starts.
pub enum Start {
    /// Live from now.
    Now,
    /// Resuming after this event id (`Last-Event-ID`).
    After(i64),
}

pub struct Subscriber {
    hub: Arc<Hub>,
    rx: broadcast::Receiver<Arc<Batch>>,
    cursor: i64,
    topics: Vec<Topic>,
    collections: Vec<String>,
    actor: Actor,
    reauth: Option<Reauth>,
    recheck_at: Instant,
    /// When the next heartbeat is due (every interval, busy or not: one timer per stream
    /// that moves once per interval, not once per event).
    beat_at: Instant,
    /// Wakes the stream at the earlier of `recheck_at` and `beat_at`; kept, not made anew
    /// for every wait.
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// Catch up from the log before taking live batches.
    behind: bool,
    /// Frames ready to send; most are shared with every other stream sending them.
    out: VecDeque<Bytes>,
    closing: tokio::sync::watch::Receiver<bool>,
    _slot: Slot,
}

/// Opens a stream. `rx` must be taken before `start` was decided, so that nothing committed
/// in between is missed (it is then in a batch or in the log after the cursor).
pub async fn open(
    hub: Arc<Hub>,
    slot: Slot,
    rx: broadcast::Receiver<Arc<Batch>>,
    topics: Vec<Topic>,
    principal: Principal,
    reauth: Option<Reauth>,
    start: Start,
) -> Result<Subscriber, Error> {
    // PostgreSQL: number what is committed, so "now" includes every write acknowledged
    // before this stream opened (and no event of one arrives as if it were new).
    if changes::pending(hub.db()).await? {
        changes::sequence(hub.db()).await?;
    }
    let (head, pruned) = hub
        .db()
        .read(|mut c| Box::pin(async move { changes::position(&mut c).await }))
        .await?;
    let mut out = VecDeque::new();
    let labels: Vec<String> = topics.iter().map(Topic::label).collect();
    let (cursor, behind, reset) = match start {
        Start::Now => (head, false, None),
        Start::After(n) if n > head => (head, false, Some("unknown_cursor")),
        Start::After(n) if n < pruned => (head, false, Some("gap_too_old")),
        Start::After(n) => (n, true, None),
    };
    // `ready` carries the cursor as its id, so a client that reconnects before any event
    // still resumes from here.
    out.push_back(frame(
        "ready",
        Some(cursor),
        // Reconnect after 2 s (the EventSource default varies by implementation).
        Some(Duration::from_secs(2)),
        &json!({ "subscriptions": labels }).to_string(),
    ));
    if let Some(reason) = reset {
        out.push_back(frame(
            "reset",
            None,
            None,
            &json!({ "reason": reason }).to_string(),
        ));
    }
    let mut collections: Vec<String> = topics.iter().map(|t| t.collection.clone()).collect();
    collections.sort();
    collections.dedup();
    let now = Instant::now();
    let (recheck_at, beat_at) = (
        now + hub.settings.auth_recheck,
        now + hub.settings.heartbeat,
    );
    let closing = hub.closing();
    Ok(Subscriber {
        closing,
        hub,
        rx,
        cursor,
        topics,
        collections,
        actor: Actor::new(principal),
        reauth,
        recheck_at,
        beat_at,
        timer: Box::pin(tokio::time::sleep_until(recheck_at.min(beat_at))),
        behind,
        out,
        _slot: slot,
    })
}

impl Subscriber {
    /// The SSE frames of this subscriber, heartbeats included (ends when its credentials stop
    /// being valid).
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
        futures::stream::unfold(self, |mut sub| async move {
            sub.next_frame().await.map(|e| (Ok(e), sub))
        })
    }

    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            if *self.closing.borrow() {
                return None;
            }
            if let Some(e) = self.out.pop_front() {
                return Some(e);
            }
            let now = Instant::now();
            if now >= self.beat_at {
                self.beat_at = now + self.hub.settings.heartbeat;
                self.out.push_back(HEARTBEAT);
            }
            if now >= self.recheck_at && !self.recheck().await {
                return None;
            }
            if self.timer.deadline() != self.recheck_at.min(self.beat_at) {
                let at = self.recheck_at.min(self.beat_at);
                self.timer.as_mut().reset(at);
            }
            if !self.out.is_empty() {
                continue;
            }
            if self.behind {
                if let Err(e) = self.catch_up(None).await {
                    tracing::warn!(error = %e, "realtime: catch-up failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                continue;
            }
            // The hub is past this cursor with no batch waiting for us (it started after we
            // opened, or published before we subscribed): read the stretch from the log.
            if self.rx.is_empty() && self.hub.published() > self.cursor {
                self.behind = true;
                continue;
            }
            tokio::select! {
                r = self.rx.recv() => match r {
                    Ok(batch) => {
                        if let Err(e) = self.take(&batch).await {
                            tracing::warn!(error = %e, "realtime: delivery failed");
                            self.behind = true;
                        }
                    }
                    // Fell behind the channel: the log has what was dropped.
                    Err(broadcast::error::RecvError::Lagged(_)) => self.behind = true,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.timer.as_mut() => {}
                _ = self.closing.changed() => return None,
            }
        }
    }

    /// Whether the credentials still hold (an anonymous stream always does).
    async fn recheck(&mut self) -> bool {
        self.recheck_at = Instant::now() + self.hub.settings.auth_recheck;
        let Some(reauth) = &self.reauth else {
            return true;
        };
        match reauth().await {
            Ok(p) => {
                self.actor = Actor::new(p);
                true
            }
            Err(e) if e.status().is_server_error() => true,
            Err(_) => false,
        }
    }

    /// Reads the log after the cursor, one page (or up to `until`), into `out`.
    async fn catch_up(&mut self, until: Option<i64>) -> Result<(), Error> {
        let (head, pruned) = self
            .hub
            .db()
            .read(|mut c| Box::pin(async move { changes::position(&mut c).await }))
            .await?;
        if self.cursor < pruned {
            self.out.push_back(frame(
                "reset",
                None,
                None,
                &json!({ "reason": "gap_too_old" }).to_string(),
            ));
            self.cursor = head;
            self.behind = false;
            return Ok(());
        }
        let (after, names) = (self.cursor, self.collections.clone());
        let rows = self
            .hub
            .db()
            .read(move |mut c| {
                Box::pin(
                    async move { changes::read_after(&mut c, after, Some(&names), PAGE).await },
                )
            })
            .await?;
        let full = rows.len() as i64 == PAGE;
        let last = rows.last().map(|r| r.seq);
        for ev in &to_events(&self.hub.catalog(), rows) {
            self.deliver(ev);
        }
        // A short page reached the log's end as of this read, which is at least `head`.
        self.cursor = match last {
            Some(seq) if full => seq,
            Some(seq) => seq.max(head),
            None => self.cursor.max(head),
        };
        let reached = until.is_none_or(|u| self.cursor >= u);
        if !full && reached {
            self.behind = false;
        }
        Ok(())
    }

    /// A live batch: fill any hole before it from the log, then deliver what is new.
    async fn take(&mut self, batch: &Batch) -> Result<(), Error> {
        if batch.to <= self.cursor {
            return Ok(());
        }
        while batch.from > self.cursor {
            self.catch_up(Some(batch.from)).await?;
            if self.cursor >= batch.to {
                self.behind = false;
                return Ok(());
            }
            if batch.from > self.cursor && self.out.len() > PAGE as usize {
                // A long hole: let the client drain what was read, then continue from the log.
                self.behind = true;
                return Ok(());
            }
        }
        self.behind = false;
        let cursor = self.cursor;
        for ev in batch.events.iter().filter(|e| e.seq > cursor) {
            self.deliver(ev);
        }
        self.cursor = self.cursor.max(batch.to);
        Ok(())
    }

    fn wants(&self, ev: &Event) -> bool {
        self.topics
            .iter()
            .any(|t| t.collection == ev.collection && t.id.as_deref().is_none_or(|id| id == ev.id))
    }

    /// Filters one change for this subscriber and queues what it may see.
    fn deliver(&mut self, ev: &Event) {
        if !self.wants(ev) {
            return;
        }
        if ev.op == ChangeOp::Reset {
            let reset = ev.shown.get_or_init(|| {
                frame(
                    "reset",
                    Some(ev.seq),
                    None,
                    &json!({"reason": "rules_changed", "collection": ev.collection}).to_string(),
                )
            });
            self.out.push_back(reset.clone());
            return;
        }
        let Some(info) = self.hub.catalog().get(&ev.collection) else {
            return;
        };
        let Ok(rule) = access(
            &self.actor.principal,
            info.rules.view.as_ref(),
            Op::View,
            info.name(),
        ) else {
            return;
        };
        let dialect = self.hub.db().dialect();
        let record = ev.record.as_ref();
        let visible_now = record.as_ref().is_some_and(|r| match &rule {
            Access::Bypass => true,
            Access::Rule(expr) => {
                let ctx = ferrobase_expr::Context {
                    auth: &self.actor.auth,
                    data: None,
                    now: chrono::Utc::now(),
                };
                ferrobase_expr::eval(expr, r, &info.def.scope(None), &ctx, dialect).unwrap_or(false)
            }
        });
        if let (true, Some(r)) = (visible_now, record) {
            let op = if ev.op == ChangeOp::Create {
                "create"
            } else {
                "update"
            };
            let shown = ev.shown.get_or_init(|| {
                let data =
                    json!({"collection": ev.collection, "op": op, "record": r, "seq": ev.seq});
                frame("record", Some(ev.seq), None, &data.to_string())
            });
            self.out.push_back(shown.clone());
            return;
        }
        let visible_before = match ev.op {
            ChangeOp::Update | ChangeOp::Delete => match &ev.old {
                Some(old) => crate::sync::could_see(&info, &rule, &self.actor, dialect, old),
                None => true,
            },
            _ => false,
        };
        if visible_before {
            let hidden = ev.hidden.get_or_init(|| {
                let data = json!({
                    "collection": ev.collection,
                    "op": "delete",
                    "record": {"id": ev.id},
                    "seq": ev.seq,
                });
                frame("record", Some(ev.seq), None, &data.to_string())
            });
            self.out.push_back(hidden.clone());
        }
    }
}
