//! Push jobs: what `POST /v1/push` accepts, how it is checked before anything is queued, and
//! the job's status with its per-device outcomes.

use std::collections::BTreeMap;
use std::time::{Duration as StdDuration, SystemTime};

use chrono::{DateTime, Duration, Utc};
use ferrobase_plugin_api::{Message, Priority};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::prefs::Categories;
use super::time;
use crate::db::{ColType, Conn, Param};
use crate::error::Error;

/// Users or devices one push may name.
pub const MAX_TARGETS: usize = 10_000;
const MAX_TITLE: usize = 256;
const MAX_BODY: usize = 4096;
const MAX_DATA_BYTES: usize = 4096;
const MAX_COLLAPSE_ID: usize = 64;
/// 28 days, the longest either provider stores a notification for an offline device.
pub const MAX_TTL_SECONDS: u64 = 28 * 24 * 3600;
/// How far ahead `send_at` may lie.
const MAX_SCHEDULE_AHEAD: Duration = Duration::days(30);
/// Clock skew tolerated for a `send_at` just in the past.
const PAST_TOLERANCE: Duration = Duration::minutes(1);

/// Who a push goes to: exactly one of the three.
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushTarget {
    /// Every active device of these users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<String>>,
    /// Every active device subscribed to this topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// These devices (ids from the registry), if active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
}

/// `POST /v1/push`.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    pub to: PushTarget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Custom key/values for the app (strings on FCM: other values are sent as JSON text).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
    /// A category declared in `push.toml`; none = transactional (ignores opt-outs and quiet
    /// hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Pushes with the same collapse id replace each other on the device (≤ 64 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collapse_id: Option<String>,
    /// Seconds the providers keep it for an offline device (1 s to 28 days), counted from when
    /// it is due; attempts after it end `failed` with `expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// `high` (default) or `normal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Send later (RFC 3339, at most 30 days ahead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<DateTime<Utc>>,
}

