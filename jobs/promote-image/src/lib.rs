//! promote-image: copy an image's digest, byte for byte, to another
//! registry or repository (see README.md).
//!
//! - [`cli`]: flags (each with its environment variable).
//! - [`promote`]: the promotion itself, over the shared `registry` client.

pub mod cli;
pub mod promote;

pub use promote::{Options, Outcome, promote, run};
