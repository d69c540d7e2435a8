//! Storage: small interfaces, two backends (SQLite, the embedded default, and PostgreSQL).
//!
//! Every piece of state (clients, seen `jti`s, tokens, the audit log, events) lives in the
//! database, so that several stateless replicas can share one PostgreSQL. Checks that must hold across
//! replicas are single statements that the database makes atomic (a unique key, an upsert),
//! never a read followed by a write.
//!
//! Callers take the interface they need ([`ClientStore`], [`TokenStore`], [`AuditLog`],
//! [`JtiStore`], [`EventStore`], and for `rfc7591` mode [`AsLinkStore`] and
//! [`CompensationStore`]); [`Database`] implements them all. Inside, every write is a
//! [`unit::WriteUnit`] that both backends execute, so its transaction rules exist once.
//!
//! Reads that are not point reads go through one engine-neutral [`reads::Reads::fetch_rows`]
//! with the statement's text from `schema`; each record decodes from its one column list
//! (`row`).
//!
//! Imports go one way (no cycles): `error` and `record` are leaves; `row` uses them; `schema`
//! uses those three; `unit` uses those four; `reads` and `pool` the leaves and `row`; the
//! backends (`postgres`, `sqlite`) use all of them, never each other; this module uses
//! everything.

mod error;
mod pool;
mod postgres;
mod reads;
mod record;
mod row;
mod schema;
mod sqlite;
mod unit;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

pub use error::{Conflict, StoreError, StoreResult};
pub use record::{
    AsLinkRecord, AuditEntry, AuditRecord, ClientRecord, CompensationRecord, CompensationResult,
    DeliveryRecord, DeliveryResult, EventRecord, EventRouting, EventTarget, EventType, JtiRecord,
    LeasedDelivery, NewCompensation, TokenRecord,
};

use crate::config::DatabaseConfig;
use crate::domain::SpecVersion;
use postgres::PostgresStore;
use reads::Reads;
use row::Param;
use sqlite::SqliteStore;
use unit::{Compensating, Expiring, Outbox, Outcome, WriteUnit};

/// Runs `$call` with `$b` bound to the backend's sqlx pools ([`reads::Sqlx`]): SQLite's
/// reader and maintenance pools, or PostgreSQL's. (Writes on the request path go through
/// [`Database::write`] instead.)
macro_rules! on_sqlx {
    ($self:ident, $b:ident => $call:expr) => {
        match &$self.backend {
            Backend::Sqlite(s) => {
                let $b = &s.read.sqlx;
                $call
            }
            Backend::Postgres(p) => {
                let $b = &p.sqlx;
                $call
            }
        }
    };
}

/// Which clients [`ClientStore::list_clients_page`] answers.
#[derive(Debug, Clone, Default)]
pub struct ClientFilter<'a> {
    /// Only client_ids after this one (a cursor: the last of the previous page).
    pub after: &'a str,
    pub software_id: Option<&'a str>,
    pub org_id: Option<&'a str>,
    pub enabled: Option<bool>,
    pub dcr_version: Option<SpecVersion>,
    pub limit: i64,
}

