//! The admin API: create, list, get, update and delete integrated accounts, behind its own
//! tokens (`admin_tokens`). Answers never contain context values, only their keys: credentials
//! go in, and never come back out.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use unigate_store::{AccountStatus, IntegratedAccount, StoreError};
use unigate_unified::{ApiError, ErrorKind};

use crate::{AppState, ErrorResponse, json_response};

/// An account as the admin API shows it, with the wait a provider asked of its calls, if any
/// (`rate_limited`: the seconds left and the status that asked; calls meanwhile are answered
/// 429 without being sent, once the wait is longer than the gateway sits out).
fn view_with_hold(state: &AppState, account: &IntegratedAccount) -> Value {
    let mut shown = view(account);
    if let Some((left, status)) = state.engine().rate_limit_hold(account) {
        shown["rate_limited"] = json!({
            "seconds_left": left.as_secs_f64().ceil() as u64,
            "provider_status": status,
        });
    }
    shown
}

fn view(account: &IntegratedAccount) -> Value {
    let mut keys = Vec::new();
    fn walk(prefix: &str, value: &Value, keys: &mut Vec<String>) {
        if let Value::Object(object) = value {
            for (key, inner) in object {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                if inner.is_object() {
                    walk(&path, inner, keys);
                } else {
                    keys.push(path);
                }
            }
        }
    }
    walk("", &account.context, &mut keys);
    json!({
        "id": account.id,
        "integration": account.integration,
        "base_url": account.base_url,
        "status": account.status,
        "last_error": account.last_error,
        "mapping": account.mapping,
        "context_keys": keys,
        "rate_limited": null,
    })
}

fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::Exists(_) => ApiError::new(ErrorKind::Conflict, error.to_string()),
        StoreError::NotFound(_) => ApiError::not_found(error.to_string()),
        StoreError::Refused(message) => ApiError::bad_request(message),
        StoreError::Busy(_) => {
            let mut error = ApiError::new(ErrorKind::Overloaded, error.to_string());
            error
                .headers
                .push(("retry-after".to_owned(), "5".to_owned()));
            error
        }
        StoreError::Unavailable(_) => {
            let mut error = ApiError::new(
                ErrorKind::Overloaded,
                format!(
                    "{error}; accounts already loaded still serve, admin writes wait until it is back"
                ),
            );
            error
                .headers
                .push(("retry-after".to_owned(), "5".to_owned()));
            error
        }
        other => ApiError::internal(other.to_string()),
    }
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("invalid JSON body: {error}")))
}

fn answer(result: Result<(StatusCode, Value), ApiError>) -> Response {
    match result {
        Ok((status, body)) => json_response(status, &body),
        Err(error) => ErrorResponse(error).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    #[serde(default, deserialize_with = "not_null")]
    integration: Option<String>,
    /// Merged into the context key by key; `null` removes a key.
    #[serde(default, deserialize_with = "not_null")]
    context: Option<Map<String, Value>>,
    #[serde(default, with = "double_option")]
    base_url: Option<Option<String>>,
    /// Only `active` may be set: it is how a reconnected account is cleared.
    #[serde(default, deserialize_with = "not_null")]
    status: Option<AccountStatus>,
    /// The account's mapping override (YAML/JSON text, or an object); `null` removes it.
    #[serde(default, deserialize_with = "mapping_patch")]
    mapping: Option<Option<String>>,
}

/// A key that may be absent (leave it) but not `null`: these have no "remove" meaning, and a
/// `null` taken as "leave" would hide a caller's mistake.
fn not_null<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// `mapping: null` (remove) versus absent (leave); an object is kept as pretty JSON.
fn mapping_patch<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text),
        Some(other) => {
            Some(serde_json::to_string_pretty(&other).map_err(serde::de::Error::custom)?)
        }
    }))
}

/// `field: null` (clear) versus an absent field (leave).
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(deserializer).map(Some)
    }
}

/// An account the engine could not serve is refused before it is stored.
fn check(state: &AppState, account: &IntegratedAccount) -> Result<(), ApiError> {
    let problems = state.engine().check_account(account);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_request(problems.join("; ")))
    }
}

async fn list(State(state): State<AppState>) -> Response {
    let accounts: Vec<Value> = state
        .engine()
        .accounts()
        .list()
        .iter()
        .map(|account| view_with_hold(&state, account))
        .collect();
    json_response(StatusCode::OK, &json!({"result": accounts}))
}

