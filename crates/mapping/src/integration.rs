//! Compiled integrations: the validated runtime form of a mapping file, built once at load.

use std::collections::{BTreeMap, BTreeSet};

use unigate_pagination::{Pagination, Style};
use unigate_unified::UnifiedModel;

use crate::diagnostics::FileCompiler;
use crate::expression::Expression;
use crate::spec::{
    AuthKind, ClientAuth, HttpMethod, IntegrationSpec, PaginationSpec, ResourceSpec, StyleName,
    Text,
};
use crate::template::Template;

/// Walks longer than this are endless unless a mapping says otherwise.
pub const DEFAULT_MAX_PAGES: u32 = 100_000;

#[derive(Debug)]
pub struct Integration {
    pub id: String,
    pub name: String,
    pub docs: String,
    pub base_url: Template,
    pub headers: Vec<(String, Template)>,
    pub auth: Auth,
    pub errors: Option<BodyErrors>,
    pub rate_limit: RateLimit,
    /// `resource.method` → resource, e.g. `users.list`.
    pub resources: BTreeMap<String, Resource>,
    /// `(model, resource, method)` → unified method.
    pub unified: BTreeMap<(String, String, String), UnifiedMethod>,
}

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

/// Rate-limit detection; every expression reads `{status, headers, body}`.
#[derive(Debug)]
pub struct RateLimit {
    pub is_limited: Expression,
    /// Whether `is_limited` reads the body; when it does not, a body is parsed for it only once
    /// the answer is known to be limited (the default, `status = 429`, never reads it).
    pub is_limited_reads_body: bool,
    pub retry_after: Option<Expression>,
    pub reset_epoch: Option<Expression>,
    pub limit: Option<Expression>,
    pub remaining: Option<Expression>,
}

/// Errors a provider reports inside a 2xx body.
#[derive(Debug)]
pub struct BodyErrors {
    pub when: Expression,
    pub status: Option<Expression>,
    pub message: Option<Expression>,
}

#[derive(Debug)]
pub struct Resource {
    pub method: HttpMethod,
    pub path: Template,
    pub query: Vec<(String, Template)>,
    pub records: Expression,
    /// `records` as plain field names when it is only a path (`$`, `members`, `data.users`),
    /// found at load so each page can move its records out of the body.
    pub records_path: Option<Vec<String>>,
    /// JSON request body over `{cursor, page_size, offset, page, query}` (GraphQL, search APIs).
    pub body: Option<Expression>,
    pub pagination: CompiledPagination,
}

/// A pagination strategy and the expressions that read its facts off a response body.
#[derive(Debug)]
pub struct CompiledPagination {
    pub strategy: Pagination,
    /// Next token or next URL, per style (over the body).
    pub next: Option<Expression>,
    /// Keyset style: the value the next request starts after (over the last record).
    pub after_value: Option<Expression>,
    /// Cursor style: the path of pages after the first.
    pub continue_path: Option<Template>,
    pub has_more: Option<Expression>,
    /// Total records (offset, SCIM) or total pages (page).
    pub total: Option<Expression>,
}

#[derive(Debug)]
pub struct UnifiedMethod {
    /// Key into [`Integration::resources`].
    pub resource: String,
    pub partial: bool,
    pub native_filters: BTreeSet<String>,
    pub native_sorts: BTreeSet<String>,
    pub query_mapping: Option<Expression>,
    pub response_mapping: Expression,
    /// The unified fields the response mapping can produce, when its shape is visible at load
    /// (a top-level object constructor); `None` when computed.
    pub mapped_fields: Option<BTreeSet<String>>,
}

