//! The upstream policy around every provider call: bounded retries with exponential backoff and
//! full jitter for connect errors and 500/502/503/504/529 (unified calls only read, so they are safe to
//! repeat), and rate limits (what counts as one is the mapping's: `answer::rate_limited`)
//! honoured by waiting up to a cap, else answered as a 429 with `Retry-After` and normalized
//! `ratelimit-*` headers. A rate limit with a hint holds every call of the account (of the
//! integration, for a budget shared `per: integration`) until the hint's time: each waits it out
//! within the same cap, or is answered the 429 without being sent. A call is admitted by the
//! mapping's budgets (`pace`: the file's, then its resource's) first, waiting at most
//! `max_pace_wait` for a slot, else answered a 429 unsent.

use std::time::Duration;

use unigate_mapping::{Answer, RateLimitReading, fault_message, rate_limited};
use unigate_unified::{ApiError, ErrorKind};
use unigate_upstream::{ProviderRequest, ProviderResponse, UpstreamError};

use crate::Engine;
use crate::call::Target;
use crate::pace::Hold;
use crate::request::Endpoint;

/// Knobs of the policy.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt (connect errors, 502/503/504, waited-out rate limits).
    pub max_retries: u32,
    /// First backoff; doubles each retry, with full jitter.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// The longest rate-limit wait the gateway sits out; longer ones go back to the caller.
    pub max_rate_limit_wait: Duration,
    /// The longest a call waits for a slot of a mapping's budget (`pace`); a slot further off
    /// (an hourly or daily budget spent) is answered 429 with when it frees.
    pub max_pace_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            backoff_base: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(5),
            max_rate_limit_wait: Duration::from_secs(10),
            max_pace_wait: Duration::from_secs(120),
        }
    }
}

/// Normalized rate-limit headers for the caller, from what the provider said: `hinted` is the
/// wait the provider asked for, `wait` the one the gateway chose.
fn caller_headers(
    reading: &RateLimitReading,
    hinted: Option<Duration>,
    wait: Duration,
) -> Vec<(String, String)> {
    let retry_after = match hinted {
        Some(hinted) => hinted.as_secs_f64().ceil(),
        None => wait.as_secs_f64().ceil().max(1.0),
    };
    let mut headers = vec![("retry-after".to_owned(), retry_after.to_string())];
    if let Some(limit) = reading.limit {
        headers.push(("ratelimit-limit".to_owned(), limit.to_string()));
    }
    if let Some(remaining) = reading.remaining {
        headers.push(("ratelimit-remaining".to_owned(), remaining.to_string()));
    }
    if let Some(reset) = reading.reset.or(hinted.map(|w| w.as_secs_f64())) {
        headers.push(("ratelimit-reset".to_owned(), reset.ceil().to_string()));
    }
    headers
}

/// The longest wait a hint may ask for (a day); a hint beyond it is sent back as it is capped.
const LONGEST_WAIT_S: f64 = 86_400.0;

/// The answer to a call not sent because the provider asked, on an earlier call, to wait longer
/// than the gateway sits out: the 429 that call got, with the wait that is left.
fn held_error(status: u16, left: Duration) -> ApiError {
    let seconds = left.as_secs_f64().ceil().max(1.0);
    let mut error = ApiError::new(
        ErrorKind::RateLimited {
            provider_status: status,
        },
        format!(
            "the provider rate-limited this account on an earlier call and asked to wait {seconds} s more; the call was not sent"
        ),
    );
    error.headers = vec![
        ("retry-after".to_owned(), seconds.to_string()),
        ("ratelimit-reset".to_owned(), seconds.to_string()),
    ];
    error
}

/// The answer to a call whose budget (`pace`) has no slot within `max_pace_wait`: the provider
/// was not asked, and the caller learns when a slot frees.
fn spent_budget_error(pace: &unigate_mapping::Pace, left: Duration) -> ApiError {
    let seconds = left.as_secs_f64().ceil().max(1.0);
    let mut error = ApiError::new(
        ErrorKind::RateLimited {
            provider_status: 429,
        },
        format!(
            "the provider's documented budget ({} call{} in {} s) is spent for {seconds} s more; the call was not sent",
            pace.requests,
            if pace.requests == 1 { "" } else { "s" },
            pace.window.as_secs_f64()
        ),
    );
    error.headers = vec![
        ("retry-after".to_owned(), seconds.to_string()),
        ("ratelimit-limit".to_owned(), pace.requests.to_string()),
        ("ratelimit-remaining".to_owned(), "0".to_owned()),
        ("ratelimit-reset".to_owned(), seconds.to_string()),
    ];
    error
}

/// Full jitter: a random duration in [0, base·2^attempt], capped.
fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let ceiling = policy
        .backoff_base
        .saturating_mul(1u32 << attempt.min(16))
        .min(policy.backoff_cap);
    ceiling.mul_f64(fastrand::f64())
}

