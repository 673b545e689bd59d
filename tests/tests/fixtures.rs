//! Replays every `tests/fixtures/<integration>/<case>/case.yaml` through the real HTTP server
//! against a scripted stub provider on 127.0.0.1: each unified call must make exactly the provider
//! request listed (method, path, every query parameter, the auth header) and return exactly the
//! unified JSON listed. A new integration needs only a fixture folder; see
//! `tests/fixtures/README.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;

use serde::Deserialize;
use serde_json::{Map, Value};
use unigate_mapping::{Catalog, Method, MethodKey};
use unigate_store::IntegratedAccount;
use unigate_tests::{
    Scripted, Stub, TEST_TOKEN, catalog_of, fixture_filter, get_json_and_headers, repo_catalog,
    repo_root, serve_with,
};
use unigate_unified::model::{FieldSpec, FieldType, UnifiedResource};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    description: String,
    context: Value,
    #[serde(default)]
    base_path: String,
    /// `model/resource`; default: the one the integration maps.
    #[serde(default)]
    resource: Option<String>,
    /// The unified method called: `list` (default) or `get`.
    #[serde(default)]
    method: Option<String>,
    /// The record id of a `get`.
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    query: Map<String, Value>,
    /// The account is refused where accounts are checked (its mapping's `account_checks`): the
    /// exact problems the gateway names at startup, one a line. Such a case has no calls.
    #[serde(default)]
    refused: Option<String>,
    /// Context keys whose names look like a credential's (`team_key`) but that hold an
    /// identifier the answer may show (Streak's team key is its team's id): not checked for
    /// leaks.
    #[serde(default)]
    public_context: Vec<String>,
    #[serde(default)]
    calls: Vec<Call>,
}

/// The unified URL path a case calls, from the mapping files: the integration's (only) mapped
/// resource unless the case names one, and the method the case names.
fn unified_path(
    catalog: &Catalog,
    integration: &str,
    case: &Case,
) -> Result<(String, Arc<UnifiedResource>), String> {
    let found = catalog
        .integrations
        .get(integration)
        .ok_or_else(|| format!("no mapping file for `{integration}`"))?;
    let method = match case.method.as_deref() {
        None => Method::List,
        Some(name) => Method::parse(name).ok_or_else(|| format!("unknown method `{name}`"))?,
    };
    let mapped: Vec<&MethodKey> = found
        .unified
        .keys()
        .filter(|key| key.method == method)
        .filter(|key| {
            case.resource
                .as_deref()
                .is_none_or(|wanted| wanted == format!("{}/{}", key.model, key.resource))
        })
        .collect();
    let [key] = mapped.as_slice() else {
        return Err(format!(
            "`{integration}` maps {} matching {method} method(s); name one with `resource:`",
            mapped.len()
        ));
    };
    let base = format!("/unified/{}/{}", key.model, key.resource);
    let resource = catalog.models[&key.model].resources[&key.resource].clone();
    let path = match (method, &case.id) {
        (Method::Get, Some(id)) => format!("{base}/{}", urlencode(id)),
        (Method::Get, None) => return Err("a get case needs `id`".to_owned()),
        (Method::List, None) => base,
        (Method::List, Some(_)) => return Err("`id` is for get cases".to_owned()),
    };
    Ok((path, resource))
}

/// What the unified model promises of a record a case expects: every datetime field RFC 3339,
/// every enum field one of its values (except `status`, which the contract lets carry the
/// provider's raw value when nothing fits), inside arrays and objects too. Typed clients (Truto's
/// SDKs) read these as they are declared, so a raw `user_type` or a zone-less time breaks them
/// where the fixture alone would not notice.
fn model_problems(at: &str, record: &Value, fields: &BTreeMap<String, FieldSpec>) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(object) = record.as_object() else {
        return problems;
    };
    for (name, spec) in fields {
        if let Some(value) = object.get(name) {
            field_problems(&format!("{at}.{name}"), name, value, spec, &mut problems);
        }
    }
    problems
}

fn field_problems(at: &str, name: &str, value: &Value, spec: &FieldSpec, out: &mut Vec<String>) {
    match spec.field_type {
        FieldType::Datetime if !value.as_str().is_some_and(is_rfc3339) => {
            out.push(format!("{at}: {value} is not an RFC 3339 date-time"));
        }
        FieldType::String
            if !spec.allowed.is_empty()
                && name != "status"
                && !value
                    .as_str()
                    .is_some_and(|v| spec.allowed.iter().any(|a| a == v)) =>
        {
            out.push(format!("{at}: {value} is not one of {:?}", spec.allowed));
        }
        FieldType::Array => {
            if let (Some(items), Some(values)) = (&spec.items, value.as_array()) {
                for (index, item) in values.iter().enumerate() {
                    field_problems(&format!("{at}[{index}]"), name, item, items, out);
                }
            }
        }
        FieldType::Object => {
            out.extend(model_problems(at, value, &spec.fields));
        }
        _ => {}
    }
}

