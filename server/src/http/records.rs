//! Record routes: thin handlers over `records`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::AppState;
use super::extract::{Auth, JsonObject, if_match};
use crate::catalog::Catalog;
use crate::error::{Code, Error};
use crate::records::list::{ListQuery, decorate, list_in, parse_expand, parse_fields};
use crate::records::{Actor, collection, create_in, delete_in, update_in, view_in};

/// Most operations in one batch.
pub const MAX_BATCH: usize = 100;

/// A record answer with its version as `ETag` (also used by the file routes).
pub(super) fn with_etag(status: StatusCode, record: Map<String, Value>) -> Response {
    let version = record.get("version").and_then(Value::as_i64);
    let mut r = (status, Json(Value::Object(record))).into_response();
    if let Some(v) = version.and_then(|v| HeaderValue::from_str(&format!("\"{v}\"")).ok()) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// List records visible to the caller: filtered, sorted, cursor-paged.
#[utoipa::path(get, path = "/v1/collections/{collection}/records", tag = "records",
    operation_id = "list_records", security((), ("bearer" = [])),
    params(("collection" = String, Path, description = "Collection name"),
        crate::records::list::ListQuery),
    responses((status = 200, description = "One page", body = crate::openapi::RecordList)))]
pub async fn list(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, Error> {
    let catalog = state.catalog.current();
    let info = collection(&catalog, &name)?;
    let actor = Actor::new(principal);
    let page = state
        .db
        .read(move |mut c| {
            Box::pin(async move { list_in(&mut c, &catalog, &info, &actor, &q).await })
        })
        .await?;
    Ok(Json(page).into_response())
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ViewQuery {
    /// Comma-separated fields to return (`id` is always included).
    pub fields: Option<String>,
    /// Comma-separated relation fields to inline under `expand`.
    pub expand: Option<String>,
}

/// One record (404 when it does not exist or the view rule hides it).
#[utoipa::path(get, path = "/v1/collections/{collection}/records/{id}", tag = "records",
    operation_id = "view_record", security((), ("bearer" = [])),
    params(("collection" = String, Path, description = "Collection name"),
        ("id" = String, Path, description = "Record id"), ViewQuery),
    responses((status = 200, description = "The record", body = crate::openapi::Record,
        headers(("ETag" = String, description = "The record's version, quoted: `\"3\"`")))))]
pub async fn view(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((name, id)): Path<(String, String)>,
    Query(q): Query<ViewQuery>,
) -> Result<Response, Error> {
    let catalog = state.catalog.current();
    let info = collection(&catalog, &name)?;
    let fields = parse_fields(&info, q.fields.as_deref())?;
    let expand = parse_expand(&info, q.expand.as_deref())?;
    let actor = Actor::new(principal);
    let record = state
        .db
        .read_by_key(move |mut c| {
            Box::pin(async move {
                let rec = view_in(&mut c, &info, &actor, &id).await?;
                let mut items = [rec];
                decorate(
                    &mut c,
                    &catalog,
                    &info,
                    &actor,
                    &mut items,
                    fields.as_deref(),
                    &expand,
                )
                .await?;
                let [rec] = items;
                Ok::<_, Error>(rec)
            })
        })
        .await?;
    Ok(with_etag(StatusCode::OK, record))
}

/// Create a record (the create rule sees the record as it would be stored).
#[utoipa::path(post, path = "/v1/collections/{collection}/records", tag = "records",
    operation_id = "create_record", security((), ("bearer" = [])),
    params(("collection" = String, Path, description = "Collection name")),
    request_body(content = crate::openapi::RecordInput, content_type = "application/json",
        description = "The record as JSON. With files: `multipart/form-data` with a `data` part (this JSON) and one part per file, named after its file field (docs/api.md#files)."),
    responses((status = 201, description = "Created", body = crate::openapi::Record,
        headers(("ETag" = String, description = "The record's version, quoted")))))]
pub async fn create(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(name): Path<String>,
    req: axum::extract::Request,
) -> Result<Response, Error> {
    let catalog = state.catalog.current();
    let info = collection(&catalog, &name)?;
    if super::files::is_multipart(req.headers()) {
        let headers = req.headers().clone();
        return super::files::multipart_create(&state, principal, info, &headers, req.into_body())
            .await;
    }
    let JsonObject(body) =
        <JsonObject as axum::extract::FromRequest<AppState>>::from_request(req, &state).await?;
    if super::files::has_upload_refs(&info, &body) {
        return super::files::create_with_upload_refs(&state, principal, info, body).await;
    }
    let actor = Actor::new(principal);
    let record = state
        .db
        .write_one(move |mut c| {
            Box::pin(async move { create_in(&mut c, &catalog, &info, &actor, &body, &[]).await })
        })
        .await?;
    Ok(with_etag(StatusCode::CREATED, record))
}

