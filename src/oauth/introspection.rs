//! RFC 7662 token introspection, for the API gateways listed in `[oauth.introspection]`.

use serde_json::{Value, json};

use super::access_token;
use crate::config::IntrospectionConfig;
use crate::domain::secret;
use crate::pki::ClientCertificate;
use crate::store::{ClientStore, StoreError, TokenStore};

/// Whether a certificate may call the introspection endpoint: its thumbprint or its subject
/// (as an RDN set) is listed.
pub fn may_introspect(config: &IntrospectionConfig, cert: &ClientCertificate) -> bool {
    cert.is_listed(&config.allowed_thumbprints, &config.allowed_subjects)
}

/// The introspection answer for `token`: active only while it is live and its client exists
/// and is enabled. Binding is reported (`cnf`), not enforced: the gateway checks it.
pub async fn introspect<S: ClientStore + TokenStore>(
    store: &S,
    token: &str,
    now: i64,
) -> Result<Value, StoreError> {
    let live = match store.find_token(&secret::hash(token)).await? {
        Some(t) if access_token::check_live(&t, now).is_ok() => {
            match store.get_client(&t.client_id).await? {
                Some(c) if c.enabled => Some(t),
                _ => None,
            }
        }
        _ => None,
    };
    Ok(match live {
        Some(t) => {
            let mut body = json!({
                "active": true,
                "client_id": t.client_id,
                "scope": t.scope,
                "exp": t.expires_at,
                "iat": t.issued_at,
                "token_type": "Bearer",
            });
            if let Some(thumbprint) = t.cert_thumbprint {
                body["cnf"] = json!({ "x5t#S256": thumbprint });
            }
            body
        }
        None => json!({ "active": false }),
    })
}
