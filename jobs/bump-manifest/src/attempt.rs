//! The one attempt loop every mode runs: read the head, plan, decide, and
//! publish through a [`Backend`]; a publish refused as stale (a concurrent
//! writer) is re-planned on the new head after a jittered pause, up to
//! `--max-attempts`. Dry runs print the same diff (state file included) in
//! every mode.

use kit::joblog::info;
use manifest_edit::Plan;

use crate::config::Config;
use crate::decide::{self, Commit, Decision};
use crate::error::Error;

/// What a finished run hands on: a line on stdout and dotenv pairs.
#[derive(Debug, Default)]
pub struct Output {
    pub stdout: Option<String>,
    pub dotenv: Vec<(&'static str, String)>,
}

impl Output {
    /// A commit on the branch (new, or the head that already held the
    /// change): its SHA on stdout, `BUMP_MANIFEST_COMMIT` and
    /// `BUMP_MANIFEST_REFERENCE` in the dotenv file.
    pub fn commit(sha: String, reference: String) -> Output {
        Output {
            stdout: Some(sha.clone()),
            dotenv: vec![
                ("BUMP_MANIFEST_COMMIT", sha),
                ("BUMP_MANIFEST_REFERENCE", reference),
            ],
        }
    }
}

/// The result of one publish.
pub enum Publish {
    Done(Output),
    /// Someone else moved the branch first: re-plan and retry.
    Stale(String),
}

/// Where and how a mode reads and writes the config repo. Used by this
/// crate only, on a single-threaded runtime: the futures need no `Send`.
#[allow(async_fn_in_trait)]
pub trait Backend {
    /// What a dry run would do, for the log ("commit to …", "open a merge
    /// request from …").
    fn action(&self) -> String;
    /// The head to plan on; `attempt > 1` after a stale publish (fetch anew).
    async fn head(&mut self, attempt: u32) -> Result<String, Error>;
    /// The plan and the state file's text at `head`.
    async fn plan(&mut self, head: &str) -> Result<(Plan, Option<String>), Error>;
    /// Publishes `commit` made on `head`.
    async fn publish(&mut self, head: &str, commit: Commit, attempt: u32)
    -> Result<Publish, Error>;
    /// Nothing to commit: what to hand on (the head, or nothing).
    fn unchanged(&self, head: &str) -> Option<Output>;
    /// The error once every attempt was stale.
    fn exhausted(&self) -> Error;
}

/// Runs attempts until one publishes or ends without a commit.
pub async fn run<B: Backend>(c: &Config, backend: &mut B) -> Result<(), Error> {
    for attempt in 1..=c.max_attempts {
        let head = backend.head(attempt).await?;
        let (plan, state) = backend.plan(&head).await?;
        if attempt == 1 {
            decide::log_found(&plan, c);
        }
        let commit = match decide::decide(c, plan, state.as_deref())? {
            Decision::Commit(commit) => commit,
            d => {
                decide::log_no_commit(&d, c);
                if !c.dry_run
                    && let Some(out) = backend.unchanged(&head)
                {
                    emit(c, &out)?;
                }
                return Ok(());
            }
        };
        if c.dry_run {
            print!("{}", commit.diff());
            info(format!(
                "dry run: would {} {} -> {}; nothing changed",
                backend.action(),
                commit.old,
                commit.new
            ));
            return Ok(());
        }
        match backend.publish(&head, commit, attempt).await? {
            Publish::Done(out) => return emit(c, &out),
            Publish::Stale(why) => {
                let wait = c.retry_delay(attempt);
                info(format!(
                    "{why}; re-applying on the new head in {:.1}s (attempt {attempt}/{})",
                    wait.as_secs_f64(),
                    c.max_attempts
                ));
                tokio::time::sleep(wait).await;
            }
        }
    }
    Err(backend.exhausted())
}

/// Prints the output line and writes the dotenv file when asked.
pub fn emit(c: &Config, out: &Output) -> Result<(), Error> {
    if let Some(line) = &out.stdout {
        println!("{line}");
    }
    let Some(path) = &c.dotenv else {
        return Ok(());
    };
    let mut d = kit::dotenv::Dotenv::new();
    for (k, v) in &out.dotenv {
        d.set(k, v).map_err(Error::Dotenv)?;
    }
    d.write(path).map_err(Error::Dotenv)
}
