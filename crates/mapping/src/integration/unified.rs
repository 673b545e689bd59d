//! The `unified:` block: which unified methods an integration maps, onto which native resource,
//! with which query and response mappings, checked against the unified model.

use std::collections::BTreeMap;

use serde_saphyr::Spanned;
use unigate_unified::UnifiedModel;

use crate::diagnostics::FileCompiler;
use crate::expression::{Expression, Memoized};
use crate::spec::{ChainedGives, FollowUpPer, IntegrationSpec, NotFound, Text, UnifiedMethodSpec};

use super::{FollowUp, FollowUpBatch, Method, MethodKey, PassIds, Resource, UnifiedMethod};

/// Follow-up calls in flight at once for one account unless the mapping says.
const DEFAULT_FOLLOW_UP_CONCURRENCY: u32 = 4;

pub(super) fn compile_unified_methods(
    spec: &IntegrationSpec,
    resources: &BTreeMap<String, Resource>,
    models: &BTreeMap<String, UnifiedModel>,
    c: &mut FileCompiler<'_>,
) -> BTreeMap<MethodKey, UnifiedMethod> {
    let mut unified: BTreeMap<MethodKey, UnifiedMethod> = BTreeMap::new();
    for (model_name, model_resources) in &spec.unified {
        let model = models.get(model_name);
        for (resource_name, methods) in model_resources {
            // In `Method::ALL` order, so that a get finds the list it may inherit from.
            let mut ordered: Vec<(&String, &UnifiedMethodSpec)> = methods.iter().collect();
            ordered.sort_by_key(|(name, _)| Method::parse(name));
            for (method_name, method_spec) in ordered {
                let path = format!("unified.{model_name}.{resource_name}.{method_name}");
                let Some(method) = Method::parse(method_name) else {
                    let line = first_line(method_spec);
                    c.error_line(
                        line,
                        &path,
                        &format!(
                            "unknown unified method `{method_name}`: one of {}",
                            Method::ALL.map(Method::name).join(", ")
                        ),
                    );
                    continue;
                };
                let key = MethodKey::new(model_name, resource_name, method);
                // A get answers the record the list answers: without a response mapping of its
                // own it uses the list's, compiled once (a broken one is reported on the list).
                let inherits = method == Method::Get && method_spec.response_mapping.is_none();
                let list = MethodKey::new(model_name, resource_name, Method::List);
                let mut compiled = match (inherits, unified.get(&list)) {
                    (true, Some(list)) => compile_method(
                        method_spec,
                        &key,
                        &path,
                        model,
                        resources,
                        spec,
                        Some(list.response_mapping.clone()),
                        c,
                    ),
                    (true, None) if methods.contains_key(Method::List.name()) => None,
                    _ => compile_method(method_spec, &key, &path, model, resources, spec, None, c),
                };
                if let Some(compiled) = compiled.as_mut() {
                    compiled.pass_ids = compile_pass_ids(
                        method_spec,
                        method,
                        unified.get(&list),
                        resources,
                        &path,
                        c,
                    );
                    compiled.not_found_passes = compile_not_found_passes(
                        method_spec,
                        method,
                        unified.get(&list),
                        resources,
                        &compiled.pass_ids,
                        &path,
                        c,
                    );
                }
                if let Some(compiled) = compiled {
                    unified.insert(key, compiled);
                }
            }
        }
    }
    unified
}

