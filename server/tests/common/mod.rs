//! Test kit: boots the real server on 127.0.0.1:0 over a fresh SQLite file or a fresh
//! PostgreSQL database, and talks to it over HTTP like a client would.
#![allow(dead_code, clippy::unwrap_used, clippy::field_reassign_with_default)]

pub mod smtp;
pub mod sse;

use std::sync::Arc;

use ferrobase_server::access::AdminRole;
use ferrobase_server::config::ServerConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{OnceCell, oneshot};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn pg_base_url() -> String {
    std::env::var("FERROBASE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn pg_required() -> bool {
    std::env::var("FERROBASE_REQUIRE_PG").is_ok_and(|v| v == "1")
}

/// Drops databases left behind by earlier, aborted runs of this test binary.
static PG_READY: OnceCell<bool> = OnceCell::const_new();

async fn pg_available() -> bool {
    *PG_READY
        .get_or_init(|| async {
            use sqlx::Connection;
            let conn = sqlx::PgConnection::connect(&pg_base_url()).await;
            match conn {
                Ok(mut c) => {
                    let exe = std::env::current_exe()
                        .ok()
                        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                        .unwrap_or_default();
                    let prefix = format!("fbt_{}_", short_hash(&exe));
                    let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT datname FROM pg_database WHERE datname LIKE '{prefix}%'"
                    )))
                    .fetch_all(&mut c)
                    .await
                    .unwrap_or_default();
                    // Only databases of runs that started over an hour ago: another copy of this
                    // test binary may be running right now.
                    let cutoff = unix_now().saturating_sub(3600);
                    for (name,) in rows {
                        let started: u64 = name[prefix.len()..]
                            .split('_')
                            .next()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                        if started >= cutoff {
                            continue;
                        }
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        )))
                        .execute(&mut c)
                        .await;
                    }
                    true
                }
                Err(e) => {
                    if pg_required() {
                        panic!(
                            "FERROBASE_REQUIRE_PG=1 but PostgreSQL is not reachable at {}: {e}",
                            pg_base_url()
                        );
                    }
                    false
                }
            }
        })
        .await
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn short_hash(s: &str) -> String {
    let mut h: u32 = 2166136261;
    for b in s.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(16777619);
    }
    format!("{h:08x}")
}

pub struct TestServer {
    pub base: String,
    pub backend: Backend,
    pub client: reqwest::Client,
    pub state: ferrobase_server::http::AppState,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
    pg_db: Option<String>,
    admin: Arc<OnceCell<String>>,
    /// The database URL, for [`TestServer::replica`].
    pub db_url: String,
    /// Push providers the server was opened with (kept across restarts).
    providers: Vec<Arc<dyn ferrobase_plugin_api::PushProvider>>,
}

pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.body.get("code").and_then(Value::as_str).unwrap_or("")
    }
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        &self.body
    }
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> &Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        assert_eq!(self.code(), code, "unexpected code; body: {}", self.body);
        let ct = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert_eq!(ct, "application/problem+json");
        &self.body
    }
}

impl TestServer {
    /// A server on `backend`, or `None` (after a loud SKIPPED line) when PostgreSQL is
    /// unreachable and not required.
    pub async fn start(backend: Backend) -> Option<TestServer> {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(
        backend: Backend,
        tweak: impl FnOnce(&mut ServerConfig),
    ) -> Option<TestServer> {
        Self::start_with_push(backend, tweak, Vec::new()).await
    }

    /// A server whose pushes go through `providers` (the real plugins, pointed at loopback).
    pub async fn start_with_push(
        backend: Backend,
        tweak: impl FnOnce(&mut ServerConfig),
        providers: Vec<Arc<dyn ferrobase_plugin_api::PushProvider>>,
    ) -> Option<TestServer> {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::default();
        config.data_dir = dir.path().to_path_buf();
        config.http.addr = "127.0.0.1:0".into();
        let mut pg_db = None;
        if backend == Backend::Postgres {
            if !pg_available().await {
                // Straight to the process's stderr: the test harness captures eprintln!, and a
                // skipped suite must be seen.
                let msg = format!(
                    "*** SKIPPED: PostgreSQL not reachable at {} (set FERROBASE_REQUIRE_PG=1 to fail instead) ***\n",
                    pg_base_url()
                );
                let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
                return None;
            }
            use sqlx::Connection;
            let exe = std::env::current_exe()
                .ok()
                .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .unwrap_or_default();
            let name = format!(
                "fbt_{}_{}_{}",
                short_hash(&exe),
                unix_now(),
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            );
            let mut c = sqlx::PgConnection::connect(&pg_base_url()).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut c)
                .await
                .unwrap();
            let base = pg_base_url();
            let url = match base.rfind('/') {
                Some(i) => format!("{}/{name}", &base[..i]),
                None => panic!("bad FERROBASE_TEST_PG_URL"),
            };
            config.database.url = url;
            pg_db = Some(name);
        }
        // Tests sign many users up from one address: limits are tested on their own.
        config.auth.rate_limits.enabled = false;
        tweak(&mut config);
        Some(
            Self::boot(
                config,
                backend,
                dir,
                pg_db,
                Arc::new(OnceCell::new()),
                providers,
            )
            .await,
        )
    }

