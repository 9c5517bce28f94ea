//! File routes: multipart record writes, raw `PUT` of one file, downloads (rules, ranges,
//! ETag), and file tokens. Storage and checks live in `crate::files`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::AppState;
use super::extract::Auth;
use crate::access::Principal;
use crate::catalog::CollectionInfo;
use crate::error::{Code, Error};
use crate::files::{self, ORPHAN_GRACE};
use crate::records::{Actor, collection, create_in, update_in, view_in};

/// Most file parts in one multipart request.
pub const MAX_FILE_PARTS: usize = 20;
/// Lifetime of a file token.
pub const FILE_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// Whether a request body is `multipart/form-data`.
pub fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// Streams one file into storage for `record`, first enqueueing (in its own commit) the job
/// that deletes it again unless a record references it by then.
async fn store_one<S, E>(
    state: &AppState,
    info: &CollectionInfo,
    field: &str,
    record: &str,
    client_name: &str,
    body: S,
) -> Result<String, Error>
where
    S: futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let db = state.db.clone();
    let (collection, id) = (info.name().to_owned(), record.to_owned());
    let guard = move |name: String| async move {
        db.write(move |mut c| {
            Box::pin(async move {
                files::collect_later(&mut c, &collection, &id, &[name], ORPHAN_GRACE).await
            })
        })
        .await
    };
    let stored = state
        .files
        .upload(info, field, record, client_name, body, guard)
        .await?;
    Ok(stored.name)
}

/// A multipart create or update: a `data` part (JSON object, at most the body limit) and file
/// parts named after file fields. Returns the body and the stored files by field.
async fn read_multipart(
    state: &AppState,
    info: &CollectionInfo,
    record: &mut String,
    creating: bool,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Map<String, Value>, Vec<(String, Vec<String>)>), Error> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(ct)
        .map_err(|_| Error::bad_request("The multipart Content-Type has no boundary."))?;
    let limits = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().for_field("data", state.settings.body_limit as u64));
    let mut parts = multer::Multipart::with_constraints(body.into_data_stream(), boundary, limits);
    let mut data: Option<Map<String, Value>> = None;
    let mut uploads: Vec<(String, Vec<String>)> = Vec::new();
    let mut count = 0;
    let bad = |e: multer::Error| match e {
        multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
            Error::new(Code::PayloadTooLarge, "The `data` part is too large.")
        }
        other => Error::bad_request(format!("The multipart body is malformed: {other}")),
    };
    while let Some(part) = parts.next_field().await.map_err(bad)? {
        let name = part.name().unwrap_or("").to_owned();
        if name == "data" {
            if data.is_some() {
                return Err(Error::bad_request("Only one `data` part is allowed."));
            }
            let bytes = part.bytes().await.map_err(bad)?;
            let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
                Error::new(
                    Code::InvalidJson,
                    format!("The `data` part is not JSON: {e}"),
                )
            })?;
            let Value::Object(mut obj) = value else {
                return Err(Error::new(
                    Code::InvalidJson,
                    "The `data` part must be a JSON object.",
                ));
            };
            if creating {
                match obj.get("id") {
                    // Files already stored under the id chosen for them.
                    Some(v) if !uploads.is_empty() && v.as_str() != Some(record.as_str()) => {
                        return Err(Error::field(
                            "id",
                            "send the `data` part first to choose the record id",
                        ));
                    }
                    Some(Value::String(s)) => {
                        if let Ok(u) = uuid::Uuid::parse_str(s) {
                            *record = u.hyphenated().to_string();
                        }
                    }
                    _ => {}
                }
                obj.insert("id".into(), Value::String(record.clone()));
            }
            data = Some(obj);
            continue;
        }
        let Some(file_name) = part.file_name().map(str::to_owned) else {
            return Err(Error::field(
                &name.chars().take(64).collect::<String>(),
                "only a `data` part and file parts are accepted",
            ));
        };
        count += 1;
        if count > MAX_FILE_PARTS {
            return Err(Error::field(
                &name,
                format!("at most {MAX_FILE_PARTS} files per request"),
            ));
        }
        let stored = store_one(state, info, &name, record, &file_name, part).await?;
        match uploads.iter_mut().find(|(f, _)| *f == name) {
            Some((_, list)) => list.push(stored),
            None => uploads.push((name, vec![stored])),
        }
    }
    let mut body = data.unwrap_or_default();
    if creating {
        body.insert("id".into(), Value::String(record.clone()));
    }
    Ok((body, uploads))
}

