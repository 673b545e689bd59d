//! Test support for unigate's end-to-end tests: a scripted stub provider on 127.0.0.1 that
//! records what it receives, a gateway served on an ephemeral loopback port, and the Python
//! virtualenv (real Truto SDK, real SCIM server) the project's own script installs.
//!
//! Nothing here is used by the product; everything listens on loopback only and stops when the
//! test drops it.

pub mod postgres;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::task::JoinHandle;
use unigate_engine::{EngineConfig, RetryPolicy};
use unigate_gateway::Gateway;
use unigate_mapping::{Catalog, Source};
use unigate_store::IntegratedAccount;
use unigate_upstream::UpstreamConfig;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The repository's mappings, compiled.
pub fn repo_catalog() -> Catalog {
    Catalog::load_dir(&repo_root().join("mappings")).unwrap_or_else(|errors| panic!("{errors}"))
}

/// The integrations of `UNIGATE_FIXTURES` (comma-separated ids), when set: lets one integration's
/// fixtures run while other mapping files are being written.
pub fn fixture_filter() -> Option<Vec<String>> {
    std::env::var("UNIGATE_FIXTURES")
        .ok()
        .filter(|ids| !ids.trim().is_empty())
        .map(|ids| ids.split(',').map(|id| id.trim().to_owned()).collect())
}

/// The models and only the named integration files (and the files they extend), compiled.
pub fn catalog_of(ids: &[String]) -> Catalog {
    let dir = repo_root().join("mappings");
    let read = |path: PathBuf| Source {
        text: std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        path,
    };
    let models: Vec<Source> = std::fs::read_dir(dir.join("models"))
        .expect("models dir")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .map(read)
        .collect();
    let mut wanted: Vec<String> = ids.to_vec();
    let mut integrations = Vec::new();
    while let Some(id) = wanted.pop() {
        if integrations
            .iter()
            .any(|s: &Source| s.path.file_stem().is_some_and(|stem| stem == id.as_str()))
        {
            continue;
        }
        let source = read(dir.join(format!("{id}.yaml")));
        if let Some(base) = source
            .text
            .lines()
            .find_map(|line| line.strip_prefix("extends:"))
        {
            wanted.push(base.trim().trim_matches('"').to_owned());
        }
        integrations.push(source);
    }
    Catalog::from_sources(&models, &integrations).unwrap_or_else(|errors| panic!("{errors}"))
}

/// The repository's models plus one integration given as text (for tests that need a mapping of
/// their own).
pub fn catalog_with(id: &str, mapping: &str) -> Catalog {
    let model = repo_root().join("mappings/models/user-directory.yaml");
    Catalog::from_sources(
        &[Source {
            text: std::fs::read_to_string(&model).expect("model file"),
            path: model,
        }],
        &[Source {
            path: PathBuf::from(format!("mappings/{id}.yaml")),
            text: mapping.to_owned(),
        }],
    )
    .unwrap_or_else(|errors| panic!("{errors}"))
}

/// A request as the stub provider received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Decoded query pairs in the order received.
    pub query: Vec<(String, String)>,
    /// Lower-cased header names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The request this answer is for (method, path, query pairs sorted), when requests may
    /// arrive in any order (follow-up requests run concurrently); `None` answers the next
    /// request whatever it is.
    pub for_request: Option<RequestKey>,
}

/// A request as a scripted answer names it: method, path, and the query pairs sorted.
pub type RequestKey = (String, String, Vec<(String, String)>);

#[derive(Debug, Default)]
struct StubState {
    script: Vec<Scripted>,
    /// Which scripted answers were given.
    used: Vec<bool>,
    received: Vec<Recorded>,
}

/// A provider stand-in that answers its script in order, one answer per request (an answer
/// scripted for a particular request waits for that request).
#[derive(Debug)]
pub struct Stub {
    pub address: SocketAddr,
    state: Arc<Mutex<StubState>>,
    /// Kept for its lifetime: dropping it stops the stub.
    _provider: LocalProvider,
}

