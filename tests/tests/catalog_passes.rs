//! A pass over a catalog (`over`): a company's own users, then, for an account with the flag,
//! the users of each of its merchant accounts, one walk per merchant read from the merchants
//! list. Walked cursor by cursor and in one answer, each user once, in order; the catalog read
//! once a walk (every page of it); a merchant gone since (404) lists nothing; the records see
//! their merchant as `$over`; a cursor whose merchant has left the catalog goes on at the one
//! now in its place; the account without the flag calls no catalog; the record's id may go in
//! a query parameter and a header instead of the path.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use unigate_engine::{EngineConfig, RetryPolicy};
use unigate_store::IntegratedAccount;
use unigate_tests::{
    LocalProvider, RunningGateway, TEST_TOKEN, catalog_with, get_json, serve_with, spawn_provider,
};
use unigate_upstream::UpstreamConfig;

const MAPPING: &str = r#"name: Merchants provider
docs: https://example.test/docs
base_url: "https://api.example.test"
auth: { kind: none }
pagination: { style: offset, offset_param: offset, page_size_param: limit, max_page_size: 2, total: total }
resources:
  users:
    list:
      path: /users
      records: data
      passes:
        - name: company
        - name: merchant_users
          only_with: read_merchant_users
          path: "/merchants/{{id}}/users"
          over: { resource: merchants.list, id: code, not_found: skip }
  merchants:
    list:
      path: /merchants
      records: data
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: |
          { "id": id, "name": name, "title": $pass = "merchant_users" ? "of " & $over.name }
"#;

/// The same list where the pass sends the merchant's code as a parameter and a header of the
/// list's own path.
const BY_PARAMETER: &str = r#"name: Merchants provider
docs: https://example.test/docs
base_url: "https://api.example.test"
auth: { kind: none }
pagination: { style: offset, offset_param: offset, page_size_param: limit, max_page_size: 2, total: total }
resources:
  users:
    list:
      path: /users
      records: data
      passes:
        - name: company
        - name: merchant_users
          only_with: read_merchant_users
          query: { merchant: "{{id}}" }
          headers: { X-Merchant: "{{id}}" }
          over: { resource: merchants.list, id: code, not_found: skip }
  merchants:
    list:
      path: /merchants
      records: data
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: |
          { "id": id, "name": name, "title": $pass = "merchant_users" ? "of " & $over.name }
"#;

#[derive(Default)]
struct Provider {
    /// Path and query of every request, in the order they arrived.
    requests: Mutex<Vec<String>>,
    /// The merchant accounts the catalog lists: code and name.
    merchants: Mutex<Vec<(String, String)>>,
}

#[derive(Deserialize)]
struct Page {
    offset: usize,
    limit: usize,
}

fn page_of(users: &[Value], page: &Page) -> Value {
    let data: Vec<Value> = users
        .iter()
        .skip(page.offset)
        .take(page.limit)
        .cloned()
        .collect();
    json!({ "data": data, "total": users.len() })
}

#[derive(Deserialize)]
struct Merchant {
    merchant: Option<String>,
}

/// The company's users, or, asked for a merchant (parameter and header alike), its users.
async fn company(
    State(p): State<Arc<Provider>>,
    uri: Uri,
    headers: HeaderMap,
    Query(page): Query<Page>,
    Query(merchant): Query<Merchant>,
) -> Response {
    if let Some(code) = merchant.merchant {
        let header = headers
            .get("x-merchant")
            .and_then(|value| value.to_str().ok());
        assert_eq!(
            header,
            Some(code.as_str()),
            "the header names the merchant asked"
        );
        return merchant_users(State(p), uri, Path(code), Query(page)).await;
    }
    p.requests.lock().unwrap().push(uri.to_string());
    let users: Vec<Value> = (0..3)
        .map(|i| json!({ "id": format!("c-{i}"), "name": format!("Company user {i}") }))
        .collect();
    axum::Json(page_of(&users, &page)).into_response()
}

