//! The device registry: one row per push token, owned by the user who registered it last.
//!
//! Why upsert by token: a phone reinstalling the app, or a second user signing in on the same
//! phone, sends a token the registry may already hold. The token names the phone's app install,
//! so the row moves to the caller (a sign-out / sign-in must not leave the previous user
//! receiving the new user's notifications) and is reactivated.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::time;
use crate::db::{ColType, Conn, Param};
use crate::error::Error;

/// Platforms a device may register with. A provider is configured per platform
/// (`[push.apns] platforms = ["ios"]`); a device whose platform has none ends its deliveries
/// `failed` with `provider_not_configured`.
pub const PLATFORMS: [&str; 3] = ["ios", "android", "web"];
/// Longest accepted token. APNs tokens are 64 hex characters, FCM registration tokens about
/// 160; Web Push subscriptions (an endpoint URL and keys) run to a few hundred.
pub const MAX_TOKEN: usize = 4096;
/// Topics per device.
pub const MAX_TOPICS: usize = 100;
const MAX_TOPIC: usize = 64;
const MAX_SHORT: usize = 64;

/// A registered device, as its owner and support admins see it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Device {
    pub id: String,
    pub user_id: String,
    /// `ios`, `android` or `web`.
    pub platform: String,
    pub token: String,
    pub app_version: Option<String>,
    pub locale: Option<String>,
    /// IANA time zone (`Europe/Berlin`): quiet hours are honoured in it.
    pub timezone: Option<String>,
    pub topics: Vec<String>,
    /// False once a provider said the token is dead (or the owner unregistered it).
    pub active: bool,
    /// Why it was deactivated (`Unregistered`, `ExpiredToken`, …).
    pub deactivated_reason: Option<String>,
    pub deactivated_at: Option<String>,
    pub last_seen_at: String,
    pub created_at: String,
    pub updated_at: String,
}

/// `POST /v1/devices`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// `ios`, `android` or `web`.
    pub platform: String,
    /// The provider's token for this app install (APNs device token, FCM registration token).
    pub token: String,
    pub app_version: Option<String>,
    pub locale: Option<String>,
    /// IANA time zone name, e.g. `America/New_York`.
    pub timezone: Option<String>,
    /// Topics to receive pushes for (`news`, `team.42`); replaces the device's topics.
    pub topics: Option<Vec<String>>,
}

/// `PATCH /v1/devices/{id}`: only the named fields change.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceUpdate {
    pub topics: Option<Vec<String>>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub app_version: Option<String>,
}

fn check_short(errors: &mut BTreeMap<String, String>, field: &str, v: &Option<String>) {
    if let Some(s) = v
        && (s.chars().count() > MAX_SHORT || s.chars().any(char::is_control))
    {
        errors.insert(
            field.into(),
            format!("must be at most {MAX_SHORT} characters, without control characters"),
        );
    }
}

fn check_timezone(errors: &mut BTreeMap<String, String>, tz: &Option<String>) {
    if let Some(t) = tz
        && t.parse::<chrono_tz::Tz>().is_err()
    {
        errors.insert(
            "timezone".into(),
            "must be an IANA time zone name such as Europe/Berlin".into(),
        );
    }
}

fn check_topics(errors: &mut BTreeMap<String, String>, topics: &Option<Vec<String>>) {
    let Some(topics) = topics else { return };
    if topics.len() > MAX_TOPICS {
        errors.insert(
            "topics".into(),
            format!("at most {MAX_TOPICS} topics per device"),
        );
        return;
    }
    if let Some(bad) = topics.iter().find(|t| !valid_topic(t)) {
        errors.insert(
            "topics".into(),
            format!(
                "`{}` is not a topic: 1 to {MAX_TOPIC} of A-Z a-z 0-9 _ . - :",
                bad.chars().take(80).collect::<String>()
            ),
        );
    }
}

/// A topic name: short, and safe to show anywhere.
pub fn valid_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TOPIC
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':'))
}

/// The fields a registration and an update share; `errors` already holds the caller's own.
fn check_details(
    mut errors: BTreeMap<String, String>,
    app_version: &Option<String>,
    locale: &Option<String>,
    timezone: &Option<String>,
    topics: &Option<Vec<String>>,
) -> Result<(), Error> {
    check_short(&mut errors, "app_version", app_version);
    check_short(&mut errors, "locale", locale);
    check_timezone(&mut errors, timezone);
    check_topics(&mut errors, topics);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::validation(errors))
    }
}

