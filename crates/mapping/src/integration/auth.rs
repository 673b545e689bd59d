//! Provider auth as the mapping file declares it: the kinds, and compiling the `auth:` block.
//! Static kinds (`header`, `query`, `basic`, `bearer`) render a credential from the account
//! context; token kinds (the OAuth 2.0 grants and `token_exchange`) say how to obtain a
//! short-lived token and how to send it (`header: value`, the value reading `{{token}}`);
//! `hmac_signature` signs every request (the string to sign reads the request's date, method,
//! host, path and canonical query), so its credential is finished only when a request is sent.
//! `body` sends nothing itself: the resource's body expression writes the credentials, and the
//! kind names them, so that a refusal marks the account and the values stay out of errors.

use serde_saphyr::Spanned;

use crate::diagnostics::FileCompiler;
use crate::expression::Expression;
use crate::spec::{
    AuthKind, AuthSpec, ClientAuth, HmacAlgorithm, HttpMethod, JwtAlgorithm, SignatureEncoding,
    SigningDateFormat, Text, TokenBody,
};
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
    /// A short-lived token obtained from a token endpoint or a login call.
    Token(Box<TokenAuth>),
    /// An HMAC over each request.
    Signed(Box<SignedAuth>),
    /// Credentials the resource's `body` writes; these templates name them.
    Body {
        credentials: Vec<Template>,
    },
}

/// Stand-ins for the request's parts in a compiled `string_to_sign` (and for the signature in
/// the sent value): the context parts are rendered with the account, these when a request is
/// sent. A NUL cannot come from a YAML scalar's text, so they cannot collide with it.
pub const SIGNING_DATE: &str = "\u{0}date\u{0}";
pub const SIGNING_METHOD: &str = "\u{0}method\u{0}";
pub const SIGNING_HOST: &str = "\u{0}host\u{0}";
pub const SIGNING_PATH: &str = "\u{0}path\u{0}";
pub const SIGNING_QUERY: &str = "\u{0}query\u{0}";
pub const SIGNATURE: &str = "\u{0}signature\u{0}";

/// `hmac_signature`.
#[derive(Debug)]
pub struct SignedAuth {
    pub secret: Template,
    pub algorithm: HmacAlgorithm,
    /// Reads the `SIGNING_*` stand-ins where the file wrote `{{date}}`, `{{method}}`, ….
    pub string_to_sign: Template,
    pub date_header: Option<String>,
    pub date_format: SigningDateFormat,
    pub encoding: SignatureEncoding,
    pub output: SignatureOutput,
}

/// Where the signature goes.
#[derive(Debug)]
pub enum SignatureOutput {
    /// `Authorization: Basic base64(<username>:<signature>)` (Duo).
    Basic { username: Template },
    /// `<header>: <value>`, the value reading `{{signature}}` once (as [`SIGNATURE`]).
    Header { name: String, value: Template },
}

/// A token-based auth: where the token comes from and how it is sent.
#[derive(Debug)]
pub struct TokenAuth {
    pub source: TokenSource,
    /// The header the token travels in, and its value (reads `{{token}}` once).
    pub header: String,
    pub value: Template,
    /// No `value` in the file: the token goes as `Bearer <token>`, or `DPoP <token>` when the
    /// server bound it to a DPoP key (RFC 9449 §7.1).
    pub default_value: bool,
    /// Context keys written from each token answer (`keep`), and what gives them.
    pub keep: Vec<(String, Expression)>,
    /// What a token answer that gave no token means, where the gateway's own reading is wrong
    /// for the provider (`token_rejected`).
    pub token_rejected: Option<super::CredentialRefusal>,
}

/// Context keys `keep` may not write: the token's own, which the gateway writes.
const KEPT_BY_THE_GATEWAY: [&str; 3] = [
    "access_token",
    "access_token_expires_at",
    "access_token_dpop_key",
];

#[derive(Debug)]
pub enum TokenSource {
    OAuth2(OAuth2),
    Exchange(Exchange),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    RefreshToken,
    ClientCredentials,
    /// RFC 7523: a JWT assertion signed with a key from the context.
    JwtBearer,
}

impl Grant {
    /// The `grant_type` this grant sends unless the mapping names another.
    pub fn grant_type(self) -> &'static str {
        match self {
            Grant::RefreshToken => "refresh_token",
            Grant::ClientCredentials => "client_credentials",
            Grant::JwtBearer => "urn:ietf:params:oauth:grant-type:jwt-bearer",
        }
    }
}

#[derive(Debug)]
pub struct OAuth2 {
    pub grant: Grant,
    pub grant_type: Template,
    pub token_url: Template,
    pub client_id: Option<Template>,
    pub client_secret: Option<Template>,
    /// The account's refresh token (refresh-token grant); a rotated one replaces it in the store.
    pub refresh_token: Option<Template>,
    pub scope: Option<Template>,
    pub client_auth: ClientAuth,
    pub body: TokenBody,
    pub token_params: Vec<(String, Template)>,
    pub assertion: Option<JwtAssertion>,
    /// `client_auth: private_key_jwt`: how the client assertion is made.
    pub client_key: Option<ClientKey>,
    /// Ask for a DPoP-bound token and prove possession on every call (`dpop: true`).
    pub dpop: bool,
}

