//! Every flag checked before the first request: the server URL, the apps,
//! credentials, durations, the revision, CA bundles (the HTTP client is
//! built here). A problem is exit 2 with a one-line cause.

use std::path::PathBuf;
use std::time::Duration;

use kit::env::Env;
use kit::http::HttpOptions;
use kit::job::{FromArgs, UsageError};
use kit::secret::Secret;
use url::Url;

use crate::cli::{Args, WatchMode};

/// How the job authenticates.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// `ARGOCD_AUTH_TOKEN`.
    Token(Secret),
    /// A session login (`POST /api/v1/session`) as a local user.
    Login { username: String, password: Secret },
}

impl Credentials {
    /// Every secret value, for the redactor.
    pub fn secrets(&self) -> Vec<&Secret> {
        match self {
            Credentials::Token(t) => vec![t],
            Credentials::Login { password, .. } => vec![password],
        }
    }
}

/// A validated run.
#[derive(Debug)]
pub struct Config {
    /// The API server, with a trailing `/`.
    pub base: Url,
    /// `--app`, trimmed, without duplicates, in order.
    pub apps: Vec<String>,
    pub selector: Option<String>,
    pub credentials: Credentials,
    pub revision: Option<String>,
    pub sync: bool,
    pub prune: bool,
    pub hard_refresh: bool,
    pub timeout: Duration,
    pub app_namespace: Option<String>,
    pub project: Option<String>,
    pub insecure: bool,
    pub watch: WatchMode,
    pub poll_interval: Duration,
    /// Where to write `ARGOCD_APP_URL`/`DEPLOYED_REVISION`; `None`: nowhere.
    pub dotenv: Option<PathBuf>,
    /// The HTTP client, with the extra CA bundles the environment names.
    pub http: reqwest::Client,
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

fn duration(flag: &str, value: &str) -> Result<Duration, UsageError> {
    kit::duration::parse(value).map_err(|e| UsageError::with_source(flag.to_string(), e))
}

impl FromArgs for Config {
    type Args = Args;

    fn from_args(args: Args, env: &dyn Env) -> Result<Config, UsageError> {
        let server = nonempty(args.server)
            .ok_or_else(|| UsageError::new("no server: give --server URL (ARGOCD_SERVER)"))?;
        let base = parse_server(&server)?;

        let mut apps: Vec<String> = Vec::new();
        for a in args
            .apps
            .iter()
            .flat_map(|a| a.split(','))
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            if !apps.iter().any(|x| x == a) {
                apps.push(a.to_string());
            }
        }
        let selector = nonempty(args.selector);
        if apps.is_empty() && selector.is_none() {
            return Err(UsageError::new(
                "no application: give --app NAME (ARGOCD_APP) or --selector LABELS (ARGOCD_SELECTOR)",
            ));
        }

        let revision = nonempty(args.revision);
        if let Some(r) = &revision
            && r.chars().any(char::is_whitespace)
        {
            return Err(UsageError::new(format!(
                "--revision {r:?} contains whitespace"
            )));
        }

        let timeout = duration("--timeout", &args.timeout)?;
        if timeout.is_zero() {
            return Err(UsageError::new("--timeout must be more than 0"));
        }
        let poll_interval = duration("--poll-interval", &args.poll_interval)?;
        if poll_interval < Duration::from_millis(100) {
            return Err(UsageError::new("--poll-interval must be at least 100ms"));
        }

        let token = args.auth_token.filter(|t| !t.expose().trim().is_empty());
        let username = nonempty(args.username);
        let password = args.password.filter(|p| !p.is_empty());
        let credentials = match (token, username, password) {
            (Some(t), _, _) => Credentials::Token(t),
            (None, Some(username), Some(password)) => Credentials::Login { username, password },
            _ => {
                return Err(UsageError::new(
                    "no credentials: set ARGOCD_AUTH_TOKEN (--auth-token), or --username and --password (ARGOCD_USERNAME/ARGOCD_PASSWORD)",
                ));
            }
        };

        let http = kit::http::client(
            &HttpOptions {
                accept_invalid_certs: args.insecure,
                ..HttpOptions::default()
            },
            env,
        )?;

        let dotenv = (!args.dotenv.is_empty()).then(|| PathBuf::from(args.dotenv));
        Ok(Config {
            base,
            apps,
            selector,
            credentials,
            revision,
            sync: args.sync,
            prune: args.prune,
            hard_refresh: args.hard_refresh,
            timeout,
            app_namespace: nonempty(args.app_namespace),
            project: nonempty(args.project),
            insecure: args.insecure,
            watch: args.watch,
            poll_interval,
            dotenv,
            http,
        })
    }
}

