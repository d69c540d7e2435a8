//! The DCR versions served, as data: each version is a row of [`PROFILES`] that the
//! registration steps consult (grant types, application types, CIBA claims, the subject DN
//! rule, its paths). Adding a version is a variant, a row and its tests; no step branches on
//! the version itself.

use super::alg::SigningAlg;
use super::grant::{ApplicationType, GrantType};
use super::protocol::protocol_enum;

protocol_enum! {
    /// An OBIE DCR specification version.
    SpecVersion, "a DCR version this server implements" {
        V3_2 = "3.2",
        V3_3 = "3.3",
        V3_4 = "3.4",
    }
}

/// How `tls_client_auth_subject_dn` is checked, beyond matching the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubjectDnRule {
    /// The specification's length limit. v3.2/v3.3 say 128, which real eIDAS DNs exceed, so
    /// there it applies only with `strict_subject_dn_length` (else [`MAX_SUBJECT_DN_LEN`]).
    pub spec_max_len: usize,
    /// Whether the limit always applies (v3.4, whose limit is the lenient one).
    pub always_spec_len: bool,
    /// v3.4's pattern: `CN=` first, then `attr=value` pairs, no escaped commas.
    pub cn_first_pattern: bool,
}

/// The longest `tls_client_auth_subject_dn` ever accepted.
pub const MAX_SUBJECT_DN_LEN: usize = 512;

/// What one version allows.
#[derive(Debug, PartialEq, Eq)]
pub struct Profile {
    pub version: SpecVersion,
    /// `POST` here; `{path}/{ClientId}` for GET, PUT and DELETE.
    pub register_path: &'static str,
    /// The route template of one registration (the logs' and metrics' `route`).
    pub client_route: &'static str,
    pub grant_types: &'static [GrantType],
    pub application_types: &'static [ApplicationType],
    /// Whether the `backchannel_*` claims belong to this version: required with the CIBA
    /// grant and refused without it. Where they do not, they are ignored (v3.2 §2 lets
    /// unknown claims pass) and the CIBA grant is not allowed.
    pub ciba: bool,
    pub subject_dn: SubjectDnRule,
}

/// `backchannel_authentication_request_signing_alg` values FAPI-CIBA allows (further limited
/// to `signing_algorithms`).
pub const CIBA_SIGNING_ALGS: &[SigningAlg] = &[SigningAlg::PS256, SigningAlg::ES256];
/// Longest `backchannel_client_notification_endpoint` (v3.3: Max256Text).
pub const MAX_NOTIFICATION_ENDPOINT_LEN: usize = 256;

const V32_GRANTS: &[GrantType] = &[
    GrantType::AuthorizationCode,
    GrantType::ClientCredentials,
    GrantType::RefreshToken,
];
const V33_GRANTS: &[GrantType] = &[
    GrantType::AuthorizationCode,
    GrantType::ClientCredentials,
    GrantType::RefreshToken,
    GrantType::Ciba,
];
const V34_GRANTS: &[GrantType] = &[
    GrantType::AuthorizationCode,
    GrantType::ClientCredentials,
    GrantType::RefreshToken,
    GrantType::Ciba,
    GrantType::JwtBearer,
];
const WEB_MOBILE: &[ApplicationType] = &[ApplicationType::Web, ApplicationType::Mobile];
const WEB_NATIVE: &[ApplicationType] = &[ApplicationType::Web, ApplicationType::Native];
const DN_128: SubjectDnRule = SubjectDnRule {
    spec_max_len: 128,
    always_spec_len: false,
    cn_first_pattern: false,
};

