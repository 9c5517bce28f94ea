//! The HTTP layer: router assembly, shared state and middleware. Handlers are thin: parse,
//! call a domain function, map the result.

pub mod admin;
pub mod admin_ops;
pub mod auth;
pub mod extract;
pub mod files;
pub mod idempotency;
pub mod listener;
pub mod middleware;
pub mod push;
pub mod realtime;
pub mod records;
pub mod uploads;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowHeaders, AllowOrigin, Any, CorsLayer};

use crate::catalog::CatalogHandle;
use crate::config::Settings;
use crate::db::Db;
use crate::error::{Code, Error};

/// What every handler can reach: one `Arc`, so the per-request clone axum makes for every
/// `State` extractor is one atomic increment (a struct of Arcs cost one per field, and the
/// profile of view by id showed its clone and drop at ~4 % of server CPU).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The server's shared parts (reached through [`AppState`]).
pub struct Shared {
    pub push: Arc<crate::push::Push>,
    pub db: Db,
    pub catalog: CatalogHandle,
    pub settings: Arc<Settings>,
    /// The background job runner; call `jobs.notify()` after a write that enqueued a job.
    pub jobs: crate::jobs::JobRunner,
    pub keys: crate::auth::Keys,
    pub sessions: Arc<crate::auth::cache::SessionCache>,
    pub limits: crate::ratelimit::Limits,
    /// Realtime fan-out (SSE streams).
    pub realtime: Arc<crate::realtime::Hub>,
    /// File storage.
    pub files: crate::files::Files,
    /// Requests with an `Idempotency-Key` running here, and answers sent but not yet stored.
    pub idempotency: crate::idempotency::Idempotency,
}

impl Shared {
    /// The identity flows over this state.
    pub fn auth(&self) -> crate::auth::AuthCtx<'_> {
        crate::auth::AuthCtx {
            db: &self.db,
            keys: &self.keys,
            settings: &self.settings,
            catalog: self.catalog.current(),
            cache: &self.sessions,
        }
    }
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.body_limit;
    let cors = cors_layer(&state.settings.cors_origins);
    let limits = (state.limits.clone(), state.settings.trust_proxy);
    let discovery_state = state.clone();
    let v1 = Router::new()
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .route("/admin/auth/login", post(admin::login))
        .route("/admin/schema", get(admin::get_schema))
        .route("/admin/schema/plan", post(admin::plan_schema))
        .route("/admin/schema/apply", post(admin::apply_schema))
        .route("/admin/schema/history", get(admin::schema_history))
        .route(
            "/collections/{collection}/records",
            get(records::list).post(records::create),
        )
        .route(
            "/collections/{collection}/records/{id}",
            get(records::view)
                .patch(records::update)
                .delete(records::delete),
        )
        .route("/collections/{collection}/changes", get(records::changes))
        .route("/realtime", get(realtime::subscribe))
        .route(
            "/collections/{collection}/records/{id}/files/{field}",
            axum::routing::put(files::put_file),
        )
        .route("/files/token", post(files::file_token))
        .route("/uploads", post(uploads::create).options(uploads::options))
        .route(
            "/uploads/{id}",
            axum::routing::head(uploads::head)
                .patch(uploads::patch)
                .delete(uploads::delete),
        )
        .route("/files/{collection}/{id}/{filename}", get(files::download))
        .route("/batch", post(records::batch))
        .merge(auth::routes())
        .merge(admin_ops::routes())
        .merge(push::routes())
        // Every route above checks a sent token, public ones too; health and readiness
        // (below) ignore credentials.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            extract::authenticate,
        ))
        .route("/health", get(health))
        .route("/ready", get(ready));
    Router::new()
        .nest("/v1", v1)
        .fallback(middleware::not_found)
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            middleware::edge,
        ))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(cors)
        // Outside CORS: a plain `OPTIONS /v1/uploads` (no preflight headers) is tus
        // discovery, which the CORS layer would answer as a preflight.
        .layer(axum::middleware::from_fn_with_state(
            discovery_state,
            uploads::discovery,
        ))
        .layer(axum::middleware::from_fn(middleware::request_id))
}

/// Response headers a browser app may read besides the CORS-safelisted ones.
pub const EXPOSED_HEADERS: [&str; 13] = [
    "etag",
    "retry-after",
    "idempotent-replayed",
    "x-request-id",
    // tus clients in browsers read these.
    "location",
    "upload-offset",
    "upload-length",
    "upload-expires",
    "upload-metadata",
    "tus-resumable",
    "tus-version",
    "tus-extension",
    "tus-max-size",
];

fn cors_layer(origins: &[String]) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
            Method::HEAD,
        ])
        // Mirror what the preflight asks for: `*` would not cover `Authorization` (Fetch
        // standard), and the `X-Client-*` headers cannot be a wildcard either.
        .allow_headers(AllowHeaders::mirror_request())
        // Listed, not `*`: the headers a browser app must be able to read.
        .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static));
    if origins.iter().any(|o| o == "*") {
        base.allow_origin(Any)
    } else {
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        base.allow_origin(AllowOrigin::list(list))
    }
}

async fn health() -> Response {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})).into_response()
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.db.ping().await {
        Json(json!({"status": "ready"})).into_response()
    } else {
        let mut e = Error::new(Code::Unavailable, "The database is not reachable.").into_response();
        *e.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        e
    }
}