/// `YYYY-MM-DDTHH:MM:SS`, optional fraction, then `Z` or `±HH:MM`.
fn is_rfc3339(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|b| b.iter().all(u8::is_ascii_digit))
    };
    let shape = bytes.len() >= 20
        && digits(0..4)
        && bytes[4] == b'-'
        && digits(5..7)
        && bytes[7] == b'-'
        && digits(8..10)
        && matches!(bytes[10], b'T' | b't')
        && digits(11..13)
        && bytes[13] == b':'
        && digits(14..16)
        && bytes[16] == b':'
        && digits(17..19);
    if !shape {
        return false;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        if end == 0 {
            return false;
        }
        rest = &fraction[end..];
    }
    match rest.as_bytes() {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()),
        _ => false,
    }
}

/// One unified call: the provider request it makes (`request`/`response`), or several in order
/// (`exchanges`: a token request first, follow-up requests after the page; `exchanges: []`: the
/// gateway answers without calling the provider, as for an account marked `needs_reauth`), and
/// its answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Call {
    #[serde(default)]
    request: Option<ExpectedRequest>,
    #[serde(default)]
    response: Option<ScriptedResponse>,
    #[serde(default)]
    exchanges: Option<Vec<Exchange>>,
    expect: Expectation,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Exchange {
    request: ExpectedRequest,
    response: ScriptedResponse,
}

