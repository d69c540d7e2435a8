//! Storage: one interface, two backends (SQLite, the embedded default, and PostgreSQL).
//!
//! Every piece of state (clients, seen `jti`s, tokens, the audit log) lives in the database, so
//! that several stateless replicas can share one PostgreSQL. Checks that must hold across
//! replicas are single statements that the database makes atomic (a unique key, an upsert),
//! never a read followed by a write.

mod sql;
mod sqlite_writer;

use std::future::Future;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use sql::{PostgresStore, SqliteStore};

use crate::config::DatabaseConfig;

/// A registered client, as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ClientRecord {
    pub client_id: String,
    pub software_id: String,
    pub org_id: String,
    /// The registered metadata as JSON: the response body without `client_secret`.
    pub metadata: String,
    /// Hash of the client secret; the secret itself is never stored.
    pub client_secret_hash: String,
    pub token_endpoint_auth_method: String,
    pub tls_client_auth_subject_dn: Option<String>,
    /// The SSA's `software_jwks_endpoint`.
    pub jwks_uri: String,
    /// `x5t#S256` of the transport certificate used to register.
    pub cert_thumbprint: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A seen `jti`, remembered until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JtiRecord {
    /// What the `jti` belongs to, e.g. `request:<software_id>` or `ssa:<issuer>`, so that two
    /// issuers' identical `jti`s do not collide.
    pub scope: String,
    pub jti: String,
    pub expires_at: i64,
}

/// An access token, stored only as a hash.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenRecord {
    pub token_hash: String,
    pub client_id: String,
    pub scope: String,
    /// RFC 8705 `x5t#S256` of the certificate the token is bound to.
    pub cert_thumbprint: Option<String>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked: bool,
}

/// One line of the append-only audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct AuditRecord {
    pub at: i64,
    pub action: String,
    pub outcome: String,
    pub client_id: Option<String>,
    pub software_id: Option<String>,
    pub org_id: Option<String>,
    pub cert_thumbprint: Option<String>,
    pub interaction_id: Option<String>,
    pub error_code: Option<String>,
    /// Free-form JSON; never a secret.
    pub detail: Option<String>,
}

/// What a unique key refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Conflict {
    /// The `jti` at this index of the given list was seen before and has not expired.
    Jti(usize),
    /// A client already holds this software_id.
    SoftwareId,
    /// The client_id exists already.
    ClientId,
    /// The client that a token refers to does not exist (any more).
    UnknownClient,
}

/// A storage failure. The public side of the server turns these into 503 or 400; the detail
/// is for the log only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A unique key refused the write; nothing was written.
    #[error("conflict: {0:?}")]
    Conflict(Conflict),
    /// The database cannot be reached or is shutting down; retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database is busy (SQLite lock contention) beyond the busy timeout.
    #[error("database busy: {0}")]
    Busy(String),
    /// Anything else; a bug or a broken schema.
    #[error("database error: {0}")]
    Other(String),
}

impl StoreError {
    pub(crate) fn from_sqlx(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(e.to_string()),
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                // SQLite: 5 SQLITE_BUSY, 6 SQLITE_LOCKED (and their extended codes).
                // PostgreSQL: class 08 connection exceptions, 57P0x shutdown/crash.
                if ["5", "6", "261", "262", "517"].contains(&code.as_ref()) {
                    Self::Busy(db.message().to_string())
                } else if code.starts_with("08") || code.starts_with("57P") {
                    Self::Unavailable(db.message().to_string())
                } else {
                    Self::Other(db.message().to_string())
                }
            }
            _ => Self::Other(e.to_string()),
        }
    }

    /// Whether the caller should answer 503 and let the client retry.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Busy(_))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The storage interface. Both backends pass the same test suite.
pub trait Store: Send + Sync {
    /// Applies the embedded migrations; a no-op when they are applied already.
    fn migrate(&self) -> impl Future<Output = StoreResult<()>> + Send;
    /// A cheap round trip, for `/ready`.
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;

