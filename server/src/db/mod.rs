//! The database: one handle over SQLite or PostgreSQL, with the few dialect differences the
//! rest of the server must not care about.
//!
//! Layout:
//! - [`Param`] / [`ColType`]: values in and out of dynamic SQL, independent of the dialect.
//! - [`Conn`]: one connection (inside a transaction for writes) with `execute` / `fetch`.
//! - [`Db::read`] runs on a reader connection; [`Db::write`] runs inside a transaction. On
//!   SQLite (rusqlite, see `sqlite`) a read is one job on a reader thread that owns its
//!   connection, and every write goes through one writer thread that commits a lone write at
//!   once and concurrent writes together (group commit, see `writer`); on PostgreSQL (sqlx)
//!   each write is its own transaction on the pool.
//! - `migrate`: the system tables, applied at start.

mod first_write;
mod migrate;
mod pg;
mod sqlite;
mod writer;

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use chrono::{DateTime, Utc};
use ferrobase_expr::{Dialect, SqlParam};
use sqlx::postgres::{PgConnectOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

pub use first_write::{FirstWrite, FirstWriteState};
pub use sqlite::Synchronous;
pub use writer::WriterHandle;

/// A boxed future borrowing a connection for `'c`.
pub type BoxFut<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

/// Why a database call failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// PostgreSQL (sqlx).
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// SQLite (rusqlite).
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("database configuration: {0}")]
    Config(String),
    #[error("commit failed: {0}")]
    CommitFailed(String),
    #[error("the database writer has stopped")]
    WriterGone,
    #[error("the write transaction was rolled back because another write in it failed; retry")]
    Aborted,
    #[error("a single-write job attempted a second write")]
    SecondWrite,
    /// The scope's [`FirstWrite`] statement matched no row (another request holds its
    /// idempotency key), so the write was rolled back.
    #[error("another request with the same Idempotency-Key got there first")]
    Preempted,
    #[error("a value read from the database has an unexpected type: {0}")]
    Decode(String),
    #[error("migration {version} failed: {message}")]
    Migration { version: i64, message: String },
}

impl DbError {
    /// The columns of a violated unique index (`["id"]` for the primary key), if this is a
    /// unique violation; empty when the database did not say which.
    pub fn unique_violation_fields(&self) -> Option<Vec<String>> {
        if let DbError::Sqlite(e) = self {
            return sqlite::unique_violation_fields(e);
        }
        let DbError::Sqlx(sqlx::Error::Database(e)) = self else {
            return None;
        };
        if !e.is_unique_violation() {
            return None;
        }
        if let Some(pg) = e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
            if pg.constraint().is_some_and(|c| c.ends_with("_pkey")) {
                return Some(vec!["id".into()]);
            }
            // "Key (email)=(a@b.c) already exists."
            let fields = pg
                .detail()
                .and_then(|d| d.split_once("Key ("))
                .and_then(|(_, rest)| rest.split_once(")="))
                .map(|(cols, _)| {
                    cols.split(',')
                        .map(|s| s.trim().trim_matches('"').to_owned())
                        .collect()
                });
            return Some(fields.unwrap_or_default());
        }
        Some(Vec::new())
    }

    /// Whether the database was too busy to answer (a pool or lock timeout, a stopped or
    /// rolled-back writer): the request may be retried.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Sqlx(sqlx::Error::PoolTimedOut) | DbError::WriterGone | DbError::Aborted => {
                true
            }
            DbError::Sqlite(e) => sqlite::is_busy(e),
            _ => false,
        }
    }
}

/// A value bound to, or read from, dynamic SQL.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    /// An untyped NULL (bound as text).
    Null,
    /// A NULL of a column type: PostgreSQL refuses a text-typed NULL for e.g. a TIMESTAMPTZ
    /// column, so writes bind NULLs with the column's type.
    NullOf(ColType),
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Time(DateTime<Utc>),
    Json(serde_json::Value),
}

impl From<SqlParam> for Param {
    fn from(p: SqlParam) -> Self {
        match p {
            SqlParam::Null => Param::Null,
            SqlParam::Bool(b) => Param::Bool(b),
            SqlParam::Int(i) => Param::Int(i),
            SqlParam::Float(f) => Param::Float(f),
            SqlParam::Text(s) => Param::Text(s),
            SqlParam::Time(t) => Param::Time(t),
        }
    }
}