/// Partial update. With `If-Match: "<version>"` a stale version is refused (412) unless the
/// collection's conflict policy is `last_write_wins`.
#[utoipa::path(patch, path = "/v1/collections/{collection}/records/{id}", tag = "records",
    operation_id = "update_record", security((), ("bearer" = [])),
    params(("collection" = String, Path, description = "Collection name"),
        ("id" = String, Path, description = "Record id"),
        ("If-Match" = Option<String>, Header, pattern = r#"^(W/)?"?[0-9]{1,18}"?$"#,
            description = "The version the change is based on, e.g. `\"3\"`")),
    request_body(content = crate::openapi::RecordInput, content_type = "application/json",
        description = "The record as JSON. With files: `multipart/form-data` with a `data` part (this JSON) and one part per file, named after its file field (docs/api.md#files)."),
    responses((status = 200, description = "The updated record", body = crate::openapi::Record,
        headers(("ETag" = String, description = "The record's new version, quoted")))))]
pub async fn update(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((name, id)): Path<(String, String)>,
    req: axum::extract::Request,
) -> Result<Response, Error> {
    let headers = req.headers().clone();
    let expected = if_match(&headers)?;
    let catalog = state.catalog.current();
    let info = collection(&catalog, &name)?;
    if super::files::is_multipart(&headers) {
        return super::files::multipart_update(
            &state,
            principal,
            info,
            id,
            expected,
            &headers,
            req.into_body(),
        )
        .await;
    }
    let JsonObject(body) =
        <JsonObject as axum::extract::FromRequest<AppState>>::from_request(req, &state).await?;
    if super::files::has_upload_refs(&info, &body) {
        return super::files::update_with_upload_refs(&state, principal, info, id, body, expected)
            .await;
    }
    let actor = Actor::new(principal);
    // A collection with files may enqueue their collection with the write: a transaction.
    let has_files = !crate::files::file_fields(&info).is_empty();
    let record = write_record(&state, has_files, move |mut c| {
        Box::pin(async move {
            update_in(&mut c, &catalog, &info, &actor, &id, &body, expected, &[]).await
        })
    })
    .await?;
    Ok(with_etag(StatusCode::OK, record))
}

/// A record write in a transaction when it may enqueue jobs (file collection) besides its one
/// statement, else as a single statement (cheaper).
async fn write_record<T, F>(state: &AppState, transaction: bool, f: F) -> Result<T, Error>
where
    F: for<'c> FnOnce(crate::db::Conn<'c>) -> crate::db::BoxFut<'c, Result<T, Error>>
        + Send
        + 'static,
    T: Send + 'static,
{
    let out = if transaction {
        state.db.write(f).await
    } else {
        state.db.write_one(f).await
    };
    if transaction && out.is_ok() {
        state.jobs.notify();
    }
    out
}

/// Delete a record.
#[utoipa::path(delete, path = "/v1/collections/{collection}/records/{id}", tag = "records",
    operation_id = "delete_record", security((), ("bearer" = [])),
    params(("collection" = String, Path, description = "Collection name"),
        ("id" = String, Path, description = "Record id"),
        ("If-Match" = Option<String>, Header, pattern = r#"^(W/)?"?[0-9]{1,18}"?$"#,
            description = "The version the delete is based on, e.g. `\"3\"`: a record changed since is kept (412)")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let expected = if_match(&headers)?;
    let catalog = state.catalog.current();
    let info = collection(&catalog, &name)?;
    let actor = Actor::new(principal);
    let has_files = !crate::files::file_fields(&info).is_empty();
    write_record(&state, has_files, move |mut c| {
        Box::pin(async move { delete_in(&mut c, &info, &actor, &id, expected).await })
    })
    .await?;
    if name == "users" {
        // A deleted user's sessions end with it: drop cached session states.
        state.auth().sessions_changed();
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Up to 100 record writes in one transaction: all or nothing.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    #[schema(min_items = 1, max_items = 100)]
    pub operations: Vec<BatchOperation>,
}

/// One write: `POST /v1/collections/{c}/records`, `PATCH` or `DELETE
/// /v1/collections/{c}/records/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchOperation {
    /// `POST`, `PATCH` or `DELETE`.
    #[schema(example = "POST")]
    pub method: String,
    #[schema(example = "/v1/collections/posts/records")]
    pub path: String,
    /// The record body (create and update).
    #[serde(default)]
    #[schema(value_type = Object, required = false)]
    pub body: Option<Value>,
    /// The `If-Match` of an update or delete, as a version number.
    #[serde(default)]
    pub if_match: Option<i64>,
}

/// What one batch operation does, parsed before anything runs.
enum Planned {
    Create(String, Map<String, Value>),
    Update(String, String, Map<String, Value>, Option<i64>),
    Delete(String, String, Option<i64>),
}

