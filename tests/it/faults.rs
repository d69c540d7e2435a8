//! Faults underneath the server: a database that goes away, SQLite lock contention, kill -9
//! during a load, several replicas on one PostgreSQL, and what reaches the logs and tables.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use dcr_server::sandbox::{RequestOptions, Sandbox};
use dcr_server::store::ClientStore;
use serde_json::{Value, json};

use crate::support::{
    BOTH, Backend, Case, POSTGRES, SQLITE, STANDALONE, SpawnedServer, TestDb, TestEnv,
    ThrowawayPostgres, count_rows, token_request_with_assertion,
};
use crate::{case, ensure_eq};

pub fn cases() -> Vec<Case> {
    vec![
        case!(database_outage_gives_503_and_recovers, STANDALONE),
        case!(sqlite_busy_is_retried_then_503, SQLITE),
        case!(kill9_during_load_loses_nothing, BOTH),
        case!(replicas_share_one_database, POSTGRES),
        case!(logs_and_tables_hold_no_secrets, BOTH),
        case!(request_timeout_bounds_every_request, SQLITE),
        case!(connection_cap_holds_back_extra_connections, SQLITE),
        case!(serve_waits_for_a_database_that_starts_late, STANDALONE),
        case!(
            serve_gives_up_on_the_database_after_startup_timeout_secs,
            STANDALONE
        ),
    ]
}

/// A minimal TPP for tests that drive a server they did not start in-process.
struct Tpp {
    sandbox: Sandbox,
    client: reqwest::Client,
    base: String,
}

impl Tpp {
    fn new(env: &TestEnv, port: u16) -> Result<Self> {
        let (cert, key) = env.transport_pem()?;
        Ok(Self {
            sandbox: env.sandbox()?,
            client: env.client(Some((&cert, &key)))?,
            base: format!("https://localhost:{port}"),
        })
    }

    fn request(&self, method: &str) -> Result<String> {
        self.sandbox.request(&RequestOptions {
            auth_method: method.into(),
            aud: self.sandbox.tpp.issuer.clone(),
            ..RequestOptions::default()
        })
    }

    /// POSTs a registration; returns (status, body, Retry-After present, elapsed).
    async fn register(&self, jwt: String) -> Result<(u16, Value, bool, Duration)> {
        let started = Instant::now();
        let r = self
            .client
            .post(format!("{}{}", self.base, dcr_server::REGISTER_PATH))
            .header("content-type", "application/jwt")
            .body(jwt)
            .send()
            .await?;
        let status = r.status().as_u16();
        let retry_after = r.headers().contains_key("retry-after");
        let body: Value = serde_json::from_str(&r.text().await?).unwrap_or(Value::Null);
        Ok((status, body, retry_after, started.elapsed()))
    }

    async fn token(&self, client_id: &str) -> Result<(u16, Value)> {
        let (status, body, _) = self.token_full(client_id).await?;
        Ok((status, body))
    }

    /// GET: status, body, whether the answer had Retry-After.
    async fn get_full(&self, client_id: &str, token: &str) -> Result<(u16, Value, bool)> {
        let r = self
            .client
            .get(format!(
                "{}{}/{client_id}",
                self.base,
                dcr_server::REGISTER_PATH
            ))
            .bearer_auth(token)
            .send()
            .await?;
        let status = r.status().as_u16();
        let retry_after = r.headers().contains_key("retry-after");
        Ok((
            status,
            serde_json::from_str(&r.text().await?).unwrap_or(Value::Null),
            retry_after,
        ))
    }

    /// A private_key_jwt token request: status, body, whether the answer had Retry-After.
    async fn token_full(&self, client_id: &str) -> Result<(u16, Value, bool)> {
        let assertion = self.sandbox.client_assertion(
            client_id,
            &format!("{}/token", self.sandbox.tpp.issuer),
            "PS256",
        )?;
        self.post_assertion(&assertion).await
    }

