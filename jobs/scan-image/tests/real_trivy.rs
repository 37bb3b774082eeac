//! scan-image with the real trivy (v0.74.0, built by
//! `scripts/install-peers.sh` into `.tools/bin/`) on real images, with a
//! real vulnerability DB served from a real registry, as an air-gapped user
//! runs it: the fixture DB (`tests/peers/trivy-db/advisories.json`, built
//! with trivy-db's own Go package by `trivy-db-fixture`) is pushed to a
//! local `docker-registry` as trivy's OCI artifact and named with
//! `--db-repository`; no Java DB is mirrored (`--skip-java-db-update`).
//!
//! The images, built here as OCI layouts and pushed to that registry:
//! - debian-base: the dpkg status of an unpatched Debian 12
//!   (`examples/debian-base/rootfs`, written from the real packages' control
//!   data): zlib1g 1:1.2.13.dfsg-1, libssl3 and openssl 3.0.20-1~deb12u2;
//! - sensor-app: the example app's static binary built with `cargo
//!   auditable` (`scripts/build-sensor-app.sh`), which embeds its crate
//!   list: smallvec 1.6.0.
//!
//! The findings each must produce are written out below ([`DEBIAN`],
//! [`RUST`]), from the fixture advisories: real ids, real packages at their
//! real vulnerable versions.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use harness::registry::{self, ImageSpec, TestRegistry};

/// One expected finding: id, package, installed version, fixed version,
/// GitLab severity.
type Expected = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// What the fixture DB predicts for debian-base: both zlib CVEs fixed in
/// bookworm-security's +deb12u1, and CVE-2026-63072 on both binary packages
/// of the openssl source. Not CVE-2026-7383: it is fixed in exactly the
/// installed 3.0.20-1~deb12u2.
const DEBIAN: [Expected; 4] = [
    (
        "CVE-2026-27171",
        "zlib1g",
        "1:1.2.13.dfsg-1",
        "1:1.2.13.dfsg-1+deb12u1",
        "High",
    ),
    (
        "CVE-2026-85091",
        "zlib1g",
        "1:1.2.13.dfsg-1",
        "1:1.2.13.dfsg-1+deb12u1",
        "High",
    ),
    (
        "CVE-2026-63072",
        "libssl3",
        "3.0.20-1~deb12u2",
        "3.0.22-1~deb12u1",
        "Medium",
    ),
    (
        "CVE-2026-63072",
        "openssl",
        "3.0.20-1~deb12u2",
        "3.0.22-1~deb12u1",
        "Medium",
    ),
];

/// What it predicts for the auditable sensor-app binary: GHSA-43w2-9j62-hq99
/// (keyed by its CVE alias, as trivy-db keys GHSA advisories), fixed in
/// 0.6.14 and 1.6.1.
const RUST: [Expected; 1] = [(
    "CVE-2021-25900",
    "smallvec",
    "1.6.0",
    "0.6.14, 1.6.1",
    "Critical",
)];

// ---------------------------------------------------------------------------
// Peers

fn tool(name: &str) -> PathBuf {
    let p = root().join(".tools/bin").join(name);
    assert!(
        p.is_file(),
        "{} is missing: run scripts/install-peers.sh (it builds trivy v0.74.0 and trivy-db-fixture into .tools/bin)",
        p.display()
    );
    p
}

fn trivy() -> PathBuf {
    tool("trivy")
}

/// trivy's GitLab template, from trivy's module source in the Go module
/// cache (where `go install …/trivy@v0.74.0` left it).
fn gitlab_template() -> PathBuf {
    let out = Command::new("go")
        .args(["env", "GOMODCACHE"])
        .output()
        .expect("go must be installed (scripts/install-peers.sh builds trivy with it)");
    let cache = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let p = Path::new(&cache).join("github.com/aquasecurity/trivy@v0.74.0/contrib/gitlab.tpl");
    assert!(
        p.is_file(),
        "trivy's GitLab template {} is missing: run scripts/install-peers.sh (building trivy v0.74.0 puts its module source in the Go module cache)",
        p.display()
    );
    p
}

/// The registry with the fixture DB at `mirror/trivy-db:2`.
struct Mirror {
    registry: TestRegistry,
}

impl Mirror {
    fn start() -> Mirror {
        let registry = TestRegistry::start();
        let out = tempfile::tempdir().unwrap();
        let dest = format!("{}/mirror/trivy-db:2", registry.host());
        let run = Command::new(tool("trivy-db-fixture"))
            .arg("-advisories")
            .arg(root().join("tests/peers/trivy-db/advisories.json"))
            .arg("-out")
            .arg(out.path())
            .args(["-push", &dest, "-insecure"])
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "trivy-db-fixture: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        Mirror { registry }
    }

