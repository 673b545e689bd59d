//! OAuth 2.0 provider auth end to end, against a token endpoint and an API on 127.0.0.1:
//! single-flight refresh under 100 concurrent calls, refresh-token rotation written back,
//! a refused cached token retried once with a fresh one, a token endpoint or an API quoting
//! the credential it refuses answered without it, a token request that gets no lease answered
//! 503 to retry, and `needs_reauth` after a refused refresh or a refused fresh token — with no
//! secret in any answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use unigate_store::IntegratedAccount;
use unigate_tests::{
    LocalProvider, RunningGateway, TEST_TOKEN, catalog_with, get_json, get_json_and_headers,
    serve_accounts, spawn_provider, url_pairs,
};

const MAPPING: &str = r#"name: OAuth example
docs: https://example.test/docs
base_url: "https://api.example.test"
auth:
  kind: oauth2_refresh_token
  token_url: "{{context.token_url}}"
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

/// How the provider behaves, and what it saw.
#[derive(Debug, Default)]
struct Provider {
    token_calls: AtomicUsize,
    refresh_tokens_seen: Mutex<Vec<String>>,
    /// The access token the API accepts.
    valid_token: Mutex<String>,
    /// Token endpoint answers: (status, expires_in, rotated refresh token).
    refuse_refresh: Mutex<bool>,
    /// Refuse it quoting the refresh token it was sent, as some token endpoints do.
    quote_refused: Mutex<bool>,
    rotate_to: Mutex<Option<String>>,
    /// Refuse a wrong token as Zoho Meeting does: 400 with an INVALID_OAUTHTOKEN body.
    refuse_with_400: Mutex<bool>,
    /// Answer the refresh as Slack's token endpoint does: HTTP 200 {ok: false, error}.
    token_error_with_200: Mutex<Option<&'static str>>,
    expires_in: Mutex<i64>,
    /// Issue tokens the API refuses.
    issue_bad_tokens: Mutex<bool>,
    /// Send the client to another host, as CrowdStrike's token endpoint does for a client of
    /// another cloud (308 with a Location).
    redirect_to: Mutex<Option<&'static str>>,
    /// The API quotes the token it refuses.
    quote_token: Mutex<bool>,
    /// The token endpoint answers this status, body and Retry-After instead.
    token_answer: Mutex<Option<(StatusCode, &'static str, Option<&'static str>)>>,
}

async fn token(State(p): State<Arc<Provider>>, body: String) -> Response {
    let form = url_pairs(&body);
    let n = p.token_calls.fetch_add(1, Ordering::SeqCst) + 1;
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(field("grant_type"), "refresh_token");
    assert_eq!(
        (field("client_id"), field("client_secret")),
        ("cid".to_owned(), "csecret".to_owned())
    );
    p.refresh_tokens_seen
        .lock()
        .unwrap()
        .push(field("refresh_token"));
    if let Some((status, body, retry_after)) = *p.token_answer.lock().unwrap() {
        let mut response = (status, body).into_response();
        if let Some(retry_after) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", retry_after.parse().unwrap());
        }
        return response;
    }
    if let Some(location) = *p.redirect_to.lock().unwrap() {
        return (
            StatusCode::PERMANENT_REDIRECT,
            [("location", location), ("x-cs-region", "us-2")],
        )
            .into_response();
    }
    // Slow enough that concurrent callers pile up behind the first refresh.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    if *p.quote_refused.lock().unwrap() {
        let quoted = format!("Refresh token {} has been revoked.", field("refresh_token"));
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant", "error_description": quoted})),
        )
            .into_response();
    }
    if let Some(error) = *p.token_error_with_200.lock().unwrap() {
        return axum::Json(json!({"ok": false, "error": error})).into_response();
    }
    if *p.refuse_refresh.lock().unwrap() {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}))).into_response();
    }
    let access = format!("access-{n}");
    if !*p.issue_bad_tokens.lock().unwrap() {
        *p.valid_token.lock().unwrap() = access.clone();
    }
    let mut body = json!({"access_token": access, "token_type": "Bearer", "expires_in": *p.expires_in.lock().unwrap()});
    if let Some(rotated) = p.rotate_to.lock().unwrap().clone() {
        body["refresh_token"] = json!(rotated);
    }
    axum::Json(body).into_response()
}

