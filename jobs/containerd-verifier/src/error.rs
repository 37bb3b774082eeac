//! What can go wrong after the config is valid, and the one place each
//! cause gets its exit code. A missing or invalid signature is not an error
//! but a refusal (exit 1, see [`crate::run::Verdict`]).

use kit::ExitKind;
use kit::job::Failure;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// registries.yaml cannot be used for an image that needs verifying.
    #[error("{cause}")]
    Registries { cause: String },
    /// Reading the signatures failed at every endpoint (unreachable, auth,
    /// 5xx after retries, a request timeout); the registry crate decides 3 or 4.
    #[error("{repository}@{digest}: cannot read signatures from {endpoint}")]
    Registry {
        repository: String,
        digest: String,
        endpoint: String,
        #[source]
        source: Box<sign_image::error::Error>,
    },
}

impl Failure for Error {
    fn exit_kind(&self) -> ExitKind {
        match self {
            Error::Registries { .. } => ExitKind::Usage,
            Error::Registry { source, .. } => source.exit_kind(),
        }
    }
}
