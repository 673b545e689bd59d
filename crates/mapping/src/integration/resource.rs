//! Native resources: the provider call a resource names (method, path, query, headers, its
//! own static credential, body, where its records are) and its pagination, compiled once.

use std::collections::BTreeMap;

use unigate_pagination::{Pagination, Style};

use super::auth::Auth;
use super::{FollowUp, Pace};
use crate::diagnostics::FileCompiler;
use crate::expression::Expression;
use crate::spec::{BodyFormat, HttpMethod, PaginationSpec, ResourceSpec, StyleName, Text};
use crate::template::Template;

/// Walks longer than this are endless unless a mapping says otherwise.
pub const DEFAULT_MAX_PAGES: u32 = 100_000;

#[derive(Debug)]
pub struct Resource {
    pub method: HttpMethod,
    pub path: Template,
    /// An absolute URL in place of the integration's (or the account's) base URL.
    pub base_url: Option<Template>,
    pub query: Vec<(String, Template)>,
    /// Headers of this resource's calls, on top of (and replacing by name) the integration's.
    pub headers: Vec<(String, Template)>,
    /// A static credential its calls carry in place of the integration's (`auth`).
    pub auth: Option<Auth>,
    pub records: Expression,
    /// `records` as plain field names when it is only a path (`$`, `members`, `data.users`),
    /// found at load so each page can move its records out of the body.
    pub records_path: Option<Vec<String>>,
    /// Whether `records` reads `$id`: a follow-up's call binds the id it was asked for, so that
    /// its records may carry it (a workspace's profiles, which name no workspace).
    pub records_read_id: bool,
    /// Request body over `{cursor, page_size, offset, page, query}` (GraphQL, search APIs).
    pub body: Option<Expression>,
    /// The integration's `body_format`, which a body that is not a string is written in.
    pub body_format: BodyFormat,
    pub pagination: CompiledPagination,
    /// Dotted paths removed from every record as it is extracted (`omit`).
    pub omit: Vec<Vec<String>>,
    /// The passes of a list served in parts (`passes`), in order; empty for a list walked once.
    pub passes: Vec<Pass>,
    /// The provider's budgets for this endpoint alone (`pace`), counted besides the file's.
    pub paces: Vec<Pace>,
}

/// One walk of a list served in parts.
#[derive(Debug)]
pub struct Pass {
    /// What the response mapping reads as `$pass` on this pass's records.
    pub name: Option<String>,
    /// A method in place of the resource's (a GET pass sends no body).
    pub method: Option<HttpMethod>,
    /// A path in place of the resource's.
    pub path: Option<Template>,
    /// Parameters added to the query of every page of the pass.
    pub query: Vec<(String, String)>,
    /// Parameters of the resource's `query` this pass does not send (`null` in its `query`).
    pub drop_query: Vec<String>,
    /// Headers replacing the file's and the resource's of that name; `None`: none of that name.
    pub headers: Vec<(String, Option<String>)>,
    /// Where its records are, when not where the resource's are, and that as plain field names.
    pub records: Option<(Expression, Option<Vec<String>>)>,
    /// How its pages are walked, when not as the resource's are.
    pub pagination: Option<CompiledPagination>,
    /// The account-context flag without which the pass is skipped (`only_with`).
    pub only_with: Option<String>,
    /// Fields removed from this pass's records, beside the resource's `omit`.
    pub omit: Vec<Vec<String>>,
    /// The catalog the pass is walked over, once per record (`over`).
    pub over: Option<PassOver>,
}

/// A pass walked once per record of a catalog (`over`): its path's `{{id}}` is each record's id,
/// and its records see the catalog record as `$over`.
#[derive(Debug)]
pub struct PassOver {
    /// How the catalog is read: its list walked whole, as a walked follow-up's answer is
    /// (named as the pass, `id` over each catalog record).
    pub catalog: FollowUp,
    /// A catalog record whose list answers 404 lists nothing (`not_found: skip`).
    pub skip_not_found: bool,
    /// The query parameters and headers of the pass whose value is the record's id (`{{id}}`),
    /// beside (or in place of) its path's.
    pub id_params: Vec<String>,
    pub id_headers: Vec<String>,
}

