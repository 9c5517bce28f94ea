//! `ferrobase serve` and the offline `ferrobase admin create`.

use std::path::PathBuf;

use clap::Args;
use ferrobase_server::access::AdminRole;
use ferrobase_server::config::{ServerConfig, Settings};

use crate::Failure;

#[derive(Args)]
pub struct ServeArgs {
    /// Server config file (TOML); see `ferrobase default-config`.
    #[arg(long, env = "FERROBASE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (SQLite file and local files).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Listen address.
    #[arg(long)]
    pub http: Option<String>,
    /// Database URL (`postgres://…` for PostgreSQL).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Log format: text or json.
    #[arg(long)]
    pub log_format: Option<String>,
}

/// Defaults → file → env → flags, validated. A bad value exits 2 naming the key.
fn settings(
    config: Option<&std::path::Path>,
    data_dir: Option<PathBuf>,
    http: Option<String>,
    database_url: Option<String>,
    log_format: Option<String>,
) -> Result<Settings, Failure> {
    let mut c =
        ServerConfig::load(config, std::env::vars()).map_err(|e| Failure::usage(e.to_string()))?;
    if let Some(d) = data_dir {
        c.data_dir = d;
    }
    if let Some(h) = http {
        c.http.addr = h;
    }
    if let Some(u) = database_url {
        c.database.url = u;
    }
    if let Some(f) = log_format {
        c.log.format = f;
    }
    c.resolve().map_err(|e| Failure::usage(e.to_string()))
}

fn init_tracing(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if settings.log_json {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

pub async fn serve(args: ServeArgs) -> Result<(), Failure> {
    let settings = settings(
        args.config.as_deref(),
        args.data_dir,
        args.http,
        args.database_url,
        args.log_format,
    )?;
    init_tracing(&settings);
    let addr = settings.addr;
    let db_label = ferrobase_server::config::redact_url(&settings.database_url);
    let providers = crate::plugins::push_providers(&settings.push_providers)
        .map_err(|e| Failure::usage(format!("invalid push settings: {e}")))?;
    let state = ferrobase_server::open_with(settings, providers)
        .await
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::runtime(format!("cannot listen on {addr}: {e}")))?;
    tracing::info!(%addr, database = %db_label, "ferrobase is serving on http://{addr}");
    ferrobase_server::serve(state, listener, shutdown_signal())
        .await
        .map_err(|e| Failure::runtime(e.to_string()))?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM or Ctrl-C: stop accepting, finish in-flight requests, commit, exit.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

#[derive(Args)]
pub struct AdminCreateArgs {
    #[arg(long)]
    pub email: String,
    /// The password (or set FERROBASE_ADMIN_PASSWORD).
    #[arg(long, env = "FERROBASE_ADMIN_PASSWORD", hide_env_values = true)]
    pub password: String,
    /// owner, admin, support or viewer.
    #[arg(long, default_value = "owner")]
    pub role: String,
    #[arg(long, env = "FERROBASE_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long)]
    pub database_url: Option<String>,
    /// Succeed without changes when the email already exists.
    #[arg(long)]
    pub if_not_exists: bool,
}

pub async fn admin_create(args: AdminCreateArgs) -> Result<(), Failure> {
    let role = AdminRole::parse(&args.role).ok_or_else(|| {
        Failure::usage(format!(
            "unknown role `{}` (owner, admin, support, viewer)",
            args.role
        ))
    })?;
    let settings = settings(
        args.config.as_deref(),
        args.data_dir,
        None,
        args.database_url,
        None,
    )?;
    let min = settings.min_password_length;
    let db = ferrobase_server::open_db(&settings)
        .await
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let result =
        ferrobase_server::admin::create_admin(&db, &args.email, &args.password, role, min).await;
    db.close().await;
    match result {
        Ok(admin) => {
            println!("Created admin {} ({})", admin.email, admin.role.as_str());
            Ok(())
        }
        Err(ferrobase_server::admin::CreateAdminError::Exists(email)) if args.if_not_exists => {
            println!("Admin {email} already exists; nothing changed");
            Ok(())
        }
        Err(e @ ferrobase_server::admin::CreateAdminError::Invalid { .. }) => {
            Err(Failure::usage(e.to_string()))
        }
        Err(e) => Err(Failure::runtime(e.to_string())),
    }
}

#[derive(Args)]
pub struct DbArgs {
    #[arg(long, env = "FERROBASE_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long)]
    pub database_url: Option<String>,
}

pub async fn audit_verify(args: DbArgs) -> Result<(), Failure> {
    let settings = settings(
        args.config.as_deref(),
        args.data_dir,
        None,
        args.database_url,
        None,
    )?;
    if let Some(path) = settings.database_url.strip_prefix("sqlite://")
        && !std::path::Path::new(path).exists()
    {
        return Err(Failure::usage(format!("no database at {path}")));
    }
    let db = ferrobase_server::open_db(&settings)
        .await
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let result = ferrobase_server::audit::verify_head(&db).await;
    db.close().await;
    match result {
        Ok((n, head)) => {
            println!("Audit log intact: {n} entries verified.");
            println!("Head hash: {head} (record it elsewhere to detect removal of newer entries)");
            Ok(())
        }
        Err(e) => Err(Failure::runtime(format!(
            "audit log verification failed: {e}"
        ))),
    }
}
