//! The `[push.fcm]` config section and the checks `FcmProvider::new` makes on it.
//!
//! Every error names the key it is about, so an operator can fix the config without reading
//! code. The service-account key is parsed here (not on the first send) so a bad key fails
//! at start-up.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Settings of the FCM provider, the `[push.fcm]` section of the server config.
///
/// ```toml
/// [push.fcm]
/// service_account_file = "/etc/ferrobase/firebase-adminsdk.json"  # or service_account_json
/// # project_id = "my-app"               # default: the key's project_id
/// # base_url = "https://fcm.googleapis.com"
/// # platforms = ["android"]             # add "ios" / "web" to route those tokens to FCM
/// # timeout = "10s"                     # per request; "500ms", "1m" or integer seconds
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Path to the service-account key JSON downloaded from the Firebase console.
    #[serde(default)]
    pub service_account_file: Option<PathBuf>,
    /// The same key JSON inline (for env-var or secret-store configs). Exactly one of the two.
    #[serde(default)]
    pub service_account_json: Option<String>,
    /// The Firebase project to send as; default: the key's `project_id`.
    #[serde(default)]
    pub project_id: Option<String>,
    /// Where `v1/projects/{project}/messages:send` lives (a test fake, a proxy).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Device platforms routed to FCM.
    #[serde(default = "default_platforms")]
    pub platforms: Vec<String>,
    /// Limit for one HTTP request (connect included) and for one token fetch.
    #[serde(default = "default_timeout", deserialize_with = "deserialize_timeout")]
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            service_account_file: None,
            service_account_json: None,
            project_id: None,
            base_url: default_base_url(),
            platforms: default_platforms(),
            timeout: default_timeout(),
        }
    }
}

/// The key is a secret: `Debug` shows only whether it is set.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("service_account_file", &self.service_account_file)
            .field(
                "service_account_json",
                &self.service_account_json.as_ref().map(|_| "<redacted>"),
            )
            .field("project_id", &self.project_id)
            .field("base_url", &self.base_url)
            .field("platforms", &self.platforms)
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn default_base_url() -> String {
    "https://fcm.googleapis.com".into()
}

fn default_platforms() -> Vec<String> {
    vec!["android".into()]
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// A `[push.fcm]` setting the provider cannot start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("push.fcm: set exactly one of service_account_file and service_account_json")]
    Credentials,
    #[error("push.fcm.service_account_file: cannot read {path}: {source}")]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("push.fcm.{key}: not a usable service-account key: {reason}")]
    BadKey { key: &'static str, reason: String },
    #[error("push.fcm.project_id: not set, and the service-account key has no project_id either")]
    NoProject,
    #[error("push.fcm.project_id: {0:?} is not a Firebase project id")]
    BadProject(String),
    #[error("push.fcm.base_url: {0}")]
    BadBaseUrl(String),
    #[error("push.fcm.platforms: {0}")]
    BadPlatforms(&'static str),
    #[error("push.fcm.timeout: must be more than zero")]
    BadTimeout,
    #[error("push.fcm: cannot build the HTTP client: {0}")]
    Http(String),
}

/// What this crate checks of the key before gcp_auth parses it: the fields the grant needs
/// must be there (so the error names a missing one), `token_uri` must be a URL.
#[derive(Deserialize)]
struct ServiceAccount {
    #[serde(default)]
    project_id: Option<String>,
    #[allow(dead_code)] // present is enough; gcp_auth parses the PEM
    private_key: serde::de::IgnoredAny,
    #[allow(dead_code)]
    client_email: serde::de::IgnoredAny,
    token_uri: String,
}

/// A checked config: the key JSON read, the project and the endpoint resolved.
pub(crate) struct Resolved {
    pub key_json: String,
    /// Which config key the key came from, for error messages.
    pub key_name: &'static str,
    pub project_id: String,
    pub endpoint: String,
}

impl Config {
    pub(crate) fn resolve(&self) -> Result<Resolved, ConfigError> {
        let (key_json, key_name) = match (&self.service_account_file, &self.service_account_json) {
            (Some(path), None) => {
                let json =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::ReadKey {
                        path: path.clone(),
                        source,
                    })?;
                (json, "service_account_file")
            }
            (None, Some(json)) => (json.clone(), "service_account_json"),
            _ => return Err(ConfigError::Credentials),
        };
        let account: ServiceAccount =
            serde_json::from_str(&key_json).map_err(|e| ConfigError::BadKey {
                key: key_name,
                reason: e.to_string(),
            })?;
        if reqwest::Url::parse(&account.token_uri).is_err() {
            return Err(ConfigError::BadKey {
                key: key_name,
                reason: format!("token_uri {:?} is not a URL", account.token_uri),
            });
        }
        let project_id = self
            .project_id
            .clone()
            .or(account.project_id)
            .ok_or(ConfigError::NoProject)?;
        // Letters, digits, hyphens; `example.com:app` for domain-scoped projects. Anything
        // else would change the URL path.
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':');
        if project_id.is_empty() || !project_id.chars().all(allowed) {
            return Err(ConfigError::BadProject(project_id));
        }
        let base = reqwest::Url::parse(&self.base_url)
            .map_err(|e| ConfigError::BadBaseUrl(format!("{:?}: {e}", self.base_url)))?;
        if !matches!(base.scheme(), "https" | "http") || base.query().is_some() {
            return Err(ConfigError::BadBaseUrl(format!(
                "{:?}: must be an http(s) URL without a query",
                self.base_url
            )));
        }
        if self.platforms.is_empty() || self.platforms.iter().any(|p| p.trim().is_empty()) {
            return Err(ConfigError::BadPlatforms(
                "list at least one non-empty platform",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::BadTimeout);
        }
        let endpoint = format!(
            "{}/v1/projects/{project_id}/messages:send",
            self.base_url.trim_end_matches('/')
        );
        Ok(Resolved {
            key_json,
            key_name,
            project_id,
            endpoint,
        })
    }
}

/// `timeout = 10` (seconds) or `timeout = "10s"` / `"500ms"` / `"2m"`.
fn deserialize_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => parse_duration(&t).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "timeout {t:?}: expected seconds or a number with ms, s or m, like \"10s\""
            ))
        }),
    }
}

fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_forms() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("3h"), None);
        let c: Config = serde_json::from_str(r#"{"timeout": 3}"#).unwrap();
        assert_eq!(c.timeout, Duration::from_secs(3));
        let c: Config = serde_json::from_str(r#"{"timeout": "1500ms"}"#).unwrap();
        assert_eq!(c.timeout, Duration::from_millis(1500));
        assert!(serde_json::from_str::<Config>(r#"{"timeout": "soon"}"#).is_err());
    }

    #[test]
    fn defaults_and_unknown_keys() {
        let c: Config = serde_json::from_str("{}").unwrap();
        assert_eq!(c.base_url, "https://fcm.googleapis.com");
        assert_eq!(c.platforms, ["android"]);
        assert_eq!(c.timeout, Duration::from_secs(10));
        let err = serde_json::from_str::<Config>(r#"{"server_key": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("server_key"), "{err}");
    }

    #[test]
    fn debug_redacts_the_key() {
        let c = Config {
            service_account_json: Some("{\"private_key\":\"SECRET\"}".into()),
            ..Config::default()
        };
        assert!(!format!("{c:?}").contains("SECRET"));
    }
}
