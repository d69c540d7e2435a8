//! The embedded default backend: one SQLite file in WAL mode. Reads and migrations go through
//! sqlx ([`read`]), writes through one rusqlite writer thread with group commit ([`write`]).

mod read;
mod write;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

use crate::config::DatabaseConfig;
use crate::store::error::{StoreError, StoreResult};

pub(in crate::store) use read::Reader;
pub(in crate::store) use write::SqliteWriter;

#[derive(Clone, Debug)]
pub(in crate::store) struct SqliteStore {
    pub(in crate::store) read: Reader,
    pub(in crate::store) write: SqliteWriter,
}

impl SqliteStore {
    /// Opens (and first creates, mode 0600, with its directory) the file `config.url` names.
    pub(in crate::store) async fn connect(config: &DatabaseConfig) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(config.url.expose())
            .map_err(|e| StoreError::Other(format!("database.url: {e}")))?;
        let file = options.get_filename().to_path_buf();
        if file.as_os_str().is_empty() || file.to_string_lossy().contains(":memory:") {
            return Err(StoreError::Other(
                "database.url: an in-memory SQLite database is not supported; name a file".into(),
            ));
        }
        create_file(&file)?;
        let busy_timeout = Duration::from_millis(config.sqlite_busy_timeout_ms);
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL survives a process crash (kill -9); only a power loss can lose the
            // last commits.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(busy_timeout);
        let read = Reader::connect(
            &file,
            options,
            config.max_connections,
            Duration::from_millis(config.acquire_timeout_ms),
        )
        .await?;
        let write = SqliteWriter::start(&file, busy_timeout)?;
        Ok(Self { read, write })
    }
}

/// Creates the SQLite file with mode 0600 before SQLite does (SQLite would use 0644): it holds
/// secret hashes and token hashes.
fn create_file(path: &Path) -> StoreResult<()> {
    let name = path.to_string_lossy();
    if name.is_empty() || name == ":memory:" || path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Other(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Other(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}
