//! The FCM provider against the loopback fake (ferrobase-push-testkit): real OAuth grant,
//! real HTTP, Google's documented answers. Device tokens script the fake's outcome (see
//! `ferrobase_push_testkit::fcm`).

// The helpers below are not `#[test]` fns, which clippy.toml's test allowance misses; a panic
// in them is a failed test all the same.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrobase_fcm::{Config, ConfigError, FcmProvider};
use ferrobase_plugin_api::{Device, Map, Message, Outcome, Priority, PushProvider, Retry, Value};
use ferrobase_push_testkit::fcm::{FakeFcm, FcmOptions};
use serde_json::json;

fn config(fake: &FakeFcm) -> Config {
    Config {
        service_account_json: Some(fake.service_account_json()),
        base_url: fake.base_url(),
        platforms: vec!["android".into(), "ios".into(), "web".into()],
        ..Config::default()
    }
}

fn provider(fake: &FakeFcm) -> FcmProvider {
    FcmProvider::new(config(fake)).unwrap()
}

fn device(platform: &str, token: &str) -> Device {
    Device {
        platform: platform.into(),
        token: token.into(),
    }
}

fn alert() -> Message {
    Message {
        title: Some("Hello".into()),
        body: Some("World".into()),
        delivery_id: "d-1".into(),
        ..Message::default()
    }
}

fn data(pairs: Value) -> Map<String, Value> {
    pairs.as_object().unwrap().clone()
}

