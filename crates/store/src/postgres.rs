//! The PostgreSQL store, for several gateway replicas sharing one database: accounts (contexts
//! sealed as in SQLite) in `unigate_accounts`, migrations numbered and applied under an advisory
//! lock, a per-replica copy of every account kept fresh by `LISTEN/NOTIFY` (a trigger notifies
//! each change; a full reload on every reconnect and on a timer covers a missed notification),
//! token requests serialized across replicas by a row lock ([`TokenLease`]) held on connections
//! of their own (a slow token endpoint never keeps the store's other work waiting), and a
//! heartbeat table that tells each replica how many share the store (each paces at its share of
//! a provider's budget), and providers' waits announced to every replica (`unigate_holds`
//! notifications: one replica's 429 holds the account on all). Reads never touch the database: during an outage the accounts already
//! loaded keep serving, and writes fail with [`StoreError::Unavailable`]. It does no provider
//! HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Row};

use crate::seal::{CipherBox, StoreKey, associated_data};
use crate::{
    AccountStatus, AccountStore, Change, IntegratedAccount, MemoryStore, StoreError, StoreFuture,
    TokenLease,
};

/// Migrations in order; `unigate_schema_version` records how many are applied and
/// `unigate_migrations` who applied each (one row per migration, however many replicas start).
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE unigate_accounts (
        id TEXT PRIMARY KEY,
        integration TEXT NOT NULL,
        base_url TEXT,
        context BYTEA NOT NULL,
        status TEXT NOT NULL DEFAULT 'active',
        last_error TEXT,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE unigate_replicas (
        id TEXT PRIMARY KEY,
        seen_at TIMESTAMPTZ NOT NULL
    );
    CREATE FUNCTION unigate_account_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            PERFORM pg_notify('unigate_accounts', OLD.id);
        ELSE
            PERFORM pg_notify('unigate_accounts', NEW.id);
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER unigate_account_changed AFTER INSERT OR UPDATE OR DELETE ON unigate_accounts
        FOR EACH ROW EXECUTE FUNCTION unigate_account_changed();",
    // The sealed payload's form, as in SQLite: 2 = the context; 3 = the context and the
    // account's mapping override.
    "ALTER TABLE unigate_accounts ADD COLUMN sealing INTEGER NOT NULL DEFAULT 2;",
];

/// The advisory lock migrations run under (any constant unique to unigate).
const MIGRATION_LOCK: i64 = 0x0075_6e69_6761_7465;
/// The notification channel of account changes.
const CHANNEL: &str = "unigate_accounts";
/// The notification channel of providers' waits (`AccountStore::share_hold`): JSON
/// `{"key", "until", "status"}`, `until` in epoch milliseconds, `0` to release.
const HOLDS_CHANNEL: &str = "unigate_holds";

/// How often a replica says it is alive, and how long a silent one still counts.
const HEARTBEAT: Duration = Duration::from_secs(1);
const ALIVE_FOR_S: i64 = 4;
/// The longest a store operation waits for a connection (then the database is unreachable).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest a token request waits for one of the token-lease connections while every one is
/// held by a token request in flight (`PostgresSettings::token_lease_wait`): long enough for a
/// slow token endpoint to answer the ones ahead of it (the request's own deadline usually ends
/// the wait first).
pub const TOKEN_LEASE_WAIT: Duration = Duration::from_secs(30);

const SELECT: &str =
    "SELECT id, integration, base_url, context, status, last_error, sealing FROM unigate_accounts";

