//! The parameter surface of List Users, table-driven over three integrations with different
//! pagination styles: the sandbox (offset, its real in-process provider), Okta (Link header) and
//! SCIM (`startIndex`), the last two replaying their two-pages fixtures from a stub provider.
//!
//! Each case is checked against the baseline, the plain unified answer of the same walk (which
//! the fixture test pins to exact JSON): a parameter must change the answer exactly as documented
//! and nothing else.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use unigate_gateway::Gateway;
use unigate_store::IntegratedAccount;
use unigate_tests::{
    Recorded, Scripted, Stub, TEST_TOKEN, repo_catalog, repo_root, serve, serve_accounts,
};

#[derive(Debug, Clone, Copy)]
enum Target {
    Sandbox,
    Okta,
    Scim,
}

const TARGETS: [Target; 3] = [Target::Sandbox, Target::Okta, Target::Scim];

#[derive(Debug, Deserialize)]
struct Case {
    context: Value,
    #[serde(default)]
    base_path: String,
    calls: Vec<CaseCall>,
}

#[derive(Debug, Deserialize)]
struct CaseCall {
    response: CaseResponse,
}

#[derive(Debug, Deserialize)]
struct CaseResponse {
    status: u16,
    #[serde(default)]
    headers: Map<String, Value>,
    body: String,
}

/// What a caller got, and what the provider was asked.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    text: String,
    provider_requests: Vec<Recorded>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, self.text))
    }

    fn result(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.text);
        self.json()["result"].clone()
    }
}

async fn get(url: &str, token: &str) -> (u16, String, String) {
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("answer");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, response.text().await.expect("body"))
}

/// Runs one unified call with `query` against `target`.
async fn call(target: Target, query: &str) -> Answer {
    call_with(target, query, |_| {}).await
}

/// As [`call`], with the stub's script edited first (for provider failures mid-walk).
async fn call_with(target: Target, query: &str, edit: impl FnOnce(&mut Vec<Scripted>)) -> Answer {
    let (fixture, integration) = match target {
        Target::Sandbox => {
            let gateway = serve(Gateway::sandbox(37).await.expect("sandbox")).await;
            let url = format!(
                "{}/unified/user-directory/users?integrated_account_id=sandbox&limit=10&{query}",
                gateway.origin
            );
            let (status, content_type, text) = get(&url, "sandbox").await;
            return Answer {
                status,
                content_type,
                text,
                provider_requests: Vec::new(),
            };
        }
        Target::Okta => ("okta/two-pages", "okta"),
        Target::Scim => ("scim/two-pages", "scim"),
    };
    let dir = repo_root().join("tests/fixtures").join(fixture);
    let case: Case =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("case.yaml")).unwrap()).unwrap();
    let stub = Stub::start().await;
    let origin = stub.origin();
    let mut script: Vec<Scripted> = case
        .calls
        .iter()
        .map(|c| Scripted {
            for_request: None,
            status: c.response.status,
            headers: c
                .response
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().replace("{{stub}}", &origin)))
                .collect(),
            body: std::fs::read_to_string(dir.join(&c.response.body))
                .unwrap()
                .replace("{{stub}}", &origin)
                .into_bytes(),
        })
        .collect();
    edit(&mut script);
    stub.script(script);
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: integration.into(),
        context: case.context.clone(),
        base_url: Some(format!("{origin}{}", case.base_path)),
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let gateway = serve_accounts(repo_catalog(), vec![account]).await;
    let url = format!(
        "{}/unified/user-directory/users?integrated_account_id=acc&limit=2&{query}",
        gateway.origin
    );
    let (status, content_type, text) = get(&url, TEST_TOKEN).await;
    Answer {
        status,
        content_type,
        text,
        provider_requests: stub.received(),
    }
}

/// Every record of the walk, as the plain unified answer gives them.
async fn baseline(target: Target) -> Vec<Value> {
    let result = call(target, "truto_ignore_limit=true").await.result();
    let records = result.as_array().expect("array").clone();
    assert!(
        records.len() >= 5,
        "{target:?}: a baseline of several pages"
    );
    records
}

