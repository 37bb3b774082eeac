//! Argo CD's REST API (the grpc-gateway in front of its gRPC API server), as
//! described by `assets/swagger.json`: session login, Application get/list,
//! sync, and the watch stream. Every answer that is not 2xx becomes a
//! [`Failure`] carrying the gRPC code of grpc-gateway's
//! `{"error","code","message"}` body, with secrets scrubbed.

use std::time::Duration;

use kit::http::{RetryPolicy, describe, send_with_retry};
use kit::secret::{Redactor, Secret};
use kit::{JobError, JobResult};
use reqwest::{Client, RequestBuilder, Response};
use serde_json::Value;
use url::Url;

/// How long one unary call may take (a refresh blocks until Argo CD has
/// reconciled the app, which can take a while on a busy controller).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// A failed call: HTTP status (none when the server was not reached), the
/// gRPC code from the body, and a one-line, secret-free message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: Option<u16>,
    pub code: Option<u64>,
    pub message: String,
}

/// gRPC codes Argo CD uses in error bodies.
pub const CODE_FAILED_PRECONDITION: u64 = 9;

impl Failure {
    /// Argo CD refuses a sync while another operation runs; worth waiting for.
    pub fn is_operation_in_progress(&self) -> bool {
        self.code == Some(CODE_FAILED_PRECONDITION)
            && self
                .message
                .contains("another operation is already in progress")
    }

    /// Maps to the job's exit codes: every remote refusal is exit 3, with a
    /// hint for the usual causes.
    pub fn into_job(self, what: &str) -> JobError {
        let hint = match self.status {
            Some(401) => " (check ARGOCD_AUTH_TOKEN, or --username/--password; tokens expire)",
            Some(403) => {
                " (the account lacks this permission in Argo CD's RBAC; Argo CD also answers 403 for an app that does not exist when the account may not list it)"
            }
            Some(404) => " (check the app name, --app-namespace and --project)",
            _ => "",
        };
        let status = match (self.status, self.code) {
            (Some(s), Some(c)) => format!("HTTP {s}, {}: ", grpc_code_name(c)),
            (Some(s), None) => format!("HTTP {s}: "),
            _ => String::new(),
        };
        JobError::remote(format!("{what}: {status}{}{hint}", self.message))
    }
}

pub fn grpc_code_name(code: u64) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "code",
    }
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

