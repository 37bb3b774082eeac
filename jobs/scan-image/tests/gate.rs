//! The gate, the reporting floor and every way to suppress a finding, as a
//! user sees them: exit code, log, dotenv.

mod common;

use common::*;

fn scan_sample(dir: &std::path::Path, extra: &[&str]) -> Run {
    job(dir)
        .arg("--trivy-report")
        .arg(sample())
        .args(extra)
        .run()
}

#[test]
fn fail_on_levels_decide_the_exit_code() {
    // The sample holds CRITICAL, HIGH, MEDIUM, LOW and UNKNOWN findings.
    for (level, code, over) in [
        ("critical", 1, "3"),
        ("HIGH", 1, "4"),
        ("medium", 1, "6"),
        ("none", 0, "0"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let r = scan_sample(dir.path(), &["--fail-on", level]);
        assert_eq!(r.code, code, "--fail-on {level}: {}", r.stderr);
        let env = dotenv(&dir.path().join("scan-image.env"));
        assert_eq!(env["SCAN_OVER_GATE"], over, "{level}");
        assert_eq!(
            env["SCAN_GATE"],
            if code == 1 { "failed" } else { "passed" }
        );
        // Reports are written whether the gate passes or fails.
        assert!(
            dir.path()
                .join("gl-container-scanning-report.json")
                .exists()
        );
    }
}

#[test]
fn default_gate_is_critical_and_log_lists_findings_worst_first() {
    let dir = tempfile::tempdir().unwrap();
    let r = scan_sample(dir.path(), &[]);
    assert_eq!(r.code, 1);
    let last = r.stderr.lines().last().unwrap();
    assert!(
        last.starts_with("scan-image: error: 3 finding(s) at or above CRITICAL (CVE-2024-5535)"),
        "{last}"
    );
    let table_start = r.stderr.find("gate: FAILED").expect("gate line");
    let table = &r.stderr[table_start..];
    assert!(
        table.contains("3.0.14-1~deb12u1"),
        "fixed version shown: {table}"
    );
    // Only findings over the gate appear in the gate table.
    assert!(!table.contains("CVE-2011-3374"));
    // Counts per severity.
    assert!(r.stderr.contains("CRITICAL  3"), "{}", r.stderr);
}

#[test]
fn gate_env_values_are_case_insensitive_like_gitlab_documents() {
    let dir = tempfile::tempdir().unwrap();
    let r = job(dir.path())
        .arg("--trivy-report")
        .arg(sample())
        .env("SCAN_FAIL_ON", "High")
        .env("CS_SEVERITY_THRESHOLD", "HIGH")
        .env("CS_IGNORE_UNFIXED", "true")
        .run();
    assert_eq!(r.code, 1, "{}", r.stderr);
    let env = dotenv(&dir.path().join("scan-image.env"));
    // Unfixed findings (ncurses, apt, bash, node-openssl-shim) are suppressed;
    // reported: libssl3, openssl (CRITICAL) and ws (HIGH).
    assert_eq!(env["SCAN_SUPPRESSED"], "4");
    assert_eq!(env["SCAN_TOTAL"], "3");
    assert_eq!(env["SCAN_FAIL_ON"], "high");
    assert_eq!(env["SCAN_SEVERITY_THRESHOLD"], "high");
}

#[test]
fn severity_threshold_narrows_reports_but_not_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let r = scan_sample(
        dir.path(),
        &["--severity-threshold", "critical", "--fail-on", "medium"],
    );
    assert_eq!(r.code, 1, "a MEDIUM finding still trips --fail-on medium");
    let report = json(&dir.path().join("gl-container-scanning-report.json"));
    let sev: Vec<&str> = report["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["severity"].as_str().unwrap())
        .collect();
    assert_eq!(sev, ["Critical", "Critical", "Critical"]);
    assert!(r.stderr.contains("the gate counts all"), "{}", r.stderr);
}

#[test]
fn allowlist_general_and_per_image_entries_suppress_and_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let allow = "generalallowlist:\n  CVE-2023-50495: ncurses, not reachable\nimages:\n  registry.gitlab.com/acme/sensor-app:\n    CVE-2024-5535: patched in our fork\n  registry.gitlab.com/acme/other:\n    GHSA-3h5v-q93c-6h6q:\n";
    std::fs::write(dir.path().join("vulnerability-allowlist.yml"), allow).unwrap();
    // Picked up from the working directory like GitLab's analyzer does.
    let r = scan_sample(
        dir.path(),
        &[
            "registry.gitlab.com/acme/sensor-app:main",
            "--fail-on",
            "high",
        ],
    );
    // CVE-2024-5535 (3 findings) and ncurses are suppressed; ws (HIGH, other image's entry) remains.
    assert_eq!(r.code, 1, "{}", r.stderr);
    let env = dotenv(&dir.path().join("scan-image.env"));
    assert_eq!(env["SCAN_SUPPRESSED"], "4");
    assert_eq!(env["SCAN_CRITICAL"], "0");
    assert!(r.stderr.contains("4 suppressed finding(s)"));
    assert!(
        r.stderr
            .contains("allowlist images[registry.gitlab.com/acme/sensor-app]: patched in our fork"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("allowlist generalallowlist: ncurses, not reachable")
    );
    assert!(r.stderr.contains("GHSA-3h5v-q93c-6h6q"));
}

#[test]
fn trivyignore_text_and_yaml_with_expiry() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".trivyignore"),
        "# accepted\nCVE-2024-5535\nGHSA-3h5v-q93c-6h6q exp:2020-01-01\n",
    )
    .unwrap();
    let r = scan_sample(dir.path(), &["--fail-on", "high"]);
    // The expired ws entry no longer suppresses: the gate fails on it, and the log says why.
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("GHSA-3h5v-q93c-6h6q expired on 2020-01-01"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("GHSA-3h5v-q93c-6h6q in ws is reported again"),
        "{}",
        r.stderr
    );
    assert_eq!(
        dotenv(&dir.path().join("scan-image.env"))["SCAN_SUPPRESSED"],
        "3"
    );

    let yaml = "vulnerabilities:\n  - id: CVE-2024-5535\n    paths:\n      - \"app/**\"\n    statement: shim is not loaded\n  - id: GHSA-3h5v-q93c-6h6q\n    expired_at: 2099-12-31\n    statement: upgrade planned\n";
    std::fs::write(dir.path().join("ignore.yaml"), yaml).unwrap();
    let r = scan_sample(
        dir.path(),
        &["--ignore-file", "ignore.yaml", "--fail-on", "high"],
    );
    // Only the npm CVE-2024-5535 is under app/; the two OS ones remain CRITICAL.
    assert_eq!(r.code, 1);
    let env = dotenv(&dir.path().join("scan-image.env"));
    assert_eq!(env["SCAN_CRITICAL"], "2");
    assert_eq!(env["SCAN_HIGH"], "0");
    assert!(
        r.stderr.contains("ignore.yaml: shim is not loaded"),
        "{}",
        r.stderr
    );
}