    /// Opens and serves `config` on 127.0.0.1:0.
    async fn boot(
        config: ServerConfig,
        backend: Backend,
        dir: tempfile::TempDir,
        pg_db: Option<String>,
        admin: Arc<OnceCell<String>>,
        providers: Vec<Arc<dyn ferrobase_plugin_api::PushProvider>>,
    ) -> TestServer {
        let settings = config.resolve().unwrap();
        let db_url = settings.database_url.clone();
        let state = ferrobase_server::open_with(settings, providers.clone())
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let st = state.clone();
        let handle = tokio::spawn(async move {
            ferrobase_server::serve(st, listener, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestServer {
            base: format!("http://{addr}"),
            backend,
            client: reqwest::Client::new(),
            state,
            shutdown: Some(tx),
            handle: Some(handle),
            _dir: dir,
            pg_db,
            admin,
            db_url,
            providers,
        }
    }

    /// A second server on the same PostgreSQL database (another replica behind a load
    /// balancer), configured by `tweak`. Stopping it leaves the database alone.
    pub async fn replica(&self, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        assert_eq!(self.backend, Backend::Postgres, "replicas share PostgreSQL");
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::default();
        config.data_dir = dir.path().to_path_buf();
        config.http.addr = "127.0.0.1:0".into();
        config.database.url = self.db_url.clone();
        config.auth.rate_limits.enabled = false;
        tweak(&mut config);
        Self::boot(
            config,
            self.backend,
            dir,
            None,
            self.admin.clone(),
            self.providers.clone(),
        )
        .await
    }

    /// Stops the server and starts a new one on the same data (directory and database), as a
    /// restart of the process would.
    pub async fn restart(mut self) -> TestServer {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
        let dir = tempfile::tempdir().unwrap();
        let dir = std::mem::replace(&mut self._dir, dir);
        let mut config = ServerConfig::default();
        config.data_dir = dir.path().to_path_buf();
        config.http.addr = "127.0.0.1:0".into();
        if self.backend == Backend::Postgres {
            config.database.url = self.db_url.clone();
        }
        config.auth.rate_limits.enabled = false;
        let pg_db = self.pg_db.take();
        Self::boot(
            config,
            self.backend,
            dir,
            pg_db,
            self.admin.clone(),
            self.providers.clone(),
        )
        .await
    }

    /// Stops the server and drops its PostgreSQL database.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
        if let Some(name) = self.pg_db.take() {
            use sqlx::Connection;
            if let Ok(mut c) = sqlx::PgConnection::connect(&pg_base_url()).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .execute(&mut c)
                .await;
            }
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        self.request_with(method, path, token, body, &[]).await
    }

    pub async fn request_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        assert_ne!(status.as_u16(), 500, "server error: {body}");
        Resp {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.request(Method::GET, path, token, None).await
    }
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.request(Method::POST, path, token, Some(body)).await
    }
    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.request(Method::PATCH, path, token, Some(body)).await
    }
    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.request(Method::PUT, path, token, Some(body)).await
    }
    pub async fn delete(&self, path: &str, token: Option<&str>) -> Resp {
        self.request(Method::DELETE, path, token, None).await
    }

    /// Creates an admin with `role` directly in the database and signs in over HTTP.
    pub async fn admin_with_role(&self, email: &str, role: AdminRole) -> String {
        ferrobase_server::admin::create_admin(
            &self.state.db,
            email,
            "correct horse battery",
            role,
            8,
        )
        .await
        .map_err(|e| e.to_string())
        .unwrap();
        let r = self
            .post(
                "/v1/admin/auth/login",
                None,
                json!({"email": email, "password": "correct horse battery"}),
            )
            .await;
        r.expect(200)["token"].as_str().unwrap().to_owned()
    }

    /// The owner admin's token (created once per server).
    pub async fn admin(&self) -> String {
        self.admin
            .get_or_init(|| async {
                self.admin_with_role("owner@example.com", AdminRole::Owner)
                    .await
            })
            .await
            .clone()
    }

    /// Applies [`blog_schema`] and creates one post titled `title` as the owner admin:
    /// (admin token, post id). The set-up most HTTP-edge scenarios start from.
    pub async fn blog_post(&self, title: &str) -> (String, String) {
        let token = self.admin().await;
        self.apply(blog_schema()).await;
        let id = self
            .post(
                "/v1/collections/posts/records",
                Some(&token),
                json!({"title": title}),
            )
            .await
            .expect(201)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        (token, id)
    }

    /// Applies collections (JSON, same shape as the TOML) and asserts success.
    pub async fn apply(&self, collections: Value) -> Value {
        let token = self.admin().await;
        let r = self
            .post(
                "/v1/admin/schema/apply",
                Some(&token),
                json!({"collections": collections, "allow_destructive": true}),
            )
            .await;
        r.expect(200).clone()
    }
}

