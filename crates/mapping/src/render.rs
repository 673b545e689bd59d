//! The pure stages around a provider call: `render_request` and `render_credential` (account →
//! the provider request's fixed parts), `map_query` (unified query → provider query) and
//! `map_response` (provider record → unified record), and `sign_request` for integrations
//! whose every request carries an HMAC over it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::{Map, Value};
use unigate_unified::Secret;

use crate::doc::Doc;
use crate::expression::{EvalError, Scope};
use crate::integration::{
    Auth, Exchange, ExchangeBody, Grant, Integration, OAuth2, Resource, SIGNATURE, SIGNING_DATE,
    SIGNING_HOST, SIGNING_METHOD, SIGNING_PATH, SIGNING_QUERY, SignatureOutput, TokenSource,
    UnifiedMethod,
};
use crate::spec::{
    ClientAuth, HmacAlgorithm, HttpMethod, JwtAlgorithm, SignatureEncoding, SigningDateFormat,
    TokenBody,
};
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
    /// Credentials the request body carries (auth kind `body`): nothing to add to a request.
    Body,
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
    /// A signature to compute for each request ([`sign_request`]).
    Signed(Box<RenderedSigning>),
}

/// `hmac_signature` with the account's values in: what remains is the request's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedSigning {
    secret: Secret,
    algorithm: HmacAlgorithm,
    string_to_sign: String,
    date_header: Option<String>,
    date_format: SigningDateFormat,
    encoding: SignatureEncoding,
    output: RenderedOutput,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RenderedOutput {
    Basic { username: String },
    Header { name: String, value: String },
}

/// The request as a signature covers it.
#[derive(Debug, Clone, Copy)]
pub struct SignedParts<'a> {
    /// Upper case: `GET`.
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    /// Every query parameter as sent (credential parameters included), decoded.
    pub query: &'a [(&'a str, &'a str)],
    /// Seconds since the epoch.
    pub now: i64,
}

/// RFC 3986's unreserved characters stay; everything else is escaped (OAuth 1.0's rule, which
/// Duo's canonical query follows: a space is `%20`, never `+`).
const UNRESERVED: &AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `key=value` pairs escaped as `UNRESERVED`, sorted by key then value, joined with `&`.
pub fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(key, value)| {
            (
                utf8_percent_encode(key, UNRESERVED).to_string(),
                utf8_percent_encode(value, UNRESERVED).to_string(),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn signing_date(format: SigningDateFormat, now: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(now.max(0) as u64);
    match format {
        SigningDateFormat::Http => httpdate::fmt_http_date(time),
        // HTTP's date fields with RFC 2822's zone for UTC, `-0000`, as Python's
        // `email.utils.formatdate()` writes it (Duo's reference client).
        SigningDateFormat::Rfc2822 => httpdate::fmt_http_date(time).replace(" GMT", " -0000"),
        SigningDateFormat::Rfc3339 => unigate_unified::time::format_rfc3339(now * 1000),
        SigningDateFormat::Unix => now.to_string(),
    }
}

fn hmac(algorithm: HmacAlgorithm, key: &[u8], message: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    fn digest<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
            .expect("HMAC takes a key of any length");
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }
    match algorithm {
        HmacAlgorithm::Sha1 => digest::<Hmac<sha1::Sha1>>(key, message),
        HmacAlgorithm::Sha256 => digest::<Hmac<sha2::Sha256>>(key, message),
        HmacAlgorithm::Sha512 => digest::<Hmac<sha2::Sha512>>(key, message),
    }
}

/// The headers that sign one request: the signing time's header (when the mapping names one)
/// and the signature's. The signature is a secret (it authorises this request).
pub fn sign_request(signing: &RenderedSigning, parts: SignedParts<'_>) -> Vec<(String, Secret)> {
    let date = signing_date(signing.date_format, parts.now);
    let message = signing
        .string_to_sign
        .replace(SIGNING_DATE, &date)
        .replace(SIGNING_METHOD, parts.method)
        .replace(SIGNING_HOST, &parts.host.to_ascii_lowercase())
        .replace(SIGNING_PATH, parts.path)
        .replace(SIGNING_QUERY, &canonical_query(parts.query));
    let mac = hmac(
        signing.algorithm,
        signing.secret.expose().as_bytes(),
        message.as_bytes(),
    );
    let signature = match signing.encoding {
        SignatureEncoding::Hex => mac.iter().map(|byte| format!("{byte:02x}")).collect(),
        SignatureEncoding::Base64 => STANDARD.encode(&mac),
    };
    let mut headers = Vec::new();
    if let Some(name) = &signing.date_header {
        headers.push((name.clone(), Secret::new(date)));
    }
    headers.push(match &signing.output {
        RenderedOutput::Basic { username } => {
            ("Authorization".to_owned(), basic(username, &signature))
        }
        RenderedOutput::Header { name, value } => (
            name.clone(),
            Secret::new(value.replace(SIGNATURE, &signature)),
        ),
    });
    headers
}

/// A token-based credential, rendered from the account context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedToken {
    pub source: RenderedSource,
    pub header: String,
    /// The header value's text before and after the token.
    prefix: String,
    suffix: String,
    /// The file names no `value`: the scheme follows the token (`Bearer`, or `DPoP`).
    default_value: bool,
}

