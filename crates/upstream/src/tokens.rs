//! Short-lived tokens for provider calls: the per-account cache and its lifecycle
//! ([`TokenManager`]), and the OAuth 2.0 token endpoint call ([`request_oauth_token`]: refresh
//! token, client credentials, a JWT bearer assertion, or a custom grant; form or JSON body).
//!
//! Lifecycle: a token is used while it is valid beyond a margin; at most one request for a new
//! one is in flight per account, and callers waiting for it share its result, a failure
//! included (remembered briefly, so N waiters do not make N failing calls); a wait has a
//! deadline; and the request runs to completion even when the caller that started it goes away,
//! so a rotated refresh token the provider already issued is never lost. What a request is (an
//! OAuth grant, a login call) and where its result is persisted is the caller's: it hands the
//! manager a future. Tokens and secrets travel as [`Secret`]; errors carry the endpoint's status
//! and body, never the request.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use moka::sync::Cache;
use serde::Deserialize;
use unigate_unified::{JwtAlgorithm, Secret};
use url::Url;

use crate::{Method, ProviderRequest, Upstream, UpstreamError};

/// An access token and when it stops being valid (seconds since the epoch; `None` = unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: Secret,
    pub expires_at: Option<i64>,
    /// The key a DPoP-bound token is bound to: every call made with it carries a proof signed
    /// with this key (`None`: a bearer token).
    pub dpop_key: Option<std::sync::Arc<crate::dpop::DpopKey>>,
}

/// A token as a request for one returned it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: AccessToken,
    /// A replacement refresh token, when the endpoint rotated it.
    pub rotated_refresh_token: Option<Secret>,
    /// Whether this call obtained the token (rather than finding it cached).
    pub fresh: bool,
    /// Context values the mapping keeps from the token answer (`auth.keep`), written with it.
    pub kept: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenError {
    /// The endpoint refused: the grant is invalid or revoked; the account must be reconnected.
    #[error("the token endpoint refused the credentials (HTTP {status})")]
    Rejected { status: u16, body: String },
    #[error("the token endpoint could not be used: {0}")]
    Unavailable(String),
    /// The endpoint is rate-limiting token requests (HTTP 429): not a refusal. `until_epoch`:
    /// when it said to ask again (its `Retry-After`), if it did.
    #[error("the token endpoint is rate-limiting requests (HTTP 429)")]
    RateLimited { until_epoch: Option<i64> },
    /// The request could not start now (every connection for token leases is held by token
    /// requests in flight): nothing is wrong with the account, retry shortly.
    #[error("{0}")]
    Busy(String),
}

pub fn now_epoch() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// How long a failed token request is answered from memory, so that callers queued behind it
/// fail at once instead of each waiting for the endpoint again.
const FAILURE_MEMORY: Duration = Duration::from_secs(5);
/// The longest a caller waits for another caller's token request.
const WAIT_DEADLINE: Duration = Duration::from_secs(45);

#[derive(Debug, Default)]
struct SlotState {
    token: Option<AccessToken>,
    /// The last failure, when it happened and how long it is answered from memory.
    failed: Option<(Instant, Duration, TokenError)>,
}

/// The longest a token endpoint's rate limit is answered from memory (its `Retry-After` within
/// this, else [`FAILURE_MEMORY`]).
const RATE_LIMIT_MEMORY: Duration = Duration::from_secs(300);

/// How long a failed token request is answered from memory: a rate limit until the endpoint's
/// `Retry-After` (within [`RATE_LIMIT_MEMORY`]), anything else [`FAILURE_MEMORY`].
fn failure_memory(error: &TokenError) -> Duration {
    match error {
        TokenError::RateLimited {
            until_epoch: Some(until),
        } => {
            let left = until.saturating_sub(now_epoch()).max(0) as u64;
            Duration::from_secs(left)
                .min(RATE_LIMIT_MEMORY)
                .max(FAILURE_MEMORY)
        }
        _ => FAILURE_MEMORY,
    }
}

/// One account's tokens: the state its callers queue for, and the tokens it last held, readable
/// without queueing ([`TokenManager::recent`]).
#[derive(Debug, Default)]
struct Slot {
    state: tokio::sync::Mutex<SlotState>,
    /// The current token and the one before it: an error answer a provider gives may quote
    /// either (a refused token is replaced while the answer that refused it is still on its
    /// way to the caller). Only ever locked for a copy, never across an await.
    recent: std::sync::Mutex<[Option<Secret>; 2]>,
}

impl Slot {
    fn remember(&self, token: &Secret) {
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if recent[0].as_ref() != Some(token) {
            recent[1] = recent[0].replace(token.clone());
        }
    }
}

/// Tokens per account.
#[derive(Debug, Clone)]
pub struct TokenManager {
    margin: Duration,
    slots: Cache<String, Arc<Slot>>,
}

