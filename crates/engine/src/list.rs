//! The list call: provider pages → unified records → one answer (or an NDJSON stream).

use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use unigate_mapping::{
    ClientAuth, Credential, Expression, Grant, HttpMethod, Integration, MapError, RenderedOAuth2,
    RenderedRequest, Resource, Scope, UnifiedMethod, extract_records, flatten_query, map_query,
    map_response, map_response_json, merge_query, render_request,
};
use unigate_pagination::{CursorState, PageFacts, Position, Style, link_next};
use unigate_store::{AccountStatus, IntegratedAccount};
use unigate_unified::Secret;
use unigate_unified::error::extract_remote_message;
use unigate_unified::{ApiError, ErrorKind, ListQuery, ResponseFormat, UnifiedResource};
use unigate_upstream::oauth::{AccessToken, TokenError, TokenRequest};
use unigate_upstream::{Method, ProviderRequest, ProviderResponse, Url, same_origin};

use crate::Engine;
use crate::filter::GatewayFilter;
use crate::normalize::normalize_record;
use crate::record::{
    Record, RemoteData, append_remote_data, has_line_break, raw_records, write_envelope,
};
use crate::shape::shape_result;
use crate::sort::sort_records;
use crate::walker::Walker;

/// A unified page, ready for the envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct ListOutput {
    records: Vec<Record>,
    /// The records as one object, when `truto_key_by` is set.
    keyed: Option<Value>,
    pub result_count: usize,
    pub next_cursor: Option<String>,
}

impl ListOutput {
    /// The answer's body: `{"result", "next_cursor", "result_count", "prev_cursor"}` as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        write_envelope(
            &self.records,
            self.keyed.as_ref(),
            self.next_cursor.as_deref(),
            self.result_count,
        )
    }
}

/// Everything fixed for the whole call. Owns its parts so a stream can outlive the request.
pub(crate) struct Call {
    pub(crate) prefetch: bool,
    /// Records are written as JSON text as soon as they are mapped (see [`writes_text`]).
    text_records: bool,
    account: Arc<IntegratedAccount>,
    integration: Arc<Integration>,
    method_key: (String, String, String),
    pub(crate) query: ListQuery,
    unified_resource: UnifiedResource,
    /// Filters the integration does not push down, applied here.
    gateway_filters: Vec<GatewayFilter>,
    /// A `sort_by` the integration does not push down, applied here once all pages are in.
    gateway_sort: Option<String>,
    /// The rendered request for the resource's own URL (first page and param-driven pages).
    base_request: RenderedRequest,
    /// Parameters of every param-driven page: the static query, then the mapped query.
    base_params: Vec<(String, String)>,
    /// `remote_query`, applied last on every param-driven page: it wins every conflict.
    remote_params: Vec<(String, String)>,
    base_url: Url,
    /// Where pages after the first go, for providers with a "continue" endpoint.
    continue_url: Option<Url>,
    page_size: u32,
    /// The input of `query_mapping` and of request bodies.
    unified_query: Value,
    scope: Scope,
    fingerprint: String,
}

impl Call {
    pub(crate) fn resource_pagination(&self) -> &unigate_pagination::Pagination {
        &self.resource().pagination.strategy
    }

    pub(crate) fn page_size(&self) -> u32 {
        self.page_size
    }

    fn method(&self) -> &UnifiedMethod {
        let (model, resource, method) = &self.method_key;
        self.integration
            .unified_method(model, resource, method)
            .expect("checked when the call was prepared")
    }

    fn resource(&self) -> &Resource {
        &self.integration.resources[&self.method().resource]
    }

