//! The whole job: credentials, which apps, one waiter per app running
//! concurrently under one deadline, the summary table and the dotenv file.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kit::env::Env;
use kit::http::{HttpOptions, RetryPolicy};
use kit::joblog;
use kit::secret::{Redactor, Secret};
use kit::{JobError, JobResult};
use serde_json::Value;

use crate::api::{Api, parse_server};
use crate::state::short;
use crate::watch::{Row, Rows, WaitOptions, WatchMode, wait_app};

/// Everything the job needs, as `main` parsed it from flags and env.
#[derive(Debug, Clone)]
pub struct Options {
    pub server: String,
    pub apps: Vec<String>,
    pub selector: Option<String>,
    pub auth_token: Option<Secret>,
    pub username: Option<String>,
    pub password: Option<Secret>,
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
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

pub async fn run(opts: Options, env: &dyn Env) -> JobResult<()> {
    let started = Instant::now();
    let base = parse_server(&opts.server)?;
    let mut apps: Vec<String> = Vec::new();
    for a in opts
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
    let selector = nonempty(&opts.selector);
    if apps.is_empty() && selector.is_none() {
        return Err(JobError::usage(
            "no application: give --app NAME (ARGOCD_APP) or --selector LABELS (ARGOCD_SELECTOR)",
        ));
    }
    let revision = nonempty(&opts.revision);
    if let Some(r) = &revision
        && r.chars().any(char::is_whitespace)
    {
        return Err(JobError::usage(format!(
            "--revision {r:?} contains whitespace"
        )));
    }
    if opts.timeout.is_zero() {
        return Err(JobError::usage("--timeout must be more than 0"));
    }
    if opts.poll_interval < Duration::from_millis(100) {
        return Err(JobError::usage("--poll-interval must be at least 100ms"));
    }
    let token = opts
        .auth_token
        .clone()
        .filter(|t| !t.expose().trim().is_empty());
    let username = nonempty(&opts.username);
    let password = opts.password.clone().filter(|p| !p.is_empty());
    if token.is_none() && (username.is_none() || password.is_none()) {
        return Err(JobError::usage(
            "no credentials: set ARGOCD_AUTH_TOKEN (--auth-token), or --username and --password (ARGOCD_USERNAME/ARGOCD_PASSWORD)",
        ));
    }

    let mut redactor = Redactor::new();
    if let Some(t) = &token {
        redactor.add(t);
    }
    if let Some(p) = &password {
        redactor.add(p);
    }
    if opts.insecure {
        joblog::warn(
            "--insecure: TLS certificates of the Argo CD server are NOT verified; anyone on the path can read the token",
        );
    } else if base.scheme() == "http" {
        joblog::warn(format!(
            "{base} is plain HTTP: the token travels unencrypted"
        ));
    }
    let http = kit::http::client(
        &HttpOptions {
            accept_invalid_certs: opts.insecure,
            ..HttpOptions::default()
        },
        env,
    )?;
    let retry = RetryPolicy {
        attempts: 5,
        base_delay: Duration::from_millis(500),
        ..RetryPolicy::default()
    };
    let mut api = Api::new(
        base.clone(),
        http,
        token.clone().unwrap_or_default(),
        redactor,
        retry,
    );
    api.app_namespace = nonempty(&opts.app_namespace);
    api.project = nonempty(&opts.project);

    joblog::info(format!(
        "Argo CD {base}: {}{}, waiting up to {} for {}",
        if opts.sync {
            "refresh and sync"
        } else {
            "refresh"
        },
        if opts.hard_refresh { " (hard)" } else { "" },
        kit::duration::human(opts.timeout),
        revision
            .as_deref()
            .map_or("the refreshed revision".to_string(), |r| format!(
                "revision {}",
                short(r)
            ))
    ));

    let deadline = tokio::time::Instant::now() + opts.timeout;
    let rows: Rows = Arc::new(Mutex::new(Vec::new()));
    let wait_opts = WaitOptions {
        revision: revision.clone(),
        sync: opts.sync,
        prune: opts.prune,
        hard_refresh: opts.hard_refresh,
        watch: opts.watch,
        poll_interval: opts.poll_interval,
        stream_idle: Duration::from_secs(60),
        started,
    };

    let work = async {
        if token.is_none()
            && let (Some(u), Some(p)) = (&username, &password)
        {
            let t = api
                .login(u, p)
                .await
                .map_err(|f| f.into_job(&format!("logging in to Argo CD as {u}")))?;
            joblog::info(format!("logged in to Argo CD as {u}"));
            api = api.clone().with_token(t);
        }
        if let Some(sel) = &selector {
            let items = api
                .list_apps(sel)
                .await
                .map_err(|f| f.into_job(&format!("listing apps with selector {sel:?}")))?;
            let found: Vec<String> = items
                .iter()
                .filter_map(|a| {
                    a.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect();
            if found.is_empty() {
                return Err(JobError::remote(format!(
                    "no Argo CD application matches --selector {sel:?}{}",
                    api.project
                        .as_deref()
                        .map(|p| format!(" in project {p}"))
                        .unwrap_or_default()
                )));
            }
            joblog::info(format!(
                "selector {sel:?} matches {} app(s): {}",
                found.len(),
                found.join(", ")
            ));
            for n in found {
                if !apps.contains(&n) {
                    apps.push(n);
                }
            }
        }
        {
            let mut g = rows.lock().unwrap_or_else(|e| e.into_inner());
            for a in &apps {
                g.push((
                    a.clone(),
                    Row {
                        result: "waiting".into(),
                        ..Row::default()
                    },
                ));
            }
        }
        wait_all(&api, &apps, &wait_opts, &rows).await
    };
    let outcome = match tokio::time::timeout_at(deadline, work).await {
        Ok(r) => r,
        Err(_) => Err(timeout_error(&rows, opts.timeout)),
    };

    print_table(&rows, outcome.is_ok());
    outcome?;

    if let Some(path) = opts.dotenv.as_ref().filter(|p| !p.as_os_str().is_empty()) {
        let g = rows.lock().unwrap_or_else(|e| e.into_inner());
        let mut d = kit::dotenv::Dotenv::new();
        if let Some((_, first)) = g.first() {
            d.set("ARGOCD_APP_URL", &first.url)?;
            let rev = first
                .view
                .as_ref()
                .map(|v| v.sync_revision.clone())
                .unwrap_or_default();
            d.set("DEPLOYED_REVISION", rev)?;
        }
        d.set(
            "ARGOCD_APPS",
            g.iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(","),
        )?;
        d.write(path)?;
        joblog::info(format!("wrote {}", path.display()));
    }
    Ok(())
}

/// Runs one waiter per app; the first failure stops the others (exit 1 "at
/// once"), and is the job's result.
async fn wait_all(api: &Api, apps: &[String], opts: &WaitOptions, rows: &Rows) -> JobResult<()> {
    let mut set = tokio::task::JoinSet::new();
    for name in apps {
        let (api, name, opts, rows) = (api.clone(), name.clone(), opts.clone(), rows.clone());
        set.spawn(async move {
            let r = wait_app(&api, &name, &opts, &rows).await;
            (name, r)
        });
    }
    while let Some(joined) = set.join_next().await {
        let (name, r) = joined
            .map_err(|e| JobError::remote(format!("internal error: a waiter stopped: {e}")))?;
        let took = opts.started.elapsed();
        let mut g = rows.lock().unwrap_or_else(|e| e.into_inner());
        let row = g.iter_mut().find(|(n, _)| *n == name).map(|(_, r)| r);
        match r {
            Ok(view) => {
                if let Some(row) = row {
                    row.result = "deployed".into();
                    row.took = Some(took);
                    row.view = Some(view);
                }
            }
            Err(e) => {
                if let Some(row) = row {
                    row.result = if e.kind == kit::ExitKind::Policy {
                        "FAILED"
                    } else {
                        "ERROR"
                    }
                    .into();
                    row.took = Some(took);
                }
                for (_, other) in g.iter_mut().filter(|(_, r)| r.result == "waiting") {
                    other.result = "stopped".into();
                }
                drop(g);
                set.abort_all();
                return Err(e);
            }
        }
    }
    Ok(())
}

fn timeout_error(rows: &Rows, timeout: Duration) -> JobError {
    let mut g = rows.lock().unwrap_or_else(|e| e.into_inner());
    let mut parts = vec![];
    for (name, row) in g.iter_mut().filter(|(_, r)| r.result == "waiting") {
        row.result = "TIMEOUT".into();
        let state = row
            .view
            .as_ref()
            .map_or("no answer yet".to_string(), |v| v.summary());
        let why = if row.waiting_for.is_empty() {
            String::new()
        } else {
            format!(", waiting for {}", row.waiting_for)
        };
        parts.push(format!("{name}: {state}{why}"));
    }
    if parts.is_empty() {
        parts.push("before the applications were read".into());
    }
    JobError::timeout(format!(
        "timed out after {} (--timeout); last state: {}",
        kit::duration::human(timeout),
        parts.join(" | ")
    ))
}

fn print_table(rows: &Rows, ok: bool) {
    let g = rows.lock().unwrap_or_else(|e| e.into_inner());
    if g.is_empty() {
        return;
    }
    let body: Vec<Vec<String>> = g
        .iter()
        .map(|(name, r)| {
            let v = r.view.clone().unwrap_or_default();
            let dash = |s: &str| {
                if s.is_empty() {
                    "-".to_string()
                } else {
                    s.to_string()
                }
            };
            vec![
                name.clone(),
                r.result.clone(),
                dash(&v.sync_status),
                dash(&v.health),
                dash(&v.phase),
                dash(&short(&v.sync_revision)),
                r.took.map_or("-".to_string(), kit::duration::human),
                dash(&r.url),
            ]
        })
        .collect();
    let _section = joblog::Section::start("notify_argocd_summary", "Argo CD applications", false);
    let table = joblog::table(
        &[
            "APP",
            "RESULT",
            "SYNC",
            "HEALTH",
            "OPERATION",
            "REVISION",
            "TIME",
            "URL",
        ],
        &body,
        80,
    );
    eprint!("{table}");
    if ok {
        joblog::info(format!(
            "{} app(s) Synced and Healthy on the expected revision",
            g.len()
        ));
    }
}
