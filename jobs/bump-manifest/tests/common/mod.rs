//! Helpers for the integration tests: run the real binary, fixture paths.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const TOKEN: &str = "glpat-Sup3rS3cretTok3n";
pub const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
pub const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/config-repo")
}

/// The binary with a clean environment (no CI variables leaking in).
pub fn cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bump-manifest"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("BUMP_RETRY_DELAY_MS", "50");
    c
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
    /// No secret in anything the job printed.
    pub fn assert_no_secret(&self) {
        assert!(!self.all().contains(TOKEN), "token leaked:\n{}", self.all());
        assert!(
            !self.all().contains("Z2xwYXQt"),
            "base64 token leaked:\n{}",
            self.all()
        );
    }
}

pub fn run(c: &mut Command) -> Run {
    let o: Output = c.output().expect("run bump-manifest");
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Every file of a tree, relative path → bytes.
pub fn read_tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    fn walk(root: &Path, d: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_name() == ".git" {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}
