//! Every flag validated (exit 2) before any network call.

use std::path::PathBuf;
use std::time::Duration;

use kit::env::Env;
use kit::job::{FromArgs, UsageError};
use kit::reference::{Digest, ImageRef};
use kit::secret::Secret;
use manifest_edit::Target;

use crate::cli::{Args, Mode, Transport};

/// How to authenticate over HTTP(S).
#[derive(Clone, Debug)]
pub struct Auth {
    pub user: String,
    pub token: Secret,
}

/// The author and committer of the bump commit.
#[derive(Clone, Debug)]
pub struct Author {
    pub name: String,
    pub email: String,
}

/// Where the GitLab API modes send their requests.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// `https://gitlab.example.com/api/v4`, no trailing slash.
    pub base: String,
    /// `group/project` or a numeric id, not yet URL-encoded.
    pub project: String,
    /// `PRIVATE-TOKEN` or `JOB-TOKEN`, and the token.
    pub header: (&'static str, Secret),
    pub request_timeout: Duration,
}

/// The validated run.
#[derive(Debug, Clone)]
pub struct Config {
    pub repo: String,
    pub branch: String,
    /// `--image` as given (for messages).
    pub image: String,
    pub target: Target,
    /// Cleaned `--path` entries; empty = the whole repo.
    pub paths: Vec<String>,
    pub order_key: Option<String>,
    pub mode: Mode,
    pub dry_run: bool,
    pub allow_missing: bool,
    pub message: String,
    pub pipeline_url: Option<String>,
    pub author: Author,
    pub auth: Option<Auth>,
    /// Set in the API modes.
    pub api: Option<ApiConfig>,
    pub mr_branch: Option<String>,
    pub auto_merge: bool,
    pub scan_summary: Option<String>,
    pub max_attempts: u32,
    pub retry_delay_ms: u64,
    pub git_transport: Transport,
    pub max_file_size: u64,
    pub workdir: Option<PathBuf>,
    pub dotenv: Option<PathBuf>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|x| x.trim().to_string()).filter(|x| !x.is_empty())
}

impl FromArgs for Config {
    type Args = Args;

    fn from_args(a: Args, env: &dyn Env) -> Result<Config, UsageError> {
        let target = target(&a)?;
        let paths = manifest_edit::paths::normalize(&a.paths)
            .map_err(|e| UsageError::new(e.to_string()))?;
        if a.max_attempts == 0 {
            return Err(UsageError::new("--max-attempts must be at least 1"));
        }
        let request_timeout = kit::duration::parse(&a.request_timeout)
            .map_err(|e| UsageError::with_source("--request-timeout (BUMP_REQUEST_TIMEOUT)", e))?;
        if request_timeout.is_zero() {
            return Err(UsageError::new(
                "--request-timeout (BUMP_REQUEST_TIMEOUT) must be more than 0",
            ));
        }
        if let Some(w) = &a.workdir
            && w.exists()
            && std::fs::read_dir(w).map_or(true, |mut d| d.next().is_some())
        {
            return Err(UsageError::new(format!(
                "--workdir {} must not exist or be empty",
                w.display()
            )));
        }
        let api = match a.mode {
            Mode::Push => None,
            Mode::GitlabApi | Mode::MergeRequest => Some(api_config(&a, env, request_timeout)?),
        };
        let author = Author {
            name: non_empty(Some(a.author_name.clone())).unwrap_or_else(|| "bump-manifest".into()),
            email: non_empty(Some(a.author_email.clone()))
                .unwrap_or_else(|| "bump-manifest@localhost".into()),
        };
        Ok(Config {
            auth: auth(&a),
            repo: a.repo,
            branch: a.branch,
            image: a.image,
            target,
            paths,
            order_key: non_empty(a.order_key),
            mode: a.mode,
            dry_run: a.dry_run,
            allow_missing: a.allow_missing,
            message: a.message,
            pipeline_url: non_empty(a.pipeline_url),
            author,
            api,
            mr_branch: non_empty(a.mr_branch),
            auto_merge: a.auto_merge,
            scan_summary: non_empty(a.scan_summary),
            max_attempts: a.max_attempts,
            retry_delay_ms: a.retry_delay_ms,
            git_transport: a.git_transport,
            max_file_size: a.max_file_size,
            workdir: a.workdir,
            dotenv: a.dotenv,
        })
    }
}

