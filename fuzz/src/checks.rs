//! The code paths the fuzz targets drive, shared with `tests/fuzz_regressions.rs` (which
//! includes this file with `#[path]`), so that a saved input replays exactly what found it.
//!
//! Every function takes raw bytes and must return normally: a panic (including a failed
//! `assert!` on a round-trip property) is a finding.

use std::path::Path;
use std::sync::OnceLock;

use dcr_server::config::Config;
use dcr_server::domain::dn::{AttributeKind, DistinguishedName};
use dcr_server::domain::{
    ApplicationType, AuthMethod, GrantType, ResponseType, SigningAlg, SpecVersion,
};
use dcr_server::jose::Jws;
use dcr_server::jose::claims as access;
use dcr_server::jose::{KeySet, jwk::select};
use dcr_server::pki::ClientCertificate;
use dcr_server::registration::ssa::Ssa;
use dcr_server::registration::{
    Policy, RegistrationError, client_body, envelope, metadata, redirect_uris, request_claims,
    scopes, ssa, subject_dn, transport_binding, uri_policy,
};
use serde_json::{Map, Value, json};

/// A fixed "now" inside the validity window of the seed request JWTs in `seeds/jws_claims`.
pub const NOW: i64 = 1_795_715_400;

/// The sandbox TPP's transport certificate (what `dcr-server sandbox init` writes).
const TRANSPORT_DER: &[u8] = include_bytes!("../fixtures/transport.der");
/// Public keys only: the sandbox TPP's signing keys and the sandbox directory's key.
const TPP_JWKS: &[u8] = include_bytes!("../fixtures/tpp-signing.jwks");
const DIRECTORY_JWKS: &[u8] = include_bytes!("../fixtures/directory.jwks");

struct Fixtures {
    policies: [Policy; 2],
    ssa: Ssa,
    cert: ClientCertificate,
    tpp_keys: KeySet,
    directory_keys: KeySet,
}

fn policy(strict: bool) -> Policy {
    Policy {
        signing_algorithms: vec![SigningAlg::PS256, SigningAlg::ES256],
        auth_methods: vec![AuthMethod::PrivateKeyJwt, AuthMethod::TlsClientAuth],
        audience: if strict {
            vec!["https://localhost:8243".into()]
        } else {
            vec![]
        },
        clock_skew: 60,
        ssa_max_age: if strict { 300 } else { 0 },
        issuers: vec![],
        request_jti: true,
        ssa_jti: strict,
        jti_ttl: 3600,
        one_client_per_software: true,
        uri_validation: false,
        hostname_validation: strict,
        versions: SpecVersion::ALL.to_vec(),
        strict_subject_dn_length: strict,
        transport_cert_in_jwks: false,
        revoked_keys_hard: false,
    }
}

/// The claims of the sandbox SSA.
fn ssa_claims() -> Map<String, Value> {
    let v = json!({
        "iat": NOW - 15, "iss": "OpenBanking Ltd", "jti": "80cdfb3a0ff98674",
        "org_id": "0015800001M2tyDmNt", "org_name": "Sandbox TPP Ltd", "org_status": "Active",
        "organisation_competent_authority_claims": {
            "authority_id": "FCAGBR", "registration_id": "123456", "status": "Active"
        },
        "software_client_uri": "https://tpp.example.com",
        "software_id": "ZYipH9xPloVbQrr1giqOHs",
        "software_jwks_endpoint": "https://localhost:8243/sandbox/tpp.jwks",
        "software_logo_uri": "https://tpp.example.com/logo.png",
        "software_policy_uri": "https://tpp.example.com/policy",
        "software_redirect_uris": [
            "https://tpp.example.com/callback", "https://tpp.example.com/callback2"
        ],
        "software_roles": ["AISP", "PISP", "CBPII"],
        "software_tos_uri": "https://tpp.example.com/tos"
    });
    match v {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| Fixtures {
        policies: [policy(false), policy(true)],
        ssa: ssa::parse_claims("SSA", ssa_claims()).expect("the fixed SSA parses"),
        cert: ClientCertificate::from_der(TRANSPORT_DER).expect("the fixed certificate parses"),
        tpp_keys: KeySet::parse(TPP_JWKS).expect("the TPP JWKS parses"),
        directory_keys: KeySet::parse(DIRECTORY_JWKS).expect("the directory JWKS parses"),
    })
}

