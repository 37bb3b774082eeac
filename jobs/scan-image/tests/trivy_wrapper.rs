//! The trivy process wrapper, driven against a stand-in `trivy` on PATH
//! (trivy itself and its vulnerability database cannot run here). The
//! stand-in records its argv and environment and can succeed, fail, hang or
//! print garbage.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;

const STANDIN: &str = r#"#!/bin/sh
printf '%s\n' "$*" >> "$STANDIN_LOG.argv"
env | grep '^TRIVY_' | sort >> "$STANDIN_LOG.env"
out=""; prev=""
for a in "$@"; do [ "$prev" = "--output" ] && out="$a"; prev="$a"; done
case "$1" in
  image)
    case "$STANDIN_MODE" in
      ok) cp "$STANDIN_REPORT" "$out" ;;
      fail) echo "2026-11-26T10:00:00Z INFO pulling image" >&2
            echo "FATAL: unable to pull: UNAUTHORIZED for user $TRIVY_USERNAME with password $TRIVY_PASSWORD" >&2
            exit 1 ;;
      hang) exec sleep 30 ;;
      garbage) echo "Segmentation fault (core dumped) ... not json" > "$out" ;;
    esac ;;
  convert)
    for last in "$@"; do :; done
    [ -s "$last" ] || { echo "convert: no input $last" >&2; exit 1; }
    printf '{"bomFormat":"CycloneDX","specVersion":"1.5","metadata":{"component":{"name":"from-standin"}}}' > "$out" ;;
esac
"#;

struct Standin {
    dir: tempfile::TempDir,
}

