//! SQLite through sqlx: the reader pool, and one more connection for the migrations (and bulk
//! loading). Writes on the request path go to the writer thread ([`super::write`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{OpenFlags, OptionalExtension};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{QueryBuilder, Sqlite};

use crate::store::error::{StoreError, StoreResult};
use crate::store::pool;
use crate::store::record::{AuditRecord, ClientRecord, TokenRecord};
use crate::store::schema;
use crate::store::unit::Param;

/// Read-only rusqlite connections for the point reads of the request path (a client by id, a
/// token by hash), run on the calling tokio worker. Through sqlx each read was a hand-off to
/// the connection's own thread and back, two wake-ups and context switches: they cost more
/// than the primary-key lookup itself, which a WAL reader does without waiting for the writer.
/// Idle connections are kept (up to `database.max_connections`); one more is opened when all
/// are in use.
#[derive(Clone)]
struct Direct(Arc<DirectPool>);

struct DirectPool {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
    keep: usize,
    /// Connections taken by a read now, for the pool metrics.
    in_use: AtomicUsize,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct")
            .field("path", &self.0.path)
            .finish()
    }
}

/// How long a point read waits for a lock. A WAL reader waits only while another process
/// recovers or truncates the WAL; the worker thread must not stall for the whole busy timeout,
/// so it gives up early and the read is retried as busy.
const DIRECT_BUSY: Duration = Duration::from_millis(50);

impl Direct {
    fn new(path: &Path, keep: usize) -> Self {
        Self(Arc::new(DirectPool {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            keep: keep.max(1),
            in_use: AtomicUsize::new(0),
        }))
    }

    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        let conn = rusqlite::Connection::open_with_flags(
            &self.0.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(DIRECT_BUSY)?;
        Ok(conn)
    }

    /// The one row `sql` finds for `key` (its only parameter), decoded by `row`.
    fn one<T>(
        &self,
        sql: &str,
        key: &str,
        row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<Option<T>> {
        let taken = self.0.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match taken {
            Some(conn) => conn,
            None => self.open().map_err(super::write::map_err)?,
        };
        self.0.in_use.fetch_add(1, Ordering::Relaxed);
        let found = conn
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.query_row([key], row).optional())
            .map_err(super::write::map_err);
        self.0.in_use.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut idle) = self.0.idle.lock()
            && idle.len() < self.0.keep
        {
            idle.push(conn);
        }
        found
    }

    /// (in use, idle).
    fn usage(&self) -> (usize, usize) {
        let idle = self.0.idle.lock().map_or(0, |idle| idle.len());
        (self.0.in_use.load(Ordering::Relaxed), idle)
    }
}

#[derive(Clone, Debug)]
pub(in crate::store) struct Reader {
    /// The point reads of every token and management request ([`Direct`]).
    direct: Direct,
    readers: SqlitePool,
    /// One connection: migrations and bulk loads. Opening a local file may take its time on a
    /// loaded machine, so it is not bounded by the per-request acquire timeout.
    maintenance: SqlitePool,
}

/// A key violation (from a bulk load) is the same [`Conflict`](crate::store::Conflict) as on
/// the writer thread; anything else maps by class.
fn map_err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && let Some(conflict) = db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .and_then(|c| schema::sqlite_conflict(c, db.message()))
    {
        return StoreError::Conflict(conflict);
    }
    StoreError::from_sqlx(e)
}

impl Reader {
    pub(in crate::store) async fn connect(
        file: &Path,
        options: SqliteConnectOptions,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> StoreResult<Self> {
        // No ping before each use: a local file does not drop connections, and every ping is
        // a round trip to the connection's worker thread.
        let maintenance = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options.clone())
            .await
            .map_err(map_err)?;
        // Reader connections open on first use. (A memory map for them was tried: the TLB
        // shootdowns as the file grew cost more than the pread() copies it saved.)
        let readers = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(options);
        Ok(Self {
            direct: Direct::new(file, max_connections as usize),
            readers,
            maintenance,
        })
    }

