//! The real binary: config errors, check-config, migrate, sandbox commands, SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use jsonwebtoken::{DecodingKey, Validation, jwk::JwkSet};
use serde_json::Value;

use crate::support::{BOTH, Backend, Case, Doc, JwksServer, SQLITE, TestEnv, run_binary};
use crate::{case, ensure_eq};

pub fn cases() -> Vec<Case> {
    vec![
        case!(bad_config_is_refused_naming_the_key, SQLITE),
        case!(check_config_validates_named_files, SQLITE),
        case!(check_config_warns_about_admin_trust, SQLITE),
        case!(check_config_refuses_what_serve_refuses, SQLITE),
        case!(check_config_shows_ocsp_and_fetches_crl_urls, SQLITE),
        case!(
            check_config_reads_the_authorization_servers_discovery,
            SQLITE
        ),
        case!(
            check_config_fails_naming_the_issuer_when_the_as_is_down,
            SQLITE
        ),
        case!(migrations_applied_twice_are_a_no_op, BOTH),
        case!(contract_only_config_starts_and_stops_on_sigterm, BOTH),
        case!(sandbox_commands_sign_verifiable_jwts, SQLITE),
        case!(database_url_env_overrides_config, SQLITE),
    ]
}

async fn bad_config_is_refused_naming_the_key(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let cwd = env.dir.path();
    let good = env.config_toml("");
    let cases = [
        (
            good.replace("max_connections = 5", "max_conections = 5"),
            "database.max_conections",
        ),
        (
            good.replace("max_connections = 5", "max_connections = \"five\""),
            "database.max_connections",
        ),
        (
            good.replace(
                "[open_banking.dcr]",
                "[open_banking.dcr]\nuri_validation.enabled = true",
            ),
            "open_banking.dcr.uri_validation.enabled",
        ),
        (
            good.replace(
                "[open_banking.dcr]",
                "[open_banking.dcr]\nsigning_algorithms = [\"none\"]",
            ),
            "open_banking.dcr.signing_algorithms",
        ),
        (
            good.replace("listen = ", "listen = \"nowhere\"\n#"),
            "server.listen",
        ),
        (good.replace("[server]", "[server\n"), "line"),
    ];
    for (text, key) in cases {
        let path = env.write_config(&text)?;
        let path = path.to_string_lossy();
        for command in [vec!["check-config"], vec!["serve"], vec!["migrate"]] {
            let mut args = vec!["--config", &path];
            args.extend(command.iter().copied());
            let (ok, _stdout, stderr) = run_binary(&args, cwd)?;
            ensure!(!ok, "{command:?} accepted a config with a bad `{key}`");
            let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            ensure!(
                lines.len() == 1 && lines[0].contains(key),
                "{command:?}: expected one line naming `{key}`, got:\n{stderr}"
            );
        }
    }
    Ok(())
}

async fn check_config_validates_named_files(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let cwd = env.dir.path();
    let path = env.write_config(&env.config_toml(""))?;
    let path = path.to_string_lossy().to_string();
    let (ok, stdout, stderr) = run_binary(&["--config", &path, "check-config"], cwd)?;
    ensure!(ok, "check-config failed: {stderr}");
    ensure!(stdout.contains("[server]") && stdout.contains("registration_endpoint"));

    // A missing file is named by its key.
    let missing = env
        .config_toml("")
        .replace("directory.jwks", "no-such.jwks");
    let path = env.write_config(&missing)?;
    let (ok, _, stderr) = run_binary(&["--config", &path.to_string_lossy(), "check-config"], cwd)?;
    ensure!(
        !ok && stderr.contains("open_banking.dcr.ssa_issuer[0].jwks"),
        "{stderr}"
    );

    // A file that exists but is not what it should be.
    let garbage = env.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate")?;
    let broken = env.config_toml("").replace(
        &format!("{}/ca.pem\"]\n", env.sandbox_dir.display()),
        &format!("{}\"]\n", garbage.display()),
    );
    let path = env.write_config(&broken)?;
    let (ok, _, stderr) = run_binary(&["--config", &path.to_string_lossy(), "check-config"], cwd)?;
    ensure!(
        !ok && stderr.contains("server.tls.client_ca[0]"),
        "{stderr}"
    );

    // A directory where a file should be says so (it used to say "no such file").
    let directory = env.dir.path().join("a-directory");
    std::fs::create_dir_all(&directory)?;
    let hooked = format!(
        "{}\n[[events.webhook]]\nurl = \"https://hooks.example/\"\nsecret_file = \"{}\"\n",
        env.config_toml(""),
        directory.display()
    );
    let path = env.write_config(&hooked)?;
    let (ok, _, stderr) = run_binary(&["--config", &path.to_string_lossy(), "check-config"], cwd)?;
    ensure!(
        !ok && stderr.contains("events.webhook[0].secret_file")
            && stderr.contains("is a directory")
            && !stderr.contains("no such file"),
        "{stderr}"
    );
    Ok(())
}

