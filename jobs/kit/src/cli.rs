//! Flags, parsed the same way in every job.
//!
//! A job declares a boolean flag as a plain `bool` field:
//!
//! ```ignore
//! /// Request a sync.
//! #[arg(long, env = "ARGOCD_SYNC")]
//! sync: bool,
//! ```
//!
//! [`parse`] turns every such flag into one that takes `--sync`, `--sync=false`,
//! or the variable as GitLab users write booleans (`true/false`, `1/0`,
//! `yes/no`, `on/off`, empty = false): the rule lives here, not in eleven copies
//! of four attributes.

use clap::{Arg, ArgAction, Command};

/// Parses the process arguments into `A`, with booleans normalized; prints
/// clap's message and exits 2 on a bad flag (0 for `--help`/`--version`).
pub fn parse<A: clap::Parser>() -> A {
    parse_from::<A, _, _>(std::env::args_os())
}

/// [`parse`] over given arguments (tests).
pub fn parse_from<A, I, T>(args: I) -> A
where
    A: clap::Parser,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match try_parse_from::<A, I, T>(args) {
        Ok(a) => a,
        Err(e) => e.exit(),
    }
}

/// [`parse_from`] that returns clap's error instead of exiting.
pub fn try_parse_from<A, I, T>(args: I) -> Result<A, clap::Error>
where
    A: clap::Parser,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut cmd = command::<A>();
    let mut matches = cmd.try_get_matches_from_mut(args)?;
    A::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut cmd))
}

/// The job's clap command with the boolean rule applied (for `--help`
/// snapshots and flag checks in tests).
pub fn command<A: clap::CommandFactory>() -> Command {
    normalize(A::command())
}

fn normalize(cmd: Command) -> Command {
    cmd.mut_args(normalize_arg)
        .mut_subcommands(normalize)
        .max_term_width(100)
}

fn normalize_arg(a: Arg) -> Arg {
    if !matches!(a.get_action(), ArgAction::SetTrue) {
        return a;
    }
    a.action(ArgAction::Set)
        .value_parser(crate::env::parse_bool)
        .num_args(0..=1)
        .require_equals(true)
        .default_missing_value("true")
        .default_value("false")
        .value_name("BOOL")
        .hide_default_value(true)
        .hide_possible_values(true)
}

/// Flags (long options and positionals) of `cmd` and its subcommands that
/// read no environment variable, as `subcommand --flag`. Every job's tests
/// assert this is empty.
pub fn flags_without_env(cmd: &Command) -> Vec<String> {
    let mut missing = Vec::new();
    walk(cmd, "", &mut missing);
    missing
}

fn walk(cmd: &Command, prefix: &str, missing: &mut Vec<String>) {
    for a in cmd.get_arguments() {
        let id = a.get_id().as_str();
        if matches!(id, "help" | "version") || a.is_hide_set() {
            continue;
        }
        if a.get_env().is_none() {
            let name = a
                .get_long()
                .map(|l| format!("--{l}"))
                .unwrap_or_else(|| id.to_uppercase());
            missing.push(format!("{prefix}{name}"));
        }
    }
    for sub in cmd.get_subcommands() {
        walk(sub, &format!("{prefix}{} ", sub.get_name()), missing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Args {
        /// A boolean.
        #[arg(long, env = "KIT_TEST_SYNC")]
        sync: bool,
        /// A value.
        #[arg(long, env = "KIT_TEST_NAME")]
        name: Option<String>,
        #[arg(long)]
        no_env: Option<String>,
    }

    #[test]
    fn booleans_take_a_bare_flag_or_a_value() {
        let a: Args = try_parse_from(["x"]).unwrap();
        assert!(!a.sync);
        let a: Args = try_parse_from(["x", "--sync"]).unwrap();
        assert!(a.sync);
        let a: Args = try_parse_from(["x", "--sync=false"]).unwrap();
        assert!(!a.sync);
        let a: Args = try_parse_from(["x", "--sync=yes"]).unwrap();
        assert!(a.sync);
        let e = try_parse_from::<Args, _, _>(["x", "--sync=maybe"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("expected true or false"), "{e}");
    }

    #[test]
    fn flags_without_env_are_listed() {
        assert_eq!(flags_without_env(&command::<Args>()), vec!["--no-env"]);
    }
}
