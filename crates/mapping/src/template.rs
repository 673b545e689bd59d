//! `{{context.key}}` templates: parsed once at load, rendered per call from an account context.
//! Besides `context.…` a template may read `{{id}}` (the record a `get` fetches) and `{{token}}`
//! (the token a token-based auth obtained, in the value it is sent as). A key written
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
    /// `{{token}}`: the token a token-based auth obtained.
    Token,
}

/// What a template is rendered from.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    pub context: &'a Value,
    /// The record id, for `{{id}}`.
    pub id: Option<&'a str>,
    /// The obtained token, for `{{token}}`.
    pub token: Option<&'a str>,
}

impl<'a> Vars<'a> {
    pub fn context(context: &'a Value) -> Self {
        Vars {
            context,
            id: None,
            token: None,
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

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.key.as_str() {
            "id" | "token" => write!(f, "`{{{{{}}}}}` {}", self.key, self.problem),
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
                "token" => {
                    parts.push(Part::Token);
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

    /// Whether the template reads `{{id}}`.
    pub fn reads_id(&self) -> bool {
        self.parts.iter().any(|part| matches!(part, Part::Id))
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
                    out.push_str(&escape(id));
                }
                Part::Token => {
                    let token = vars.token.ok_or_else(|| RenderError {
                        key: "token".to_owned(),
                        problem: "is only known once a token was obtained",
                        optional_absent: false,
                    })?;
                    out.push_str(token);
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
    fn renders_the_record_id_escaped() {
        let template = Template::compile("/users/{{ id }}").unwrap();
        assert!(template.reads_id());
        let vars = Vars {
            context: &json!({}),
            id: Some("a/b"),
            token: None,
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
        };
        assert_eq!(
            token.render_with(vars, str::to_owned).unwrap(),
            "Zoho-oauthtoken t1"
        );
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
