//! The coverage table of `docs/integrations.md`, generated from the compiled mapping files so
//! that it cannot drift from them (a test compares the checked-in file): for every resource of
//! every unified model, the integrations that map it and how; then every provider of the product's
//! list (`mappings/integrations.tsv`) that has no mapping, with the record that says why
//! (`mappings/unmapped/<id>.yaml`). It does not load or compile mappings itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;

use crate::catalog::{Catalog, parse_yaml, read_yaml_files};
use crate::diagnostics::{LoadError, LoadErrors};
use crate::integration::{Integration, UnifiedMethod};

/// Why a provider of the product's list has no mapping file yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnmappedStatus {
    /// Its documentation was searched and shows no call that lists its users.
    NotMappable,
    /// The call is documented but needs something the mapping format cannot say yet (XML bodies,
    /// per-request signatures, …); `reason` names it.
    NeedsFormat,
    /// No source documenting the call could be read yet; `notes` say what was tried.
    NotResearched,
}

impl UnmappedStatus {
    pub fn name(self) -> &'static str {
        match self {
            UnmappedStatus::NotMappable => "not mappable",
            UnmappedStatus::NeedsFormat => "needs a format feature",
            UnmappedStatus::NotResearched => "not researched yet",
        }
    }
}

/// `mappings/unmapped/<id>.yaml`: the record of a listed provider that has no mapping.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnmappedSpec {
    pub name: String,
    pub status: UnmappedStatus,
    /// One paragraph: what is missing and why.
    pub reason: String,
    /// Pages that back the reason.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// The searches that were run (`corpus: query`), so the next person does not repeat them.
    #[serde(default)]
    pub searched: Vec<String>,
    /// Everything else that was learnt or tried, free text.
    #[serde(default)]
    pub notes: Option<String>,
}

/// The product's provider list and the records of the unmapped ones.
#[derive(Debug, Default)]
pub struct ProviderList {
    /// id → name, from `integrations.tsv` (columns `id`, `name`, …; header first).
    pub providers: BTreeMap<String, String>,
    pub unmapped: BTreeMap<String, UnmappedSpec>,
}

impl ProviderList {
    /// Reads `dir/integrations.tsv` and `dir/unmapped/*.yaml`.
    pub fn load_dir(dir: &Path) -> Result<ProviderList, LoadErrors> {
        let mut errors = Vec::new();
        let mut list = ProviderList::default();
        let tsv = dir.join("integrations.tsv");
        match std::fs::read_to_string(&tsv) {
            Ok(text) => {
                for (index, line) in text.lines().enumerate().skip(1) {
                    let mut columns = line.split('\t');
                    match (columns.next(), columns.next()) {
                        (Some(id), Some(name)) if !id.is_empty() => {
                            list.providers.insert(id.to_owned(), name.to_owned());
                        }
                        _ => errors.push(LoadError {
                            file: tsv.clone(),
                            line: index as u64 + 1,
                            path: String::new(),
                            message: "expected `id<TAB>name`".into(),
                        }),
                    }
                }
            }
            Err(error) => errors.push(LoadError {
                file: tsv,
                line: 0,
                path: String::new(),
                message: format!("cannot read file: {error}"),
            }),
        }
        for source in read_yaml_files(&dir.join("unmapped"), &mut errors) {
            if let Some(spec) = parse_yaml::<UnmappedSpec>(&source, &mut errors) {
                list.unmapped.insert(source.stem(), spec);
            }
        }
        if errors.is_empty() {
            Ok(list)
        } else {
            Err(LoadErrors(errors))
        }
    }

