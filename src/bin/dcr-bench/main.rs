//! dcr-bench: drives a running dcr-server with pre-signed requests and reports throughput,
//! latency percentiles, errors by status, and the server's memory.
//!
//! ```text
//! dcr-bench register --url https://localhost:8243 --sandbox certs/sandbox -c 64 -d 10
//! dcr-bench token-pkj | token-tls | get | mixed | handshake ...
//! dcr-bench calibrate
//! dcr-bench stub-as --listen 127.0.0.1:8444      # the bank's AS for rfc7591 mode
//! dcr-bench register --stub-as https://127.0.0.1:8444 ...
//! ```
//!
//! Every JWT is signed before the clock starts, so the load generator spends its time sending.
//! Every run also measures the units of `units`: the server's CPU per request is reported in
//! µs and in V (PS256 verifications), and on PostgreSQL the database's in µs and in P.

mod stub_as;
mod units;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use dcr_server::domain::{AuthMethod, GrantType, GrantTypes, SpecVersion};
use dcr_server::sandbox::{RequestOptions, Sandbox};
use dcr_server::store::{ClientRecord, TokenRecord};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// POST /register with the full pipeline.
    Register,
    /// POST /token with private_key_jwt.
    TokenPkj,
    /// POST /token with tls_client_auth.
    TokenTls,
    /// GET /register/{id} with a token.
    Get,
    /// register → token → GET → PUT → DELETE, as one operation.
    Mixed,
    /// TLS handshakes with a client certificate, nothing else.
    Handshake,
    /// Measure the units only: V, and P when `--config` names a PostgreSQL database.
    Calibrate,
    /// Bulk-load `--clients` clients and `--tokens` live tokens straight into the database of
    /// `--config` (for growth measurements); sends nothing to the server.
    Seed,
    /// Serve a stub of the bank's authorization server on `--listen` for a server in
    /// `rfc7591` mode: it answers at once and checks nothing (`stub_as.rs`).
    StubAs,
}

#[derive(Debug, Parser)]
#[command(
    name = "dcr-bench",
    about = "Load generator and benchmark for dcr-server"
)]
struct Args {
    #[arg(value_enum)]
    scenario: Scenario,
    /// Base URL of the server.
    #[arg(long, default_value = "https://localhost:8243")]
    url: String,
    /// Sandbox directory (CA, TPP keys and certificate) shared with the server.
    #[arg(long, default_value = "certs/sandbox")]
    sandbox: PathBuf,
    /// Concurrent workers, each with its own connection.
    #[arg(short, long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds to run (after warm-up); the run also ends when the pre-signed requests run out.
    #[arg(short, long, default_value_t = 10.0)]
    duration: f64,
    /// Requests to pre-generate (and at most send).
    #[arg(short = 'n', long, default_value_t = 50_000)]
    count: usize,
    /// A new TLS connection for every request instead of keep-alive.
    #[arg(long)]
    new_connection: bool,
    /// Request signing algorithm.
    #[arg(long, default_value = "PS256")]
    alg: String,
    /// PID of the server, to report its RSS (from /proc/PID/status).
    #[arg(long)]
    pid: Option<u32>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Repeat the measurement this many times (fresh requests each time) and also print the
    /// medians.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Request `aud` (default: the server's issuer from discovery).
    #[arg(long)]
    aud: Option<String>,
    /// The server's config, for its database URL (`DCR_DATABASE_URL` overrides it, as for
    /// the server): `seed` fills it, and on PostgreSQL every run calibrates P on it and reports
    /// the database's CPU per request (the database must run on this machine).
    #[arg(long, default_value = "config/bench.toml")]
    config: PathBuf,
    /// Seconds of INSERTs that calibrate P.
    #[arg(long, default_value_t = 3.0)]
    calibrate_secs: f64,
    /// Budget: the server's median CPU per request, in V; the medians line says whether it held.
    #[arg(long)]
    budget_v: Option<f64>,
    /// Budget: the database's median CPU per request, in P (PostgreSQL only).
    #[arg(long)]
    budget_p: Option<f64>,
    /// Budget: the median p99 latency at most this many times the median p50.
    #[arg(long)]
    budget_p99_ratio: Option<f64>,
    /// Budget: the server's peak RSS in MiB.
    #[arg(long)]
    budget_rss_mib: Option<f64>,
    /// `seed`: clients to insert.
    #[arg(long, default_value_t = 1_000_000)]
    clients: usize,
    /// `seed`: live tokens to insert.
    #[arg(long, default_value_t = 1_000_000)]
    tokens: usize,
    /// `stub-as`: the address it listens on; its issuer is `https://{listen}`.
    #[arg(long, default_value = "127.0.0.1:8444")]
    listen: std::net::SocketAddr,
    /// The server runs in `rfc7591` mode against this `dcr-bench stub-as`: `get` takes its
    /// management token from the stub's rule (the server's /token answers 404 in this mode),
    /// and each run reports the TCP connections the stub accepted, its requests and its CPU.
    #[arg(long)]
    stub_as: Option<String>,
}

