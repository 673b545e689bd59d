//! The file format of `mappings/<integration>.yaml` (`docs/mapping-format.md`), as serde types.
//!
//! Unknown keys are errors. Expressions and templates are kept with their YAML location
//! ([`Spanned`]) so that compile errors can name the line.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;
pub use unigate_unified::JwtAlgorithm;

pub type Text = Spanned<String>;

/// An integration file. Fields a complete integration needs are optional here because a file
/// may `extends:` another one and inherit them; [`IntegrationSpec::extend`] merges, and compiling
/// reports whatever is still missing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationSpec {
    /// The id of the integration this one builds on (`extends: scim`).
    #[serde(default)]
    pub extends: Option<Text>,
    /// A base for a family of files (`extends:` it), never served itself: it need not be
    /// complete, is not compiled on its own and is not an integration. Not inherited.
    #[serde(default, rename = "abstract")]
    pub is_abstract: bool,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub docs: Option<Text>,
    #[serde(default)]
    pub base_url: Option<Text>,
    #[serde(default)]
    pub headers: BTreeMap<String, Text>,
    /// What request bodies and answers are written in: `json` (default) or `xml` (read into
    /// JSON and written from it by the convention in `xml.rs`).
    #[serde(default)]
    pub body_format: Option<Spanned<BodyFormat>>,
    #[serde(default)]
    pub auth: Option<AuthSpec>,
    #[serde(default)]
    pub pagination: Option<PaginationSpec>,
    #[serde(default)]
    pub errors: Option<ErrorsSpec>,
    #[serde(default)]
    pub rate_limit: Option<RateLimitSpec>,
    #[serde(default)]
    pub resources: BTreeMap<String, BTreeMap<String, ResourceSpec>>,
    #[serde(default)]
    pub unified: BTreeMap<String, BTreeMap<String, BTreeMap<String, UnifiedMethodSpec>>>,
    /// Versions of this file chosen per account (Airflow 2 or 3, a GitLab group or the instance).
    #[serde(default)]
    pub variants: Vec<VariantSpec>,
    /// The provider shut its service down: calls are answered without asking it.
    #[serde(default)]
    pub retired: Option<RetiredSpec>,
    /// What an account's context must hold beyond the keys the templates read (a `cloud` the
    /// file knows): an account that fails one is refused where accounts are checked.
    #[serde(default)]
    pub account_checks: Vec<AccountCheckSpec>,
}

/// One of `account_checks:`: JSONata over the account context that must give `true`, and what
/// the admin is told when it does not.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountCheckSpec {
    pub require: Text,
    pub message: Text,
}

/// `retired:` — when the provider's service stopped, and what a caller is told.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetiredSpec {
    /// The day the service stopped answering, `YYYY-MM-DD`.
    pub since: Text,
    /// One sentence for callers: who shut it down, what replaces it if anything.
    pub reason: Text,
}

/// A version of a mapping file for the accounts whose context `when` holds for: its `with` keys
/// are merged over the file as `extends` merges a file over its base.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    pub name: Text,
    /// JSONata over the account context; the first variant whose `when` is true applies.
    pub when: Text,
    pub with: Box<IntegrationSpec>,
}

