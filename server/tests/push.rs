//! Push notifications end to end, through HTTP, with the real APNs and FCM plugins talking to
//! loopback providers (TLS + HTTP/2 APNs, FCM v1 with its OAuth endpoint), on SQLite and
//! PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Backend, TestServer, signup};
use ferrobase_push_testkit::apns::{ApnsOptions, FakeApns, signing_key};
use ferrobase_push_testkit::fcm::{FakeFcm, FcmOptions};
use serde_json::{Value, json};

on_both!(
    devices_are_registered_refreshed_moved_and_removed,
    preferences_follow_push_toml,
);
on_both_backends!(
    a_push_reaches_every_device_with_its_outcome,
    opt_outs_quiet_hours_and_transactional_pushes,
    bad_pushes_are_refused_before_queueing,
    scheduled_pushes_wait_and_fan_out_resumes_once,
);

/// Two replicas on one PostgreSQL database share a push's send jobs, and no device is sent to
/// twice (each send job is claimed by one replica at a time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_a_push_without_double_sending() {
    let opts = ApnsOptions {
        latency: Duration::from_millis(20),
        ..ApnsOptions::default()
    };
    let Some(rig) = rig(Backend::Postgres, opts).await else {
        return;
    };
    let s = &rig.s;
    let other = s.replica(|_| {}).await;
    let (uid, _, _) = signup(s, "many@example.com").await;
    // 2,500 devices: three fan-out pages, three send jobs for two runners.
    let owner = uid.clone();
    s.state
        .db
        .write(move |mut c| {
            Box::pin(async move {
                let now = chrono::Utc::now();
                for i in 0..2500 {
                    c.execute(
                        "INSERT INTO _fb_devices (id, user_id, platform, token, topics, active, \
                         last_seen_at, created_at, updated_at) VALUES ($1, $2, 'ios', $3, $4, $5, $6, $6, $6)",
                        &[
                            ferrobase_server::db::Param::Text(uuid::Uuid::now_v7().to_string()),
                            ferrobase_server::db::Param::Text(owner.clone()),
                            ferrobase_server::db::Param::Text(format!("many-{i:05}")),
                            ferrobase_server::db::Param::Json(json!([])),
                            ferrobase_server::db::Param::Bool(true),
                            ferrobase_server::db::Param::Time(now),
                        ],
                    )
                    .await?;
                }
                Ok::<_, ferrobase_server::db::DbError>(())
            })
        })
        .await
        .unwrap();
    let r = s
        .post(
            "/v1/push",
            Some(&rig.admin),
            json!({"to": {"users": [uid]}, "body": "all"}),
        )
        .await;
    let job = r.expect(202)["job_id"].as_str().unwrap().to_owned();
    other.state.jobs.notify();
    let done = wait_done(&other, &rig.admin, &job).await;
    assert_eq!(done["counts"]["sent"], 2500, "{}", done["counts"]);
    let requests = rig.apns.requests();
    assert_eq!(requests.len(), 2500, "one request per device");
    let mut tokens: Vec<&str> = requests.iter().map(|r| r.token.as_str()).collect();
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), 2500, "no device got two requests");
    other.stop().await;
    rig.s.stop().await;
}

/// A server wired to a fake APNs and a fake FCM.
struct Rig {
    s: TestServer,
    apns: FakeApns,
    fcm: FakeFcm,
    admin: String,
}

