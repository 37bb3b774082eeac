//! `--mode gitlab-api` and `--mode merge-request`: no clone; files are read
//! through the GitLab repository API and written with one
//! `POST /projects/:id/repository/commits` carrying every file action and
//! each file's `last_commit_id`. GitLab answers 400 ("… has changed since
//! …") when a file moved on meanwhile: re-read, re-apply, retry (bounded).

use std::time::Duration;

use kit::env::Env;
use kit::http::{self, HttpOptions, RetryPolicy, send_with_retry};
use kit::joblog::info;
use kit::{JobError, JobResult};
use reqwest::{Client, Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::plan::{self, Plan};
use crate::rules::Target;
use crate::state::STATE_PATH;
use crate::{
    Commit, Decision, Mode, Options, decide, log_found, log_no_commit, plan_commit, write_dotenv,
};

/// A small GitLab REST client for one project.
pub struct Api {
    client: Client,
    base: String,
    project: String,
    header: (&'static str, kit::secret::Secret),
    policy: RetryPolicy,
}

/// `group/sub/project` → `group%2Fsub%2Fproject`; numeric IDs unchanged.
pub fn encode_path(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The project from --project, or from --repo's URL path.
pub fn project_of(opts: &Options) -> JobResult<String> {
    if let Some(p) = opts.project.as_deref().filter(|p| !p.trim().is_empty()) {
        return Ok(p.trim().trim_matches('/').to_string());
    }
    let u = url::Url::parse(&opts.repo)
        .map_err(|_| JobError::usage("gitlab-api and merge-request modes need --project (CONFIG_REPO_PROJECT) or an https --repo URL"))?;
    let p = u
        .path()
        .trim_matches('/')
        .trim_end_matches(".git")
        .to_string();
    if p.is_empty() {
        return Err(JobError::usage(
            "cannot tell the project from --repo; pass --project",
        ));
    }
    Ok(p)
}

impl Api {
    pub fn new(opts: &Options, env: &dyn Env) -> JobResult<Api> {
        let base = opts
            .gitlab_api_url
            .clone()
            .filter(|u| !u.is_empty())
            .or_else(|| {
                env.var("CI_SERVER_URL")
                    .filter(|u| !u.is_empty())
                    .map(|u| format!("{}/api/v4", u.trim_end_matches('/')))
            })
            .ok_or_else(|| {
                JobError::usage(
                    "set --gitlab-api-url (CI_API_V4_URL) for gitlab-api and merge-request modes",
                )
            })?;
        let header = if let Some(t) = opts.token.clone().filter(|t| !t.is_empty()) {
            ("PRIVATE-TOKEN", t)
        } else if let Some(t) = opts.job_token.clone().filter(|t| !t.is_empty()) {
            ("JOB-TOKEN", t)
        } else {
            return Err(JobError::usage(
                "set CONFIG_REPO_TOKEN (or CI_JOB_TOKEN) for the GitLab API",
            ));
        };
        let client = http::client(
            &HttpOptions {
                request_timeout: Some(Duration::from_secs(60)),
                ..Default::default()
            },
            env,
        )?;
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(opts.retry_delay_ms.max(1)),
            ..RetryPolicy::default()
        };
        Ok(Api {
            client,
            base: base.trim_end_matches('/').to_string(),
            project: encode_path(&project_of(opts)?),
            header,
            policy,
        })
    }

    fn url(&self, rest: &str) -> String {
        format!("{}/projects/{}{rest}", self.base, self.project)
    }

    async fn send(
        &self,
        method: Method,
        rest: &str,
        body: Option<&Value>,
    ) -> JobResult<(StatusCode, reqwest::header::HeaderMap, String)> {
        let url = self.url(rest);
        let make = || -> RequestBuilder {
            let mut r = self
                .client
                .request(method.clone(), &url)
                .header(self.header.0, self.header.1.expose());
            if let Some(b) = body {
                r = r.json(b);
            }
            r
        };
        let resp = send_with_retry(&self.policy, make).await.map_err(|e| {
            http::remote_error(&format!("GitLab API {method} {}", path_only(rest)), &e)
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(JobError::remote(format!(
                "GitLab API {method} {}: {status}: the token ({}) lacks access (api scope / write_repository)",
                path_only(rest),
                self.header.0
            )));
        }
        Ok((status, headers, text))
    }

    async fn get_json(&self, rest: &str) -> JobResult<Option<Value>> {
        let (s, _, t) = self.send(Method::GET, rest, None).await?;
        match s {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => serde_json::from_str(&t).map(Some).map_err(|e| {
                JobError::remote(format!("GitLab API GET {}: bad JSON: {e}", path_only(rest)))
            }),
            s => Err(api_error("GET", rest, s, &t)),
        }
    }

    /// The head commit of a branch, or None when it does not exist.
    pub async fn branch_head(&self, branch: &str) -> JobResult<Option<String>> {
        let rest = format!("/repository/branches/{}", encode_path(branch));
        let (s, _, t) = self.send(Method::GET, &rest, None).await?;
        match s {
            // GitLab says which: "404 Project Not Found" or "404 Branch Not Found".
            StatusCode::NOT_FOUND if message_of(&t).contains("Project") => {
                Err(JobError::remote(format!(
                    "GitLab project {} not found, or the token cannot see it; check --project (CONFIG_REPO_PROJECT)",
                    url_decode(&self.project)
                )))
            }
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let v: Value = serde_json::from_str(&t).unwrap_or_default();
                Ok(v["commit"]["id"].as_str().map(str::to_string))
            }
            s => Err(api_error("GET", &rest, s, &t)),
        }
    }

    /// Every blob path at `sha` (tree API, paginated).
    pub async fn tree(&self, sha: &str) -> JobResult<Vec<String>> {
        let mut out = Vec::new();
        let mut page = 1u32;
        loop {
            let rest =
                format!("/repository/tree?ref={sha}&recursive=true&per_page=100&page={page}");
            let (s, h, t) = self.send(Method::GET, &rest, None).await?;
            if !s.is_success() {
                return Err(api_error("GET", &rest, s, &t));
            }
            let items: Vec<Value> = serde_json::from_str(&t)
                .map_err(|e| JobError::remote(format!("GitLab tree: bad JSON: {e}")))?;
            out.extend(
                items
                    .iter()
                    .filter(|i| i["type"] == "blob")
                    .filter_map(|i| i["path"].as_str().map(str::to_string)),
            );
            match h
                .get("x-next-page")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u32>().ok())
            {
                Some(n) if n > page => page = n,
                _ => break,
            }
        }
        Ok(out)
    }

    /// Raw file content at `sha`, None when missing.
    pub async fn raw(&self, path: &str, sha: &str) -> JobResult<Option<String>> {
        let rest = format!("/repository/files/{}/raw?ref={sha}", encode_path(path));
        let (s, _, t) = self.send(Method::GET, &rest, None).await?;
        match s {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(t)),
            s => Err(api_error("GET", &rest, s, &t)),
        }
    }

    /// The last commit that changed a file on a ref (`X-Gitlab-Last-Commit-Id`).
    pub async fn last_commit_id(&self, path: &str, reference: &str) -> JobResult<Option<String>> {
        let rest = format!(
            "/repository/files/{}?ref={}",
            encode_path(path),
            encode_path(reference)
        );
        let (s, h, t) = self.send(Method::HEAD, &rest, None).await?;
        match s {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(h
                .get("x-gitlab-last-commit-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)),
            s => Err(api_error("HEAD", &rest, s, &t)),
        }
    }

    /// Reads every YAML file under the paths at `sha` and plans the edit;
    /// also returns the state file's text.
    pub async fn plan(
        &self,
        opts: &Options,
        target: &Target,
        sha: &str,
    ) -> JobResult<(Plan, Option<String>)> {
        let mut p = Plan::default();
        let prefixes: Vec<String> = opts
            .paths
            .iter()
            .map(|x| format!("{}/", x.trim_matches('/')))
            .collect();
        for path in &opts.paths {
            if path.split('/').any(|c| c == "..") || path.starts_with('/') {
                return Err(JobError::usage(format!(
                    "--path {path:?} must be relative to the repo and must not contain '..'"
                )));
            }
        }
        for path in self.tree(sha).await? {
            if !prefixes.is_empty() && !prefixes.iter().any(|pre| path.starts_with(pre.as_str())) {
                continue;
            }
            if !plan::is_yaml(&path) {
                continue;
            }
            let Some(text) = self.raw(&path, sha).await? else {
                continue;
            };
            if text.len() as u64 > opts.max_file_size {
                return Err(JobError::usage(format!(
                    "{path} is {} bytes, over --max-file-size; raise it or narrow --path",
                    text.len()
                )));
            }
            plan::plan_file(&mut p, &path, text.as_bytes(), target)?;
        }
        let state = self.raw(STATE_PATH, sha).await?;
        Ok((p, state))
    }

    /// One commit with every action. Ok(None) when GitLab says a file
    /// changed since it was read (retry); Ok(Some(sha)) on success.
    pub async fn commit(
        &self,
        branch: &str,
        start_branch: Option<&str>,
        read_ref: &str,
        files: &[crate::plan::FileChange],
        message: &str,
        opts: &Options,
    ) -> JobResult<Option<String>> {
        let mut actions = Vec::new();
        for f in files {
            let last = self.last_commit_id(&f.path, read_ref).await?;
            let mut a = json!({"file_path": f.path, "content": f.new});
            match last {
                Some(id) => {
                    a["action"] = json!("update");
                    a["last_commit_id"] = json!(id);
                }
                None => a["action"] = json!("create"),
            }
            actions.push(a);
        }
        let author = opts.author();
        let mut body = json!({
            "branch": branch,
            "commit_message": message,
            "actions": actions,
            "author_name": author.name,
            "author_email": author.email,
        });
        if let Some(s) = start_branch {
            body["start_branch"] = json!(s);
        }
        let (s, _, t) = self
            .send(Method::POST, "/repository/commits", Some(&body))
            .await?;
        if s.is_success() {
            let v: Value = serde_json::from_str(&t).unwrap_or_default();
            return Ok(Some(v["id"].as_str().unwrap_or_default().to_string()));
        }
        let msg = message_of(&t);
        let stale = [
            "has changed since",
            "already exists",
            "doesn't exist",
            "does not exist",
            "not found",
        ];
        if s == StatusCode::BAD_REQUEST && stale.iter().any(|x| msg.contains(x)) {
            info(format!("commit refused as stale ({msg}); re-reading"));
            return Ok(None);
        }
        Err(api_error("POST", "/repository/commits", s, &t))
    }
}

fn url_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

fn path_only(rest: &str) -> &str {
    rest.split('?').next().unwrap_or(rest)
}

fn message_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            let m = v.get("message").or_else(|| v.get("error"))?;
            Some(
                m.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| m.to_string()),
            )
        })
        .unwrap_or_else(|| body.chars().take(200).collect())
}

