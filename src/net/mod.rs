//! The network side: the listener and its accept loop, one TLS connection and the client
//! identity it carries, certificates forwarded by a load balancer, and the reloadable TLS
//! material new connections are accepted with.

pub mod connection;
pub mod forwarded;
pub mod handshake;
pub mod listener;
pub mod transport;

pub use transport::Transport;
