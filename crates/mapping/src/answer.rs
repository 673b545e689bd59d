//! What a provider's answer means, as its mapping file says: whether it is an error (and its
//! status and message), whether it is a rate limit (and how long to wait), and what a page holds
//! (its records, the next token or URL, totals). Every function takes the answer as plain
//! `{status, headers, body}` and returns plain facts; the engine decides what to do with them.

use serde_json::{Map, Value, json};
use unigate_pagination::{Position, Style, link_next};
use unigate_unified::Secret;
use unigate_unified::error::extract_remote_message;

use crate::expression::{Expression, Scope};
use crate::integration::{
    CredentialRefusal, Exchange, Integration, ProbeReads, RateLimit, Resource,
};
use crate::render::MapError;
use crate::spec::BodyFormat;

/// One provider answer.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub status: u16,
    /// Header names lower-case, as HTTP/2 and the client give them.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    /// What the body is written in (the integration's `body_format`).
    pub format: BodyFormat,
}

impl Answer<'_> {
    /// The body as JSON, read as the integration's `body_format` says; `None` when it is not.
    pub fn parsed_body(&self) -> Option<Value> {
        read_body(self.format, self.body).ok()
    }

    /// The body as it goes into `raw_response` and error expressions: parsed when it parses,
    /// else (cut) text.
    pub fn raw_value(&self) -> Value {
        self.parsed_body().unwrap_or_else(|| raw_text(self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(found, _)| found.eq_ignore_ascii_case(name))
            .map(|&(_, value)| value)
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The headers as a JSON object (`$headers` in expressions).
    fn headers_value(&self) -> Value {
        let mut object = Map::new();
        for (name, value) in self.headers {
            object
                .entry(name.to_ascii_lowercase())
                .or_insert_with(|| Value::String((*value).to_owned()));
        }
        Value::Object(object)
    }

    /// `scope` plus `$status` and `$headers`, for the expressions that read an error answer.
    fn scope(&self, scope: &Scope) -> Scope {
        scope
            .with("status", json!(self.status))
            .with("headers", self.headers_value())
    }
}

/// Longest provider text kept in `raw_response` when the body is not JSON.
const BODY_EXCERPT: usize = 64 * 1024;

/// The provider body as it goes into `raw_response`: JSON when it parses, else (cut) text.
pub fn raw_body(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| raw_text(body))
}

fn raw_text(body: &[u8]) -> Value {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_EXCERPT)]);
    Value::String(text.into_owned())
}

/// A provider body as JSON: parsed as JSON, or read from XML (`body_format: xml`).
pub fn read_body(format: BodyFormat, body: &[u8]) -> Result<Value, String> {
    match format {
        BodyFormat::Json => serde_json::from_slice(body).map_err(|error| error.to_string()),
        BodyFormat::Xml => {
            let text = std::str::from_utf8(body)
                .map_err(|_| "the XML answer is not UTF-8 text".to_owned())?;
            crate::xml::read_xml(text)
        }
    }
}

/// A provider error: the status to report, the message for humans, and the provider's body.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub status: u16,
    pub message: String,
    pub body: Value,
}

/// A non-2xx answer as the error it stands for: the provider's status, and the message from the
/// mapping's `errors.message` (over the body, with `$status` and `$headers`), else from the
/// usual keys of an error body.
pub fn status_fault(integration: &Integration, answer: Answer<'_>, scope: &Scope) -> Fault {
    let body = answer.raw_value();
    let message = fault_message(integration, answer, &body, scope);
    let not_found = integration
        .errors
        .as_ref()
        .and_then(|errors| errors.not_found.as_ref())
        .is_some_and(|not_found| {
            not_found
                .evaluate(&body, &answer.scope(scope))
                .ok()
                .flatten()
                == Some(Value::Bool(true))
        });
    Fault {
        status: if not_found { 404 } else { answer.status },
        message: message.unwrap_or_else(|| unexplained_status(answer)),
        body,
    }
}

