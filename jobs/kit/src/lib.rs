//! What every secdeliv job shares.
//!
//! Each module holds one concern; job crates call into these instead of
//! re-implementing them, so every job behaves the same way for the same input
//! (credentials, retries, exit codes, log layout, secret hygiene).

pub mod api;
pub mod cli;
pub mod credentials;
pub mod dotenv;
pub mod duration;
pub mod env;
pub mod exit;
pub mod fsutil;
pub mod http;
pub mod job;
pub mod joblog;
pub mod reference;
pub mod secret;

pub use exit::{ExitKind, JobError, JobResult};
