//! Operator routes: user support, admin accounts, API keys and the audit log. Every change is
//! written to the audit log in the same transaction.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::AppState;
use super::extract::{Auth, ClientOrigin, JsonBody};
use crate::access::{AdminRole, Principal};
use crate::audit::{self, Actor, Entry};
use crate::auth::sessions;
use crate::db::{ColType, Param};
use crate::error::Error;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/users", get(search_users))
        .route("/admin/users/{id}", get(view_user).delete(delete_user))
        .route("/admin/users/{id}/export", get(export_user))
        .route("/admin/users/{id}/{action}", post(user_action))
        .route("/admin/admins", get(list_admins).post(create_admin))
        .route("/admin/admins/{id}", delete(delete_admin))
        .route("/admin/api-keys", get(list_keys).post(create_key))
        .route("/admin/api-keys/{id}", delete(revoke_key))
        .route("/admin/audit", get(query_audit))
}

/// Support actions need owner, admin or support; reads any admin role.
fn require_support(p: &Principal) -> Result<AdminRole, Error> {
    let role = p.require_admin(false)?;
    if role == AdminRole::Viewer {
        return Err(Error::forbidden(
            "The viewer role may read but not act on users.",
        ));
    }
    Ok(role)
}

fn require_owner(p: &Principal) -> Result<(), Error> {
    match p.admin_role() {
        Some(AdminRole::Owner) if matches!(p, Principal::Admin { .. }) => Ok(()),
        Some(_) => Err(Error::forbidden("Only owners manage admin accounts.")),
        None => p.require_admin(false).map(|_| ()),
    }
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserSearch {
    /// Text in the email or name (case-insensitive), or an exact id.
    pub q: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

const ADMIN_USER_COLS: &str = "disabled, role";

/// Search users by email, name or id (any admin role), ordered by id.
#[utoipa::path(get, path = "/v1/admin/users", tag = "admin", operation_id = "admin_search_users",
    security(("bearer" = [])),
    params(UserSearch),
    responses((status = 200, description = "One page of users", body = crate::openapi::UserPage)))]
pub async fn search_users(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<UserSearch>,
) -> Result<Response, Error> {
    p.require_admin(false)?;
    let limit: usize = match q.limit.as_deref() {
        None => 50,
        Some(s) => s
            .parse()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| {
                Error::bad_request("Invalid `limit`: 1 to 500").with("parameter", "limit")
            })?,
    };
    let info = crate::records::collection(&state.catalog.current(), "users")?;
    let mut conds = Vec::new();
    let mut params = Vec::new();
    if let Some(text) = q.q.filter(|s| !s.trim().is_empty()) {
        params.push(Param::Text(
            text.trim().to_lowercase().chars().take(200).collect(),
        ));
        let n = params.len();
        let dialect_lower = if state.db.dialect() == ferrobase_expr::Dialect::Postgres {
            "strpos"
        } else {
            "instr"
        };
        conds.push(format!("({dialect_lower}(lower(COALESCE(email, '')), ${n}) > 0 OR {dialect_lower}(lower(COALESCE(name, '')), ${n}) > 0 OR id = ${n})"));
    }
    if let Some(c) = q.cursor.filter(|s| !s.is_empty()) {
        params.push(Param::Text(c));
        conds.push(format!("id > ${}", params.len()));
    }
    let mut sql = format!(
        "SELECT {}, {ADMIN_USER_COLS} FROM c_users",
        info.select_list
    );
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    sql.push_str(&format!(" ORDER BY id LIMIT {}", limit + 1));
    let mut types = info.col_types.clone();
    types.extend([ColType::Bool, ColType::Text]);
    let rows = state
        .db
        .read(move |mut c| {
            Box::pin(async move { c.fetch(&sql, &params, &types).await.map_err(Error::from) })
        })
        .await?;
    let mut items: Vec<Map<String, Value>> =
        rows.into_iter().map(|r| admin_user(&info, r)).collect();
    let more = items.len() > limit;
    items.truncate(limit);
    let next = if more {
        items.last().and_then(|u| u.get("id").cloned())
    } else {
        None
    };
    Ok(Json(json!({"items": items, "next_cursor": next})).into_response())
}

