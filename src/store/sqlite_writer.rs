//! SQLite's single writer: a thread that owns the one write connection and commits in groups.
//!
//! SQLite allows one writer at a time. Going through sqlx, every statement of a registration is
//! a round trip to a connection thread (five per registration, each two thread wake-ups), and
//! concurrent writers wait in SQLite's sleeping busy handler. Here every write operation is one
//! message to this thread, which runs the operations that are waiting together in one
//! transaction, each inside its own savepoint (so one operation's failure undoes only its own
//! rows), and answers each caller after the COMMIT. Reads stay on the sqlx reader pool (WAL
//! readers do not block the writer).

use std::sync::mpsc;
use std::time::Duration;

use rusqlite::types::ToSql;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::oneshot;

use super::sql::{
    INSERT_AUDIT, INSERT_CLIENT, INSERT_TOKEN, REMEMBER_JTI, REVOKE_CLIENT_TOKENS,
    SET_CLIENT_ENABLED, UPDATE_CLIENT,
};
use super::{AuditRecord, ClientRecord, Conflict, JtiRecord, StoreError, StoreResult, TokenRecord};

/// Operations taken into one transaction at most.
const MAX_GROUP: usize = 256;
/// Operations waiting for the writer at most; beyond that callers wait to enqueue.
const QUEUE: usize = 4096;

type Reply<T> = oneshot::Sender<StoreResult<T>>;

enum Job {
    CreateClient(
        Box<(ClientRecord, bool, Vec<JtiRecord>, AuditRecord)>,
        Reply<()>,
    ),
    UpdateClient(
        Box<(ClientRecord, Vec<JtiRecord>, AuditRecord)>,
        Reply<bool>,
    ),
    DeleteClient(String, Box<AuditRecord>, Reply<bool>),
    SetEnabled(String, bool, Box<AuditRecord>, Reply<bool>),
    RememberJti(JtiRecord, Reply<()>),
    InsertToken(Box<(TokenRecord, Vec<JtiRecord>, AuditRecord)>, Reply<()>),
    RevokeToken(String, Box<AuditRecord>, Reply<bool>),
    AppendAudit(Box<AuditRecord>, Reply<()>),
    Purge(&'static str, i64, Reply<u64>),
}

impl Job {
    /// Whether the caller stopped waiting (its request timed out or was dropped): then the
    /// operation is not run at all, rather than done behind the caller's back.
    fn abandoned(&self) -> bool {
        match self {
            Job::CreateClient(_, r)
            | Job::RememberJti(_, r)
            | Job::InsertToken(_, r)
            | Job::AppendAudit(_, r) => r.is_closed(),
            Job::UpdateClient(_, r)
            | Job::DeleteClient(_, _, r)
            | Job::SetEnabled(_, _, _, r)
            | Job::RevokeToken(_, _, r) => r.is_closed(),
            Job::Purge(_, _, r) => r.is_closed(),
        }
    }
}

/// What an operation produced, before the group commits.
enum Outcome {
    Unit,
    Bool(bool),
    Count(u64),
    /// Undo this operation's rows (its savepoint) and answer `false`.
    UndoFalse,
}

/// The handle callers use; cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteWriter {
    jobs: mpsc::SyncSender<Job>,
}

fn map_err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(code, message) = &e {
        let text = message.clone().unwrap_or_default();
        match code.code {
            ErrorCode::ConstraintViolation if text.contains("software_id_unique") => {
                return StoreError::Conflict(Conflict::SoftwareId);
            }
            ErrorCode::ConstraintViolation if text.contains("clients.client_id") => {
                return StoreError::Conflict(Conflict::ClientId);
            }
            ErrorCode::ConstraintViolation if text.contains("FOREIGN KEY") => {
                return StoreError::Conflict(Conflict::UnknownClient);
            }
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                return StoreError::Busy(text);
            }
            ErrorCode::CannotOpen | ErrorCode::SystemIoFailure | ErrorCode::DiskFull => {
                return StoreError::Unavailable(text);
            }
            _ => {}
        }
    }
    StoreError::Other(e.to_string())
}

/// Parameter names, `$1` to `$16`.
const PARAMS: [&str; 16] = [
    "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15",
    "$16",
];