impl From<&str> for Param {
    fn from(s: &str) -> Self {
        Param::Text(s.to_owned())
    }
}
impl From<String> for Param {
    fn from(s: String) -> Self {
        Param::Text(s)
    }
}
impl From<i64> for Param {
    fn from(i: i64) -> Self {
        Param::Int(i)
    }
}
impl From<DateTime<Utc>> for Param {
    fn from(t: DateTime<Utc>) -> Self {
        Param::Time(t)
    }
}
impl From<Option<String>> for Param {
    fn from(o: Option<String>) -> Self {
        o.map(Param::Text).unwrap_or(Param::Null)
    }
}
impl From<Option<DateTime<Utc>>> for Param {
    fn from(o: Option<DateTime<Utc>>) -> Self {
        o.map(Param::Time).unwrap_or(Param::NullOf(ColType::Time))
    }
}

impl Param {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Param::Text(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Param::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn into_string(self) -> Option<String> {
        match self {
            Param::Text(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_time(&self) -> Option<DateTime<Utc>> {
        match self {
            Param::Time(t) => Some(*t),
            _ => None,
        }
    }
}

/// How to decode a selected column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColType {
    Text,
    Int,
    Float,
    Bool,
    Time,
    Json,
}

/// One row of decoded values, in select order.
pub type Values = Vec<Param>;

/// Set in a job's write counter when the job promised at most one write statement: it then
/// runs without a savepoint of its own (one round trip less), and a second write is refused.
pub const SINGLE_WRITE: u32 = 1 << 31;

/// One connection, borrowed for the duration of a read or a write job.
pub enum Conn<'c> {
    Sqlite {
        conn: &'c mut rusqlite::Connection,
        /// Statements that changed data so far in this job (see the writer's savepoints);
        /// [`SINGLE_WRITE`] marks a job that promised at most one.
        writes: &'c AtomicU32,
    },
    Pg {
        conn: &'c mut PgConnection,
        /// Set when a statement lost the connection, so its lease closes it.
        broken: &'c AtomicBool,
    },
}

impl Conn<'_> {
    pub fn dialect(&self) -> Dialect {
        match self {
            Conn::Sqlite { .. } => Dialect::Sqlite,
            Conn::Pg { .. } => Dialect::Postgres,
        }
    }

    /// Runs a statement that returns no rows; the number of affected rows.
    pub async fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, DbError> {
        match self {
            Conn::Sqlite { conn, writes } => sqlite::execute(conn, writes, sql, params),
            Conn::Pg { conn, broken } => {
                let q = bind_pg(sqlx::query(AssertSqlSafe(sql.to_owned())), params);
                let done = q.execute(&mut **conn).await;
                Ok(pg_checked(done, broken)?.rows_affected())
            }
        }
    }

    /// Runs a query and decodes every row by `cols`.
    pub async fn fetch(
        &mut self,
        sql: &str,
        params: &[Param],
        cols: &[ColType],
    ) -> Result<Vec<Values>, DbError> {
        match self {
            Conn::Sqlite { conn, writes } => sqlite::fetch(conn, writes, sql, params, cols),
            Conn::Pg { conn, broken } => {
                let q = bind_pg(sqlx::query(AssertSqlSafe(sql.to_owned())), params);
                let rows = pg_checked(q.fetch_all(&mut **conn).await, broken)?;
                rows.iter().map(|r| decode_pg(r, cols)).collect()
            }
        }
    }

    /// The first row, if any.
    pub async fn fetch_one(
        &mut self,
        sql: &str,
        params: &[Param],
        cols: &[ColType],
    ) -> Result<Option<Values>, DbError> {
        Ok(self.fetch(sql, params, cols).await?.into_iter().next())
    }

    /// Runs several statements without parameters (DDL, savepoints) in one round trip.
    pub async fn execute_script(&mut self, sql: &str) -> Result<(), DbError> {
        match self {
            Conn::Sqlite { conn, writes } => sqlite::execute_script(conn, writes, sql)?,
            Conn::Pg { conn, broken } => {
                let done = sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                    .execute(&mut **conn)
                    .await;
                pg_checked(done, broken)?;
            }
        }
        Ok(())
    }
}

/// Runs `f` on a pooled connection, outside a transaction.
async fn pg_run<T, E, F>(pool: &pg::PgConns, f: F) -> Result<T, E>
where
    F: for<'c> FnOnce(Conn<'c>) -> BoxFut<'c, Result<T, E>>,
    E: From<DbError>,
{
    let mut lease = pool.acquire().await?;
    let out = {
        let (conn, broken) = lease.split()?;
        f(Conn::Pg { conn, broken }).await
    };
    lease.release();
    out
}

