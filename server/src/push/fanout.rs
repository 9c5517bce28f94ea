//! The two job kinds behind a push: fan-out into deliveries, and sending a set of them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use ferrobase_plugin_api::{Device, Message, Outcome, Retry};
use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::jobs::PushRequest;
use super::prefs::QuietHours;
use super::{FANOUT, Push, SEND};
use crate::db::{ColType, Conn, Param};
use crate::error::Error;
use crate::jobs::{BoxFuture, JobError, JobHandler};

/// Outcomes recorded per transaction while a send job runs: a crash re-sends at most the
/// deliveries of one unrecorded batch (delivery is at least once towards the provider).
const RECORD_BATCH: usize = 256;

fn retry(e: Error) -> JobError {
    JobError::Retry(e.cause.clone().unwrap_or_else(|| e.detail.clone()))
}

/// `$start, $start+1, …` for an IN list of `n` values.
fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A push job's stored state.
struct Stored {
    request: PushRequest,
    created_at: DateTime<Utc>,
    cursor: String,
    fanout_done: bool,
}

async fn load(c: &mut Conn<'_>, id: &str) -> Result<Option<Stored>, Error> {
    let Some(row) = c
        .fetch_one(
            "SELECT request, created_at, fanout_cursor, fanout_done FROM _fb_push_jobs \
             WHERE id = $1",
            &[Param::from(id)],
            &[ColType::Json, ColType::Time, ColType::Text, ColType::Bool],
        )
        .await?
    else {
        return Ok(None);
    };
    let mut it = row.into_iter();
    let request = match it.next() {
        Some(Param::Json(v)) => serde_json::from_value(v).map_err(Error::internal)?,
        _ => return Err(Error::internal("push job without its request")),
    };
    Ok(Some(Stored {
        request,
        created_at: it.next().and_then(|p| p.as_time()).unwrap_or_else(Utc::now),
        cursor: it.next().and_then(Param::into_string).unwrap_or_default(),
        fanout_done: matches!(it.next(), Some(Param::Bool(true))),
    }))
}

/// Marks the job done once its fan-out finished and no delivery is left to send.
///
/// Every send job calls this when it ends, so it must be cheap while the push is still going:
/// a read first (no write transaction, which on SQLite would queue behind every other write),
/// and it looks for a queued delivery from the highest device id down. Send jobs run roughly
/// in device order, so while the push is in progress a queued row sits near that end and the
/// probe stops after a few rows instead of walking every delivery already sent. The update
/// repeats the condition, so a race with another finishing send job is harmless.
async fn finish_if_complete(push: &Push, id: &str) -> Result<(), Error> {
    let job = id.to_owned();
    let complete = push
        .db
        .read(move |mut c| {
            Box::pin(async move {
                let fanned_out = c
                    .fetch_one(
                        "SELECT id FROM _fb_push_jobs WHERE id = $1 AND fanout_done = $2 \
                         AND status <> 'done'",
                        &[Param::Text(job.clone()), Param::Bool(true)],
                        &[ColType::Text],
                    )
                    .await?
                    .is_some();
                if !fanned_out {
                    return Ok::<_, Error>(false);
                }
                let queued = c
                    .fetch_one(
                        "SELECT device_id FROM _fb_push_deliveries WHERE job_id = $1 \
                         AND status = 'queued' ORDER BY device_id DESC LIMIT 1",
                        &[Param::Text(job)],
                        &[ColType::Text],
                    )
                    .await?;
                Ok(queued.is_none())
            })
        })
        .await?;
    if !complete {
        return Ok(());
    }
    let id = id.to_owned();
    push.db
        .write(move |mut c| {
            Box::pin(async move {
                c.execute(
                    "UPDATE _fb_push_jobs SET status = 'done', finished_at = $2 \
                     WHERE id = $1 AND fanout_done = $3 AND status <> 'done' AND NOT EXISTS \
                     (SELECT 1 FROM _fb_push_deliveries WHERE job_id = $1 AND status = 'queued')",
                    &[Param::Text(id), Param::Time(Utc::now()), Param::Bool(true)],
                )
                .await
                .map_err(Error::from)
            })
        })
        .await
        .map(|_| ())
}