/// Generates `sqlite` and `postgres` tests in a module named after the scenario.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    if let Some(s) = $crate::common::TestServer::start($crate::common::Backend::Sqlite).await {
                        super::$name(&s).await;
                        s.stop().await;
                    }
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(s) = $crate::common::TestServer::start($crate::common::Backend::Postgres).await {
                        super::$name(&s).await;
                        s.stop().await;
                    }
                }
            }
        )*
    };
}

/// Generates `sqlite` and `postgres` tests for scenarios that start their own server:
/// `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::common::Backend::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::common::Backend::Postgres).await;
                }
            }
        )*
    };
}

/// Signs a user up and returns (user id, access token, refresh token).
pub async fn signup(s: &TestServer, email: &str) -> (String, String, String) {
    let r = s
        .post(
            "/v1/auth/signup",
            None,
            json!({"email": email, "password": "a long password"}),
        )
        .await;
    let b = r.expect(201);
    (
        b["user"]["id"].as_str().unwrap().to_owned(),
        b["access_token"].as_str().unwrap().to_owned(),
        b["refresh_token"].as_str().unwrap().to_owned(),
    )
}

/// Notes owned by users (`owner` holds a user id): visible by `view`, writable by the owner.
/// Realtime and sync tests flip `public` and the view rule to move records in and out of sight.
pub fn notes_schema(view: &str) -> Value {
    json!([{
        "name": "notes",
        "fields": {
            "owner": {"type": "text", "required": true},
            "title": {"type": "text"},
            "public": {"type": "bool", "default": false}
        },
        "rules": {
            "list": view, "view": view,
            "create": "owner = @auth.id",
            "update": "owner = @auth.id",
            "delete": "owner = @auth.id"
        }
    }, {
        "name": "locked",
        "fields": {"x": {"type": "text"}}
    }])
}

/// The notes view rule most realtime and sync tests use.
pub const NOTES_VIEW: &str = "owner = @auth.id || public = true";

/// Creates a note as `token` and returns its id.
pub async fn create_note(
    s: &TestServer,
    token: &str,
    owner: &str,
    title: &str,
    public: bool,
) -> String {
    s.post(
        "/v1/collections/notes/records",
        Some(token),
        json!({"owner": owner, "title": title, "public": public}),
    )
    .await
    .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A posts/authors schema used by many tests.
pub fn blog_schema() -> Value {
    json!([
        {
            "name": "authors",
            "fields": {
                "name": {"type": "text", "required": true, "max": 100},
                "email": {"type": "email"}
            },
            "rules": {"list": "true", "view": "true"},
            "indexes": [{"fields": ["email"], "unique": true}]
        },
        {
            "name": "posts",
            "fields": {
                "title": {"type": "text", "required": true, "max": 200},
                "body": {"type": "text"},
                "views": {"type": "number", "default": 0},
                "rank": {"type": "integer"},
                "published": {"type": "bool", "default": false},
                "status": {"type": "select", "values": ["draft", "live", "archived"]},
                "tags": {"type": "select", "values": ["rust", "go", "swift"], "multiple": true},
                "author": {"type": "relation", "collection": "authors"},
                "meta": {"type": "json"},
                "due": {"type": "date"},
                "site": {"type": "url"},
                "place": {"type": "geo"}
            },
            "rules": {"list": "true", "view": "true", "create": "true", "update": "true", "delete": "true"},
            "indexes": [{"fields": ["published", "views"]}]
        }
    ])
}
