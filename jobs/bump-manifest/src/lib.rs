//! bump-manifest: writes a new image reference (`name:tag@digest`) into a
//! GitOps config repo. Only the bytes of the changed scalars change; a
//! concurrent pipeline's commit is never lost (fetch, re-apply, retry, never
//! force); and with `--order-key` an older pipeline never overwrites a newer
//! deploy.

pub mod edit;
pub mod git;
pub mod gitlab;
pub mod plan;
pub mod push;
pub mod remote_helper;
pub mod rules;
pub mod state;
pub mod yaml;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use kit::env::Env;
use kit::reference::{Digest, ImageRef};
use kit::secret::Secret;
use kit::{JobError, JobResult};

use crate::plan::{FileChange, Plan};
use crate::rules::Target;
use crate::state::{State, Verdict};

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
3 git/GitLab failure after retries (auth, missing branch, push still rejected).
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

/// Write a new image reference into a GitOps config repo, format-preserving.
///
/// Finds every reference to --image under --path (kustomize `images:`, Helm
/// values `image:` blocks and strings, `containers[].image` of workloads,
/// Argo CD Application kustomize images and Helm parameters), replaces only
/// those scalars, and commits. Prints the resulting commit SHA (push and
/// gitlab-api modes) or merge request URL on stdout.
#[derive(Debug, Clone, Parser)]
#[command(name = "bump-manifest", version, max_term_width = 100, after_help = AFTER_HELP)]
pub struct Options {
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
    /// Directory (relative to the repo root) to search; repeatable; default the whole repo.
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
    #[arg(long, env = "BUMP_DRY_RUN", value_parser = kit::env::parse_bool, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub dry_run: bool,
    /// Finding no reference to the image is not an error.
    #[arg(long, env = "BUMP_ALLOW_MISSING", value_parser = kit::env::parse_bool, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub allow_missing: bool,
    /// Commit message template; {image}, {old}, {new}, {pipeline_url} are replaced.
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
    /// GitLab API base URL (gitlab-api and merge-request modes).
    #[arg(long, env = "CI_API_V4_URL")]
    pub gitlab_api_url: Option<String>,
    /// Config repo project: numeric ID or `group/project` (default: from --repo's URL path).
    #[arg(long, env = "CONFIG_REPO_PROJECT")]
    pub project: Option<String>,
    /// Source branch for merge-request mode (default: bump-manifest/<image>-<branch>).
    #[arg(long, env = "BUMP_MR_BRANCH")]
    pub mr_branch: Option<String>,
    /// Set merge-when-pipeline-succeeds on the merge request.
    #[arg(long, env = "BUMP_AUTO_MERGE", value_parser = kit::env::parse_bool, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
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
    /// How git reaches an http(s) config repo in push mode: `git` uses
    /// git's own git-remote-https (libcurl + OpenSSL in the image);
    /// `builtin` uses bump-manifest's own remote helper (rustls, the same
    /// CA bundles and token as the rest of the job), so git core suffices.
    /// Local paths, file:// and git:// always use git's own transport.
    #[arg(
        long,
        env = "BUMP_MANIFEST_GIT_TRANSPORT",
        value_enum,
        default_value = "git"
    )]
    pub git_transport: git::Transport,
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