/// `check-config` warns when the admin listener trusts a TPP CA (a certificate of
/// `admin.client_ca` also in `server.tls.client_ca`) and when it allows no one; an admin CA of
/// its own with an allowed subject gets neither warning.
async fn check_config_warns_about_admin_trust(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let cwd = env.dir.path();
    let check = |admin: &str| -> Result<String> {
        let path = env.write_config(&format!("{}\n{admin}", env.config_toml("")))?;
        let (ok, _, stderr) =
            run_binary(&["--config", &path.to_string_lossy(), "check-config"], cwd)?;
        ensure!(ok, "check-config failed: {stderr}");
        Ok(stderr)
    };
    let stderr = check(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\nclient_ca = [\"{}/ca.pem\"]\n",
        env.sandbox_dir.display()
    ))?;
    ensure!(
        stderr.contains(
            "warning: admin.client_ca[0] holds a certificate that is also in server.tls.client_ca[0]"
        ),
        "{stderr}"
    );
    ensure!(
        stderr.contains(
            "warning: admin.listen is set but neither admin.allowed_subjects nor admin.allowed_thumbprints lists anyone"
        ),
        "{stderr}"
    );
    let own = crate::admin::admin_pki(&env)?;
    let stderr = check(&own.table)?;
    ensure!(!stderr.contains("warning: admin"), "{stderr}");
    Ok(())
}

/// `check-config` names the OCSP mode and its responder, fetches each CRL URL once and prints
/// its thisUpdate and nextUpdate, and warns about a URL it cannot fetch (still exit 0: `serve`
/// would start, and judge that CA by the mode).
async fn check_config_shows_ocsp_and_fetches_crl_urls(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let cdp = JwksServer::start(&env.ca()?).await?;
    cdp.set("ca.crl", Doc::json(env.ca()?.crl_pem(&[])?));
    let (good, bad) = (cdp.url("ca.crl"), "http://127.0.0.1:9/none.crl");
    let text = env.config_toml(&format!(
        "crl = [\"{good}\", \"{bad}\"]\n[server.tls.ocsp]\nmode = \"hard\"\nresponder_url = \"http://127.0.0.1:9/ocsp\"\n"
    ));
    let path = env.write_config(&text)?.to_string_lossy().into_owned();
    let cwd = env.dir.path().to_path_buf();
    // The binary runs while this runtime serves the CRL.
    let (ok, _, stderr) =
        tokio::task::spawn_blocking(move || run_binary(&["--config", &path, "check-config"], &cwd))
            .await??;
    ensure!(ok, "check-config failed: {stderr}");
    ensure_eq!(cdp.hits("ca.crl"), 1);
    let line = |start: &str| stderr.lines().find(|l| l.starts_with(start));
    let fetched = format!(
        "crl: {good}: fetched; thisUpdate 2025-01-01T00:00:00Z, nextUpdate 2044-01-01T00:00:00Z"
    );
    ensure!(
        line(&format!("crl: {good}:")) == Some(fetched.as_str()),
        "{stderr}"
    );
    let warning = line(&format!(
        "warning: crl: {bad}: server.tls.crl[1] cannot be used (fetch failed"
    ))
    .context(stderr.clone())?;
    ensure!(warning.contains("server.tls.ocsp.mode"), "{warning}");
    ensure_eq!(
        line("ocsp:"),
        Some("ocsp: mode hard, responder_url http://127.0.0.1:9/ocsp for certificates without AIA")
    );
    Ok(())
}

