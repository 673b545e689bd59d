//! Compiled integrations: the validated runtime form of a mapping file, built once at load.

mod auth;
mod resource;
mod unified;

pub use auth::{
    Auth, Exchange, ExchangeBody, Grant, JsonTemplate, JwtAssertion, OAuth2, SIGNATURE,
    SIGNING_DATE, SIGNING_HOST, SIGNING_METHOD, SIGNING_PATH, SIGNING_QUERY, SignatureOutput,
    SignedAuth, TokenAuth, TokenSource,
};
pub use resource::{CompiledPagination, DEFAULT_MAX_PAGES, Pass, PassOver, Resource};

use std::collections::{BTreeMap, BTreeSet};

use unigate_unified::UnifiedModel;

use crate::diagnostics::FileCompiler;
use crate::expression::{Expression, Memoized};
use crate::reads::{PageReads, ReadSet};
use crate::spec::{BodyFormat, IntegrationSpec};
use crate::template::Template;
use auth::compile_auth;
use resource::compile_resource;
use unified::compile_unified_methods;

/// A unified method: what a caller asks of a unified resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// `GET /unified/{model}/{resource}`: a page of records.
    List,
    /// `GET /unified/{model}/{resource}/{id}`: one record.
    Get,
}

impl Method {
    pub const ALL: [Method; 2] = [Method::List, Method::Get];

    /// The key of the method in a mapping file and in URLs (`meta/list`).
    pub fn name(self) -> &'static str {
        match self {
            Method::List => "list",
            Method::Get => "get",
        }
    }

    pub fn parse(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|method| method.name() == name)
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which unified method of which resource of which model, e.g. `user-directory/users` `list`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MethodKey {
    pub model: String,
    pub resource: String,
    pub method: Method,
}

impl MethodKey {
    pub fn new(model: &str, resource: &str, method: Method) -> MethodKey {
        MethodKey {
            model: model.to_owned(),
            resource: resource.to_owned(),
            method,
        }
    }
}

#[derive(Debug)]
pub struct Integration {
    pub id: String,
    pub name: String,
    pub docs: String,
    pub base_url: Template,
    pub headers: Vec<(String, Template)>,
    /// What request bodies and answers are written in (`body_format`).
    pub body_format: BodyFormat,
    pub auth: Auth,
    /// When an answer means the account's credential was refused (`auth.rejected`; `None`: a
    /// 401, except for signed requests, whose 401 may be the clock).
    pub auth_rejected: Option<CredentialRefusal>,
    pub errors: Option<ProviderErrors>,
    pub rate_limit: RateLimit,
    /// `resource.method` → resource, e.g. `users.list`.
    pub resources: BTreeMap<String, Resource>,
    pub unified: BTreeMap<MethodKey, UnifiedMethod>,
    /// Versions of this integration for the accounts whose context selects them, in order.
    pub variants: Vec<Variant>,
    /// Set when the provider shut its service down (`retired:`): no call reaches it.
    pub retired: Option<Retired>,
    /// What an account's context must hold (`account_checks:`).
    pub account_checks: Vec<AccountCheck>,
}

/// A rule an account's context must pass (`account_checks:` in the file).
#[derive(Debug)]
pub struct AccountCheck {
    /// JSONata over the account context; anything but `true` fails.
    pub require: Expression,
    pub message: String,
}

/// A provider's service that no longer answers (`retired:` in the file).
#[derive(Debug, Clone, PartialEq)]
pub struct Retired {
    /// `YYYY-MM-DD`.
    pub since: String,
    pub reason: String,
}

/// A version of an integration for some accounts (`variants:` in the file).
#[derive(Debug)]
pub struct Variant {
    pub name: String,
    /// JSONata over the account context.
    pub when: Expression,
    pub integration: std::sync::Arc<Integration>,
}

/// Which parts of `{status, headers, body}` an expression may read, by its fast-path plan's
/// read set ([`Expression::reads`]); both when it has no plan or reads its input whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeReads {
    pub headers: bool,
    pub body: bool,
}

impl ProbeReads {
    pub fn of(expression: &Expression) -> ProbeReads {
        match expression.reads() {
            Some(set) if !set.reads_everything() => ProbeReads {
                headers: set.field_set("headers").is_some(),
                body: set.field_set("body").is_some(),
            },
            _ => ProbeReads::ALL,
        }
    }

    pub const ALL: ProbeReads = ProbeReads {
        headers: true,
        body: true,
    };
}