async fn users(State(p): State<Arc<Provider>>, headers: HeaderMap) -> Response {
    let expected = format!("Bearer {}", p.valid_token.lock().unwrap());
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        if *p.refuse_with_400.lock().unwrap() {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": {"code": 2000, "message": "INVALID_OAUTHTOKEN"}})),
            )
                .into_response();
        }
        let message = match *p.quote_token.lock().unwrap() {
            true => format!(
                "invalid token {}",
                headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .trim_start_matches("Bearer ")
            ),
            false => "invalid token".to_owned(),
        };
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": message})),
        )
            .into_response();
    }
    axum::Json(json!({"users": [{"id": "u1"}]})).into_response()
}

struct World {
    provider: Arc<Provider>,
    gateway: RunningGateway,
    _server: LocalProvider,
}

async fn world(context_extra: Value) -> World {
    world_with(MAPPING, context_extra).await
}

async fn world_with(mapping: &str, context_extra: Value) -> World {
    let provider = Arc::new(Provider {
        expires_in: Mutex::new(3600),
        ..Provider::default()
    });
    let server = spawn_provider(
        Router::new()
            .route("/token", post(token))
            .route("/users", get(users))
            .with_state(provider.clone()),
    )
    .await;
    let origin = server.origin.clone();
    let catalog = catalog_with("oauth-example", mapping);
    let mut context = json!({"token_url": format!("{origin}/token"), "client_id": "cid", "client_secret": "csecret", "refresh_token": "r1"});
    if let (Some(context), Value::Object(extra)) = (context.as_object_mut(), context_extra) {
        context.extend(extra);
    }
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: "oauth-example".into(),
        context,
        base_url: Some(origin),
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    World {
        provider,
        gateway: serve_accounts(catalog, vec![account]).await,
        _server: server,
    }
}