/// Error values are shown to the TPP: render them as the API would.
fn render(e: impl Into<RegistrationError>) {
    let e: RegistrationError = e.into();
    let _ = e.code();
    let _ = e.to_string();
    let _ = dcr_server::http::ApiError::from(&e);
}

/// Signature verification with a fixed key set: exercises the JWS's signing input and
/// signature slices (a mutated seed must fail, never panic).
fn verify_with(jws: &Jws<'_>, keys: &KeySet) {
    if let Some(kid) = jws.kid.as_deref()
        && let Ok(key) = select(keys, kid, jws.alg, "fuzz")
    {
        let _ = jws.verify(&key, kid);
    }
}

/// The DN round-trip property: what `Display` prints must parse back to the same RDN set.
fn assert_round_trip(dn: &DistinguishedName) {
    let shown = dn.to_string();
    let again = DistinguishedName::parse(&shown)
        .unwrap_or_else(|e| panic!("Display output {shown:?} of {dn:?} does not parse: {e}"));
    assert!(
        again.same_rdn_set(dn),
        "Display output {shown:?} of {dn:?} parses to a different RDN set: {again:?}"
    );
}

/// Steps 4 to 10 over one set of request claims, with one SSA.
fn run_steps(claims: &Map<String, Value>, ssa: &Ssa, policy: &Policy, cert: &ClientCertificate) {
    if let Err(e) = request_claims::check(claims, ssa, NOW, policy) {
        render(e);
    }
    for name in [
        "iss",
        "aud",
        "jti",
        "client_id",
        "software_statement",
        "scope",
    ] {
        let _ = access::opt_str(claims, name);
        let _ = access::req_str_max(claims, name, 22);
        let _ = access::req_str_array(claims, name);
    }
    for name in ["exp", "iat", "nbf"] {
        let _ = access::opt_int(claims, name);
    }
    if let Some(Value::String(iss)) = claims.get("iss") {
        let _ = access::is_base62(iss, 22);
    }
    // Every version's rules (each profile) see the same claims.
    for version in &SpecVersion::ALL[..SpecVersion::ALL.len() - 1] {
        if let Err(e) = metadata::parse(claims, ssa, policy, version.profile()) {
            render(e);
        }
    }
    let last = SpecVersion::ALL[SpecVersion::ALL.len() - 1];
    match metadata::parse(claims, ssa, policy, last.profile()) {
        Err(e) => render(e),
        Ok(mut m) => {
            for uri in &m.redirect_uris {
                let _ = redirect_uris::check_form(uri);
            }
            match redirect_uris::check(&m.redirect_uris, ssa) {
                Ok(uris) => {
                    m.redirect_uris = uris;
                    if let Err(e) = uri_policy::check_hostnames(ssa, &m.redirect_uris) {
                        render(e);
                    }
                }
                Err(e) => render(e),
            }
            if let Err(e) = scopes::check(&m.scope, &ssa.software_roles) {
                render(e);
            }
            if let Err(e) = subject_dn::check(&m, cert) {
                render(e);
            }
            if let Some(dn) = &m.tls_client_auth_subject_dn
                && let Ok(parsed) = DistinguishedName::parse(dn)
            {
                assert_round_trip(&parsed);
            }
            let body = client_body("client", NOW, &m);
            let _ = body.to_string();
        }
    }
    if let Err(e) = transport_binding::check(cert, ssa) {
        render(e);
    }
}

/// A set of claims used as an SSA: steps 2 (claims and age), then steps 4 to 10 with the
/// fixed request claims `request` against it.
fn run_as_ssa(raw: &str, claims: &Map<String, Value>, request: &Map<String, Value>) {
    let f = fixtures();
    match ssa::parse_claims(raw, claims.clone()) {
        Err(e) => render(e),
        Ok(s) => {
            for policy in &f.policies {
                if let Err(e) = ssa::check_age(&s, NOW, policy) {
                    render(e);
                }
                run_steps(request, &s, policy, &f.cert);
            }
            for name in uri_policy::SSA_URI_CLAIMS {
                let _ = s.str_claim(name);
            }
        }
    }
}

