//! The durable job queue: an outbox in the database (`_fb_jobs`).
//!
//! Why an outbox: work with side effects outside the database (sending mail, later push) must
//! happen if and only if the request that asked for it committed. [`enqueue`] therefore writes
//! the job inside the caller's transaction, and a background [`JobRunner`] executes committed
//! jobs afterwards, so a rolled-back request never sends anything and a crash or restart never
//! loses a job.
//!
//! Life of a job: `queued` → (claimed) `running` → `done`, or back to `queued` with an
//! exponential backoff after a transient failure, or `failed` (permanent failure, unknown kind,
//! or too many attempts) with the reason in `last_error`.
//!
//! Claiming sets `run_at` to the end of a lease, which the runner renews every [`RENEW`] while
//! the job runs: a `running` job whose lease expired (its worker died or hung) is claimed
//! again, so delivery is *at least once*, and a crash holds a job back for one short lease, not
//! for as long as the job may run. Every state change after a claim is
//! fenced by the attempt number, so a worker that lost its lease cannot overwrite the newer
//! attempt's outcome. Timestamps are computed here and passed as parameters (never `now()`) so
//! SQLite and PostgreSQL agree.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ferrobase_expr::Dialect;
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};

pub use futures::future::BoxFuture;

use crate::db::{ColType, Conn, Db, Param};
use crate::error::Error;

/// How long a claimed job belongs to its worker before another may claim it again, unless the
/// worker renews it: how long a crash (kill -9, a lost machine) delays the jobs it was running.
const LEASE: Duration = Duration::from_secs(30);
/// The runner extends the leases of its running jobs this often: six renewals per lease, so
/// only a worker stalled for most of a lease loses one.
const RENEW: Duration = Duration::from_secs(5);
/// A handler running longer than this is abandoned and retried.
const HANDLER_TIMEOUT: Duration = Duration::from_secs(240);
/// Jobs running at once; the runner claims more as soon as one finishes.
const CONCURRENT: usize = 16;
/// The runner looks for due jobs at least this often, even without a notification (retries
/// coming due, jobs enqueued by another replica).
const POLL: Duration = Duration::from_secs(1);
/// On shutdown, jobs still running after this are released back to the queue.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Enqueues a job in the caller's transaction: it exists iff the caller's write commits.
/// Call [`JobRunner::notify`] after the commit to have it run at once rather than at the next
/// poll.
pub async fn enqueue(c: &mut Conn<'_>, kind: &str, payload: &Value) -> Result<i64, Error> {
    enqueue_at(c, kind, payload, Utc::now()).await
}

/// Like [`enqueue`], but the job is not run before `run_at` (delayed work, deterministic tests).
pub async fn enqueue_at(
    c: &mut Conn<'_>,
    kind: &str,
    payload: &Value,
    run_at: DateTime<Utc>,
) -> Result<i64, Error> {
    let now = Utc::now();
    let row = c
        .fetch_one(
            "INSERT INTO _fb_jobs (kind, payload, status, attempts, run_at, created_at, updated_at) \
             VALUES ($1, $2, 'queued', 0, $3, $4, $4) RETURNING id",
            &[
                Param::from(kind),
                Param::Json(payload.clone()),
                Param::Time(run_at),
                Param::Time(now),
            ],
            &[ColType::Int],
        )
        .await?;
    row.and_then(|r| r.first().and_then(Param::as_i64))
        .ok_or_else(|| Error::internal("INSERT INTO _fb_jobs returned no id"))
}

/// What a handler says about a failed attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobError {
    /// Transient (network down, server busy): try again later, with backoff.
    Retry(String),
    /// Permanent (bad address, rejected message): trying again cannot help.
    Fail(String),
    /// Transient, and the other side said when to come back (`Retry-After`): the next attempt
    /// waits at least that long, or the backoff if that is longer.
    RetryAfter(String, Duration),
}

