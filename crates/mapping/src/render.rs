//! The pure stages around a provider call: `render_request` and `render_credential` (account →
//! the provider request's fixed parts), `map_query` (unified query → provider query) and
//! `map_response` (provider record → unified record).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::{Map, Value};
use unigate_unified::Secret;

use crate::expression::{EvalError, Scope};
use crate::integration::{
    Auth, Exchange, ExchangeBody, Grant, Integration, OAuth2, Resource, TokenSource, UnifiedMethod,
};
use crate::spec::{ClientAuth, HttpMethod, TokenBody};
use crate::template::{RenderError, Template, Vars};

/// Characters escaped in a value substituted into one path segment: a `/`, `?`, `#` or `..`
/// from an account context or an id can never change the provider path.
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

fn escape_segment(value: &str) -> String {
    match value {
        "." => "%2E".to_owned(),
        ".." => "%2E%2E".to_owned(),
        _ => utf8_percent_encode(value, PATH_SEGMENT).to_string(),
    }
}

/// Where the rendered credential goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    None,
    Header {
        name: String,
        value: Secret,
    },
    Query {
        param: String,
        value: Secret,
    },
    /// A token to obtain (OAuth 2.0 or a login call), then send in `header`.
    Token(Box<RenderedToken>),
}

/// A token-based credential, rendered from the account context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedToken {
    pub source: RenderedSource,
    pub header: String,
    /// The header value's text before and after the token.
    prefix: String,
    suffix: String,
}

impl RenderedToken {
    /// The header value that carries `token`.
    pub fn header_value(&self, token: &Secret) -> Secret {
        Secret::new(format!("{}{}{}", self.prefix, token.expose(), self.suffix))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderedSource {
    OAuth2(RenderedOAuth2),
    Exchange(RenderedExchange),
}

/// An OAuth 2.0 token request, rendered from the account context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedOAuth2 {
    pub grant: Grant,
    pub grant_type: String,
    pub token_url: String,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub refresh_token: Option<Secret>,
    pub scope: Option<String>,
    pub client_auth: ClientAuth,
    pub body: TokenBody,
    pub token_params: Vec<(String, Secret)>,
    pub assertion: Option<RenderedAssertion>,
}

/// A JWT bearer assertion's claims and key, rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedAssertion {
    pub issuer: String,
    pub subject: Option<String>,
    pub audience: String,
    pub private_key: Secret,
    pub lifetime_s: u64,
}

/// A login call, rendered: everything in it is treated as a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedExchange {
    pub method: HttpMethod,
    pub url: String,
    pub headers: Vec<(String, Secret)>,
    /// Content type and body.
    pub body: Option<(&'static str, Secret)>,
}

/// A provider request before the HTTP client sees it (the credential travels apart, see
/// [`render_credential`]). Header and query values rendered from the account context are
/// secrets: they travel apart from the URL (never inside a cursor) and are never printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedRequest {
    pub method: HttpMethod,
    /// Base URL + resource path, no query string.
    pub url: String,
    pub query: Vec<(String, String)>,
    pub secret_query: Vec<(String, Secret)>,
    pub headers: Vec<(String, String)>,
    pub secret_headers: Vec<(String, Secret)>,
    /// Where pages after the first go, for a provider with a "continue" endpoint.
    pub continue_url: Option<String>,
}

/// Rendered name/value pairs: the plain ones, and the ones read from the context (secrets).
type Pairs = (Vec<(String, String)>, Vec<(String, Secret)>);

/// Renders named templates; a template whose optional key (`{{context.key?}}`) the context
/// lacks is left out. Templates that read the context give secrets.
fn render_pairs(templates: &[(String, Template)], vars: Vars<'_>) -> Result<Pairs, RenderError> {
    let mut plain = Vec::new();
    let mut secret = Vec::new();
    for (name, template) in templates {
        match template.render_with(vars, str::to_owned) {
            Ok(value) if template.reads_context() => {
                secret.push((name.clone(), Secret::new(value)))
            }
            Ok(value) => plain.push((name.clone(), value)),
            Err(error) if error.optional_absent => {}
            Err(error) => return Err(error),
        }
    }
    Ok((plain, secret))
}