impl RenderedToken {
    /// The header value that carries `token`.
    pub fn header_value(&self, token: &Secret) -> Secret {
        Secret::new(format!("{}{}{}", self.prefix, token.expose(), self.suffix))
    }

    /// The header value for `token`, `bound` when the server bound it to a DPoP key: then it
    /// goes as `DPoP <token>` unless the file says otherwise (RFC 9449 §7.1).
    pub fn header_value_for(&self, token: &Secret, bound: bool) -> Secret {
        match bound && self.default_value {
            true => Secret::new(format!("DPoP {}", token.expose())),
            false => self.header_value(token),
        }
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
    pub assertion: Option<Box<RenderedAssertion>>,
    /// `client_auth: private_key_jwt`: how the client assertion is made.
    pub client_key: Option<RenderedClientKey>,
    pub dpop: bool,
}

/// A client assertion's key, its `kid` (none when the account names none), how it signs and
/// the provider's own claims, rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedClientKey {
    pub private_key: Secret,
    pub key_id: Option<String>,
    pub algorithm: JwtAlgorithm,
    pub claims: Vec<(String, String)>,
}

/// A JWT bearer assertion's claims and key, rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedAssertion {
    pub issuer: String,
    pub subject: Option<String>,
    pub audience: String,
    pub private_key: Secret,
    pub algorithm: JwtAlgorithm,
    pub lifetime_s: u64,
    pub key_id: Option<String>,
    pub claims: Vec<(String, String)>,
    pub jti: bool,
}

/// A login call, rendered: everything in it is treated as a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedExchange {
    pub method: HttpMethod,
    pub url: String,
    pub headers: Vec<(String, Secret)>,
    /// Content type and body.
    pub body: Option<(&'static str, Secret)>,
    /// The JWT to sign for the call (`exchange.jwt`), sent as its bearer credential.
    pub jwt: Option<RenderedExchangeJwt>,
}

