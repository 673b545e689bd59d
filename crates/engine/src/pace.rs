//! Pacing: calls to one account (or, when the mapping says so, to one integration) are spaced so
//! that no window of the provider's documented length holds more calls than its budget
//! (`rate_limit.pace`, and a resource's own `pace`, a budget apart). One budget is shared by every
//! request, stream, walk and follow-up of the process. A call is admitted only while fewer than
//! N calls of the budget are in flight or were answered within the last window: the provider
//! counts a call when it arrives, which is some time between its send and its answer, so a
//! window counted from the answer is the only one that late wake-ups, slow sockets and network
//! jitter cannot shrink. Callers are admitted in
//! the order they asked (tokio's mutex is fair), so a stream's prefetched pages keep their order.
//! A sliding window is the strictest reading of "N per T": a provider that counts fixed windows
//! or refills a bucket is never exceeded either. A budget without a window (`in_flight`) is the
//! same ledger with nothing kept after the answer: a limit on calls at once (Marketo's ten).
//! Waits run on tokio's clock, not the engine's `Clock`: admission depends on answers arriving
//! in real time. A caller whose slot would free
//! later than the policy's longest wait (an hourly budget spent) is told so at once instead.
//!
//! It also keeps the provider's own "wait until" (a rate-limited answer's `Retry-After` or
//! reset) for the account, paced or not ([`Pacer::hold`]): one call's 429 holds every call of
//! the account until then, instead of each concurrent call collecting its own.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::sync::Cache;
use tokio::sync::Notify;
use tokio::time::Instant;
use unigate_mapping::{Pace, PaceScope};

/// The budgets of the process, by key, and the waits providers asked of them.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    budgets: Cache<String, Arc<Budget>>,
    holds: Cache<String, Hold>,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer {
            budgets: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
            // A hint is capped at a day (`policy`); an entry past its time is ignored anyway.
            holds: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(86_400 + 60))
                .build(),
        }
    }
}

/// Until when a provider asked a budget's calls to wait, and the status it said so with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hold {
    pub(crate) until: Instant,
    pub(crate) status: u16,
}

#[derive(Debug, Default)]
struct Budget {
    /// The caller whose turn it is holds this; the others queue behind it in order.
    turn: tokio::sync::Mutex<()>,
    ledger: Mutex<Ledger>,
    /// Signalled when a call is answered, for a caller that waits with every slot in flight.
    answered: Notify,
}

/// What occupies the budget's slots: calls in flight, and when the latest calls were answered
/// (in order, never more than the budget's size: an answer older than the window no longer
/// constrains anything).
#[derive(Debug, Default)]
struct Ledger {
    in_flight: usize,
    answered: VecDeque<Instant>,
}

/// A call's place in its budget, held while the call is in flight; dropping it records the
/// answer (or the failure: a call that never reached the provider is counted all the same).
#[derive(Debug)]
pub(crate) struct Slot {
    budget: Arc<Budget>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut ledger = lock(&self.budget.ledger);
        ledger.in_flight -= 1;
        ledger.answered.push_back(Instant::now());
        drop(ledger);
        self.budget.answered.notify_one();
    }
}

fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Kept after a window on top of it, so that a provider whose clock ticks a little differently
/// still counts the calls apart. None for a limit on calls at once (no window): the provider
/// frees the slot when it answers.
fn margin(window: Duration) -> Duration {
    match window.is_zero() {
        true => Duration::ZERO,
        false => (window / 50).max(Duration::from_millis(10)),
    }
}

/// This process's share of a budget that `replicas` processes spend together: the requests
/// divided among them (rounded down), or when there are fewer requests than processes, one
/// request per window stretched so that the fleet's total stays within the budget. No database
/// round trip per call: each process knows how many share the store from its heartbeat, and the
/// split is exact as long as the count is (a process joining or leaving is seen within seconds).
/// A limit on calls at once smaller than the fleet leaves each process one call (a window of
/// nothing cannot be stretched): the fleet may then have one call in flight per process.
pub(crate) fn share(pace: &Pace, replicas: usize) -> Pace {
    let replicas = replicas.max(1) as u32;
    if replicas == 1 {
        return pace.clone();
    }
    if pace.requests >= replicas {
        Pace {
            requests: pace.requests / replicas,
            ..pace.clone()
        }
    } else {
        Pace {
            requests: 1,
            window: pace.window * replicas.div_ceil(pace.requests),
            ..pace.clone()
        }
    }
}

