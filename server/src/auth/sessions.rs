//! Sessions (one per signed-in device) and their rotating refresh tokens.
//!
//! A refresh token is opaque, shown once and stored as a hash. Each use spends it and issues
//! the next; presenting a spent one means it was copied, so the whole session is revoked
//! (theft detection, as OAuth 2.0 Security BCP recommends).

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::audit::Origin;
use crate::db::{ColType, Conn, Param};
use crate::error::Error;
use crate::tokens;

pub const REFRESH_PREFIX: &str = "fbr_";

/// Opens a session for `user` and returns (session id, refresh token).
pub async fn open(
    c: &mut Conn<'_>,
    user: &str,
    origin: &Origin,
    now: DateTime<Utc>,
    ttl: std::time::Duration,
) -> Result<(String, String), Error> {
    let sid = uuid::Uuid::now_v7().to_string();
    let expires = now + Duration::from_std(ttl).unwrap_or(Duration::days(30));
    c.execute(
        "INSERT INTO _fb_sessions (id, user_id, created_at, last_used_at, expires_at, ip, user_agent) VALUES ($1, $2, $3, $3, $4, $5, $6)",
        &[
            Param::Text(sid.clone()),
            Param::Text(user.to_owned()),
            Param::Time(now),
            Param::Time(expires),
            origin.ip.clone().into(),
            origin.user_agent.clone().map(|u| u.chars().take(300).collect::<String>()).into(),
        ],
    )
    .await?;
    let refresh = issue_refresh(c, &sid, now).await?;
    Ok((sid, refresh))
}

async fn issue_refresh(c: &mut Conn<'_>, sid: &str, now: DateTime<Utc>) -> Result<String, Error> {
    let token = tokens::new_token(REFRESH_PREFIX);
    c.execute(
        "INSERT INTO _fb_refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)",
        &[
            Param::Text(tokens::hash_token(&token)),
            Param::Text(sid.to_owned()),
            Param::Time(now),
        ],
    )
    .await?;
    Ok(token)
}

/// What presenting a refresh token led to.
pub enum Refreshed {
    /// A fresh pair for this user and session.
    Ok {
        user: String,
        session: String,
        refresh: String,
    },
    /// A spent token was presented again: the session is now revoked.
    Reused { user: String, session: String },
    /// Unknown token, or a revoked/expired session, or a disabled user.
    Invalid,
}

pub async fn refresh(
    c: &mut Conn<'_>,
    token: &str,
    origin: &Origin,
    now: DateTime<Utc>,
) -> Result<Refreshed, Error> {
    let row = c
        .fetch_one(
            "SELECT r.session_id, r.spent_at, s.user_id, s.revoked_at, s.expires_at, u.disabled FROM _fb_refresh_tokens r JOIN _fb_sessions s ON s.id = r.session_id JOIN c_users u ON u.id = s.user_id WHERE r.token_hash = $1",
            &[Param::Text(tokens::hash_token(token))],
            &[ColType::Text, ColType::Time, ColType::Text, ColType::Time, ColType::Time, ColType::Bool],
        )
        .await?;
    let Some(row) = row else {
        return Ok(Refreshed::Invalid);
    };
    let mut it = row.into_iter();
    let sid = it.next().and_then(Param::into_string).unwrap_or_default();
    let spent = it.next().and_then(|p| p.as_time()).is_some();
    let user = it.next().and_then(Param::into_string).unwrap_or_default();
    let revoked = it.next().and_then(|p| p.as_time()).is_some();
    let expires = it.next().and_then(|p| p.as_time());
    let disabled = matches!(it.next(), Some(Param::Bool(true)));
    if spent {
        if !revoked {
            revoke(c, &sid, now).await?;
        }
        return Ok(Refreshed::Reused { user, session: sid });
    }
    if revoked || disabled || expires.is_none_or(|e| e <= now) {
        return Ok(Refreshed::Invalid);
    }
    c.execute(
        "UPDATE _fb_refresh_tokens SET spent_at = $2 WHERE token_hash = $1",
        &[Param::Text(tokens::hash_token(token)), Param::Time(now)],
    )
    .await?;
    c.execute(
        "UPDATE _fb_sessions SET last_used_at = $2, ip = COALESCE($3, ip), user_agent = COALESCE($4, user_agent) WHERE id = $1",
        &[Param::Text(sid.clone()), Param::Time(now), origin.ip.clone().into(), origin.user_agent.clone().into()],
    )
    .await?;
    let refresh = issue_refresh(c, &sid, now).await?;
    Ok(Refreshed::Ok {
        user,
        session: sid,
        refresh,
    })
}