async fn create(State(state): State<AppState>, body: Bytes) -> Response {
    answer(
        blocking(move || {
            let mut account: IntegratedAccount = parse_body(&body)?;
            account.status = AccountStatus::Active;
            account.last_error = None;
            check(&state, &account)?;
            state
                .engine()
                .accounts()
                .create(account.clone())
                .map_err(store_error)?;
            // An id can be reused after a delete; nothing cached for the old account may be sent.
            state.engine().forget_tokens(&account.id);
            Ok((StatusCode::CREATED, view(&account)))
        })
        .await,
    )
}

async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    answer(
        state
            .engine()
            .accounts()
            .get(&id)
            .map(|account| (StatusCode::OK, view_with_hold(&state, &account)))
            .ok_or_else(|| ApiError::not_found(format!("integrated account `{id}` not found"))),
    )
}

async fn update(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> Response {
    answer(
        blocking(move || {
            let patch: Patch = parse_body(&body)?;
            if patch.status == Some(AccountStatus::NeedsReauth) {
                return Err(ApiError::bad_request(
                    "`status` can only be set to `active` (reconnected)",
                ));
            }
            // Applied inside the store, so a token the engine rotates meanwhile is kept.
            let mut patch = Some(patch);
            let updated = state
                .engine()
                .accounts()
                .modify(&id, &mut |account| {
                    let Some(patch) = patch.take() else {
                        return Ok(());
                    };
                    // A token obtained with the old credentials must not be reused with the new
                    // ones, unless the patch brings its own.
                    let credentials_change = patch.integration.is_some()
                        || patch.mapping.is_some()
                        || patch.base_url.is_some()
                        || patch
                            .context
                            .as_ref()
                            .is_some_and(|context| !context.contains_key("access_token"));
                    // A token the patch brings without its DPoP key is not bound to the old one.
                    let unbound_token = patch.context.as_ref().is_some_and(|context| {
                        context.contains_key("access_token")
                            && !context.contains_key("access_token_dpop_key")
                    });
                    // A change to what a marked account sends is a reconnect: what was refused
                    // (a key, a token request asking a scope not granted) is tried again.
                    let marked =
                        (account.status == AccountStatus::NeedsReauth).then(|| account.clone());
                    apply(patch, account)?;
                    if marked.is_some_and(|before| !before.sends_as(account)) {
                        account.status = AccountStatus::Active;
                        account.last_error = None;
                    }
                    if credentials_change {
                        state.engine().drop_issued_token(account);
                    } else if unbound_token {
                        state.engine().drop_token_binding(account);
                    }
                    let problems = state.engine().check_account(account);
                    if problems.is_empty() {
                        Ok(())
                    } else {
                        Err(StoreError::Refused(problems.join("; ")))
                    }
                })
                .map_err(store_error)?;
            // Every patch may change credentials (context, integration, base URL, a reconnect).
            state.engine().forget_tokens(&id);
            Ok((StatusCode::OK, view(&updated)))
        })
        .await,
    )
}

fn apply(patch: Patch, account: &mut IntegratedAccount) -> Result<(), StoreError> {
    if let Some(integration) = patch.integration {
        account.integration = integration;
    }
    if let Some(context) = patch.context {
        let object = account
            .context
            .as_object_mut()
            .ok_or_else(|| StoreError::Database("stored context is not an object".to_owned()))?;
        for (key, value) in context {
            if value.is_null() {
                object.shift_remove(&key);
            } else {
                object.insert(key, value);
            }
        }
    }
    if let Some(base_url) = patch.base_url {
        account.base_url = base_url;
    }
    if let Some(mapping) = patch.mapping {
        account.mapping = mapping;
    }
    if patch.status == Some(AccountStatus::Active) {
        account.status = AccountStatus::Active;
        account.last_error = None;
    }
    Ok(())
}

async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    answer(
        blocking(move || {
            state
                .engine()
                .accounts()
                .delete(&id)
                .map(|()| {
                    state.engine().forget_tokens(&id);
                    (StatusCode::OK, json!({"id": id}))
                })
                .map_err(store_error)
        })
        .await,
    )
}

/// Runs a store write on a blocking thread: sealing and the disk write never hold an async
/// worker.
async fn blocking(
    write: impl FnOnce() -> Result<(StatusCode, Value), ApiError> + Send + 'static,
) -> Result<(StatusCode, Value), ApiError> {
    tokio::task::spawn_blocking(write)
        .await
        .unwrap_or_else(|error| {
            Err(ApiError::internal(format!(
                "the store write failed: {error}"
            )))
        })
}

pub(crate) const ACCOUNTS: &str = "/admin/integrated-accounts";
pub(crate) const ACCOUNT: &str = "/admin/integrated-accounts/{id}";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(ACCOUNTS, get(list).post(create))
        .route(ACCOUNT, get(show).patch(update).delete(remove))
}