/// `[authorization_server]` in `rfc7591` mode at `issuer`, its secrets written into the test's
/// directory, trusting the sandbox CA; `extra` lines added to the section.
fn rfc7591_section(env: &TestEnv, issuer: &str, extra: &str) -> Result<String> {
    let secret = env.dir.path().join("as-client-secret");
    std::fs::write(&secret, "as-client-s3cret\n")?;
    let iat = env.dir.path().join("as-iat");
    std::fs::write(&iat, "as-initial-t0ken\n")?;
    Ok(format!(
        "[authorization_server]\nmode = \"rfc7591\"\nissuer = \"{issuer}\"\n\
         client_id = \"dcr-server\"\nclient_secret_file = \"{}\"\n\
         initial_access_token_file = \"{}\"\nca = \"{}/ca.pem\"\ntimeout_ms = 2000\n{extra}",
        secret.display(),
        iat.display(),
        env.sandbox_dir.display()
    ))
}

/// Runs check-config on `text` off this runtime (which may be serving what it fetches).
async fn check_config_off_runtime(env: &TestEnv, text: &str) -> Result<(bool, String, String)> {
    let path = env.write_config(text)?.to_string_lossy().into_owned();
    let cwd = env.dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || run_binary(&["--config", &path, "check-config"], &cwd))
        .await?
}

/// In `rfc7591` mode `check-config` reads the AS's discovery (over the AS's `ca`) and prints the
/// endpoints it will use, the configured ones over the discovered ones, and no secret; in
/// `embedded` mode it says so and fetches nothing.
async fn check_config_reads_the_authorization_servers_discovery(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let as_server = JwksServer::start(&env.ca()?).await?;
    let issuer = format!("https://localhost:{}", as_server.port);
    let discovery = ".well-known/openid-configuration";
    as_server.set(
        discovery,
        Doc::json(
            serde_json::json!({
                "issuer": issuer,
                "registration_endpoint": format!("{issuer}/reg"),
                "introspection_endpoint": format!("{issuer}/token/introspection"),
                "token_endpoint": format!("{issuer}/token"),
            })
            .to_string(),
        ),
    );
    let line = |stderr: &str, start: &str| {
        stderr
            .lines()
            .find(|l| l.starts_with(start))
            .map(str::to_string)
    };

    let text = format!(
        "{}\n{}",
        env.config_toml(""),
        rfc7591_section(&env, &issuer, "")?
    );
    let (ok, stdout, stderr) = check_config_off_runtime(&env, &text).await?;
    ensure!(ok, "check-config failed: {stderr}");
    ensure_eq!(as_server.hits(discovery), 1);
    ensure_eq!(
        line(&stderr, "authorization server: rfc7591"),
        Some(format!(
            "authorization server: rfc7591, issuer {issuer}/ (discovery read)"
        ))
    );
    ensure_eq!(
        line(&stderr, "authorization server: registration_endpoint"),
        Some(format!(
            "authorization server: registration_endpoint {issuer}/reg (discovered)"
        ))
    );
    ensure_eq!(
        line(&stderr, "authorization server: introspection_endpoint"),
        Some(format!(
            "authorization server: introspection_endpoint {issuer}/token/introspection (discovered), as client_id dcr-server"
        ))
    );
    ensure_eq!(
        line(&stderr, "authorization server: token_endpoint"),
        Some(format!(
            "authorization server: token_endpoint {issuer}/token (discovered)"
        ))
    );
    // No storage key: registration access tokens would be stored as they are.
    ensure!(
        stderr.contains("warning: authorization_server.storage_key_file is not set"),
        "{stderr}"
    );
    ensure!(
        stdout.contains("[authorization_server]") && stdout.contains("mode = \"rfc7591\""),
        "{stdout}"
    );
    for secret in ["as-client-s3cret", "as-initial-t0ken"] {
        ensure!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} shown:\n{stdout}\n{stderr}"
        );
    }

    // A configured endpoint wins over the discovered one; a storage key silences the warning.
    let key = env.dir.path().join("storage.key");
    std::fs::write(&key, [9u8; 32])?;
    let text = format!(
        "{}\n{}",
        env.config_toml(""),
        rfc7591_section(
            &env,
            &issuer,
            &format!(
                "registration_endpoint = \"https://gateway.bank.example/register\"\nstorage_key_file = \"{}\"\n",
                key.display()
            )
        )?
    );
    let (ok, _, stderr) = check_config_off_runtime(&env, &text).await?;
    ensure!(ok, "check-config failed: {stderr}");
    ensure_eq!(
        line(&stderr, "authorization server: registration_endpoint"),
        Some(
            "authorization server: registration_endpoint https://gateway.bank.example/register (configured)"
                .to_string()
        )
    );
    ensure!(!stderr.contains("storage_key_file"), "{stderr}");

    // Embedded (the default): one line, nothing fetched.
    let (ok, _, stderr) = check_config_off_runtime(&env, &env.config_toml("")).await?;
    ensure!(ok, "check-config failed: {stderr}");
    ensure_eq!(
        line(&stderr, "authorization server:"),
        Some("authorization server: embedded".to_string())
    );
    ensure_eq!(as_server.hits(discovery), 2);
    Ok(())
}