/// `auth.rejected`: JSONata over `{status, headers, body}` of any answer, 2xx included (Veeva
/// Vault and Slack refuse a credential with HTTP 200), and the parts it may read.
#[derive(Debug)]
pub struct CredentialRefusal {
    pub when: Expression,
    pub reads: ProbeReads,
}

/// Rate-limit detection; every expression reads `{status, headers, body}`.
#[derive(Debug)]
pub struct RateLimit {
    pub is_limited: Expression,
    /// What `is_limited`, run on every answer, may read: the headers are gathered and the body
    /// parsed for it only when it may (the default, `status = 429`, reads neither); the other
    /// expressions run only on a limited answer, and get everything.
    pub is_limited_reads: ProbeReads,
    pub retry_after: Option<Expression>,
    pub reset_epoch: Option<Expression>,
    pub limit: Option<Expression>,
    pub remaining: Option<Expression>,
    /// The provider's documented request budgets, each call counted in every one; the first
    /// says whose calls a provider's "wait" holds (the account's, or the integration's).
    pub paces: Vec<Pace>,
}

/// At most `requests` calls in any window of `window`, counted for [`PaceScope`]. A window of
/// zero (`in_flight`) limits the calls at once only: an answered call frees its slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Pace {
    pub requests: u32,
    pub window: std::time::Duration,
    pub per: PaceScope,
}

impl Pace {
    /// Whether the budget counts calls over time (a rate), not only those in flight: its slots
    /// are spent by any call, so a call made on a guess costs one.
    pub fn counts_calls(&self) -> bool {
        !self.window.is_zero()
    }
}

/// Whose calls one budget counts (`pace.per`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaceScope {
    Account,
    Integration,
    /// Every account whose context holds the same value at this key (Trello's API key, shared
    /// by every token of an app).
    Context(String),
}

/// How a provider reports errors: `when` marks a 2xx body as an error; `status` and `message`
/// read any error answer. Each is JSONata over the body with `$status` and `$headers` bound.
#[derive(Debug)]
pub struct ProviderErrors {
    pub when: Option<Expression>,
    pub status: Option<Expression>,
    pub message: Option<Expression>,
    /// True over a non-2xx answer that means "no such record" (reported as 404).
    pub not_found: Option<Expression>,
}

#[derive(Debug)]
pub struct UnifiedMethod {
    /// Key into [`Integration::resources`].
    pub resource: String,
    pub partial: bool,
    pub native_filters: BTreeSet<String>,
    pub native_sorts: BTreeSet<String>,
    /// Remembers its answers for repeated filters where that is sound ([`Memoized`]).
    pub query_mapping: Option<Memoized>,
    /// The query mapping reads `$pass`: it is evaluated once for each pass a walk makes, with
    /// that pass's name, and once without (the call that chooses its part is walked with that).
    pub query_reads_pass: bool,
    /// A list's named passes that apply only some of `native_filters`, with those they apply
    /// (`native_filters_by_pass`): the gateway applies the others to the pass's records.
    pub native_filters_by_pass: BTreeMap<String, BTreeSet<String>>,
    pub response_mapping: Expression,
    /// The unified fields the response mapping can produce, when its shape is visible at load
    /// (a top-level object constructor); `None` when computed.
    pub mapped_fields: Option<BTreeSet<String>>,
    /// Calls made for the records of each page, read by the response mapping as `$<name>`.
    pub follow_ups: Vec<FollowUp>,
    /// Names the response mapping reads that nothing binds (one its base file's follow-up gave,
    /// dropped here with `follow_up: {}`), or only some pages do (`$pass`, bound for a named
    /// pass's records): undefined where unbound.
    pub unbound_reads: Vec<String>,
    /// Each built field whose value reads follow-up answers, with those follow-ups' names (in
    /// `follow_ups` order): Okta's `groups` reads `user_groups`' and `groups`' answers. Found
    /// at load from the response mapping; empty when its shape is not visible then.
    pub field_follow_ups: BTreeMap<String, Vec<String>>,
    /// Unified fields built only for an account whose context sets a flag (`opt_in_fields`):
    /// field → flag.
    pub opt_in_fields: BTreeMap<String, String>,
    /// What the page's expressions and this method's mapping can read of a page of the
    /// method's resource (a list), when that is known and less than everything: such a page can
    /// be parsed with only those fields ([`crate::reads`]). Otherwise why its pages are parsed
    /// whole (`unigate check` says it). It holds for the pages of passes that take the
    /// resource's `records` and `pagination`; a pass with its own is parsed whole
    /// ([`Resource::pass_reads_whole`]).
    pub page_reads: Result<PageReads, String>,
    /// [`UnifiedMethod::page_reads`] for an account that makes none of the follow-ups with an
    /// `only_with` flag (`None` when the method has no such follow-up): what the others and
    /// the mapping read, so that an opt-in left off costs nothing.
    pub page_reads_without_opt_ins: Option<Result<PageReads, String>>,
    /// A get's: ids the list's named passes give that the get's resource cannot read
    /// (`pass_ids`), found in that pass of the list instead.
    pub pass_ids: Vec<PassIds>,
    /// A get's: named passes of the list where an id its resource answers "not found" for is
    /// looked for, in order (`not_found_passes`).
    pub not_found_passes: Vec<String>,
}

