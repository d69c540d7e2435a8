//! Live reload on SIGHUP.
//!
//! A reload reads the config file again, and with it the TLS certificate and key, `client_ca`,
//! `crl_issuers`, the CRL files and the SSA issuers' JWKS files. Everything is loaded first
//! and swapped in only when all of it loads: a broken file keeps the old material, with an
//! error in the log. A reload also lets each CRL URL take its next CRL from another trusted
//! issuer (`CrlUrls::reloading`): that is how an operator moves a URL to another CA. New
//! connections use the new TLS material; open connections stay open, and their next request
//! sees the new config and has its client certificate checked again against the new
//! `client_ca` and CRLs.
//!
//! Keys that shape the listener, the connection limits, the database pool or the sandbox (see
//! [`RESTART_ONLY`]) take effect only after a restart; a reload keeps their running values and
//! says so.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::config::{Config, ConfigError};
use crate::http::SharedState;
use crate::material::{Material, MaterialError};
use crate::net::Transport;
use crate::pki::crl::CrlUrls;
use crate::pki::crl_check::CrlIssuers;
use crate::pki::crl_fetch;
use crate::pki::tls::TlsError;

/// Why a reload was refused. Nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The config file does not read, parse or check.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A TLS file (certificate, key, `client_ca`, CRL, `jwks.extra_ca`) is missing or does
    /// not parse.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Something else the config names (an SSA issuer's JWKS file, the sandbox JWKS) could
    /// not be loaded.
    #[error(transparent)]
    Material(MaterialError),
    /// The file adds or removes the admin listener in a way only a restart can apply.
    #[error("`{key}`: {message}")]
    NeedsRestart {
        key: &'static str,
        message: &'static str,
    },
    /// The reload's blocking task did not finish (it panicked or the runtime is stopping).
    #[error("the reload task did not finish: {0}")]
    Task(String),
}

impl From<MaterialError> for ReloadError {
    fn from(e: MaterialError) -> Self {
        match e {
            MaterialError::Tls(e) => Self::Tls(e),
            other => Self::Material(other),
        }
    }
}

/// Declares the keys that a reload does not apply, once: the list and the function that keeps
/// their running values come from the same names.
macro_rules! restart_only {
    ($($section:ident . $key:ident),* $(,)?) => {
        /// The keys that a reload does not apply, as named in `deployment.toml`.
        pub const RESTART_ONLY: &[&str] =
            &[$(concat!(stringify!($section), ".", stringify!($key))),*];

        /// Sets in `new` the running values of the [`RESTART_ONLY`] keys, and names those that
        /// the file changed.
        pub fn keep_restart_only(running: &Config, new: &mut Config) -> Vec<&'static str> {
            let mut changed = Vec::new();
            $(
                if new.$section.$key != running.$section.$key {
                    changed.push(concat!(stringify!($section), ".", stringify!($key)));
                    new.$section.$key = running.$section.$key.clone();
                }
            )*
            changed
        }
    };
}

restart_only!(
    server.listen,
    server.shutdown_grace_secs,
    server.max_header_bytes,
    server.request_timeout_ms,
    server.max_connections,
    database.url,
    database.max_connections,
    database.acquire_timeout_ms,
    database.sqlite_busy_timeout_ms,
    database.startup_timeout_secs,
    sandbox.enable,
    sandbox.dir,
    admin.listen,
    authorization_server.mode,
);

/// Refuses a reload that would start or stop the admin listener's duties without the
/// listener: `admin.listen` needs a restart, so removing `[admin]` would leave the listener
/// running without its trust anchors and allow-lists, and adding it with `admin.metrics` would
/// take `/metrics` off the public listener while no admin listener serves it.
fn admin_listener_unchanged(running: &Config, new: &Config) -> Result<(), ReloadError> {
    match (running.admin.enabled(), new.admin.enabled()) {
        (true, false) => Err(ReloadError::NeedsRestart {
            key: "admin",
            message: "the file no longer has the admin listener (admin.listen), which only a \
                      restart removes; restart, or keep [admin] until then",
        }),
        (false, true) if new.admin.metrics => Err(ReloadError::NeedsRestart {
            key: "admin.metrics",
            message: "/metrics would move to the admin listener, which only a restart starts \
                      (admin.listen); restart, or set admin.metrics = false until then",
        }),
        _ => Ok(()),
    }
}

/// A reload that was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Keys the file changed that need a restart; their running values were kept.
    pub restart_needed: Vec<&'static str>,
}

/// Replaces the running server's material. Cheap to clone; every clone drives the same server.
#[derive(Clone)]
pub struct Reloader {
    state: SharedState,
    transport: Arc<ArcSwap<Transport>>,
    /// The admin listener's transport, when there is an admin listener.
    admin_transport: Option<Arc<ArcSwap<Transport>>>,
    /// The URL CRLs as last fetched (`app/crl_refresh.rs` keeps them current).
    crls: Arc<CrlUrls>,
    /// The material in use: a CRL refresh rebuilds the transport from it.
    material: Arc<Mutex<Arc<Material>>>,
    /// One reload at a time: two SIGHUPs in a row must not interleave their swaps.
    serial: Arc<Mutex<()>>,
}