async fn merchants(
    State(p): State<Arc<Provider>>,
    uri: Uri,
    Query(page): Query<Page>,
) -> axum::Json<Value> {
    p.requests.lock().unwrap().push(uri.to_string());
    let merchants: Vec<Value> = p
        .merchants
        .lock()
        .unwrap()
        .iter()
        .map(|(code, name)| json!({ "code": code, "name": name, "number": 1234567890123456789u64 }))
        .collect();
    axum::Json(page_of(&merchants, &page))
}

/// M1 has three users, M3 one, M4 none; any other merchant is not found.
async fn merchant_users(
    State(p): State<Arc<Provider>>,
    uri: Uri,
    Path(code): Path<String>,
    Query(page): Query<Page>,
) -> Response {
    p.requests.lock().unwrap().push(uri.to_string());
    let count = match code.as_str() {
        "M1" => 3,
        "M3" => 1,
        "M4" => 0,
        _ => {
            return (
                StatusCode::NOT_FOUND,
                axum::Json(json!({ "message": "merchant not found" })),
            )
                .into_response();
        }
    };
    let users: Vec<Value> = (0..count)
        .map(|i| json!({ "id": format!("{code}-{i}"), "name": format!("{code} user {i}") }))
        .collect();
    axum::Json(page_of(&users, &page)).into_response()
}

struct Setup {
    provider: Arc<Provider>,
    gateway: RunningGateway,
    server: LocalProvider,
}

fn merchant_list() -> Vec<(String, String)> {
    [
        ("M1", "Shop one"),
        ("M2", "Closed shop"),
        ("M3", "Shop three"),
        ("M4", "Empty shop"),
    ]
    .iter()
    .map(|(code, name)| (code.to_string(), name.to_string()))
    .collect()
}

async fn setup(context: Value) -> Setup {
    setup_with(MAPPING, context).await
}

async fn setup_with(mapping: &'static str, context: Value) -> Setup {
    let provider = Arc::new(Provider::default());
    *provider.merchants.lock().unwrap() = merchant_list();
    let server = spawn_provider(
        Router::new()
            .route("/users", get(company))
            .route("/merchants", get(merchants))
            .route("/merchants/{code}/users", get(merchant_users))
            .with_state(provider.clone()),
    )
    .await;
    let gateway = gateway_with(mapping, &server, context).await;
    Setup {
        provider,
        gateway,
        server,
    }
}

/// A gateway of its own (its own kept walks) for the provider `server`.
async fn gateway_for(server: &LocalProvider, context: Value) -> RunningGateway {
    gateway_with(MAPPING, server, context).await
}

async fn gateway_with(mapping: &str, server: &LocalProvider, context: Value) -> RunningGateway {
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: "merchants".into(),
        context,
        base_url: Some(server.origin.clone()),
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let config = EngineConfig {
        retry: RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        },
        ..EngineConfig::default()
    };
    serve_with(
        catalog_with("merchants", mapping),
        vec![account],
        UpstreamConfig::default(),
        config,
    )
    .await
}

fn url(gateway: &RunningGateway, query: &str) -> String {
    format!(
        "{}/unified/user-directory/users?integrated_account_id=acc&{query}",
        gateway.origin
    )
}

/// Each answer's records as `id (title)`, answer by answer, following the cursors.
async fn walk_by_cursor(gateway: &RunningGateway, first: Option<String>) -> Vec<Vec<String>> {
    let mut cursor = first;
    let mut answers = Vec::new();
    loop {
        let query = match &cursor {
            None => "limit=2".to_owned(),
            Some(cursor) => format!("limit=2&next_cursor={cursor}"),
        };
        let (status, body) = get_json(&url(gateway, &query), Some(TEST_TOKEN)).await;
        assert_eq!(status, 200, "{body}");
        answers.push(records(&body));
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return answers,
        }
        assert!(answers.len() < 20, "the walk does not end: {answers:?}");
    }
}