/// Executes the jobs of one kind.
///
/// Handlers must tolerate running the same job twice (delivery is at least once: a worker may
/// die after the side effect and before recording it).
pub trait JobHandler: Send + Sync {
    /// The `kind` of the jobs this handler runs.
    fn kind(&self) -> &'static str;
    /// Runs one attempt.
    fn run<'a>(&'a self, payload: &'a Value) -> BoxFuture<'a, Result<(), JobError>>;
    /// What to keep of the payload once the job is finished (done or failed). Payloads may hold
    /// secrets (emailed tokens), so by default nothing is kept.
    fn retain(&self, _payload: &Value) -> Value {
        Value::Object(serde_json::Map::new())
    }
}

/// Retry policy of a runner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failed attempt; doubles with each further attempt.
    pub base: Duration,
    /// Longest delay between two attempts.
    pub max_delay: Duration,
    /// Attempts after which a job that keeps failing transiently is marked `failed`.
    pub max_attempts: u32,
}

impl Default for Backoff {
    /// 2 s, 4 s, 8 s, … (capped at 1 h), 8 attempts: a few minutes of outage are absorbed
    /// without holding an emailed link past its usefulness.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(3600),
            max_attempts: 8,
        }
    }
}

/// Adds up to a quarter of `delay` at random, so jobs that failed together (a provider's
/// outage, a burst of 429s) do not all come back in the same instant.
fn with_jitter(delay: Duration) -> Duration {
    let quarter = u64::try_from(delay.as_millis() / 4).unwrap_or(u64::MAX);
    if quarter == 0 {
        return delay;
    }
    delay + Duration::from_millis(rand::random_range(0..=quarter))
}

impl Backoff {
    /// Delay before the next attempt, after `attempts` attempts have failed:
    /// `base * 2^attempts`, capped at `max_delay`.
    pub fn delay(&self, attempts: u32) -> Duration {
        let factor = 1u32.checked_shl(attempts.min(31)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.max_delay, |d| d.min(self.max_delay))
    }
}

/// State of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "done" => JobStatus::Done,
            "failed" => JobStatus::Failed,
            _ => return None,
        })
    }
}

/// A job as seen by tests and the admin API (the payload may hold secrets and is not shown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobInfo {
    pub id: i64,
    pub kind: String,
    pub status: JobStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub run_at: DateTime<Utc>,
}

/// The job with this id, if any.
pub async fn get(db: &Db, id: i64) -> Result<Option<JobInfo>, Error> {
    db.read(move |mut c| {
        Box::pin(async move {
            let row = c
                .fetch_one(
                    "SELECT id, kind, status, attempts, last_error, run_at FROM _fb_jobs WHERE id = $1",
                    &[Param::Int(id)],
                    &[
                        ColType::Int,
                        ColType::Text,
                        ColType::Text,
                        ColType::Int,
                        ColType::Text,
                        ColType::Time,
                    ],
                )
                .await?;
            let Some(mut r) = row else {
                return Ok(None);
            };
            let bad = || Error::internal(format!("unexpected row in _fb_jobs for id {id}"));
            let run_at = r.pop().and_then(|p| p.as_time()).ok_or_else(bad)?;
            let last_error = r.pop().and_then(Param::into_string);
            let attempts = r.pop().and_then(|p| p.as_i64()).ok_or_else(bad)?;
            let status = r
                .pop()
                .and_then(Param::into_string)
                .and_then(|s| JobStatus::parse(&s))
                .ok_or_else(bad)?;
            let kind = r.pop().and_then(Param::into_string).ok_or_else(bad)?;
            Ok(Some(JobInfo {
                id,
                kind,
                status,
                attempts,
                last_error,
                run_at,
            }))
        })
    })
    .await
}

/// Handle on the background task that runs due jobs. Cheap to clone; all clones control the
/// same task.
#[derive(Clone)]
pub struct JobRunner {
    inner: Arc<RunnerInner>,
}

