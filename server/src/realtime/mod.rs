//! Realtime: Server-Sent Events of record changes, read from the change log.
//!
//! One [`Hub`] per process tails the log (woken by local commits, and on PostgreSQL by
//! `LISTEN` from other replicas) and publishes each new stretch of it once, as a [`Batch`] on a
//! broadcast channel (the log row carries the record as the change left it, so nothing is
//! read from the tables and an event shows the state it announces). Each stream
//! ([`stream`]) keeps its own cursor and filters batches by its subscriber's view rule in
//! memory. The log, not the channel, is the truth: a stream that finds a hole between its
//! cursor and the next batch (it joined late, lagged behind, or resumed with `Last-Event-ID`)
//! reads the hole from the log itself. So a slow client never slows the others (the channel
//! drops what it did not read) and never misses anything (it catches up from the log), and a
//! lost PostgreSQL notification only delays delivery until the next poll.

pub mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{Notify, broadcast};

use crate::catalog::{Catalog, CatalogHandle};
use crate::changes::{self, Change, ChangeOp};
use crate::config::RealtimeSettings;
use crate::db::Db;
use crate::error::{Code, Error};

/// Log rows read per step, by the hub and by a stream catching up.
pub const PAGE: i64 = 1000;
/// Batches the channel keeps for streams that are behind.
const CHANNEL: usize = 1024;
/// How often the hub looks at the log without being woken (PostgreSQL replicas, and a
/// safety net everywhere).
const POLL: Duration = Duration::from_secs(1);

/// One change, ready to filter and send.
#[derive(Debug)]
pub struct Event {
    pub seq: i64,
    pub collection: String,
    pub id: String,
    pub op: ChangeOp,
    /// The record before an update or delete, as logged (see `changes::logged_record`).
    pub old: Option<Value>,
    /// The record as the change left it, in API form; `None` for deletes and resets.
    pub record: Option<Arc<Map<String, Value>>>,
    /// This change's SSE frame as sent to everyone who may see the record, and the one sent
    /// to those who saw it before and may not now (`delete`): each serialized once, on first
    /// use, and shared by every stream that sends it (a clone is a reference count).
    pub shown: std::sync::OnceLock<bytes::Bytes>,
    pub hidden: std::sync::OnceLock<bytes::Bytes>,
}

/// A contiguous stretch of the log: every change with `from < seq <= to`.
#[derive(Debug)]
pub struct Batch {
    pub from: i64,
    pub to: i64,
    pub events: Vec<Event>,
}

/// Open streams, per client IP and per user.
#[derive(Default)]
struct Counts {
    per_ip: HashMap<String, u32>,
    per_user: HashMap<String, u32>,
}

/// The process's realtime fan-out.
pub struct Hub {
    db: Db,
    catalog: CatalogHandle,
    pub settings: RealtimeSettings,
    tx: broadcast::Sender<Arc<Batch>>,
    counts: Mutex<Counts>,
    /// The log position the hub has published up to.
    head: AtomicI64,
    /// Wakes the hub when the first subscriber arrives.
    arrived: Notify,
    /// Set when the server shuts down: every stream ends, so the graceful shutdown (which
    /// waits for open responses) is not held up by streams that never finish.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Hub {
    pub fn new(db: Db, catalog: CatalogHandle, settings: RealtimeSettings) -> Arc<Hub> {
        let (tx, _) = broadcast::channel(CHANNEL);
        Arc::new(Hub {
            db,
            catalog,
            settings,
            tx,
            counts: Mutex::new(Counts::default()),
            head: AtomicI64::new(0),
            arrived: Notify::new(),
            closing: tokio::sync::watch::channel(false).0,
        })
    }

