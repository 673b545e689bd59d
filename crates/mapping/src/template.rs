//! `{{context.key}}` templates: parsed once at load, rendered per call from an account context.
//! Besides `context.…` a template may read `{{id}}` (the record a `get` fetches; `{{id.0}}`,
//! `{{id.1}}`, … the parts of one a follow-up gives as a list), `{{token}}`
//! (the token a token-based auth obtained, in the value it is sent as) and `{{request_id}}` (the
//! gateway request's id, for a provider that takes a correlation header; a header or parameter
//! reading it is left out when there is none). A key written
//! `{{context.key?}}` is optional: where the format allows it (a header or query value), the
//! header or parameter is left out when the account lacks the key.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// A dotted path under `context`, e.g. `["subdomain"]` for `{{context.subdomain}}`, and
    /// whether it ends in `?`.
    Context {
        path: Vec<String>,
        optional: bool,
    },
    /// `{{id}}`: the id of the one record a resource fetches.
    Id,
    /// `{{id.N}}`: part N (from 0) of an id given as several parts (a group's id and its
    /// workspace's, for a path that names both).
    IdSegment(usize),
    /// `{{token}}`: the token a token-based auth obtained.
    Token,
    /// `{{request_id}}`: the id of the gateway request the call serves.
    RequestId,
}

/// Between the parts of an id given as several (a follow-up's `id` giving a list of texts,
/// read as `{{id.0}}`, `{{id.1}}`): a control character no provider id holds.
pub const ID_PART_SEPARATOR: char = '\u{1f}';

/// What a template is rendered from.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    pub context: &'a Value,
    /// The record id, for `{{id}}`.
    pub id: Option<&'a str>,
    /// The obtained token, for `{{token}}`.
    pub token: Option<&'a str>,
    /// The gateway request's id, for `{{request_id}}`.
    pub request_id: Option<&'a str>,
}

impl<'a> Vars<'a> {
    pub fn context(context: &'a Value) -> Self {
        Vars {
            context,
            id: None,
            token: None,
            request_id: None,
        }
    }
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// A template could not be rendered: the account context lacks a key, or holds a non-scalar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    pub key: String,
    pub problem: &'static str,
    /// The key is an optional one (`{{context.key?}}`) the context lacks: the caller leaves the
    /// header or parameter out.
    pub optional_absent: bool,
}

const MOVES_HOST: &str = "would change the host the mapping names: only letters, digits, `-` and `.` of a host name may stand there";
const REPEATS_HOST: &str = "already holds the host text the mapping puts around it (a whole host name where only its own part goes): give only the part that stands there";

impl RenderError {
    /// The value would have sent a URL to another host than the mapping's, or to a host that
    /// repeats the mapping's own text (see [`Template::render_url`]).
    pub fn moves_host(&self) -> bool {
        self.problem == MOVES_HOST || self.problem == REPEATS_HOST
    }
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.key.as_str() {
            "id" | "token" | "request_id" => write!(f, "`{{{{{}}}}}` {}", self.key, self.problem),
            // A part of the id, named as the template writes it (`{{id.1}}`).
            key if key.starts_with("{{") => write!(f, "`{key}` {}", self.problem),
            key => write!(f, "`context.{key}` {}", self.problem),
        }
    }
}

