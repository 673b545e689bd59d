//! Provider auth, and the one path every provider call takes (a list page, a get, a follow-up,
//! and later a proxied call): the account's credential attached — a rendered header or query
//! parameter, or a token (OAuth 2.0 grant or login call) from the token manager — then the
//! pacing, retry and rate-limit policy (`policy`). A provider 401 on a cached token is retried
//! once with a new token; a 401 on a new token, a refused token request (as the file's
//! `auth.token_rejected` reads its answer, else by the upstream crate's default; but for a
//! refused scope, `invalid_scope`: a 403), or a refused static credential (an API key, a
//! password) marks the account `needs_reauth` — except on a follow-up's call, whose page was
//! just answered with the same credential, and on a get's or a later pass's page, until the
//! list's first page is refused too. A token answer the file's `rate_limit` names is a wait. A request rendered
//! before a kept token value moved the account's base URL is sent to the new one.
//!
//! A token request runs apart from the caller (it completes even if the caller goes away), reads
//! the account as the store holds it then (so a refresh token rotated by an earlier request is
//! the one sent), and writes the new token, its expiry and a rotated refresh token back in one
//! store write.

use std::sync::Arc;

use serde_json::Value;
use unigate_mapping::{
    Answer, Auth, Credential, Integration, RenderedExchange, RenderedOAuth2, RenderedSource,
    RenderedToken, TokenSource, read_exchange_token, render_credential,
};
use unigate_store::{AccountStatus, IntegratedAccount, StoreError, set_dotted};
use unigate_unified::{ApiError, ErrorKind, Secret};
use unigate_upstream::dpop::{DpopKey, Proof};
use unigate_upstream::tokens::{
    AccessToken, Assertion, ClientAssertion, Issued, OAuthRequest, TokenError, now_epoch,
    request_oauth_token, send_token_request, sign_login_jwt,
};
use unigate_upstream::{Method, ProviderRequest, ProviderResponse, Url};

use crate::Engine;
use crate::call::Target;
use crate::request::Endpoint;

/// Where a token obtained for an account is kept in its context, so that a restart (or another
/// replica) reuses it while it is valid.
const TOKEN_KEY: &str = "access_token";
const TOKEN_EXPIRY_KEY: &str = "access_token_expires_at";
/// The key a DPoP-bound token is bound to: stored with it, since any replica calling with the
/// token must prove possession of that key.
pub(crate) const TOKEN_DPOP_KEY: &str = "access_token_dpop_key";

/// The token the account's context holds, if any. A DPoP-bound token whose key cannot be read
/// is no token at all: no call could be made with it.
pub(crate) fn stored_token(context: &Value) -> Option<AccessToken> {
    let token = context.get(TOKEN_KEY).and_then(Value::as_str)?;
    let dpop_key = match context.get(TOKEN_DPOP_KEY).and_then(Value::as_str) {
        Some(stored) => Some(Arc::new(DpopKey::from_stored(&Secret::new(stored)).ok()?)),
        None => None,
    };
    Some(AccessToken {
        token: Secret::new(token),
        expires_at: context
            .get(TOKEN_EXPIRY_KEY)
            .and_then(unigate_unified::time::parse_json_timestamp)
            .map(|millis| millis / 1000),
        dpop_key,
    })
}

/// Whether two copies of an account differ at most in what the engine writes when it obtains a
/// token (the token, its expiry and DPoP key, a rotated `refresh_token`): another replica's
/// token write leaves a walk's kept answers as they are, a change of credentials does not. (A
/// refresh token rotated under another key reads as a change: the answers are asked again.)
pub(crate) fn same_but_tokens(one: &IntegratedAccount, other: &IntegratedAccount) -> bool {
    let without_tokens = |context: &Value| -> Value {
        let mut context = context.clone();
        if let Some(object) = context.as_object_mut() {
            for key in [TOKEN_KEY, TOKEN_EXPIRY_KEY, TOKEN_DPOP_KEY, "refresh_token"] {
                object.shift_remove(key);
            }
        }
        context
    };
    one.integration == other.integration
        && one.base_url == other.base_url
        && one.mapping == other.mapping
        && without_tokens(&one.context) == without_tokens(&other.context)
}

/// The context key a rotated refresh token is written back to: the one the mapping's
/// `refresh_token` template reads, when it is exactly one key.
fn refresh_key(auth: &Auth, issued: &Issued) -> Option<String> {
    match (auth, &issued.rotated_refresh_token) {
        (Auth::Token(token), Some(_)) => match &token.source {
            TokenSource::OAuth2(oauth) => oauth
                .refresh_token
                .as_ref()
                .and_then(|template| template.single_context_key()),
            TokenSource::Exchange(_) => None,
        },
        _ => None,
    }
}