/// In `rfc7591` mode an AS that cannot be reached, or whose discovery names another issuer or
/// no registration endpoint, fails `check-config` naming `authorization_server.issuer`; a
/// missing secret file fails it naming its key, before anything is fetched.
async fn check_config_fails_naming_the_issuer_when_the_as_is_down(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let refused = |stderr: &str, issuer: &str, says: &str| -> Result<()> {
        let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        ensure!(
            lines.len() == 1
                && lines[0].contains(&format!("authorization_server.issuer {issuer}"))
                && lines[0].contains(says),
            "expected one error naming authorization_server.issuer and {says:?}:\n{stderr}"
        );
        ensure!(!stderr.contains("config OK"), "{stderr}");
        Ok(())
    };
    // Nothing listens there.
    let down = format!("https://127.0.0.1:{}", crate::support::free_port());
    let text = format!(
        "{}\n{}",
        env.config_toml(""),
        rfc7591_section(&env, &down, "")?
    );
    let (ok, _, stderr) = check_config_off_runtime(&env, &text).await?;
    ensure!(!ok, "check-config accepted an AS that is down: {stderr}");
    refused(&stderr, &down, "cannot be reached")?;

    // Up, but its discovery names another issuer, or no registration endpoint.
    let as_server = JwksServer::start(&env.ca()?).await?;
    let issuer = format!("https://localhost:{}", as_server.port);
    let discovery = ".well-known/openid-configuration";
    let text = format!(
        "{}\n{}",
        env.config_toml(""),
        rfc7591_section(&env, &issuer, "")?
    );
    as_server.set(
        discovery,
        Doc::json(r#"{"issuer":"https://elsewhere.example","registration_endpoint":"https://elsewhere.example/reg"}"#),
    );
    let (ok, _, stderr) = check_config_off_runtime(&env, &text).await?;
    ensure!(!ok, "{stderr}");
    refused(&stderr, &issuer, "another issuer")?;
    as_server.set(
        discovery,
        Doc::json(serde_json::json!({ "issuer": issuer }).to_string()),
    );
    let (ok, _, stderr) = check_config_off_runtime(&env, &text).await?;
    ensure!(!ok, "{stderr}");
    refused(&stderr, &issuer, "no registration endpoint")?;

    // A secret file that is not there is named by its key, and nothing is fetched.
    let before = as_server.hits(discovery);
    let missing = text.replace("as-client-secret", "no-such-secret");
    ensure!(missing != text);
    let (ok, _, stderr) = check_config_off_runtime(&env, &missing).await?;
    ensure!(
        !ok && stderr.contains("authorization_server.client_secret_file"),
        "{stderr}"
    );
    ensure_eq!(as_server.hits(discovery), before);
    Ok(())
}

/// Runs `serve` until it exits by itself (a refused config) or `limit` passes (it started:
/// then it is killed, and `None` says so).
fn serve_exit(path: &str, cwd: &std::path::Path, limit: Duration) -> Result<Option<String>> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dcr-server"))
        .args(["--config", path, "serve"])
        .current_dir(cwd)
        .env_remove("DCR_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            ensure!(!status.success(), "serve exited 0");
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut stderr)?;
            }
            return Ok(Some(stderr));
        }
        if std::time::Instant::now() > deadline {
            child.kill()?;
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `check-config` loads what `serve` loads, the same way: every file that makes `serve`
/// refuse to start makes `check-config` fail too, naming the same key. (It used to accept an
/// SSA issuer JWKS whose only key was an encryption key, which `serve` then refused.)
async fn check_config_refuses_what_serve_refuses(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let cwd = env.dir.path();
    let sandbox = env.sandbox_dir.display().to_string();
    let write = |name: &str, text: &str| -> Result<String> {
        let file = env.dir.path().join(name);
        std::fs::write(&file, text)?;
        Ok(file.display().to_string())
    };
    let directory: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        env.sandbox_dir.join("directory.jwks"),
    )?)?;
    let mut enc_only = directory.clone();
    for key in enc_only["keys"].as_array_mut().context("keys")? {
        key["use"] = serde_json::json!("enc");
    }
    let enc_only = write("enc-only.jwks", &enc_only.to_string())?;
    let no_keys = write("no-keys.jwks", r#"{"keys": []}"#)?;
    let not_json = write("not-json.jwks", "keys")?;
    let bad_crl = write(
        "bad.crl",
        "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
    )?;
    let base = env.config_toml("");
    let directory_jwks = format!("{sandbox}/directory.jwks");
    let cases = [
        (
            base.replace(&directory_jwks, &enc_only),
            "open_banking.dcr.ssa_issuer[0].jwks",
        ),
        (
            base.replace(&directory_jwks, &no_keys),
            "open_banking.dcr.ssa_issuer[0].jwks",
        ),
        (
            base.replace(&directory_jwks, &not_json),
            "open_banking.dcr.ssa_issuer[0].jwks",
        ),
        (
            base.replace(
                &format!("{sandbox}/server.key"),
                &format!("{sandbox}/tpp/transport.key"),
            ),
            "server.tls.private_key",
        ),
        (
            base.replace(
                "[server.tls]\n",
                &format!("[server.tls]\ncrl = [\"{bad_crl}\"]\n"),
            ),
            "server.tls.crl[0]",
        ),
    ];
    for (text, key) in cases {
        ensure!(text != base, "{key}: the case did not change the config");
        let path = env.write_config(&text)?;
        let path = path.to_string_lossy().to_string();
        let (ok, _, stderr) = run_binary(&["--config", &path, "check-config"], cwd)?;
        ensure!(!ok && stderr.contains(key), "check-config, {key}: {stderr}");
        let served = serve_exit(&path, cwd, Duration::from_secs(20))?
            .with_context(|| format!("serve started with a broken {key}"))?;
        ensure!(served.contains(key), "serve, {key}: {served}");
    }
    Ok(())
}