/// The ids of one named pass of a list (`pass_ids: {invitations: "invitation:"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassIds {
    /// The pass's name, as the list's resource names it.
    pub pass: String,
    /// What every id of its records starts with.
    pub prefix: String,
}

impl UnifiedMethod {
    /// The named pass of the list whose records have ids like `id`, if any.
    pub fn pass_of_id(&self, id: &str) -> Option<&PassIds> {
        self.pass_ids
            .iter()
            .find(|pass| id.starts_with(pass.prefix.as_str()))
    }

    /// The names the response mapping may read unbound, undefined then on both paths: its
    /// follow-ups' (a record whose follow-up gave nothing, an account that does not make it)
    /// and those nothing binds.
    pub fn possibly_unbound(&self) -> impl Iterator<Item = &str> {
        self.follow_ups
            .iter()
            .map(|follow_up| follow_up.name.as_str())
            .chain(self.unbound_reads.iter().map(String::as_str))
    }
}

/// A second native call for the records of a page (`follow_up:`).
#[derive(Debug)]
pub struct FollowUp {
    /// The variable the response mapping reads (`$detail`).
    pub name: String,
    /// The native resource called; its templates read `{{id}}`.
    pub resource: String,
    /// Over a record (per record) or over the page's records (per page): the `{{id}}`.
    pub id: Expression,
    pub per_page: bool,
    /// Per page: which answer records belong to which page record. Neither: the whole answer
    /// is every record's.
    pub key: Option<Expression>,
    pub matches: Option<Expression>,
    pub concurrency: u32,
    /// A 404 means the record has no detail, rather than a failed call.
    pub skip_not_found: bool,
    /// Per page: the page's ids split into calls of at most this many.
    pub batch: Option<FollowUpBatch>,
    /// Every page of each call's answer is read (`walk: true`), by its resource's pagination.
    pub walk: bool,
    /// The per-page follow-up whose answer's records this one is called for, one call each
    /// (`over:`); `key` then reads a page record and `matches` a record of a call's answer, and
    /// the variable is the records of that answer whose calls matched.
    pub over: Option<String>,
    /// Chained only: the variable holds the matching records of the calls' answers instead of
    /// the catalog records whose calls matched (`gives: answers`).
    pub gives_answers: bool,
    /// Its resource reads the id's parts (`{{id.0}}`, `{{id.1}}`): `id` gives them as a list.
    pub id_parts: bool,
    /// Per page: a get makes it too, with its record as the page (`on_get: true`).
    pub on_get: bool,
    /// The account-context flag without which it is not made (`only_with`; a chained one's is
    /// its catalog's when it names none).
    pub only_with: Option<String>,
}

impl FollowUp {
    /// Whether an account with `context` makes it (its `only_with` flag set, or none).
    pub fn made_for(&self, context: &serde_json::Value) -> bool {
        (self.only_with.as_deref()).is_none_or(|flag| flag_set(context, flag))
    }
}

/// Whether an account-context flag is set: `true` or `"true"` (a flag a pass, a follow-up or an
/// opt-in field is made with).
pub fn flag_set(context: &serde_json::Value, flag: &str) -> bool {
    match context.get(flag) {
        Some(serde_json::Value::Bool(set)) => *set,
        Some(serde_json::Value::String(text)) => text == "true",
        _ => false,
    }
}

/// How a per-page follow-up sends a page's ids (`batch:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUpBatch {
    pub size: usize,
    /// The query parameter repeated once per id (Airtable's `id[]`), if any; `{{id}}` is the
    /// batch's ids joined by commas either way.
    pub param: Option<String>,
    /// The answers are kept for the walk by the ids asked (`keep: true`): each id is asked
    /// once a walk, and a page pairs its records with the kept answers of its ids.
    pub keep: bool,
}

