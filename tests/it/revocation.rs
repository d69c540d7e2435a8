//! Revocation that reaches the server, over real mTLS: an OCSP responder on loopback that the
//! test controls (good, revoked, unknown, signed by the wrong key, expired, silent, HTTP 500,
//! and signed by responder certificates: the CA's OCSP-signing delegate, one without that
//! purpose, one of another CA), in `soft` and `hard` mode, for handshake and forwarded
//! certificates, its cache and shared fetches; revoked-key sets that cannot be read in `hard`
//! mode; CRLs served over http and https on loopback, revoked mid-run and refreshed (also for a
//! connection already open), past their nextUpdate in each mode, added by a reload, and a CRL
//! URL that cannot be fetched in each mode.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use axum::body::Bytes;
use der::{Decode, Encode};
use serde_json::{Value, json};
use x509_ocsp::{
    BasicOcspResponse, CertStatus, OcspGeneralizedTime, OcspRequest, OcspResponse, ResponderId,
    ResponseData, SingleResponse,
};

use crate::fixtures::{Ctx, Req};
use crate::support::{BOTH, Backend, Case, Doc, JwksServer, SQLITE, TestEnv};
use crate::{case, ensure_eq};
use dcr_server::http::extract::CERTIFICATE_REQUIRED;
use dcr_server::store::ClientStore;

pub fn cases() -> Vec<Case> {
    vec![
        case!(ocsp_soft_and_hard_modes, BOTH),
        case!(ocsp_answers_are_cached_and_shared, SQLITE),
        case!(ocsp_checks_forwarded_certificates, SQLITE),
        case!(unreadable_revoked_keys_refuse_in_hard_mode, BOTH),
        case!(crl_urls_are_fetched_and_refreshed, SQLITE),
        case!(a_crl_past_its_next_update_follows_the_mode, SQLITE),
        case!(a_reload_fetches_a_new_crl_url_first, SQLITE),
        case!(an_unreachable_crl_url_follows_the_mode, SQLITE),
    ]
}

/// What the test responder answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Good,
    Revoked,
    Unknown,
    WrongKey,
    Expired,
    Silent,
    Http500,
    /// Good, signed by a responder certificate the CA issued for OCSP signing.
    Delegated,
    /// Good, signed by a responder certificate the CA issued without the OCSP-signing purpose.
    DelegateWithoutPurpose,
    /// Good, signed by an OCSP-signing responder certificate of another CA.
    ForeignDelegate,
}

/// A responder certificate (DER) and its key.
struct Delegate {
    key: EcdsaKeyPair,
    cert: Vec<u8>,
}

/// What the test responder signs with: the sandbox CA's key and three responder certificates.
struct Signers {
    ca: EcdsaKeyPair,
    delegate: Delegate,
    without_purpose: Delegate,
    foreign: Delegate,
}

impl Signers {
    fn load(dir: &std::path::Path) -> Result<Self> {
        use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer};
        let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key"))?)?;
        let ca = ecdsa(&ca_key)?;
        let issuer =
            Issuer::from_ca_cert_pem(&std::fs::read_to_string(dir.join("ca.pem"))?, ca_key)?;
        let mut other = CertificateParams::new(Vec::<String>::new())?;
        other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let other = Issuer::new(other, rcgen::KeyPair::generate()?);
        let ocsp = Some(ExtendedKeyUsagePurpose::OcspSigning);
        Ok(Self {
            ca,
            delegate: delegate(&issuer, ocsp.clone())?,
            without_purpose: delegate(&issuer, Some(ExtendedKeyUsagePurpose::ClientAuth))?,
            foreign: delegate(&other, ocsp)?,
        })
    }
}

fn ecdsa(key: &rcgen::KeyPair) -> Result<EcdsaKeyPair> {
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key.serialize_der())
        .map_err(|e| anyhow::anyhow!("ECDSA key: {e}"))
}

