//! notify-argocd: make Argo CD deploy the exact commit and wait until every
//! Application is Synced and Healthy on it.
//!
//! - [`cli`]: the flags
//! - [`config`]: every flag checked (exit 2) before the first request
//! - [`run`]: credentials, app selection, concurrency, summary, dotenv
//! - [`error`]: what stops the job, and its exit code
//! - [`api`]: Argo CD's REST API (grpc-gateway): where each request is sent
//! - [`model`]: Argo CD's answers as typed structs (its swagger spec)
//! - [`state`]: deciding "deployed" from an Application
//! - [`stream`]: the watch stream (server-sent events or newline-delimited JSON)
//! - [`watch`]: refresh, sync, stream with fallback to polling, for one app

pub mod api;
pub mod cli;
pub mod config;
pub mod error;
pub mod model;
pub mod run;
pub mod state;
pub mod stream;
pub mod watch;

pub use cli::{Args, WatchMode};
pub use config::Config;
pub use error::Error;
pub use run::Job;