struct RunnerInner {
    notify: Arc<Notify>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// Starts a runner with the default [`Backoff`].
pub fn spawn(db: Db, handlers: Vec<Arc<dyn JobHandler>>) -> JobRunner {
    spawn_with(db, handlers, Backoff::default())
}

/// Starts a runner with its own retry policy (tests use a millisecond base).
pub fn spawn_with(db: Db, handlers: Vec<Arc<dyn JobHandler>>, backoff: Backoff) -> JobRunner {
    let notify = Arc::new(Notify::new());
    let (stop, stop_rx) = watch::channel(false);
    let worker = Worker {
        db,
        handlers: handlers.into_iter().map(|h| (h.kind(), h)).collect(),
        backoff,
    };
    let task = tokio::spawn(Arc::new(worker).run(Arc::clone(&notify), stop_rx));
    JobRunner {
        inner: Arc::new(RunnerInner {
            notify,
            stop,
            task: Mutex::new(Some(task)),
        }),
    }
}

impl JobRunner {
    /// Wakes the runner to look for due jobs now (call after the enqueuing write committed).
    pub fn notify(&self) {
        self.inner.notify.notify_one();
    }

    /// Stops the runner: no new claims; running jobs get a short grace period, then the
    /// unfinished ones are put back in the queue. Idempotent; waits for the task to end, so call
    /// it before closing the database.
    pub async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        let task = match self.inner.task.lock() {
            Ok(mut t) => t.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "job runner task failed");
        }
    }
}

/// A claimed job.
struct Claimed {
    id: i64,
    kind: String,
    payload: Value,
    /// The attempt number this claim made (fences later updates).
    attempts: i64,
}

/// What to write back after an attempt.
enum Outcome {
    Done {
        retain: Value,
    },
    Retry {
        error: String,
        delay: Duration,
    },
    Failed {
        error: String,
        retain: Option<Value>,
    },
}

struct Worker {
    db: Db,
    handlers: HashMap<&'static str, Arc<dyn JobHandler>>,
    backoff: Backoff,
}

