//! The gateway config file (`config.example.yaml`): parsed with line-aware errors, then `${VAR}`
//! references are replaced from the environment; an unset variable is an error naming it.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use unigate_store::IntegratedAccount;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: String,
    pub api_tokens: Vec<String>,
    pub cursor_secret: String,
    /// Relative paths are relative to the config file's folder.
    #[serde(default = "default_mappings_dir")]
    pub mappings_dir: PathBuf,
    #[serde(default = "default_limit")]
    pub default_limit: u32,
    #[serde(default = "default_max_records")]
    pub max_records_per_response: usize,
    /// Most bytes of records one `truto_ignore_limit` answer gathers before it returns a cursor.
    #[serde(default = "default_max_bytes")]
    pub max_bytes_per_response: usize,
    /// Serving bounds: timeouts, requests in flight, the drain on shutdown.
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub upstream: UpstreamSettings,
    #[serde(default)]
    pub integrated_accounts: Vec<IntegratedAccount>,
    /// Where accounts and their tokens live (default: in memory, from this file).
    #[serde(default)]
    pub store: StoreSettings,
    /// Bearer tokens of the admin API (`/admin/...`); none = the admin API refuses everyone.
    #[serde(default)]
    pub admin_tokens: Vec<String>,
    /// OAuth access tokens are refreshed this many seconds before they expire.
    #[serde(default = "default_refresh_margin")]
    pub token_refresh_margin_s: u64,
    /// OpenTelemetry export of spans; absent = off.
    #[serde(default)]
    pub opentelemetry: Option<OpenTelemetrySettings>,
}

/// Where spans go: an OTLP/HTTP collector's traces URL (JSON bodies).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenTelemetrySettings {
    /// e.g. `http://otel-collector:4318/v1/traces`.
    pub endpoint: String,
    /// The `service.name` resource attribute.
    #[serde(default = "default_service_name")]
    pub service_name: String,
}

fn default_service_name() -> String {
    "unigate".to_owned()
}

#[derive(Debug, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreSettings {
    /// Accounts from this file, in memory; changes live until restart.
    #[default]
    Memory,
    /// One SQLite file (created on first start), credentials encrypted with `key`.
    Sqlite {
        /// Relative to the config file's folder.
        path: PathBuf,
        /// 32 bytes as 64 hex characters or base64, e.g. `${UNIGATE_STORE_KEY}`.
        key: String,
    },
    /// A PostgreSQL database shared by several replicas, credentials encrypted with `key`.
    Postgres {
        /// `postgres://user:password@host:port/database`, e.g. `${UNIGATE_DATABASE_URL}`.
        url: String,
        key: String,
        /// Connections per replica.
        #[serde(default = "default_pool_size")]
        pool_size: usize,
        /// Connections per replica for token requests in flight, apart from `pool_size`'s.
        #[serde(default = "default_token_leases")]
        token_leases: usize,
        /// Seconds between full reloads (the safety net behind change notifications).
        #[serde(default = "default_reload")]
        reload_s: u64,
        /// TLS to the database (required and verified when present).
        #[serde(default)]
        tls: Option<PostgresTlsSettings>,
    },
}

/// `store.tls`: the server's certificate is checked against the Mozilla roots and `ca_file`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresTlsSettings {
    /// A PEM bundle of extra CA certificates (a private CA, a cloud provider's RDS bundle);
    /// relative to the config file's folder.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl PostgresTlsSettings {
    pub fn to_store(&self) -> unigate_store::postgres::PostgresTls {
        unigate_store::postgres::PostgresTls {
            ca_file: self.ca_file.clone(),
        }
    }
}

fn default_pool_size() -> usize {
    8
}
fn default_token_leases() -> usize {
    4
}
fn default_reload() -> u64 {
    30
}