/// One row per version, in [`SpecVersion::ALL`] order.
pub const PROFILES: &[Profile] = &[
    Profile {
        version: SpecVersion::V3_2,
        register_path: "/open-banking/v3.2/register",
        client_route: "/open-banking/v3.2/register/{ClientId}",
        grant_types: V32_GRANTS,
        application_types: WEB_MOBILE,
        ciba: false,
        subject_dn: DN_128,
    },
    Profile {
        version: SpecVersion::V3_3,
        register_path: "/open-banking/v3.3/register",
        client_route: "/open-banking/v3.3/register/{ClientId}",
        grant_types: V33_GRANTS,
        application_types: WEB_MOBILE,
        ciba: true,
        subject_dn: DN_128,
    },
    Profile {
        version: SpecVersion::V3_4,
        register_path: "/open-banking/v3.4/register",
        client_route: "/open-banking/v3.4/register/{ClientId}",
        grant_types: V34_GRANTS,
        application_types: WEB_NATIVE,
        ciba: true,
        subject_dn: SubjectDnRule {
            spec_max_len: MAX_SUBJECT_DN_LEN,
            always_spec_len: true,
            cn_first_pattern: true,
        },
    },
];

impl SpecVersion {
    /// This version's row of [`PROFILES`].
    pub fn profile(self) -> &'static Profile {
        // PROFILES is in ALL order (a test holds it), so the index is the variant's.
        &PROFILES[self as usize]
    }
}

impl SubjectDnRule {
    /// The longest DN accepted: the spec's when it always applies or `strict` asks for it.
    pub fn max_len(self, strict: bool) -> usize {
        if self.always_spec_len || strict {
            self.spec_max_len
        } else {
            MAX_SUBJECT_DN_LEN
        }
    }
}

/// v3.4's pattern `^[Cc][Nn]=[^,]+(?:,[^,\s]+=[^,]+)*$` (its length look-ahead is the length
/// rule): `CN=` and a value first, then `,attr=value` pairs with no space in the attribute and
/// no comma anywhere else (the pattern has no escapes).
pub fn matches_cn_first_pattern(dn: &str) -> bool {
    let mut parts = dn.split(',');
    let first_ok = parts.next().is_some_and(|first| {
        first.len() > 3 && first.is_char_boundary(3) && first[..3].eq_ignore_ascii_case("CN=")
    });
    first_ok
        && parts.all(|part| match part.split_once('=') {
            Some((attr, value)) => {
                !attr.is_empty() && !attr.chars().any(char::is_whitespace) && !value.is_empty()
            }
            None => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_in_version_order_and_paths_name_their_version() {
        assert_eq!(PROFILES.len(), SpecVersion::ALL.len());
        for (v, p) in SpecVersion::ALL.iter().zip(PROFILES) {
            assert_eq!(*v, p.version);
            assert_eq!(v.profile(), p);
            assert_eq!(p.register_path, format!("/open-banking/v{v}/register"));
            assert_eq!(p.client_route, format!("{}/{{ClientId}}", p.register_path));
        }
    }

    #[test]
    fn the_dn_length_rule() {
        let v32 = SpecVersion::V3_2.profile().subject_dn;
        let v34 = SpecVersion::V3_4.profile().subject_dn;
        assert_eq!(v32.max_len(false), 512);
        assert_eq!(v32.max_len(true), 128);
        assert_eq!(v34.max_len(false), 512);
        assert_eq!(v34.max_len(true), 512);
    }

    #[test]
    fn the_v34_dn_pattern() {
        for ok in [
            "CN=abc",
            "cn=abc,organizationIdentifier=PSDGB-OB-001,O=Sandbox TPP Ltd,C=GB",
            "Cn=x,2.5.4.97=PSDGB-FCA-1",
            "CN=a=b,O=c=d",
            "CN= spaced value ,O=x",
        ] {
            assert!(matches_cn_first_pattern(ok), "{ok}");
        }
        for bad in [
            "",
            "CN=",
            "O=Bank,CN=abc",
            " CN=abc",
            "CN=abc,",
            "CN=abc,O",
            "CN=abc,O=",
            "CN=abc,=x",
            "CN=abc, O=x",
            "CN=abc,O R=x",
            "CN=a\\,b",
            "CN=abc,,O=x",
            "CÑ=abc",
        ] {
            assert!(!matches_cn_first_pattern(bad), "{bad}");
        }
    }
}