/// One worker's results.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<String, usize>,
}

/// One measured run: every worker's tally, the wall time, and the CPU time (server, this
/// process) spent in it.
struct Measured {
    tallies: Vec<Tally>,
    elapsed: Duration,
    server_cpu: Option<Duration>,
    bench_cpu: Option<Duration>,
    /// PostgreSQL's own CPU (every process of its postmaster), when it is the database.
    db_cpu: Option<Duration>,
    /// What the stub AS counted over the run (`--stub-as`).
    stub_as: Option<Value>,
}

/// utime + stime of a process, from `/proc/<pid>/stat` (in USER_HZ ticks, 100 per second on
/// Linux).
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let ticks: u64 = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

struct Ctx {
    args: Args,
    units: units::Units,
    postgres: Option<units::Postgres>,
    sandbox: Sandbox,
    ca_pem: String,
    identity_pem: String,
    issuer: String,
    token_endpoint: String,
    register_url: String,
    /// The server's own base URL (in `rfc7591` mode its discovery names the AS as issuer).
    base: String,
    /// A client for the stub AS's `/stats` (`--stub-as`).
    stub_as: Option<reqwest::Client>,
}

impl Ctx {
    fn client(&self) -> Result<reqwest::Client> {
        let mut b = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca_pem.as_bytes())?])
            .identity(reqwest::Identity::from_pem(self.identity_pem.as_bytes())?)
            .timeout(Duration::from_secs(30));
        if self.args.new_connection {
            b = b.pool_max_idle_per_host(0);
        }
        Ok(b.build()?)
    }

    fn options(&self, method: &str) -> RequestOptions {
        RequestOptions {
            auth_method: method.into(),
            alg: self.args.alg.clone(),
            aud: self.args.aud.clone().unwrap_or_else(|| self.issuer.clone()),
            lifetime: 3600,
            ..RequestOptions::default()
        }
    }

    /// An SSA as large as the OB Directory issues: the sandbox's claims plus every other
    /// claim of the Directory profile, filled as a real organisation fills them.
    fn full_ssa(&self) -> Result<String> {
        let mut c = self.sandbox.ssa_claims();
        let org = c["org_id"].as_str().unwrap_or_default().to_string();
        let keystore = format!("https://keystore.openbankingtest.org.uk/{org}");
        c["software_client_description"] =
            json!("Account information and payment initiation for small businesses.");
        c["software_on_behalf_of_org"] = json!("");
        c["software_redirect_uris"] = json!([
            "https://tpp.example.com/callback",
            "https://tpp.example.com/callback/accounts",
            "https://tpp.example.com/callback/payments",
        ]);
        // A key set the server fetches and caches like the real one, which names none of the
        // sandbox TPP's keys: the revoked-keys check runs, and passes.
        c["software_jwks_revoked_endpoint"] = json!(format!(
            "{}{}",
            self.base,
            dcr_server::sandbox::DIRECTORY_JWKS_PATH
        ));
        c["org_jwks_endpoint"] = json!(format!("{keystore}/{org}.jwks"));
        c["org_jwks_revoked_endpoint"] = json!(format!("{keystore}/revoked/{org}.jwks"));
        c["org_contacts"] = json!([
            {"name": "Technical Support", "email": "ob-technical@tpp.example.com", "phone": "+442071234567", "type": "Technical"},
        ]);
        c["organisation_competent_authority_claims"] = json!({
            "authority_id": "FCAGBR",
            "registration_id": "123456",
            "status": "Active",
            "authorisations": [
                {"member_state": "GB", "roles": ["AISP", "PISP", "CBPII"]},
            ]
        });
        self.sandbox.sign_ssa(&c)
    }

    /// Signs `n` registration JWTs on every core, each with its own jti, as large as a real
    /// OB registration (~4.5 KB).
    fn presign_requests(&self, n: usize, method: &str) -> Result<Vec<String>> {
        let mut template = self.sandbox.request_claims(&self.options(method))?;
        template["software_statement"] = json!(self.full_ssa()?);
        on_every_core(n, || {
            let mut c = template.clone();
            c["jti"] = json!(uuid::Uuid::new_v4().to_string());
            self.sandbox.sign_as_tpp(&c, &self.args.alg)
        })
    }

    /// Signs `n` client assertions (each with its own jti) on every core.
    fn presign_assertions(&self, n: usize, client_id: &str) -> Result<Vec<String>> {
        on_every_core(n, || {
            self.sandbox
                .client_assertion(client_id, &self.token_endpoint, &self.args.alg)
        })
    }

    async fn register(&self, client: &reqwest::Client, jwt: String) -> Result<(u16, Value)> {
        let r = client
            .post(&self.register_url)
            .header("content-type", "application/jwt")
            .body(jwt)
            .send()
            .await?;
        answer(r).await
    }

    async fn token(&self, client: &reqwest::Client, form: &[(&str, &str)]) -> Result<(u16, Value)> {
        let body = serde_urlencoded::to_string(form)?;
        let r = client
            .post(&self.token_endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await?;
        answer(r).await
    }

    /// Registers one client for the token and GET scenarios.
    async fn setup_client(&self, method: &str) -> Result<String> {
        let jwt = self.presign_requests(1, method)?.pop().context("no JWT")?;
        let (status, body) = self.register(&self.client()?, jwt).await?;
        if status != 201 {
            bail!(
                "could not register a client for the benchmark ({status}): {body}\n\
                 (the server must run with software_id_as_application_name.enable = false)"
            );
        }
        body["client_id"]
            .as_str()
            .map(str::to_string)
            .context("no client_id")
    }

    /// The stub AS's counters now (`--stub-as`); `None` without one or when it does not answer.
    async fn stub_stats(&self) -> Option<stub_as::Stats> {
        let (client, url) = self.stub_as.as_ref().zip(self.args.stub_as.as_deref())?;
        let url = format!("{}/stats", url.trim_end_matches('/'));
        let body = client.get(url).send().await.ok()?.bytes().await.ok()?;
        stub_as::Stats::from_json(&serde_json::from_slice(&body).ok()?)
    }
}