/// Deletes what a failed write had stored, at once (the delayed collector would too).
async fn discard(
    state: &AppState,
    info: &CollectionInfo,
    record: &str,
    uploads: &[(String, Vec<String>)],
) {
    for name in uploads.iter().flat_map(|(_, n)| n) {
        let _ = state.files.delete(info.name(), record, name).await;
    }
}

/// `POST …/records` with a multipart body.
pub async fn multipart_create(
    state: &AppState,
    principal: Principal,
    info: Arc<CollectionInfo>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    // A caller who may not create at all is refused before anything is stored.
    crate::access::access(
        &principal,
        info.rules.create.as_ref(),
        crate::access::Op::Create,
        info.name(),
    )?;
    let mut record = uuid::Uuid::now_v7().to_string();
    let (body, uploads) = read_multipart(state, &info, &mut record, true, headers, body).await?;
    let catalog = state.catalog.current();
    let actor = Actor::new(principal);
    let (info2, ups) = (info.clone(), uploads.clone());
    let out = state
        .db
        .write(move |mut c| {
            Box::pin(async move { create_in(&mut c, &catalog, &info2, &actor, &body, &ups).await })
        })
        .await;
    match out {
        Ok(rec) => Ok(super::records::with_etag(StatusCode::CREATED, rec)),
        Err(e) => {
            discard(state, &info, &record, &uploads).await;
            Err(e)
        }
    }
}

/// `PATCH …/records/{id}` with a multipart body.
pub async fn multipart_update(
    state: &AppState,
    principal: Principal,
    info: Arc<CollectionInfo>,
    id: String,
    expected: Option<i64>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    check_writable(state, &principal, &info, &id).await?;
    let mut record = id.clone();
    let (body, uploads) = read_multipart(state, &info, &mut record, false, headers, body).await?;
    update_with_uploads(state, principal, info, id, body, expected, (uploads, None)).await
}

/// Files stored for a write, by field: (field, stored names).
type StoredFiles = Vec<(String, Vec<String>)>;
/// Uploads a write consumes in its transaction: (owner, upload ids).
type ConsumedUploads = (String, Vec<String>);

async fn update_with_uploads(
    state: &AppState,
    principal: Principal,
    info: Arc<CollectionInfo>,
    id: String,
    body: Map<String, Value>,
    expected: Option<i64>,
    (uploads, consume): (StoredFiles, Option<ConsumedUploads>),
) -> Result<Response, Error> {
    let catalog = state.catalog.current();
    let actor = Actor::new(principal);
    let (info2, ups, id2) = (info.clone(), uploads.clone(), id.clone());
    let out = state
        .db
        .write(move |mut c| {
            Box::pin(async move {
                if let Some((owner, ids)) = &consume {
                    files::uploads::consume_in(&mut c, owner, ids).await?;
                }
                update_in(
                    &mut c, &catalog, &info2, &actor, &id2, &body, expected, &ups,
                )
                .await
            })
        })
        .await;
    match out {
        Ok(rec) => {
            state.jobs.notify();
            Ok(super::records::with_etag(StatusCode::OK, rec))
        }
        Err(e) => {
            discard(state, &info, &id, &uploads).await;
            Err(e)
        }
    }
}