    fn wants_mapping(&self) -> bool {
        self.query.response_format != ResponseFormat::Raw || !self.gateway_filters.is_empty()
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

/// One fetched page, mapped and filtered.
pub(crate) struct Page {
    pub(crate) records: Vec<Record>,
    pub(crate) next: Option<Position>,
    pub(crate) digest: String,
    /// Total records (offset) or pages (page) when the provider says, for prefetching.
    pub(crate) total: Option<u64>,
}

const BODY_EXCERPT: usize = 64 * 1024;

/// Provider pages one call walks past while gateway filters leave nothing to answer.
const EMPTY_PAGES_WALKED: u32 = 25;

/// The provider body as it goes into `raw_response`: JSON when it parses, else (cut) text.
fn raw_body(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| {
        let text = String::from_utf8_lossy(&body[..body.len().min(BODY_EXCERPT)]);
        Value::String(text.into_owned())
    })
}

fn mapping_error(integration: &Integration, error: &MapError) -> ApiError {
    ApiError::new(
        ErrorKind::Mapping,
        format!(
            "the `{}` mapping failed on the provider's response: {error}",
            integration.id
        ),
    )
}

impl Engine {
    /// `GET /unified/{model}/{resource}` answered as one JSON page.
    pub async fn list(
        &self,
        model: &str,
        resource_name: &str,
        params: Map<String, Value>,
    ) -> Result<ListOutput, ApiError> {
        let call = self.prepare(model, resource_name, params)?;
        if call.query.response_format == ResponseFormat::Stream {
            return Err(ApiError::internal("a stream is answered by `list_stream`"));
        }
        let state = self.start_state(&call)?;
        let call = Arc::new(call);
        let mut walker = Walker::new(self.clone(), call.clone(), state);
        let mut records = Vec::new();
        let mut pages_this_call = 0;
        loop {
            pages_this_call += 1;
            let page = walker.next_page().await?;
            let is_last = page.next.is_none();
            records.extend(page.records);
            let gathered_enough = records.len() >= self.config.max_records_per_response;
            // A page that gateway filters emptied is not an answer: SDKs stop at the second
            // empty page in a row (truto-python-sdk does), so keep walking, within bounds.
            let skip_empty = records.is_empty() && pages_this_call < EMPTY_PAGES_WALKED;
            if is_last || !(call.query.ignore_limit || skip_empty) || gathered_enough {
                if let Some(field) = &call.gateway_sort
                    && !is_last
                {
                    return Err(ApiError::bad_request(format!(
                        "`sort_by={field}` is sorted in the gateway, which needs every record in one answer, but there are more than {} (max_records_per_response); narrow the query with filters",
                        self.config.max_records_per_response
                    )));
                }
                let next_cursor = (!is_last).then(|| {
                    self.codec
                        .encode(&call.account.id, &call.fingerprint, walker.state())
                });
                let result_count = records.len();
                if call.text_records {
                    return Ok(ListOutput {
                        records,
                        keyed: None,
                        result_count,
                        next_cursor,
                    });
                }
                let mut trees: Vec<Value> = records.into_iter().map(Record::into_tree).collect();
                if let Some(field) = &call.gateway_sort {
                    sort_records(&mut trees, field, call.query.sort_descending);
                }
                let (records, keyed) = match shape_result(trees, &call.query)? {
                    Value::Array(items) => (items.into_iter().map(Record::Tree).collect(), None),
                    keyed => (Vec::new(), Some(keyed)),
                };
                return Ok(ListOutput {
                    records,
                    keyed,
                    result_count,
                    next_cursor,
                });
            }
        }
    }

    /// `truto_response_format=stream`: every page from the cursor on, one record per NDJSON line,
    /// at most `window` lines buffered. Errors before the first page are returned; a failure
    /// later ends the stream with the error envelope plus `"truto_stream_error": true`.
    pub async fn list_stream(
        &self,
        model: &str,
        resource_name: &str,
        params: Map<String, Value>,
        window: usize,
    ) -> Result<tokio::sync::mpsc::Receiver<Vec<u8>>, ApiError> {
        let call = self.prepare(model, resource_name, params)?;
        if let Some(sort) = &call.gateway_sort {
            return Err(ApiError::bad_request(format!(
                "`sort_by={sort}` is not native to integration `{}`, and a stream is never buffered to sort it; use `truto_ignore_limit=true` instead",
                call.integration.id
            )));
        }
        if call.query.key_by.is_some() {
            return Err(ApiError::bad_request(
                "`truto_key_by` builds one object and cannot be streamed",
            ));
        }
        let state = self.start_state(&call)?;
        let mut walker = Walker::new(self.clone(), Arc::new(call), state);
        // The first page is fetched before answering, so a bad account or a provider refusal is
        // a plain error status rather than a stream that fails at once.
        let first = walker.next_page().await?;
        let (sender, receiver) = tokio::sync::mpsc::channel(window.max(1));
        tokio::spawn(async move {
            let mut page = first;
            loop {
                for record in page.records.drain(..) {
                    let line = match record {
                        Record::Text(text) => text,
                        Record::Tree(tree) => {
                            match shape_result(vec![tree], &walker.call().query) {
                                Ok(Value::Array(mut one)) => {
                                    serde_json::to_vec(&one.pop().unwrap_or_default())
                                        .unwrap_or_default()
                                }
                                Ok(other) => serde_json::to_vec(&other).unwrap_or_default(),
                                Err(error) => {
                                    let _ = sender.send(stream_error_line(&error)).await;
                                    return;
                                }
                            }
                        }
                    };
                    if sender.send(line).await.is_err() {
                        return; // The caller went away.
                    }
                }
                if page.next.is_none() {
                    return;
                }
                page = match walker.next_page().await {
                    Ok(page) => page,
                    Err(error) => {
                        let _ = sender.send(stream_error_line(&error)).await;
                        return;
                    }
                };
            }
        });
        Ok(receiver)
    }

