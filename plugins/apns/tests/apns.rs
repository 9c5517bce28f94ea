//! The provider against the loopback APNs (TLS, HTTP/2, Apple's checks and answers).
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too: a panic is a failed test

use std::time::{Duration, UNIX_EPOCH};

use ferrobase_apns::{ApnsProvider, Config};
use ferrobase_plugin_api::{Device, Message, Outcome, Priority, PushProvider, Retry};
use ferrobase_push_testkit::apns::{ApnsAuth, ApnsOptions, FakeApns, SigningKey, signing_key};
use serde_json::json;

const DELIVERY_ID: &str = "0190a6f3-9c8e-7d4b-8a1e-2f3c4d5e6f70";

fn token_config(fake: &FakeApns, key: &SigningKey) -> Config {
    Config {
        base_url: Some(fake.base_url()),
        topic: "com.example.app".into(),
        key_pem: Some(key.p8_pem.clone()),
        key_id: Some(key.key_id.clone()),
        team_id: Some(key.team_id.clone()),
        ca_pem: Some(fake.ca_pem()),
        ..Config::default()
    }
}

fn provider(fake: &FakeApns) -> ApnsProvider {
    ApnsProvider::new(token_config(fake, &signing_key())).unwrap()
}

fn ios(token: &str) -> Device {
    Device {
        platform: "ios".into(),
        token: token.into(),
    }
}

fn alert() -> Message {
    let mut data = serde_json::Map::new();
    data.insert("post".into(), json!("p1"));
    Message {
        title: Some("New comment".into()),
        body: Some("Ada replied".into()),
        data,
        category: Some("comments".into()),
        collapse_id: Some("post-p1".into()),
        expires_at: Some(UNIX_EPOCH + Duration::from_secs(4_000_000_000)),
        priority: Priority::High,
        delivery_id: DELIVERY_ID.into(),
    }
}

fn later(outcome: &Outcome) -> Option<Option<Duration>> {
    match outcome {
        Outcome::Failed {
            retry: Retry::Later(after),
            ..
        } => Some(*after),
        _ => None,
    }
}

#[tokio::test]
async fn token_auth_alert_is_sent_with_apples_headers_and_body() {
    let fake = FakeApns::start(ApnsOptions::default()).await;
    let outcome = provider(&fake).send(&ios("a1b2c3"), &alert()).await;
    assert_eq!(
        outcome,
        Outcome::Sent {
            provider_id: Some(DELIVERY_ID.into())
        }
    );

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!((request.token.as_str(), request.status), ("a1b2c3", 200));
    let header = |name: &str| request.headers.get(name).map(String::as_str);
    assert_eq!(header("apns-topic"), Some("com.example.app"));
    assert_eq!(header("apns-push-type"), Some("alert"));
    assert_eq!(header("apns-priority"), Some("10"));
    assert_eq!(header("apns-id"), Some(DELIVERY_ID));
    assert_eq!(header("apns-collapse-id"), Some("post-p1"));
    assert_eq!(header("apns-expiration"), Some("4000000000"));
    assert!(header("authorization").is_some_and(|v| v.starts_with("bearer ")));
    assert_eq!(
        request.body,
        json!({"aps": {"alert": {"title": "New comment", "body": "Ada replied"},
                       "sound": "default", "category": "comments"},
               "post": "p1"})
    );
    assert_eq!(fake.jwt_issued_at().len(), 1, "the JWT was verified");
}

#[tokio::test]
async fn background_push_uses_priority_5_and_content_available() {
    let fake = FakeApns::start(ApnsOptions::default()).await;
    let mut message = Message {
        delivery_id: "job-7/device-9".into(), // not a UUID: no apns-id, APNs makes one
        ..Message::default()
    };
    message.data.insert("sync".into(), json!(true));
    let outcome = provider(&fake).send(&ios("a1"), &message).await;
    let Outcome::Sent {
        provider_id: Some(id),
    } = outcome
    else {
        panic!("not sent: {outcome:?}");
    };
    assert_eq!(id.len(), 36);

    let request = &fake.requests()[0];
    assert_eq!(request.headers["apns-push-type"], "background");
    assert_eq!(request.headers["apns-priority"], "5");
    assert!(!request.headers.contains_key("apns-id"));
    assert!(!request.headers.contains_key("apns-collapse-id"));
    assert!(!request.headers.contains_key("apns-expiration"));
    assert_eq!(
        request.body,
        json!({"aps": {"content-available": 1}, "sync": true})
    );
}