impl Template {
    pub fn compile(source: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| {
                format!(
                    "`{{{{` at byte {} is never closed",
                    source.len() - rest.len() + open
                )
            })?;
            let inner = after[..close].trim();
            rest = &after[close + 2..];
            match inner {
                "id" => {
                    parts.push(Part::Id);
                    continue;
                }
                _ if inner.starts_with("id.") => {
                    let part = inner["id.".len()..].parse::<usize>().map_err(|_| {
                        format!("`{{{{{inner}}}}}`: a part of the id is `{{{{id.0}}}}`, `{{{{id.1}}}}`, …")
                    })?;
                    parts.push(Part::IdSegment(part));
                    continue;
                }
                "token" => {
                    parts.push(Part::Token);
                    continue;
                }
                "request_id" => {
                    parts.push(Part::RequestId);
                    continue;
                }
                _ => {}
            }
            let path = inner.strip_prefix("context.").ok_or_else(|| {
                format!("`{{{{{inner}}}}}`: templates can only read `context.<key>`")
            })?;
            let (path, optional) = match path.strip_suffix('?') {
                Some(path) => (path, true),
                None => (path, false),
            };
            let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
            if segments.iter().any(|segment| {
                segment.is_empty()
                    || !segment
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            }) {
                return Err(format!(
                    "`{{{{{inner}}}}}` is not a valid `context.<key>` path"
                ));
            }
            parts.push(Part::Context {
                path: segments,
                optional,
            });
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// The context keys (dotted) the template needs: optional keys are not among them.
    pub fn context_keys(&self) -> impl Iterator<Item = String> + '_ {
        self.parts.iter().filter_map(|part| match part {
            Part::Context {
                path,
                optional: false,
            } => Some(path.join(".")),
            _ => None,
        })
    }

    /// Every context path the template reads, optional ones too (`["oauth", "secret"]` for
    /// `{{context.oauth.secret?}}`).
    pub fn context_paths(&self) -> impl Iterator<Item = &[String]> + '_ {
        self.parts.iter().filter_map(|part| match part {
            Part::Context { path, .. } => Some(path.as_slice()),
            _ => None,
        })
    }

    /// Whether the template reads any context key (its value may then be a credential).
    pub fn reads_context(&self) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::Context { .. }))
    }

    /// Whether the template has an optional key (`{{context.key?}}`).
    pub fn has_optional(&self) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::Context { optional: true, .. }))
    }

    /// Whether the template reads `{{id}}` (or a part of it).
    pub fn reads_id(&self) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::Id | Part::IdSegment(_)))
    }

    /// Whether the template reads a part of the id (`{{id.0}}`).
    pub fn reads_id_parts(&self) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::IdSegment(_)))
    }

    /// How many times the template reads `{{token}}`.
    pub fn token_count(&self) -> usize {
        self.parts
            .iter()
            .filter(|part| matches!(part, Part::Token))
            .count()
    }

    /// The key when the template is exactly one `{{context.KEY}}` (where a value obtained at run
    /// time, such as a rotated refresh token, is written back).
    pub fn single_context_key(&self) -> Option<String> {
        match self.parts.as_slice() {
            [
                Part::Context {
                    path,
                    optional: false,
                },
            ] => Some(path.join(".")),
            _ => None,
        }
    }

    /// Whether the template has no `{{…}}` at all.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|part| matches!(part, Part::Text(_)))
    }

    /// Renders with `vars`; `escape` transforms each substituted value (e.g. percent-encoding
    /// for a path segment).
    pub fn render_with(
        &self,
        vars: Vars<'_>,
        escape: impl Fn(&str) -> String,
    ) -> Result<String, RenderError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Id => {
                    let id = vars.id.ok_or_else(|| RenderError {
                        key: "id".to_owned(),
                        problem: "is only known when one record is fetched",
                        optional_absent: false,
                    })?;
                    if id.contains(ID_PART_SEPARATOR) {
                        return Err(RenderError {
                            key: "id".to_owned(),
                            problem: "has several parts here: read them as `{{id.0}}`, `{{id.1}}`, …",
                            optional_absent: false,
                        });
                    }
                    out.push_str(&escape(id));
                }
                Part::IdSegment(at) => {
                    let part = vars
                        .id
                        .and_then(|id| id.split(ID_PART_SEPARATOR).nth(*at))
                        .filter(|part| !part.is_empty())
                        .ok_or_else(|| RenderError {
                            key: format!("{{{{id.{at}}}}}"),
                            problem: "is not a part of the id the follow-up gives (a list of that many texts)",
                            optional_absent: false,
                        })?;
                    out.push_str(&escape(part));
                }
                Part::Token => {
                    let token = vars.token.ok_or_else(|| RenderError {
                        key: "token".to_owned(),
                        problem: "is only known once a token was obtained",
                        optional_absent: false,
                    })?;
                    out.push_str(token);
                }
                Part::RequestId => {
                    let id = vars.request_id.ok_or_else(|| RenderError {
                        key: "request_id".to_owned(),
                        problem: "is only known while a gateway request is served",
                        optional_absent: true,
                    })?;
                    out.push_str(&escape(id));
                }
                Part::Context { path, optional } => {
                    let key = || path.join(".");
                    let mut value = vars.context;
                    for segment in path {
                        value = value.get(segment).ok_or_else(|| RenderError {
                            key: key(),
                            problem: "is missing from the account context",
                            optional_absent: *optional,
                        })?;
                    }
                    let text = match value {
                        Value::String(text) => text.clone(),
                        Value::Number(number) => number.to_string(),
                        Value::Bool(flag) => flag.to_string(),
                        Value::Null => {
                            return Err(RenderError {
                                key: key(),
                                problem: "is null in the account context",
                                optional_absent: *optional,
                            });
                        }
                        Value::Array(_) | Value::Object(_) => {
                            return Err(RenderError {
                                key: key(),
                                problem: "must be a string, number or boolean",
                                optional_absent: false,
                            });
                        }
                    };
                    out.push_str(&escape(&text));
                }
            }
        }
        Ok(out)
    }

    pub fn render(&self, context: &Value) -> Result<String, RenderError> {
        self.render_with(Vars::context(context), str::to_owned)
    }

    /// Renders a URL template (a base URL, a token URL) and checks that the account's values
    /// kept the host the template fixes: with `https://{{context.subdomain}}.okta.com/api/v1`, a
    /// subdomain of `evil.example/` would send the credential to `evil.example`. The rendered
    /// URL must keep the template's scheme and a host that starts and ends with the template's
    /// fixed text around the values. A template whose whole host is a value
    /// (`https://{{context.host}}/api`, `{{context.base_url}}`) names no host to keep.
    pub fn render_url(&self, context: &Value) -> Result<String, RenderError> {
        let rendered = self.render(context)?;
        let Some(fixed) = self.fixed_host() else {
            return Ok(rendered);
        };
        let kept = url::Url::parse(&rendered).ok().is_some_and(|url| {
            let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
            url.scheme() == fixed.scheme
                && host.len() > fixed.prefix.len() + fixed.suffix.len()
                && host.starts_with(&fixed.prefix)
                && host.ends_with(&fixed.suffix)
        });
        if !kept {
            return Err(RenderError {
                key: fixed.key,
                problem: MOVES_HOST,
                optional_absent: false,
            });
        }
        // A whole host pasted where its first label goes (`acme.okta.com` for
        // `{{context.subdomain}}.okta.com`, `api.datadoghq.com` for `api.{{context.site}}`)
        // renders a host that repeats the fixed text, which no provider serves: refused at
        // load with what to give instead of a DNS error on every call.
        let repeated = url::Url::parse(&rendered).ok().is_some_and(|url| {
            let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
            let inner = &host[fixed.prefix.len()..host.len() - fixed.suffix.len()];
            (fixed.suffix.starts_with('.') && inner.ends_with(&fixed.suffix))
                || (fixed.prefix.ends_with('.') && inner.starts_with(&fixed.prefix))
        });
        if repeated {
            return Err(RenderError {
                key: fixed.key,
                problem: REPEATS_HOST,
                optional_absent: false,
            });
        }
        Ok(rendered)
    }

    /// Whether a URL template names (part of) its host in fixed text, so that
    /// [`Template::render_url`] can refuse an account's values that would move it elsewhere.
    pub fn fixes_host(&self) -> bool {
        self.is_literal() || self.fixed_host().is_some()
    }

    /// The fixed scheme and host text around the values that stand in a URL template's host,
    /// when there is any fixed host text to keep.
    fn fixed_host(&self) -> Option<FixedHost> {
        let mut scheme: Option<String> = None;
        let mut in_authority = false;
        let mut key: Option<String> = None;
        let mut prefix = String::new();
        let mut suffix = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => {
                    let mut text = text.as_str();
                    if scheme.is_none() {
                        let (before, after) = text.split_once("://")?;
                        scheme = Some(before.to_ascii_lowercase());
                        in_authority = true;
                        text = after;
                    }
                    if !in_authority {
                        break;
                    }
                    let end = text.find(['/', '?', '#']);
                    let authority = &text[..end.unwrap_or(text.len())];
                    if key.is_none() {
                        prefix.push_str(authority);
                    } else {
                        suffix.push_str(authority);
                    }
                    if end.is_some() {
                        break;
                    }
                }
                // A value before the scheme: the whole URL is the account's.
                _ if scheme.is_none() => return None,
                Part::Context { path, .. } => {
                    key.get_or_insert_with(|| path.join("."));
                    suffix.clear();
                }
                Part::Id | Part::IdSegment(_) | Part::Token | Part::RequestId => {
                    key.get_or_insert_with(|| "id".to_owned());
                    suffix.clear();
                }
            }
        }
        let key = key?;
        // `user@` and `:port` are not part of the host.
        let prefix = prefix
            .rsplit('@')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let suffix = suffix
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        (!prefix.is_empty() || !suffix.is_empty()).then(|| FixedHost {
            scheme: scheme.unwrap_or_default(),
            prefix,
            suffix,
            key,
        })
    }
}