fn api_error(method: &str, rest: &str, s: StatusCode, body: &str) -> JobError {
    JobError::remote(format!(
        "GitLab API {method} {}: {s}: {}",
        path_only(rest),
        message_of(body)
    ))
}

pub fn run(opts: &Options, target: &Target, env: &dyn Env) -> JobResult<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| JobError::usage(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async {
        let api = Api::new(opts, env)?;
        match opts.mode {
            Mode::MergeRequest => merge_request(&api, opts, target).await,
            _ => direct(&api, opts, target).await,
        }
    })
}

async fn head_of(api: &Api, branch: &str) -> JobResult<String> {
    api.branch_head(branch).await?.ok_or_else(|| {
        JobError::remote(format!("branch {branch} does not exist in the config repo"))
    })
}

/// gitlab-api: commit straight to the branch.
async fn direct(api: &Api, opts: &Options, target: &Target) -> JobResult<()> {
    for attempt in 1..=opts.max_attempts {
        let head = head_of(api, &opts.branch).await?;
        let (p, state) = api.plan(opts, target, &head).await?;
        let Some(Commit {
            diff,
            files,
            message,
            old,
            new,
        }) = plan_commit(opts, target, p, state.as_deref(), &head, attempt)?
        else {
            return Ok(());
        };
        if opts.dry_run {
            print!("{diff}");
            info(format!(
                "dry run: would commit {old} -> {new}; nothing changed"
            ));
            return Ok(());
        }
        match api
            .commit(&opts.branch, None, &head, &files, &message, opts)
            .await?
        {
            Some(sha) => {
                info(format!(
                    "committed {sha} to {}: {old} -> {new} (attempt {attempt})",
                    opts.branch
                ));
                println!("{sha}");
                write_dotenv(
                    opts,
                    &[
                        ("BUMP_MANIFEST_COMMIT", &sha),
                        ("BUMP_MANIFEST_REFERENCE", &new),
                    ],
                )?;
                return Ok(());
            }
            None => tokio::time::sleep(opts.retry_delay(attempt)).await,
        }
    }
    Err(JobError::remote(format!(
        "the commit to {} was refused as stale {} times (busy branch); re-run the job or raise --max-attempts",
        opts.branch, opts.max_attempts
    )))
}

