//! Get: `GET /unified/{model}/{resource}/{id}` — one record, fetched with the resource the
//! integration's `get` method names (its `{{id}}` filled, percent-encoded as one path segment),
//! through the same provider-call path as every list page, and mapped as the list maps it, with
//! the list's per-record follow-ups (a user's details) and the page-level ones marked `on_get`
//! (not the others: catalogs of groups walked whole); `$query` is `{"id": …}`. A refusal of the
//! get is confirmed on the list's first page before the account is marked (a provider may refuse
//! one record in the words it refuses a credential with).
//! An id a named pass of the list gives (`pass_ids`: an invitation, a service account) is not
//! asked of the get's resource: that pass of the list is walked until a record maps to it. One
//! the get's resource does not find is looked for the same way in the passes the get names for
//! ids of the resource's own form (`not_found_passes`: bare invitation ids) before its 404 holds.
//! The answer is the record itself (Truto's get has no envelope).

use std::sync::Arc;

use serde_json::{Map, Value};
use unigate_mapping::{
    Answer, Method, MethodKey, extract_records, flatten_query, map_response, render_body,
};
use unigate_pagination::{CursorState, Position};
use unigate_unified::{ApiError, ErrorKind, GetQuery, MAX_LIMIT, ResponseFormat, UnifiedResource};

use crate::Engine;
use crate::normalize::normalize_record;
use crate::page::{body_text, check_answer, mapping_error};
use crate::record::Record;
use crate::request::Endpoint;
use crate::shape::exclude_fields;
use crate::walker::Walker;

impl Engine {
    /// One unified record, as the JSON the caller gets.
    pub async fn get(
        &self,
        model: &str,
        resource: &str,
        id: &str,
        params: Map<String, Value>,
    ) -> Result<Value, ApiError> {
        let unified_resource = self.unified_resource(model, resource)?;
        let query = GetQuery::parse(params)?;
        if id.is_empty() {
            return Err(ApiError::bad_request("the record id is empty"));
        }
        let target = self.target(&query.integrated_account_id)?;
        // Every error from here on may carry the provider's words: cleaned of credentials.
        let answer = async {
            let method = target.method(&MethodKey::new(model, resource, Method::Get))?;
            if let Some(pass) = method.pass_of_id(id) {
                let mut answer = self
                    .get_from_pass(model, resource, id, &pass.pass, &query, unified_resource)
                    .await?;
                exclude_fields(&mut answer, &query.exclude_fields);
                return Ok(answer);
            }
            let direct = self
                .get_direct(model, resource, id, &target, &query, unified_resource)
                .await;
            // An id of the form the get's resource reads that it does not find may be a record
            // only a pass of the list gives (a bare invitation id): looked for there, in order,
            // before the resource's own 404 is the answer.
            let not_found = match direct {
                Err(error) if error.status() == 404 => error,
                direct => return direct,
            };
            for pass in &method.not_found_passes {
                match self
                    .get_from_pass(model, resource, id, pass, &query, unified_resource)
                    .await
                {
                    Ok(mut answer) => {
                        exclude_fields(&mut answer, &query.exclude_fields);
                        return Ok(answer);
                    }
                    Err(error) if error.status() == 404 => continue,
                    Err(error) => return Err(error),
                }
            }
            Err(not_found)
        }
        .await;
        answer.map_err(|error| self.redact(&target, error))
    }

