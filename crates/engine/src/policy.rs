//! The upstream policy around every provider call: bounded retries with exponential backoff and
//! full jitter for connect errors and 502/503/504 (list calls only read, so they are safe to
//! repeat), and rate limits detected per integration (`rate_limit:` in its mapping, default
//! status 429) honoured by waiting up to a cap, else answered as a 429 with `Retry-After` and
//! normalized `ratelimit-*` headers.

use std::time::Duration;

use serde_json::{Map, Value, json};
use unigate_mapping::{RateLimit, Scope};
use unigate_unified::error::extract_remote_message;
use unigate_unified::{ApiError, ErrorKind};
use unigate_upstream::{ProviderRequest, ProviderResponse, UpstreamError};

use crate::Engine;

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
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            backoff_base: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(5),
            max_rate_limit_wait: Duration::from_secs(10),
        }
    }
}

/// What the rate-limit expressions read; the body only when asked for (parsing a large page
/// for a status check would cost more than the check).
fn rate_limit_input(response: &ProviderResponse, with_body: bool) -> Value {
    let headers: Map<String, Value> = response
        .headers
        .iter()
        .filter_map(|(name, value)| {
            Some((
                name.as_str().to_owned(),
                Value::String(value.to_str().ok()?.to_owned()),
            ))
        })
        .collect();
    let body = if with_body {
        serde_json::from_slice(&response.body).unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    json!({"status": response.status, "headers": headers, "body": body})
}

fn seconds(value: Option<Value>) -> Option<f64> {
    match value? {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// `Retry-After` as seconds: a number, or an HTTP date (IMF-fixdate) relative to `now`.
fn retry_after_header(response: &ProviderResponse, now: i64) -> Option<f64> {
    let value = response.header("retry-after")?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return Some(seconds);
    }
    // "Wed, 21 Oct 2015 07:28:00 GMT"
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)?
        + 1;
    let iso = format!("{year}-{month:02}-{:02}T{time}Z", day.parse::<u32>().ok()?);
    let at = unigate_unified::time::parse_iso8601(&iso)? / 1000;
    Some((at - now) as f64)
}

/// A rate-limited answer: how long to wait, and the normalized headers for the caller.
#[derive(Debug)]
struct Limited {
    wait: Option<Duration>,
    headers: Vec<(String, String)>,
}

fn detect(
    rate_limit: &RateLimit,
    response: &ProviderResponse,
    scope: &Scope,
    now: i64,
) -> Option<Limited> {
    let probe = rate_limit_input(response, rate_limit.is_limited_reads_body);
    let limited =
        rate_limit.is_limited.evaluate(&probe, scope).ok().flatten() == Some(Value::Bool(true));
    if !limited {
        return None;
    }
    let input = rate_limit_input(response, true);
    let evaluate = |expression: &Option<unigate_mapping::Expression>| {
        expression
            .as_ref()
            .and_then(|e| e.evaluate(&input, scope).ok().flatten())
    };
    let reset = seconds(evaluate(&rate_limit.reset_epoch)).map(|epoch| epoch - now as f64);
    let wait = seconds(evaluate(&rate_limit.retry_after))
        .or_else(|| retry_after_header(response, now))
        .or(reset)
        .map(|secs| Duration::from_secs_f64(secs.clamp(0.0, 86_400.0)));
    let mut headers = Vec::new();
    if let Some(wait) = wait {
        headers.push((
            "retry-after".to_owned(),
            wait.as_secs_f64().ceil().to_string(),
        ));
    }
    if let Some(limit) = seconds(evaluate(&rate_limit.limit)) {
        headers.push(("ratelimit-limit".to_owned(), limit.to_string()));
    }
    if let Some(remaining) = seconds(evaluate(&rate_limit.remaining)) {
        headers.push(("ratelimit-remaining".to_owned(), remaining.to_string()));
    }
    if let Some(reset) = reset.or(wait.map(|w| w.as_secs_f64())) {
        headers.push((
            "ratelimit-reset".to_owned(),
            reset.max(0.0).ceil().to_string(),
        ));
    }
    Some(Limited { wait, headers })
}

/// Full jitter: a pseudo-random duration in [0, base·2^attempt], capped.
fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let ceiling = policy
        .backoff_base
        .saturating_mul(1u32 << attempt.min(16))
        .min(policy.backoff_cap);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    // xorshift: jitter needs spread, not cryptographic quality.
    let mut x = nanos ^ 0x9E37_79B9_7F4A_7C15 ^ u64::from(attempt);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let fraction = (x % 1_000_001) as f64 / 1_000_000.0;
    ceiling.mul_f64(fraction)
}

impl Engine {
    /// Sends with the retry and rate-limit policy. Returns the final answer, which may still be
    /// an error status for the caller's error mapping.
    pub(crate) async fn send_with_policy(
        &self,
        request: &ProviderRequest,
        rate_limit: &RateLimit,
        scope: &Scope,
    ) -> Result<ProviderResponse, ApiError> {
        let policy = &self.config.retry;
        let mut attempt = 0;
        loop {
            let result = self.upstream.send(request).await;
            let retryable = match &result {
                Err(UpstreamError::Connect(_)) => true,
                Ok(response) => matches!(response.status, 502..=504),
                Err(_) => false,
            };
            if let Ok(response) = &result
                && let Some(limited) =
                    detect(rate_limit, response, scope, self.config.clock.now_epoch())
            {
                // No hint from the provider: back off as for an overloaded provider.
                let wait = limited.wait.unwrap_or_else(|| backoff(policy, attempt));
                match wait {
                    wait if wait <= policy.max_rate_limit_wait && attempt < policy.max_retries => {
                        attempt += 1;
                        self.config.clock.sleep(wait).await;
                        continue;
                    }
                    _ => {
                        let raw = serde_json::from_slice(&response.body).unwrap_or_else(|_| {
                            Value::String(String::from_utf8_lossy(&response.body).into_owned())
                        });
                        let message = extract_remote_message(&raw)
                            .unwrap_or_else(|| "the provider's rate limit was reached".to_owned());
                        let mut error = ApiError::remote(response.status, message, raw);
                        error.kind = ErrorKind::RateLimited {
                            provider_status: response.status,
                        };
                        error.headers = limited.headers;
                        if !error.headers.iter().any(|(name, _)| name == "retry-after") {
                            let seconds = wait.as_secs_f64().ceil().max(1.0);
                            error
                                .headers
                                .push(("retry-after".to_owned(), seconds.to_string()));
                        }
                        return Err(error);
                    }
                }
            }
            if retryable && attempt < policy.max_retries {
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
