//! Metrics room: the counters and histograms the engine and the gateway record, and their
//! Prometheus text. Labels are bounded by the mapping set (integration ids), the route table,
//! HTTP statuses and small fixed vocabularies; never an account id, a token or a query value.
//! Recording is an atomic add on a labelled series; it does no I/O.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route template (`/unified/{model}/{resource}`), or `unmatched`.
    pub route: String,
    pub method: String,
    pub status: u16,
    /// The account's integration, or `none` when the request names no known account.
    pub integration: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IntegrationLabels {
    pub integration: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderCallLabels {
    pub integration: String,
    /// The provider's HTTP status, or `connect_error`, `timeout`, `error`.
    pub status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FollowUpLabels {
    pub integration: String,
    /// The follow-up's name in the mapping (`groups`, `detail`): bounded by the mapping set.
    pub follow_up: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WaitLabels {
    pub integration: String,
    /// `rate_limit` (the provider said wait) or `pace` (the mapping's budget).
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub integration: String,
    /// `oauth2` or `exchange`.
    pub kind: String,
    /// `ok` or `failed`.
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabels {
    /// `fast` or `engine`.
    pub path: String,
}

fn latency_buckets() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// Every series, shared by the engine and the gateway.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RequestLabels, Histogram, fn() -> Histogram>,
    provider_calls: Family<ProviderCallLabels, Counter>,
    provider_seconds: Family<IntegrationLabels, Histogram, fn() -> Histogram>,
    follow_up_calls: Family<FollowUpLabels, Counter>,
    retries: Family<IntegrationLabels, Counter>,
    waits: Family<WaitLabels, Counter>,
    wait_seconds: Family<WaitLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    tokens: Family<TokenLabels, Counter>,
    pages: Family<IntegrationLabels, Counter>,
    records: Family<IntegrationLabels, Counter>,
    mapping_seconds: Family<IntegrationLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    mapped_by_path: Family<PathLabels, Gauge>,
    needs_reauth: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("unigate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Gateway requests answered", requests.clone());
        let request_seconds =
            Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_buckets,
            );
        registry.register(
            "request_seconds",
            "Gateway request latency to the answer's head",
            request_seconds.clone(),
        );
        let provider_calls = Family::<ProviderCallLabels, Counter>::default();
        registry.register(
            "provider_calls",
            "Provider calls sent (every attempt), by answer",
            provider_calls.clone(),
        );
        let provider_seconds =
            Family::<IntegrationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_buckets,
            );
        registry.register(
            "provider_call_seconds",
            "Provider call latency, whole body read",
            provider_seconds.clone(),
        );
        let follow_up_calls = Family::<FollowUpLabels, Counter>::default();
        registry.register(
            "follow_up_calls",
            "Provider calls made by follow-ups (each page of a walked one), by follow-up: what an opt-in such as read_groups costs",
            follow_up_calls.clone(),
        );
        let retries = Family::<IntegrationLabels, Counter>::default();
        registry.register(
            "provider_retries",
            "Provider calls retried",
            retries.clone(),
        );
        let waits = Family::<WaitLabels, Counter>::default();
        registry.register(
            "provider_waits",
            "Waits before a provider call (a rate limit's hint, or the mapping's pace)",
            waits.clone(),
        );
        let wait_seconds =
            Family::<WaitLabels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "provider_wait_seconds",
            "Seconds waited before provider calls",
            wait_seconds.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "token_requests",
            "Token requests (OAuth grants and login exchanges), by outcome",
            tokens.clone(),
        );
        let pages = Family::<IntegrationLabels, Counter>::default();
        registry.register("pages", "Provider pages walked", pages.clone());
        let records = Family::<IntegrationLabels, Counter>::default();
        registry.register("records_mapped", "Records mapped", records.clone());
        let mapping_seconds =
            Family::<IntegrationLabels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "mapping_seconds",
            "Seconds spent mapping pages",
            mapping_seconds.clone(),
        );
        let mapped_by_path = Family::<PathLabels, Gauge>::default();
        registry.register(
            "expression_evaluations",
            "Mapping evaluations since start, by the path that answered (fast path, JSONata engine, or a query mapping's remembered answer)",
            mapped_by_path.clone(),
        );
        let needs_reauth = Gauge::default();
        registry.register(
            "accounts_needs_reauth",
            "Integrated accounts that must be reconnected",
            needs_reauth.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                request_seconds,
                provider_calls,
                provider_seconds,
                follow_up_calls,
                retries,
                waits,
                wait_seconds,
                tokens,
                pages,
                records,
                mapping_seconds,
                mapped_by_path,
                needs_reauth,
            }),
        }
    }
}

fn integration(id: &str) -> IntegrationLabels {
    IntegrationLabels {
        integration: id.to_owned(),
    }
}

impl Metrics {
    pub fn request(&self, labels: RequestLabels, elapsed: Duration) {
        self.inner
            .request_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.inner.requests.get_or_create(&labels).inc();
    }

    /// One provider call of a follow-up (its retries are in `provider_calls`).
    pub(crate) fn follow_up_call(&self, id: &str, follow_up: &str) {
        self.inner
            .follow_up_calls
            .get_or_create(&FollowUpLabels {
                integration: id.to_owned(),
                follow_up: follow_up.to_owned(),
            })
            .inc();
    }

    pub(crate) fn provider_call(&self, id: &str, status: String, elapsed: Duration) {
        self.inner
            .provider_calls
            .get_or_create(&ProviderCallLabels {
                integration: id.to_owned(),
                status,
            })
            .inc();
        self.inner
            .provider_seconds
            .get_or_create(&integration(id))
            .observe(elapsed.as_secs_f64());
    }

    pub(crate) fn retry(&self, id: &str) {
        self.inner.retries.get_or_create(&integration(id)).inc();
    }

    pub(crate) fn wait(&self, id: &str, reason: &str, waited: Duration) {
        let labels = WaitLabels {
            integration: id.to_owned(),
            reason: reason.to_owned(),
        };
        self.inner.waits.get_or_create(&labels).inc();
        self.inner
            .wait_seconds
            .get_or_create(&labels)
            .inc_by(waited.as_secs_f64());
    }

    pub(crate) fn token(&self, id: &str, kind: &str, ok: bool) {
        self.inner
            .tokens
            .get_or_create(&TokenLabels {
                integration: id.to_owned(),
                kind: kind.to_owned(),
                outcome: if ok { "ok" } else { "failed" }.to_owned(),
            })
            .inc();
    }

    pub(crate) fn page(&self, id: &str, records: usize, mapping: Duration) {
        let labels = integration(id);
        self.inner.pages.get_or_create(&labels).inc();
        self.inner
            .records
            .get_or_create(&labels)
            .inc_by(records as u64);
        self.inner
            .mapping_seconds
            .get_or_create(&labels)
            .inc_by(mapping.as_secs_f64());
    }

    /// The Prometheus text exposition (OpenMetrics), with the point-in-time values set first.
    pub fn render(&self, needs_reauth: usize) -> String {
        let (fast, engine) = unigate_mapping::expression::evaluations_by_path();
        let remembered = unigate_mapping::expression::remembered_evaluations();
        for (path, count) in [
            ("fast", fast),
            ("engine", engine),
            ("remembered", remembered),
        ] {
            self.inner
                .mapped_by_path
                .get_or_create(&PathLabels {
                    path: path.to_owned(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        self.inner
            .needs_reauth
            .set(i64::try_from(needs_reauth).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }
}
