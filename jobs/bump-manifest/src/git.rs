//! `git` through `std::process`. The token reaches git only through the
//! child's environment (`GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/
//! `GIT_CONFIG_VALUE_n` carrying an `http.extraHeader`), never argv or a
//! URL; every line git prints is redacted before it reaches the log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use kit::ExitKind;
use kit::secret::{Redactor, redact_url_credentials};
use manifest_edit::TreeEntry;

use crate::cli::Transport;
use crate::config::{Auth, Author};

/// A git command that could not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git (is it installed?)")]
    Spawn(#[source] std::io::Error),
    #[error("git {cmd}")]
    Wait {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("git {cmd} failed: {line}")]
    Failed { cmd: String, line: String },
    #[error("cannot clone {url} branch {branch}: {line}{hint}")]
    Clone {
        url: String,
        branch: String,
        line: String,
        hint: &'static str,
    },
    #[error("git cat-file: {0}")]
    CatFile(String),
    #[error("cannot set up the built-in git transport")]
    Setup(#[source] std::io::Error),
    #[error(transparent)]
    NoHelper(#[from] git_remote::NotFound),
}

impl GitError {
    pub fn exit_kind(&self) -> ExitKind {
        match self {
            GitError::Spawn(_) | GitError::Setup(_) | GitError::NoHelper(_) => ExitKind::Usage,
            _ => ExitKind::Remote,
        }
    }
}

type JobResult<T> = Result<T, GitError>;

pub struct Git {
    pub dir: PathBuf,
    envs: Vec<(String, String)>,
    redactor: Redactor,
    /// With the built-in transport: a dir holding a `git-remote-secdeliv`
    /// symlink to the helper binary, first on git's PATH while `Git` lives.
    helper_dir: Option<tempfile::TempDir>,
}

/// The result of a push.
#[derive(Debug, PartialEq, Eq)]
pub enum Push {
    Pushed,
    /// Someone else moved the branch first: fetch, re-apply, retry.
    Rejected(String),
}

impl Git {
    /// `url` is the repo URL: the auth header is scoped to its scheme, host
    /// and port (`http.<url>.extraHeader`), so a redirect elsewhere never
    /// receives it.
    #[cfg(test)]
    pub fn new(dir: &Path, url: &str, auth: Option<&Auth>, author: &Author) -> Git {
        Self::with_transport(dir, url, auth, author, Transport::Git)
            .expect("the git transport needs no setup")
    }

    /// Like [`Git::new`]; with [`Transport::Builtin`] and an http(s) `url`,
    /// git reaches the remote through `git-remote-secdeliv` (the
    /// `git-remote` crate), found next to this binary, then on PATH: a temp
    /// dir first on git's PATH holds a symlink to it, the auth header goes
    /// to the helper in [`git_remote::AUTH_ENV`], and git speaks protocol
    /// v2 for fetches.
    pub fn with_transport(
        dir: &Path,
        url: &str,
        auth: Option<&Auth>,
        author: &Author,
        transport: Transport,
    ) -> JobResult<Git> {
        let builtin = transport == Transport::Builtin && git_remote::is_http(url);
        let mut envs = vec![
            ("GIT_TERMINAL_PROMPT".to_string(), "0".to_string()),
            ("LC_ALL".to_string(), "C".to_string()),
            ("GIT_AUTHOR_NAME".to_string(), author.name.clone()),
            ("GIT_AUTHOR_EMAIL".to_string(), author.email.clone()),
            ("GIT_COMMITTER_NAME".to_string(), author.name.clone()),
            ("GIT_COMMITTER_EMAIL".to_string(), author.email.clone()),
        ];
        let mut redactor = Redactor::new();
        let mut config: Vec<(String, String)> = vec![
            // The user's global hooks or signing settings must not interfere.
            ("commit.gpgsign".into(), "false".into()),
            ("core.hooksPath".into(), "/dev/null".into()),
        ];
        if let Some(a) = auth {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                a.user,
                a.token.expose()
            ));
            redactor.add(&a.token);
            redactor.add_str(&basic);
            let key = match url::Url::parse(url) {
                Ok(u) if u.scheme().starts_with("http") => {
                    let host = u.host_str().unwrap_or_default();
                    match u.port() {
                        Some(p) => format!("http.{}://{host}:{p}/.extraHeader", u.scheme()),
                        None => format!("http.{}://{host}/.extraHeader", u.scheme()),
                    }
                }
                _ => "http.extraHeader".to_string(),
            };
            if builtin {
                envs.push((git_remote::AUTH_ENV.to_string(), format!("Basic {basic}")));
            } else {
                config.push((key, format!("Authorization: Basic {basic}")));
            }
        }
        let mut helper_dir = None;
        if builtin {
            config.push(("protocol.version".into(), "2".into()));
            let helper = git_remote::find_helper()?;
            let tmp = tempfile::Builder::new()
                .prefix("bump-manifest-helper-")
                .tempdir()
                .map_err(GitError::Setup)?;
            std::os::unix::fs::symlink(&helper, tmp.path().join(git_remote::HELPER_NAME))
                .map_err(GitError::Setup)?;
            let mut path = std::ffi::OsString::from(tmp.path());
            if let Some(p) = std::env::var_os("PATH") {
                path.push(":");
                path.push(p);
            }
            envs.push(("PATH".into(), path.to_string_lossy().into_owned()));
            helper_dir = Some(tmp);
        }
        envs.push(("GIT_CONFIG_COUNT".into(), config.len().to_string()));
        for (i, (k, v)) in config.into_iter().enumerate() {
            envs.push((format!("GIT_CONFIG_KEY_{i}"), k));
            envs.push((format!("GIT_CONFIG_VALUE_{i}"), v));
        }
        Ok(Git {
            dir: dir.to_path_buf(),
            envs,
            redactor,
            helper_dir,
        })
    }

    /// The URL to hand git: `secdeliv::<url>` when the built-in transport
    /// is on and the URL is http(s).
    pub fn remote_url(&self, url: &str) -> String {
        if self.helper_dir.is_some() && git_remote::is_http(url) {
            format!("{}{url}", git_remote::URL_PREFIX)
        } else {
            url.to_string()
        }
    }

    pub fn redact(&self, s: &str) -> String {
        self.redactor.redact(s)
    }

    /// Runs git in `cwd`; returns (success, stdout, stderr), redacted.
    fn raw(
        &self,
        cwd: &Path,
        args: &[&str],
        stdin: Option<&str>,
    ) -> JobResult<(bool, String, String)> {
        let mut cmd = Command::new("git");
        cmd.args(args)
            .current_dir(cwd)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(GitError::Spawn)?;
        if let (Some(text), Some(mut w)) = (stdin, child.stdin.take()) {
            let _ = w.write_all(text.as_bytes());
        }
        let out = child.wait_with_output().map_err(|source| GitError::Wait {
            cmd: args[0].to_string(),
            source,
        })?;
        Ok((
            out.status.success(),
            self.redact(&String::from_utf8_lossy(&out.stdout)),
            self.redact(&String::from_utf8_lossy(&out.stderr)),
        ))
    }

    /// Runs git in the checkout; a failure is `kind` with git's last line.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> JobResult<String> {
        let (ok, out, err) = self.raw(&self.dir, args, stdin)?;
        if ok {
            Ok(out)
        } else {
            Err(GitError::Failed {
                cmd: args[0].to_string(),
                line: last_line(&err),
            })
        }
    }

    /// Runs git with binary stdin (written from a thread, so a large
    /// output cannot deadlock) and returns raw stdout; stderr is redacted.
    fn raw_bytes(&self, args: &[&str], stdin: Vec<u8>) -> JobResult<(bool, Vec<u8>, String)> {
        let mut cmd = Command::new("git");
        cmd.args(args)
            .current_dir(&self.dir)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(GitError::Spawn)?;
        let mut w = child.stdin.take().expect("piped stdin");
        let writer = std::thread::spawn(move || {
            let _ = w.write_all(&stdin);
        });
        let out = child.wait_with_output().map_err(|source| GitError::Wait {
            cmd: args[0].to_string(),
            source,
        })?;
        let _ = writer.join();
        Ok((
            out.status.success(),
            out.stdout,
            self.redact(&String::from_utf8_lossy(&out.stderr)),
        ))
    }

    /// Shallow, bare (no checkout: nothing to write but one pack) clone of
    /// one branch into `self.dir`.
    pub fn clone(&self, url: &str, branch: &str) -> JobResult<()> {
        let parent = self.dir.parent().unwrap_or(Path::new("/"));
        let dir = self.dir.to_string_lossy().to_string();
        let (ok, _, err) = self.raw(
            parent,
            &[
                "clone",
                "--quiet",
                "--bare",
                "--depth",
                "1",
                "--single-branch",
                "--no-tags",
                "--branch",
                branch,
                "--",
                url,
                &dir,
            ],
            None,
        )?;
        if !ok {
            let shown =
                redact_url_credentials(url.strip_prefix(git_remote::URL_PREFIX).unwrap_or(url));
            let hint = if err.contains("not found in upstream") || err.contains("Remote branch") {
                " (does the branch exist?)"
            } else if err.contains("Authentication failed")
                || err.contains("could not read Username")
                || err.contains("403")
            {
                " (set CONFIG_REPO_TOKEN to a token with write_repository, or allow CI_JOB_TOKEN pushes)"
            } else {
                ""
            };
            return Err(GitError::Clone {
                url: shown,
                branch: branch.to_string(),
                line: last_line(&err),
                hint,
            });
        }
        Ok(())
    }

    /// Fetches the branch's current head again (after a rejected push).
    pub fn refresh(&self, branch: &str) -> JobResult<()> {
        let spec = format!("+refs/heads/{branch}:refs/heads/{branch}");
        self.run(
            &[
                "fetch",
                "--quiet",
                "--depth",
                "1",
                "--no-tags",
                "origin",
                &spec,
            ],
            None,
        )?;
        Ok(())
    }

    pub fn rev(&self, rev: &str) -> JobResult<String> {
        Ok(self
            .run(&["rev-parse", "--verify", "--quiet", rev], None)?
            .trim()
            .to_string())
    }

    /// Every entry of the tree at `rev`: (mode, object id, size, path).
    pub fn ls_tree(&self, rev: &str) -> JobResult<Vec<TreeEntry>> {
        let (ok, out, err) = self.raw_bytes(
            &["ls-tree", "-r", "-l", "-z", "--full-tree", rev],
            Vec::new(),
        )?;
        if !ok {
            return Err(GitError::Failed {
                cmd: "ls-tree".into(),
                line: last_line(&err),
            });
        }
        let mut entries = Vec::new();
        for rec in out.split(|b| *b == 0).filter(|r| !r.is_empty()) {
            let rec = String::from_utf8_lossy(rec);
            let Some((meta, path)) = rec.split_once('\t') else {
                continue;
            };
            let mut f = meta.split_whitespace();
            let (Some(mode), Some(kind), Some(id), Some(size)) =
                (f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            if kind != "blob" {
                continue;
            }
            entries.push(TreeEntry {
                mode: mode.to_string(),
                id: id.to_string(),
                size: size.parse().unwrap_or(0),
                path: path.to_string(),
            });
        }
        Ok(entries)
    }

    /// The contents of many blobs, in one `git cat-file --batch`.
    pub fn cat_blobs(&self, ids: &[&str]) -> JobResult<Vec<Vec<u8>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let input: String = ids.iter().map(|i| format!("{i}\n")).collect();
        let (ok, out, err) = self.raw_bytes(&["cat-file", "--batch"], input.into_bytes())?;
        if !ok {
            return Err(GitError::Failed {
                cmd: "cat-file".into(),
                line: last_line(&err),
            });
        }
        let mut blobs = Vec::with_capacity(ids.len());
        let mut pos = 0;
        for id in ids {
            let nl = out[pos..]
                .iter()
                .position(|b| *b == b'\n')
                .ok_or_else(|| GitError::CatFile("truncated output".into()))?;
            let header = String::from_utf8_lossy(&out[pos..pos + nl]).to_string();
            let size: usize = header
                .split_whitespace()
                .nth(2)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| GitError::CatFile(format!("no blob {id} ({header})")))?;
            let start = pos + nl + 1;
            blobs.push(out[start..start + size].to_vec());
            pos = start + size + 1;
        }
        Ok(blobs)
    }

    /// Writes one commit on top of `parent` with the given files (mode,
    /// path, content) using `git fast-import` (one pack, no checkout), and
    /// points `refs/heads/<branch>` at it. Returns the new commit id.
    pub fn fast_commit(
        &self,
        branch: &str,
        parent: &str,
        author: &Author,
        message: &str,
        files: &[(String, String, Vec<u8>)],
    ) -> JobResult<String> {
        let mut s: Vec<u8> = Vec::new();
        let who = format!(
            "{} <{}> now",
            author.name.replace(['<', '>', '\n'], ""),
            author.email.replace(['<', '>', '\n'], "")
        );
        s.extend_from_slice(
            format!("commit refs/heads/{branch}\nauthor {who}\ncommitter {who}\n").as_bytes(),
        );
        s.extend_from_slice(
            format!("data {}\n{message}\nfrom {parent}\n", message.len()).as_bytes(),
        );
        for (mode, path, content) in files {
            s.extend_from_slice(
                format!(
                    "M {mode} inline {}\ndata {}\n",
                    quote_path(path),
                    content.len()
                )
                .as_bytes(),
            );
            s.extend_from_slice(content);
            s.push(b'\n');
        }
        s.extend_from_slice(b"done\n");
        let (ok, _, err) = self.raw_bytes(
            &["fast-import", "--quiet", "--date-format=now", "--done"],
            s,
        )?;
        if !ok {
            return Err(GitError::Failed {
                cmd: "fast-import".into(),
                line: last_line(&err),
            });
        }
        self.rev(&format!("refs/heads/{branch}"))
    }

    /// Pushes the local branch to the remote one. Never forces.
    pub fn push(&self, branch: &str) -> JobResult<Push> {
        let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
        let (ok, out, err) = self.raw(
            &self.dir,
            &["push", "--porcelain", "origin", &refspec],
            None,
        )?;
        if ok {
            return Ok(Push::Pushed);
        }
        let all = format!("{out}\n{err}");
        let rejected = [
            "[rejected]",
            "fetch first",
            "non-fast-forward",
            "cannot lock ref",
            "failed to update ref",
            "incorrect old value",
            "stale info",
            "unable to update local ref",
            "failed to lock",
        ];
        if rejected.iter().any(|r| all.contains(r)) {
            return Ok(Push::Rejected(last_line(&all)));
        }
        Err(GitError::Failed {
            cmd: "push".into(),
            line: last_line(&all),
        })
    }
}

