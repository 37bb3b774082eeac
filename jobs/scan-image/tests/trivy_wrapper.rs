//! The trivy process wrapper, driven against a stand-in `trivy` on PATH
//! (trivy's vulnerability database cannot be fetched here). The stand-in
//! records its argv, its environment, its working directory and the config
//! file it would load, refuses every flag the real trivy v0.74 does not have
//! for that subcommand (and every one scan-image has no business passing),
//! and can succeed, fail, hang or print garbage.
//!
//! Its settings are written into the script itself: scan-image starts trivy
//! with a cleared environment, so nothing set for the job reaches it.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;

/// The flags of trivy v0.74 that scan-image uses, by subcommand, from
/// trivy's source (`pkg/flag/*.go` at tag v0.74.0): global (`config`,
/// `quiet`, `insecure`, `timeout`, `cache-dir`), DB (`db-repository`,
/// `java-db-repository`, `skip-db-update`, `skip-java-db-update`), report (`format`, `output`, `ignorefile`, `list-all-pkgs`),
/// scan (`scanners`, `skip-version-check`, `disable-telemetry`). `convert`
/// has the global, report and `--scanners` flags only.
const IMAGE_FLAGS: &str = " --config --quiet --insecure --timeout --cache-dir --db-repository --java-db-repository --skip-db-update --skip-java-db-update --format --output --ignorefile --list-all-pkgs --scanners --skip-version-check --disable-telemetry ";
const CONVERT_FLAGS: &str = " --config --quiet --format --output ";
/// Those of them that take a value.
const VALUED: &str = " --config --timeout --cache-dir --db-repository --java-db-repository --format --output --ignorefile --scanners ";

const STANDIN: &str = r#"#!/bin/sh
log="@LOG@"
mode=$(cat "@MODE@")
printf '%s\n' "$*" >> "$log.argv"
{ echo "--- $1"; env | sort; } >> "$log.env"
echo "$PWD" >> "$log.cwd"
sub="$1"; shift
case "$sub" in
  image) flags="@IMAGE_FLAGS@" ;;
  convert) flags="@CONVERT_FLAGS@" ;;
  *) echo "Error: unknown command \"$sub\" for \"trivy\"" >&2; exit 1 ;;
esac
valued="@VALUED@"
out=""; config=""; expect=""; last=""
for a in "$@"; do
  if [ -n "$expect" ]; then
    [ "$expect" = --output ] && out="$a"
    [ "$expect" = --config ] && config="$a"
    expect=""; continue
  fi
  case "$a" in
    --*) case "$flags" in *" $a "*) ;; *) echo "Error: unknown flag: $a" >&2; exit 1 ;; esac
         case "$valued" in *" $a "*) expect="$a" ;; esac ;;
    -*) echo "Error: unknown shorthand flag: $a" >&2; exit 1 ;;
    *) last="$a" ;;
  esac
done
[ -n "$expect" ] && { echo "Error: flag needs an argument: $expect" >&2; exit 1; }
# trivy's rule (pkg/commands/app.go): --config, else $TRIVY_CONFIG, else ./trivy.yaml.
[ -z "$config" ] && config="${TRIVY_CONFIG:-trivy.yaml}"
if [ -f "$config" ]; then
  { echo "--- $config"; cat "$config"; echo; } >> "$log.config"
fi
case "$sub" in
  image)
    case "$mode" in
      ok) hex="${last##*@sha256:}"
          if [ -f "@REPORTS@/$hex.json" ]; then cp "@REPORTS@/$hex.json" "$out"; else cp "@REPORT@" "$out"; fi ;;
      fail) echo "2026-11-26T10:00:00Z INFO pulling image" >&2
            echo "FATAL: unable to pull: UNAUTHORIZED for user $TRIVY_USERNAME with password $TRIVY_PASSWORD" >&2
            exit 1 ;;
      hang) exec sleep 30 ;;
      garbage) echo "Segmentation fault (core dumped) ... not json" > "$out" ;;
    esac ;;
  convert)
    [ -s "$last" ] || { echo "convert: no input $last" >&2; exit 1; }
    printf '{"bomFormat":"CycloneDX","specVersion":"1.5","metadata":{"component":{"name":"from-standin"}}}' > "$out" ;;
esac
"#;

struct Standin {
    dir: tempfile::TempDir,
}