/// The message of a non-2xx answer whose body says nothing. A redirect that reaches the mapping
/// is one the client did not follow (it leaves the integration's origin: Sumo Logic's US1 host
/// sends another deployment's key to that deployment with a 301), so it names where it pointed,
/// as an origin only (a `Location` may carry a query).
fn unexplained_status(answer: Answer<'_>) -> String {
    let redirected_to = (300..400)
        .contains(&answer.status)
        .then(|| answer.headers.iter().find(|(name, _)| *name == "location"))
        .flatten()
        .and_then(|(_, location)| url::Url::parse(location).ok())
        .filter(|url| url.has_host())
        .map(|url| url.origin().ascii_serialization());
    match redirected_to {
        Some(origin) => format!(
            "the provider answered HTTP {} redirecting to {origin}, which is not followed (a redirect may not leave the integration's origin): the account's base URL or region is likely not the one the provider serves it from",
            answer.status
        ),
        None => format!("the provider answered HTTP {}", answer.status),
    }
}

/// A 2xx body the mapping's `errors.when` marks as an error (Slack's `ok: false`), with its
/// status (404 when `errors.not_found` says so, else `errors.status`, default 502) and message.
pub fn body_fault(
    integration: &Integration,
    answer: Answer<'_>,
    body: &Value,
    scope: &Scope,
) -> Result<Option<Fault>, MapError> {
    let Some(when) = integration.errors.as_ref().and_then(|e| e.when.as_ref()) else {
        return Ok(None);
    };
    let scope = answer.scope(scope);
    let failed = when
        .evaluate(body, &scope)
        .map_err(|error| MapError::Eval {
            what: "errors.when",
            error,
        })?
        .is_some_and(|value| truthy(&value) == Some(true));
    if !failed {
        return Ok(None);
    }
    let (status, message) = read_fault(integration, answer, body, 502, &scope);
    // "No such record" said in a 2xx error body (Slack's HTTP 200 `invalid_team`) is a 404 as
    // it is in a non-2xx one.
    let not_found = integration
        .errors
        .as_ref()
        .and_then(|errors| errors.not_found.as_ref())
        .is_some_and(|not_found| {
            not_found.evaluate(body, &scope).ok().flatten() == Some(Value::Bool(true))
        });
    Ok(Some(Fault {
        status: if not_found { 404 } else { status },
        message: message.unwrap_or_else(|| "the provider reported an error".to_owned()),
        body: body.clone(),
    }))
}

/// The status (`errors.status`, else `default_status`) and message (`errors.message`, else the
/// usual keys of an error body) of an error body.
fn read_fault(
    integration: &Integration,
    answer: Answer<'_>,
    body: &Value,
    default_status: u16,
    scope: &Scope,
) -> (u16, Option<String>) {
    let errors = integration.errors.as_ref();
    let scope = answer.scope(scope);
    let evaluate = |expression: Option<&Expression>| {
        expression.and_then(|expression| expression.evaluate(body, &scope).ok().flatten())
    };
    let status = evaluate(errors.and_then(|e| e.status.as_ref()))
        .and_then(|value| value.as_u64())
        .and_then(|status| u16::try_from(status).ok())
        .filter(|status| (400..600).contains(status))
        .unwrap_or(default_status);
    let message = evaluate(errors.and_then(|e| e.message.as_ref()))
        .and_then(|value| match value {
            Value::String(text) if !text.is_empty() => Some(text),
            _ => None,
        })
        .or_else(|| extract_remote_message(body));
    (status, message)
}

/// The message of an error answer, when the mapping or the body gives one.
pub fn fault_message(
    integration: &Integration,
    answer: Answer<'_>,
    body: &Value,
    scope: &Scope,
) -> Option<String> {
    read_fault(integration, answer, body, answer.status, scope).1
}

/// A rate-limited answer: what the provider says about waiting and its budget. Every number is
/// finite and not negative; a hint that is neither is ignored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateLimitReading {
    /// Seconds to wait before trying again.
    pub wait: Option<f64>,
    /// The window's request limit.
    pub limit: Option<f64>,
    /// Requests left in the window.
    pub remaining: Option<f64>,
    /// Seconds until the window resets.
    pub reset: Option<f64>,
}