/// `jws_claims`: the input as a request body (compact JWS), then as bare JSON claims.
pub fn jws_claims(data: &[u8]) {
    let f = fixtures();
    let algs = &f.policies[0].signing_algorithms;

    if let Ok(text) = std::str::from_utf8(data) {
        // The parser itself, without the envelope's trimming, and with a wider allow-list.
        if let Ok(jws) = Jws::parse(text, SigningAlg::ALL) {
            let _ = jws.require_kid();
            verify_with(&jws, &f.tpp_keys);
        }
    }

    match envelope::parse(data, algs) {
        Err(e) => render(e),
        Ok(request) => {
            verify_with(&request, &f.tpp_keys);
            for policy in &f.policies {
                run_steps(&request.claims, &f.ssa, policy, &f.cert);
            }
            // The SSA inside the request, as step 2 sees it.
            match ssa::extract(&request.claims) {
                Err(e) => render(e),
                Ok(raw) => match ssa::parse_envelope(raw, &f.policies[0]) {
                    Err(e) => render(e),
                    Ok(ssa_jws) => {
                        let _ = ssa::trusted_issuer(&ssa_jws, &f.policies[0]);
                        verify_with(&ssa_jws, &f.directory_keys);
                        run_as_ssa(raw, &ssa_jws.claims, &request.claims);
                    }
                },
            }
        }
    }

    // The input as the JSON claims themselves: as request claims, and as SSA claims.
    if let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(data) {
        for policy in &f.policies {
            run_steps(&claims, &f.ssa, policy, &f.cert);
        }
        let _ = ssa::extract(&claims);
        // As an SSA, checked against a request built from the same claims.
        run_as_ssa("raw", &claims, &claims);
    }
}

/// `cert_der`: the input as a client certificate's DER.
pub fn cert_der(data: &[u8]) {
    let f = fixtures();
    let Ok(cert) = ClientCertificate::from_der(data) else {
        return;
    };
    let _ = cert.x5t_s256();
    for dn in [&cert.subject, &cert.issuer] {
        let _ = (
            dn.common_name(),
            dn.organizational_unit(),
            dn.organization(),
            dn.country(),
            dn.organization_identifier(),
        );
        let _ = dn.same_rdn_set(&f.cert.subject);
        // An empty name prints as "", which is not a DN string; only non-empty ones round-trip.
        if !dn.attributes.is_empty() {
            assert_round_trip(dn);
        }
    }
    let m = metadata::ClientMetadata {
        redirect_uris: vec!["https://tpp.example.com/callback".into()],
        token_endpoint_auth_method: AuthMethod::TlsClientAuth,
        grant_types: vec![GrantType::ClientCredentials],
        response_types: vec![ResponseType::CodeIdToken],
        scope: "openid accounts".into(),
        software_id: f.ssa.software_id.clone(),
        software_statement: "SSA".into(),
        application_type: ApplicationType::Web,
        id_token_signed_response_alg: SigningAlg::PS256,
        request_object_signing_alg: SigningAlg::PS256,
        token_endpoint_auth_signing_alg: None,
        tls_client_auth_subject_dn: Some(f.cert.subject.to_string()),
        backchannel: None,
    };
    if let Err(e) = subject_dn::check(&m, &cert) {
        render(e);
    }
    if let Err(e) = transport_binding::check(&cert, &f.ssa) {
        render(e);
    }
}

/// `subject_dn`: the input as an RFC 4514 string (`tls_client_auth_subject_dn`, the
/// introspection allow-list).
pub fn subject_dn(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = AttributeKind::from_name(text);
    let _ = AttributeKind::from_oid(text);
    let Ok(dn) = DistinguishedName::parse(text) else {
        return;
    };
    assert!(dn.same_rdn_set(&dn));
    let _ = (dn.common_name(), dn.organization_identifier());
    let _ = dn.same_rdn_set(&fixtures().cert.subject);
    assert_round_trip(&dn);
}

/// `config`: the input as `deployment.toml`. Parsing must never panic; a config that parses
/// must render (`config show`) to TOML that parses again to the same rendering, and the
/// value checks that `Config::load` runs must not panic either.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    let Ok(config) = Config::parse(text, path) else {
        return;
    };
    let _ = config.registration_endpoint();
    let _ = config.token_endpoint();
    let _ = config.named_files();
    let _ = config.sandbox_enabled();
    let shown = config.effective_toml();
    let again = Config::parse(&shown, path)
        .unwrap_or_else(|e| panic!("`config show` output does not parse: {e}\n{shown}"));
    assert_eq!(again.effective_toml(), shown, "`config show` is not stable");

    // `Config::load` adds the value checks (`check` is private): run it on a scratch file.
    let file = std::env::temp_dir().join(format!("dcr-fuzz-config-{}.toml", std::process::id()));
    if std::fs::write(&file, text).is_ok() {
        let _ = Config::load(&file);
        let _ = std::fs::remove_file(&file);
    }
}
