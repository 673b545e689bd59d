//! `docs/integrations.md` is generated from the mapping files (`unigate docs mappings`); this
//! fails when the checked-in table no longer matches them, or when a provider of the product's list
//! has neither a mapping nor a record saying why.

use unigate_mapping::coverage::{ProviderList, UnmappedStatus, integrations_table};
use unigate_tests::{repo_catalog, repo_root};

#[test]
fn the_coverage_table_matches_the_mapping_files() {
    let dir = repo_root().join("mappings");
    let catalog = repo_catalog();
    let list = ProviderList::load_dir(&dir).unwrap_or_else(|errors| panic!("{errors}"));
    list.check(&catalog, &dir)
        .unwrap_or_else(|errors| panic!("{errors}"));
    let generated = integrations_table(&catalog, &list);
    let checked_in =
        std::fs::read_to_string(repo_root().join("docs/integrations.md")).unwrap_or_default();
    assert!(
        generated == checked_in,
        "docs/integrations.md is stale: run `cargo run -q -p unigate-gateway -- docs mappings > docs/integrations.md`"
    );
    // Every mapped integration is a row, and the sandbox is among them.
    assert!(generated.contains("| [sandbox](") && generated.contains("| [okta]("));
}

#[test]
fn the_product_list_is_the_specs() {
    let list = ProviderList::load_dir(&repo_root().join("mappings")).unwrap();
    assert_eq!(list.providers.len(), 347);
    assert_eq!(list.providers["okta"], "Okta");
}

#[test]
fn a_not_mappable_record_names_its_evidence_and_searches() {
    let list = ProviderList::load_dir(&repo_root().join("mappings")).unwrap();
    for (id, record) in &list.unmapped {
        if record.status == UnmappedStatus::NotMappable {
            assert!(
                !record.evidence.is_empty() && !record.searched.is_empty(),
                "unmapped/{id}.yaml says not_mappable without evidence and searches"
            );
        }
    }
}

#[test]
fn a_provider_without_mapping_or_record_is_named() {
    let dir = std::env::temp_dir().join(format!("unigate-coverage-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("unmapped")).unwrap();
    std::fs::write(
        dir.join("integrations.tsv"),
        "id\tname\tpartial\nokta\tOkta\tno\nnowhere\tNowhere\tno\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("unmapped/okta.yaml"),
        "name: Okta\nstatus: not_researched\nreason: x\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("unmapped/ghost.yaml"),
        "name: Ghost\nstatus: maybe\nreason: x\n",
    )
    .unwrap();
    let errors = ProviderList::load_dir(&dir).unwrap_err().to_string();
    assert!(
        errors.contains("ghost.yaml:2: status: unknown variant `maybe`"),
        "{errors}"
    );
    std::fs::remove_file(dir.join("unmapped/ghost.yaml")).unwrap();
    let list = ProviderList::load_dir(&dir).unwrap();
    let errors = list.check(&repo_catalog(), &dir).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        errors.contains("unmapped/okta.yaml:0: `okta` is mapped: delete its unmapped record"),
        "{errors}"
    );
    assert!(
        errors.contains("integrations.tsv:0: `nowhere` has neither a mapping nor a record in unmapped/ saying why"),
        "{errors}"
    );
}