impl Integration {
    /// The version of this integration that serves an account with `context`: the first
    /// variant whose `when` holds, else the integration itself.
    pub fn for_context(
        self: &std::sync::Arc<Self>,
        context: &serde_json::Value,
    ) -> std::sync::Arc<Self> {
        let scope = crate::expression::Scope::new([]);
        self.variants
            .iter()
            .find(|variant| {
                variant.when.evaluate(context, &scope).ok().flatten()
                    == Some(serde_json::Value::Bool(true))
            })
            .map_or_else(|| self.clone(), |variant| variant.integration.clone())
    }

    /// The messages of the `account_checks` an account's context fails.
    pub fn account_problems(&self, context: &serde_json::Value) -> Vec<String> {
        let scope = crate::expression::Scope::new([]);
        self.account_checks
            .iter()
            .filter(|check| {
                check.require.evaluate(context, &scope).ok().flatten()
                    != Some(serde_json::Value::Bool(true))
            })
            .map(|check| check.message.clone())
            .collect()
    }

    /// What is wrong with the URLs an account's context renders (its base URL unless the account
    /// gives its own, its token or login URL): a value that would move a URL off the host the
    /// mapping fixes. Missing keys are left to [`Integration::context_keys`].
    pub fn url_problems(&self, context: &serde_json::Value, own_base_url: bool) -> Vec<String> {
        let mut urls: Vec<&Template> = Vec::new();
        if !own_base_url {
            urls.push(&self.base_url);
        }
        if let Auth::Token(token) = &self.auth {
            urls.push(match &token.source {
                TokenSource::OAuth2(oauth) => &oauth.token_url,
                TokenSource::Exchange(exchange) => &exchange.url,
            });
        }
        urls.extend(
            self.resources
                .values()
                .filter_map(|resource| resource.base_url.as_ref()),
        );
        urls.into_iter()
            .filter_map(|template| template.render_url(context).err())
            .filter(|error| error.moves_host())
            .map(|error| error.to_string())
            .collect()
    }

    /// Whether the token request (an OAuth token URL or a login call written as a path, or as a
    /// path from the base URL) goes to the origin of the account's base URL, which then carries
    /// credentials.
    pub fn token_url_on_base(&self) -> bool {
        let Auth::Token(token) = &self.auth else {
            return false;
        };
        let template = match &token.source {
            TokenSource::OAuth2(oauth) => &oauth.token_url,
            TokenSource::Exchange(exchange) => &exchange.url,
        };
        template.is_literal()
            && template
                .render(&serde_json::Value::Null)
                .is_ok_and(|url| ["/", "./", "../"].iter().any(|path| url.starts_with(path)))
    }

    /// Every `context.…` key the integration's templates read, for checking accounts at startup.
    pub fn context_keys(&self) -> BTreeSet<String> {
        self.context_keys_for(false)
    }

    /// [`Integration::context_keys`] for an account that gives its own base URL or not: with its
    /// own, the file's base URL is never rendered, so the keys only it reads (Make's `zone`, for
    /// a private instance) are not needed.
    pub fn context_keys_for(&self, own_base_url: bool) -> BTreeSet<String> {
        let mut templates: Vec<&Template> = Vec::new();
        if !own_base_url {
            templates.push(&self.base_url);
        }
        templates.extend(self.headers.iter().map(|(_, template)| template));
        // A body's credentials may be alternatives (Adaptive: a token, or a login and password):
        // the body expression says which it needs, so they name secrets, not required keys.
        if !matches!(self.auth, Auth::Body { .. }) {
            templates.extend(self.auth.templates());
        }
        for resource in self.resources.values() {
            templates.push(&resource.path);
            templates.extend(&resource.base_url);
            templates.extend(resource.query.iter().map(|(_, template)| template));
            templates.extend(resource.headers.iter().map(|(_, template)| template));
            templates.extend(resource.auth.iter().flat_map(Auth::templates));
            templates.extend(&resource.pagination.continue_path);
        }
        let mut keys: BTreeSet<String> = templates
            .into_iter()
            .flat_map(Template::context_keys)
            .collect();
        // A budget counted per context value needs the value.
        let resource_paces = self.resources.values().flat_map(|resource| &resource.paces);
        for pace in self.rate_limit.paces.iter().chain(resource_paces) {
            if let PaceScope::Context(key) = &pace.per {
                keys.insert(key.clone());
            }
        }
        keys
    }