/// A response's status and its JSON body (Null when it is not JSON).
async fn answer(r: reqwest::Response) -> Result<(u16, Value)> {
    let status = r.status().as_u16();
    let bytes = r.bytes().await?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Calls `make` `n` times, spread over every core; signing is the slow part of setting up.
fn on_every_core<T: Send>(n: usize, make: impl Fn() -> Result<T> + Sync) -> Result<Vec<T>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = n.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| (0..per).map(|_| make()).collect::<Result<Vec<T>>>()))
            .collect();
        let mut all = Vec::with_capacity(n);
        for h in handles {
            all.extend(
                h.join()
                    .map_err(|_| anyhow::anyhow!("a signing thread panicked"))??,
            );
        }
        all.truncate(n);
        Ok(all)
    })
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Runs `op` on every worker until the deadline or until `jobs` runs out.
async fn drive<F, Fut>(ctx: &Arc<Ctx>, jobs: usize, op: F) -> Result<Measured>
where
    F: Fn(Arc<Ctx>, reqwest::Client, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<u16>> + Send,
{
    let server = ctx.args.pid.map(|p| p.to_string());
    let server_before = server.as_deref().and_then(cpu_time);
    let db_before = ctx.postgres.and_then(|pg| pg.cpu());
    let stub_before = ctx.stub_stats().await;
    let bench_before = cpu_time("self");
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(ctx.args.duration);
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..ctx.args.concurrency {
        let (ctx, next, op) = (ctx.clone(), next.clone(), op.clone());
        handles.push(tokio::spawn(async move {
            let client = ctx.client()?;
            let mut tally = Tally::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs || Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                let key = match op(ctx.clone(), client.clone(), i).await {
                    Ok(status) => status.to_string(),
                    Err(_) => "connection error".to_string(),
                };
                tally
                    .latencies_us
                    .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                *tally.statuses.entry(key).or_default() += 1;
            }
            Ok::<_, anyhow::Error>(tally)
        }));
    }
    let mut tallies = Vec::new();
    for h in handles {
        tallies.push(h.await??);
    }
    let elapsed = started.elapsed();
    let since = |before: Option<Duration>, now: Option<Duration>| Some(now? - before?);
    let server_cpu = since(server_before, server.as_deref().and_then(cpu_time));
    let bench_cpu = since(bench_before, cpu_time("self"));
    let db_cpu = since(db_before, ctx.postgres.and_then(|pg| pg.cpu()));
    let calls: usize = tallies.iter().map(|t| t.latencies_us.len()).sum();
    let stub_as = match (stub_before, ctx.stub_stats().await) {
        (Some(before), Some(after)) => Some(after.since(before, calls)),
        _ => None,
    };
    Ok(Measured {
        tallies,
        elapsed,
        server_cpu,
        bench_cpu,
        db_cpu,
        stub_as,
    })
}

