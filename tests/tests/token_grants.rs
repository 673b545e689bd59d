//! The OAuth 2.0 token requests real providers need, against a token endpoint on 127.0.0.1:
//! Zoom's Server-to-Server grant (`grant_type: account_credentials` plus `account_id`, client
//! credentials as HTTP Basic), Notion's JSON token body, a token sent in another header form
//! (Podio's `OAuth2 <token>`), and the JWT bearer grant of a Google service account (RFC 7523: an
//! RS256 assertion with `iss`, `sub`, `scope`, `aud`, checked here with the public key), and
//! NetSuite's client credentials (a PS256 client assertion carrying its own `scope`).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use unigate_store::IntegratedAccount;
use unigate_tests::{
    TEST_TOKEN, catalog_with, get_json, repo_root, serve_accounts, spawn_provider, url_pairs,
};

/// One token request: its headers (lower-case) and its body.
type TokenRequest = (Vec<(String, String)>, String);

/// What the endpoints received.
#[derive(Default)]
struct Seen {
    token_requests: Mutex<Vec<TokenRequest>>,
    api_auth: Mutex<Vec<String>>,
}

async fn token(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: String) -> Response {
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    seen.token_requests.lock().unwrap().push((headers, body));
    axum::Json(json!({"access_token": "issued-1", "token_type": "bearer", "expires_in": 3599}))
        .into_response()
}

async fn users(State(seen): State<Arc<Seen>>, headers: HeaderMap) -> Response {
    seen.api_auth
        .lock()
        .unwrap()
        .push(header_of(&headers, "authorization"));
    axum::Json(json!({"users": [{"id": "u1"}]})).into_response()
}

