//! Server configuration: defaults, then an optional TOML file, then `FERROBASE_*` environment
//! variables, then command-line flags (applied by the CLI). Validated once at start so a bad
//! setting stops the server with a message naming the key instead of failing later.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Why a configuration could not be used. Always names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid setting `{key}`: {message}")]
    Invalid { key: String, message: String },
}

/// The whole server configuration. Every key can be overridden by `FERROBASE_<SECTION>_<KEY>`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Where the embedded database file and local files live.
    pub data_dir: PathBuf,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub smtp: SmtpConfig,
    pub mail: MailConfig,
    pub realtime: RealtimeConfig,
    pub storage: StorageConfig,
    pub push: PushConfig,
}

/// `[push]`: delivery tunables, and one sub-table per provider plugin (`[push.apns]`,
/// `[push.fcm]`). The server does not read the provider tables: the binary hands each to its
/// plugin, so a new provider needs no change here.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct PushConfig {
    /// Attempts per delivery before a transiently failing one is `failed`.
    pub max_attempts: u32,
    /// Sends in flight at once per send job.
    pub concurrency: usize,
    /// Provider sections by name.
    #[serde(flatten)]
    pub providers: BTreeMap<String, toml::Value>,
}

impl Default for PushConfig {
    fn default() -> Self {
        let d = crate::push::PushSettings::default();
        PushConfig {
            max_attempts: d.max_attempts,
            concurrency: d.concurrency,
            providers: BTreeMap::new(),
        }
    }
}

/// Where files live: under the data dir, or in an S3-compatible bucket.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `local` (under `<data_dir>/storage`) or `s3`.
    pub backend: String,
    pub bucket: String,
    /// Empty = AWS; e.g. `http://127.0.0.1:9000` for MinIO or moto.
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Path-style requests (MinIO, moto, most self-hosted S3).
    pub path_style: bool,
    /// Allow an `http://` endpoint (only for loopback).
    pub allow_http: bool,
    /// Key prefix, so several deployments can share a bucket.
    pub prefix: String,
    /// Largest file of a `file` field without its own `max_size`, e.g. `50MB`.
    pub max_file_size: String,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: "local".into(),
            bucket: "ferrobase".into(),
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            path_style: false,
            allow_http: false,
            prefix: String::new(),
            max_file_size: "50MB".into(),
        }
    }
}

impl std::fmt::Debug for StorageConfig {
    // Never print the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("backend", &self.backend)
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &if self.secret_access_key.is_empty() {
                    ""
                } else {
                    "***"
                },
            )
            .field("path_style", &self.path_style)
            .field("allow_http", &self.allow_http)
            .field("prefix", &self.prefix)
            .field("max_file_size", &self.max_file_size)
            .finish()
    }
}

/// Realtime streams and the change log behind them (and behind delta sync).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealtimeConfig {
    /// How long the change log keeps changes, e.g. `7d`: a client away for longer resyncs.
    pub retention: String,
    /// Interval of SSE heartbeat comments, e.g. `15s` (keeps proxies from closing idle streams).
    pub heartbeat: String,
    /// How often an open stream re-checks its token (expiry, logout, revoked session,
    /// disabled user), e.g. `10s`.
    pub auth_recheck: String,
    /// Open streams per client IP.
    pub max_per_ip: u32,
    /// Open streams per signed-in user.
    pub max_per_user: u32,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            retention: "7d".into(),
            heartbeat: "15s".into(),
            auth_recheck: "10s".into(),
            max_per_ip: 1000,
            max_per_user: 20,
        }
    }
}

/// [`RealtimeConfig`] resolved.
#[derive(Clone, Debug)]
pub struct RealtimeSettings {
    pub retention: Duration,
    pub heartbeat: Duration,
    pub auth_recheck: Duration,
    pub max_per_ip: u32,
    pub max_per_user: u32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address, e.g. `127.0.0.1:8090`.
    pub addr: String,
    /// Largest accepted request body, e.g. `1MiB`.
    pub body_limit: String,
    /// Origins allowed by CORS; `["*"]` allows any.
    pub cors_origins: Vec<String>,
    /// Behind a reverse proxy: take the client address from the last `X-Forwarded-For` entry
    /// (the one the proxy appended). Off by default: clients can forge the header.
    pub trust_proxy: bool,
}