impl Resource {
    /// Whether the pages of pass `pass` are parsed whole rather than with what the method's
    /// `page_reads` names: the pass reads its records or walks its pages its own way, which
    /// those reads were not made for, or omits fields of its own (`remote_data` is then written
    /// from its records as extracted).
    pub fn pass_reads_whole(&self, pass: Option<usize>) -> bool {
        pass.and_then(|pass| self.passes.get(pass))
            .is_some_and(|pass| {
                pass.records.is_some() || pass.pagination.is_some() || !pass.omit.is_empty()
            })
    }

    /// The fields removed from the records of pass `pass`: the resource's, then the pass's.
    pub fn omit_of(&self, pass: Option<usize>) -> impl Iterator<Item = &Vec<String>> {
        let own = pass
            .and_then(|pass| self.passes.get(pass))
            .map(|pass| pass.omit.as_slice())
            .unwrap_or_default();
        self.omit.iter().chain(own)
    }

    /// Where the records of pass `pass` (an index of `passes`; `None`: a list walked once) are:
    /// the `records` expression, and its plain field path if it is one.
    pub fn records_of(&self, pass: Option<usize>) -> (&Expression, Option<&[String]>) {
        match pass
            .and_then(|pass| self.passes.get(pass))
            .and_then(|pass| pass.records.as_ref())
        {
            Some((records, path)) => (records, path.as_deref()),
            None => (&self.records, self.records_path.as_deref()),
        }
    }

    /// How the pages of pass `pass` (an index of `passes`; `None`: a list walked once) are
    /// walked: the pass's own pagination, else the resource's.
    pub fn pagination_of(&self, pass: Option<usize>) -> &CompiledPagination {
        pass.and_then(|pass| self.passes.get(pass))
            .and_then(|pass| pass.pagination.as_ref())
            .unwrap_or(&self.pagination)
    }

    /// Whether the walk of pass `pass` counts the records its `records` expression keeps, where
    /// that expression may drop some (a filter, an index, `$filter`): a style that counts records
    /// (offsets, short pages) without `pagination.received`.
    pub fn counts_kept_records(&self, pass: Option<usize>) -> bool {
        let pagination = self.pagination_of(pass);
        let counts = matches!(
            pagination.strategy.style,
            Style::Offset { .. }
                | Style::Page { .. }
                | Style::Scim { .. }
                | Style::Keyset { .. }
                | Style::Graphql
        );
        let (records, path) = self.records_of(pass);
        counts && pagination.received.is_none() && path.is_none() && records.may_drop_items()
    }

    /// Whether the resource reads parts of its id (`{{id.0}}`, `{{id.1}}`) in its path, query or
    /// headers: its follow-up's `id` then gives them as a list.
    pub fn reads_id_parts(&self) -> bool {
        self.path.reads_id_parts()
            || self
                .query
                .iter()
                .chain(&self.headers)
                .any(|(_, template)| template.reads_id_parts())
    }

    /// Whether the resource fetches one record (or a batch) by `{{id}}`: its path or query
    /// reads it, or its body reads the `id` it is given (a batch lookup by POST, CrowdStrike's
    /// `{"ids": $split(id, ",")}`); a body whose reads are unknown does not count.
    pub fn reads_id(&self) -> bool {
        self.path.reads_id()
            || self.query.iter().any(|(_, template)| template.reads_id())
            || self
                .body
                .as_ref()
                .and_then(Expression::reads)
                .is_some_and(|reads| !reads.reads_everything() && reads.field_set("id").is_some())
    }
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
    /// The page position and size travel in the body the resource's `body` builds, not in the
    /// query (`send_in: body`).
    pub send_in_body: bool,
    /// `next_url_keeps_query`: a relative next URL without a query keeps the current one.
    pub next_url_keeps_query: bool,
    /// `page_in_path`: the page number goes as the path's last segment, not as a parameter.
    pub page_in_path: bool,
    pub has_more: Option<Expression>,
    /// Total records (offset, SCIM) or total pages (page).
    pub total: Option<Expression>,
    /// How many records the provider sent on a page (`received`), where the resource's
    /// `records` may keep fewer: the walk's offsets and short pages count these.
    pub received: Option<Expression>,
}

