//! Identity routes (`/v1/auth/*`): thin handlers over `auth`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::AppState;
use super::extract::{Auth, ClientOrigin, JsonBody, JsonObject};
use crate::access::Principal;
use crate::audit::{self, Actor, Entry};
use crate::auth::sessions;
use crate::error::Error;
use crate::ratelimit::Bucket;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/signup", post(signup))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/auth/anonymous", post(anonymous))
        .route("/auth/me", get(me).patch(update_me).delete(delete_me))
        .route(
            "/auth/sessions",
            get(list_sessions).delete(revoke_other_sessions),
        )
        .route("/auth/sessions/{id}", delete(revoke_session))
        .route("/auth/verify-email/request", post(verify_request))
        .route("/auth/verify-email/confirm", post(verify_confirm))
        .route("/auth/password-reset/request", post(reset_request))
        .route("/auth/password-reset/confirm", post(reset_confirm))
}

fn ip_key(origin: &audit::Origin) -> String {
    origin.ip.clone().unwrap_or_default()
}

/// The signed-in user, or 401.
fn user(p: &Principal) -> Result<(&str, &str), Error> {
    match p {
        Principal::User { id, session, .. } => Ok((id, session)),
        _ => Err(Error::unauthenticated(
            "Sign in as a user (Bearer access token).",
        )),
    }
}

/// A new account.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    pub email: String,
    pub password: String,
    /// Initial values of custom `users` fields (e.g. `name`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Map<String, Value>>,
}

/// Create an account with email and password; answers the new user and a token pair.
#[utoipa::path(post, path = "/v1/auth/signup", tag = "auth", operation_id = "auth_signup",
    request_body(content = SignupRequest, content_type = "application/json"),
    responses((status = 201, description = "Signed up and signed in", body = crate::openapi::TokenPair)))]
pub async fn signup(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    JsonBody(req): JsonBody<SignupRequest>,
) -> Result<Response, Error> {
    state.limits.check(Bucket::Signup, &ip_key(&origin))?;
    let pair = state
        .auth()
        .signup(&origin, &req.email, &req.password, req.data)
        .await?;
    state.jobs.notify();
    Ok((StatusCode::CREATED, Json(pair)).into_response())
}

/// User credentials.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// Sign in with email and password.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", operation_id = "auth_login",
    request_body(content = LoginRequest, content_type = "application/json"),
    responses((status = 200, description = "Signed in", body = crate::openapi::TokenPair)))]
pub async fn login(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Response, Error> {
    let key = format!(
        "{}|{}",
        ip_key(&origin),
        crate::admin::normalize_email(&req.email)
    );
    state.limits.check(Bucket::Login, &key)?;
    let pair = state
        .auth()
        .login(&origin, &req.email, &req.password)
        .await?;
    Ok(Json(pair).into_response())
}

/// A refresh token (`fbr_…`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Exchange a refresh token for a new pair. The old refresh token is spent; reusing a spent
/// one ends that session (401).
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", operation_id = "auth_refresh",
    request_body(content = RefreshRequest, content_type = "application/json"),
    responses((status = 200, description = "A new token pair", body = crate::openapi::TokenPair)))]
pub async fn refresh(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    JsonBody(req): JsonBody<RefreshRequest>,
) -> Result<Response, Error> {
    let pair = state.auth().refresh(&origin, &req.refresh_token).await?;
    Ok(Json(pair).into_response())
}

/// End the current session (its refresh token and access tokens stop working).
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", operation_id = "auth_logout",
    security(("bearer" = [])),
    responses((status = 204, description = "Signed out")))]
pub async fn logout(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Auth(p): Auth,
) -> Result<Response, Error> {
    let (id, sid) = user(&p)?;
    let (id, sid) = (id.to_owned(), sid.to_owned());
    state
        .db
        .write(move |mut c| {
            Box::pin(async move {
                sessions::revoke(&mut c, &sid, chrono::Utc::now()).await?;
                audit::record(
                    &mut c,
                    &origin,
                    Entry {
                        actor: Actor::user(&id, None),
                        action: "auth.logout",
                        target: Some(("session", sid)),
                        details: Value::Null,
                    },
                )
                .await
            })
        })
        .await?;
    state.auth().sessions_changed();
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Create a guest account; upgrade it later with `PATCH /v1/auth/me {email, password}`.
#[utoipa::path(post, path = "/v1/auth/anonymous", tag = "auth", operation_id = "auth_anonymous",
    responses((status = 201, description = "A guest account, signed in", body = crate::openapi::TokenPair)))]
