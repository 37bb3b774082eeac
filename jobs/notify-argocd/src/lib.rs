//! notify-argocd: make Argo CD deploy the exact commit and wait until every
//! Application is Synced and Healthy on it.
//!
//! - [`api`]: Argo CD's REST API (grpc-gateway) and its error bodies
//! - [`state`]: reading an Application and deciding "deployed"
//! - [`stream`]: the watch stream (server-sent events or newline-delimited JSON)
//! - [`watch`]: refresh, sync, stream with fallback to polling, for one app
//! - [`run`]: credentials, app selection, concurrency, summary, dotenv

pub mod api;
pub mod run;
pub mod state;
pub mod stream;
pub mod watch;

pub use run::{Options, run};
pub use watch::WatchMode;