/// `store: {kind: postgres, …}`.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    /// `postgres://user:password@host:port/database` (or the key=value form).
    pub url: String,
    pub pool_size: usize,
    /// Connections for token requests in flight, apart from `pool_size`'s: a token lease holds
    /// its connection (and the account's row lock) while the provider's token endpoint answers,
    /// so on the shared pool a few slow token calls would keep the heartbeat, the reloads that
    /// notifications ask for, and admin writes waiting, then failing. This many accounts get a
    /// token at once per replica; more wait their turn.
    pub token_leases: usize,
    /// How long a token request waits for one of them ([`TOKEN_LEASE_WAIT`]), then fails with
    /// [`StoreError::Busy`].
    pub token_lease_wait: Duration,
    /// The full reload that backs up `LISTEN/NOTIFY`.
    pub reload_every: Duration,
    /// TLS to the server, required and verified; `None`: plain unless the URL asks otherwise.
    pub tls: Option<PostgresTls>,
}

/// `store.tls`: connections use TLS and check the server's certificate against the Mozilla
/// roots, plus the certificates of `ca_file` (a private or cloud provider's CA bundle).
#[derive(Debug, Clone, Default)]
pub struct PostgresTls {
    pub ca_file: Option<std::path::PathBuf>,
}

/// How to reach the database: the parsed URL and the TLS connector every connection uses.
#[derive(Clone)]
pub(crate) struct Target {
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl Target {
    pub(crate) fn new(settings: &PostgresSettings) -> Result<Target, StoreError> {
        let mut config = config_of(&settings.url)?;
        match &settings.tls {
            Some(_) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
            }
            // Before `store.tls` existed every connection was plain; a URL without `sslmode`
            // keeps that (a server's self-signed certificate would otherwise be refused).
            None if !settings.url.contains("sslmode=") => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            }
            None => {}
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = settings.tls.as_ref().and_then(|tls| tls.ca_file.as_ref()) {
            use rustls::pki_types::{CertificateDer, pem::PemObject};
            let unreadable = |error: &dyn std::fmt::Display| {
                StoreError::Database(format!("store.tls.ca_file {}: {error}", path.display()))
            };
            let mut found = 0;
            for certificate in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))? {
                roots
                    .add(certificate.map_err(|e| unreadable(&e))?)
                    .map_err(|e| unreadable(&e))?;
                found += 1;
            }
            if found == 0 {
                return Err(unreadable(&"holds no PEM certificate"));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| StoreError::Database(format!("store.tls: {error}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Target {
            config,
            tls: tokio_postgres_rustls::MakeRustlsConnect::new(client),
        })
    }

    async fn connect(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<
                tokio_postgres::Socket,
                <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<
                    tokio_postgres::Socket,
                >>::Stream,
            >,
        ),
        StoreError,
    > {
        self.config.connect(self.tls.clone()).await.map_err(db)
    }

    /// A pool of at most `size` connections (at least one) whose callers wait `wait` for one.
    fn pool(&self, size: usize, wait: Duration) -> Result<Pool, StoreError> {
        let manager = Manager::from_config(
            self.config.clone(),
            self.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(wait))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|error| StoreError::Database(error.to_string()))
    }
}

#[derive(Debug)]
pub struct PostgresStore {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    /// Providers' waits (and their releases) to announce, in the order this replica made them.
    holds: tokio::sync::mpsc::UnboundedSender<String>,
}

#[derive(Debug)]
struct Shared {
    pool: Pool,
    /// Token leases' own connections (`PostgresSettings::token_leases`).
    lease_pool: Pool,
    lease_wait: Duration,
    cipher: CipherBox,
    accounts: MemoryStore,
    replica: String,
    replicas: AtomicUsize,
    reachable: AtomicBool,
    /// Who hears of providers' waits announced on [`HOLDS_CHANNEL`] (the engine's pacer).
    on_hold: HoldSubscriber,
    /// Who hears of accounts read back changed (the engine's token cache and walk answers).
    on_change: ChangeSubscriber,
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// A database error: the connection's (unreachable) or the statement's. The driver's own text
/// is terse ("db error"); the causes beneath it (the server's message, a TLS refusal) are what
/// an operator needs, so they are appended.
fn db(error: tokio_postgres::Error) -> StoreError {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    if error.is_closed() || error.code().is_none() {
        StoreError::Unavailable(text)
    } else {
        StoreError::Database(text)
    }
}

fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    match error {
        deadpool_postgres::PoolError::Backend(error) => db(error),
        other => unavailable(other),
    }
}