    fn start_state(&self, call: &Call) -> Result<CursorState, ApiError> {
        match &call.query.next_cursor {
            None => Ok(CursorState {
                position: Position::First,
                last_digest: None,
                pages: 0,
            }),
            Some(cursor) => self
                .codec
                .decode(cursor, &call.account.id, &call.fingerprint)
                .map_err(|error| ApiError::bad_request(error.to_string())),
        }
    }

    /// Checks the query and resolves everything one call needs.
    pub(crate) fn prepare(
        &self,
        model: &str,
        resource_name: &str,
        params: Map<String, Value>,
    ) -> Result<Call, ApiError> {
        let unified_resource = self
            .catalog
            .models
            .get(model)
            .and_then(|found| found.resources.get(resource_name))
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "unknown unified resource `{model}/{resource_name}`"
                ))
            })?;
        let query = ListQuery::parse(params, unified_resource)?;
        let account = self
            .accounts
            .get(&query.integrated_account_id)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "integrated account `{}` not found",
                    query.integrated_account_id
                ))
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
            .catalog
            .integrations
            .get(&account.integration)
            .cloned()
            .ok_or_else(|| {
                ApiError::internal(format!(
                    "integrated account `{}` uses integration `{}`, which is not loaded",
                    account.id, account.integration
                ))
            })?;
        let method = integration
            .unified_method(model, resource_name, "list")
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "integration `{}` does not map `{model}/{resource_name}` list",
                    integration.id
                ))
            })?;
        let resource = integration.resources.get(&method.resource).ok_or_else(|| {
            ApiError::internal(format!("`{}` names a missing resource", method.resource))
        })?;
        let gateway_filters = gateway_filters(&query, &integration, method, unified_resource)?;
        let gateway_sort = gateway_sort(&query, &integration, method)?;

        let base_request = render_request(
            &integration,
            resource,
            &account.context,
            account.base_url.as_deref(),
        )
        .map_err(|error| {
            ApiError::internal(format!(
                "integrated account `{}` cannot call `{}`: {error}",
                account.id, integration.id
            ))
        })?;
        let base_url = Url::parse(&base_request.url).map_err(|_| {
            ApiError::internal(format!(
                "integrated account `{}`: the `{}` base URL does not render to an absolute URL",
                account.id, integration.id
            ))
        })?;
        let continue_url = match &resource.pagination.continue_path {
            None => None,
            Some(path) => {
                let base = match &account.base_url {
                    Some(base) => base.clone(),
                    None => integration
                        .base_url
                        .render(&account.context)
                        .map_err(|error| {
                            ApiError::internal(format!(
                                "integrated account `{}`: {error}",
                                account.id
                            ))
                        })?,
                };
                let path = path.render(&account.context).map_err(|error| {
                    ApiError::internal(format!("integrated account `{}`: {error}", account.id))
                })?;
                Some(
                    Url::parse(&format!("{}{path}", base.trim_end_matches('/'))).map_err(|_| {
                        ApiError::internal("the continue path does not render to an absolute URL")
                    })?,
                )
            }
        };
        let pagination = &resource.pagination.strategy;
        let remote_params = flatten_query(&query.remote_query);
        // A page size forced through remote_query is the one the provider will use.
        let forced_page_size = pagination.page_size_param.as_ref().and_then(|param| {
            remote_params
                .iter()
                .find(|(name, _)| name == param)
                .and_then(|(_, value)| value.parse().ok())
        });
        let page_size = forced_page_size
            .unwrap_or_else(|| pagination.page_size(query.limit, self.config.default_limit));
        let unified_query = unified_query_value(&query, page_size);
        let scope = Scope::new([
            ("context", account.context.clone()),
            ("query", unified_query.clone()),
        ]);
        let mapped = map_query(method, &unified_query, &scope)
            .map_err(|error| mapping_error(&integration, &error))?;
        let mut base_params = base_request.query.clone();
        merge_query(&mut base_params, mapped);
        let fingerprint = fingerprint(model, resource_name, &integration.id, &query);
        // Offset and page positions are known before the pages arrive, so walks that fetch every
        // page (stream, truto_ignore_limit) fetch a window of them at once.
        let prefetch = matches!(pagination.style, Style::Offset { .. } | Style::Page { .. })
            && (query.ignore_limit || query.response_format == ResponseFormat::Stream)
            && self.config.prefetch_window > 1;
        let text_records = writes_text(&query, method, &gateway_filters, gateway_sort.as_ref());
        Ok(Call {
            prefetch,
            text_records,
            method_key: (
                model.to_owned(),
                resource_name.to_owned(),
                "list".to_owned(),
            ),
            unified_resource: unified_resource.clone(),
            account,
            integration,
            query,
            gateway_filters,
            gateway_sort,
            base_request,
            base_params,
            remote_params,
            base_url,
            continue_url,
            page_size,
            unified_query,
            scope,
            fingerprint,
        })
    }

    /// The request for the page at `position`. `bearer` is the OAuth access token, when the
    /// integration uses OAuth.
    fn provider_request(
        &self,
        call: &Call,
        position: &Position,
        bearer: Option<&Secret>,
    ) -> Result<ProviderRequest, ApiError> {
        let pagination = &call.resource().pagination.strategy;
        let page = pagination.request_for(position, call.page_size);
        let url = match page.url {
            Some(next) => {
                let url = Url::parse(&next)
                    .map_err(|_| ApiError::bad_request("`next_cursor` holds an unusable URL"))?;
                if !same_origin(&url, &call.base_url) {
                    return Err(foreign_origin());
                }
                url
            }
            None => {
                let mut params = call.base_params.clone();
                merge_query(&mut params, page.params);
                // remote_query goes last and wins: the caller asked for exactly these
                // parameters. It only ever adds query parameters: host, path and headers do not
                // come from the query, and a credential parameter is dropped here and added
                // from the account at send time.
                merge_query(&mut params, call.remote_params.clone());
                if let Credential::Query { param, .. } = &call.base_request.credential {
                    params.retain(|(name, _)| name != param);
                }
                let mut url = match (position, &call.continue_url) {
                    (Position::Token(_), Some(continue_url)) => continue_url.clone(),
                    _ => call.base_url.clone(),
                };
                if !params.is_empty() {
                    url.query_pairs_mut().extend_pairs(params);
                }
                url
            }
        };
        let (secret_header, secret_query) = match &call.base_request.credential {
            Credential::None => (None, None),
            Credential::Header { name, value } => (Some((name.clone(), value.clone())), None),
            Credential::Query { param, value } => (None, Some((param.clone(), value.clone()))),
            Credential::OAuth2(_) => {
                let token =
                    bearer.ok_or_else(|| ApiError::internal("an OAuth call without a token"))?;
                (
                    Some((
                        "Authorization".to_owned(),
                        Secret::new(format!("Bearer {}", token.expose())),
                    )),
                    None,
                )
            }
        };
        let body = match &call.resource().body {
            None => None,
            Some(expression) => {
                let input = json!({
                    "cursor": match position { Position::Token(token) => json!(token), _ => Value::Null },
                    "offset": match position { Position::Offset(offset) => *offset, _ => 0 },
                    "page": match position {
                        Position::Page(page) => *page,
                        _ => match pagination.style {
                            unigate_pagination::Style::Page { first_page, .. } => first_page,
                            _ => 1,
                        },
                    },
                    "page_size": call.page_size,
                    "query": call.unified_query,
                });
                let built = expression
                    .evaluate(&input, &call.scope)
                    .map_err(|error| {
                        mapping_error(
                            &call.integration,
                            &MapError::Eval {
                                what: "body",
                                error,
                            },
                        )
                    })?
                    .unwrap_or(Value::Null);
                Some(built.to_string().into_bytes())
            }
        };
        let mut headers = call.base_request.headers.clone();
        if body.is_some()
            && !headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
        }
        Ok(ProviderRequest {
            method: match call.base_request.method {
                HttpMethod::Get => Method::Get,
                HttpMethod::Post => Method::Post,
            },
            url,
            headers,
            secret_header,
            secret_query,
            body,
        })
    }

    pub(crate) async fn fetch_page(
        &self,
        call: &Call,
        state: &CursorState,
    ) -> Result<Page, ApiError> {
        let (request, response) = self.send_page(call, &state.position).await?;
        tracing::info!(
            account = %call.account.id,
            integration = %call.integration.id,
            status = response.status,
            bytes = response.body.len(),
            "provider page"
        );
        let text = std::str::from_utf8(&response.body).ok();
        let body = check_response(call, &response, text)?;
        let resource = call.resource();
        let digest = page_digest(&response.body);
        let compiled = &resource.pagination;
        // Pagination expressions read the body, and `$headers` (names lower-case) for providers
        // that put the next cursor or the totals in headers. They run before the records are
        // moved out of the body.
        let headers: serde_json::Map<String, Value> = response
            .headers
            .iter()
            .filter_map(|(name, value)| {
                Some((
                    name.as_str().to_owned(),
                    Value::String(value.to_str().ok()?.to_owned()),
                ))
            })
            .collect();
        let page_scope = call.scope.with("headers", Value::Object(headers));
        let evaluate = |expression: &Option<Expression>, what: &'static str| {
            expression
                .as_ref()
                .map(|expression| expression.evaluate(&body, &page_scope))
                .transpose()
                .map(Option::flatten)
                .map_err(|error| mapping_error(&call.integration, &MapError::Eval { what, error }))
        };
        let as_token = |value: Value| match value {
            Value::String(text) => Some(text),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        };
        let body_next = match compiled.strategy.style {
            Style::LinkHeader => response.header("link").and_then(link_next),
            Style::Keyset { .. } => None,
            _ => evaluate(&compiled.next, "pagination.next")?.and_then(as_token),
        };
        let total = evaluate(&compiled.total, "pagination.total")?.and_then(|v| as_count(&v));
        let has_more =
            evaluate(&compiled.has_more, "pagination.has_more")?.and_then(|v| truthy(&v));
        let records = extract_records(resource, body, &call.scope)
            .map_err(|error| mapping_error(&call.integration, &error))?;
        // The provider's bytes of each record, for `remote_data` written as they came.
        let raw = match &resource.records_path {
            Some(path) if call.text_records && !call.query.ignore_remote_data => text
                .and_then(|text| raw_records(text, path))
                .filter(|raw| raw.len() == records.len()),
            _ => None,
        };
        let next = match (
            &compiled.strategy.style,
            &compiled.after_value,
            records.last(),
        ) {
            (Style::Keyset { .. }, Some(expression), Some(last)) => expression
                .evaluate(last, &call.scope)
                .map_err(|error| {
                    mapping_error(
                        &call.integration,
                        &MapError::Eval {
                            what: "pagination.after_value",
                            error,
                        },
                    )
                })?
                .and_then(as_token),
            (Style::Keyset { .. }, _, _) => None,
            _ => body_next,
        };
        let next = match (&compiled.strategy.style, next) {
            (Style::LinkHeader | Style::NextUrl, Some(link)) => {
                Some(checked_next_url(call, &request.url, &link)?)
            }
            (_, next) => next,
        };
        let facts = PageFacts {
            next,
            record_count: records.len(),
            has_more,
            total,
            digest: digest.clone(),
        };
        let next = compiled
            .strategy
            .next_position(
                &state.position,
                call.page_size,
                &facts,
                state.last_digest.as_deref(),
                state.pages + 1,
            )
            .map_err(|error| ApiError::new(ErrorKind::BadGateway, error.to_string()))?;
        let raw = raw.map(|raw| (raw, !has_line_break(&response.body)));
        let records = map_records(call, records, raw)?;
        Ok(Page {
            records,
            next,
            total,
            digest,
        })
    }
}

