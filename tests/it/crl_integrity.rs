//! CRL integrity, over real mTLS with loopback distribution points: a CRL is used only once
//! it is checked (usable by the TLS verifier, signed by a `client_ca` anchor or a
//! `server.tls.crl_issuers` intermediate), a URL keeps its issuer until a reload and never goes
//! back to an older CRL, and a CRL refresh reads no TLS file.
//!
//! Each case fails on the code before these rules: a CRL with the CA's name and another key
//! was put in use (every TPP certificate of that CA then failed the handshake), an older or
//! another issuer's CRL replaced the current one (revoked certificates got in again), a v1 CRL
//! stopped start-up naming `client_ca`, and a refresh re-read every TLS file.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::{Value, json};

use crate::fixtures::Ctx;
use crate::revocation::{CrlServer, Responder, Serving, eventually, ocsp_tls, register};
use crate::support::{Backend, Case, SQLITE, SpawnedServer, TestEnv, run_binary};
use crate::{case, ensure_eq};
use dcr_server::http::extract::CERTIFICATE_REQUIRED;
use dcr_server::sandbox::SandboxCa;

pub fn cases() -> Vec<Case> {
    vec![
        case!(a_url_crl_signed_by_another_key_is_refused, SQLITE),
        case!(an_older_crl_at_a_url_is_refused, SQLITE),
        case!(another_issuers_crl_at_a_url_is_refused, SQLITE),
        case!(a_version_1_crl_at_a_url_does_not_stop_start_up, SQLITE),
        case!(a_crl_file_signed_by_another_key_is_refused, SQLITE),
        case!(a_crl_of_an_intermediate_needs_crl_issuers, SQLITE),
        case!(a_crl_refresh_reads_no_tls_file, SQLITE),
    ]
}

/// A CRL (DER) with the name of the CA `ca_pem`, signed with `key_pem` (the CA's key, or
/// another), revoking `revoked` (PEM), CRL number `number`, thisUpdate `age_secs` ago and
/// nextUpdate `valid_secs` from now.
fn crl_der(
    ca_pem: &str,
    key_pem: &str,
    revoked: &[&str],
    number: u64,
    age_secs: i64,
    valid_secs: i64,
) -> Result<Vec<u8>> {
    Ok(
        crl_signed(ca_pem, key_pem, revoked, number, age_secs, valid_secs)?
            .der()
            .to_vec(),
    )
}

/// [`crl_der`] as rcgen's CRL (for its PEM); the revocation tests make theirs with it too.
pub(crate) fn crl_signed(
    ca_pem: &str,
    key_pem: &str,
    revoked: &[&str],
    number: u64,
    age_secs: i64,
    valid_secs: i64,
) -> Result<rcgen::CertificateRevocationList> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let key = KeyPair::from_pem(key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(ca_pem, &key)?;
    let mut revoked_certs = Vec::new();
    for pem in revoked {
        let der = CertificateDer::from_pem_slice(pem.as_bytes())?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)?;
        revoked_certs.push(rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from_slice(cert.raw_serial()),
            revocation_time: time::OffsetDateTime::now_utc() - time::Duration::hours(2),
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        });
    }
    let now = time::OffsetDateTime::now_utc();
    let params = rcgen::CertificateRevocationListParams {
        this_update: now - time::Duration::seconds(age_secs),
        next_update: now + time::Duration::seconds(valid_secs),
        crl_number: rcgen::SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    Ok(params.signed_by(&issuer)?)
}

/// A DER element.
fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