    pub(in crate::store) async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.maintenance)
            .await
            .map_err(StoreError::from_migrate)
    }

    pub(in crate::store) async fn close(&self) {
        self.readers.close().await;
        self.maintenance.close().await;
    }

    /// The sqlx readers and the point-read connections together.
    pub(in crate::store) fn usage(&self) -> (usize, usize) {
        let (in_use, idle) = pool::usage(&self.readers);
        let (direct_in_use, direct_idle) = self.direct.usage();
        (in_use + direct_in_use, idle + direct_idle)
    }

    pub(in crate::store) async fn ping(&self) -> StoreResult<()> {
        sqlx::query(schema::PING)
            .execute(&self.readers)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    pub(in crate::store) async fn get_client(
        &self,
        client_id: &str,
    ) -> StoreResult<Option<ClientRecord>> {
        self.direct.one(schema::SELECT_CLIENT, client_id, |r| {
            Ok(ClientRecord {
                client_id: r.get(0)?,
                software_id: r.get(1)?,
                org_id: r.get(2)?,
                metadata: r.get(3)?,
                grant_types: r.get(4)?,
                scope: r.get(5)?,
                client_secret_hash: r.get(6)?,
                token_endpoint_auth_method: r.get(7)?,
                tls_client_auth_subject_dn: r.get(8)?,
                jwks_uri: r.get(9)?,
                cert_thumbprint: r.get(10)?,
                enabled: r.get(11)?,
                created_at: r.get(12)?,
                updated_at: r.get(13)?,
                dcr_version: r.get(14)?,
                jwks_revoked_uri: r.get(15)?,
            })
        })
    }

    pub(in crate::store) async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        sqlx::query_as(schema::LIST_CLIENTS)
            .fetch_all(&self.readers)
            .await
            .map_err(map_err)
    }

    pub(in crate::store) async fn find_token(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<TokenRecord>> {
        self.direct.one(schema::SELECT_TOKEN, token_hash, |r| {
            Ok(TokenRecord {
                token_hash: r.get(0)?,
                client_id: r.get(1)?,
                scope: r.get(2)?,
                cert_thumbprint: r.get(3)?,
                issued_at: r.get(4)?,
                expires_at: r.get(5)?,
                revoked: r.get(6)?,
            })
        })
    }

    pub(in crate::store) async fn list_audit(
        &self,
        client_id: Option<&str>,
        since: Option<i64>,
    ) -> StoreResult<Vec<AuditRecord>> {
        sqlx::query_as(schema::LIST_AUDIT)
            .bind(client_id)
            .bind(since)
            .fetch_all(&self.readers)
            .await
            .map_err(map_err)
    }

    /// The rows a read query answers, decoded as `O`.
    pub(in crate::store) async fn fetch_rows<O>(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> StoreResult<Vec<O>>
    where
        O: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
    {
        let q = params.iter().fold(sqlx::query_as(sql), |q, p| match *p {
            Param::Text(v) => q.bind(v),
            Param::OptText(v) => q.bind(v),
            Param::Int(v) => q.bind(v),
            Param::Bool(v) => q.bind(v),
        });
        let mut conn = pool::acquire_timed(&self.readers).await.map_err(map_err)?;
        q.fetch_all(&mut *conn).await.map_err(map_err)
    }

    /// Inserts `rows` with multi-row INSERTs, `head` naming the columns that each row's
    /// parameters fill in order. On the maintenance connection: bulk loads are not request
    /// traffic.
    pub(in crate::store) async fn insert_rows<'r, const N: usize, R>(
        &self,
        head: &'static str,
        rows: &'r [R],
        params: impl Fn(&'r R) -> [Param<'r>; N],
    ) -> StoreResult<()> {
        // One transaction: one commit for the whole call, and nothing of it on an error.
        let mut tx = self.maintenance.begin().await.map_err(map_err)?;
        for batch in rows.chunks(schema::BULK_ROWS) {
            let mut q = QueryBuilder::<Sqlite>::new(head);
            q.push_values(batch, |mut b, row| {
                for p in params(row) {
                    match p {
                        Param::Text(v) => b.push_bind(v),
                        Param::OptText(v) => b.push_bind(v),
                        Param::Int(v) => b.push_bind(v),
                        Param::Bool(v) => b.push_bind(v),
                    };
                }
            });
            q.build().execute(&mut *tx).await.map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(())
    }

    pub(in crate::store) async fn raw_execute(&self, sql: &str) -> StoreResult<u64> {
        Ok(sqlx::query(sql)
            .execute(&self.readers)
            .await
            .map_err(map_err)?
            .rows_affected())
    }

    pub(in crate::store) async fn raw_i64(&self, sql: &str) -> StoreResult<i64> {
        sqlx::query_scalar(sql)
            .fetch_one(&self.readers)
            .await
            .map_err(map_err)
    }

    pub(in crate::store) async fn raw_strings(&self, sql: &str) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(sql)
            .fetch_all(&self.readers)
            .await
            .map_err(map_err)
    }
}
