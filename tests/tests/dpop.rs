//! Sender-constrained tokens end to end, against an authorization server and an API on 127.0.0.1
//! that behave as Okta's do for an API service app: the client authenticates with a
//! `private_key_jwt` assertion (RS256, checked here with the public key), the token endpoint
//! asks for a DPoP nonce first (400 `use_dpop_nonce`), issues a `DPoP` token bound to the proof's
//! key, and the API takes it only with a proof by that key naming the request (`htm`, `htu`,
//! `ath`); an API that asks for a nonce (401 `use_dpop_nonce`) gets the call again with it, a
//! token stored with its key (another replica, a restart) is used with that key, and one the API
//! refuses (401 `invalid_token`) is replaced by a token bound to a new key.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};
use unigate_store::IntegratedAccount;
use unigate_tests::{
    LocalProvider, TEST_TOKEN, catalog_with, get_json, repo_root, serve_accounts, spawn_provider,
    url_pairs,
};
use unigate_unified::Secret;
use unigate_upstream::dpop::DpopKey;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

const MAPPING: &str = r#"name: DPoP example
docs: https://example.test/docs
base_url: "{{context.url}}/api/v1"
auth:
  kind: oauth2_client_credentials
  token_url: /oauth2/v1/token
  client_id: "{{context.client_id}}"
  client_auth: private_key_jwt
  private_key: "{{context.private_key}}"
  key_id: "{{context.key_id?}}"
  scope: okta.users.read
  dpop: true
resources:
  users:
    list: { path: /users, records: "$", query: { limit: "200" } }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: '{ "id": id }'
"#;

/// A DPoP proof as the servers read it: header, claims, and whether its signature verifies
/// with the key its header carries.
struct ReadProof {
    jwk: Value,
    claims: Value,
}

fn read_proof(proof: &str) -> ReadProof {
    let parts: Vec<&str> = proof.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS");
    let header: Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(
        (&header["typ"], &header["alg"]),
        (&json!("dpop+jwt"), &json!("ES256"))
    );
    let jwk = header["jwk"].clone();
    assert!(jwk.get("d").is_none(), "a public key only");
    let key = jsonwebtoken::DecodingKey::from_ec_components(
        jwk["x"].as_str().unwrap(),
        jwk["y"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<Value>(proof, &key, &validation)
        .expect("the proof verifies with the key in its header")
        .claims;
    ReadProof { jwk, claims }
}

#[derive(Default)]
struct Server {
    origin: Mutex<String>,
    /// Token requests answered (not counting the nonce refusals).
    tokens_issued: Mutex<u32>,
    token_nonce_refusals: Mutex<u32>,
    /// The key the issued token is bound to.
    bound_jwk: Mutex<Option<Value>>,
    /// Ask API calls for a nonce this many times.
    api_wants_nonce: Mutex<u32>,
    /// Issue Bearer tokens (an app that does not require DPoP).
    issue_bearer: Mutex<bool>,
    /// Ask every token request for a new nonce.
    nonce_forever: Mutex<bool>,
    /// Every client assertion `jti` seen: Okta spends one on any request, a refused one too.
    assertion_ids: Mutex<Vec<String>>,
    api_calls: Mutex<Vec<Value>>,
    client_assertions: Mutex<Vec<(Value, Value)>>,
    /// A token the API refuses (401 `invalid_token`), though its proof is right: revoked, or
    /// ended before its `expires_in`.
    refused_token: Mutex<Option<String>>,
    /// The public keys of the proofs sent with a refused token.
    refused_proof_keys: Mutex<Vec<Value>>,
}

async fn token(State(server): State<Arc<Server>>, headers: HeaderMap, body: String) -> Response {
    let origin = server.origin.lock().unwrap().clone();
    let proof = read_proof(headers.get("dpop").unwrap().to_str().unwrap());
    assert_eq!(proof.claims["htm"], "POST");
    assert_eq!(proof.claims["htu"], format!("{origin}/oauth2/v1/token"));
    assert!(proof.claims.get("ath").is_none(), "no token yet");
    let form = url_pairs(&body);
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let assertion = field("client_assertion").expect("a client assertion");
    let public_key =
        std::fs::read_to_string(repo_root().join("tests/keys/test-service-account.pub")).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[format!("{origin}/oauth2/v1/token")]);
    let decoded = jsonwebtoken::decode::<Value>(
        &assertion,
        &jsonwebtoken::DecodingKey::from_rsa_pem(public_key.as_bytes()).unwrap(),
        &validation,
    )
    .expect("signed RS256 with the account's key, for the token URL, not expired");
    let jti = decoded.claims["jti"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if server.assertion_ids.lock().unwrap().contains(&jti) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client",
                "error_description": "The client_assertion token has already been used."})),
        )
            .into_response();
    }
    server.assertion_ids.lock().unwrap().push(jti);
    if proof.claims.get("nonce").is_none() || *server.nonce_forever.lock().unwrap() {
        *server.token_nonce_refusals.lock().unwrap() += 1;
        return (
            StatusCode::BAD_REQUEST,
            [("dpop-nonce", "token-nonce-1")],
            axum::Json(json!({"error": "use_dpop_nonce",
                "error_description": "Authorization server requires nonce in DPoP proof."})),
        )
            .into_response();
    }
    assert_eq!(proof.claims["nonce"], "token-nonce-1");
    assert_eq!(field("grant_type").as_deref(), Some("client_credentials"));
    assert_eq!(field("scope").as_deref(), Some("okta.users.read"));
    assert_eq!(
        field("client_assertion_type").as_deref(),
        Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    );
    assert_eq!(field("client_secret"), None);
    assert_eq!(headers.get("authorization"), None, "no Basic credentials");
    server
        .client_assertions
        .lock()
        .unwrap()
        .push((json!(decoded.header.kid), decoded.claims));
    *server.tokens_issued.lock().unwrap() += 1;
    if *server.issue_bearer.lock().unwrap() {
        return axum::Json(json!({"token_type": "Bearer", "expires_in": 3600,
            "access_token": "bearer-token-1", "scope": "okta.users.read"}))
        .into_response();
    }
    *server.bound_jwk.lock().unwrap() = Some(proof.jwk);
    axum::Json(json!({"token_type": "DPoP", "expires_in": 3600,
        "access_token": "dpop-token-1", "scope": "okta.users.read"}))
    .into_response()
}

