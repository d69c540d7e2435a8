//! The read side through sqlx, written once for both engines: PostgreSQL's pool, and SQLite's
//! reader pool (its point reads go to rusqlite instead, see `sqlite::read`).
//!
//! The methods are the same text for both engines; only the database type differs. sqlx's
//! executor bounds make a generic `impl<DB: sqlx::Database>` heavier than its body, so a
//! macro instantiates the one body per engine.

use std::future::Future;

use sqlx::Pool;

use super::error::{StoreError, StoreResult};
use super::row::{Param, Row};

/// How an engine names what went wrong: a key it knows (a [`Conflict`](super::Conflict)), or
/// an error by class.
pub(super) trait Engine: sqlx::Database {
    fn map_err(e: sqlx::Error) -> StoreError;
}

/// An engine's sqlx pools: `reads` for the request path, `maintenance` for migrations and
/// bulk loads (the same pool on PostgreSQL; SQLite's one extra connection, not bounded by the
/// request path's acquire timeout).
#[derive(Debug)]
pub(super) struct Sqlx<DB: sqlx::Database> {
    pub reads: Pool<DB>,
    pub maintenance: Pool<DB>,
}

// By hand: a derive would ask `DB: Clone`, which the engine types are not.
impl<DB: sqlx::Database> Clone for Sqlx<DB> {
    fn clone(&self) -> Self {
        Self {
            reads: self.reads.clone(),
            maintenance: self.maintenance.clone(),
        }
    }
}

/// The reads every caller of [`Sqlx`] uses, whichever engine.
pub(super) trait Reads {
    /// A cheap round trip, for `/ready`.
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;
    /// The rows `sql` answers with `params` bound, decoded as `O`.
    fn fetch_rows<O: Row + Send>(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> impl Future<Output = StoreResult<Vec<O>>> + Send;
    /// The row `sql` answers, if any: a point read (by key, so at most one row).
    fn fetch_optional<O: Row + Send>(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> impl Future<Output = StoreResult<Option<O>>> + Send
    where
        Self: Sync,
    {
        async move { Ok(self.fetch_rows(sql, params).await?.into_iter().next()) }
    }
}

/// `$q.$bind(value)` for a [`Param`]: the one match from our values to sqlx's (a query's
/// `bind`, a bulk insert's `push_bind`).
macro_rules! bind {
    ($q:expr, $p:expr) => {
        $crate::store::reads::bind!($q, $p, bind)
    };
    ($q:expr, $p:expr, $bind:ident) => {
        match $p {
            Param::Text(v) => $q.$bind(v),
            Param::OptText(v) => $q.$bind(v),
            Param::Int(v) => $q.$bind(v),
            Param::OptInt(v) => $q.$bind(v),
            Param::Bool(v) => $q.$bind(v),
        }
    };
}
pub(super) use bind;

macro_rules! sqlx_reads {
    ($db:ty) => {
        impl Reads for Sqlx<$db> {
            async fn ping(&self) -> StoreResult<()> {
                sqlx::query(super::schema::PING)
                    .execute(&self.reads)
                    .await
                    .map_err(<$db as Engine>::map_err)?;
                Ok(())
            }

            async fn fetch_rows<O: Row + Send>(
                &self,
                sql: &'static str,
                params: &[Param<'_>],
            ) -> StoreResult<Vec<O>> {
                let q = params.iter().fold(sqlx::query(sql), |q, p| bind!(q, *p));
                let mut conn = super::pool::acquire_timed(&self.reads)
                    .await
                    .map_err(<$db as Engine>::map_err)?;
                let rows = q
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(<$db as Engine>::map_err)?;
                rows.iter().map(|r| O::decode(r)).collect()
            }
        }

        impl Sqlx<$db> {
            pub(super) async fn close(&self) {
                self.reads.close().await;
                self.maintenance.close().await;
            }

            /// Inserts `rows` with multi-row INSERTs on the maintenance pool (bulk loads are
            /// not request traffic), `head` naming the columns that each row's parameters fill
            /// in order. One transaction: one commit, and nothing of it on an error.
            #[cfg(feature = "test-support")]
            pub(super) async fn insert_rows<'r, const N: usize, R>(
                &self,
                head: &'static str,
                rows: &'r [R],
                params: impl Fn(&'r R) -> [Param<'r>; N],
            ) -> StoreResult<()> {
                let map_err = <$db as Engine>::map_err;
                let mut tx = self.maintenance.begin().await.map_err(map_err)?;
                for batch in rows.chunks(super::schema::BULK_ROWS) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(head);
                    q.push_values(batch, |mut b, row| {
                        for p in params(row) {
                            bind!(b, p, push_bind);
                        }
                    });
                    q.build().execute(&mut *tx).await.map_err(map_err)?;
                }
                tx.commit().await.map_err(map_err)?;
                Ok(())
            }

            /// Runs any statement; returns the rows it changed.
            #[cfg(feature = "test-support")]
            pub(super) async fn raw_execute(&self, sql: &str) -> StoreResult<u64> {
                Ok(sqlx::query(sql)
                    .execute(&self.reads)
                    .await
                    .map_err(<$db as Engine>::map_err)?
                    .rows_affected())
            }

            /// The one integer a query answers.
            #[cfg(feature = "test-support")]
            pub(super) async fn raw_i64(&self, sql: &str) -> StoreResult<i64> {
                sqlx::query_scalar(sql)
                    .fetch_one(&self.reads)
                    .await
                    .map_err(<$db as Engine>::map_err)
            }

            /// The first column of every row a query answers, as text.
            #[cfg(feature = "test-support")]
            pub(super) async fn raw_strings(&self, sql: &str) -> StoreResult<Vec<String>> {
                sqlx::query_scalar(sql)
                    .fetch_all(&self.reads)
                    .await
                    .map_err(<$db as Engine>::map_err)
            }
        }
    };
}

sqlx_reads!(sqlx::Sqlite);
sqlx_reads!(sqlx::Postgres);
