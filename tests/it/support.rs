//! Shared test fixtures: real sandbox PKI, real databases, the real server on a free port.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use dcr_server::app::Server;
use dcr_server::config::Config;
use dcr_server::http::SharedState;
use dcr_server::sandbox::{Sandbox, SandboxCa};
use dcr_server::store::Database;
use sqlx::Connection;
use tempfile::TempDir;

pub const POSTGRES_ENV: &str = "TEST_POSTGRES_URL";
/// Schemas made by tests are named with this prefix, and dropped when the harness starts.
pub const SCHEMA_PREFIX: &str = "dcrtest_";
/// Schemas older than this are left over from an earlier run and dropped at start.
const STALE_SCHEMA_SECS: i64 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// The test brings its own database (a throwaway PostgreSQL); SQLite where it needs one.
    Standalone,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Standalone => "standalone",
        }
    }
}

pub type TestFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// One test, run once per listed backend.
pub struct Case {
    pub name: &'static str,
    pub backends: &'static [Backend],
    pub run: fn(Backend) -> TestFuture,
}

pub const SQLITE: &[Backend] = &[Backend::Sqlite];
pub const BOTH: &[Backend] = &[Backend::Sqlite, Backend::Postgres];
pub const POSTGRES: &[Backend] = &[Backend::Postgres];
pub const STANDALONE: &[Backend] = &[Backend::Standalone];

#[macro_export]
macro_rules! case {
    ($f:path, $backends:expr) => {
        $crate::support::Case {
            name: stringify!($f),
            backends: $backends,
            run: |b| Box::pin($f(b)),
        }
    };
}

/// A database for one test: a fresh SQLite file, or a fresh PostgreSQL schema.
pub struct TestDb {
    pub url: String,
    _dir: Option<TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Result<Self> {
        match backend {
            Backend::Sqlite | Backend::Standalone => {
                let dir = TempDir::new()?;
                Ok(Self {
                    url: format!("sqlite://{}/dcr.db", dir.path().display()),
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let base = std::env::var(POSTGRES_ENV)
                    .with_context(|| format!("{POSTGRES_ENV} is unset"))?;
                // The creation time in the name lets a later run drop only stale schemas, not
                // those of a run going on at the same time against the same database.
                let schema = format!(
                    "{SCHEMA_PREFIX}{}_{}",
                    dcr_server::clock::now(),
                    uuid::Uuid::new_v4().simple()
                );
                let mut conn = sqlx::PgConnection::connect(&base)
                    .await
                    .with_context(|| format!("connecting to {POSTGRES_ENV}"))?;
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&mut conn)
                    .await?;
                let sep = if base.contains('?') { '&' } else { '?' };
                Ok(Self {
                    url: format!("{base}{sep}options=-c%20search_path%3D{schema}"),
                    _dir: None,
                })
            }
        }
    }

    /// A database at a URL the test made itself.
    pub fn from_url(url: String) -> Self {
        Self { url, _dir: None }
    }

    pub async fn connect(&self) -> Result<Database> {
        let db = Database::connect(&dcr_server::config::DatabaseConfig {
            url: self.url.parse().map_err(anyhow::Error::msg)?,
            max_connections: 10,
            acquire_timeout_ms: 5000,
            sqlite_busy_timeout_ms: 5000,
            startup_timeout_secs: 0,
        })
        .await?;
        Ok(db)
    }
}

/// Drops schemas left by earlier runs.
pub fn drop_old_schemas() {
    let Ok(base) = std::env::var(POSTGRES_ENV) else {
        return;
    };
    let rt = runtime();
    let _ = rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(&base).await?;
        let names: Vec<(String,)> = sqlx::query_as(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'dcrtest\\_%'",
        )
        .fetch_all(&mut conn)
        .await?;
        let stale_before = dcr_server::clock::now() - STALE_SCHEMA_SECS;
        for (name,) in names {
            let created = name
                .strip_prefix(SCHEMA_PREFIX)
                .and_then(|rest| rest.split_once('_'))
                .and_then(|(at, _)| at.parse::<i64>().ok());
            if created.is_some_and(|at| at > stale_before) {
                continue;
            }
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .execute(&mut conn)
                .await?;
        }
        Ok::<_, sqlx::Error>(())
    });
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A port that was free a moment ago, for a server the test starts later. Taken below the
/// kernel's ephemeral range (where every `bind(":0")` of the suite's receivers and listeners
/// lands), each at most once per run, so that no other test's socket takes it in between.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Where this run starts: spread by process id, so that runs side by side do not meet.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 500) as u16 * 20,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(port < 32_000, "no free port below the ephemeral range");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
        {
            return port;
        }
    }
}

