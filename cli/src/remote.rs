//! Commands that talk to a running server's admin API: login, plan, apply, pull, history.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{Value, json};

use crate::Failure;

#[derive(Args, Clone)]
pub struct TargetArgs {
    /// Project folder.
    #[arg(long, default_value = ".")]
    pub project: PathBuf,
    /// Server URL (default: the project's environment).
    #[arg(long, env = "FERROBASE_SERVER")]
    pub server: Option<String>,
    /// Environment of ferrobase.toml to use.
    #[arg(long = "env", default_value = "local")]
    pub environment: String,
}

#[derive(Args)]
pub struct LoginArgs {
    #[arg(long, env = "FERROBASE_SERVER")]
    pub server: String,
    #[arg(long)]
    pub email: String,
    /// The password (or set FERROBASE_ADMIN_PASSWORD; asked for when neither is given).
    #[arg(long, env = "FERROBASE_ADMIN_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Exit 4 when changes are pending (0 when none).
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Apply without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Allow steps that drop data (removed collections or fields, type changes).
    #[arg(long)]
    pub allow_destructive: bool,
}

/// Where `login` keeps tokens: one per server URL.
fn credentials_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("ferrobase").join("credentials.json")
}

fn load_credentials() -> BTreeMap<String, String> {
    std::fs::read_to_string(credentials_path())
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

fn save_credentials(creds: &BTreeMap<String, String>) -> Result<(), Failure> {
    let path = credentials_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::runtime(format!("cannot create {}: {e}", dir.display())))?;
    }
    let text = serde_json::to_string_pretty(creds).unwrap_or_default();
    write_private(&path, &text)
        .map_err(|e| Failure::runtime(format!("cannot write {}: {e}", path.display())))
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

fn normalize(server: &str) -> String {
    server.trim_end_matches('/').to_owned()
}

/// A server URL plus the admin token for it.
pub struct Target {
    server: String,
    token: String,
    client: reqwest::Client,
}

fn load_project(dir: &Path) -> Result<ferrobase_schema::Project, Failure> {
    ferrobase_schema::load_project(dir).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        Failure::usage(format!(
            "the project in {} is invalid:\n{}",
            dir.display(),
            lines.join("\n")
        ))
    })
}

fn target(
    args: &TargetArgs,
    project: Option<&ferrobase_schema::Project>,
) -> Result<Target, Failure> {
    let server = match (&args.server, project) {
        (Some(s), _) => s.clone(),
        (None, Some(p)) => p
            .environments
            .get(&args.environment)
            .map(|e| e.server.clone())
            .ok_or_else(|| {
                Failure::usage(format!(
                    "ferrobase.toml has no [environments.{}]",
                    args.environment
                ))
            })?,
        (None, None) => match ferrobase_schema::load_project(&args.project) {
            Ok(p) => p
                .environments
                .get(&args.environment)
                .map(|e| e.server.clone())
                .ok_or_else(|| {
                    Failure::usage(format!(
                        "ferrobase.toml has no [environments.{}]",
                        args.environment
                    ))
                })?,
            Err(_) => return Err(Failure::usage("pass --server (no project folder here)")),
        },
    };
    let server = normalize(&server);
    let token = match std::env::var("FERROBASE_TOKEN") {
        Ok(t) if !t.is_empty() => t,
        _ => load_credentials()
            .get(&server)
            .cloned()
            .ok_or_else(|| Failure::runtime(format!("not signed in to {server}: run `ferrobase login --server {server} --email …` or set FERROBASE_TOKEN")))?,
    };
    Ok(Target {
        server,
        token,
        client: reqwest::Client::new(),
    })
}

/// The server and token for commands that need no project file (`push`).
pub fn target_for(args: &TargetArgs) -> Result<Target, Failure> {
    target(args, None)
}

/// [`call`] for the other command modules.
pub async fn send(
    t: &Target,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), Failure> {
    call(t, method, path, body).await
}

/// [`problem`] for the other command modules.
pub fn problem_of(status: u16, v: &Value) -> Failure {
    problem(status, v)
}

