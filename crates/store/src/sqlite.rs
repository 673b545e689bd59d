//! The embedded SQLite store: one file, created on first start, schema migrations versioned, the
//! account context (credentials and tokens) encrypted at rest with ChaCha20-Poly1305 under a key
//! from the environment, bound to the row's id, integration and base URL (a row edited on disk to
//! point the credentials elsewhere no longer opens). One process holds the file at a time (an
//! exclusive SQLite lock, taken at open). Reads come from an in-memory copy loaded at start;
//! every write goes to the file first, then to the copy, and a reader never waits for the disk.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

pub use crate::seal::StoreKey;
use crate::seal::{CipherBox, associated_data};
use crate::{AccountStatus, AccountStore, IntegratedAccount, MemoryStore, StoreError};

/// Migrations in order; the store records how many it has applied.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE integrated_accounts (
        id TEXT PRIMARY KEY,
        integration TEXT NOT NULL,
        base_url TEXT,
        context BLOB NOT NULL,
        status TEXT NOT NULL DEFAULT 'active',
        last_error TEXT,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    )",
    // 1 = sealed without associated data (files of schema 1); 2 = bound to id, integration and
    // base URL; 3 = the same, the payload holding the context and the account's mapping
    // override. Older rows are resealed at the newest when the store opens.
    "ALTER TABLE integrated_accounts ADD COLUMN sealing INTEGER NOT NULL DEFAULT 1",
];

/// The `sealing` of rows written now.
const SEALING_BOUND: i64 = crate::seal::SEALING_WITH_MAPPING;

