//! The sandbox: a complete, generated Open Banking PKI for trying the server out.
//!
//! `dcr-server sandbox init` writes a test CA, a server certificate, a directory signing key
//! with its JWKS, and one TPP (org_id, software_id, an OB transport certificate with
//! OU=org_id and CN=software_id, signing keys with their JWKS, and an SSA). Nothing of it is
//! committed: private keys are generated on the machine that uses them.
//!
//! Layout of the directory:
//!
//! | file | what |
//! |---|---|
//! | `ca.pem`, `ca.key` | the test CA: trust anchor for server and transport certificates |
//! | `server.pem`, `server.key` | server certificate for localhost, 127.0.0.1, ::1 and the issuer's host (P-256) |
//! | `directory.key`, `directory.jwks` | the "OpenBanking Ltd" SSA signing key (RSA, PS256) |
//! | `tpp/transport.pem`, `tpp/transport.key` | the TPP's OB transport certificate |
//! | `tpp/signing-ps256.key`, `tpp/signing-es256.key`, `tpp/signing.jwks` | TPP signing keys |
//! | `tpp/tpp.json` | the TPP's identifiers and its `software_jwks_endpoint` |
//! | `tpp/ssa.jwt` | an SSA signed by the directory key |

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::domain::{AuthMethod, GrantType, SpecVersion};
use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// The SSA issuer name of the sandbox directory, as of the real OB Directory.
pub const DIRECTORY_ISSUER: &str = "OpenBanking Ltd";

/// Path of the sandbox TPP's JWKS on the server, when the sandbox is in use.
pub const TPP_JWKS_PATH: &str = "/sandbox/tpp.jwks";
/// Path of the sandbox directory's JWKS on the server, when the sandbox is in use.
pub const DIRECTORY_JWKS_PATH: &str = "/sandbox/directory.jwks";

/// The sandbox TPP's identifiers (`tpp/tpp.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TppInfo {
    /// The server's public base URL that the sandbox was made for.
    #[serde(default)]
    pub issuer: String,
    pub org_id: String,
    pub org_name: String,
    pub software_id: String,
    pub software_client_name: String,
    pub software_jwks_endpoint: String,
    pub software_redirect_uris: Vec<String>,
    pub software_roles: Vec<String>,
    /// `kid` of the RSA key (PS256) and of the P-256 key (ES256) in `signing.jwks`.
    pub kid_ps256: String,
    pub kid_es256: String,
    /// The transport certificate's subject, RFC 4514.
    pub transport_subject_dn: String,
}