async fn users(State(server): State<Arc<Server>>, headers: HeaderMap, uri: Uri) -> Response {
    let origin = server.origin.lock().unwrap().clone();
    if *server.issue_bearer.lock().unwrap() {
        assert_eq!(
            headers.get("authorization").unwrap().to_str().unwrap(),
            "Bearer bearer-token-1"
        );
        assert_eq!(headers.get("dpop"), None, "a Bearer token carries no proof");
        return axum::Json(json!([{"id": "u1"}])).into_response();
    }
    let authorization = headers.get("authorization").unwrap().to_str().unwrap();
    let refused = server.refused_token.lock().unwrap().clone();
    if let Some(token) = refused.filter(|token| authorization == format!("DPoP {token}")) {
        let proof = read_proof(headers.get("dpop").unwrap().to_str().unwrap());
        assert_eq!(
            Some(&proof.jwk),
            server.bound_jwk.lock().unwrap().as_ref(),
            "the refused token's proof is by its own key"
        );
        assert_eq!(
            proof.claims["ath"],
            B64.encode(ring_sha256(token.as_bytes()))
        );
        server.refused_proof_keys.lock().unwrap().push(proof.jwk);
        return (
            StatusCode::UNAUTHORIZED,
            [(
                "www-authenticate",
                r#"DPoP algs="ES256", error="invalid_token", error_description="The token has expired.""#,
            )],
            axum::Json(json!({"errorCode": "E0000011", "errorSummary": "Invalid token provided"})),
        )
            .into_response();
    }
    assert_eq!(authorization, "DPoP dpop-token-1");
    let proof = read_proof(headers.get("dpop").unwrap().to_str().unwrap());
    assert_eq!(
        Some(&proof.jwk),
        server.bound_jwk.lock().unwrap().as_ref(),
        "signed with the key the token is bound to"
    );
    assert_eq!(proof.claims["htm"], "GET");
    assert_eq!(proof.claims["htu"], format!("{origin}/api/v1/users"));
    assert!(
        uri.query().is_some(),
        "the query is left out of htu, not the request"
    );
    let ath = B64.encode(ring_sha256(b"dpop-token-1"));
    assert_eq!(proof.claims["ath"], ath);
    server.api_calls.lock().unwrap().push(proof.claims.clone());
    let wants_nonce = {
        let mut left = server.api_wants_nonce.lock().unwrap();
        let wants = *left > 0;
        *left = left.saturating_sub(1);
        wants
    };
    if wants_nonce {
        return (
            StatusCode::UNAUTHORIZED,
            [
                (
                    "www-authenticate",
                    r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#,
                ),
                ("dpop-nonce", "api-nonce-1"),
            ],
        )
            .into_response();
    }
    axum::Json(json!([{"id": "u1"}])).into_response()
}

