//! `[oauth]`: endpoints, tokens and introspection.

use serde::{Deserialize, Serialize};

use super::error::{Checker, ConfigError};
use super::types::HttpsUrl;
use crate::domain::DistinguishedName;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct OAuthConfig {
    #[serde(default)]
    pub endpoints: EndpointsConfig,
    #[serde(default)]
    pub token: TokenConfig,
    #[serde(default)]
    pub introspection: IntrospectionConfig,
}

/// Who may call `POST /introspect`: API gateways, identified by their mTLS certificate.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct IntrospectionConfig {
    /// `x5t#S256` values (base64url SHA-256 of the DER) of allowed client certificates.
    #[serde(default)]
    pub allowed_thumbprints: Vec<String>,
    /// Subject DNs (RFC 4514) of allowed client certificates, compared as RDN sets.
    #[serde(default)]
    pub allowed_subjects: Vec<DistinguishedName>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct EndpointsConfig {
    /// Advertised `registration_endpoint`; defaults to `{issuer}/open-banking/v3.2/register`.
    pub oauth2_dcr_url: Option<HttpsUrl>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TokenConfig {
    #[serde(default = "defaults::access_token_lifetime")]
    pub access_token_lifetime: u64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            access_token_lifetime: defaults::access_token_lifetime(),
        }
    }
}

impl OAuthConfig {
    pub(super) fn check(&self, c: &Checker<'_>) -> Result<(), ConfigError> {
        if self.token.access_token_lifetime == 0 {
            return Err(c.bad(
                "oauth.token.access_token_lifetime",
                "must be at least 1 second",
            ));
        }
        Ok(())
    }
}

mod defaults {
    pub fn access_token_lifetime() -> u64 {
        3600
    }
}
