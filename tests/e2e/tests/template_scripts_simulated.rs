//! The templates' scripts run end to end under gitlab-ci-local's shell
//! executor with simulated job binaries (and a simulated buildah): each stub
//! records its argv and the variables it received, and writes the dotenv
//! report the real binary writes. This checks the glue the templates own —
//! digest hand-over through dotenv reports and `needs`, tag defaults, the
//! `--order-key`, refusing references without a digest, credentials on stdin —
//! not the binaries themselves (their crates test those; the full flow with
//! the real binaries runs in the end-to-end test).

mod common;

use std::path::Path;

use common::Project;

const BUILD_DIGEST: &str =
    "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const PROMOTED_DIGEST: &str =
    "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const CONFIG_COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const SECRETS: [&str; 4] = [
    "reg-s3cr3t-pw",
    "hub-s3cr3t-token",
    "argocd-s3cr3t-token",
    "cfg-s3cr3t-token",
];

/// One stub per executable, all logging to `$STUB_LOG`.
fn write_stubs(bin: &Path) {
    let stubs = [
        (
            "buildah",
            r#"case "$1" in
  login) pw="$(cat)"; echo "buildah login $2 $3 $4 $5 password-bytes=${#pw}" >> "$STUB_LOG" ;;
  *) echo "buildah $*" >> "$STUB_LOG"
     while [ $# -gt 0 ]; do if [ "$1" = --digestfile ]; then printf '%s' "$BUILD_DIGEST_STUB" > "$2"; fi; shift; done ;;
esac"#,
        ),
        (
            "scan-image",
            r#"echo "scan-image $* | SCAN_FAIL_ON=$SCAN_FAIL_ON CS_IGNORE_UNFIXED=$CS_IGNORE_UNFIXED SCAN_PLATFORMS=$SCAN_PLATFORMS TRIVY_PLATFORM=${TRIVY_PLATFORM-unset}" >> "$STUB_LOG"
for f in gl-container-scanning-report.json gl-code-quality-report.json gl-container-scanning-junit.xml gl-sbom-container.cdx.json gl-container-scanning.sarif; do echo '{}' > "$f"; done
printf 'SCAN_CRITICAL=0\nSCAN_GATE=pass\n' > scan-image.env"#,
        ),
        (
            "promote-image",
            r#"echo "promote-image $* | PROMOTE_TAGS=${PROMOTE_TAGS:-} PROMOTE_PLATFORM=${PROMOTE_PLATFORM:-}" >> "$STUB_LOG"
dst="$4"; name="${dst%:*}"
printf 'PROMOTED_IMAGE=%s@%s\nPROMOTED_DIGEST=%s\n' "$name" "$PROMOTED_DIGEST_STUB" "$PROMOTED_DIGEST_STUB" > "$2""#,
        ),
        (
            "sign-image",
            r#"echo "sign-image $* | SIGN_IMAGE_KEY=$SIGN_IMAGE_KEY SIGN_IMAGE_ANNOTATIONS=${SIGN_IMAGE_ANNOTATIONS:-}" >> "$STUB_LOG""#,
        ),
        (
            "bump-manifest",
            r#"echo "bump-manifest $*" >> "$STUB_LOG"
printf 'BUMP_MANIFEST_COMMIT=%s\n' "$CONFIG_COMMIT_STUB" > bump-manifest.env"#,
        ),
        (
            "notify-argocd",
            r#"echo "notify-argocd $* | ARGOCD_SYNC=$ARGOCD_SYNC ARGOCD_TIMEOUT=$ARGOCD_TIMEOUT" >> "$STUB_LOG"
printf 'ARGOCD_APP_URL=https://argocd.example.com/applications/argocd/sensor-app\nARGOCD_APPS=sensor-app\n' > notify-argocd.env"#,
        ),
    ];
    for (name, body) in stubs {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\nset -eu\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

struct Run {
    ok: bool,
    output: String,
    log: Vec<String>,
}

fn run(p: &Project, args: &[&str]) -> Run {
    let bin = p.path().join(".stub-bin");
    std::fs::create_dir_all(&bin).unwrap();
    write_stubs(&bin);
    let log = p.path().join(".stub-log");
    let _ = std::fs::remove_file(&log);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = std::process::Command::new(common::gitlab_ci_local());
    cmd.args([
        "--force-shell-executor",
        "--ignore-predefined-vars",
        "CI_COMMIT_TAG",
    ])
    .args([
        "--variable",
        "REGISTRY_USER=ci-bot",
        "--variable",
        &format!("REGISTRY_PASSWORD={}", SECRETS[0]),
    ])
    .args([
        "--variable",
        "DOCKERHUB_USERNAME=acme",
        "--variable",
        &format!("DOCKERHUB_TOKEN={}", SECRETS[1]),
    ])
    .args(["--variable", "ARGOCD_SERVER=https://argocd.example.com"])
    .args(["--variable", &format!("ARGOCD_AUTH_TOKEN={}", SECRETS[2])])
    .args([
        "--variable",
        "CONFIG_REPO_URL=https://gitlab.example.com/acme/config.git",
    ])
    .args(["--variable", &format!("CONFIG_REPO_TOKEN={}", SECRETS[3])])
    // Last, so a test's own --variable overrides the defaults above.
    .args(args)
    .arg("--home")
    .arg(p.path().join(".gitlab-ci-local/home"))
    .current_dir(p.path())
    .env("PATH", path)
    .env("STUB_LOG", &log)
    .env("BUILD_DIGEST_STUB", BUILD_DIGEST)
    .env("PROMOTED_DIGEST_STUB", PROMOTED_DIGEST)
    .env("CONFIG_COMMIT_STUB", CONFIG_COMMIT)
    .env("NO_COLOR", "1")
    .env("FORCE_COLOR", "0");
    let out = cmd.output().expect("running gitlab-ci-local");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect();
    Run {
        ok: out.status.success(),
        output,
        log,
    }
}

fn line<'a>(r: &'a Run, prefix: &str) -> &'a str {
    r.log
        .iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| {
            panic!(
                "no `{prefix}` call; calls: {:#?}\noutput:\n{}",
                r.log, r.output
            )
        })
}

