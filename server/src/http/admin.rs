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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

pub async fn login(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Response, Error> {
    let (token, admin) = admin::login(
        &state.db,
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

pub async fn get_schema(State(state): State<AppState>, Auth(p): Auth) -> Result<Response, Error> {
    p.require_admin(false)?;
    let catalog = state.catalog.current();
    Ok(
        Json(json!({"version": catalog.version, "collections": catalog.collections}))
            .into_response(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRequest {
    pub collections: Vec<Collection>,
    #[serde(default)]
    pub flags: Option<serde_json::Value>,
    #[serde(default)]
    pub allow_destructive: bool,
}

pub async fn plan_schema(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(req): JsonBody<SchemaRequest>,
) -> Result<Response, Error> {
    p.require_admin(false)?;
    let changes = schemas::plan(&state.catalog.current(), &req.collections)?;
    Ok(Json(json!({"changes": changes})).into_response())
}

pub async fn apply_schema(
    State(state): State<AppState>,
    Auth(p): Auth,
    JsonBody(req): JsonBody<SchemaRequest>,
) -> Result<Response, Error> {
    p.require_admin(true)?;
    let by = match &p {
        Principal::Admin { email, .. } => Some(email.clone()),
        _ => None,
    };
    let outcome = schemas::apply(
        &state.db,
        &state.catalog,
        req.collections,
        req.allow_destructive,
        by,
    )
    .await?;
    Ok(Json(outcome).into_response())
}

pub async fn schema_history(
    State(state): State<AppState>,
    Auth(p): Auth,
) -> Result<Response, Error> {
    p.require_admin(false)?;
    let items = schemas::history(&state.db).await?;
    Ok(Json(json!({"items": items, "next_cursor": null})).into_response())
}