/// The response mapping `base` with `fields` (`response_fields`, not empty) put in place of
/// its own entries; each field's JSONata is compiled alone first, so that an error names its
/// line.
fn with_response_fields(
    base: &Expression,
    fields: &BTreeMap<String, Spanned<Option<String>>>,
    unified_resource: Option<&unigate_unified::UnifiedResource>,
    path: &str,
    c: &mut FileCompiler<'_>,
) -> Option<Expression> {
    let mut entries = Vec::with_capacity(fields.len());
    let mut broken = false;
    for (field, value) in fields {
        let at = format!("{path}.response_fields.{field}");
        if unified_resource.is_some_and(|resource| !resource.fields.contains_key(field)) {
            c.error_line(
                value.referenced.line(),
                &at,
                &format!("`{field}` is not a field of the unified model"),
            );
            broken = true;
        }
        if let Some(source) = &value.value {
            let spanned = Spanned::new(source.clone(), value.referenced, value.defined);
            broken |= c.expression(&spanned, &at).is_none();
        }
        entries.push((field.as_str(), value.value.as_deref()));
    }
    if broken {
        return None;
    }
    let edited = base.with_object_entries(&entries).and_then(|source| {
        Expression::compile(&source).map_err(|error| format!("{} ({})", error.message, error.code))
    });
    edited
        .map_err(|why| {
            let line = fields
                .values()
                .next()
                .map_or(1, |value| value.referenced.line());
            let message = format!("cannot change the entries of the response mapping: {why}");
            c.error_line(line, &format!("{path}.response_fields"), &message);
        })
        .ok()
}