pub(super) fn compile_resource(
    resource: &ResourceSpec,
    pagination: Option<&PaginationSpec>,
    body_format: BodyFormat,
    file_headers: &BTreeMap<String, Text>,
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
    let base_url = match &resource.base_url {
        None => Ok(None),
        Some(text) => {
            let field = format!("{path}.base_url");
            match c.template(text, &field) {
                Some(base) if super::url_origin_is_invalid(&text.value) || !base.fixes_host() => {
                    c.error_at(
                        text,
                        &field,
                        "must be an absolute http(s) URL whose host is fixed text (a part of it may read the context, as `https://{{context.subdomain}}.example.com/api`)",
                    );
                    Err(())
                }
                Some(base) => Ok(Some(base)),
                None => Err(()),
            }
        }
    };
    let query: Vec<(String, Template)> = resource
        .query
        .iter()
        .filter_map(|(name, value)| {
            c.template(value, &format!("{path}.query.{name}"))
                .map(|template| (name.clone(), template))
        })
        .collect();
    let headers = super::compile_headers(&resource.headers, &format!("{path}.headers"), c);
    let auth = match &resource.auth {
        None => Ok(None),
        Some(spec) => super::auth::compile_resource_auth(spec, &format!("{path}.auth"), c)
            .map(Some)
            .ok_or(()),
    };
    let records = c.expression(&resource.records, &format!("{path}.records"));
    let body = c.optional_expression(resource.body.as_ref(), &format!("{path}.body"));
    if resource.body.is_some() && resource.method != HttpMethod::Post {
        c.error_at(
            &resource.path,
            &format!("{path}.body"),
            "a request body needs `method: POST`",
        );
    }
    if let Some(spec) = pagination {
        check_send_in(spec, resource, &format!("{path}.pagination"), c);
    }
    let pagination_spec = pagination;
    let pagination = match pagination {
        Some(spec) => compile_pagination(spec, &format!("{path}.pagination"), c),
        None => Some(CompiledPagination {
            strategy: Pagination {
                style: Style::None,
                page_size_param: None,
                max_page_size: None,
                min_page_size: None,
                default_page_size: None,
                max_pages: DEFAULT_MAX_PAGES,
                short_page_ends: true,
                last_page_repeats: false,
            },
            next: None,
            after_value: None,
            continue_path: None,
            send_in_body: false,
            next_url_keeps_query: false,
            page_in_path: false,
            has_more: None,
            total: None,
            received: None,
        }),
    };
    let omit = compile_omit(&resource.omit, path, c)?;
    // A body that reads `pass` asks each pass its own way, so passes that share a path and
    // parameters are still different parts of the list.
    let body_reads_pass = body
        .as_ref()
        .ok()
        .and_then(Option::as_ref)
        .is_some_and(|body| {
            body.reads().is_none_or(|reads| {
                reads.reads_everything()
                    || reads
                        .paths()
                        .iter()
                        .any(|read| read == "pass" || read.starts_with("pass."))
            })
        });
    let passes = compile_passes(
        resource,
        pagination_spec,
        body_reads_pass,
        file_headers,
        path,
        c,
    )?;
    let paces = super::compile_paces(resource.pace.as_ref(), &format!("{path}.pace"), c)?;
    Some(Resource {
        omit,
        passes,
        paces,
        method: resource.method,
        path: template?,
        base_url: base_url.ok()?,
        query,
        headers,
        auth: auth.ok()?,
        records_path: records.as_ref().and_then(Expression::simple_path),
        records_read_id: records
            .as_ref()
            .is_some_and(|records| records.variables_read().contains("id")),
        records: records?,
        body: body.ok()?,
        body_format,
        pagination: pagination?,
    })
}

/// `omit` (of the resource or a pass at `at`): dotted field paths, each as its segments.
fn compile_omit(
    fields: &[crate::spec::Text],
    at: &str,
    c: &mut FileCompiler<'_>,
) -> Option<Vec<Vec<String>>> {
    let mut omit = Vec::new();
    for (index, field) in fields.iter().enumerate() {
        let segments: Vec<String> = field.value.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            c.error_at(
                field,
                &format!("{at}.omit[{index}]"),
                "must be a dotted field path such as `api_key` or `credentials.password`",
            );
        } else {
            omit.push(segments);
        }
    }
    (omit.len() == fields.len()).then_some(omit)
}