/// `client_auth: private_key_jwt`: the key signing the client assertion, its `kid`, how it
/// signs, and the provider's own claims beside RFC 7523's (NetSuite's `scope`).
#[derive(Debug)]
pub struct ClientKey {
    pub private_key: Template,
    pub key_id: Option<Template>,
    pub algorithm: JwtAlgorithm,
    pub claims: Vec<(String, Template)>,
}

/// The claims and key of a JWT bearer assertion.
#[derive(Debug)]
pub struct JwtAssertion {
    pub issuer: Template,
    pub subject: Option<Template>,
    /// Default: the token URL.
    pub audience: Option<Template>,
    /// A PEM private key (RSA, or P-256 for ES256).
    pub private_key: Template,
    pub algorithm: JwtAlgorithm,
    pub lifetime_s: u64,
    /// The `kid` header, when the account names its key.
    pub key_id: Option<Template>,
    /// The provider's own claims (Box's `box_sub_type`).
    pub claims: Vec<(String, Template)>,
    /// A fresh `jti` in every assertion.
    pub jti: bool,
}

/// The login call of `token_exchange`, and how to read its answer.
#[derive(Debug)]
pub struct Exchange {
    pub method: HttpMethod,
    /// Absolute, or a path on the origin of the account's base URL.
    pub url: Template,
    pub headers: Vec<(String, Template)>,
    pub body: ExchangeBody,
    pub basic: Option<(Template, Template)>,
    /// A JWT signed with the account's key, sent as the login call's bearer credential.
    pub jwt: Option<ExchangeJwt>,
    /// JSONata over the answer body: the token, and its lifetime or expiry.
    pub token: Expression,
    pub expires_in: Option<Expression>,
    pub expires_at: Option<Expression>,
    pub default_lifetime_s: u64,
}

/// `exchange.jwt`: who signs, with what key, for how long.
#[derive(Debug)]
pub struct ExchangeJwt {
    pub issuer: Template,
    pub private_key: Template,
    pub lifetime_s: u64,
}

/// GitHub's longest: "no more than 10 minutes into the future".
pub const DEFAULT_EXCHANGE_JWT_LIFETIME_S: u64 = 600;

#[derive(Debug)]
pub enum ExchangeBody {
    None,
    Json(JsonTemplate),
    Form(Vec<(String, Template)>),
}

/// A JSON value whose strings are templates.
#[derive(Debug)]
pub enum JsonTemplate {
    Object(Vec<(String, JsonTemplate)>),
    Array(Vec<JsonTemplate>),
    Text(Template),
    /// A number, boolean or null, sent as it is.
    Literal(serde_json::Value),
}

impl JsonTemplate {
    fn compile(value: &serde_json::Value) -> Result<JsonTemplate, String> {
        Ok(match value {
            serde_json::Value::Object(object) => JsonTemplate::Object(
                object
                    .iter()
                    .map(|(key, value)| Ok((key.clone(), JsonTemplate::compile(value)?)))
                    .collect::<Result<_, String>>()?,
            ),
            serde_json::Value::Array(items) => JsonTemplate::Array(
                items
                    .iter()
                    .map(JsonTemplate::compile)
                    .collect::<Result<_, String>>()?,
            ),
            serde_json::Value::String(text) => JsonTemplate::Text(Template::compile(text)?),
            other => JsonTemplate::Literal(other.clone()),
        })
    }

    /// Every template in the value.
    pub fn templates(&self) -> Vec<&Template> {
        match self {
            JsonTemplate::Object(fields) => {
                fields.iter().flat_map(|(_, v)| v.templates()).collect()
            }
            JsonTemplate::Array(items) => items.iter().flat_map(JsonTemplate::templates).collect(),
            JsonTemplate::Text(template) => vec![template],
            JsonTemplate::Literal(_) => Vec::new(),
        }
    }

    /// The value with every template rendered from `context`.
    pub fn render(
        &self,
        context: &serde_json::Value,
    ) -> Result<serde_json::Value, crate::template::RenderError> {
        Ok(match self {
            JsonTemplate::Object(fields) => serde_json::Value::Object(
                fields
                    .iter()
                    .map(|(key, value)| Ok((key.clone(), value.render(context)?)))
                    .collect::<Result<_, crate::template::RenderError>>()?,
            ),
            JsonTemplate::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|item| item.render(context))
                    .collect::<Result<_, _>>()?,
            ),
            JsonTemplate::Text(template) => serde_json::Value::String(template.render(context)?),
            JsonTemplate::Literal(value) => value.clone(),
        })
    }
}

/// A token lifetime assumed when an exchange's answer does not say.
const DEFAULT_EXCHANGE_LIFETIME_S: u64 = 300;
/// A JWT bearer assertion's lifetime unless the mapping says (Google's maximum is an hour).
const DEFAULT_ASSERTION_LIFETIME_S: u64 = 3600;

