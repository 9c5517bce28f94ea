//! Admin routes: sign-in and schema management.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use ferrobase_schema::Collection;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::extract::{Auth, JsonBody};
use crate::access::Principal;
use crate::error::Error;
use crate::{admin, schemas};

/// Admin credentials.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = AdminLoginRequest)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// Sign in as an admin (operator); the token is sent as a Bearer token.
#[utoipa::path(post, path = "/v1/admin/auth/login", tag = "admin", operation_id = "admin_login",
    request_body(content = LoginRequest, content_type = "application/json"),
    responses((status = 200, description = "Signed in", body = crate::openapi::AdminLoginResponse)))]
pub async fn login(
    State(state): State<AppState>,
    super::extract::ClientOrigin(origin): super::extract::ClientOrigin,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Response, Error> {
    state.limits.check(
        crate::ratelimit::Bucket::Login,
        &format!(
            "admin|{}|{}",
            origin.ip.as_deref().unwrap_or(""),
            admin::normalize_email(&req.email)
        ),
    )?;
    let (token, admin) = admin::login(
        &state.db,
        &origin,
        &req.email,
        &req.password,
        state.settings.admin_token_ttl,
    )
    .await?;
    Ok(Json(json!({
        "token": token,
        "expires_in": state.settings.admin_token_ttl.as_secs(),
        "admin": admin,
    }))
    .into_response())
}

/// The applied schema (any admin role).
#[utoipa::path(get, path = "/v1/admin/schema", tag = "admin", operation_id = "admin_get_schema",
    security(("bearer" = [])),
    responses((status = 200, description = "The applied collections", body = crate::openapi::SchemaDocument)))]
pub async fn get_schema(State(state): State<AppState>, Auth(p): Auth) -> Result<Response, Error> {
    p.require_admin(false)?;
    let catalog = state.catalog.current();
    let categories = state
        .db
        .read(|mut c| Box::pin(async move { crate::push::prefs::categories(&mut c).await }))
        .await?;
    Ok(Json(json!({
        "version": catalog.version,
        "collections": catalog.collections,
        "push": {"categories": categories},
    }))
    .into_response())
}

/// A desired schema: the whole set of collections (absent ones are dropped).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaRequest {
    #[schema(value_type = Vec<crate::openapi::CollectionDef>)]
    pub collections: Vec<Collection>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub flags: Option<serde_json::Value>,
    /// `push.toml`: notification categories. Absent = keep the applied ones (`ferrobase apply`
    /// always sends it, so a removed file removes them).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub push: Option<ferrobase_schema::PushProject>,
    /// Allow changes that lose data (dropping collections or fields).
    #[serde(default)]
    pub allow_destructive: bool,
}

impl SchemaRequest {
    /// `flags` is an object when present (null counts as absent).
    fn check(&self) -> Result<(), Error> {
        match &self.flags {
            None | Some(serde_json::Value::Null | serde_json::Value::Object(_)) => Ok(()),
            Some(_) => Err(Error::field("flags", "must be an object")),
        }
    }
}

/// What applying this schema would change (any admin role).
#[utoipa::path(post, path = "/v1/admin/schema/plan", tag = "admin", operation_id = "admin_plan_schema",
    security(("bearer" = [])),
    request_body(content = SchemaRequest, content_type = "application/json"),
    responses((status = 200, description = "The plan", body = crate::openapi::SchemaPlan)))]
pub async fn plan_schema(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(req): JsonBody<SchemaRequest>,
) -> Result<Response, Error> {
    p.require_admin(false)?;
    req.check()?;
    let mut changes = schemas::plan(&state.catalog.current(), &req.collections)?;
    if let Some(push) = req.push {
        schemas::check_push(&push)?;
        let current = state
            .db
            .read(|mut c| Box::pin(async move { crate::push::prefs::categories(&mut c).await }))
            .await?;
        changes.extend(ferrobase_schema::plan_push(&current, &push.categories));
    }
    Ok(Json(json!({"changes": changes})).into_response())
}

/// Apply a schema: DDL and a new version in one transaction (owner and admin roles).
#[utoipa::path(post, path = "/v1/admin/schema/apply", tag = "admin", operation_id = "admin_apply_schema",
    security(("bearer" = [])),
    request_body(content = SchemaRequest, content_type = "application/json"),
    responses((status = 200, description = "Applied (or nothing to do)", body = crate::openapi::SchemaApplyOutcome)))]
pub async fn apply_schema(
    State(state): State<AppState>,
    super::extract::ClientOrigin(origin): super::extract::ClientOrigin,
    Auth(p): Auth,
    JsonBody(req): JsonBody<SchemaRequest>,
) -> Result<Response, Error> {
    p.require_admin(true)?;
    req.check()?;
    let by = match &p {
        Principal::Admin { email, .. } => Some(email.clone()),
        _ => None,
    };
    let outcome = schemas::apply(
        &state.db,
        &state.catalog,
        req.collections,
        req.push,
        req.allow_destructive,
        by,
        Some((origin, crate::audit::Actor::of(&p))),
    )
    .await?;
    Ok(Json(outcome).into_response())
}

/// Applied schema versions, newest first.
#[utoipa::path(get, path = "/v1/admin/schema/history", tag = "admin", operation_id = "admin_schema_history",
    security(("bearer" = [])),
    responses((status = 200, description = "Versions", body = crate::openapi::SchemaHistoryPage)))]
pub async fn schema_history(
    State(state): State<AppState>,
    Auth(p): Auth,
) -> Result<Response, Error> {
    p.require_admin(false)?;
    let items = schemas::history(&state.db).await?;
    Ok(Json(json!({"items": items, "next_cursor": null})).into_response())
}
