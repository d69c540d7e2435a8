//! `[database]`: the store and its pool.

use serde::{Deserialize, Serialize};

use super::error::{Checker, ConfigError};
use super::types::DatabaseUrl;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
    #[serde(default = "defaults::pool_size")]
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before it gets a 503.
    #[serde(default = "defaults::acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// SQLite only: how long a write waits for another writer's lock before it gets a 503.
    #[serde(default = "defaults::sqlite_busy_timeout_ms")]
    pub sqlite_busy_timeout_ms: u64,
    /// How long `serve` keeps trying to reach the database at start before it gives up.
    #[serde(default = "defaults::startup_timeout_secs")]
    pub startup_timeout_secs: u64,
}

impl DatabaseConfig {
    pub(super) fn check(&self, c: &Checker<'_>) -> Result<(), ConfigError> {
        c.at_least("database.max_connections", self.max_connections as usize, 1)
    }
}

mod defaults {
    pub fn pool_size() -> u32 {
        10
    }
    pub fn acquire_timeout_ms() -> u64 {
        5_000
    }
    pub fn sqlite_busy_timeout_ms() -> u64 {
        5_000
    }
    pub fn startup_timeout_secs() -> u64 {
        60
    }
}