impl Engine {
    /// Sends one page request, with OAuth handled: a token from the cache or the token
    /// endpoint; a provider 401 on a cached token is retried once with a fresh one; a 401 on a
    /// fresh token, or a refused refresh, marks the account `needs_reauth`.
    async fn send_page(
        &self,
        call: &Call,
        position: &Position,
    ) -> Result<(ProviderRequest, ProviderResponse), ApiError> {
        let Credential::OAuth2(oauth) = &call.base_request.credential else {
            let request = self.provider_request(call, position, None)?;
            let response = self
                .send_with_policy(&request, &call.integration.rate_limit, &call.scope)
                .await?;
            return Ok((request, response));
        };
        let token_request = token_request(oauth, &call.account.context)?;
        let mut rejected: Option<Secret> = None;
        loop {
            let issued = self
                .tokens
                .access_token(&call.account.id, &token_request, rejected.as_ref())
                .await
                .map_err(|error| self.token_failure(call, error))?;
            if issued.fresh {
                // Persisted with the account, so a restart (or the encrypted store) reuses it.
                let store = &self.accounts;
                store.set_context_value(
                    &call.account.id,
                    "access_token",
                    Value::String(issued.token.token.expose().to_owned()),
                );
                store.set_context_value(
                    &call.account.id,
                    "access_token_expires_at",
                    issued.token.expires_at.map_or(Value::Null, |at| {
                        Value::String(unigate_unified::time::format_rfc3339(at * 1000))
                    }),
                );
            }
            if let Some(rotated) = &issued.rotated_refresh_token
                && let Some(key) = self.refresh_token_key(call)
            {
                self.accounts.set_context_value(
                    &call.account.id,
                    &key,
                    Value::String(rotated.expose().to_owned()),
                );
            }
            let request = self.provider_request(call, position, Some(&issued.token.token))?;
            let response = self
                .send_with_policy(&request, &call.integration.rate_limit, &call.scope)
                .await?;
            if response.status == 401 {
                if !issued.fresh && rejected.is_none() {
                    rejected = Some(issued.token.token.clone());
                    continue;
                }
                self.accounts.set_status(
                    &call.account.id,
                    AccountStatus::NeedsReauth,
                    Some(
                        "the provider refused a freshly issued access token (HTTP 401)".to_owned(),
                    ),
                );
            }
            return Ok((request, response));
        }
    }

