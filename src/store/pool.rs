//! What the two sqlx pools (SQLite readers, PostgreSQL) share.

use std::time::Instant;

use sqlx::pool::PoolConnection;

/// A connection for a read on the request path; the wait for it is a metric.
pub(super) async fn acquire_timed<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
) -> Result<PoolConnection<DB>, sqlx::Error> {
    let started = Instant::now();
    let conn = pool.acquire().await?;
    crate::metrics::db_wait(started.elapsed().as_secs_f64());
    Ok(conn)
}

/// Connections (in use, idle), for the metrics.
pub(super) fn usage<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> (usize, usize) {
    let (size, idle) = (pool.size() as usize, pool.num_idle());
    (size.saturating_sub(idle), idle)
}