/// See [`Template::fixed_host`].
struct FixedHost {
    scheme: String,
    prefix: String,
    suffix: String,
    /// The first value in the host, named in errors.
    key: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_context_paths() {
        let template =
            Template::compile("https://{{context.subdomain}}.okta.com/{{ context.a.b }}/x")
                .unwrap();
        let context = json!({"subdomain": "acme", "a": {"b": 7}});
        assert_eq!(
            template.render(&context).unwrap(),
            "https://acme.okta.com/7/x"
        );
        assert_eq!(
            template.context_keys().collect::<Vec<_>>(),
            vec!["subdomain", "a.b"]
        );
        assert_eq!(
            template
                .render(&json!({"a": {"b": 1}}))
                .unwrap_err()
                .to_string(),
            "`context.subdomain` is missing from the account context"
        );
        assert!(Template::compile("plain").unwrap().is_literal());
    }

    #[test]
    fn renders_the_parts_of_an_id_each_escaped() {
        let template = Template::compile("/workspaces/{{id.0}}/groups/{{id.1}}/members").unwrap();
        assert!(template.reads_id() && template.reads_id_parts());
        let id = format!("w/1{ID_PART_SEPARATOR}g 7");
        let vars = Vars {
            context: &json!({}),
            id: Some(&id),
            token: None,
            request_id: None,
        };
        let escape = |v: &str| v.replace('/', "%2F").replace(' ', "%20");
        assert_eq!(
            template.render_with(vars, escape).unwrap(),
            "/workspaces/w%2F1/groups/g%207/members"
        );
        // `{{id}}` of an id in parts, or a part it does not have, is an error, never a guess.
        let whole = Template::compile("/groups/{{id}}").unwrap();
        assert_eq!(
            whole.render_with(vars, escape).unwrap_err().to_string(),
            "`{{id}}` has several parts here: read them as `{{id.0}}`, `{{id.1}}`, …"
        );
        let third = Template::compile("/groups/{{id.2}}").unwrap();
        assert_eq!(
            third.render_with(vars, escape).unwrap_err().to_string(),
            "`{{id.2}}` is not a part of the id the follow-up gives (a list of that many texts)"
        );
        assert_eq!(
            Template::compile("/groups/{{id.first}}").unwrap_err(),
            "`{{id.first}}`: a part of the id is `{{id.0}}`, `{{id.1}}`, …"
        );
    }