impl IntegrationSpec {
    /// This file over its base: scalars and whole blocks (`auth`, `pagination`, `errors`, one
    /// resource method) replace the base's; maps (`headers`, `resources`, `unified`) merge key
    /// by key; a unified method merges field by field, so a child can override one expression.
    pub fn extend(self, base: &IntegrationSpec) -> IntegrationSpec {
        let mut headers = base.headers.clone();
        headers.extend(self.headers);
        let mut resources = base.resources.clone();
        for (name, methods) in self.resources {
            resources.entry(name).or_default().extend(methods);
        }
        let mut unified = base.unified.clone();
        for (model, model_resources) in self.unified {
            let model_entry = unified.entry(model).or_default();
            for (resource, methods) in model_resources {
                let resource_entry = model_entry.entry(resource).or_default();
                for (method, spec) in methods {
                    let merged = match resource_entry.remove(&method) {
                        Some(inherited) => spec.extend(inherited),
                        None => spec,
                    };
                    resource_entry.insert(method, merged);
                }
            }
        }
        IntegrationSpec {
            extends: self.extends,
            is_abstract: self.is_abstract,
            name: self.name.or_else(|| base.name.clone()),
            docs: self.docs.or_else(|| base.docs.clone()),
            base_url: self.base_url.or_else(|| base.base_url.clone()),
            headers,
            body_format: self.body_format.or_else(|| base.body_format.clone()),
            auth: self.auth.or_else(|| base.auth.clone()),
            pagination: self.pagination.or_else(|| base.pagination.clone()),
            errors: self.errors.or_else(|| base.errors.clone()),
            rate_limit: self.rate_limit.or_else(|| base.rate_limit.clone()),
            resources,
            unified,
            variants: if self.variants.is_empty() {
                base.variants.clone()
            } else {
                self.variants
            },
            retired: self.retired.or_else(|| base.retired.clone()),
            // Checks only narrow what an account may hold, so a child's add to its base's
            // (its own first, so their paths keep the child's numbering): a product of a family
            // with a check of its own still refuses a data-center domain the family does not serve.
            account_checks: self
                .account_checks
                .into_iter()
                .chain(base.account_checks.iter().cloned())
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    Header,
    Query,
    Basic,
    Bearer,
    /// OAuth 2.0 refresh-token grant: the gateway trades the refresh token for access tokens.
    Oauth2RefreshToken,
    /// OAuth 2.0 client-credentials grant.
    Oauth2ClientCredentials,
    /// OAuth 2.0 JWT bearer grant (RFC 7523): a signed assertion from a key in the context.
    Oauth2JwtBearer,
    /// A login call that turns credentials into a short-lived token.
    TokenExchange,
    /// Every request signed with an HMAC over a string built from the request (Duo).
    HmacSignature,
    /// Credentials the resource's `body` writes into every request (LastPass, Adaptive): nothing
    /// to send beside it, but a refusal still marks the account, and the values are secrets.
    Body,
    None,
}

/// `hmac_signature`: the digest of the HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HmacAlgorithm {
    Sha1,
    #[default]
    Sha256,
    Sha512,
}

/// `hmac_signature`: how the signing time is written (in the string to sign and its header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SigningDateFormat {
    /// `Tue, 21 Aug 2012 17:29:18 +0000` (RFC 2822).
    #[default]
    Rfc2822,
    /// `Tue, 21 Aug 2012 17:29:18 GMT` (HTTP's IMF-fixdate).
    Http,
    /// `2012-08-21T17:29:18Z`.
    Rfc3339,
    /// Seconds since the epoch.
    Unix,
}

/// `hmac_signature`: how the signature's bytes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SignatureEncoding {
    /// Lower-case hexadecimal.
    #[default]
    Hex,
    Base64,
}

/// How a token request's parameters are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TokenBody {
    /// `application/x-www-form-urlencoded` (RFC 6749).
    #[default]
    Form,
    /// A JSON object (Notion).
    Json,
}

/// The login call of `token_exchange`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeSpec {
    #[serde(default)]
    pub method: Option<HttpMethod>,
    /// An absolute URL, or a path (from `/`) on the origin of the account's base URL.
    pub url: Text,
    #[serde(default)]
    pub headers: BTreeMap<String, Text>,
    /// A JSON body: any YAML value, its strings templates (Tableau nests its credentials).
    #[serde(default)]
    pub json: Option<serde_json::Value>,
    /// A form body.
    #[serde(default)]
    pub form: Option<BTreeMap<String, Text>>,
    /// HTTP Basic credentials.
    #[serde(default)]
    pub basic: Option<BasicSpec>,
    /// A JWT signed with the account's key, sent as `Authorization: Bearer <jwt>` (a GitHub
    /// App asks for its installation token so).
    #[serde(default)]
    pub jwt: Option<ExchangeJwtSpec>,
}

