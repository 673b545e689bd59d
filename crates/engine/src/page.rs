//! The page: one provider page of a list walk, sent through the provider-call path (`auth`),
//! checked (an error status, or a 2xx body the mapping marks as an error, becomes the remote
//! error it stands for), read (records, next position, totals: `answer::read_page`) and mapped
//! into what the caller gets.

use std::hash::{BuildHasher, Hasher};

use serde_json::Value;
use unigate_mapping::doc::{Doc, parse_doc};
use unigate_mapping::reads::{
    ReadSet, parse_pruned, parse_pruned_with_docs, parse_pruned_with_records, reads_each_record,
};
use unigate_mapping::{
    Answer, BodyFormat, Integration, MapError, Scope, body_fault, map_doc_response_json,
    map_response, map_response_json, read_body, read_page, render_body, status_fault,
};
use unigate_pagination::{CursorState, PageFacts, PaginationError, Position, Style};
use unigate_unified::{ApiError, ErrorKind, ResponseFormat};

use crate::Engine;
use crate::call::{ListCall, Target};
use crate::follow::FollowedUp;
use crate::normalize::normalize_record;
use crate::record::{
    Record, RecordText, RemoteData, append_remote_data, has_line_break, record_texts,
    record_texts_from_keys,
};

/// One fetched page, mapped and filtered.
pub(crate) struct Page {
    pub(crate) records: Vec<Record>,
    pub(crate) next: Option<Position>,
    /// Total records (offset) or pages (page) when the provider says, for prefetching.
    pub(crate) total: Option<u64>,
    /// The provider's body as received, for [`Page::digest`].
    body: bytes::Bytes,
}

impl Page {
    /// A page that lists nothing and ends its part: a catalog record whose list the provider
    /// does not find, or a walk past its last catalog.
    pub(crate) fn empty() -> Page {
        Page {
            records: Vec::new(),
            next: None,
            total: None,
            body: bytes::Bytes::new(),
        }
    }

    /// The identical-page guard's digest of the page ([`page_digest`]). Made only where a
    /// page is compared with the one before it or another follows (the walk's cursor carries
    /// it): a single-page answer never hashes its body.
    pub(crate) fn digest(&self) -> String {
        page_digest(&self.body)
    }
}

pub(crate) fn mapping_error(integration: &Integration, error: &MapError) -> ApiError {
    // `$error(…)` is the mapping's own refusal, in its author's words: of the caller's query (a
    // filter the provider cannot take) a 400; of the provider's answer (a shape it cannot serve
    // whole, Trello's full batch of guests) a 502, as an unreadable answer is. Any other failure
    // is the mapping's fault, a 500.
    if let MapError::Eval { what, error } = error
        && error.code == RAISED_BY_MAPPING
    {
        match *what {
            "query_mapping" => {
                return ApiError::bad_request(format!(
                    "integration `{}` cannot send this query: {}",
                    integration.id, error.message
                ));
            }
            "records" | "response_mapping" | "errors.when" | "pagination.after_value" => {
                return ApiError::new(
                    ErrorKind::BadGateway,
                    format!(
                        "integration `{}` answered what the gateway cannot serve: {}",
                        integration.id, error.message
                    ),
                );
            }
            _ => {}
        }
    }
    ApiError::new(
        ErrorKind::Mapping,
        format!(
            "the `{}` mapping failed on the provider's response: {error}",
            integration.id
        ),
    )
}

/// The JSONata error code of `$error(message)`.
const RAISED_BY_MAPPING: &str = "D3137";

impl ListCall {
    /// The first pass this account's walk makes (`None`: none at all).
    pub(crate) fn first_pass(&self) -> Option<u32> {
        match self.endpoint.makes_pass(0) {
            true => Some(0),
            false => self.endpoint.next_pass(0),
        }
    }