/// Whether the answer is a rate limit, and what it says about waiting: a 429, or what the
/// mapping's `rate_limit.is_limited` names besides (Salesforce's 403 `REQUEST_LIMIT_EXCEEDED`).
/// A 429 is one whatever the file says: a proxy or an API gateway in front of the provider
/// answers it without asking the provider, whose own docs may name another signal. `now` is
/// epoch seconds.
pub fn rate_limited(
    rate_limit: &RateLimit,
    answer: Answer<'_>,
    scope: &Scope,
    now: i64,
) -> Option<RateLimitReading> {
    // Parsing a large page (or gathering every header) for a status check would cost more
    // than the check.
    let limited = answer.status == 429 || {
        let probe = rate_limit_input(answer, rate_limit.is_limited_reads);
        rate_limit.is_limited.evaluate(&probe, scope).ok().flatten() == Some(Value::Bool(true))
    };
    if !limited {
        return None;
    }
    let input = rate_limit_input(answer, ProbeReads::ALL);
    let number = |expression: &Option<Expression>| {
        expression
            .as_ref()
            .and_then(|e| e.evaluate(&input, scope).ok().flatten())
            .and_then(|value| seconds(&value))
    };
    let reset = number(&rate_limit.reset_epoch)
        .map(|epoch| epoch - now as f64)
        .and_then(usable);
    let wait = number(&rate_limit.retry_after)
        .or_else(|| {
            answer
                .header("retry-after")
                .and_then(|v| retry_after(v, now))
        })
        .and_then(usable)
        .or(reset);
    Some(RateLimitReading {
        wait,
        limit: number(&rate_limit.limit),
        remaining: number(&rate_limit.remaining),
        reset,
    })
}

/// Whether the provider refused the account's credential in this answer: the mapping's
/// `auth.rejected`, over any answer (a 2xx too: Veeva Vault and Slack refuse with HTTP 200; the
/// body is parsed for it only when the expression reads it), else a 401 when `default_401` (not
/// for signed requests, whose 401 may be a clock out of step).
pub fn credential_rejected(
    rejected: Option<&CredentialRefusal>,
    default_401: bool,
    answer: Answer<'_>,
    scope: &Scope,
) -> bool {
    match rejected {
        None => default_401 && answer.status == 401,
        Some(rejected) => {
            rejected
                .when
                .evaluate(&rate_limit_input(answer, rejected.reads), scope)
                .ok()
                .flatten()
                == Some(Value::Bool(true))
        }
    }
}

/// `auth.token_rejected` over a token endpoint's answer that gave no token: `Some(true)` when
/// it refused the credentials, `Some(false)` when it did not, `None` (the expression gave no
/// boolean, or failed) for the gateway's own reading.
pub fn token_refused(
    refusal: &CredentialRefusal,
    answer: Answer<'_>,
    scope: &Scope,
) -> Option<bool> {
    match refusal
        .when
        .evaluate(&rate_limit_input(answer, refusal.reads), scope)
    {
        Ok(Some(Value::Bool(verdict))) => Some(verdict),
        _ => None,
    }
}

/// `{status, headers, body}` of an answer, with what `reads` leaves out as null (an expression
/// that does not read a part gives the same answer without it). A body that does not parse is
/// its (cut) text: LastPass refuses a key in plain text.
fn rate_limit_input(answer: Answer<'_>, reads: ProbeReads) -> Value {
    let body = match reads.body {
        true => answer.raw_value(),
        false => Value::Null,
    };
    let headers = match reads.headers {
        true => answer.headers_value(),
        false => Value::Null,
    };
    json!({"status": answer.status, "headers": headers, "body": body})
}

/// A finite, non-negative number of seconds (or count), from a number or a numeric string.
fn seconds(value: &Value) -> Option<f64> {
    let number = match value {
        Value::Number(number) => number.as_f64()?,
        Value::String(text) => text.trim().parse().ok()?,
        _ => return None,
    };
    usable(number)
}

fn usable(number: f64) -> Option<f64> {
    (number.is_finite() && number >= 0.0).then_some(number)
}

/// `Retry-After` as seconds from `now`: delta-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn retry_after(value: &str, now: i64) -> Option<f64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return usable(seconds);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    let delta = i64::try_from(at).ok()?.checked_sub(now)?;
    Some(delta.max(0) as f64)
}

