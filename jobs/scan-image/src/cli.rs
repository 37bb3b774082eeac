//! Flags, raw: every flag also reads an environment variable; GitLab's
//! container-scanning variable names (and trivy's own, for the settings
//! scan-image hands on to trivy) are accepted as they are documented. Values
//! are checked in [`crate::config`].

use std::path::PathBuf;

use clap::Parser;
use kit::secret::Secret;

const AFTER_HELP: &str = "\
Examples:
  # Scan an image from the GitLab registry and gate on HIGH:
  scan-image --fail-on high $CI_REGISTRY_IMAGE@$BUILD_DIGEST

  # Convert a report trivy already wrote (no trivy needed):
  scan-image --trivy-report trivy.json --sarif gl-sast.sarif --junit junit.xml

  # GitLab container-scanning variables work unchanged:
  CS_IMAGE=registry.example.com/app:1.2 CS_SEVERITY_THRESHOLD=HIGH CS_IGNORE_UNFIXED=true scan-image

Suppression: --ignore-unfixed, --allowlist (GitLab's vulnerability-allowlist.yml,
picked up from the working directory when present) and --ignore-file (trivy's
.trivyignore or .trivyignore.yaml; .trivyignore in the working directory is used
when present). Suppressed findings are counted and listed in the log.

trivy runs outside the checkout with an empty --config (a committed trivy.yaml
changes nothing), a cleared environment (PATH, HOME, TMPDIR, XDG_CACHE_HOME,
proxies, SSL_CERT_FILE/DIR, and IMAGE's registry credentials as
TRIVY_USERNAME/TRIVY_PASSWORD), and every setting as a flag. trivy's --insecure
is passed only when IMAGE's registry and every registry it downloads a database
from are insecure-listed (else exit 2).

Exit codes: 0 gate passed; 1 findings at or above --fail-on; 2 usage or input
error; 3 trivy or the registry failed; 4 timed out. Reports are written in every
case where a scan result exists, so GitLab shows them for failed jobs too.";

/// Scan a container image with trivy, write GitLab security, SARIF, Code
/// Quality and JUnit reports, and gate the pipeline on severity.
#[derive(Parser, Debug, Clone)]
#[command(name = "scan-image", version, about, args_override_self = true, long_about = None, after_long_help = AFTER_HELP, after_help = "Run with --help for examples and exit codes.")]
pub struct Args {
    /// Image to scan, by digest when you can (registry/group/app@sha256:…).
    /// Required unless --trivy-report is given.
    #[arg(env = "CS_IMAGE", value_name = "IMAGE")]
    pub image: Option<String>,

    /// Convert this existing trivy JSON report instead of running trivy.
    #[arg(long, env = "SCAN_TRIVY_REPORT", value_name = "FILE")]
    pub trivy_report: Option<PathBuf>,

