//! OAuth access tokens for FCM, from the service-account key.
//!
//! gcp_auth does the protocol: it signs the JWT-bearer grant with the key, posts it to the
//! key's `token_uri` (retrying a few times) and caches the answer. Two gaps are filled here:
//!
//! - gcp_auth's cache does not re-check after taking its write lock, so N sends that start
//!   together before the first token exists would make N token requests, one after another.
//!   [`TokenSource`] holds one async mutex around the fetch: the first caller fetches, the
//!   others wait and take its token, or its error (so a broken token endpoint costs one
//!   fetch per burst, not one per send).
//! - gcp_auth has no way to drop a cached token that FCM rejected (401 before expiry, e.g.
//!   the key was rotated). [`TokenSource::discard`] builds a fresh `CustomServiceAccount`
//!   (cheap: key parsing, no I/O), which starts with an empty cache.

use std::sync::Arc;
use std::time::Duration;

use gcp_auth::{CustomServiceAccount, Token, TokenProvider};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The OAuth scope FCM's `messages:send` requires.
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

pub(crate) struct TokenSource {
    /// The key JSON, kept to rebuild the account after a rejected token. Secret.
    key_json: String,
    timeout: Duration,
    state: Mutex<State>,
}

struct State {
    account: CustomServiceAccount,
    token: Option<Arc<Token>>,
    /// The last fetch's error and when it ended: callers that were already waiting take it
    /// instead of fetching again.
    failure: Option<(Instant, String)>,
}

impl TokenSource {
    pub(crate) fn new(key_json: String, timeout: Duration) -> Result<Self, gcp_auth::Error> {
        let account = CustomServiceAccount::from_json(&key_json)?;
        Ok(TokenSource {
            key_json,
            timeout,
            state: Mutex::new(State {
                account,
                token: None,
                failure: None,
            }),
        })
    }

    /// A bearer token that is valid for at least 20 more seconds (gcp_auth's margin).
    pub(crate) async fn token(&self) -> Result<Arc<Token>, String> {
        let asked = Instant::now();
        let mut state = self.state.lock().await;
        if let Some(token) = &state.token
            && !token.has_expired()
        {
            return Ok(token.clone());
        }
        if let Some((at, why)) = &state.failure
            && *at >= asked
        {
            return Err(why.clone());
        }
        let fetched = tokio::time::timeout(self.timeout, state.account.token(&[SCOPE])).await;
        let result = match fetched {
            Ok(Ok(token)) => Ok(token),
            Ok(Err(e)) => Err(error_chain(&e)),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        match &result {
            Ok(token) => {
                state.token = Some(token.clone());
                state.failure = None;
            }
            Err(why) => {
                tracing::warn!(error = %why, "FCM: OAuth token fetch failed");
                state.failure = Some((Instant::now(), why.clone()));
            }
        }
        result
    }

    /// Forgets `rejected` (if it is still the cached token), so the next [`token`] call
    /// fetches a new one.
    ///
    /// [`token`]: TokenSource::token
    pub(crate) async fn discard(&self, rejected: &Token) {
        let mut state = self.state.lock().await;
        if state
            .token
            .as_ref()
            .is_some_and(|t| t.as_str() == rejected.as_str())
        {
            state.token = None;
            // The same key was accepted by `new`, so this only fails if memory does.
            if let Ok(account) = CustomServiceAccount::from_json(&self.key_json) {
                state.account = account;
            }
        }
    }
}

/// An error with its causes, `a: b: c`, for the delivery's reason.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
