//! Access tokens: opaque random strings, stored only as SHA-256 hashes, bound to the client
//! certificate they were issued over (RFC 8705 `cnf.x5t#S256`).

use crate::domain::{Scopes, secret};
use crate::pki::ClientCertificate;
use crate::store::TokenRecord;

/// A token just minted: the value the client gets once, and the row that is stored.
pub struct Minted {
    pub token: String,
    pub record: TokenRecord,
}

/// Mints a token for `client_id` with `scope`, bound to `certificate` when there is one.
pub fn mint(
    client_id: &str,
    scope: Scopes,
    certificate: Option<&ClientCertificate>,
    now: i64,
    lifetime: i64,
) -> Minted {
    let token = secret::new_access_token();
    let record = TokenRecord {
        token_hash: secret::hash(&token),
        client_id: client_id.to_string(),
        scope,
        cert_thumbprint: certificate.map(|c| c.x5t_s256().to_string()),
        issued_at: now,
        expires_at: now + lifetime,
        revoked: false,
    };
    Minted { token, record }
}

/// Why a presented token does not authorise anything. `Display` is the public description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenRejected {
    #[error("the access token is not valid")]
    Unknown,
    #[error("the access token has been revoked")]
    Revoked,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is bound to another client certificate")]
    OtherCertificate,
}

/// Whether a stored token is live at `now`: not revoked, not expired.
pub fn check_live(token: &TokenRecord, now: i64) -> Result<(), TokenRejected> {
    if token.revoked {
        return Err(TokenRejected::Revoked);
    }
    if token.expires_at <= now {
        return Err(TokenRejected::Expired);
    }
    Ok(())
}

/// Whether a token presented over the certificate `thumbprint` may be used: an unbound token
/// always, a bound one only over its own certificate.
pub fn check_bound(token: &TokenRecord, thumbprint: &str) -> Result<(), TokenRejected> {
    match token.cert_thumbprint.as_deref() {
        Some(bound) if bound != thumbprint => Err(TokenRejected::OtherCertificate),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_are_stored_as_hashes_and_live_until_they_expire() {
        let m = mint("c1", "accounts".parse().unwrap(), None, 100, 60);
        assert_eq!(m.token.len(), 43);
        assert_eq!(m.record.token_hash, secret::hash(&m.token));
        assert_ne!(m.record.token_hash, m.token);
        assert_eq!((m.record.issued_at, m.record.expires_at), (100, 160));
        assert_eq!(m.record.cert_thumbprint, None);
        assert_eq!(check_live(&m.record, 159), Ok(()));
        assert_eq!(check_live(&m.record, 160), Err(TokenRejected::Expired));
        // An unbound token may be used over any certificate.
        assert_eq!(check_bound(&m.record, "any"), Ok(()));
        let revoked = TokenRecord {
            revoked: true,
            ..m.record
        };
        assert_eq!(check_live(&revoked, 100), Err(TokenRejected::Revoked));
    }

    #[test]
    fn a_bound_token_needs_its_certificate() {
        let mut m = mint("c1", Scopes::default(), None, 0, 60).record;
        m.cert_thumbprint = Some("t1".into());
        assert_eq!(check_bound(&m, "t1"), Ok(()));
        assert_eq!(check_bound(&m, "t2"), Err(TokenRejected::OtherCertificate));
    }
}
