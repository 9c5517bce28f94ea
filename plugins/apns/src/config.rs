//! The `[push.apns]` config section, and turning it into credentials and an HTTP/2 client.
//!
//! ```toml
//! [push.apns]
//! environment = "production"   # or "sandbox" (development builds of the app)
//! topic = "com.example.app"    # the app's bundle id, sent as apns-topic
//! # Token auth (recommended): the .p8 key from the developer portal.
//! key_file = "/etc/ferrobase/AuthKey_KEY1234567.p8"   # or key_pem = "-----BEGIN PRIVATE KEY-----…"
//! key_id = "KEY1234567"
//! team_id = "TEAM123456"
//! # Or certificate auth: cert_file/cert_pem + cert_key_file/cert_key_pem (PEM).
//! # ca_file / ca_pem: an extra trusted root (a TLS-intercepting proxy, tests).
//! # base_url = "https://…"      # overrides the environment's URL
//! # platforms = ["ios"]
//! # timeout = "10s"             # or seconds: 10; also "500ms", "1m"
//! ```
//!
//! Certificate auth takes PEM. Apple hands out a `.p12`; convert it with
//! `openssl pkcs12 -in cert.p12 -clcerts -nokeys -out cert.pem` and
//! `openssl pkcs12 -in cert.p12 -nocerts -nodes -out key.pem` (add `-legacy` on OpenSSL 3 for
//! older files).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::token::ProviderToken;

/// Which APNs an app's device tokens belong to: a token from a development build only works
/// with the sandbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// `https://api.push.apple.com`
    #[default]
    Production,
    /// `https://api.sandbox.push.apple.com`
    Sandbox,
}

impl Environment {
    pub fn url(self) -> &'static str {
        match self {
            Environment::Production => "https://api.push.apple.com",
            Environment::Sandbox => "https://api.sandbox.push.apple.com",
        }
    }
}

/// `[push.apns]`. Exactly one auth method: token (`key_file`/`key_pem`, `key_id`, `team_id`)
/// or certificate (`cert_file`/`cert_pem`, `cert_key_file`/`cert_key_pem`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub environment: Environment,
    /// Overrides the environment's URL (tests point it at a loopback APNs). Must be https.
    pub base_url: Option<String>,
    /// The app's bundle id (`apns-topic`). Required.
    pub topic: String,
    /// The `.p8` key (PKCS#8 EC private key) as a file…
    pub key_file: Option<PathBuf>,
    /// …or inline PEM.
    pub key_pem: Option<String>,
    pub key_id: Option<String>,
    pub team_id: Option<String>,
    /// The client certificate (PEM) as a file or inline.
    pub cert_file: Option<PathBuf>,
    pub cert_pem: Option<String>,
    /// The client certificate's private key (PEM) as a file or inline.
    pub cert_key_file: Option<PathBuf>,
    pub cert_key_pem: Option<String>,
    /// Extra trusted root certificates (PEM), added to the system's.
    pub ca_file: Option<PathBuf>,
    pub ca_pem: Option<String>,
    /// Device platforms routed to APNs.
    #[serde(default = "default_platforms")]
    pub platforms: Vec<String>,
    /// Per request, connecting included: seconds (`10`) or `"10s"`, `"500ms"`, `"1m"`.
    #[serde(default = "default_timeout", deserialize_with = "deserialize_timeout")]
    pub timeout: Duration,
}

