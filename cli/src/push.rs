//! `ferrobase push send|status`: send a push through a server's `POST /v1/push` and follow its
//! per-device outcomes, with the admin token of `ferrobase login` (or `FERROBASE_TOKEN`, e.g.
//! an API key with `push:send`).

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Map, Value, json};

use crate::Failure;
use crate::remote::{self, TargetArgs};

#[derive(Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// A user id to send to (repeatable).
    #[arg(long = "user")]
    pub users: Vec<String>,
    /// A device id to send to (repeatable).
    #[arg(long = "device")]
    pub devices: Vec<String>,
    /// Every device subscribed to this topic.
    #[arg(long)]
    pub topic: Option<String>,
    #[arg(long)]
    pub title: Option<String>,
    #[arg(long)]
    pub body: Option<String>,
    /// Custom data as a JSON object.
    #[arg(long)]
    pub data: Option<String>,
    /// A category from push.toml (none = transactional).
    #[arg(long)]
    pub category: Option<String>,
    #[arg(long)]
    pub collapse_id: Option<String>,
    #[arg(long)]
    pub ttl_seconds: Option<u64>,
    /// `high` or `normal`.
    #[arg(long)]
    pub priority: Option<String>,
    /// Send later (RFC 3339).
    #[arg(long)]
    pub send_at: Option<String>,
    /// Wait until every delivery is final and print the outcome counts.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The job id `push send` printed.
    pub job: String,
}

/// The request body, or a usage error naming the flag.
fn body(a: &SendArgs) -> Result<Value, Failure> {
    let to = match (a.users.is_empty(), a.devices.is_empty(), &a.topic) {
        (false, true, None) => json!({"users": a.users}),
        (true, false, None) => json!({"devices": a.devices}),
        (true, true, Some(t)) => json!({"topic": t}),
        _ => {
            return Err(Failure::usage(
                "name exactly one target: --user (repeatable), --device (repeatable) or --topic",
            ));
        }
    };
    let mut b = Map::new();
    b.insert("to".into(), to);
    let text = [
        ("title", &a.title),
        ("body", &a.body),
        ("category", &a.category),
        ("collapse_id", &a.collapse_id),
        ("priority", &a.priority),
        ("send_at", &a.send_at),
    ];
    for (k, v) in text {
        if let Some(v) = v {
            b.insert(k.into(), Value::String(v.clone()));
        }
    }
    if let Some(ttl) = a.ttl_seconds {
        b.insert("ttl_seconds".into(), ttl.into());
    }
    if let Some(d) = &a.data {
        match serde_json::from_str::<Value>(d) {
            Ok(v @ Value::Object(_)) => {
                b.insert("data".into(), v);
            }
            _ => return Err(Failure::usage("--data must be a JSON object")),
        }
    }
    Ok(Value::Object(b))
}

fn counts(job: &Value) -> String {
    job.get("counts")
        .and_then(Value::as_object)
        .map(|c| {
            c.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

pub async fn send(a: SendArgs) -> Result<(), Failure> {
    let body = body(&a)?;
    let t = remote::target_for(&a.target)?;
    let (status, v) = remote::send(&t, reqwest::Method::POST, "/v1/push", Some(body)).await?;
    if status != 202 {
        return Err(remote::problem_of(status, &v));
    }
    let job = v
        .get("job_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    println!("queued push job {job}");
    if !a.wait {
        return Ok(());
    }
    let start = Instant::now();
    loop {
        let (status, v) = remote::send(
            &t,
            reqwest::Method::GET,
            &format!("/v1/push/{job}?limit=1"),
            None,
        )
        .await?;
        if status != 200 {
            return Err(remote::problem_of(status, &v));
        }
        if v.get("status").and_then(Value::as_str) == Some("done") {
            println!("done: {}", counts(&v));
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(600) {
            return Err(Failure::runtime(format!(
                "still {} after 10 minutes: {}",
                v.get("status").and_then(Value::as_str).unwrap_or("?"),
                counts(&v)
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn status(a: StatusArgs) -> Result<(), Failure> {
    let t = remote::target_for(&a.target)?;
    let (status, v) = remote::send(
        &t,
        reqwest::Method::GET,
        &format!("/v1/push/{}", a.job),
        None,
    )
    .await?;
    if status != 200 {
        return Err(remote::problem_of(status, &v));
    }
    println!(
        "{}  {}  {}",
        a.job,
        v.get("status").and_then(Value::as_str).unwrap_or("?"),
        counts(&v)
    );
    for d in v
        .get("deliveries")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let extra = [s("provider_id"), s("error"), s("not_before")]
            .into_iter()
            .filter(|x| !x.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "  {}  {:<8} {:<14} attempts {}  {extra}",
            s("device_id"),
            s("platform"),
            s("status"),
            d.get("attempts").and_then(Value::as_i64).unwrap_or(0)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: SendArgs,
    }

    fn parse(args: &[&str]) -> SendArgs {
        let mut all = vec!["t"];
        all.extend(args);
        T::parse_from(all).a
    }

    #[test]
    fn exactly_one_target_and_data_is_an_object() {
        let b = body(&parse(&[
            "--topic",
            "news",
            "--title",
            "Hi",
            "--ttl-seconds",
            "60",
        ]));
        assert_eq!(
            b.ok(),
            Some(json!({"to": {"topic": "news"}, "title": "Hi", "ttl_seconds": 60}))
        );
        let b = body(&parse(&[
            "--user",
            "u1",
            "--user",
            "u2",
            "--data",
            "{\"k\":1}",
        ]));
        assert_eq!(
            b.ok(),
            Some(json!({"to": {"users": ["u1", "u2"]}, "data": {"k": 1}}))
        );
        assert!(body(&parse(&["--user", "u1", "--topic", "t"])).is_err());
        assert!(body(&parse(&[])).is_err());
        assert!(body(&parse(&["--topic", "t", "--data", "[1]"])).is_err());
    }
}
