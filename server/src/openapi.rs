//! The OpenAPI 3.1 contract, generated from the code.
//!
//! - [`ApiDoc`] collects every route's `#[utoipa::path]` (on the handlers in `http::*`; the
//!   few handlers that live in `http/mod.rs` are described by stubs here). **A new route joins
//!   the contract by getting a `#[utoipa::path]` and a line in `paths(...)` below, plus a line in
//!   [`ERRORS`]** naming the error codes it can answer with; `server/tests/openapi.rs` fails
//!   when a route the router serves is missing here, when an operation has no [`ERRORS`] entry,
//!   and when `sdk-spec/openapi.json` differs from [`generic_json`].
//! - [`generic`] is the checked-in document (`ferrobase openapi > sdk-spec/openapi.json`).
//! - [`for_collections`] adds one deployment's collections: concrete paths
//!   (`/v1/collections/posts/records`) and typed schemas (`PostsRecord`, `PostsPartial` for
//!   `?fields=`, `PostsCreate`, `PostsUpdate`, `PostsList`), served at `GET /v1/openapi.json`
//!   and printed by `ferrobase openapi --project DIR`. TypeScript clients generated from it
//!   are type-checked in CI (`tests/e2e/ts_client.sh`).
//!
//! Problem responses (RFC 9457, `application/problem+json`) are added per operation from
//! [`ERRORS`], grouped by status, each listing its stable `code`s in the description and in
//! `x-error-codes`. `code` itself is a plain string in the schema (not an enum) so a client
//! generated today keeps working when a later release adds a code.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use ferrobase_schema::{Collection, FieldType};
use serde_json::{Map, Value, json};
use utoipa::{OpenApi, ToSchema};

use crate::error::Code;
use crate::http::AppState;
use crate::records::validate::{DEFAULT_TEXT_MAX, MAX_LIST_ITEMS};

/// The generic contract: every route, with `{collection}`/`{id}` path parameters.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ferrobase API",
        description = "The HTTP API of a Ferrobase server (a self-hostable backend for mobile apps).\n\n\
            All routes are under `/v1`. JSON in and out. Errors are RFC 9457 problem details \
            (`application/problem+json`) with a stable machine-readable `code`. Every response \
            carries `X-Request-Id`. Authenticate with `Authorization: Bearer <token>`; no token \
            means anonymous. An invalid or expired token is always 401, never anonymous.\n\n\
            This generic document uses `{collection}` path parameters and untyped records. \
            A running server's `GET /v1/openapi.json` (or `ferrobase openapi --project DIR`) adds \
            concrete paths and typed schemas for each collection (`PostsRecord`, `PostsCreate`, \
            `PostsUpdate`). Versioning rules: docs/api-versioning.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        health,
        ready,
        openapi_json,
        crate::http::admin::login,
        crate::http::admin::get_schema,
        crate::http::admin::plan_schema,
        crate::http::admin::apply_schema,
        crate::http::admin::schema_history,
        crate::http::admin_ops::search_users,
        crate::http::admin_ops::view_user,
        crate::http::admin_ops::delete_user,
        crate::http::admin_ops::user_action,
        crate::http::admin_ops::export_user,
        crate::http::admin_ops::list_admins,
        crate::http::admin_ops::create_admin,
        crate::http::admin_ops::delete_admin,
        crate::http::admin_ops::list_keys,
        crate::http::admin_ops::create_key,
        crate::http::admin_ops::revoke_key,
        crate::http::admin_ops::query_audit,
        crate::http::auth::signup,
        crate::http::auth::login,
        crate::http::auth::refresh,
        crate::http::auth::logout,
        crate::http::auth::anonymous,
        crate::http::auth::me,
        crate::http::auth::update_me,
        crate::http::auth::delete_me,
        crate::http::auth::list_sessions,
        crate::http::auth::revoke_other_sessions,
        crate::http::auth::revoke_session,
        crate::http::auth::verify_request,
        crate::http::auth::verify_confirm,
        crate::http::auth::reset_request,
        crate::http::auth::reset_confirm,
        crate::http::records::list,
        crate::http::records::create,
        crate::http::records::view,
        crate::http::records::update,
        crate::http::records::delete,
        crate::http::records::batch,
        crate::http::records::changes,
        crate::http::realtime::subscribe,
        crate::http::files::put_file,
        crate::http::files::download,
        crate::http::files::file_token,
        crate::http::uploads::create,
        crate::http::uploads::head,
        crate::http::uploads::patch,
        crate::http::uploads::delete,
        crate::http::push::register_device,
        crate::http::push::list_devices,
        crate::http::push::update_device,
        crate::http::push::unregister_device,
        crate::http::push::get_preferences,
        crate::http::push::put_preferences,
        crate::http::push::send_push,
        crate::http::push::push_status,
        crate::http::push::list_push_jobs,
        crate::http::push::user_devices,
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth),
    tags(
        (name = "meta", description = "Health, readiness and this document."),
        (name = "admin", description = "Operator sign-in, schema management, user support, admin accounts, API keys and the audit log (admin token or API key)."),
        (name = "auth", description = "App users: sign-up, sign-in, token refresh, profile, sessions, email verification and password reset."),
        (name = "records", description = "Records of any collection, subject to its rules."),
        (name = "sync", description = "Delta sync for offline-first clients: what changed since a cursor, with tombstones (docs/offline-sync.md)."),
        (name = "realtime", description = "Server-Sent Events of record changes, resumable with Last-Event-ID."),
        (name = "files", description = "Files of `file` fields: upload (multipart record writes or a raw PUT), download under the record's view rule, file tokens."),
        (name = "push", description = "Push notifications: the caller's devices and notification preferences, sending (admin or API key `push:send`) and per-device outcomes (docs/push.md)."),
    ),
)]
pub struct ApiDoc;

