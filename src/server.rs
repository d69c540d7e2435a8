//! The HTTPS server: TLS accept loop, per-connection client identity, routes and shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRef, State};
use axum::http::{HeaderValue, Request, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::config::Config;
use crate::error::ApiError;
use crate::jwks::JwksCache;
use crate::mtls::{ClientCertificate, PeerIdentity};
use crate::registration::{Policy, Registrar};
use crate::reload::{Reloader, Transport};
use crate::store::Database;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Database,
    pub registrar: Arc<Registrar>,
    /// `[oauth.introspection] allowed_subjects`, parsed once (the config check validated them).
    pub introspection_subjects: Arc<Vec<crate::mtls::DistinguishedName>>,
    discovery: Bytes,
    sandbox_jwks: Option<SandboxJwks>,
}

#[derive(Clone)]
struct SandboxJwks {
    tpp: Bytes,
    directory: Bytes,
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
        let discovery = Bytes::from(serde_json::to_vec(&crate::discovery::document(&config))?);
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
        let http = crate::jwks::http_client(jwks_config)?;
        let mut jwks = JwksCache::new(http.clone(), jwks_config);
        if let Some(previous) = previous
            && previous.config.open_banking.dcr.jwks == *jwks_config
        {
            jwks = jwks.with_entries_of(&previous.registrar.jwks);
        }
        let registrar = Registrar {
            policy: Policy::from_config(&config)?,
            jwks: Arc::new(jwks),
            http,
        };
        let introspection_subjects = config
            .oauth
            .introspection
            .allowed_subjects
            .iter()
            .filter_map(|s| crate::mtls::DistinguishedName::parse(s).ok())
            .collect();
        Ok(Self {
            introspection_subjects: Arc::new(introspection_subjects),
            config,
            store,
            registrar: Arc::new(registrar),
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

impl FromRef<SharedState> for AppState {
    fn from_ref(shared: &SharedState) -> Self {
        AppState::clone(&shared.0.load())
    }
}

fn json_response(body: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

async fn discovery(State(state): State<AppState>) -> Response {
    json_response(state.discovery.clone())
}

async fn health() -> Response {
    json_response(Bytes::from_static(br#"{"status":"ok"}"#))
}

/// Ready when the database answers within two seconds.
async fn ready(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => json_response(Bytes::from_static(br#"{"status":"ready"}"#)),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: database");
            ApiError::unavailable().into_response()
        }
        Err(_) => {
            tracing::warn!("not ready: database ping timed out");
            ApiError::unavailable().into_response()
        }
    }
}

async fn sandbox_tpp_jwks(State(state): State<AppState>) -> Response {
    match state.sandbox_jwks {
        Some(j) => json_response(j.tpp),
        None => ApiError::not_found().into_response(),
    }
}

async fn sandbox_directory_jwks(State(state): State<AppState>) -> Response {
    match state.sandbox_jwks {
        Some(j) => json_response(j.directory),
        None => ApiError::not_found().into_response(),
    }
}

/// The product's routes, before the state is attached. Tests add their own routes to this.
pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/ready", get(ready))
        .route(
            crate::REGISTER_PATH,
            axum::routing::post(crate::api::post_register),
        )
        .route(
            &format!("{}/{{client_id}}", crate::REGISTER_PATH),
            get(crate::management::get_client)
                .put(crate::management::put_client)
                .delete(crate::management::delete_client),
        )
        .route("/token", axum::routing::post(crate::token::post_token))
        .route(
            "/introspect",
            axum::routing::post(crate::management::post_introspect),
        )
        .route(crate::sandbox::TPP_JWKS_PATH, get(sandbox_tpp_jwks))
        .route(
            crate::sandbox::DIRECTORY_JWKS_PATH,
            get(sandbox_directory_jwks),
        )
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
}

/// Every route the server answers, as (method, path template). The OpenAPI document in
/// docs/openapi.json describes exactly these (a test holds the two together), and the request
/// log names a request by its template from here.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", crate::REGISTER_PATH),
    ("GET", crate::REGISTER_CLIENT_ROUTE),
    ("PUT", crate::REGISTER_CLIENT_ROUTE),
    ("DELETE", crate::REGISTER_CLIENT_ROUTE),
    ("POST", "/token"),
    ("POST", "/introspect"),
    ("GET", "/.well-known/openid-configuration"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", crate::sandbox::TPP_JWKS_PATH),
    ("GET", crate::sandbox::DIRECTORY_JWKS_PATH),
];

/// The OpenAPI 3.1 document, checked in under docs/.
pub const OPENAPI: &str = include_str!("../docs/openapi.json");

/// `GET /openapi.json`.
async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(state): State<AppState>) -> Response {
    let (in_use, idle) = state.store.pool_usage();
    crate::metrics::db_pool(in_use, idle);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
        .into_response()
}

/// Connects the database named by the config and applies the migrations.
pub async fn open_store(config: &Config) -> Result<Database> {
    let store = Database::connect(&config.database).await.with_context(|| {
        format!(
            "database.url = {}: cannot connect",
            crate::config::mask_password(&config.database.url)
        )
    })?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

/// A bound, ready-to-run server.
pub struct Server {
    listener: TcpListener,
    /// The TLS material and certificate checks of new connections; a reload replaces it.
    transport: Arc<ArcSwap<Transport>>,
    reloader: Reloader,
    router: Router,
    request_timeout: Duration,
    max_header_bytes: usize,
    connections: Arc<tokio::sync::Semaphore>,
    shutdown_grace: Duration,
    local_addr: SocketAddr,
}

impl Server {
    /// Prepares everything that can fail (sandbox, TLS files, database, migrations, the
    /// listening socket) so that `run` only serves.
    pub async fn bind(config: Config, extra_routes: Router<SharedState>) -> Result<Self> {
        crate::tls::install_default_provider();
        if config.sandbox_enabled() && !crate::sandbox::exists(&config.sandbox.dir) {
            tracing::info!(dir = %config.sandbox.dir.display(), "creating the sandbox PKI");
            crate::sandbox::init(&config.sandbox.dir, &config.server.issuer)?;
        }
        crate::metrics::install();
        let transport = Arc::new(ArcSwap::from_pointee(Transport::from_config(&config)?));
        let store = open_store(&config).await?;
        let config = Arc::new(config);
        let state = SharedState::new(AppState::new(config.clone(), store.clone())?);
        let reloader = Reloader::new(state.clone(), transport.clone());
        let request_timeout = Duration::from_millis(config.server.request_timeout_ms);
        let router = routes()
            .merge(extra_routes)
            .with_state(state)
            .layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| async move {
                    // No request is held past the timeout, whatever it waits for.
                    match tokio::time::timeout(request_timeout, next.run(request)).await {
                        Ok(response) => response,
                        Err(_) => {
                            tracing::warn!("request timed out");
                            ApiError::unavailable().into_response()
                        }
                    }
                },
            ))
            // Outermost: it sees the timeout's 503 too, and every response gets the interaction id.
            .layer(axum::middleware::from_fn(crate::request_log::middleware));

        let listener = TcpListener::bind(&config.server.listen)
            .await
            .with_context(|| format!("server.listen = {}: cannot bind", config.server.listen))?;
        let local_addr = listener.local_addr()?;
        crate::jobs::spawn_purger(store);
        Ok(Self {
            listener,
            transport,
            reloader,
            router,
            request_timeout,
            max_header_bytes: config.server.max_header_bytes,
            connections: Arc::new(tokio::sync::Semaphore::new(config.server.max_connections)),
            shutdown_grace: Duration::from_secs(config.server.shutdown_grace_secs),
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The handle that reloads this server's config and TLS material (SIGHUP uses it).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Serves until `shutdown` resolves, then lets open requests finish (up to the grace
    /// period).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let graceful = GracefulShutdown::new();
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            // Slowloris: a request head must arrive within the request timeout.
            .header_read_timeout(self.request_timeout)
            .max_buf_size(self.max_header_bytes.max(8192));
        builder
            .http2()
            .timer(hyper_util::rt::TokioTimer::new())
            .max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(100)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        tracing::info!(addr = %self.local_addr, "listening on https://{}", self.local_addr);
        tokio::pin!(shutdown);
        loop {
            // At most `server.max_connections` connections; beyond that, new ones wait in the
            // listen backlog instead of exhausting memory or file descriptors.
            let permit = tokio::select! {
                permit = self.connections.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
                () = &mut shutdown => break,
            };
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            // Out of file descriptors and the like: back off, keep serving.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    let connection = Connection {
                        transport: self.transport.clone(),
                        router: self.router.clone(),
                        builder: builder.clone(),
                        peer,
                    };
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        connection.serve(tcp, watcher).await;
                        drop(permit);
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(self.listener);
        tracing::info!("shutting down: waiting for open requests");
        tokio::select! {
            () = graceful.shutdown() => tracing::info!("all connections closed"),
            () = tokio::time::sleep(self.shutdown_grace) => {
                tracing::warn!("shutdown grace period over; closing remaining connections");
            }
        }
        Ok(())
    }
}

struct Connection {
    transport: Arc<ArcSwap<Transport>>,
    router: Router,
    builder: Builder<TokioExecutor>,
    peer: SocketAddr,
}

/// A connection's client identity, and the transport generation it was last checked under.
struct CheckedIdentity {
    generation: u64,
    identity: PeerIdentity,
}

impl Connection {
    async fn serve(
        self,
        tcp: tokio::net::TcpStream,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        // The material current now; a later reload does not touch this handshake.
        let accepted_with = self.transport.load_full();
        let handshake = accepted_with.acceptor.accept(tcp);
        let stream = match tokio::time::timeout(accepted_with.handshake_timeout, handshake).await {
            Ok(Ok(stream)) => {
                crate::metrics::handshake("ok");
                stream
            }
            Ok(Err(e)) => {
                crate::metrics::handshake("failed");
                tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                crate::metrics::handshake("timeout");
                tracing::debug!(peer = %self.peer, "TLS handshake timed out");
                return;
            }
        };
        // Parsed once per connection; every request on it shares the result.
        let chain: Arc<[CertificateDer<'static>]> = stream
            .get_ref()
            .1
            .peer_certificates()
            .map(Arc::from)
            .unwrap_or_default();
        let certificate = match chain.first() {
            Some(der) => match ClientCertificate::from_der(der) {
                Ok(cert) => Some(Arc::new(cert)),
                Err(e) => {
                    tracing::info!(peer = %self.peer, error = %e, "client certificate unusable; closing");
                    return;
                }
            },
            None => None,
        };
        let accepted = PeerIdentity { certificate };
        let checked = Arc::new(std::sync::Mutex::new(CheckedIdentity {
            generation: accepted_with.generation,
            identity: accepted.clone(),
        }));
        let (transport, peer) = (self.transport.clone(), self.peer);
        let service =
            self.router
                .map_request(move |mut request: Request<hyper::body::Incoming>| {
                    let now = transport.load();
                    let connection = current_identity(&now, &checked, &accepted, &chain, peer);
                    let identity = match &now.forwarded {
                        None => connection,
                        Some(f) => forwarded_identity(f, peer, &mut request, &connection),
                    };
                    request.extensions_mut().insert(identity);
                    request
                });
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        if let Err(e) = watcher.watch(connection).await {
            tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
        }
    }
}

/// The connection's identity under the transport `now`. After a reload, the certificate the
/// handshake accepted is checked again, once, against the new `client_ca` and CRLs: the
/// connection stays open, but a certificate they no longer trust stops counting.
fn current_identity(
    now: &Transport,
    checked: &std::sync::Mutex<CheckedIdentity>,
    accepted: &PeerIdentity,
    chain: &[CertificateDer<'static>],
    peer: SocketAddr,
) -> PeerIdentity {
    let mut checked = checked.lock().unwrap_or_else(|e| e.into_inner());
    if checked.generation != now.generation {
        checked.generation = now.generation;
        checked.identity = if accepted.certificate.is_none() || now.still_trusts(chain) {
            accepted.clone()
        } else {
            tracing::warn!(
                peer = %peer,
                "the client certificate of an open connection is no longer trusted after a reload"
            );
            PeerIdentity::default()
        };
    }
    checked.identity.clone()
}

/// The identity of one request when a load balancer may forward certificates.
fn forwarded_identity(
    forwarded: &crate::forwarded::ForwardedCertificates,
    peer: SocketAddr,
    request: &mut Request<hyper::body::Incoming>,
    connection: &PeerIdentity,
) -> PeerIdentity {
    use crate::forwarded::Source;
    match forwarded.apply(peer.ip(), request.headers_mut()) {
        Source::Connection => connection.clone(),
        Source::Forwarded(None) => PeerIdentity::default(),
        Source::Forwarded(Some(Ok(cert))) => PeerIdentity {
            certificate: Some(Arc::new(cert)),
        },
        Source::Forwarded(Some(Err(e))) => {
            // The request goes on without a certificate: endpoints that need one answer 401.
            tracing::warn!(peer = %peer, error = %e, "forwarded client certificate refused");
            PeerIdentity::default()
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}