/// The merge request's source branch: `bump-manifest/<image>-<target>`.
pub fn mr_branch(opts: &Options, target: &Target) -> String {
    if let Some(b) = opts.mr_branch.as_deref().filter(|b| !b.trim().is_empty()) {
        return b.trim().to_string();
    }
    let slug: String = target
        .image
        .repository
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("bump-manifest/{slug}-{}", opts.branch.replace('/', "-"))
}

fn scan_summary(opts: &Options) -> Option<String> {
    let s = opts.scan_summary.as_deref()?.trim();
    if s.is_empty() {
        return None;
    }
    match std::fs::read_to_string(s) {
        Ok(text) => Some(text.chars().take(20_000).collect()),
        Err(_) => Some(s.to_string()),
    }
}

/// Title and description of the merge request.
pub fn mr_text(opts: &Options, target: &Target, old: &str, new: &str) -> (String, String) {
    let title = format!(
        "Deploy {} {}",
        opts.image,
        target.suffix().trim_start_matches(':')
    );
    let mut d = format!(
        "Updates `{}` in `{}`.\n\n| | reference |\n|---|---|\n| old | `{old}` |\n| new | `{new}` |\n",
        opts.image, opts.branch
    );
    if let Some(p) = opts.pipeline_url.as_deref().filter(|p| !p.is_empty()) {
        d.push_str(&format!("\nSource pipeline: {p}\n"));
    }
    if let Some(k) = opts.order_key.as_deref().filter(|k| !k.is_empty()) {
        d.push_str(&format!("\nOrder key: `{k}`\n"));
    }
    if let Some(s) = scan_summary(opts) {
        d.push_str(&format!("\n### Scan summary\n\n{s}\n"));
    }
    d.push_str("\n_Opened by bump-manifest._\n");
    (title, d)
}