impl Standin {
    fn new(mode: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::create_dir(dir.path().join("work")).unwrap();
        std::fs::create_dir(dir.path().join("reports")).unwrap();
        let s = Standin { dir };
        let script = STANDIN
            .replace("@LOG@", s.log().to_str().unwrap())
            .replace("@MODE@", s.dir.path().join("mode").to_str().unwrap())
            .replace("@REPORTS@", s.dir.path().join("reports").to_str().unwrap())
            .replace("@REPORT@", sample().to_str().unwrap())
            .replace("@IMAGE_FLAGS@", IMAGE_FLAGS)
            .replace("@CONVERT_FLAGS@", CONVERT_FLAGS)
            .replace("@VALUED@", VALUED);
        let trivy = bin.join("trivy");
        std::fs::write(&trivy, script).unwrap();
        std::fs::set_permissions(&trivy, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(s.dir.path().join("mode"), mode).unwrap();
        s
    }
    /// Makes the `ok` stand-in answer a scan of `reference` (`…@sha256:HEX`)
    /// with `report` instead of the sample.
    fn report_for(&self, reference: &str, report: &serde_json::Value) {
        let hex = reference.rsplit_once("@sha256:").unwrap().1;
        std::fs::write(
            self.dir.path().join("reports").join(format!("{hex}.json")),
            report.to_string(),
        )
        .unwrap();
    }
    /// The job's working directory (the "checkout").
    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }
    fn log(&self) -> PathBuf {
        self.dir.path().join("standin")
    }
    fn read(&self, ext: &str) -> String {
        std::fs::read_to_string(self.log().with_extension(ext)).unwrap_or_default()
    }
    fn argv(&self) -> Vec<String> {
        self.read("argv").lines().map(str::to_string).collect()
    }
    fn scans(&self) -> Vec<String> {
        self.argv()
            .into_iter()
            .filter(|a| a.starts_with("image "))
            .collect()
    }
    fn env(&self) -> String {
        self.read("env")
    }
    /// `TRIVY_*` variables trivy saw, over every run.
    fn trivy_vars(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .env()
            .lines()
            .filter(|l| l.starts_with("TRIVY_"))
            .map(|l| l.split('=').next().unwrap().to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    }
    fn job(&self) -> Job {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        job(&self.work()).env("PATH", path)
    }
    /// [`Self::job`] trusting `reg`'s CA.
    fn job_for(&self, reg: &Index) -> Job {
        self.job()
            .env("ADDITIONAL_CA_CERT_BUNDLE", &reg.proxy.ca_file)
    }
}

/// A real docker-registry behind HTTPS (the harness's TLS proxy, its CA
/// trusted through ADDITIONAL_CA_CERT_BUNDLE) holding a two-platform index
/// (linux/arm64, linux/amd64, and a BuildKit attestation manifest).
struct Index {
    _registry: harness::registry::TestRegistry,
    proxy: harness::tls_proxy::TlsProxy,
    _certs: tempfile::TempDir,
    /// `127.0.0.1:PORT/acme/sensor-app@sha256:<index>`
    image: String,
    /// Platform → `127.0.0.1:PORT/acme/sensor-app@sha256:<manifest>`.
    platforms: Vec<(String, String)>,
}

impl Index {
    fn start() -> Index {
        let registry = harness::registry::TestRegistry::start();
        let img = harness::registry::push_image(
            &registry,
            "acme/sensor-app",
            "1.0",
            &harness::registry::ImageSpec::default(),
            None,
        );
        let certs = tempfile::tempdir().unwrap();
        let proxy = harness::tls_proxy::TlsProxy::start(&registry.host(), certs.path());
        let name = format!("127.0.0.1:{}/acme/sensor-app", proxy.port());
        let platforms = img
            .manifests
            .iter()
            .filter(|(p, _)| !p.starts_with("unknown"))
            .map(|(p, m)| (p.clone(), format!("{name}@{}", m.digest)))
            .collect();
        Index {
            image: format!("{name}@{}", img.digest),
            _registry: registry,
            proxy,
            _certs: certs,
            platforms,
        }
    }
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.proxy.port())
    }
    fn platform(&self, p: &str) -> &str {
        &self.platforms.iter().find(|(q, _)| q == p).unwrap().1
    }
}

fn value_after<'a>(argv: &'a str, flag: &str) -> Option<&'a str> {
    argv.split_whitespace().skip_while(|w| *w != flag).nth(1)
}

const IMAGE: &str = "registry.example.com:5050/acme/sensor-app@sha256:5f0e8b5a0b6e9b47e5c1f7b77e2f3c9e0a4d5b6c7d8e9f001122334455667788";
const PASSWORD: &str = "glpat-s3cr3t-Tok3n-value";