    /// Every listed provider is mapped or has an unmapped record, never both, and every record is
    /// of a listed provider.
    pub fn check(&self, catalog: &Catalog, dir: &Path) -> Result<(), LoadErrors> {
        let mut errors = Vec::new();
        let mut error = |file: &Path, message: String| {
            errors.push(LoadError {
                file: file.to_owned(),
                line: 0,
                path: String::new(),
                message,
            });
        };
        for id in self.providers.keys() {
            let mapped = catalog.integrations.contains_key(id);
            let recorded = self.unmapped.contains_key(id);
            let record = dir.join("unmapped").join(format!("{id}.yaml"));
            match (mapped, recorded) {
                (true, true) => error(
                    &record,
                    format!("`{id}` is mapped: delete its unmapped record"),
                ),
                (false, false) => error(
                    &dir.join("integrations.tsv"),
                    format!("`{id}` has neither a mapping nor a record in unmapped/ saying why"),
                ),
                _ => {}
            }
        }
        for id in self.unmapped.keys() {
            if !self.providers.contains_key(id) {
                let record = dir.join("unmapped").join(format!("{id}.yaml"));
                error(
                    &record,
                    format!("`{id}` is not a provider of integrations.tsv"),
                );
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(LoadErrors(errors))
        }
    }
}

/// The file's credential kind, then each other kind its variants use with the variants that
/// use it (`header; oauth2_refresh_token (oauth)`): which credentials an account may hold.
fn auth_kinds(integration: &Integration) -> String {
    let own = integration.auth.kind_name();
    let mut others: Vec<(&str, Vec<&str>)> = Vec::new();
    for variant in &integration.variants {
        let kind = variant.integration.auth.kind_name();
        if kind == own {
            continue;
        }
        match others.iter_mut().find(|(name, _)| *name == kind) {
            Some((_, names)) => names.push(&variant.name),
            None => others.push((kind, vec![&variant.name])),
        }
    }
    let mut out = own.to_owned();
    for (kind, names) in others {
        out.push_str(&format!("; {kind} ({})", names.join(", ")));
    }
    out
}

fn comma_list(items: &BTreeSet<String>) -> String {
    if items.is_empty() {
        "—".to_owned()
    } else {
        items.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// Markdown: a summary of the provider list, one section per unified resource with one row per
/// integration that maps it, then the providers without a mapping and why.
pub fn integrations_table(catalog: &Catalog, list: &ProviderList) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Integrations\n");
    let _ = writeln!(
        out,
        "Generated from `mappings/` by `unigate docs mappings`; do not edit by hand (a test fails when this file is stale).\n"
    );
    let listed_and_mapped = list
        .providers
        .keys()
        .filter(|id| catalog.integrations.contains_key(*id))
        .count();
    let _ = writeln!(
        out,
        "{listed_and_mapped} of the {} providers of the product's list (`mappings/integrations.tsv`) are mapped.\n",
        list.providers.len()
    );
    let mut by_status: BTreeMap<UnmappedStatus, usize> = BTreeMap::new();
    for spec in list.unmapped.values() {
        *by_status.entry(spec.status).or_default() += 1;
    }
    for (status, count) in &by_status {
        let _ = writeln!(out, "- {}: {count}", status.name());
    }
    let retired: Vec<String> = catalog
        .integrations
        .values()
        .filter_map(|integration| {
            let retired = integration.retired.as_ref()?;
            Some(format!("{} (since {})", integration.id, retired.since))
        })
        .collect();
    if !retired.is_empty() {
        let _ = writeln!(
            out,
            "- mapped, but the provider shut the service down (calls are answered 410 without asking it): {}",
            retired.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "\nThe link of each id is the provider documentation its mapping was written from. `auth` is the\ncredential an account gives by default, then each other kind the file's variants accept (an\nOAuth app's refresh token, a service account), with the variants that use it.\n"
    );
    for (model_name, model) in &catalog.models {
        for resource in model.resources.keys() {
            let rows: Vec<_> = catalog
                .integrations
                .values()
                .filter_map(|integration| {
                    let methods = integration.methods_of(model_name, resource);
                    // The row describes the list when there is one, else the first method.
                    let main: &UnifiedMethod =
                        integration.unified_method(model_name, resource, *methods.first()?)?;
                    Some((integration, methods, main))
                })
                .collect();
            let _ = writeln!(out, "## {model_name}/{resource}\n");
            let _ = writeln!(
                out,
                "{} integrations map `{model_name}/{resource}`.\n",
                rows.len()
            );
            let _ = writeln!(
                out,
                "| id | name | methods | pagination | auth | mapped fields | native filters | native sorts | partial |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
            for (integration, methods, main) in rows {
                let pagination = integration.resources.get(&main.resource).map_or_else(
                    || "none".to_owned(),
                    |resource| {
                        let style = resource.pagination.strategy.style.name();
                        if resource.passes.is_empty() {
                            return style.to_owned();
                        }
                        // A list walked in parts says which: `invitations` beside the members.
                        let parts: Vec<String> = resource
                            .passes
                            .iter()
                            .map(|pass| {
                                let part = match &pass.name {
                                    Some(name) => name.clone(),
                                    None if pass.query.is_empty() => "as listed".to_owned(),
                                    None => pass
                                        .query
                                        .iter()
                                        .map(|(name, value)| format!("{name}={value}"))
                                        .collect::<Vec<_>>()
                                        .join("&"),
                                };
                                // A part paged its own way says how.
                                match &pass.pagination {
                                    Some(own) => {
                                        format!("{part} ({})", own.strategy.style.name())
                                    }
                                    None => part,
                                }
                            })
                            .collect();
                        format!("{style}; in parts: {}", parts.join(", "))
                    },
                );
                let fields = main
                    .response_mapping
                    .object_keys()
                    .map_or_else(|| "(computed)".to_owned(), |keys| keys.join(", "));
                let _ = writeln!(
                    out,
                    "| [{}]({}) | {} | {} | {} | {} | {} | {} | {} | {} |",
                    integration.id,
                    integration.docs,
                    match &integration.retired {
                        Some(retired) => format!(
                            "{} (retired {})",
                            integration.name.replace('|', "\\|"),
                            retired.since
                        ),
                        None => integration.name.replace('|', "\\|"),
                    },
                    methods
                        .iter()
                        .map(|m| m.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                    pagination,
                    auth_kinds(integration),
                    fields,
                    comma_list(&main.native_filters),
                    comma_list(&main.native_sorts),
                    if main.partial { "yes" } else { "no" },
                );
            }
            let _ = writeln!(out);
        }
    }
    let _ = writeln!(out, "## Not mapped\n");
    let _ = writeln!(
        out,
        "Providers of the list without a mapping; `mappings/unmapped/<id>.yaml` holds the evidence, the searches run and the notes.\n"
    );
    let _ = writeln!(out, "| id | name | status | reason |");
    let _ = writeln!(out, "|---|---|---|---|");
    for (id, spec) in &list.unmapped {
        let reason = spec.reason.split_whitespace().collect::<Vec<_>>().join(" ");
        let _ = writeln!(
            out,
            "| {id} | {} | {} | {} |",
            spec.name.replace('|', "\\|"),
            spec.status.name(),
            reason.replace('|', "\\|"),
        );
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}