impl Engine {
    /// Sends with the retry and rate-limit policy. Returns the final answer, which may still be
    /// an error status for the caller's error mapping.
    pub(crate) async fn send_with_policy(
        &self,
        request: &ProviderRequest,
        target: &Target,
        endpoint: &Endpoint,
    ) -> Result<ProviderResponse, ApiError> {
        let policy = &self.config.retry;
        let file_paces = &target.integration.rate_limit.paces;
        let per_integration = file_paces
            .first()
            .is_some_and(|pace| pace.per == unigate_mapping::PaceScope::Integration);
        // The file's budgets, then the resource's own (an endpoint the provider counts apart).
        let resource_paces = &endpoint.resource().paces;
        let paces: Vec<&unigate_mapping::Pace> = file_paces.iter().chain(resource_paces).collect();
        let budgets: Vec<String> = file_paces
            .iter()
            .enumerate()
            .map(|(index, pace)| crate::pace::budget_key(target, None, index, pace))
            .chain(resource_paces.iter().enumerate().map(|(index, pace)| {
                crate::pace::budget_key(target, Some(endpoint.resource_key()), index, pace)
            }))
            .collect();
        let hold_key = crate::pace::hold_key(target, per_integration);
        let mut attempt = 0;
        // Set right after this call sat out its own rate limit: the hold it set is that wait.
        let mut waited_out = false;
        loop {
            if !std::mem::take(&mut waited_out)
                && let Some((left, status)) = self.pacer.held(&hold_key)
            {
                if left > policy.max_rate_limit_wait {
                    return Err(held_error(status, left));
                }
                self.metrics
                    .wait(&target.integration.id, "rate_limit", left);
                self.config.clock.sleep(left).await;
            }
            // Admitted by every budget in the mapping's order (the same for every caller, so two
            // callers never each hold what the other waits for).
            let mut slots = Vec::with_capacity(budgets.len());
            for (&pace, budget) in paces.iter().zip(&budgets) {
                let pace = crate::pace::share(pace, self.accounts.replicas());
                let (admitted, waited) = self
                    .pacer
                    .admit(budget, &pace, policy.max_pace_wait)
                    .await
                    .map_err(|left| spent_budget_error(&pace, left))?;
                if !waited.is_zero() {
                    // A wait for a call in flight to be answered is told apart from one for a
                    // rate's window: the first says the provider is slow, the second busy.
                    let reason = match pace.counts_calls() {
                        true => "pace",
                        false => "in_flight",
                    };
                    self.metrics.wait(&target.integration.id, reason, waited);
                }
                slots.push(admitted);
            }
            let sent = std::time::Instant::now();
            // The span (exported with OpenTelemetry when configured) names the integration and
            // the host, never the path or query: those may carry account values.
            let span = tracing::info_span!(
                "provider_call",
                integration = %target.integration.id,
                method = ?request.method,
                host = request.url.host_str().unwrap_or_default(),
                attempt,
                status = tracing::field::Empty,
            );
            let result =
                tracing::Instrument::instrument(self.upstream.send(request), span.clone()).await;
            // Answered: the call's window in its budgets starts now.
            drop(slots);
            if let Ok(response) = &result {
                span.record("status", response.status);
            }
            crate::trace::record(request, &result, &target.account.context);
            let answer_label = match &result {
                Ok(response) => response.status.to_string(),
                Err(UpstreamError::Connect(_)) => "connect_error".to_owned(),
                Err(UpstreamError::Timeout(_)) => "timeout".to_owned(),
                Err(_) => "error".to_owned(),
            };
            self.metrics
                .provider_call(&target.integration.id, answer_label, sent.elapsed());
            let retryable = match &result {
                Err(UpstreamError::Connect(_)) => true,
                // 529 is "overloaded" where a provider has its own word for a 503 (Anthropic's
                // overloaded_error, Notion's service_overload).
                Ok(response) => matches!(response.status, 500 | 502..=504 | 529),
                Err(_) => false,
            };
            if let Ok(response) = &result {
                let headers = response.header_pairs();
                let answer = Answer {
                    status: response.status,
                    headers: &headers,
                    body: &response.body,
                    format: target.integration.body_format,
                };
                let now = self.config.clock.now_epoch();
                if let Some(limited) =
                    rate_limited(&target.integration.rate_limit, answer, &target.scope, now)
                {
                    let hinted = limited
                        .wait
                        .map(|secs| Duration::from_secs_f64(secs.clamp(0.0, LONGEST_WAIT_S)));
                    if let Some(hinted) = hinted {
                        let hold = Hold {
                            until: tokio::time::Instant::now() + hinted,
                            status: response.status,
                        };
                        self.pacer.hold(&hold_key, hold);
                        // Every replica holds it too: each collecting its own 429 is what
                        // providers count against the account.
                        self.accounts.share_hold(
                            &hold_key,
                            crate::pace::epoch_ms().saturating_add(hinted.as_millis() as i64),
                            response.status,
                        );
                    }
                    // No hint from the provider: back off as for an overloaded provider.
                    let wait = hinted.unwrap_or_else(|| backoff(policy, attempt));
                    if wait <= policy.max_rate_limit_wait && attempt < policy.max_retries {
                        attempt += 1;
                        waited_out = true;
                        self.metrics.retry(&target.integration.id);
                        self.metrics
                            .wait(&target.integration.id, "rate_limit", wait);
                        self.config.clock.sleep(wait).await;
                        continue;
                    }
                    let body = answer.raw_value();
                    let message = fault_message(&target.integration, answer, &body, &target.scope)
                        .unwrap_or_else(|| "the provider's rate limit was reached".to_owned());
                    let mut error = ApiError::remote(response.status, message, body);
                    error.kind = ErrorKind::RateLimited {
                        provider_status: response.status,
                    };
                    error.headers = caller_headers(&limited, hinted, wait);
                    return Err(error);
                }
            }
            if retryable && attempt < policy.max_retries {
                self.metrics.retry(&target.integration.id);
                self.config.clock.sleep(backoff(policy, attempt)).await;
                attempt += 1;
                continue;
            }
            return result.map_err(|error| {
                let kind = match error {
                    UpstreamError::Timeout(_) => ErrorKind::GatewayTimeout,
                    _ => ErrorKind::BadGateway,
                };
                ApiError::new(kind, error.to_string())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_under_the_cap() {
        let policy = RetryPolicy::default();
        for attempt in 0..10 {
            let ceiling = policy
                .backoff_base
                .saturating_mul(1 << attempt)
                .min(policy.backoff_cap);
            assert!(backoff(&policy, attempt) <= ceiling);
        }
    }
}
