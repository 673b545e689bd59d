//! The engine room: one unified call end to end, with no HTTP server in sight.
//!
//! Its rooms, in the order a call passes them:
//! - `call`: the unified call checked and resolved (account, integration, method, query, the
//!   filters and sort the gateway applies, the cursor's fingerprint);
//! - `request`: the provider request rendered for the account (URL, query, body, next-URL checks);
//! - `auth` and `policy`: the one provider-call path every method uses — credential and tokens,
//!   401 handling, retries and rate limits;
//! - `page`: one list page fetched, checked, read and mapped; `get`: one record;
//! - `list` and `walker`: the list and stream walks over pages, and `catalog`: the catalogs a
//!   list's passes are walked over;
//! - `metrics`: what every stage counts, for the gateway's `/metrics`.
//!
//! What a provider's answer means (errors, rate limits, page facts) is the mapping crate's to
//! say; this crate decides what to do about it. Every failure leaves as an [`ApiError`] from the
//! one error table. It does not parse HTTP requests or write responses.

mod auth;
mod call;
mod capabilities;
mod catalog;
pub mod clock;
mod filter;
mod follow;
mod get;
mod list;
pub mod metrics;
mod normalize;
mod pace;
mod page;
mod policy;
mod record;
mod redact;
mod request;
mod shape;
mod sort;
pub mod trace;
mod walker;

use std::hash::BuildHasher;
use std::sync::Arc;

use unigate_mapping::Catalog;
use unigate_pagination::CursorCodec;
use unigate_store::{AccountStore, IntegratedAccount};
use unigate_upstream::Upstream;
use unigate_upstream::tokens::TokenManager;

pub use clock::{Clock, RecordingClock, SystemClock};
pub use list::ListOutput;
pub use policy::RetryPolicy;
pub use unigate_unified::ApiError;

/// Tunables of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Page size when the caller sends no `limit` (clamped to each integration's maximum).
    pub default_limit: u32,
    /// Most records one `truto_ignore_limit` response gathers before it returns a cursor.
    pub max_records_per_response: usize,
    /// Most bytes of records (as sent) one `truto_ignore_limit` response gathers before it
    /// returns a cursor: a bound on memory that a record count alone is not (records of a
    /// provider with large `remote_data` can be kilobytes each).
    pub max_bytes_per_response: usize,
    /// OAuth access tokens are refreshed this long before they expire.
    pub token_refresh_margin: std::time::Duration,
    pub retry: RetryPolicy,
    pub clock: Arc<dyn Clock>,
    /// Offset and page-number pages fetched at once when a walk takes every page.
    pub prefetch_window: usize,
    /// The longest mapping one provider page may take, all records together (each evaluation
    /// also has its own limit); past it the call fails with a mapping error.
    pub page_mapping_budget: std::time::Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            default_limit: 100,
            max_records_per_response: 10_000,
            max_bytes_per_response: 64 * 1024 * 1024,
            token_refresh_margin: std::time::Duration::from_secs(60),
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
            prefetch_window: 4,
            page_mapping_budget: std::time::Duration::from_secs(10),
        }
    }
}

tokio::task_local! {
    /// The id of the gateway request being served (set by the gateway around each request):
    /// logs carry it through the request's span, and a mapping may forward it
    /// (`{{request_id}}`).
    pub static REQUEST_ID: std::sync::Arc<str>;
}

/// The current request's id, if a gateway request is being served.
pub fn current_request_id() -> Option<std::sync::Arc<str>> {
    REQUEST_ID.try_with(std::sync::Arc::clone).ok()
}

/// Everything a unified call needs, shared by all requests.
#[derive(Debug, Clone)]
pub struct Engine {
    catalog: Arc<Catalog>,
    accounts: Arc<dyn AccountStore>,
    upstream: Upstream,
    tokens: TokenManager,
    pacer: pace::Pacer,
    /// Follow-up calls in flight, bounded per account and follow-up.
    follow_up_limits: moka::sync::Cache<String, Arc<tokio::sync::Semaphore>>,
    /// Follow-up answers of walks that answered a `next_cursor`, by account and fingerprint.
    kept_walk_answers: moka::sync::Cache<String, Arc<follow::WalkAnswers>>,
    /// What chained follow-ups of a call that failed part-way matched, by account and name.
    unfinished_members: moka::sync::Cache<String, follow::UnfinishedMembers>,
    /// Where walked follow-ups of a call that failed part-way stood, by account, name and id.
    unfinished_walks: moka::sync::Cache<String, Arc<follow::WalkProgress>>,
    /// What per-record follow-ups of a call that failed part-way got, by account and name.
    unfinished_details: moka::sync::Cache<String, follow::UnfinishedDetails>,
    codec: CursorCodec,
    config: EngineConfig,
    metrics: metrics::Metrics,
    /// Accounts' integrations with their mapping overrides, compiled.
    overrides: moka::sync::Cache<String, Arc<unigate_mapping::Integration>>,
}