impl TokenManager {
    pub fn new(margin: Duration) -> Self {
        TokenManager {
            margin,
            slots: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(24 * 3600))
                .build(),
        }
    }

    /// Whether `token` is valid beyond the refresh margin.
    pub fn is_fresh(&self, token: &AccessToken) -> bool {
        token.expires_at.is_none_or(|expires_at| {
            expires_at.saturating_sub(self.margin.as_secs() as i64) > now_epoch()
        })
    }

    fn slot(&self, account: &str) -> Arc<Slot> {
        self.slots
            .get_with(account.to_owned(), || Arc::new(Slot::default()))
    }

    /// The tokens `account` last held (the current one and the one before), for cleaning an
    /// error answer that may quote them. Never waits for a token request in flight.
    pub fn recent(&self, account: &str) -> Vec<Secret> {
        let Some(slot) = self.slots.get(account) else {
            return Vec::new();
        };
        let recent = slot
            .recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        recent.iter().flatten().cloned().collect()
    }

    /// Forgets what is cached for `account` (its credentials changed, or it was deleted): the
    /// next call obtains a token with the account as it is now.
    pub fn forget(&self, account: &str) {
        self.slots.invalidate(account);
    }

    /// Takes the token the account holds as the store has it now (`stored`: none when an admin
    /// write dropped it with the credentials it was issued for), after another process changed
    /// the account. The cached token stays among the recent ones (an answer on its way may quote
    /// it), and a remembered failure is forgotten. Nothing is cached for an account no call asked
    /// a token for; while a caller holds the account's slot (a token request in flight), the
    /// slot is dropped instead, so later callers start from the store's copy.
    pub fn adopt(&self, account: &str, stored: impl FnOnce() -> Option<AccessToken>) {
        let Some(slot) = self.slots.get(account) else {
            return;
        };
        let Ok(mut state) = slot.state.try_lock() else {
            self.slots.invalidate(account);
            return;
        };
        let stored = stored();
        if let Some(token) = &stored {
            slot.remember(&token.token);
        }
        state.token = stored;
        state.failed = None;
    }

    /// A valid token for `account`: the cached one (or the one `seed` reads, the account's own,
    /// when nothing is cached: read only then, since a DPoP-bound token's key is parsed) while it
    /// is fresh and not `reject` (a token the provider just refused), else the result of
    /// `request`, which runs to completion even if this caller goes away.
    pub async fn access_token<F>(
        &self,
        account: &str,
        seed: impl FnOnce() -> Option<AccessToken>,
        reject: Option<&Secret>,
        request: F,
    ) -> Result<Issued, TokenError>
    where
        F: Future<Output = Result<Issued, TokenError>> + Send + 'static,
    {
        let slot = self.slot(account);
        let mut state = tokio::time::timeout(WAIT_DEADLINE, slot.state.lock())
            .await
            .map_err(|_| {
                TokenError::Unavailable(
                    "another request for this account's token is taking too long".to_owned(),
                )
            })?;
        if state.token.is_none()
            && let Some(seeded) = seed()
        {
            slot.remember(&seeded.token);
            state.token = Some(seeded);
        }
        if let Some(token) = state.token.as_ref()
            && self.is_fresh(token)
            && reject != Some(&token.token)
        {
            return Ok(Issued {
                token: token.clone(),
                rotated_refresh_token: None,
                fresh: false,
                kept: Vec::new(),
            });
        }
        if let Some((at, memory, error)) = &state.failed
            && at.elapsed() < *memory
        {
            return Err(error.clone());
        }
        let result = tokio::spawn(request).await.unwrap_or_else(|error| {
            Err(TokenError::Unavailable(format!(
                "the token request stopped: {error}"
            )))
        });
        match &result {
            Ok(issued) => {
                slot.remember(&issued.token.token);
                state.token = Some(issued.token.clone());
                state.failed = None;
            }
            Err(error) => {
                state.token = None;
                state.failed = Some((Instant::now(), failure_memory(error), error.clone()));
            }
        }
        // `fresh` as the request says: a token another process obtained meanwhile is not.
        result
    }
}

/// An OAuth 2.0 token request.
#[derive(Debug, Clone)]
pub struct OAuthRequest {
    pub token_url: Url,
    pub grant_type: String,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub refresh_token: Option<Secret>,
    pub scope: Option<String>,
    /// HTTP Basic client authentication instead of credentials in the body.
    pub basic_client_auth: bool,
    /// A JSON body instead of a form.
    pub json_body: bool,
    /// Extra parameters (e.g. `audience`, Zoom's `account_id`).
    pub extra_params: Vec<(String, Secret)>,
    /// A JWT bearer assertion to sign and send (RFC 7523).
    pub assertion: Option<Assertion>,
    /// Client authentication by a signed JWT (`private_key_jwt`, RFC 7523 §2.2) in place of a
    /// secret.
    pub client_assertion: Option<ClientAssertion>,
    /// Ask for a DPoP-bound token (RFC 9449): the request carries a proof, and the token
    /// comes with the key it is bound to.
    pub dpop: bool,
}

/// The key that signs a `private_key_jwt` client assertion, its `kid`, how it signs, and the
/// provider's own claims beside RFC 7523's (NetSuite's `scope`).
#[derive(Debug, Clone)]
pub struct ClientAssertion {
    pub private_key: Secret,
    pub key_id: Option<String>,
    pub algorithm: JwtAlgorithm,
    pub claims: Vec<(String, String)>,
}

