//! Client secrets and access tokens: minted from the system's random source and stored only
//! as SHA-256 hashes. Both are long random strings, so a fast hash is enough: there is nothing
//! to brute-force.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// `n` random bytes, base64url.
fn random_text<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256, hex: the only form in which secrets and tokens are stored.
pub fn hash(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// A new client secret: 27 random bytes (216 bits), base64url, 36 characters.
pub fn new_client_secret() -> String {
    random_text::<27>()
}

/// A new access token: 32 random bytes, base64url, 43 characters.
pub fn new_access_token() -> String {
    random_text::<32>()
}

/// Whether `presented` hashes to `stored_hash`, compared in constant time.
pub fn matches(presented: &str, stored_hash: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(
        hash(presented).as_bytes(),
        stored_hash.as_bytes(),
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_tokens_are_random_url_safe_and_hash_stably() {
        let s = new_client_secret();
        assert_eq!(s.len(), 36);
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(s, new_client_secret());
        let t = new_access_token();
        assert_eq!(t.len(), 43);
        assert_ne!(t, new_access_token());
        assert_eq!(hash(&t).len(), 64);
        assert_eq!(hash("x"), hash("x"));
        assert_ne!(hash(&s), s);
        assert!(matches(&s, &hash(&s)));
        assert!(!matches("other", &hash(&s)));
    }
}
