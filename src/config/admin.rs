//! `[admin]`: the admin API on a listener of its own, for the bank's service desk. Off unless
//! `listen` is set; admins authenticate with client certificates.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::{Checker, ConfigError};
use crate::domain::DistinguishedName;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct AdminConfig {
    /// Where the admin API listens; unset: no admin API.
    pub listen: Option<SocketAddr>,
    /// Trust anchors of admin client certificates (not the TPPs' `server.tls.client_ca`).
    #[serde(default)]
    pub client_ca: Vec<PathBuf>,
    /// Subject DNs (RFC 4514) of allowed admin certificates, compared as RDN sets.
    #[serde(default)]
    pub allowed_subjects: Vec<DistinguishedName>,
    /// `x5t#S256` values of allowed admin certificates.
    #[serde(default)]
    pub allowed_thumbprints: Vec<String>,
    /// `true`: `/metrics` is served on the admin listener, and no longer on the public one.
    #[serde(default)]
    pub metrics: bool,
}

impl AdminConfig {
    pub fn enabled(&self) -> bool {
        self.listen.is_some()
    }

    pub(super) fn check(&self, c: &Checker<'_>) -> Result<(), ConfigError> {
        if self.enabled() && self.client_ca.is_empty() {
            return Err(c.bad(
                "admin.client_ca",
                "the admin API needs at least one trust anchor for admin certificates",
            ));
        }
        if self.metrics && !self.enabled() {
            return Err(c.bad(
                "admin.metrics",
                "needs admin.listen (else /metrics would be served nowhere)",
            ));
        }
        Ok(())
    }
}
