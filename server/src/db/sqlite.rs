//! SQLite through rusqlite: connections opened with the server's pragmas, parameters bound by
//! their `$n` number, rows decoded by [`ColType`], and the pool of reader threads.
//!
//! Why rusqlite and not sqlx here: sqlx-sqlite runs every statement on a worker thread and
//! hands the result back through a channel, so a request paid several thread hops (acquire,
//! each statement) on a path whose real work — a primary-key lookup — takes a few µs. Here a
//! request is one job on a thread that owns its connection: one hop there and one back, and
//! statements come from the connection's prepared-statement cache.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::{BoxFut, ColType, Conn, DbError, Param, Values};

/// How durable a commit is on SQLite (`database.synchronous`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// WAL with `synchronous = NORMAL`: a commit survives a crash of the process (`kill -9`),
    /// not a power loss or OS crash (the last commits may be rolled back then).
    #[default]
    Normal,
    /// `synchronous = FULL`: each commit fsyncs the WAL, so it also survives power loss; costs
    /// one fsync per group commit.
    Full,
}

/// How connections are opened: durability and whether the process holds the file alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mode {
    pub sync: Synchronous,
    /// `database.exclusive`: the `unix-excl` VFS (see [`open`]).
    pub exclusive: bool,
}

/// Where the database file is, from a `sqlite:` URL (`sqlite://path`, `sqlite:path`,
/// optional `?…` ignored). `:memory:` is refused: readers and the writer need one shared file.
pub(super) fn path_from_url(url: &str) -> Result<PathBuf, DbError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| DbError::Config(format!("not a sqlite URL: {url}")))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") {
        return Err(DbError::Config(
            "SQLite needs a file path (sqlite://path/to/data.db)".into(),
        ));
    }
    Ok(PathBuf::from(path))
}

/// Opens a connection with the pragmas every connection shares.
///
/// With `database.exclusive = true` connections use SQLite's `unix-excl` VFS: the first one
/// takes an exclusive lock on the file for the whole process, and from then on the
/// connections of this process lock each other in memory (the WAL index lives in process
/// memory too) instead of through `fcntl(2)`. A read transaction otherwise takes and releases
/// two POSIX locks, which with the mutexes around them were ~15 % of the server's CPU on view
/// by id; the price is that no other process (the `sqlite3` shell, Litestream, an offline CLI
/// command) may open the file while the server runs, so it is not the default. Readers are
/// then opened read-write and made read-only with `query_only` (a read-only open would go
/// back to `fcntl`).
pub(super) fn open(
    path: &std::path::Path,
    read_only: bool,
    mode: Mode,
) -> Result<Connection, DbError> {
    let flags = OpenFlags::SQLITE_OPEN_NO_MUTEX
        | if read_only && !mode.exclusive {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
        };
    let conn = if mode.exclusive {
        Connection::open_with_flags_and_vfs(path, flags, c"unix-excl")?
    } else {
        Connection::open_with_flags(path, flags)?
    };
    // The first statement takes the process's exclusive lock (or, shared, a read lock): fail
    // within a second, with words an operator understands, when another process holds the
    // file exclusively (a busy file is not worth the 10 s wait of an ordinary statement).
    conn.busy_timeout(Duration::from_secs(1))?;
    if let Err(e) = conn.execute_batch("SELECT count(*) FROM sqlite_schema") {
        return Err(if is_busy(&e) {
            DbError::Config(format!(
                "the database file {} is in use by another process (a running `ferrobase \
                 serve` on this data dir?); stop it first, or use the HTTP API",
                path.display()
            ))
        } else {
            e.into()
        });
    }
    conn.busy_timeout(Duration::from_secs(10))?;
    let sync = match mode.sync {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    // 4 MiB of page cache per connection (writer, checkpointer, each reader): the OS page
    // cache holds the rest, and RSS stays small.
    let mut pragmas = format!(
        "PRAGMA synchronous = {sync}; PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY; \
         PRAGMA cache_size = -4000;"
    );
    if read_only {
        // Readers map the file instead of copying every page through `read(2)` into their
        // cache: a scan of a table bigger than the 4 MiB cache (a filter without an index)
        // costs half the CPU (see docs/benchmarks.md). Pages still in the WAL are read as
        // before; the mapped pages are the OS page cache's, shared by all readers.
        pragmas.push_str(" PRAGMA mmap_size = 1073741824; PRAGMA query_only = ON;");
    } else {
        pragmas.push_str(" PRAGMA journal_mode = WAL;");
    }
    conn.execute_batch(&pragmas)?;
    // Every distinct statement text of the server fits; dynamic list queries beyond it are
    // evicted least-recently-used.
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

/// A [`Param`] as SQLite sees it: booleans are integers, times ISO-8601 text, JSON its text.
struct Bind<'a>(&'a Param);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Param::Null | Param::NullOf(_) => ToSqlOutput::Borrowed(ValueRef::Null),
            Param::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*b))),
            Param::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Param::Float(f) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
            Param::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Param::Time(t) => ToSqlOutput::from(ferrobase_expr::sqlite_time(t)),
            Param::Json(v) => ToSqlOutput::from(v.to_string()),
        })
    }
}