async fn handshakes(ctx: &Arc<Ctx>) -> Result<Measured> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ctx.ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(ctx.identity_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(ctx.identity_pem.as_bytes())?;
    let config =
        rustls::ClientConfig::builder_with_provider(dcr_server::pki::tls::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let url = url::Url::parse(&ctx.args.url)?;
    let host = url.host_str().context("no host")?.to_string();
    let addr = format!("{host}:{}", url.port().unwrap_or(443));
    let addr = tokio::net::lookup_host(&addr)
        .await?
        .find(|a| a.is_ipv4())
        .context("cannot resolve the server")?;
    let name = rustls::pki_types::ServerName::try_from(host)?;
    let jobs = ctx.args.count;
    drive(ctx, jobs, move |_, _, _| {
        let (connector, name) = (connector.clone(), name.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let mut tls = connector.connect(name, tcp).await?;
            // TLS 1.3: the server checks the client certificate after the client's Finished;
            // a read makes sure the server has accepted it (it sends session tickets).
            use tokio::io::AsyncWriteExt;
            tls.shutdown().await.ok();
            Ok(200)
        }
    })
    .await
}

/// Prints the results of one run and returns them as JSON.
fn report(
    args: &Args,
    units: units::Units,
    run: Measured,
    rss: (Option<u64>, Option<u64>, Option<u64>),
) -> Value {
    let Measured {
        tallies,
        elapsed,
        server_cpu,
        bench_cpu,
        db_cpu,
        stub_as,
    } = run;
    let mut latencies: Vec<u32> = tallies
        .iter()
        .flat_map(|t| t.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for t in &tallies {
        for (k, v) in &t.statuses {
            *statuses.entry(k.clone()).or_default() += v;
        }
    }
    let total = latencies.len();
    let ok: usize = statuses
        .iter()
        .filter(|(k, _)| k.starts_with('2'))
        .map(|(_, v)| v)
        .sum();
    let secs = elapsed.as_secs_f64();
    let result = json!({
        "scenario": format!("{:?}", args.scenario).to_lowercase(),
        "concurrency": args.concurrency,
        "connection": if args.new_connection { "new per request" } else { "keep-alive" },
        "requests": total,
        "ok": ok,
        "seconds": (secs * 100.0).round() / 100.0,
        "throughput_per_s": ((ok as f64 / secs) * 10.0).round() / 10.0,
        "latency_ms": {
            "p50": percentile(&latencies, 0.50),
            "p90": percentile(&latencies, 0.90),
            "p99": percentile(&latencies, 0.99),
            "max": percentile(&latencies, 1.0),
        },
        "statuses": statuses,
        "failed": total - ok,
        "cpu_us_per_request": {
            "server": per_request(server_cpu, total),
            "bench": per_request(bench_cpu, total),
            "database": per_request(db_cpu, total),
        },
        "server_v_per_request": per_request(server_cpu, total).map(|us| units::round2(us / units.v_us)),
        "database_p_per_request": per_request(db_cpu, total)
            .zip(units.p_us)
            .map(|(us, p)| units::round2(us / p)),
        "units": units.json(),
        "server_rss_kib": { "before": rss.0, "peak": rss.1, "after": rss.2 },
        "stub_as": stub_as,
    });
    if args.json {
        println!("{result}");
        return result;
    }
    println!(
        "scenario      {}",
        result["scenario"].as_str().unwrap_or_default()
    );
    println!(
        "concurrency   {} ({})",
        args.concurrency,
        result["connection"].as_str().unwrap_or_default()
    );
    println!("requests      {total} in {secs:.2} s, {ok} successful");
    println!(
        "throughput    {:.1}/s",
        result["throughput_per_s"].as_f64().unwrap_or_default()
    );
    println!(
        "latency (ms)  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    let by_status: Vec<String> = result["statuses"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}: {v}")).collect())
        .unwrap_or_default();
    println!("statuses      {}", by_status.join(", "));
    if let (Some(before), Some(peak)) = (rss.0, rss.1) {
        println!(
            "server RSS    before {:.1} MiB, peak {:.1} MiB, after {:.1} MiB",
            before as f64 / 1024.0,
            peak as f64 / 1024.0,
            rss.2.unwrap_or(0) as f64 / 1024.0
        );
    }
    let cpu = &result["cpu_us_per_request"];
    if let Some(server) = cpu["server"].as_f64() {
        println!(
            "CPU/request   server {server:.0} µs = {:.2} V (V = {:.1} µs), dcr-bench {:.0} µs",
            result["server_v_per_request"].as_f64().unwrap_or_default(),
            units.v_us,
            cpu["bench"].as_f64().unwrap_or_default()
        );
    }
    if let (Some(db), Some(p)) = (cpu["database"].as_f64(), units.p_us) {
        println!(
            "              PostgreSQL {db:.0} µs = {:.2} P (P = {p:.1} µs)",
            result["database_p_per_request"]
                .as_f64()
                .unwrap_or_default(),
        );
    }
    if let Some(stub) = result["stub_as"].as_object() {
        println!(
            "stub AS       {} TCP connections accepted, {} requests, {} µs CPU per bench request",
            stub["connections_accepted"], stub["requests"], stub["cpu_us_per_request"]
        );
    }
    result
}