/// A user row as admins see it: the record plus `disabled` and `role`.
fn admin_user(info: &crate::catalog::CollectionInfo, mut row: Vec<Param>) -> Map<String, Value> {
    let role = row.pop();
    let disabled = row.pop();
    let mut rec = crate::records::row_to_record(info, row);
    rec.insert(
        "disabled".into(),
        Value::Bool(matches!(disabled, Some(Param::Bool(true)))),
    );
    rec.insert(
        "role".into(),
        role.map(crate::records::to_json).unwrap_or(Value::Null),
    );
    rec
}

async fn fetch_admin_user(state: &AppState, id: &str) -> Result<Map<String, Value>, Error> {
    let info = crate::records::collection(&state.catalog.current(), "users")?;
    let sql = format!(
        "SELECT {}, {ADMIN_USER_COLS} FROM c_users WHERE id = $1",
        info.select_list
    );
    let mut types = info.col_types.clone();
    types.extend([ColType::Bool, ColType::Text]);
    let id = id.to_owned();
    let row = state
        .db
        .read(move |mut c| {
            Box::pin(async move {
                c.fetch_one(&sql, &[Param::Text(id)], &types)
                    .await
                    .map_err(Error::from)
            })
        })
        .await?
        .ok_or_else(|| Error::not_found("No such user."))?;
    Ok(admin_user(&info, row))
}

/// One user, with `disabled` and `role` (any admin role).
#[utoipa::path(get, path = "/v1/admin/users/{id}", tag = "admin", operation_id = "admin_view_user",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "The user", body = crate::openapi::AdminUser)))]
pub async fn view_user(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    p.require_admin(false)?;
    Ok(Json(fetch_admin_user(&state, &id).await?).into_response())
}

/// Delete a user and end their sessions (owner and admin roles).
#[utoipa::path(delete, path = "/v1/admin/users/{id}", tag = "admin", operation_id = "admin_delete_user",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "User id")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_user(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    p.require_admin(true)?;
    state
        .auth()
        .delete_user(&origin, Actor::of(&p), &id)
        .await?;
    state.auth().sessions_changed();
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A support action on a user: `disable`, `enable`, `revoke-sessions` or
/// `send-password-reset` (owner, admin and support roles).
#[utoipa::path(post, path = "/v1/admin/users/{id}/{action}", tag = "admin", operation_id = "admin_user_action",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "User id"),
        ("action" = String, Path, description = "The action",
            example = "disable", pattern = "^(disable|enable|revoke-sessions|send-password-reset)$")),
    responses((status = 200, description = "Done; the user as it is now", body = crate::openapi::AdminUser)))]
pub async fn user_action(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Auth(p): Auth,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, Error> {
    require_support(&p)?;
    fetch_admin_user(&state, &id).await?;
    let actor = Actor::of(&p);
    match action.as_str() {
        "disable" | "enable" => {
            let disable = action == "disable";
            let (id2, origin2) = (id.clone(), origin.clone());
            state
                .db
                .write(move |mut c| {
                    Box::pin(async move {
                        let now = Utc::now();
                        c.execute(
                            "UPDATE c_users SET disabled = $2, updated_at = $3, version = version + 1 WHERE id = $1",
                            &[Param::Text(id2.clone()), Param::Bool(disable), Param::Time(now)],
                        )
                        .await?;
                        let action = if disable { "admin.user.disable" } else { "admin.user.enable" };
                        audit::record(&mut c, &origin2, Entry { actor, action, target: Some(("user", id2)), details: Value::Null }).await
                    })
                })
                .await?;
        }
        "revoke-sessions" => {
            let id2 = id.clone();
            let origin2 = origin.clone();
            state
                .db
                .write(move |mut c| {
                    Box::pin(async move {
                        let n = sessions::revoke_all(&mut c, &id2, None, Utc::now()).await?;
                        audit::record(
                            &mut c,
                            &origin2,
                            Entry {
                                actor,
                                action: "admin.user.revoke_sessions",
                                target: Some(("user", id2)),
                                details: json!({"count": n}),
                            },
                        )
                        .await
                    })
                })
                .await?;
        }
        "send-password-reset" => {
            let user = fetch_admin_user(&state, &id).await?;
            let email = user
                .get("email")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::field("email", "the user has no email"))?
                .to_owned();
            state.auth().request_reset(&origin, &email).await?;
            state.jobs.notify();
            audit::record_alone(
                &state.db,
                &origin,
                Entry {
                    actor,
                    action: "admin.user.send_password_reset",
                    target: Some(("user", id.clone())),
                    details: Value::Null,
                },
            )
            .await?;
        }
        _ => {
            return Err(Error::not_found(
                "No such user action (disable, enable, revoke-sessions, send-password-reset).",
            ));
        }
    }
    state.auth().sessions_changed();
    Ok(Json(fetch_admin_user(&state, &id).await?).into_response())
}