    /// Stores a new client with its `jti`s and audit record, in one transaction.
    ///
    /// With `unique_software_id`, a second client for the same software_id is refused with
    /// [`Conflict::SoftwareId`]. A replayed `jti` is refused with [`Conflict::Jti`] (with the index of the replayed one). On any
    /// error nothing is written.
    fn create_client(
        &self,
        client: &ClientRecord,
        unique_software_id: bool,
        jtis: &[JtiRecord],
        audit: &AuditRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Replaces a client's registration (same client_id), with its `jti`s and audit record, in
    /// one transaction. Returns false when the client does not exist.
    fn update_client(
        &self,
        client: &ClientRecord,
        jtis: &[JtiRecord],
        audit: &AuditRecord,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    fn get_client(
        &self,
        client_id: &str,
    ) -> impl Future<Output = StoreResult<Option<ClientRecord>>> + Send;
    fn list_clients(&self) -> impl Future<Output = StoreResult<Vec<ClientRecord>>> + Send;
    /// Deletes a client and every token issued to it, with the audit record, in one
    /// transaction. Returns false when the client does not exist.
    fn delete_client(
        &self,
        client_id: &str,
        audit: &AuditRecord,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Disables or enables a client, with the audit record, in one transaction. Disabling also
    /// revokes every live token of the client, so that enabling it again brings none back.
    /// Returns false when the client does not exist.
    fn set_client_enabled(
        &self,
        client_id: &str,
        enabled: bool,
        audit: &AuditRecord,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Remembers a `jti`: one atomic statement. [`Conflict::Jti`] (with the index of the replayed one) if it is known and unexpired.
    fn remember_jti(&self, jti: &JtiRecord) -> impl Future<Output = StoreResult<()>> + Send;
    /// Deletes `jti`s that expired before `now`; returns how many.
    fn purge_expired_jtis(&self, now: i64) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Stores a token with its audit record, and remembers `jtis` (the client assertion's) in
    /// the same transaction. Fails if the client does not exist or a `jti` was seen.
    fn insert_token(
        &self,
        token: &TokenRecord,
        jtis: &[JtiRecord],
        audit: &AuditRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn find_token(
        &self,
        token_hash: &str,
    ) -> impl Future<Output = StoreResult<Option<TokenRecord>>> + Send;
    /// Marks a token revoked, with its audit record. Returns false if it was unknown or
    /// revoked already.
    fn revoke_token(
        &self,
        token_hash: &str,
        audit: &AuditRecord,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Deletes tokens that expired before `now`; returns how many.
    fn purge_expired_tokens(&self, now: i64) -> impl Future<Output = StoreResult<u64>> + Send;

    fn append_audit(&self, audit: &AuditRecord) -> impl Future<Output = StoreResult<()>> + Send;
    /// Audit records, oldest first, optionally for one client and since a time.
    fn list_audit(
        &self,
        client_id: Option<&str>,
        since: Option<i64>,
    ) -> impl Future<Output = StoreResult<Vec<AuditRecord>>> + Send;
}

/// The backend chosen by `database.url`.
#[derive(Clone, Debug)]
pub enum Database {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Database {
    /// Connects to the database that `config.url` names. SQLite files are created (mode 0600)
    /// with their directory on first use.
    pub async fn connect(config: &DatabaseConfig) -> StoreResult<Self> {
        let acquire = Duration::from_millis(config.acquire_timeout_ms);
        if config.url.is_sqlite() {
            let options = SqliteConnectOptions::from_str(config.url.expose())
                .map_err(|e| StoreError::Other(format!("database.url: {e}")))?;
            let file = options.get_filename().to_path_buf();
            if file.as_os_str().is_empty() || file.to_string_lossy().contains(":memory:") {
                return Err(StoreError::Other(
                    "database.url: an in-memory SQLite database is not supported; name a file"
                        .into(),
                ));
            }
            create_sqlite_file(&file)?;
            let options = options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // WAL + NORMAL survives a process crash (kill -9); only a power loss can lose
                // the last commits.
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_millis(config.sqlite_busy_timeout_ms));
            // No ping before each use: a local file does not drop connections, and every ping
            // is a round trip to the connection's worker thread.
            // This pool only runs the migrations (writes go to the writer thread): opening a
            // local file may take its time on a loaded machine, so it is not bounded by the
            // per-request acquire timeout.
            let writer = SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(60))
                .connect_with(options.clone())
                .await
                .map_err(StoreError::from_sqlx)?;
            // Reader connections open on first use. (A memory map for them was tried: the TLB
            // shootdowns as the file grew cost more than the pread() copies it saved.)
            let readers = SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(config.max_connections)
                .acquire_timeout(acquire)
                .connect_lazy_with(options);
            let direct = sqlite_writer::SqliteWriter::start(
                &file,
                Duration::from_millis(config.sqlite_busy_timeout_ms),
            )?;
            Ok(Self::Sqlite(SqliteStore::with_writer(
                readers,
                writer,
                Some(direct),
            )))
        } else {
            let options = PgConnectOptions::from_str(config.url.expose())
                .map_err(|e| StoreError::Other(format!("database.url: {e}")))?;
            Self::connect_postgres(options, config.max_connections, acquire).await
        }
    }

    /// Connects to PostgreSQL with explicit options (tests use this to pick a schema).
    pub async fn connect_postgres(
        options: PgConnectOptions,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> StoreResult<Self> {
        // No ping before each use: it doubled the round trips of every query. A connection
        // that died (a restarted server) fails its next query with a 503 and is discarded.
        let pool = PgPoolOptions::new()
            .test_before_acquire(false)
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(Self::Postgres(PostgresStore::new(pool)))
    }

    /// Closes the pool: later calls fail with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        match self {
            Self::Sqlite(s) => s.close().await,
            Self::Postgres(s) => s.close().await,
        }
    }

    /// Reader pool connections (in use, idle), for the metrics.
    pub fn pool_usage(&self) -> (usize, usize) {
        let (size, idle) = match self {
            Self::Sqlite(s) => (s.pool().size(), s.pool().num_idle()),
            Self::Postgres(s) => (s.pool().size(), s.pool().num_idle()),
        };
        ((size as usize).saturating_sub(idle), idle)
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// Connects the database named by the config and applies the migrations.
pub async fn open(config: &crate::config::Config) -> anyhow::Result<Database> {
    use anyhow::Context;
    let store = Database::connect(&config.database).await.with_context(|| {
        format!(
            "database.url = {}: cannot connect",
            config.database.url.masked()
        )
    })?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

/// Creates the SQLite file with mode 0600 before SQLite does (SQLite would use 0644): it holds
/// secret hashes and token hashes.
fn create_sqlite_file(path: &Path) -> StoreResult<()> {
    let name = path.to_string_lossy();
    if name.is_empty() || name == ":memory:" || path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Other(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Other(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

/// Runs `f` again when SQLite reports busy or locked after its busy timeout: a few short,
/// growing pauses, then the error (which callers answer with 503, never 500).
async fn retry_busy<T, F, Fut>(mut f: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<T>>,
{
    const ATTEMPTS: u64 = 3;
    let mut attempt = 1;
    loop {
        match f().await {
            Err(StoreError::Busy(detail)) if attempt < ATTEMPTS => {
                tracing::debug!(attempt, detail = %detail, "database busy; retrying");
                tokio::time::sleep(Duration::from_millis(25 * attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        retry_busy(|| async {
            match $self {
                Database::Sqlite($s) => $call.await,
                Database::Postgres($s) => $call.await,
            }
        })
        .await
    };
}

impl Store for Database {
    async fn migrate(&self) -> StoreResult<()> {
        delegate!(self, s => s.migrate())
    }
    async fn ping(&self) -> StoreResult<()> {
        delegate!(self, s => s.ping())
    }
    async fn create_client(
        &self,
        client: &ClientRecord,
        unique_software_id: bool,
        jtis: &[JtiRecord],
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        delegate!(self, s => s.create_client(client, unique_software_id, jtis, audit))
    }
    async fn update_client(
        &self,
        client: &ClientRecord,
        jtis: &[JtiRecord],
        audit: &AuditRecord,
    ) -> StoreResult<bool> {
        delegate!(self, s => s.update_client(client, jtis, audit))
    }
    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        delegate!(self, s => s.get_client(client_id))
    }
    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        delegate!(self, s => s.list_clients())
    }
    async fn delete_client(&self, client_id: &str, audit: &AuditRecord) -> StoreResult<bool> {
        delegate!(self, s => s.delete_client(client_id, audit))
    }
    async fn set_client_enabled(
        &self,
        client_id: &str,
        enabled: bool,
        audit: &AuditRecord,
    ) -> StoreResult<bool> {
        delegate!(self, s => s.set_client_enabled(client_id, enabled, audit))
    }
    async fn remember_jti(&self, jti: &JtiRecord) -> StoreResult<()> {
        delegate!(self, s => s.remember_jti(jti))
    }
    async fn purge_expired_jtis(&self, now: i64) -> StoreResult<u64> {
        delegate!(self, s => s.purge_expired_jtis(now))
    }
    async fn insert_token(
        &self,
        token: &TokenRecord,
        jtis: &[JtiRecord],
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        delegate!(self, s => s.insert_token(token, jtis, audit))
    }
    async fn find_token(&self, token_hash: &str) -> StoreResult<Option<TokenRecord>> {
        delegate!(self, s => s.find_token(token_hash))
    }
    async fn revoke_token(&self, token_hash: &str, audit: &AuditRecord) -> StoreResult<bool> {
        delegate!(self, s => s.revoke_token(token_hash, audit))
    }
    async fn purge_expired_tokens(&self, now: i64) -> StoreResult<u64> {
        delegate!(self, s => s.purge_expired_tokens(now))
    }
    async fn append_audit(&self, audit: &AuditRecord) -> StoreResult<()> {
        delegate!(self, s => s.append_audit(audit))
    }
    async fn list_audit(
        &self,
        client_id: Option<&str>,
        since: Option<i64>,
    ) -> StoreResult<Vec<AuditRecord>> {
        delegate!(self, s => s.list_audit(client_id, since))
    }
}
