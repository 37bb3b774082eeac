//! Answers from HTTP APIs (GitLab, Argo CD, registries), read into typed
//! structs. A refusal becomes one [`ApiError`] whatever the service; a body
//! that does not match the expected model is "unexpected answer", never a
//! guessed default.

use std::fmt;

use reqwest::{Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::exit::ExitKind;
use crate::job::Failure;
use crate::secret::redact_url_credentials;

/// How much of an error body is kept for the log.
pub const EXCERPT_CHARS: usize = 300;
/// The most an API answer may be before it is refused (hostile servers).
pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// An API answer the job cannot use.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The service answered with an error status.
    #[error("{service} answered {status} to {method} {url}{}", body.detail())]
    Status {
        service: &'static str,
        method: &'static str,
        url: String,
        status: u16,
        body: Box<ErrorBody>,
    },
    /// The answer came with a success status but not in the expected shape.
    #[error("unexpected answer from {service} at {url}: {reason}")]
    Unexpected {
        service: &'static str,
        url: String,
        reason: String,
    },
    /// No answer: connection, TLS, or a read that timed out.
    #[error("{service} at {url}: {reason}")]
    Transport {
        service: &'static str,
        url: String,
        reason: String,
        timed_out: bool,
    },
}

/// What an error body said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorBody {
    /// A machine-readable code from the body (`code`, `errors[0].code`), if any.
    pub code: Option<String>,
    /// The human message (`message`, `error_description`, `error`), if any.
    pub message: Option<String>,
    /// The start of the body when neither could be read, URL credentials
    /// and control characters removed.
    pub excerpt: String,
}

impl ErrorBody {
    fn detail(&self) -> String {
        match (&self.code, &self.message) {
            (_, Some(m)) if !m.is_empty() => format!(": {m}"),
            (Some(c), _) if !c.is_empty() => format!(": {c}"),
            _ if !self.excerpt.is_empty() => format!(": {}", self.excerpt),
            _ => String::new(),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error body's message or code, for callers that decide on it.
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            ApiError::Status { body, .. } => Some(body),
            _ => None,
        }
    }

    /// Builds the error for an error status from its body.
    pub fn from_status(
        service: &'static str,
        method: &'static str,
        url: &str,
        status: StatusCode,
        body: &[u8],
    ) -> Self {
        let (code, message) = error_fields(body);
        let excerpt = if message.is_none() && code.is_none() {
            excerpt(body)
        } else {
            String::new()
        };
        ApiError::Status {
            service,
            method,
            url: redact_url_credentials(url),
            status: status.as_u16(),
            body: Box::new(ErrorBody {
                code,
                message,
                excerpt,
            }),
        }
    }

    pub fn unexpected(service: &'static str, url: &str, reason: impl fmt::Display) -> Self {
        ApiError::Unexpected {
            service,
            url: redact_url_credentials(url),
            reason: one_line(&reason.to_string()),
        }
    }

    pub fn transport(service: &'static str, url: &str, e: &reqwest::Error) -> Self {
        ApiError::Transport {
            service,
            url: redact_url_credentials(url),
            reason: crate::http::describe(e),
            timed_out: e.is_timeout(),
        }
    }
}

impl Failure for ApiError {
    fn exit_kind(&self) -> ExitKind {
        match self {
            ApiError::Transport {
                timed_out: true, ..
            } => ExitKind::Timeout,
            _ => ExitKind::Remote,
        }
    }
}

/// `code`/`message` from the error bodies GitLab (`message`, `error`,
/// `error_description`), Argo CD (`error`, `message`, `code`) and the OCI
/// distribution API (`errors[0].code`, `errors[0].message`) send.
fn error_fields(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        message: Option<serde_json::Value>,
        #[serde(default)]
        error: Option<serde_json::Value>,
        #[serde(default)]
        error_description: Option<String>,
        #[serde(default)]
        code: Option<serde_json::Value>,
        #[serde(default)]
        errors: Option<Vec<OciError>>,
    }
    #[derive(serde::Deserialize)]
    struct OciError {
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        message: Option<String>,
    }
    let Ok(b) = serde_json::from_slice::<Body>(body) else {
        return (None, None);
    };
    // GitLab's `message` may be a string, a list or a map of field errors.
    let text = |v: serde_json::Value| match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    let oci = b.errors.and_then(|e| e.into_iter().next());
    let code = b
        .code
        .map(text)
        .or_else(|| oci.as_ref().and_then(|e| e.code.clone()));
    let message = b
        .message
        .map(text)
        .or(b.error_description)
        .or_else(|| b.error.map(text))
        .or_else(|| oci.and_then(|e| e.message));
    (
        code.map(|c| clip(&one_line(&c))),
        message.map(|m| clip(&one_line(&m))),
    )
}

