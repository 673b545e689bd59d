//! The gateway room: unigate's HTTP face and its binary.
//!
//! Owns the axum router (bearer-token auth, qs-style query parsing, the unified routes), turning
//! every [`ApiError`] into the one JSON error envelope, the config file, the built-in sandbox,
//! and the `unigate` CLI (`serve`, `check`). It holds no provider logic: that is the engine's
//! and the mapping files'.

mod admin;
pub mod config;
mod observe;
pub mod openapi;
pub mod sandbox;
mod serve;
pub mod telemetry;

pub use serve::ServeLimits;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use unigate_engine::{Engine, EngineConfig};
use unigate_mapping::Catalog;
use unigate_store::postgres::{PostgresSettings, PostgresStore};
use unigate_store::sqlite::{SqliteStore, StoreKey};
use unigate_store::{AccountStore, IntegratedAccount, MemoryStore, StoreError};
use unigate_unified::{ApiError, ErrorKind, qs};
use unigate_upstream::{Upstream, UpstreamConfig};

use crate::config::{Config, StoreSettings};

/// A JSON response with the status of an error, in the error envelope.
pub struct ErrorResponse(pub ApiError);

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), message = %self.0.message, "request failed");
        }
        let mut envelope = self.0.to_envelope();
        if let Some(id) = unigate_engine::current_request_id() {
            envelope["request_id"] = Value::String(id.to_string());
        }
        let mut response = json_response(status, &envelope);
        for (name, value) in &self.0.headers {
            if let (Ok(name), Ok(value)) = (
                axum::http::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    // serde_json's writer, not `Display`: formatting through `fmt` cost a tenth of a request.
    json_bytes_response(status, serde_json::to_vec(body).unwrap_or_default())
}

fn json_bytes_response(status: StatusCode, text: Vec<u8>) -> Response {
    json_body_response(status, Body::from(text))
}

fn json_body_response(status: StatusCode, body: Body) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// What a reload replaces as one: each request takes the set current when it starts and
    /// finishes on it.
    live: Arc<std::sync::RwLock<Live>>,
    limits: Arc<ServeLimits>,
}

/// The reloadable part of the state.
#[derive(Debug, Clone)]
struct Live {
    engine: Engine,
    /// SHA-256 of each accepted API token: comparing digests in constant time leaks neither
    /// the tokens nor their lengths.
    token_digests: Arc<Vec<[u8; 32]>>,
    /// The same for the admin API's tokens; none configured = the admin API refuses everyone.
    admin_digests: Arc<Vec<[u8; 32]>>,
}

fn digests(tokens: &[String]) -> Arc<Vec<[u8; 32]>> {
    Arc::new(
        tokens
            .iter()
            .map(|token| Sha256::digest(token.as_bytes()).into())
            .collect(),
    )
}