impl Exchange {
    /// Its templates that carry credentials: headers, body and Basic credentials (not its URL).
    fn credential_templates(&self) -> Vec<&Template> {
        let mut templates: Vec<&Template> =
            self.headers.iter().map(|(_, template)| template).collect();
        match &self.body {
            ExchangeBody::Json(json) => templates.extend(json.templates()),
            ExchangeBody::Form(fields) => {
                templates.extend(fields.iter().map(|(_, template)| template));
            }
            ExchangeBody::None => {}
        }
        if let Some((username, password)) = &self.basic {
            templates.extend([username, password]);
        }
        if let Some(jwt) = &self.jwt {
            templates.push(&jwt.private_key);
        }
        templates
    }
}

impl SignatureOutput {
    /// The template rendered around the signature (a username, a header value).
    fn template(&self) -> &Template {
        match self {
            SignatureOutput::Basic { username } => username,
            SignatureOutput::Header { value, .. } => value,
        }
    }
}

impl Auth {
    /// Every template the auth renders from the account context.
    pub fn templates(&self) -> Vec<&Template> {
        match self {
            Auth::None => Vec::new(),
            Auth::Header { value, .. } | Auth::Query { value, .. } => vec![value],
            Auth::Basic { username, password } => vec![username, password],
            Auth::Bearer { token } => vec![token],
            Auth::Body { credentials } => credentials.iter().collect(),
            Auth::Token(token) => {
                let mut templates = vec![&token.value];
                match &token.source {
                    TokenSource::OAuth2(oauth) => {
                        templates.extend([&oauth.token_url, &oauth.grant_type]);
                        templates.extend(oauth.client_id.iter());
                        templates.extend(oauth.client_secret.iter());
                        templates.extend(oauth.refresh_token.iter().chain(oauth.scope.iter()));
                        templates.extend(oauth.token_params.iter().map(|(_, template)| template));
                        if let Some(assertion) = &oauth.assertion {
                            templates.extend([&assertion.issuer, &assertion.private_key]);
                            templates.extend(assertion.subject.iter());
                            templates.extend(assertion.audience.iter());
                            templates.extend(assertion.key_id.iter());
                            templates.extend(assertion.claims.iter().map(|(_, claim)| claim));
                        }
                        if let Some(key) = &oauth.client_key {
                            templates.push(&key.private_key);
                            templates.extend(key.key_id.iter());
                            templates.extend(key.claims.iter().map(|(_, claim)| claim));
                        }
                    }
                    TokenSource::Exchange(exchange) => {
                        templates.push(&exchange.url);
                        templates.extend(exchange.credential_templates());
                        templates.extend(exchange.jwt.as_ref().map(|jwt| &jwt.issuer));
                    }
                }
                templates
            }
            Auth::Signed(signed) => {
                vec![
                    &signed.secret,
                    &signed.string_to_sign,
                    signed.output.template(),
                ]
            }
        }
    }

    /// The templates whose text is a credential: what a provider must never echo back to the
    /// caller ([`Auth::templates`] less URLs, grant types, scopes, client ids and claims).
    pub fn credential_templates(&self) -> Vec<&Template> {
        match self {
            Auth::Token(token) => {
                let mut templates = vec![&token.value];
                match &token.source {
                    TokenSource::OAuth2(oauth) => {
                        templates.extend(oauth.client_secret.iter());
                        templates.extend(oauth.refresh_token.iter());
                        templates.extend(oauth.token_params.iter().map(|(_, template)| template));
                        if let Some(assertion) = &oauth.assertion {
                            templates.push(&assertion.private_key);
                        }
                        if let Some(key) = &oauth.client_key {
                            templates.push(&key.private_key);
                        }
                    }
                    TokenSource::Exchange(exchange) => {
                        templates.extend(exchange.credential_templates());
                    }
                }
                templates
            }
            Auth::Signed(signed) => {
                vec![&signed.secret, signed.output.template()]
            }
            other => other.templates(),
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
            Auth::Token(token) => match &token.source {
                TokenSource::OAuth2(oauth) => match oauth.grant {
                    Grant::RefreshToken => "oauth2_refresh_token",
                    Grant::ClientCredentials => "oauth2_client_credentials",
                    Grant::JwtBearer => "oauth2_jwt_bearer",
                },
                TokenSource::Exchange(_) => "token_exchange",
            },
            Auth::Signed(_) => "hmac_signature",
            Auth::Body { .. } => "body",
        }
    }
}

fn kind_label(kind: AuthKind) -> &'static str {
    match kind {
        AuthKind::Header => "header",
        AuthKind::Query => "query",
        AuthKind::Basic => "basic",
        AuthKind::Bearer => "bearer",
        AuthKind::Oauth2RefreshToken => "oauth2_refresh_token",
        AuthKind::Oauth2ClientCredentials => "oauth2_client_credentials",
        AuthKind::Oauth2JwtBearer => "oauth2_jwt_bearer",
        AuthKind::TokenExchange => "token_exchange",
        AuthKind::HmacSignature => "hmac_signature",
        AuthKind::Body => "body",
        AuthKind::None => "none",
    }
}