impl PushRequest {
    /// Every problem found without the database (the category is checked by [`check_category`]).
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), Error> {
        let mut errors = BTreeMap::new();
        let t = &self.to;
        let named = [t.users.is_some(), t.topic.is_some(), t.devices.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if named != 1 {
            errors.insert(
                "to".into(),
                "name exactly one of users, topic or devices".into(),
            );
        }
        for (field, list) in [("to.users", &t.users), ("to.devices", &t.devices)] {
            if let Some(list) = list {
                if list.is_empty() || list.len() > MAX_TARGETS {
                    errors.insert(field.into(), format!("1 to {MAX_TARGETS} ids"));
                } else if list.iter().any(|id| id.is_empty() || id.len() > 64) {
                    errors.insert(field.into(), "ids are 1 to 64 characters".into());
                }
            }
        }
        if let Some(topic) = &t.topic
            && !super::devices::valid_topic(topic)
        {
            errors.insert("to.topic".into(), "not a topic name".into());
        }
        if self.title.is_none() && self.body.is_none() && self.data.is_empty() {
            errors.insert("body".into(), "a push needs a title, a body or data".into());
        }
        if self
            .title
            .as_ref()
            .is_some_and(|s| s.chars().count() > MAX_TITLE)
        {
            errors.insert("title".into(), format!("at most {MAX_TITLE} characters"));
        }
        if self
            .body
            .as_ref()
            .is_some_and(|s| s.chars().count() > MAX_BODY)
        {
            errors.insert("body".into(), format!("at most {MAX_BODY} characters"));
        }
        if Value::Object(self.data.clone()).to_string().len() > MAX_DATA_BYTES {
            errors.insert(
                "data".into(),
                format!("at most {MAX_DATA_BYTES} bytes as JSON"),
            );
        }
        if self
            .collapse_id
            .as_ref()
            .is_some_and(|c| c.is_empty() || c.len() > MAX_COLLAPSE_ID)
        {
            errors.insert(
                "collapse_id".into(),
                format!("1 to {MAX_COLLAPSE_ID} bytes"),
            );
        }
        if self
            .ttl_seconds
            .is_some_and(|s| s == 0 || s > MAX_TTL_SECONDS)
        {
            errors.insert(
                "ttl_seconds".into(),
                format!("1 to {MAX_TTL_SECONDS} (28 days)"),
            );
        }
        if let Some(p) = &self.priority
            && p != "high"
            && p != "normal"
        {
            errors.insert("priority".into(), "`high` or `normal`".into());
        }
        if let Some(at) = self.send_at {
            if at < now - PAST_TOLERANCE {
                errors.insert("send_at".into(), "is in the past".into());
            } else if at > now + MAX_SCHEDULE_AHEAD {
                errors.insert("send_at".into(), "is more than 30 days ahead".into());
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::validation(errors))
        }
    }

    /// The category must be declared (`push.toml`, applied).
    pub fn check_category(&self, declared: &Categories) -> Result<(), Error> {
        match &self.category {
            Some(c) if !declared.contains_key(c) => Err(Error::field(
                "category",
                if declared.is_empty() {
                    "unknown category (this project declares none in push.toml)".to_owned()
                } else {
                    format!(
                        "unknown category (declared: {})",
                        declared.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                },
            )),
            _ => Ok(()),
        }
    }

    /// The provider-neutral message; `delivery_id` is filled per device.
    pub fn message(&self, accepted: DateTime<Utc>) -> Message {
        let start = self.send_at.unwrap_or(accepted).max(accepted);
        Message {
            title: self.title.clone(),
            body: self.body.clone(),
            data: self.data.clone(),
            category: self.category.clone(),
            collapse_id: self.collapse_id.clone(),
            expires_at: self
                .ttl_seconds
                .map(|s| SystemTime::from(start) + StdDuration::from_secs(s.min(MAX_TTL_SECONDS))),
            priority: if self.priority.as_deref() == Some("normal") {
                Priority::Normal
            } else {
                Priority::High
            },
            delivery_id: String::new(),
        }
    }
}

/// Delivery statuses, as stored and shown.
pub const STATUSES: [&str; 5] = ["queued", "sent", "failed", "invalid_token", "opted_out"];

/// Records a new push job and its fan-out job in the caller's transaction.
pub async fn create(
    c: &mut Conn<'_>,
    req: &PushRequest,
    created_by: Option<String>,
    now: DateTime<Utc>,
) -> Result<String, Error> {
    let id = uuid::Uuid::now_v7().to_string();
    let send_at = req.send_at.unwrap_or(now).max(now);
    c.execute(
        "INSERT INTO _fb_push_jobs (id, status, request, created_by, created_at, send_at) \
         VALUES ($1, 'queued', $2, $3, $4, $5)",
        &[
            Param::Text(id.clone()),
            Param::Json(serde_json::to_value(req).map_err(Error::internal)?),
            created_by.map_or(Param::NullOf(ColType::Text), Param::Text),
            Param::Time(now),
            Param::Time(send_at),
        ],
    )
    .await?;
    crate::jobs::enqueue_at(c, super::FANOUT, &json!({ "push_job": id }), send_at).await?;
    Ok(id)
}

/// A push job as `GET /v1/push/{id}` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PushJob {
    pub id: String,
    /// `queued` (not fanned out yet), `running`, `done` (every delivery final).
    pub status: String,
    pub created_at: String,
    pub send_at: String,
    pub finished_at: Option<String>,
    /// Deliveries by status (`queued`, `sent`, `failed`, `invalid_token`, `opted_out`).
    pub counts: BTreeMap<String, i64>,
    /// One page of deliveries, by device id.
    pub deliveries: Vec<Delivery>,
    /// Pass as `cursor` for the next page of deliveries.
    pub next_cursor: Option<String>,
    #[schema(value_type = Object)]
    pub request: Value,
}

