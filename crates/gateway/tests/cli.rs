//! The `unigate` binary as a user runs it: `check` on good and broken mapping directories,
//! `serve --sandbox` on an ephemeral port, and `serve --config` refusing an unset variable.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn unigate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_unigate"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Starts `unigate serve …` (stdout piped, stderr dropped) and returns it with the address it
/// printed it listens on.
fn spawn_serving(command: &mut Command) -> (std::process::Child, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .strip_prefix("unigate listening on http://")
        .unwrap_or_else(|| panic!("not the listening line: `{line}`"))
        .to_owned();
    (child, address)
}

/// A temporary folder, removed when the test ends (passing or not).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("unigate-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Scratch(dir)
}

#[test]
fn check_accepts_the_repository_mappings() {
    let output = unigate()
        .arg("check")
        .arg(repo().join("mappings"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("integration(s) and 1 model(s) load"),
        "{stdout}"
    );
}

#[test]
fn check_names_file_and_line_of_every_broken_expression() {
    let dir = scratch("broken");
    copy_dir(&repo().join("mappings"), &dir);
    let okta = dir.join("okta.yaml");
    let text = std::fs::read_to_string(&okta).unwrap();
    // Break the response mapping: a stray `]` at the end of its first line.
    let (line_index, _) = text
        .lines()
        .enumerate()
        .skip_while(|(_, line)| !line.trim_start().starts_with("response_mapping:"))
        .nth(1)
        .expect("okta has a response_mapping block");
    let broken: String = text
        .lines()
        .enumerate()
        .map(|(index, line)| {
            if index == line_index {
                format!("{line} ]")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&okta, broken).unwrap();
    std::fs::write(
        dir.join("slack.yaml"),
        std::fs::read_to_string(dir.join("slack.yaml"))
            .unwrap()
            .replace(
                "records: \"members\"",
                "records: \"members\"\n      colour: red",
            ),
    )
    .unwrap();
    let output = unigate().arg("check").arg(&*dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    let expected_prefix = format!(
        "{}:{}: unified.user-directory.users.list.response_mapping: JSONata does not compile",
        okta.display(),
        line_index + 1
    );
    assert!(
        stderr
            .lines()
            .any(|line| line.starts_with(&expected_prefix)),
        "expected `{expected_prefix}` in:\n{stderr}"
    );
    assert!(
        stderr.contains("slack.yaml:") && stderr.contains("unknown field `colour`"),
        "{stderr}"
    );
    // slack-enterprise extends the broken slack file: named, not mistaken for a missing base.
    assert!(
        stderr.contains("slack-enterprise.yaml:")
            && stderr.contains("extends `slack`, whose file has errors of its own"),
        "{stderr}"
    );
    assert!(stderr.contains("3 error(s)"), "{stderr}");
}

/// The signal handlers are in place before the gateway says it listens: a SIGTERM sent the
/// moment the line appears stops it cleanly (exit 0), never kills it.
#[cfg(unix)]
#[test]
fn sigterm_right_after_the_listening_line_stops_the_gateway_cleanly() {
    for _ in 0..5 {
        let (mut child, _) =
            spawn_serving(unigate().args(["serve", "--sandbox", "--listen", "127.0.0.1:0"]));
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = child.wait().unwrap();
        assert!(exit.success(), "{exit:?}");
    }
}

#[test]
fn serve_sandbox_answers_on_the_port_it_prints() {
    let mut child = unigate()
        .args(["serve", "--sandbox", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let origin = line
        .trim()
        .strip_prefix("unigate listening on ")
        .expect("the listening line")
        .to_owned();
    let address = origin.trim_start_matches("http://").to_owned();
    let answer = |authorization: Option<&str>| -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        let auth = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        write!(stream, "GET /unified/user-directory/users?integrated_account_id=sandbox&limit=1 HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    };
    let unauthorised = answer(None);
    let authorised = answer(Some("Bearer sandbox"));
    child.kill().unwrap();
    let _ = child.wait();
    assert!(unauthorised.starts_with("HTTP/1.1 401"), "{unauthorised}");
    assert!(authorised.starts_with("HTTP/1.1 200"), "{authorised}");
    assert!(authorised.contains("\"id\":\"usr_00001\""), "{authorised}");
}

#[test]
fn serve_config_names_an_unset_variable() {
    let dir = scratch("config");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(&config, "api_tokens: [\"${UNIGATE_TEST_SURELY_UNSET_TOKEN}\"]\ncursor_secret: \"0123456789abcdef0123\"\nmappings_dir: MAPPINGS\n".replace("MAPPINGS", &repo().join("mappings").display().to_string())).unwrap();
    let output = unigate()
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("UNIGATE_TEST_SURELY_UNSET_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(
            "api_tokens[0]: environment variable `UNIGATE_TEST_SURELY_UNSET_TOKEN` is not set"
        ),
        "{stderr}"
    );
}

#[test]
fn serve_runs_the_configured_number_of_workers_and_refuses_none() {
    let dir = scratch("workers");
    std::fs::create_dir_all(&dir).unwrap();
    // A config with `server.workers` set to `workers`, or without it.
    let config_with = |name: &str, workers: Option<&str>| {
        let config = dir.join(name);
        let server = workers.map_or(String::new(), |workers| {
            format!("server:\n  workers: {workers}\n")
        });
        std::fs::write(
            &config,
            format!(
                "api_tokens: [\"test-token-1234\"]\ncursor_secret: \"0123456789abcdef0123\"\nmappings_dir: {}\n{server}",
                repo().join("mappings").display()
            ),
        )
        .unwrap();
        config
    };
    // The log line a server started on `config`, with tokio's own variable set, says it listens.
    let listening_line = |config: &std::path::Path, tokio_workers: &str| {
        let mut child = unigate()
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .env("UNIGATE_LOG", "info")
            .env("TOKIO_WORKER_THREADS", tokio_workers)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let listening = BufReader::new(child.stderr.take().unwrap())
            .lines()
            .map_while(Result::ok)
            .find(|line| line.contains("unigate listening"));
        let _ = child.kill();
        let _ = child.wait();
        listening.expect("a listening log line")
    };

    // The setting wins over tokio's own variable; without the setting, the variable counts.
    let without = config_with("without.yaml", None);
    for (config, tokio_workers, workers) in [
        (config_with("three.yaml", Some("3")), "1", "workers=3"),
        (config_with("one.yaml", Some("1")), "2", "workers=1"),
        (without.clone(), "2", "workers=2"),
    ] {
        let listening = listening_line(&config, tokio_workers);
        assert!(listening.contains(workers), "{listening}");
    }

    for (name, workers, message) in [
        (
            "zero.yaml",
            "0",
            "zero.yaml:5: server.workers: give 1 to 1024 threads, not 0",
        ),
        (
            "many.yaml",
            "5000",
            "many.yaml:5: server.workers: give 1 to 1024 threads, not 5000",
        ),
    ] {
        let output = unigate()
            .args(["serve", "--config"])
            .arg(config_with(name, Some(workers)))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}: {stderr}");
        assert!(stderr.contains(message), "{name}: {stderr}");
    }

    // A value of tokio's variable it cannot use is refused in words (tokio itself would panic).
    for value in ["0", "two", ""] {
        let output = unigate()
            .args(["serve", "--config"])
            .arg(&without)
            .env("TOKIO_WORKER_THREADS", value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{value:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "unigate: cannot start the runtime: TOKIO_WORKER_THREADS: give a number of threads from 1 (or set server.workers), not {value:?}"
            )),
            "{value:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{value:?}: {stderr}");
    }
}

#[test]
fn the_example_config_starts_once_its_variables_are_set() {
    // config.example.yaml must stay loadable: every account it lists is checked against the
    // mappings. A copy runs in a scratch folder so its store file lands there.
    let dir = scratch("example");
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(repo().join("config.example.yaml"))
        .unwrap()
        .replace(
            "mappings_dir: mappings",
            &format!("mappings_dir: {}", repo().join("mappings").display()),
        );
    let example = dir.join("config.yaml");
    std::fs::write(&example, &text).unwrap();
    let mut command = unigate();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&example);
    let mut names = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("${") {
        rest = &rest[start + 2..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && rest[name.len()..].starts_with('}') {
            names.push(name);
        }
    }
    for name in &names {
        let value = if name == "UNIGATE_STORE_KEY" {
            "ab".repeat(32)
        } else {
            "value-for-the-example-config-0123456789".to_owned()
        };
        command.env(name, value);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        line.starts_with("unigate listening on http://127.0.0.1:"),
        "stdout `{line}`, stderr {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A container stop: SIGTERM stops new connections at once, lets a stream in flight run to its
/// last line, and the process exits 0.
#[cfg(unix)]
#[test]
fn sigterm_drains_a_stream_in_flight_then_exits() {
    use std::io::{Read, Write};
    const USERS: usize = 20_000;
    let (mut child, address) = spawn_serving(unigate().args([
        "serve",
        "--sandbox",
        "--sandbox-users",
        &USERS.to_string(),
        "--listen",
        "127.0.0.1:0",
    ]));
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(stream, "GET /unified/user-directory/users?integrated_account_id=sandbox&truto_response_format=stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sandbox\r\nConnection: close\r\n\r\n").unwrap();
    // The stream has started (its head and first lines are here) before the signal.
    let mut first = [0u8; 1024];
    let read = stream.read(&mut first).unwrap();
    assert!(first[..read].starts_with(b"HTTP/1.1 200"));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // No new connection is taken once the signal is handled.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if std::net::TcpStream::connect(&address).is_err() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    let mut body = first[..read].to_vec();
    body.extend(rest);
    let text = String::from_utf8_lossy(&body);
    let records = text.matches("\"remote_data\"").count();
    assert_eq!(records, USERS, "the stream was cut");
    assert!(!text.contains("truto_stream_error"));
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn try_on_the_sandbox_shows_the_provider_call_and_the_unified_answer() {
    let output = unigate()
        .args(["try", "--sandbox", "--account", "sandbox", "limit=2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("== provider call 1\nGET http://"),
        "{stdout}"
    );
    assert!(stdout.contains("X-Sandbox-Key: [redacted]"), "{stdout}");
    assert!(stdout.contains("-> 200"), "{stdout}");
    assert!(stdout.contains("== unified answer"), "{stdout}");
    assert!(stdout.contains("\"id\": \"usr_00001\""), "{stdout}");
    assert!(!stdout.contains("usr_00003"), "limit=2 gave more: {stdout}");
    assert!(
        stdout.contains(
            "records: `sandbox` response_mapping runs on the fast path (a record it cannot take goes to the JSONata engine)"
        ),
        "{stdout}"
    );
    // The sandbox's query_mapping (a `$map` over a function) and its groups follow-up's `id`
    // (over the page's array of records, which the fast path does not take) are the two engine
    // evaluations; the two records map on the fast path.
    assert!(
        stdout.contains("evaluation(s) on the fast path, 2 on the JSONata engine"),
        "{stdout}"
    );
}

/// A stub provider answering every request with one page of two people, on an ephemeral port;
/// it records the request lines it saw.
fn stub_provider(body: &'static str) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            record
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).into_owned());
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (address, seen)
}

const STUB_MAPPING: &str = r#"name: Stub Directory
docs: https://stub.example/docs
base_url: https://stub.example/api
auth:
  kind: header
  header: X-Api-Key
  value: "{{context.api_key}}"
pagination:
  style: none
resources:
  users:
    list: { method: GET, path: /people, records: people }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        native_filters: []
        native_sorts: []
        response_mapping: |
          { "id": id, "first_name": given, "emails": [{ "email": mail, "is_primary": true }] }
"#;

/// A scratch folder with the unified models, the stub mapping, and a `config.yaml` serving
/// account `acme-stub` on the stub provider at `provider` (key `stub-key-very-secret`), plus
/// `extra` config lines. Returns the folder (removed on drop) and the config's path.
fn stub_config(name: &str, provider: &str, extra: &str) -> (Scratch, PathBuf) {
    let dir = scratch(name);
    copy_dir(
        &repo().join("mappings/models"),
        &dir.join("mappings/models"),
    );
    std::fs::write(dir.join("mappings/stub-directory.yaml"), STUB_MAPPING).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "api_tokens: [\"caller-token-0123\"]\ncursor_secret: \"0123456789abcdef0123\"\nmappings_dir: mappings\n{extra}integrated_accounts:\n  - id: acme-stub\n    integration: stub-directory\n    base_url: http://{provider}/api\n    context: {{ api_key: \"stub-key-very-secret\" }}\n"
        ),
    )
    .unwrap();
    (dir, config)
}

#[test]
fn try_against_a_stub_provider_redacts_the_key_and_tries_an_edited_mapping() {
    let (address, seen) = stub_provider(
        // The second person carries the account's own key (as Pipeline CRM's users do): it is
        // redacted in the raw page and in the unified answer's remote_data alike.
        r#"{"people":[{"id":"p1","given":"Ada","mail":"ada@stub.example"},{"id":"p2","given":"Alan","mail":"alan@stub.example","key":"stub-key-very-secret"}]}"#,
    );
    let (dir, config) = stub_config("try", &address, "");

    let output = unigate()
        .args(["try", "--account", "acme-stub", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("GET http://{address}/api/people\n")),
        "{stdout}"
    );
    assert!(stdout.contains("X-Api-Key: [redacted]"), "{stdout}");
    assert!(!stdout.contains("stub-key-very-secret"), "{stdout}");
    assert_eq!(
        stdout.matches("\"key\": \"[redacted]\"").count(),
        2,
        "the raw page and remote_data: {stdout}"
    );
    // The raw page and the mapped records are both shown.
    assert!(stdout.contains("\"given\": \"Ada\""), "{stdout}");
    assert!(stdout.contains("\"first_name\": \"Ada\""), "{stdout}");
    assert!(
        stdout.contains("records: `stub-directory` response_mapping runs on the fast path"),
        "{stdout}"
    );
    assert!(
        seen.lock().unwrap()[0].contains("x-api-key: stub-key-very-secret"),
        "the provider does get the key"
    );

    // An edited copy of the file, tried without touching the loaded set.
    let edited = dir.join("edited.yaml");
    std::fs::write(
        dir.join("edited.yaml"),
        STUB_MAPPING.replace("\"first_name\": given", "\"first_name\": $uppercase(given)"),
    )
    .unwrap();
    let renamed = dir.join("stub-directory.yaml");
    std::fs::rename(&edited, &renamed).unwrap();
    let output = unigate()
        .args(["try", "--account", "acme-stub", "--config"])
        .arg(&config)
        .arg("--mapping")
        .arg(&renamed)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("\"first_name\": \"ADA\""), "{stdout}");
    assert!(stdout.contains("\"first_name\": \"ALAN\""), "{stdout}");
    assert!(!stdout.contains("stub-key-very-secret"), "{stdout}");
}

/// A field the list resource `omit`s (another user's API key, which no context value matches)
/// is shown as `[omitted]` in the raw page too, and is in no part of the report.
#[test]
fn try_does_not_show_the_fields_a_resource_omits() {
    let (address, _) = stub_provider(
        r#"{"people":[{"id":"p1","given":"Ada","mail":"ada@stub.example","api_token":"ada-own-token-4711"}]}"#,
    );
    let (dir, config) = stub_config("try-omit", &address, "");
    std::fs::write(
        dir.join("mappings/stub-directory.yaml"),
        STUB_MAPPING.replace(
            "list: { method: GET, path: /people, records: people }",
            "list: { method: GET, path: /people, records: people, omit: [api_token] }",
        ),
    )
    .unwrap();
    let output = unigate()
        .args(["try", "--account", "acme-stub", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("\"api_token\": \"[omitted]\""), "{stdout}");
    assert!(!stdout.contains("ada-own-token-4711"), "{stdout}");
    assert!(stdout.contains("\"given\": \"Ada\""), "{stdout}");
}

/// An OTLP/HTTP collector on an ephemeral port: keeps each request body it receives.
fn stub_collector() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; length];
            let _ = stream.read_exact(&mut body);
            record
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
            );
        }
    });
    (address, bodies)
}