/// A login call's answer (`token_exchange`): the token, and when it expires (epoch seconds) —
/// from `expires_in` or `expires_at`, else a JWT's `exp`, else the default lifetime.
pub fn read_exchange_token(
    exchange: &Exchange,
    answer: Answer<'_>,
    now: i64,
) -> Result<(Secret, Option<i64>), String> {
    let body: Value = serde_json::from_slice(answer.body)
        .map_err(|_| "the login call's answer is not JSON".to_owned())?;
    let scope = answer.scope(&Scope::new([]));
    let evaluate = |expression: &Expression| expression.evaluate(&body, &scope).ok().flatten();
    let token = match evaluate(&exchange.token) {
        Some(Value::String(token)) if !token.is_empty() => token,
        _ => {
            return Err("the login call's answer has no token where `auth.token` looks".to_owned());
        }
    };
    let lifetime = exchange
        .expires_in
        .as_ref()
        .and_then(evaluate)
        .and_then(|value| seconds(&value))
        .and_then(|seconds| now.checked_add(seconds as i64));
    let expiry = exchange
        .expires_at
        .as_ref()
        .and_then(evaluate)
        .and_then(|value| {
            unigate_unified::time::parse_json_timestamp(&value).map(|millis| millis / 1000)
        });
    let expires_at = lifetime
        .or(expiry)
        .or_else(|| unigate_unified::time::jwt_expiry(&token))
        .or_else(|| now.checked_add(exchange.default_lifetime_s as i64));
    Ok((Secret::new(token), expires_at))
}

/// One provider page, read: its records and where the walk goes next.
#[derive(Debug, Default)]
pub struct PageReading {
    pub records: Vec<Value>,
    /// The next token, or for `link_header` / `next_url` the next URL as the provider gave it
    /// (possibly relative).
    pub next: Option<String>,
    pub has_more: Option<bool>,
    /// Total records (offset, SCIM) or total pages (page), when the provider says.
    pub total: Option<u64>,
    /// How many records the provider sent (`pagination.received`), where `records` may keep
    /// fewer; `None`: as many as `records` gives.
    pub received: Option<u64>,
}

impl PageReading {
    /// The records the provider sent on the page, as the walk counts them.
    pub fn received(&self) -> usize {
        self.received
            .map_or(self.records.len(), |received| received as usize)
    }
}

/// Reads a page: the pagination expressions over the body (with `$headers`), the `Link` header,
/// the records (where pass `pass` has them), and for keyset pagination the value the next page
/// starts after.
pub fn read_page(
    resource: &Resource,
    pass: Option<usize>,
    answer: Answer<'_>,
    body: Value,
    scope: &Scope,
) -> Result<PageReading, MapError> {
    let pagination = resource.pagination_of(pass);
    // Made only for an expression to evaluate: the headers as a value and the scope's copy cost
    // about 16,000 instructions and 70 allocations a page, and most pages (a `Link` header, no
    // total) evaluate none.
    let page_scope = std::cell::OnceCell::new();
    // A cursor or an id beyond ±2^53 is read as its digits (`with_exact_integers`), as the
    // records are mapped; the records themselves are extracted from the provider's own body.
    let page_body = crate::doc::exact_integers(&body);
    let evaluate = |expression: &Option<Expression>, what: &'static str| {
        expression
            .as_ref()
            .map(|expression| {
                let page_scope =
                    page_scope.get_or_init(|| scope.with("headers", answer.headers_value()));
                expression.evaluate(&page_body, page_scope)
            })
            .transpose()
            .map(Option::flatten)
            .map_err(|error| MapError::Eval { what, error })
    };
    let next = match pagination.strategy.style {
        Style::LinkHeader => answer.header("link").and_then(link_next),
        Style::Keyset { .. } => None,
        _ => evaluate(&pagination.next, "pagination.next")?.and_then(as_token),
    };
    let total = evaluate(&pagination.total, "pagination.total")?.and_then(|v| as_count(&v));
    let has_more = evaluate(&pagination.has_more, "pagination.has_more")?.and_then(|v| truthy(&v));
    let received =
        evaluate(&pagination.received, "pagination.received")?.and_then(|v| as_count(&v));
    let records = extract_records_of(resource, pass, body, scope)?;
    let next = match (&pagination.strategy.style, &pagination.after_value) {
        (Style::Keyset { .. }, Some(after)) => match records.last() {
            Some(last) => after
                .evaluate(&crate::doc::exact_integers(last), scope)
                .map_err(|error| MapError::Eval {
                    what: "pagination.after_value",
                    error,
                })?
                .and_then(as_token),
            None => None,
        },
        _ => next,
    };
    Ok(PageReading {
        records,
        next,
        has_more,
        total,
        received,
    })
}