fn status_text(status: AccountStatus) -> &'static str {
    match status {
        AccountStatus::Active => "active",
        AccountStatus::NeedsReauth => "needs_reauth",
    }
}

fn config_of(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|error| StoreError::Database(format!("store.url: {error}")))?;
    config.connect_timeout(CONNECT_TIMEOUT);
    config.application_name("unigate");
    Ok(config)
}

impl Shared {
    fn open_row(&self, row: &Row) -> Result<IntegratedAccount, StoreError> {
        let id: String = row.get(0);
        let integration: String = row.get(1);
        let base_url: Option<String> = row.get(2);
        let blob: Vec<u8> = row.get(3);
        let status: String = row.get(4);
        let sealing: i32 = row.get(6);
        let aad = associated_data(&id, &integration, base_url.as_deref());
        let (context, mapping) = self.cipher.open_account(&blob, &aad, i64::from(sealing))?;
        Ok(IntegratedAccount {
            context,
            mapping,
            id,
            integration,
            base_url,
            status: if status == "needs_reauth" {
                AccountStatus::NeedsReauth
            } else {
                AccountStatus::Active
            },
            last_error: row.get(5),
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// A connection for a token lease, from the leases' own pool.
    async fn lease_client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.lease_pool.get().await.map_err(|error| match error {
            deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => {
                StoreError::Busy(format!(
                    "all {} token-lease connections (store.token_leases) are held by token requests still in flight; waited {} s",
                    self.lease_pool.status().max_size,
                    self.lease_wait.as_secs_f64()
                ))
            }
            other => pool_error(other),
        })
    }

    /// Every account, replacing the copy. A row that does not open (edited on disk, another key)
    /// is left out and logged, so one bad row does not stop the others.
    async fn reload_all(&self) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let rows = client.query(SELECT, &[]).await.map_err(db)?;
        let mut accounts = Vec::with_capacity(rows.len());
        for row in &rows {
            match self.open_row(row) {
                Ok(account) => accounts.push(account),
                Err(error) => {
                    let id: String = row.get(0);
                    tracing::error!(account = %id, %error, "an account row does not open; left out");
                }
            }
        }
        let count = accounts.len();
        let before = self.accounts.list();
        self.accounts.replace_all(accounts);
        for account in before {
            let after = self.accounts.get(&account.id);
            self.changed(&account, after.as_deref());
        }
        Ok(count)
    }

    /// Tells the subscribers that `before` now reads `after` (unless nothing changed).
    fn changed(&self, before: &IntegratedAccount, after: Option<&IntegratedAccount>) {
        // A status change alone keeps nothing of the process's stale (nothing is kept for it).
        if after.is_some_and(|after| before.sends_as(after)) {
            return;
        }
        let subscribers = self
            .on_change
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        for on_change in subscribers {
            on_change(before, after);
        }
    }

    /// One account as the database holds it now (after a notification).
    async fn reload_one(&self, id: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(&format!("{SELECT} WHERE id = $1"), &[&id])
            .await
            .map_err(db)?;
        let before = self.accounts.get(id);
        let after = match row {
            Some(row) => {
                let account = self.open_row(&row)?;
                self.accounts.put(account.clone());
                Some(account)
            }
            None => {
                self.accounts.forget(id);
                None
            }
        };
        if let Some(before) = before {
            self.changed(&before, after.as_ref());
        }
        Ok(())
    }

    async fn write_row(
        &self,
        client: &impl tokio_postgres::GenericClient,
        account: &IntegratedAccount,
        insert: bool,
    ) -> Result<u64, StoreError> {
        let aad = associated_data(
            &account.id,
            &account.integration,
            account.base_url.as_deref(),
        );
        let blob = self
            .cipher
            .seal_account(&account.context, account.mapping.as_deref(), &aad)?;
        let statement = if insert {
            "INSERT INTO unigate_accounts (id, integration, base_url, context, status, last_error, sealing)
             VALUES ($1, $2, $3, $4, $5, $6, 3) ON CONFLICT (id) DO NOTHING"
        } else {
            "UPDATE unigate_accounts SET integration = $2, base_url = $3, context = $4,
               status = $5, last_error = $6, sealing = 3, updated_at = now() WHERE id = $1"
        };
        client
            .execute(
                statement,
                &[
                    &account.id,
                    &account.integration,
                    &account.base_url,
                    &blob,
                    &status_text(account.status),
                    &account.last_error,
                ],
            )
            .await
            .map_err(db)
    }

    async fn modify(
        &self,
        id: &str,
        change: &mut Change<'_>,
    ) -> Result<Arc<IntegratedAccount>, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(db)?;
        let row = transaction
            .query_opt(&format!("{SELECT} WHERE id = $1 FOR UPDATE"), &[&id])
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        let mut account = self.open_row(&row)?;
        change(&mut account)?;
        self.write_row(&*transaction, &account, false).await?;
        transaction.commit().await.map_err(db)?;
        self.accounts.put(account.clone());
        Ok(Arc::new(account))
    }

