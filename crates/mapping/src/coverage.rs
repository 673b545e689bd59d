//! The coverage table of `docs/integrations.md`, generated from the compiled mapping files so
//! that it cannot drift from them (a test compares the checked-in file): for every resource of
//! every unified model, the integrations that map it and how.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::catalog::Catalog;
use crate::integration::UnifiedMethod;

fn list(items: &BTreeSet<String>) -> String {
    if items.is_empty() {
        "—".to_owned()
    } else {
        items.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// Markdown: one section per unified resource, one row per integration that maps it.
pub fn integrations_table(catalog: &Catalog) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Integrations\n");
    let _ = writeln!(
        out,
        "Generated from `mappings/` by `unigate docs mappings`; do not edit by hand (a test fails when this file is stale).\n"
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
                let pagination = integration
                    .resources
                    .get(&main.resource)
                    .map_or("none", |resource| resource.pagination.strategy.style.name());
                let fields = main
                    .response_mapping
                    .object_keys()
                    .map_or_else(|| "(computed)".to_owned(), |keys| keys.join(", "));
                let _ = writeln!(
                    out,
                    "| [{}]({}) | {} | {} | {} | {} | {} | {} | {} | {} |",
                    integration.id,
                    integration.docs,
                    integration.name.replace('|', "\\|"),
                    methods
                        .iter()
                        .map(|m| m.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                    pagination,
                    integration.auth.kind_name(),
                    fields,
                    list(&main.native_filters),
                    list(&main.native_sorts),
                    if main.partial { "yes" } else { "no" },
                );
            }
            let _ = writeln!(out);
        }
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}
