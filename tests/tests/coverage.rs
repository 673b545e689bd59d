//! `docs/integrations.md` is generated from the mapping files (`unigate docs mappings`); this
//! fails when the checked-in table no longer matches them.

use unigate_mapping::coverage::integrations_table;
use unigate_tests::{repo_catalog, repo_root};

#[test]
fn the_coverage_table_matches_the_mapping_files() {
    let generated = integrations_table(&repo_catalog());
    let checked_in =
        std::fs::read_to_string(repo_root().join("docs/integrations.md")).unwrap_or_default();
    assert!(
        generated == checked_in,
        "docs/integrations.md is stale: run `cargo run -q -p unigate-gateway -- docs mappings > docs/integrations.md`"
    );
    // Every mapped integration is a row, and the sandbox is among them.
    assert!(generated.contains("| [sandbox](") && generated.contains("| [okta]("));
}