/// Runs `f` in a transaction on `conn`: committed when it returns `Ok`, rolled back otherwise.
async fn pg_transaction<T, E, F>(conn: &mut PgConnection, broken: &AtomicBool, f: F) -> Result<T, E>
where
    F: for<'c> FnOnce(Conn<'c>) -> BoxFut<'c, Result<T, E>>,
    E: From<DbError>,
{
    let mut tx = pg_checked(conn.begin().await, broken)?;
    match f(Conn::Pg {
        conn: &mut tx,
        broken,
    })
    .await
    {
        Ok(v) => {
            pg_checked(tx.commit().await, broken)?;
            Ok(v)
        }
        Err(e) => {
            // Dropping the transaction rolls it back (sqlx completes the ROLLBACK before the
            // connection's next statement).
            drop(tx);
            Err(e)
        }
    }
}

/// Marks the lease's connection for closing when `r` says the connection was lost.
fn pg_checked<T>(r: Result<T, sqlx::Error>, broken: &AtomicBool) -> Result<T, DbError> {
    r.map_err(|e| {
        if pg::connection_lost(&e) {
            broken.store(true, Ordering::Relaxed);
        }
        DbError::Sqlx(e)
    })
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

fn bind_pg<'q>(mut q: PgQuery<'q>, params: &[Param]) -> PgQuery<'q> {
    for p in params {
        q = match p {
            Param::Null | Param::NullOf(ColType::Text) => q.bind(None::<String>),
            Param::NullOf(ColType::Int) => q.bind(None::<i64>),
            Param::NullOf(ColType::Float) => q.bind(None::<f64>),
            Param::NullOf(ColType::Bool) => q.bind(None::<bool>),
            Param::NullOf(ColType::Time) => q.bind(None::<DateTime<Utc>>),
            Param::NullOf(ColType::Json) => q.bind(None::<sqlx::types::Json<serde_json::Value>>),
            Param::Bool(b) => q.bind(*b),
            Param::Int(i) => q.bind(*i),
            Param::Float(f) => q.bind(*f),
            Param::Text(s) => q.bind(s.clone()),
            Param::Time(t) => q.bind(*t),
            Param::Json(v) => q.bind(sqlx::types::Json(v.clone())),
        };
    }
    q
}

fn decode_pg(row: &PgRow, cols: &[ColType]) -> Result<Values, DbError> {
    let mut out = Vec::with_capacity(cols.len());
    for (i, ty) in cols.iter().enumerate() {
        let v = match ty {
            ColType::Text => row.try_get::<Option<String>, _>(i)?.map(Param::Text),
            ColType::Int => row.try_get::<Option<i64>, _>(i)?.map(Param::Int),
            ColType::Float => row.try_get::<Option<f64>, _>(i)?.map(Param::Float),
            ColType::Bool => row.try_get::<Option<bool>, _>(i)?.map(Param::Bool),
            ColType::Time => row.try_get::<Option<DateTime<Utc>>, _>(i)?.map(Param::Time),
            ColType::Json => row
                .try_get::<Option<sqlx::types::Json<serde_json::Value>>, _>(i)?
                .map(|j| Param::Json(j.0)),
        };
        out.push(v.unwrap_or(Param::Null));
    }
    Ok(out)
}

/// How to open the database.
#[derive(Clone, Debug)]
pub struct DbOptions {
    /// PostgreSQL pool size, or the number of SQLite reader threads; 0 picks for the dialect
    /// (`readers`, `pool_size`).
    pub max_connections: u32,
    /// SQLite commit durability (PostgreSQL commits are always durable: `synchronous_commit`).
    pub synchronous: Synchronous,
    /// SQLite: hold the file exclusively for this process (`database.exclusive`).
    pub exclusive: bool,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            max_connections: 0,
            synchronous: Synchronous::Normal,
            exclusive: false,
        }
    }
}