fn default_platforms() -> Vec<String> {
    vec!["ios".to_owned()]
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for Config {
    fn default() -> Self {
        Config {
            environment: Environment::default(),
            base_url: None,
            topic: String::new(),
            key_file: None,
            key_pem: None,
            key_id: None,
            team_id: None,
            cert_file: None,
            cert_pem: None,
            cert_key_file: None,
            cert_key_pem: None,
            ca_file: None,
            ca_pem: None,
            platforms: default_platforms(),
            timeout: default_timeout(),
        }
    }
}

impl fmt::Debug for Config {
    /// Private keys are redacted: configs end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("Config")
            .field("environment", &self.environment)
            .field("base_url", &self.base_url)
            .field("topic", &self.topic)
            .field("key_file", &self.key_file)
            .field("key_pem", &redacted(&self.key_pem))
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .field("cert_file", &self.cert_file)
            .field("cert_pem", &self.cert_pem.as_ref().map(|_| "<pem>"))
            .field("cert_key_file", &self.cert_key_file)
            .field("cert_key_pem", &redacted(&self.cert_key_pem))
            .field("ca_file", &self.ca_file)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("platforms", &self.platforms)
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn deserialize_timeout<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Seconds(seconds) => Ok(Duration::from_secs(seconds)),
        Raw::Text(text) => parse_duration(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid timeout {text:?}: use seconds (10) or \"10s\", \"500ms\", \"1m\""
            ))
        }),
    }
}

fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let number = |digits: &str| digits.trim().parse::<u64>().ok();
    if let Some(ms) = text.strip_suffix("ms") {
        number(ms).map(Duration::from_millis)
    } else if let Some(s) = text.strip_suffix('s') {
        number(s).map(Duration::from_secs)
    } else if let Some(m) = text.strip_suffix('m') {
        number(m).map(|m| Duration::from_secs(m.saturating_mul(60)))
    } else {
        number(text).map(Duration::from_secs)
    }
}

/// Why `[push.apns]` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("[push.apns] {0}")]
    Invalid(String),
    #[error("[push.apns] cannot read {key} {}: {source}", path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("[push.apns] cannot build the HTTP/2 client: {0}")]
    Client(#[source] reqwest::Error),
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

/// How the provider proves who it is.
pub(crate) enum Auth {
    /// A JWT in every request's `authorization` header.
    Token(Box<ProviderToken>),
    /// A TLS client certificate, configured in the client.
    Certificate(reqwest::Identity),
}

const TOKEN_KEYS: &str = "token auth (key_file or key_pem, key_id, team_id)";
const CERT_KEYS: &str = "certificate auth (cert_file or cert_pem, cert_key_file or cert_key_pem)";

impl Config {
    pub(crate) fn auth(&self) -> Result<Auth, ConfigError> {
        let token = self.key_file.is_some()
            || self.key_pem.is_some()
            || self.key_id.is_some()
            || self.team_id.is_some();
        let certificate = self.cert_file.is_some()
            || self.cert_pem.is_some()
            || self.cert_key_file.is_some()
            || self.cert_key_pem.is_some();
        match (token, certificate) {
            (true, true) => Err(invalid(format!(
                "configure one auth method, not both: {TOKEN_KEYS} or {CERT_KEYS}"
            ))),
            (false, false) => Err(invalid(format!(
                "no credentials: configure {TOKEN_KEYS} or {CERT_KEYS}"
            ))),
            (true, false) => {
                let key = pem("key_file", &self.key_file, "key_pem", &self.key_pem)?
                    .ok_or_else(|| invalid("token auth needs key_file or key_pem (the .p8 key)"))?;
                let key_id = required("key_id", &self.key_id)?;
                let team_id = required("team_id", &self.team_id)?;
                let token = ProviderToken::new(&key, key_id, team_id).map_err(|e| {
                    invalid(format!(
                        "key_file/key_pem is not a usable PKCS#8 EC private key (the .p8 from Apple): {e}"
                    ))
                })?;
                Ok(Auth::Token(Box::new(token)))
            }
            (false, true) => {
                let cert = pem("cert_file", &self.cert_file, "cert_pem", &self.cert_pem)?
                    .ok_or_else(|| invalid("certificate auth needs cert_file or cert_pem"))?;
                let key = pem(
                    "cert_key_file",
                    &self.cert_key_file,
                    "cert_key_pem",
                    &self.cert_key_pem,
                )?
                .ok_or_else(|| invalid("certificate auth needs cert_key_file or cert_key_pem"))?;
                let identity = reqwest::Identity::from_pem(format!("{key}\n{cert}").as_bytes())
                    .map_err(|e| {
                        invalid(format!(
                            "cert_*/cert_key_* are not a PEM certificate and its private key: {e}"
                        ))
                    })?;
                Ok(Auth::Certificate(identity))
            }
        }
    }

    pub(crate) fn base_url(&self) -> Result<reqwest::Url, ConfigError> {
        let base = self.base_url.as_deref().unwrap_or(self.environment.url());
        let url = reqwest::Url::parse(base)
            .map_err(|e| invalid(format!("base_url {base:?} is not a URL: {e}")))?;
        if url.scheme() != "https" || url.cannot_be_a_base() {
            return Err(invalid(format!(
                "base_url {base:?} must be an https:// URL (APNs is HTTP/2 over TLS)"
            )));
        }
        Ok(url)
    }

    /// One client for all sends: HTTP/2 prior knowledge makes the pool share a single
    /// connection (multiplexed up to the server's SETTINGS_MAX_CONCURRENT_STREAMS, hyper
    /// queues the rest) instead of racing to open one per request.
    pub(crate) fn client(&self, auth: &Auth) -> Result<reqwest::Client, ConfigError> {
        if self.timeout.is_zero() {
            return Err(invalid("timeout must be more than zero"));
        }
        let mut builder = reqwest::Client::builder()
            .http2_prior_knowledge()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            // Apple asks providers to keep connections open rather than reconnect per burst.
            .pool_idle_timeout(None)
            .http2_keep_alive_interval(Duration::from_secs(60))
            .http2_keep_alive_timeout(self.timeout);
        if let Some(ca) = pem("ca_file", &self.ca_file, "ca_pem", &self.ca_pem)? {
            let roots = reqwest::Certificate::from_pem_bundle(ca.as_bytes())
                .map_err(|e| invalid(format!("ca_file/ca_pem is not PEM certificates: {e}")))?;
            if roots.is_empty() {
                return Err(invalid("ca_file/ca_pem holds no certificate"));
            }
            builder = builder.tls_certs_merge(roots);
        }
        if let Auth::Certificate(identity) = auth {
            builder = builder.identity(identity.clone());
        }
        builder.build().map_err(ConfigError::Client)
    }
}

fn required<'a>(key: &str, value: &'a Option<String>) -> Result<&'a str, ConfigError> {
    match value.as_deref() {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(invalid(format!("token auth needs {key}"))),
    }
}

