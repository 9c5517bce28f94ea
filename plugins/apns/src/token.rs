//! The provider token (JWT) for token auth, signed once and shared by every send.
//!
//! Apple rejects tokens older than an hour (403 `ExpiredProviderToken`) and answers 429
//! `TooManyProviderTokenUpdates` to a provider that changes its token more often than every
//! 20 minutes. So a token is reused for 40 minutes, and the cache is a mutex: with hundreds of
//! sends in flight, exactly one of them re-signs (ES256 signing takes microseconds, holding the
//! lock for it is cheaper than coordinating around it).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// A token is re-signed when it is this old.
const REUSE_SECS: u64 = 40 * 60;
/// Never re-sign a token younger than this, even when Apple calls it expired.
const MIN_REFRESH_SECS: u64 = 20 * 60;

/// A signed token and when it was issued (its `iat`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Signed {
    pub jwt: Arc<str>,
    pub issued_at: u64,
}

pub(crate) struct ProviderToken {
    key: EncodingKey,
    header: Header,
    team_id: String,
    cached: Mutex<Option<Signed>>,
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
}

impl ProviderToken {
    /// Parses the `.p8` key and signs a first token, so a key that cannot sign is a config
    /// error at start and not a failure on every send.
    pub fn new(
        p8_pem: &str,
        key_id: &str,
        team_id: &str,
    ) -> Result<Self, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key_id.to_owned());
        let token = ProviderToken {
            key: EncodingKey::from_ec_pem(p8_pem.as_bytes())?,
            header,
            team_id: team_id.to_owned(),
            cached: Mutex::new(None),
        };
        let first = token.sign(now())?;
        *token.lock() = Some(first);
        Ok(token)
    }

    /// The token to send at `now` (unix seconds): the cached one while younger than 40 min.
    pub fn current(&self, now: u64) -> Result<Signed, jsonwebtoken::errors::Error> {
        let mut cached = self.lock();
        if let Some(signed) = cached.as_ref()
            && now.saturating_sub(signed.issued_at) < REUSE_SECS
        {
            return Ok(signed.clone());
        }
        let signed = self.sign(now)?;
        *cached = Some(signed.clone());
        Ok(signed)
    }

    /// After Apple answered `ExpiredProviderToken` to `rejected`: the token to retry with, or
    /// `None` when retrying cannot help (the rejected token is younger than 20 minutes, so a
    /// new one would be refused too, or be a `TooManyProviderTokenUpdates`).
    pub fn refresh(&self, rejected: &Signed, now: u64) -> Option<Signed> {
        let mut cached = self.lock();
        if let Some(signed) = cached.as_ref()
            && signed.jwt != rejected.jwt
        {
            // Another send refreshed it meanwhile.
            return Some(signed.clone());
        }
        if now.saturating_sub(rejected.issued_at) < MIN_REFRESH_SECS {
            return None;
        }
        let signed = self.sign(now).ok()?;
        *cached = Some(signed.clone());
        Some(signed)
    }

    fn sign(&self, now: u64) -> Result<Signed, jsonwebtoken::errors::Error> {
        let claims = Claims {
            iss: &self.team_id,
            iat: now,
        };
        let jwt = jsonwebtoken::encode(&self.header, &claims, &self.key)?;
        Ok(Signed {
            jwt: jwt.into(),
            issued_at: now,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<Signed>> {
        self.cached.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> ProviderToken {
        let key = ferrobase_push_testkit::apns::signing_key();
        ProviderToken::new(&key.p8_pem, &key.key_id, &key.team_id).unwrap()
    }

    #[test]
    fn reused_for_40_minutes_then_resigned() {
        let token = token();
        let start = now();
        let first = token.current(start).unwrap();
        assert_eq!(token.current(start + 39 * 60).unwrap(), first);
        let second = token.current(start + 40 * 60).unwrap();
        assert_eq!(second.issued_at, start + 40 * 60);
        assert_eq!(token.current(start + 41 * 60).unwrap(), second);
    }

    #[test]
    fn refresh_after_expired_only_when_older_than_20_minutes() {
        let token = token();
        let start = now();
        let first = token.current(start).unwrap();
        assert_eq!(token.refresh(&first, start + 19 * 60), None);
        let fresh = token.refresh(&first, start + 21 * 60).unwrap();
        assert_ne!(fresh, first);
        // A second send rejected with the old token retries with the new one, no re-sign.
        assert_eq!(token.refresh(&first, start + 22 * 60), Some(fresh.clone()));
        assert_eq!(token.current(start + 22 * 60).unwrap(), fresh);
    }

    #[test]
    fn header_and_claims_are_apples() {
        let token = token();
        let signed = token.current(now()).unwrap();
        let header = jsonwebtoken::decode_header(&*signed.jwt).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some("KEY1234567"));
        let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode(&*signed.jwt)
            .unwrap()
            .claims;
        assert_eq!(
            claims,
            serde_json::json!({"iss": "TEAM123456", "iat": signed.issued_at})
        );
    }
}