fn ring_sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).to_vec()
}

/// The gateway (first) and the provider it calls, with the account's list URL.
async fn world(
    context_extra: Value,
    server: Arc<Server>,
) -> ((unigate_tests::RunningGateway, LocalProvider), String) {
    world_with(context_extra, server, false).await
}

/// `own_base_url`: the mapping names another host, and the account's base URL (a preview org
/// or a custom domain) is the provider's: the token request goes there too.
async fn world_with(
    context_extra: Value,
    server: Arc<Server>,
    own_base_url: bool,
) -> ((unigate_tests::RunningGateway, LocalProvider), String) {
    let provider = spawn_provider(
        Router::new()
            .route("/oauth2/v1/token", post(token))
            .route("/api/v1/users", get(users))
            .with_state(server.clone()),
    )
    .await;
    *server.origin.lock().unwrap() = provider.origin.clone();
    let private_key =
        std::fs::read_to_string(repo_root().join("tests/keys/test-service-account.key")).unwrap();
    let mut context = json!({"url": provider.origin, "client_id": "0oa-service-app",
        "private_key": private_key});
    if let (Some(context), Value::Object(extra)) = (context.as_object_mut(), context_extra) {
        context.extend(extra);
    }
    let base_url = own_base_url.then(|| format!("{}/api/v1", provider.origin));
    if own_base_url {
        context["url"] = json!("https://acme.okta.invalid");
    }
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: "dpop-example".into(),
        context,
        base_url,
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let gateway = serve_accounts(catalog_with("dpop-example", MAPPING), vec![account]).await;
    let url = format!(
        "{}/unified/user-directory/users?integrated_account_id=acc&limit=5",
        gateway.origin
    );
    ((gateway, provider), url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_okta_service_app_gets_a_dpop_token_with_a_signed_client_assertion() {
    let server = Arc::new(Server::default());
    let (_servers, url) = world(json!({"key_id": "kid-1"}), server.clone()).await;
    let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
    assert_eq!(
        (status, &body["result"][0]["id"]),
        (200, &json!("u1")),
        "{body}"
    );
    // The nonce refusal, then the token; the assertion names the client and its key.
    assert_eq!(*server.token_nonce_refusals.lock().unwrap(), 1);
    assert_eq!(*server.tokens_issued.lock().unwrap(), 1);
    {
        let assertions = server.client_assertions.lock().unwrap();
        let (kid, claims) = &assertions[0];
        assert_eq!(kid, &json!("kid-1"));
        assert_eq!(
            (&claims["iss"], &claims["sub"]),
            (&json!("0oa-service-app"), &json!("0oa-service-app"))
        );
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            300
        );
        assert!(claims["jti"].as_str().is_some_and(|jti| jti.len() >= 20));
    }
    // The API asks for a nonce: the call is made again with it, under a new jti, and the
    // token is not renewed for it (a nonce request is no refusal).
    *server.api_wants_nonce.lock().unwrap() = 1;
    let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let calls = server.api_calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[1].get("nonce"), None);
    assert_eq!(calls[2]["nonce"], "api-nonce-1");
    assert_ne!(calls[1]["jti"], calls[2]["jti"]);
    assert_eq!(*server.tokens_issued.lock().unwrap(), 1);
}

/// An app that does not require DPoP answers the DPoP token request with a Bearer token
/// (RFC 9449 §5): it is used as one, without proofs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_issued_for_a_dpop_request_is_used_as_bearer() {
    let server = Arc::new(Server::default());
    *server.issue_bearer.lock().unwrap() = true;
    let (_servers, url) = world(json!({}), server.clone()).await;
    let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(*server.tokens_issued.lock().unwrap(), 1);
}