    /// The context paths whose values travel as credentials, which an error answer is cleaned
    /// of (the engine's `redact`): every one the auth's credential templates read
    /// ([`Auth::credential_templates`]), a resource's own `auth` too, and of the headers and
    /// query parameters rendered from the context (mostly ids: a tenant, an organization, a
    /// workspace, which an error message naming them should keep) those whose name or context
    /// key names a credential (`x-api-key`, `app_key`, `{{context.secret_key}}`:
    /// `names_a_credential`).
    pub fn credential_context_paths(&self) -> BTreeSet<Vec<String>> {
        let own = self
            .resources
            .values()
            .filter_map(|resource| resource.auth.as_ref());
        let mut paths: BTreeSet<Vec<String>> = std::iter::once(&self.auth)
            .chain(own)
            .flat_map(Auth::credential_templates)
            .flat_map(Template::context_paths)
            .map(<[String]>::to_vec)
            .collect();
        let named = self.headers.iter().chain(
            self.resources
                .values()
                .flat_map(|resource| resource.query.iter().chain(&resource.headers)),
        );
        for (name, template) in named {
            paths.extend(
                template
                    .context_paths()
                    .filter(|path| {
                        names_a_credential(name)
                            || path.last().is_some_and(|key| names_a_credential(key))
                    })
                    .map(<[String]>::to_vec),
            );
        }
        paths
    }

    pub fn unified_method(
        &self,
        model: &str,
        resource: &str,
        method: Method,
    ) -> Option<&UnifiedMethod> {
        // Looked for without an owned key: an integration maps a handful of methods, and a
        // request looks its method up several times (two allocations each for a key).
        self.unified
            .iter()
            .find(|(key, _)| key.method == method && key.resource == resource && key.model == model)
            .map(|(_, unified)| unified)
    }

    /// The methods this integration maps for a unified resource, in [`Method::ALL`] order.
    pub fn methods_of(&self, model: &str, resource: &str) -> Vec<Method> {
        Method::ALL
            .into_iter()
            .filter(|method| self.unified_method(model, resource, *method).is_some())
            .collect()
    }

    pub fn resource_of(&self, method: &UnifiedMethod) -> &Resource {
        &self.resources[&method.resource]
    }
}

/// Whether a header, parameter or context key's name says it holds a credential.
fn names_a_credential(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "key",
        "secret",
        "token",
        "password",
        "passwd",
        "auth",
        "signature",
        "credential",
    ]
    .iter()
    .any(|word| name.contains(word))
}

