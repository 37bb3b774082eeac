//! Running the real scan-image binary in a scratch directory, through the
//! harness's one job runner.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};

pub use harness::job::{Job, Run};

pub const SAMPLE: &str = "examples/reports/trivy-sample.json";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn sample() -> PathBuf {
    root().join(SAMPLE)
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The binary with a clean environment (no CI or CS_* variables leak in),
/// its working directory in `dir`.
pub fn job(dir: &Path) -> Job {
    Job::new(env!("CARGO_BIN_EXE_scan-image"), dir)
}

pub fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

pub fn dotenv(path: &Path) -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}
