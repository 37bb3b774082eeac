//! The flags, each with its environment variable.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use kit::secret::Secret;

const AFTER_HELP: &str = "\
Examples:
  # GitLab CI, after promote-image: pin the promoted digest, never go backwards
  bump-manifest --repo https://gitlab.example.com/acme/config-repo.git \\
    --image acmeiot/sensor-app --new-tag \"$CI_COMMIT_TAG\" --new-digest \"$PROMOTED_DIGEST\" \\
    --path apps/sensor-app/overlays/pi-lab --order-key \"$CI_PIPELINE_IID\"
  # See what would change
  bump-manifest --repo ../config-repo --image acmeiot/sensor-app --new-tag 1.5.0 --dry-run
  # Open (or update) a merge request that merges itself when its pipeline passes
  bump-manifest --mode merge-request --auto-merge --repo \"$CONFIG_REPO_URL\" ...

Exit codes: 0 done, already up to date, or refused as older than what is deployed;
2 bad flag, bad reference, unparseable YAML (file:line), nothing found;
3 git/GitLab failure after retries (auth, missing branch, push still rejected, unexpected answer);
4 a GitLab API request timed out (--request-timeout).
Token: CONFIG_REPO_TOKEN (or CI_JOB_TOKEN) reaches git only through its environment.";

/// How the change reaches the config repo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Shallow clone, commit, push (retrying on a concurrent push).
    Push,
    /// One GitLab commits-API call with every file; no clone.
    GitlabApi,
    /// Commit to a branch through the GitLab API and open (or reuse) a merge request.
    MergeRequest,
}

/// How git reaches an http(s) remote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// git's own `git-remote-http(s)` (libcurl).
    #[default]
    Git,
    /// The `git-remote-secdeliv` helper (rustls): git core suffices.
    Builtin,
}