impl Engine {
    pub fn new(
        catalog: Arc<Catalog>,
        accounts: Arc<dyn AccountStore>,
        upstream: Upstream,
        cursor_secret: &[u8],
        config: EngineConfig,
    ) -> Self {
        let tokens = TokenManager::new(config.token_refresh_margin);
        let pacer = pace::Pacer::default();
        let shared = pacer.clone();
        accounts.subscribe_holds(Arc::new(move |key, until, status| {
            shared.hold_shared(key, until, status)
        }));
        let kept_walk_answers = follow::kept_walk_answers();
        let unfinished_members = follow::unfinished_members();
        let unfinished_walks = follow::unfinished_walks();
        let unfinished_details = follow::unfinished_details();
        // An admin write another replica made: this one's token and walk answers follow it.
        accounts.subscribe_changes(Arc::new({
            let tokens = tokens.clone();
            let (kept, members, walks, details) = (
                kept_walk_answers.clone(),
                unfinished_members.clone(),
                unfinished_walks.clone(),
                unfinished_details.clone(),
            );
            move |before, after| {
                let Some(after) = after else {
                    tokens.forget(&before.id);
                    follow::forget_walk_answers(&before.id, &kept, &members, &walks, &details);
                    return;
                };
                tokens.adopt(&after.id, || auth::stored_token(&after.context));
                if !auth::same_but_tokens(before, after) {
                    follow::forget_walk_answers(&after.id, &kept, &members, &walks, &details);
                }
            }
        }));
        Engine {
            catalog,
            accounts,
            upstream,
            tokens,
            pacer,
            follow_up_limits: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(std::time::Duration::from_secs(3600))
                .build(),
            kept_walk_answers,
            unfinished_members,
            unfinished_walks,
            unfinished_details,
            codec: CursorCodec::new(cursor_secret),
            config,
            metrics: metrics::Metrics::default(),
            overrides: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(std::time::Duration::from_secs(3600))
                .build(),
        }
    }

    /// The metrics this engine (and the gateway in front of it) records.
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.metrics
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The account's integration: the loaded one, or with the account's mapping override merged
    /// in (compiled once per override text and mapping set). The error lists every problem of
    /// the override, as a file's.
    pub(crate) fn integration_of(
        &self,
        account: &IntegratedAccount,
    ) -> Result<Arc<unigate_mapping::Integration>, String> {
        let Some(text) = &account.mapping else {
            return self
                .catalog
                .integrations
                .get(&account.integration)
                .cloned()
                .ok_or_else(|| format!("integration `{}` is not loaded", account.integration));
        };
        let mut hasher = foldhash::quality::FixedState::with_seed(0).build_hasher();
        std::hash::Hasher::write(&mut hasher, text.as_bytes());
        let key = format!(
            "{}\u{0}{}\u{0}{}\u{0}{:016x}",
            self.catalog.digest,
            account.integration,
            account.id,
            std::hash::Hasher::finish(&hasher)
        );
        if let Some(found) = self.overrides.get(&key) {
            return Ok(found);
        }
        let compiled = self
            .catalog
            .with_override(
                &account.integration,
                &format!("integrated account `{}` mapping", account.id),
                text,
            )
            .map(Arc::new)
            .map_err(|errors| errors.to_string())?;
        self.overrides.insert(key, compiled.clone());
        Ok(compiled)
    }

    /// The same engine over another mapping set: the store, tokens, pacing budgets, cursor key
    /// and metrics are shared, so a reload loses none of them.
    pub fn with_catalog(&self, catalog: Arc<Catalog>) -> Engine {
        Engine {
            catalog,
            ..self.clone()
        }
    }

    /// Checks that every account names a known integration whose templates find their context
    /// keys, so a misconfigured account fails at startup rather than on its first call. Returns
    /// every problem.
    pub fn check_accounts(&self) -> Vec<String> {
        self.accounts
            .list()
            .iter()
            .flat_map(|account| self.check_account(account))
            .collect()
    }

