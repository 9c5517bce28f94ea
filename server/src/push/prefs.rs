//! Notification categories (declared in the project's `push.toml`) and each user's choices:
//! per-category opt-outs and optional quiet hours.
//!
//! A push names at most one category. Without one it is transactional (a sign-in code, an
//! order update) and ignores both opt-outs and quiet hours; with one, a user who opted out gets
//! an `opted_out` delivery that is never sent, and a user in quiet hours gets the push when
//! they end, in the device's time zone (deferred, never dropped).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::db::{ColType, Conn, Param};
use crate::error::Error;

/// A declared category (`push.toml`).
pub type Category = ferrobase_schema::PushCategory;

/// The categories of the applied project, by name.
pub type Categories = BTreeMap<String, Category>;

/// Loads the declared categories.
pub async fn categories(c: &mut Conn<'_>) -> Result<Categories, Error> {
    let rows = c
        .fetch(
            "SELECT name, default_on, description FROM _fb_push_categories ORDER BY name",
            &[],
            &[ColType::Text, ColType::Bool, ColType::Text],
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let mut it = r.into_iter();
            let name = it.next()?.into_string()?;
            let default = matches!(it.next()?, Param::Bool(true));
            let description = it.next().and_then(Param::into_string);
            Some((
                name,
                Category {
                    default,
                    description,
                },
            ))
        })
        .collect())
}

/// Replaces the declared categories (part of a project apply). Users' choices for a removed
/// category are kept: declaring it again brings them back.
pub async fn replace_categories(c: &mut Conn<'_>, desired: &Categories) -> Result<(), Error> {
    c.execute("DELETE FROM _fb_push_categories", &[]).await?;
    for (name, cat) in desired {
        c.execute(
            "INSERT INTO _fb_push_categories (name, default_on, description) VALUES ($1, $2, $3)",
            &[
                Param::Text(name.clone()),
                Param::Bool(cat.default),
                cat.description
                    .clone()
                    .map_or(Param::NullOf(ColType::Text), Param::Text),
            ],
        )
        .await?;
    }
    Ok(())
}

/// Quiet hours, local wall-clock times `HH:MM`; a start after the end spans midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuietHours {
    /// Minutes after local midnight.
    pub start: u16,
    pub end: u16,
}

impl QuietHours {
    /// Parses `{"start":"22:00","end":"07:00"}`'s two values.
    pub fn parse(start: &str, end: &str) -> Option<QuietHours> {
        let m = |s: &str| {
            NaiveTime::parse_from_str(s, "%H:%M")
                .ok()
                .map(|t| (t.hour() * 60 + t.minute()) as u16)
        };
        let (start, end) = (m(start)?, m(end)?);
        (start != end).then_some(QuietHours { start, end })
    }

    fn show(m: u16) -> String {
        format!("{:02}:{:02}", m / 60, m % 60)
    }

    /// When a push due at `at` may be delivered to a device in `tz`: `at` itself outside quiet
    /// hours, else the next local end of quiet hours.
    pub fn release_at(&self, at: DateTime<Utc>, tz: chrono_tz::Tz) -> DateTime<Utc> {
        let local = at.with_timezone(&tz);
        let minute = (local.hour() * 60 + local.minute()) as u16;
        let quiet = if self.start < self.end {
            minute >= self.start && minute < self.end
        } else {
            minute >= self.start || minute < self.end
        };
        if !quiet {
            return at;
        }
        let mut day = local.date_naive();
        if self.start > self.end && minute >= self.start {
            day = day.succ_opt().unwrap_or(day);
        }
        let end = NaiveTime::from_hms_opt(u32::from(self.end / 60), u32::from(self.end % 60), 0)
            .unwrap_or(NaiveTime::MIN);
        // A local time skipped by a DST jump resolves to the first valid instant after it.
        let mut candidate = day.and_time(end);
        for _ in 0..4 {
            if let Some(t) = tz.from_local_datetime(&candidate).earliest() {
                return t.with_timezone(&Utc).max(at);
            }
            candidate += Duration::minutes(30);
        }
        at
    }
}

/// What a user sees and sets at `/v1/me/notifications`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Preferences {
    /// Every declared category with the user's effective choice.
    pub categories: BTreeMap<String, bool>,
    pub quiet_hours: Option<QuietHoursJson>,
}

/// Quiet hours in a preferences body.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursJson {
    /// Local time `HH:MM` (24 h) quiet hours begin.
    pub start: String,
    /// Local time `HH:MM` they end; before `start` when they span midnight.
    pub end: String,
}

/// `PUT /v1/me/notifications`: named categories change, others keep their value;
/// `quiet_hours: null` removes them, leaving it out keeps them.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesUpdate {
    #[serde(default)]
    pub categories: BTreeMap<String, bool>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<QuietHoursJson>)]
    pub quiet_hours: Option<Option<QuietHoursJson>>,
}

/// Tells a `null` from a missing key.
mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// `(name, enabled)` rows of `_fb_push_prefs` (a category or a user id, then the choice).
pub(super) fn choices(rows: Vec<Vec<Param>>) -> impl Iterator<Item = (String, bool)> {
    rows.into_iter().filter_map(|r| {
        let mut it = r.into_iter();
        Some((
            it.next()?.into_string()?,
            matches!(it.next()?, Param::Bool(true)),
        ))
    })
}