pub(crate) fn compile_integration(
    id: &str,
    spec: IntegrationSpec,
    models: &BTreeMap<String, UnifiedModel>,
    c: &mut FileCompiler<'_>,
) -> Option<Integration> {
    // Required once `extends` has been applied.
    let mut missing = |present: bool, field: &str| {
        if !present {
            c.error_line(
                1,
                field,
                "is required (here or in the file this one extends)",
            );
        }
        present
    };
    let complete = [
        missing(spec.name.is_some(), "name"),
        missing(spec.docs.is_some(), "docs"),
        missing(spec.base_url.is_some(), "base_url"),
        missing(spec.auth.is_some(), "auth"),
        missing(!spec.resources.is_empty(), "resources"),
    ];
    if complete.contains(&false) {
        return None;
    }
    let (Some(name), Some(docs), Some(base_url_text), Some(auth_spec)) = (
        spec.name.clone(),
        spec.docs.clone(),
        spec.base_url.clone(),
        spec.auth.clone(),
    ) else {
        return None;
    };
    if !(docs.value.starts_with("https://") || docs.value.starts_with("http://")) {
        c.error_at(
            &docs,
            "docs",
            "must be the URL of the provider documentation the mapping was written from",
        );
    }
    let base_url = c.template(&base_url_text, "base_url");
    if let Some(template) = &base_url
        && template.is_literal()
        && url_origin_is_invalid(&base_url_text.value)
    {
        c.error_at(
            &base_url_text,
            "base_url",
            "must be an absolute http(s) URL",
        );
    }
    let headers = compile_headers(&spec.headers, "headers", c);
    let auth = compile_auth(&auth_spec, c);
    // `Err(())` = present but broken (already reported).
    let errors: Result<Option<ProviderErrors>, ()> = match &spec.errors {
        None => Ok(None),
        Some(errors) => {
            let when = c.optional_expression(errors.when.as_ref(), "errors.when");
            let status = c.optional_expression(errors.status.as_ref(), "errors.status");
            let message = c.optional_expression(errors.message.as_ref(), "errors.message");
            let not_found = c.optional_expression(errors.not_found.as_ref(), "errors.not_found");
            match (when, status, message, not_found) {
                (Ok(when), Ok(status), Ok(message), Ok(not_found)) => Ok(Some(ProviderErrors {
                    when,
                    status,
                    message,
                    not_found,
                })),
                _ => Err(()),
            }
        }
    };
    let rate_limit = compile_rate_limit(spec.rate_limit.as_ref(), c);
    let body_format = spec
        .body_format
        .as_ref()
        .map(|f| f.value)
        .unwrap_or_default();
    let mut resources = BTreeMap::new();
    for (resource_name, methods) in &spec.resources {
        for (method_name, resource) in methods {
            let path = format!("resources.{resource_name}.{method_name}");
            let pagination = resource.pagination.as_ref().or(spec.pagination.as_ref());
            if let Some(compiled) =
                compile_resource(resource, pagination, body_format, &spec.headers, &path, c)
            {
                resources.insert(format!("{resource_name}.{method_name}"), compiled);
            }
        }
    }
    check_pass_catalogs(&spec, &resources, c);
    let mut unified = compile_unified_methods(&spec, &resources, models, c);
    if let Ok(errors) = &errors {
        for (key, method) in unified.iter_mut() {
            let all: Vec<&FollowUp> = method.follow_ups.iter().collect();
            let made_always: Vec<&FollowUp> = (method.follow_ups.iter())
                .filter(|follow_up| follow_up.only_with.is_none())
                .collect();
            let reads =
                |follow_ups: &[&FollowUp]| match (key.method, resources.get(&method.resource)) {
                    (Method::List, Some(resource)) => page_reads(
                        resource,
                        &method.response_mapping,
                        follow_ups,
                        errors.as_ref(),
                        body_format,
                    ),
                    _ => Err("not a list".to_owned()),
                };
            let without_opt_ins = (made_always.len() < all.len()).then(|| reads(&made_always));
            method.page_reads = reads(&all);
            method.page_reads_without_opt_ins = without_opt_ins;
        }
    }
    let retired = spec.retired.as_ref().map(|retired| {
        if !is_calendar_date(&retired.since.value) {
            c.error_at(
                &retired.since,
                "retired.since",
                "must be a date, YYYY-MM-DD",
            );
        }
        if retired.reason.value.trim().is_empty() {
            c.error_at(
                &retired.reason,
                "retired.reason",
                "must say, for callers, why the service is gone",
            );
        }
        Retired {
            since: retired.since.value.clone(),
            reason: retired.reason.value.trim().to_owned(),
        }
    });
    let account_checks = spec
        .account_checks
        .iter()
        .enumerate()
        .filter_map(|(index, check)| {
            let path = format!("account_checks[{index}]");
            if check.message.value.trim().is_empty() {
                c.error_at(
                    &check.message,
                    &format!("{path}.message"),
                    "must tell the admin what the account's context needs",
                );
            }
            Some(AccountCheck {
                require: c.expression(&check.require, &format!("{path}.require"))?,
                message: check.message.value.trim().to_owned(),
            })
        })
        .collect();
    let (auth, auth_rejected) = auth?;
    let auth_rejected = auth_rejected.map(|when| CredentialRefusal {
        reads: ProbeReads::of(&when),
        when,
    });
    Some(Integration {
        id: id.to_owned(),
        name,
        docs: docs.value,
        base_url: base_url?,
        headers,
        body_format,
        auth,
        auth_rejected,
        errors: errors.ok()?,
        rate_limit: rate_limit?,
        resources,
        unified,
        variants: Vec::new(),
        retired,
        account_checks,
    })
}

/// Each pass `over` a catalog names another list of the file that is walked once, whole, with
/// nothing to fill in: a resource without passes of its own whose path reads no `{{id}}`.
fn check_pass_catalogs(
    spec: &IntegrationSpec,
    resources: &BTreeMap<String, Resource>,
    c: &mut FileCompiler<'_>,
) {
    for (resource_name, methods) in &spec.resources {
        for (method_name, resource) in methods {
            let key = format!("{resource_name}.{method_name}");
            let passes = resource.passes.iter().flat_map(|passes| &passes.value);
            for (index, pass) in passes.enumerate() {
                let Some(over) = &pass.value.over else {
                    continue;
                };
                let at = format!("resources.{key}.passes[{index}].over.resource");
                let named = &over.resource.value;
                let problem = match resources.get(named) {
                    _ if *named == key => Some("is the list this pass belongs to".to_owned()),
                    None => Some(format!(
                        "names `{named}`, which is not a `resource.method` under `resources`"
                    )),
                    Some(catalog) if !catalog.passes.is_empty() => Some(format!(
                        "names `{named}`, a list served in parts; a catalog is one list"
                    )),
                    Some(catalog) if catalog.path.reads_id() => Some(format!(
                        "names `{named}`, whose path reads `{{{{id}}}}`; a catalog is read with nothing to fill in"
                    )),
                    Some(_) => None,
                };
                if let Some(problem) = problem {
                    c.error_at(&over.resource, &at, &problem);
                }
            }
        }
    }
}

