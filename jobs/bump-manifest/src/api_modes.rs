//! `--mode gitlab-api` and `--mode merge-request`: no clone. Files are read
//! through the GitLab repository API and written with one
//! `POST /projects/:id/repository/commits` carrying every file action and
//! each file's `last_commit_id`. GitLab answers 400 ("… has changed since
//! …") when a file moved on meanwhile: [`Publish::Stale`], and the attempt
//! loop re-reads and re-applies.

use kit::joblog::info;
use manifest_edit::state::STATE_PATH;
use manifest_edit::{Plan, plan};

use crate::attempt::{Backend, Output, Publish};
use crate::config::Config;
use crate::decide::{self, Commit, Decision};
use crate::error::Error;
use crate::gitlab::{Api, Committed, MergeRequest, OpenedMr};

/// Reads every YAML file under the paths at `sha` and plans the edit; also
/// returns the state file's text. The `--path` entries are checked against
/// the tree as in push mode.
pub async fn plan_at(api: &Api, c: &Config, sha: &str) -> Result<(Plan, Option<String>), Error> {
    let entries = api.tree(sha).await?;
    // Sizes are unknown before reading: checked after.
    let sel = plan::select(&entries, &c.paths, u64::MAX)?;
    for l in &sel.links {
        if let Some(target) = api.raw(&l.path, sha).await? {
            plan::check_link(&l.path, &target)?;
        }
    }
    let mut p = Plan::default();
    for e in &sel.yaml {
        let Some(bytes) = api.raw(&e.path, sha).await? else {
            continue;
        };
        plan::check_size(&e.path, bytes.len() as u64, c.max_file_size)?;
        plan::plan_file(&mut p, &e.path, &bytes, &c.target)?;
    }
    let state = match entries.iter().any(|e| e.path == STATE_PATH) {
        true => api
            .raw(STATE_PATH, sha)
            .await?
            .map(|b| String::from_utf8_lossy(&b).into_owned()),
        false => None,
    };
    Ok((p, state))
}

/// Where an API mode writes.
pub enum Target {
    /// gitlab-api: commit straight to `--branch`.
    Branch,
    /// merge-request: commit to `source` and open (or reuse) a merge request
    /// into `--branch`.
    MergeRequest { source: String },
}

/// gitlab-api and merge-request: read and plan through the repository API
/// on `--branch`'s head; publish to the [`Target`]. "Up to date" and "never
/// backwards" are judged on `--branch` (the loop), and for a merge request
/// again on an open MR's branch.
pub struct ApiBackend<'a> {
    pub c: &'a Config,
    pub api: Api,
    pub to: Target,
}

impl Backend for ApiBackend<'_> {
    fn action(&self) -> String {
        match &self.to {
            Target::Branch => format!("commit to {}", self.c.branch),
            Target::MergeRequest { source } => format!("open a merge request from {source}"),
        }
    }

    async fn head(&mut self, _attempt: u32) -> Result<String, Error> {
        self.api.head_of(&self.c.branch).await
    }

    async fn plan(&mut self, head: &str) -> Result<(Plan, Option<String>), Error> {
        plan_at(&self.api, self.c, head).await
    }

    async fn publish(
        &mut self,
        head: &str,
        commit: Commit,
        attempt: u32,
    ) -> Result<Publish, Error> {
        match &self.to {
            Target::Branch => self.commit_to_branch(head, commit, attempt).await,
            Target::MergeRequest { source } => {
                let source = source.clone();
                self.merge_request(&source, head, commit).await
            }
        }
    }

    fn unchanged(&self, head: &str) -> Option<Output> {
        match self.to {
            Target::Branch => Some(Output::commit(head.to_string(), self.c.target.new_ref())),
            Target::MergeRequest { .. } => None,
        }
    }

    fn exhausted(&self) -> Error {
        let branch = match &self.to {
            Target::Branch => self.c.branch.clone(),
            Target::MergeRequest { source } => source.clone(),
        };
        Error::StillStale {
            branch,
            attempts: self.c.max_attempts,
        }
    }
}

impl ApiBackend<'_> {
    async fn commit_to_branch(
        &self,
        head: &str,
        commit: Commit,
        attempt: u32,
    ) -> Result<Publish, Error> {
        let branch = &self.c.branch;
        match self
            .api
            .commit(self.c, branch, None, head, &commit.files, &commit.message)
            .await?
        {
            Committed::Sha(sha) => {
                info(format!(
                    "committed {sha} to {branch}: {} -> {} (attempt {attempt})",
                    commit.old, commit.new
                ));
                Ok(Publish::Done(Output::commit(sha, commit.new)))
            }
            Committed::Stale { gitlab_says } => Ok(Publish::Stale(format!(
                "commit refused as stale ({gitlab_says})"
            ))),
        }
    }
}

/// The merge request's source branch: `bump-manifest/<image>-<target>`.
pub fn mr_branch(c: &Config) -> String {
    if let Some(b) = &c.mr_branch {
        return b.clone();
    }
    let slug: String = c
        .target
        .image
        .repository
        .chars()
        .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
        .collect();
    format!("bump-manifest/{slug}-{}", c.branch.replace('/', "-"))
}

fn scan_summary(c: &Config) -> Option<String> {
    let s = c.scan_summary.as_deref()?;
    match std::fs::read_to_string(s) {
        Ok(text) => Some(text.chars().take(20_000).collect()),
        Err(_) => Some(s.to_string()),
    }
}