    async fn create(&self, account: IntegratedAccount) -> Result<(), StoreError> {
        let client = self.client().await?;
        if self.write_row(&**client, &account, true).await? == 0 {
            return Err(StoreError::Exists(account.id));
        }
        self.accounts.put(account);
        Ok(())
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        let deleted = client
            .execute("DELETE FROM unigate_accounts WHERE id = $1", &[&id])
            .await
            .map_err(db)?;
        if deleted == 0 {
            return Err(StoreError::NotFound(id.to_owned()));
        }
        self.accounts.forget(id);
        Ok(())
    }

    /// Says this replica is alive and counts the live ones.
    async fn heartbeat(&self) -> Result<usize, StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO unigate_replicas (id, seen_at) VALUES ($1, now())
                 ON CONFLICT (id) DO UPDATE SET seen_at = now()",
                &[&self.replica],
            )
            .await
            .map_err(db)?;
        let live: i64 = client
            .query_one(
                "SELECT count(*) FROM unigate_replicas WHERE seen_at > now() - make_interval(secs => $1)",
                &[&(ALIVE_FOR_S as f64)],
            )
            .await
            .map_err(db)?
            .get(0);
        // Replicas gone for an hour are forgotten.
        let _ = client
            .execute(
                "DELETE FROM unigate_replicas WHERE seen_at < now() - interval '1 hour'",
                &[],
            )
            .await;
        Ok(usize::try_from(live).unwrap_or(1).max(1))
    }
}

