//! Follow-up requests: a list that declares a second call per record (a member's details) or per
//! page (the roles of the page's members, batched by ids) gets each record mapped with the
//! answers, never more calls in flight for the account than the declared bound; a follow-up that
//! fails fails the call as a remote error naming the integration; a declared 404 means "no
//! detail".

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use unigate_store::IntegratedAccount;
use unigate_tests::{TEST_TOKEN, catalog_with, get_json, serve_accounts, spawn_provider};

const MAPPING: &str = r#"name: Members provider
docs: https://example.test/docs
base_url: "{{context.url}}"
auth: { kind: bearer, token: "{{context.token}}" }
pagination: { style: offset, offset_param: offset, page_size_param: limit }
resources:
  members:
    list: { path: /members, records: members }
  users:
    get: { path: "/users/{{id}}", records: "$" }
  roles:
    list: { path: /roles, query: { user_ids: "{{id}}" }, records: roles }
unified:
  user-directory:
    users:
      list:
        resource: members.list
        follow_up:
          detail: { resource: users.get, id: login, concurrency: 2, not_found: skip }
          grants: { resource: roles.list, per: page, id: "$join(login, ',')", key: login, matches: user }
        response_mapping: |
          {
            "id": login,
            "name": $detail.name,
            "emails": $detail.email ? [{ "email": $detail.email }],
            "roles": $count($grants) > 0 ? $grants.{ "id": role }
          }
"#;

const LOGINS: [&str; 7] = [
    "ada", "grace", "alan", "edsger", "barbara", "gone", "donald",
];

#[derive(Default)]
struct Provider {
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    detail_calls: AtomicUsize,
    role_calls: Mutex<Vec<String>>,
    /// A login whose details answer 403 (or `refuse_with`).
    refuse: Mutex<Option<String>>,
    refuse_with: Mutex<Option<StatusCode>>,
}

#[derive(Deserialize)]
struct Page {
    offset: Option<usize>,
    limit: Option<usize>,
}

async fn members(Query(page): Query<Page>) -> Response {
    let offset = page.offset.unwrap_or(0);
    let end = (offset + page.limit.unwrap_or(100)).min(LOGINS.len());
    let members: Vec<Value> = LOGINS[offset.min(end)..end]
        .iter()
        .map(|login| json!({"login": login}))
        .collect();
    axum::Json(json!({ "members": members })).into_response()
}

async fn user(State(provider): State<Arc<Provider>>, Path(login): Path<String>) -> Response {
    provider.detail_calls.fetch_add(1, Ordering::SeqCst);
    let now = provider.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    provider.most_in_flight.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(30)).await;
    provider.in_flight.fetch_sub(1, Ordering::SeqCst);
    if provider.refuse.lock().unwrap().as_deref() == Some(login.as_str()) {
        return (
            provider
                .refuse_with
                .lock()
                .unwrap()
                .unwrap_or(StatusCode::FORBIDDEN),
            axum::Json(json!({"message": "Resource not accessible by integration"})),
        )
            .into_response();
    }
    if login == "gone" {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": "Not Found"})),
        )
            .into_response();
    }
    axum::Json(json!({"login": login, "name": format!("{login} (name)"), "email": format!("{login}@example.test")}))
        .into_response()
}

#[derive(Deserialize)]
struct Roles {
    user_ids: String,
}

async fn roles(State(provider): State<Arc<Provider>>, Query(query): Query<Roles>) -> Response {
    provider
        .role_calls
        .lock()
        .unwrap()
        .push(query.user_ids.clone());
    let roles: Vec<Value> = query
        .user_ids
        .split(',')
        .filter(|login| ["ada", "grace", "alan"].contains(login))
        .flat_map(|login| {
            [
                json!({"user": login, "role": "admin"}),
                json!({"user": login, "role": "billing"}),
            ]
        })
        .collect();
    axum::Json(json!({ "roles": roles })).into_response()
}

struct World {
    provider: Arc<Provider>,
    origin: String,
    _server: unigate_tests::LocalProvider,
    _gateway: unigate_tests::RunningGateway,
}

async fn world() -> World {
    let provider = Arc::new(Provider::default());
    let server = spawn_provider(
        Router::new()
            .route("/members", get(members))
            .route("/users/{login}", get(user))
            .route("/roles", get(roles))
            .with_state(provider.clone()),
    )
    .await;
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: "members".into(),
        context: json!({"url": server.origin, "token": "t"}),
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let gateway = serve_accounts(catalog_with("members", MAPPING), vec![account]).await;
    World {
        provider,
        origin: gateway.origin.clone(),
        _server: server,
        _gateway: gateway,
    }
}

