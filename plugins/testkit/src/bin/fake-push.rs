//! `fake-push`: the loopback APNs and FCM of this crate as a process, for benchmarks and
//! end-to-end tests that run the real `ferrobase serve` (bench/push.sh,
//! tests/e2e/crash/push.py).
//!
//! ```text
//! fake-push --dir DIR [--latency-ms 0] [--apns-streams 1000] [--stats-port 0] [--topic com.example.app]
//! ```
//!
//! It starts a [`FakeApns`] (TLS + HTTP/2, token auth) and a [`FakeFcm`] (with its OAuth
//! endpoint) on 127.0.0.1, writes into DIR what a server needs to reach them:
//!
//! - `apns-ca.pem`: the CA the fake APNs's certificate chains to (`[push.apns] ca_file`);
//! - `apns-key.p8`: the provider token signing key (`key_file`; key id and team id in the toml);
//! - `fcm-service-account.json`: a service-account key whose `token_uri` is the fake's;
//! - `server.toml`: `[push.apns]` and `[push.fcm]` sections ready to append to a server config;
//!
//! prints one JSON line on stdout (`apns_base_url`, `fcm_base_url`, `stats_url`, `config` and
//! the three file paths), then serves until it is killed (or gets Ctrl-C).
//!
//! `GET <stats_url>` answers the counts so far, cheap enough to poll:
//! `{"apns": {"requests", "tokens", "by_token_max", "histogram", "by_status"}, "fcm": {…}}`
//! (see [`Tally`]). `by_token_max` = 1 proves no device was sent the same push twice (every
//! device has its own token). Requests are counted, not kept, so memory stays flat however
//! long it runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use ferrobase_push_testkit::Tally;
use ferrobase_push_testkit::apns::{ApnsOptions, FakeApns, signing_key};
use ferrobase_push_testkit::fcm::{FakeFcm, FcmOptions};
use serde_json::json;

const USAGE: &str = "usage: fake-push --dir DIR [--latency-ms N] [--apns-streams N] \
                     [--stats-port N] [--topic BUNDLE_ID]";

struct Args {
    dir: PathBuf,
    latency: Duration,
    apns_streams: u32,
    stats_port: u16,
    topic: String,
}

fn parse_args() -> Result<Args, String> {
    let mut dir = None;
    let mut latency = Duration::ZERO;
    let mut apns_streams = ApnsOptions::default().max_concurrent_streams;
    let mut stats_port = 0;
    let mut topic = ApnsOptions::default().topic;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_owned());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {v:?}"))
        };
        match flag.as_str() {
            "--dir" => dir = Some(PathBuf::from(value)),
            "--latency-ms" => latency = Duration::from_millis(number(&value)?),
            "--apns-streams" => {
                apns_streams =
                    u32::try_from(number(&value)?).map_err(|_| format!("{flag}: too large"))?;
            }
            "--stats-port" => {
                stats_port =
                    u16::try_from(number(&value)?).map_err(|_| format!("{flag}: not a port"))?;
            }
            "--topic" => topic = value,
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    let dir = dir.ok_or_else(|| format!("--dir is required\n{USAGE}"))?;
    Ok(Args {
        dir,
        latency,
        apns_streams,
        stats_port,
        topic,
    })
}

struct Fakes {
    apns: FakeApns,
    fcm: FakeFcm,
}

fn tally_json(t: &Tally) -> serde_json::Value {
    serde_json::to_value(t).unwrap_or_default()
}

async fn stats(State(fakes): State<Arc<Fakes>>) -> axum::Json<serde_json::Value> {
    axum::Json(json!({
        "apns": tally_json(&fakes.apns.tally()),
        "fcm": tally_json(&fakes.fcm.tally()),
    }))
}

/// A TOML basic string (paths and URLs here are plain, but quote them properly anyway).
fn toml_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

async fn run(args: Args) -> Result<(), String> {
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| format!("cannot create {}: {e}", args.dir.display()))?;
    let dir = std::path::absolute(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let key = signing_key();
    let apns = FakeApns::start(ApnsOptions {
        latency: args.latency,
        max_concurrent_streams: args.apns_streams,
        auth: key.auth(),
        topic: args.topic.clone(),
        record_requests: false,
    })
    .await;
    let fcm = FakeFcm::start(FcmOptions {
        latency: args.latency,
        record_requests: false,
        ..FcmOptions::default()
    })
    .await;

    let ca_file = dir.join("apns-ca.pem");
    let key_file = dir.join("apns-key.p8");
    let sa_file = dir.join("fcm-service-account.json");
    let config = dir.join("server.toml");
    write(&ca_file, &apns.ca_pem())?;
    write(&key_file, &key.p8_pem)?;
    write(&sa_file, &fcm.service_account_json())?;
    let path = |p: &Path| toml_str(&p.display().to_string());
    write(
        &config,
        &format!(
            "# Written by fake-push: the loopback APNs and FCM it serves.\n\
             [push.apns]\n\
             base_url = {}\nca_file = {}\nkey_file = {}\nkey_id = {}\nteam_id = {}\ntopic = {}\n\n\
             [push.fcm]\n\
             base_url = {}\nservice_account_file = {}\n",
            toml_str(&apns.base_url()),
            path(&ca_file),
            path(&key_file),
            toml_str(&key.key_id),
            toml_str(&key.team_id),
            toml_str(&args.topic),
            toml_str(&fcm.base_url()),
            path(&sa_file),
        ),
    )?;

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.stats_port))
        .await
        .map_err(|e| format!("cannot bind the stats port {}: {e}", args.stats_port))?;
    let stats_addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!(
        "{}",
        json!({
            "apns_base_url": apns.base_url(),
            "fcm_base_url": fcm.base_url(),
            "stats_url": format!("http://{stats_addr}/stats"),
            "config": config,
            "ca_file": ca_file,
            "key_file": key_file,
            "service_account_file": sa_file,
            "latency_ms": args.latency.as_millis() as u64,
            "apns_streams": args.apns_streams,
        })
    );
    let fakes = Arc::new(Fakes { apns, fcm });
    let app = Router::new()
        .route("/stats", get(stats))
        .with_state(Arc::clone(&fakes));
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| format!("stats server: {e}"))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fake-push: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("fake-push: {message}");
            ExitCode::FAILURE
        }
    }
}
