//! `--mode push` against a real git server (`git http-backend` with basic
//! auth on 127.0.0.1), with the example config repo as fixture.

mod common;

/// git's own http(s) transport (git-remote-https).
const TRANSPORT: &str = "git";

mod push_suite;