/// Applies pending migrations under the advisory lock, in one transaction; returns the schema
/// version. Replicas that start together take the lock in turn: the first migrates, the others
/// find nothing to do.
pub async fn migrate(settings: &PostgresSettings) -> Result<usize, StoreError> {
    let (mut client, connection) = Target::new(settings)?.connect().await?;
    let driver = tokio::spawn(connection);
    let result = async {
        let transaction = client.transaction().await.map_err(db)?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(db)?;
        transaction
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS unigate_schema_version (version INTEGER NOT NULL);
                 CREATE TABLE IF NOT EXISTS unigate_migrations (
                     version INTEGER PRIMARY KEY,
                     applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                     applied_by TEXT NOT NULL
                 );",
            )
            .await
            .map_err(db)?;
        let current: i32 = transaction
            .query_opt("SELECT version FROM unigate_schema_version", &[])
            .await
            .map_err(db)?
            .map_or(0, |row| row.get(0));
        let current = usize::try_from(current).unwrap_or(0);
        if current > MIGRATIONS.len() {
            return Err(StoreError::Database(format!(
                "the database is at unigate schema version {current}, newer than this unigate ({}); upgrade unigate",
                MIGRATIONS.len()
            )));
        }
        let by = format!("unigate {} pid {}", env!("CARGO_PKG_VERSION"), std::process::id());
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(current) {
            transaction.batch_execute(migration).await.map_err(db)?;
            transaction
                .execute(
                    "INSERT INTO unigate_migrations (version, applied_by) VALUES ($1, $2)",
                    &[&(index as i32 + 1), &by],
                )
                .await
                .map_err(db)?;
        }
        transaction
            .execute("DELETE FROM unigate_schema_version", &[])
            .await
            .map_err(db)?;
        transaction
            .execute(
                "INSERT INTO unigate_schema_version (version) VALUES ($1)",
                &[&(MIGRATIONS.len() as i32)],
            )
            .await
            .map_err(db)?;
        transaction.commit().await.map_err(db)?;
        Ok(MIGRATIONS.len())
    }
    .await;
    drop(client);
    let _ = driver.await;
    result
}

impl PostgresStore {
    /// Migrates, loads every account, and starts the listener, the safety-net reload and the
    /// heartbeat (stopped when the store is dropped). Must run on a Tokio runtime.
    pub async fn connect(
        settings: &PostgresSettings,
        key: StoreKey,
    ) -> Result<PostgresStore, StoreError> {
        migrate(settings).await?;
        let target = Target::new(settings)?;
        let pool = target.pool(settings.pool_size, CONNECT_TIMEOUT)?;
        let lease_pool = target.pool(settings.token_leases, settings.token_lease_wait)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let shared = Arc::new(Shared {
            pool,
            lease_pool,
            lease_wait: settings.token_lease_wait,
            cipher: key.cipher(),
            accounts: MemoryStore::default(),
            replica: format!("pid{}-{nanos:08x}", std::process::id()),
            replicas: AtomicUsize::new(1),
            reachable: AtomicBool::new(true),
            on_hold: Default::default(),
            on_change: Default::default(),
        });
        // A row that does not open at startup is a wrong key: refuse, as SQLite does.
        {
            let client = shared.client().await?;
            for row in client.query(SELECT, &[]).await.map_err(db)? {
                shared.open_row(&row)?;
            }
        }
        shared.reload_all().await?;
        let replicas = shared.heartbeat().await?;
        shared.replicas.store(replicas, Ordering::Relaxed);
        let (holds, announced) = tokio::sync::mpsc::unbounded_channel();
        let tasks = vec![
            tokio::spawn(listen(shared.clone(), target)),
            tokio::spawn(reload_periodically(shared.clone(), settings.reload_every)),
            tokio::spawn(beat(shared.clone())),
            tokio::spawn(announce_holds(shared.clone(), announced)),
        ];
        Ok(PostgresStore {
            shared,
            tasks,
            holds,
        })
    }

    /// Runs a store operation to completion from synchronous code: the trait's writes are called
    /// from blocking threads (`spawn_blocking`), never from an async worker.
    fn block<T>(&self, operation: impl std::future::Future<Output = T>) -> T {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => tokio::task::block_in_place(|| handle.block_on(operation)),
            Err(_) => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|runtime| runtime.block_on(operation))
                .unwrap_or_else(|error| panic!("cannot run a store operation: {error}")),
        }
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Leave the replica count at once rather than after the heartbeat ages out.
        let shared = self.shared.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Ok(client) = shared.client().await {
                    let _ = client
                        .execute(
                            "DELETE FROM unigate_replicas WHERE id = $1",
                            &[&shared.replica],
                        )
                        .await;
                }
            });
        }
    }
}

