//! Observing room: every request gets an id (the caller's `x-request-id` when it is sane, else a
//! new one) that its answer, its error envelope and every log line of it carry (a tracing span,
//! and the engine's task-local for provider calls a mapping forwards it on); every answer is
//! counted by route template, method, status and integration. `/metrics` renders the engine's
//! registry. It decides nothing about the request itself.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;
use unigate_engine::REQUEST_ID;
use unigate_engine::metrics::RequestLabels;
use unigate_store::AccountStatus;

use crate::AppState;

pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";

/// A caller's id is kept when it is 1–128 characters of `A-Z a-z 0-9 - _ . : /`: anything
/// else could forge log lines or headers.
fn sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/'))
}

fn new_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// The integration of the account a request names, for the metrics label.
fn integration_of(state: &AppState, query: Option<&str>) -> String {
    query
        .and_then(|query| {
            query.split('&').find_map(|pair| {
                pair.strip_prefix("integrated_account_id=")
                    .map(percent_decode)
            })
        })
        .and_then(|id| state.engine().accounts().get(&id))
        .map_or_else(|| "none".to_owned(), |account| account.integration.clone())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        index += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) async fn observe(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| sane(id))
        .map_or_else(new_id, str::to_owned);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().to_string();
    let integration = integration_of(&state, request.uri().query());
    let span = tracing::info_span!("request", request_id = %id, %method, %route);
    let id: Arc<str> = Arc::from(id);
    let mut response = REQUEST_ID
        .scope(id.clone(), next.run(request))
        .instrument(span.clone())
        .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let status = response.status().as_u16();
    state.engine().metrics().request(
        RequestLabels {
            route,
            method,
            status,
            integration,
        },
        started.elapsed(),
    );
    span.in_scope(|| {
        tracing::debug!(
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "answered"
        );
    });
    response
}

/// `GET /metrics`: the Prometheus text exposition.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let needs_reauth = state
        .engine()
        .accounts()
        .list()
        .iter()
        .filter(|account| account.status == AccountStatus::NeedsReauth)
        .count();
    let body = state.engine().metrics().render(needs_reauth);
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
