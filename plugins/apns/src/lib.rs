//! Ferrobase push provider for the Apple Push Notification service.
//!
//! A thin client of Apple's provider API ("Sending notification requests to APNs"):
//! `POST {base}/3/device/{token}` over HTTP/2 and TLS, with token auth (an ES256 JWT from the
//! `.p8` key) or certificate auth (a TLS client certificate).
//!
//! Why not the `a2` crate, the obvious choice: its endpoint cannot be changed (private builder,
//! baked-in web roots), so its delivery path could never be tested against a loopback APNs, and
//! it drags a second TLS stack (rustls 0.22 + ring). This crate is reqwest (rustls on aws-lc-rs,
//! like the rest of Ferrobase) + jsonwebtoken with a configurable base URL, tested end to end
//! against `ferrobase_push_testkit::apns::FakeApns`.
//!
//! # Layout
//! - [`config`]: the `[push.apns]` section, credentials, and the one shared HTTP/2 client.
//! - `token`: the cached provider JWT (reused 40 min, never re-signed within 20).
//! - `payload`: message → JSON body and `apns-*` headers; Apple's size limits.
//! - here: the [`PushProvider`] implementation and Apple's answers → [`Outcome`].

use std::time::Duration;

use ferrobase_plugin_api::{BoxFuture, Device, Invalid, Message, Outcome, PushProvider, Retry};

pub mod config;
mod payload;
mod token;

pub use config::{Config, ConfigError, Environment};

use config::Auth;
use token::Signed;

/// Delivers to iOS (and whatever [`Config::platforms`] lists) through APNs.
pub struct ApnsProvider {
    /// One client, so one HTTP/2 connection multiplexes every send.
    client: reqwest::Client,
    base: reqwest::Url,
    topic: String,
    auth: Auth,
    platforms: Vec<String>,
}

/// What APNs answered, before it becomes an [`Outcome`].
struct Answer {
    status: u16,
    apns_id: Option<String>,
    retry_after: Option<Duration>,
    /// Apple's `reason`, or `HTTP <status>` when the body had none.
    reason: String,
}

impl ApnsProvider {
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        if config.topic.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "topic (the app's bundle id) is required".to_owned(),
            ));
        }
        let auth = config.auth()?;
        Ok(ApnsProvider {
            client: config.client(&auth)?,
            base: config.base_url()?,
            topic: config.topic,
            auth,
            platforms: config.platforms,
        })
    }

    async fn deliver(&self, device: &Device, message: &Message) -> Outcome {
        let body = payload::payload(message, true).to_string();
        let token = match &self.auth {
            Auth::Token(tokens) => match tokens.current(token::now()) {
                Ok(signed) => Some(signed),
                Err(e) => return failed(format!("signing the provider token: {e}"), Retry::Never),
            },
            Auth::Certificate(_) => None,
        };
        let mut answer = self.post(device, message, &body, token.as_ref()).await;
        if let (Ok(rejected), Auth::Token(tokens), Some(used)) = (&answer, &self.auth, &token)
            && rejected.status == 403
            && rejected.reason == "ExpiredProviderToken"
            && let Some(fresh) = tokens.refresh(used, token::now())
        {
            answer = self.post(device, message, &body, Some(&fresh)).await;
        }
        match answer {
            Ok(answer) => outcome(answer),
            // Connecting, TLS, a reset connection, a timeout: APNs may well take it later.
            Err(e) => failed(
                format!("APNs request failed: {}", error_chain(&e)),
                Retry::Later(None),
            ),
        }
    }

    async fn post(
        &self,
        device: &Device,
        message: &Message,
        body: &str,
        token: Option<&Signed>,
    ) -> Result<Answer, reqwest::Error> {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            // Pushed as a segment, so a malformed token is escaped, never a path of its own.
            segments
                .pop_if_empty()
                .extend(["3", "device", &device.token]);
        }
        let mut request = self
            .client
            .post(url)
            .header("apns-topic", &self.topic)
            .header("content-type", "application/json")
            .body(body.to_owned());
        for (name, value) in payload::headers(message) {
            request = request.header(name, value);
        }
        if let Some(token) = token {
            request = request.header("authorization", format!("bearer {}", token.jwt));
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let apns_id = header("apns-id");
        let retry_after = header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response.bytes().await?;
        let reason = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("reason")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("HTTP {status}"));
        Ok(Answer {
            status,
            apns_id,
            retry_after,
            reason,
        })
    }
}

fn failed(reason: String, retry: Retry) -> Outcome {
    Outcome::Failed { reason, retry }
}

/// Apple's status codes and reasons → what the server should do about them.
fn outcome(answer: Answer) -> Outcome {
    let Answer {
        status,
        apns_id,
        retry_after,
        reason,
    } = answer;
    match status {
        200 => Outcome::Sent {
            provider_id: apns_id,
        },
        410 if reason == "Unregistered" || reason == "ExpiredToken" => {
            Outcome::InvalidToken { reason }
        }
        // A hint, not a verdict: usually a sandbox token sent to production or the reverse,
        // so the device is kept.
        400 if reason == "BadDeviceToken" => failed(
            "BadDeviceToken (a sandbox token sent to production, or the reverse?)".to_owned(),
            Retry::Never,
        ),
        429 | 500..=599 => failed(reason, Retry::Later(retry_after)),
        _ => failed(reason, Retry::Never),
    }
}

/// reqwest's top-level message alone ("error sending request") hides the cause (a certificate
/// the system does not trust, a refused connection).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl PushProvider for ApnsProvider {
    fn name(&self) -> &str {
        "apns"
    }

    fn platforms(&self) -> &[String] {
        &self.platforms
    }

    fn validate(&self, message: &Message) -> Result<(), Invalid> {
        payload::validate(message)
    }

    fn send<'a>(&'a self, device: &'a Device, message: &'a Message) -> BoxFuture<'a, Outcome> {
        Box::pin(self.deliver(device, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, reason: &str, retry_after: Option<u64>) -> Outcome {
        outcome(Answer {
            status,
            apns_id: Some("id".into()),
            retry_after: retry_after.map(Duration::from_secs),
            reason: reason.into(),
        })
    }

    #[test]
    fn answers_map_to_outcomes() {
        assert_eq!(
            answer(200, "HTTP 200", None),
            Outcome::Sent {
                provider_id: Some("id".into())
            }
        );
        assert!(matches!(
            answer(410, "Unregistered", None),
            Outcome::InvalidToken { .. }
        ));
        assert!(matches!(
            answer(400, "BadDeviceToken", None),
            Outcome::Failed {
                retry: Retry::Never,
                ..
            }
        ));
        assert_eq!(
            answer(503, "ServiceUnavailable", Some(3)),
            failed(
                "ServiceUnavailable".into(),
                Retry::Later(Some(Duration::from_secs(3)))
            )
        );
        assert_eq!(
            answer(413, "PayloadTooLarge", None),
            failed("PayloadTooLarge".into(), Retry::Never)
        );
    }
}