fn url(world: &World) -> String {
    format!(
        "{}/unified/user-directory/users?integrated_account_id=acc",
        world.gateway.origin
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_calls_share_one_refresh() {
    let world = world(json!({})).await;
    let url = url(&world);
    let calls: Vec<_> = (0..100)
        .map(|_| {
            tokio::spawn({
                let url = url.clone();
                async move { get_json(&url, Some(TEST_TOKEN)).await }
            })
        })
        .collect();
    for call in calls {
        let (status, body) = call.await.unwrap();
        assert_eq!(
            (status, body["result"][0]["id"].clone()),
            (200, json!("u1")),
            "{body}"
        );
    }
    assert_eq!(world.provider.token_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_refresh_token_is_used_next_time() {
    let world = world(json!({})).await;
    *world.provider.rotate_to.lock().unwrap() = Some("r2".into());
    // Tokens that expire within the refresh margin are refreshed on every call.
    *world.provider.expires_in.lock().unwrap() = 30;
    assert_eq!(get_json(&url(&world), Some(TEST_TOKEN)).await.0, 200);
    *world.provider.rotate_to.lock().unwrap() = Some("r3".into());
    assert_eq!(get_json(&url(&world), Some(TEST_TOKEN)).await.0, 200);
    assert_eq!(
        *world.provider.refresh_tokens_seen.lock().unwrap(),
        vec!["r1", "r2"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_cached_token_is_retried_once_with_a_fresh_one() {
    // The context holds a token the provider no longer accepts.
    let world =
        world(json!({"access_token": "stale", "access_token_expires_at": "2099-01-01T00:00:00Z"}))
            .await;
    *world.provider.valid_token.lock().unwrap() = "not-yet-issued".into();
    let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(world.provider.token_calls.load(Ordering::SeqCst), 1);
}

/// A provider that refuses a token with another status (Zoho Meeting: 400 INVALID_OAUTHTOKEN)
/// gets the same renewal as a 401 once the mapping says so in `auth.rejected`; without it, the
/// 400 is the caller's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refused_with_a_mapped_status_is_renewed_like_a_401() {
    let stale = json!({"access_token": "stale", "access_token_expires_at": "2099-01-01T00:00:00Z"});
    let with_rejected = MAPPING.replace(
        "  refresh_token: \"{{context.refresh_token}}\"\n",
        "  refresh_token: \"{{context.refresh_token}}\"\n  rejected: \"status = 401 or (status = 400 and body.error.message = 'INVALID_OAUTHTOKEN')\"\n",
    );
    assert_ne!(with_rejected, MAPPING);
    let world = world_with(&with_rejected, stale.clone()).await;
    *world.provider.refuse_with_400.lock().unwrap() = true;
    *world.provider.valid_token.lock().unwrap() = "not-yet-issued".into();
    let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(world.provider.token_calls.load(Ordering::SeqCst), 1);

    let world = world_with(MAPPING, stale).await;
    *world.provider.refuse_with_400.lock().unwrap() = true;
    *world.provider.valid_token.lock().unwrap() = "not-yet-issued".into();
    let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(world.provider.token_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_marks_the_account_and_says_so() {
    let world = world(json!({})).await;
    *world.provider.refuse_refresh.lock().unwrap() = true;
    let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
    assert_eq!(
        (status, body.clone()),
        (
            401,
            json!({"statusCode": 401, "error": "Unauthorized", "truto_is_remote_error": true,
            "message": "the provider refused to issue an access token (Token has been expired or revoked.); reconnect the integrated account",
            "raw_response": {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}})
        )
    );
    // Marked: the next call answers at once, without another refresh.
    let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
    assert_eq!(status, 401);
    assert_eq!(
        body["message"],
        "integrated account `acc` needs to be reconnected: token refresh refused: Token has been expired or revoked."
    );
    assert_eq!(world.provider.token_calls.load(Ordering::SeqCst), 1);
    assert!(!body.to_string().contains("csecret") && !body.to_string().contains("r1"));
}

/// A token request refused `invalid_scope` (a scope the app was not granted, such as the group
/// scope an opt-in flag adds) is a 403 naming the scope problem, and does not mark the account:
/// once the scope is granted the next call gets its token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_scope_is_a_403_and_does_not_mark_the_account() {
    let world = world(json!({})).await;
    *world.provider.token_answer.lock().unwrap() = Some((
        StatusCode::BAD_REQUEST,
        r#"{"error": "invalid_scope", "error_description": "The following scopes are not allowed: okta.groups.read"}"#,
        None,
    ));
    let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
    assert_eq!(
        (status, body.clone()),
        (
            403,
            json!({"statusCode": 403, "error": "Forbidden", "truto_is_remote_error": true,
            "message": "the provider refused a scope the account's token request asks for (The following scopes are not allowed: okta.groups.read); grant it to the app, or unset the account flag that asks for it (the credentials were not refused; the account is not marked)",
            "raw_response": {"error": "invalid_scope", "error_description": "The following scopes are not allowed: okta.groups.read"}})
        )
    );
    // Not marked: the next call is the same 403 (a marked account would answer 401 "needs to
    // be reconnected" without asking), so granting the scope is all it takes.
    let (status, again) = get_json(&url(&world), Some(TEST_TOKEN)).await;
    assert_eq!((status, again), (403, body));
}

/// A token endpoint that refuses with HTTP 200 and an `error` (Slack's): a refusal like a 400's,
/// the account marked; the same endpoint saying it is rate-limited is not one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_answered_with_200_marks_the_account_and_a_transient_error_does_not() {
    let world = world(json!({})).await;
    *world.provider.token_error_with_200.lock().unwrap() = Some("ratelimited");
    let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
    assert_eq!(
        (status, body["message"].clone()),
        (
            502,
            json!(
                "could not obtain an access token: the token endpoint answered HTTP 200 with error `ratelimited`"
            )
        )
    );
    // (A failed token request is answered from memory for a few seconds: a new account.)
    let world = self::world(json!({})).await;
    *world.provider.token_error_with_200.lock().unwrap() = Some("invalid_refresh_token");
    let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
    assert_eq!(
        (status, body.clone()),
        (
            401,
            json!({"statusCode": 401, "error": "Unauthorized", "truto_is_remote_error": true,
            "message": "the provider refused to issue an access token (invalid_refresh_token); reconnect the integrated account",
            "raw_response": {"ok": false, "error": "invalid_refresh_token"}})
        )
    );
    let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
    assert_eq!(status, 401);
    assert_eq!(
        body["message"],
        "integrated account `acc` needs to be reconnected: token refresh refused: invalid_refresh_token"
    );
    assert_eq!(world.provider.token_calls.load(Ordering::SeqCst), 1);
}

/// A token endpoint that quotes the refresh token it refuses: the caller's answer, and the
/// reason kept with the account, have it replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_quoting_the_refresh_token_reaches_the_caller_without_it() {
    let world = world(json!({"refresh_token": "rt-0123456789abcdef"})).await;
    *world.provider.quote_refused.lock().unwrap() = true;
    let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
    assert_eq!(
        (status, body),
        (
            401,
            json!({"statusCode": 401, "error": "Unauthorized", "truto_is_remote_error": true,
            "message": "the provider refused to issue an access token (Refresh token [redacted] has been revoked.); reconnect the integrated account",
            "raw_response": {"error": "invalid_grant", "error_description": "Refresh token [redacted] has been revoked."}})
        )
    );
    let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
    assert_eq!(status, 401);
    assert_eq!(
        body["message"],
        "integrated account `acc` needs to be reconnected: token refresh refused: Refresh token [redacted] has been revoked."
    );
    assert_eq!(
        *world.provider.refresh_tokens_seen.lock().unwrap(),
        vec!["rt-0123456789abcdef"]
    );
}

/// An API that quotes the access token it refuses: the token the gateway obtained is replaced
/// in the caller's answer too, though the account's context never held it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_quoting_the_access_token_reaches_the_caller_without_it() {
    let world = world(json!({})).await;
    *world.provider.issue_bad_tokens.lock().unwrap() = true;
    *world.provider.quote_token.lock().unwrap() = true;
    let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
    assert_eq!(
        (
            status,
            body["message"].clone(),
            body["raw_response"].clone()
        ),
        (
            401,
            json!("invalid token [redacted]"),
            json!({"message": "invalid token [redacted]"})
        )
    );
    assert_eq!(world.provider.token_calls.load(Ordering::SeqCst), 1);
}

/// A token endpoint that redirects elsewhere has not refused the credential: the account's host
/// is wrong. The caller is told where it pointed (its origin only), the account is not marked,
/// and the next call asks the endpoint again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirecting_token_endpoint_is_reported_and_does_not_mark_the_account() {
    let world = world(json!({})).await;
    *world.provider.redirect_to.lock().unwrap() =
        Some("https://api.us-2.example.test/oauth2/token?hint=us-2");
    let expected = json!({"statusCode": 502, "error": "Bad Gateway",
        "message": "could not obtain an access token: the token endpoint answered HTTP 308 redirecting to https://api.us-2.example.test, which is not followed: the account's host or region is likely not the one the provider serves it from", "truto_is_remote_error": true});
    let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
    assert_eq!((status, body), (502, expected.clone()));
    // After the failure memory (5 s) the endpoint is asked again: nothing was marked.
    tokio::time::sleep(std::time::Duration::from_millis(5100)).await;
    let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
    assert_eq!((status, body), (502, expected));
    assert_eq!(world.provider.token_calls.load(Ordering::SeqCst), 2);
}

/// A token endpoint's 429 is a rate limit, not a refusal: the caller gets a 429 with the
/// endpoint's `Retry-After`, calls meanwhile are answered from memory without asking again, and
/// the account is not marked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_token_endpoint_is_a_429_and_does_not_mark_the_account() {
    let world = world(json!({})).await;
    *world.provider.token_answer.lock().unwrap() = Some((
        StatusCode::TOO_MANY_REQUESTS,
        r#"{"error":"too_many_requests"}"#,
        Some("30"),
    ));
    for _ in 0..2 {
        let (status, body, headers) = get_json_and_headers(&url(&world), Some(TEST_TOKEN)).await;
        assert_eq!(status, 429, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.starts_with(
                "the provider's token endpoint is rate-limiting token requests; it asked to wait"
            ),
            "{body}"
        );
        let retry_after: i64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((28..=30).contains(&retry_after), "{retry_after}");
    }
    assert_eq!(world.provider.token_calls.load(Ordering::SeqCst), 1);
}

/// A token answer the file's `rate_limit` names is a wait, as any of the provider's answers is,
/// even where `token_rejected` would read it as no refusal or the default as a refusal (Podio
/// sends 420 to every call once its limit is hit, the token call too): a 429 with the wait the
/// file reads, answered from memory until then; the account is not marked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_answer_the_files_rate_limit_names_is_a_429() {
    let mapping = MAPPING.replace(
        "resources:",
        "rate_limit:\n  is_limited: \"status = 420 or status = 429\"\n  retry_after: body.wait\nresources:",
    );
    let mapping = mapping.replace(
        "  refresh_token: \"{{context.refresh_token}}\"\n",
        "  refresh_token: \"{{context.refresh_token}}\"\n  token_rejected: \"status = 420 ? false\"\n",
    );
    assert!(mapping.contains("is_limited") && mapping.contains("token_rejected"));
    let world = world_with(&mapping, json!({})).await;
    *world.provider.token_answer.lock().unwrap() = Some((
        StatusCode::from_u16(420).unwrap(),
        r#"{"error": "rate_limit", "error_description": "You have hit the rate limit.", "wait": 40}"#,
        None,
    ));
    for _ in 0..2 {
        let (status, body, headers) = get_json_and_headers(&url(&world), Some(TEST_TOKEN)).await;
        assert_eq!(
            (status, body["message"].clone()),
            (
                429,
                json!(
                    "the provider's token endpoint is rate-limiting token requests; it asked to wait 40 s"
                )
            )
        );
        let retry_after: i64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((38..=40).contains(&retry_after), "{retry_after}");
    }
    assert_eq!(world.provider.token_calls.load(Ordering::SeqCst), 1);
}

/// An OAuth token endpoint refuses credentials with a 400 or 401, or another 4xx in its own JSON;
/// a firewall's 403 page says nothing of them (a 502, the account not marked), where a JSON 403
/// (`unauthorized_client`) refuses them (the account marked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_json_answer_marks_the_account_on_a_4xx_other_than_400_and_401() {
    let world = world(json!({})).await;
    *world.provider.token_answer.lock().unwrap() = Some((
        StatusCode::FORBIDDEN,
        "<html><body>Access denied by the web application firewall</body></html>",
        None,
    ));
    let expected = json!({"statusCode": 502, "error": "Bad Gateway", "truto_is_remote_error": true,
        "message": "could not obtain an access token: the token endpoint answered HTTP 403 with no error of its own (not JSON), which is no refusal of the credentials (a firewall, an IP allowlist or a wrong token URL?)"});
    for _ in 0..2 {
        let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
        assert_eq!((status, body), (502, expected.clone()));
    }
    let world = self::world(json!({})).await;
    *world.provider.token_answer.lock().unwrap() = Some((
        StatusCode::FORBIDDEN,
        r#"{"error":"unauthorized_client","error_description":"The client is not allowed this grant."}"#,
        None,
    ));
    let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
    assert_eq!(
        (status, body["message"].clone()),
        (
            401,
            json!(
                "integrated account `acc` needs to be reconnected: token refresh refused: The client is not allowed this grant."
            )
        )
    );
}