/// Whether `name` can be an account-context key a flag names (`read_groups`): letters, digits
/// and `_`.
pub(super) fn is_context_key(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn first_line(spec: &UnifiedMethodSpec) -> u64 {
    spec.resource
        .as_ref()
        .or(spec.response_mapping.as_ref())
        .or(spec.query_mapping.as_ref())
        .map_or(1, |text| text.referenced.line())
}

#[allow(clippy::too_many_arguments)]
fn compile_method(
    spec: &UnifiedMethodSpec,
    key: &MethodKey,
    path: &str,
    model: Option<&UnifiedModel>,
    resources: &BTreeMap<String, Resource>,
    file: &IntegrationSpec,
    inherited_mapping: Option<Expression>,
    c: &mut FileCompiler<'_>,
) -> Option<UnifiedMethod> {
    let response_mapping_text = spec.response_mapping.as_ref();
    let (Some(method_resource), true) = (
        &spec.resource,
        response_mapping_text.is_some() || inherited_mapping.is_some(),
    ) else {
        c.error_line(
            first_line(spec),
            path,
            "needs `resource` and `response_mapping` (here or in the file this one extends)",
        );
        return None;
    };
    let (model_name, resource_name) = (&key.model, &key.resource);
    let native_filters = spec.native_filters.clone().unwrap_or_default();
    let native_sorts = spec.native_sorts.clone().unwrap_or_default();
    let unified_resource = match model {
        None => {
            c.error_at(
                method_resource,
                path,
                &format!(
                    "unknown unified model `{model_name}` (no mappings/models/{model_name}.yaml)"
                ),
            );
            None
        }
        Some(model) => {
            let found = model.resources.get(resource_name);
            if found.is_none() {
                c.error_at(
                    method_resource,
                    path,
                    &format!("model `{model_name}` has no resource `{resource_name}`"),
                );
            }
            found
        }
    };
    let declared = file.resources.iter().any(|(r, ms)| {
        ms.keys()
            .any(|m| format!("{r}.{m}") == method_resource.value)
    });
    if !declared {
        c.error_at(
            method_resource,
            &format!("{path}.resource"),
            &format!(
                "names `{}`, which is not a `resource.method` under `resources`",
                method_resource.value
            ),
        );
    }
    if let Some(resource) = resources.get(&method_resource.value) {
        check_record_id(key.method, resource, method_resource, path, c);
    }
    if key.method == Method::Get {
        let extras: [(&str, Option<u64>); 3] = [
            (
                "native_filters",
                native_filters.first().map(|t| t.referenced.line()),
            ),
            (
                "native_sorts",
                native_sorts.first().map(|t| t.referenced.line()),
            ),
            (
                "query_mapping",
                spec.query_mapping.as_ref().map(|t| t.referenced.line()),
            ),
        ];
        for (name, line) in extras {
            if let Some(line) = line {
                c.error_line(
                    line,
                    &format!("{path}.{name}"),
                    "applies to `list` only: a get fetches one record by its id",
                );
            }
        }
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
    if !native_filters.is_empty() && spec.query_mapping.is_none() {
        c.error_at(
            &native_filters[0],
            &format!("{path}.native_filters"),
            "native filters need a `query_mapping` that pushes them down",
        );
    }
    let query_mapping = c.optional_expression(
        spec.query_mapping.as_ref(),
        &format!("{path}.query_mapping"),
    );
    let fields = spec
        .response_fields
        .as_ref()
        .filter(|fields| !fields.is_empty());
    let response_mapping = match (inherited_mapping, response_mapping_text) {
        (Some(inherited), _) => {
            if let Some((field, value)) = fields.and_then(|fields| fields.iter().next()) {
                c.error_line(
                    value.referenced.line(),
                    &format!("{path}.response_fields.{field}"),
                    "a get without a `response_mapping` of its own maps as its list does: put `response_fields` on the list",
                );
            }
            Some(inherited)
        }
        (None, Some(text)) => {
            let compiled = c.expression(text, &format!("{path}.response_mapping"));
            let compiled = match (compiled, fields) {
                (Some(base), Some(fields)) => with_response_fields(
                    &base,
                    fields,
                    unified_resource.map(AsRef::as_ref),
                    path,
                    c,
                ),
                (compiled, _) => compiled,
            };
            if let (Some(resource), Some(keys)) = (
                unified_resource,
                compiled.as_ref().and_then(Expression::object_keys),
            ) {
                for field in keys {
                    if !resource.fields.contains_key(&field) {
                        c.error_at(
                            text,
                            &format!("{path}.response_mapping"),
                            &format!(
                                "produces `{field}`, which is not a field of the unified model"
                            ),
                        );
                    }
                }
            }
            compiled
        }
        (None, None) => None,
    };
    let follow_ups = compile_follow_ups(spec, key, path, resources, c);
    let (Ok(query_mapping), Some(response_mapping), Some(follow_ups)) =
        (query_mapping, response_mapping, follow_ups)
    else {
        return None;
    };
    // A follow-up nothing reads is calls made for nothing: a file whose own response mapping
    // ignores a follow-up it inherits (`follow_up: {}` drops them), or a misspelt variable.
    let read = response_mapping.variables_read();
    for follow_up in &follow_ups {
        let chained_over = follow_ups
            .iter()
            .any(|other| other.over.as_deref() == Some(follow_up.name.as_str()));
        if !read.contains(&follow_up.name) && !chained_over {
            let message = format!(
                "the follow-up `{}` is made but nothing reads `${}` (not the response mapping, nor a follow-up chained `over` it); a file whose own response mapping ignores an inherited follow-up sets `follow_up: {{}}`",
                follow_up.name, follow_up.name
            );
            match response_mapping_text {
                Some(text) => c.error_at(text, &format!("{path}.follow_up"), &message),
                None => c.error_line(first_line(spec), &format!("{path}.follow_up"), &message),
            }
        }
    }
    // Which follow-ups each built field reads: a field read only through follow-ups an account
    // does not make (an opt-in flag unset) is absent from its every record.
    let field_follow_ups = match follow_ups.is_empty() {
        true => BTreeMap::new(),
        false => response_mapping
            .object_entry_variables()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(field, read)| {
                let names: Vec<String> = follow_ups
                    .iter()
                    .filter(|follow_up| read.contains(&follow_up.name))
                    .map(|follow_up| follow_up.name.clone())
                    .collect();
                (!names.is_empty()).then_some((field, names))
            })
            .collect(),
    };
    let mapped_fields: Option<std::collections::BTreeSet<String>> = response_mapping
        .object_keys()
        .map(|fields| fields.into_iter().collect());
    let mut opt_in_fields = BTreeMap::new();
    for (field, flag) in spec.opt_in_fields.iter().flatten() {
        let at = format!("{path}.opt_in_fields.{field}");
        if mapped_fields
            .as_ref()
            .is_some_and(|mapped| !mapped.contains(field))
        {
            c.error_at(
                flag,
                &at,
                &format!("`{field}` is not a field the response mapping builds"),
            );
        } else if !is_context_key(&flag.value) {
            c.error_at(
                flag,
                &at,
                "must name an account-context key, such as `read_groups`",
            );
        } else {
            opt_in_fields.insert(field.clone(), flag.value.clone());
        }
    }
    let named_passes = pass_names_of(resources, &method_resource.value);
    let query_reads_pass = query_mapping
        .as_ref()
        .is_some_and(|mapping| mapping.variables_read().contains("pass"));
    if let (true, [], Some(text)) = (
        query_reads_pass,
        named_passes.as_slice(),
        &spec.query_mapping,
    ) {
        c.error_at(
            text,
            &format!("{path}.query_mapping"),
            &format!(
                "reads `$pass`, but `{}` has no named passes: it would always be undefined",
                method_resource.value
            ),
        );
    }
    // `$over` is bound on the records of a pass over a catalog, one catalog record at a time:
    // never in a query mapping (made once per pass), nor anywhere without such a pass.
    let walks_a_catalog = resources
        .get(&method_resource.value)
        .is_some_and(|resource| resource.passes.iter().any(|pass| pass.over.is_some()));
    if let Some(text) = &spec.query_mapping
        && query_mapping
            .as_ref()
            .is_some_and(|mapping| mapping.variables_read().contains("over"))
    {
        c.error_at(
            text,
            &format!("{path}.query_mapping"),
            "reads `$over`, which only a record of a pass over a catalog has: a query mapping is made once per pass, not per catalog record",
        );
    }
    if !walks_a_catalog
        && response_mapping.variables_read().contains("over")
        && let Some(text) = response_mapping_text
    {
        c.error_at(
            text,
            &format!("{path}.response_mapping"),
            &format!(
                "reads `$over`, but `{}` has no pass over a catalog: it would always be undefined",
                method_resource.value
            ),
        );
    }
    let native_filters_by_pass =
        compile_native_filters_by_pass(spec, key.method, &named_passes, &native_filters, path, c);
    // The engine always binds `$context` and `$query`; `$pass` only for a named pass's records,
    // so it is among these: unbound on the others' (a binding wins over "possibly unbound").
    let unbound_reads = response_mapping.names_bound_nowhere(
        ["context", "query"]
            .into_iter()
            .chain(follow_ups.iter().map(|follow_up| follow_up.name.as_str())),
    );
    Some(UnifiedMethod {
        unbound_reads,
        field_follow_ups,
        opt_in_fields,
        follow_ups,
        resource: method_resource.value.clone(),
        partial: spec.partial.unwrap_or(false),
        native_filters: native_filters.iter().map(|f| f.value.clone()).collect(),
        native_sorts: native_sorts.iter().map(|s| s.value.clone()).collect(),
        mapped_fields,
        query_mapping: query_mapping.map(Memoized::new),
        query_reads_pass,
        native_filters_by_pass,
        response_mapping,
        page_reads: Err("not compiled yet".to_owned()),
        page_reads_without_opt_ins: None,
        pass_ids: Vec::new(),
        not_found_passes: Vec::new(),
    })
}

/// A list's `native_filters_by_pass`: each names a named pass of its resource, with the native
/// filters of the list that pass applies (any others it is sent are the gateway's there).
fn compile_native_filters_by_pass(
    spec: &UnifiedMethodSpec,
    method: Method,
    named_passes: &[&str],
    native_filters: &[Text],
    path: &str,
    c: &mut FileCompiler<'_>,
) -> BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut compiled = BTreeMap::new();
    for (pass, applied) in spec.native_filters_by_pass.iter().flatten() {
        let at = format!("{path}.native_filters_by_pass.{pass}");
        if method != Method::List {
            c.error_line(
                applied.referenced.line(),
                &at,
                "applies to `list` only: a get filters nothing",
            );
            continue;
        }
        if !named_passes.contains(&pass.as_str()) {
            c.error_line(
                applied.referenced.line(),
                &at,
                &no_such_pass(pass, named_passes),
            );
            continue;
        }
        let mut filters = std::collections::BTreeSet::new();
        for (index, filter) in applied.value.iter().enumerate() {
            if !native_filters
                .iter()
                .any(|native| native.value == filter.value)
            {
                c.error_at(
                    filter,
                    &format!("{at}[{index}]"),
                    &format!(
                        "`{}` is not one of the list's `native_filters`: a pass applies some of those, and the gateway the rest",
                        filter.value
                    ),
                );
                continue;
            }
            filters.insert(filter.value.clone());
        }
        compiled.insert(pass.clone(), filters);
    }
    compiled
}

