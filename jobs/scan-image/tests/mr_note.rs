//! Issue 12, item 5: the merge-request note on GitLab Free, against the
//! harness's GitLab API simulator (notes, job artifacts; real GitLab cannot
//! run here, hence `simulated` in the names). Findings come from the
//! recorded sample report, so no trivy or registry is involved.

mod common;

use common::*;
use harness::gitlab_sim::GitLabSim;

const TOKEN: &str = "glpat-scan-note-Tok3n-xyz";
const JOB: &str = "scan-image";
const REPORT: &str = "gl-container-scanning-report.json";

fn sim() -> (GitLabSim, u64) {
    let sim = GitLabSim::start(
        TOKEN,
        "acme/sensor-app",
        "main",
        &[("README.md".into(), "x".into())],
    );
    let iid = sim.open_merge_request("feature", "main");
    (sim, iid)
}

/// scan-image on a merge-request pipeline of `sim`, converting `report`.
fn note_job(dir: &std::path::Path, sim: &GitLabSim, iid: u64, report: &std::path::Path) -> Job {
    job(dir)
        .arg("--trivy-report")
        .arg(report)
        .args(["--mr-note", "--fail-on", "critical"])
        .env("SCAN_IMAGE_GITLAB_TOKEN", TOKEN)
        .env("CI_API_V4_URL", sim.api_url())
        .env("CI_PROJECT_ID", "42")
        .env("CI_MERGE_REQUEST_IID", iid.to_string())
        .env("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "main")
        .env("CI_JOB_NAME", JOB)
}

/// The GitLab report scan-image writes for `trivy` (a trivy JSON report).
fn gitlab_report_of(trivy: &serde_json::Value) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.json"), trivy.to_string()).unwrap();
    job(dir.path())
        .args(["--trivy-report", "t.json", "--fail-on", "none"])
        .run()
        .assert_success();
    std::fs::read(dir.path().join(REPORT)).unwrap()
}

/// main's last report: the sample without CVE-2024-35195 (requests), with
/// CVE-2000-0001 (oldpkg) that the branch fixed.
fn main_report() -> Vec<u8> {
    let mut r = json(&sample());
    r["Results"][1]["Vulnerabilities"] = serde_json::json!([]);
    r["Results"][0]["Vulnerabilities"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "VulnerabilityID": "CVE-2000-0001", "PkgName": "oldpkg",
            "InstalledVersion": "0.9", "FixedVersion": "1.0", "Severity": "HIGH"
        }));
    gitlab_report_of(&r)
}

#[test]
fn the_note_has_verdict_counts_new_fixed_and_worst_and_a_rerun_edits_it_simulated() {
    let (sim, iid) = sim();
    sim.put_artifact("main", JOB, REPORT, &main_report());
    let dir = tempfile::tempdir().unwrap();
    let r = note_job(dir.path(), &sim, iid, &sample()).run();
    // The gate still decides the exit code; the note was posted first.
    r.assert_failed(1, r"3 finding\(s\) at or above CRITICAL .*");
    r.assert_no_secret(&[TOKEN]);
    let notes = sim.notes(iid);
    assert_eq!(notes.len(), 1, "{notes:?}");
    let body = &notes[0].body;
    assert!(
        body.starts_with("<!-- secdeliv scan-image note: scan-image -->\n"),
        "{body}"
    );
    assert!(
        body.contains("gate **failed**: 3 finding(s) at or above CRITICAL"),
        "{body}"
    );
    // Counts by severity (sample: 3 critical, 1 high, 2 medium, 1 low, 1 unknown).
    assert!(body.contains("| 3 | 1 | 2 | 1 | 1 | 0 |"), "{body}");
    assert!(
        body.contains("**New** compared to `main` (job scan-image): 1"),
        "{body}"
    );
    assert!(
        body.contains("| Medium | CVE-2024-35195 | requests | 2.31.0 | 2.32.0 |"),
        "{body}"
    );
    assert!(
        body.contains("**Fixed** compared to `main` (job scan-image): 1"),
        "{body}"
    );
    assert!(
        body.contains("| High | CVE-2000-0001 | oldpkg | 0.9 | 1.0 |"),
        "{body}"
    );
    // Worst findings with their fixed versions.
    assert!(
        body.contains(
            "| Critical | CVE-2024-5535 | libssl3 | 3.0.11-1~deb12u2 | 3.0.14-1~deb12u1 |"
        ),
        "{body}"
    );
    assert!(!body.contains(TOKEN));
    assert!(
        r.stderr.contains(&format!("merge request !{iid}: note")),
        "{}",
        r.stderr
    );
    // The token went as PRIVATE-TOKEN, to the artifacts and notes endpoints.
    let seen = sim.received();
    assert!(
        seen.iter().any(|q| q
            .target()
            .contains("/jobs/artifacts/main/raw/gl-container-scanning-report.json?job=scan-image"))
    );
    assert!(
        seen.iter()
            .all(|q| q.header("private-token") == Some(TOKEN))
    );

    // A re-run (another commit on the branch) edits that note.
    let dir = tempfile::tempdir().unwrap();
    let r = note_job(dir.path(), &sim, iid, &sample())
        .args(["--fail-on", "none"])
        .run();
    r.assert_success();
    let notes = sim.notes(iid);
    assert_eq!(notes.len(), 1, "a re-run added a note: {notes:?}");
    assert_eq!(notes[0].edits, 1);
    assert!(notes[0].body.contains("gate off"), "{}", notes[0].body);
    harness::job::assert_no_secret_in_files(dir.path(), &[TOKEN]);
}