fn retry_of(outcome: &Outcome) -> Retry {
    match outcome {
        Outcome::Failed { retry, .. } => *retry,
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn send_builds_the_documented_body() {
    let fake = FakeFcm::start(FcmOptions::default()).await;
    let fcm = provider(&fake);
    assert_eq!(fcm.project_id(), "demo-proj");
    let expires = SystemTime::now() + Duration::from_secs(3600);
    let message = Message {
        data: data(json!({"s": "text", "n": 42, "b": true, "o": {"k": [1, 2]}, "z": null})),
        collapse_id: Some("score".into()),
        expires_at: Some(expires),
        priority: Priority::Normal,
        ..alert()
    };

    let outcome = fcm.send(&device("android", "tok-android"), &message).await;
    let Outcome::Sent {
        provider_id: Some(id),
    } = outcome
    else {
        panic!("expected Sent with an id, got {outcome:?}")
    };
    assert!(id.starts_with("projects/demo-proj/messages/"), "{id}");

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!((r.token.as_str(), r.status), ("tok-android", 200));
    assert!(
        r.authorization.starts_with("Bearer ya29."),
        "{}",
        r.authorization
    );
    let m = &r.body["message"];
    assert_eq!(m["token"], "tok-android");
    assert_eq!(
        m["notification"],
        json!({"title": "Hello", "body": "World"})
    );
    assert_eq!(
        m["data"],
        json!({"s": "text", "n": "42", "b": "true", "o": "{\"k\":[1,2]}", "z": "null"})
    );
    assert_eq!(m["android"]["priority"], "NORMAL");
    assert_eq!(m["android"]["collapse_key"], "score");
    let ttl = m["android"]["ttl"].as_str().unwrap();
    assert!(ttl == "3600s" || ttl == "3599s", "{ttl}");
    assert!(m.get("apns").is_none() && m.get("webpush").is_none(), "{m}");

    // iOS: APNs headers ride along.
    let ios = fcm.send(&device("ios", "tok-ios"), &message).await;
    assert!(
        matches!(
            ios,
            Outcome::Sent {
                provider_id: Some(_)
            }
        ),
        "{ios:?}"
    );
    let m = fake.requests()[1].body["message"].clone();
    let headers = &m["apns"]["headers"];
    assert_eq!(headers["apns-priority"], "5");
    assert_eq!(headers["apns-collapse-id"], "score");
    let unix = expires.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(headers["apns-expiration"], unix.to_string());

    // iOS, high priority alert, then a background (data-only) push.
    fcm.send(&device("ios", "tok-ios"), &alert()).await;
    let m = fake.requests()[2].body["message"].clone();
    assert_eq!(m["apns"]["headers"]["apns-priority"], "10");
    assert_eq!(m["android"]["priority"], "HIGH");
    assert!(m["android"].get("ttl").is_none() && m["android"].get("collapse_key").is_none());
    let silent = Message {
        data: data(json!({"sync": "1"})),
        ..Message::default()
    };
    fcm.send(&device("ios", "tok-ios"), &silent).await;
    let m = fake.requests()[3].body["message"].clone();
    assert!(m.get("notification").is_none(), "{m}");
    assert_eq!(m["apns"]["headers"]["apns-priority"], "5");
    assert_eq!(m["apns"]["headers"]["apns-push-type"], "background");
    assert_eq!(m["apns"]["payload"]["aps"]["content-available"], 1);

    // Web: Web Push urgency and TTL.
    fcm.send(&device("web", "tok-web"), &message).await;
    let m = fake.requests()[4].body["message"].clone();
    assert_eq!(m["webpush"]["headers"]["Urgency"], "normal");
    assert!(m["webpush"]["headers"]["TTL"].is_string());
    assert!(m.get("apns").is_none());
    assert!(fake.requests().iter().all(|r| r.status == 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_for_50_concurrent_sends() {
    let fake = FakeFcm::start(FcmOptions::default()).await;
    let fcm = Arc::new(provider(&fake));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let fcm = fcm.clone();
        tasks.spawn(async move {
            fcm.send(&device("android", &format!("t{i}")), &alert())
                .await
        });
    }
    while let Some(outcome) = tasks.join_next().await {
        assert!(matches!(outcome.unwrap(), Outcome::Sent { .. }));
    }
    assert_eq!(fake.token_requests(), 1);
    assert_eq!(fake.requests().len(), 50);
    let first = &fake.requests()[0].authorization;
    assert!(fake.requests().iter().all(|r| &r.authorization == first));
}

#[tokio::test]
async fn scripted_errors_are_mapped() {
    let fake = FakeFcm::start(FcmOptions::default()).await;
    let fcm = provider(&fake);
    let send = |token: &'static str| {
        let fcm = &fcm;
        async move { fcm.send(&device("android", token), &alert()).await }
    };

    let gone = send("unregistered-1").await;
    assert!(
        matches!(&gone, Outcome::InvalidToken { reason } if reason.contains("UNREGISTERED")),
        "{gone:?}"
    );
    let bad = send("invalid-1").await;
    assert_eq!(retry_of(&bad), Retry::Never);
    assert!(matches!(&bad, Outcome::Failed { reason, .. } if reason.contains("INVALID_ARGUMENT")));
    let mismatch = send("mismatch-1").await;
    assert_eq!(retry_of(&mismatch), Retry::Never);
    assert!(format!("{mismatch:?}").contains("SENDER_ID_MISMATCH"));

    // 429 with Retry-After: 1, twice, then accepted.
    let one_second = Retry::Later(Some(Duration::from_secs(1)));
    assert_eq!(retry_of(&send("busy2-a").await), one_second);
    assert_eq!(retry_of(&send("busy2-a").await), one_second);
    assert!(matches!(send("busy2-a").await, Outcome::Sent { .. }));
    // 503 and 500 without Retry-After.
    assert_eq!(retry_of(&send("down1-a").await), Retry::Later(None));
    assert!(matches!(send("down1-a").await, Outcome::Sent { .. }));
    assert_eq!(retry_of(&send("internal1-a").await), Retry::Later(None));

    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [404, 400, 403, 429, 429, 200, 503, 200, 500]);
    assert_eq!(fake.token_requests(), 1);
}

#[tokio::test]
async fn wrong_project_is_permanent() {
    let fake = FakeFcm::start(FcmOptions::default()).await;
    let fcm = FcmProvider::new(Config {
        project_id: Some("other-proj".into()),
        ..config(&fake)
    })
    .unwrap();
    let outcome = fcm.send(&device("android", "tok"), &alert()).await;
    assert_eq!(retry_of(&outcome), Retry::Never);
    assert!(
        format!("{outcome:?}").contains("PERMISSION_DENIED"),
        "{outcome:?}"
    );
    assert_eq!(fake.requests()[0].status, 403);
}

#[tokio::test]
async fn a_revoked_token_is_replaced_once() {
    let fake = FakeFcm::start(FcmOptions::default()).await;
    let fcm = provider(&fake);
    assert!(matches!(
        fcm.send(&device("android", "a"), &alert()).await,
        Outcome::Sent { .. }
    ));
    fake.revoke_tokens();
    assert!(matches!(
        fcm.send(&device("android", "b"), &alert()).await,
        Outcome::Sent { .. }
    ));
    assert_eq!(fake.token_requests(), 2);
    let requests = fake.requests();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 401, 200]);
    assert_ne!(requests[1].authorization, requests[2].authorization);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_token_endpoint_does_not_know_fails_without_panicking() {
    let fake = FakeFcm::start(FcmOptions::default()).await;
    let stranger = FakeFcm::start(FcmOptions::default()).await;
    // The stranger's RSA key, but this fake's token endpoint: the signature cannot match.
    let mut key: Value = serde_json::from_str(&stranger.service_account_json()).unwrap();
    key["token_uri"] = json!(format!("{}/token", fake.base_url()));
    let fcm = Arc::new(
        FcmProvider::new(Config {
            service_account_json: Some(key.to_string()),
            ..config(&fake)
        })
        .unwrap(),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let fcm = fcm.clone();
        tasks.spawn(async move {
            fcm.send(&device("android", &format!("t{i}")), &alert())
                .await
        });
    }
    while let Some(outcome) = tasks.join_next().await {
        let outcome = outcome.unwrap();
        assert_eq!(retry_of(&outcome), Retry::Later(None));
        assert!(format!("{outcome:?}").contains("could not obtain an OAuth access token"));
    }
    assert!(fake.requests().is_empty());
    // One fetch (gcp_auth tries up to 5 times) shared by the 10 waiting sends.
    assert!(
        (1..=5).contains(&fake.token_requests()),
        "{}",
        fake.token_requests()
    );
}

#[tokio::test]
async fn unreachable_base_url_is_retried_later() {
    let fake = FakeFcm::start(FcmOptions::default()).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let fcm = FcmProvider::new(Config {
        base_url: format!("http://127.0.0.1:{port}"),
        ..config(&fake)
    })
    .unwrap();
    let outcome = fcm.send(&device("android", "tok"), &alert()).await;
    assert_eq!(retry_of(&outcome), Retry::Later(None), "{outcome:?}");
}

#[tokio::test]
async fn a_slow_fcm_times_out_as_retry_later() {
    let fake = FakeFcm::start(FcmOptions {
        latency: Duration::from_secs(3),
        ..FcmOptions::default()
    })
    .await;
    let fcm = FcmProvider::new(Config {
        timeout: Duration::from_millis(300),
        ..config(&fake)
    })
    .unwrap();
    let outcome = fcm.send(&device("android", "tok"), &alert()).await;
    assert_eq!(retry_of(&outcome), Retry::Later(None));
    assert!(format!("{outcome:?}").contains("timed out"), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_sends_with_latency() {
    let fake = FakeFcm::start(FcmOptions {
        latency: Duration::from_millis(50),
        ..FcmOptions::default()
    })
    .await;
    let fcm = Arc::new(provider(&fake));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let fcm = fcm.clone();
        tasks.spawn(async move {
            fcm.send(&device("android", &format!("t{i}")), &alert())
                .await
        });
    }
    let mut sent = 0;
    while let Some(outcome) = tasks.join_next().await {
        let outcome = outcome.unwrap();
        assert!(
            matches!(
                outcome,
                Outcome::Sent {
                    provider_id: Some(_)
                }
            ),
            "{outcome:?}"
        );
        sent += 1;
    }
    assert_eq!(sent, 200);
    assert_eq!(fake.requests().len(), 200);
    assert_eq!(fake.token_requests(), 1);
    // Serial sends would never overlap; 20 is far below what loopback reaches, to stay
    // robust on a busy machine.
    assert!(
        fake.max_in_flight() >= 20,
        "max in flight {}",
        fake.max_in_flight()
    );
}

#[tokio::test]
async fn validate_enforces_fcm_limits() {
    let fake = FakeFcm::start(FcmOptions::default()).await;
    let fcm = provider(&fake);
    let field = |m: &Message| fcm.validate(m).err().map(|e| e.field);

    assert_eq!(field(&alert()), None);
    for key in [
        "from",
        "notification",
        "message_type",
        "google.c.a",
        "gcm.n.e",
        "GCM_x",
    ] {
        let m = Message {
            data: data(json!({ key: "x" })),
            ..alert()
        };
        assert_eq!(field(&m).as_deref(), Some("data"), "{key}");
    }
    let body = |n: usize| Message {
        title: None,
        body: Some("x".repeat(n)),
        ..alert()
    };
    assert_eq!(field(&body(4096)), None);
    assert_eq!(field(&body(4097)).as_deref(), Some("body"));
    let big_data = Message {
        data: data(json!({ "k": "v".repeat(4095) })),
        ..alert()
    };
    assert_eq!(field(&big_data).as_deref(), Some("data"));
    let long_collapse = Message {
        collapse_id: Some("c".repeat(65)),
        ..alert()
    };
    assert_eq!(field(&long_collapse).as_deref(), Some("collapse_id"));
    // Without iOS in the platforms, APNs's collapse-id limit does not apply.
    let android_only = FcmProvider::new(Config {
        platforms: vec!["android".into()],
        ..config(&fake)
    })
    .unwrap();
    assert!(android_only.validate(&long_collapse).is_ok());
}

#[tokio::test]
async fn bad_configs_are_clear_errors() {
    let fake = FakeFcm::start(FcmOptions::default()).await;
    let with_json = |json: &str| {
        FcmProvider::new(Config {
            service_account_json: Some(json.into()),
            ..config(&fake)
        })
        .unwrap_err()
    };
    for broken in [
        "not json".to_owned(),
        r#"{"type":"service_account","client_email":"a@b","token_uri":"http://x"}"#.to_owned(),
        fake.service_account_json()
            .replace("BEGIN PRIVATE KEY", "BEGIN NOTHING"),
    ] {
        let err = with_json(&broken);
        assert!(matches!(err, ConfigError::BadKey { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("push.fcm.service_account_json:"),
            "{err}"
        );
    }
    let err = with_json(r#"{"client_email":"a@b","token_uri":"http://x"}"#);
    assert!(err.to_string().contains("private_key"), "{err}");
    let mut no_project: Value = serde_json::from_str(&fake.service_account_json()).unwrap();
    no_project.as_object_mut().unwrap().remove("project_id");
    let err = with_json(&no_project.to_string());
    assert!(err.to_string().contains("push.fcm.project_id"), "{err}");

    let err = FcmProvider::new(Config {
        service_account_file: Some("/nonexistent/key.json".into()),
        service_account_json: None,
        ..config(&fake)
    })
    .unwrap_err();
    assert!(err.to_string().contains("service_account_file"), "{err}");
    let err = FcmProvider::new(Config {
        service_account_file: Some("/nonexistent/key.json".into()),
        ..config(&fake)
    })
    .unwrap_err();
    assert!(matches!(err, ConfigError::Credentials), "{err:?}");
    assert!(matches!(
        FcmProvider::new(Config::default()),
        Err(ConfigError::Credentials)
    ));
    let err = FcmProvider::new(Config {
        base_url: "fcm.googleapis.com".into(),
        ..config(&fake)
    })
    .unwrap_err();
    assert!(err.to_string().starts_with("push.fcm.base_url"), "{err}");

    // A key file works like the inline JSON.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.json");
    std::fs::write(&path, fake.service_account_json()).unwrap();
    let fcm = FcmProvider::new(Config {
        service_account_file: Some(path),
        service_account_json: None,
        ..config(&fake)
    })
    .unwrap();
    assert!(matches!(
        fcm.send(&device("android", "t"), &alert()).await,
        Outcome::Sent { .. }
    ));
}

#[test]
fn config_deserialises_from_the_server_section() {
    let config: Config = serde_json::from_value(json!({
        "service_account_file": "/etc/key.json",
        "platforms": ["android", "web"],
        "timeout": "5s",
    }))
    .unwrap();
    assert_eq!(config.timeout, Duration::from_secs(5));
    assert_eq!(config.platforms, ["android", "web"]);
    assert_eq!(config.base_url, "https://fcm.googleapis.com");
    let err = serde_json::from_value::<Config>(json!({"api_key": "x"})).unwrap_err();
    assert!(err.to_string().contains("api_key"), "{err}");
}