/// One JSON document with the user and every record that points at them.
/// Everything stored about a user, as one JSON document (owner, admin and support roles).
#[utoipa::path(get, path = "/v1/admin/users/{id}/export", tag = "admin", operation_id = "admin_export_user",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "The export", body = crate::openapi::UserExport)))]
pub async fn export_user(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    require_support(&p)?;
    let user = fetch_admin_user(&state, &id).await?;
    let catalog = state.catalog.current();
    let mut records = Map::new();
    for c in &catalog.collections {
        let Some(info) = catalog.get(&c.name) else {
            continue;
        };
        let fields: Vec<String> = info
            .def
            .fields
            .iter()
            .filter(|(_, f)| matches!(&f.ty, ferrobase_schema::FieldType::Relation { collection, multiple: false } if collection == "users"))
            .map(|(n, _)| n.clone())
            .collect();
        if fields.is_empty() || c.name == "users" {
            continue;
        }
        let cond = fields
            .iter()
            .map(|f| format!("\"{f}\" = $1"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let sql = format!(
            "SELECT {} FROM \"{}\" WHERE {cond} ORDER BY created_at, id LIMIT 10000",
            info.select_list, info.table
        );
        let (uid, info2) = (id.clone(), info.clone());
        let rows = state
            .db
            .read(move |mut conn| {
                Box::pin(async move {
                    conn.fetch(&sql, &[Param::Text(uid)], &info2.col_types)
                        .await
                        .map_err(Error::from)
                })
            })
            .await?;
        let items: Vec<Value> = rows
            .into_iter()
            .map(|r| Value::Object(crate::records::row_to_record(&info, r)))
            .collect();
        records.insert(c.name.clone(), Value::Array(items));
    }
    audit::record_alone(
        &state.db,
        &origin,
        Entry {
            actor: Actor::of(&p),
            action: "admin.user.export",
            target: Some(("user", id)),
            details: Value::Null,
        },
    )
    .await?;
    Ok(Json(json!({"user": user, "records": records, "files": []})).into_response())
}

/// Operator accounts (any admin role).
#[utoipa::path(get, path = "/v1/admin/admins", tag = "admin", operation_id = "admin_list_admins",
    security(("bearer" = [])),
    responses((status = 200, description = "Admins", body = crate::openapi::AdminList)))]
pub async fn list_admins(State(state): State<AppState>, Auth(p): Auth) -> Result<Response, Error> {
    p.require_admin(false)?;
    let items = crate::admin::list_admins(&state.db).await?;
    Ok(Json(json!({"items": items, "next_cursor": null})).into_response())
}

/// A new operator account.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAdmin {
    pub email: String,
    pub password: String,
    /// `owner`, `admin` (default), `support` or `viewer`.
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::AdminRole>)]
    pub role: Option<String>,
}

/// Create an operator account (owners only).
#[utoipa::path(post, path = "/v1/admin/admins", tag = "admin", operation_id = "admin_create_admin",
    security(("bearer" = [])),
    request_body(content = CreateAdmin, content_type = "application/json"),
    responses((status = 201, description = "Created", body = crate::openapi::AdminAccount)))]
pub async fn create_admin(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Auth(p): Auth,
    JsonBody(req): JsonBody<CreateAdmin>,
) -> Result<Response, Error> {
    require_owner(&p)?;
    let role_name = req.role.unwrap_or_else(|| "admin".into());
    let role = AdminRole::parse(&role_name)
        .ok_or_else(|| Error::field("role", "must be owner, admin, support or viewer"))?;
    let admin = crate::admin::create_admin(
        &state.db,
        &req.email,
        &req.password,
        role,
        state.settings.min_password_length,
    )
    .await?;
    audit::record_alone(
        &state.db,
        &origin,
        Entry {
            actor: Actor::of(&p),
            action: "admin.admin.create",
            target: Some(("admin", admin.id.clone())),
            details: json!({"role": role.as_str(), "email": admin.email}),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(admin)).into_response())
}