impl Worker {
    /// Keeps up to [`CONCURRENT`] jobs running, each in its own task, and claims more as soon
    /// as one finishes: a long job (a fan-out) never holds back the short ones it queues, and
    /// the work spreads over the runtime's threads.
    async fn run(self: Arc<Self>, notify: Arc<Notify>, mut stop: watch::Receiver<bool>) {
        let mut running: JoinSet<()> = JoinSet::new();
        // Task → (job id, attempt), to release what is still running at shutdown.
        let mut fences: HashMap<tokio::task::Id, (i64, i64)> = HashMap::new();
        let mut renew = tokio::time::interval(RENEW);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *stop.borrow() {
                break;
            }
            let free = CONCURRENT.saturating_sub(running.len());
            // Fewer due jobs than free slots: the queue is drained for now.
            let mut drained = true;
            if free > 0 {
                // Never one of ours again, even if a renewal came too late.
                let mine: Vec<i64> = fences.values().map(|(id, _)| *id).collect();
                match claim(&self.db, free as i64, &mine).await {
                    Ok(claimed) => {
                        drained = claimed.len() < free;
                        for job in claimed {
                            let fence = (job.id, job.attempts);
                            let worker = Arc::clone(&self);
                            let task = running.spawn(async move { worker.run_one(job).await });
                            fences.insert(task.id(), fence);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, cause = ?e.cause, "cannot claim jobs");
                    }
                }
            }
            // Not drained means the claim filled every slot, so the loop waits for a job to
            // end (or a stop) before it claims again.
            let full = running.len() >= CONCURRENT;
            tokio::select! {
                Some(ended) = running.join_next_with_id(), if !running.is_empty() => {
                    let task = match ended {
                        Ok((task, ())) => task,
                        Err(e) => {
                            tracing::error!(error = %e, "a job task failed");
                            e.id()
                        }
                    };
                    fences.remove(&task);
                }
                // Work queued here (or by a job that just ran) wakes the runner at once; a due
                // retry or another replica's job is found by the next poll.
                _ = notify.notified(), if drained && !full => {}
                _ = tokio::time::sleep(POLL), if drained && !full => {}
                _ = renew.tick(), if !fences.is_empty() => {
                    let leases: Vec<(i64, i64)> = fences.values().copied().collect();
                    if let Err(e) = renew_leases(&self.db, &leases).await {
                        tracing::warn!(error = %e, cause = ?e.cause, "cannot renew job leases");
                    }
                }
                r = stop.changed() => if r.is_err() { break },
            }
        }
        self.shut_down(running, fences).await;
    }

    /// On shutdown: waits up to [`SHUTDOWN_GRACE`] for the running jobs, then stops the rest
    /// and puts them back in the queue.
    async fn shut_down(
        &self,
        mut running: JoinSet<()>,
        mut fences: HashMap<tokio::task::Id, (i64, i64)>,
    ) {
        let drain = async {
            while let Some(ended) = running.join_next_with_id().await {
                let task = ended.map_or_else(|e| e.id(), |(task, ())| task);
                fences.remove(&task);
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_ok() {
            return;
        }
        running.abort_all();
        while let Some(ended) = running.join_next_with_id().await {
            // A job that finished on its own between the timeout and the abort keeps its
            // recorded outcome; only the aborted ones are released.
            if let Ok((task, ())) = ended {
                fences.remove(&task);
            }
        }
        for (id, attempts) in fences.into_values() {
            if let Err(e) = release(&self.db, id, attempts).await {
                tracing::warn!(job = id, error = %e, "cannot release a job on shutdown");
            }
        }
    }

    /// A transient failure: retried after the backoff (or `at_least`, if longer) unless the
    /// job is out of attempts.
    fn retry(
        &self,
        job: &Claimed,
        h: &dyn JobHandler,
        error: String,
        at_least: Duration,
    ) -> Outcome {
        let attempts = u32::try_from(job.attempts).unwrap_or(u32::MAX);
        if attempts >= self.backoff.max_attempts {
            Outcome::Failed {
                error,
                retain: Some(h.retain(&job.payload)),
            }
        } else {
            Outcome::Retry {
                error,
                delay: with_jitter(self.backoff.delay(attempts)).max(at_least),
            }
        }
    }

    async fn run_one(&self, job: Claimed) {
        let outcome = match self.handlers.get(job.kind.as_str()) {
            None => Outcome::Failed {
                error: format!("no handler for job kind `{}`", job.kind),
                retain: None,
            },
            Some(h) => {
                let result = tokio::time::timeout(HANDLER_TIMEOUT, h.run(&job.payload))
                    .await
                    .unwrap_or_else(|_| {
                        Err(JobError::Retry(format!(
                            "timed out after {}s",
                            HANDLER_TIMEOUT.as_secs()
                        )))
                    });
                match result {
                    Ok(()) => Outcome::Done {
                        retain: h.retain(&job.payload),
                    },
                    Err(JobError::Fail(error)) => Outcome::Failed {
                        error,
                        retain: Some(h.retain(&job.payload)),
                    },
                    Err(JobError::Retry(error)) => {
                        self.retry(&job, h.as_ref(), error, Duration::ZERO)
                    }
                    Err(JobError::RetryAfter(error, at_least)) => {
                        self.retry(&job, h.as_ref(), error, at_least)
                    }
                }
            }
        };
        match &outcome {
            Outcome::Done { .. } => tracing::debug!(job = job.id, kind = %job.kind, "job done"),
            Outcome::Retry { error, delay } => tracing::info!(
                job = job.id, kind = %job.kind, attempt = job.attempts, %error,
                retry_in_ms = delay.as_millis() as u64, "job will be retried"
            ),
            Outcome::Failed { error, .. } => tracing::warn!(
                job = job.id, kind = %job.kind, attempt = job.attempts, %error, "job failed"
            ),
        }
        if let Err(e) = finish(&self.db, job.id, job.attempts, outcome).await {
            // The lease expires and the job is claimed again: at least once.
            tracing::warn!(job = job.id, error = %e, cause = ?e.cause, "cannot record a job outcome");
        }
    }
}

/// Claims up to `limit` due jobs: queued ones whose time has come and running ones whose lease
/// expired. PostgreSQL skips rows other replicas are claiming; SQLite has one writer anyway.
async fn claim(db: &Db, limit: i64, exclude: &[i64]) -> Result<Vec<Claimed>, Error> {
    let now = Utc::now();
    // A read first: an idle queue costs no write transaction per poll (on SQLite every write
    // goes through the one writer).
    let due = db
        .read(move |mut c| {
            Box::pin(async move {
                c.fetch_one(
                    "SELECT id FROM _fb_jobs WHERE status IN ('queued', 'running') AND run_at <= $1 LIMIT 1",
                    &[Param::Time(now)],
                    &[ColType::Int],
                )
                .await
                .map_err(Error::from)
            })
        })
        .await?;
    if due.is_none() {
        return Ok(Vec::new());
    }
    let lease_end = now + chrono::Duration::from_std(LEASE).map_err(Error::internal)?;
    let lock = match db.dialect() {
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        Dialect::Sqlite => "",
    };
    let not_mine = if exclude.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = (0..exclude.len()).map(|i| format!("${}", i + 4)).collect();
        format!(" AND id NOT IN ({})", list.join(", "))
    };
    let sql = format!(
        "UPDATE _fb_jobs SET status = 'running', attempts = attempts + 1, updated_at = $1, \
         run_at = $2 WHERE id IN (SELECT id FROM _fb_jobs WHERE status IN ('queued', 'running') \
         AND run_at <= $1{not_mine} ORDER BY run_at, id LIMIT $3{lock}) \
         RETURNING id, kind, payload, attempts"
    );
    let mut params = vec![Param::Time(now), Param::Time(lease_end), Param::Int(limit)];
    params.extend(exclude.iter().map(|id| Param::Int(*id)));
    let rows = db
        .write(move |mut c| {
            Box::pin(async move {
                c.fetch(
                    &sql,
                    &params,
                    &[ColType::Int, ColType::Text, ColType::Json, ColType::Int],
                )
                .await
                .map_err(Error::from)
            })
        })
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut it = row.into_iter();
        match (it.next(), it.next(), it.next(), it.next()) {
            (
                Some(Param::Int(id)),
                Some(Param::Text(kind)),
                payload,
                Some(Param::Int(attempts)),
            ) => {
                let payload = match payload {
                    Some(Param::Json(v)) => v,
                    _ => Value::Null,
                };
                out.push(Claimed {
                    id,
                    kind,
                    payload,
                    attempts,
                })
            }
            _ => return Err(Error::internal("unexpected row claimed from _fb_jobs")),
        }
    }
    out.sort_by_key(|j| j.id);
    Ok(out)
}

