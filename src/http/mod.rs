//! HTTP: the route table, the middleware, the extractors and one file per endpoint. Handlers
//! are thin: they take parsed inputs from extractors, call `registration/` or `oauth/`, and turn
//! the result into a response; the logic lives below this layer.

pub mod admin;
pub mod error;
pub mod extract;
pub mod introspect;
pub mod limits;
pub mod manage;
pub mod middleware;
pub mod ops;
pub mod register;
pub mod response;
pub mod router;
pub mod state;
pub mod token;

pub use error::ApiError;
pub use state::{AppState, SharedState};

/// Header that OBIE uses to correlate a request across parties.
pub const INTERACTION_ID: &str = "x-fapi-interaction-id";
