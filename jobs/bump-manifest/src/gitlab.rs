//! A small typed GitLab REST client for one project: branches, tree, raw
//! files, commits with actions, merge requests. Every answer is a
//! `#[derive(Deserialize)]` model read through `kit::api`; an error status is
//! a [`kit::api::ApiError`]; a 200 of another shape is "unexpected answer
//! from GitLab at …" (exit 3), never a default.
//!
//! The token travels in a custom header (`PRIVATE-TOKEN`/`JOB-TOKEN`),
//! which HTTP clients do not strip on a redirect to another host, so the
//! client follows no redirect at all: a 3xx is an error naming where it
//! pointed.

use std::time::Duration;

use kit::api::{self, ApiError};
use kit::env::Env;
use kit::http::{RetryPolicy, send_with_retry};
use reqwest::header::{HeaderValue, LOCATION};
use reqwest::{Client, Method, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::config::{ApiConfig, Config};
use crate::error::Error;

const SERVICE: &str = "GitLab";

/// `GET /projects/:id/repository/branches/:branch`
#[derive(Debug, Deserialize)]
pub struct Branch {
    pub commit: CommitRef,
}

/// A commit as the branches and commits APIs return it (only what is used).
#[derive(Debug, Deserialize)]
pub struct CommitRef {
    pub id: String,
}

/// One entry of `GET /projects/:id/repository/tree`.
#[derive(Debug, Deserialize)]
pub struct TreeItem {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
}

/// A merge request (only what is used).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MergeRequest {
    pub iid: u64,
    pub web_url: String,
}

/// One action of `POST /projects/:id/repository/commits`.
#[derive(Debug, Serialize)]
pub struct Action<'a> {
    pub action: &'static str,
    pub file_path: &'a str,
    pub content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_commit_id: Option<String>,
}

#[derive(Debug, Serialize)]
struct CommitBody<'a> {
    branch: &'a str,
    commit_message: &'a str,
    actions: Vec<Action<'a>>,
    author_name: &'a str,
    author_email: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_branch: Option<&'a str>,
}

/// `group/sub/project` → `group%2Fsub%2Fproject`; numeric IDs unchanged.
pub fn encode_path(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A commit SHA as GitLab must return it: 40 or 64 hex digits.
fn check_sha(url: &str, id: &str) -> Result<String, ApiError> {
    if matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_string())
    } else {
        Err(ApiError::unexpected(
            SERVICE,
            url,
            format!("commit id {id:?} is not a commit SHA"),
        ))
    }
}

