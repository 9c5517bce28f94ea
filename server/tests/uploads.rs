//! Resumable uploads (tus 1.0 at /v1/uploads) against a real server on both dialects.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{TestServer, signup};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

fn schema() -> Value {
    json!([{
        "name": "clips",
        "fields": {
            "owner": {"type": "text", "required": true},
            "video": {"type": "file", "max_size": 3000000},
            "extras": {"type": "file", "multiple": true, "max_size": 1000}
        },
        "rules": {
            "list": "owner = @auth.id", "view": "owner = @auth.id",
            "create": "owner = @auth.id", "update": "owner = @auth.id"
        }
    }])
}

async fn tus(
    s: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
) -> reqwest::Response {
    let mut req = s
        .client
        .request(method, format!("{}{path}", s.base))
        .header("tus-resumable", "1.0.0");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/offset+octet-stream")
            .body(b);
    }
    let r = req.send().await.unwrap();
    assert_ne!(r.status().as_u16(), 500);
    r
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Sends a PATCH announcing `declared` bytes, writes only `bytes`, then drops the connection.
async fn cut_patch(
    s: &TestServer,
    path: &str,
    token: &str,
    offset: u64,
    declared: usize,
    bytes: &[u8],
) {
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\nContent-Length: {declared}\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(bytes).await.unwrap();
    sock.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(sock);
}

