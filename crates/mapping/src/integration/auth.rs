//! Provider auth as the mapping file declares it: the kinds, and compiling the `auth:` block.

use crate::diagnostics::FileCompiler;
use crate::spec::{AuthKind, ClientAuth, Text};
use crate::template::Template;

use super::is_token;

#[derive(Debug)]
pub enum Auth {
    None,
    Header {
        name: String,
        value: Template,
    },
    Query {
        param: String,
        value: Template,
    },
    Basic {
        username: Template,
        password: Template,
    },
    Bearer {
        token: Template,
    },
    /// Access tokens obtained from a token endpoint and sent as `Authorization: Bearer …`.
    OAuth2(OAuth2),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    RefreshToken,
    ClientCredentials,
}

#[derive(Debug)]
pub struct OAuth2 {
    pub grant: Grant,
    pub token_url: Template,
    pub client_id: Template,
    pub client_secret: Template,
    /// The account's refresh token (refresh-token grant); a rotated one replaces it in the store.
    pub refresh_token: Option<Template>,
    pub scope: Option<Template>,
    pub client_auth: ClientAuth,
    pub token_params: Vec<(String, Template)>,
}

impl Auth {
    /// Every template the auth renders from the account context.
    pub fn templates(&self) -> Vec<&Template> {
        match self {
            Auth::None => Vec::new(),
            Auth::Header { value, .. } | Auth::Query { value, .. } => vec![value],
            Auth::Basic { username, password } => vec![username, password],
            Auth::Bearer { token } => vec![token],
            Auth::OAuth2(oauth) => {
                let mut templates = vec![&oauth.token_url, &oauth.client_id, &oauth.client_secret];
                templates.extend(oauth.refresh_token.iter().chain(oauth.scope.iter()));
                templates.extend(oauth.token_params.iter().map(|(_, template)| template));
                templates
            }
        }
    }

    /// The kind's name in a mapping file.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::Header { .. } => "header",
            Auth::Query { .. } => "query",
            Auth::Basic { .. } => "basic",
            Auth::Bearer { .. } => "bearer",
            Auth::OAuth2(oauth) => match oauth.grant {
                Grant::RefreshToken => "oauth2_refresh_token",
                Grant::ClientCredentials => "oauth2_client_credentials",
            },
        }
    }
}