/// One device's outcome.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub device_id: String,
    pub platform: String,
    pub status: String,
    pub attempts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Held back by the user's quiet hours until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
}

/// A job with its counts and one page of deliveries after `cursor` (a device id).
pub async fn get(
    c: &mut Conn<'_>,
    id: &str,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Option<PushJob>, Error> {
    let Some(row) = c
        .fetch_one(
            "SELECT status, created_at, send_at, finished_at, request FROM _fb_push_jobs \
             WHERE id = $1",
            &[Param::from(id)],
            &[
                ColType::Text,
                ColType::Time,
                ColType::Time,
                ColType::Time,
                ColType::Json,
            ],
        )
        .await?
    else {
        return Ok(None);
    };
    let mut it = row.into_iter();
    let status = it.next().and_then(Param::into_string).unwrap_or_default();
    let created_at = it.next().and_then(time).unwrap_or_default();
    let send_at = it.next().and_then(time).unwrap_or_default();
    let finished_at = it.next().and_then(time);
    let request = match it.next() {
        Some(Param::Json(v)) => v,
        _ => Value::Null,
    };
    let mut counts: BTreeMap<String, i64> = STATUSES.iter().map(|s| ((*s).into(), 0)).collect();
    for r in c
        .fetch(
            "SELECT status, COUNT(*) FROM _fb_push_deliveries WHERE job_id = $1 GROUP BY status",
            &[Param::from(id)],
            &[ColType::Text, ColType::Int],
        )
        .await?
    {
        let mut it = r.into_iter();
        if let (Some(s), Some(n)) = (
            it.next().and_then(Param::into_string),
            it.next().and_then(|p| p.as_i64()),
        ) {
            counts.insert(s, n);
        }
    }
    let rows = c
        .fetch(
            "SELECT device_id, platform, status, attempts, provider_id, error, not_before \
             FROM _fb_push_deliveries WHERE job_id = $1 AND device_id > $2 \
             ORDER BY device_id LIMIT $3",
            &[
                Param::from(id),
                Param::Text(cursor.unwrap_or("").to_owned()),
                Param::Int(i64::try_from(limit + 1).unwrap_or(i64::MAX)),
            ],
            &[
                ColType::Text,
                ColType::Text,
                ColType::Text,
                ColType::Int,
                ColType::Text,
                ColType::Text,
                ColType::Time,
            ],
        )
        .await?;
    let mut deliveries: Vec<Delivery> = rows
        .into_iter()
        .filter_map(|r| {
            let mut it = r.into_iter();
            Some(Delivery {
                device_id: it.next()?.into_string()?,
                platform: it.next()?.into_string()?,
                status: it.next()?.into_string()?,
                attempts: it.next()?.as_i64().unwrap_or(0),
                provider_id: it.next().and_then(Param::into_string),
                error: it.next().and_then(Param::into_string),
                not_before: it.next().and_then(time),
            })
        })
        .collect();
    let next_cursor = if deliveries.len() > limit {
        deliveries.truncate(limit);
        deliveries.last().map(|d| d.device_id.clone())
    } else {
        None
    };
    Ok(Some(PushJob {
        id: id.to_owned(),
        status,
        created_at,
        send_at,
        finished_at,
        counts,
        deliveries,
        next_cursor,
        request,
    }))
}

/// A job in the admin list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PushJobSummary {
    pub id: String,
    pub status: String,
    pub created_at: String,
    pub send_at: String,
    pub created_by: Option<String>,
    pub title: Option<String>,
    pub category: Option<String>,
}

