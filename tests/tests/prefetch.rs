//! Concurrent prefetch of offset pages: every record once and in order, whatever the provider
//! does to the predicted positions (a short page mid-walk, a cap below the asked page size), and
//! the sequential walk's exact result. The speed-up itself is measured by `bench/prefetch.sh`
//! (the `#[ignore]`d test below), never asserted on time here.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use unigate_engine::{EngineConfig, RetryPolicy};
use unigate_store::IntegratedAccount;
use unigate_tests::{TEST_TOKEN, catalog_with, get_json, serve_with, spawn_provider};
use unigate_upstream::UpstreamConfig;

const MAPPING: &str = r#"name: Offset provider
docs: https://example.test/docs
base_url: "https://api.example.test"
auth: { kind: none }
pagination: { style: offset, offset_param: offset, page_size_param: limit, max_page_size: 100, total: total }
resources:
  users:
    list: { path: /users, records: users }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: '{ "id": id }'
"#;

#[derive(Debug)]
struct Provider {
    users: u64,
    /// The provider answers at most this many records whatever the asked limit.
    cap: u64,
    /// Offsets at which it answers one record less (a short page mid-walk).
    short_at: Vec<u64>,
    latency: Duration,
    calls: AtomicUsize,
}

#[derive(Deserialize)]
struct Params {
    offset: u64,
    limit: u64,
}

async fn users(State(p): State<Arc<Provider>>, Query(q): Query<Params>) -> axum::Json<Value> {
    p.calls.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(p.latency).await;
    let mut count = q.limit.min(p.cap);
    if p.short_at.contains(&q.offset) {
        count -= 1;
    }
    let end = (q.offset + count).min(p.users);
    let users: Vec<Value> = (q.offset..end)
        .map(|i| json!({"id": format!("u{i:04}")}))
        .collect();
    axum::Json(json!({"users": users, "total": p.users}))
}

async fn walk(provider: Provider, query: &str, window: usize) -> (Vec<String>, usize, Duration) {
    let provider = Arc::new(provider);
    let server = spawn_provider(
        Router::new()
            .route("/users", get(users))
            .with_state(provider.clone()),
    )
    .await;
    let origin = server.origin.clone();
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: "offset-provider".into(),
        context: json!({}),
        base_url: Some(origin),
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let config = EngineConfig {
        retry: RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        },
        prefetch_window: window,
        ..EngineConfig::default()
    };
    let gateway = serve_with(
        catalog_with("offset-provider", MAPPING),
        vec![account],
        UpstreamConfig::default(),
        config,
    )
    .await;
    let started = Instant::now();
    let (status, body) = get_json(
        &format!(
            "{}/unified/user-directory/users?integrated_account_id=acc&{query}",
            gateway.origin
        ),
        Some(TEST_TOKEN),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(status, 200, "{body}");
    let ids = body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, provider.calls.load(Ordering::SeqCst), elapsed)
}

fn provider(users: u64, cap: u64, short_at: Vec<u64>, latency: Duration) -> Provider {
    Provider {
        users,
        cap,
        short_at,
        latency,
        calls: AtomicUsize::new(0),
    }
}

fn expected(users: u64) -> Vec<String> {
    (0..users).map(|i| format!("u{i:04}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetched_pages_arrive_once_and_in_order() {
    let query = "limit=10&truto_ignore_limit=true";
    let (ids, calls, _) = walk(provider(95, 100, vec![], Duration::ZERO), query, 4).await;
    assert_eq!(ids, expected(95));
    // 10 pages of data; the total stops the window from asking past the end.
    assert_eq!(calls, 10);

    // A short page mid-walk: the window's guesses after it are dropped, the walk re-aligns.
    let (ids, _, _) = walk(provider(95, 100, vec![30, 61], Duration::ZERO), query, 4).await;
    assert_eq!(ids, expected(95));

    // A provider that caps pages below the asked size: still every record once.
    let (ids, _, _) = walk(provider(95, 7, vec![], Duration::ZERO), query, 4).await;
    assert_eq!(ids, expected(95));

    // The stream takes the same path.
    let (sequential, _, _) = walk(provider(95, 100, vec![30], Duration::ZERO), query, 1).await;
    assert_eq!(sequential, expected(95));
}

/// `bench/prefetch.sh`: 50 offset pages with 20 ms provider latency, sequential vs a window of 8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by bench/prefetch.sh"]
async fn prefetch_speedup() {
    let query = "limit=20&truto_ignore_limit=true";
    let latency = Duration::from_millis(20);
    let (ids, _, sequential) = walk(provider(1_000, 100, vec![], latency), query, 1).await;
    assert_eq!(ids.len(), 1_000);
    let (ids, _, windowed) = walk(provider(1_000, 100, vec![], latency), query, 8).await;
    assert_eq!(ids.len(), 1_000);
    println!(
        "RESULT prefetch 50 pages x 20 ms: sequential {:.0} ms, window 8 {:.0} ms, speed-up {:.1}x",
        sequential.as_secs_f64() * 1e3,
        windowed.as_secs_f64() * 1e3,
        sequential.as_secs_f64() / windowed.as_secs_f64()
    );
}