impl Config {
    /// The order-key state entry's key: the image, scoped to `--path`.
    pub fn scope(&self) -> String {
        manifest_edit::state::scope_key(&self.target.image.name(), &self.paths)
    }

    /// The jittered, growing pause before attempt `attempt + 1`.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let base = Duration::from_millis(self.retry_delay_ms.max(1));
        let max = base * 10;
        let exp = base.saturating_mul(1u32 << attempt.min(10)).min(max);
        // Full jitter, so a crowd of writers spreads out.
        exp.mul_f64(0.25 + 0.75 * fastrand::f64())
    }
}

/// Validates the reference parts and builds the rules' target.
fn target(a: &Args) -> Result<Target, UsageError> {
    let image = ImageRef::parse(a.image.trim())
        .map_err(|e| UsageError::new(format!("--image: {}", e.reason)))?;
    if image.tag.is_some() || image.digest.is_some() {
        return Err(UsageError::new(format!(
            "--image {:?} must be the name only; pass the tag with --new-tag and the digest with --new-digest",
            a.image
        )));
    }
    let tag = non_empty(a.new_tag.clone());
    let digest = non_empty(a.new_digest.clone());
    if let Some(t) = &tag {
        ImageRef::parse(&format!("x:{t}"))
            .map_err(|e| UsageError::new(format!("--new-tag: {}", e.reason)))?;
    }
    if let Some(d) = &digest {
        d.parse::<Digest>()
            .map_err(|e| UsageError::new(format!("--new-digest: {}", e.reason)))?;
    }
    if tag.is_none() && digest.is_none() {
        return Err(UsageError::new("give --new-tag, --new-digest or both"));
    }
    let helm_keys = a
        .helm_keys
        .iter()
        .filter(|k| !k.trim().is_empty())
        .map(|k| {
            let parts: Vec<String> = k.trim().split('.').map(str::to_string).collect();
            if parts.iter().any(String::is_empty) {
                Err(UsageError::new(format!(
                    "--helm-key {k:?} is not a dotted key path like sensor.image.tag"
                )))
            } else {
                Ok(parts)
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Target {
        image,
        tag,
        digest,
        helm_keys,
    })
}

/// The token and the user name git sends with it.
fn auth(a: &Args) -> Option<Auth> {
    if let Some(t) = a.token.as_ref().filter(|t| !t.is_empty()) {
        return Some(Auth {
            user: a.token_user.clone().unwrap_or_else(|| "oauth2".into()),
            token: t.clone(),
        });
    }
    a.job_token
        .as_ref()
        .filter(|t| !t.is_empty())
        .map(|t| Auth {
            user: a
                .token_user
                .clone()
                .unwrap_or_else(|| "gitlab-ci-token".into()),
            token: t.clone(),
        })
}

fn api_config(a: &Args, env: &dyn Env, request_timeout: Duration) -> Result<ApiConfig, UsageError> {
    let base = non_empty(a.gitlab_api_url.clone())
        .or_else(|| {
            non_empty(env.var("CI_SERVER_URL"))
                .map(|u| format!("{}/api/v4", u.trim_end_matches('/')))
        })
        .ok_or_else(|| {
            UsageError::new(
                "set --gitlab-api-url (CI_API_V4_URL) for gitlab-api and merge-request modes",
            )
        })?;
    let parsed = url::Url::parse(&base)
        .map_err(|e| UsageError::with_source(format!("--gitlab-api-url {base:?}"), e))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(UsageError::new(format!(
            "--gitlab-api-url {base:?} must be an http(s) URL"
        )));
    }
    let header = if let Some(t) = a.token.clone().filter(|t| !t.is_empty()) {
        ("PRIVATE-TOKEN", t)
    } else if let Some(t) = a.job_token.clone().filter(|t| !t.is_empty()) {
        ("JOB-TOKEN", t)
    } else {
        return Err(UsageError::new(
            "set CONFIG_REPO_TOKEN (or CI_JOB_TOKEN) for the GitLab API",
        ));
    };
    Ok(ApiConfig {
        base: base.trim_end_matches('/').to_string(),
        project: project_of(a)?,
        header,
        request_timeout,
    })
}

/// The project from --project, or from --repo's URL path.
fn project_of(a: &Args) -> Result<String, UsageError> {
    if let Some(p) = non_empty(a.project.clone()) {
        return Ok(p.trim_matches('/').to_string());
    }
    let u = url::Url::parse(&a.repo).map_err(|_| {
        UsageError::new(
            "gitlab-api and merge-request modes need --project (CONFIG_REPO_PROJECT) or an https --repo URL",
        )
    })?;
    let p = u
        .path()
        .trim_matches('/')
        .trim_end_matches(".git")
        .to_string();
    if p.is_empty() {
        return Err(UsageError::new(
            "cannot tell the project from --repo; pass --project",
        ));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kit::env::MapEnv;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["bump-manifest", "--repo", "/r", "--image", "acmeiot/app"];
        v.extend_from_slice(extra);
        kit::cli::try_parse_from(v).unwrap()
    }

    fn config(extra: &[&str]) -> Result<Config, UsageError> {
        Config::from_args(args(extra), &MapEnv::new([]))
    }

    #[test]
    fn target_validation() {
        assert!(
            config(&[])
                .unwrap_err()
                .message
                .contains("--new-tag, --new-digest")
        );
        let c = config(&[
            "--new-digest",
            &format!("sha256:{}", "a".repeat(64)),
            "--helm-key",
            "a.b.tag,c.d",
        ])
        .unwrap();
        assert_eq!(
            c.target.helm_keys,
            vec![vec!["a", "b", "tag"], vec!["c", "d"]]
        );
        assert_eq!(c.target.suffix(), format!("@sha256:{}", "a".repeat(64)));
        assert!(config(&["--new-tag", "1", "--helm-key", "a..b"]).is_err());
    }

    #[test]
    fn auth_user_defaults() {
        // Fields set directly: the test must not depend on CI_JOB_TOKEN or
        // CONFIG_REPO_TOKEN being set where it runs (they are, in GitLab CI).
        let mut a = args(&["--new-tag", "1"]);
        a.token = None;
        a.token_user = None;
        a.job_token = Some(Secret::new("jt-123456"));
        assert_eq!(auth(&a).unwrap().user, "gitlab-ci-token");
        a.token = Some(Secret::new("pat-123456"));
        let x = auth(&a).unwrap();
        assert_eq!(
            (x.user.as_str(), x.token.expose()),
            ("oauth2", "pat-123456")
        );
        a.token = None;
        a.job_token = None;
        assert!(auth(&a).is_none());
    }

    /// One rule for `--path` in every mode (issue 17, finding 7).
    #[test]
    fn empty_path_entries_are_refused_in_every_mode() {
        for mode in ["push", "gitlab-api", "merge-request"] {
            let base = [
                "--new-tag",
                "1",
                "--mode",
                mode,
                "--gitlab-api-url",
                "https://g/api/v4",
                "--token",
                "glpat-x123456",
                "--project",
                "a/b",
            ];
            for p in ["a,,b", "a,", ",a", ".,a"] {
                let mut v = base.to_vec();
                v.extend(["--path", p]);
                let e = config(&v).unwrap_err();
                assert!(e.message.starts_with("--path"), "{mode} {p}: {}", e.message);
            }
            let mut v = base.to_vec();
            v.extend(["--path", "."]);
            assert!(config(&v).unwrap().paths.is_empty());
            let mut v = base.to_vec();
            v.extend(["--path", "./apps/,b/"]);
            assert_eq!(config(&v).unwrap().paths, vec!["apps", "b"]);
        }
    }
}