    fn host(&self) -> String {
        self.registry.host()
    }

    fn db(&self) -> String {
        format!("{}/mirror/trivy-db:2", self.host())
    }
}

// ---------------------------------------------------------------------------
// Images: one-layer OCI layouts of real files

/// A ustar header for a regular file or a directory.
fn tar_header(name: &str, size: usize, mode: u32, dir: bool) -> [u8; 512] {
    let mut h = [0u8; 512];
    assert!(name.len() < 100, "{name}: too long for ustar");
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(format!("{mode:07o}\0").as_bytes());
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = if dir { b'5' } else { b'0' };
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// An uncompressed tar of `files` (path in the image, content, mode), with
/// their parent directories.
fn tar(files: &[(String, Vec<u8>, u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut dirs: Vec<String> = Vec::new();
    for (path, data, mode) in files {
        let parts: Vec<&str> = path.split('/').collect();
        for i in 1..parts.len() {
            let d = format!("{}/", parts[..i].join("/"));
            if !dirs.contains(&d) {
                out.extend_from_slice(&tar_header(&d, 0, 0o755, true));
                dirs.push(d);
            }
        }
        out.extend_from_slice(&tar_header(path, data.len(), *mode, false));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Pushes a linux/amd64 image of `files` to `registry` as `repo:latest`;
/// returns `HOST/REPO@DIGEST`.
fn push_files(registry: &TestRegistry, repo: &str, files: &[(String, Vec<u8>, u32)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(
        dir.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let put = |bytes: &[u8]| {
        let d = registry::sha256_digest(bytes);
        std::fs::write(blobs.join(&d[7..]), bytes).unwrap();
        (d, bytes.len())
    };
    let layer = tar(files);
    let (ld, ls) = put(&layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/sensor-app"]},
        "rootfs": {"type": "layers", "diff_ids": [ld]},
    });
    let (cd, cs) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ls}],
    });
    let (md, ms) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
        "annotations": {"org.opencontainers.image.ref.name": "latest"},
    }]});
    std::fs::write(
        dir.path().join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    registry::push_layout(
        dir.path(),
        "latest",
        &format!("{}/{repo}:latest", registry.host()),
        None,
    );
    format!("{}/{repo}@{md}", registry.host())
}

/// The files of `examples/debian-base/rootfs`.
fn debian_files() -> Vec<(String, Vec<u8>, u32)> {
    let rootfs = root().join("examples/debian-base/rootfs");
    [
        "etc/debian_version",
        "etc/os-release",
        "var/lib/dpkg/status",
    ]
    .iter()
    .map(|p| {
        let data = std::fs::read(rootfs.join(p))
            .unwrap_or_else(|e| panic!("{}: {e}", rootfs.join(p).display()));
        (p.to_string(), data, 0o644)
    })
    .collect()
}

