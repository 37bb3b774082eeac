//! What can go wrong in a promotion, mapped to exit codes in one place.

use kit::ExitKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A registry operation failed (its own exit code: 3, 4 on a timeout,
    /// 2 for input it cannot use).
    #[error(transparent)]
    Registry(#[from] registry::Error),
    /// `--platform` names a platform SRC does not have.
    #[error("--platform {platform}: the source image has no {platform} manifest (it has: {have})")]
    Platform { platform: String, have: String },
    /// SRC's index cannot be walked.
    #[error("{0}")]
    Index(String),
    /// The dotenv file cannot be written.
    #[error("writing {path}")]
    Output {
        path: String,
        #[source]
        source: kit::JobError,
    },
}

impl kit::job::Failure for Error {
    fn exit_kind(&self) -> ExitKind {
        match self {
            Error::Registry(e) => e.exit_kind(),
            Error::Platform { .. } => ExitKind::Usage,
            Error::Index(_) => ExitKind::Remote,
            Error::Output { source, .. } => source.kind,
        }
    }
}