    /// POSTs a private_key_jwt token request with this assertion.
    async fn post_assertion(&self, assertion: &str) -> Result<(u16, Value, bool)> {
        let r =
            token_request_with_assertion(&self.client, format!("{}/token", self.base), assertion)
                .send()
                .await?;
        let status = r.status().as_u16();
        let retry_after = r.headers().contains_key("retry-after");
        Ok((
            status,
            serde_json::from_str(&r.text().await?).unwrap_or(Value::Null),
            retry_after,
        ))
    }

    async fn get(&self, client_id: &str, token: &str) -> Result<u16> {
        let r = self
            .client
            .get(format!(
                "{}{}/{client_id}",
                self.base,
                dcr_server::REGISTER_PATH
            ))
            .bearer_auth(token)
            .send()
            .await?;
        Ok(r.status().as_u16())
    }
}

/// The config of a spawned server: the test's sandbox, `db_url`, and extra dcr lines.
fn write_config(
    env: &TestEnv,
    port: u16,
    db_url: &str,
    extra_server: &str,
    extra_dcr: &str,
) -> Result<std::path::PathBuf> {
    let text = env
        .config_toml_with("", extra_dcr, "")
        .replace(
            &format!("listen = \"127.0.0.1:{}\"", env.port),
            &format!("listen = \"127.0.0.1:{port}\"\n{extra_server}"),
        )
        .replace(&env.db.url, db_url);
    let path = env.dir.path().join(format!("replica-{port}.toml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

async fn database_outage_gives_503_and_recovers(_backend: Backend) -> Result<()> {
    let pg = ThrowawayPostgres::start_new()?;
    let mut env = TestEnv::new(Backend::Sqlite).await?;
    env.db = TestDb::from_url(pg.url());
    let text = env
        .config_toml_with("", "software_id_as_application_name.enable = false", "")
        .replace(
            "shutdown_grace_secs = 2",
            "shutdown_grace_secs = 2\nrequest_timeout_ms = 3000",
        )
        .replace(
            "max_connections = 5",
            "max_connections = 5\nacquire_timeout_ms = 1000",
        );
    let config = dcr_server::config::Config::parse(&text, std::path::Path::new("t.toml"))?;
    let server = env.start_with(config, axum::Router::new()).await?;
    let tpp = Arc::new(Tpp::new(&env, env.port)?);

    for _ in 0..3 {
        ensure_eq!(tpp.register(tpp.request("private_key_jwt")?).await?.0, 201);
    }
    let (_, created, _, _) = tpp.register(tpp.request("private_key_jwt")?).await?;
    let id = created["client_id"].as_str().context("id")?.to_string();
    let (_, token) = tpp.token(&id).await?;
    let token = token["access_token"].as_str().context("token")?.to_string();
    // A load of registrations, token requests and GETs across the outage. Each worker records
    // (when, status with success as 201, body, Retry-After present, elapsed).
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let (tpp, stop, id, token) = (tpp.clone(), stop.clone(), id.clone(), token.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let (status, body, retry_after) = match worker {
                    0 | 1 => {
                        let (s, b, r, _) = tpp.register(tpp.request("private_key_jwt")?).await?;
                        (s, b, r)
                    }
                    2 => {
                        let (s, b, r) = tpp.token_full(&id).await?;
                        (if s == 200 { 201 } else { s }, b, r)
                    }
                    _ => {
                        let (s, b, r) = tpp.get_full(&id, &token).await?;
                        (if s == 200 { 201 } else { s }, b, r)
                    }
                };
                seen.push((Instant::now(), status, body, retry_after, started.elapsed()));
            }
            Ok::<_, anyhow::Error>(seen)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let down_at = Instant::now();
    pg.stop()?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ready = env.client(None)?.get(env.url("/ready")).send().await?;
    ensure_eq!(ready.status().as_u16(), 503);
    pg.start()?;
    let up_at = Instant::now();
    // The server recovers by itself: no restart.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if tpp.register(tpp.request("private_key_jwt")?).await?.0 == 201 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no 201 within 20 s of the database coming back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut unavailable = 0;
    for w in workers {
        for (at, status, body, retry_after, elapsed) in w.await?? {
            ensure!(
                elapsed < Duration::from_millis(4000),
                "a request took {elapsed:?}"
            );
            match status {
                201 => {}
                503 => {
                    unavailable += 1;
                    ensure!(retry_after, "503 without Retry-After");
                    ensure_eq!(body["error"], json!("temporarily_unavailable"));
                    ensure!(at >= down_at, "503 before the outage");
                }
                other => bail!("status {other} during the outage: {body}"),
            }
        }
    }
    ensure!(
        unavailable > 0,
        "no 503 was seen while the database was down"
    );
    let ready = env.client(None)?.get(env.url("/ready")).send().await?;
    ensure_eq!(ready.status().as_u16(), 200);
    let _ = up_at;
    server.stop().await
}

async fn sqlite_busy_is_retried_then_503(backend: Backend) -> Result<()> {
    use sqlx::Connection;
    let env = TestEnv::new(backend).await?;
    let text = env
        .config_toml_with("", "software_id_as_application_name.enable = false", "")
        .replace(
            "max_connections = 5",
            "max_connections = 5\nsqlite_busy_timeout_ms = 300",
        );
    let config = dcr_server::config::Config::parse(&text, std::path::Path::new("t.toml"))?;
    let server = env.start_with(config, axum::Router::new()).await?;
    let tpp = Tpp::new(&env, env.port)?;
    ensure_eq!(tpp.register(tpp.request("private_key_jwt")?).await?.0, 201);

    // Another writer holds the lock briefly: the registration waits and succeeds.
    let mut locker = sqlx::SqliteConnection::connect(&env.db.url).await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut locker).await?;
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        sqlx::query("COMMIT").execute(&mut locker).await?;
        Ok::<_, anyhow::Error>(locker)
    });
    ensure_eq!(tpp.register(tpp.request("private_key_jwt")?).await?.0, 201);
    let mut locker = release.await??;

    // Held for longer than the busy timeout and the retries: 503 with Retry-After, not 500.
    sqlx::query("BEGIN IMMEDIATE").execute(&mut locker).await?;
    let before = count_rows(&env.db.connect().await?, "clients").await?;
    let (status, body, retry_after, _) = tpp.register(tpp.request("private_key_jwt")?).await?;
    ensure!(status == 503 && retry_after, "{status} {body}");
    ensure_eq!(body["error"], json!("temporarily_unavailable"));
    sqlx::query("COMMIT").execute(&mut locker).await?;
    ensure_eq!(
        count_rows(&env.db.connect().await?, "clients").await?,
        before
    );
    ensure_eq!(tpp.register(tpp.request("private_key_jwt")?).await?.0, 201);
    server.stop().await
}

