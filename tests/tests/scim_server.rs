//! unigate against a real SCIM 2.0 server: scim2-server from PyPI (installed by
//! `scripts/python-env`), started on a free loopback port and seeded over its own API. Listing
//! with `limit=100` through unigate must return exactly the 250 users seeded, once each, with
//! their fields mapped by `mappings/scim.yaml`; with `read_groups`, their groups. Every file that
//! extends `scim.yaml` walks the same kind of server too: its pages, its filters, its get.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use unigate_mapping::{Method, MethodKey};
use unigate_store::IntegratedAccount;
use unigate_tests::{
    TEST_TOKEN, get_json, python_or_skip, repo_catalog, repo_root, serve_accounts,
};

#[path = "python_sdk.rs"]
#[allow(dead_code)]
mod python_sdk;

const SCIM_TOKEN: &str = "scim-e2e-token";

/// The server process; killed when dropped (it also exits when its stdin closes).
struct ScimServer {
    child: Child,
    origin: String,
}

impl Drop for ScimServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_scim_server(python: &std::path::Path) -> ScimServer {
    start_scim_server_with(python, SCIM_TOKEN)
}

/// A server that takes `token` as its bearer token; an empty one turns authentication off.
fn start_scim_server_with(python: &std::path::Path, token: &str) -> ScimServer {
    let mut child = Command::new(python)
        .arg(repo_root().join("tests/python/scim_server.py"))
        .args(["0", token])
        .env("UNIGATE_SCIM_MAX_SECONDS", "300")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("scim_server.py starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("READY line");
    let port = line
        .trim()
        .strip_prefix("READY ")
        .unwrap_or_else(|| panic!("unexpected first line `{line}`"));
    ScimServer {
        origin: format!("http://127.0.0.1:{port}"),
        child,
    }
}

fn seeded_user(index: usize) -> Value {
    let mut user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": format!("user{index:03}@example.test"),
        "externalId": format!("ext-{index:03}"),
        "name": {"givenName": format!("Given{index}"), "familyName": format!("Family{index}")},
        "displayName": format!("Given{index} Family{index}"),
        "emails": [{"value": format!("user{index:03}@example.test"), "type": "work", "primary": true}],
        "active": !index.is_multiple_of(5),
    });
    if index.is_multiple_of(7) {
        user["title"] = json!("Engineer");
    }
    user
}