/// Registered clients.
pub trait ClientStore: Send + Sync {
    /// Stores a new client with its `jti`s and audit record, in one transaction.
    ///
    /// With `unique_software_id`, a second client for the same software_id is refused with
    /// [`Conflict::SoftwareId`]. A replayed `jti` is refused with [`Conflict::Jti`] (with the
    /// index of the replayed one). On any error nothing is written.
    fn create_client(
        &self,
        client: &ClientRecord,
        unique_software_id: bool,
        jtis: &[JtiRecord],
        audit: &AuditRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Replaces a client's registration (same client_id), with its `jti`s and audit record, in
    /// one transaction; `changed` names the metadata fields that changed (for its event).
    /// Returns false (and writes nothing) when the client does not exist.
    fn update_client(
        &self,
        client: &ClientRecord,
        changed: &[String],
        jtis: &[JtiRecord],
        audit: &AuditRecord,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    fn get_client(
        &self,
        client_id: &str,
    ) -> impl Future<Output = StoreResult<Option<ClientRecord>>> + Send;
    /// Every client, oldest first.
    fn list_clients(&self) -> impl Future<Output = StoreResult<Vec<ClientRecord>>> + Send;
    /// A page of clients in client_id order, after `filter.after`, as filtered.
    fn list_clients_page(
        &self,
        filter: &ClientFilter<'_>,
    ) -> impl Future<Output = StoreResult<Vec<ClientRecord>>> + Send;
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
}

/// `rfc7591` mode: each client's registration at the bank's authorization server (its
/// `registration_client_uri` and `registration_access_token`), written with the client's own
/// writes. Embedded clients have none.
pub trait AsLinkStore: Send + Sync {
    /// [`ClientStore::create_client`] and the client's link, in the same transaction: both
    /// rows or neither. A client_id already used here is refused with [`Conflict::ClientId`]
    /// (besides the conflicts of `create_client`).
    fn create_linked_client(
        &self,
        client: &ClientRecord,
        unique_software_id: bool,
        jtis: &[JtiRecord],
        audit: &AuditRecord,
        link: &AsLinkRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// [`ClientStore::update_client`] and, when given, the link's new token and URI, in the
    /// same transaction (a client without a link gets this one). Returns false (and writes
    /// nothing) when the client does not exist.
    fn update_linked_client(
        &self,
        client: &ClientRecord,
        changed: &[String],
        jtis: &[JtiRecord],
        audit: &AuditRecord,
        link: Option<&AsLinkRecord>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    fn get_as_link(
        &self,
        client_id: &str,
    ) -> impl Future<Output = StoreResult<Option<AsLinkRecord>>> + Send;
    /// [`ClientStore::delete_client`] and, in the same transaction, a compensation made from
    /// the client's link (when it has one) with `reason`, due at `now`: an operator's delete
    /// reaching the AS later. Returns false when the client does not exist.
    fn delete_client_compensating(
        &self,
        client_id: &str,
        audit: &AuditRecord,
        reason: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

/// `rfc7591` mode: clients still to be deleted at the bank's authorization server, retried by
/// a background job under a lease (so that replicas sharing PostgreSQL do not both try one).
pub trait CompensationStore: Send + Sync {
    /// A compensation due at once (`next_attempt_at = now`); returns its id.
    fn enqueue_compensation(
        &self,
        c: &NewCompensation,
        now: i64,
    ) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Leases up to `limit` due compensations (`next_attempt_at <= now`, no lease or an
    /// expired one) to `owner` until `until`, counting the attempt; returns them, oldest first.
    fn lease_compensations(
        &self,
        owner: &str,
        now: i64,
        until: i64,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<CompensationRecord>>> + Send;
    /// Ends `owner`'s lease: [`CompensationResult::Done`] deletes the row,
    /// [`CompensationResult::RetryAt`] sets when and why, and frees the lease. False: `owner`
    /// no longer holds it, so nothing changed.
    fn finish_compensation(
        &self,
        id: i64,
        owner: &str,
        result: &CompensationResult,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// How many are pending (for the metric).
    fn pending_compensations(&self) -> impl Future<Output = StoreResult<i64>> + Send;
    /// All pending, oldest first (for operators and tests).
    fn list_compensations(
        &self,
    ) -> impl Future<Output = StoreResult<Vec<CompensationRecord>>> + Send;
}

/// Access tokens, stored as hashes.
pub trait TokenStore: Send + Sync {
    /// Stores a token with its audit record, and remembers `jtis` (the client assertion's) in
    /// the same transaction. Fails with [`Conflict::UnknownClient`] if the client does not
    /// exist, or [`Conflict::Jti`] if a `jti` was seen; then nothing is written.
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
    /// The token with `token_hash` and the client `client_id`, read together (one round trip
    /// on PostgreSQL): what every management call checks first. Either may be missing.
    fn find_token_and_client(
        &self,
        token_hash: &str,
        client_id: &str,
    ) -> impl Future<Output = StoreResult<(Option<TokenRecord>, Option<ClientRecord>)>> + Send;
    /// Marks a token revoked, with its audit record. Returns false if it was unknown or
    /// revoked already.
    fn revoke_token(
        &self,
        token_hash: &str,
        audit: &AuditRecord,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Deletes tokens that expired at or before `now`; returns how many.
    fn purge_expired_tokens(&self, now: i64) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// The append-only audit log.
pub trait AuditLog: Send + Sync {
    fn append_audit(&self, audit: &AuditRecord) -> impl Future<Output = StoreResult<()>> + Send;
    /// Audit records, oldest first, optionally for one client and since a time.
    fn list_audit(
        &self,
        client_id: Option<&str>,
        since: Option<i64>,
    ) -> impl Future<Output = StoreResult<Vec<AuditRecord>>> + Send;
    /// A page of audit records after id `after`, oldest first, of one client and since a time
    /// when asked, at most `limit`.
    fn list_audit_page(
        &self,
        after: i64,
        client_id: Option<&str>,
        since: Option<i64>,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<AuditEntry>>> + Send;
}

/// Provisioning events. Each is written by the change it reports, in that change's
/// transaction ([`ClientStore`], [`TokenStore::revoke_token`]); here they are read, and their
/// deliveries to webhooks are leased, finished, retried and purged.
pub trait EventStore: Send + Sync {
    /// Events after id `after`, oldest first, at most `limit`, each with its deliveries; of
    /// one client, or only those with a failed delivery, when asked.
    fn list_events(
        &self,
        filter: &EventFilter<'_>,
    ) -> impl Future<Output = StoreResult<Vec<(EventRecord, Vec<DeliveryRecord>)>>> + Send;
    /// The webhooks with a delivery due now (one [`Self::lease_deliveries`] would take).
    fn due_webhooks(&self) -> impl Future<Output = StoreResult<Vec<String>>> + Send;
    /// Leases up to `limit` due deliveries of `webhook` to `owner` until `until`: the oldest
    /// pending one of each of its clients, not leased by another worker. Returns them with
    /// their events.
    fn lease_deliveries(
        &self,
        owner: &str,
        webhook: &str,
        until: i64,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<LeasedDelivery>>> + Send;
    /// Ends `owner`'s lease on a delivery. False: the lease had been lost (expired and taken),
    /// so nothing changed.
    fn finish_delivery(
        &self,
        delivery_id: i64,
        owner: &str,
        result: &DeliveryResult,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Makes failed deliveries to `webhook` (of `event_id`, or all) pending again, tried until
    /// `until`. Returns how many.
    fn retry_failed(
        &self,
        event_id: Option<&str>,
        webhook: &str,
        until: i64,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Deletes deliveries delivered at or before `before`, then the events written by then
    /// that have no delivery left; returns how many events went.
    fn purge_events(&self, before: i64) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Pending deliveries: how many, and the time of the oldest one's event (0: none).
    fn pending_summary(&self) -> impl Future<Output = StoreResult<(i64, i64)>> + Send;
}

/// Which events [`EventStore::list_events`] answers.
#[derive(Debug, Clone, Default)]
pub struct EventFilter<'a> {
    /// Only events with a larger id (a cursor: the last id of the previous page).
    pub after: i64,
    pub client_id: Option<&'a str>,
    /// Only events with a failed delivery.
    pub failed: bool,
    pub limit: i64,
}

/// Seen `jti`s. They are remembered by the writes they belong to ([`ClientStore`],
/// [`TokenStore`]), never alone, so that a replay and the row it would create are one
/// decision; only their expiry is managed here.
pub trait JtiStore: Send + Sync {
    /// Deletes `jti`s that expired at or before `now`; returns how many.
    fn purge_expired_jtis(&self, now: i64) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// The backend chosen by `database.url`.
#[derive(Clone, Debug)]
pub struct Database {
    backend: Backend,
    /// The webhooks new events get deliveries for; shared by every clone, set on reloads.
    routing: Arc<ArcSwap<EventRouting>>,
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Database {
    /// Connects to the database that `config.url` names. SQLite files are created (mode 0600)
    /// with their directory on first use.
    pub async fn connect(config: &DatabaseConfig) -> StoreResult<Self> {
        let backend = if config.url.is_sqlite() {
            Backend::Sqlite(SqliteStore::connect(config).await?)
        } else {
            Backend::Postgres(
                PostgresStore::connect(
                    config.url.expose(),
                    config.max_connections,
                    Duration::from_millis(config.acquire_timeout_ms),
                )
                .await?,
            )
        };
        Ok(Self {
            backend,
            routing: Arc::default(),
        })
    }

    /// One attempt to reach the database, without the pool's own retries (PostgreSQL; a
    /// SQLite file is always there to open).
    pub async fn probe(config: &DatabaseConfig) -> StoreResult<()> {
        if config.url.is_sqlite() {
            return Ok(());
        }
        PostgresStore::probe(
            config.url.expose(),
            Duration::from_millis(config.acquire_timeout_ms),
        )
        .await
    }

    /// The webhooks that events written from now on are delivered to (start-up and reloads).
    pub fn set_event_routing(&self, routing: EventRouting) {
        self.routing.store(Arc::new(routing));
    }

    /// The outbox of a unit: new event ids and the routing of now.
    fn outbox(&self, changed: Option<String>) -> Outbox {
        Outbox {
            // Time-ordered: each new event id goes to the right edge of the events' unique
            // index, not to a random leaf that a group commit writes again.
            ids: [
                uuid::Uuid::now_v7().to_string(),
                uuid::Uuid::now_v7().to_string(),
            ],
            routing: self.routing.load_full(),
            changed,
        }
    }

    /// Applies the embedded migrations; a no-op when they are applied already.
    pub async fn migrate(&self) -> StoreResult<()> {
        retry_busy(|| async {
            match &self.backend {
                Backend::Sqlite(s) => s.read.migrate().await,
                Backend::Postgres(p) => p.migrate().await,
            }
        })
        .await
    }

    /// A cheap round trip, for `/ready`.
    pub async fn ping(&self) -> StoreResult<()> {
        retry_busy(|| async { on_sqlx!(self, b => b.ping().await) }).await
    }

    /// Closes the pools: later calls fail with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        on_sqlx!(self, b => b.close().await)
    }

    /// Reader pool connections (in use, idle), for the metrics.
    pub fn pool_usage(&self) -> (usize, usize) {
        match &self.backend {
            Backend::Sqlite(s) => s.read.usage(),
            Backend::Postgres(p) => p.usage(),
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Bulk load for `dcr-bench`'s seeder: inserts `clients` as they are, many per statement
    /// and all in one transaction, with no `jti`, no audit record and no one-per-software_id
    /// key. Not for the request path, and not in the server's build.
    #[cfg(feature = "test-support")]
    pub async fn seed_clients(&self, clients: &[ClientRecord]) -> StoreResult<()> {
        let row = |c| unit::client_row(c, false);
        on_sqlx!(self, b => b.insert_rows(schema::INSERT_CLIENTS, clients, row).await)
    }

    /// Bulk load for `dcr-bench`'s seeder: inserts `tokens` (their clients must exist), many
    /// per statement and all in one transaction, with no audit record. Not for the request
    /// path, and not in the server's build.
    #[cfg(feature = "test-support")]
    pub async fn seed_tokens(&self, tokens: &[TokenRecord]) -> StoreResult<()> {
        let row = unit::token_row;
        on_sqlx!(self, b => b.insert_rows(schema::INSERT_TOKENS, tokens, row).await)
    }

    /// The rows `sql` answers with `params`: every read that is not a point read, on
    /// whichever engine.
    async fn fetch<O: row::Row + Send>(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> StoreResult<Vec<O>> {
        retry_busy(|| async { on_sqlx!(self, b => b.fetch_rows(sql, params).await) }).await
    }

    /// A lease (deliveries, compensations): `unit` marks the rows as `owner`'s until `until`,
    /// then `select` reads back what it marked (none read when it marked none).
    async fn lease<O: row::Row + Send>(
        &self,
        unit: WriteUnit,
        select: &'static str,
        owner: &str,
        until: i64,
    ) -> StoreResult<Vec<O>> {
        if self.write(unit).await?.count() == 0 {
            return Ok(Vec::new());
        }
        self.fetch(select, &[Param::Text(owner), Param::Int(until)])
            .await
    }

    /// The one place that picks a backend for a write.
    async fn write(&self, unit: WriteUnit) -> StoreResult<Outcome> {
        let unit = Arc::new(unit);
        retry_busy(|| async {
            match &self.backend {
                Backend::Sqlite(s) => s.write.write(Arc::clone(&unit)).await,
                Backend::Postgres(p) => p.write(&unit).await,
            }
        })
        .await
    }
}

impl EventRouting {
    /// The routing `[events]` configures.
    pub fn from_config(events: &crate::config::EventsConfig) -> Self {
        Self {
            webhooks: events
                .webhook
                .iter()
                .map(|w| EventTarget {
                    url: w.url.as_str().to_string(),
                    types: w.types.clone(),
                })
                .collect(),
            max_age_secs: i64::try_from(events.max_age_secs).unwrap_or(i64::MAX),
        }
    }
}

/// Connects the database named by the config and applies the migrations. Events written
/// through it are routed to the config's webhooks.
pub async fn open(config: &crate::config::Config) -> anyhow::Result<Database> {
    open_once(config)
        .await
        .map_err(|failed| failed.explain(config))
}

/// As [`open`], for `serve`: while the database cannot be reached (refused, reset, starting
/// up, a pool timeout), tries again with backoff, logging each try, for up to
/// `database.startup_timeout_secs`, so that the order in which an orchestrator starts the
/// database and the server does not matter. Any other failure (a refused login, a missing
/// database, a broken migration) stops at once.
pub async fn open_waiting(config: &crate::config::Config) -> anyhow::Result<Database> {
    const FIRST_DELAY: Duration = Duration::from_millis(250);
    const MAX_DELAY: Duration = Duration::from_secs(5);
    let budget = Duration::from_secs(config.database.startup_timeout_secs);
    let started = std::time::Instant::now();
    let mut delay = FIRST_DELAY;
    let mut attempt: u32 = 1;
    loop {
        let attempt_once = async {
            Database::probe(&config.database)
                .await
                .map_err(|error| OpenFailed {
                    migrating: false,
                    error,
                })?;
            open_once(config).await
        };
        let failed = match attempt_once.await {
            Ok(store) => {
                if attempt > 1 {
                    tracing::info!(attempt, "database reachable");
                }
                return Ok(store);
            }
            Err(failed) if failed.error.is_transient() => failed,
            Err(failed) => return Err(failed.explain(config)),
        };
        let Some(left) = budget
            .checked_sub(started.elapsed())
            .filter(|l| !l.is_zero())
        else {
            return Err(failed.explain(config).context(format!(
                "gave up after {attempt} tries in {:.1} s (database.startup_timeout_secs = {})",
                started.elapsed().as_secs_f64(),
                config.database.startup_timeout_secs
            )));
        };
        // The last try is at the deadline.
        let delay_now = delay.min(left);
        tracing::warn!(
            attempt,
            error = %failed.error,
            retry_in_ms = delay_now.as_millis() as u64,
            database = %config.database.url.masked(),
            "database not reachable yet; retrying (database.startup_timeout_secs = {})",
            config.database.startup_timeout_secs
        );
        tokio::time::sleep(delay_now).await;
        delay = (delay * 2).min(MAX_DELAY);
        attempt += 1;
    }
}

/// Why [`open_once`] failed: at which step, with the store's error.
struct OpenFailed {
    migrating: bool,
    error: StoreError,
}

impl OpenFailed {
    fn explain(self, config: &crate::config::Config) -> anyhow::Error {
        let what = if self.migrating {
            "applying migrations".to_string()
        } else {
            format!(
                "database.url = {}: cannot connect",
                config.database.url.masked()
            )
        };
        anyhow::Error::new(self.error).context(what)
    }
}

async fn open_once(config: &crate::config::Config) -> Result<Database, OpenFailed> {
    let store = Database::connect(&config.database)
        .await
        .map_err(|error| OpenFailed {
            migrating: false,
            error,
        })?;
    if let Err(error) = store.migrate().await {
        store.close().await;
        return Err(OpenFailed {
            migrating: true,
            error,
        });
    }
    store.set_event_routing(EventRouting::from_config(&config.events));
    Ok(store)
}

/// Test support: what integration tests read straight from the tables. Only with the
/// `test-support` feature (the tests and `dcr-bench` turn it on): not in the server's build.
#[cfg(feature = "test-support")]
impl Database {
    /// Rows in `table` (one of `schema::COUNT_ROWS`: `clients`, `jtis`, `tokens`, `audit_log`,
    /// `events`, `event_deliveries`, `as_registrations`, `as_compensations`).
    pub async fn count_rows(&self, table: &str) -> StoreResult<i64> {
        let (_, sql) = schema::COUNT_ROWS
            .iter()
            .find(|(name, _)| *name == table)
            .ok_or_else(|| StoreError::Other(format!("no table {table}")))?;
        self.raw_i64(sql).await
    }

    /// How many migrations the database records as applied.
    pub async fn migrations_applied(&self) -> StoreResult<i64> {
        self.raw_i64(schema::COUNT_MIGRATIONS).await
    }

    /// Runs any statement on a reader connection; returns the rows it changed.
    pub async fn raw_execute(&self, sql: &str) -> StoreResult<u64> {
        on_sqlx!(self, b => b.raw_execute(sql).await)
    }

    /// The one integer a query answers.
    pub async fn raw_i64(&self, sql: &str) -> StoreResult<i64> {
        on_sqlx!(self, b => b.raw_i64(sql).await)
    }

    /// The first column of every row a query answers, as text.
    pub async fn raw_strings(&self, sql: &str) -> StoreResult<Vec<String>> {
        on_sqlx!(self, b => b.raw_strings(sql).await)
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

impl ClientStore for Database {
    async fn create_client(
        &self,
        client: &ClientRecord,
        unique_software_id: bool,
        jtis: &[JtiRecord],
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        self.write(WriteUnit::CreateClient {
            client: client.clone(),
            unique_software_id,
            jtis: jtis.to_vec(),
            audit: audit.clone(),
            outbox: self.outbox(None),
            link: None,
        })
        .await
        .map(drop)
    }

    async fn update_client(
        &self,
        client: &ClientRecord,
        changed: &[String],
        jtis: &[JtiRecord],
        audit: &AuditRecord,
    ) -> StoreResult<bool> {
        self.update_linked_client(client, changed, jtis, audit, None)
            .await
    }

    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        // No row holds NUL (PostgreSQL's text cannot, and no client_id has one): such an id,
        // from a path or a form, is unknown, not a database error.
        if client_id.contains('\0') {
            return Ok(None);
        }
        retry_busy(|| async {
            match &self.backend {
                Backend::Sqlite(s) => s.read.get_client(client_id),
                Backend::Postgres(p) => p.get_client(client_id).await,
            }
        })
        .await
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        self.fetch(schema::LIST_CLIENTS, &[]).await
    }

    async fn list_clients_page(&self, f: &ClientFilter<'_>) -> StoreResult<Vec<ClientRecord>> {
        let params = [
            Param::Text(f.after),
            Param::OptText(f.software_id),
            Param::OptText(f.org_id),
            Param::Int(f.enabled.map_or(-1, i64::from)),
            Param::OptText(f.dcr_version.map(SpecVersion::as_str)),
            Param::Int(f.limit),
        ];
        self.fetch(schema::LIST_CLIENTS_PAGE, &params).await
    }

    async fn delete_client(&self, client_id: &str, audit: &AuditRecord) -> StoreResult<bool> {
        self.write(WriteUnit::DeleteClient {
            client_id: client_id.to_string(),
            audit: audit.clone(),
            outbox: self.outbox(None),
            compensation: None,
        })
        .await
        .map(Outcome::found)
    }

    async fn set_client_enabled(
        &self,
        client_id: &str,
        enabled: bool,
        audit: &AuditRecord,
    ) -> StoreResult<bool> {
        self.write(WriteUnit::SetEnabled {
            client_id: client_id.to_string(),
            enabled,
            audit: audit.clone(),
            outbox: self.outbox(None),
        })
        .await
        .map(Outcome::found)
    }
}

/// A link is written for the client it names: one for another client is a caller's bug, refused
/// before anything is written.
fn same_client(client: &ClientRecord, link: &AsLinkRecord) -> StoreResult<()> {
    if link.client_id == client.client_id {
        Ok(())
    } else {
        Err(StoreError::Other(
            "the AS link names another client than the one written".into(),
        ))
    }
}

impl AsLinkStore for Database {
    async fn create_linked_client(
        &self,
        client: &ClientRecord,
        unique_software_id: bool,
        jtis: &[JtiRecord],
        audit: &AuditRecord,
        link: &AsLinkRecord,
    ) -> StoreResult<()> {
        same_client(client, link)?;
        self.write(WriteUnit::CreateClient {
            client: client.clone(),
            unique_software_id,
            jtis: jtis.to_vec(),
            audit: audit.clone(),
            outbox: self.outbox(None),
            link: Some(link.clone()),
        })
        .await
        .map(drop)
    }

    async fn update_linked_client(
        &self,
        client: &ClientRecord,
        changed: &[String],
        jtis: &[JtiRecord],
        audit: &AuditRecord,
        link: Option<&AsLinkRecord>,
    ) -> StoreResult<bool> {
        if let Some(link) = link {
            same_client(client, link)?;
        }
        let changed = serde_json::to_string(changed)
            .map_err(|e| StoreError::Other(format!("changed fields: {e}")))?;
        self.write(WriteUnit::UpdateClient {
            client: client.clone(),
            jtis: jtis.to_vec(),
            audit: audit.clone(),
            outbox: self.outbox(Some(changed)),
            link: link.cloned(),
        })
        .await
        .map(Outcome::found)
    }

    async fn get_as_link(&self, client_id: &str) -> StoreResult<Option<AsLinkRecord>> {
        // As in get_client: no row holds NUL, and PostgreSQL cannot bind it.
        if client_id.contains('\0') {
            return Ok(None);
        }
        let key = [Param::Text(client_id)];
        let rows: Vec<AsLinkRecord> = self.fetch(schema::SELECT_AS_LINK, &key).await?;
        Ok(rows.into_iter().next())
    }

    async fn delete_client_compensating(
        &self,
        client_id: &str,
        audit: &AuditRecord,
        reason: &str,
        now: i64,
    ) -> StoreResult<bool> {
        self.write(WriteUnit::DeleteClient {
            client_id: client_id.to_string(),
            audit: audit.clone(),
            outbox: self.outbox(None),
            compensation: Some(Compensating {
                reason: reason.to_string(),
                now,
            }),
        })
        .await
        .map(Outcome::found)
    }
}

impl CompensationStore for Database {
    async fn enqueue_compensation(&self, c: &NewCompensation, now: i64) -> StoreResult<i64> {
        self.write(WriteUnit::EnqueueCompensation {
            compensation: c.clone(),
            now,
        })
        .await?
        .inserted()
    }

    async fn lease_compensations(
        &self,
        owner: &str,
        now: i64,
        until: i64,
        limit: i64,
    ) -> StoreResult<Vec<CompensationRecord>> {
        let unit = WriteUnit::LeaseCompensations {
            owner: owner.to_string(),
            now,
            until,
            limit,
        };
        self.lease(unit, schema::SELECT_LEASED_COMPENSATIONS, owner, until)
            .await
    }

    async fn finish_compensation(
        &self,
        id: i64,
        owner: &str,
        result: &CompensationResult,
    ) -> StoreResult<bool> {
        self.write(WriteUnit::FinishCompensation {
            id,
            owner: owner.to_string(),
            result: result.clone(),
        })
        .await
        .map(Outcome::found)
    }

    async fn pending_compensations(&self) -> StoreResult<i64> {
        let rows: Vec<(i64,)> = self.fetch(schema::COUNT_COMPENSATIONS, &[]).await?;
        Ok(rows.first().map_or(0, |(n,)| *n))
    }

    async fn list_compensations(&self) -> StoreResult<Vec<CompensationRecord>> {
        self.fetch(schema::LIST_COMPENSATIONS, &[]).await
    }
}

impl TokenStore for Database {
    async fn insert_token(
        &self,
        token: &TokenRecord,
        jtis: &[JtiRecord],
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        self.write(WriteUnit::InsertToken {
            token: token.clone(),
            jtis: jtis.to_vec(),
            audit: audit.clone(),
        })
        .await
        .map(drop)
    }

    async fn find_token(&self, token_hash: &str) -> StoreResult<Option<TokenRecord>> {
        retry_busy(|| async {
            match &self.backend {
                Backend::Sqlite(s) => s.read.find_token(token_hash),
                Backend::Postgres(p) => p.find_token(token_hash).await,
            }
        })
        .await
    }

    async fn find_token_and_client(
        &self,
        token_hash: &str,
        client_id: &str,
    ) -> StoreResult<(Option<TokenRecord>, Option<ClientRecord>)> {
        match &self.backend {
            // Two point reads on the calling worker cost less than one joined query would.
            Backend::Sqlite(_) => Ok((
                self.find_token(token_hash).await?,
                self.get_client(client_id).await?,
            )),
            // A NUL cannot be bound as PostgreSQL text; no client has one (see get_client).
            Backend::Postgres(_) if client_id.contains('\0') => {
                Ok((self.find_token(token_hash).await?, None))
            }
            Backend::Postgres(p) => {
                retry_busy(|| async { p.find_token_and_client(token_hash, client_id).await }).await
            }
        }
    }

    async fn revoke_token(&self, token_hash: &str, audit: &AuditRecord) -> StoreResult<bool> {
        self.write(WriteUnit::RevokeToken {
            token_hash: token_hash.to_string(),
            audit: audit.clone(),
            outbox: self.outbox(None),
        })
        .await
        .map(Outcome::found)
    }

    async fn purge_expired_tokens(&self, now: i64) -> StoreResult<u64> {
        self.write(WriteUnit::Purge {
            table: Expiring::Tokens,
            before: now,
        })
        .await
        .map(Outcome::count)
    }
}

impl AuditLog for Database {
    async fn append_audit(&self, audit: &AuditRecord) -> StoreResult<()> {
        self.write(WriteUnit::AppendAudit {
            audit: audit.clone(),
        })
        .await
        .map(drop)
    }

    async fn list_audit(
        &self,
        client_id: Option<&str>,
        since: Option<i64>,
    ) -> StoreResult<Vec<AuditRecord>> {
        let params = [Param::OptText(client_id), Param::OptInt(since)];
        self.fetch(schema::LIST_AUDIT, &params).await
    }

    async fn list_audit_page(
        &self,
        after: i64,
        client_id: Option<&str>,
        since: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<AuditEntry>> {
        let params = [
            Param::Int(after),
            Param::OptText(client_id),
            Param::Int(since.unwrap_or(i64::MIN)),
            Param::Int(limit),
        ];
        self.fetch(schema::LIST_AUDIT_PAGE, &params).await
    }
}

impl JtiStore for Database {
    async fn purge_expired_jtis(&self, now: i64) -> StoreResult<u64> {
        self.write(WriteUnit::Purge {
            table: Expiring::Jtis,
            before: now,
        })
        .await
        .map(Outcome::count)
    }
}

impl EventStore for Database {
    async fn list_events(
        &self,
        filter: &EventFilter<'_>,
    ) -> StoreResult<Vec<(EventRecord, Vec<DeliveryRecord>)>> {
        let params = [
            Param::Int(filter.after),
            Param::OptText(filter.client_id),
            Param::Int(filter.failed.into()),
            Param::Int(filter.limit),
        ];
        let events: Vec<EventRecord> = self.fetch(schema::LIST_EVENTS, &params).await?;
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(Vec::new());
        };
        let range = [Param::Int(first.id), Param::Int(last.id)];
        let deliveries: Vec<DeliveryRecord> = self.fetch(schema::LIST_DELIVERIES, &range).await?;
        let mut by_event: std::collections::HashMap<String, Vec<DeliveryRecord>> =
            std::collections::HashMap::new();
        for d in deliveries {
            by_event.entry(d.event_id.clone()).or_default().push(d);
        }
        Ok(events
            .into_iter()
            .map(|e| {
                let deliveries = by_event.remove(&e.event_id).unwrap_or_default();
                (e, deliveries)
            })
            .collect())
    }

    async fn due_webhooks(&self) -> StoreResult<Vec<String>> {
        let params = [Param::Int(crate::clock::now())];
        let rows: Vec<(String,)> = self.fetch(schema::DUE_WEBHOOKS, &params).await?;
        Ok(rows.into_iter().map(|(webhook,)| webhook).collect())
    }

    async fn lease_deliveries(
        &self,
        owner: &str,
        webhook: &str,
        until: i64,
        limit: i64,
    ) -> StoreResult<Vec<LeasedDelivery>> {
        let unit = WriteUnit::LeaseDeliveries {
            owner: owner.to_string(),
            webhook: webhook.to_string(),
            until,
            limit,
        };
        self.lease(unit, schema::SELECT_LEASED, owner, until).await
    }

    async fn finish_delivery(
        &self,
        delivery_id: i64,
        owner: &str,
        result: &DeliveryResult,
    ) -> StoreResult<bool> {
        self.write(WriteUnit::FinishDelivery {
            id: delivery_id,
            owner: owner.to_string(),
            result: result.clone(),
        })
        .await
        .map(Outcome::found)
    }

    async fn retry_failed(
        &self,
        event_id: Option<&str>,
        webhook: &str,
        until: i64,
    ) -> StoreResult<u64> {
        self.write(WriteUnit::RetryFailed {
            event_id: event_id.map(str::to_string),
            webhook: webhook.to_string(),
            until,
        })
        .await
        .map(Outcome::count)
    }

    async fn purge_events(&self, before: i64) -> StoreResult<u64> {
        self.write(WriteUnit::Purge {
            table: Expiring::Events,
            before,
        })
        .await
        .map(Outcome::count)
    }

    async fn pending_summary(&self) -> StoreResult<(i64, i64)> {
        let rows: Vec<(i64, i64)> = self.fetch(schema::PENDING_SUMMARY, &[]).await?;
        Ok(rows.first().copied().unwrap_or((0, 0)))
    }
}