    #[test]
    fn renders_the_record_id_escaped() {
        let template = Template::compile("/users/{{ id }}").unwrap();
        assert!(template.reads_id());
        let vars = Vars {
            context: &json!({}),
            id: Some("a/b"),
            token: None,
            request_id: None,
        };
        assert_eq!(
            template
                .render_with(vars, |v| v.replace('/', "%2F"))
                .unwrap(),
            "/users/a%2Fb"
        );
        assert_eq!(
            template.render(&json!({})).unwrap_err().to_string(),
            "`{{id}}` is only known when one record is fetched"
        );
    }

    #[test]
    fn optional_keys_are_not_required_and_say_so_when_absent() {
        let template = Template::compile("{{context.org_id?}}").unwrap();
        assert!(template.has_optional());
        assert_eq!(template.context_keys().count(), 0);
        assert_eq!(template.render(&json!({"org_id": "o1"})).unwrap(), "o1");
        let absent = template.render(&json!({})).unwrap_err();
        assert!(absent.optional_absent);
        let token = Template::compile("Zoho-oauthtoken {{token}}").unwrap();
        assert_eq!(token.token_count(), 1);
        let vars = Vars {
            context: &json!({}),
            id: None,
            token: Some("t1"),
            request_id: None,
        };
        assert_eq!(
            token.render_with(vars, str::to_owned).unwrap(),
            "Zoho-oauthtoken t1"
        );
    }

