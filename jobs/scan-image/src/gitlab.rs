//! The GitLab REST calls of `--mr-note`: the target branch's last report
//! (job artifacts API), and the merge request's notes (list, create, edit).
//! Every answer is read through `kit::api` into a typed struct; an error
//! status is a [`kit::api::ApiError`] (exit 3, 4 on a timeout). The token
//! goes in `PRIVATE-TOKEN`, marked sensitive, and no redirect is followed
//! (a custom header survives redirects to other hosts).

use std::time::Duration;

use kit::api::{self, ApiError};
use kit::env::Env;
use kit::http::{RetryPolicy, send_with_retry};
use kit::secret::Secret;
use reqwest::header::HeaderValue;
use reqwest::{Client, Method, Response};
use serde::{Deserialize, Serialize};

const SERVICE: &str = "GitLab";

/// One note of `GET /projects/:id/merge_requests/:iid/notes`.
#[derive(Debug, Clone, Deserialize)]
pub struct Note {
    pub id: u64,
    pub body: String,
    #[serde(default)]
    pub system: bool,
}

#[derive(Serialize)]
struct NoteBody<'a> {
    body: &'a str,
}

/// A GitLab API client for one project.
pub struct Api {
    client: Client,
    /// `…/api/v4/projects/<id>`
    base: String,
    token: Secret,
    policy: RetryPolicy,
}

/// `group/sub/project` → `group%2Fsub%2Fproject`; refs and paths likewise.
pub fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

impl Api {
    pub fn new(api_url: &str, project: &str, token: Secret, env: &dyn Env) -> kit::JobResult<Api> {
        let mut b = Client::builder()
            .user_agent(format!("secdeliv-scan-image/{}", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none());
        for cert in kit::http::extra_ca_certs(env)? {
            b = b.add_root_certificate(cert);
        }
        let client = b.build().map_err(|e| {
            kit::JobError::usage(format!(
                "cannot set up the GitLab client: {}",
                kit::http::describe(&e)
            ))
        })?;
        Ok(Api {
            client,
            base: format!(
                "{}/projects/{}",
                api_url.trim_end_matches('/'),
                encode(project)
            ),
            token,
            policy: RetryPolicy::default(),
        })
    }

    async fn send(
        &self,
        method: &'static str,
        rest: &str,
        body: Option<&str>,
    ) -> Result<(String, Response), ApiError> {
        let url = format!("{}{rest}", self.base);
        let m = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
        let resp = send_with_retry(&self.policy, || {
            let mut v = HeaderValue::from_str(self.token.expose())
                .unwrap_or_else(|_| HeaderValue::from_static(""));
            v.set_sensitive(true);
            let mut r = self
                .client
                .request(m.clone(), &url)
                .header("PRIVATE-TOKEN", v);
            if let Some(b) = body {
                r = r.json(&NoteBody { body: b });
            }
            r
        })
        .await
        .map_err(|e| ApiError::transport(SERVICE, &url, &e))?;
        if resp.status().is_redirection() {
            return Err(ApiError::unexpected(
                SERVICE,
                &url,
                format!(
                    "{} redirect; the token is not sent after a redirect (check CI_API_V4_URL)",
                    resp.status()
                ),
            ));
        }
        Ok((url, resp))
    }

    /// The file `path` of job `job`'s last successful run on `reference`,
    /// or `None` when there is none (404).
    pub async fn last_artifact(
        &self,
        reference: &str,
        path: &str,
        job: &str,
    ) -> Result<Option<Vec<u8>>, ApiError> {
        let path: Vec<String> = path.split('/').map(encode).collect();
        let rest = format!(
            "/jobs/artifacts/{}/raw/{}?job={}",
            encode(reference),
            path.join("/"),
            encode(job)
        );
        let (url, resp) = self.send("GET", &rest, None).await?;
        let status = resp.status();
        let body = api::read_limited(resp, SERVICE, api::DEFAULT_BODY_LIMIT).await?;
        match status.as_u16() {
            200..=299 => Ok(Some(body)),
            404 => Ok(None),
            _ => Err(ApiError::from_status(SERVICE, "GET", &url, status, &body)),
        }
    }

    /// Every note of merge request `iid` (all pages).
    pub async fn notes(&self, iid: u64) -> Result<Vec<Note>, ApiError> {
        let mut out = Vec::new();
        let mut page = 1u32;
        loop {
            let rest = format!(
                "/merge_requests/{iid}/notes?per_page=100&page={page}&sort=asc&order_by=created_at"
            );
            let (_, resp) = self.send("GET", &rest, None).await?;
            let next = resp
                .headers()
                .get("x-next-page")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u32>().ok());
            let notes: Vec<Note> = api::json(resp, SERVICE, "GET").await?;
            out.extend(notes);
            match next {
                Some(n) if n > page && page < 100 => page = n,
                _ => return Ok(out),
            }
        }
    }

    pub async fn create_note(&self, iid: u64, body: &str) -> Result<Note, ApiError> {
        let (_, resp) = self
            .send("POST", &format!("/merge_requests/{iid}/notes"), Some(body))
            .await?;
        api::json(resp, SERVICE, "POST").await
    }

    pub async fn update_note(&self, iid: u64, id: u64, body: &str) -> Result<Note, ApiError> {
        let (_, resp) = self
            .send(
                "PUT",
                &format!("/merge_requests/{iid}/notes/{id}"),
                Some(body),
            )
            .await?;
        api::json(resp, SERVICE, "PUT").await
    }
}