/// With `opentelemetry.endpoint` set, a request's span and its provider call's span reach the
/// collector, nested, carrying the request id, and without the account's credentials.
#[cfg(unix)]
#[test]
fn spans_of_a_request_and_its_provider_call_are_exported_to_the_collector() {
    use std::io::{Read, Write};
    let (provider, _) =
        stub_provider(r#"{"people":[{"id":"p1","given":"Ada","mail":"ada@stub.example"}]}"#);
    let (collector, bodies) = stub_collector();
    let (_dir, config) = stub_config(
        "otel",
        &provider,
        &format!(
            "opentelemetry:\n  endpoint: http://{collector}/v1/traces\n  service_name: unigate-test\n"
        ),
    );
    let (mut child, address) = spawn_serving(
        unigate()
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config),
    );
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(stream, "GET /unified/user-directory/users?integrated_account_id=acme-stub HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer caller-token-0123\r\nx-request-id: otel-test-request-1\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The batch is sent at the latest when the process stops.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "the gateway did not stop cleanly: {exit:?}");

    let bodies = bodies.lock().unwrap().clone();
    let mut spans = Vec::new();
    for body in &bodies {
        assert!(!body.contains("stub-key-very-secret"), "{body}");
        let export: serde_json::Value = serde_json::from_str(body).expect("OTLP JSON");
        for resource in export["resourceSpans"].as_array().unwrap() {
            assert!(
                resource["resource"].to_string().contains("unigate-test"),
                "service.name: {resource}"
            );
            for scope in resource["scopeSpans"].as_array().unwrap() {
                spans.extend(scope["spans"].as_array().unwrap().iter().cloned());
            }
        }
    }
    let attribute = |span: &serde_json::Value, key: &str| -> Option<String> {
        span["attributes"]
            .as_array()?
            .iter()
            .find(|attribute| attribute["key"] == key)
            .map(|attribute| {
                let value = &attribute["value"];
                value["stringValue"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| value.to_string())
            })
    };
    let request = spans
        .iter()
        .find(|span| {
            span["name"] == "request"
                && attribute(span, "request_id").as_deref() == Some("otel-test-request-1")
        })
        .unwrap_or_else(|| panic!("no request span with the request id: {bodies:?}"));
    let call = spans
        .iter()
        .find(|span| span["name"] == "provider_call")
        .unwrap_or_else(|| panic!("no provider_call span: {bodies:?}"));
    assert_eq!(call["parentSpanId"], request["spanId"], "{call}");
    assert_eq!(call["traceId"], request["traceId"]);
    assert_eq!(
        attribute(call, "integration").as_deref(),
        Some("stub-directory")
    );
    assert_eq!(attribute(call, "host").as_deref(), Some("127.0.0.1"));
}