/// A sandbox, a database and a config for one test.
pub struct TestEnv {
    pub dir: TempDir,
    pub sandbox_dir: PathBuf,
    pub port: u16,
    pub db: TestDb,
}

impl TestEnv {
    pub async fn new(backend: Backend) -> Result<Self> {
        let dir = TempDir::new()?;
        let port = free_port();
        let sandbox_dir = dir.path().join("sandbox");
        dcr_server::sandbox::init(&sandbox_dir, &format!("https://localhost:{port}"))?;
        Ok(Self {
            db: TestDb::new(backend).await?,
            dir,
            sandbox_dir,
            port,
        })
    }

    pub fn issuer(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// The config as TOML text, with `extra_tls` appended to `[server.tls]`.
    pub fn config_toml(&self, extra_tls: &str) -> String {
        self.config_toml_with(extra_tls, "", "")
    }

    /// The config with lines added to `[server.tls]`, `[open_banking.dcr]` and
    /// `[open_banking.dcr.jwks]`.
    pub fn config_toml_with(&self, extra_tls: &str, extra_dcr: &str, extra_jwks: &str) -> String {
        self.config_toml_full(extra_tls, extra_dcr, extra_jwks, "")
    }

    /// As [`Self::config_toml_with`], plus whole tables appended at the end.
    pub fn config_toml_full(
        &self,
        extra_tls: &str,
        extra_dcr: &str,
        extra_jwks: &str,
        extra_tables: &str,
    ) -> String {
        let s = self.sandbox_dir.display();
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
issuer = "{issuer}"
shutdown_grace_secs = 2
# The suite sends hundreds of requests from one certificate; tests/it/limits.rs turns it on.
rate_limit.enable = false

[server.tls]
certificate = "{s}/server.pem"
private_key = "{s}/server.key"
client_ca = ["{s}/ca.pem"]
{extra_tls}

[database]
url = "{url}"
max_connections = 5

[open_banking.dcr]
{extra_dcr}
[[open_banking.dcr.ssa_issuer]]
name = "OpenBanking Ltd"
jwks = "{s}/directory.jwks"

[open_banking.dcr.jwks]
extra_ca = ["{s}/ca.pem"]
{extra_jwks}

[sandbox]
dir = "{s}"

{extra_tables}
"#,
            port = self.port,
            issuer = self.issuer(),
            url = self.db.url,
        )
    }

    pub fn config(&self, extra_tls: &str) -> Result<Config> {
        Ok(Config::parse(
            &self.config_toml(extra_tls),
            Path::new("test.toml"),
        )?)
    }

    pub fn write_config(&self, text: &str) -> Result<PathBuf> {
        let path = self.dir.path().join("deployment.toml");
        std::fs::write(&path, text)?;
        Ok(path)
    }

    pub fn sandbox(&self) -> Result<Sandbox> {
        Sandbox::load(&self.sandbox_dir)
    }

    pub fn ca(&self) -> Result<SandboxCa> {
        SandboxCa::load(&self.sandbox_dir)
    }

    pub fn ca_pem(&self) -> Result<String> {
        Ok(std::fs::read_to_string(self.sandbox_dir.join("ca.pem"))?)
    }

    /// The sandbox TPP's transport certificate and key, PEM.
    pub fn transport_pem(&self) -> Result<(String, String)> {
        Ok((
            std::fs::read_to_string(self.sandbox_dir.join("tpp/transport.pem"))?,
            std::fs::read_to_string(self.sandbox_dir.join("tpp/transport.key"))?,
        ))
    }

    /// Starts the server in-process with the default config.
    pub async fn start(&self) -> Result<RunningServer> {
        self.start_with(self.config("")?, axum::Router::new()).await
    }

    pub async fn start_with(
        &self,
        config: Config,
        extra_routes: axum::Router<SharedState>,
    ) -> Result<RunningServer> {
        let server = Server::bind(config, extra_routes).await?;
        let addr = server.local_addr();
        let admin_addr = server.admin_addr();
        let reloader = server.reloader();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Ok(RunningServer {
            addr,
            admin_addr,
            reloader,
            shutdown: Some(tx),
            handle,
        })
    }

    /// An HTTPS client that trusts the sandbox CA, with an optional client certificate.
    pub fn client(&self, identity: Option<(&str, &str)>) -> Result<reqwest::Client> {
        https_client(&self.ca_pem()?, identity)
    }

    /// The server's `/metrics` now.
    pub async fn metrics(&self) -> Result<Metrics> {
        let answer = self.client(None)?.get(self.url("/metrics")).send().await?;
        ensure!(answer.status() == 200, "/metrics: {}", answer.status());
        Ok(Metrics(answer.text().await?))
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }
}