impl DbOptions {
    /// SQLite reader threads: reads are CPU-bound (the OS page cache holds the file), so more
    /// threads than cores only add memory (~150 KiB each) and contention; two per core leave
    /// room for a read waiting on the disk.
    fn readers(&self) -> u32 {
        match self.max_connections {
            0 => {
                let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
                (2 * cores).clamp(4, 8)
            }
            n => n.max(2),
        }
    }

    /// PostgreSQL connections: the work happens in the database server, so a fixed pool.
    fn pool_size(&self) -> u32 {
        match self.max_connections {
            0 => 8,
            n => n.max(2),
        }
    }
}

/// The database handle, cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Handle>,
}

struct Handle {
    kind: Inner,
    /// Woken after every committed write job (see [`Db::committed`]).
    commits: tokio::sync::Notify,
}

enum Inner {
    Sqlite {
        readers: sqlite::Readers,
        local: sqlite::LocalReads,
        writer: WriterHandle,
        /// Tells the checkpointer thread to stop.
        stop: Arc<AtomicBool>,
    },
    Postgres {
        pool: Box<pg::PgConns>,
    },
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Inner::Sqlite { stop, .. } = self {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

impl Db {
    /// Connects (creating the SQLite file if needed) and applies the system migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, DbError> {
        Db::connect_with(
            url,
            &DbOptions {
                max_connections,
                ..DbOptions::default()
            },
        )
        .await
    }

    /// Like [`Db::connect`], with every option.
    pub async fn connect_with(url: &str, opts: &DbOptions) -> Result<Db, DbError> {
        let inner = if url.starts_with("sqlite:") {
            let path = sqlite::path_from_url(url)?;
            // The writer connection is opened first so the file and WAL mode exist before
            // readers. It never checkpoints itself (that would stall every queued write behind
            // a WAL copy); a separate connection does passive checkpoints in the background.
            let mode = sqlite::Mode {
                sync: opts.synchronous,
                exclusive: opts.exclusive,
            };
            let mut conn = sqlite::open(&path, false, mode)?;
            conn.execute_batch(&format!(
                "PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {}",
                sqlite::WAL_SIZE_LIMIT
            ))?;
            migrate::run(&mut Conn::Sqlite {
                conn: &mut conn,
                writes: &AtomicU32::new(0),
            })
            .await?;
            let stop = Arc::new(AtomicBool::new(false));
            let catch_up = Arc::new(AtomicBool::new(false));
            sqlite::spawn_checkpointer(
                sqlite::open(&path, false, mode)?,
                stop.clone(),
                catch_up.clone(),
            )?;
            let readers = sqlite::Readers::spawn(&path, opts.readers(), mode)?;
            Inner::Sqlite {
                readers,
                local: sqlite::LocalReads::new(&path, mode),
                // With `synchronous = full` a commit is an fsync: it stays on the writer
                // thread, never on a runtime worker.
                writer: writer::spawn(conn, opts.synchronous == Synchronous::Normal, catch_up)?,
                stop,
            }
        } else {
            let pg = PgConnectOptions::from_str(url)?;
            let pool = Box::new(pg::PgConns::new(pg, opts.pool_size()));
            let mut lease = pool.acquire().await?;
            let (conn, broken) = lease.split()?;
            migrate::run(&mut Conn::Pg { conn, broken }).await?;
            lease.release();
            Inner::Postgres { pool }
        };
        Ok(Db {
            inner: Arc::new(Handle {
                kind: inner,
                commits: tokio::sync::Notify::new(),
            }),
        })
    }

    pub fn dialect(&self) -> Dialect {
        match &self.inner.kind {
            Inner::Sqlite { .. } => Dialect::Sqlite,
            Inner::Postgres { .. } => Dialect::Postgres,
        }
    }

    /// Runs `f` on a reader connection (no transaction; use single statements).
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(Conn<'c>) -> BoxFut<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        match &self.inner.kind {
            Inner::Sqlite { readers, .. } => readers.run(f).await,
            Inner::Postgres { pool } => pg_run(pool, f).await,
        }
    }