/// Refuses (404/401/403) before any upload when the caller may not update the record.
async fn check_writable(
    state: &AppState,
    principal: &Principal,
    info: &Arc<CollectionInfo>,
    id: &str,
) -> Result<(), Error> {
    let (info, actor, id) = (info.clone(), Actor::new(principal.clone()), id.to_owned());
    state
        .db
        .read_by_key(move |mut c| {
            Box::pin(async move { crate::records::check_update(&mut c, &info, &actor, &id).await })
        })
        .await
}

/// The file name a raw upload gives in `Content-Disposition` (`filename*=` wins).
pub fn disposition_name(headers: &HeaderMap) -> String {
    let Some(v) = headers
        .get(header::CONTENT_DISPOSITION)
        .and_then(|v| v.to_str().ok())
    else {
        return "file".into();
    };
    let mut plain = None;
    for param in v.split(';').map(str::trim) {
        if let Some(rest) = param.strip_prefix("filename*=") {
            // RFC 5987: charset'lang'percent-encoded
            let encoded = rest.splitn(3, '\'').nth(2).unwrap_or(rest);
            return percent_decode(encoded);
        }
        if let Some(rest) = param.strip_prefix("filename=") {
            plain = Some(rest.trim_matches('"').to_owned());
        }
    }
    plain.unwrap_or_else(|| "file".into())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Upload one file into a file field (raw body; the name from `Content-Disposition`). A single
/// field takes it in place of its file; a multiple field appends it. Returns the record.
#[utoipa::path(put, path = "/v1/collections/{collection}/records/{id}/files/{field}", tag = "files",
    operation_id = "put_file", security((), ("bearer" = [])),
    params(("collection" = String, Path, description = "Collection name"),
        ("id" = String, Path, description = "Record id"),
        ("field" = String, Path, description = "A file field"),
        ("Content-Disposition" = Option<String>, Header, description = "`attachment; filename=\"photo.png\"`")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, description = "The updated record", body = crate::openapi::Record)))]
pub async fn put_file(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((name, id, field)): Path<(String, String, String)>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, Error> {
    let expected = super::extract::if_match(&headers)?;
    let catalog = state.catalog.current();
    let info = collection(&catalog, &name)?;
    files::file_limits(&info, &field, state.files.default_max)?;
    check_writable(&state, &principal, &info, &id).await?;
    let client_name = disposition_name(&headers);
    let stream = req.into_body().into_data_stream();
    let stored = store_one(&state, &info, &field, &id, &client_name, stream).await?;
    update_with_uploads(
        &state,
        principal,
        info,
        id,
        Map::new(),
        expected,
        (vec![(field, vec![stored])], None),
    )
    .await
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    /// A file token from `POST /v1/files/token`, for clients that cannot send headers.
    pub token: Option<String>,
    /// A thumbnail: `WxH` (crop to fill), `Wx0` or `0xH` (keep the ratio); images only.
    pub thumb: Option<String>,
    /// `1`: `Content-Disposition: attachment` (save rather than show).
    pub download: Option<String>,
}

/// A `Range` no byte of the file satisfies (416).
#[derive(Debug, PartialEq, Eq)]
pub struct Unsatisfiable;

/// One `Range: bytes=…` (several ranges or a malformed header → the whole file, as RFC 9110
/// allows).
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => (start, end.min(size.saturating_sub(1))),
        (Ok(_), Ok(_)) => return Ok(None),
        (Ok(start), Err(_)) if b.is_empty() => (start, size.saturating_sub(1)),
        (Err(_), Ok(n)) if a.is_empty() => {
            if n == 0 {
                return Err(Unsatisfiable);
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        _ => return Ok(None),
    };
    if range.0 >= size {
        return Err(Unsatisfiable);
    }
    Ok(Some(range))
}

/// Download a file of a record, under the record's view rule (404 when hidden).
#[utoipa::path(get, path = "/v1/files/{collection}/{id}/{filename}", tag = "files",
    operation_id = "download_file", security((), ("bearer" = [])),
    params(("collection" = String, Path, description = "Collection name"),
        ("id" = String, Path, description = "Record id"),
        ("filename" = String, Path, description = "The stored file name (the field's value)"),
        DownloadQuery,
        ("Range" = Option<String>, Header, description = "`bytes=0-1023`: part of the file (206)")),
    responses((status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>,
            headers(("ETag" = String, description = "Quoted; the same while the file is"))),
        (status = 206, description = "Part of the file", body = Vec<u8>),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 416, description = "Range not satisfiable")))]