/// A version 1 CRL (no version field, no extensions), as `openssl ca -gencrl` writes by
/// default, signed by the sandbox CA: x509-parser reads it, the TLS verifier cannot use it.
fn v1_crl(ca: &SandboxCa) -> Result<Vec<u8>> {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let cert = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes())?;
    let (_, cert) = x509_parser::parse_x509_certificate(&cert)?;
    // ecdsa-with-SHA256
    let alg = der(
        0x30,
        &der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
    );
    let utc = |t: time::OffsetDateTime| {
        let text = format!(
            "{:02}{:02}{:02}{:02}{:02}{:02}Z",
            t.year() % 100,
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        Ok::<_, anyhow::Error>(der(0x17, text.as_bytes()))
    };
    let now = time::OffsetDateTime::now_utc();
    let mut tbs = alg.clone();
    tbs.extend_from_slice(cert.subject().as_raw());
    tbs.extend(utc(now - time::Duration::minutes(1))?);
    tbs.extend(utc(now + time::Duration::days(7))?);
    let tbs = der(0x30, &tbs);
    let key = KeyPair::from_pem(&ca.key_pem())?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key.serialize_der())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let signature = pair
        .sign(&aws_lc_rs::rand::SystemRandom::new(), &tbs)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut bits = vec![0u8];
    bits.extend_from_slice(signature.as_ref());
    let mut all = tbs;
    all.extend(alg);
    all.extend(der(0x03, &bits));
    Ok(der(0x30, &all))
}

/// An intermediate CA under `parent`, written to `dir` as `ca.pem` and `ca.key`.
fn intermediate(parent: &SandboxCa, dir: &std::path::Path, name: &str) -> Result<SandboxCa> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CountryName, "GB");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2044, 1, 1);
    let parent_key = KeyPair::from_pem(&parent.key_pem())?;
    let issuer = Issuer::from_ca_cert_pem(&parent.cert_pem, parent_key)?;
    let cert = params.signed_by(&key, &issuer)?;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("ca.pem"), cert.pem())?;
    std::fs::write(dir.join("ca.key"), key.serialize_pem())?;
    SandboxCa::load(dir)
}

/// Whether a new connection presenting `identity` gets an answer on `/health` (a certificate
/// the verifier refuses fails the handshake).
async fn handshake_ok(addr: SocketAddr, ca_pem: &str, identity: (&str, &str)) -> bool {
    match crate::reload::open(addr, ca_pem, Some(identity)).await {
        Ok(mut connection) => connection.get("/health").await.is_ok(),
        Err(_) => false,
    }
}

/// The fetches of `url` so far with `outcome` (`ok`, `failed`: a refused CRL counts as a
/// failed fetch), or all of them.
async fn fetches(env: &TestEnv, url: &str, outcome: Option<&str>) -> Result<f64> {
    let url = format!("url=\"{url}\"");
    let outcome = outcome.map(|o| format!("outcome=\"{o}\""));
    let mut labels = vec![url.as_str()];
    labels.extend(outcome.as_deref());
    Ok(env.metrics().await?.sum("dcr_crl_refreshes_total", &labels))
}

/// Serves `crl` at `cdp`, waits until the server fetched its URL twice more (so at least once
/// after the change), and checks that a fetch was counted as failed or refused meanwhile.
async fn serve_refused(env: &TestEnv, cdp: &CrlServer, crl: Vec<u8>) -> Result<()> {
    let failed = fetches(env, &cdp.url, Some("failed")).await?;
    let before = fetches(env, &cdp.url, None).await?;
    cdp.serve(Serving::Fixed(crl));
    eventually(Duration::from_secs(20), "two more fetches", || async {
        Ok(fetches(env, &cdp.url, None).await? >= before + 2.0)
    })
    .await?;
    ensure!(
        fetches(env, &cdp.url, Some("failed")).await? > failed,
        "the CRL at {} was not counted as refused",
        cdp.url
    );
    Ok(())
}

