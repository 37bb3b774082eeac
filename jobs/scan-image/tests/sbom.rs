//! Issue 12, item 4: the SBOM is `trivy convert --format cyclonedx` of the
//! very JSON report the findings came from, run with the real trivy
//! v0.74.0 (scripts/install-peers.sh), and valid CycloneDX 1.6 as GitLab's
//! `artifacts:reports:cyclonedx` reads it.

mod common;

use common::*;

fn real_trivy() -> std::path::PathBuf {
    let t = root().join(".tools/bin/trivy");
    assert!(
        t.is_file(),
        "{} is missing: run scripts/install-peers.sh (builds trivy v0.74.0)",
        t.display()
    );
    t
}

/// The sample report with the package lists `--list-all-pkgs` adds.
fn report_with_packages(dir: &std::path::Path) -> std::path::PathBuf {
    let mut r = json(&sample());
    r["Results"][0]["Packages"] = serde_json::json!([
        {"ID": "openssl@3.0.11-1~deb12u2", "Name": "openssl", "Version": "3.0.11-1~deb12u2",
         "Identifier": {"PURL": "pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=arm64&distro=debian-12.5"},
         "Arch": "arm64", "SrcName": "openssl", "SrcVersion": "3.0.11-1~deb12u2"},
        {"ID": "zlib1g@1:1.2.13.dfsg-1", "Name": "zlib1g", "Version": "1:1.2.13.dfsg-1",
         "Identifier": {"PURL": "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=arm64&distro=debian-12.5"},
         "Arch": "arm64", "SrcName": "zlib", "SrcVersion": "1:1.2.13.dfsg-1"}
    ]);
    let p = dir.join("trivy.json");
    std::fs::write(&p, r.to_string()).unwrap();
    p
}

#[test]
fn the_sbom_from_real_trivy_convert_is_valid_cyclonedx_1_6_and_named_in_the_dotenv() {
    let dir = tempfile::tempdir().unwrap();
    let report = report_with_packages(dir.path());
    let r = job(dir.path())
        .env("SCAN_TRIVY", real_trivy())
        .arg("--trivy-report")
        .arg(&report)
        .args(["--fail-on", "none", "--sbom", "gl-sbom.cdx.json"])
        .run();
    r.assert_success();
    assert!(
        r.stderr.contains("trivy's 1.7 written as 1.6 for GitLab"),
        "{}",
        r.stderr
    );
    let sbom = json(&dir.path().join("gl-sbom.cdx.json"));
    harness::schemas::assert_valid(harness::schemas::CYCLONEDX_1_6, &sbom);
    assert_eq!(sbom["specVersion"], "1.6");
    let purls: Vec<&str> = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .collect();
    for p in [
        "pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=arm64&distro=debian-12.5",
        "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=arm64&distro=debian-12.5",
    ] {
        assert!(purls.contains(&p), "{p} not in {purls:?}");
    }
    let env = dotenv(&dir.path().join("scan-image.env"));
    assert_eq!(env["SCAN_SBOM_FILES"], "gl-sbom.cdx.json");
}

/// What the relabelling is for, and a control for the schema check: trivy
/// v0.74 writes specVersion 1.7 (GitLab reads 1.4 to 1.6), and the 1.6
/// schema does catch a component that is not CycloneDX.
#[test]
fn trivy_writes_cyclonedx_1_7_and_the_1_6_schema_check_catches_a_bad_component() {
    let dir = tempfile::tempdir().unwrap();
    let report = report_with_packages(dir.path());
    let out = dir.path().join("raw.cdx.json");
    let st = std::process::Command::new(real_trivy())
        .current_dir(dir.path())
        .args(["convert", "--quiet", "--format", "cyclonedx", "--output"])
        .arg(&out)
        .arg(&report)
        .status()
        .unwrap();
    assert!(st.success());
    let raw = json(&out);
    assert_eq!(raw["specVersion"], "1.7");
    let mut bad = raw.clone();
    bad["components"][0]["type"] = "firmware-ish".into();
    let v = harness::schemas::violations(harness::schemas::CYCLONEDX_1_6, &bad);
    assert!(v.iter().any(|e| e.contains("/components/0/type")), "{v:?}");
}
