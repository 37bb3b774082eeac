//! Every report scan-image writes, checked against the published schemas and
//! against what a user reads in GitLab.

mod common;

use std::collections::HashSet;

use common::*;
use harness::schemas;

/// Converts `report` with every output enabled; returns the scratch dir.
fn convert(report: &std::path::Path, extra: &[&str]) -> (tempfile::TempDir, Run) {
    let dir = tempfile::tempdir().unwrap();
    let r = job(dir.path())
        .arg("--trivy-report")
        .arg(report)
        .args([
            "--sarif",
            "out.sarif",
            "--codequality",
            "cq.json",
            "--junit",
            "junit.xml",
            "--fail-on",
            "none",
        ])
        .args(extra)
        .run();
    (dir, r)
}

#[test]
fn gitlab_report_is_valid_and_complete() {
    let (dir, r) = convert(&sample(), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = json(&dir.path().join("gl-container-scanning-report.json"));
    schemas::assert_valid(schemas::GITLAB_CONTAINER_SCANNING, &report);

    let vulns = report["vulnerabilities"].as_array().unwrap();
    // 8 findings: CVE-2024-5535 in libssl3, openssl and an npm package counts three times.
    assert_eq!(vulns.len(), 8);
    let same_cve: Vec<_> = vulns
        .iter()
        .filter(|v| v["identifiers"][0]["value"] == "CVE-2024-5535")
        .collect();
    assert_eq!(same_cve.len(), 3);
    let ids: HashSet<&str> = vulns.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), vulns.len(), "finding ids must be unique");
    for v in vulns {
        let sev = v["severity"].as_str().unwrap();
        assert!(
            ["Critical", "High", "Medium", "Low", "Unknown"].contains(&sev),
            "{sev}"
        );
        assert!(!v["location"]["image"].as_str().unwrap().is_empty());
        assert_eq!(v["location"]["operating_system"], "debian 12.5");
        for l in v["links"].as_array().into_iter().flatten() {
            let u = l["url"].as_str().unwrap();
            assert!(
                u.starts_with("http://") || u.starts_with("https://") || u.starts_with("ftp://"),
                "{u}"
            );
        }
        for c in v["cvss_vectors"].as_array().into_iter().flatten() {
            let vec = c["vector"].as_str().unwrap();
            assert!(
                !vec.starts_with("CVSS:4"),
                "v4 vectors are not in GitLab's schema: {vec}"
            );
        }
    }
    let scan = &report["scan"];
    assert_eq!(scan["status"], "success");
    assert_eq!(scan["scanner"]["version"], "0.56.2");
    // Times without zone, and start (trivy's CreatedAt) before end.
    let start = scan["start_time"].as_str().unwrap();
    let end = scan["end_time"].as_str().unwrap();
    assert_eq!(start, "2026-11-20T09:14:27");
    assert!(!end.ends_with('Z') && end.len() == 19 && end > start);
    // A finding with no fix has no solution; one with a fix says what to upgrade to.
    let ws = vulns
        .iter()
        .find(|v| v["identifiers"][0]["value"] == "GHSA-3h5v-q93c-6h6q")
        .unwrap();
    assert_eq!(ws["identifiers"][0]["type"], "ghsa");
    assert!(ws["solution"].as_str().unwrap().contains("8.17.1"));
    let apt = vulns
        .iter()
        .find(|v| v["identifiers"][0]["value"] == "CVE-2011-3374")
        .unwrap();
    assert!(apt.get("solution").is_none());
    // Both the v3 and the v2 vector of the apt finding are kept.
    assert_eq!(apt["cvss_vectors"].as_array().unwrap().len(), 2);
}

