//! App users: sign-up, sign-in, sessions, anonymous accounts, profile, email verification and
//! password recovery. HTTP handlers in `http::auth` are thin wrappers over these functions.
//!
//! Layout: `keys` (JWT access tokens), `sessions` (refresh tokens, revocation), `users` (the
//! built-in collection), this file (the flows).

pub mod cache;
pub mod keys;
pub mod sessions;
pub mod users;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::access::Principal;
use crate::admin::{normalize_email, valid_email};
use crate::audit::{self, Actor, Entry, Origin};
use crate::catalog::{Catalog, CollectionInfo};
use crate::config::Settings;
use crate::db::{ColType, Conn, Db, Param};
use crate::error::{Code, Error};
use crate::records::row_to_record;
use crate::records::validate::{self, Mode};
use crate::{mail, passwords, tokens};
pub use keys::Keys;
use sessions::Refreshed;

/// Purpose of a file token that names an admin.
pub const ADMIN_FILE: &str = "file:admin";
/// Purpose of a file token that names an API key.
pub const KEY_FILE: &str = "file:key";

/// What the flows need.
pub struct AuthCtx<'a> {
    pub db: &'a Db,
    pub keys: &'a Keys,
    pub settings: &'a Settings,
    pub catalog: Arc<Catalog>,
    pub cache: &'a cache::SessionCache,
}

/// The answer to a successful sign-up, sign-in or refresh.
#[derive(Debug, Serialize)]
pub struct TokenPair {
    pub user: Map<String, Value>,
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
}

fn users_info(catalog: &Catalog) -> Result<Arc<CollectionInfo>, Error> {
    catalog
        .get("users")
        .ok_or_else(|| Error::internal("users collection missing"))
}

/// A user record (without secrets) by id.
pub async fn user_record(
    c: &mut Conn<'_>,
    info: &CollectionInfo,
    id: &str,
) -> Result<Option<Map<String, Value>>, Error> {
    let sql = format!("SELECT {} FROM c_users WHERE id = $1", info.select_list);
    Ok(
        c.fetch_one(&sql, &[Param::Text(id.to_owned())], &info.col_types)
            .await?
            .map(|r| row_to_record(info, r)),
    )
}

