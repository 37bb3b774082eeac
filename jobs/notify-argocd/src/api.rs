//! Argo CD's REST API (the grpc-gateway in front of its gRPC API server),
//! as its swagger spec describes it: session login, Application get/list,
//! sync, and the watch stream. Answers are read into the typed models of
//! [`crate::model`]; a refusal is a [`kit::api::ApiError`] carrying
//! grpc-gateway's `{"error","code","message"}` body, with secrets scrubbed.

use std::time::Duration;

use kit::api::ApiError;
use kit::http::{RetryPolicy, send_with_retry};
use kit::secret::{Redactor, Secret};
use reqwest::{Client, RequestBuilder, Response};
use serde::Serialize;
use url::Url;

use crate::model::{Application, ApplicationList, SessionResponse};

/// The service name in error messages.
pub const SERVICE: &str = "Argo CD";

/// How long one unary call may take (a refresh blocks until Argo CD has
/// reconciled the app, which can take a while on a busy controller).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The gRPC code Argo CD uses when it refuses a sync while another
/// operation runs (FailedPrecondition).
pub const CODE_FAILED_PRECONDITION: &str = "9";

/// Argo CD refuses a sync while another operation runs; worth waiting for.
pub fn is_operation_in_progress(e: &ApiError) -> bool {
    e.body().is_some_and(|b| {
        b.code.as_deref() == Some(CODE_FAILED_PRECONDITION)
            && b.message
                .as_deref()
                .is_some_and(|m| m.contains("another operation is already in progress"))
    })
}

/// `applicationApplicationSyncRequest`: the fields this job sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRequest {
    pub name: String,
    pub prune: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// `sessionSessionCreateRequest`.
#[derive(Serialize)]
struct SessionCreateRequest<'a> {
    username: &'a str,
    password: &'a str,
}

/// A client bound to one Argo CD server and one credential.
#[derive(Clone)]
pub struct Api {
    base: Url,
    http: Client,
    token: Secret,
    redactor: Redactor,
    retry: RetryPolicy,
    pub app_namespace: Option<String>,
    pub project: Option<String>,
}

impl Api {
    pub fn new(
        base: Url,
        http: Client,
        token: Secret,
        redactor: Redactor,
        retry: RetryPolicy,
    ) -> Api {
        Api {
            base,
            http,
            token,
            redactor,
            retry,
            app_namespace: None,
            project: None,
        }
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The Argo CD UI page of an app.
    pub fn ui_url(&self, namespace: Option<&str>, name: &str) -> String {
        let mut u = self.base.clone();
        {
            let mut seg = u.path_segments_mut().expect("http url");
            seg.pop_if_empty().push("applications");
            if let Some(ns) = namespace.filter(|n| !n.is_empty()) {
                seg.push(ns);
            }
            seg.push(name);
        }
        u.to_string()
    }

    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut u = self.base.clone();
        {
            let mut seg = u.path_segments_mut().expect("http url");
            seg.pop_if_empty();
            for s in ["api", "v1"].iter().chain(segments) {
                seg.push(s);
            }
        }
        let pairs: Vec<&(&str, &str)> = query.iter().filter(|(_, v)| !v.is_empty()).collect();
        if !pairs.is_empty() {
            let mut q = u.query_pairs_mut();
            for (k, v) in pairs {
                q.append_pair(k, v);
            }
        }
        u
    }

    fn authed(&self, rb: RequestBuilder) -> RequestBuilder {
        rb.bearer_auth(self.token.expose())
    }

    /// Removes every known secret from an error's texts.
    fn scrub(&self, e: ApiError) -> ApiError {
        let r = |s: String| self.redactor.redact(&s);
        match e {
            ApiError::Status {
                service,
                method,
                url,
                status,
                mut body,
            } => {
                body.message = body.message.map(r);
                body.code = body.code.map(r);
                body.excerpt = r(std::mem::take(&mut body.excerpt));
                ApiError::Status {
                    service,
                    method,
                    url: r(url),
                    status,
                    body,
                }
            }
            ApiError::Unexpected {
                service,
                url,
                reason,
            } => ApiError::Unexpected {
                service,
                url: r(url),
                reason: r(reason),
            },
            ApiError::Transport {
                service,
                url,
                reason,
                timed_out,
            } => ApiError::Transport {
                service,
                url: r(url),
                reason: r(reason),
                timed_out,
            },
        }
    }