impl Standin {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let trivy = bin.join("trivy");
        std::fs::write(&trivy, STANDIN).unwrap();
        std::fs::set_permissions(&trivy, std::fs::Permissions::from_mode(0o755)).unwrap();
        Standin { dir }
    }
    fn work(&self) -> &Path {
        self.dir.path()
    }
    fn log(&self) -> PathBuf {
        self.dir.path().join("standin")
    }
    fn argv(&self) -> Vec<String> {
        std::fs::read_to_string(self.log().with_extension("argv"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
    fn env(&self) -> String {
        std::fs::read_to_string(self.log().with_extension("env")).unwrap_or_default()
    }
    fn cmd(&self, mode: &str) -> std::process::Command {
        let mut c = cmd(self.work());
        let path = format!(
            "{}:{}",
            self.work().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.env("PATH", path)
            .env("STANDIN_MODE", mode)
            .env("STANDIN_LOG", self.log())
            .env("STANDIN_REPORT", sample());
        c
    }
}

const IMAGE: &str = "registry.example.com:5050/acme/sensor-app@sha256:5f0e8b5a0b6e9b47e5c1f7b77e2f3c9e0a4d5b6c7d8e9f001122334455667788";
const PASSWORD: &str = "glpat-s3cr3t-Tok3n-value";

#[test]
fn standin_trivy_runs_once_with_credentials_in_env_not_argv() {
    let s = Standin::new();
    let mut c = s.cmd("ok");
    c.arg(IMAGE)
        .args([
            "--fail-on",
            "none",
            "--platform",
            "linux/arm64",
            "--sbom",
            "sbom.cdx.json",
        ])
        .env("CS_REGISTRY_USER", "gitlab-ci-token")
        .env("CS_REGISTRY_PASSWORD", PASSWORD);
    let r = run(c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let argv = s.argv();
    let scans: Vec<_> = argv.iter().filter(|a| a.starts_with("image ")).collect();
    assert_eq!(scans.len(), 1, "trivy image runs once: {argv:?}");
    let scan = scans[0];
    assert!(
        scan.contains("--format json")
            && scan.contains("--quiet")
            && scan.contains("--platform linux/arm64")
    );
    assert!(
        scan.contains("--list-all-pkgs"),
        "SBOM needs every package: {scan}"
    );
    assert!(scan.ends_with(IMAGE));
    assert!(!scan.contains(PASSWORD) && !scan.contains("gitlab-ci-token"));
    // The SBOM comes from `trivy convert` of the same JSON, not a second scan.
    let converts: Vec<_> = argv.iter().filter(|a| a.starts_with("convert ")).collect();
    assert_eq!(converts.len(), 1);
    assert!(converts[0].contains("--format cyclonedx"));
    let scanned_json = scan
        .split_whitespace()
        .skip_while(|w| *w != "--output")
        .nth(1)
        .unwrap();
    assert!(
        converts[0].ends_with(scanned_json),
        "{} vs {scanned_json}",
        converts[0]
    );
    let sbom = json(&s.work().join("sbom.cdx.json"));
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    let env = s.env();
    assert!(env.contains("TRIVY_USERNAME=gitlab-ci-token"));
    assert!(env.contains(&format!("TRIVY_PASSWORD={PASSWORD}")));
    assert!(!r.all_output().contains(PASSWORD));
    let report = json(&s.work().join("gl-container-scanning-report.json"));
    assert_eq!(report["vulnerabilities"][0]["location"]["image"], IMAGE);
}

#[test]
fn ci_registry_credentials_are_used_for_the_ci_registry_only() {
    let s = Standin::new();
    let mut c = s.cmd("ok");
    c.arg(IMAGE)
        .args(["--fail-on", "none"])
        .env("CI_REGISTRY", "registry.example.com:5050")
        .env("CI_REGISTRY_USER", "gitlab-ci-token")
        .env("CI_REGISTRY_PASSWORD", PASSWORD);
    let r = run(c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(s.env().contains("TRIVY_USERNAME=gitlab-ci-token"));
    assert!(r.stderr.contains("CI_REGISTRY_USER/CI_REGISTRY_PASSWORD"));

    let s = Standin::new();
    let mut c = s.cmd("ok");
    c.arg("docker.io/library/alpine:3.20")
        .args(["--fail-on", "none"])
        .env("CI_REGISTRY", "registry.example.com:5050")
        .env("CI_REGISTRY_USER", "u")
        .env("CI_REGISTRY_PASSWORD", PASSWORD);
    assert_eq!(run(c).code, 0);
    assert!(!s.env().contains("TRIVY_PASSWORD"));
}

#[test]
fn trivy_failure_is_exit_3_with_redacted_stderr_tail_and_a_failure_report() {
    let s = Standin::new();
    let mut c = s.cmd("fail");
    c.arg(IMAGE)
        .env("CS_REGISTRY_USER", "gitlab-ci-token")
        .env("CS_REGISTRY_PASSWORD", PASSWORD);
    let r = run(c);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let last = r.stderr.trim_end().lines().last().unwrap();
    assert!(
        last.contains("trivy image failed with status 1") && last.contains("UNAUTHORIZED"),
        "{last}"
    );
    assert!(
        !r.all_output().contains(PASSWORD),
        "password leaked: {}",
        r.stderr
    );
    // GitLab still gets a report, saying the scan failed.
    let report = json(&s.work().join("gl-container-scanning-report.json"));
    harness::schemas::assert_valid(harness::schemas::GITLAB_CONTAINER_SCANNING, &report);
    assert_eq!(report["scan"]["status"], "failure");
    assert!(!report.to_string().contains(PASSWORD));
}

#[test]
fn trivy_hanging_is_exit_4_at_the_timeout() {
    let s = Standin::new();
    let mut c = s.cmd("hang");
    c.arg(IMAGE).args(["--timeout", "1s"]);
    let t = std::time::Instant::now();
    let r = run(c);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        r.stderr.contains("did not finish within 1.0s"),
        "{}",
        r.stderr
    );
}

#[test]
fn trivy_garbage_output_is_exit_3() {
    let s = Standin::new();
    let mut c = s.cmd("garbage");
    c.arg(IMAGE);
    let r = run(c);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("trivy wrote a report that is not valid JSON"),
        "{}",
        r.stderr
    );
}

#[test]
fn trivy_missing_is_exit_2_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cmd(dir.path());
    c.env("PATH", dir.path()).arg(IMAGE);
    let r = run(c);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("trivy not found") && r.stderr.contains("--trivy-report"),
        "{}",
        r.stderr
    );
}

#[test]
fn sbom_without_trivy_warns_and_still_converts() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cmd(dir.path());
    c.env("PATH", dir.path())
        .arg("--trivy-report")
        .arg(sample())
        .args(["--sbom", "sbom.json", "--fail-on", "none"]);
    let r = run(c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("--sbom needs trivy"), "{}", r.stderr);
    assert!(!dir.path().join("sbom.json").exists());
}

#[test]
fn bad_image_reference_is_exit_2() {
    let s = Standin::new();
    let mut c = s.cmd("ok");
    c.arg("Registry.Example.com/UPPER/case");
    let r = run(c);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("invalid image reference"));
    assert!(s.argv().is_empty(), "trivy must not run on a bad reference");
}
