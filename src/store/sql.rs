//! The SQL behind [`Store`](super::Store), shared by both backends.
//!
//! SQLite and PostgreSQL accept the same statements here (`$N` parameters, `ON CONFLICT`,
//! `RETURNING`), so one macro writes both implementations and the SQL exists once.

use super::{
    AuditRecord, ClientRecord, Conflict, JtiRecord, Store, StoreError, StoreResult, TokenRecord,
};

// The column lists are macros so that the SELECTs below are constants, not formatted per request.
macro_rules! client_columns {
    () => {
        "client_id, software_id, org_id, metadata, client_secret_hash, \
         token_endpoint_auth_method, tls_client_auth_subject_dn, jwks_uri, cert_thumbprint, \
         enabled, created_at, updated_at"
    };
}

const SELECT_CLIENT: &str = concat!(
    "SELECT ",
    client_columns!(),
    " FROM clients WHERE client_id = $1"
);
const LIST_CLIENTS: &str = concat!(
    "SELECT ",
    client_columns!(),
    " FROM clients ORDER BY created_at, client_id"
);

pub(super) const INSERT_CLIENT: &str = "INSERT INTO clients (client_id, software_id, org_id, metadata, \
     client_secret_hash, token_endpoint_auth_method, tls_client_auth_subject_dn, jwks_uri, \
     cert_thumbprint, enabled, created_at, updated_at, software_id_unique) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

pub(super) const UPDATE_CLIENT: &str = "UPDATE clients SET org_id = $2, metadata = $3, \
     token_endpoint_auth_method = $4, tls_client_auth_subject_dn = $5, jwks_uri = $6, \
     cert_thumbprint = $7, updated_at = $8 WHERE client_id = $1";

pub(super) const SET_CLIENT_ENABLED: &str =
    "UPDATE clients SET enabled = $2, updated_at = $3 WHERE client_id = $1";

pub(super) const REVOKE_CLIENT_TOKENS: &str =
    "UPDATE tokens SET revoked = $2 WHERE client_id = $1 AND revoked = $3";

/// Insert-or-refresh: a `jti` is new if it is absent or its row has expired. One statement,
/// so two replicas racing on the same `jti` cannot both succeed.
pub(super) const REMEMBER_JTI: &str = "INSERT INTO jtis (scope, jti, expires_at) VALUES ($1, $2, $3) \
     ON CONFLICT (scope, jti) DO UPDATE SET expires_at = excluded.expires_at \
     WHERE jtis.expires_at <= $4";

pub(super) const INSERT_AUDIT: &str = "INSERT INTO audit_log (at, action, outcome, client_id, software_id, \
     org_id, cert_thumbprint, interaction_id, error_code, detail) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

const SELECT_TOKEN: &str = "SELECT token_hash, client_id, scope, cert_thumbprint, issued_at, \
     expires_at, revoked FROM tokens WHERE token_hash = $1";

pub(super) const INSERT_TOKEN: &str = "INSERT INTO tokens (token_hash, client_id, scope, \
     cert_thumbprint, issued_at, expires_at, revoked) VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// Maps a unique or foreign-key violation to the [`Conflict`] it means.
fn conflict_of(e: &sqlx::Error) -> Option<Conflict> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    let text = format!("{} {}", db.constraint().unwrap_or_default(), db.message());
    match db.kind() {
        sqlx::error::ErrorKind::UniqueViolation if text.contains("software_id_unique") => {
            Some(Conflict::SoftwareId)
        }
        sqlx::error::ErrorKind::UniqueViolation
            if text.contains("client_id") || text.contains("clients_pkey") =>
        {
            Some(Conflict::ClientId)
        }
        sqlx::error::ErrorKind::ForeignKeyViolation => Some(Conflict::UnknownClient),
        _ => None,
    }
}

fn map_err(e: sqlx::Error) -> StoreError {
    match conflict_of(&e) {
        Some(c) => StoreError::Conflict(c),
        None => StoreError::from_sqlx(e),
    }
}

fn now() -> i64 {
    crate::clock::now()
}

