//! The walks of a list call: one answer of up to a page (or of every page, with
//! `truto_ignore_limit`), and the NDJSON stream of every page from the cursor on. Pages come from
//! the walker (`walker`, which prefetches when it can) and the page room (`page`).

use std::sync::Arc;

use serde_json::{Map, Value};
use unigate_mapping::{Method, MethodKey};
use unigate_pagination::CursorState;
use unigate_unified::{ApiError, ResponseFormat};

use crate::Engine;
use crate::call::ListCall;
use crate::record::{Record, envelope_chunks};
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
    /// The mapping gives a subset of the model's fields (`partial`): Truto's
    /// `is_partial_response`, telling the caller a get gives the rest.
    pub is_partial: bool,
}

impl ListOutput {
    /// The answer's body: `{"result", "next_cursor", "result_count", "prev_cursor"}` as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        self.body_chunks().concat()
    }

    /// The answer's body as the chunks it is sent in, one after another: long runs of records
    /// are their page's own bytes, not a copy of them.
    pub fn body_chunks(&self) -> Vec<bytes::Bytes> {
        envelope_chunks(
            &self.records,
            self.keyed.as_ref(),
            self.next_cursor.as_deref(),
            self.result_count,
            self.is_partial,
        )
    }
}

/// Provider pages one call walks past while gateway filters leave nothing to answer.
const EMPTY_PAGES_WALKED: u32 = 25;