/// The records of a provider body, as the resource's `records` expression finds them.
pub fn extract_records(
    resource: &Resource,
    body: Value,
    scope: &Scope,
) -> Result<Vec<Value>, MapError> {
    extract_records_of(resource, None, body, scope)
}

/// [`extract_records`] for pass `pass` of a list served in parts (its own `records`, if any).
pub fn extract_records_of(
    resource: &Resource,
    pass: Option<usize>,
    body: Value,
    scope: &Scope,
) -> Result<Vec<Value>, MapError> {
    let (records, path) = resource.records_of(pass);
    // A plain path over objects (the common case: `$`, `members`, `data.users`) moves the
    // records out of the body instead of evaluating and copying them.
    let walkable = path.is_some_and(|path| {
        let mut at = &body;
        for segment in path {
            match at {
                Value::Object(object) => match object.get(segment) {
                    Some(next) => at = next,
                    None => return true,
                },
                Value::Null => return true,
                // Arrays on the way flatten in JSONata: the JSONata engine does that.
                _ => return false,
            }
        }
        true
    });
    let found = match (walkable, path) {
        (true, Some(path)) => {
            let mut value = body;
            for segment in path {
                value = match value {
                    Value::Object(mut object) => object.remove(segment).unwrap_or(Value::Null),
                    _ => Value::Null,
                };
            }
            Some(value)
        }
        _ => records
            .evaluate(&body, scope)
            .map_err(|error| MapError::Eval {
                what: "records",
                error,
            })?,
    };
    let mut records = match found {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(records)) => records,
        Some(record @ Value::Object(_)) => vec![record],
        Some(_) => {
            return Err(MapError::Shape {
                what: "records",
                expected: "an array of objects",
            });
        }
    };
    for path in resource.omit_of(pass) {
        for record in &mut records {
            omit_path(record, path);
        }
    }
    Ok(records)
}

/// A provider page as a person may see it (`unigate try`): every field the resource or any of
/// its passes `omit`s replaced by `"[omitted]"` in its records, or, when the records are not at
/// a plain path, in every object of the page that has it (the page may be any pass's).
pub fn mark_omitted(resource: &Resource, body: &mut Value) {
    let omit: Vec<Vec<String>> = resource
        .omit
        .iter()
        .chain(resource.passes.iter().flat_map(|pass| &pass.omit))
        .cloned()
        .collect();
    if omit.is_empty() {
        return;
    }
    let records = match &resource.records_path {
        Some(path) => path
            .iter()
            .try_fold(&mut *body, |at, segment| at.get_mut(segment.as_str())),
        None => None,
    };
    match records {
        Some(records) => {
            for path in &omit {
                mark_path(records, path);
            }
        }
        None => mark_everywhere(body, &omit),
    }
}

fn mark_everywhere(value: &mut Value, paths: &[Vec<String>]) {
    match value {
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| mark_everywhere(item, paths)),
        Value::Object(object) => {
            for inner in object.values_mut() {
                mark_everywhere(inner, paths);
            }
            for path in paths {
                mark_path(value, path);
            }
        }
        _ => {}
    }
}

fn mark_path(value: &mut Value, path: &[String]) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|item| mark_path(item, path)),
        Value::Object(object) => match path {
            [] => {}
            [last] => {
                if let Some(field) = object.get_mut(last) {
                    *field = Value::String("[omitted]".to_owned());
                }
            }
            [first, rest @ ..] => {
                if let Some(inner) = object.get_mut(first) {
                    mark_path(inner, rest);
                }
            }
        },
        _ => {}
    }
}

/// Removes the field at `path`; arrays on the way have it removed from each item.
fn omit_path(value: &mut Value, path: &[String]) {
    match value {
        Value::Array(items) => {
            for item in items {
                omit_path(item, path);
            }
        }
        Value::Object(object) => match path {
            [] => {}
            [last] => {
                object.shift_remove(last);
            }
            [first, rest @ ..] => {
                if let Some(inner) = object.get_mut(first) {
                    omit_path(inner, rest);
                }
            }
        },
        _ => {}
    }
}