fn per_request(cpu: Option<Duration>, requests: usize) -> Option<f64> {
    (requests > 0).then_some(())?;
    Some((cpu?.as_secs_f64() * 1e6 / requests as f64).round())
}

/// The budgets asked for on the command line, checked against the medians.
fn budgets(args: &Args, median: &dyn Fn(&str) -> Option<f64>) -> Value {
    let mut checks = serde_json::Map::new();
    let mut held = true;
    let mut check = |name: &str, value: Option<f64>, limit: Option<f64>| {
        if let Some(limit) = limit {
            let ok = value.is_some_and(|v| v <= limit);
            held &= ok;
            checks.insert(
                name.into(),
                json!({"limit": limit, "median": value, "held": ok}),
            );
        }
    };
    check(
        "server_v_per_request",
        median("/server_v_per_request"),
        args.budget_v,
    );
    check(
        "database_p_per_request",
        median("/database_p_per_request"),
        args.budget_p,
    );
    let ratio = median("/latency_ms/p99")
        .zip(median("/latency_ms/p50"))
        .map(|(p99, p50)| units::round2(p99 / p50));
    check("p99_over_p50", ratio, args.budget_p99_ratio);
    check(
        "server_rss_mib_peak",
        median("/server_rss_kib/peak").map(|k| units::round2(k / 1024.0)),
        args.budget_rss_mib,
    );
    if checks.is_empty() {
        return Value::Null;
    }
    checks.insert("held".into(), json!(held));
    Value::Object(checks)
}