/// The auditable sensor-app binary for linux/amd64, built once per test
/// binary by `scripts/build-sensor-app.sh` (a no-op when up to date).
fn sensor_app_files() -> Vec<(String, Vec<u8>, u32)> {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let bin = BUILT.get_or_init(|| {
        let out = Command::new("bash")
            .arg(root().join("scripts/build-sensor-app.sh"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/build-sensor-app.sh failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = std::env::var_os("SENSOR_APP_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("target/sensor-app"));
        dir.join("x86_64-unknown-linux-musl/release/sensor-app")
    });
    vec![("sensor-app".into(), std::fs::read(bin).unwrap(), 0o755)]
}

// ---------------------------------------------------------------------------
// Running scan-image and reading its report

/// scan-image on `image` with the mirror's DB, in `dir` (trivy's cache in
/// `dir/cache`).
fn scan(dir: &Path, mirror: &Mirror, db: &str, image: &str, extra: &[&str]) -> Run {
    job(dir)
        .env("SCAN_TRIVY", trivy())
        .env("INSECURE_REGISTRY", mirror.host())
        .args([
            image,
            "--db-repository",
            db,
            "--skip-java-db-update",
            "--cache-dir",
        ])
        .arg(dir.join("cache"))
        .args(extra)
        .run()
}

/// Every finding of a GitLab report as (id, package, version, fixed version,
/// severity), sorted.
fn findings(report: &serde_json::Value) -> Vec<(String, String, String, String, String)> {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let mut out: Vec<_> = report["vulnerabilities"]
        .as_array()
        .expect("vulnerabilities")
        .iter()
        .map(|v| {
            (
                s(&v["identifiers"][0]["value"]),
                s(&v["location"]["dependency"]["package"]["name"]),
                s(&v["location"]["dependency"]["version"]),
                s(&v["details"]["fixed_version"]["value"]),
                s(&v["severity"]),
            )
        })
        .collect();
    out.sort();
    out
}

fn expected(e: &[Expected]) -> Vec<(String, String, String, String, String)> {
    let mut out: Vec<_> = e
        .iter()
        .map(|(a, b, c, d, s)| {
            (
                a.to_string(),
                b.to_string(),
                c.to_string(),
                d.to_string(),
                s.to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn gitlab_report(dir: &Path) -> serde_json::Value {
    json(&dir.join("gl-container-scanning-report.json"))
}

/// The report says the scan failed, and why (`cause` must be in it).
fn assert_failure_report(dir: &Path, cause: &str) {
    eprintln!(
        "failure report of {cause}: {:?}",
        gitlab_report(dir)["scan"]["messages"]
    );
    let report = gitlab_report(dir);
    assert_eq!(report["scan"]["status"], "failure", "{report:#}");
    let message = report["scan"]["messages"][0]["value"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains(cause),
        "the failure report does not say {cause:?}: {report:#}"
    );
    harness::schemas::assert_valid(
        "gitlab-container-scanning-report-format-15.2.1.json",
        &report,
    );
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn debian_root_real_trivy_finds_exactly_what_the_mirrored_db_predicts_and_gates_on_high() {
    let mirror = Mirror::start();
    let image = push_files(&mirror.registry, "acme/debian-base", &debian_files());
    let dir = tempfile::tempdir().unwrap();

    let run = scan(
        dir.path(),
        &mirror,
        &mirror.db(),
        &image,
        &["--fail-on", "high"],
    );
    run.assert_failed(
        1,
        r"2 finding\(s\) at or above (?i:high) \(CVE-2026-(27171|85091), CVE-2026-(27171|85091)\);.*",
    );
    let report = gitlab_report(dir.path());
    assert_eq!(report["scan"]["status"], "success", "{report:#}");
    assert_eq!(
        report["scan"]["scanner"]["version"], "0.74.0",
        "the real trivy ran"
    );
    assert_eq!(findings(&report), expected(&DEBIAN), "{report:#}");
    harness::schemas::assert_valid(
        "gitlab-container-scanning-report-format-15.2.1.json",
        &report,
    );
    let os = report["vulnerabilities"][0]["location"]["operating_system"]
        .as_str()
        .unwrap_or_default();
    assert!(os.starts_with("debian 12"), "operating system: {os}");

    // The same scan gated on critical passes: nothing critical in this root.
    let dir2 = tempfile::tempdir().unwrap();
    let run = scan(
        dir2.path(),
        &mirror,
        &mirror.db(),
        &image,
        &["--fail-on", "critical"],
    );
    run.assert_success();
    assert_eq!(findings(&gitlab_report(dir2.path())), expected(&DEBIAN));
}

#[test]
fn auditable_rust_binary_real_trivy_finds_the_smallvec_advisory_and_gates_on_critical() {
    let mirror = Mirror::start();
    let image = push_files(&mirror.registry, "acme/sensor-app", &sensor_app_files());
    let dir = tempfile::tempdir().unwrap();
    let run = scan(
        dir.path(),
        &mirror,
        &mirror.db(),
        &image,
        &["--fail-on", "critical"],
    );
    run.assert_failed(
        1,
        r"1 finding\(s\) at or above (?i:critical) \(CVE-2021-25900\);.*",
    );
    let report = gitlab_report(dir.path());
    assert_eq!(findings(&report), expected(&RUST), "{report:#}");
    let ids: Vec<&str> = report["vulnerabilities"][0]["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["value"].as_str())
        .collect();
    assert!(
        ids.contains(&"CVE-2021-25900"),
        "identifiers of the smallvec finding: {ids:?}"
    );
    harness::schemas::assert_valid(
        "gitlab-container-scanning-report-format-15.2.1.json",
        &report,
    );
}

#[test]
fn side_by_side_with_trivys_gitlab_template_valid_unique_ids_and_no_finding_lost() {
    let template = gitlab_template();
    let mirror = Mirror::start();
    let mut files = debian_files();
    files.extend(sensor_app_files());
    let image = push_files(&mirror.registry, "acme/app-on-debian", &files);
    let dir = tempfile::tempdir().unwrap();
    let run = scan(
        dir.path(),
        &mirror,
        &mirror.db(),
        &image,
        &["--fail-on", "none"],
    );
    run.assert_success();
    let ours = gitlab_report(dir.path());

    // trivy alone, on the same image and DB (its cache from the scan above).
    let tpl_out = dir.path().join("gl-template.json");
    let out = Command::new(trivy())
        .current_dir(dir.path())
        .env_clear()
        .env("HOME", dir.path())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(["image", "--quiet", "--insecure", "--skip-db-update"])
        .args(["--skip-java-db-update", "--scanners", "vuln", "--cache-dir"])
        .arg(dir.path().join("cache"))
        .args(["--format", "template", "--template"])
        .arg(format!("@{}", template.display()))
        .arg("--output")
        .arg(&tpl_out)
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "trivy --format template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = json(&tpl_out);

    // Both see the same findings: every one of the template's is in ours.
    let key = |v: &serde_json::Value| {
        (
            v["identifiers"][0]["value"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            v["location"]["dependency"]["package"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            v["location"]["dependency"]["version"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            v["severity"].as_str().unwrap_or("").to_string(),
        )
    };
    let mut theirs_keys: Vec<_> = theirs["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(key)
        .collect();
    let mut ours_keys: Vec<_> = ours["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(key)
        .collect();
    theirs_keys.sort();
    ours_keys.sort();
    assert_eq!(
        ours_keys, theirs_keys,
        "scan-image lost or invented a finding compared to trivy's template"
    );
    let mut all = DEBIAN.to_vec();
    all.extend(RUST);
    assert_eq!(findings(&ours), expected(&all));

    // The template repeats an id (one CVE, two packages); ours keeps them unique.
    let ids = |r: &serde_json::Value| -> Vec<String> {
        r["vulnerabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let (t, o) = (ids(&theirs), ids(&ours));
    let dup = |v: &[String]| {
        let mut s = v.to_vec();
        s.sort();
        s.dedup();
        v.len() - s.len()
    };
    assert!(
        dup(&t) >= 1,
        "the template was expected to repeat CVE-2026-63072: {t:?}"
    );
    assert_eq!(dup(&o), 0, "scan-image repeats an id: {o:?}");

    // Ours validates against the 15.x schema (the template's output is
    // printed with its own count, for the record).
    harness::schemas::assert_valid("gitlab-container-scanning-report-format-15.2.1.json", &ours);
    let violations = harness::schemas::violations(
        "gitlab-container-scanning-report-format-15.2.1.json",
        &theirs,
    );
    eprintln!(
        "trivy's template: {} findings, {} repeated ids, {} schema violations (first: {:?}); scan-image: {} findings, unique ids, valid",
        t.len(),
        dup(&t),
        violations.len(),
        violations.first(),
        o.len()
    );
}

#[test]
fn a_db_repository_that_does_not_exist_is_exit_3_naming_it_with_a_failure_report() {
    let mirror = Mirror::start();
    let image = push_files(&mirror.registry, "acme/debian-base", &debian_files());
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("{}/nobody/trivy-db:2", mirror.host());
    let run = scan(dir.path(), &mirror, &missing, &image, &[]);
    run.assert_failed(3, &format!(".*{}.*", regex::escape(&missing)));
    assert_failure_report(dir.path(), &missing);
}

#[test]
fn a_db_repository_holding_an_image_is_exit_3_naming_it_with_a_failure_report() {
    let mirror = Mirror::start();
    let image = push_files(&mirror.registry, "acme/debian-base", &debian_files());
    // An ordinary image (one plain tar layer) where the DB should be.
    registry::push_image(
        &mirror.registry,
        "other/trivy-db",
        "2",
        &ImageSpec {
            platforms: vec!["linux/amd64".into()],
            layer_sizes: vec![1024],
            attestation: false,
            index: false,
            seed: 7,
        },
        None,
    );
    let other = format!("{}/other/trivy-db:2", mirror.host());
    let dir = tempfile::tempdir().unwrap();
    let run = scan(dir.path(), &mirror, &other, &image, &[]);
    run.assert_failed(3, &format!(".*{}.*", regex::escape(&other)));
    assert_failure_report(dir.path(), &other);
}

#[test]
fn a_corrupted_db_artifact_is_exit_3_with_a_failure_report() {
    let mirror = Mirror::start();
    let image = push_files(&mirror.registry, "acme/debian-base", &debian_files());
    let broken = format!("{}/broken/trivy-db:2", mirror.host());
    let out = Command::new(tool("trivy-db-fixture"))
        .args(["-corrupt", "-push", &broken, "-insecure"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let run = scan(dir.path(), &mirror, &broken, &image, &[]);
    run.assert_failed(3, &format!(".*{}.*", regex::escape(&broken)));
    assert_failure_report(dir.path(), &broken);
}

#[test]
fn an_image_that_does_not_exist_is_exit_3_naming_it_with_a_failure_report() {
    let mirror = Mirror::start();
    let dir = tempfile::tempdir().unwrap();
    let image = format!("{}/acme/nothing@sha256:{}", mirror.host(), "0".repeat(64));
    let run = scan(dir.path(), &mirror, &mirror.db(), &image, &[]);
    run.assert_failed(3, &format!(".*{}.*", regex::escape(&image)));
    assert_failure_report(dir.path(), &image);
}
