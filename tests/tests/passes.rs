//! Lists served in parts (`passes`): a provider that lists one `state` per walk, walked once per
//! state, in order, through every way a caller takes the list (cursor by cursor, every page in
//! one answer with the prefetch window, the NDJSON stream), each user once; a call that chooses
//! its part is walked once; a cursor whose pass the mapping no longer has is refused; a query
//! mapping that reads `$pass` sends each pass its own parameters, and the gateway applies the
//! native filters a pass does not, and sorts a list walked in parts.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use unigate_engine::{EngineConfig, RetryPolicy};
use unigate_store::IntegratedAccount;
use unigate_tests::{
    LocalProvider, RunningGateway, TEST_TOKEN, catalog_with, get_json, serve_with, spawn_provider,
};
use unigate_upstream::UpstreamConfig;

const MAPPING: &str = r#"name: Parts provider
docs: https://example.test/docs
base_url: "https://api.example.test"
auth: { kind: none }
pagination: { style: offset, offset_param: offset, page_size_param: limit, max_page_size: 100, total: total }
resources:
  users:
    list:
      path: /users
      records: users
      query: { fields: all }
      passes:
        - query: { state: active }
        - query: { state: suspended }
        - query: { state: invited }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        native_filters: [status]
        query_mapping: '{ "state": status = "inactive" ? "suspended" }'
        response_mapping: '{ "id": id, "status": state = "active" ? "active" : "inactive" }'
"#;

/// Five active users, three suspended, none invited: the invited pass is an empty page.
fn users_in(state: &str) -> u64 {
    match state {
        "active" => 5,
        "suspended" => 3,
        _ => 0,
    }
}

#[derive(Default)]
struct Provider {
    /// `(state, offset)` of every request, in the order they arrived.
    requests: Mutex<Vec<(String, u64)>>,
    /// The page size each of them asked.
    limits: Mutex<Vec<u64>>,
    /// Path and query of every request to `/people` and `/pending-invites`.
    queries: Mutex<Vec<String>>,
}

#[derive(Deserialize)]
struct Params {
    state: Option<String>,
    offset: u64,
    limit: u64,
    fields: String,
}

async fn users(State(p): State<Arc<Provider>>, Query(q): Query<Params>) -> axum::Json<Value> {
    assert_eq!(
        q.fields, "all",
        "the resource's own query goes with every pass"
    );
    // Like Zoom and SonarQube: without the parameter, the default part only.
    let state = q.state.unwrap_or_else(|| "active".to_owned());
    p.requests.lock().unwrap().push((state.clone(), q.offset));
    p.limits.lock().unwrap().push(q.limit);
    let total = users_in(&state);
    let end = (q.offset + q.limit).min(total);
    let users: Vec<Value> = (q.offset..end)
        .map(|i| json!({"id": format!("{state}-{i}"), "state": state}))
        .collect();
    axum::Json(json!({"users": users, "total": total}))
}

struct Setup {
    provider: Arc<Provider>,
    gateway: RunningGateway,
    _server: LocalProvider,
}

async fn setup(mapping: &str, prefetch_window: usize) -> Setup {
    setup_with(mapping, prefetch_window, json!({})).await
}

/// `setup` for an account whose context is `context`.
async fn setup_with(mapping: &str, prefetch_window: usize, context: Value) -> Setup {
    let provider = Arc::new(Provider::default());
    let server = spawn_provider(
        Router::new()
            .route("/users", get(users))
            .route("/invites", get(invitations))
            .route("/pending", get(pending))
            .route("/members", get(sent_headers))
            .route("/team-invites", get(sent_headers))
            .route("/people", get(people))
            .route("/people/{id}", get(person))
            .route("/pending-invites", get(pending_invites))
            .with_state(provider.clone()),
    )
    .await;
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: "parts".into(),
        context,
        base_url: Some(server.origin.clone()),
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let config = EngineConfig {
        retry: RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        },
        prefetch_window,
        ..EngineConfig::default()
    };
    let gateway = serve_with(
        catalog_with("parts", mapping),
        vec![account],
        UpstreamConfig::default(),
        config,
    )
    .await;
    Setup {
        provider,
        gateway,
        _server: server,
    }
}

fn url(gateway: &RunningGateway, query: &str) -> String {
    format!(
        "{}/unified/user-directory/users?integrated_account_id=acc&{query}",
        gateway.origin
    )
}

fn ids(body: &Value) -> Vec<String> {
    body["result"]
        .as_array()
        .unwrap_or_else(|| panic!("no result: {body}"))
        .iter()
        .map(|user| user["id"].as_str().unwrap().to_owned())
        .collect()
}