impl Call {
    /// The provider requests of this call, with their scripted answers, in order.
    fn exchanges(&self) -> Vec<(&ExpectedRequest, &ScriptedResponse)> {
        let single = self.request.as_ref().zip(self.response.as_ref());
        single
            .into_iter()
            .chain(
                self.exchanges
                    .iter()
                    .flatten()
                    .map(|e| (&e.request, &e.response)),
            )
            .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedRequest {
    method: String,
    path: String,
    #[serde(default)]
    query: BTreeMap<String, QueryValue>,
    /// Headers the request must carry with these values; `null`: a header it must not carry.
    #[serde(default)]
    headers: BTreeMap<String, Option<String>>,
    /// A file holding the exact body expected (POST requests): JSON, a form (`.txt`), or text
    /// compared as it is (`.xml`, `.raw`).
    #[serde(default)]
    body: Option<String>,
}

impl ExpectedRequest {
    /// Whether `other` asks the same thing: a request sent again (a retry, a renewal's repeat).
    fn same_request(&self, other: &ExpectedRequest) -> bool {
        self.method == other.method
            && self.path == other.path
            && self.query == other.query
            && self.body == other.body
    }
}

/// A parameter sent once, or several times.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(untagged)]
enum QueryValue {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptedResponse {
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// A file of the case holding the body; none: an empty body (a bare 429, a 204).
    #[serde(default)]
    body: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectation {
    status: u16,
    body: String,
    /// Headers the answer must carry with these values (names in lower case): the normalized
    /// rate-limit headers of a 429, say.
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

fn cases() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let root = repo_root().join("tests/fixtures");
    for integration in std::fs::read_dir(&root).expect("fixtures dir").flatten() {
        if !integration.path().is_dir() {
            continue;
        }
        let id = integration.file_name().to_string_lossy().into_owned();
        if fixture_filter().is_some_and(|ids| !ids.contains(&id)) {
            continue;
        }
        for case in std::fs::read_dir(integration.path())
            .expect("integration dir")
            .flatten()
        {
            if case.path().join("case.yaml").is_file() {
                found.push(case.path());
            }
        }
    }
    found.sort();
    found
}

fn read(dir: &Path, file: &str, stub: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|error| panic!("{}: {error}", dir.join(file).display()))
        .replace("{{stub}}", stub)
}

/// A context value `{{test_key}}` is the tests' RSA key (tests/keys), for a case whose gateway
/// signs an assertion (a service account's JWT) rather than holding a token already.
fn place_test_key(context: &mut Value) {
    if let Some(object) = context.as_object_mut() {
        for value in object.values_mut() {
            if value.as_str() == Some("{{test_key}}") {
                let key = repo_root().join("tests/keys/test-service-account.key");
                *value = Value::String(std::fs::read_to_string(key).unwrap());
            }
        }
    }
}

/// A form's pairs as expected. A value written `jwt:{claims}` is a signed JWT (an assertion,
/// whose times change with every request) carrying those claims, and numeric `iat` and `exp`
/// with `exp` after `iat`.
fn form_matches(got: &[(String, String)], want: &[(String, String)]) -> bool {
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|((got_key, got_value), (key, value))| {
                got_key == key
                    && match value.strip_prefix("jwt:") {
                        Some(claims) => jwt_carries(got_value, claims),
                        None => got_value == value,
                    }
            })
}

fn jwt_carries(token: &str, claims: &str) -> bool {
    use base64::Engine as _;
    let want: Value = serde_json::from_str(claims)
        .unwrap_or_else(|error| panic!("`jwt:` claims {claims}: {error}"));
    let Some(got) = token
        .split('.')
        .nth(1)
        .and_then(|payload| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
    else {
        return false;
    };
    let times = (got["iat"].as_i64(), got["exp"].as_i64());
    matches!(times, (Some(iat), Some(exp)) if exp > iat)
        && want.as_object().is_some_and(|want| {
            want.iter()
                .all(|(claim, value)| got.get(claim) == Some(value))
        })
}

fn sorted_pairs(pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut pairs = pairs;
    pairs.sort();
    pairs
}

/// Runs one case; returns every mismatch found.
/// A `refused` case: the gateway will not start with the account (as it is configured, with no
/// base URL of its own), and says exactly `expected`.
fn refused_account(
    name: &str,
    integration: &str,
    case: &Case,
    expected: &str,
    catalog: Arc<Catalog>,
) -> Vec<String> {
    if !case.calls.is_empty() {
        return vec![format!("{name}: a `refused` case makes no calls")];
    }
    let account = IntegratedAccount {
        id: format!("acc-{integration}"),
        integration: integration.to_owned(),
        context: case.context.clone(),
        base_url: None,
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let assembled = unigate_gateway::Gateway::assemble(
        catalog,
        vec![account],
        unigate_upstream::UpstreamConfig::default(),
        unigate_engine::EngineConfig::default(),
        b"test-cursor-secret-0123456789",
        &[TEST_TOKEN.to_owned()],
    );
    match assembled {
        Ok(_) => vec![format!("{name}: the account was accepted")],
        Err(problems) if problems.trim() == expected.trim() => Vec::new(),
        Err(problems) => vec![format!(
            "{name}: refused differently\ngot:\n{problems}\nexpected:\n{}",
            expected.trim()
        )],
    }
}

async fn run_case(dir: &Path, catalog: Arc<Catalog>) -> Vec<String> {
    let integration = dir
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let name = format!(
        "{integration}/{}",
        dir.file_name().unwrap().to_string_lossy()
    );
    let mut case: Case =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("case.yaml")).unwrap())
            .unwrap_or_else(|error| panic!("{name}/case.yaml: {error}"));
    assert!(!case.description.is_empty());
    place_test_key(&mut case.context);
    if let Some(expected) = &case.refused {
        return refused_account(&name, &integration, &case, expected, catalog);
    }
    if case.calls.is_empty() {
        return vec![format!("{name}: a case needs `calls` (or `refused`)")];
    }
    let stub = Stub::start().await;
    let origin = stub.origin();
    for call in &case.calls {
        let unsent = call.exchanges.as_ref().is_some_and(Vec::is_empty);
        if (call.exchanges().is_empty() && !unsent)
            || (unsent && call.request.is_some())
            || (call.request.is_some() != call.response.is_some())
        {
            return vec![format!(
                "{name}: every call needs `request` and `response`, or `exchanges` (`[]`: none)"
            )];
        }
    }
    stub.script(
        case.calls
            .iter()
            .flat_map(|call| {
                // Several requests of one call may arrive in any order (follow-ups run
                // concurrently): each answer waits for its own request.
                let keyed = call.exchanges().len() > 1;
                call.exchanges()
                    .into_iter()
                    .map(move |(request, response)| (keyed.then(|| request_key(request)), response))
            })
            .map(|(for_request, response)| Scripted {
                for_request,
                status: response.status,
                headers: response
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.replace("{{stub}}", &origin)))
                    .collect(),
                body: response
                    .body
                    .as_deref()
                    .map(|file| read(dir, file, &origin))
                    .unwrap_or_default()
                    .into_bytes(),
            })
            .collect(),
    );
    let account = IntegratedAccount {
        id: format!("acc-{integration}"),
        integration: integration.clone(),
        context: case.context.clone(),
        base_url: Some(format!("{origin}{}", case.base_path)),
        status: Default::default(),
        last_error: None,
        mapping: None,
    };
    let (path, resource) = match unified_path(&catalog, &integration, &case) {
        Ok(found) => found,
        Err(problem) => return vec![format!("{name}: {problem}")],
    };
    // Every request reaches the stub, a token endpoint or regional host a mapping fixes too
    // (its `Host` header says which host it was for).
    let upstream = unigate_upstream::UpstreamConfig {
        // As an operator sets `upstream.user_agent`: a case may check that it goes.
        user_agent: Some("unigate-fixtures (ops@unigate.example)".to_owned()),
        replay_origin: Some(unigate_upstream::Url::parse(&origin).unwrap()),
        ..unigate_upstream::UpstreamConfig::default()
    };
    let config = unigate_engine::EngineConfig {
        retry: unigate_engine::RetryPolicy {
            max_retries: 0,
            ..unigate_engine::RetryPolicy::default()
        },
        ..unigate_engine::EngineConfig::default()
    };
    let gateway = serve_with(catalog, vec![account], upstream, config).await;
    let mut problems = Vec::new();
    let mut cursor: Option<String> = None;
    let mut sent = 0;
    for (index, call) in case.calls.iter().enumerate() {
        let mut query = case.query.clone();
        query.insert(
            "integrated_account_id".into(),
            Value::String(format!("acc-{integration}")),
        );
        if let Some(cursor) = &cursor {
            query.insert("next_cursor".into(), Value::String(cursor.clone()));
        }
        let encoded: Vec<(String, String)> = unigate_mapping::flatten_query(&query);
        let url = format!(
            "{}{path}?{}",
            gateway.origin,
            encoded
                .iter()
                .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
                .collect::<Vec<_>>()
                .join("&")
        );
        let (status, mut body, headers) = get_json_and_headers(&url, Some(TEST_TOKEN)).await;
        let at = format!("{name} call {}", index + 1);
        // The provider requests.
        let received = stub.received();
        let exchanges = call.exchanges();
        let made: Vec<&unigate_tests::Recorded> =
            received.iter().skip(sent).take(exchanges.len()).collect();
        sent += exchanges.len();
        let mut taken = vec![false; made.len()];
        for (expected, _) in exchanges.iter() {
            // One request: the next one made. Several: the one with this method, path and query.
            let found = if exchanges.len() == 1 {
                made.first().copied()
            } else {
                let key = request_key(expected);
                let index = (0..made.len()).find(|&i| {
                    let mut query = made[i].query.clone();
                    query.sort();
                    !taken[i] && (made[i].method.clone(), made[i].path.clone(), query) == key
                });
                if let Some(index) = index {
                    taken[index] = true;
                }
                match index {
                    Some(index) => Some(made[index]),
                    None => {
                        problems.push(format!(
                            "{at}: no request {} {} {:?} among {:?}",
                            key.0,
                            key.1,
                            key.2,
                            made.iter()
                                .map(|r| format!("{} {} {:?}", r.method, r.path, r.query))
                                .collect::<Vec<_>>()
                        ));
                        continue;
                    }
                }
            };
            check_request(&mut problems, &at, dir, &origin, expected, found);
        }
        // The caller's answer.
        if status != call.expect.status {
            problems.push(format!(
                "{at}: status {status} != {} (body {body})",
                call.expect.status
            ));
        }
        let expected: Value = serde_json::from_str(&read(dir, &call.expect.body, &origin))
            .unwrap_or_else(|error| panic!("{at}: {}: {error}", call.expect.body));
        // A call the gateway answers from a held rate limit says how long is left, a reading of
        // the clock: on a loaded machine it may come a second or two after the call that set
        // the hold, and read that much less. Within that, it reads as the case wrote it.
        let lag = held_wait(&body)
            .zip(held_wait(&expected))
            .filter(|(got, wrote)| (wrote.saturating_sub(2)..=*wrote).contains(got));
        if let Some((got, wrote)) = lag {
            let message = body["message"].as_str().unwrap_or_default().replacen(
                &format!("wait {got} s more"),
                &format!("wait {wrote} s more"),
                1,
            );
            body["message"] = Value::String(message);
        }
        for (name, value) in &call.expect.headers {
            let got = headers.get(name).and_then(|got| got.to_str().ok());
            let got = match (lag, got) {
                (Some((lagged, wrote)), Some(got)) if got == lagged.to_string() => {
                    Some(wrote.to_string())
                }
                (_, got) => got.map(str::to_owned),
            };
            if got.as_deref() != Some(value.as_str()) {
                problems.push(format!(
                    "{at}: answer header `{name}` is {got:?}, expected {value:?}"
                ));
            }
        }
        cursor = body
            .get("next_cursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Some(next) = body.get_mut("next_cursor")
            && next.is_string()
        {
            *next = Value::String("<cursor>".into());
        }
        if body != expected {
            problems.push(format!(
                "{at}: body differs\n  got:      {}\n  expected: {}",
                body, expected
            ));
        }
        // A raw answer (`truto_response_format=raw`) holds the provider's own records.
        let raw = case
            .query
            .get("truto_response_format")
            .and_then(Value::as_str)
            == Some("raw");
        if (200..300).contains(&status) && !raw {
            let records = match expected.get("result") {
                Some(Value::Array(records)) => records.iter().collect(),
                _ => vec![&expected],
            };
            for (index, record) in records.into_iter().enumerate() {
                problems.extend(model_problems(
                    &format!("{at}: record {index}"),
                    record,
                    &resource.fields,
                ));
            }
        }
        let secrets = secret_strings(&case.context, &case.public_context);
        let text = body.to_string();
        for secret in secrets {
            if text.contains(&secret) {
                problems.push(format!(
                    "{at}: the answer contains the credential `{secret}`"
                ));
            }
        }
    }
    let received = stub.received();
    let made = received.len();
    let expected: usize = case.calls.iter().map(|call| call.exchanges().len()).sum();
    if made != expected {
        // The requests themselves, so that a case can be written from what the gateway sent.
        let sent: Vec<String> = received
            .iter()
            .map(|request| format!("{} {} {:?}", request.method, request.path, request.query))
            .collect();
        problems.push(format!(
            "{name}: {made} provider requests made, {expected} expected:\n    {}",
            sent.join("\n    ")
        ));
    }
    problems
}

/// What identifies an expected request among several: method, path and sorted query pairs.
fn request_key(expected: &ExpectedRequest) -> unigate_tests::RequestKey {
    let mut query: Vec<(String, String)> = expected
        .query
        .iter()
        .flat_map(|(k, v)| match v {
            QueryValue::One(one) => vec![(k.clone(), one.clone())],
            QueryValue::Many(many) => many.iter().map(|m| (k.clone(), m.clone())).collect(),
        })
        .collect();
    query.sort();
    (expected.method.clone(), expected.path.clone(), query)
}

/// Compares one provider request the gateway made with the one a case expects.
fn check_request(
    problems: &mut Vec<String>,
    at: &str,
    dir: &Path,
    origin: &str,
    expected: &ExpectedRequest,
    request: Option<&unigate_tests::Recorded>,
) {
    let Some(request) = request else {
        problems.push(format!("{at}: the gateway made no provider request"));
        return;
    };
    if request.method != expected.method {
        problems.push(format!(
            "{at}: method {} != {}",
            request.method, expected.method
        ));
    }
    if request.path != expected.path {
        problems.push(format!("{at}: path {} != {}", request.path, expected.path));
    }
    let want: Vec<(String, String)> = expected
        .query
        .iter()
        .flat_map(|(k, v)| match v {
            QueryValue::One(one) => vec![(k.clone(), one.clone())],
            QueryValue::Many(many) => many.iter().map(|m| (k.clone(), m.clone())).collect(),
        })
        .collect();
    if sorted_pairs(request.query.clone()) != sorted_pairs(want.clone()) {
        problems.push(format!(
            "{at}: query {:?} != {:?}",
            sorted_pairs(request.query.clone()),
            sorted_pairs(want)
        ));
    }
    match &expected.body {
        Some(file) => {
            let text = read(dir, file, origin);
            // An XML or raw body compares as text (the file's final line break aside); a JSON
            // body as JSON; a form body (`.txt`) as its pairs.
            let verbatim = file.ends_with(".xml") || file.ends_with(".raw");
            match serde_json::from_str::<Value>(&text) {
                _ if verbatim => {
                    let got = String::from_utf8_lossy(&request.body);
                    if got != text.trim_end_matches('\n') {
                        problems.push(format!("{at}: request body {got:?} != {text:?}"));
                    }
                }
                Ok(want) => {
                    let got: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
                    if got != want {
                        problems.push(format!("{at}: request body {got} != {want}"));
                    }
                }
                Err(_) => {
                    let got = sorted_pairs(unigate_tests::url_pairs(&String::from_utf8_lossy(
                        &request.body,
                    )));
                    let want = sorted_pairs(unigate_tests::url_pairs(text.trim()));
                    if !form_matches(&got, &want) {
                        problems.push(format!("{at}: form body {got:?} != {want:?}"));
                    }
                }
            }
        }
        None if !request.body.is_empty() => problems.push(format!(
            "{at}: unexpected request body {}",
            String::from_utf8_lossy(&request.body)
        )),
        None => {}
    }
    for (header, value) in &expected.headers {
        let got = request
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(header))
            .map(|(_, v)| v);
        if got != value.as_ref() {
            problems.push(format!("{at}: header {header}: {got:?} != {value:?}"));
        }
    }
}