impl AuthCtx<'_> {
    fn pair(
        &self,
        user: Map<String, Value>,
        session: &str,
        refresh: String,
    ) -> Result<TokenPair, Error> {
        let id = user
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let ttl = self.settings.access_token_ttl;
        Ok(TokenPair {
            access_token: self.keys.issue(&id, session, ttl)?,
            refresh_token: refresh,
            token_type: "Bearer",
            expires_in: ttl.as_secs(),
            user,
        })
    }

    fn check_password(&self, password: &str) -> Result<(), Error> {
        passwords::check_strength(password, self.settings.min_password_length)
            .map_err(|m| Error::field("password", m))
    }

    /// Resolves an access token to its user, checking the session is live and the user
    /// enabled on every request (revocation takes effect at once).
    pub async fn principal(&self, token: &str) -> Result<Principal, Error> {
        let claims = self.keys.verify(self.db, token).await?;
        self.live_principal(claims).await
    }

    /// A short-lived token for file downloads by image loaders that cannot send headers: the
    /// caller's own rights, tied to the session (revoking it ends the token too).
    pub fn file_token(
        &self,
        user: &str,
        session: &str,
        ttl: std::time::Duration,
    ) -> Result<String, Error> {
        self.keys.issue_typed(user, session, ttl, "file")
    }

    /// A file token for an admin or an API key (`typ` [`ADMIN_FILE`] or [`KEY_FILE`]): it names
    /// the caller, which is looked up again on every download.
    pub fn caller_file_token(
        &self,
        id: &str,
        typ: &str,
        ttl: std::time::Duration,
    ) -> Result<String, Error> {
        self.keys.issue_typed(id, "", ttl, typ)
    }

    /// The caller a file token names: a user whose session is still live, an admin that still
    /// exists, or an API key neither revoked nor expired.
    pub async fn file_principal(&self, token: &str) -> Result<Principal, Error> {
        let claims = self
            .keys
            .verify_purposes(self.db, token, &["file", ADMIN_FILE, KEY_FILE])
            .await?;
        match claims.typ.as_str() {
            ADMIN_FILE => crate::admin::resolve_id(self.db, &claims.sub).await,
            KEY_FILE => crate::apikeys::resolve_id(self.db, &claims.sub).await,
            _ => self.live_principal(claims).await,
        }
    }

    async fn live_principal(&self, claims: keys::Claims) -> Result<Principal, Error> {
        let live = match self.cache.get(&claims.sid, &claims.sub) {
            Some(live) => live,
            None => {
                let epoch = self.cache.epoch();
                let (sub, sid) = (claims.sub.clone(), claims.sid.clone());
                let state = self
                    .db
                    .read(move |mut c| {
                        Box::pin(
                            async move { sessions::check(&mut c, &sub, &sid, Utc::now()).await },
                        )
                    })
                    .await?;
                let (email, verified, role) = state.ok_or_else(|| {
                    Error::unauthenticated("The session has ended; sign in again.")
                })?;
                let live = cache::LiveSession {
                    user: claims.sub.clone(),
                    email,
                    verified,
                    role,
                };
                self.cache.put(&claims.sid, epoch, live.clone());
                live
            }
        };
        Ok(Principal::User {
            id: claims.sub,
            email: live.email,
            verified: live.verified,
            role: live.role,
            tenant: String::new(),
            session: claims.sid,
        })
    }

    /// Call after committing anything that ends sessions or disables users.
    pub fn sessions_changed(&self) {
        self.cache.invalidate();
    }

    /// `POST /v1/auth/signup`.
    pub async fn signup(
        &self,
        origin: &Origin,
        email: &str,
        password: &str,
        data: Option<Map<String, Value>>,
    ) -> Result<TokenPair, Error> {
        let email = normalize_email(email);
        if !valid_email(&email) {
            return Err(Error::field("email", "must be a valid email address"));
        }
        self.check_password(password)?;
        let info = users_info(&self.catalog)?;
        let data = data.unwrap_or_default();
        let checked = validate::validate(&info, &data, Mode::Create)?;
        let hash = passwords::hash(password.to_owned()).await?;
        let (origin, ttl, mail_cfg, verify) = (
            origin.clone(),
            self.settings.refresh_token_ttl,
            self.settings.mail.clone(),
            self.send_verification(),
        );
        let email_ttl = self.settings.email_token_ttl;
        let out = self
            .db
            .write(move |mut c| {
                Box::pin(async move {
                    let now = Utc::now();
                    let id = uuid::Uuid::now_v7().to_string();
                    insert_user(
                        &mut c,
                        &id,
                        Some(&email),
                        Some(&hash),
                        false,
                        &checked.values,
                        now,
                    )
                    .await?;
                    let (sid, refresh) = sessions::open(&mut c, &id, &origin, now, ttl).await?;
                    audit::record(
                        &mut c,
                        &origin,
                        Entry {
                            actor: Actor::user(&id, Some(&email)),
                            action: "auth.signup",
                            target: Some(("user", id.clone())),
                            details: Value::Null,
                        },
                    )
                    .await?;
                    if verify {
                        let token =
                            email_token(&mut c, &id, "verify", &email, now, email_ttl).await?;
                        mail::enqueue(
                            &mut c,
                            &mail_cfg,
                            &email,
                            mail::MailKind::VerifyEmail,
                            &token,
                        )
                        .await?;
                    }
                    let user = user_record(&mut c, &info, &id)
                        .await?
                        .ok_or_else(|| Error::internal("user vanished"))?;
                    Ok::<_, Error>((user, sid, refresh))
                })
            })
            .await?;
        let (user, sid, refresh) = out;
        self.pair(user, &sid, refresh)
    }

    fn send_verification(&self) -> bool {
        self.settings.verify_on_signup && !self.settings.smtp.host.is_empty()
    }

    /// `POST /v1/auth/anonymous`: a guest account, upgradeable later by setting email+password.
    pub async fn anonymous(&self, origin: &Origin) -> Result<TokenPair, Error> {
        let info = users_info(&self.catalog)?;
        // A guest gets the declared defaults of `users.toml` fields (required ones are asked
        // for when the account is upgraded).
        let defaults: Vec<(String, Param)> = info
            .def
            .fields
            .iter()
            .filter(|(name, f)| f.default.is_some() && !info.readonly.contains(name))
            .filter_map(|(name, _)| {
                let one: Map<String, Value> = info
                    .def
                    .fields
                    .get(name)?
                    .default
                    .clone()
                    .map(|d| (name.clone(), d))
                    .into_iter()
                    .collect();
                validate::validate(&info, &one, Mode::Update)
                    .ok()?
                    .values
                    .into_iter()
                    .next()
            })
            .collect();
        let (origin, ttl) = (origin.clone(), self.settings.refresh_token_ttl);
        let (user, sid, refresh) = self
            .db
            .write(move |mut c| {
                Box::pin(async move {
                    let now = Utc::now();
                    let id = uuid::Uuid::now_v7().to_string();
                    insert_user(&mut c, &id, None, None, true, &defaults, now).await?;
                    let (sid, refresh) = sessions::open(&mut c, &id, &origin, now, ttl).await?;
                    let user = user_record(&mut c, &info, &id)
                        .await?
                        .ok_or_else(|| Error::internal("user vanished"))?;
                    Ok::<_, Error>((user, sid, refresh))
                })
            })
            .await?;
        self.pair(user, &sid, refresh)
    }

    /// `POST /v1/auth/login`. Unknown email and wrong password answer alike, in about the
    /// same time; a disabled account is told so only after a correct password.
    pub async fn login(
        &self,
        origin: &Origin,
        email: &str,
        password: &str,
    ) -> Result<TokenPair, Error> {
        let email = normalize_email(email);
        let wrong = || Error::new(Code::InvalidCredentials, "Wrong email or password.");
        let found = if password.len() > passwords::MAX_PASSWORD_BYTES || email.len() > 254 {
            None
        } else {
            let e = email.clone();
            self.db
                .read(move |mut c| {
                    Box::pin(async move {
                        c.fetch_one(
                            "SELECT id, password_hash, disabled FROM c_users WHERE email = $1",
                            &[Param::Text(e)],
                            &[ColType::Text, ColType::Text, ColType::Bool],
                        )
                        .await
                        .map_err(Error::from)
                    })
                })
                .await?
        };
        let (id, hash, disabled) = match found {
            Some(r) => {
                let mut it = r.into_iter();
                (
                    it.next().and_then(Param::into_string),
                    it.next().and_then(Param::into_string),
                    matches!(it.next(), Some(Param::Bool(true))),
                )
            }
            None => (None, None, false),
        };
        let ok = passwords::verify(password.to_owned(), hash).await;
        let Some(id) = id.filter(|_| ok) else {
            audit::record_alone(
                self.db,
                origin,
                Entry {
                    actor: Actor {
                        kind: "anonymous".into(),
                        id: None,
                        email: Some(email.chars().take(254).collect()),
                    },
                    action: "auth.login_failed",
                    target: None,
                    details: Value::Null,
                },
            )
            .await?;
            return Err(wrong());
        };
        if disabled {
            return Err(Error::new(
                Code::AccountDisabled,
                "This account is disabled.",
            ));
        }
        let info = users_info(&self.catalog)?;
        let (origin, ttl) = (origin.clone(), self.settings.refresh_token_ttl);
        let (user, sid, refresh) = self
            .db
            .write(move |mut c| {
                Box::pin(async move {
                    let now = Utc::now();
                    let (sid, refresh) = sessions::open(&mut c, &id, &origin, now, ttl).await?;
                    audit::record(
                        &mut c,
                        &origin,
                        Entry {
                            actor: Actor::user(&id, Some(&email)),
                            action: "auth.login",
                            target: Some(("session", sid.clone())),
                            details: Value::Null,
                        },
                    )
                    .await?;
                    let user = user_record(&mut c, &info, &id)
                        .await?
                        .ok_or_else(|| Error::internal("user vanished"))?;
                    Ok::<_, Error>((user, sid, refresh))
                })
            })
            .await?;
        self.pair(user, &sid, refresh)
    }

    /// `POST /v1/auth/refresh`: spends the refresh token and issues the next pair.
    pub async fn refresh(&self, origin: &Origin, token: &str) -> Result<TokenPair, Error> {
        let invalid = || Error::unauthenticated("The refresh token is not valid; sign in again.");
        if !token.starts_with(sessions::REFRESH_PREFIX) || token.len() > 128 {
            return Err(invalid());
        }
        let info = users_info(&self.catalog)?;
        let (origin, token) = (origin.clone(), token.to_owned());
        let outcome = self
            .db
            .write(move |mut c| {
                Box::pin(async move {
                    let now = Utc::now();
                    match sessions::refresh(&mut c, &token, &origin, now).await? {
                        Refreshed::Ok {
                            user,
                            session,
                            refresh,
                        } => {
                            let rec = user_record(&mut c, &info, &user)
                                .await?
                                .ok_or_else(|| Error::internal("user vanished"))?;
                            Ok::<_, Error>(Some((rec, session, refresh)))
                        }
                        Refreshed::Reused { user, session } => {
                            audit::record(
                                &mut c,
                                &origin,
                                Entry {
                                    actor: Actor::user(&user, None),
                                    action: "auth.refresh_reuse",
                                    target: Some(("session", session)),
                                    details: json!({"revoked": true}),
                                },
                            )
                            .await?;
                            Ok(None)
                        }
                        Refreshed::Invalid => Ok(None),
                    }
                })
            })
            .await?;
        let Some((user, sid, refresh)) = outcome else {
            // A reused token may have revoked its session.
            self.sessions_changed();
            return Err(invalid());
        };
        self.pair(user, &sid, refresh)
    }

    /// `GET /v1/auth/me`.
    pub async fn me(&self, user: &str) -> Result<Map<String, Value>, Error> {
        let info = users_info(&self.catalog)?;
        let id = user.to_owned();
        self.db
            .read(move |mut c| Box::pin(async move { user_record(&mut c, &info, &id).await }))
            .await?
            .ok_or_else(|| Error::unauthenticated("The account no longer exists."))
    }

    /// `PATCH /v1/auth/me`: profile fields; `email` + `password` upgrade an anonymous account;
    /// `password` with `current_password` changes it (and ends the other sessions).
    pub async fn update_me(
        &self,
        origin: &Origin,
        principal: &Principal,
        mut body: Map<String, Value>,
    ) -> Result<Map<String, Value>, Error> {
        let Principal::User { id, session, .. } = principal else {
            return Err(Error::unauthenticated("Sign in first."));
        };
        let take_str = |body: &mut Map<String, Value>, k: &str| -> Result<Option<String>, Error> {
            match body.remove(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(Error::field(k, "must be a string")),
            }
        };
        let email = take_str(&mut body, "email")?;
        let password = take_str(&mut body, "password")?;
        let current_password = take_str(&mut body, "current_password")?;
        let info = users_info(&self.catalog)?;
        let checked = validate::validate(&info, &body, Mode::Update)?;
        let row = {
            let id = id.clone();
            self.db
                .read(move |mut c| {
                    Box::pin(async move {
                        c.fetch_one(
                            "SELECT is_anonymous, password_hash, email FROM c_users WHERE id = $1",
                            &[Param::Text(id)],
                            &[ColType::Bool, ColType::Text, ColType::Text],
                        )
                        .await
                        .map_err(Error::from)
                    })
                })
                .await?
                .ok_or_else(|| Error::unauthenticated("The account no longer exists."))?
        };
        let mut it = row.into_iter();
        let anonymous = matches!(it.next(), Some(Param::Bool(true)));
        let stored_hash = it.next().and_then(Param::into_string);
        let mut sets: Vec<(String, Param)> = checked.values;
        let mut upgraded = false;
        let mut password_changed = false;
        if anonymous {
            match (&email, &password) {
                (Some(e), Some(p)) => {
                    let e = normalize_email(e);
                    if !valid_email(&e) {
                        return Err(Error::field("email", "must be a valid email address"));
                    }
                    self.check_password(p)?;
                    sets.push(("email".into(), Param::Text(e)));
                    sets.push((
                        "password_hash".into(),
                        Param::Text(passwords::hash(p.clone()).await?),
                    ));
                    sets.push(("is_anonymous".into(), Param::Bool(false)));
                    upgraded = true;
                }
                (None, None) => {}
                _ => {
                    return Err(Error::field(
                        if email.is_none() { "email" } else { "password" },
                        "an anonymous account upgrades with both email and password",
                    ));
                }
            }
        } else {
            if email.is_some() {
                return Err(Error::field(
                    "email",
                    "changing the email of an account is not supported yet",
                ));
            }
            if let Some(p) = password {
                let cur = current_password.ok_or_else(|| {
                    Error::field("current_password", "is required to change the password")
                })?;
                if !passwords::verify(cur, stored_hash).await {
                    return Err(Error::new(
                        Code::InvalidCredentials,
                        "The current password is wrong.",
                    ));
                }
                self.check_password(&p)?;
                sets.push((
                    "password_hash".into(),
                    Param::Text(passwords::hash(p).await?),
                ));
                password_changed = true;
            }
        }
        let (id, session, origin) = (id.clone(), session.clone(), origin.clone());
        self.db
            .write(move |mut c| {
                Box::pin(async move {
                    let now = Utc::now();
                    let mut params = vec![Param::Text(id.clone()), Param::Time(now)];
                    let mut parts =
                        vec!["updated_at = $2".to_owned(), "version = version + 1".into()];
                    for (k, v) in sets {
                        params.push(v);
                        parts.push(format!("\"{k}\" = ${}", params.len()));
                    }
                    let sql = format!("UPDATE c_users SET {} WHERE id = $1", parts.join(", "));
                    c.execute(&sql, &params).await.map_err(|e| {
                        match e.unique_violation_fields() {
                            Some(_) => Error::conflict("That email is already registered.")
                                .with("errors", json!({"email": "already exists"})),
                            None => e.into(),
                        }
                    })?;
                    if upgraded {
                        audit::record(
                            &mut c,
                            &origin,
                            Entry {
                                actor: Actor::user(&id, None),
                                action: "auth.anonymous_upgraded",
                                target: Some(("user", id.clone())),
                                details: Value::Null,
                            },
                        )
                        .await?;
                    }
                    if password_changed {
                        sessions::revoke_all(&mut c, &id, Some(&session), now).await?;
                        audit::record(
                            &mut c,
                            &origin,
                            Entry {
                                actor: Actor::user(&id, None),
                                action: "auth.password_changed",
                                target: Some(("user", id.clone())),
                                details: Value::Null,
                            },
                        )
                        .await?;
                    }
                    user_record(&mut c, &info, &id)
                        .await?
                        .ok_or_else(|| Error::unauthenticated("The account no longer exists."))
                })
            })
            .await
    }

    /// `DELETE /v1/auth/me` (and the admin delete): the user row, their sessions and their
    /// push devices and preferences.
    pub async fn delete_user(
        &self,
        origin: &Origin,
        actor: Actor,
        user: &str,
    ) -> Result<(), Error> {
        let (origin, user) = (origin.clone(), user.to_owned());
        self.db
            .write(move |mut c| {
                Box::pin(async move {
                    let n = c.execute("DELETE FROM c_users WHERE id = $1", &[Param::Text(user.clone())]).await?;
                    if n == 0 {
                        return Err(Error::not_found("No such user."));
                    }
                    c.execute("UPDATE _fb_sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL", &[Param::Text(user.clone()), Param::Time(Utc::now())]).await?;
                    crate::push::devices::forget_user(&mut c, &user).await?;
                    audit::record(&mut c, &origin, Entry { actor, action: "user.delete", target: Some(("user", user)), details: Value::Null }).await
                })
            })
            .await
    }

    /// `POST /v1/auth/verify-email/request` for the signed-in user.
    pub async fn request_verification(&self, user: &str) -> Result<(), Error> {
        let (user, cfg, ttl) = (
            user.to_owned(),
            self.settings.mail.clone(),
            self.settings.email_token_ttl,
        );
        self.db
            .write(move |mut c| {
                Box::pin(async move {
                    let row = c
                        .fetch_one(
                            "SELECT email, email_verified FROM c_users WHERE id = $1",
                            &[Param::Text(user.clone())],
                            &[ColType::Text, ColType::Bool],
                        )
                        .await?;
                    let Some(row) = row else {
                        return Err(Error::unauthenticated("The account no longer exists."));
                    };
                    let mut it = row.into_iter();
                    let Some(email) = it.next().and_then(Param::into_string) else {
                        return Err(Error::field("email", "the account has no email yet"));
                    };
                    if matches!(it.next(), Some(Param::Bool(true))) {
                        return Ok(());
                    }
                    let token =
                        email_token(&mut c, &user, "verify", &email, Utc::now(), ttl).await?;
                    mail::enqueue(&mut c, &cfg, &email, mail::MailKind::VerifyEmail, &token)
                        .await?;
                    Ok(())
                })
            })
            .await
    }

    /// `POST /v1/auth/verify-email/confirm`.
    pub async fn confirm_verification(&self, origin: &Origin, token: &str) -> Result<(), Error> {
        let (origin, token) = (origin.clone(), token.to_owned());
        self.db
            .write(move |mut c| {
                Box::pin(async move {
                    let now = Utc::now();
                    let (user, email) = spend_email_token(&mut c, &token, "verify", now).await?;
                    c.execute(
                        "UPDATE c_users SET email_verified = $3, updated_at = $4, version = version + 1 WHERE id = $1 AND email = $2",
                        &[Param::Text(user.clone()), Param::Text(email), Param::Bool(true), Param::Time(now)],
                    )
                    .await?;
                    audit::record(&mut c, &origin, Entry { actor: Actor::user(&user, None), action: "auth.email_verified", target: Some(("user", user.clone())), details: Value::Null }).await
                })
            })
            .await
    }

    /// `POST /v1/auth/password-reset/request`: always succeeds, so nobody learns which emails
    /// have accounts; a mail goes out only when one does.
    pub async fn request_reset(&self, origin: &Origin, email: &str) -> Result<(), Error> {
        let email = normalize_email(email);
        if !valid_email(&email) {
            return Err(Error::field("email", "must be a valid email address"));
        }
        let (origin, cfg, ttl) = (
            origin.clone(),
            self.settings.mail.clone(),
            self.settings.email_token_ttl,
        );
        self.db
            .write(move |mut c| {
                Box::pin(async move {
                    let row = c
                        .fetch_one(
                            "SELECT id FROM c_users WHERE email = $1 AND disabled = $2",
                            &[Param::Text(email.clone()), Param::Bool(false)],
                            &[ColType::Text],
                        )
                        .await?;
                    let Some(user) = row
                        .and_then(|r| r.into_iter().next())
                        .and_then(Param::into_string)
                    else {
                        return Ok(());
                    };
                    let token =
                        email_token(&mut c, &user, "reset", &email, Utc::now(), ttl).await?;
                    mail::enqueue(&mut c, &cfg, &email, mail::MailKind::PasswordReset, &token)
                        .await?;
                    audit::record(
                        &mut c,
                        &origin,
                        Entry {
                            actor: Actor::user(&user, Some(&email)),
                            action: "auth.password_reset_requested",
                            target: Some(("user", user.clone())),
                            details: Value::Null,
                        },
                    )
                    .await
                })
            })
            .await
    }

    /// `POST /v1/auth/password-reset/confirm`: sets the password and ends every session.
    pub async fn confirm_reset(
        &self,
        origin: &Origin,
        token: &str,
        password: &str,
    ) -> Result<(), Error> {
        self.check_password(password)?;
        let hash = passwords::hash(password.to_owned()).await?;
        let (origin, token) = (origin.clone(), token.to_owned());
        self.db
            .write(move |mut c| {
                Box::pin(async move {
                    let now = Utc::now();
                    let (user, _) = spend_email_token(&mut c, &token, "reset", now).await?;
                    c.execute(
                        "UPDATE c_users SET password_hash = $2, updated_at = $3, version = version + 1 WHERE id = $1",
                        &[Param::Text(user.clone()), Param::Text(hash), Param::Time(now)],
                    )
                    .await?;
                    sessions::revoke_all(&mut c, &user, None, now).await?;
                    audit::record(&mut c, &origin, Entry { actor: Actor::user(&user, None), action: "auth.password_reset", target: Some(("user", user.clone())), details: Value::Null }).await
                })
            })
            .await
    }
}

