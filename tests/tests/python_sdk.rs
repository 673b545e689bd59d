//! The real Truto Python SDK (`truto-python-sdk==0.1.6`, PyPI) pointed at unigate with only its
//! base URL changed: `unified_api.list` must walk every sandbox user across pages, on both of the
//! sandbox's pagination styles, and `unified_api.get` must return the record the list gives.

use std::process::Command;

use serde_json::{Value, json};
use unigate_gateway::Gateway;
use unigate_tests::{python_or_skip, repo_root, serve};

fn sdk_list(
    python: &std::path::Path,
    origin: &str,
    account: &str,
    limit: &str,
    extra: &Value,
) -> Vec<Value> {
    let output = Command::new(python)
        .arg(repo_root().join("tests/python/sdk_list.py"))
        .args([origin, "sandbox", account, limit, &extra.to_string()])
        .output()
        .expect("sdk_list.py runs");
    assert!(
        output.status.success(),
        "sdk_list.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON user per line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_truto_python_sdk_lists_every_sandbox_user_across_pages() {
    let Some(python) = python_or_skip("the Truto Python SDK test") else {
        return;
    };
    let gateway = serve(Gateway::sandbox(250).await.expect("sandbox")).await;
    let origin = gateway.origin.clone();
    for account in ["sandbox", "sandbox-cursor"] {
        let (python, origin, account_owned) = (python.clone(), origin.clone(), account.to_owned());
        let users = tokio::task::spawn_blocking(move || {
            sdk_list(&python, &origin, &account_owned, "100", &json!({}))
        })
        .await
        .expect("sdk thread");
        let ids: Vec<String> = users
            .iter()
            .map(|u| u["id"].as_str().expect("id").to_owned())
            .collect();
        let expected: Vec<String> = (1..=250).map(|n| format!("usr_{n:05}")).collect();
        assert_eq!(ids, expected, "{account}: every user once, in order");
        assert_eq!(
            users[1]["emails"][0]["email"],
            "grace.hopper2@sandbox.unigate.test"
        );
        assert_eq!(users[1]["remote_data"]["uid"], "usr_00002");
    }
}

/// Runs `sdk_get.py` for `ids`; the answers, one per id.
pub fn sdk_get(
    python: &std::path::Path,
    origin: &str,
    token: &str,
    account: &str,
    ids: &[&str],
) -> Vec<Value> {
    let output = Command::new(python)
        .arg(repo_root().join("tests/python/sdk_get.py"))
        .args([origin, token, account])
        .args(ids)
        .output()
        .expect("sdk_get.py runs");
    assert!(
        output.status.success(),
        "sdk_get.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON user per line"))
        .collect()
}

/// `unified_api.get` answers exactly the record `unified_api.list` gives for that id, on both
/// sandbox accounts; an unknown id makes the SDK raise (the gateway answers the provider's 404).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_truto_python_sdk_gets_the_record_the_list_gives() {
    let Some(python) = python_or_skip("the Truto Python SDK get test") else {
        return;
    };
    let gateway = serve(Gateway::sandbox(30).await.expect("sandbox")).await;
    for account in ["sandbox", "sandbox-cursor"] {
        let (py, origin, owned) = (python.clone(), gateway.origin.clone(), account.to_owned());
        let listed =
            tokio::task::spawn_blocking(move || sdk_list(&py, &origin, &owned, "10", &json!({})))
                .await
                .unwrap();
        let ids = ["usr_00001", "usr_00008", "usr_00030"];
        let (py, origin, owned) = (python.clone(), gateway.origin.clone(), account.to_owned());
        let got =
            tokio::task::spawn_blocking(move || sdk_get(&py, &origin, "sandbox", &owned, &ids))
                .await
                .unwrap();
        for (id, record) in ids.iter().zip(&got) {
            let from_list = listed.iter().find(|u| u["id"] == *id).expect("listed");
            assert_eq!(record, from_list, "{account} {id}");
        }
    }
    let (py, origin) = (python.clone(), gateway.origin.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(py)
            .arg(repo_root().join("tests/python/sdk_get.py"))
            .args([origin.as_str(), "sandbox", "sandbox", "usr_99999"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("404"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The SDK's own encodings of the parameter surface: `remote_query[...]`, `truto_exclude_fields[]`,
/// a filter, and the `normalized` format all round-trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_truto_python_sdk_sends_the_parameter_surface() {
    let Some(python) = python_or_skip("the Truto Python SDK parameters test") else {
        return;
    };
    let gateway = serve(Gateway::sandbox(250).await.expect("sandbox")).await;
    let run = |extra: Value| {
        let (python, origin) = (python.clone(), gateway.origin.clone());
        tokio::task::spawn_blocking(move || sdk_list(&python, &origin, "sandbox", "40", &extra))
    };

    // remote_query goes to the sandbox provider verbatim: its own `state` filter narrows the list.
    let users = run(json!({"remote_query": {"state": "SUSPENDED"}}))
        .await
        .unwrap();
    assert_eq!(users.len(), 25);
    assert!(
        users
            .iter()
            .all(|u| u["remote_data"]["state"] == "SUSPENDED")
    );

    // truto_exclude_fields[] (the SDK's list encoding), top-level and dotted.
    let users = run(json!({"truto_exclude_fields": ["remote_data", "emails.type", "phones"]}))
        .await
        .unwrap();
    assert_eq!(users.len(), 250);
    assert_eq!(
        users[0],
        json!({"id": "usr_00001", "first_name": "Ada", "last_name": "Lovelace", "name": "Ada Lovelace",
               "username": "ada.lovelace1", "title": "Engineer",
               "emails": [{"email": "ada.lovelace1@sandbox.unigate.test", "is_primary": true}],
               "status": "active", "user_type": "admin", "roles": [{"id": "admin", "name": "admin"}],
               "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z"})
    );

    // A native filter (pushed down) and a gateway filter, across pages.
    // Sandbox admins are every 25th user, all active.
    let users = run(json!({"status": "active", "user_type": "admin"}))
        .await
        .unwrap();
    let ids: Vec<&str> = users.iter().map(|u| u["id"].as_str().unwrap()).collect();
    let expected: Vec<String> = (0..10).map(|n| format!("usr_{:05}", n * 25 + 1)).collect();
    assert_eq!(ids, expected);

    // normalized: schema fields only, RFC 3339 UTC timestamps, no remote_data.
    let users = run(json!({"truto_response_format": "normalized"}))
        .await
        .unwrap();
    assert_eq!(users.len(), 250);
    assert!(users.iter().all(|u| u.get("remote_data").is_none()));
    assert_eq!(users[1]["last_login_at"], "2024-02-10T01:00:00Z");
}
