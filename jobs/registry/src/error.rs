//! What can go wrong talking to a registry, each mapped to one exit code in
//! [`Error::exit_kind`] (the one place).

use kit::ExitKind;
use kit::api::ApiError;

/// A registry operation that failed. `Display` is the operation and what
/// went wrong; the source chain (an [`ApiError`] with the status, URL and the
/// registry's own message) is kept for the log line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry answered with an error status, sent an answer we cannot
    /// use, or could not be reached (after retries). A timeout is exit 4.
    #[error("{what}{hint}")]
    Api {
        what: String,
        /// What the status usually means (` (not found)`), or empty.
        hint: String,
        #[source]
        source: ApiError,
    },
    /// The manifest (tag or digest) does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The registry refused our login or wants one we do not have.
    #[error("{what}: {reason}")]
    Auth { what: String, reason: String },
    /// The token endpoint refused the exchange.
    #[error(transparent)]
    Token(Box<TokenFailure>),
    /// Credentials would have gone to an origin the rule does not allow
    /// (README: "Where credentials go").
    #[error("{what}: {reason}; the credentials were not sent")]
    CredentialOrigin { what: String, reason: String },
    /// An HTTPS registry pointed at a plain-HTTP URL (token realm, upload
    /// `Location`, `Link` next page, redirect).
    #[error("{what}: refusing the {kind} {to} from HTTPS registry {registry}: it is plain HTTP")]
    Downgrade {
        what: String,
        kind: &'static str,
        to: String,
        registry: String,
    },
    /// Bytes whose digest is not the one asked for or announced.
    #[error("{what}: {detail}")]
    Digest { what: String, detail: String },
    /// A manifest that cannot be read (not JSON, schema 1, bad descriptor).
    #[error("{0}")]
    Manifest(String),
    /// A referrers list (the OCI 1.1 referrers API's answer, or the image
    /// index under the referrers tag schema's `sha256-<hex>` tag) that is not
    /// a valid image index: exit 3, naming the endpoint.
    #[error("{what}: {endpoint} is not a valid OCI image index of referrers: {reason}")]
    Referrers {
        what: String,
        /// The URL (no query) that answered.
        endpoint: String,
        reason: Box<crate::referrers::NotAnIndex>,
    },
    /// Input the caller gave that cannot be used (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Credentials discovery and client setup (the kit's own errors).
    #[error(transparent)]
    Kit(#[from] kit::JobError),
    /// Where the error happened, added by a caller ([`Error::context`]).
    #[error("{what}")]
    Context {
        what: String,
        #[source]
        source: Box<Error>,
    },
}

/// A failed token exchange (boxed in [`Error::Token`]: it is the largest).
#[derive(Debug, thiserror::Error)]
#[error("{what}: token exchange with {realm} for {scope} failed{hint}")]
pub struct TokenFailure {
    pub what: String,
    pub realm: String,
    pub scope: String,
    pub hint: String,
    #[source]
    pub source: ApiError,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An answer we cannot use (no upload `Location`, a `Location` that is
    /// not a URL, a `Link` loop): exit 3, "unexpected answer from registry at …".
    pub fn unexpected(what: &str, url: &impl std::fmt::Display, reason: &str) -> Error {
        Error::Api {
            what: what.to_string(),
            hint: String::new(),
            source: ApiError::unexpected(crate::transport::SERVICE, &url.to_string(), reason),
        }
    }

    /// Prefixes where it happened (`resolving tag x: …`), keeping the exit code.
    pub fn context(self, what: impl std::fmt::Display) -> Error {
        Error::Context {
            what: what.to_string(),
            source: Box::new(self),
        }
    }

    /// The HTTP status the registry answered, if that is what failed.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { source, .. } => source.status(),
            Error::Token(t) => t.source.status(),
            Error::Context { source, .. } => source.status(),
            _ => None,
        }
    }

    /// The exit code this error means.
    pub fn exit_kind(&self) -> ExitKind {
        match self {
            Error::Api { source, .. } => kit::job::Failure::exit_kind(source),
            Error::Token(t) => kit::job::Failure::exit_kind(&t.source),
            Error::NotFound(_)
            | Error::Auth { .. }
            | Error::CredentialOrigin { .. }
            | Error::Downgrade { .. }
            | Error::Digest { .. }
            | Error::Manifest(_)
            | Error::Referrers { .. } => ExitKind::Remote,
            Error::Usage(_) => ExitKind::Usage,
            Error::Kit(e) => e.kind,
            Error::Context { source, .. } => source.exit_kind(),
        }
    }
}

impl kit::job::Failure for Error {
    fn exit_kind(&self) -> ExitKind {
        Error::exit_kind(self)
    }
}

/// For jobs still returning `kit::JobResult`: the exit code and the whole
/// cause chain on one line.
impl From<Error> for kit::JobError {
    fn from(e: Error) -> Self {
        kit::JobError::new(e.exit_kind(), kit::job::cause_line(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_exit_code_and_the_chain() {
        let e = Error::NotFound("r/a:1".into()).context("resolving tag r/a:1 to a digest");
        assert_eq!(e.exit_kind(), ExitKind::Remote);
        let j: kit::JobError = e.into();
        assert_eq!(j.kind, ExitKind::Remote);
        assert_eq!(
            j.message,
            "resolving tag r/a:1 to a digest: r/a:1 not found"
        );
        let u: kit::JobError = Error::Usage("bad".into()).into();
        assert_eq!(u.kind, ExitKind::Usage);
    }
}
