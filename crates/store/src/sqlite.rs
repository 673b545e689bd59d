//! The embedded SQLite store: one file, created on first start, schema migrations versioned, the
//! account context (credentials and tokens) encrypted at rest with ChaCha20-Poly1305 under a key
//! from the environment. Reads come from an in-memory copy loaded at start; every write goes to
//! the file first, then to the copy, so a request never waits on the disk.

use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::{AccountStatus, AccountStore, IntegratedAccount, MemoryStore, StoreError};

/// Migrations in order; the store records how many it has applied.
const MIGRATIONS: &[&str] = &["CREATE TABLE integrated_accounts (
        id TEXT PRIMARY KEY,
        integration TEXT NOT NULL,
        base_url TEXT,
        context BLOB NOT NULL,
        status TEXT NOT NULL DEFAULT 'active',
        last_error TEXT,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    )"];

/// The at-rest key: 32 bytes, given as 64 hex characters or base64.
pub struct StoreKey(Key);

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey([redacted])")
    }
}

impl StoreKey {
    pub fn parse(text: &str) -> Result<StoreKey, StoreError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| StoreError::Key)?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| StoreError::Key)?
        };
        if bytes.len() != 32 {
            return Err(StoreError::Key);
        }
        Ok(StoreKey(*Key::from_slice(&bytes)))
    }
}

#[derive(Debug)]
pub struct SqliteStore {
    connection: Mutex<Connection>,
    cipher: CipherBox,
    /// Every account, read without touching the file.
    accounts: MemoryStore,
}

struct CipherBox(ChaCha20Poly1305);

impl std::fmt::Debug for CipherBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher([redacted])")
    }
}

impl CipherBox {
    /// nonce (12 bytes) ‖ ciphertext+tag.
    fn seal(&self, context: &Value) -> Result<Vec<u8>, StoreError> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let plain = serde_json::to_vec(context).map_err(|e| StoreError::Database(e.to_string()))?;
        let sealed = self
            .0
            .encrypt(&nonce, plain.as_slice())
            .map_err(|_| StoreError::Crypto)?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    fn open(&self, blob: &[u8]) -> Result<Value, StoreError> {
        if blob.len() < 12 {
            return Err(StoreError::Crypto);
        }
        let (nonce, sealed) = blob.split_at(12);
        let plain = self
            .0
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| StoreError::Crypto)?;
        serde_json::from_slice(&plain).map_err(|_| StoreError::Crypto)
    }
}

fn db(error: rusqlite::Error) -> StoreError {
    StoreError::Database(error.to_string())
}

fn status_text(status: AccountStatus) -> &'static str {
    match status {
        AccountStatus::Active => "active",
        AccountStatus::NeedsReauth => "needs_reauth",
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store file, applies pending migrations, and loads every
    /// account. A wrong key is an error naming the problem, not garbage.
    pub fn open(path: &Path, key: StoreKey) -> Result<SqliteStore, StoreError> {
        let mut connection = Connection::open(path).map_err(db)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        connection
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(db)?;
        migrate(&mut connection)?;
        let cipher = CipherBox(ChaCha20Poly1305::new(&key.0));
        let mut accounts = Vec::new();
        {
            let mut statement = connection
                .prepare("SELECT id, integration, base_url, context, status, last_error FROM integrated_accounts")
                .map_err(db)?;
            let rows = statement
                .query_map([], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, Option<String>>(2)?,
                        row.get::<_, Vec<u8>>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, Option<String>>(5)?,
                    ))
                })
                .map_err(db)?;
            for row in rows {
                let (id, integration, base_url, blob, status, last_error) = row.map_err(db)?;
                let context = cipher.open(&blob)?;
                let status = if status == "needs_reauth" {
                    AccountStatus::NeedsReauth
                } else {
                    AccountStatus::Active
                };
                accounts.push(IntegratedAccount {
                    id,
                    integration,
                    context,
                    base_url,
                    status,
                    last_error,
                });
            }
        }
        Ok(SqliteStore {
            connection: Mutex::new(connection),
            cipher,
            accounts: MemoryStore::new(accounts).map_err(StoreError::Database)?,
        })
    }

    /// The schema version the file is at.
    pub fn schema_version(&self) -> Result<usize, StoreError> {
        let connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        version(&connection)
    }

    fn write(&self, account: &IntegratedAccount) -> Result<(), StoreError> {
        let blob = self.cipher.seal(&account.context)?;
        let connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        connection
            .execute(
                "INSERT INTO integrated_accounts (id, integration, base_url, context, status, last_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(id) DO UPDATE SET integration = ?2, base_url = ?3, context = ?4,
                   status = ?5, last_error = ?6,
                   updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
                params![
                    account.id,
                    account.integration,
                    account.base_url,
                    blob,
                    status_text(account.status),
                    account.last_error
                ],
            )
            .map_err(db)?;
        Ok(())
    }
}