/// Title and description of the merge request.
pub fn mr_text(c: &Config, old: &str, new: &str) -> (String, String) {
    let title = format!(
        "Deploy {} {}",
        c.image,
        c.target.suffix().trim_start_matches(':')
    );
    let mut d = format!(
        "Updates `{}` in `{}`.\n\n| | reference |\n|---|---|\n| old | `{old}` |\n| new | `{new}` |\n",
        c.image, c.branch
    );
    if let Some(p) = &c.pipeline_url {
        d.push_str(&format!("\nSource pipeline: {p}\n"));
    }
    if let Some(k) = &c.order_key {
        d.push_str(&format!("\nOrder key: `{k}`\n"));
    }
    if let Some(s) = scan_summary(c) {
        d.push_str(&format!("\n### Scan summary\n\n{s}\n"));
    }
    d.push_str("\n_Opened by bump-manifest._\n");
    (title, d)
}

impl ApiBackend<'_> {
    /// Sets auto-merge when asked, and hands the MR's URL on.
    async fn finish(&self, mr: &MergeRequest, new: String) -> Result<Publish, Error> {
        if self.c.auto_merge {
            self.auto_merge(mr.iid).await?;
        }
        Ok(Publish::Done(Output {
            stdout: Some(mr.web_url.clone()),
            dotenv: vec![
                ("BUMP_MANIFEST_MR_URL", mr.web_url.clone()),
                ("BUMP_MANIFEST_REFERENCE", new),
            ],
        }))
    }

    /// GitLab answers 405 (and sometimes 406/409/422) while it is still
    /// computing a new MR's mergeability: retry, bounded.
    async fn auto_merge(&self, iid: u64) -> Result<(), Error> {
        let tries = self.c.max_attempts.clamp(3, 15);
        for attempt in 1..=tries {
            match self.api.set_auto_merge(iid).await? {
                Ok(()) => {
                    info(format!(
                        "merge request !{iid} set to merge when its pipeline succeeds"
                    ));
                    return Ok(());
                }
                Err(e) if attempt == tries => return Err(e.into()),
                Err(e) => {
                    let wait = self.c.retry_delay(attempt);
                    info(format!(
                        "{} setting auto-merge (GitLab still checking the new MR); retrying in {:.1}s",
                        e.status().unwrap_or_default(),
                        wait.as_secs_f64()
                    ));
                    tokio::time::sleep(wait).await;
                }
            }
        }
        Ok(())
    }
}

impl ApiBackend<'_> {
    /// merge-request: commit to `source` and open (or reuse) the merge request.
    async fn merge_request(
        &self,
        source: &str,
        head: &str,
        commit: Commit,
    ) -> Result<Publish, Error> {
        let c = self.c;
        let existing = self.api.find_mr(source, &c.branch).await?;
        let source_head = self.api.branch_head(source).await?;
        // An open MR: update its branch. A leftover branch without an open
        // MR is not ours to rewrite: use a fresh one.
        let (branch, start, read_ref) = match (&existing, &source_head) {
            (Some(_), Some(sh)) => (source.to_string(), None, sh.clone()),
            (None, Some(_)) => (
                format!("{}-{}", source, &head[..head.len().min(8)]),
                Some(c.branch.as_str()),
                head.to_string(),
            ),
            _ => (
                source.to_string(),
                Some(c.branch.as_str()),
                head.to_string(),
            ),
        };
        // On an open MR's branch, plan and decide again there.
        let commit = if read_ref == head {
            commit
        } else {
            let (p, state) = plan_at(&self.api, c, &read_ref).await?;
            match decide::decide(c, p, state.as_deref())? {
                Decision::Commit(on_branch) => Commit {
                    old: commit.old,
                    ..on_branch
                },
                Decision::Newer(k, r) => {
                    // A newer pipeline already updated the open MR.
                    info(format!(
                        "not going backwards: merge request branch {branch} already proposes {r} (order key {k}); nothing changed"
                    ));
                    return Ok(Publish::Done(Output::default()));
                }
                _ => {
                    info(format!(
                        "merge request branch {branch} already holds {}",
                        commit.new
                    ));
                    return match &existing {
                        Some(mr) => self.finish(mr, commit.new).await,
                        None => Ok(Publish::Done(Output::default())),
                    };
                }
            }
        };
        let sha = match self
            .api
            .commit(c, &branch, start, &read_ref, &commit.files, &commit.message)
            .await?
        {
            Committed::Sha(sha) => sha,
            Committed::Stale { gitlab_says } => {
                return Ok(Publish::Stale(format!(
                    "commit refused as stale ({gitlab_says})"
                )));
            }
        };
        info(format!(
            "committed {sha} to {branch}: {} -> {}",
            commit.old, commit.new
        ));
        let (title, description) = mr_text(c, &commit.old, &commit.new);
        let mr = match existing {
            Some(mr) => {
                let mr = self.api.update_mr(mr.iid, &title, &description).await?;
                info(format!("updated merge request !{}", mr.iid));
                mr
            }
            None => match self
                .api
                .create_mr(&branch, &c.branch, &title, &description)
                .await?
            {
                OpenedMr::Opened(mr) => {
                    info(format!("opened merge request !{}", mr.iid));
                    mr
                }
                OpenedMr::AlreadyOpen { gitlab_says } => {
                    // Another job opened it first: reuse it.
                    info(format!(
                        "a merge request from {branch} already exists ({gitlab_says}); reusing it"
                    ));
                    match self.api.find_mr(&branch, &c.branch).await? {
                        Some(mr) => mr,
                        None => {
                            return Ok(Publish::Stale(format!(
                                "the merge request from {branch} GitLab reported is not open"
                            )));
                        }
                    }
                }
            },
        };
        self.finish(&mr, commit.new).await
    }
}
