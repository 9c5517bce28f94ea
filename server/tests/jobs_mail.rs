//! The durable job queue and mail delivery, against a real SMTP server on loopback, on SQLite
//! and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use common::smtp::{Message, Mode, SmtpSink};
use ferrobase_server::config::MailConfig;
use ferrobase_server::db::{ColType, Db, Param};
use ferrobase_server::error::Error;
use ferrobase_server::jobs::{self, Backoff, JobInfo, JobRunner, JobStatus};
use ferrobase_server::mail::{self, MailKind, SmtpSender};
use serde_json::{Value, json};

on_both!(
    committed_mail_is_delivered,
    rolled_back_mail_is_never_sent,
    transient_failure_is_retried,
    permanent_failure_fails_at_once,
    gives_up_after_max_attempts,
    unconfigured_smtp_fails_with_reason,
    unknown_kind_fails_with_reason,
    job_survives_a_restart,
);

const WAIT: Duration = Duration::from_secs(15);

fn fast(max_attempts: u32) -> Backoff {
    Backoff {
        base: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_attempts,
    }
}

/// Replaces the server's runner (no SMTP configured) with one that sends to `sink` and retries
/// after milliseconds.
async fn runner_for(s: &TestServer, sink: &SmtpSink, backoff: Backoff) -> JobRunner {
    s.state.jobs.shutdown().await;
    let sender = SmtpSender::new(&sink.config(), &s.state.settings.mail.from).unwrap();
    jobs::spawn_with(s.state.db.clone(), vec![Arc::new(sender)], backoff)
}

/// Commits a `kind` email to `to` (with another statement in the same transaction).
async fn send(db: &Db, cfg: &MailConfig, to: &str, kind: MailKind, secret: &str) -> i64 {
    let (cfg, to, secret) = (cfg.clone(), to.to_owned(), secret.to_owned());
    db.write(move |mut c| {
        Box::pin(async move {
            c.fetch("SELECT COUNT(*) FROM _fb_jobs", &[], &[ColType::Int])
                .await?;
            mail::enqueue(&mut c, &cfg, &to, kind, &secret).await
        })
    })
    .await
    .unwrap()
}

/// Waits until job `id` is done or failed.
async fn settled(db: &Db, id: i64) -> JobInfo {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let info = jobs::get(db, id).await.unwrap().expect("job exists");
        if matches!(info.status, JobStatus::Done | JobStatus::Failed) {
            return info;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} did not settle: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn payload(db: &Db, id: i64) -> Value {
    db.read(move |mut c| {
        Box::pin(async move {
            c.fetch_one(
                "SELECT payload FROM _fb_jobs WHERE id = $1",
                &[Param::Int(id)],
                &[ColType::Json],
            )
            .await
        })
    })
    .await
    .unwrap()
    .and_then(|r| r.into_iter().next())
    .map(|p| match p {
        Param::Json(v) => v,
        other => panic!("{other:?}"),
    })
    .unwrap()
}

async fn job_count(db: &Db) -> i64 {
    db.read(|mut c| {
        Box::pin(async move {
            c.fetch_one("SELECT COUNT(*) FROM _fb_jobs", &[], &[ColType::Int])
                .await
        })
    })
    .await
    .unwrap()
    .and_then(|r| r[0].as_i64())
    .unwrap()
}

async fn committed_mail_is_delivered(s: &TestServer) {
    let sink = SmtpSink::start().await;
    let runner = runner_for(s, &sink, fast(8)).await;
    let db = &s.state.db;
    let cfg = &s.state.settings.mail;

    let id = send(db, cfg, "ada@example.com", MailKind::VerifyEmail, "tok-123").await;
    runner.notify();
    let m: Message = sink
        .wait_for("ada@example.com", WAIT)
        .await
        .expect("delivered");
    assert_eq!(m.subject(), "Verify your email for Ferrobase");
    assert_eq!(m.from, "no-reply@localhost");
    let link = "http://127.0.0.1:8090/auth/verify-email?token=tok-123";
    assert!(m.text().contains(link), "text: {}", m.text());
    assert!(
        m.html().contains(&format!("href=\"{link}\"")),
        "html: {}",
        m.html()
    );
    assert_eq!(
        m.header("to").as_deref(),
        Some("ada@example.com"),
        "{}",
        m.data
    );

    let info = settled(db, id).await;
    assert_eq!(info.status, JobStatus::Done);
    assert_eq!(info.kind, "mail");
    assert_eq!(info.attempts, 1);
    assert_eq!(info.last_error, None);
    // The finished job keeps no secret.
    let p = payload(db, id).await;
    assert_eq!(p["to"], "ada@example.com");
    assert!(p.get("text").is_none() && p.get("html").is_none(), "{p}");
    assert!(!p.to_string().contains("tok-123"), "{p}");

    // Another kind, and several at once.
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            send(
                db,
                cfg,
                &format!("u{i}@example.com"),
                MailKind::PasswordReset,
                &format!("r{i}"),
            )
            .await,
        );
    }
    runner.notify();
    for i in 0..5 {
        let m = sink
            .wait_for(&format!("u{i}@example.com"), WAIT)
            .await
            .expect("delivered");
        assert_eq!(m.subject(), "Reset your Ferrobase password");
        assert!(
            m.text()
                .contains(&format!("/auth/reset-password?token=r{i}"))
        );
    }
    for id in ids {
        assert_eq!(settled(db, id).await.status, JobStatus::Done);
    }
    assert_eq!(sink.messages().len(), 6, "each mail sent once");
    runner.shutdown().await;
}