/// Prints the medians of several runs.
fn report_medians(args: &Args, runs: &[Value]) {
    let median = |pointer: &str| {
        let mut v: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.pointer(pointer).and_then(Value::as_f64))
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    let summary = json!({
        "medians_of_runs": runs.len(),
        "throughput_per_s": median("/throughput_per_s"),
        "latency_ms": {
            "p50": median("/latency_ms/p50"),
            "p90": median("/latency_ms/p90"),
            "p99": median("/latency_ms/p99"),
            "max": median("/latency_ms/max"),
        },
        "cpu_us_per_request": {
            "server": median("/cpu_us_per_request/server"),
            "bench": median("/cpu_us_per_request/bench"),
            "database": median("/cpu_us_per_request/database"),
        },
        "server_v_per_request": median("/server_v_per_request"),
        "database_p_per_request": median("/database_p_per_request"),
        "units": {"v_us": median("/units/v_us"), "p_us": median("/units/p_us")},
        "server_rss_kib_peak": median("/server_rss_kib/peak"),
        "budget": budgets(args, &median),
    });
    if args.json {
        println!("{summary}");
        return;
    }
    let f = |p: &str| median(p).map_or("-".to_string(), |v| format!("{v}"));
    println!(
        "median of {} runs: {}/s, p50 {} ms, p99 {} ms, server CPU {} µs/request = {} V, \
         PostgreSQL {} µs = {} P",
        runs.len(),
        f("/throughput_per_s"),
        f("/latency_ms/p50"),
        f("/latency_ms/p99"),
        f("/cpu_us_per_request/server"),
        f("/server_v_per_request"),
        f("/cpu_us_per_request/database"),
        f("/database_p_per_request"),
    );
    if let Some(b) = summary["budget"].as_object() {
        println!(
            "budget {}: {}",
            if b["held"] == json!(true) {
                "held"
            } else {
                "NOT held"
            },
            Value::Object(b.clone())
        );
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.scenario == Scenario::Seed {
        return runtime.block_on(seed(&args));
    }
    if args.scenario == Scenario::StubAs {
        return runtime.block_on(stub_as::serve(args.listen, &args.sandbox));
    }
    if args.scenario == Scenario::Calibrate {
        return runtime.block_on(async {
            let sandbox = Sandbox::load(&args.sandbox)?;
            let (units, _) = calibrate(&args, &sandbox).await?;
            if args.json {
                println!("{}", units.json());
            } else {
                println!(
                    "V = {:.2} µs (one PS256 verification, RSA-2048)",
                    units.v_us
                );
                match units.p_us {
                    Some(p) => {
                        println!("P = {p:.2} µs (PostgreSQL CPU per single-row INSERT transaction)")
                    }
                    None => println!("P: not measured (no PostgreSQL database named by --config)"),
                }
            }
            Ok(())
        });
    }
    runtime.block_on(run(args))
}

/// Rows handed to the store per call when seeding (it splits them into multi-row INSERTs).
const SEED_CHUNK: usize = 10_000;

/// What every seeded client registered (in its metadata and in the row's own columns).
const SEED_GRANT_TYPES: [GrantType; 3] = [
    GrantType::AuthorizationCode,
    GrantType::ClientCredentials,
    GrantType::RefreshToken,
];
const SEED_SCOPE: &str = "openid accounts payments";

/// A seeded client, shaped and sized like a registered one.
fn seed_client(id: &str, now: i64, ssa: &str) -> ClientRecord {
    ClientRecord {
        client_id: id.to_string(),
        software_id: format!("sw{id}"),
        org_id: "seedorg".into(),
        metadata: seed_metadata(id, now, ssa),
        grant_types: GrantTypes::new(SEED_GRANT_TYPES.to_vec()),
        scope: SEED_SCOPE.parse().unwrap_or_default(),
        client_secret_hash: dcr_server::domain::secret::hash(id),
        token_endpoint_auth_method: AuthMethod::PrivateKeyJwt,
        tls_client_auth_subject_dn: None,
        jwks_uri: "https://seed.invalid/jwks".into(),
        cert_thumbprint: None,
        enabled: true,
        created_at: now,
        updated_at: now,
        dcr_version: SpecVersion::V3_2,
        jwks_revoked_uri: None,
    }
}

/// Seed token `i`, issued to one of the seeded clients in turn.
fn seed_token(i: usize, clients: usize, now: i64) -> TokenRecord {
    TokenRecord {
        token_hash: dcr_server::domain::secret::hash(&format!("seed-token-{i}")),
        client_id: seed_client_id(i % clients),
        scope: "openid accounts".parse().unwrap_or_default(),
        cert_thumbprint: None,
        issued_at: now,
        expires_at: now + 30 * 86_400,
        revoked: false,
    }
}

fn seed_client_id(i: usize) -> String {
    format!("seed-{i:08}")
}

/// A seeded client's metadata, shaped and sized like a registered client's.
fn seed_metadata(id: &str, now: i64, ssa: &str) -> String {
    json!({
        "client_id": id,
        "client_id_issued_at": now,
        "redirect_uris": ["https://tpp.example.com/callback"],
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "PS256",
        "grant_types": SEED_GRANT_TYPES,
        "response_types": ["code id_token"],
        "scope": SEED_SCOPE,
        "software_id": format!("sw{id}"),
        "software_statement": ssa,
        "application_type": "web",
        "id_token_signed_response_alg": "PS256",
        "request_object_signing_alg": "PS256",
    })
    .to_string()
}

/// The bulk loader: clients and live tokens, straight into the database.
async fn seed(args: &Args) -> Result<()> {
    if args.tokens > 0 && args.clients == 0 {
        bail!("tokens need at least one client");
    }
    let config = dcr_server::config::Config::load(&args.config)?;
    // Rows as large as real ones: the sandbox's SSA when there is one, or as many bytes.
    let ssa = Sandbox::load(&args.sandbox)
        .and_then(|s| s.ssa())
        .unwrap_or_else(|_| "x".repeat(1500));
    let store = dcr_server::store::open(&config).await?;
    let started = Instant::now();
    let now = dcr_server::clock::now();
    for start in (0..args.clients).step_by(SEED_CHUNK) {
        let end = (start + SEED_CHUNK).min(args.clients);
        let rows: Vec<ClientRecord> = (start..end)
            .map(|i| seed_client(&seed_client_id(i), now, &ssa))
            .collect();
        store.seed_clients(&rows).await?;
        eprint!("\rclients {end}/{}", args.clients);
    }
    eprintln!();
    for start in (0..args.tokens).step_by(SEED_CHUNK) {
        let end = (start + SEED_CHUNK).min(args.tokens);
        let rows: Vec<TokenRecord> = (start..end)
            .map(|i| seed_token(i, args.clients, now))
            .collect();
        store.seed_tokens(&rows).await?;
        eprint!("\rtokens {end}/{}", args.tokens);
    }
    eprintln!();
    println!(
        "seeded {} clients and {} live tokens in {:.1} s",
        args.clients,
        args.tokens,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Measures V, and P with the handle on PostgreSQL's processes when the database of `--config`
/// (or `DCR_DATABASE_URL`) is PostgreSQL.
async fn calibrate(
    args: &Args,
    sandbox: &Sandbox,
) -> Result<(units::Units, Option<units::Postgres>)> {
    let v_us = units::measure_v(sandbox, &args.sandbox)?;
    // Without a readable config (a server elsewhere) there is no database to calibrate on.
    let url = match dcr_server::config::Config::load(&args.config) {
        Ok(config) => config.database.url,
        Err(e) => {
            eprintln!(
                "P not measured: {} cannot be read for the database URL ({e})",
                args.config.display()
            );
            return Ok((units::Units { v_us, p_us: None }, None));
        }
    };
    if url.is_sqlite() {
        return Ok((units::Units { v_us, p_us: None }, None));
    }
    let pg = units::Postgres::find(url.expose()).await?;
    eprintln!("calibrating P ({} s of INSERTs)…", args.calibrate_secs);
    let p_us = units::measure_p(url.expose(), &pg, args.calibrate_secs).await?;
    Ok((
        units::Units {
            v_us,
            p_us: Some(p_us),
        },
        Some(pg),
    ))
}

async fn run(args: Args) -> Result<()> {
    let sandbox = Sandbox::load(&args.sandbox)?;
    let (units, postgres) = calibrate(&args, &sandbox).await?;
    let read = |name: &str| {
        std::fs::read_to_string(args.sandbox.join(name)).with_context(|| format!("reading {name}"))
    };
    let ca_pem = read("ca.pem")?;
    let identity_pem = format!(
        "{}\n{}",
        read("tpp/transport.pem")?,
        read("tpp/transport.key")?
    );
    let base = args.url.trim_end_matches('/').to_string();
    let probe = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes())?])
        .build()?;
    let discovery: Value = serde_json::from_slice(
        &probe
            .get(format!("{base}/.well-known/openid-configuration"))
            .send()
            .await
            .context("the server does not answer discovery")?
            .bytes()
            .await?,
    )?;
    let issuer = discovery["issuer"]
        .as_str()
        .context("no issuer")?
        .to_string();
    let stub_as = match &args.stub_as {
        Some(_) => Some(
            reqwest::Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes())?])
                .build()?,
        ),
        None => None,
    };
    let ctx = Arc::new(Ctx {
        units,
        postgres,
        token_endpoint: format!("{base}/token"),
        register_url: format!("{base}{}", dcr_server::REGISTER_PATH),
        base,
        stub_as,
        issuer,
        sandbox,
        ca_pem,
        identity_pem,
        args,
    });
    let pid = ctx.args.pid;
    let before = pid.and_then(rss_kib);
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(before.unwrap_or(0)));
    let sampler = pid.map(|pid| {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    });
    let mut results = Vec::new();
    for _ in 0..ctx.args.runs.max(1) {
        peak.store(pid.and_then(rss_kib).unwrap_or(0), Ordering::Relaxed);
        let before = pid.and_then(rss_kib);
        let measured = once(&ctx).await?;
        let after = pid.and_then(rss_kib);
        let peak = pid.map(|_| peak.load(Ordering::Relaxed));
        results.push(report(
            &ctx.args,
            ctx.units,
            measured,
            (before, peak, after),
        ));
        if !ctx.args.json {
            println!();
        }
    }
    if let Some(s) = sampler {
        s.abort();
    }
    if results.len() > 1 {
        report_medians(&ctx.args, &results);
    }
    let failed: u64 = results.iter().filter_map(|r| r["failed"].as_u64()).sum();
    if failed > 0 {
        bail!("{failed} requests did not succeed");
    }
    Ok(())
}