/// Parses `--server`: `https://host[:port][/base]`, `http://…` for plain
/// HTTP, or a bare `host[:port]` as the argocd CLI takes it (HTTPS).
pub fn parse_server(server: &str) -> Result<Url, UsageError> {
    let s = server.trim();
    let with_scheme = if s.contains("://") {
        s.to_string()
    } else {
        format!("https://{s}")
    };
    let mut url = Url::parse(&with_scheme).map_err(|e| {
        UsageError::with_source(
            format!(
                "--server {:?} is not a URL",
                kit::secret::redact_url_credentials(s)
            ),
            e,
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UsageError::new(format!(
            "--server must be https:// or http://, not {}://",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UsageError::new(
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

#[cfg(test)]
mod tests {
    use super::*;
    use kit::env::MapEnv;

    fn args(argv: &[&str]) -> Args {
        kit::cli::try_parse_from::<Args, _, _>(
            std::iter::once("notify-argocd").chain(argv.iter().copied()),
        )
        .unwrap()
    }

    fn config(argv: &[&str]) -> Result<Config, UsageError> {
        Config::from_args(args(argv), &MapEnv::new([]))
    }

    fn cause(argv: &[&str]) -> String {
        kit::job::cause_line(&config(argv).unwrap_err())
    }

    #[test]
    fn server_forms() {
        let ok = |s: &str| parse_server(s).unwrap().to_string();
        assert_eq!(ok("argocd.example.com"), "https://argocd.example.com/");
        assert_eq!(ok("http://127.0.0.1:8080"), "http://127.0.0.1:8080/");
        assert_eq!(ok("https://h/argo-cd?x=1"), "https://h/argo-cd/");
        assert_eq!(
            parse_server("ftp://h").unwrap_err().to_string(),
            "--server must be https:// or http://, not ftp://"
        );
        let e = kit::job::cause_line(&parse_server("https://admin:hunter22@h").unwrap_err());
        assert!(!e.contains("hunter22"), "{e}");
    }

    #[test]
    fn every_check_is_a_usage_error_with_one_cause() {
        let tok = ["--auth-token", "tok-123456"];
        let with = |extra: &[&'static str]| -> Vec<&'static str> {
            let mut v = vec!["--server", "https://argo", "--auth-token", "tok-123456"];
            v.extend_from_slice(extra);
            v
        };
        assert_eq!(cause(&tok), "no server: give --server URL (ARGOCD_SERVER)");
        assert_eq!(
            cause(&with(&[])),
            "no application: give --app NAME (ARGOCD_APP) or --selector LABELS (ARGOCD_SELECTOR)"
        );
        assert_eq!(
            cause(&["--server", "h", "--app", "a"]),
            "no credentials: set ARGOCD_AUTH_TOKEN (--auth-token), or --username and --password (ARGOCD_USERNAME/ARGOCD_PASSWORD)"
        );
        assert_eq!(
            cause(&["--server", "h", "--app", "a", "--username", "u"]),
            cause(&["--server", "h", "--app", "a"]),
        );
        assert_eq!(
            cause(&with(&["--app", "a", "--timeout", "5 minutes"])),
            "--timeout: \"5 minutes\" is not a duration: use e.g. 90s, 5m, 1h30m, 500ms"
        );
        assert_eq!(
            cause(&with(&["--app", "a", "--timeout", "0s"])),
            "--timeout must be more than 0"
        );
        assert_eq!(
            cause(&with(&["--app", "a", "--poll-interval", "10ms"])),
            "--poll-interval must be at least 100ms"
        );
        assert_eq!(
            cause(&with(&["--app", "a", "--revision", "4e5b 2f1"])),
            "--revision \"4e5b 2f1\" contains whitespace"
        );
    }

    #[test]
    fn apps_are_split_trimmed_and_deduplicated() {
        let c = config(&[
            "--server",
            "argo:8443",
            "--auth-token",
            "tok-123456",
            "--app",
            " a, b ,,a",
            "--app",
            "c",
            "--dotenv",
            "",
        ])
        .unwrap();
        assert_eq!(c.apps, ["a", "b", "c"]);
        assert_eq!(c.base.as_str(), "https://argo:8443/");
        assert!(c.dotenv.is_none());
        assert!(matches!(c.credentials, Credentials::Token(_)));
        assert_eq!(c.timeout, Duration::from_secs(300));
    }

    #[test]
    fn an_unreadable_ca_bundle_is_a_usage_error() {
        let e = Config::from_args(
            args(&["--server", "h", "--app", "a", "--auth-token", "tok-123456"]),
            &MapEnv::new([("SSL_CERT_FILE", "/nonexistent/ca.pem")]),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("SSL_CERT_FILE names /nonexistent/ca.pem"),
            "{e}"
        );
    }
}