macro_rules! sql_store {
    ($name:ident, $db:ty, $migrations:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Debug)]
        pub struct $name {
            /// Reads.
            pool: sqlx::Pool<$db>,
            /// Writes. For SQLite a separate pool of one connection: SQLite has one writer
            /// anyway, and queueing here is far cheaper than its busy handler's sleeps.
            writer: sqlx::Pool<$db>,
            /// SQLite: the writer thread that takes every write (see `sqlite_writer`).
            direct: Option<super::sqlite_writer::SqliteWriter>,
        }

        impl $name {
            pub fn new(pool: sqlx::Pool<$db>) -> Self {
                Self {
                    writer: pool.clone(),
                    pool,
                    direct: None,
                }
            }

            /// Separate pools for reads and writes.
            pub fn with_writer(
                pool: sqlx::Pool<$db>,
                writer: sqlx::Pool<$db>,
                direct: Option<super::sqlite_writer::SqliteWriter>,
            ) -> Self {
                Self {
                    pool,
                    writer,
                    direct,
                }
            }

            /// Closes both pools.
            pub async fn close(&self) {
                self.pool.close().await;
                self.writer.close().await;
            }

            pub fn pool(&self) -> &sqlx::Pool<$db> {
                &self.pool
            }

            /// A read connection for the request path; the wait for it is a metric.
            async fn reader(&self) -> StoreResult<sqlx::pool::PoolConnection<$db>> {
                let started = std::time::Instant::now();
                let conn = self.pool.acquire().await.map_err(map_err)?;
                crate::metrics::db_wait(started.elapsed().as_secs_f64());
                Ok(conn)
            }

            async fn audit_in(
                conn: &mut <$db as sqlx::Database>::Connection,
                a: &AuditRecord,
            ) -> Result<(), sqlx::Error> {
                sqlx::query(INSERT_AUDIT)
                    .bind(a.at)
                    .bind(&a.action)
                    .bind(&a.outcome)
                    .bind(&a.client_id)
                    .bind(&a.software_id)
                    .bind(&a.org_id)
                    .bind(&a.cert_thumbprint)
                    .bind(&a.interaction_id)
                    .bind(&a.error_code)
                    .bind(&a.detail)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            async fn jtis_in(
                conn: &mut <$db as sqlx::Database>::Connection,
                jtis: &[JtiRecord],
            ) -> StoreResult<()> {
                let now = now();
                for (i, j) in jtis.iter().enumerate() {
                    let done = sqlx::query(REMEMBER_JTI)
                        .bind(&j.scope)
                        .bind(&j.jti)
                        .bind(j.expires_at)
                        .bind(now)
                        .execute(&mut *conn)
                        .await
                        .map_err(map_err)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::Conflict(Conflict::Jti(i)));
                    }
                }
                Ok(())
            }
        }

        impl Store for $name {
            async fn migrate(&self) -> StoreResult<()> {
                sqlx::migrate!($migrations)
                    .run(&self.writer)
                    .await
                    .map_err(|e| match e {
                        sqlx::migrate::MigrateError::Execute(e) => StoreError::from_sqlx(e),
                        other => StoreError::Other(other.to_string()),
                    })
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::from_sqlx)?;
                Ok(())
            }

            async fn create_client(
                &self,
                c: &ClientRecord,
                unique_software_id: bool,
                jtis: &[JtiRecord],
                audit: &AuditRecord,
            ) -> StoreResult<()> {
                if let Some(w) = &self.direct {
                    return w.create_client(c, unique_software_id, jtis, audit).await;
                }
                let mut tx = self.writer.begin().await.map_err(map_err)?;
                Self::jtis_in(&mut tx, jtis).await?;
                sqlx::query(INSERT_CLIENT)
                    .bind(&c.client_id)
                    .bind(&c.software_id)
                    .bind(&c.org_id)
                    .bind(&c.metadata)
                    .bind(&c.client_secret_hash)
                    .bind(&c.token_endpoint_auth_method)
                    .bind(&c.tls_client_auth_subject_dn)
                    .bind(&c.jwks_uri)
                    .bind(&c.cert_thumbprint)
                    .bind(c.enabled)
                    .bind(c.created_at)
                    .bind(c.updated_at)
                    .bind(unique_software_id.then_some(&c.software_id))
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                Self::audit_in(&mut tx, audit).await.map_err(map_err)?;
                tx.commit().await.map_err(map_err)
            }

            async fn update_client(
                &self,
                c: &ClientRecord,
                jtis: &[JtiRecord],
                audit: &AuditRecord,
            ) -> StoreResult<bool> {
                if let Some(w) = &self.direct {
                    return w.update_client(c, jtis, audit).await;
                }
                let mut tx = self.writer.begin().await.map_err(map_err)?;
                Self::jtis_in(&mut tx, jtis).await?;
                let done = sqlx::query(UPDATE_CLIENT)
                    .bind(&c.client_id)
                    .bind(&c.org_id)
                    .bind(&c.metadata)
                    .bind(&c.token_endpoint_auth_method)
                    .bind(&c.tls_client_auth_subject_dn)
                    .bind(&c.jwks_uri)
                    .bind(&c.cert_thumbprint)
                    .bind(c.updated_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    // Dropping the transaction rolls the jti rows back too.
                    return Ok(false);
                }
                Self::audit_in(&mut tx, audit).await.map_err(map_err)?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn get_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
                sqlx::query_as::<_, ClientRecord>(SELECT_CLIENT)
                    .bind(client_id)
                    .fetch_optional(&mut *self.reader().await?)
                    .await
                    .map_err(map_err)
            }

            async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
                sqlx::query_as::<_, ClientRecord>(LIST_CLIENTS)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)
            }

            async fn delete_client(
                &self,
                client_id: &str,
                audit: &AuditRecord,
            ) -> StoreResult<bool> {
                if let Some(w) = &self.direct {
                    return w.delete_client(client_id, audit).await;
                }
                let mut tx = self.writer.begin().await.map_err(map_err)?;
                // Tokens first (the foreign key also cascades): no token may outlive its client.
                sqlx::query("DELETE FROM tokens WHERE client_id = $1")
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                let done = sqlx::query("DELETE FROM clients WHERE client_id = $1")
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                Self::audit_in(&mut tx, audit).await.map_err(map_err)?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn set_client_enabled(
                &self,
                client_id: &str,
                enabled: bool,
                audit: &AuditRecord,
            ) -> StoreResult<bool> {
                if let Some(w) = &self.direct {
                    return w.set_client_enabled(client_id, enabled, audit).await;
                }
                let mut tx = self.writer.begin().await.map_err(map_err)?;
                let done = sqlx::query(SET_CLIENT_ENABLED)
                    .bind(client_id)
                    .bind(enabled)
                    .bind(audit.at)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                if !enabled {
                    sqlx::query(REVOKE_CLIENT_TOKENS)
                        .bind(client_id)
                        .bind(true)
                        .bind(false)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                }
                Self::audit_in(&mut tx, audit).await.map_err(map_err)?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn remember_jti(&self, jti: &JtiRecord) -> StoreResult<()> {
                if let Some(w) = &self.direct {
                    return w.remember_jti(jti).await;
                }
                let mut conn = self.writer.acquire().await.map_err(map_err)?;
                Self::jtis_in(&mut conn, std::slice::from_ref(jti)).await
            }

            async fn purge_expired_jtis(&self, now: i64) -> StoreResult<u64> {
                if let Some(w) = &self.direct {
                    return w.purge("jtis", now).await;
                }
                let done = sqlx::query("DELETE FROM jtis WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.writer)
                    .await
                    .map_err(map_err)?;
                Ok(done.rows_affected())
            }

            async fn insert_token(
                &self,
                t: &TokenRecord,
                jtis: &[JtiRecord],
                audit: &AuditRecord,
            ) -> StoreResult<()> {
                if let Some(w) = &self.direct {
                    return w.insert_token(t, jtis, audit).await;
                }
                let mut tx = self.writer.begin().await.map_err(map_err)?;
                Self::jtis_in(&mut tx, jtis).await?;
                sqlx::query(INSERT_TOKEN)
                    .bind(&t.token_hash)
                    .bind(&t.client_id)
                    .bind(&t.scope)
                    .bind(&t.cert_thumbprint)
                    .bind(t.issued_at)
                    .bind(t.expires_at)
                    .bind(t.revoked)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                Self::audit_in(&mut tx, audit).await.map_err(map_err)?;
                tx.commit().await.map_err(map_err)
            }

            async fn find_token(&self, token_hash: &str) -> StoreResult<Option<TokenRecord>> {
                sqlx::query_as::<_, TokenRecord>(SELECT_TOKEN)
                    .bind(token_hash)
                    .fetch_optional(&mut *self.reader().await?)
                    .await
                    .map_err(map_err)
            }

            async fn revoke_token(
                &self,
                token_hash: &str,
                audit: &AuditRecord,
            ) -> StoreResult<bool> {
                if let Some(w) = &self.direct {
                    return w.revoke_token(token_hash, audit).await;
                }
                let mut tx = self.writer.begin().await.map_err(map_err)?;
                let done = sqlx::query(
                    "UPDATE tokens SET revoked = $2 WHERE token_hash = $1 AND revoked = $3",
                )
                .bind(token_hash)
                .bind(true)
                .bind(false)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                Self::audit_in(&mut tx, audit).await.map_err(map_err)?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn purge_expired_tokens(&self, now: i64) -> StoreResult<u64> {
                if let Some(w) = &self.direct {
                    return w.purge("tokens", now).await;
                }
                let done = sqlx::query("DELETE FROM tokens WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.writer)
                    .await
                    .map_err(map_err)?;
                Ok(done.rows_affected())
            }

            async fn append_audit(&self, audit: &AuditRecord) -> StoreResult<()> {
                if let Some(w) = &self.direct {
                    return w.append_audit(audit).await;
                }
                let mut conn = self.writer.acquire().await.map_err(map_err)?;
                Self::audit_in(&mut conn, audit).await.map_err(map_err)
            }

            async fn list_audit(
                &self,
                client_id: Option<&str>,
                since: Option<i64>,
            ) -> StoreResult<Vec<AuditRecord>> {
                sqlx::query_as::<_, AuditRecord>(
                    "SELECT at, action, outcome, client_id, software_id, org_id, \
                     cert_thumbprint, interaction_id, error_code, detail FROM audit_log \
                     WHERE (CAST($1 AS TEXT) IS NULL OR client_id = $1) \
                     AND (CAST($2 AS BIGINT) IS NULL OR at >= $2) ORDER BY id",
                )
                .bind(client_id)
                .bind(since)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)
            }
        }
    };
}

sql_store!(
    SqliteStore,
    sqlx::Sqlite,
    "./migrations/sqlite",
    "The embedded default backend: one SQLite file in WAL mode."
);
sql_store!(
    PostgresStore,
    sqlx::Postgres,
    "./migrations/postgres",
    "The production backend: PostgreSQL, shared by any number of replicas."
);
