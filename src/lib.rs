//! dcr-server: Dynamic Client Registration for UK Open Banking (OBIE DCR v3.2).
//!
//! The binary is a thin CLI over this library; integration tests start the same server
//! in-process on an ephemeral port.

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod http;
pub mod jose;
pub mod material;
pub mod metrics;
pub mod net;
pub mod oauth;
pub mod pki;
pub mod registration;
pub mod sandbox;
pub mod store;
pub mod text;

/// The path of the registration endpoint on this server.
pub const REGISTER_PATH: &str = "/open-banking/v3.2/register";
/// The route of one registration, as the logs and metrics name it.
pub const REGISTER_CLIENT_ROUTE: &str = "/open-banking/v3.2/register/{ClientId}";
