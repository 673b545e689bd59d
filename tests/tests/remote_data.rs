//! `remote_data` as the provider sent it: a record the gateway does not look inside is written
//! once, its unified fields straight from the mapping and its `remote_data` copied from the
//! provider's bytes (compacted when the provider pretty-prints), so numbers beyond what a double
//! holds and `\u` escapes come out exactly as they went in. A call that makes the gateway look
//! inside the records (here `truto_exclude_fields`) goes through the parsed tree instead. The
//! assertions are on the answer's text, the bytes a caller receives.

use serde_json::{Value, json};
use unigate_tests::list_text_of_one_page;

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