impl Integration {
    /// Every `context.…` key the integration's templates read, for checking accounts at startup.
    pub fn context_keys(&self) -> BTreeSet<String> {
        let mut templates: Vec<&Template> = vec![&self.base_url];
        templates.extend(self.headers.iter().map(|(_, template)| template));
        match &self.auth {
            Auth::None => {}
            Auth::Header { value, .. } | Auth::Query { value, .. } => templates.push(value),
            Auth::Basic { username, password } => templates.extend([username, password]),
            Auth::Bearer { token } => templates.push(token),
            Auth::OAuth2(oauth) => {
                templates.extend([&oauth.token_url, &oauth.client_id, &oauth.client_secret]);
                templates.extend(oauth.refresh_token.iter().chain(oauth.scope.iter()));
                templates.extend(oauth.token_params.iter().map(|(_, template)| template));
            }
        }
        for resource in self.resources.values() {
            templates.push(&resource.path);
            templates.extend(resource.query.iter().map(|(_, template)| template));
        }
        templates
            .into_iter()
            .flat_map(Template::context_keys)
            .collect()
    }

    pub fn unified_method(
        &self,
        model: &str,
        resource: &str,
        method: &str,
    ) -> Option<&UnifiedMethod> {
        self.unified
            .get(&(model.to_owned(), resource.to_owned(), method.to_owned()))
    }
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
    let headers = spec
        .headers
        .iter()
        .filter_map(|(name, value)| {
            let path = format!("headers.{name}");
            if !is_token(name) {
                c.error_at(value, &path, "is not a valid HTTP header name");
            }
            c.template(value, &path)
                .map(|template| (name.clone(), template))
        })
        .collect();
    let auth = compile_auth(&auth_spec, c);
    // `Err(())` = present but broken (already reported).
    let errors: Result<Option<BodyErrors>, ()> = match &spec.errors {
        None => Ok(None),
        Some(errors) => {
            let when = c.expression(&errors.when, "errors.when");
            let status = c.optional_expression(errors.status.as_ref(), "errors.status");
            let message = c.optional_expression(errors.message.as_ref(), "errors.message");
            match (when, status, message) {
                (Some(when), Ok(status), Ok(message)) => Ok(Some(BodyErrors {
                    when,
                    status,
                    message,
                })),
                _ => Err(()),
            }
        }
    };
    let rate_limit = compile_rate_limit(spec.rate_limit.as_ref(), c);
    let mut resources = BTreeMap::new();
    for (resource_name, methods) in &spec.resources {
        for (method_name, resource) in methods {
            let path = format!("resources.{resource_name}.{method_name}");
            let pagination = resource.pagination.as_ref().or(spec.pagination.as_ref());
            if let Some(compiled) = compile_resource(resource, pagination, &path, c) {
                resources.insert(format!("{resource_name}.{method_name}"), compiled);
            }
        }
    }
    let mut unified = BTreeMap::new();
    for (model_name, model_resources) in &spec.unified {
        let model = models.get(model_name);
        for (resource_name, methods) in model_resources {
            for (method_name, method) in methods {
                let path = format!("unified.{model_name}.{resource_name}.{method_name}");
                let (Some(method_resource), Some(response_mapping_text)) =
                    (&method.resource, &method.response_mapping)
                else {
                    let line = method
                        .resource
                        .as_ref()
                        .or(method.response_mapping.as_ref())
                        .map_or(1, |text| text.referenced.line());
                    c.error_line(line, &path, "needs `resource` and `response_mapping` (here or in the file this one extends)");
                    continue;
                };
                let native_filters = method.native_filters.clone().unwrap_or_default();
                let native_sorts = method.native_sorts.clone().unwrap_or_default();
                let unified_resource = match model {
                    None => {
                        c.error_at(method_resource, &path, &format!("unknown unified model `{model_name}` (no mappings/models/{model_name}.yaml)"));
                        None
                    }
                    Some(model) => {
                        let found = model.resources.get(resource_name);
                        if found.is_none() {
                            c.error_at(
                                method_resource,
                                &path,
                                &format!("model `{model_name}` has no resource `{resource_name}`"),
                            );
                        }
                        found
                    }
                };
                if !resources.contains_key(&method_resource.value)
                    && !spec.resources.iter().any(|(r, ms)| {
                        ms.keys()
                            .any(|m| format!("{r}.{m}") == method_resource.value)
                    })
                {
                    c.error_at(
                        method_resource,
                        &format!("{path}.resource"),
                        &format!(
                            "names `{}`, which is not a `resource.method` under `resources`",
                            method_resource.value
                        ),
                    );
                }
                for (index, filter) in native_filters.iter().enumerate() {
                    if let Some(resource) = unified_resource
                        && !resource.filters.contains_key(&filter.value)
                    {
                        c.error_at(
                            filter,
                            &format!("{path}.native_filters[{index}]"),
                            &format!("`{}` is not a filter of the unified model", filter.value),
                        );
                    }
                }
                for (index, sort) in native_sorts.iter().enumerate() {
                    if let Some(resource) = unified_resource
                        && !resource.sorts.contains(&sort.value)
                    {
                        c.error_at(
                            sort,
                            &format!("{path}.native_sorts[{index}]"),
                            &format!("`{}` is not a sort key of the unified model", sort.value),
                        );
                    }
                }
                if !native_filters.is_empty() && method.query_mapping.is_none() {
                    c.error_at(
                        &native_filters[0],
                        &format!("{path}.native_filters"),
                        "native filters need a `query_mapping` that pushes them down",
                    );
                }
                let query_mapping = c.optional_expression(
                    method.query_mapping.as_ref(),
                    &format!("{path}.query_mapping"),
                );
                let response_mapping =
                    c.expression(response_mapping_text, &format!("{path}.response_mapping"));
                if let (Some(resource), Some(keys)) = (
                    unified_resource,
                    response_mapping.as_ref().and_then(Expression::object_keys),
                ) {
                    for key in keys {
                        if !resource.fields.contains_key(&key) {
                            c.error_at(
                                response_mapping_text,
                                &format!("{path}.response_mapping"),
                                &format!(
                                    "produces `{key}`, which is not a field of the unified model"
                                ),
                            );
                        }
                    }
                }
                if let (Ok(query_mapping), Some(response_mapping)) =
                    (query_mapping, response_mapping)
                {
                    unified.insert(
                        (
                            model_name.clone(),
                            resource_name.clone(),
                            method_name.clone(),
                        ),
                        UnifiedMethod {
                            resource: method_resource.value.clone(),
                            partial: method.partial.unwrap_or(false),
                            native_filters: native_filters
                                .iter()
                                .map(|f| f.value.clone())
                                .collect(),
                            native_sorts: native_sorts.iter().map(|s| s.value.clone()).collect(),
                            mapped_fields: response_mapping
                                .object_keys()
                                .map(|keys| keys.into_iter().collect()),
                            query_mapping,
                            response_mapping,
                        },
                    );
                }
            }
        }
    }
    Some(Integration {
        id: id.to_owned(),
        name,
        docs: docs.value,
        base_url: base_url?,
        headers,
        auth: auth?,
        errors: errors.ok()?,
        rate_limit: rate_limit?,
        resources,
        unified,
    })
}