async fn rig(backend: Backend, apns_opts: ApnsOptions) -> Option<Rig> {
    let apns = FakeApns::start(apns_opts).await;
    let fcm = FakeFcm::start(FcmOptions::default()).await;
    let key = signing_key();
    let apns_config: ferrobase_apns::Config = serde_json::from_value(json!({
        "topic": "com.example.app",
        "base_url": apns.base_url(),
        "ca_pem": apns.ca_pem(),
        "key_pem": key.p8_pem,
        "key_id": key.key_id,
        "team_id": key.team_id,
    }))
    .unwrap();
    let fcm_config: ferrobase_fcm::Config = serde_json::from_value(json!({
        "service_account_json": fcm.service_account_json(),
        "base_url": fcm.base_url(),
    }))
    .unwrap();
    let providers: Vec<Arc<dyn ferrobase_plugin_api::PushProvider>> = vec![
        Arc::new(ferrobase_apns::ApnsProvider::new(apns_config).unwrap()),
        Arc::new(ferrobase_fcm::FcmProvider::new(fcm_config).unwrap()),
    ];
    let s = TestServer::start_with_push(backend, |c| c.push.max_attempts = 3, providers).await?;
    let admin = s.admin().await;
    Some(Rig {
        s,
        apns,
        fcm,
        admin,
    })
}

async fn register(s: &TestServer, token: &str, platform: &str, device_token: &str) -> Value {
    let r = s
        .post(
            "/v1/devices",
            Some(token),
            json!({"platform": platform, "token": device_token}),
        )
        .await;
    assert!(
        r.status.as_u16() == 201 || r.status.as_u16() == 200,
        "{}",
        r.body
    );
    r.body
}

async fn apply_categories(s: &TestServer, admin: &str, categories: Value) -> Value {
    let r = s
        .post(
            "/v1/admin/schema/apply",
            Some(admin),
            json!({"collections": [], "push": {"categories": categories}}),
        )
        .await;
    r.expect(200).clone()
}

