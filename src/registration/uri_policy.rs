//! Step 7, the optional URI policies of WSO2's toolkit:
//!
//! - `uri_validation.enable`: the SSA's policy, client, terms-of-service and logo URIs must be
//!   https and resolve to a page (a GET answers 2xx or 3xx);
//! - `hostname_validation.enable`: those URIs' hosts must equal the host of every redirect URI.
//!
//! URIs that the SSA does not carry are skipped (WSO2 throws a NullPointerException here).

use super::error_code::ErrorCode;
use super::policy::Policy;
use super::ssa::Ssa;
use crate::text::printable;

/// The SSA claims these policies look at.
pub const SSA_URI_CLAIMS: &[&str] = &[
    "software_policy_uri",
    "software_client_uri",
    "software_tos_uri",
    "software_logo_uri",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriPolicyError {
    #[error("`{0}` of the software statement is not an https URI")]
    NotHttps(&'static str),
    #[error("`{0}` of the software statement does not resolve: {1}")]
    Unresolvable(&'static str, String),
    #[error("the host of `{0}` ({1}) differs from the redirect URIs' host ({2})")]
    HostMismatch(&'static str, String, String),
}

impl UriPolicyError {
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InvalidClientMetadata
    }
}

fn present_uris(ssa: &Ssa) -> impl Iterator<Item = (&'static str, &str)> {
    SSA_URI_CLAIMS
        .iter()
        .filter_map(|name| ssa.str_claim(name).map(|v| (*name, v)))
}

/// The hostname rule; pure.
pub fn check_hostnames(ssa: &Ssa, redirect_uris: &[String]) -> Result<(), UriPolicyError> {
    let redirect_hosts: Vec<String> = redirect_uris
        .iter()
        .filter_map(|u| {
            url::Url::parse(u)
                .ok()?
                .host_str()
                .map(str::to_ascii_lowercase)
        })
        .collect();
    for (name, uri) in present_uris(ssa) {
        let host = url::Url::parse(uri)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .ok_or(UriPolicyError::NotHttps(name))?;
        if let Some(other) = redirect_hosts.iter().find(|h| **h != host) {
            return Err(UriPolicyError::HostMismatch(
                name,
                printable(&host, 80),
                printable(other, 80),
            ));
        }
    }
    Ok(())
}

/// The resolvability rule: one GET per URI, with the outbound client's timeout.
pub async fn check_resolvable(ssa: &Ssa, http: &reqwest::Client) -> Result<(), UriPolicyError> {
    for (name, uri) in present_uris(ssa) {
        let url = url::Url::parse(uri).map_err(|_| UriPolicyError::NotHttps(name))?;
        if url.scheme() != "https" {
            return Err(UriPolicyError::NotHttps(name));
        }
        match http.get(url).send().await {
            Ok(r) if r.status().is_success() || r.status().is_redirection() => {}
            Ok(r) => {
                return Err(UriPolicyError::Unresolvable(
                    name,
                    format!("HTTP status {}", r.status().as_u16()),
                ));
            }
            Err(e) => {
                let why = if e.is_timeout() {
                    "timed out"
                } else {
                    "connection failed"
                };
                return Err(UriPolicyError::Unresolvable(name, why.into()));
            }
        }
    }
    Ok(())
}

/// Runs the enabled policies.
pub async fn check(
    ssa: &Ssa,
    redirect_uris: &[String],
    policy: &Policy,
    http: &reqwest::Client,
) -> Result<(), UriPolicyError> {
    if policy.hostname_validation {
        check_hostnames(ssa, redirect_uris)?;
    }
    if policy.uri_validation {
        check_resolvable(ssa, http).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::ssa::parse_claims;
    use serde_json::json;

    fn ssa(extra: serde_json::Value) -> Ssa {
        let mut v = json!({
            "iss": "OpenBanking Ltd", "software_id": "abc", "org_id": "org",
            "software_jwks_endpoint": "https://k.example.com/j", "software_roles": ["AISP"],
            "org_status": "Active"
        });
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        parse_claims("raw", v.as_object().cloned().unwrap()).unwrap()
    }

    #[test]
    fn hostnames() {
        let redirects = vec!["https://tpp.example.com/cb".to_string()];
        assert!(
            check_hostnames(&ssa(json!({})), &redirects).is_ok(),
            "absent URIs are skipped"
        );
        let good = ssa(json!({"software_logo_uri": "https://TPP.example.com/logo.png"}));
        assert!(check_hostnames(&good, &redirects).is_ok());
        let bad = ssa(json!({"software_tos_uri": "https://other.example.com/tos"}));
        assert!(matches!(
            check_hostnames(&bad, &redirects),
            Err(UriPolicyError::HostMismatch("software_tos_uri", ..))
        ));
        let mixed = vec![
            "https://tpp.example.com/cb".to_string(),
            "https://b.example.com/cb".to_string(),
        ];
        assert!(check_hostnames(&good, &mixed).is_err());
    }
}