    /// The context key the integration's refresh token comes from, for writing a rotated one back.
    fn refresh_token_key(&self, call: &Call) -> Option<String> {
        match &call.integration.auth {
            unigate_mapping::Auth::OAuth2(oauth) => {
                oauth.refresh_token.as_ref()?.single_context_key()
            }
            _ => None,
        }
    }

    fn token_failure(&self, call: &Call, error: TokenError) -> ApiError {
        match error {
            TokenError::Rejected { status, body } => {
                let raw = raw_body(body.as_bytes());
                let detail =
                    extract_remote_message(&raw).unwrap_or_else(|| format!("HTTP {status}"));
                self.accounts.set_status(
                    &call.account.id,
                    AccountStatus::NeedsReauth,
                    Some(format!("token refresh refused: {detail}")),
                );
                ApiError::remote(
                    401,
                    format!(
                        "the provider refused to issue an access token ({detail}); reconnect the integrated account"
                    ),
                    raw,
                )
            }
            TokenError::Unavailable(reason) => ApiError::new(
                ErrorKind::BadGateway,
                format!("could not obtain an access token: {reason}"),
            ),
        }
    }
}

/// The upstream token request for an account, with a token the context already holds
/// (`access_token`, `access_token_expires_at`) used while it is valid.
fn token_request(oauth: &RenderedOAuth2, context: &Value) -> Result<TokenRequest, ApiError> {
    let token_url = Url::parse(&oauth.token_url).map_err(|_| {
        ApiError::internal("the OAuth token URL does not render to an absolute URL")
    })?;
    let seeded = context
        .get("access_token")
        .and_then(Value::as_str)
        .map(|token| AccessToken {
            token: Secret::new(token),
            expires_at: context
                .get("access_token_expires_at")
                .and_then(unigate_unified::time::parse_json_timestamp)
                .map(|millis| millis / 1000),
        });
    Ok(TokenRequest {
        grant: match oauth.grant {
            Grant::RefreshToken => unigate_upstream::oauth::Grant::RefreshToken,
            Grant::ClientCredentials => unigate_upstream::oauth::Grant::ClientCredentials,
        },
        token_url,
        client_id: oauth.client_id.clone(),
        client_secret: oauth.client_secret.clone(),
        refresh_token: oauth.refresh_token.clone(),
        scope: oauth.scope.clone(),
        basic_client_auth: oauth.client_auth == ClientAuth::Basic,
        seeded,
        extra_params: oauth.token_params.clone(),
    })
}