/// Context values that look like credentials (keys naming a token, key, secret or password),
/// but those the case names public.
fn secret_strings(context: &Value, public: &[String]) -> Vec<String> {
    context
        .as_object()
        .map(|object| {
            object
                .iter()
                .filter(|(key, _)| {
                    ["token", "key", "secret", "password"]
                        .iter()
                        .any(|word| key.contains(word))
                        && !public.contains(key)
                })
                .filter_map(|(_, value)| value.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_replays_exactly() {
    let cases = cases();
    assert!(
        fixture_filter().is_some() || cases.len() >= 10,
        "expected the reference fixtures, found {}",
        cases.len()
    );
    // Compiled once and shared: every case runs a gateway of its own over the same mappings.
    let catalog = Arc::new(match fixture_filter() {
        Some(ids) => catalog_of(&ids),
        None => repo_catalog(),
    });
    let problems: Vec<String> = futures_util::stream::iter(&cases)
        .map(|case| run_case(case, catalog.clone()))
        .buffered(8)
        .collect::<Vec<Vec<String>>>()
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The cases of one integration's fixture folder.
fn cases_of(id: &str) -> Vec<Case> {
    case_dirs_of(id).into_iter().map(|(_, case)| case).collect()
}

/// The cases of one integration's fixture folder, each with its folder (where its bodies are).
fn case_dirs_of(id: &str) -> Vec<(PathBuf, Case)> {
    let dir = repo_root().join("tests/fixtures").join(id);
    std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().join("case.yaml").is_file())
                .map(|e| {
                    let case = serde_saphyr::from_str(
                        &std::fs::read_to_string(e.path().join("case.yaml")).unwrap(),
                    )
                    .unwrap();
                    (e.path(), case)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `id` and the files it extends, nearest first.
fn extends_chain(id: &str) -> Vec<String> {
    let mut chain = vec![id.to_owned()];
    while let Some(base) = std::fs::read_to_string(
        repo_root()
            .join("mappings")
            .join(format!("{}.yaml", chain.last().unwrap())),
    )
    .ok()
    .and_then(|text| {
        text.lines()
            .find_map(|line| line.strip_prefix("extends:"))
            .map(|base| base.trim().trim_matches('"').to_owned())
    }) {
        if chain.contains(&base) {
            break;
        }
        chain.push(base);
    }
    chain
}

/// The seconds a held call's answer says are left (`… asked to wait N s more; …`).
fn held_wait(body: &Value) -> Option<u64> {
    let message = body.get("message")?.as_str()?;
    let (_, rest) = message.split_once("asked to wait ")?;
    rest.split_once(" s more")?.0.parse().ok()
}

#[test]
fn every_integration_has_a_multi_page_fixture_and_an_error_fixture() {
    if fixture_filter().is_some() {
        return; // A partial run checks its own fixtures only.
    }
    let catalog = repo_catalog();
    let mut missing = Vec::new();
    for (id, integration) in &catalog.integrations {
        if id.starts_with("sandbox") {
            continue; // The sandbox is exercised by tests/sandbox.rs against its real provider.
        }
        let cases = cases_of(id);
        if integration.retired.is_some() {
            // A service that is gone has no pages to walk: one case shows the call answered
            // 410 without a provider request.
            if !cases.iter().any(|case| {
                case.calls.iter().any(|c| {
                    c.expect.status == 410 && c.exchanges.as_ref().is_some_and(Vec::is_empty)
                })
            }) {
                missing.push(format!(
                    "{id}: retired, but no fixture shows a call answered 410 without a provider request"
                ));
            }
            continue;
        }
        let is_list = |case: &Case| case.method.as_deref().is_none_or(|m| m == "list");
        // A list the provider answers in one page (pagination `none`) has no second page to
        // walk: one successful call proves it.
        let pages_needed = match integration
            .unified
            .iter()
            .find(|(key, _)| key.method == Method::List)
            .map(|(_, list)| {
                &integration.resources[&list.resource]
                    .pagination
                    .strategy
                    .style
            }) {
            Some(unigate_pagination::Style::None) => 1,
            _ => 2,
        };
        if !cases.iter().any(|case| {
            is_list(case)
                && case.calls.len() >= pages_needed
                && case.calls.iter().all(|c| c.expect.status == 200)
        }) {
            missing.push(format!(
                "{id}: no fixture walks {pages_needed} or more pages"
            ));
        }
        if !cases
            .iter()
            .any(|case| case.calls.iter().any(|c| c.expect.status >= 400))
        {
            missing.push(format!("{id}: no fixture of a provider error"));
        }
        // Every file proves its own get, inherited or not: a base's cases do not show the
        // child's host, path, credential or not-found answer (Slack Enterprise's inherited get
        // answered a record its mapping could not read).
        if integration
            .unified
            .keys()
            .any(|key| key.method == Method::Get)
        {
            let get_cases: Vec<&Case> = cases
                .iter()
                .filter(|case| case.method.as_deref() == Some("get"))
                .collect();
            let answers = |wanted: &dyn Fn(u16) -> bool| {
                get_cases
                    .iter()
                    .any(|case| case.calls.iter().any(|c| wanted(c.expect.status)))
            };
            // An unknown id is a 404 where the provider says so; where it answers another
            // client error (Plaid's 400 INVALID_FIELD, Vault's HTTP 200 INVALID_DATA), that.
            if !(answers(&|status| status == 200)
                && answers(&|status| (400..500).contains(&status)))
            {
                missing.push(format!(
                    "{id}: maps get, but has no get fixtures of its own for one user (200) and an unknown id (a 4xx, 404 where the provider says so)"
                ));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// A credential renewed with a refresh token (the file's, or a variant's: an OAuth app beside an
/// API key) is proven by a case whose provider requests include the refresh itself (a form
/// `grant_type=refresh_token` or its JSON form): the token URL, client authentication and body
/// encoding are exactly what a real account's first renewal sends, and nothing else shows them.
#[test]
fn every_refresh_token_grant_has_a_renewal_fixture() {
    if fixture_filter().is_some() {
        return;
    }
    let catalog = repo_catalog();
    let refreshes = |text: &str| {
        serde_json::from_str::<Value>(text)
            .ok()
            .is_some_and(|body| body["grant_type"] == "refresh_token")
            || unigate_tests::url_pairs(text.trim())
                .iter()
                .any(|(name, value)| name == "grant_type" && value == "refresh_token")
    };
    let mut missing = Vec::new();
    for (id, integration) in &catalog.integrations {
        let grants = std::iter::once(&integration.auth)
            .chain(integration.variants.iter().map(|v| &v.integration.auth))
            .any(|auth| auth.kind_name() == "oauth2_refresh_token");
        if !grants || integration.retired.is_some() {
            continue;
        }
        let renewed = extends_chain(id).iter().any(|file| {
            let dir = repo_root().join("tests/fixtures").join(file);
            walk_files(&dir)
                .iter()
                .any(|path| std::fs::read_to_string(path).is_ok_and(|text| refreshes(&text)))
        });
        if !renewed {
            missing.push(format!(
                "{id}: renews with a refresh token, but no fixture shows the refresh request"
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// A token the gateway asks for with the client's own secret or key (client credentials, a signed
/// JWT, Zoom's account credentials) is proven as a refresh is: a case's provider requests include
/// that token request (its `grant_type`, in a form or JSON body), with the URL, client
/// authentication and claims a real account's first call sends.
#[test]
fn every_client_grant_has_a_token_request_fixture() {
    use unigate_mapping::{Auth, Grant, TokenSource};
    if fixture_filter().is_some() {
        return;
    }
    let catalog = repo_catalog();
    let asks = |text: &str, grant_type: &str| {
        serde_json::from_str::<Value>(text)
            .ok()
            .is_some_and(|body| body["grant_type"] == grant_type)
            || unigate_tests::url_pairs(text.trim())
                .iter()
                .any(|(name, value)| name == "grant_type" && value == grant_type)
    };
    let mut missing = Vec::new();
    for (id, integration) in &catalog.integrations {
        if integration.retired.is_some() {
            continue;
        }
        let grant_types: std::collections::BTreeSet<String> = std::iter::once(&integration.auth)
            .chain(integration.variants.iter().map(|v| &v.integration.auth))
            .filter_map(|auth| match auth {
                Auth::Token(token) => match &token.source {
                    TokenSource::OAuth2(oauth)
                        if matches!(oauth.grant, Grant::ClientCredentials | Grant::JwtBearer) =>
                    {
                        oauth.grant_type.render(&Value::Null).ok()
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect();
        let files: Vec<PathBuf> = extends_chain(id)
            .iter()
            .flat_map(|file| walk_files(&repo_root().join("tests/fixtures").join(file)))
            .collect();
        for grant_type in grant_types {
            let shown = files.iter().any(|path| {
                std::fs::read_to_string(path).is_ok_and(|text| asks(&text, &grant_type))
            });
            if !shown {
                missing.push(format!(
                    "{id}: asks for a token with grant_type {grant_type}, but no fixture shows that request"
                ));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// A token the gateway holds (a refresh, client-credentials or JWT grant, or a login) can end
/// before the gateway's clock says: revoked, rotated, or shorter-lived than its answer said.
/// Providers answer such a call each in their own way (401, 403, 400, or a 200 with an error
/// body), so every file proves its own: a case in its own folder where the provider refuses a
/// call, the gateway asks for a token (a request elsewhere), and repeats the call exactly, which
/// the caller sees answered.
#[test]
fn every_token_grant_has_a_refusal_fixture() {
    if fixture_filter().is_some() {
        return;
    }
    let catalog = repo_catalog();
    let repeated_after_renewal = |call: &Call| {
        let requests: Vec<&ExpectedRequest> = call
            .exchanges()
            .into_iter()
            .map(|(request, _)| request)
            .collect();
        call.expect.status == 200
            && requests.iter().enumerate().any(|(i, first)| {
                requests[i + 1..].iter().enumerate().any(|(gap, again)| {
                    gap > 0
                        && first.same_request(again)
                        && requests[i + 1..i + 1 + gap]
                            .iter()
                            .any(|between| between.path != first.path)
                })
            })
    };
    let mut missing = Vec::new();
    for (id, integration) in &catalog.integrations {
        if !holds_token(integration) || integration.retired.is_some() {
            continue;
        }
        if !cases_of(id)
            .iter()
            .any(|case| case.calls.iter().any(repeated_after_renewal))
        {
            missing.push(format!(
                "{id}: holds a token, but no fixture of its own shows the provider refusing it and the call repeated with a new one"
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// A grant ends for good (a refresh token revoked or expired, an app uninstalled, a client secret
/// rotated, a login's password changed), and token endpoints say so in their own shapes (RFC
/// 6749's 400 `invalid_grant`, a 401 `invalid_client`, Zoho's and Slack's HTTP 200 with an
/// `error`, Atlassian's 403). So every file holding a token proves its own: a case where a call
/// is answered 401 (the credential refused) and a later call is answered without any provider
/// request (the account marked `needs_reauth`, not asked again).
#[test]
fn every_token_grant_has_a_dead_grant_fixture() {
    if fixture_filter().is_some() {
        return;
    }
    let catalog = repo_catalog();
    let marks = |case: &Case| {
        case.calls
            .iter()
            .position(|call| call.expect.status == 401 && !call.exchanges().is_empty())
            .is_some_and(|refused| {
                case.calls[refused + 1..].iter().any(|call| {
                    call.expect.status == 401 && call.exchanges.as_ref().is_some_and(Vec::is_empty)
                })
            })
    };
    let mut missing = Vec::new();
    for (id, integration) in &catalog.integrations {
        if !holds_token(integration) || integration.retired.is_some() {
            continue;
        }
        if !cases_of(id).iter().any(marks) {
            missing.push(format!(
                "{id}: holds a token, but no fixture of its own shows a dead grant refused and the account marked (a later call answered without a provider request)"
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// A file that reads a rate limit off more than a 429 (GitHub's 403 with a message, Egnyte's
/// 403 with a Mashery code, Boomi's 503, a GraphQL error in a 200) proves that reading: a case
/// of its own or its base's where the provider's signal is answered as a rate limit (the caller gets 429) or
/// waited out (the same request sent again and answered). Only a case shows the expression
/// matches the body the provider really sends.
#[test]
fn every_rate_limit_signal_has_a_fixture() {
    if fixture_filter().is_some() {
        return;
    }
    let catalog = repo_catalog();
    let limited = |call: &Call| {
        let exchanges = call.exchanges();
        call.expect.status == 429
            || exchanges.windows(2).any(|pair| {
                let ((first, answer), (again, _)) = (pair[0], pair[1]);
                !(200..300).contains(&answer.status) && first.same_request(again)
            })
    };
    let mut missing = Vec::new();
    for (id, integration) in &catalog.integrations {
        let signal = integration.rate_limit.is_limited.source().trim();
        if signal == "status = 429" || integration.retired.is_some() {
            continue;
        }
        // A file that inherits its reading is proven by its base's case, as a renewal is.
        if !extends_chain(id)
            .iter()
            .flat_map(|file| cases_of(file))
            .any(|case| case.calls.iter().any(limited))
        {
            missing.push(format!(
                "{id}: reads a rate limit as `{signal}`, but no fixture of its own or its base's shows the provider's signal answered 429 or waited out"
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// Lists lose users silently where a real account has them and the fixture does not: many
/// providers leave deactivated users out unless asked (a parameter, a second list), others mark
/// them in a field the mapping must read. So every list shows one (a unified answer of its own
/// or its base's with a user `inactive` or `deleted`), or its file says why it cannot, in a
/// header paragraph beginning `# Deactivated users:` (no such state, or no documented way to
/// list them, with the source).
#[test]
fn every_list_shows_its_deactivated_users_or_says_why() {
    if fixture_filter().is_some() {
        return;
    }
    let missing = lists_without(
        "status",
        &["inactive", "deleted"],
        "# Deactivated users:",
        "a deactivated user (status inactive or deleted)",
    );
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// Pending users (invited, not yet joined) are Truto's `invited`: a list shows one with that
/// status in a case of its own or its base's, or a header paragraph beginning `# Invited users:`
/// says how the provider has none, keeps them elsewhere, or why it is unconfirmed.
#[test]
fn every_list_shows_its_invited_users_or_says_why() {
    if fixture_filter().is_some() {
        return;
    }
    let missing = lists_without(
        "status",
        &["invited"],
        "# Invited users:",
        "an invited user (status invited)",
    );
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// Guests (external users, collaborators, single-channel members) are Truto's `user_type`
/// `limited`: a list shows one in a case of its own or its base's, or a header paragraph
/// beginning `# Guests:` says how the provider has none, leaves them out (and where they are),
/// lists them without a field to tell them by, or why it is unconfirmed.
#[test]
fn every_list_shows_its_guests_or_says_why() {
    if fixture_filter().is_some() {
        return;
    }
    let missing = lists_without(
        "user_type",
        &["limited"],
        "# Guests:",
        "a guest (user_type limited)",
    );
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// Machine accounts (bots, apps, API and service accounts, robots) are Truto's `user_type`
/// `machine`: a list shows one in a case of its own or its base's, or a header paragraph
/// beginning `# Bots:` says how the provider has none, keeps them in another call (named), lists
/// them without a field to tell them by, or why it is unconfirmed.
#[test]
fn every_list_shows_its_machine_accounts_or_says_why() {
    if fixture_filter().is_some() {
        return;
    }
    let missing = lists_without(
        "user_type",
        &["machine"],
        "# Bots:",
        "a machine account (user_type machine)",
    );
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// The lists (not retired, not the sandbox) of which no case, of the file or a base it extends,
/// answers a record whose `field` is one of `values`, and no file of the chain has a header line
/// beginning with `paragraph`.
fn lists_without(field: &str, values: &[&str], paragraph: &str, what: &str) -> Vec<String> {
    let catalog = repo_catalog();
    let listed = |record: &Value| {
        record
            .get(field)
            .and_then(Value::as_str)
            .is_some_and(|value| values.contains(&value))
    };
    // What the gateway answered (a case's expected 200 bodies), not what a provider sent.
    let shows = |file: &str| {
        case_dirs_of(file)
            .iter()
            .flat_map(|(dir, case)| case.calls.iter().map(move |call| (dir, call)))
            .filter(|(_, call)| call.expect.status == 200)
            .filter_map(|(dir, call)| {
                let text = std::fs::read_to_string(dir.join(&call.expect.body)).ok()?;
                serde_json::from_str::<Value>(&text).ok()
            })
            .any(|body| {
                body.get("result")
                    .and_then(Value::as_array)
                    .is_some_and(|records| records.iter().any(listed))
            })
    };
    let says = |file: &str| {
        std::fs::read_to_string(repo_root().join("mappings").join(format!("{file}.yaml")))
            .is_ok_and(|text| text.lines().any(|line| line.starts_with(paragraph)))
    };
    let mut missing = Vec::new();
    for (id, integration) in &catalog.integrations {
        let lists = integration
            .unified
            .keys()
            .any(|key| key.method == Method::List);
        if !lists || integration.retired.is_some() || id.starts_with("sandbox") {
            continue;
        }
        if !extends_chain(id)
            .iter()
            .any(|file| shows(file) || says(file))
        {
            missing.push(format!(
                "{id}: no fixture lists {what}, and no `{paragraph}` paragraph says why"
            ));
        }
    }
    missing
}

/// Whether the file's auth, or a variant's, is a token the gateway obtains and renews (an OAuth
/// grant or a login call).
fn holds_token(integration: &unigate_mapping::Integration) -> bool {
    std::iter::once(&integration.auth)
        .chain(integration.variants.iter().map(|v| &v.integration.auth))
        .any(|auth| matches!(auth, unigate_mapping::Auth::Token(_)))
}

/// Every file under `dir`, at any depth.
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}