#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path` or `postgres://…`; empty = `<data_dir>/data.db`.
    pub url: String,
    /// Connections in the PostgreSQL pool, or SQLite reader threads; 0 (the default) picks
    /// per dialect (see `db::DbOptions`).
    pub max_connections: u32,
    /// SQLite commit durability: `normal` (survives a process crash) or `full` (also power
    /// loss, one fsync per commit). PostgreSQL commits are always durable.
    pub synchronous: String,
    /// SQLite: hold the file exclusively while serving (no other process may open it), which
    /// spares the file-lock system calls of every read transaction.
    pub exclusive: bool,
}

impl std::fmt::Debug for DatabaseConfig {
    // The URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("synchronous", &self.synchronous)
            .field("exclusive", &self.exclusive)
            .finish()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter such as `info` or `ferrobase_server=debug`.
    pub level: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// How long an admin token stays valid, e.g. `12h`.
    pub admin_token_ttl: String,
    /// Minimum password length for admins and users.
    pub min_password_length: usize,
    /// Lifetime of user access tokens (JWT), e.g. `15m`.
    pub access_token_ttl: String,
    /// Lifetime of a session's refresh token; each use rotates it, e.g. `30d`.
    pub refresh_token_ttl: String,
    /// Lifetime of email verification and password reset links, e.g. `1h`.
    pub email_token_ttl: String,
    /// Send a verification email on signup (when SMTP is configured).
    pub verify_on_signup: bool,
    pub rate_limits: RateLimitConfig,
}

/// Request budgets; `"10/min"`-style strings (`/s`, `/min`, `/hour`, `/day`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// `false` turns every rate limit off.
    pub enabled: bool,
    /// Login attempts per IP and email.
    pub login: String,
    /// Signups per IP.
    pub signup: String,
    /// Password-reset and verification emails per email address.
    pub reset: String,
    /// One-time codes per email address.
    pub otp: String,
    /// Every request, per IP.
    pub global: String,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            login: "10/min".into(),
            signup: "5/min".into(),
            reset: "5/hour".into(),
            otp: "5/hour".into(),
            global: "6000/min".into(),
        }
    }
}

/// Outgoing mail server. Empty `host` = mail is not configured (mail jobs fail with a reason).
#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    /// `none`, `starttls` or `tls`.
    pub tls: String,
}

impl std::fmt::Debug for SmtpConfig {
    // Never print the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() { "" } else { "***" },
            )
            .field("tls", &self.tls)
            .finish()
    }
}

/// What emails say and where their links point.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// Sender, e.g. `MyApp <no-reply@myapp.example>`.
    pub from: String,
    /// The app's name, used in subjects and bodies.
    pub app_name: String,
    /// Base of links in emails; the token is appended as `?token=…`, e.g.
    /// `https://myapp.example/auth` → `https://myapp.example/auth/reset-password?token=…`.
    pub link_base: String,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            from: "Ferrobase <no-reply@localhost>".into(),
            app_name: "Ferrobase".into(),
            link_base: "http://127.0.0.1:8090/auth".into(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("fb_data"),
            http: HttpConfig::default(),
            database: DatabaseConfig::default(),
            log: LogConfig::default(),
            auth: AuthConfig::default(),
            smtp: SmtpConfig::default(),
            mail: MailConfig::default(),
            realtime: RealtimeConfig::default(),
            storage: StorageConfig::default(),
            push: PushConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8090".into(),
            body_limit: "1MiB".into(),
            cors_origins: vec!["*".into()],
            trust_proxy: false,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            admin_token_ttl: "12h".into(),
            min_password_length: 8,
            access_token_ttl: "15m".into(),
            refresh_token_ttl: "30d".into(),
            email_token_ttl: "1h".into(),
            verify_on_signup: true,
            rate_limits: RateLimitConfig::default(),
        }
    }
}