/// The origin (`scheme://host[:port]`) of an absolute URL.
fn origin_of(url: &str) -> &str {
    match url.find("://") {
        Some(scheme_end) => {
            let after = scheme_end + 3;
            match url[after..].find(['/', '?', '#']) {
                Some(end) => &url[..after + end],
                None => url,
            }
        }
        None => url,
    }
}

/// The parts of a resource's request that do not change from page to page: URL (the account's
/// base URL, else the integration's), static query and headers. `vars.id` fills `{{id}}`.
pub fn render_request(
    integration: &Integration,
    resource: &Resource,
    vars: Vars<'_>,
    base_url_override: Option<&str>,
) -> Result<RenderedRequest, RenderError> {
    let base = match base_url_override {
        Some(base) => base.to_owned(),
        None => integration.base_url.render_url(vars.context)?,
    };
    let base = base.trim_end_matches('/');
    let url = format!("{base}{}", resource.path.render_with(vars, escape_segment)?);
    let continue_url = resource
        .pagination
        .continue_path
        .as_ref()
        .map(|path| {
            Ok::<_, RenderError>(format!("{base}{}", path.render_with(vars, escape_segment)?))
        })
        .transpose()?;
    let (query, secret_query) = render_pairs(&resource.query, vars)?;
    let (headers, secret_headers) = render_pairs(
        &integration.headers,
        Vars {
            id: None,
            token: None,
            ..vars
        },
    )?;
    Ok(RenderedRequest {
        method: resource.method,
        url,
        query,
        secret_query,
        headers,
        secret_headers,
        continue_url,
    })
}

/// The account's credential as its integration's `auth` says to send it. `base_url` (the
/// account's, else the integration's) anchors a login call given as a path.
pub fn render_credential(
    integration: &Integration,
    context: &Value,
    base_url_override: Option<&str>,
) -> Result<Credential, RenderError> {
    Ok(match &integration.auth {
        Auth::None => Credential::None,
        Auth::Header { name, value } => Credential::Header {
            name: name.clone(),
            value: Secret::new(value.render(context)?),
        },
        Auth::Query { param, value } => Credential::Query {
            param: param.clone(),
            value: Secret::new(value.render(context)?),
        },
        Auth::Basic { username, password } => Credential::Header {
            name: "Authorization".to_owned(),
            value: basic(&username.render(context)?, &password.render(context)?),
        },
        Auth::Bearer { token } => Credential::Header {
            name: "Authorization".to_owned(),
            value: Secret::new(format!("Bearer {}", token.render(context)?)),
        },
        Auth::Token(token) => {
            // The value reads {{token}} once (checked at load): what surrounds it is fixed.
            const MARK: &str = "\u{0}token\u{0}";
            let vars = Vars {
                token: Some(MARK),
                ..Vars::context(context)
            };
            let value = token.value.render_with(vars, str::to_owned)?;
            let (prefix, suffix) = value.split_once(MARK).unwrap_or((&value, ""));
            let source = match &token.source {
                TokenSource::OAuth2(oauth) => RenderedSource::OAuth2(render_oauth(oauth, context)?),
                TokenSource::Exchange(exchange) => {
                    let base = match base_url_override {
                        Some(base) => base.to_owned(),
                        None => integration.base_url.render_url(context)?,
                    };
                    RenderedSource::Exchange(render_exchange(exchange, context, &base)?)
                }
            };
            Credential::Token(Box::new(RenderedToken {
                source,
                header: token.header.clone(),
                prefix: prefix.to_owned(),
                suffix: suffix.to_owned(),
            }))
        }
    })
}

fn basic(username: &str, password: &str) -> Secret {
    Secret::new(format!(
        "Basic {}",
        STANDARD.encode(format!("{username}:{password}"))
    ))
}