/// How long a client assertion is valid: five minutes is what it takes to be used once (Okta
/// refuses one valid for more than an hour).
const CLIENT_ASSERTION_LIFETIME_S: i64 = 300;

/// The `client_assertion` of a `private_key_jwt` token request: `iss` and `sub` the client id,
/// `aud` the token endpoint, a fresh `jti` (RFC 7523 §3), the provider's own claims, signed
/// with the account's key as the file says (with its `kid` when the account names one, for a
/// client that has several).
fn sign_client_assertion(
    assertion: &ClientAssertion,
    client_id: &str,
    token_url: &Url,
    now: i64,
) -> Result<Secret, TokenError> {
    let mut audience = token_url.clone();
    audience.set_query(None);
    audience.set_fragment(None);
    // Issued 30 s in the past: Okta refuses an assertion issued "in the future" by a clock
    // ahead of its own, and that refusal would mark the account.
    let iat = now.saturating_sub(30);
    let mut claims = serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience.as_str(),
        "iat": iat,
        "exp": iat.saturating_add(CLIENT_ASSERTION_LIFETIME_S),
        "jti": crate::dpop::random_id().map_err(TokenError::Unavailable)?,
    });
    for (name, value) in &assertion.claims {
        claims[name] = serde_json::Value::String(value.clone());
    }
    let mut header = jwt_header(assertion.algorithm);
    header.kid = assertion.key_id.clone();
    sign_jwt(
        &header,
        &claims,
        &assertion.private_key,
        "the client assertion",
    )
}

/// The claims and key of a JWT bearer assertion.
#[derive(Debug, Clone)]
pub struct Assertion {
    pub issuer: String,
    pub subject: Option<String>,
    pub audience: String,
    pub scope: Option<String>,
    pub private_key: Secret,
    pub algorithm: JwtAlgorithm,
    pub lifetime_s: u64,
    /// The `kid` header.
    pub key_id: Option<String>,
    /// The provider's own claims (Box's `box_sub_type`), beside the standard ones.
    pub claims: Vec<(String, String)>,
    /// A fresh `jti` in every assertion.
    pub jti: bool,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    /// `DPoP` for a token bound to the proof's key (RFC 9449 §5); `Bearer` otherwise. Any JSON
    /// value: an odd one must not turn a good answer into an unreadable one.
    #[serde(default)]
    token_type: Option<serde_json::Value>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    /// Not RFC 6749's, but some token endpoints say when instead of how long (Greenhouse).
    #[serde(default)]
    expires_at: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
}

impl TokenResponse {
    /// When the token expires, epoch seconds: `expires_in` (RFC 6749), else an `expires_at`
    /// time (RFC 3339, or epoch seconds or milliseconds, as a number or as text), else the
    /// access token's own `exp` when it is a JWT. `None` (no word of it, or a time already
    /// past): the token is used until the provider refuses it, then renewed once.
    fn expires_at(&self, now: i64) -> Option<i64> {
        let lifetime = self.expires_in.as_ref().and_then(|value| match value {
            serde_json::Value::Number(number) => number.as_i64(),
            serde_json::Value::String(text) => text.trim().parse().ok(),
            _ => None,
        });
        lifetime
            .filter(|seconds| *seconds > 0)
            .and_then(|seconds| now.checked_add(seconds))
            .or_else(|| {
                let at = self.expires_at.as_ref()?;
                // Epoch seconds written as text (Front's answer may): read as the number.
                let number = at
                    .as_str()
                    .and_then(|text| text.trim().parse::<f64>().ok())
                    .and_then(serde_json::Number::from_f64)
                    .map(serde_json::Value::Number);
                unigate_unified::time::parse_json_timestamp(number.as_ref().unwrap_or(at))
                    .map(|millis| millis / 1000)
            })
            .or_else(|| unigate_unified::time::jwt_expiry(&self.access_token))
            // A time already past is a clock or an answer not to trust: renewing on every
            // call would follow from it.
            .filter(|at| *at > now)
    }
}

#[derive(serde::Serialize)]
struct LoginClaims<'a> {
    iss: &'a str,
    iat: i64,
    exp: i64,
}

/// Signs the JWT a login call carries as its bearer credential (a GitHub App's): RS256 over
/// `{iss, iat, exp}`, issued 30 s in the past as GitHub's own client does (a JWT issued "in
/// the future" by a clock ahead of GitHub's is refused), valid `lifetime_s` from then.
pub fn sign_login_jwt(
    issuer: &str,
    private_key: &Secret,
    lifetime_s: u64,
    now: i64,
) -> Result<Secret, TokenError> {
    let iat = now.saturating_sub(30);
    let claims = LoginClaims {
        iss: issuer,
        iat,
        exp: iat.saturating_add(i64::try_from(lifetime_s).unwrap_or(i64::MAX)),
    };
    sign_rs256(&claims, private_key, "the login JWT")
}