/// Lists users once through a mapping whose `auth` block is `auth`; what the endpoints saw.
async fn list_with(auth: &str, context: Value) -> Arc<Seen> {
    let seen = Arc::new(Seen::default());
    let server = spawn_provider(
        Router::new()
            .route("/oauth/token", post(token))
            .route("/users", get(users))
            .with_state(seen.clone()),
    )
    .await;
    let mapping = format!(
        r#"name: Grant example
docs: https://example.test/docs
base_url: "{{{{context.url}}}}"
auth:
{auth}
resources:
  users:
    list: {{ path: /users, records: users }}
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: '{{ "id": id }}'
"#
    );
    let mut context = context;
    context["url"] = json!(server.origin);
    context["token_url"] = json!(format!("{}/oauth/token", server.origin));
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: "grant".into(),
        context,
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let gateway = serve_accounts(catalog_with("grant", &mapping), vec![account]).await;
    let (status, body) = get_json(
        &format!(
            "{}/unified/user-directory/users?integrated_account_id=acc",
            gateway.origin
        ),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    seen
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

#[tokio::test]
async fn zooms_account_credentials_grant() {
    let seen = list_with(
        r#"  kind: oauth2_client_credentials
  token_url: "{{context.token_url}}"
  grant_type: account_credentials
  client_id: "{{context.client_id}}"
  client_secret: "{{context.client_secret}}"
  client_auth: basic
  token_params:
    account_id: "{{context.account_id}}""#,
        json!({"client_id": "zc", "client_secret": "zs", "account_id": "acct-9"}),
    )
    .await;
    let requests = seen.token_requests.lock().unwrap();
    let (headers, body) = &requests[0];
    assert_eq!(
        header(headers, "content-type"),
        "application/x-www-form-urlencoded"
    );
    // base64("zc:zs")
    assert_eq!(header(headers, "authorization"), "Basic emM6enM=");
    let mut form = url_pairs(body);
    form.sort();
    assert_eq!(
        form,
        vec![
            ("account_id".to_owned(), "acct-9".to_owned()),
            ("grant_type".to_owned(), "account_credentials".to_owned())
        ]
    );
    assert_eq!(*seen.api_auth.lock().unwrap(), vec!["Bearer issued-1"]);
}

#[tokio::test]
async fn a_json_token_body_and_another_header_form() {
    let seen = list_with(
        r#"  kind: oauth2_refresh_token
  token_url: "{{context.token_url}}"
  client_id: "{{context.client_id}}"
  client_secret: "{{context.client_secret}}"
  refresh_token: "{{context.refresh_token}}"
  client_auth: basic
  token_body: json
  value: "OAuth2 {{token}}""#,
        json!({"client_id": "nc", "client_secret": "ns", "refresh_token": "r-1"}),
    )
    .await;
    let requests = seen.token_requests.lock().unwrap();
    let (headers, body) = &requests[0];
    assert_eq!(header(headers, "content-type"), "application/json");
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap(),
        json!({"grant_type": "refresh_token", "refresh_token": "r-1"})
    );
    assert_eq!(*seen.api_auth.lock().unwrap(), vec!["OAuth2 issued-1"]);
}

#[tokio::test]
async fn a_service_accounts_jwt_bearer_grant() {
    let private_key =
        std::fs::read_to_string(repo_root().join("tests/keys/test-service-account.key")).unwrap();
    let public_key =
        std::fs::read_to_string(repo_root().join("tests/keys/test-service-account.pub")).unwrap();
    let seen = list_with(
        r#"  kind: oauth2_jwt_bearer
  token_url: "{{context.token_url}}"
  issuer: "{{context.client_email}}"
  subject: "{{context.admin_email}}"
  private_key: "{{context.private_key}}"
  scope: https://www.googleapis.com/auth/admin.directory.user.readonly"#,
        json!({"client_email": "reader@project.iam.gserviceaccount.com",
               "admin_email": "admin@acme.example", "private_key": private_key}),
    )
    .await;
    let requests = seen.token_requests.lock().unwrap();
    let (_, body) = &requests[0];
    let form = url_pairs(body);
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(
        field("grant_type").as_deref(),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    assert_eq!(
        field("scope"),
        None,
        "the scope travels inside the assertion"
    );
    let assertion = field("assertion").expect("an assertion");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[seen_token_url(&requests)]);
    let claims = jsonwebtoken::decode::<Value>(
        &assertion,
        &jsonwebtoken::DecodingKey::from_rsa_pem(public_key.as_bytes()).unwrap(),
        &validation,
    )
    .expect("signed with the account's key, RS256, for the token URL, not expired")
    .claims;
    assert_eq!(claims["iss"], "reader@project.iam.gserviceaccount.com");
    assert_eq!(claims["sub"], "admin@acme.example");
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/admin.directory.user.readonly"
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    assert_eq!(*seen.api_auth.lock().unwrap(), vec!["Bearer issued-1"]);
}

/// A Box JWT app (developer.box.com guides/authentication/jwt/without-sdk): the assertion
/// carries Box's own `box_sub_type`, a fresh `jti` and the key's `kid`, lives at most a minute,
/// and the client id and secret travel in the form beside it.
#[tokio::test]
async fn a_box_jwt_apps_assertion_has_its_own_claims_a_jti_and_a_kid() {
    let private_key =
        std::fs::read_to_string(repo_root().join("tests/keys/test-service-account.key")).unwrap();
    let public_key =
        std::fs::read_to_string(repo_root().join("tests/keys/test-service-account.pub")).unwrap();
    let seen = list_with(
        r#"  kind: oauth2_jwt_bearer
  token_url: "{{context.token_url}}"
  issuer: "{{context.client_id}}"
  subject: "{{context.enterprise_id}}"
  private_key: "{{context.private_key}}"
  key_id: "{{context.public_key_id}}"
  claims: { box_sub_type: enterprise }
  jti: true
  lifetime_s: 45
  client_id: "{{context.client_id}}"
  client_secret: "{{context.client_secret}}""#,
        json!({"client_id": "box-client", "client_secret": "box-secret",
               "enterprise_id": "123456", "public_key_id": "kid-box-1",
               "private_key": private_key}),
    )
    .await;
    let requests = seen.token_requests.lock().unwrap();
    let (_, body) = &requests[0];
    let form = url_pairs(body);
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(
        (
            field("grant_type").as_deref(),
            field("client_id").as_deref(),
            field("client_secret").as_deref()
        ),
        (
            Some("urn:ietf:params:oauth:grant-type:jwt-bearer"),
            Some("box-client"),
            Some("box-secret")
        )
    );
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[seen_token_url(&requests)]);
    let decoded = jsonwebtoken::decode::<Value>(
        &field("assertion").expect("an assertion"),
        &jsonwebtoken::DecodingKey::from_rsa_pem(public_key.as_bytes()).unwrap(),
        &validation,
    )
    .expect("signed with the account's key, RS256, for the token URL, not expired");
    assert_eq!(decoded.header.kid.as_deref(), Some("kid-box-1"));
    let claims = decoded.claims;
    assert_eq!(
        (&claims["iss"], &claims["sub"], &claims["box_sub_type"]),
        (&json!("box-client"), &json!("123456"), &json!("enterprise"))
    );
    assert!(claims["jti"].as_str().is_some_and(|jti| jti.len() >= 16));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        45
    );
    assert_eq!(*seen.api_auth.lock().unwrap(), vec!["Bearer issued-1"]);
}