async fn kill9_during_load_loses_nothing(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let config = write_config(
        &env,
        env.port,
        &env.db.url,
        "",
        "software_id_as_application_name.enable = false",
    )?;
    let log = env.dir.path().join("server.log");
    let mut server = SpawnedServer::start(&config, env.port, &[], &log).await?;
    let tpp = Arc::new(Tpp::new(&env, env.port)?);
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (tpp, stop) = (tpp.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut created = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let Ok(jwt) = tpp.request("private_key_jwt") else {
                    break;
                };
                match tpp.register(jwt).await {
                    Ok((201, body, _, _)) => {
                        created.push(body["client_id"].as_str().unwrap_or_default().to_string())
                    }
                    Ok((status, body, _, _)) if status >= 500 => {
                        return Err(anyhow::anyhow!("{status} {body}"));
                    }
                    Ok(_) => {}
                    // The connection died with the server.
                    Err(_) => break,
                }
            }
            Ok(created)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9()?;
    stop.store(true, Ordering::Relaxed);
    let mut created = Vec::new();
    for w in workers {
        created.extend(w.await??);
    }
    ensure!(
        created.len() >= 5,
        "only {} registrations before the kill",
        created.len()
    );

    let log2 = env.dir.path().join("server2.log");
    let _server = SpawnedServer::start(&config, env.port, &[], &log2).await?;
    let store = env.db.connect().await?;
    for id in &created {
        ensure!(
            store.get_client(id).await?.is_some(),
            "client {id} got a 201 but is gone"
        );
    }
    // Every stored client has its audit record; nothing is half-written.
    let orphans = "SELECT COUNT(*) FROM clients c WHERE NOT EXISTS \
        (SELECT 1 FROM audit_log a WHERE a.client_id = c.client_id AND a.action = 'register' AND a.outcome = 'success')";
    let orphans = store.raw_i64(orphans).await?;
    ensure_eq!(orphans, 0);
    ensure!(count_rows(&store, "jtis").await? >= count_rows(&store, "clients").await?);
    // And they work: a token and a GET for a sample of them.
    for id in created.iter().take(5) {
        let (status, body) = tpp.token(id).await?;
        ensure!(status == 200, "token for {id}: {status} {body}");
        let token = body["access_token"].as_str().context("token")?;
        ensure_eq!(tpp.get(id, token).await?, 200);
    }
    Ok(())
}

