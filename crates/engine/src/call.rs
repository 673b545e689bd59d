//! The unified call: what a caller asked (model, resource, method, query) checked against the
//! unified model and the account's integration. It finds the account (refusing one that needs
//! reauthorization), its integration and the mapped method, parses the query, decides which
//! filters and sort the gateway applies itself, and computes the fingerprint a cursor is bound
//! to. It sends nothing.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use unigate_mapping::reads::PageReads;
use unigate_mapping::{
    Credential, FollowUp, Integration, MethodKey, Resource, Scope, UnifiedMethod, flatten_query,
    map_query, render_credential,
};
use unigate_pagination::Style;
use unigate_store::{AccountStatus, IntegratedAccount};
use unigate_unified::{ApiError, ErrorKind, ListQuery, ResponseFormat, UnifiedResource};

use crate::Engine;
use crate::filter::GatewayFilter;
use crate::page::mapping_error;
use crate::request::Endpoint;

/// The account a call is for: its integration and its credential, resolved once per call.
pub(crate) struct Target {
    pub(crate) account: Arc<IntegratedAccount>,
    pub(crate) integration: Arc<Integration>,
    pub(crate) credential: Credential,
    /// `$context`, for every expression the call evaluates.
    pub(crate) scope: Scope,
}

impl Target {
    /// The unified method `key` of the account's integration, or a 404 naming what is missing.
    pub(crate) fn method(&self, key: &MethodKey) -> Result<&UnifiedMethod, ApiError> {
        self.integration
            .unified_method(&key.model, &key.resource, key.method)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "integration `{}` does not map `{}/{}` {}",
                    self.integration.id, key.model, key.resource, key.method
                ))
            })
    }
}

/// A list call, checked and resolved. Owns its parts so that a stream can outlive the request.
pub(crate) struct ListCall {
    pub(crate) target: Target,
    key: MethodKey,
    pub(crate) endpoint: Endpoint,
    pub(crate) query: ListQuery,
    pub(crate) unified_resource: Arc<UnifiedResource>,
    /// Filters the integration does not push down, applied here.
    pub(crate) gateway_filters: Vec<GatewayFilter>,
    /// For each pass of the walk (by its index), the native filters sent that it does not
    /// apply (`native_filters_by_pass`), applied here to its records; empty when none.
    pub(crate) pass_filters: Vec<Vec<GatewayFilter>>,
    /// Those of `gateway_filters` on a field the mapping builds from follow-up answers.
    pub(crate) follow_up_filters: Vec<FollowUpFilter>,
    /// A `sort_by` the integration does not push down, applied here once all pages are in.
    pub(crate) gateway_sort: Option<String>,
    pub(crate) page_size: u32,
    /// The page size of each pass that walks its pages its own way (`None`: `page_size`).
    pass_page_sizes: Vec<Option<u32>>,
    /// The input of `query_mapping` and of request bodies.
    pub(crate) unified_query: Value,
    /// `$context` and `$query`.
    pub(crate) scope: Scope,
    /// See [`ListCall::fingerprint`].
    fingerprint: std::sync::OnceLock<String>,
    /// Offset and page positions are known before the pages arrive, so a walk that fetches
    /// every page (stream, `truto_ignore_limit`) fetches a window of them at once — unless the
    /// provider's budget counts calls: a window guessed past the last page spends calls of it
    /// (a limit on calls at once only spaces the window out).
    pub(crate) prefetch: bool,
    /// Records are written as JSON text as soon as they are mapped (see [`writes_text`]).
    pub(crate) text_records: bool,
    /// Answers of per-page follow-ups already made in this walk, by follow-up and `{{id}}`: a
    /// page asking what an earlier page asked (the account's roles, its groups) reuses the
    /// answer instead of calling again; and what each chained follow-up (`over:`) found, made
    /// once while its catalog answer stays the same. Taken over from the walk's earlier call
    /// when this one continues it by its cursor.
    pub(crate) walk_answers: Arc<crate::follow::WalkAnswers>,
}

impl ListCall {
    /// What the call's cursors are bound to ([`fingerprint`]), made when a cursor is read or
    /// written: an answer of one page has none.
    pub(crate) fn fingerprint(&self) -> &str {
        self.fingerprint
            .get_or_init(|| fingerprint(&self.key, &self.target.integration.id, &self.query))
    }

    pub(crate) fn method(&self) -> &UnifiedMethod {
        self.target
            .method(&self.key)
            .expect("checked when the call was prepared")
    }

