//! Per-account mapping overrides: a partial mapping an account carries is merged over its
//! integration's file (as `extends` merges a file over its base) for that account alone, and an
//! override that does not compile is refused at the admin write with the same errors a file
//! gets, naming the account and the line.

use std::sync::Arc;

use serde_json::{Value, json};
use unigate_engine::EngineConfig;
use unigate_gateway::Gateway;
use unigate_store::MemoryStore;
use unigate_tests::{Scripted, Stub, TEST_TOKEN, catalog_with, get_json, serve};
use unigate_upstream::UpstreamConfig;

const ADMIN: &str = "admin-token-0123456789";

const MAPPING: &str = r#"name: Override example
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

async fn create(origin: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{origin}/admin/integrated-accounts"))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn an_override_changes_its_account_and_no_other() {
    let stub = Stub::start().await;
    let page = Scripted {
        status: 200,
        headers: Vec::new(),
        body: br#"{"users":[{"id":"u1","title":"Engineer"}]}"#.to_vec(),
        for_request: None,
    };
    stub.script(vec![page.clone(), page.clone(), page]);
    let gateway = Gateway::assemble_with_store(
        catalog_with("plain", MAPPING),
        Arc::new(MemoryStore::new(Vec::new()).unwrap()),
        UpstreamConfig::default(),
        EngineConfig::default(),
        b"test-cursor-secret-0123456789",
        &[TEST_TOKEN.to_owned()],
        &[ADMIN.to_owned()],
    )
    .unwrap();
    let gateway = serve(gateway).await;
    let origin = gateway.origin.clone();
    let context = json!({"url": stub.origin()});
    let (status, body) = create(
        &origin,
        json!({"id": "plain-account", "integration": "plain", "context": context}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // Given as YAML text: a different response mapping and a header for this tenant.
    let overridden = "headers:\n  X-Tenant: acme\nunified:\n  user-directory:\n    users:\n      list:\n        response_mapping: '{ \"id\": id, \"title\": title }'\n";
    let (status, body) = create(
        &origin,
        json!({"id": "tuned", "integration": "plain", "context": context, "mapping": overridden}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["mapping"], overridden);

    // Or only single fields of the file's mapping: one added here.
    let one_field = "unified:\n  user-directory:\n    users:\n      list:\n        response_fields:\n          title: $uppercase(title)\n";
    let (status, body) = create(
        &origin,
        json!({"id": "one-field", "integration": "plain", "context": context, "mapping": one_field}),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let list = |account: &str| {
        format!(
            "{origin}/unified/user-directory/users?integrated_account_id={account}&truto_ignore_remote_data=true"
        )
    };
    let (_, plain) = get_json(&list("plain-account"), Some(TEST_TOKEN)).await;
    let (_, tuned) = get_json(&list("tuned"), Some(TEST_TOKEN)).await;
    assert_eq!(plain["result"], json!([{"id": "u1"}]));
    assert_eq!(tuned["result"], json!([{"id": "u1", "title": "Engineer"}]));
    let (_, one_field) = get_json(&list("one-field"), Some(TEST_TOKEN)).await;
    assert_eq!(
        one_field["result"],
        json!([{"id": "u1", "title": "ENGINEER"}])
    );
    let received = stub.received();
    let tenant = |index: usize| {
        received[index]
            .headers
            .iter()
            .find(|(name, _)| name == "x-tenant")
            .map(|(_, value)| value.clone())
    };
    assert_eq!(tenant(0), None);
    assert_eq!(tenant(1).as_deref(), Some("acme"));

    // A broken override is refused with a file's errors, naming the account and the line.
    let broken = "unified:\n  user-directory:\n    users:\n      list:\n        response_mapping: '{ \"id\": '\n";
    let (status, body) = create(
        &origin,
        json!({"id": "broken", "integration": "plain", "context": context, "mapping": broken}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "integrated account `broken` mapping:5: unified.user-directory.users.list.response_mapping: JSONata does not compile"
        ),
        "{message}"
    );
    // A field the unified model lacks is refused the same way.
    let unknown = "unified:\n  user-directory:\n    users:\n      list:\n        response_fields:\n          shoe_size: size\n";
    let (status, body) = create(
        &origin,
        json!({"id": "unknown", "integration": "plain", "context": context, "mapping": unknown}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["message"],
        "integrated account `unknown` mapping:6: unified.user-directory.users.list.response_fields.shoe_size: `shoe_size` is not a field of the unified model"
    );
    // An override may not pick another base.
    let (status, body) = create(
        &origin,
        json!({"id": "other", "integration": "plain", "context": context, "mapping": {"extends": "okta"}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("cannot have `extends`"),
        "{body}"
    );
}