/// Creates seeded user `index` through the server's own API (with `token` as its bearer token
/// unless empty) and returns the server's record of it.
async fn seed(client: &reqwest::Client, server: &ScimServer, token: &str, index: usize) -> Value {
    let mut request = client
        .post(format!("{}/scim/v2/Users", server.origin))
        .header("content-type", "application/scim+json")
        .body(seeded_user(index).to_string());
    if !token.is_empty() {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("seed request");
    assert_eq!(response.status().as_u16(), 201);
    response.json().await.expect("seed body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_exactly_the_250_users_of_a_real_scim_server() {
    let Some(python) = python_or_skip("the real SCIM server test") else {
        return;
    };
    let server = start_scim_server(&python);
    let client = reqwest::Client::new();
    // Seed through the server's own API.
    let mut created: BTreeMap<String, Value> = BTreeMap::new();
    for index in 0..250 {
        let body = seed(&client, &server, SCIM_TOKEN, index).await;
        created.insert(body["id"].as_str().expect("id").to_owned(), body);
    }
    assert_eq!(created.len(), 250);

    let account = IntegratedAccount {
        id: "real-scim".into(),
        integration: "scim".into(),
        context: json!({"base_url": format!("{}/scim/v2", server.origin), "token": SCIM_TOKEN}),
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let gateway = serve_accounts(repo_catalog(), vec![account]).await;
    let mut pages = Vec::new();
    let mut cursor = String::new();
    loop {
        let url = format!(
            "{}/unified/user-directory/users?integrated_account_id=real-scim&limit=100&next_cursor={cursor}",
            gateway.origin
        );
        let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
        assert_eq!(status, 200, "{body}");
        pages.push(body["result"].as_array().expect("array").clone());
        match body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
        assert!(pages.len() <= 5, "the walk does not end");
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![100, 100, 50]
    );
    let users: Vec<&Value> = pages.iter().flatten().collect();
    let ids: std::collections::BTreeSet<&str> =
        users.iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 250, "no duplicates");
    assert_eq!(
        ids,
        created.keys().map(String::as_str).collect(),
        "exactly the seeded users"
    );

    // Get User through the real Truto Python SDK: the same record the list gave, for a few ids;
    // the SCIM server's 404 for an unknown one.
    let sample: Vec<&str> = users
        .iter()
        .step_by(60)
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    let (py, origin, ids) = (
        python.clone(),
        gateway.origin.clone(),
        sample.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    );
    let got = tokio::task::spawn_blocking(move || {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        python_sdk::sdk_get(&py, &origin, TEST_TOKEN, "real-scim", &ids)
    })
    .await
    .unwrap();
    for (id, record) in sample.iter().zip(&got) {
        let listed = users.iter().find(|u| u["id"] == *id).unwrap();
        assert_eq!(&record, listed, "get {id}");
    }
    let (status, body) = get_json(
        &format!(
            "{}/unified/user-directory/users/no-such-user?integrated_account_id=real-scim",
            gateway.origin
        ),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(
        (status, &body["truto_is_remote_error"]),
        (404, &json!(true)),
        "{body}"
    );

    for user in users {
        let id = user["id"].as_str().unwrap();
        let seeded = &created[id];
        let index: usize = seeded["externalId"].as_str().unwrap()[4..].parse().unwrap();
        let mut expected = json!({
            "id": id,
            "external_id": format!("ext-{index:03}"),
            "username": format!("user{index:03}@example.test"),
            "first_name": format!("Given{index}"),
            "last_name": format!("Family{index}"),
            "name": format!("Given{index} Family{index}"),
            "emails": [{"email": format!("user{index:03}@example.test"), "type": "work", "is_primary": true}],
            "status": if !index.is_multiple_of(5) { "active" } else { "inactive" },
            "created_at": seeded["meta"]["created"],
            "updated_at": seeded["meta"]["lastModified"],
        });
        if index.is_multiple_of(7) {
            expected["title"] = json!("Engineer");
        }
        let mut mapped = user.clone();
        let remote = mapped
            .as_object_mut()
            .unwrap()
            .remove("remote_data")
            .expect("remote_data");
        assert_eq!(remote["id"], json!(id));
        assert_eq!(mapped, expected, "user {index}");
    }
}

/// With `read_groups`, the users of a real SCIM server get the Groups whose `members` list them
/// (scim2-server, like many providers, leaves the User's own `groups` attribute empty): 1,003
/// groups, so /Groups is read over two pages (its cap is 1000 a page), once per walk; a Group
/// member is not expanded. Without the flag the same users have no `groups`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_groups_gives_the_users_of_a_real_scim_server_their_groups() {
    const USERS: usize = 30;
    const GROUPS: usize = 1003;
    let Some(python) = python_or_skip("the real SCIM server groups test") else {
        return;
    };
    let server = start_scim_server(&python);
    let client = reqwest::Client::new();
    let post = |path: &'static str, body: Value| {
        let request = client
            .post(format!("{}/scim/v2/{path}", server.origin))
            .bearer_auth(SCIM_TOKEN)
            .header("content-type", "application/scim+json")
            .body(body.to_string());
        async move {
            let response = request.send().await.expect("seed request");
            assert_eq!(response.status().as_u16(), 201);
            let body: Value = response.json().await.expect("seed body");
            body["id"].as_str().expect("id").to_owned()
        }
    };
    let mut users = Vec::new();
    for index in 0..USERS {
        users.push(post("Users", seeded_user(index)).await);
    }
    // Group g holds users g % 30 and (7 g) % 30; the last one also holds group 0 as a member.
    let mut groups: Vec<(String, String, Vec<usize>)> = Vec::new();
    for g in 0..GROUPS {
        let held = std::collections::BTreeSet::from([g % USERS, (7 * g) % USERS]);
        let mut members: Vec<Value> = held
            .iter()
            .map(|&u| json!({"value": users[u], "type": "User"}))
            .collect();
        if g == GROUPS - 1 {
            members.push(json!({"value": groups[0].0, "type": "Group"}));
        }
        let name = format!("Group {g:04}");
        let id = post(
            "Groups",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name, "members": members}),
        )
        .await;
        groups.push((id, name, held.into_iter().collect()));
    }
    // The server lists resources by id: the catalog's order, which each user's groups follow.
    let mut catalog = groups.clone();
    catalog.sort_by(|a, b| a.0.cmp(&b.0));

    let account = |id: &str, read_groups: bool| IntegratedAccount {
        id: id.into(),
        integration: "scim".into(),
        context: json!({"base_url": format!("{}/scim/v2", server.origin), "token": SCIM_TOKEN, "read_groups": read_groups}),
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let gateway = serve_accounts(
        repo_catalog(),
        vec![account("with-groups", true), account("without", false)],
    )
    .await;
    let walk = |account: &'static str| {
        let origin = gateway.origin.clone();
        async move {
            let mut users = Vec::new();
            let mut cursor = String::new();
            for _ in 0..10 {
                let url = format!(
                    "{origin}/unified/user-directory/users?integrated_account_id={account}&limit=10&truto_ignore_remote_data=true&next_cursor={cursor}"
                );
                let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
                assert_eq!(status, 200, "{body}");
                users.extend(body["result"].as_array().expect("array").clone());
                match body["next_cursor"].as_str() {
                    Some(next) => cursor = next.to_owned(),
                    None => return users,
                }
            }
            panic!("the walk does not end");
        }
    };
    let listed = walk("with-groups").await;
    assert_eq!(listed.len(), USERS);
    for user in &listed {
        let index = users
            .iter()
            .position(|id| user["id"] == json!(id))
            .expect("a seeded user");
        let expected: Vec<Value> = catalog
            .iter()
            .filter(|(_, _, held)| held.contains(&index))
            .map(|(id, name, _)| json!({"id": id, "name": name}))
            .collect();
        assert!(
            expected.len() >= 33,
            "user {index} is in {}",
            expected.len()
        );
        assert_eq!(user["groups"], json!(expected), "user {index}");
    }
    for user in walk("without").await {
        assert!(user.get("groups").is_none(), "{user}");
    }
}

