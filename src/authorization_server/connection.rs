//! The bank's AS as the running server reaches it. What the config gives is known at start;
//! what discovery says (the endpoints it did not give, and the AS's document, which this
//! server serves as its own discovery) is known once the AS has answered. Until then
//! registrations, management calls and discovery answer 503, and `/ready` too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde_json::{Map, Value};
use url::Url;

use super::sealed::StorageKey;
use super::{AsError, AuthorizationServer, Endpoints, discover, settings};

/// What the config and its files say of the AS (no discovery yet).
#[derive(Clone)]
pub struct Given {
    pub issuer: Url,
    pub registration_endpoint: Option<Url>,
    pub introspection_endpoint: Option<Url>,
    pub token_endpoint: Option<Url>,
    pub initial_access_token: Option<String>,
    /// `client_secret_basic` at introspection.
    pub introspection_client: Option<(String, String)>,
    pub timeout: Duration,
    /// The AS's trust anchors, and its one keep-alive pool.
    pub http: reqwest::Client,
}

/// The AS once discovery answered: the client to call it with, and its document.
#[derive(Debug)]
pub struct Connected {
    pub server: AuthorizationServer,
    pub document: Map<String, Value>,
}

/// The AS for one config: what it gives, and what discovery said (`None` until it answered).
pub struct Connection {
    given: Given,
    pub storage_key: Option<StorageKey>,
    /// How long a management token's introspection may be reused.
    pub introspection_cache_secs: u64,
    current: ArcSwapOption<Connected>,
    /// Whether [`Self::connect`] succeeded for this config.
    discovered: AtomicBool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("issuer", &self.given.issuer.as_str())
            .field("connected", &self.current.load().is_some())
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub fn new(
        given: Given,
        storage_key: Option<StorageKey>,
        introspection_cache_secs: u64,
    ) -> Self {
        Self {
            given,
            storage_key,
            introspection_cache_secs,
            current: ArcSwapOption::empty(),
            discovered: AtomicBool::new(false),
        }
    }

    /// Starts from what `previous` discovered when it names the same AS, so that a reload
    /// serves on while it reads the discovery document again.
    pub fn continuing(self, previous: &Connection) -> Self {
        if previous.given.issuer == self.given.issuer {
            self.current.store(previous.current.load_full());
        }
        self
    }

    /// The AS, once discovery answered.
    pub fn current(&self) -> Option<Arc<Connected>> {
        self.current.load_full()
    }

    pub fn issuer(&self) -> &Url {
        &self.given.issuer
    }

    /// Reads the AS's discovery document once and, when it is good, uses what it says from now
    /// on.
    pub async fn connect(&self) -> Result<Arc<Connected>, AsError> {
        let g = &self.given;
        let discovered = discover(&g.http, &g.issuer, g.timeout).await?;
        let settings = settings(
            &g.issuer,
            Endpoints {
                registration: g.registration_endpoint.as_ref(),
                introspection: g.introspection_endpoint.as_ref(),
                token: g.token_endpoint.as_ref(),
            },
            &discovered,
            g.initial_access_token.clone(),
            g.introspection_client.clone(),
            g.timeout,
        )?;
        let connected = Arc::new(Connected {
            server: AuthorizationServer::new(g.http.clone(), settings),
            document: discovered.document,
        });
        self.current.store(Some(connected.clone()));
        self.discovered.store(true, Ordering::Release);
        Ok(connected)
    }

    /// Whether this config's AS has not been discovered yet (at start, and after a reload,
    /// which serves on with the previous answer until the new one is in).
    pub fn needs_discovery(&self) -> bool {
        !self.discovered.load(Ordering::Acquire)
    }
}
