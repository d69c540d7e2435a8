//! JWKs: the usable public signature keys of a JWK set, parsed once into aws-lc keys.
//!
//! Only signature keys (`use` = `sig`, or no `use`) are kept; RSA keys need 2048 bits.

use std::sync::{Arc, OnceLock};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self as sig, ParsedPublicKey, VerificationAlgorithm};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::domain::SigningAlg;
pub use crate::domain::alg::KeyFamily;
use crate::text::printable;

/// Smallest RSA modulus accepted, in bits (FAPI 1.0 Part 1 §5.2.2).
pub const MIN_RSA_BITS: usize = 2048;

/// Why no key could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The JWKS URL is not https (or not a URL).
    #[error("JWKS location `{0}` is not an https URL")]
    NotHttps(String),
    /// The URL's host is not in `jwks.allowed_hosts`.
    #[error("JWKS host `{0}` is not allowed")]
    HostNotAllowed(String),
    /// The fetch failed (connection, TLS, timeout) and no usable cache exists.
    #[error("JWKS at `{0}` could not be fetched: {1}")]
    Fetch(String, String),
    /// The response was not a JWKS.
    #[error("JWKS at `{0}` is not a valid JWK set: {1}")]
    Invalid(String, String),
    /// No key with this `kid` (among the usable signature keys).
    #[error("no signature key with kid `{0}` in the JWKS at `{1}`")]
    UnknownKid(String, String),
    /// The key exists but cannot verify this algorithm.
    #[error("key `{0}` cannot verify `{1}` signatures")]
    KeyUnfit(String, String),
}

/// A usable public signature key.
pub struct VerificationKey {
    pub kid: Option<String>,
    pub family: KeyFamily,
    /// The JWK's `alg`, if it names one.
    pub alg: Option<String>,
    /// The public key as aws-lc takes it: an RSA SubjectPublicKeyInfo (DER), or an uncompressed EC
    /// point.
    material: Vec<u8>,
    /// The key parsed once per algorithm on first use: rebuilding an RSA key (and its
    /// Montgomery context) for every signature was a tenth of a registration's CPU.
    parsed: [OnceLock<Option<ParsedPublicKey>>; SigningAlg::ALL.len()],
}

/// aws-lc's verifier for an algorithm.
fn verifier(alg: SigningAlg) -> &'static dyn VerificationAlgorithm {
    match alg {
        SigningAlg::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        SigningAlg::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        SigningAlg::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        SigningAlg::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        SigningAlg::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
        SigningAlg::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
    }
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("alg", &self.alg)
            .finish()
    }
}

impl VerificationKey {
    /// Whether `signature` (raw bytes, JWS form) signs `message` with `alg`. The caller has
    /// checked [`VerificationKey::fits`].
    pub fn verify(&self, alg: SigningAlg, message: &[u8], signature: &[u8]) -> bool {
        let parsed = self.parsed[alg.index()]
            .get_or_init(|| ParsedPublicKey::new(verifier(alg), &self.material).ok());
        parsed
            .as_ref()
            .is_some_and(|key| key.verify_sig(message, signature).is_ok())
    }

    /// Whether this key may verify `alg`.
    pub fn fits(&self, alg: SigningAlg) -> bool {
        alg.key_family() == self.family && self.alg.as_deref().is_none_or(|a| a == alg.as_str())
    }
}

/// The usable signature keys of a JWKS document, and what names every key of it.
#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: Vec<Arc<VerificationKey>>,
    /// Every key, whatever its use or type: what a set of revoked keys (the directory's
    /// `software_jwks_revoked_endpoint`) names, and the transport keys of a software JWKS.
    pub names: Vec<KeyName>,
}

/// What identifies one key of a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyName {
    pub kid: Option<String>,
    /// `use: "tls"`: a transport key (the OB Directory publishes transport certificates so).
    pub tls: bool,
    /// Its certificate's `x5t#S256`: its own `x5t#S256`, or the SHA-256 of its `x5c[0]`.
    pub thumbprint: Option<String>,
}