impl Reloader {
    pub fn new(
        state: SharedState,
        transport: Arc<ArcSwap<Transport>>,
        crls: Arc<CrlUrls>,
        material: Material,
    ) -> Self {
        Self {
            state,
            transport,
            admin_transport: None,
            crls,
            material: Arc::new(Mutex::new(Arc::new(material))),
            serial: Arc::new(Mutex::new(())),
        }
    }

    /// The same, also swapping the admin listener's transport on each reload.
    pub fn with_admin(mut self, admin: Arc<ArcSwap<Transport>>) -> Self {
        self.admin_transport = Some(admin);
        self
    }

    /// Reads the config at `path` and everything it names, then applies it.
    pub fn reload_file(&self, path: &Path) -> Result<Reloaded, ReloadError> {
        let config = Config::load(path)?;
        self.apply(config)
    }

    /// Loads everything `config` names and, only if all of it loads, puts it in place.
    pub fn apply(&self, config: Config) -> Result<Reloaded, ReloadError> {
        let (config, material, restart_needed) = self.prepare(config)?;
        self.crls
            .reloading(&crl_fetch::urls(&config), material.tls.crl_issuers());
        self.install(config, material, restart_needed)
    }

    /// Keeps the restart-only keys' running values in `config`, then loads what it names.
    fn prepare(
        &self,
        mut config: Config,
    ) -> Result<(Config, Material, Vec<&'static str>), ReloadError> {
        let current = self.state.current();
        admin_listener_unchanged(&current.config, &config)?;
        let restart_needed = keep_restart_only(&current.config, &mut config);
        let material = Material::load(&config, &self.crls)?;
        Ok((config, material, restart_needed))
    }

    /// Swaps in `config` and `material`, with the URL CRLs as they are now.
    fn install(
        &self,
        config: Config,
        material: Material,
        restart_needed: Vec<&'static str>,
    ) -> Result<Reloaded, ReloadError> {
        let _serial = self.serial.lock().unwrap_or_else(|e| e.into_inner());
        let material = material.with_url_crls(&self.crls)?;
        for warning in config.warnings() {
            tracing::warn!(%warning, "config");
        }
        let transport = Transport::new(&config, &material);
        let admin = Transport::admin(&config, &material);
        let current = self.state.current();
        let state = current.reloaded(Arc::new(config), &material);
        self.state.replace(state);
        self.transport.store(Arc::new(transport));
        if let (Some(slot), Some(admin)) = (&self.admin_transport, admin) {
            slot.store(Arc::new(admin));
        }
        *self.material.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(material);
        Ok(Reloaded { restart_needed })
    }

    /// Reads the config at `path` and loads what it names, fetches its CRL URLs that are due
    /// (checked against the new config's CRL issuers), then applies it. The fetch comes first
    /// because a URL the reload adds would otherwise be judged as never fetched (refused in
    /// `hard` mode) until the background refresh reached it. A reload lets each URL's next CRL
    /// come from another issuer, and fetches again at once the URLs whose CRL was refused.
    async fn load_fetch_apply(&self, path: PathBuf) -> Result<Reloaded, ReloadError> {
        let this = self.clone();
        let (config, material, restart_needed) =
            tokio::task::spawn_blocking(move || this.prepare(Config::load(&path)?))
                .await
                .map_err(|e| ReloadError::Task(e.to_string()))??;
        let urls = crl_fetch::urls(&config);
        if !urls.is_empty() {
            let issuers = material.tls.crl_issuers().clone();
            self.crls.reloading(&urls, &issuers);
            match crl_fetch::client(&config) {
                Ok(client) => {
                    crl_fetch::fetch_due(&config, &self.crls, &client, &issuers).await;
                }
                Err(e) => tracing::warn!(error = %e, "no client for CRL URLs; the reload goes on"),
            }
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.install(config, material, restart_needed))
            .await
            .map_err(|e| ReloadError::Task(e.to_string()))?
    }

    /// The running config.
    pub fn config(&self) -> Arc<Config> {
        self.state.current().config.clone()
    }

    /// Who may sign CRLs under the running config.
    pub fn crl_issuers(&self) -> Arc<CrlIssuers> {
        self.material
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .tls
            .crl_issuers()
            .clone()
    }

    /// Rebuilds the transport of the running config with the URL CRLs as fetched now, from the
    /// material in use (no file is read): new handshakes use them, and open connections
    /// re-check their certificate (a new generation). The state is kept.
    pub fn rebuild_transport(&self) -> Result<(), ReloadError> {
        let _serial = self.serial.lock().unwrap_or_else(|e| e.into_inner());
        let config = self.state.current().config.clone();
        let current = self
            .material
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let material = current.with_url_crls(&self.crls)?;
        self.transport
            .store(Arc::new(Transport::new(&config, &material)));
        *self.material.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(material);
        Ok(())
    }