#[test]
fn standin_trivy_runs_once_with_credentials_in_env_not_argv() {
    let reg = Index::start();
    let s = Standin::new("ok");
    let r = s
        .job_for(&reg)
        .arg(&reg.image)
        .args([
            "--fail-on",
            "none",
            "--platform",
            "linux/arm64",
            "--sbom",
            "sbom.cdx.json",
        ])
        .env("CS_REGISTRY_USER", "gitlab-ci-token")
        .env("CS_REGISTRY_PASSWORD", PASSWORD)
        .run();
    r.assert_success();
    let argv = s.argv();
    let scans = s.scans();
    assert_eq!(scans.len(), 1, "trivy image runs once: {argv:?}");
    let scan = &scans[0];
    assert!(scan.contains("--format json") && scan.contains("--quiet"));
    assert!(
        scan.contains("--list-all-pkgs"),
        "SBOM needs every package: {scan}"
    );
    // --platform linux/arm64: that platform's manifest, by digest.
    assert!(scan.ends_with(reg.platform("linux/arm64")), "{scan}");
    assert!(!scan.contains(PASSWORD) && !scan.contains("gitlab-ci-token"));
    // The SBOM comes from `trivy convert` of the same JSON, not a second scan.
    let converts: Vec<_> = argv.iter().filter(|a| a.starts_with("convert ")).collect();
    assert_eq!(converts.len(), 1);
    assert!(converts[0].contains("--format cyclonedx"));
    let scanned_json = value_after(scan, "--output").unwrap();
    assert!(
        converts[0].ends_with(scanned_json),
        "{} vs {scanned_json}",
        converts[0]
    );
    let sbom = json(&s.work().join("sbom-linux-arm64.cdx.json"));
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    let env = s.env();
    assert!(env.contains("TRIVY_USERNAME=gitlab-ci-token"));
    assert!(env.contains(&format!("TRIVY_PASSWORD={PASSWORD}")));
    r.assert_no_secret(&[PASSWORD]);
    harness::job::assert_no_secret_in_files(&s.work(), &[PASSWORD]);
    let report = json(&s.work().join("gl-container-scanning-report.json"));
    assert_eq!(
        report["vulnerabilities"][0]["location"]["image"],
        reg.image.as_str()
    );
    let env = dotenv(&s.work().join("scan-image.env"));
    assert_eq!(env["SCAN_SBOM_FILES"], "sbom-linux-arm64.cdx.json");
    assert_eq!(env["SCAN_PLATFORMS_SCANNED"], "linux/arm64");
}

#[test]
fn ci_registry_credentials_are_used_for_the_ci_registry_only() {
    let reg = Index::start();
    let s = Standin::new("ok");
    let r = s
        .job_for(&reg)
        .arg(&reg.image)
        .args(["--fail-on", "none", "--platforms", "linux/amd64"])
        .env("CI_REGISTRY", reg.host())
        .env("CI_REGISTRY_USER", "gitlab-ci-token")
        .env("CI_REGISTRY_PASSWORD", PASSWORD)
        .run();
    r.assert_success();
    assert!(s.env().contains("TRIVY_USERNAME=gitlab-ci-token"));
    assert!(r.stderr.contains("CI_REGISTRY_USER/CI_REGISTRY_PASSWORD"));
    r.assert_no_secret(&[PASSWORD]);

    // An image on another registry: neither the index read nor trivy gets them.
    let other = Index::start();
    let s = Standin::new("ok");
    let r = s
        .job_for(&other)
        .arg(&other.image)
        .args(["--fail-on", "none", "--platforms", "linux/amd64"])
        .env("CI_REGISTRY", reg.host())
        .env("CI_REGISTRY_USER", "u")
        .env("CI_REGISTRY_PASSWORD", PASSWORD)
        .run();
    r.assert_success();
    assert!(!s.env().contains("TRIVY_PASSWORD"));
    assert!(!s.env().contains(PASSWORD));
    r.assert_no_secret(&[PASSWORD]);
}

#[test]
fn trivy_failure_is_exit_3_with_redacted_stderr_tail_and_a_failure_report() {
    let reg = Index::start();
    let s = Standin::new("fail");
    let r = s
        .job_for(&reg)
        .arg(&reg.image)
        .env("CS_REGISTRY_USER", "gitlab-ci-token")
        .env("CS_REGISTRY_PASSWORD", PASSWORD)
        .run();
    r.assert_failed(
        3,
        r"trivy image failed with status 1: 2026-11-26T10:00:00Z INFO pulling image \| FATAL: unable to pull: UNAUTHORIZED for user gitlab-ci-token with password \[redacted\]",
    );
    r.assert_no_secret(&[PASSWORD]);
    // GitLab still gets a report, saying the scan failed and why.
    let report = json(&s.work().join("gl-container-scanning-report.json"));
    harness::schemas::assert_valid(harness::schemas::GITLAB_CONTAINER_SCANNING, &report);
    assert_eq!(report["scan"]["status"], "failure");
    assert_eq!(
        report["scan"]["messages"][0]["value"].as_str().unwrap(),
        r.cause(),
        "{report}"
    );
    harness::job::assert_no_secret_in_files(&s.work(), &[PASSWORD]);
}