/// A device the fan-out found.
struct Found {
    id: String,
    user_id: String,
    platform: String,
    timezone: Option<String>,
}

/// One page of the job's target devices after `cursor`, in id order.
async fn page(
    c: &mut Conn<'_>,
    req: &PushRequest,
    cursor: &str,
    limit: usize,
) -> Result<Vec<Found>, Error> {
    const SELECT: &str = "SELECT d.id, d.user_id, d.platform, d.timezone FROM _fb_devices d";
    let limit = Param::Int(i64::try_from(limit).unwrap_or(i64::MAX));
    let (sql, mut params) = if let Some(topic) = &req.to.topic {
        (
            format!(
                "{SELECT} JOIN _fb_device_topics t ON t.device_id = d.id WHERE t.topic = $1 \
                 AND t.device_id > $2 AND d.active = $3 ORDER BY t.device_id LIMIT $4"
            ),
            vec![Param::Text(topic.clone())],
        )
    } else {
        let (column, ids) = match (&req.to.users, &req.to.devices) {
            (Some(users), _) => ("d.user_id", users),
            (None, Some(devices)) => ("d.id", devices),
            (None, None) => return Ok(Vec::new()),
        };
        let mut unique: Vec<&String> = ids.iter().collect();
        unique.sort();
        unique.dedup();
        (
            format!(
                "{SELECT} WHERE d.id > $1 AND d.active = $2 AND {column} IN ({}) \
                 ORDER BY d.id LIMIT $3",
                placeholders(4, unique.len())
            ),
            unique.into_iter().map(|s| Param::Text(s.clone())).collect(),
        )
    };
    let lead = vec![Param::Text(cursor.to_owned()), Param::Bool(true), limit];
    let params = if req.to.topic.is_some() {
        params.extend(lead);
        params
    } else {
        let mut all = lead;
        all.append(&mut params);
        all
    };
    Ok(c.fetch(
        &sql,
        &params,
        &[ColType::Text, ColType::Text, ColType::Text, ColType::Text],
    )
    .await?
    .into_iter()
    .filter_map(|r| {
        let mut it = r.into_iter();
        Some(Found {
            id: it.next()?.into_string()?,
            user_id: it.next()?.into_string()?,
            platform: it.next()?.into_string()?,
            timezone: it.next().and_then(Param::into_string),
        })
    })
    .collect())
}

/// For a categorised push: the page's users who opted out, and their quiet hours.
async fn choices(
    c: &mut Conn<'_>,
    category: &str,
    users: &[&str],
) -> Result<(HashSet<String>, HashMap<String, QuietHours>), Error> {
    let default = super::prefs::categories(c)
        .await?
        .get(category)
        .is_none_or(|cat| cat.default);
    let in_list = placeholders(2, users.len());
    let mut params = vec![Param::from(category)];
    params.extend(users.iter().map(|u| Param::from(*u)));
    let chosen: HashMap<String, bool> = c
        .fetch(
            &format!(
                "SELECT user_id, enabled FROM _fb_push_prefs WHERE category = $1 \
                 AND user_id IN ({in_list})"
            ),
            &params,
            &[ColType::Text, ColType::Bool],
        )
        .await
        .map(super::prefs::choices)?
        .collect();
    let opted_out = users
        .iter()
        .filter(|u| !chosen.get(**u).copied().unwrap_or(default))
        .map(|u| (*u).to_owned())
        .collect();
    let quiet = c
        .fetch(
            &format!(
                "SELECT user_id, start_min, end_min FROM _fb_push_quiet WHERE user_id IN ({})",
                placeholders(1, users.len())
            ),
            &params[1..],
            &[ColType::Text, ColType::Int, ColType::Int],
        )
        .await?
        .into_iter()
        .filter_map(|r| {
            let mut it = r.into_iter();
            let user = it.next()?.into_string()?;
            let start = u16::try_from(it.next()?.as_i64()?).ok()?;
            let end = u16::try_from(it.next()?.as_i64()?).ok()?;
            Some((user, QuietHours { start, end }))
        })
        .collect();
    Ok((opted_out, quiet))
}

