//! Push routes: a user's devices and notification preferences, sending pushes, and their
//! outcomes. Thin: the domain lives in [`crate::push`].

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::extract::{Auth, ClientOrigin, JsonBody};
use crate::access::{AdminRole, Principal};
use crate::audit::Actor;
use crate::error::Error;
use crate::push::devices::{self, DeviceUpdate, Registration};
use crate::push::jobs::{self as push_jobs, PushRequest};
use crate::push::prefs::{self, PreferencesUpdate};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/devices", post(register_device).get(list_devices))
        .route(
            "/devices/{id}",
            patch(update_device).delete(unregister_device),
        )
        .route(
            "/me/notifications",
            get(get_preferences).put(put_preferences),
        )
        .route("/push", post(send_push))
        .route("/push/{id}", get(push_status))
        .route("/admin/push/jobs", get(list_push_jobs))
        .route("/admin/users/{id}/devices", get(user_devices))
}

fn user(p: &Principal) -> Result<&str, Error> {
    match p {
        Principal::User { id, .. } => Ok(id),
        Principal::Anonymous => Err(Error::unauthenticated(
            "Sign in as a user (Bearer access token) to manage devices.",
        )),
        _ => Err(Error::forbidden(
            "Devices and notification preferences belong to app users.",
        )),
    }
}

/// Sending: owners and admins, or an API key with `push:send` (support and viewer may not).
fn require_sender(p: &Principal) -> Result<(), Error> {
    if p.has_scope("push:send") {
        return Ok(());
    }
    match p.admin_role() {
        Some(AdminRole::Owner | AdminRole::Admin) => Ok(()),
        Some(_) => Err(Error::forbidden(
            "Sending pushes needs the owner or admin role.",
        )),
        None => p.require_admin(true).and(Err(Error::forbidden(
            "Sending pushes needs an admin or push:send.",
        ))),
    }
}

/// Reading outcomes: any admin role, or an API key with `push:send`.
fn require_reader(p: &Principal) -> Result<(), Error> {
    if p.has_scope("push:send") {
        return Ok(());
    }
    p.require_admin(false).map(|_| ())
}

/// Register or refresh this device's push token (upsert by token; a token another user had
/// moves to the caller).
#[utoipa::path(post, path = "/v1/devices", tag = "push", operation_id = "register_device",
    security(("bearer" = [])),
    request_body = Registration,
    responses((status = 201, description = "Registered", body = devices::Device),
        (status = 200, description = "Refreshed (the token was known)", body = devices::Device)))]
pub async fn register_device(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(reg): JsonBody<Registration>,
) -> Result<Response, Error> {
    let uid = user(&p)?.to_owned();
    reg.validate()?;
    let (device, created) = state
        .db
        .write(move |mut c| Box::pin(async move { devices::register(&mut c, &uid, reg).await }))
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(device)).into_response())
}

/// The caller's devices.
#[utoipa::path(get, path = "/v1/devices", tag = "push", operation_id = "list_devices",
    security(("bearer" = [])),
    responses((status = 200, description = "Devices", body = crate::openapi::DeviceList)))]
pub async fn list_devices(State(state): State<AppState>, Auth(p): Auth) -> Result<Response, Error> {
    let uid = user(&p)?.to_owned();
    let items = state
        .db
        .read(move |mut c| Box::pin(async move { devices::list_for_user(&mut c, &uid).await }))
        .await?;
    Ok(Json(json!({"items": items, "next_cursor": null})).into_response())
}

/// Change a device's topics, locale, time zone or app version.
#[utoipa::path(patch, path = "/v1/devices/{id}", tag = "push", operation_id = "update_device",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Device id")),
    request_body = DeviceUpdate,
    responses((status = 200, description = "Updated", body = devices::Device)))]
pub async fn update_device(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    JsonBody(u): JsonBody<DeviceUpdate>,
) -> Result<Response, Error> {
    let uid = user(&p)?.to_owned();
    u.validate()?;
    let device = state
        .db
        .write(move |mut c| Box::pin(async move { devices::update(&mut c, &uid, &id, u).await }))
        .await?
        .ok_or_else(|| Error::not_found("No such device of yours."))?;
    Ok(Json(device).into_response())
}

/// Unregister a device (sign-out): it receives nothing more.
#[utoipa::path(delete, path = "/v1/devices/{id}", tag = "push", operation_id = "unregister_device",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Device id")),
    responses((status = 204, description = "Unregistered")))]
