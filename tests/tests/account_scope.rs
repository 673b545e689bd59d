//! What one tenant's account fills cannot be changed by the caller or by the account's own
//! values: a `remote_query` may not set a parameter the account fills (a caller would act in
//! another workspace, or swap a credential), and a context value that stands in a URL's host
//! may not move the URL (and the credential sent to it) off the host the mapping names.

use std::sync::Arc;

use serde_json::{Value, json};
use unigate_engine::EngineConfig;
use unigate_gateway::Gateway;
use unigate_store::{IntegratedAccount, MemoryStore};
use unigate_tests::{Stub, TEST_TOKEN, catalog_with, get_json, repo_catalog, serve};
use unigate_upstream::UpstreamConfig;

const ADMIN: &str = "admin-token-0123456789";

const MAPPING: &str = r#"name: Workspace example
docs: https://example.test/docs
base_url: "{{context.url}}"
auth:
  kind: header
  header: X-Api-Key
  value: "{{context.api_key}}"
resources:
  users:
    list:
      path: /users
      records: users
      query:
        workspace: "{{context.workspace}}"
    get:
      path: "/users/{{id}}"
      records: "$"
      query:
        workspace: "{{context.workspace}}"
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: '{ "id": id }'
      get:
        resource: users.get
        response_mapping: '{ "id": id }'
"#;

fn account(id: &str, integration: &str, context: Value) -> IntegratedAccount {
    IntegratedAccount {
        id: id.into(),
        integration: integration.into(),
        context,
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    }
}

#[tokio::test]
async fn remote_query_cannot_set_what_the_account_fills() {
    let stub = Stub::start().await;
    let context = json!({"url": stub.origin(), "api_key": "k-SECRET", "workspace": "w1"});
    let gateway = Gateway::assemble(
        catalog_with("workspace", MAPPING),
        vec![account("acc", "workspace", context)],
        UpstreamConfig::default(),
        EngineConfig::default(),
        b"test-cursor-secret-0123456789",
        &[TEST_TOKEN.to_owned()],
    )
    .unwrap();
    let gateway = serve(gateway).await;
    for path in [
        "/unified/user-directory/users?integrated_account_id=acc&remote_query[workspace]=w2",
        "/unified/user-directory/users/u1?integrated_account_id=acc&remote_query[workspace]=w2",
    ] {
        let (status, body) = get_json(&format!("{}{path}", gateway.origin), Some(TEST_TOKEN)).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(
            body["message"],
            "`remote_query[workspace]` is filled from the integrated account and cannot be set by the caller",
            "{path}"
        );
    }
    assert!(stub.received().is_empty(), "the provider was called");
}

#[tokio::test]
async fn a_context_value_cannot_move_a_url_off_the_mappings_host() {
    // At startup: an account of the config refuses to load.
    let evil = json!({"subdomain": "evil.example/", "api_token": "SSWS-SECRET"});
    let problems = Gateway::assemble(
        repo_catalog(),
        vec![account("acc", "okta", evil.clone())],
        UpstreamConfig::default(),
        EngineConfig::default(),
        b"test-cursor-secret-0123456789",
        &[TEST_TOKEN.to_owned()],
    )
    .unwrap_err();
    assert_eq!(
        problems,
        "integrated account `acc`: `context.subdomain` would change the host the mapping names: only letters, digits, `-` and `.` of a host name may stand there"
    );

    // Through the admin API: refused before it is stored, for the base URL and for a token URL.
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
    let create = |body: Value| {
        let origin = gateway.origin.clone();
        async move {
            let response = reqwest::Client::new()
                .post(format!("{origin}/admin/integrated-accounts"))
                .bearer_auth(ADMIN)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = create(json!({"id": "acc", "integration": "okta", "context": evil})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("`context.subdomain` would change the host the mapping names"),
        "{body}"
    );
    assert!(!body.to_string().contains("SECRET"), "{body}");
    // OneLogin's token URL receives the client secret.
    let onelogin =
        json!({"subdomain": "evil.example?", "client_id": "c", "client_secret": "s-SECRET"});
    let (status, body) =
        create(json!({"id": "one", "integration": "onelogin", "context": onelogin})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("`context.subdomain` would change the host the mapping names"),
        "{body}"
    );
    // A value that keeps the host is accepted.
    let good = json!({"subdomain": "acme-eu", "api_token": "t"});
    let (status, body) = create(json!({"id": "acc", "integration": "okta", "context": good})).await;
    assert_eq!(status, 201, "{body}");
}

/// A mapping whose token URL is a path asks for tokens at the account's base URL host (Okta's
/// OAuth service apps, for preview orgs and custom domains): a base URL there must be https,
/// or the signed client assertion and the token would travel in clear text.
#[tokio::test]
async fn a_base_url_that_receives_token_requests_must_be_https() {
    let context = json!({"subdomain": "acme", "client_id": "0oa-app", "private_key": "k"});
    let with_base = |base_url: &str| IntegratedAccount {
        base_url: Some(base_url.to_owned()),
        ..account("acc", "okta", context.clone())
    };
    let problems = Gateway::assemble(
        repo_catalog(),
        vec![with_base("http://acme.oktapreview.com/api/v1")],
        UpstreamConfig::default(),
        EngineConfig::default(),
        b"test-cursor-secret-0123456789",
        &[TEST_TOKEN.to_owned()],
    )
    .unwrap_err();
    assert_eq!(
        problems,
        "integrated account `acc`: `base_url` must be https: the `okta` mapping asks for tokens at the base URL's host"
    );
    for fine in [
        "https://acme.oktapreview.com/api/v1",
        "http://127.0.0.1:8080/api/v1",
    ] {
        assert!(
            Gateway::assemble(
                repo_catalog(),
                vec![with_base(fine)],
                UpstreamConfig::default(),
                EngineConfig::default(),
                b"test-cursor-secret-0123456789",
                &[TEST_TOKEN.to_owned()],
            )
            .is_ok(),
            "{fine}"
        );
    }
    // The SSWS-token form of the same integration sends no token request there: http is the
    // account's choice, as before.
    let ssws = IntegratedAccount {
        base_url: Some("http://acme.oktapreview.com/api/v1".to_owned()),
        ..account(
            "acc",
            "okta",
            json!({"subdomain": "acme", "api_token": "t"}),
        )
    };
    assert!(
        Gateway::assemble(
            repo_catalog(),
            vec![ssws],
            UpstreamConfig::default(),
            EngineConfig::default(),
            b"test-cursor-secret-0123456789",
            &[TEST_TOKEN.to_owned()],
        )
        .is_ok()
    );
}