pub async fn download(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((name, id, filename)): Path<(String, String, String)>,
    Query(q): Query<DownloadQuery>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let principal = match (&principal, q.token.as_deref()) {
        (Principal::Anonymous, Some(t)) if !t.is_empty() => state.auth().file_principal(t).await?,
        _ => principal,
    };
    let catalog = state.catalog.current();
    let info = collection(&catalog, &name)?;
    let missing = || Error::not_found("No such file.");
    if !files::names::is_stored_name(&filename) {
        return Err(missing());
    }
    let (info2, actor, id2) = (info.clone(), Actor::new(principal), id.clone());
    let record = state
        .db
        .read_by_key(move |mut c| {
            Box::pin(async move { view_in(&mut c, &info2, &actor, &id2).await })
        })
        .await?;
    let referenced = files::file_fields(&info)
        .into_iter()
        .any(|f| files::names_in(record.get(f)).contains(&filename));
    if !referenced {
        return Err(missing());
    }
    let etag = format!("\"{filename}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(&etag) {
            r.headers_mut().insert(header::ETAG, v);
        }
        return Ok(r);
    }
    // A thumbnail for images (other types ignore `thumb`); a malformed spec is 400.
    if let Some(raw) = q.thumb.as_deref() {
        let spec = files::thumbs::parse_spec(raw)
            .map_err(|e| Error::bad_request(e.to_string()).with("parameter", "thumb"))?;
        if let Some(format) = files::thumbs::format_of(files::names::served_type(&filename))
            && let Some(bytes) = state
                .files
                .thumbnail(info.name(), &id, &filename, format, &spec)
                .await?
        {
            return Ok(thumb_response(
                bytes,
                format,
                &format!("\"{spec}_{filename}\""),
            ));
        }
    }
    let full = state.files.get(info.name(), &id, &filename, None).await?;
    let size = full.meta.size;
    let range = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        size,
    );
    let (status, result, content_range) = match range {
        Err(Unsatisfiable) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
        Ok(None) => (StatusCode::OK, full, None),
        Ok(Some((start, end))) => {
            drop(full);
            let part = state
                .files
                .get(
                    info.name(),
                    &id,
                    &filename,
                    Some(object_store::GetRange::Bounded(start..end + 1)),
                )
                .await?;
            (
                StatusCode::PARTIAL_CONTENT,
                part,
                Some(format!("bytes {start}-{end}/{size}")),
            )
        }
    };
    let length = result.range.end - result.range.start;
    let body = Body::from_stream(
        result
            .into_stream()
            .map(|r| r.map_err(std::io::Error::other)),
    );
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    let disposition = if q.download.as_deref() == Some("1") {
        "attachment"
    } else {
        "inline"
    };
    let pairs: [(header::HeaderName, String); 7] = [
        (
            header::CONTENT_TYPE,
            files::names::served_type(&filename).to_owned(),
        ),
        (header::CONTENT_LENGTH, length.to_string()),
        (header::ETAG, etag),
        (header::ACCEPT_RANGES, "bytes".into()),
        // Rules may change: private caches only, and not for long.
        (header::CACHE_CONTROL, "private, max-age=3600".into()),
        (
            header::CONTENT_DISPOSITION,
            format!("{disposition}; filename=\"{filename}\""),
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
    ];
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    if let Some(cr) = content_range.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::CONTENT_RANGE, cr);
    }
    Ok(resp)
}