    /// The request of the list's first page, as this call would send it: what confirms a
    /// refusal of a get or of a later pass before the account is marked
    /// ([`Engine::call_provider_confirmed`]). None when the list sends a credential of its own
    /// (a refusal of it says nothing of the file's), or its first page cannot be rendered.
    pub(crate) fn first_page_probe(&self) -> Option<unigate_upstream::ProviderRequest> {
        if self.endpoint.has_own_credential() {
            return None;
        }
        let pass = self.first_pass()?;
        let page_size = self.page_size_of(pass);
        let body = render_body(
            self.resource(),
            self.endpoint.pass_index(pass),
            &Position::First,
            page_size,
            &self.unified_query,
            None,
            &self.scope,
        )
        .ok()?;
        self.endpoint
            .page_request(&Position::First, pass, None, page_size, body)
            .ok()
    }
}

impl Engine {
    /// The page at `state`; `over`: in a pass over a catalog, the catalog record the page's
    /// list is of (`state.item`), which its records see as `$over`.
    pub(crate) async fn fetch_page(
        &self,
        call: &ListCall,
        state: &CursorState,
        over: Option<&Value>,
    ) -> Result<Page, ApiError> {
        let integration = &call.target.integration;
        let pass = call.endpoint.pass_index(state.pass);
        let page_size = call.page_size_of(state.pass);
        let item = state.item.as_ref().map(|at| at.id.as_str());
        let body = render_body(
            call.resource(),
            pass,
            &state.position,
            page_size,
            &call.unified_query,
            item,
            &call.scope,
        )
        .map_err(|error| mapping_error(integration, &error))?;
        let request =
            call.endpoint
                .page_request(&state.position, state.pass, item, page_size, body)?;
        let response = match call.first_pass() {
            // A later pass reads another part of the list (invitations, guests, service
            // accounts), which the credential may be refused while the members are not.
            Some(first) if state.pass > first => {
                self.call_provider_confirmed(
                    &call.target,
                    &call.endpoint,
                    &request,
                    "a later pass's page",
                    || call.first_page_probe().map(|probe| (&call.endpoint, probe)),
                )
                .await?
            }
            _ => {
                self.call_provider(&call.target, &call.endpoint, &request)
                    .await?
            }
        };
        tracing::info!(
            account = %call.target.account.id,
            integration = %integration.id,
            status = response.status,
            bytes = response.body.len(),
            "provider page"
        );
        let headers = response.header_pairs();
        let answer = Answer {
            status: response.status,
            headers: &headers,
            body: &response.body,
            format: integration.body_format,
        };
        let text = body_text(&response.body);
        let text = text.as_ref();
        let large = response.body.len() >= LARGE_PAGE_BYTES;
        let resource = call.resource();
        // Records written as text from the fast path need only what the page's expressions
        // read; each record is parsed from its own bytes with what its mapping reads, and the
        // JSONata engine gets a record re-read whole from them.
        let reads = call.page_reads().filter(|_| {
            call.text_records
                && integration.body_format == BodyFormat::Json
                && !resource.pass_reads_whole(pass)
        });
        // The provider's bytes of each record, for `remote_data` written as they came. With
        // fields to omit, `remote_data` is written from the records as extracted.
        let records_path = resource.records_of(pass).1.filter(|_| {
            call.text_records
                && integration.body_format == BodyFormat::Json
                && resource.omit_of(pass).next().is_none()
        });
        // A pass over a catalog reads its records with the catalog record as `$over` too (a
        // list that may answer another container's records keeps its own).
        let over_scope = over.map(|record| call.scope.with("over", record.clone()));
        let read_scope = over_scope.as_ref().unwrap_or(&call.scope);
        let (reading, raw, docs, line_break) = off_the_workers(large, || {
            let read_records = |body| {
                read_page(resource, pass, answer, body, read_scope)
                    .map_err(|error| mapping_error(integration, &error))
            };
            if let (Some(reads), Some(path)) = (reads, records_path)
                && !reads_each_record(&reads.page, path)
            {
                // One pass over the body reads what the page's expressions read and parses each
                // record with what the mapping reads. Each record's bytes are then found from
                // where that pass met its first key, or else by a scan of the body's structure
                // (no parse).
                let (body, page) =
                    check_page_answer(&call.target, answer, text, &call.scope, true, || {
                        parse_pruned_with_docs(text, &reads.page, &reads.record, path)
                    })?;
                let reading = read_records(body)?;
                if let Some(page) = page.filter(|page| page.docs.len() == reading.records.len())
                    && let Some(raw) = record_texts_from_keys(text, &page.first_keys)
                        .or_else(|| record_texts(text, path))
                        .filter(|raw| raw.len() == page.docs.len())
                {
                    return Ok((reading, Some(raw), Some(page.docs), page.line_break));
                }
            }
            if let (Some(reads), Some(path)) = (reads, records_path) {
                // The page reads something of each record: the pass takes each record's bytes,
                // which are then parsed with what the mapping reads.
                let (body, raw) =
                    check_page_answer(&call.target, answer, text, &call.scope, true, || {
                        parse_pruned_with_records(text, &reads.page, path).map(|(body, raw)| {
                            (
                                body,
                                raw.map(|raw| {
                                    raw.iter().map(|record| record.get()).collect::<Vec<_>>()
                                }),
                            )
                        })
                    })?;
                let reading = read_records(body)?;
                if let Some(raw) = raw.filter(|raw| raw.len() == reading.records.len()) {
                    let docs = parse_docs(&raw, &reads.record, answer)?;
                    return Ok((reading, Some(raw), Some(docs), None));
                }
                // Not an array of records there: read whole, as without reads.
            }
            let (body, _) =
                check_page_answer(&call.target, answer, text, &call.scope, false, || {
                    serde_json::from_str(text).map(|body| (body, None::<Vec<&str>>))
                })?;
            let reading = read_records(body)?;
            let raw = records_path
                .filter(|_| !call.query.ignore_remote_data)
                .and_then(|path| record_texts(text, path))
                .filter(|raw| raw.len() == reading.records.len());
            Ok::<_, ApiError>((reading, raw, None, None))
        })?;
        let pagination = resource.pagination_of(pass);
        let strategy = &pagination.strategy;
        let received = reading.received();
        let next = match (&strategy.style, reading.next) {
            // An empty link is "no next page" (Confluent answers `"next": ""` on its last page);
            // resolved, it would name the page just read.
            (Style::LinkHeader | Style::NextUrl, Some(link)) if link.trim().is_empty() => None,
            (Style::LinkHeader | Style::NextUrl, Some(link)) => {
                Some(call.endpoint.checked_next_url(
                    &request.url,
                    &link,
                    pagination.next_url_keeps_query,
                    state.pass,
                )?)
            }
            (_, next) => next,
        };
        let facts = PageFacts {
            next,
            record_count: received,
            has_more: reading.has_more,
            total: reading.total,
            digest: state
                .last_digest
                .as_ref()
                .map(|_| page_digest(&response.body)),
        };
        let next = match strategy.next_position(
            &state.position,
            page_size,
            &facts,
            state.last_digest.as_deref(),
            state.pages + 1,
        ) {
            // The last page again for a page past the end (`last_page_repeats`): the walk is
            // over, and this page's records were given with the page before.
            Err(PaginationError::IdenticalPage) if strategy.last_page_repeats => {
                return Ok(Page {
                    records: Vec::new(),
                    next: None,
                    total: reading.total,
                    body: response.body.clone(),
                });
            }
            next => {
                next.map_err(|error| ApiError::new(ErrorKind::BadGateway, error.to_string()))?
            }
        };
        // Whether the records can be copied as they are: told by the page's scan where it
        // could, else found by a look at the body.
        let compact = || !line_break.unwrap_or_else(|| has_line_break(&response.body));
        let raw = raw.map(|raw| (raw, compact()));
        // A named pass's records see its name as `$pass` (invitations beside the members), in
        // the response mapping and in the follow-ups' expressions over them.
        let pass_scope = call.endpoint.pass_name(state.pass).map(|name| {
            let scope = call.scope.with("pass", Value::String(name.to_owned()));
            match over {
                Some(record) => scope.with("over", record.clone()),
                None => scope,
            }
        });
        let scope = pass_scope.as_ref().unwrap_or(&call.scope);
        let followed = match call.method().follow_ups.is_empty() || !call.wants_mapping() {
            true => None,
            false => Some(self.follow_up(call, scope, &reading.records).await?),
        };
        let budget = self.config.page_mapping_budget;
        let mapping = std::time::Instant::now();
        // Filters on fields built from follow-ups that gave the walk's first page nothing (see
        // `FollowUpFilter`): asked of the first page only, so a stream never fails past its head.
        let followed = followed.map(|followed| {
            let unanswered = match state.pages == 0 && !reading.records.is_empty() {
                true => call
                    .follow_up_filters
                    .iter()
                    .filter(|filter| !filter.follow_ups.iter().any(|name| followed.asked(name)))
                    .collect(),
                false => Vec::new(),
            };
            (followed, unanswered)
        });
        let records = off_the_workers(large, || {
            map_records(
                call,
                state.pass,
                scope,
                reading.records,
                raw,
                docs,
                followed,
                budget,
            )
        })?;
        self.metrics
            .page(&integration.id, records.len(), mapping.elapsed());
        Ok(Page {
            records,
            next,
            total: reading.total,
            body: response.body.clone(),
        })
    }
}