fn foreign_origin() -> ApiError {
    ApiError::new(
        ErrorKind::BadGateway,
        "the provider's next-page URL points outside the integration's origin; refusing to follow it",
    )
}

/// Resolves a next link against the URL it came with, refuses other origins, and drops a
/// credential query parameter so it never travels inside a cursor.
fn checked_next_url(call: &Call, current: &Url, link: &str) -> Result<String, ApiError> {
    let mut url = current.join(link).map_err(|_| {
        ApiError::new(
            ErrorKind::BadGateway,
            "the provider's next-page link is not a URL",
        )
    })?;
    if !same_origin(&url, &call.base_url) {
        return Err(foreign_origin());
    }
    if let Credential::Query { param, .. } = &call.base_request.credential {
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(name, _)| name != param)
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        url.set_query(None);
        if !kept.is_empty() {
            url.query_pairs_mut().extend_pairs(kept);
        }
    }
    Ok(url.to_string())
}

/// Provider records → what the caller gets: mapped (with `remote_data` unless dropped),
/// filtered in the gateway, normalized or raw as asked. `raw`: the provider's bytes of each
/// record, and whether the body was free of line breaks.
fn map_records(
    call: &Call,
    records: Vec<Value>,
    raw: Option<(Vec<&RawValue>, bool)>,
) -> Result<Vec<Record>, ApiError> {
    if !call.wants_mapping() {
        return Ok(records.into_iter().map(Record::Tree).collect());
    }
    let method = call.method();
    let mut out = Vec::with_capacity(records.len());
    if call.text_records {
        for (index, record) in records.iter().enumerate() {
            let raw_text = raw
                .as_ref()
                .map(|(raw, compact)| (raw[index].get(), *compact));
            let mut text = Vec::with_capacity(raw_text.map_or(1024, |(raw, _)| raw.len() + 1024));
            map_response_json(method, record, &call.scope, &mut text)
                .map_err(|error| mapping_error(&call.integration, &error))?;
            if !call.query.ignore_remote_data {
                let remote = match raw_text {
                    Some((text, compact)) => RemoteData::Raw { text, compact },
                    None => RemoteData::Tree(record),
                };
                append_remote_data(&mut text, remote);
            }
            out.push(Record::Text(text));
        }
        return Ok(out);
    }
    for record in records {
        let mut mapped = map_response(method, &record, &call.scope)
            .map_err(|error| mapping_error(&call.integration, &error))?;
        if !call
            .gateway_filters
            .iter()
            .all(|filter| filter.matches(&mapped))
        {
            continue;
        }
        out.push(Record::Tree(match call.query.response_format {
            ResponseFormat::Raw => record,
            ResponseFormat::Normalized => {
                Value::Object(normalize_record(&mapped, &call.unified_resource.fields))
            }
            ResponseFormat::Unified | ResponseFormat::Stream => {
                if !call.query.ignore_remote_data {
                    mapped.insert("remote_data".to_owned(), record);
                }
                Value::Object(mapped)
            }
        }));
    }
    Ok(out)
}

