//! Several gateway replicas on one PostgreSQL (a throwaway server from
//! `scripts/postgres-throwaway`): each replica here is a whole gateway with its own store
//! connection pool, token manager and pacer, sharing only the database, as separate processes
//! would (the gateway crate's `replicas` test runs two real processes too).
//!
//! An account created on one replica is served by the other within a second; an expired OAuth
//! token refreshed by 200 calls split across both costs one token request, and the rotated
//! refresh token is stored; a token lease in flight leaves the store's other work its
//! connections; two replicas walking a provider with a 5-per-second budget stay within
//! it together; a provider's wait one replica gets holds the account on the other (and an admin
//! change releases it on both); migrations run once however many replicas start at once; a database outage
//! leaves loaded accounts serving and admin writes refused with 503 until it returns; a replica
//! that dies mid-walk loses nothing on the other.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use unigate_engine::EngineConfig;
use unigate_gateway::Gateway;
use unigate_mapping::Catalog;
use unigate_store::AccountStore;
use unigate_store::postgres::{PostgresSettings, PostgresStore, migrate};
use unigate_store::sqlite::StoreKey;
use unigate_tests::postgres::Postgres;
use unigate_tests::{
    RunningGateway, TEST_TOKEN, catalog_with, get_json, repo_root, serve, spawn_provider, url_pairs,
};
use unigate_upstream::UpstreamConfig;

const ADMIN: &str = "admin-token-0123456789";
const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

struct Replica {
    gateway: RunningGateway,
    store: Arc<PostgresStore>,
}

async fn replica(url: &str, catalog: Arc<Catalog>) -> Replica {
    let settings = PostgresSettings {
        url: url.to_owned(),
        pool_size: 8,
        token_leases: 4,
        token_lease_wait: unigate_store::postgres::TOKEN_LEASE_WAIT,
        reload_every: Duration::from_secs(30),
        tls: None,
    };
    let store = Arc::new(
        PostgresStore::connect(&settings, StoreKey::parse(KEY).unwrap())
            .await
            .unwrap_or_else(|error| panic!("{error}")),
    );
    let config = EngineConfig {
        retry: unigate_engine::RetryPolicy {
            max_retries: 0,
            ..Default::default()
        },
        ..EngineConfig::default()
    };
    let gateway = Gateway::assemble_with_store(
        catalog,
        store.clone(),
        UpstreamConfig::default(),
        config,
        b"shared-cursor-secret-0123456789",
        &[TEST_TOKEN.to_owned()],
        &[ADMIN.to_owned()],
    )
    .unwrap();
    Replica {
        gateway: serve(gateway).await,
        store,
    }
}

async fn admin(
    origin: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{origin}{path}"))
        .bearer_auth(ADMIN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn list_url(origin: &str, account: &str) -> String {
    format!("{origin}/unified/user-directory/users?integrated_account_id={account}")
}

// ---------------------------------------------------------------------------------------------
// Accounts and tokens.

#[derive(Default)]
struct TokenSeen {
    token_requests: AtomicUsize,
    refresh_tokens: Mutex<Vec<String>>,
    api_auth: Mutex<Vec<String>>,
}

async fn token(State(seen): State<Arc<TokenSeen>>, body: String) -> Response {
    let refresh = url_pairs(&body)
        .into_iter()
        .find(|(key, _)| key == "refresh_token")
        .map(|(_, value)| value)
        .unwrap_or_default();
    seen.refresh_tokens.lock().unwrap().push(refresh);
    let n = seen.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
    // Slow enough that every replica's callers are waiting when it answers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    axum::Json(json!({
        "access_token": format!("tok-{n}"),
        "refresh_token": format!("rt-{n}"),
        "token_type": "bearer",
        "expires_in": 3600
    }))
    .into_response()
}

async fn users(State(seen): State<Arc<TokenSeen>>, headers: HeaderMap) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    seen.api_auth.lock().unwrap().push(auth.clone());
    if auth.starts_with("Bearer tok-") {
        axum::Json(json!({"users": [{"id": "u1"}]})).into_response()
    } else {
        (axum::http::StatusCode::UNAUTHORIZED, "expired").into_response()
    }
}

