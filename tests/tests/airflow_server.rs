//! unigate against a real Apache Airflow 3 server (apache-airflow 3.3.2 with the FAB auth
//! manager from PyPI, installed by `scripts/python-env airflow`; tests/python/airflow/): the
//! `apache-airflow` mapping as a real deployment answers it, off the docs' happy path. The server
//! cuts every page to 40 users whatever `limit` asks (`[api] maximum_page_limit`), its JWTs are
//! signed with a secret a restart may change (every token issued before is then refused with a
//! 403, not a 401) and, after that restart, live 3 seconds with no leeway, so a walk outlives
//! its token; a wrong password is refused at the login. The users are seeded through the
//! server's own API, two deactivated in its database (the API cannot): one `active = 0`, one
//! `active = NULL`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use unigate_engine::{EngineConfig, RetryPolicy};
use unigate_store::IntegratedAccount;
use unigate_tests::{TEST_TOKEN, airflow_python_or_skip, get_json, repo_catalog, repo_root};
use unigate_upstream::UpstreamConfig;

const ADMIN_PASSWORD: &str = "airflow-Admin-pw1";
const SEEDED: usize = 130;
/// The server's `[api] maximum_page_limit`: every page holds at most this many users.
const SERVER_PAGE_LIMIT: usize = 40;

/// The server process (tests/python/airflow/airflow_server.py); stopped when dropped (it also
/// stops when its stdin closes or this process dies).
struct Airflow {
    child: Child,
    commands: ChildStdin,
    answers: BufReader<ChildStdout>,
    origin: String,
}

impl Airflow {
    fn start(python: &std::path::Path, jwt_lifetime_s: u32) -> Airflow {
        let mut child = Command::new(python)
            .arg(repo_root().join("tests/python/airflow/airflow_server.py"))
            .args([
                &jwt_lifetime_s.to_string(),
                &SERVER_PAGE_LIMIT.to_string(),
                ADMIN_PASSWORD,
            ])
            .env("UNIGATE_AIRFLOW_MAX_SECONDS", "400")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("airflow_server.py starts");
        let commands = child.stdin.take().expect("stdin");
        let answers = BufReader::new(child.stdout.take().expect("stdout"));
        let mut airflow = Airflow {
            child,
            commands,
            answers,
            origin: String::new(),
        };
        let port = airflow.answer();
        airflow.origin = format!(
            "http://127.0.0.1:{}",
            port.strip_prefix("READY ")
                .unwrap_or_else(|| panic!("unexpected first line `{port}`"))
        );
        airflow
    }

    fn answer(&mut self) -> String {
        let mut line = String::new();
        self.answers.read_line(&mut line).expect("an answer line");
        line.trim().to_owned()
    }

    /// Runs one command of the server script and returns its answer line.
    fn command(&mut self, command: &str) -> String {
        writeln!(self.commands, "{command}").expect("command sent");
        self.commands.flush().expect("command flushed");
        self.answer()
    }
}

