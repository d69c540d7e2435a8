//! `rfc7591` mode: the bank's AS a registration is made at. A file of its own, so that
//! `compensation` takes it without importing `registration/mod.rs`.

use crate::authorization_server::AuthorizationServer;
use crate::authorization_server::sealed::StorageKey;

/// `rfc7591` mode: the bank's AS a registration is made at, and the key its registration
/// access tokens are kept with.
pub struct AtAs<'a> {
    pub server: &'a AuthorizationServer,
    pub storage_key: Option<&'a StorageKey>,
}