/// A get's `not_found_passes`: named passes of the list's resource, each once, none of them
/// also found by prefix (`pass_ids`).
fn compile_not_found_passes(
    spec: &UnifiedMethodSpec,
    method: Method,
    list: Option<&UnifiedMethod>,
    resources: &BTreeMap<String, Resource>,
    pass_ids: &[PassIds],
    path: &str,
    c: &mut FileCompiler<'_>,
) -> Vec<String> {
    let mut compiled: Vec<String> = Vec::new();
    for (index, pass) in spec.not_found_passes.iter().flatten().enumerate() {
        let at = format!("{path}.not_found_passes[{index}]");
        if method != Method::Get {
            c.error_at(
                pass,
                &at,
                "applies to `get` only: the list walks its passes itself",
            );
            continue;
        }
        let named = list_pass_names(list, resources);
        let problem = if !named.contains(&pass.value.as_str()) {
            Some(no_such_pass(&pass.value, &named))
        } else if pass_ids.iter().any(|ids| ids.pass == pass.value) {
            Some(format!(
                "`{}` is in `pass_ids`: its ids are found by their prefix, never asked of the get's resource",
                pass.value
            ))
        } else if compiled.contains(&pass.value) {
            Some(format!("`{}` is named twice", pass.value))
        } else {
            None
        };
        match problem {
            Some(problem) => c.error_at(pass, &at, &problem),
            None => compiled.push(pass.value.clone()),
        }
    }
    compiled
}

