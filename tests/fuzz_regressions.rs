//! Replays the kept fuzz inputs: every file under `tests/fuzz_regressions/<target>/` goes
//! through the same code as the cargo-fuzz target of that name (`fuzz/src/checks.rs`, shared
//! with `fuzz/`), and none may panic. The files are the seed corpus of the fuzz targets plus
//! the minimised inputs that found bugs. See `fuzz/README.md`.

#[path = "../fuzz/src/checks.rs"]
mod checks;

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Found inputs whose fix is not in `src/` yet, as `target/file`: each must still panic (so
/// that the list cannot go stale); once the fix lands, delete its entries here.
const KNOWN_OPEN: &[&str] = &[];

fn replay(target: &str, run: fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no inputs for {target}");
    let mut failed = Vec::new();
    let mut fixed = Vec::new();
    for file in &files {
        let name = format!(
            "{target}/{}",
            file.file_name().unwrap_or_default().to_string_lossy()
        );
        let data = std::fs::read(file).expect("a readable input");
        let panicked = panic::catch_unwind(AssertUnwindSafe(|| run(&data))).is_err();
        match (panicked, KNOWN_OPEN.contains(&name.as_str())) {
            (true, false) => failed.push(name),
            (false, true) => fixed.push(name),
            _ => {}
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs panic: {failed:#?}",
        failed.len(),
        files.len()
    );
    assert!(
        fixed.is_empty(),
        "fixed now, remove from KNOWN_OPEN: {fixed:#?}"
    );
}

#[test]
fn jws_claims() {
    replay("jws_claims", checks::jws_claims);
}

#[test]
fn cert_der() {
    replay("cert_der", checks::cert_der);
}

#[test]
fn subject_dn() {
    replay("subject_dn", checks::subject_dn);
}

#[test]
fn config() {
    replay("config", checks::config);
}
