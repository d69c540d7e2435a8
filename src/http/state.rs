//! What every request reaches: the config, the store, the registration pipeline, the token
//! policy and the bytes served as they are. Swapped whole by a reload.

use std::sync::Arc;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::extract::FromRef;

use crate::config::Config;
use crate::jose::JwksCache;
use crate::oauth::TokenPolicy;
use crate::registration::{Policy, Registrar};
use crate::store::Database;

/// What every handler can reach. Built once per config; requests share it through an `Arc`.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Database,
    pub registrar: Registrar,
    pub tokens: TokenPolicy,
    /// The TPPs' and directories' key sets, shared by registration and client authentication.
    pub jwks: Arc<JwksCache>,
    /// The discovery document, serialised once.
    pub discovery: Bytes,
    pub sandbox_jwks: Option<SandboxJwks>,
}

/// The sandbox's JWKS documents, served as they are.
#[derive(Clone)]
pub struct SandboxJwks {
    pub tpp: Bytes,
    pub directory: Bytes,
}

impl AppState {
    /// Builds the state. Work that is the same for every request (the discovery document, the
    /// sandbox JWKS) is done here once.
    pub fn new(config: Arc<Config>, store: Database) -> Result<Self> {
        Self::build(config, store, None)
    }

    /// The state for a re-read config: the same database, and the SSA issuers' JWKS files
    /// read again. The JWKS cache keeps what it fetched unless `[open_banking.dcr.jwks]`
    /// changed (its hosts, CAs or limits may have been tightened).
    pub fn reloaded(&self, config: Arc<Config>) -> Result<Self> {
        Self::build(config, self.store.clone(), Some(self))
    }

    fn build(config: Arc<Config>, store: Database, previous: Option<&AppState>) -> Result<Self> {
        let discovery = Bytes::from(serde_json::to_vec(&crate::oauth::discovery::document(
            &config,
        ))?);
        let sandbox_jwks = if config.sandbox_enabled() {
            let dir = &config.sandbox.dir;
            let read = |name: &str| -> Result<Bytes> {
                let path = dir.join(name);
                Ok(Bytes::from(std::fs::read(&path).with_context(|| {
                    format!("sandbox: reading {}", path.display())
                })?))
            };
            Some(SandboxJwks {
                tpp: read("tpp/signing.jwks")?,
                directory: read("directory.jwks")?,
            })
        } else {
            None
        };
        let jwks_config = &config.open_banking.dcr.jwks;
        let http = crate::pki::outbound::http_client(jwks_config)?;
        let mut jwks = JwksCache::new(http.clone(), jwks_config);
        if let Some(previous) = previous
            && previous.config.open_banking.dcr.jwks == *jwks_config
        {
            jwks = jwks.with_entries_of(&previous.jwks);
        }
        let jwks = Arc::new(jwks);
        Ok(Self {
            registrar: Registrar {
                policy: Policy::from_config(&config)?,
                jwks: jwks.clone(),
                http,
            },
            tokens: TokenPolicy::from_config(&config),
            jwks,
            config,
            store,
            discovery,
            sandbox_jwks,
        })
    }
}

/// The router's state: the current [`AppState`], replaced as a whole by a reload. Every
/// request takes the state that is current when it starts, so a reload applies to the next
/// request, on open connections too.
#[derive(Clone)]
pub struct SharedState(Arc<ArcSwap<AppState>>);

impl SharedState {
    pub fn new(state: AppState) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(state)))
    }

    /// The state now.
    pub fn current(&self) -> Arc<AppState> {
        self.0.load_full()
    }

    /// Puts `state` in place for every later request.
    pub fn replace(&self, state: AppState) {
        self.0.store(Arc::new(state));
    }
}

impl FromRef<SharedState> for Arc<AppState> {
    fn from_ref(shared: &SharedState) -> Self {
        shared.current()
    }
}
