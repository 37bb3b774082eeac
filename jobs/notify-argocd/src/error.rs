//! What can stop the job, each mapped to its exit code in one place
//! ([`Failure::exit_kind`]). A policy failure (Degraded, sync Failed/Error)
//! is not an error: the run returns `Outcome::Refused` (exit 1).

use std::time::Duration;

use kit::ExitKind;
use kit::api::ApiError;
use kit::job::Failure;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to Argo CD failed: no answer, an error status, or an answer
    /// of another shape. `what` is what the job was doing.
    #[error("{what}: {}{}", describe(source), hint(source))]
    Api {
        what: String,
        #[source]
        source: ApiError,
    },
    /// The selector matched no application.
    #[error(
        "no Argo CD application matches --selector {selector:?}{}",
        in_project(project)
    )]
    NoMatch {
        selector: String,
        project: Option<String>,
    },
    /// The app was deleted while the job waited for it.
    #[error("{app}: the Application was deleted while waiting")]
    Deleted { app: String },
    /// `--timeout` passed; `pending` is each unfinished app's last state and
    /// what it was waiting for.
    #[error(
        "timed out after {} (--timeout); last state: {pending}",
        kit::duration::human(*after)
    )]
    Timeout { after: Duration, pending: String },
    /// A waiter task ended without an answer (a panic in the job).
    #[error("internal error: the waiter for {app} stopped")]
    Waiter {
        app: String,
        #[source]
        source: tokio::task::JoinError,
    },
    /// Writing the dotenv file.
    #[error("writing {path}: {source}")]
    Dotenv {
        path: String,
        #[source]
        source: kit::JobError,
    },
}

fn describe(e: &ApiError) -> String {
    match e {
        ApiError::Transport { .. } => format!("cannot reach {e}"),
        _ => e.to_string(),
    }
}

fn hint(e: &ApiError) -> &'static str {
    match e.status() {
        Some(401) => " (check ARGOCD_AUTH_TOKEN, or --username/--password; tokens expire)",
        Some(403) => {
            " (the account lacks this permission in Argo CD's RBAC; Argo CD also answers 403 for an app that does not exist when the account may not list it)"
        }
        Some(404) => " (check the app name, --app-namespace and --project)",
        _ => "",
    }
}

fn in_project(p: &Option<String>) -> String {
    p.as_deref()
        .map(|p| format!(" in project {p}"))
        .unwrap_or_default()
}

impl Error {
    pub fn api(what: impl Into<String>, source: ApiError) -> Self {
        Error::Api {
            what: what.into(),
            source,
        }
    }
}

impl Failure for Error {
    fn exit_kind(&self) -> ExitKind {
        match self {
            Error::Api { source, .. } => source.exit_kind(),
            Error::Timeout { .. } => ExitKind::Timeout,
            Error::NoMatch { .. } | Error::Deleted { .. } | Error::Waiter { .. } => {
                ExitKind::Remote
            }
            Error::Dotenv { source, .. } => source.kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn refusals_are_exit_3_with_a_hint_and_the_body_message() {
        let e = Error::api(
            "refreshing app ghost",
            ApiError::from_status(
                "Argo CD",
                "GET",
                "https://argo/api/v1/applications/ghost?refresh=normal",
                StatusCode::NOT_FOUND,
                br#"{"error":"applications.argoproj.io \"ghost\" not found","code":5,"message":"applications.argoproj.io \"ghost\" not found"}"#,
            ),
        );
        assert_eq!(e.exit_kind(), ExitKind::Remote);
        assert_eq!(
            kit::job::cause_line(&e),
            "refreshing app ghost: Argo CD answered 404 to GET https://argo/api/v1/applications/ghost?refresh=normal: applications.argoproj.io \"ghost\" not found (check the app name, --app-namespace and --project)"
        );
    }

    #[test]
    fn a_malformed_answer_is_exit_3_and_a_timeout_exit_4() {
        let e = Error::api(
            "reading app sensor",
            ApiError::unexpected("Argo CD", "https://argo/x", "missing field `metadata`"),
        );
        assert_eq!(e.exit_kind(), ExitKind::Remote);
        assert_eq!(
            e.to_string(),
            "reading app sensor: unexpected answer from Argo CD at https://argo/x: missing field `metadata`"
        );
        let t = Error::Timeout {
            after: Duration::from_secs(3),
            pending: "sensor: sync=Synced".into(),
        };
        assert_eq!(t.exit_kind(), ExitKind::Timeout);
        assert_eq!(
            t.to_string(),
            "timed out after 3.0s (--timeout); last state: sensor: sync=Synced"
        );
    }
}