/// The JSON body of a POST call (GraphQL, search APIs): the resource's `body` over
/// `{cursor, offset, page, page_size, query, id, pass}` (`id` for a get; `pass` the name of the
/// pass walked, so one body can ask each part of a list: Google Ads' users, then its pending
/// invitations), the page placed as pass `pass` walks it. `None` when the resource sends no body.
pub fn render_body(
    resource: &Resource,
    pass: Option<usize>,
    position: &Position,
    page_size: u32,
    unified_query: &Value,
    id: Option<&str>,
    scope: &Scope,
) -> Result<Option<RequestBody>, MapError> {
    let Some(expression) = &resource.body else {
        return Ok(None);
    };
    let walked = pass.and_then(|index| resource.passes.get(index));
    if walked.and_then(|walked| walked.method) == Some(crate::spec::HttpMethod::Get) {
        return Ok(None);
    }
    let first_page = match resource.pagination_of(pass).strategy.style {
        Style::Page { first_page, .. } => first_page,
        _ => 1,
    };
    let input = json!({
        "cursor": match position { Position::Token(token) => json!(token), _ => Value::Null },
        "offset": match position { Position::Offset(offset) => *offset, _ => 0 },
        "page": match position { Position::Page(page) => *page, _ => first_page },
        "page_size": page_size,
        "query": unified_query,
        "id": id,
        "pass": walked.and_then(|walked| walked.name.as_deref()),
    });
    let built = expression
        .evaluate(&input, scope)
        .map_err(|error| MapError::Eval {
            what: "body",
            error,
        })?
        .unwrap_or(Value::Null);
    let body = match (built, resource.body_format) {
        // Boomi's queryMore takes the bare token; an XML API takes a document written as text.
        (Value::String(text), _) => RequestBody {
            bytes: text.into_bytes(),
            content_type: "text/plain; charset=utf-8",
        },
        (built, BodyFormat::Json) => RequestBody {
            bytes: built.to_string().into_bytes(),
            content_type: "application/json",
        },
        (built, BodyFormat::Xml) => RequestBody {
            bytes: crate::xml::write_xml(&built)
                .map_err(MapError::Body)?
                .into_bytes(),
            content_type: "text/xml; charset=utf-8",
        },
    };
    Ok(Some(body))
}

/// A request body and the content type it goes with (unless the file's headers name one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestBody {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

fn as_token(value: Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn truthy(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(flag) => Some(*flag),
        Value::Null => Some(false),
        Value::Number(number) => Some(number.as_f64() != Some(0.0)),
        Value::String(text) => Some(!matches!(text.as_str(), "false" | "")),
        Value::Array(items) => Some(!items.is_empty()),
        Value::Object(_) => Some(true),
    }
}