fn plan_op(op: BatchOperation) -> Result<Planned, Error> {
    if op.path.contains('\0') {
        return Err(Error::not_found(
            "No such resource: the path contains U+0000.",
        ));
    }
    let path = op.path.split('?').next().unwrap_or("");
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let body = || match op.body.clone() {
        Some(Value::Object(m)) => Ok(m),
        _ => Err(Error::new(
            Code::InvalidJson,
            "`body` must be a JSON object.",
        )),
    };
    match (op.method.to_ascii_uppercase().as_str(), parts.as_slice()) {
        ("POST", ["v1", "collections", c, "records"]) => {
            Ok(Planned::Create((*c).to_owned(), body()?))
        }
        ("PATCH", ["v1", "collections", c, "records", id]) => Ok(Planned::Update(
            (*c).to_owned(),
            (*id).to_owned(),
            body()?,
            op.if_match,
        )),
        ("DELETE", ["v1", "collections", c, "records", id]) => Ok(Planned::Delete(
            (*c).to_owned(),
            (*id).to_owned(),
            op.if_match,
        )),
        _ => Err(Error::bad_request(
            "Batch operations are POST /v1/collections/{c}/records, PATCH or DELETE /v1/collections/{c}/records/{id}.",
        )),
    }
}

fn tag(index: usize) -> impl Fn(Error) -> Error {
    move |e| e.with("operation", index)
}

/// Several record writes in one transaction. On failure nothing is applied and the response
/// is the failing operation's problem with `operation` (its index).
#[utoipa::path(post, path = "/v1/batch", tag = "records", operation_id = "batch",
    security((), ("bearer" = [])),
    request_body(content = BatchRequest, content_type = "application/json"),
    responses((status = 200, description = "Every operation succeeded", body = crate::openapi::BatchResponse)))]
pub async fn batch(
    State(state): State<AppState>,
    Auth(principal): Auth,
    JsonObject(body): JsonObject,
) -> Result<Response, Error> {
    // Decoded here rather than by `JsonBody`: a record body's own problems (U+0000 included)
    // are reported per operation, with its index, by the record validation.
    let req: BatchRequest = super::extract::decode(Value::Object(body))?;
    if req.operations.is_empty() || req.operations.len() > MAX_BATCH {
        return Err(Error::field(
            "operations",
            format!("must have 1 to {MAX_BATCH} operations"),
        ));
    }
    let mut planned = Vec::with_capacity(req.operations.len());
    for (i, op) in req.operations.into_iter().enumerate() {
        planned.push(plan_op(op).map_err(tag(i))?);
    }
    let catalog: Arc<Catalog> = state.catalog.current();
    let actor = Actor::new(principal);
    let results = state
        .db
        .write(move |mut c| {
            Box::pin(async move {
                let mut results = Vec::with_capacity(planned.len());
                for (i, op) in planned.into_iter().enumerate() {
                    let result = match op {
                        Planned::Create(name, body) => {
                            let info = collection(&catalog, &name).map_err(tag(i))?;
                            let rec = create_in(&mut c, &catalog, &info, &actor, &body, &[])
                                .await
                                .map_err(tag(i))?;
                            json!({"status": 201, "body": rec})
                        }
                        Planned::Update(name, id, body, expected) => {
                            let info = collection(&catalog, &name).map_err(tag(i))?;
                            let rec = update_in(
                                &mut c,
                                &catalog,
                                &info,
                                &actor,
                                &id,
                                &body,
                                expected,
                                &[],
                            )
                            .await
                            .map_err(tag(i))?;
                            json!({"status": 200, "body": rec})
                        }
                        Planned::Delete(name, id, expected) => {
                            let info = collection(&catalog, &name).map_err(tag(i))?;
                            delete_in(&mut c, &info, &actor, &id, expected)
                                .await
                                .map_err(tag(i))?;
                            json!({"status": 204, "body": null})
                        }
                    };
                    results.push(result);
                }
                Ok::<_, Error>(results)
            })
        })
        .await?;
    Ok(Json(json!({ "results": results })).into_response())
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// Where to continue: a `cursor` from an earlier answer, an SSE event id, or `now`.
    /// Absent: from the beginning (initial sync).
    pub since: Option<String>,
    /// Most changes per page (default 500, at most 5000).
    pub limit: Option<String>,
}

/// Delta sync: what changed in a collection since a cursor, with tombstones, under the view rule.
#[utoipa::path(get, path = "/v1/collections/{collection}/changes", tag = "sync",
    operation_id = "sync_changes", security((), ("bearer" = [])),
    params(("collection" = String, Path, description = "Collection name"), ChangesQuery),
    responses((status = 200, description = "One page of changes", body = crate::sync::SyncPage)))]
pub async fn changes(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(name): Path<String>,
    Query(q): Query<ChangesQuery>,
) -> Result<Response, Error> {
    let catalog = state.catalog.current();
    let info = collection(&catalog, &name)?;
    let limit = match q.limit.as_deref() {
        None => crate::sync::DEFAULT_LIMIT,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=crate::sync::MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                Error::bad_request(format!(
                    "`limit` must be a whole number from 1 to {}.",
                    crate::sync::MAX_LIMIT
                ))
                .with("parameter", "limit")
            })?,
    };
    let since = crate::sync::Since::parse(q.since.as_deref())?;
    let page = crate::sync::changes(&state.db, info, Actor::new(principal), since, limit).await?;
    Ok(Json(page).into_response())
}