/// A CRL by URL with the CA's name but signed by another key: refused with a WARN naming the
/// URL and the key, the last good CRL stays, and the TPP's certificate keeps working (it used
/// to be put in use, and then every certificate of that CA failed the handshake).
async fn a_url_crl_signed_by_another_key_is_refused(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let ca = env.ca()?;
    let cdp = CrlServer::start(&env.sandbox_dir).await?;
    cdp.serve(Serving::Fresh {
        revoked: Vec::new(),
        valid_secs: 4,
    });
    let text = env.config_toml_with(&format!("crl = [\"{}\"]", cdp.url), "clock_skew = 2", "");
    let path = env.write_config(&text)?;
    let log = env.dir.path().join("server.log");
    let _server = SpawnedServer::start(&path, env.port, &[], &log).await?;
    let addr: SocketAddr = format!("127.0.0.1:{}", env.port).parse()?;
    let (ca_pem, (cert, key)) = (env.ca_pem()?, env.transport_pem()?);
    ensure!(handshake_ok(addr, &ca_pem, (&cert, &key)).await, "before");

    // The CA's name, another key; a number above any the fresh CRLs had.
    let impostor = KeyPair::generate()?.serialize_pem();
    let crl = crl_der(&ca.cert_pem, &impostor, &[], 1 << 62, 0, 4)?;
    serve_refused(&env, &cdp, crl).await?;

    // Still the last good CRL: the TPP's certificate is accepted (a bad token, not a missing
    // certificate).
    let mut connection = crate::reload::open(addr, &ca_pem, Some((&cert, &key))).await?;
    let manage = format!("{}/x", dcr_server::REGISTER_PATH);
    let (status, body) = connection
        .get_with(&manage, &[("authorization", "Bearer abc")])
        .await
        .context("the TPP's certificate was refused after the impostor CRL")?;
    ensure!(
        status == 401 && body["error_description"] != CERTIFICATE_REQUIRED,
        "{status} {body}"
    );
    let text = std::fs::read_to_string(&log)?;
    let line = text
        .lines()
        .find(|l| l.contains("its signature does not verify"))
        .with_context(|| format!("no refusal line in the log:\n{text}"))?;
    let line: Value = serde_json::from_str(line)?;
    ensure_eq!(line["level"], json!("WARN"));
    ensure_eq!(line["url"], json!(cdp.url));
    ensure_eq!(line["key"], json!("server.tls.crl[0]"));
    ensure!(
        !text.contains("new CRL in use"),
        "the impostor CRL was put in use"
    );
    Ok(())
}

/// An older CRL (lower CRL number, earlier thisUpdate) at a URL does not replace the current
/// one: the certificate the current CRL revokes stays refused (it used to get in again). A
/// newer one is taken.
async fn an_older_crl_at_a_url_is_refused(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let ca = env.ca()?;
    let (transport, _) = env.transport_pem()?;
    let cdp = CrlServer::start(&env.sandbox_dir).await?;
    // Revokes the TPP; fetched again within 2 s.
    let revoking = crl_der(&ca.cert_pem, &ca.key_pem(), &[&transport], 1000, 60, 4)?;
    cdp.serve(Serving::Fixed(revoking));
    let ctx = Ctx::start_in(
        env,
        &format!("crl = [\"{}\"]", cdp.url),
        "",
        "software_id_as_application_name.enable = false\nclock_skew = 2",
        "",
        "",
    )
    .await?;
    ensure!(register(&ctx).await.is_err(), "revoked at start-up");

    // CRL number 999 from an hour ago, revoking nothing: refused, the TPP stays revoked.
    let older = crl_der(&ca.cert_pem, &ca.key_pem(), &[], 999, 3600, 4)?;
    serve_refused(&ctx.env, &cdp, older).await?;
    ensure!(
        register(&ctx).await.is_err(),
        "an older CRL let the revoked certificate in again"
    );

    // The same number with an earlier thisUpdate is older too.
    let earlier = crl_der(&ca.cert_pem, &ca.key_pem(), &[], 1000, 3600, 4)?;
    serve_refused(&ctx.env, &cdp, earlier).await?;
    ensure!(
        register(&ctx).await.is_err(),
        "an earlier thisUpdate was taken"
    );

    // A newer one is taken.
    let newer = crl_der(&ca.cert_pem, &ca.key_pem(), &[], 1001, 0, 3600)?;
    cdp.serve(Serving::Fixed(newer));
    eventually(Duration::from_secs(20), "the newer CRL", || async {
        Ok(register(&ctx).await.is_ok_and(|(status, _)| status == 201))
    })
    .await?;
    ctx.server.stop().await
}

