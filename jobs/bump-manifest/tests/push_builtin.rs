//! The `--mode push` scenarios of `tests/push_suite` with
//! `--git-transport builtin`: git reaches the real `git http-backend`
//! server only through bump-manifest's own remote helper.

mod common;

/// bump-manifest's remote helper (`secdeliv::` URLs).
const TRANSPORT: &str = "builtin";

mod push_suite;
