//! Step 6, redirect URIs: each one is https, not localhost or a loopback address, has no
//! fragment, is at most 256 characters, and is one of the SSA's `software_redirect_uris`.
//! Every URI is checked, not just any one of them.

use std::net::IpAddr;

use super::error_code::ErrorCode;
use super::ssa::Ssa;
use crate::text::printable;

/// Longest redirect URI (v3.2).
pub const MAX_URI_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedirectUriError {
    #[error("redirect URI `{0}` is longer than 256 characters")]
    TooLong(String),
    #[error("redirect URI `{0}` is not an absolute URI")]
    NotAbsolute(String),
    #[error("redirect URI `{0}` must use https")]
    NotHttps(String),
    #[error("redirect URI `{0}` must not point at localhost or a loopback address")]
    Localhost(String),
    #[error("redirect URI `{0}` must not have a fragment")]
    Fragment(String),
    #[error("redirect URI `{0}` is not one of the software statement's software_redirect_uris")]
    NotInSsa(String),
}

impl RedirectUriError {
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InvalidRedirectUri
    }
}

pub(super) fn is_local_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback() || ip.is_unspecified(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback() || ip.is_unspecified(),
        None => true,
    }
}

/// Checks one URI's form.
pub fn check_form(uri: &str) -> Result<(), RedirectUriError> {
    let shown = || printable(uri, 100);
    if uri.chars().count() > MAX_URI_LEN {
        return Err(RedirectUriError::TooLong(shown()));
    }
    if uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(RedirectUriError::NotAbsolute(shown()));
    }
    let url = url::Url::parse(uri).map_err(|_| RedirectUriError::NotAbsolute(shown()))?;
    if url.scheme() != "https" {
        return Err(RedirectUriError::NotHttps(shown()));
    }
    if url.host().is_none() {
        return Err(RedirectUriError::NotAbsolute(shown()));
    }
    if is_local_host(&url) {
        return Err(RedirectUriError::Localhost(shown()));
    }
    if url.fragment().is_some() || uri.contains('#') {
        return Err(RedirectUriError::Fragment(shown()));
    }
    Ok(())
}

/// Checks every requested URI and returns them without duplicates, in order.
pub fn check(requested: &[String], ssa: &Ssa) -> Result<Vec<String>, RedirectUriError> {
    let mut out: Vec<String> = Vec::with_capacity(requested.len());
    for uri in requested {
        check_form(uri)?;
        // Exact string match, as the spec asks: no normalisation that could widen the set.
        if !ssa.software_redirect_uris.iter().any(|s| s == uri) {
            return Err(RedirectUriError::NotInSsa(printable(uri, 100)));
        }
        if !out.contains(uri) {
            out.push(uri.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert!(check_form("https://tpp.example.com/cb?x=1").is_ok());
        for (uri, want) in [
            ("http://tpp.example.com/cb", "NotHttps"),
            ("https://localhost/cb", "Localhost"),
            ("https://LOCALHOST./cb", "Localhost"),
            ("https://app.localhost/cb", "Localhost"),
            ("https://127.0.0.1/cb", "Localhost"),
            ("https://127.1.2.3/cb", "Localhost"),
            ("https://[::1]/cb", "Localhost"),
            ("https://tpp.example.com/cb#frag", "Fragment"),
            ("https://tpp.example.com/cb#", "Fragment"),
            ("/relative", "NotAbsolute"),
            ("https://tpp.example.com/c b", "NotAbsolute"),
            ("https://tpp.example.com/\n", "NotAbsolute"),
            ("com.example.app:/cb", "NotHttps"),
        ] {
            let e = check_form(uri).unwrap_err();
            assert!(format!("{e:?}").starts_with(want), "{uri}: {e:?}");
        }
        let long = format!("https://tpp.example.com/{}", "a".repeat(240));
        assert!(matches!(
            check_form(&long),
            Err(RedirectUriError::TooLong(_))
        ));
    }
}