impl KeySet {
    /// Parses a JWKS document, keeping the usable signature keys and skipping the rest
    /// (encryption keys, unknown types, short RSA keys).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let doc: Value = serde_json::from_slice(bytes).map_err(|_| "not JSON".to_string())?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| "no `keys` array".to_string())?;
        let mut usable = Vec::new();
        let mut names = Vec::new();
        for raw in keys {
            if let Some(key) = usable_key(raw) {
                usable.push(Arc::new(key));
            }
            names.push(KeyName {
                kid: raw.get("kid").and_then(Value::as_str).map(str::to_string),
                tls: raw.get("use").and_then(Value::as_str) == Some("tls"),
                thumbprint: cert_thumbprint(raw),
            });
        }
        Ok(Self {
            keys: usable,
            names,
        })
    }

    /// Whether some key of the set has this `kid`.
    pub fn names_kid(&self, kid: &str) -> bool {
        self.names.iter().any(|n| n.kid.as_deref() == Some(kid))
    }

    /// Whether some key of the set is the certificate with this `x5t#S256`.
    pub fn names_certificate(&self, x5t_s256: &str) -> bool {
        self.names
            .iter()
            .any(|n| n.thumbprint.as_deref() == Some(x5t_s256))
    }

    /// Whether a transport key of this set is the certificate with this `x5t#S256`.
    pub fn has_tls_key(&self, x5t_s256: &str) -> bool {
        self.names
            .iter()
            .any(|n| n.tls && n.thumbprint.as_deref() == Some(x5t_s256))
    }

    /// The key with this `kid`.
    pub fn find(&self, kid: &str) -> Option<&Arc<VerificationKey>> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }
}

/// A key's certificate thumbprint: its `x5t#S256`, or that of its first `x5c` certificate
/// (standard base64 DER, RFC 7517 §4.7).
fn cert_thumbprint(raw: &Value) -> Option<String> {
    let obj = raw.as_object()?;
    if let Some(t) = obj.get("x5t#S256").and_then(Value::as_str) {
        return Some(t.to_string());
    }
    let first = obj.get("x5c")?.as_array()?.first()?.as_str()?;
    let der = base64::engine::general_purpose::STANDARD
        .decode(first)
        .ok()?;
    Some(URL_SAFE_NO_PAD.encode(<sha2::Sha256 as sha2::Digest>::digest(&der)))
}

fn usable_key(raw: &Value) -> Option<VerificationKey> {
    let obj = raw.as_object()?;
    match obj.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        _ => return None,
    }
    let b64 = |name: &str| URL_SAFE_NO_PAD.decode(obj.get(name)?.as_str()?).ok();
    let (family, material) = match obj.get("kty")?.as_str()? {
        "RSA" => {
            let (n, e) = (b64("n")?, b64("e")?);
            let start = n.iter().position(|b| *b != 0)?;
            let bits = (n.len() - start) * 8 - n[start].leading_zeros() as usize;
            if bits < MIN_RSA_BITS {
                return None;
            }
            let e = &e[e.iter().position(|b| *b != 0)?..];
            let spki = aws_lc_rs::rsa::PublicKeyComponents { n: &n[start..], e }
                .as_der()
                .ok()?;
            (KeyFamily::Rsa, spki.as_ref().to_vec())
        }
        "EC" => {
            let (family, size) = match obj.get("crv")?.as_str()? {
                "P-256" => (KeyFamily::EcP256, 32),
                "P-384" => (KeyFamily::EcP384, 48),
                _ => return None,
            };
            let (x, y) = (b64("x")?, b64("y")?);
            if x.len() != size || y.len() != size {
                return None;
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (family, point)
        }
        _ => return None,
    };
    Some(VerificationKey {
        kid: obj.get("kid").and_then(Value::as_str).map(str::to_string),
        family,
        alg: obj.get("alg").and_then(Value::as_str).map(str::to_string),
        material,
        parsed: Default::default(),
    })
}

