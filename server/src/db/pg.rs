//! PostgreSQL connections: a small pool of sqlx [`PgConnection`]s handed out as [`Lease`]s.
//!
//! Why not sqlx's own `PgPool`: in sqlx 0.9 releasing a pooled connection spawns a task that
//! pings the server (a `Sync` → `ReadyForQuery` round trip) before the connection can be
//! reused, so every request cost PostgreSQL a second round trip and the server a task. Here a
//! connection goes straight back to the idle list when its job finished; a job that was
//! cancelled mid-way (its future dropped, the connection possibly mid-protocol) or that lost
//! the connection (an I/O or protocol error) closes it instead, and the next request opens a
//! fresh one. A transaction rolled back by dropping it is safe to reuse: sqlx queues the
//! `ROLLBACK` and completes it before the connection's next statement.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::DbError;

/// How long a request waits for a free connection before answering 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct PgConns {
    opts: PgConnectOptions,
    idle: Mutex<Vec<PgConnection>>,
    /// One permit per connection that may exist (idle or leased).
    permits: Semaphore,
    closed: AtomicBool,
}

/// A connection borrowed for one job. Dropped without [`Lease::release`] (the job did not run
/// to its end), it closes the connection rather than return it.
pub(super) struct Lease<'a> {
    conns: &'a PgConns,
    conn: Option<PgConnection>,
    /// Set by a statement that failed in a way that leaves the connection unusable.
    broken: AtomicBool,
    _permit: SemaphorePermit<'a>,
}

impl PgConns {
    pub(super) fn new(opts: PgConnectOptions, max: u32) -> PgConns {
        PgConns {
            opts,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(max.max(1) as usize),
            closed: AtomicBool::new(false),
        }
    }

    /// A connection: an idle one, or a new one while under the limit; waits at most
    /// [`ACQUIRE_TIMEOUT`] for one to come free.
    pub(super) async fn acquire(&self) -> Result<Lease<'_>, DbError> {
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, self.permits.acquire())
            .await
            .map_err(|_| DbError::Sqlx(sqlx::Error::PoolTimedOut))?
            .map_err(|_| DbError::Sqlx(sqlx::Error::PoolClosed))?;
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => self.opts.connect().await?,
        };
        Ok(Lease {
            conns: self,
            conn: Some(conn),
            broken: AtomicBool::new(false),
            _permit: permit,
        })
    }

    /// Closes the idle connections (gracefully) and every leased one as it comes back.
    pub(super) async fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.permits.close();
        let idle = match self.idle.lock() {
            Ok(mut idle) => std::mem::take(&mut *idle),
            Err(_) => Vec::new(),
        };
        for conn in idle {
            let _ = conn.close().await;
        }
    }
}

impl Lease<'_> {
    /// The connection, and the flag its statements set when they lose it.
    pub(super) fn split(&mut self) -> Result<(&mut PgConnection, &AtomicBool), DbError> {
        match self.conn.as_mut() {
            Some(conn) => Ok((conn, &self.broken)),
            None => Err(DbError::Config("connection already released".into())),
        }
    }

    /// The job ran to its end: the connection goes back to the idle list unless a statement
    /// lost it.
    pub(super) fn release(mut self) {
        if self.broken.load(Ordering::Relaxed) || self.conns.closed.load(Ordering::Relaxed) {
            return;
        }
        if let (Some(conn), Ok(mut idle)) = (self.conn.take(), self.conns.idle.lock()) {
            idle.push(conn);
        }
    }
}

/// Whether `e` means the connection itself is gone or out of step (so it must not be reused),
/// as opposed to an error of the statement (a constraint, a bad value) on a healthy one.
pub(super) fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Decode(_) => true,
        // The server ends the session with an error of its own first: class 08 (connection
        // exception) and 57P (the backend terminated: `pg_terminate_backend`, a shutdown).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}
