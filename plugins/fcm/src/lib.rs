//! Firebase Cloud Messaging (HTTP v1) as a Ferrobase [`PushProvider`].
//!
//! A thin sender on purpose: `POST {base_url}/v1/projects/{project}/messages:send` with an
//! OAuth bearer token from the service-account key, one message per device. The crates that
//! could have done it do not fit: `fcm` speaks only the legacy `fcm/send` API with a server
//! key, which Google shut down; the v1 crates (`fcm_v1`, `fcm-rs`, `fcm-service`) hard-code
//! Google's URL (so no loopback tests, no proxy) and bring old or OpenSSL HTTP stacks; the
//! generated `google-fcm1` client is heavy and pulls ring. So: gcp_auth for the OAuth part (it
//! honours the key's `token_uri`, allows `http://` for tests, caches tokens) and reqwest with
//! a configurable base URL for the rest, both on rustls with aws-lc-rs.
//!
//! # Layout
//!
//! - [`config`]: the `[push.fcm]` section and its checks ([`Config`], [`ConfigError`]).
//! - `auth`: access tokens, fetched once and shared by concurrent sends.
//! - `payload`: the request body per platform, and [`PushProvider::validate`]'s limits.
//! - `errors`: FCM's `google.rpc.Status` answers mapped to [`Outcome`]s.
//!
//! Concurrency: one `reqwest::Client` (a connection pool; HTTP/2 multiplexing where the server
//! negotiates it by ALPN, as `fcm.googleapis.com` does) and one token source behind `&self`,
//! so the server can keep many sends in flight on one provider.

pub mod config;

mod auth;
mod errors;
mod payload;

use std::fmt;
use std::time::SystemTime;

use ferrobase_plugin_api::{BoxFuture, Device, Invalid, Message, Outcome, PushProvider, Retry};

pub use config::{Config, ConfigError};

use auth::{TokenSource, error_chain};
use errors::FcmFailure;

/// Sends through FCM HTTP v1. Cheap to share (`Arc<dyn PushProvider>`); see the crate doc.
pub struct FcmProvider {
    http: reqwest::Client,
    tokens: TokenSource,
    /// `{base_url}/v1/projects/{project}/messages:send`.
    endpoint: String,
    project_id: String,
    platforms: Vec<String>,
}

impl fmt::Debug for FcmProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FcmProvider")
            .field("endpoint", &self.endpoint)
            .field("platforms", &self.platforms)
            .finish_non_exhaustive()
    }
}

impl FcmProvider {
    /// Checks the config and reads the key; no network I/O (the first send fetches a token).
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        let resolved = config.resolve()?;
        let tokens = TokenSource::new(resolved.key_json, config.timeout).map_err(|e| {
            ConfigError::BadKey {
                key: resolved.key_name,
                reason: error_chain(&e),
            }
        })?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("ferrobase-fcm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::Http(error_chain(&e)))?;
        Ok(FcmProvider {
            http,
            tokens,
            endpoint: resolved.endpoint,
            project_id: resolved.project_id,
            platforms: config.platforms,
        })
    }

    /// The Firebase project messages are sent as.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    async fn deliver(&self, device: &Device, message: &Message) -> Outcome {
        let body = payload::request_body(device, message, SystemTime::now());
        let mut refreshed = false;
        loop {
            let token = match self.tokens.token().await {
                Ok(token) => token,
                Err(why) => {
                    return Outcome::Failed {
                        reason: format!("FCM: could not obtain an OAuth access token: {why}"),
                        retry: Retry::Later(None),
                    };
                }
            };
            let sent = self
                .http
                .post(&self.endpoint)
                .bearer_auth(token.as_str())
                .json(&body)
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(e) => {
                    let what = if e.is_timeout() {
                        "timed out"
                    } else {
                        "failed"
                    };
                    return Outcome::Failed {
                        reason: format!("FCM request {what}: {}", error_chain(&e)),
                        retry: Retry::Later(None),
                    };
                }
            };
            let status = response.status();
            if status.is_success() {
                // Accepted even if the body is odd: the id is only for the record.
                let name = response
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(str::to_owned));
                return Outcome::Sent { provider_id: name };
            }
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let text = response.text().await.unwrap_or_default();
            let failure = FcmFailure::parse(status, retry_after.as_deref(), &text);
            if failure.token_rejected() && !refreshed {
                // Revoked or rotated before its expiry: one retry with a new token.
                tracing::info!("FCM refused the cached access token; fetching a new one");
                self.tokens.discard(&token).await;
                refreshed = true;
                continue;
            }
            return failure.outcome();
        }
    }
}

impl PushProvider for FcmProvider {
    fn name(&self) -> &str {
        "fcm"
    }

    fn platforms(&self) -> &[String] {
        &self.platforms
    }

    fn validate(&self, message: &Message) -> Result<(), Invalid> {
        payload::validate(message, self.platforms.iter().any(|p| p == "ios"))
    }

    fn send<'a>(&'a self, device: &'a Device, message: &'a Message) -> BoxFuture<'a, Outcome> {
        Box::pin(self.deliver(device, message))
    }
}