/// A PEM given inline or as a file, not both.
fn pem(
    file_key: &'static str,
    file: &Option<PathBuf>,
    inline_key: &str,
    inline: &Option<String>,
) -> Result<Option<String>, ConfigError> {
    match (file, inline) {
        (Some(_), Some(_)) => Err(invalid(format!("set {file_key} or {inline_key}, not both"))),
        (Some(path), None) => read(file_key, path).map(Some),
        (None, inline) => Ok(inline.clone()),
    }
}

fn read(key: &'static str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn deserialises_with_defaults_and_refuses_unknown_keys() {
        let config: Config =
            serde_json::from_value(serde_json::json!({"topic": "com.example.app", "timeout": 3}))
                .unwrap();
        assert_eq!(config.environment, Environment::Production);
        assert_eq!(config.platforms, ["ios"]);
        assert_eq!(config.timeout, Duration::from_secs(3));
        let sandbox: Config = serde_json::from_value(
            serde_json::json!({"topic": "t", "environment": "sandbox", "timeout": "1m"}),
        )
        .unwrap();
        assert_eq!(
            sandbox.base_url().unwrap().as_str(),
            "https://api.sandbox.push.apple.com/"
        );
        assert_eq!(sandbox.timeout, Duration::from_secs(60));
        let typo =
            serde_json::from_value::<Config>(serde_json::json!({"topic": "t", "keyid": "x"}));
        assert!(typo.is_err());
        assert!(
            serde_json::from_value::<Config>(serde_json::json!({})).is_err(),
            "topic is required"
        );
    }

    #[test]
    fn debug_redacts_keys() {
        let config = Config {
            key_pem: Some("SECRET".into()),
            cert_key_pem: Some("SECRET".into()),
            ..Config::default()
        };
        assert!(!format!("{config:?}").contains("SECRET"));
    }
}
