//! The catalogs a list's passes are walked over (`over`): a pass that lists each merchant
//! account's users, one walk per merchant, first reads the company's merchant accounts whole.
//! A catalog is read once a walk and kept with the walk's follow-up answers (a call continuing
//! the walk by its cursor reuses it, for 10 minutes at most); a cursor names its catalog record
//! by place and id, so that a catalog read anew still finds it. This room reads catalogs and
//! finds records in them; the walker walks the pass's pages, and the page room maps their
//! records with the catalog record as `$over`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use unigate_pagination::CatalogAt;
use unigate_unified::ApiError;

use crate::Engine;
use crate::call::ListCall;
use crate::follow::{as_id, evaluate, lock};

/// A catalog as read: each record with its id (the pass's `{{id}}` for its walk), in the
/// catalog's order, each id once.
pub(crate) type Catalog = Arc<Vec<(String, Value)>>;

/// The catalogs one walk has read, by pass.
pub(crate) type PassCatalogs = Mutex<HashMap<u32, Catalog>>;

impl Engine {
    /// The catalog pass `pass` of the call is walked over: kept by the walk, else read whole
    /// (every page of its list, as a walked follow-up's answer is). A record whose `id` gives
    /// nothing is not walked, and an id met again is walked once.
    pub(crate) async fn pass_catalog(
        &self,
        call: &ListCall,
        pass: u32,
    ) -> Result<Catalog, ApiError> {
        if let Some(kept) = lock(&call.walk_answers.pass_catalogs).get(&pass) {
            return Ok(kept.clone());
        }
        let over = call.endpoint.pass_over(pass).ok_or_else(|| {
            ApiError::internal(format!("pass {pass} of the list is over no catalog"))
        })?;
        let what = format!(
            "the catalog (`{}`) of pass `{}`",
            over.catalog.resource, over.catalog.name
        );
        let records = self
            .read_answer(call, &over.catalog, "", None, &what)
            .await?
            .unwrap_or_default();
        let mut seen = HashSet::new();
        let mut catalog = Vec::with_capacity(records.len());
        for record in records {
            let id = evaluate(
                call,
                &call.scope,
                &over.catalog.id,
                &record,
                "passes.over.id",
            )?;
            if let Some(id) = as_id(id)
                && seen.insert(id.clone())
            {
                catalog.push((id, record));
            }
        }
        let catalog = Arc::new(catalog);
        lock(&call.walk_answers.pass_catalogs).insert(pass, catalog.clone());
        Ok(catalog)
    }
}

/// Where the catalog record `at` is in `catalog`: at its place if it is still there, else
/// wherever its id is now; `None` when it is gone.
pub(crate) fn locate(catalog: &[(String, Value)], at: &CatalogAt) -> Option<usize> {
    let index = at.index as usize;
    match catalog.get(index) {
        Some((id, _)) if *id == at.id => Some(index),
        _ => catalog.iter().position(|(id, _)| *id == at.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(ids: &[&str]) -> Vec<(String, Value)> {
        ids.iter()
            .map(|id| ((*id).to_owned(), Value::Null))
            .collect()
    }

    fn at(index: u32, id: &str) -> CatalogAt {
        CatalogAt {
            index,
            id: id.to_owned(),
        }
    }

    #[test]
    fn a_record_is_found_at_its_place_or_where_it_moved() {
        assert_eq!(locate(&catalog(&["a", "b", "c"]), &at(1, "b")), Some(1));
        // A record added before it moved it on; one removed before it moved it back.
        assert_eq!(
            locate(&catalog(&["z", "a", "b", "c"]), &at(1, "b")),
            Some(2)
        );
        assert_eq!(locate(&catalog(&["b", "c"]), &at(1, "b")), Some(0));
        assert_eq!(locate(&catalog(&["a", "c"]), &at(1, "b")), None);
    }
}
