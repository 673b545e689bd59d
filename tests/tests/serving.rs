//! Serving bounds as a client meets them: every error status the router answers is in the
//! envelope with the same `statusCode`; a full gateway answers 503 and counts a stream until it
//! ends; a request past its deadline is cut with a 504, a stream with its error line; a client
//! that never finishes its request head is disconnected; a `truto_ignore_limit` answer stops
//! at its byte budget with a cursor; and a list answer sent in chunks goes with its length.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::RawQuery;
use axum::routing::get;
use serde_json::{Value, json};
use unigate_engine::EngineConfig;
use unigate_gateway::{Gateway, ServeLimits, sandbox};
use unigate_mapping::Catalog;
use unigate_store::{IntegratedAccount, MemoryStore};
use unigate_tests::{
    RunningGateway, TEST_TOKEN, catalog_with, get_json, repo_catalog, serve, spawn_provider,
};
use unigate_upstream::UpstreamConfig;

const ADMIN: &str = "admin-token-0123456789";

async fn sandbox_gateway(
    users: usize,
    limits: ServeLimits,
    config: EngineConfig,
) -> RunningGateway {
    let catalog =
        Catalog::from_sources(&sandbox::model_sources(), &sandbox::integration_sources()).unwrap();
    let provider = sandbox::start_provider(users).await.unwrap();
    let gateway = Gateway::assemble(
        catalog,
        sandbox::accounts(provider),
        UpstreamConfig::default(),
        config,
        b"test-cursor-secret-0123456789",
        &[TEST_TOKEN.to_owned()],
    )
    .unwrap();
    serve(gateway.with_limits(limits)).await
}