/// The names of the named passes of `resource`, in order.
fn pass_names_of<'a>(resources: &'a BTreeMap<String, Resource>, resource: &str) -> Vec<&'a str> {
    resources
        .get(resource)
        .map(|resource| resource.passes.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|pass| pass.name.as_deref())
        .collect()
}

/// The names of the named passes of `list`'s resource, in order.
fn list_pass_names<'a>(
    list: Option<&UnifiedMethod>,
    resources: &'a BTreeMap<String, Resource>,
) -> Vec<&'a str> {
    list.map(|list| pass_names_of(resources, &list.resource))
        .unwrap_or_default()
}

/// The error for a key naming `pass`, which is not among the list's `named` passes.
fn no_such_pass(pass: &str, named: &[&str]) -> String {
    format!(
        "the list's resource has no pass named `{pass}` (its named passes: {})",
        match named.is_empty() {
            true => "none".to_owned(),
            false => named.join(", "),
        }
    )
}

/// A get's `pass_ids`: each names a pass of the list's resource, with a prefix no other's
/// starts (so that an id belongs to one pass at most).
fn compile_pass_ids(
    spec: &UnifiedMethodSpec,
    method: Method,
    list: Option<&UnifiedMethod>,
    resources: &BTreeMap<String, Resource>,
    path: &str,
    c: &mut FileCompiler<'_>,
) -> Vec<PassIds> {
    let Some(declared) = &spec.pass_ids else {
        return Vec::new();
    };
    let mut compiled: Vec<PassIds> = Vec::new();
    for (pass, prefix) in declared {
        let at = format!("{path}.pass_ids.{pass}");
        if method != Method::Get {
            c.error_at(
                prefix,
                &at,
                "applies to `get` only: the list walks its passes itself",
            );
            continue;
        }
        let named = list_pass_names(list, resources);
        if !named.contains(&pass.as_str()) {
            c.error_at(prefix, &at, &no_such_pass(pass, &named));
            continue;
        }
        if prefix.value.is_empty() {
            c.error_at(
                prefix,
                &at,
                "an id prefix must not be empty: every id would match",
            );
            continue;
        }
        if let Some(other) = compiled.iter().find(|other| {
            other.prefix.starts_with(prefix.value.as_str())
                || prefix.value.starts_with(other.prefix.as_str())
        }) {
            c.error_at(
                prefix,
                &at,
                &format!(
                    "`{}` and pass `{}`'s `{}` overlap: an id would belong to both",
                    prefix.value, other.pass, other.prefix
                ),
            );
            continue;
        }
        compiled.push(PassIds {
            pass: pass.clone(),
            prefix: prefix.value.clone(),
        });
    }
    compiled
}