/// (required, optional) fields of each kind; any other field set is a mistake.
fn fields_of(kind: AuthKind) -> (&'static [&'static str], &'static [&'static str]) {
    const OAUTH_EXTRAS: [&str; 6] = [
        "scope",
        "client_auth",
        "token_params",
        "token_body",
        "grant_type",
        "header",
    ];
    match kind {
        AuthKind::Header => (&["header", "value"], &["rejected"]),
        AuthKind::Query => (&["param", "value"], &["rejected"]),
        AuthKind::Basic => (&["username", "password"], &["rejected"]),
        AuthKind::Bearer => (&["token"], &["rejected"]),
        AuthKind::Oauth2RefreshToken => (
            &["token_url", "client_id", "client_secret", "refresh_token"],
            &[
                OAUTH_EXTRAS[0],
                OAUTH_EXTRAS[1],
                OAUTH_EXTRAS[2],
                OAUTH_EXTRAS[3],
                OAUTH_EXTRAS[4],
                OAUTH_EXTRAS[5],
                "value",
                "rejected",
                "token_rejected",
                "keep",
            ],
        ),
        AuthKind::Oauth2ClientCredentials => (
            &["token_url", "client_id", "client_secret"],
            &[
                OAUTH_EXTRAS[0],
                OAUTH_EXTRAS[1],
                OAUTH_EXTRAS[2],
                OAUTH_EXTRAS[3],
                OAUTH_EXTRAS[4],
                OAUTH_EXTRAS[5],
                "value",
                "rejected",
                "token_rejected",
                "keep",
            ],
        ),
        AuthKind::Oauth2JwtBearer => (
            &["token_url", "issuer", "private_key"],
            &[
                "subject",
                "audience",
                "lifetime_s",
                "key_id",
                "claims",
                "jti",
                "jwt_algorithm",
                "scope",
                "token_params",
                "token_body",
                "grant_type",
                "client_id",
                "client_secret",
                "client_auth",
                "header",
                "value",
                "rejected",
                "token_rejected",
                "keep",
            ],
        ),
        AuthKind::TokenExchange => (
            &["exchange", "token"],
            &[
                "expires_in",
                "expires_at",
                "default_lifetime_s",
                "header",
                "value",
                "rejected",
                "token_rejected",
                "keep",
            ],
        ),
        AuthKind::HmacSignature => (
            &["secret", "string_to_sign"],
            &[
                "algorithm",
                "date_header",
                "date_format",
                "encoding",
                "username",
                "header",
                "value",
                "rejected",
            ],
        ),
        AuthKind::Body => (&["credentials"], &["rejected"]),
        AuthKind::None => (&[], &[]),
    }
}

/// The fields `client_auth: private_key_jwt` and `dpop` change: a client proving itself with a
/// signed JWT has a `private_key` (and maybe a `key_id`) where others have a `client_secret`;
/// the client credentials and jwt-bearer kinds may ask for a DPoP-bound token.
fn with_client_auth(
    kind: AuthKind,
    spec: &AuthSpec,
    required: &'static [&'static str],
    optional: &'static [&'static str],
) -> (Vec<&'static str>, Vec<&'static str>) {
    let mut required = required.to_vec();
    let mut optional = optional.to_vec();
    let oauth = matches!(
        kind,
        AuthKind::Oauth2RefreshToken | AuthKind::Oauth2ClientCredentials
    );
    if oauth
        && spec
            .client_auth
            .as_ref()
            .is_some_and(|c| c.value == ClientAuth::PrivateKeyJwt)
    {
        required.retain(|name| *name != "client_secret");
        required.push("private_key");
        optional.extend(["key_id", "claims", "jwt_algorithm"]);
    }
    // Not the refresh grant: a refresh token Okta binds to a DPoP key must be refreshed with
    // that key, and every token request here makes a new one.
    if matches!(
        kind,
        AuthKind::Oauth2ClientCredentials | AuthKind::Oauth2JwtBearer
    ) {
        optional.push("dpop");
    }
    (required, optional)
}