/// Sends a request; a problem response becomes a `Failure` with its detail.
async fn call(
    t: &Target,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), Failure> {
    let mut req = t
        .client
        .request(method, format!("{}{path}", t.server))
        .bearer_auth(&t.token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| Failure::runtime(format!("cannot reach {}: {e}", t.server)))?;
    let status = resp.status().as_u16();
    let value: Value = resp.json().await.unwrap_or(Value::Null);
    Ok((status, value))
}

fn problem(status: u16, v: &Value) -> Failure {
    let code = v.get("code").and_then(Value::as_str).unwrap_or("error");
    let detail = v
        .get("detail")
        .and_then(Value::as_str)
        .unwrap_or("the server refused the request");
    let mut msg = format!("{detail} ({status} {code})");
    if let Some(errors) = v.get("errors").and_then(Value::as_object) {
        for (k, m) in errors {
            msg.push_str(&format!("\n  {k}: {}", m.as_str().unwrap_or("")));
        }
    }
    match code {
        "validation_failed" => Failure::usage(msg),
        "destructive_change" => Failure {
            code: 3,
            message: msg,
        },
        _ => Failure::runtime(msg),
    }
}

pub async fn login(args: LoginArgs) -> Result<(), Failure> {
    let server = normalize(&args.server);
    let password = match args.password {
        Some(p) => p,
        None => {
            eprint!("Password for {}: ", args.email);
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| Failure::runtime(e.to_string()))?;
            line.trim_end_matches(['\n', '\r']).to_owned()
        }
    };
    let resp = reqwest::Client::new()
        .post(format!("{server}/v1/admin/auth/login"))
        .json(&json!({"email": args.email, "password": password}))
        .send()
        .await
        .map_err(|e| Failure::runtime(format!("cannot reach {server}: {e}")))?;
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if status != 200 {
        return Err(problem(status, &v));
    }
    let token = v
        .get("token")
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::runtime("the server sent no token"))?;
    let mut creds = load_credentials();
    creds.insert(server.clone(), token.to_owned());
    save_credentials(&creds)?;
    println!("Signed in to {server} as {}", args.email);
    Ok(())
}

/// A readable diff of plan changes: `+` adds, `-` removes, `~` changes.
pub fn render_changes(changes: &[Value]) -> String {
    if changes.is_empty() {
        return "No changes: the server matches the project.\n".into();
    }
    let mut out = String::new();
    let mut destructive = 0;
    for c in changes {
        let kind = c.get("kind").and_then(Value::as_str).unwrap_or("");
        let marker = if kind.starts_with("create") || kind.starts_with("add") {
            "+"
        } else if kind.starts_with("drop") || kind.starts_with("remove") {
            "-"
        } else {
            "~"
        };
        let desc = c.get("description").and_then(Value::as_str).unwrap_or(kind);
        let d = c
            .get("destructive")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if d {
            destructive += 1;
        }
        // The server's descriptions already start with their own +/-/~ marker.
        let marker = if desc.starts_with(['+', '-', '~']) {
            String::new()
        } else {
            format!("{marker} ")
        };
        let flag = if d && !desc.contains("DESTRUCTIVE") {
            "  [DESTRUCTIVE]"
        } else {
            ""
        };
        out.push_str(&format!("  {marker}{desc}{flag}\n"));
    }
    out.push_str(&format!(
        "\nPlan: {} change(s), {destructive} destructive.\n",
        changes.len()
    ));
    out
}

fn schema_body(project: &ferrobase_schema::Project, allow_destructive: bool) -> Value {
    json!({
        "collections": project.collections,
        "push": project.push,
        "allow_destructive": allow_destructive,
    })
}

