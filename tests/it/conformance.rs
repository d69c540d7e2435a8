//! Runs the curl conformance suite (`tests/conformance/run.sh`) against the real binary, for
//! each DCR version, on SQLite and PostgreSQL, when bash, curl, openssl and jq are installed.

use anyhow::{Result, ensure};

use crate::case;
use crate::support::{BOTH, Backend, Case, Skip, TestDb};

pub fn cases() -> Vec<Case> {
    vec![case!(curl_conformance_suite, BOTH)]
}

async fn curl_conformance_suite(backend: Backend) -> Result<()> {
    let missing: Vec<&str> = ["bash", "curl", "openssl", "jq"]
        .into_iter()
        .filter(|tool| {
            !std::process::Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if !missing.is_empty() {
        return Err(Skip(format!(
            "the conformance suite needs {}",
            missing.join(", ")
        ))
        .into());
    }
    let db = TestDb::new(backend).await?;
    for version in dcr_server::domain::SpecVersion::ALL {
        let mut command = std::process::Command::new("bash");
        command
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/conformance/run.sh"
            ))
            .args(["--version", version.as_str()])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("DCR_SERVER_BIN", env!("CARGO_BIN_EXE_dcr-server"))
            .env_remove("DCR_DATABASE_URL");
        if backend == Backend::Postgres {
            command.args(["--database-url", &db.url]);
        }
        let out = tokio::task::spawn_blocking(move || command.output()).await??;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().unwrap_or_default().to_string();
        ensure!(
            out.status.success() && last.ends_with(" 0 failed"),
            "the conformance suite failed on v{version}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