fn as_count(value: &Value) -> Option<u64> {
    match value {
        Value::Number(number) => number.as_u64().or_else(|| {
            number
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f as u64)
        }),
        Value::String(text) => text.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_is_refused_by_a_401_or_by_what_the_mapping_names() {
        let scope = Scope::new([]);
        let answer = |status, body: &'static [u8]| Answer {
            status,
            headers: &[],
            body,
            format: BodyFormat::Json,
        };
        let refusal = |source: &str| {
            let when = Expression::compile(source).unwrap();
            CredentialRefusal {
                reads: ProbeReads::of(&when),
                when,
            }
        };
        let zoho =
            refusal("status = 401 or (status = 400 and body.error.message = 'INVALID_OAUTHTOKEN')");
        let veeva = refusal("body.errors[0].type = 'INVALID_SESSION_ID'");
        let refused = |rejected: Option<&CredentialRefusal>, default_401, status, body| {
            credential_rejected(rejected, default_401, answer(status, body), &scope)
        };
        assert!(refused(None, true, 401, b"{}"));
        assert!(!refused(None, true, 403, b"{}"));
        // A signed request's 401 may be the clock: only its `rejected` marks it.
        assert!(!refused(None, false, 401, b"{}"));
        let invalid = br#"{"error":{"message":"INVALID_OAUTHTOKEN"}}"#;
        assert!(refused(Some(&zoho), false, 400, invalid));
        assert!(!refused(
            Some(&zoho),
            true,
            400,
            br#"{"error":{"message":"other"}}"#
        ));
        // A refusal answered with HTTP 200 is one; a page is not.
        let session = br#"{"responseStatus":"FAILURE","errors":[{"type":"INVALID_SESSION_ID"}]}"#;
        assert!(refused(Some(&veeva), true, 200, session));
        assert!(!refused(
            Some(&veeva),
            true,
            200,
            br#"{"responseStatus":"SUCCESS"}"#
        ));
        assert!(!refused(None, true, 200, session));
    }

    #[test]
    fn is_limited_gets_the_parts_of_an_answer_it_may_read() {
        let reads = |source: &str| ProbeReads::of(&Expression::compile(source).unwrap());
        let parts = |headers, body| ProbeReads { headers, body };
        assert_eq!(reads("status = 429"), parts(false, false));
        assert_eq!(reads("headers.`x-limited` = '1'"), parts(true, false));
        assert_eq!(
            reads("status = 403 and body.error.code = 'rate'"),
            parts(false, true)
        );
        // Read whole, without naming a part; a regular expression keeps it off the fast path.
        assert_eq!(reads("$contains($string($), 'quota')"), ProbeReads::ALL);
        assert_eq!(reads("$contains(body.message, /quota/)"), ProbeReads::ALL);

        let limit = |is_limited: &str| RateLimit {
            is_limited: Expression::compile(is_limited).unwrap(),
            is_limited_reads: reads(is_limited),
            retry_after: None,
            reset_epoch: None,
            limit: Some(Expression::compile("$number(headers.`x-limit`)").unwrap()),
            remaining: None,
            paces: Vec::new(),
        };
        let headers = [("x-limit", "100")];
        let answer = |status, body: &'static [u8]| Answer {
            status,
            headers: &headers,
            body,
            format: BodyFormat::Json,
        };
        let scope = Scope::new([]);
        let limited = |is_limited: &str, answer| {
            rate_limited(&limit(is_limited), answer, &scope, 0).map(|reading| reading.limit)
        };
        let quota = answer(200, br#"{"message":"quota exceeded"}"#);
        assert_eq!(limited("status = 429", quota), None);
        assert_eq!(
            limited("status = 429", answer(429, b"{}")),
            Some(Some(100.0))
        );
        // A body read as a whole is parsed for the check.
        assert_eq!(
            limited("$contains($string($), 'quota')", quota),
            Some(Some(100.0))
        );
        assert_eq!(
            limited("body.message = 'quota exceeded'", quota),
            Some(Some(100.0))
        );
        assert_eq!(
            limited("headers.`x-limit` = '100'", quota),
            Some(Some(100.0))
        );
        assert_eq!(limited("body.message = 'other'", quota), None);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates_and_ignores_the_rest() {
        let now = 1_445_412_480; // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(retry_after("120", now), Some(120.0));
        assert_eq!(retry_after(" 1.5 ", now), Some(1.5));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(30.0)
        );
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), Some(0.0));
        for bad in ["nan", "NaN", "inf", "-inf", "-5", "soon", "", "1e400"] {
            assert_eq!(retry_after(bad, now), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Whatever a provider or a mapping puts in a hint, a parser returns nothing or a finite,
        /// non-negative number of seconds that a `Duration` can hold once clamped, never a panic.
        #[test]
        fn every_hint_parser_takes_any_text(
            text in "(?s).{0,40}|[-+ ]?[0-9]{0,330}(\\.[0-9]{0,5})?([eE][-+]?[0-9]{1,4})?|(?i)[-+]?(nan|inf|infinity)",
            now in proptest::prelude::any::<i64>(),
        ) {
            for hint in [
                retry_after(&text, now),
                seconds(&json!(text)),
                text.parse::<f64>().ok().and_then(serde_json::Number::from_f64).and_then(|n| seconds(&Value::Number(n))),
            ]
            .into_iter()
            .flatten()
            {
                proptest::prop_assert!(hint.is_finite() && hint >= 0.0, "{text:?} gave {hint}");
                let _ = std::time::Duration::from_secs_f64(hint.min(3600.0));
            }
        }
    }

    #[test]
    fn hints_must_be_finite_and_not_negative() {
        assert_eq!(seconds(&json!("12")), Some(12.0));
        assert_eq!(seconds(&json!(-1)), None);
        assert_eq!(seconds(&json!("NaN")), None);
        assert_eq!(seconds(&json!("infinity")), None);
        assert_eq!(seconds(&json!(null)), None);
    }
}
