//! Fault injection: a scriptable provider on 127.0.0.1 (raw TCP, so it can misbehave in ways a
//! web framework would not) and the caller's view of every fault — the exact status and
//! envelope, how many provider calls were made, how long the gateway chose to wait (a recording
//! clock, no real sleeping), and that the gateway serves the next request normally.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use unigate_engine::{EngineConfig, RecordingClock, RetryPolicy};
use unigate_store::IntegratedAccount;
use unigate_tests::{RunningGateway, TEST_TOKEN, catalog_with, get_json, serve_with};
use unigate_upstream::UpstreamConfig;

const MAPPING: &str = r#"name: Faulty
docs: https://example.test/docs
base_url: "https://api.example.test"
auth: { kind: bearer, token: "{{context.token}}" }
rate_limit:
  limit: "$number(headers.`x-ratelimit-limit`)"
  remaining: "$number(headers.`x-ratelimit-remaining`)"
resources:
  users:
    list: { path: /users, records: users }
    get: { path: "/users/{{id}}", records: "$" }
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

const OK_BODY: &str = r#"{"users":[{"id":"u1"}]}"#;

/// What the provider does with one request.
#[derive(Debug, Clone)]
enum Act {
    Answer {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// Never answers.
    Hang,
    /// Closes the connection without a byte.
    Reset,
    /// Declares more bytes than it sends, then closes.
    Cut { declared: usize, body: Vec<u8> },
    /// Sends the body one byte at a time.
    Trickle { body: Vec<u8>, every: Duration },
}

fn ok() -> Act {
    Act::Answer {
        status: 200,
        headers: vec![],
        body: OK_BODY.as_bytes().to_vec(),
    }
}

fn status(code: u16, body: &str) -> Act {
    Act::Answer {
        status: code,
        headers: vec![],
        body: body.as_bytes().to_vec(),
    }
}

struct Provider {
    origin: String,
    calls: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

async fn provider(script: Vec<Act>) -> Provider {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let script = Arc::new(Mutex::new(script.into_iter()));
    let counter = calls.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let script = script.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                // One request per connection is enough: read the head, then act.
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let act = script.lock().unwrap().next().unwrap_or_else(ok);
                let write_head = |status: u16, headers: &[(&str, String)], length: usize| {
                    let mut text = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {length}\r\nconnection: close\r\n"
                    );
                    for (name, value) in headers {
                        text.push_str(&format!("{name}: {value}\r\n"));
                    }
                    text.push_str("\r\n");
                    text.into_bytes()
                };
                match act {
                    Act::Answer {
                        status,
                        headers,
                        body,
                    } => {
                        let _ = socket
                            .write_all(&write_head(status, &headers, body.len()))
                            .await;
                        let _ = socket.write_all(&body).await;
                    }
                    Act::Hang => tokio::time::sleep(Duration::from_secs(30)).await,
                    Act::Reset => {}
                    Act::Cut { declared, body } => {
                        let _ = socket.write_all(&write_head(200, &[], declared)).await;
                        let _ = socket.write_all(&body).await;
                    }
                    Act::Trickle { body, every } => {
                        let _ = socket.write_all(&write_head(200, &[], body.len())).await;
                        for byte in body {
                            if socket.write_all(&[byte]).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(every).await;
                        }
                    }
                }
                let _ = socket.shutdown().await;
            });
        }
    });
    Provider {
        origin,
        calls,
        _task: task,
    }
}

struct World {
    provider: Provider,
    gateway: RunningGateway,
    clock: Arc<RecordingClock>,
}

/// Account `acc` of `integration` at the provider's `origin`, its token a secret the answers
/// must never show.
fn account(integration: &str, origin: &str) -> IntegratedAccount {
    IntegratedAccount {
        id: "acc".into(),
        integration: integration.into(),
        context: json!({"token": "super-secret-token"}),
        base_url: Some(origin.to_owned()),
        status: Default::default(),
        last_error: None,
        mapping: None,
    }
}

async fn world(script: Vec<Act>) -> World {
    world_of(MAPPING, script).await
}

