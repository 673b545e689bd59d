//! `token_exchange`: a login call that turns the account's credentials into a short-lived token
//! (Airflow 3's `POST /auth/token`, Jamf Pro's `POST /api/v1/auth/token`). The token lives like
//! an OAuth token: one exchange in flight per account however many calls wait for it, renewed
//! when it expires or once on a provider 401, `needs_reauth` when a new one is refused too (also
//! by a 2xx login answer the file's `rejected` names; one its `rate_limit` names is a wait) — and
//! no credential or token in any log line, at `debug`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use unigate_store::IntegratedAccount;
use unigate_tests::{TEST_TOKEN, catalog_with, get_json, serve_accounts, spawn_provider};

const PASSWORD: &str = "s3cret-Passw0rd";

const MAPPING: &str = r#"name: Exchange provider
docs: https://example.test/docs
base_url: "{{context.url}}/api"
auth:
  kind: token_exchange
  exchange:
    url: /auth/token
    json: { username: "{{context.username}}", password: "{{context.password}}" }
  token: access_token
  expires_in: expires_in
resources:
  users:
    list: { path: /users, records: users }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: |
          { "id": id }
"#;

/// Every log line of the test process, at `debug`.
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Default)]
struct Provider {
    exchanges: AtomicUsize,
    /// Every token ever issued is refused from now on.
    revoked: AtomicBool,
    lifetime: AtomicUsize,
}

async fn login(State(provider): State<Arc<Provider>>, body: axum::body::Bytes) -> Response {
    let credentials: Value = serde_json::from_slice(&body).unwrap_or_default();
    if credentials != json!({"username": "svc", "password": PASSWORD}) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"detail": "bad credentials"})),
        )
            .into_response();
    }
    // Slow, so that concurrent callers really wait on the one exchange.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let n = provider.exchanges.fetch_add(1, Ordering::SeqCst) + 1;
    axum::Json(json!({
        "access_token": format!("issued-token-{n}"),
        "expires_in": provider.lifetime.load(Ordering::SeqCst),
    }))
    .into_response()
}

async fn users(State(provider): State<Arc<Provider>>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if provider.revoked.load(Ordering::SeqCst) || !bearer.starts_with("Bearer issued-token-") {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"detail": "token expired"})),
        )
            .into_response();
    }
    axum::Json(json!({"users": [{"id": "u1"}]})).into_response()
}

struct World {
    provider: Arc<Provider>,
    origin: String,
    _server: unigate_tests::LocalProvider,
    _gateway: unigate_tests::RunningGateway,
}

async fn world(context_extra: Value) -> World {
    log();
    let provider = Arc::new(Provider::default());
    provider.lifetime.store(3600, Ordering::SeqCst);
    let server = spawn_provider(
        Router::new()
            .route("/auth/token", post(login))
            .route("/api/users", get(users))
            .with_state(provider.clone()),
    )
    .await;
    let mut context = json!({"url": server.origin, "username": "svc", "password": PASSWORD});
    if let (Some(context), Value::Object(extra)) = (context.as_object_mut(), context_extra) {
        context.extend(extra);
    }
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: "exchange".into(),
        context,
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let gateway = serve_accounts(catalog_with("exchange", MAPPING), vec![account]).await;
    World {
        provider,
        origin: gateway.origin.clone(),
        _server: server,
        _gateway: gateway,
    }
}