/// The line of every field set in the block.
fn set_fields(spec: &AuthSpec) -> Vec<(&'static str, u64)> {
    let text = |name: &'static str, field: &Option<Text>| {
        field.as_ref().map(|t| (name, t.referenced.line()))
    };
    let mut set: Vec<(&'static str, u64)> = [
        text("header", &spec.header),
        text("param", &spec.param),
        text("value", &spec.value),
        text("username", &spec.username),
        text("password", &spec.password),
        text("token", &spec.token),
        text("token_url", &spec.token_url),
        text("client_id", &spec.client_id),
        text("client_secret", &spec.client_secret),
        text("refresh_token", &spec.refresh_token),
        text("scope", &spec.scope),
        text("grant_type", &spec.grant_type),
        text("issuer", &spec.issuer),
        text("subject", &spec.subject),
        text("audience", &spec.audience),
        text("private_key", &spec.private_key),
        text("key_id", &spec.key_id),
        text("expires_in", &spec.expires_in),
        text("expires_at", &spec.expires_at),
        text("exchange", &spec.exchange.as_ref().map(|e| e.url.clone())),
        text("secret", &spec.secret),
        text("string_to_sign", &spec.string_to_sign),
        text("date_header", &spec.date_header),
        text("rejected", &spec.rejected),
        text("token_rejected", &spec.token_rejected),
    ]
    .into_iter()
    .flatten()
    .collect();
    let line = |at: &serde_saphyr::Location| at.line();
    set.extend(
        [
            (
                "client_auth",
                spec.client_auth.as_ref().map(|c| line(&c.referenced)),
            ),
            (
                "token_body",
                spec.token_body.as_ref().map(|c| line(&c.referenced)),
            ),
            (
                "lifetime_s",
                spec.lifetime_s.as_ref().map(|c| line(&c.referenced)),
            ),
            ("dpop", spec.dpop.as_ref().map(|c| line(&c.referenced))),
            ("jti", spec.jti.as_ref().map(|c| line(&c.referenced))),
            (
                "jwt_algorithm",
                spec.jwt_algorithm.as_ref().map(|c| line(&c.referenced)),
            ),
            (
                "default_lifetime_s",
                spec.default_lifetime_s
                    .as_ref()
                    .map(|c| line(&c.referenced)),
            ),
            (
                "algorithm",
                spec.algorithm.as_ref().map(|c| line(&c.referenced)),
            ),
            (
                "date_format",
                spec.date_format.as_ref().map(|c| line(&c.referenced)),
            ),
            (
                "encoding",
                spec.encoding.as_ref().map(|c| line(&c.referenced)),
            ),
        ]
        .into_iter()
        .filter_map(|(name, at)| Some((name, at?))),
    );
    set.extend(
        spec.token_params
            .values()
            .next()
            .map(|t| ("token_params", t.referenced.line())),
    );
    set.extend(
        spec.keep
            .values()
            .next()
            .map(|t| ("keep", t.referenced.line())),
    );
    set.extend(
        spec.claims
            .values()
            .next()
            .map(|t| ("claims", t.referenced.line())),
    );
    set.extend(
        spec.credentials
            .as_ref()
            .map(|list| ("credentials", list.referenced.line())),
    );
    set
}

/// The auth block, and its `rejected` (when an answer means the credential was refused).
pub(super) fn compile_auth(
    spec: &AuthSpec,
    c: &mut FileCompiler<'_>,
) -> Option<(Auth, Option<Expression>)> {
    let kind = spec.kind.value;
    if !fields_fit_kind(spec, "auth", c) {
        return None;
    }
    let rejected = match &spec.rejected {
        Some(text) => Some(c.expression(text, "auth.rejected")?),
        None => None,
    };
    let auth = match kind {
        AuthKind::None
        | AuthKind::Header
        | AuthKind::Query
        | AuthKind::Basic
        | AuthKind::Bearer => compile_static(spec, "auth", c)?,
        AuthKind::Oauth2RefreshToken
        | AuthKind::Oauth2ClientCredentials
        | AuthKind::Oauth2JwtBearer => {
            let source = TokenSource::OAuth2(compile_oauth(spec, kind, c)?);
            Auth::Token(Box::new(token_auth(spec, source, c)?))
        }
        AuthKind::TokenExchange => {
            let source = TokenSource::Exchange(compile_exchange(spec, c)?);
            Auth::Token(Box::new(token_auth(spec, source, c)?))
        }
        AuthKind::HmacSignature => Auth::Signed(Box::new(compile_signed(spec, c)?)),
        AuthKind::Body => Auth::Body {
            credentials: compile_body_credentials(spec.credentials.as_ref()?, c)?,
        },
    };
    Some((auth, rejected))
}

/// A resource's own `auth` (`at`: `resources.<r>.<m>.auth`): a static credential its calls
/// carry instead of the file's (a SCIM token beside the REST one, the same token under another
/// scheme). Only the static kinds: a token's lifecycle (obtained, cached, renewed, written
/// back) and a signature are the file's, and `rejected` reads the provider's answers, which the
/// file's `auth.rejected` already says for every call.
pub(super) fn compile_resource_auth(
    spec: &AuthSpec,
    at: &str,
    c: &mut FileCompiler<'_>,
) -> Option<Auth> {
    let kind = spec.kind.value;
    if !matches!(
        kind,
        AuthKind::None | AuthKind::Header | AuthKind::Query | AuthKind::Basic | AuthKind::Bearer
    ) {
        c.error_at(
            &spec.kind,
            at,
            &format!(
                "a resource's own auth is `header`, `query`, `basic`, `bearer` or `none`, not `{}`: tokens, signatures and body credentials are the file's `auth`",
                kind_label(kind)
            ),
        );
        return None;
    }
    if let Some(rejected) = &spec.rejected {
        c.error_at(
            rejected,
            &format!("{at}.rejected"),
            "is the file's: `auth.rejected` says for every call when an answer refuses a credential",
        );
        return None;
    }
    if !fields_fit_kind(spec, at, c) {
        return None;
    }
    compile_static(spec, at, c)
}

/// Whether every field set is one the kind uses and every field it needs is set (each problem
/// reported, under `at`).
fn fields_fit_kind(spec: &AuthSpec, at: &str, c: &mut FileCompiler<'_>) -> bool {
    let kind = spec.kind.value;
    let label = kind_label(kind);
    let (required, optional) = fields_of(kind);
    let (required, optional) = with_client_auth(kind, spec, required, optional);
    let set = set_fields(spec);
    let mut ok = true;
    for (name, line) in &set {
        if !required.contains(name) && !optional.contains(name) {
            c.error_line(
                *line,
                &format!("{at}.{name}"),
                &format!("is not used by auth kind `{label}`"),
            );
            ok = false;
        }
    }
    for name in required {
        if !set.iter().any(|(found, _)| *found == name) {
            c.error_at(
                &spec.kind,
                at,
                &format!("auth kind `{label}` needs `{name}`"),
            );
            ok = false;
        }
    }
    ok
}

