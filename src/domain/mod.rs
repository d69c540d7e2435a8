//! The protocol's vocabulary as types: each list of allowed values exists here once, and
//! everything else (config, JOSE, registration, tokens, discovery, the audit log) uses these.
//!
//! Nothing here does I/O or knows about HTTP, the database or the config file.

pub mod alg;
pub mod audit;
pub mod auth_method;
pub mod dn;
pub mod error_code;
pub mod event;
pub mod grant;
pub mod protocol;
pub mod scope;
pub mod secret;
pub mod version;

pub use alg::SigningAlg;
pub use audit::{AuditAction, AuditOutcome};
pub use auth_method::AuthMethod;
pub use dn::DistinguishedName;
pub use error_code::OAuthErrorCode;
pub use event::{DeliveryState, EventType};
pub use grant::{ApplicationType, BackchannelDeliveryMode, GrantType, GrantTypes, ResponseType};
pub use protocol::{Names, ProtocolValue, UnknownValue};
pub(crate) use protocol::{deserialize_from_str, serde_as_text};
pub use scope::{Scope, Scopes};
pub use version::{Profile, SpecVersion};
