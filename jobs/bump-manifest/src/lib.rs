//! bump-manifest: writes a new image reference (`name:tag@digest`) into a
//! GitOps config repo. Only the bytes of the changed scalars change
//! (`manifest-edit`); a concurrent pipeline's commit is never lost (fetch,
//! re-apply, retry, never force); and with `--order-key` an older pipeline
//! never overwrites a newer deploy.
//!
//! ```text
//! cli.rs        Args: the flags
//! config.rs     Config: every flag validated (exit 2) before any network call
//! run.rs        Job: picks the backend for --mode
//! attempt.rs    the one attempt loop, behind the Backend trait
//! decide.rs     plan + state -> commit, up to date, or newer deployed; the commit message
//! push.rs       Backend for --mode push (git)
//! api_modes.rs  Backends for --mode gitlab-api and merge-request
//! gitlab.rs     the typed GitLab REST client
//! git.rs        git through std::process; the built-in transport is git-remote-secdeliv
//! error.rs      Error and its exit codes
//! ```

pub mod api_modes;
pub mod attempt;
pub mod cli;
pub mod config;
pub mod decide;
pub mod error;
pub mod git;
pub mod gitlab;
pub mod push;
pub mod run;

pub use run::Job;
