//! OAuth 2.0 access tokens for provider calls: obtained at the integration's token endpoint
//! (refresh-token or client-credentials grant), cached in memory per account, refreshed before
//! they expire (a margin, default 60 s), at most one refresh in flight per account.
//!
//! Single flight: every account has one async mutex; a caller that finds the token stale takes
//! the lock, and callers queued behind it find the fresh token when they get it. Tokens and
//! secrets travel as [`Secret`]; error messages carry the endpoint's status and body, never the
//! request. Persisting tokens and rotated refresh tokens is the caller's job (the engine writes
//! them to the account store).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use moka::sync::Cache;
use serde::Deserialize;
use unigate_unified::Secret;
use url::Url;

use crate::{Method, ProviderRequest, Upstream, UpstreamError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    RefreshToken,
    ClientCredentials,
}

/// What to ask the token endpoint for.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub grant: Grant,
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: Secret,
    pub refresh_token: Option<Secret>,
    pub scope: Option<String>,
    /// HTTP Basic client authentication instead of credentials in the form body.
    pub basic_client_auth: bool,
    /// A token obtained earlier (persisted, or given in the account context), used while valid.
    pub seeded: Option<AccessToken>,
    /// Extra form fields (e.g. `audience`).
    pub extra_params: Vec<(String, String)>,
}

/// An access token and when it stops being valid (seconds since the epoch; `None` = unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: Secret,
    pub expires_at: Option<i64>,
}

/// A fresh token, and a replacement refresh token when the endpoint rotated it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: AccessToken,
    pub rotated_refresh_token: Option<Secret>,
    /// Whether this call obtained the token (rather than finding it cached).
    pub fresh: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenError {
    /// The endpoint refused: the grant is invalid or revoked; the account must be reconnected.
    #[error("the token endpoint refused the credentials (HTTP {status})")]
    Rejected { status: u16, body: String },
    #[error("the token endpoint could not be used: {0}")]
    Unavailable(String),
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// Tokens per account.
#[derive(Debug, Clone)]
pub struct TokenManager {
    upstream: Upstream,
    margin: Duration,
    slots: Cache<String, Arc<tokio::sync::Mutex<Option<AccessToken>>>>,
}

impl TokenManager {
    pub fn new(upstream: Upstream, margin: Duration) -> Self {
        TokenManager {
            upstream,
            margin,
            slots: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(24 * 3600))
                .build(),
        }
    }

    fn is_fresh(&self, token: &AccessToken) -> bool {
        token
            .expires_at
            .is_none_or(|expires_at| expires_at - self.margin.as_secs() as i64 > now())
    }

    fn slot(&self, account: &str) -> Arc<tokio::sync::Mutex<Option<AccessToken>>> {
        self.slots.get_with(account.to_owned(), || {
            Arc::new(tokio::sync::Mutex::new(None))
        })
    }

    /// A valid access token for `account`, refreshing it when it is missing, stale, or equal
    /// to `reject` (a token the provider just refused).
    pub async fn access_token(
        &self,
        account: &str,
        request: &TokenRequest,
        reject: Option<&Secret>,
    ) -> Result<Issued, TokenError> {
        let slot = self.slot(account);
        let mut cached = slot.lock().await;
        if cached.is_none()
            && let Some(seeded) = &request.seeded
        {
            *cached = Some(seeded.clone());
        }
        if let Some(token) = cached.as_ref()
            && self.is_fresh(token)
            && reject != Some(&token.token)
        {
            return Ok(Issued {
                token: token.clone(),
                rotated_refresh_token: None,
                fresh: false,
            });
        }
        let issued = self.fetch(request).await?;
        *cached = Some(issued.token.clone());
        Ok(issued)
    }

    async fn fetch(&self, request: &TokenRequest) -> Result<Issued, TokenError> {
        let mut form: Vec<(&str, &str)> = Vec::new();
        match request.grant {
            Grant::RefreshToken => {
                let refresh =
                    request
                        .refresh_token
                        .as_ref()
                        .ok_or_else(|| TokenError::Rejected {
                            status: 401,
                            body: "the account has no refresh token".to_owned(),
                        })?;
                form.push(("grant_type", "refresh_token"));
                form.push(("refresh_token", refresh.expose()));
            }
            Grant::ClientCredentials => form.push(("grant_type", "client_credentials")),
        }
        if let Some(scope) = &request.scope {
            form.push(("scope", scope));
        }
        for (name, value) in &request.extra_params {
            form.push((name, value));
        }
        let mut headers = vec![
            (
                "Content-Type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("Accept".to_owned(), "application/json".to_owned()),
        ];
        let mut secret_header = None;
        if request.basic_client_auth {
            use base64::Engine as _;
            let pair = format!("{}:{}", request.client_id, request.client_secret.expose());
            secret_header = Some((
                "Authorization".to_owned(),
                Secret::new(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )),
            ));
        } else {
            form.push(("client_id", &request.client_id));
            form.push(("client_secret", request.client_secret.expose()));
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        headers.retain(|(name, _)| name != "Authorization");
        let response = self
            .upstream
            .send(&ProviderRequest {
                method: Method::Post,
                url: request.token_url.clone(),
                headers,
                secret_header,
                secret_query: None,
                body: Some(body.into_bytes()),
            })
            .await
            .map_err(|error: UpstreamError| TokenError::Unavailable(error.to_string()))?;
        let text = String::from_utf8_lossy(&response.body).into_owned();
        if !(200..300).contains(&response.status) {
            // 5xx and 429 are the endpoint's trouble, not the grant's.
            return Err(if response.status >= 500 || response.status == 429 {
                TokenError::Unavailable(format!("HTTP {}", response.status))
            } else {
                TokenError::Rejected {
                    status: response.status,
                    body: text,
                }
            });
        }
        let parsed: TokenResponse = serde_json::from_str(&text).map_err(|_| {
            TokenError::Unavailable("the token endpoint's answer has no access_token".to_owned())
        })?;
        let lifetime = parsed.expires_in.as_ref().and_then(|value| match value {
            serde_json::Value::Number(number) => number.as_i64(),
            serde_json::Value::String(text) => text.parse().ok(),
            _ => None,
        });
        Ok(Issued {
            token: AccessToken {
                token: Secret::new(parsed.access_token),
                expires_at: lifetime.map(|seconds| now() + seconds),
            },
            rotated_refresh_token: parsed
                .refresh_token
                .filter(|rotated| {
                    request
                        .refresh_token
                        .as_ref()
                        .is_none_or(|old| old.expose() != rotated)
                })
                .map(Secret::new),
            fresh: true,
        })
    }
}
