//! The admin API on its own listener: an allowed, a not-allowed and an untrusted certificate;
//! every endpoint; audit records and events of its actions; `/metrics` moved there.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use dcr_server::store::{AuditLog, ClientStore, EventFilter, EventStore};
use rcgen::{DnType, ExtendedKeyUsagePurpose};
use serde_json::{Value, json};

use crate::fixtures::Ctx;
use crate::support::{BOTH, Backend, Case, SQLITE, SpawnedServer, TestEnv, https_client};
use crate::{case, ensure_eq};

pub fn cases() -> Vec<Case> {
    vec![
        case!(the_admin_api_does_what_the_cli_does, BOTH),
        case!(the_admin_api_is_documented, SQLITE),
        case!(admin_errors_are_json_and_admin_requests_time_out, SQLITE),
        case!(
            the_admin_listener_logs_requests_and_refused_handshakes,
            SQLITE
        ),
    ]
}

/// A server with an admin listener whose CA is a second sandbox's; the allowed admin's and
/// another admin-CA certificate's identities.
struct Admin {
    ctx: Ctx,
    base: String,
    ca_pem: String,
    allowed: (String, String),
    not_allowed: (String, String),
}

impl Admin {
    fn client(&self, identity: &(String, String)) -> Result<reqwest::Client> {
        https_client(&self.ca_pem, Some((&identity.0, &identity.1)))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `method path` as the allowed admin: status and JSON body.
    async fn call(&self, method: reqwest::Method, path: &str) -> Result<(u16, Value)> {
        let answer = self
            .client(&self.allowed)?
            .request(method, self.url(path))
            .send()
            .await?;
        let status = answer.status().as_u16();
        let body: Value = answer.json().await?;
        Ok((status, body))
    }
}

/// An admin CA in `env`'s directory: the `[admin]` table that trusts it (allowing
/// `CN=service desk`), that allowed admin's identity and another certificate of the CA.
pub struct AdminPki {
    pub table: String,
    pub allowed: (String, String),
    pub not_allowed: (String, String),
}

pub fn admin_pki(env: &TestEnv) -> Result<AdminPki> {
    let admin_dir = env.dir.path().join("admin-pki");
    dcr_server::sandbox::init(&admin_dir, "https://localhost")?;
    let admin_ca = dcr_server::sandbox::SandboxCa::load(&admin_dir)?;
    let issue = |cn: &str| {
        admin_ca.issue(
            &[(DnType::CommonName, cn.into())],
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    };
    Ok(AdminPki {
        table: format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\nclient_ca = [\"{}\"]\nallowed_subjects = [\"CN=service desk\"]\nmetrics = true\n",
            admin_dir.join("ca.pem").display()
        ),
        allowed: issue("service desk")?,
        not_allowed: issue("someone else")?,
    })
}

/// The base URL of `ctx`'s admin listener.
pub fn admin_base(ctx: &Ctx) -> Result<String> {
    let addr = ctx.server.admin_addr.context("no admin listener")?;
    Ok(format!("https://localhost:{}", addr.port()))
}

async fn admin(backend: Backend) -> Result<Admin> {
    let env = TestEnv::new(backend).await?;
    let AdminPki {
        table: tables,
        allowed,
        not_allowed,
    } = admin_pki(&env)?;
    let ca_pem = env.ca_pem()?;
    let ctx = Ctx::start_in(
        env,
        "",
        "",
        "software_id_as_application_name.enable = false",
        "",
        &tables,
    )
    .await?;
    Ok(Admin {
        base: admin_base(&ctx)?,
        ctx,
        ca_pem,
        allowed,
        not_allowed,
    })
}

async fn the_admin_api_does_what_the_cli_does(backend: Backend) -> Result<()> {
    let a = admin(backend).await?;
    let ctx = &a.ctx;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let created = ctx.register(ctx.request(|_| {})?).await?;
        ids.push(created["client_id"].as_str().context("id")?.to_string());
    }
    ids.sort();
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    // Lists, filtered and paged.
    let (status, page) = a.call(get.clone(), "/admin/clients").await?;
    ensure_eq!(status, 200);
    let listed: Vec<&str> = page["clients"]
        .as_array()
        .context("clients")?
        .iter()
        .filter_map(|c| c["client_id"].as_str())
        .collect();
    ensure_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>());
    ensure_eq!(page["next_cursor"], Value::Null);
    let (_, first) = a.call(get.clone(), "/admin/clients?limit=2").await?;
    ensure_eq!(first["clients"].as_array().map(Vec::len), Some(2));
    let cursor = first["next_cursor"].as_str().context("cursor")?;
    let (_, rest) = a
        .call(
            get.clone(),
            &format!("/admin/clients?limit=2&cursor={cursor}"),
        )
        .await?;
    ensure_eq!(rest["clients"][0]["client_id"], json!(ids[2]));
    let software = &ctx.sandbox.tpp.software_id;
    let (_, by_software) = a
        .call(
            get.clone(),
            &format!("/admin/clients?software_id={software}&version=3.2&enabled=true"),
        )
        .await?;
    ensure_eq!(by_software["clients"].as_array().map(Vec::len), Some(3));
    let (_, none) = a.call(get.clone(), "/admin/clients?enabled=false").await?;
    ensure_eq!(none["clients"], json!([]));
    for bad in [
        "/admin/clients?limit=0",
        "/admin/clients?enabled=maybe",
        "/admin/clients?colour=red",
    ] {
        let (status, body) = a.call(get.clone(), bad).await?;
        ensure!(
            status == 400 && body["error"] == "invalid_request",
            "{bad}: {status} {body}"
        );
    }