/// `auth.token_rejected` reads a token endpoint's answer where the gateway's own reading is
/// wrong for the provider: a 500 it documents for dead credentials marks the account (OneLogin);
/// a JSON 422 it documents for a malformed request does not (HighLevel), and the caller gets the
/// provider's words; an answer the expression says nothing of keeps the default reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_rejected_overrides_the_default_reading_of_a_token_answer() {
    let mapping = MAPPING.replace(
        "  refresh_token: \"{{context.refresh_token}}\"\n",
        "  refresh_token: \"{{context.refresh_token}}\"\n  token_rejected: \"status = 500 and body.name = 'CredentialOwnerDeleted' ? true : (status = 422 ? false)\"\n",
    );
    assert_ne!(mapping, MAPPING);

    let world = world_with(&mapping, json!({})).await;
    *world.provider.token_answer.lock().unwrap() = Some((
        StatusCode::INTERNAL_SERVER_ERROR,
        r#"{"name": "CredentialOwnerDeleted", "message": "The user who created these credentials was deleted."}"#,
        None,
    ));
    let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
    assert_eq!(
        (status, body),
        (
            401,
            json!({"statusCode": 401, "error": "Unauthorized", "truto_is_remote_error": true,
            "message": "the provider refused to issue an access token (The user who created these credentials was deleted.); reconnect the integrated account",
            "raw_response": {"name": "CredentialOwnerDeleted", "message": "The user who created these credentials was deleted."}})
        )
    );
    let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
    assert_eq!(
        (status, body["message"].clone()),
        (
            401,
            json!(
                "integrated account `acc` needs to be reconnected: token refresh refused: The user who created these credentials was deleted."
            )
        )
    );
    assert_eq!(world.provider.token_calls.load(Ordering::SeqCst), 1);

    let world = world_with(&mapping, json!({})).await;
    *world.provider.token_answer.lock().unwrap() = Some((
        StatusCode::UNPROCESSABLE_ENTITY,
        r#"{"statusCode": 422, "message": ["refresh_token must be a string"], "error": "Unprocessable Entity"}"#,
        None,
    ));
    let expected = json!({"statusCode": 502, "error": "Bad Gateway", "truto_is_remote_error": true,
        "message": "could not obtain an access token: the token endpoint answered HTTP 422 (Unprocessable Entity), which the integration reads as no refusal of the credentials (`auth.token_rejected`)"});
    // Not marked: the second call is the same 502, not "needs to be reconnected".
    for _ in 0..2 {
        let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
        assert_eq!((status, body), (502, expected.clone()));
    }

    // Neither: a 500 with another body is an outage, as without the expression.
    let world = world_with(&mapping, json!({})).await;
    *world.provider.token_answer.lock().unwrap() = Some((
        StatusCode::INTERNAL_SERVER_ERROR,
        r#"{"name": "InternalError"}"#,
        None,
    ));
    let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
    assert_eq!(
        (status, body["message"].clone()),
        (502, json!("could not obtain an access token: HTTP 500"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_fresh_token_marks_the_account() {
    let world = world(json!({})).await;
    *world.provider.issue_bad_tokens.lock().unwrap() = true;
    let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
    assert_eq!(
        (
            status,
            body["message"].clone(),
            body["raw_response"].clone()
        ),
        (
            401,
            json!("invalid token"),
            json!({"message": "invalid token"})
        )
    );
    let (status, body) = get_json(&url(&world), Some(TEST_TOKEN)).await;
    assert_eq!(status, 401);
    assert_eq!(
        body["message"],
        "integrated account `acc` needs to be reconnected: the provider refused a freshly issued access token (HTTP 401)"
    );
    assert_eq!(world.provider.token_calls.load(Ordering::SeqCst), 1);
}

/// A store whose token leases are all taken (PostgreSQL's `store.token_leases` busy with slow
/// token calls): everything else as `MemoryStore`.
#[derive(Debug)]
struct BusyLeases(unigate_store::MemoryStore);

impl unigate_store::AccountStore for BusyLeases {
    fn get(&self, id: &str) -> Option<Arc<IntegratedAccount>> {
        self.0.get(id)
    }
    fn list(&self) -> Vec<Arc<IntegratedAccount>> {
        self.0.list()
    }
    fn modify(
        &self,
        id: &str,
        change: &mut unigate_store::Change<'_>,
    ) -> Result<Arc<IntegratedAccount>, unigate_store::StoreError> {
        self.0.modify(id, change)
    }
    fn create(&self, account: IntegratedAccount) -> Result<(), unigate_store::StoreError> {
        self.0.create(account)
    }
    fn delete(&self, id: &str) -> Result<(), unigate_store::StoreError> {
        self.0.delete(id)
    }
    fn lease_tokens<'a>(
        &'a self,
        _id: &'a str,
    ) -> unigate_store::StoreFuture<
        'a,
        Result<Option<Box<dyn unigate_store::TokenLease>>, unigate_store::StoreError>,
    > {
        Box::pin(async {
            Err(unigate_store::StoreError::Busy(
                "all 4 token-lease connections are held".to_owned(),
            ))
        })
    }
}

/// No lease to be had is the gateway being busy, not the provider failing nor the account
/// needing a reconnect: a 503 to retry, the account left as it was, the token endpoint not
/// called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_request_without_a_lease_is_a_503_to_retry() {
    let world = world(json!({})).await;
    let origin = world._server.origin.clone();
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: "oauth-example".into(),
        context: json!({"token_url": format!("{origin}/token"), "client_id": "cid", "client_secret": "csecret", "refresh_token": "r1"}),
        base_url: Some(origin),
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let store = Arc::new(BusyLeases(
        unigate_store::MemoryStore::new(vec![account]).unwrap(),
    ));
    let gateway = unigate_gateway::Gateway::assemble_with_store(
        catalog_with("oauth-example", MAPPING),
        store.clone(),
        unigate_upstream::UpstreamConfig::default(),
        unigate_engine::EngineConfig::default(),
        b"test-cursor-secret-0123456789",
        &[TEST_TOKEN.to_owned()],
        &[],
    )
    .unwrap();
    let running = unigate_tests::serve(gateway).await;
    let response = reqwest::Client::new()
        .get(format!(
            "{}/unified/user-directory/users?integrated_account_id=acc",
            running.origin
        ))
        .bearer_auth(TEST_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["message"],
        "could not obtain an access token now: all 4 token-lease connections are held; retry shortly"
    );
    assert_eq!(world.provider.token_calls.load(Ordering::SeqCst), 0);
    let account = unigate_store::AccountStore::get(&*store, "acc").unwrap();
    assert_eq!(account.status, unigate_store::AccountStatus::Active);
}
