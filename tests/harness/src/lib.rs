//! Shared test harness: where the reference schemas are and how to validate
//! against them; helpers that start real components on 127.0.0.1.
//!
//! - [`http_server`]: the one HTTP server (hyper) the simulators and the git
//!   server run on; HTTPS, graceful stop on drop, a log of what it received.
//! - [`tls`]: test CAs and server certificates from rcgen (no `openssl`).
//! - [`origin`]: [`origin::RecordingOrigin`], a server on another port that
//!   records every request and answers from a script (302 `Location`, 401
//!   `WWW-Authenticate`, …), to prove a credential never went there.
//! - [`git_server`], [`gitlab_sim`], [`argocd_sim`], [`registry`]: a real
//!   git server, GitLab and Argo CD simulators, real registries and a gateway.
//! - [`oci_registry`]: a registry with the OCI 1.1 referrers API
//!   (go-containerregistry's, built from `tests/peers/ociregistry`), and
//!   [`oci_registry::AnyRegistry`] to run one test body against both kinds.
//! - [`tls_proxy`]: TLS in front of any plain server.
//! - [`job`]: starting a job binary and checking its exit code, cause and
//!   secrets.

pub mod argocd_sim;
pub mod git_server;
pub mod gitlab_sim;
pub mod http_server;
pub mod job;
pub mod oci_registry;
pub mod origin;
pub mod registry;
pub mod schemas;
pub mod tls;
pub mod tls_proxy;
