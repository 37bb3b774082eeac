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

#[allow(unused_imports)]
pub use harness::job::{Run, assert_no_secret_in, assert_no_secret_in_files};

pub const BIN: &str = env!("CARGO_BIN_EXE_bump-manifest");

/// `git-remote-secdeliv` next to the job binary, where bump-manifest looks
/// first (scripts/test.sh builds every binary of the workspace first; here
/// it is built when missing).
pub fn helper() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let p = Path::new(BIN).with_file_name("git-remote-secdeliv");
    BUILT.call_once(|| {
        if !p.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let ok = Command::new(cargo)
                .args([
                    "build",
                    "-q",
                    "-p",
                    "git-remote",
                    "--bin",
                    "git-remote-secdeliv",
                ])
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "cannot build git-remote-secdeliv: run `cargo build -p git-remote`"
            );
        }
    });
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p git-remote`",
        p.display()
    );
    p
}

/// The binary with a clean environment (no CI variables leaking in), as
/// `harness::job::Job` starts it.
pub fn cmd() -> Command {
    helper();
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("BUMP_RETRY_DELAY_MS", "50")
        .stdin(std::process::Stdio::null());
    c
}

/// Runs a prepared command; the result is judged with the harness's checks.
pub fn run(c: &mut Command) -> Run {
    let o: Output = c.output().expect("run bump-manifest");
    Run {
        job: "bump-manifest".into(),
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

/// A copy of git's exec path (symlinks) in which the libcurl helpers
/// (`git-remote-http(s)`, `-ftp(s)`) are scripts that record their use in
/// `curl-helper-used` and fail: git run with `GIT_EXEC_PATH` set to it
/// cannot reach an http(s) remote on its own.
pub fn make_no_curl_exec_path(dir: &Path) {
    let real = String::from_utf8(
        Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("git --exec-path")
            .stdout,
    )
    .unwrap();
    let real = PathBuf::from(real.trim());
    let curl = [
        "git-remote-http",
        "git-remote-https",
        "git-remote-ftp",
        "git-remote-ftps",
    ];
    for e in std::fs::read_dir(&real).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if curl.iter().any(|c| name == *c) {
            continue;
        }
        std::os::unix::fs::symlink(e.path(), dir.join(&name)).unwrap();
    }
    let mark = dir.join("curl-helper-used");
    for c in curl {
        let p = dir.join(c);
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\necho \"$0 $*\" >> '{}'\necho 'fatal: {c} must not run' >&2\nexit 1\n",
                mark.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// One no-curl exec path shared by a test binary, under Cargo's directory
/// for integration-test scratch files (built once, then renamed into place).
pub fn shared_no_curl_exec_path() -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = root.join("no-curl-exec-path");
    if !dir.join("git-remote-https").exists() {
        let _ = std::fs::create_dir_all(root);
        let tmp = tempfile::tempdir_in(root).unwrap();
        make_no_curl_exec_path(tmp.path());
        let built = tmp.keep();
        if std::fs::rename(&built, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&built);
        }
    }
    dir
}

/// Forwards one request to 127.0.0.1:`port` (a real server behind a test proxy).
pub fn forward(port: u16, req: &harness::git_server::Request) -> harness::git_server::Response {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let target = if req.query.is_empty() {
        req.path.clone()
    } else {
        format!("{}?{}", req.path, req.query)
    };
    let mut head = format!(
        "{} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n",
        req.method,
        req.body.len()
    );
    for (k, v) in &req.headers {
        if ![
            "host",
            "content-length",
            "connection",
            "transfer-encoding",
            "expect",
        ]
        .contains(&k.as_str())
        {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&req.body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut resp = harness::git_server::Response::new(status, raw[end + 4..].to_vec());
    for l in lines {
        if let Some((k, v)) = l.split_once(':')
            && !["content-length", "connection"].contains(&k.trim().to_ascii_lowercase().as_str())
        {
            resp = resp.with_header(k.trim(), v.trim());
        }
    }
    resp
}
