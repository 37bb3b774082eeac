//! The interface as users see it: every flag reads a variable, `--help` and
//! the GitLab report as snapshots (a changed interface shows up in review),
//! and each documented exit code with its whole one-line cause (exit 3 and 4
//! come from trivy: `trivy_wrapper.rs`).

mod common;

use common::*;

#[test]
fn every_flag_reads_an_environment_variable() {
    let cmd = kit::cli::command::<scan_image::cli::Args>();
    assert_eq!(kit::cli::flags_without_env(&cmd), Vec::<String>::new());
}

#[test]
fn help_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let r = job(dir.path()).arg("--help").run();
    r.assert_success();
    insta::assert_snapshot!("help", r.stdout);
}

#[test]
fn gitlab_report_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    job(dir.path())
        .arg("--trivy-report")
        .arg(sample())
        .args(["--fail-on", "none", "--dockerfile", "Dockerfile"])
        .run()
        .assert_success();
    let mut report = json(&dir.path().join("gl-container-scanning-report.json"));
    // The end time is the time of the run (the start is the report's CreatedAt).
    report["scan"]["end_time"] = "[end_time]".into();
    // scan-image's own version moves with every release.
    report["scan"]["analyzer"]["version"] = "[version]".into();
    insta::assert_snapshot!(
        "gitlab_report_sample",
        serde_json::to_string_pretty(&report).unwrap()
    );
}

const IMAGE: &str = "registry.example.com/acme/app@sha256:5f0e8b5a0b6e9b47e5c1f7b77e2f3c9e0a4d5b6c7d8e9f001122334455667788";

#[test]
fn exit_0_gate_passed() {
    let dir = tempfile::tempdir().unwrap();
    let r = job(dir.path())
        .arg("--trivy-report")
        .arg(sample())
        .args(["--fail-on", "none"])
        .run();
    r.assert_success();
    assert!(!r.stderr.contains("scan-image: error:"), "{}", r.stderr);
}

#[test]
fn exit_1_findings_over_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    job(dir.path())
        .arg("--trivy-report")
        .arg(sample())
        .args(["--fail-on", "high"])
        .run()
        .assert_failed(
            1,
            r"4 finding\(s\) at or above HIGH \(CVE-2024-5535, GHSA-3h5v-q93c-6h6q\); fix them, or suppress with --allowlist/--ignore-file, or raise --fail-on",
        );
}

#[test]
fn exit_2_usage_errors_each_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("bad.trivyignore"), "CVE-1 exp:someday\n").unwrap();
    std::fs::write(
        d.join("bad-glob.yaml"),
        "vulnerabilities:\n  - id: CVE-1\n    paths: [\"lib/[a.jar\"]\n",
    )
    .unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &[],
            r"nothing to scan: give IMAGE \(or CS_IMAGE\), or --trivy-report FILE",
        ),
        (
            &["--fail-on", "severe", IMAGE],
            r#"--fail-on \(SCAN_FAIL_ON\): "severe" is not a gate level: use none, unknown, low, medium, high or critical"#,
        ),
        (
            &["--severity-threshold", "x", IMAGE],
            r#"--severity-threshold \(CS_SEVERITY_THRESHOLD\): "x" is not a severity: use unknown, low, medium, high or critical"#,
        ),
        (
            &["--timeout", "soon", IMAGE],
            r"--timeout \(SCAN_TIMEOUT\): .+",
        ),
        (
            &["--platform", "linux", IMAGE],
            r#"--platform \(TRIVY_PLATFORM\): "linux" is not OS/ARCH\[/VARIANT\], e\.g\. linux/arm64"#,
        ),
        (
            &["--platforms", "linux/arm64,linux", IMAGE],
            r#"--platforms \(SCAN_PLATFORMS\): "linux" is not OS/ARCH\[/VARIANT\], e\.g\. linux/arm64 \(or all\)"#,
        ),
        (
            &[
                "--platforms",
                "linux/arm64",
                "--platform",
                "linux/amd64",
                IMAGE,
            ],
            r"--platforms \(SCAN_PLATFORMS\) and --platform \(TRIVY_PLATFORM\) both given: use --platforms, it takes one platform too",
        ),
        (
            &["--ignore-file", "bad.trivyignore", IMAGE],
            r#"ignore file bad\.trivyignore: line 1: "someday" is not a date \(YYYY-MM-DD\)"#,
        ),
        (
            &["--ignore-file", "bad-glob.yaml", IMAGE],
            r"ignore file bad-glob\.yaml: entry CVE-1: paths: .*unclosed character class.*",
        ),
        (
            &["--sarif", "/nonexistent-dir/out.sarif", IMAGE],
            r"cannot write /nonexistent-dir/out\.sarif: .+",
        ),
        (
            &["--trivy-report", "nope.json"],
            r"cannot read trivy report nope\.json: No such file or directory \(os error 2\)",
        ),
        (
            &["Registry.Example.com/UPPER/case"],
            r#"invalid image reference "Registry\.Example\.com/UPPER/case": .+"#,
        ),
        (
            &["--registry-user", "u", IMAGE],
            r"--registry-user \(CS_REGISTRY_USER\) is set but --registry-password \(CS_REGISTRY_PASSWORD\) is not",
        ),
    ];
    for (args, cause) in cases {
        // No trivy on PATH: each must stop before trivy would run.
        let r = job(d).env("PATH", d).args(*args).run();
        r.assert_failed(2, cause);
    }
}

#[test]
fn a_malformed_recorded_report_is_exit_2_not_3() {
    // A malformed recorded report is exit 2 (input); what trivy writes is
    // exit 3 (see trivy_wrapper.rs for trivy failing and writing garbage).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.json"), "[]").unwrap();
    job(dir.path())
        .args(["--trivy-report", "r.json"])
        .run()
        .assert_failed(2, r"r\.json is not a trivy JSON report: .+");
}
