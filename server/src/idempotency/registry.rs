//! The requests with an `Idempotency-Key` running in this process, and the task that stores
//! their answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::table::{Claim, Completion, Table, Ticket};
use super::{IdHash, Key, STORE_BATCH, Stored};
use crate::db::Db;
use crate::error::Error;

/// The requests with a key that run in this process, and the answers of those that are done
/// but not stored yet, by row id; plus the queue that stores those answers.
///
/// Why in memory: a second request with the same key on this process must neither run nor
/// wait for the database to say no, and an answer is sent to its client before it is stored
/// (storing waits for the next batch of [`STORE_BATCH`]), so a retry in between is answered
/// from here. On another PostgreSQL replica such a retry gets 409 for those milliseconds; the
/// database (see [`Table::claim_statement`]) is what keeps replicas from running a request twice.
pub struct Idempotency {
    running: Arc<Running>,
    store: tokio::sync::mpsc::Sender<Completion>,
    table: Table,
}

type Running = std::sync::Mutex<HashMap<u128, RunningRequest, IdHash>>;

struct RunningRequest {
    fingerprint: String,
    answer: Option<Arc<Stored>>,
}

fn lock(running: &Running) -> std::sync::MutexGuard<'_, HashMap<u128, RunningRequest, IdHash>> {
    // A panic while holding the lock cannot leave the map half-written: use it anyway.
    running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long the store task waits after an answer arrives for others to store with it.
const STORE_LINGER: Duration = Duration::from_millis(2);
/// Answers waiting to be stored before a request waits for room (after sending its answer).
const STORE_QUEUE: usize = 4096;

impl Idempotency {
    /// The registry over `db`'s table ([`Table::open`]), and a task that stores answers in
    /// batches (it ends when the registry is dropped, after storing what was queued).
    pub async fn open(db: Db) -> Result<Idempotency, Error> {
        let table = Table::open(db).await?;
        let running: Arc<Running> = Arc::default();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Completion>(STORE_QUEUE);
        let (map, writer) = (running.clone(), table.clone());
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
                let ids: Vec<u128> = batch.iter().map(Completion::num).collect();
                match writer.store(std::mem::take(&mut batch)).await {
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
        Ok(Idempotency {
            running,
            store: tx,
            table,
        })
    }

    /// The table behind the registry: claims, look-ups and the rest.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Marks `key` as running here, or says why it may not run: another request with it runs
    /// (or just answered) on this process.
    pub fn begin(&self, key: &Key, fingerprint: &str) -> Result<(), Claim> {
        let mut running = lock(&self.running);
        if let Some(r) = running.get(&key.num) {
            return Err(if r.fingerprint != fingerprint {
                Claim::Reused
            } else if let Some(answer) = &r.answer {
                Claim::Replay(Stored::clone(answer))
            } else {
                Claim::InFlight
            });
        }
        running.insert(
            key.num,
            RunningRequest {
                fingerprint: fingerprint.to_owned(),
                answer: None,
            },
        );
        Ok(())
    }

    /// Forgets a request that [`begin`](Self::begin) marked, with no answer to store.
    pub fn end(&self, key: &Key) {
        lock(&self.running).remove(&key.num);
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
        if let Some(r) = lock(&self.running).get_mut(&key.num) {
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