fn every_user() -> Vec<String> {
    ["active", "suspended"]
        .iter()
        .flat_map(|state| (0..users_in(state)).map(move |i| format!("{state}-{i}")))
        .collect()
}

fn requests(setup: &Setup) -> Vec<(String, u64)> {
    setup.provider.requests.lock().unwrap().clone()
}

/// Every user of an account with `context` under `mapping` in one call: the answer, and the
/// provider requests the walk made.
async fn list_everything(mapping: &str, context: Value) -> (u16, Value, Vec<(String, u64)>) {
    let setup = setup_with(mapping, 4, context).await;
    let (status, body) = get_json(
        &url(&setup.gateway, "truto_ignore_limit=true"),
        Some(TEST_TOKEN),
    )
    .await;
    (status, body, requests(&setup))
}

fn asked(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs
        .iter()
        .map(|(state, offset)| (state.to_string(), *offset))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_by_cursor_the_walk_goes_through_every_pass_in_order() {
    let setup = setup(MAPPING, 4).await;
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    let mut answers = 0;
    loop {
        let query = match &cursor {
            None => "limit=2".to_owned(),
            Some(cursor) => format!("limit=2&next_cursor={cursor}"),
        };
        let (status, body) = get_json(&url(&setup.gateway, &query), Some(TEST_TOKEN)).await;
        assert_eq!(status, 200, "{body}");
        answers += 1;
        seen.extend(ids(&body));
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, every_user());
    // One provider page an answer: 3 pages of active users, 2 of suspended ones, and the
    // invited pass's empty page, which ends the walk.
    assert_eq!(answers, 6);
    assert_eq!(
        requests(&setup),
        asked(&[
            ("active", 0),
            ("active", 2),
            ("active", 4),
            ("suspended", 0),
            ("suspended", 2),
            ("invited", 0),
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_at_once_and_the_stream_list_each_user_once() {
    // With a prefetch window: each pass's pages after its first are fetched ahead, and the
    // provider's total for one pass does not bound the next.
    let setup = setup(MAPPING, 4).await;
    let (status, body) = get_json(
        &url(&setup.gateway, "limit=2&truto_ignore_limit=true"),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), every_user());
    assert_eq!(body["next_cursor"], Value::Null);
    let mut made = requests(&setup);
    made.sort();
    assert_eq!(
        made,
        asked(&[
            ("active", 0),
            ("active", 2),
            ("active", 4),
            ("invited", 0),
            ("suspended", 0),
            ("suspended", 2),
        ])
    );

    let stream = reqwest::Client::new()
        .get(url(&setup.gateway, "limit=2&truto_response_format=stream"))
        .bearer_auth(TEST_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let streamed: Vec<String> = stream
        .lines()
        .map(|line| {
            let user: Value = serde_json::from_str(line).unwrap();
            user["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(streamed, every_user());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_chooses_its_part_is_walked_once() {
    // A filter the query mapping pushes down into a pass's parameter.
    let setup = setup(MAPPING, 1).await;
    let (status, body) = get_json(
        &url(&setup.gateway, "status=inactive&truto_ignore_limit=true"),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), ["suspended-0", "suspended-1", "suspended-2"]);
    assert_eq!(requests(&setup), asked(&[("suspended", 0)]));

    // The caller's remote_query.
    let setup = self::setup(MAPPING, 1).await;
    let (status, body) = get_json(
        &url(&setup.gateway, "remote_query[state]=invited&limit=2"),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), Vec::<String>::new());
    assert_eq!(body["next_cursor"], Value::Null);
    assert_eq!(requests(&setup), asked(&[("invited", 0)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_into_a_pass_the_mapping_no_longer_has_is_refused() {
    // The same account, integration and query on a gateway whose mapping lost its passes (a
    // reload): the cursor is genuine, its pass is gone.
    let with_passes = setup(MAPPING, 1).await;
    let (_, body) = get_json(&url(&with_passes.gateway, "limit=5"), Some(TEST_TOKEN)).await;
    let into_second_pass = body["next_cursor"].as_str().unwrap().to_owned();
    assert_eq!(ids(&body).len(), 5, "the active pass ends on this page");

    let without: String = MAPPING
        .lines()
        .filter(|line| !line.contains("passes:") && !line.contains("- query: { state:"))
        .map(|line| format!("{line}\n"))
        .collect();
    let plain = setup(&without, 1).await;
    let (status, body) = get_json(
        &url(
            &plain.gateway,
            &format!("limit=5&next_cursor={into_second_pass}"),
        ),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["message"],
        "`next_cursor` was issued for a walk in parts that integration's mapping no longer makes for this account; start again without a cursor"
    );
    assert_eq!(requests(&plain), Vec::<(String, u64)>::new());
}

/// Members at `/users`, pending invitations at `/invites` under another key: the second pass
/// has its own path and `records`, and the response mapping tells its records apart by `$pass`.
const WITH_INVITATIONS: &str = r#"name: Parts provider
docs: https://example.test/docs
base_url: "https://api.example.test"
auth: { kind: none }
pagination: { style: offset, offset_param: offset, page_size_param: limit, max_page_size: 100, total: total }
resources:
  users:
    list:
      path: /users
      records: users
      query: { fields: all }
      passes:
        - name: members
        - name: invitations
          path: /invites
          query: { state: invited }
          records: invites
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: |
          {
            "id": $pass = "invitations" ? "invitation-" & id : id,
            "status": $pass = "invitations" ? "invited" : "active"
          }
"#;

async fn invitations(State(p): State<Arc<Provider>>, Query(q): Query<Params>) -> axum::Json<Value> {
    assert_eq!(q.fields, "all");
    let state = q.state.unwrap_or_default();
    p.requests
        .lock()
        .unwrap()
        .push((format!("/invites {state}"), q.offset));
    let end = (q.offset + q.limit).min(3);
    let users: Vec<Value> = (q.offset..end)
        .map(|i| json!({"id": i.to_string()}))
        .collect();
    axum::Json(json!({"invites": users, "total": 3}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_with_its_own_path_lists_what_the_resource_path_does_not() {
    let setup = setup(WITH_INVITATIONS, 4).await;
    let (provider, gateway) = (&setup.provider, &setup.gateway);
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let query = match &cursor {
            None => "limit=2".to_owned(),
            Some(cursor) => format!("limit=2&next_cursor={cursor}"),
        };
        let (status, body) = get_json(&url(gateway, &query), Some(TEST_TOKEN)).await;
        assert_eq!(status, 200, "{body}");
        seen.extend(body["result"].as_array().unwrap().iter().map(|user| {
            format!(
                "{} {}",
                user["id"].as_str().unwrap(),
                user["status"].as_str().unwrap()
            )
        }));
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "active-0 active",
            "active-1 active",
            "active-2 active",
            "active-3 active",
            "active-4 active",
            "invitation-0 invited",
            "invitation-1 invited",
            "invitation-2 invited",
        ]
    );
    assert_eq!(
        provider.requests.lock().unwrap().clone(),
        asked(&[
            ("active", 0),
            ("active", 2),
            ("active", 4),
            ("/invites invited", 0),
            ("/invites invited", 2),
        ])
    );

    // The gateway's `status` filter keeps the invitations; every page is still read.
    let (status, body) = get_json(
        &url(gateway, "status=invited&truto_ignore_limit=true"),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), ["invitation-0", "invitation-1", "invitation-2"]);
}

/// Invitations that come in one answer beside paged members (SendGrid's pending teammates,
/// Dropbox Sign's team invites): the pass walks its pages its own way (`style: none`), so its
/// one request carries none of the members' paging parameters and is not asked again.
const WITH_PENDING: &str = r#"name: Parts provider
docs: https://example.test/docs
base_url: "https://api.example.test"
auth: { kind: none }
pagination: { style: offset, offset_param: offset, page_size_param: limit, max_page_size: 100, total: total }
resources:
  users:
    list:
      path: /users
      records: users
      query: { fields: all }
      passes:
        - name: members
        - name: invitations
          path: /pending
          records: result
          pagination: { style: none }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: |
          {
            "id": $pass = "invitations" ? "invitation:" & email : id,
            "status": $pass = "invitations" ? "invited" : "active"
          }
"#;

async fn pending(
    State(p): State<Arc<Provider>>,
    Query(q): Query<std::collections::BTreeMap<String, String>>,
) -> axum::Json<Value> {
    let asked: Vec<String> = q
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    p.requests
        .lock()
        .unwrap()
        .push((format!("/pending {}", asked.join("&")), 0));
    axum::Json(json!({"result": [
        {"email": "a@example.test", "token": "t1"},
        {"email": "b@example.test", "token": "t2"},
        {"email": "c@example.test", "token": "t3"}
    ]}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_paged_its_own_way_is_asked_once_without_the_members_paging() {
    let setup = setup(WITH_PENDING, 4).await;
    let (provider, gateway) = (&setup.provider, &setup.gateway);
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let query = match &cursor {
            None => "limit=2".to_owned(),
            Some(cursor) => format!("limit=2&next_cursor={cursor}"),
        };
        let (status, body) = get_json(&url(gateway, &query), Some(TEST_TOKEN)).await;
        assert_eq!(status, 200, "{body}");
        pages.push(ids(&body));
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        pages,
        [
            vec!["active-0", "active-1"],
            vec!["active-2", "active-3"],
            vec!["active-4"],
            vec![
                "invitation:a@example.test",
                "invitation:b@example.test",
                "invitation:c@example.test"
            ],
        ]
    );
    assert_eq!(
        provider.requests.lock().unwrap().clone(),
        asked(&[
            ("active", 0),
            ("active", 2),
            ("active", 4),
            ("/pending fields=all", 0),
        ])
    );

    // Every page in one answer: the members' pages are fetched a window at a time, the
    // invitations once.
    provider.requests.lock().unwrap().clear();
    let (status, body) = get_json(
        &url(gateway, "limit=2&truto_ignore_limit=true"),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        ids(&body),
        [
            "active-0",
            "active-1",
            "active-2",
            "active-3",
            "active-4",
            "invitation:a@example.test",
            "invitation:b@example.test",
            "invitation:c@example.test"
        ]
    );
    let mut asked_now = provider.requests.lock().unwrap().clone();
    asked_now.sort();
    assert_eq!(
        asked_now,
        asked(&[
            ("/pending fields=all", 0),
            ("active", 0),
            ("active", 2),
            ("active", 4),
        ])
    );
}

/// A pass made only for an account whose context sets a flag (`only_with`: pending invitations
/// that need a scope the members list does not): without it the walk ends with the members and
/// the invitations list is never asked; with it ("true" as text too) the walk goes on into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_only_with_a_flag_is_made_for_the_accounts_that_set_it() {
    let mapping = WITH_INVITATIONS.replace(
        "        - name: invitations\n",
        "        - name: invitations\n          only_with: read_invitations\n",
    );
    assert_ne!(mapping, WITH_INVITATIONS);
    let list_all = async |context: Value| {
        let (status, body, asked) = list_everything(&mapping, context).await;
        assert_eq!(status, 200, "{body}");
        (ids(&body), asked)
    };
    let (without, asked_without) = list_all(json!({"read_invitations": false})).await;
    assert_eq!(
        without,
        ["active-0", "active-1", "active-2", "active-3", "active-4"]
    );
    assert_eq!(asked_without, asked(&[("active", 0)]));

    let (with, asked_with) = list_all(json!({"read_invitations": "true"})).await;
    assert_eq!(
        with,
        [
            "active-0",
            "active-1",
            "active-2",
            "active-3",
            "active-4",
            "invitation-0",
            "invitation-1",
            "invitation-2"
        ]
    );
    assert_eq!(asked_with, asked(&[("active", 0), ("/invites invited", 0)]));
}

/// A pass made only with a flag may read a context key only flagged accounts have (Calendly's
/// organization UUID in the invitations path): an account without the flag, and without the
/// key, lists its members; a flagged account that lacks the key is told which key, not served
/// the members alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flagged_pass_needs_its_optional_key_only_where_it_is_made() {
    let mapping = WITH_INVITATIONS.replace(
        "        - name: invitations\n          path: /invites\n",
        "        - name: invitations\n          only_with: read_invitations\n          path: \"/invites{{context.invites_suffix?}}\"\n",
    );
    assert_ne!(mapping, WITH_INVITATIONS);
    let list_all = async |context: Value| list_everything(&mapping, context).await;
    let (status, body, asked_without) = list_all(json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        ids(&body),
        ["active-0", "active-1", "active-2", "active-3", "active-4"]
    );
    assert_eq!(asked_without, asked(&[("active", 0)]));

    let (status, body, asked_flagged) = list_all(json!({"read_invitations": true})).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("invites_suffix")),
        "{body}"
    );
    assert_eq!(asked_flagged, Vec::<(String, u64)>::new());

    let (status, body, _) = list_all(json!({"read_invitations": true, "invites_suffix": ""})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body).len(), 8, "{body}");
}

/// Members and invitations that differ in more than their path (Heroku's team invitations: their
/// own `Accept` version and no `Range`; Calendly's: no `organization` parameter): the
/// invitations pass leaves out a resource parameter and a file header and replaces another
/// header, and the members' pages still carry all three.
const WITH_OWN_HEADERS: &str = r#"name: Parts provider
docs: https://example.test/docs
base_url: "https://api.example.test"
headers: { Accept: application/vnd.members+json, Range: "email ..; max=2" }
auth: { kind: none }
pagination: { style: offset, offset_param: offset, page_size_param: limit, max_page_size: 100, total: total }
resources:
  users:
    list:
      path: /members
      records: users
      query: { organization: "{{context.organization}}", fields: all }
      passes:
        - name: members
        - name: invitations
          path: /team-invites
          query: { organization: null, status: pending }
          headers: { accept: application/vnd.invitations+json, Range: null }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: |
          {
            "id": $pass = "invitations" ? "invitation-" & id : id,
            "status": $pass = "invitations" ? "invited" : "active"
          }
"#;

/// Records the path, the query and the `Accept` and `Range` headers of a request; answers two
/// members (a page of two, then none) or one invitation.
async fn sent_headers(
    State(p): State<Arc<Provider>>,
    uri: Uri,
    headers: HeaderMap,
) -> axum::Json<Value> {
    let header = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let query = uri.query().unwrap_or_default().to_owned();
    p.requests.lock().unwrap().push((
        format!(
            "{} {query} accept={} range={}",
            uri.path(),
            header("accept"),
            header("range")
        ),
        0,
    ));
    match uri.path() {
        "/members" if query.contains("offset=0") => axum::Json(json!({
            "users": [{"id": "m1"}, {"id": "m2"}], "total": 2
        })),
        "/members" => axum::Json(json!({"users": [], "total": 2})),
        _ => axum::Json(json!({"users": [{"id": "i1"}], "total": 1})),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_leaves_out_a_resource_parameter_and_sends_its_own_headers() {
    let (status, body, requests) =
        list_everything(WITH_OWN_HEADERS, json!({"organization": "https://org/1"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), ["m1", "m2", "invitation-i1"]);
    let members = "accept=application/vnd.members+json range=email ..; max=2";
    assert_eq!(
        requests,
        asked(&[
            (
                // The context's value goes last (a secret, added when the request is sent).
                &format!(
                    "/members fields=all&limit=100&offset=0&organization=https%3A%2F%2Forg%2F1 {members}"
                ),
                0
            ),
            (
                "/team-invites fields=all&status=pending&limit=100&offset=0 accept=application/vnd.invitations+json range=",
                0
            ),
        ])
    );
}

/// A get of an id only a named pass gives (`pass_ids`) walks that pass alone, at the most a page
/// may hold within what a caller's `limit` may ask, and answers the record as the list maps it;
/// one the pass does not hold is the gateway's 404 after its last page.
#[tokio::test]
async fn a_get_of_a_pass_id_walks_that_pass_at_its_largest_page() {
    let mapping = MAPPING
        .replace("max_page_size: 100", "max_page_size: 20000")
        .replace(
            "        - query: { state: active }\n        - query: { state: suspended }\n        - query: { state: invited }\n",
            "        - name: members\n          query: { state: active }\n        - name: suspended\n          query: { state: suspended }\n    get: { path: \"/users/{{id}}\", records: \"$\" }\n",
        )
        .replace(
            "        response_mapping: '{ \"id\": id, \"status\": state = \"active\" ? \"active\" : \"inactive\" }'\n",
            "        response_mapping: '{ \"id\": id, \"status\": state = \"active\" ? \"active\" : \"inactive\" }'\n      get:\n        resource: users.get\n        pass_ids: { suspended: \"suspended-\" }\n",
        );
    let setup = setup(&mapping, 1).await;
    let record = |id: &str| {
        format!(
            "{}/unified/user-directory/users/{id}?integrated_account_id=acc",
            setup.gateway.origin
        )
    };
    let (status, body) = get_json(&record("suspended-2"), Some(TEST_TOKEN)).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"id": "suspended-2", "status": "inactive",
                "remote_data": {"id": "suspended-2", "state": "suspended"}})
        )
    );
    assert_eq!(requests(&setup), asked(&[("suspended", 0)]));
    assert_eq!(*setup.provider.limits.lock().unwrap(), [10_000]);
    let (status, mut body) = get_json(&record("suspended-9"), Some(TEST_TOKEN)).await;
    body.as_object_mut().unwrap().remove("request_id");
    assert_eq!(
        (status, body),
        (
            404,
            json!({"statusCode": 404, "error": "Not Found",
                "message": "integration `parts` lists no record `suspended-9` in the `suspended` part of its list"})
        )
    );
}

/// Members that narrow by `email` (matching an alias their record does not show, as a provider
/// may) and sort by `sort`, beside invitations that take neither parameter and answer every
/// invitation: a query mapping that reads `$pass` sends the members alone what only they take.
const BY_PASS: &str = r#"name: Parts provider
docs: https://example.test/docs
base_url: "https://api.example.test"
auth: { kind: none }
pagination: { style: offset, offset_param: offset, page_size_param: limit, max_page_size: 100, total: total }
resources:
  users:
    list:
      path: /people
      records: people
      passes:
        - name: members
        - name: invitations
          only_with: read_invitations
          path: /pending-invites
          records: invites
          pagination: { style: none }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        native_filters: [email]
        native_filters_by_pass: { invitations: [] }
        native_sorts: [created_at]
        query_mapping: |
          $pass = "invitations" ? {} : {
            "email": email,
            "sort": sort_by = "created_at" ? (sort_order = "desc" ? "-created" : "created")
          }
        response_mapping: |
          {
            "id": $pass = "invitations" ? "invitation:" & id : id,
            "emails": [{ "email": email }],
            "status": $pass = "invitations" ? "invited" : "active",
            "created_at": created
          }
"#;

async fn people(
    State(p): State<Arc<Provider>>,
    uri: Uri,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> axum::Json<Value> {
    p.queries.lock().unwrap().push(uri.to_string());
    let mut people = vec![
        json!({"id": "m1", "email": "ann@x.test", "alias": "ann.b@x.test", "created": "2024-03-01T00:00:00Z"}),
        json!({"id": "m2", "email": "bob@x.test", "alias": "robert@x.test", "created": "2024-01-01T00:00:00Z"}),
        json!({"id": "m3", "email": "cy@x.test", "alias": "cy.d@x.test", "created": "2024-02-01T00:00:00Z"}),
    ];
    if let Some(wanted) = q.get("email") {
        people.retain(|person| person["email"] == *wanted || person["alias"] == *wanted);
    }
    match q.get("sort").map(String::as_str) {
        Some("created") => people.sort_by_key(|person| person["created"].to_string()),
        Some("-created") => {
            people.sort_by_key(|person| std::cmp::Reverse(person["created"].to_string()))
        }
        _ => {}
    }
    let total = people.len();
    let number = |name: &str| q.get(name).and_then(|n| n.parse::<usize>().ok());
    let offset = number("offset").unwrap_or(0).min(total);
    let end = (offset + number("limit").unwrap_or(total)).min(total);
    axum::Json(json!({"people": people[offset..end], "total": total}))
}

async fn pending_invites(State(p): State<Arc<Provider>>, uri: Uri) -> axum::Json<Value> {
    p.queries.lock().unwrap().push(uri.to_string());
    axum::Json(json!({"invites": [
        {"id": "i1", "email": "robert@x.test", "created": "2024-02-15T00:00:00Z"},
        {"id": "i2", "email": "dee@x.test", "created": "2023-12-01T00:00:00Z"},
    ]}))
}

fn queries(setup: &Setup) -> Vec<String> {
    setup.provider.queries.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_mapping_reading_pass_sends_each_pass_its_own_parameters() {
    // With the invitations: the members are asked by email and trusted (m2 matched its
    // alias); the invitations, asked without, are filtered here.
    let flagged = setup_with(BY_PASS, 4, json!({"read_invitations": true})).await;
    let (status, body) = get_json(
        &url(
            &flagged.gateway,
            "email=robert%40x.test&truto_ignore_limit=true",
        ),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), ["m2", "invitation:i1"]);
    assert_eq!(
        queries(&flagged),
        [
            "/people?email=robert%40x.test&limit=100&offset=0",
            "/pending-invites"
        ]
    );
    // Capabilities name the parts and the flag each needs, and the filters each part applies.
    let (status, body) = get_json(
        &format!(
            "{}/unified/user-directory/users/meta/list?integrated_account_id=acc",
            flagged.gateway.origin
        ),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["parts"],
        json!([{"name": "members", "only_with": null},
               {"name": "invitations", "only_with": "read_invitations"}])
    );
    assert_eq!(body["filters"]["native"], json!(["email"]));
    assert_eq!(
        body["filters"]["native_by_pass"],
        json!({"invitations": []})
    );
    // Without them, the members alone, narrowed by the provider.
    let plain = setup_with(BY_PASS, 4, json!({})).await;
    let (status, body) = get_json(
        &url(&plain.gateway, "email=robert%40x.test"),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), ["m2"]);
    assert_eq!(
        queries(&plain),
        ["/people?email=robert%40x.test&limit=100&offset=0"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_sort_over_a_list_walked_in_parts_is_the_gateways() {
    let flagged = setup_with(BY_PASS, 4, json!({"read_invitations": true})).await;
    let (status, body) = get_json(
        &url(&flagged.gateway, "sort_by=created_at"),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["message"],
        "`sort_by=created_at`: integration `parts` lists this account's users in 2 parts, one after another, each sorted on its own at most; add `truto_ignore_limit=true` to sort every record in the gateway"
    );
    assert_eq!(queries(&flagged), Vec::<String>::new());
    let (status, body) = get_json(
        &url(
            &flagged.gateway,
            "sort_by=created_at&sort_order=desc&truto_ignore_limit=true",
        ),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        ids(&body),
        ["m1", "invitation:i1", "m3", "m2", "invitation:i2"]
    );
    assert_eq!(
        queries(&flagged),
        [
            "/people?sort=-created&limit=100&offset=0",
            "/pending-invites"
        ]
    );
    // A stream is never buffered to sort, native or not.
    for (sort, why) in [
        (
            "created_at",
            "integration `parts` lists this account's users in 2 parts, one after another, each sorted on its own at most",
        ),
        ("updated_at", "it is not native to integration `parts`"),
    ] {
        let (status, body) = get_json(
            &url(
                &flagged.gateway,
                &format!("sort_by={sort}&truto_response_format=stream"),
            ),
            Some(TEST_TOKEN),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            body["message"],
            format!(
                "`sort_by={sort}`: {why}, and a stream is never buffered to sort it; use `truto_ignore_limit=true` instead"
            )
        );
    }
    assert_eq!(queries(&flagged).len(), 2);
    // One part: the provider's order, page by page.
    let plain = setup_with(BY_PASS, 4, json!({})).await;
    let (status, body) = get_json(
        &url(&plain.gateway, "sort_by=created_at&limit=2"),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), ["m2", "m3"]);
    assert_eq!(queries(&plain), ["/people?sort=created&limit=2&offset=0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_mapping_may_not_set_a_passs_own_parameter_for_one_pass() {
    let mapping = WITH_INVITATIONS.replacen(
        "        resource: users.list\n",
        "        resource: users.list\n        query_mapping: '$pass = \"invitations\" ? { \"state\": \"pending\" }'\n",
        1,
    );
    let setup = setup(&mapping, 4).await;
    let (status, body) = get_json(&url(&setup.gateway, "limit=2"), Some(TEST_TOKEN)).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        body["message"],
        "the `parts` mapping failed: its query_mapping sets `state` for pass `invitations`, a parameter that pass sets itself"
    );
    assert_eq!(requests(&setup), Vec::<(String, u64)>::new());
}

/// Members read one by one at `/people/{id}` (404 for any other id), beside invitations listed
/// only, whose ids have the members' form.
async fn person(
    State(p): State<Arc<Provider>>,
    uri: Uri,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> (axum::http::StatusCode, axum::Json<Value>) {
    p.queries.lock().unwrap().push(uri.to_string());
    match id.as_str() {
        "m1" => (
            axum::http::StatusCode::OK,
            axum::Json(
                json!({"id": "m1", "email": "ann@x.test", "created": "2024-03-01T00:00:00Z"}),
            ),
        ),
        _ => (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(json!({"message": format!("No person {id}")})),
        ),
    }
}

/// A get of an id the get's resource does not find looks for it in the passes it names
/// (`not_found_passes`), for an account that makes them; the resource's own 404 holds otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_the_resource_does_not_find_is_looked_for_in_the_named_passes() {
    let mapping = BY_PASS
        .replace(
            "          pagination: { style: none }\n",
            "          pagination: { style: none }\n    get: { path: \"/people/{{id}}\", records: \"$\" }\n",
        )
        .replace(
            "            \"id\": $pass = \"invitations\" ? \"invitation:\" & id : id,\n",
            "            \"id\": id,\n",
        )
        + "      get:\n        resource: users.get\n        not_found_passes: [invitations]\n";
    let flagged = setup_with(&mapping, 4, json!({"read_invitations": true})).await;
    let record = |setup: &Setup, id: &str| {
        format!(
            "{}/unified/user-directory/users/{id}?integrated_account_id=acc",
            setup.gateway.origin
        )
    };
    let (status, body) = get_json(&record(&flagged, "m1"), Some(TEST_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "m1");
    assert_eq!(queries(&flagged), ["/people/m1"]);
    let (status, body) = get_json(&record(&flagged, "i2"), Some(TEST_TOKEN)).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"id": "i2", "emails": [{"email": "dee@x.test"}], "status": "invited",
                "created_at": "2023-12-01T00:00:00Z",
                "remote_data": {"id": "i2", "email": "dee@x.test", "created": "2023-12-01T00:00:00Z"}})
        )
    );
    assert_eq!(
        queries(&flagged),
        ["/people/m1", "/people/i2", "/pending-invites"]
    );
    // Neither: the provider's 404, as it answered it.
    let (status, mut body) = get_json(&record(&flagged, "zz"), Some(TEST_TOKEN)).await;
    body.as_object_mut().unwrap().remove("request_id");
    assert_eq!(
        (status, body),
        (
            404,
            json!({"statusCode": 404, "error": "Not Found", "message": "No person zz",
                "truto_is_remote_error": true, "raw_response": {"message": "No person zz"}})
        )
    );
    // An account that does not make the pass: no walk.
    let plain = setup_with(&mapping, 4, json!({})).await;
    let (status, _) = get_json(&record(&plain, "i2"), Some(TEST_TOKEN)).await;
    assert_eq!(status, 404);
    assert_eq!(queries(&plain), ["/people/i2"]);
}

/// A pass's own mapped query may replace a parameter the account fills (a team from the
/// context) for that pass alone; a provider hint that a pass does not apply is a 400 for an
/// account that makes the pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_may_replace_an_account_parameter_for_itself_alone() {
    let mapping = BY_PASS
        .replace(
            "      records: people\n",
            "      records: people\n      query: { team: \"{{context.team}}\" }\n",
        )
        .replace(
            "        native_filters: [email]\n        native_filters_by_pass: { invitations: [] }\n",
            "        native_filters: [email, customer_id]\n        native_filters_by_pass: { invitations: [customer_id] }\n",
        )
        .replace(
            "            \"email\": email,\n",
            "            \"email\": email,\n            \"team\": customer_id,\n",
        );
    let context = json!({"read_invitations": true, "team": "t-acc"});
    let setup = setup_with(&mapping, 4, context.clone()).await;
    let (status, body) = get_json(
        &url(&setup.gateway, "customer_id=t-x&truto_ignore_limit=true"),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        queries(&setup),
        [
            "/people?team=t-x&limit=100&offset=0",
            "/pending-invites?team=t-acc"
        ]
    );
    let hinted = mapping.replace(
        "native_filters_by_pass: { invitations: [customer_id] }",
        "native_filters_by_pass: { invitations: [] }",
    );
    let setup = setup_with(&hinted, 4, context).await;
    let (status, body) = get_json(&url(&setup.gateway, "customer_id=t-x"), Some(TEST_TOKEN)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["message"],
        "`customer_id` is a provider hint that the `invitations` part of integration `parts`'s list cannot honour, and integrated account `acc` lists that part (its native filters there: none)"
    );
    assert_eq!(queries(&setup), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_two_parts_list_is_listed_once_and_a_retried_call_answers_the_same() {
    // The second pass's parameter is one the provider does not know: it answers its default
    // part, the active users, again.
    let mapping = MAPPING.replace(
        "        - query: { state: suspended }\n",
        "        - query: { stat: suspended }\n",
    );
    let setup = setup(&mapping, 4).await;
    let mut cursor: Option<String> = None;
    let mut answers = Vec::new();
    loop {
        let query = match &cursor {
            None => "limit=2".to_owned(),
            Some(cursor) => format!("limit=2&next_cursor={cursor}"),
        };
        let (status, body) = get_json(&url(&setup.gateway, &query), Some(TEST_TOKEN)).await;
        assert_eq!(status, 200, "{body}");
        answers.push(ids(&body));
        // A caller that did not get the answer asks again with the same cursor: the same
        // records, not emptied as already listed.
        let (_, again) = get_json(&url(&setup.gateway, &query), Some(TEST_TOKEN)).await;
        assert_eq!(ids(&again), ids(&body), "asked again with {query}");
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        answers,
        vec![
            vec!["active-0", "active-1"],
            vec!["active-2", "active-3"],
            vec!["active-4"],
            // The second pass's pages hold only users listed already, then the invited
            // pass's empty page ends the walk.
            vec![],
        ]
    );
    // Every user in one answer, and the stream, alike.
    let (status, body) = get_json(
        &url(&setup.gateway, "truto_ignore_limit=true"),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        ids(&body),
        ["active-0", "active-1", "active-2", "active-3", "active-4"]
    );
}