fn git_output(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn the_whole_flow_hands_the_digest_from_job_to_job_simulated() {
    let p = Project::new(
        "include:\n  - local: /ci-templates/gitops-iot.yml\n    inputs:\n      target-image: docker.io/acme/sensor-app\n      extra-tags: latest\n      fail-on: high\n",
    );
    let r = run(&p, &[]);
    assert!(r.ok, "pipeline failed:\n{}", r.output);
    let short_sha = git_output(p.path(), &["rev-parse", "--short=8", "HEAD"]);

    // build-image: logs in with the password on stdin, builds both platforms, pushes by commit SHA.
    let login = line(&r, "buildah login");
    assert!(
        login.contains("--username ci-bot --password-stdin")
            && login.ends_with("password-bytes=13"),
        "{login}"
    );
    let build = line(&r, "buildah build");
    assert!(
        build.contains("--platform linux/arm64,linux/amd64") && build.contains("--file Dockerfile"),
        "{build}"
    );
    let push = line(&r, "buildah manifest push");
    assert!(push.contains("--digestfile build-image.digest"), "{push}");
    let sha = git_output(p.path(), &["rev-parse", "HEAD"]);
    let pushed = push.rsplit(' ').next().unwrap();
    assert!(
        pushed.starts_with("docker://") && pushed.ends_with(&format!(":{sha}")),
        "pushed by commit SHA: {push}"
    );
    let staging = pushed
        .trim_start_matches("docker://")
        .trim_end_matches(&format!(":{sha}"));

    // scan-image: the built digest, the gate level.
    let scan = line(&r, "scan-image");
    assert!(
        scan.contains(&format!(" {staging}@{BUILD_DIGEST} |")),
        "scan gets the build digest: {scan}"
    );
    assert!(
        scan.contains(
            "SCAN_FAIL_ON=high CS_IGNORE_UNFIXED=false SCAN_PLATFORMS=all TRIVY_PLATFORM=unset"
        ),
        "{scan}"
    );
    for f in [
        "--gitlab-report gl-container-scanning-report.json",
        "--codequality",
        "--junit",
        "--sbom",
        "--dotenv scan-image.env",
    ] {
        assert!(scan.contains(f), "{f}: {scan}");
    }

    // promote-image: the same digest, to Docker Hub, tagged with the short SHA and latest.
    let promote = line(&r, "promote-image");
    assert!(
        promote.contains(&format!(
            "--dotenv promote.env {staging}@{BUILD_DIGEST} docker.io/acme/sensor-app:{short_sha} |"
        )),
        "{promote}"
    );
    assert!(
        promote.contains("PROMOTE_TAGS=latest PROMOTE_PLATFORM=linux/arm64,linux/amd64"),
        "{promote}"
    );

    // sign-image: the promoted digest.
    let sign = line(&r, "sign-image");
    assert!(
        sign.starts_with(&format!(
            "sign-image sign docker.io/acme/sensor-app@{PROMOTED_DIGEST} |"
        )),
        "{sign}"
    );
    assert!(
        sign.contains("SIGN_IMAGE_KEY=env://COSIGN_PRIVATE_KEY"),
        "{sign}"
    );

    // bump-manifest: name, tag, digest, order key = pipeline IID.
    let bump = line(&r, "bump-manifest");
    assert!(
        bump.contains("--repo https://gitlab.example.com/acme/config.git --branch main"),
        "{bump}"
    );
    assert!(
        bump.contains(&format!(
            "--image docker.io/acme/sensor-app --new-tag {short_sha} --new-digest {PROMOTED_DIGEST}"
        )),
        "{bump}"
    );
    let order_key = bump
        .split("--order-key ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert!(
        !order_key.is_empty() && order_key.chars().all(|c| c.is_ascii_digit()),
        "order key is CI_PIPELINE_IID: {bump}"
    );
    assert!(
        bump.contains("--mode push --dotenv bump-manifest.env"),
        "{bump}"
    );

    // notify-argocd: waits for the commit bump-manifest wrote.
    let notify = line(&r, "notify-argocd");
    assert!(
        notify.contains(&format!("--revision {CONFIG_COMMIT}")),
        "{notify}"
    );
    assert!(
        notify.contains("--server https://argocd.example.com --app sensor-app"),
        "{notify}"
    );
    assert!(
        notify.contains("ARGOCD_SYNC=false ARGOCD_TIMEOUT=10m"),
        "{notify}"
    );
    let env = std::fs::read_to_string(
        p.path()
            .join(".gitlab-ci-local/artifacts/notify-argocd/notify-argocd.env"),
    )
    .unwrap();
    assert!(
        env.contains("ARGOCD_APP_LINK=argocd.example.com/applications/argocd/sensor-app\n"),
        "{env}"
    );

    for s in SECRETS {
        assert!(!r.output.contains(s), "secret {s} in the job log");
        assert!(
            !r.log.iter().any(|l| l.contains(s)),
            "secret {s} in a command line"
        );
    }
}

#[test]
fn jobs_refuse_an_image_without_a_digest_simulated() {
    let p = Project::new("include:\n  - local: /ci-templates/gitops-iot.yml\n");
    for (job, var) in [
        (
            "scan-image",
            "BUILD_IMAGE=registry.example.com/acme/app:latest",
        ),
        (
            "promote-image",
            "BUILD_IMAGE=registry.example.com/acme/app:latest",
        ),
        ("sign-image", "PROMOTED_IMAGE=docker.io/acme/app:1.0"),
        ("bump-manifest", "PROMOTED_DIGEST=latest"),
    ] {
        let r = run(&p, &[job, "--variable", var]);
        assert!(!r.ok, "{job} accepted {var}:\n{}", r.output);
        // One check, one message, in every template (bump-manifest checks NAME@DIGEST).
        let cause = "is not a digest reference";
        assert!(
            r.output.contains(&format!("{job}: ")) && r.output.contains(cause),
            "{job}: no one-line cause:\n{}",
            r.output
        );
        assert!(
            r.output.contains("FAIL 2"),
            "{job}: want exit 2 (usage):\n{}",
            r.output
        );
        assert!(
            r.log.iter().all(|l| !l.starts_with(job)),
            "{job} ran its binary anyway: {:?}",
            r.log
        );
    }
    let r = run(
        &p,
        &["notify-argocd", "--variable", "BUMP_MANIFEST_COMMIT="],
    );
    assert!(
        !r.ok && r.output.contains("no config-repo revision") && r.output.contains("FAIL 2"),
        "{}",
        r.output
    );
}

#[test]
fn a_docker_hub_token_without_its_username_is_refused_before_any_binary_runs_simulated() {
    let p = Project::new("include:\n  - local: /ci-templates/gitops-iot.yml\n");
    let build = format!("BUILD_IMAGE=registry.example.com/acme/app@{BUILD_DIGEST}");
    let promoted = format!("PROMOTED_IMAGE=docker.io/acme/app@{PROMOTED_DIGEST}");
    for (job, var) in [("promote-image", &build), ("sign-image", &promoted)] {
        let r = run(
            &p,
            &[job, "--variable", var, "--variable", "DOCKERHUB_USERNAME="],
        );
        assert!(!r.ok, "{job} ran without DOCKERHUB_USERNAME:\n{}", r.output);
        assert!(
            r.output.contains(&format!(
                "{job}: DOCKERHUB_TOKEN is set but DOCKERHUB_USERNAME is not"
            )),
            "{job}: no one-line cause:\n{}",
            r.output
        );
        assert!(
            r.output.contains("FAIL 2"),
            "{job}: want exit 2:\n{}",
            r.output
        );
        assert!(
            r.log.iter().all(|l| !l.starts_with(job)),
            "{job} ran its binary anyway: {:?}",
            r.log
        );
        for secret in SECRETS {
            assert!(!r.output.contains(secret), "{job}: a secret in the log");
        }
    }
}
