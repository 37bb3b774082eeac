//! Bad input: each gives its exit code and a one-line cause, and never a
//! half-written report.

mod common;

use common::*;

fn convert(dir: &std::path::Path, report: &std::path::Path, extra: &[&str]) -> Run {
    job(dir).arg("--trivy-report").arg(report).args(extra).run()
}

#[test]
fn not_json_is_exit_2_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.json");
    std::fs::write(&p, "{\"SchemaVersion\": 2,\n \"Results\": [ oops ]}").unwrap();
    let r = convert(dir.path(), &p, &[]);
    assert_eq!(r.code, 2);
    let last = r.stderr.trim_end().lines().last().unwrap();
    assert!(
        last.contains("not valid JSON") && last.contains("line 2"),
        "{last}"
    );
    assert!(
        !dir.path()
            .join("gl-container-scanning-report.json")
            .exists()
    );
}

#[test]
fn not_trivy_shape_is_exit_2_saying_where() {
    let dir = tempfile::tempdir().unwrap();
    for (body, expect) in [
        ("[]", "not a trivy JSON report"),
        ("{\"foo\": 1}", "SchemaVersion"),
        (
            "{\"SchemaVersion\": 2, \"Results\": {\"Target\": 1}}",
            "line 1",
        ),
        (
            "{\"SchemaVersion\": 2, \"Results\": [{\"Target\": \"x\", \"Class\": \"os-pkgs\", \"Vulnerabilities\": [{\"PkgName\": \"a\"}]}]}",
            "VulnerabilityID",
        ),
    ] {
        let p = dir.path().join("r.json");
        std::fs::write(&p, body).unwrap();
        let r = convert(dir.path(), &p, &[]);
        assert_eq!(r.code, 2, "{body}: {}", r.stderr);
        assert!(r.stderr.contains(expect), "{body}: {}", r.stderr);
        assert_eq!(
            r.stderr
                .trim_end()
                .lines()
                .filter(|l| l.contains("error:"))
                .count(),
            1
        );
    }
}

#[test]
fn missing_report_file_and_nothing_to_scan() {
    let dir = tempfile::tempdir().unwrap();
    let r = convert(dir.path(), &dir.path().join("nope.json"), &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("nope.json"));
    let r = job(dir.path()).run();
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("nothing to scan"), "{}", r.stderr);
}

#[test]
fn bad_flag_values_are_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--fail-on", "severe"][..],
        &["--severity-threshold", "x"],
        &["--timeout", "soon"],
        &["--ignore-unfixed=maybe"],
    ] {
        let r = convert(dir.path(), &sample(), args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
    }
}

#[test]
fn unwritable_output_is_exit_2_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let r = convert(
        dir.path(),
        &sample(),
        &["--sarif", "/nonexistent-dir/out.sarif"],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("/nonexistent-dir/out.sarif"),
        "{}",
        r.stderr
    );
    // Nothing else was written either.
    assert!(
        !dir.path()
            .join("gl-container-scanning-report.json")
            .exists()
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temp files left"
    );
}

#[test]
fn a_failed_run_keeps_the_previous_report_intact() {
    let dir = tempfile::tempdir().unwrap();
    let r = convert(dir.path(), &sample(), &["--fail-on", "none"]);
    assert_eq!(r.code, 0);
    let before = std::fs::read(dir.path().join("gl-container-scanning-report.json")).unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{ truncated").unwrap();
    let r = convert(dir.path(), &bad, &[]);
    assert_eq!(r.code, 2);
    assert_eq!(
        std::fs::read(dir.path().join("gl-container-scanning-report.json")).unwrap(),
        before
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn help_teaches_flags_env_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let r = job(dir.path())
        .arg("--help")
        .env("CS_REGISTRY_PASSWORD", "glpat-help-must-not-show-this")
        .run();
    assert_eq!(r.code, 0);
    assert!(
        !r.all().contains("glpat-help-must-not-show-this"),
        "--help shows the password"
    );
    for s in [
        "CS_SEVERITY_THRESHOLD",
        "CS_IGNORE_UNFIXED",
        "SCAN_FAIL_ON",
        "--trivy-report",
        "Exit codes",
        "vulnerability-allowlist.yml",
    ] {
        assert!(r.stdout.contains(s), "--help lacks {s}");
    }
}