    // One client; an unknown one.
    let id = &ids[0];
    let (status, one) = a.call(get.clone(), &format!("/admin/clients/{id}")).await?;
    ensure_eq!(status, 200);
    ensure_eq!(one["client_id"], json!(id));
    ensure_eq!(one["metadata"]["client_id"], json!(id));
    ensure!(one["metadata"].get("client_secret").is_none());
    let (status, body) = a.call(get.clone(), "/admin/clients/nobody").await?;
    ensure!(
        status == 404 && body["error"] == "not_found",
        "{status} {body}"
    );

    // Disable, enable, delete: as the CLI, audited with the admin's subject, with events.
    let (status, body) = a
        .call(post.clone(), &format!("/admin/clients/{id}/disable"))
        .await?;
    ensure_eq!(
        (status, body),
        (200, json!({"client_id": id, "result": "disabled"}))
    );
    ensure!(!ctx.store.get_client(id).await?.context("client")?.enabled);
    let (status, _) = a
        .call(post.clone(), &format!("/admin/clients/{id}/enable"))
        .await?;
    ensure_eq!(status, 200);
    ensure!(ctx.store.get_client(id).await?.context("client")?.enabled);
    let (status, body) = a
        .call(reqwest::Method::DELETE, &format!("/admin/clients/{id}"))
        .await?;
    ensure_eq!((status, body["result"].clone()), (200, json!("deleted")));
    ensure!(ctx.store.get_client(id).await?.is_none());
    let (status, _) = a
        .call(post.clone(), &format!("/admin/clients/{id}/disable"))
        .await?;
    ensure_eq!(status, 404);
    let audit = ctx.store.list_audit(Some(id), None).await?;
    let by_admin: Vec<_> = audit
        .iter()
        .filter(|r| r.detail.as_deref().is_some_and(|d| d.contains("admin api")))
        .collect();
    ensure_eq!(by_admin.len(), 3);
    for r in &by_admin {
        let detail: Value = serde_json::from_str(r.detail.as_deref().unwrap_or("{}"))?;
        ensure_eq!(detail["subject"], "CN=service desk");
        ensure!(r.cert_thumbprint.is_some());
    }
    let types: Vec<String> = ctx
        .store
        .list_events(&EventFilter {
            client_id: Some(id),
            limit: 10,
            ..EventFilter::default()
        })
        .await?
        .into_iter()
        .map(|(e, _)| e.event_type.to_string())
        .collect();
    ensure_eq!(
        types,
        [
            "client.registered",
            "client.disabled",
            "client.enabled",
            "client.deleted"
        ]
    );

