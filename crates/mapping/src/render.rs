//! The pure stages around a provider call: `render_request` and `render_credential` (account →
//! the provider request's fixed parts), `map_query` (unified query → provider query) and
//! `map_response` (provider record → unified record).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::{Map, Value};
use unigate_unified::Secret;

use crate::expression::{EvalError, Scope};
use crate::integration::{Auth, Grant, Integration, Resource, UnifiedMethod};
use crate::spec::{ClientAuth, HttpMethod};
use crate::template::{RenderError, Vars};

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
    /// An access token to obtain from a token endpoint, then send as a bearer token.
    OAuth2(RenderedOAuth2),
}

/// An OAuth 2.0 token request, rendered from the account context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedOAuth2 {
    pub grant: Grant,
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub refresh_token: Option<Secret>,
    pub scope: Option<String>,
    pub client_auth: ClientAuth,
    pub token_params: Vec<(String, String)>,
}

/// A provider request before the HTTP client sees it (the credential travels apart, see
/// [`render_credential`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedRequest {
    pub method: HttpMethod,
    /// Base URL + resource path, no query string.
    pub url: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    /// Where pages after the first go, for a provider with a "continue" endpoint.
    pub continue_url: Option<String>,
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
        None => integration.base_url.render(vars.context)?,
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
    let query = resource
        .query
        .iter()
        .map(|(name, template)| Ok((name.clone(), template.render_with(vars, str::to_owned)?)))
        .collect::<Result<Vec<_>, RenderError>>()?;
    let headers = integration
        .headers
        .iter()
        .map(|(name, template)| Ok((name.clone(), template.render(vars.context)?)))
        .collect::<Result<Vec<_>, RenderError>>()?;
    Ok(RenderedRequest {
        method: resource.method,
        url,
        query,
        headers,
        continue_url,
    })
}

/// The account's credential as its integration's `auth` says to send it.
pub fn render_credential(
    integration: &Integration,
    context: &Value,
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
        Auth::Basic { username, password } => {
            let pair = format!(
                "{}:{}",
                username.render(context)?,
                password.render(context)?
            );
            Credential::Header {
                name: "Authorization".to_owned(),
                value: Secret::new(format!("Basic {}", STANDARD.encode(pair))),
            }
        }
        Auth::Bearer { token } => Credential::Header {
            name: "Authorization".to_owned(),
            value: Secret::new(format!("Bearer {}", token.render(context)?)),
        },
        Auth::OAuth2(oauth) => Credential::OAuth2(RenderedOAuth2 {
            grant: oauth.grant,
            token_url: oauth.token_url.render(context)?,
            client_id: oauth.client_id.render(context)?,
            client_secret: Secret::new(oauth.client_secret.render(context)?),
            refresh_token: oauth
                .refresh_token
                .as_ref()
                .map(|token| token.render(context).map(Secret::new))
                .transpose()?,
            scope: oauth
                .scope
                .as_ref()
                .map(|scope| scope.render(context))
                .transpose()?,
            client_auth: oauth.client_auth,
            token_params: oauth
                .token_params
                .iter()
                .map(|(name, value)| Ok((name.clone(), value.render(context)?)))
                .collect::<Result<_, RenderError>>()?,
        }),
    })
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
