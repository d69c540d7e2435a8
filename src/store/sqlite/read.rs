//! SQLite through sqlx: the reader pool, and one more connection for the migrations (and bulk
//! loading). Writes on the request path go to the writer thread ([`super::write`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{OpenFlags, OptionalExtension};
use sqlx::Sqlite;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::store::error::{StoreError, StoreResult};
use crate::store::pool;
use crate::store::reads::{Engine, Sqlx};
use crate::store::record::{ClientRecord, TokenRecord};
use crate::store::row::Row;
use crate::store::schema;

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

    /// The one row `sql` finds for `key` (its only parameter).
    fn one<T: Row>(&self, sql: &str, key: &str) -> StoreResult<Option<T>> {
        let taken = self.0.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match taken {
            Some(conn) => conn,
            None => self.open().map_err(super::write::map_err)?,
        };
        self.0.in_use.fetch_add(1, Ordering::Relaxed);
        let found = conn
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.query_row([key], |r| Ok(T::decode(r))).optional())
            .map_err(super::write::map_err)
            .and_then(Option::transpose);
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
    /// The reader pool, and one connection for migrations and bulk loads: opening a local
    /// file may take its time on a loaded machine, so that one is not bounded by the
    /// per-request acquire timeout.
    pub(in crate::store) sqlx: Sqlx<Sqlite>,
}

/// A key violation (from a bulk load) is the same [`Conflict`](crate::store::Conflict) as on
/// the writer thread; anything else maps by class.
impl Engine for Sqlite {
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
}

fn map_err(e: sqlx::Error) -> StoreError {
    <Sqlite as Engine>::map_err(e)
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
            sqlx: Sqlx {
                reads: readers,
                maintenance,
            },
        })
    }

    pub(in crate::store) async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.sqlx.maintenance)
            .await
            .map_err(StoreError::from_migrate)
    }

    /// The sqlx readers and the point-read connections together.
    pub(in crate::store) fn usage(&self) -> (usize, usize) {
        let (in_use, idle) = pool::usage(&self.sqlx.reads);
        let (direct_in_use, direct_idle) = self.direct.usage();
        (in_use + direct_in_use, idle + direct_idle)
    }

    /// A client by id: [`schema::SELECT_CLIENT`], on the calling worker.
    pub(in crate::store) fn get_client(
        &self,
        client_id: &str,
    ) -> StoreResult<Option<ClientRecord>> {
        self.direct.one(schema::SELECT_CLIENT, client_id)
    }

    /// A token by hash: [`schema::SELECT_TOKEN`], on the calling worker.
    pub(in crate::store) fn find_token(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<TokenRecord>> {
        self.direct.one(schema::SELECT_TOKEN, token_hash)
    }
}