/// Random Base62 text, the format of OB ids.
pub fn base62(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The public JWK of a key pair, with its RFC 7638 thumbprint as `kid`.
pub fn public_jwk(key: &KeyPair, alg: &str) -> Result<Value> {
    let spki = key.subject_public_key_info();
    let (_, info) = SubjectPublicKeyInfo::from_der(&spki).context("parsing the public key")?;
    let mut jwk = match info.parsed().context("parsing the public key")? {
        PublicKey::RSA(rsa) => {
            let strip = |b: &[u8]| {
                let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
                URL_SAFE_NO_PAD.encode(&b[start..])
            };
            json!({"kty": "RSA", "e": strip(rsa.exponent), "n": strip(rsa.modulus)})
        }
        PublicKey::EC(point) => {
            let data = point.data();
            if data.len() != 65 || data[0] != 4 {
                bail!("only uncompressed P-256 points are supported");
            }
            json!({
                "kty": "EC",
                "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(&data[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&data[33..65]),
            })
        }
        _ => bail!("unsupported key type"),
    };
    let kid = jwk_thumbprint(&jwk)?;
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    jwk["alg"] = json!(alg);
    Ok(jwk)
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url) of an RSA or EC public JWK.
pub fn jwk_thumbprint(jwk: &Value) -> Result<String> {
    let s = |k: &str| -> Result<&str> {
        jwk[k]
            .as_str()
            .with_context(|| format!("JWK member `{k}` missing"))
    };
    // Members in lexicographic order, no whitespace, as RFC 7638 §3.2 requires.
    let canonical = match s("kty")? {
        "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, s("e")?, s("n")?),
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            s("crv")?,
            s("x")?,
            s("y")?
        ),
        other => bail!("unsupported kty {other}"),
    };
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    use std::io::Write;
    let mut f = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// A certificate authority that can issue more certificates (tests issue eIDAS-style ones).
pub struct SandboxCa {
    pub cert_pem: String,
    key: KeyPair,
}

impl SandboxCa {
    /// A new self-signed CA.
    pub fn generate(common_name: &str) -> Result<Self> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "GB");
        dn.push(DnType::OrganizationName, "dcr-server sandbox");
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2045, 1, 1);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key,
        })
    }

    /// Loads `ca.pem` and `ca.key` from a sandbox directory.
    pub fn load(dir: &Path) -> Result<Self> {
        let cert_pem = read(&dir.join("ca.pem"))?;
        let key = KeyPair::from_pem(&read(&dir.join("ca.key"))?).context("parsing ca.key")?;
        Ok(Self { cert_pem, key })
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Issues a certificate. Returns (certificate PEM, private key PEM).
    pub fn issue(
        &self,
        subject: &[(DnType, String)],
        sans: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<(String, String)> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(
            sans.iter()
                .filter(|s| s.parse::<std::net::IpAddr>().is_err())
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )?;
        for ip in sans
            .iter()
            .filter_map(|s| s.parse::<std::net::IpAddr>().ok())
        {
            params.subject_alt_names.push(SanType::IpAddress(ip));
        }
        let mut dn = DistinguishedName::new();
        for (ty, value) in subject {
            dn.push(ty.clone(), value.as_str());
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2044, 1, 1);
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A CRL, signed by this CA, that revokes the given certificates (PEM).
    pub fn crl_pem(&self, revoked: &[&str]) -> Result<String> {
        let mut revoked_certs = Vec::new();
        for pem in revoked {
            let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
                .context("parsing a certificate to revoke")?;
            let (_, cert) = x509_parser::parse_x509_certificate(&der)
                .map_err(|e| anyhow::anyhow!("parsing a certificate to revoke: {e}"))?;
            revoked_certs.push(rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(cert.raw_serial()),
                revocation_time: rcgen::date_time_ymd(2025, 1, 1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            });
        }
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2025, 1, 1),
            next_update: rcgen::date_time_ymd(2044, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?;
        Ok(params.signed_by(&issuer)?.pem()?)
    }

    /// An OB-style transport certificate: C=GB, O=OpenBanking, OU=org_id, CN=software_id.
    pub fn issue_ob_transport(&self, org_id: &str, software_id: &str) -> Result<(String, String)> {
        self.issue(
            &[
                (DnType::CountryName, "GB".into()),
                (DnType::OrganizationName, "OpenBanking".into()),
                (DnType::OrganizationalUnitName, org_id.into()),
                (DnType::CommonName, software_id.into()),
            ],
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }
}

/// Whether `dir` holds a complete sandbox.
pub fn exists(dir: &Path) -> bool {
    [
        "ca.pem",
        "server.pem",
        "server.key",
        "directory.key",
        "directory.jwks",
        "tpp/tpp.json",
        "tpp/signing.jwks",
        "tpp/ssa.jwt",
    ]
    .iter()
    .all(|f| dir.join(f).is_file())
}

/// Writes a new sandbox into `dir`. `issuer` is the server's public base URL: the TPP's
/// `software_jwks_endpoint` points at the server itself, which serves it in sandbox mode.
pub fn init(dir: &Path, issuer: &str) -> Result<TppInfo> {
    let issuer = issuer.trim_end_matches('/');
    let ca = SandboxCa::generate("dcr-server sandbox CA")?;
    write_file(&dir.join("ca.pem"), ca.cert_pem.as_bytes(), false)?;
    write_file(&dir.join("ca.key"), ca.key_pem().as_bytes(), true)?;

    let mut names: Vec<String> = LOCAL_NAMES.iter().map(|n| n.to_string()).collect();
    names.extend(issuer_host(issuer).filter(|h| !names.contains(h)));
    write_server_certificate(dir, &ca, &names)?;

    let directory = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?;
    let directory_jwk = public_jwk(&directory, "PS256")?;
    write_file(
        &dir.join("directory.key"),
        directory.serialize_pem().as_bytes(),
        true,
    )?;
    write_file(
        &dir.join("directory.jwks"),
        serde_json::to_string_pretty(&json!({"keys": [directory_jwk]}))?.as_bytes(),
        false,
    )?;

    let org_id = format!("0015800001{}", base62(8));
    let software_id = base62(22);
    let (transport_pem, transport_key) = ca.issue_ob_transport(&org_id, &software_id)?;
    write_file(
        &dir.join("tpp/transport.pem"),
        transport_pem.as_bytes(),
        false,
    )?;
    write_file(
        &dir.join("tpp/transport.key"),
        transport_key.as_bytes(),
        true,
    )?;

    let rsa = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?;
    let ec = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let rsa_jwk = public_jwk(&rsa, "PS256")?;
    let ec_jwk = public_jwk(&ec, "ES256")?;
    write_file(
        &dir.join("tpp/signing-ps256.key"),
        rsa.serialize_pem().as_bytes(),
        true,
    )?;
    write_file(
        &dir.join("tpp/signing-es256.key"),
        ec.serialize_pem().as_bytes(),
        true,
    )?;
    write_file(
        &dir.join("tpp/signing.jwks"),
        serde_json::to_string_pretty(&json!({"keys": [rsa_jwk.clone(), ec_jwk.clone()]}))?
            .as_bytes(),
        false,
    )?;

    let info = TppInfo {
        issuer: issuer.to_string(),
        software_client_name: format!("Sandbox TPP {}", &software_id[..6]),
        org_name: "Sandbox TPP Ltd".into(),
        software_jwks_endpoint: format!("{issuer}{TPP_JWKS_PATH}"),
        software_redirect_uris: vec![
            "https://tpp.example.com/callback".into(),
            "https://tpp.example.com/callback2".into(),
        ],
        software_roles: vec!["AISP".into(), "PISP".into(), "CBPII".into()],
        kid_ps256: rsa_jwk["kid"].as_str().unwrap_or_default().to_string(),
        kid_es256: ec_jwk["kid"].as_str().unwrap_or_default().to_string(),
        transport_subject_dn: format!("CN={software_id},OU={org_id},O=OpenBanking,C=GB"),
        org_id,
        software_id,
    };
    write_file(
        &dir.join("tpp/tpp.json"),
        serde_json::to_string_pretty(&info)?.as_bytes(),
        false,
    )?;
    let sandbox = Sandbox::load(dir)?;
    write_file(&dir.join("tpp/ssa.jwt"), sandbox.ssa()?.as_bytes(), false)?;
    Ok(info)
}

/// The names every sandbox server certificate carries, besides the issuer's host.
const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The host of `issuer` as a certificate names it: a DNS name in lower case, or an IP address
/// without brackets.
fn issuer_host(issuer: &str) -> Option<String> {
    match url::Url::parse(issuer).ok()?.host()? {
        url::Host::Domain(d) => Some(d.to_ascii_lowercase()),
        url::Host::Ipv4(ip) => Some(ip.to_string()),
        url::Host::Ipv6(ip) => Some(ip.to_string()),
    }
}

/// Issues the server certificate for `names` (DNS names or IP addresses) from the sandbox CA
/// and writes it with its key. Each file is written beside and renamed into place, the key
/// first: a crash in between leaves a certificate that does not match, which the next start
/// replaces (see [`ensure_server_certificate`]).
fn write_server_certificate(dir: &Path, ca: &SandboxCa, names: &[String]) -> Result<()> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    // P-256: handshakes are about 3x cheaper than with RSA-2048.
    let (server_pem, server_key) = ca.issue(
        &[
            (DnType::OrganizationName, "dcr-server sandbox".into()),
            (DnType::CommonName, "localhost".into()),
        ],
        &names,
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    for (name, contents, private) in [
        ("server.key", &server_key, true),
        ("server.pem", &server_pem, false),
    ] {
        let staged = dir.join(format!(".{name}.new"));
        write_file(&staged, contents.as_bytes(), private)?;
        std::fs::rename(&staged, dir.join(name))
            .with_context(|| format!("replacing {}", dir.join(name).display()))?;
    }
    Ok(())
}

/// The DNS names (lower case) and IP addresses of a PEM certificate's subjectAltName.
fn certificate_names(cert_pem: &str) -> Result<Vec<String>> {
    let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .context("parsing server.pem")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow::anyhow!("parsing server.pem: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => {
                    names.push(d.to_ascii_lowercase());
                }
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).map(std::net::IpAddr::from).ok(),
                        16 => <[u8; 16]>::try_from(*bytes)
                            .map(std::net::IpAddr::from)
                            .ok(),
                        _ => None,
                    };
                    names.extend(ip.map(|ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    Ok(names)
}

/// What [`ensure_server_certificate`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCertificate {
    /// It names the issuer's host already (or the issuer has no host to name).
    Kept,
    /// A new one was issued by the sandbox CA: the names of the old one plus `added`.
    Renewed { added: String, names: Vec<String> },
}

/// Makes sure the sandbox's server certificate names the host of `issuer` (a sandbox made
/// before certificates named it, or for another issuer, lacks it). If it does not, a new
/// server certificate and key are issued by the sandbox CA, for the old certificate's names
/// plus that host; nothing else of the sandbox changes (the CA, the directory and the TPP,
/// its keys and `tpp.json` stay as they are).
pub fn ensure_server_certificate(dir: &Path, issuer: &str) -> Result<ServerCertificate> {
    let Some(host) = issuer_host(issuer) else {
        return Ok(ServerCertificate::Kept);
    };
    let mut names = certificate_names(&read(&dir.join("server.pem"))?)?;
    if names.contains(&host) {
        return Ok(ServerCertificate::Kept);
    }
    for local in LOCAL_NAMES {
        if !names.iter().any(|n| n == local) {
            names.push(local.to_string());
        }
    }
    names.push(host.clone());
    let ca = SandboxCa::load(dir).context("the sandbox CA, to issue the server certificate")?;
    write_server_certificate(dir, &ca, &names)?;
    Ok(ServerCertificate::Renewed { added: host, names })
}

/// A loaded sandbox, able to sign SSAs, registration requests and client assertions.
pub struct Sandbox {
    pub dir: PathBuf,
    pub tpp: TppInfo,
    directory_key: EncodingKey,
    directory_kid: String,
    ps256: EncodingKey,
    es256: EncodingKey,
}

/// Options for [`Sandbox::request`].
#[derive(Debug, Clone)]
pub struct RequestOptions {
    pub auth_method: String,
    /// `PS256` or `ES256`.
    pub alg: String,
    pub aud: String,
    /// Seconds until `exp`.
    pub lifetime: i64,
    /// The DCR version whose rules the request follows.
    pub version: SpecVersion,
    /// Register the CIBA grant type with its claims (v3.3 and later).
    pub ciba: bool,
}

impl Default for RequestOptions {
    fn default() -> Self {
        Self {
            auth_method: "private_key_jwt".into(),
            alg: "PS256".into(),
            aud: "https://localhost:8243".into(),
            lifetime: 300,
            version: SpecVersion::V3_2,
            ciba: false,
        }
    }
}

/// `scheme://host[:port]` of a URL (the URL itself if it does not parse).
fn origin(url: &str) -> String {
    url::Url::parse(url).map_or_else(|_| url.to_string(), |u| u.origin().ascii_serialization())
}

impl Sandbox {
    pub fn load(dir: &Path) -> Result<Self> {
        let tpp: TppInfo = serde_json::from_str(&read(&dir.join("tpp/tpp.json"))?)
            .context("parsing tpp/tpp.json")?;
        let jwks: Value = serde_json::from_str(&read(&dir.join("directory.jwks"))?)
            .context("parsing directory.jwks")?;
        let directory_kid = jwks["keys"][0]["kid"]
            .as_str()
            .context("directory.jwks has no kid")?
            .to_string();
        let rsa_pem = |name: &str| -> Result<EncodingKey> {
            EncodingKey::from_rsa_pem(read(&dir.join(name))?.as_bytes())
                .with_context(|| format!("parsing {name}"))
        };
        Ok(Self {
            directory_key: rsa_pem("directory.key")?,
            ps256: rsa_pem("tpp/signing-ps256.key")?,
            es256: EncodingKey::from_ec_pem(read(&dir.join("tpp/signing-es256.key"))?.as_bytes())
                .context("parsing tpp/signing-es256.key")?,
            directory_kid,
            tpp,
            dir: dir.to_path_buf(),
        })
    }

    /// The SSA claims of the sandbox TPP, issued now.
    pub fn ssa_claims(&self) -> Value {
        let t = &self.tpp;
        json!({
            "iss": DIRECTORY_ISSUER,
            "iat": crate::clock::now(),
            "jti": hex::encode(rand::rng().random::<[u8; 8]>()),
            "software_environment": "sandbox",
            "software_mode": "Test",
            "software_id": t.software_id,
            "software_client_id": t.software_id,
            "software_client_name": t.software_client_name,
            "software_client_description": "Generated by dcr-server sandbox init",
            "software_version": "1.0",
            "software_client_uri": "https://tpp.example.com",
            "software_redirect_uris": t.software_redirect_uris,
            "software_roles": t.software_roles,
            "software_logo_uri": "https://tpp.example.com/logo.png",
            "software_policy_uri": "https://tpp.example.com/policy",
            "software_tos_uri": "https://tpp.example.com/tos",
            "software_jwks_endpoint": t.software_jwks_endpoint,
            "org_status": "Active",
            "org_id": t.org_id,
            "org_name": t.org_name,
            "org_contacts": [],
            "organisation_competent_authority_claims": {
                "authority_id": "FCAGBR",
                "registration_id": "123456",
                "status": "Active",
                "authorisations": [
                    {"member_state": "GB", "roles": ["AISP", "PISP", "CBPII"]}
                ]
            }
        })
    }

    /// Signs SSA claims with the directory key (PS256).
    pub fn sign_ssa(&self, claims: &Value) -> Result<String> {
        let mut header = Header::new(Algorithm::PS256);
        header.kid = Some(self.directory_kid.clone());
        header.typ = Some("JWT".into());
        Ok(jsonwebtoken::encode(&header, claims, &self.directory_key)?)
    }

    /// A freshly issued SSA for the sandbox TPP.
    pub fn ssa(&self) -> Result<String> {
        self.sign_ssa(&self.ssa_claims())
    }

    /// Registration request claims for the sandbox TPP, with a fresh SSA.
    pub fn request_claims(&self, options: &RequestOptions) -> Result<Value> {
        let now = crate::clock::now();
        let t = &self.tpp;
        let mut claims = json!({
            "iss": t.software_id,
            "iat": now,
            "exp": now + options.lifetime,
            "aud": options.aud,
            "jti": uuid::Uuid::new_v4().to_string(),
            "redirect_uris": [t.software_redirect_uris[0]],
            "token_endpoint_auth_method": options.auth_method,
            "grant_types": ["authorization_code", "client_credentials", "refresh_token"],
            "response_types": ["code id_token"],
            "software_id": t.software_id,
            "scope": "openid accounts payments",
            "software_statement": self.ssa()?,
            "application_type": "web",
            "id_token_signed_response_alg": options.alg,
            "request_object_signing_alg": options.alg,
        });
        if options.ciba {
            if !options.version.profile().ciba {
                bail!(
                    "CIBA is part of DCR v3.3 and later, not v{}",
                    options.version
                );
            }
            claims["grant_types"] = json!([
                "authorization_code",
                "client_credentials",
                "refresh_token",
                GrantType::Ciba.as_str()
            ]);
            claims["backchannel_token_delivery_mode"] = json!("ping");
            claims["backchannel_client_notification_endpoint"] = json!(format!(
                "{}/ciba/notify",
                origin(&t.software_redirect_uris[0])
            ));
            claims["backchannel_authentication_request_signing_alg"] = json!(options.alg);
            claims["backchannel_user_code_parameter_supported"] = json!(false);
        }
        // Any text may be asked for (tests send unknown methods); known ones get their claims.
        match options.auth_method.parse::<AuthMethod>() {
            Ok(m) if m.signs_jwt() => {
                claims["token_endpoint_auth_signing_alg"] = json!(options.alg);
            }
            Ok(AuthMethod::TlsClientAuth) => {
                claims["tls_client_auth_subject_dn"] = json!(t.transport_subject_dn);
            }
            _ => {}
        }
        Ok(claims)
    }

    /// Signs any claims as the TPP, with the key for `alg` (`PS256` or `ES256`).
    pub fn sign_as_tpp(&self, claims: &Value, alg: &str) -> Result<String> {
        let (algorithm, key, kid) = match alg {
            "PS256" => (Algorithm::PS256, &self.ps256, &self.tpp.kid_ps256),
            "ES256" => (Algorithm::ES256, &self.es256, &self.tpp.kid_es256),
            other => bail!("the sandbox TPP signs with PS256 or ES256, not {other}"),
        };
        let mut header = Header::new(algorithm);
        header.kid = Some(kid.clone());
        header.typ = Some("JWT".into());
        Ok(jsonwebtoken::encode(&header, claims, key)?)
    }

    /// A signed registration request (the POST body).
    pub fn request(&self, options: &RequestOptions) -> Result<String> {
        self.sign_as_tpp(&self.request_claims(options)?, &options.alg)
    }

    /// A `private_key_jwt` client assertion for the token endpoint.
    pub fn client_assertion(&self, client_id: &str, aud: &str, alg: &str) -> Result<String> {
        let now = crate::clock::now();
        let claims = json!({
            "iss": client_id,
            "sub": client_id,
            "aud": aud,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": now,
            "exp": now + 300,
        });
        self.sign_as_tpp(&claims, alg)
    }

    /// Path of the TPP's transport certificate and key, for curl's `--cert` and `--key`.
    pub fn transport_paths(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.join("tpp/transport.pem"),
            self.dir.join("tpp/transport.key"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 §3.1.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            jwk_thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn the_server_certificate_names_the_issuers_host_and_is_renewed_once() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), "https://dcr.example:8443/").unwrap();
        let names = |dir: &Path| {
            let mut n = certificate_names(&read(&dir.join("server.pem")).unwrap()).unwrap();
            n.sort();
            n
        };
        assert_eq!(
            names(dir.path()),
            ["127.0.0.1", "::1", "dcr.example", "localhost"]
        );
        assert_eq!(
            ensure_server_certificate(dir.path(), "https://DCR.example:8443").unwrap(),
            ServerCertificate::Kept
        );
        // Another issuer, an IP address: the old names stay, the address is added.
        let ca = read(&dir.path().join("ca.pem")).unwrap();
        assert_eq!(
            ensure_server_certificate(dir.path(), "https://192.0.2.7:9443").unwrap(),
            ServerCertificate::Renewed {
                added: "192.0.2.7".into(),
                names: ["localhost", "dcr.example", "127.0.0.1", "::1", "192.0.2.7"]
                    .map(String::from)
                    .to_vec(),
            }
        );
        assert_eq!(
            names(dir.path()),
            ["127.0.0.1", "192.0.2.7", "::1", "dcr.example", "localhost"]
        );
        assert_eq!(read(&dir.path().join("ca.pem")).unwrap(), ca);
        assert_eq!(
            ensure_server_certificate(dir.path(), "https://192.0.2.7:9443").unwrap(),
            ServerCertificate::Kept
        );
    }

    #[test]
    fn base62_has_the_asked_length_and_alphabet() {
        let id = base62(22);
        assert_eq!(id.len(), 22);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