pub async fn unregister_device(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let uid = user(&p)?.to_owned();
    let removed = state
        .db
        .write(move |mut c| Box::pin(async move { devices::unregister(&mut c, &uid, &id).await }))
        .await?;
    if !removed {
        return Err(Error::not_found("No such device of yours."));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The caller's notification preferences: every declared category and quiet hours.
#[utoipa::path(get, path = "/v1/me/notifications", tag = "push", operation_id = "get_notification_preferences",
    security(("bearer" = [])),
    responses((status = 200, description = "Preferences", body = prefs::Preferences)))]
pub async fn get_preferences(
    State(state): State<AppState>,
    Auth(p): Auth,
) -> Result<Response, Error> {
    let uid = user(&p)?.to_owned();
    let prefs = state
        .db
        .read(move |mut c| Box::pin(async move { prefs::get(&mut c, &uid).await }))
        .await?;
    Ok(Json(prefs).into_response())
}

/// Opt in or out of categories (others keep their value), set or clear quiet hours.
#[utoipa::path(put, path = "/v1/me/notifications", tag = "push", operation_id = "put_notification_preferences",
    security(("bearer" = [])),
    request_body = PreferencesUpdate,
    responses((status = 200, description = "Preferences", body = prefs::Preferences)))]
pub async fn put_preferences(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(u): JsonBody<PreferencesUpdate>,
) -> Result<Response, Error> {
    let uid = user(&p)?.to_owned();
    let prefs = state
        .db
        .write(move |mut c| Box::pin(async move { prefs::update(&mut c, &uid, u).await }))
        .await?;
    Ok(Json(prefs).into_response())
}

/// Send a push to users, a topic or devices; 202 with the job id to follow it by.
#[utoipa::path(post, path = "/v1/push", tag = "push", operation_id = "send_push",
    security(("bearer" = [])),
    request_body = PushRequest,
    responses((status = 202, description = "Queued", body = crate::openapi::PushAccepted)))]
pub async fn send_push(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Auth(p): Auth,
    JsonBody(req): JsonBody<PushRequest>,
) -> Result<Response, Error> {
    require_sender(&p)?;
    let id = crate::push::send(&state.push, req, Actor::of(&p), origin).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"job_id": id}))).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1 to 5000 (default 500).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 5000)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn limit(q: &PageQuery, default: usize, max: usize) -> Result<usize, Error> {
    match q.limit.as_deref() {
        None => Ok(default),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                Error::bad_request(format!("limit must be 1 to {max}")).with("parameter", "limit")
            }),
    }
}

/// A push job's status, counts and one page of per-device outcomes.
#[utoipa::path(get, path = "/v1/push/{id}", tag = "push", operation_id = "push_status",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Job id"), PageQuery),
    responses((status = 200, description = "The job", body = push_jobs::PushJob)))]
pub async fn push_status(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, Error> {
    require_reader(&p)?;
    let n = limit(&q, 500, 5000)?;
    let job = state
        .db
        .read(move |mut c| {
            Box::pin(async move { push_jobs::get(&mut c, &id, n, q.cursor.as_deref()).await })
        })
        .await?
        .ok_or_else(|| Error::not_found("No such push job."))?;
    Ok(Json(job).into_response())
}

/// Push jobs, newest first.
#[utoipa::path(get, path = "/v1/admin/push/jobs", tag = "admin", operation_id = "admin_list_push_jobs",
    security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, description = "Jobs", body = crate::openapi::PushJobPage)))]
pub async fn list_push_jobs(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<PageQuery>,
) -> Result<Response, Error> {
    require_reader(&p)?;
    let n = limit(&q, 50, 500)?;
    let (items, next) = state
        .db
        .read(move |mut c| {
            Box::pin(async move { push_jobs::list(&mut c, n, q.cursor.as_deref()).await })
        })
        .await?;
    Ok(Json(json!({"items": items, "next_cursor": next})).into_response())
}

/// A user's devices, for support.
#[utoipa::path(get, path = "/v1/admin/users/{id}/devices", tag = "admin", operation_id = "admin_user_devices",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "Devices", body = crate::openapi::DeviceList)))]
pub async fn user_devices(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    p.require_admin(false)?;
    let items = state
        .db
        .read(move |mut c| Box::pin(async move { devices::list_for_user(&mut c, &id).await }))
        .await?;
    Ok(Json(json!({"items": items, "next_cursor": null})).into_response())
}