#[derive(Debug)]
pub struct SqliteStore {
    connection: Mutex<Connection>,
    cipher: CipherBox,
    /// Every account, read without touching the file.
    accounts: MemoryStore,
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
        let in_use = |error: rusqlite::Error| match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Database(format!(
                    "{} is in use by another unigate process (one process serves a store file)",
                    path.display()
                ))
            }
            _ => db(error),
        };
        connection
            .busy_timeout(std::time::Duration::from_millis(500))
            .map_err(db)?;
        // Held from the first write below until the connection closes: a second process (or a
        // second store in this one) cannot open the file and write over this one's rotations.
        connection
            .pragma_update(None, "locking_mode", "EXCLUSIVE")
            .map_err(in_use)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(in_use)?;
        connection
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(in_use)?;
        connection
            .execute_batch("BEGIN EXCLUSIVE; COMMIT;")
            .map_err(in_use)?;
        migrate(&mut connection)?;
        let cipher = key.cipher();
        let mut accounts = Vec::new();
        let mut reseal = Vec::new();
        {
            let mut statement = connection
                .prepare("SELECT id, integration, base_url, context, status, last_error, sealing FROM integrated_accounts")
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
                        row.get::<_, i64>(6)?,
                    ))
                })
                .map_err(db)?;
            for row in rows {
                let (id, integration, base_url, blob, status, last_error, sealing) =
                    row.map_err(db)?;
                let aad = if sealing >= 2 {
                    associated_data(&id, &integration, base_url.as_deref())
                } else {
                    Vec::new()
                };
                let (context, mapping) = cipher.open_account(&blob, &aad, sealing)?;
                let status = if status == "needs_reauth" {
                    AccountStatus::NeedsReauth
                } else {
                    AccountStatus::Active
                };
                let account = IntegratedAccount {
                    id,
                    integration,
                    context,
                    base_url,
                    status,
                    last_error,
                    mapping,
                };
                if sealing < SEALING_BOUND {
                    reseal.push(account.clone());
                }
                accounts.push(account);
            }
        }
        let store = SqliteStore {
            connection: Mutex::new(connection),
            cipher,
            accounts: MemoryStore::new(accounts).map_err(StoreError::Database)?,
        };
        for account in &reseal {
            store.write(account)?;
        }
        Ok(store)
    }

    /// The schema version the file is at.
    pub fn schema_version(&self) -> Result<usize, StoreError> {
        let connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        version(&connection)
    }

    fn write(&self, account: &IntegratedAccount) -> Result<(), StoreError> {
        let aad = associated_data(
            &account.id,
            &account.integration,
            account.base_url.as_deref(),
        );
        let blob = self
            .cipher
            .seal_account(&account.context, account.mapping.as_deref(), &aad)?;
        let connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        connection
            .execute(
                "INSERT INTO integrated_accounts (id, integration, base_url, context, status, last_error, sealing)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(id) DO UPDATE SET integration = ?2, base_url = ?3, context = ?4,
                   status = ?5, last_error = ?6, sealing = ?7,
                   updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
                params![
                    account.id,
                    account.integration,
                    account.base_url,
                    blob,
                    status_text(account.status),
                    account.last_error,
                    SEALING_BOUND
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
            mapping: None,
        }
    }

    /// A database path in a temporary folder, removed when the test ends.
    struct Scratch {
        dir: std::path::PathBuf,
        db: std::path::PathBuf,
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    impl std::ops::Deref for Scratch {
        type Target = std::path::Path;
        fn deref(&self) -> &std::path::Path {
            &self.db
        }
    }

    impl AsRef<std::path::Path> for Scratch {
        fn as_ref(&self) -> &std::path::Path {
            &self.db
        }
    }

    fn scratch() -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "unigate-store-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch {
            db: dir.join("unigate.db"),
            dir,
        }
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
            store
                .create(IntegratedAccount {
                    mapping: Some("headers:\n  X-Tenant: acme\n".to_owned()),
                    ..account("a")
                })
                .unwrap();
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
        assert_eq!(a.mapping.as_deref(), Some("headers:\n  X-Tenant: acme\n"));
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

    #[test]
    fn a_row_edited_on_disk_to_send_credentials_elsewhere_does_not_open() {
        let path = scratch();
        SqliteStore::open(&path, StoreKey::parse(KEY).unwrap())
            .unwrap()
            .create(account("a"))
            .unwrap();
        for edit in [
            "UPDATE integrated_accounts SET base_url = 'https://evil.example'",
            "UPDATE integrated_accounts SET integration = 'onelogin'",
            "UPDATE integrated_accounts SET id = 'b'",
        ] {
            let copy = path.with_extension(format!("edit-{}", rand_suffix()));
            std::fs::copy(&path, &copy).unwrap();
            Connection::open(&copy).unwrap().execute(edit, []).unwrap();
            assert!(
                matches!(
                    SqliteStore::open(&copy, StoreKey::parse(KEY).unwrap()),
                    Err(StoreError::Crypto)
                ),
                "{edit}"
            );
        }
    }

    #[test]
    fn one_process_holds_a_store_file() {
        let path = scratch();
        let first = SqliteStore::open(&path, StoreKey::parse(KEY).unwrap()).unwrap();
        let second = SqliteStore::open(&path, StoreKey::parse(KEY).unwrap()).unwrap_err();
        assert_eq!(
            second.to_string(),
            format!(
                "store: {} is in use by another unigate process (one process serves a store file)",
                path.display()
            )
        );
        drop(first);
        assert!(SqliteStore::open(&path, StoreKey::parse(KEY).unwrap()).is_ok());
    }

    #[test]
    fn a_schema_1_file_is_resealed_bound_to_its_rows() {
        let path = scratch();
        {
            let connection = Connection::open(&path).unwrap();
            connection.execute_batch(MIGRATIONS[0]).unwrap();
            connection
                .execute_batch(
                    "CREATE TABLE schema_version (version INTEGER NOT NULL);
                     INSERT INTO schema_version (version) VALUES (1);",
                )
                .unwrap();
            let cipher = StoreKey::parse(KEY).unwrap().cipher();
            let blob = cipher.seal(&account("a").context, &[]).unwrap();
            connection
                .execute(
                    "INSERT INTO integrated_accounts (id, integration, context) VALUES ('a', 'okta', ?1)",
                    params![blob],
                )
                .unwrap();
        }
        {
            let store = SqliteStore::open(&path, StoreKey::parse(KEY).unwrap()).unwrap();
            assert_eq!(store.schema_version().unwrap(), 2);
            assert_eq!(
                store.get("a").unwrap().context["api_token"],
                "SSWS-VERY-SECRET"
            );
        }
        let sealing: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT sealing FROM integrated_accounts", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(sealing, SEALING_BOUND);
        Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE integrated_accounts SET base_url = 'https://evil.example'",
                [],
            )
            .unwrap();
        assert!(matches!(
            SqliteStore::open(&path, StoreKey::parse(KEY).unwrap()),
            Err(StoreError::Crypto)
        ));
    }
}
