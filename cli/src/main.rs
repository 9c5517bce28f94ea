//! `ferrobase`: serves the backend and manages it. Thin: parses flags, then calls the engine
//! (`serve`, offline `admin create`) or a server's admin API (`plan`, `apply`, `pull`, …).
//!
//! Exit codes: 0 success; 1 runtime failure (server unreachable or refused); 2 invalid usage
//! or invalid project files (nothing applied); 3 destructive changes refused; 4 changes
//! pending (`plan --detailed-exitcode`).

mod openapi;
mod plugins;
mod push;
mod remote;
mod serve;
mod triggers;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `ferrobase --version`: the crate version and the commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("FB_BUILD_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "ferrobase",
    version = VERSION,
    about = "A self-hostable backend for mobile apps"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (SQLite + local files by default).
    Serve(serve::ServeArgs),
    /// Manage admin accounts.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Create a new project folder (collections as code).
    Init {
        /// Folder to create (default: the current folder).
        dir: Option<PathBuf>,
        /// Project name (default: the folder's name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Sign in to a server as an admin and remember the token.
    Login(remote::LoginArgs),
    /// Show what `apply` would change on the server.
    Plan(remote::PlanArgs),
    /// Apply the project's collections to the server.
    Apply(remote::ApplyArgs),
    /// Write the server's collections into the project folder.
    Pull(remote::TargetArgs),
    /// Schema versions applied on the server.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Print a documented example server config.
    DefaultConfig,
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print the OpenAPI 3.1 document (generic, or typed for a project's collections).
    Openapi(openapi::OpenapiArgs),
    /// Trigger scripts: run a hook locally.
    Triggers {
        #[command(subcommand)]
        command: TriggersCommand,
    },
    /// Send push notifications and follow their outcomes.
    Push {
        #[command(subcommand)]
        command: PushCommand,
    },
}

#[derive(Subcommand)]
enum TriggersCommand {
    /// Run one hook on a record and print the record it returns (exit 1 when it throws).
    Test(triggers::TestArgs),
}

#[derive(Subcommand)]
enum PushCommand {
    /// Send a push to users, devices or a topic (POST /v1/push).
    Send(Box<push::SendArgs>),
    /// A push job's status and per-device outcomes.
    Status(push::StatusArgs),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an admin directly in the database (works offline, before the server runs).
    Create(serve::AdminCreateArgs),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit log's hash chain (offline, on the data dir or database URL): exits 1
    /// naming the first entry that was altered or removed.
    Verify(serve::DbArgs),
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// List applied schema versions, newest first.
    History(remote::TargetArgs),
}

/// A failure with its exit code; the message goes to stderr.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn runtime(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli.command));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn run(command: Command) -> Result<u8, Failure> {
    match command {
        Command::Serve(args) => serve::serve(args).await.map(|_| 0),
        Command::Admin {
            command: AdminCommand::Create(args),
        } => serve::admin_create(args).await.map(|_| 0),
        Command::Init { dir, name } => init(dir, name).map(|_| 0),
        Command::Login(args) => remote::login(args).await.map(|_| 0),
        Command::Plan(args) => remote::plan(args).await,
        Command::Apply(args) => remote::apply(args).await.map(|_| 0),
        Command::Pull(args) => remote::pull(args).await.map(|_| 0),
        Command::Schema {
            command: SchemaCommand::History(args),
        } => remote::history(args).await.map(|_| 0),
        Command::Openapi(args) => openapi::run(args).map(|_| 0),
        Command::Triggers {
            command: TriggersCommand::Test(args),
        } => triggers::test(args),
        Command::Push {
            command: PushCommand::Send(args),
        } => push::send(*args).await.map(|_| 0),
        Command::Push {
            command: PushCommand::Status(args),
        } => push::status(args).await.map(|_| 0),
        Command::Audit {
            command: AuditCommand::Verify(args),
        } => serve::audit_verify(args).await.map(|_| 0),
        Command::DefaultConfig => {
            print!("{}", ferrobase_server::config::DEFAULT_CONFIG_TOML);
            Ok(0)
        }
    }
}

fn init(dir: Option<PathBuf>, name: Option<String>) -> Result<(), Failure> {
    let dir = dir.unwrap_or_else(|| PathBuf::from("."));
    let name = match name {
        Some(n) => n,
        None => std::fs::canonicalize(&dir)
            .ok()
            .or_else(|| Some(dir.clone()))
            .and_then(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "myapp".into()),
    };
    ferrobase_schema::init_project(&dir, &name)
        .map_err(|e| Failure::usage(format!("cannot create project in {}: {e}", dir.display())))?;
    println!("Created project `{name}` in {}", dir.display());
    println!("Next: edit collections/*.toml, then `ferrobase plan` and `ferrobase apply`.");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