/// Runs `push.fanout` jobs.
pub struct FanoutHandler(pub Arc<Push>);

impl JobHandler for FanoutHandler {
    fn kind(&self) -> &'static str {
        FANOUT
    }

    fn run<'a>(&'a self, payload: &'a Value) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let id = payload["push_job"]
                .as_str()
                .ok_or_else(|| JobError::Fail("payload without push_job".into()))?;
            fanout(&self.0, id).await
        })
    }

    fn retain(&self, payload: &Value) -> Value {
        payload.clone()
    }
}

async fn fanout(push: &Push, id: &str) -> Result<(), JobError> {
    let owned = id.to_owned();
    let Some(stored) = push
        .db
        .read(move |mut c| Box::pin(async move { load(&mut c, &owned).await }))
        .await
        .map_err(retry)?
    else {
        return Err(JobError::Fail(format!("push job {id} does not exist")));
    };
    let req = Arc::new(stored.request);
    let mut cursor = stored.cursor;
    let mut done = stored.fanout_done;
    let size = push.settings.page.max(1);
    while !done {
        let (r, from) = (Arc::clone(&req), cursor.clone());
        let found = push
            .db
            .read(move |mut c| {
                Box::pin(async move {
                    let found = page(&mut c, &r, &from, size).await?;
                    let choices = match &r.category {
                        Some(cat) if !found.is_empty() => {
                            let mut users: Vec<&str> =
                                found.iter().map(|f| f.user_id.as_str()).collect();
                            users.sort_unstable();
                            users.dedup();
                            Some(choices(&mut c, cat, &users).await?)
                        }
                        _ => None,
                    };
                    Ok::<_, Error>((found, choices))
                })
            })
            .await
            .map_err(retry)?;
        let (found, choices) = found;
        done = found.len() < size;
        let Some(last) = found.last().map(|f| f.id.clone()) else {
            mark_fanned_out(push, id, &cursor).await.map_err(retry)?;
            break;
        };
        let now = Utc::now();
        // (device, platform, status, not_before)
        let mut rows: Vec<(String, String, &'static str, Option<DateTime<Utc>>)> =
            Vec::with_capacity(found.len());
        let mut due: BTreeMap<DateTime<Utc>, Vec<String>> = BTreeMap::new();
        for f in found {
            let (out, quiet) = match &choices {
                Some((out, quiet)) => (out.contains(&f.user_id), quiet.get(&f.user_id)),
                None => (false, None),
            };
            if out {
                rows.push((f.id, f.platform, "opted_out", None));
                continue;
            }
            let release = quiet.map(|q| {
                let tz = f
                    .timezone
                    .as_deref()
                    .and_then(|t| t.parse::<chrono_tz::Tz>().ok())
                    .unwrap_or(chrono_tz::UTC);
                q.release_at(now, tz)
            });
            let not_before = release.filter(|t| *t > now);
            due.entry(not_before.unwrap_or(now))
                .or_default()
                .push(f.id.clone());
            rows.push((f.id, f.platform, "queued", not_before));
        }
        let (job, prev, next) = (id.to_owned(), cursor.clone(), last.clone());
        let advanced = push
            .db
            .write(move |mut c| {
                Box::pin(async move {
                    // Fenced by the cursor: a second runner of this job (an expired lease)
                    // cannot add the same page again.
                    let n = c
                        .execute(
                            "UPDATE _fb_push_jobs SET status = 'running', fanout_cursor = $2, \
                             fanout_done = $3 WHERE id = $1 AND COALESCE(fanout_cursor, '') = $4",
                            &[
                                Param::Text(job.clone()),
                                Param::Text(next),
                                Param::Bool(done),
                                Param::Text(prev),
                            ],
                        )
                        .await?;
                    if n == 0 {
                        return Ok::<_, Error>(false);
                    }
                    insert_deliveries(&mut c, &job, &rows, now).await?;
                    for (at, devices) in due {
                        crate::jobs::enqueue_at(
                            &mut c,
                            SEND,
                            &json!({"push_job": job, "devices": devices}),
                            at,
                        )
                        .await?;
                    }
                    Ok(true)
                })
            })
            .await
            .map_err(retry)?;
        if !advanced {
            return Err(JobError::Retry(
                "another worker advanced this fan-out; resuming from its cursor".into(),
            ));
        }
        push.wake_runner();
        cursor = last;
    }
    finish_if_complete(push, id).await.map_err(retry)
}

/// The last page was empty: the fan-out is complete at `cursor`.
async fn mark_fanned_out(push: &Push, id: &str, cursor: &str) -> Result<(), Error> {
    let (id, cursor) = (id.to_owned(), cursor.to_owned());
    push.db
        .write(move |mut c| {
            Box::pin(async move {
                c.execute(
                    "UPDATE _fb_push_jobs SET status = 'running', fanout_done = $2 \
                     WHERE id = $1 AND COALESCE(fanout_cursor, '') = $3",
                    &[Param::Text(id), Param::Bool(true), Param::Text(cursor)],
                )
                .await
                .map_err(Error::from)
            })
        })
        .await
        .map(|_| ())
}

async fn insert_deliveries(
    c: &mut Conn<'_>,
    job: &str,
    rows: &[(String, String, &'static str, Option<DateTime<Utc>>)],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    // 200 rows x 4 values (plus the job and the time) per statement stays far below both
    // dialects' parameter limits.
    for chunk in rows.chunks(200) {
        let mut sql = String::from(
            "INSERT INTO _fb_push_deliveries \
             (job_id, device_id, platform, status, not_before, updated_at) VALUES ",
        );
        let mut params = Vec::with_capacity(chunk.len() * 4 + 2);
        params.push(Param::from(job));
        params.push(Param::Time(now));
        for (i, (device, platform, status, not_before)) in chunk.iter().enumerate() {
            let n = 3 + i * 4;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "($1, ${n}, ${}, ${}, ${}, $2)",
                n + 1,
                n + 2,
                n + 3
            ));
            params.extend([
                Param::Text(device.clone()),
                Param::Text(platform.clone()),
                Param::from(*status),
                not_before.map_or(Param::NullOf(ColType::Time), Param::Time),
            ]);
        }
        sql.push_str(" ON CONFLICT (job_id, device_id) DO NOTHING");
        c.execute(&sql, &params).await?;
    }
    Ok(())
}

/// Runs `push.send` jobs.
pub struct SendHandler(pub Arc<Push>);

impl JobHandler for SendHandler {
    fn kind(&self) -> &'static str {
        SEND
    }

    fn run<'a>(&'a self, payload: &'a Value) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let id = payload["push_job"]
                .as_str()
                .ok_or_else(|| JobError::Fail("payload without push_job".into()))?;
            let devices: Vec<String> = payload["devices"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            send(&self.0, id, devices).await
        })
    }

    fn retain(&self, payload: &Value) -> Value {
        json!({"push_job": payload["push_job"]})
    }
}

