//! SQLite through sqlx: the reader pool, and one more connection for the migrations (and bulk
//! loading). Writes on the request path go to the writer thread ([`super::write`]).

use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{QueryBuilder, Sqlite};

use crate::store::error::{StoreError, StoreResult};
use crate::store::pool;
use crate::store::record::{AuditRecord, ClientRecord, TokenRecord};
use crate::store::schema;
use crate::store::unit::Param;

#[derive(Clone, Debug)]
pub(in crate::store) struct Reader {
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

    pub(in crate::store) fn usage(&self) -> (usize, usize) {
        pool::usage(&self.readers)
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
        let mut conn = pool::acquire_timed(&self.readers).await.map_err(map_err)?;
        sqlx::query_as(schema::SELECT_CLIENT)
            .bind(client_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(map_err)
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
        let mut conn = pool::acquire_timed(&self.readers).await.map_err(map_err)?;
        sqlx::query_as(schema::SELECT_TOKEN)
            .bind(token_hash)
            .fetch_optional(&mut *conn)
            .await
            .map_err(map_err)
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
