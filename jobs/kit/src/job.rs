//! The one shape of every job.
//!
//! ```text
//! cli.rs     Args          clap flags, each with its environment variable
//! config.rs  Config        Job::config: validates everything; exit 2 before any network call
//! run.rs     Job::run      the work: Outcome (exit 0 or 1) or a typed error
//! error.rs   Error         thiserror enum; its Failure impl is the one place kinds map to exit codes
//! main.rs    kit::job::main::<Job>()
//! ```
//!
//! `main` parses the flags (booleans one way, see [`crate::cli`]), builds the
//! config, starts the tokio runtime, enforces the whole-job deadline (exit 4),
//! and prints the one-line cause (the error's source chain joined by `: `,
//! URL credentials removed) as `JOB: error: …`.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use crate::env::{Env, ProcessEnv};
use crate::exit::ExitKind;

/// A job error that knows its exit code. Every crate's `Error` implements it
/// in one `match`, so the mapping from cause to exit code lives in one place.
pub trait Failure: std::error::Error + 'static {
    fn exit_kind(&self) -> ExitKind;
}

impl Failure for crate::JobError {
    fn exit_kind(&self) -> ExitKind {
        self.kind
    }
}

/// What a finished run reports: done (exit 0), or a policy said no (exit 1,
/// the reason is the one-line cause).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Refused(String),
}

/// A flag or input that cannot be used: always exit 2, raised by
/// [`Job::config`] before any network call.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UsageError {
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        UsageError {
            message: message.into(),
            source: None,
        }
    }
    /// `message: source`, keeping the source for the log.
    pub fn with_source(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        UsageError {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

impl Failure for UsageError {
    fn exit_kind(&self) -> ExitKind {
        ExitKind::Usage
    }
}

impl From<crate::JobError> for UsageError {
    fn from(e: crate::JobError) -> Self {
        UsageError::new(e.message)
    }
}

/// One job: raw flags, validated config, the work.
pub trait Job {
    /// The binary's name, the prefix of its error line.
    const NAME: &'static str;
    /// A multi-threaded runtime (2 workers) instead of the current thread.
    const MULTI_THREAD: bool = false;
    type Args: clap::Parser;
    type Config;
    type Error: Failure;

    /// Validates every flag and input; reads local files (keys, policies)
    /// but never the network.
    fn config(args: Self::Args, env: &dyn Env) -> Result<Self::Config, UsageError>;

    /// The whole-job deadline: past it the run is dropped and the job exits 4.
    fn deadline(_config: &Self::Config) -> Option<Duration> {
        None
    }

    /// The work.
    fn run(
        config: Self::Config,
        env: &dyn Env,
    ) -> impl Future<Output = Result<Outcome, Self::Error>>;
}

/// What `config.rs` provides: the config, every flag validated, from the
/// raw flags (exit 2 with a one-line cause before any network call).
pub trait FromArgs: Sized {
    type Args: clap::Parser;
    fn from_args(args: Self::Args, env: &dyn Env) -> Result<Self, UsageError>;

    /// The whole-job deadline the flags set (e.g. `--timeout`), if any: a
    /// [`Work`] job's [`Job::deadline`]. Past it the job exits 4.
    fn deadline(&self) -> Option<Duration> {
        None
    }
}

/// A [`Job`] whose config builds itself ([`FromArgs`]): only the name, the
/// error type and the work are left to say. Every `Work` is a `Job` (the
/// blanket impl below), so `kit::job::main::<J>()` runs it unchanged.
///
/// ```ignore
/// impl kit::job::FromArgs for Config {            // config.rs
///     type Args = Args;
///     fn from_args(args: Args, env: &dyn Env) -> Result<Config, UsageError> { … }
/// }
/// impl kit::job::Work for Job {                    // run.rs
///     const NAME: &'static str = "notify-argocd";
///     type Config = Config;
///     type Error = Error;
///     async fn run(config: Config, env: &dyn Env) -> Result<Outcome, Error> { … }
/// }
/// ```
pub trait Work {
    /// The binary's name, the prefix of its error line.
    const NAME: &'static str;
    /// A multi-threaded runtime (2 workers) instead of the current thread.
    const MULTI_THREAD: bool = false;
    type Config: FromArgs;
    type Error: Failure;

    /// [`Job::run`].
    fn run(
        config: Self::Config,
        env: &dyn Env,
    ) -> impl Future<Output = Result<Outcome, Self::Error>>;
}

impl<W: Work> Job for W {
    const NAME: &'static str = W::NAME;
    const MULTI_THREAD: bool = W::MULTI_THREAD;
    type Args = <W::Config as FromArgs>::Args;
    type Config = W::Config;
    type Error = W::Error;

    fn config(args: Self::Args, env: &dyn Env) -> Result<W::Config, UsageError> {
        W::Config::from_args(args, env)
    }

    fn deadline(config: &W::Config) -> Option<Duration> {
        config.deadline()
    }

    fn run(config: W::Config, env: &dyn Env) -> impl Future<Output = Result<Outcome, W::Error>> {
        W::run(config, env)
    }
}

/// The whole `main` of a job binary.
pub fn main<J: Job>() -> ExitCode {
    let args = crate::cli::parse::<J::Args>();
    execute::<J>(args, &ProcessEnv)
}

/// Config, runtime, deadline, exit code: what `main` does after parsing.
pub fn execute<J: Job>(args: J::Args, env: &dyn Env) -> ExitCode {
    let config = match J::config(args, env) {
        Ok(c) => c,
        Err(e) => return fail(J::NAME, &e),
    };
    let runtime = if J::MULTI_THREAD {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            return fail(
                J::NAME,
                &crate::JobError::remote(format!("cannot start the async runtime: {e}")),
            );
        }
    };
    let deadline = J::deadline(&config);
    let result = runtime.block_on(async move {
        match deadline {
            Some(d) => match tokio::time::timeout(d, J::run(config, env)).await {
                Ok(r) => Ok(r),
                Err(_) => Err(d),
            },
            None => Ok(J::run(config, env).await),
        }
    });
    match result {
        Ok(Ok(Outcome::Done)) => ExitCode::SUCCESS,
        Ok(Ok(Outcome::Refused(reason))) => {
            eprintln!("{}: error: {}", J::NAME, one_line(&reason));
            ExitCode::from(ExitKind::Policy.code())
        }
        Ok(Err(e)) => fail(J::NAME, &e),
        Err(d) => fail(
            J::NAME,
            &crate::JobError::timeout(format!(
                "the job's deadline of {} passed (--timeout); nothing more was done",
                crate::duration::human(d)
            )),
        ),
    }
}

fn fail(job: &str, e: &dyn Failure) -> ExitCode {
    eprintln!("{job}: error: {}", cause_line(e));
    ExitCode::from(e.exit_kind().code())
}

/// The error and its sources on one line, each source once, URL credentials
/// removed.
pub fn cause_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !t.is_empty() && !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        src = s.source();
    }
    one_line(&crate::secret::redact_url_credentials(&parts.join(": ")))
}

fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Inner {
        #[error("connection refused")]
        Refused,
    }

    #[derive(Debug, thiserror::Error)]
    enum Error {
        #[error("reading https://user:pw@example.com/v2/")]
        Read(#[source] Inner),
    }

    #[test]
    fn cause_line_joins_the_chain_and_hides_url_credentials() {
        let line = cause_line(&Error::Read(Inner::Refused));
        assert_eq!(line, "reading https://example.com/v2/: connection refused");
    }

    /// A `Work` job: `--sleep-ms` of work, `--timeout-ms` as the config's
    /// deadline, `--refuse` for exit 1, an empty `--name` is a usage error.
    #[derive(Debug, clap::Parser)]
    struct SleepArgs {
        #[arg(long, default_value = "x")]
        name: String,
        #[arg(long, default_value_t = 0)]
        sleep_ms: u64,
        #[arg(long)]
        timeout_ms: Option<u64>,
        #[arg(long)]
        refuse: bool,
    }

    struct SleepConfig(SleepArgs);

    impl FromArgs for SleepConfig {
        type Args = SleepArgs;
        fn from_args(args: SleepArgs, _env: &dyn Env) -> Result<Self, UsageError> {
            if args.name.is_empty() {
                return Err(UsageError::new("--name is empty"));
            }
            Ok(SleepConfig(args))
        }
        fn deadline(&self) -> Option<Duration> {
            self.0.timeout_ms.map(Duration::from_millis)
        }
    }

    struct Sleeper;

    impl Work for Sleeper {
        const NAME: &'static str = "sleeper";
        type Config = SleepConfig;
        type Error = UsageError;
        async fn run(c: SleepConfig, _env: &dyn Env) -> Result<Outcome, UsageError> {
            tokio::time::sleep(Duration::from_millis(c.0.sleep_ms)).await;
            Ok(match c.0.refuse {
                true => Outcome::Refused("no".into()),
                false => Outcome::Done,
            })
        }
    }

    fn exit_of(argv: &[&str]) -> ExitCode {
        let args = crate::cli::try_parse_from::<SleepArgs, _, _>(
            std::iter::once("sleeper").chain(argv.iter().copied()),
        )
        .unwrap();
        execute::<Sleeper>(args, &crate::env::MapEnv::new([]))
    }

    #[test]
    fn a_work_job_runs_as_a_job_with_its_configs_deadline() {
        let code = |c: u8| ExitCode::from(c);
        assert_eq!(exit_of(&[]), ExitCode::SUCCESS);
        assert_eq!(exit_of(&["--refuse"]), code(1));
        assert_eq!(exit_of(&["--name="]), code(2));
        assert_eq!(
            exit_of(&["--sleep-ms", "50", "--timeout-ms", "5000"]),
            ExitCode::SUCCESS
        );
        assert_eq!(
            exit_of(&["--sleep-ms", "5000", "--timeout-ms", "20"]),
            code(4)
        );
    }
}
