//! The store room: integrated accounts and the context (credentials included) their calls are
//! rendered from.
//!
//! Behind the [`AccountStore`] trait so that the engine does not care where accounts live. This
//! crate holds the in-memory store seeded from the config; the embedded SQLite store with
//! encrypted credentials and token refresh is the accounts-store issue's work. It does no HTTP.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

/// One connection of a customer to a provider.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegratedAccount {
    pub id: String,
    /// Integration id: the stem of a mapping file.
    pub integration: String,
    /// Free-form values the mapping's templates read as `{{context.…}}`; holds credentials.
    #[serde(default = "empty_object")]
    pub context: Value,
    /// Overrides the integration's base URL (on-premise hosts, regional hosts, test doubles).
    #[serde(default)]
    pub base_url: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// The context holds credentials, so it is never printed.
impl fmt::Debug for IntegratedAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntegratedAccount")
            .field("id", &self.id)
            .field("integration", &self.integration)
            .field("context", &"[redacted]")
            .field("base_url", &self.base_url)
            .finish()
    }
}

/// Where the engine finds accounts.
pub trait AccountStore: Send + Sync + fmt::Debug {
    fn get(&self, id: &str) -> Option<Arc<IntegratedAccount>>;
    fn list(&self) -> Vec<Arc<IntegratedAccount>>;
}

/// Accounts held in memory, from the config file (or the sandbox).
#[derive(Debug, Default)]
pub struct MemoryStore {
    accounts: BTreeMap<String, Arc<IntegratedAccount>>,
}

impl MemoryStore {
    /// Fails on a duplicate id, naming it.
    pub fn new(accounts: Vec<IntegratedAccount>) -> Result<Self, String> {
        let mut store = MemoryStore::default();
        for account in accounts {
            if store.accounts.contains_key(&account.id) {
                return Err(format!(
                    "integrated account `{}` is defined twice",
                    account.id
                ));
            }
            store.accounts.insert(account.id.clone(), Arc::new(account));
        }
        Ok(store)
    }
}

impl AccountStore for MemoryStore {
    fn get(&self, id: &str) -> Option<Arc<IntegratedAccount>> {
        self.accounts.get(id).cloned()
    }

    fn list(&self) -> Vec<Arc<IntegratedAccount>> {
        self.accounts.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn account(id: &str) -> IntegratedAccount {
        IntegratedAccount {
            id: id.into(),
            integration: "okta".into(),
            context: json!({"api_token": "SECRET"}),
            base_url: None,
        }
    }

    #[test]
    fn finds_accounts_and_refuses_duplicates() {
        let store = MemoryStore::new(vec![account("a"), account("b")]).unwrap();
        assert_eq!(store.get("a").unwrap().id, "a");
        assert!(store.get("c").is_none());
        assert_eq!(store.list().len(), 2);
        assert_eq!(
            MemoryStore::new(vec![account("a"), account("a")]).unwrap_err(),
            "integrated account `a` is defined twice"
        );
    }

    #[test]
    fn debug_never_shows_the_context() {
        assert!(!format!("{:?}", account("a")).contains("SECRET"));
    }
}
