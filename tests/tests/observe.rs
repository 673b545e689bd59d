//! Operating the gateway: `/metrics` counts exactly what happened (a scrape before and after a
//! known sequence of calls differs by exactly those calls), and a request id sent in is echoed
//! in the answer, in the error envelope and in every log line of the request, and reaches the
//! provider only when the mapping forwards it (`{{request_id}}`).

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::json;
use unigate_engine::EngineConfig;
use unigate_gateway::{Gateway, sandbox};
use unigate_mapping::Catalog;
use unigate_store::{IntegratedAccount, MemoryStore};
use unigate_tests::{Scripted, Stub, TEST_TOKEN, catalog_with, serve};
use unigate_upstream::UpstreamConfig;

const ADMIN: &str = "admin-token-0123456789";

/// The value of one series in a Prometheus text exposition (0 when absent).
fn series(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(origin: &str) -> String {
    let response = reqwest::Client::new()
        .get(format!("{origin}/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.text().await.unwrap()
}

#[tokio::test]
async fn a_scrape_counts_exactly_the_calls_made() {
    let catalog =
        Catalog::from_sources(&sandbox::model_sources(), &sandbox::integration_sources()).unwrap();
    let provider = sandbox::start_provider(20).await.unwrap();
    let gateway = Gateway::assemble_with_store(
        catalog,
        Arc::new(MemoryStore::new(sandbox::accounts(provider)).unwrap()),
        UpstreamConfig::default(),
        EngineConfig::default(),
        b"test-cursor-secret-0123456789",
        &[TEST_TOKEN.to_owned()],
        &[ADMIN.to_owned()],
    )
    .unwrap();
    let gateway = serve(gateway).await;
    let origin = gateway.origin.clone();
    // Only the admin token reads the metrics.
    let refused = reqwest::Client::new()
        .get(format!("{origin}/metrics"))
        .bearer_auth(TEST_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);

    let before = scrape(&origin).await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let response = client
            .get(format!(
                "{origin}/unified/user-directory/users?integrated_account_id=sandbox&limit=2"
            ))
            .bearer_auth(TEST_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }
    let bad = client
        .get(format!(
            "{origin}/unified/user-directory/users?integrated_account_id=sandbox&status=nope"
        ))
        .bearer_auth(TEST_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let after = scrape(&origin).await;

    let delta = |series_name: &str| series(&after, series_name) - series(&before, series_name);
    let list = r#"route="/unified/{model}/{resource}",method="GET""#;
    assert_eq!(
        delta(&format!(
            r#"unigate_requests_total{{{list},status="200",integration="sandbox"}}"#
        )),
        3.0
    );
    assert_eq!(
        delta(&format!(
            r#"unigate_requests_total{{{list},status="400",integration="sandbox"}}"#
        )),
        1.0
    );
    assert_eq!(
        delta(r#"unigate_provider_calls_total{integration="sandbox",status="200"}"#),
        3.0
    );
    assert_eq!(delta(r#"unigate_pages_total{integration="sandbox"}"#), 3.0);
    assert_eq!(
        delta(r#"unigate_records_mapped_total{integration="sandbox"}"#),
        6.0
    );
    assert_eq!(
        delta(r#"unigate_provider_call_seconds_count{integration="sandbox"}"#),
        3.0
    );
    assert_eq!(series(&after, "unigate_accounts_needs_reauth"), 0.0);
    // Labels never hold an account id or a query value.
    assert!(!after.contains("integrated_account_id") && !after.contains("nope"));
}

/// Follow-up calls are counted by follow-up, apart from the page's: what an opt-in costs.
#[tokio::test]
async fn follow_up_calls_are_counted_by_follow_up() {
    const DETAILED: &str = r#"name: Detailed example
docs: https://example.test/docs
base_url: "{{context.url}}"
auth: { kind: none }
resources:
  users:
    list: { path: /users, records: users }
    get: { path: "/users/{{id}}", records: "$" }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        follow_up:
          detail: { resource: users.get, id: id }
        response_mapping: '{ "id": id, "name": $detail.name }'
"#;
    let stub = Stub::start().await;
    let answer = |body: &str| Scripted {
        status: 200,
        headers: Vec::new(),
        body: body.as_bytes().to_vec(),
        for_request: None,
    };
    stub.script(vec![
        answer(r#"{"users":[{"id":"u1"},{"id":"u2"}]}"#),
        answer(r#"{"name":"Ada"}"#),
        answer(r#"{"name":"Ada"}"#),
    ]);
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: "detailed".into(),
        context: json!({"url": stub.origin()}),
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let gateway = Gateway::assemble_with_store(
        catalog_with("detailed", DETAILED),
        Arc::new(MemoryStore::new(vec![account]).unwrap()),
        UpstreamConfig::default(),
        EngineConfig::default(),
        b"test-cursor-secret-0123456789",
        &[TEST_TOKEN.to_owned()],
        &[ADMIN.to_owned()],
    )
    .unwrap();
    let gateway = serve(gateway).await;
    let response = reqwest::Client::new()
        .get(format!(
            "{}/unified/user-directory/users?integrated_account_id=acc",
            gateway.origin
        ))
        .bearer_auth(TEST_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let after = scrape(&gateway.origin).await;
    assert_eq!(
        series(
            &after,
            r#"unigate_follow_up_calls_total{integration="detailed",follow_up="detail"}"#
        ),
        2.0
    );
    assert_eq!(
        series(
            &after,
            r#"unigate_provider_calls_total{integration="detailed",status="200"}"#
        ),
        3.0
    );
}

/// Log lines captured from the gateway's tracing.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const FORWARDING: &str = r#"name: Correlation example
docs: https://example.test/docs
base_url: "{{context.url}}"
auth: { kind: none }
headers:
  X-Correlation-Id: "{{request_id}}"
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

const PLAIN: &str = r#"name: Plain example
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

async fn gateway_over(id: &str, mapping: &str, stub: &Stub) -> unigate_tests::RunningGateway {
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: id.into(),
        context: json!({"url": stub.origin()}),
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let gateway = Gateway::assemble(
        catalog_with(id, mapping),
        vec![account],
        UpstreamConfig::default(),
        EngineConfig::default(),
        b"test-cursor-secret-0123456789",
        &[TEST_TOKEN.to_owned()],
    )
    .unwrap();
    serve(gateway).await
}

fn users_page() -> Scripted {
    Scripted {
        status: 200,
        headers: Vec::new(),
        body: br#"{"users":[{"id":"u1"}]}"#.to_vec(),
        for_request: None,
    }
}

#[tokio::test]
async fn a_request_id_is_echoed_logged_and_forwarded_only_when_mapped() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // Not forwarded by default.
    let stub = Stub::start().await;
    stub.script(vec![users_page()]);
    let gateway = gateway_over("plain", PLAIN, &stub).await;
    let client = reqwest::Client::new();
    let url = format!(
        "{}/unified/user-directory/users?integrated_account_id=acc",
        gateway.origin
    );
    let response = client
        .get(&url)
        .bearer_auth(TEST_TOKEN)
        .header("x-request-id", "req-abc.123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["x-request-id"], "req-abc.123");
    assert!(
        stub.received()[0]
            .headers
            .iter()
            .all(|(_, value)| !value.contains("req-abc.123")),
        "the request id reached the provider unasked"
    );
    // Every log line of the request carries it (the provider page line among them).
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let page_lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("provider page"))
        .collect();
    assert!(!page_lines.is_empty(), "{logs}");
    assert!(
        page_lines
            .iter()
            .all(|l| l.contains("request_id=req-abc.123")),
        "{logs}"
    );

    // In the error envelope too; an id that is not sane is replaced.
    let response = client
        .get(format!("{url}&status=nope"))
        .bearer_auth(TEST_TOKEN)
        .header("x-request-id", "has spaces and\ttabs")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["request_id"], id);

    // Forwarded when the mapping asks for it.
    let stub = Stub::start().await;
    stub.script(vec![users_page()]);
    let gateway = gateway_over("correlation", FORWARDING, &stub).await;
    let response = client
        .get(format!(
            "{}/unified/user-directory/users?integrated_account_id=acc",
            gateway.origin
        ))
        .bearer_auth(TEST_TOKEN)
        .header("x-request-id", "req-xyz")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let received = stub.received();
    let forwarded = received[0]
        .headers
        .iter()
        .find(|(name, _)| name == "x-correlation-id")
        .map(|(_, value)| value.as_str());
    assert_eq!(forwarded, Some("req-xyz"));
}
