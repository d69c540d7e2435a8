//! The listener: TLS, client certificates, discovery, health, readiness, shutdown.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use axum::Extension;
use axum::routing::get;
use dcr_server::pki::PeerIdentity;
use dcr_server::sandbox::SandboxCa;
use rcgen::{DnType, ExtendedKeyUsagePurpose};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::support::{BOTH, Backend, Case, SQLITE, TestEnv};
use crate::{case, ensure_eq};

pub fn cases() -> Vec<Case> {
    vec![
        case!(discovery_without_client_certificate, BOTH),
        case!(untrusted_certificate_fails_handshake, SQLITE),
        case!(client_identity_reaches_handler, SQLITE),
        case!(eidas_identity_reaches_handler, SQLITE),
        case!(revoked_certificate_fails_handshake, SQLITE),
        case!(stalled_handshake_is_dropped, SQLITE),
        case!(health_ready_and_json_errors, BOTH),
        case!(ready_answers_503_without_database, SQLITE),
        case!(sandbox_jwks_is_served, SQLITE),
        case!(shutdown_stops_the_listener, SQLITE),
        case!(openapi_describes_every_route, SQLITE),
        case!(forwarded_certificate_from_listed_proxies_only, SQLITE),
    ]
}

/// A route mounted only in tests: echoes the parsed client certificate.
pub fn whoami_route() -> axum::Router<dcr_server::http::SharedState> {
    axum::Router::new().route(
        "/test/whoami",
        get(|Extension(identity): Extension<PeerIdentity>| async move {
            let body = match identity.certificate {
                None => Value::Null,
                Some(c) => json!({
                    "ou": c.subject.organizational_unit(),
                    "cn": c.subject.common_name(),
                    "o": c.subject.organization(),
                    "c": c.subject.country(),
                    "org_identifier": c.subject.organization_identifier(),
                    "issuer_cn": c.issuer.common_name(),
                    "thumbprint": hex::encode(c.thumbprint_sha256),
                    "x5t_s256": c.x5t_s256(),
                    "subject": c.subject.to_string(),
                    "not_before": c.not_before,
                    "not_after": c.not_after,
                }),
            };
            axum::Json(body)
        }),
    )
}

fn der_sha256_hex(pem: &str) -> Result<String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(pem.as_bytes())?;
    Ok(hex::encode(Sha256::digest(&der)))
}

async fn discovery_without_client_certificate(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let server = env.start().await?;
    let response = env
        .client(None)?
        .get(env.url("/.well-known/openid-configuration"))
        .send()
        .await?;
    ensure_eq!(response.status().as_u16(), 200);
    let doc: Value = response.json().await?;
    let issuer = env.issuer();
    ensure_eq!(doc["issuer"], json!(issuer));
    ensure_eq!(
        doc["registration_endpoint"],
        json!(format!("{issuer}/open-banking/v3.2/register"))
    );
    ensure_eq!(doc["token_endpoint"], json!(format!("{issuer}/token")));
    ensure_eq!(
        doc["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt", "tls_client_auth"])
    );
    for key in [
        "token_endpoint_auth_signing_alg_values_supported",
        "request_object_signing_alg_values_supported",
        "id_token_signing_alg_values_supported",
    ] {
        ensure_eq!(doc[key][0], json!("PS256"));
    }
    for key in [
        "grant_types_supported",
        "response_types_supported",
        "scopes_supported",
    ] {
        ensure!(doc[key].is_array(), "{key} missing");
    }
    ensure_eq!(
        doc["tls_client_certificate_bound_access_tokens"],
        json!(true)
    );
    server.stop().await
}

async fn untrusted_certificate_fails_handshake(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let server = env.start().await?;
    // Same subject as the real TPP, issued by a CA the server does not trust.
    let rogue = SandboxCa::generate("rogue CA")?;
    let tpp = env.sandbox()?.tpp;
    let (cert, key) = rogue.issue_ob_transport(&tpp.org_id, &tpp.software_id)?;
    let result = env
        .client(Some((&cert, &key)))?
        .get(env.url("/health"))
        .send()
        .await;
    ensure!(
        result.is_err(),
        "an untrusted certificate was accepted: {:?}",
        result.map(|r| r.status())
    );
    // The trusted certificate still works on the same server.
    let (cert, key) = env.transport_pem()?;
    let ok = env
        .client(Some((&cert, &key)))?
        .get(env.url("/health"))
        .send()
        .await?;
    ensure_eq!(ok.status().as_u16(), 200);
    server.stop().await
}