    // The audit trail and the events, paged.
    let (status, trail) = a
        .call(get.clone(), &format!("/admin/audit?client_id={id}&limit=2"))
        .await?;
    ensure_eq!(status, 200);
    ensure_eq!(trail["records"][0]["action"], "register");
    ensure_eq!(trail["records"][1]["action"], "client.disable");
    ensure_eq!(trail["records"][1]["detail"]["by"], "admin api");
    let cursor = trail["next_cursor"].as_i64().context("cursor")?;
    let (_, more) = a
        .call(
            get.clone(),
            &format!("/admin/audit?client_id={id}&cursor={cursor}"),
        )
        .await?;
    ensure_eq!(more["records"].as_array().map(Vec::len), Some(2));
    let (status, events) = a
        .call(get.clone(), &format!("/admin/events?client_id={id}"))
        .await?;
    ensure_eq!(status, 200);
    ensure_eq!(events["events"].as_array().map(Vec::len), Some(4));
    let (_, failed) = a.call(get.clone(), "/admin/events?failed=true").await?;
    ensure_eq!(failed["events"], json!([]));
    let event_id = events["events"][0]["event_id"]
        .as_str()
        .context("event_id")?;
    let (status, body) = a
        .call(post.clone(), &format!("/admin/events/{event_id}/retry"))
        .await?;
    ensure!(
        status == 404 && body["error"] == "not_found",
        "{status} {body}"
    );

    // /metrics moved here; the public listener says 404, and serves no admin path.
    let metrics = a.client(&a.allowed)?.get(a.url("/metrics")).send().await?;
    ensure_eq!(metrics.status().as_u16(), 200);
    ensure!(metrics.text().await?.contains("dcr_http_requests_total"));
    let public = ctx.env.client(None)?;
    ensure_eq!(
        public
            .get(ctx.env.url("/metrics"))
            .send()
            .await?
            .status()
            .as_u16(),
        404
    );
    ensure_eq!(
        public
            .get(ctx.env.url("/admin/clients"))
            .send()
            .await?
            .status()
            .as_u16(),
        404
    );

    // Another certificate of the admin CA: 403, and nothing changes.
    let other = a.client(&a.not_allowed)?;
    let answer = other.get(a.url("/admin/clients")).send().await?;
    ensure_eq!(answer.status().as_u16(), 403);
    let body: Value = answer.json().await?;
    ensure_eq!(body["error"], "access_denied");
    let answer = other
        .post(a.url(&format!("/admin/clients/{}/disable", ids[1])))
        .send()
        .await?;
    ensure_eq!(answer.status().as_u16(), 403);
    ensure!(
        ctx.store
            .get_client(&ids[1])
            .await?
            .context("client")?
            .enabled
    );

    // A TPP's certificate (not of the admin CA), and none: no handshake.
    let tpp = https_client(&a.ca_pem, Some((&ctx.transport.0, &ctx.transport.1)))?;
    ensure!(
        tpp.get(a.url("/admin/clients")).send().await.is_err(),
        "a TPP certificate was accepted"
    );
    let anonymous = https_client(&a.ca_pem, None)?;
    ensure!(
        anonymous.get(a.url("/admin/clients")).send().await.is_err(),
        "no certificate was accepted"
    );
    a.ctx.server.stop().await
}

