//! What a storage call can fail with. A leaf module: every other store module may use it.

/// What a unique key or a foreign key refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Conflict {
    /// The `jti` at this index of the given list was seen before and has not expired.
    Jti(usize),
    /// A client already holds this software_id.
    SoftwareId,
    /// The client_id exists already.
    ClientId,
    /// The client that a token refers to does not exist (any more).
    UnknownClient,
}

/// A storage failure. The public side of the server turns these into 503 or 400; the detail
/// is for the log only. Clone, because the SQLite writer answers every caller of a failed
/// group commit with the same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A unique key refused the write; nothing was written.
    #[error("conflict: {0:?}")]
    Conflict(Conflict),
    /// The database cannot be reached or is shutting down; retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database is busy (SQLite lock contention) beyond the busy timeout.
    #[error("database busy: {0}")]
    Busy(String),
    /// Anything else; a bug or a broken schema.
    #[error("database error: {0}")]
    Other(String),
}

impl StoreError {
    /// Whether the caller should answer 503 and let the client retry.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Busy(_))
    }

    /// Maps an sqlx error, either engine, without looking at constraints (the backends do
    /// that first, where it matters).
    pub(super) fn from_sqlx(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(e.to_string()),
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                // SQLite: 5 SQLITE_BUSY, 6 SQLITE_LOCKED (and their extended codes).
                // PostgreSQL: class 08 connection exceptions, 57P0x shutdown/crash.
                if ["5", "6", "261", "262", "517"].contains(&code.as_ref()) {
                    Self::Busy(db.message().to_string())
                } else if code.starts_with("08") || code.starts_with("57P") {
                    Self::Unavailable(db.message().to_string())
                } else {
                    Self::Other(db.message().to_string())
                }
            }
            _ => Self::Other(e.to_string()),
        }
    }

    pub(super) fn from_migrate(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::Execute(e) => Self::from_sqlx(e),
            other => Self::Other(other.to_string()),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