/// A responder certificate from `issuer` with the purpose `eku`.
fn delegate(
    issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
    eku: Option<rcgen::ExtendedKeyUsagePurpose>,
) -> Result<Delegate> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test OCSP responder");
    params.extended_key_usages = eku.into_iter().collect();
    let cert = params.signed_by(&key, issuer)?;
    Ok(Delegate {
        key: ecdsa(&key)?,
        cert: cert.der().to_vec(),
    })
}

pub(crate) struct Responder {
    answer: Arc<Mutex<Answer>>,
    /// Set once the server's sandbox (and its CA) exists.
    ca: Arc<Mutex<Option<Arc<Signers>>>>,
    hits: Arc<AtomicUsize>,
    pub(crate) url: String,
}

impl Responder {
    pub(crate) async fn start() -> Result<Self> {
        let answer = Arc::new(Mutex::new(Answer::Good));
        let ca: Arc<Mutex<Option<Arc<Signers>>>> = Arc::new(Mutex::new(None));
        let hits = Arc::new(AtomicUsize::new(0));
        let (a, k, h) = (answer.clone(), ca.clone(), hits.clone());
        let app = axum::Router::new().route(
            "/ocsp",
            axum::routing::post(move |body: Bytes| {
                let (answer, ca) = (*a.lock().unwrap(), k.lock().unwrap().clone());
                h.fetch_add(1, Ordering::SeqCst);
                async move { respond(answer, ca, &body).await }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/ocsp", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            answer,
            ca,
            hits,
            url,
        })
    }

    /// Signs as the CA of `ctx`'s sandbox (or its responders) from now on.
    pub(crate) fn sign_for(&self, ctx: &Ctx) -> Result<()> {
        *self.ca.lock().unwrap() = Some(Arc::new(Signers::load(&ctx.env.sandbox_dir)?));
        Ok(())
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn at(offset_secs: i64) -> Result<OcspGeneralizedTime> {
    let t = std::time::SystemTime::now()
        .checked_add(Duration::from_secs(offset_secs.max(0) as u64))
        .and_then(|t| t.checked_sub(Duration::from_secs((-offset_secs).max(0) as u64)))
        .context("time")?;
    Ok(OcspGeneralizedTime(
        der::asn1::GeneralizedTime::from_system_time(t)?,
    ))
}

/// The responder's answer to an OCSP request, as the test chose it.
async fn respond(
    answer: Answer,
    ca: Option<Arc<Signers>>,
    body: &[u8],
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match answer {
        Answer::Silent => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        Answer::Http500 => return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        _ => {}
    }
    let Some(ca) = ca else {
        return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    match build(answer, &ca, body) {
        Ok(der) => ([("content-type", "application/ocsp-response")], der).into_response(),
        Err(e) => (axum::http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

fn build(answer: Answer, signers: &Signers, body: &[u8]) -> Result<Vec<u8>> {
    let request = OcspRequest::from_der(body)?;
    let cert_id = request.tbs_request.request_list[0].req_cert.clone();
    let status = match answer {
        Answer::Revoked => CertStatus::Revoked(x509_ocsp::RevokedInfo {
            revocation_time: at(-3600)?,
            revocation_reason: None,
        }),
        Answer::Unknown => CertStatus::Unknown(der::asn1::Null),
        _ => CertStatus::Good(der::asn1::Null),
    };
    let (this_update, next_update) = match answer {
        Answer::Expired => (at(-7200)?, at(-3600)?),
        _ => (at(-60)?, at(3600)?),
    };
    let data = ResponseData {
        version: x509_ocsp::Version::V1,
        responder_id: ResponderId::ByKey(der::asn1::OctetString::new(vec![1u8; 20])?),
        produced_at: at(0)?,
        responses: vec![SingleResponse {
            cert_id,
            cert_status: status,
            this_update,
            next_update: Some(next_update),
            single_extensions: None,
        }],
        response_extensions: None,
    };
    let tbs = data.to_der()?;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let wrong = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (key, cert) = match answer {
        Answer::WrongKey => (&wrong, None),
        Answer::Delegated => (&signers.delegate.key, Some(&signers.delegate.cert)),
        Answer::DelegateWithoutPurpose => (
            &signers.without_purpose.key,
            Some(&signers.without_purpose.cert),
        ),
        Answer::ForeignDelegate => (&signers.foreign.key, Some(&signers.foreign.cert)),
        _ => (&signers.ca, None),
    };
    let signature = key
        .sign(&rng, &tbs)
        .map_err(|e| anyhow::anyhow!("signing: {e}"))?;
    let certs = cert
        .map(|der| x509_cert::Certificate::from_der(der).map(|c| vec![c]))
        .transpose()?;
    let basic = BasicOcspResponse {
        tbs_response_data: data,
        signature_algorithm: spki::AlgorithmIdentifierOwned {
            oid: der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2"),
            parameters: None,
        },
        signature: der::asn1::BitString::from_bytes(signature.as_ref())?,
        certs,
    };
    Ok(OcspResponse::successful(basic)?.to_der()?)
}

pub(crate) fn ocsp_tls(mode: &str, url: &str, cache_secs: u64) -> String {
    format!(
        "\n[server.tls.ocsp]\nmode = \"{mode}\"\ntimeout_ms = 500\nmax_cache_secs = {cache_secs}\nresponder_url = \"{url}\"\n"
    )
}

async fn ocsp_ctx(backend: Backend, mode: &str, url: &str, cache_secs: u64) -> Result<Ctx> {
    Ctx::start_tls(
        backend,
        &ocsp_tls(mode, url, cache_secs),
        "",
        "software_id_as_application_name.enable = false",
        "",
        "",
    )
    .await
}

/// Registers with the sandbox transport certificate: the status and body.
pub(crate) async fn register(ctx: &Ctx) -> Result<(u16, Value)> {
    ctx.post(&ctx.request(|_| {})?, true).await
}

/// Counts the audit records of refused registrations with `invalid_client`.
async fn refused_audits(ctx: &Ctx) -> Result<usize> {
    use dcr_server::store::AuditLog;
    let records = ctx.store.list_audit(None, None).await?;
    Ok(records
        .iter()
        .filter(|r| r.error_code.map(|c| c.as_str()) == Some("invalid_client"))
        .count())
}

/// Each answer in `soft` and in `hard` mode: a registration is refused with 401
/// `invalid_client` (audited, nothing else written) when the certificate is revoked, and in
/// `hard` mode for every answer but `good` from the CA or its OCSP-signing delegate; `/token` and the management endpoints refuse a
/// revoked certificate the same way.
async fn ocsp_soft_and_hard_modes(backend: Backend) -> Result<()> {
    use Answer::*;
    let answers = [
        Good,
        Revoked,
        Unknown,
        WrongKey,
        Expired,
        Silent,
        Http500,
        Delegated,
        DelegateWithoutPurpose,
        ForeignDelegate,
    ];
    for mode in ["soft", "hard"] {
        let responder = Responder::start().await?;
        let ctx = ocsp_ctx(backend, mode, &responder.url, 1).await?;
        responder.sign_for(&ctx)?;
        let mut refusals = 0;
        for answer in answers {
            responder.set(answer);
            // Past the cache of the previous answer.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let before = ctx.counts().await?;
            let (status, body) = register(&ctx).await?;
            let good = matches!(answer, Good | Delegated);
            let refused = answer == Revoked || (mode == "hard" && !good);
            if refused {
                refusals += 1;
                ensure!(status == 401, "{mode} {answer:?}: {status} {body}");
                ensure_eq!(body["error"], "invalid_client");
                let want = if answer == Revoked {
                    "the client certificate is revoked"
                } else {
                    "the revocation status of the client certificate could not be established"
                };
                ensure_eq!(body["error_description"], want);
                ensure_eq!(ctx.counts().await?, before);
            } else {
                ensure!(status == 201, "{mode} {answer:?}: {status} {body}");
            }
        }
        ensure_eq!(refused_audits(&ctx).await?, refusals);

        // /token and GET /register/{id} with a revoked certificate.
        responder.set(Revoked);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let http = ctx.env.client(Some((&ctx.transport.0, &ctx.transport.1)))?;
        let token = http
            .post(ctx.env.url("/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "someone"),
            ])
            .send()
            .await?;
        ensure_eq!(token.status().as_u16(), 401);
        let body: Value = token.json().await?;
        ensure_eq!(
            body["error_description"],
            "the client certificate is revoked"
        );
        let read = http
            .get(ctx.env.url(&format!("{}/x", dcr_server::REGISTER_PATH)))
            .bearer_auth("abc")
            .send()
            .await?;
        ensure_eq!(read.status().as_u16(), 401);
        let body: Value = read.json().await?;
        ensure_eq!(
            body["error_description"],
            "the client certificate is revoked"
        );

        let metrics = ctx.env.metrics().await?;
        for outcome in ["good", "revoked", "unknown", "invalid", "unavailable"] {
            let label = format!("outcome=\"{outcome}\"");
            ensure!(
                metrics.has("dcr_ocsp_checks_total", &[&label]),
                "{mode}: no {outcome} in {metrics}"
            );
        }
        ctx.server.stop().await?;
    }
    Ok(())
}

/// A good answer is cached (a revocation is honoured once it expires), and concurrent requests
/// for one certificate share one fetch.
async fn ocsp_answers_are_cached_and_shared(backend: Backend) -> Result<()> {
    let responder = Responder::start().await?;
    let ctx = ocsp_ctx(backend, "soft", &responder.url, 2).await?;
    responder.sign_for(&ctx)?;
    let (status, body) = register(&ctx).await?;
    ensure!(status == 201, "{status} {body}");
    let hits = responder.hits();
    ensure_eq!(hits, 1);
    // Revoked from now on, but the good answer is cached for up to 2 s.
    responder.set(Answer::Revoked);
    let (status, body) = register(&ctx).await?;
    ensure!(status == 201, "cached: {status} {body}");
    ensure_eq!(responder.hits(), hits);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Eight requests at once after the cache expired: one fetch, eight refusals.
    let requests = (0..8)
        .map(|_| ctx.request(|_| {}))
        .collect::<Result<Vec<_>>>()?;
    let answers = futures_util::future::join_all(requests.iter().map(|r| ctx.post(r, true))).await;
    for answer in answers {
        let (status, body) = answer?;
        ensure!(status == 401, "{status} {body}");
    }
    ensure_eq!(responder.hits(), hits + 1);
    ctx.server.stop().await
}

/// A certificate forwarded by a trusted proxy is checked as a handshake's is: revoked, the
/// registration and `/token` are refused with 401; good, the registration succeeds.
async fn ocsp_checks_forwarded_certificates(backend: Backend) -> Result<()> {
    let responder = Responder::start().await?;
    let ctx = Ctx::start_tls(
        backend,
        &ocsp_tls("soft", &responder.url, 1),
        "",
        "software_id_as_application_name.enable = false",
        "",
        "[server.forwarded_certificate]\nenable = true\ntrusted_proxies = [\"127.0.0.1\"]\n",
    )
    .await?;
    responder.sign_for(&ctx)?;
    responder.set(Answer::Revoked);
    let forwarded =
        percent_encoding::utf8_percent_encode(&ctx.transport.0, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    // The proxy's own connection has no client certificate.
    let proxy = ctx.env.client(None)?;
    let register = || async {
        let answer = proxy
            .post(ctx.env.url(dcr_server::REGISTER_PATH))
            .header("x-wso2-mutual-auth-cert", &forwarded)
            .header("content-type", "application/jwt")
            .body(ctx.request(|_| {})?.body)
            .send()
            .await?;
        let status = answer.status().as_u16();
        anyhow::Ok((status, answer.json::<Value>().await?))
    };
    let before = ctx.counts().await?;
    let (status, body) = register().await?;
    ensure!(status == 401, "{status} {body}");
    ensure_eq!(
        body["error_description"],
        "the client certificate is revoked"
    );
    ensure_eq!(ctx.counts().await?, before);
    ensure_eq!(refused_audits(&ctx).await?, 1);
    let token = proxy
        .post(ctx.env.url("/token"))
        .header("x-wso2-mutual-auth-cert", &forwarded)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "someone"),
        ])
        .send()
        .await?;
    ensure_eq!(token.status().as_u16(), 401);
    let body: Value = token.json().await?;
    ensure_eq!(
        body["error_description"],
        "the client certificate is revoked"
    );

    responder.set(Answer::Good);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = register().await?;
    ensure!(status == 201, "{status} {body}");
    ctx.server.stop().await
}

/// With `ocsp.mode = "hard"`, a revoked-keys set that cannot be read refuses: a registration
/// with 400 `invalid_client_metadata` (the code of an unreadable software JWKS; nothing
/// written), and once a registered client's set stops answering (past its cache and stale
/// time), `tls_client_auth` and `private_key_jwt` at `/token` and the management endpoints with
/// 401 `invalid_client`.
async fn unreadable_revoked_keys_refuse_in_hard_mode(backend: Backend) -> Result<()> {
    let responder = Responder::start().await?;
    let ctx = Ctx::start_tls(
        backend,
        &ocsp_tls("hard", &responder.url, 60),
        "",
        "software_id_as_application_name.enable = false",
        "cache_ttl = 1\nmax_stale = 0",
        "",
    )
    .await?;
    responder.sign_for(&ctx)?;
    let with_revoked = |url: String, method: &str| -> Result<Req> {
        let ssa = ctx.ssa(|s| s["software_jwks_revoked_endpoint"] = json!(url))?;
        let mut claims = ctx.claims(method)?;
        claims["software_statement"] = json!(ssa);
        Ok(Req::jwt(ctx.sandbox.sign_as_tpp(&claims, "PS256")?))
    };

    // Never readable: the registration is refused.
    let before = ctx.counts().await?;
    let missing = with_revoked(ctx.jwks.url("missing.jwks"), "private_key_jwt")?;
    let (status, body) = ctx.post(&missing, true).await?;
    ensure!(status == 400, "{status} {body}");
    ensure_eq!(body["error"], "invalid_client_metadata");
    ensure_eq!(ctx.counts().await?, before);

    // Readable at registration, unreadable later.
    ctx.jwks.set("rk.jwks", Doc::json(r#"{"keys": []}"#));
    let url = ctx.jwks.url("rk.jwks");
    let (status, pkj) = ctx
        .post(&with_revoked(url.clone(), "private_key_jwt")?, true)
        .await?;
    ensure!(status == 201, "{status} {pkj}");
    let (status, tls) = ctx
        .post(&with_revoked(url, "tls_client_auth")?, true)
        .await?;
    ensure!(status == 201, "{status} {tls}");
    let pkj_id = pkj["client_id"].as_str().context("client_id")?.to_string();
    let tls_id = tls["client_id"].as_str().context("client_id")?.to_string();
    let token = ctx.pkj_token(&pkj_id).await?;
    ensure_eq!(ctx.tls_token(&tls_id).await?.0, 200);
    let read = ctx
        .manage(reqwest::Method::GET, &pkj_id, Some(&token), None, None)
        .await?;
    ensure_eq!(read.status, 200);
    ctx.jwks.set(
        "rk.jwks",
        Doc {
            status: 503,
            body: String::new(),
            delay: Duration::ZERO,
        },
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;

    let (status, body) = ctx.tls_token(&tls_id).await?;
    ensure!(
        status == 401 && body["error"] == "invalid_client",
        "tls_client_auth: {status} {body}"
    );
    let refused = ctx.pkj_token(&pkj_id).await;
    ensure!(refused.is_err(), "private_key_jwt: {refused:?}");
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let answer = ctx
            .manage(method.clone(), &pkj_id, Some(&token), None, None)
            .await?;
        let (status, body) = (answer.status, answer.body);
        ensure!(
            status == 401 && body["error"] == "invalid_client",
            "{method}: {status} {body}"
        );
    }
    ensure!(
        ctx.store.get_client(&pkj_id).await?.is_some(),
        "DELETE was refused"
    );
    ctx.server.stop().await
}

/// What the test CRL distribution point serves.
#[derive(Clone)]
pub(crate) enum Serving {
    /// A CRL made at each request, valid from then for `valid_secs` (so that its refresh
    /// cadence does not depend on how slowly the test runs).
    Fresh {
        revoked: Vec<String>,
        valid_secs: i64,
    },
    /// This CRL (DER).
    Fixed(Vec<u8>),
    /// 503.
    Down,
}

/// A CRL distribution point over http on loopback for the sandbox CA in `dir`.
pub(crate) struct CrlServer {
    serving: Arc<Mutex<Serving>>,
    pub(crate) url: String,
}

impl CrlServer {
    pub(crate) async fn start(dir: &std::path::Path) -> Result<Self> {
        let serving = Arc::new(Mutex::new(Serving::Down));
        let (s, dir) = (serving.clone(), dir.to_path_buf());
        let app = axum::Router::new().route(
            "/ca.crl",
            axum::routing::get(move || {
                let serving = s.lock().unwrap().clone();
                let answer = match serving {
                    Serving::Fresh {
                        revoked,
                        valid_secs,
                    } => {
                        let revoked: Vec<&str> = revoked.iter().map(String::as_str).collect();
                        crl(&dir, &revoked, valid_secs)
                            .ok()
                            .map(|c| c.der().to_vec())
                    }
                    Serving::Fixed(der) => Some(der),
                    Serving::Down => None,
                };
                async move {
                    use axum::response::IntoResponse;
                    match answer {
                        Some(der) => der.into_response(),
                        None => axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/ca.crl", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { serving, url })
    }

    pub(crate) fn serve(&self, serving: Serving) {
        *self.serving.lock().unwrap() = serving;
    }
}

/// Polls `done` every 200 ms until it holds, for at most `limit`.
pub(crate) async fn eventually<F, Fut>(limit: Duration, what: &str, mut done: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if done().await? {
            return Ok(());
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A CRL of the sandbox CA in `dir`, revoking `revoked` (PEM), valid for `valid_secs`; its
/// number is the time, so each is newer than the one before.
fn crl(
    dir: &std::path::Path,
    revoked: &[&str],
    valid_secs: i64,
) -> Result<rcgen::CertificateRevocationList> {
    let ca_pem = std::fs::read_to_string(dir.join("ca.pem"))?;
    let key_pem = std::fs::read_to_string(dir.join("ca.key"))?;
    let number = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
    crate::crl_integrity::crl_signed(&ca_pem, &key_pem, revoked, number, 60, valid_secs)
}

/// A CRL URL over https (PEM) is fetched at start-up and refreshed halfway to its nextUpdate:
/// the transport certificate, revoked mid-run, fails new handshakes once the new CRL is
/// fetched, and stops counting on a connection that was already open.
async fn crl_urls_are_fetched_and_refreshed(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let dir = env.sandbox_dir.clone();
    let cdp = JwksServer::start(&env.ca()?).await?;
    cdp.set("ca.crl", Doc::json(crl(&dir, &[], 4)?.pem()?));
    let url = cdp.url("ca.crl");
    let ctx = Ctx::start_in(
        env,
        &format!("crl = [\"{url}\"]"),
        "",
        "software_id_as_application_name.enable = false",
        "",
        "",
    )
    .await?;
    // Fetched before the first handshake.
    ensure!(cdp.hits("ca.crl") >= 1, "not fetched at start-up");
    let metrics = ctx.env.metrics().await?;
    let ok = "outcome=\"ok\"";
    ensure!(
        metrics.has("dcr_crl_refreshes_total", &[&format!("url=\"{url}\""), ok]),
        "{metrics}"
    );
    ensure!(
        metrics.has("dcr_crl_next_update_timestamp_seconds", &[&url]),
        "{metrics}"
    );
    let (status, body) = register(&ctx).await?;
    ensure!(status == 201, "{status} {body}");
    // A connection opened now, while the certificate is good: a bad token, not a missing
    // certificate.
    let manage = format!("{}/x", dcr_server::REGISTER_PATH);
    let bearer = [("authorization", "Bearer abc")];
    let ca_pem = ctx.env.ca_pem()?;
    let identity = Some((ctx.transport.0.as_str(), ctx.transport.1.as_str()));
    let mut open = crate::reload::open(ctx.server.addr, &ca_pem, identity).await?;
    let (status, body) = open.get_with(&manage, &bearer).await?;
    ensure!(
        status == 401 && body["error_description"] != CERTIFICATE_REQUIRED,
        "{status} {body}"
    );

    // Revoked mid-run: with the next refresh (every 2 s while the CRL is current, every 10 s
    // once it is past its nextUpdate), new handshakes fail.
    cdp.set(
        "ca.crl",
        Doc::json(crl(&dir, &[&ctx.transport.0], 4)?.pem()?),
    );
    eventually(Duration::from_secs(20), "the revocation", || async {
        Ok(register(&ctx).await.is_err())
    })
    .await?;
    // The open connection stays open, without the certificate.
    let (status, body) = open.get_with(&manage, &bearer).await?;
    ensure!(
        status == 401 && body["error_description"] == CERTIFICATE_REQUIRED,
        "on the open connection: {status} {body}"
    );
    ctx.server.stop().await
}

/// A CRL URL that cannot be refreshed: its last CRL stays in use until its nextUpdate plus
/// `clock_skew`; after that its CA's certificates fail the handshake in `hard` mode and are
/// allowed (and counted) in `soft` mode; a CRL served again ends it.
async fn a_crl_past_its_next_update_follows_the_mode(backend: Backend) -> Result<()> {
    let run = |mode: &'static str| async move {
        // One responder per server: each signs as its own sandbox CA.
        let responder = Responder::start().await?;
        let env = TestEnv::new(backend).await?;
        let cdp = CrlServer::start(&env.sandbox_dir).await?;
        // Each CRL is good for 8 s from its fetch, and 2 s of clock_skew more.
        cdp.serve(Serving::Fresh {
            revoked: Vec::new(),
            valid_secs: 8,
        });
        let ctx = Ctx::start_in(
            env,
            &format!(
                "crl = [\"{}\"]{}",
                cdp.url,
                ocsp_tls(mode, &responder.url, 1)
            ),
            "",
            "software_id_as_application_name.enable = false\nclock_skew = 2",
            "",
            "",
        )
        .await?;
        responder.sign_for(&ctx)?;
        cdp.serve(Serving::Down);
        let url_label = format!("url=\"{}\"", cdp.url);
        eventually(Duration::from_secs(10), "a failed refresh", || async {
            let metrics = ctx.env.metrics().await?;
            Ok(metrics.has(
                "dcr_crl_refreshes_total",
                &[&url_label, "outcome=\"failed\""],
            ))
        })
        .await?;
        // Refreshes fail; the last CRL stays in use.
        let (status, body) = register(&ctx).await?;
        ensure!(status == 201, "{mode}, before nextUpdate: {status} {body}");

        // Past nextUpdate plus clock_skew (at most 10 s after the last good fetch).
        if mode == "hard" {
            eventually(Duration::from_secs(20), "hard: a refusal", || async {
                Ok(register(&ctx).await.is_err())
            })
            .await?;
        } else {
            let allowed = ["decision=\"allowed\""];
            let stale =
                |m: &crate::support::Metrics| m.sum("dcr_crl_stale_handshakes_total", &allowed);
            let before = stale(&ctx.env.metrics().await?);
            eventually(
                Duration::from_secs(20),
                "soft: a stale handshake",
                || async {
                    let (status, body) = register(&ctx).await?;
                    ensure!(status == 201, "soft, stale: {status} {body}");
                    Ok(stale(&ctx.env.metrics().await?) > before)
                },
            )
            .await?;
        }

        // Served again: fetched within the retry (a second, once stale).
        cdp.serve(Serving::Fresh {
            revoked: Vec::new(),
            valid_secs: 60,
        });
        eventually(Duration::from_secs(10), "the recovery", || async {
            Ok(register(&ctx).await.is_ok_and(|(status, _)| status == 201))
        })
        .await?;
        ctx.server.stop().await
    };
    let (soft, hard) = tokio::join!(run("soft"), run("hard"));
    soft.and(hard)
}

/// A CRL URL added by a reload (SIGHUP's path) is fetched before the reload puts it in use, so
/// that `hard` mode does not refuse its CA's certificates as judged by a CRL never fetched.
async fn a_reload_fetches_a_new_crl_url_first(backend: Backend) -> Result<()> {
    let responder = Responder::start().await?;
    let ctx = ocsp_ctx(backend, "hard", &responder.url, 60).await?;
    responder.sign_for(&ctx)?;
    let (status, body) = register(&ctx).await?;
    ensure!(status == 201, "{status} {body}");
    let cdp = CrlServer::start(&ctx.env.sandbox_dir).await?;
    cdp.serve(Serving::Fixed(
        crl(&ctx.env.sandbox_dir, &[], 3600)?.der().to_vec(),
    ));
    let text = ctx.config_text.replace(
        "[server.tls.ocsp]",
        &format!("crl = [\"{}\"]\n[server.tls.ocsp]", cdp.url),
    );
    ensure!(text != ctx.config_text);
    let path = ctx.env.write_config(&text)?;
    ctx.server.reloader.reload_and_log(path).await;
    ensure!(
        ctx.server.reloader.config().server.tls.crl.len() == 1,
        "not reloaded"
    );
    let (status, body) = register(&ctx).await?;
    ensure!(status == 201, "right after the reload: {status} {body}");
    ctx.server.stop().await
}

/// A CRL URL that cannot be fetched: its CA's certificates are allowed (and counted) in
/// `soft` mode and fail the handshake in `hard` mode.
async fn an_unreachable_crl_url_follows_the_mode(backend: Backend) -> Result<()> {
    let responder = Responder::start().await?;
    for mode in ["soft", "hard"] {
        let ctx = Ctx::start_tls(
            backend,
            &format!(
                "crl = [\"http://127.0.0.1:9/none.crl\"]{}",
                ocsp_tls(mode, &responder.url, 1)
            ),
            "",
            "software_id_as_application_name.enable = false",
            "",
            "",
        )
        .await?;
        responder.sign_for(&ctx)?;
        let answer = register(&ctx).await;
        if mode == "soft" {
            let (status, body) = answer?;
            ensure!(status == 201, "soft: {status} {body}");
            let metrics = ctx.env.metrics().await?;
            ensure!(
                metrics.has("dcr_crl_stale_handshakes_total", &["decision=\"allowed\""]),
                "{metrics}"
            );
        } else {
            ensure!(answer.is_err(), "hard: the handshake succeeded: {answer:?}");
        }
        ctx.server.stop().await?;
    }
    Ok(())
}
