//! The production backend: PostgreSQL through sqlx, shared by any number of replicas.
//!
//! Reads are single statements on the pool; each write unit runs in one transaction.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::query::Query;
use sqlx::{Postgres, QueryBuilder};

use super::error::{StoreError, StoreResult};
use super::pool;
use super::record::{AuditRecord, ClientRecord, TokenRecord};
use super::schema;
use super::unit::{self, ExecuteAsync, Outcome, Param, Statement, WriteUnit};

#[derive(Clone, Debug)]
pub(super) struct PostgresStore {
    pool: PgPool,
}

/// A key violation is a [`Conflict`](super::error::Conflict) when its constraint is one
/// `schema` names; anything else maps by class.
fn map_err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && let Some(conflict) = db.constraint().and_then(schema::postgres_conflict)
    {
        return StoreError::Conflict(conflict);
    }
    StoreError::from_sqlx(e)
}

fn bind<'q>(q: Query<'q, Postgres, PgArguments>, p: Param<'q>) -> Query<'q, Postgres, PgArguments> {
    match p {
        Param::Text(v) => q.bind(v),
        Param::OptText(v) => q.bind(v),
        Param::Int(v) => q.bind(v),
        Param::Bool(v) => q.bind(v),
    }
}

/// A connection (or the transaction's) that runs a unit's statements.
struct Exec<'c>(&'c mut PgConnection);

impl ExecuteAsync for Exec<'_> {
    async fn exec(&mut self, s: &Statement<'_>) -> StoreResult<u64> {
        let q = s
            .params()
            .iter()
            .fold(sqlx::query(s.sql), |q, p| bind(q, *p));
        Ok(q.execute(&mut *self.0)
            .await
            .map_err(map_err)?
            .rows_affected())
    }
}