#[test]
fn trivy_hanging_is_exit_4_at_the_timeout() {
    let reg = Index::start();
    let s = Standin::new("hang");
    let t = std::time::Instant::now();
    let r = s
        .job_for(&reg)
        .arg(&reg.image)
        .args(["--timeout", "1s"])
        .run();
    assert!(
        t.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
    r.assert_failed(
        4,
        r"trivy image did not finish within 1\.0s; raise --timeout \(SCAN_TIMEOUT\) or check the registry",
    );
    let report = json(&s.work().join("gl-container-scanning-report.json"));
    assert_eq!(report["scan"]["status"], "failure");
}

#[test]
fn trivy_garbage_output_is_exit_3() {
    let reg = Index::start();
    let s = Standin::new("garbage");
    let r = s.job_for(&reg).arg(&reg.image).run();
    r.assert_failed(
        3,
        r"trivy wrote a report that is not valid JSON: .*line 1.*",
    );
    let report = json(&s.work().join("gl-container-scanning-report.json"));
    assert_eq!(report["scan"]["status"], "failure");
}

#[test]
fn trivy_missing_is_exit_2_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let r = job(dir.path()).env("PATH", dir.path()).arg(IMAGE).run();
    r.assert_failed(
        2,
        r"trivy not found \(trivy\): install it \(https://trivy\.dev/latest/getting-started/installation/\), set SCAN_TRIVY to its path, or convert an existing report with --trivy-report FILE",
    );
}

#[test]
fn sbom_without_trivy_warns_and_still_writes_every_report() {
    let dir = tempfile::tempdir().unwrap();
    let r = job(dir.path())
        .env("PATH", dir.path())
        .arg("--trivy-report")
        .arg(sample())
        .args([
            "--sbom",
            "sbom.json",
            "--fail-on",
            "none",
            "--junit",
            "junit.xml",
        ])
        .run();
    r.assert_success();
    assert!(r.stderr.contains("--sbom needs trivy"), "{}", r.stderr);
    assert!(!dir.path().join("sbom.json").exists());
    // Everything else was written as without --sbom.
    let report = json(&dir.path().join("gl-container-scanning-report.json"));
    harness::schemas::assert_valid(harness::schemas::GITLAB_CONTAINER_SCANNING, &report);
    assert_eq!(report["scan"]["status"], "success");
    assert_eq!(report["vulnerabilities"].as_array().unwrap().len(), 8);
    assert!(dir.path().join("junit.xml").is_file());
    assert_eq!(
        dotenv(&dir.path().join("scan-image.env"))["SCAN_GATE"],
        "passed"
    );
    // No temp file left beside the SBOM path.
    let stray: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn bad_image_reference_is_exit_2() {
    let s = Standin::new("ok");
    let r = s.job().arg("Registry.Example.com/UPPER/case").run();
    r.assert_failed(
        2,
        r#"invalid image reference "Registry\.Example\.com/UPPER/case": .*"#,
    );
    assert!(s.argv().is_empty(), "trivy must not run on a bad reference");
}

/// A control: the stand-in refuses what the real trivy would refuse, so the
/// other tests prove scan-image passes only flags trivy has.
#[test]
fn the_standin_refuses_flags_trivy_does_not_have() {
    let s = Standin::new("ok");
    let trivy = s.dir.path().join("bin/trivy");
    for args in [
        &["image", "--non-ssl", "x"][..],
        &["image", "--severity", "LOW", "x"],
        &["convert", "--skip-version-check", "x"],
        &["image", "--output"],
        &["scan", "x"],
    ] {
        let out = std::process::Command::new(&trivy)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?} was accepted");
    }
}

/// Issue 17, finding 5: a `trivy.yaml` committed to the checkout (or
/// `TRIVY_CONFIG`, or any `TRIVY_*` variable) must not change the scan.
#[test]
fn a_committed_trivy_yaml_and_trivy_variables_do_not_reach_trivy() {
    let reg = Index::start();
    let s = Standin::new("ok");
    let evil = "severity: LOW\nignore-unfixed: true\ninsecure: true\ndb:\n  repository: evil.example.com/db:2\n";
    std::fs::write(s.work().join("trivy.yaml"), evil).unwrap();
    std::fs::write(s.work().join("evil.yaml"), evil).unwrap();
    let r = s
        .job_for(&reg)
        .arg(&reg.image)
        .args(["--fail-on", "none", "--sbom", "sbom.json"])
        .args(["--platforms", "linux/amd64"])
        .env("TRIVY_CONFIG", "evil.yaml")
        .env("TRIVY_SEVERITY", "LOW")
        .env("TRIVY_IGNORE_UNFIXED", "true")
        .env("TRIVY_NON_SSL", "true")
        .env("TRIVY_INSECURE", "true")
        .env("TRIVY_DB_SKIP_UPDATE", "true")
        .env("TRIVY_SERVER", "http://evil.example.com")
        .run();
    r.assert_success();
    let argv = s.argv();
    assert_eq!(argv.len(), 2, "{argv:?}");
    for run in &argv {
        // An explicit config, and it is empty.
        let config = value_after(run, "--config").unwrap_or_else(|| panic!("no --config: {run}"));
        assert!(
            !config.starts_with(s.work().to_str().unwrap()),
            "the config is in the checkout: {config}"
        );
        assert!(
            !run.contains("evil") && !run.contains("--insecure"),
            "{run}"
        );
    }
    let loaded = s.read("config");
    assert!(
        !loaded.contains("severity") && !loaded.contains("evil"),
        "trivy loaded a committed config:\n{loaded}"
    );
    // trivy runs outside the checkout.
    for cwd in s.read("cwd").lines() {
        assert_ne!(Path::new(cwd), s.work().canonicalize().unwrap());
    }
    // No TRIVY_* variable at all: none was set through scan-image's flags,
    // and no credentials were found.
    assert_eq!(s.trivy_vars(), Vec::<String>::new(), "{}", s.env());
}