    /// A get asked of the get's resource: the provider's record, mapped as the list maps it.
    async fn get_direct(
        &self,
        model: &str,
        resource: &str,
        id: &str,
        target: &crate::call::Target,
        query: &GetQuery,
        unified_resource: &UnifiedResource,
    ) -> Result<Value, ApiError> {
        let method = target.method(&MethodKey::new(model, resource, Method::Get))?;
        let integration = &target.integration;
        let mut endpoint = Endpoint::render(target, &method.resource, Some(id))?;
        let remote_params = flatten_query(&query.remote_query);
        endpoint.check_remote_params(&remote_params)?;
        endpoint
            .add_params(Vec::new(), Vec::new(), remote_params)
            .map_err(ApiError::internal)?;
        // A get makes only some of the list's follow-ups its mapping reads, but its mapping
        // may be the list's, which reads the others' names: undefined here, on the fast
        // path.
        let list = target
            .method(&MethodKey::new(model, resource, Method::List))
            .ok();
        let scope = target
            .scope
            .with("query", crate::follow::get_query(id))
            .with_possibly_unbound(
                list.iter()
                    .flat_map(|list| list.follow_ups.iter())
                    .map(|follow_up| follow_up.name.as_str())
                    .chain(method.unbound_reads.iter().map(String::as_str)),
            );
        let body = render_body(
            endpoint.resource(),
            None,
            &Position::First,
            1,
            &Value::Object(Map::new()),
            Some(id),
            &scope,
        )
        .map_err(|error| mapping_error(integration, &error))?;
        let request = endpoint.request(body)?;
        let list_key = MethodKey::new(model, resource, Method::List);
        let response = self
            .call_provider_confirmed(target, &endpoint, &request, "get", || {
                self.list_probe(list_key, &target.account.id, &endpoint)
            })
            .await?;
        tracing::info!(
            account = %target.account.id,
            integration = %integration.id,
            status = response.status,
            bytes = response.body.len(),
            "provider record"
        );
        let headers = response.header_pairs();
        let answer = Answer {
            status: response.status,
            headers: &headers,
            body: &response.body,
            format: target.integration.body_format,
        };
        let text = body_text(&response.body);
        // A record asked for and answered with nothing at all (JumpCloud answers a removed
        // user 200 with an empty body) is not there, as a 204 is; for a list page an empty
        // body stays unreadable, since ending a walk on it could lose records unsaid.
        let nothing = answer.is_success() && text.trim().is_empty();
        let body = match nothing {
            true => Value::Null,
            false => check_answer(target, answer, &text, &scope, None)?,
        };
        let record = extract_records(endpoint.resource(), body, &scope)
            .map_err(|error| mapping_error(integration, &error))?
            .into_iter()
            .next()
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::NotFound,
                    format!(
                        "integration `{}` answered without a record for `{id}`",
                        integration.id
                    ),
                )
            })?;
        let mut answer = match query.response_format {
            ResponseFormat::Raw => record,
            format => {
                // The list's follow-ups a get makes that the mapping reads (a user's
                // details, its groups where one call or a few give them).
                let followed = self
                    .follow_get_record(
                        MethodKey::new(model, resource, Method::List),
                        &target.account.id,
                        id,
                        &record,
                        &method.response_mapping.variables_read(),
                    )
                    .await?;
                let scope = followed
                    .into_iter()
                    .fold(scope, |scope, (name, value)| scope.with(&name, value));
                let mut mapped = map_response(method, &record, &scope)
                    .map_err(|error| mapping_error(integration, &error))?;
                check_answered_id(integration, &mapped, id)?;
                if format == ResponseFormat::Normalized {
                    Value::Object(normalize_record(&mapped, &unified_resource.fields))
                } else {
                    if !query.ignore_remote_data {
                        mapped.insert("remote_data".to_owned(), record);
                    }
                    Value::Object(mapped)
                }
            }
        };
        exclude_fields(&mut answer, &query.exclude_fields);
        Ok(answer)
    }

    /// A get of an id that a named pass of the list gives (`pass_ids`: an invitation, a
    /// service account), which the get's resource cannot read: that pass walked from its first
    /// page, for an account that makes it, until a record's unified id is `id`; the record as
    /// the list answers it (its mapping, follow-ups and `remote_data`), else a 404. Every page
    /// of the pass before the record is a provider call: passes are short lists (pending
    /// invitations), and no provider documents a read by such an id for all of them.
    async fn get_from_pass(
        &self,
        model: &str,
        resource: &str,
        id: &str,
        pass: &str,
        query: &GetQuery,
        unified_resource: &UnifiedResource,
    ) -> Result<Value, ApiError> {
        let mut params = Map::from_iter([(
            "integrated_account_id".to_owned(),
            Value::String(query.integrated_account_id.clone()),
        )]);
        if !query.remote_query.is_empty() {
            params.insert(
                "remote_query".to_owned(),
                Value::Object(query.remote_query.clone()),
            );
        }
        let key = MethodKey::new(model, resource, Method::List);
        let mut call = self.prepare_list(key.clone(), params.clone())?;
        let integration = call.target.integration.id.clone();
        let index = (0..call.endpoint.pass_count())
            .find(|&at| call.endpoint.pass_name(at) == Some(pass))
            .ok_or_else(|| {
                ApiError::internal(format!(
                    "integration `{integration}`: the list has no pass `{pass}` (checked at load)"
                ))
            })?;
        if !call.endpoint.makes_pass(index) {
            let flag = call
                .endpoint
                .pass_index(index)
                .and_then(|at| call.resource().passes.get(at))
                .and_then(|made| made.only_with.as_deref())
                .map(|flag| format!(" (its account flag `{flag}` is not set)"))
                .unwrap_or_default();
            return Err(ApiError::not_found(format!(
                "`{id}` would be a record of the `{pass}` part of integration `{integration}`'s list, which this account's list does not read{flag}"
            )));
        }
        // The most a page may hold, where the pass's pagination says (within what a caller's
        // `limit` may ask): fewer calls to reach the record than at the default size.
        let largest = call
            .resource()
            .pagination_of(call.endpoint.pass_index(index))
            .strategy
            .max_page_size
            .map(|largest| largest.min(MAX_LIMIT));
        if let Some(largest) = largest
            && largest != call.page_size_of(index)
        {
            params.insert("limit".to_owned(), Value::String(largest.to_string()));
            call = self.prepare_list(key, params)?;
        }
        let start = CursorState {
            position: Position::First,
            last_digest: None,
            pages: 0,
            pass: index,
            item: None,
        };
        let mut walker = Walker::new(self.clone(), Arc::new(call), start);
        loop {
            let page = walker.next_page().await?;
            let found = page
                .records
                .into_iter()
                .map(Record::into_tree)
                .find(|record| record.get("id").and_then(id_text).as_deref() == Some(id));
            if let Some(Value::Object(mut record)) = found {
                let remote_data = record.remove("remote_data");
                return Ok(match query.response_format {
                    ResponseFormat::Raw => remote_data.unwrap_or(Value::Null),
                    ResponseFormat::Normalized => {
                        Value::Object(normalize_record(&record, &unified_resource.fields))
                    }
                    _ => {
                        if let Some(remote_data) = remote_data.filter(|_| !query.ignore_remote_data)
                        {
                            record.insert("remote_data".to_owned(), remote_data);
                        }
                        Value::Object(record)
                    }
                });
            }
            if page.next.is_none() || walker.state().pass != index {
                return Err(ApiError::new(
                    ErrorKind::NotFound,
                    format!(
                        "integration `{integration}` lists no record `{id}` in the `{pass}` part of its list"
                    ),
                ));
            }
        }
    }

    /// The first page request of the list a get belongs to (and the list's endpoint, whose
    /// budgets it counts in), as a caller naming only the account sends it: what confirms a get's refusal before the account is marked
    /// ([`Engine::call_provider_confirmed`]). None when the get or the list sends a credential of
    /// its own, or the list cannot be asked.
    fn list_probe(
        &self,
        key: MethodKey,
        account_id: &str,
        get: &Endpoint,
    ) -> Option<(Endpoint, unigate_upstream::ProviderRequest)> {
        if get.has_own_credential() {
            return None;
        }
        let params = Map::from_iter([(
            "integrated_account_id".to_owned(),
            Value::String(account_id.to_owned()),
        )]);
        let call = self.prepare_list(key, params).ok()?;
        let request = call.first_page_probe()?;
        Some((call.endpoint, request))
    }
}

/// A get answers the record whose unified `id` is the one asked, never another: providers read
/// aliases by the same path (`me`, Gorgias' and BambooHR's `0`: the credential's own user), a
/// search by id may match a name, and an id the provider reads another way (`07` as 7) names
/// someone else. Such an answer is the gateway's own 404, as an answer without a record is.
fn check_answered_id(
    integration: &unigate_mapping::Integration,
    mapped: &Map<String, Value>,
    id: &str,
) -> Result<(), ApiError> {
    let Some(answered) = mapped.get("id").and_then(id_text) else {
        return Ok(());
    };
    if answered == id {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorKind::NotFound,
        format!(
            "integration `{}` answered the record of `{answered}` when asked for `{id}`",
            integration.id
        ),
    ))
}

/// A unified id as text (a mapping may give a number).
fn id_text(id: &Value) -> Option<String> {
    match id {
        Value::String(id) => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}