fn bearer(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// Constant time over every known digest, whatever matches.
fn accepted(known: &[[u8; 32]], token: Option<&str>) -> bool {
    let Some(token) = token else { return false };
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    known.iter().fold(false, |found, candidate| {
        found | bool::from(candidate.ct_eq(&digest))
    })
}

impl AppState {
    pub fn new(engine: Engine, api_tokens: &[String], admin_tokens: &[String]) -> Self {
        AppState {
            live: Arc::new(std::sync::RwLock::new(Live {
                engine,
                token_digests: digests(api_tokens),
                admin_digests: digests(admin_tokens),
            })),
            limits: Arc::new(ServeLimits::default()),
        }
    }

    fn live(&self) -> Live {
        self.live
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The engine of the current mapping set.
    pub fn engine(&self) -> Engine {
        self.live().engine
    }

    /// Reloads what a config file's edit may change while serving: the mapping set, the API and
    /// admin tokens, and the config's new accounts (existing ones keep what they hold now, a
    /// rotated refresh token among it; change them through the admin API). Everything is loaded and checked first; on any
    /// problem nothing changes and every problem is returned (`file:line: …` for mappings).
    /// Requests in flight finish on the set they started with. Other settings (listen address,
    /// store, limits) take a restart.
    pub async fn reload(&self, config: &Config) -> Result<String, String> {
        let catalog =
            Catalog::load_dir(&config.mappings_dir).map_err(|errors| errors.to_string())?;
        let current = self.live();
        let engine = current.engine.with_catalog(Arc::new(catalog));
        let mut problems: Vec<String> = config
            .integrated_accounts
            .iter()
            .flat_map(|account| engine.check_account(account))
            .collect();
        let seeded: std::collections::BTreeSet<&str> = config
            .integrated_accounts
            .iter()
            .map(|account| account.id.as_str())
            .collect();
        for account in engine.accounts().list() {
            if !seeded.contains(account.id.as_str()) {
                problems.extend(engine.check_account(&account));
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        let store = engine.accounts().clone();
        let accounts = config.integrated_accounts.clone();
        tokio::task::spawn_blocking(move || store.reseed(accounts))
            .await
            .map_err(|error| error.to_string())?
            .map_err(|error| error.to_string())?;
        let digest = engine.catalog().digest.clone();
        let integrations = engine.catalog().integrations.len();
        *self
            .live
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Live {
            engine,
            token_digests: digests(&config.api_tokens),
            admin_digests: digests(&config.admin_tokens),
        };
        Ok(format!(
            "reloaded: {integrations} integration(s), mappings {digest}"
        ))
    }
}

async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if accepted(&state.live().admin_digests, bearer(&request)) {
        next.run(request).await
    } else {
        ErrorResponse(ApiError::new(
            ErrorKind::Unauthorized,
            "Missing or invalid admin token: send `Authorization: Bearer <admin token>`.",
        ))
        .into_response()
    }
}

/// Largest URI and header block the gateway reads; larger requests are refused before routing.
const MAX_URI_BYTES: usize = 16 * 1024;
const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Largest request body (admin API JSON); unified list calls have none.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

async fn limit_request_size(request: Request, next: Next) -> Response {
    let uri = displayed_len(request.uri());
    let headers: usize = request
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    if uri > MAX_URI_BYTES {
        return ErrorResponse(ApiError::new(
            ErrorKind::Http { status: 414 },
            format!("the request URI is longer than {MAX_URI_BYTES} bytes"),
        ))
        .into_response();
    }
    if headers > MAX_HEADER_BYTES {
        return ErrorResponse(ApiError::new(
            ErrorKind::Http { status: 431 },
            format!("the request headers are larger than {MAX_HEADER_BYTES} bytes"),
        ))
        .into_response();
    }
    next.run(request).await
}

/// The length of `value` as displayed, counted without writing it anywhere.
fn displayed_len(value: &impl std::fmt::Display) -> usize {
    struct Count(usize);
    impl std::fmt::Write for Count {
        fn write_str(&mut self, text: &str) -> std::fmt::Result {
            self.0 += text.len();
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = std::fmt::write(&mut count, format_args!("{value}"));
    count.0
}

async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if accepted(&state.live().token_digests, bearer(&request)) {
        next.run(request).await
    } else {
        ErrorResponse(ApiError::unauthorized()).into_response()
    }
}

async fn list(
    State(state): State<AppState>,
    UrlPath((model, resource)): UrlPath<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = match qs::parse(raw.as_deref().unwrap_or("")) {
        Ok(params) => params,
        Err(message) => return ErrorResponse(ApiError::bad_request(message)).into_response(),
    };
    if params.get("truto_response_format").and_then(Value::as_str) == Some("stream") {
        return match state
            .engine()
            .list_stream(&model, &resource, params, STREAM_WINDOW)
            .await
        {
            Ok(lines) => ndjson_response(lines, state.limits.stream_timeout),
            Err(error) => ErrorResponse(error).into_response(),
        };
    }
    match state.engine().list(&model, &resource, params).await {
        Ok(output) => json_body_response(
            StatusCode::OK,
            Body::new(serve::ChunksBody::new(output.body_chunks())),
        ),
        Err(error) => ErrorResponse(error).into_response(),
    }
}

/// Records buffered between the provider walk and a slow stream reader.
const STREAM_WINDOW: usize = 256;

/// One record per line; the body ends when the walk does (or after its error line), or with a
/// 504 error line once the stream has run for `timeout`.
fn ndjson_response(lines: tokio::sync::mpsc::Receiver<Vec<u8>>, timeout: Duration) -> Response {
    let deadline = tokio::time::Instant::now() + timeout;
    let body = futures_util::stream::unfold(Some(lines), move |lines| async move {
        let mut lines = lines?;
        let mut line = match tokio::time::timeout_at(deadline, lines.recv()).await {
            Ok(line) => line?,
            Err(_) => {
                // Dropping the receiver stops the walk.
                let error = ApiError::new(
                    ErrorKind::Deadline,
                    format!(
                        "the stream did not finish within {} s (server.stream_timeout_s): resume from the last record with a filter, or page with next_cursor",
                        timeout.as_secs()
                    ),
                );
                let mut envelope = error.to_envelope();
                envelope["truto_stream_error"] = Value::Bool(true);
                let mut line = envelope.to_string().into_bytes();
                line.push(b'\n');
                return Some((Ok::<_, std::convert::Infallible>(line), None));
            }
        };
        line.push(b'\n');
        Some((Ok(line), Some(lines)))
    });
    let mut response = Body::from_stream(body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

async fn get_one(
    State(state): State<AppState>,
    UrlPath((model, resource, id)): UrlPath<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = match qs::parse(raw.as_deref().unwrap_or("")) {
        Ok(params) => params,
        Err(message) => return ErrorResponse(ApiError::bad_request(message)).into_response(),
    };
    match state.engine().get(&model, &resource, &id, params).await {
        Ok(record) => json_response(StatusCode::OK, &record),
        Err(error) => ErrorResponse(error).into_response(),
    }
}

async fn meta_by_account(
    State(state): State<AppState>,
    UrlPath((model, resource, method)): UrlPath<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    let answer = qs::parse(raw.as_deref().unwrap_or(""))
        .map_err(ApiError::bad_request)
        .and_then(|params| {
            state
                .engine()
                .capabilities_for_account(&model, &resource, &method, &params)
        });
    match answer {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(error) => ErrorResponse(error).into_response(),
    }
}

async fn meta_by_integration(
    State(state): State<AppState>,
    UrlPath((model, resource, integration, method)): UrlPath<(String, String, String, String)>,
) -> Response {
    match state
        .engine()
        .capabilities(&model, &resource, &integration, &method)
    {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(error) => ErrorResponse(error).into_response(),
    }
}

async fn not_found() -> Response {
    ErrorResponse(ApiError::not_found("no such route")).into_response()
}

async fn method_not_allowed() -> Response {
    ErrorResponse(ApiError::new(
        ErrorKind::MethodNotAllowed,
        "method not allowed on this route",
    ))
    .into_response()
}

/// Readiness: 200 while the account store answers, 503 while it cannot be reached (the gateway
/// still serves the accounts it has; a load balancer may prefer a replica that can also write).
async fn ready(State(state): State<AppState>) -> Response {
    if state.engine().accounts().is_reachable() {
        json_response(StatusCode::OK, &json!({"status": "ready"}))
    } else {
        ErrorResponse(ApiError::new(
            ErrorKind::Overloaded,
            "the account store is unreachable; accounts already loaded still serve",
        ))
        .into_response()
    }
}

/// Every route the gateway serves (axum patterns) with its methods. The router is built from
/// these names, and the OpenAPI test checks `/openapi.json` against this table both ways.
pub const ROUTES: &[(&str, &[&str])] = &[
    (UNIFIED_LIST, &["GET"]),
    (UNIFIED_GET, &["GET"]),
    (UNIFIED_META, &["GET"]),
    (UNIFIED_META_BY_INTEGRATION, &["GET"]),
    (admin::ACCOUNTS, &["GET", "POST"]),
    (admin::ACCOUNT, &["GET", "PATCH", "DELETE"]),
    (METRICS, &["GET"]),
    (HEALTH, &["GET"]),
    (READY, &["GET"]),
    (OPENAPI, &["GET"]),
];
const UNIFIED_LIST: &str = "/unified/{model}/{resource}";
const UNIFIED_GET: &str = "/unified/{model}/{resource}/{id}";
const UNIFIED_META: &str = "/unified/{model}/{resource}/meta/{method}";
const UNIFIED_META_BY_INTEGRATION: &str = "/unified/{model}/{resource}/{integration}/meta/{method}";
const METRICS: &str = "/metrics";
const HEALTH: &str = "/health";
const READY: &str = "/ready";
const OPENAPI: &str = "/openapi.json";

/// The router: `/unified/...` behind bearer auth, the admin API and `/metrics` behind admin
/// tokens, `/health`, `/ready` and `/openapi.json` open.
pub fn router(state: AppState) -> Router {
    let unified = Router::new()
        .route(UNIFIED_LIST, get(list).fallback(method_not_allowed))
        .route(UNIFIED_GET, get(get_one).fallback(method_not_allowed))
        .route(
            UNIFIED_META,
            get(meta_by_account).fallback(method_not_allowed),
        )
        .route(
            UNIFIED_META_BY_INTEGRATION,
            get(meta_by_integration).fallback(method_not_allowed),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let admin = admin::routes()
        .route(METRICS, get(observe::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin));
    Router::new()
        .merge(unified)
        .merge(admin)
        .route(
            HEALTH,
            get(|State(state): State<AppState>| async move {
                let digest = state.engine().catalog().digest.clone();
                json_response(StatusCode::OK, &json!({"status": "ok", "mappings": digest}))
            }),
        )
        .route(READY, get(ready))
        .route(
            OPENAPI,
            get(|State(state): State<AppState>| async move {
                json_response(StatusCode::OK, &openapi::document(state.engine().catalog()))
            }),
        )
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(limit_request_size))
        .layer(middleware::from_fn_with_state(
            serve::Bounds::new((*state.limits).clone()),
            serve::bound_request,
        ))
        .layer(middleware::from_fn(serve::envelope_errors))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .with_state(state)
}

/// The metrics alone, unauthenticated, for `server.metrics_listen` (an internal address).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route(METRICS, get(observe::metrics))
        .fallback(not_found)
        .with_state(state)
}

/// A ready-to-serve gateway.
#[derive(Debug)]
pub struct Gateway {
    pub state: AppState,
}

impl Gateway {
    /// From a config file: loads the mappings, opens the store (connecting and migrating a
    /// PostgreSQL one), and checks every account against them.
    pub async fn from_config(config: &Config) -> Result<Gateway, String> {
        let catalog =
            Catalog::load_dir(&config.mappings_dir).map_err(|errors| errors.to_string())?;
        let upstream = UpstreamConfig {
            connect_timeout: Duration::from_millis(config.upstream.connect_timeout_ms),
            timeout: Duration::from_millis(config.upstream.timeout_ms),
            max_body_bytes: config.upstream.max_body_bytes,
            user_agent: config.upstream.user_agent.clone(),
            replay_origin: None,
        };
        let engine_config = EngineConfig {
            default_limit: config.default_limit,
            max_records_per_response: config.max_records_per_response,
            max_bytes_per_response: config.max_bytes_per_response,
            token_refresh_margin: Duration::from_secs(config.token_refresh_margin_s),
            retry: unigate_engine::RetryPolicy {
                max_retries: config.upstream.max_retries,
                backoff_base: Duration::from_millis(config.upstream.retry_backoff_ms),
                max_rate_limit_wait: Duration::from_millis(config.upstream.max_rate_limit_wait_ms),
                max_pace_wait: Duration::from_millis(config.upstream.max_pace_wait_ms),
                ..unigate_engine::RetryPolicy::default()
            },
            ..EngineConfig::default()
        };
        let store: Arc<dyn AccountStore> = match &config.store {
            StoreSettings::Memory => {
                Arc::new(MemoryStore::new(config.integrated_accounts.clone())?)
            }
            StoreSettings::Sqlite { path, key } => {
                let key = StoreKey::parse(key).map_err(|error| format!("store.key: {error}"))?;
                let store = SqliteStore::open(path, key)
                    .map_err(|error| format!("{}: {error}", path.display()))?;
                Arc::new(store)
            }
            StoreSettings::Postgres {
                url,
                key,
                pool_size,
                token_leases,
                reload_s,
                tls,
            } => {
                let key = StoreKey::parse(key).map_err(|error| format!("store.key: {error}"))?;
                let settings = PostgresSettings {
                    url: url.clone(),
                    pool_size: *pool_size,
                    token_leases: *token_leases,
                    token_lease_wait: unigate_store::postgres::TOKEN_LEASE_WAIT,
                    reload_every: Duration::from_secs(*reload_s),
                    tls: tls.as_ref().map(|tls| tls.to_store()),
                };
                Arc::new(
                    PostgresStore::connect(&settings, key)
                        .await
                        .map_err(|error| format!("store: {error}"))?,
                )
            }
        };
        if !matches!(config.store, StoreSettings::Memory) {
            // Config accounts seed a persistent store; what the admin API changed since is kept.
            let seeding = store.clone();
            let accounts = config.integrated_accounts.clone();
            tokio::task::spawn_blocking(move || {
                for account in accounts {
                    match seeding.create(account) {
                        Ok(()) | Err(StoreError::Exists(_)) => {}
                        Err(error) => return Err(error.to_string()),
                    }
                }
                Ok(())
            })
            .await
            .map_err(|error| error.to_string())??;
        }
        Gateway::assemble_with_store(
            catalog,
            store,
            upstream,
            engine_config,
            config.cursor_secret.as_bytes(),
            &config.api_tokens,
            &config.admin_tokens,
        )
        .map(|gateway| gateway.with_limits(config.server.limits()))
    }

    /// The sandbox: built-in mappings, the in-process provider, token `sandbox`.
    pub async fn sandbox(users: usize) -> Result<Gateway, String> {
        let catalog =
            Catalog::from_sources(&sandbox::model_sources(), &sandbox::integration_sources())
                .map_err(|errors| errors.to_string())?;
        let provider = sandbox::start_provider(users)
            .await
            .map_err(|error| format!("cannot start the sandbox provider: {error}"))?;
        // A fresh secret per process: sandbox cursors need not survive a restart.
        let secret = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        Gateway::assemble(
            catalog,
            sandbox::accounts(provider),
            UpstreamConfig::default(),
            EngineConfig::default(),
            secret.as_bytes(),
            &[sandbox::SANDBOX_TOKEN.to_owned()],
        )
    }

    pub fn assemble(
        catalog: impl Into<Arc<Catalog>>,
        accounts: Vec<IntegratedAccount>,
        upstream: UpstreamConfig,
        engine_config: EngineConfig,
        cursor_secret: &[u8],
        api_tokens: &[String],
    ) -> Result<Gateway, String> {
        let store = Arc::new(MemoryStore::new(accounts)?);
        Gateway::assemble_with_store(
            catalog,
            store,
            upstream,
            engine_config,
            cursor_secret,
            api_tokens,
            &[],
        )
    }

    pub fn assemble_with_store(
        catalog: impl Into<Arc<Catalog>>,
        store: Arc<dyn AccountStore>,
        upstream: UpstreamConfig,
        engine_config: EngineConfig,
        cursor_secret: &[u8],
        api_tokens: &[String],
        admin_tokens: &[String],
    ) -> Result<Gateway, String> {
        let upstream = Upstream::new(upstream).map_err(|error| error.to_string())?;
        let engine = Engine::new(
            catalog.into(),
            store,
            upstream,
            cursor_secret,
            engine_config,
        );
        let problems = engine.check_accounts();
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        Ok(Gateway {
            state: AppState::new(engine, api_tokens, admin_tokens),
        })
    }

    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// The same gateway served within `limits` (timeouts, in-flight bound, drain).
    pub fn with_limits(mut self, limits: ServeLimits) -> Self {
        self.state.limits = Arc::new(limits);
        self
    }

    /// Serves on `listener` until `shutdown` resolves, then drains within
    /// [`ServeLimits::drain_timeout`].
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let limits = self.state.limits.clone();
        serve::serve(listener, self.router(), &limits, shutdown).await
    }
}

/// `unigate check DIR`: every problem of every file, or a one-line summary followed by a note
/// for every response mapping that runs on the engine instead of the fast path, and for every
/// list on the fast path whose pages are still parsed whole (and why).
pub fn check(dir: &Path) -> Result<String, String> {
    let catalog = Catalog::load_dir(dir).map_err(|errors| errors.to_string())?;
    let mut report = format!(
        "{}: {} integration(s) and {} model(s) load",
        dir.display(),
        catalog.integrations.len(),
        catalog.models.len()
    );
    // Not an error: these mappings are right, only slower (the engine maps every record).
    for integration in catalog.integrations.values() {
        for (key, unified) in &integration.unified {
            // Nor this, where `records` keeps every record: said so that a filter is not missed.
            if key.method == unigate_mapping::Method::List
                && let Some(resource) = integration.resources.get(&unified.resource)
            {
                let parts: Vec<(Option<usize>, Option<&str>)> = match resource.passes.len() {
                    0 => vec![(None, None)],
                    _ => (resource.passes.iter().enumerate())
                        .map(|(index, pass)| (Some(index), pass.name.as_deref()))
                        .collect(),
                };
                for (pass, name) in parts {
                    if resource.counts_kept_records(pass) {
                        let part = name
                            .map(|name| format!(" (pass `{name}`)"))
                            .unwrap_or_default();
                        report.push_str(&format!(
                            "\nnote: {}: {}/{}.{}{part} counts the records its `records` expression keeps to walk its pages: where that expression filters, `pagination.received` says what the provider sent",
                            integration.id, key.model, key.resource, key.method
                        ));
                    }
                }
                // The lists walked whole for it: walked follow-ups and the passes' catalogs.
                let walked = (unified.follow_ups.iter())
                    .filter(|follow_up| follow_up.walk)
                    .chain(
                        (resource.passes.iter())
                            .filter_map(|pass| pass.over.as_ref().map(|over| &over.catalog)),
                    );
                for follow_up in walked {
                    if integration
                        .resources
                        .get(&follow_up.resource)
                        .is_some_and(|walked| walked.counts_kept_records(None))
                    {
                        report.push_str(&format!(
                            "\nnote: {}: {}/{}.{} walks `{}` (for `{}`), counting the records its `records` expression keeps: where that expression filters, `pagination.received` says what the provider sent",
                            integration.id, key.model, key.resource, key.method, follow_up.resource, follow_up.name
                        ));
                    }
                }
            }
            if let Some(gap) = unified.response_mapping.fast_path_gap() {
                report.push_str(&format!(
                    "\nnote: {}: {}/{}.{} response_mapping runs on the JSONata engine, not the fast path: it uses {gap}",
                    integration.id, key.model, key.resource, key.method
                ));
            } else if key.method == unigate_mapping::Method::List
                && let Err(why) = &unified.page_reads
            {
                report.push_str(&format!(
                    "\nnote: {}: {}/{}.{} pages are parsed whole, not only the fields the mapping reads: {why}",
                    integration.id, key.model, key.resource, key.method
                ));
            } else if key.method == unigate_mapping::Method::List
                && let Some(resource) = integration.resources.get(&unified.resource)
            {
                for (index, pass) in resource.passes.iter().enumerate() {
                    if resource.pass_reads_whole(Some(index)) {
                        report.push_str(&format!(
                            "\nnote: {}: {}/{}.{} pages of pass `{}` are parsed whole: it has its own `records`, `pagination` or `omit`",
                            integration.id,
                            key.model,
                            key.resource,
                            key.method,
                            pass.name.as_deref().unwrap_or("(unnamed)")
                        ));
                    }
                }
            }
        }
    }
    Ok(report)
}

/// Parses `--listen`.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not an address like 127.0.0.1:8080"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::http::Request as HttpRequest;
    use tower::ServiceExt;

    async fn call(router: &Router, method: &str, uri: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = HttpRequest::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let mut body: Value = serde_json::from_slice(&bytes).unwrap();
        // An error envelope carries the answer's request id; the rest is compared exactly.
        if let Some(id) = body.as_object_mut().and_then(|o| o.remove("request_id")) {
            assert_eq!(id, request_id);
        }
        (status, body)
    }

    #[tokio::test]
    async fn routes_answer_in_the_error_envelope() {
        let gateway = Gateway::sandbox(5).await.unwrap();
        let digest = gateway.state.engine().catalog().digest.clone();
        assert_eq!(digest.len(), 64);
        let router = gateway.router();
        assert_eq!(
            call(&router, "GET", "/health", None).await,
            (200, json!({"status": "ok", "mappings": digest}))
        );
        assert_eq!(
            call(&router, "GET", "/nowhere", Some("sandbox")).await,
            (
                404,
                json!({"statusCode": 404, "error": "Not Found", "message": "no such route"})
            )
        );
        assert_eq!(
            call(
                &router,
                "POST",
                "/unified/user-directory/users?integrated_account_id=sandbox",
                Some("sandbox")
            )
            .await,
            (
                405,
                json!({"statusCode": 405, "error": "Method Not Allowed", "message": "method not allowed on this route"})
            )
        );
        assert_eq!(
            call(
                &router,
                "GET",
                "/unified/user-directory/users",
                Some("nope")
            )
            .await
            .0,
            401
        );
        assert_eq!(
            call(
                &router,
                "GET",
                "/unified/user-directory/users?a[b]=1&a=2",
                Some("sandbox")
            )
            .await,
            (
                400,
                json!({"statusCode": 400, "error": "Bad Request",
                         "message": "query parameter `a` is given both as a value and as an object"})
            )
        );
        let (status, body) = call(
            &router,
            "GET",
            "/unified/user-directory/users?integrated_account_id=sandbox",
            Some("sandbox"),
        )
        .await;
        assert_eq!(
            (
                status,
                body["result_count"].clone(),
                body["next_cursor"].clone()
            ),
            (200, json!(5), Value::Null)
        );
    }
}
