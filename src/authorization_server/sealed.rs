//! Registration access tokens at rest (`authorization_server.storage_key_file`): AES-256-GCM
//! with the operator's 32-byte key, a random nonce per token, and the client's id as associated
//! data, so that a sealed token copied to another client's row does not open there.

use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The prefix of a sealed value, so that a stored token says how it is stored.
const PREFIX: &str = "sealed.v1.";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    #[error("the storage key must be exactly 32 bytes, not {0}")]
    KeyLength(usize),
    /// Not sealed with this key for this client (another key, another row, or damaged).
    #[error("a stored registration access token does not open with the storage key")]
    DoesNotOpen,
    #[error("no random bytes for a nonce")]
    Random,
}

/// The storage key. No `Debug` of its bytes; clones share the one key.
#[derive(Clone)]
pub struct StorageKey(Arc<LessSafeKey>);

impl std::fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StorageKey(..)")
    }
}

impl StorageKey {
    pub fn new(bytes: &[u8]) -> Result<Self, SealError> {
        let key =
            UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SealError::KeyLength(bytes.len()))?;
        Ok(Self(Arc::new(LessSafeKey::new(key))))
    }

    /// `token` sealed for the row of `client_id`.
    pub fn seal(&self, client_id: &str, token: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut sealed = token.as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(client_id.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| SealError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// The token `stored` holds for the row of `client_id`.
    pub fn open(&self, client_id: &str, stored: &str) -> Result<String, SealError> {
        let bytes = stored
            .strip_prefix(PREFIX)
            .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or(SealError::DoesNotOpen)?;
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::DoesNotOpen)?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(client_id.as_bytes()), &mut sealed)
            .map_err(|_| SealError::DoesNotOpen)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::DoesNotOpen)
    }
}

/// How a registration access token is kept for `client_id`: sealed when there is a storage
/// key, else as it is.
pub fn keep(key: Option<&StorageKey>, client_id: &str, token: &str) -> Result<String, SealError> {
    match key {
        Some(key) => key.seal(client_id, token),
        None => Ok(token.to_string()),
    }
}

/// The token a stored value holds. A value kept before the operator set a storage key reads
/// as it is; a sealed value without the key does not open.
pub fn recover(
    key: Option<&StorageKey>,
    client_id: &str,
    stored: &str,
) -> Result<String, SealError> {
    match key {
        Some(key) if is_sealed(stored) => key.open(client_id, stored),
        None if is_sealed(stored) => Err(SealError::DoesNotOpen),
        _ => Ok(stored.to_string()),
    }
}

/// Whether a stored value is sealed (else it was stored as it is, without a storage key).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_token_opens_only_with_its_key_for_its_client() {
        let key = StorageKey::new(&[7u8; 32]).unwrap();
        let sealed = key.seal("c1", "rat-123").unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("rat-123"));
        assert_eq!(key.open("c1", &sealed).unwrap(), "rat-123");
        // Two seals of one token differ (a fresh nonce each).
        assert_ne!(key.seal("c1", "rat-123").unwrap(), sealed);
        assert_eq!(key.open("c2", &sealed), Err(SealError::DoesNotOpen));
        let other = StorageKey::new(&[8u8; 32]).unwrap();
        assert_eq!(other.open("c1", &sealed), Err(SealError::DoesNotOpen));
        assert_eq!(key.open("c1", "rat-123"), Err(SealError::DoesNotOpen));
        let mut damaged = sealed.clone();
        damaged.pop();
        assert_eq!(key.open("c1", &damaged), Err(SealError::DoesNotOpen));
        assert!(matches!(
            StorageKey::new(&[0u8; 16]),
            Err(SealError::KeyLength(16))
        ));
        assert_eq!(format!("{key:?}"), "StorageKey(..)");
    }
}