fn thumb_response(bytes: bytes::Bytes, format: files::thumbs::ImageFormat, etag: &str) -> Response {
    let mut resp = (StatusCode::OK, Body::from(bytes)).into_response();
    let h = resp.headers_mut();
    for (k, v) in [
        (header::CONTENT_TYPE, format.mime()),
        (header::ETAG, etag),
        (header::CACHE_CONTROL, "private, max-age=3600"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    }
    resp
}

/// A file token: `?token=` on downloads for 5 minutes, with the caller's view rights.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct FileToken {
    pub token: String,
    /// Seconds.
    pub expires_in: u64,
}

/// A short-lived token for image loaders that cannot send an `Authorization` header.
#[utoipa::path(post, path = "/v1/files/token", tag = "files",
    operation_id = "file_token", security(("bearer" = [])),
    responses((status = 200, description = "A file token", body = FileToken)))]
pub async fn file_token(
    State(state): State<AppState>,
    Auth(principal): Auth,
) -> Result<Response, Error> {
    let auth = state.auth();
    let token = match principal {
        Principal::User { id, session, .. } => auth.file_token(&id, &session, FILE_TOKEN_TTL)?,
        Principal::Admin { id, .. } => {
            auth.caller_file_token(&id, crate::auth::ADMIN_FILE, FILE_TOKEN_TTL)?
        }
        Principal::ApiKey { id, .. } => {
            auth.caller_file_token(&id, crate::auth::KEY_FILE, FILE_TOKEN_TTL)?
        }
        Principal::Anonymous => {
            return Err(Error::unauthenticated(
                "Sign in to get a file token; public files need none.",
            ));
        }
    };
    Ok(axum::Json(json!(FileToken {
        token,
        expires_in: FILE_TOKEN_TTL.as_secs()
    }))
    .into_response())
}

/// Whether a JSON body attaches finished uploads (`{"upload": "<id>"}` in a file field).
pub fn has_upload_refs(info: &CollectionInfo, body: &Map<String, Value>) -> bool {
    let is_ref = |v: &Value| v.get("upload").is_some();
    files::file_fields(info)
        .into_iter()
        .any(|f| match body.get(f) {
            Some(Value::Array(items)) => items.iter().any(is_ref),
            Some(v) => is_ref(v),
            None => false,
        })
}

/// Streams the uploads a JSON body names into the record's files: returns the body without
/// them and the stored files by field (for `create_in`/`update_in`), and the uploads the write
/// must consume in its transaction (their parts are removed once it committed).
async fn attach_uploads(
    state: &AppState,
    principal: &Principal,
    info: &CollectionInfo,
    record: &str,
    body: &mut Map<String, Value>,
) -> Result<(StoredFiles, ConsumedUploads), Error> {
    let owner = files::uploads::owner_of(principal)?;
    let mut stored: StoredFiles = Vec::new();
    let mut consumed = Vec::new();
    for field in files::file_fields(info) {
        let Some(value) = body.remove(field) else {
            continue;
        };
        let (keep, refs): (Vec<Value>, Vec<Value>) = match value {
            Value::Array(items) => items.into_iter().partition(|v| v.get("upload").is_none()),
            v if v.get("upload").is_some() => (Vec::new(), vec![v]),
            other => {
                body.insert(field.to_owned(), other);
                continue;
            }
        };
        let multiple = matches!(
            info.column(field).and_then(|c| c.field.as_ref()),
            Some(ferrobase_schema::FieldType::File { multiple: true, .. })
        );
        if multiple {
            // The names kept are the list the uploads append to.
            body.insert(field.to_owned(), Value::Array(keep));
        }
        let mut names = Vec::new();
        for r in refs {
            let Some(id) = r
                .get("upload")
                .and_then(Value::as_str)
                .filter(|_| r.as_object().is_some_and(|o| o.len() == 1))
            else {
                return Err(Error::field(
                    field,
                    "an upload reference is {\"upload\": \"<upload id>\"}",
                ));
            };
            let (up, stream) = files::uploads::take(&state.db, &state.files, &owner, id)
                .await
                .map_err(|e| {
                    if e.code == Code::NotFound {
                        Error::field(
                            field,
                            format!(
                                "no finished upload `{}` of yours",
                                id.chars().take(64).collect::<String>()
                            ),
                        )
                    } else {
                        e
                    }
                })?;
            consumed.push(up.id.clone());
            names.push(store_one(state, info, field, record, &up.filename, stream).await?);
        }
        stored.push((field.to_owned(), names));
    }
    Ok((stored, (owner, consumed)))
}