#[test]
fn a_merge_request_without_a_baseline_yet_still_gets_its_note_simulated() {
    let (sim, iid) = sim();
    let dir = tempfile::tempdir().unwrap();
    note_job(dir.path(), &sim, iid, &sample())
        .args(["--fail-on", "none"])
        .run()
        .assert_success();
    let body = &sim.notes(iid)[0].body;
    assert!(
        body.contains(
            "`main` has no report from job scan-image yet; every finding is listed below"
        ),
        "{body}"
    );
    assert!(!body.contains("**New**"), "{body}");
}

#[test]
fn a_baseline_file_replaces_the_target_branch_report_simulated() {
    let (sim, iid) = sim();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.json"), main_report()).unwrap();
    note_job(dir.path(), &sim, iid, &sample())
        .args(["--fail-on", "none", "--baseline", "base.json"])
        .run()
        .assert_success();
    let body = &sim.notes(iid)[0].body;
    assert!(
        body.contains("**New** compared to `base.json`: 1"),
        "{body}"
    );
    assert!(
        !sim.received()
            .iter()
            .any(|q| q.target().contains("/jobs/artifacts/")),
        "the artifacts API was asked although --baseline was given"
    );
}

#[test]
fn a_token_without_rights_is_exit_3_and_the_reports_are_still_written_simulated() {
    let (sim, iid) = sim();
    let guest = "glpat-guest-only-Tok3n";
    sim.add_read_only_token(guest);
    let dir = tempfile::tempdir().unwrap();
    let r = note_job(dir.path(), &sim, iid, &sample())
        .args(["--fail-on", "none", "--sarif", "out.sarif"])
        .env("SCAN_IMAGE_GITLAB_TOKEN", guest)
        .run();
    r.assert_failed(
        3,
        &format!(
            r"posting the note on merge request !{iid} \(SCAN_IMAGE_GITLAB_TOKEN needs the api scope and at least the Reporter role\): GitLab answered 403 to POST http://127\.0\.0\.1:\d+/api/v4/projects/42/merge_requests/{iid}/notes: 403 Forbidden"
        ),
    );
    r.assert_no_secret(&[guest]);
    assert!(sim.notes(iid).is_empty());
    let report = json(&dir.path().join(REPORT));
    assert_eq!(report["scan"]["status"], "success");
    assert_eq!(report["vulnerabilities"].as_array().unwrap().len(), 8);
    assert!(dir.path().join("out.sarif").is_file());
    assert_eq!(
        dotenv(&dir.path().join("scan-image.env"))["SCAN_TOTAL"],
        "8"
    );
}