/// Picks the key for `kid` and `alg` from a set.
pub fn select(
    set: &KeySet,
    kid: &str,
    alg: SigningAlg,
    location: &str,
) -> Result<Arc<VerificationKey>, JwksError> {
    let key = set
        .find(kid)
        .ok_or_else(|| JwksError::UnknownKid(printable(kid, 80), printable(location, 200)))?;
    if !key.fits(alg) {
        return Err(JwksError::KeyUnfit(
            printable(kid, 80),
            alg.as_str().to_string(),
        ));
    }
    Ok(key.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rsa_jwk(bits: usize) -> Value {
        // A syntactically valid modulus of the given size (not a real key; parse only).
        let mut n = vec![0xC3u8; bits / 8];
        n[bits / 8 - 1] |= 1;
        json!({"kty": "RSA", "kid": format!("rsa{bits}"), "n": URL_SAFE_NO_PAD.encode(&n), "e": "AQAB"})
    }

    #[test]
    fn keeps_only_usable_signature_keys() {
        let mut enc = rsa_jwk(2048);
        enc["use"] = json!("enc");
        enc["kid"] = json!("enc");
        let doc = json!({"keys": [
            rsa_jwk(2048),
            rsa_jwk(1024),
            enc,
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"},
            "not an object"
        ]});
        let set = KeySet::parse(doc.to_string().as_bytes()).unwrap();
        let kids: Vec<_> = set.keys.iter().map(|k| k.kid.clone().unwrap()).collect();
        assert_eq!(kids, ["rsa2048"]);
    }

    #[test]
    fn rsa_key_does_not_fit_es256_and_alg_must_match() {
        let mut jwk = rsa_jwk(2048);
        jwk["alg"] = json!("PS256");
        let set = KeySet::parse(json!({"keys": [jwk]}).to_string().as_bytes()).unwrap();
        assert!(select(&set, "rsa2048", SigningAlg::PS256, "x").is_ok());
        assert!(matches!(
            select(&set, "rsa2048", SigningAlg::ES256, "x"),
            Err(JwksError::KeyUnfit(..))
        ));
        assert!(matches!(
            select(&set, "rsa2048", SigningAlg::RS256, "x"),
            Err(JwksError::KeyUnfit(..))
        ));
        assert!(matches!(
            select(&set, "other", SigningAlg::PS256, "x"),
            Err(JwksError::UnknownKid(..))
        ));
    }

    #[test]
    fn parsed_keys_verify_real_signatures_for_their_algorithm_only() {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{KeyPair, RSA_PSS_SHA256};
        let rng = SystemRandom::new();
        let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let public = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(rsa.public_key());
        let ec = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        )
        .unwrap();
        let point = ec.public_key().as_ref();
        let doc = json!({"keys": [
            {"kty": "RSA", "kid": "r", "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e)},
            {"kty": "EC", "kid": "e", "crv": "P-256",
             "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])},
        ]});
        let set = KeySet::parse(doc.to_string().as_bytes()).unwrap();
        let message = b"header.payload";
        let mut pss = vec![0; rsa.public_modulus_len()];
        rsa.sign(&RSA_PSS_SHA256, &rng, message, &mut pss).unwrap();
        let es = ec.sign(&rng, message).unwrap();
        let (r, e) = (set.find("r").unwrap(), set.find("e").unwrap());
        assert!(r.verify(SigningAlg::PS256, message, &pss));
        // Twice: the second use takes the cached parsed key.
        assert!(r.verify(SigningAlg::PS256, message, &pss));
        assert!(!r.verify(SigningAlg::PS256, b"header.other", &pss));
        assert!(!r.verify(SigningAlg::RS256, message, &pss));
        assert!(e.verify(SigningAlg::ES256, message, es.as_ref()));
        assert!(!e.verify(SigningAlg::ES256, b"header.other", es.as_ref()));
        assert!(!e.verify(SigningAlg::PS256, message, es.as_ref()));
    }

    #[test]
    fn not_a_jwks_is_an_error() {
        assert!(KeySet::parse(b"[]").is_err());
        assert!(KeySet::parse(b"{\"keys\": 3}").is_err());
        assert!(KeySet::parse(b"\xff").is_err());
    }

    /// Transport keys are kept as thumbprints: their own `x5t#S256`, or that of `x5c[0]`;
    /// `use: tls` keys never verify signatures.
    #[test]
    fn tls_keys_are_thumbprints() {
        use base64::engine::general_purpose::STANDARD;
        let der = b"not really DER, but hashed all the same";
        let of_der = URL_SAFE_NO_PAD.encode(<sha2::Sha256 as sha2::Digest>::digest(der));
        let mut tls_rsa = rsa_jwk(2048);
        tls_rsa["use"] = json!("tls");
        tls_rsa["x5t#S256"] = json!("own-thumbprint");
        let doc = json!({"keys": [
            tls_rsa,
            {"kty": "RSA", "use": "tls", "x5c": [STANDARD.encode(der), "ignored"]},
            {"kty": "RSA", "use": "tls"},
            {"kty": "RSA", "use": "enc", "x5t#S256": "enc-key", "kid": "k-enc"},
            rsa_jwk(2048),
        ]});
        let set = KeySet::parse(doc.to_string().as_bytes()).unwrap();
        assert!(set.has_tls_key("own-thumbprint") && set.has_tls_key(&of_der));
        assert!(!set.has_tls_key("enc-key"));
        assert_eq!(set.keys.len(), 1, "only the signature key verifies");
        // As a set of revoked keys: every key's kid and certificate, whatever its use.
        assert!(set.names_certificate("enc-key") && set.names_certificate(&of_der));
        assert!(!set.names_certificate("nothing"));
        assert!(!set.names_kid("nothing"));
        assert!(set.names_kid("k-enc"));
    }
}