#[test]
fn finding_ids_are_stable_across_runs_and_image_tags() {
    let ids = |image: &str| -> Vec<String> {
        let (dir, r) = convert(&sample(), &[image]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let report = json(&dir.path().join("gl-container-scanning-report.json"));
        report["vulnerabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_string())
            .collect()
    };
    let a = ids("registry.gitlab.com/acme/sensor-app:commit-aaaa");
    let b = ids("registry.gitlab.com/acme/sensor-app:commit-bbbb");
    assert_eq!(a, b);
}

#[test]
fn sarif_is_valid_with_one_rule_per_id_and_stable_fingerprints() {
    let (dir, r) = convert(&sample(), &["--dockerfile", "docker/Dockerfile"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sarif = json(&dir.path().join("out.sarif"));
    schemas::assert_valid(schemas::SARIF, &sarif);
    let run = &sarif["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let results = run["results"].as_array().unwrap();
    let rule_ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let unique: HashSet<&&str> = rule_ids.iter().collect();
    assert_eq!(
        unique.len(),
        rule_ids.len(),
        "one rule per vulnerability id"
    );
    assert_eq!(rules.len(), 6);
    assert_eq!(results.len(), 8);
    for res in results {
        let idx = res["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(
            rules[idx]["id"], res["ruleId"],
            "ruleIndex points at the rule"
        );
        let level = res["level"].as_str().unwrap();
        assert!(["error", "warning", "note"].contains(&level));
        assert_eq!(
            res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "docker/Dockerfile"
        );
        assert!(
            res["partialFingerprints"]
                .as_object()
                .unwrap()
                .values()
                .all(|v| v.as_str().unwrap().len() == 32)
        );
    }
    let crit = results
        .iter()
        .find(|r| r["ruleId"] == "CVE-2024-5535")
        .unwrap();
    assert_eq!(crit["level"], "error");
    let low = results
        .iter()
        .find(|r| r["ruleId"] == "CVE-2011-3374")
        .unwrap();
    assert_eq!(low["level"], "note");
    let crit_rule = rules.iter().find(|r| r["id"] == "CVE-2024-5535").unwrap();
    assert_eq!(crit_rule["properties"]["security-severity"], "9.1");

    // Same fingerprints on a second run.
    let (dir2, _) = convert(&sample(), &["--dockerfile", "docker/Dockerfile"]);
    let again = json(&dir2.path().join("out.sarif"));
    let fp = |s: &serde_json::Value| -> Vec<serde_json::Value> {
        s["runs"][0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["partialFingerprints"].clone())
            .collect()
    };
    assert_eq!(fp(&sarif), fp(&again));
}

#[test]
fn sarif_without_dockerfile_points_at_image_or_package_file() {
    let (dir, r) = convert(&sample(), &["registry.example.com:5000/acme/app:1.0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sarif = json(&dir.path().join("out.sarif"));
    schemas::assert_valid(schemas::SARIF, &sarif);
    let uris: HashSet<String> = sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(uris.contains("app/package-lock.json"), "{uris:?}");
    assert!(uris.contains("acme/app%3A1.0"), "{uris:?}");
}

#[test]
fn codequality_report_has_the_fields_gitlab_reads() {
    let dockerfile =
        "FROM rust:1 AS build\nRUN cargo build\n\nFROM debian:12-slim\nCOPY --from=build /x /x\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    let r = job(dir.path())
        .arg("--trivy-report")
        .arg(sample())
        .args([
            "--codequality",
            "cq.json",
            "--dockerfile",
            "Dockerfile",
            "--fail-on",
            "none",
        ])
        .run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let cq = json(&dir.path().join("cq.json"));
    let issues = cq.as_array().unwrap();
    assert_eq!(issues.len(), 8);
    let fps: HashSet<&str> = issues
        .iter()
        .map(|i| i["fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(fps.len(), 8, "fingerprints unique");
    for i in issues {
        assert!(!i["description"].as_str().unwrap().is_empty());
        assert!(!i["check_name"].as_str().unwrap().is_empty());
        assert!(
            ["info", "minor", "major", "critical", "blocker"]
                .contains(&i["severity"].as_str().unwrap())
        );
        assert_eq!(i["location"]["path"], "Dockerfile");
        // The final FROM (line 4) builds the shipped image.
        assert_eq!(i["location"]["lines"]["begin"], 4);
    }
    let sev_of =
        |id: &str| issues.iter().find(|i| i["check_name"] == id).unwrap()["severity"].clone();
    assert_eq!(sev_of("CVE-2024-5535"), "critical");
    assert_eq!(sev_of("GHSA-3h5v-q93c-6h6q"), "major");
}

#[test]
fn junit_has_a_failing_case_per_finding_and_a_passing_case_for_the_scan() {
    let (dir, r) = convert(
        &sample(),
        &["--allowlist", fixture("allowlist.yml").to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let xml = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let failures = cases
        .iter()
        .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
        .count();
    let skipped = cases
        .iter()
        .filter(|c| c.children().any(|n| n.has_tag_name("skipped")))
        .count();
    let passed = cases.len() - failures - skipped;
    // The allowlist suppresses CVE-2011-3374 (apt): 7 reported, 1 skipped, 1 scan case.
    assert_eq!((failures, skipped, passed), (7, 1, 1));
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .unwrap();
    assert_eq!(suite.attribute("tests"), Some("9"));
    assert_eq!(suite.attribute("failures"), Some("7"));
    assert_eq!(suite.attribute("skipped"), Some("1"));
}

#[test]
fn clean_and_null_results_are_valid_clean_reports() {
    for name in ["clean.json", "null-results.json"] {
        let (dir, r) = convert(&fixture(name), &["--fail-on", "low"]);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        let report = json(&dir.path().join("gl-container-scanning-report.json"));
        schemas::assert_valid(schemas::GITLAB_CONTAINER_SCANNING, &report);
        assert_eq!(report["vulnerabilities"].as_array().unwrap().len(), 0);
        assert_eq!(report["vulnerabilities"].as_array().unwrap().len(), 0);
        let sarif = json(&dir.path().join("out.sarif"));
        schemas::assert_valid(schemas::SARIF, &sarif);
        assert_eq!(json(&dir.path().join("cq.json")), serde_json::json!([]));
        let xml = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        assert_eq!(
            doc.descendants()
                .filter(|n| n.has_tag_name("testcase"))
                .count(),
            1,
            "{name}: clean scan shows one passing case"
        );
        assert_eq!(
            dotenv(&dir.path().join("scan-image.env"))["SCAN_GATE"],
            "passed"
        );
    }
}

#[test]
fn missing_optional_fields_and_unusual_key_order_are_handled() {
    let (dir, r) = convert(&fixture("minimal-fields.json"), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = json(&dir.path().join("gl-container-scanning-report.json"));
    schemas::assert_valid(schemas::GITLAB_CONTAINER_SCANNING, &report);
    let v = report["vulnerabilities"].as_array().unwrap();
    assert_eq!(v.len(), 2);
    // No OS detected → operating_system still filled; no artifact name → "unknown" image.
    assert_eq!(v[0]["location"]["operating_system"], "Unknown");
    assert_eq!(v[0]["location"]["image"], "unknown");
    // No title → the id names the finding.
    assert_eq!(v[0]["name"], "CVE-2020-0001");
    assert_eq!(
        v[1]["location"]["dependency"]["package"]["name"],
        "golang.org/x/net"
    );
    schemas::assert_valid(schemas::SARIF, &json(&dir.path().join("out.sarif")));
}

#[test]
fn duplicate_entries_are_merged_not_reported_twice() {
    let (dir, r) = convert(&fixture("duplicates.json"), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = json(&dir.path().join("gl-container-scanning-report.json"));
    schemas::assert_valid(schemas::GITLAB_CONTAINER_SCANNING, &report);
    let v = report["vulnerabilities"].as_array().unwrap();
    // Two identical entries merge; the same id at another version stays separate.
    assert_eq!(v.len(), 2);
    let ids: HashSet<&str> = v.iter().map(|x| x["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    assert!(r.stderr.contains("1 duplicate"), "{}", r.stderr);
}
