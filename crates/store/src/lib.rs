//! The store room: integrated accounts and the context (credentials included) their calls are
//! rendered from.
//!
//! Behind the [`AccountStore`] trait so that the engine does not care where accounts live:
//! [`MemoryStore`] (config accounts, the sandbox, tests), [`sqlite::SqliteStore`] (one file,
//! versioned migrations, credentials encrypted at rest) and [`postgres::PostgresStore`] (several
//! replicas sharing accounts, token refreshes and rate budgets). It does no provider HTTP.

pub mod postgres;
mod seal;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
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
    /// `needs_reauth` once the provider refused a fresh token or a refresh failed.
    #[serde(default)]
    pub status: AccountStatus,
    /// Why the account was last marked `needs_reauth`.
    #[serde(default)]
    pub last_error: Option<String>,
    /// This account's changes to its integration's mapping: a partial mapping file merged over
    /// it as `extends` merges a file over its base (another `response_mapping`, an extra
    /// header, a resource's query). YAML or JSON text; given as an object, it is kept as JSON.
    #[serde(default, deserialize_with = "mapping_text")]
    pub mapping: Option<String>,
}

impl IntegratedAccount {
    /// Whether `other` sends what this account sends: the same integration, base URL, mapping
    /// override and context (its status aside, which only says whether it may send).
    pub fn sends_as(&self, other: &IntegratedAccount) -> bool {
        self.integration == other.integration
            && self.base_url == other.base_url
            && self.mapping == other.mapping
            && self.context == other.context
    }
}

/// A mapping override as text: a string as it is, any other value as pretty JSON (which is
/// YAML too, so errors name its lines).
fn mapping_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text),
        Some(other) => {
            Some(serde_json::to_string_pretty(&other).map_err(serde::de::Error::custom)?)
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    #[default]
    Active,
    NeedsReauth,
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
            .field("status", &self.status)
            .field("mapping", &self.mapping.is_some())
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("integrated account `{0}` already exists")]
    Exists(String),
    #[error("integrated account `{0}` not found")]
    NotFound(String),
    #[error("the store key must be 32 bytes, as 64 hex characters or base64")]
    Key,
    #[error(
        "the store could not be decrypted with this key (wrong UNIGATE_STORE_KEY?) or is damaged"
    )]
    Crypto,
    /// The change was refused (an admin update that would leave the account unusable).
    #[error("{0}")]
    Refused(String),
    #[error("store: {0}")]
    Database(String),
    /// The store's database cannot be reached now; the accounts already loaded still serve.
    #[error("the account store is unreachable: {0}")]
    Unavailable(String),
    /// The store answers, but every connection kept for this work is held (token leases while
    /// slow token calls run): worth retrying shortly.
    #[error("{0}")]
    Busy(String),
}

/// A boxed future of the store's asynchronous operations.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A hold on one account's tokens across every process that shares the store: while it is held,
/// no other process obtains a token for the account. [`TokenLease::account`] is the account as
/// stored when the hold began (a token another process obtained meanwhile is in it);
/// [`TokenLease::commit`] writes the account with its new token and releases the hold in one
/// step. Dropping the lease without committing releases the hold and changes nothing.
pub trait TokenLease: Send {
    fn account(&self) -> &IntegratedAccount;
    fn commit(
        self: Box<Self>,
        updated: IntegratedAccount,
    ) -> StoreFuture<'static, Result<Arc<IntegratedAccount>, StoreError>>;
}

/// What a process does with a provider's wait another one shared: `(key, until_epoch_ms,
/// status)`, `until_epoch_ms` 0 for a release.
pub type OnHold = Arc<dyn Fn(&str, i64, u16) + Send + Sync>;

/// What a process does when its copy of an account takes a change another process made: the
/// account before, and after (`None`: deleted).
pub type OnChange = Arc<dyn Fn(&IntegratedAccount, Option<&IntegratedAccount>) + Send + Sync>;

/// A change to one account; an `Err` leaves the account as it was.
pub type Change<'a> = dyn FnMut(&mut IntegratedAccount) -> Result<(), StoreError> + 'a;