/// A get's resource must put the id somewhere (`{{id}}` in its path or query); a list's has no
/// id to put.
fn check_record_id(
    method: Method,
    resource: &Resource,
    named: &Text,
    path: &str,
    c: &mut FileCompiler<'_>,
) {
    let reads_id = resource.reads_id();
    match method {
        Method::Get if !reads_id => c.error_at(
            named,
            &format!("{path}.resource"),
            &format!(
                "`{}` never reads `{{{{id}}}}` (in its path, query or body), so a get could not say which record it wants",
                named.value
            ),
        ),
        Method::Get if resource.reads_id_parts() => c.error_at(
            named,
            &format!("{path}.resource"),
            &format!(
                "`{}` reads parts of an id (`{{{{id.0}}}}`), which only a follow-up gives: a get's id is one",
                named.value
            ),
        ),
        Method::List if reads_id => c.error_at(
            named,
            &format!("{path}.resource"),
            &format!(
                "`{}` reads `{{{{id}}}}`, which only a get has",
                named.value
            ),
        ),
        _ => {}
    }
}

fn per_page_spec(follow_up: &crate::spec::FollowUpSpec) -> bool {
    follow_up
        .per
        .as_ref()
        .is_some_and(|per| per.value == FollowUpPer::Page)
}

fn compile_follow_ups(
    spec: &UnifiedMethodSpec,
    key: &MethodKey,
    path: &str,
    resources: &BTreeMap<String, Resource>,
    c: &mut FileCompiler<'_>,
) -> Option<Vec<FollowUp>> {
    let Some(follow_ups) = &spec.follow_up else {
        return Some(Vec::new());
    };
    let mut compiled = Vec::new();
    let mut ok = true;
    for (name, follow_up) in follow_ups {
        let at = format!("{path}.follow_up.{name}");
        if key.method != Method::List {
            c.error_at(
                &follow_up.resource,
                &at,
                "follow-up requests belong to a `list`",
            );
            ok = false;
            continue;
        }
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || ["context", "query", "headers", "status", "pass", "over"].contains(&name.as_str())
        {
            c.error_at(
                &follow_up.resource,
                &at,
                "a follow-up's name is the variable the response mapping reads (`$detail`): letters, digits and `_`, not context, query, headers, status, pass or over",
            );
            ok = false;
        }
        match resources.get(&follow_up.resource.value) {
            None => {
                c.error_at(
                    &follow_up.resource,
                    &format!("{at}.resource"),
                    &format!(
                        "names `{}`, which is not a `resource.method` under `resources`",
                        follow_up.resource.value
                    ),
                );
                ok = false;
            }
            // A per-page GET may need no id (the account's groups, which `key`/`matches` pair
            // back): its `id` then only says whether to call. A per-record call must say which
            // record it is for, a batch without a parameter has nowhere else to put its ids,
            // and a POST lookup whose body ignores them is a mistake.
            Some(resource)
                if !resource.reads_id()
                    && (!per_page_spec(follow_up)
                        || resource.method != crate::spec::HttpMethod::Get
                        || follow_up
                            .batch
                            .as_ref()
                            .is_some_and(|batch| batch.param.is_none())) =>
            {
                c.error_at(
                    &follow_up.resource,
                    &format!("{at}.resource"),
                    &format!(
                        "`{}` never reads `{{{{id}}}}`, so the follow-up could not say which record it is for",
                        follow_up.resource.value
                    ),
                );
                ok = false;
            }
            Some(resource) if resource.reads_id_parts() && follow_up.batch.is_some() => {
                c.error_at(
                    &follow_up.resource,
                    &format!("{at}.resource"),
                    &format!(
                        "`{}` reads parts of its id (`{{{{id.0}}}}`), which a batch cannot give: a batch sends each id whole",
                        follow_up.resource.value
                    ),
                );
                ok = false;
            }
            Some(_) => {}
        }
        let per_page = per_page_spec(follow_up);
        let paired = follow_up.key.is_some() || follow_up.matches.is_some();
        let both = follow_up.key.is_some() && follow_up.matches.is_some();
        if let Some(over) = &follow_up.over {
            if !over_names_a_catalog(&over.value, name, follow_ups)
                && !over_names_a_level(&over.value, name, follow_ups)
            {
                c.error_at(
                    over,
                    &format!("{at}.over"),
                    &format!(
                        "names `{}`, which is not another follow-up of this list with `per: page`, no `batch` and no `over` (a catalog: one answer for the page, read whole), nor one chained over such a catalog that `gives: answers`",
                        over.value
                    ),
                );
                ok = false;
            }
            if let Some(per) = &follow_up.per {
                c.error_at(
                    per,
                    &format!("{at}.per"),
                    "a follow-up `over` another is called once per record of that one's answer: it takes no `per`",
                );
                ok = false;
            }
            // A level a further follow-up is chained over (`gives: answers`) pairs nothing
            // itself when its records name no page record (a workspace's profiles).
            let a_level = follow_up.gives.as_ref().is_some_and(|gives| {
                gives.value == ChainedGives::Answers
                    && follow_ups
                        .values()
                        .any(|other| other.over.as_ref().is_some_and(|o| o.value == *name))
            });
            // Both, or (for a middle level) neither.
            if !both && (paired || !a_level) {
                c.error_at(
                    &follow_up.id,
                    &at,
                    "a follow-up `over` another pairs its answers with page records through `key` (over a page record) and `matches` (over a record of an answer): both are needed (or neither, for one that `gives: answers` to a follow-up chained over it)",
                );
                ok = false;
            }
        } else if let Some(gives) = &follow_up.gives {
            c.error_at(
                gives,
                &format!("{at}.gives"),
                "only a follow-up chained `over` a catalog chooses what it gives (the catalog records or its answers' records)",
            );
            ok = false;
        } else if paired && !(per_page && both) {
            c.error_at(
                &follow_up.id,
                &at,
                "`per: page` pairs answer records with page records through `key` and `matches` (both, or neither: the whole answer is every record's); `per: record` takes neither",
            );
            ok = false;
        }
        let batch = match &follow_up.batch {
            None => None,
            Some(batch) if follow_up.over.is_some() => {
                c.error_at(
                    &batch.size,
                    &format!("{at}.batch"),
                    "a follow-up `over` another makes one call per record of its answer: it takes no `batch`",
                );
                ok = false;
                None
            }
            Some(batch) if !per_page => {
                c.error_at(
                    &batch.size,
                    &format!("{at}.batch"),
                    "only a `per: page` follow-up sends its page's ids in batches",
                );
                ok = false;
                None
            }
            Some(batch) if !(1..=10_000).contains(&batch.size.value) => {
                c.error_at(
                    &batch.size,
                    &format!("{at}.batch.size"),
                    "must be from 1 to 10000",
                );
                ok = false;
                None
            }
            Some(batch) => {
                let param = batch.param.as_ref().map(|param| param.value.clone());
                if let Some(empty) = batch.param.as_ref().filter(|param| param.value.is_empty()) {
                    c.error_at(
                        empty,
                        &format!("{at}.batch.param"),
                        "must name a query parameter",
                    );
                    ok = false;
                }
                let keep = batch.keep.as_ref().filter(|keep| keep.value);
                if let Some(keep) = keep
                    && (follow_up.key.is_none() || follow_up.matches.is_none())
                {
                    c.error_at(
                        keep,
                        &format!("{at}.batch.keep"),
                        "a kept batch pairs its answers with `key` and `matches`: a page given the whole answer would get the records earlier pages asked for",
                    );
                    ok = false;
                }
                Some(FollowUpBatch {
                    size: batch.size.value as usize,
                    param,
                    keep: keep.is_some(),
                })
            }
        };
        let on_get = follow_up.on_get.as_ref().filter(|on_get| on_get.value);
        if let Some(on_get) = on_get
            && (!per_page || follow_up.over.is_some())
        {
            c.error_at(
                on_get,
                &format!("{at}.on_get"),
                "a get makes every per-record follow-up already; `on_get` is for a `per: page` one that is not chained `over` another (a chained one would walk the whole catalog for one record)",
            );
            ok = false;
        }
        let concurrency = follow_up
            .concurrency
            .as_ref()
            .map_or(DEFAULT_FOLLOW_UP_CONCURRENCY, |concurrency| {
                concurrency.value
            });
        if !(1..=64).contains(&concurrency) {
            c.error_at(
                &follow_up.id,
                &format!("{at}.concurrency"),
                "must be from 1 to 64",
            );
            ok = false;
        }
        let id_parts = resources
            .get(&follow_up.resource.value)
            .is_some_and(Resource::reads_id_parts);
        let id = c.expression(&follow_up.id, &format!("{at}.id"));
        let key = c.optional_expression(follow_up.key.as_ref(), &format!("{at}.key"));
        let matches = c.optional_expression(follow_up.matches.as_ref(), &format!("{at}.matches"));
        let (Some(id), Ok(key), Ok(matches)) = (id, key, matches) else {
            ok = false;
            continue;
        };
        compiled.push(FollowUp {
            name: name.clone(),
            resource: follow_up.resource.value.clone(),
            id,
            per_page,
            key,
            matches,
            concurrency,
            skip_not_found: follow_up
                .not_found
                .as_ref()
                .is_some_and(|not_found| not_found.value == NotFound::Skip),
            batch,
            walk: follow_up.walk.as_ref().is_some_and(|walk| walk.value),
            over: follow_up.over.as_ref().map(|over| over.value.clone()),
            gives_answers: follow_up
                .gives
                .as_ref()
                .is_some_and(|gives| gives.value == ChainedGives::Answers),
            id_parts,
            on_get: on_get.is_some(),
            only_with: follow_up.only_with.as_ref().map(|flag| flag.value.clone()),
        });
        if let Some(flag) = &follow_up.only_with
            && !is_context_key(&flag.value)
        {
            c.error_at(
                flag,
                &format!("{at}.only_with"),
                "must name an account-context key, such as `read_groups`",
            );
            ok = false;
        }
    }
    // A follow-up chained over one made only with a flag has nothing to go over without it.
    // At most as many steps as follow-ups: a chain that loops is an error reported elsewhere.
    for index in 0..compiled.len() {
        let mut catalog = compiled[index].over.clone();
        let mut steps = compiled.len();
        while compiled[index].only_with.is_none()
            && steps > 0
            && let Some(over) = catalog
        {
            steps -= 1;
            let found = compiled.iter().find(|other| other.name == over);
            let (flag, next) = found.map_or((None, None), |other| {
                (other.only_with.clone(), other.over.clone())
            });
            compiled[index].only_with = flag;
            catalog = next;
        }
    }
    // A chained follow-up runs after what it is chained over (two levels at most).
    let depth = |follow_up: &FollowUp| match &follow_up.over {
        None => 0,
        Some(over) => match follow_ups.get(over).and_then(|spec| spec.over.as_ref()) {
            None => 1,
            Some(_) => 2,
        },
    };
    compiled.sort_by_key(depth);
    ok.then_some(compiled)
}

