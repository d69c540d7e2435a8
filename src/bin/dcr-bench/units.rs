//! Units that travel across machines: **V**, the CPU time of one PS256 verification with an
//! RSA-2048 key through the server's own code path, and **P**, PostgreSQL's own CPU time per
//! single-row INSERT transaction. Both are measured in the same invocation as the run they
//! belong to, so a cost in V or P compares across machines and days where microseconds do not.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use dcr_server::domain::SigningAlg;
use dcr_server::jose::{Jws, KeySet};
use dcr_server::sandbox::Sandbox;
use serde_json::{Value, json};
use sqlx::Connection;

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// V in µs: the median over batches of one PS256 verification of a registration-sized JWS
/// with the sandbox TPP's RSA-2048 key, parsed from its JWKS once (as the server caches it).
pub fn measure_v(sandbox: &Sandbox, sandbox_dir: &std::path::Path) -> Result<f64> {
    let jwks =
        std::fs::read(sandbox_dir.join("tpp/signing.jwks")).context("reading tpp/signing.jwks")?;
    let set = KeySet::parse(&jwks).map_err(|e| anyhow::anyhow!("tpp/signing.jwks: {e}"))?;
    let token = sandbox.sign_as_tpp(&json!({"filler": "x".repeat(3000)}), "PS256")?;
    let jws = Jws::parse(&token, &[SigningAlg::PS256])?;
    let kid = jws.require_kid()?.to_string();
    let key = set
        .keys
        .iter()
        .find(|k| k.kid.as_deref() == Some(kid.as_str()) && k.fits(SigningAlg::PS256))
        .context("the sandbox JWKS has no PS256 key for its own signature")?;
    // Warm up (the key's parsed form is built on first use), then 21 batches of 100.
    for _ in 0..50 {
        jws.verify(key, &kid)?;
    }
    let mut per_batch = Vec::new();
    for _ in 0..21 {
        let t = thread_cpu();
        for _ in 0..100 {
            jws.verify(key, &kid)?;
        }
        per_batch.push((thread_cpu() - t).as_secs_f64() * 1e6 / 100.0);
    }
    Ok(median(per_batch))
}

/// utime + stime (+ cutime + cstime when `children`) of a process, in USER_HZ ticks.
fn ticks(pid: u32, children: bool) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // After the command: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let own = n(11)? + n(12)?;
    Some(if children { own + n(13)? + n(14)? } else { own })
}

fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()
}

/// The CPU time of a local PostgreSQL: its postmaster and every child (backends, WAL writer,
/// checkpointer, …), and the children that have exited since (reaped into the postmaster's
/// cutime/cstime).
#[derive(Debug, Clone, Copy)]
pub struct Postgres {
    postmaster: u32,
}

impl Postgres {
    /// Finds the postmaster behind `url` from a backend's parent; it must run on this machine.
    pub async fn find(url: &str) -> Result<Self> {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await?;
        let postmaster = ppid(backend as u32).with_context(|| {
            format!("PostgreSQL backend {backend} is not a process on this machine: its CPU cannot be read")
        })?;
        conn.close().await.ok();
        Ok(Self { postmaster })
    }

    /// CPU used so far.
    pub fn cpu(&self) -> Option<Duration> {
        let mut total = ticks(self.postmaster, true)?;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if ppid(pid) == Some(self.postmaster) {
                total += ticks(pid, false).unwrap_or(0);
            }
        }
        Some(Duration::from_millis(total * 10))
    }
}

/// P in µs: PostgreSQL's CPU per single-row INSERT transaction of a ~1.3 KB text row, 16
/// connections in autocommit, for about `seconds`.
pub async fn measure_p(url: &str, pg: &Postgres, seconds: f64) -> Result<f64> {
    const TABLE: &str = "dcr_bench_calibrate";
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(16)
        .min_connections(16)
        .connect(url)
        .await?;
    sqlx::query(&format!("DROP TABLE IF EXISTS {TABLE}"))
        .execute(&pool)
        .await?;
    sqlx::query(&format!(
        "CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, body text NOT NULL)"
    ))
    .execute(&pool)
    .await?;
    // Connect all 16 before the clock starts.
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(pool.acquire().await?);
    }
    drop(held);
    let insert = format!("INSERT INTO {TABLE} (body) VALUES ($1)");
    let before = pg.cpu().context("reading PostgreSQL's CPU time")?;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut workers = Vec::new();
    for w in 0..16u64 {
        let (pool, insert) = (pool.clone(), insert.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                // Distinct, incompressible-looking text: hex of a counter-seeded hash chain.
                let body = row_text(w, n);
                sqlx::query(&insert).bind(body).execute(&pool).await?;
                n += 1;
            }
            Ok::<_, sqlx::Error>(n)
        }));
    }
    let mut inserts = 0;
    for w in workers {
        inserts += w.await??;
    }
    let after = pg.cpu().context("reading PostgreSQL's CPU time")?;
    sqlx::query(&format!("DROP TABLE {TABLE}"))
        .execute(&pool)
        .await?;
    pool.close().await;
    if inserts == 0 {
        bail!("no INSERT finished while calibrating P");
    }
    Ok((after - before).as_secs_f64() * 1e6 / inserts as f64)
}

fn row_text(worker: u64, n: u64) -> String {
    use sha2::{Digest, Sha256};
    let mut out = String::with_capacity(1344);
    let mut h = Sha256::digest(format!("{worker}:{n}"));
    while out.len() < 1300 {
        out.push_str(&hex::encode(h));
        h = Sha256::digest(h);
    }
    out
}

/// The units of one invocation.
#[derive(Debug, Clone, Copy)]
pub struct Units {
    pub v_us: f64,
    pub p_us: Option<f64>,
}

impl Units {
    pub fn json(&self) -> Value {
        json!({"v_us": round2(self.v_us), "p_us": self.p_us.map(round2)})
    }
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