async fn world_of(mapping: &str, script: Vec<Act>) -> World {
    let provider = provider(script).await;
    let catalog = catalog_with("faulty", mapping);
    let account = account("faulty", &provider.origin);
    let clock = Arc::new(RecordingClock {
        now: 1_700_000_000,
        ..RecordingClock::default()
    });
    let config = EngineConfig {
        retry: RetryPolicy {
            max_retries: 2,
            ..RetryPolicy::default()
        },
        clock: clock.clone(),
        ..EngineConfig::default()
    };
    let upstream = UpstreamConfig {
        timeout: Duration::from_millis(400),
        ..UpstreamConfig::default()
    };
    let gateway = serve_with(catalog, vec![account], upstream, config).await;
    World {
        provider,
        gateway,
        clock,
    }
}

async fn call(world: &World) -> (u16, Value, reqwest::header::HeaderMap) {
    let url = format!(
        "{}/unified/user-directory/users?integrated_account_id=acc",
        world.gateway.origin
    );
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(TEST_TOKEN)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut body: Value = response.json().await.unwrap();
    assert!(
        !body.to_string().contains("super-secret-token"),
        "a credential leaked: {body}"
    );
    // The envelope's request id is the answer's; the rest is compared exactly.
    if let Some(id) = body.as_object_mut().and_then(|o| o.remove("request_id")) {
        assert_eq!(id.as_str(), headers["x-request-id"].to_str().ok());
    }
    (status, body, headers)
}