/// A path as fast-import wants it: C-style quoted when it needs to be.
fn quote_path(p: &str) -> String {
    if !p.contains(['"', '\\', '\n']) && !p.starts_with(' ') {
        return p.to_string();
    }
    let mut q = String::from("\"");
    for c in p.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// The last non-empty line of git's output (its actual complaint).
pub fn last_line(s: &str) -> String {
    let lines: Vec<&str> = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "Done")
        .collect();
    // The built-in remote helper's cause beats git's generic follow-up.
    if let Some(l) = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix(git_remote::ERROR_PREFIX))
    {
        return l.to_string();
    }
    let fatal = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("fatal:") || l.starts_with("error:") || l.starts_with('!'));
    fatal
        .or(lines.last())
        .map_or_else(|| "no output".to_string(), |l| l.to_string())
}

/// A local path becomes a `file://` URL (shallow clones need it).
pub fn clone_url(repo: &str) -> String {
    if repo.contains("://") || repo.contains('@') && repo.contains(':') {
        return repo.to_string();
    }
    let p = Path::new(repo);
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    format!("file://{}", abs.display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kit::secret::Secret;

    #[test]
    fn token_only_in_env() {
        let auth = Auth {
            user: "oauth2".into(),
            token: Secret::new("glpat-secret-value"),
        };
        let g = Git::new(
            Path::new("/tmp"),
            "https://gitlab.example.com:8443/acme/config.git",
            Some(&auth),
            &Author {
                name: "a".into(),
                email: "b".into(),
            },
        );
        let header = g
            .envs
            .iter()
            .find(|(_, v)| v.starts_with("Authorization"))
            .unwrap();
        assert!(header.1.starts_with("Authorization: Basic "));
        assert!(
            g.envs
                .iter()
                .any(|(_, v)| v == "http.https://gitlab.example.com:8443/.extraHeader"),
            "{:?}",
            g.envs.iter().map(|(k, _)| k).collect::<Vec<_>>()
        );
        assert_eq!(
            g.redact(&format!("x {} y glpat-secret-value", header.1)),
            "x Authorization: Basic [redacted] y [redacted]"
        );
    }

    #[test]
    fn urls() {
        assert_eq!(clone_url("/srv/repo.git"), "file:///srv/repo.git");
        assert_eq!(clone_url("https://h/x.git"), "https://h/x.git");
        assert_eq!(last_line("a\nfatal: boom\n\n"), "fatal: boom");
        assert_eq!(
            last_line("fatal: git-remote-secdeliv: HTTP 401\nfatal: Could not read\n"),
            "HTTP 401"
        );
    }
}
