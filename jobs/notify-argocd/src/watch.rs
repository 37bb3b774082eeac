//! Waiting for one Application: refresh, optional sync (retried while
//! another operation runs), then watch the stream, falling back to polling
//! when it breaks, and always re-reading the app first so an app that does
//! not change any more cannot leave the job hanging.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kit::joblog;
use kit::{JobError, JobResult};
use serde_json::{Value, json};

use crate::api::{Api, Failure};
use crate::state::{AppView, Expect, Verdict, short};
use crate::stream::{Item, Parser};

/// How to follow an app after the sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WatchMode {
    /// The watch stream; polling when it is unavailable or keeps breaking.
    Auto,
    /// Polling only.
    Poll,
}

/// What every app's waiter shares.
#[derive(Debug, Clone)]
pub struct WaitOptions {
    pub revision: Option<String>,
    pub sync: bool,
    pub prune: bool,
    pub hard_refresh: bool,
    pub watch: WatchMode,
    pub poll_interval: Duration,
    /// With no stream event for this long, re-read the app anyway (a stalled
    /// proxy must not hang the job). Keeps streaming at ≤ 2 requests/minute.
    pub stream_idle: Duration,
    /// When the job started (progress lines show the time since).
    pub started: Instant,
}

/// The latest known state of one app, for the summary table and the
/// timeout message.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub view: Option<AppView>,
    pub result: String,
    pub waiting_for: String,
    pub took: Option<Duration>,
    pub url: String,
}

pub type Rows = Arc<Mutex<Vec<(String, Row)>>>;

fn update_row(rows: &Rows, name: &str, f: impl FnOnce(&mut Row)) {
    let mut g = rows.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, r)) = g.iter_mut().find(|(n, _)| n == name) {
        f(r);
    }
}

struct Waiter<'a> {
    api: &'a Api,
    name: &'a str,
    opts: &'a WaitOptions,
    rows: &'a Rows,
    expect: Expect,
    last_key: Option<(String, String, String, bool, String)>,
}

/// Waits until `name` is deployed; `Err` is a policy failure (exit 1) or a
/// remote error (exit 3). The caller bounds it with the timeout.
pub async fn wait_app(
    api: &Api,
    name: &str,
    opts: &WaitOptions,
    rows: &Rows,
) -> JobResult<AppView> {
    let mut w = Waiter {
        api,
        name,
        opts,
        rows,
        expect: Expect::default(),
        last_key: None,
    };
    w.run().await
}