/// Another issuer's CRL at a URL (another `client_ca` anchor, trusted in itself) does not
/// replace the CA's: in `hard` mode the CA stays covered (its good certificate works, the one
/// its CRL revokes stays refused; it used to become "not covered" and the revoked certificate
/// got in). A reload lets the URL take the new issuer; the former issuer's certificates then
/// count as without their CRL and `hard` refuses them.
async fn another_issuers_crl_at_a_url_is_refused(backend: Backend) -> Result<()> {
    let responder = Responder::start().await?;
    let env = TestEnv::new(backend).await?;
    let ca = env.ca()?;
    // Another CA, trusted too: a second anchor in the client_ca file (after the sandbox CA,
    // which stays the first certificate, the one the sandbox tools sign with).
    let other = SandboxCa::generate("Another CA")?;
    let ca_file = env.sandbox_dir.join("ca.pem");
    std::fs::write(&ca_file, format!("{}{}", ca.cert_pem, other.cert_pem))?;
    let tpp = env.sandbox()?.tpp;
    let (victim, victim_key) = ca.issue_ob_transport(&tpp.org_id, &tpp.software_id)?;
    let cdp = CrlServer::start(&env.sandbox_dir).await?;
    cdp.serve(Serving::Fixed(crl_der(
        &ca.cert_pem,
        &ca.key_pem(),
        &[&victim],
        1000,
        60,
        4,
    )?));
    let ctx = Ctx::start_in(
        env,
        &format!(
            "crl = [\"{}\"]{}",
            cdp.url,
            ocsp_tls("hard", &responder.url, 60)
        ),
        "",
        "software_id_as_application_name.enable = false\nclock_skew = 2",
        "",
        "",
    )
    .await?;
    responder.sign_for(&ctx)?;
    let ca_pem = ctx.env.ca_pem()?;
    let addr = ctx.server.addr;
    let (status, body) = register(&ctx).await?;
    ensure!(status == 201, "{status} {body}");
    ensure!(!handshake_ok(addr, &ca_pem, (&victim, &victim_key)).await);

    // The other CA's CRL, revoking nothing, with a higher number.
    let crl = crl_der(&other.cert_pem, &other.key_pem(), &[], 5000, 0, 4)?;
    serve_refused(&ctx.env, &cdp, crl).await?;
    ensure!(
        !handshake_ok(addr, &ca_pem, (&victim, &victim_key)).await,
        "another issuer's CRL let the revoked certificate in"
    );
    let (status, body) = register(&ctx).await?;
    ensure!(
        status == 201,
        "hard mode, the CA still covered: {status} {body}"
    );

    // SIGHUP's path: the URL may now take the other issuer; the sandbox CA lost its CRL.
    let path = ctx.env.write_config(&ctx.config_text)?;
    ctx.server.reloader.reload_and_log(path).await;
    eventually(
        Duration::from_secs(10),
        "hard: the CA without its CRL",
        || async { Ok(register(&ctx).await.is_err()) },
    )
    .await?;
    let metrics = ctx.env.metrics().await?;
    ensure!(
        metrics.has("dcr_crl_stale_handshakes_total", &["decision=\"refused\""]),
        "{}",
        metrics.0
    );
    ctx.server.stop().await
}

/// A v1 CRL at a URL (x509-parser reads it, the TLS verifier cannot use it) does not stop
/// start-up (it used to, naming `server.tls.client_ca`); `check-config` names
/// `server.tls.crl[0]` and the reason; later, the last usable CRL stays and reloads work.
async fn a_version_1_crl_at_a_url_does_not_stop_start_up(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let ca = env.ca()?;
    let (transport, _) = env.transport_pem()?;
    let cdp = CrlServer::start(&env.sandbox_dir).await?;
    let v1 = v1_crl(&ca)?;
    ensure!(
        x509_parser::parse_x509_crl(&v1).is_ok(),
        "the v1 CRL parses"
    );
    cdp.serve(Serving::Fixed(v1.clone()));
    let ctx = Ctx::start_in(
        env,
        &format!("crl = [\"{}\"]", cdp.url),
        "",
        "software_id_as_application_name.enable = false\nclock_skew = 2",
        "",
        "",
    )
    .await
    .context("start-up with a v1 CRL at the URL")?;
    let (status, body) = register(&ctx).await?;
    ensure!(status == 201, "{status} {body}");

    let path = ctx.env.write_config(&ctx.config_text)?;
    let (args_path, cwd) = (
        path.to_string_lossy().into_owned(),
        ctx.env.dir.path().to_path_buf(),
    );
    let (ok, _, stderr) = tokio::task::spawn_blocking(move || {
        run_binary(&["--config", &args_path, "check-config"], &cwd)
    })
    .await??;
    ensure!(ok, "check-config: {stderr}");
    let warning = stderr
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "warning: crl: {}: server.tls.crl[0] cannot be used",
                cdp.url
            ))
        })
        .context(stderr.clone())?;
    ensure!(warning.contains("version 1"), "{warning}");
    ensure!(!stderr.contains("server.tls.client_ca:"), "{stderr}");

    // A usable CRL (revoking the TPP), then the v1 CRL again: the usable one stays.
    cdp.serve(Serving::Fixed(crl_der(
        &ca.cert_pem,
        &ca.key_pem(),
        &[&transport],
        1000,
        60,
        4,
    )?));
    eventually(Duration::from_secs(20), "the usable CRL", || async {
        Ok(register(&ctx).await.is_err())
    })
    .await?;
    serve_refused(&ctx.env, &cdp, v1).await?;
    ensure!(
        register(&ctx).await.is_err(),
        "the last usable CRL was dropped"
    );
    ctx.server
        .reloader
        .reload_file(&path)
        .context("a reload with a v1 CRL at the URL")?;
    ensure!(register(&ctx).await.is_err(), "after the reload");
    ctx.server.stop().await
}

