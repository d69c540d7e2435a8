//! The composition root: builds the running server from a config (sandbox, TLS material,
//! database, state, router, listener) and reloads it on SIGHUP.

mod behind;
pub mod crl_refresh;
pub mod deliveries;
pub mod jobs;
pub mod reload;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use axum::Router;

use crate::config::Config;
use crate::http::{AppState, SharedState};
use crate::material::Material;
use crate::net::Transport;
use crate::net::listener::{Limits, Listener};
use crate::pki::crl::CrlUrls;
use reload::Reloader;

/// A bound, ready-to-run server.
pub struct Server {
    listener: Listener,
    /// The admin API's listener, when `admin.listen` is set.
    admin: Option<Listener>,
    reloader: Reloader,
}

/// Creates the sandbox when it is missing; otherwise makes sure its server certificate names
/// the issuer's host (a sandbox made for another `DCR_ISSUER` gets a new one, and only that).
fn prepare_sandbox(config: &Config) -> Result<()> {
    let dir = &config.sandbox.dir;
    if !crate::sandbox::exists(dir) {
        tracing::info!(dir = %dir.display(), "creating the sandbox PKI");
        crate::sandbox::init(dir, config.server.issuer.as_str())?;
        return Ok(());
    }
    match crate::sandbox::ensure_server_certificate(dir, config.issuer_base()) {
        Ok(crate::sandbox::ServerCertificate::Kept) => {}
        Ok(crate::sandbox::ServerCertificate::Renewed { added, names }) => tracing::warn!(
            dir = %dir.display(),
            added = %added,
            names = %names.join(", "),
            "the sandbox's server certificate did not name the issuer's host: issued a new one from the sandbox CA (the CA, the directory and the TPP are unchanged)"
        ),
        // The old certificate still serves localhost: start with it.
        Err(e) => tracing::warn!(
            dir = %dir.display(),
            error = %format!("{e:#}"),
            "the sandbox's server certificate does not name the issuer's host and could not be renewed"
        ),
    }
    Ok(())
}

impl Server {
    /// Prepares everything that can fail (sandbox, TLS files, database, migrations, the
    /// listening socket) so that `run` only serves.
    pub async fn bind(config: Config, extra_routes: Router<SharedState>) -> Result<Self> {
        crate::pki::tls::install_default_provider();
        if config.sandbox_enabled() {
            prepare_sandbox(&config)?;
        }
        crate::metrics::install();
        // The files first (a URL's CRL is checked against the CRL issuers they name), then the
        // URL CRLs, so that the first handshake already has them; a URL that cannot be fetched
        // (or whose CRL is refused) is retried in the background, and judged stale until then.
        let crls = CrlUrls::new();
        let material = Material::load(&config, &crls)?;
        let crl_client = crate::pki::crl_fetch::client(&config)?;
        let issuers = material.tls.crl_issuers().clone();
        crate::pki::crl_fetch::fetch_due(&config, &crls, &crl_client, &issuers).await;
        // Only the URL CRLs are new: the verifier is rebuilt, no file is read again.
        let material = material.with_url_crls(&crls)?;
        for warning in config.warnings() {
            tracing::warn!(%warning, "config");
        }
        let transport = Arc::new(ArcSwap::from_pointee(Transport::new(&config, &material)));
        let store = crate::store::open_waiting(&config).await?;
        let config = Arc::new(config);
        let state = SharedState::new(AppState::new(config.clone(), store.clone(), &material));
        let admin_transport =
            Transport::admin(&config, &material).map(|t| Arc::new(ArcSwap::from_pointee(t)));
        let mut reloader = Reloader::new(state.clone(), transport.clone(), crls.clone(), material);
        if let Some(admin) = &admin_transport {
            reloader = reloader.with_admin(admin.clone());
        }
        let server = &config.server;
        let limits = Limits {
            request_timeout: Duration::from_millis(server.request_timeout_ms),
            max_header_bytes: server.max_header_bytes,
            max_connections: server.max_connections,
            shutdown_grace: Duration::from_secs(server.shutdown_grace_secs),
        };
        let router = crate::http::router::app(state.clone(), extra_routes, limits.request_timeout);
        let listener = Listener::bind("tpp", server.listen, transport, router, limits)
            .await
            .with_context(|| format!("server.listen = {}: cannot bind", server.listen))?;
        let admin = match (config.admin.listen, admin_transport) {
            (Some(addr), Some(transport)) => {
                let router = crate::http::admin::app(state.clone(), limits.request_timeout);
                let listener = Listener::bind("admin", addr, transport, router, limits)
                    .await
                    .with_context(|| format!("admin.listen = {addr}: cannot bind"))?;
                tracing::info!(addr = %listener.local_addr(), "admin API listening");
                Some(listener)
            }
            _ => None,
        };
        jobs::spawn_purger(store, reloader.clone());
        jobs::spawn_limit_sweeper(state.clone());
        deliveries::spawn(state.clone());
        behind::spawn(state);
        crl_refresh::spawn(reloader.clone(), crls, crl_client);
        Ok(Self {
            listener,
            admin,
            reloader,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// The handle that reloads this server's config and TLS material (SIGHUP uses it).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Serves until `shutdown` resolves, then lets open requests finish (up to the grace
    /// period).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let Some(admin) = self.admin else {
            self.listener.run(shutdown).await;
            return Ok(());
        };
        // One shutdown for both listeners.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let public = self.listener.run(wait(stopped.clone()));
        let admin = admin.run(wait(stopped));
        let signal = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        tokio::join!(public, admin, signal);
        Ok(())
    }

    /// The admin listener's address, when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(Listener::local_addr)
    }
}