async fn upload_resume_attach(s: &TestServer) {
    s.apply(schema()).await;
    let (alice, tok, _) = signup(s, "alice@example.com").await;
    let (_, other, _) = signup(s, "bob@example.com").await;

    // Discovery.
    let r = s
        .client
        .request(Method::OPTIONS, format!("{}/v1/uploads", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(r.headers()["tus-version"], "1.0.0");
    assert_eq!(
        r.headers()["tus-extension"],
        "creation,termination,expiration"
    );
    assert_eq!(r.headers()["tus-max-size"], "3000000");

    // Version, length and owner checks.
    let r = s
        .client
        .post(format!("{}/v1/uploads", s.base))
        .bearer_auth(&tok)
        .header("upload-length", "10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 412);
    let r = tus(
        s,
        Method::POST,
        "/v1/uploads",
        Some(&tok),
        &[("upload-length", "3000001".into())],
        None,
    )
    .await;
    assert_eq!(r.status().as_u16(), 413);
    let r = tus(
        s,
        Method::POST,
        "/v1/uploads",
        None,
        &[("upload-length", "10".into())],
        None,
    )
    .await;
    assert_eq!(r.status().as_u16(), 401);
    let r = tus(
        s,
        Method::POST,
        "/v1/uploads",
        Some(&tok),
        &[("upload-length", "ten".into())],
        None,
    )
    .await;
    assert_eq!(r.status().as_u16(), 400);
    let r = tus(
        s,
        Method::POST,
        "/v1/uploads",
        Some(&tok),
        &[
            ("upload-length", "10".into()),
            ("upload-metadata", "filename !!".into()),
        ],
        None,
    )
    .await;
    assert_eq!(r.status().as_u16(), 400);

    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let r = tus(
        s,
        Method::POST,
        "/v1/uploads",
        Some(&tok),
        &[
            ("upload-length", data.len().to_string()),
            (
                "upload-metadata",
                format!(
                    "filename {},content_type {}",
                    b64("holiday.mp4"),
                    b64("video/mp4")
                ),
            ),
        ],
        None,
    )
    .await;
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    assert!(r.headers().contains_key("upload-expires"));
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let id = loc.rsplit('/').next().unwrap().to_owned();

    // Someone else cannot see or touch it.
    let r = tus(s, Method::HEAD, &loc, Some(&other), &[], None).await;
    assert_eq!(r.status().as_u16(), 404);

    // A PATCH cut off mid-way keeps what arrived.
    cut_patch(s, &loc, &tok, 0, 700_000, &data[..300_000]).await;
    let mut offset = 0;
    for _ in 0..50 {
        let r = tus(s, Method::HEAD, &loc, Some(&tok), &[], None).await;
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert_eq!(
            r.headers()["upload-length"],
            data.len().to_string().as_str()
        );
        offset = r.headers()["upload-offset"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap();
        if offset > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(offset > 0 && offset <= 300_000, "kept {offset} bytes");

    // Wrong offset, wrong type.
    let r = tus(
        s,
        Method::PATCH,
        &loc,
        Some(&tok),
        &[("upload-offset", "0".into())],
        Some(vec![1, 2, 3]),
    )
    .await;
    assert_eq!(r.status().as_u16(), 409);
    let r = s
        .client
        .patch(format!("{}{loc}", s.base))
        .bearer_auth(&tok)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", offset.to_string())
        .header("content-type", "application/json")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);

    // Resume from HEAD's offset; the rest in two PATCHes.
    let mid = offset as usize + 800_000;
    let r = tus(
        s,
        Method::PATCH,
        &loc,
        Some(&tok),
        &[("upload-offset", offset.to_string())],
        Some(data[offset as usize..mid].to_vec()),
    )
    .await;
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(r.headers()["upload-offset"], mid.to_string().as_str());
    // Past the end: refused, nothing moves.
    let mut too_much = data[mid..].to_vec();
    too_much.push(0);
    let r = tus(
        s,
        Method::PATCH,
        &loc,
        Some(&tok),
        &[("upload-offset", mid.to_string())],
        Some(too_much),
    )
    .await;
    assert_eq!(r.status().as_u16(), 413);
    let r = tus(
        s,
        Method::PATCH,
        &loc,
        Some(&tok),
        &[("upload-offset", mid.to_string())],
        Some(data[mid..].to_vec()),
    )
    .await;
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(
        r.headers()["upload-offset"],
        data.len().to_string().as_str()
    );

    // A write that fails leaves the upload as it was: refused by the create rule, then
    // invalid (the required owner missing); the corrected request attaches the same upload.
    let r = s
        .post(
            "/v1/collections/clips/records",
            Some(&tok),
            json!({"owner": "someone-else", "video": {"upload": id}}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 403, "{}", r.body);
    let r = s
        .post(
            "/v1/collections/clips/records",
            Some(&tok),
            json!({"video": {"upload": id}}),
        )
        .await;
    assert!(matches!(r.status.as_u16(), 403 | 422), "{}", r.body);
    let r = tus(s, Method::HEAD, &loc, Some(&tok), &[], None).await;
    assert_eq!(
        r.status().as_u16(),
        200,
        "the upload survived the failed writes"
    );

    // Attach to a new record; the file is byte-identical; the upload is consumed.
    let r = s
        .post(
            "/v1/collections/clips/records",
            Some(&tok),
            json!({"owner": alice, "video": {"upload": id}}),
        )
        .await;
    let rec = r.expect(201).clone();
    let name = rec["video"].as_str().unwrap().to_owned();
    assert!(name.starts_with("holiday_"), "{name}");
    let rid = rec["id"].as_str().unwrap().to_owned();
    let got = s
        .client
        .get(format!("{}/v1/files/clips/{rid}/{name}", s.base))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status().as_u16(), 200);
    assert!(
        got.bytes().await.unwrap().as_ref() == data.as_slice(),
        "byte-identical"
    );
    let r = s
        .post(
            "/v1/collections/clips/records",
            Some(&tok),
            json!({"owner": alice, "video": {"upload": id}}),
        )
        .await;
    r.problem(422, "validation_failed");
    let r = tus(s, Method::HEAD, &loc, Some(&tok), &[], None).await;
    assert_eq!(r.status().as_u16(), 404);

    // An unfinished upload cannot be attached; someone else's neither; termination.
    let r = tus(
        s,
        Method::POST,
        "/v1/uploads",
        Some(&tok),
        &[("upload-length", "100".into())],
        None,
    )
    .await;
    let loc2 = r.headers()["location"].to_str().unwrap().to_owned();
    let id2 = loc2.rsplit('/').next().unwrap().to_owned();
    let r = s
        .patch(
            &format!("/v1/collections/clips/records/{rid}"),
            Some(&tok),
            json!({"extras": [{"upload": id2}]}),
        )
        .await;
    r.problem(422, "validation_failed");
    let r = tus(
        s,
        Method::PATCH,
        &loc2,
        Some(&tok),
        &[("upload-offset", "0".into())],
        Some(vec![b'a'; 100]),
    )
    .await;
    assert_eq!(r.status().as_u16(), 204);
    let (_, bob_tok) = (0, other.clone());
    let r = s
        .post(
            "/v1/collections/clips/records",
            Some(&bob_tok),
            json!({"owner": "x", "video": {"upload": id2}}),
        )
        .await;
    assert!(
        r.status.as_u16() == 403 || r.status.as_u16() == 422,
        "{}",
        r.body
    );
    // Attach to an existing record's multiple field (appends).
    let r = s
        .patch(
            &format!("/v1/collections/clips/records/{rid}"),
            Some(&tok),
            json!({"extras": [{"upload": id2}]}),
        )
        .await;
    let rec = r.expect(200).clone();
    assert_eq!(rec["extras"].as_array().unwrap().len(), 1);
    assert_eq!(rec["video"], json!(name));

    let r = tus(
        s,
        Method::POST,
        "/v1/uploads",
        Some(&tok),
        &[("upload-length", "5".into())],
        None,
    )
    .await;
    let loc3 = r.headers()["location"].to_str().unwrap().to_owned();
    let r = tus(s, Method::DELETE, &loc3, Some(&tok), &[], None).await;
    assert_eq!(r.status().as_u16(), 204);
    let r = tus(s, Method::HEAD, &loc3, Some(&tok), &[], None).await;
    assert_eq!(r.status().as_u16(), 404);
    // Bogus offsets and ids.
    let r = tus(
        s,
        Method::PATCH,
        "/v1/uploads/nope",
        Some(&tok),
        &[("upload-offset", "0".into())],
        Some(vec![1]),
    )
    .await;
    assert_eq!(r.status().as_u16(), 404);
    let r = tus(
        s,
        Method::PATCH,
        &loc2,
        Some(&tok),
        &[("upload-offset", "-5".into())],
        Some(vec![1]),
    )
    .await;
    assert_eq!(r.status().as_u16(), 400);
}

on_both!(upload_resume_attach);