/// Where the engine finds accounts, and how it records what it learns about them.
pub trait AccountStore: Send + Sync + fmt::Debug {
    fn get(&self, id: &str) -> Option<Arc<IntegratedAccount>>;
    fn list(&self) -> Vec<Arc<IntegratedAccount>>;
    /// Changes one account in place, atomically with respect to every other write, and returns
    /// it as stored. Nothing changes when `change` refuses or the write fails.
    fn modify(
        &self,
        id: &str,
        change: &mut Change<'_>,
    ) -> Result<Arc<IntegratedAccount>, StoreError>;
    fn create(&self, account: IntegratedAccount) -> Result<(), StoreError>;
    fn delete(&self, id: &str) -> Result<(), StoreError>;

    /// Records the account's status and the reason.
    fn set_status(
        &self,
        id: &str,
        status: AccountStatus,
        last_error: Option<String>,
    ) -> Result<(), StoreError> {
        let mut last_error = Some(last_error);
        self.modify(id, &mut |account| {
            account.status = status;
            account.last_error = last_error.take().flatten();
            Ok(())
        })
        .map(drop)
    }

    /// Sets one (dotted) context key, e.g. a rotated refresh token or a fresh access token.
    fn set_context_value(&self, id: &str, key: &str, value: Value) -> Result<(), StoreError> {
        let mut value = Some(value);
        self.modify(id, &mut |account| {
            if let Some(value) = value.take() {
                set_dotted(&mut account.context, key, value);
            }
            Ok(())
        })
        .map(drop)
    }