/// Which problem codes each operation (by `operationId`) can answer with, besides `internal`
/// (500, every operation). Every operation must be listed; `server/tests/openapi.rs` checks.
pub const ERRORS: &[(&str, &[Code])] = {
    use Code::*;
    &[
        ("health", &[]),
        ("ready", &[Unavailable]),
        ("openapi_json", &[Unavailable]),
        (
            "admin_login",
            &[
                BadRequest,
                InvalidJson,
                ValidationFailed,
                InvalidCredentials,
                PayloadTooLarge,
                UnsupportedMediaType,
                RateLimited,
                Unavailable,
            ],
        ),
        (
            "admin_get_schema",
            &[Unauthenticated, TokenExpired, Forbidden, Unavailable],
        ),
        (
            "admin_plan_schema",
            &[
                BadRequest,
                InvalidJson,
                ValidationFailed,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                PayloadTooLarge,
                UnsupportedMediaType,
                Unavailable,
            ],
        ),
        (
            "admin_apply_schema",
            &[
                BadRequest,
                InvalidJson,
                ValidationFailed,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                Conflict,
                DestructiveChange,
                PayloadTooLarge,
                UnsupportedMediaType,
                Unavailable,
            ],
        ),
        (
            "admin_schema_history",
            &[Unauthenticated, TokenExpired, Forbidden, Unavailable],
        ),
        (
            "admin_search_users",
            &[
                BadRequest,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                Unavailable,
            ],
        ),
        (
            "admin_view_user",
            &[
                BadRequest,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                NotFound,
                Unavailable,
            ],
        ),
        (
            "admin_delete_user",
            &[
                BadRequest,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                NotFound,
                Unavailable,
            ],
        ),
        (
            "admin_user_action",
            &[
                BadRequest,
                ValidationFailed,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                NotFound,
                Unavailable,
            ],
        ),
        (
            "admin_export_user",
            &[
                BadRequest,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                NotFound,
                Unavailable,
            ],
        ),
        (
            "admin_list_admins",
            &[Unauthenticated, TokenExpired, Forbidden, Unavailable],
        ),
        (
            "admin_create_admin",
            &[
                BadRequest,
                InvalidJson,
                ValidationFailed,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                Conflict,
                PayloadTooLarge,
                UnsupportedMediaType,
                Unavailable,
            ],
        ),
        (
            "admin_delete_admin",
            &[
                BadRequest,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                NotFound,
                Conflict,
                Unavailable,
            ],
        ),
        (
            "admin_list_api_keys",
            &[Unauthenticated, TokenExpired, Forbidden, Unavailable],
        ),
        (
            "admin_create_api_key",
            &[
                BadRequest,
                InvalidJson,
                ValidationFailed,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                PayloadTooLarge,
                UnsupportedMediaType,
                Unavailable,
            ],
        ),
        (
            "admin_revoke_api_key",
            &[
                BadRequest,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                NotFound,
                Unavailable,
            ],
        ),
        (
            "admin_query_audit",
            &[
                BadRequest,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                Unavailable,
            ],
        ),
        (
            "auth_signup",
            &[
                BadRequest,
                InvalidJson,
                ValidationFailed,
                Conflict,
                PayloadTooLarge,
                UnsupportedMediaType,
                RateLimited,
                Unavailable,
            ],
        ),
        (
            "auth_login",
            &[
                BadRequest,
                InvalidJson,
                ValidationFailed,
                InvalidCredentials,
                AccountDisabled,
                PayloadTooLarge,
                UnsupportedMediaType,
                RateLimited,
                Unavailable,
            ],
        ),
        (
            "auth_refresh",
            &[
                BadRequest,
                InvalidJson,
                ValidationFailed,
                Unauthenticated,
                AccountDisabled,
                PayloadTooLarge,
                UnsupportedMediaType,
                Unavailable,
            ],
        ),
        ("auth_logout", &[Unauthenticated, TokenExpired, Unavailable]),
        ("auth_anonymous", &[RateLimited, Unavailable]),
        ("auth_me", &[Unauthenticated, TokenExpired, Unavailable]),
        (
            "auth_update_me",
            &[
                BadRequest,
                InvalidJson,
                ValidationFailed,
                Unauthenticated,
                TokenExpired,
                InvalidCredentials,
                Conflict,
                PayloadTooLarge,
                UnsupportedMediaType,
                Unavailable,
            ],
        ),
        (
            "auth_delete_me",
            &[Unauthenticated, TokenExpired, NotFound, Unavailable],
        ),
        (
            "register_device",
            &[
                InvalidJson,
                ValidationFailed,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                PayloadTooLarge,
                UnsupportedMediaType,
                Unavailable,
            ],
        ),
        (
            "list_devices",
            &[Unauthenticated, TokenExpired, Forbidden, Unavailable],
        ),
        (
            "update_device",
            &[
                InvalidJson,
                ValidationFailed,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                NotFound,
                PayloadTooLarge,
                UnsupportedMediaType,
                Unavailable,
            ],
        ),
        (
            "unregister_device",
            &[
                Unauthenticated,
                TokenExpired,
                Forbidden,
                NotFound,
                Unavailable,
            ],
        ),
        (
            "get_notification_preferences",
            &[Unauthenticated, TokenExpired, Forbidden, Unavailable],
        ),
        (
            "put_notification_preferences",
            &[
                InvalidJson,
                ValidationFailed,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                PayloadTooLarge,
                UnsupportedMediaType,
                Unavailable,
            ],
        ),
        (
            "send_push",
            &[
                InvalidJson,
                ValidationFailed,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                PayloadTooLarge,
                UnsupportedMediaType,
                Unavailable,
            ],
        ),
        (
            "push_status",
            &[
                BadRequest,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                NotFound,
                Unavailable,
            ],
        ),
        (
            "admin_list_push_jobs",
            &[
                BadRequest,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                Unavailable,
            ],
        ),
        (
            "admin_user_devices",
            &[Unauthenticated, TokenExpired, Forbidden, Unavailable],
        ),
        (
            "auth_list_sessions",
            &[Unauthenticated, TokenExpired, Unavailable],
        ),
        (
            "auth_revoke_other_sessions",
            &[Unauthenticated, TokenExpired, Unavailable],
        ),
        (
            "auth_revoke_session",
            &[
                BadRequest,
                Unauthenticated,
                TokenExpired,
                NotFound,
                Unavailable,
            ],
        ),
        (
            "auth_verify_email_request",
            &[
                ValidationFailed,
                Unauthenticated,
                TokenExpired,
                RateLimited,
                Unavailable,
            ],
        ),
        (
            "auth_verify_email_confirm",
            &[
                BadRequest,
                InvalidJson,
                ValidationFailed,
                InvalidToken,
                PayloadTooLarge,
                UnsupportedMediaType,
                Unavailable,
            ],
        ),
        (
            "auth_password_reset_request",
            &[
                BadRequest,
                InvalidJson,
                ValidationFailed,
                PayloadTooLarge,
                UnsupportedMediaType,
                RateLimited,
                Unavailable,
            ],
        ),
        (
            "auth_password_reset_confirm",
            &[
                BadRequest,
                InvalidJson,
                ValidationFailed,
                InvalidToken,
                PayloadTooLarge,
                UnsupportedMediaType,
                Unavailable,
            ],
        ),
        (
            "put_file",
            &[
                BadRequest,
                ValidationFailed,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                NotFound,
                VersionMismatch,
                PayloadTooLarge,
                UnsupportedMediaType,
                Unavailable,
            ],
        ),
        (
            "download_file",
            &[
                BadRequest,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                NotFound,
                Unavailable,
            ],
        ),
        (
            "create_upload",
            &[
                BadRequest,
                ValidationFailed,
                Unauthenticated,
                TokenExpired,
                PayloadTooLarge,
                Unavailable,
            ],
        ),
        (
            "upload_status",
            &[Unauthenticated, TokenExpired, NotFound, Unavailable],
        ),
        (
            "upload_chunk",
            &[
                BadRequest,
                Unauthenticated,
                TokenExpired,
                NotFound,
                Conflict,
                PayloadTooLarge,
                UnsupportedMediaType,
                Unavailable,
            ],
        ),
        (
            "delete_upload",
            &[Unauthenticated, TokenExpired, NotFound, Unavailable],
        ),
        (
            "file_token",
            &[BadRequest, Unauthenticated, TokenExpired, Unavailable],
        ),
        (
            "sync_changes",
            &[
                BadRequest,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                NotFound,
                Unavailable,
            ],
        ),
        (
            "realtime_subscribe",
            &[
                BadRequest,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                NotFound,
                RateLimited,
                Unavailable,
            ],
        ),
        (
            "list_records",
            &[
                BadRequest,
                InvalidFilter,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                NotFound,
                Unavailable,
            ],
        ),
        (
            "view_record",
            &[
                BadRequest,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                NotFound,
                Unavailable,
            ],
        ),
        (
            "create_record",
            &[
                BadRequest,
                InvalidJson,
                ValidationFailed,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                NotFound,
                Conflict,
                PayloadTooLarge,
                UnsupportedMediaType,
                Unavailable,
            ],
        ),
        (
            "update_record",
            &[
                BadRequest,
                InvalidJson,
                ValidationFailed,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                NotFound,
                Conflict,
                VersionMismatch,
                PayloadTooLarge,
                UnsupportedMediaType,
                Unavailable,
            ],
        ),
        (
            "delete_record",
            &[
                BadRequest,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                NotFound,
                Conflict,
                VersionMismatch,
                Unavailable,
            ],
        ),
        (
            "batch",
            &[
                BadRequest,
                InvalidJson,
                ValidationFailed,
                Unauthenticated,
                TokenExpired,
                Forbidden,
                NotFound,
                Conflict,
                VersionMismatch,
                PayloadTooLarge,
                UnsupportedMediaType,
                Unavailable,
            ],
        ),
    ]
};

