//! A registration request that passed every step: what POST and PUT store, and what
//! `rfc7591` mode sends to the bank's authorization server. Its own file, so that the steps
//! that read it never import `registration/mod.rs`.

use crate::domain::{Scopes, SpecVersion};

use super::metadata::ClientMetadata;
use super::{request_claims, ssa};

/// A request that passed every check.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The request's own `client_id` claim, if it sent one (POST ignores it; PUT checks it).
    pub client_id_claim: Option<String>,
    pub ssa: ssa::Ssa,
    pub request: request_claims::RequestClaims,
    pub metadata: ClientMetadata,
    /// `metadata.scope`, checked against the SSA's roles.
    pub scopes: Scopes,
    pub cert_thumbprint: String,
    pub version: SpecVersion,
}