/// NetSuite's machine-to-machine grant: client credentials with a client assertion signed PS256
/// (NetSuite refuses RS256), the certificate id as `kid` and `scope` inside the assertion; the
/// form holds only the grant and the assertion.
#[tokio::test]
async fn a_netsuite_client_assertion_is_signed_ps256_with_its_scope_claim() {
    let private_key =
        std::fs::read_to_string(repo_root().join("tests/keys/test-service-account.key")).unwrap();
    let public_key =
        std::fs::read_to_string(repo_root().join("tests/keys/test-service-account.pub")).unwrap();
    let seen = list_with(
        r#"  kind: oauth2_client_credentials
  token_url: "{{context.token_url}}"
  client_id: "{{context.client_id}}"
  client_auth: private_key_jwt
  private_key: "{{context.private_key}}"
  key_id: "{{context.certificate_id}}"
  jwt_algorithm: PS256
  claims: { scope: rest_webservices }"#,
        json!({"client_id": "ns-client", "certificate_id": "cert-7",
               "private_key": private_key}),
    )
    .await;
    let requests = seen.token_requests.lock().unwrap();
    let form = url_pairs(&requests[0].1);
    let names: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["grant_type", "client_assertion_type", "client_assertion"]
    );
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::PS256);
    validation.set_audience(&[seen_token_url(&requests)]);
    let decoded = jsonwebtoken::decode::<Value>(
        &form[2].1,
        &jsonwebtoken::DecodingKey::from_rsa_pem(public_key.as_bytes()).unwrap(),
        &validation,
    )
    .expect("signed PS256 with the account's key, for the token URL, not expired");
    assert_eq!(decoded.header.kid.as_deref(), Some("cert-7"));
    assert_eq!(
        (&decoded.claims["iss"], &decoded.claims["scope"]),
        (&json!("ns-client"), &json!("rest_webservices"))
    );
    assert_eq!(*seen.api_auth.lock().unwrap(), vec!["Bearer issued-1"]);
}

/// The token URL the assertion is for: the endpoint that received it.
fn seen_token_url(requests: &[TokenRequest]) -> String {
    format!("http://{}/oauth/token", header(&requests[0].0, "host"))
}

/// A provider whose token answer moves the account (`auth.keep: {geolocation}`): each host
/// records the calls it got (their Authorization and query), answers a token naming where the
/// account lives (`moved_to`), and serves two pages of users to `tok-1` only (a 401 to any other
/// token).
#[derive(Default)]
struct MovingHost {
    pages: Mutex<Vec<String>>,
    moved_to: Mutex<String>,
    token_requests: Mutex<u32>,
}

async fn moving_token(State(host): State<Arc<MovingHost>>) -> Response {
    *host.token_requests.lock().unwrap() += 1;
    let moved_to = host.moved_to.lock().unwrap().clone();
    axum::Json(json!({"access_token": "tok-1", "expires_in": 3600,
                      "refresh_token": "refresh-2", "geolocation": moved_to}))
    .into_response()
}

async fn moving_page(
    State(host): State<Arc<MovingHost>>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let auth = header_of(&headers, "authorization");
    let query = query.unwrap_or_default();
    host.pages.lock().unwrap().push(format!("{auth} ?{query}"));
    if auth != "Bearer tok-1" {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_token"})),
        )
            .into_response();
    }
    match query.as_str() {
        "cursor=c2" => axum::Json(json!({"users": [{"id": "u2"}]})).into_response(),
        _ => axum::Json(json!({"users": [{"id": "u1"}], "next": "c2"})).into_response(),
    }
}