/// A raw TLS client for tests that drive a connection by hand: trusts `ca_pem`, presents
/// `identity` (certificate PEM, key PEM) when given.
pub fn tls_connector(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<tokio_rustls::TlsConnector> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let builder =
        rustls::ClientConfig::builder_with_provider(dcr_server::pki::tls::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder.with_client_auth_cert(
            CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>()?,
            PrivateKeyDer::from_pem_slice(key.as_bytes())?,
        )?,
        None => builder.with_no_client_auth(),
    };
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

pub fn https_client(ca_pem: &str, identity: Option<(&str, &str)>) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes())?])
        .timeout(Duration::from_secs(10))
        .resolve("localhost", "127.0.0.1:0".parse::<SocketAddr>()?);
    if let Some((cert, key)) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(
            format!("{cert}\n{key}").as_bytes(),
        )?);
    }
    Ok(builder.build()?)
}

/// A client-credentials request to `token_url`, the client authenticated by `assertion`
/// (`private_key_jwt`); the caller sends it and reads the answer its own way.
pub fn token_request_with_assertion(
    http: &reqwest::Client,
    token_url: impl reqwest::IntoUrl,
    assertion: &str,
) -> reqwest::RequestBuilder {
    http.post(token_url).form(&[
        ("grant_type", "client_credentials"),
        (
            "client_assertion_type",
            dcr_server::oauth::client_auth::CLIENT_ASSERTION_TYPE,
        ),
        ("client_assertion", assertion),
    ])
}

pub struct RunningServer {
    pub addr: SocketAddr,
    /// The admin API's address, when `admin.listen` is set.
    pub admin_addr: Option<SocketAddr>,
    /// What SIGHUP drives in the binary.
    pub reloader: dcr_server::app::reload::Reloader,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<Result<()>>,
}

impl RunningServer {
    /// Asks the server to stop and waits for it.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(Duration::from_secs(10), &mut self.handle).await {
            Ok(joined) => joined?,
            Err(_) => bail!("server did not stop within 10 s"),
        }
    }
}

/// Runs the real binary and returns (exit success, stdout, stderr).
pub fn run_binary(args: &[&str], cwd: &Path) -> Result<(bool, String, String)> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dcr-server"))
        .args(args)
        .current_dir(cwd)
        .env_remove("DCR_DATABASE_URL")
        .env_remove("DCR_CONFIG")
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Fails with a message when a condition does not hold.
#[macro_export]
macro_rules! ensure_eq {
    ($left:expr, $right:expr $(,)?) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            anyhow::bail!(
                "{} != {}: {:?} vs {:?}",
                stringify!($left),
                stringify!($right),
                l,
                r
            );
        }
    }};
    // With what is being compared, in words.
    ($left:expr, $right:expr, $($what:tt)+) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            anyhow::bail!("{}: {:?}, not {:?}", format!($($what)+), l, r);
        }
    }};
}

/// Rows in a table, straight from the database.
pub async fn count_rows(db: &Database, table: &str) -> Result<i64> {
    Ok(db.count_rows(table).await?)
}

/// What the loopback HTTPS server answers for one path.
#[derive(Clone, Debug)]
pub struct Doc {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

impl Doc {
    pub fn json(body: impl Into<String>) -> Self {
        Self {
            status: 200,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
}

type Docs = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Doc>>>;
type Hits = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>;

/// Serves `app` over HTTPS on a free loopback port, with a certificate from `ca` for
/// localhost and 127.0.0.1. Returns the port and the accept loop's task.
pub async fn serve_https(
    ca: &SandboxCa,
    app: axum::Router,
) -> Result<(u16, tokio::task::JoinHandle<()>)> {
    let (cert_pem, key_pem) = ca.issue(
        &[(rcgen::DnType::CommonName, "localhost".into())],
        &["localhost", "127.0.0.1"],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    let tls = rustls::ServerConfig::builder_with_provider(dcr_server::pki::tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            });
        }
    });
    Ok((port, task))
}

/// A real HTTPS server on loopback that serves JWKS documents (and pages) set by the test, and
/// counts the requests per path.
pub struct JwksServer {
    pub port: u16,
    docs: Docs,
    hits: Hits,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    /// Starts it with a certificate from `ca` for localhost and 127.0.0.1.
    pub async fn start(ca: &SandboxCa) -> Result<Self> {
        use axum::extract::{Path as AxPath, State};
        use axum::response::IntoResponse;
        let docs: Docs = Default::default();
        let hits: Hits = Default::default();
        let state = (docs.clone(), hits.clone());
        let app = axum::Router::new()
            .route(
                "/{*path}",
                axum::routing::get(
                    |State((docs, hits)): State<(Docs, Hits)>,
                     AxPath(path): AxPath<String>| async move {
                        *hits.lock().expect("hits").entry(path.clone()).or_default() += 1;
                        let doc = docs.lock().expect("docs").get(&path).cloned();
                        match doc {
                            Some(doc) => {
                                tokio::time::sleep(doc.delay).await;
                                (
                                    axum::http::StatusCode::from_u16(doc.status)
                                        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
                                    [("content-type", "application/json")],
                                    doc.body,
                                )
                                    .into_response()
                            }
                            None => axum::http::StatusCode::NOT_FOUND.into_response(),
                        }
                    },
                ),
            )
            .with_state(state);
        let (port, task) = serve_https(ca, app).await?;
        Ok(Self {
            port,
            docs,
            hits,
            task,
        })
    }