/// Write a new image reference into a GitOps config repo, format-preserving.
///
/// Finds every reference to --image under --path (kustomize `images:`, Helm
/// values `image:` blocks and strings, `containers[].image` of workloads,
/// Argo CD Application kustomize images and Helm parameters), replaces only
/// those scalars, and commits. Prints the resulting commit SHA (push and
/// gitlab-api modes) or merge request URL on stdout.
#[derive(Debug, Clone, Parser)]
#[command(name = "bump-manifest", version, after_help = AFTER_HELP)]
pub struct Args {
    /// Config repo: an https URL, or a local path (tests, mirrors).
    #[arg(long, env = "CONFIG_REPO_URL")]
    pub repo: String,
    /// Branch Argo CD watches.
    #[arg(long, env = "CONFIG_REPO_BRANCH", default_value = "main")]
    pub branch: String,
    /// Image name as written in the manifests, without tag or digest
    /// (`acme/app` and `docker.io/acme/app` are the same image).
    #[arg(long, env = "BUMP_IMAGE")]
    pub image: String,
    /// New tag (written as `tag@digest` when --new-digest is also given).
    #[arg(long, env = "BUMP_NEW_TAG")]
    pub new_tag: Option<String>,
    /// New digest, `sha256:<64 hex>` (what the cluster pins).
    #[arg(long, env = "BUMP_NEW_DIGEST")]
    pub new_digest: Option<String>,
    /// Directory (relative to the repo root) to search; repeatable or a
    /// comma list; no empty entry; `.` alone (or none) is the whole repo.
    #[arg(long = "path", env = "BUMP_PATHS", value_delimiter = ',')]
    pub paths: Vec<String>,
    /// Extra Helm values key path to update, e.g. `sensor.image.tag`; repeatable.
    #[arg(long = "helm-key", env = "BUMP_HELM_KEYS", value_delimiter = ',')]
    pub helm_keys: Vec<String>,
    /// Ordering key of this deploy (e.g. $CI_PIPELINE_IID or a version); a
    /// reference written with a greater key is never replaced.
    #[arg(long, env = "BUMP_ORDER_KEY")]
    pub order_key: Option<String>,
    /// push | gitlab-api | merge-request.
    #[arg(long, env = "BUMP_MODE", value_enum, default_value = "push")]
    pub mode: Mode,
    /// Print a unified diff of the change and change nothing.
    #[arg(long, env = "BUMP_DRY_RUN")]
    pub dry_run: bool,
    /// Finding no reference to the image is not an error.
    #[arg(long, env = "BUMP_ALLOW_MISSING")]
    pub allow_missing: bool,
    /// Commit message template; {image}, {old} (the previous version(s), in
    /// the form of {new}), {new}, {pipeline_url} are replaced.
    #[arg(
        long,
        env = "BUMP_MESSAGE",
        default_value = "Deploy {image} {new}\\n\\nPrevious: {old}\\nPipeline: {pipeline_url}"
    )]
    pub message: String,
    /// Pipeline that built the image, for the commit and merge request.
    #[arg(long, env = "CI_PIPELINE_URL")]
    pub pipeline_url: Option<String>,
    /// Commit author name.
    #[arg(long, env = "GITLAB_USER_NAME", default_value = "bump-manifest")]
    pub author_name: String,
    /// Commit author email.
    #[arg(
        long,
        env = "GITLAB_USER_EMAIL",
        default_value = "bump-manifest@localhost"
    )]
    pub author_email: String,
    /// Token with write access to the config repo (project/personal access
    /// token). Prefer the env variable: a flag's value is visible in the process list.
    #[arg(long, env = "CONFIG_REPO_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
    /// GitLab job token, used when no --token is given.
    #[arg(long, env = "CI_JOB_TOKEN", hide_env_values = true)]
    pub job_token: Option<Secret>,
    /// User name sent with the token over git HTTP (default: oauth2, or gitlab-ci-token for CI_JOB_TOKEN).
    #[arg(long, env = "CONFIG_REPO_TOKEN_USER")]
    pub token_user: Option<String>,
    /// GitLab API base URL (gitlab-api and merge-request modes; default $CI_SERVER_URL/api/v4).
    #[arg(long, env = "CI_API_V4_URL")]
    pub gitlab_api_url: Option<String>,
    /// Config repo project: numeric ID or `group/project` (default: from --repo's URL path).
    #[arg(long, env = "CONFIG_REPO_PROJECT")]
    pub project: Option<String>,
    /// Source branch for merge-request mode (default: bump-manifest/<image>-<branch>).
    #[arg(long, env = "BUMP_MR_BRANCH")]
    pub mr_branch: Option<String>,
    /// Set merge-when-pipeline-succeeds on the merge request.
    #[arg(long, env = "BUMP_AUTO_MERGE")]
    pub auto_merge: bool,
    /// Scan summary for the merge request description: text, or a file holding it.
    #[arg(long, env = "BUMP_SCAN_SUMMARY")]
    pub scan_summary: Option<String>,
    /// Attempts on a rejected push or a stale commit (concurrent writers).
    #[arg(long, env = "BUMP_MAX_ATTEMPTS", default_value_t = 30)]
    pub max_attempts: u32,
    /// Base delay between attempts, milliseconds (grows, with jitter, to 10x).
    #[arg(long, env = "BUMP_RETRY_DELAY_MS", default_value_t = 200)]
    pub retry_delay_ms: u64,
    /// Longest a GitLab API request may take (e.g. 60s, 2m); past it the job exits 4.
    #[arg(long, env = "BUMP_REQUEST_TIMEOUT", default_value = "60s")]
    pub request_timeout: String,
    /// How git reaches an http(s) config repo in push mode: `git` uses
    /// git's own git-remote-https (libcurl + OpenSSL in the image);
    /// `builtin` uses git-remote-secdeliv (rustls, the same CA bundles and
    /// token as the rest of the job; found next to bump-manifest, then on
    /// PATH), so git core suffices. Local paths, file:// and git:// always
    /// use git's own transport.
    #[arg(
        long,
        env = "BUMP_MANIFEST_GIT_TRANSPORT",
        value_enum,
        default_value = "git"
    )]
    pub git_transport: Transport,
    /// Largest YAML file read, bytes.
    #[arg(long, env = "BUMP_MAX_FILE_SIZE", default_value_t = 4 * 1024 * 1024)]
    pub max_file_size: u64,
    /// Clone into this directory (must not exist or be empty) and keep it;
    /// default: a temp dir, removed at the end.
    #[arg(long, env = "BUMP_WORKDIR")]
    pub workdir: Option<PathBuf>,
    /// Write BUMP_MANIFEST_COMMIT / BUMP_MANIFEST_REFERENCE (and BUMP_MANIFEST_MR_URL) to this dotenv file.
    #[arg(long, env = "BUMP_DOTENV")]
    pub dotenv: Option<PathBuf>,
}
