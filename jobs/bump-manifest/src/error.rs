//! Every way the job fails, and the one place each maps to an exit code.

use kit::ExitKind;
use kit::api::ApiError;

use crate::git::GitError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file, path, or the state cannot be edited (the user's input).
    #[error(transparent)]
    Edit(#[from] manifest_edit::Error),
    #[error(
        "no reference to {image} found in {place} (kustomize images, Helm values, workload manifests, Argo CD Applications); check --image and --path, or pass --allow-missing"
    )]
    NothingFound { image: String, place: String },
    #[error("cannot create a temp dir")]
    TempDir(#[source] std::io::Error),
    #[error("--workdir {path}")]
    Workdir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(
        "push to {repo} {branch} still rejected after {attempts} attempts (busy branch); re-run the job or raise --max-attempts"
    )]
    StillRejected {
        repo: String,
        branch: String,
        attempts: u32,
    },
    #[error(
        "the commit to {branch} was refused as stale {attempts} times (busy branch); re-run the job or raise --max-attempts"
    )]
    StillStale { branch: String, attempts: u32 },
    /// A GitLab answer: error status, unexpected shape, or no answer.
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the token ({header}) was refused; it needs the api scope (or write_repository)")]
    Denied {
        header: &'static str,
        #[source]
        source: ApiError,
    },
    #[error(
        "GitLab answered {status} to {method} {url}, redirecting to {origin}; the token is never sent after a redirect: point --gitlab-api-url (CI_API_V4_URL) at the API itself"
    )]
    Redirected {
        method: &'static str,
        url: String,
        status: u16,
        origin: String,
    },
    #[error(
        "GitLab project {0} not found, or the token cannot see it; check --project (CONFIG_REPO_PROJECT)"
    )]
    ProjectNotFound(String),
    #[error("branch {0} does not exist in the config repo")]
    NoBranch(String),
    #[error("cannot set up the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("cannot read the CA bundles")]
    Ca(#[source] kit::JobError),
    #[error("cannot write the dotenv file")]
    Dotenv(#[source] kit::JobError),
}

impl kit::job::Failure for Error {
    fn exit_kind(&self) -> ExitKind {
        match self {
            Error::Edit(_)
            | Error::NothingFound { .. }
            | Error::TempDir(_)
            | Error::Workdir { .. }
            | Error::Ca(_)
            | Error::Client(_) => ExitKind::Usage,
            Error::Git(e) => e.exit_kind(),
            Error::Api(e) | Error::Denied { source: e, .. } => e.exit_kind(),
            Error::Dotenv(e) => e.kind,
            Error::StillRejected { .. }
            | Error::StillStale { .. }
            | Error::Redirected { .. }
            | Error::ProjectNotFound(_)
            | Error::NoBranch(_) => ExitKind::Remote,
        }
    }
}