/// Every code with its status and meaning, for the `Problem` description. Kept by code string
/// (not by `Code` variant) so this file compiles whatever `error.rs` holds;
/// `server/tests/openapi.rs` fails when this table and `Code::parts` disagree.
pub const CODE_TABLE: &[(&str, u16, &str)] = &[
    (
        "bad_request",
        400,
        "a query parameter or header is malformed (`parameter` names it)",
    ),
    (
        "invalid_json",
        400,
        "the body is not JSON, not an object, or empty (`line`/`column`)",
    ),
    (
        "invalid_filter",
        400,
        "`filter` does not parse or type-check (`position`)",
    ),
    (
        "invalid_token",
        400,
        "an unknown or spent reset/verification token",
    ),
    (
        "validation_failed",
        422,
        "the body is well-formed JSON but invalid (`errors`: field → message)",
    ),
    (
        "unauthenticated",
        401,
        "no valid credentials, or an invalid token",
    ),
    (
        "token_expired",
        401,
        "the token has expired: refresh or sign in again",
    ),
    ("invalid_credentials", 401, "wrong email or password"),
    ("forbidden", 403, "authenticated, but not allowed"),
    ("account_disabled", 403, "the account is disabled"),
    (
        "not_found",
        404,
        "no such route, collection or record (or the view rule hides it)",
    ),
    (
        "method_not_allowed",
        405,
        "the route exists but not with this method (`Allow` lists methods)",
    ),
    (
        "conflict",
        409,
        "a unique value or id already exists, or the database refused a change",
    ),
    (
        "idempotency_in_progress",
        409,
        "the first request with this `Idempotency-Key` is still running; retry after `Retry-After` seconds",
    ),
    (
        "idempotency_key_reused",
        422,
        "this `Idempotency-Key` was used for a different request (method, path, `If-Match` or body)",
    ),
    (
        "destructive_change",
        409,
        "the schema change loses data; repeat with `allow_destructive`",
    ),
    (
        "version_mismatch",
        412,
        "`If-Match` is stale (`current` holds the current record)",
    ),
    (
        "payload_too_large",
        413,
        "the body is over the server's limit",
    ),
    (
        "unsupported_media_type",
        415,
        "send `Content-Type: application/json`",
    ),
    ("rate_limited", 429, "slow down (`Retry-After` seconds)"),
    (
        "internal",
        500,
        "a bug in the server; the cause is logged under `request_id`",
    ),
    (
        "unavailable",
        503,
        "the database is unreachable or busy; retry shortly",
    ),
];

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An admin token (`POST /v1/admin/auth/login`), a user access token or an API key.",
                    ))
                    .build(),
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Shapes of bodies the handlers build with `json!` (documentation types only).

/// An RFC 9457 problem. The optional members come with the codes named on each; a later
/// release may add members (the schema stays open).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Problem {
    /// `about:blank` or a documentation URL.
    #[schema(example = "about:blank")]
    r#type: String,
    /// The HTTP status, repeated.
    #[schema(example = 422)]
    status: u16,
    /// The stable, machine-readable error code; handle errors by this.
    #[schema(example = "validation_failed")]
    code: String,
    #[schema(example = "Validation failed")]
    title: String,
    /// Human-readable explanation (English; do not parse).
    detail: String,
    /// Per-field messages (`validation_failed`, `conflict`).
    errors: Option<BTreeMap<String, String>>,
    /// Same as the `X-Request-Id` response header.
    request_id: Option<String>,
    /// `bad_request`: the query parameter or header that is malformed.
    #[schema(required = false, example = "limit")]
    parameter: String,
    /// `invalid_filter`: where in `filter` the error is (a character offset from 0).
    #[schema(required = false)]
    position: u64,
    /// `invalid_json`: where in the body the error is (from 1).
    #[schema(required = false)]
    line: u64,
    #[schema(required = false)]
    column: u64,
    /// `version_mismatch`: the record as it is now (send its `version` as `If-Match` to retry).
    #[schema(required = false)]
    current: Record,
    /// `POST /v1/batch`: the index (from 0) of the operation that failed.
    #[schema(required = false)]
    operation: u64,
    /// `destructive_change`: the steps of the plan that lose data.
    #[schema(required = false)]
    changes: Vec<SchemaChange>,
}