async fn find_mr(api: &Api, source: &str, target_branch: &str) -> JobResult<Option<Value>> {
    let rest = format!(
        "/merge_requests?state=opened&source_branch={}&target_branch={}",
        encode_path(source),
        encode_path(target_branch)
    );
    let v = api.get_json(&rest).await?.unwrap_or(Value::Null);
    Ok(v.as_array().and_then(|a| a.first().cloned()))
}

/// merge-request: commit to a branch through the API and open (or reuse)
/// the merge request; optionally set merge-when-pipeline-succeeds.
async fn merge_request(api: &Api, opts: &Options, target: &Target) -> JobResult<()> {
    let source = mr_branch(opts, target);
    for attempt in 1..=opts.max_attempts {
        // The target branch decides "up to date" and "never backwards".
        let head = head_of(api, &opts.branch).await?;
        let (p, state) = api.plan(opts, target, &head).await?;
        if attempt == 1 {
            log_found(&p, target, Some(&opts.branch));
        }
        let diff = p.diff();
        let d = decide(opts, target, p, state.as_deref())?;
        let Decision::Commit { old, new, .. } = &d else {
            log_no_commit(&d, opts, target);
            return Ok(());
        };
        if opts.dry_run {
            print!("{diff}");
            info(format!(
                "dry run: would open a merge request {old} -> {new} from {source}; nothing changed"
            ));
            return Ok(());
        }
        let (old, new) = (old.clone(), new.clone());
        let existing = find_mr(api, &source, &opts.branch).await?;
        let source_head = api.branch_head(&source).await?;
        // An open MR: update its branch. A leftover branch without an open
        // MR is not ours to rewrite: use a fresh one.
        let (branch, start, read_ref) = match (&existing, &source_head) {
            (Some(_), Some(sh)) => (source.clone(), None, sh.clone()),
            (None, Some(_)) => (
                format!("{source}-{}", &head[..head.len().min(8)]),
                Some(opts.branch.clone()),
                head.clone(),
            ),
            _ => (source.clone(), Some(opts.branch.clone()), head.clone()),
        };
        let (files, message) = if read_ref == head {
            match d {
                Decision::Commit { files, message, .. } => (files, message),
                _ => unreachable!("matched above"),
            }
        } else {
            let (p2, state2) = api.plan(opts, target, &read_ref).await?;
            match decide(opts, target, p2, state2.as_deref())? {
                Decision::Commit { files, message, .. } => (files, message),
                Decision::Newer(k, r) => {
                    // A newer pipeline already updated the open MR.
                    info(format!(
                        "not going backwards: merge request branch {branch} already proposes {r} (order key {k}); nothing changed"
                    ));
                    return Ok(());
                }
                _ => {
                    info(format!("merge request branch {branch} already holds {new}"));
                    let mr = existing.clone().unwrap_or(Value::Null);
                    return finish_mr(api, opts, target, &mr, &old, &new, false).await;
                }
            }
        };
        let Some(sha) = api
            .commit(&branch, start.as_deref(), &read_ref, &files, &message, opts)
            .await?
        else {
            tokio::time::sleep(opts.retry_delay(attempt)).await;
            continue;
        };
        info(format!("committed {sha} to {branch}: {old} -> {new}"));
        let (title, description) = mr_text(opts, target, &old, &new);
        let mr = match existing {
            Some(mr) => {
                let iid = mr["iid"].as_u64().unwrap_or_default();
                let body = json!({"title": title, "description": description});
                let (s, _, t) = api
                    .send(Method::PUT, &format!("/merge_requests/{iid}"), Some(&body))
                    .await?;
                if !s.is_success() {
                    return Err(api_error("PUT", "/merge_requests/:iid", s, &t));
                }
                info(format!("updated merge request !{iid}"));
                serde_json::from_str(&t).unwrap_or(mr)
            }
            None => {
                let body = json!({
                    "source_branch": branch,
                    "target_branch": opts.branch,
                    "title": title,
                    "description": description,
                    "remove_source_branch": true,
                });
                let (s, _, t) = api
                    .send(Method::POST, "/merge_requests", Some(&body))
                    .await?;
                if s == StatusCode::CONFLICT {
                    // Another job opened it first: reuse it.
                    info(format!(
                        "a merge request from {branch} already exists ({}); reusing it",
                        message_of(&t)
                    ));
                    find_mr(api, &branch, &opts.branch)
                        .await?
                        .unwrap_or(Value::Null)
                } else if s.is_success() {
                    let v: Value = serde_json::from_str(&t).unwrap_or_default();
                    info(format!("opened merge request !{}", v["iid"]));
                    v
                } else {
                    return Err(api_error("POST", "/merge_requests", s, &t));
                }
            }
        };
        return finish_mr(api, opts, target, &mr, &old, &new, true).await;
    }
    Err(JobError::remote(format!(
        "the commit to the merge request branch was refused as stale {} times; re-run the job",
        opts.max_attempts
    )))
}

