//! `--mode push`: shallow bare clone (no checkout), read the YAML blobs,
//! edit in memory, write one commit with `git fast-import`, push. A
//! rejected push (someone else pushed first) is [`Publish::Stale`]: the
//! attempt loop fetches the new head and re-applies there. Never forced.

use std::path::PathBuf;

use kit::joblog::{Section, info};
use kit::secret::redact_url_credentials;
use manifest_edit::state::STATE_PATH;
use manifest_edit::{Plan, TreeEntry, plan};

use crate::attempt::{Backend, Output, Publish};
use crate::config::Config;
use crate::decide::Commit;
use crate::error::Error;
use crate::git::{self, Git, Push};

pub struct PushBackend<'a> {
    c: &'a Config,
    g: Git,
    url: String,
    shown: String,
    entries: Vec<TreeEntry>,
    /// Keeps the scratch clone's temp dir alive (removed on drop).
    _tmp: Option<tempfile::TempDir>,
}

impl<'a> PushBackend<'a> {
    pub fn new(c: &'a Config) -> Result<Self, Error> {
        // The clone lives in a temp dir removed at the end, or in --workdir
        // (kept, for inspection).
        let (dir, tmp): (PathBuf, _) = match &c.workdir {
            Some(w) => {
                let _ = std::fs::remove_dir(w);
                let abs = std::path::absolute(w).map_err(|source| Error::Workdir {
                    path: w.display().to_string(),
                    source,
                })?;
                (abs, None)
            }
            None => {
                let tmp = tempfile::Builder::new()
                    .prefix("bump-manifest-")
                    .tempdir()
                    .map_err(Error::TempDir)?;
                (tmp.path().join("repo.git"), Some(tmp))
            }
        };
        let url = git::clone_url(&c.repo);
        let g = Git::with_transport(&dir, &url, c.auth.as_ref(), &c.author, c.git_transport)?;
        Ok(PushBackend {
            c,
            url: g.remote_url(&url),
            g,
            shown: redact_url_credentials(&c.repo),
            entries: Vec::new(),
            _tmp: tmp,
        })
    }
}

impl Backend for PushBackend<'_> {
    fn action(&self) -> String {
        format!("commit to {} {}", self.shown, self.c.branch)
    }

    async fn head(&mut self, attempt: u32) -> Result<String, Error> {
        if attempt == 1 {
            let _s = Section::start(
                "bump_manifest_clone",
                &format!("Cloning {} ({})", self.shown, self.c.branch),
                true,
            );
            self.g.clone(&self.url, &self.c.branch)?;
            if self.url.starts_with(git_remote::URL_PREFIX) {
                info(
                    "git transport: built-in (git-remote-secdeliv over rustls); git's own HTTP helpers are not used",
                );
            }
        } else {
            self.g.refresh(&self.c.branch)?;
        }
        Ok(self.g.rev(&format!("refs/heads/{}", self.c.branch))?)
    }

    /// Lists the tree, reads the YAML blobs under the paths in one batch,
    /// and runs the rules. Symlinks are not followed; one pointing outside
    /// the repo is refused.
    async fn plan(&mut self, head: &str) -> Result<(Plan, Option<String>), Error> {
        self.entries = self.g.ls_tree(head)?;
        let sel = plan::select(&self.entries, &self.c.paths, self.c.max_file_size)?;
        let state_entry = self.entries.iter().find(|e| e.path == STATE_PATH);
        let mut ids: Vec<&str> = sel
            .links
            .iter()
            .chain(sel.yaml.iter())
            .map(|e| e.id.as_str())
            .collect();
        if let Some(s) = state_entry {
            ids.push(&s.id);
        }
        let blobs = self.g.cat_blobs(&ids)?;
        let (link_blobs, rest) = blobs.split_at(sel.links.len());
        for (l, target) in sel.links.iter().zip(link_blobs) {
            plan::check_link(&l.path, target)?;
        }
        let mut p = Plan::default();
        for (e, bytes) in sel.yaml.iter().zip(rest) {
            plan::plan_file(&mut p, &e.path, bytes, &self.c.target)?;
        }
        let state = state_entry
            .and_then(|_| rest.last())
            .map(|b| String::from_utf8_lossy(b).into_owned());
        Ok((p, state))
    }

    async fn publish(
        &mut self,
        head: &str,
        commit: Commit,
        attempt: u32,
    ) -> Result<Publish, Error> {
        let blobs: Vec<(String, String, Vec<u8>)> = commit
            .files
            .iter()
            .map(|f| {
                let mode = self
                    .entries
                    .iter()
                    .find(|e| e.path == f.path)
                    .map_or("100644", |e| e.mode.as_str());
                (mode.to_string(), f.path.clone(), f.new.clone().into_bytes())
            })
            .collect();
        let branch = &self.c.branch;
        let sha = self
            .g
            .fast_commit(branch, head, &self.c.author, &commit.message, &blobs)?;
        Ok(match self.g.push(branch)? {
            Push::Pushed => {
                info(format!(
                    "pushed {sha} to {} {branch}: {} -> {} ({} file(s), attempt {attempt})",
                    self.shown,
                    commit.old,
                    commit.new,
                    blobs.len()
                ));
                Publish::Done(Output::commit(sha, commit.new))
            }
            Push::Rejected(why) => Publish::Stale(format!("push rejected ({why})")),
        })
    }

    fn unchanged(&self, head: &str) -> Option<Output> {
        Some(Output::commit(head.to_string(), self.c.target.new_ref()))
    }

    fn exhausted(&self) -> Error {
        Error::StillRejected {
            repo: self.shown.clone(),
            branch: self.c.branch.clone(),
            attempts: self.c.max_attempts,
        }
    }
}
