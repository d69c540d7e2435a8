//! The listening socket: bind, the accept loop with its connection cap, HTTP/1 and HTTP/2
//! limits, and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;

use super::connection::Connection;
use super::transport::Transport;

/// The limits the listener enforces (`[server]` keys that need a restart).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub request_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
}

/// A bound socket, ready to serve `router` over the TLS of `transport`.
pub struct Listener {
    /// `tpp` or `admin`, in logs and metrics.
    name: &'static str,
    tcp: TcpListener,
    transport: Arc<ArcSwap<Transport>>,
    router: Router,
    limits: Limits,
    connections: Arc<tokio::sync::Semaphore>,
    local_addr: SocketAddr,
}

impl Listener {
    pub async fn bind(
        name: &'static str,
        addr: SocketAddr,
        transport: Arc<ArcSwap<Transport>>,
        router: Router,
        limits: Limits,
    ) -> std::io::Result<Self> {
        let tcp = TcpListener::bind(addr).await?;
        let local_addr = tcp.local_addr()?;
        Ok(Self {
            name,
            tcp,
            transport,
            router,
            connections: Arc::new(tokio::sync::Semaphore::new(limits.max_connections)),
            limits,
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves, then lets open requests finish (up to the grace
    /// period).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        // Each connection holds a receiver; a send asks them all to finish, and the sender's
        // `closed` resolves once every connection has.
        let (graceful, _) = tokio::sync::watch::channel(());
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            // Slowloris: a request head must arrive within the request timeout.
            .header_read_timeout(self.limits.request_timeout)
            .max_buf_size(self.limits.max_header_bytes.max(8192));
        builder
            .http2()
            .timer(hyper_util::rt::TokioTimer::new())
            .max_header_list_size(u32::try_from(self.limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(100)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        tracing::info!(listener = self.name, addr = %self.local_addr, "listening on https://{}", self.local_addr);
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
                accepted = self.tcp.accept() => {
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
                        listener: self.name,
                        transport: self.transport.clone(),
                        router: self.router.clone(),
                        builder: builder.clone(),
                        peer,
                    };
                    let watcher = graceful.subscribe();
                    tokio::spawn(async move {
                        connection.serve(tcp, watcher).await;
                        drop(permit);
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(self.tcp);
        tracing::info!("shutting down: waiting for open requests");
        let _ = graceful.send(());
        tokio::select! {
            () = graceful.closed() => tracing::info!("all connections closed"),
            () = tokio::time::sleep(self.limits.shutdown_grace) => {
                tracing::warn!("shutdown grace period over; closing remaining connections");
            }
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