async fn replicas_share_one_database(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    // A and B allow several clients per software, so only the jti can stop a replay; C and D
    // keep one client per software. All four share one database.
    let ports = [
        env.port,
        crate::support::free_port(),
        crate::support::free_port(),
        crate::support::free_port(),
    ];
    let policy_off = "software_id_as_application_name.enable = false";
    let mut configs = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        configs.push(write_config(
            &env,
            *port,
            &env.db.url,
            "",
            if i < 2 { policy_off } else { "" },
        )?);
    }
    let logs: Vec<_> = (0..4)
        .map(|i| env.dir.path().join(format!("replica-{i}.log")))
        .collect();
    // Migrations from all at once must not trip over each other.
    let (a, b, c, d) = tokio::join!(
        SpawnedServer::start(&configs[0], ports[0], &[], &logs[0]),
        SpawnedServer::start(&configs[1], ports[1], &[], &logs[1]),
        SpawnedServer::start(&configs[2], ports[2], &[], &logs[2]),
        SpawnedServer::start(&configs[3], ports[3], &[], &logs[3])
    );
    let _replicas = (a?, b?, c?, d?);
    let (ta, tb) = (Tpp::new(&env, ports[0])?, Tpp::new(&env, ports[1])?);
    let (tc, td) = (Tpp::new(&env, ports[2])?, Tpp::new(&env, ports[3])?);
    let store = env.db.connect().await?;

    // The same request jti sent to A and B at once: accepted once.
    let jwt = ta.request("private_key_jwt")?;
    let (ra, rb) = tokio::join!(ta.register(jwt.clone()), tb.register(jwt));
    let mut statuses = [ra?.0, rb?.0];
    statuses.sort();
    ensure_eq!(statuses, [201, 400]);
    ensure_eq!(count_rows(&store, "clients").await?, 1);
    let id = store
        .list_clients()
        .await?
        .pop()
        .context("client")?
        .client_id;

    // The same software_id on both at once (different jtis): one client. One exists already,
    // so delete it first through replica A and race two fresh registrations.
    let (status, body) = ta.token(&id).await?;
    ensure!(status == 200, "{body}");
    let token = body["access_token"].as_str().context("token")?.to_string();
    let del = ta
        .client
        .delete(format!("{}{}/{id}", ta.base, dcr_server::REGISTER_PATH))
        .bearer_auth(&token)
        .send()
        .await?;
    ensure_eq!(del.status().as_u16(), 204);
    // The DELETE on A is seen by B at once.
    ensure_eq!(tb.get(&id, &token).await?, 401);
    let (ra, rb) = tokio::join!(
        tc.register(tc.request("private_key_jwt")?),
        td.register(td.request("private_key_jwt")?)
    );
    let (ra, rb) = (ra?, rb?);
    let mut statuses = [ra.0, rb.0];
    statuses.sort();
    ensure!(
        statuses == [201, 400],
        "{:?} {:?}",
        (ra.0, &ra.1),
        (rb.0, &rb.1)
    );
    ensure_eq!(count_rows(&store, "clients").await?, 1);
    let id = store
        .list_clients()
        .await?
        .pop()
        .context("client")?
        .client_id;

    // A token revoked through A (by using it on another ClientId) is refused by B at once.
    let (_, body) = tb.token(&id).await?;
    let token = body["access_token"].as_str().context("token")?.to_string();
    ensure_eq!(tb.get(&id, &token).await?, 200);
    ensure_eq!(
        ta.get("00000000-0000-4000-8000-000000000000", &token)
            .await?,
        401
    );
    ensure_eq!(tb.get(&id, &token).await?, 401);
    Ok(())
}