/// Inserts a user row; `values` are validated profile/extra fields.
pub async fn insert_user(
    c: &mut Conn<'_>,
    id: &str,
    email: Option<&str>,
    password_hash: Option<&str>,
    anonymous: bool,
    values: &[(String, Param)],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let mut cols = vec![
        "id",
        "created_at",
        "updated_at",
        "version",
        "email",
        "email_verified",
        "password_hash",
        "is_anonymous",
        "disabled",
        "role",
    ]
    .into_iter()
    .map(|s| format!("\"{s}\""))
    .collect::<Vec<_>>();
    let mut params = vec![
        Param::Text(id.to_owned()),
        Param::Time(now),
        Param::Time(now),
        Param::Int(1),
        email.map(str::to_owned).into(),
        Param::Bool(false),
        password_hash.map(str::to_owned).into(),
        Param::Bool(anonymous),
        Param::Bool(false),
        Param::Text("user".into()),
    ];
    for (k, v) in values {
        cols.push(format!("\"{k}\""));
        params.push(v.clone());
    }
    let placeholders = (1..=params.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO c_users ({}) VALUES ({placeholders})",
        cols.join(", ")
    );
    c.execute(&sql, &params)
        .await
        .map_err(|e| match e.unique_violation_fields() {
            Some(f) if f.iter().any(|x| x == "email") || f.is_empty() => {
                Error::conflict("That email is already registered.")
                    .with("errors", json!({"email": "already exists"}))
            }
            Some(_) => Error::conflict("A unique value is already taken."),
            None => e.into(),
        })?;
    Ok(())
}

