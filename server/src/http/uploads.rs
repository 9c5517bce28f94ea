//! tus 1.0 routes at `/v1/uploads` (see `crate::files::uploads`).

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::extract::Auth;
use crate::error::{Code, Error};
use crate::files::uploads;

pub const TUS_VERSION: &str = "1.0.0";
pub const TUS_EXTENSIONS: &str = "creation,termination,expiration";

/// The largest file any file field of this deployment takes: the `Tus-Max-Size`.
fn max_size(state: &AppState) -> u64 {
    let catalog = state.catalog.current();
    let mut max = 0;
    for name in catalog.names() {
        if let Some(info) = catalog.get(&name) {
            for f in crate::files::file_fields(&info) {
                if let Ok((m, _)) = crate::files::file_limits(&info, f, state.files.default_max) {
                    max = max.max(m);
                }
            }
        }
    }
    if max == 0 {
        state.files.default_max
    } else {
        max
    }
}

fn tus(mut r: Response, pairs: &[(&'static str, String)]) -> Response {
    let h = r.headers_mut();
    h.insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(*k, v);
        }
    }
    r
}

/// Every request but `OPTIONS` names the protocol version it speaks.
fn check_version(headers: &HeaderMap) -> Result<(), Box<Response>> {
    if headers.get("tus-resumable").and_then(|v| v.to_str().ok()) == Some(TUS_VERSION) {
        return Ok(());
    }
    // tus answers an unsupported version with 412 (a problem body whose status says so).
    let mut body = Error::new(
        Code::BadRequest,
        "Send `Tus-Resumable: 1.0.0` (this server speaks tus 1.0.0).",
    )
    .with("header", "Tus-Resumable")
    .body();
    body["status"] = serde_json::json!(412);
    body["title"] = serde_json::json!("Precondition failed");
    let mut r = (StatusCode::PRECONDITION_FAILED, axum::Json(body)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    Err(Box::new(tus(r, &[("tus-version", TUS_VERSION.into())])))
}

fn http_date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn header_u64(headers: &HeaderMap, name: &'static str) -> Result<Option<u64>, Error> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| {
                Error::bad_request(format!("`{name}` must be a whole number of bytes."))
                    .with("header", name)
            }),
    }
}

/// Middleware: answers tus discovery (`OPTIONS /v1/uploads` that is not a CORS preflight).
pub async fn discovery(
    State(state): State<AppState>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    if req.method() == axum::http::Method::OPTIONS
        && req.uri().path() == "/v1/uploads"
        && !req.headers().contains_key("access-control-request-method")
    {
        return options(State(state)).await;
    }
    next.run(req).await
}

/// tus discovery: the version, extensions and the largest upload.
pub async fn options(State(state): State<AppState>) -> Response {
    tus(
        StatusCode::NO_CONTENT.into_response(),
        &[
            ("tus-version", TUS_VERSION.into()),
            ("tus-extension", TUS_EXTENSIONS.into()),
            ("tus-max-size", max_size(&state).to_string()),
        ],
    )
}

/// tus creation: `Upload-Length` (required) and `Upload-Metadata` (`filename`, …).
///
/// Discovery is `OPTIONS /v1/uploads` (tus core): 204 with `Tus-Version`, `Tus-Extension`
/// (`creation,termination,expiration`) and `Tus-Max-Size`.
#[utoipa::path(post, path = "/v1/uploads", tag = "files", operation_id = "create_upload",
    security(("bearer" = [])),
    params(("Tus-Resumable" = String, Header, description = "`1.0.0`"),
        ("Upload-Length" = u64, Header, description = "Size of the whole file in bytes"),
        ("Upload-Metadata" = Option<String>, Header, description = "tus metadata: `filename <base64>,content_type <base64>`")),
    responses((status = 201, description = "Created; `Location` is the upload's URL"),
        (status = 412, description = "`Tus-Resumable` missing or not `1.0.0`", body = crate::openapi::Problem)))]
pub async fn create(
    State(state): State<AppState>,
    Auth(principal): Auth,
    headers: HeaderMap,
) -> Response {
    // Credentials first (401), then the protocol version (412).
    if let Err(e) = uploads::owner_of(&principal) {
        return tus(e.into_response(), &[]);
    }
    if let Err(r) = check_version(&headers) {
        return *r;
    }
    let result: Result<Response, Error> = async {
        let owner = uploads::owner_of(&principal)?;
        if headers.contains_key("upload-defer-length") {
            return Err(Error::bad_request(
                "Upload-Defer-Length is not supported; send Upload-Length.",
            ));
        }
        let length = header_u64(&headers, "upload-length")?.ok_or_else(|| {
            Error::bad_request("`Upload-Length` is required.").with("header", "Upload-Length")
        })?;
        let max = max_size(&state);
        if length > max {
            return Err(Error::new(
                Code::PayloadTooLarge,
                format!("Uploads are at most {max} bytes (Tus-Max-Size)."),
            ));
        }
        if length == 0 {
            return Err(Error::field("Upload-Length", "the file is empty"));
        }
        let raw = headers
            .get("upload-metadata")
            .map(|v| v.to_str().unwrap_or("\u{0}").to_owned())
            .unwrap_or_default();
        let meta = uploads::parse_metadata(&raw)?;
        let filename = meta
            .iter()
            .find(|(k, _)| k == "filename")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "file".into());
        let up = uploads::create(&state.db, owner, length, filename, raw).await?;
        Ok(tus(
            StatusCode::CREATED.into_response(),
            &[
                ("location", format!("/v1/uploads/{}", up.id)),
                ("upload-expires", http_date(up.expires_at)),
                ("upload-offset", "0".into()),
            ],
        ))
    }
    .await;
    result.unwrap_or_else(|e| tus(e.into_response(), &[]))
}