impl Waiter<'_> {
    fn progress(&mut self, v: &AppView, verdict: &Verdict) {
        let key = v.key();
        if self.last_key.as_ref() != Some(&key) {
            self.last_key = Some(key);
            joblog::info(format!(
                "[{:>6.1}s] {}: {}",
                self.opts.started.elapsed().as_secs_f64(),
                self.name,
                v.summary()
            ));
        }
        let waiting = match verdict {
            Verdict::Waiting(w) => w.clone(),
            _ => String::new(),
        };
        let v = v.clone();
        update_row(self.rows, self.name, |r| {
            r.view = Some(v);
            r.waiting_for = waiting;
        });
    }

    /// Looks at one state; `Some` ends the wait.
    fn check(&mut self, app: &Value) -> Option<JobResult<AppView>> {
        let v = AppView::from_json(app);
        self.expect.observe(&v);
        let verdict = self.expect.evaluate(&v);
        self.progress(&v, &verdict);
        match verdict {
            Verdict::Done => Some(Ok(v)),
            Verdict::Failed(m) => Some(Err(JobError::policy(format!("{}: {m}", self.name)))),
            Verdict::Waiting(_) => None,
        }
    }

    fn remote(&self, f: Failure, what: &str) -> JobError {
        f.into_job(&format!("{what} {}", self.name))
    }

    async fn get(&mut self) -> JobResult<Value> {
        self.api
            .get_app(self.name, None)
            .await
            .map_err(|f| self.remote(f, "reading app"))
    }

    async fn run(&mut self) -> JobResult<AppView> {
        let refresh = if self.opts.hard_refresh {
            "hard"
        } else {
            "normal"
        };
        let first = self
            .api
            .get_app(self.name, Some(refresh))
            .await
            .map_err(|f| self.remote(f, "refreshing app"))?;
        let view = AppView::from_json(&first);
        self.progress(&view, &Verdict::Waiting(String::new()));
        let url = self.api.ui_url(&view.namespace, self.name);
        update_row(self.rows, self.name, |r| r.url = url);
        self.expect.revision = self.opts.revision.clone().or_else(|| {
            (!view.sync_revision.is_empty()).then(|| {
                joblog::info(format!(
                    "{}: no --revision given: waiting for {}, the revision Argo CD reports after the refresh",
                    self.name,
                    short(&view.sync_revision)
                ));
                view.sync_revision.clone()
            })
        });
        self.expect.baseline_started = view.op_started.clone();

        if self.opts.sync {
            self.sync(&view).await?;
        }

        let mut stream_ok = self.opts.watch == WatchMode::Auto;
        let mut quick_breaks = 0u32;
        loop {
            // Always start from a fresh read: the stream may never send an
            // event for an app that is already where it should be.
            let app = self.get().await?;
            if let Some(done) = self.check(&app) {
                return done;
            }
            if stream_ok {
                let opened = Instant::now();
                match self.follow_stream().await {
                    StreamEnd::Done(r) => return *r,
                    StreamEnd::Unavailable(why) => {
                        joblog::info(format!(
                            "{}: watch stream unavailable ({why}); polling every {}",
                            self.name,
                            kit::duration::human(self.opts.poll_interval)
                        ));
                        stream_ok = false;
                    }
                    StreamEnd::Broken(why) => {
                        if opened.elapsed() < Duration::from_secs(5) {
                            quick_breaks += 1;
                        } else {
                            quick_breaks = 0;
                        }
                        if quick_breaks >= 3 {
                            joblog::info(format!(
                                "{}: watch stream keeps closing ({why}); polling every {}",
                                self.name,
                                kit::duration::human(self.opts.poll_interval)
                            ));
                            stream_ok = false;
                        } else {
                            joblog::info(format!(
                                "{}: watch stream closed ({why}); re-reading the app and reconnecting",
                                self.name
                            ));
                            if quick_breaks > 0 {
                                tokio::time::sleep(Duration::from_millis(
                                    250 * u64::from(quick_breaks),
                                ))
                                .await;
                            }
                        }
                    }
                }
            } else {
                tokio::time::sleep(self.opts.poll_interval).await;
            }
        }
    }

    async fn sync(&mut self, view: &AppView) -> JobResult<()> {
        let mut body = json!({ "name": self.name, "prune": self.opts.prune });
        if let Some(ns) = &self.api.app_namespace {
            body["appNamespace"] = json!(ns);
        }
        if let Some(p) = &self.api.project {
            body["project"] = json!(p);
        }
        match &self.opts.revision {
            Some(r) if view.auto_sync => joblog::info(format!(
                "{}: automated sync is on, so Argo CD only syncs to targetRevision {:?}: syncing without --revision and waiting for {}",
                self.name,
                view.target_revision,
                short(r)
            )),
            Some(r) if view.multi_source => joblog::info(format!(
                "{}: multi-source app: syncing each source to its targetRevision and waiting for {}",
                self.name,
                short(r)
            )),
            Some(r) => body["revision"] = json!(r),
            None => {}
        }
        let mut announced = false;
        let mut delay = Duration::from_secs(1);
        loop {
            match self.api.sync(self.name, &body).await {
                Ok(app) => {
                    let v = AppView::from_json(&app);
                    joblog::info(format!(
                        "{}: sync requested (revision {}, prune {})",
                        self.name,
                        if v.operation_revision.is_empty() {
                            "target".to_string()
                        } else {
                            short(&v.operation_revision)
                        },
                        self.opts.prune
                    ));
                    if self.expect.revision.is_none() && !v.operation_revision.is_empty() {
                        self.expect.revision = Some(v.operation_revision.clone());
                    }
                    self.expect.sync_requested = true;
                    // The response carries our pending operation.
                    self.expect.observe(&v);
                    return Ok(());
                }
                Err(f) if f.is_operation_in_progress() => {
                    if !announced {
                        joblog::info(format!(
                            "{}: another operation is already in progress; retrying the sync until it ends",
                            self.name
                        ));
                        announced = true;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 3 / 2).min(Duration::from_secs(5));
                }
                Err(f) => return Err(self.remote(f, "syncing app")),
            }
        }
    }

    async fn follow_stream(&mut self) -> StreamEnd {
        let resp = match self.api.open_stream(self.name).await {
            Ok(r) => r,
            Err(f) => {
                return match f.status {
                    Some(s) => StreamEnd::Unavailable(format!("HTTP {s}: {}", f.message)),
                    None => StreamEnd::Broken(f.message),
                };
            }
        };
        let mut body = resp.bytes_stream();
        let mut parser = Parser::new();
        loop {
            let next = tokio::time::timeout(self.opts.stream_idle, body.next()).await;
            match next {
                Err(_) => {
                    // Quiet for a while: check the app directly, keep the stream.
                    match self.get().await {
                        Ok(app) => {
                            if let Some(done) = self.check(&app) {
                                return StreamEnd::Done(Box::new(done));
                            }
                        }
                        Err(e) => return StreamEnd::Done(Box::new(Err(e))),
                    }
                }
                Ok(None) => return StreamEnd::Broken("the server ended it".into()),
                Ok(Some(Err(e))) => {
                    return StreamEnd::Broken(self.api.redact(&kit::http::describe(&e)));
                }
                Ok(Some(Ok(bytes))) => {
                    for item in parser.feed(&bytes) {
                        match item {
                            Item::Event { application, kind } => {
                                if application
                                    .pointer("/metadata/name")
                                    .and_then(Value::as_str)
                                    != Some(self.name)
                                {
                                    continue;
                                }
                                if kind == "DELETED" {
                                    return StreamEnd::Done(Box::new(Err(JobError::remote(
                                        format!(
                                            "{}: the Application was deleted while waiting",
                                            self.name
                                        ),
                                    ))));
                                }
                                if let Some(done) = self.check(&application) {
                                    return StreamEnd::Done(Box::new(done));
                                }
                            }
                            Item::Error(m) => return StreamEnd::Broken(self.api.redact(&m)),
                        }
                    }
                }
            }
        }
    }
}

enum StreamEnd {
    Done(Box<JobResult<AppView>>),
    /// The server refused the stream (4xx/5xx): poll instead.
    Unavailable(String),
    /// It was open and ended or failed.
    Broken(String),
}