/// After any fault, the same gateway answers the next request normally.
async fn still_serves(world: &World) {
    let (status, body) = get_json(
        &format!(
            "{}/unified/user-directory/users?integrated_account_id=acc",
            world.gateway.origin
        ),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(
        (status, body["result"][0]["id"].clone()),
        (200, json!("u1")),
        "{body}"
    );
}

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn rate_limit_with_a_short_retry_after_is_waited_out() {
    let world = world(vec![
        Act::Answer {
            status: 429,
            headers: vec![("retry-after", "2".into())],
            body: br#"{"message":"slow down"}"#.to_vec(),
        },
        ok(),
    ])
    .await;
    let (status, body, _) = call(&world).await;
    assert_eq!(
        (status, body["result"][0]["id"].clone()),
        (200, json!("u1"))
    );
    assert_eq!(world.provider.calls.load(Ordering::SeqCst), 2);
    assert_eq!(world.clock.slept(), vec![Duration::from_secs(2)]);
    still_serves(&world).await;
}

/// A 429 is a wait whatever the file's `is_limited` names (Salesforce documents its limit as a 403,
/// Boomi as a 503): a proxy or a gateway in front of the provider answers 429 without asking it.
#[tokio::test]
async fn a_bare_429_is_a_wait_where_the_file_names_another_signal() {
    let mapping = MAPPING.replacen(
        "rate_limit:\n",
        "rate_limit:\n  is_limited: \"status = 403 and body.errorCode = 'REQUEST_LIMIT_EXCEEDED'\"\n",
        1,
    );
    let world = world_of(
        &mapping,
        vec![
            Act::Answer {
                status: 429,
                headers: vec![("retry-after", "3".into())],
                body: b"Too Many Requests".to_vec(),
            },
            Act::Answer {
                status: 403,
                headers: vec![],
                body: br#"{"errorCode":"REQUEST_LIMIT_EXCEEDED"}"#.to_vec(),
            },
            ok(),
        ],
    )
    .await;
    let (status, body, _) = call(&world).await;
    assert_eq!(
        (status, body["result"][0]["id"].clone()),
        (200, json!("u1")),
        "{body}"
    );
    assert_eq!(world.provider.calls.load(Ordering::SeqCst), 3);
    assert_eq!(world.clock.slept()[0], Duration::from_secs(3));
    still_serves(&world).await;
}

#[tokio::test]
async fn rate_limit_beyond_the_cap_goes_back_to_the_caller_with_normalized_headers() {
    let world = world(vec![Act::Answer {
        status: 429,
        headers: vec![
            ("retry-after", "120".into()),
            ("x-ratelimit-limit", "600".into()),
            ("x-ratelimit-remaining", "0".into()),
        ],
        body: br#"{"message":"API rate limit exceeded"}"#.to_vec(),
    }])
    .await;
    let (status, body, headers) = call(&world).await;
    assert_eq!(
        (status, body),
        (
            429,
            json!({"statusCode": 429, "error": "Too Many Requests", "message": "API rate limit exceeded",
                     "truto_is_remote_error": true, "raw_response": {"message": "API rate limit exceeded"}})
        )
    );
    assert_eq!(header(&headers, "retry-after").as_deref(), Some("120"));
    assert_eq!(header(&headers, "ratelimit-limit").as_deref(), Some("600"));
    assert_eq!(
        header(&headers, "ratelimit-remaining").as_deref(),
        Some("0")
    );
    assert_eq!(header(&headers, "ratelimit-reset").as_deref(), Some("120"));
    assert_eq!(world.provider.calls.load(Ordering::SeqCst), 1);
    assert!(world.clock.slept().is_empty());

    // The account's next call, within those two minutes, is not sent: the provider already said
    // when it would take one again.
    let (status, body, headers) = call(&world).await;
    assert_eq!(
        (status, body),
        (
            429,
            json!({"statusCode": 429, "error": "Too Many Requests",
                   "message": "the provider rate-limited this account on an earlier call and asked to wait 120 s more; the call was not sent",
                   "truto_is_remote_error": true})
        )
    );
    assert_eq!(header(&headers, "retry-after").as_deref(), Some("120"));
    assert_eq!(world.provider.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_call_made_while_the_provider_asked_to_wait_waits_first() {
    let world = world(vec![
        Act::Answer {
            status: 429,
            headers: vec![("retry-after", "8".into())],
            body: br#"{"message":"slow down"}"#.to_vec(),
        },
        ok(),
        ok(),
    ])
    .await;
    let (status, _, _) = call(&world).await;
    assert_eq!(status, 200);
    // The recording clock does not sleep, so the second call comes while the 8 s still run, as
    // a concurrent call would: it waits out what is left before it is sent, where it used to be
    // sent at once and collect its own 429.
    let (status, _, _) = call(&world).await;
    assert_eq!(status, 200);
    let slept = world.clock.slept();
    assert_eq!(slept.len(), 2, "{slept:?}");
    assert_eq!(slept[0], Duration::from_secs(8));
    // What is left of the 8 s: the calls in between take milliseconds (3 s of slack for a busy
    // machine).
    assert!(
        slept[1] > Duration::from_secs(5) && slept[1] < Duration::from_secs(8),
        "{slept:?}"
    );
    assert_eq!(world.provider.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn rate_limit_without_retry_after_backs_off_then_answers_429() {
    let limited = || status(429, r#"{"error":"rate_limited"}"#);
    let world = world(vec![limited(), limited(), limited()]).await;
    let (status, body, headers) = call(&world).await;
    assert_eq!(
        (status, body["message"].clone()),
        (429, json!("rate_limited"))
    );
    assert!(header(&headers, "retry-after").is_some());
    assert_eq!(world.provider.calls.load(Ordering::SeqCst), 3);
    let waits = world.clock.slept();
    assert_eq!(waits.len(), 2);
    assert!(
        waits[0] <= Duration::from_millis(200) && waits[1] <= Duration::from_millis(400),
        "{waits:?}"
    );
    still_serves(&world).await;
}

#[tokio::test]
async fn a_500_then_200_is_retried() {
    let world = world(vec![status(500, r#"{"detail":"boom"}"#), ok()]).await;
    let (status, _, _) = call(&world).await;
    assert_eq!(status, 200);
    assert_eq!(world.provider.calls.load(Ordering::SeqCst), 2);
    assert_eq!(world.clock.slept().len(), 1);
}

#[tokio::test]
async fn a_500_beyond_the_retry_budget_reaches_the_caller_as_a_remote_502() {
    let boom = || status(500, r#"{"detail":"boom"}"#);
    let world = world(vec![boom(), boom(), boom(), ok()]).await;
    let (status, body, _) = call(&world).await;
    assert_eq!(
        (status, body),
        (
            502,
            json!({"statusCode": 502, "error": "Bad Gateway", "message": "boom", "truto_is_remote_error": true,
                     "remote_status": 500, "raw_response": {"detail": "boom"}})
        )
    );
    assert_eq!(world.provider.calls.load(Ordering::SeqCst), 3);
    still_serves(&world).await;
}

#[tokio::test]
async fn a_529_overloaded_then_200_is_retried() {
    let world = world(vec![
        status(
            529,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ),
        ok(),
    ])
    .await;
    let (status, _, _) = call(&world).await;
    assert_eq!(status, 200);
    assert_eq!(world.provider.calls.load(Ordering::SeqCst), 2);
    assert_eq!(world.clock.slept().len(), 1);
}

#[tokio::test]
async fn a_503_then_200_is_retried() {
    let world = world(vec![status(503, "{}"), ok()]).await;
    let (status, _, _) = call(&world).await;
    assert_eq!(status, 200);
    assert_eq!(world.provider.calls.load(Ordering::SeqCst), 2);
    assert_eq!(world.clock.slept().len(), 1);
}

#[tokio::test]
async fn a_503_storm_beyond_the_retry_budget_is_a_502() {
    let storm = || status(503, r#"{"message":"unavailable"}"#);
    let world = world(vec![storm(), storm(), storm(), storm()]).await;
    let (status, body, _) = call(&world).await;
    assert_eq!(
        (
            status,
            body["remote_status"].clone(),
            body["message"].clone()
        ),
        (502, json!(503), json!("unavailable"))
    );
    assert_eq!(world.provider.calls.load(Ordering::SeqCst), 3);
    still_serves(&world).await;
}

#[tokio::test]
async fn a_hanging_provider_is_a_504_and_not_retried() {
    let world = world(vec![Act::Hang]).await;
    let (status, body, _) = call(&world).await;
    assert_eq!(
        (status, body),
        (
            504,
            json!({"statusCode": 504, "error": "Gateway Timeout", "truto_is_remote_error": true,
                     "message": "the provider did not answer within 400ms"})
        )
    );
    assert_eq!(world.provider.calls.load(Ordering::SeqCst), 1);
    still_serves(&world).await;
}

#[tokio::test]
async fn a_reset_connection_is_retried_then_a_502() {
    let world = world(vec![Act::Reset, Act::Reset, Act::Reset]).await;
    let (status, body, _) = call(&world).await;
    assert_eq!(
        (status, body["truto_is_remote_error"].clone()),
        (502, json!(true)),
        "{body}"
    );
    assert_eq!(world.provider.calls.load(Ordering::SeqCst), 3);
    still_serves(&world).await;
}

#[tokio::test]
async fn a_204_no_content_is_an_empty_last_page() {
    let world = world(vec![status(204, "")]).await;
    let (status, body, _) = call(&world).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"result": [], "next_cursor": null, "result_count": 0, "prev_cursor": null})
        )
    );
    assert_eq!(world.provider.calls.load(Ordering::SeqCst), 1);
}

/// A UTF-8 byte order mark before the JSON (some .NET and Windows servers write one) is not part
/// of the JSON text: RFC 8259 lets a parser ignore it, and the page, its `remote_data` and an
/// error body read the same as without it.
#[tokio::test]
async fn a_byte_order_mark_before_the_json_is_read_past() {
    let world = world(vec![
        status(
            200,
            "\u{feff}{\"users\":[{\"id\":\"u1\",\"name\":\"Ada\"}]}",
        ),
        status(400, "\u{feff}{\"message\":\"bad filter\"}"),
    ])
    .await;
    let (status, body, _) = call(&world).await;
    assert_eq!(
        (status, body["result"][0].clone()),
        (
            200,
            json!({"id": "u1", "remote_data": {"id": "u1", "name": "Ada"}})
        ),
        "{body}"
    );
    let (status, body, _) = call(&world).await;
    assert_eq!(
        (
            status,
            body["message"].clone(),
            body["raw_response"].clone()
        ),
        (400, json!("bad filter"), json!({"message": "bad filter"})),
        "{body}"
    );
}

#[tokio::test]
async fn malformed_truncated_huge_and_deep_bodies_are_502s_that_say_so() {
    let deep = format!("{}1{}", "[".repeat(2_000), "]".repeat(2_000));
    let cases: Vec<(Act, &str)> = vec![
        (
            status(200, r#"{"users": [{"id": "u1"}"#),
            "the provider's response is not valid JSON",
        ),
        (
            Act::Cut {
                declared: 1_000,
                body: br#"{"users": [{"id""#.to_vec(),
            },
            "the provider connection failed mid-response",
        ),
        (
            status(200, &deep),
            "the provider's response is not valid JSON (recursion limit exceeded",
        ),
        (
            Act::Answer {
                status: 200,
                headers: vec![],
                body: vec![b' '; 50 * 1024 * 1024],
            },
            "the provider's response is larger than the 33554432-byte limit",
        ),
    ];
    for (act, message) in cases {
        let world = world(vec![act]).await;
        let (status, body, _) = call(&world).await;
        assert_eq!(status, 502, "{body}");
        assert!(
            body["message"].as_str().unwrap().starts_with(message),
            "{message}: {body}"
        );
        assert_eq!(body["truto_is_remote_error"], true);
        assert_eq!(world.provider.calls.load(Ordering::SeqCst), 1);
        still_serves(&world).await;
    }
}

/// A mapping's own `$error` names who is at fault by where it is raised: the caller's query (a
/// 400, no provider call), the provider's answer (a 502, remote); any other failure of an
/// expression is the mapping's (a 500).
#[tokio::test]
async fn a_mappings_own_error_is_the_callers_or_the_providers_by_where_it_is_raised() {
    let refusing = MAPPING
        .replace(
            "    list: { path: /users, records: users }",
            "    list:\n      path: /users\n      records: '$count(users) < 2 ? users : $error(\"more than one user: the next page is not documented\")'",
        )
        .replace(
            "        resource: users.list\n        response_mapping: '{ \"id\": id }'",
            "        resource: users.list\n        native_filters: [email]\n        query_mapping: '$exists(email) ? $error(\"no email filter on this plan\")'\n        response_mapping: '{ \"id\": $number(id) + 1 }'",
        );
    let two = r#"{"users":[{"id":"u1"},{"id":"u2"}]}"#;
    let world = world_of(&refusing, vec![status(200, two), ok()]).await;
    let (code, body, _) = call(&world).await;
    assert_eq!(
        (code, body),
        (
            502,
            json!({"statusCode": 502, "error": "Bad Gateway", "truto_is_remote_error": true,
                "message": "integration `faulty` answered what the gateway cannot serve: more than one user: the next page is not documented"})
        )
    );
    let url = format!(
        "{}/unified/user-directory/users?integrated_account_id=acc&email=a@b.c",
        world.gateway.origin
    );
    let (code, mut body) = get_json(&url, Some(TEST_TOKEN)).await;
    body.as_object_mut().unwrap().remove("request_id");
    assert_eq!(
        (code, body),
        (
            400,
            json!({"statusCode": 400, "error": "Bad Request",
                "message": "integration `faulty` cannot send this query: no email filter on this plan"})
        )
    );
    assert_eq!(world.provider.calls.load(Ordering::SeqCst), 1);
    // Not a refusal: `$number` of a text that is no number fails the mapping itself.
    let (code, body, _) = call(&world).await;
    assert_eq!(code, 500, "{body}");
    assert!(
        body["message"].as_str().unwrap().starts_with(
            "the `faulty` mapping failed on the provider's response: `response_mapping` failed"
        ),
        "{body}"
    );
}

#[tokio::test]
async fn a_slow_trickle_past_the_total_timeout_is_a_504() {
    let world = world(vec![Act::Trickle {
        body: OK_BODY.as_bytes().to_vec(),
        every: Duration::from_millis(50),
    }])
    .await;
    let (status, body, _) = call(&world).await;
    assert_eq!(
        (status, body["statusCode"].clone()),
        (504, json!(504)),
        "{body}"
    );
    assert_eq!(world.provider.calls.load(Ordering::SeqCst), 1);
    still_serves(&world).await;
}

/// A provider that answers every request with the same page, one that says another follows:
/// by a cursor (`next`), or full at its page size by offset (the walk prefetches those).
const REPEATING: &str = r#"name: Repeating
docs: https://example.test/docs
base_url: "https://api.example.test"
auth: { kind: bearer, token: "{{context.token}}" }
pagination:
  style: STYLE
  page_size_param: limit
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

async fn repeating_world(style: &str, page: &str) -> World {
    let same = || Act::Answer {
        status: 200,
        headers: vec![],
        body: page.as_bytes().to_vec(),
    };
    let provider = provider((0..16).map(|_| same()).collect()).await;
    let catalog = catalog_with("repeating", &REPEATING.replace("STYLE", style));
    let account = account("repeating", &provider.origin);
    let gateway = serve_with(
        catalog,
        vec![account],
        UpstreamConfig::default(),
        EngineConfig::default(),
    )
    .await;
    World {
        provider,
        gateway,
        clock: Arc::new(RecordingClock::default()),
    }
}

#[tokio::test]
async fn a_provider_repeating_a_page_is_a_502_on_a_walk_on_a_cursor_and_on_prefetched_pages() {
    let looping = json!({"statusCode": 502, "error": "Bad Gateway",
        "message": "the provider returned the same page twice; stopping instead of looping",
        "truto_is_remote_error": true});
    let url = |world: &World, query: &str| {
        format!(
            "{}/unified/user-directory/users?integrated_account_id=acc&limit=1{query}",
            world.gateway.origin
        )
    };
    // The identical-page guard runs before the repeated-cursor one, so a cursor page says it too.
    for (style, page) in [
        (
            "cursor\n  cursor_param: after\n  next_cursor: next",
            r#"{"users":[{"id":"u1"}],"next":"c2"}"#,
        ),
        (
            "offset\n  offset_param: offset",
            r#"{"users":[{"id":"u1"}]}"#,
        ),
    ] {
        let world = repeating_world(style, page).await;
        // One page: nothing to compare it with, so it is answered with a cursor.
        let (status, first) = get_json(&url(&world, ""), Some(TEST_TOKEN)).await;
        assert_eq!(status, 200, "{style}: {first}");
        assert_eq!(
            first["result"],
            json!([{"id": "u1", "remote_data": {"id": "u1"}}])
        );
        let cursor = first["next_cursor"]
            .as_str()
            .expect("a next cursor")
            .to_owned();
        // Its next page, the same bytes again, through the cursor.
        let (status, body) = get_json(
            &url(&world, &format!("&next_cursor={cursor}")),
            Some(TEST_TOKEN),
        )
        .await;
        assert_eq!(
            (status, body),
            (502, looping.clone()),
            "{style}: through the cursor"
        );
        // The whole walk, in one call (offset pages are prefetched four at a time).
        let (status, body) =
            get_json(&url(&world, "&truto_ignore_limit=true"), Some(TEST_TOKEN)).await;
        assert_eq!((status, body), (502, looping.clone()), "{style}: the walk");
    }
}

/// A provider that quotes the credential it was sent (an "invalid token …" message, a debug
/// echo of the request's headers, even a key) has it replaced in what the caller gets: the
/// message, and the body passed on as `raw_response`, JSON or text.
#[tokio::test]
async fn a_provider_error_quoting_the_credential_reaches_the_caller_without_it() {
    let quoting = r#"{"message":"token super-secret-token is not valid","request":{"headers":{"authorization":"Bearer super-secret-token"}},"super-secret-token":true}"#;
    let quoted = world(vec![status(401, quoting)]).await;
    let (code, body, _) = call(&quoted).await;
    assert_eq!(
        (code, body),
        (
            401,
            json!({
                "statusCode": 401,
                "error": "Unauthorized",
                "message": "token [redacted] is not valid",
                "truto_is_remote_error": true,
                "raw_response": {
                    "message": "token [redacted] is not valid",
                    "request": {"headers": {"authorization": "[redacted]"}},
                    "[redacted]": true
                }
            })
        )
    );
    // The refused key marks the account (what the admin API shows is cleaned too), and the
    // provider is not asked again.
    let (code, body, _) = call(&quoted).await;
    assert_eq!(
        (code, body),
        (
            401,
            json!({
                "statusCode": 401,
                "error": "Unauthorized",
                "message": "integrated account `acc` needs to be reconnected: the provider refused the account's credentials (HTTP 401: token [redacted] is not valid)",
                "truto_is_remote_error": true
            })
        )
    );
    assert_eq!(quoted.provider.calls.load(Ordering::SeqCst), 1);

    // Text past the retries: a 502 whose body is the text, cleaned.
    let text = "upstream failed for Authorization: Bearer super-secret-token";
    let quoted = world(vec![
        status(500, text),
        status(500, text),
        status(500, text),
    ])
    .await;
    let (code, body, _) = call(&quoted).await;
    assert_eq!(code, 502, "{body}");
    assert_eq!(
        body["raw_response"],
        json!("upstream failed for Authorization: [redacted]")
    );
    assert_eq!(quoted.provider.calls.load(Ordering::SeqCst), 3);

    // One record (`GET …/users/{id}`) likewise.
    let quoted = world(vec![status(403, quoting)]).await;
    let (code, body) = get_json(
        &format!(
            "{}/unified/user-directory/users/u1?integrated_account_id=acc",
            quoted.gateway.origin
        ),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(!body.to_string().contains("super-secret-token"), "{body}");
    assert_eq!(body["message"], "token [redacted] is not valid");
    assert_eq!(
        body["raw_response"]["request"],
        json!({"headers": {"authorization": "[redacted]"}})
    );
    // A 403 is a permission, not a refused key: the account is not marked.
    still_serves(&quoted).await;
}

/// Credentials that travel in the request body (auth kind `body`, LastPass's provhash) are
/// credentials all the same: a refusal the mapping names marks the account, and a provider that
/// quotes the value has it replaced in what the caller gets.
#[tokio::test]
async fn a_refused_body_credential_marks_the_account_and_is_never_quoted() {
    let mapping = MAPPING
        .replace(
            r#"auth: { kind: bearer, token: "{{context.token}}" }"#,
            "auth:\n  kind: body\n  credentials: [\"{{context.token}}\"]\n  rejected: \"$type(body) = 'string' and $contains(body, 'Authorization Error')\"",
        )
        .replace(
            "list: { path: /users, records: users }",
            "list: { method: POST, path: /users, records: users, body: '{\"key\": $context.token}' }",
        );
    let world = world_of(
        &mapping,
        vec![
            ok(),
            status(200, "Authorization Error: super-secret-token is not a key"),
        ],
    )
    .await;
    // A page is a page: the expression never matches parsed JSON.
    let (code, body, _) = call(&world).await;
    assert_eq!(
        (code, body),
        (
            200,
            json!({"result": [{"id": "u1", "remote_data": {"id": "u1"}}], "next_cursor": null,
                "prev_cursor": null, "result_count": 1})
        )
    );
    let (code, body, _) = call(&world).await;
    assert_eq!(
        (code, body),
        (
            401,
            json!({
                "statusCode": 401,
                "error": "Unauthorized",
                "message": "the provider refused the account's credentials (HTTP 200: Authorization Error: [redacted] is not a key)",
                "truto_is_remote_error": true,
                "raw_response": "Authorization Error: [redacted] is not a key"
            })
        )
    );
    let (code, body, _) = call(&world).await;
    assert_eq!(
        (code, body),
        (
            401,
            json!({
                "statusCode": 401,
                "error": "Unauthorized",
                "message": "integrated account `acc` needs to be reconnected: the provider refused the account's credentials (HTTP 200: Authorization Error: [redacted] is not a key)",
                "truto_is_remote_error": true
            })
        )
    );
    assert_eq!(world.provider.calls.load(Ordering::SeqCst), 2);
}