async fn migrations_applied_twice_are_a_no_op(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let path = env.write_config(&env.config_toml(""))?;
    let path = path.to_string_lossy().to_string();
    for _ in 0..2 {
        let (ok, stdout, stderr) = run_binary(&["--config", &path, "migrate"], env.dir.path())?;
        ensure!(ok, "migrate failed: {stderr}");
        ensure!(stdout.contains("migrations applied"), "{stdout}");
    }
    let store = env.db.connect().await?;
    let count = store.migrations_applied().await?;
    let files = std::fs::read_dir(format!(
        "{}/migrations/{}",
        env!("CARGO_MANIFEST_DIR"),
        backend.name()
    ))?
    .count() as i64;
    ensure_eq!(count, files);
    Ok(())
}

/// A config holding only the contract's keys starts the server; SIGTERM stops it cleanly.
async fn contract_only_config_starts_and_stops_on_sigterm(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let s = env.sandbox_dir.display();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
issuer = "https://localhost:{port}"

[server.tls]
certificate = "{s}/server.pem"
private_key = "{s}/server.key"
client_ca = ["{s}/ca.pem"]

[database]
url = "{url}"

[[open_banking.dcr.ssa_issuer]]
name = "OpenBanking Ltd"
jwks = "{s}/directory.jwks"
"#,
        port = env.port,
        url = env.db.url,
    );
    let path = env.write_config(&text)?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_dcr-server"))
        .args(["--config", &path.to_string_lossy(), "serve"])
        .current_dir(env.dir.path())
        .env_remove("DCR_DATABASE_URL")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let want = format!("listening on https://127.0.0.1:{}", env.port);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(&want) => break,
            Ok(_) => continue,
            Err(_) => {
                let _ = child.kill();
                bail!("no `{want}` line within 20 s");
            }
        }
    }
    let response = env
        .client(None)?
        .get(env.url("/.well-known/openid-configuration"))
        .send()
        .await?;
    ensure_eq!(response.status().as_u16(), 200);
    let doc: Value = response.json().await?;
    let want_endpoint = format!("https://localhost:{}/open-banking/v3.2/register", env.port);
    ensure_eq!(
        doc["registration_endpoint"].as_str(),
        Some(want_endpoint.as_str())
    );

    let pid = child.id().to_string();
    ensure!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()?
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait()? {
            ensure!(status.success(), "exit status after SIGTERM: {status}");
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the server did not exit within 10 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn verify(jwt: &str, jwks_path: &std::path::Path, aud: Option<&str>) -> Result<Value> {
    let jwks: JwkSet = serde_json::from_str(&std::fs::read_to_string(jwks_path)?)?;
    let header = jsonwebtoken::decode_header(jwt)?;
    let kid = header.kid.context("no kid")?;
    let jwk = jwks.find(&kid).context("kid not in the JWKS")?;
    let mut validation = Validation::new(header.alg);
    validation.required_spec_claims.clear();
    match aud {
        Some(aud) => validation.set_audience(&[aud]),
        None => validation.validate_aud = false,
    }
    Ok(jsonwebtoken::decode::<Value>(jwt, &DecodingKey::from_jwk(jwk)?, &validation)?.claims)
}

async fn sandbox_commands_sign_verifiable_jwts(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let cwd = env.dir.path();
    let dir = cwd.join("fresh");
    let dir_s = dir.to_string_lossy().to_string();
    let nowhere = cwd.join("none.toml").to_string_lossy().to_string();
    let (ok, stdout, stderr) = run_binary(
        &[
            "--config",
            &nowhere,
            "sandbox",
            "init",
            "--dir",
            &dir_s,
            "--issuer",
            "https://localhost:9443",
        ],
        cwd,
    )?;
    ensure!(ok, "sandbox init: {stderr}");
    ensure!(stdout.contains("software_id"));
    // Private keys are readable by the owner only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in [
            "ca.key",
            "server.key",
            "directory.key",
            "tpp/transport.key",
            "tpp/signing-ps256.key",
        ] {
            let mode = std::fs::metadata(dir.join(key))?.permissions().mode() & 0o777;
            ensure_eq!(mode, 0o600);
        }
    }

    for (method, alg) in [("private_key_jwt", "PS256"), ("tls_client_auth", "ES256")] {
        let (ok, stdout, stderr) = run_binary(
            &[
                "--config",
                &nowhere,
                "sandbox",
                "request",
                "--dir",
                &dir_s,
                "--auth-method",
                method,
                "--alg",
                alg,
            ],
            cwd,
        )?;
        ensure!(ok, "sandbox request: {stderr}");
        let claims = verify(stdout.trim(), &dir.join("tpp/signing.jwks"), None)?;
        ensure_eq!(claims["token_endpoint_auth_method"].as_str(), Some(method));
        ensure_eq!(claims["aud"].as_str(), Some("https://localhost:9443"));
        let ssa = claims["software_statement"].as_str().context("no SSA")?;
        let ssa_claims = verify(ssa, &dir.join("directory.jwks"), None)?;
        ensure_eq!(ssa_claims["iss"].as_str(), Some("OpenBanking Ltd"));
        ensure_eq!(ssa_claims["software_id"], claims["iss"]);
        ensure_eq!(
            ssa_claims["software_jwks_endpoint"].as_str(),
            Some("https://localhost:9443/sandbox/tpp.jwks")
        );
        if method == "tls_client_auth" {
            ensure!(claims["tls_client_auth_subject_dn"].is_string());
        } else {
            ensure_eq!(
                claims["token_endpoint_auth_signing_alg"].as_str(),
                Some(alg)
            );
        }
    }

    let (ok, stdout, stderr) = run_binary(
        &[
            "--config",
            &nowhere,
            "sandbox",
            "client-assertion",
            "--dir",
            &dir_s,
            "--client-id",
            "abc",
        ],
        cwd,
    )?;
    ensure!(ok, "client-assertion: {stderr}");
    let claims = verify(
        stdout.trim(),
        &dir.join("tpp/signing.jwks"),
        Some("https://localhost:9443/token"),
    )?;
    ensure_eq!(claims["iss"].as_str(), Some("abc"));
    ensure_eq!(claims["sub"].as_str(), Some("abc"));

    // init without --force keeps the existing sandbox.
    let before = std::fs::read(dir.join("tpp/tpp.json"))?;
    let (ok, _, _) = run_binary(
        &["--config", &nowhere, "sandbox", "init", "--dir", &dir_s],
        cwd,
    )?;
    ensure!(ok);
    ensure_eq!(std::fs::read(dir.join("tpp/tpp.json"))?, before);
    Ok(())
}