/// Jobs newest first, before `cursor` (a job id).
pub async fn list(
    c: &mut Conn<'_>,
    limit: usize,
    cursor: Option<&str>,
) -> Result<(Vec<PushJobSummary>, Option<String>), Error> {
    let rows = c
        .fetch(
            "SELECT id, status, created_at, send_at, created_by, request FROM _fb_push_jobs \
             WHERE ($1 = '' OR id < $1) ORDER BY id DESC LIMIT $2",
            &[
                Param::Text(cursor.unwrap_or("").to_owned()),
                Param::Int(i64::try_from(limit + 1).unwrap_or(i64::MAX)),
            ],
            &[
                ColType::Text,
                ColType::Text,
                ColType::Time,
                ColType::Time,
                ColType::Text,
                ColType::Json,
            ],
        )
        .await?;
    let mut items: Vec<PushJobSummary> = rows
        .into_iter()
        .filter_map(|r| {
            let mut it = r.into_iter();
            let id = it.next()?.into_string()?;
            let status = it.next()?.into_string()?;
            let created_at = it.next().and_then(time)?;
            let send_at = it.next().and_then(time)?;
            let created_by = it.next().and_then(Param::into_string);
            let request = match it.next() {
                Some(Param::Json(v)) => v,
                _ => Value::Null,
            };
            Some(PushJobSummary {
                id,
                status,
                created_at,
                send_at,
                created_by,
                title: request["title"].as_str().map(str::to_owned),
                category: request["category"].as_str().map(str::to_owned),
            })
        })
        .collect();
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|j| j.id.clone())
    } else {
        None
    };
    Ok((items, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> Result<PushRequest, serde_json::Error> {
        serde_json::from_value(v)
    }

    fn fields(e: Error) -> Vec<String> {
        match e.body().get("errors") {
            Some(Value::Object(m)) => m.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn a_push_names_exactly_one_target() {
        let now = Utc::now();
        let ok = req(json!({"to": {"topic": "news"}, "title": "Hi"})).expect("parses");
        assert!(ok.validate(now).is_ok());
        let two =
            req(json!({"to": {"topic": "news", "users": ["u"]}, "title": "Hi"})).expect("parses");
        assert_eq!(fields(two.validate(now).expect_err("two")), ["to"]);
        let none = req(json!({"to": {}, "title": "Hi"})).expect("parses");
        assert_eq!(fields(none.validate(now).expect_err("none")), ["to"]);
        let empty = req(json!({"to": {"users": []}, "title": "Hi"})).expect("parses");
        assert_eq!(
            fields(empty.validate(now).expect_err("empty")),
            ["to.users"]
        );
        assert!(req(json!({"to": {"topic": "x"}, "title": "Hi", "extra": 1})).is_err());
    }

    #[test]
    fn limits_are_checked_before_queueing() {
        let now = Utc::now();
        let r = req(json!({
            "to": {"topic": "bad topic"},
            "title": "t".repeat(300),
            "collapse_id": "c".repeat(65),
            "ttl_seconds": MAX_TTL_SECONDS + 1,
            "priority": "urgent",
            "send_at": (now - Duration::hours(1)).to_rfc3339(),
            "data": {"k": "v".repeat(5000)},
        }))
        .expect("parses");
        assert_eq!(
            fields(r.validate(now).expect_err("invalid")),
            [
                "collapse_id",
                "data",
                "priority",
                "send_at",
                "title",
                "to.topic",
                "ttl_seconds"
            ]
        );
        let far = req(json!({"to": {"topic": "x"}, "body": "b",
            "send_at": (now + Duration::days(31)).to_rfc3339()}))
        .expect("parses");
        assert_eq!(fields(far.validate(now).expect_err("far")), ["send_at"]);
        let nothing = req(json!({"to": {"topic": "x"}})).expect("parses");
        assert_eq!(fields(nothing.validate(now).expect_err("empty")), ["body"]);
    }

    #[test]
    fn the_message_expires_ttl_after_it_is_due() {
        let now = Utc::now();
        let r = req(json!({"to": {"topic": "x"}, "body": "b", "ttl_seconds": 60,
            "priority": "normal"}))
        .expect("parses");
        let m = r.message(now);
        assert_eq!(m.priority, Priority::Normal);
        assert_eq!(
            m.expires_at,
            Some(SystemTime::from(now) + StdDuration::from_secs(60))
        );
    }
}
