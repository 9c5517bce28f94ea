//! Access tokens: short-lived JWTs (HS256) signed with a key named by `kid`, so keys can be
//! rotated without signing everyone out — old keys keep verifying until retired. Keys live in
//! the database so every replica shares them; a token naming an unknown `kid` triggers one
//! reload (another replica may have rotated).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine;
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::db::{ColType, Db, Param};
use crate::error::{Code, Error};

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The session id: revoking the session rejects the token on the next request.
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
    /// Always "access": a token minted for another purpose is never accepted here.
    pub typ: String,
}

#[derive(Default)]
struct KeySet {
    /// When an unknown `kid` last caused a reload.
    last_reload: Option<std::time::Instant>,
    current: Option<String>,
    secrets: HashMap<String, Vec<u8>>,
}

/// The signing keys, shared by every request.
#[derive(Clone, Default)]
pub struct Keys(Arc<RwLock<KeySet>>);

impl Keys {
    /// Loads the keys, creating the first one on a fresh database.
    pub async fn load(db: &Db) -> Result<Keys, Error> {
        let keys = Keys::default();
        keys.reload(db).await?;
        if keys.current().is_none() {
            keys.rotate(db).await?;
        }
        Ok(keys)
    }

    async fn reload(&self, db: &Db) -> Result<(), Error> {
        let rows = db
            .read(|mut c| {
                Box::pin(async move {
                    c.fetch(
                        "SELECT kid, secret, retired_at FROM _fb_signing_keys ORDER BY created_at, kid",
                        &[],
                        &[ColType::Text, ColType::Text, ColType::Time],
                    )
                    .await
                    .map_err(Error::from)
                })
            })
            .await?;
        let mut set = KeySet::default();
        for r in rows {
            let mut it = r.into_iter();
            let (Some(kid), Some(secret), retired) = (
                it.next().and_then(Param::into_string),
                it.next().and_then(Param::into_string),
                it.next().and_then(|p| p.as_time()),
            ) else {
                continue;
            };
            let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(secret) else {
                continue;
            };
            if retired.is_none() {
                set.current = Some(kid.clone());
            }
            if retired.is_none_or(|t| t > Utc::now()) {
                set.secrets.insert(kid, bytes);
            }
        }
        match self.0.write() {
            Ok(mut g) => {
                set.last_reload = g.last_reload;
                *g = set;
            }
            Err(p) => *p.into_inner() = set,
        }
        Ok(())
    }

    fn may_reload(&self) -> bool {
        let Ok(mut g) = self.0.write() else {
            return false;
        };
        if g.last_reload
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1))
        {
            return false;
        }
        g.last_reload = Some(std::time::Instant::now());
        true
    }

    fn current(&self) -> Option<(String, Vec<u8>)> {
        let g = self.0.read().ok()?;
        let kid = g.current.clone()?;
        let secret = g.secrets.get(&kid)?.clone();
        Some((kid, secret))
    }

    fn secret(&self, kid: &str) -> Option<Vec<u8>> {
        self.0.read().ok()?.secrets.get(kid).cloned()
    }

    /// Adds a new signing key and makes it current; older keys keep verifying until they are
    /// retired (`retired_at`), which is when their tokens' lifetime has passed.
    pub async fn rotate(&self, db: &Db) -> Result<String, Error> {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let kid = uuid::Uuid::now_v7().simple().to_string()[..16].to_owned();
        let encoded = base64::engine::general_purpose::STANDARD.encode(secret);
        let k = kid.clone();
        db.write(move |mut c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO _fb_signing_keys (kid, secret, created_at) VALUES ($1, $2, $3)",
                    &[
                        Param::Text(k),
                        Param::Text(encoded),
                        Param::Time(Utc::now()),
                    ],
                )
                .await?;
                Ok::<_, Error>(())
            })
        })
        .await?;
        self.reload(db).await?;
        Ok(kid)
    }

    /// A signed access token for `user` in `session`, valid for `ttl`.
    pub fn issue(
        &self,
        user: &str,
        session: &str,
        ttl: std::time::Duration,
    ) -> Result<String, Error> {
        self.issue_typed(user, session, ttl, "access")
    }

    /// A token for another purpose (`typ`), e.g. `file`: never accepted as an access token.
    pub fn issue_typed(
        &self,
        user: &str,
        session: &str,
        ttl: std::time::Duration,
        typ: &str,
    ) -> Result<String, Error> {
        let (kid, secret) = self
            .current()
            .ok_or_else(|| Error::internal("no signing key"))?;
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user.to_owned(),
            sid: session.to_owned(),
            iat: now,
            exp: now + i64::try_from(ttl.as_secs()).unwrap_or(900),
            typ: typ.into(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid);
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret))
            .map_err(Error::internal)
    }

    /// Verifies signature, algorithm (HS256 only: `alg: none` and key-confusion are refused),
    /// expiry and purpose. Says nothing about revocation: the caller checks the session.
    pub async fn verify(&self, db: &Db, token: &str) -> Result<Claims, Error> {
        self.verify_typed(db, token, "access").await
    }

    /// Like [`Keys::verify`] for a token of purpose `typ`.
    pub async fn verify_typed(&self, db: &Db, token: &str, typ: &str) -> Result<Claims, Error> {
        self.verify_purposes(db, token, &[typ]).await
    }

    /// Like [`Keys::verify_typed`] for a token of any of the purposes `typs`; the claims say
    /// which one it is.
    pub async fn verify_purposes(
        &self,
        db: &Db,
        token: &str,
        typs: &[&str],
    ) -> Result<Claims, Error> {
        let invalid = || Error::unauthenticated("The access token is not valid.");
        if token.len() > 4096 {
            return Err(invalid());
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        if header.alg != Algorithm::HS256 {
            return Err(invalid());
        }
        let kid = header.kid.ok_or_else(invalid)?;
        let secret = match self.secret(&kid) {
            Some(s) => s,
            None => {
                // An unknown kid may be a key another replica just added; reload at most once a
                // second so forged tokens cannot turn into a database query each.
                if !self.may_reload() {
                    return Err(invalid());
                }
                self.reload(db).await?;
                self.secret(&kid).ok_or_else(invalid)?
            }
        };
        let mut validation = Validation::new(Algorithm::HS256);
        // Tokens are minted and checked by the same servers: no clock skew to allow for.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data =
            jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&secret), &validation)
                .map_err(|e| match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => Error::new(
                        Code::TokenExpired,
                        "The access token has expired; refresh it.",
                    ),
                    _ => invalid(),
                })?;
        if !typs.contains(&data.claims.typ.as_str()) {
            return Err(invalid());
        }
        Ok(data.claims)
    }
}