const OAUTH_MAPPING: &str = r#"name: Rotating OAuth example
docs: https://example.test/docs
base_url: "{{context.url}}"
auth:
  kind: oauth2_refresh_token
  token_url: "{{context.url}}/oauth/token"
  client_id: "{{context.client_id}}"
  client_secret: "{{context.client_secret}}"
  refresh_token: "{{context.refresh_token}}"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_and_one_token_refresh_are_shared_across_replicas() {
    let Some(postgres) = Postgres::start(&repo_root(), "shared") else {
        return;
    };
    let url = postgres.create_database("shared");
    let seen = Arc::new(TokenSeen::default());
    let provider = spawn_provider(
        Router::new()
            .route("/oauth/token", post(token))
            .route("/users", get(users))
            .with_state(seen.clone()),
    )
    .await;
    let catalog = Arc::new(catalog_with("rotating", OAUTH_MAPPING));
    let a = replica(&url, catalog.clone()).await;
    let b = replica(&url, catalog).await;

    // Created on A, with an access token that expired long ago.
    let created = json!({
        "id": "acc",
        "integration": "rotating",
        "context": {
            "url": provider.origin,
            "client_id": "cid",
            "client_secret": "secret",
            "refresh_token": "rt-0",
            "access_token": "expired",
            "access_token_expires_at": "2000-01-01T00:00:00Z"
        }
    });
    let (status, body) = admin(
        &a.gateway.origin,
        reqwest::Method::POST,
        "/admin/integrated-accounts",
        Some(created),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let created_at = Instant::now();
    // Served by B within a second.
    loop {
        if b.store.get("acc").is_some() {
            break;
        }
        assert!(
            created_at.elapsed() < Duration::from_secs(1),
            "replica B did not see the account within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // 200 calls split across both replicas on the expired token: one token request in all.
    let calls: Vec<_> = (0..200)
        .map(|index| {
            let origin = if index % 2 == 0 {
                a.gateway.origin.clone()
            } else {
                b.gateway.origin.clone()
            };
            tokio::spawn(async move { get_json(&list_url(&origin, "acc"), Some(TEST_TOKEN)).await })
        })
        .collect();
    for call in calls {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"][0]["id"], "u1");
    }
    assert_eq!(seen.token_requests.load(Ordering::SeqCst), 1);
    assert_eq!(*seen.refresh_tokens.lock().unwrap(), vec!["rt-0"]);
    assert!(
        seen.api_auth
            .lock()
            .unwrap()
            .iter()
            .all(|auth| auth == "Bearer tok-1")
    );
    // The rotated refresh token was committed with the access token, and both replicas know it.
    for store in [&a.store, &b.store] {
        let mut account = store.get("acc").unwrap();
        for _ in 0..100 {
            if account.context["refresh_token"] == "rt-1" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            account = store.get("acc").unwrap();
        }
        assert_eq!(account.context["refresh_token"], "rt-1");
        assert_eq!(account.context["access_token"], "tok-1");
    }

    // New credentials through A: B, which holds tok-1 (valid for an hour), must not send it for
    // them; it asks for a token with the new refresh token.
    let (status, body) = admin(
        &a.gateway.origin,
        reqwest::Method::PATCH,
        "/admin/integrated-accounts/acc",
        Some(json!({"context": {"client_secret": "secret-2", "refresh_token": "rt-new"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let patched_at = Instant::now();
    while b.store.get("acc").unwrap().context["refresh_token"] != "rt-new" {
        assert!(
            patched_at.elapsed() < Duration::from_secs(1),
            "replica B did not see the change within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, body) = get_json(&list_url(&b.gateway.origin, "acc"), Some(TEST_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(seen.token_requests.load(Ordering::SeqCst), 2);
    assert_eq!(*seen.refresh_tokens.lock().unwrap(), vec!["rt-0", "rt-new"]);
    assert_eq!(
        seen.api_auth.lock().unwrap().last().map(String::as_str),
        Some("Bearer tok-2")
    );
}

// ---------------------------------------------------------------------------------------------
// Pacing.

#[derive(Default)]
struct PacedSeen {
    at: Mutex<Vec<Instant>>,
}

const PAGES: u32 = 8;

async fn paced_users(State(seen): State<Arc<PacedSeen>>, RawQuery(query): RawQuery) -> Response {
    seen.at.lock().unwrap().push(Instant::now());
    let page: u32 = url_pairs(query.as_deref().unwrap_or(""))
        .into_iter()
        .find(|(key, _)| key == "page")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(1);
    axum::Json(json!({
        "users": [{"id": format!("u{page}a")}, {"id": format!("u{page}b")}],
        "more": page < PAGES
    }))
    .into_response()
}

const PACED_MAPPING: &str = r#"name: Paced example
docs: https://example.test/docs
base_url: "{{context.url}}"
auth: { kind: none }
rate_limit:
  pace: { requests: 5, seconds: 1 }
resources:
  users:
    list:
      path: /users
      records: users
      pagination:
        style: page
        page_param: page
        first_page: 1
        has_more: more
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: '{ "id": id }'
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_keep_a_providers_budget_together() {
    let Some(postgres) = Postgres::start(&repo_root(), "paced") else {
        return;
    };
    let url = postgres.create_database("paced");
    let seen = Arc::new(PacedSeen::default());
    let provider = spawn_provider(
        Router::new()
            .route("/users", get(paced_users))
            .with_state(seen.clone()),
    )
    .await;
    let catalog = Arc::new(catalog_with("paced", PACED_MAPPING));
    let a = replica(&url, catalog.clone()).await;
    let b = replica(&url, catalog).await;
    let (status, body) = admin(
        &a.gateway.origin,
        reqwest::Method::POST,
        "/admin/integrated-accounts",
        Some(json!({"id": "acc", "integration": "paced", "context": {"url": provider.origin}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // Each replica counts the other by its heartbeat before walking.
    let started = Instant::now();
    while a.store.replicas() < 2 || b.store.replicas() < 2 || b.store.get("acc").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "replicas did not see each other"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let walks: Vec<_> = [&a, &b]
        .iter()
        .map(|replica| {
            let url = format!(
                "{}&truto_ignore_limit=true",
                list_url(&replica.gateway.origin, "acc")
            );
            tokio::spawn(async move { get_json(&url, Some(TEST_TOKEN)).await })
        })
        .collect();
    for walk in walks {
        let (status, body) = walk.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result_count"], json!(2 * PAGES));
    }
    let at = seen.at.lock().unwrap().clone();
    assert_eq!(at.len(), 2 * PAGES as usize);
    // No window of one second holds more than the budget's 5 calls, counting both replicas.
    for (index, first) in at.iter().enumerate() {
        let in_window = at[index..]
            .iter()
            .take_while(|later| later.duration_since(*first) < Duration::from_secs(1))
            .count();
        assert!(in_window <= 5, "{in_window} calls within one second");
    }
}

/// A provider's "wait" reaches every replica: replica A's call is answered 429 with
/// `Retry-After: 120`; replica B, which never asked, answers its own call for the account with
/// the same 429 and the time left, without sending it (each replica collecting its own 429 is
/// what providers count against the account). An admin change of the account on B releases it
/// on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_providers_wait_holds_the_account_on_every_replica() {
    let Some(postgres) = Postgres::start(&repo_root(), "holds") else {
        return;
    };
    let url = postgres.create_database("holds");
    let calls = Arc::new(AtomicUsize::new(0));
    async fn limited_once(State(calls): State<Arc<AtomicUsize>>) -> Response {
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return (
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "120")],
                "slow down",
            )
                .into_response();
        }
        axum::Json(json!({"users": [{"id": "u1"}]})).into_response()
    }
    let provider = spawn_provider(
        Router::new()
            .route("/users", get(limited_once))
            .with_state(calls.clone()),
    )
    .await;
    let mapping = r#"name: Limited example
docs: https://example.test/docs
base_url: "{{context.url}}"
auth: { kind: none }
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
    let catalog = Arc::new(catalog_with("limited", mapping));
    let a = replica(&url, catalog.clone()).await;
    let b = replica(&url, catalog).await;
    let (status, body) = admin(
        &a.gateway.origin,
        reqwest::Method::POST,
        "/admin/integrated-accounts",
        Some(json!({"id": "acc", "integration": "limited", "context": {"url": provider.origin}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let started = Instant::now();
    while b.store.get("acc").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "b never saw the account"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What B hears of providers' waits, after its own engine (subscribed first) took it.
    let heard = Arc::new(Mutex::new(Vec::new()));
    let heard_by_b = heard.clone();
    b.store.subscribe_holds(Arc::new(move |key, until, status| {
        heard_by_b
            .lock()
            .unwrap()
            .push((key.replace('\u{0}', "/"), until, status));
    }));
    let (status, _) = get_json(&list_url(&a.gateway.origin, "acc"), Some(TEST_TOKEN)).await;
    assert_eq!(status, 429);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // B hears of the wait within moments (a notification, not a poll). The release A sent when
    // the account was created (an admin write) may reach B after it subscribed: not the wait.
    let is_wait = |(_, _, status): &(String, i64, u16)| *status != 0;
    let started = Instant::now();
    while !heard.lock().unwrap().iter().any(is_wait) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "b never heard of the wait"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    {
        let heard = heard.lock().unwrap();
        let (key, until, status) = heard.iter().find(|entry| is_wait(entry)).unwrap();
        assert_eq!((key.as_str(), *status), ("account/acc", 429));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let left = until - now;
        assert!((100_000..=120_000).contains(&left), "{left} ms left");
    }
    let (status, body) = get_json(&list_url(&b.gateway.origin, "acc"), Some(TEST_TOKEN)).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "b's call must not be sent");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("asked to wait"), "{body}");
    // An admin change on B (new credentials may bring a budget of their own) releases both.
    let (status, body) = admin(
        &b.gateway.origin,
        reqwest::Method::PATCH,
        "/admin/integrated-accounts/acc",
        Some(json!({"context": {"url": provider.origin, "note": "reconnected"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get_json(&list_url(&b.gateway.origin, "acc"), Some(TEST_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let started = Instant::now();
    loop {
        let (status, body) = get_json(&list_url(&a.gateway.origin, "acc"), Some(TEST_TOKEN)).await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a still holds the account: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Migrations, outages, a replica that dies.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_run_once_when_replicas_start_together() {
    let Some(postgres) = Postgres::start(&repo_root(), "migrate") else {
        return;
    };
    let url = postgres.create_database("migrate");
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                migrate(&PostgresSettings {
                    url,
                    pool_size: 1,
                    token_leases: 1,
                    token_lease_wait: unigate_store::postgres::TOKEN_LEASE_WAIT,
                    reload_every: Duration::from_secs(30),
                    tls: None,
                })
                .await
            })
        })
        .collect();
    for start in starts {
        assert_eq!(start.await.unwrap().unwrap(), 2);
    }
    assert_eq!(
        postgres.sql(
            &url,
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM unigate_migrations"
        ),
        "1,2"
    );
    assert_eq!(
        postgres.sql(&url, "SELECT version FROM unigate_schema_version"),
        "2"
    );
}

const STATIC_MAPPING: &str = r#"name: Static example
docs: https://example.test/docs
base_url: "{{context.url}}"
auth: { kind: bearer, token: "{{context.token}}" }
resources:
  users:
    list:
      path: /users
      records: users
      pagination:
        style: page
        page_param: page
        first_page: 1
        has_more: more
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: '{ "id": id }'
"#;

async fn static_provider() -> unigate_tests::LocalProvider {
    spawn_provider(Router::new().route(
        "/users",
        get(|RawQuery(query): RawQuery| async move {
            let page: u32 = url_pairs(query.as_deref().unwrap_or(""))
                .into_iter()
                .find(|(key, _)| key == "page")
                .and_then(|(_, value)| value.parse().ok())
                .unwrap_or(1);
            axum::Json(json!({"users": [{"id": format!("u{page}")}], "more": page < 3}))
        }),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_keeps_loaded_accounts_serving_and_refuses_admin_writes() {
    let Some(mut postgres) = Postgres::start(&repo_root(), "outage") else {
        return;
    };
    let url = postgres.create_database("outage");
    let provider = static_provider().await;
    let a = replica(&url, Arc::new(catalog_with("static", STATIC_MAPPING))).await;
    let account = |id: &str| json!({"id": id, "integration": "static", "context": {"url": provider.origin, "token": "t"}});
    let origin = a.gateway.origin.clone();
    let (status, _) = admin(
        &origin,
        reqwest::Method::POST,
        "/admin/integrated-accounts",
        Some(account("acc")),
    )
    .await;
    assert_eq!(status, 201);

    postgres.stop();
    // Loaded accounts still answer.
    let (status, body) = get_json(&list_url(&origin, "acc"), Some(TEST_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    // Writes are refused with a 503 in the envelope, and readiness says why.
    let (status, body) = admin(
        &origin,
        reqwest::Method::POST,
        "/admin/integrated-accounts",
        Some(account("other")),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["statusCode"], 503);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("the account store is unreachable"),
        "{body}"
    );
    let mut ready = 0;
    for _ in 0..100 {
        ready = get_json(&format!("{origin}/ready"), None).await.0;
        if ready == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready, 503);

    // Back without a restart of the gateway.
    postgres.restart();
    let started = Instant::now();
    loop {
        let (status, _) = admin(
            &origin,
            reqwest::Method::POST,
            "/admin/integrated-accounts",
            Some(account("other")),
        )
        .await;
        if status == 201 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "writes did not come back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _) = get_json(&list_url(&origin, "other"), Some(TEST_TOKEN)).await;
    assert_eq!(status, 200);
    loop {
        if get_json(&format!("{origin}/ready"), None).await.0 == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "readiness did not come back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A token lease holds its connection (and the account's row lock) while the provider's token
/// endpoint answers. On the store's one shared pool, a write waited behind it until the wait
/// timed out (503 after 3 s, with `pool_size: 1`; a few slow token calls did the same to the
/// default 8, and to the heartbeat and the reloads); leases now have connections of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_lease_in_flight_leaves_the_store_its_connections() {
    let Some(postgres) = Postgres::start(&repo_root(), "leases") else {
        return;
    };
    let settings = PostgresSettings {
        url: postgres.create_database("leases"),
        pool_size: 1,
        token_leases: 1,
        token_lease_wait: Duration::from_millis(200),
        reload_every: Duration::from_secs(30),
        tls: None,
    };
    let store = Arc::new(
        PostgresStore::connect(&settings, StoreKey::parse(KEY).unwrap())
            .await
            .unwrap_or_else(|error| panic!("{error}")),
    );
    let account = |id: &str, token: &str| -> unigate_store::IntegratedAccount {
        serde_json::from_value(
            json!({"id": id, "integration": "static", "context": {"token": token}}),
        )
        .unwrap()
    };
    let write = |account: unigate_store::IntegratedAccount| {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.create(account))
    };
    write(account("held", "t0")).await.unwrap().unwrap();

    let lease = store
        .lease_tokens("held")
        .await
        .unwrap()
        .expect("the postgres store leases tokens");
    assert_eq!(lease.account().context["token"], "t0");
    // While the token request is in flight, a write still gets a connection (on the shared pool
    // it waited out the pool's 3 s and failed: "the account store is unreachable").
    write(account("other", "t")).await.unwrap().unwrap();
    // Another account's token request waits for the one lease connection, then says why.
    let waited = store.lease_tokens("other").await.err();
    assert_eq!(
        waited.map(|error| error.to_string()),
        Some("all 1 token-lease connections (store.token_leases) are held by token requests still in flight; waited 0.2 s".to_owned())
    );
    // The lease commits the new token and gives its connection back for the next one.
    let committed = lease.commit(account("held", "t1")).await.unwrap();
    assert_eq!(committed.context["token"], "t1");
    assert_eq!(store.get("held").unwrap().context["token"], "t1");
    let next = store.lease_tokens("other").await.unwrap().unwrap();
    assert_eq!(next.account().context["token"], "t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_dies_mid_walk_loses_nothing_on_the_other() {
    let Some(postgres) = Postgres::start(&repo_root(), "failover") else {
        return;
    };
    let url = postgres.create_database("failover");
    let provider = static_provider().await;
    let catalog = Arc::new(catalog_with("static", STATIC_MAPPING));
    let a = replica(&url, catalog.clone()).await;
    let b = replica(&url, catalog).await;
    let (status, _) = admin(
        &a.gateway.origin,
        reqwest::Method::POST,
        "/admin/integrated-accounts",
        Some(json!({"id": "acc", "integration": "static", "context": {"url": provider.origin, "token": "t"}})),
    )
    .await;
    assert_eq!(status, 201);
    // B has the account (a notification away).
    let started = Instant::now();
    while b.store.get("acc").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "B did not see the account"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, first) = get_json(&list_url(&a.gateway.origin, "acc"), Some(TEST_TOKEN)).await;
    assert_eq!(status, 200, "{first}");
    let mut ids = vec![first["result"][0]["id"].clone()];
    let mut cursor = first["next_cursor"].as_str().unwrap().to_owned();
    // Replica A goes away; the walk goes on at B with A's cursor.
    drop(a);
    loop {
        let (status, page) = get_json(
            &format!(
                "{}&next_cursor={cursor}",
                list_url(&b.gateway.origin, "acc")
            ),
            Some(TEST_TOKEN),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        ids.extend(
            page["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(ids, vec![json!("u1"), json!("u2"), json!("u3")]);
}

/// `store.tls`: against a server that takes TLS connections only, the store connects when the
/// server's CA is given, and refuses both a plain connection and a certificate it cannot verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_verify_the_servers_certificate() {
    let Some(postgres) = Postgres::start_tls(&repo_root(), "tls") else {
        return;
    };
    let url = postgres.create_database("tls");
    let settings = |tls: Option<unigate_store::postgres::PostgresTls>| PostgresSettings {
        url: url.clone(),
        pool_size: 2,
        token_leases: 1,
        token_lease_wait: unigate_store::postgres::TOKEN_LEASE_WAIT,
        reload_every: Duration::from_secs(30),
        tls,
    };
    let key = || StoreKey::parse(KEY).unwrap();

    let verified = PostgresStore::connect(
        &settings(Some(unigate_store::postgres::PostgresTls {
            ca_file: Some(postgres.ca_file()),
        })),
        key(),
    )
    .await
    .unwrap_or_else(|error| panic!("TLS with the server's CA: {error}"));
    let account = unigate_store::IntegratedAccount {
        id: "over-tls".into(),
        integration: "okta".into(),
        context: json!({"subdomain": "acme", "api_token": "SSWS-secret"}),
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let store = Arc::new(verified);
    let writer = store.clone();
    tokio::task::spawn_blocking(move || writer.create(account))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.get("over-tls").unwrap().integration, "okta");

    let plain = PostgresStore::connect(&settings(None), key()).await;
    let error = plain
        .expect_err("the server rejects plain connections")
        .to_string();
    assert!(error.contains("pg_hba.conf"), "{error}");

    let unverified = PostgresStore::connect(
        &settings(Some(unigate_store::postgres::PostgresTls { ca_file: None })),
        key(),
    )
    .await;
    let error = unverified
        .expect_err("a certificate from an unknown CA is refused")
        .to_string();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
}
