//! What every request reaches: the config, the store, the registration pipeline, the token
//! policy and the bytes served as they are. Swapped whole by a reload.

use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use axum::body::Bytes;
use axum::extract::FromRef;

use super::limits::Limits;
use crate::authorization_server::connection::{Connected, Connection, Given};
use crate::config::Config;
use crate::jose::JwksCache;
use crate::material::{AsMaterial, Material, SandboxJwks, Webhook};
use crate::oauth::TokenPolicy;
use crate::oauth::as_access::IntrospectionCache;
use crate::pki::ocsp::OcspChecker;
use crate::registration::{AtAs, Policy, Registrar};
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
    /// Rate limits and the pending-request bound; kept across a reload that does not change
    /// them, so that a reload does not refill every bucket.
    pub limits: Arc<Limits>,
    /// OCSP for client certificates (its cache survives a reload that does not change it).
    pub ocsp: Arc<OcspChecker>,
    /// The `[[events.webhook]]`s, loaded: what the delivery worker sends to.
    pub webhooks: Arc<[Webhook]>,
    /// `rfc7591` mode: the bank's AS behind this server (`None` in `embedded` mode).
    pub behind: Option<Behind>,
}

/// `rfc7591` mode's share of the state: the AS (connected once discovery answered) and the
/// management tokens it introspected.
pub struct Behind {
    pub connection: Arc<Connection>,
    pub introspection: Arc<IntrospectionCache>,
    /// The discovery document served, made once for each answer of the AS's discovery.
    served: ArcSwapOption<(Arc<Connected>, Bytes)>,
}

impl Behind {
    fn build(config: &Config, material: &AsMaterial, previous: Option<&Behind>) -> Option<Self> {
        let c = &config.authorization_server;
        let urls = c.urls();
        let given = Given {
            // Required in rfc7591 mode (the config's check), the only mode with AsMaterial.
            issuer: urls.issuer?,
            registration_endpoint: urls.registration_endpoint,
            introspection_endpoint: urls.introspection_endpoint,
            token_endpoint: urls.token_endpoint,
            initial_access_token: material.initial_access_token.clone(),
            introspection_client: c
                .client_id
                .clone()
                .map(|id| (id, material.client_secret.clone())),
            timeout: c.timeout(),
            http: material.http.clone(),
        };
        let mut connection = Connection::new(
            given,
            material.storage_key.clone(),
            c.introspection_cache_secs,
        );
        if let Some(previous) = previous {
            connection = connection.continuing(&previous.connection);
        }
        // A reload that keeps the cache's age keeps what it established.
        let introspection = match previous {
            Some(p) if p.connection.introspection_cache_secs == c.introspection_cache_secs => {
                p.introspection.clone()
            }
            _ => Arc::new(IntrospectionCache::new(c.introspection_cache_secs)),
        };
        Some(Self {
            connection: Arc::new(connection),
            introspection,
            served: ArcSwapOption::empty(),
        })
    }

    /// What the registrar needs of `connected` (from [`Self::connected`]) and this config.
    pub fn at<'a>(&'a self, connected: &'a Connected) -> AtAs<'a> {
        AtAs {
            server: &connected.server,
            storage_key: self.connection.storage_key.as_ref(),
        }
    }

    /// This server's discovery document: the AS's (as `connected` read it) with
    /// `registration_endpoint` as its registration endpoint, serialised once per answer.
    pub fn discovery(&self, connected: &Arc<Connected>, registration_endpoint: &str) -> Bytes {
        if let Some(served) = self.served.load().as_ref()
            && Arc::ptr_eq(&served.0, connected)
        {
            return served.1.clone();
        }
        let document = crate::oauth::discovery::behind(&connected.document, registration_endpoint);
        let bytes = Bytes::from(document.to_string());
        self.served
            .store(Some(Arc::new((connected.clone(), bytes.clone()))));
        bytes
    }

    /// The AS, if discovery has answered; else the 503 every call answers meanwhile.
    pub fn connected(&self) -> Result<Arc<Connected>, super::error::ApiError> {
        self.connection.current().ok_or_else(|| {
            super::error::ApiError::authorization_server_unavailable(
                "its discovery document has not been read yet",
            )
        })
    }
}

impl AppState {
    /// Builds the state from the config and what it names (loaded by [`Material::load`]).
    /// Work that is the same for every request (the discovery document) is done here once.
    pub fn new(config: Arc<Config>, store: Database, material: &Material) -> Self {
        Self::build(config, store, material, None)
    }

    /// The state for a re-read config: the same database. The JWKS cache keeps what it
    /// fetched unless `[open_banking.dcr.jwks]` changed (its hosts, CAs or limits may have been
    /// tightened).
    pub fn reloaded(&self, config: Arc<Config>, material: &Material) -> Self {
        Self::build(config, self.store.clone(), material, Some(self))
    }

    fn build(
        config: Arc<Config>,
        store: Database,
        material: &Material,
        previous: Option<&AppState>,
    ) -> Self {
        // Events written from now on go to the webhooks of this config.
        store.set_event_routing(crate::store::EventRouting::from_config(&config.events));
        let discovery = Bytes::from(crate::oauth::discovery::document(&config).to_string());
        let jwks_config = &config.open_banking.dcr.jwks;
        let mut jwks = JwksCache::new(material.http.clone(), jwks_config);
        if let Some(previous) = previous
            && previous.config.open_banking.dcr.jwks == *jwks_config
        {
            jwks = jwks.with_entries_of(&previous.jwks);
        }
        for (urls, keys) in material.sandbox_jwks.iter().flat_map(|s| &s.own_sets) {
            jwks = jwks.with_own_set(urls.iter().map(String::as_str), keys);
        }
        let jwks = Arc::new(jwks);
        let limits = match previous {
            Some(p) if p.limits.built_from(&config.server) => p.limits.clone(),
            _ => Arc::new(Limits::new(&config.server)),
        };
        let skew = i64::try_from(config.open_banking.dcr.clock_skew).unwrap_or(i64::MAX);
        let ocsp_config = &config.server.tls.ocsp;
        let ocsp = match previous {
            Some(p) if p.ocsp.built_from(ocsp_config, &material.client_ca, skew) => p.ocsp.clone(),
            _ => Arc::new(OcspChecker::new(
                ocsp_config,
                material.revocation_http.clone(),
                &material.client_ca,
                skew,
            )),
        };
        let behind = material
            .authorization_server
            .as_ref()
            .and_then(|m| Behind::build(&config, m, previous.and_then(|p| p.behind.as_ref())));
        Self {
            ocsp,
            registrar: Registrar {
                policy: Policy::from_config(&config, &material.issuer_keys),
                jwks: jwks.clone(),
                http: material.http.clone(),
            },
            tokens: TokenPolicy::from_config(&config),
            jwks,
            config,
            store,
            discovery,
            sandbox_jwks: material.sandbox_jwks.clone(),
            limits,
            webhooks: material.webhooks.clone().into(),
            behind,
        }
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
