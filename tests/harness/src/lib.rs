//! Shared test harness: where the reference schemas are and how to validate
//! against them; helpers that start real components on 127.0.0.1.

pub mod argocd_sim;
pub mod git_server;
pub mod gitlab_sim;
pub mod job;
pub mod registry;
pub mod schemas;
pub mod tls_proxy;
