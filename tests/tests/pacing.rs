//! Rate limits users never see: a provider that allows 5 requests in any second and answers a
//! bare 429 (no Retry-After, no other hint) beyond that. Its mapping declares the budget
//! (`rate_limit.pace`), so the gateway spaces every call to the account — stream, full walk, the
//! Truto SDK's `to_array()` — and each returns every user while the provider never sees more
//! than its budget in any second (asserted from the provider's own log of arrivals).

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use unigate_engine::EngineConfig;
use unigate_store::IntegratedAccount;
use unigate_tests::{
    TEST_TOKEN, catalog_with, get_json, python_or_skip, repo_root, serve_with, spawn_provider,
};
use unigate_upstream::UpstreamConfig;

const USERS: usize = 200;
const BUDGET: usize = 5;
const WINDOW: Duration = Duration::from_secs(1);

const MAPPING: &str = r#"name: Paced provider
docs: https://example.test/docs
base_url: "{{context.url}}"
auth: { kind: bearer, token: "{{context.token}}" }
rate_limit:
  pace: { requests: 5, seconds: 1 }
pagination: { style: offset, offset_param: offset, page_size_param: limit, total: total }
resources:
  users:
    list: { path: /users, records: users }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: |
          { "id": id, "name": name }
"#;

#[derive(Default)]
struct Provider {
    /// When each request arrived, and whether it was answered 429.
    arrivals: Mutex<Vec<(Instant, bool)>>,
}

#[derive(Deserialize)]
struct Page {
    offset: Option<usize>,
    limit: Option<usize>,
}

async fn users(State(provider): State<Arc<Provider>>, Query(page): Query<Page>) -> Response {
    let now = Instant::now();
    let limited = {
        let mut arrivals = provider.arrivals.lock().unwrap();
        let recent = arrivals
            .iter()
            .filter(|(at, _)| now.duration_since(*at) < WINDOW)
            .count();
        let limited = recent >= BUDGET;
        arrivals.push((now, limited));
        limited
    };
    if limited {
        return (StatusCode::TOO_MANY_REQUESTS, "").into_response();
    }
    let offset = page.offset.unwrap_or(0);
    let end = (offset + page.limit.unwrap_or(10)).min(USERS);
    let users: Vec<Value> = (offset.min(end)..end)
        .map(|i| json!({"id": format!("u{i:03}"), "name": format!("User {i}")}))
        .collect();
    axum::Json(json!({"users": users, "total": USERS})).into_response()
}

struct World {
    provider: Arc<Provider>,
    origin: String,
    _provider_server: unigate_tests::LocalProvider,
    _gateway: unigate_tests::RunningGateway,
}

/// The gateway serving `mapping` as integration `integration` for one account `acc` whose
/// provider is at `origin` (context `url`, `token`).
async fn gateway_for(
    integration: &str,
    mapping: &str,
    origin: &str,
) -> unigate_tests::RunningGateway {
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: integration.into(),
        context: json!({"url": origin, "token": "t"}),
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    serve_with(
        catalog_with(integration, mapping),
        vec![account],
        UpstreamConfig::default(),
        EngineConfig::default(),
    )
    .await
}

async fn world() -> World {
    world_with(MAPPING).await
}

/// The provider of this file, served through the gateway with `mapping` for its one account.
async fn world_with(mapping: &str) -> World {
    let provider = Arc::new(Provider::default());
    let server = spawn_provider(
        Router::new()
            .route("/users", get(users))
            .with_state(provider.clone()),
    )
    .await;
    let gateway = gateway_for("paced", mapping, &server.origin).await;
    World {
        provider,
        origin: gateway.origin.clone(),
        _provider_server: server,
        _gateway: gateway,
    }
}

impl World {
    /// The most arrivals in any window of the budget's length, and how many were answered 429.
    fn observed(&self) -> (usize, usize) {
        let arrivals = self.provider.arrivals.lock().unwrap();
        let busiest = arrivals
            .iter()
            .map(|(start, _)| {
                arrivals
                    .iter()
                    .filter(|(at, _)| *at >= *start && at.duration_since(*start) < WINDOW)
                    .count()
            })
            .max()
            .unwrap_or(0);
        let limited = arrivals.iter().filter(|(_, limited)| *limited).count();
        (busiest, limited)
    }

    fn calls(&self) -> usize {
        self.provider.arrivals.lock().unwrap().len()
    }
}