/// Liveness.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Health {
    #[schema(example = "ok")]
    status: String,
    /// The server's version.
    version: String,
}

/// Readiness.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Ready {
    #[schema(example = "ready")]
    status: String,
}

/// An admin role, most powerful first.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum AdminRole {
    Owner,
    Admin,
    Support,
    Viewer,
}

/// An operator account.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AdminAccount {
    id: String,
    email: String,
    role: AdminRole,
    /// RFC 3339.
    created_at: String,
}

/// A signed-in admin.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AdminLoginResponse {
    /// Send as `Authorization: Bearer <token>`.
    token: String,
    /// Seconds until the token expires.
    expires_in: u64,
    admin: AdminAccount,
}

/// A field's type (the `type = "…"` of a collection file).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum FieldTypeName {
    Text,
    Number,
    Integer,
    Bool,
    Date,
    Email,
    Url,
    Select,
    Json,
    Relation,
    File,
    Geo,
}

/// One field of a collection, exactly as in `collections/<name>.toml` (see docs/schema.md).
/// Options belong to specific types: text `min`/`max`/`pattern`; number and integer
/// `min`/`max`; select `values`/`multiple`; relation `collection`/`multiple`; file
/// `multiple`/`max_files`/`max_size`/`mime`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FieldDef {
    r#type: FieldTypeName,
    #[schema(required = false)]
    required: bool,
    /// Applied when a create omits the field.
    #[schema(required = false)]
    default: Value,
    /// The field's previous name (makes `plan` rename instead of drop).
    #[schema(required = false)]
    renamed_from: String,
    #[schema(required = false)]
    min: f64,
    #[schema(required = false)]
    max: f64,
    #[schema(required = false)]
    pattern: String,
    #[schema(required = false)]
    values: Vec<String>,
    #[schema(required = false)]
    multiple: bool,
    /// Target collection of a relation.
    #[schema(required = false)]
    collection: String,
    #[schema(required = false)]
    max_files: u32,
    /// Bytes, or a size string such as `"5MB"`.
    #[schema(required = false)]
    max_size: Value,
    #[schema(required = false)]
    mime: Vec<String>,
}

/// Access rules in the expression language; an absent rule locks the operation to admins.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RulesDef {
    #[schema(required = false)]
    list: String,
    #[schema(required = false)]
    view: String,
    #[schema(required = false)]
    create: String,
    #[schema(required = false)]
    update: String,
    #[schema(required = false)]
    delete: String,
}

/// A declared index.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct IndexDef {
    fields: Vec<String>,
    #[schema(required = false)]
    unique: bool,
}

/// What an update with a stale `If-Match` does.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ConflictPolicy {
    Reject,
    LastWriteWins,
}

/// A collection as code: the JSON form of `collections/<name>.toml`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CollectionDef {
    #[schema(example = "posts")]
    name: String,
    #[schema(required = false)]
    conflict: ConflictPolicy,
    fields: BTreeMap<String, FieldDef>,
    #[schema(required = false)]
    rules: RulesDef,
    #[schema(required = false)]
    indexes: Vec<IndexDef>,
    /// Hook name → `file.rhai#function`.
    #[schema(required = false)]
    triggers: BTreeMap<String, String>,
}

/// The applied schema.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SchemaDocument {
    /// The applied version (0 before the first apply).
    version: i64,
    collections: Vec<CollectionDef>,
    /// `push.toml`: `{"categories": {"<name>": {"default": bool, "description"?: string}}}`.
    #[schema(value_type = Object)]
    push: (),
}

/// What a schema change does.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ChangeKind {
    CreateCollection,
    DropCollection,
    AddField,
    RemoveField,
    RenameField,
    ChangeFieldType,
    ChangeField,
    ChangeRule,
    AddIndex,
    DropIndex,
    ChangeConflict,
    ChangeTriggers,
}

/// One step of a plan.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SchemaChange {
    kind: ChangeKind,
    collection: String,
    #[schema(required = false)]
    field: Option<String>,
    /// Data is lost when this step runs.
    destructive: bool,
    description: String,
}

/// The changes an apply would make.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SchemaPlan {
    changes: Vec<SchemaChange>,
}

/// The outcome of an apply (`applied = false` when nothing changed).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SchemaApplyOutcome {
    version: i64,
    applied: bool,
    changes: Vec<SchemaChange>,
}

/// One applied schema version.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SchemaHistoryEntry {
    version: i64,
    /// RFC 3339.
    applied_at: String,
    /// The admin who applied it.
    applied_by: Option<String>,
    #[schema(value_type = Vec<SchemaChange>)]
    changes: Value,
}

/// Applied versions, newest first.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SchemaHistoryPage {
    items: Vec<SchemaHistoryEntry>,
    next_cursor: Option<String>,
}

/// A record of any collection: the system fields plus the collection's fields. Unset optional
/// fields are `null`. With `?fields=` only the chosen fields (and `id`) are present; with
/// `?expand=` related records are inlined under `expand`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Record {
    /// UUIDv7.
    id: uuid::Uuid,
    #[schema(required = false)]
    created_at: Option<chrono::DateTime<chrono::Utc>>,
    #[schema(required = false)]
    updated_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Starts at 1, +1 on each update; also the `ETag`.
    #[schema(required = false)]
    version: Option<i64>,
}

/// A record body for create or update: the collection's fields (on create also an optional
/// client-chosen `id`, a UUID). Unknown fields and system fields are refused (422).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RecordInput {}

/// One page of a list.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RecordList {
    items: Vec<Record>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
    /// Matching records in all pages (only with `count=true`).
    #[schema(required = false)]
    total: Option<i64>,
}

/// The outcome of one batch operation.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct BatchResult {
    /// 201 create, 200 update, 204 delete.
    status: u16,
    /// The record (null for a delete).
    body: Option<Record>,
}

/// The outcomes, in the order of the operations.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct BatchResponse {
    results: Vec<BatchResult>,
}