async fn client_identity_reaches_handler(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let server = env.start_with(env.config("")?, whoami_route()).await?;
    let (cert, key) = env.transport_pem()?;
    let tpp = env.sandbox()?.tpp;
    let body: Value = env
        .client(Some((&cert, &key)))?
        .get(env.url("/test/whoami"))
        .send()
        .await?
        .json()
        .await?;
    ensure_eq!(body["ou"], json!(tpp.org_id));
    ensure_eq!(body["cn"], json!(tpp.software_id));
    ensure_eq!(body["o"], json!("OpenBanking"));
    ensure_eq!(body["c"], json!("GB"));
    ensure_eq!(body["org_identifier"], Value::Null);
    ensure_eq!(body["issuer_cn"], json!("dcr-server sandbox CA"));
    ensure_eq!(body["thumbprint"], json!(der_sha256_hex(&cert)?));
    ensure_eq!(body["subject"], json!(tpp.transport_subject_dn));
    ensure!(body["not_before"].as_i64() < body["not_after"].as_i64());

    // Without a certificate the handler sees none.
    let anonymous: Value = env
        .client(None)?
        .get(env.url("/test/whoami"))
        .send()
        .await?
        .json()
        .await?;
    ensure_eq!(anonymous, Value::Null);
    server.stop().await
}

async fn eidas_identity_reaches_handler(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let server = env.start_with(env.config("")?, whoami_route()).await?;
    let (cert, key) = env.ca()?.issue(
        &[
            (DnType::CountryName, "GB".into()),
            (DnType::OrganizationName, "Example TPP Ltd".into()),
            (
                DnType::CustomDnType(vec![2, 5, 4, 97]),
                "PSDGB-OB-0015800001ABCDEF".into(),
            ),
            (DnType::CommonName, "tpp.example.com".into()),
        ],
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let body: Value = env
        .client(Some((&cert, &key)))?
        .get(env.url("/test/whoami"))
        .send()
        .await?
        .json()
        .await?;
    ensure_eq!(body["org_identifier"], json!("PSDGB-OB-0015800001ABCDEF"));
    ensure_eq!(body["cn"], json!("tpp.example.com"));
    ensure_eq!(body["thumbprint"], json!(der_sha256_hex(&cert)?));
    server.stop().await
}

async fn revoked_certificate_fails_handshake(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let ca = env.ca()?;
    let tpp = env.sandbox()?.tpp;
    let (revoked_cert, revoked_key) = ca.issue_ob_transport(&tpp.org_id, &tpp.software_id)?;
    let crl = env.dir.path().join("ca.crl.pem");
    std::fs::write(&crl, ca.crl_pem(&[&revoked_cert])?)?;
    let config = env.config(&format!("crl = [\"{}\"]", crl.display()))?;
    let server = env.start_with(config, axum::Router::new()).await?;

    let result = env
        .client(Some((&revoked_cert, &revoked_key)))?
        .get(env.url("/health"))
        .send()
        .await;
    ensure!(result.is_err(), "a revoked certificate was accepted");
    let (cert, key) = env.transport_pem()?;
    let ok = env
        .client(Some((&cert, &key)))?
        .get(env.url("/health"))
        .send()
        .await?;
    ensure_eq!(ok.status().as_u16(), 200);
    server.stop().await
}

async fn stalled_handshake_is_dropped(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let server = env
        .start_with(
            env.config("handshake_timeout_ms = 300")?,
            axum::Router::new(),
        )
        .await?;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await?;
    let started = Instant::now();
    let mut buf = [0u8; 16];
    // The client says nothing; the server must hang up by itself.
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .context("the server kept a silent connection open for 5 s")?;
    ensure!(
        matches!(read, Ok(0) | Err(_)),
        "expected the connection to be closed, got {read:?}"
    );
    ensure!(started.elapsed() < Duration::from_secs(3));
    server.stop().await
}

async fn health_ready_and_json_errors(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let server = env.start().await?;
    let client = env.client(None)?;
    for path in ["/health", "/ready"] {
        let r = client.get(env.url(path)).send().await?;
        ensure_eq!(r.status().as_u16(), 200);
    }
    let r = client.get(env.url("/no/such/path")).send().await?;
    ensure_eq!(r.status().as_u16(), 404);
    let body: Value = r.json().await?;
    ensure_eq!(body["error"], json!("not_found"));
    let r = client.delete(env.url("/health")).send().await?;
    ensure_eq!(r.status().as_u16(), 405);
    let body: Value = r.json().await?;
    ensure_eq!(body["error"], json!("method_not_allowed"));
    server.stop().await
}

async fn ready_answers_503_without_database(backend: Backend) -> Result<()> {
    use tower::ServiceExt;
    let env = TestEnv::new(backend).await?;
    let config = std::sync::Arc::new(env.config("")?);
    let store = env.db.connect().await?;
    let material =
        dcr_server::material::Material::load(&config, &dcr_server::pki::crl::CrlUrls::default())?;
    let state = dcr_server::http::AppState::new(config, store.clone(), &material);
    let app =
        dcr_server::http::router::routes().with_state(dcr_server::http::SharedState::new(state));
    store.close().await;
    let response = app
        .oneshot(axum::http::Request::get("/ready").body(axum::body::Body::empty())?)
        .await?;
    ensure_eq!(response.status().as_u16(), 503);
    ensure!(response.headers().contains_key("retry-after"));
    let bytes = axum::body::to_bytes(response.into_body(), 4096).await?;
    let body: Value = serde_json::from_slice(&bytes)?;
    ensure_eq!(body["error"], json!("temporarily_unavailable"));
    Ok(())
}

async fn sandbox_jwks_is_served(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let server = env.start().await?;
    let tpp = env.sandbox()?.tpp;
    let jwks: Value = env
        .client(None)?
        .get(&tpp.software_jwks_endpoint)
        .send()
        .await?
        .json()
        .await?;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .context("keys")?
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    ensure!(kids.contains(&tpp.kid_ps256.as_str()) && kids.contains(&tpp.kid_es256.as_str()));
    for key in jwks["keys"].as_array().context("keys")? {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            if key.get(private).is_some() {
                bail!("the served JWKS holds private member {private}");
            }
        }
    }
    server.stop().await
}