impl Options {
    /// Validates the reference parts and builds the rules' target.
    pub fn target(&self) -> JobResult<Target> {
        let image = ImageRef::parse(self.image.trim())?;
        if image.tag.is_some() || image.digest.is_some() {
            return Err(JobError::usage(format!(
                "--image {:?} must be the name only; pass the tag with --new-tag and the digest with --new-digest",
                self.image
            )));
        }
        let tag = self
            .new_tag
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        let digest = self
            .new_digest
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::to_string);
        if let Some(t) = &tag {
            ImageRef::parse(&format!("x:{t}"))
                .map_err(|e| JobError::usage(format!("--new-tag: {}", e.reason)))?;
        }
        if let Some(d) = &digest {
            d.parse::<Digest>()
                .map_err(|e| JobError::usage(format!("--new-digest: {}", e.reason)))?;
        }
        if tag.is_none() && digest.is_none() {
            return Err(JobError::usage("give --new-tag, --new-digest or both"));
        }
        let helm_keys = self
            .helm_keys
            .iter()
            .filter(|k| !k.trim().is_empty())
            .map(|k| {
                let parts: Vec<String> = k.trim().split('.').map(str::to_string).collect();
                if parts.iter().any(String::is_empty) {
                    Err(JobError::usage(format!(
                        "--helm-key {k:?} is not a dotted key path like sensor.image.tag"
                    )))
                } else {
                    Ok(parts)
                }
            })
            .collect::<JobResult<_>>()?;
        Ok(Target {
            image,
            tag,
            digest,
            helm_keys,
        })
    }

    /// The token and the user name git sends with it.
    pub fn auth(&self) -> Option<git::Auth> {
        if let Some(t) = self.token.as_ref().filter(|t| !t.is_empty()) {
            return Some(git::Auth {
                user: self.token_user.clone().unwrap_or_else(|| "oauth2".into()),
                token: t.clone(),
            });
        }
        self.job_token
            .as_ref()
            .filter(|t| !t.is_empty())
            .map(|t| git::Auth {
                user: self
                    .token_user
                    .clone()
                    .unwrap_or_else(|| "gitlab-ci-token".into()),
                token: t.clone(),
            })
    }

    pub fn author(&self) -> git::Author {
        let name = if self.author_name.trim().is_empty() {
            "bump-manifest"
        } else {
            self.author_name.trim()
        };
        let email = if self.author_email.trim().is_empty() {
            "bump-manifest@localhost"
        } else {
            self.author_email.trim()
        };
        git::Author {
            name: name.to_string(),
            email: email.to_string(),
        }
    }

    pub fn scope(&self, target: &Target) -> String {
        state::scope_key(&target.image.name(), &self.paths)
    }

    pub fn retry_delay(&self, attempt: u32) -> std::time::Duration {
        let base = std::time::Duration::from_millis(self.retry_delay_ms.max(1));
        let max = base * 10;
        let exp = base.saturating_mul(1u32 << attempt.min(10)).min(max);
        // Full jitter, so a crowd of writers spreads out.
        exp.mul_f64(0.25 + 0.75 * fastrand::f64())
    }
}

/// What to do after planning against one head of the branch.
#[derive(Debug)]
pub enum Decision {
    /// Found nothing, and --allow-missing said that is fine.
    NothingFound,
    UpToDate,
    /// A greater order key is deployed: (key, reference).
    Newer(String, String),
    /// Commit these files (manifests and, with an order key, the state file).
    Commit {
        files: Vec<FileChange>,
        message: String,
        old: String,
        new: String,
    },
}

/// Decides from a plan and the state file text on the same head.
pub fn decide(
    opts: &Options,
    target: &Target,
    plan: Plan,
    state_text: Option<&str>,
) -> JobResult<Decision> {
    if plan.found.is_empty() {
        if opts.allow_missing {
            return Ok(Decision::NothingFound);
        }
        let where_ = if opts.paths.is_empty() {
            "the repo".to_string()
        } else {
            opts.paths.join(", ")
        };
        return Err(JobError::usage(format!(
            "no reference to {} found in {where_} (kustomize images, Helm values, workload manifests, Argo CD Applications); check --image and --path, or pass --allow-missing",
            opts.image
        )));
    }
    let new = target.new_ref();
    let mut files = plan.files.clone();
    if let Some(key) = opts
        .order_key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty())
    {
        let mut st = State::parse(state_text)?;
        let scope = opts.scope(target);
        if let Verdict::Newer(k, r) = state::judge(&st, &scope, key)? {
            return Ok(Decision::Newer(k, r));
        }
        if !plan.changed() {
            return Ok(Decision::UpToDate);
        }
        st.images.insert(
            scope,
            state::Entry {
                order_key: key.to_string(),
                reference: new.clone(),
                pipeline_url: opts.pipeline_url.clone().filter(|u| !u.is_empty()),
                updated_at: Some(state::now_rfc3339()),
            },
        );
        files.push(FileChange {
            path: state::STATE_PATH.to_string(),
            old: state_text.unwrap_or_default().to_string(),
            new: st.render(),
        });
    } else if !plan.changed() {
        return Ok(Decision::UpToDate);
    }
    let old = plan.old_refs().join(", ");
    let message = commit_message(opts, target, &old, &new);
    Ok(Decision::Commit {
        files,
        message,
        old,
        new,
    })
}