/// A user's preferences with every declared category resolved.
pub async fn get(c: &mut Conn<'_>, user_id: &str) -> Result<Preferences, Error> {
    let declared = categories(c).await?;
    let chosen = c
        .fetch(
            "SELECT category, enabled FROM _fb_push_prefs WHERE user_id = $1",
            &[Param::from(user_id)],
            &[ColType::Text, ColType::Bool],
        )
        .await?;
    let mut chosen: BTreeMap<String, bool> = choices(chosen).collect();
    let categories = declared
        .into_iter()
        .map(|(name, cat)| {
            let on = chosen.remove(&name).unwrap_or(cat.default);
            (name, on)
        })
        .collect();
    let quiet_hours = quiet(c, user_id).await?.map(|q| QuietHoursJson {
        start: QuietHours::show(q.start),
        end: QuietHours::show(q.end),
    });
    Ok(Preferences {
        categories,
        quiet_hours,
    })
}

/// A user's quiet hours, if set.
pub async fn quiet(c: &mut Conn<'_>, user_id: &str) -> Result<Option<QuietHours>, Error> {
    let row = c
        .fetch_one(
            "SELECT start_min, end_min FROM _fb_push_quiet WHERE user_id = $1",
            &[Param::from(user_id)],
            &[ColType::Int, ColType::Int],
        )
        .await?;
    Ok(row.and_then(|r| {
        Some(QuietHours {
            start: u16::try_from(r.first()?.as_i64()?).ok()?,
            end: u16::try_from(r.get(1)?.as_i64()?).ok()?,
        })
    }))
}

/// Applies an update; unknown categories and malformed quiet hours are 422 naming them.
pub async fn update(
    c: &mut Conn<'_>,
    user_id: &str,
    u: PreferencesUpdate,
) -> Result<Preferences, Error> {
    let declared = categories(c).await?;
    let mut errors = BTreeMap::new();
    for name in u.categories.keys() {
        if !declared.contains_key(name) {
            errors.insert(
                format!("categories.{}", name.chars().take(64).collect::<String>()),
                if declared.is_empty() {
                    "unknown category (this project declares none in push.toml)".to_owned()
                } else {
                    format!(
                        "unknown category (declared: {})",
                        declared.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                },
            );
        }
    }
    let quiet_hours = match &u.quiet_hours {
        Some(Some(q)) => match QuietHours::parse(&q.start, &q.end) {
            Some(q) => Some(Some(q)),
            None => {
                errors.insert(
                    "quiet_hours".into(),
                    "start and end must be different HH:MM times (24 h)".into(),
                );
                None
            }
        },
        Some(None) => Some(None),
        None => None,
    };
    if !errors.is_empty() {
        return Err(Error::validation(errors));
    }
    for (name, on) in &u.categories {
        c.execute(
            "INSERT INTO _fb_push_prefs (user_id, category, enabled) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, category) DO UPDATE SET enabled = excluded.enabled",
            &[
                Param::from(user_id),
                Param::Text(name.clone()),
                Param::Bool(*on),
            ],
        )
        .await?;
    }
    match quiet_hours {
        Some(Some(q)) => {
            c.execute(
                "INSERT INTO _fb_push_quiet (user_id, start_min, end_min) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id) DO UPDATE SET start_min = excluded.start_min, \
                 end_min = excluded.end_min",
                &[
                    Param::from(user_id),
                    Param::Int(i64::from(q.start)),
                    Param::Int(i64::from(q.end)),
                ],
            )
            .await?;
        }
        Some(None) => {
            c.execute(
                "DELETE FROM _fb_push_quiet WHERE user_id = $1",
                &[Param::from(user_id)],
            )
            .await?;
        }
        None => {}
    }
    get(c, user_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .expect("time")
    }

    #[test]
    fn quiet_hours_parse() {
        assert_eq!(
            QuietHours::parse("22:00", "07:30"),
            Some(QuietHours {
                start: 1320,
                end: 450
            })
        );
        assert_eq!(QuietHours::parse("22:00", "22:00"), None);
        assert_eq!(QuietHours::parse("24:00", "07:00"), None);
        assert_eq!(QuietHours::parse("7", "08:00"), None);
    }

    #[test]
    fn quiet_hours_defer_to_the_local_end() {
        let q = QuietHours::parse("22:00", "07:00").expect("valid");
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().expect("tz");
        // 23:30 in Berlin (CET, +1) → 07:00 next morning local = 06:00 UTC.
        assert_eq!(
            q.release_at(at("2026-12-01T22:30:00Z"), berlin),
            at("2026-12-02T06:00:00Z")
        );
        // 03:00 local → 07:00 the same day.
        assert_eq!(
            q.release_at(at("2026-12-02T02:00:00Z"), berlin),
            at("2026-12-02T06:00:00Z")
        );
        // 12:00 local: not quiet.
        let noon = at("2026-12-02T11:00:00Z");
        assert_eq!(q.release_at(noon, berlin), noon);
        // A window within one day.
        let lunch = QuietHours::parse("12:00", "13:00").expect("valid");
        assert_eq!(lunch.release_at(noon, berlin), at("2026-12-02T12:00:00Z"));
        // New York: 23:00 local (-5) = 04:00 UTC → 07:00 local = 12:00 UTC.
        let ny: chrono_tz::Tz = "America/New_York".parse().expect("tz");
        assert_eq!(
            q.release_at(at("2026-12-02T04:00:00Z"), ny),
            at("2026-12-02T12:00:00Z")
        );
    }

    #[test]
    fn quiet_hours_across_a_dst_gap() {
        // Berlin skips 02:00-03:00 on 2026-03-29; quiet hours ending 02:30 end at 03:00 CEST.
        let q = QuietHours::parse("01:00", "02:30").expect("valid");
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().expect("tz");
        let released = q.release_at(at("2026-03-29T00:30:00Z"), berlin);
        assert_eq!(released, at("2026-03-29T01:00:00Z"));
    }
}