async fn logs_and_tables_hold_no_secrets(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let config = write_config(
        &env,
        env.port,
        &env.db.url,
        "",
        "token_endpoint_auth_methods = [\"private_key_jwt\", \"tls_client_auth\", \"client_secret_post\"]\nsoftware_id_as_application_name.enable = false",
    )?;
    let log = env.dir.path().join("trace.log");
    let server = SpawnedServer::start(&config, env.port, &[("RUST_LOG", "trace")], &log).await?;
    let tpp = Tpp::new(&env, env.port)?;
    let mut secrets: Vec<String> = Vec::new();

    // private_key_jwt life cycle.
    let (status, created, _, _) = tpp.register(tpp.request("private_key_jwt")?).await?;
    ensure_eq!(status, 201);
    let id = created["client_id"].as_str().context("id")?.to_string();
    secrets.push(
        created["client_secret"]
            .as_str()
            .context("secret")?
            .to_string(),
    );
    let assertion =
        tpp.sandbox
            .client_assertion(&id, &format!("{}/token", tpp.sandbox.tpp.issuer), "PS256")?;
    secrets.push(
        assertion
            .split('.')
            .nth(2)
            .context("signature")?
            .to_string(),
    );
    let (_, body, _) = tpp.post_assertion(&assertion).await?;
    let token = body["access_token"].as_str().context("token")?.to_string();
    secrets.push(token.clone());
    ensure_eq!(tpp.get(&id, &token).await?, 200);

    // client_secret_post: the secret travels in a form body.
    let mut claims = tpp.sandbox.request_claims(&RequestOptions {
        aud: tpp.sandbox.tpp.issuer.clone(),
        ..RequestOptions::default()
    })?;
    claims["token_endpoint_auth_method"] = json!("client_secret_post");
    claims
        .as_object_mut()
        .map(|m| m.remove("token_endpoint_auth_signing_alg"));
    let (status, created2, _, _) = tpp
        .register(tpp.sandbox.sign_as_tpp(&claims, "PS256")?)
        .await?;
    ensure_eq!(status, 201);
    let id2 = created2["client_id"].as_str().context("id")?.to_string();
    let secret2 = created2["client_secret"]
        .as_str()
        .context("secret")?
        .to_string();
    secrets.push(secret2.clone());
    let r = tpp
        .client
        .post(format!("{}/token", tpp.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id2),
            ("client_secret", &secret2),
        ])
        .send()
        .await?;
    ensure_eq!(r.status().as_u16(), 200);
    secrets.push(
        r.json::<Value>().await?["access_token"]
            .as_str()
            .context("token")?
            .to_string(),
    );

    // Tables: secrets and tokens only as hashes.
    let store = env.db.connect().await?;
    let dump_sql = [
        "SELECT client_id || metadata || client_secret_hash FROM clients",
        "SELECT token_hash || client_id || scope FROM tokens",
        "SELECT scope || jti FROM jtis",
        "SELECT action || outcome || COALESCE(detail, '') FROM audit_log",
    ];
    let mut dump = String::new();
    for sql in dump_sql {
        let rows = store.raw_strings(sql).await?;
        dump.push_str(&rows.join("\n"));
    }
    for secret in &secrets[..1] {
        ensure!(
            !dump.contains(secret.as_str()),
            "a client secret is stored in clear"
        );
    }
    ensure!(!dump.contains(&token), "an access token is stored in clear");
    ensure!(
        !dump.contains(&secret2),
        "a client secret is stored in clear"
    );
    ensure!(dump.contains(&dcr_server::domain::secret::hash(&secrets[0])));

    drop(server);
    let text = std::fs::read_to_string(&log)?;
    // JSON by default, and one line per request with who and how it went.
    let lines: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("a log line is not JSON")?;
    let registered = lines
        .iter()
        .find(|l| {
            l["message"] == "request"
                && l["route"] == dcr_server::REGISTER_PATH
                && l["client_id"].as_str() == Some(id.as_str())
        })
        .context("no request line for the registration")?;
    ensure_eq!(registered["status"], json!(201));
    ensure_eq!(registered["method"], json!("POST"));
    ensure!(registered["latency_ms"].is_number());
    ensure!(
        registered["cert_thumbprint"]
            .as_str()
            .is_some_and(|t| t.len() == 43)
    );
    ensure!(registered["software_id"].is_string());
    ensure!(
        registered["interaction_id"]
            .as_str()
            .is_some_and(|i| i.len() == 36)
    );
    ensure!(lines.iter().any(|l| l["message"] == "request"
        && l["route"] == dcr_server::REGISTER_CLIENT_ROUTE
        && l["status"] == json!(200)));
    // Trace logging was on (the crates' TRACE and DEBUG lines are where secrets would leak).
    let traced = lines.iter().filter(|l| l["level"] == "TRACE").count();
    ensure!(
        traced > 0,
        "no TRACE line among {}: trace logging is not on",
        text.lines().count()
    );
    for secret in &secrets {
        ensure!(
            !text.contains(secret.as_str()),
            "the log holds a secret: {}…",
            &secret[..8]
        );
    }
    for key in [
        "ca.key",
        "server.key",
        "directory.key",
        "tpp/transport.key",
        "tpp/signing-ps256.key",
        "tpp/signing-es256.key",
    ] {
        let pem = std::fs::read_to_string(env.sandbox_dir.join(key))?;
        for line in pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 20)
        {
            ensure!(
                !text.contains(line),
                "the log holds private key material from {key}"
            );
        }
    }
    ensure!(!text.contains("PRIVATE KEY"));
    Ok(())
}

