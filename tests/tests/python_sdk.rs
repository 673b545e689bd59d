//! The real Truto Python SDK (`truto-python-sdk==0.1.6`, PyPI) pointed at unigate with only its
//! base URL changed: `unified_api.list` must walk every sandbox user across pages, on both of the
//! sandbox's pagination styles.

use std::process::Command;

use serde_json::Value;
use unigate_gateway::Gateway;
use unigate_tests::{python_or_skip, repo_root, serve};

fn sdk_list(python: &std::path::Path, origin: &str, account: &str, limit: &str) -> Vec<Value> {
    let output = Command::new(python)
        .arg(repo_root().join("tests/python/sdk_list.py"))
        .args([origin, "sandbox", account, limit])
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
        let users =
            tokio::task::spawn_blocking(move || sdk_list(&python, &origin, &account_owned, "100"))
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