/// `exchange.jwt` with the account's values: signed when the call is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedExchangeJwt {
    pub issuer: String,
    pub private_key: Secret,
    pub lifetime_s: u64,
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
    /// Base URL + each pass's own path (`None`: the resource's), in the resource's pass order;
    /// an error where the path reads an optional key the account lacks (a pass made only with a
    /// flag may need a key only flagged accounts have: the error counts only if it is walked).
    pub pass_urls: Vec<Result<Option<String>, RenderError>>,
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
/// `path` on the origin (scheme, host, port; no user info) of the absolute URL `base`; as text
/// when `base` does not parse, for the caller's absolute-URL check to refuse.
/// `relative` (`../oauth2/token`) resolved against `base` as RFC 3986 says; `base` is read as a
/// directory (`…/scim/v2` is `…/scim/v2/`), so `..` climbs out of its last segment.
fn beside(base: &str, relative: &str) -> String {
    let directory = match base.ends_with('/') {
        true => base.to_owned(),
        false => format!("{base}/"),
    };
    url::Url::parse(&directory)
        .and_then(|base| base.join(relative))
        .map_or_else(|_| relative.to_owned(), String::from)
}

fn on_origin_of(base: &str, path: &str) -> String {
    match url::Url::parse(base) {
        Ok(base) if base.has_host() => format!("{}{path}", base.origin().ascii_serialization()),
        _ => format!("{}{path}", origin_of(base)),
    }
}

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

/// The parts of a resource's request that do not change from page to page: URL (the resource's
/// own base URL, else the account's, else the integration's), static query and headers.
/// `vars.id` fills `{{id}}`.
pub fn render_request(
    integration: &Integration,
    resource: &Resource,
    vars: Vars<'_>,
    base_url_override: Option<&str>,
) -> Result<RenderedRequest, RenderError> {
    let base = base_of(integration, resource, vars, base_url_override)?;
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
    let pass_urls = resource
        .passes
        .iter()
        .map(|pass| {
            // A pass over a catalog has a URL per catalog record (`render_pass_url`).
            if pass.over.is_some() {
                return Ok(Ok(None));
            }
            let url: Result<Option<String>, RenderError> = pass
                .path
                .as_ref()
                .map(|path| Ok(format!("{base}{}", path.render_with(vars, escape_segment)?)))
                .transpose();
            match url {
                Err(error) if !error.optional_absent => Err(error),
                url => Ok(url),
            }
        })
        .collect::<Result<Vec<_>, RenderError>>()?;
    let (query, secret_query) = render_pairs(&resource.query, vars)?;
    let header_vars = Vars {
        id: None,
        token: None,
        ..vars
    };
    let (mut headers, mut secret_headers) = render_pairs(&integration.headers, header_vars)?;
    let (own, own_secret) = render_pairs(&resource.headers, header_vars)?;
    let own_names = own.iter().map(|(name, _)| name);
    for name in own_names.chain(own_secret.iter().map(|(name, _)| name)) {
        headers.retain(|(have, _)| !have.eq_ignore_ascii_case(name));
        secret_headers.retain(|(have, _)| !have.eq_ignore_ascii_case(name));
    }
    headers.extend(own);
    secret_headers.extend(own_secret);
    Ok(RenderedRequest {
        method: resource.method,
        url,
        query,
        secret_query,
        headers,
        secret_headers,
        continue_url,
        pass_urls,
    })
}

/// The URL of pass `pass` of `resource` for one catalog record (`vars.id`, its id): the pass
/// `over` a catalog has a path of its own that reads it.
pub fn render_pass_url(
    integration: &Integration,
    resource: &Resource,
    pass: usize,
    vars: Vars<'_>,
    base_url_override: Option<&str>,
) -> Result<String, RenderError> {
    let base = base_of(integration, resource, vars, base_url_override)?;
    let path = match resource
        .passes
        .get(pass)
        .and_then(|pass| pass.path.as_ref())
    {
        Some(path) => path,
        None => &resource.path,
    };
    Ok(format!(
        "{}{}",
        base.trim_end_matches('/'),
        path.render_with(vars, escape_segment)?
    ))
}

/// The base URL of a resource's calls: its own, else the account's, else the integration's.
fn base_of(
    integration: &Integration,
    resource: &Resource,
    vars: Vars<'_>,
    base_url_override: Option<&str>,
) -> Result<String, RenderError> {
    Ok(match (&resource.base_url, base_url_override) {
        (Some(own), _) => own.render_url(vars.context)?,
        (None, Some(base)) => base.to_owned(),
        (None, None) => integration.base_url.render_url(vars.context)?,
    })
}