/// A provider page at least this large is parsed and mapped off the async workers.
const LARGE_PAGE_BYTES: usize = 256 * 1024;

/// Runs CPU-heavy page work (parsing, mapping) on the current thread, moved out of the async
/// worker pool when the page is large, so other requests keep their workers meanwhile. On a
/// single-threaded runtime (tests) it runs in place.
fn off_the_workers<T>(large: bool, work: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if large && multi_thread {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

/// Each record's bytes parsed with what its mapping reads. A record that is not JSON the gateway
/// can read (a number out of range where the mapping reads one) fails the page as an unreadable
/// body would.
fn parse_docs<'b>(
    raw: &[&'b str],
    reads: &ReadSet,
    answer: Answer<'_>,
) -> Result<Vec<Doc<'b>>, ApiError> {
    raw.iter()
        .enumerate()
        .map(|(index, record)| {
            parse_doc(record, reads).map_err(|error| {
                ApiError::new(
                    ErrorKind::BadGateway,
                    format!("the provider's response is not valid JSON (record {index}: {error})"),
                )
                .with_raw_response(unigate_mapping::raw_body(answer.body))
            })
        })
        .collect()
}

/// A provider body as text. Bytes that are not UTF-8 (a provider's bug, usually in one field)
/// become U+FFFD, as a browser shows them, instead of failing the whole page: every path
/// (records, `remote_data`, the JSONata engine) then reads the same replaced text.
pub(crate) fn body_text(body: &[u8]) -> std::borrow::Cow<'_, str> {
    // The common case (all valid) is checked by `simdutf8`, in a third of std's instructions
    // on an 86 KB page and far fewer than the lossy decoder's chunk walk; it only says
    // whether the text is valid, and the lossy decoder then finds where not.
    match simdutf8::basic::from_utf8(body) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(body),
    }
}

