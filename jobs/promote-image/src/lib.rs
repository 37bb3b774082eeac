//! promote-image: copy an image's digest, byte for byte, to another
//! registry or repository (see README.md).
//!
//! - [`cli`]: flags (each with its environment variable).
//! - [`config`]: flags → validated [`Config`] (exit 2 before any request).
//! - [`run`]: the job ([`Job`]): the promotion, stdout and dotenv.
//! - [`promote`]: the promotion itself, over the shared `registry` client.
//! - [`carry`]: `--with-signatures`: `.sig`/`.att` tags and OCI referrers.
//! - [`error`]: [`Error`] and its exit codes.

pub mod carry;
pub mod cli;
pub mod config;
pub mod error;
pub mod promote;
pub mod run;

pub use config::Config;
pub use error::Error;
pub use promote::{Report, promote};
pub use run::Job;
