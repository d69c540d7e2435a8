//! The container, without a Docker engine: the binary run exactly as the image's ENTRYPOINT
//! and CMD run it, with the ENV and WORKDIR the Dockerfile sets (read from the Dockerfile, so
//! that the two cannot drift), in a directory laid out as the image's /app. It must listen on
//! all interfaces and answer the README's curl examples with the sandbox copied out of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::support::{Backend, Case, SQLITE, free_port, https_client};
use crate::{case, ensure_eq};

pub fn cases() -> Vec<Case> {
    vec![case!(the_image_serves_the_sandbox_with_no_mounts, SQLITE)]
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
        let token: Value = tpp
            .post(format!("{issuer}/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    dcr_server::oauth::client_auth::CLIENT_ASSERTION_TYPE,
                ),
                ("client_assertion", &assertion),
            ])
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
