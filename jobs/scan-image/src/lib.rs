//! scan-image: trivy findings as GitLab merge-request security reports, with
//! a severity gate.
//!
//! The job's shape (as in every secdeliv job): [`cli::Args`] (flags) →
//! [`kit::job::FromArgs`] for [`config::Config`] (all validation, exit 2) → [`run::run`]
//! (trivy, reports, gate) → [`error::Error`] (one exit code per cause).

pub mod cli;
pub mod config;
pub mod error;
pub mod finding;
pub mod gitlab;
pub mod mr_note;
pub mod platforms;
pub mod report;
pub mod run;
pub mod sbom;
pub mod severity;
pub mod summary;
pub mod suppress;
pub mod trivy;

/// The job, for `kit::job::main`.
pub struct Job;

impl kit::job::Work for Job {
    const NAME: &'static str = "scan-image";
    type Config = config::Config;
    type Error = error::Error;

    async fn run(
        config: config::Config,
        env: &dyn kit::env::Env,
    ) -> Result<kit::job::Outcome, error::Error> {
        run::run(&config, env).await
    }
}