/// A delivery still to be made.
struct Pending {
    device_id: String,
    platform: String,
    attempts: i64,
    /// `None`: the device was removed since the fan-out.
    token: Option<String>,
    active: bool,
}

/// What to record for one delivery.
enum Record {
    Final {
        status: &'static str,
        provider_id: Option<String>,
        error: Option<String>,
        /// False when nothing was sent (device gone, expired, no provider).
        attempted: bool,
    },
    /// Still queued, with the reason of this failed attempt.
    Again { error: String },
    /// A dead token: the delivery is final and the device deactivated.
    Dead { token: String, reason: String },
}

/// A stable UUID per job × device: APNs takes it as `apns-id`, so a resend after a crash
/// carries the same id.
fn delivery_id(job: &str, device: &str) -> String {
    let digest = Sha256::digest(format!("{job}/{device}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::new_v8(bytes).to_string()
}

async fn send(push: &Push, id: &str, devices: Vec<String>) -> Result<(), JobError> {
    if devices.is_empty() {
        return Ok(());
    }
    let job = id.to_owned();
    let loaded = push
        .db
        .read(move |mut c| {
            Box::pin(async move {
                let Some(stored) = load(&mut c, &job).await? else {
                    return Ok::<_, Error>(None);
                };
                let mut params = vec![Param::Text(job.clone()), Param::Bool(true)];
                params.extend(devices.iter().map(|d| Param::Text(d.clone())));
                let rows = c
                    .fetch(
                        &format!(
                            "SELECT dl.device_id, dl.platform, dl.attempts, d.token, \
                             (d.active = $2) FROM _fb_push_deliveries dl \
                             LEFT JOIN _fb_devices d ON d.id = dl.device_id \
                             WHERE dl.job_id = $1 AND dl.status = 'queued' \
                             AND dl.device_id IN ({})",
                            placeholders(3, devices.len())
                        ),
                        &params,
                        &[
                            ColType::Text,
                            ColType::Text,
                            ColType::Int,
                            ColType::Text,
                            ColType::Bool,
                        ],
                    )
                    .await?;
                let pending: Vec<Pending> = rows
                    .into_iter()
                    .filter_map(|r| {
                        let mut it = r.into_iter();
                        Some(Pending {
                            device_id: it.next()?.into_string()?,
                            platform: it.next()?.into_string()?,
                            attempts: it.next()?.as_i64().unwrap_or(0),
                            token: it.next().and_then(Param::into_string),
                            active: matches!(it.next(), Some(Param::Bool(true))),
                        })
                    })
                    .collect();
                Ok(Some((stored, pending)))
            })
        })
        .await
        .map_err(retry)?;
    let Some((stored, pending)) = loaded else {
        return Err(JobError::Fail(format!("push job {id} does not exist")));
    };
    let message = stored.request.message(stored.created_at);
    let started = Utc::now();
    let expired = message
        .expires_at
        .is_some_and(|t| t <= SystemTime::from(started));
    let max_attempts = i64::from(push.settings.max_attempts.max(1));
    let mut wait = Duration::ZERO;
    let mut again = 0usize;
    let outcomes = futures::stream::iter(pending)
        .map(|p| {
            let message = &message;
            async move {
                let record = deliver(push, id, &p, message, expired).await;
                (p, record)
            }
        })
        .buffer_unordered(push.settings.concurrency.max(1));
    let mut chunks = outcomes.ready_chunks(RECORD_BATCH);
    while let Some(chunk) = chunks.next().await {
        let mut batch = Vec::with_capacity(chunk.len());
        for (p, (record, retry_after)) in chunk {
            let record = match record {
                Record::Again { error } if p.attempts + 1 >= max_attempts => Record::Final {
                    status: "failed",
                    provider_id: None,
                    error: Some(format!("{error} (gave up after {max_attempts} attempts)")),
                    attempted: true,
                },
                Record::Again { error } => {
                    again += 1;
                    wait = wait.max(retry_after.unwrap_or(Duration::ZERO));
                    Record::Again { error }
                }
                other => other,
            };
            batch.push((p.device_id, record));
        }
        record(push, id, batch, started).await.map_err(retry)?;
    }
    finish_if_complete(push, id).await.map_err(retry)?;
    if again > 0 {
        return Err(JobError::RetryAfter(
            format!("{again} deliveries failed transiently"),
            wait,
        ));
    }
    Ok(())
}

/// One delivery attempt (or its final outcome without one), with the provider's `Retry-After`.
async fn deliver(
    push: &Push,
    job: &str,
    p: &Pending,
    message: &Message,
    expired: bool,
) -> (Record, Option<Duration>) {
    let fail = |error: &str| Record::Final {
        status: "failed",
        provider_id: None,
        error: Some(error.to_owned()),
        attempted: false,
    };
    let Some(token) = &p.token else {
        return (fail("device_removed"), None);
    };
    if !p.active {
        return (fail("device_inactive"), None);
    }
    if expired {
        return (fail("expired"), None);
    }
    let Some(provider) = push.provider_for(&p.platform) else {
        return (fail("provider_not_configured"), None);
    };
    let device = Device {
        platform: p.platform.clone(),
        token: token.clone(),
    };
    let mut message = message.clone();
    message.delivery_id = delivery_id(job, &p.device_id);
    match provider.send(&device, &message).await {
        Outcome::Sent { provider_id } => (
            Record::Final {
                status: "sent",
                provider_id,
                error: None,
                attempted: true,
            },
            None,
        ),
        Outcome::InvalidToken { reason } => (
            Record::Dead {
                token: token.clone(),
                reason,
            },
            None,
        ),
        Outcome::Failed {
            reason,
            retry: Retry::Never,
        } => (
            Record::Final {
                status: "failed",
                provider_id: None,
                error: Some(reason),
                attempted: true,
            },
            None,
        ),
        Outcome::Failed {
            reason,
            retry: Retry::Later(after),
        } => (Record::Again { error: reason }, after),
    }
}

/// Records a batch of outcomes in one transaction.
async fn record(
    push: &Push,
    job: &str,
    batch: Vec<(String, Record)>,
    sent_at: DateTime<Utc>,
) -> Result<(), Error> {
    let job = job.to_owned();
    push.db
        .write(move |mut c| {
            Box::pin(async move {
                let now = Utc::now();
                for (device, r) in batch {
                    let (status, provider_id, error, attempted) = match r {
                        Record::Final {
                            status,
                            provider_id,
                            error,
                            attempted,
                        } => (status, provider_id, error, attempted),
                        Record::Again { error } => ("queued", None, Some(error), true),
                        Record::Dead { token, reason } => {
                            super::devices::deactivate(&mut c, &device, &token, &reason, sent_at)
                                .await?;
                            ("invalid_token", None, Some(reason), true)
                        }
                    };
                    c.execute(
                        "UPDATE _fb_push_deliveries SET status = $3, attempts = attempts + $7, \
                         provider_id = $4, error = $5, updated_at = $6 \
                         WHERE job_id = $1 AND device_id = $2 AND status = 'queued'",
                        &[
                            Param::Text(job.clone()),
                            Param::Text(device),
                            Param::from(status),
                            provider_id.map_or(Param::NullOf(ColType::Text), Param::Text),
                            error.map_or(Param::NullOf(ColType::Text), Param::Text),
                            Param::Time(now),
                            Param::Int(i64::from(attempted)),
                        ],
                    )
                    .await?;
                }
                Ok::<_, Error>(())
            })
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_are_stable_uuids() {
        let a = delivery_id("job", "dev");
        assert_eq!(a, delivery_id("job", "dev"));
        assert_ne!(a, delivery_id("job", "dev2"));
        assert!(uuid::Uuid::parse_str(&a).is_ok());
    }

    #[test]
    fn placeholders_number_from_start() {
        assert_eq!(placeholders(3, 3), "$3, $4, $5");
        assert_eq!(placeholders(1, 0), "");
    }
}