impl PostgresStore {
    /// One connection attempt, closed at once: whether the server answers and lets this user
    /// in. Unlike the pool's first acquire, it does not retry by itself, so that a caller
    /// waiting for the database sees (and logs) each try.
    pub(super) async fn probe(url: &str, timeout: Duration) -> StoreResult<()> {
        use sqlx::Connection;
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("database.url: {e}")))?;
        let connection = tokio::time::timeout(timeout, PgConnection::connect_with(&options))
            .await
            .map_err(|_| StoreError::Unavailable(format!("no answer within {timeout:?}")))?
            .map_err(StoreError::from_sqlx)?;
        let _ = connection.close().await;
        Ok(())
    }

    pub(super) async fn connect(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("database.url: {e}")))?;
        // No ping before each use: it doubled the round trips of every query. A connection
        // that died (a restarted server) fails its next query with a 503 and is discarded.
        let pool = PgPoolOptions::new()
            .test_before_acquire(false)
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(Self { pool })
    }

    pub(super) async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(StoreError::from_migrate)
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }

    pub(super) fn usage(&self) -> (usize, usize) {
        pool::usage(&self.pool)
    }

    pub(super) async fn ping(&self) -> StoreResult<()> {
        sqlx::query(schema::PING)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn write(&self, unit: &WriteUnit<'_>) -> StoreResult<Outcome> {
        let now = crate::clock::now();
        if let Some(one) = unit.one_statement(now) {
            let mut conn = self.pool.acquire().await.map_err(map_err)?;
            return unit::run_one_async(&mut Exec(&mut conn), &one).await;
        }
        if !unit.needs_transaction() {
            // One statement is atomic by itself: no BEGIN and COMMIT round trips.
            let mut conn = self.pool.acquire().await.map_err(map_err)?;
            return unit::run_async(&mut Exec(&mut conn), unit, now).await;
        }
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        // On an error `tx` is dropped, which rolls the unit back.
        let outcome = unit::run_async(&mut Exec(&mut tx), unit, now).await?;
        if outcome.commits() {
            tx.commit().await.map_err(map_err)?;
        } else {
            tx.rollback().await.map_err(map_err)?;
        }
        Ok(outcome)
    }

    pub(super) async fn get_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        let mut conn = pool::acquire_timed(&self.pool).await.map_err(map_err)?;
        sqlx::query_as(schema::SELECT_CLIENT)
            .bind(client_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(map_err)
    }

    pub(super) async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        sqlx::query_as(schema::LIST_CLIENTS)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)
    }

    pub(super) async fn find_token(&self, token_hash: &str) -> StoreResult<Option<TokenRecord>> {
        let mut conn = pool::acquire_timed(&self.pool).await.map_err(map_err)?;
        sqlx::query_as(schema::SELECT_TOKEN)
            .bind(token_hash)
            .fetch_optional(&mut *conn)
            .await
            .map_err(map_err)
    }

    /// [`schema::SELECT_TOKEN_AND_CLIENT`]: the token and the client in one round trip.
    pub(super) async fn find_token_and_client(
        &self,
        token_hash: &str,
        client_id: &str,
    ) -> StoreResult<(Option<TokenRecord>, Option<ClientRecord>)> {
        use sqlx::{FromRow, Row};
        let mut conn = pool::acquire_timed(&self.pool).await.map_err(map_err)?;
        let row = sqlx::query(schema::SELECT_TOKEN_AND_CLIENT)
            .bind(token_hash)
            .bind(client_id)
            .fetch_one(&mut *conn)
            .await
            .map_err(map_err)?;
        let token = match row
            .try_get::<Option<String>, _>("t_token_hash")
            .map_err(map_err)?
        {
            None => None,
            Some(token_hash) => Some(TokenRecord {
                token_hash,
                client_id: row.try_get("t_client_id").map_err(map_err)?,
                scope: row.try_get("t_scope").map_err(map_err)?,
                cert_thumbprint: row.try_get("t_cert_thumbprint").map_err(map_err)?,
                issued_at: row.try_get("t_issued_at").map_err(map_err)?,
                expires_at: row.try_get("t_expires_at").map_err(map_err)?,
                revoked: row.try_get("t_revoked").map_err(map_err)?,
            }),
        };
        let client = match row
            .try_get::<Option<String>, _>("client_id")
            .map_err(map_err)?
        {
            None => None,
            Some(_) => Some(ClientRecord::from_row(&row).map_err(map_err)?),
        };
        Ok((token, client))
    }

    pub(super) async fn list_audit(
        &self,
        client_id: Option<&str>,
        since: Option<i64>,
    ) -> StoreResult<Vec<AuditRecord>> {
        sqlx::query_as(schema::LIST_AUDIT)
            .bind(client_id)
            .bind(since)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)
    }

    /// Inserts `rows` with multi-row INSERTs, `head` naming the columns that each row's
    /// parameters fill in order.
    pub(super) async fn insert_rows<'r, const N: usize, R>(
        &self,
        head: &'static str,
        rows: &'r [R],
        params: impl Fn(&'r R) -> [Param<'r>; N],
    ) -> StoreResult<()> {
        // One transaction: one commit for the whole call, and nothing of it on an error.
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        for batch in rows.chunks(schema::BULK_ROWS) {
            let mut q = QueryBuilder::<Postgres>::new(head);
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

    /// The rows a read query answers, decoded as `O`.
    pub(super) async fn fetch_rows<O>(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> StoreResult<Vec<O>>
    where
        O: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    {
        let q = params.iter().fold(sqlx::query_as(sql), |q, p| match *p {
            Param::Text(v) => q.bind(v),
            Param::OptText(v) => q.bind(v),
            Param::Int(v) => q.bind(v),
            Param::Bool(v) => q.bind(v),
        });
        let mut conn = pool::acquire_timed(&self.pool).await.map_err(map_err)?;
        q.fetch_all(&mut *conn).await.map_err(map_err)
    }

    pub(super) async fn raw_execute(&self, sql: &str) -> StoreResult<u64> {
        Ok(sqlx::query(sql)
            .execute(&self.pool)
            .await
            .map_err(map_err)?
            .rows_affected())
    }

    pub(super) async fn raw_i64(&self, sql: &str) -> StoreResult<i64> {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)
    }

    pub(super) async fn raw_strings(&self, sql: &str) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(sql)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)
    }
}