    #[test]
    fn a_value_in_the_host_cannot_move_the_url_to_another_host() {
        let okta = Template::compile("https://{{context.subdomain}}.okta.com/api/v1").unwrap();
        assert_eq!(
            okta.render_url(&json!({"subdomain": "acme-1.eu"})).unwrap(),
            "https://acme-1.eu.okta.com/api/v1"
        );
        for evil in [
            "evil.example/",
            "evil.example?",
            "evil.example#",
            "evil.example\\",
            "evil.example:443/x",
            "user@evil.example/",
            "",
        ] {
            let error = okta.render_url(&json!({"subdomain": evil})).unwrap_err();
            assert_eq!(
                error.to_string(),
                "`context.subdomain` would change the host the mapping names: only letters, digits, `-` and `.` of a host name may stand there",
                "{evil:?}"
            );
        }
        // A prefix is kept too, and a port is not part of the host.
        let prefixed = Template::compile("https://api.{{context.region}}:8443/v1").unwrap();
        assert!(prefixed.render_url(&json!({"region": "eu"})).is_ok());
        assert!(
            prefixed
                .render_url(&json!({"region": "x@evil.example"}))
                .is_err()
        );
        // The host is the account's own: nothing fixed to keep.
        for open in [
            "https://{{context.host}}/api",
            "{{context.base_url}}/v2",
            "https://{{context.host}}{{context.path}}/_api",
        ] {
            let template = Template::compile(open).unwrap();
            assert!(
                template
                    .render_url(&json!({"host": "h.example", "base_url": "https://x.example", "path": "/sites/a"}))
                    .is_ok(),
                "{open}"
            );
        }
    }

    #[test]
    fn a_whole_host_where_its_first_label_goes_is_refused() {
        let repeats = "already holds the host text the mapping puts around it (a whole host name where only its own part goes): give only the part that stands there";
        let okta = Template::compile("https://{{context.subdomain}}.okta.com/api/v1").unwrap();
        for pasted in ["acme.okta.com", "ACME.OKTA.COM", "acme.eu.okta.com"] {
            let error = okta.render_url(&json!({"subdomain": pasted})).unwrap_err();
            assert!(error.moves_host());
            assert_eq!(error.to_string(), format!("`context.subdomain` {repeats}"));
        }
        // `okta` alone, or a label that merely contains the suffix's words, is a subdomain.
        for own in ["okta", "acme-okta-com", "okta.acme"] {
            assert!(okta.render_url(&json!({"subdomain": own})).is_ok(), "{own}");
        }
        let datadog = Template::compile("https://api.{{context.site}}").unwrap();
        assert!(datadog.render_url(&json!({"site": "datadoghq.eu"})).is_ok());
        let error = datadog
            .render_url(&json!({"site": "api.datadoghq.eu"}))
            .unwrap_err();
        assert_eq!(error.to_string(), format!("`context.site` {repeats}"));
    }

    #[test]
    fn refuses_bad_templates() {
        assert!(
            Template::compile("{{context.x")
                .unwrap_err()
                .contains("never closed")
        );
        assert!(
            Template::compile("{{secrets.x}}")
                .unwrap_err()
                .contains("only read `context.<key>`")
        );
        assert!(
            Template::compile("{{context.}}")
                .unwrap_err()
                .contains("not a valid")
        );
    }
}