impl World {
    async fn list(&self, query: &str) -> (u16, Value) {
        get_json(
            &format!(
                "{}/unified/user-directory/users?integrated_account_id=acc&truto_ignore_remote_data=true{query}",
                self.origin
            ),
            Some(TEST_TOKEN),
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_mapped_with_their_follow_ups_within_the_bound() {
    let world = world().await;
    let (status, body) = world.list("&limit=4").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"],
        json!([
            {"id": "ada", "name": "ada (name)", "emails": [{"email": "ada@example.test"}],
             "roles": [{"id": "admin"}, {"id": "billing"}]},
            {"id": "grace", "name": "grace (name)", "emails": [{"email": "grace@example.test"}],
             "roles": [{"id": "admin"}, {"id": "billing"}]},
            {"id": "alan", "name": "alan (name)", "emails": [{"email": "alan@example.test"}],
             "roles": [{"id": "admin"}, {"id": "billing"}]},
            {"id": "edsger", "name": "edsger (name)", "emails": [{"email": "edsger@example.test"}]}
        ])
    );
    // The next page: `gone` has no detail (a 404 declared as none), the others do.
    let cursor = body["next_cursor"].as_str().unwrap().to_owned();
    let (status, body) = world.list(&format!("&limit=4&next_cursor={cursor}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"],
        json!([
            {"id": "barbara", "name": "barbara (name)", "emails": [{"email": "barbara@example.test"}]},
            {"id": "gone"},
            {"id": "donald", "name": "donald (name)", "emails": [{"email": "donald@example.test"}]}
        ])
    );
    assert_eq!(world.provider.detail_calls.load(Ordering::SeqCst), 7);
    assert!(world.provider.most_in_flight.load(Ordering::SeqCst) <= 2);
    // One batched roles call per page, with the page's ids.
    assert_eq!(
        *world.provider.role_calls.lock().unwrap(),
        vec!["ada,grace,alan,edsger", "barbara,gone,donald"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_the_accounts_bound() {
    let world = Arc::new(world().await);
    let calls = (0..4).map(|_| {
        let world = world.clone();
        tokio::spawn(async move { world.list("&limit=7").await })
    });
    for answer in futures_util::future::join_all(calls).await {
        assert_eq!(answer.unwrap().0, 200);
    }
    assert_eq!(world.provider.detail_calls.load(Ordering::SeqCst), 28);
    assert!(world.provider.most_in_flight.load(Ordering::SeqCst) <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_follow_up_fails_the_call_naming_the_integration() {
    let world = world().await;
    *world.provider.refuse.lock().unwrap() = Some("alan".into());
    let (status, body) = world.list("&limit=7").await;
    assert_eq!(
        (status, body),
        (
            403,
            json!({"statusCode": 403, "error": "Forbidden", "truto_is_remote_error": true,
                   "message": "the `detail` follow-up request of integration `members` failed: Resource not accessible by integration",
                   "raw_response": {"message": "Resource not accessible by integration"}})
        )
    );
}

/// A follow-up's 401 comes after its page was answered with the same credential: it refuses
/// that one endpoint (a scope the token lacks), not the credential, so the call fails with it
/// and the account is not marked: the next call is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_ups_401_fails_the_call_without_marking_the_account() {
    let world = world().await;
    *world.provider.refuse.lock().unwrap() = Some("alan".into());
    *world.provider.refuse_with.lock().unwrap() = Some(StatusCode::UNAUTHORIZED);
    let (status, body) = world.list("&limit=7").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["message"],
        "the `detail` follow-up request of integration `members` failed: Resource not accessible by integration"
    );
    *world.provider.refuse.lock().unwrap() = None;
    let (status, body) = world.list("&limit=7").await;
    assert_eq!(status, 200, "{body}");
}

/// A per-page follow-up without `key`/`matches` gives every record its whole answer (one call a
/// page: the organization they share); one with `batch` sends the page's ids, each once, in
/// calls of at most `size`, as repeated parameters (Airtable's `id[]=…&id[]=…`), and pairs the
/// answers of all of them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_wide_answer_and_ids_sent_in_batches() {
    #[derive(Default)]
    struct Seen {
        org_calls: AtomicUsize,
        profile_calls: Mutex<Vec<String>>,
    }
    async fn org(State(seen): State<Arc<Seen>>) -> Response {
        seen.org_calls.fetch_add(1, Ordering::SeqCst);
        axum::Json(json!({"id": "o1", "name": "Acme"})).into_response()
    }
    async fn profiles(
        State(seen): State<Arc<Seen>>,
        axum::extract::RawQuery(query): axum::extract::RawQuery,
    ) -> Response {
        let query = query.unwrap_or_default();
        seen.profile_calls.lock().unwrap().push(query.clone());
        let logins: Vec<String> = unigate_tests::url_pairs(&query)
            .into_iter()
            .filter(|(name, _)| name == "login[]")
            .map(|(_, login)| login)
            .collect();
        let found: Vec<Value> = logins
            .iter()
            .filter(|login| *login != "gone")
            .map(|login| json!({"login": login, "title": format!("{login}'s title")}))
            .collect();
        axum::Json(json!({ "profiles": found })).into_response()
    }
    let seen = Arc::new(Seen::default());
    let server = spawn_provider(
        Router::new()
            .route("/members", get(members))
            .route("/org", get(org))
            .route("/profiles", get(profiles))
            .with_state(seen.clone()),
    )
    .await;
    let mapping = &members_mapping(
        r#"  org:
    get: { path: /org, query: { for: "{{id}}" }, records: "$" }
  profiles:
    list: { path: /profiles, query: { fields: title }, records: profiles }
unified:
  user-directory:
    users:
      list:
        resource: members.list
        follow_up:
          org: { resource: org.get, per: page, id: "'members'" }
          profile:
            resource: profiles.list
            per: page
            id: login
            batch: { size: 3, param: "login[]" }
            key: login
            matches: login
        response_mapping: |
          {
            "id": login,
            "title": $profile.title,
            "organizations": [{ "id": $org.id, "name": $org.name }]
          }
"#,
    );
    let (status, body) = list_once(mapping, &server.origin, "7").await;
    assert_eq!(status, 200, "{body}");
    let org = json!([{"id": "o1", "name": "Acme"}]);
    let expected: Vec<Value> = LOGINS
        .iter()
        .map(|login| match *login {
            "gone" => json!({"id": login, "organizations": org}),
            _ => json!({"id": login, "title": format!("{login}'s title"), "organizations": org}),
        })
        .collect();
    assert_eq!(body["result"], json!(expected));
    assert_eq!(seen.org_calls.load(Ordering::SeqCst), 1);
    let mut calls = seen.profile_calls.lock().unwrap().clone();
    calls.sort();
    assert_eq!(
        calls,
        [
            "fields=title&login%5B%5D=ada&login%5B%5D=grace&login%5B%5D=alan",
            "fields=title&login%5B%5D=donald",
            "fields=title&login%5B%5D=edsger&login%5B%5D=barbara&login%5B%5D=gone",
        ]
    );
    // A walk of three pages asks the shared answer once: the later pages ask the same `{{id}}`.
    let (status, body) = list_once(mapping, &server.origin, "3&truto_ignore_limit=true").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], json!(expected));
    assert_eq!(seen.org_calls.load(Ordering::SeqCst), 2);
}

/// The groups of a team in the kept-batch tests: each login's team is its first letter, and the
/// team has one group holding its logins.
fn team_groups(team: &str) -> Response {
    let members: Vec<&str> = LOGINS
        .iter()
        .copied()
        .filter(|login| login.starts_with(team))
        .collect();
    axum::Json(json!({"groups": [{"id": format!("grp-{team}"), "members": members}]}))
        .into_response()
}

/// A kept batch (`batch.keep`) asks each id once a walk: a later page whose records name an id
/// an earlier page asked pairs with the kept answer (Slack Enterprise: a page's users name the
/// workspaces the previous page's did, and each workspace's groups are asked once). The same
/// batch without `keep` asks a page's ids on every page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_batch_asks_each_id_once_a_walk() {
    async fn groups(
        State(calls): State<Arc<Mutex<Vec<String>>>>,
        Query(query): Query<std::collections::HashMap<String, String>>,
    ) -> Response {
        let team = query.get("team").cloned().unwrap_or_default();
        calls.lock().unwrap().push(team.clone());
        team_groups(&team)
    }
    let calls = Arc::new(Mutex::new(Vec::new()));
    let server = spawn_provider(
        Router::new()
            .route("/members", get(members))
            .route("/groups", get(groups))
            .with_state(calls.clone()),
    )
    .await;
    let mapping = |keep: &str| {
        members_mapping(&format!(
            r#"  groups:
    list: {{ path: /groups, records: groups }}
unified:
  user-directory:
    users:
      list:
        resource: members.list
        follow_up:
          groups:
            resource: groups.list
            per: page
            # Each login's team is its first letter.
            id: "login.$substring($, 0, 1)"
            batch: {{ size: 1, param: team{keep} }}
            key: login
            matches: members
        response_mapping: |
          {{ "id": login, "groups": [$groups.{{ "id": id }}] }}
"#
        ))
    };
    let expected: Vec<Value> = LOGINS
        .iter()
        .map(|login| json!({"id": login, "groups": [{"id": format!("grp-{}", &login[..1])}]}))
        .collect();
    // Pages of three: [ada grace alan] [edsger barbara gone] [donald]; `gone` names team g,
    // which the first page asked.
    let (status, body) = list_once(
        &mapping(", keep: true"),
        &server.origin,
        "3&truto_ignore_limit=true",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], json!(expected));
    // Pages may ask at once (offset pages are fetched ahead): the order of calls is not fixed.
    let sorted = |calls: &Mutex<Vec<String>>| {
        let mut calls = calls.lock().unwrap().clone();
        calls.sort();
        calls
    };
    assert_eq!(sorted(&calls), ["a", "b", "d", "e", "g"]);
    calls.lock().unwrap().clear();
    let (status, body) = list_once(&mapping(""), &server.origin, "3&truto_ignore_limit=true").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], json!(expected));
    assert_eq!(sorted(&calls), ["a", "b", "d", "e", "g", "g"]);
}

/// The account's groups over two pages (`after=g2`), its second page failing once when
/// `fail_once` is set, and the mapping walking them as a follow-up paired by `member`.
#[derive(Default)]
struct WalkedGroups {
    calls: Mutex<Vec<String>>,
    fail_once: std::sync::atomic::AtomicBool,
}

async fn walked_groups(
    State(seen): State<Arc<WalkedGroups>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    seen.calls.lock().unwrap().push(query.clone());
    match query.as_str() {
        "per_page=2" => axum::Json(json!({
            "groups": [{"member": "ada", "name": "admins"}, {"member": "grace", "name": "ops"}],
            "next": "g2"
        }))
        .into_response(),
        "per_page=2&after=g2" if seen.fail_once.swap(false, Ordering::SeqCst) => {
            (StatusCode::BAD_GATEWAY, "upstream hiccup").into_response()
        }
        "per_page=2&after=g2" => axum::Json(json!({
            "groups": [{"member": "ada", "name": "ops"}],
            "next": null
        }))
        .into_response(),
        other => (StatusCode::BAD_REQUEST, format!("unexpected {other}")).into_response(),
    }
}

async fn walked_groups_provider(seen: &Arc<WalkedGroups>) -> unigate_tests::LocalProvider {
    spawn_provider(
        Router::new()
            .route("/members", get(members))
            .route("/groups", get(walked_groups))
            .with_state(seen.clone()),
    )
    .await
}

const WALKED_GROUPS_MAPPING: &str = r#"name: Members provider
docs: https://example.test/docs
base_url: "{{context.url}}"
auth: { kind: bearer, token: "{{context.token}}" }
pagination: { style: offset, offset_param: offset, page_size_param: limit }
resources:
  members:
    list: { path: /members, records: members }
  groups:
    list:
      path: /groups
      records: groups
      pagination: { style: cursor, cursor_param: after, next_cursor: next, page_size_param: per_page, max_page_size: 2 }
unified:
  user-directory:
    users:
      list:
        resource: members.list
        follow_up:
          groups: { resource: groups.list, per: page, id: "'all'", walk: true, key: login, matches: member }
        response_mapping: '{ "id": login, "groups": $groups.{ "name": name }[] }'
"#;

fn walked_groups_result() -> Value {
    json!([
        {"id": "ada", "groups": [{"name": "admins"}, {"name": "ops"}]},
        {"id": "grace", "groups": [{"name": "ops"}]},
        {"id": "alan"}
    ])
}

/// `walk: true` reads every page of a follow-up's answer by its resource's pagination (the
/// account's groups, two pages of them, paired back to the members), where a single call would
/// have left the second page's groups out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walking_follow_up_reads_every_page_of_its_answer() {
    let seen = Arc::new(WalkedGroups::default());
    let server = walked_groups_provider(&seen).await;
    let mapping = WALKED_GROUPS_MAPPING;
    let (status, body) = list_once(mapping, &server.origin, "3").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], walked_groups_result());
    assert_eq!(
        *seen.calls.lock().unwrap(),
        ["per_page=2", "per_page=2&after=g2"]
    );
    // An answer longer than the walk is sized for fails the call naming the bound to raise.
    let capped = mapping.replace("max_page_size: 2 }", "max_page_size: 2, max_pages: 1 }");
    let (status, body) = list_once(&capped, &server.origin, "3").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        body["message"],
        "the `groups` follow-up request of integration `members` failed: its answer has more than 1 pages, the `pagination.max_pages` of resource `groups.list`; the list is not answered without it"
    );
}

