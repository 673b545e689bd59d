//! The coverage table of `docs/integrations.md`, generated from the compiled mapping files so
//! that it cannot drift from them (a test compares the checked-in file).

use std::fmt::Write as _;

use crate::catalog::Catalog;
use crate::integration::Method;

/// Markdown: one row per integration mapping `model/resource/list`.
pub fn integrations_table(catalog: &Catalog, model: &str, resource: &str) -> String {
    let mut out = String::new();
    let rows: Vec<_> = catalog
        .integrations
        .values()
        .filter_map(|integration| {
            Some((
                integration,
                integration.unified_method(model, resource, Method::List)?,
            ))
        })
        .collect();
    let _ = writeln!(out, "# Integrations\n");
    let _ = writeln!(
        out,
        "Generated from `mappings/` by `unigate docs mappings`; do not edit by hand (a test fails when this file is stale).\n"
    );
    let _ = writeln!(
        out,
        "{} integrations map `{model}/{resource}` list.\n",
        rows.len()
    );
    let _ = writeln!(
        out,
        "| id | name | pagination | auth | mapped fields | native filters | native sorts | partial |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for (integration, method) in rows {
        let pagination = integration
            .resources
            .get(&method.resource)
            .map_or("none", |resource| resource.pagination.strategy.style.name());
        let fields = method
            .response_mapping
            .object_keys()
            .map_or_else(|| "(computed)".to_owned(), |keys| keys.join(", "));
        let list = |items: &std::collections::BTreeSet<String>| {
            if items.is_empty() {
                "—".to_owned()
            } else {
                items.iter().cloned().collect::<Vec<_>>().join(", ")
            }
        };
        let _ = writeln!(
            out,
            "| [{}]({}) | {} | {} | {} | {} | {} | {} | {} |",
            integration.id,
            integration.docs,
            integration.name.replace('|', "\\|"),
            pagination,
            integration.auth.kind_name(),
            fields,
            list(&method.native_filters),
            list(&method.native_sorts),
            if method.partial { "yes" } else { "no" },
        );
    }
    out
}