/// Polls the job until it is `done` (or fails the test after 20 s).
async fn wait_done(s: &TestServer, admin: &str, job: &str) -> Value {
    let start = Instant::now();
    loop {
        let r = s.get(&format!("/v1/push/{job}"), Some(admin)).await;
        let body = r.expect(200).clone();
        if body["status"] == "done" {
            return body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "job not done: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn outcome<'a>(job: &'a Value, device: &Value) -> &'a Value {
    job["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == device["id"])
        .unwrap_or_else(|| panic!("no delivery for {device} in {job}"))
}

async fn devices_are_registered_refreshed_moved_and_removed(s: &TestServer) {
    let (alice_id, alice, _) = signup(s, "alice@example.com").await;
    let (bob_id, bob, _) = signup(s, "bob@example.com").await;

    // Anonymous callers cannot register; bad input names its field.
    s.post(
        "/v1/devices",
        None,
        json!({"platform": "ios", "token": "t1"}),
    )
    .await
    .problem(401, "unauthenticated");
    for (body, field) in [
        (json!({"platform": "symbian", "token": "t"}), "platform"),
        (json!({"platform": "ios", "token": ""}), "token"),
        (
            json!({"platform": "ios", "token": "x".repeat(10_000)}),
            "token",
        ),
        (json!({"platform": "ios", "token": "has space"}), "token"),
        (
            json!({"platform": "ios", "token": "t", "timezone": "Mars/Olympus"}),
            "timezone",
        ),
        (
            json!({"platform": "ios", "token": "t", "topics": ["ok", "no spaces"]}),
            "topics",
        ),
    ] {
        let r = s.post("/v1/devices", Some(&alice), body).await;
        let p = r.problem(422, "validation_failed");
        assert!(p["errors"].get(field).is_some(), "{field}: {p}");
    }
    s.post(
        "/v1/devices",
        Some(&alice),
        json!({"platform": "ios", "token": "t", "extra": 1}),
    )
    .await
    .problem(422, "validation_failed");

    // New → 201, the same token again → 200 with the same id and the new fields.
    let r = s
        .post(
            "/v1/devices",
            Some(&alice),
            json!({"platform": "ios", "token": "tok-a", "app_version": "2.1.0",
                   "timezone": "Europe/Berlin", "topics": ["news", "news", "sports"]}),
        )
        .await;
    let first = r.expect(201).clone();
    assert_eq!(first["user_id"], alice_id.as_str());
    assert_eq!(first["topics"], json!(["news", "sports"]));
    assert_eq!(first["active"], true);
    let r = s
        .post(
            "/v1/devices",
            Some(&alice),
            json!({"platform": "ios", "token": "tok-a", "locale": "de-DE"}),
        )
        .await;
    let again = r.expect(200).clone();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["locale"], "de-DE");
    assert_eq!(again["app_version"], "2.1.0", "fields not sent are kept");

    // PATCH topics; another user cannot touch it.
    let id = first["id"].as_str().unwrap();
    let r = s
        .patch(
            &format!("/v1/devices/{id}"),
            Some(&alice),
            json!({"topics": ["team.42"]}),
        )
        .await;
    assert_eq!(r.expect(200)["topics"], json!(["team.42"]));
    s.patch(
        &format!("/v1/devices/{id}"),
        Some(&bob),
        json!({"topics": []}),
    )
    .await
    .problem(404, "not_found");

    // Bob signs in on Alice's phone: the token moves to him.
    let moved = register(s, &bob, "ios", "tok-a").await;
    assert_eq!(moved["id"], first["id"]);
    assert_eq!(moved["user_id"], bob_id.as_str());
    let mine = s.get("/v1/devices", Some(&alice)).await;
    assert_eq!(mine.expect(200)["items"], json!([]));
    let his = s.get("/v1/devices", Some(&bob)).await;
    assert_eq!(his.expect(200)["items"].as_array().unwrap().len(), 1);

    // Support sees a user's devices; a user cannot use the admin route.
    let support = s
        .admin_with_role(
            "support@example.com",
            ferrobase_server::access::AdminRole::Support,
        )
        .await;
    let r = s
        .get(&format!("/v1/admin/users/{bob_id}/devices"), Some(&support))
        .await;
    assert_eq!(r.expect(200)["items"][0]["token"], "tok-a");
    s.get(&format!("/v1/admin/users/{bob_id}/devices"), Some(&bob))
        .await
        .problem(403, "forbidden");

    // Unregister: Alice cannot, Bob can, once.
    s.delete(&format!("/v1/devices/{id}"), Some(&alice))
        .await
        .problem(404, "not_found");
    s.delete(&format!("/v1/devices/{id}"), Some(&bob))
        .await
        .expect(204);
    s.delete(&format!("/v1/devices/{id}"), Some(&bob))
        .await
        .problem(404, "not_found");
    assert_eq!(
        s.get("/v1/devices", Some(&bob)).await.body["items"],
        json!([])
    );

    // Deleting an account forgets its devices, so no topic push reaches that phone again.
    register(s, &bob, "android", "tok-b").await;
    s.delete("/v1/auth/me", Some(&bob)).await.expect(204);
    let r = s
        .get(&format!("/v1/admin/users/{bob_id}/devices"), Some(&support))
        .await;
    assert_eq!(r.expect(200)["items"], json!([]));
    let (_, carol, _) = signup(s, "carol@example.com").await;
    let again = s
        .post(
            "/v1/devices",
            Some(&carol),
            json!({"platform": "android", "token": "tok-b"}),
        )
        .await;
    assert_eq!(
        again.status.as_u16(),
        201,
        "the token is new again: {}",
        again.body
    );
}

async fn preferences_follow_push_toml(s: &TestServer) {
    let admin = s.admin().await;
    let (_, alice, _) = signup(s, "alice@example.com").await;

    // Without categories, any named category is unknown.
    let r = s
        .put(
            "/v1/me/notifications",
            Some(&alice),
            json!({"categories": {"marketing": false}}),
        )
        .await;
    assert!(
        r.problem(422, "validation_failed")["errors"]
            .get("categories.marketing")
            .is_some()
    );

    // plan shows the categories, apply stores them in a new version.
    let plan = s
        .post(
            "/v1/admin/schema/plan",
            Some(&admin),
            json!({"collections": [], "push": {"categories": {
                "marketing": {"default": true}, "digest": {"default": false}}}}),
        )
        .await;
    let kinds: Vec<&str> = plan.expect(200)["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["add_push_category", "add_push_category"]);
    let applied = apply_categories(
        s,
        &admin,
        json!({"marketing": {"default": true, "description": "Offers"}, "digest": {"default": false}}),
    )
    .await;
    assert_eq!(applied["applied"], true);
    let again = apply_categories(
        s,
        &admin,
        json!({"marketing": {"default": true, "description": "Offers"}, "digest": {"default": false}}),
    )
    .await;
    assert_eq!(again["applied"], false, "re-applying is a no-op");
    s.post(
        "/v1/admin/schema/apply",
        Some(&admin),
        json!({"collections": [], "push": {"categories": {"Bad Name": {"default": true}}}}),
    )
    .await
    .problem(422, "validation_failed");

    // Defaults, then a choice, then quiet hours.
    let r = s.get("/v1/me/notifications", Some(&alice)).await;
    assert_eq!(
        r.expect(200).clone(),
        json!({"categories": {"digest": false, "marketing": true}, "quiet_hours": null})
    );
    let r = s
        .put(
            "/v1/me/notifications",
            Some(&alice),
            json!({"categories": {"marketing": false},
                   "quiet_hours": {"start": "22:00", "end": "07:00"}}),
        )
        .await;
    assert_eq!(
        r.expect(200).clone(),
        json!({"categories": {"digest": false, "marketing": false},
               "quiet_hours": {"start": "22:00", "end": "07:00"}})
    );
    // Leaving quiet_hours out keeps them; null clears them.
    let r = s
        .put(
            "/v1/me/notifications",
            Some(&alice),
            json!({"categories": {"digest": true}}),
        )
        .await;
    assert_eq!(r.expect(200)["quiet_hours"]["start"], "22:00");
    assert_eq!(r.body["categories"]["digest"], true);
    let r = s
        .put(
            "/v1/me/notifications",
            Some(&alice),
            json!({"quiet_hours": null}),
        )
        .await;
    assert_eq!(r.expect(200)["quiet_hours"], Value::Null);
    for bad in [
        json!({"quiet_hours": {"start": "25:00", "end": "07:00"}}),
        json!({"quiet_hours": {"start": "07:00", "end": "07:00"}}),
        json!({"categories": {"nope": true}}),
    ] {
        s.put("/v1/me/notifications", Some(&alice), bad)
            .await
            .problem(422, "validation_failed");
    }
    // Removing a category from push.toml hides it; the choice comes back with it.
    apply_categories(s, &admin, json!({"digest": {"default": false}})).await;
    let r = s.get("/v1/me/notifications", Some(&alice)).await;
    assert_eq!(r.expect(200)["categories"], json!({"digest": true}));
    apply_categories(
        s,
        &admin,
        json!({"digest": {"default": false}, "marketing": {"default": true}}),
    )
    .await;
    let r = s.get("/v1/me/notifications", Some(&alice)).await;
    assert_eq!(r.expect(200)["categories"]["marketing"], false);
    // Admins have no preferences of their own.
    s.get("/v1/me/notifications", Some(&admin))
        .await
        .problem(403, "forbidden");
}

async fn a_push_reaches_every_device_with_its_outcome(backend: Backend) {
    let Some(rig) = rig(backend, ApnsOptions::default()).await else {
        return;
    };
    let s = &rig.s;
    let (alice_id, alice, _) = signup(s, "alice@example.com").await;
    let (bob_id, bob, _) = signup(s, "bob@example.com").await;
    let ok_ios = register(s, &alice, "ios", "aaaa0001").await;
    let dead_ios = register(s, &alice, "ios", "unregistered-0001").await;
    let wrong_env = register(s, &alice, "ios", "baddevice-0001").await;
    let ok_android = register(s, &bob, "android", "fcm-ok-0001").await;
    let dead_android = register(s, &bob, "android", "unregistered-0002").await;
    let busy_android = register(s, &bob, "android", "busy1-0003").await;
    let web = register(s, &bob, "web", "web-0001").await;

    let r = s
        .post(
            "/v1/push",
            Some(&rig.admin),
            json!({"to": {"users": [alice_id, bob_id]}, "title": "Hello", "body": "World",
                   "data": {"post": "p1", "n": 3}, "collapse_id": "greeting",
                   "ttl_seconds": 3600}),
        )
        .await;
    let job_id = r.expect(202)["job_id"].as_str().unwrap().to_owned();
    let job = wait_done(s, &rig.admin, &job_id).await;

    assert_eq!(outcome(&job, &ok_ios)["status"], "sent");
    assert!(outcome(&job, &ok_ios)["provider_id"].is_string());
    assert_eq!(outcome(&job, &ok_android)["status"], "sent");
    assert_eq!(outcome(&job, &dead_ios)["status"], "invalid_token");
    assert_eq!(outcome(&job, &dead_android)["status"], "invalid_token");
    assert_eq!(outcome(&job, &wrong_env)["status"], "failed");
    assert!(
        outcome(&job, &wrong_env)["error"]
            .as_str()
            .unwrap()
            .contains("BadDeviceToken")
    );
    // 429 once with Retry-After: retried, then sent on the second attempt.
    assert_eq!(outcome(&job, &busy_android)["status"], "sent");
    assert_eq!(outcome(&job, &busy_android)["attempts"], 2);
    assert_eq!(outcome(&job, &web)["status"], "failed");
    assert_eq!(outcome(&job, &web)["error"], "provider_not_configured");
    assert_eq!(
        job["counts"],
        json!({"failed": 2, "invalid_token": 2, "opted_out": 0, "queued": 0, "sent": 3})
    );

    // Dead tokens deactivated with their reason; the wrong-environment hint keeps its device.
    let devices = s.get("/v1/devices", Some(&alice)).await;
    let by_id = |d: &Value| {
        devices.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == d["id"])
            .unwrap()
            .clone()
    };
    assert_eq!(by_id(&dead_ios)["active"], false);
    assert_eq!(by_id(&dead_ios)["deactivated_reason"], "Unregistered");
    assert_eq!(by_id(&wrong_env)["active"], true);
    assert_eq!(by_id(&ok_ios)["active"], true);

    // What the providers saw.
    let apns = rig.apns.requests();
    let sent = apns.iter().find(|r| r.token == "aaaa0001").unwrap();
    assert_eq!(sent.headers["apns-topic"], "com.example.app");
    assert_eq!(sent.headers["apns-push-type"], "alert");
    assert_eq!(sent.headers["apns-collapse-id"], "greeting");
    assert!(sent.headers.contains_key("apns-expiration"));
    assert_eq!(sent.body["aps"]["alert"]["title"], "Hello");
    assert_eq!(sent.body["post"], "p1");
    let fcm = rig.fcm.requests();
    let sent = fcm.iter().find(|r| r.token == "fcm-ok-0001").unwrap();
    assert_eq!(sent.body["message"]["notification"]["body"], "World");
    assert_eq!(sent.body["message"]["data"]["n"], "3");
    assert_eq!(fcm.iter().filter(|r| r.token == "busy1-0003").count(), 2);
    assert_eq!(rig.fcm.token_requests(), 1, "the OAuth token is cached");

    // A second push skips the deactivated devices; re-registering revives one.
    let r = s
        .post(
            "/v1/push",
            Some(&rig.admin),
            json!({"to": {"users": [alice_id]}, "body": "2"}),
        )
        .await;
    let job2 = wait_done(s, &rig.admin, r.expect(202)["job_id"].as_str().unwrap()).await;
    assert_eq!(job2["counts"]["sent"], 1);
    assert_eq!(job2["counts"]["failed"], 1, "{job2}");
    register(s, &alice, "ios", "unregistered-0001").await;
    let d = s.get("/v1/devices", Some(&alice)).await;
    assert!(
        d.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["active"] == true)
    );

    // Topic and device targets; the admin job list shows the jobs.
    s.patch(
        &format!("/v1/devices/{}", ok_android["id"].as_str().unwrap()),
        Some(&bob),
        json!({"topics": ["news"]}),
    )
    .await
    .expect(200);
    let r = s
        .post(
            "/v1/push",
            Some(&rig.admin),
            json!({"to": {"topic": "news"}, "body": "n"}),
        )
        .await;
    let job3 = wait_done(s, &rig.admin, r.expect(202)["job_id"].as_str().unwrap()).await;
    assert_eq!(job3["counts"]["sent"], 1);
    assert_eq!(job3["deliveries"][0]["device_id"], ok_android["id"]);
    let r = s
        .post(
            "/v1/push",
            Some(&rig.admin),
            json!({"to": {"devices": [ok_ios["id"]]}, "data": {"sync": "now"}}),
        )
        .await;
    let job4 = wait_done(s, &rig.admin, r.expect(202)["job_id"].as_str().unwrap()).await;
    assert_eq!(job4["counts"]["sent"], 1);
    let background = rig.apns.requests().into_iter().last().unwrap();
    assert_eq!(background.headers["apns-push-type"], "background");
    assert_eq!(background.headers["apns-priority"], "5");
    let jobs = s.get("/v1/admin/push/jobs", Some(&rig.admin)).await;
    assert_eq!(jobs.expect(200)["items"].as_array().unwrap().len(), 4);
    assert_eq!(jobs.body["items"][3]["id"], job_id.as_str());
    // Deliveries page by device id.
    let page = s
        .get(&format!("/v1/push/{job_id}?limit=3"), Some(&rig.admin))
        .await;
    assert_eq!(page.expect(200)["deliveries"].as_array().unwrap().len(), 3);
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let rest = s
        .get(
            &format!("/v1/push/{job_id}?limit=10&cursor={cursor}"),
            Some(&rig.admin),
        )
        .await;
    assert_eq!(rest.expect(200)["deliveries"].as_array().unwrap().len(), 4);
    assert_eq!(rest.body["next_cursor"], Value::Null);
    // The send is in the audit log.
    let audit = s
        .get("/v1/admin/audit?action=push.send", Some(&rig.admin))
        .await;
    assert_eq!(audit.expect(200)["items"].as_array().unwrap().len(), 4);
    rig.s.stop().await;
}

async fn opt_outs_quiet_hours_and_transactional_pushes(backend: Backend) {
    let Some(rig) = rig(backend, ApnsOptions::default()).await else {
        return;
    };
    let s = &rig.s;
    apply_categories(
        s,
        &rig.admin,
        json!({"marketing": {"default": true}, "digest": {"default": false}}),
    )
    .await;
    let (alice_id, alice, _) = signup(s, "alice@example.com").await;
    let (bob_id, bob, _) = signup(s, "bob@example.com").await;
    let (carol_id, carol, _) = signup(s, "carol@example.com").await;
    let a = register(s, &alice, "ios", "alice-0001").await;
    let b = register(s, &bob, "android", "bob-0001").await;
    // Carol's phone is in Tokyo, where it is quiet all day but one minute.
    let now = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Tokyo);
    let end = now + chrono::Duration::hours(12);
    let c = s
        .post(
            "/v1/devices",
            Some(&carol),
            json!({"platform": "ios", "token": "carol-0001", "timezone": "Asia/Tokyo"}),
        )
        .await
        .expect(201)
        .clone();
    s.put(
        "/v1/me/notifications",
        Some(&carol),
        json!({"quiet_hours": {"start": (now - chrono::Duration::minutes(2)).format("%H:%M").to_string(),
                               "end": end.format("%H:%M").to_string()}}),
    )
    .await
    .expect(200);
    s.put(
        "/v1/me/notifications",
        Some(&bob),
        json!({"categories": {"marketing": false}}),
    )
    .await
    .expect(200);

    let users = json!([alice_id, bob_id, carol_id]);
    let r = s
        .post(
            "/v1/push",
            Some(&rig.admin),
            json!({"to": {"users": users}, "title": "Sale", "category": "marketing"}),
        )
        .await;
    let job_id = r.expect(202)["job_id"].as_str().unwrap().to_owned();
    // Alice gets it, Bob opted out, Carol's is held until her quiet hours end.
    let start = Instant::now();
    let job = loop {
        let j = s
            .get(&format!("/v1/push/{job_id}"), Some(&rig.admin))
            .await
            .body;
        if j["counts"]["sent"] == 1 {
            break j;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{j}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(outcome(&job, &a)["status"], "sent");
    assert_eq!(outcome(&job, &b)["status"], "opted_out");
    let held = outcome(&job, &c);
    assert_eq!(held["status"], "queued");
    let release =
        chrono::DateTime::parse_from_rfc3339(held["not_before"].as_str().unwrap()).unwrap();
    assert_eq!(
        release
            .with_timezone(&chrono_tz::Asia::Tokyo)
            .format("%H:%M")
            .to_string(),
        end.format("%H:%M").to_string(),
        "deferred to the local end of quiet hours"
    );
    assert_eq!(
        job["status"], "running",
        "a deferred delivery keeps the job open"
    );
    assert!(!rig.fcm.requests().iter().any(|r| r.token == "bob-0001"));
    assert!(!rig.apns.requests().iter().any(|r| r.token == "carol-0001"));

    // A category off by default is sent only to those who opted in (nobody here but Bob? no:
    // nobody chose digest), and a transactional push ignores opt-outs and quiet hours.
    let r = s
        .post(
            "/v1/push",
            Some(&rig.admin),
            json!({"to": {"users": users}, "body": "d", "category": "digest"}),
        )
        .await;
    let digest = wait_done(s, &rig.admin, r.expect(202)["job_id"].as_str().unwrap()).await;
    assert_eq!(digest["counts"]["opted_out"], 3);
    let r = s
        .post(
            "/v1/push",
            Some(&rig.admin),
            json!({"to": {"users": users}, "body": "Your code: 1234"}),
        )
        .await;
    let tx = wait_done(s, &rig.admin, r.expect(202)["job_id"].as_str().unwrap()).await;
    assert_eq!(tx["counts"]["sent"], 3, "{tx}");
    assert!(rig.fcm.requests().iter().any(|r| r.token == "bob-0001"));
    rig.s.stop().await;
}

async fn bad_pushes_are_refused_before_queueing(backend: Backend) {
    let Some(rig) = rig(backend, ApnsOptions::default()).await else {
        return;
    };
    let s = &rig.s;
    let (alice_id, alice, _) = signup(s, "alice@example.com").await;
    let body = json!({"to": {"users": [alice_id]}, "body": "x"});

    // Who may send.
    s.post("/v1/push", None, body.clone())
        .await
        .problem(401, "unauthenticated");
    s.post("/v1/push", Some(&alice), body.clone())
        .await
        .problem(403, "forbidden");
    let support = s
        .admin_with_role(
            "support@example.com",
            ferrobase_server::access::AdminRole::Support,
        )
        .await;
    s.post("/v1/push", Some(&support), body.clone())
        .await
        .problem(403, "forbidden");
    let key = |scopes: Value| {
        let (s, admin) = (s, rig.admin.clone());
        async move {
            let r = s
                .post(
                    "/v1/admin/api-keys",
                    Some(&admin),
                    json!({"name": "k", "scopes": scopes}),
                )
                .await;
            r.expect(201)["key"].as_str().unwrap().to_owned()
        }
    };
    let sender = key(json!(["push:send"])).await;
    let reader = key(json!(["records:read"])).await;
    let r = s.post("/v1/push", Some(&sender), body.clone()).await;
    let job = r.expect(202)["job_id"].as_str().unwrap().to_owned();
    s.get(&format!("/v1/push/{job}"), Some(&sender))
        .await
        .expect(200);
    s.post("/v1/push", Some(&reader), body.clone())
        .await
        .problem(403, "forbidden");
    s.get(&format!("/v1/push/{job}"), Some(&alice))
        .await
        .problem(403, "forbidden");
    s.get("/v1/push/nope", Some(&rig.admin))
        .await
        .problem(404, "not_found");
    s.get(&format!("/v1/push/{job}?limit=0"), Some(&rig.admin))
        .await
        .problem(400, "bad_request");

    // Input checked before anything is queued: each names its field.
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    for (bad, field) in [
        (
            json!({"to": {"users": [alice_id]}, "body": "x", "category": "nope"}),
            "category",
        ),
        (
            json!({"to": {"users": [alice_id]}, "body": "x", "collapse_id": "c".repeat(65)}),
            "collapse_id",
        ),
        (
            json!({"to": {"users": [alice_id]}, "body": "x", "send_at": past}),
            "send_at",
        ),
        (
            json!({"to": {"users": [alice_id], "topic": "t"}, "body": "x"}),
            "to",
        ),
        (json!({"to": {"users": [alice_id]}}), "body"),
        // Under the server's own 4096-byte data limit, but over APNs' 4 KB payload with the body.
        (
            json!({"to": {"users": [alice_id]}, "body": "b".repeat(2000), "data": {"k": "v".repeat(3000)}}),
            "body",
        ),
    ] {
        let r = s.post("/v1/push", Some(&rig.admin), bad.clone()).await;
        let p = r.problem(422, "validation_failed");
        assert!(
            p["errors"].get(field).is_some()
                || (field == "body" && p["errors"].get("data").is_some()),
            "{field}: {p}"
        );
    }
    s.post(
        "/v1/push",
        Some(&rig.admin),
        json!({"to": {"users": [alice_id]}, "body": 5}),
    )
    .await
    .problem(422, "validation_failed");
    let jobs = s.get("/v1/admin/push/jobs", Some(&rig.admin)).await;
    assert_eq!(
        jobs.expect(200)["items"].as_array().unwrap().len(),
        1,
        "only the good push was queued"
    );
    rig.s.stop().await;
}

async fn scheduled_pushes_wait_and_fan_out_resumes_once(backend: Backend) {
    let Some(rig) = rig(backend, ApnsOptions::default()).await else {
        return;
    };
    let s = &rig.s;
    let (alice_id, alice, _) = signup(s, "alice@example.com").await;
    for i in 0..5 {
        register(s, &alice, "ios", &format!("sched-{i:04}")).await;
    }
    let send_at = chrono::Utc::now() + chrono::Duration::seconds(2);
    let r = s
        .post(
            "/v1/push",
            Some(&rig.admin),
            json!({"to": {"users": [alice_id]}, "body": "later", "send_at": send_at.to_rfc3339()}),
        )
        .await;
    let job_id = r.expect(202)["job_id"].as_str().unwrap().to_owned();
    let early = s.get(&format!("/v1/push/{job_id}"), Some(&rig.admin)).await;
    assert_eq!(early.expect(200)["status"], "queued");
    assert_eq!(early.body["deliveries"], json!([]));
    let job = wait_done(s, &rig.admin, &job_id).await;
    assert!(chrono::Utc::now() >= send_at);
    assert_eq!(job["counts"]["sent"], 5);

    // The fan-out job run again (a worker whose lease expired, a replica racing): nothing new
    // is delivered and no device is sent to twice.
    let again = job_id.clone();
    s.state
        .db
        .write(move |mut c| {
            let job_id = again.clone();
            Box::pin(async move {
                ferrobase_server::jobs::enqueue(&mut c, "push.fanout", &json!({"push_job": job_id}))
                    .await
            })
        })
        .await
        .unwrap();
    s.state.jobs.notify();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = s.get(&format!("/v1/push/{job_id}"), Some(&rig.admin)).await;
    assert_eq!(after.expect(200)["counts"]["sent"], 5);
    for i in 0..5 {
        let token = format!("sched-{i:04}");
        assert_eq!(
            rig.apns
                .requests()
                .iter()
                .filter(|r| r.token == token)
                .count(),
            1,
            "{token}"
        );
    }
    rig.s.stop().await;
}