/// The commit message: the template, then trailers recording the image,
/// the order key and the source pipeline.
pub fn commit_message(opts: &Options, target: &Target, old: &str, new: &str) -> String {
    let pipeline = opts.pipeline_url.clone().unwrap_or_default();
    let body = opts
        .message
        .replace("\\n", "\n")
        .replace("{image}", &opts.image)
        .replace("{old}", if old.is_empty() { "(none)" } else { old })
        .replace("{new}", new)
        .replace(
            "{pipeline_url}",
            if pipeline.is_empty() {
                "(not given)"
            } else {
                &pipeline
            },
        );
    let mut msg = body.trim_end().to_string();
    msg.push_str("\n\n");
    msg.push_str(&format!("Bump-Manifest-Image: {}\n", target.image.name()));
    msg.push_str(&format!("Bump-Manifest-Reference: {new}\n"));
    if let Some(k) = opts.order_key.as_deref().filter(|k| !k.trim().is_empty()) {
        msg.push_str(&format!("Bump-Manifest-Order-Key: {}\n", k.trim()));
    }
    if !pipeline.is_empty() {
        msg.push_str(&format!("Source-Pipeline: {pipeline}\n"));
    }
    msg
}

/// Logs a decision that ends the job without a commit.
pub fn log_no_commit(d: &Decision, opts: &Options, target: &Target) {
    match d {
        Decision::NothingFound => kit::joblog::warn(format!(
            "no reference to {} found; nothing to do (--allow-missing)",
            opts.image
        )),
        Decision::UpToDate => kit::joblog::info(format!(
            "already up to date: the repo holds {}",
            target.new_ref()
        )),
        Decision::Newer(k, r) => kit::joblog::info(format!(
            "not going backwards: {r} (order key {k}) is already deployed, newer than order key {}; nothing changed",
            opts.order_key.as_deref().unwrap_or("")
        )),
        Decision::Commit { .. } => {}
    }
}

/// Ends a run that makes no commit: logs why and, unless it is a dry run,
/// hands the current head on (stdout and dotenv) as a commit would have.
/// What one attempt commits, when it commits.
pub struct Commit {
    /// The manifests' unified diff (for `--dry-run`).
    pub diff: String,
    pub files: Vec<FileChange>,
    pub message: String,
    pub old: String,
    pub new: String,
}

/// One attempt of the commit-to-the-branch modes (push, gitlab-api) on
/// `head`: logs the references found on the first attempt, decides, and
/// ends the run when there is nothing to commit (`None`).
pub fn plan_commit(
    opts: &Options,
    target: &Target,
    plan: Plan,
    state_text: Option<&str>,
    head: &str,
    attempt: u32,
) -> JobResult<Option<Commit>> {
    if attempt == 1 {
        log_found(&plan, target, None);
    }
    let diff = plan.diff();
    match decide(opts, target, plan, state_text)? {
        Decision::Commit {
            files,
            message,
            old,
            new,
        } => Ok(Some(Commit {
            diff,
            files,
            message,
            old,
            new,
        })),
        d => finish_without_commit(&d, opts, target, head).map(|()| None),
    }
}

pub fn finish_without_commit(
    d: &Decision,
    opts: &Options,
    target: &Target,
    head: &str,
) -> JobResult<()> {
    log_no_commit(d, opts, target);
    if !opts.dry_run {
        println!("{head}");
        write_dotenv(
            opts,
            &[
                ("BUMP_MANIFEST_COMMIT", head),
                ("BUMP_MANIFEST_REFERENCE", &target.new_ref()),
            ],
        )?;
    }
    Ok(())
}