/// A request stuck behind a slow dependency is answered 503 at `server.request_timeout_ms`.
async fn request_timeout_bounds_every_request(backend: Backend) -> Result<()> {
    use crate::fixtures::Ctx;
    use crate::support::Doc;
    let c = Ctx::start_custom(
        backend,
        "request_timeout_ms = 800",
        "",
        "timeout_ms = 10000",
        "",
    )
    .await?;
    c.jwks.set(
        "slow.jwks",
        Doc {
            status: 200,
            body: c.tpp_jwks.to_string(),
            delay: Duration::from_secs(5),
        },
    );
    let url = c.jwks.url("slow.jwks");
    let req = c.request_with_ssa(|s| s["software_jwks_endpoint"] = json!(url))?;
    let started = Instant::now();
    let (status, body) = c.post(&req, true).await?;
    ensure!(status == 503, "{status} {body}");
    ensure_eq!(body["error"], json!("temporarily_unavailable"));
    ensure!(
        started.elapsed() < Duration::from_millis(2500),
        "answered after {:?}",
        started.elapsed()
    );
    c.server.stop().await
}

/// Beyond `server.max_connections`, a new connection waits until one closes.
async fn connection_cap_holds_back_extra_connections(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let text = env.config_toml("").replace(
        "shutdown_grace_secs = 2",
        "shutdown_grace_secs = 2\nmax_connections = 2",
    );
    let config = dcr_server::config::Config::parse(&text, std::path::Path::new("t.toml"))?;
    let server = env.start_with(config, axum::Router::new()).await?;
    // Two clients keep their connections open (keep-alive).
    let (a, b) = (env.client(None)?, env.client(None)?);
    for c in [&a, &b] {
        ensure_eq!(
            c.get(env.url("/health")).send().await?.status().as_u16(),
            200
        );
    }
    let third = env.client(None)?;
    let held = tokio::time::timeout(
        Duration::from_millis(700),
        third.get(env.url("/health")).send(),
    )
    .await;
    ensure!(
        held.is_err(),
        "a third connection was served beyond max_connections = 2"
    );
    drop(a);
    let served =
        tokio::time::timeout(Duration::from_secs(5), third.get(env.url("/health")).send()).await;
    ensure!(
        matches!(served, Ok(Ok(ref r)) if r.status().as_u16() == 200),
        "the waiting connection was not served: {served:?}"
    );
    drop(b);
    server.stop().await
}

