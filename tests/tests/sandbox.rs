//! The README's first command, as a test: `unigate serve --sandbox` served over real HTTP, walked
//! the way a caller walks it. Auth, required parameters, unknown accounts, cursor walking on both
//! pagination styles, cursor tampering and replay, native filters and result shaping.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use unigate_gateway::Gateway;
use unigate_tests::{RunningGateway, get_json, serve};

async fn sandbox() -> RunningGateway {
    serve(Gateway::sandbox(250).await.expect("sandbox starts")).await
}

fn users_url(gateway: &RunningGateway, query: &str) -> String {
    format!("{}/unified/user-directory/users?{query}", gateway.origin)
}

/// Follows `next_cursor` from `query` to the end; returns every page's records.
async fn walk(gateway: &RunningGateway, query: &str) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut cursor = String::new();
    loop {
        let url = users_url(gateway, &format!("{query}&next_cursor={cursor}"));
        let (status, body) = get_json(&url, Some("sandbox")).await;
        assert_eq!(status, 200, "{body}");
        let result = body["result"]
            .as_array()
            .expect("result is an array")
            .clone();
        assert_eq!(body["result_count"], json!(result.len()));
        assert_eq!(body["prev_cursor"], Value::Null);
        pages.push(result);
        match body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return pages,
        }
        assert!(pages.len() < 50, "the walk does not end");
    }
}

#[tokio::test]
async fn callers_without_a_valid_token_get_401() {
    let gateway = sandbox().await;
    let url = users_url(&gateway, "integrated_account_id=sandbox");
    let expected = json!({"statusCode": 401, "error": "Unauthorized",
        "message": "Missing or invalid API token: send `Authorization: Bearer <token>`."});
    assert_eq!(get_json(&url, None).await, (401, expected.clone()));
    assert_eq!(get_json(&url, Some("sandbox2")).await, (401, expected));
}

#[tokio::test]
async fn bad_requests_get_the_error_envelope() {
    let gateway = sandbox().await;
    let cases = [
        ("limit=10", 400, "`integrated_account_id` is required"),
        (
            "integrated_account_id=nobody",
            404,
            "integrated account `nobody` not found",
        ),
        (
            "integrated_account_id=sandbox&limit=abc",
            400,
            "`limit` must be an integer from 1 to 10000; got `abc`",
        ),
        (
            "integrated_account_id=sandbox&status=foo",
            400,
            "filter `status` must be one of active, created, deleted, inactive, invited; got `foo`",
        ),
        (
            "integrated_account_id=sandbox&colour=red",
            400,
            "unknown query parameter `colour`",
        ),
        (
            "integrated_account_id=sandbox&product=teams",
            400,
            "`product` is a provider hint that integration `sandbox` cannot honour (its native filters: email, status)",
        ),
        (
            "integrated_account_id=sandbox&sort_by=name",
            400,
            "`sort_by=name` is not supported natively by integration `sandbox` (native sorts: none); add `truto_ignore_limit=true` to sort every record in the gateway",
        ),
        (
            "integrated_account_id=sandbox&workspace_id=w1",
            400,
            "filter `workspace_id` cannot match anything: integration `sandbox` does not provide `workspaces.id`",
        ),
        // `groups` comes from follow-ups the plain account does not make (no `read_groups`):
        // said, not answered with an empty list.
        (
            "integrated_account_id=sandbox&group_id=grp_eng",
            400,
            "filter `group_id` cannot match anything for integrated account `sandbox`: integration `sandbox` builds `groups` from its follow-ups (`groups`), which are not made for this account (an opt-in context flag such as `read_groups` unset?)",
        ),
        (
            "integrated_account_id=sandbox&next_cursor=garbage",
            400,
            "`next_cursor` is not a cursor this gateway issued",
        ),
    ];
    for (query, status, message) in cases {
        let (got_status, body) = get_json(&users_url(&gateway, query), Some("sandbox")).await;
        let reason = if status == 400 {
            "Bad Request"
        } else {
            "Not Found"
        };
        assert_eq!(
            (got_status, body),
            (
                status,
                json!({"statusCode": status, "error": reason, "message": message})
            ),
            "{query}"
        );
    }
    let (status, body) = get_json(
        &format!(
            "{}/unified/user-directory/groups?integrated_account_id=sandbox",
            gateway.origin
        ),
        Some("sandbox"),
    )
    .await;
    assert_eq!(
        (status, body["message"].clone()),
        (
            404,
            json!("unknown unified resource `user-directory/groups`")
        )
    );
}

#[tokio::test]
async fn following_next_cursor_yields_every_user_exactly_once_on_both_styles() {
    let gateway = sandbox().await;
    for account in ["sandbox", "sandbox-cursor"] {
        let pages = walk(
            &gateway,
            &format!("integrated_account_id={account}&limit=100"),
        )
        .await;
        assert_eq!(
            pages.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![100, 100, 50],
            "{account}"
        );
        let ids: Vec<String> = pages
            .iter()
            .flatten()
            .map(|user| user["id"].as_str().unwrap().to_owned())
            .collect();
        let unique: BTreeSet<&String> = ids.iter().collect();
        assert_eq!((ids.len(), unique.len()), (250, 250), "{account}");
        assert_eq!(ids.first().map(String::as_str), Some("usr_00001"));
        assert_eq!(ids.last().map(String::as_str), Some("usr_00250"));
    }
}