async fn answer(State(state): State<Arc<Mutex<StubState>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let query = parts.uri.query().map(url_pairs).unwrap_or_default();
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query,
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    value.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        body,
    };
    let mut state = state.lock().expect("stub lock");
    let mut query = recorded.query.clone();
    query.sort();
    let found = (0..state.script.len()).find(|&index| {
        !state.used.get(index).copied().unwrap_or(false)
            && state.script[index]
                .for_request
                .as_ref()
                .is_none_or(|(method, path, pairs)| {
                    *method == recorded.method && *path == recorded.path && *pairs == query
                })
    });
    state.received.push(recorded);
    if let Some(index) = found {
        let scripted = state.script.len();
        state.used.resize(scripted, false);
        state.used[index] = true;
    }
    let Some(scripted) = found.map(|index| state.script[index].clone()) else {
        return (
            StatusCode::IM_A_TEAPOT,
            "the stub has no answer scripted for this request",
        )
            .into_response();
    };
    let mut response = (
        StatusCode::from_u16(scripted.status).expect("valid status"),
        Bytes::from(scripted.body),
    )
        .into_response();
    let headers = response.headers_mut();
    if !scripted
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        headers.insert("content-type", HeaderValue::from_static("application/json"));
    }
    for (name, value) in scripted.headers {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(&value).expect("header value"),
        );
    }
    response
}