/// Runs a cached statement whose parameters are named `$1`, `$2`, … in any order.
fn exec(conn: &Connection, sql: &str, values: &[&dyn ToSql]) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached(sql)?;
    for (name, value) in PARAMS.iter().zip(values) {
        if let Some(index) = stmt.parameter_index(name)? {
            stmt.raw_bind_parameter(index, value)?;
        }
    }
    stmt.raw_execute()
}

fn audit_values(a: &AuditRecord) -> [&dyn ToSql; 10] {
    [
        &a.at,
        &a.action,
        &a.outcome,
        &a.client_id,
        &a.software_id,
        &a.org_id,
        &a.cert_thumbprint,
        &a.interaction_id,
        &a.error_code,
        &a.detail,
    ]
}

fn jtis(conn: &Connection, jtis: &[JtiRecord], now: i64) -> StoreResult<()> {
    for (i, j) in jtis.iter().enumerate() {
        let changed =
            exec(conn, REMEMBER_JTI, &[&j.scope, &j.jti, &j.expires_at, &now]).map_err(map_err)?;
        if changed == 0 {
            return Err(StoreError::Conflict(Conflict::Jti(i)));
        }
    }
    Ok(())
}

fn run(conn: &Connection, job: &Job) -> StoreResult<Outcome> {
    let now = crate::clock::now();
    match job {
        Job::CreateClient(args, _) => {
            let (c, unique, js, audit) = args.as_ref();
            jtis(conn, js, now)?;
            let unique_value = unique.then_some(&c.software_id);
            exec(
                conn,
                INSERT_CLIENT,
                &[
                    &c.client_id,
                    &c.software_id,
                    &c.org_id,
                    &c.metadata,
                    &c.client_secret_hash,
                    &c.token_endpoint_auth_method,
                    &c.tls_client_auth_subject_dn,
                    &c.jwks_uri,
                    &c.cert_thumbprint,
                    &c.enabled,
                    &c.created_at,
                    &c.updated_at,
                    &unique_value,
                ],
            )
            .map_err(map_err)?;
            exec(conn, INSERT_AUDIT, &audit_values(audit)).map_err(map_err)?;
            Ok(Outcome::Unit)
        }
        Job::UpdateClient(args, _) => {
            let (c, js, audit) = args.as_ref();
            jtis(conn, js, now)?;
            let changed = exec(
                conn,
                UPDATE_CLIENT,
                &[
                    &c.client_id,
                    &c.org_id,
                    &c.metadata,
                    &c.token_endpoint_auth_method,
                    &c.tls_client_auth_subject_dn,
                    &c.jwks_uri,
                    &c.cert_thumbprint,
                    &c.updated_at,
                ],
            )
            .map_err(map_err)?;
            if changed == 0 {
                // Unknown client: its jtis are undone with the savepoint.
                return Ok(Outcome::UndoFalse);
            }
            exec(conn, INSERT_AUDIT, &audit_values(audit)).map_err(map_err)?;
            Ok(Outcome::Bool(true))
        }
        Job::DeleteClient(client_id, audit, _) => {
            exec(
                conn,
                "DELETE FROM tokens WHERE client_id = $1",
                &[client_id],
            )
            .map_err(map_err)?;
            let changed = exec(
                conn,
                "DELETE FROM clients WHERE client_id = $1",
                &[client_id],
            )
            .map_err(map_err)?;
            if changed == 0 {
                return Ok(Outcome::Bool(false));
            }
            exec(conn, INSERT_AUDIT, &audit_values(audit)).map_err(map_err)?;
            Ok(Outcome::Bool(true))
        }
        Job::SetEnabled(client_id, enabled, audit, _) => {
            let changed = exec(conn, SET_CLIENT_ENABLED, &[client_id, enabled, &audit.at])
                .map_err(map_err)?;
            if changed == 0 {
                return Ok(Outcome::Bool(false));
            }
            if !*enabled {
                exec(conn, REVOKE_CLIENT_TOKENS, &[client_id, &true, &false]).map_err(map_err)?;
            }
            exec(conn, INSERT_AUDIT, &audit_values(audit)).map_err(map_err)?;
            Ok(Outcome::Bool(true))
        }
        Job::RememberJti(j, _) => {
            jtis(conn, std::slice::from_ref(j), now)?;
            Ok(Outcome::Unit)
        }
        Job::InsertToken(args, _) => {
            let (t, js, audit) = args.as_ref();
            jtis(conn, js, now)?;
            exec(
                conn,
                INSERT_TOKEN,
                &[
                    &t.token_hash,
                    &t.client_id,
                    &t.scope,
                    &t.cert_thumbprint,
                    &t.issued_at,
                    &t.expires_at,
                    &t.revoked,
                ],
            )
            .map_err(map_err)?;
            exec(conn, INSERT_AUDIT, &audit_values(audit)).map_err(map_err)?;
            Ok(Outcome::Unit)
        }
        Job::RevokeToken(hash, audit, _) => {
            let changed = exec(
                conn,
                "UPDATE tokens SET revoked = $2 WHERE token_hash = $1 AND revoked = $3",
                &[hash, &true, &false],
            )
            .map_err(map_err)?;
            if changed == 0 {
                return Ok(Outcome::Bool(false));
            }
            exec(conn, INSERT_AUDIT, &audit_values(audit)).map_err(map_err)?;
            Ok(Outcome::Bool(true))
        }
        Job::AppendAudit(audit, _) => {
            exec(conn, INSERT_AUDIT, &audit_values(audit)).map_err(map_err)?;
            Ok(Outcome::Unit)
        }
        Job::Purge(table, before, _) => {
            let sql = match *table {
                "jtis" => "DELETE FROM jtis WHERE expires_at <= $1",
                _ => "DELETE FROM tokens WHERE expires_at <= $1",
            };
            Ok(Outcome::Count(
                exec(conn, sql, &[before]).map_err(map_err)? as u64
            ))
        }
    }
}