/// Binds `params` to a statement whose placeholders are `$1`, `$2`, … (the server's SQL is
/// written once for both dialects with PostgreSQL's numbering). SQLite numbers named
/// parameters by first appearance, so each is bound by the number in its name.
fn bind(stmt: &mut rusqlite::Statement<'_>, params: &[Param]) -> Result<(), DbError> {
    for i in 1..=stmt.parameter_count() {
        let n = match stmt.parameter_name(i) {
            Some(name) => name
                .get(1..)
                .and_then(|d| d.parse::<usize>().ok())
                .ok_or_else(|| DbError::Decode(format!("unsupported placeholder `{name}`")))?,
            None => i,
        };
        let p = params
            .get(n.wrapping_sub(1))
            .ok_or_else(|| DbError::Decode(format!("no value for placeholder ${n}")))?;
        stmt.raw_bind_parameter(i, Bind(p))?;
    }
    Ok(())
}

fn text(v: ValueRef<'_>) -> Result<Option<String>, DbError> {
    Ok(match v {
        ValueRef::Null => None,
        ValueRef::Text(b) | ValueRef::Blob(b) => Some(
            std::str::from_utf8(b)
                .map_err(|e| DbError::Decode(e.to_string()))?
                .to_owned(),
        ),
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
    })
}

fn decode(row: &rusqlite::Row<'_>, cols: &[ColType]) -> Result<Values, DbError> {
    let mut out = Vec::with_capacity(cols.len());
    for (i, ty) in cols.iter().enumerate() {
        let v = row.get_ref(i)?;
        let p = match (ty, v) {
            (_, ValueRef::Null) => Param::Null,
            (ColType::Int, ValueRef::Integer(i)) => Param::Int(i),
            (ColType::Int, ValueRef::Real(f)) => Param::Int(f as i64),
            (ColType::Float, ValueRef::Real(f)) => Param::Float(f),
            (ColType::Float, ValueRef::Integer(i)) => Param::Float(i as f64),
            (ColType::Bool, ValueRef::Integer(i)) => Param::Bool(i != 0),
            (ColType::Bool, ValueRef::Real(f)) => Param::Bool(f != 0.0),
            (ColType::Text, v) => text(v)?.map_or(Param::Null, Param::Text),
            (ColType::Time, ValueRef::Text(b)) => {
                let s = std::str::from_utf8(b).map_err(|e| DbError::Decode(e.to_string()))?;
                Param::Time(
                    ferrobase_expr::parse_date(s)
                        .ok_or_else(|| DbError::Decode(format!("bad timestamp `{s}`")))?,
                )
            }
            (ColType::Json, ValueRef::Text(b) | ValueRef::Blob(b)) => {
                Param::Json(serde_json::from_slice(b).map_err(|e| DbError::Decode(e.to_string()))?)
            }
            (ColType::Json, ValueRef::Integer(i)) => Param::Json(i.into()),
            (ColType::Json, ValueRef::Real(f)) => Param::Json(
                serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into),
            ),
            (ty, v) => {
                return Err(DbError::Decode(format!(
                    "column {i}: expected {ty:?}, found {:?}",
                    v.data_type()
                )));
            }
        };
        out.push(p);
    }
    Ok(out)
}