/// The start of a body, printable characters only, URL credentials removed.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(EXCERPT_CHARS * 4)]);
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    clip(redact_url_credentials(cleaned.trim()).as_str())
}

fn clip(s: &str) -> String {
    match s.char_indices().nth(EXCERPT_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// Reads at most `limit` bytes of a body; more is an error (a hostile or
/// broken server cannot exhaust memory).
pub async fn read_limited(
    mut resp: Response,
    service: &'static str,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let url = resp.url().to_string();
    if let Some(len) = resp.content_length()
        && len > limit as u64
    {
        return Err(ApiError::unexpected(
            service,
            &url,
            format!("the answer is {len} bytes, more than the {limit} allowed"),
        ));
    }
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > limit {
                    return Err(ApiError::unexpected(
                        service,
                        &url,
                        format!("the answer is longer than the {limit} bytes allowed"),
                    ));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(ApiError::transport(service, &url, &e)),
        }
    }
}

/// Reads a success answer as `T`; an error status becomes
/// [`ApiError::Status`], a body of another shape [`ApiError::Unexpected`].
pub async fn json<T: DeserializeOwned>(
    resp: Response,
    service: &'static str,
    method: &'static str,
) -> Result<T, ApiError> {
    let url = resp.url().to_string();
    let status = resp.status();
    let body = read_limited(resp, service, DEFAULT_BODY_LIMIT).await?;
    if !status.is_success() {
        return Err(ApiError::from_status(service, method, &url, status, &body));
    }
    decode(service, &url, &body)
}

/// Decodes a body already read; the serde error (with its line and column)
/// is the reason.
pub fn decode<T: DeserializeOwned>(
    service: &'static str,
    url: &str,
    body: &[u8],
) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::unexpected(service, url, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_errors_read_each_services_body() {
        let gl = ApiError::from_status(
            "GitLab",
            "GET",
            "https://gitlab.example/api/v4/projects/1",
            StatusCode::NOT_FOUND,
            br#"{"message":"404 Project Not Found"}"#,
        );
        assert_eq!(
            gl.to_string(),
            "GitLab answered 404 to GET https://gitlab.example/api/v4/projects/1: 404 Project Not Found"
        );
        let argo = ApiError::from_status(
            "Argo CD",
            "POST",
            "https://argo/api/v1/applications/a/sync",
            StatusCode::BAD_REQUEST,
            br#"{"error":"another operation is already in progress","code":9,"message":"another operation is already in progress"}"#,
        );
        assert_eq!(argo.status(), Some(400));
        assert!(
            argo.to_string()
                .ends_with("another operation is already in progress")
        );
        let oci = ApiError::from_status(
            "registry",
            "HEAD",
            "https://r/v2/x/manifests/y",
            StatusCode::UNAUTHORIZED,
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        );
        assert!(
            oci.to_string().ends_with(": authentication required"),
            "{oci}"
        );
        assert_eq!(oci.exit_kind(), ExitKind::Remote);
    }

    #[test]
    fn a_body_that_is_not_json_is_excerpted_clean() {
        let e = ApiError::from_status(
            "GitLab",
            "GET",
            "https://u:p@gitlab.example/x",
            StatusCode::BAD_GATEWAY,
            b"<html>\n<h1>502 https://user:pw@internal/</h1>\x1b[31m</html>",
        );
        let s = e.to_string();
        assert!(
            !s.contains("pw") && !s.contains('\n') && !s.contains('\x1b'),
            "{s}"
        );
        assert!(s.contains("502 https://internal/"), "{s}");
    }

    #[test]
    fn a_malformed_answer_is_unexpected_not_a_default() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Mr {
            iid: u64,
        }
        let e = decode::<Mr>("GitLab", "https://g/api", br#"{"id":5}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unexpected answer from GitLab at https://g/api: missing field `iid` at line 1 column 8"
        );
    }
}