#[tokio::test]
async fn a_mapped_sandbox_user_is_exactly_its_unified_form() {
    let gateway = sandbox().await;
    let (status, body) = get_json(
        &users_url(&gateway, "integrated_account_id=sandbox&limit=2"),
        Some("sandbox"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["result"][1],
        json!({
            "id": "usr_00002", "first_name": "Grace", "last_name": "Hopper", "name": "Grace Hopper",
            "username": "grace.hopper2", "title": "Designer",
            "emails": [{"email": "grace.hopper2@sandbox.unigate.test", "type": "work", "is_primary": true}],
            "phones": [{"number": "+1-555-0001", "type": "work"}],
            "status": "active", "user_type": "user", "roles": [{"id": "member", "name": "member"}],
            "created_at": "2024-01-01T01:00:00Z", "updated_at": "2024-01-02T01:00:00Z",
            "last_login_at": "2024-02-10T01:00:00Z",
            "remote_data": {
                "uid": "usr_00002", "given_name": "Grace", "family_name": "Hopper",
                "display": "Grace Hopper", "login": "grace.hopper2",
                "mail": "grace.hopper2@sandbox.unigate.test", "state": "ACTIVE", "role": "member",
                "job_title": "Designer", "created": "2024-01-01T01:00:00Z",
                "modified": "2024-01-02T01:00:00Z", "phone": "+1-555-0001",
                "last_login": "2024-02-10T01:00:00Z"
            }
        })
    );
}

/// The `sandbox-groups` account (`read_groups` set) gives each user the groups holding it, read
/// by a catalog and one members walk per group; a walk by `next_cursor` gives every user its
/// groups, and the plain account makes no group call (no `groups`).
#[tokio::test]
async fn the_groups_account_gives_each_user_its_groups() {
    let gateway = sandbox().await;
    let (status, body) = get_json(
        &users_url(
            &gateway,
            "integrated_account_id=sandbox-groups&limit=3&truto_ignore_remote_data=true",
        ),
        Some("sandbox"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let groups: Vec<(Value, Value)> = body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| (user["id"].clone(), user["groups"].clone()))
        .collect();
    assert_eq!(
        groups,
        [
            (
                json!("usr_00001"),
                json!([{"id": "grp_eng", "name": "Engineering"}, {"id": "grp_admins", "name": "Admins"}])
            ),
            (
                json!("usr_00002"),
                json!([{"id": "grp_design", "name": "Design"}])
            ),
            (
                json!("usr_00003"),
                json!([{"id": "grp_product", "name": "Product"}])
            ),
        ]
    );
    let pages = walk(
        &gateway,
        "integrated_account_id=sandbox-groups&limit=100&truto_ignore_remote_data=true",
    )
    .await;
    let users: Vec<&Value> = pages.iter().flatten().collect();
    assert_eq!(users.len(), 250);
    let admins = users
        .iter()
        .filter(|user| {
            user["groups"]
                .as_array()
                .is_some_and(|groups| groups.iter().any(|group| group["id"] == "grp_admins"))
        })
        .count();
    assert_eq!(admins, 10, "one admin in 25");
    assert!(
        users.iter().all(|user| user["groups"]
            .as_array()
            .is_some_and(|groups| !groups.is_empty())),
        "every user is in its title's group"
    );
    // Filtered by group: the gateway applies it to the mapped groups.
    let pages = walk(
        &gateway,
        "integrated_account_id=sandbox-groups&limit=100&group_id=grp_admins&truto_ignore_remote_data=true",
    )
    .await;
    let ids: Vec<&Value> = pages.iter().flatten().map(|user| &user["id"]).collect();
    assert_eq!(ids.len(), 10);
    assert_eq!(ids[..2], [&json!("usr_00001"), &json!("usr_00026")]);
    let (_, plain) = get_json(
        &users_url(&gateway, "integrated_account_id=sandbox&limit=3"),
        Some("sandbox"),
    )
    .await;
    assert!(
        plain["result"]
            .as_array()
            .unwrap()
            .iter()
            .all(|user| user.get("groups").is_none())
    );
}

#[tokio::test]
async fn edited_or_replayed_cursors_are_refused() {
    let gateway = sandbox().await;
    let (_, first) = get_json(
        &users_url(&gateway, "integrated_account_id=sandbox&limit=100"),
        Some("sandbox"),
    )
    .await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    // One character of the payload changed.
    let mut edited = cursor.clone().into_bytes();
    edited[6] = if edited[6] == b'A' { b'B' } else { b'A' };
    let edited = String::from_utf8(edited).unwrap();
    let cases = [
        (
            format!("integrated_account_id=sandbox&next_cursor={edited}"),
            "`next_cursor` failed its integrity check (was it edited?)",
        ),
        (
            format!("integrated_account_id=sandbox-cursor&next_cursor={cursor}"),
            "`next_cursor` belongs to another integrated account",
        ),
        (
            format!("integrated_account_id=sandbox&status=active&next_cursor={cursor}"),
            "`next_cursor` was issued for different filters; send the same query with it, or start again without a cursor",
        ),
    ];
    for (query, message) in cases {
        let (status, body) = get_json(&users_url(&gateway, &query), Some("sandbox")).await;
        assert_eq!(
            (status, body),
            (
                400,
                json!({"statusCode": 400, "error": "Bad Request", "message": message})
            ),
            "{query}"
        );
    }
    // The untouched cursor still works, with a different page size too.
    let (status, body) = get_json(
        &users_url(
            &gateway,
            &format!("integrated_account_id=sandbox&limit=10&next_cursor={cursor}"),
        ),
        Some("sandbox"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["result"][0]["id"], "usr_00101");
}

#[tokio::test]
async fn native_filters_are_pushed_down() {
    let gateway = sandbox().await;
    let pages = walk(
        &gateway,
        "integrated_account_id=sandbox&limit=100&status=inactive",
    )
    .await;
    let users: Vec<&Value> = pages.iter().flatten().collect();
    assert_eq!(users.len(), 25);
    assert!(users.iter().all(|user| user["status"] == "inactive"));
    let pages = walk(
        &gateway,
        "integrated_account_id=sandbox-cursor&limit=100&status[in]=invited,deleted",
    )
    .await;
    let statuses: BTreeSet<&str> = pages
        .iter()
        .flatten()
        .map(|u| u["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, BTreeSet::from(["deleted", "invited"]));
    assert_eq!(pages.iter().map(Vec::len).sum::<usize>(), 50);
    let (_, body) = get_json(
        &users_url(
            &gateway,
            "integrated_account_id=sandbox&email=GRACE.HOPPER2@sandbox.unigate.test",
        ),
        Some("sandbox"),
    )
    .await;
    assert_eq!(body["result"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["result"][0]["id"], "usr_00002");
}

#[tokio::test]
async fn result_shaping_parameters() {
    let gateway = sandbox().await;
    let (_, body) = get_json(
        &users_url(
            &gateway,
            "integrated_account_id=sandbox&truto_ignore_limit=true&limit=100",
        ),
        Some("sandbox"),
    )
    .await;
    assert_eq!(
        (body["result_count"].clone(), body["next_cursor"].clone()),
        (json!(250), Value::Null)
    );

    let (_, body) = get_json(
        &users_url(&gateway, "integrated_account_id=sandbox&limit=1&truto_ignore_remote_data=true&truto_exclude_fields[]=emails.type&truto_exclude_fields[]=roles&truto_exclude_fields[]=phones"),
        Some("sandbox"),
    )
    .await;
    assert_eq!(
        body["result"][0],
        json!({"id": "usr_00001", "first_name": "Ada", "last_name": "Lovelace", "name": "Ada Lovelace",
               "username": "ada.lovelace1", "title": "Engineer",
               "emails": [{"email": "ada.lovelace1@sandbox.unigate.test", "is_primary": true}],
               "status": "active", "user_type": "admin",
               "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z"})
    );

    let (_, body) = get_json(&users_url(&gateway, "integrated_account_id=sandbox&limit=2&truto_key_by=username&truto_exclude_fields=remote_data"), Some("sandbox")).await;
    let keys: Vec<&String> = body["result"]
        .as_object()
        .expect("keyed result")
        .keys()
        .collect();
    assert_eq!(keys, vec!["ada.lovelace1", "grace.hopper2"]);

    let (_, body) = get_json(
        &users_url(
            &gateway,
            "integrated_account_id=sandbox&limit=1&truto_response_format=raw",
        ),
        Some("sandbox"),
    )
    .await;
    assert_eq!(body["result"][0]["uid"], "usr_00001");
    assert!(body["result"][0].get("remote_data").is_none());
}

#[tokio::test]
async fn pages_emptied_by_gateway_filters_are_walked_past() {
    // Bots are users 18, 68, 118, …: the first provider pages of 10 hold none.
    let gateway = sandbox().await;
    let pages = walk(
        &gateway,
        "integrated_account_id=sandbox&limit=10&user_type=machine",
    )
    .await;
    assert_eq!(pages[0].len(), 1, "the first answer is not empty");
    assert_eq!(pages[0][0]["id"], "usr_00018");
    let ids: Vec<&str> = pages
        .iter()
        .flatten()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![
            "usr_00018",
            "usr_00068",
            "usr_00118",
            "usr_00168",
            "usr_00218"
        ]
    );
    assert!(
        pages[..pages.len() - 1].iter().all(|page| !page.is_empty()),
        "only the last page may be empty"
    );
}