/// `POST …/records` with a JSON body that attaches uploads.
pub async fn create_with_upload_refs(
    state: &AppState,
    principal: Principal,
    info: Arc<CollectionInfo>,
    mut body: Map<String, Value>,
) -> Result<Response, Error> {
    crate::access::access(
        &principal,
        info.rules.create.as_ref(),
        crate::access::Op::Create,
        info.name(),
    )?;
    let record = match body
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
    {
        Some(u) => u.hyphenated().to_string(),
        None => uuid::Uuid::now_v7().to_string(),
    };
    body.insert("id".into(), Value::String(record.clone()));
    let (uploads, consumed) = attach_uploads(state, &principal, &info, &record, &mut body).await?;
    let catalog = state.catalog.current();
    let actor = Actor::new(principal);
    let (info2, ups) = (info.clone(), uploads.clone());
    let (owner, consume) = consumed.clone();
    let out = state
        .db
        .write(move |mut c| {
            Box::pin(async move {
                files::uploads::consume_in(&mut c, &owner, &consume).await?;
                create_in(&mut c, &catalog, &info2, &actor, &body, &ups).await
            })
        })
        .await;
    match out {
        Ok(rec) => {
            for id in &consumed.1 {
                files::uploads::discard(&state.files, id).await;
            }
            Ok(super::records::with_etag(StatusCode::CREATED, rec))
        }
        Err(e) => {
            discard(state, &info, &record, &uploads).await;
            Err(e)
        }
    }
}

/// `PATCH …/records/{id}` with a JSON body that attaches uploads.
pub async fn update_with_upload_refs(
    state: &AppState,
    principal: Principal,
    info: Arc<CollectionInfo>,
    id: String,
    mut body: Map<String, Value>,
    expected: Option<i64>,
) -> Result<Response, Error> {
    check_writable(state, &principal, &info, &id).await?;
    let (uploads, consumed) = attach_uploads(state, &principal, &info, &id, &mut body).await?;
    let out = update_with_uploads(
        state,
        principal,
        info,
        id,
        body,
        expected,
        (uploads, Some(consumed.clone())),
    )
    .await;
    if out.is_ok() {
        for up in &consumed.1 {
            files::uploads::discard(&state.files, up).await;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-3"), 10), Ok(Some((0, 3))));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some("bytes=-4"), 10), Ok(Some((6, 9))));
        assert_eq!(parse_range(Some("bytes=2-100"), 10), Ok(Some((2, 9))));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(Unsatisfiable));
        assert_eq!(parse_range(Some("bytes=-0"), 10), Err(Unsatisfiable));
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=x-y"), 10), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Ok(None));
    }

    #[test]
    fn disposition() {
        let mut h = HeaderMap::new();
        assert_eq!(disposition_name(&h), "file");
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"cat.png\""),
        );
        assert_eq!(disposition_name(&h), "cat.png");
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"x\"; filename*=UTF-8''caf%C3%A9.png"),
        );
        assert_eq!(disposition_name(&h), "café.png");
    }

    proptest! {
        #[test]
        fn range_never_panics(h in ".{0,40}", size in 0u64..1000) {
            if let Ok(Some((a, b))) = parse_range(Some(&h), size) {
                prop_assert!(a <= b && b < size);
            }
        }

        #[test]
        fn percent_decode_never_panics(s in ".{0,60}") {
            let _ = percent_decode(&s);
        }
    }
}
