//! The whole flow end to end: gitlab-ci-local runs
//! `examples/sensor-app/.gitlab-ci.yml` (one include of `gitops-iot.yml`)
//! with the real job binaries, buildah, two real `docker-registry`
//! instances, a real git server and the Argo CD simulator (Argo CD cannot
//! run here). See `e2e::flow` for the set-up and what differs from a user's
//! pipeline.

use std::path::Path;

use e2e::flow::{APP, APP_PATH, Flow, PIPELINE_JOBS, dotenv_value};
use sha2_free::sha256_hex;

/// The digest of bytes, via `sha256sum` (no hashing crate needed here).
mod sha2_free {
    use std::io::Write;
    use std::process::{Command, Stdio};

    pub fn sha256_hex(bytes: &[u8]) -> String {
        let mut child = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sha256sum");
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8(out.stdout).unwrap()[..64].to_string()
    }
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn the_sensor_app_pipeline_ships_the_built_digest_signed_to_the_cluster_argocd_simulator() {
    let work = tempfile::tempdir().unwrap();
    let flow = Flow::start(work.path()).unwrap_or_else(|e| panic!("{e}"));
    let run = flow.run_pipeline(false);
    assert!(run.ok, "the pipeline failed:\n{}", run.output);
    for job in PIPELINE_JOBS {
        assert!(
            run.output.contains(&format!(" PASS  {job}")),
            "{job} did not pass:\n{}",
            run.output
        );
    }
    let timings: Vec<String> = run
        .jobs
        .iter()
        .map(|j| format!("{} {:.2}s", j.job, j.seconds))
        .collect();
    eprintln!(
        "wall time by job: {} | pipeline {:.2}s",
        timings.join(", "),
        run.wall.as_secs_f64()
    );
    let r = flow.results();

    // build-image pushed a two-platform index by commit SHA; its digest is what every later job used.
    let digest = &r.build_digest;
    assert_eq!(
        format!("sha256:{}", sha256_hex(&r.staging_manifest)),
        *digest,
        "the staging registry serves other bytes for {digest}"
    );
    let index: serde_json::Value = serde_json::from_slice(&r.staging_manifest).unwrap();
    let mut arches: Vec<&str> = index["manifests"]
        .as_array()
        .expect("an image index")
        .iter()
        .filter_map(|m| m["platform"]["architecture"].as_str())
        .collect();
    arches.sort();
    assert_eq!(arches, ["amd64", "arm64"], "{index}");
    let by_tag = harness::registry::skopeo_raw(
        &format!("{}:{}", flow.staging_image(), flow.commit_sha()),
        flow.staging.credentials(),
    );
    assert_eq!(
        by_tag, r.staging_manifest,
        "the commit-SHA tag is not the build"
    );

    // scan-image scanned that digest for real: trivy v0.74.0 with the DB the
    // project mirrored into its registry; its reports validate.
    let scan = flow.artifacts("scan-image");
    let scan_env = scan.join("scan-image.env");
    let scanned = dotenv_value(&scan_env, "SCAN_IMAGE");
    assert_eq!(scanned, format!("{}@{digest}", flow.staging_image()));
    assert!(
        run.output.contains("running trivy on")
            && !run.output.contains("using the recorded trivy report"),
        "the scan read a recorded report instead of scanning:\n{}",
        run.output
    );
    let gitlab = json(&scan.join("gl-container-scanning-report.json"));
    harness::schemas::assert_valid(
        "gitlab-container-scanning-report-format-15.2.1.json",
        &gitlab,
    );
    assert_eq!(gitlab["scan"]["status"], "success", "{gitlab:#}");
    assert_eq!(
        gitlab["scan"]["scanner"]["version"], "0.74.0",
        "the real trivy scanned: {gitlab:#}"
    );
    // What the fixture DB predicts for the sensor-app binary (built with
    // cargo auditable): smallvec 1.6.0, CVE-2021-25900 (GHSA-43w2-9j62-hq99),
    // critical. The example accepts it in its vulnerability-allowlist.yml
    // with a reason, so the gate (fail-on high) passes and the finding is
    // counted and listed as suppressed, not reported.
    assert_eq!(
        gitlab["vulnerabilities"].as_array().map(Vec::len),
        Some(0),
        "{gitlab:#}"
    );
    assert_eq!(dotenv_value(&scan_env, "SCAN_GATE"), "passed");
    assert_eq!(dotenv_value(&scan_env, "SCAN_TOTAL"), "0");
    assert_eq!(dotenv_value(&scan_env, "SCAN_SUPPRESSED"), "1");
    harness::schemas::assert_valid(
        "sarif-schema-2.1.0.json",
        &json(&scan.join("gl-container-scanning.sarif")),
    );
    assert!(
        json(&scan.join("gl-code-quality-report.json")).is_array(),
        "Code Quality is a JSON array"
    );
    let junit = std::fs::read_to_string(scan.join("gl-container-scanning-junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&junit).expect("JUnit XML parses");
    assert!(
        ["testsuites", "testsuite"].contains(&doc.root_element().tag_name().name()),
        "{junit}"
    );
    let skipped: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .filter(|n| n.children().any(|c| c.has_tag_name("skipped")))
        .map(|n| {
            let why = n
                .children()
                .find(|c| c.has_tag_name("skipped"))
                .and_then(|c| c.attribute("message"))
                .unwrap_or_default();
            format!("{} {why}", n.attribute("name").unwrap_or_default())
        })
        .collect();
    assert!(
        skipped.len() == 1
            && skipped[0].contains("CVE-2021-25900")
            && skipped[0].contains("smallvec")
            && skipped[0].contains("insert_many"),
        "the JUnit report does not list smallvec's CVE-2021-25900 as suppressed with its reason: {skipped:?}\n{junit}"
    );

    // Docker Hub holds the exact digest that was built and scanned: the same bytes, every platform too.
    assert_eq!(r.promoted_digest.as_deref(), Some(digest.as_str()));
    assert_eq!(
        r.hub_manifest, r.staging_manifest,
        "Docker Hub serves other index bytes"
    );
    let hub_creds = Some((e2e::flow::HUB_USER, flow.secrets.hub_token.as_str()));
    for m in index["manifests"].as_array().unwrap() {
        let child = m["digest"].as_str().unwrap();
        let at_hub =
            harness::registry::skopeo_raw(&format!("{}@{child}", flow.hub_image()), hub_creds);
        let at_staging = harness::registry::skopeo_raw(
            &format!("{}@{child}", flow.staging_image()),
            flow.staging.credentials(),
        );
        assert_eq!(at_hub, at_staging, "platform manifest {child} differs");
    }

    // The signature on Docker Hub verifies with the public key.
    assert!(
        r.signature_verified,
        "sign-image verify: {}",
        r.verify_output
    );
    let sig_tag = format!(
        "{}:{}.sig",
        flow.hub_image(),
        digest.replace("sha256:", "sha256-")
    );
    let sig: serde_json::Value =
        serde_json::from_slice(&harness::registry::skopeo_raw(&sig_tag, hub_creds)).unwrap();
    assert_eq!(
        sig["layers"][0]["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );

    // bump-manifest reached the config repo the way its job image does: git core, HTTP in the job.
    assert!(
        run.output.contains("git transport: built-in"),
        "bump-manifest did not use its built-in transport:\n{}",
        run.output
    );

    // The config repo gained exactly one commit, pinning tag@digest, and only under the app's paths.
    assert_eq!(r.new_commits.len(), 1, "{:?}", r.new_commits);
    let commit = &r.new_commits[0];
    let short = &flow.commit_sha()[..8];
    assert!(
        r.overlay.contains(&format!("digest: {digest}"))
            && r.overlay.contains(&format!("newTag: \"{short}\"")),
        "pi-lab overlay after the bump:\n{}",
        r.overlay
    );
    let changed = std::process::Command::new("git")
        .args(["show", "--name-only", "--format=", commit])
        .current_dir(flow.config_repo())
        .output()
        .unwrap();
    let changed = String::from_utf8(changed.stdout).unwrap();
    assert!(
        changed.contains(&format!("{APP_PATH}/kustomization.yaml")),
        "{changed}"
    );
    for f in changed.lines().filter(|l| !l.is_empty()) {
        assert!(
            f.starts_with(&format!("{APP_PATH}/")) || f.starts_with(".bump-manifest/"),
            "bump-manifest touched {f} outside manifest-paths (the lab overlay only)"
        );
    }
    assert_eq!(
        dotenv_value(
            &flow.artifacts("bump-manifest").join("bump-manifest.env"),
            "BUMP_MANIFEST_COMMIT"
        ),
        *commit
    );

    // On the device, the PreSync hook rendered from that commit verifies exactly that image@digest.
    let hook = r.hook.as_ref().expect("the hook ran");
    eprintln!(
        "device hook ran {}",
        if e2e::flow::arm64_sign_image().is_some() {
            "the linux/arm64 sign-image under qemu-aarch64-static"
        } else {
            "the host's sign-image (no arm64 build found)"
        }
    );
    assert_eq!(
        hook.code, 0,
        "hook: sign-image {}\n{}",
        hook.argv, hook.output
    );
    assert!(
        hook.argv.starts_with(&format!(
            "verify {}:{short}@{digest} --key ",
            flow.hub_image()
        )),
        "{}",
        hook.argv
    );
    for secret in flow.secrets.all() {
        assert!(
            !hook.output.contains(&secret),
            "a secret in the hook's output"
        );
    }

    // On the device, containerd's image verifier (examples/device: the node's policy and
    // registries.yaml) allows the pull of that tag at that digest with the pipeline's key,
    // and refuses it with any other key: the kubelet's pull fails whoever deploys.
    let pulled = format!("{}:{short}", flow.hub_image());
    let allowed = flow.run_device_verifier(&pulled, digest, r.hub_manifest.len(), &flow.public_key);
    eprintln!("device verifier: {}", allowed.binary);
    assert_eq!(
        allowed.code,
        Some(0),
        "secdeliv-verifier refused the pipeline's image:\n{}{}",
        allowed.stdout,
        allowed.stderr
    );
    assert!(
        allowed.stdout.starts_with("allowed: "),
        "{}",
        allowed.stdout
    );
    let other_keys = tempfile::tempdir().unwrap();
    let made = std::process::Command::new(e2e::flow::job_bin_dir().unwrap().join("sign-image"))
        .args(["generate-key-pair", "--output-key-prefix"])
        .arg(other_keys.path().join("other"))
        .env("COSIGN_PASSWORD", "another-team")
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let refused = flow.run_device_verifier(
        &pulled,
        digest,
        r.hub_manifest.len(),
        &other_keys.path().join("other.pub"),
    );
    assert_eq!(
        refused.code,
        Some(1),
        "{}{}",
        refused.stdout,
        refused.stderr
    );
    assert!(
        refused.stdout.starts_with("refused: "),
        "{}",
        refused.stdout
    );
    for secret in flow.secrets.all() {
        for out in [
            &allowed.stdout,
            &allowed.stderr,
            &refused.stdout,
            &refused.stderr,
        ] {
            assert!(!out.contains(&secret), "a secret in the verifier's output");
        }
    }

    // Argo CD was asked to sync exactly that commit, and the app is Synced and Healthy on it.
    assert_eq!(r.synced_revisions, vec![commit.clone()]);
    assert_eq!(
        (
            r.app_revision.as_str(),
            r.app_sync.as_str(),
            r.app_health.as_str()
        ),
        (commit.as_str(), "Synced", "Healthy"),
        "{APP}"
    );
    let app_url = dotenv_value(
        &flow.artifacts("notify-argocd").join("notify-argocd.env"),
        "ARGOCD_APP_URL",
    );
    assert!(
        app_url.ends_with(&format!("/applications/argocd/{APP}")),
        "{app_url}"
    );

    // No secret in any log or artifact.
    let mut files = vec![];
    files_under(&flow.project.join(".gitlab-ci-local/artifacts"), &mut files);
    files_under(&flow.project.join(".gitlab-ci-local/output"), &mut files);
    assert!(files.len() >= 10, "{files:?}");
    for secret in flow.secrets.all() {
        assert!(
            !run.output.contains(&secret),
            "a secret appears in the pipeline log"
        );
        for f in &files {
            let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
            assert!(
                !text.contains(&secret),
                "a secret appears in {}",
                f.display()
            );
        }
    }
}