/// An app user: a record of the built-in `users` collection (never with secrets). Besides the
/// built-in fields below it carries any custom fields the project adds to `users`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct User {
    id: String,
    /// Lowercased; `null` for an anonymous (guest) account.
    email: Option<String>,
    email_verified: bool,
    name: Option<String>,
    avatar: Option<String>,
    is_anonymous: bool,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
    version: i64,
}

/// A user as admins see it: the user record plus `disabled` and `role`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AdminUser {
    id: String,
    email: Option<String>,
    email_verified: bool,
    name: Option<String>,
    avatar: Option<String>,
    is_anonymous: bool,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
    version: i64,
    /// A disabled user cannot sign in; their tokens answer 401.
    disabled: bool,
    role: Option<String>,
}

/// A profile update (`PATCH /v1/auth/me`): any of the `users` fields a user may write, and:
/// `email` + `password` upgrade an anonymous account; `password` with `current_password`
/// changes the password (and ends the other sessions).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UserUpdate {
    #[schema(required = false)]
    name: Option<String>,
    #[schema(required = false)]
    avatar: Option<String>,
    #[schema(required = false)]
    email: Option<String>,
    #[schema(required = false)]
    password: Option<String>,
    #[schema(required = false)]
    current_password: Option<String>,
}

/// A signed-in user's tokens. Send `access_token` as `Authorization: Bearer <token>`; refresh
/// with `refresh_token` before `expires_in` runs out (refresh tokens rotate: each is spent once).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TokenPair {
    user: User,
    access_token: String,
    /// `fbr_…`; spent by `POST /v1/auth/refresh`.
    refresh_token: String,
    #[schema(example = "Bearer")]
    token_type: String,
    /// Seconds until the access token expires.
    expires_in: u64,
}

/// A session (a signed-in device).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Session {
    id: String,
    /// The session of the token making this request.
    current: bool,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339.
    last_used_at: String,
    ip: Option<String>,
    user_agent: Option<String>,
}

/// Registered devices, oldest first.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DeviceList {
    items: Vec<crate::push::devices::Device>,
    next_cursor: Option<String>,
}

/// A push accepted for delivery.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PushAccepted {
    /// Follow it at `GET /v1/push/{job_id}`.
    job_id: String,
}

/// Push jobs, newest first.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PushJobPage {
    items: Vec<crate::push::jobs::PushJobSummary>,
    next_cursor: Option<String>,
}

/// The caller's live sessions, newest first.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SessionList {
    items: Vec<Session>,
    next_cursor: Option<String>,
}

/// How many sessions were revoked.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Revoked {
    revoked: u64,
}

/// The request was accepted; an email will be sent if it applies.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Queued {
    #[schema(example = "queued")]
    status: String,
}

/// The email address is verified.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Verified {
    verified: bool,
}

/// The password is reset; every session of the user has ended.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PasswordReset {
    reset: bool,
}

/// One page of users (admin search).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UserPage {
    items: Vec<AdminUser>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// Everything stored about one user: the user, every record that points at them by a
/// `users` relation (by collection), and their files.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UserExport {
    user: AdminUser,
    records: BTreeMap<String, Vec<Record>>,
    files: Vec<Value>,
}

/// Operator accounts.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AdminList {
    items: Vec<AdminAccount>,
    next_cursor: Option<String>,
}

/// An API key (its secret is shown only when it is created).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ApiKey {
    id: String,
    name: String,
    scopes: Vec<String>,
    /// RFC 3339.
    created_at: String,
    /// The admin who created it.
    created_by: Option<String>,
    /// RFC 3339; `null` for no expiry.
    expires_at: Option<String>,
    revoked: bool,
}

/// A new API key, with its secret: store `key` now, it is never shown again.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ApiKeyCreated {
    id: String,
    name: String,
    scopes: Vec<String>,
    created_at: String,
    created_by: Option<String>,
    expires_at: Option<String>,
    revoked: bool,
    /// `fbk_…`: send as `Authorization: Bearer <key>`.
    key: String,
}

/// API keys.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ApiKeyList {
    items: Vec<ApiKey>,
    next_cursor: Option<String>,
}

/// Who did it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditActor {
    /// `admin`, `user`, `api_key` or `system`.
    #[schema(example = "admin")]
    r#type: String,
    id: Option<String>,
    #[schema(required = false)]
    email: Option<String>,
}

/// What it was done to.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditTarget {
    #[schema(example = "user")]
    r#type: String,
    id: String,
}

/// One entry of the audit log (hash-chained: `prev_hash` is the previous entry's `hash`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditEntry {
    id: String,
    /// RFC 3339.
    at: String,
    actor: AuditActor,
    /// A dotted name: `auth.login_failed`, `admin.user.disable`, …
    #[schema(example = "admin.user.disable")]
    action: String,
    target: Option<AuditTarget>,
    ip: Option<String>,
    user_agent: Option<String>,
    details: Value,
    hash: String,
    prev_hash: String,
}

/// One page of the audit log, newest first.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditPage {
    items: Vec<AuditEntry>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Routes whose handlers live in `http/mod.rs` (documented here) and this document's own route.

/// Liveness: the process answers.
#[utoipa::path(get, path = "/v1/health", tag = "meta", operation_id = "health",
    responses((status = 200, description = "Alive", body = Health)))]
#[allow(dead_code)]
fn health() {}

/// Readiness: the database is reachable.
#[utoipa::path(get, path = "/v1/ready", tag = "meta", operation_id = "ready",
    responses((status = 200, description = "Ready to serve", body = Ready)))]
#[allow(dead_code)]
fn ready() {}

/// This document, including this deployment's collections as typed schemas and concrete paths.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta", operation_id = "openapi_json",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object,
        content_type = "application/json")))]
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    let catalog = state.catalog.current();
    Json(for_collections(&catalog.collections)).into_response()
}

// ---------------------------------------------------------------------------------------------
// Assembly.

/// The generic document as JSON, with problem responses added.
pub fn generic() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    // Open shapes: a problem may carry extra members; records carry the collection's fields.
    for name in [
        "Problem",
        "Record",
        "RecordInput",
        "User",
        "AdminUser",
        "UserUpdate",
    ] {
        if let Some(Value::Object(s)) = doc.pointer_mut(&format!("/components/schemas/{name}")) {
            s.insert("additionalProperties".into(), Value::Bool(true));
        }
    }
    // Free-form objects: `{"type": "object"}` alone reads as "no properties" to generators
    // (TypeScript: `Record<string, never>`), so say that any member is allowed.
    for pointer in [
        "/components/schemas/BatchOperation/properties/body",
        "/paths/~1v1~1openapi.json/get/responses/200/content/application~1json/schema",
    ] {
        if let Some(Value::Object(s)) = doc.pointer_mut(pointer) {
            s.insert("additionalProperties".into(), Value::Bool(true));
        }
    }
    // Paths start with `/v1`, so the server is the origin the document was fetched from.
    if let Some(obj) = doc.as_object_mut() {
        obj.insert(
            "servers".into(),
            json!([{"url": "/", "description": "The origin this document is served from."}]),
        );
    }
    add_problems(&mut doc);
    doc
}

