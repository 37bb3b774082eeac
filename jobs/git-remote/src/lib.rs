//! `git-remote-secdeliv`: a git remote helper (gitremote-helpers(7)) that
//! speaks git's smart HTTP protocol with rustls, so a job image needs git
//! core only, not `git-remote-http(s)` with libcurl and OpenSSL.
//!
//! A job hands git the URL `secdeliv::<url>` (see [`URL_PREFIX`]) with the
//! directory of this crate's binary first on git's `PATH` ([`find_helper`]
//! finds it), and the `Authorization` header value in [`AUTH_ENV`]; git
//! then runs `git-remote-secdeliv <remote> <url>`.
//!
//! ```text
//! pkt.rs     pkt-line codec
//! pack.rs    where a packfile ends (a push's request has no length)
//! helper.rs  the helper: capabilities, connect, discovery and RPC over HTTP
//! ```

pub mod helper;
pub mod pack;
pub mod pkt;

use std::path::{Path, PathBuf};

/// The file name git runs for `secdeliv::` URLs.
pub const HELPER_NAME: &str = "git-remote-secdeliv";
/// The URL prefix that selects this helper.
pub const URL_PREFIX: &str = "secdeliv::";
/// The environment variable carrying the `Authorization` header value.
pub const AUTH_ENV: &str = "SECDELIV_GIT_AUTHORIZATION";
/// How the helper's own complaints start (git's follow-up lines, such as
/// "Could not read from remote repository", say less).
pub const ERROR_PREFIX: &str = "fatal: git-remote-secdeliv: ";

/// The helper binary was found nowhere.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot find {HELPER_NAME} next to {exe} or on PATH (it ships beside the job binary; `cargo build -p git-remote` builds it)"
)]
pub struct NotFound {
    pub exe: String,
}

/// The helper binary: next to `exe` (the job's own executable) first, then
/// on `path` (a `PATH` value).
pub fn find_helper_from(exe: &Path, path: Option<&std::ffi::OsStr>) -> Result<PathBuf, NotFound> {
    let beside = exe.parent().map(|d| d.join(HELPER_NAME));
    if let Some(b) = beside.filter(|b| is_executable(b)) {
        return Ok(b);
    }
    if let Some(p) = path {
        for dir in std::env::split_paths(p) {
            let c = dir.join(HELPER_NAME);
            if is_executable(&c) {
                return Ok(c);
            }
        }
    }
    Err(NotFound {
        exe: exe.display().to_string(),
    })
}

/// [`find_helper_from`] for this process.
pub fn find_helper() -> Result<PathBuf, NotFound> {
    let exe = std::env::current_exe().unwrap_or_default();
    find_helper_from(&exe, std::env::var_os("PATH").as_deref())
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether a URL is one the helper serves (http or https).
pub fn is_http(url: &str) -> bool {
    let l = url.to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

/// The helper's cause in git's stderr, if it printed one (the last).
pub fn helper_cause(stderr: &str) -> Option<&str> {
    stderr
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(ERROR_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helper_is_found_beside_the_exe_then_on_path() {
        use std::os::unix::fs::PermissionsExt;
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let make = |d: &Path| {
            let p = d.join(HELPER_NAME);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        let exe = a.path().join("bump-manifest");
        let path = std::env::join_paths([b.path()]).unwrap();
        assert!(find_helper_from(&exe, Some(&path)).is_err());
        let on_path = make(b.path());
        assert_eq!(find_helper_from(&exe, Some(&path)).unwrap(), on_path);
        let beside = make(a.path());
        assert_eq!(find_helper_from(&exe, Some(&path)).unwrap(), beside);
        let e = find_helper_from(Path::new("/nowhere/job"), None).unwrap_err();
        assert!(e.to_string().contains("next to /nowhere/job"), "{e}");
    }

    #[test]
    fn causes_and_urls() {
        assert_eq!(
            helper_cause("fatal: git-remote-secdeliv: HTTP 401\nfatal: Could not read\n"),
            Some("HTTP 401")
        );
        assert!(is_http("HTTPS://x") && !is_http("file:///x"));
    }
}
