//! `client_secret_basic` and `client_secret_post` (RFC 6749 §2.3.1).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::error::{AuthenticationFailure, ClientAuthError};
use crate::domain::secret;
use crate::store::ClientRecord;

/// The presented secret hashes to the stored one (constant-time comparison).
pub fn check(client: &ClientRecord, presented: &str) -> Result<(), ClientAuthError> {
    if secret::matches(presented, &client.client_secret_hash) {
        Ok(())
    } else {
        Err(ClientAuthError::WrongSecret)
    }
}

/// An `Authorization` header value as Basic credentials: base64 of `id:secret`, each
/// form-urlencoded first (RFC 6749 §2.3.1).
pub fn parse_basic(value: &str) -> Result<(String, String), AuthenticationFailure> {
    let bad = || AuthenticationFailure::Client(ClientAuthError::MalformedBasic);
    let (scheme, rest) = value.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthenticationFailure::InvalidRequest(
            "only Basic client authentication is accepted in the Authorization header".into(),
        ));
    }
    let decoded = STANDARD.decode(rest.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
            .ok()
            .and_then(|mut v| v.pop())
            .map(|(_, v)| v)
            .ok_or_else(bad)
    };
    Ok((unescape(id)?, unescape(secret)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AuthMethod;
    use crate::oauth::client_auth::tests::client;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let encoded = STANDARD.encode("my%3Aid:s%2Bcret");
        assert_eq!(
            parse_basic(&format!("Basic {encoded}")).unwrap(),
            ("my:id".into(), "s+cret".into())
        );
        assert_eq!(
            parse_basic(&format!("basic {}", STANDARD.encode("a:b"))).unwrap(),
            ("a".into(), "b".into())
        );
        for bad in [
            "Basic !!!",
            "Basic",
            &format!("Basic {}", STANDARD.encode("no-colon")),
        ] {
            assert!(
                matches!(
                    parse_basic(bad),
                    Err(AuthenticationFailure::Client(
                        ClientAuthError::MalformedBasic
                    ))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_basic("Bearer abc"),
            Err(AuthenticationFailure::InvalidRequest(_))
        ));
    }

    #[test]
    fn the_secret_must_match_its_hash() {
        let c = client(AuthMethod::ClientSecretPost);
        assert!(check(&c, "s3cret").is_ok());
        assert_eq!(check(&c, "s3cretx"), Err(ClientAuthError::WrongSecret));
        assert_eq!(check(&c, ""), Err(ClientAuthError::WrongSecret));
    }
}