/// `matches` may give a list: a group answering its members' ids pairs with each of them (once,
/// however often the list names a member).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_record_pairs_with_every_id_its_matches_lists() {
    async fn groups() -> Response {
        axum::Json(json!({"groups": [
            {"name": "admins", "members": ["ada", "grace"]},
            {"name": "ops", "members": ["ada", "ada", 7]},
            {"name": "nobody", "members": []},
            {"name": "one", "members": "alan"}
        ]}))
        .into_response()
    }
    let server = spawn_provider(
        Router::new()
            .route("/members", get(members))
            .route("/groups", get(groups)),
    )
    .await;
    let mapping = &members_mapping(
        r#"  groups:
    list: { path: /groups, records: groups }
unified:
  user-directory:
    users:
      list:
        resource: members.list
        follow_up:
          groups: { resource: groups.list, per: page, id: "'all'", key: login, matches: members }
        response_mapping: '{ "id": login, "groups": $groups.{ "name": name }[] }'
"#,
    );
    let (status, body) = list_once(mapping, &server.origin, "4").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"],
        json!([
            {"id": "ada", "groups": [{"name": "admins"}, {"name": "ops"}]},
            {"id": "grace", "groups": [{"name": "admins"}]},
            {"id": "alan", "groups": [{"name": "one"}]},
            {"id": "edsger"}
        ])
    );
}

/// A follow-up chained `over` a catalog (the account's groups): one members call per group,
/// each walked, a deleted group's 404 skipped; every member gets the groups whose answers hold
/// them, in catalog order, and a walk of three unified pages calls each group once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chained_follow_up_gives_each_record_the_groups_holding_it() {
    #[derive(Default)]
    struct Seen {
        calls: Mutex<Vec<String>>,
    }
    async fn groups(State(seen): State<Arc<Seen>>) -> Response {
        seen.calls.lock().unwrap().push("groups".into());
        axum::Json(json!({"groups": [
            {"id": 1, "name": "admins"},
            {"id": 2, "name": "ops"},
            {"id": 3, "name": "deleted meanwhile"},
            {"name": "no id"},
            {"id": 4, "name": "empty"}
        ]}))
        .into_response()
    }
    async fn group_members(
        State(seen): State<Arc<Seen>>,
        Path(id): Path<String>,
        axum::extract::RawQuery(query): axum::extract::RawQuery,
    ) -> Response {
        let query = query.unwrap_or_default();
        seen.calls.lock().unwrap().push(format!("{id}?{query}"));
        let (members, next): (Vec<&str>, Option<&str>) = match (id.as_str(), query.as_str()) {
            ("1", "per_page=2") => (vec!["grace", "ada"], Some("p2")),
            ("1", "per_page=2&after=p2") => (vec!["ada", "donald"], None),
            ("2", "per_page=2") => (vec!["ada"], None),
            ("3", _) => {
                return (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"message": "gone"})),
                )
                    .into_response();
            }
            ("4", "per_page=2") => (vec![], None),
            other => {
                return (StatusCode::BAD_REQUEST, format!("unexpected {other:?}")).into_response();
            }
        };
        let members: Vec<Value> = members
            .iter()
            .map(|login| json!({"user": {"login": login}}))
            .collect();
        axum::Json(json!({"members": members, "next": next})).into_response()
    }
    let seen = Arc::new(Seen::default());
    let server = spawn_provider(
        Router::new()
            .route("/members", get(members))
            .route("/groups", get(groups))
            .route("/groups/{id}/members", get(group_members))
            .with_state(seen.clone()),
    )
    .await;
    let mapping = &members_mapping(
        r#"  groups:
    list: { path: /groups, records: groups }
  group_members:
    list:
      path: "/groups/{{id}}/members"
      records: members
      pagination: { style: cursor, cursor_param: after, next_cursor: next, page_size_param: per_page, max_page_size: 2 }
unified:
  user-directory:
    users:
      list:
        resource: members.list
        follow_up:
          catalog: { resource: groups.list, per: page, id: "'all'" }
          groups:
            resource: group_members.list
            over: catalog
            id: id
            walk: true
            not_found: skip
            key: login
            matches: user.login
        response_mapping: '{ "id": login, "groups": $groups.{ "id": $string(id), "name": name }[] }'
"#,
    );
    let expected = json!([
        {"id": "ada", "groups": [{"id": "1", "name": "admins"}, {"id": "2", "name": "ops"}]},
        {"id": "grace", "groups": [{"id": "1", "name": "admins"}]},
        {"id": "alan"},
        {"id": "edsger"},
        {"id": "barbara"},
        {"id": "gone"},
        {"id": "donald", "groups": [{"id": "1", "name": "admins"}]}
    ]);
    let (status, body) = list_once(mapping, &server.origin, "7").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], expected);
    let mut calls = std::mem::take(&mut *seen.calls.lock().unwrap());
    calls.sort();
    let once = [
        "1?per_page=2",
        "1?per_page=2&after=p2",
        "2?per_page=2",
        "3?per_page=2",
        "4?per_page=2",
        "groups",
    ];
    assert_eq!(calls, once);
    // Three unified pages of one walk: the catalog is the same answer, so no group is asked
    // again.
    let (status, body) = list_once(mapping, &server.origin, "3&truto_ignore_limit=true").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], expected);
    let mut calls = std::mem::take(&mut *seen.calls.lock().unwrap());
    calls.sort();
    assert_eq!(calls, once);
    // The same walk paged by its cursor, three calls: the catalog and its members are asked by
    // the first only.
    let gateway = members_gateway(mapping, &server.origin).await;
    let mut results = Vec::new();
    let mut query = "&limit=3".to_owned();
    loop {
        let (status, body) = gateway.list(&query).await;
        assert_eq!(status, 200, "{body}");
        results.extend(body["result"].as_array().unwrap().iter().cloned());
        match body["next_cursor"].as_str() {
            Some(cursor) => query = format!("&limit=3&next_cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(json!(results), expected);
    let mut calls = std::mem::take(&mut *seen.calls.lock().unwrap());
    calls.sort();
    assert_eq!(calls, once);
    // A new walk (no cursor) asks again.
    let (status, _) = gateway.list("&limit=3").await;
    assert_eq!(status, 200);
    assert_eq!(seen.calls.lock().unwrap().len(), once.len());
}

/// A follow-up may be chained over a catalog that pairs records itself: groups listing their
/// first members inline pair with those, and only the groups whose inline list falls short of
/// their size are asked for their members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chained_follow_up_may_complete_a_catalog_that_pairs_its_own_records() {
    #[derive(Default)]
    struct Seen {
        calls: Mutex<Vec<String>>,
    }
    async fn groups(State(seen): State<Arc<Seen>>) -> Response {
        seen.calls.lock().unwrap().push("groups".into());
        axum::Json(json!({"groups": [
            {"id": 1, "name": "admins", "members": ["ada", "grace"], "size": 2},
            {"id": 2, "name": "ops", "members": ["ada"], "size": 3},
            {"id": 3, "name": "big", "members": [], "size": 5}
        ]}))
        .into_response()
    }
    async fn group_members(State(seen): State<Arc<Seen>>, Path(id): Path<String>) -> Response {
        seen.calls.lock().unwrap().push(id.clone());
        let members: &[&str] = match id.as_str() {
            "2" => &["ada", "alan", "donald"],
            "3" => &["edsger"],
            _ => return (StatusCode::BAD_REQUEST, "unexpected").into_response(),
        };
        let members: Vec<Value> = members
            .iter()
            .map(|login| json!({"login": login}))
            .collect();
        axum::Json(json!({ "members": members })).into_response()
    }
    let seen = Arc::new(Seen::default());
    let server = spawn_provider(
        Router::new()
            .route("/members", get(members))
            .route("/groups", get(groups))
            .route("/groups/{id}/members", get(group_members))
            .with_state(seen.clone()),
    )
    .await;
    let mapping = &members_mapping(
        r#"  groups:
    list: { path: /groups, records: groups }
  group_members:
    list: { path: "/groups/{{id}}/members", records: members }
unified:
  user-directory:
    users:
      list:
        resource: members.list
        follow_up:
          inline: { resource: groups.list, per: page, id: "'all'", key: login, matches: members }
          groups:
            resource: group_members.list
            over: inline
            id: '$count(members) < size ? $string(id)'
            key: login
            matches: login
        # groups: the inline pairs; roles (standing in for a second list): the chained calls'.
        response_mapping: '{ "id": login, "groups": $inline.{ "name": name }[], "roles": $groups.{ "name": name }[] }'
"#,
    );
    let (status, body) = list_once(mapping, &server.origin, "7").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"],
        json!([
            {"id": "ada", "groups": [{"name": "admins"}, {"name": "ops"}], "roles": [{"name": "ops"}]},
            {"id": "grace", "groups": [{"name": "admins"}]},
            {"id": "alan", "roles": [{"name": "ops"}]},
            {"id": "edsger", "roles": [{"name": "big"}]},
            {"id": "barbara"},
            {"id": "gone"},
            {"id": "donald", "roles": [{"name": "ops"}]}
        ])
    );
    let mut calls = std::mem::take(&mut *seen.calls.lock().unwrap());
    calls.sort();
    assert_eq!(calls, ["2", "3", "groups"]);
}