/// Whether a statement may change data (it then counts as a write of its job): anything but
/// a plain `SELECT` (a `WITH … INSERT` counts as a write).
fn is_write(sql: &str) -> bool {
    !sql.trim_start().starts_with("SELECT")
}

/// Counts a successful write; refuses a second one in a single-write job before it runs.
fn before_write(writes: &AtomicU32) -> Result<(), DbError> {
    let w = writes.load(Ordering::Relaxed);
    if w & super::SINGLE_WRITE != 0 && (w & !super::SINGLE_WRITE) >= 1 {
        return Err(DbError::SecondWrite);
    }
    Ok(())
}

pub(super) fn execute(
    conn: &Connection,
    writes: &AtomicU32,
    sql: &str,
    params: &[Param],
) -> Result<u64, DbError> {
    before_write(writes)?;
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, params)?;
    let n = stmt.raw_execute()?;
    writes.fetch_add(1, Ordering::Relaxed);
    Ok(n as u64)
}

pub(super) fn fetch(
    conn: &Connection,
    writes: &AtomicU32,
    sql: &str,
    params: &[Param],
    cols: &[ColType],
) -> Result<Vec<Values>, DbError> {
    let write = is_write(sql);
    if write {
        before_write(writes)?;
    }
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, params)?;
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(row, cols)?);
    }
    if write {
        writes.fetch_add(1, Ordering::Relaxed);
    }
    Ok(out)
}

