//! JWS signing algorithms.

use super::protocol::protocol_enum;

protocol_enum! {
    /// The JWS algorithms that may ever be allowed (`signing_algorithms`). `none` and HS* are
    /// deliberately absent, so they cannot be switched on: a shared-secret or unsigned request
    /// proves nothing about the TPP.
    SigningAlg, "a supported signing algorithm" {
        PS256 = "PS256",
        ES256 = "ES256",
        RS256 = "RS256",
        PS384 = "PS384",
        PS512 = "PS512",
        ES384 = "ES384",
    }
}

/// The kind of public key an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    EcP256,
    EcP384,
}

impl SigningAlg {
    /// The key family that can verify this algorithm.
    pub const fn key_family(self) -> KeyFamily {
        match self {
            Self::PS256 | Self::PS384 | Self::PS512 | Self::RS256 => KeyFamily::Rsa,
            Self::ES256 => KeyFamily::EcP256,
            Self::ES384 => KeyFamily::EcP384,
        }
    }

    /// A dense index, for per-algorithm tables.
    pub const fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unsafe_ones_are_unknown() {
        for alg in SigningAlg::ALL {
            assert_eq!(alg.as_str().parse::<SigningAlg>(), Ok(*alg));
        }
        for bad in ["none", "HS256", "ps256", "RS384", ""] {
            assert!(bad.parse::<SigningAlg>().is_err(), "{bad}");
        }
        assert_eq!(
            SigningAlg::choices(),
            "PS256, ES256, RS256, PS384, PS512, ES384"
        );
        assert!(
            SigningAlg::ALL
                .iter()
                .enumerate()
                .all(|(i, a)| a.index() == i)
        );
    }
}