/// `not_found: skip` also skips what the mapping's `errors.not_found` calls "no such record" (a
/// 400 naming an id deleted meanwhile, as Zoho answers; or a 2xx body `errors.when` marks, as
/// Slack answers), and only that: another 400 still fails the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_skips_what_the_mapping_calls_not_found() {
    async fn detail(Path(login): Path<String>) -> Response {
        let refused = |code: &str| {
            (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"code": code, "message": format!("{code} for {login}")})),
            )
                .into_response()
        };
        match login.as_str() {
            "gone" => refused("INVALID_DATA"),
            "alan" => refused("LIMIT_EXCEEDED"),
            // Said in a 2xx body, as Slack says everything (`{ok: false, error}`).
            "barbara" => axum::Json(json!({"ok": false, "code": "INVALID_DATA"})).into_response(),
            _ => axum::Json(json!({"name": format!("{login} (name)")})).into_response(),
        }
    }
    let server = spawn_provider(
        Router::new()
            .route("/members", get(members))
            .route("/users/{login}", get(detail)),
    )
    .await;
    let mapping = |asked: &str| {
        members_mapping(&format!(
            r#"  users:
    get: {{ path: "/users/{{{{id}}}}", records: "$" }}
errors:
  when: "ok = false"
  not_found: "code = 'INVALID_DATA'"
unified:
  user-directory:
    users:
      list:
        resource: members.list
        follow_up:
          detail: {{ resource: users.get, id: "{asked}", not_found: skip }}
        response_mapping: '{{ "id": login, "name": $detail.name }}'
"#
        ))
    };
    let (status, body) = list_once(
        &mapping("login = 'alan' ? undefined : login"),
        &server.origin,
        "7",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"],
        json!([
            {"id": "ada", "name": "ada (name)"},
            {"id": "grace", "name": "grace (name)"},
            {"id": "alan"},
            {"id": "edsger", "name": "edsger (name)"},
            {"id": "barbara"},
            {"id": "gone"},
            {"id": "donald", "name": "donald (name)"}
        ])
    );
    let (status, body) = list_once(&mapping("login"), &server.origin, "7").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["message"],
        "the `detail` follow-up request of integration `members` failed: LIMIT_EXCEEDED for alan"
    );
}

/// A filter on a field built from a page-level follow-up the account does not make (its flag
/// unset) is a 400 naming it; with the flag it filters. A field from a per-record follow-up is
/// filtered as any other, since such a follow-up may be asked for some records only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_on_a_field_from_follow_ups_the_account_does_not_make_says_so() {
    async fn groups() -> Response {
        axum::Json(json!({"groups": [{"id": "g1", "name": "admins", "members": ["ada", "grace"]}]}))
            .into_response()
    }
    async fn detail(Path(login): Path<String>) -> Response {
        axum::Json(json!({"title": format!("{login}'s title")})).into_response()
    }
    async fn last_page_groups() -> Response {
        axum::Json(json!({"groups": [{"id": "g2", "name": "night", "members": ["donald"]}]}))
            .into_response()
    }
    let server = spawn_provider(
        Router::new()
            .route("/members", get(members))
            .route("/groups", get(groups))
            .route("/last-page-groups", get(last_page_groups))
            .route("/users/{login}", get(detail)),
    )
    .await;
    let mapping = members_mapping(
        r#"  groups:
    list: { path: /groups, records: groups }
  users:
    get: { path: "/users/{{id}}", records: "$" }
unified:
  user-directory:
    users:
      list:
        resource: members.list
        follow_up:
          groups:
            resource: groups.list
            per: page
            id: "$context.read_groups = true ? 'all'"
            key: login
            matches: members
          detail: { resource: users.get, id: "$context.read_titles = true ? login" }
        response_mapping: '{ "id": login, "title": $detail.title, "groups": $groups.{ "id": id, "name": name }[] }'
"#,
    );
    let off = members_gateway(&mapping, &server.origin).await;
    let (status, body) = off.list("&group_id=g1").await;
    assert_eq!(
        (status, body["message"].clone()),
        (
            400,
            json!(
                "filter `group_id` cannot match anything for integrated account `acc`: integration `members` builds `groups` from its follow-ups (`groups`), which are not made for this account (an opt-in context flag such as `read_groups` unset?)"
            )
        ),
        "{body}"
    );
    let (status, body) = off.list("&title=ada%27s%20title").await;
    assert_eq!((status, body["result"].clone()), (200, json!([])), "{body}");
    let on = members_gateway_with(
        &mapping,
        json!({"url": server.origin, "token": "t", "read_groups": true}),
    )
    .await;
    let (status, body) = on.list("&group_id=g1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"],
        json!([
            {"id": "ada", "groups": [{"id": "g1", "name": "admins"}]},
            {"id": "grace", "groups": [{"id": "g1", "name": "admins"}]}
        ])
    );
    // With the flag, a first page whose users are in no group was still asked for groups: the
    // filter walks on to the page that has its member (pages of 3), not a 400.
    let on = members_gateway_with(
        &mapping
            .replace("path: /groups,", "path: /last-page-groups,")
            .replace(
                "page_size_param: limit }",
                "page_size_param: limit, max_page_size: 3 }",
            ),
        json!({"url": server.origin, "token": "t", "read_groups": true}),
    )
    .await;
    let (status, body) = on.list("&group_id=g2&limit=3").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"],
        json!([{"id": "donald", "groups": [{"id": "g2", "name": "night"}]}])
    );
}

/// A gateway serving one account of `mapping`, whose provider is at `origin`.
async fn members_gateway(mapping: &str, origin: &str) -> MembersGateway {
    members_gateway_with(mapping, json!({"url": origin, "token": "t"})).await
}

/// A gateway serving one account of `mapping` with `context` (the provider's `url` in it).
async fn members_gateway_with(mapping: &str, context: Value) -> MembersGateway {
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: "members".into(),
        context,
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    MembersGateway(serve_accounts(catalog_with("members", mapping), vec![account]).await)
}

struct MembersGateway(unigate_tests::RunningGateway);

impl MembersGateway {
    async fn list(&self, query: &str) -> (u16, Value) {
        get_json(
            &format!(
                "{}/unified/user-directory/users?integrated_account_id=acc&truto_ignore_remote_data=true{query}",
                self.0.origin
            ),
            Some(TEST_TOKEN),
        )
        .await
    }

    /// The get of user `id`.
    async fn get(&self, id: &str) -> (u16, Value) {
        get_json(
            &format!(
                "{}/unified/user-directory/users/{id}?integrated_account_id=acc&truto_ignore_remote_data=true",
                self.0.origin
            ),
            Some(TEST_TOKEN),
        )
        .await
    }
}

/// A mapping of the members provider: its file-level lines and the members list, then `rest`
/// (more resources, then `unified`).
fn members_mapping(rest: &str) -> String {
    format!(
        r#"name: Members provider
docs: https://example.test/docs
base_url: "{{{{context.url}}}}"
auth: {{ kind: bearer, token: "{{{{context.token}}}}" }}
pagination: {{ style: offset, offset_param: offset, page_size_param: limit }}
resources:
  members:
    list: {{ path: /members, records: members }}
{rest}"#
    )
}

/// The first unified page (`limit` records, and any parameters after it) of one account of
/// `mapping`, whose provider is at `origin`.
async fn list_once(mapping: &str, origin: &str, limit: &str) -> (u16, Value) {
    members_gateway(mapping, origin)
        .await
        .list(&format!("&limit={limit}"))
        .await
}