/// tus `HEAD`: the offset to resume from.
#[utoipa::path(head, path = "/v1/uploads/{id}", tag = "files", operation_id = "upload_status",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Upload id"), ("Tus-Resumable" = String, Header, description = "`1.0.0`")),
    responses((status = 200, description = "`Upload-Offset`, `Upload-Length`, `Upload-Expires`"),
        (status = 404, description = "No such upload of the caller"),
        (status = 412, description = "`Tus-Resumable` missing or not `1.0.0`")))]
pub async fn head(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    // Credentials first (401), then the protocol version (412).
    if let Err(e) = uploads::owner_of(&principal) {
        return tus(e.into_response(), &[]);
    }
    if let Err(r) = check_version(&headers) {
        return *r;
    }
    let result: Result<Response, Error> = async {
        let owner = uploads::owner_of(&principal)?;
        let up = uploads::get(&state.db, &owner, &id).await?;
        let mut pairs = vec![
            ("upload-offset", up.offset.to_string()),
            ("upload-length", up.length.to_string()),
            ("upload-expires", http_date(up.expires_at)),
            ("cache-control", "no-store".to_owned()),
        ];
        if !up.metadata.is_empty() {
            pairs.push(("upload-metadata", up.metadata.clone()));
        }
        Ok(tus(StatusCode::OK.into_response(), &pairs))
    }
    .await;
    result.unwrap_or_else(|e| {
        // HEAD answers carry no body.
        let status = e.status();
        tus(status.into_response(), &[])
    })
}

/// tus `PATCH`: bytes at `Upload-Offset` (`application/offset+octet-stream`), streamed.
#[utoipa::path(patch, path = "/v1/uploads/{id}", tag = "files", operation_id = "upload_chunk",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Upload id"), ("Tus-Resumable" = String, Header, description = "`1.0.0`"),
        ("Upload-Offset" = u64, Header, description = "Where these bytes start (the upload's current offset)")),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"),
    responses((status = 204, description = "Stored; the new `Upload-Offset`"),
        (status = 412, description = "`Tus-Resumable` missing or not `1.0.0`", body = crate::openapi::Problem)))]
pub async fn patch(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    // Credentials first (401), then the protocol version (412).
    if let Err(e) = uploads::owner_of(&principal) {
        return tus(e.into_response(), &[]);
    }
    if let Err(r) = check_version(&headers) {
        return *r;
    }
    let result: Result<Response, Error> = async {
        let owner = uploads::owner_of(&principal)?;
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if ct != "application/offset+octet-stream" {
            return Err(Error::new(
                Code::UnsupportedMediaType,
                "A tus PATCH is `Content-Type: application/offset+octet-stream`.",
            ));
        }
        let offset = header_u64(&headers, "upload-offset")?.ok_or_else(|| {
            Error::bad_request("`Upload-Offset` is required.").with("header", "Upload-Offset")
        })?;
        let up = uploads::append(
            &state.db,
            &state.files,
            &owner,
            &id,
            offset,
            req.into_body().into_data_stream(),
        )
        .await?;
        Ok(tus(
            StatusCode::NO_CONTENT.into_response(),
            &[
                ("upload-offset", up.offset.to_string()),
                ("upload-expires", http_date(up.expires_at)),
            ],
        ))
    }
    .await;
    result.unwrap_or_else(|e| tus(e.into_response(), &[]))
}

/// tus termination.
#[utoipa::path(delete, path = "/v1/uploads/{id}", tag = "files", operation_id = "delete_upload",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Upload id"), ("Tus-Resumable" = String, Header, description = "`1.0.0`")),
    responses((status = 204, description = "Ended; its bytes are removed"),
        (status = 412, description = "`Tus-Resumable` missing or not `1.0.0`", body = crate::openapi::Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    // Credentials first (401), then the protocol version (412).
    if let Err(e) = uploads::owner_of(&principal) {
        return tus(e.into_response(), &[]);
    }
    if let Err(r) = check_version(&headers) {
        return *r;
    }
    let result: Result<Response, Error> = async {
        let owner = uploads::owner_of(&principal)?;
        uploads::terminate(&state.db, &state.files, &owner, &id).await?;
        Ok(tus(StatusCode::NO_CONTENT.into_response(), &[]))
    }
    .await;
    result.unwrap_or_else(|e| tus(e.into_response(), &[]))
}