/// The new token, its expiry and a rotated refresh token, in the account's context.
fn write_token(account: &mut IntegratedAccount, refresh_key: Option<&str>, issued: &Issued) {
    set_dotted(
        &mut account.context,
        TOKEN_KEY,
        Value::String(issued.token.token.expose().to_owned()),
    );
    set_dotted(
        &mut account.context,
        TOKEN_EXPIRY_KEY,
        issued.token.expires_at.map_or(Value::Null, |at| {
            Value::String(unigate_unified::time::format_rfc3339(
                at.saturating_mul(1000),
            ))
        }),
    );
    match &issued.token.dpop_key {
        Some(key) => set_dotted(
            &mut account.context,
            TOKEN_DPOP_KEY,
            Value::String(key.stored().expose().to_owned()),
        ),
        None => {
            if let Some(context) = account.context.as_object_mut() {
                context.remove(TOKEN_DPOP_KEY);
            }
        }
    }
    if let (Some(key), Some(rotated)) = (refresh_key, &issued.rotated_refresh_token) {
        set_dotted(
            &mut account.context,
            key,
            Value::String(rotated.expose().to_owned()),
        );
    }
    for (key, value) in &issued.kept {
        set_dotted(&mut account.context, key, Value::String(value.clone()));
    }
}

/// What the mapping's `auth.keep` reads in a token answer: each key whose expression gives a
/// text or a number (anything else, or an answer that is not JSON, keeps the value it had).
fn kept_from_answer(auth: &Auth, answer: &[u8]) -> Vec<(String, String)> {
    let Auth::Token(token) = auth else {
        return Vec::new();
    };
    if token.keep.is_empty() {
        return Vec::new();
    }
    let Ok(body) = serde_json::from_slice::<Value>(answer) else {
        return Vec::new();
    };
    let scope = unigate_mapping::Scope::new([]);
    token
        .keep
        .iter()
        .filter_map(|(key, expression)| {
            let value = match expression.evaluate(&body, &scope).ok().flatten()? {
                Value::String(text) if !text.is_empty() => text,
                Value::Number(number) => number.to_string(),
                _ => return None,
            };
            Some((key.clone(), value))
        })
        .collect()
}

fn apply_token(account: &mut IntegratedAccount, auth: &Auth, issued: &Issued) {
    write_token(account, refresh_key(auth, issued).as_deref(), issued);
}

/// What a refusal of the credential on a call means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The credential is refused: the account is marked `needs_reauth`.
    MarksAccount,
    /// Only this call is refused (a follow-up after its page succeeded): its error, no mark.
    OfThisCall,
    /// A call confirming another's refusal (a get's, on the list's first page): its answer as
    /// it is, no mark, and no renewal: the token was issued or renewed by that call just before.
    Confirming,
}

/// Why an account is marked `needs_reauth` when `response` refused `credential`: a token the
/// gateway obtains was renewed before it was refused again (see `call_provider_as`).
fn refusal_reason(credential: &Credential, response: &ProviderResponse, detail: &str) -> String {
    match credential {
        Credential::Token(_) => format!(
            "the provider refused a freshly issued access token (HTTP {})",
            response.status
        ),
        _ => format!("the provider refused the account's credentials ({detail})"),
    }
}

/// The nonce a resource server's 401 asks the next DPoP proof to carry: `WWW-Authenticate: DPoP
/// error="use_dpop_nonce"` and the nonce in `DPoP-Nonce` (RFC 9449 §9).
fn resource_nonce(response: &ProviderResponse) -> Option<String> {
    let challenge = response.header("www-authenticate")?;
    (response.status == 401 && challenge.contains("use_dpop_nonce"))
        .then(|| response.header("dpop-nonce"))
        .flatten()
        .filter(|nonce| !nonce.is_empty())
        .map(str::to_owned)
}

