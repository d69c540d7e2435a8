//! SQLite's single writer: a thread that owns the one write connection and commits in groups.
//!
//! SQLite allows one writer at a time. Going through sqlx, every statement of a registration is
//! a round trip to a connection thread (five per registration, each two thread wake-ups), and
//! concurrent writers wait in SQLite's sleeping busy handler. Here every write unit is one
//! message to this thread, which runs the units that are waiting together in one transaction,
//! each inside its own savepoint (so one unit's failure undoes only its own rows), and answers
//! each caller after the COMMIT. A unit that waits alone, or one that can change many rows (a
//! purge, a client's tokens), is a transaction of its own, without a savepoint. Reads stay off
//! this thread (`read.rs`; WAL readers do not block the writer).

use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::oneshot;

use crate::store::error::{StoreError, StoreResult};
use crate::store::schema;
use crate::store::unit::{self, Execute, Outcome, Param, Statement, WriteUnit};

/// Units taken into one transaction at most.
const MAX_GROUP: usize = 256;
/// Units waiting for the writer at most; beyond that callers wait to enqueue.
const QUEUE: usize = 4096;

/// One unit and its caller. Shared (with the caller's retries) so that a queue slot stays one
/// pointer wide and the unit is never copied.
struct Job {
    unit: Arc<WriteUnit>,
    reply: oneshot::Sender<StoreResult<Outcome>>,
}

impl Job {
    /// Whether the caller stopped waiting (its request timed out or was dropped): then the
    /// unit is not run at all, rather than done behind the caller's back.
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    fn answer(self, result: StoreResult<Outcome>) {
        // A caller that gave up (its request timed out) is not an error here.
        let _ = self.reply.send(result);
    }
}

/// The handle callers use; cheap to clone.
#[derive(Clone, Debug)]
pub(in crate::store) struct SqliteWriter {
    jobs: mpsc::SyncSender<Job>,
}

pub(super) fn map_err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(code, message) = &e {
        let text = message.as_deref().unwrap_or_default();
        if let Some(conflict) = schema::sqlite_conflict(code.extended_code, text) {
            return StoreError::Conflict(conflict);
        }
        match code.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                return StoreError::Busy(text.to_string());
            }
            ErrorCode::CannotOpen | ErrorCode::SystemIoFailure | ErrorCode::DiskFull => {
                return StoreError::Unavailable(text.to_string());
            }
            _ => {}
        }
    }
    StoreError::Other(e.to_string())
}

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Param::Text(v) | Param::OptText(Some(v)) => ValueRef::Text(v.as_bytes()),
            Param::OptText(None) => ValueRef::Null,
            Param::Int(v) | Param::OptInt(Some(v)) => ValueRef::Integer(v),
            Param::OptInt(None) => ValueRef::Null,
            Param::Bool(v) => ValueRef::Integer(v.into()),
        }))
    }
}

/// Parameter names, `$1` to `$17`.
const PARAMS: [&str; 17] = [
    "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15",
    "$16", "$17",
];

/// The write connection, as a unit's statement runner.
struct Exec<'c>(&'c Connection);

impl Execute for Exec<'_> {
    /// Runs a cached statement. SQLite numbers `$N` parameters by first appearance (UPDATE
    /// statements name `$1` last), so each is bound by its name. A statement that returns the
    /// id it inserted is stepped as a query, and answers that id.
    fn exec(&mut self, s: &Statement<'_>) -> StoreResult<u64> {
        let run = || -> rusqlite::Result<u64> {
            let mut stmt = self.0.prepare_cached(s.sqlite_sql)?;
            for (name, value) in PARAMS.iter().zip(s.params()) {
                if let Some(index) = stmt.parameter_index(name)? {
                    stmt.raw_bind_parameter(index, value)?;
                }
            }
            if s.returns_id() {
                let mut rows = stmt.raw_query();
                let row = rows.next()?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
                let id: i64 = row.get(0)?;
                return u64::try_from(id)
                    .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, id));
            }
            stmt.raw_execute().map(|n| n as u64)
        };
        run().map_err(map_err)
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
        let (alone, group): (Vec<Job>, Vec<Job>) = group
            .into_iter()
            .partition(|job| job.unit.changes_many_rows());
        if !group.is_empty() {
            commit(&conn, group);
        }
        for job in alone {
            commit(&conn, vec![job]);
        }
    }
}

/// Runs one unit inside its own savepoint, so that its failure undoes only its own rows.
fn run_in_savepoint(conn: &Connection, job: &Job) -> StoreResult<Outcome> {
    let result = control(conn, "SAVEPOINT op")
        .map_err(map_err)
        .and_then(|()| unit::run(&mut Exec(conn), &job.unit, crate::clock::now()));
    let undo = match result {
        Ok(outcome) if outcome.commits() => control(conn, "RELEASE op"),
        _ => control(conn, "ROLLBACK TO op").and_then(|()| control(conn, "RELEASE op")),
    };
    if let Err(e) = undo {
        tracing::warn!(error = %e, "savepoint cleanup failed");
    }
    result
}