/// Whether `over` names a follow-up chained over a catalog that gives its answers' records (a
/// workspace's permission profiles, each then asked for its users): the second level of a
/// chain, and the last (it is itself chained over a catalog, not over another level).
fn over_names_a_level(
    over: &str,
    name: &str,
    follow_ups: &BTreeMap<String, crate::spec::FollowUpSpec>,
) -> bool {
    over != name
        && follow_ups.get(over).is_some_and(|level| {
            level
                .gives
                .as_ref()
                .is_some_and(|gives| gives.value == ChainedGives::Answers)
                && level
                    .over
                    .as_ref()
                    .is_some_and(|catalog| over_names_a_catalog(&catalog.value, over, follow_ups))
        })
}

/// Whether `over` names a follow-up of the same list whose answer is one for the page (a catalog
/// a chained follow-up can be called over): per page, unbatched, unchained. It may pair its own
/// records too (a group listing some of its members inline): the chained one reads the whole
/// answer all the same.
fn over_names_a_catalog(
    over: &str,
    name: &str,
    follow_ups: &BTreeMap<String, crate::spec::FollowUpSpec>,
) -> bool {
    over != name
        && follow_ups.get(over).is_some_and(|catalog| {
            per_page_spec(catalog) && catalog.batch.is_none() && catalog.over.is_none()
        })
}
