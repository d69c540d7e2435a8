//! The composition root: builds the running server from a config (sandbox, TLS material,
//! database, state, router, listener) and reloads it on SIGHUP.

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

impl Server {
    /// Prepares everything that can fail (sandbox, TLS files, database, migrations, the
    /// listening socket) so that `run` only serves.
    pub async fn bind(config: Config, extra_routes: Router<SharedState>) -> Result<Self> {
        crate::pki::tls::install_default_provider();
        if config.sandbox_enabled() && !crate::sandbox::exists(&config.sandbox.dir) {
            tracing::info!(dir = %config.sandbox.dir.display(), "creating the sandbox PKI");
            crate::sandbox::init(&config.sandbox.dir, config.server.issuer.as_str())?;
        }
        crate::metrics::install();
        // URL CRLs first, so that the first handshake already has them; a URL that cannot be
        // fetched is retried in the background (and judged stale until then).
        let crls = CrlUrls::new();
        let crl_client = crate::pki::crl_fetch::client(&config)?;
        crate::pki::crl_fetch::fetch_due(&config, &crls, &crl_client).await;
        let material = Material::load(&config, &crls)?;
        for warning in config.warnings() {
            tracing::warn!(%warning, "config");
        }
        let transport = Arc::new(ArcSwap::from_pointee(Transport::new(&config, &material)));
        let store = crate::store::open(&config).await?;
        let config = Arc::new(config);
        let state = SharedState::new(AppState::new(config.clone(), store.clone(), &material));
        let admin_transport =
            Transport::admin(&config, &material).map(|t| Arc::new(ArcSwap::from_pointee(t)));
        let mut reloader = Reloader::new(state.clone(), transport.clone(), crls.clone());
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
        deliveries::spawn(state);
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