/// Keeps a `LISTEN` connection open; every notification reloads that account, and every
/// (re)connection reloads them all, since notifications sent while it was down are lost.
async fn listen(shared: Arc<Shared>, target: Target) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let connected = async {
            let (client, mut connection) = target.connect().await?;
            let (sender, mut notifications) = tokio::sync::mpsc::unbounded_channel();
            let holds = shared.clone();
            let driver = tokio::spawn(async move {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(AsyncMessage::Notification(notification))
                            if notification.channel() == HOLDS_CHANNEL =>
                        {
                            note_hold(&holds, notification.payload());
                        }
                        Ok(AsyncMessage::Notification(notification)) => {
                            let _ = sender.send(notification.payload().to_owned());
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            });
            client
                .batch_execute(&format!("LISTEN {CHANNEL}; LISTEN {HOLDS_CHANNEL}"))
                .await
                .map_err(db)?;
            let count = shared.reload_all().await?;
            if !shared.reachable.swap(true, Ordering::Relaxed) {
                tracing::info!(accounts = count, "the account store is reachable again");
            }
            while let Some(id) = notifications.recv().await {
                if let Err(error) = shared.reload_one(&id).await {
                    tracing::warn!(account = %id, %error, "could not reload a changed account");
                }
            }
            driver.abort();
            Ok::<(), StoreError>(())
        }
        .await;
        if shared.reachable.swap(false, Ordering::Relaxed) {
            match connected {
                Err(error) => {
                    tracing::warn!(%error, "the account store is unreachable; serving the accounts already loaded")
                }
                Ok(()) => tracing::warn!(
                    "lost the account store's connection; serving the accounts already loaded"
                ),
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
        if shared.reachable.load(Ordering::Relaxed) {
            backoff = Duration::from_millis(200);
        }
    }
}

/// The safety net behind notifications.
async fn reload_periodically(shared: Arc<Shared>, every: Duration) {
    let mut timer = tokio::time::interval(every.max(Duration::from_secs(1)));
    timer.tick().await;
    loop {
        timer.tick().await;
        if let Err(error) = shared.reload_all().await {
            tracing::debug!(%error, "periodic reload of the account store failed");
        }
    }
}

/// The subscribers to accounts read back changed.
#[derive(Default)]
struct ChangeSubscriber(std::sync::RwLock<Vec<crate::OnChange>>);

impl std::fmt::Debug for ChangeSubscriber {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ChangeSubscriber")
    }
}

/// The subscribers to providers' waits.
#[derive(Default)]
struct HoldSubscriber(std::sync::RwLock<Vec<crate::OnHold>>);

impl std::fmt::Debug for HoldSubscriber {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("HoldSubscriber")
    }
}

/// Hands a wait a replica announced (this one's included) to whoever subscribed.
fn note_hold(shared: &Shared, payload: &str) {
    #[derive(serde::Deserialize)]
    struct Announced {
        key: String,
        until: i64,
        status: u16,
    }
    let Ok(announced) = serde_json::from_str::<Announced>(payload) else {
        return;
    };
    let subscribers = shared
        .on_hold
        .0
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    for on_hold in subscribers {
        on_hold(&announced.key, announced.until, announced.status);
    }
}

/// Announces this replica's providers' waits and releases to the others, one after another in
/// the order they were made (each its own `pg_notify`; PostgreSQL delivers them in that order).
async fn announce_holds(
    shared: Arc<Shared>,
    mut announced: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    while let Some(payload) = announced.recv().await {
        let sent = async {
            let client = shared.client().await?;
            client
                .execute("SELECT pg_notify($1, $2)", &[&HOLDS_CHANNEL, &payload])
                .await
                .map_err(db)
        }
        .await;
        if let Err(error) = sent {
            tracing::debug!(%error, "could not tell the other replicas of a provider's wait");
        }
    }
}

async fn beat(shared: Arc<Shared>) {
    let mut timer = tokio::time::interval(HEARTBEAT);
    loop {
        timer.tick().await;
        match shared.heartbeat().await {
            Ok(live) => shared.replicas.store(live, Ordering::Relaxed),
            Err(error) => tracing::debug!(%error, "heartbeat failed"),
        }
    }
}