/// Loads the project, asks the server for the plan and prints it (shared by plan and apply).
async fn show_plan(
    args: &TargetArgs,
) -> Result<(ferrobase_schema::Project, Target, Vec<Value>), Failure> {
    let project = load_project(&args.project)?;
    crate::triggers::check_project(&project)?;
    let t = target(args, Some(&project))?;
    let (status, v) = call(
        &t,
        reqwest::Method::POST,
        "/v1/admin/schema/plan",
        Some(schema_body(&project, false)),
    )
    .await?;
    if status != 200 {
        return Err(problem(status, &v));
    }
    let changes = v
        .get("changes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    print!("{}", render_changes(&changes));
    Ok((project, t, changes))
}

pub async fn plan(args: PlanArgs) -> Result<u8, Failure> {
    let (_, _, changes) = show_plan(&args.target).await?;
    Ok(if args.detailed_exitcode && !changes.is_empty() {
        4
    } else {
        0
    })
}

pub async fn apply(args: ApplyArgs) -> Result<(), Failure> {
    let (project, t, changes) = show_plan(&args.target).await?;
    if changes.is_empty() {
        return Ok(());
    }
    let destructive = changes.iter().any(|c| {
        c.get("destructive")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    });
    if destructive && !args.allow_destructive {
        return Err(Failure {
            code: 3,
            message:
                "the plan has destructive steps; re-run with --allow-destructive to apply them"
                    .into(),
        });
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::usage(
                "not a terminal: pass --yes to apply without asking",
            ));
        }
        eprint!("Apply these changes to {}? [y/N] ", t.server);
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            return Err(Failure::runtime("cancelled; nothing applied"));
        }
    }
    let (status, v) = call(
        &t,
        reqwest::Method::POST,
        "/v1/admin/schema/apply",
        Some(schema_body(&project, args.allow_destructive)),
    )
    .await?;
    if status != 200 {
        return Err(problem(status, &v));
    }
    let version = v.get("version").and_then(Value::as_i64).unwrap_or(0);
    println!("Applied: the server is at schema version {version}.");
    Ok(())
}

pub async fn pull(args: TargetArgs) -> Result<(), Failure> {
    let t = target(&args, None)?;
    let (status, v) = call(&t, reqwest::Method::GET, "/v1/admin/schema", None).await?;
    if status != 200 {
        return Err(problem(status, &v));
    }
    let collections: Vec<ferrobase_schema::Collection> = serde_json::from_value(
        v.get("collections")
            .cloned()
            .unwrap_or(Value::Array(vec![])),
    )
    .map_err(|e| Failure::runtime(format!("the server sent an unreadable schema: {e}")))?;
    let dir = args.project.join("collections");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::runtime(format!("cannot create {}: {e}", dir.display())))?;
    let keep: Vec<String> = collections
        .iter()
        .map(|c| format!("{}.toml", c.name))
        .collect();
    for c in &collections {
        let path = dir.join(format!("{}.toml", c.name));
        std::fs::write(&path, ferrobase_schema::collection_to_toml(c))
            .map_err(|e| Failure::runtime(format!("cannot write {}: {e}", path.display())))?;
    }
    // The folder mirrors the server: files of collections the server does not have go.
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".toml") && !keep.contains(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    // push.toml mirrors the server's categories too (absent when it has none).
    let push: ferrobase_schema::PushProject =
        serde_json::from_value(v.get("push").cloned().unwrap_or(Value::Null)).unwrap_or_default();
    let push_file = args.project.join("push.toml");
    if push.categories.is_empty() {
        let _ = std::fs::remove_file(&push_file);
    } else {
        let text = toml::to_string(&push)
            .map_err(|e| Failure::runtime(format!("cannot write push.toml: {e}")))?;
        std::fs::write(&push_file, text)
            .map_err(|e| Failure::runtime(format!("cannot write {}: {e}", push_file.display())))?;
    }
    println!(
        "Pulled {} collection(s) into {}",
        collections.len(),
        dir.display()
    );
    Ok(())
}

pub async fn history(args: TargetArgs) -> Result<(), Failure> {
    let t = target(&args, None)?;
    let (status, v) = call(&t, reqwest::Method::GET, "/v1/admin/schema/history", None).await?;
    if status != 200 {
        return Err(problem(status, &v));
    }
    let items = v
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if items.is_empty() {
        println!("No schema applied yet.");
    }
    for item in items {
        let version = item.get("version").and_then(Value::as_i64).unwrap_or(0);
        let at = item.get("applied_at").and_then(Value::as_str).unwrap_or("");
        let by = item
            .get("applied_by")
            .and_then(Value::as_str)
            .unwrap_or("-");
        let n = item
            .get("changes")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        println!("v{version}  {at}  by {by}  {n} change(s)");
    }
    Ok(())
}