/// The documented example printed by `ferrobase default-config`.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default_config.toml");

/// Settings resolved into the types the server runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub addr: SocketAddr,
    pub body_limit: usize,
    pub cors_origins: Vec<String>,
    pub trust_proxy: bool,
    pub database_url: String,
    pub max_connections: u32,
    pub synchronous: crate::db::Synchronous,
    pub exclusive: bool,
    pub log_json: bool,
    pub log_level: String,
    pub admin_token_ttl: Duration,
    pub min_password_length: usize,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub email_token_ttl: Duration,
    pub verify_on_signup: bool,
    pub rate_limits: Option<RateLimits>,
    pub smtp: SmtpConfig,
    pub mail: MailConfig,
    pub realtime: RealtimeSettings,
    pub storage: StorageConfig,
    /// Bytes, from `storage.max_file_size`.
    pub max_file_size: u64,
    pub push: crate::push::PushSettings,
    /// `[push.<provider>]` tables, for the binary to build its plugins from.
    pub push_providers: BTreeMap<String, toml::Table>,
}

/// Resolved rate limits: (requests, per period).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

#[derive(Clone, Debug)]
pub struct RateLimits {
    pub login: Rate,
    pub signup: Rate,
    pub reset: Rate,
    pub otp: Rate,
    pub global: Rate,
}

/// Parses `10/min`, `5/hour`, `100/s`, `1000/day`.
pub fn parse_rate(s: &str) -> Option<Rate> {
    let (n, unit) = s.trim().split_once('/')?;
    let count: u32 = n.trim().parse().ok().filter(|c| *c > 0)?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86_400),
        _ => return None,
    };
    Some(Rate { count, per })
}