#[tokio::test]
async fn certificate_auth_is_sent_without_a_jwt() {
    let fake = FakeApns::start(ApnsOptions {
        auth: ApnsAuth::Certificate,
        ..ApnsOptions::default()
    })
    .await;
    let (cert_pem, key_pem) = fake.client_identity();
    let config = Config {
        base_url: Some(fake.base_url()),
        topic: "com.example.app".into(),
        cert_pem: Some(cert_pem),
        cert_key_pem: Some(key_pem),
        ca_pem: Some(fake.ca_pem()),
        ..Config::default()
    };
    let outcome = ApnsProvider::new(config)
        .unwrap()
        .send(&ios("a1"), &alert())
        .await;
    assert!(matches!(outcome, Outcome::Sent { .. }), "{outcome:?}");
    let request = &fake.requests()[0];
    assert!(!request.headers.contains_key("authorization"));
}

#[tokio::test]
async fn certificate_mode_refuses_a_client_without_a_certificate() {
    let fake = FakeApns::start(ApnsOptions {
        auth: ApnsAuth::Certificate,
        ..ApnsOptions::default()
    })
    .await;
    let outcome = provider(&fake).send(&ios("a1"), &alert()).await;
    assert_eq!(later(&outcome), Some(None), "{outcome:?}");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn a_key_the_fake_does_not_know_is_an_invalid_provider_token() {
    let fake = FakeApns::start(ApnsOptions::default()).await;
    let stranger = ApnsProvider::new(token_config(&fake, &SigningKey::generate())).unwrap();
    assert_eq!(
        stranger.send(&ios("a1"), &alert()).await,
        Outcome::Failed {
            reason: "InvalidProviderToken".into(),
            retry: Retry::Never
        }
    );
    assert_eq!(fake.requests()[0].status, 403);
}

#[tokio::test]
async fn scripted_answers_map_to_outcomes() {
    let fake = FakeApns::start(ApnsOptions::default()).await;
    let apns = provider(&fake);
    let send = |token: &'static str| {
        let apns = &apns;
        async move { apns.send(&ios(token), &alert()).await }
    };

    assert_eq!(
        send("unregistered-1").await,
        Outcome::InvalidToken {
            reason: "Unregistered".into()
        }
    );
    assert_eq!(
        send("expired-1").await,
        Outcome::InvalidToken {
            reason: "ExpiredToken".into()
        }
    );
    // A wrong-environment hint, never a reason to drop the device.
    let bad = send("baddevice-1").await;
    let Outcome::Failed {
        reason,
        retry: Retry::Never,
    } = &bad
    else {
        panic!("{bad:?}");
    };
    assert!(reason.starts_with("BadDeviceToken"), "{reason}");

    assert_eq!(later(&send("busy2-abc").await), Some(None));
    assert_eq!(later(&send("busy2-abc").await), Some(None));
    assert!(matches!(send("busy2-abc").await, Outcome::Sent { .. }));

    assert_eq!(
        later(&send("down1-abc").await),
        Some(Some(Duration::from_secs(1)))
    );
    assert!(matches!(send("down1-abc").await, Outcome::Sent { .. }));

    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [410, 410, 400, 429, 429, 200, 503, 200]);
}

#[tokio::test]
async fn a_topic_the_fake_does_not_serve_fails_for_good() {
    let fake = FakeApns::start(ApnsOptions {
        topic: "com.example.other".into(),
        ..ApnsOptions::default()
    })
    .await;
    assert_eq!(
        provider(&fake).send(&ios("a1"), &alert()).await,
        Outcome::Failed {
            reason: "TopicDisallowed".into(),
            retry: Retry::Never
        }
    );
}

#[tokio::test]
async fn validate_applies_apples_limits() {
    let fake = FakeApns::start(ApnsOptions::default()).await;
    let apns = provider(&fake);
    assert_eq!(apns.validate(&alert()), Ok(()));

    let mut big = alert();
    big.body = Some("x".repeat(4096));
    assert_eq!(apns.validate(&big).unwrap_err().field, "body");
    let mut big = alert();
    big.data.insert("blob".into(), json!("x".repeat(4000)));
    assert_eq!(apns.validate(&big).unwrap_err().field, "data");
    // What validate lets through, APNs takes; what it refuses, APNs would too.
    let mut near = alert();
    near.data.insert("blob".into(), json!("x".repeat(3800)));
    assert_eq!(apns.validate(&near), Ok(()));
    assert!(matches!(
        apns.send(&ios("a1"), &near).await,
        Outcome::Sent { .. }
    ));
    assert_eq!(
        apns.send(&ios("a1"), &big).await,
        Outcome::Failed {
            reason: "PayloadTooLarge".into(),
            retry: Retry::Never
        }
    );

    let mut collapse = alert();
    collapse.collapse_id = Some("c".repeat(65));
    assert_eq!(apns.validate(&collapse).unwrap_err().field, "collapse_id");
    let mut reserved = alert();
    reserved.data.insert("aps".into(), json!({"badge": 1}));
    assert_eq!(apns.validate(&reserved).unwrap_err().field, "data");
}