/// `f` over the provider's answer as the mapping reads it (status, headers, body, format).
fn with_answer<T>(
    target: &Target,
    response: &ProviderResponse,
    f: impl FnOnce(unigate_mapping::Answer<'_>) -> T,
) -> T {
    with_answer_as(target.integration.body_format, response, f)
}

/// `f` over a token endpoint's or login call's answer: JSON whatever the API speaks.
fn with_token_answer<T>(
    response: &ProviderResponse,
    f: impl FnOnce(unigate_mapping::Answer<'_>) -> T,
) -> T {
    with_answer_as(unigate_mapping::BodyFormat::Json, response, f)
}

fn with_answer_as<T>(
    format: unigate_mapping::BodyFormat,
    response: &ProviderResponse,
    f: impl FnOnce(unigate_mapping::Answer<'_>) -> T,
) -> T {
    let headers = response.header_pairs();
    f(unigate_mapping::Answer {
        status: response.status,
        headers: &headers,
        body: &response.body,
        format,
    })
}

impl Engine {
    /// Sends `request` for the target's account with its credential, through the policy.
    /// Returns the provider's final answer, which may still be an error status.
    /// `credential` is the one the request's resource sends
    /// ([`crate::request::Endpoint::credential`]).
    pub(crate) async fn call_provider(
        &self,
        target: &Target,
        endpoint: &Endpoint,
        request: &ProviderRequest,
    ) -> Result<ProviderResponse, ApiError> {
        self.call_provider_as(target, endpoint, request, Refusal::MarksAccount)
            .await
    }

    /// A follow-up's call: made after the page's call was answered with the same credential,
    /// so a refusal here is of this one endpoint (a scope the credential lacks: Brex and Retool
    /// answer one so), not of the credential: it is the caller's error, and the account is not
    /// marked. A token refused here is still renewed once, as it may have just expired.
    pub(crate) async fn call_provider_for_follow_up(
        &self,
        target: &Target,
        endpoint: &Endpoint,
        request: &ProviderRequest,
    ) -> Result<ProviderResponse, ApiError> {
        self.call_provider_as(target, endpoint, request, Refusal::OfThisCall)
            .await
    }

    /// A call whose refusal may be of what it asks rather than of the credential: a get (a
    /// user of another team, a scope the get needs and the list does not: HighLevel, Trello and
    /// Zoom answer those 401, in words no `auth.rejected` can know in advance) or a page of a
    /// list's later pass (invitations, guests, service accounts: FloQast answers a key without
    /// that service 401, as a dead key). Before the account is marked, the list's first page
    /// (`probe`) is asked with the same credential: only a refusal there too marks it. Either
    /// way the caller gets this call's own refusal. Without a probe (a credential of its own on
    /// either side) a refusal marks the account as on a page. `what` names the call in logs.
    pub(crate) async fn call_provider_confirmed<E: std::borrow::Borrow<Endpoint>>(
        &self,
        target: &Target,
        endpoint: &Endpoint,
        request: &ProviderRequest,
        what: &'static str,
        probe: impl FnOnce() -> Option<(E, ProviderRequest)>,
    ) -> Result<ProviderResponse, ApiError> {
        let credential = endpoint.credential(target);
        if matches!(credential, Credential::None) {
            return self.call_provider(target, endpoint, request).await;
        }
        let response = self
            .call_provider_as(target, endpoint, request, Refusal::OfThisCall)
            .await?;
        if !self.credential_refused(target, credential, &response) {
            return Ok(response);
        }
        let Some((listing, probe)) = probe() else {
            let detail = self.mark_refused(target, credential, &response).await;
            return self.refused(target, response, &detail);
        };
        match self
            .call_provider_as(target, listing.borrow(), &probe, Refusal::Confirming)
            .await
        {
            Ok(listed) if self.credential_refused(target, credential, &listed) => {
                self.mark_refused(target, credential, &listed).await;
            }
            Ok(listed) => tracing::warn!(
                account = %target.account.id,
                integration = %target.integration.id,
                call = what,
                refused_status = response.status,
                list_status = listed.status,
                "a call was refused and the list's first page was not: a refusal of what it asks, the account stays connected"
            ),
            Err(error) => tracing::warn!(
                account = %target.account.id,
                integration = %target.integration.id,
                call = what,
                refused_status = response.status,
                %error,
                "a call was refused and the list's first page could not confirm it: the account stays connected"
            ),
        }
        let detail = self.refusal_detail(target, &response);
        self.refused(target, response, &detail)
    }

    async fn call_provider_as(
        &self,
        target: &Target,
        endpoint: &Endpoint,
        request: &ProviderRequest,
        refusal: Refusal,
    ) -> Result<ProviderResponse, ApiError> {
        let credential = endpoint.credential(target);
        let mut request = request.clone();
        let token = match credential {
            Credential::None | Credential::Body => None,
            Credential::Header { name, value } => {
                request.secret_headers.push((name.clone(), value.clone()));
                None
            }
            Credential::Query { param, value } => {
                request.secret_query.push((param.clone(), value.clone()));
                None
            }
            Credential::Signed(signing) => {
                // Signed once per request: its retries reuse the signature, well inside the
                // minutes of clock skew signing providers allow.
                let query: Vec<(String, String)> = request
                    .url
                    .query_pairs()
                    .map(|(name, value)| (name.into_owned(), value.into_owned()))
                    .collect();
                let mut pairs: Vec<(&str, &str)> = query
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str()))
                    .collect();
                pairs.extend(
                    request
                        .secret_query
                        .iter()
                        .map(|(name, value)| (name.as_str(), value.expose())),
                );
                let method = match request.method {
                    unigate_upstream::Method::Get => "GET",
                    unigate_upstream::Method::Post => "POST",
                };
                let headers = unigate_mapping::sign_request(
                    signing,
                    unigate_mapping::SignedParts {
                        method,
                        host: request.url.host_str().unwrap_or_default(),
                        path: request.url.path(),
                        query: &pairs,
                        now: self.config.clock.now_epoch(),
                    },
                );
                request.secret_headers.extend(headers);
                None
            }
            Credential::Token(token) => Some(token),
        };
        let Some(token) = token else {
            let response = self.send_with_policy(&request, target, endpoint).await?;
            if !matches!(credential, Credential::None)
                && refusal == Refusal::MarksAccount
                && self.credential_refused(target, credential, &response)
            {
                // The same credential would be refused on every later call: stopping here
                // spares the provider (Discord bans an address after 10,000 refused requests
                // in 10 minutes) and tells the admin, as Truto does.
                let detail = self.mark_refused(target, credential, &response).await;
                return self.refused(target, response, &detail);
            }
            return Ok(response);
        };
        let mut rejected: Option<Secret> = None;
        loop {
            let issued = self.obtain_token(target, rejected.as_ref()).await?;
            let mut attempt = request.clone();
            self.rebase_on_kept(target, &mut attempt);
            attempt.secret_headers.push((
                token.header.clone(),
                token.header_value_for(&issued.token.token, issued.token.dpop_key.is_some()),
            ));
            attempt.proof = issued.token.dpop_key.as_ref().map(|key| Proof {
                key: key.clone(),
                access_token: Some(issued.token.token.clone()),
                nonce: None,
            });
            let mut response = self.send_with_policy(&attempt, target, endpoint).await?;
            // RFC 9449 §9: a resource server that wants a nonce in the proof answers 401
            // `use_dpop_nonce` with one in `DPoP-Nonce`; that is no refusal of the token.
            if let (Some(proof), Some(nonce)) = (&mut attempt.proof, resource_nonce(&response)) {
                proof.nonce = Some(nonce);
                response = self.send_with_policy(&attempt, target, endpoint).await?;
                if resource_nonce(&response).is_some() {
                    // Still asking: not a refusal of the token, the provider's 401 as it is.
                    return Ok(response);
                }
            }
            if self.credential_refused(target, credential, &response) {
                if !issued.fresh && rejected.is_none() && refusal != Refusal::Confirming {
                    rejected = Some(issued.token.token.clone());
                    continue;
                }
                if refusal != Refusal::MarksAccount {
                    return Ok(response);
                }
                let detail = self.mark_refused(target, credential, &response).await;
                return self.refused(target, response, &detail);
            }
            return Ok(response);
        }
    }

    /// Moves `request`, rendered for the account as the call found it, to the base URL the
    /// account has now. A value kept from a token answer (`auth.keep`: Salesforce's
    /// `instance_url` after a My Domain rename, SAP Concur's `geolocation`) may have moved the
    /// account's host since: on this call's own refresh (its retry must not go back to the host
    /// that refused the old token), or on another call's while this walk was under way. An
    /// account with its own `base_url` is never moved.
    fn rebase_on_kept(&self, target: &Target, request: &mut ProviderRequest) {
        let Auth::Token(token) = &target.integration.auth else {
            return;
        };
        if token.keep.is_empty() || target.account.base_url.is_some() {
            return;
        }
        let Some(current) = self.accounts.get(&target.account.id) else {
            return;
        };
        if Arc::ptr_eq(&current, &target.account) {
            return;
        }
        let base_of = |context: &Value| {
            let rendered = target.integration.base_url.render_url(context).ok()?;
            let url = Url::parse(&rendered).ok()?;
            Some(url.as_str().trim_end_matches('/').to_owned())
        };
        let (Some(rendered), Some(now)) =
            (base_of(&target.account.context), base_of(&current.context))
        else {
            return;
        };
        if rendered == now {
            return;
        }
        let moved = request
            .url
            .as_str()
            .strip_prefix(&rendered)
            .filter(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
            .and_then(|rest| Url::parse(&format!("{now}{rest}")).ok());
        if let Some(moved) = moved {
            tracing::debug!(
                account = %target.account.id,
                integration = %target.integration.id,
                to = %moved.origin().ascii_serialization(),
                "the account's base URL moved (a value kept from a token answer): calling there"
            );
            request.url = moved;
        }
    }

    /// The answer a refused credential gives the caller: an error status, or a 2xx the mapping's
    /// `errors.when` reads as an error (Slack's `ok: false`), goes on to be reported as the
    /// provider's error; any other 2xx (Jira's anonymous 200) is not a page to read but a remote
    /// 401.
    fn refused(
        &self,
        target: &Target,
        response: ProviderResponse,
        detail: &str,
    ) -> Result<ProviderResponse, ApiError> {
        if !(200..300).contains(&response.status) {
            return Ok(response);
        }
        let (read_as_error, body) = with_answer(target, &response, |answer| {
            let body = answer.raw_value();
            let fault =
                unigate_mapping::body_fault(&target.integration, answer, &body, &target.scope);
            (matches!(fault, Ok(Some(_))), body)
        });
        if read_as_error {
            return Ok(response);
        }
        Err(ApiError::remote(
            401,
            format!("the provider refused the account's credentials ({detail})"),
            body,
        ))
    }

    /// The status and what the provider said when it refused the credential (the mapping's
    /// error message), cleaned of the account's credentials: `HTTP 403: Forbidden`.
    fn refusal_detail(&self, target: &Target, response: &ProviderResponse) -> String {
        let message = with_answer(target, response, |answer| {
            unigate_mapping::fault_message(
                &target.integration,
                answer,
                &answer.raw_value(),
                &target.scope,
            )
        });
        match message {
            Some(message) => format!(
                "HTTP {}: {}",
                response.status,
                self.secrets_of(target).text(&message)
            ),
            None => format!("HTTP {}", response.status),
        }
    }

    /// Whether the answer says the account's credential was refused: the mapping's
    /// `auth.rejected`, else a 401 (not for a signed request, whose 401 may be the clock).
    fn credential_refused(
        &self,
        target: &Target,
        credential: &Credential,
        response: &ProviderResponse,
    ) -> bool {
        let default_401 = !matches!(credential, Credential::Signed(_));
        if target.integration.auth_rejected.is_none() {
            // Every page passes here: no header list is gathered for the default.
            return default_401 && response.status == 401;
        }
        with_answer(target, response, |answer| {
            unigate_mapping::credential_rejected(
                target.integration.auth_rejected.as_ref(),
                default_401,
                answer,
                &target.scope,
            )
        })
    }

    /// A valid token for the target's account, from the cache, the account's context, or a new
    /// token request.
    async fn obtain_token(
        &self,
        target: &Target,
        rejected: Option<&Secret>,
    ) -> Result<Issued, ApiError> {
        let seed = || stored_token(&target.account.context);
        let engine = self.clone();
        let account = target.account.id.clone();
        let refused = rejected.cloned();
        let request = async move { engine.request_token(&account, refused).await };
        match self
            .tokens
            .access_token(&target.account.id, seed, rejected, request)
            .await
        {
            Ok(issued) => Ok(issued),
            Err(error) => Err(self.token_failure(target, error).await),
        }
    }

    /// Obtains a new token for `account` as the store holds it now, and stores it. When several
    /// processes share the store, this runs under the account's token lease: a token another
    /// process obtained while this one waited (valid, and not the one the provider `refused`)
    /// is used instead of asking again, and the new token, its expiry and a rotated refresh token
    /// are written in the lease's one commit.
    async fn request_token(
        &self,
        account_id: &str,
        refused: Option<Secret>,
    ) -> Result<Issued, TokenError> {
        let gone = || TokenError::Unavailable("the integrated account no longer exists".to_owned());
        let lease = self
            .accounts
            .lease_tokens(account_id)
            .await
            .map_err(|error| match error {
                unigate_store::StoreError::NotFound(_) => gone(),
                unigate_store::StoreError::Busy(reason) => TokenError::Busy(reason),
                other => TokenError::Unavailable(other.to_string()),
            })?;
        let account = match &lease {
            Some(lease) => Arc::new(lease.account().clone()),
            None => self.accounts.get(account_id).ok_or_else(gone)?,
        };
        if lease.is_some()
            && let Some(token) = stored_token(&account.context)
            && self.tokens.is_fresh(&token)
            && refused.as_ref() != Some(&token.token)
        {
            return Ok(Issued {
                token,
                rotated_refresh_token: None,
                fresh: false,
                kept: Vec::new(),
            });
        }
        let integration = self
            .integration_of(&account)
            .map_err(|_| gone())?
            .for_context(&account.context);
        let credential =
            render_credential(&integration, &account.context, account.base_url.as_deref())
                .map_err(|error| TokenError::Unavailable(error.to_string()))?;
        let Credential::Token(token) = credential else {
            return Err(TokenError::Unavailable(
                "the account's integration no longer uses tokens".to_owned(),
            ));
        };
        let RenderedToken { source, .. } = *token;
        let kind = match &source {
            RenderedSource::OAuth2(_) => "oauth2",
            RenderedSource::Exchange(_) => "exchange",
        };
        let token_rejected = match &integration.auth {
            Auth::Token(token) => token.token_rejected.as_ref(),
            _ => None,
        };
        let scope = unigate_mapping::Scope::new([("context", account.context.clone())]);
        let reading = |response: &ProviderResponse| {
            token_answer_error(&integration, token_rejected, response, &scope)
        };
        let issued = async {
            let (mut issued, answer) = match &source {
                RenderedSource::OAuth2(oauth) => {
                    request_oauth_token(&self.upstream, &oauth_request(oauth)?, &reading).await?
                }
                RenderedSource::Exchange(exchange) => {
                    let Auth::Token(token) = &integration.auth else {
                        return Err(gone());
                    };
                    let TokenSource::Exchange(definition) = &token.source else {
                        return Err(gone());
                    };
                    let response = send_token_request(
                        &self.upstream,
                        exchange_request(exchange, now_epoch())?,
                        &reading,
                    )
                    .await?;
                    let (token, expires_at) = with_token_answer(&response, |answer| {
                        read_exchange_token(definition, answer, now_epoch()).map_err(|reason| {
                            reading(&response)
                                .or_else(|| login_answer_error(&integration, &account, answer))
                                .unwrap_or(TokenError::Unavailable(reason))
                        })
                    })?;
                    let issued = Issued {
                        token: AccessToken {
                            token,
                            expires_at,
                            dpop_key: None,
                        },
                        rotated_refresh_token: None,
                        fresh: true,
                        kept: Vec::new(),
                    };
                    (issued, response.body)
                }
            };
            issued.kept = kept_from_answer(&integration.auth, &answer);
            Ok::<Issued, TokenError>(issued)
        }
        .await;
        self.metrics.token(&integration.id, kind, issued.is_ok());
        let issued = issued?;
        match lease {
            Some(lease) => {
                let mut updated = IntegratedAccount::clone(&account);
                apply_token(&mut updated, &integration.auth, &issued);
                if let Err(error) = lease.commit(updated).await {
                    tracing::error!(
                        account = %account_id,
                        %error,
                        rotated_refresh_token = issued.rotated_refresh_token.is_some(),
                        "could not store the account's new token"
                    );
                }
            }
            None => {
                self.store_token(&account.id, &integration.auth, &issued)
                    .await
            }
        }
        Ok(issued)
    }

    /// Writes a new token, its expiry and a rotated refresh token back to the account in one
    /// write, on a blocking thread (sealing and the disk write never hold an async worker). A
    /// failed write is logged: the call holds the token, but a rotated refresh token that could
    /// not be stored is lost on restart.
    async fn store_token(&self, account_id: &str, auth: &Auth, issued: &Issued) {
        let accounts = self.accounts.clone();
        let id = account_id.to_owned();
        let issued = issued.clone();
        let auth_refresh_key = refresh_key(auth, &issued);
        let written = tokio::task::spawn_blocking(move || {
            let written = accounts.modify(&id, &mut |account| {
                write_token(account, auth_refresh_key.as_deref(), &issued);
                Ok::<(), StoreError>(())
            });
            (written, issued.rotated_refresh_token.is_some())
        })
        .await;
        match written {
            Ok((Ok(_), _)) => {}
            Ok((Err(error), rotated)) => tracing::error!(
                account = %account_id,
                %error,
                rotated_refresh_token = rotated,
                "could not store the account's new token"
            ),
            Err(error) => {
                tracing::error!(account = %account_id, %error, "the token write did not run")
            }
        }
    }

    /// Removes the token the gateway obtained and stored in `account`'s context, when its
    /// integration obtains tokens (a context `access_token` of any other integration is the
    /// tenant's own credential and stays). Called when the credentials it was issued for change.
    pub fn drop_issued_token(&self, account: &mut IntegratedAccount) {
        let obtains_tokens = self
            .integration_of(account)
            .ok()
            .is_some_and(|integration| {
                matches!(
                    integration.for_context(&account.context).auth,
                    Auth::Token(_)
                )
            });
        if let (true, Some(context)) = (obtains_tokens, account.context.as_object_mut()) {
            context.remove(TOKEN_KEY);
            context.remove(TOKEN_EXPIRY_KEY);
            context.remove(TOKEN_DPOP_KEY);
        }
    }

    /// Marks the account `needs_reauth` for `response`'s refusal of `credential`, and returns
    /// what the provider said (cleaned of credentials) for the caller's error.
    async fn mark_refused(
        &self,
        target: &Target,
        credential: &Credential,
        response: &ProviderResponse,
    ) -> String {
        let detail = self.refusal_detail(target, response);
        self.mark_needs_reauth(
            &target.account.id,
            refusal_reason(credential, response, &detail),
        )
        .await;
        detail
    }

    /// Records that the account must be reconnected, on a blocking thread.
    async fn mark_needs_reauth(&self, account_id: &str, reason: String) {
        let accounts = self.accounts.clone();
        let id = account_id.to_owned();
        let written = tokio::task::spawn_blocking(move || {
            accounts.set_status(&id, AccountStatus::NeedsReauth, Some(reason))
        })
        .await;
        if let Ok(Err(error)) = written {
            tracing::error!(account = %account_id, %error, "could not mark the account needs_reauth");
        }
    }

    async fn token_failure(&self, target: &Target, error: TokenError) -> ApiError {
        match error {
            TokenError::Rejected { status, body } => {
                let raw = unigate_mapping::raw_body(body.as_bytes());
                // The reason is kept with the account (the admin API shows it): without the
                // credentials a token endpoint may quote back.
                let detail = self.secrets_of(target).text(
                    &token_answer_message(&target.integration, status, &raw, &target.scope)
                        .unwrap_or_else(|| format!("HTTP {status}")),
                );
                if raw.get("error").and_then(Value::as_str) == Some("invalid_scope") {
                    // RFC 6749 §5.2: a scope the app was not granted, not a refused credential.
                    // An opt-in flag asking for one more scope (groups) must not cut the account
                    // off until an admin reconnects it: granting the scope, or unsetting the
                    // flag, is enough.
                    return ApiError::remote(
                        403,
                        format!(
                            "the provider refused a scope the account's token request asks for ({detail}); grant it to the app, or unset the account flag that asks for it (the credentials were not refused; the account is not marked)"
                        ),
                        raw,
                    );
                }
                self.mark_needs_reauth(
                    &target.account.id,
                    format!("token refresh refused: {detail}"),
                )
                .await;
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
                // The reason may quote the token endpoint (`auth.token_rejected`'s reading).
                format!(
                    "could not obtain an access token: {}",
                    self.secrets_of(target).text(&reason)
                ),
            ),
            TokenError::RateLimited { until_epoch } => {
                // The caller retries when the endpoint said; the account is not marked.
                let left = until_epoch.map(|until| (until - now_epoch()).max(1));
                let mut error = ApiError::new(
                    ErrorKind::RateLimited {
                        provider_status: 429,
                    },
                    match left {
                        Some(left) => format!(
                            "the provider's token endpoint is rate-limiting token requests; it asked to wait {left} s"
                        ),
                        None => "the provider's token endpoint is rate-limiting token requests"
                            .to_owned(),
                    },
                );
                if let Some(left) = left {
                    error
                        .headers
                        .push(("retry-after".to_owned(), left.to_string()));
                }
                error
            }
            TokenError::Busy(reason) => {
                // As long as a failed token request is answered from memory (5 s).
                let mut error = ApiError::new(
                    ErrorKind::Overloaded,
                    format!("could not obtain an access token now: {reason}; retry shortly"),
                );
                error
                    .headers
                    .push(("retry-after".to_owned(), "5".to_owned()));
                error
            }
        }
    }
}

fn absolute(url: &str, what: &str) -> Result<Url, TokenError> {
    Url::parse(url)
        .map_err(|_| TokenError::Unavailable(format!("the {what} is not an absolute URL")))
}

fn oauth_request(oauth: &RenderedOAuth2) -> Result<OAuthRequest, TokenError> {
    Ok(OAuthRequest {
        token_url: absolute(&oauth.token_url, "OAuth token URL")?,
        grant_type: oauth.grant_type.clone(),
        client_id: oauth.client_id.clone(),
        client_secret: oauth.client_secret.clone(),
        refresh_token: oauth.refresh_token.clone(),
        scope: oauth.scope.clone(),
        basic_client_auth: oauth.client_auth == unigate_mapping::ClientAuth::Basic,
        json_body: oauth.body == unigate_mapping::TokenBody::Json,
        extra_params: oauth.token_params.clone(),
        assertion: oauth.assertion.as_ref().map(|assertion| Assertion {
            issuer: assertion.issuer.clone(),
            subject: assertion.subject.clone(),
            audience: assertion.audience.clone(),
            scope: oauth.scope.clone(),
            private_key: assertion.private_key.clone(),
            algorithm: assertion.algorithm,
            lifetime_s: assertion.lifetime_s,
            key_id: assertion.key_id.clone(),
            claims: assertion.claims.clone(),
            jti: assertion.jti,
        }),
        client_assertion: oauth.client_key.as_ref().map(|key| ClientAssertion {
            private_key: key.private_key.clone(),
            key_id: key.key_id.clone(),
            algorithm: key.algorithm,
            claims: key.claims.clone(),
        }),
        dpop: oauth.dpop,
    })
}

/// What the file says of a token endpoint's or login call's answer that gave no token, before
/// the gateway's own reading: a refusal where `auth.token_rejected` says so (the account is
/// marked); a wait where `rate_limit.is_limited` names the answer, as it would any of the
/// provider's (a 429 with what `retry_after` reads: Podio's 420, Sage Intacct's GW-0010); no
/// refusal where `token_rejected` says that (a 502 with the provider's words; the account is left
/// as it is); else `None`.
fn token_answer_error(
    integration: &Integration,
    token_rejected: Option<&unigate_mapping::CredentialRefusal>,
    response: &ProviderResponse,
    scope: &unigate_mapping::Scope,
) -> Option<TokenError> {
    let status = response.status;
    let verdict = token_rejected.and_then(|refusal| {
        with_token_answer(response, |answer| {
            unigate_mapping::token_refused(refusal, answer, scope)
        })
    });
    if verdict == Some(true) {
        return Some(TokenError::Rejected {
            status,
            body: String::from_utf8_lossy(&response.body).into_owned(),
        });
    }
    let now = now_epoch();
    let limited = with_token_answer(response, |answer| {
        unigate_mapping::rate_limited(&integration.rate_limit, answer, scope, now)
    });
    if let Some(reading) = limited {
        return Some(TokenError::RateLimited {
            until_epoch: reading
                .wait
                .map(|seconds| now.saturating_add(seconds.ceil() as i64)),
        });
    }
    (verdict == Some(false)).then(|| {
        let raw = unigate_mapping::raw_body(&response.body);
        let words = token_answer_message(integration, status, &raw, scope)
            .map(|words| format!(" ({words})"))
            .unwrap_or_default();
        TokenError::Unavailable(format!(
            "the token endpoint answered HTTP {status}{words}, which the integration reads as no refusal of the credentials (`auth.token_rejected`)"
        ))
    })
}

/// What a token answer says: RFC 6749's `error_description`, else the file's words where its
/// `errors.message` reads them (Dropbox Sign's `error.error_msg`, Sage Intacct's `ia::error`;
/// written for API errors, it may read a bare `error` code first), else by the common keys.
fn token_answer_message(
    integration: &Integration,
    status: u16,
    body: &Value,
    scope: &unigate_mapping::Scope,
) -> Option<String> {
    if let Some(Value::String(description)) = body.get("error_description")
        && !description.is_empty()
    {
        return Some(description.clone());
    }
    let answer = Answer {
        status,
        headers: &[],
        body: &[],
        format: unigate_mapping::BodyFormat::Json,
    };
    unigate_mapping::fault_message(integration, answer, body, scope)
}

/// Why a login answered 2xx without a token, where the file can tell: a provider that answers
/// every call 200 (Veeva Vault) refuses credentials in the body, and the file's `auth.rejected`
/// reads a login answer as it reads any other (its limits are `rate_limit`'s, read before). A
/// refusal marks the account as a 401 from a login would; anything else stays "unavailable".
fn login_answer_error(
    integration: &Integration,
    account: &IntegratedAccount,
    answer: Answer<'_>,
) -> Option<TokenError> {
    let scope = unigate_mapping::Scope::new([("context", account.context.clone())]);
    (integration.auth_rejected.is_some()
        && unigate_mapping::credential_rejected(
            integration.auth_rejected.as_ref(),
            false,
            answer,
            &scope,
        ))
    .then(|| TokenError::Rejected {
        status: answer.status,
        body: String::from_utf8_lossy(answer.body).into_owned(),
    })
}

fn exchange_request(exchange: &RenderedExchange, now: i64) -> Result<ProviderRequest, TokenError> {
    let mut headers = vec![("Accept".to_owned(), "application/json".to_owned())];
    if let Some((content_type, _)) = &exchange.body {
        headers.push(("Content-Type".to_owned(), (*content_type).to_owned()));
    }
    let mut secret_headers = exchange.headers.clone();
    if let Some(jwt) = &exchange.jwt {
        let signed = sign_login_jwt(&jwt.issuer, &jwt.private_key, jwt.lifetime_s, now)?;
        secret_headers.push((
            "Authorization".to_owned(),
            Secret::new(format!("Bearer {}", signed.expose())),
        ));
    }
    Ok(ProviderRequest {
        method: match exchange.method {
            unigate_mapping::HttpMethod::Get => Method::Get,
            unigate_mapping::HttpMethod::Post => Method::Post,
        },
        url: absolute(&exchange.url, "login URL")?,
        headers,
        secret_headers,
        secret_query: Vec::new(),
        body: exchange
            .body
            .as_ref()
            .map(|(_, body)| body.expose().as_bytes().to_vec()),
        proof: None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn account(context: Value) -> IntegratedAccount {
        IntegratedAccount {
            id: "acc".into(),
            integration: "okta".into(),
            context,
            base_url: None,
            status: AccountStatus::Active,
            last_error: None,
            mapping: None,
        }
    }

    /// Another replica's token write keeps a walk's answers; new credentials, another host or
    /// another integration do not.
    #[test]
    fn only_a_token_write_leaves_an_account_the_same() {
        let before = account(json!({"client_secret": "s", "refresh_token": "rt-1",
            "access_token": "t1", "access_token_expires_at": "2099-01-01T00:00:00Z"}));
        let rotated = account(json!({"client_secret": "s", "refresh_token": "rt-2",
            "access_token": "t2", "access_token_expires_at": "2099-01-01T01:00:00Z"}));
        assert!(same_but_tokens(&before, &rotated));
        let dropped = account(json!({"client_secret": "s", "refresh_token": "rt-1"}));
        assert!(same_but_tokens(&before, &dropped));
        let new_secret = account(json!({"client_secret": "s2", "refresh_token": "rt-1"}));
        assert!(!same_but_tokens(&before, &new_secret));
        let mut elsewhere = before.clone();
        elsewhere.base_url = Some("https://other.example".into());
        assert!(!same_but_tokens(&before, &elsewhere));
        let mut other = before.clone();
        other.integration = "auth0".into();
        assert!(!same_but_tokens(&before, &other));
    }
}