/// Runs the units of `group` in one transaction and answers each caller after it ends.
/// Units that share the transaction each run in a savepoint; a unit alone runs without one
/// (a ROLLBACK undoes it), since a savepoint's journal holds the old copy of every page its
/// unit changes.
fn commit(conn: &Connection, group: Vec<Job>) {
    if let Err(e) = control(conn, "BEGIN IMMEDIATE") {
        let e = map_err(e);
        for job in group {
            job.answer(Err(e.clone()));
        }
        return;
    }
    let results: Vec<_> = match group.as_slice() {
        [job] => vec![unit::run(&mut Exec(conn), &job.unit, crate::clock::now())],
        jobs => jobs.iter().map(|job| run_in_savepoint(conn, job)).collect(),
    };
    let keep = group.len() > 1 || matches!(results[..], [Ok(outcome)] if outcome.commits());
    let end = control(conn, if keep { "COMMIT" } else { "ROLLBACK" });
    if let Err(e) = &end {
        // A failed COMMIT leaves the transaction open: nothing of it is kept.
        let _ = conn.execute_batch("ROLLBACK");
        tracing::warn!(error = %e, "ending a write transaction failed");
    }
    let end = end.map_err(map_err);
    for (job, result) in group.into_iter().zip(results) {
        // A unit that failed keeps its own error; the others get the COMMIT's.
        job.answer(result.and_then(|outcome| end.clone().map(|()| outcome)));
    }
}

fn gone() -> StoreError {
    StoreError::Unavailable("the SQLite writer is gone".into())
}

impl SqliteWriter {
    /// Opens the write connection on `path` and starts the writer thread.
    pub(in crate::store) fn start(path: &Path, busy_timeout: Duration) -> StoreResult<Self> {
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
            // A savepoint journals the old copy of every page its unit changes. In a temp file
            // (SQLite spills it there past 64 KiB: a registration's 16 pages do) that was two
            // pwrites per page, most of the writer's system calls; in memory it is a copy,
            // dropped at each RELEASE, and the units that could make it large run without one.
            // Crash recovery never reads it (the WAL does that): durability is as before.
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
             PRAGMA cache_size = -32768; PRAGMA temp_store = MEMORY;",
        )
        .map_err(map_err)?;
        // Room for every statement in `schema` and the transaction controls.
        conn.set_prepared_statement_cache_capacity(48);
        let (jobs, rx) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| StoreError::Other(format!("cannot start the SQLite writer: {e}")))?;
        Ok(Self { jobs })
    }

    /// Runs `unit` in the next group commit and waits for the COMMIT.
    pub(in crate::store) async fn write(&self, unit: Arc<WriteUnit>) -> StoreResult<Outcome> {
        let (reply, answer) = oneshot::channel();
        let job = Job { unit, reply };
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(job)) => {
                // The queue is bounded; wait for room off the async workers.
                let jobs = self.jobs.clone();
                tokio::task::spawn_blocking(move || jobs.send(job))
                    .await
                    .map_err(|_| gone())?
                    .map_err(|_| gone())?;
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(gone()),
        }
        answer.await.map_err(|_| gone())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::error::Conflict;
    use rusqlite::ffi;

    #[test]
    fn constraint_failures_by_code_and_column() {
        let unique = "UNIQUE constraint failed: clients.software_id_unique";
        assert_eq!(
            schema::sqlite_conflict(ffi::SQLITE_CONSTRAINT_UNIQUE, unique),
            Some(Conflict::SoftwareId)
        );
        let pk = "UNIQUE constraint failed: clients.client_id";
        assert_eq!(
            schema::sqlite_conflict(ffi::SQLITE_CONSTRAINT_PRIMARYKEY, pk),
            Some(Conflict::ClientId)
        );
        // Another table's key, or a column that merely contains the name, is no conflict.
        for other in [
            "UNIQUE constraint failed: tokens.token_hash",
            "UNIQUE constraint failed: tokens.client_id",
            "UNIQUE constraint failed: clients.client_id_x",
        ] {
            assert_eq!(
                schema::sqlite_conflict(ffi::SQLITE_CONSTRAINT_PRIMARYKEY, other),
                None
            );
        }
        assert_eq!(
            schema::sqlite_conflict(
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY,
                "FOREIGN KEY constraint failed"
            ),
            Some(Conflict::UnknownClient)
        );
        // The code decides: a NOT NULL failure naming the column is not a key conflict.
        assert_eq!(
            schema::sqlite_conflict(
                ffi::SQLITE_CONSTRAINT_NOTNULL,
                "NOT NULL constraint failed: clients.client_id"
            ),
            None
        );
    }
}