/// Signs a JWT bearer assertion with the account's key.
pub fn sign_assertion(assertion: &Assertion, now: i64) -> Result<Secret, TokenError> {
    use serde_json::Value;
    let mut claims = serde_json::Map::new();
    claims.insert("iss".to_owned(), Value::from(assertion.issuer.as_str()));
    if let Some(subject) = &assertion.subject {
        claims.insert("sub".to_owned(), Value::from(subject.as_str()));
    }
    claims.insert("aud".to_owned(), Value::from(assertion.audience.as_str()));
    if let Some(scope) = &assertion.scope {
        claims.insert("scope".to_owned(), Value::from(scope.as_str()));
    }
    claims.insert("iat".to_owned(), Value::from(now));
    claims.insert(
        "exp".to_owned(),
        Value::from(now.saturating_add(assertion.lifetime_s as i64)),
    );
    for (name, value) in &assertion.claims {
        claims.insert(name.clone(), serde_json::Value::String(value.clone()));
    }
    if assertion.jti {
        claims.insert(
            "jti".to_owned(),
            serde_json::Value::String(crate::dpop::random_id().map_err(TokenError::Unavailable)?),
        );
    }
    let mut header = jwt_header(assertion.algorithm);
    header.kid = assertion.key_id.clone();
    sign_jwt(&header, &claims, &assertion.private_key, "the assertion")
}

/// `claims` as a JWT signed RS256 with the account's PEM key.
fn sign_rs256(
    claims: &impl serde::Serialize,
    private_key: &Secret,
    what: &str,
) -> Result<Secret, TokenError> {
    sign_jwt(&jwt_header(JwtAlgorithm::RS256), claims, private_key, what)
}

fn jwt_header(algorithm: JwtAlgorithm) -> jsonwebtoken::Header {
    jsonwebtoken::Header::new(match algorithm {
        JwtAlgorithm::RS256 => jsonwebtoken::Algorithm::RS256,
        JwtAlgorithm::PS256 => jsonwebtoken::Algorithm::PS256,
        JwtAlgorithm::ES256 => jsonwebtoken::Algorithm::ES256,
    })
}

/// `claims` as a JWT signed with the account's PEM key, as `header.alg` says. A key that is
/// not of the kind the algorithm needs is the account's to fix: a refusal, which marks it
/// `needs_reauth`.
fn sign_jwt(
    header: &jsonwebtoken::Header,
    claims: &impl serde::Serialize,
    private_key: &Secret,
    what: &str,
) -> Result<Secret, TokenError> {
    let pem = private_key.expose().as_bytes();
    let (key, kind) = match header.alg {
        jsonwebtoken::Algorithm::ES256 => {
            (jsonwebtoken::EncodingKey::from_ec_pem(pem), "EC (P-256)")
        }
        _ => (jsonwebtoken::EncodingKey::from_rsa_pem(pem), "RSA"),
    };
    let key = key.map_err(|_| TokenError::Rejected {
        status: 400,
        body: format!("the account's private key is not a PEM {kind} private key"),
    })?;
    jsonwebtoken::encode(header, claims, &key)
        .map(Secret::new)
        .map_err(|error| TokenError::Unavailable(format!("could not sign {what}: {error}")))
}

/// What the integration says of a token endpoint's answer that gave no token (its
/// `auth.token_rejected`): the error it stands for, or `None` for the default reading.
pub type TokenAnswerReading<'a> =
    &'a (dyn Fn(&crate::ProviderResponse) -> Option<TokenError> + Sync);

