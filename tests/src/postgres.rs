//! A throwaway PostgreSQL for tests, started by `scripts/postgres-throwaway` on 127.0.0.1 (it
//! stops by itself if the test process dies). Without PostgreSQL binaries a test is skipped,
//! unless `UNIGATE_REQUIRE_POSTGRES=1` (CI) makes that a failure. Also compiled into the gateway
//! crate's process tests (`#[path]`), so it depends on nothing but std.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running server; stopped and its directory removed on drop.
pub struct Postgres {
    /// The maintenance database's URL (`…/postgres`).
    pub url: String,
    port: u16,
    dir: PathBuf,
    script: PathBuf,
    server: Option<Child>,
    /// TLS-only server (`UNIGATE_PG_TLS=1`).
    tls: bool,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

impl Postgres {
    /// Starts a server, or `None` (after saying why) when this machine has no PostgreSQL and CI
    /// does not require it.
    pub fn start(repo: &Path, test: &str) -> Option<Postgres> {
        Postgres::start_with(repo, test, false)
    }

    /// A server that takes TLS connections only, its certificate signed by [`Postgres::ca_file`].
    pub fn start_tls(repo: &Path, test: &str) -> Option<Postgres> {
        Postgres::start_with(repo, test, true)
    }

    /// The CA that signed a TLS server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }

    fn start_with(repo: &Path, test: &str, tls: bool) -> Option<Postgres> {
        let dir = std::env::temp_dir().join(format!(
            "unigate-pg-{test}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.subsec_nanos())
        ));
        let mut postgres = Postgres {
            url: String::new(),
            port: free_port(),
            dir,
            script: repo.join("scripts/postgres-throwaway"),
            server: None,
            tls,
        };
        match postgres.run() {
            Ok(()) => Some(postgres),
            Err(reason) if std::env::var("UNIGATE_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
                panic!("{test}: PostgreSQL is required (UNIGATE_REQUIRE_POSTGRES=1): {reason}")
            }
            Err(reason) => {
                eprintln!("skipped {test}: {reason}");
                None
            }
        }
    }

    fn run(&mut self) -> Result<(), String> {
        let mut child = Command::new("bash")
            .arg(&self.script)
            .arg(&self.dir)
            .arg(self.port.to_string())
            .arg(std::process::id().to_string())
            .env("UNIGATE_PG_TLS", if self.tls { "1" } else { "" })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot run {}: {error}", self.script.display()))?;
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|error| error.to_string())?;
        if line.trim().is_empty() {
            let status = child.wait().ok();
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            return Err(format!("the server did not start ({status:?}): {stderr}"));
        }
        self.url = line.trim().to_owned();
        self.server = Some(child);
        Ok(())
    }

    /// The URL of database `name` on this server (created by the caller, or by
    /// [`Postgres::create_database`]).
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://unigate@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let status = Command::new("psql")
            .arg(&self.url)
            .args(["-q", "-c", &format!("CREATE DATABASE {name}")])
            .status()
            .expect("psql");
        assert!(status.success(), "CREATE DATABASE {name}");
        self.database_url(name)
    }

    /// Runs one SQL statement on database `url` and returns its output (`psql -At`).
    pub fn sql(&self, url: &str, statement: &str) -> String {
        let output = Command::new("psql")
            .arg(url)
            .args(["-At", "-c", statement])
            .output()
            .expect("psql");
        assert!(
            output.status.success(),
            "{statement}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Stops the server, keeping its data (an outage).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts the stopped server again, same port and data.
    pub fn restart(&mut self) {
        self.run().expect("the server starts again");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
