//! The whole job: credentials, which apps, one waiter per app running
//! concurrently under one deadline, the summary table and the dotenv file.
//! Every flag was checked in [`crate::config`] before any of this runs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kit::env::Env;
use kit::http::RetryPolicy;
use kit::job::Outcome;
use kit::joblog;
use kit::secret::{Redactor, Secret};

use crate::api::Api;
use crate::config::{Config, Credentials};
use crate::error::Error;
use crate::state::short;
use crate::watch::{Row, Rows, WaitOptions, Waited, wait_app};

/// notify-argocd, for `kit::job::main`.
pub struct Job;

impl kit::job::Work for Job {
    const NAME: &'static str = "notify-argocd";
    const MULTI_THREAD: bool = true;
    type Config = Config;
    type Error = Error;

    // No `deadline`: `--timeout` is enforced in `run`, which knows what
    // each app was still waiting for when it passed.

    async fn run(config: Config, _env: &dyn Env) -> Result<Outcome, Error> {
        run(config).await
    }
}

pub async fn run(config: Config) -> Result<Outcome, Error> {
    let started = Instant::now();
    let base = config.base.clone();
    let mut redactor = Redactor::new();
    for s in config.credentials.secrets() {
        redactor.add(s);
    }
    if config.insecure {
        joblog::warn(
            "--insecure: TLS certificates of the Argo CD server are NOT verified; anyone on the path can read the token",
        );
    } else if base.scheme() == "http" {
        joblog::warn(format!(
            "{base} is plain HTTP: the token travels unencrypted"
        ));
    }
    let retry = RetryPolicy {
        attempts: 5,
        base_delay: Duration::from_millis(500),
        ..RetryPolicy::default()
    };
    let token = match &config.credentials {
        Credentials::Token(t) => t.clone(),
        Credentials::Login { .. } => Secret::default(),
    };
    let mut api = Api::new(base.clone(), config.http.clone(), token, redactor, retry);
    api.app_namespace = config.app_namespace.clone();
    api.project = config.project.clone();

    joblog::info(format!(
        "Argo CD {base}: {}{}, waiting up to {} for {}",
        if config.sync {
            "refresh and sync"
        } else {
            "refresh"
        },
        if config.hard_refresh { " (hard)" } else { "" },
        kit::duration::human(config.timeout),
        config
            .revision
            .as_deref()
            .map_or("the refreshed revision".to_string(), |r| format!(
                "revision {}",
                short(r)
            ))
    ));

    let deadline = tokio::time::Instant::now() + config.timeout;
    let rows: Rows = Arc::new(Mutex::new(Vec::new()));
    let wait_opts = WaitOptions {
        revision: config.revision.clone(),
        sync: config.sync,
        prune: config.prune,
        hard_refresh: config.hard_refresh,
        watch: config.watch,
        poll_interval: config.poll_interval,
        stream_idle: Duration::from_secs(60),
        started,
    };

    let mut apps = config.apps.clone();
    let work = async {
        if let Credentials::Login { username, password } = &config.credentials {
            let t = api
                .login(username, password)
                .await
                .map_err(|e| Error::api(format!("logging in to Argo CD as {username}"), e))?;
            joblog::info(format!("logged in to Argo CD as {username}"));
            api = api.clone().with_token(t);
        }
        if let Some(sel) = &config.selector {
            let items = api
                .list_apps(sel)
                .await
                .map_err(|e| Error::api(format!("listing apps with selector {sel:?}"), e))?;
            let found: Vec<String> = items.iter().map(|a| a.name().to_string()).collect();
            if found.is_empty() {
                return Err(Error::NoMatch {
                    selector: sel.clone(),
                    project: config.project.clone(),
                });
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
        Err(_) => Err(timeout_error(&rows, config.timeout)),
    };

    print_table(&rows, matches!(outcome, Ok(Outcome::Done)));
    if !matches!(outcome, Ok(Outcome::Done)) {
        return outcome;
    }

    if let Some(path) = &config.dotenv {
        let dotenv_error = |source| Error::Dotenv {
            path: path.display().to_string(),
            source,
        };
        let g = rows.lock().unwrap_or_else(|e| e.into_inner());
        let mut d = kit::dotenv::Dotenv::new();
        if let Some((_, first)) = g.first() {
            d.set("ARGOCD_APP_URL", &first.url).map_err(dotenv_error)?;
            let rev = first
                .view
                .as_ref()
                .and_then(|v| v.sync_revision())
                .unwrap_or_default();
            d.set("DEPLOYED_REVISION", rev).map_err(dotenv_error)?;
        }
        d.set(
            "ARGOCD_APPS",
            g.iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(","),
        )
        .map_err(dotenv_error)?;
        d.write(path).map_err(dotenv_error)?;
        joblog::info(format!("wrote {}", path.display()));
    }
    Ok(Outcome::Done)
}

/// Runs one waiter per app; the first refusal or failure stops the others
/// (exit 1 "at once"), and is the job's result.
async fn wait_all(
    api: &Api,
    apps: &[String],
    opts: &WaitOptions,
    rows: &Rows,
) -> Result<Outcome, Error> {
    let mut set = tokio::task::JoinSet::new();
    let mut ids = std::collections::HashMap::new();
    for name in apps {
        let (api, name, opts, rows) = (api.clone(), name.clone(), opts.clone(), rows.clone());
        let n = name.clone();
        let handle = set.spawn(async move {
            let r = wait_app(&api, &name, &opts, &rows).await;
            (name, r)
        });
        ids.insert(handle.id(), n);
    }
    while let Some(joined) = set.join_next().await {
        let (name, r) = match joined {
            Ok(x) => x,
            Err(source) => {
                let app = ids.get(&source.id()).cloned().unwrap_or_default();
                set.abort_all();
                return Err(Error::Waiter { app, source });
            }
        };
        let took = opts.started.elapsed();
        let mut g = rows.lock().unwrap_or_else(|e| e.into_inner());
        let row = g.iter_mut().find(|(n, _)| *n == name).map(|(_, r)| r);
        let stop: Result<Outcome, Error> = match r {
            Ok(Waited::Deployed(view)) => {
                if let Some(row) = row {
                    row.result = "deployed".into();
                    row.took = Some(took);
                    row.view = Some(*view);
                }
                continue;
            }
            Ok(Waited::Refused(reason)) => {
                if let Some(row) = row {
                    row.result = "FAILED".into();
                    row.took = Some(took);
                }
                Ok(Outcome::Refused(reason))
            }
            Err(e) => {
                if let Some(row) = row {
                    row.result = "ERROR".into();
                    row.took = Some(took);
                }
                Err(e)
            }
        };
        for (_, other) in g.iter_mut().filter(|(_, r)| r.result == "waiting") {
            other.result = "stopped".into();
        }
        drop(g);
        set.abort_all();
        return stop;
    }
    Ok(Outcome::Done)
}

fn timeout_error(rows: &Rows, timeout: Duration) -> Error {
    let mut g = rows.lock().unwrap_or_else(|e| e.into_inner());
    let mut parts = vec![];
    for (name, row) in g.iter_mut().filter(|(_, r)| r.result == "waiting") {
        row.result = "TIMEOUT".into();
        let state = row
            .view
            .as_ref()
            .map_or("no answer yet".to_string(), crate::state::summary);
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
    Error::Timeout {
        after: timeout,
        pending: parts.join(" | "),
    }
}

fn print_table(rows: &Rows, ok: bool) {
    let g = rows.lock().unwrap_or_else(|e| e.into_inner());
    if g.is_empty() {
        return;
    }
    let body: Vec<Vec<String>> = g
        .iter()
        .map(|(name, r)| {
            let v = r.view.as_ref();
            let dash = |s: Option<&str>| match s {
                Some(s) if !s.is_empty() => s.to_string(),
                _ => "-".to_string(),
            };
            vec![
                name.clone(),
                r.result.clone(),
                dash(v.and_then(|v| v.sync_status())),
                dash(v.and_then(|v| v.health())),
                dash(v.and_then(|v| v.phase())),
                dash(v.and_then(|v| v.sync_revision()).map(short).as_deref()),
                r.took.map_or("-".to_string(), kit::duration::human),
                dash(Some(&r.url)),
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