/// A CRL file with the CA's name but signed by another key: a reload and `check-config` fail
/// naming `server.tls.crl[0]` (it used to be loaded, and every certificate of that CA then
/// failed the handshake).
async fn a_crl_file_signed_by_another_key_is_refused(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let ca = env.ca()?;
    let crl = env.dir.path().join("ca.crl");
    std::fs::write(&crl, ca.crl_pem(&[])?)?;
    let text = env.config_toml(&format!("crl = [\"{}\"]", crl.display()));
    let path = env.write_config(&text)?;
    let server = env
        .start_with(
            dcr_server::config::Config::parse(&text, &path)?,
            axum::Router::new(),
        )
        .await?;
    let impostor = KeyPair::generate()?.serialize_pem();
    std::fs::write(&crl, crl_der(&ca.cert_pem, &impostor, &[], 2, 0, 3600)?)?;
    match server.reloader.reload_file(&path) {
        Err(e) => {
            let e = e.to_string();
            ensure!(e.contains("server.tls.crl[0]"), "{e}");
            ensure!(e.contains("its signature does not verify"), "{e}");
        }
        Ok(_) => bail!("a CRL file signed by another key was loaded"),
    }
    let (args_path, cwd) = (
        path.to_string_lossy().into_owned(),
        env.dir.path().to_path_buf(),
    );
    let (ok, _, stderr) = tokio::task::spawn_blocking(move || {
        run_binary(&["--config", &args_path, "check-config"], &cwd)
    })
    .await??;
    ensure!(!ok, "check-config accepted it");
    ensure!(stderr.contains("server.tls.crl[0]"), "{stderr}");
    ensure!(stderr.contains("its signature does not verify"), "{stderr}");
    // The running server keeps the good CRL: the TPP's certificate works.
    let (cert, key) = env.transport_pem()?;
    ensure!(handshake_ok(server.addr, &env.ca_pem()?, (&cert, &key)).await);
    server.stop().await
}