/// Calls an OAuth 2.0 token endpoint; the token and its answer's body (for the mapping's
/// `auth.keep`). An answer that gives no token is read by `reading` first.
pub async fn request_oauth_token(
    upstream: &Upstream,
    request: &OAuthRequest,
    reading: TokenAnswerReading<'_>,
) -> Result<(Issued, bytes::Bytes), TokenError> {
    if request.refresh_token.is_none() && request.grant_type == "refresh_token" {
        return Err(TokenError::Rejected {
            status: 401,
            body: "the account has no refresh token".to_owned(),
        });
    }
    let dpop_key = match request.dpop {
        true => Some(std::sync::Arc::new(
            crate::dpop::DpopKey::generate().map_err(TokenError::Unavailable)?,
        )),
        false => None,
    };
    let mut token_request = oauth_token_request(request, now_epoch())?;
    token_request.proof = dpop_key.as_ref().map(|key| crate::dpop::Proof {
        key: key.clone(),
        access_token: None,
        nonce: None,
    });
    let mut response = send_raw(upstream, &token_request).await?;
    // RFC 9449 §8: a server that wants a nonce in the proof refuses the first one with
    // `use_dpop_nonce` and gives it in `DPoP-Nonce` (Okta always does); the request is made
    // again with a proof carrying it, and with new assertions: Okta spends a client
    // assertion's `jti` on the refused request too ("The client_assertion token has already
    // been used"). Once more when the server changes its nonce meanwhile, as Okta's SDK allows.
    for _ in 0..2 {
        let (Some(proof), Some(nonce)) = (&token_request.proof, asked_nonce(&response)) else {
            break;
        };
        let mut proof = proof.clone();
        proof.nonce = Some(nonce);
        token_request = oauth_token_request(request, now_epoch())?;
        token_request.proof = Some(proof);
        response = send_raw(upstream, &token_request).await?;
    }
    if token_request.proof.is_some() && asked_nonce(&response).is_some() {
        // A server that keeps asking is not refusing the credentials.
        return Err(TokenError::Unavailable(
            "the token endpoint kept asking for a new DPoP nonce".to_owned(),
        ));
    }
    let response = judge_token_response(&token_request, response, true, reading)?;
    let parsed = match read_token_answer(response.status, &response.body) {
        Ok(parsed) => parsed,
        // A 2xx without a token (Slack's and Zoho's `error` answers): the file's reading first.
        Err(error) => return Err(reading(&response).unwrap_or(error)),
    };
    // RFC 9449 §5: a server that answers a DPoP token request with a Bearer token (an Okta app
    // that does not require DPoP) issued a token to use as Bearer, with no key bound to it.
    let token_type = parsed
        .token_type
        .as_ref()
        .and_then(serde_json::Value::as_str);
    let bound = token_type.is_some_and(|kind| kind.eq_ignore_ascii_case("DPoP"));
    if dpop_key.is_some() && !bound {
        tracing::warn!(
            token_type = token_type.unwrap_or("none"),
            "a DPoP token was asked for and another kind issued: it is used as a Bearer token"
        );
    }
    let issued = Issued {
        token: AccessToken {
            expires_at: parsed.expires_at(now_epoch()),
            token: Secret::new(parsed.access_token),
            dpop_key: dpop_key.filter(|_| bound),
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
        kept: Vec::new(),
    };
    Ok((issued, response.body))
}

/// The token request, its assertions signed at `now` (each one is good for one request).
fn oauth_token_request(request: &OAuthRequest, now: i64) -> Result<ProviderRequest, TokenError> {
    let mut params: Vec<(String, Secret)> = vec![(
        "grant_type".to_owned(),
        Secret::new(request.grant_type.clone()),
    )];
    if let Some(refresh) = &request.refresh_token {
        params.push(("refresh_token".to_owned(), refresh.clone()));
    }
    if let Some(assertion) = &request.assertion {
        params.push(("assertion".to_owned(), sign_assertion(assertion, now)?));
    } else if let Some(scope) = &request.scope {
        params.push(("scope".to_owned(), Secret::new(scope.clone())));
    }
    params.extend(request.extra_params.iter().cloned());
    let mut secret_headers = Vec::new();
    match (
        &request.client_id,
        &request.client_secret,
        &request.client_assertion,
    ) {
        (Some(id), _, Some(assertion)) => {
            params.push((
                "client_assertion_type".to_owned(),
                Secret::new("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ));
            params.push((
                "client_assertion".to_owned(),
                sign_client_assertion(assertion, id, &request.token_url, now)?,
            ));
        }
        (Some(id), Some(secret), _) if request.basic_client_auth => {
            use base64::Engine as _;
            let pair = format!("{id}:{}", secret.expose());
            secret_headers.push((
                "Authorization".to_owned(),
                Secret::new(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )),
            ));
        }
        (id, secret, _) => {
            if let Some(id) = id {
                params.push(("client_id".to_owned(), Secret::new(id.clone())));
            }
            if let Some(secret) = secret {
                params.push(("client_secret".to_owned(), secret.clone()));
            }
        }
    }
    let (content_type, body) = if request.json_body {
        let object: serde_json::Map<String, serde_json::Value> = params
            .iter()
            .map(|(name, value)| {
                (
                    name.clone(),
                    serde_json::Value::String(value.expose().to_owned()),
                )
            })
            .collect();
        (
            "application/json",
            serde_json::Value::Object(object).to_string(),
        )
    } else {
        (
            "application/x-www-form-urlencoded",
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params.iter().map(|(name, value)| (name, value.expose())))
                .finish(),
        )
    };
    Ok(ProviderRequest {
        method: Method::Post,
        url: request.token_url.clone(),
        headers: vec![
            ("Content-Type".to_owned(), content_type.to_owned()),
            ("Accept".to_owned(), "application/json".to_owned()),
        ],
        secret_headers,
        secret_query: Vec::new(),
        body: Some(body.into_bytes()),
        proof: None,
    })
}

/// Error codes a token endpoint's 2xx answer may carry that say "not now" rather than "no":
/// RFC 6749's transient ones, Slack's (whose token endpoint answers HTTP 200 {ok: false}), and
/// Zoho's throttle of refreshes ("maximum of 10 access tokens from a refresh token in a span of
/// 10 minutes": the status "remains 200. However, the message… says 'Access Denied'", Zoho's
/// Kaizen #43), where its refusals are other codes (`invalid_code`).
const TRANSIENT_TOKEN_ERRORS: &[&str] = &[
    "Access Denied",
    "temporarily_unavailable",
    "server_error",
    "ratelimited",
    "rate_limited",
    "service_unavailable",
    "internal_error",
    "fatal_error",
    "request_timeout",
];

/// A 2xx token answer: the token, or what its body says instead. A body without an access token
/// that names an `error` (RFC 6749's field; Slack's token endpoint answers every refusal with HTTP
/// 200 and {"ok": false, "error": "invalid_refresh_token"}) is a refusal, unless the error is a
/// transient one; any other body without a token is the endpoint being unusable.
fn read_token_answer(status: u16, body: &[u8]) -> Result<TokenResponse, TokenError> {
    if let Ok(parsed) = serde_json::from_slice::<TokenResponse>(body) {
        return Ok(parsed);
    }
    let error = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| value.get("error")?.as_str().map(str::to_owned));
    Err(match error {
        Some(error) if !TRANSIENT_TOKEN_ERRORS.contains(&error.as_str()) => TokenError::Rejected {
            status,
            body: String::from_utf8_lossy(body).into_owned(),
        },
        Some(error) => TokenError::Unavailable(format!(
            "the token endpoint answered HTTP {status} with error `{error}`"
        )),
        None => {
            TokenError::Unavailable("the token endpoint's answer has no access_token".to_owned())
        }
    })
}

/// Sends a token request: a 2xx answer, or the error it stands for (what `reading` says of
/// it, else a refusal when the endpoint says no; unavailable when it cannot answer: a connect
/// error, a 5xx, a 429).
pub async fn send_token_request(
    upstream: &Upstream,
    request: ProviderRequest,
    reading: TokenAnswerReading<'_>,
) -> Result<crate::ProviderResponse, TokenError> {
    let response = send_raw(upstream, &request).await?;
    judge_token_response(&request, response, false, reading)
}

/// A token endpoint's answer, whatever its status.
async fn send_raw(
    upstream: &Upstream,
    request: &ProviderRequest,
) -> Result<crate::ProviderResponse, TokenError> {
    upstream
        .send(request)
        .await
        .map_err(|error: UpstreamError| TokenError::Unavailable(error.to_string()))
}

/// The nonce a 400 `use_dpop_nonce` answer asks the next proof to carry (RFC 9449 §8).
fn asked_nonce(response: &crate::ProviderResponse) -> Option<String> {
    if response.status != 400 {
        return None;
    }
    let error = serde_json::from_slice::<serde_json::Value>(&response.body).ok()?;
    (error.get("error")?.as_str()? == "use_dpop_nonce")
        .then(|| response.header("dpop-nonce"))
        .flatten()
        .filter(|nonce| !nonce.is_empty())
        .map(str::to_owned)
}

/// A 2xx token answer, or the error its status stands for. An OAuth token endpoint (`oauth`)
/// refuses credentials with a 400 or a 401 (RFC 6749 §5.2), or with another 4xx answered in its
/// own JSON (CrowdStrike's 403 `{"errors": [{"message": "access denied, invalid client"}]}`);
/// another 4xx that is not JSON (a firewall's or proxy's 403 page, a 404 page for a wrong token
/// URL) says nothing of the credentials, and marking the account would ask for a reconnect that
/// fails the same way. A login call (`token_exchange`) is no OAuth endpoint: its 4xx refuse.
fn judge_token_response(
    request: &ProviderRequest,
    response: crate::ProviderResponse,
    oauth: bool,
    reading: TokenAnswerReading<'_>,
) -> Result<crate::ProviderResponse, TokenError> {
    let status = response.status;
    if (200..300).contains(&status) {
        return Ok(response);
    }
    if let Some(error) = reading(&response) {
        return Err(error);
    }
    if (300..400).contains(&status) {
        // Not a refusal: the endpoint sends the client elsewhere (CrowdStrike answers a client of
        // another cloud with a 308 to that cloud's host). Marking the account would ask for a
        // reconnect that fails the same way; the fix is the account's host.
        return Err(TokenError::Unavailable(redirect_reason(request, &response)));
    }
    if status == 429 {
        return Err(TokenError::RateLimited {
            until_epoch: response
                .header("retry-after")
                .and_then(retry_after_seconds)
                .map(|seconds| now_epoch().saturating_add(seconds)),
        });
    }
    if status >= 500 {
        return Err(TokenError::Unavailable(format!("HTTP {status}")));
    }
    if oauth && !matches!(status, 400 | 401) && !is_json_object(&response.body) {
        return Err(TokenError::Unavailable(format!(
            "the token endpoint answered HTTP {status} with no error of its own (not JSON), which is no refusal of the credentials (a firewall, an IP allowlist or a wrong token URL?)"
        )));
    }
    Err(TokenError::Rejected {
        status,
        body: String::from_utf8_lossy(&response.body).into_owned(),
    })
}

/// Whether a body is a JSON object: an endpoint's own error answer, where a proxy's or a
/// firewall's is a page of HTML or text.
fn is_json_object(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|value| value.is_object())
}