/// A pass's parameters and headers are plain values (no templates: a pass selects a part of the
/// list, it does not carry account data); its path is a template like the resource's. At least
/// two passes, each one different, their names distinct.
fn compile_passes(
    resource: &ResourceSpec,
    pagination: Option<&PaginationSpec>,
    body_reads_pass: bool,
    file_headers: &BTreeMap<String, Text>,
    path: &str,
    c: &mut FileCompiler<'_>,
) -> Option<Vec<Pass>> {
    let Some(spec) = &resource.passes else {
        return Some(Vec::new());
    };
    let mut passes: Vec<Pass> = Vec::new();
    // What makes a pass another part of the list: its path, parameters, headers and method,
    // and its name when the body reads it.
    type Pairs = Vec<(String, Option<String>)>;
    type Part<'a> = (
        Option<&'a str>,
        Pairs,
        Pairs,
        Option<&'a str>,
        Option<HttpMethod>,
    );
    let mut parts: Vec<Part<'_>> = Vec::new();
    let mut valid = true;
    if spec.value.len() < 2 {
        c.error_at(
            spec,
            &format!("{path}.passes"),
            "needs two passes or more (the parameters of a single pass belong in `query`)",
        );
        valid = false;
    }
    if let Some(continue_path) = pagination.and_then(|p| p.continue_path.as_ref())
        && spec.value.iter().any(|pass| pass.value.path.is_some())
    {
        c.error_at(
            continue_path,
            &format!("{path}.pagination.continue_path"),
            "a list whose passes have their own paths cannot continue at one path",
        );
        valid = false;
    }
    for (index, pass) in spec.value.iter().enumerate() {
        let at = format!("{path}.passes[{index}]");
        let mut params = Vec::new();
        let mut drop_query = Vec::new();
        // A pass over a catalog may send the record's id as a parameter or a header.
        let is_id = |value: &Text| pass.value.over.is_some() && value.value == "{{id}}";
        let mut id_params = Vec::new();
        let mut id_headers = Vec::new();
        for (name, value) in &pass.value.query {
            let field = format!("{at}.query.{name}");
            let Some(value) = value else {
                // Leaving out what the resource does not send would be a no-op that hides a typo.
                if !resource.query.contains_key(name) {
                    c.error_at(
                        pass,
                        &field,
                        "is `null`, which leaves one of the resource's `query` out of this pass, but the resource's `query` has no such parameter",
                    );
                    valid = false;
                }
                drop_query.push(name.clone());
                continue;
            };
            if resource.query.contains_key(name) {
                c.error_at(
                    value,
                    &field,
                    "is also set in the resource's `query`; a parameter is either the same for every pass or a pass's own",
                );
                valid = false;
            } else if is_id(value) {
                id_params.push(name.clone());
                continue;
            } else if value.value.contains("{{") {
                c.error_at(
                    value,
                    &field,
                    "a pass's parameters are plain values, not templates (a pass `over` a catalog may send `{{id}}`, its record's id)",
                );
                valid = false;
            }
            params.push((name.clone(), value.value.clone()));
        }
        let pass_path = match &pass.value.path {
            None => None,
            Some(text) if !text.value.starts_with('/') => {
                c.error_at(text, &format!("{at}.path"), "must start with `/`");
                valid = false;
                None
            }
            Some(text) => {
                let template = c.template(text, &format!("{at}.path"));
                if template.as_ref().is_some_and(Template::reads_id) && pass.value.over.is_none() {
                    c.error_at(
                        text,
                        &format!("{at}.path"),
                        "a list's pass cannot read `{{id}}` (only a pass `over` a catalog, whose records give it)",
                    );
                    valid = false;
                }
                valid &= template.is_some();
                template
            }
        };
        // The same path as the resource's is no path of its own.
        let own_path = pass
            .value
            .path
            .as_ref()
            .map(|text| text.value.as_str())
            .filter(|text| *text != resource.path.value);
        let asked_by_name = pass
            .value
            .name
            .as_ref()
            .filter(|_| body_reads_pass)
            .map(|name| name.value.as_str());
        let mut headers = Vec::new();
        for (name, value) in &pass.value.headers {
            let field = format!("{at}.headers.{name}");
            match value {
                None => {
                    let sent = |have: &BTreeMap<String, Text>| {
                        have.keys().any(|have| have.eq_ignore_ascii_case(name))
                    };
                    if !sent(&resource.headers) && !sent(file_headers) {
                        c.error_at(
                            pass,
                            &field,
                            "is `null`, which sends no header of that name on this pass, but neither the file's nor the resource's `headers` has one",
                        );
                        valid = false;
                    }
                    headers.push((name.clone(), None));
                }
                Some(value) if is_id(value) => id_headers.push(name.clone()),
                Some(value) if value.value.contains("{{") => {
                    c.error_at(
                        value,
                        &field,
                        "a pass's headers are plain values, not templates (a pass `over` a catalog may send `{{id}}`, its record's id)",
                    );
                    valid = false;
                }
                Some(value) => headers.push((name.clone(), Some(value.value.clone()))),
            }
        }
        let asked_query = pass
            .value
            .query
            .iter()
            .map(|(name, value)| (name.clone(), value.as_ref().map(|v| v.value.clone())))
            .collect();
        let method = match &pass.value.method {
            None => None,
            Some(method) if method.value == resource.method => {
                c.error_at(
                    method,
                    &format!("{at}.method"),
                    "is the resource's method already; a pass names only a method of its own",
                );
                valid = false;
                None
            }
            Some(method) => Some(method.value),
        };
        // A GET pass sends no body, so a page position the body would carry has nowhere to go.
        let sends_in_body = pass
            .value
            .pagination
            .as_ref()
            .or(pagination)
            .and_then(|pagination| pagination.send_in.as_ref())
            .is_some_and(|send_in| send_in.value == crate::spec::SendIn::Body);
        if let (Some(HttpMethod::Get), Some(text)) = (method, &pass.value.method)
            && sends_in_body
        {
            c.error_at(
                text,
                &format!("{at}.method"),
                "a GET pass sends no body, so its pages cannot be placed in one (`send_in: body`): give it a `pagination` of its own",
            );
            valid = false;
        }
        // A header carrying the catalog record's id tells the pass apart as any header does.
        let asked_headers = headers
            .iter()
            .cloned()
            .chain(
                id_headers
                    .iter()
                    .map(|name| (name.clone(), Some("{{id}}".to_owned()))),
            )
            .collect();
        let part = (own_path, asked_query, asked_headers, asked_by_name, method);
        if parts.contains(&part) {
            c.error_at(
                pass,
                &at,
                "repeats an earlier pass: the same users would be listed twice",
            );
            valid = false;
        }
        parts.push(part);
        let records = match &pass.value.records {
            None => None,
            Some(text) => {
                let records = c.expression(text, &format!("{at}.records"));
                if pass.value.over.is_none()
                    && records
                        .as_ref()
                        .is_some_and(|records| records.variables_read().contains("over"))
                {
                    c.error_at(
                        text,
                        &format!("{at}.records"),
                        "reads `$over`, which only a pass over a catalog has: it would always be undefined",
                    );
                    valid = false;
                }
                valid &= records.is_some();
                records.map(|records| {
                    let path = records.simple_path();
                    (records, path)
                })
            }
        };
        let pass_pagination = match &pass.value.pagination {
            None => None,
            Some(spec) => {
                let at = format!("{at}.pagination");
                if let Some(continue_path) = &spec.continue_path {
                    c.error_at(
                        continue_path,
                        &format!("{at}.continue_path"),
                        "a pass's pages are walked at its own path; `continue_path` is the resource's",
                    );
                    valid = false;
                }
                valid &= check_send_in(spec, resource, &at, c);
                let compiled = compile_pagination(spec, &at, c);
                valid &= compiled.is_some();
                compiled
            }
        };
        let name = pass.value.name.as_ref().map(|name| name.value.clone());
        if let Some(text) = &pass.value.name
            && passes.iter().any(|earlier| earlier.name == name)
        {
            c.error_at(
                text,
                &format!("{at}.name"),
                "is an earlier pass's name; `$pass` could not tell them apart",
            );
            valid = false;
        }
        let only_with = match &pass.value.only_with {
            None => None,
            // The walk starts at the first pass, whatever the account.
            Some(flag) if index == 0 => {
                c.error_at(
                    flag,
                    &format!("{at}.only_with"),
                    "the first pass is every account's: a pass made only for some accounts comes after it",
                );
                valid = false;
                None
            }
            Some(flag) if !super::unified::is_context_key(&flag.value) => {
                c.error_at(
                    flag,
                    &format!("{at}.only_with"),
                    "must name an account-context key, such as `read_invitations`",
                );
                valid = false;
                None
            }
            Some(flag) => Some(flag.value.clone()),
        };
        let omit = compile_omit(&pass.value.omit, &at, c);
        valid &= omit.is_some();
        let over = match &pass.value.over {
            None => None,
            Some(over) => {
                let path_reads_id = pass_path.as_ref().is_some_and(Template::reads_id);
                if !path_reads_id && id_params.is_empty() && id_headers.is_empty() {
                    c.error_at(
                        &over.resource,
                        &format!("{at}.over"),
                        "sends no `{{id}}` (the catalog record's id) in the pass's path, a query parameter or a header: every record's walk would ask the same list",
                    );
                    valid = false;
                }
                let compiled = compile_pass_over(over, index, &name, &at, c);
                valid &= compiled.is_some();
                compiled.map(|compiled| PassOver {
                    id_params,
                    id_headers,
                    ..compiled
                })
            }
        };
        passes.push(Pass {
            name,
            method,
            path: pass_path,
            query: params,
            drop_query,
            headers,
            records,
            pagination: pass_pagination,
            only_with,
            omit: omit.unwrap_or_default(),
            over,
        });
    }
    valid.then_some(passes)
}

