//! API keys for servers and scripts (`fbk_…`): scoped, shown once, stored as a hash,
//! revocable, optionally expiring.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::access::{Principal, SCOPES};
use crate::audit::{self, Actor, Entry, Origin};
use crate::db::{ColType, Db, Param};
use crate::error::Error;
use crate::tokens;

pub const PREFIX: &str = "fbk_";

#[derive(Debug, Serialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub created_by: Option<String>,
    pub expires_at: Option<String>,
    pub revoked: bool,
}

/// Creates a key; returns it with the secret, which is never shown again.
pub async fn create(
    db: &Db,
    origin: &Origin,
    by: &Principal,
    name: &str,
    scopes: Vec<String>,
    expires_at: Option<DateTime<Utc>>,
) -> Result<(ApiKey, String), Error> {
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::field("name", "must be 1 to 100 characters"));
    }
    if scopes.is_empty() {
        return Err(Error::field(
            "scopes",
            format!("name at least one of: {}", SCOPES.join(", ")),
        ));
    }
    if let Some(bad) = scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        return Err(Error::field(
            "scopes",
            format!(
                "unknown scope `{}` (known: {})",
                bad.chars().take(40).collect::<String>(),
                SCOPES.join(", ")
            ),
        ));
    }
    if expires_at.is_some_and(|t| t <= Utc::now()) {
        return Err(Error::field("expires_at", "must be in the future"));
    }
    let key = tokens::new_token(PREFIX);
    let id = uuid::Uuid::now_v7().to_string();
    let now = Utc::now();
    let actor = Actor::of(by);
    let created_by = actor.email.clone().or(actor.id.clone());
    let out = ApiKey {
        id: id.clone(),
        name: name.clone(),
        scopes: scopes.clone(),
        created_at: ferrobase_expr::sqlite_time(&now),
        created_by: created_by.clone(),
        expires_at: expires_at.map(|t| ferrobase_expr::sqlite_time(&t)),
        revoked: false,
    };
    let (hash, origin) = (tokens::hash_token(&key), origin.clone());
    db.write(move |mut c| {
        Box::pin(async move {
            c.execute(
                "INSERT INTO _fb_api_keys (id, name, key_hash, scopes, created_at, created_by, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    Param::Text(id.clone()),
                    Param::Text(name.clone()),
                    Param::Text(hash),
                    Param::Json(Value::from(scopes.clone())),
                    Param::Time(now),
                    created_by.into(),
                    expires_at.into(),
                ],
            )
            .await?;
            audit::record(&mut c, &origin, Entry { actor, action: "admin.api_key.create", target: Some(("api_key", id)), details: serde_json::json!({"name": name, "scopes": scopes}) }).await
        })
    })
    .await?;
    Ok((out, key))
}

fn from_row(r: Vec<Param>) -> Option<ApiKey> {
    let mut it = r.into_iter();
    let id = it.next()?.into_string()?;
    let name = it.next()?.into_string()?;
    let scopes = match it.next()? {
        Param::Json(Value::Array(a)) => a
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let t = |p: Param| p.as_time().map(|t| ferrobase_expr::sqlite_time(&t));
    Some(ApiKey {
        id,
        name,
        scopes,
        created_at: t(it.next()?).unwrap_or_default(),
        created_by: it.next()?.into_string(),
        expires_at: t(it.next()?),
        revoked: it.next()?.as_time().is_some(),
    })
}

const COLS: &str = "id, name, scopes, created_at, created_by, expires_at, revoked_at";
const TYPES: [ColType; 7] = [
    ColType::Text,
    ColType::Text,
    ColType::Json,
    ColType::Time,
    ColType::Text,
    ColType::Time,
    ColType::Time,
];

pub async fn list(db: &Db) -> Result<Vec<ApiKey>, Error> {
    db.read(|mut c| {
        Box::pin(async move {
            let rows = c
                .fetch(
                    &format!("SELECT {COLS} FROM _fb_api_keys ORDER BY created_at DESC, id"),
                    &[],
                    &TYPES,
                )
                .await?;
            Ok(rows.into_iter().filter_map(from_row).collect())
        })
    })
    .await
}

pub async fn revoke(db: &Db, origin: &Origin, by: &Principal, id: &str) -> Result<(), Error> {
    let (id, origin, actor) = (id.to_owned(), origin.clone(), Actor::of(by));
    db.write(move |mut c| {
        Box::pin(async move {
            let n = c
                .execute(
                    "UPDATE _fb_api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                    &[Param::Text(id.clone()), Param::Time(Utc::now())],
                )
                .await?;
            if n == 0 {
                return Err(Error::not_found("No such active API key."));
            }
            audit::record(
                &mut c,
                &origin,
                Entry {
                    actor,
                    action: "admin.api_key.revoke",
                    target: Some(("api_key", id)),
                    details: Value::Null,
                },
            )
            .await
        })
    })
    .await
}

/// The key behind a bearer token, if live.
pub async fn resolve(db: &Db, key: &str) -> Result<Principal, Error> {
    resolve_by(db, "key_hash", tokens::hash_token(key)).await
}

/// The API key with `id`, as a caller, while it is neither revoked nor expired (for file
/// tokens: revoking the key ends them at once).
pub async fn resolve_id(db: &Db, id: &str) -> Result<Principal, Error> {
    resolve_by(db, "id", id.to_owned()).await
}

/// `column` is one of two constants above, never input.
async fn resolve_by(db: &Db, column: &'static str, value: String) -> Result<Principal, Error> {
    let row = db
        .read(move |mut c| {
            Box::pin(async move {
                c.fetch_one(
                    &format!("SELECT {COLS} FROM _fb_api_keys WHERE {column} = $1"),
                    &[Param::Text(value)],
                    &TYPES,
                )
                .await
                .map_err(Error::from)
            })
        })
        .await?;
    let k = row
        .and_then(from_row)
        .ok_or_else(|| Error::unauthenticated("The API key is not valid."))?;
    if k.revoked {
        return Err(Error::unauthenticated("The API key was revoked."));
    }
    if k.expires_at
        .as_deref()
        .and_then(ferrobase_expr::parse_date)
        .is_some_and(|t| t <= Utc::now())
    {
        return Err(Error::new(
            crate::error::Code::TokenExpired,
            "The API key has expired.",
        ));
    }
    Ok(Principal::ApiKey {
        id: k.id,
        name: k.name,
        scopes: k.scopes,
    })
}