/// An admin write to the account drops the follow-up answers kept for its walks: the walk
/// continued by its cursor asks the catalog again (the account may be another tenant's now).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_write_drops_the_answers_kept_for_the_accounts_walks() {
    const ADMIN: &str = "admin-token-0123456789";
    async fn org(State(calls): State<Arc<AtomicUsize>>) -> Response {
        calls.fetch_add(1, Ordering::SeqCst);
        axum::Json(json!({"org": {"name": "Acme"}})).into_response()
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let server = spawn_provider(
        Router::new()
            .route("/members", get(members))
            .route("/org", get(org))
            .with_state(calls.clone()),
    )
    .await;
    let mapping = &members_mapping(
        r#"  org:
    get: { path: /org, records: org }
unified:
  user-directory:
    users:
      list:
        resource: members.list
        follow_up:
          org: { resource: org.get, per: page, id: "'mine'" }
        response_mapping: '{ "id": login, "organizations": [{ "name": $org.name }] }'
"#,
    );
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: "members".into(),
        context: json!({"url": server.origin, "token": "t"}),
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let gateway = unigate_gateway::Gateway::assemble_with_store(
        catalog_with("members", mapping),
        Arc::new(unigate_store::MemoryStore::new(vec![account]).unwrap()),
        unigate_upstream::UpstreamConfig::default(),
        unigate_engine::EngineConfig::default(),
        b"test-cursor-secret-0123456789",
        &[TEST_TOKEN.to_owned()],
        &[ADMIN.to_owned()],
    )
    .unwrap();
    let gateway = MembersGateway(unigate_tests::serve(gateway).await);
    let (status, body) = gateway.list("&limit=2").await;
    assert_eq!(status, 200, "{body}");
    let cursor = body["next_cursor"].as_str().unwrap().to_owned();
    let (status, body) = gateway
        .list(&format!("&limit=2&next_cursor={cursor}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the walk's next call reuses the answer"
    );
    let cursor = body["next_cursor"].as_str().unwrap().to_owned();
    let status = reqwest::Client::new()
        .patch(format!(
            "{}/admin/integrated-accounts/acc",
            gateway.0.origin
        ))
        .bearer_auth(ADMIN)
        .json(&json!({"context": {"token": "t2"}}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let (status, body) = gateway
        .list(&format!("&limit=2&next_cursor={cursor}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"][0]["organizations"],
        json!([{"name": "Acme"}])
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "asked again after the admin write"
    );
}

/// A chained follow-up stopped part-way (a group's members call failing: an outage, or a rate
/// limit longer than the gateway waits, after which the account is held) fails the call, and
/// the account's next call asks only the groups not answered yet: a large account's retries
/// make progress instead of starting over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chained_follow_up_stopped_part_way_resumes_on_the_next_call() {
    #[derive(Default)]
    struct Seen {
        calls: Mutex<Vec<String>>,
        limited_once: std::sync::atomic::AtomicBool,
    }
    async fn groups() -> Response {
        axum::Json(json!({"groups": [{"id": 1, "name": "admins"}, {"id": 2, "name": "ops"}]}))
            .into_response()
    }
    async fn group_members(State(seen): State<Arc<Seen>>, Path(id): Path<String>) -> Response {
        seen.calls.lock().unwrap().push(id.clone());
        if id == "2" && !seen.limited_once.swap(true, Ordering::SeqCst) {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"message": "try again"})),
            )
                .into_response();
        }
        let members = match id.as_str() {
            "1" => json!([{"login": "ada"}]),
            _ => json!([{"login": "ada"}, {"login": "grace"}]),
        };
        axum::Json(json!({ "members": members })).into_response()
    }
    let seen = Arc::new(Seen::default());
    let server = spawn_provider(
        Router::new()
            .route("/members", get(members))
            .route("/groups", get(groups))
            .route("/groups/{id}/members", get(group_members))
            .with_state(seen.clone()),
    )
    .await;
    let mapping = &members_mapping(
        r#"  groups:
    list: { path: /groups, records: groups }
  group_members:
    list: { path: "/groups/{{id}}/members", records: members }
unified:
  user-directory:
    users:
      list:
        resource: members.list
        follow_up:
          catalog: { resource: groups.list, per: page, id: "'all'" }
          groups: { resource: group_members.list, over: catalog, id: id, key: login, matches: login, concurrency: 1 }
        response_mapping: '{ "id": login, "groups": $groups.name[] }'
"#,
    );
    let gateway = members_gateway(mapping, &server.origin).await;
    let (status, body) = gateway.list("&limit=2").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(*seen.calls.lock().unwrap(), ["1", "2"]);
    let (status, body) = gateway.list("&limit=2").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"],
        json!([{"id": "ada", "groups": ["admins", "ops"]}, {"id": "grace", "groups": ["ops"]}])
    );
    assert_eq!(
        *seen.calls.lock().unwrap(),
        ["1", "2", "2"],
        "group 1 was not asked again"
    );
    // Done: the next call is a fresh walk, asking every group.
    let (status, _) = gateway.list("&limit=2").await;
    assert_eq!(status, 200);
    assert_eq!(seen.calls.lock().unwrap().len(), 5);
}

/// A walked follow-up stopped part-way (its second page failing) fails the call, and the
/// account's next call takes the walk up where it stood: the first page is not asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walked_follow_up_stopped_part_way_resumes_on_the_next_call() {
    let seen = Arc::new(WalkedGroups::default());
    seen.fail_once.store(true, Ordering::SeqCst);
    let server = walked_groups_provider(&seen).await;
    let gateway = members_gateway(WALKED_GROUPS_MAPPING, &server.origin).await;
    let (status, body) = gateway.list("&limit=3").await;
    assert_eq!(status, 502, "{body}");
    let (status, body) = gateway.list("&limit=3").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], walked_groups_result());
    assert_eq!(
        *seen.calls.lock().unwrap(),
        ["per_page=2", "per_page=2&after=g2", "per_page=2&after=g2"],
        "the first page was not asked again"
    );
}

/// A per-record follow-up stopped part-way (one user's detail call failing) fails the call, and
/// the account's next call asks only the users not answered yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_record_follow_up_stopped_part_way_resumes_on_the_next_call() {
    #[derive(Default)]
    struct Seen {
        calls: Mutex<Vec<String>>,
        failed_once: std::sync::atomic::AtomicBool,
    }
    async fn detail(State(seen): State<Arc<Seen>>, Path(login): Path<String>) -> Response {
        seen.calls.lock().unwrap().push(login.clone());
        if login == "alan" && !seen.failed_once.swap(true, Ordering::SeqCst) {
            return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
        }
        axum::Json(json!({"login": login, "name": format!("{login} (name)")})).into_response()
    }
    let seen = Arc::new(Seen::default());
    let server = spawn_provider(
        Router::new()
            .route("/members", get(members))
            .route("/users/{login}", get(detail))
            .with_state(seen.clone()),
    )
    .await;
    let mapping = &members_mapping(
        r#"  users:
    get: { path: "/users/{{id}}", records: "$" }
unified:
  user-directory:
    users:
      list:
        resource: members.list
        follow_up:
          detail: { resource: users.get, id: login, concurrency: 1 }
        response_mapping: '{ "id": login, "name": $detail.name }'
"#,
    );
    let gateway = members_gateway(mapping, &server.origin).await;
    let (status, body) = gateway.list("&limit=3").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(*seen.calls.lock().unwrap(), ["ada", "grace", "alan"]);
    let (status, body) = gateway.list("&limit=3").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"],
        json!([
            {"id": "ada", "name": "ada (name)"},
            {"id": "grace", "name": "grace (name)"},
            {"id": "alan", "name": "alan (name)"}
        ])
    );
    assert_eq!(
        *seen.calls.lock().unwrap(),
        ["ada", "grace", "alan", "alan"],
        "ada and grace were not asked again"
    );
}

/// A kept batch stopped part-way (one team's call failing) fails the call, and the account's
/// next call, a walk of its own, asks only the ids not answered yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_batch_stopped_part_way_resumes_on_the_next_call() {
    #[derive(Default)]
    struct Seen {
        calls: Mutex<Vec<String>>,
        failed_once: std::sync::atomic::AtomicBool,
    }
    async fn groups(
        State(seen): State<Arc<Seen>>,
        Query(query): Query<std::collections::HashMap<String, String>>,
    ) -> Response {
        let team = query.get("team").cloned().unwrap_or_default();
        seen.calls.lock().unwrap().push(team.clone());
        if team == "g" && !seen.failed_once.swap(true, Ordering::SeqCst) {
            return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
        }
        team_groups(&team)
    }
    let seen = Arc::new(Seen::default());
    let server = spawn_provider(
        Router::new()
            .route("/members", get(members))
            .route("/groups", get(groups))
            .with_state(seen.clone()),
    )
    .await;
    let mapping = &members_mapping(
        r#"  groups:
    list: { path: /groups, records: groups }
unified:
  user-directory:
    users:
      list:
        resource: members.list
        follow_up:
          groups:
            resource: groups.list
            per: page
            id: "login.$substring($, 0, 1)"
            batch: { size: 1, param: team, keep: true }
            key: login
            matches: members
            concurrency: 1
        response_mapping: '{ "id": login, "groups": [$groups.{ "id": id }] }'
"#,
    );
    let gateway = members_gateway(mapping, &server.origin).await;
    let (status, body) = gateway.list("&limit=3").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(*seen.calls.lock().unwrap(), ["a", "g"]);
    let (status, body) = gateway.list("&limit=3").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"],
        json!([
            {"id": "ada", "groups": [{"id": "grp-a"}]},
            {"id": "grace", "groups": [{"id": "grp-g"}]},
            {"id": "alan", "groups": [{"id": "grp-a"}]}
        ])
    );
    assert_eq!(
        *seen.calls.lock().unwrap(),
        ["a", "g", "g"],
        "team a was not asked again"
    );
}