fn render_oauth(oauth: &OAuth2, context: &Value) -> Result<RenderedOAuth2, RenderError> {
    let optional = |template: &Option<Template>| {
        template
            .as_ref()
            .map(|template| template.render(context))
            .transpose()
    };
    let token_url = oauth.token_url.render_url(context)?;
    Ok(RenderedOAuth2 {
        grant: oauth.grant,
        grant_type: oauth.grant_type.render(context)?,
        client_id: optional(&oauth.client_id)?,
        client_secret: optional(&oauth.client_secret)?.map(Secret::new),
        refresh_token: optional(&oauth.refresh_token)?.map(Secret::new),
        scope: optional(&oauth.scope)?,
        client_auth: oauth.client_auth,
        body: oauth.body,
        token_params: oauth
            .token_params
            .iter()
            .map(|(name, value)| Ok((name.clone(), Secret::new(value.render(context)?))))
            .collect::<Result<_, RenderError>>()?,
        assertion: oauth
            .assertion
            .as_ref()
            .map(|assertion| {
                Ok::<_, RenderError>(RenderedAssertion {
                    issuer: assertion.issuer.render(context)?,
                    subject: optional(&assertion.subject)?,
                    audience: optional(&assertion.audience)?.unwrap_or_else(|| token_url.clone()),
                    private_key: Secret::new(assertion.private_key.render(context)?),
                    lifetime_s: assertion.lifetime_s,
                })
            })
            .transpose()?,
        token_url,
    })
}

fn render_exchange(
    exchange: &Exchange,
    context: &Value,
    base_url: &str,
) -> Result<RenderedExchange, RenderError> {
    let url = exchange.url.render_url(context)?;
    let url = if url.starts_with('/') {
        format!("{}{url}", origin_of(base_url))
    } else {
        url
    };
    let vars = Vars::context(context);
    let (plain, secret) = render_pairs(&exchange.headers, vars)?;
    let mut headers: Vec<(String, Secret)> = plain
        .into_iter()
        .map(|(name, value)| (name, Secret::new(value)))
        .chain(secret)
        .collect();
    if let Some((username, password)) = &exchange.basic {
        headers.push((
            "Authorization".to_owned(),
            basic(&username.render(context)?, &password.render(context)?),
        ));
    }
    let fields = |fields: &[(String, Template)]| {
        fields
            .iter()
            .map(|(name, value)| Ok((name.clone(), value.render(context)?)))
            .collect::<Result<Vec<(String, String)>, RenderError>>()
    };
    let body = match &exchange.body {
        ExchangeBody::None => None,
        ExchangeBody::Json(json) => Some((
            "application/json",
            Secret::new(json.render(context)?.to_string()),
        )),
        ExchangeBody::Form(form) => Some((
            "application/x-www-form-urlencoded",
            Secret::new(form_urlencoded(&fields(form)?)),
        )),
    };
    Ok(RenderedExchange {
        method: exchange.method,
        url,
        headers,
        body,
    })
}

