//! Group commit for SQLite: one task owns the only write connection and commits the jobs that
//! queued up while the previous transaction ran, together.
//!
//! Why: sqlx hops to a worker thread for every statement, which caps one-transaction-per-write
//! at ~2,000/s here, while many rows in one transaction reach ~10,000/s. Each job runs inside
//! its own savepoint so a failing request rolls back only itself; every job is acknowledged only
//! after the shared COMMIT succeeded, so an acknowledged write survives a crash.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{AssertSqlSafe, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::{BoxFut, Conn, DbError};

/// Most jobs committed by one transaction; bounds the latency a big group adds.
const MAX_GROUP: usize = 256;

/// Delivers a successful job's result once the commit's outcome is known.
type Deliver = Box<dyn FnOnce(Result<(), String>) + Send>;

/// What a job left behind: a way to deliver its result once the commit's outcome is known.
enum Outcome {
    /// The job succeeded; call with the commit result.
    Done(Deliver),
    /// The job failed; its error is delivered at once (its savepoint was rolled back).
    Failed(Box<dyn FnOnce() + Send>),
}

type JobFn =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection, &'c AtomicU32) -> BoxFut<'c, Outcome> + Send>;

enum Msg {
    Job(JobFn),
    Shutdown(oneshot::Sender<()>),
}

/// Sends write jobs to the writer task.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Msg>,
}

pub(super) fn spawn(conn: SqliteConnection) -> WriterHandle {
    let (tx, rx) = mpsc::channel(4096);
    tokio::spawn(run(conn, rx));
    WriterHandle { tx }
}

impl WriterHandle {
    pub(super) async fn submit<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(Conn<'c>) -> BoxFut<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel::<Result<T, E>>();
        let job: JobFn = Box::new(move |conn, writes| {
            Box::pin(async move {
                match f(Conn::Sqlite { conn, writes }).await {
                    Ok(v) => Outcome::Done(Box::new(move |commit: Result<(), String>| {
                        let reply = match commit {
                            Ok(()) => Ok(v),
                            Err(msg) => Err(E::from(DbError::Sqlx(sqlx::Error::Protocol(msg)))),
                        };
                        let _ = reply_tx.send(reply);
                    })),
                    Err(e) => Outcome::Failed(Box::new(move || {
                        let _ = reply_tx.send(Err(e));
                    })),
                }
            })
        });
        self.tx
            .send(Msg::Job(job))
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

async fn run(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Msg>) {
    let mut group: Vec<JobFn> = Vec::with_capacity(MAX_GROUP);
    let mut stop: Option<oneshot::Sender<()>> = None;
    loop {
        match rx.recv().await {
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
        if !group.is_empty() {
            commit_group(&mut conn, group.drain(..)).await;
        }
        if let Some(s) = stop.take() {
            let _ = s.send(());
            break;
        }
    }
    let _ = sqlx::Connection::close(conn).await;
}

async fn script(conn: &mut SqliteConnection, sql: &'static str) -> Result<(), String> {
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Runs the jobs in one transaction, each in savepoint `j`, and delivers every result after
/// the commit.
async fn commit_group(conn: &mut SqliteConnection, jobs: impl Iterator<Item = JobFn>) {
    let mut done: Vec<Deliver> = Vec::new();
    if let Err(e) = script(conn, "BEGIN IMMEDIATE; SAVEPOINT j").await {
        tracing::error!(error = %e, "cannot begin a write transaction");
        for job in jobs {
            // Run nothing: report the failure to each waiting request.
            drop(job);
        }
        return;
    }
    let mut first = true;
    for job in jobs {
        if !first {
            // One round trip between jobs: close the previous savepoint, open the next.
            if let Err(e) = script(conn, "RELEASE j; SAVEPOINT j").await {
                tracing::error!(error = %e, "savepoint failed");
            }
        }
        first = false;
        let writes = AtomicU32::new(0);
        match job(conn, &writes).await {
            Outcome::Done(deliver) => done.push(deliver),
            Outcome::Failed(deliver) => {
                if writes.load(Ordering::Relaxed) > 0 {
                    // Undo what this job wrote; the savepoint stays open for the next job.
                    if let Err(e) = script(conn, "ROLLBACK TO j").await {
                        tracing::error!(error = %e, "rollback to savepoint failed");
                    }
                }
                deliver();
            }
        }
    }
    let commit = script(conn, "RELEASE j; COMMIT").await;
    if let Err(e) = &commit {
        tracing::error!(error = %e, "group commit failed");
        let _ = script(conn, "ROLLBACK").await;
    }
    for deliver in done {
        deliver(commit.clone());
    }
}