/// A CRL of an intermediate CA that is not in `client_ca` counts only when the intermediate
/// is listed in `server.tls.crl_issuers` (and chains to an anchor): then it revokes that
/// intermediate's certificates, presented with their chain. Without it the CRL file is refused
/// naming its key (the handshake used to check it against whatever chain was presented).
async fn a_crl_of_an_intermediate_needs_crl_issuers(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let ca = env.ca()?;
    let sub_dir = env.dir.path().join("sub");
    let sub = intermediate(&ca, &sub_dir, "Sandbox issuing CA")?;
    let tpp = env.sandbox()?.tpp;
    let (good, good_key) = sub.issue_ob_transport(&tpp.org_id, &tpp.software_id)?;
    let (victim, victim_key) = sub.issue_ob_transport(&tpp.org_id, &tpp.software_id)?;
    let good = format!("{good}{}", sub.cert_pem);
    let victim = format!("{victim}{}", sub.cert_pem);
    let crl = env.dir.path().join("sub.crl");
    std::fs::write(&crl, sub.crl_pem(&[&victim])?)?;
    let env = &env;
    let crl = &crl;
    let start = |extra: String| async move {
        let text = env.config_toml(&format!("crl = [\"{}\"]\n{extra}", crl.display()));
        let config = dcr_server::config::Config::parse(&text, std::path::Path::new("t.toml"))?;
        env.start_with(config, crate::server::whoami_route()).await
    };

    // Not listed: the CRL file has no trusted issuer.
    let refused = start(String::new())
        .await
        .err()
        .context("started without crl_issuers")?;
    let message = format!("{refused:#}");
    ensure!(message.contains("server.tls.crl[0]"), "{message}");
    ensure!(message.contains("server.tls.crl_issuers"), "{message}");
    // A crl_issuers certificate that does not chain to client_ca is refused.
    intermediate(
        &SandboxCa::generate("Stray root")?,
        &env.dir.path().join("stray"),
        "Sandbox issuing CA",
    )?;
    let refused = start(format!(
        "crl_issuers = [\"{}\"]",
        env.dir.path().join("stray/ca.pem").display()
    ))
    .await
    .err()
    .context("started with a stray crl_issuers certificate")?;
    let message = format!("{refused:#}");
    ensure!(message.contains("server.tls.crl_issuers[0]"), "{message}");
    ensure!(message.contains("does not chain"), "{message}");

    // Listed: the intermediate's good certificate works, its revoked one fails the handshake.
    let server = start(format!(
        "crl_issuers = [\"{}\"]",
        sub_dir.join("ca.pem").display()
    ))
    .await?;
    let ca_pem = env.ca_pem()?;
    let mut connection =
        crate::reload::open(server.addr, &ca_pem, Some((&good, &good_key))).await?;
    let (status, body) = connection.get("/test/whoami").await?;
    ensure_eq!((status, body["cn"].clone()), (200, json!(tpp.software_id)));
    ensure_eq!(body["issuer_cn"], json!("Sandbox issuing CA"));
    ensure!(
        !handshake_ok(server.addr, &ca_pem, (&victim, &victim_key)).await,
        "the intermediate's CRL did not revoke"
    );
    drop(connection);
    server.stop().await
}

/// A CRL refresh reads no TLS file: with a half-written server certificate on disk, a new CRL
/// is still put in use (it used to wait for the file, and was never tried again once the file
/// was fixed), and the server keeps presenting the certificate it loaded.
async fn a_crl_refresh_reads_no_tls_file(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let ca = env.ca()?;
    let (transport, _) = env.transport_pem()?;
    let cdp = CrlServer::start(&env.sandbox_dir).await?;
    // Fetched again within 2 s.
    cdp.serve(Serving::Fixed(crl_der(
        &ca.cert_pem,
        &ca.key_pem(),
        &[],
        1000,
        60,
        4,
    )?));
    let ctx = Ctx::start_in(
        env,
        &format!("crl = [\"{}\"]", cdp.url),
        "",
        "software_id_as_application_name.enable = false",
        "",
        "",
    )
    .await?;
    let (status, body) = register(&ctx).await?;
    ensure!(status == 201, "{status} {body}");
    let certificate = ctx.env.sandbox_dir.join("server.pem");
    let whole = std::fs::read_to_string(&certificate)?;
    std::fs::write(&certificate, &whole[..whole.len() / 2])?;

    // The same CRL from now on, revoking the TPP.
    cdp.serve(Serving::Fixed(crl_der(
        &ca.cert_pem,
        &ca.key_pem(),
        &[&transport],
        1001,
        0,
        3600,
    )?));
    eventually(
        Duration::from_secs(15),
        "the new CRL with a half-written server certificate on disk",
        || async { Ok(register(&ctx).await.is_err()) },
    )
    .await?;
    let ca_pem = ctx.env.ca_pem()?;
    let mut anonymous = crate::reload::open(ctx.server.addr, &ca_pem, None).await?;
    ensure_eq!(anonymous.get("/health").await?.0, 200);
    std::fs::write(&certificate, &whole)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(register(&ctx).await.is_err(), "after the file was fixed");
    ctx.server.stop().await
}