    /// A hold on the account's tokens across processes, for a store that several processes
    /// share; `None` when this process is the only one (its own single flight is enough).
    fn lease_tokens<'a>(
        &'a self,
        _id: &'a str,
    ) -> StoreFuture<'a, Result<Option<Box<dyn TokenLease>>, StoreError>> {
        Box::pin(async { Ok(None) })
    }

    /// How many processes share the store now (each paces its calls to a provider's budget
    /// divided by this).
    fn replicas(&self) -> usize {
        1
    }

    /// Whether the store's backing database answers now (readiness).
    fn is_reachable(&self) -> bool {
        true
    }

    /// Tells the processes sharing the store that a provider asked the calls of `key` (an
    /// account's, or an integration's) to wait until `until_epoch_ms`; `0` releases it (the
    /// account was changed). Best effort: a process that misses it learns from its own 429.
    fn share_hold(&self, _key: &str, _until_epoch_ms: i64, _status: u16) {}

    /// Adds `on_hold(key, until_epoch_ms, status)` to what is called for every wait shared by a
    /// process sharing the store (this one's included; `until_epoch_ms` 0: released).
    fn subscribe_holds(&self, _on_hold: OnHold) {}

    /// Adds `on_change(before, after)` to what is called when this process's copy of an account
    /// is read back changed from a store other processes write too (a notification, a full
    /// reload; `after` `None`: deleted), so what the process keeps for it (a token, a walk's
    /// answers) follows an admin write made on another. A store only this process writes never
    /// calls it.
    fn subscribe_changes(&self, _on_change: OnChange) {}

    /// Takes the config file's accounts again (a reload): the store gains the ones it lacks and
    /// keeps the others as they are — a token rotated since start, or an admin change, would be
    /// lost if the file's older values replaced them (change an existing account through the
    /// admin API).
    fn reseed(&self, accounts: Vec<IntegratedAccount>) -> Result<(), StoreError> {
        for account in accounts {
            match self.create(account) {
                Ok(()) | Err(StoreError::Exists(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// Accounts held in memory: the config's accounts (or the sandbox's), and the cache in front of
/// the SQLite store. Updates live until restart.
#[derive(Debug, Default)]
pub struct MemoryStore {
    accounts: RwLock<BTreeMap<String, Arc<IntegratedAccount>>>,
    /// Serializes writers, so a read-modify-write is atomic among them, while readers only ever
    /// wait for a map insert: never for a write-through store's disk.
    writer: std::sync::Mutex<()>,
}

/// Sets `key` (dotted) in an object, creating intermediate objects.
pub fn set_dotted(context: &mut Value, key: &str, value: Value) {
    let mut target = context;
    let mut segments = key.split('.').peekable();
    while let Some(segment) = segments.next() {
        if !target.is_object() {
            *target = Value::Object(serde_json::Map::new());
        }
        let object = target.as_object_mut().expect("made an object above");
        if segments.peek().is_none() {
            object.insert(segment.to_owned(), value);
            return;
        }
        target = object.entry(segment.to_owned()).or_insert(Value::Null);
    }
}

impl MemoryStore {
    /// Fails on a duplicate id, naming it.
    pub fn new(accounts: Vec<IntegratedAccount>) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for account in accounts {
            if map.contains_key(&account.id) {
                return Err(format!(
                    "integrated account `{}` is defined twice",
                    account.id
                ));
            }
            map.insert(account.id.clone(), Arc::new(account));
        }
        Ok(MemoryStore {
            accounts: RwLock::new(map),
            writer: std::sync::Mutex::new(()),
        })
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn map_write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<IntegratedAccount>>> {
        self.accounts
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets an account as another process stored it (a cache refresh): no write-through.
    pub fn put(&self, account: IntegratedAccount) {
        let _writer = self.writer();
        self.map_write()
            .insert(account.id.clone(), Arc::new(account));
    }

    /// Forgets an account another process deleted.
    pub fn forget(&self, id: &str) {
        let _writer = self.writer();
        self.map_write().remove(id);
    }

    /// Replaces every account with `accounts` (a full reload of a shared store).
    pub fn replace_all(&self, accounts: Vec<IntegratedAccount>) {
        let _writer = self.writer();
        *self.map_write() = accounts
            .into_iter()
            .map(|account| (account.id.clone(), Arc::new(account)))
            .collect();
    }

    /// [`AccountStore::modify`], with `persist` called on the changed account before the copy in
    /// memory changes: a store that writes through passes its write here. Writers wait for each
    /// other; readers see the old account until the new one is persisted.
    pub fn modify_with(
        &self,
        id: &str,
        change: &mut Change<'_>,
        persist: impl FnOnce(&IntegratedAccount) -> Result<(), StoreError>,
    ) -> Result<Arc<IntegratedAccount>, StoreError> {
        let _writer = self.writer();
        let current = self
            .get(id)
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        let mut updated = IntegratedAccount::clone(&current);
        change(&mut updated)?;
        persist(&updated)?;
        let updated = Arc::new(updated);
        self.map_write().insert(id.to_owned(), updated.clone());
        Ok(updated)
    }

    /// [`AccountStore::create`], with `persist` called first.
    pub fn create_with(
        &self,
        account: IntegratedAccount,
        persist: impl FnOnce(&IntegratedAccount) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let _writer = self.writer();
        if self.get(&account.id).is_some() {
            return Err(StoreError::Exists(account.id));
        }
        persist(&account)?;
        self.map_write()
            .insert(account.id.clone(), Arc::new(account));
        Ok(())
    }

    /// [`AccountStore::delete`], with `persist` called first.
    pub fn delete_with(
        &self,
        id: &str,
        persist: impl FnOnce(&str) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let _writer = self.writer();
        if self.get(id).is_none() {
            return Err(StoreError::NotFound(id.to_owned()));
        }
        persist(id)?;
        self.map_write().remove(id);
        Ok(())
    }
}

impl AccountStore for MemoryStore {
    fn get(&self, id: &str) -> Option<Arc<IntegratedAccount>> {
        self.accounts
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(id)
            .cloned()
    }

    fn list(&self) -> Vec<Arc<IntegratedAccount>> {
        self.accounts
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn modify(
        &self,
        id: &str,
        change: &mut Change<'_>,
    ) -> Result<Arc<IntegratedAccount>, StoreError> {
        self.modify_with(id, change, |_| Ok(()))
    }

    fn create(&self, account: IntegratedAccount) -> Result<(), StoreError> {
        self.create_with(account, |_| Ok(()))
    }

    fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.delete_with(id, |_| Ok(()))
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
            status: AccountStatus::Active,
            last_error: None,
            mapping: None,
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
    fn records_status_and_context_updates() {
        let store = MemoryStore::new(vec![account("a")]).unwrap();
        store
            .set_status(
                "a",
                AccountStatus::NeedsReauth,
                Some("invalid_grant".into()),
            )
            .unwrap();
        store
            .set_context_value("a", "oauth.refresh_token", json!("r2"))
            .unwrap();
        assert!(matches!(
            store.set_context_value("nobody", "x", json!(1)),
            Err(StoreError::NotFound(_))
        ));
        let a = store.get("a").unwrap();
        assert_eq!(
            (a.status, a.last_error.as_deref()),
            (AccountStatus::NeedsReauth, Some("invalid_grant"))
        );
        assert_eq!(
            a.context,
            json!({"api_token": "SECRET", "oauth": {"refresh_token": "r2"}})
        );
    }

    #[test]
    fn debug_never_shows_the_context() {
        assert!(!format!("{:?}", account("a")).contains("SECRET"));
    }
}