async fn rolled_back_mail_is_never_sent(s: &TestServer) {
    let sink = SmtpSink::start().await;
    let runner = runner_for(s, &sink, fast(8)).await;
    let db = &s.state.db;
    let cfg = s.state.settings.mail.clone();

    let r: Result<i64, Error> = db
        .write(move |mut c| {
            Box::pin(async move {
                mail::enqueue(
                    &mut c,
                    &cfg,
                    "ghost@example.com",
                    MailKind::PasswordReset,
                    "x",
                )
                .await?;
                Err(Error::conflict("the request failed after enqueuing"))
            })
        })
        .await;
    assert!(r.is_err());
    assert_eq!(job_count(db).await, 0, "the job rolled back with the write");
    runner.notify();

    // A committed mail after it goes out; the rolled-back one never does.
    let id = send(
        db,
        &s.state.settings.mail,
        "real@example.com",
        MailKind::VerifyEmail,
        "y",
    )
    .await;
    runner.notify();
    sink.wait_for("real@example.com", WAIT)
        .await
        .expect("delivered");
    assert_eq!(settled(db, id).await.status, JobStatus::Done);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        sink.wait_for("ghost@example.com", Duration::ZERO)
            .await
            .is_none()
    );
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(job_count(db).await, 1);
    runner.shutdown().await;
}

async fn transient_failure_is_retried(s: &TestServer) {
    let sink = SmtpSink::start().await;
    sink.fail_next(2);
    let runner = runner_for(s, &sink, fast(8)).await;
    let db = &s.state.db;
    let id = send(
        db,
        &s.state.settings.mail,
        "retry@example.com",
        MailKind::Otp,
        "482913",
    )
    .await;
    runner.notify();
    let m = sink
        .wait_for("retry@example.com", WAIT)
        .await
        .expect("delivered");
    assert_eq!(m.subject(), "Your Ferrobase sign-in code");
    assert!(m.text().contains("482913"));
    let info = settled(db, id).await;
    assert_eq!(info.status, JobStatus::Done);
    assert_eq!(info.attempts, 3, "two refusals, then delivered");
    assert_eq!(info.last_error, None);
    assert_eq!(sink.attempts(), 3);
    assert_eq!(sink.messages().len(), 1);
    runner.shutdown().await;
}

async fn permanent_failure_fails_at_once(s: &TestServer) {
    let sink = SmtpSink::start().await;
    sink.set_mode(Mode::Permanent);
    let runner = runner_for(s, &sink, fast(8)).await;
    let db = &s.state.db;
    let id = send(
        db,
        &s.state.settings.mail,
        "nobody@example.com",
        MailKind::EmailChange,
        "z",
    )
    .await;
    runner.notify();
    let info = settled(db, id).await;
    assert_eq!(info.status, JobStatus::Failed);
    assert_eq!(info.attempts, 1, "a 5xx is not retried");
    let err = info.last_error.unwrap();
    assert!(err.contains("550"), "{err}");
    assert_eq!(sink.attempts(), 1);
    assert!(sink.messages().is_empty());
    // The failed job keeps who and what, not the link.
    let p = payload(db, id).await;
    assert_eq!(p["to"], "nobody@example.com");
    assert_eq!(p["template"], "email_change");
    assert!(!p.to_string().contains("token="), "{p}");
    runner.shutdown().await;
}

async fn gives_up_after_max_attempts(s: &TestServer) {
    let sink = SmtpSink::start().await;
    sink.set_mode(Mode::Transient);
    let runner = runner_for(s, &sink, fast(3)).await;
    let db = &s.state.db;
    let id = send(
        db,
        &s.state.settings.mail,
        "busy@example.com",
        MailKind::VerifyEmail,
        "w",
    )
    .await;
    runner.notify();
    let info = settled(db, id).await;
    assert_eq!(info.status, JobStatus::Failed);
    assert_eq!(info.attempts, 3);
    let err = info.last_error.unwrap();
    assert!(err.contains("451"), "{err}");
    assert_eq!(sink.attempts(), 3);
    assert!(sink.messages().is_empty());
    runner.shutdown().await;
}