/// The static kinds: a credential rendered from the account context.
fn compile_static(spec: &AuthSpec, at: &str, c: &mut FileCompiler<'_>) -> Option<Auth> {
    let mut template = |field: &Option<Text>, name: &str| {
        field
            .as_ref()
            .and_then(|text| c.template(text, &format!("{at}.{name}")))
    };
    Some(match spec.kind.value {
        AuthKind::Header => {
            let value = template(&spec.value, "value")?;
            let header = spec.header.as_ref()?;
            if !is_token(&header.value) {
                c.error_at(
                    header,
                    &format!("{at}.header"),
                    "is not a valid HTTP header name",
                );
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
        AuthKind::None => Auth::None,
        _ => return None,
    })
}

/// `body`'s credentials: one template or more, each reading the context (a fixed text is no
/// account's secret).
fn compile_body_credentials(
    list: &Spanned<Vec<Text>>,
    c: &mut FileCompiler<'_>,
) -> Option<Vec<Template>> {
    if list.value.is_empty() {
        c.error_at(
            list,
            "auth.credentials",
            "names no credential: list the context values the body carries (`{{context.api_key}}`)",
        );
        return None;
    }
    let mut templates = Vec::new();
    let mut ok = true;
    for (index, text) in list.value.iter().enumerate() {
        let field = format!("auth.credentials[{index}]");
        match c.template(text, &field) {
            Some(template) if template.context_paths().next().is_none() => {
                c.error_at(
                    text,
                    &field,
                    "must read the account's context (`{{context.api_key}}`)",
                );
                ok = false;
            }
            Some(template) => templates.push(template),
            None => ok = false,
        }
    }
    ok.then_some(templates)
}

/// `text` with each `{{name}}` of `names` replaced by its stand-in, compiled as a template;
/// `None` (after an error naming the field) when it does not compile.
fn template_with(
    text: &Text,
    path: &str,
    names: &[(&str, &str)],
    c: &mut FileCompiler<'_>,
) -> Option<Template> {
    let mut source = text.value.clone();
    for (name, stand_in) in names {
        source = source.replace(&format!("{{{{{name}}}}}"), stand_in);
    }
    let replaced = Text {
        value: source,
        referenced: text.referenced,
        defined: text.defined,
    };
    c.template(&replaced, path)
}

fn compile_signed(spec: &AuthSpec, c: &mut FileCompiler<'_>) -> Option<SignedAuth> {
    // Every field is checked before giving up, so one run of `check` names every problem.
    let secret = c.template(spec.secret.as_ref()?, "auth.secret");
    let string_to_sign = template_with(
        spec.string_to_sign.as_ref()?,
        "auth.string_to_sign",
        &[
            ("date", SIGNING_DATE),
            ("method", SIGNING_METHOD),
            ("host", SIGNING_HOST),
            ("path", SIGNING_PATH),
            ("query", SIGNING_QUERY),
        ],
        c,
    );
    let date_header = match &spec.date_header {
        Some(header) if !is_token(&header.value) => {
            c.error_at(
                header,
                "auth.date_header",
                "is not a valid HTTP header name",
            );
            return None;
        }
        Some(header) => Some(header.value.clone()),
        None => None,
    };
    let output = match (&spec.username, &spec.header, &spec.value) {
        (Some(username), None, None) => SignatureOutput::Basic {
            username: c.template(username, "auth.username")?,
        },
        (None, header, Some(value)) => {
            let name = match header {
                Some(header) if !is_token(&header.value) => {
                    c.error_at(header, "auth.header", "is not a valid HTTP header name");
                    return None;
                }
                Some(header) => header.value.clone(),
                None => "Authorization".to_owned(),
            };
            let compiled = template_with(value, "auth.value", &[("signature", SIGNATURE)], c)?;
            if value.value.matches("{{signature}}").count() != 1 {
                c.error_at(
                    value,
                    "auth.value",
                    "must read `{{signature}}` exactly once",
                );
                return None;
            }
            SignatureOutput::Header {
                name,
                value: compiled,
            }
        }
        _ => {
            c.error_at(
                &spec.kind,
                "auth",
                "auth kind `hmac_signature` sends the signature either as Basic auth (`username`) or in a header (`value` reading `{{signature}}`, optional `header`), one of the two",
            );
            return None;
        }
    };
    Some(SignedAuth {
        secret: secret?,
        algorithm: spec.algorithm.as_ref().map(|a| a.value).unwrap_or_default(),
        string_to_sign: string_to_sign?,
        date_header,
        date_format: spec
            .date_format
            .as_ref()
            .map(|f| f.value)
            .unwrap_or_default(),
        encoding: spec.encoding.as_ref().map(|e| e.value).unwrap_or_default(),
        output,
    })
}

/// How a token is sent: `header` (default `Authorization`) and `value` (default `Bearer
/// {{token}}`), which must read `{{token}}` exactly once.
fn token_auth(spec: &AuthSpec, source: TokenSource, c: &mut FileCompiler<'_>) -> Option<TokenAuth> {
    let header = match &spec.header {
        Some(header) if !is_token(&header.value) => {
            c.error_at(header, "auth.header", "is not a valid HTTP header name");
            return None;
        }
        Some(header) => header.value.clone(),
        None => "Authorization".to_owned(),
    };
    let value = match &spec.value {
        Some(text) => {
            let value = c.template(text, "auth.value")?;
            if value.token_count() != 1 {
                c.error_at(
                    text,
                    "auth.value",
                    "must read `{{token}}` exactly once (e.g. `Bearer {{token}}`)",
                );
                return None;
            }
            value
        }
        None => Template::compile("Bearer {{token}}").expect("a constant template compiles"),
    };
    let mut keep = Vec::new();
    let mut ok = true;
    for (key, text) in &spec.keep {
        let field = format!("auth.keep.{key}");
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !plain || KEPT_BY_THE_GATEWAY.contains(&key.as_str()) {
            c.error_at(
                text,
                &field,
                "must name a plain context key other than the token's own (access_token, access_token_expires_at, access_token_dpop_key)",
            );
            ok = false;
            continue;
        }
        match c.expression(text, &field) {
            Some(expression) => keep.push((key.clone(), expression)),
            None => ok = false,
        }
    }
    let token_rejected = match &spec.token_rejected {
        Some(text) => match c.expression(text, "auth.token_rejected") {
            Some(when) => Some(super::CredentialRefusal {
                reads: super::ProbeReads::of(&when),
                when,
            }),
            None => {
                ok = false;
                None
            }
        },
        None => None,
    };
    if !ok {
        return None;
    }
    Some(TokenAuth {
        source,
        header,
        default_value: spec.value.is_none(),
        value,
        keep,
        token_rejected,
    })
}

fn compile_oauth(spec: &AuthSpec, kind: AuthKind, c: &mut FileCompiler<'_>) -> Option<OAuth2> {
    let grant = match kind {
        AuthKind::Oauth2RefreshToken => Grant::RefreshToken,
        AuthKind::Oauth2ClientCredentials => Grant::ClientCredentials,
        _ => Grant::JwtBearer,
    };
    let mut optional = |field: &Option<Text>, name: &str| -> Result<Option<Template>, ()> {
        match field {
            None => Ok(None),
            Some(text) => c
                .template(text, &format!("auth.{name}"))
                .map(Some)
                .ok_or(()),
        }
    };
    let token_url = optional(&spec.token_url, "token_url");
    let client_id = optional(&spec.client_id, "client_id");
    let client_secret = optional(&spec.client_secret, "client_secret");
    let refresh_token = optional(&spec.refresh_token, "refresh_token");
    let scope = optional(&spec.scope, "scope");
    let grant_type = optional(&spec.grant_type, "grant_type");
    let issuer = optional(&spec.issuer, "issuer");
    let subject = optional(&spec.subject, "subject");
    let audience = optional(&spec.audience, "audience");
    let private_key = optional(&spec.private_key, "private_key");
    let key_id = optional(&spec.key_id, "key_id");
    let token_params: Vec<(String, Template)> = spec
        .token_params
        .iter()
        .filter_map(|(name, value)| {
            c.template(value, &format!("auth.token_params.{name}"))
                .map(|template| (name.clone(), template))
        })
        .collect();
    if token_params.len() != spec.token_params.len() {
        return None;
    }
    // The jwt-bearer grant writes the file's `scope` into its assertion; a client assertion
    // leaves scope to the form, so a provider wanting one in the assertion (NetSuite) names it.
    let written: &[&str] = match grant {
        Grant::JwtBearer => &["iss", "sub", "aud", "iat", "exp", "jti", "scope"],
        _ => &["iss", "sub", "aud", "iat", "exp", "jti"],
    };
    let mut claims = Vec::new();
    for (name, value) in &spec.claims {
        let field = format!("auth.claims.{name}");
        if written.contains(&name.as_str()) {
            c.error_at(
                value,
                &field,
                &format!("is a claim the gateway writes ({})", written.join(", ")),
            );
            return None;
        }
        claims.push((name.clone(), c.template(value, &field)?));
    }
    let algorithm = spec
        .jwt_algorithm
        .as_ref()
        .map(|a| a.value)
        .unwrap_or_default();
    let client_auth = spec
        .client_auth
        .as_ref()
        .map(|c| c.value)
        .unwrap_or_default();
    if grant == Grant::JwtBearer
        && let Some(at) = spec
            .client_auth
            .as_ref()
            .filter(|c| c.value == ClientAuth::PrivateKeyJwt)
    {
        c.error_at(
            at,
            "auth.client_auth",
            "`private_key_jwt` is for oauth2_client_credentials and oauth2_refresh_token (the jwt-bearer grant's `private_key` signs its assertion)",
        );
        return None;
    }
    let client_key = match client_auth {
        ClientAuth::PrivateKeyJwt => Some(ClientKey {
            private_key: private_key.clone().ok()??,
            key_id: key_id.clone().ok()?,
            algorithm,
            claims: std::mem::take(&mut claims),
        }),
        _ => None,
    };
    let assertion = match grant {
        Grant::JwtBearer => Some(JwtAssertion {
            issuer: issuer.ok()??,
            subject: subject.ok()?,
            audience: audience.ok()?,
            private_key: private_key.ok()??,
            algorithm,
            lifetime_s: spec
                .lifetime_s
                .as_ref()
                .map_or(DEFAULT_ASSERTION_LIFETIME_S, |l| l.value),
            key_id: key_id.ok()?,
            claims,
            jti: spec.jti.as_ref().is_some_and(|j| j.value),
        }),
        _ => None,
    };
    Some(OAuth2 {
        grant,
        grant_type: grant_type.ok()?.unwrap_or_else(|| {
            Template::compile(grant.grant_type()).expect("a constant template compiles")
        }),
        token_url: token_url.ok()??,
        client_id: client_id.ok()?,
        client_secret: client_secret.ok()?,
        refresh_token: refresh_token.ok()?,
        scope: scope.ok()?,
        client_auth,
        body: spec
            .token_body
            .as_ref()
            .map(|b| b.value)
            .unwrap_or_default(),
        token_params,
        assertion,
        client_key,
        dpop: spec.dpop.as_ref().is_some_and(|d| d.value),
    })
}

fn compile_exchange(spec: &AuthSpec, c: &mut FileCompiler<'_>) -> Option<Exchange> {
    let exchange = spec.exchange.as_ref()?;
    let mut fields = |map: &std::collections::BTreeMap<String, Text>, what: &str| {
        let compiled: Vec<(String, Template)> = map
            .iter()
            .filter_map(|(name, value)| {
                c.template(value, &format!("auth.exchange.{what}.{name}"))
                    .map(|template| (name.clone(), template))
            })
            .collect();
        (compiled.len() == map.len()).then_some(compiled)
    };
    let headers = fields(&exchange.headers, "headers")?;
    let body = match (&exchange.json, &exchange.form) {
        (Some(_), Some(_)) => {
            c.error_at(
                &exchange.url,
                "auth.exchange",
                "takes `json` or `form`, not both",
            );
            return None;
        }
        (Some(json), None) => match JsonTemplate::compile(json) {
            Ok(json) => ExchangeBody::Json(json),
            Err(problem) => {
                c.error_at(
                    &exchange.url,
                    "auth.exchange.json",
                    &format!("bad template: {problem}"),
                );
                return None;
            }
        },
        (None, Some(form)) => ExchangeBody::Form(fields(form, "form")?),
        (None, None) => ExchangeBody::None,
    };
    let url = c.template(&exchange.url, "auth.exchange.url")?;
    let absolute = exchange.url.value.starts_with("https://")
        || exchange.url.value.starts_with("http://")
        || exchange.url.value.starts_with("{{");
    if !absolute && !exchange.url.value.starts_with('/') {
        c.error_at(
            &exchange.url,
            "auth.exchange.url",
            "must be an absolute URL or a path starting with `/` (on the account's base URL origin)",
        );
        return None;
    }
    let basic = match &exchange.basic {
        None => None,
        Some(basic) => Some((
            c.template(&basic.username, "auth.exchange.basic.username")?,
            c.template(&basic.password, "auth.exchange.basic.password")?,
        )),
    };
    let jwt = match &exchange.jwt {
        None => None,
        Some(jwt) => {
            if exchange.basic.is_some()
                || exchange
                    .headers
                    .keys()
                    .any(|name| name.eq_ignore_ascii_case("authorization"))
            {
                c.error_at(
                    &jwt.issuer,
                    "auth.exchange.jwt",
                    "is sent as the Authorization header, which `basic` or `headers` already sets",
                );
                return None;
            }
            let lifetime_s = jwt
                .lifetime_s
                .as_ref()
                .map_or(DEFAULT_EXCHANGE_JWT_LIFETIME_S, |l| l.value);
            if lifetime_s == 0 {
                c.error_at(
                    &jwt.issuer,
                    "auth.exchange.jwt.lifetime_s",
                    "must be at least one second",
                );
                return None;
            }
            Some(ExchangeJwt {
                issuer: c.template(&jwt.issuer, "auth.exchange.jwt.issuer")?,
                private_key: c.template(&jwt.private_key, "auth.exchange.jwt.private_key")?,
                lifetime_s,
            })
        }
    };
    let token = c.expression(spec.token.as_ref()?, "auth.token");
    let expires_in = c.optional_expression(spec.expires_in.as_ref(), "auth.expires_in");
    let expires_at = c.optional_expression(spec.expires_at.as_ref(), "auth.expires_at");
    Some(Exchange {
        method: exchange.method.unwrap_or(HttpMethod::Post),
        url,
        headers,
        body,
        basic,
        jwt,
        token: token?,
        expires_in: expires_in.ok()?,
        expires_at: expires_at.ok()?,
        default_lifetime_s: spec
            .default_lifetime_s
            .as_ref()
            .map_or(DEFAULT_EXCHANGE_LIFETIME_S, |l| l.value),
    })
}