/// The budget the call counts in for the `index`th pace of the file (`resource` `None`) or of a
/// resource: the account's, the integration's, or that of every account holding the same context
/// value (`per: context.api_key`), known by a hash of the value (it may be a credential).
pub(crate) fn budget_key(
    target: &crate::call::Target,
    resource: Option<&str>,
    index: usize,
    pace: &Pace,
) -> String {
    // A resource's own budgets are kept apart from the file's, and from each other's.
    let integration = match resource {
        None => target.integration.id.clone(),
        Some(resource) => format!("{}\u{0}{resource}", target.integration.id),
    };
    match &pace.per {
        PaceScope::Account => format!("{index}\u{0}{integration}\u{0}{}", target.account.id),
        PaceScope::Integration => format!("{index}\u{0}{integration}"),
        PaceScope::Context(key) => {
            use std::hash::{Hash, Hasher};
            let value = key
                .split('.')
                .try_fold(&target.account.context, |value, segment| value.get(segment));
            let mut hasher = std::hash::DefaultHasher::new();
            match value {
                Some(serde_json::Value::String(text)) => text.hash(&mut hasher),
                Some(other) => other.to_string().hash(&mut hasher),
                // Required by the mapping (`context_keys`): an account without it is refused at
                // load, so this is an account changed under the call; it counts on its own.
                None => target.account.id.hash(&mut hasher),
            }
            format!(
                "{index}\u{0}{integration}\u{0}context\u{0}{key}\u{0}{:016x}",
                hasher.finish()
            )
        }
    }
}

/// Whose calls a provider's wait holds: the account's (by its id alone, so that the admin API can
/// release it), or the integration's for a budget shared `per: integration`.
pub(crate) fn hold_key(target: &crate::call::Target, per_integration: bool) -> String {
    match per_integration {
        true => integration_hold_key(&target.integration.id),
        false => account_hold_key(&target.account.id),
    }
}

/// The hold key of an integration's calls (a budget shared `per: integration`).
pub(crate) fn integration_hold_key(integration: &str) -> String {
    format!("integration\u{0}{integration}")
}

/// The hold key of an account's own calls.
pub(crate) fn account_hold_key(account: &str) -> String {
    format!("account\u{0}{account}")
}

/// The wall clock in epoch milliseconds: waits shared with other replicas are instants every
/// one of them reads alike (their clocks kept by NTP), where a tokio `Instant` is this process's.
pub(crate) fn epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

impl Pacer {
    /// Forgets what a provider asked of `account`'s calls: the admin API changed or removed the
    /// account, and a new credential may come with a budget of its own (GitHub's is a token's).
    pub(crate) fn release_account(&self, account: &str) {
        self.holds.invalidate(&account_hold_key(account));
    }

    /// Takes a wait a replica sharing the store announced (`AccountStore::share_hold`): until
    /// `until_epoch_ms`, or released when it is 0.
    pub(crate) fn hold_shared(&self, key: &str, until_epoch_ms: i64, status: u16) {
        if until_epoch_ms == 0 {
            self.holds.invalidate(key);
            return;
        }
        let left = until_epoch_ms.saturating_sub(epoch_ms());
        if left > 0 {
            let until = Instant::now() + Duration::from_millis(left as u64);
            self.hold(key, Hold { until, status });
        }
    }

    /// Records that the provider asked the calls of `key` to wait until `hold.until`; a later
    /// hold never shortens an earlier one.
    pub(crate) fn hold(&self, key: &str, hold: Hold) {
        use moka::ops::compute::Op;
        self.holds
            .entry(key.to_owned())
            .and_compute_with(|held| match held {
                Some(held) if held.value().until >= hold.until => Op::Nop,
                _ => Op::Put(hold),
            });
    }

    /// How long the calls of `key` must still wait for the provider, and the status of the
    /// answer that asked; `None` when nothing holds them.
    pub(crate) fn held(&self, key: &str) -> Option<(Duration, u16)> {
        let hold = self.holds.get(key)?;
        let left = hold.until.checked_duration_since(Instant::now())?;
        (!left.is_zero()).then_some((left, hold.status))
    }

