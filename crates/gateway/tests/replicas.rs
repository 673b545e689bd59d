//! Two `unigate serve` processes on one PostgreSQL (a throwaway server from
//! `scripts/postgres-throwaway`): `unigate migrate` prepares the database; an account created
//! through replica A's admin API is known to replica B within a second; 200 calls split across
//! both on an expired OAuth token make exactly one token request, all answered 200; replica A
//! killed mid-walk, the walk goes on at B with A's cursor and loses nothing. The shared budget
//! and outages are tested in-process in `tests/tests/replicas.rs`.

// The tests crate's harness, shared by path (the tests crate depends on this one); this test
// uses only part of it.
#[path = "../../../tests/src/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ADMIN: &str = "admin-token-0123456789";
const API: &str = "api-token-0123";
const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A provider with an OAuth token endpoint (slow, counting its requests, rotating the refresh
/// token) and a users list of three pages that wants the issued token.
fn oauth_provider(token_requests: Arc<AtomicUsize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let token_requests = token_requests.clone();
            std::thread::spawn(move || answer(stream, &token_requests));
        }
    });
    origin
}

fn answer(mut stream: std::net::TcpStream, token_requests: &AtomicUsize) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    let _ = stream.read_exact(&mut body);
    let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (status, body) = if target.starts_with("/oauth/token") {
        let n = token_requests.fetch_add(1, Ordering::SeqCst) + 1;
        std::thread::sleep(Duration::from_millis(300));
        (
            "200 OK",
            format!(
                r#"{{"access_token":"tok-{n}","refresh_token":"rt-{n}","token_type":"bearer","expires_in":3600}}"#
            ),
        )
    } else if !head.contains("Bearer tok-") {
        ("401 Unauthorized", r#"{"message":"expired"}"#.to_owned())
    } else {
        let page: u32 = target
            .split_once("page=")
            .and_then(|(_, rest)| rest.split('&').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        (
            "200 OK",
            format!(r#"{{"users":[{{"id":"u{page}"}}],"more":{}}}"#, page < 3),
        )
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

const ROTATING: &str = r#"name: Rotating OAuth example
docs: https://example.test/docs
base_url: "{{context.url}}"
auth:
  kind: oauth2_refresh_token
  token_url: "{{context.url}}/oauth/token"
  client_id: "{{context.client_id}}"
  client_secret: "{{context.client_secret}}"
  refresh_token: "{{context.refresh_token}}"
resources:
  users:
    list:
      path: /users
      records: users
      pagination: { style: page, page_param: page, first_page: 1, has_more: more }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: '{ "id": id }'
"#;

struct Gateway {
    child: Child,
    origin: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(dir: &Path, url: &str) -> PathBuf {
    let mappings = dir.join("mappings");
    std::fs::create_dir_all(mappings.join("models")).unwrap();
    std::fs::copy(
        repo().join("mappings/models/user-directory.yaml"),
        mappings.join("models/user-directory.yaml"),
    )
    .unwrap();
    std::fs::write(mappings.join("rotating.yaml"), ROTATING).unwrap();
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "api_tokens: [\"{API}\"]\nadmin_tokens: [\"{ADMIN}\"]\ncursor_secret: \"0123456789abcdef0123\"\nmappings_dir: {}\nstore:\n  kind: postgres\n  url: \"{url}\"\n  key: \"{KEY}\"\n",
            mappings.display()
        ),
    )
    .unwrap();
    path
}

fn start(config: &Path) -> Gateway {
    let mut child = Command::new(env!("CARGO_BIN_EXE_unigate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
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
        .unwrap_or_else(|| panic!("no listening line: {line:?}"))
        .to_owned();
    Gateway { child, origin }
}

/// One request on a fresh connection: status and body.
fn call(origin: &str, method: &str, path: &str, token: &str, body: Option<&str>) -> (u16, String) {
    let address = origin.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    (
        status,
        text.split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_owned(),
    )
}

#[test]
fn two_processes_share_accounts_through_postgres() {
    let Some(postgres) = postgres::Postgres::start(&repo(), "processes") else {
        return;
    };
    let url = postgres.create_database("processes");
    let dir = std::env::temp_dir().join(format!("unigate-replicas-{}", std::process::id()));
    let config = config(&dir, &url);

    let migrated = Command::new(env!("CARGO_BIN_EXE_unigate"))
        .args(["migrate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&migrated.stdout).trim(),
        "store: postgres at schema version 2"
    );

    let mut a = start(&config);
    let b = start(&config);
    let token_requests = Arc::new(AtomicUsize::new(0));
    let provider = oauth_provider(token_requests.clone());
    let account = format!(
        r#"{{"id":"acme","integration":"rotating","context":{{"url":"{provider}","client_id":"c","client_secret":"s","refresh_token":"rt-0","access_token":"old","access_token_expires_at":"2000-01-01T00:00:00Z"}}}}"#
    );
    let (status, body) = call(
        &a.origin,
        "POST",
        "/admin/integrated-accounts",
        ADMIN,
        Some(&account),
    );
    assert_eq!(status, 201, "{body}");
    let created = Instant::now();
    loop {
        let (status, _) = call(
            &b.origin,
            "GET",
            "/admin/integrated-accounts/acme",
            ADMIN,
            None,
        );
        if status == 200 {
            break;
        }
        assert!(
            created.elapsed() < Duration::from_secs(1),
            "B did not see the account within 1 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // 200 calls split across both on the expired token: one token request in all.
    let list = "/unified/user-directory/users?integrated_account_id=acme";
    let calls: Vec<_> = (0..200)
        .map(|index| {
            let origin = if index % 2 == 0 {
                a.origin.clone()
            } else {
                b.origin.clone()
            };
            std::thread::spawn(move || call(&origin, "GET", list, API, None))
        })
        .collect();
    for handle in calls {
        let (status, body) = handle.join().unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(r#""id":"u1""#), "{body}");
    }
    assert_eq!(token_requests.load(Ordering::SeqCst), 1);

    // A walk starts at A; A is killed; the walk goes on at B with A's cursor.
    let (status, first) = call(&a.origin, "GET", list, API, None);
    assert_eq!(status, 200, "{first}");
    let _ = a.child.kill();
    let _ = a.child.wait();
    let cursor_of = |body: &str| {
        body.split_once(r#""next_cursor":""#)
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(cursor, _)| cursor.to_owned())
    };
    let mut pages = vec![first.clone()];
    let mut cursor = cursor_of(&first);
    while let Some(next) = cursor {
        let (status, page) = call(
            &b.origin,
            "GET",
            &format!("{list}&next_cursor={next}"),
            API,
            None,
        );
        assert_eq!(status, 200, "{page}");
        cursor = cursor_of(&page);
        pages.push(page);
    }
    let ids: Vec<bool> = ["u1", "u2", "u3"]
        .iter()
        .map(|id| {
            pages
                .iter()
                .any(|page| page.contains(&format!(r#""id":"{id}""#)))
        })
        .collect();
    assert_eq!(ids, vec![true, true, true], "{pages:?}");
    assert_eq!(token_requests.load(Ordering::SeqCst), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