    pub(crate) fn resource(&self) -> &Resource {
        self.endpoint.resource()
    }

    /// Whether this account makes `follow_up` (its `only_with` flag set, or none).
    pub(crate) fn makes(&self, follow_up: &FollowUp) -> bool {
        follow_up.made_for(&self.target.account.context)
    }

    /// What the method's pages can be read for ([`UnifiedMethod::page_reads`]), leaving out
    /// what only the follow-ups this account does not make read.
    pub(crate) fn page_reads(&self) -> Option<&PageReads> {
        let method = self.method();
        let opted_in = (method.follow_ups.iter())
            .any(|follow_up| follow_up.only_with.is_some() && self.makes(follow_up));
        match &method.page_reads_without_opt_ins {
            Some(reads) if !opted_in => reads.as_ref().ok(),
            _ => method.page_reads.as_ref().ok(),
        }
    }

    /// Whether a walk of this call has answers to keep for its next call by cursor: follow-ups'
    /// answers, or a pass's catalog (`over`).
    pub(crate) fn keeps_walk_answers(&self) -> bool {
        !self.method().follow_ups.is_empty()
            || self.endpoint.walks_a_catalog()
            || self.lists_each_id_once()
    }

    /// Whether the walk keeps a unified id that one part listed out of a later part: it makes
    /// two parts or more (passes, or a pass over a catalog) and answers unified records.
    pub(crate) fn lists_each_id_once(&self) -> bool {
        (self.endpoint.made_pass_count() > 1 || self.endpoint.walks_a_catalog())
            && self.query.response_format != ResponseFormat::Raw
    }

    /// The page size pass `pass` of the walk asks for.
    pub(crate) fn page_size_of(&self, pass: u32) -> u32 {
        self.endpoint
            .pass_index(pass)
            .and_then(|index| self.pass_page_sizes.get(index).copied().flatten())
            .unwrap_or(self.page_size)
    }

    pub(crate) fn wants_mapping(&self) -> bool {
        self.query.response_format != ResponseFormat::Raw || self.filters_anywhere()
    }

    /// Whether the gateway filters the records of some pass (every pass's, or one's).
    fn filters_anywhere(&self) -> bool {
        !self.gateway_filters.is_empty() || self.pass_filters.iter().any(|own| !own.is_empty())
    }

    /// The filters the gateway applies to the records of pass `pass` of the walk.
    pub(crate) fn filters_of(&self, pass: u32) -> impl Iterator<Item = &GatewayFilter> {
        let own = self
            .endpoint
            .pass_index(pass)
            .and_then(|index| self.pass_filters.get(index))
            .map(Vec::as_slice)
            .unwrap_or_default();
        self.gateway_filters.iter().chain(own)
    }
}

impl Engine {
    pub(crate) fn unified_resource(
        &self,
        model: &str,
        resource: &str,
    ) -> Result<&Arc<UnifiedResource>, ApiError> {
        self.catalog
            .models
            .get(model)
            .and_then(|found| found.resources.get(resource))
            .ok_or_else(|| {
                ApiError::not_found(format!("unknown unified resource `{model}/{resource}`"))
            })
    }

    /// The account `account_id`, ready to call its provider.
    pub(crate) fn target(&self, account_id: &str) -> Result<Target, ApiError> {
        let account = self.accounts.get(account_id).ok_or_else(|| {
            ApiError::not_found(format!("integrated account `{account_id}` not found"))
        })?;
        if account.status == AccountStatus::NeedsReauth {
            return Err(ApiError::new(
                ErrorKind::Remote {
                    provider_status: 401,
                },
                format!(
                    "integrated account `{}` needs to be reconnected: {}",
                    account.id,
                    account
                        .last_error
                        .as_deref()
                        .unwrap_or("its credentials were refused")
                ),
            ));
        }
        let integration = self
            .integration_of(&account)
            .map_err(|problem| {
                ApiError::internal(format!(
                    "integrated account `{}` cannot use integration `{}`: {problem}",
                    account.id, account.integration
                ))
            })?
            .for_context(&account.context);
        if let Some(retired) = &integration.retired {
            // Asking would end in a DNS or connect error that says nothing of why.
            return Err(ApiError::new(
                ErrorKind::Http { status: 410 },
                format!(
                    "{} was shut down on {}: {} Integrated account `{}` can no longer be served.",
                    integration.name, retired.since, retired.reason, account.id
                ),
            ));
        }
        let credential =
            render_credential(&integration, &account.context, account.base_url.as_deref())
                .map_err(|error| {
                    ApiError::internal(format!(
                        "integrated account `{}` cannot call `{}`: {error}",
                        account.id, integration.id
                    ))
                })?;
        let scope = Scope::new([("context", account.context.clone())]);
        Ok(Target {
            account,
            integration,
            credential,
            scope,
        })
    }

