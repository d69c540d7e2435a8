//! `dcr-bench stub-as`: a bank authorization server that answers at once and checks nothing,
//! for measuring dcr-server's own cost in `rfc7591` mode. It runs as a process of its own, so
//! that its CPU is neither the server's nor the load generator's.
//!
//! It serves over HTTPS (a certificate for 127.0.0.1 and localhost, issued at start by the
//! sandbox CA, which the server's `authorization_server.ca` trusts):
//! - discovery, naming `https://{listen}` as issuer and its endpoints below;
//! - RFC 7591 `POST /reg`: 201 with the metadata sent, a fresh UUID `client_id`, a
//!   `registration_access_token` and `registration_client_uri` `{issuer}/reg/{id}`;
//! - RFC 7592 `PUT /reg/{id}` (200, a new registration access token), `DELETE` (204);
//! - RFC 7662 `POST /introspect`: a token made by [`management_token`] is active for its
//!   client, bound to the sandbox TPP's transport certificate; any other is not active;
//! - `GET /stats`: TCP connections accepted, requests answered, and its own CPU time, read by
//!   `dcr-bench --stub-as` before and after each run.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use axum::extract::{Form, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use dcr_server::sandbox::SandboxCa;
use serde_json::{Map, Value, json};

/// The prefix of the management tokens the stub's introspection accepts.
const MANAGEMENT_TOKEN_PREFIX: &str = "stub-mgmt.";

/// The management token (RFC 7592 access, by introspection) of `client_id` at the stub.
pub fn management_token(client_id: &str) -> String {
    format!("{MANAGEMENT_TOKEN_PREFIX}{client_id}")
}

/// What `GET /stats` reports; the bench takes the difference over a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub connections: u64,
    pub requests: u64,
    pub cpu_us: u64,
}

impl Stats {
    pub fn from_json(v: &Value) -> Option<Self> {
        Some(Self {
            connections: v["connections"].as_u64()?,
            requests: v["requests"].as_u64()?,
            cpu_us: v["cpu_us"].as_u64()?,
        })
    }

    /// What happened between `before` and `self`, as JSON for a run's report. The stats
    /// request itself is not counted.
    pub fn since(self, before: Stats, calls: usize) -> Value {
        let requests = self.requests.saturating_sub(before.requests + 1);
        let cpu = self.cpu_us.saturating_sub(before.cpu_us);
        json!({
            "connections_accepted": self.connections.saturating_sub(before.connections),
            "requests": requests,
            "cpu_us_per_request": (calls > 0).then(|| (cpu as f64 / calls as f64).round()),
        })
    }
}

struct Stub {
    issuer: String,
    /// `cnf.x5t#S256` of every active token: the sandbox TPP's transport certificate.
    x5t_s256: String,
    connections: AtomicU64,
    requests: AtomicU64,
}

impl Stub {
    fn counted(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// An RFC 7591/7592 answer: the metadata sent, with the AS's fields for `client_id`.
    fn client(&self, sent: Map<String, Value>, client_id: &str) -> Value {
        let mut m = sent;
        m.insert("client_id".into(), json!(client_id));
        m.insert(
            "registration_access_token".into(),
            json!(uuid::Uuid::new_v4().simple().to_string()),
        );
        m.insert(
            "registration_client_uri".into(),
            json!(format!("{}/reg/{client_id}", self.issuer)),
        );
        Value::Object(m)
    }
}

type Shared = State<Arc<Stub>>;

async fn discovery(State(s): Shared) -> Response {
    s.counted();
    let i = &s.issuer;
    axum::Json(json!({
        "issuer": i,
        "registration_endpoint": format!("{i}/reg"),
        "introspection_endpoint": format!("{i}/introspect"),
        "token_endpoint": format!("{i}/token"),
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "tls_client_auth"],
        "tls_client_certificate_bound_access_tokens": true,
    }))
    .into_response()
}

async fn register(State(s): Shared, body: axum::body::Bytes) -> Response {
    s.counted();
    let Ok(Value::Object(sent)) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_client_metadata"})),
        )
            .into_response();
    };
    let id = uuid::Uuid::new_v4().to_string();
    (StatusCode::CREATED, axum::Json(s.client(sent, &id))).into_response()
}

async fn update(
    State(s): Shared,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    s.counted();
    let sent = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    axum::Json(s.client(sent, &id)).into_response()
}

async fn delete(State(s): Shared) -> StatusCode {
    s.counted();
    StatusCode::NO_CONTENT
}

async fn introspect(
    State(s): Shared,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> Response {
    s.counted();
    let client_id = form
        .get("token")
        .and_then(|t| t.strip_prefix(MANAGEMENT_TOKEN_PREFIX));
    let answer = match client_id {
        Some(id) => json!({
            "active": true,
            "client_id": id,
            "token_type": "Bearer",
            "exp": dcr_server::clock::now() + 3600,
            "cnf": {"x5t#S256": s.x5t_s256},
        }),
        None => json!({"active": false}),
    };
    axum::Json(answer).into_response()
}

async fn stats(State(s): Shared) -> Response {
    s.counted();
    let cpu_us = process_cpu_us();
    axum::Json(json!({
        "connections": s.connections.load(Ordering::Relaxed),
        "requests": s.requests.load(Ordering::Relaxed),
        "cpu_us": cpu_us,
    }))
    .into_response()
}

/// This process's user + system CPU time in µs (getrusage: finer than /proc's 10 ms ticks).
fn process_cpu_us() -> u64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to write into.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage through a valid pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

/// Serves the stub on `listen` until the process is stopped.
pub async fn serve(listen: SocketAddr, sandbox: &Path) -> Result<()> {
    use rustls::pki_types::pem::PemObject;
    let ca = SandboxCa::load(sandbox)?;
    let (cert_pem, key_pem) = ca.issue(
        &[(rcgen::DnType::CommonName, listen.ip().to_string())],
        &[&listen.ip().to_string(), "localhost"],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    let mut tls =
        rustls::ServerConfig::builder_with_provider(dcr_server::pki::tls::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

    let transport =
        std::fs::read(sandbox.join("tpp/transport.pem")).context("reading tpp/transport.pem")?;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(&transport)
        .context("parsing tpp/transport.pem")?;
    let x5t_s256 = dcr_server::pki::ClientCertificate::from_der(&der)?
        .x5t_s256()
        .to_string();
    let stub = Arc::new(Stub {
        issuer: format!("https://{listen}"),
        x5t_s256,
        connections: AtomicU64::new(0),
        requests: AtomicU64::new(0),
    });
    let app = axum::Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/reg", post(register))
        .route("/reg/{id}", put(update).delete(delete))
        .route("/introspect", post(introspect))
        .route("/stats", get(stats))
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    eprintln!("stub AS listening on https://{listen}");
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        stub.connections.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
        });
    }
}