/// docs/openapi-admin.json is what `/admin/openapi.json` serves and documents exactly the
/// admin routes.
async fn the_admin_api_is_documented(backend: Backend) -> Result<()> {
    let a = admin(backend).await?;
    let (status, served) = a.call(reqwest::Method::GET, "/admin/openapi.json").await?;
    ensure_eq!(status, 200);
    let file: Value = serde_json::from_str(&std::fs::read_to_string("docs/openapi-admin.json")?)?;
    ensure_eq!(served, file);
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in served["paths"].as_object().context("paths")? {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let routes: std::collections::BTreeSet<(String, String)> = dcr_server::http::admin::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    ensure_eq!(documented, routes);
    a.ctx.server.stop().await
}

/// Every admin error is JSON in the admin's words, also where axum would answer plain text
/// (`%ff` in a path does not decode); every answer carries an interaction id; an admin request
/// gets `server.request_timeout_ms` like a TPP's (503 JSON, not a wait for the database);
/// handshakes are counted per listener.
async fn admin_errors_are_json_and_admin_requests_time_out(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let AdminPki { table, allowed, .. } = admin_pki(&env)?;
    let ca_pem = env.ca_pem()?;
    let ctx = Ctx::start_in(
        env,
        "",
        "request_timeout_ms = 500",
        "software_id_as_application_name.enable = false",
        "",
        &table,
    )
    .await?;
    let base = admin_base(&ctx)?;
    let admin = https_client(&ca_pem, Some((&allowed.0, &allowed.1)))?;
    let send = |method: reqwest::Method, path: &str| {
        admin
            .request(method, format!("{base}{path}"))
            .header("x-fapi-interaction-id", "service-desk-42")
            .send()
    };
    for (method, path, status, code, words) in [
        (
            reqwest::Method::GET,
            "/admin/clients/%ff",
            400,
            "invalid_request",
            "the id in the path",
        ),
        (
            reqwest::Method::POST,
            "/admin/clients/%ff/disable",
            400,
            "invalid_request",
            "the id in the path",
        ),
        (
            reqwest::Method::POST,
            "/admin/events/%C0%80/retry",
            400,
            "invalid_request",
            "the id in the path",
        ),
        (
            reqwest::Method::GET,
            "/admin/nothing-here",
            404,
            "not_found",
            "/admin/openapi.json",
        ),
        (
            reqwest::Method::PUT,
            "/admin/clients",
            405,
            "method_not_allowed",
            "admin endpoint",
        ),
    ] {
        let answer = send(method.clone(), path).await?;
        ensure_eq!(answer.status().as_u16(), status);
        ensure_eq!(
            answer
                .headers()
                .get("x-fapi-interaction-id")
                .map(|v| v.as_bytes().to_vec()),
            Some(b"service-desk-42".to_vec())
        );
        let kind = answer
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        ensure!(
            kind.starts_with("application/json"),
            "{method} {path}: {kind}"
        );
        let body: Value = answer.json().await?;
        ensure_eq!(body["error"], json!(code));
        let description = body["error_description"].as_str().unwrap_or_default();
        ensure!(
            description.contains(words) && !description.contains("openid-configuration"),
            "{method} {path}: {body}"
        );
    }

    // Another writer holds SQLite's lock: the action answers 503 JSON at the request
    // timeout, not after the busy timeout (5 s), and changes nothing.
    let created = ctx.register(ctx.request(|_| {})?).await?;
    let id = created["client_id"].as_str().context("id")?.to_string();
    let mut locker = {
        use sqlx::Connection;
        sqlx::SqliteConnection::connect(&ctx.env.db.url).await?
    };
    sqlx::query("BEGIN IMMEDIATE").execute(&mut locker).await?;
    let started = Instant::now();
    let answer = send(
        reqwest::Method::POST,
        &format!("/admin/clients/{id}/disable"),
    )
    .await?;
    let took = started.elapsed();
    let status = answer.status().as_u16();
    let body: Value = answer.json().await?;
    sqlx::query("COMMIT").execute(&mut locker).await?;
    ensure!(
        status == 503 && body["error"] == "temporarily_unavailable",
        "{status} {body}"
    );
    ensure!(
        took < Duration::from_secs(3),
        "the admin request took {took:?}"
    );
    ensure!(ctx.store.get_client(&id).await?.context("client")?.enabled);

    // Handshakes by listener: a TPP certificate refused by the admin listener is counted there.
    let refused = |m: &crate::support::Metrics| {
        m.sum(
            "dcr_tls_handshakes_total",
            &["listener=\"admin\"", "outcome=\"refused\""],
        )
    };
    let page = |text: String| crate::support::Metrics(text);
    let before = page(send(reqwest::Method::GET, "/metrics").await?.text().await?);
    ensure!(
        before.sum(
            "dcr_tls_handshakes_total",
            &["listener=\"admin\"", "outcome=\"ok\""]
        ) >= 1.0,
        "{}",
        before.0
    );
    let tpp = https_client(&ca_pem, Some((&ctx.transport.0, &ctx.transport.1)))?;
    ensure!(
        tpp.get(format!("{base}/admin/clients"))
            .send()
            .await
            .is_err()
    );
    let after = page(send(reqwest::Method::GET, "/metrics").await?.text().await?);
    ensure!(refused(&after) > refused(&before), "{}", after.0);
    ensure!(after.has(
        "dcr_tls_handshakes_total",
        &["listener=\"tpp\"", "outcome=\"ok\""]
    ));
    ctx.server.stop().await
}

/// A leaf certificate of the CA in `ca_dir` (its `ca.pem` and `ca.key`), for `CN=service
/// desk`: (certificate PEM, key PEM).
fn admin_leaf(
    ca_dir: &Path,
    usage: ExtendedKeyUsagePurpose,
    not_after: time::OffsetDateTime,
    version_1: bool,
) -> Result<(String, String)> {
    use der::{Decode, Encode};
    use rcgen::SigningKey;
    let ca_pem = std::fs::read_to_string(ca_dir.join("ca.pem"))?;
    let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(ca_dir.join("ca.key"))?)?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, &ca_key)?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "service desk");
    params.extended_key_usages = vec![usage];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = not_after;
    let cert = params.signed_by(&key, &issuer)?;
    let der = if version_1 {
        // rcgen writes v3 only: drop the version and the extensions, and sign again.
        let mut parsed = x509_cert::Certificate::from_der(cert.der())?;
        parsed.tbs_certificate.version = x509_cert::Version::V1;
        parsed.tbs_certificate.extensions = None;
        let signature = ca_key.sign(&parsed.tbs_certificate.to_der()?)?;
        parsed.signature = der::asn1::BitString::from_bytes(&signature)?;
        parsed.to_der()?
    } else {
        cert.der().to_vec()
    };
    Ok((pem_of(&der), key.serialize_pem()))
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// A TLS handshake with `cert` and `key` (sent as they are, even an X.509 v1 certificate the
/// client side would not load), then one request: the server's verdict is in its log.
async fn offer(addr: SocketAddr, ca_pem: &str, cert: &str, key: &str) -> Result<()> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let provider = dcr_server::pki::tls::crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let signing = provider
        .key_provider
        .load_private_key(PrivateKeyDer::from_pem_slice(key.as_bytes())?)?;
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing);
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_cert_resolver(std::sync::Arc::new(rustls::sign::SingleCertAndKey::from(
            certified,
        )));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    // TLS 1.3: the server judges the certificate after the client's Finished, so the refusal
    // shows on the first read; either way the answer is no HTTP response.
    if let Ok(mut tls) = connector
        .connect(ServerName::try_from("localhost")?.to_owned(), tcp)
        .await
    {
        let _ = tls
            .write_all(b"GET /admin/clients HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
        ensure!(
            !answer.starts_with(b"HTTP/1.1 200"),
            "the certificate was accepted"
        );
    }
    Ok(())
}