async fn shutdown_stops_the_listener(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let server = env.start().await?;
    let addr = server.addr;
    server.stop().await?;
    ensure!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the port still accepts connections after shutdown"
    );
    Ok(())
}

/// docs/openapi.json is what `/openapi.json` serves, documents exactly the server's routes, and
/// every documented operation is routed (it does not fall through to the JSON 404 or 405).
async fn openapi_describes_every_route(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let server = env.start().await?;
    let transport = env.transport_pem()?;
    let client = env.client(Some((transport.0.as_str(), transport.1.as_str())))?;
    let served: Value = client
        .get(env.url("/openapi.json"))
        .send()
        .await?
        .json()
        .await?;
    let file: Value = serde_json::from_str(&std::fs::read_to_string("docs/openapi.json")?)?;
    ensure_eq!(served, file);
    ensure_eq!(served["openapi"], json!("3.1.0"));

    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in served["paths"].as_object().context("paths")? {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let routes: std::collections::BTreeSet<(String, String)> =
        dcr_server::http::router::route_list()
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
    ensure_eq!(documented, routes);

    for (method, path) in &documented {
        let url = env.url(&path.replace("{ClientId}", "some-client"));
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let response = client.request(method.clone(), url).send().await?;
        let status = response.status().as_u16();
        let body: Value = serde_json::from_slice(&response.bytes().await?).unwrap_or(Value::Null);
        ensure!(
            status != 405 && !(status == 404 && body["error"] == "not_found"),
            "{method} {path} is documented but not routed ({status} {body})"
        );
    }
    server.stop().await
}

/// Behind a TLS-terminating load balancer: the certificate in the configured header is the
/// client's identity when the peer is a listed proxy, verified against `client_ca`; from any
/// other peer the header is ignored.
async fn forwarded_certificate_from_listed_proxies_only(backend: Backend) -> Result<()> {
    use dcr_server::config::ForwardedFormat;
    let env = TestEnv::new(backend).await?;
    let (cert, key) = env.transport_pem()?;
    let tpp = env.sandbox()?.tpp;
    let encode = |pem: &str| {
        percent_encoding::utf8_percent_encode(pem, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let rogue = SandboxCa::generate("rogue CA")?;
    let (rogue_cert, _) = rogue.issue_ob_transport(&tpp.org_id, &tpp.software_id)?;
    let whoami = |client: reqwest::Client, header: &'static str, value: String| {
        let url = env.url("/test/whoami");
        async move {
            let body: Value = client
                .get(url)
                .header(header, value)
                .send()
                .await?
                .json()
                .await?;
            Ok::<_, anyhow::Error>(body)
        }
    };

    // The loopback proxy is listed (WSO2's header, URL-encoded PEM).
    let config = forwarding(
        &env,
        "x-wso2-mutual-auth-cert",
        ForwardedFormat::Pem,
        "127.0.0.1",
    )?;
    let server = env.start_with(config, whoami_route()).await?;
    let anonymous = env.client(None)?;
    let header = "x-wso2-mutual-auth-cert";
    let body = whoami(anonymous.clone(), header, encode(&cert)).await?;
    ensure_eq!(body["thumbprint"], json!(der_sha256_hex(&cert)?));
    ensure_eq!(body["subject"], json!(tpp.transport_subject_dn));
    // Verified as a handshake would be: a certificate from another CA is no identity.
    ensure_eq!(
        whoami(anonymous.clone(), header, encode(&rogue_cert)).await?,
        Value::Null
    );
    ensure_eq!(
        whoami(anonymous.clone(), header, "garbage".into()).await?,
        Value::Null
    );
    // From a listed proxy, the header is the identity even over an mTLS connection: without
    // it there is none.
    let with_cert = env.client(Some((&cert, &key)))?;
    let body: Value = with_cert
        .get(env.url("/test/whoami"))
        .send()
        .await?
        .json()
        .await?;
    ensure_eq!(body, Value::Null);
    // A registration through the proxy works with the forwarded certificate alone.
    let jwt = env
        .sandbox()?
        .request(&dcr_server::sandbox::RequestOptions {
            aud: env.issuer(),
            ..Default::default()
        })?;
    let created = anonymous
        .post(env.url(dcr_server::REGISTER_PATH))
        .header("content-type", "application/jwt")
        .header(header, encode(&cert))
        .body(jwt)
        .send()
        .await?;
    ensure_eq!(created.status().as_u16(), 201);
    server.stop().await?;

    // Only 10.9.9.9 is listed: the header from loopback is removed and ignored, and the
    // connection's own certificate counts.
    let config = forwarding(
        &env,
        "x-forwarded-client-cert",
        ForwardedFormat::Xfcc,
        "10.9.9.9",
    )?;
    let server = env.start_with(config, whoami_route()).await?;
    let xfcc = format!("By=spiffe://lb;Cert=\"{}\"", encode(&cert));
    let anonymous = env.client(None)?;
    ensure_eq!(
        whoami(anonymous, "x-forwarded-client-cert", xfcc.clone()).await?,
        Value::Null
    );
    let body = whoami(
        env.client(Some((&cert, &key)))?,
        "x-forwarded-client-cert",
        xfcc.clone(),
    )
    .await?;
    ensure_eq!(body["thumbprint"], json!(der_sha256_hex(&cert)?));
    server.stop().await?;

    // Envoy's format from a listed proxy.
    let config = forwarding(
        &env,
        "x-forwarded-client-cert",
        ForwardedFormat::Xfcc,
        "127.0.0.1",
    )?;
    let server = env.start_with(config, whoami_route()).await?;
    let body = whoami(env.client(None)?, "x-forwarded-client-cert", xfcc).await?;
    ensure_eq!(body["thumbprint"], json!(der_sha256_hex(&cert)?));
    server.stop().await
}

/// A config that believes `header` in `format` from `proxy` only.
fn forwarding(
    env: &TestEnv,
    header: &str,
    format: dcr_server::config::ForwardedFormat,
    proxy: &str,
) -> Result<dcr_server::config::Config> {
    let mut config = env.config("")?;
    config.server.forwarded_certificate = dcr_server::config::ForwardedCertificateConfig {
        enable: true,
        header: header.parse().map_err(anyhow::Error::msg)?,
        format,
        trusted_proxies: vec![proxy.parse()?],
    };
    Ok(config)
}
