//! secdeliv-verifier: containerd's image verifier (plugin
//! `io.containerd.image-verifier.v1.bindir`) backed by sign-image.
//!
//! The job's shape, as in every secdeliv job: [`cli::Args`] (flags, with
//! containerd's single-dash spelling rewritten by [`cli::go_style`]) →
//! [`config::Config::from_args`] (flags, stdin, policy, keys: exit 2 before
//! any request) → [`run::run`] (cache, then signatures through the node's
//! endpoints) → [`error::Error`] (one exit code per cause).
//!
//! - [`contract`]: what containerd passes (flags, stdin media types);
//! - [`policy`]: the node's policy file, scopes of repository globs → keys;
//! - [`registries`]: K3s's registries.yaml, mirrors and credentials;
//! - [`cache`]: verified digests, bounded, written atomically.
//!
//! Unlike the other jobs, [`main`] is not `kit::job::main`: containerd takes
//! the reason from standard output, so the one-line verdict goes there (and
//! to stderr, containerd's debug log), allowed or not.

pub mod cache;
pub mod cli;
pub mod config;
pub mod contract;
pub mod error;
pub mod policy;
pub mod registries;
pub mod run;

use std::process::ExitCode;

use kit::ExitKind;
use kit::env::{Env, ProcessEnv};
use kit::job::Failure;

pub const NAME: &str = "secdeliv-verifier";

/// The verdict line and exit code for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub line: String,
    /// `None`: exit 0, the pull is allowed.
    pub exit: Option<ExitKind>,
}

impl Answer {
    fn allowed(reason: &str) -> Self {
        Answer {
            line: format!("allowed: {reason}"),
            exit: None,
        }
    }
    fn refused(reason: &str, exit: ExitKind) -> Self {
        Answer {
            line: format!("refused: {reason}"),
            exit: Some(exit),
        }
    }
}

/// Why clap refused the flags, as one line naming containerd's spelling.
fn flag_error(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.trim_start_matches('-').to_string(),
        _ => String::new(),
    };
    match e.kind() {
        ErrorKind::UnknownArgument => format!(
            "unknown flag -{arg}: this verifier knows -name, -digest, -stdin-media-type and -operation (a newer containerd?); refusing rather than guessing"
        ),
        _ => {
            let first = e.to_string();
            let first = first.lines().next().unwrap_or_default();
            first.trim_start_matches("error: ").to_string()
        }
    }
}

/// Config, runtime, deadline, verdict.
pub fn execute(args: cli::Args, stdin: &[u8], env: &dyn Env) -> Answer {
    let config = match config::Config::from_args(args, stdin) {
        Ok(c) => c,
        Err(e) => return Answer::refused(&kit::job::cause_line(&e), ExitKind::Usage),
    };
    let timeout = config.policy.timeout;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return Answer::refused(
                &format!("cannot start the async runtime: {e}"),
                ExitKind::Remote,
            );
        }
    };
    let pinned = format!("{}@{}", config.repository(), config.digest);
    let result =
        runtime.block_on(async { tokio::time::timeout(timeout, run::run(config, env)).await });
    match result {
        Ok(Ok(run::Verdict::Allowed(r))) => Answer::allowed(&r),
        Ok(Ok(run::Verdict::Refused(r))) => Answer::refused(&r, ExitKind::Policy),
        Ok(Err(e)) => Answer::refused(&kit::job::cause_line(&e), e.exit_kind()),
        Err(_) => Answer::refused(
            &format!(
                "{pinned}: verification did not finish within the policy's timeout of {}",
                kit::duration::human(timeout)
            ),
            ExitKind::Timeout,
        ),
    }
}

/// The whole `main`: flags (containerd's spelling), stdin, the verdict on
/// stdout (containerd's reason) and stderr (its debug log), the exit code.
pub fn main() -> ExitCode {
    let argv = cli::go_style(std::env::args_os());
    let answer = match kit::cli::try_parse_from::<cli::Args, _, _>(argv) {
        Ok(args) => match config::read_stdin() {
            Ok(stdin) => execute(args, &stdin, &ProcessEnv),
            Err(e) => Answer::refused(&kit::job::cause_line(&e), ExitKind::Usage),
        },
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                print!("{e}");
                return ExitCode::SUCCESS;
            }
            Answer::refused(&flag_error(&e), ExitKind::Usage)
        }
    };
    let line = contract::reason_line(&answer.line);
    println!("{line}");
    eprintln!("{NAME}: {line}");
    ExitCode::from(answer.exit.map_or(0, ExitKind::code))
}
