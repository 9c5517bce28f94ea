//! Group commit for SQLite: one write connection; a write that arrives alone commits at once,
//! and writes that queued up while a transaction ran commit together.
//!
//! Why: a commit costs far more than a row, so many rows in one transaction multiply write
//! throughput under concurrency, while a lone client never waits for company (the writer
//! thread takes whatever is queued the moment it is free, no timer). A write that finds the
//! connection idle and nothing queued does not even go to the writer thread: it commits on the
//! calling thread (with `synchronous = normal` only, where a commit is a `write(2)` into the
//! WAL, not an fsync), sparing two thread wake-ups — most of what a lone client's save cost.
//! Each job runs inside its own savepoint so a failing request rolls back only itself —
//! except single-write jobs (one record insert/update/delete, whose change log row is written
//! by a trigger in the same statement): a failed statement leaves nothing behind, so they skip
//! the savepoint. Every job is acknowledged only after its COMMIT succeeded, so an
//! acknowledged write survives a crash.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use rusqlite::Connection;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use super::{BoxFut, Conn, DbError, SINGLE_WRITE};

/// Most jobs committed by one transaction; bounds the latency a big group adds.
const MAX_GROUP: usize = 256;

/// Delivers a successful job's result once the commit's outcome is known.
type Deliver = Box<dyn FnOnce(Result<(), DbError>) + Send>;

/// What a job left behind: a way to deliver its result once the commit's outcome is known.
enum Outcome {
    /// The job succeeded; call with the commit result.
    Done(Deliver),
    /// The job failed; its error is delivered at once.
    Failed(Box<dyn FnOnce() + Send>),
}

type JobFn =
    Box<dyn for<'c> FnOnce(&'c mut Connection, &'c AtomicU32) -> BoxFut<'c, Outcome> + Send>;

struct Job {
    run: JobFn,
    single: bool,
}

enum Msg {
    Job(Job),
    Shutdown(oneshot::Sender<()>),
}

/// The write connection, shared by the writer thread and lone writes on callers' threads;
/// `None` once the writer shut down.
type WriteConn = Arc<tokio::sync::Mutex<Option<Connection>>>;

/// Most jobs waiting for the writer thread.
const QUEUE: usize = 4096;

/// Sends write jobs to the writer thread, or commits a lone one on the caller's thread.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Msg>,
    conn: WriteConn,
    /// Whether a lone write may commit on the caller's thread (`synchronous = normal`).
    inline: bool,
    /// Set by the checkpointer when the WAL outgrew it (see `sqlite::spawn_checkpointer`).
    catch_up: Arc<AtomicBool>,
}

pub(super) fn spawn(
    conn: Connection,
    inline: bool,
    catch_up: Arc<AtomicBool>,
) -> Result<WriterHandle, DbError> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let runtime = Handle::current();
    let conn: WriteConn = Arc::new(tokio::sync::Mutex::new(Some(conn)));
    let shared = conn.clone();
    let asked = catch_up.clone();
    std::thread::Builder::new()
        .name("fb-sqlite-writer".into())
        .spawn(move || run(shared, rx, runtime, &asked))
        .map_err(|e| DbError::Config(format!("cannot start the writer thread: {e}")))?;
    Ok(WriterHandle {
        tx,
        conn,
        inline,
        catch_up,
    })
}

/// Finishes a checkpoint when the checkpointer asked for it (see
/// `sqlite::spawn_checkpointer`); called between transactions, so no write can append to the
/// WAL meanwhile.
fn catch_up_if_asked(conn: &Connection, asked: &AtomicBool) {
    if asked.swap(false, Ordering::Relaxed)
        && let Err(e) = super::sqlite::checkpoint(conn)
    {
        tracing::debug!(error = %e, "checkpoint catch-up skipped");
    }
}

/// Rolls back what a job left open (it panicked, or its request was dropped mid-way).
fn reset(conn: &Connection) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

impl WriterHandle {
    pub(super) async fn submit_with<T, E, F>(&self, f: F, single: bool) -> Result<T, E>
    where
        F: for<'c> FnOnce(Conn<'c>) -> BoxFut<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        // Nothing queued and the connection free: nobody to share a commit with.
        if self.inline
            && self.tx.capacity() == QUEUE
            && let Ok(mut guard) = self.conn.try_lock()
        {
            let conn = guard.as_mut().ok_or_else(|| E::from(DbError::WriterGone))?;
            let out = lone_write(conn, f, single).await;
            catch_up_if_asked(conn, &self.catch_up);
            return out;
        }
        let (reply_tx, reply_rx) = oneshot::channel::<Result<T, E>>();
        let run: JobFn = Box::new(move |conn, writes| {
            Box::pin(async move {
                match f(Conn::Sqlite { conn, writes }).await {
                    Ok(v) => Outcome::Done(Box::new(move |commit: Result<(), DbError>| {
                        let _ = reply_tx.send(commit.map(|()| v).map_err(E::from));
                    })),
                    Err(e) => Outcome::Failed(Box::new(move || {
                        let _ = reply_tx.send(Err(e));
                    })),
                }
            })
        });
        self.tx
            .send(Msg::Job(Job { run, single }))
            .await
            .map_err(|_| E::from(DbError::WriterGone))?;
        reply_rx.await.map_err(|_| E::from(DbError::WriterGone))?
    }

    pub(super) async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// One job in a transaction of its own, committed before it answers.
