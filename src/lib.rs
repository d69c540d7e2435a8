//! dcr-server: Dynamic Client Registration for UK Open Banking (OBIE DCR v3.2).
//!
//! The binary is a thin CLI over this library; integration tests start the same server
//! in-process on an ephemeral port.

pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod discovery;
pub mod domain;
pub mod error;
pub mod forwarded;
pub mod jobs;
pub mod jose;
pub mod management;
pub mod metrics;
pub mod pki;
pub mod registration;
pub mod reload;
pub mod request_log;
pub mod sandbox;
pub mod server;
pub mod store;
pub mod text;
pub mod token;

/// The path of the registration endpoint on this server.
pub const REGISTER_PATH: &str = "/open-banking/v3.2/register";
/// The route of one registration, as the logs and metrics name it.
pub const REGISTER_CLIENT_ROUTE: &str = "/open-banking/v3.2/register/{ClientId}";