/// A pass's `over`: after the first pass (the walk starts with the list itself), named (its
/// records tell their part by `$pass`); where it sends the record's id is checked with its path,
/// parameters and headers, and the catalog's resource once every resource is compiled.
fn compile_pass_over(
    over: &crate::spec::PassOverSpec,
    index: usize,
    name: &Option<String>,
    at: &str,
    c: &mut FileCompiler<'_>,
) -> Option<PassOver> {
    let mut valid = true;
    if index == 0 {
        c.error_at(
            &over.resource,
            &format!("{at}.over"),
            "the first pass is the list itself: a pass over a catalog comes after it",
        );
        valid = false;
    }
    let Some(name) = name else {
        c.error_at(
            &over.resource,
            &format!("{at}.over"),
            "needs the pass's `name`: its records tell their part by `$pass`, and its catalog is kept by it",
        );
        return None;
    };
    let id = c.expression(&over.id, &format!("{at}.over.id"));
    let id = id?;
    valid.then(|| PassOver {
        catalog: FollowUp {
            name: name.clone(),
            resource: over.resource.value.clone(),
            id,
            per_page: true,
            key: None,
            matches: None,
            concurrency: 1,
            skip_not_found: false,
            batch: None,
            walk: true,
            over: None,
            gives_answers: false,
            id_parts: false,
            on_get: false,
            only_with: None,
        },
        skip_not_found: over
            .not_found
            .as_ref()
            .is_some_and(|not_found| not_found.value == crate::spec::NotFound::Skip),
        id_params: Vec::new(),
        id_headers: Vec::new(),
    })
}