/// One run of the chosen scenario, with its requests signed before the clock starts.
async fn once(ctx: &Arc<Ctx>) -> Result<Measured> {
    let n = ctx.args.count;
    Ok(match ctx.args.scenario {
        Scenario::Register => {
            eprintln!("signing {n} registration requests…");
            let jwts = Arc::new(ctx.presign_requests(n, "private_key_jwt")?);
            if let Some(first) = jwts.first() {
                eprintln!("each request body is {} bytes", first.len());
            }
            drive(ctx, n, move |ctx, client, i| {
                let jwt = jwts[i].clone();
                async move { Ok(ctx.register(&client, jwt).await?.0) }
            })
            .await?
        }
        Scenario::TokenPkj => {
            let id = ctx.setup_client("private_key_jwt").await?;
            eprintln!("signing {n} client assertions…");
            let assertions = Arc::new(ctx.presign_assertions(n, &id)?);
            drive(ctx, n, move |ctx, client, i| {
                let a = assertions[i].clone();
                async move {
                    let form = [
                        ("grant_type", "client_credentials"),
                        (
                            "client_assertion_type",
                            dcr_server::oauth::client_auth::CLIENT_ASSERTION_TYPE,
                        ),
                        ("client_assertion", a.as_str()),
                    ];
                    Ok(ctx.token(&client, &form).await?.0)
                }
            })
            .await?
        }
        Scenario::TokenTls => {
            let id = Arc::new(ctx.setup_client("tls_client_auth").await?);
            drive(ctx, n, move |ctx, client, _| {
                let id = id.clone();
                async move {
                    let form = [
                        ("grant_type", "client_credentials"),
                        ("client_id", id.as_str()),
                    ];
                    Ok(ctx.token(&client, &form).await?.0)
                }
            })
            .await?
        }
        Scenario::Get => {
            let id = ctx.setup_client("tls_client_auth").await?;
            let token = if ctx.args.stub_as.is_some() {
                // rfc7591 mode: the token is the AS's, which the stub's introspection accepts.
                stub_as::management_token(&id)
            } else {
                let (_, body) = ctx
                    .token(
                        &ctx.client()?,
                        &[
                            ("grant_type", "client_credentials"),
                            ("client_id", id.as_str()),
                        ],
                    )
                    .await?;
                body["access_token"]
                    .as_str()
                    .context("no token")?
                    .to_string()
            };
            let token = Arc::new(token);
            let url = Arc::new(format!("{}/{id}", ctx.register_url));
            drive(ctx, n, move |_, client, _| {
                let (token, url) = (token.clone(), url.clone());
                async move {
                    Ok(client
                        .get(url.as_str())
                        .bearer_auth(token.as_str())
                        .send()
                        .await?
                        .status()
                        .as_u16())
                }
            })
            .await?
        }
        Scenario::Mixed => {
            eprintln!("signing {} registration requests…", 2 * n);
            let jwts = Arc::new(ctx.presign_requests(2 * n, "tls_client_auth")?);
            drive(ctx, n, move |ctx, client, i| {
                let (create, update) = (jwts[2 * i].clone(), jwts[2 * i + 1].clone());
                async move {
                    let (status, body) = ctx.register(&client, create).await?;
                    if status != 201 {
                        return Ok(status);
                    }
                    let id = body["client_id"].as_str().unwrap_or_default().to_string();
                    let (status, body) = ctx
                        .token(
                            &client,
                            &[
                                ("grant_type", "client_credentials"),
                                ("client_id", id.as_str()),
                            ],
                        )
                        .await?;
                    if status != 200 {
                        return Ok(status);
                    }
                    let token = body["access_token"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let url = format!("{}/{id}", ctx.register_url);
                    let s = client
                        .get(&url)
                        .bearer_auth(&token)
                        .send()
                        .await?
                        .status()
                        .as_u16();
                    if s != 200 {
                        return Ok(s);
                    }
                    let s = client
                        .put(&url)
                        .bearer_auth(&token)
                        .header("content-type", "application/jwt")
                        .body(update)
                        .send()
                        .await?
                        .status()
                        .as_u16();
                    if s != 200 {
                        return Ok(s);
                    }
                    Ok(client
                        .delete(&url)
                        .bearer_auth(&token)
                        .send()
                        .await?
                        .status()
                        .as_u16())
                }
            })
            .await?
        }
        Scenario::Handshake => handshakes(ctx).await?,
        Scenario::Seed | Scenario::Calibrate | Scenario::StubAs => {
            bail!("this scenario sends nothing to the server")
        }
    })
}