/// Extends the leases of these `(id, attempt)`s, unless they were claimed again since.
async fn renew_leases(db: &Db, leases: &[(i64, i64)]) -> Result<(), Error> {
    let now = Utc::now();
    let lease_end = now + chrono::Duration::from_std(LEASE).map_err(Error::internal)?;
    let pairs: Vec<String> = (0..leases.len())
        .map(|i| format!("(id = ${} AND attempts = ${})", 2 * i + 2, 2 * i + 3))
        .collect();
    let sql = format!(
        "UPDATE _fb_jobs SET run_at = $1 WHERE status = 'running' AND ({})",
        pairs.join(" OR ")
    );
    let mut params = vec![Param::Time(lease_end)];
    for (id, attempts) in leases {
        params.extend([Param::Int(*id), Param::Int(*attempts)]);
    }
    db.write(move |mut c| {
        Box::pin(async move { c.execute(&sql, &params).await.map_err(Error::from) })
    })
    .await
    .map(|_| ())
}

/// Records the outcome of attempt `attempts` of job `id`, unless the job was claimed again since.
async fn finish(db: &Db, id: i64, attempts: i64, outcome: Outcome) -> Result<(), Error> {
    let now = Utc::now();
    let (sql, params): (&'static str, Vec<Param>) = match outcome {
        Outcome::Done { retain } => (
            "UPDATE _fb_jobs SET status = 'done', last_error = NULL, payload = $3, updated_at = $4 \
             WHERE id = $1 AND attempts = $2 AND status = 'running'",
            vec![Param::Json(retain), Param::Time(now)],
        ),
        Outcome::Retry { error, delay } => {
            let run_at = now + chrono::Duration::from_std(delay).map_err(Error::internal)?;
            (
                "UPDATE _fb_jobs SET status = 'queued', last_error = $3, run_at = $4, updated_at = $5 \
                 WHERE id = $1 AND attempts = $2 AND status = 'running'",
                vec![Param::Text(error), Param::Time(run_at), Param::Time(now)],
            )
        }
        Outcome::Failed {
            error,
            retain: Some(retain),
        } => (
            "UPDATE _fb_jobs SET status = 'failed', last_error = $3, payload = $4, updated_at = $5 \
             WHERE id = $1 AND attempts = $2 AND status = 'running'",
            vec![Param::Text(error), Param::Json(retain), Param::Time(now)],
        ),
        Outcome::Failed {
            error,
            retain: None,
        } => (
            "UPDATE _fb_jobs SET status = 'failed', last_error = $3, updated_at = $4 \
             WHERE id = $1 AND attempts = $2 AND status = 'running'",
            vec![Param::Text(error), Param::Time(now)],
        ),
    };
    let mut all = vec![Param::Int(id), Param::Int(attempts)];
    all.extend(params);
    let n = db
        .write(move |mut c| {
            Box::pin(async move { c.execute(sql, &all).await.map_err(Error::from) })
        })
        .await?;
    if n == 0 {
        tracing::warn!(
            job = id,
            attempt = attempts,
            "job was claimed again before its outcome was recorded"
        );
    }
    Ok(())
}