/// A provider answer → its JSON body, or the remote error it stands for. `text` is the body as
/// text ([`body_text`]), so that parsing does not check every string for UTF-8 again; `reads`:
/// parse only those fields.
pub(crate) fn check_answer(
    target: &Target,
    answer: Answer<'_>,
    text: &str,
    scope: &Scope,
    reads: Option<&ReadSet>,
) -> Result<Value, ApiError> {
    let parse = || match reads {
        Some(reads) => parse_pruned(text, reads).map(|body| (body, None::<()>)),
        None => serde_json::from_str(text).map(|body| (body, None)),
    };
    check_page_answer(target, answer, text, scope, reads.is_some(), parse).map(|(body, _)| body)
}

/// [`check_answer`] with the JSON parse the caller gives (`pruned`: it reads only some
/// fields), which may take the records on the same pass.
fn check_page_answer<R>(
    target: &Target,
    answer: Answer<'_>,
    text: &str,
    scope: &Scope,
    pruned: bool,
    parse_json: impl FnOnce() -> serde_json::Result<(Value, Option<R>)>,
) -> Result<(Value, Option<R>), ApiError> {
    if !answer.is_success() {
        let fault = status_fault(&target.integration, answer, scope);
        return Err(ApiError::remote(fault.status, fault.message, fault.body));
    }
    // 204 No Content: the provider says there is nothing (Zoho answers a list with no records
    // this way); whatever body came with it is not read.
    let parsed = match answer.format {
        _ if answer.status == 204 => Ok((Value::Null, None)),
        BodyFormat::Json => parse_json().map_err(|e| e.to_string()),
        format => read_body(format, answer.body).map(|body| (body, None)),
    };
    let (body, raw) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            // A provider that answers some errors as plain text (LastPass's "Authorization
            // Error") is judged by the mapping's `errors.when` over the text as a JSON string;
            // any other unreadable body is the provider's fault.
            let as_text = Value::String(text.to_owned());
            // An expression written for JSON bodies may fail on a string (an `Err`): the answer
            // is then what it was, an unreadable body.
            if let Ok(Some(fault)) = body_fault(&target.integration, answer, &as_text, scope) {
                return Err(ApiError::remote(fault.status, fault.message, fault.body));
            }
            return Err(ApiError::new(
                ErrorKind::BadGateway,
                match answer.format {
                    BodyFormat::Json => {
                        format!("the provider's response is not valid JSON ({error})")
                    }
                    BodyFormat::Xml => {
                        format!("the provider's response is not a readable XML document ({error})")
                    }
                },
            )
            .with_raw_response(unigate_mapping::raw_body(answer.body)));
        }
    };
    match body_fault(&target.integration, answer, &body, scope) {
        Ok(None) => Ok((body, raw)),
        Ok(Some(mut fault)) => {
            // The caller gets the provider's whole body, not the fields the mapping reads.
            if pruned {
                fault.body = answer.raw_value();
            }
            Err(ApiError::remote(fault.status, fault.message, fault.body))
        }
        Err(error) => Err(mapping_error(&target.integration, &error)),
    }
}

