//! The job: the config picks a backend, the attempt loop does the rest.

use kit::env::Env;
use kit::job::{Outcome, UsageError};

use crate::api_modes::{DirectBackend, MergeRequestBackend, mr_branch};
use crate::attempt;
use crate::cli::{Args, Mode};
use crate::config::Config;
use crate::error::Error;
use crate::gitlab::Api;
use crate::push::PushBackend;

pub struct Job;

impl kit::job::Job for Job {
    const NAME: &'static str = "bump-manifest";
    type Args = Args;
    type Config = Config;
    type Error = Error;

    fn config(args: Args, env: &dyn Env) -> Result<Config, UsageError> {
        Config::from_args(args, env)
    }

    async fn run(config: Config, env: &dyn Env) -> Result<Outcome, Error> {
        run(&config, env).await.map(|()| Outcome::Done)
    }
}

pub async fn run(c: &Config, env: &dyn Env) -> Result<(), Error> {
    match (c.mode, &c.api) {
        (Mode::GitlabApi, Some(api)) => {
            let api = Api::new(c, api, env)?;
            attempt::run(c, &mut DirectBackend { c, api }).await
        }
        (Mode::MergeRequest, Some(api)) => {
            let api = Api::new(c, api, env)?;
            let source = mr_branch(c);
            attempt::run(c, &mut MergeRequestBackend { c, api, source }).await
        }
        _ => attempt::run(c, &mut PushBackend::new(c)?).await,
    }
}