/// Delete an operator account (owners only; not one's own).
#[utoipa::path(delete, path = "/v1/admin/admins/{id}", tag = "admin", operation_id = "admin_delete_admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Admin id")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_admin(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    require_owner(&p)?;
    if let Principal::Admin { id: me, .. } = &p
        && *me == id
    {
        return Err(Error::conflict(
            "Admins cannot delete themselves; ask another owner.",
        ));
    }
    let (origin, actor) = (origin.clone(), Actor::of(&p));
    state
        .db
        .write(move |mut c| {
            Box::pin(async move {
                let n = c
                    .execute(
                        "DELETE FROM _fb_admins WHERE id = $1",
                        &[Param::Text(id.clone())],
                    )
                    .await?;
                if n == 0 {
                    return Err(Error::not_found("No such admin."));
                }
                c.execute(
                    "DELETE FROM _fb_admin_tokens WHERE admin_id = $1",
                    &[Param::Text(id.clone())],
                )
                .await?;
                audit::record(
                    &mut c,
                    &origin,
                    Entry {
                        actor,
                        action: "admin.admin.delete",
                        target: Some(("admin", id)),
                        details: Value::Null,
                    },
                )
                .await
            })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A new API key.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    /// What the key may do, e.g. `records:read`, `metrics:read`.
    pub scopes: Vec<String>,
    /// RFC 3339; absent or `null` for no expiry.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// Create an API key (owner and admin roles). The secret `key` is shown only here.
#[utoipa::path(post, path = "/v1/admin/api-keys", tag = "admin", operation_id = "admin_create_api_key",
    security(("bearer" = [])),
    request_body(content = CreateKey, content_type = "application/json"),
    responses((status = 201, description = "Created", body = crate::openapi::ApiKeyCreated)))]
pub async fn create_key(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Auth(p): Auth,
    JsonBody(req): JsonBody<CreateKey>,
) -> Result<Response, Error> {
    p.require_admin(true)?;
    let expires = match req.expires_at.as_deref() {
        None => None,
        Some(s) => Some(
            ferrobase_expr::parse_date(s)
                .ok_or_else(|| Error::field("expires_at", "must be an RFC 3339 date"))?,
        ),
    };
    let (key, secret) =
        crate::apikeys::create(&state.db, &origin, &p, &req.name, req.scopes, expires).await?;
    let mut body = serde_json::to_value(key).map_err(Error::internal)?;
    if let Some(o) = body.as_object_mut() {
        o.insert("key".into(), Value::String(secret));
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// API keys, without their secrets (any admin role).
#[utoipa::path(get, path = "/v1/admin/api-keys", tag = "admin", operation_id = "admin_list_api_keys",
    security(("bearer" = [])),
    responses((status = 200, description = "API keys", body = crate::openapi::ApiKeyList)))]
pub async fn list_keys(State(state): State<AppState>, Auth(p): Auth) -> Result<Response, Error> {
    p.require_admin(false)?;
    let items = crate::apikeys::list(&state.db).await?;
    Ok(Json(json!({"items": items, "next_cursor": null})).into_response())
}

/// Revoke an API key (owner and admin roles).
#[utoipa::path(delete, path = "/v1/admin/api-keys/{id}", tag = "admin", operation_id = "admin_revoke_api_key",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "API key id")),
    responses((status = 204, description = "Revoked")))]
pub async fn revoke_key(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    p.require_admin(true)?;
    crate::apikeys::revoke(&state.db, &origin, &p, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The audit log, newest first (any admin role).
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin", operation_id = "admin_query_audit",
    security(("bearer" = [])),
    params(
        ("actor" = Option<String>, Query, description = "Actor id (or email)"),
        ("action" = Option<String>, Query, description = "Action name, e.g. `admin.user.disable`"),
        ("target" = Option<String>, Query, description = "`<type>:<id>`, e.g. `user:0190…`"),
        ("since" = Option<String>, Query, description = "RFC 3339: entries at or after"),
        ("until" = Option<String>, Query, description = "RFC 3339: entries before"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Page size (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses((status = 200, description = "One page of entries", body = crate::openapi::AuditPage)))]
pub async fn query_audit(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<audit::Query>,
) -> Result<Response, Error> {
    p.require_admin(false)?;
    let (items, next) = audit::query(&state.db, q).await?;
    Ok(Json(json!({"items": items, "next_cursor": next})).into_response())
}