/// The generic document, pretty-printed with a final newline: the content of
/// `sdk-spec/openapi.json`.
pub fn generic_json() -> String {
    let mut s = serde_json::to_string_pretty(&generic()).unwrap_or_default();
    s.push('\n');
    s
}

fn problem_ref() -> Value {
    json!({"$ref": "#/components/schemas/Problem"})
}

fn code_list(codes: &[Code]) -> String {
    codes
        .iter()
        .map(|c| format!("`{}`", c.parts().1))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Adds one problem response per status from [`ERRORS`] (plus `internal`) to each operation.
fn add_problems(doc: &mut Value) {
    // The table of all codes goes into the Problem schema's description.
    let table: Vec<String> = CODE_TABLE
        .iter()
        .map(|(code, status, meaning)| format!("- `{code}` ({status}): {meaning}"))
        .collect();
    if let Some(problem) = doc.pointer_mut("/components/schemas/Problem")
        && let Some(obj) = problem.as_object_mut()
    {
        let base = obj
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        obj.insert(
            "description".into(),
            Value::String(format!("{base}\n\nCodes:\n{}", table.join("\n"))),
        );
    }
    let errors: BTreeMap<&str, &[Code]> = ERRORS.iter().copied().collect();
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            let id = op
                .get("operationId")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let mut codes: Vec<Code> = errors.get(id.as_str()).copied().unwrap_or(&[]).to_vec();
            if takes_idempotency_key(method, path) {
                add_idempotency_key(op);
                for c in [
                    Code::BadRequest,
                    Code::IdempotencyInProgress,
                    Code::IdempotencyKeyReused,
                ] {
                    if !codes.contains(&c) {
                        codes.push(c);
                    }
                }
            }
            codes.push(Code::Internal);
            let responses = op
                .entry("responses")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(responses) = responses.as_object_mut() {
                add_problem_responses(responses, &codes);
            }
        }
    }
}

/// Whether an operation accepts `Idempotency-Key` (see [`crate::idempotency`]): every
/// mutating route under `/v1` but sign-in, refresh and one-time codes.
fn takes_idempotency_key(method: &str, path: &str) -> bool {
    matches!(method, "post" | "put" | "patch" | "delete")
        && path.starts_with("/v1/")
        && !crate::idempotency::exempt(path)
}

/// The `Idempotency-Key` request header, and `Idempotent-Replayed` on success responses.
fn add_idempotency_key(op: &mut Map<String, Value>) {
    let param = json!({
        "name": "Idempotency-Key",
        "in": "header",
        "required": false,
        "description": "Makes the request safe to retry: send a new random UUID per request and \
            the same one on each retry. A retry with the same key and the same request (method, \
            path and query, `If-Match`, and the body as a JSON value: key order and whitespace \
            do not matter) gets the first answer again, whatever its status, with \
            `Idempotent-Replayed: true`, and has no second effect. The same key with another \
            request is 422 `idempotency_key_reused`; while the first request still runs, 409 \
            `idempotency_in_progress` with `Retry-After`. Keys are per caller (user, admin, API \
            key; anonymous callers share one scope) and kept at least 24 hours. Answers a retry \
            should run again are not kept: 5xx, 401, 403, 429. 1 to 255 visible ASCII \
            characters, else 400 `bad_request`.",
        "schema": {"type": "string", "minLength": 1, "maxLength": crate::idempotency::MAX_KEY_LEN,
                   "pattern": "^[!-~]+$"},
        "example": "0190a5f3-7d7e-7c1e-9a55-6c7f3b0e2a11"
    });
    match op.get_mut("parameters").and_then(Value::as_array_mut) {
        Some(params) => params.push(param),
        None => {
            op.insert("parameters".into(), json!([param]));
        }
    }
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    for (status, response) in responses.iter_mut() {
        if !status.starts_with('2') {
            continue;
        }
        let Some(response) = response.as_object_mut() else {
            continue;
        };
        let headers = response
            .entry("headers")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(headers) = headers.as_object_mut() {
            headers.insert(
                "Idempotent-Replayed".into(),
                json!({
                    "description": "`true` when this is the stored answer to an earlier request \
                        with the same `Idempotency-Key`; absent otherwise.",
                    "schema": {"type": "string", "enum": ["true"]}
                }),
            );
        }
    }
}