fn stream_error_line(error: &ApiError) -> Vec<u8> {
    let mut envelope = error.to_envelope();
    envelope["truto_stream_error"] = Value::Bool(true);
    envelope.to_string().into_bytes()
}

/// A provider answer → its JSON body, or the remote error it stands for.
/// `text` is the body when it is valid UTF-8 (checked once for the whole body, so that parsing
/// does not check every string again).
fn check_response(
    call: &Call,
    response: &ProviderResponse,
    text: Option<&str>,
) -> Result<Value, ApiError> {
    if !(200..300).contains(&response.status) {
        let raw = raw_body(&response.body);
        let message = extract_remote_message(&raw)
            .unwrap_or_else(|| format!("the provider answered HTTP {}", response.status));
        return Err(ApiError::remote(response.status, message, raw));
    }
    let parsed = match text {
        Some(text) => serde_json::from_str(text),
        None => serde_json::from_slice(&response.body),
    };
    let body: Value = parsed.map_err(|error| {
        ApiError::new(
            ErrorKind::BadGateway,
            format!("the provider's response is not valid JSON ({error})"),
        )
        .with_raw_response(raw_body(&response.body))
    })?;
    if let Some(errors) = &call.integration.errors {
        let failed = errors
            .when
            .evaluate(&body, &call.scope)
            .map_err(|error| {
                mapping_error(
                    &call.integration,
                    &MapError::Eval {
                        what: "errors.when",
                        error,
                    },
                )
            })?
            .is_some_and(|value| truthy(&value) == Some(true));
        if failed {
            let status = errors
                .status
                .as_ref()
                .and_then(|expression| expression.evaluate(&body, &call.scope).ok().flatten())
                .and_then(|value| value.as_u64())
                .and_then(|status| u16::try_from(status).ok())
                .filter(|status| (400..600).contains(status))
                .unwrap_or(502);
            let message = match &errors.message {
                Some(expression) => expression
                    .evaluate(&body, &call.scope)
                    .ok()
                    .flatten()
                    .and_then(|value| value.as_str().map(str::to_owned)),
                None => extract_remote_message(&body),
            }
            .unwrap_or_else(|| "the provider reported an error".to_owned());
            return Err(ApiError::remote(status, message, body));
        }
    }
    Ok(body)
}

/// The filters the gateway applies itself: every filter sent that is not native. A provider
/// hint (a filter with no record paths in the model) that is not native cannot be honoured.
fn gateway_filters(
    query: &ListQuery,
    integration: &Integration,
    method: &UnifiedMethod,
    resource: &UnifiedResource,
) -> Result<Vec<GatewayFilter>, ApiError> {
    let mut filters = Vec::new();
    for (name, value) in &query.filters {
        if method.native_filters.contains(name) {
            continue;
        }
        let spec = &resource.filters[name];
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
            return Err(ApiError::bad_request(format!(
                "`{name}` is a provider hint that integration `{}` cannot honour (its native filters: {})",
                integration.id,
                list_or_none(method.native_filters.iter())
            )));
        }
        filters.push(GatewayFilter::new(spec, value));
    }
    Ok(filters)
}

