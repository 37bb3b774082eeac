//! The job: the config picks a backend, the attempt loop does the rest.

use kit::env::Env;
use kit::job::Outcome;

use crate::api_modes::{ApiBackend, Target, mr_branch};
use crate::attempt;
use crate::cli::Mode;
use crate::config::Config;
use crate::error::Error;
use crate::gitlab::Api;
use crate::push::PushBackend;

pub struct Job;

impl kit::job::Work for Job {
    const NAME: &'static str = "bump-manifest";
    type Config = Config;
    type Error = Error;

    async fn run(config: Config, env: &dyn Env) -> Result<Outcome, Error> {
        run(&config, env).await.map(|()| Outcome::Done)
    }
}

pub async fn run(c: &Config, env: &dyn Env) -> Result<(), Error> {
    match (c.mode, &c.api) {
        (Mode::GitlabApi, Some(api)) => {
            let api = Api::new(c, api, env)?;
            let to = Target::Branch;
            attempt::run(c, &mut ApiBackend { c, api, to }).await
        }
        (Mode::MergeRequest, Some(api)) => {
            let api = Api::new(c, api, env)?;
            let to = Target::MergeRequest {
                source: mr_branch(c),
            };
            attempt::run(c, &mut ApiBackend { c, api, to }).await
        }
        _ => attempt::run(c, &mut PushBackend::new(c)?).await,
    }
}