/// An orchestrator starts the server before PostgreSQL: `serve` keeps trying, logging each
/// try, and serves once the database answers.
async fn serve_waits_for_a_database_that_starts_late(_backend: Backend) -> Result<()> {
    let pg = ThrowawayPostgres::start_new()?;
    pg.stop()?;
    let env = TestEnv::new(Backend::Sqlite).await?;
    let config = write_config(&env, env.port, &pg.url(), "", "")?;
    let started = Instant::now();
    let starter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        pg.start().map(|()| pg)
    });
    let log = env.dir.path().join("server.log");
    let server = SpawnedServer::start(&config, env.port, &[], &log).await;
    let pg = starter
        .join()
        .map_err(|_| anyhow::anyhow!("the starter panicked"))??;
    let text = std::fs::read_to_string(&log)?;
    let _server = server.with_context(|| text.clone())?;
    ensure!(
        started.elapsed() >= Duration::from_secs(3),
        "listening before the database was up"
    );
    let tries = text
        .lines()
        .filter(|l| l.contains("database not reachable yet; retrying"))
        .count();
    ensure!(tries >= 2, "{tries} logged tries:\n{text}");
    ensure!(
        text.contains("\"attempt\":") && text.contains("database reachable"),
        "{text}"
    );
    let tpp = Tpp::new(&env, env.port)?;
    let (status, body, _, _) = tpp.register(tpp.request("private_key_jwt")?).await?;
    ensure!(status == 201, "{status} {body}");
    drop(pg);
    Ok(())
}

/// No database within `database.startup_timeout_secs`: `serve` exits with an error that
/// names the key and the database, after trying for about that long.
async fn serve_gives_up_on_the_database_after_startup_timeout_secs(_b: Backend) -> Result<()> {
    let env = TestEnv::new(Backend::Sqlite).await?;
    // Nothing listens on a free port.
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/postgres",
        crate::support::free_port()
    );
    let config = write_config(&env, env.port, &url, "", "")?;
    let text = std::fs::read_to_string(&config)?.replace(
        "max_connections = 5",
        "max_connections = 5\nstartup_timeout_secs = 2",
    );
    std::fs::write(&config, text)?;
    let started = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dcr-server"))
        .args(["--config", &config.to_string_lossy(), "serve"])
        .env_remove("DCR_DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    while child.try_wait()?.is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            bail!("serve did not give up within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output()?;
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "serve succeeded:\n{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .with_context(|| format!("no error line:\n{stderr}"))?;
    ensure!(
        error.contains("database.startup_timeout_secs = 2")
            && error.contains(&format!("database.url = {url}"))
            && error.contains("cannot connect"),
        "{error}"
    );
    ensure!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(10),
        "gave up after {elapsed:?}"
    );
    ensure!(
        stderr
            .matches("database not reachable yet; retrying")
            .count()
            >= 2,
        "{stderr}"
    );
    Ok(())
}
