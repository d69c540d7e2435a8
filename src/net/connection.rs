//! One TLS connection: the handshake, the client certificate parsed once, and the identity
//! attached to each request (re-checked after a reload; taken from a trusted load balancer's
//! header in forwarded mode).

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::http::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::CertificateDer;
use tower::ServiceExt;

use super::transport::Transport;
use crate::pki::{ClientCertificate, PeerIdentity};

pub struct Connection {
    /// The listener's name in logs and metrics: `tpp` or `admin`.
    pub listener: &'static str,
    pub transport: Arc<ArcSwap<Transport>>,
    pub router: Router,
    pub builder: Builder<TokioExecutor>,
    pub peer: SocketAddr,
}

/// Asks the connection a request came on to close once the responses it is writing are
/// written (HTTP/1.1 stops keep-alive; HTTP/2 sends GOAWAY). Every request carries one in its
/// extensions; a body that did not arrive in time uses it.
#[derive(Debug, Clone, Default)]
pub struct CloseConnection(Arc<tokio::sync::Notify>);

impl CloseConnection {
    pub fn request(&self) {
        // A stored permit: the connection sees it even if it is not waiting yet.
        self.0.notify_one();
    }
}

/// A connection's client identity, and the transport generation it was last checked under.
struct CheckedIdentity {
    generation: u64,
    identity: PeerIdentity,
}

impl Connection {
    pub async fn serve(
        self,
        tcp: tokio::net::TcpStream,
        mut shutdown: tokio::sync::watch::Receiver<()>,
    ) {
        // The material current now; a later reload does not touch this handshake.
        let accepted_with = self.transport.load_full();
        let handshake = accepted_with.acceptor.accept(tcp);
        let stream = match tokio::time::timeout(accepted_with.handshake_timeout, handshake).await {
            Ok(Ok(stream)) => {
                crate::metrics::handshake(self.listener, "ok");
                stream
            }
            Ok(Err(e)) => {
                // A refused certificate is the operator's business (an admin's expired
                // certificate, a TPP's from another CA); a client that hangs up is not.
                if let Some(reason) = super::handshake::refusal(&e) {
                    crate::metrics::handshake(self.listener, "refused");
                    tracing::warn!(
                        listener = self.listener,
                        peer = %self.peer,
                        reason,
                        "TLS handshake refused: the client certificate is not accepted"
                    );
                } else {
                    crate::metrics::handshake(self.listener, "failed");
                    tracing::debug!(listener = self.listener, peer = %self.peer, error = %e, "TLS handshake failed");
                }
                return;
            }
            Err(_) => {
                crate::metrics::handshake(self.listener, "timeout");
                tracing::debug!(listener = self.listener, peer = %self.peer, "TLS handshake timed out");
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
        let close = CloseConnection::default();
        let close_asked = close.0.clone();
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
                    request.extensions_mut().insert(close.clone());
                    request
                });
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        tokio::pin!(connection);
        // Until the server shuts down or a request asks the connection to close; then the
        // responses under way are finished and the connection closes.
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            () = async {
                tokio::select! {
                    _ = shutdown.changed() => {}
                    () = close_asked.notified() => {}
                }
            } => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = ended {
            tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
        }
        // Held until here: the listener's shutdown waits for every connection's receiver.
        drop(shutdown);
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
    forwarded: &super::forwarded::ForwardedCertificates,
    peer: SocketAddr,
    request: &mut Request<hyper::body::Incoming>,
    connection: &PeerIdentity,
) -> PeerIdentity {
    use super::forwarded::Source;
    match forwarded.apply(peer.ip(), request.headers_mut()) {
        Source::Connection => connection.clone(),
        Source::Forwarded(None) => PeerIdentity::default(),
        Source::Forwarded(Some(Ok(cert))) => PeerIdentity {
            certificate: Some(cert),
        },
        Source::Forwarded(Some(Err(e))) => {
            // The request goes on without a certificate: endpoints that need one answer 401.
            tracing::warn!(peer = %peer, error = %e, "forwarded client certificate refused");
            PeerIdentity::default()
        }
    }
}