impl Engine {
    /// `GET /unified/{model}/{resource}` answered as one JSON page.
    pub async fn list(
        &self,
        model: &str,
        resource: &str,
        params: Map<String, Value>,
    ) -> Result<ListOutput, ApiError> {
        let mut call = self.prepare_list(MethodKey::new(model, resource, Method::List), params)?;
        if call.query.response_format == ResponseFormat::Stream {
            return Err(ApiError::internal("a stream is answered by `list_stream`"));
        }
        let state = self.start_state(&call)?;
        self.resume_walk_answers(&mut call);
        let call = Arc::new(call);
        let mut walker = Walker::new(self.clone(), call.clone(), state);
        let mut records = Vec::new();
        let mut gathered_bytes = 0usize;
        let mut pages_this_call = 0;
        loop {
            pages_this_call += 1;
            let page = walker.next_page().await?;
            let is_last = page.next.is_none();
            gathered_bytes += page.records.iter().map(Record::sent_size).sum::<usize>();
            records.extend(page.records);
            let gathered_enough = records.len() >= self.config.max_records_per_response
                || gathered_bytes >= self.config.max_bytes_per_response;
            // A page that gateway filters emptied is not an answer: SDKs stop at the second
            // empty page in a row (truto-python-sdk does), so keep walking, within bounds.
            let skip_empty = records.is_empty() && pages_this_call < EMPTY_PAGES_WALKED;
            if !(is_last || !(call.query.ignore_limit || skip_empty) || gathered_enough) {
                continue;
            }
            if let Some(field) = &call.gateway_sort
                && !is_last
            {
                return Err(ApiError::bad_request(format!(
                    "`sort_by={field}` is sorted in the gateway, which needs every record in one answer, but there are more than {} records or {} bytes (max_records_per_response, max_bytes_per_response); narrow the query with filters",
                    self.config.max_records_per_response, self.config.max_bytes_per_response
                )));
            }
            let next_cursor = (!is_last).then(|| {
                self.keep_walk_answers(&call);
                self.codec
                    .encode(&call.target.account.id, call.fingerprint(), walker.state())
            });
            let result_count = records.len();
            // Raw records are the provider's, not the mapping's subset.
            let is_partial =
                call.method().partial && call.query.response_format != ResponseFormat::Raw;
            if call.text_records {
                return Ok(ListOutput {
                    records,
                    keyed: None,
                    result_count,
                    next_cursor,
                    is_partial,
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
                is_partial,
            });
        }
    }

    /// `truto_response_format=stream`: every page from the cursor on, one record per NDJSON line,
    /// at most `window` lines buffered. Errors before the first page are returned; a failure
    /// later ends the stream with the error envelope plus `"truto_stream_error": true`.
    pub async fn list_stream(
        &self,
        model: &str,
        resource: &str,
        params: Map<String, Value>,
        window: usize,
    ) -> Result<tokio::sync::mpsc::Receiver<Vec<u8>>, ApiError> {
        let mut call = self.prepare_list(MethodKey::new(model, resource, Method::List), params)?;
        if let Some(sort) = &call.gateway_sort {
            let id = &call.target.integration.id;
            let why = match call.method().native_sorts.contains(sort) {
                true => format!(
                    "integration `{id}` lists this account's users in {} parts, one after another, each sorted on its own at most",
                    call.endpoint.made_pass_count()
                ),
                false => format!("it is not native to integration `{id}`"),
            };
            return Err(ApiError::bad_request(format!(
                "`sort_by={sort}`: {why}, and a stream is never buffered to sort it; use `truto_ignore_limit=true` instead"
            )));
        }
        if call.query.key_by.is_some() {
            return Err(ApiError::bad_request(
                "`truto_key_by` builds one object and cannot be streamed",
            ));
        }
        let state = self.start_state(&call)?;
        self.resume_walk_answers(&mut call);
        let mut walker = Walker::new(self.clone(), Arc::new(call), state);
        // The first page is fetched before answering, so a bad account or a provider refusal is
        // a plain error status rather than a stream that fails at once.
        let first = walker.next_page().await?;
        let (sender, receiver) = tokio::sync::mpsc::channel(window.max(1));
        // The walk outlives the handler: it keeps the request's id and log span.
        let request_id = crate::current_request_id();
        let span = tracing::Span::current();
        let walk = async move {
            let mut page = first;
            loop {
                for record in page.records.drain(..) {
                    let line = match stream_line(record, walker.call()) {
                        Ok(line) => line,
                        Err(error) => {
                            let _ = sender.send(stream_error_line(&error)).await;
                            return;
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
        };
        let walk = tracing::Instrument::instrument(walk, span);
        match request_id {
            Some(id) => drop(tokio::spawn(crate::REQUEST_ID.scope(id, walk))),
            None => drop(tokio::spawn(walk)),
        }
        Ok(receiver)
    }

    fn start_state(&self, call: &ListCall) -> Result<CursorState, ApiError> {
        match &call.query.next_cursor {
            None => Ok(CursorState::start()),
            Some(cursor) => {
                let state = self
                    .codec
                    .decode(cursor, &call.target.account.id, call.fingerprint())
                    .map_err(|error| ApiError::bad_request(error.to_string()))?;
                // A cursor signed before a reload that took passes out of the mapping, or before
                // the account's flag for its pass was unset.
                if !call.endpoint.makes_pass(state.pass)
                    || (state.item.is_some() && call.endpoint.pass_over(state.pass).is_none())
                {
                    return Err(ApiError::bad_request(
                        "`next_cursor` was issued for a walk in parts that integration's mapping no longer makes for this account; start again without a cursor",
                    ));
                }
                Ok(state)
            }
        }
    }
}

/// One NDJSON line (without its newline).
fn stream_line(record: Record, call: &ListCall) -> Result<Vec<u8>, ApiError> {
    match record {
        Record::Text(text) => Ok(text.as_bytes().to_vec()),
        Record::Tree(tree) => match shape_result(vec![tree], &call.query)? {
            Value::Array(mut one) => {
                Ok(serde_json::to_vec(&one.pop().unwrap_or_default()).unwrap_or_default())
            }
            other => Ok(serde_json::to_vec(&other).unwrap_or_default()),
        },
    }
}

fn stream_error_line(error: &ApiError) -> Vec<u8> {
    let mut envelope = error.to_envelope();
    envelope["truto_stream_error"] = Value::Bool(true);
    envelope.to_string().into_bytes()
}
