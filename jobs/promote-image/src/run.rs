//! The job: promote, then print `DST@sha256:…` and write the dotenv file.

use kit::dotenv::Dotenv;
use kit::env::Env;
use kit::job::Outcome;

use crate::config::Config;
use crate::error::Error;

/// promote-image for [`kit::job::main`].
pub struct Job;

impl kit::job::Work for Job {
    const NAME: &'static str = "promote-image";
    /// Blobs stream in parallel (`--parallel`): two workers keep a slow
    /// source read from stalling the uploads beside it.
    const MULTI_THREAD: bool = true;
    type Config = Config;
    type Error = Error;

    async fn run(config: Config, env: &dyn Env) -> Result<Outcome, Error> {
        run(config, env).await
    }
}

/// The work: the promotion, then its outputs.
pub async fn run(config: Config, env: &dyn Env) -> Result<Outcome, Error> {
    let report = crate::promote::promote(&config, env).await?;
    if let Some(path) = &config.dotenv {
        let output = |source| Error::Output {
            path: path.display().to_string(),
            source,
        };
        let mut d = Dotenv::new();
        d.set("PROMOTED_IMAGE", &report.reference).map_err(output)?;
        d.set("PROMOTED_DIGEST", &report.digest).map_err(output)?;
        d.write(path).map_err(output)?;
    }
    println!("{}", report.reference);
    Ok(Outcome::Done)
}