impl AccountStore for PostgresStore {
    fn get(&self, id: &str) -> Option<Arc<IntegratedAccount>> {
        self.shared.accounts.get(id)
    }

    fn list(&self) -> Vec<Arc<IntegratedAccount>> {
        self.shared.accounts.list()
    }

    fn modify(
        &self,
        id: &str,
        change: &mut Change<'_>,
    ) -> Result<Arc<IntegratedAccount>, StoreError> {
        self.block(self.shared.modify(id, change))
    }

    fn create(&self, account: IntegratedAccount) -> Result<(), StoreError> {
        self.block(self.shared.create(account))
    }

    fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.block(self.shared.delete(id))
    }

    fn lease_tokens<'a>(
        &'a self,
        id: &'a str,
    ) -> StoreFuture<'a, Result<Option<Box<dyn TokenLease>>, StoreError>> {
        Box::pin(async move {
            let client = self.shared.lease_client().await?;
            client.batch_execute("BEGIN").await.map_err(db)?;
            let mut lease = RowLease {
                shared: self.shared.clone(),
                client: Some(client),
                account: None,
            };
            let row = lease
                .client()
                .query_opt(&format!("{SELECT} WHERE id = $1 FOR UPDATE"), &[&id])
                .await
                .map_err(db)?
                .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
            lease.account = Some(self.shared.open_row(&row)?);
            Ok(Some(Box::new(lease) as Box<dyn TokenLease>))
        })
    }

    fn share_hold(&self, key: &str, until_epoch_ms: i64, status: u16) {
        let payload =
            serde_json::json!({"key": key, "until": until_epoch_ms, "status": status}).to_string();
        // Off the caller's path (a call answered 429 is not kept waiting for the database), and
        // in order: a release an admin write made must not reach the other replicas after a
        // wait a provider asked for later.
        let _ = self.holds.send(payload);
    }

    fn subscribe_changes(&self, on_change: crate::OnChange) {
        self.shared
            .on_change
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(on_change);
    }

    fn subscribe_holds(&self, on_hold: crate::OnHold) {
        self.shared
            .on_hold
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(on_hold);
    }

    fn replicas(&self) -> usize {
        self.shared.replicas.load(Ordering::Relaxed)
    }

    fn is_reachable(&self) -> bool {
        self.shared.reachable.load(Ordering::Relaxed)
    }
}

/// A transaction holding the account's row lock. Dropped uncommitted, its connection is closed
/// rather than returned to the pool, which ends the transaction and releases the lock.
struct RowLease {
    shared: Arc<Shared>,
    client: Option<deadpool_postgres::Object>,
    account: Option<IntegratedAccount>,
}

impl RowLease {
    fn client(&self) -> &deadpool_postgres::Object {
        self.client
            .as_ref()
            .expect("a lease holds its connection until it ends")
    }
}

impl Drop for RowLease {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

impl TokenLease for RowLease {
    fn account(&self) -> &IntegratedAccount {
        self.account
            .as_ref()
            .expect("a lease is handed out with its account")
    }

    fn commit(
        mut self: Box<Self>,
        updated: IntegratedAccount,
    ) -> StoreFuture<'static, Result<Arc<IntegratedAccount>, StoreError>> {
        Box::pin(async move {
            let client = self
                .client
                .take()
                .expect("a lease holds its connection until it ends");
            let written = async {
                self.shared.write_row(&**client, &updated, false).await?;
                client.batch_execute("COMMIT").await.map_err(db)
            }
            .await;
            match written {
                Ok(()) => {
                    self.shared.accounts.put(updated.clone());
                    Ok(Arc::new(updated))
                }
                Err(error) => {
                    drop(deadpool_postgres::Object::take(client));
                    Err(error)
                }
            }
        })
    }
}