/// A `Retry-After` in whole seconds: a number of seconds, or an HTTP date.
fn retry_after_seconds(value: &str) -> Option<i64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| seconds.ceil() as i64);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at = at.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(at.saturating_sub(now_epoch()).max(0))
}

/// What a redirecting token endpoint said: where it points, as an origin only (a `Location`
/// may carry a query, and the gateway does not follow it anyway).
fn redirect_reason(request: &ProviderRequest, response: &crate::ProviderResponse) -> String {
    let target = response
        .header("location")
        .and_then(|location| request.url.join(location).ok())
        .filter(|url| url.has_host())
        .map(|url| url.origin().ascii_serialization());
    match target {
        Some(origin) => format!(
            "the token endpoint answered HTTP {} redirecting to {origin}, which is not followed: the account's host or region is likely not the one the provider serves it from",
            response.status
        ),
        None => format!(
            "the token endpoint answered HTTP {} (a redirect, not followed)",
            response.status
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_lasts_what_its_answer_says_in_seconds_a_time_or_its_own_claims() {
        use base64::Engine as _;
        let now = 1_800_000_000;
        let expiry = |body: &str| {
            read_token_answer(200, body.as_bytes())
                .unwrap()
                .expires_at(now)
        };
        assert_eq!(
            expiry(r#"{"access_token": "t", "expires_in": 3600}"#),
            Some(now + 3600)
        );
        assert_eq!(
            expiry(r#"{"access_token": "t", "expires_in": "7200"}"#),
            Some(now + 7200)
        );
        // Greenhouse says when, not how long.
        assert_eq!(
            expiry(r#"{"access_token": "t", "expires_at": "2027-01-15T09:20:00Z"}"#),
            Some(now + 4_800)
        );
        assert_eq!(
            expiry(r#"{"access_token": "t", "expires_at": 1800003600}"#),
            Some(1_800_003_600)
        );
        // Front's: epoch seconds, with milliseconds, as text.
        assert_eq!(
            expiry(r#"{"access_token": "t", "expires_at": " 1800003600.012"}"#),
            Some(1_800_003_600)
        );
        assert_eq!(
            expiry(r#"{"access_token": "t", "expires_at": "1800003600000"}"#),
            Some(1_800_003_600)
        );
        assert_eq!(
            expiry(r#"{"access_token": "t", "expires_at": "soon"}"#),
            None
        );
        // A JWT access token and no word of its lifetime: its `exp`.
        let encode = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let jwt = format!(
            "{}.{}.sig",
            encode(r#"{"alg":"RS256"}"#),
            encode(r#"{"exp":1800001800}"#)
        );
        assert_eq!(
            expiry(&format!(r#"{{"access_token": "{jwt}"}}"#)),
            Some(1_800_001_800)
        );
        // expires_in wins over the rest; nothing at all: unknown.
        assert_eq!(
            expiry(&format!(
                r#"{{"access_token": "{jwt}", "expires_in": 60, "expires_at": 1800003600}}"#
            )),
            Some(now + 60)
        );
        assert_eq!(expiry(r#"{"access_token": "opaque"}"#), None);
        assert_eq!(
            expiry(r#"{"access_token": "t", "expires_at": "2020-01-01T00:00:00Z"}"#),
            None
        );
    }

    #[test]
    fn a_2xx_token_answer_naming_an_error_is_a_refusal_unless_it_is_transient() {
        let read = |body: &str| read_token_answer(200, body.as_bytes());
        assert!(read(r#"{"access_token": "t", "expires_in": 3600}"#).is_ok());
        assert_eq!(
            read(r#"{"ok": false, "error": "invalid_refresh_token"}"#).err(),
            Some(TokenError::Rejected {
                status: 200,
                body: r#"{"ok": false, "error": "invalid_refresh_token"}"#.to_owned()
            })
        );
        assert!(matches!(
            read(r#"{"error": "Access Denied", "error_description": "You have made too many requests continuously. Please try again after some time.", "status": "failure"}"#).err(),
            Some(TokenError::Unavailable(_))
        ));
        assert!(matches!(
            read(r#"{"error": "invalid_code"}"#).err(),
            Some(TokenError::Rejected { status: 200, .. })
        ));
        assert_eq!(
            read(r#"{"ok": false, "error": "ratelimited"}"#).err(),
            Some(TokenError::Unavailable(
                "the token endpoint answered HTTP 200 with error `ratelimited`".to_owned()
            ))
        );
        for unusable in [
            r#"{"ok": true}"#,
            "<html>maintenance</html>",
            r#"{"error": 3}"#,
        ] {
            assert_eq!(
                read(unusable).err(),
                Some(TokenError::Unavailable(
                    "the token endpoint's answer has no access_token".to_owned()
                )),
                "{unusable}"
            );
        }
    }

    /// A 4xx naming RFC 6749's `server_error` is a refusal all the same (ServiceNow refuses a
    /// dead refresh token with 401 `server_error` "access_denied"); what the file reads of an
    /// answer comes before the default.
    #[test]
    fn the_files_reading_of_a_token_answer_comes_before_the_default() {
        let request = ProviderRequest {
            method: Method::Post,
            url: Url::parse("https://id.example.test/token").unwrap(),
            headers: Vec::new(),
            secret_headers: Vec::new(),
            secret_query: Vec::new(),
            body: None,
            proof: None,
        };
        let judge = |status: u16, body: &str, reading: TokenAnswerReading<'_>| {
            let response = crate::ProviderResponse {
                status,
                headers: Default::default(),
                body: bytes::Bytes::from(body.to_owned()),
            };
            judge_token_response(&request, response, true, reading).err()
        };
        let default_reading = |_: &crate::ProviderResponse| None;
        let refusal = r#"{"error_description": "access_denied", "error": "server_error"}"#;
        assert_eq!(
            judge(401, refusal, &default_reading),
            Some(TokenError::Rejected {
                status: 401,
                body: refusal.to_owned()
            })
        );
        let reading = |response: &crate::ProviderResponse| {
            (response.status == 401).then(|| TokenError::Unavailable("the file's".to_owned()))
        };
        assert_eq!(
            judge(401, refusal, &reading),
            Some(TokenError::Unavailable("the file's".to_owned()))
        );
        assert_eq!(judge(200, r#"{"access_token": "t"}"#, &reading), None);
    }

    fn issued(token: &str) -> Result<Issued, TokenError> {
        Ok(Issued {
            token: AccessToken {
                token: Secret::new(token.to_owned()),
                expires_at: Some(0), // expired at once: every call asks again
                dpop_key: None,
            },
            rotated_refresh_token: None,
            fresh: true,
            kept: Vec::new(),
        })
    }

    #[tokio::test]
    async fn the_current_and_the_previous_token_are_known_without_queueing() {
        let tokens = TokenManager::new(Duration::from_secs(60));
        assert!(tokens.recent("acc").is_empty());
        let seeded = AccessToken {
            token: Secret::new("seeded-token".to_owned()),
            expires_at: Some(0),
            dpop_key: None,
        };
        tokens
            .access_token("acc", || Some(seeded), None, async {
                issued("first-token")
            })
            .await
            .unwrap();
        let recent = |tokens: &TokenManager| -> Vec<String> {
            tokens
                .recent("acc")
                .iter()
                .map(|token| token.expose().to_owned())
                .collect()
        };
        assert_eq!(recent(&tokens), ["first-token", "seeded-token"]);
        tokens
            .access_token("acc", || None, None, async { issued("second-token") })
            .await
            .unwrap();
        assert_eq!(recent(&tokens), ["second-token", "first-token"]);
        // While a token request holds the account's queue, the tokens are still known.
        let slot = tokens.slot("acc");
        let _queue = slot.state.lock().await;
        assert_eq!(recent(&tokens), ["second-token", "first-token"]);
    }

    fn test_rsa_key(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/keys")
            .join(name);
        std::fs::read_to_string(path).unwrap()
    }

    /// NetSuite's client credentials take PS256 or ES256 assertions only, with `scope` in the
    /// assertion: each verifies with the public half, under the algorithm its header names.
    #[test]
    fn a_client_assertion_is_signed_as_the_file_says_with_the_providers_claims() {
        use base64::Engine as _;
        use ring::signature::KeyPair as _;
        use serde_json::json;
        let token_url = Url::parse("https://acct.suitetalk.api.netsuite.com/token?x=1").unwrap();
        let rsa = ClientAssertion {
            private_key: Secret::new(test_rsa_key("test-service-account.key")),
            key_id: Some("cert-1".to_owned()),
            algorithm: JwtAlgorithm::PS256,
            claims: vec![("scope".to_owned(), "rest_webservices".to_owned())],
        };
        let signed = sign_client_assertion(&rsa, "client-1", &token_url, 1_800_000_000).unwrap();
        let public = jsonwebtoken::DecodingKey::from_rsa_pem(
            test_rsa_key("test-service-account.pub").as_bytes(),
        )
        .unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::PS256);
        validation.validate_exp = false;
        validation.set_audience(&["https://acct.suitetalk.api.netsuite.com/token"]);
        let decoded =
            jsonwebtoken::decode::<serde_json::Value>(signed.expose(), &public, &validation)
                .unwrap();
        assert_eq!(decoded.header.kid.as_deref(), Some("cert-1"));
        let claims = &decoded.claims;
        assert_eq!(
            (&claims["iss"], &claims["sub"], &claims["scope"]),
            (
                &json!("client-1"),
                &json!("client-1"),
                &json!("rest_webservices")
            )
        );
        assert_eq!(
            (claims["iat"].as_i64(), claims["exp"].as_i64()),
            (Some(1_799_999_970), Some(1_800_000_270))
        );

        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        );
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        let ec = ClientAssertion {
            private_key: Secret::new(pem),
            algorithm: JwtAlgorithm::ES256,
            ..rsa.clone()
        };
        let signed = sign_client_assertion(&ec, "client-1", &token_url, 1_800_000_000).unwrap();
        let public = jsonwebtoken::DecodingKey::from_ec_der(pair.public_key().as_ref());
        validation.algorithms = vec![jsonwebtoken::Algorithm::ES256];
        let decoded =
            jsonwebtoken::decode::<serde_json::Value>(signed.expose(), &public, &validation)
                .unwrap();
        assert_eq!(decoded.claims["scope"], json!("rest_webservices"));

        // A key of the wrong kind is the account's to fix, said in words.
        let wrong = ClientAssertion {
            algorithm: JwtAlgorithm::ES256,
            ..rsa
        };
        assert_eq!(
            sign_client_assertion(&wrong, "client-1", &token_url, 1_800_000_000).err(),
            Some(TokenError::Rejected {
                status: 400,
                body: "the account's private key is not a PEM EC (P-256) private key".to_owned()
            })
        );
    }
}