impl Registration {
    /// Every field's problem at once, as record validation reports them.
    pub fn validate(&self) -> Result<(), Error> {
        let mut errors = BTreeMap::new();
        if !PLATFORMS.contains(&self.platform.as_str()) {
            errors.insert(
                "platform".into(),
                format!("must be one of: {}", PLATFORMS.join(", ")),
            );
        }
        if self.token.is_empty() || self.token.len() > MAX_TOKEN {
            errors.insert("token".into(), format!("must be 1 to {MAX_TOKEN} bytes"));
        } else if !self.token.bytes().all(|b| b.is_ascii_graphic()) {
            errors.insert(
                "token".into(),
                "must be printable ASCII without spaces".into(),
            );
        }
        check_details(
            errors,
            &self.app_version,
            &self.locale,
            &self.timezone,
            &self.topics,
        )
    }
}

impl DeviceUpdate {
    pub fn validate(&self) -> Result<(), Error> {
        check_details(
            BTreeMap::new(),
            &self.app_version,
            &self.locale,
            &self.timezone,
            &self.topics,
        )
    }
}

const COLS: &str = "id, user_id, platform, token, app_version, locale, timezone, topics, active, \
                    deactivated_reason, deactivated_at, last_seen_at, created_at, updated_at";
const TYPES: [ColType; 14] = [
    ColType::Text,
    ColType::Text,
    ColType::Text,
    ColType::Text,
    ColType::Text,
    ColType::Text,
    ColType::Text,
    ColType::Json,
    ColType::Bool,
    ColType::Text,
    ColType::Time,
    ColType::Time,
    ColType::Time,
    ColType::Time,
];

fn from_row(r: Vec<Param>) -> Option<Device> {
    let mut it = r.into_iter();
    let mut next = || it.next().unwrap_or(Param::Null);
    Some(Device {
        id: next().into_string()?,
        user_id: next().into_string()?,
        platform: next().into_string()?,
        token: next().into_string()?,
        app_version: next().into_string(),
        locale: next().into_string(),
        timezone: next().into_string(),
        topics: match next() {
            Param::Json(Value::Array(a)) => a
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        },
        active: matches!(next(), Param::Bool(true)),
        deactivated_reason: next().into_string(),
        deactivated_at: time(next()),
        last_seen_at: time(next())?,
        created_at: time(next())?,
        updated_at: time(next())?,
    })
}

/// Stores the device's topics in both places: the JSON list shown on the device and the
/// membership rows topic fan-out reads.
async fn set_topics(c: &mut Conn<'_>, id: &str, topics: &[String]) -> Result<(), Error> {
    let mut unique: Vec<&String> = topics.iter().collect();
    unique.sort();
    unique.dedup();
    c.execute(
        "DELETE FROM _fb_device_topics WHERE device_id = $1",
        &[Param::from(id)],
    )
    .await?;
    for t in &unique {
        c.execute(
            "INSERT INTO _fb_device_topics (topic, device_id) VALUES ($1, $2)",
            &[Param::Text((*t).clone()), Param::from(id)],
        )
        .await?;
    }
    c.execute(
        "UPDATE _fb_devices SET topics = $1 WHERE id = $2",
        &[
            Param::Json(Value::from(
                unique.into_iter().cloned().collect::<Vec<String>>(),
            )),
            Param::from(id),
        ],
    )
    .await?;
    Ok(())
}

/// Registers or refreshes the caller's device. Returns the device and whether it is new.
pub async fn register(
    c: &mut Conn<'_>,
    user_id: &str,
    reg: Registration,
) -> Result<(Device, bool), Error> {
    let now = Utc::now();
    let existing = c
        .fetch_one(
            "SELECT id FROM _fb_devices WHERE token = $1",
            &[Param::Text(reg.token.clone())],
            &[ColType::Text],
        )
        .await?
        .and_then(|r| r.into_iter().next().and_then(Param::into_string));
    let created = existing.is_none();
    let id = match existing {
        Some(id) => {
            // Fields not sent are kept: a refresh on app start sends only what it knows.
            c.execute(
                "UPDATE _fb_devices SET user_id = $1, platform = $2, \
                 app_version = COALESCE($3, app_version), locale = COALESCE($4, locale), \
                 timezone = COALESCE($5, timezone), active = $6, deactivated_reason = NULL, \
                 deactivated_at = NULL, last_seen_at = $7, updated_at = $7 WHERE id = $8",
                &[
                    Param::from(user_id),
                    Param::Text(reg.platform.clone()),
                    opt(reg.app_version.clone()),
                    opt(reg.locale.clone()),
                    opt(reg.timezone.clone()),
                    Param::Bool(true),
                    Param::Time(now),
                    Param::Text(id.clone()),
                ],
            )
            .await?;
            id
        }
        None => {
            let id = uuid::Uuid::now_v7().to_string();
            c.execute(
                "INSERT INTO _fb_devices (id, user_id, platform, token, app_version, locale, \
                 timezone, topics, active, last_seen_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $10)",
                &[
                    Param::Text(id.clone()),
                    Param::from(user_id),
                    Param::Text(reg.platform.clone()),
                    Param::Text(reg.token.clone()),
                    opt(reg.app_version.clone()),
                    opt(reg.locale.clone()),
                    opt(reg.timezone.clone()),
                    Param::Json(Value::Array(Vec::new())),
                    Param::Bool(true),
                    Param::Time(now),
                ],
            )
            .await?;
            id
        }
    };
    if let Some(topics) = &reg.topics {
        set_topics(c, &id, topics).await?;
    }
    let device = get(c, &id)
        .await?
        .ok_or_else(|| Error::internal("registered device vanished"))?;
    Ok((device, created))
}

