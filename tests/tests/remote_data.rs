//! `remote_data` as the provider sent it: a record the gateway does not look inside is written
//! once, its unified fields straight from the mapping and its `remote_data` copied from the
//! provider's bytes (compacted when the provider pretty-prints), so numbers beyond what a double
//! holds and `\u` escapes come out exactly as they went in. A call that makes the gateway look
//! inside the records (here `truto_exclude_fields`) goes through the parsed tree instead. The
//! assertions are on the answer's text, the bytes a caller receives.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::routing::get;
use serde_json::{Value, json};
use unigate_engine::EngineConfig;
use unigate_store::IntegratedAccount;
use unigate_tests::{
    TEST_TOKEN, catalog_with, get_json, list_text_of_one_page, serve_with, spawn_provider,
};
use unigate_upstream::UpstreamConfig;

const MAPPING: &str = r#"name: Pretty
docs: https://example.test/docs
base_url: "https://api.example.test"
auth: { kind: bearer, token: "{{context.token}}" }
resources:
  users:
    list: { path: /users, records: data.users }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: '{ "id": id, "name": name, "emails": [{"email": email}] }'
"#;

/// A pretty-printed page whose records hold an integer no double holds, a `1.50`, escapes and
/// spaces inside strings.
const PAGE: &str = "{\n  \"data\": {\n    \"users\": [\n      {\n        \"id\": \"u1\",\n        \"name\": \"Z\\u00fcrich  Team\",\n        \"email\": \"a@x.test\",\n        \"seq\": 12345678901234567890123,\n        \"price\": 1.50,\n        \"note\": \"say \\\"hi\\\"\\n\"\n      },\n      { \"id\": \"u2\", \"name\": \"B\", \"email\": \"b@x.test\", \"seq\": 2, \"price\": 0.5, \"note\": \"\" }\n    ]\n  },\n  \"total\": 2\n}";

async fn answer(query: &str) -> (u16, String) {
    list_text_of_one_page("pretty", MAPPING, PAGE.as_bytes().to_vec(), query).await
}

#[tokio::test]
async fn remote_data_is_the_providers_bytes_compacted() {
    let (status, text) = answer("").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        text,
        concat!(
            r#"{"result":["#,
            r#"{"id":"u1","name":"Zürich  Team","emails":[{"email":"a@x.test"}],"remote_data":{"id":"u1","name":"Z\u00fcrich  Team","email":"a@x.test","seq":12345678901234567890123,"price":1.50,"note":"say \"hi\"\n"}},"#,
            r#"{"id":"u2","name":"B","emails":[{"email":"b@x.test"}],"remote_data":{"id":"u2","name":"B","email":"b@x.test","seq":2,"price":0.5,"note":""}}"#,
            r#"],"next_cursor":null,"result_count":2,"prev_cursor":null}"#
        )
    );
}

#[tokio::test]
async fn every_streamed_record_is_one_line() {
    let (status, text) = answer("truto_response_format=stream").await;
    assert_eq!(status, 200, "{text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["remote_data"]["note"], json!("say \"hi\"\n"));
    assert_eq!(lines[1]["remote_data"]["price"], json!(0.5));
}

#[tokio::test]
async fn records_the_gateway_looks_inside_go_through_the_tree() {
    let (status, text) = answer("truto_exclude_fields=remote_data.note,emails").await;
    assert_eq!(status, 200, "{text}");
    // Parsed and re-encoded: the big integer as the nearest double, `1.50` as `1.5`.
    assert!(
        text.starts_with(
            r#"{"result":[{"id":"u1","name":"Zürich  Team","remote_data":{"id":"u1","name":"Zürich  Team","email":"a@x.test","seq":1.2345678901234568e+22,"price":1.5}},"#
        ),
        "{text}"
    );
}

/// A list whose mapping gives a subset of the model's fields (`partial: true`) says so after the
/// envelope's other keys, in every format built from the mapping (on both the text and the tree
/// path), and never on a raw answer, whose records are the provider's.
#[tokio::test]
async fn a_partial_list_says_so_except_in_raw_answers() {
    let partial = MAPPING.replace(
        "        resource: users.list\n",
        "        resource: users.list\n        partial: true\n",
    );
    assert_ne!(partial, MAPPING);
    let answer = async |query: &str| {
        list_text_of_one_page("pretty", &partial, PAGE.as_bytes().to_vec(), query).await
    };
    for query in [
        "",
        "truto_exclude_fields=emails",
        "truto_response_format=normalized",
    ] {
        let (status, text) = answer(query).await;
        assert_eq!(status, 200, "{text}");
        assert!(
            text.ends_with(
                r#""next_cursor":null,"result_count":2,"prev_cursor":null,"is_partial_response":true}"#
            ),
            "{query}: {text}"
        );
    }
    let (status, text) = answer("truto_response_format=raw").await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.ends_with(r#""next_cursor":null,"result_count":2,"prev_cursor":null}"#),
        "{text}"
    );
}