/// The mapping files that extend `scim` (`extends: scim`).
fn scim_family() -> Vec<String> {
    let mut family: Vec<String> = std::fs::read_dir(repo_root().join("mappings"))
        .expect("mappings/")
        .filter_map(|entry| {
            let path = entry.expect("a directory entry").path();
            let text = std::fs::read_to_string(&path).ok()?;
            text.lines()
                .any(|line| line == "extends: scim")
                .then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    family.sort();
    family
}

/// Every file that extends `scim.yaml` against one real SCIM server (authentication off, so any
/// credential form passes; each account's own `base_url` is the server, and a token held in its
/// context spares the OAuth files a token endpoint): 120 users, each once, in pages of up to 50;
/// the names, e-mails and status each file maps from the server's record; the e-mail and status
/// filters, pushed down where the file says, answered by the server's own filter parser; a
/// get giving the list's record; and, with `read_groups`, each user's groups (three Groups on the
/// server) where the file reads the Groups listing a user, none where it dropped that call. A new
/// SCIM file is in this test without a line added here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scim_family_file_walks_a_real_scim_server() {
    const USERS: usize = 120;
    let Some(python) = python_or_skip("the SCIM family's real SCIM server test") else {
        return;
    };
    let server = start_scim_server_with(&python, "");
    let client = reqwest::Client::new();
    let mut seeded: BTreeMap<String, usize> = BTreeMap::new();
    for index in 0..USERS {
        let body = seed(&client, &server, "", index).await;
        seeded.insert(body["id"].as_str().expect("id").to_owned(), index);
    }
    // Three groups: a user's groups are read from the Groups listing it (`read_groups`).
    let mut member_of: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (name, holds) in [("Engineering", 0usize), ("Sales", 1), ("Support", 2)] {
        let members: Vec<Value> = seeded
            .iter()
            .filter(|(_, index)| *index % 3 == holds || index.is_multiple_of(10))
            .map(|(id, _)| json!({"value": id, "type": "User"}))
            .collect();
        let response = client
            .post(format!("{}/scim/v2/Groups", server.origin))
            .header("content-type", "application/scim+json")
            .body(
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name, "members": members})
                    .to_string(),
            )
            .send()
            .await
            .expect("group seed request");
        assert_eq!(response.status().as_u16(), 201);
        let group: Value = response.json().await.expect("group body");
        let group_id = group["id"].as_str().expect("group id").to_owned();
        for member in members {
            member_of
                .entry(member["value"].as_str().unwrap().to_owned())
                .or_default()
                .push((group_id.clone(), name.to_owned()));
        }
    }
    let inactive: std::collections::BTreeSet<&str> = seeded
        .iter()
        .filter(|(_, index)| index.is_multiple_of(5))
        .map(|(id, _)| id.as_str())
        .collect();

    let catalog = repo_catalog();
    let family = scim_family();
    assert!(family.len() >= 30, "{family:?}");
    // Whether the file reads the Groups listing a user (scim.yaml's follow-up, kept), or, having
    // dropped it for a provider whose /Groups cannot be read so (its header says why), only the
    // User's own `groups`, which scim2-server leaves empty.
    let reads_groups: BTreeMap<&str, bool> = family
        .iter()
        .map(|id| {
            let list = &catalog.integrations[id.as_str()].unified
                [&MethodKey::new("user-directory", "users", Method::List)];
            (id.as_str(), !list.follow_ups.is_empty())
        })
        .collect();
    assert!(
        reads_groups.values().filter(|reads| **reads).count() >= 5,
        "{reads_groups:?}"
    );
    let accounts = family
        .iter()
        .flat_map(|id| {
            let integration = &catalog.integrations[id.as_str()];
            let mut context: serde_json::Map<String, Value> = integration
                .context_keys_for(true)
                .into_iter()
                .map(|key| {
                    // Hosts the files check by their form; the calls go to the account's
                    // base_url whatever they say.
                    let value = match key.as_str() {
                        "workspace_host" => "dbc-1.cloud.databricks.com",
                        "scim_host" => "scim1.private.zscaler.com",
                        _ => "placeholder",
                    };
                    (key, json!(value))
                })
                .collect();
            context.insert("access_token".into(), json!("held-token"));
            context.insert("access_token_expires_at".into(), json!(4_102_444_800_i64));
            let account =
                |account_id: String, context: serde_json::Map<String, Value>| IntegratedAccount {
                    id: account_id,
                    integration: id.clone(),
                    context: Value::Object(context),
                    base_url: Some(server.origin.clone()),
                    status: Default::default(),
                    last_error: None,
                    mapping: None,
                };
            let mut with_groups = context.clone();
            with_groups.insert("read_groups".into(), json!(true));
            [
                account(id.clone(), context),
                account(format!("{id}-groups"), with_groups),
            ]
        })
        .collect();
    let gateway = serve_accounts(catalog, accounts).await;
    let list = |id: &str, query: &str| {
        let url = format!(
            "{}/unified/user-directory/users?integrated_account_id={id}&{query}",
            gateway.origin
        );
        async move {
            let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
            assert_eq!(status, 200, "{url}: {body}");
            body
        }
    };
    let remote_ids = |users: &[Value]| -> Vec<String> {
        users
            .iter()
            .map(|user| {
                user["remote_data"]["id"]
                    .as_str()
                    .expect("remote id")
                    .to_owned()
            })
            .collect()
    };

    for id in &family {
        let mut users: Vec<Value> = Vec::new();
        let mut cursor = String::new();
        for page in 1.. {
            let body = list(id, &format!("limit=50&next_cursor={cursor}")).await;
            users.extend(body["result"].as_array().expect("result").iter().cloned());
            match body["next_cursor"].as_str() {
                Some(next) => cursor = next.to_owned(),
                None => break,
            }
            assert!(page < 15, "{id}: the walk does not end");
        }
        let mut listed = remote_ids(&users);
        listed.sort();
        assert_eq!(
            listed,
            seeded.keys().cloned().collect::<Vec<_>>(),
            "{id}: each user once"
        );
        for user in &users {
            let index = seeded[user["remote_data"]["id"].as_str().unwrap()];
            let email = format!("user{index:03}@example.test");
            for (field, expected) in [
                ("first_name", json!(format!("Given{index}"))),
                ("last_name", json!(format!("Family{index}"))),
                ("username", json!(email)),
            ] {
                if let Some(value) = user.get(field) {
                    assert_eq!(value, &expected, "{id}: {field} of {user}");
                }
            }
            if let Some(emails) = user.get("emails") {
                assert_eq!(emails[0]["email"], json!(email), "{id}: {user}");
            }
        }
        // The status a deactivated user gets from this file (inactive; BigPanda says deleted),
        // and the same status as a filter: exactly the deactivated users.
        let status_of = |wanted_inactive: bool| {
            let mut found: Vec<&Value> = users
                .iter()
                .filter(|user| {
                    inactive.contains(user["remote_data"]["id"].as_str().unwrap())
                        == wanted_inactive
                })
                .map(|user| &user["status"])
                .collect();
            found.dedup();
            found
        };
        let (off, on) = (status_of(true), status_of(false));
        assert_eq!(on, [&json!("active")], "{id}: active users");
        assert_eq!(
            off.len(),
            1,
            "{id}: one status for deactivated users: {off:?}"
        );
        let off = off[0].as_str().expect("a status");
        assert!(["inactive", "deleted"].contains(&off), "{id}: {off}");
        let body = list(id, &format!("status={off}&truto_ignore_limit=true")).await;
        let mut filtered = remote_ids(body["result"].as_array().unwrap());
        filtered.sort();
        assert_eq!(
            filtered,
            inactive.iter().map(|id| id.to_string()).collect::<Vec<_>>(),
            "{id}: status={off}"
        );

        // One user by e-mail. Notion filters on its own `email` attribute, which an RFC 7643
        // server does not have: the server refuses it, and the caller gets that refusal.
        let url = format!(
            "{}/unified/user-directory/users?integrated_account_id={id}&email=user003@example.test",
            gateway.origin
        );
        let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
        if id == "notion-scim" {
            assert_eq!(
                (status, &body["truto_is_remote_error"]),
                (400, &json!(true)),
                "{id}: {body}"
            );
        } else {
            assert_eq!(status, 200, "{id}: {body}");
            let found = body["result"].as_array().unwrap();
            assert_eq!(found.len(), 1, "{id}: {body}");
            assert_eq!(
                found[0]["remote_data"]["userName"],
                json!("user003@example.test")
            );
        }

        // A get gives the list's record.
        let sample = &users[USERS / 2];
        let url = format!(
            "{}/unified/user-directory/users/{}?integrated_account_id={id}",
            gateway.origin,
            sample["id"].as_str().expect("id")
        );
        let (status, body) = get_json(&url, Some(TEST_TOKEN)).await;
        assert_eq!((status, &body), (200, sample), "{id}: get");

        // With `read_groups`, each user's groups are the Groups listing it, by id and name.
        let mut cursor = String::new();
        let mut grouped = 0;
        for page in 1.. {
            let body = list(
                &format!("{id}-groups"),
                &format!("limit=50&next_cursor={cursor}"),
            )
            .await;
            for user in body["result"].as_array().expect("result") {
                let remote = user["remote_data"]["id"].as_str().unwrap();
                let mut got: Vec<(String, String)> = user["groups"]
                    .as_array()
                    .map(|groups| {
                        groups
                            .iter()
                            .map(|group| {
                                (
                                    group["id"].as_str().unwrap_or_default().to_owned(),
                                    group["name"].as_str().unwrap_or_default().to_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                got.sort();
                let mut expected = member_of.get(remote).cloned().unwrap_or_default();
                expected.sort();
                let expected = match reads_groups[id.as_str()] {
                    true => expected,
                    false => Vec::new(),
                };
                assert_eq!(got, expected, "{id}: groups of {remote}");
                grouped += 1;
            }
            match body["next_cursor"].as_str() {
                Some(next) => cursor = next.to_owned(),
                None => break,
            }
            assert!(page < 15, "{id}: the walk with groups does not end");
        }
        assert_eq!(grouped, USERS, "{id}: every user with its groups");
    }
}