/// Creates a single-use emailed token (stored hashed) and returns it.
pub async fn email_token(
    c: &mut Conn<'_>,
    user: &str,
    kind: &str,
    email: &str,
    now: DateTime<Utc>,
    ttl: std::time::Duration,
) -> Result<String, Error> {
    let token = tokens::new_token("");
    c.execute(
        "INSERT INTO _fb_email_tokens (token_hash, user_id, kind, email, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            Param::Text(tokens::hash_token(&token)),
            Param::Text(user.to_owned()),
            Param::Text(kind.to_owned()),
            Param::Text(email.to_owned()),
            Param::Time(now),
            Param::Time(now + Duration::from_std(ttl).unwrap_or(Duration::hours(1))),
        ],
    )
    .await?;
    Ok(token)
}

/// Spends an emailed token of `kind`: (user, email), or 400 `invalid_token`.
async fn spend_email_token(
    c: &mut Conn<'_>,
    token: &str,
    kind: &str,
    now: DateTime<Utc>,
) -> Result<(String, String), Error> {
    let invalid = || {
        Error::new(
            Code::InvalidToken,
            "The link is invalid, already used or expired.",
        )
    };
    if token.is_empty() || token.len() > 128 {
        return Err(invalid());
    }
    let hash = tokens::hash_token(token);
    let n = c
        .execute(
            "UPDATE _fb_email_tokens SET used_at = $3 WHERE token_hash = $1 AND kind = $2 AND used_at IS NULL AND expires_at > $3",
            &[Param::Text(hash.clone()), Param::Text(kind.to_owned()), Param::Time(now)],
        )
        .await?;
    if n == 0 {
        return Err(invalid());
    }
    let row = c
        .fetch_one(
            "SELECT user_id, email FROM _fb_email_tokens WHERE token_hash = $1",
            &[Param::Text(hash)],
            &[ColType::Text, ColType::Text],
        )
        .await?
        .ok_or_else(invalid)?;
    let mut it = row.into_iter();
    match (
        it.next().and_then(Param::into_string),
        it.next().and_then(Param::into_string),
    ) {
        (Some(u), Some(e)) => Ok((u, e)),
        _ => Err(invalid()),
    }
}