impl Drop for Airflow {
    fn drop(&mut self) {
        // End of stdin stops the API server and removes the server's home; a kill is the
        // fallback if it does not exit.
        let _ = writeln!(self.commands, "QUIT");
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The seeded user `index` (1-based) as POST /auth/fab/v1/users takes it.
fn seeded_user(index: usize) -> Value {
    json!({
        "username": format!("user{index:03}"),
        "password": format!("pw-{index:03}-Secret"),
        "email": format!("user{index:03}@example.test"),
        "first_name": format!("Given{index}"),
        "last_name": format!("Family{index}"),
        "roles": [{"name": if index.is_multiple_of(10) { "Op" } else { "Viewer" }}],
    })
}

/// The unified user the gateway gives for seeded user `index`, without `remote_data`.
fn unified_user(index: usize) -> Value {
    let username = format!("user{index:03}");
    let role = if index.is_multiple_of(10) {
        "Op"
    } else {
        "Viewer"
    };
    json!({
        "id": username,
        "username": username,
        "first_name": format!("Given{index}"),
        "last_name": format!("Family{index}"),
        "name": format!("Given{index} Family{index}"),
        "emails": [{"email": format!("{username}@example.test"), "is_primary": true}],
        "status": if index == 5 || index == 7 { "inactive" } else { "active" },
        "roles": [{"id": role, "name": role}],
        "user_type": "user",
    })
}

async fn admin_token(client: &reqwest::Client, origin: &str) -> String {
    let answer: Value = client
        .post(format!("{origin}/auth/token"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("login")
        .error_for_status()
        .expect("admin login accepted")
        .json()
        .await
        .expect("token body");
    answer["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

fn account(id: &str, origin: &str, password: &str) -> IntegratedAccount {
    IntegratedAccount {
        id: id.into(),
        integration: "apache-airflow".into(),
        context: json!({"base_url": origin, "username": "admin", "password": password}),
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    }
}

/// `users` less `remote_data`, by id, after checking each record's `remote_data` is the
/// server's record of that user (its username, no password).
fn by_id(users: &[Value]) -> BTreeMap<String, Value> {
    let mut found = BTreeMap::new();
    for user in users {
        let mut user = user.clone();
        let remote = user
            .as_object_mut()
            .unwrap()
            .remove("remote_data")
            .expect("remote_data");
        assert_eq!(remote["username"], user["id"], "{remote}");
        assert!(remote.get("password").is_none(), "{remote}");
        let id = user["id"].as_str().expect("id").to_owned();
        assert!(
            found.insert(id.clone(), user).is_none(),
            "{id} listed twice"
        );
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_the_users_of_a_real_airflow_through_capped_pages_restarts_and_expired_tokens() {
    let Some(python) = airflow_python_or_skip("the real Apache Airflow server test") else {
        return;
    };
    let mut airflow = tokio::task::spawn_blocking(move || Airflow::start(&python, 600))
        .await
        .unwrap();
    let origin = airflow.origin.clone();

    // Seed through the server's own API, ten at a time.
    let client = reqwest::Client::new();
    let token = admin_token(&client, &origin).await;
    for chunk in (1..=SEEDED).collect::<Vec<_>>().chunks(10) {
        let posts = chunk.iter().map(|&index| {
            client
                .post(format!("{origin}/auth/fab/v1/users"))
                .bearer_auth(&token)
                .json(&seeded_user(index))
                .send()
        });
        for answer in futures_util::future::join_all(posts).await {
            let answer = answer.expect("seed request");
            assert_eq!(answer.status().as_u16(), 200, "{:?}", answer.text().await);
        }
    }
    // The API takes no `active`: two users deactivated where FAB keeps them.
    for statement in [
        "UPDATE ab_user SET active = 0 WHERE username = 'user005'",
        "UPDATE ab_user SET active = NULL WHERE username = 'user007'",
    ] {
        assert_eq!(airflow.command(&format!("SQL {statement}")), "OK");
    }

    let engine = EngineConfig {
        retry: RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        },
        // Renew a token one second before its `exp`, not the default minute: the 3-second
        // tokens below are then used for a call and expire between two.
        token_refresh_margin: Duration::from_secs(1),
        ..EngineConfig::default()
    };
    let gateway = unigate_tests::serve_with(
        repo_catalog(),
        vec![
            account("airflow", &origin, ADMIN_PASSWORD),
            account("airflow-bad-login", &origin, "not-the-password"),
        ],
        UpstreamConfig::default(),
        engine,
    )
    .await;
    let list = |query: String| {
        let url = format!(
            "{}/unified/user-directory/users?integrated_account_id=airflow&{query}",
            gateway.origin
        );
        async move { get_json(&url, Some(TEST_TOKEN)).await }
    };

    // The whole list, asking 100 a page: the server cuts each page to 40 and says how many
    // there are in all (`total_entries`), so the walk goes on past the short pages.
    let mut pages = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, body) = list(format!("limit=100&next_cursor={cursor}")).await;
        assert_eq!(status, 200, "{body}");
        pages.push(body["result"].as_array().expect("result").clone());
        match body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
        assert!(pages.len() <= 6, "the walk does not end");
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [40, 40, 40, 11]
    );
    let listed = by_id(&pages.concat());
    let mut expected: BTreeMap<String, Value> = (1..=SEEDED)
        .map(|index| (format!("user{index:03}"), unified_user(index)))
        .collect();
    expected.insert(
        "admin".to_owned(),
        json!({
            "id": "admin",
            "username": "admin",
            "first_name": "Ada",
            "last_name": "Admin",
            "name": "Ada Admin",
            "emails": [{"email": "admin@example.test", "is_primary": true}],
            "status": "active",
            "roles": [{"id": "Admin", "name": "Admin"}],
            "user_type": "admin",
        }),
    );
    assert_eq!(listed, expected);

    // The gateway's own filter over every page: the two users FAB keeps deactivated.
    let (status, body) = list("status=inactive&limit=100".to_owned()).await;
    assert_eq!(status, 200, "{body}");
    // Seeded ten at a time, so their order by id within a ten is the server's.
    let mut inactive: Vec<&str> = body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["id"].as_str().unwrap())
        .collect();
    inactive.sort_unstable();
    assert_eq!(inactive, ["user005", "user007"], "{body}");

    // A restart with another signing secret: the token the gateway holds (valid for ten more
    // minutes by its `exp`) is now refused with 403 "Invalid JWT token"; the gateway logs in
    // again once and the call succeeds. Tokens now live 3 seconds.
    let restarted = tokio::task::spawn_blocking(move || {
        let answer = airflow.command("RESTART unigate-second-secret 3");
        (airflow, answer)
    })
    .await
    .unwrap();
    airflow = restarted.0;
    assert_eq!(
        restarted.1,
        format!("READY {}", origin.rsplit(':').next().unwrap())
    );
    let (status, body) = list("limit=40".to_owned()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"].as_array().unwrap().len(), 40);
    let next = body["next_cursor"]
        .as_str()
        .expect("next_cursor")
        .to_owned();
    // The token that call used has expired (the server allows no leeway): the next page is
    // still answered, with a new one.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, body) = list(format!("limit=40&next_cursor={next}")).await;
    assert_eq!(status, 200, "{body}");
    let second: Vec<&str> = body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["id"].as_str().unwrap())
        .collect();
    assert_eq!(second.len(), 40, "{body}");
    assert!(
        second.iter().all(|id| listed.contains_key(*id)),
        "{second:?}"
    );

    // Get: the list's record, keyed by username; an unknown one is the server's 404.
    let get = |id: &str| {
        let url = format!(
            "{}/unified/user-directory/users/{id}?integrated_account_id=airflow",
            gateway.origin
        );
        async move { get_json(&url, Some(TEST_TOKEN)).await }
    };
    let (status, body) = get("user042").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(by_id(&[body])["user042"], unified_user(42));
    let (status, body) = get("nobody").await;
    assert_eq!(
        (status, &body["truto_is_remote_error"], &body["message"]),
        (
            404,
            &json!(true),
            &json!("The User with username `nobody` was not found")
        ),
        "{body}"
    );

    // A wrong password is refused at the login (401 "Invalid credentials"): the account is
    // marked and later calls are answered without asking the server.
    let bad = format!(
        "{}/unified/user-directory/users?integrated_account_id=airflow-bad-login",
        gateway.origin
    );
    let (status, body) = get_json(&bad, Some(TEST_TOKEN)).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        !body.to_string().contains("not-the-password"),
        "the password is never quoted: {body}"
    );
    let (status, body) = get_json(&bad, Some(TEST_TOKEN)).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("needs to be reconnected"),
        "{body}"
    );
    drop(airflow);
}
