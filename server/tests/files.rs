//! Files of `file` fields against a real server: both dialects × local disk and S3 (a moto
//! server on loopback; `FERROBASE_TEST_S3_URL`, default http://127.0.0.1:5055).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Backend, TestServer, signup};
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Store {
    Local,
    S3,
}

fn s3_url() -> String {
    std::env::var("FERROBASE_TEST_S3_URL").unwrap_or_else(|_| "http://127.0.0.1:5055".into())
}

/// Creates the test bucket (idempotent); false (after a loud SKIPPED line) when no S3 server
/// answers and FERROBASE_REQUIRE_S3 is not 1.
async fn s3_ready() -> bool {
    let r = reqwest::Client::new()
        .put(format!("{}/fbtest", s3_url()))
        .send()
        .await;
    match r {
        Ok(resp) if resp.status().is_success() || resp.status().as_u16() == 409 => true,
        other => {
            if std::env::var("FERROBASE_REQUIRE_S3").is_ok_and(|v| v == "1") {
                panic!(
                    "FERROBASE_REQUIRE_S3=1 but no S3 server at {}: {other:?}",
                    s3_url()
                );
            }
            let msg = format!(
                "*** SKIPPED: S3 not reachable at {} (start moto_server; FERROBASE_REQUIRE_S3=1 to fail instead) ***\n",
                s3_url()
            );
            let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
            false
        }
    }
}

async fn start(backend: Backend, store: Store) -> Option<TestServer> {
    if store == Store::S3 && !s3_ready().await {
        return None;
    }
    TestServer::start_with(backend, move |c| {
        c.storage.max_file_size = "30MB".into();
        if store == Store::S3 {
            c.storage.backend = "s3".into();
            c.storage.endpoint = s3_url();
            c.storage.bucket = "fbtest".into();
            c.storage.access_key_id = "testing".into();
            c.storage.secret_access_key = "testing".into();
            c.storage.path_style = true;
            c.storage.allow_http = true;
            c.storage.prefix = format!("t{}/", uuid::Uuid::new_v4().simple());
        }
    })
    .await
}

macro_rules! on_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;
                async fn run(backend: Backend, store: Store) {
                    if let Some(s) = start(backend, store).await {
                        super::$name(&s).await;
                        s.stop().await;
                    }
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_local() { run(Backend::Sqlite, Store::Local).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_local() { run(Backend::Postgres, Store::Local).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_s3() { run(Backend::Sqlite, Store::S3).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_s3() { run(Backend::Postgres, Store::S3).await }
            }
        )*
    };
}

fn schema() -> Value {
    json!([{
        "name": "albums",
        "fields": {
            "owner": {"type": "text", "required": true},
            "title": {"type": "text"},
            "cover": {"type": "file", "max_size": 200000, "mime": ["image/png", "image/jpeg"]},
            "docs": {"type": "file", "multiple": true, "max_files": 3},
            "big": {"type": "file"}
        },
        "rules": {
            "list": "owner = @auth.id", "view": "owner = @auth.id",
            "create": "owner = @auth.id", "update": "owner = @auth.id", "delete": "owner = @auth.id"
        }
    }])
}

/// Bytes that start like a PNG (magic and IHDR), with `n` bytes of payload.
fn png(n: usize) -> Vec<u8> {
    let mut b = vec![
        0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, b'I', b'H', b'D', b'R',
    ];
    b.extend((0..n).map(|i| (i * 7 % 251) as u8));
    b
}

