//! Hot reload under load: a mapping file that does not load leaves the current set answering
//! (and says which file and line); a good one switches to the new set without one failed
//! request, and `/health` names the set that is loaded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use unigate_gateway::config::Config;
use unigate_gateway::{Gateway, sandbox};
use unigate_tests::{TEST_TOKEN, get_json, repo_root, serve};

fn write_config(dir: &std::path::Path, provider: std::net::SocketAddr, extra_account: bool) {
    let mut accounts: Vec<serde_json::Value> = sandbox::accounts(provider)
        .into_iter()
        .filter(|account| account.id == "sandbox")
        .map(|account| {
            json!({"id": account.id, "integration": account.integration, "context": account.context})
        })
        .collect();
    if extra_account {
        let mut second = accounts[0].clone();
        second["id"] = json!("second");
        second["integration"] = json!("sandbox-two");
        accounts.push(second);
    }
    std::fs::write(
        dir.join("config.yaml"),
        format!(
            "api_tokens: [\"{TEST_TOKEN}\"]\ncursor_secret: \"0123456789abcdef0123\"\nmappings_dir: mappings\nintegrated_accounts: {}\n",
            serde_json::Value::Array(accounts)
        ),
    )
    .unwrap();
}

fn load(dir: &std::path::Path) -> Config {
    Config::load(&dir.join("config.yaml"), &|_| None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_switches_sets_without_a_failed_request_and_refuses_a_broken_file() {
    let dir = std::env::temp_dir().join(format!("unigate-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mappings = dir.join("mappings");
    std::fs::create_dir_all(mappings.join("models")).unwrap();
    std::fs::copy(
        repo_root().join("mappings/models/user-directory.yaml"),
        mappings.join("models/user-directory.yaml"),
    )
    .unwrap();
    let sandbox_yaml = std::fs::read_to_string(repo_root().join("mappings/sandbox.yaml")).unwrap();
    std::fs::write(mappings.join("sandbox.yaml"), &sandbox_yaml).unwrap();
    let provider = sandbox::start_provider(50).await.unwrap();
    write_config(&dir, provider, false);

    let gateway = Gateway::from_config(&load(&dir)).await.unwrap();
    let state = gateway.state.clone();
    let gateway = serve(gateway).await;
    let origin = gateway.origin.clone();
    let health = || async {
        get_json(&format!("{origin}/health"), None).await.1["mappings"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let first_set = health().await;

    // Calls all along, on both accounts once the second exists.
    let stop = Arc::new(AtomicBool::new(false));
    let load_task = {
        let (origin, stop) = (origin.clone(), stop.clone());
        tokio::spawn(async move {
            let mut answered = 0;
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = get_json(
                    &format!("{origin}/unified/user-directory/users?integrated_account_id=sandbox&limit=5"),
                    Some(TEST_TOKEN),
                )
                .await;
                assert_eq!(status, 200, "a request failed during a reload: {body}");
                answered += 1;
            }
            answered
        })
    };

    // A broken file: refused, named with its line; the old set keeps answering.
    std::fs::write(
        mappings.join("sandbox.yaml"),
        sandbox_yaml.replacen("name:", "colour: red\nname:", 1),
    )
    .unwrap();
    let refused = state.reload(&load(&dir)).await.unwrap_err();
    assert!(
        refused.contains("sandbox.yaml:") && refused.contains("unknown field `colour`"),
        "{refused}"
    );
    assert_eq!(health().await, first_set);

    // A good set with a new integration and a new account: switched.
    std::fs::write(mappings.join("sandbox.yaml"), &sandbox_yaml).unwrap();
    std::fs::write(mappings.join("sandbox-two.yaml"), &sandbox_yaml).unwrap();
    write_config(&dir, provider, true);
    let summary = state.reload(&load(&dir)).await.unwrap();
    assert!(
        summary.starts_with("reloaded: 2 integration(s)"),
        "{summary}"
    );
    let second_set = health().await;
    assert_ne!(second_set, first_set);
    let (status, body) = get_json(
        &format!("{origin}/unified/user-directory/users?integrated_account_id=second&limit=2"),
        Some(TEST_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let answered = load_task.await.unwrap();
    assert!(answered > 0);
    let _ = std::fs::remove_dir_all(&dir);
}