/// Issue 17, finding 5: signing keys, tokens for other systems and other
/// registries' credentials never reach trivy.
#[test]
fn children_get_a_cleared_environment_without_the_jobs_secrets() {
    let canaries = [
        (
            "COSIGN_PRIVATE_KEY",
            "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----canary-cosign-key",
        ),
        ("COSIGN_PASSWORD", "canary-cosign-password"),
        ("DOCKERHUB_TOKEN", "dckr_pat_canary-token"),
        ("CONFIG_REPO_TOKEN", "glpat-canary-config-repo"),
        ("ARGOCD_AUTH_TOKEN", "canary-argocd-jwt-token"),
        ("CI_JOB_TOKEN", "canary-ci-job-token"),
    ];
    let reg = Index::start();
    let s = Standin::new("ok");
    // Docker Hub credentials in a docker config: for another registry.
    let docker = s.dir.path().join("docker");
    std::fs::create_dir(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        r#"{"auths":{"https://index.docker.io/v1/":{"auth":"ZG9ja2VydXNlcjpkY2tyX3BhdF9jYW5hcnktdG9rZW4="}}}"#,
    )
    .unwrap();
    let r = s
        .job_for(&reg)
        .arg(&reg.image)
        .args(["--fail-on", "none", "--sbom", "sbom.json"])
        .envs(canaries)
        .env("DOCKER_CONFIG", &docker)
        .env("HTTPS_PROXY", "http://proxy.example.com:3128")
        .env("NO_PROXY", "127.0.0.1")
        .env("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
        .env("CS_REGISTRY_USER", "gitlab-ci-token")
        .env("CS_REGISTRY_PASSWORD", PASSWORD)
        .run();
    r.assert_success();
    let secrets: Vec<&str> = canaries.iter().map(|(_, v)| *v).collect();
    let seen = format!("{}\n{}", s.read("argv"), s.env());
    harness::job::assert_no_secret_in("trivy's argv and environment", &seen, &secrets);
    for (name, _) in canaries {
        assert!(
            !s.env().contains(&format!("{name}=")),
            "{name} reached trivy"
        );
    }
    // What trivy needs does reach it; its docker config is empty.
    let env = s.env();
    assert!(
        env.contains("HTTPS_PROXY=http://proxy.example.com:3128"),
        "{env}"
    );
    assert!(env.contains("SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"));
    assert!(env.lines().any(|l| l.starts_with("PATH=")));
    let docker_config = env
        .lines()
        .find_map(|l| l.strip_prefix("DOCKER_CONFIG="))
        .unwrap();
    assert_ne!(Path::new(docker_config), docker);
    // Only IMAGE's registry credentials, as TRIVY_USERNAME/TRIVY_PASSWORD.
    assert_eq!(s.trivy_vars(), ["TRIVY_PASSWORD", "TRIVY_USERNAME"]);
    r.assert_no_secret(&secrets);
    harness::job::assert_no_secret_in_files(&s.work(), &secrets);
}

const LOCAL: &str = "registry.local:5000/acme/app@sha256:5f0e8b5a0b6e9b47e5c1f7b77e2f3c9e0a4d5b6c7d8e9f001122334455667788";

/// Issue 17, finding 5: trivy's `--insecure` is global (it also turns off
/// certificate checks for the DB downloads), so it is passed only when
/// every registry trivy downloads from in the run is insecure-listed.
#[test]
fn insecure_is_passed_only_when_every_registry_trivy_talks_to_is_listed() {
    // IMAGE's registry listed, trivy's default DB repositories: refused
    // before trivy runs.
    let s = Standin::new("ok");
    let r = s
        .job()
        .arg(LOCAL)
        .env("INSECURE_REGISTRY", "registry.local:5000")
        .run();
    r.assert_failed(
        2,
        r"registry\.local:5000 is an insecure registry, but trivy's --insecure would also switch off certificate checks for its database downloads from mirror\.gcr\.io, ghcr\.io; list those in --insecure-registry \(INSECURE_REGISTRY\) only if you mean it, or serve the databases from a listed registry \(--db-repository, --java-db-repository\), or use the cached ones \(--skip-db-update and --skip-java-db-update with --cache-dir\)",
    );
    assert!(s.argv().is_empty());

    // CS_REGISTRY_INSECURE is the same switch.
    let s = Standin::new("ok");
    s.job()
        .arg(LOCAL)
        .env("CS_REGISTRY_INSECURE", "true")
        .run()
        .assert_failed(2, r"registry\.local:5000 is an insecure registry, but .*");

    // Only the Java DB still comes from the internet: refused, naming it.
    let s = Standin::new("ok");
    s.job()
        .arg(LOCAL)
        .env("INSECURE_REGISTRY", "registry.local:5000")
        .env("TRIVY_DB_REPOSITORY", "registry.local:5000/trivy-db:2")
        .run()
        .assert_failed(
            2,
            r"registry\.local:5000 is an insecure registry, but .* downloads from mirror\.gcr\.io, ghcr\.io; .*",
        );

    // Both DBs served from the listed registry: --insecure (a real
    // plain-HTTP registry, its index read over HTTP as listed).
    let plain = harness::registry::TestRegistry::start();
    let pushed = harness::registry::push_image(
        &plain,
        "acme/app",
        "1.0",
        &harness::registry::ImageSpec::default(),
        None,
    );
    let host = plain.host();
    let local = format!("{host}/acme/app@{}", pushed.digest);
    let s = Standin::new("ok");
    s.job()
        .arg(&local)
        .args(["--fail-on", "none", "--platforms", "linux/amd64"])
        .env("INSECURE_REGISTRY", format!("other.local,{host}"))
        .env("TRIVY_DB_REPOSITORY", format!("{host}/trivy-db:2"))
        .env(
            "TRIVY_JAVA_DB_REPOSITORY",
            format!("{host}/trivy-java-db:1"),
        )
        .run()
        .assert_success();
    let scan = &s.scans()[0];
    assert!(scan.contains(" --insecure "), "{scan}");
    assert!(
        scan.contains(&format!("--db-repository {host}/trivy-db:2")),
        "{scan}"
    );
    assert!(
        scan.contains(&format!("--java-db-repository {host}/trivy-java-db:1")),
        "{scan}"
    );

    // No download at all (cached DBs): --insecure.
    let s = Standin::new("ok");
    s.job()
        .arg(&local)
        .args([
            "--fail-on",
            "none",
            "--skip-db-update",
            "--skip-java-db-update",
            "--platforms",
            "linux/amd64",
        ])
        .args(["--cache-dir", ".trivycache"])
        .arg("--registry-insecure")
        .run()
        .assert_success();
    let scan = &s.scans()[0];
    assert!(scan.contains(" --insecure "), "{scan}");
    assert!(scan.contains("--skip-db-update") && scan.contains("--skip-java-db-update"));
    // The cache directory is resolved against the job's directory (trivy
    // runs elsewhere).
    let cache = value_after(scan, "--cache-dir").unwrap();
    assert_eq!(Path::new(cache), s.work().join(".trivycache"));

    // IMAGE's registry not listed: no --insecure, whatever else is.
    let reg = Index::start();
    let s = Standin::new("ok");
    s.job_for(&reg)
        .arg(&reg.image)
        .args([
            "--fail-on",
            "none",
            "--skip-db-update",
            "--skip-java-db-update",
            "--platforms",
            "linux/amd64",
        ])
        .env("INSECURE_REGISTRY", format!("{host},mirror.gcr.io,ghcr.io"))
        .run()
        .assert_success();
    let scan = &s.scans()[0];
    assert!(!scan.contains("--insecure"), "{scan}");
    assert!(!s.env().contains("TRIVY_NON_SSL"));
}

/// The sample report with its first OS finding (CVE-2024-5535 in libssl3)
/// removed and an arm64-only CRITICAL finding added.
fn arm64_report() -> serde_json::Value {
    let mut r = json(&sample());
    let os = r["Results"][0]["Vulnerabilities"].as_array_mut().unwrap();
    os.remove(0);
    os.push(serde_json::json!({
        "VulnerabilityID": "CVE-2099-0001",
        "PkgName": "libatomic1",
        "InstalledVersion": "12.2.0-14",
        "FixedVersion": "12.2.0-15",
        "Severity": "CRITICAL",
        "Title": "an arm64-only flaw"
    }));
    r
}

/// Issue 12, item 3: every platform of the index is scanned (trivy once per
/// platform manifest, by digest; the DB downloaded by the first run only),
/// findings on both platforms are one finding listing both, a finding on
/// one platform lists that one, and the gate counts them all.
#[test]
fn every_platform_of_the_index_is_scanned_by_digest_and_findings_merge() {
    let reg = Index::start();
    let s = Standin::new("ok");
    s.report_for(reg.platform("linux/arm64"), &arm64_report());
    let r = s
        .job_for(&reg)
        .arg(&reg.image)
        .args(["--fail-on", "critical", "--sbom", "gl-sbom.cdx.json"])
        .args(["--sarif", "out.sarif", "--junit", "junit.xml"])
        .run();
    r.assert_failed(
        1,
        r"4 finding\(s\) at or above CRITICAL \(CVE-2024-5535, CVE-2099-0001\); .*",
    );
    // Attestation left out; each platform once, by its manifest digest.
    let scans = s.scans();
    assert_eq!(scans.len(), 2, "{scans:?}");
    assert!(
        scans[0].ends_with(reg.platform("linux/arm64")),
        "{}",
        scans[0]
    );
    assert!(
        scans[1].ends_with(reg.platform("linux/amd64")),
        "{}",
        scans[1]
    );
    // One DB download: the second run uses the first one's.
    assert!(!scans[0].contains("--skip-db-update"), "{}", scans[0]);
    assert!(scans[1].contains("--skip-db-update"), "{}", scans[1]);
    assert!(
        r.stderr
            .contains("is an index of linux/arm64, linux/amd64; scanning linux/arm64, linux/amd64"),
        "{}",
        r.stderr
    );

    let report = json(&s.work().join("gl-container-scanning-report.json"));
    harness::schemas::assert_valid(harness::schemas::GITLAB_CONTAINER_SCANNING, &report);
    let vulns = report["vulnerabilities"].as_array().unwrap();
    let platforms_of = |cve: &str, pkg: &str| -> Vec<String> {
        vulns
            .iter()
            .filter(|v| {
                v["identifiers"][0]["value"] == cve
                    && v["location"]["dependency"]["package"]["name"] == pkg
            })
            .map(|v| {
                v["details"]["platforms"]["value"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    // 8 findings in the sample, 1 of them amd64-only, plus 1 arm64-only: 9.
    assert_eq!(vulns.len(), 9, "{report}");
    assert_eq!(
        platforms_of("CVE-2024-5535", "openssl"),
        ["linux/arm64, linux/amd64"]
    );
    assert_eq!(platforms_of("CVE-2024-5535", "libssl3"), ["linux/amd64"]);
    assert_eq!(platforms_of("CVE-2099-0001", "libatomic1"), ["linux/arm64"]);
    let ids: std::collections::HashSet<&str> =
        vulns.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 9, "ids are unique");
    // The log's gate table lists the platforms.
    assert!(
        r.stderr
            .lines()
            .any(|l| l.contains("CVE-2099-0001") && l.contains("linux/arm64")),
        "{}",
        r.stderr
    );
    // SARIF and JUnit say where too.
    let sarif = std::fs::read_to_string(s.work().join("out.sarif")).unwrap();
    assert!(sarif.contains("on linux/arm64, linux/amd64"), "{sarif}");
    harness::schemas::assert_valid(harness::schemas::SARIF, &json(&s.work().join("out.sarif")));
    let junit = std::fs::read_to_string(s.work().join("junit.xml")).unwrap();
    assert!(junit.contains("CVE-2099-0001 in libatomic1 12.2.0-14 on linux/arm64"));
    // One SBOM per platform, each from `trivy convert` of its own scan.
    let env = dotenv(&s.work().join("scan-image.env"));
    assert_eq!(env["SCAN_PLATFORMS_SCANNED"], "linux/arm64,linux/amd64");
    let digests: Vec<&str> = env["SCAN_MANIFEST_DIGESTS"].split(',').collect();
    assert_eq!(digests.len(), 2);
    assert!(reg.platform("linux/arm64").ends_with(digests[0]));
    assert_eq!(
        env["SCAN_SBOM_FILES"],
        "gl-sbom-linux-arm64.cdx.json,gl-sbom-linux-amd64.cdx.json"
    );
    for f in env["SCAN_SBOM_FILES"].split(',') {
        assert_eq!(json(&s.work().join(f))["bomFormat"], "CycloneDX");
    }
    let converts: Vec<String> = s
        .argv()
        .into_iter()
        .filter(|a| a.starts_with("convert "))
        .collect();
    assert_eq!(converts.len(), 2);
    for (scan, convert) in scans.iter().zip(&converts) {
        assert!(convert.ends_with(value_after(scan, "--output").unwrap()));
    }
    assert_eq!(env["SCAN_CRITICAL"], "4");
}

/// `--platforms LIST` and `--platform`/TRIVY_PLATFORM scan only those; a
/// platform the index does not have is exit 2 naming what it has, and
/// GitLab still gets a report saying the scan failed and why.
#[test]
fn a_platform_list_scans_only_those_and_an_unknown_platform_is_exit_2() {
    let reg = Index::start();
    let s = Standin::new("ok");
    s.job_for(&reg)
        .arg(&reg.image)
        .args(["--fail-on", "none", "--platforms", "linux/amd64"])
        .run()
        .assert_success();
    assert_eq!(s.scans().len(), 1);
    assert!(s.scans()[0].ends_with(reg.platform("linux/amd64")));

    let s = Standin::new("ok");
    s.job_for(&reg)
        .arg(&reg.image)
        .args(["--fail-on", "none"])
        .env("TRIVY_PLATFORM", "linux/arm64")
        .run()
        .assert_success();
    assert_eq!(s.scans().len(), 1);
    assert!(s.scans()[0].ends_with(reg.platform("linux/arm64")));

    let s = Standin::new("ok");
    let r = s
        .job_for(&reg)
        .arg(&reg.image)
        .env("SCAN_PLATFORMS", "linux/amd64,linux/s390x")
        .run();
    r.assert_failed(
        2,
        &format!(
            r"platform linux/s390x is not in {} \(it has linux/arm64, linux/amd64\); pick from those, or use --platforms all",
            regex::escape(&reg.image)
        ),
    );
    assert!(s.argv().is_empty(), "trivy ran: {:?}", s.argv());
    let report = json(&s.work().join("gl-container-scanning-report.json"));
    harness::schemas::assert_valid(harness::schemas::GITLAB_CONTAINER_SCANNING, &report);
    assert_eq!(report["scan"]["status"], "failure");
    assert_eq!(report["scan"]["messages"][0]["value"], r.cause());
}

/// The stand-in's flag lists are trivy v0.74's: every flag it accepts is in
/// the real `trivy image --help` / `trivy convert --help` (built by
/// scripts/install-peers.sh).
#[test]
fn the_standins_flags_are_real_trivys() {
    let trivy = root().join(".tools/bin/trivy");
    assert!(
        trivy.is_file(),
        "{} is missing: run scripts/install-peers.sh (builds trivy v0.74.0)",
        trivy.display()
    );
    for (sub, flags) in [("image", IMAGE_FLAGS), ("convert", CONVERT_FLAGS)] {
        let out = std::process::Command::new(&trivy)
            .args([sub, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "trivy {sub} --help failed");
        let help = String::from_utf8_lossy(&out.stdout);
        let real: std::collections::HashSet<&str> = help
            .split(|c: char| c.is_whitespace() || c == ',' || c == '=')
            .filter(|w| w.starts_with("--"))
            .collect();
        for f in flags.split_whitespace() {
            assert!(real.contains(f), "trivy {sub} has no {f}:\n{help}");
        }
        // `  -c, --config string   config path`: one space and a type word
        // when the flag takes a value, two or more spaces when it does not.
        for f in flags.split_whitespace() {
            let line = help
                .lines()
                .find(|l| {
                    let l = l.trim_start();
                    let l = l
                        .split_once(", ")
                        .filter(|(s, _)| s.len() == 2)
                        .map_or(l, |(_, r)| r);
                    l.starts_with(&format!("{f} "))
                })
                .unwrap_or_else(|| panic!("no help line for {f}"));
            let after = line.split_once(&format!("{f} ")).unwrap().1;
            let takes_value = !after.starts_with(' ');
            assert_eq!(
                takes_value,
                VALUED.contains(&format!(" {f} ")),
                "trivy {sub} {f}: the stand-in disagrees on whether it takes a value: {line}"
            );
        }
    }
}

/// IMAGE that is a single manifest (no index): trivy scans IMAGE itself,
/// the SBOM keeps its name; a platform list must name its platform.
#[test]
fn a_single_image_is_scanned_as_named_and_another_platform_is_exit_2() {
    let registry = harness::registry::TestRegistry::start();
    let spec = harness::registry::ImageSpec {
        index: false,
        attestation: false,
        ..Default::default()
    };
    let img = harness::registry::push_image(&registry, "acme/one", "1.0", &spec, None);
    let host = registry.host();
    let image = format!("{host}/acme/one@{}", img.digest);
    let s = Standin::new("ok");
    s.job()
        .arg(&image)
        .args(["--fail-on", "none", "--sbom", "gl-sbom.cdx.json"])
        .args(["--skip-db-update", "--skip-java-db-update"])
        .env("INSECURE_REGISTRY", &host)
        .run()
        .assert_success();
    assert_eq!(s.scans().len(), 1);
    assert!(s.scans()[0].ends_with(&image));
    let env = dotenv(&s.work().join("scan-image.env"));
    assert_eq!(env["SCAN_PLATFORMS_SCANNED"], "");
    assert_eq!(env["SCAN_SBOM_FILES"], "gl-sbom.cdx.json");

    let s = Standin::new("ok");
    let r = s
        .job()
        .arg(&image)
        .args(["--platforms", "linux/amd64"])
        .args(["--skip-db-update", "--skip-java-db-update"])
        .env("INSECURE_REGISTRY", &host)
        .run();
    r.assert_failed(
        2,
        &format!(
            r"platform linux/amd64 is not in {} \(a single image, not an index\) \(it has linux/arm64\); pick from those, or use --platforms all",
            regex::escape(&image)
        ),
    );
    assert!(s.argv().is_empty());
}