    /// GitLab container_scanning report (artifacts:reports:container_scanning).
    #[arg(
        long,
        env = "SCAN_GITLAB_REPORT",
        value_name = "FILE",
        default_value = "gl-container-scanning-report.json"
    )]
    pub gitlab_report: PathBuf,

    /// SARIF 2.1.0 report.
    #[arg(long, env = "SCAN_SARIF", value_name = "FILE")]
    pub sarif: Option<PathBuf>,

    /// GitLab Code Quality report (artifacts:reports:codequality; shown on GitLab Free).
    #[arg(long, env = "SCAN_CODEQUALITY", value_name = "FILE")]
    pub codequality: Option<PathBuf>,

    /// JUnit XML report (artifacts:reports:junit).
    #[arg(long, env = "SCAN_JUNIT", value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// CycloneDX SBOM, made by `trivy convert` from the same scan (needs trivy).
    #[arg(long, env = "SCAN_SBOM", value_name = "FILE")]
    pub sbom: Option<PathBuf>,

    /// Counts per severity and the gate result for later jobs (artifacts:reports:dotenv).
    #[arg(
        long,
        env = "SCAN_DOTENV",
        value_name = "FILE",
        default_value = "scan-image.env"
    )]
    pub dotenv: PathBuf,

    /// Exit 1 when a finding at or above this severity remains after suppression:
    /// none, unknown, low, medium, high, critical (any case).
    #[arg(
        long,
        env = "SCAN_FAIL_ON",
        value_name = "LEVEL",
        default_value = "critical"
    )]
    pub fail_on: String,

    /// Report only findings at or above this severity (does not change the gate).
    #[arg(
        long,
        env = "CS_SEVERITY_THRESHOLD",
        value_name = "LEVEL",
        default_value = "unknown"
    )]
    pub severity_threshold: String,

    /// Suppress findings that have no fixed version yet.
    #[arg(long, env = "CS_IGNORE_UNFIXED")]
    pub ignore_unfixed: bool,

    /// GitLab vulnerability-allowlist.yml [default: ./vulnerability-allowlist.yml when present].
    #[arg(long, env = "SCAN_ALLOWLIST", value_name = "FILE")]
    pub allowlist: Option<PathBuf>,

    /// trivy ignore file, .trivyignore or .trivyignore.yaml (expired_at honoured)
    /// [default: ./.trivyignore when present].
    #[arg(long, env = "TRIVY_IGNOREFILE", value_name = "FILE")]
    pub ignore_file: Option<PathBuf>,

    /// Platforms of IMAGE's index to scan: `all` (every platform manifest,
    /// attestations left out), or a comma-separated list such as
    /// linux/arm64,linux/amd64; each must be in the index (else exit 2).
    /// Findings are merged: one per vulnerability and package, listing its
    /// platforms. [default: all]
    #[arg(long, env = "SCAN_PLATFORMS", value_name = "all|OS/ARCH,...")]
    pub platforms: Option<String>,

    /// One platform to scan, e.g. linux/arm64: the same as --platforms
    /// OS/ARCH (GitLab's variable name; give one of the two).
    #[arg(long, env = "TRIVY_PLATFORM", value_name = "OS/ARCH")]
    pub platform: Option<String>,

    /// Dockerfile that builds the image: findings point at its final FROM line.
    #[arg(long, env = "CS_DOCKERFILE_PATH", value_name = "PATH")]
    pub dockerfile: Option<String>,

    /// The image's name on the default branch (GitLab tracks findings across branches with it).
    #[arg(long, env = "CS_DEFAULT_BRANCH_IMAGE", value_name = "IMAGE")]
    pub default_branch_image: Option<String>,

    /// Registry user for pulling IMAGE [default: REGISTRY_USER, CI_REGISTRY_USER, docker config].
    #[arg(long, env = "CS_REGISTRY_USER", value_name = "USER")]
    pub registry_user: Option<String>,

    /// Registry password or token for pulling IMAGE.
    #[arg(
        long,
        env = "CS_REGISTRY_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub registry_password: Option<Secret>,

    /// Allow plain HTTP and unverified TLS to IMAGE's registry.
    #[arg(long, env = "CS_REGISTRY_INSECURE")]
    pub registry_insecure: bool,

    /// Registries reached over plain HTTP (HOST[:PORT], repeatable or comma-separated).
    #[arg(
        long,
        env = "INSECURE_REGISTRY",
        value_name = "HOST[:PORT]",
        value_delimiter = ','
    )]
    pub insecure_registry: Vec<String>,

    /// Give up on trivy after this long (exit 4): 90s, 15m, 1h.
    #[arg(
        long,
        env = "SCAN_TIMEOUT",
        value_name = "DURATION",
        default_value = "15m"
    )]
    pub timeout: String,

    /// OCI repositories of trivy's vulnerability DB, in order [default: trivy's,
    /// mirror.gcr.io then ghcr.io] (comma-separated).
    #[arg(
        long,
        env = "TRIVY_DB_REPOSITORY",
        value_name = "REPO",
        value_delimiter = ','
    )]
    pub db_repository: Vec<String>,

    /// OCI repositories of trivy's Java DB, in order [default: trivy's] (comma-separated).
    #[arg(
        long,
        env = "TRIVY_JAVA_DB_REPOSITORY",
        value_name = "REPO",
        value_delimiter = ','
    )]
    pub java_db_repository: Vec<String>,

    /// Use the vulnerability DB already in the cache; download nothing.
    #[arg(long, env = "TRIVY_SKIP_DB_UPDATE")]
    pub skip_db_update: bool,

    /// Use the Java DB already in the cache; download nothing.
    #[arg(long, env = "TRIVY_SKIP_JAVA_DB_UPDATE")]
    pub skip_java_db_update: bool,

    /// trivy's cache directory (its databases and layer cache).
    #[arg(long, env = "TRIVY_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Post one note on the merge request (GitLab Free has no security
    /// widget): the gate verdict, counts by severity, new and fixed findings
    /// against the target branch's last report, the worst findings with
    /// their fixed versions. A re-run edits its note. Needs
    /// SCAN_IMAGE_GITLAB_TOKEN; outside a merge-request pipeline
    /// (CI_MERGE_REQUEST_IID unset) nothing is posted.
    #[arg(long, env = "SCAN_MR_NOTE")]
    pub mr_note: bool,

    /// Token for --mr-note: a project access token with the api scope and
    /// at least the Reporter role (CI_JOB_TOKEN cannot write notes).
    #[arg(
        long,
        env = "SCAN_IMAGE_GITLAB_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub gitlab_token: Option<Secret>,

    /// GitLab's API URL for --mr-note (GitLab sets it).
    #[arg(long, env = "CI_API_V4_URL", value_name = "URL")]
    pub gitlab_api_url: Option<String>,

    /// The project for --mr-note, id or path (GitLab sets it).
    #[arg(long, env = "CI_PROJECT_ID", value_name = "ID")]
    pub project_id: Option<String>,

    /// The merge request --mr-note writes on (GitLab sets it in merge-request pipelines).
    #[arg(long, env = "CI_MERGE_REQUEST_IID", value_name = "IID")]
    pub merge_request_iid: Option<String>,

    /// Branch whose last report is the baseline of --mr-note (GitLab sets it).
    #[arg(
        long,
        env = "CI_MERGE_REQUEST_TARGET_BRANCH_NAME",
        value_name = "BRANCH"
    )]
    pub target_branch: Option<String>,

    /// Job on the target branch whose GitLab report (same file name as
    /// --gitlab-report) is the baseline [default: CI_JOB_NAME, this job's name].
    #[arg(long, env = "SCAN_BASELINE_JOB", value_name = "JOB")]
    pub baseline_job: Option<String>,

    /// The baseline for --mr-note as a file (a GitLab container-scanning
    /// report) instead of the target branch's last one.
    #[arg(long, env = "SCAN_BASELINE", value_name = "FILE")]
    pub baseline: Option<PathBuf>,

    /// Gate only on findings the baseline did not have (--baseline FILE, or
    /// with --mr-note the target branch's last report): findings already on
    /// the target branch do not fail the merge request. Without a baseline
    /// every finding counts (logged).
    #[arg(long, env = "SCAN_FAIL_ON_NEW")]
    pub fail_on_new: bool,

    /// The trivy executable.
    #[arg(long, env = "SCAN_TRIVY", value_name = "PATH", default_value = "trivy")]
    pub trivy: PathBuf,
}
