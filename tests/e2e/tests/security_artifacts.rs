//! Issue 17, finding 1, against the real job binaries: a dotenv file committed
//! to the application repository (a symlink to `/proc/self/environ`, or a
//! regular file injecting variables) must not turn the job's environment into
//! a CI artifact nor reach later jobs. Every job writes its dotenv file fresh.

use std::path::Path;

use e2e::flow::{job_bin_dir, root};
use harness::job::{Job, assert_no_secret_in};

const CANARY: &str = "canary-environ-7Zq4xPw";

fn scan_image(dir: &Path) -> Job {
    let bin = job_bin_dir().expect("job binaries").join("scan-image");
    Job::new(bin, dir)
        .arg("--trivy-report")
        .arg(root().join("examples/reports/trivy-sample.json"))
        .args(["--fail-on", "none"])
        .env("COSIGN_PASSWORD", CANARY)
        .env("DOCKERHUB_TOKEN", CANARY)
        .env("CONFIG_REPO_TOKEN", CANARY)
}

#[cfg(unix)]
#[test]
fn a_committed_symlink_to_proc_environ_never_becomes_the_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("scan-image.env");
    std::os::unix::fs::symlink("/proc/self/environ", &env_file).unwrap();
    let run = scan_image(dir.path()).run();
    run.assert_success();
    let meta = std::fs::symlink_metadata(&env_file).unwrap();
    assert!(
        meta.file_type().is_file(),
        "scan-image.env is still a symlink"
    );
    let text = std::fs::read_to_string(&env_file).unwrap();
    assert_no_secret_in("scan-image.env", &text, &[CANARY]);
    for line in text.lines() {
        let key = line.split_once('=').map(|(k, _)| k).unwrap_or(line);
        assert!(
            key.starts_with("SCAN_") || key.starts_with("CS_"),
            "scan-image.env holds a variable scan-image does not write: {line}"
        );
    }
    run.assert_no_secret(&[CANARY]);
}

#[test]
fn a_committed_dotenv_file_cannot_inject_variables_into_later_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("scan-image.env");
    std::fs::write(
        &env_file,
        "INSECURE_REGISTRY=evil.example\nCI_API_V4_URL=http://evil.example/api/v4\nBUMP_SCAN_SUMMARY=/etc/shadow\n",
    )
    .unwrap();
    let run = scan_image(dir.path()).run();
    run.assert_success();
    let text = std::fs::read_to_string(&env_file).unwrap();
    for injected in [
        "INSECURE_REGISTRY",
        "CI_API_V4_URL",
        "BUMP_SCAN_SUMMARY",
        "evil.example",
    ] {
        assert!(
            !text.contains(injected),
            "{injected} survived in scan-image.env:\n{text}"
        );
    }
    assert!(
        text.contains("SCAN_"),
        "scan-image wrote no results:\n{text}"
    );
}
