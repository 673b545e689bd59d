//! `hmac_signature` end to end: the Duo mapping walks two pages against a stub, and each request
//! the stub received carries a `Date` near now and the Basic signature Duo would compute from that
//! very request (its method, host, path and query as received), recomputed here independently of
//! the gateway's signing code.

use std::sync::Arc;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::json;
use unigate_engine::EngineConfig;
use unigate_gateway::Gateway;
use unigate_store::{IntegratedAccount, MemoryStore};
use unigate_tests::{Scripted, Stub, TEST_TOKEN, catalog_of, get_json, serve};
use unigate_upstream::UpstreamConfig;

const SECRET: &str = "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep";
const IKEY: &str = "DIWJ8X6AEYOR5OMC6TQ1";

/// Duo's canonical query: RFC 3986 unreserved characters kept, everything else `%XX`, pairs
/// sorted, `k=v` joined by `&` (duo_client_python `canon_params`).
fn duo_query(pairs: &[(String, String)]) -> String {
    let escape = |text: &str| -> String {
        text.bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (byte as char).to_string()
                }
                _ => format!("%{byte:02X}"),
            })
            .collect()
    };
    let mut escaped: Vec<String> = pairs
        .iter()
        .map(|(name, value)| format!("{}={}", escape(name), escape(value)))
        .collect();
    escaped.sort();
    escaped.join("&")
}

#[tokio::test]
async fn every_duo_request_carries_the_signature_of_that_request() {
    let stub = Stub::start().await;
    let page = |users: serde_json::Value, next: serde_json::Value| {
        Scripted {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::to_vec(&json!({"stat": "OK", "response": users, "metadata": {"next_offset": next, "total_objects": 3}})).unwrap(),
        for_request: None,
    }
    };
    stub.script(vec![
        page(
            json!([{"user_id": "DU1", "username": "ada", "status": "active"}, {"user_id": "DU2", "username": "alan", "status": "disabled"}]),
            json!(2),
        ),
        page(
            json!([{"user_id": "DU3", "username": "grace", "status": "bypass"}]),
            json!(null),
        ),
    ]);
    let account = IntegratedAccount {
        id: "acme-duo".into(),
        integration: "duo".into(),
        context: json!({"host": "api-xxxxxxxx.duosecurity.com", "integration_key": IKEY, "secret_key": SECRET}),
        base_url: Some(format!("{}/admin/v1", stub.origin())),
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let gateway = Gateway::assemble_with_store(
        catalog_of(&["duo".to_owned()]),
        Arc::new(MemoryStore::new(vec![account]).unwrap()),
        UpstreamConfig::default(),
        // With `total` known, the walk fetches ahead no further than the last page: the
        // stub's script is the whole conversation.
        EngineConfig::default(),
        b"signing-test-cursor-secret-0123",
        &[TEST_TOKEN.to_owned()],
        &[],
    )
    .unwrap();
    let running = serve(gateway).await;
    let url = format!(
        "{}/unified/user-directory/users?integrated_account_id=acme-duo&limit=2&truto_ignore_limit=true&truto_ignore_remote_data=true",
        running.origin
    );
    let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["DU1", "DU2", "DU3"]);

    let received = stub.received();
    let queries: Vec<_> = received
        .iter()
        .map(|request| request.query.clone())
        .collect();
    assert_eq!(received.len(), 2, "{queries:?}");
    let now = std::time::SystemTime::now();
    for request in &received {
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(have, _)| have == name)
                .map(|(_, value)| value.clone())
                .unwrap_or_else(|| panic!("no {name} header"))
        };
        let date = header("date");
        assert!(date.ends_with(" -0000"), "{date}");
        let sent =
            httpdate::parse_http_date(&date.replace(" -0000", " GMT")).expect("an RFC 2822 date");
        let skew = now.duration_since(sent).unwrap_or_default();
        assert!(skew.as_secs() < 60, "{date}");
        let host = stub.address.ip().to_string();
        let canonical = format!(
            "{date}\nGET\n{host}\n{}\n{}",
            request.path,
            duo_query(&request.query)
        );
        let mut mac = Hmac::<sha2::Sha512>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(canonical.as_bytes());
        let signature: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{IKEY}:{signature}"))
        );
        assert_eq!(header("authorization"), expected, "{canonical}");
    }
    assert_eq!(
        received[1].query,
        [
            ("limit".to_owned(), "2".to_owned()),
            ("offset".to_owned(), "2".to_owned())
        ]
    );
}
