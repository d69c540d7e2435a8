//! The container, without a Docker engine: the binary run exactly as the image's ENTRYPOINT
//! and CMD run it, with the ENV and WORKDIR the Dockerfile sets (read from the Dockerfile, so
//! that the two cannot drift), in a directory laid out as the image's /app. It must listen on
//! all interfaces and answer the README's curl examples with the sandbox copied out of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::support::{
    Backend, Case, SQLITE, SpawnedServer, free_port, https_client, token_request_with_assertion,
};
use crate::{case, ensure_eq};

pub fn cases() -> Vec<Case> {
    vec![
        case!(the_image_serves_the_sandbox_with_no_mounts, SQLITE),
        case!(the_shipped_configs_parse, SQLITE),
        case!(
            a_sandbox_made_for_an_unresolvable_issuer_registers_its_tpp,
            SQLITE
        ),
        case!(
            the_sandbox_tpp_registers_with_dcr_listen_on_another_port,
            SQLITE
        ),
        case!(
            an_old_sandbox_gets_a_server_certificate_for_a_new_issuer,
            SQLITE
        ),
    ]
}

/// What the final stage of the Dockerfile sets up.
#[derive(Debug, Default)]
struct Image {
    workdir: String,
    env: BTreeMap<String, String>,
    /// (source in the build context, destination in the image)
    copies: Vec<(String, String)>,
    dirs: Vec<String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    exposed: Vec<u16>,
}

fn exec_form(rest: &str) -> Result<Vec<String>> {
    serde_json::from_str(rest).with_context(|| format!("not exec form: {rest}"))
}

/// Reads the last stage of `text` (continuation lines joined).
fn parse_dockerfile(text: &str) -> Result<Image> {
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let last_from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .context("no FROM")?;
    let mut image = Image::default();
    for line in &lines[last_from + 1..] {
        let (instruction, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        match instruction {
            "WORKDIR" => image.workdir = rest.to_string(),
            "ENV" => {
                let (k, v) = rest.split_once('=').context("ENV without =")?;
                image.env.insert(k.to_string(), v.to_string());
            }
            "COPY" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                if words.iter().any(|w| w.starts_with("--from")) {
                    continue; // the binary: the test runs the one cargo built
                }
                let paths: Vec<&str> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
                let (dest, sources) = paths.split_last().context("COPY without paths")?;
                for source in sources {
                    image.copies.push((source.to_string(), dest.to_string()));
                }
            }
            "RUN" if rest.contains("mkdir") => {
                image.dirs.extend(
                    rest.split_whitespace()
                        .filter(|w| w.starts_with('/'))
                        .map(str::to_string),
                );
            }
            "ENTRYPOINT" => image.entrypoint = exec_form(rest)?,
            "CMD" => image.cmd = exec_form(rest)?,
            "EXPOSE" => image.exposed.push(rest.parse()?),
            _ => {}
        }
    }
    Ok(image)
}

/// `path` in the image, as a path in `root` (the image's `/` is `root`'s parent of `/app`).
fn in_layout(root: &Path, workdir: &str, path: &str) -> PathBuf {
    let relative = path
        .strip_prefix(&format!("{workdir}/"))
        .or_else(|| path.strip_prefix(workdir))
        .unwrap_or(path)
        .trim_start_matches('/');
    root.join(relative)
}

