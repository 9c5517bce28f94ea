//! Admin accounts (operators, separate from app users): creation, sign-in, and resolving an
//! admin token back to its admin.

use chrono::{Duration, Utc};
use serde::Serialize;

use crate::access::{AdminRole, Principal};
use crate::db::{ColType, Db, Param};
use crate::error::{Code, Error};
use crate::{passwords, tokens};

/// Prefix of admin session tokens, so a token's kind is known before any lookup.
pub const TOKEN_PREFIX: &str = "fba_";

#[derive(Clone, Debug, Serialize)]
pub struct Admin {
    pub id: String,
    pub email: String,
    pub role: AdminRole,
    pub created_at: String,
}

/// Emails compare case-insensitively; they are stored lowercased and trimmed.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A deliberately small check: one `@`, something on both sides, no spaces, ≤ 254 bytes.
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Why an admin could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateAdminError {
    #[error("an admin with email {0} already exists")]
    Exists(String),
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Other(#[from] Error),
}

impl From<CreateAdminError> for Error {
    fn from(e: CreateAdminError) -> Self {
        match e {
            CreateAdminError::Exists(_) => Error::conflict(e.to_string())
                .with("errors", serde_json::json!({"email": "already exists"})),
            CreateAdminError::Invalid { field, message } => Error::field(field, message),
            CreateAdminError::Db(e) => e.into(),
            CreateAdminError::Other(e) => e,
        }
    }
}

pub async fn create_admin(
    db: &Db,
    email: &str,
    password: &str,
    role: AdminRole,
    min_password: usize,
) -> Result<Admin, CreateAdminError> {
    let email = normalize_email(email);
    if !valid_email(&email) {
        return Err(CreateAdminError::Invalid {
            field: "email",
            message: "must be a valid email address".into(),
        });
    }
    passwords::check_strength(password, min_password).map_err(|message| {
        CreateAdminError::Invalid {
            field: "password",
            message,
        }
    })?;
    let hash = passwords::hash(password.to_owned()).await?;
    let id = uuid::Uuid::now_v7().to_string();
    let now = Utc::now();
    let admin = Admin {
        id: id.clone(),
        email: email.clone(),
        role,
        created_at: ferrobase_expr::sqlite_time(&now),
    };
    let email_taken = admin.email.clone();
    db.write(move |mut c| {
        Box::pin(async move {
            let inserted = c
                .execute(
                    "INSERT INTO _fb_admins (id, email, password_hash, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
                    &[id.into(), email.into(), hash.into(), role.as_str().into(), now.into()],
                )
                .await;
            match inserted {
                Ok(_) => Ok(()),
                Err(e) if e.unique_violation_fields().is_some() => Err(CreateAdminError::Exists(email_taken)),
                Err(e) => Err(e.into()),
            }
        })
    })
    .await?;
    Ok(admin)
}

pub async fn find_by_email(db: &Db, email: &str) -> Result<Option<(Admin, String)>, Error> {
    let email = normalize_email(email);
    db.read(move |mut c| {
        Box::pin(async move {
            let row = c
                .fetch_one(
                    "SELECT id, email, role, created_at, password_hash FROM _fb_admins WHERE email = $1",
                    &[email.into()],
                    &[ColType::Text, ColType::Text, ColType::Text, ColType::Time, ColType::Text],
                )
                .await?;
            Ok(row.and_then(admin_from_row))
        })
    })
    .await
}

fn admin_from_row(row: Vec<Param>) -> Option<(Admin, String)> {
    let mut it = row.into_iter();
    let id = it.next()?.into_string()?;
    let email = it.next()?.into_string()?;
    let role = AdminRole::parse(it.next()?.as_str()?)?;
    let created_at = ferrobase_expr::sqlite_time(&it.next()?.as_time()?);
    let hash = it.next()?.into_string()?;
    Some((
        Admin {
            id,
            email,
            role,
            created_at,
        },
        hash,
    ))
}

/// Checks credentials and issues a new admin token. Unknown email and wrong password answer
/// the same way, in about the same time.
pub async fn login(
    db: &Db,
    origin: &crate::audit::Origin,
    email: &str,
    password: &str,
    ttl: std::time::Duration,
) -> Result<(String, Admin), Error> {
    if password.len() > passwords::MAX_PASSWORD_BYTES {
        return Err(Error::new(
            Code::InvalidCredentials,
            "Wrong email or password.",
        ));
    }
    let found = find_by_email(db, email).await?;
    let (admin, stored) = match found {
        Some((a, h)) => (Some(a), Some(h)),
        None => (None, None),
    };
    let ok = passwords::verify(password.to_owned(), stored).await;
    let admin = match (ok, admin) {
        (true, Some(a)) => a,
        _ => {
            crate::audit::record_alone(
                db,
                origin,
                crate::audit::Entry {
                    actor: crate::audit::Actor {
                        kind: "anonymous".into(),
                        id: None,
                        email: Some(normalize_email(email).chars().take(254).collect()),
                    },
                    action: "admin.login_failed",
                    target: None,
                    details: serde_json::Value::Null,
                },
            )
            .await?;
            return Err(Error::new(
                Code::InvalidCredentials,
                "Wrong email or password.",
            ));
        }
    };
    let token = tokens::new_token(TOKEN_PREFIX);
    let hash = tokens::hash_token(&token);
    let now = Utc::now();
    let expires = now + Duration::from_std(ttl).unwrap_or(Duration::hours(12));
    let admin_id = admin.id.clone();
    let (origin, actor) = (
        origin.clone(),
        crate::audit::Actor {
            kind: "admin".into(),
            id: Some(admin.id.clone()),
            email: Some(admin.email.clone()),
        },
    );
    db.write(move |mut c| {
        Box::pin(async move {
            c.execute(
                "INSERT INTO _fb_admin_tokens (token_hash, admin_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
                &[hash.into(), admin_id.clone().into(), now.into(), expires.into()],
            )
            .await?;
            crate::audit::record(
                &mut c,
                &origin,
                crate::audit::Entry {
                    actor,
                    action: "admin.login",
                    target: Some(("admin", admin_id)),
                    details: serde_json::Value::Null,
                },
            )
            .await?;
            Ok::<_, Error>(())
        })
    })
    .await?;
    Ok((token, admin))
}

/// The admin behind a token, or 401 (`token_expired` when it existed but lapsed).
pub async fn resolve_token(db: &Db, token: &str) -> Result<Principal, Error> {
    let hash = tokens::hash_token(token);
    let row = db
        .read(move |mut c| {
            Box::pin(async move {
                c.fetch_one(
                    "SELECT a.id, a.email, a.role, t.expires_at FROM _fb_admin_tokens t JOIN _fb_admins a ON a.id = t.admin_id WHERE t.token_hash = $1",
                    &[hash.into()],
                    &[ColType::Text, ColType::Text, ColType::Text, ColType::Time],
                )
                .await
                .map_err(Error::from)
            })
        })
        .await?;
    let Some(row) = row else {
        return Err(Error::unauthenticated("The token is not valid."));
    };
    let mut it = row.into_iter();
    let (Some(admin), Some(expires)) = (admin_of(&mut it), it.next().and_then(|p| p.as_time()))
    else {
        return Err(Error::internal("malformed admin token row"));
    };
    if expires <= Utc::now() {
        return Err(Error::new(
            Code::TokenExpired,
            "The admin token has expired.",
        ));
    }
    Ok(admin)
}

/// The caller made of a row's first three columns: id, email, role.
fn admin_of(it: &mut impl Iterator<Item = Param>) -> Option<Principal> {
    Some(Principal::Admin {
        id: it.next()?.into_string()?,
        email: it.next()?.into_string()?,
        role: it.next()?.as_str().and_then(AdminRole::parse)?,
    })
}

/// The admin with `id`, as a caller (for file tokens, which name the admin rather than one of
/// its sessions: they live five minutes, and a deleted admin's token stops at once).
pub async fn resolve_id(db: &Db, id: &str) -> Result<Principal, Error> {
    let id = id.to_owned();
    let row = db
        .read(move |mut c| {
            Box::pin(async move {
                c.fetch_one(
                    "SELECT id, email, role FROM _fb_admins WHERE id = $1",
                    &[Param::Text(id)],
                    &[ColType::Text, ColType::Text, ColType::Text],
                )
                .await
                .map_err(Error::from)
            })
        })
        .await?;
    let row = row.ok_or_else(|| Error::unauthenticated("The token is not valid."))?;
    admin_of(&mut row.into_iter()).ok_or_else(|| Error::internal("malformed admin row"))
}

pub async fn list_admins(db: &Db) -> Result<Vec<Admin>, Error> {
    db.read(|mut c| {
        Box::pin(async move {
            let rows = c
                .fetch(
                    "SELECT id, email, role, created_at, password_hash FROM _fb_admins ORDER BY created_at, id",
                    &[],
                    &[ColType::Text, ColType::Text, ColType::Text, ColType::Time, ColType::Text],
                )
                .await?;
            Ok(rows.into_iter().filter_map(admin_from_row).map(|(a, _)| a).collect())
        })
    })
    .await
}