pub async fn anonymous(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
) -> Result<Response, Error> {
    state.limits.check(Bucket::Signup, &ip_key(&origin))?;
    let pair = state.auth().anonymous(&origin).await?;
    Ok((StatusCode::CREATED, Json(pair)).into_response())
}

/// The signed-in user.
#[utoipa::path(get, path = "/v1/auth/me", tag = "auth", operation_id = "auth_me",
    security(("bearer" = [])),
    responses((status = 200, description = "The user", body = crate::openapi::User)))]
pub async fn me(State(state): State<AppState>, Auth(p): Auth) -> Result<Response, Error> {
    let (id, _) = user(&p)?;
    Ok(Json(state.auth().me(id).await?).into_response())
}

/// Update the signed-in user's profile, upgrade a guest account or change the password.
#[utoipa::path(patch, path = "/v1/auth/me", tag = "auth", operation_id = "auth_update_me",
    security(("bearer" = [])),
    request_body(content = crate::openapi::UserUpdate, content_type = "application/json"),
    responses((status = 200, description = "The updated user", body = crate::openapi::User)))]
pub async fn update_me(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Auth(p): Auth,
    JsonObject(body): JsonObject,
) -> Result<Response, Error> {
    user(&p)?;
    let user = state.auth().update_me(&origin, &p, body).await?;
    state.auth().sessions_changed();
    Ok(Json(user).into_response())
}

/// Delete the signed-in user's account.
#[utoipa::path(delete, path = "/v1/auth/me", tag = "auth", operation_id = "auth_delete_me",
    security(("bearer" = [])),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_me(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Auth(p): Auth,
) -> Result<Response, Error> {
    let (id, _) = user(&p)?;
    state.auth().delete_user(&origin, Actor::of(&p), id).await?;
    state.auth().sessions_changed();
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The signed-in user's live sessions (devices).
#[utoipa::path(get, path = "/v1/auth/sessions", tag = "auth", operation_id = "auth_list_sessions",
    security(("bearer" = [])),
    responses((status = 200, description = "Sessions", body = crate::openapi::SessionList)))]
pub async fn list_sessions(
    State(state): State<AppState>,
    Auth(p): Auth,
) -> Result<Response, Error> {
    let (id, sid) = user(&p)?;
    let (id, sid) = (id.to_owned(), sid.to_owned());
    let items = state
        .db
        .read(move |mut c| {
            Box::pin(async move { sessions::list(&mut c, &id, &sid, chrono::Utc::now()).await })
        })
        .await?;
    Ok(Json(json!({"items": items, "next_cursor": null})).into_response())
}

/// Revoke one of the signed-in user's sessions.
#[utoipa::path(delete, path = "/v1/auth/sessions/{id}", tag = "auth", operation_id = "auth_revoke_session",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses((status = 204, description = "Revoked")))]
pub async fn revoke_session(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Auth(p): Auth,
    Path(target): Path<String>,
) -> Result<Response, Error> {
    let (id, _) = user(&p)?;
    let id = id.to_owned();
    state
        .db
        .write(move |mut c| {
            Box::pin(async move {
                let n = c
                    .execute(
                        "UPDATE _fb_sessions SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
                        &[crate::db::Param::Text(target.clone()), crate::db::Param::Text(id.clone()), crate::db::Param::Time(chrono::Utc::now())],
                    )
                    .await?;
                if n == 0 {
                    return Err(Error::not_found("No such session."));
                }
                audit::record(&mut c, &origin, Entry { actor: Actor::user(&id, None), action: "auth.session_revoked", target: Some(("session", target)), details: Value::Null }).await
            })
        })
        .await?;
    state.auth().sessions_changed();
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Revoke every session of the signed-in user except the current one.
#[utoipa::path(delete, path = "/v1/auth/sessions", tag = "auth", operation_id = "auth_revoke_other_sessions",
    security(("bearer" = [])),
    responses((status = 200, description = "Revoked", body = crate::openapi::Revoked)))]