/// The log lines of the running binary, as JSON, once one of them satisfies `until`.
async fn log_lines(log: &Path, until: impl Fn(&[Value]) -> bool) -> Result<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if until(&lines) {
            return Ok(lines);
        }
        if Instant::now() > deadline {
            bail!("the log never held what was expected:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The real binary: one line per admin request (listener, route, status, subject,
/// thumbprint, interaction id), and a WARN per refused handshake naming the listener and the
/// reason in words (they were DEBUG lines without the listener). A refused registration's line
/// carries no `client_id` when there is none (it printed `"None"`).
async fn the_admin_listener_logs_requests_and_refused_handshakes(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let pki = admin_pki(&env)?;
    let admin_port = crate::support::free_port();
    let table = pki
        .table
        .replace("127.0.0.1:0", &format!("127.0.0.1:{admin_port}"));
    let path = env.write_config(&format!("{}\n{table}", env.config_toml("")))?;
    let log = env.dir.path().join("server.log");
    let _server = SpawnedServer::start(&path, env.port, &[], &log).await?;
    let ca_pem = env.ca_pem()?;
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin_port}").parse()?;
    log_lines(&log, |lines| {
        lines
            .iter()
            .any(|l| l["listener"] == "admin" && l["addr"] == json!(admin_addr.to_string()))
    })
    .await?;

    let admin = https_client(&ca_pem, Some((&pki.allowed.0, &pki.allowed.1)))?;
    let answer = admin
        .get(format!("https://localhost:{admin_port}/admin/clients"))
        .header("x-fapi-interaction-id", "desk-call-7")
        .send()
        .await?;
    ensure_eq!(answer.status().as_u16(), 200);

    let admin_dir = env.dir.path().join("admin-pki");
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    let expired_at = rcgen::date_time_ymd(2025, 1, 1);
    let refused = [
        (
            admin_leaf(
                &admin_dir,
                ExtendedKeyUsagePurpose::ClientAuth,
                expired_at,
                false,
            )?,
            "expired at 2025-01-01T00:00:00Z",
        ),
        (
            admin_leaf(
                &admin_dir,
                ExtendedKeyUsagePurpose::ServerAuth,
                later,
                false,
            )?,
            "wrong extended key usage (not for TLS client authentication)",
        ),
        (
            admin_leaf(&admin_dir, ExtendedKeyUsagePurpose::ClientAuth, later, true)?,
            "X.509 v1 certificates are not accepted",
        ),
        (
            dcr_server::sandbox::SandboxCa::generate("another CA")?.issue(
                &[(DnType::CommonName, "service desk".into())],
                &[],
                ExtendedKeyUsagePurpose::ClientAuth,
            )?,
            "not issued by a trusted CA",
        ),
        // The TPPs' CA: a sandbox CA too, of the same name as the admin CA here.
        (
            env.transport_pem()?,
            "not issued by a trusted CA (a trusted CA has its issuer's name, but did not sign it)",
        ),
    ];
    for ((cert, key), _) in &refused {
        offer(admin_addr, &ca_pem, cert, key).await?;
    }
    // The TPP listener names itself: an admin certificate is from another CA there.
    let tpp_addr: SocketAddr = format!("127.0.0.1:{}", env.port).parse()?;
    offer(tpp_addr, &ca_pem, &pki.allowed.0, &pki.allowed.1).await?;
    // A refused registration: no client_id yet.
    let (cert, key) = env.transport_pem()?;
    let answer = https_client(&ca_pem, Some((&cert, &key)))?
        .post(env.url(dcr_server::REGISTER_PATH))
        .header("content-type", "application/jwt")
        .body("not-a-jwt")
        .send()
        .await?;
    ensure_eq!(answer.status().as_u16(), 400);

    let is_refusal = |l: &Value, listener: &str, reason: &str| {
        l["level"] == "WARN"
            && l["listener"] == listener
            && l["reason"] == reason
            && l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("TLS handshake refused"))
    };
    let lines = log_lines(&log, |lines| {
        lines.iter().any(|l| l["message"] == "request refused")
            && lines.iter().any(|l| {
                is_refusal(
                    l,
                    "tpp",
                    "not issued by a trusted CA (a trusted CA has its issuer's name, but did not sign it)",
                )
            })
            && refused
                .iter()
                .all(|(_, reason)| lines.iter().any(|l| is_refusal(l, "admin", reason)))
    })
    .await?;
    let request = lines
        .iter()
        .find(|l| l["message"] == "request" && l["listener"] == "admin")
        .context("no request line of the admin listener")?;
    ensure_eq!(request["route"], json!("/admin/clients"));
    ensure_eq!(request["status"], json!(200));
    ensure_eq!(request["cert_subject"], json!("CN=service desk"));
    ensure_eq!(request["interaction_id"], json!("desk-call-7"));
    ensure!(
        request["cert_thumbprint"]
            .as_str()
            .is_some_and(|t| t.len() == 43),
        "{request}"
    );
    // A TPP's request line stays as it was.
    ensure!(lines.iter().any(|l| l["message"] == "request"
        && l["route"] == dcr_server::REGISTER_PATH
        && l.get("listener").is_none()
        && l.get("cert_subject").is_none()));
    let refusal = lines
        .iter()
        .find(|l| l["message"] == "request refused")
        .context("no refusal line")?;
    ensure!(refusal.get("client_id").is_none(), "{refusal}");
    Ok(())
}