/// The JWT of a login call: RS256 over `{iss, iat, exp}`, `iat` 30 s in the past (clocks drift:
/// GitHub refuses a JWT issued "in the future").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeJwtSpec {
    /// `iss` (a template: GitHub's app id or client id).
    pub issuer: Text,
    /// A PEM RSA private key (a template).
    pub private_key: Text,
    /// Seconds from `iat` to `exp` (default 600, GitHub's most).
    #[serde(default)]
    pub lifetime_s: Option<Spanned<u64>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicSpec {
    pub username: Text,
    pub password: Text,
}

/// How an OAuth client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `client_id` and `client_secret` in the form body.
    #[default]
    Body,
    /// HTTP Basic with `client_id:client_secret`.
    Basic,
    /// A JWT signed with the account's `private_key` (RFC 7523 §2.2), no secret: Okta's API
    /// service apps.
    PrivateKeyJwt,
}

/// Flat on purpose: one struct keeps YAML locations, and `compile` checks which fields each
/// kind needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    pub kind: Spanned<AuthKind>,
    #[serde(default)]
    pub header: Option<Text>,
    #[serde(default)]
    pub param: Option<Text>,
    #[serde(default)]
    pub value: Option<Text>,
    #[serde(default)]
    pub username: Option<Text>,
    #[serde(default)]
    pub password: Option<Text>,
    #[serde(default)]
    pub token: Option<Text>,
    #[serde(default)]
    pub token_url: Option<Text>,
    #[serde(default)]
    pub client_id: Option<Text>,
    #[serde(default)]
    pub client_secret: Option<Text>,
    #[serde(default)]
    pub refresh_token: Option<Text>,
    #[serde(default)]
    pub scope: Option<Text>,
    #[serde(default)]
    pub client_auth: Option<Spanned<ClientAuth>>,
    /// Extra form fields of the token request (templates), e.g. Auth0's `audience`.
    #[serde(default)]
    pub token_params: BTreeMap<String, Text>,
    /// Token kinds: context keys written from each token answer (JSONata over its body), with
    /// the token: SAP Concur's `geolocation`, "store the geolocation … as they may have changed".
    #[serde(default)]
    pub keep: BTreeMap<String, Text>,
    /// OAuth kinds: how the token request is encoded (default form).
    #[serde(default)]
    pub token_body: Option<Spanned<TokenBody>>,
    /// OAuth kinds: the `grant_type` sent instead of the kind's own (Zoom: `account_credentials`).
    #[serde(default)]
    pub grant_type: Option<Text>,
    /// JWT bearer: the assertion's `iss`, `sub`, `aud` (default the token URL), the PEM private
    /// key (RS256) and the assertion's lifetime.
    #[serde(default)]
    pub issuer: Option<Text>,
    #[serde(default)]
    pub subject: Option<Text>,
    #[serde(default)]
    pub audience: Option<Text>,
    #[serde(default)]
    pub private_key: Option<Text>,
    /// `client_auth: private_key_jwt`, and the jwt-bearer grant: the `kid` of the account's key,
    /// when its client has several (Box names the key of every JWT app).
    #[serde(default)]
    pub key_id: Option<Text>,
    /// JWT bearer: claims of the provider's own beside the standard ones (templates), e.g. Box's
    /// `box_sub_type: enterprise`.
    #[serde(default)]
    pub claims: BTreeMap<String, Text>,
    /// JWT bearer: a fresh `jti` in every assertion (Box refuses an assertion without one).
    #[serde(default)]
    pub jti: Option<Spanned<bool>>,
    /// JWT bearer and `client_auth: private_key_jwt`: how the assertion is signed (default
    /// RS256; NetSuite's client credentials take only PS256/384/512 or ES256/384/512).
    #[serde(default)]
    pub jwt_algorithm: Option<Spanned<JwtAlgorithm>>,
    /// OAuth kinds: ask for a DPoP-bound token (RFC 9449) and prove possession of its key on
    /// every call made with it.
    #[serde(default)]
    pub dpop: Option<Spanned<bool>>,
    #[serde(default)]
    pub lifetime_s: Option<Spanned<u64>>,
    /// token_exchange: the login call.
    #[serde(default)]
    pub exchange: Option<ExchangeSpec>,
    /// token_exchange: JSONata over the answer body giving the token's lifetime in seconds, or
    /// when it expires (ISO 8601 or epoch seconds).
    #[serde(default)]
    pub expires_in: Option<Text>,
    #[serde(default)]
    pub expires_at: Option<Text>,
    /// token_exchange: the lifetime assumed when the answer gives none (and the token is not a
    /// JWT with `exp`).
    #[serde(default)]
    pub default_lifetime_s: Option<Spanned<u64>>,
    /// JSONata over `{status, headers, body}` of any answer (a 2xx too), true when the
    /// provider refused the credential (default `status = 401`, none for `hmac_signature`; Zoho
    /// Meeting answers 400). Every kind but `none`.
    #[serde(default)]
    pub rejected: Option<Text>,
    /// Token kinds: JSONata over `{status, headers, body}` of a token endpoint's (or login
    /// call's) answer that gave no token: `true` when it refused the credentials (the account is
    /// marked `needs_reauth`), `false` when it did not (the call is a 502, the account is left
    /// as it is; an answer `rate_limit.is_limited` names is a 429 first); anything else keeps
    /// the gateway's own reading. Zoho throttles refreshes with a 400 "Access Denied"; Box
    /// refuses a JWT signed by a clock out of step with a 400 `invalid_grant`.
    #[serde(default)]
    pub token_rejected: Option<Text>,
    /// body: the context values the request body carries as credentials (templates such as
    /// `{{context.provhash}}`), kept out of errors and traces.
    #[serde(default)]
    pub credentials: Option<Spanned<Vec<Text>>>,
    /// hmac_signature: the key (a template over the context).
    #[serde(default)]
    pub secret: Option<Text>,
    #[serde(default)]
    pub algorithm: Option<Spanned<HmacAlgorithm>>,
    /// hmac_signature: what is signed; reads `{{date}}`, `{{method}}`, `{{host}}`, `{{path}}`,
    /// `{{query}}` (the canonical query string) and `{{context.…}}`.
    #[serde(default)]
    pub string_to_sign: Option<Text>,
    /// hmac_signature: the header that carries the signing time (e.g. `Date`).
    #[serde(default)]
    pub date_header: Option<Text>,
    #[serde(default)]
    pub date_format: Option<Spanned<SigningDateFormat>>,
    #[serde(default)]
    pub encoding: Option<Spanned<SignatureEncoding>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StyleName {
    Cursor,
    PageToken,
    NextUrl,
    LinkHeader,
    /// The next request carries a value read from the last record (`after=<last id>`).
    Keyset,
    /// GraphQL connections: `pageInfo.endCursor` / `hasNextPage`; cursor and page size go into
    /// the request body (the resource's `body` expression reads `cursor` and `page_size`).
    Graphql,
    Offset,
    Page,
    Scim,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaginationSpec {
    pub style: Spanned<StyleName>,
    #[serde(default)]
    pub page_size_param: Option<String>,
    #[serde(default)]
    pub max_page_size: Option<u32>,
    #[serde(default)]
    pub min_page_size: Option<u32>,
    #[serde(default)]
    pub default_page_size: Option<u32>,
    #[serde(default)]
    pub max_pages: Option<u32>,
    #[serde(default)]
    pub cursor_param: Option<String>,
    /// Cursor style: the request header the cursor travels in instead (Heroku's `Range`).
    #[serde(default)]
    pub cursor_header: Option<String>,
    #[serde(default)]
    pub next_cursor: Option<Text>,
    /// Cursor style: pages after the first go to this path (a provider "continue" endpoint);
    /// the resource's `body` reads `cursor`.
    #[serde(default)]
    pub continue_path: Option<Text>,
    #[serde(default)]
    pub token_param: Option<String>,
    #[serde(default)]
    pub next_token: Option<Text>,
    #[serde(default)]
    pub next_url: Option<Text>,
    /// next_url: a relative next URL that names no query keeps the current request's (Adobe's
    /// bare page index); RFC 3986 resolution would drop it, and with it the caller's
    /// `remote_query`.
    #[serde(default)]
    pub next_url_keeps_query: Option<bool>,
    /// offset, page, scim, keyset: `false` when the provider may cap a page below the size asked
    /// (a short page then does not end the walk; an empty one does).
    #[serde(default)]
    pub short_page_ends: Option<bool>,
    /// offset, page: the provider answers a page past the end with its last page again (instead
    /// of an empty one): a page identical to the one before ends the walk, not a loop error.
    #[serde(default)]
    pub last_page_repeats: Option<bool>,
    #[serde(default)]
    pub offset_param: Option<String>,
    #[serde(default)]
    pub page_param: Option<String>,
    /// page: the page number is the last segment of the path (Adobe's `/users/{orgId}/{page}`),
    /// in place of a `page_param`.
    #[serde(default)]
    pub page_in_path: Option<bool>,
    #[serde(default)]
    pub first_page: Option<u64>,
    #[serde(default)]
    pub start_index_param: Option<String>,
    #[serde(default)]
    pub after_param: Option<String>,
    #[serde(default)]
    pub after_value: Option<Text>,
    #[serde(default)]
    pub has_more: Option<Text>,
    #[serde(default)]
    pub total: Option<Text>,
    /// JSONata over the body: how many records the provider sent on the page, where `records`
    /// may keep fewer (a filter), for the walk's counts (offsets, short pages).
    #[serde(default)]
    pub received: Option<Text>,
    #[serde(default)]
    pub total_pages: Option<Text>,
    /// `body`: the page position and size travel in the request body (the resource's `body`
    /// expression places them), not in the query.
    #[serde(default)]
    pub send_in: Option<Spanned<SendIn>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    #[default]
    Json,
    Xml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SendIn {
    #[default]
    Query,
    Body,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorsSpec {
    #[serde(default)]
    pub when: Option<Text>,
    #[serde(default)]
    pub status: Option<Text>,
    #[serde(default)]
    pub message: Option<Text>,
    /// JSONata over an answer that is not 2xx: true = the provider's way of saying "no such
    /// record" (Hive's 400 "User not found"), reported as a 404.
    #[serde(default)]
    pub not_found: Option<Text>,
}

/// How to recognise a rate-limited answer and when to try again. Every expression is JSONata
/// over `{status, headers, body}` (header names lower-case; body `null` unless JSON).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// True when the answer is a rate limit (default `status = 429`).
    #[serde(default)]
    pub is_limited: Option<Text>,
    /// Seconds to wait (default: the `Retry-After` header, seconds or HTTP date).
    #[serde(default)]
    pub retry_after: Option<Text>,
    /// When the window resets, in epoch seconds (e.g. ``headers.`x-rate-limit-reset` ``).
    #[serde(default)]
    pub reset_epoch: Option<Text>,
    /// The window's request limit, for the `ratelimit-limit` header.
    #[serde(default)]
    pub limit: Option<Text>,
    /// Requests left in the window, for the `ratelimit-remaining` header.
    #[serde(default)]
    pub remaining: Option<Text>,
    /// The provider's documented request budgets: the gateway spaces its calls to stay inside
    /// them. One budget, or a list when the provider counts several (a token's and its API
    /// key's).
    #[serde(default)]
    pub pace: Option<Spanned<PaceSpecs>>,
}

/// `pace:` — one budget or several.
#[derive(Debug, Clone)]
pub enum PaceSpecs {
    One(Box<PaceSpec>),
    Many(Vec<PaceSpec>),
}

/// A map or a list, read as it comes (an untagged enum would buffer it and lose the lines
/// errors name).
impl<'de> Deserialize<'de> for PaceSpecs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = PaceSpecs;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str(
                    "a budget `{requests, seconds, per}` or `{in_flight, per}`, or a list of them",
                )
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<PaceSpecs, A::Error> {
                PaceSpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|pace| PaceSpecs::One(Box::new(pace)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<PaceSpecs, A::Error> {
                Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(PaceSpecs::Many)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl PaceSpecs {
    pub fn as_slice(&self) -> &[PaceSpec] {
        match self {
            PaceSpecs::One(pace) => std::slice::from_ref(&**pace),
            PaceSpecs::Many(paces) => paces,
        }
    }
}

/// At most `requests` calls in any `seconds`, or at most `in_flight` calls at once (a provider
/// that limits concurrency, not a rate: Marketo's ten, NetSuite's account limit), per account
/// (default), for the integration, or per value of a context key (`per: context.api_key`: every
/// account holding that key). One form or the other, checked when compiled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaceSpec {
    #[serde(default)]
    pub requests: Option<Spanned<u32>>,
    #[serde(default)]
    pub seconds: Option<Spanned<f64>>,
    #[serde(default)]
    pub in_flight: Option<Spanned<u32>>,
    #[serde(default)]
    pub per: Option<Text>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum HttpMethod {
    #[default]
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "POST")]
    Post,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    #[serde(default)]
    pub method: HttpMethod,
    pub path: Text,
    /// An absolute URL in place of the base URL for this resource's calls (an API version on
    /// another host: Showpad's v3 exports beside its v4 users). Its host is fixed text, a part
    /// of which may read the context; the account's own base URL does not change it. The calls
    /// carry the file's credential, or the resource's own `auth`.
    #[serde(default)]
    pub base_url: Option<Text>,
    #[serde(default)]
    pub query: BTreeMap<String, Text>,
    /// Headers of this resource's calls only, on top of the file's `headers` (one of the same
    /// name, in any case, replaces the file's): a scope or API version one endpoint needs and
    /// the others must not send (DevRev's `X-Devrev-Scope: beta` for its groups).
    #[serde(default)]
    pub headers: BTreeMap<String, Text>,
    /// A credential of this resource's calls in place of the file's (a static kind): the
    /// provider's SCIM API wanting its own token, or the same token under another scheme.
    #[serde(default)]
    pub auth: Option<AuthSpec>,
    pub records: Text,
    /// A request body (POST): JSONata over `{cursor, page_size, offset, page, query, id, pass}`
    /// (`pass`: the name of the pass walked); a string
    /// is sent as that text, anything else as JSON (or XML under `body_format: xml`).
    #[serde(default)]
    pub body: Option<Text>,
    #[serde(default)]
    pub pagination: Option<PaginationSpec>,
    /// Fields (dotted paths) removed from every record before anything reads it: the mapping,
    /// `remote_data`, raw answers. For providers whose records carry secrets (a user's API key).
    #[serde(default)]
    pub omit: Vec<Text>,
    /// A list the provider serves one part of per walk (Zoom: one `status` a call): the walk
    /// runs once per pass, in order, each pass's parameters added to the query.
    #[serde(default)]
    pub passes: Option<Spanned<Vec<Spanned<PassSpec>>>>,
    /// The budgets the provider counts for this endpoint alone (Slack's method tiers), counted
    /// besides the file's `rate_limit.pace`: one or a list, as there.
    #[serde(default)]
    pub pace: Option<Spanned<PaceSpecs>>,
}

/// One walk of a list served in parts: the query parameters that select its part, or a path
/// of its own (pending invitations beside the members), and the name the response mapping
/// reads as `$pass`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassSpec {
    #[serde(default)]
    pub name: Option<Text>,
    /// The method of this pass's calls, in place of the resource's (a GET list beside POST
    /// searches: Harness's service accounts); a GET pass sends no body.
    #[serde(default)]
    pub method: Option<Spanned<HttpMethod>>,
    /// A path in place of the resource's (a template over the context, like it).
    #[serde(default)]
    pub path: Option<Text>,
    /// Where this pass's records are, in place of the resource's `records`.
    #[serde(default)]
    pub records: Option<Text>,
    /// Parameters added to the query of every page of the pass; `null` leaves one of the
    /// resource's `query` out of this pass (Calendly's `organization`, which its invitations
    /// list does not take).
    #[serde(default)]
    pub query: BTreeMap<String, Option<Text>>,
    /// Headers of this pass's calls, replacing the file's and the resource's of that name;
    /// `null` sends none of that name (Heroku's invitations: their own `Accept`, no `Range`).
    #[serde(default)]
    pub headers: BTreeMap<String, Option<Text>>,
    /// How this pass's pages are walked, in place of the resource's (an invitations list that
    /// comes in one answer beside a paged members list: `style: none`).
    #[serde(default)]
    pub pagination: Option<PaginationSpec>,
    /// An account-context flag (true or "true") without which the pass is skipped: a part of
    /// the list that needs a scope the rest does not (Buildkite's pending invitations).
    #[serde(default)]
    pub only_with: Option<Text>,
    /// Fields (dotted paths) removed from this pass's records, beside the resource's `omit`:
    /// secrets only its records carry (Grafana's invite code and link), so that the other
    /// passes' pages keep being parsed for only what the mapping reads.
    #[serde(default)]
    pub omit: Vec<Text>,
    /// A catalog the pass is walked over: another list of the file (a company's merchant
    /// accounts, an organization's networks), read whole; the pass is then walked once per
    /// catalog record, its path's `{{id}}` that record's `id`.
    #[serde(default)]
    pub over: Option<PassOverSpec>,
}

/// `over:` of a pass.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassOverSpec {
    /// The catalog's list: a `resource.method` of the file, walked by its own pagination.
    pub resource: Text,
    /// JSONata over a catalog record: the `{{id}}` of its walk (a record without one is
    /// skipped).
    pub id: Text,
    /// `skip`: a catalog record whose list answers 404 (removed since the catalog was read, or
    /// without the product) lists nothing; default `fail`.
    #[serde(default)]
    pub not_found: Option<Spanned<NotFound>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnifiedMethodSpec {
    #[serde(default)]
    pub resource: Option<Text>,
    #[serde(default)]
    pub partial: Option<bool>,
    #[serde(default)]
    pub native_filters: Option<Vec<Text>>,
    #[serde(default)]
    pub native_sorts: Option<Vec<Text>>,
    #[serde(default)]
    pub query_mapping: Option<Text>,
    #[serde(default)]
    pub response_mapping: Option<Text>,
    /// Entries of the response mapping's object put in place of its own, for a file that
    /// extends another and changes a few fields of the mapping it inherits: a unified field and
    /// its JSONata (over the same record, seeing the same bindings), or `null` for a field this
    /// provider never fills. Merged key by key over the base's own `response_fields`; a file
    /// that writes its own `response_mapping` inherits none.
    #[serde(default)]
    pub response_fields: Option<BTreeMap<String, Spanned<Option<String>>>>,
    /// Requests made for each record (or page) whose answers the response mapping reads as
    /// `$<name>`.
    #[serde(default)]
    pub follow_up: Option<BTreeMap<String, FollowUpSpec>>,
    /// Unified fields built only for an account whose context sets a flag (true or "true"):
    /// `{groups: read_groups}` where the list itself gives them with the flag (an `$expand`,
    /// a GraphQL field the query mapping adds). A gateway filter on such a field for an account
    /// without the flag is a 400 naming it, not an empty list.
    #[serde(default)]
    pub opt_in_fields: Option<BTreeMap<String, Text>>,
    /// A get only: the id prefix of each named pass of the list whose records the get's
    /// resource cannot read (`{invitations: "invitation:"}`). An id with that prefix is looked
    /// for in that pass of the list instead.
    #[serde(default)]
    pub pass_ids: Option<BTreeMap<String, Text>>,
    /// A get only: named passes of the list whose records' ids have the form the get's resource
    /// answers "not found" for (a bare invitation id): a get it answers so is looked for there.
    #[serde(default)]
    pub not_found_passes: Option<Vec<Text>>,
    /// A list only: for a named pass of its resource that does not apply every native filter
    /// (an invitations endpoint without the members' `email`), the native filters it does apply
    /// (`{invitations: []}`); the gateway applies the others to that pass's records.
    #[serde(default)]
    pub native_filters_by_pass: Option<BTreeMap<String, Spanned<Vec<Text>>>>,
}

/// A second native call for the records of a page.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowUpSpec {
    /// The native resource called (its templates read `{{id}}`).
    pub resource: Text,
    /// JSONata giving `{{id}}`: over the record (`per: record`), or over the page's records
    /// (`per: page`, e.g. `$join(id, ',')`).
    pub id: Text,
    #[serde(default)]
    pub per: Option<Spanned<FollowUpPer>>,
    /// `per: page`: JSONata over a page record, and over a record of the answer, that pair them.
    #[serde(default)]
    pub key: Option<Text>,
    #[serde(default)]
    pub matches: Option<Text>,
    /// Calls in flight at once for one account (default 4).
    #[serde(default)]
    pub concurrency: Option<Spanned<u32>>,
    /// `skip`: a 404 means the record has no detail (`$<name>` undefined); default `fail`.
    #[serde(default)]
    pub not_found: Option<Spanned<NotFound>>,
    /// `per: page`: the page's ids (`id` gives a list) sent in calls of at most `size`, each as
    /// repeated `param` query parameters and as `{{id}}` joined by commas.
    #[serde(default)]
    pub batch: Option<BatchSpec>,
    /// Read every page of the follow-up's answer (its resource's `pagination`), not only the
    /// first.
    #[serde(default)]
    pub walk: Option<Spanned<bool>>,
    /// Another follow-up of the list (`per: page`, its whole answer a catalog such as the
    /// account's groups): one call per record of its answer, `id` read off that record, and
    /// `$<name>` for a page record is the catalog's records whose answers hold it (`key` over
    /// the page record, `matches` over a record of the answer). Groups → members, once a walk.
    #[serde(default)]
    pub over: Option<Text>,
    /// `over:` only: what `$<name>` holds for a page record: the catalog records whose answers
    /// hold a record matching it (`catalog`, the default: the groups a user is in), or those
    /// matching answer records themselves (`answers`: the groups a workspace's answer lists
    /// with their members, or a membership record with the user's role in the group).
    #[serde(default)]
    pub gives: Option<Spanned<ChainedGives>>,
    /// `per: page` without `over`: a get makes it too, its one record the page (a catalog of a
    /// few calls, Slack's user groups), so a get gives what the list gives; without it a get
    /// makes only the per-record follow-ups.
    #[serde(default)]
    pub on_get: Option<Spanned<bool>>,
    /// An account-context flag (true or "true") without which the follow-up is not made (an
    /// opt-in such as `read_groups`): for an account without it, the list's pages are parsed
    /// with only what the mapping reads, as if the follow-up were not there. A follow-up
    /// chained `over` one made only with a flag is made only with that flag too.
    #[serde(default)]
    pub only_with: Option<Text>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ChainedGives {
    #[default]
    Catalog,
    Answers,
}

/// `batch:` of a per-page follow-up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSpec {
    pub size: Spanned<u32>,
    #[serde(default)]
    pub param: Option<Text>,
    /// Answers kept for the walk by the ids asked: a later page asks only the ids no earlier
    /// page of the walk asked (a page's users name workspaces the previous page's did).
    #[serde(default)]
    pub keep: Option<Spanned<bool>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FollowUpPer {
    #[default]
    Record,
    Page,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NotFound {
    #[default]
    Fail,
    Skip,
}

impl UnifiedMethodSpec {
    fn extend(self, base: UnifiedMethodSpec) -> UnifiedMethodSpec {
        UnifiedMethodSpec {
            follow_up: self.follow_up.or(base.follow_up),
            opt_in_fields: self.opt_in_fields.or(base.opt_in_fields),
            pass_ids: self.pass_ids.or(base.pass_ids),
            not_found_passes: self.not_found_passes.or(base.not_found_passes),
            native_filters_by_pass: self.native_filters_by_pass.or(base.native_filters_by_pass),
            resource: self.resource.or(base.resource),
            partial: self.partial.or(base.partial),
            native_filters: self.native_filters.or(base.native_filters),
            native_sorts: self.native_sorts.or(base.native_sorts),
            query_mapping: self.query_mapping.or(base.query_mapping),
            response_fields: match (&self.response_mapping, self.response_fields) {
                (Some(_), own) => own,
                (None, Some(own)) => {
                    let mut fields = base.response_fields.unwrap_or_default();
                    fields.extend(own);
                    Some(fields)
                }
                (None, None) => base.response_fields,
            },
            response_mapping: self.response_mapping.or(base.response_mapping),
        }
    }
}
