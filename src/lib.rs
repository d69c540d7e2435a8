//! dcr-server: Dynamic Client Registration for UK Open Banking (OBIE DCR v3.2, v3.3 and v3.4,
//! served side by side).
//!
//! The binary is a thin CLI over this library; integration tests start the same server
//! in-process on an ephemeral port.

pub mod app;
pub mod authorization_server;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
mod events;
pub mod http;
pub mod jose;
pub mod material;
mod metrics;
mod net;
pub mod oauth;
pub mod operator;
pub mod pki;
pub mod registration;
pub mod sandbox;
pub mod store;
mod text;

/// The v3.2 registration path: the default advertised `registration_endpoint`. Every
/// version's paths are in `domain::version::PROFILES`.
pub const REGISTER_PATH: &str = domain::version::PROFILES[0].register_path;
/// The route of one v3.2 registration, as the logs and metrics name it.
pub const REGISTER_CLIENT_ROUTE: &str = domain::version::PROFILES[0].client_route;
