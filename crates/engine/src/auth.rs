//! Provider auth, and the one path every provider call takes (a list page, a get, and later a
//! follow-up or a proxied call): the account's credential attached — a rendered header or query
//! parameter, or an access token from the token manager — then the retry and rate-limit policy
//! (`policy`). A provider 401 on a cached token is retried once with a fresh token; a 401 on a
//! fresh token, or a refused refresh, marks the account `needs_reauth`.

use serde_json::Value;
use unigate_mapping::{Auth, ClientAuth, Credential, Grant, RenderedOAuth2, raw_body};
use unigate_store::AccountStatus;
use unigate_unified::error::extract_remote_message;
use unigate_unified::{ApiError, ErrorKind, Secret};
use unigate_upstream::oauth::{AccessToken, TokenError, TokenRequest};
use unigate_upstream::{ProviderRequest, ProviderResponse, Url};

use crate::Engine;
use crate::call::Target;

impl Engine {
    /// Sends `request` for the target's account with its credential, through the policy.
    /// Returns the provider's final answer, which may still be an error status.
    pub(crate) async fn call_provider(
        &self,
        target: &Target,
        request: &ProviderRequest,
    ) -> Result<ProviderResponse, ApiError> {
        let mut request = request.clone();
        let oauth = match &target.credential {
            Credential::None => None,
            Credential::Header { name, value } => {
                request.secret_header = Some((name.clone(), value.clone()));
                None
            }
            Credential::Query { param, value } => {
                request.secret_query = Some((param.clone(), value.clone()));
                None
            }
            Credential::OAuth2(oauth) => Some(oauth),
        };
        let Some(oauth) = oauth else {
            return self.send_with_policy(&request, target).await;
        };
        let token_request = token_request(oauth, &target.account.context)?;
        let mut rejected: Option<Secret> = None;
        loop {
            let issued = self
                .tokens
                .access_token(&target.account.id, &token_request, rejected.as_ref())
                .await
                .map_err(|error| self.token_failure(target, error))?;
            if issued.fresh {
                // Persisted with the account, so a restart (or the encrypted store) reuses it.
                self.record(
                    target,
                    "access_token",
                    Value::String(issued.token.token.expose().to_owned()),
                );
                self.record(
                    target,
                    "access_token_expires_at",
                    issued.token.expires_at.map_or(Value::Null, |at| {
                        Value::String(unigate_unified::time::format_rfc3339(at * 1000))
                    }),
                );
            }
            if let Some(rotated) = &issued.rotated_refresh_token
                && let Some(key) = refresh_token_key(target)
            {
                self.record(target, &key, Value::String(rotated.expose().to_owned()));
            }
            request.secret_header = Some((
                "Authorization".to_owned(),
                Secret::new(format!("Bearer {}", issued.token.token.expose())),
            ));
            let response = self.send_with_policy(&request, target).await?;
            if response.status == 401 {
                if !issued.fresh && rejected.is_none() {
                    rejected = Some(issued.token.token.clone());
                    continue;
                }
                self.mark_needs_reauth(
                    target,
                    "the provider refused a freshly issued access token (HTTP 401)".to_owned(),
                );
            }
            return Ok(response);
        }
    }

    /// Writes what a call learnt about its account (a token) back to the store; a failed write
    /// is logged, not fatal to the call that already holds the value.
    fn record(&self, target: &Target, key: &str, value: Value) {
        if let Err(error) = self
            .accounts
            .set_context_value(&target.account.id, key, value)
        {
            tracing::error!(account = %target.account.id, key, %error, "could not store a token");
        }
    }

    fn mark_needs_reauth(&self, target: &Target, reason: String) {
        if let Err(error) =
            self.accounts
                .set_status(&target.account.id, AccountStatus::NeedsReauth, Some(reason))
        {
            tracing::error!(account = %target.account.id, %error, "could not mark the account needs_reauth");
        }
    }

    fn token_failure(&self, target: &Target, error: TokenError) -> ApiError {
        match error {
            TokenError::Rejected { status, body } => {
                let raw = raw_body(body.as_bytes());
                let detail =
                    extract_remote_message(&raw).unwrap_or_else(|| format!("HTTP {status}"));
                self.mark_needs_reauth(target, format!("token refresh refused: {detail}"));
                ApiError::remote(
                    401,
                    format!(
                        "the provider refused to issue an access token ({detail}); reconnect the integrated account"
                    ),
                    raw,
                )
            }
            TokenError::Unavailable(reason) => ApiError::new(
                ErrorKind::BadGateway,
                format!("could not obtain an access token: {reason}"),
            ),
        }
    }
}

/// The context key the integration's refresh token comes from, for writing a rotated one back.
fn refresh_token_key(target: &Target) -> Option<String> {
    match &target.integration.auth {
        Auth::OAuth2(oauth) => oauth.refresh_token.as_ref()?.single_context_key(),
        _ => None,
    }
}

/// The upstream token request for an account, with a token the context already holds
/// (`access_token`, `access_token_expires_at`) used while it is valid.
fn token_request(oauth: &RenderedOAuth2, context: &Value) -> Result<TokenRequest, ApiError> {
    let token_url = Url::parse(&oauth.token_url).map_err(|_| {
        ApiError::internal("the OAuth token URL does not render to an absolute URL")
    })?;
    let seeded = context
        .get("access_token")
        .and_then(Value::as_str)
        .map(|token| AccessToken {
            token: Secret::new(token),
            expires_at: context
                .get("access_token_expires_at")
                .and_then(unigate_unified::time::parse_json_timestamp)
                .map(|millis| millis / 1000),
        });
    Ok(TokenRequest {
        grant: match oauth.grant {
            Grant::RefreshToken => unigate_upstream::oauth::Grant::RefreshToken,
            Grant::ClientCredentials => unigate_upstream::oauth::Grant::ClientCredentials,
        },
        token_url,
        client_id: oauth.client_id.clone(),
        client_secret: oauth.client_secret.clone(),
        refresh_token: oauth.refresh_token.clone(),
        scope: oauth.scope.clone(),
        basic_client_auth: oauth.client_auth == ClientAuth::Basic,
        seeded,
        extra_params: oauth.token_params.clone(),
    })
}
