//! `[sandbox]`: the generated sandbox PKI (see `dcr-server sandbox init`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct SandboxConfig {
    /// `true`: `serve` creates the sandbox when it is missing and serves the sandbox TPP's
    /// JWKS. When unset, the sandbox is on exactly when a configured file lies inside `dir`.
    pub enable: Option<bool>,
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            enable: None,
            dir: default_dir(),
        }
    }
}

fn default_dir() -> PathBuf {
    PathBuf::from("certs/sandbox")
}