fn compile_rate_limit(
    spec: Option<&crate::spec::RateLimitSpec>,
    c: &mut FileCompiler<'_>,
) -> Option<RateLimit> {
    let default = || Expression::compile("status = 429").expect("a constant expression compiles");
    let Some(spec) = spec else {
        return Some(RateLimit {
            is_limited: default(),
            is_limited_reads_body: false,
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
    Some(RateLimit {
        is_limited_reads_body: spec
            .is_limited
            .as_ref()
            .is_some_and(|text| text.value.contains("body")),
        is_limited: is_limited.ok()?.unwrap_or_else(default),
        retry_after: retry_after.ok()?,
        reset_epoch: reset_epoch.ok()?,
        limit: limit.ok()?,
        remaining: remaining.ok()?,
    })
}

fn url_origin_is_invalid(url: &str) -> bool {
    !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 10
}

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn compile_auth(spec: &crate::spec::AuthSpec, c: &mut FileCompiler<'_>) -> Option<Auth> {
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

fn compile_resource(
    resource: &ResourceSpec,
    pagination: Option<&PaginationSpec>,
    path: &str,
    c: &mut FileCompiler<'_>,
) -> Option<Resource> {
    if !resource.path.value.starts_with('/') && !resource.path.value.is_empty() {
        c.error_at(
            &resource.path,
            &format!("{path}.path"),
            "must start with `/`",
        );
    }
    let template = c.template(&resource.path, &format!("{path}.path"));
    let query: Vec<(String, Template)> = resource
        .query
        .iter()
        .filter_map(|(name, value)| {
            c.template(value, &format!("{path}.query.{name}"))
                .map(|template| (name.clone(), template))
        })
        .collect();
    let records = c.expression(&resource.records, &format!("{path}.records"));
    let body = c.optional_expression(resource.body.as_ref(), &format!("{path}.body"));
    if resource.body.is_some() && resource.method != HttpMethod::Post {
        c.error_at(
            &resource.path,
            &format!("{path}.body"),
            "a request body needs `method: POST`",
        );
    }
    let pagination = match pagination {
        Some(spec) => compile_pagination(spec, &format!("{path}.pagination"), c),
        None => Some(CompiledPagination {
            strategy: Pagination {
                style: Style::None,
                page_size_param: None,
                max_page_size: None,
                default_page_size: None,
                max_pages: DEFAULT_MAX_PAGES,
            },
            next: None,
            after_value: None,
            continue_path: None,
            has_more: None,
            total: None,
        }),
    };
    Some(Resource {
        method: resource.method,
        path: template?,
        query,
        records_path: records.as_ref().and_then(Expression::simple_path),
        records: records?,
        body: body.ok()?,
        pagination: pagination?,
    })
}

fn compile_pagination(
    spec: &PaginationSpec,
    path: &str,
    c: &mut FileCompiler<'_>,
) -> Option<CompiledPagination> {
    let style_name = spec.style.value;
    // Which optional fields each style reads; any other one set is a mistake worth reporting.
    let used: &[&str] = match style_name {
        StyleName::Cursor => &["cursor_param", "next_cursor", "continue_path"],
        StyleName::PageToken => &["token_param", "next_token"],
        StyleName::NextUrl => &["next_url"],
        StyleName::LinkHeader | StyleName::None => &[],
        StyleName::Offset => &["offset_param", "has_more", "total"],
        StyleName::Page => &["page_param", "first_page", "has_more", "total_pages"],
        StyleName::Scim => &["start_index_param", "total"],
        StyleName::Keyset => &["after_param", "after_value"],
        StyleName::Graphql => &["next_cursor", "has_more"],
    };
    let set: [(&str, bool); 15] = [
        ("continue_path", spec.continue_path.is_some()),
        ("after_param", spec.after_param.is_some()),
        ("after_value", spec.after_value.is_some()),
        ("cursor_param", spec.cursor_param.is_some()),
        ("next_cursor", spec.next_cursor.is_some()),
        ("token_param", spec.token_param.is_some()),
        ("next_token", spec.next_token.is_some()),
        ("next_url", spec.next_url.is_some()),
        ("offset_param", spec.offset_param.is_some()),
        ("page_param", spec.page_param.is_some()),
        ("first_page", spec.first_page.is_some()),
        ("start_index_param", spec.start_index_param.is_some()),
        ("has_more", spec.has_more.is_some()),
        ("total", spec.total.is_some()),
        ("total_pages", spec.total_pages.is_some()),
    ];
    let style_label = format!("{style_name:?}").to_lowercase();
    let mut ok = true;
    for (name, is_set) in set {
        if is_set && !used.contains(&name) {
            c.error_at(
                &spec.style,
                &format!("{path}.{name}"),
                &format!("is not used by pagination style `{style_label}`"),
            );
            ok = false;
        }
    }
    let mut required = |present: bool, name: &str| {
        if !present {
            c.error_at(
                &spec.style,
                path,
                &format!("pagination style `{style_label}` needs `{name}`"),
            );
            ok = false;
        }
    };
    match style_name {
        StyleName::Cursor => {
            required(
                spec.cursor_param.is_some() || spec.continue_path.is_some(),
                "cursor_param",
            );
            required(spec.next_cursor.is_some(), "next_cursor");
        }
        StyleName::PageToken => {
            required(spec.token_param.is_some(), "token_param");
            required(spec.next_token.is_some(), "next_token");
        }
        StyleName::NextUrl => required(spec.next_url.is_some(), "next_url"),
        StyleName::Offset => required(spec.offset_param.is_some(), "offset_param"),
        StyleName::Page => required(spec.page_param.is_some(), "page_param"),
        StyleName::Keyset => required(spec.after_param.is_some(), "after_param"),
        StyleName::Graphql => required(spec.next_cursor.is_some(), "next_cursor"),
        _ => {}
    }
    if let (Some(max), Some(default)) = (spec.max_page_size, spec.default_page_size)
        && default > max
    {
        c.error_at(
            &spec.style,
            &format!("{path}.default_page_size"),
            "is larger than `max_page_size`",
        );
        ok = false;
    }
    let continue_path = match &spec.continue_path {
        None => Ok(None),
        Some(text) => c
            .template(text, &format!("{path}.continue_path"))
            .map(Some)
            .ok_or(()),
    };
    let mut optional = |text: &Option<Text>, name: &str| {
        c.optional_expression(text.as_ref(), &format!("{path}.{name}"))
    };
    let next = optional(&spec.next_cursor, "next_cursor")
        .and_then(|a| Ok(a.or(optional(&spec.next_token, "next_token")?)))
        .and_then(|a| Ok(a.or(optional(&spec.next_url, "next_url")?)));
    let has_more = optional(&spec.has_more, "has_more");
    // The keyset value is read off the last record; `id` unless the mapping says otherwise.
    let after_value = match (style_name, optional(&spec.after_value, "after_value")) {
        (StyleName::Keyset, Ok(None)) => Ok(Some(
            Expression::compile("id").expect("a constant expression compiles"),
        )),
        (_, other) => other,
    };
    let mut total = optional(&spec.total, "total")
        .and_then(|a| Ok(a.or(optional(&spec.total_pages, "total_pages")?)));
    if style_name == StyleName::Scim && matches!(total, Ok(None)) {
        total = Ok(Some(
            Expression::compile("totalResults").expect("a constant expression compiles"),
        ));
    }
    let page_size_param = spec
        .page_size_param
        .clone()
        .or_else(|| (style_name == StyleName::Scim).then(|| "count".to_owned()));
    let style = match style_name {
        StyleName::Cursor => Style::Cursor {
            cursor_param: spec.cursor_param.clone(),
        },
        StyleName::PageToken => Style::PageToken {
            token_param: spec.token_param.clone().unwrap_or_default(),
        },
        StyleName::NextUrl => Style::NextUrl,
        StyleName::LinkHeader => Style::LinkHeader,
        StyleName::Offset => Style::Offset {
            offset_param: spec.offset_param.clone().unwrap_or_default(),
        },
        StyleName::Page => Style::Page {
            page_param: spec.page_param.clone().unwrap_or_default(),
            first_page: spec.first_page.unwrap_or(1),
        },
        StyleName::Scim => Style::Scim {
            start_index_param: spec
                .start_index_param
                .clone()
                .unwrap_or_else(|| "startIndex".to_owned()),
        },
        StyleName::Keyset => Style::Keyset {
            after_param: spec.after_param.clone().unwrap_or_default(),
        },
        StyleName::Graphql => Style::Graphql,
        StyleName::None => Style::None,
    };
    if !ok {
        return None;
    }
    Some(CompiledPagination {
        strategy: Pagination {
            style,
            page_size_param,
            max_page_size: spec.max_page_size,
            default_page_size: spec.default_page_size,
            max_pages: spec.max_pages.unwrap_or(DEFAULT_MAX_PAGES),
        },
        next: next.ok()?,
        continue_path: continue_path.ok()?,
        after_value: after_value.ok()?,
        has_more: has_more.ok()?,
        total: total.ok()?,
    })
}