/// `send_in: body` places the page in the body the resource's `body` expression writes, so it
/// needs one; false (after an error at `at.send_in`) without it.
fn check_send_in(
    spec: &PaginationSpec,
    resource: &ResourceSpec,
    at: &str,
    c: &mut FileCompiler<'_>,
) -> bool {
    match &spec.send_in {
        Some(send_in) if send_in.value == crate::spec::SendIn::Body && resource.body.is_none() => {
            c.error_at(
                send_in,
                &format!("{at}.send_in"),
                "`send_in: body` needs the resource's `body` expression to place the page (it reads `page`, `offset`, `cursor`, `page_size`)",
            );
            false
        }
        _ => true,
    }
}

fn compile_pagination(
    spec: &PaginationSpec,
    path: &str,
    c: &mut FileCompiler<'_>,
) -> Option<CompiledPagination> {
    let style_name = spec.style.value;
    // Which optional fields each style reads; any other one set is a mistake worth reporting.
    let used: &[&str] = match style_name {
        StyleName::Cursor => &[
            "cursor_param",
            "cursor_header",
            "next_cursor",
            "continue_path",
        ],
        StyleName::PageToken => &["token_param", "next_token"],
        StyleName::NextUrl => &["next_url", "next_url_keeps_query"],
        StyleName::LinkHeader | StyleName::None => &[],
        StyleName::Offset => &[
            "offset_param",
            "has_more",
            "total",
            "short_page_ends",
            "last_page_repeats",
            "received",
        ],
        StyleName::Page => &[
            "page_param",
            "page_in_path",
            "first_page",
            "has_more",
            "total_pages",
            "short_page_ends",
            "last_page_repeats",
            "received",
        ],
        StyleName::Scim => &[
            "start_index_param",
            "has_more",
            "total",
            "short_page_ends",
            "received",
        ],
        StyleName::Keyset => &["after_param", "after_value", "short_page_ends", "received"],
        StyleName::Graphql => &["next_cursor", "has_more", "received"],
    };
    let set: [(&str, bool); 21] = [
        ("received", spec.received.is_some()),
        ("page_in_path", spec.page_in_path.is_some()),
        ("continue_path", spec.continue_path.is_some()),
        ("short_page_ends", spec.short_page_ends.is_some()),
        ("last_page_repeats", spec.last_page_repeats.is_some()),
        ("next_url_keeps_query", spec.next_url_keeps_query.is_some()),
        ("cursor_header", spec.cursor_header.is_some()),
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
                spec.cursor_param.is_some()
                    || spec.cursor_header.is_some()
                    || spec.continue_path.is_some(),
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
        StyleName::Page if spec.page_in_path == Some(true) && spec.page_param.is_some() => {
            c.error_at(
                &spec.style,
                &format!("{path}.page_param"),
                "is not used with `page_in_path: true` (the page number is the path's last segment)",
            );
            ok = false;
        }
        StyleName::Page if spec.page_in_path == Some(true) => {}
        StyleName::Page => required(
            spec.page_param.is_some(),
            "page_param` or `page_in_path: true",
        ),
        StyleName::Keyset => required(spec.after_param.is_some(), "after_param"),
        StyleName::Graphql => required(spec.next_cursor.is_some(), "next_cursor"),
        // RFC 7644's names (`startIndex`, `count`, `totalResults`) are stated in `scim.yaml`;
        // providers that rename them say so in their own file. Without `total` a walk ends on a
        // short or empty page.
        StyleName::Scim => {
            required(spec.start_index_param.is_some(), "start_index_param");
            required(spec.page_size_param.is_some(), "page_size_param");
        }
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
    // A floor only means something where the size is sent; below `max_page_size` and the
    // default, or no size could satisfy both.
    if let Some(min) = spec.min_page_size {
        let problem = if spec.page_size_param.is_none() {
            Some(
                "needs `page_size_param` (a provider that takes no page size has no minimum to meet)",
            )
        } else if spec.max_page_size.is_some_and(|max| min > max) {
            Some("is larger than `max_page_size`")
        } else if spec.default_page_size.is_some_and(|default| default < min) {
            Some("is larger than `default_page_size`")
        } else {
            None
        };
        if let Some(problem) = problem {
            c.error_at(&spec.style, &format!("{path}.min_page_size"), problem);
            ok = false;
        }
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
    let total = optional(&spec.total, "total")
        .and_then(|a| Ok(a.or(optional(&spec.total_pages, "total_pages")?)));
    let received = optional(&spec.received, "received");
    let page_size_param = spec.page_size_param.clone();
    let style = match style_name {
        StyleName::Cursor => Style::Cursor {
            cursor_param: spec.cursor_param.clone(),
            cursor_header: spec.cursor_header.clone(),
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
            start_index_param: spec.start_index_param.clone().unwrap_or_default(),
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
            min_page_size: spec.min_page_size,
            default_page_size: spec.default_page_size,
            max_pages: spec.max_pages.unwrap_or(DEFAULT_MAX_PAGES),
            short_page_ends: spec.short_page_ends != Some(false),
            last_page_repeats: spec.last_page_repeats == Some(true),
        },
        next: next.ok()?,
        continue_path: continue_path.ok()?,
        send_in_body: spec
            .send_in
            .as_ref()
            .is_some_and(|send_in| send_in.value == crate::spec::SendIn::Body),
        next_url_keeps_query: spec.next_url_keeps_query == Some(true),
        page_in_path: spec.page_in_path == Some(true),
        after_value: after_value.ok()?,
        has_more: has_more.ok()?,
        total: total.ok()?,
        received: received.ok()?,
    })
}