#[tokio::test]
async fn one_jwt_serves_a_hundred_concurrent_sends() {
    let fake = FakeApns::start(ApnsOptions::default()).await;
    let apns = provider(&fake);
    let devices: Vec<Device> = (0..100).map(|i| ios(&format!("device{i}"))).collect();
    let message = alert();
    let outcomes = futures::future::join_all(devices.iter().map(|d| apns.send(d, &message))).await;
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Sent { .. })));
    assert_eq!(fake.requests().len(), 100);
    assert_eq!(fake.jwt_issued_at().len(), 1);
}

#[tokio::test]
async fn concurrent_sends_share_one_connection_within_the_stream_limit() {
    let fake = FakeApns::start(ApnsOptions {
        max_concurrent_streams: 4,
        latency: Duration::from_millis(50),
        ..ApnsOptions::default()
    })
    .await;
    let apns = provider(&fake);
    let devices: Vec<Device> = (0..40).map(|i| ios(&format!("device{i}"))).collect();
    let message = alert();
    let outcomes = futures::future::join_all(devices.iter().map(|d| apns.send(d, &message))).await;
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Sent { .. })),
        "{outcomes:?}"
    );
    assert_eq!(fake.requests().len(), 40);
    let in_flight = fake.max_in_flight();
    assert!((2..=4).contains(&in_flight), "max in flight {in_flight}");
    assert_eq!(fake.connections(), 1);
}

#[tokio::test]
async fn an_untrusted_server_certificate_is_a_transient_failure() {
    let fake = FakeApns::start(ApnsOptions::default()).await;
    let other = FakeApns::start(ApnsOptions::default()).await;
    let config = Config {
        ca_pem: Some(other.ca_pem()),
        ..token_config(&fake, &signing_key())
    };
    let outcome = ApnsProvider::new(config)
        .unwrap()
        .send(&ios("a1"), &alert())
        .await;
    assert_eq!(later(&outcome), Some(None), "{outcome:?}");
    let Outcome::Failed { reason, .. } = &outcome else {
        unreachable!()
    };
    assert!(reason.to_lowercase().contains("certificate"), "{reason}");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn an_unreachable_apns_is_a_transient_failure() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // the listener is dropped: nothing listens there now
    let fake = FakeApns::start(ApnsOptions::default()).await;
    let config = Config {
        base_url: Some(format!("https://127.0.0.1:{port}")),
        ..token_config(&fake, &signing_key())
    };
    let outcome = ApnsProvider::new(config)
        .unwrap()
        .send(&ios("a1"), &alert())
        .await;
    assert_eq!(later(&outcome), Some(None), "{outcome:?}");
}

#[tokio::test]
async fn a_slow_apns_times_out_as_a_transient_failure() {
    let fake = FakeApns::start(ApnsOptions {
        latency: Duration::from_secs(5),
        ..ApnsOptions::default()
    })
    .await;
    let config = Config {
        timeout: Duration::from_millis(200),
        ..token_config(&fake, &signing_key())
    };
    let outcome = ApnsProvider::new(config)
        .unwrap()
        .send(&ios("a1"), &alert())
        .await;
    assert_eq!(later(&outcome), Some(None), "{outcome:?}");
}

#[tokio::test]
async fn config_errors_name_the_keys() {
    let fake = FakeApns::start(ApnsOptions::default()).await;
    let error = |config: Config| match ApnsProvider::new(config) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    let none = Config {
        topic: "com.example.app".into(),
        ..Config::default()
    };
    let message = error(none.clone());
    assert!(
        message.contains("key_file or key_pem") && message.contains("cert_file"),
        "{message}"
    );

    let (cert_pem, cert_key_pem) = fake.client_identity();
    let both = Config {
        cert_pem: Some(cert_pem),
        cert_key_pem: Some(cert_key_pem),
        ..token_config(&fake, &signing_key())
    };
    assert!(error(both).contains("not both"));

    let no_team = Config {
        team_id: None,
        ..token_config(&fake, &signing_key())
    };
    assert!(error(no_team).contains("team_id"));

    let bad_key = Config {
        key_pem: Some("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into()),
        ..token_config(&fake, &signing_key())
    };
    assert!(error(bad_key).contains("key_pem"));

    let plaintext = Config {
        base_url: Some("http://127.0.0.1:1".into()),
        ..token_config(&fake, &signing_key())
    };
    assert!(error(plaintext).contains("https://"));

    let no_topic = Config {
        topic: String::new(),
        ..token_config(&fake, &signing_key())
    };
    assert!(error(no_topic).contains("topic"));
}
