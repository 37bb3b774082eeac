//! Everything that can end a run early, each mapped to its exit code in one
//! place ([`Failure::exit_kind`]).

use std::path::PathBuf;
use std::time::Duration;

use kit::ExitKind;
use kit::job::Failure;

use crate::trivy::report::ReportError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// trivy is not on PATH (or not where --trivy says).
    #[error(
        "trivy not found ({}): install it (https://trivy.dev/latest/getting-started/installation/), set SCAN_TRIVY to its path, or convert an existing report with --trivy-report FILE",
        program.display()
    )]
    TrivyNotFound { program: PathBuf },

    #[error("cannot run trivy ({})", program.display())]
    TrivySpawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// trivy exited non-zero; `tail` is the end of its stderr, redacted.
    #[error("{what} failed with {status}: {tail}")]
    TrivyFailed {
        what: &'static str,
        status: String,
        tail: String,
    },

    #[error(
        "{what} did not finish within {}; raise --timeout (SCAN_TIMEOUT) or check the registry",
        kit::duration::human(*timeout)
    )]
    TrivyTimeout {
        what: &'static str,
        timeout: Duration,
    },

    #[error("{what}: waiting for the process failed")]
    TrivyWait {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// What trivy wrote is not a trivy JSON report (exit 3: the tool failed).
    #[error("trivy wrote a report that is {0}")]
    TrivyOutput(#[source] ReportError),

    /// The recorded report (--trivy-report) is not a trivy JSON report.
    #[error("{} is {source}", path.display())]
    RecordedReport {
        path: PathBuf,
        #[source]
        source: ReportError,
    },

    #[error("cannot read trivy's report {}", path.display())]
    ReadOutput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot create a temp directory for trivy")]
    TempDir(#[source] std::io::Error),

    /// Reading IMAGE's index (or manifest) failed; the registry crate's
    /// error knows its exit code.
    #[error("reading the platforms of the image")]
    Registry(#[from] registry::Error),

    /// A platform asked for with --platforms/--platform is not in the index.
    #[error(transparent)]
    UnknownPlatform(#[from] crate::platforms::UnknownPlatform),

    /// The index lists no platform image (attestations only).
    #[error(
        "{image} is an index without any platform image (only attestations or unknown/unknown entries): nothing to scan"
    )]
    NoPlatform { image: String },

    /// `trivy convert` wrote something that is not a CycloneDX document.
    #[error(transparent)]
    Sbom(#[from] crate::sbom::NotCycloneDx),

    /// `--baseline FILE` is not a GitLab container-scanning report (exit 2).
    #[error("--baseline (SCAN_BASELINE): {} is {source}", path.display())]
    Baseline {
        path: PathBuf,
        #[source]
        source: crate::mr_note::NotAReport,
    },

    /// A GitLab API call of `--mr-note` failed (after retries). The scan's
    /// reports and dotenv are written before.
    #[error("{what}")]
    Gitlab {
        what: String,
        #[source]
        source: kit::api::ApiError,
    },

    /// A local file (report, dotenv, SBOM) could not be written; kit's
    /// errors carry their own exit kind.
    #[error(transparent)]
    Kit(#[from] kit::JobError),
}

impl Failure for Error {
    fn exit_kind(&self) -> ExitKind {
        match self {
            Error::TrivyNotFound { .. } | Error::TrivySpawn { .. } => ExitKind::Usage,
            Error::RecordedReport { .. } => ExitKind::Usage,
            Error::TempDir(_) => ExitKind::Usage,
            Error::TrivyFailed { .. }
            | Error::TrivyWait { .. }
            | Error::TrivyOutput(_)
            | Error::ReadOutput { .. } => ExitKind::Remote,
            Error::TrivyTimeout { .. } => ExitKind::Timeout,
            Error::Registry(e) => e.exit_kind(),
            Error::UnknownPlatform(_) | Error::Baseline { .. } => ExitKind::Usage,
            Error::NoPlatform { .. } | Error::Sbom(_) => ExitKind::Remote,
            Error::Gitlab { source, .. } => kit::job::Failure::exit_kind(source),
            Error::Kit(e) => e.kind,
        }
    }
}