async fn multipart(
    s: &TestServer,
    method: Method,
    path: &str,
    token: &str,
    data: Option<Value>,
    files: Vec<(&str, &str, Vec<u8>)>,
) -> (u16, Value) {
    let mut form = reqwest::multipart::Form::new();
    if let Some(d) = data {
        form = form.part(
            "data",
            reqwest::multipart::Part::text(d.to_string())
                .mime_str("application/json")
                .unwrap(),
        );
    }
    for (field, name, bytes) in files {
        form = form.part(
            field.to_owned(),
            reqwest::multipart::Part::bytes(bytes)
                .file_name(name.to_owned())
                // The client's claim is ignored: types come from the bytes.
                .mime_str("image/png")
                .unwrap(),
        );
    }
    let r = s
        .client
        .request(method, format!("{}{path}", s.base))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_ne!(status, 500);
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn put_raw(
    s: &TestServer,
    path: &str,
    token: &str,
    name: &str,
    bytes: Vec<u8>,
) -> (u16, Value) {
    let r = s
        .client
        .put(format!("{}{path}", s.base))
        .bearer_auth(token)
        .header(
            "content-disposition",
            format!("attachment; filename=\"{name}\""),
        )
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_ne!(status, 500);
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn download(
    s: &TestServer,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = s.client.get(format!("{}{path}", s.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    assert_ne!(r.status().as_u16(), 500);
    r
}

/// Polls until the record's stored objects are exactly `want` (the collector runs as a job).
async fn wait_objects(s: &TestServer, record: &str, want: &[&str]) {
    let mut got = Vec::new();
    for _ in 0..100 {
        got = s.state.files.list("albums", record).await.unwrap();
        if got == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("stored objects {got:?}, want {want:?}");
}

async fn round_trips_and_rules(s: &TestServer) {
    s.apply(schema()).await;
    let (alice, tok, _) = signup(s, "alice@example.com").await;
    let (_, other, _) = signup(s, "bob@example.com").await;
    let cover = png(5000);
    let (st, rec) = multipart(
        s,
        Method::POST,
        "/v1/collections/albums/records",
        &tok,
        Some(json!({"owner": alice, "title": "trip"})),
        vec![("cover", "../../Beach Day.exe", cover.clone())],
    )
    .await;
    assert_eq!(st, 201, "{rec}");
    let id = rec["id"].as_str().unwrap().to_owned();
    let name = rec["cover"].as_str().unwrap().to_owned();
    assert!(
        name.starts_with("beach_day_") && name.ends_with(".png"),
        "{name}"
    );
    let path = format!("/v1/files/albums/{id}/{name}");

    let r = download(s, &path, Some(&tok), &[]).await;
    assert_eq!(r.status().as_u16(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h["cache-control"].to_str().unwrap().contains("private"));
    let etag = h["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'));
    assert_eq!(r.bytes().await.unwrap().to_vec(), cover, "byte-identical");
    let r = download(s, &path, Some(&tok), &[("if-none-match", &etag)]).await;
    assert_eq!(r.status().as_u16(), 304);
    let r = download(s, &path, Some(&tok), &[("range", "bytes=10-19")]).await;
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 10-19/{}", cover.len())
    );
    assert_eq!(r.bytes().await.unwrap().to_vec(), cover[10..20].to_vec());
    let r = download(s, &path, Some(&tok), &[("range", "bytes=999999-")]).await;
    assert_eq!(r.status().as_u16(), 416);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{}", cover.len())
    );

    // The record's view rule governs its files: others and anonymous get 404.
    assert_eq!(
        download(s, &path, Some(&other), &[])
            .await
            .status()
            .as_u16(),
        404
    );
    assert_eq!(download(s, &path, None, &[]).await.status().as_u16(), 404);
    // A name the record does not reference, or a path trick, is 404 too.
    let r = download(
        s,
        &format!("/v1/files/albums/{id}/..%2Fdata.db"),
        Some(&tok),
        &[],
    )
    .await;
    assert_eq!(r.status().as_u16(), 404);

    // File tokens for image loaders; the token carries the caller's rights only.
    let t = s.post("/v1/files/token", Some(&tok), json!({})).await;
    let body = t.expect(200).clone();
    assert_eq!(body["expires_in"], json!(300));
    let ft = body["token"].as_str().unwrap().to_owned();
    let r = download(s, &format!("{path}?token={ft}"), None, &[]).await;
    assert_eq!(r.status().as_u16(), 200);
    let r = download(s, &format!("{path}?token=garbage"), None, &[]).await;
    assert_eq!(r.status().as_u16(), 401);
    // A file token is not an access token.
    s.get("/v1/auth/me", Some(&ft))
        .await
        .problem(401, "unauthenticated");
    s.post("/v1/files/token", None, json!({}))
        .await
        .problem(401, "unauthenticated");
    // Admins and API keys get file tokens too (a dashboard's <img>), each with its own rights;
    // a revoked key's token stops at once.
    let admin = s.admin().await;
    let t = s.post("/v1/files/token", Some(&admin), json!({})).await;
    let at = t.expect(200)["token"].as_str().unwrap().to_owned();
    let r = download(s, &format!("{path}?token={at}"), None, &[]).await;
    assert_eq!(r.status().as_u16(), 200, "an admin reads every file");
    s.get("/v1/admin/users", Some(&at))
        .await
        .problem(401, "unauthenticated");
    let created = s
        .post(
            "/v1/admin/api-keys",
            Some(&admin),
            json!({"name": "cdn", "scopes": ["records:read"]}),
        )
        .await
        .expect(201)
        .clone();
    let key = created["key"].as_str().unwrap().to_owned();
    let t = s.post("/v1/files/token", Some(&key), json!({})).await;
    let kt = t.expect(200)["token"].as_str().unwrap().to_owned();
    let with_key = download(s, &path, Some(&key), &[]).await.status().as_u16();
    let r = download(s, &format!("{path}?token={kt}"), None, &[]).await;
    assert_eq!(
        r.status().as_u16(),
        with_key,
        "the key's token has the key's rights"
    );
    s.delete(
        &format!("/v1/admin/api-keys/{}", created["id"].as_str().unwrap()),
        Some(&admin),
    )
    .await
    .expect(204);
    let r = download(s, &format!("{path}?token={kt}"), None, &[]).await;
    assert_eq!(
        r.status().as_u16(),
        401,
        "revoking the key ends its file tokens"
    );

    // Raw PUT appends to a multiple field, replaces a single one.
    let (st, rec) = put_raw(
        s,
        &format!("/v1/collections/albums/records/{id}/files/docs"),
        &tok,
        "notes.txt",
        b"hello".to_vec(),
    )
    .await;
    assert_eq!(st, 200, "{rec}");
    let (st, rec) = put_raw(
        s,
        &format!("/v1/collections/albums/records/{id}/files/docs"),
        &tok,
        "more.txt",
        b"world".to_vec(),
    )
    .await;
    assert_eq!(st, 200, "{rec}");
    let docs: Vec<String> = rec["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(docs.len(), 2);
    assert!(docs[0].starts_with("notes_") && docs[0].ends_with(".txt"));
    let (st, rec) = put_raw(
        s,
        &format!("/v1/collections/albums/records/{id}/files/cover"),
        &tok,
        "new.png",
        png(100),
    )
    .await;
    assert_eq!(st, 200, "{rec}");
    let new_cover = rec["cover"].as_str().unwrap().to_owned();
    assert_ne!(new_cover, name);
    assert_eq!(
        download(s, &path, Some(&tok), &[]).await.status().as_u16(),
        404
    );
    let mut want = [new_cover.clone(), docs[0].clone(), docs[1].clone()];
    want.sort();
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    // The replaced file is deleted from storage by the collector.
    wait_objects(s, &id, &want).await;

    // Removing a file through JSON keeps the others; pointing at a file that is not the
    // record's is refused.
    let r = s
        .patch(
            &format!("/v1/collections/albums/records/{id}"),
            Some(&tok),
            json!({"docs": [docs[1]]}),
        )
        .await;
    r.expect(200);
    let r = s
        .patch(
            &format!("/v1/collections/albums/records/{id}"),
            Some(&tok),
            json!({"cover": "someone_else_aaaaaaaaaa.png"}),
        )
        .await;
    r.problem(422, "validation_failed");
    let mut want = [new_cover.clone(), docs[1].clone()];
    want.sort();
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    wait_objects(s, &id, &want).await;

    // Another user may not upload into Alice's record (checked before any byte is stored).
    let (st, _) = put_raw(
        s,
        &format!("/v1/collections/albums/records/{id}/files/docs"),
        &other,
        "x.txt",
        b"x".to_vec(),
    )
    .await;
    assert_eq!(st, 404);

    // Deleting the record deletes its files.
    s.delete(&format!("/v1/collections/albums/records/{id}"), Some(&tok))
        .await
        .expect(204);
    wait_objects(s, &id, &[]).await;
}

async fn bad_uploads_store_nothing(s: &TestServer) {
    s.apply(schema()).await;
    let (alice, tok, _) = signup(s, "carol@example.com").await;
    let id = s
        .post(
            "/v1/collections/albums/records",
            Some(&tok),
            json!({"owner": alice}),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let put = |field: &str| format!("/v1/collections/albums/records/{id}/files/{field}");
    // A text file claiming to be a PNG: the bytes decide.
    let (st, body) = put_raw(s, &put("cover"), &tok, "fake.png", b"just text".to_vec()).await;
    assert_eq!(
        (st, body["code"].clone()),
        (415, json!("unsupported_media_type"))
    );
    // Too big.
    let (st, body) = put_raw(s, &put("cover"), &tok, "big.png", png(300_000)).await;
    assert_eq!(
        (st, body["code"].clone()),
        (413, json!("payload_too_large"))
    );
    // Empty.
    let (st, body) = put_raw(s, &put("docs"), &tok, "empty.txt", Vec::new()).await;
    assert_eq!(
        (st, body["code"].clone()),
        (422, json!("validation_failed"))
    );
    // Not a file field / no such field.
    let (st, _) = put_raw(s, &put("title"), &tok, "a.txt", b"a".to_vec()).await;
    assert_eq!(st, 422);
    let (st, _) = put_raw(s, &put("nope"), &tok, "a.txt", b"a".to_vec()).await;
    assert_eq!(st, 422);
    // Too many files for max_files = 3.
    let (st, body) = multipart(
        s,
        Method::PATCH,
        &format!("/v1/collections/albums/records/{id}"),
        &tok,
        None,
        vec![
            ("docs", "1.txt", b"1".to_vec()),
            ("docs", "2.txt", b"2".to_vec()),
            ("docs", "3.txt", b"3".to_vec()),
            ("docs", "4.txt", b"4".to_vec()),
        ],
    )
    .await;
    assert_eq!(
        (st, body["code"].clone()),
        (422, json!("validation_failed")),
        "{body}"
    );
    // A text part other than `data`, and a JSON create naming a file.
    let (st, _) = multipart(
        s,
        Method::POST,
        "/v1/collections/albums/records",
        &tok,
        Some(json!({"owner": alice})),
        vec![],
    )
    .await;
    assert_eq!(st, 201);
    let r = s
        .post(
            "/v1/collections/albums/records",
            Some(&tok),
            json!({"owner": alice, "cover": "x_aaaaaaaaaa.png"}),
        )
        .await;
    r.problem(422, "validation_failed");
    // A create the rule refuses (owner is someone else): the uploaded file goes at once.
    let (st, _) = multipart(
        s,
        Method::POST,
        "/v1/collections/albums/records",
        &tok,
        Some(json!({"owner": "someone-else", "id": "0193a000-0000-7000-8000-000000000001"})),
        vec![("cover", "c.png", png(10))],
    )
    .await;
    assert_eq!(st, 403);
    wait_objects(s, "0193a000-0000-7000-8000-000000000001", &[]).await;
    // A truncated multipart body.
    let r = s
        .client
        .post(format!("{}/v1/collections/albums/records", s.base))
        .bearer_auth(&tok)
        .header("content-type", "multipart/form-data; boundary=XYZ")
        .body("--XYZ\r\nContent-Disposition: form-data; name=\"cover\"; filename=\"a.png\"\r\n\r\n\u{89}PNG partial")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = s
        .client
        .post(format!("{}/v1/collections/albums/records", s.base))
        .bearer_auth(&tok)
        .header("content-type", "multipart/form-data")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // Nothing of the refused uploads stayed.
    wait_objects(s, &id, &[]).await;
}

async fn large_upload_streams(s: &TestServer) {
    s.apply(schema()).await;
    let (alice, tok, _) = signup(s, "dave@example.com").await;
    let id = s
        .post(
            "/v1/collections/albums/records",
            Some(&tok),
            json!({"owner": alice}),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bytes: Vec<u8> = (0..20_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let (st, rec) = put_raw(
        s,
        &format!("/v1/collections/albums/records/{id}/files/big"),
        &tok,
        "video.bin",
        bytes.clone(),
    )
    .await;
    assert_eq!(st, 200, "{rec}");
    let name = rec["big"].as_str().unwrap();
    let r = download(s, &format!("/v1/files/albums/{id}/{name}"), Some(&tok), &[]).await;
    assert_eq!(r.status().as_u16(), 200);
    let got = r.bytes().await.unwrap();
    assert_eq!(got.len(), bytes.len());
    assert!(got.as_ref() == bytes.as_slice(), "byte-identical");
    // Over the default limit (30MB in these tests): 413.
    let too_big = vec![7u8; 31_000_000];
    let (st, _) = put_raw(
        s,
        &format!("/v1/collections/albums/records/{id}/files/big"),
        &tok,
        "huge.bin",
        too_big,
    )
    .await;
    assert_eq!(st, 413);
    wait_objects(s, &id, &[name]).await;
}

on_stores!(
    round_trips_and_rules,
    bad_uploads_store_nothing,
    large_upload_streams
);

fn real_png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 7])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn thumbnails(s: &TestServer) {
    s.apply(schema()).await;
    let (alice, tok, _) = signup(s, "erin@example.com").await;
    let (st, rec) = multipart(
        s,
        Method::POST,
        "/v1/collections/albums/records",
        &tok,
        Some(json!({"owner": alice})),
        vec![
            ("cover", "wide.png", real_png(400, 200)),
            ("docs", "a.txt", b"text".to_vec()),
        ],
    )
    .await;
    assert_eq!(st, 201, "{rec}");
    let id = rec["id"].as_str().unwrap().to_owned();
    let cover = rec["cover"].as_str().unwrap().to_owned();
    let doc = rec["docs"][0].as_str().unwrap().to_owned();
    let url = |name: &str, q: &str| format!("/v1/files/albums/{id}/{name}?thumb={q}");
    for (q, w, h) in [
        ("100x100", 100, 100),
        ("50x0", 50, 25),
        ("0x40", 80, 40),
        ("1000x1000", 200, 200),
    ] {
        let r = download(s, &url(&cover, q), Some(&tok), &[]).await;
        assert_eq!(r.status().as_u16(), 200, "{q}");
        assert_eq!(r.headers()["content-type"], "image/png");
        let img = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
        assert_eq!((img.width(), img.height()), (w, h), "{q}");
    }
    for bad in ["0x0", "3000x10", "abc", "10x", "-1x5"] {
        let r = download(s, &url(&cover, bad), Some(&tok), &[]).await;
        assert_eq!(r.status().as_u16(), 400, "{bad}");
    }
    // Not an image: `thumb` is ignored.
    let r = download(s, &url(&doc, "10x10"), Some(&tok), &[]).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"text");
    // Cached once, and removed with the file.
    let stored = s.state.files.list("albums", &id).await.unwrap();
    assert!(
        stored.contains(&format!("thumbs/100x100_{cover}")),
        "{stored:?}"
    );
    // A decompression bomb (1 x 100,000 pixels) is served as is, never decoded whole.
    let (st, rec) = put_raw(
        s,
        &format!("/v1/collections/albums/records/{id}/files/cover"),
        &tok,
        "tall.png",
        real_png(1, 100_000),
    )
    .await;
    assert_eq!(st, 200, "{rec}");
    let tall = rec["cover"].as_str().unwrap().to_owned();
    let r = download(s, &url(&tall, "10x10"), Some(&tok), &[]).await;
    assert_eq!(r.status().as_u16(), 200);
    s.get("/v1/health", None).await.expect(200);
    let mut want = [doc.clone(), tall.clone()];
    want.sort();
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    wait_objects(s, &id, &want).await;
}

on_stores!(thumbnails);