fn default_refresh_margin() -> u64 {
    60
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// A client has this long to send a request head (also bounds an idle keep-alive).
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_ms: u64,
    /// The whole answer of a JSON request, and the first line of a stream.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_s: u64,
    /// A stream's whole life.
    #[serde(default = "default_stream_timeout")]
    pub stream_timeout_s: u64,
    /// Requests handled at once; more are answered 503.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_requests: usize,
    /// On SIGTERM or Ctrl-C, how long requests in flight may take to finish.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout_s: u64,
    /// Serve `/metrics` on this address too, without a token (an internal interface). Without
    /// it, `/metrics` is on the main address behind an admin token.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// Threads running requests (the async runtime's workers). Without it, one per CPU the
    /// process may use (`TOKIO_WORKER_THREADS` overrides that default). Read at start only.
    #[serde(default, deserialize_with = "workers")]
    pub workers: Option<NonZeroUsize>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            header_read_timeout_ms: default_header_read_timeout(),
            request_timeout_s: default_request_timeout(),
            stream_timeout_s: default_stream_timeout(),
            max_concurrent_requests: default_max_concurrent(),
            drain_timeout_s: default_drain_timeout(),
            metrics_listen: None,
            workers: None,
        }
    }
}

impl ServerSettings {
    pub fn limits(&self) -> crate::ServeLimits {
        crate::ServeLimits {
            header_read_timeout: std::time::Duration::from_millis(self.header_read_timeout_ms),
            request_timeout: std::time::Duration::from_secs(self.request_timeout_s),
            stream_timeout: std::time::Duration::from_secs(self.stream_timeout_s),
            max_concurrent_requests: self.max_concurrent_requests,
            drain_timeout: std::time::Duration::from_secs(self.drain_timeout_s),
        }
    }
}

/// More threads than this is a typo, not a machine: each worker is an OS thread made at start.
const MAX_WORKERS: usize = 1024;

/// `server.workers`: 1 to [`MAX_WORKERS`], refused where it is written (the error keeps its line).
fn workers<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<NonZeroUsize>, D::Error> {
    let workers = usize::deserialize(deserializer)?;
    match NonZeroUsize::new(workers) {
        Some(workers) if workers.get() <= MAX_WORKERS => Ok(Some(workers)),
        _ => Err(serde::de::Error::custom(format!(
            "server.workers: give 1 to {MAX_WORKERS} threads, not {workers}"
        ))),
    }
}

fn default_header_read_timeout() -> u64 {
    10_000
}
fn default_request_timeout() -> u64 {
    120
}
fn default_stream_timeout() -> u64 {
    3600
}
fn default_max_concurrent() -> usize {
    1024
}
fn default_drain_timeout() -> u64 {
    30
}
fn default_max_bytes() -> usize {
    64 * 1024 * 1024
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Retries after the first attempt, for connect errors, 502/503/504 and rate limits.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    #[serde(default = "default_backoff")]
    pub retry_backoff_ms: u64,
    /// The longest rate-limit wait sat out before answering 429.
    #[serde(default = "default_rate_limit_wait")]
    pub max_rate_limit_wait_ms: u64,
    /// The longest a call waits for a slot of a mapping's budget (`pace`) before answering 429:
    /// an hourly or daily budget spent would otherwise hold the caller until the window frees.
    #[serde(default = "default_pace_wait")]
    pub max_pace_wait_ms: u64,
    /// The User-Agent of provider calls a mapping does not set itself: some providers ask for
    /// the application's name and a contact (Harvest: "A link to your application or email
    /// address"). Default `unigate/<version>`.
    #[serde(default)]
    pub user_agent: Option<String>,
}

fn default_retries() -> u32 {
    2
}
fn default_backoff() -> u64 {
    200
}
fn default_rate_limit_wait() -> u64 {
    10_000
}
fn default_pace_wait() -> u64 {
    120_000
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            connect_timeout_ms: default_connect_timeout(),
            timeout_ms: default_timeout(),
            max_body_bytes: default_max_body(),
            max_retries: default_retries(),
            retry_backoff_ms: default_backoff(),
            max_rate_limit_wait_ms: default_rate_limit_wait(),
            max_pace_wait_ms: default_pace_wait(),
            user_agent: None,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}