/// `YYYY-MM-DD` with a month 01–12 and a day 01–31.
fn is_calendar_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    let number = |range: std::ops::Range<usize>| text[range].parse::<u32>().unwrap_or(0);
    bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && digits(0..4)
        && digits(5..7)
        && digits(8..10)
        && (1..=12).contains(&number(5..7))
        && (1..=31).contains(&number(8..10))
}

fn compile_rate_limit(
    spec: Option<&crate::spec::RateLimitSpec>,
    c: &mut FileCompiler<'_>,
) -> Option<RateLimit> {
    let default = || Expression::compile("status = 429").expect("a constant expression compiles");
    let Some(spec) = spec else {
        return Some(RateLimit {
            paces: Vec::new(),
            is_limited_reads: ProbeReads::of(&default()),
            is_limited: default(),
            retry_after: None,
            reset_epoch: None,
            limit: None,
            remaining: None,
        });
    };
    let is_limited = c.optional_expression(spec.is_limited.as_ref(), "rate_limit.is_limited");
    let retry_after = c.optional_expression(spec.retry_after.as_ref(), "rate_limit.retry_after");
    let reset_epoch = c.optional_expression(spec.reset_epoch.as_ref(), "rate_limit.reset_epoch");
    let limit = c.optional_expression(spec.limit.as_ref(), "rate_limit.limit");
    let remaining = c.optional_expression(spec.remaining.as_ref(), "rate_limit.remaining");
    let paces = compile_paces(spec.pace.as_ref(), "rate_limit.pace", c)?;
    let is_limited = is_limited.ok()?.unwrap_or_else(default);
    Some(RateLimit {
        paces,
        is_limited_reads: ProbeReads::of(&is_limited),
        is_limited,
        retry_after: retry_after.ok()?,
        reset_epoch: reset_epoch.ok()?,
        limit: limit.ok()?,
        remaining: remaining.ok()?,
    })
}

/// The budgets of a `pace` (the file's `rate_limit.pace`, or a resource's) at `field`.
pub(super) fn compile_paces(
    specs: Option<&serde_saphyr::Spanned<crate::spec::PaceSpecs>>,
    field: &str,
    c: &mut FileCompiler<'_>,
) -> Option<Vec<Pace>> {
    let mut paces = Vec::new();
    let Some(specs) = specs else {
        return Some(paces);
    };
    let listed = matches!(specs.value, crate::spec::PaceSpecs::Many(_));
    for (index, pace) in specs.value.as_slice().iter().enumerate() {
        let path = match listed {
            true => format!("{field}[{index}]"),
            false => field.to_owned(),
        };
        let (requests, window) = match (&pace.requests, &pace.seconds, &pace.in_flight) {
            (Some(requests), Some(seconds), None) => {
                let secs = seconds.value;
                if requests.value == 0 || !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
                    c.error_at(
                        requests,
                        &path,
                        "needs `requests` of at least 1 in `seconds` between 0 and 86400",
                    );
                    return None;
                }
                (requests.value, std::time::Duration::from_secs_f64(secs))
            }
            (None, None, Some(in_flight)) => {
                if in_flight.value == 0 {
                    c.error_at(
                        in_flight,
                        &format!("{path}.in_flight"),
                        "must be at least 1",
                    );
                    return None;
                }
                // A window of nothing: a call occupies its slot only while it is in flight.
                (in_flight.value, std::time::Duration::ZERO)
            }
            _ => {
                // The budget's own line when it has a key; `{}` only has the list's.
                let line = [
                    pace.requests.as_ref().map(|at| at.referenced.line()),
                    pace.seconds.as_ref().map(|at| at.referenced.line()),
                    pace.in_flight.as_ref().map(|at| at.referenced.line()),
                    pace.per.as_ref().map(|at| at.referenced.line()),
                ]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_else(|| specs.referenced.line());
                c.error_line(
                    line,
                    &path,
                    "needs `requests` and `seconds` (a rate), or `in_flight` alone (calls at once)",
                );
                return None;
            }
        };
        let per = match pace.per.as_ref().map(|per| (per, per.value.as_str())) {
            None | Some((_, "account")) => PaceScope::Account,
            Some((_, "integration")) => PaceScope::Integration,
            Some((per, text)) => match text.strip_prefix("context.") {
                Some(key)
                    if !key.is_empty()
                        && key.split('.').all(|segment| {
                            !segment.is_empty()
                                && segment
                                    .chars()
                                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
                        }) =>
                {
                    PaceScope::Context(key.to_owned())
                }
                _ => {
                    c.error_at(
                        per,
                        &format!("{path}.per"),
                        "must be `account`, `integration` or `context.<key>`",
                    );
                    return None;
                }
            },
        };
        paces.push(Pace {
            requests,
            window,
            per,
        });
    }
    Some(paces)
}