/// Puts an unfinished job back in the queue, due now, without counting the interrupted attempt.
async fn release(db: &Db, id: i64, attempts: i64) -> Result<(), Error> {
    let now = Utc::now();
    db.write(move |mut c| {
        Box::pin(async move {
            c.execute(
                "UPDATE _fb_jobs SET status = 'queued', attempts = attempts - 1, run_at = $3, \
                 updated_at = $3 WHERE id = $1 AND attempts = $2 AND status = 'running'",
                &[Param::Int(id), Param::Int(attempts), Param::Time(now)],
            )
            .await
            .map_err(Error::from)
        })
    })
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_adds_at_most_a_quarter() {
        let base = Duration::from_millis(1000);
        for _ in 0..100 {
            let d = with_jitter(base);
            assert!(d >= base && d <= Duration::from_millis(1250), "{d:?}");
        }
        assert_eq!(
            with_jitter(Duration::from_millis(3)),
            Duration::from_millis(3)
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff::default();
        assert_eq!(b.delay(0), Duration::from_secs(1));
        assert_eq!(b.delay(1), Duration::from_secs(2));
        assert_eq!(b.delay(3), Duration::from_secs(8));
        assert_eq!(b.delay(11), Duration::from_secs(2048));
        assert_eq!(b.delay(12), Duration::from_secs(3600), "capped at 1h");
        assert_eq!(b.delay(40), Duration::from_secs(3600), "no overflow");
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(3600));
        let fast = Backoff {
            base: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_attempts: 3,
        };
        assert_eq!(fast.delay(1), Duration::from_millis(20));
        assert_eq!(fast.delay(3), Duration::from_millis(50));
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Done,
            JobStatus::Failed,
        ] {
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(JobStatus::parse("nope"), None);
    }
}