/// The credential a resource's own `auth` (a static kind) sends for the account, in place of
/// the integration's; `None` when the resource has none.
pub fn render_resource_credential(
    resource: &Resource,
    context: &Value,
) -> Result<Option<Credential>, RenderError> {
    match &resource.auth {
        Some(auth) => Ok(Some(
            render_static_credential(auth, context)?.unwrap_or(Credential::None),
        )),
        None => Ok(None),
    }
}

/// A static kind's credential, rendered from the context; `None` for the other kinds.
fn render_static_credential(
    auth: &Auth,
    context: &Value,
) -> Result<Option<Credential>, RenderError> {
    Ok(Some(match auth {
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
        Auth::Token(_) | Auth::Signed(_) | Auth::Body { .. } => return Ok(None),
    }))
}

/// The account's credential as its integration's `auth` says to send it. `base_url` (the
/// account's, else the integration's) anchors a login call given as a path.
pub fn render_credential(
    integration: &Integration,
    context: &Value,
    base_url_override: Option<&str>,
) -> Result<Credential, RenderError> {
    if let Some(credential) = render_static_credential(&integration.auth, context)? {
        return Ok(credential);
    }
    Ok(match &integration.auth {
        // Rendered above.
        Auth::None
        | Auth::Header { .. }
        | Auth::Query { .. }
        | Auth::Basic { .. }
        | Auth::Bearer { .. } => Credential::None,
        Auth::Body { .. } => Credential::Body,
        Auth::Token(token) => {
            // The value reads {{token}} once (checked at load): what surrounds it is fixed.
            const MARK: &str = "\u{0}token\u{0}";
            let vars = Vars {
                token: Some(MARK),
                ..Vars::context(context)
            };
            let value = token.value.render_with(vars, str::to_owned)?;
            let (prefix, suffix) = value.split_once(MARK).unwrap_or((&value, ""));
            let base = || match base_url_override {
                Some(base) => Ok(base.to_owned()),
                None => integration.base_url.render_url(context),
            };
            let source = match &token.source {
                TokenSource::OAuth2(oauth) => {
                    let mut rendered = render_oauth(oauth, context)?;
                    // A path relative to the base URL (`../oauth2/token`): the token endpoint
                    // sits beside the API under whatever path the deployment is served from
                    // (IdentityIQ's `/identityiq` or `/iiq`), resolved as RFC 3986 says.
                    let from_base = |url: &str| url.starts_with("./") || url.starts_with("../");
                    if from_base(&rendered.token_url) {
                        let base = base()?;
                        rendered.token_url = beside(&base, &rendered.token_url);
                        if let Some(assertion) = rendered.assertion.as_mut()
                            && from_base(&assertion.audience)
                        {
                            assertion.audience = beside(&base, &assertion.audience);
                        }
                    }
                    // A path: the token endpoint is on the account's own host (an Okta preview
                    // org or custom domain set as the account's base URL).
                    if rendered.token_url.starts_with('/') {
                        let base = base()?;
                        rendered.token_url = on_origin_of(&base, &rendered.token_url);
                        if let Some(assertion) = rendered.assertion.as_mut()
                            && assertion.audience.starts_with('/')
                        {
                            assertion.audience = on_origin_of(&base, &assertion.audience);
                        }
                    }
                    RenderedSource::OAuth2(rendered)
                }
                TokenSource::Exchange(exchange) => {
                    RenderedSource::Exchange(render_exchange(exchange, context, &base()?)?)
                }
            };
            Credential::Token(Box::new(RenderedToken {
                source,
                header: token.header.clone(),
                prefix: prefix.to_owned(),
                suffix: suffix.to_owned(),
                default_value: token.default_value,
            }))
        }
        Auth::Signed(signed) => Credential::Signed(Box::new(RenderedSigning {
            secret: Secret::new(signed.secret.render(context)?),
            algorithm: signed.algorithm,
            string_to_sign: signed.string_to_sign.render(context)?,
            date_header: signed.date_header.clone(),
            date_format: signed.date_format,
            encoding: signed.encoding,
            output: match &signed.output {
                SignatureOutput::Basic { username } => RenderedOutput::Basic {
                    username: username.render(context)?,
                },
                SignatureOutput::Header { name, value } => RenderedOutput::Header {
                    name: name.clone(),
                    value: value.render(context)?,
                },
            },
        })),
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
    // A scope, token parameter or client secret whose optional key the account lacks is not
    // sent at all (an empty `scope=` would ask for no scope): Qualtrics' client credentials,
    // with or without the account's own scope.
    let unless_absent = |rendered: Result<String, RenderError>| match rendered {
        Err(error) if error.optional_absent => Ok(None),
        other => other.map(Some),
    };
    let token_url = oauth.token_url.render_url(context)?;
    Ok(RenderedOAuth2 {
        grant: oauth.grant,
        grant_type: oauth.grant_type.render(context)?,
        client_id: optional(&oauth.client_id)?,
        // A public client (PKCE, no secret: PostHog's CIMD clients) sends its `client_id` alone
        // (RFC 6749 §6), whatever `client_auth` says for a client that has a secret.
        client_secret: oauth
            .client_secret
            .as_ref()
            .map(|secret| unless_absent(secret.render(context)))
            .transpose()?
            .flatten()
            .map(Secret::new),
        refresh_token: optional(&oauth.refresh_token)?.map(Secret::new),
        scope: oauth
            .scope
            .as_ref()
            .map(|scope| unless_absent(scope.render(context)))
            .transpose()?
            .flatten()
            .filter(|scope| !scope.is_empty()),
        client_auth: oauth.client_auth,
        body: oauth.body,
        token_params: oauth
            .token_params
            .iter()
            .filter_map(|(name, value)| {
                unless_absent(value.render(context))
                    .map(|rendered| rendered.map(|value| (name.clone(), Secret::new(value))))
                    .transpose()
            })
            .collect::<Result<_, RenderError>>()?,
        assertion: oauth
            .assertion
            .as_ref()
            .map(|assertion| {
                Ok::<_, RenderError>(Box::new(RenderedAssertion {
                    issuer: assertion.issuer.render(context)?,
                    subject: optional(&assertion.subject)?,
                    audience: optional(&assertion.audience)?.unwrap_or_else(|| token_url.clone()),
                    private_key: Secret::new(assertion.private_key.render(context)?),
                    algorithm: assertion.algorithm,
                    lifetime_s: assertion.lifetime_s,
                    key_id: render_key_id(assertion.key_id.as_ref(), context)?,
                    claims: render_claims(&assertion.claims, context)?,
                    jti: assertion.jti,
                }))
            })
            .transpose()?,
        client_key: oauth
            .client_key
            .as_ref()
            .map(|key| {
                Ok::<_, RenderError>(RenderedClientKey {
                    private_key: Secret::new(key.private_key.render(context)?),
                    key_id: render_key_id(key.key_id.as_ref(), context)?,
                    algorithm: key.algorithm,
                    claims: render_claims(&key.claims, context)?,
                })
            })
            .transpose()?,
        dpop: oauth.dpop,
        token_url,
    })
}

fn render_claims(
    claims: &[(String, Template)],
    context: &Value,
) -> Result<Vec<(String, String)>, RenderError> {
    claims
        .iter()
        .filter_map(|(name, value)| match value.render(context) {
            Err(error) if error.optional_absent => None,
            rendered => Some(rendered.map(|value| (name.clone(), value))),
        })
        .collect()
}

/// A JWT's `kid`: `{{context.key_id?}}` names none for an account whose key is the only one
/// (an absent or empty value sends no `kid`).
fn render_key_id(
    key_id: Option<&Template>,
    context: &Value,
) -> Result<Option<String>, RenderError> {
    match key_id.map(|kid| kid.render(context)) {
        Some(Err(error)) if error.optional_absent => Ok(None),
        other => Ok(other.transpose()?.filter(|kid| !kid.is_empty())),
    }
}

fn render_exchange(
    exchange: &Exchange,
    context: &Value,
    base_url: &str,
) -> Result<RenderedExchange, RenderError> {
    let url = exchange.url.render_url(context)?;
    let url = if url.starts_with('/') {
        on_origin_of(base_url, &url)
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
    let jwt = match &exchange.jwt {
        None => None,
        Some(jwt) => Some(RenderedExchangeJwt {
            issuer: jwt.issuer.render(context)?,
            private_key: Secret::new(jwt.private_key.render(context)?),
            lifetime_s: jwt.lifetime_s,
        }),
    };
    Ok(RenderedExchange {
        method: exchange.method,
        url,
        headers,
        body,
        jwt,
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
    /// The body expression's value has no XML form (`body_format: xml`).
    Body(String),
}

impl std::fmt::Display for MapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MapError::Eval { what, error } => write!(f, "`{what}` failed: {error}"),
            MapError::Shape { what, expected } => write!(f, "`{what}` must produce {expected}"),
            MapError::Body(reason) => write!(f, "`body` has no XML form: {reason}"),
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
    let record = crate::doc::exact_integers(record);
    match method
        .response_mapping
        .evaluate(&record, scope)
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
    let record = crate::doc::exact_integers(record);
    let defined = method.response_mapping.evaluate_json(&record, scope, out);
    check_mapped_json(defined, start, out)
}

/// [`map_response_json`] over a record parsed with only what the mapping reads
/// (`PageReads::record`); `whole` is the record's text, read whole when the JSONata engine maps it.
pub fn map_doc_response_json(
    method: &UnifiedMethod,
    doc: &Doc<'_>,
    whole: &str,
    scope: &Scope,
    out: &mut Vec<u8>,
) -> Result<(), MapError> {
    let start = out.len();
    let defined = method
        .response_mapping
        .evaluate_doc_json(doc, whole, scope, out);
    check_mapped_json(defined, start, out)
}

fn check_mapped_json(
    defined: Result<bool, EvalError>,
    start: usize,
    out: &mut Vec<u8>,
) -> Result<(), MapError> {
    let defined = defined.map_err(|error| MapError::Eval {
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
    /// A token URL written from the base URL climbs one segment per `..`, whatever path the
    /// deployment is served under, and keeps the base's origin.
    #[test]
    fn a_token_path_from_the_base_url_sits_beside_the_api() {
        use super::beside;
        let token = "../../oauth2/token";
        assert_eq!(
            beside("https://iiq.acme.example/identityiq/scim/v2", token),
            "https://iiq.acme.example/identityiq/oauth2/token"
        );
        assert_eq!(
            beside("https://iiq.acme.example:8443/iiq/scim/v2/", token),
            "https://iiq.acme.example:8443/iiq/oauth2/token"
        );
        // Never above the origin.
        assert_eq!(
            beside("https://iiq.acme.example/scim", token),
            "https://iiq.acme.example/oauth2/token"
        );
        assert_eq!(
            beside("https://iiq.acme.example/api/v1", "./token"),
            "https://iiq.acme.example/api/v1/token"
        );
    }

    /// Duo's published vectors (duo_client_python `tests/test_client.py`, `TestSign`): signature
    /// version 2 over four Unicode parameters, HMAC-SHA1 and HMAC-SHA512, as Basic auth.
    #[test]
    fn signs_duo_requests_as_its_reference_client_does() {
        let params = [
            (
                "\u{469a}\u{287b}\u{35d0}\u{8ef3}\u{6727}\u{502a}\u{0810}\u{d091}\u{c8}\u{c170}",
                "\u{0f45}\u{1a76}\u{341a}\u{654c}\u{c23f}\u{9b09}\u{abe2}\u{8343}\u{1b27}\u{60d0}",
            ),
            (
                "\u{7449}\u{7e4b}\u{ccfb}\u{59ff}\u{fe5f}\u{83b7}\u{adcc}\u{900c}\u{cfd1}\u{7813}",
                "\u{8db7}\u{5022}\u{92d3}\u{42ef}\u{207d}\u{8730}\u{acfe}\u{5617}\u{0946}\u{4e30}",
            ),
            (
                "\u{7470}\u{9314}\u{901c}\u{9eae}\u{40d8}\u{4201}\u{82d8}\u{8c70}\u{1d31}\u{a042}",
                "\u{17d9}\u{0ba8}\u{9358}\u{aadf}\u{a42a}\u{48be}\u{fb96}\u{6fe9}\u{b7ff}\u{32f3}",
            ),
            (
                "\u{c2c5}\u{2c1d}\u{2620}\u{3617}\u{96b3}F\u{8605}\u{20e8}\u{ac21}\u{5934}",
                "\u{fba9}\u{41aa}\u{bd83}\u{840b}\u{2615}\u{3e6e}\u{652d}\u{a8b5}\u{d56b}U",
            ),
        ];
        let signing = |algorithm| RenderedSigning {
            secret: Secret::new("gtdfxv9YgVBYcF6dl2Eq17KUQJN2PLM2ODVTkvoT".to_owned()),
            algorithm,
            string_to_sign: format!(
                "{SIGNING_DATE}\n{SIGNING_METHOD}\n{SIGNING_HOST}\n{SIGNING_PATH}\n{SIGNING_QUERY}"
            ),
            date_header: Some("Date".to_owned()),
            date_format: SigningDateFormat::Rfc2822,
            encoding: SignatureEncoding::Hex,
            output: RenderedOutput::Basic {
                username: "test_ikey".to_owned(),
            },
        };
        let parts = SignedParts {
            method: "POST",
            host: "foO.BAr52.cOm",
            path: "/Foo/BaR2/qux",
            query: &params,
            // Fri, 07 Dec 2012 17:18:00 UTC
            now: 1_354_900_680,
        };
        let sent = |algorithm| -> Vec<(String, String)> {
            sign_request(&signing(algorithm), parts)
                .into_iter()
                .map(|(name, value)| (name, value.expose().to_owned()))
                .collect()
        };
        let basic = |signature: &str| {
            format!(
                "Basic {}",
                STANDARD.encode(format!("test_ikey:{signature}"))
            )
        };
        assert_eq!(
            sent(HmacAlgorithm::Sha1),
            [
                (
                    "Date".to_owned(),
                    "Fri, 07 Dec 2012 17:18:00 -0000".to_owned()
                ),
                (
                    "Authorization".to_owned(),
                    basic("f01811cbbf9561623ab45b893096267fd46a5178")
                ),
            ]
        );
        assert_eq!(
            sent(HmacAlgorithm::Sha512)[1].1,
            basic(
                "0508065035a03b2a1de2f453e629e791d180329e157f65df6b3e0f08299d4321e1c5c7a7c7ee6b9e5fc80d1fb6fbf3ad5eb7c44dd3b3985a02c37aca53ec3698"
            )
        );
    }

    #[test]
    fn canonical_queries_escape_all_but_unreserved_and_sort_by_key_then_value() {
        assert_eq!(
            canonical_query(&[("b", "2 3"), ("a", "z"), ("a", "y+x~"), ("c", "")]),
            "a=y%2Bx~&a=z&b=2%203&c="
        );
        assert_eq!(canonical_query(&[]), "");
    }

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
