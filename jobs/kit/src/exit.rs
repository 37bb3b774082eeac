//! The exit codes every job uses (listed in the root README.md and each
//! job's README) and the error type that carries
//! them from the library to `main`.

use std::fmt;

/// What went wrong, in the terms of the exit codes the READMEs list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitKind {
    /// Policy said no: findings over the gate, signature invalid, app Degraded.
    Policy = 1,
    /// Usage or input error: bad flag, malformed file, bad image reference.
    Usage = 2,
    /// Remote or infrastructure error after retries.
    Remote = 3,
    /// Timed out.
    Timeout = 4,
}

impl ExitKind {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A job failure: the exit code plus a one-line cause a person can act on.
///
/// The message must never contain a secret; build it from redacted parts
/// (see [`crate::secret`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub kind: ExitKind,
    pub message: String,
}

pub type JobResult<T> = Result<T, JobError>;

impl JobError {
    pub fn new(kind: ExitKind, message: impl Into<String>) -> Self {
        // Keep it to one line: GitLab shows the last line of a failed job.
        let message = message.into().replace(['\r', '\n'], " ");
        JobError { kind, message }
    }
    pub fn policy(message: impl Into<String>) -> Self {
        Self::new(ExitKind::Policy, message)
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ExitKind::Usage, message)
    }
    pub fn remote(message: impl Into<String>) -> Self {
        Self::new(ExitKind::Remote, message)
    }
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ExitKind::Timeout, message)
    }
    /// Prefix the message with where it happened ("reading allowlist.yml: …").
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JobError {}

/// Adds an exit kind and context to any error, for `?` in job code.
pub trait ResultExt<T> {
    fn or_exit(self, kind: ExitKind, what: impl fmt::Display) -> JobResult<T>;
}

impl<T, E: fmt::Display> ResultExt<T> for Result<T, E> {
    fn or_exit(self, kind: ExitKind, what: impl fmt::Display) -> JobResult<T> {
        self.map_err(|e| JobError::new(kind, format!("{what}: {e}")))
    }
}

/// Ends a job: prints the one-line cause on stderr and maps to the exit code.
/// Used by every `main.rs` so the output shape is the same for all jobs.
pub fn finish(job: &str, result: JobResult<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{job}: error: {}", e.message);
            std::process::ExitCode::from(e.kind.code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_design_table() {
        assert_eq!(ExitKind::Policy.code(), 1);
        assert_eq!(ExitKind::Usage.code(), 2);
        assert_eq!(ExitKind::Remote.code(), 3);
        assert_eq!(ExitKind::Timeout.code(), 4);
    }

    #[test]
    fn message_is_one_line_and_context_prefixes() {
        let e = JobError::usage("bad\nthing").context("reading x.yml");
        assert_eq!(e.message, "reading x.yml: bad thing");
        assert_eq!(e.kind, ExitKind::Usage);
    }

    #[test]
    fn or_exit_maps_errors() {
        let r: Result<(), std::io::Error> = Err(std::io::Error::other("boom"));
        let e = r
            .or_exit(ExitKind::Remote, "talking to registry")
            .unwrap_err();
        assert_eq!(e.kind, ExitKind::Remote);
        assert_eq!(e.message, "talking to registry: boom");
    }
}