    pub fn set(&self, path: &str, doc: Doc) {
        self.docs
            .lock()
            .expect("docs")
            .insert(path.to_string(), doc);
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}/{path}", self.port)
    }

    /// Serves `doc` at `path`; its URL.
    pub fn serve(&self, path: &str, doc: Doc) -> String {
        self.set(path, doc);
        self.url(path)
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .expect("hits")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

/// Returned by a test that cannot run here; the harness reports it as ignored, with the reason.
#[derive(Debug)]
pub struct Skip(pub String);

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Skip {}

/// The real `dcr-server` binary running as its own process, with its log in a file.
pub struct SpawnedServer {
    pub child: std::process::Child,
}

impl SpawnedServer {
    /// Starts `dcr-server serve` and waits for its `listening on` line.
    pub async fn start(config: &Path, port: u16, env: &[(&str, &str)], log: &Path) -> Result<Self> {
        let file = std::fs::File::create(log)?;
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_dcr-server"));
        command
            .args(["--config", &config.to_string_lossy(), "serve"])
            .env_remove("DCR_DATABASE_URL")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(file);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn()?;
        let server = Self { child };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains(&format!("listening on https://127.0.0.1:{port}")) {
                return Ok(server);
            }
            if std::time::Instant::now() > deadline {
                bail!("server on port {port} did not start:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown, no flushing.
    pub fn kill9(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL of its own (initdb + pg_ctl from the machine's PostgreSQL) in a temporary
/// directory on a free port, that a test can stop and start.
pub struct ThrowawayPostgres {
    dir: TempDir,
    bin: PathBuf,
    pub port: u16,
}

impl ThrowawayPostgres {
    fn find_bin() -> Option<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").is_file() && p.join("pg_ctl").is_file())
            .collect();
        found.sort();
        found.pop()
    }

    /// Runs a PostgreSQL tool, as the `postgres` user when this process is root.
    fn run(&self, tool: &str, args: &[&str]) -> Result<()> {
        let exe = self.bin.join(tool);
        let as_root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let mut command = if as_root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            std::process::Command::new(&exe)
        };
        let out = command.args(args).output()?;
        if !out.status.success() {
            bail!(
                "{tool} {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    pub fn start_new() -> Result<Self> {
        let bin = Self::find_bin()
            .ok_or_else(|| Skip("no PostgreSQL server binaries (initdb, pg_ctl)".into()))?;
        let dir = TempDir::new()?;
        let pg = Self {
            port: free_port(),
            bin,
            dir,
        };
        // The postgres user must own the directory when the test runs as root.
        let _ = std::process::Command::new("chown")
            .args(["-R", "postgres", &pg.dir.path().to_string_lossy()])
            .output();
        let data = pg.data();
        pg.run(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        )?;
        pg.start()?;
        Ok(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_string_lossy().into_owned()
    }

    pub fn start(&self) -> Result<()> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self
            .dir
            .path()
            .join("pg.log")
            .to_string_lossy()
            .into_owned();
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-l", &log, "-o", &opts, "-w", "start"],
        )
    }

    /// Stops at once, as a crash would (`-m immediate`).
    pub fn stop(&self) -> Result<()> {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        )
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A `/metrics` page (Prometheus text).
#[derive(Debug)]
pub struct Metrics(pub String);

impl Metrics {
    /// The sample lines of `name` that contain every one of `labels` (e.g. `outcome="ok"`).
    fn samples<'a>(&'a self, name: &'a str, labels: &'a [&str]) -> impl Iterator<Item = &'a str> {
        self.0.lines().filter(move |l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
                && labels.iter().all(|n| l.contains(n))
        })
    }

    /// Whether a sample of `name` with every one of `labels` exists.
    pub fn has(&self, name: &str, labels: &[&str]) -> bool {
        self.samples(name, labels).next().is_some()
    }

    /// The sum of the samples of `name` with every one of `labels` (0 when there is none).
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.samples(name, labels)
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl std::fmt::Display for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