/// A token endpoint that keeps asking for a new nonce is not refusing the credentials: the call
/// is a 502 after three tries (the first and two retries, each with a new client assertion), and
/// the account is not marked (the next call asks again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_that_keeps_asking_for_a_nonce_does_not_mark_the_account() {
    let server = Arc::new(Server::default());
    *server.nonce_forever.lock().unwrap() = true;
    let (_servers, url) = world(json!({}), server.clone()).await;
    let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
    assert_eq!(
        (status, body["message"].clone()),
        (
            502,
            json!(
                "could not obtain an access token: the token endpoint kept asking for a new DPoP nonce"
            )
        )
    );
    assert_eq!(*server.token_nonce_refusals.lock().unwrap(), 3);
    // After the failure memory (5 s) the endpoint is asked again: nothing was marked.
    tokio::time::sleep(std::time::Duration::from_millis(5100)).await;
    *server.nonce_forever.lock().unwrap() = false;
    let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
}

/// An API that asks for a nonce again after getting one is not refusing the token: the caller
/// gets its 401, and the account is not marked (the next call goes to the provider again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_that_keeps_asking_for_a_nonce_does_not_mark_the_account() {
    let server = Arc::new(Server::default());
    let (_servers, url) = world(json!({}), server.clone()).await;
    *server.api_wants_nonce.lock().unwrap() = 2;
    let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
    assert_eq!(
        (status, body["truto_is_remote_error"].clone()),
        (401, json!(true)),
        "{body}"
    );
    let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(*server.tokens_issued.lock().unwrap(), 1);
}

/// The token URL is a path: with the account's own base URL (an Okta preview org or custom
/// domain) the token request, its client assertion's `aud` and its proof's `htu` name that host,
/// not the one the mapping's base URL would give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_url_path_is_asked_on_the_accounts_own_host() {
    let server = Arc::new(Server::default());
    let (_servers, url) = world_with(json!({}), server.clone(), true).await;
    let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(*server.tokens_issued.lock().unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_dpop_token_is_used_with_the_key_stored_beside_it() {
    let key = DpopKey::generate().unwrap();
    let server = Arc::new(Server::default());
    *server.bound_jwk.lock().unwrap() = Some(key.public_jwk());
    let (_servers, url) = world(
        json!({"access_token": "dpop-token-1", "access_token_expires_at": "2099-01-01T00:00:00Z",
               "access_token_dpop_key": key.stored().expose()}),
        server.clone(),
    )
    .await;
    let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(*server.tokens_issued.lock().unwrap(), 0);
    assert_eq!(server.api_calls.lock().unwrap().len(), 1);
}

/// A stored token whose key cannot be read (cut, or from another format) is no token: a new
/// one is asked for, bound to a new key, instead of calls the API would refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_dpop_token_without_a_readable_key_is_replaced() {
    let server = Arc::new(Server::default());
    let (_servers, url) = world(
        json!({"access_token": "stale", "access_token_expires_at": "2099-01-01T00:00:00Z",
               "access_token_dpop_key": Secret::new("not-a-key").expose()}),
        server.clone(),
    )
    .await;
    let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(*server.tokens_issued.lock().unwrap(), 1);
}

/// A stored DPoP-bound token the API refuses (401 `invalid_token`: revoked, or ended before its
/// clock) is renewed once, through the token endpoint's nonce step, bound to a new key, and the
/// call is repeated with the new token and a proof by the new key; the refusal is not mistaken
/// for a nonce request, and the account stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_dpop_token_is_renewed_with_a_new_key_and_the_call_repeated() {
    let old_key = DpopKey::generate().unwrap();
    let server = Arc::new(Server::default());
    *server.bound_jwk.lock().unwrap() = Some(old_key.public_jwk());
    *server.refused_token.lock().unwrap() = Some("dpop-token-0".into());
    let (_servers, url) = world(
        json!({"access_token": "dpop-token-0", "access_token_expires_at": "2099-01-01T00:00:00Z",
               "access_token_dpop_key": old_key.stored().expose()}),
        server.clone(),
    )
    .await;
    let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
    assert_eq!(
        (status, &body["result"][0]["id"]),
        (200, &json!("u1")),
        "{body}"
    );
    assert_eq!(
        *server.refused_proof_keys.lock().unwrap(),
        [old_key.public_jwk()]
    );
    assert_eq!(*server.token_nonce_refusals.lock().unwrap(), 1);
    assert_eq!(*server.tokens_issued.lock().unwrap(), 1);
    let new_key = server.bound_jwk.lock().unwrap().clone().unwrap();
    assert_ne!(new_key, old_key.public_jwk(), "a new token gets a new key");
    assert_eq!(server.api_calls.lock().unwrap().len(), 1);
    // The next call uses the renewed token as it is.
    let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(*server.tokens_issued.lock().unwrap(), 1);
    assert_eq!(server.api_calls.lock().unwrap().len(), 2);
}
