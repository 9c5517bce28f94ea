//! A statement that rides along with the first write of a task: it runs at the start of that
//! write's transaction, so what it records commits with the write's own effect, or not at all.
//!
//! Why: an idempotency claim (`crate::idempotency`) must say "this request's effect happened"
//! exactly when the effect did. Claiming in a transaction of its own before the handler runs
//! cost a commit per request (on SQLite a job through the writer, on PostgreSQL a round trip
//! with a WAL flush) and still left a window where the claim existed but the effect did not.
//! Riding in the effect's transaction costs one statement and closes that window. When two
//! requests race for one key, the database decides: the statement of the second matches no
//! row (SQLite's writer runs jobs one after another; PostgreSQL's unique index makes the second
//! wait for the first's commit), so its whole transaction is rolled back and it learns it lost.
//!
//! The statement is set for a task with [`FirstWrite::scope`]; [`super::Db::write`] and
//! [`super::Db::write_one`] run it at the start of the first transaction in that scope that
//! commits (a transaction that rolls back takes the statement with it, so the next one runs it
//! again). Writes in tasks spawned from the scope do not see it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};

use super::Param;

tokio::task_local! {
    static CURRENT: Arc<FirstWrite>;
}

/// Where a [`FirstWrite`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstWriteState {
    /// No write committed in the scope yet (none ran, or each one rolled back).
    NotYet,
    /// It ran, matched a row, and committed with the first write.
    Committed,
    /// It matched no row: that write was rolled back with [`super::DbError::Preempted`].
    Refused,
}

/// Told the integer a [`FirstWrite::returning`] statement returned, once its write committed.
pub type OnCommit = Box<dyn Fn(i64) + Send + Sync>;

/// The statement and its outcome (see the module doc).
pub struct FirstWrite {
    pub(super) sql: &'static str,
    pub(super) params: Vec<Param>,
    /// Set for a statement that returns one integer (`RETURNING`) for the row it changed.
    pub(super) on_commit: Option<OnCommit>,
    returned: AtomicI64,
    state: AtomicU8,
}

impl std::fmt::Debug for FirstWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirstWrite")
            .field("sql", &self.sql)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

const NOT_YET: u8 = 0;
const COMMITTED: u8 = 1;
const REFUSED: u8 = 2;

impl FirstWrite {
    /// `sql` must change exactly one row when the write may go ahead and none when it must not.
    pub fn new(sql: &'static str, params: Vec<Param>) -> Arc<FirstWrite> {
        Arc::new(FirstWrite {
            sql,
            params,
            on_commit: None,
            returned: AtomicI64::new(0),
            state: AtomicU8::new(NOT_YET),
        })
    }

    /// A statement that returns one integer column for the row it changed (`… RETURNING id`)
    /// and none when the write must not go ahead; `on_commit` is told the integer as soon as
    /// the write committed (before the write's caller hears of it).
    pub fn returning(
        sql: &'static str,
        params: Vec<Param>,
        on_commit: OnCommit,
    ) -> Arc<FirstWrite> {
        Arc::new(FirstWrite {
            sql,
            params,
            on_commit: Some(on_commit),
            returned: AtomicI64::new(0),
            state: AtomicU8::new(NOT_YET),
        })
    }

    /// Runs `fut` with this statement attached to its first committing write.
    pub async fn scope<F: Future>(self: &Arc<Self>, fut: F) -> F::Output {
        CURRENT.scope(self.clone(), fut).await
    }

    pub fn state(&self) -> FirstWriteState {
        match self.state.load(Ordering::Acquire) {
            COMMITTED => FirstWriteState::Committed,
            REFUSED => FirstWriteState::Refused,
            _ => FirstWriteState::NotYet,
        }
    }

    pub(super) fn committed(&self) {
        if let Some(on_commit) = &self.on_commit {
            on_commit(self.returned.load(Ordering::Acquire));
        }
        self.state.store(COMMITTED, Ordering::Release);
    }

    pub(super) fn set_returned(&self, n: i64) {
        self.returned.store(n, Ordering::Release);
    }

    pub(super) fn refused(&self) {
        self.state.store(REFUSED, Ordering::Release);
    }
}

/// The scope's statement when it is still to run; `None` outside a scope, or once it ran.
pub(super) fn pending() -> Option<Arc<FirstWrite>> {
    CURRENT
        .try_with(Arc::clone)
        .ok()
        .filter(|f| f.state() == FirstWriteState::NotYet)
}