pub(super) fn execute_script(
    conn: &Connection,
    writes: &AtomicU32,
    sql: &str,
) -> Result<(), DbError> {
    before_write(writes)?;
    conn.execute_batch(sql)?;
    writes.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The columns of a violated unique index, if `e` is a unique violation:
/// "UNIQUE constraint failed: c_posts.a, c_posts.b" → `["a", "b"]`.
pub(super) fn unique_violation_fields(e: &rusqlite::Error) -> Option<Vec<String>> {
    let rusqlite::Error::SqliteFailure(err, msg) = e else {
        return None;
    };
    match err.extended_code {
        rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => return Some(vec!["id".into()]),
        rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE => {}
        _ => return None,
    }
    Some(
        match msg.as_deref().and_then(|m| m.split_once("failed: ")) {
            Some((_, cols)) => cols
                .split(", ")
                .map(|c| c.rsplit('.').next().unwrap_or(c).to_owned())
                .collect(),
            None => Vec::new(),
        },
    )
}

/// Whether SQLite gave up waiting for a lock (the caller may retry).
pub(super) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// A read job: runs on a reader thread with that thread's connection.
type ReadJob = Box<dyn FnOnce(&mut Connection) + Send>;

/// The readers' job queue: a mutex-guarded deque and a condition variable.
///
/// Why not a channel: crossbeam's (and std's) receivers spin and then `sched_yield` before
/// they sleep; with more reader threads than cores that yielding took ~8 % of the server's CPU
/// under load (perf, view by id on 2 cores) and competed with the threads doing the work. A
/// reader here sleeps on a futex at once and is woken for exactly one job.
struct ReadQueue {
    jobs: Mutex<QueueState>,
    ready: Condvar,
}

struct QueueState {
    jobs: VecDeque<ReadJob>,
    closed: bool,
}

impl ReadQueue {
    fn push(&self, job: ReadJob) -> Result<(), DbError> {
        let mut q = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if q.closed {
            return Err(DbError::WriterGone);
        }
        q.jobs.push_back(job);
        drop(q);
        self.ready.notify_one();
        Ok(())
    }

    /// The next job, or `None` once the queue is closed and drained.
    fn pop(&self) -> Option<ReadJob> {
        let mut q = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(job) = q.jobs.pop_front() {
                return Some(job);
            }
            if q.closed {
                return None;
            }
            q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn close(&self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.ready.notify_all();
    }
}

/// Reader threads, each owning one read-only connection, taking jobs from one queue. A read
/// request costs one hop to a reader and one back, however many statements it runs.
pub(super) struct Readers {
    queue: Arc<ReadQueue>,
    runtime: Handle,
}

impl Drop for Readers {
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// Runs a job's future to completion on this (non-runtime) thread. SQLite statements complete
/// synchronously, so the future is almost always ready at its first poll: that costs no
/// runtime context; only a job that really waits for something of tokio's gets `block_on`.
pub(super) fn run_to_end<F: Future>(runtime: &Handle, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => runtime.block_on(fut),
    }
}

impl Readers {
    pub(super) fn spawn(
        path: &std::path::Path,
        threads: u32,
        mode: Mode,
    ) -> Result<Readers, DbError> {
        let queue = Arc::new(ReadQueue {
            jobs: Mutex::new(QueueState {
                jobs: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        });
        for n in 0..threads.max(1) {
            let mut conn = open(path, true, mode)?;
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("fb-sqlite-read-{n}"))
                .spawn(move || {
                    while let Some(job) = queue.pop() {
                        // A panicking request must not take the reader (and its cache) down;
                        // its caller sees the reply channel close.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut conn)));
                    }
                })
                .map_err(|e| DbError::Config(format!("cannot start a reader thread: {e}")))?;
        }
        Ok(Readers {
            queue,
            runtime: Handle::current(),
        })
    }

    pub(super) async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(Conn<'c>) -> BoxFut<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel();
        let runtime = self.runtime.clone();
        let job: ReadJob = Box::new(move |conn: &mut Connection| {
            let writes = AtomicU32::new(0);
            let out = run_to_end(
                &runtime,
                f(Conn::Sqlite {
                    conn,
                    writes: &writes,
                }),
            );
            let _ = reply_tx.send(out);
        });
        self.queue.push(job).map_err(E::from)?;
        reply_rx.await.map_err(|_| E::from(DbError::WriterGone))?
    }
}

/// Read connections of the calling thread, one per open database (`id`); `alive` tells
/// whether that database still exists, so connections of closed ones are dropped.
type LocalReaders = Vec<(std::sync::Weak<()>, u64, Connection)>;

thread_local! {
    static LOCAL_READERS: std::cell::RefCell<LocalReaders> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Reads by key run on the calling thread (a runtime worker) with a read connection of that
/// thread's own, opened on first use.
///
/// Why: a lookup by primary key takes a few µs in SQLite, while handing it to a reader thread
/// and back costs two futex wake-ups and context switches, which on 2 cores were the largest
/// item of view by id's profile. Work that may scan (lists, filters, counts) stays on
/// [`Readers`], so it never holds up the worker's other connections.
pub(super) struct LocalReads {
    path: PathBuf,
    mode: Mode,
    id: u64,
    alive: Arc<()>,
}

/// How many read connections this thread keeps (for tests).
#[cfg(test)]
pub(super) fn local_reader_count() -> usize {
    LOCAL_READERS.with(|l| {
        let mut l = l.borrow_mut();
        l.retain(|(alive, _, _)| alive.strong_count() > 0);
        l.len()
    })
}

impl LocalReads {
    pub(super) fn new(path: &std::path::Path, mode: Mode) -> LocalReads {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        LocalReads {
            path: path.to_owned(),
            mode,
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            alive: Arc::new(()),
        }
    }

    /// This thread's connection to the database, taken out of the thread's list (so a second
    /// read interleaved on this thread opens its own), or a new one.
    fn take(&self) -> Result<Connection, DbError> {
        let found = LOCAL_READERS.with(|l| {
            let mut l = l.borrow_mut();
            l.retain(|(alive, _, _)| alive.strong_count() > 0);
            let at = l.iter().position(|(_, id, _)| *id == self.id)?;
            Some(l.swap_remove(at).2)
        });
        match found {
            Some(conn) => Ok(conn),
            None => open(&self.path, true, self.mode),
        }
    }

    /// Hands the connection back to the thread that finished the read (one per database and
    /// thread is kept; a surplus one is closed).
    fn give_back(&self, conn: Connection) {
        LOCAL_READERS.with(|l| {
            let mut l = l.borrow_mut();
            if !l.iter().any(|(_, id, _)| *id == self.id) {
                l.push((Arc::downgrade(&self.alive), self.id, conn));
            }
        });
    }

    pub(super) async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(Conn<'c>) -> BoxFut<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let mut conn = self.take().map_err(E::from)?;
        let writes = AtomicU32::new(0);
        // SQLite statements complete synchronously: this future is ready at its first poll
        // unless `f` awaits something else, and then the connection simply stays with it.
        let out = f(Conn::Sqlite {
            conn: &mut conn,
            writes: &writes,
        })
        .await;
        // A script (`execute_script` counts as a write even when it only sets a PRAGMA) may
        // have changed the connection's settings: such a connection is closed, not reused.
        if writes.load(Ordering::Relaxed) == 0 {
            self.give_back(conn);
        }
        out
    }
}

/// WAL frames (pages) past which the writer is asked to finish a checkpoint itself: 64 MiB
/// at the default 4 KiB page.
pub(super) const WAL_CATCH_UP_FRAMES: i64 = 16384;
/// What the WAL file is cut back to once it restarts, so a burst does not keep its disk.
pub(super) const WAL_SIZE_LIMIT: i64 = 64 << 20;
/// A checkpoint pass this short leaves the writer little to copy.
const SHORT_PASS: Duration = Duration::from_millis(5);
/// Most passes in a row before the writer is asked anyway.
const MAX_PASSES: usize = 16;

/// Copies the WAL back into the database file every half second without blocking the writer
/// (PASSIVE: it never waits for locks). SQLite restarts the WAL from its start when a write
/// begins after a checkpoint caught up with every frame; under sustained writes this thread
/// never quite does (the writer appends while it copies), and the WAL grew without bound (over
/// a gigabyte in a minute of creates, every new frame a fresh page of the page cache to
/// zero). So once the WAL holds more than [`WAL_CATCH_UP_FRAMES`] it copies pass after pass,
/// each taking only what was appended during the one before, until a pass is short; then it
/// sets `catch_up`, and the writer, between two transactions, copies the little that is left
/// itself: nothing can append meanwhile, so it catches up and the next write restarts the WAL.
/// The writer's pause is that one short pass. Stops when `stop` is set.
pub(super) fn spawn_checkpointer(
    conn: Connection,
    stop: Arc<AtomicBool>,
    catch_up: Arc<AtomicBool>,
) -> Result<(), DbError> {
    std::thread::Builder::new()
        .name("fb-sqlite-checkpoint".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
                let mut frames = 0;
                for _ in 0..MAX_PASSES {
                    let began = std::time::Instant::now();
                    match checkpoint(&conn) {
                        Ok(f) => {
                            frames = f;
                            if f <= WAL_CATCH_UP_FRAMES || began.elapsed() < SHORT_PASS {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "checkpoint skipped");
                            frames = 0;
                            break;
                        }
                    }
                }
                if frames > WAL_CATCH_UP_FRAMES {
                    catch_up.store(true, Ordering::Relaxed);
                }
            }
        })
        .map(|_| ())
        .map_err(|e| DbError::Config(format!("cannot start the checkpointer: {e}")))
}

/// A PASSIVE checkpoint; the number of frames in the WAL.
pub(super) fn checkpoint(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1))
}
