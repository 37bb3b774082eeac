//! sign-image: cosign-compatible signing and verification of container
//! image digests with ECDSA P-256 keys, in cosign's `.sig` tag format and
//! cosign 3's Sigstore bundle format.
//!
//! The job's shape (as in every secdeliv job): [`cli::Args`] (flags) →
//! [`kit::job::FromArgs`] for [`config::Config`] (all validation, the key included: exit 2
//! before any request) → [`run::run`] (the work, [`ops`]; what is printed,
//! [`report`]) → [`error::Error`] (one exit code per cause).
//!
//! - [`keys`]: cosign's key formats, ECDSA P-256 signing and verifying;
//! - [`keyref`]: `--key` as a path or `env://VAR`;
//! - [`payload`]: the simple-signing payload, byte for byte as cosign writes it;
//! - [`identity`]: which repository a payload was signed for, and which verify accepts;
//! - [`sigtag`]: the `sha256-<hex>.sig` manifest, append and dedupe;
//! - [`bundle`]: cosign 3's format, a Sigstore bundle (DSSE, in-toto) as an OCI referrer;
//! - [`verify`]: verify and verify-attestation, both formats, several keys.

pub mod bundle;
pub mod cli;
pub mod config;
pub mod error;
pub mod identity;
pub mod keyref;
pub mod keys;
pub mod ops;
pub mod payload;
pub mod report;
pub mod run;
pub mod sigtag;
pub mod verify;

/// The job, for `kit::job::main`.
pub struct Job;

impl kit::job::Work for Job {
    const NAME: &'static str = "sign-image";
    type Config = config::Config;
    type Error = error::Error;

    async fn run(
        config: config::Config,
        env: &dyn kit::env::Env,
    ) -> Result<kit::job::Outcome, error::Error> {
        run::run(config, env).await
    }
}
