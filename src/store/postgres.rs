//! The production backend: PostgreSQL through sqlx, shared by any number of replicas.
//!
//! Reads are single statements on the pool; each write unit runs in one transaction.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Postgres;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};

use super::error::{StoreError, StoreResult};
use super::pool;
use super::reads::{Engine, Reads, Sqlx, bind};
use super::record::{ClientRecord, TokenRecord};
use super::row::{Param, Row};
use super::schema;
use super::unit::{self, ExecuteAsync, Outcome, Statement, WriteUnit};

#[derive(Clone, Debug)]
pub(super) struct PostgresStore {
    /// One pool for reads, writes, migrations and bulk loads.
    pub(super) sqlx: Sqlx<Postgres>,
}

/// A key violation is a [`Conflict`](super::error::Conflict) when its constraint is one
/// `schema` names; anything else maps by class.
impl Engine for Postgres {
    fn map_err(e: sqlx::Error) -> StoreError {
        if let sqlx::Error::Database(db) = &e
            && let Some(conflict) = db.constraint().and_then(schema::postgres_conflict)
        {
            return StoreError::Conflict(conflict);
        }
        StoreError::from_sqlx(e)
    }
}

fn map_err(e: sqlx::Error) -> StoreError {
    <Postgres as Engine>::map_err(e)
}

/// A connection (or the transaction's) that runs a unit's statements.
struct Exec<'c>(&'c mut PgConnection);

impl ExecuteAsync for Exec<'_> {
    async fn exec(&mut self, s: &Statement<'_>) -> StoreResult<u64> {
        let q = s
            .params()
            .iter()
            .fold(sqlx::query(s.sql), |q, p| bind!(q, *p));
        if s.returns_id() {
            // INSERT … RETURNING id: the id in place of the row count.
            let row = q.fetch_one(&mut *self.0).await.map_err(map_err)?;
            let id: i64 = sqlx::Row::try_get(&row, 0).map_err(map_err)?;
            return u64::try_from(id)
                .map_err(|_| StoreError::Other(format!("inserted id {id} out of range")));
        }
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
        Ok(Self {
            sqlx: Sqlx {
                reads: pool.clone(),
                maintenance: pool,
            },
        })
    }

    pub(super) async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.sqlx.maintenance)
            .await
            .map_err(StoreError::from_migrate)
    }

    pub(super) fn usage(&self) -> (usize, usize) {
        pool::usage(&self.sqlx.reads)
    }

    pub(super) async fn write(&self, unit: &WriteUnit) -> StoreResult<Outcome> {
        let now = crate::clock::now();
        if let Some(one) = unit.one_statement(now) {
            let mut conn = self.sqlx.reads.acquire().await.map_err(map_err)?;
            return unit::run_one_async(&mut Exec(&mut conn), &one).await;
        }
        if !unit.needs_transaction() {
            // One statement is atomic by itself: no BEGIN and COMMIT round trips.
            let mut conn = self.sqlx.reads.acquire().await.map_err(map_err)?;
            return unit::run_async(&mut Exec(&mut conn), unit, now).await;
        }
        let mut tx = self.sqlx.reads.begin().await.map_err(map_err)?;
        // On an error `tx` is dropped, which rolls the unit back.
        let outcome = unit::run_async(&mut Exec(&mut tx), unit, now).await?;
        if outcome.commits() {
            tx.commit().await.map_err(map_err)?;
        } else {
            tx.rollback().await.map_err(map_err)?;
        }
        Ok(outcome)
    }

    /// A client by id: [`schema::SELECT_CLIENT`].
    pub(super) async fn get_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        let key = [Param::Text(client_id)];
        self.sqlx.fetch_optional(schema::SELECT_CLIENT, &key).await
    }

    /// A token by hash: [`schema::SELECT_TOKEN`].
    pub(super) async fn find_token(&self, token_hash: &str) -> StoreResult<Option<TokenRecord>> {
        let key = [Param::Text(token_hash)];
        self.sqlx.fetch_optional(schema::SELECT_TOKEN, &key).await
    }

    /// [`schema::SELECT_TOKEN_AND_CLIENT`]: the token and the client in one round trip.
    pub(super) async fn find_token_and_client(
        &self,
        token_hash: &str,
        client_id: &str,
    ) -> StoreResult<(Option<TokenRecord>, Option<ClientRecord>)> {
        let keys = [Param::Text(token_hash), Param::Text(client_id)];
        let row: Option<TokenAndClient> = self
            .sqlx
            .fetch_optional(schema::SELECT_TOKEN_AND_CLIENT, &keys)
            .await?;
        Ok(row.map_or((None, None), |TokenAndClient(t, c)| (t, c)))
    }
}

/// The two sides of [`schema::SELECT_TOKEN_AND_CLIENT`]'s outer join, one after the other.
struct TokenAndClient(Option<TokenRecord>, Option<ClientRecord>);

impl Row for TokenAndClient {
    const WIDTH: usize = TokenRecord::WIDTH + ClientRecord::WIDTH;
    fn read(c: &mut super::row::Cursor<'_>) -> StoreResult<Self> {
        Ok(Self(Row::read(c)?, Row::read(c)?))
    }
}