/// `Some(field)` when the gateway must sort; an error when it cannot.
fn gateway_sort(
    query: &ListQuery,
    integration: &Integration,
    method: &UnifiedMethod,
) -> Result<Option<String>, ApiError> {
    let Some(sort) = &query.sort_by else {
        return Ok(None);
    };
    if method.native_sorts.contains(sort) {
        return Ok(None);
    }
    let fetches_everything = query.ignore_limit || query.response_format == ResponseFormat::Stream;
    if !fetches_everything {
        return Err(ApiError::bad_request(format!(
            "`sort_by={sort}` is not supported natively by integration `{}` (native sorts: {}); add `truto_ignore_limit=true` to sort every record in the gateway",
            integration.id,
            list_or_none(method.native_sorts.iter())
        )));
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
fn fingerprint(model: &str, resource: &str, integration: &str, query: &ListQuery) -> String {
    let canonical = json!({
        "m": model, "r": resource, "i": integration,
        "f": query.filters, "s": query.sort_by, "d": query.sort_descending,
        "q": query.remote_query,
    });
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &digest[..12],
    )
}

/// A digest of the page as received, for the identical-page guard. A fast non-cryptographic
/// hash of the body bytes: the cursor that carries it is signed, and re-serializing every record
/// to hash it cost more than mapping them. (A provider whose repeated page differs only in a
/// request id slips past this guard; the repeated-cursor and endless-walk guards still stop it.)
/// Four independent lanes of eight bytes (a multiply-xorshift mix per word, the length folded
/// in), so the multiplications overlap: SipHash, which resists chosen inputs that nothing here
/// needs to resist, cost ten times as much per page.
fn page_digest(body: &[u8]) -> String {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mix = |hash: u64, word: u64| {
        let hash = (hash ^ word).wrapping_mul(K);
        hash ^ (hash >> 29)
    };
    let word = |bytes: &[u8]| {
        let mut padded = [0u8; 8];
        padded[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(padded)
    };
    let mut lanes = [1u64, 2, 3, 4].map(|lane| (body.len() as u64 + lane).wrapping_mul(K));
    let mut blocks = body.chunks_exact(32);
    for block in &mut blocks {
        for (lane, bytes) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            *lane = mix(*lane, word(bytes));
        }
    }
    for (lane, bytes) in lanes.iter_mut().zip(blocks.remainder().chunks(8)) {
        *lane = mix(*lane, word(bytes));
    }
    let hash = lanes.iter().fold(K, |hash, lane| mix(mix(hash, *lane), K));
    format!("{hash:016x}")
}

fn truthy(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(flag) => Some(*flag),
        Value::Null => Some(false),
        Value::Number(number) => Some(number.as_f64() != Some(0.0)),
        Value::String(text) => Some(!matches!(text.as_str(), "false" | "")),
        Value::Array(items) => Some(!items.is_empty()),
        Value::Object(_) => Some(true),
    }
}

fn as_count(value: &Value) -> Option<u64> {
    match value {
        Value::Number(number) => number
            .as_u64()
            .or_else(|| number.as_f64().map(|f| f as u64)),
        Value::String(text) => text.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::page_digest;

    #[test]
    fn page_digests_tell_pages_apart_by_every_byte() {
        let page = br#"[{"id":"00u1","status":"ACTIVE"},{"id":"00u2","status":"STAGED"}]"#;
        let copy = page.to_vec(); // same bytes, elsewhere in memory
        assert_eq!(page_digest(page), page_digest(&copy));
        let mut seen = std::collections::HashSet::new();
        seen.insert(page_digest(page));
        // One byte changed anywhere (a full word or the tail), one byte more or less.
        for at in [0, 9, page.len() - 3, page.len() - 1] {
            let mut changed = page.to_vec();
            changed[at] ^= 1;
            assert!(seen.insert(page_digest(&changed)), "byte {at}");
        }
        assert!(seen.insert(page_digest(&page[..page.len() - 1])));
        assert!(seen.insert(page_digest(&[page.as_slice(), b" "].concat())));
        assert!(seen.insert(page_digest(b"")));
        assert!(seen.insert(page_digest(&[0u8; 8])));
    }
}
