//! Two `unigate serve` processes on one PostgreSQL (a throwaway server from
//! `scripts/postgres-throwaway`): `unigate migrate` prepares the database, an account created
//! through replica A's admin API is known to replica B within a second and served by it. The
//! finer replica behaviour (one token refresh, the shared budget, outages) is tested in-process
//! in `tests/tests/replicas.rs`.

// The tests crate's harness, shared by path (the tests crate depends on this one); this test
// uses only part of it.
#[path = "../../../tests/src/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "admin-token-0123456789";
const API: &str = "api-token-0123";
const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A SCIM provider that answers every request with one user.
fn scim_provider() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let body = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":1,"startIndex":1,"itemsPerPage":1,"Resources":[{"id":"u1","userName":"ada@example.com","active":true}]}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    origin
}

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
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "api_tokens: [\"{API}\"]\nadmin_tokens: [\"{ADMIN}\"]\ncursor_secret: \"0123456789abcdef0123\"\nmappings_dir: {}\nstore:\n  kind: postgres\n  url: \"{url}\"\n  key: \"{KEY}\"\n",
            repo().join("mappings").display()
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
        "store: postgres at schema version 1"
    );

    let a = start(&config);
    let b = start(&config);
    let provider = scim_provider();
    let account = format!(
        r#"{{"id":"acme","integration":"scim","context":{{"base_url":"{provider}","token":"t"}}}}"#
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
    let (status, body) = call(
        &b.origin,
        "GET",
        "/unified/user-directory/users?integrated_account_id=acme",
        API,
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""id":"u1""#), "{body}");
    let _ = std::fs::remove_dir_all(&dir);
}