#[test]
fn only_ci_job_token_or_no_token_is_exit_2_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let r = job(dir.path())
        .arg("--trivy-report")
        .arg(sample())
        .arg("--mr-note")
        .env("CI_JOB_TOKEN", "canary-ci-job-token-value")
        .env("CI_MERGE_REQUEST_IID", "1")
        .run();
    r.assert_failed(
        2,
        r"--mr-note \(SCAN_MR_NOTE\): CI_JOB_TOKEN cannot write merge-request notes; set SCAN_IMAGE_GITLAB_TOKEN to a project access token with the api scope and at least the Reporter role \(a masked, protected CI/CD variable\)",
    );
    r.assert_no_secret(&["canary-ci-job-token-value"]);
    assert!(!dir.path().join(REPORT).exists());
    job(dir.path())
        .arg("--trivy-report")
        .arg(sample())
        .env("SCAN_MR_NOTE", "true")
        .run()
        .assert_failed(
            2,
            r"--mr-note \(SCAN_MR_NOTE\) needs SCAN_IMAGE_GITLAB_TOKEN: .+",
        );
}

#[test]
fn a_baseline_that_is_not_a_report_is_exit_2_with_a_failure_report() {
    let dir = tempfile::tempdir().unwrap();
    // A trivy report is not a GitLab report.
    let r = job(dir.path())
        .arg("--trivy-report")
        .arg(sample())
        .arg("--mr-note")
        .arg("--baseline")
        .arg(sample())
        .env("SCAN_IMAGE_GITLAB_TOKEN", TOKEN)
        .env("CI_API_V4_URL", "http://127.0.0.1:9/api/v4")
        .env("CI_PROJECT_ID", "42")
        .env("CI_MERGE_REQUEST_IID", "1")
        .run();
    r.assert_failed(
        2,
        r"--baseline \(SCAN_BASELINE\): .*trivy-sample\.json is not a GitLab container-scanning report \(it needs `version` and `vulnerabilities`\): missing field `version` .*",
    );
    let report = json(&dir.path().join(REPORT));
    harness::schemas::assert_valid(harness::schemas::GITLAB_CONTAINER_SCANNING, &report);
    assert_eq!(report["scan"]["status"], "failure");
    assert_eq!(report["scan"]["messages"][0]["value"], r.cause());
}

/// Issue 12, item 5: `--fail-on-new` gates only on findings the baseline
/// did not have; without a baseline it gates on every finding.
#[test]
fn fail_on_new_gates_only_on_findings_the_baseline_lacked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.json"), main_report()).unwrap();
    let run = |level: &str, baseline: bool| {
        let mut j = job(dir.path()).arg("--trivy-report").arg(sample()).args([
            "--fail-on-new",
            "--fail-on",
            level,
        ]);
        if baseline {
            j = j.args(["--baseline", "base.json"]);
        }
        j.run()
    };
    // The three criticals were on main already: passed.
    let r = run("critical", true);
    r.assert_success();
    assert!(
        r.stderr.contains("gate (--fail-on-new): passed, no finding at or above CRITICAL that `base.json` did not have (3 it had)"),
        "{}",
        r.stderr
    );
    let env = dotenv(&dir.path().join("scan-image.env"));
    assert_eq!(env["SCAN_GATE"], "passed");
    assert_eq!(env["SCAN_NEW_OVER_GATE"], "0");
    assert_eq!(env["SCAN_OVER_GATE"], "3");
    // At medium, the branch's new requests finding fails it.
    run("medium", true).assert_failed(
        1,
        r"1 new finding\(s\) at or above MEDIUM that `base\.json` did not have \(CVE-2024-35195\); .*",
    );
    assert_eq!(
        dotenv(&dir.path().join("scan-image.env"))["SCAN_GATE"],
        "failed"
    );
    // No baseline: every finding counts, and the log says why.
    let r = run("critical", false);
    r.assert_failed(1, r"3 finding\(s\) at or above CRITICAL .*");
    assert!(
        r.stderr.contains("--fail-on-new: no baseline"),
        "{}",
        r.stderr
    );
}

#[test]
fn fail_on_new_with_the_target_branch_report_and_the_note_says_so_simulated() {
    let (sim, iid) = sim();
    sim.put_artifact("main", JOB, REPORT, &main_report());
    let dir = tempfile::tempdir().unwrap();
    note_job(dir.path(), &sim, iid, &sample())
        .arg("--fail-on-new")
        .run()
        .assert_success();
    let body = &sim.notes(iid)[0].body;
    assert!(
        body.contains("gate **passed** (no new finding at or above CRITICAL; `--fail-on-new`)"),
        "{body}"
    );
}