fn ids_in_order(ids: &[String]) {
    let expected: Vec<String> = (0..USERS).map(|i| format!("u{i:03}")).collect();
    assert_eq!(ids, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_small_pages_returns_every_user_within_the_budget() {
    let world = world().await;
    let text = reqwest::Client::new()
        .get(format!(
            "{}/unified/user-directory/users?integrated_account_id=acc&limit=2&truto_response_format=stream",
            world.origin
        ))
        .bearer_auth(TEST_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .all(|line| line.get("truto_stream_error").is_none()),
        "{text}"
    );
    let ids: Vec<String> = lines
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect();
    ids_in_order(&ids);
    let (busiest, limited) = world.observed();
    assert!(busiest <= BUDGET, "{busiest} requests in one second");
    // Every call was a page (100 pages of 2; the prefetch window may ask for a few past the
    // end, which answer empty) plus one retry per 429, and there were none.
    assert_eq!(limited, 0);
    assert!(
        (USERS / 2..=USERS / 2 + 4).contains(&world.calls()),
        "{}",
        world.calls()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_limit_returns_every_user_within_the_budget() {
    let world = world().await;
    let (status, body) = get_json(
        &format!(
            "{}/unified/user-directory/users?integrated_account_id=acc&limit=10&truto_ignore_limit=true",
            world.origin
        ),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<String> = body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    ids_in_order(&ids);
    assert_eq!(body["next_cursor"], Value::Null);
    let (busiest, limited) = world.observed();
    assert!(busiest <= BUDGET, "{busiest} requests in one second");
    assert_eq!(limited, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_truto_sdk_to_array_returns_every_user_within_the_budget() {
    let Some(python) = python_or_skip("the paced Truto SDK test") else {
        return;
    };
    let world = world().await;
    let origin = world.origin.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(repo_root().join("tests/python/sdk_list.py"))
            .args([origin.as_str(), TEST_TOKEN, "acc", "5", ""])
            .env("UNIGATE_SDK_TO_ARRAY", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ids: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    ids_in_order(&ids);
    let (busiest, limited) = world.observed();
    assert!(busiest <= BUDGET, "{busiest} requests in one second");
    assert_eq!(limited, 0);
    // One provider page per SDK page: 40 pages of 5.
    assert_eq!(world.calls(), USERS / 5);
}

/// Trello counts 300 calls in 10 s per API key, whatever the token: one app's key serves every
/// account. A budget `per: context.api_key` is shared by the accounts holding the same key and
/// no others, beside each account's own budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_per_api_key_is_shared_by_the_accounts_holding_it() {
    const KEY_BUDGET: usize = 3;
    #[derive(Default)]
    struct ByKey {
        arrivals: Mutex<Vec<(String, Instant, bool)>>,
    }
    async fn members(
        State(provider): State<Arc<ByKey>>,
        Query(query): Query<std::collections::HashMap<String, String>>,
    ) -> Response {
        let key = query.get("key").cloned().unwrap_or_default();
        let now = Instant::now();
        let mut arrivals = provider.arrivals.lock().unwrap();
        let recent = arrivals
            .iter()
            .filter(|(of, at, _)| *of == key && now.duration_since(*at) < WINDOW)
            .count();
        let limited = recent >= KEY_BUDGET;
        arrivals.push((key, now, limited));
        if limited {
            return (StatusCode::TOO_MANY_REQUESTS, "").into_response();
        }
        axum::Json(json!({"users": [{"id": "u1", "name": "User 1"}]})).into_response()
    }
    let provider = Arc::new(ByKey::default());
    let server = spawn_provider(
        Router::new()
            .route("/users", get(members))
            .with_state(provider.clone()),
    )
    .await;
    let mapping = r#"name: Keyed provider
docs: https://example.test/docs
base_url: "{{context.url}}"
auth: { kind: query, param: key, value: "{{context.api_key}}" }
rate_limit:
  pace:
    - { requests: 5, seconds: 1 }
    - { requests: 3, seconds: 1, per: context.api_key }
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
    let account = |id: &str, key: &str| IntegratedAccount {
        id: id.into(),
        integration: "keyed".into(),
        context: json!({"url": server.origin, "api_key": key}),
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let gateway = serve_with(
        catalog_with("keyed", mapping),
        vec![account("a", "k1"), account("b", "k1"), account("c", "k2")],
        UpstreamConfig::default(),
        EngineConfig::default(),
    )
    .await;
    let started = Instant::now();
    let calls: Vec<_> = ["a", "b", "a", "b", "a", "b", "c", "c", "c"]
        .into_iter()
        .map(|account| {
            let url = format!(
                "{}/unified/user-directory/users?integrated_account_id={account}",
                gateway.origin
            );
            tokio::spawn(async move { get_json(&url, Some(TEST_TOKEN)).await.0 })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    let arrivals = provider.arrivals.lock().unwrap();
    assert_eq!(arrivals.len(), 9, "each call asked once, none refused");
    assert!(arrivals.iter().all(|(_, _, limited)| !limited));
    // k1's six calls took two windows; k2's three went at once.
    let k2: Vec<Instant> = arrivals
        .iter()
        .filter(|(key, _, _)| key == "k2")
        .map(|(_, at, _)| *at)
        .collect();
    assert!(k2.iter().all(|at| at.duration_since(started) < WINDOW));
    assert!(started.elapsed() >= WINDOW);
}

/// Slack counts each method in its own tier (users.info 100+ a minute, users.list 20+): a
/// resource's own `pace` admits its calls besides the file's budget, in a budget of its own, so
/// the endpoint's tighter limit holds and the other calls are not slowed by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_budget_paces_its_own_calls_and_no_others() {
    const GET_BUDGET: usize = 2;
    #[derive(Default)]
    struct Tiered {
        /// Each arrival: whether it was a get, when, and whether it was answered 429.
        arrivals: Mutex<Vec<(bool, Instant, bool)>>,
    }
    fn arrive(provider: &Tiered, get: bool) -> bool {
        let now = Instant::now();
        let mut arrivals = provider.arrivals.lock().unwrap();
        let recent = arrivals
            .iter()
            .filter(|(of, at, _)| *of && get && now.duration_since(*at) < WINDOW)
            .count();
        let limited = get && recent >= GET_BUDGET;
        arrivals.push((get, now, limited));
        limited
    }
    async fn list(State(provider): State<Arc<Tiered>>) -> Response {
        arrive(&provider, false);
        axum::Json(json!({"users": [{"id": "u1", "name": "User 1"}]})).into_response()
    }
    async fn one(
        State(provider): State<Arc<Tiered>>,
        axum::extract::Path(id): axum::extract::Path<String>,
    ) -> Response {
        if arrive(&provider, true) {
            return (StatusCode::TOO_MANY_REQUESTS, "").into_response();
        }
        axum::Json(json!({"user": {"id": id, "name": "User"}})).into_response()
    }
    let provider = Arc::new(Tiered::default());
    let server = spawn_provider(
        Router::new()
            .route("/users", get(list))
            .route("/users/{id}", get(one))
            .with_state(provider.clone()),
    )
    .await;
    let mapping = r#"name: Tiered provider
docs: https://example.test/docs
base_url: "{{context.url}}"
auth: { kind: bearer, token: "{{context.token}}" }
rate_limit:
  pace: { requests: 50, seconds: 1 }
resources:
  users:
    list: { path: /users, records: users }
    get:
      path: "/users/{{id}}"
      records: user
      pace: { requests: 2, seconds: 1 }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: '{ "id": id, "name": name }'
      get:
        resource: users.get
"#;
    let gateway = gateway_for("tiered", mapping, &server.origin).await;
    let started = Instant::now();
    let calls: Vec<_> = (0..5)
        .flat_map(|i| {
            [
                format!(
                    "{}/unified/user-directory/users/u{i}?integrated_account_id=acc",
                    gateway.origin
                ),
                format!(
                    "{}/unified/user-directory/users?integrated_account_id=acc",
                    gateway.origin
                ),
            ]
        })
        .map(|url| tokio::spawn(async move { get_json(&url, Some(TEST_TOKEN)).await.0 }))
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    let arrivals = provider.arrivals.lock().unwrap();
    assert_eq!(arrivals.len(), 10, "each call asked once, none refused");
    assert!(arrivals.iter().all(|(_, _, limited)| !limited));
    // The five gets took three windows of two; the lists went at once, not behind them.
    let lists: Vec<Instant> = arrivals
        .iter()
        .filter(|(get, _, _)| !get)
        .map(|(_, at, _)| *at)
        .collect();
    assert!(lists.iter().all(|at| at.duration_since(started) < WINDOW));
    assert!(started.elapsed() >= 2 * WINDOW);
}

/// An hourly budget spent (Kandji's 10,000 an hour, Bitbucket's 1,000): the next call is not
/// held until the hour frees a slot, past any request timeout; it is answered 429 at once with
/// when it may come back, and the provider is not asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_spent_for_longer_than_a_call_waits_answers_429_at_once() {
    let mapping = MAPPING.replace(
        "pace: { requests: 5, seconds: 1 }",
        "pace: { requests: 1, seconds: 3600 }",
    );
    let world = world_with(&mapping).await;
    let url = format!(
        "{}/unified/user-directory/users?integrated_account_id=acc&limit=5",
        world.origin
    );
    assert_eq!(get_json(&url, Some(TEST_TOKEN)).await.0, 200);
    let started = Instant::now();
    let response = reqwest::Client::new()
        .get(&url)
        .bearer_auth(TEST_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered at once"
    );
    assert_eq!(response.status(), 429);
    let retry_after: f64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3_500.0..=3_700.0).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["statusCode"], 429);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("documented budget (1 call in 3600 s) is spent for"),
        "{body}"
    );
    assert_eq!(world.calls(), 1, "the second call was not sent");
}

/// Marketo allows ten calls at once per instance and refuses the eleventh (615 "Concurrent
/// access limit reached"), whatever the rate: an `in_flight` budget holds every call of the
/// account (lists, gets, a full walk's prefetched pages) to that many at once, the others sent as
/// soon as one is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_flight_budget_never_exceeds_the_calls_at_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const AT_ONCE: usize = 3;
    #[derive(Default)]
    struct Narrow {
        in_flight: AtomicUsize,
        most: AtomicUsize,
        calls: AtomicUsize,
        refused: AtomicUsize,
    }
    async fn users(State(provider): State<Arc<Narrow>>, Query(page): Query<Page>) -> Response {
        provider.calls.fetch_add(1, Ordering::SeqCst);
        let now = provider.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        provider.most.fetch_max(now, Ordering::SeqCst);
        let answer = if now > AT_ONCE {
            provider.refused.fetch_add(1, Ordering::SeqCst);
            (StatusCode::TOO_MANY_REQUESTS, "").into_response()
        } else {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let offset = page.offset.unwrap_or(0);
            let end = (offset + page.limit.unwrap_or(10)).min(40);
            let users: Vec<Value> = (offset.min(end)..end)
                .map(|i| json!({"id": format!("u{i:03}"), "name": format!("User {i}")}))
                .collect();
            axum::Json(json!({"users": users, "total": 40})).into_response()
        };
        provider.in_flight.fetch_sub(1, Ordering::SeqCst);
        answer
    }
    let provider = Arc::new(Narrow::default());
    let server = spawn_provider(
        Router::new()
            .route("/users", get(users))
            .with_state(provider.clone()),
    )
    .await;
    let mapping = MAPPING.replace(
        "pace: { requests: 5, seconds: 1 }",
        "pace: { in_flight: 3 }",
    );
    let gateway = gateway_for("narrow", &mapping, &server.origin).await;
    let started = Instant::now();
    let first_page = format!(
        "{}/unified/user-directory/users?integrated_account_id=acc&limit=5",
        gateway.origin
    );
    let mut calls: Vec<_> = (0..8)
        .map(|_| {
            let url = first_page.clone();
            tokio::spawn(async move { get_json(&url, Some(TEST_TOKEN)).await })
        })
        .collect();
    // A full walk (8 pages of 5), whose pages are fetched a window at a time.
    let walk = format!(
        "{}/unified/user-directory/users?integrated_account_id=acc&limit=5&truto_ignore_limit=true",
        gateway.origin
    );
    calls.push(tokio::spawn(async move {
        get_json(&walk, Some(TEST_TOKEN)).await
    }));
    let mut bodies = Vec::new();
    for call in calls {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, 200, "{body}");
        bodies.push(body);
    }
    assert_eq!(bodies[8]["result"].as_array().unwrap().len(), 40);
    assert_eq!(provider.refused.load(Ordering::SeqCst), 0);
    assert_eq!(provider.most.load(Ordering::SeqCst), AT_ONCE);
    // 8 first pages and the walk's 8 (a page guessed past the end at most a window's worth):
    // three at a time, 150 ms each, is at least six rounds; one at a time would be sixteen.
    let calls = provider.calls.load(Ordering::SeqCst);
    assert!((16..=24).contains(&calls), "{calls}");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(150 * 6), "{elapsed:?}");
}