/// Revokes one session; its access tokens fail from the next request on.
pub async fn revoke(c: &mut Conn<'_>, sid: &str, now: DateTime<Utc>) -> Result<u64, Error> {
    Ok(c.execute(
        "UPDATE _fb_sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        &[Param::Text(sid.to_owned()), Param::Time(now)],
    )
    .await?)
}

/// Revokes every session of `user` except `keep`.
pub async fn revoke_all(
    c: &mut Conn<'_>,
    user: &str,
    keep: Option<&str>,
    now: DateTime<Utc>,
) -> Result<u64, Error> {
    Ok(c
        .execute(
            "UPDATE _fb_sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL AND id <> $3",
            &[Param::Text(user.to_owned()), Param::Time(now), Param::Text(keep.unwrap_or("").to_owned())],
        )
        .await?)
}

#[derive(Debug, Serialize)]
pub struct SessionInfo {
    pub id: String,
    pub current: bool,
    pub created_at: String,
    pub last_used_at: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The user's live sessions, newest first.
pub async fn list(
    c: &mut Conn<'_>,
    user: &str,
    current: &str,
    now: DateTime<Utc>,
) -> Result<Vec<SessionInfo>, Error> {
    let rows = c
        .fetch(
            "SELECT id, created_at, last_used_at, ip, user_agent FROM _fb_sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at DESC, id DESC",
            &[Param::Text(user.to_owned()), Param::Time(now)],
            &[ColType::Text, ColType::Time, ColType::Time, ColType::Text, ColType::Text],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut it = r.into_iter();
            let id = it.next().and_then(Param::into_string).unwrap_or_default();
            let t = |p: Option<Param>| {
                p.and_then(|p| p.as_time())
                    .map(|t| ferrobase_expr::sqlite_time(&t))
                    .unwrap_or_default()
            };
            SessionInfo {
                current: id == current,
                id,
                created_at: t(it.next()),
                last_used_at: t(it.next()),
                ip: it.next().and_then(Param::into_string),
                user_agent: it.next().and_then(Param::into_string),
            }
        })
        .collect())
}

/// The state of a session as an access token's bearer: (email, verified, role) when the
/// session is live and the user enabled.
pub async fn check(
    c: &mut Conn<'_>,
    user: &str,
    sid: &str,
    now: DateTime<Utc>,
) -> Result<Option<(String, bool, String)>, Error> {
    let row = c
        .fetch_one(
            "SELECT u.email, u.email_verified, u.role FROM _fb_sessions s JOIN c_users u ON u.id = s.user_id WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL AND s.expires_at > $3 AND u.disabled = $4",
            &[Param::Text(sid.to_owned()), Param::Text(user.to_owned()), Param::Time(now), Param::Bool(false)],
            &[ColType::Text, ColType::Bool, ColType::Text],
        )
        .await?;
    Ok(row.map(|r| {
        let mut it = r.into_iter();
        (
            it.next().and_then(Param::into_string).unwrap_or_default(),
            matches!(it.next(), Some(Param::Bool(true))),
            it.next()
                .and_then(Param::into_string)
                .unwrap_or_else(|| "user".into()),
        )
    }))
}