    /// Every problem that would stop `account` from being served by its integration.
    pub fn check_account(&self, account: &IntegratedAccount) -> Vec<String> {
        let mut problems = Vec::new();
        if account.id.is_empty()
            || account.id.len() > 200
            || account.id.chars().any(char::is_control)
        {
            problems.push("integrated account ids are 1 to 200 printable characters".to_owned());
        }
        if !self.catalog.integrations.contains_key(&account.integration) {
            problems.push(format!(
                "integrated account `{}`: unknown integration `{}`",
                account.id, account.integration
            ));
            return problems;
        }
        let integration = match self.integration_of(account) {
            Ok(integration) => integration.for_context(&account.context),
            Err(errors) => {
                problems.extend(
                    errors
                        .lines()
                        .filter(|line| !line.ends_with("error(s)"))
                        .map(str::to_owned),
                );
                return problems;
            }
        };
        if !account.context.is_object() {
            problems.push(format!(
                "integrated account `{}`: `context` must be an object",
                account.id
            ));
        }
        for key in integration.context_keys_for(account.base_url.is_some()) {
            let found = key
                .split('.')
                .try_fold(&account.context, |value, segment| value.get(segment));
            if found.is_none() {
                problems.push(format!(
                    "integrated account `{}`: the `{}` mapping needs `context.{key}`",
                    account.id, account.integration
                ));
            }
        }
        for problem in integration.account_problems(&account.context) {
            problems.push(format!("integrated account `{}`: {problem}", account.id));
        }
        for problem in integration.url_problems(&account.context, account.base_url.is_some()) {
            problems.push(format!("integrated account `{}`: {problem}", account.id));
        }
        if let Some(base_url) = &account.base_url {
            match unigate_upstream::Url::parse(base_url) {
                Err(_) => problems.push(format!(
                    "integrated account `{}`: `base_url` is not an absolute URL",
                    account.id
                )),
                // Its token requests go to that host: the credentials must not travel in clear
                // text (a local test server excepted).
                Ok(url)
                    if url.scheme() != "https"
                        && integration.token_url_on_base()
                        && !is_loopback(&url) =>
                {
                    problems.push(format!(
                        "integrated account `{}`: `base_url` must be https: the `{}` mapping asks for tokens at the base URL's host",
                        account.id, account.integration
                    ))
                }
                Ok(_) => {}
            }
        }
        problems
    }

    /// Removes a stored token's DPoP key when the admin gives the account a token of its own
    /// without one: that token is not bound to the old key.
    pub fn drop_token_binding(&self, account: &mut IntegratedAccount) {
        if let Some(context) = account.context.as_object_mut() {
            context.remove(crate::auth::TOKEN_DPOP_KEY);
        }
    }

    /// The account store, for the admin API.
    pub fn accounts(&self) -> &Arc<dyn AccountStore> {
        &self.accounts
    }

    /// How long a provider asked the account's calls to wait (a rate limit with a hint, this
    /// replica's own or one another announced), and the status it asked with; `None` when
    /// nothing holds them.
    pub fn rate_limit_hold(
        &self,
        account: &IntegratedAccount,
    ) -> Option<(std::time::Duration, u16)> {
        let per_integration = self
            .catalog
            .integrations
            .get(&account.integration)
            .and_then(|integration| integration.rate_limit.paces.first())
            .is_some_and(|pace| pace.per == unigate_mapping::PaceScope::Integration);
        let key = match per_integration {
            true => pace::integration_hold_key(&account.integration),
            false => pace::account_hold_key(&account.id),
        };
        self.pacer.held(&key)
    }

    /// Drops every token cached for `account` (the admin API changed or removed it), so the next
    /// call authenticates with the account as stored now — never with a token issued for its old
    /// credentials or for an earlier account of the same id — and any wait a provider asked of
    /// its calls (a new credential may bring a budget of its own), and the follow-up answers
    /// kept for its walks (they may be another tenant's now).
    pub fn forget_tokens(&self, account: &str) {
        self.tokens.forget(account);
        self.forget_walk_answers(account);
        self.pacer.release_account(account);
        // Other replicas release it too (the key is the account's, as `pace::hold_key` makes).
        self.accounts
            .share_hold(&pace::account_hold_key(account), 0, 0);
    }
}

/// A URL on this machine (a test or local provider), where clear text leaves nothing exposed.
fn is_loopback(url: &unigate_upstream::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