#[test]
fn bad_suppression_files_are_usage_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.yml"), "generalallowlist: [\n").unwrap();
    let r = scan_sample(dir.path(), &["--allowlist", "bad.yml"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("bad.yml") && r.stderr.contains("line"),
        "{}",
        r.stderr
    );
    let r = scan_sample(dir.path(), &["--ignore-file", "missing.trivyignore"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("missing.trivyignore"));
}

#[test]
fn a_recorded_report_says_so_warns_when_it_is_of_another_image_and_names_the_image_in_dotenv() {
    let image = "registry.example.com/acme/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let dir = tempfile::tempdir().unwrap();
    let r = scan_sample(dir.path(), &["--fail-on", "none", image]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("using the recorded trivy report")
            && r.stderr.contains("trivy is not run"),
        "{}",
        r.stderr
    );
    // The sample is of registry.gitlab.com/acme/sensor-app@sha256:5f0e…, not of IMAGE.
    assert!(
        r.stderr.contains(
            "the recorded report is of registry.gitlab.com/acme/sensor-app@sha256:5f0e8b5a"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!("not of {image}")),
        "{}",
        r.stderr
    );
    let env = dotenv(&dir.path().join("scan-image.env"));
    assert_eq!(env["SCAN_IMAGE"], image);

    // The same digest: no warning. No IMAGE: no SCAN_IMAGE.
    let same = "registry.gitlab.com/acme/sensor-app@sha256:5f0e8b5a0b6e9b47e5c1f7b77e2f3c9e0a4d5b6c7d8e9f001122334455667788";
    let dir = tempfile::tempdir().unwrap();
    let r = scan_sample(dir.path(), &["--fail-on", "none", same]);
    assert!(
        !r.stderr.contains("the recorded report is of"),
        "{}",
        r.stderr
    );
    let dir = tempfile::tempdir().unwrap();
    let r = scan_sample(dir.path(), &["--fail-on", "none"]);
    assert_eq!(r.code, 0);
    assert!(!dotenv(&dir.path().join("scan-image.env")).contains_key("SCAN_IMAGE"));
}
