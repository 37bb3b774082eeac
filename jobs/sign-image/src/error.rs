//! What can go wrong after the config is valid, and the one place each cause
//! gets its exit code. A verify that finds no valid signature is not an error
//! but [`kit::job::Outcome::Refused`] (exit 1, see [`crate::ops::Refusal`]).

use std::path::PathBuf;

use kit::ExitKind;

use crate::keys::KeyError;
use crate::sigtag::SigManifestError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry client failed: unreachable, auth refused, not found,
    /// 4xx/5xx after retries (exit 3), or a request timed out (exit 4); the
    /// registry crate decides which.
    #[error(transparent)]
    Registry(Box<registry::Error>),
    #[error("resolving tag {image} to a digest")]
    ResolveTag {
        image: String,
        #[source]
        source: Box<registry::Error>,
    },
    /// `--platform` names a platform the index does not have.
    #[error("{image} has no {platform} manifest (it has: {have})")]
    UnknownPlatform {
        image: String,
        platform: String,
        have: String,
    },
    #[error("{image} disappeared while reading it")]
    Disappeared { image: String },
    /// The `.sig` tag holds something that is not a manifest we can append to.
    #[error("{name}:{tag}: {source}; refusing to overwrite it")]
    ForeignSignatures {
        name: String,
        tag: String,
        #[source]
        source: SigManifestError,
    },
    /// No signature verified, and one payload could not be read.
    #[error("reading the payload of signature layer {layer}")]
    Payload {
        layer: String,
        #[source]
        source: Box<registry::Error>,
    },
    /// generate-key-pair: a key could not be made or encoded.
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot write {}: {source}", path.display())]
    WriteKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// kit's atomic writer (the public key file).
    #[error(transparent)]
    Write(kit::JobError),
}

impl From<registry::Error> for Error {
    fn from(e: registry::Error) -> Self {
        Error::Registry(Box::new(e))
    }
}

impl kit::job::Failure for Error {
    fn exit_kind(&self) -> ExitKind {
        match self {
            Error::Registry(e) => e.exit_kind(),
            Error::ResolveTag { source, .. } | Error::Payload { source, .. } => source.exit_kind(),
            Error::Write(e) => e.kind,
            Error::UnknownPlatform { .. } => ExitKind::Usage,
            Error::Disappeared { .. } | Error::ForeignSignatures { .. } => ExitKind::Remote,
            Error::Key(_) | Error::WriteKey { .. } => ExitKind::Usage,
        }
    }
}