    /// Waits for the budget `key` to admit one more call and returns its slot, to be held until
    /// the call is answered, with how long the caller waited; or, when the next slot frees more
    /// than `max_wait` from now (an hourly or daily budget spent), how long that is, at once.
    pub(crate) async fn admit(
        &self,
        key: &str,
        pace: &Pace,
        max_wait: Duration,
    ) -> Result<(Slot, Duration), Duration> {
        let budget = self
            .budgets
            .get_with(key.to_owned(), || Arc::new(Budget::default()));
        let asked = Instant::now();
        // Whether the caller waited at all: a call admitted at once reports no wait, not the
        // nanoseconds its admission took.
        let mut waited = false;
        let _turn = match budget.turn.try_lock() {
            Ok(turn) => turn,
            Err(_) => {
                waited = true;
                budget.turn.lock().await
            }
        };
        let requests = (pace.requests as usize).max(1);
        let hold = pace.window + margin(pace.window);
        loop {
            // Made before the ledger is read, so an answer in between is not missed.
            let answered = budget.answered.notified();
            let freed_at = {
                let mut ledger = lock(&budget.ledger);
                let now = Instant::now();
                while ledger.answered.front().is_some_and(|at| *at + hold <= now) {
                    ledger.answered.pop_front();
                }
                if ledger.in_flight + ledger.answered.len() < requests {
                    ledger.in_flight += 1;
                    let slot = Slot {
                        budget: budget.clone(),
                    };
                    let wait = if waited {
                        asked.elapsed()
                    } else {
                        Duration::ZERO
                    };
                    return Ok((slot, wait));
                }
                ledger.answered.front().map(|at| *at + hold)
            };
            if let Some(left) = freed_at
                .map(|at| at.saturating_duration_since(Instant::now()))
                .filter(|left| *left > max_wait)
            {
                return Err(left);
            }
            waited = true;
            match freed_at {
                Some(at) => tokio::time::sleep_until(at).await,
                // Every slot is in flight: the first answer starts the next wait.
                None => answered.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wait longer than any of these tests asks.
    const LONG: Duration = Duration::from_secs(3_600);

    fn pace(requests: u32, seconds: u64) -> Pace {
        Pace {
            requests,
            window: Duration::from_secs(seconds),
            per: PaceScope::Account,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_counts_from_each_answer() {
        let pacer = Pacer::default();
        let pace = pace(2, 1);
        let start = Instant::now();
        let (first, waited) = pacer.admit("a", &pace, LONG).await.unwrap();
        assert_eq!(waited, Duration::ZERO);
        let (_second, waited) = pacer.admit("a", &pace, LONG).await.unwrap();
        assert_eq!(waited, Duration::ZERO);
        // Both slots in flight: the third call waits for an answer, then a window after it.
        let third = tokio::spawn({
            let (pacer, pace) = (pacer.clone(), pace.clone());
            async move {
                let (_slot, waited) = pacer.admit("a", &pace, LONG).await.unwrap();
                (Instant::now(), waited)
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(first);
        let (admitted, waited) = third.await.unwrap();
        let expected = Duration::from_millis(300 + 1_000 + 20);
        assert!(admitted - start >= expected, "{:?}", admitted - start);
        assert!(admitted - start < expected + Duration::from_millis(5));
        assert_eq!(waited, admitted - start);
        // Another budget is not affected.
        assert_eq!(
            pacer.admit("b", &pace, LONG).await.unwrap().1,
            Duration::ZERO
        );
    }

    /// A limit on calls at once (`in_flight`): the calls beyond it wait for an answer, and are
    /// sent the moment it arrives, however many calls came before; a refusal never comes of it.
    #[tokio::test(start_paused = true)]
    async fn an_in_flight_limit_frees_a_slot_when_a_call_is_answered() {
        let pacer = Pacer::default();
        let at_once = pace(2, 0);
        let start = Instant::now();
        let (first, _) = pacer.admit("a", &at_once, Duration::ZERO).await.unwrap();
        let (second, _) = pacer.admit("a", &at_once, Duration::ZERO).await.unwrap();
        let third = tokio::spawn({
            let (pacer, pace) = (pacer.clone(), at_once.clone());
            async move {
                let (slot, waited) = pacer.admit("a", &pace, Duration::ZERO).await.unwrap();
                (slot, Instant::now(), waited)
            }
        });
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!third.is_finished(), "a third call while two are in flight");
        drop(first);
        let (third, admitted, waited) = third.await.unwrap();
        assert_eq!(admitted - start, Duration::from_millis(700));
        assert_eq!(waited, Duration::from_millis(700));
        // Answered calls leave nothing behind: a hundred calls one after another never wait.
        drop((second, third));
        for _ in 0..100 {
            let (slot, waited) = pacer.admit("a", &at_once, Duration::ZERO).await.unwrap();
            assert_eq!(waited, Duration::ZERO);
            drop(slot);
        }
        assert_eq!(Instant::now(), start + Duration::from_millis(700));
    }

    /// An hourly budget spent: the next call learns at once when a slot frees rather than
    /// waiting up to an hour for it; a wait within the bound is still sat out.
    #[tokio::test(start_paused = true)]
    async fn a_slot_further_off_than_the_longest_wait_is_refused_at_once() {
        let pacer = Pacer::default();
        let hourly = pace(1, 3_600);
        let start = Instant::now();
        let (first, _) = pacer.admit("a", &hourly, LONG).await.unwrap();
        drop(first);
        let Err(refused) = pacer.admit("a", &hourly, Duration::from_secs(120)).await else {
            panic!("a slot within two minutes of an hourly budget spent");
        };
        assert_eq!(Instant::now(), start, "answered without waiting");
        let window = Duration::from_secs(3_600) + margin(Duration::from_secs(3_600));
        assert!(refused <= window && refused > window - Duration::from_secs(1));
        // Once the window has nearly passed, the same call waits out what is left.
        tokio::time::sleep(window - Duration::from_secs(60)).await;
        let (_slot, waited) = pacer
            .admit("a", &hourly, Duration::from_secs(120))
            .await
            .unwrap();
        assert!(waited >= Duration::from_secs(59));
    }

    #[tokio::test(start_paused = true)]
    async fn callers_are_admitted_in_the_order_they_asked() {
        let pacer = Pacer::default();
        let pace = pace(1, 1);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut callers = Vec::new();
        for caller in 0..4 {
            let (pacer, order, pace) = (pacer.clone(), order.clone(), pace.clone());
            callers.push(tokio::spawn(async move {
                let slot = pacer.admit("a", &pace, LONG).await.unwrap();
                order.lock().unwrap().push((caller, Instant::now()));
                tokio::time::sleep(Duration::from_millis(100)).await;
                drop(slot);
            }));
            // Each asks after the one before it is queued.
            tokio::task::yield_now().await;
        }
        for caller in callers {
            caller.await.unwrap();
        }
        let order = order.lock().unwrap();
        assert_eq!(
            order.iter().map(|(caller, _)| *caller).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        // Each one a window and its margin after the one before it was answered.
        for pair in order.windows(2) {
            assert!(pair[1].1 - pair[0].1 >= Duration::from_millis(100 + 1_000 + 20));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_lasts_until_its_time_and_is_never_shortened() {
        let pacer = Pacer::default();
        assert_eq!(pacer.held("a"), None);
        let at = |secs| Hold {
            until: Instant::now() + Duration::from_secs(secs),
            status: 429,
        };
        pacer.hold("a", at(30));
        pacer.hold("a", at(5));
        assert_eq!(pacer.held("a"), Some((Duration::from_secs(30), 429)));
        assert_eq!(pacer.held("b"), None);
        tokio::time::advance(Duration::from_secs(20)).await;
        pacer.hold(
            "a",
            Hold {
                status: 403,
                ..at(40)
            },
        );
        assert_eq!(pacer.held("a"), Some((Duration::from_secs(40), 403)));
        tokio::time::advance(Duration::from_secs(40)).await;
        assert_eq!(pacer.held("a"), None);

        // The admin API releases an account's hold, not an integration's.
        pacer.hold("account\u{0}acc", at(30));
        pacer.hold("integration\u{0}acc", at(30));
        pacer.release_account("acc");
        assert_eq!(pacer.held("account\u{0}acc"), None);
        assert_eq!(
            pacer.held("integration\u{0}acc"),
            Some((Duration::from_secs(30), 429))
        );
    }

    #[test]
    fn replicas_split_a_budget_without_exceeding_it() {
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
        // Calls at once are split as requests are; below one each, each keeps one.
        assert_eq!(split(&pace(10, 0), 3), (3, 0));
        assert_eq!(split(&pace(2, 0), 5), (1, 0));
    }
}
