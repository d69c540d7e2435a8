//! Live reload: certificates, CRLs, config and SSA issuer keys replaced under a running
//! server, open connections kept, broken files refused.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use axum::body::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use jsonwebtoken::Algorithm;
use rcgen::{DnType, ExtendedKeyUsagePurpose, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

use crate::fixtures::{Ctx, raw_jws};
use crate::support::{Backend, Case, SQLITE, SpawnedServer, TestEnv};
use crate::{case, ensure_eq};
use dcr_server::app::reload::ReloadError;

pub fn cases() -> Vec<Case> {
    vec![
        case!(reload_rotates_the_server_certificate_and_a_crl, SQLITE),
        case!(reload_applies_to_forwarded_certificates, SQLITE),
        case!(reload_applies_config_and_ssa_issuer_keys, SQLITE),
        case!(sighup_reloads_the_running_binary, SQLITE),
        case!(
            the_admin_listener_comes_and_goes_only_with_a_restart,
            SQLITE
        ),
    ]
}

/// One TLS connection that the test keeps open: the server certificate it was given, and an
/// HTTP/1.1 sender on it.
pub struct OpenConnection {
    server_cert: Vec<u8>,
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

pub async fn open(
    addr: SocketAddr,
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<OpenConnection> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = crate::support::tls_connector(ca_pem, identity)?
        .connect(ServerName::try_from("localhost")?.to_owned(), tcp)
        .await?;
    let server_cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .context("no server certificate")?
        .to_vec();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(OpenConnection {
        server_cert,
        sender,
        driver,
    })
}

impl OpenConnection {
    /// GET on this very connection (never a new one).
    pub async fn get(&mut self, path: &str) -> Result<(u16, Value)> {
        self.get_with(path, &[]).await
    }

    /// GET with extra headers, on this very connection.
    pub async fn get_with(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<(u16, Value)> {
        self.sender
            .ready()
            .await
            .context("the connection is closed")?;
        let mut request = hyper::Request::get(path).header("host", "localhost");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Empty::new())?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        let body = serde_json::from_slice(&bytes).with_context(|| {
            format!("{status}: not JSON: {:?}", String::from_utf8_lossy(&bytes))
        })?;
        Ok((status, body))
    }
}

/// A new connection and one request on it; `Err` when the handshake or the request fails.
async fn fresh_get(
    addr: SocketAddr,
    ca_pem: &str,
    identity: Option<(&str, &str)>,
    path: &str,
) -> Result<(Vec<u8>, u16, Value)> {
    let mut connection = open(addr, ca_pem, identity).await?;
    let (status, body) = connection.get(path).await?;
    Ok((connection.server_cert.clone(), status, body))
}

fn der(pem: &str) -> Result<Vec<u8>> {
    Ok(CertificateDer::from_pem_slice(pem.as_bytes())?.to_vec())
}

/// A new server certificate for localhost from the sandbox CA, written over the old files.
fn rotate_server_certificate(env: &TestEnv) -> Result<Vec<u8>> {
    let (cert, key) = env.ca()?.issue(
        &[(DnType::CommonName, "localhost rotated".into())],
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    std::fs::write(env.sandbox_dir.join("server.pem"), &cert)?;
    std::fs::write(env.sandbox_dir.join("server.key"), &key)?;
    der(&cert)
}

async fn reload_rotates_the_server_certificate_and_a_crl(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let ca = env.ca()?;
    let ca_pem = env.ca_pem()?;
    let tpp = env.sandbox()?.tpp;
    let crl = env.dir.path().join("ca.crl.pem");
    std::fs::write(&crl, ca.crl_pem(&[])?)?;
    let text = env.config_toml(&format!("crl = [\"{}\"]", crl.display()));
    let path = env.write_config(&text)?;
    let config = dcr_server::config::Config::parse(&text, &path)?;
    let server = env
        .start_with(config, crate::server::whoami_route())
        .await?;
    let addr = server.addr;
    let (cert, key) = env.transport_pem()?;
    let good = Some((cert.as_str(), key.as_str()));
    let (victim_cert, victim_key) = ca.issue_ob_transport(&tpp.org_id, &tpp.software_id)?;
    let victim = Some((victim_cert.as_str(), victim_key.as_str()));
    let first_cert = der(&std::fs::read_to_string(
        env.sandbox_dir.join("server.pem"),
    )?)?;

    // Connections opened before the reload, each with a certificate the old CRL allows.
    let mut old_good = open(addr, &ca_pem, good).await?;
    let mut old_victim = open(addr, &ca_pem, victim).await?;
    ensure_eq!(old_good.server_cert, first_cert);
    let (status, body) = old_victim.get("/test/whoami").await?;
    ensure_eq!(status, 200);
    ensure_eq!(body["cn"], json!(tpp.software_id));

    // Rotate the server certificate and revoke the victim's certificate, then reload.
    let second_cert = rotate_server_certificate(&env)?;
    ensure!(second_cert != first_cert);
    std::fs::write(&crl, ca.crl_pem(&[&victim_cert])?)?;
    let done = server.reloader.reload_file(&path)?;
    ensure_eq!(done.restart_needed, Vec::<&str>::new());

    // New connections get the new certificate; the revoked one no longer connects.
    let (presented, status, body) = fresh_get(addr, &ca_pem, good, "/test/whoami").await?;
    ensure_eq!(presented, second_cert);
    ensure_eq!((status, body["cn"].clone()), (200, json!(tpp.software_id)));
    ensure!(
        fresh_get(addr, &ca_pem, victim, "/health").await.is_err(),
        "a certificate revoked by the reloaded CRL was accepted on a new connection"
    );

    // The open connections were not dropped. The good one keeps its identity; the revoked
    // certificate stops counting on its next request, although its connection stays open.
    let (status, body) = old_good.get("/test/whoami").await?;
    ensure_eq!((status, body["cn"].clone()), (200, json!(tpp.software_id)));
    let (status, body) = old_victim.get("/test/whoami").await?;
    ensure_eq!((status, body), (200, Value::Null));
    ensure_eq!(old_victim.get("/health").await?.0, 200);

    // Broken files are refused and change nothing, each with an error naming the key.
    let certificate = env.sandbox_dir.join("server.pem");
    let second_pem = std::fs::read_to_string(&certificate)?;
    std::fs::write(&certificate, "-----BEGIN CERTIFICATE-----\nnot base64\n")?;
    expect_tls_error(&server, &path, "server.tls.certificate")?;
    let (other_cert, _other_key) = ca.issue(
        &[(DnType::CommonName, "localhost, another key".into())],
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    std::fs::write(&certificate, other_cert)?;
    expect_tls_error(&server, &path, "server.tls.private_key")?;
    std::fs::write(&certificate, &second_pem)?;
    std::fs::write(&crl, "garbage")?;
    expect_tls_error(&server, &path, "server.tls.crl[0]")?;
    // The path SIGHUP takes: logged and counted.
    server.reloader.reload_and_log(path.clone()).await;

    // Still the material of the last good reload: second certificate, victim revoked.
    let (presented, status, _) = fresh_get(addr, &ca_pem, good, "/health").await?;
    ensure_eq!((presented, status), (second_cert, 200));
    ensure!(fresh_get(addr, &ca_pem, victim, "/health").await.is_err());
    let metrics = env
        .client(None)?
        .get(env.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    ensure!(
        metrics.contains("dcr_config_reloads_total{outcome=\"failed\"}"),
        "no failed reload in /metrics"
    );
    drop((old_good, old_victim));
    server.stop().await
}

/// A reload is refused with a TLS error that names `key`.
fn expect_tls_error(
    server: &crate::support::RunningServer,
    path: &std::path::Path,
    key: &str,
) -> Result<()> {
    match server.reloader.reload_file(path) {
        Err(e @ ReloadError::Tls(_)) => {
            ensure!(e.to_string().contains(key), "{key}: {e}");
            Ok(())
        }
        other => bail!("{key}: a broken file was not refused: {other:?}"),
    }
}

/// Behind an L7 load balancer the proxy's connection lives long: a reloaded CRL applies to
/// the certificates it forwards from the next request on.
async fn reload_applies_to_forwarded_certificates(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let ca = env.ca()?;
    let tpp = env.sandbox()?.tpp;
    let crl = env.dir.path().join("ca.crl.pem");
    std::fs::write(&crl, ca.crl_pem(&[])?)?;
    let text = env.config_toml_full(
        &format!("crl = [\"{}\"]", crl.display()),
        "",
        "",
        "[server.forwarded_certificate]\nenable = true\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    let path = env.write_config(&text)?;
    let config = dcr_server::config::Config::parse(&text, &path)?;
    let server = env
        .start_with(config, crate::server::whoami_route())
        .await?;
    let (victim_cert, _) = ca.issue_ob_transport(&tpp.org_id, &tpp.software_id)?;
    let forwarded =
        percent_encoding::utf8_percent_encode(&victim_cert, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let header = [("x-wso2-mutual-auth-cert", forwarded.as_str())];
    let mut proxy = open(server.addr, &env.ca_pem()?, None).await?;
    let (status, body) = proxy.get_with("/test/whoami", &header).await?;
    ensure_eq!((status, body["cn"].clone()), (200, json!(tpp.software_id)));

    std::fs::write(&crl, ca.crl_pem(&[&victim_cert])?)?;
    server.reloader.reload_file(&path)?;
    let (status, body) = proxy.get_with("/test/whoami", &header).await?;
    ensure_eq!((status, body), (200, Value::Null));
    drop(proxy);
    server.stop().await
}

async fn reload_applies_config_and_ssa_issuer_keys(backend: Backend) -> Result<()> {
    // Several registrations of the one sandbox software.
    let ctx = Ctx::start(
        backend,
        "software_id_as_application_name.enable = false",
        "",
    )
    .await?;
    let path = ctx.env.write_config(&ctx.config_text)?;
    let client = ctx.env.client(None)?;
    let discovery = || async {
        let doc: Value = client
            .get(ctx.env.url("/.well-known/openid-configuration"))
            .send()
            .await?
            .json()
            .await?;
        Ok::<_, anyhow::Error>(doc["token_endpoint_auth_methods_supported"].clone())
    };
    ensure_eq!(
        discovery().await?,
        json!(["private_key_jwt", "tls_client_auth"])
    );
    // The TPP's keys come from a JWKS server that counts its hits.
    let tpp_ssa = ctx.ssa_with_served_tpp_jwks()?;
    let register_tpp = || async {
        let req = ctx.request(|r| r["software_statement"] = json!(tpp_ssa))?;
        ctx.post(&req, true).await
    };
    let (status, body) = register_tpp().await?;
    ensure!(status == 201, "{status} {body}");
    ensure_eq!(ctx.jwks.hits("tpp.jwks"), 1);

    // A config change applies to the next request; a restart-only key is reported and kept.
    let changed = ctx
        .config_text
        .replace(
            "[open_banking.dcr]\n",
            "[open_banking.dcr]\ntoken_endpoint_auth_methods = [\"private_key_jwt\"]\n",
        )
        .replace(
            "shutdown_grace_secs = 2",
            "shutdown_grace_secs = 2\nmax_connections = 9",
        );
    std::fs::write(&path, &changed)?;
    let done = ctx.server.reloader.reload_file(&path)?;
    ensure_eq!(done.restart_needed, vec!["server.max_connections"]);
    ensure_eq!(discovery().await?, json!(["private_key_jwt"]));
    // The JWKS cache survived the reload ([open_banking.dcr.jwks] did not change)...
    ensure_eq!(register_tpp().await?.0, 201);
    ensure_eq!(ctx.jwks.hits("tpp.jwks"), 1);
    // ...and is emptied by a reload that changes it.
    let changed = changed.replace(
        "allowed_hosts = [\"localhost\"]",
        "allowed_hosts = [\"localhost\"]\ncache_ttl = 301",
    );
    std::fs::write(&path, &changed)?;
    ctx.server.reloader.reload_file(&path)?;
    ensure_eq!(register_tpp().await?.0, 201);
    ensure_eq!(ctx.jwks.hits("tpp.jwks"), 2);

    // The directory rotates its signing key: SSAs signed by the old key stop verifying, SSAs
    // signed by the new one are accepted.
    let new_key = KeyPair::from_pem(&ctx.rogue_rsa_pem)?;
    let new_jwk = dcr_server::sandbox::public_jwk(&new_key, "PS256")?;
    let new_kid = new_jwk["kid"].as_str().context("kid")?.to_string();
    let directory = ctx.env.sandbox_dir.join("directory.jwks");
    let old_jwks = std::fs::read(&directory)?;
    std::fs::write(&directory, json!({"keys": [new_jwk]}).to_string())?;
    ctx.server.reloader.reload_file(&path)?;
    let (status, body) = ctx.post(&ctx.request(|_| {})?, true).await?;
    ensure_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_software_statement"))
    );
    let register_with_new_key = || async {
        let ssa = raw_jws(
            json!({"alg": "PS256", "kid": new_kid, "typ": "JWT"}),
            &ctx.sandbox.ssa_claims(),
            Some((&ctx.rogue_rsa, Algorithm::PS256)),
        )?;
        let req = ctx.request(|r| r["software_statement"] = json!(ssa))?;
        ctx.post(&req, true).await
    };
    let (status, body) = register_with_new_key().await?;
    ensure!(
        status == 201,
        "an SSA signed by the new key: {status} {body}"
    );

    // A broken JWKS file or config is refused; the keys and config in force stay.
    std::fs::write(&directory, "{not json")?;
    match ctx.server.reloader.reload_file(&path) {
        Err(e @ ReloadError::Material(_)) => ensure!(
            e.to_string()
                .contains("open_banking.dcr.ssa_issuer[0].jwks"),
            "{e}"
        ),
        other => bail!("a broken JWKS file was not refused: {other:?}"),
    }
    std::fs::write(&directory, &old_jwks)?;
    std::fs::write(&path, "[server\n")?;
    match ctx.server.reloader.reload_file(&path) {
        Err(ReloadError::Config(_)) => {}
        other => bail!("a broken config was not refused: {other:?}"),
    }
    let (status, body) = register_with_new_key().await?;
    ensure!(status == 201, "after refused reloads: {status} {body}");
    ensure_eq!(discovery().await?, json!(["private_key_jwt"]));
    ctx.server.stop().await
}

/// Waits until the log file holds `needle` after `from` bytes; returns the new length.
pub(crate) async fn wait_for_log(
    log: &std::path::Path,
    from: usize,
    needle: &str,
) -> Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.get(from..).is_some_and(|t| t.contains(needle)) {
            return Ok(text.len());
        }
        if Instant::now() > deadline {
            bail!(
                "no {needle:?} in the log within 10 s:\n{}",
                text.get(from..).unwrap_or("")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sighup(server: &SpawnedServer) -> Result<()> {
    let pid = server.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()?;
    ensure!(status.success(), "kill -HUP {pid}: {status}");
    Ok(())
}

async fn sighup_reloads_the_running_binary(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let path = env.write_config(&env.config_toml(""))?;
    let log = env.dir.path().join("server.log");
    let server = SpawnedServer::start(&path, env.port, &[], &log).await?;
    let addr: SocketAddr = format!("127.0.0.1:{}", env.port).parse()?;
    let ca_pem = env.ca_pem()?;
    let mut open_before = open(addr, &ca_pem, None).await?;

    let rotated = rotate_server_certificate(&env)?;
    sighup(&server)?;
    let seen = wait_for_log(&log, 0, "config reloaded").await?;
    let (presented, status, _) = fresh_get(addr, &ca_pem, None, "/health").await?;
    ensure_eq!((presented, status), (rotated.clone(), 200));
    ensure_eq!(open_before.get("/health").await?.0, 200);

    // A broken file: a loud line naming the key, and the last good material stays.
    std::fs::write(env.sandbox_dir.join("server.key"), "not a key")?;
    sighup(&server)?;
    wait_for_log(&log, seen, "CONFIG RELOAD FAILED").await?;
    let text = std::fs::read_to_string(&log)?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("CONFIG RELOAD FAILED"))
        .context("the failure line")?;
    let line: Value = serde_json::from_str(line).context("the log line is not JSON")?;
    ensure_eq!(line["level"], json!("ERROR"));
    ensure!(
        line["error"]
            .as_str()
            .is_some_and(|e| e.contains("server.tls.private_key")),
        "{line}"
    );
    let (presented, status, _) = fresh_get(addr, &ca_pem, None, "/health").await?;
    ensure_eq!((presented, status), (rotated, 200));
    ensure_eq!(open_before.get("/health").await?.0, 200);
    Ok(())
}

/// `admin.listen` needs a restart, so a reload may neither add `[admin]` with `metrics = true`
/// (it would take `/metrics` off the public listener, with no admin listener to serve it) nor
/// remove `[admin]` from a server that has the admin listener (it used to be refused naming
/// `admin.client_ca`). Both are refused naming the key, and nothing changes.
async fn the_admin_listener_comes_and_goes_only_with_a_restart(backend: Backend) -> Result<()> {
    // Without the admin listener: /metrics is public.
    let ctx = Ctx::start(backend, "", "").await?;
    let pki = crate::admin::admin_pki(&ctx.env)?;
    let public_metrics = || async {
        let answer = ctx
            .env
            .client(None)?
            .get(ctx.env.url("/metrics"))
            .send()
            .await?;
        Ok::<_, anyhow::Error>(answer.status().as_u16())
    };
    ensure_eq!(public_metrics().await?, 200);
    let path = ctx
        .env
        .write_config(&format!("{}\n{}", ctx.config_text, pki.table))?;
    match ctx.server.reloader.reload_file(&path) {
        Err(e @ ReloadError::NeedsRestart { .. }) => {
            ensure!(e.to_string().starts_with("`admin.metrics`:"), "{e}");
        }
        other => bail!("adding [admin] with metrics was not refused: {other:?}"),
    }
    ensure_eq!(public_metrics().await?, 200);
    // Without `metrics`, the rest applies and `admin.listen` waits for a restart.
    let quiet = pki.table.replace("metrics = true\n", "");
    let path = ctx
        .env
        .write_config(&format!("{}\n{quiet}", ctx.config_text))?;
    let done = ctx.server.reloader.reload_file(&path)?;
    ensure_eq!(done.restart_needed, vec!["admin.listen"]);
    ensure_eq!(public_metrics().await?, 200);
    ctx.server.stop().await?;

    // With the admin listener: removing [admin] is refused, and the listener still serves.
    let env = TestEnv::new(backend).await?;
    let pki = crate::admin::admin_pki(&env)?;
    let ctx = Ctx::start_in(env, "", "", "", "", &pki.table).await?;
    let base = crate::admin::admin_base(&ctx)?;
    let admin =
        crate::support::https_client(&ctx.env.ca_pem()?, Some((&pki.allowed.0, &pki.allowed.1)))?;
    let without = ctx.config_text.replace(&pki.table, "");
    ensure!(
        without != ctx.config_text,
        "the [admin] table was not removed"
    );
    let path = ctx.env.write_config(&without)?;
    match ctx.server.reloader.reload_file(&path) {
        Err(e @ ReloadError::NeedsRestart { .. }) => {
            let e = e.to_string();
            ensure!(e.starts_with("`admin`:") && !e.contains("client_ca"), "{e}");
        }
        other => bail!("removing [admin] was not refused: {other:?}"),
    }
    let answer = admin.get(format!("{base}/metrics")).send().await?;
    ensure_eq!(answer.status().as_u16(), 200);
    ctx.server.stop().await
}