/// Sends each job its result.
fn answer(job: Job, result: StoreResult<Outcome>) {
    // A caller that gave up (its request timed out) is not an error here.
    match job {
        Job::CreateClient(_, reply)
        | Job::RememberJti(_, reply)
        | Job::InsertToken(_, reply)
        | Job::AppendAudit(_, reply) => {
            let _ = reply.send(result.map(|_| ()));
        }
        Job::UpdateClient(_, reply)
        | Job::DeleteClient(_, _, reply)
        | Job::SetEnabled(_, _, _, reply)
        | Job::RevokeToken(_, _, reply) => {
            let _ = reply.send(result.map(|o| matches!(o, Outcome::Bool(true))));
        }
        Job::Purge(_, _, reply) => {
            let _ = reply.send(result.map(|o| match o {
                Outcome::Count(n) => n,
                _ => 0,
            }));
        }
    }
}

fn copy_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::Conflict(c) => StoreError::Conflict(*c),
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Busy(m) => StoreError::Busy(m.clone()),
        StoreError::Other(m) => StoreError::Other(m.clone()),
    }
}

/// Runs a transaction-control statement from the statement cache (not re-parsed each time).
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn writer_loop(conn: Connection, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        group.retain(|job| !job.abandoned());
        if group.is_empty() {
            continue;
        }
        if let Err(e) = control(&conn, "BEGIN IMMEDIATE") {
            let e = map_err(e);
            for job in group {
                answer(job, Err(copy_err(&e)));
            }
            continue;
        }
        let mut results = Vec::with_capacity(group.len());
        for job in &group {
            let result = control(&conn, "SAVEPOINT op")
                .map_err(map_err)
                .and_then(|()| run(&conn, job));
            let undo = match result {
                Err(_) | Ok(Outcome::UndoFalse) => {
                    control(&conn, "ROLLBACK TO op").and_then(|()| control(&conn, "RELEASE op"))
                }
                Ok(_) => control(&conn, "RELEASE op"),
            };
            if let Err(e) = undo {
                tracing::warn!(error = %e, "savepoint cleanup failed");
            }
            results.push(result);
        }
        match control(&conn, "COMMIT") {
            Ok(()) => {
                for (job, result) in group.into_iter().zip(results) {
                    answer(job, result);
                }
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                let e = map_err(e);
                tracing::warn!(error = %e, "group commit failed");
                for job in group {
                    answer(job, Err(copy_err(&e)));
                }
            }
        }
    }
}