async fn lone_write<T, E, F>(conn: &mut Connection, f: F, single: bool) -> Result<T, E>
where
    F: for<'c> FnOnce(Conn<'c>) -> BoxFut<'c, Result<T, E>> + Send + 'static,
    E: From<DbError>,
{
    use futures::FutureExt;
    reset(conn);
    script(conn, "BEGIN IMMEDIATE").map_err(E::from)?;
    let writes = AtomicU32::new(if single { SINGLE_WRITE } else { 0 });
    // As on the writer thread, a panicking job fails its own request only (its transaction is
    // rolled back below, or by the next user of the connection if the future was dropped).
    let out = AssertUnwindSafe(f(Conn::Sqlite {
        conn,
        writes: &writes,
    }))
    .catch_unwind()
    .await;
    let Ok(out) = out else {
        tracing::error!("a write job panicked; its transaction was rolled back");
        reset(conn);
        return Err(E::from(DbError::WriterGone));
    };
    match out {
        Ok(v) => match script(conn, "COMMIT") {
            Ok(()) => Ok(v),
            Err(e) => {
                tracing::error!(error = %e, "commit failed");
                reset(conn);
                Err(E::from(DbError::CommitFailed(e.to_string())))
            }
        },
        Err(e) => {
            reset(conn);
            Err(e)
        }
    }
}

fn run(conn: WriteConn, mut rx: mpsc::Receiver<Msg>, runtime: Handle, catch_up: &AtomicBool) {
    let mut group: Vec<Job> = Vec::with_capacity(MAX_GROUP);
    let mut stop: Option<oneshot::Sender<()>> = None;
    loop {
        match rx.blocking_recv() {
            Some(Msg::Job(j)) => group.push(j),
            Some(Msg::Shutdown(s)) => stop = Some(s),
            None => break,
        }
        while stop.is_none() && group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(Msg::Job(j)) => group.push(j),
                Ok(Msg::Shutdown(s)) => stop = Some(s),
                Err(_) => break,
            }
        }
        // Waits while a lone write commits on a caller's thread (the lock is fair: callers
        // cannot overtake the writer once it waits).
        let mut guard = conn.blocking_lock();
        let Some(conn) = guard.as_mut() else { break };
        if !group.is_empty() {
            // A panicking job drops its reply channel (its request sees the writer fail); the
            // transaction it was in is rolled back and the writer carries on.
            let jobs = std::mem::take(&mut group);
            reset(conn);
            if std::panic::catch_unwind(AssertUnwindSafe(|| commit_group(conn, &runtime, jobs)))
                .is_err()
            {
                tracing::error!("a write job panicked; its transaction was rolled back");
                reset(conn);
            }
        }
        catch_up_if_asked(conn, catch_up);
        if let Some(s) = stop.take() {
            if let Some(conn) = guard.take()
                && let Err((_, e)) = conn.close()
            {
                tracing::warn!(error = %e, "closing the write connection");
            }
            let _ = s.send(());
            break;
        }
    }
}

fn script(conn: &Connection, sql: &str) -> Result<(), DbError> {
    conn.execute_batch(sql).map_err(DbError::from)
}

/// Runs the jobs in one transaction and delivers every result after the commit.
fn commit_group(conn: &mut Connection, runtime: &Handle, jobs: Vec<Job>) {
    let mut done: Vec<Deliver> = Vec::new();
    if let Err(e) = script(conn, "BEGIN IMMEDIATE") {
        tracing::error!(error = %e, "cannot begin a write transaction");
        // Dropping the jobs drops their reply channels: each request learns the writer failed.
        return;
    }
    // Whether savepoint `j` (of the last multi-write job) is open.
    let mut savepoint = false;
    for job in jobs {
        if !job.single {
            // Close the previous savepoint, open the next.
            let sql = if savepoint {
                "RELEASE j; SAVEPOINT j"
            } else {
                "SAVEPOINT j"
            };
            if let Err(e) = script(conn, sql) {
                tracing::error!(error = %e, "savepoint failed");
            }
            savepoint = true;
        }
        let writes = AtomicU32::new(if job.single { SINGLE_WRITE } else { 0 });
        // The job's statements run synchronously on this thread; the runtime context serves
        // jobs that also await something of tokio's.
        let outcome = super::sqlite::run_to_end(runtime, (job.run)(conn, &writes));
        match outcome {
            Outcome::Done(deliver) => done.push(deliver),
            Outcome::Failed(deliver) => {
                let wrote = writes.load(Ordering::Relaxed) & !SINGLE_WRITE > 0;
                if wrote && !job.single {
                    // Undo what this job wrote; the savepoint stays open for the next job.
                    if let Err(e) = script(conn, "ROLLBACK TO j") {
                        tracing::error!(error = %e, "rollback to savepoint failed");
                    }
                } else if wrote {
                    // A single-write job failed after writing: it has no savepoint of its own,
                    // so the whole transaction goes; the jobs before it are told to retry and
                    // the rest run in a fresh transaction.
                    tracing::error!(
                        "a single-write job failed after writing; rolling back its group"
                    );
                    let _ = script(conn, "ROLLBACK");
                    for d in done.drain(..) {
                        d(Err(DbError::Aborted));
                    }
                    savepoint = false;
                    if let Err(e) = script(conn, "BEGIN IMMEDIATE") {
                        tracing::error!(error = %e, "cannot begin a write transaction");
                        deliver();
                        return;
                    }
                }
                deliver();
            }
        }
    }
    let commit = script(
        conn,
        if savepoint {
            "RELEASE j; COMMIT"
        } else {
            "COMMIT"
        },
    );
    if let Err(e) = &commit {
        tracing::error!(error = %e, "group commit failed");
        let _ = script(conn, "ROLLBACK");
    }
    for deliver in done {
        deliver(match &commit {
            Ok(()) => Ok(()),
            Err(e) => Err(DbError::CommitFailed(e.to_string())),
        });
    }
}