    /// Like [`Db::read`], for reads bounded by a key (a record by id, its expanded relations):
    /// on SQLite they run on the calling thread, sparing the hop to a reader thread and back;
    /// anything that may scan many rows belongs in [`Db::read`].
    pub async fn read_by_key<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(Conn<'c>) -> BoxFut<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        match &self.inner.kind {
            Inner::Sqlite { local, .. } => local.run(f).await,
            Inner::Postgres { pool } => pg_run(pool, f).await,
        }
    }

    /// Runs `f` inside a transaction and answers only after it committed: an acknowledged write
    /// is durable. An `Err` from `f` rolls back everything `f` did and nothing else. Inside a
    /// [`FirstWrite::scope`] the first committing write also runs that statement first.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(Conn<'c>) -> BoxFut<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        match first_write::pending() {
            Some(first) => self.write_first(first, f).await,
            None => self.transaction(f).await,
        }
    }

    /// Like [`Db::write`] for a job that does at most one write statement (plus any reads).
    /// On SQLite it skips the job's savepoint: a failed single statement leaves nothing
    /// behind, so there is nothing to roll back; a second write is refused. On PostgreSQL it
    /// runs without `BEGIN`/`COMMIT` (two round trips less): one statement is atomic on its
    /// own (the change-log trigger runs inside it), and at READ COMMITTED the reads before it
    /// see nothing a transaction would have kept stable. A pending [`FirstWrite`] makes it
    /// two statements, so it then runs as [`Db::write`] does.
    pub async fn write_one<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(Conn<'c>) -> BoxFut<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        if let Some(first) = first_write::pending() {
            return self.write_first(first, f).await;
        }
        let out = match &self.inner.kind {
            Inner::Sqlite { writer, .. } => writer.submit_with(f, true).await,
            Inner::Postgres { pool } => pg_run(pool, f).await,
        };
        if out.is_ok() {
            self.inner.commits.notify_waiters();
        }
        out
    }

    /// `f` in a transaction that starts with `first`'s statement; refused (and rolled back)
    /// when that statement changes no row.
    async fn write_first<T, E, F>(&self, first: Arc<FirstWrite>, f: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(Conn<'c>) -> BoxFut<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let statement = first.clone();
        let out = self
            .transaction(move |mut c| {
                Box::pin(async move {
                    let changed = if statement.on_commit.is_some() {
                        let rows = c
                            .fetch(statement.sql, &statement.params, &[ColType::Int])
                            .await?;
                        let n = rows.first().and_then(|r| r.first()).and_then(Param::as_i64);
                        if let Some(n) = n {
                            statement.set_returned(n);
                        }
                        n.is_some()
                    } else {
                        c.execute(statement.sql, &statement.params).await? > 0
                    };
                    if !changed {
                        statement.refused();
                        return Err(E::from(DbError::Preempted));
                    }
                    f(c).await
                })
            })
            .await;
        if out.is_ok() {
            first.committed();
        }
        out
    }

    async fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(Conn<'c>) -> BoxFut<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let out = match &self.inner.kind {
            Inner::Sqlite { writer, .. } => writer.submit_with(f, false).await,
            Inner::Postgres { pool } => {
                let mut lease = pool.acquire().await?;
                let out = {
                    let (conn, broken) = lease.split()?;
                    pg_transaction(conn, broken, f).await
                };
                lease.release();
                out
            }
        };
        if out.is_ok() {
            self.inner.commits.notify_waiters();
        }
        out
    }

    /// Resolves after the next write job commits (one that is still running when this is
    /// called counts). Realtime waits on it to read the change log without polling; create the
    /// future and `enable` it *before* reading, so a commit in between is not missed.
    pub fn committed(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.commits.notified()
    }

    /// Wakes whoever waits in [`Db::committed`], for commits this process did not make (another
    /// replica's, announced by PostgreSQL `NOTIFY`).
    pub fn wake(&self) {
        self.inner.commits.notify_waiters();
    }

    /// Whether the database answers (readiness): a reader, and the writer (on SQLite a dead
    /// writer task would otherwise leave the server "ready" but unable to write).
    pub async fn ping(&self) -> bool {
        if let Inner::Sqlite { writer, .. } = &self.inner.kind {
            let alive = writer
                .submit_with(
                    |mut c| {
                        Box::pin(async move {
                            c.fetch("SELECT CAST(1 AS BIGINT)", &[], &[ColType::Int])
                                .await
                                .map(|_| ())
                        })
                    },
                    false,
                )
                .await
                .is_ok();
            if !alive {
                return false;
            }
        }
        self.read(|mut c| {
            Box::pin(async move {
                c.fetch("SELECT CAST(1 AS BIGINT)", &[], &[ColType::Int])
                    .await
                    .map(|_| ())
            })
        })
        .await
        .is_ok()
    }

    /// Closes pools and stops the writer after it drained its queue.
    pub async fn close(&self) {
        match &self.inner.kind {
            Inner::Sqlite { writer, stop, .. } => {
                writer.shutdown().await;
                stop.store(true, Ordering::Relaxed);
            }
            Inner::Postgres { pool } => pool.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn sqlite(dir: &tempfile::TempDir, sync: Synchronous) -> Db {
        sqlite_with(dir, sync, false).await
    }

    async fn sqlite_with(dir: &tempfile::TempDir, sync: Synchronous, exclusive: bool) -> Db {
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        Db::connect_with(
            &url,
            &DbOptions {
                max_connections: 2,
                synchronous: sync,
                exclusive,
            },
        )
        .await
        .unwrap()
    }

    async fn one_int(db: &Db, sql: &'static str, params: Vec<Param>) -> Result<i64, DbError> {
        db.read(move |mut c| {
            Box::pin(async move {
                let row = c.fetch_one(sql, &params, &[ColType::Int]).await?;
                Ok(row.and_then(|r| r[0].as_i64()).unwrap_or(-1))
            })
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn placeholders_bind_by_their_number() {
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite(&dir, Synchronous::Normal).await;
        // `$2` appears first: SQLite would number it 1; the binder reads the name.
        let v = one_int(
            &db,
            "SELECT $2 * 10 + $1",
            vec![Param::Int(1), Param::Int(2)],
        )
        .await
        .unwrap();
        assert_eq!(v, 21);
        let missing = one_int(&db, "SELECT $3", vec![Param::Int(1)]).await;
        assert!(matches!(missing, Err(DbError::Decode(_))), "{missing:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn synchronous_setting_reaches_every_connection() {
        for (sync, want) in [(Synchronous::Normal, 1), (Synchronous::Full, 2)] {
            let dir = tempfile::tempdir().unwrap();
            let db = sqlite(&dir, sync).await;
            assert_eq!(
                one_int(&db, "PRAGMA synchronous", vec![]).await.unwrap(),
                want
            );
            let in_writer = db
                .write(move |mut c| {
                    Box::pin(async move {
                        let r = c
                            .fetch_one(
                                "SELECT 1 FROM pragma_synchronous WHERE synchronous = $1",
                                &[Param::Int(want)],
                                &[ColType::Int],
                            )
                            .await?;
                        Ok::<_, DbError>(r.is_some())
                    })
                })
                .await
                .unwrap();
            assert!(in_writer, "writer runs with synchronous={want}");
            db.close().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_job_leaves_readers_and_writer_working() {
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite(&dir, Synchronous::Normal).await;
        for _ in 0..4 {
            let r: Result<(), DbError> = db
                .read(|_c| Box::pin(async move { panic!("job bug") }))
                .await;
            assert!(matches!(r, Err(DbError::WriterGone)));
        }
        assert_eq!(one_int(&db, "SELECT 7", vec![]).await.unwrap(), 7);
        let r: Result<(), DbError> = db
            .write(|mut c| {
                Box::pin(async move {
                    c.execute_script("CREATE TABLE t (x INTEGER)").await?;
                    panic!("job bug after a write")
                })
            })
            .await;
        assert!(r.is_err());
        // The panicking job's transaction was rolled back; the writer still commits.
        db.write(|mut c| {
            Box::pin(async move {
                c.execute_script("CREATE TABLE t (x INTEGER)").await?;
                c.execute("INSERT INTO t VALUES ($1)", &[Param::Int(5)])
                    .await
                    .map(|_| ())
            })
        })
        .await
        .unwrap();
        assert_eq!(one_int(&db, "SELECT x FROM t", vec![]).await.unwrap(), 5);
    }

    /// The thread a job ran on.
    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("").to_owned()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn key_reads_run_on_the_callers_thread_and_see_the_last_commit() {
        for exclusive in [false, true] {
            key_reads_in(exclusive).await;
        }
    }

    async fn key_reads_in(exclusive: bool) {
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite_with(&dir, Synchronous::Normal, exclusive).await;
        let before = sqlite::local_reader_count();
        db.write(|mut c| {
            Box::pin(async move {
                c.execute_script("CREATE TABLE t (x INTEGER)").await?;
                c.execute("INSERT INTO t VALUES (1)", &[]).await.map(|_| ())
            })
        })
        .await
        .unwrap();
        let caller = thread_name();
        for want in 1..=3 {
            let (n, on) = db
                .read_by_key(|mut c| {
                    Box::pin(async move {
                        let r = c
                            .fetch_one("SELECT count(*) FROM t", &[], &[ColType::Int])
                            .await?;
                        Ok::<_, DbError>((r.and_then(|r| r[0].as_i64()), thread_name()))
                    })
                })
                .await
                .unwrap();
            assert_eq!(n, Some(want), "a key read sees every acknowledged write");
            assert_eq!(on, caller, "no hop to a reader thread");
            db.write(|mut c| {
                Box::pin(async move { c.execute("INSERT INTO t VALUES (1)", &[]).await })
            })
            .await
            .unwrap();
        }
        // One connection for this database on this thread, reused; gone with the database.
        assert_eq!(sqlite::local_reader_count(), before + 1);
        let write: Result<u64, DbError> = db
            .read_by_key(|mut c| {
                Box::pin(async move { c.execute("INSERT INTO t VALUES (1)", &[]).await })
            })
            .await;
        assert!(write.is_err(), "key reads are read-only: {write:?}");
        let via_readers: Result<u64, DbError> = db
            .read(|mut c| Box::pin(async move { c.execute("DELETE FROM t", &[]).await }))
            .await;
        assert!(
            via_readers.is_err(),
            "readers are read-only: {via_readers:?}"
        );
        db.close().await;
        drop(db);
        assert_eq!(sqlite::local_reader_count(), before);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lone_writes_commit_inline_and_concurrent_ones_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite(&dir, Synchronous::Normal).await;
        let on = db
            .write(|mut c| {
                Box::pin(async move {
                    c.execute_script("CREATE TABLE t (x INTEGER)").await?;
                    Ok::<_, DbError>(thread_name())
                })
            })
            .await
            .unwrap();
        assert_ne!(
            on, "fb-sqlite-writer",
            "a lone write commits on the caller's thread"
        );
        // A lone write that holds the connection a while (it awaits inside its job): the
        // writes arriving meanwhile find it busy and queue for the writer thread's group
        // commits. Every one lands once.
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let holder = {
            let db = db.clone();
            tokio::spawn(async move {
                db.write(move |mut c| {
                    Box::pin(async move {
                        c.execute("INSERT INTO t VALUES (-1)", &[]).await?;
                        let _ = started_tx.send(());
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        Ok::<_, DbError>(())
                    })
                })
                .await
            })
        };
        started_rx.await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..400i64 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                db.write_one(move |mut c| {
                    Box::pin(async move {
                        c.execute("INSERT INTO t VALUES ($1)", &[Param::Int(i)])
                            .await?;
                        Ok::<_, DbError>(thread_name())
                    })
                })
                .await
            }));
        }
        holder.await.unwrap().unwrap();
        let mut on_writer = 0;
        for t in tasks {
            if t.await.unwrap().unwrap() == "fb-sqlite-writer" {
                on_writer += 1;
            }
        }
        assert!(on_writer > 0, "concurrent writes queue for group commits");
        assert_eq!(
            one_int(&db, "SELECT count(DISTINCT x) FROM t WHERE x >= 0", vec![])
                .await
                .unwrap(),
            400
        );
        db.close().await;
        let after: Result<(), DbError> = db
            .write(|mut c| Box::pin(async move { c.execute_script("SELECT 1").await }))
            .await;
        assert!(matches!(after, Err(DbError::WriterGone)), "{after:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_synchronous_full_every_commit_is_on_the_writer_thread() {
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite(&dir, Synchronous::Full).await;
        let on = db
            .write(|_c| Box::pin(async move { Ok::<_, DbError>(thread_name()) }))
            .await
            .unwrap();
        assert_eq!(
            on, "fb-sqlite-writer",
            "an fsync never runs on a runtime worker"
        );
    }

    #[test]
    fn sqlite_urls_need_a_file() {
        assert!(sqlite::path_from_url("sqlite://a/b.db?mode=rwc").is_ok());
        assert!(sqlite::path_from_url("sqlite:b.db").is_ok());
        assert!(sqlite::path_from_url("sqlite::memory:").is_err());
        assert!(sqlite::path_from_url("sqlite://").is_err());
    }
}