/// A follow-up chained over a catalog may give each page record the matching records of its
/// calls' answers (`gives: answers`) rather than the catalog records whose calls matched: the
/// workspaces are the catalog, each workspace's answer lists its groups with their members, and a
/// user gets the groups (with a membership record's own fields), in catalog order. Asked once a
/// walk, as any chained follow-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chained_follow_up_may_give_the_records_of_its_answers() {
    async fn workspaces(State(calls): State<Arc<Mutex<Vec<String>>>>) -> Response {
        calls.lock().unwrap().push("workspaces".to_owned());
        axum::Json(
            json!({"workspaces": [{"id": "w1", "name": "Sales"}, {"id": "w2", "name": "Ops"}]}),
        )
        .into_response()
    }
    async fn groups(
        State(calls): State<Arc<Mutex<Vec<String>>>>,
        Path(workspace): Path<String>,
    ) -> Response {
        calls.lock().unwrap().push(workspace.clone());
        let groups = match workspace.as_str() {
            "w1" => json!([
                {"id": "g1", "name": "closers", "members": ["ada", "edsger"]},
                {"id": "g2", "name": "empty", "members": []}
            ]),
            _ => json!([{"id": "g3", "name": "night", "members": ["ada", "donald"]}]),
        };
        axum::Json(json!({ "groups": groups })).into_response()
    }
    let calls = Arc::new(Mutex::new(Vec::new()));
    let server = spawn_provider(
        Router::new()
            .route("/members", get(members))
            .route("/workspaces", get(workspaces))
            .route("/workspaces/{id}/groups", get(groups))
            .with_state(calls.clone()),
    )
    .await;
    let mapping = members_mapping(
        r#"  workspaces:
    list: { path: /workspaces, records: workspaces }
  workspace_groups:
    list: { path: "/workspaces/{{id}}/groups", records: groups }
unified:
  user-directory:
    users:
      list:
        resource: members.list
        follow_up:
          workspaces: { resource: workspaces.list, per: page, id: "'all'" }
          groups:
            resource: workspace_groups.list
            over: workspaces
            id: id
            key: login
            matches: members
            gives: answers
        response_mapping: '{ "id": login, "groups": $count($groups) > 0 ? [$groups.{ "id": id, "name": name }] }'
"#,
    );
    let gateway = members_gateway(&mapping, &server.origin).await;
    let (status, body) = gateway.list("&limit=7").await;
    assert_eq!(status, 200, "{body}");
    let groups = |login: &str| {
        body["result"]
            .as_array()
            .unwrap()
            .iter()
            .find(|user| user["id"] == json!(login))
            .map(|user| user["groups"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        groups("ada"),
        json!([{"id": "g1", "name": "closers"}, {"id": "g3", "name": "night"}])
    );
    assert_eq!(groups("edsger"), json!([{"id": "g1", "name": "closers"}]));
    assert_eq!(groups("donald"), json!([{"id": "g3", "name": "night"}]));
    assert_eq!(groups("grace"), Value::Null);
    let mut asked = calls.lock().unwrap().clone();
    asked.sort();
    assert_eq!(asked, ["w1", "w2", "workspaces"]);
}

/// A field the list itself gives only with an opt-in flag (`opt_in_fields`: an `$expand` or a
/// GraphQL field the query mapping adds with it) answers a filter on it with a 400 naming the
/// flag for an account without it, before any provider call; with the flag it filters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_on_an_opt_in_field_of_an_account_without_its_flag_says_so() {
    let calls = Arc::new(AtomicUsize::new(0));
    async fn counted(State(calls): State<Arc<AtomicUsize>>, query: Query<Page>) -> Response {
        calls.fetch_add(1, Ordering::SeqCst);
        members(query).await
    }
    let server = spawn_provider(
        Router::new()
            .route("/members", get(counted))
            .with_state(calls.clone()),
    )
    .await;
    let mapping = members_mapping(
        r#"unified:
  user-directory:
    users:
      list:
        resource: members.list
        opt_in_fields: { groups: read_groups }
        response_mapping: |
          {
            "id": login,
            "groups": ($context.read_groups = true or $context.read_groups = "true")
              ? [{ "id": "team-" & $substring(login, 0, 1) }]
          }
"#,
    );
    let off = members_gateway(&mapping, &server.origin).await;
    let (status, body) = off.list("&group_id=team-a").await;
    assert_eq!(
        (status, body["message"].clone()),
        (
            400,
            json!(
                "filter `group_id` cannot match anything for integrated account `acc`: integration `members` builds `groups` only for an account whose context sets `read_groups`, which this one does not"
            )
        ),
        "{body}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no provider call");
    let on = members_gateway_with(
        &mapping,
        json!({"url": server.origin, "token": "t", "read_groups": "true"}),
    )
    .await;
    let (status, body) = on.list("&group_id=team-a").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"],
        json!([
            {"id": "ada", "groups": [{"id": "team-a"}]},
            {"id": "alan", "groups": [{"id": "team-a"}]}
        ])
    );
}

/// A provider that answers a page past the end with its last page again (`last_page_repeats`):
/// a page identical to the one before ends the walk, its records not given twice, where it
/// would otherwise fail the call as a loop; for the list and for a walked follow-up alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_last_page_ends_the_walk_where_the_provider_says_it_repeats() {
    #[derive(Deserialize)]
    struct Numbered {
        page: Option<usize>,
    }
    /// Pages of 3 numbered from 1; a page past the end is the last page again.
    fn clamped<T: Clone>(items: &[T], page: Option<usize>) -> Vec<T> {
        let pages = items.len().div_ceil(3);
        let page = page.unwrap_or(1).clamp(1, pages);
        items[(page - 1) * 3..(page * 3).min(items.len())].to_vec()
    }
    async fn users(Query(query): Query<Numbered>) -> Response {
        let users: Vec<Value> = clamped(&LOGINS, query.page)
            .into_iter()
            .map(|login| json!({"login": login}))
            .collect();
        axum::Json(json!({ "members": users })).into_response()
    }
    async fn groups(Query(query): Query<Numbered>) -> Response {
        let groups: Vec<Value> = clamped(&LOGINS, query.page)
            .into_iter()
            .map(|login| json!({"id": format!("own-{login}"), "members": [login]}))
            .collect();
        axum::Json(json!({ "groups": groups })).into_response()
    }
    let server = spawn_provider(
        Router::new()
            .route("/members", get(users))
            .route("/groups", get(groups)),
    )
    .await;
    let mapping = |repeats: &str| {
        format!(
            r#"name: Members provider
docs: https://example.test/docs
base_url: "{{{{context.url}}}}"
auth: {{ kind: bearer, token: "{{{{context.token}}}}" }}
pagination: {{ style: page, page_param: page, page_size_param: per_page, max_page_size: 3{repeats} }}
resources:
  members:
    list: {{ path: /members, records: members }}
  groups:
    list: {{ path: /groups, records: groups }}
unified:
  user-directory:
    users:
      list:
        resource: members.list
        follow_up:
          groups: {{ resource: groups.list, per: page, id: "'all'", walk: true, key: login, matches: members }}
        response_mapping: '{{ "id": login, "groups": $count($groups) > 0 ? [$groups.id] }}'
"#
        )
    };
    // 7 logins: pages of 3, 3 and 1; a short last page ends these walks as it is.
    let gateway = members_gateway(&mapping(", last_page_repeats: true"), &server.origin).await;
    let (status, body) = gateway.list("&limit=3&truto_ignore_limit=true").await;
    assert_eq!(status, 200, "{body}");
    let expected: Vec<Value> = LOGINS
        .iter()
        .map(|login| json!({"id": login, "groups": [format!("own-{login}")]}))
        .collect();
    assert_eq!(body["result"], json!(expected));
    // With short pages not ending the walk (`short_page_ends: false`), only the repeated page
    // can: it does with `last_page_repeats`, and fails the call as a loop without it.
    let exact = mapping(", last_page_repeats: true, short_page_ends: false");
    let gateway = members_gateway(&exact, &server.origin).await;
    let (status, body) = gateway.list("&limit=3&truto_ignore_limit=true").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], json!(expected));
    let gateway = members_gateway(&mapping(", short_page_ends: false"), &server.origin).await;
    let (status, body) = gateway.list("&limit=3&truto_ignore_limit=true").await;
    assert_eq!(
        (status, body["message"].clone()),
        (
            502,
            json!(
                "the `groups` follow-up request of integration `members` failed: the provider returned the same page twice; stopping instead of looping"
            )
        ),
        "{body}"
    );
}