    /// Ends every stream, now and on arrival (server shutdown).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`Hub::close`] was called.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.current()
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        match self.counts.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Open streams right now.
    pub fn streams(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Takes a stream slot for `ip`/`user`, or refuses with 429 when either is at its limit.
    pub fn admit(
        self: &Arc<Self>,
        ip: Option<String>,
        user: Option<String>,
    ) -> Result<Slot, Error> {
        let mut c = self.counts();
        if let Some(ip) = &ip
            && c.per_ip.get(ip).copied().unwrap_or(0) >= self.settings.max_per_ip
        {
            return Err(too_many("this address"));
        }
        if let Some(user) = &user
            && c.per_user.get(user).copied().unwrap_or(0) >= self.settings.max_per_user
        {
            return Err(too_many("this user"));
        }
        if let Some(ip) = &ip {
            *c.per_ip.entry(ip.clone()).or_default() += 1;
        }
        if let Some(user) = &user {
            *c.per_user.entry(user.clone()).or_default() += 1;
        }
        drop(c);
        self.arrived.notify_one();
        Ok(Slot {
            hub: self.clone(),
            ip,
            user,
        })
    }

    /// The log position the hub has published batches up to.
    pub fn published(&self) -> i64 {
        self.head.load(Ordering::Acquire)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.tx.subscribe()
    }

    /// Tails the change log until the process ends.
    pub async fn run(self: Arc<Self>) {
        loop {
            if let Err(e) = self.step().await {
                tracing::warn!(error = %e, "realtime: reading the change log failed");
                tokio::time::sleep(POLL).await;
            }
        }
    }

    /// Publishes what the log holds beyond `head`, or waits for a commit (or the poll).
    async fn step(self: &Arc<Self>) -> Result<(), Error> {
        if self.tx.receiver_count() == 0 {
            // Nobody listens: wait for a subscriber (no reading, no fetching), then start at
            // the log's current end. Streams read anything older themselves.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if self.tx.receiver_count() == 0 {
                // The timeout only guards against a lost wake-up.
                let _ = tokio::time::timeout(POLL, arrived).await;
            }
            let (head, _) = self
                .db
                .read(|mut c| Box::pin(async move { changes::position(&mut c).await }))
                .await?;
            let from = self.head.swap(head, Ordering::AcqRel);
            if head > from {
                // An empty stretch tells waiting streams the hub moved on: any of them behind
                // `head` reads the gap from the log.
                let _ = self.tx.send(Arc::new(Batch {
                    from: head,
                    to: head,
                    events: Vec::new(),
                }));
            }
            return Ok(());
        }
        let committed = self.db.committed();
        tokio::pin!(committed);
        committed.as_mut().enable();
        let from = self.head.load(Ordering::Acquire);
        let rows = self
            .db
            .read(move |mut c| {
                Box::pin(async move { changes::read_after(&mut c, from, None, PAGE).await })
            })
            .await?;
        let Some(to) = rows.last().map(|r| r.seq) else {
            tokio::select! {
                _ = committed => {}
                _ = tokio::time::sleep(POLL) => {}
            }
            return Ok(());
        };
        if rows.iter().any(|r| r.op == ChangeOp::Reset) {
            // A view rule changed: make sure this replica filters with the new one.
            if let Err(e) = crate::schemas::refresh_if_changed(&self.db, &self.catalog).await {
                tracing::warn!(error = %e, "realtime: schema refresh failed");
            }
        }
        let events = to_events(&self.catalog(), rows);
        self.head.store(to, Ordering::Release);
        // No receiver left is fine: the next step waits for one.
        let _ = self.tx.send(Arc::new(Batch { from, to, events }));
        Ok(())
    }
}

fn too_many(whom: &str) -> Error {
    Error::new(
        Code::RateLimited,
        format!("Too many open realtime streams for {whom}; close one first."),
    )
    .with("retry_after", 5)
}

/// An admitted stream's place in the counts, given back when the stream ends.
pub struct Slot {
    hub: Arc<Hub>,
    ip: Option<String>,
    user: Option<String>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.hub.counts();
        let dec = |map: &mut HashMap<String, u32>, key: &Option<String>| {
            if let Some(k) = key
                && let Some(n) = map.get_mut(k)
            {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(k);
                }
            }
        };
        dec(&mut c.per_ip, &self.ip);
        dec(&mut c.per_user, &self.user);
    }
}

/// Turns log rows into events, the logged records put in API form once for every stream.
pub fn to_events(catalog: &Catalog, rows: Vec<Change>) -> Vec<Event> {
    rows.into_iter()
        .map(|r| {
            let record = match (&r.record, catalog.get(&r.collection)) {
                (Some(v), Some(info)) => Some(Arc::new(changes::logged_record(&info, v))),
                _ => None,
            };
            Event {
                seq: r.seq,
                collection: r.collection,
                id: r.record_id,
                op: r.op,
                old: r.old,
                record,
                shown: std::sync::OnceLock::new(),
                hidden: std::sync::OnceLock::new(),
            }
        })
        .collect()
}

/// PostgreSQL only: numbers committed changes (the sequencer) whenever any replica commits
/// one, and wakes this replica's hub when any replica numbered some. `LISTEN` is only the
/// wake-up; a poll every second covers lost notifications and a dropped listener connection.
pub async fn run_pg_pump(db: Db, url: String) {
    use sqlx::postgres::PgListener;
    loop {
        let mut listener = match PgListener::connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "realtime: cannot LISTEN; polling");
                poll_once(&db).await;
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        if let Err(e) = listener
            .listen_all([changes::PG_CHANGES_CHANNEL, changes::PG_SEQUENCED_CHANNEL])
            .await
        {
            tracing::warn!(error = %e, "realtime: LISTEN failed");
            tokio::time::sleep(POLL).await;
            continue;
        }
        // Changes committed while no listener was connected.
        poll_once(&db).await;
        loop {
            let next = tokio::time::timeout(POLL, listener.recv()).await;
            match next {
                Ok(Ok(n)) if n.channel() == changes::PG_CHANGES_CHANNEL => {
                    if let Err(e) = changes::sequence(&db).await {
                        tracing::warn!(error = %e, "realtime: sequencing failed");
                    }
                }
                // Numbered by some replica: the hub reads them.
                Ok(Ok(_)) => db.wake(),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "realtime: listener lost; reconnecting");
                    break;
                }
                Err(_) => poll_once(&db).await,
            }
        }
    }
}

async fn poll_once(db: &Db) {
    match changes::pending(db).await {
        Ok(true) => {
            if let Err(e) = changes::sequence(db).await {
                tracing::warn!(error = %e, "realtime: sequencing failed");
            }
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "realtime: change log not reachable"),
    }
    db.wake();
}
