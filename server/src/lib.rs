//! Ferrobase: a self-hostable backend-as-a-service for mobile apps — the engine.
//!
//! # Layout
//! - [`config`]: server settings from defaults, TOML, `FERROBASE_*` env and flags.
//! - [`db`]: SQLite or PostgreSQL behind one handle; group commit on SQLite; migrations.
//! - [`catalog`] / [`schemas`]: the applied collections, plan and apply of new versions.
//! - [`records`]: CRUD, lists, batch, with [`access`] rules on every path.
//! - [`admin`]: operator accounts and tokens.
//! - [`idempotency`]: `Idempotency-Key` claims, stored answers and their pruning.
//! - [`http`]: the router, extractors, middleware; [`error`]: problem+json codes.
//! - [`thumbs`]: image thumbnails for file downloads (`?thumb=WxH`), bounded against bombs.
//!
//! The binary (`ferrobase`) is thin: it parses flags and calls [`serve`].

pub mod access;
pub mod admin;
pub mod apikeys;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod changes;
pub mod config;
pub mod db;
pub mod error;
pub mod files;
pub mod http;
pub mod idempotency;
pub mod jobs;
pub mod mail;
pub mod openapi;
pub mod passwords;
pub mod push;
pub mod ratelimit;
pub mod realtime;
pub mod records;
pub mod schemas;
pub mod sync;
pub mod tokens;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::catalog::CatalogHandle;
use crate::config::Settings;
use crate::db::Db;
use crate::http::AppState;

/// Opens the database and applies the system migrations — nothing else runs (no job runner):
/// what offline commands such as `admin create` and `audit verify` need.
pub async fn open_db(settings: &Settings) -> anyhow::Result<Db> {
    if settings.database_url.starts_with("sqlite:") {
        std::fs::create_dir_all(&settings.data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create data dir {}: {e}",
                settings.data_dir.display()
            )
        })?;
    }
    let opts = db::DbOptions {
        max_connections: settings.max_connections,
        synchronous: settings.synchronous,
        exclusive: settings.exclusive,
    };
    Db::connect_with(&settings.database_url, &opts)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot open database {}: {e}",
                config::redact_url(&settings.database_url)
            )
        })
}

/// Opens the database (applying system migrations) and loads the current schema.
/// Opens the server without push providers (tests, tools): deliveries end
/// `provider_not_configured`. The binary calls [`open_with`].
pub async fn open(settings: Settings) -> anyhow::Result<AppState> {
    open_with(settings, Vec::new()).await
}

/// Opens the server with the push provider plugins the binary built from `[push.<name>]`.
pub async fn open_with(
    settings: Settings,
    push_providers: Vec<Arc<dyn ferrobase_plugin_api::PushProvider>>,
) -> anyhow::Result<AppState> {
    let db = open_db(&settings).await?;
    let catalog = CatalogHandle::default();
    catalog.replace(
        schemas::load(&db)
            .await
            .map_err(|e| anyhow::anyhow!("cannot load schema: {e}"))?,
    );
    // Mail goes out through the job queue; a bad `mail.from` stops the start with a message.
    let sender = mail::SmtpSender::new(&settings.smtp, &settings.mail.from).map_err(|e| {
        anyhow::anyhow!(
            "invalid mail settings: {}",
            e.cause.as_deref().unwrap_or(&e.detail)
        )
    })?;
    let files = files::Files::open(&settings)
        .map_err(|e| anyhow::anyhow!("invalid storage settings: {e}"))?;
    let collector = files::Collector {
        db: db.clone(),
        catalog: catalog.clone(),
        files: files.clone(),
    };
    let push = push::Push::new(db.clone(), push_providers, settings.push.clone());
    let mut handlers: Vec<Arc<dyn jobs::JobHandler>> = vec![Arc::new(sender), Arc::new(collector)];
    handlers.extend(push.handlers());
    let jobs = jobs::spawn(db.clone(), handlers);
    push.attach_runner(jobs.clone());
    let keys = auth::Keys::load(&db)
        .await
        .map_err(|e| anyhow::anyhow!("cannot load signing keys: {e}"))?;
    let limits = ratelimit::Limits::new(settings.rate_limits.as_ref());
    // Other replicas cannot tell this one that a session ended: trust the cache only briefly.
    let session_ttl = if db.dialect() == ferrobase_expr::Dialect::Postgres {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(30)
    };
    let realtime = realtime::Hub::new(db.clone(), catalog.clone(), settings.realtime.clone());
    Ok(AppState::new(http::Shared {
        files,
        realtime,
        jobs,
        push,
        sessions: Arc::new(auth::cache::SessionCache::new(session_ttl)),
        keys,
        limits,
        idempotency: idempotency::Idempotency::open(db.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot load idempotency keys: {e}"))?,
        db,
        catalog,
        settings: Arc::new(settings),
    }))
}

/// Serves the API on `listener` until `shutdown` resolves, then drains in-flight requests and
/// closes the database (the SQLite writer commits what it holds first).
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Once a minute: rate limiter state of keys back at full budget is dropped, the change
    // log loses what is older than retention, idempotency keys past theirs are pruned (both
    // in short batches), and expired uploads are removed.
    let (limits, db, retention, files, idem) = (
        state.limits.clone(),
        state.db.clone(),
        state.settings.realtime.retention,
        state.files.clone(),
        state.idempotency.table().clone(),
    );
    let housekeeping = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limits.housekeeping();
            if let Err(e) = changes::prune(&db, retention).await {
                tracing::warn!(error = %e, "change log retention failed");
            }
            if let Err(e) = files::uploads::prune(&db, &files).await {
                tracing::warn!(error = %e, "expired upload removal failed");
            }
            let before = idempotency::retention_cutoff(chrono::Utc::now());
            match idem.prune(before).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(deleted = n, "pruned idempotency keys"),
                Err(e) => tracing::warn!(error = %e, "pruning idempotency keys failed"),
            }
        }
    });
    let mut background = vec![tokio::spawn(state.realtime.clone().run())];
    if state.db.dialect() == ferrobase_expr::Dialect::Postgres {
        background.push(tokio::spawn(realtime::run_pg_pump(
            state.db.clone(),
            state.settings.database_url.clone(),
        )));
    }
    // Another replica may apply a schema version: notice it within a couple of seconds.
    let refresher = (state.db.dialect() == ferrobase_expr::Dialect::Postgres).then(|| {
        let (db, catalog) = (state.db.clone(), state.catalog.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tick.tick().await;
                if let Err(e) = schemas::refresh_if_changed(&db, &catalog).await {
                    tracing::warn!(error = %e, "schema refresh failed");
                }
            }
        })
    });
    let db = state.db.clone();
    let jobs = state.jobs.clone();
    let hub = state.realtime.clone();
    let idem_state = state.clone();
    let app = http::router(state);
    // Event streams are served by the listener itself; hyper gets every other connection.
    // The no-op tap is what lets axum hand the peer address to `ConnectInfo` for a listener
    // of our own.
    use axum::serve::ListenerExt;
    let listener = http::listener::Listener::new(listener, app.clone())?.tap_io(|_| {});
    let result = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        hub.close();
    })
    .await;
    if let Some(r) = refresher {
        r.abort();
    }
    housekeeping.abort();
    for task in background {
        task.abort();
    }
    // Answers already sent are stored, and running jobs finish (or go back to the queue),
    // while the database is still open.
    idem_state.idempotency.drain(Duration::from_secs(5)).await;
    jobs.shutdown().await;
    db.close().await;
    result.map_err(Into::into)
}