/// A get makes the list's per-record follow-ups its mapping reads (a user's details), as the
/// list does for each record, and not its page-level ones (the account's groups catalog): those
/// would walk the whole catalog for one record, so the fields built from them are absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_makes_the_per_record_follow_ups_only() {
    async fn member(Path(login): Path<String>) -> Response {
        axum::Json(json!({"login": login})).into_response()
    }
    async fn detail(Path(login): Path<String>) -> Response {
        axum::Json(json!({"name": format!("{login} (name)")})).into_response()
    }
    async fn groups(State(calls): State<Arc<AtomicUsize>>) -> Response {
        calls.fetch_add(1, Ordering::SeqCst);
        axum::Json(json!({"groups": [{"id": "g1", "members": ["ada"]}]})).into_response()
    }
    let group_calls = Arc::new(AtomicUsize::new(0));
    let server = spawn_provider(
        Router::new()
            .route("/members", get(members))
            .route("/members/{login}", get(member))
            .route("/users/{login}", get(detail))
            .route("/groups", get(groups))
            .with_state(group_calls.clone()),
    )
    .await;
    let mapping = members_mapping(
        r#"    get: { path: "/members/{{id}}", records: "$" }
  users:
    get: { path: "/users/{{id}}", records: "$" }
  groups:
    list: { path: /groups, records: groups }
unified:
  user-directory:
    users:
      list:
        resource: members.list
        follow_up:
          detail: { resource: users.get, id: login }
          groups: { resource: groups.list, per: page, id: "'all'", key: login, matches: members }
        response_mapping: |
          {
            "id": login,
            "name": $detail.name,
            "groups": $count($groups) > 0 ? [$groups.{ "id": id }]
          }
      get:
        resource: members.get
"#,
    );
    let gateway = members_gateway(&mapping, &server.origin).await;
    let (status, body) = gateway.get("ada").await;
    assert_eq!(
        (status, body),
        (200, json!({"id": "ada", "name": "ada (name)"}))
    );
    assert_eq!(group_calls.load(Ordering::SeqCst), 0, "no groups catalog");
    // The list gives both.
    let (status, body) = gateway.list("&limit=1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"],
        json!([{"id": "ada", "name": "ada (name)", "groups": [{"id": "g1"}]}])
    );
}

/// A page-level follow-up marked `on_get` (a catalog of one call) is made by a get too, with the
/// get's record as its page; and a per-record follow-up reads `$query.id` on a get, so a file
/// can ask one user's groups of that user on a get, where the list pairs them from a catalog.
/// The chained and unmarked page-level ones are still not made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_makes_a_page_follow_up_marked_on_get_and_knows_its_id() {
    type Calls = Arc<Mutex<Vec<String>>>;
    async fn member(Path(login): Path<String>) -> Response {
        axum::Json(json!({"login": login})).into_response()
    }
    async fn teams(State(calls): State<Calls>) -> Response {
        calls.lock().unwrap().push("teams".to_owned());
        axum::Json(json!({"teams": [
            {"id": "t1", "members": ["ada", "grace"]},
            {"id": "t2", "members": ["grace"]}
        ]}))
        .into_response()
    }
    async fn groups(State(calls): State<Calls>) -> Response {
        calls.lock().unwrap().push("groups".to_owned());
        axum::Json(json!({"groups": [{"id": "g1", "members": ["ada"]}]})).into_response()
    }
    async fn user_groups(State(calls): State<Calls>, Path(login): Path<String>) -> Response {
        calls.lock().unwrap().push(format!("user_groups {login}"));
        axum::Json(json!({"groups": [{"id": "g1"}]})).into_response()
    }
    let calls: Calls = Arc::default();
    let server = spawn_provider(
        Router::new()
            .route("/members", get(members))
            .route("/members/{login}", get(member))
            .route("/teams", get(teams))
            .route("/groups", get(groups))
            .route("/users/{login}/groups", get(user_groups))
            .with_state(calls.clone()),
    )
    .await;
    let mapping = members_mapping(
        r#"    get: { path: "/members/{{id}}", records: "$" }
  teams:
    list: { path: /teams, records: teams }
  groups:
    list: { path: /groups, records: groups }
  user_groups:
    list: { path: "/users/{{id}}/groups", records: groups }
unified:
  user-directory:
    users:
      list:
        resource: members.list
        follow_up:
          teams: { resource: teams.list, per: page, id: "'all'", key: login, matches: members, on_get: true }
          groups: { resource: groups.list, per: page, id: "'all'", key: login, matches: members }
          user_groups: { resource: user_groups.list, id: "$type($query.id) = 'string' ? login" }
        response_mapping: |
          {
            "id": login,
            "workspaces": $count($teams) > 0 ? [$teams.{ "id": id }],
            "groups": (
              $all := $append($groups, $user_groups);
              $count($all) > 0 ? [$all.{ "id": id }]
            )
          }
      get:
        resource: members.get
"#,
    );
    let gateway = members_gateway(&mapping, &server.origin).await;
    let (status, body) = gateway.get("ada").await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"id": "ada", "workspaces": [{"id": "t1"}], "groups": [{"id": "g1"}]})
        )
    );
    let mut made = calls.lock().unwrap().clone();
    made.sort();
    assert_eq!(made, ["teams", "user_groups ada"]);
    // The list pairs both from its catalogs and asks no user's groups.
    calls.lock().unwrap().clear();
    let (status, body) = gateway.list("&limit=1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"],
        json!([{"id": "ada", "workspaces": [{"id": "t1"}], "groups": [{"id": "g1"}]}])
    );
    let mut made = calls.lock().unwrap().clone();
    made.sort();
    assert_eq!(made, ["groups", "teams"]);
}

/// A get answers the record of the id asked, never another: a provider that reads an alias by
/// the same path (`me`: the credential's own user) answers someone else, which is the gateway's
/// own 404 naming both ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_answered_with_another_record_is_not_found() {
    async fn member(Path(login): Path<String>) -> Response {
        let login = if login == "me" {
            "ada".to_owned()
        } else {
            login
        };
        axum::Json(json!({"login": login})).into_response()
    }
    let server = spawn_provider(Router::new().route("/members/{login}", get(member))).await;
    let mapping = members_mapping(
        r#"    get: { path: "/members/{{id}}", records: "$" }
unified:
  user-directory:
    users:
      list:
        resource: members.list
        response_mapping: '{ "id": login }'
      get:
        resource: members.get
"#,
    );
    let gateway = members_gateway(&mapping, &server.origin).await;
    assert_eq!(gateway.get("grace").await, (200, json!({"id": "grace"})));
    let (status, body) = gateway.get("me").await;
    assert_eq!(
        (status, body["message"].clone()),
        (
            404,
            json!("integration `members` answered the record of `ada` when asked for `me`")
        ),
        "{body}"
    );
}

/// A follow-up whose resource has its own `auth` (a SCIM token beside the REST one) sends that
/// credential and only that one; the list sends the file's. A refusal of the resource's
/// credential fails the call naming the follow-up, cleaned of the credential it echoes, and does
/// not mark the account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_ups_resource_sends_its_own_credential() {
    const SCIM_TOKEN: &str = "scim-secret-0123456789";
    type Seen = Arc<Mutex<Vec<String>>>;
    /// Every Authorization header a request carried.
    fn authorizations(headers: &axum::http::HeaderMap) -> Vec<&str> {
        headers
            .get_all("authorization")
            .iter()
            .map(|value| value.to_str().unwrap())
            .collect()
    }
    async fn listed(State(seen): State<Seen>, headers: axum::http::HeaderMap) -> Response {
        let sent = authorizations(&headers);
        seen.lock()
            .unwrap()
            .push(format!("members: {}", sent.join(" | ")));
        axum::Json(json!({"members": [{"login": "ada"}, {"login": "grace"}]})).into_response()
    }
    async fn scim_groups(State(seen): State<Seen>, headers: axum::http::HeaderMap) -> Response {
        let sent = authorizations(&headers);
        seen.lock()
            .unwrap()
            .push(format!("groups: {}", sent.join(" | ")));
        if sent != [format!("Bearer {SCIM_TOKEN}")] {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"detail": format!("invalid credential {}", sent.join(", "))})),
            )
                .into_response();
        }
        axum::Json(json!({"Resources": [
            {"id": "g1", "displayName": "Ops", "members": [{"value": "ada"}]}
        ]}))
        .into_response()
    }
    let seen: Seen = Arc::default();
    let server = spawn_provider(
        Router::new()
            .route("/members", get(listed))
            .route("/scim/Groups", get(scim_groups))
            .with_state(seen.clone()),
    )
    .await;
    let mapping = members_mapping(
        r#"  groups:
    list:
      path: /scim/Groups
      records: Resources
      auth: { kind: bearer, token: "{{context.scim_token}}" }
unified:
  user-directory:
    users:
      list:
        resource: members.list
        follow_up:
          groups: { resource: groups.list, per: page, id: "'all'" }
        response_mapping: |
          (
            $login := login;
            $in := $groups[$login in members.value];
            { "id": login, "groups": $count($in) > 0 ? [$in.{ "id": id, "name": displayName }] }
          )
"#,
    );
    let context = |scim_token: &str| json!({"url": server.origin, "token": "rest-token-0123456789", "scim_token": scim_token});
    let gateway = members_gateway_with(&mapping, context(SCIM_TOKEN)).await;
    let (status, body) = gateway.list("&limit=2").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"],
        json!([{"id": "ada", "groups": [{"id": "g1", "name": "Ops"}]}, {"id": "grace"}])
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "members: Bearer rest-token-0123456789",
            "groups: Bearer scim-secret-0123456789"
        ]
    );

    seen.lock().unwrap().clear();
    let refused = members_gateway_with(&mapping, context("stale-scim-0123456789")).await;
    for _ in 0..2 {
        let (status, body) = refused.list("&limit=2").await;
        assert_eq!(
            (status, body),
            (
                401,
                json!({"statusCode": 401, "error": "Unauthorized", "truto_is_remote_error": true,
                       "message": "the `groups` follow-up request of integration `members` failed: invalid credential [redacted]",
                       "raw_response": {"detail": "invalid credential [redacted]"}})
            )
        );
    }
    // Not marked: the second call asked the provider again.
    assert_eq!(seen.lock().unwrap().len(), 4);
}