async fn unconfigured_smtp_fails_with_reason(s: &TestServer) {
    // The server's own runner, wired by `open` from settings without `smtp.host`.
    assert!(s.state.settings.smtp.host.is_empty());
    let db = &s.state.db;
    let id = send(
        db,
        &s.state.settings.mail,
        "a@example.com",
        MailKind::VerifyEmail,
        "t",
    )
    .await;
    s.state.jobs.notify();
    let info = settled(db, id).await;
    assert_eq!(info.status, JobStatus::Failed);
    assert_eq!(info.attempts, 1);
    assert_eq!(info.last_error.as_deref(), Some("smtp_not_configured"));
}

async fn unknown_kind_fails_with_reason(s: &TestServer) {
    let db = &s.state.db;
    let id = db
        .write(|mut c| {
            Box::pin(async move { jobs::enqueue(&mut c, "teleport", &json!({"to": "mars"})).await })
        })
        .await
        .unwrap();
    s.state.jobs.notify();
    let info = settled(db, id).await;
    assert_eq!(info.status, JobStatus::Failed);
    assert_eq!(info.kind, "teleport");
    assert!(
        info.last_error.as_deref().unwrap().contains("teleport"),
        "{info:?}"
    );
    assert_eq!(jobs::get(db, id + 1000).await.unwrap(), None);
}

async fn job_survives_a_restart(s: &TestServer) {
    let sink = SmtpSink::start().await;
    // The server stops before its worker ran: stop the runner first, so nothing can pick the
    // job up, then enqueue and close the database.
    s.state.jobs.shutdown().await;
    let id = send(
        &s.state.db,
        &s.state.settings.mail,
        "later@example.com",
        MailKind::PasswordReset,
        "after-restart",
    )
    .await;
    // A job claimed by a worker that died (lease expired) is re-claimed too.
    let stale = s
        .state
        .db
        .write(|mut c| {
            Box::pin(async move {
                let id = mail::enqueue(
                    &mut c,
                    &MailConfig::default(),
                    "crashed@example.com",
                    MailKind::VerifyEmail,
                    "crash",
                )
                .await?;
                c.execute(
                    "UPDATE _fb_jobs SET status = 'running', attempts = 1, run_at = $2 WHERE id = $1",
                    &[Param::Int(id), Param::Time(chrono::Utc::now() - chrono::Duration::seconds(1))],
                )
                .await?;
                Ok::<_, Error>(id)
            })
        })
        .await
        .unwrap();
    assert_eq!(
        jobs::get(&s.state.db, id).await.unwrap().unwrap().status,
        JobStatus::Queued
    );
    s.state.db.close().await;
    assert!(sink.messages().is_empty());

    // Start again over the same database, now with SMTP configured.
    let mut settings = (*s.state.settings).clone();
    settings.smtp = sink.config();
    let state = ferrobase_server::open(settings).await.unwrap();
    let m = sink
        .wait_for("later@example.com", WAIT)
        .await
        .expect("delivered after the restart");
    assert!(m.text().contains("/reset-password?token=after-restart"));
    sink.wait_for("crashed@example.com", WAIT)
        .await
        .expect("the stale claim was taken over");
    assert_eq!(settled(&state.db, id).await.status, JobStatus::Done);
    let info = settled(&state.db, stale).await;
    assert_eq!(info.status, JobStatus::Done);
    assert_eq!(info.attempts, 2);
    state.jobs.shutdown().await;
    state.db.close().await;
}

#[test]
fn sink_parses_multipart_quoted_printable_and_encoded_words() {
    let data = "Subject: =?utf-8?b?SGVsbG8gw6k=?= there\r\n\
                Content-Type: multipart/alternative;\r\n boundary=\"BB\"\r\n\
                MIME-Version: 1.0\r\n\r\n\
                --BB\r\nContent-Type: text/plain; charset=utf-8\r\n\
                Content-Transfer-Encoding: quoted-printable\r\n\r\n\
                a=3Db caf=C3=A9 long=\r\n line\r\n\
                --BB\r\nContent-Type: text/html; charset=utf-8\r\n\
                Content-Transfer-Encoding: base64\r\n\r\nPGI+aGk8L2I+\r\n--BB--\r\n";
    let m = Message {
        from: String::new(),
        to: vec![],
        data: data.into(),
    };
    assert_eq!(m.subject(), "Hello é there");
    assert_eq!(m.text().trim_end(), "a=b café long line");
    assert_eq!(m.html().trim_end(), "<b>hi</b>");
}