impl SqliteWriter {
    /// Opens the write connection on `path` and starts the writer thread.
    pub fn start(path: &std::path::Path, busy_timeout: Duration) -> StoreResult<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(map_err)?;
        conn.busy_timeout(busy_timeout).map_err(map_err)?;
        // Per-connection settings, as on the sqlx connections.
        conn.execute_batch(
            // The writer touches every index of every table: give it 32 MiB of page cache
            // (SQLite's default is 2 MiB), so that a large registry's index pages stay in memory.
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
             PRAGMA cache_size = -32768;",
        )
        .map_err(map_err)?;
        conn.set_prepared_statement_cache_capacity(32);
        let (jobs, rx) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| StoreError::Other(format!("cannot start the SQLite writer: {e}")))?;
        Ok(Self { jobs })
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Job) -> StoreResult<T> {
        let (tx, rx) = oneshot::channel();
        let job = make(tx);
        // The queue is bounded; wait for room off the async workers.
        let jobs = self.jobs.clone();
        match jobs.try_send(job) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(job)) => {
                tokio::task::spawn_blocking(move || jobs.send(job))
                    .await
                    .map_err(|_| StoreError::Unavailable("the SQLite writer is gone".into()))?
                    .map_err(|_| StoreError::Unavailable("the SQLite writer is gone".into()))?;
            }
            Err(mpsc::TrySendError::Disconnected(_)) => {
                return Err(StoreError::Unavailable("the SQLite writer is gone".into()));
            }
        }
        rx.await
            .map_err(|_| StoreError::Unavailable("the SQLite writer is gone".into()))?
    }

    pub async fn create_client(
        &self,
        c: &ClientRecord,
        unique: bool,
        jtis: &[JtiRecord],
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let args = Box::new((c.clone(), unique, jtis.to_vec(), audit.clone()));
        self.call(|r| Job::CreateClient(args, r)).await
    }

    pub async fn update_client(
        &self,
        c: &ClientRecord,
        jtis: &[JtiRecord],
        audit: &AuditRecord,
    ) -> StoreResult<bool> {
        let args = Box::new((c.clone(), jtis.to_vec(), audit.clone()));
        self.call(|r| Job::UpdateClient(args, r)).await
    }

    pub async fn delete_client(&self, client_id: &str, audit: &AuditRecord) -> StoreResult<bool> {
        let (id, audit) = (client_id.to_string(), Box::new(audit.clone()));
        self.call(|r| Job::DeleteClient(id, audit, r)).await
    }

    pub async fn set_client_enabled(
        &self,
        client_id: &str,
        enabled: bool,
        audit: &AuditRecord,
    ) -> StoreResult<bool> {
        let (id, audit) = (client_id.to_string(), Box::new(audit.clone()));
        self.call(|r| Job::SetEnabled(id, enabled, audit, r)).await
    }

    pub async fn remember_jti(&self, jti: &JtiRecord) -> StoreResult<()> {
        let jti = jti.clone();
        self.call(|r| Job::RememberJti(jti, r)).await
    }

    pub async fn insert_token(
        &self,
        t: &TokenRecord,
        jtis: &[JtiRecord],
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let args = Box::new((t.clone(), jtis.to_vec(), audit.clone()));
        self.call(|r| Job::InsertToken(args, r)).await
    }

    pub async fn revoke_token(&self, hash: &str, audit: &AuditRecord) -> StoreResult<bool> {
        let (hash, audit) = (hash.to_string(), Box::new(audit.clone()));
        self.call(|r| Job::RevokeToken(hash, audit, r)).await
    }

    pub async fn append_audit(&self, audit: &AuditRecord) -> StoreResult<()> {
        let audit = Box::new(audit.clone());
        self.call(|r| Job::AppendAudit(audit, r)).await
    }

    pub async fn purge(&self, table: &'static str, now: i64) -> StoreResult<u64> {
        self.call(|r| Job::Purge(table, now, r)).await
    }
}