fn default_mappings_dir() -> PathBuf {
    PathBuf::from("mappings")
}
fn default_limit() -> u32 {
    100
}
fn default_max_records() -> usize {
    10_000
}
fn default_connect_timeout() -> u64 {
    5_000
}
fn default_timeout() -> u64 {
    30_000
}
fn default_max_body() -> usize {
    32 * 1024 * 1024
}

/// Replaces every `${NAME}` in `text` from `lookup`; `$${` is a literal `${`.
pub fn substitute(
    text: &str,
    field: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("{field}: `${{` is never closed"))?;
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!(
                "{field}: `${{{name}}}` is not a valid variable name"
            ));
        }
        let value = lookup(name)
            .ok_or_else(|| format!("{field}: environment variable `{name}` is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn substitute_value(
    value: &mut Value,
    field: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) {
    match value {
        Value::String(text) => match substitute(text, field, lookup) {
            Ok(replaced) => *text = replaced,
            Err(error) => errors.push(error),
        },
        Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                substitute_value(item, &format!("{field}[{index}]"), lookup, errors);
            }
        }
        Value::Object(object) => {
            for (key, item) in object.iter_mut() {
                substitute_value(item, &format!("{field}.{key}"), lookup, errors);
            }
        }
        _ => {}
    }
}

impl Config {
    /// Reads, parses and substitutes a config file. Every problem is listed in the error.
    pub fn load(path: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("{}: cannot read: {error}", path.display()))?;
        let mut config: Config = serde_saphyr::from_str(&text).map_err(|error| {
            let line = error.location().map(|l| l.line()).unwrap_or(0);
            format!("{}:{line}: {}", path.display(), error.without_snippet())
        })?;
        let mut errors = Vec::new();
        let one = |text: &mut String, field: &str, errors: &mut Vec<String>| match substitute(
            text, field, lookup,
        ) {
            Ok(replaced) => *text = replaced,
            Err(error) => errors.push(error),
        };
        one(&mut config.listen, "listen", &mut errors);
        one(&mut config.cursor_secret, "cursor_secret", &mut errors);
        for (index, token) in config.api_tokens.iter_mut().enumerate() {
            one(token, &format!("api_tokens[{index}]"), &mut errors);
        }
        for (index, token) in config.admin_tokens.iter_mut().enumerate() {
            one(token, &format!("admin_tokens[{index}]"), &mut errors);
        }
        if config.admin_tokens.iter().any(|token| token.len() < 16) {
            errors.push("admin_tokens: each admin token needs 16 characters or more".to_owned());
        }
        match &mut config.store {
            StoreSettings::Sqlite {
                path: store_path,
                key,
            } => {
                one(key, "store.key", &mut errors);
                if store_path.is_relative() {
                    *store_path = path.parent().unwrap_or(Path::new(".")).join(&*store_path);
                }
            }
            StoreSettings::Postgres { url, key, tls, .. } => {
                one(url, "store.url", &mut errors);
                one(key, "store.key", &mut errors);
                if let Some(ca_file) = tls.as_mut().and_then(|tls| tls.ca_file.as_mut())
                    && ca_file.is_relative()
                {
                    *ca_file = path.parent().unwrap_or(Path::new(".")).join(&*ca_file);
                }
            }
            StoreSettings::Memory => {}
        }
        for (index, account) in config.integrated_accounts.iter_mut().enumerate() {
            let field = format!("integrated_accounts[{index}]");
            substitute_value(
                &mut account.context,
                &format!("{field}.context"),
                lookup,
                &mut errors,
            );
            if let Some(base_url) = &mut account.base_url {
                one(base_url, &format!("{field}.base_url"), &mut errors);
            }
            if !account.context.is_object() {
                errors.push(format!(
                    "{field}.context: must be a mapping of keys to values"
                ));
            }
        }
        if config.api_tokens.iter().any(|token| token.len() < 8) || config.api_tokens.is_empty() {
            errors.push(
                "api_tokens: give at least one token, each of 8 characters or more".to_owned(),
            );
        }
        if config.cursor_secret.len() < 16 {
            errors.push("cursor_secret: must be at least 16 characters".to_owned());
        }
        if let Some(agent) = &config.upstream.user_agent
            && (agent.trim().is_empty() || agent.chars().any(|c| c.is_control() || !c.is_ascii()))
        {
            errors.push(
                "upstream.user_agent: must be printable ASCII text on one line (e.g. `acme-sync/1.0 (ops@acme.example)`)"
                    .to_owned(),
            );
        }
        if config.mappings_dir.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            config.mappings_dir = base.join(&config.mappings_dir);
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors
                .into_iter()
                .map(|error| format!("{}: {error}", path.display()))
                .collect::<Vec<_>>()
                .join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("tok-123456".to_owned()),
            "SECRET" => Some("0123456789abcdef0123".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_and_names_unset_variables() {
        assert_eq!(
            substitute("a ${TOKEN} b", "f", &env).unwrap(),
            "a tok-123456 b"
        );
        assert_eq!(substitute("$${TOKEN}", "f", &env).unwrap(), "${TOKEN}");
        assert_eq!(
            substitute("${NOPE}", "api_tokens[0]", &env).unwrap_err(),
            "api_tokens[0]: environment variable `NOPE` is not set"
        );
    }

    #[test]
    fn loads_a_config_and_reports_every_problem() {
        let dir = std::env::temp_dir().join(format!("unigate-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.yaml");
        std::fs::write(
            &good,
            "api_tokens: [\"${TOKEN}\"]\ncursor_secret: \"${SECRET}\"\nintegrated_accounts:\n  - id: a\n    integration: okta\n    context: { subdomain: acme, api_token: \"${TOKEN}\" }\n",
        )
        .unwrap();
        let config = Config::load(&good, &env).unwrap();
        assert_eq!(config.api_tokens, vec!["tok-123456"]);
        assert_eq!(
            config.integrated_accounts[0].context["api_token"],
            "tok-123456"
        );
        assert_eq!(config.mappings_dir, dir.join("mappings"));

        let bad = dir.join("bad.yaml");
        std::fs::write(
            &bad,
            "api_tokens: [\"${MISSING_ONE}\"]\ncursor_secret: short\nintegrated_accounts:\n  - id: a\n    integration: okta\n    context: { key: \"${MISSING_TWO}\" }\n",
        )
        .unwrap();
        let error = Config::load(&bad, &env).unwrap_err();
        assert!(
            error.contains("api_tokens[0]: environment variable `MISSING_ONE` is not set"),
            "{error}"
        );
        assert!(
            error.contains(
                "integrated_accounts[0].context.key: environment variable `MISSING_TWO` is not set"
            ),
            "{error}"
        );
        assert!(
            error.contains("cursor_secret: must be at least 16 characters"),
            "{error}"
        );

        let agent = dir.join("agent.yaml");
        std::fs::write(
            &agent,
            "api_tokens: [\"0123456789\"]\ncursor_secret: 0123456789abcdef0123\nupstream: { user_agent: \"two\\nlines\" }\n",
        )
        .unwrap();
        let error = Config::load(&agent, &env).unwrap_err();
        assert!(
            error.contains("upstream.user_agent: must be printable ASCII text on one line"),
            "{error}"
        );

        let unknown = dir.join("unknown.yaml");
        std::fs::write(
            &unknown,
            "api_tokens: [x]\ncursor_secret: y\nlisten_on: z\n",
        )
        .unwrap();
        let error = Config::load(&unknown, &env).unwrap_err();
        assert!(
            error.contains("unknown.yaml:3:") && error.contains("unknown field `listen_on`"),
            "{error}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