pub(super) fn compile_auth(spec: &crate::spec::AuthSpec, c: &mut FileCompiler<'_>) -> Option<Auth> {
    let kind = spec.kind.value;
    let kind_label = match kind {
        AuthKind::Header => "header",
        AuthKind::Query => "query",
        AuthKind::Basic => "basic",
        AuthKind::Bearer => "bearer",
        AuthKind::Oauth2RefreshToken => "oauth2_refresh_token",
        AuthKind::Oauth2ClientCredentials => "oauth2_client_credentials",
        AuthKind::None => "none",
    };
    // (required, optional) fields of each kind; any other field set is a mistake.
    let (required, optional): (&[&str], &[&str]) = match kind {
        AuthKind::Header => (&["header", "value"], &[]),
        AuthKind::Query => (&["param", "value"], &[]),
        AuthKind::Basic => (&["username", "password"], &[]),
        AuthKind::Bearer => (&["token"], &[]),
        AuthKind::Oauth2RefreshToken => (
            &["token_url", "client_id", "client_secret", "refresh_token"],
            &["scope", "client_auth"],
        ),
        AuthKind::Oauth2ClientCredentials => (
            &["token_url", "client_id", "client_secret"],
            &["scope", "client_auth"],
        ),
        AuthKind::None => (&[], &[]),
    };
    let client_auth_line = spec.client_auth.as_ref().map(|c| c.referenced.line());
    let fields: [(&str, Option<u64>); 13] = [
        ("header", spec.header.as_ref().map(|t| t.referenced.line())),
        ("param", spec.param.as_ref().map(|t| t.referenced.line())),
        ("value", spec.value.as_ref().map(|t| t.referenced.line())),
        (
            "username",
            spec.username.as_ref().map(|t| t.referenced.line()),
        ),
        (
            "password",
            spec.password.as_ref().map(|t| t.referenced.line()),
        ),
        ("token", spec.token.as_ref().map(|t| t.referenced.line())),
        (
            "token_url",
            spec.token_url.as_ref().map(|t| t.referenced.line()),
        ),
        (
            "client_id",
            spec.client_id.as_ref().map(|t| t.referenced.line()),
        ),
        (
            "client_secret",
            spec.client_secret.as_ref().map(|t| t.referenced.line()),
        ),
        (
            "refresh_token",
            spec.refresh_token.as_ref().map(|t| t.referenced.line()),
        ),
        ("scope", spec.scope.as_ref().map(|t| t.referenced.line())),
        ("client_auth", client_auth_line),
        (
            "token_params",
            spec.token_params
                .values()
                .next()
                .map(|t| t.referenced.line()),
        ),
    ];
    let mut ok = true;
    for (name, line) in fields {
        let used = required.contains(&name) || optional.contains(&name);
        match (used, line) {
            (false, Some(line)) => {
                c.error_line(
                    line,
                    &format!("auth.{name}"),
                    &format!("is not used by auth kind `{kind_label}`"),
                );
                ok = false;
            }
            (true, None) if required.contains(&name) => {
                c.error_at(
                    &spec.kind,
                    "auth",
                    &format!("auth kind `{kind_label}` needs `{name}`"),
                );
                ok = false;
            }
            _ => {}
        }
    }
    if !ok {
        return None;
    }
    let mut template = |field: &Option<Text>, name: &str| {
        field
            .as_ref()
            .and_then(|text| c.template(text, &format!("auth.{name}")))
    };
    Some(match kind {
        AuthKind::None => Auth::None,
        AuthKind::Header => {
            let value = template(&spec.value, "value")?;
            let header = spec.header.as_ref()?;
            if !is_token(&header.value) {
                c.error_at(header, "auth.header", "is not a valid HTTP header name");
                return None;
            }
            Auth::Header {
                name: header.value.clone(),
                value,
            }
        }
        AuthKind::Query => {
            let value = template(&spec.value, "value")?;
            Auth::Query {
                param: spec.param.as_ref()?.value.clone(),
                value,
            }
        }
        AuthKind::Basic => {
            let username = template(&spec.username, "username")?;
            let password = template(&spec.password, "password")?;
            Auth::Basic { username, password }
        }
        AuthKind::Bearer => Auth::Bearer {
            token: template(&spec.token, "token")?,
        },
        AuthKind::Oauth2RefreshToken | AuthKind::Oauth2ClientCredentials => {
            let token_url = template(&spec.token_url, "token_url");
            let client_id = template(&spec.client_id, "client_id");
            let client_secret = template(&spec.client_secret, "client_secret");
            let refresh_token = match &spec.refresh_token {
                Some(_) => Some(template(&spec.refresh_token, "refresh_token")?),
                None => None,
            };
            let scope = match &spec.scope {
                Some(_) => Some(template(&spec.scope, "scope")?),
                None => None,
            };
            let token_params = spec
                .token_params
                .iter()
                .map(|(name, value)| {
                    Some((
                        name.clone(),
                        template(&Some(value.clone()), &format!("token_params.{name}"))?,
                    ))
                })
                .collect::<Option<Vec<_>>>()?;
            Auth::OAuth2(OAuth2 {
                grant: if kind == AuthKind::Oauth2RefreshToken {
                    Grant::RefreshToken
                } else {
                    Grant::ClientCredentials
                },
                token_url: token_url?,
                client_id: client_id?,
                client_secret: client_secret?,
                refresh_token,
                scope,
                client_auth: spec
                    .client_auth
                    .as_ref()
                    .map(|c| c.value)
                    .unwrap_or_default(),
                token_params,
            })
        }
    })
}