/// `application/x-www-form-urlencoded` (the HTML form encoding: space as `+`).
fn form_urlencoded(pairs: &[(String, String)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Flattens a JSON object into query parameters the way qs writes them: `null`, undefined and
/// `""` are dropped, arrays repeat the key, nested objects become `key[sub]`.
pub fn flatten_query(object: &Map<String, Value>) -> Vec<(String, String)> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
        match value {
            Value::Null => {}
            Value::String(text) if text.is_empty() => {}
            Value::String(text) => out.push((prefix.to_owned(), text.clone())),
            Value::Number(number) => out.push((prefix.to_owned(), number.to_string())),
            Value::Bool(flag) => out.push((prefix.to_owned(), flag.to_string())),
            Value::Array(items) => items.iter().for_each(|item| walk(prefix, item, out)),
            Value::Object(object) => {
                for (key, item) in object {
                    walk(&format!("{prefix}[{key}]"), item, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (key, value) in object {
        walk(key, value, &mut out);
    }
    out
}

/// Sets each parameter of `overrides`, replacing any parameter of the same name.
pub fn merge_query(query: &mut Vec<(String, String)>, overrides: Vec<(String, String)>) {
    let names: std::collections::BTreeSet<&str> =
        overrides.iter().map(|(name, _)| name.as_str()).collect();
    query.retain(|(name, _)| !names.contains(name.as_str()));
    query.extend(overrides);
}

/// Why a mapping stage failed on a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapError {
    /// An expression failed; `what` names which (`query_mapping`, `records`, …).
    Eval {
        what: &'static str,
        error: EvalError,
    },
    /// An expression produced something of the wrong shape.
    Shape {
        what: &'static str,
        expected: &'static str,
    },
}

impl std::fmt::Display for MapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MapError::Eval { what, error } => write!(f, "`{what}` failed: {error}"),
            MapError::Shape { what, expected } => write!(f, "`{what}` must produce {expected}"),
        }
    }
}

/// The provider query parameters for a unified query.
pub fn map_query(
    method: &UnifiedMethod,
    unified_query: &Value,
    scope: &Scope,
) -> Result<Vec<(String, String)>, MapError> {
    let Some(expression) = &method.query_mapping else {
        return Ok(Vec::new());
    };
    match expression
        .evaluate(unified_query, scope)
        .map_err(|error| MapError::Eval {
            what: "query_mapping",
            error,
        })? {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(object)) => Ok(flatten_query(&object)),
        Some(_) => Err(MapError::Shape {
            what: "query_mapping",
            expected: "an object of query parameters",
        }),
    }
}

/// One provider record → one unified record (without `remote_data`).
pub fn map_response(
    method: &UnifiedMethod,
    record: &Value,
    scope: &Scope,
) -> Result<Map<String, Value>, MapError> {
    match method
        .response_mapping
        .evaluate(record, scope)
        .map_err(|error| MapError::Eval {
            what: "response_mapping",
            error,
        })? {
        Some(Value::Object(object)) => Ok(object),
        _ => Err(MapError::Shape {
            what: "response_mapping",
            expected: "an object for every record",
        }),
    }
}

/// One provider record → one unified record (without `remote_data`), appended to `out` as JSON
/// text: the bytes `serde_json` writes for [`map_response`]'s object, written without building
/// it when the fast path answers. On an error `out` is as it was.
pub fn map_response_json(
    method: &UnifiedMethod,
    record: &Value,
    scope: &Scope,
    out: &mut Vec<u8>,
) -> Result<(), MapError> {
    let start = out.len();
    let defined = method
        .response_mapping
        .evaluate_json(record, scope, out)
        .map_err(|error| MapError::Eval {
            what: "response_mapping",
            error,
        })?;
    if !defined || out.get(start) != Some(&b'{') {
        out.truncate(start);
        return Err(MapError::Shape {
            what: "response_mapping",
            expected: "an object for every record",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flattens_like_qs() {
        let object = json!({"a": "1", "b": null, "c": "", "d": [1, true], "e": {"f": "x"}});
        assert_eq!(
            flatten_query(object.as_object().unwrap()),
            vec![
                ("a".to_owned(), "1".to_owned()),
                ("d".to_owned(), "1".to_owned()),
                ("d".to_owned(), "true".to_owned()),
                ("e[f]".to_owned(), "x".to_owned()),
            ]
        );
    }

    #[test]
    fn merge_replaces_by_name() {
        let mut query = vec![
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ];
        merge_query(&mut query, vec![("a".to_owned(), "9".to_owned())]);
        assert_eq!(
            query,
            vec![
                ("b".to_owned(), "2".to_owned()),
                ("a".to_owned(), "9".to_owned())
            ]
        );
    }

    #[test]
    fn path_values_cannot_escape_their_segment() {
        assert_eq!(escape_segment("../admin?x=1#y"), "..%2Fadmin%3Fx=1%23y");
        assert_eq!(escape_segment(".."), "%2E%2E");
        assert_eq!(escape_segment("a b"), "a%20b");
    }
}