fn opt(v: Option<String>) -> Param {
    v.map_or(Param::NullOf(ColType::Text), Param::Text)
}

/// One device by id, whoever owns it.
pub async fn get(c: &mut Conn<'_>, id: &str) -> Result<Option<Device>, Error> {
    Ok(c.fetch_one(
        &format!("SELECT {COLS} FROM _fb_devices WHERE id = $1"),
        &[Param::from(id)],
        &TYPES,
    )
    .await?
    .and_then(from_row))
}

/// A user's devices, active and deactivated, oldest first.
pub async fn list_for_user(c: &mut Conn<'_>, user_id: &str) -> Result<Vec<Device>, Error> {
    Ok(c.fetch(
        &format!("SELECT {COLS} FROM _fb_devices WHERE user_id = $1 ORDER BY id LIMIT 1000"),
        &[Param::from(user_id)],
        &TYPES,
    )
    .await?
    .into_iter()
    .filter_map(from_row)
    .collect())
}

/// Changes a device of `user_id`; `None` when there is no such device of theirs.
pub async fn update(
    c: &mut Conn<'_>,
    user_id: &str,
    id: &str,
    u: DeviceUpdate,
) -> Result<Option<Device>, Error> {
    let n = c
        .execute(
            "UPDATE _fb_devices SET app_version = COALESCE($1, app_version), \
             locale = COALESCE($2, locale), timezone = COALESCE($3, timezone), updated_at = $4 \
             WHERE id = $5 AND user_id = $6",
            &[
                opt(u.app_version),
                opt(u.locale),
                opt(u.timezone),
                Param::Time(Utc::now()),
                Param::from(id),
                Param::from(user_id),
            ],
        )
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if let Some(topics) = &u.topics {
        set_topics(c, id, topics).await?;
    }
    get(c, id).await
}

/// Removes a device of `user_id`; false when there is no such device of theirs.
pub async fn unregister(c: &mut Conn<'_>, user_id: &str, id: &str) -> Result<bool, Error> {
    let n = c
        .execute(
            "DELETE FROM _fb_devices WHERE id = $1 AND user_id = $2",
            &[Param::from(id), Param::from(user_id)],
        )
        .await?;
    if n > 0 {
        c.execute(
            "DELETE FROM _fb_device_topics WHERE device_id = $1",
            &[Param::from(id)],
        )
        .await?;
    }
    Ok(n > 0)
}

/// Deactivates a device whose token a provider declared dead, unless it was registered again
/// since the send started (`sent_at`): then the app proved the token alive after the provider's
/// verdict, and a fresh token must never be deleted by a stale answer.
pub async fn deactivate(
    c: &mut Conn<'_>,
    id: &str,
    token: &str,
    reason: &str,
    sent_at: DateTime<Utc>,
) -> Result<bool, Error> {
    let now = Utc::now();
    let n = c
        .execute(
            "UPDATE _fb_devices SET active = $1, deactivated_reason = $2, deactivated_at = $3, \
             updated_at = $3 WHERE id = $4 AND token = $5 AND active = $6 AND last_seen_at <= $7",
            &[
                Param::Bool(false),
                Param::from(reason),
                Param::Time(now),
                Param::from(id),
                Param::from(token),
                Param::Bool(true),
                Param::Time(sent_at),
            ],
        )
        .await?;
    Ok(n > 0)
}

/// Forgets everything push knows of a user being deleted: their devices (so a topic push no
/// longer reaches a deleted account's phone), topic memberships, choices and quiet hours.
/// Runs in the deleting transaction.
pub async fn forget_user(c: &mut Conn<'_>, user_id: &str) -> Result<(), Error> {
    c.execute(
        "DELETE FROM _fb_device_topics WHERE device_id IN \
         (SELECT id FROM _fb_devices WHERE user_id = $1)",
        &[Param::from(user_id)],
    )
    .await?;
    for table in ["_fb_devices", "_fb_push_prefs", "_fb_push_quiet"] {
        c.execute(
            &format!("DELETE FROM {table} WHERE user_id = $1"),
            &[Param::from(user_id)],
        )
        .await?;
    }
    Ok(())
}