fn version(connection: &Connection) -> Result<usize, StoreError> {
    let found: Option<i64> = connection
        .query_row("SELECT version FROM schema_version", [], |row| row.get(0))
        .optional()
        .map_err(db)?;
    Ok(found.unwrap_or(0) as usize)
}

fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    connection
        .execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
            [],
        )
        .map_err(db)?;
    let current = version(connection)?;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Database(format!(
            "the store file is at schema version {current}, newer than this unigate ({}); upgrade unigate",
            MIGRATIONS.len()
        )));
    }
    let transaction = connection.transaction().map_err(db)?;
    for migration in &MIGRATIONS[current..] {
        transaction.execute_batch(migration).map_err(db)?;
    }
    transaction
        .execute("DELETE FROM schema_version", [])
        .map_err(db)?;
    transaction
        .execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            params![MIGRATIONS.len() as i64],
        )
        .map_err(db)?;
    transaction.commit().map_err(db)
}

impl AccountStore for SqliteStore {
    fn get(&self, id: &str) -> Option<Arc<IntegratedAccount>> {
        self.accounts.get(id)
    }

    fn list(&self) -> Vec<Arc<IntegratedAccount>> {
        self.accounts.list()
    }

    fn modify(
        &self,
        id: &str,
        change: &mut crate::Change<'_>,
    ) -> Result<Arc<IntegratedAccount>, StoreError> {
        self.accounts
            .modify_with(id, change, |account| self.write(account))
    }

    fn create(&self, account: IntegratedAccount) -> Result<(), StoreError> {
        self.accounts
            .create_with(account, |account| self.write(account))
    }

    fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.accounts.delete_with(id, |id| {
            let connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
            connection
                .execute("DELETE FROM integrated_accounts WHERE id = ?1", params![id])
                .map_err(db)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn account(id: &str) -> IntegratedAccount {
        IntegratedAccount {
            id: id.into(),
            integration: "okta".into(),
            context: json!({"subdomain": "acme", "api_token": "SSWS-VERY-SECRET"}),
            base_url: None,
            status: AccountStatus::Active,
            last_error: None,
        }
    }

    fn scratch() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "unigate-store-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("unigate.db")
    }

    fn rand_suffix() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }

    #[test]
    fn accounts_survive_a_restart_and_credentials_are_encrypted_on_disk() {
        let path = scratch();
        {
            let store = SqliteStore::open(&path, StoreKey::parse(KEY).unwrap()).unwrap();
            assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len());
            store.create(account("a")).unwrap();
            store
                .set_context_value("a", "refresh_token", json!("rotated-REFRESH"))
                .unwrap();
            store
                .set_status(
                    "a",
                    AccountStatus::NeedsReauth,
                    Some("invalid_grant".into()),
                )
                .unwrap();
            assert!(matches!(
                store.create(account("a")),
                Err(StoreError::Exists(_))
            ));
        }
        let raw = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(
            !text.contains("SSWS-VERY-SECRET")
                && !text.contains("rotated-REFRESH")
                && !text.contains("acme")
        );

        let store = SqliteStore::open(&path, StoreKey::parse(KEY).unwrap()).unwrap();
        let a = store.get("a").unwrap();
        assert_eq!(a.context["refresh_token"], "rotated-REFRESH");
        assert_eq!(
            (a.status, a.last_error.as_deref()),
            (AccountStatus::NeedsReauth, Some("invalid_grant"))
        );
        store.delete("a").unwrap();
        assert!(store.get("a").is_none());
        assert!(matches!(store.delete("a"), Err(StoreError::NotFound(_))));
    }

    #[test]
    fn a_wrong_key_is_refused_not_misread() {
        let path = scratch();
        SqliteStore::open(&path, StoreKey::parse(KEY).unwrap())
            .unwrap()
            .create(account("a"))
            .unwrap();
        let other = StoreKey::parse(&"ff".repeat(32)).unwrap();
        assert!(matches!(
            SqliteStore::open(&path, other),
            Err(StoreError::Crypto)
        ));
        assert!(matches!(StoreKey::parse("short"), Err(StoreError::Key)));
    }
}