impl World {
    async fn list(&self) -> (u16, Value) {
        get_json(
            &format!(
                "{}/unified/user-directory/users?integrated_account_id=acc",
                self.origin
            ),
            Some(TEST_TOKEN),
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_calls_on_an_expired_token_make_one_exchange() {
    let world = world(json!({
        "access_token": "issued-token-expired",
        "access_token_expires_at": "2020-01-01T00:00:00Z",
    }))
    .await;
    let world = Arc::new(world);
    let calls = (0..100).map(|_| {
        let world = world.clone();
        tokio::spawn(async move { world.list().await })
    });
    for answer in futures_util::future::join_all(calls).await {
        let (status, body) = answer.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(world.provider.exchanges.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_renews_once_then_needs_reauth() {
    let world = world(json!({})).await;
    assert_eq!(world.list().await.0, 200);
    assert_eq!(world.provider.exchanges.load(Ordering::SeqCst), 1);
    // The provider now refuses every token: the cached one gets a 401, one new exchange is
    // made, its token gets a 401 too, and the account needs reconnecting.
    world.provider.revoked.store(true, Ordering::SeqCst);
    let (status, body) = world.list().await;
    assert_eq!(
        (status, &body["truto_is_remote_error"]),
        (401, &json!(true)),
        "{body}"
    );
    assert_eq!(world.provider.exchanges.load(Ordering::SeqCst), 2);
    let (status, body) = world.list().await;
    assert_eq!(status, 401);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("needs to be reconnected"),
        "{body}"
    );
    assert_eq!(world.provider.exchanges.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_is_exchanged_again() {
    let world = world(json!({})).await;
    // Tokens live 30 s, inside the default 60 s refresh margin: each call needs a new one.
    world.provider.lifetime.store(30, Ordering::SeqCst);
    assert_eq!(world.list().await.0, 200);
    assert_eq!(world.list().await.0, 200);
    assert_eq!(world.provider.exchanges.load(Ordering::SeqCst), 2);
}

/// Jamf Pro's shape: `POST /api/v1/auth/token` with HTTP Basic, answering `{token, expires}` (an
/// ISO 8601 expiry), the token sent as a bearer token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_basic_login_with_an_expiry_time() {
    const JAMF: &str = r#"name: Jamf Pro
docs: https://example.test/docs
base_url: "{{context.url}}/api"
auth:
  kind: token_exchange
  exchange:
    url: /api/v1/auth/token
    basic: { username: "{{context.username}}", password: "{{context.password}}" }
  token: token
  expires_at: expires
resources:
  users:
    list: { path: /v1/accounts, records: results }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: |
          { "id": id }
"#;
    #[derive(Default)]
    struct Jamf {
        logins: Mutex<Vec<String>>,
    }
    async fn login(State(jamf): State<Arc<Jamf>>, headers: HeaderMap) -> Response {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        jamf.logins.lock().unwrap().push(auth.to_owned());
        axum::Json(json!({"token": "jamf-token-1", "expires": "2099-03-01T21:19:29.215Z"}))
            .into_response()
    }
    async fn accounts(headers: HeaderMap) -> Response {
        match headers.get("authorization").and_then(|v| v.to_str().ok()) {
            Some("Bearer jamf-token-1") => {
                axum::Json(json!({"totalCount": 1, "results": [{"id": "7"}]})).into_response()
            }
            _ => StatusCode::UNAUTHORIZED.into_response(),
        }
    }
    let jamf = Arc::new(Jamf::default());
    let server = spawn_provider(
        Router::new()
            .route("/api/v1/auth/token", post(login))
            .route("/api/v1/accounts", get(accounts))
            .with_state(jamf.clone()),
    )
    .await;
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: "jamf".into(),
        context: json!({"url": server.origin, "username": "api", "password": PASSWORD}),
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let gateway = serve_accounts(catalog_with("jamf", JAMF), vec![account]).await;
    for _ in 0..3 {
        let (status, body) = get_json(
            &format!(
                "{}/unified/user-directory/users?integrated_account_id=acc",
                gateway.origin
            ),
            Some(TEST_TOKEN),
        )
        .await;
        assert_eq!(
            (status, &body["result"][0]["id"]),
            (200, &json!("7")),
            "{body}"
        );
    }
    // One login (the token lives until 2099), with HTTP Basic: base64("api:s3cret-Passw0rd").
    assert_eq!(
        *jamf.logins.lock().unwrap(),
        vec!["Basic YXBpOnMzY3JldC1QYXNzdzByZA=="]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_or_token_reaches_a_log_line() {
    let world = world(json!({})).await;
    assert_eq!(world.list().await.0, 200);
    world.provider.revoked.store(true, Ordering::SeqCst);
    assert_eq!(world.list().await.0, 401);
    let text = String::from_utf8(log().lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("provider call"),
        "debug lines were captured: {text}"
    );
    for secret in [PASSWORD, "issued-token-"] {
        assert!(!text.contains(secret), "`{secret}` in the log:\n{text}");
    }
}

/// A GitHub App's installation: the login call carries a JWT the gateway signs with the app's
/// key (`exchange.jwt`: RS256 over `{iss, iat, exp}`, issued 30 s back, ten minutes long) as
/// its bearer credential, and the answer's `expires_at` says when the token ends.
const APP_MAPPING: &str = r#"name: App provider
docs: https://example.test/docs
base_url: "{{context.url}}/api"
auth:
  kind: token_exchange
  exchange:
    url: "/app/installations/{{context.installation_id}}/access_tokens"
    headers: { Accept: application/vnd.github+json }
    jwt: { issuer: "{{context.app_id}}", private_key: "{{context.private_key}}" }
  token: token
  expires_at: expires_at
resources:
  users:
    list: { path: /users, records: users }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: |
          { "id": id }
"#;

#[derive(Default)]
struct AppProvider {
    /// The claims of every JWT the login call carried, checked against the app's public key.
    claims: Mutex<Vec<Value>>,
    /// The Accept header of the login calls.
    accepts: Mutex<Vec<String>>,
}

fn test_key(name: &str) -> String {
    std::fs::read_to_string(unigate_tests::repo_root().join("tests/keys").join(name)).unwrap()
}

async fn installation_token(
    State(provider): State<Arc<AppProvider>>,
    headers: HeaderMap,
) -> Response {
    let jwt = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.required_spec_claims = ["exp", "iat", "iss"].map(str::to_owned).into();
    let decoded = jsonwebtoken::decode::<Value>(
        &jwt,
        &jsonwebtoken::DecodingKey::from_rsa_pem(test_key("test-service-account.pub").as_bytes())
            .unwrap(),
        &validation,
    );
    let Ok(decoded) = decoded else {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "A JSON web token could not be decoded"})),
        )
            .into_response();
    };
    provider.claims.lock().unwrap().push(decoded.claims);
    provider.accepts.lock().unwrap().push(
        headers
            .get("accept")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    );
    (
        StatusCode::CREATED,
        axum::Json(json!({"token": "ghs_installation1", "expires_at": "2099-01-01T00:00:00Z"})),
    )
        .into_response()
}

async fn app_users(headers: HeaderMap) -> Response {
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some("Bearer ghs_installation1") => {
            axum::Json(json!({"users": [{"id": "octocat"}]})).into_response()
        }
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_call_carries_a_jwt_signed_with_the_accounts_key() {
    let provider = Arc::new(AppProvider::default());
    let server = spawn_provider(
        Router::new()
            .route(
                "/app/installations/42/access_tokens",
                post(installation_token),
            )
            .route("/api/users", get(app_users))
            .with_state(provider.clone()),
    )
    .await;
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: "app".into(),
        context: json!({"url": server.origin, "app_id": "123456", "installation_id": "42",
                        "private_key": test_key("test-service-account.key")}),
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let gateway = serve_accounts(catalog_with("app", APP_MAPPING), vec![account]).await;
    let url = format!(
        "{}/unified/user-directory/users?integrated_account_id=acc",
        gateway.origin
    );
    for _ in 0..2 {
        let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
        assert_eq!(
            (status, body["result"][0]["id"].clone()),
            (200, json!("octocat")),
            "{body}"
        );
    }
    // One login for both calls: the token holds until its expires_at.
    let claims = provider.claims.lock().unwrap().clone();
    assert_eq!(claims.len(), 1, "{claims:?}");
    let claims = &claims[0];
    assert_eq!(claims["iss"], "123456");
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 600);
    let now = unigate_upstream::tokens::now_epoch();
    assert!((now - 40..=now - 25).contains(&iat), "iat {iat}, now {now}");
    assert_eq!(
        claims.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["iss", "iat", "exp"]
    );
    assert_eq!(
        *provider.accepts.lock().unwrap(),
        ["application/vnd.github+json"]
    );
}

/// A login that answers HTTP 200 with no token but a body the file's `rate_limit` names (a
/// provider that answers every call 200) is a rate limit, not "unavailable": the caller is told
/// to wait what the file reads, and the account is not marked.
#[tokio::test]
async fn a_2xx_login_the_file_reads_as_a_rate_limit_is_one() {
    async fn limited_login() -> Response {
        axum::Json(json!({"status": "FAILURE", "error": "LOGIN_LIMIT", "wait": 42})).into_response()
    }
    let server = spawn_provider(Router::new().route("/auth/token", post(limited_login))).await;
    let mapping = MAPPING.replace(
        "resources:",
        "rate_limit:\n  is_limited: \"status = 429 or body.error = 'LOGIN_LIMIT'\"\n  retry_after: body.wait\nresources:",
    );
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: "exchange".into(),
        context: json!({"url": server.origin, "username": "svc", "password": PASSWORD}),
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let gateway = serve_accounts(catalog_with("exchange", &mapping), vec![account]).await;
    let url = format!(
        "{}/unified/user-directory/users?integrated_account_id=acc",
        gateway.origin
    );
    let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        body["message"],
        json!(
            "the provider's token endpoint is rate-limiting token requests; it asked to wait 42 s"
        )
    );
    let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
    assert_eq!(status, 429, "held, not marked: {body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| !m.contains("reconnect")),
        "{body}"
    );
}

/// A login's answer that gives no token is read by the file's `auth.token_rejected` first: a
/// 2xx whose body it names refuses the credentials (the account is marked), and a 403 it says
/// is no refusal (a login call's 4xx otherwise refuses) is a 502 that leaves the account as it is.
#[tokio::test]
async fn token_rejected_reads_a_login_answer_without_a_token() {
    async fn login(body: axum::body::Bytes) -> Response {
        let form: Value = serde_json::from_slice(&body).unwrap();
        match form["username"].as_str() {
            Some("gone") => {
                axum::Json(json!({"status": "FAILURE", "reason": "USER_DELETED"})).into_response()
            }
            _ => (
                StatusCode::FORBIDDEN,
                axum::Json(json!({"message": "Logins are paused for maintenance"})),
            )
                .into_response(),
        }
    }
    let server = spawn_provider(Router::new().route("/auth/token", post(login))).await;
    let mapping = MAPPING.replace(
        "  expires_in: expires_in\n",
        "  expires_in: expires_in\n  token_rejected: \"body.reason = 'USER_DELETED' ? true : (status = 403 ? false)\"\n",
    );
    assert_ne!(mapping, MAPPING);
    let account = |id: &str, username: &str| IntegratedAccount {
        id: id.into(),
        integration: "exchange".into(),
        context: json!({"url": server.origin, "username": username, "password": PASSWORD}),
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let gateway = serve_accounts(
        catalog_with("exchange", &mapping),
        vec![account("gone", "gone"), account("paused", "svc")],
    )
    .await;
    let url = |id: &str| {
        format!(
            "{}/unified/user-directory/users?integrated_account_id={id}",
            gateway.origin
        )
    };
    let (status, body) = get_json(&url("gone"), Some(TEST_TOKEN)).await;
    assert_eq!(
        (status, body["message"].clone()),
        (
            401,
            json!(
                "the provider refused to issue an access token (USER_DELETED); reconnect the integrated account"
            )
        )
    );
    let (status, body) = get_json(&url("gone"), Some(TEST_TOKEN)).await;
    assert_eq!(
        (status, body["message"].clone()),
        (
            401,
            json!(
                "integrated account `gone` needs to be reconnected: token refresh refused: USER_DELETED"
            )
        )
    );
    for _ in 0..2 {
        let (status, body) = get_json(&url("paused"), Some(TEST_TOKEN)).await;
        assert_eq!(
            (status, body["message"].clone()),
            (
                502,
                json!(
                    "could not obtain an access token: the token endpoint answered HTTP 403 (Logins are paused for maintenance), which the integration reads as no refusal of the credentials (`auth.token_rejected`)"
                )
            )
        );
    }
}