fn header_of(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Two moving hosts, the old one's token answers pointing at the new one (the new one's at
/// itself), and a gateway serving account `acc` on the old one with `context` added; `paged`
/// walks the users' cursor.
async fn moving_world(
    context: Value,
    paged: bool,
) -> (
    Arc<MovingHost>,
    Arc<MovingHost>,
    unigate_tests::RunningGateway,
    [unigate_tests::LocalProvider; 2],
) {
    let (old, new) = (
        Arc::new(MovingHost::default()),
        Arc::new(MovingHost::default()),
    );
    let serve = |host: Arc<MovingHost>| {
        spawn_provider(
            Router::new()
                .route("/oauth/token", post(moving_token))
                .route("/users", get(moving_page))
                .with_state(host),
        )
    };
    let (old_server, new_server) = (serve(old.clone()).await, serve(new.clone()).await);
    *old.moved_to.lock().unwrap() = new_server.origin.clone();
    *new.moved_to.lock().unwrap() = new_server.origin.clone();
    let pagination = match paged {
        true => "pagination: { style: cursor, cursor_param: cursor, next_cursor: next }\n",
        false => "",
    };
    let mapping = format!(
        r#"name: Moving provider
docs: https://example.test/docs
base_url: "{{{{context.geolocation}}}}"
auth:
  kind: oauth2_refresh_token
  token_url: "{{{{context.geolocation}}}}/oauth/token"
  client_id: "{{{{context.client_id}}}}"
  client_secret: "{{{{context.client_secret}}}}"
  refresh_token: "{{{{context.refresh_token}}}}"
  keep: {{ geolocation: geolocation }}
{pagination}resources:
  users:
    list: {{ path: /users, records: users }}
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: '{{ "id": id }}'
"#
    );
    let mut account_context = json!({"geolocation": old_server.origin, "client_id": "c",
                                     "client_secret": "s", "refresh_token": "refresh-1"});
    for (key, value) in context.as_object().unwrap() {
        account_context[key] = value.clone();
    }
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: "moving".into(),
        context: account_context,
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let gateway = serve_accounts(catalog_with("moving", &mapping), vec![account]).await;
    (old, new, gateway, [old_server, new_server])
}

/// `auth.keep`: a value of the token answer is written to the account's context with the token
/// (SAP Concur: "store the geolocation and the refresh token as they may have changed"), so the
/// account's calls go where the answer said, with the token it holds: the first call too, which
/// was rendered for the old host before it asked for the token.
#[tokio::test]
async fn a_kept_value_of_the_token_answer_moves_the_next_call() {
    let (old, new, gateway, _servers) = moving_world(json!({}), false).await;
    let url = format!(
        "{}/unified/user-directory/users?integrated_account_id=acc",
        gateway.origin
    );
    for _ in 0..2 {
        let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(old.pages.lock().unwrap().is_empty());
    assert_eq!(*old.token_requests.lock().unwrap(), 1);
    assert_eq!(
        *new.pages.lock().unwrap(),
        ["Bearer tok-1 ?", "Bearer tok-1 ?"]
    );
    assert_eq!(*new.token_requests.lock().unwrap(), 0);
}

/// A call whose token is refused is retried after the refresh, and the refresh's kept value
/// moved the account: the retry goes to the new host, not back to the one that refused the old
/// token (there the new token would be refused too and the account marked), and so does the
/// rest of the walk, whose pages were rendered for the old host.
#[tokio::test]
async fn a_refresh_that_moves_the_account_moves_the_retry_and_the_rest_of_the_walk() {
    let (old, new, gateway, _servers) = moving_world(json!({"access_token": "tok-0"}), true).await;
    let url = format!(
        "{}/unified/user-directory/users?integrated_account_id=acc&truto_ignore_limit=true",
        gateway.origin
    );
    let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["u1", "u2"], "{body}");
    assert_eq!(*old.pages.lock().unwrap(), ["Bearer tok-0 ?"]);
    assert_eq!(*old.token_requests.lock().unwrap(), 1);
    assert_eq!(
        *new.pages.lock().unwrap(),
        ["Bearer tok-1 ?", "Bearer tok-1 ?cursor=c2"]
    );
    assert_eq!(*new.token_requests.lock().unwrap(), 0);
}