    /// Sends with the kit's retries and reads the answer as `T`.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        url: &Url,
        make: impl FnMut() -> RequestBuilder,
    ) -> Result<T, ApiError> {
        let resp = send_with_retry(&self.retry, make)
            .await
            .map_err(|e| self.scrub(ApiError::transport(SERVICE, url.as_str(), &e)))?;
        kit::api::json(resp, SERVICE, method)
            .await
            .map_err(|e| self.scrub(e))
    }

    /// `POST /api/v1/session`: trades a local user's password for a token.
    pub async fn login(&self, username: &str, password: &Secret) -> Result<Secret, ApiError> {
        let url = self.url(&["session"], &[]);
        let body = SessionCreateRequest {
            username,
            password: password.expose(),
        };
        let answer: SessionResponse = self
            .call("POST", &url, || {
                self.http
                    .post(url.clone())
                    .timeout(CALL_TIMEOUT)
                    .json(&body)
            })
            .await?;
        match answer.token {
            Some(t) if !t.is_empty() => Ok(Secret::new(t)),
            _ => Err(ApiError::unexpected(
                SERVICE,
                url.as_str(),
                "the session answer holds no token",
            )),
        }
    }

    /// Uses `token` from now on (after a login).
    pub fn with_token(mut self, token: Secret) -> Api {
        self.redactor.add(&token);
        self.token = token;
        self
    }

    /// `GET /api/v1/applications/{name}`, with `refresh=normal|hard` when
    /// asked (the server then answers once the app is reconciled).
    pub async fn get_app(
        &self,
        name: &str,
        refresh: Option<&str>,
    ) -> Result<Application, ApiError> {
        let url = self.url(
            &["applications", name],
            &[
                ("refresh", refresh.unwrap_or("")),
                ("appNamespace", self.app_namespace.as_deref().unwrap_or("")),
                ("project", self.project.as_deref().unwrap_or("")),
            ],
        );
        self.call("GET", &url, || {
            self.authed(self.http.get(url.clone()).timeout(CALL_TIMEOUT))
        })
        .await
    }

    /// `GET /api/v1/applications?selector=…`: the matching apps.
    pub async fn list_apps(&self, selector: &str) -> Result<Vec<Application>, ApiError> {
        let url = self.url(
            &["applications"],
            &[
                ("selector", selector),
                ("appNamespace", self.app_namespace.as_deref().unwrap_or("")),
                ("projects", self.project.as_deref().unwrap_or("")),
            ],
        );
        let list: ApplicationList = self
            .call("GET", &url, || {
                self.authed(self.http.get(url.clone()).timeout(CALL_TIMEOUT))
            })
            .await?;
        Ok(list.items.unwrap_or_default())
    }

    /// `POST /api/v1/applications/{name}/sync`.
    pub async fn sync(&self, body: &SyncRequest) -> Result<Application, ApiError> {
        let url = self.url(&["applications", &body.name, "sync"], &[]);
        self.call("POST", &url, || {
            self.authed(self.http.post(url.clone()).timeout(CALL_TIMEOUT).json(body))
        })
        .await
    }

    /// The URL of the watch stream for `name`.
    pub fn stream_url(&self, name: &str) -> Url {
        self.url(
            &["stream", "applications"],
            &[
                ("name", name),
                ("appNamespace", self.app_namespace.as_deref().unwrap_or("")),
            ],
        )
    }

    /// Opens `GET /api/v1/stream/applications?name=…` asking for server-sent
    /// events (the parser also reads grpc-gateway's newline-delimited JSON).
    /// No retries here: the caller falls back to polling.
    pub async fn open_stream(&self, name: &str) -> Result<Response, ApiError> {
        let url = self.stream_url(name);
        let resp = self
            .authed(
                self.http
                    .get(url.clone())
                    .header(reqwest::header::ACCEPT, "text/event-stream"),
            )
            .send()
            .await
            .map_err(|e| self.scrub(ApiError::transport(SERVICE, url.as_str(), &e)))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = kit::api::read_limited(resp, SERVICE, 64 * 1024)
            .await
            .unwrap_or_default();
        Err(self.scrub(ApiError::from_status(
            SERVICE,
            "GET",
            url.as_str(),
            status,
            &body,
        )))
    }

    /// Scrubs a text that may hold a secret (for stream errors).
    pub fn redact(&self, s: &str) -> String {
        self.redactor.redact(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    fn api(base: &str) -> Api {
        let mut r = Redactor::new();
        r.add_str("tok-secret-123");
        Api::new(
            Url::parse(base).unwrap(),
            Client::new(),
            Secret::new("tok-secret-123"),
            r,
            RetryPolicy::default(),
        )
    }

    #[test]
    fn urls() {
        let mut a = api("https://h/base/");
        a.app_namespace = Some("team-a".into());
        assert_eq!(
            a.url(
                &["applications", "my app"],
                &[("refresh", "hard"), ("project", "")]
            )
            .as_str(),
            "https://h/base/api/v1/applications/my%20app?refresh=hard"
        );
        assert_eq!(
            a.ui_url(Some("argocd"), "sensor"),
            "https://h/base/applications/argocd/sensor"
        );
        assert_eq!(
            a.stream_url("sensor").as_str(),
            "https://h/base/api/v1/stream/applications?name=sensor&appNamespace=team-a"
        );
    }

    #[test]
    fn grpc_gateway_refusals_are_read_and_scrubbed() {
        let a = api("https://h/");
        let busy = ApiError::from_status(
            SERVICE,
            "POST",
            "https://h/api/v1/applications/a/sync",
            StatusCode::BAD_REQUEST,
            br#"{"error":"another operation is already in progress","code":9,"message":"another operation is already in progress"}"#,
        );
        assert!(is_operation_in_progress(&busy));
        let other = ApiError::from_status(
            SERVICE,
            "POST",
            "https://h/api/v1/applications/a/sync",
            StatusCode::BAD_REQUEST,
            br#"{"code":3,"message":"another operation is already in progress? no: bad request"}"#,
        );
        assert!(!is_operation_in_progress(&other));
        let e = a.scrub(ApiError::from_status(
            SERVICE,
            "GET",
            "https://h/api/v1/applications/a",
            StatusCode::UNAUTHORIZED,
            br#"{"code":16,"message":"invalid session: tok-secret-123 expired"}"#,
        ));
        assert_eq!(
            e.to_string(),
            "Argo CD answered 401 to GET https://h/api/v1/applications/a: invalid session: [redacted] expired"
        );
    }

    #[test]
    fn the_sync_request_holds_only_what_is_set() {
        let body = SyncRequest {
            name: "sensor".into(),
            prune: false,
            revision: None,
            app_namespace: Some("team-iot".into()),
            project: None,
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"name": "sensor", "prune": false, "appNamespace": "team-iot"})
        );
    }
}