/// Parses `--server`: `https://host[:port][/base]`, `http://…` for plain
/// HTTP, or a bare `host[:port]` as the argocd CLI takes it (HTTPS).
pub fn parse_server(server: &str) -> JobResult<Url> {
    let s = server.trim();
    if s.is_empty() {
        return Err(JobError::usage("--server (ARGOCD_SERVER) is empty"));
    }
    let with_scheme = if s.contains("://") {
        s.to_string()
    } else {
        format!("https://{s}")
    };
    let mut url = Url::parse(&with_scheme).map_err(|e| {
        JobError::usage(format!(
            "--server {:?} is not a URL: {e}",
            kit::secret::redact_url_credentials(s)
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(JobError::usage(format!(
            "--server must be https:// or http://, not {}://",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(JobError::usage(
            "--server must not carry credentials; use ARGOCD_AUTH_TOKEN or --username/--password",
        ));
    }
    url.set_query(None);
    url.set_fragment(None);
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
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
    pub fn ui_url(&self, namespace: &str, name: &str) -> String {
        let mut u = self.base.clone();
        {
            let mut seg = u.path_segments_mut().expect("http url");
            seg.pop_if_empty().push("applications");
            if !namespace.is_empty() {
                seg.push(namespace);
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

    fn scrub(&self, s: &str) -> String {
        self.redactor.redact(s)
    }

    async fn send(&self, make: impl FnMut() -> RequestBuilder) -> Result<Response, Failure> {
        send_with_retry(&self.retry, make)
            .await
            .map_err(|e| Failure {
                status: None,
                code: None,
                message: self.scrub(&format!("cannot reach {}: {}", self.base, describe(&e))),
            })
    }

    /// Turns a non-2xx answer into a [`Failure`] (reads grpc-gateway's body).
    async fn check(&self, resp: Response) -> Result<Response, Failure> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Err(self.failure_from_body(status, &text))
    }

    fn failure_from_body(&self, status: u16, text: &str) -> Failure {
        let body: Option<Value> = serde_json::from_str(text).ok();
        let code = body
            .as_ref()
            .and_then(|b| b.get("code"))
            .and_then(Value::as_u64);
        let msg = body
            .as_ref()
            .and_then(|b| b.get("message").or_else(|| b.get("error")))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| {
                let t: String = text.chars().take(200).collect();
                if t.trim().is_empty() {
                    http_reason(status).to_string()
                } else {
                    t
                }
            });
        Failure {
            status: Some(status),
            code,
            message: self.scrub(msg.replace(['\r', '\n'], " ").trim()),
        }
    }

    async fn json(&self, resp: Response) -> Result<Value, Failure> {
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| Failure {
            status: Some(status),
            code: None,
            message: self.scrub(&format!("reading the answer: {}", describe(&e))),
        })?;
        serde_json::from_str(&text).map_err(|e| Failure {
            status: Some(status),
            code: None,
            message: format!("the answer is not JSON ({e}); is --server an Argo CD API server?"),
        })
    }

    /// `POST /api/v1/session`: trades a local user's password for a token.
    pub async fn login(&self, username: &str, password: &Secret) -> Result<Secret, Failure> {
        let url = self.url(&["session"], &[]);
        let body = serde_json::json!({ "username": username, "password": password.expose() });
        let resp = self
            .send(|| {
                self.http
                    .post(url.clone())
                    .timeout(CALL_TIMEOUT)
                    .json(&body)
            })
            .await?;
        let resp = self.check(resp).await?;
        let v = self.json(resp).await?;
        match v.get("token").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => Ok(Secret::new(t)),
            _ => Err(Failure {
                status: Some(200),
                code: None,
                message: "the session answer holds no token".into(),
            }),
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
    pub async fn get_app(&self, name: &str, refresh: Option<&str>) -> Result<Value, Failure> {
        let url = self.url(
            &["applications", name],
            &[
                ("refresh", refresh.unwrap_or("")),
                ("appNamespace", self.app_namespace.as_deref().unwrap_or("")),
                ("project", self.project.as_deref().unwrap_or("")),
            ],
        );
        let resp = self
            .send(|| self.authed(self.http.get(url.clone()).timeout(CALL_TIMEOUT)))
            .await?;
        let resp = self.check(resp).await?;
        self.json(resp).await
    }

    /// `GET /api/v1/applications?selector=…`: the names of matching apps.
    pub async fn list_apps(&self, selector: &str) -> Result<Vec<Value>, Failure> {
        let url = self.url(
            &["applications"],
            &[
                ("selector", selector),
                ("appNamespace", self.app_namespace.as_deref().unwrap_or("")),
                ("projects", self.project.as_deref().unwrap_or("")),
            ],
        );
        let resp = self
            .send(|| self.authed(self.http.get(url.clone()).timeout(CALL_TIMEOUT)))
            .await?;
        let resp = self.check(resp).await?;
        let v = self.json(resp).await?;
        Ok(v.get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// `POST /api/v1/applications/{name}/sync` with an
    /// `applicationApplicationSyncRequest` body.
    pub async fn sync(&self, name: &str, body: &Value) -> Result<Value, Failure> {
        let url = self.url(&["applications", name, "sync"], &[]);
        let resp = self
            .send(|| self.authed(self.http.post(url.clone()).timeout(CALL_TIMEOUT).json(body)))
            .await?;
        let resp = self.check(resp).await?;
        self.json(resp).await
    }

    /// Opens `GET /api/v1/stream/applications?name=…` asking for server-sent
    /// events (the parser also reads grpc-gateway's newline-delimited JSON).
    /// No retries here: the caller falls back to polling.
    pub async fn open_stream(&self, name: &str) -> Result<Response, Failure> {
        let url = self.url(
            &["stream", "applications"],
            &[
                ("name", name),
                ("appNamespace", self.app_namespace.as_deref().unwrap_or("")),
            ],
        );
        let resp = self
            .authed(
                self.http
                    .get(url)
                    .header(reqwest::header::ACCEPT, "text/event-stream"),
            )
            .send()
            .await
            .map_err(|e| Failure {
                status: None,
                code: None,
                message: self.scrub(&describe(&e)),
            })?;
        self.check(resp).await
    }

    /// Scrubs a text that may hold a secret (for stream errors).
    pub fn redact(&self, s: &str) -> String {
        self.scrub(s)
    }
}

fn http_reason(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_forms() {
        assert_eq!(
            parse_server("argocd.example.com").unwrap().as_str(),
            "https://argocd.example.com/"
        );
        assert_eq!(
            parse_server("http://127.0.0.1:8080").unwrap().as_str(),
            "http://127.0.0.1:8080/"
        );
        assert_eq!(
            parse_server("https://h/argo-cd").unwrap().as_str(),
            "https://h/argo-cd/"
        );
        assert_eq!(parse_server("").unwrap_err().kind, kit::ExitKind::Usage);
        assert_eq!(
            parse_server("ftp://h").unwrap_err().kind,
            kit::ExitKind::Usage
        );
        let e = parse_server("https://admin:hunter22@h").unwrap_err();
        assert!(!e.message.contains("hunter22"));
    }

    fn api(base: &str) -> Api {
        let mut r = Redactor::new();
        r.add_str("tok-secret-123");
        Api::new(
            parse_server(base).unwrap(),
            Client::new(),
            Secret::new("tok-secret-123"),
            r,
            RetryPolicy::default(),
        )
    }

    #[test]
    fn urls() {
        let mut a = api("https://h/base");
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
            a.ui_url("argocd", "sensor"),
            "https://h/base/applications/argocd/sensor"
        );
    }

    #[test]
    fn failures_from_grpc_gateway_bodies() {
        let a = api("https://h");
        let f = a.failure_from_body(400, r#"{"error":"another operation is already in progress","code":9,"message":"another operation is already in progress"}"#);
        assert!(f.is_operation_in_progress());
        let f = a.failure_from_body(
            401,
            r#"{"code":16,"message":"invalid session: tok-secret-123 expired"}"#,
        );
        let e = f.into_job("reading app sensor");
        assert_eq!(e.kind, kit::ExitKind::Remote);
        assert!(
            e.message.contains("HTTP 401, Unauthenticated"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("tok-secret-123"));
        let f = a.failure_from_body(502, "");
        assert_eq!(f.message, "Bad Gateway");
    }
}