async fn database_url_env_overrides_config(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend).await?;
    let path = env.write_config(
        &env.config_toml("")
            .replace(&env.db.url, "sqlite://unused/never.db"),
    )?;
    let other = env.dir.path().join("from-env.db");
    let out = Command::new(env!("CARGO_BIN_EXE_dcr-server"))
        .args(["--config", &path.to_string_lossy(), "migrate"])
        .current_dir(env.dir.path())
        .env("DCR_DATABASE_URL", format!("sqlite://{}", other.display()))
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(other.is_file(), "DCR_DATABASE_URL was not used");
    ensure!(
        !env.dir.path().join("unused").exists(),
        "database.url was used"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&other)?.permissions().mode() & 0o777;
        ensure_eq!(mode, 0o600);
    }
    // DCR_LISTEN and DCR_ISSUER override their keys; a bad value names key and variable.
    let check = |vars: &[(&str, &str)]| -> Result<(bool, String, String)> {
        let out = Command::new(env!("CARGO_BIN_EXE_dcr-server"))
            .args(["--config", &path.to_string_lossy(), "check-config"])
            .current_dir(env.dir.path())
            .env_remove("DCR_DATABASE_URL")
            .envs(vars.iter().copied())
            .output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let (ok, stdout, stderr) = check(&[
        ("DCR_LISTEN", "0.0.0.0:9443"),
        ("DCR_ISSUER", "https://dcr.example:9443"),
    ])?;
    ensure!(ok, "{stderr}");
    ensure!(stdout.contains("listen = \"0.0.0.0:9443\""), "{stdout}");
    ensure!(
        stdout.contains("issuer = \"https://dcr.example:9443\""),
        "{stdout}"
    );
    for (name, value, key) in [
        ("DCR_LISTEN", "nowhere", "server.listen (from DCR_LISTEN)"),
        (
            "DCR_ISSUER",
            "http://plain.example",
            "server.issuer (from DCR_ISSUER)",
        ),
    ] {
        let (ok, _, stderr) = check(&[(name, value)])?;
        ensure!(!ok && stderr.contains(key), "{name}: {stderr}");
    }
    Ok(())
}