/// A chain of two levels: a catalog (workspaces), a follow-up chained over it that gives its
/// answers (each workspace's permission profiles, which name no user), and one chained over
/// those (each profile's users): each page record gets the profiles whose users list it, every
/// call made once a walk, the second page reusing them all. The profiles carry the workspace
/// they were asked for (`$id` in their `records`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_may_be_chained_over_the_answers_of_a_chained_one() {
    type Calls = Arc<Mutex<Vec<String>>>;
    async fn workspaces(State(calls): State<Calls>) -> Response {
        calls.lock().unwrap().push("workspaces".to_owned());
        axum::Json(json!({"workspaces": [{"id": "w1"}, {"id": "w2"}]})).into_response()
    }
    async fn profiles(State(calls): State<Calls>, Path(workspace): Path<String>) -> Response {
        calls.lock().unwrap().push(format!("profiles {workspace}"));
        let profiles = match workspace.as_str() {
            "w1" => json!([{"id": "p1", "name": "Sales rep"}, {"id": "p2", "name": "Manager"}]),
            _ => json!([{"id": "p3", "name": "Ops viewer"}]),
        };
        axum::Json(json!({ "profiles": profiles })).into_response()
    }
    async fn profile_users(State(calls): State<Calls>, Path(profile): Path<String>) -> Response {
        calls.lock().unwrap().push(format!("users {profile}"));
        let users = match profile.as_str() {
            "p1" => json!([{"login": "ada"}, {"login": "grace"}]),
            "p2" => json!([{"login": "alan"}]),
            _ => json!([{"login": "ada"}, {"login": "donald"}]),
        };
        axum::Json(json!({ "users": users })).into_response()
    }
    let calls: Calls = Arc::default();
    let server = spawn_provider(
        Router::new()
            .route("/members", get(members))
            .route("/workspaces", get(workspaces))
            .route("/workspaces/{id}/profiles", get(profiles))
            .route("/profiles/{id}/users", get(profile_users))
            .with_state(calls.clone()),
    )
    .await;
    let mapping = members_mapping(
        r#"  workspaces:
    list: { path: /workspaces, records: workspaces }
  profiles:
    list: { path: "/workspaces/{{id}}/profiles", records: 'profiles.$merge([$, {"workspace": $id}])' }
  profile_users:
    list: { path: "/profiles/{{id}}/users", records: users }
unified:
  user-directory:
    users:
      list:
        resource: members.list
        follow_up:
          profile_users: { resource: profile_users.list, over: profiles, id: id, key: login, matches: login }
          profiles: { resource: profiles.list, over: workspaces, id: id, gives: answers }
          workspaces: { resource: workspaces.list, per: page, id: "'all'" }
        response_mapping: |
          {
            "id": login,
            "roles": $count($profile_users) > 0 ? [$profile_users.{ "id": id, "name": name }],
            "workspaces": $count($profile_users) > 0 ? [$distinct($profile_users.workspace).{ "id": $ }]
          }
"#,
    );
    let gateway = members_gateway(&mapping, &server.origin).await;
    let (status, body) = gateway.list("&limit=4").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"],
        json!([
            {"id": "ada", "roles": [{"id": "p1", "name": "Sales rep"}, {"id": "p3", "name": "Ops viewer"}],
             "workspaces": [{"id": "w1"}, {"id": "w2"}]},
            {"id": "grace", "roles": [{"id": "p1", "name": "Sales rep"}], "workspaces": [{"id": "w1"}]},
            {"id": "alan", "roles": [{"id": "p2", "name": "Manager"}], "workspaces": [{"id": "w1"}]},
            {"id": "edsger"}
        ])
    );
    let cursor = body["next_cursor"].as_str().unwrap().to_owned();
    let (status, body) = gateway
        .list(&format!("&limit=4&next_cursor={cursor}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"],
        json!([
            {"id": "barbara"},
            {"id": "gone"},
            {"id": "donald", "roles": [{"id": "p3", "name": "Ops viewer"}], "workspaces": [{"id": "w2"}]}
        ])
    );
    let mut asked = calls.lock().unwrap().clone();
    asked.sort();
    assert_eq!(
        asked,
        [
            "profiles w1",
            "profiles w2",
            "users p1",
            "users p2",
            "users p3",
            "workspaces"
        ]
    );
}

/// A path that names a record and its parent (a workspace's group's members): the middle level's
/// records carry the workspace they were asked for (`$id` in `records`), the last level's `id`
/// gives both as a list, read as `{{id.0}}` and `{{id.1}}`, each escaped as one path segment; a
/// group id that two workspaces share is asked once per workspace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_id_may_give_the_parts_of_a_path() {
    type Calls = Arc<Mutex<Vec<String>>>;
    async fn workspaces(State(calls): State<Calls>) -> Response {
        calls.lock().unwrap().push("workspaces".to_owned());
        axum::Json(json!({"workspaces": [{"id": "w 1"}, {"id": "w2"}]})).into_response()
    }
    async fn groups(State(calls): State<Calls>, Path(workspace): Path<String>) -> Response {
        calls.lock().unwrap().push(format!("groups {workspace}"));
        let groups = match workspace.as_str() {
            "w 1" => json!([{"id": "g1", "name": "Sales"}]),
            _ => json!([{"id": "g1", "name": "Night shift"}]),
        };
        axum::Json(json!({ "groups": groups })).into_response()
    }
    async fn members(
        State(calls): State<Calls>,
        Path((workspace, group)): Path<(String, String)>,
    ) -> Response {
        calls
            .lock()
            .unwrap()
            .push(format!("members {workspace} {group}"));
        let members = match workspace.as_str() {
            "w 1" => json!([{"login": "ada"}, {"login": "grace"}]),
            _ => json!([{"login": "ada"}]),
        };
        axum::Json(json!({ "members": members })).into_response()
    }
    let calls: Calls = Arc::default();
    let server = spawn_provider(
        Router::new()
            .route("/members", get(self::members))
            .route("/workspaces", get(workspaces))
            .route("/workspaces/{id}/groups", get(groups))
            .route(
                "/workspaces/{workspace}/groups/{group}/members",
                get(members),
            )
            .with_state(calls.clone()),
    )
    .await;
    let mapping = members_mapping(
        r#"  workspaces:
    list: { path: /workspaces, records: workspaces }
  groups:
    list: { path: "/workspaces/{{id}}/groups", records: 'groups.$merge([$, {"workspace": $id}])' }
  group_members:
    list: { path: "/workspaces/{{id.0}}/groups/{{id.1}}/members", records: members }
unified:
  user-directory:
    users:
      list:
        resource: members.list
        follow_up:
          workspaces: { resource: workspaces.list, per: page, id: "'all'" }
          groups: { resource: groups.list, over: workspaces, id: id, gives: answers }
          group_members: { resource: group_members.list, over: groups, id: "[workspace, id]", key: login, matches: login }
        response_mapping: |
          {
            "id": login,
            "groups": $count($group_members) > 0
              ? [$group_members.{ "id": workspace & "/" & id, "name": name }]
          }
"#,
    );
    let gateway = members_gateway(&mapping, &server.origin).await;
    let (status, body) = gateway.list("&limit=3").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"],
        json!([
            {"id": "ada", "groups": [{"id": "w 1/g1", "name": "Sales"}, {"id": "w2/g1", "name": "Night shift"}]},
            {"id": "grace", "groups": [{"id": "w 1/g1", "name": "Sales"}]},
            {"id": "alan"}
        ])
    );
    let mut asked = calls.lock().unwrap().clone();
    asked.sort();
    assert_eq!(
        asked,
        [
            "groups w 1",
            "groups w2",
            "members w 1 g1",
            "members w2 g1",
            "workspaces"
        ]
    );
}