    /// Checks a list query and resolves everything the walk needs.
    pub(crate) fn prepare_list(
        &self,
        key: MethodKey,
        params: Map<String, Value>,
    ) -> Result<ListCall, ApiError> {
        let unified_resource = self.unified_resource(&key.model, &key.resource)?.clone();
        let query = ListQuery::parse(params, &unified_resource)?;
        let target = self.target(&query.integrated_account_id)?;
        let method = target.method(&key)?;
        let gateway_filters = gateway_filters(&query, &target, method, &unified_resource)?;
        let follow_up_filters = follow_up_filters(&query, method, &unified_resource);
        let mut endpoint = Endpoint::render(&target, &method.resource, None)?;
        let pagination = &endpoint.resource().pagination.strategy;
        let remote_params = flatten_query(&query.remote_query);
        endpoint.check_remote_params(&remote_params)?;
        // A page size forced through remote_query is the one the provider will use.
        let forced_page_size = pagination.page_size_param.as_ref().and_then(|param| {
            remote_params
                .iter()
                .find(|(name, _)| name == param)
                .and_then(|(_, value)| value.parse().ok())
        });
        let page_size = forced_page_size
            .unwrap_or_else(|| pagination.page_size(query.limit, self.config.default_limit));
        let pass_page_sizes = endpoint
            .resource()
            .passes
            .iter()
            .map(|pass| {
                let own = pass.pagination.as_ref()?;
                Some(forced_page_size.unwrap_or_else(|| {
                    own.strategy
                        .page_size(query.limit, self.config.default_limit)
                }))
            })
            .collect();
        let prefetch = matches!(pagination.style, Style::Offset { .. } | Style::Page { .. })
            && (query.ignore_limit || query.response_format == ResponseFormat::Stream)
            && self.config.prefetch_window > 1
            && !target
                .integration
                .rate_limit
                .paces
                .iter()
                .chain(&endpoint.resource().paces)
                .any(unigate_mapping::Pace::counts_calls);
        let unified_query = unified_query_value(&query, page_size);
        let scope = target.scope.with("query", unified_query.clone());
        let mapped = map_query(method, &unified_query, &scope)
            .map_err(|error| mapping_error(&target.integration, &error))?;
        // A query mapping that reads `$pass` says what each pass the account makes is sent.
        let pass_names: Vec<Option<String>> = match method.query_reads_pass {
            true => endpoint
                .made_pass_names()
                .into_iter()
                .map(|name| name.map(str::to_owned))
                .collect(),
            false => Vec::new(),
        };
        let by_pass = pass_names
            .into_iter()
            .map(|name| {
                name.map(|name| {
                    let scope = scope.with("pass", Value::String(name));
                    map_query(method, &unified_query, &scope)
                        .map_err(|error| mapping_error(&target.integration, &error))
                })
                .transpose()
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        endpoint
            .add_params(mapped, by_pass, remote_params)
            .map_err(|problem| {
                ApiError::new(
                    ErrorKind::Mapping,
                    format!("the `{}` mapping failed: {problem}", target.integration.id),
                )
            })?;
        let pass_filters = pass_filters(&query, &target, method, &unified_resource, &endpoint)?;
        let gateway_sort = gateway_sort(&query, &target.integration, method, &endpoint)?;
        // A record whose follow-up gave nothing (its flag unset, a 404 skipped) reads the name
        // as undefined, on the fast path; so does one reading a name nothing binds.
        let scope = match method.possibly_unbound().next() {
            None => scope,
            Some(_) => scope.with_possibly_unbound(method.possibly_unbound()),
        };
        let text_records = writes_text(&query, method, &gateway_filters, gateway_sort.as_ref())
            && pass_filters.iter().all(Vec::is_empty);
        Ok(ListCall {
            target,
            key,
            endpoint,
            query,
            unified_resource,
            gateway_filters,
            pass_filters,
            follow_up_filters,
            gateway_sort,
            page_size,
            pass_page_sizes,
            unified_query,
            scope,
            fingerprint: std::sync::OnceLock::new(),
            prefetch,
            text_records,
            walk_answers: Default::default(),
        })
    }
}

/// Whether records of this call can be written as their JSON text at once: nothing in the
/// gateway looks inside them afterwards, and every key of the mapping's object is a literal, so
/// none is `remote_data` (the loader refuses that key; a computed one could still make it, and
/// on the tree `remote_data` then replaces it in place).
fn writes_text(
    query: &ListQuery,
    method: &UnifiedMethod,
    gateway_filters: &[GatewayFilter],
    gateway_sort: Option<&String>,
) -> bool {
    matches!(
        query.response_format,
        ResponseFormat::Unified | ResponseFormat::Stream
    ) && gateway_filters.is_empty()
        && gateway_sort.is_none()
        && query.key_by.is_none()
        && query.exclude_fields.is_empty()
        && method.mapped_fields.is_some()
}

/// The filters the gateway applies itself: every filter sent that is not native. A provider
/// hint (a filter with no record paths in the model) that is not native cannot be honoured.
fn gateway_filters(
    query: &ListQuery,
    target: &Target,
    method: &UnifiedMethod,
    resource: &UnifiedResource,
) -> Result<Vec<GatewayFilter>, ApiError> {
    query
        .filters
        .iter()
        .filter(|(name, _)| !method.native_filters.contains(*name))
        .map(|(name, value)| gateway_filter(name, value, target, method, resource, None))
        .collect()
}

/// For each pass the walk makes, the native filters sent that it does not apply
/// (`native_filters_by_pass`): the gateway applies them to that pass's records. None for a walk
/// without passes (or one that chose its part: its one walk applies every native filter).
fn pass_filters(
    query: &ListQuery,
    target: &Target,
    method: &UnifiedMethod,
    resource: &UnifiedResource,
    endpoint: &Endpoint,
) -> Result<Vec<Vec<GatewayFilter>>, ApiError> {
    if method.native_filters_by_pass.is_empty() {
        return Ok(Vec::new());
    }
    endpoint
        .made_pass_names()
        .into_iter()
        .map(|name| {
            let Some((pass, applied)) =
                name.and_then(|name| method.native_filters_by_pass.get_key_value(name))
            else {
                return Ok(Vec::new());
            };
            query
                .filters
                .iter()
                .filter(|(name, _)| {
                    method.native_filters.contains(*name) && !applied.contains(*name)
                })
                .map(|(name, value)| {
                    gateway_filter(name, value, target, method, resource, Some(pass))
                })
                .collect()
        })
        .collect()
}

/// Filter `name` as the gateway applies it, or the 400 saying why it cannot: on the records of
/// every pass, or of pass `pass` only, which does not apply that native filter.
fn gateway_filter(
    name: &str,
    value: &Value,
    target: &Target,
    method: &UnifiedMethod,
    resource: &UnifiedResource,
    pass: Option<&str>,
) -> Result<GatewayFilter, ApiError> {
    let integration = &target.integration;
    let spec = &resource.filters[name];
    // A field the list gives only with an opt-in flag (`opt_in_fields`): without it, no record
    // has the field, and an empty list would read as "none matches".
    let unset_flag = spec.fields.iter().find_map(|path| {
        let field = path.split('.').next().unwrap_or(path);
        let flag = method.opt_in_fields.get(field)?;
        (!flag_set(&target.account.context, flag)).then_some((field, flag))
    });
    if let Some((field, flag)) = unset_flag {
        return Err(ApiError::bad_request(format!(
            "filter `{name}` cannot match anything for integrated account `{}`: integration `{}` builds `{field}` only for an account whose context sets `{flag}`, which this one does not",
            target.account.id, integration.id
        )));
    }
    if let Some(mapped) = &method.mapped_fields
        && spec.is_gateway_applicable()
        && !spec
            .fields
            .iter()
            .any(|path| mapped.contains(path.split('.').next().unwrap_or(path)))
    {
        return Err(ApiError::bad_request(format!(
            "filter `{name}` cannot match anything: integration `{}` does not provide `{}`",
            integration.id,
            spec.fields.join("`, `")
        )));
    }
    if !spec.is_gateway_applicable() {
        return Err(ApiError::bad_request(match pass {
            None => format!(
                "`{name}` is a provider hint that integration `{}` cannot honour (its native filters: {})",
                integration.id,
                list_or_none(method.native_filters.iter())
            ),
            Some(pass) => format!(
                "`{name}` is a provider hint that the `{pass}` part of integration `{}`'s list cannot honour, and integrated account `{}` lists that part (its native filters there: {})",
                integration.id,
                target.account.id,
                list_or_none(method.native_filters_by_pass[pass].iter())
            ),
        }));
    }
    Ok(GatewayFilter::new(spec, value))
}

/// A gateway filter on a field the mapping builds from follow-up answers (`group_id` on
/// `groups`, read from the `groups` follow-up's answers). A page whose follow-ups were not made
/// for the account (an opt-in flag unset) gives no record that field, so the filter could only
/// answer an empty list: the call says why instead (checked where the page is mapped). Only
/// page-level follow-ups (per page, or chained over one) count: whether they are made is the
/// account's and the page's, where a per-record one may be asked for some records only.
pub(crate) struct FollowUpFilter {
    pub(crate) name: String,
    /// The record's top-level field the filter looks at.
    pub(crate) field: String,
    pub(crate) follow_ups: Vec<String>,
}

fn follow_up_filters(
    query: &ListQuery,
    method: &UnifiedMethod,
    resource: &UnifiedResource,
) -> Vec<FollowUpFilter> {
    query
        .filters
        .keys()
        .filter(|name| !method.native_filters.contains(*name))
        .filter_map(|name| {
            let path = resource.filters.get(name)?.fields.first()?;
            let field = path.split('.').next().unwrap_or(path);
            let follow_ups = method.field_follow_ups.get(field)?;
            let page_level = follow_ups.iter().all(|name| {
                method.follow_ups.iter().any(|follow_up| {
                    follow_up.name == *name && (follow_up.per_page || follow_up.over.is_some())
                })
            });
            if !page_level {
                return None;
            }
            Some(FollowUpFilter {
                name: name.clone(),
                field: field.to_owned(),
                follow_ups: follow_ups.clone(),
            })
        })
        .collect()
}

/// `Some(field)` when the gateway must sort; an error when it cannot. A native sort over a list
/// walked in parts (two passes or more made) orders each part only, so the gateway sorts it too.
fn gateway_sort(
    query: &ListQuery,
    integration: &Integration,
    method: &UnifiedMethod,
    endpoint: &Endpoint,
) -> Result<Option<String>, ApiError> {
    let Some(sort) = &query.sort_by else {
        return Ok(None);
    };
    let parts = endpoint.made_pass_count();
    if method.native_sorts.contains(sort) && parts < 2 {
        return Ok(None);
    }
    let fetches_everything = query.ignore_limit || query.response_format == ResponseFormat::Stream;
    if !fetches_everything {
        return Err(ApiError::bad_request(match parts < 2 {
            true => format!(
                "`sort_by={sort}` is not supported natively by integration `{}` (native sorts: {}); add `truto_ignore_limit=true` to sort every record in the gateway",
                integration.id,
                list_or_none(method.native_sorts.iter())
            ),
            false => format!(
                "`sort_by={sort}`: integration `{}` lists this account's users in {parts} parts, one after another, each sorted on its own at most; add `truto_ignore_limit=true` to sort every record in the gateway",
                integration.id
            ),
        }));
    }
    Ok(Some(sort.clone()))
}

fn list_or_none<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let joined = items.map(String::as_str).collect::<Vec<_>>().join(", ");
    if joined.is_empty() {
        "none".to_owned()
    } else {
        joined
    }
}

/// The input of `query_mapping` and `$query`: filters, sort and the page size.
fn unified_query_value(query: &ListQuery, page_size: u32) -> Value {
    let mut value = query.filters.clone();
    if let Some(sort) = &query.sort_by {
        value.insert("sort_by".into(), json!(sort));
        value.insert(
            "sort_order".into(),
            json!(if query.sort_descending { "desc" } else { "asc" }),
        );
    }
    value.insert("limit".into(), json!(page_size));
    Value::Object(value)
}

/// What a cursor is bound to besides the account: everything that selects records.
fn fingerprint(key: &MethodKey, integration: &str, query: &ListQuery) -> String {
    let canonical = json!({
        "m": key.model, "r": key.resource, "i": integration,
        "f": query.filters, "s": query.sort_by, "d": query.sort_descending,
        "q": query.remote_query,
    });
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &digest[..12],
    )
}

pub(crate) use unigate_mapping::flag_set;