pub(super) fn url_origin_is_invalid(url: &str) -> bool {
    !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 10
}

/// Header templates (the file's, or a resource's at `path`), each name a valid HTTP token.
pub(super) fn compile_headers(
    headers: &BTreeMap<String, crate::spec::Text>,
    path: &str,
    c: &mut FileCompiler<'_>,
) -> Vec<(String, Template)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let field = format!("{path}.{name}");
            if !is_token(name) {
                c.error_at(value, &field, "is not a valid HTTP header name");
            }
            c.template(value, &field)
                .map(|template| (name.clone(), template))
        })
        .collect()
}

pub(super) fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// What a page of `resource` can be read for by `method`: the error and pagination expressions
/// over the page, and under the records path the response mapping and the keyset value over a
/// record. Otherwise why the page is read whole: an expression off the fast path (its reads are
/// unknown), follow-ups (their expressions read records too), fields to omit, records that are
/// not a plain path, XML, or an expression that reads everything anyway.
fn page_reads(
    resource: &Resource,
    response_mapping: &Expression,
    follow_ups: &[&FollowUp],
    errors: Option<&ProviderErrors>,
    body_format: BodyFormat,
) -> Result<PageReads, String> {
    let whole = |why: &str| Err(why.to_owned());
    if body_format != BodyFormat::Json {
        return whole("its answers are XML");
    }
    let Some(records_path) = resource.records_path.as_ref() else {
        return whole("its `records` is not a plain field path");
    };
    // A pass with its own `records` or `pagination` reads its pages its own way: those pages
    // are parsed whole (`Resource::pass_reads_whole`), the others as below.
    if !resource.omit.is_empty() {
        return whole("its resource omits fields");
    }
    let reads_of = |expression: &Expression, what: &str| {
        expression
            .reads()
            .ok_or_else(|| format!("`{what}` runs on the JSONata engine"))
    };
    let mut record = reads_of(response_mapping, "response_mapping")?;
    // A follow-up reads the page's records too, before they are mapped: its `id` (over a record,
    // or over the page's records, where a path reads each record alike) and its `key`.
    let mut followed = ReadSet::default();
    for follow_up in follow_ups {
        // A chained follow-up's `id` reads a record of another follow-up's answer.
        if follow_up.over.is_none() {
            followed.merge(&reads_of(&follow_up.id, "follow_up.id")?);
        }
        if let Some(key) = &follow_up.key {
            followed.merge(&reads_of(key, "follow_up.key")?);
        }
    }
    record.merge(&followed);
    let pagination = &resource.pagination;
    if let Some(after) = &pagination.after_value {
        record.merge(&reads_of(after, "pagination.after_value")?);
    }
    if record.reads_everything() {
        return whole("its records are read whole (`$`, `$keys($)`, `$merge([$, …])`, …)");
    }
    let mut page = ReadSet::default();
    // The records the page's reading gives (what follow-ups are handed) hold what they read.
    page.merge_at(records_path, &followed);
    if let Some(after) = &pagination.after_value {
        page.merge_at(records_path, &reads_of(after, "pagination.after_value")?);
    }
    let over_page = [
        (pagination.next.as_ref(), "pagination.next_cursor"),
        (pagination.has_more.as_ref(), "pagination.has_more"),
        (pagination.total.as_ref(), "pagination.total"),
        (pagination.received.as_ref(), "pagination.received"),
    ]
    .into_iter()
    .chain(errors.into_iter().flat_map(|errors| {
        [
            (errors.when.as_ref(), "errors.when"),
            (errors.status.as_ref(), "errors.status"),
            (errors.message.as_ref(), "errors.message"),
        ]
    }));
    for (expression, what) in over_page {
        if let Some(expression) = expression {
            page.merge(&reads_of(expression, what)?);
        }
    }
    if page.reads_everything() {
        return whole("its pagination or errors expressions read the whole page");
    }
    Ok(PageReads { page, record })
}
