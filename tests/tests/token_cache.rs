//! The token cache never outlives the account it was issued for: after an admin PATCH of the
//! credentials, or a DELETE and a re-create of the same id (another tenant), the next call asks
//! the token endpoint again with the credentials stored now and sends the new token.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use unigate_engine::EngineConfig;
use unigate_gateway::Gateway;
use unigate_store::{IntegratedAccount, MemoryStore};
use unigate_tests::{TEST_TOKEN, catalog_with, get_json, serve, spawn_provider, url_pairs};
use unigate_upstream::UpstreamConfig;

const ADMIN: &str = "admin-token-0123456789";

#[derive(Default)]
struct Seen {
    /// The `client_secret` of every token request, in order.
    secrets: Mutex<Vec<String>>,
    /// The Authorization header of every API call, in order.
    api_auth: Mutex<Vec<String>>,
}

async fn token(State(seen): State<Arc<Seen>>, body: String) -> Response {
    let secret = url_pairs(&body)
        .into_iter()
        .find(|(key, _)| key == "client_secret")
        .map(|(_, value)| value)
        .unwrap_or_default();
    let mut secrets = seen.secrets.lock().unwrap();
    secrets.push(secret.clone());
    let issued = format!("token-{}-for-{secret}", secrets.len());
    axum::Json(json!({"access_token": issued, "token_type": "bearer", "expires_in": 3600}))
        .into_response()
}

async fn users(State(seen): State<Arc<Seen>>, headers: HeaderMap) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    seen.api_auth.lock().unwrap().push(auth);
    axum::Json(json!({"users": [{"id": "u1"}]})).into_response()
}

const MAPPING: &str = r#"name: Client credentials example
docs: https://example.test/docs
base_url: "{{context.url}}"
auth:
  kind: oauth2_client_credentials
  token_url: "{{context.url}}/oauth/token"
  client_id: "{{context.client_id}}"
  client_secret: "{{context.client_secret}}"
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

async fn admin(origin: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> u16 {
    let mut request = reqwest::Client::new()
        .request(method, format!("{origin}{path}"))
        .bearer_auth(ADMIN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap().status().as_u16()
}

async fn list(origin: &str) {
    let (status, body) = get_json(
        &format!("{origin}/unified/user-directory/users?integrated_account_id=acc"),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_writes_drop_the_cached_token() {
    let seen = Arc::new(Seen::default());
    let provider = spawn_provider(
        Router::new()
            .route("/oauth/token", post(token))
            .route("/users", get(users))
            .with_state(seen.clone()),
    )
    .await;
    let context =
        |secret: &str| json!({"url": provider.origin, "client_id": "cid", "client_secret": secret});
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: "grant".into(),
        context: context("first"),
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let gateway = Gateway::assemble_with_store(
        catalog_with("grant", MAPPING),
        Arc::new(MemoryStore::new(vec![account]).unwrap()),
        UpstreamConfig::default(),
        EngineConfig::default(),
        b"test-cursor-secret-0123456789",
        &[TEST_TOKEN.to_owned()],
        &[ADMIN.to_owned()],
    )
    .unwrap();
    let gateway = serve(gateway).await;
    let origin = gateway.origin.as_str();

    // Cached while valid: two calls, one token request.
    list(origin).await;
    list(origin).await;

    // A reconnect with new credentials.
    let patch = json!({"context": {"client_secret": "second"}});
    let status = admin(
        origin,
        reqwest::Method::PATCH,
        "/admin/integrated-accounts/acc",
        Some(patch),
    )
    .await;
    assert_eq!(status, 200);
    list(origin).await;

    // The id deleted and reused for another tenant.
    let status = admin(
        origin,
        reqwest::Method::DELETE,
        "/admin/integrated-accounts/acc",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let created = json!({"id": "acc", "integration": "grant", "context": context("third")});
    let status = admin(
        origin,
        reqwest::Method::POST,
        "/admin/integrated-accounts",
        Some(created),
    )
    .await;
    assert_eq!(status, 201);
    list(origin).await;

    assert_eq!(
        *seen.secrets.lock().unwrap(),
        vec!["first", "second", "third"]
    );
    assert_eq!(
        *seen.api_auth.lock().unwrap(),
        vec![
            "Bearer token-1-for-first",
            "Bearer token-1-for-first",
            "Bearer token-2-for-second",
            "Bearer token-3-for-third",
        ]
    );
}

/// A token the admin pastes over a DPoP-bound one comes without the old token's key: the key is
/// dropped with it (else the pasted token would go out as DPoP, signed with an unrelated key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pasted_token_drops_the_dpop_key_of_the_token_it_replaces() {
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: "grant".into(),
        context: json!({"url": "https://api.example.test", "client_id": "cid",
            "client_secret": "s", "access_token": "bound", "access_token_dpop_key": "k"}),
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let gateway = Gateway::assemble_with_store(
        catalog_with("grant", MAPPING),
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
        .patch(format!("{}/admin/integrated-accounts/acc", gateway.origin))
        .bearer_auth(ADMIN)
        .json(&json!({"context": {"access_token": "pasted"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let view: Value = response.json().await.unwrap();
    let keys = view["context_keys"].as_array().expect("the context's keys");
    assert!(keys.contains(&json!("access_token")), "{view}");
    assert!(!keys.contains(&json!("access_token_dpop_key")), "{view}");
}