/// A 64-bit id beyond 2^53 as a JSON number: the mapping reads its digits (a double would round
/// 1234567890123456789 to 1234567890123456800), on the fast path over the pruned record, on the
/// JSONata engine over the whole one and on the tree route alike; `remote_data` keeps the number.
#[tokio::test]
async fn an_integer_beyond_two_to_the_53_keeps_its_digits() {
    let page = r#"{"data": {"users": [
        {"id": 1234567890123456789, "name": "A", "email": "a@x.test", "team": {"id": -9007199254740993}},
        {"id": 9007199254740992, "name": "B", "email": "b@x.test", "team": {"id": 7}}
    ]}}"#;
    let mappings = [
        // The fast path over the pruned record.
        r#"{ "id": $string(id), "name": name, "emails": [{"email": email}], "title": $string(team.id) }"#,
        // The JSONata engine over the whole record (`$keys` reads it whole).
        r#"{ "id": $string(id), "name": name, "emails": [{"email": email}], "title": $string(team.id), "languages": $count($keys($)) > 99 ? ["x"] }"#,
    ];
    for mapping in mappings {
        let file = MAPPING.replace(
            r#"'{ "id": id, "name": name, "emails": [{"email": email}] }'"#,
            &format!("'{mapping}'"),
        );
        assert_ne!(file, MAPPING);
        // Text records, then the tree route (a gateway filter looks inside the records).
        for query in ["", "name=A"] {
            let (status, text) =
                list_text_of_one_page("pretty", &file, page.as_bytes().to_vec(), query).await;
            assert_eq!(status, 200, "{text}");
            let body: Value = serde_json::from_str(&text).unwrap();
            let first = &body["result"][0];
            assert_eq!(
                first["id"],
                json!("1234567890123456789"),
                "{mapping} {query}"
            );
            assert_eq!(
                first["title"],
                json!("-9007199254740993"),
                "{mapping} {query}"
            );
            assert!(
                text.contains(r#""remote_data":{"id":1234567890123456789,"#),
                "{text}"
            );
            if query.is_empty() {
                // 2^53 itself is exact, a number as before.
                assert_eq!(body["result"][1]["id"], json!("9007199254740992"));
                assert_eq!(body["result"][1]["title"], json!("7"));
            }
        }
    }
}

/// A keyset walk whose ids are beyond 2^53 asks the next page after the last id's digits, not
/// after a rounded double (which would skip or repeat users).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyset_walk_over_64_bit_ids_asks_after_the_exact_id() {
    const KEYSET: &str = r#"name: Keyset
docs: https://example.test/docs
base_url: "https://api.example.test"
auth: { kind: none }
pagination: { style: keyset, after_param: after, page_size_param: limit, max_page_size: 2 }
resources:
  users:
    list: { path: /users, records: users }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: '{ "id": $string(id) }'
"#;
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let server = spawn_provider(
        Router::new()
            .route(
                "/users",
                get(
                    |State(asked): State<Arc<Mutex<Vec<String>>>>,
                     RawQuery(query): RawQuery| async move {
                        let query = query.unwrap_or_default();
                        asked.lock().unwrap().push(query.clone());
                        // The ids as numbers, in the body's own digits.
                        let body = match query.contains("after=") {
                            false => r#"{"users": [{"id": 1234567890123456700}, {"id": 1234567890123456789}]}"#,
                            true => r#"{"users": [{"id": 1234567890123456799}]}"#,
                        };
                        ([("content-type", "application/json")], body)
                    },
                ),
            )
            .with_state(asked.clone()),
    )
    .await;
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: "keyset".into(),
        context: json!({}),
        base_url: Some(server.origin.clone()),
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let gateway = serve_with(
        catalog_with("keyset", KEYSET),
        vec![account],
        UpstreamConfig::default(),
        EngineConfig::default(),
    )
    .await;
    let (status, body) = get_json(
        &format!(
            "{}/unified/user-directory/users?integrated_account_id=acc&truto_ignore_limit=true",
            gateway.origin
        ),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "1234567890123456700",
            "1234567890123456789",
            "1234567890123456799"
        ]
    );
    assert_eq!(
        asked.lock().unwrap().clone(),
        ["limit=2", "limit=2&after=1234567890123456789"]
    );
}
