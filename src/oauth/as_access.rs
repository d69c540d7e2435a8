//! RFC 7592 access in `rfc7591` mode: the management token is the bank's AS's, judged by RFC
//! 7662 introspection there. It must be `active`, name the path's ClientId as its `client_id`,
//! and be bound (`cnf.x5t#S256`, RFC 8705) to the certificate it is presented over. An answer
//! that passed is reused for at most `authorization_server.introspection_cache_secs`, and never
//! past the token's `exp`; a token that failed is asked about again (it cannot become valid,
//! but caching refusals would let a stranger fill the cache).

use std::sync::Mutex;

use hashlink::LruCache;

use super::registration_access::{AccessError, RevokedKeys};
use crate::authorization_server::{AsError, AuthorizationServer, Introspection};
use crate::domain::secret;
use crate::pki::ClientCertificate;
use crate::store::{ClientRecord, ClientStore};

/// How many tokens the cache holds at most (each entry is a few dozen bytes).
const CACHE_ENTRIES: usize = 10_000;

/// What one introspection established, until when.
#[derive(Clone)]
struct Passed {
    client_id: String,
    x5t_s256: String,
    until: i64,
}

/// Introspection answers that passed, by token hash.
pub struct IntrospectionCache {
    max_age: i64,
    entries: Mutex<LruCache<String, Passed>>,
}

impl std::fmt::Debug for IntrospectionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionCache")
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl IntrospectionCache {
    pub fn new(max_age_secs: u64) -> Self {
        Self {
            max_age: i64::try_from(max_age_secs).unwrap_or(i64::MAX),
            entries: Mutex::new(LruCache::new(CACHE_ENTRIES)),
        }
    }

    fn get(&self, key: &str, now: i64) -> Option<Passed> {
        let mut entries = self.entries.lock().ok()?;
        match entries.get(key) {
            Some(p) if p.until > now => Some(p.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&self, key: String, passed: Passed) {
        if self.max_age > 0
            && let Ok(mut entries) = self.entries.lock()
        {
            entries.insert(key, passed);
        }
    }
}

/// Why the AS's answer does not authorise a call on `client_id` over `certificate`.
pub fn judge(
    answer: &Introspection,
    client_id: &str,
    certificate: &ClientCertificate,
) -> Result<(), AccessError> {
    if !answer.active {
        return Err(AccessError::Inactive);
    }
    if answer.client_id.as_deref() != Some(client_id) {
        return Err(AccessError::NotForClient);
    }
    if answer.x5t_s256.as_deref() != Some(certificate.x5t_s256()) {
        return Err(AccessError::NotBound);
    }
    Ok(())
}

/// The AS that introspects, and what it said before.
#[derive(Clone, Copy)]
pub struct TheAs<'a> {
    pub server: &'a AuthorizationServer,
    pub cache: &'a IntrospectionCache,
}

/// Authorises a call on `client_id` with the `presented` token over `certificate`; returns the
/// client as stored here.
pub async fn authorize<S: ClientStore>(
    store: &S,
    at: TheAs<'_>,
    revoked_keys: RevokedKeys<'_>,
    certificate: &ClientCertificate,
    presented: Option<&str>,
    client_id: &str,
    now: i64,
) -> Result<ClientRecord, AccessError> {
    let presented = presented.ok_or(AccessError::NoToken)?;
    let key = secret::hash(presented);
    let passed = at.cache.get(&key, now);
    crate::metrics::as_introspection_cache(passed.is_some());
    match passed {
        Some(p) => {
            if p.client_id != client_id {
                return Err(AccessError::NotForClient);
            }
            if p.x5t_s256 != certificate.x5t_s256() {
                return Err(AccessError::NotBound);
            }
        }
        None => {
            let answer = at.server.introspect(presented).await.map_err(|e| match e {
                AsError::Unavailable(reason)
                | AsError::Refused {
                    description: reason,
                    ..
                } => AccessError::AsUnavailable(reason),
            })?;
            judge(&answer, client_id, certificate)?;
            let until = now.saturating_add(at.cache.max_age);
            at.cache.put(
                key,
                Passed {
                    client_id: client_id.to_string(),
                    x5t_s256: certificate.x5t_s256().to_string(),
                    until: answer.exp.map_or(until, |exp| exp.min(until)),
                },
            );
        }
    }
    let client = match store.get_client(client_id).await? {
        Some(client) if client.enabled => client,
        Some(_) => return Err(AccessError::Disabled),
        None => return Err(AccessError::UnknownClientHere),
    };
    revoked_keys.check(&client, certificate).await?;
    Ok(client)
}