impl ServerConfig {
    /// Reads the optional TOML file, then applies environment overrides from `env`
    /// (pass `std::env::vars()`; tests pass their own).
    pub fn load(
        path: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: p.display().to_string(),
                    message: e.to_string(),
                })?
            }
            None => ServerConfig::default(),
        };
        config.apply_env(env)?;
        Ok(config)
    }

    /// `FERROBASE_<SECTION>_<KEY>` overrides, plus the short forms `FERROBASE_HTTP` (address)
    /// and `FERROBASE_DATA_DIR`. Unknown `FERROBASE_*` names are rejected so typos surface.
    pub fn apply_env(
        &mut self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        let vars: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("FERROBASE_"))
            .collect();
        for (key, value) in vars {
            let name = &key["FERROBASE_".len()..];
            let invalid = |message: &str| ConfigError::Invalid {
                key: key.clone(),
                message: message.into(),
            };
            match name {
                "DATA_DIR" => self.data_dir = PathBuf::from(value),
                "HTTP" | "HTTP_ADDR" => self.http.addr = value,
                "HTTP_BODY_LIMIT" => self.http.body_limit = value,
                "HTTP_TRUST_PROXY" => {
                    self.http.trust_proxy = value
                        .parse()
                        .map_err(|_| invalid("expected true or false"))?
                }
                "HTTP_CORS_ORIGINS" => {
                    self.http.cors_origins = value.split(',').map(|s| s.trim().to_owned()).collect()
                }
                "DATABASE_URL" => self.database.url = value,
                "DATABASE_SYNCHRONOUS" => self.database.synchronous = value,
                "DATABASE_EXCLUSIVE" => {
                    self.database.exclusive = value
                        .parse()
                        .map_err(|_| invalid("expected true or false"))?
                }
                "DATABASE_MAX_CONNECTIONS" => {
                    self.database.max_connections = value
                        .parse()
                        .map_err(|_| invalid("expected a whole number"))?
                }
                "LOG_FORMAT" => self.log.format = value,
                "LOG_LEVEL" => self.log.level = value,
                "AUTH_ADMIN_TOKEN_TTL" => self.auth.admin_token_ttl = value,
                "AUTH_MIN_PASSWORD_LENGTH" => {
                    self.auth.min_password_length = value
                        .parse()
                        .map_err(|_| invalid("expected a whole number"))?
                }
                "AUTH_ACCESS_TOKEN_TTL" => self.auth.access_token_ttl = value,
                "AUTH_REFRESH_TOKEN_TTL" => self.auth.refresh_token_ttl = value,
                "AUTH_EMAIL_TOKEN_TTL" => self.auth.email_token_ttl = value,
                "AUTH_VERIFY_ON_SIGNUP" => {
                    self.auth.verify_on_signup = value
                        .parse()
                        .map_err(|_| invalid("expected true or false"))?
                }
                "AUTH_RATE_LIMITS_ENABLED" => {
                    self.auth.rate_limits.enabled = value
                        .parse()
                        .map_err(|_| invalid("expected true or false"))?
                }
                "AUTH_RATE_LIMITS_LOGIN" => self.auth.rate_limits.login = value,
                "AUTH_RATE_LIMITS_SIGNUP" => self.auth.rate_limits.signup = value,
                "AUTH_RATE_LIMITS_RESET" => self.auth.rate_limits.reset = value,
                "AUTH_RATE_LIMITS_OTP" => self.auth.rate_limits.otp = value,
                "AUTH_RATE_LIMITS_GLOBAL" => self.auth.rate_limits.global = value,
                "SMTP_HOST" => self.smtp.host = value,
                "SMTP_PORT" => {
                    self.smtp.port = value
                        .parse()
                        .map_err(|_| invalid("expected a port number"))?
                }
                "SMTP_USERNAME" => self.smtp.username = value,
                "SMTP_PASSWORD" => self.smtp.password = value,
                "SMTP_TLS" => self.smtp.tls = value,
                "MAIL_FROM" => self.mail.from = value,
                "MAIL_APP_NAME" => self.mail.app_name = value,
                "MAIL_LINK_BASE" => self.mail.link_base = value,
                "STORAGE_BACKEND" => self.storage.backend = value,
                "STORAGE_BUCKET" => self.storage.bucket = value,
                "STORAGE_ENDPOINT" => self.storage.endpoint = value,
                "STORAGE_REGION" => self.storage.region = value,
                "STORAGE_ACCESS_KEY_ID" => self.storage.access_key_id = value,
                "STORAGE_SECRET_ACCESS_KEY" => self.storage.secret_access_key = value,
                "STORAGE_PREFIX" => self.storage.prefix = value,
                "STORAGE_MAX_FILE_SIZE" => self.storage.max_file_size = value,
                "STORAGE_PATH_STYLE" => {
                    self.storage.path_style = value
                        .parse()
                        .map_err(|_| invalid("expected true or false"))?
                }
                "STORAGE_ALLOW_HTTP" => {
                    self.storage.allow_http = value
                        .parse()
                        .map_err(|_| invalid("expected true or false"))?
                }
                "REALTIME_RETENTION" => self.realtime.retention = value,
                "REALTIME_HEARTBEAT" => self.realtime.heartbeat = value,
                "REALTIME_AUTH_RECHECK" => self.realtime.auth_recheck = value,
                "REALTIME_MAX_PER_IP" => {
                    self.realtime.max_per_ip = value
                        .parse()
                        .map_err(|_| invalid("expected a whole number"))?
                }
                "REALTIME_MAX_PER_USER" => {
                    self.realtime.max_per_user = value
                        .parse()
                        .map_err(|_| invalid("expected a whole number"))?
                }
                "PUSH_MAX_ATTEMPTS" => {
                    self.push.max_attempts = value
                        .parse()
                        .map_err(|_| invalid("expected a whole number"))?
                }
                "PUSH_CONCURRENCY" => {
                    self.push.concurrency = value
                        .parse()
                        .map_err(|_| invalid("expected a whole number"))?
                }
                // FERROBASE_PUSH_<PROVIDER>_<KEY>: a provider plugin's setting, as a string
                // (the plugin parses it).
                n if n.starts_with("PUSH_") && n[5..].contains('_') => {
                    let rest = &n[5..];
                    let (provider, k) = rest.split_at(rest.find('_').unwrap_or(0));
                    let table = self
                        .push
                        .providers
                        .entry(provider.to_ascii_lowercase())
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                    match table {
                        toml::Value::Table(t) => {
                            t.insert(k[1..].to_ascii_lowercase(), toml::Value::String(value));
                        }
                        _ => return Err(invalid("[push] has a value, not a table, of that name")),
                    }
                }
                // Variables read by the CLI, the test suites (`FERROBASE_TEST_*`,
                // `FERROBASE_REQUIRE_*`) or the benchmark scripts, not by the server.
                "TOKEN" | "SERVER" | "CONFIG" | "LOG" | "BIN" | "REV" => {}
                n if n.starts_with("TEST_") || n.starts_with("REQUIRE_") => {}
                _ => return Err(invalid("unknown setting (check the spelling)")),
            }
        }
        Ok(())
    }

    /// Validates every value and resolves it into [`Settings`].
    pub fn resolve(&self) -> Result<Settings, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.into(),
            message,
        };
        let addr: SocketAddr = self.http.addr.parse().map_err(|_| {
            invalid(
                "http.addr",
                format!("`{}` is not an address like 127.0.0.1:8090", self.http.addr),
            )
        })?;
        let body_limit = parse_size(&self.http.body_limit)
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                invalid(
                    "http.body_limit",
                    format!("`{}` is not a size like 1MiB", self.http.body_limit),
                )
            })?;
        let body_limit = usize::try_from(body_limit)
            .map_err(|_| invalid("http.body_limit", "too large".into()))?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty".into()));
        }
        let database_url = if self.database.url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("data.db").display())
        } else {
            self.database.url.clone()
        };
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database.url",
                "must start with sqlite:, postgres:// or postgresql://".into(),
            ));
        }
        let synchronous = match self.database.synchronous.as_str() {
            "" | "normal" => crate::db::Synchronous::Normal,
            "full" => crate::db::Synchronous::Full,
            other => {
                return Err(invalid(
                    "database.synchronous",
                    format!("`{other}` is not one of normal, full"),
                ));
            }
        };
        let log_json = match self.log.format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                return Err(invalid(
                    "log.format",
                    format!("`{other}` is not `text` or `json`"),
                ));
            }
        };
        let admin_token_ttl = parse_duration(&self.auth.admin_token_ttl).ok_or_else(|| {
            invalid(
                "auth.admin_token_ttl",
                format!("`{}` is not a duration like 12h", self.auth.admin_token_ttl),
            )
        })?;
        if !(6..=1024).contains(&self.auth.min_password_length) {
            return Err(invalid(
                "auth.min_password_length",
                "must be between 6 and 1024".into(),
            ));
        }
        let duration = |key: &str, v: &str| {
            parse_duration(v)
                .ok_or_else(|| invalid(key, format!("`{v}` is not a duration like 15m")))
        };
        let access_token_ttl = duration("auth.access_token_ttl", &self.auth.access_token_ttl)?;
        let refresh_token_ttl = duration("auth.refresh_token_ttl", &self.auth.refresh_token_ttl)?;
        let email_token_ttl = duration("auth.email_token_ttl", &self.auth.email_token_ttl)?;
        let rl = &self.auth.rate_limits;
        let rate = |key: &str, v: &str| {
            parse_rate(v).ok_or_else(|| invalid(key, format!("`{v}` is not a rate like 10/min")))
        };
        let rate_limits = RateLimits {
            login: rate("auth.rate_limits.login", &rl.login)?,
            signup: rate("auth.rate_limits.signup", &rl.signup)?,
            reset: rate("auth.rate_limits.reset", &rl.reset)?,
            otp: rate("auth.rate_limits.otp", &rl.otp)?,
            global: rate("auth.rate_limits.global", &rl.global)?,
        };
        if !matches!(self.smtp.tls.as_str(), "" | "none" | "starttls" | "tls") {
            return Err(invalid(
                "smtp.tls",
                format!("`{}` is not none, starttls or tls", self.smtp.tls),
            ));
        }
        if !self.smtp.host.is_empty() && self.smtp.port == 0 {
            return Err(invalid("smtp.port", "must be set when smtp.host is".into()));
        }
        let rt = &self.realtime;
        if rt.max_per_ip == 0 || rt.max_per_user == 0 {
            return Err(invalid(
                "realtime.max_per_ip",
                "realtime.max_per_ip and max_per_user must be at least 1".into(),
            ));
        }
        let realtime = RealtimeSettings {
            retention: duration("realtime.retention", &rt.retention)?,
            heartbeat: duration("realtime.heartbeat", &rt.heartbeat)?,
            auth_recheck: duration("realtime.auth_recheck", &rt.auth_recheck)?,
            max_per_ip: rt.max_per_ip,
            max_per_user: rt.max_per_user,
        };
        if !matches!(self.storage.backend.as_str(), "local" | "s3") {
            return Err(invalid(
                "storage.backend",
                format!("`{}` is not local or s3", self.storage.backend),
            ));
        }
        if self.storage.backend == "s3" && self.storage.bucket.is_empty() {
            return Err(invalid("storage.bucket", "must be set for s3".into()));
        }
        let max_file_size = parse_size(&self.storage.max_file_size)
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                invalid(
                    "storage.max_file_size",
                    format!("`{}` is not a size like 50MB", self.storage.max_file_size),
                )
            })?;
        let mut push_providers = BTreeMap::new();
        for (name, v) in &self.push.providers {
            match v {
                toml::Value::Table(t) => {
                    push_providers.insert(name.clone(), t.clone());
                }
                _ => {
                    return Err(invalid(
                        &format!("push.{name}"),
                        "unknown setting: [push] takes max_attempts, concurrency and one \
                         [push.<provider>] table per provider (apns, fcm)"
                            .into(),
                    ));
                }
            }
        }
        if self.push.max_attempts == 0 || self.push.concurrency == 0 {
            return Err(invalid(
                "push",
                "max_attempts and concurrency must be at least 1".into(),
            ));
        }
        Ok(Settings {
            push: crate::push::PushSettings {
                max_attempts: self.push.max_attempts,
                concurrency: self.push.concurrency,
                ..Default::default()
            },
            push_providers,
            storage: self.storage.clone(),
            max_file_size,
            realtime,
            access_token_ttl,
            refresh_token_ttl,
            email_token_ttl,
            verify_on_signup: self.auth.verify_on_signup,
            rate_limits: rl.enabled.then_some(rate_limits),
            smtp: self.smtp.clone(),
            mail: self.mail.clone(),
            data_dir: self.data_dir.clone(),
            addr,
            body_limit,
            cors_origins: self.http.cors_origins.clone(),
            trust_proxy: self.http.trust_proxy,
            database_url,
            max_connections: self.database.max_connections,
            synchronous,
            exclusive: self.database.exclusive,
            log_json,
            log_level: self.log.level.clone(),
            admin_token_ttl,
            min_password_length: self.auth.min_password_length,
        })
    }
}