    /// Reloads from `path` and logs the outcome: what a SIGHUP does.
    pub async fn reload_and_log(&self, path: PathBuf) {
        let shown = path.display().to_string();
        let started = std::time::Instant::now();
        let outcome = self.load_fetch_apply(path).await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        match outcome {
            Ok(done) => {
                crate::metrics::reload(true);
                for key in &done.restart_needed {
                    tracing::warn!(
                        key,
                        "config reload: this key changed but takes effect only after a restart; \
                         the running value is kept"
                    );
                }
                tracing::info!(
                    config = %shown,
                    elapsed_ms,
                    restart_needed = ?done.restart_needed,
                    "config reloaded: new connections use the new TLS material"
                );
            }
            Err(e) => {
                crate::metrics::reload(false);
                tracing::error!(
                    config = %shown,
                    error = %e,
                    "CONFIG RELOAD FAILED: nothing was changed; still serving with the previous \
                     config and certificates"
                );
            }
        }
    }
}

/// Reloads from `path` on every SIGHUP, for as long as the server runs.
pub async fn on_sighup(reloader: Reloader, path: PathBuf) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; live reload is off");
                return;
            }
        };
        while hangup.recv().await.is_some() {
            tracing::info!(config = %path.display(), "SIGHUP: reloading");
            reloader.reload_and_log(path.clone()).await;
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (reloader, path);
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(crate::config::tests::MINIMAL, Path::new("test.toml")).expect("test config")
    }

    #[test]
    fn restart_only_keys_keep_their_running_values() {
        let running = config();
        let mut new = config();
        new.server.listen = "127.0.0.1:9443".parse().unwrap();
        new.server.max_connections = 7;
        new.server.max_body_bytes = 4096;
        new.database.url = "sqlite://b.db".parse().unwrap();
        new.oauth.token.access_token_lifetime = 60;
        new.authorization_server.mode = crate::config::AsMode::Rfc7591;
        new.authorization_server.timeout_ms = 7;
        let changed = keep_restart_only(&running, &mut new);
        assert_eq!(
            changed,
            [
                "server.listen",
                "server.max_connections",
                "database.url",
                "authorization_server.mode"
            ]
        );
        assert_eq!(
            new.authorization_server.mode,
            crate::config::AsMode::Embedded
        );
        assert_eq!(new.authorization_server.timeout_ms, 7);
        assert_eq!(new.server.listen, running.server.listen);
        assert_eq!(new.server.max_connections, running.server.max_connections);
        assert_eq!(new.database.url, running.database.url);
        // Everything else is the file's.
        assert_eq!(new.server.max_body_bytes, 4096);
        assert_eq!(new.oauth.token.access_token_lifetime, 60);
    }

    /// Adding `[admin]` with `metrics = true` to a server without the admin listener, or
    /// removing `[admin]` from one with it, is refused naming the key; adding it without
    /// `metrics` is applied (its `admin.listen` waits for a restart).
    #[test]
    fn the_admin_listener_is_added_or_removed_only_by_a_restart() {
        let without = config();
        let mut with = config();
        with.admin.listen = Some("127.0.0.1:9443".parse().unwrap());
        with.admin.client_ca = vec!["admin-ca.pem".into()];
        let mut with_metrics = with.clone();
        with_metrics.admin.metrics = true;
        let e = admin_listener_unchanged(&without, &with_metrics).unwrap_err();
        assert!(e.to_string().starts_with("`admin.metrics`: "), "{e}");
        let e = admin_listener_unchanged(&with, &without).unwrap_err();
        assert!(e.to_string().starts_with("`admin`: "), "{e}");
        assert!(e.to_string().contains("restart"), "{e}");
        assert!(!e.to_string().contains("client_ca"), "{e}");
        assert!(admin_listener_unchanged(&without, &with).is_ok());
        assert!(admin_listener_unchanged(&with, &with_metrics).is_ok());
        assert!(admin_listener_unchanged(&with_metrics, &with).is_ok());
    }

    #[test]
    fn an_unchanged_file_needs_no_restart() {
        let running = config();
        let mut new = running.clone();
        assert!(keep_restart_only(&running, &mut new).is_empty());
    }

    /// The README's live-reload section tells operators which keys need a restart; it must
    /// name every one (the config reference names them all anyway, so only that section counts).
    #[test]
    fn the_readme_lists_every_restart_only_key() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split_once("**Live reload.**")
            .and_then(|(_, rest)| rest.split_once("**Audit trail.**"))
            .map(|(section, _)| section)
            .expect("README: the live reload section");
        for key in RESTART_ONLY {
            assert!(section.contains(&format!("`{key}`")), "README: {key}");
        }
    }
}