/// Raw HTTP/1.1 on a fresh connection: the status and the body.
fn raw(address: &str, request: &[u8]) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.write_all(request).unwrap();
    let mut text = Vec::new();
    stream.read_to_end(&mut text).unwrap();
    let text = String::from_utf8_lossy(&text).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_the_router_answers_is_in_the_envelope() {
    let gateway = Gateway::assemble_with_store(
        repo_catalog(),
        Arc::new(MemoryStore::new(Vec::new()).unwrap()),
        UpstreamConfig::default(),
        EngineConfig::default(),
        b"test-cursor-secret-0123456789",
        &[TEST_TOKEN.to_owned()],
        &[ADMIN.to_owned()],
    )
    .unwrap();
    let gateway = serve(gateway).await;
    let address = gateway.origin.trim_start_matches("http://").to_owned();
    let big_body = "x".repeat(100 * 1024);
    let long_uri = format!("/unified/user-directory/users?q={}", "a".repeat(20 * 1024));
    let big_header = "h".repeat(20 * 1024);
    let cases: Vec<(u16, String)> = vec![
        (
            401,
            "GET /unified/user-directory/users HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                .to_owned(),
        ),
        (
            404,
            format!(
                "GET /nowhere HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_TOKEN}\r\nConnection: close\r\n\r\n"
            ),
        ),
        (
            405,
            format!(
                "POST /unified/user-directory/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        ),
        (
            405,
            format!(
                "PUT /admin/integrated-accounts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        ),
        (
            400,
            format!(
                "POST /admin/integrated-accounts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{{oops"
            ),
        ),
        (
            413,
            format!(
                "POST /admin/integrated-accounts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big_body}",
                big_body.len()
            ),
        ),
        (
            414,
            format!(
                "GET {long_uri} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_TOKEN}\r\nConnection: close\r\n\r\n"
            ),
        ),
        (
            431,
            format!(
                "GET /health HTTP/1.1\r\nHost: x\r\nX-A: {big_header}\r\nX-B: {big_header}\r\nConnection: close\r\n\r\n"
            ),
        ),
    ];
    for (expected, request) in cases {
        let address = address.clone();
        let first_line = request
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(60)
            .collect::<String>();
        let (status, body) = tokio::task::spawn_blocking(move || raw(&address, request.as_bytes()))
            .await
            .unwrap();
        assert_eq!(status, expected, "{first_line}: {body}");
        let envelope: Value = serde_json::from_str(&body)
            .unwrap_or_else(|_| panic!("{first_line}: not JSON: {body}"));
        assert_eq!(
            envelope["statusCode"],
            json!(expected),
            "{first_line}: {body}"
        );
        assert!(
            envelope["error"].is_string() && envelope["message"].is_string(),
            "{body}"
        );
    }
}

/// The bound on a request head is its bytes, answered in the envelope; the number of its header
/// fields is not one short of 1,024 (hyper's own default of 100 answered a bare 431, no body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_of_many_fields_is_served_and_one_too_large_is_refused_in_the_envelope() {
    let gateway = sandbox_gateway(1, ServeLimits::default(), EngineConfig::default()).await;
    let address = gateway.origin.trim_start_matches("http://").to_owned();
    let head = |fields: usize, value_len: usize| {
        let mut head = format!(
            "GET /unified/user-directory/users?integrated_account_id=sandbox&limit=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_TOKEN}\r\nConnection: close\r\n"
        );
        for field in 0..fields {
            head.push_str(&format!(
                "X-Field-{field:04}: {}\r\n",
                "v".repeat(value_len)
            ));
        }
        head + "\r\n"
    };
    // 150 fields, 2.4 KB: served.
    let (status, body) = {
        let (address, request) = (address.clone(), head(150, 2));
        tokio::task::spawn_blocking(move || raw(&address, request.as_bytes()))
            .await
            .unwrap()
    };
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["result"].as_array().map(Vec::len), Some(1), "{body}");
    // 1,000 fields of 50 bytes, 50 KB: past the 32 KiB bound, refused in the envelope.
    let (status, body) = {
        let request = head(1000, 34);
        tokio::task::spawn_blocking(move || raw(&address, request.as_bytes()))
            .await
            .unwrap()
    };
    assert_eq!(status, 431, "{body}");
    let envelope: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(envelope["statusCode"], 431);
    assert_eq!(envelope["error"], "Request Header Fields Too Large");
    assert_eq!(
        envelope["message"],
        "the request headers are larger than 32768 bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_gateway_answers_503_and_counts_a_stream_until_it_ends() {
    let limits = ServeLimits {
        max_concurrent_requests: 1,
        ..ServeLimits::default()
    };
    let gateway = sandbox_gateway(50_000, limits, EngineConfig::default()).await;
    let address = gateway.origin.trim_start_matches("http://").to_owned();
    // A stream whose reader is slow holds the one slot while it runs.
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(stream, "GET /unified/user-directory/users?integrated_account_id=sandbox&truto_response_format=stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_TOKEN}\r\nConnection: close\r\n\r\n").unwrap();
    let mut head = [0u8; 64];
    let read = stream.read(&mut head).unwrap();
    assert!(head[..read].starts_with(b"HTTP/1.1 200"));

    let url = format!(
        "{}/unified/user-directory/users?integrated_account_id=sandbox&limit=1",
        gateway.origin
    );
    let response = reqwest::Client::new()
        .get(&url)
        .bearer_auth(TEST_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["statusCode"], 503);
    assert_eq!(
        body["message"],
        "the gateway is serving 1 requests, its configured maximum (server.max_concurrent_requests); retry shortly"
    );

    // Once the stream's reader goes away, the slot is free again.
    drop(stream);
    let mut status = 0;
    for _ in 0..100 {
        status = get_json(&url, Some(TEST_TOKEN)).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200);
}

/// A provider whose first page answers at once and whose later pages take `delay`.
async fn slow_provider(delay: Duration) -> unigate_tests::LocalProvider {
    spawn_provider(Router::new().route(
        "/users",
        get(move |RawQuery(query): RawQuery| async move {
            if query.unwrap_or_default().contains("page=2") || delay > Duration::from_secs(60) {
                tokio::time::sleep(delay.min(Duration::from_secs(30))).await;
            }
            axum::Json(json!({"users": [{"id": "u1"}, {"id": "u2"}], "next": 2}))
        }),
    ))
    .await
}

const SLOW_MAPPING: &str = r#"name: Slow example
docs: https://example.test/docs
base_url: "{{context.url}}"
auth: { kind: none }
resources:
  users:
    list:
      path: /users
      records: users
      pagination:
        style: page
        page_param: page
        first_page: 1
        has_more: "true"
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: '{ "id": id }'
"#;

async fn slow_gateway(
    delay: Duration,
    limits: ServeLimits,
) -> (RunningGateway, unigate_tests::LocalProvider) {
    let provider = slow_provider(delay).await;
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: "slow".into(),
        context: json!({"url": provider.origin}),
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let gateway = Gateway::assemble(
        catalog_with("slow", SLOW_MAPPING),
        vec![account],
        UpstreamConfig::default(),
        EngineConfig::default(),
        b"test-cursor-secret-0123456789",
        &[TEST_TOKEN.to_owned()],
    )
    .unwrap();
    (serve(gateway.with_limits(limits)).await, provider)
}

#[tokio::test]
async fn a_request_past_its_deadline_is_cut_with_504() {
    let limits = ServeLimits {
        request_timeout: Duration::from_secs(1),
        ..ServeLimits::default()
    };
    let (gateway, _provider) = slow_gateway(Duration::from_secs(3), limits).await;
    let (status, body) = get_json(
        &format!(
            "{}/unified/user-directory/users?integrated_account_id=acc&truto_ignore_limit=true",
            gateway.origin
        ),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(
        body,
        json!({
            "statusCode": 504,
            "error": "Gateway Timeout",
            "message": "the request did not finish within 1 s (server.request_timeout_s): ask for fewer records per call, or page with next_cursor"
        })
    );
}

#[tokio::test]
async fn a_stream_past_its_deadline_ends_with_its_error_line() {
    let limits = ServeLimits {
        stream_timeout: Duration::from_secs(1),
        ..ServeLimits::default()
    };
    let (gateway, _provider) = slow_gateway(Duration::from_secs(3), limits).await;
    let response = reqwest::Client::new()
        .get(format!(
            "{}/unified/user-directory/users?integrated_account_id=acc&truto_response_format=stream",
            gateway.origin
        ))
        .bearer_auth(TEST_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0]["id"], "u1");
    assert_eq!(lines[1]["id"], "u2");
    assert_eq!(
        lines[2],
        json!({
            "statusCode": 504,
            "error": "Gateway Timeout",
            "message": "the stream did not finish within 1 s (server.stream_timeout_s): resume from the last record with a filter, or page with next_cursor",
            "truto_stream_error": true
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_request_head_is_disconnected() {
    let limits = ServeLimits {
        header_read_timeout: Duration::from_millis(300),
        ..ServeLimits::default()
    };
    let gateway = sandbox_gateway(10, limits, EngineConfig::default()).await;
    let address = gateway.origin.trim_start_matches("http://").to_owned();
    let closed = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
        // EOF (or a reset): the server closed the connection; a read timeout means it did not.
        let mut rest = Vec::new();
        match stream.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(error) => {
                error.kind() != std::io::ErrorKind::WouldBlock
                    && error.kind() != std::io::ErrorKind::TimedOut
            }
        }
    })
    .await
    .unwrap();
    assert!(closed, "the half-sent request was held open");
}

#[tokio::test]
async fn an_ignore_limit_answer_stops_at_its_byte_budget() {
    let config = EngineConfig {
        max_bytes_per_response: 20_000,
        ..EngineConfig::default()
    };
    let gateway = sandbox_gateway(1000, ServeLimits::default(), config).await;
    let url = format!(
        "{}/unified/user-directory/users?integrated_account_id=sandbox&limit=50&truto_ignore_limit=true",
        gateway.origin
    );
    let (status, first) = get_json(&url, Some(TEST_TOKEN)).await;
    assert_eq!(status, 200, "{first}");
    // One page of 50 sandbox users is already over 20,000 bytes: the answer stops there.
    assert_eq!(first["result_count"], 50);
    let cursor = first["next_cursor"].as_str().expect("a cursor to go on");
    let (status, second) = get_json(&format!("{url}&next_cursor={cursor}"), Some(TEST_TOKEN)).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["result"][0]["id"], "usr_00051");
}

#[tokio::test]
async fn a_page_past_its_mapping_budget_fails_as_a_mapping_error() {
    let config = EngineConfig {
        page_mapping_budget: Duration::ZERO,
        ..EngineConfig::default()
    };
    let gateway = sandbox_gateway(100, ServeLimits::default(), config).await;
    let (status, body) = get_json(
        &format!(
            "{}/unified/user-directory/users?integrated_account_id=sandbox&limit=10",
            gateway.origin
        ),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        body,
        json!({
            "statusCode": 500,
            "error": "Internal Server Error",
            "message": "the `sandbox` mapping took longer than 0 ms on one page of 10 records (the page mapping budget); ask for smaller pages with `limit`"
        })
    );
}

/// A page over the large-page threshold (256 KiB) is parsed and mapped off the async workers
/// (on the multi-threaded runtime the gateway runs on): the answer is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_page_is_answered_the_same_off_the_workers() {
    let gateway = sandbox_gateway(600, ServeLimits::default(), EngineConfig::default()).await;
    let url = |limit: u32| {
        format!(
            "{}/unified/user-directory/users?integrated_account_id=sandbox&limit={limit}",
            gateway.origin
        )
    };
    let (status, large) = get_json(&url(500), Some(TEST_TOKEN)).await;
    assert_eq!(status, 200, "{large}");
    assert_eq!(large["result_count"], 500);
    assert!(large.to_string().len() > 256 * 1024);
    let (_, small) = get_json(&url(5), Some(TEST_TOKEN)).await;
    assert_eq!(
        large["result"].as_array().unwrap()[..5],
        small["result"].as_array().unwrap()[..5]
    );
}

/// A list answer is sent from the pages' own buffers in several chunks (each page's run of
/// records, the envelope between them), and still as one body of a stated length: a
/// `Content-Length` that is the body's, no chunked encoding, every record once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_answer_of_several_pages_goes_with_its_length() {
    let gateway = sandbox_gateway(250, ServeLimits::default(), EngineConfig::default()).await;
    let address = gateway.origin.trim_start_matches("http://").to_owned();
    let request = format!(
        "GET /unified/user-directory/users?integrated_account_id=sandbox&limit=100&truto_ignore_limit=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_TOKEN}\r\nConnection: close\r\n\r\n"
    );
    let text = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut text = Vec::new();
        stream.read_to_end(&mut text).unwrap();
        String::from_utf8(text).unwrap()
    })
    .await
    .unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let head = head.to_ascii_lowercase();
    assert!(!head.contains("transfer-encoding"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .expect("a content-length")
        .parse()
        .unwrap();
    assert_eq!(length, body.len());
    let answer: Value = serde_json::from_str(body).unwrap();
    assert_eq!(answer["result_count"], 250);
    let ids: Vec<&str> = answer["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (1..=250).map(|n| format!("usr_{n:05}")).collect();
    assert_eq!(ids, expected);
    assert!(
        answer["result"]
            .as_array()
            .unwrap()
            .iter()
            .all(|user| user["remote_data"]["uid"] == user["id"])
    );
}