async fn finish_mr(
    api: &Api,
    opts: &Options,
    target: &Target,
    mr: &Value,
    _old: &str,
    new: &str,
    _fresh: bool,
) -> JobResult<()> {
    let iid = mr["iid"].as_u64();
    let url = mr["web_url"].as_str().unwrap_or_default().to_string();
    if opts.auto_merge
        && let Some(iid) = iid
    {
        auto_merge(api, opts, iid).await?;
    }
    if !url.is_empty() {
        println!("{url}");
    }
    let _ = target;
    write_dotenv(
        opts,
        &[
            ("BUMP_MANIFEST_MR_URL", &url),
            ("BUMP_MANIFEST_REFERENCE", new),
        ],
    )
}

/// Sets merge-when-pipeline-succeeds. GitLab answers 405 (and sometimes
/// 406/422) while it is still computing a new MR's mergeability: retry.
async fn auto_merge(api: &Api, opts: &Options, iid: u64) -> JobResult<()> {
    let body = json!({"merge_when_pipeline_succeeds": true, "auto_merge": true, "should_remove_source_branch": true});
    let tries = opts.max_attempts.clamp(3, 15);
    for attempt in 1..=tries {
        let (s, _, t) = api
            .send(
                Method::PUT,
                &format!("/merge_requests/{iid}/merge"),
                Some(&body),
            )
            .await?;
        if s.is_success() {
            info(format!(
                "merge request !{iid} set to merge when its pipeline succeeds"
            ));
            return Ok(());
        }
        let early = matches!(s.as_u16(), 405 | 406 | 409 | 422);
        if !early || attempt == tries {
            return Err(api_error("PUT", "/merge_requests/:iid/merge", s, &t));
        }
        let wait = opts.retry_delay(attempt);
        info(format!(
            "{s} setting auto-merge (GitLab still checking the new MR); retrying in {:.1}s",
            wait.as_secs_f64()
        ));
        tokio::time::sleep(wait).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_paths_encode() {
        assert_eq!(encode_path("group/sub/config"), "group%2Fsub%2Fconfig");
        assert_eq!(encode_path("42"), "42");
        assert_eq!(
            encode_path("overlays/pi one/kustomization.yaml"),
            "overlays%2Fpi%20one%2Fkustomization.yaml"
        );
    }
}
