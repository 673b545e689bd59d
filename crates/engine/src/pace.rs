//! Pacing: calls to one account (or, when the mapping says so, to one integration) are spaced so
//! that no window of the provider's documented length holds more calls than its budget
//! (`rate_limit.pace`). One budget is shared by every request, stream, walk and follow-up of the
//! process; each call reserves its send time before it is sent, so concurrent callers queue
//! instead of racing. A sliding window is the strictest reading of "N per T": a provider that
//! counts fixed windows or refills a bucket is never exceeded either.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::sync::Cache;
use tokio::time::Instant;
use unigate_mapping::Pace;

/// Send times reserved per budget, at most `requests` of them (the older ones no longer
/// constrain anything).
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    budgets: Cache<String, Arc<Mutex<VecDeque<Instant>>>>,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer {
            budgets: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
        }
    }
}

/// Kept between a window's last call and the next window's first, so that the provider, which
/// sees calls a little later and less evenly than they were sent, still counts them apart.
fn margin(window: Duration) -> Duration {
    (window / 50).max(Duration::from_millis(10))
}

/// This process's share of a budget that `replicas` processes spend together: the requests
/// divided among them (rounded down), or when there are fewer requests than processes, one
/// request per window stretched so that the fleet's total stays within the budget. No database
/// round trip per call: each process knows how many share the store from its heartbeat, and the
/// split is exact as long as the count is (a process joining or leaving is seen within seconds).
pub(crate) fn share(pace: &Pace, replicas: usize) -> Pace {
    let replicas = replicas.max(1) as u32;
    if replicas == 1 {
        return *pace;
    }
    if pace.requests >= replicas {
        Pace {
            requests: pace.requests / replicas,
            ..*pace
        }
    } else {
        Pace {
            requests: 1,
            window: pace.window * replicas.div_ceil(pace.requests),
            ..*pace
        }
    }
}

impl Pacer {
    /// Reserves the next send time of the budget `key` and returns how long to wait for it.
    pub(crate) fn reserve(&self, key: &str, pace: &Pace) -> Duration {
        let budget = self
            .budgets
            .get_with(key.to_owned(), || Arc::new(Mutex::new(VecDeque::new())));
        let mut sent = budget
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let requests = pace.requests as usize;
        let mut at = now;
        if sent.len() >= requests {
            // The call `requests` back must have left the window before this one goes.
            at = at.max(sent[sent.len() - requests] + pace.window + margin(pace.window));
        }
        if let Some(last) = sent.back() {
            at = at.max(*last);
        }
        sent.push_back(at);
        while sent.len() > requests {
            sent.pop_front();
        }
        at - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_window_holds_more_than_the_budget() {
        let pacer = Pacer::default();
        let pace = Pace {
            requests: 5,
            window: Duration::from_secs(1),
            per_integration: false,
        };
        let waits: Vec<Duration> = (0..12).map(|_| pacer.reserve("a", &pace)).collect();
        // Five at once, then each one a window (plus the margin) after the fifth before it.
        assert!(
            waits[..5]
                .iter()
                .all(|wait| *wait < Duration::from_millis(5))
        );
        for wait in &waits[5..10] {
            assert!(*wait >= Duration::from_millis(1_010), "{wait:?}");
            assert!(*wait < Duration::from_millis(1_040), "{wait:?}");
        }
        assert!(waits[10] >= Duration::from_millis(2_030));
        // Another budget is not affected.
        assert!(pacer.reserve("b", &pace) < Duration::from_millis(5));
    }

    #[test]
    fn replicas_split_a_budget_without_exceeding_it() {
        let pace = |requests, seconds| Pace {
            requests,
            window: Duration::from_secs(seconds),
            per_integration: false,
        };
        let split = |p: &Pace, n| {
            let s = share(p, n);
            (s.requests, s.window.as_secs())
        };
        assert_eq!(split(&pace(5, 1), 1), (5, 1));
        assert_eq!(split(&pace(5, 1), 2), (2, 1));
        assert_eq!(split(&pace(100, 60), 3), (33, 60));
        // Fewer requests than replicas: one each, in a window long enough for all.
        assert_eq!(split(&pace(2, 1), 5), (1, 3));
        assert_eq!(split(&pace(1, 10), 4), (1, 40));
    }
}