/// The HTTP client for the API: the kit's CA bundles, the request
/// deadline, and no redirects.
pub fn client(timeout: Duration, env: &dyn Env) -> Result<Client, Error> {
    let mut b = Client::builder()
        .user_agent(format!(
            "secdeliv-bump-manifest/{}",
            env!("CARGO_PKG_VERSION")
        ))
        .connect_timeout(Duration::from_secs(15))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    for cert in kit::http::extra_ca_certs(env).map_err(Error::Ca)? {
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(Error::Client)
}

pub struct Api {
    client: Client,
    cfg: ApiConfig,
    project: String,
    policy: RetryPolicy,
}

impl Api {
    pub fn new(c: &Config, cfg: &ApiConfig, env: &dyn Env) -> Result<Api, Error> {
        Ok(Api {
            client: client(cfg.request_timeout, env)?,
            project: encode_path(&cfg.project),
            cfg: cfg.clone(),
            policy: RetryPolicy {
                base_delay: Duration::from_millis(c.retry_delay_ms.max(1)),
                ..RetryPolicy::default()
            },
        })
    }

    fn url(&self, rest: &str) -> String {
        format!("{}/projects/{}{rest}", self.cfg.base, self.project)
    }

    /// Sends one request (retried on 429/5xx/connect errors). A redirect
    /// and a refused token are errors here; other statuses are the
    /// caller's to judge.
    async fn send<B: Serialize>(
        &self,
        method: &'static str,
        rest: &str,
        body: Option<&B>,
    ) -> Result<Response, Error> {
        let url = self.url(rest);
        let m = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
        let resp = send_with_retry(&self.policy, || {
            let mut v = HeaderValue::from_str(self.cfg.header.1.expose())
                .unwrap_or_else(|_| HeaderValue::from_static(""));
            v.set_sensitive(true);
            let mut r = self
                .client
                .request(m.clone(), &url)
                .header(self.cfg.header.0, v);
            if let Some(b) = body {
                r = r.json(b);
            }
            r
        })
        .await
        .map_err(|e| ApiError::transport(SERVICE, &url, &e))?;
        let status = resp.status();
        if status.is_redirection() {
            let origin = resp
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| resp.url().join(l).ok())
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_else(|| "no Location".into());
            return Err(Error::Redirected {
                method,
                url: kit::secret::redact_url_credentials(&url),
                status: status.as_u16(),
                origin,
            });
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let body = api::read_limited(resp, SERVICE, api::DEFAULT_BODY_LIMIT).await?;
            return Err(Error::Denied {
                header: self.cfg.header.0,
                source: ApiError::from_status(SERVICE, method, &url, status, &body),
            });
        }
        Ok(resp)
    }

    /// Reads an answer's body; an error status becomes [`ApiError::Status`].
    async fn body(resp: Response, method: &'static str) -> Result<Vec<u8>, ApiError> {
        let url = resp.url().to_string();
        let status = resp.status();
        let body = api::read_limited(resp, SERVICE, api::DEFAULT_BODY_LIMIT).await?;
        if !status.is_success() {
            return Err(ApiError::from_status(SERVICE, method, &url, status, &body));
        }
        Ok(body)
    }

    /// The head commit of a branch, or None when it does not exist.
    pub async fn branch_head(&self, branch: &str) -> Result<Option<String>, Error> {
        let rest = format!("/repository/branches/{}", encode_path(branch));
        let url = self.url(&rest);
        let resp = self.send::<()>("GET", &rest, None).await?;
        match Self::body(resp, "GET").await {
            Ok(body) => {
                let b: Branch = api::decode(SERVICE, &url, &body)?;
                Ok(Some(check_sha(&url, &b.commit.id)?))
            }
            // GitLab says which: "404 Project Not Found" or "404 Branch Not Found".
            Err(e) if e.status() == Some(404) => {
                let msg = e.body().and_then(|b| b.message.clone()).unwrap_or_default();
                if msg.contains("Project") {
                    Err(Error::ProjectNotFound(self.cfg.project.clone()))
                } else if msg.contains("Branch") {
                    Ok(None)
                } else {
                    Err(e.into())
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The head of a branch that must exist.
    pub async fn head_of(&self, branch: &str) -> Result<String, Error> {
        self.branch_head(branch)
            .await?
            .ok_or_else(|| Error::NoBranch(branch.to_string()))
    }

    /// Every blob at `sha` (tree API, paginated), as tree entries (the
    /// size is unknown here: 0).
    pub async fn tree(&self, sha: &str) -> Result<Vec<manifest_edit::TreeEntry>, Error> {
        let mut out = Vec::new();
        let mut page = 1u32;
        loop {
            let rest =
                format!("/repository/tree?ref={sha}&recursive=true&per_page=100&page={page}");
            let resp = self.send::<()>("GET", &rest, None).await?;
            let next = resp
                .headers()
                .get("x-next-page")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u32>().ok());
            let items: Vec<TreeItem> = api::json(resp, SERVICE, "GET").await?;
            out.extend(items.into_iter().filter(|i| i.kind == "blob").map(|i| {
                manifest_edit::TreeEntry {
                    mode: i.mode.unwrap_or_else(|| "100644".into()),
                    id: i.id.unwrap_or_default(),
                    size: 0,
                    path: i.path,
                }
            }));
            match next {
                Some(n) if n > page => page = n,
                _ => break,
            }
        }
        Ok(out)
    }

    /// Raw file content at `sha`, None when missing.
    pub async fn raw(&self, path: &str, sha: &str) -> Result<Option<Vec<u8>>, Error> {
        let rest = format!("/repository/files/{}/raw?ref={sha}", encode_path(path));
        let resp = self.send::<()>("GET", &rest, None).await?;
        match Self::body(resp, "GET").await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The last commit that changed a file on a ref (`X-Gitlab-Last-Commit-Id`).
    pub async fn last_commit_id(
        &self,
        path: &str,
        reference: &str,
    ) -> Result<Option<String>, Error> {
        let rest = format!(
            "/repository/files/{}?ref={}",
            encode_path(path),
            encode_path(reference)
        );
        let url = self.url(&rest);
        let resp = self.send::<()>("HEAD", &rest, None).await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(ApiError::from_status(SERVICE, "HEAD", &url, status, b"").into());
        }
        match resp
            .headers()
            .get("x-gitlab-last-commit-id")
            .and_then(|v| v.to_str().ok())
        {
            Some(id) => Ok(Some(check_sha(&url, id)?)),
            None => {
                Err(ApiError::unexpected(SERVICE, &url, "no X-Gitlab-Last-Commit-Id header").into())
            }
        }
    }

    /// One commit with every action: [`Committed::Sha`], or
    /// [`Committed::Stale`] when GitLab says a file changed since it was
    /// read (re-plan and retry).
    pub async fn commit(
        &self,
        c: &Config,
        branch: &str,
        start_branch: Option<&str>,
        read_ref: &str,
        files: &[manifest_edit::FileChange],
        message: &str,
    ) -> Result<Committed, Error> {
        let mut actions = Vec::new();
        for f in files {
            let last = self.last_commit_id(&f.path, read_ref).await?;
            actions.push(Action {
                action: if last.is_some() { "update" } else { "create" },
                file_path: &f.path,
                content: &f.new,
                last_commit_id: last,
            });
        }
        let body = CommitBody {
            branch,
            commit_message: message,
            actions,
            author_name: &c.author.name,
            author_email: &c.author.email,
            start_branch,
        };
        let rest = "/repository/commits";
        let url = self.url(rest);
        let resp = self.send("POST", rest, Some(&body)).await?;
        match Self::body(resp, "POST").await {
            Ok(b) => {
                let commit: CommitRef = api::decode(SERVICE, &url, &b)?;
                Ok(Committed::Sha(check_sha(&url, &commit.id)?))
            }
            Err(e) if e.status() == Some(400) => {
                let msg = e.body().and_then(|b| b.message.clone()).unwrap_or_default();
                let stale = [
                    "has changed since",
                    "already exists",
                    "doesn't exist",
                    "does not exist",
                    "not found",
                ];
                if stale.iter().any(|x| msg.contains(x)) {
                    Ok(Committed::Stale { gitlab_says: msg })
                } else {
                    Err(e.into())
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The open merge request from `source` into `target`, if any.
    pub async fn find_mr(&self, source: &str, target: &str) -> Result<Option<MergeRequest>, Error> {
        let rest = format!(
            "/merge_requests?state=opened&source_branch={}&target_branch={}",
            encode_path(source),
            encode_path(target)
        );
        let resp = self.send::<()>("GET", &rest, None).await?;
        let list: Vec<MergeRequest> = api::json(resp, SERVICE, "GET").await?;
        let url = self.url(&rest);
        list.into_iter()
            .next()
            .map(|m| check_mr(&url, m))
            .transpose()
    }

    /// Updates an open merge request's title and description.
    pub async fn update_mr(
        &self,
        iid: u64,
        title: &str,
        description: &str,
    ) -> Result<MergeRequest, Error> {
        let rest = format!("/merge_requests/{iid}");
        let body = serde_json::json!({"title": title, "description": description});
        let resp = self.send("PUT", &rest, Some(&body)).await?;
        let mr: MergeRequest = api::json(resp, SERVICE, "PUT").await?;
        check_mr(&self.url(&rest), mr)
    }

    /// Opens a merge request: [`OpenedMr::Opened`], or
    /// [`OpenedMr::AlreadyOpen`] on 409 (another job opened it first).
    pub async fn create_mr(
        &self,
        source: &str,
        target: &str,
        title: &str,
        description: &str,
    ) -> Result<OpenedMr, Error> {
        let rest = "/merge_requests";
        let body = serde_json::json!({
            "source_branch": source,
            "target_branch": target,
            "title": title,
            "description": description,
            "remove_source_branch": true,
        });
        let url = self.url(rest);
        let resp = self.send("POST", rest, Some(&body)).await?;
        match Self::body(resp, "POST").await {
            Ok(b) => Ok(OpenedMr::Opened(check_mr(
                &url,
                api::decode(SERVICE, &url, &b)?,
            )?)),
            Err(e) if e.status() == Some(409) => Ok(OpenedMr::AlreadyOpen {
                gitlab_says: e
                    .body()
                    .and_then(|b| b.message.clone())
                    .unwrap_or_else(|| "409 Conflict".into()),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Sets merge-when-pipeline-succeeds once: Ok(Err(status)) for the
    /// 405/406/409/422 GitLab answers while it still checks a new MR.
    pub async fn set_auto_merge(&self, iid: u64) -> Result<Result<(), ApiError>, Error> {
        let rest = format!("/merge_requests/{iid}/merge");
        let body = serde_json::json!({"merge_when_pipeline_succeeds": true, "auto_merge": true, "should_remove_source_branch": true});
        let resp = self.send("PUT", &rest, Some(&body)).await?;
        match Self::body(resp, "PUT").await {
            Ok(_) => Ok(Ok(())),
            Err(e) if matches!(e.status(), Some(405 | 406 | 409 | 422)) => Ok(Err(e)),
            Err(e) => Err(e.into()),
        }
    }
}

/// GitLab's answer to `POST /repository/commits`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// The new commit.
    Sha(String),
    /// 400 because a file changed, appeared or went since it was read:
    /// someone else committed first. `gitlab_says` is GitLab's message.
    Stale { gitlab_says: String },
}

/// GitLab's answer to `POST /merge_requests`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenedMr {
    Opened(MergeRequest),
    /// 409: a merge request from that branch is already open (another job
    /// opened it first). `gitlab_says` is GitLab's message.
    AlreadyOpen {
        gitlab_says: String,
    },
}

/// A merge request GitLab returned must have a real iid and URL.
fn check_mr(url: &str, mr: MergeRequest) -> Result<MergeRequest, Error> {
    if mr.iid == 0 || !(mr.web_url.starts_with("http://") || mr.web_url.starts_with("https://")) {
        return Err(ApiError::unexpected(
            SERVICE,
            url,
            format!(
                "merge request iid {} / web_url {:?} is not usable",
                mr.iid, mr.web_url
            ),
        )
        .into());
    }
    Ok(mr)
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

    #[test]
    fn malformed_answers_are_unexpected() {
        let e = check_sha("https://g/api", "").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("unexpected answer from GitLab at https://g/api"),
            "{e}"
        );
        let e = api::decode::<Branch>(SERVICE, "https://g/b", br#"{"name":"main"}"#).unwrap_err();
        assert!(e.to_string().contains("missing field `commit`"), "{e}");
        let e = api::decode::<MergeRequest>(SERVICE, "https://g/m", br#"{"id":5}"#).unwrap_err();
        assert!(e.to_string().contains("missing field `iid`"), "{e}");
    }
}