/// Decodes `a=1&b=%20x` into pairs (`+` is a space).
pub fn url_pairs(raw: &str) -> Vec<(String, String)> {
    unigate_upstream::Url::parse(&format!("http://x/?{raw}"))
        .expect("query parses")
        .query_pairs()
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

/// A provider of a test's own (an axum router) served on an ephemeral loopback port until
/// dropped.
#[derive(Debug)]
pub struct LocalProvider {
    pub address: SocketAddr,
    pub origin: String,
    task: JoinHandle<()>,
}

impl Drop for LocalProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `app` on 127.0.0.1 at a free port.
pub async fn spawn_provider(app: Router) -> LocalProvider {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local provider");
    let address = listener.local_addr().expect("local provider address");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    LocalProvider {
        address,
        origin: format!("http://{address}"),
        task,
    }
}

impl Stub {
    pub async fn start() -> Stub {
        let state = Arc::new(Mutex::new(StubState::default()));
        let provider =
            spawn_provider(Router::new().fallback(answer).with_state(state.clone())).await;
        Stub {
            address: provider.address,
            state,
            _provider: provider,
        }
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn script(&self, answers: Vec<Scripted>) {
        let mut state = self.state.lock().expect("stub lock");
        state.used = vec![false; answers.len()];
        state.script = answers;
    }

    pub fn received(&self) -> Vec<Recorded> {
        self.state.lock().expect("stub lock").received.clone()
    }
}

/// A gateway serving on an ephemeral loopback port until dropped.
#[derive(Debug)]
pub struct RunningGateway {
    pub origin: String,
    task: JoinHandle<()>,
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub const TEST_TOKEN: &str = "test-token-123";

pub async fn serve(gateway: Gateway) -> RunningGateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind gateway");
    let origin = format!("http://{}", listener.local_addr().expect("gateway address"));
    let task = tokio::spawn(async move {
        let _ = gateway.serve(listener, std::future::pending()).await;
    });
    RunningGateway { origin, task }
}

/// A gateway over `catalog` with `accounts`, token [`TEST_TOKEN`], and no retries: each unified
/// call makes exactly the provider requests a fixture lists (the retry policy has its own
/// tests).
pub async fn serve_accounts(
    catalog: impl Into<Arc<Catalog>>,
    accounts: Vec<IntegratedAccount>,
) -> RunningGateway {
    let config = EngineConfig {
        retry: RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        },
        ..EngineConfig::default()
    };
    serve_with(catalog, accounts, UpstreamConfig::default(), config).await
}

/// A gateway with explicit upstream limits and engine config.
pub async fn serve_with(
    catalog: impl Into<Arc<Catalog>>,
    accounts: Vec<IntegratedAccount>,
    upstream: UpstreamConfig,
    config: EngineConfig,
) -> RunningGateway {
    let gateway = Gateway::assemble(
        catalog,
        accounts,
        upstream,
        config,
        b"test-cursor-secret-0123456789",
        &[TEST_TOKEN.to_owned()],
    )
    .unwrap_or_else(|problems| panic!("{problems}"));
    serve(gateway).await
}

/// The unified list of one account of integration `id` (file text `mapping`, bearer `token` in its
/// context) whose provider answers `page` once: the status and the answer's text as sent, for
/// tests that assert on bytes (`remote_data`, pruned pages). `query` is appended as is.
pub async fn list_text_of_one_page(
    id: &str,
    mapping: &str,
    page: Vec<u8>,
    query: &str,
) -> (u16, String) {
    let stub = Stub::start().await;
    stub.script(vec![Scripted {
        for_request: None,
        status: 200,
        headers: vec![],
        body: page,
    }]);
    let account = IntegratedAccount {
        id: "acc".into(),
        integration: id.into(),
        context: serde_json::json!({"token": "secret-token-0123"}),
        base_url: Some(stub.origin()),
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let gateway = serve_accounts(catalog_with(id, mapping), vec![account]).await;
    let response = reqwest::Client::new()
        .get(format!(
            "{}/unified/user-directory/users?integrated_account_id=acc&{query}",
            gateway.origin
        ))
        .bearer_auth(TEST_TOKEN)
        .send()
        .await
        .expect("gateway answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// `GET {origin}{path_and_query}` with a bearer token; returns status and JSON body.
///
/// Every answer carries `x-request-id`; an error envelope carries the same id as
/// `request_id`, checked here and then removed, so that tests compare the rest exactly.
pub async fn get_json(url: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let (status, body, _) = get_json_and_headers(url, token).await;
    (status, body)
}

/// [`get_json`], with the answer's headers.
pub async fn get_json_and_headers(
    url: &str,
    token: Option<&str>,
) -> (u16, serde_json::Value, reqwest::header::HeaderMap) {
    let client = reqwest::Client::new();
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("gateway answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .expect("every answer has an x-request-id");
    let text = response.text().await.expect("body");
    let mut body: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    if status >= 400
        && let Some(object) = body.as_object_mut()
    {
        let in_envelope = object.remove("request_id");
        assert_eq!(
            in_envelope.as_ref().and_then(serde_json::Value::as_str),
            Some(request_id.as_str()),
            "the error envelope's request_id is the answer's x-request-id: {text}"
        );
    }
    (status, body, headers)
}

/// The Python of the project's virtualenv (`scripts/python-env`), or why there is none.
pub fn python() -> Result<PathBuf, String> {
    static PYTHON: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    PYTHON.get_or_init(|| python_env(None)).clone()
}

/// The Python of the real Apache Airflow server's virtualenv (`scripts/python-env airflow`),
/// or why there is none.
pub fn airflow_python() -> Result<PathBuf, String> {
    static PYTHON: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    PYTHON.get_or_init(|| python_env(Some("airflow"))).clone()
}

/// Runs `scripts/python-env [environment]`: its interpreter, `Err` when there is no Python
/// 3.12; any other failure (an install that failed) panics.
fn python_env(environment: Option<&str>) -> Result<PathBuf, String> {
    let output = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/python-env"))
        .args(environment)
        .output()
        .map_err(|error| format!("cannot run scripts/python-env: {error}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    match output.status.code() {
        Some(0) => String::from_utf8_lossy(&output.stdout)
            .lines()
            .last()
            .map(|line| PathBuf::from(line.trim()))
            .ok_or_else(|| "scripts/python-env printed no path".to_owned()),
        Some(3) => Err(format!("PYTHON 3.12 NOT FOUND: {stderr}")),
        _ => panic!("scripts/python-env failed: {stderr}"),
    }
}

/// Returns the venv Python, or prints a loud skip notice (only when Python 3.12 is truly absent).
pub fn python_or_skip(test: &str) -> Option<PathBuf> {
    or_skip(test, python())
}

/// Returns the Airflow venv's Python, or prints a loud skip notice (only when Python 3.12 is
/// truly absent).
pub fn airflow_python_or_skip(test: &str) -> Option<PathBuf> {
    or_skip(test, airflow_python())
}

fn or_skip(test: &str, python: Result<PathBuf, String>) -> Option<PathBuf> {
    match python {
        Ok(python) => Some(python),
        Err(reason) if std::env::var_os("UNIGATE_REQUIRE_PYTHON").is_some() => {
            panic!("{test} needs Python 3.12 and UNIGATE_REQUIRE_PYTHON is set: {reason}")
        }
        Err(reason) => {
            eprintln!("\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
            eprintln!("!!! SKIPPING {test}: {reason}");
            eprintln!("!!! Install Python 3.12 or set UNIGATE_PYTHON to run it.");
            eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n");
            None
        }
    }
}
