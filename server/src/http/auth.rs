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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub data: Option<Map<String, Value>>,
}

async fn signup(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    JsonBody(req): JsonBody<SignupRequest>,
) -> Result<Response, Error> {
    state.limits.check(Bucket::Signup, &ip_key(&origin))?;
    let pair = state
        .auth()
        .signup(&origin, &req.email, &req.password, req.data)
        .await?;
    Ok((StatusCode::CREATED, Json(pair)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

async fn login(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

async fn refresh(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    JsonBody(req): JsonBody<RefreshRequest>,
) -> Result<Response, Error> {
    let pair = state.auth().refresh(&origin, &req.refresh_token).await?;
    Ok(Json(pair).into_response())
}

async fn logout(
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

async fn anonymous(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
) -> Result<Response, Error> {
    state.limits.check(Bucket::Signup, &ip_key(&origin))?;
    let pair = state.auth().anonymous(&origin).await?;
    Ok((StatusCode::CREATED, Json(pair)).into_response())
}

async fn me(State(state): State<AppState>, Auth(p): Auth) -> Result<Response, Error> {
    let (id, _) = user(&p)?;
    Ok(Json(state.auth().me(id).await?).into_response())
}

async fn update_me(
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

async fn delete_me(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Auth(p): Auth,
) -> Result<Response, Error> {
    let (id, _) = user(&p)?;
    state.auth().delete_user(&origin, Actor::of(&p), id).await?;
    state.auth().sessions_changed();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_sessions(State(state): State<AppState>, Auth(p): Auth) -> Result<Response, Error> {
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

async fn revoke_session(
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

async fn revoke_other_sessions(
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

async fn verify_request(State(state): State<AppState>, Auth(p): Auth) -> Result<Response, Error> {
    let (id, _) = user(&p)?;
    if let Principal::User { email, .. } = &p {
        state.limits.check(Bucket::Reset, email)?;
    }
    state.auth().request_verification(id).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "queued"}))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub token: String,
}

async fn verify_confirm(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub email: String,
}

async fn reset_request(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    JsonBody(req): JsonBody<ResetRequest>,
) -> Result<Response, Error> {
    state
        .limits
        .check(Bucket::Reset, &crate::admin::normalize_email(&req.email))?;
    state.auth().request_reset(&origin, &req.email).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "queued"}))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    pub token: String,
    pub password: String,
}

async fn reset_confirm(
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