/// Parses `1MiB`, `5MB`, `512KB`, `100` (bytes). `MB` = 10^6, `MiB` = 2^20.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Parses `30s`, `15m`, `12h`, `7d`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn push_provider_settings_come_from_file_and_env() {
        let mut c: ServerConfig =
            toml::from_str("[push]\nmax_attempts = 3\n[push.apns]\ntopic = \"com.x\"\n").unwrap();
        c.apply_env(env(&[
            ("FERROBASE_PUSH_APNS_KEY_ID", "K1"),
            ("FERROBASE_PUSH_FCM_PROJECT_ID", "p"),
            ("FERROBASE_PUSH_CONCURRENCY", "8"),
        ]))
        .unwrap();
        let s = c.resolve().unwrap();
        assert_eq!(s.push.max_attempts, 3);
        assert_eq!(s.push.concurrency, 8);
        assert_eq!(s.push_providers["apns"]["topic"].as_str(), Some("com.x"));
        assert_eq!(s.push_providers["apns"]["key_id"].as_str(), Some("K1"));
        assert_eq!(s.push_providers["fcm"]["project_id"].as_str(), Some("p"));
        let bad: ServerConfig = toml::from_str("[push]\nretries = 3\n").unwrap();
        assert!(
            bad.resolve()
                .err()
                .unwrap()
                .to_string()
                .contains("push.retries")
        );
        let mut zero = ServerConfig::default();
        zero.push.concurrency = 0;
        assert!(zero.resolve().is_err());
    }

    #[test]
    fn env_overrides_file_values() {
        let mut c = ServerConfig::default();
        c.apply_env(env(&[
            ("FERROBASE_HTTP", "0.0.0.0:9000"),
            ("FERROBASE_DATABASE_URL", "postgres://u:p@h/db"),
            ("PATH", "/bin"),
            // What `.ci/run` exports for the test suites must not stop a server starting.
            ("FERROBASE_REQUIRE_PG", "1"),
            ("FERROBASE_REQUIRE_S3", "1"),
            ("FERROBASE_TEST_S3_URL", "http://127.0.0.1:5055"),
            (
                "FERROBASE_TEST_PG_URL",
                "postgres://postgres@127.0.0.1/test",
            ),
        ]))
        .unwrap();
        let s = c.resolve().unwrap();
        assert_eq!(s.addr.port(), 9000);
        assert_eq!(s.database_url, "postgres://u:p@h/db");
    }

    #[test]
    fn unknown_env_names_and_bad_values_name_the_key() {
        let mut c = ServerConfig::default();
        let err = c
            .apply_env(env(&[("FERROBASE_HTTP_ADR", "x")]))
            .unwrap_err();
        assert!(err.to_string().contains("FERROBASE_HTTP_ADR"), "{err}");
        let mut c = ServerConfig::default();
        c.http.addr = "nonsense".into();
        assert!(c.resolve().unwrap_err().to_string().contains("http.addr"));
        let mut c = ServerConfig::default();
        c.http.body_limit = "12 parsecs".into();
        assert!(
            c.resolve()
                .unwrap_err()
                .to_string()
                .contains("http.body_limit")
        );
    }

    #[test]
    fn database_synchronous_is_normal_or_full() {
        let mut c = ServerConfig::default();
        assert_eq!(
            c.resolve().unwrap().synchronous,
            crate::db::Synchronous::Normal
        );
        c.apply_env(env(&[("FERROBASE_DATABASE_SYNCHRONOUS", "full")]))
            .unwrap();
        assert_eq!(
            c.resolve().unwrap().synchronous,
            crate::db::Synchronous::Full
        );
        c.database.synchronous = "extra".into();
        let err = c.resolve().unwrap_err().to_string();
        assert!(err.contains("database.synchronous"), "{err}");
    }

    #[test]
    fn database_exclusive_is_off_unless_asked() {
        let mut c = ServerConfig::default();
        assert!(!c.resolve().unwrap().exclusive);
        c.apply_env(env(&[("FERROBASE_DATABASE_EXCLUSIVE", "true")]))
            .unwrap();
        assert!(c.resolve().unwrap().exclusive);
        let err = c
            .apply_env(env(&[("FERROBASE_DATABASE_EXCLUSIVE", "yes")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("DATABASE_EXCLUSIVE"), "{err}");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("5MB"), Some(5_000_000));
        assert_eq!(parse_size("MB"), None);
        assert_eq!(parse_duration("12h"), Some(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(redact_url("postgres://a:b@h/d"), "postgres://a:***@h/d");
    }

    #[test]
    fn default_config_file_parses() {
        let c: ServerConfig = toml::from_str(DEFAULT_CONFIG_TOML).unwrap();
        c.resolve().unwrap();
    }
}
