//! A page is parsed with only the fields its expressions read, and each record from its own bytes
//! with only the fields its mapping reads (`UnifiedMethod::page_reads`): what
//! sits in the fields it never reads — deep nesting, numbers no double holds, escapes, bytes that
//! are not UTF-8 — does not change the answer or fail the page, `remote_data` is still the
//! provider's record, and a record the fast path hands to the JSONata engine is read whole first.

use unigate_tests::{catalog_with, list_text_of_one_page};

/// Reads `id`, `name` and `profile.email`; `$string(score)` is off the fast path for a
/// non-integral number, so a record whose `score` is 1.5 goes to the JSONata engine.
const MAPPING: &str = r#"name: Pruned
docs: https://example.test/docs
base_url: "https://api.example.test"
auth: { kind: bearer, token: "{{context.token}}" }
resources:
  users:
    list: { path: /users, records: users }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: '{ "id": id, "name": name, "emails": [{"email": profile.email}], "title": $string(score) }'
"#;

async fn answer(page: Vec<u8>) -> (u16, String) {
    list_text_of_one_page("pruned", MAPPING, page, "").await
}

#[test]
fn the_mapping_reads_only_what_it_names() {
    let catalog = catalog_with("pruned", MAPPING);
    let method = catalog.integrations["pruned"]
        .unified
        .values()
        .next()
        .unwrap();
    let reads = method.page_reads.as_ref().expect("pruned");
    assert!(!reads.record.reads_everything());
    assert_eq!(
        reads.record.paths(),
        vec!["id.*", "name.*", "profile.email.*", "score.*"]
    );
    // Over the page, each record is only counted: nothing in it is read.
    assert_eq!(reads.page.paths(), vec!["users"]);
}

#[test]
fn pages_are_parsed_whole_where_the_reads_are_not_known_and_check_says_why() {
    let whole = |mapping: String, why: &str| {
        let catalog = catalog_with("pruned", &mapping);
        let method = catalog.integrations["pruned"]
            .unified
            .values()
            .next()
            .unwrap();
        assert_eq!(
            method.page_reads.as_ref().err().map(String::as_str),
            Some(why)
        );
    };
    whole(
        MAPPING.replace("records: users }", "records: \"users[id != 'x']\" }"),
        "its `records` is not a plain field path",
    );
    whole(
        MAPPING.replace(
            "\"title\": $string(score) }",
            "\"title\": $string(score), \"roles\": $keys($) }",
        ),
        "its records are read whole (`$`, `$keys($)`, `$merge([$, …])`, …)",
    );
    whole(
        MAPPING.replace(
            "\"title\": $string(score) }",
            "\"title\": $string(score), \"roles\": $sort(tags) }",
        ),
        "`response_mapping` runs on the JSONata engine",
    );
}

#[tokio::test]
async fn unread_fields_of_any_shape_do_not_change_the_answer() {
    let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    let mut page = Vec::new();
    page.extend_from_slice(
        br#"{"users":[{"id":"u1","name":"Ann","profile":{"email":"ann@x.test","bio":"#,
    );
    // Not UTF-8: a provider bug, in a field the mapping never reads.
    page.extend_from_slice(b"\"caf\xe9\"");
    page.extend_from_slice(
        format!(
            r#","deep":{deep}}},"huge":1e400,"big":123456789012345678901234567890,"esc":"\ud83d\ude00 \" \\ \/","score":7}},{{"id":"u2","name":"Bo","profile":{{"email":"bo@x.test"}},"score":1.5}}],"total":2}}"#
        )
        .as_bytes(),
    );
    let (status, text) = answer(page).await;
    assert_eq!(status, 200, "{text}");
    let expected = format!(
        concat!(
            r#"{{"result":["#,
            r#"{{"id":"u1","name":"Ann","emails":[{{"email":"ann@x.test"}}],"title":"7","remote_data":{{"id":"u1","name":"Ann","profile":{{"email":"ann@x.test","bio":"caf\u{{fffd}}","deep":{deep}}},"huge":1e400,"big":123456789012345678901234567890,"esc":"\ud83d\ude00 \" \\ \/","score":7}}}},"#,
            // Off the fast path ($string of 1.5): the JSONata engine maps the record read whole.
            r#"{{"id":"u2","name":"Bo","emails":[{{"email":"bo@x.test"}}],"title":"1.5","remote_data":{{"id":"u2","name":"Bo","profile":{{"email":"bo@x.test"}},"score":1.5}}}}"#,
            r#"],"next_cursor":null,"result_count":2,"prev_cursor":null}}"#
        ),
        deep = deep
    )
    // The byte that is not UTF-8 comes out as U+FFFD.
    .replace(r"caf\u{fffd}", "caf\u{fffd}");
    assert_eq!(text, expected);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_still_refused() {
    let (status, text) =
        answer(br#"{"users":[{"id":"u1","name":"Ann","junk":[1,}]}"#.to_vec()).await;
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("not valid JSON"), "{text}");
}

#[tokio::test]
async fn a_record_for_the_jsonata_engine_is_read_whole() {
    // `score` 1.5 sends the record to the JSONata engine, which reads it whole: the number no
    // double holds in a field the mapping never reads now matters, as it did before pruning.
    let (status, text) = answer(
        br#"{"users":[{"id":"u1","name":"Ann","profile":{"email":"a@x.test"},"huge":1e400,"score":1.5}]}"#
            .to_vec(),
    )
    .await;
    assert_eq!(status, 500, "{text}");
    assert!(
        text.contains("the record could not be read whole"),
        "{text}"
    );
}