fn without(records: &[Value], fields: &[&str]) -> Vec<Value> {
    records
        .iter()
        .map(|record| {
            let mut record = record.clone();
            for field in fields {
                match field.split_once('.') {
                    None => {
                        record.as_object_mut().unwrap().remove(*field);
                    }
                    Some((array, inner)) => {
                        if let Some(Value::Array(items)) = record.get_mut(array) {
                            for item in items {
                                item.as_object_mut().unwrap().remove(inner);
                            }
                        }
                    }
                }
            }
            record
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shaping_parameters_change_exactly_what_they_say() {
    for target in TARGETS {
        let all = baseline(target).await;
        let cases: Vec<(&str, Value)> = vec![
            (
                "truto_ignore_limit=true&truto_ignore_remote_data=true",
                json!(without(&all, &["remote_data"])),
            ),
            (
                "truto_ignore_limit=true&truto_exclude_fields[]=name&truto_exclude_fields[]=emails.type",
                json!(without(&all, &["name", "emails.type"])),
            ),
            (
                "truto_ignore_limit=true&truto_exclude_fields[0]=name&truto_exclude_fields[1]=title",
                json!(without(&all, &["name", "title"])),
            ),
            (
                "truto_ignore_limit=true&truto_exclude_fields=name,title",
                json!(without(&all, &["name", "title"])),
            ),
            (
                "truto_ignore_limit=true&truto_response_format=raw",
                json!(
                    all.iter()
                        .map(|r| r["remote_data"].clone())
                        .collect::<Vec<_>>()
                ),
            ),
            (
                "truto_ignore_limit=true&truto_key_by=id",
                Value::Object(
                    all.iter()
                        .map(|r| (r["id"].as_str().unwrap().to_owned(), r.clone()))
                        .collect(),
                ),
            ),
        ];
        for (query, expected) in cases {
            assert_eq!(
                call(target, query).await.result(),
                expected,
                "{target:?} {query}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_by_refuses_missing_or_duplicate_keys() {
    for target in TARGETS {
        let answer = call(target, "truto_ignore_limit=true&truto_key_by=bio").await;
        assert_eq!(answer.status, 400, "{target:?}");
        assert!(
            answer.json()["message"]
                .as_str()
                .unwrap()
                .starts_with("`truto_key_by=bio`: a record has no usable `bio` (id `"),
            "{}",
            answer.text
        );
    }
    // Sandbox titles repeat: a duplicate key is a 400, never an overwrite.
    let answer = call(Target::Sandbox, "truto_key_by=title").await;
    assert_eq!(
        (answer.status, answer.json()["message"].clone()),
        (
            400,
            json!("`truto_key_by=title`: two records share the value `Engineer`")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_writes_every_record_once_as_ndjson() {
    for target in TARGETS {
        let all = baseline(target).await;
        let answer = call(target, "truto_response_format=stream").await;
        assert_eq!(
            (answer.status, answer.content_type.as_str()),
            (200, "application/x-ndjson"),
            "{target:?}"
        );
        let lines: Vec<Value> = answer
            .text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines, all, "{target:?}");
        assert!(answer.text.ends_with('\n'));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_by_a_provider_failure_ends_with_the_error_line() {
    for target in [Target::Okta, Target::Scim] {
        let all = baseline(target).await;
        let answer = call_with(target, "truto_response_format=stream", |script| {
            script[2] = Scripted {
                for_request: None,
                status: 503,
                headers: vec![],
                body: br#"{"message":"down for maintenance"}"#.to_vec(),
            };
        })
        .await;
        assert_eq!(answer.status, 200, "{target:?}: the stream had started");
        let lines: Vec<Value> = answer
            .text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let (last, records) = lines.split_last().unwrap();
        assert_eq!(
            records,
            &all[..4],
            "{target:?}: the two pages before the failure"
        );
        assert_eq!(
            last,
            &json!({"statusCode": 502, "error": "Bad Gateway", "message": "down for maintenance",
                    "truto_is_remote_error": true, "remote_status": 503,
                    "raw_response": {"message": "down for maintenance"}, "truto_stream_error": true}),
            "{target:?}"
        );
    }
    // A failure on the first page is a plain error answer, not a stream.
    let answer = call_with(Target::Okta, "truto_response_format=stream", |script| {
        script[0] = Scripted {
            for_request: None,
            status: 401,
            headers: vec![],
            body: br#"{"errorSummary":"Invalid token provided"}"#.to_vec(),
        };
    })
    .await;
    assert_eq!(
        (answer.status, answer.content_type.as_str()),
        (401, "application/json")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normalized_keeps_only_schema_fields_in_schema_types() {
    let model: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_root().join("mappings/models/user-directory.yaml")).unwrap(),
    )
    .unwrap();
    let fields = model["resources"]["users"]["fields"]
        .as_object()
        .unwrap()
        .clone();
    for target in TARGETS {
        let all = baseline(target).await;
        let normalized = call(
            target,
            "truto_ignore_limit=true&truto_response_format=normalized",
        )
        .await
        .result();
        let normalized = normalized.as_array().unwrap();
        assert_eq!(normalized.len(), all.len());
        for (plain, normal) in all.iter().zip(normalized) {
            let normal = normal.as_object().unwrap();
            assert!(normal.get("remote_data").is_none());
            for (name, value) in normal {
                let spec = fields
                    .get(name)
                    .unwrap_or_else(|| panic!("{target:?}: `{name}` is not a model field"));
                match spec["type"].as_str().unwrap() {
                    "datetime" => {
                        let text = value.as_str().unwrap();
                        assert!(
                            text.ends_with('Z') && text.len() >= 20 && &text[10..11] == "T",
                            "{target:?} {name}: {text}"
                        );
                        assert_eq!(
                            unigate_unified::time::parse_iso8601(text),
                            unigate_unified::time::parse_json_timestamp(&plain[name]),
                            "{target:?} {name}: same instant"
                        );
                    }
                    "boolean" => assert!(value.is_boolean(), "{target:?} {name}"),
                    "string" => assert!(value.is_string(), "{target:?} {name}"),
                    "array" => assert!(value.is_array(), "{target:?} {name}"),
                    _ => {}
                }
            }
            assert_eq!(normal["id"], plain["id"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_filters_match_exactly_the_records_they_describe() {
    for target in TARGETS {
        let all = baseline(target).await;
        // `name` is native nowhere here: applied in the gateway, ignoring case.
        let name = all
            .iter()
            .find_map(|r| r["name"].as_str())
            .expect("a name")
            .to_owned();
        let query = format!(
            "truto_ignore_limit=true&name={}",
            name.to_uppercase().replace(' ', "%20")
        );
        let expected: Vec<&Value> = all
            .iter()
            .filter(|r| {
                r["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&name))
            })
            .collect();
        assert_eq!(
            call(target, &query).await.result(),
            json!(expected),
            "{target:?} {query}"
        );

        // `created_at` with an operator pair: instants, whatever the offset.
        let mut instants: Vec<i64> = all
            .iter()
            .filter_map(|r| unigate_unified::time::parse_json_timestamp(&r["created_at"]))
            .collect();
        instants.sort();
        let (low, high) = (instants[1], instants[instants.len() - 2]);
        let format = unigate_unified::time::format_rfc3339;
        let query = format!(
            "truto_ignore_limit=true&created_at[gte]={}&created_at[lt]={}",
            format(low),
            format(high)
        );
        let expected: Vec<&Value> = all
            .iter()
            .filter(|r| {
                unigate_unified::time::parse_json_timestamp(&r["created_at"])
                    .is_some_and(|t| t >= low && t < high)
            })
            .collect();
        assert!(!expected.is_empty() && expected.len() < all.len());
        assert_eq!(
            call(target, &query).await.result(),
            json!(expected),
            "{target:?} {query}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorting_in_the_gateway_needs_every_page() {
    for target in TARGETS {
        let all = baseline(target).await;
        for (order, descending) in [("asc", false), ("desc", true)] {
            let query = format!("truto_ignore_limit=true&sort_by=username&sort_order={order}");
            let result = call(target, &query).await.result();
            let usernames: Vec<String> = result
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["username"].as_str().unwrap().to_lowercase())
                .collect();
            let mut sorted = usernames.clone();
            sorted.sort();
            if descending {
                sorted.reverse();
            }
            assert_eq!(usernames, sorted, "{target:?} {query}");
            assert_eq!(usernames.len(), all.len());
        }
        let answer = call(target, "sort_by=username").await;
        assert_eq!(answer.status, 400, "{target:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_query_reaches_the_provider_verbatim_and_wins() {
    for target in [Target::Okta, Target::Scim] {
        let all = baseline(target).await;
        let (page_size_param, _) = match target {
            Target::Okta => ("limit", ()),
            _ => ("count", ()),
        };
        let query = format!(
            "truto_ignore_limit=true&remote_query[filter][deep]=a%20b&remote_query[{page_size_param}]=7&remote_query[tag][]=x&remote_query[tag][]=y"
        );
        let answer = call(target, &query).await;
        assert_eq!(answer.result(), json!(all), "{target:?}");
        let first = &answer.provider_requests[0];
        let find = |name: &str| {
            first
                .query
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            find("filter[deep]"),
            vec!["a b"],
            "{target:?} {:?}",
            first.query
        );
        assert_eq!(find("tag"), vec!["x", "y"], "{target:?}");
        assert_eq!(
            find(page_size_param),
            vec!["7"],
            "{target:?}: remote_query wins over the page size"
        );
        let paths: BTreeSet<&str> = answer
            .provider_requests
            .iter()
            .map(|r| r.path.as_str())
            .collect();
        assert_eq!(
            paths.len(),
            1,
            "{target:?}: remote_query never changes the path"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_come_from_the_mapping_files() {
    let gateway = serve(Gateway::sandbox(5).await.expect("sandbox")).await;
    let (status, _, text) = get(
        &format!(
            "{}/unified/user-directory/users/meta/list?integrated_account_id=sandbox-cursor",
            gateway.origin
        ),
        "sandbox",
    )
    .await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body,
        json!({
            "integration": "sandbox-cursor", "name": "Sandbox (cursor paging)",
            "docs": "https://github.com/unigate/unigate/blob/main/README.md#the-sandbox",
            "model": "user-directory", "resource": "users", "method": "list", "methods": ["list", "get"], "partial": false,
            "pagination": "cursor",
            "parts": [],
            "fields": ["id", "first_name", "last_name", "name", "username", "title", "emails", "phones",
                       "status", "user_type", "roles", "created_at", "updated_at", "last_login_at", "groups"],
            "fields_from_follow_ups": {"groups": ["groups"]},
            "opt_in_fields": {},
            "filters": {
                "native": ["email", "status"],
                "native_by_pass": {},
                "gateway": ["created_at", "emails", "first_name", "group_id", "groups", "last_name", "name",
                            "role_id", "roles", "title", "updated_at", "user_type", "username"],
                "unsupported": ["customer_id", "include_inherited", "include_last_login_at",
                                "org_id", "org_unit_path", "organization_id", "product", "workspace_id"]
            },
            "sorts": {
                "native": [],
                "gateway_when_all_pages_fetched": ["created_at", "emails", "first_name", "groups", "id", "last_active_at",
                    "last_login_at", "name", "roles", "status", "updated_at", "username"]
            },
            "response_formats": ["unified", "normalized", "raw", "stream"]
        })
    );
    let (status, _, text) = get(
        &format!(
            "{}/unified/user-directory/users/sandbox/meta/list",
            gateway.origin
        ),
        "sandbox",
    )
    .await;
    assert_eq!(
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap()["pagination"].clone()
        ),
        (200, json!("offset"))
    );
    let (status, _, _) = get(
        &format!(
            "{}/unified/user-directory/users/nope/meta/list",
            gateway.origin
        ),
        "sandbox",
    )
    .await;
    assert_eq!(status, 404);
}