fn add_problem_responses(responses: &mut Map<String, Value>, codes: &[Code]) {
    let mut by_status: BTreeMap<u16, Vec<Code>> = BTreeMap::new();
    for c in codes {
        by_status.entry(c.parts().0.as_u16()).or_default().push(*c);
    }
    for (status, codes) in by_status {
        let names: Vec<&str> = codes.iter().map(|c| c.parts().1).collect();
        responses.insert(
            status.to_string(),
            json!({
                "description": format!("Problem: {}", code_list(&codes)),
                "x-error-codes": names,
                "content": {"application/problem+json": {"schema": problem_ref()}}
            }),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Per-deployment document.

/// `posts` → `Posts`, `blog_posts` → `BlogPosts`.
pub fn pascal(name: &str) -> String {
    name.split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

/// The JSON schema of one field's non-null value.
fn field_value_schema(ty: &FieldType, required: bool) -> Value {
    let item = |ty: &FieldType| -> Value {
        match ty {
            FieldType::Select { values, .. } => json!({"type": "string", "enum": values}),
            FieldType::Relation { collection, .. } => json!({
                "type": "string",
                "format": "uuid",
                "description": format!("The id of a `{collection}` record."),
            }),
            _ => json!({"type": "string", "maxLength": 1000}),
        }
    };
    let mut s = match ty {
        FieldType::Text { min, max, pattern } => {
            let mut s = json!({"type": "string"});
            let min = min.unwrap_or(0).max(u32::from(required));
            if min > 0 {
                s["minLength"] = json!(min);
            }
            s["maxLength"] = json!(max.map(|m| m as usize).unwrap_or(DEFAULT_TEXT_MAX));
            if let Some(p) = pattern {
                s["pattern"] = json!(p);
            }
            s
        }
        FieldType::Number { min, max } => {
            let mut s = json!({"type": "number"});
            if let Some(m) = min {
                s["minimum"] = json!(m);
            }
            if let Some(m) = max {
                s["maximum"] = json!(m);
            }
            s
        }
        FieldType::Integer { min, max } => {
            let mut s = json!({"type": "integer", "format": "int64"});
            if let Some(m) = min {
                s["minimum"] = json!(m);
            }
            if let Some(m) = max {
                s["maximum"] = json!(m);
            }
            s
        }
        FieldType::Bool => json!({"type": "boolean"}),
        FieldType::Date => json!({"type": "string", "format": "date-time"}),
        // The server also accepts "" for these (an empty value), so no `format`.
        FieldType::Email => json!({
            "type": "string",
            "pattern": "^([^@\\s]+@[^@\\s]+)?$",
            "description": "An email address, or empty.",
        }),
        FieldType::Url => json!({
            "type": "string",
            "maxLength": 2048,
            "pattern": "^(https?://\\S+)?$",
            "description": "An http(s) URL, or empty.",
        }),
        FieldType::Json => json!({}),
        FieldType::Geo => json!({
            "type": "object",
            "properties": {
                "lat": {"type": "number", "minimum": -90, "maximum": 90},
                "lon": {"type": "number", "minimum": -180, "maximum": 180},
            },
            "required": ["lat", "lon"],
        }),
        FieldType::Select {
            multiple: false, ..
        }
        | FieldType::Relation {
            multiple: false, ..
        } => item(ty),
        FieldType::File {
            multiple: false, ..
        } => json!({"type": "string", "description": "A stored file name.", "maxLength": 255}),
        FieldType::Select { multiple: true, .. } | FieldType::Relation { multiple: true, .. } => {
            let mut s = json!({"type": "array", "items": item(ty), "maxItems": MAX_LIST_ITEMS});
            if required {
                s["minItems"] = json!(1);
            }
            s
        }
        FieldType::File {
            multiple: true,
            max_files,
            ..
        } => {
            let mut s = json!({
                "type": "array",
                "items": {"type": "string", "maxLength": 255},
                "description": "Stored file names.",
            });
            s["maxItems"] = json!(max_files.map(|m| m as usize).unwrap_or(MAX_LIST_ITEMS));
            if required {
                s["minItems"] = json!(1);
            }
            s
        }
    };
    if let FieldType::Relation { collection, .. } = ty
        && ty.is_multiple()
    {
        s["description"] = json!(format!("Ids of `{collection}` records."));
    }
    s
}

/// Makes a schema also accept `null`, the OpenAPI 3.1 way: `"type": ["string", "null"]`.
/// Enums become `anyOf: [{enum…}, {"type": "null"}]` instead (an enum listing `null` among its
/// values confuses generators, which then emit one model per variant).
fn nullable(mut s: Value) -> Value {
    if s.get("enum").is_some() {
        return json!({"anyOf": [s, {"type": "null"}]});
    }
    let Some(obj) = s.as_object_mut() else {
        return s;
    };
    if let Some(Value::String(t)) = obj.get("type").cloned() {
        obj.insert("type".into(), json!([t, "null"]));
    }
    // No `type` = any value, null included.
    s
}

fn collection_schemas(c: &Collection) -> Vec<(String, Value)> {
    let p = pascal(&c.name);
    let mut record_props = Map::new();
    record_props.insert(
        "id".into(),
        json!({"type": "string", "format": "uuid", "description": "UUIDv7."}),
    );
    record_props.insert(
        "created_at".into(),
        json!({"type": "string", "format": "date-time"}),
    );
    record_props.insert(
        "updated_at".into(),
        json!({"type": "string", "format": "date-time"}),
    );
    record_props.insert(
        "version".into(),
        json!({"type": "integer", "format": "int64", "minimum": 1,
               "description": "Starts at 1, +1 on each update; also the `ETag`."}),
    );
    let mut record_required: Vec<String> = ["id", "created_at", "updated_at", "version"]
        .map(String::from)
        .to_vec();
    let mut create_props = Map::new();
    create_props.insert(
        "id".into(),
        json!({"type": "string", "format": "uuid",
               "description": "Optional client-chosen id (UUIDv7 recommended), for offline-first creates."}),
    );
    let mut create_required: Vec<String> = Vec::new();
    let mut update_props = Map::new();
    for (name, field) in &c.fields {
        let value = field_value_schema(&field.ty, field.required);
        // A stored record has a value for a required field; anything else may be null.
        let stored = if field.required {
            value.clone()
        } else {
            nullable(value.clone())
        };
        record_props.insert(name.clone(), stored.clone());
        record_required.push(name.clone());
        // A partial update changes only what it sends: no defaults there. On create the
        // default is applied to an omitted field, so the field is optional; it is stated in
        // `x-default` and the description, not as `default`, which openapi-typescript reads as
        // "always present" and so would make the field required in the body.
        let mut create = stored.clone();
        if let Some(d) = &field.default
            && let Some(obj) = create.as_object_mut()
        {
            obj.insert("x-default".into(), d.clone());
            let note = format!("Default when omitted: `{d}`.");
            let description = match obj.get("description").and_then(Value::as_str) {
                Some(base) => format!("{base} {note}"),
                None => note,
            };
            obj.insert("description".into(), Value::String(description));
        }
        create_props.insert(name.clone(), create);
        if field.required && field.default.is_none() {
            create_required.push(name.clone());
        }
        update_props.insert(name.clone(), stored);
    }
    let expand = c
        .fields
        .iter()
        .filter(|(_, f)| matches!(f.ty, FieldType::Relation { .. }))
        .map(|(n, _)| n.clone())
        .collect::<Vec<_>>();
    if !expand.is_empty() {
        record_props.insert(
            "expand".into(),
            json!({
                "type": "object",
                "description": format!("With `?expand=`: the related records of {} that the caller may view.",
                    expand.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")),
                "additionalProperties": true,
            }),
        );
    }
    let partial_props = record_props.clone();
    let one = json!({"anyOf": [
        {"$ref": format!("#/components/schemas/{p}Record")},
        {"$ref": format!("#/components/schemas/{p}Partial")},
    ]});
    vec![
        (
            format!("{p}Partial"),
            json!({
                "type": "object",
                "description": format!("A record of `{}` read with `?fields=`: `id` and the chosen fields only.", c.name),
                "properties": partial_props,
                "required": ["id"],
            }),
        ),
        (
            format!("{p}Record"),
            json!({
                "type": "object",
                "description": format!("A record of `{}`.", c.name),
                "properties": record_props,
                "required": record_required,
            }),
        ),
        (
            format!("{p}Create"),
            json!({
                "type": "object",
                "description": format!("The body of a create in `{}`. Unknown fields are refused.", c.name),
                "properties": create_props,
                "required": create_required,
                "additionalProperties": false,
            }),
        ),
        (
            format!("{p}Update"),
            json!({
                "type": "object",
                "description": format!("The body of a partial update in `{}`: only the fields to change.", c.name),
                "properties": update_props,
                "additionalProperties": false,
            }),
        ),
        (
            format!("{p}List"),
            json!({
                "type": "object",
                "description": format!("One page of `{}` records (partial ones with `?fields=`).", c.name),
                "properties": {
                    "items": {"type": "array", "items": one},
                    "next_cursor": {"type": ["string", "null"], "description": "Pass as `cursor` for the next page; `null` on the last page."},
                    "total": {"type": "integer", "format": "int64", "description": "Matching records in all pages (only with `count=true`)."},
                },
                "required": ["items", "next_cursor"],
            }),
        ),
    ]
}

/// Takes an operation of the generic document and specialises it for one collection.
fn specialise(generic_op: &Value, c: &Collection, action: &str) -> Value {
    let p = pascal(&c.name);
    let mut op = generic_op.clone();
    let Some(obj) = op.as_object_mut() else {
        return op;
    };
    obj.insert("operationId".into(), json!(format!("{action}_{}", c.name)));
    obj.insert("tags".into(), json!([c.name]));
    if let Some(Value::Array(params)) = obj.get_mut("parameters") {
        // The collection is in the path now.
        params.retain(|prm| prm.get("name").and_then(Value::as_str) != Some("collection"));
        for prm in params.iter_mut() {
            if prm.get("name").and_then(Value::as_str) == Some("fields") {
                prm["description"] = json!(format!(
                    "Comma-separated fields to return (`id` is always included): {}. The response \
                     is then a `{p}Partial`.",
                    c.fields
                        .keys()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if prm.get("name").and_then(Value::as_str) == Some("expand") {
                let rels: Vec<&String> = c
                    .fields
                    .iter()
                    .filter(|(_, f)| matches!(f.ty, FieldType::Relation { .. }))
                    .map(|(n, _)| n)
                    .collect();
                prm["description"] = json!(format!(
                    "Comma-separated relation fields to inline under `expand`{}.",
                    if rels.is_empty() {
                        " (this collection has none)".to_owned()
                    } else {
                        format!(
                            ": {}",
                            rels.iter()
                                .map(|n| format!("`{n}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                ));
            }
        }
    }
    let rec = json!({"$ref": format!("#/components/schemas/{p}Record")});
    let set_body = |obj: &mut Map<String, Value>, status: &str, schema: Value| {
        if let Some(content) = obj
            .get_mut("responses")
            .and_then(|r| r.get_mut(status))
            .and_then(|r| r.get_mut("content"))
            .and_then(|c| c.get_mut("application/json"))
        {
            content["schema"] = schema;
        }
    };
    match action {
        "list" => set_body(
            obj,
            "200",
            json!({"$ref": format!("#/components/schemas/{p}List")}),
        ),
        "view" => set_body(
            obj,
            "200",
            json!({"anyOf": [rec, {"$ref": format!("#/components/schemas/{p}Partial")}]}),
        ),
        "update" => set_body(obj, "200", rec),
        "create" => {
            set_body(obj, "201", rec);
            if let Some(created) = obj.get_mut("responses").and_then(|r| r.get_mut("201")) {
                let link = |op: &str| {
                    json!({"operationId": format!("{op}_{}", c.name),
                           "parameters": {"id": "$response.body#/id"}})
                };
                created["links"] = json!({
                    "view": link("view"),
                    "update": link("update"),
                    "delete": link("delete"),
                });
            }
        }
        _ => {}
    }
    let input = match action {
        "create" => Some(format!("{p}Create")),
        "update" => Some(format!("{p}Update")),
        _ => None,
    };
    if let Some(input) = input
        && let Some(content) = obj
            .get_mut("requestBody")
            .and_then(|b| b.get_mut("content"))
            .and_then(|c| c.get_mut("application/json"))
    {
        content["schema"] = json!({"$ref": format!("#/components/schemas/{input}")});
    }
    op
}

/// The generic document plus, for each collection, concrete paths and typed schemas.
pub fn for_collections(collections: &[Collection]) -> Value {
    let mut doc = generic();
    let list_path = "/v1/collections/{collection}/records";
    let item_path = "/v1/collections/{collection}/records/{id}";
    let generic_list = doc
        .pointer(&format!("/paths/{}", escape(list_path)))
        .cloned();
    let generic_item = doc
        .pointer(&format!("/paths/{}", escape(item_path)))
        .cloned();
    let mut new_paths = Vec::new();
    let mut new_schemas = Vec::new();
    for c in collections {
        new_schemas.extend(collection_schemas(c));
        if let Some(Value::Object(g)) = &generic_list {
            let mut item = Map::new();
            for (method, action) in [("get", "list"), ("post", "create")] {
                if let Some(op) = g.get(method) {
                    item.insert(method.into(), specialise(op, c, action));
                }
            }
            new_paths.push((format!("/v1/collections/{}/records", c.name), item));
        }
        if let Some(Value::Object(g)) = &generic_item {
            let mut item = Map::new();
            for (method, action) in [("get", "view"), ("patch", "update"), ("delete", "delete")] {
                if let Some(op) = g.get(method) {
                    item.insert(method.into(), specialise(op, c, action));
                }
            }
            if let Some(params) = g.get("parameters") {
                item.insert("parameters".into(), params.clone());
            }
            new_paths.push((format!("/v1/collections/{}/records/{{id}}", c.name), item));
        }
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in new_paths {
            paths.insert(path, Value::Object(item));
        }
    }
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (name, schema) in new_schemas {
            schemas.insert(name, schema);
        }
    }
    if let Some(tags) = doc.get_mut("tags").and_then(Value::as_array_mut) {
        for c in collections {
            tags.push(
                json!({"name": c.name, "description": format!("Records of `{}` (typed).", c.name)}),
            );
        }
    }
    doc
}

/// JSON pointer escaping of one path segment.
fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}