/// Whether something listens on `0.0.0.0:port` (or `[::]:port`), from /proc/net.
fn listens_on_all_interfaces(port: u16) -> Result<bool> {
    let wanted = format!(":{port:04X}");
    for (file, any) in [
        ("/proc/net/tcp", "00000000"),
        ("/proc/net/tcp6", "00000000000000000000000000000000"),
    ] {
        let Ok(table) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 3 && fields[1] == format!("{any}{wanted}") && fields[3] == "0A" {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

async fn the_image_serves_the_sandbox_with_no_mounts(_backend: Backend) -> Result<()> {
    let image = parse_dockerfile(&std::fs::read_to_string("Dockerfile")?)?;
    ensure_eq!(image.entrypoint, vec!["dcr-server".to_string()]);
    ensure!(!image.workdir.is_empty(), "no WORKDIR");
    let scratch = tempfile::TempDir::new()?;
    let root = scratch.path().join("app");
    std::fs::create_dir_all(&root)?;
    for dir in &image.dirs {
        std::fs::create_dir_all(in_layout(&root, &image.workdir, dir))?;
    }
    for (source, dest) in &image.copies {
        let target = in_layout(&root, &image.workdir, dest);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(source, &target).with_context(|| format!("COPY {source} {dest}"))?;
    }

    // The image's config listens on every interface at the exposed port. The test publishes
    // another port (as `docker run -p` would map one), through the documented overrides.
    let config_path = image
        .env
        .get("DCR_CONFIG")
        .context("no DCR_CONFIG in the image")?;
    let config = dcr_server::config::Config::parse(
        &std::fs::read_to_string(root.join(config_path))?,
        Path::new(config_path),
    )?;
    let exposed = *image.exposed.first().context("no EXPOSE")?;
    ensure_eq!(
        config.server.listen,
        std::net::SocketAddr::from(([0, 0, 0, 0], exposed))
    );
    let port = free_port();
    let issuer = format!("https://localhost:{port}");
    let run = |args: &[String]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_dcr-server"));
        command
            .args(args)
            .current_dir(&root)
            .env_remove("DCR_DATABASE_URL")
            .envs(&image.env)
            .env("DCR_LISTEN", format!("0.0.0.0:{port}"))
            .env("DCR_ISSUER", &issuer);
        command
    };
    let mut server = run(&image.cmd)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let outcome = async {
        // The sandbox appears on the data volume once the server starts.
        let sandbox = root.join("data/sandbox");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let http = loop {
            if sandbox.join("ca.pem").is_file() {
                let http = https_client(&std::fs::read_to_string(sandbox.join("ca.pem"))?, None)?;
                if let Ok(r) = http.get(format!("{issuer}/health")).send().await
                    && r.status() == 200
                {
                    break http;
                }
            }
            if let Some(status) = server.try_wait()? {
                bail!("the server exited: {status}");
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "the server did not start"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        ensure!(
            root.join("data/dcr.db").is_file(),
            "no database on the data volume"
        );
        ensure!(
            listens_on_all_interfaces(port)?,
            "not listening on all interfaces"
        );

        // `docker cp dcr:/app/data/sandbox certs/sandbox`, then the README's examples.
        let host = scratch.path().join("host");
        let s = host.join("certs/sandbox");
        copy_dir(&sandbox, &s)?;
        let ca = std::fs::read_to_string(s.join("ca.pem"))?;
        let discovery: Value = https_client(&ca, None)?
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await?
            .json()
            .await?;
        ensure_eq!(discovery["issuer"], Value::String(issuer.clone()));
        ensure_eq!(
            http.get(format!("{issuer}/ready"))
                .send()
                .await?
                .status()
                .as_u16(),
            200
        );
        // `docker exec dcr dcr-server sandbox request`
        let out = run(&["sandbox".into(), "request".into()]).output()?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let jwt = String::from_utf8(out.stdout)?.trim().to_string();
        let cert = std::fs::read_to_string(s.join("tpp/transport.pem"))?;
        let key = std::fs::read_to_string(s.join("tpp/transport.key"))?;
        let tpp = https_client(&ca, Some((&cert, &key)))?;
        let answer = tpp
            .post(format!("{issuer}{}", dcr_server::REGISTER_PATH))
            .header("content-type", "application/jwt")
            .body(jwt)
            .send()
            .await?;
        ensure_eq!(answer.status().as_u16(), 201);
        let created: Value = answer.json().await?;
        let client_id = created["client_id"]
            .as_str()
            .context("client_id")?
            .to_string();
        let out = run(&[
            "sandbox".into(),
            "client-assertion".into(),
            "--client-id".into(),
            client_id.clone(),
        ])
        .output()?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let assertion = String::from_utf8(out.stdout)?.trim().to_string();
        let token: Value =
            token_request_with_assertion(&tpp, format!("{issuer}/token"), &assertion)
                .send()
                .await?
                .json()
                .await?;
        let access = token["access_token"].as_str().context("no token")?;
        let read = tpp
            .get(format!("{issuer}{}/{client_id}", dcr_server::REGISTER_PATH))
            .bearer_auth(access)
            .send()
            .await?;
        ensure_eq!(read.status().as_u16(), 200);
        anyhow::Ok(())
    }
    .await;
    let _ = server.kill();
    let output = server.wait_with_output()?;
    outcome.with_context(|| {
        format!(
            "server log:\n{}",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Every config the repository ships (`config/*.toml`) is a config the server accepts.
async fn the_shipped_configs_parse(_backend: Backend) -> Result<()> {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir("config")? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            dcr_server::config::Config::parse(&std::fs::read_to_string(&path)?, &path)
                .with_context(|| format!("{}", path.display()))?;
            seen.push(
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    seen.sort();
    ensure!(
        seen.contains(&"container.toml".to_string())
            && seen.contains(&"production.toml".to_string()),
        "config/: {seen:?}"
    );
    Ok(())
}

/// A config like the image's: the sandbox in `sandbox` (created by `serve` when missing), the
/// database beside it, the sandbox TPP's JWKS not reachable by any CA the server trusts for
/// fetching (no `jwks.extra_ca`): the server must answer its own JWKS without a request.
fn sandbox_config(root: &Path, port: u16) -> Result<PathBuf> {
    let s = root.join("sandbox");
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
issuer = "https://localhost:{port}"
shutdown_grace_secs = 1
[server.tls]
certificate = "{s}/server.pem"
private_key = "{s}/server.key"
client_ca = ["{s}/ca.pem"]
[database]
url = "sqlite://{db}"
[[open_banking.dcr.ssa_issuer]]
name = "OpenBanking Ltd"
jwks = "{s}/directory.jwks"
[sandbox]
enable = true
dir = "{s}"
"#,
        s = s.display(),
        db = root.join("dcr.db").display(),
    );
    let path = root.join("deployment.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// An https client that trusts the sandbox CA, presents the sandbox TPP's transport
/// certificate and resolves `host` to loopback (as `curl --resolve` does).
fn sandbox_tpp_client(sandbox: &Path, host: &str) -> Result<reqwest::Client> {
    let ca = std::fs::read_to_string(sandbox.join("ca.pem"))?;
    let cert = std::fs::read_to_string(sandbox.join("tpp/transport.pem"))?;
    let key = std::fs::read_to_string(sandbox.join("tpp/transport.key"))?;
    Ok(reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes())?])
        .identity(reqwest::Identity::from_pem(
            format!("{cert}\n{key}").as_bytes(),
        )?)
        .timeout(Duration::from_secs(10))
        .resolve(host, "127.0.0.1:0".parse()?)
        .build()?)
}

/// Registers the sandbox TPP at `base` (the URL the client reaches the server at) with `aud`
/// the issuer, and gets a `private_key_jwt` token: both read the TPP's JWKS.
async fn register_and_get_a_token(sandbox_dir: &Path, base: &str, issuer: &str) -> Result<()> {
    let sandbox = dcr_server::sandbox::Sandbox::load(sandbox_dir)?;
    let host = url::Url::parse(base)?
        .host_str()
        .context("no host")?
        .to_string();
    let tpp = sandbox_tpp_client(sandbox_dir, &host)?;
    let discovery: Value = tpp
        .get(format!("{base}/.well-known/openid-configuration"))
        .send()
        .await
        .context("discovery (the TLS handshake checks the server certificate's names)")?
        .json()
        .await?;
    ensure_eq!(discovery["issuer"], Value::String(issuer.to_string()));
    let jwt = sandbox.request(&dcr_server::sandbox::RequestOptions {
        aud: issuer.to_string(),
        ..Default::default()
    })?;
    let answer = tpp
        .post(format!("{base}{}", dcr_server::REGISTER_PATH))
        .header("content-type", "application/jwt")
        .body(jwt)
        .send()
        .await?;
    let status = answer.status().as_u16();
    let created: Value = answer.json().await?;
    ensure!(status == 201, "register: {status} {created}");
    let client_id = created["client_id"].as_str().context("client_id")?;
    let assertion = sandbox.client_assertion(client_id, &format!("{issuer}/token"), "PS256")?;
    let answer = token_request_with_assertion(&tpp, format!("{base}/token"), &assertion)
        .send()
        .await?;
    let status = answer.status().as_u16();
    let token: Value = answer.json().await?;
    ensure!(
        status == 200 && token["access_token"].is_string(),
        "token: {status} {token}"
    );
    Ok(())
}

/// `docker run -e DCR_ISSUER=https://dcr.example:8443`: the name resolves only outside, yet
/// the server certificate names it and the server reads its own sandbox TPP's JWKS (which
/// the SSA places at `https://dcr.example:8443/sandbox/tpp.jwks`) without a request.
async fn a_sandbox_made_for_an_unresolvable_issuer_registers_its_tpp(_b: Backend) -> Result<()> {
    let dir = tempfile::TempDir::new()?;
    let port = free_port();
    let config = sandbox_config(dir.path(), port)?;
    let issuer = format!("https://dcr.example:{port}");
    let log = dir.path().join("server.log");
    let _server = SpawnedServer::start(&config, port, &[("DCR_ISSUER", &issuer)], &log).await?;
    let sandbox_dir = dir.path().join("sandbox");
    let tpp: Value =
        serde_json::from_str(&std::fs::read_to_string(sandbox_dir.join("tpp/tpp.json"))?)?;
    ensure_eq!(
        tpp["software_jwks_endpoint"],
        Value::String(format!("{issuer}/sandbox/tpp.jwks"))
    );
    register_and_get_a_token(&sandbox_dir, &issuer, &issuer)
        .await
        .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
    // The same names as before stay usable.
    let https = https_client(&std::fs::read_to_string(sandbox_dir.join("ca.pem"))?, None)?;
    ensure_eq!(
        https
            .get(format!("https://localhost:{port}/health"))
            .send()
            .await?
            .status()
            .as_u16(),
        200
    );
    Ok(())
}

/// `docker run -e DCR_LISTEN=0.0.0.0:9443`: the issuer (and the SSA's JWKS URL) still name
/// port 8243, where nothing listens; the server reads its own JWKS without a request.
async fn the_sandbox_tpp_registers_with_dcr_listen_on_another_port(_b: Backend) -> Result<()> {
    let dir = tempfile::TempDir::new()?;
    let (issuer_port, listen_port) = (free_port(), free_port());
    let config = sandbox_config(dir.path(), issuer_port)?;
    let log = dir.path().join("server.log");
    let _server = SpawnedServer::start(
        &config,
        listen_port,
        &[("DCR_LISTEN", &format!("127.0.0.1:{listen_port}"))],
        &log,
    )
    .await?;
    register_and_get_a_token(
        &dir.path().join("sandbox"),
        &format!("https://localhost:{listen_port}"),
        &format!("https://localhost:{issuer_port}"),
    )
    .await
    .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())
}

/// Every file of a directory tree, by relative path, with its bytes.
fn snapshot(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let name = path.strip_prefix(dir)?.to_string_lossy().into_owned();
                files.insert(name, std::fs::read(&path)?);
            }
        }
    }
    Ok(files)
}

/// A sandbox made for `https://localhost:…`, then served with `DCR_ISSUER` naming another
/// host: the server certificate is issued again by the same CA for the old names and the new
/// host, logged, and nothing else of the sandbox changes. A second start keeps it.
async fn an_old_sandbox_gets_a_server_certificate_for_a_new_issuer(_b: Backend) -> Result<()> {
    let dir = tempfile::TempDir::new()?;
    let port = free_port();
    let sandbox_dir = dir.path().join("sandbox");
    dcr_server::sandbox::init(&sandbox_dir, &format!("https://localhost:{port}"))?;
    let before = snapshot(&sandbox_dir)?;
    let config = sandbox_config(dir.path(), port)?;
    let issuer = format!("https://dcr.example:{port}");
    let env = [("DCR_ISSUER", issuer.as_str())];
    let log = dir.path().join("first.log");
    let server = SpawnedServer::start(&config, port, &env, &log).await?;
    let first_log = std::fs::read_to_string(&log)?;
    ensure!(
        first_log.contains("did not name the issuer's host") && first_log.contains("dcr.example"),
        "no log line for the new server certificate:\n{first_log}"
    );
    let after = snapshot(&sandbox_dir)?;
    ensure_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &before {
        let changed = after.get(name) != Some(bytes);
        let expected = name == "server.pem" || name == "server.key";
        ensure!(changed == expected, "{name}: changed = {changed}");
    }
    // Both names answer, with the same CA; the TPP (its SSA names https://localhost:port)
    // registers through the new name.
    register_and_get_a_token(&sandbox_dir, &issuer, &issuer)
        .await
        .with_context(|| first_log.clone())?;
    let https = https_client(&std::fs::read_to_string(sandbox_dir.join("ca.pem"))?, None)?;
    let health = https
        .get(format!("https://localhost:{port}/health"))
        .send()
        .await?;
    ensure_eq!(health.status().as_u16(), 200);
    drop(server);

    let log = dir.path().join("second.log");
    let _server = SpawnedServer::start(&config, port, &env, &log).await?;
    let second_log = std::fs::read_to_string(&log)?;
    ensure!(
        !second_log.contains("did not name the issuer's host"),
        "renewed again:\n{second_log}"
    );
    ensure!(
        snapshot(&sandbox_dir)? == after,
        "the second start changed the sandbox"
    );
    Ok(())
}