/// Logs what was found: a count (on `branch`, when named), then one line
/// per reference.
pub fn log_found(plan: &Plan, target: &Target, branch: Option<&str>) {
    let on = branch.map(|b| format!(" on {b}")).unwrap_or_default();
    kit::joblog::info(format!(
        "{} reference(s) to {} found{on}:",
        plan.found.len(),
        target.image.name()
    ));
    // Long lists (a fleet of overlays) fold away in the GitLab log.
    let _section = (plan.found.len() > 20).then(|| {
        kit::joblog::Section::start(
            "bump_manifest_found",
            &format!("{} references", plan.found.len()),
            true,
        )
    });
    for (path, f) in &plan.found {
        let what = if f.changed() {
            format!("{} -> {}", f.old, f.new)
        } else {
            format!("{} (current)", f.old)
        };
        kit::joblog::info(format!("  {path}:{} [{}] {what}", f.line, f.layout));
    }
    for s in &plan.skipped {
        kit::joblog::info(format!("  {s}: skipped (Helm template, not YAML)"));
    }
}

/// Writes the dotenv outputs when asked.
pub fn write_dotenv(opts: &Options, pairs: &[(&str, &str)]) -> JobResult<()> {
    let Some(path) = &opts.dotenv else {
        return Ok(());
    };
    let mut d = kit::dotenv::Dotenv::new();
    for (k, v) in pairs {
        d.set(k, v)?;
    }
    d.write(path)
}

/// Runs the job.
pub fn run(opts: &Options, env: &dyn Env) -> JobResult<()> {
    let target = opts.target()?;
    if opts.max_attempts == 0 {
        return Err(JobError::usage("--max-attempts must be at least 1"));
    }
    match opts.mode {
        Mode::Push => push::run(opts, &target),
        Mode::GitlabApi | Mode::MergeRequest => gitlab::run(opts, &target, env),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Options {
        let mut v = vec!["bump-manifest", "--repo", "/r", "--image", "acmeiot/app"];
        v.extend_from_slice(args);
        Options::try_parse_from(v).unwrap()
    }

    #[test]
    fn message_template_and_trailers() {
        let o = opts(&[
            "--new-tag",
            "2",
            "--order-key",
            "42",
            "--pipeline-url",
            "https://gl/p/1",
            "--message",
            "chore: {image} {old} -> {new}\\n\\nvia {pipeline_url}",
        ]);
        let t = o.target().unwrap();
        let m = commit_message(&o, &t, "docker.io/acmeiot/app:1", &t.new_ref());
        assert_eq!(
            m,
            "chore: acmeiot/app docker.io/acmeiot/app:1 -> docker.io/acmeiot/app:2\n\nvia https://gl/p/1\n\n\
             Bump-Manifest-Image: docker.io/acmeiot/app\nBump-Manifest-Reference: docker.io/acmeiot/app:2\n\
             Bump-Manifest-Order-Key: 42\nSource-Pipeline: https://gl/p/1\n"
        );
    }

    #[test]
    fn target_validation() {
        assert!(
            opts(&[])
                .target()
                .unwrap_err()
                .message
                .contains("--new-tag, --new-digest")
        );
        let t = opts(&[
            "--new-digest",
            &format!("sha256:{}", "a".repeat(64)),
            "--helm-key",
            "a.b.tag,c.d",
        ])
        .target()
        .unwrap();
        assert_eq!(t.helm_keys, vec![vec!["a", "b", "tag"], vec!["c", "d"]]);
        assert_eq!(t.suffix(), format!("@sha256:{}", "a".repeat(64)));
        assert!(
            opts(&["--new-tag", "1", "--helm-key", "a..b"])
                .target()
                .is_err()
        );
    }

    #[test]
    fn auth_user_defaults() {
        // Fields set directly: the test must not depend on CI_JOB_TOKEN or
        // CONFIG_REPO_TOKEN being set where it runs (they are, in GitLab CI).
        let mut o = opts(&["--new-tag", "1"]);
        o.token = None;
        o.token_user = None;
        o.job_token = Some(Secret::new("jt-123456"));
        assert_eq!(o.auth().unwrap().user, "gitlab-ci-token");
        o.token = Some(Secret::new("pat-123456"));
        let a = o.auth().unwrap();
        assert_eq!(
            (a.user.as_str(), a.token.expose()),
            ("oauth2", "pat-123456")
        );
        o.token = None;
        o.job_token = None;
        assert!(o.auth().is_none());
    }
}