/// Provider records → what the caller gets: mapped (with `remote_data` unless dropped) in
/// `scope` (the call's, with the pass's name), filtered in the gateway, normalized or raw as
/// asked. `raw`: the provider's bytes of each record, and whether the body was free of line
/// breaks. `docs`: each record parsed with only what the mapping reads (then `raw` is there, to
/// re-read one whole for the JSONata engine, and `records` hold only what the page's expressions
/// read).
#[allow(clippy::too_many_arguments)]
fn map_records(
    call: &ListCall,
    pass: u32,
    scope: &Scope,
    records: Vec<Value>,
    raw: Option<(Vec<&str>, bool)>,
    docs: Option<Vec<Doc<'_>>>,
    followed: Option<(FollowedUp, Vec<&crate::call::FollowUpFilter>)>,
    budget: std::time::Duration,
) -> Result<Vec<Record>, ApiError> {
    if !call.wants_mapping() {
        return Ok(records.into_iter().map(Record::Tree).collect());
    }
    let integration = &call.target.integration;
    // Each evaluation has its own time limit; this bounds the page as a whole. Checked every
    // few records: reading the clock per record would cost more than a fast-path mapping.
    let started = std::time::Instant::now();
    let count = records.len();
    // The filters whose follow-ups gave this page nothing: if no record has the field either,
    // the account does not make them.
    let (followed, unanswered) = match followed {
        Some((followed, unanswered)) => (Some(followed), unanswered),
        None => (None, Vec::new()),
    };
    let mut present = vec![false; unanswered.len()];
    let over_budget = |index: usize| {
        (index.is_multiple_of(32) && started.elapsed() >= budget).then(|| {
            ApiError::new(
                ErrorKind::Mapping,
                format!(
                    "the `{}` mapping took longer than {} ms on one page of {count} records (the page mapping budget); ask for smaller pages with `limit`",
                    integration.id,
                    budget.as_millis()
                ),
            )
        })
    };
    let method = call.method();
    // A record's scope holds the follow-up answers it reads: the page's, bound once (a record
    // with none of its own reads that scope, not a copy), then its own.
    let (page_scope, scopes): (Option<Scope>, Option<Vec<Option<Scope>>>) = match followed {
        None => (None, None),
        Some(FollowedUp { page, records, .. }) => {
            let page_scope = (!page.is_empty()).then(|| {
                page.into_iter()
                    .fold(scope.clone(), |scope, (name, value)| {
                        scope.with(&name, value)
                    })
            });
            let base = page_scope.as_ref().unwrap_or(scope);
            let scopes = records
                .into_iter()
                .map(|variables| {
                    (!variables.is_empty()).then(|| {
                        variables
                            .into_iter()
                            .fold(base.clone(), |scope, (name, value)| {
                                scope.with(&name, value)
                            })
                    })
                })
                .collect();
            (page_scope, Some(scopes))
        }
    };
    let base = page_scope.as_ref().unwrap_or(scope);
    let scope_of = |index: usize| {
        scopes
            .as_ref()
            .and_then(|scopes| scopes[index].as_ref())
            .unwrap_or(base)
    };
    if call.text_records {
        // Every record's text one after another in one buffer: room for the unified fields
        // and the provider's record beside them.
        let room = raw.as_ref().map_or(count * 1024, |(raw, _)| {
            let raw: usize = raw.iter().map(|text| text.len()).sum();
            raw + raw / 2 + count * 256
        });
        let mut text = Vec::with_capacity(room);
        let mut ranges = Vec::with_capacity(count);
        for (index, record) in records.iter().enumerate() {
            if let Some(error) = over_budget(index) {
                return Err(error);
            }
            let raw_text = raw.as_ref().map(|(raw, compact)| (raw[index], *compact));
            if index > 0 {
                // The records one after another are the text of the answer's array.
                text.push(b',');
            }
            let start = text.len();
            let mapped = match (raw_text, &docs) {
                (Some((whole, _)), Some(docs)) => {
                    map_doc_response_json(method, &docs[index], whole, scope_of(index), &mut text)
                }
                _ => map_response_json(method, record, scope_of(index), &mut text),
            };
            mapped.map_err(|error| mapping_error(integration, &error))?;
            if !call.query.ignore_remote_data {
                let remote = match raw_text {
                    Some((text, compact)) => RemoteData::Raw { text, compact },
                    None => RemoteData::Tree(record),
                };
                debug_assert!(docs.is_none() || raw_text.is_some());
                append_remote_data(&mut text, start, remote);
            }
            ranges.push(start..text.len());
        }
        return Ok(RecordText::split(text, ranges)
            .into_iter()
            .map(Record::Text)
            .collect());
    }
    let mut out = Vec::with_capacity(records.len());
    for (index, record) in records.into_iter().enumerate() {
        if let Some(error) = over_budget(index) {
            return Err(error);
        }
        let mut mapped = map_response(method, &record, scope_of(index))
            .map_err(|error| mapping_error(integration, &error))?;
        for (filter, present) in unanswered.iter().zip(present.iter_mut()) {
            *present |= mapped.contains_key(&filter.field);
        }
        if !call.filters_of(pass).all(|filter| filter.matches(&mapped)) {
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
    if let Some(filter) = unanswered
        .iter()
        .zip(&present)
        .find_map(|(filter, present)| (!present).then_some(filter))
    {
        return Err(ApiError::bad_request(format!(
            "filter `{}` cannot match anything for integrated account `{}`: integration `{}` builds `{}` from its follow-ups ({}), which are not made for this account (an opt-in context flag such as `read_groups` unset?)",
            filter.name,
            call.target.account.id,
            integration.id,
            filter.field,
            filter
                .follow_ups
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(out)
}

/// A digest of the page as received, for the identical-page guard: a fast non-cryptographic
/// hash of the body bytes (the cursor that carries it is signed, and nothing here needs to
/// resist chosen inputs). A provider whose repeated page differs only in a request id slips
/// past this guard; the repeated-cursor and endless-walk guards still stop it.
pub(crate) fn page_digest(body: &[u8]) -> String {
    let mut hasher = foldhash::quality::FixedState::with_seed(0x756e_6967_6174_6500).build_hasher();
    hasher.write(body);
    hasher.write_usize(body.len());
    format!("{:016x}", hasher.finish())
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