/// The `next_cursor` the walk's `calls`-th answer gives.
async fn cursor_after(gateway: &RunningGateway, calls: usize) -> Option<String> {
    let mut cursor: Option<String> = None;
    for _ in 0..calls {
        let query = match &cursor {
            None => "limit=2".to_owned(),
            Some(cursor) => format!("limit=2&next_cursor={cursor}"),
        };
        let (status, body) = get_json(&url(gateway, &query), Some(TEST_TOKEN)).await;
        assert_eq!(status, 200, "{body}");
        cursor = body["next_cursor"].as_str().map(str::to_owned);
    }
    cursor
}

fn records(body: &Value) -> Vec<String> {
    body["result"]
        .as_array()
        .unwrap_or_else(|| panic!("no result: {body}"))
        .iter()
        .map(|user| match user["title"].as_str() {
            Some(title) => format!("{} ({title})", user["id"].as_str().unwrap()),
            None => user["id"].as_str().unwrap().to_owned(),
        })
        .collect()
}

fn requests(setup: &Setup) -> Vec<String> {
    setup.provider.requests.lock().unwrap().clone()
}

fn flagged() -> Value {
    json!({ "read_merchant_users": true })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_by_cursor_each_merchants_users_follow_the_companys() {
    let setup = setup(flagged()).await;
    let answers = walk_by_cursor(&setup.gateway, None).await;
    assert_eq!(
        answers,
        vec![
            vec!["c-0", "c-1"],
            vec!["c-2"],
            vec!["M1-0 (of Shop one)", "M1-1 (of Shop one)"],
            vec!["M1-2 (of Shop one)"],
            // M2 answers 404 (skipped, an empty page walked past), M3 lists one user.
            vec!["M3-0 (of Shop three)"],
            // M4 lists nobody: the walk's last page is empty.
            vec![],
        ]
    );
    // The catalog is read once, every page of it, though the walk took six calls.
    assert_eq!(
        requests(&setup),
        vec![
            "/users?limit=2&offset=0",
            "/users?limit=2&offset=2",
            "/merchants?limit=2&offset=0",
            "/merchants?limit=2&offset=2",
            "/merchants/M1/users?limit=2&offset=0",
            "/merchants/M1/users?limit=2&offset=2",
            "/merchants/M2/users?limit=2&offset=0",
            "/merchants/M3/users?limit=2&offset=0",
            "/merchants/M4/users?limit=2&offset=0",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_user_in_one_answer() {
    let setup = setup(flagged()).await;
    let (status, body) = get_json(
        &url(&setup.gateway, "truto_ignore_limit=true"),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        records(&body),
        vec![
            "c-0",
            "c-1",
            "c-2",
            "M1-0 (of Shop one)",
            "M1-1 (of Shop one)",
            "M1-2 (of Shop one)",
            "M3-0 (of Shop three)",
        ]
    );
    assert_eq!(body["next_cursor"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_without_the_flag_reads_no_catalog() {
    let setup = setup(json!({})).await;
    let answers = walk_by_cursor(&setup.gateway, None).await;
    assert_eq!(answers, vec![vec!["c-0", "c-1"], vec!["c-2"]]);
    assert_eq!(
        requests(&setup),
        vec!["/users?limit=2&offset=0", "/users?limit=2&offset=2"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_whose_merchant_left_the_catalog_goes_on_at_the_next() {
    let setup = setup(flagged()).await;
    // Three calls in: the cursor points at M1's second page.
    let cursor = cursor_after(&setup.gateway, 3).await;
    // M1 closes; another gateway (nothing kept of the walk) reads the catalog anew.
    setup.provider.merchants.lock().unwrap().remove(0);
    let other = gateway_for(&setup.server, flagged()).await;
    let answers = walk_by_cursor(&other, cursor).await;
    // M2 is in M1's place now (not found: nothing), then M3 and M4: no user twice, and only
    // M1's remaining user, whose merchant is gone, is not listed.
    assert_eq!(answers, vec![vec!["M3-0 (of Shop three)"], vec![]]);
    // A record still in the catalog is found where it moved: a cursor at M4 (the fourth) after
    // a merchant was added before it goes on at M4, not at M3 (now fourth) again.
    *setup.provider.merchants.lock().unwrap() = merchant_list();
    let cursor = cursor_after(&setup.gateway, 5).await;
    let mut merchants = merchant_list();
    merchants.insert(0, ("M0".to_owned(), "New shop".to_owned()));
    *setup.provider.merchants.lock().unwrap() = merchants;
    let third = gateway_for(&setup.server, flagged()).await;
    let answers = walk_by_cursor(&third, cursor).await;
    assert_eq!(answers, vec![Vec::<String>::new()]);
    assert_eq!(
        requests(&setup).last().map(String::as_str),
        Some("/merchants/M4/users?limit=2&offset=0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_merchants_code_may_go_in_a_parameter_and_a_header() {
    let setup = setup_with(BY_PARAMETER, flagged()).await;
    let answers = walk_by_cursor(&setup.gateway, None).await;
    assert_eq!(
        answers,
        vec![
            vec!["c-0", "c-1"],
            vec!["c-2"],
            vec!["M1-0 (of Shop one)", "M1-1 (of Shop one)"],
            vec!["M1-2 (of Shop one)"],
            vec!["M3-0 (of Shop three)"],
            vec![],
        ]
    );
    assert_eq!(
        requests(&setup)[4..],
        [
            "/users?merchant=M1&limit=2&offset=0",
            "/users?merchant=M1&limit=2&offset=2",
            "/users?merchant=M2&limit=2&offset=0",
            "/users?merchant=M3&limit=2&offset=0",
            "/users?merchant=M4&limit=2&offset=0",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_name_the_catalog_a_part_is_walked_over() {
    let setup = setup(flagged()).await;
    let (status, body) = get_json(
        &format!(
            "{}/unified/user-directory/users/meta/list?integrated_account_id=acc",
            setup.gateway.origin
        ),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["parts"],
        json!([
            { "name": "company", "only_with": null },
            { "name": "merchant_users", "only_with": "read_merchant_users", "over": "merchants.list" }
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_over_a_catalog_reads_its_records_with_the_catalog_record() {
    // Each merchant's first user is kept out by the pass's `records`, which reads `$over`; the
    // walk counts what the provider sent (`received`), so M1's second page is asked at offset
    // 2, not at 1 (M1-1 again), and M3's page, all of it kept out, is no end of the list.
    let mapping = MAPPING
        .replace(
            "max_page_size: 2, total: total }",
            "max_page_size: 2, total: total, received: $count(data) }",
        )
        .replace(
        "          over: { resource: merchants.list, id: code, not_found: skip }\n",
        "          over: { resource: merchants.list, id: code, not_found: skip }\n          records: 'data[id != $over.code & \"-0\"]'\n",
    );
    let mapping: &'static str = Box::leak(mapping.into_boxed_str());
    let setup = setup_with(mapping, flagged()).await;
    let (status, body) = get_json(
        &url(&setup.gateway, "truto_ignore_limit=true"),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        records(&body),
        vec![
            "c-0",
            "c-1",
            "c-2",
            "M1-1 (of Shop one)",
            "M1-2 (of Shop one)"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_records_64_bit_number_keeps_its_digits() {
    let mapping = MAPPING.replace(r#""of " & $over.name"#, r#""of " & $string($over.number)"#);
    assert_ne!(mapping, MAPPING);
    let mapping: &'static str = Box::leak(mapping.into_boxed_str());
    let setup = setup_with(mapping, flagged()).await;
    let (status, body) = get_json(
        &url(&setup.gateway, "truto_ignore_limit=true"),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(records(&body)[3], "M1-0 (of 1234567890123456789)");
}
