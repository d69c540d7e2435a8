//! What a connection is accepted with: the TLS material and the client-certificate checks.
//! A reload swaps the whole [`Transport`]; each new connection takes the current one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use tokio_rustls::TlsAcceptor;

use super::forwarded::ForwardedCertificates;
use crate::config::Config;
use crate::material::Material;

pub struct Transport {
    /// Bumped by every reload: a connection whose generation is older re-checks its
    /// certificate on its next request.
    pub generation: u64,
    pub acceptor: TlsAcceptor,
    /// `client_ca` and the CRLs: the handshake's verifier, shared with the forwarded mode.
    pub verifier: Arc<dyn ClientCertVerifier>,
    pub forwarded: Option<Arc<ForwardedCertificates>>,
    pub handshake_timeout: Duration,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

impl Transport {
    /// The transport of `config`, with its loaded TLS material.
    pub fn new(config: &Config, material: &Material) -> Self {
        let verifier = material.verifier.clone();
        Self {
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            acceptor: TlsAcceptor::from(material.server_tls.clone()),
            forwarded: ForwardedCertificates::from_config(&config.server, verifier.clone()),
            verifier,
            handshake_timeout: Duration::from_millis(config.server.tls.handshake_timeout_ms),
        }
    }

    /// The admin listener's transport, when the config has one: its own verifier, no
    /// forwarded certificates.
    pub fn admin(config: &Config, material: &Material) -> Option<Self> {
        let admin = material.admin.as_ref()?;
        Some(Self {
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            acceptor: TlsAcceptor::from(admin.server_tls.clone()),
            verifier: admin.verifier.clone(),
            forwarded: None,
            handshake_timeout: Duration::from_millis(config.server.tls.handshake_timeout_ms),
        })
    }

    /// Whether a chain accepted under an earlier generation is still trusted now.
    pub fn still_trusts(&self, chain: &[CertificateDer<'static>]) -> bool {
        match chain.split_first() {
            Some((leaf, intermediates)) => self
                .verifier
                .verify_client_cert(leaf, intermediates, UnixTime::now())
                .is_ok(),
            None => false,
        }
    }
}
