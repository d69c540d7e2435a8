//! The OAuth side of the server, as plain functions over parsed inputs: client
//! authentication (shared by every endpoint that authenticates a client), the
//! client-credentials grant, access tokens, RFC 7592 registration access, RFC 7662
//! introspection and the discovery document. No HTTP types in here: `http/` parses requests
//! into these inputs and turns the results into responses.

pub mod access_token;
pub mod as_access;
pub mod client_auth;
pub mod client_credentials;
pub mod discovery;
pub mod form;
pub mod introspection;
pub mod registration_access;

pub use client_credentials::{TokenError, TokenPolicy};