pub async fn revoke_other_sessions(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Auth(p): Auth,
) -> Result<Response, Error> {
    let (id, sid) = user(&p)?;
    let (id, sid) = (id.to_owned(), sid.to_owned());
    let n = state
        .db
        .write(move |mut c| {
            Box::pin(async move {
                let n = sessions::revoke_all(&mut c, &id, Some(&sid), chrono::Utc::now()).await?;
                audit::record(
                    &mut c,
                    &origin,
                    Entry {
                        actor: Actor::user(&id, None),
                        action: "auth.sessions_revoked",
                        target: Some(("user", id.clone())),
                        details: json!({"count": n}),
                    },
                )
                .await?;
                Ok::<_, Error>(n)
            })
        })
        .await?;
    state.auth().sessions_changed();
    Ok(Json(json!({"revoked": n})).into_response())
}

/// Email the signed-in user a verification link (nothing is sent when already verified).
#[utoipa::path(post, path = "/v1/auth/verify-email/request", tag = "auth", operation_id = "auth_verify_email_request",
    security(("bearer" = [])),
    responses((status = 202, description = "Queued", body = crate::openapi::Queued)))]
pub async fn verify_request(
    State(state): State<AppState>,
    Auth(p): Auth,
) -> Result<Response, Error> {
    let (id, _) = user(&p)?;
    if let Principal::User { email, .. } = &p {
        state.limits.check(Bucket::Reset, email)?;
    }
    state.auth().request_verification(id).await?;
    state.jobs.notify();
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "queued"}))).into_response())
}

/// An emailed token.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub token: String,
}

/// Confirm an email address with the emailed token.
#[utoipa::path(post, path = "/v1/auth/verify-email/confirm", tag = "auth", operation_id = "auth_verify_email_confirm",
    request_body(content = TokenRequest, content_type = "application/json"),
    responses((status = 200, description = "Verified", body = crate::openapi::Verified)))]
pub async fn verify_confirm(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    JsonBody(req): JsonBody<TokenRequest>,
) -> Result<Response, Error> {
    state
        .auth()
        .confirm_verification(&origin, &req.token)
        .await?;
    Ok(Json(json!({"verified": true})).into_response())
}

/// The account's email address.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub email: String,
}

/// Email a password-reset token. Always 202, whether or not the address has an account.
#[utoipa::path(post, path = "/v1/auth/password-reset/request", tag = "auth", operation_id = "auth_password_reset_request",
    request_body(content = ResetRequest, content_type = "application/json"),
    responses((status = 202, description = "Queued", body = crate::openapi::Queued)))]
pub async fn reset_request(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    JsonBody(req): JsonBody<ResetRequest>,
) -> Result<Response, Error> {
    state
        .limits
        .check(Bucket::Reset, &crate::admin::normalize_email(&req.email))?;
    state.auth().request_reset(&origin, &req.email).await?;
    state.jobs.notify();
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "queued"}))).into_response())
}

/// An emailed reset token and the new password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    pub token: String,
    pub password: String,
}

/// Set a new password with the emailed token; every session of the user ends.
#[utoipa::path(post, path = "/v1/auth/password-reset/confirm", tag = "auth", operation_id = "auth_password_reset_confirm",
    request_body(content = ResetConfirm, content_type = "application/json"),
    responses((status = 200, description = "Reset", body = crate::openapi::PasswordReset)))]
pub async fn reset_confirm(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    JsonBody(req): JsonBody<ResetConfirm>,
) -> Result<Response, Error> {
    state
        .auth()
        .confirm_reset(&origin, &req.token, &req.password)
        .await?;
    state.auth().sessions_changed();
    Ok(Json(json!({"reset": true})).into_response())
}
