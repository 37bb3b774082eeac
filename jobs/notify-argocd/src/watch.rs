//! Waiting for one Application: refresh, optional sync (retried while
//! another operation runs), then watch the stream, falling back to polling
//! when it breaks, and always re-reading the app first so an app that does
//! not change any more cannot leave the job hanging.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kit::api::ApiError;
use kit::joblog;

use crate::api::{Api, SERVICE, SyncRequest, is_operation_in_progress};
use crate::cli::WatchMode;
use crate::error::Error;
use crate::model::Application;
use crate::state::{Expect, Key, Verdict, key, short, summary};
use crate::stream::{Item, Parser};

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
    pub view: Option<Application>,
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
    last_key: Option<Key>,
}

/// How the wait for one app ended, when it did not fail.
#[derive(Debug)]
pub enum Waited {
    /// Synced and Healthy on the expected revision.
    Deployed(Box<Application>),
    /// A policy failure (exit 1): Degraded, or the sync Failed/Error.
    Refused(String),
}

/// Waits until `name` is deployed or refused; `Err` is a remote error
/// (exit 3). The caller bounds it with the timeout.
pub async fn wait_app(
    api: &Api,
    name: &str,
    opts: &WaitOptions,
    rows: &Rows,
) -> Result<Waited, Error> {
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
    fn progress(&mut self, v: &Application, verdict: &Verdict) {
        let key = key(v);
        if self.last_key.as_ref() != Some(&key) {
            self.last_key = Some(key);
            joblog::info(format!(
                "[{:>6.1}s] {}: {}",
                self.opts.started.elapsed().as_secs_f64(),
                self.name,
                summary(v)
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
    fn check(&mut self, v: Application) -> Option<Waited> {
        self.expect.observe(&v);
        let verdict = self.expect.evaluate(&v);
        self.progress(&v, &verdict);
        match verdict {
            Verdict::Done => Some(Waited::Deployed(Box::new(v))),
            Verdict::Failed(m) => Some(Waited::Refused(format!("{}: {m}", self.name))),
            Verdict::Waiting(_) => None,
        }
    }

    fn remote(&self, e: ApiError, what: &str) -> Error {
        Error::api(format!("{what} {}", self.name), e)
    }

    async fn get(&mut self) -> Result<Application, Error> {
        self.api
            .get_app(self.name, None)
            .await
            .map_err(|e| self.remote(e, "reading app"))
    }

    async fn run(&mut self) -> Result<Waited, Error> {
        let refresh = if self.opts.hard_refresh {
            "hard"
        } else {
            "normal"
        };
        let view = self
            .api
            .get_app(self.name, Some(refresh))
            .await
            .map_err(|e| self.remote(e, "refreshing app"))?;
        self.progress(&view, &Verdict::Waiting(String::new()));
        let url = self.api.ui_url(view.namespace(), self.name);
        update_row(self.rows, self.name, |r| r.url = url);
        self.expect.revision = self.opts.revision.clone().or_else(|| {
            view.sync_revision().map(|r| {
                joblog::info(format!(
                    "{}: no --revision given: waiting for {}, the revision Argo CD reports after the refresh",
                    self.name,
                    short(r)
                ));
                r.to_string()
            })
        });
        self.expect.baseline_started = view.op_started();

        if self.opts.sync {
            self.sync(&view).await?;
        }

        let mut stream_ok = self.opts.watch == WatchMode::Auto;
        let mut quick_breaks = 0u32;
        loop {
            // Always start from a fresh read: the stream may never send an
            // event for an app that is already where it should be.
            let app = self.get().await?;
            if let Some(done) = self.check(app) {
                return Ok(done);
            }
            if stream_ok {
                let opened = Instant::now();
                match self.follow_stream().await {
                    StreamEnd::Done(r) => return r,
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

    async fn sync(&mut self, view: &Application) -> Result<(), Error> {
        let mut body = SyncRequest {
            name: self.name.to_string(),
            prune: self.opts.prune,
            revision: None,
            app_namespace: self.api.app_namespace.clone(),
            project: self.api.project.clone(),
        };
        let targets = view.target_revisions().join(", ");
        match &self.opts.revision {
            Some(r) if view.auto_sync() => joblog::info(format!(
                "{}: automated sync is on, so Argo CD only syncs to targetRevision {targets}: syncing without --revision and waiting for {}",
                self.name,
                short(r)
            )),
            Some(r) if view.multi_source() => joblog::info(format!(
                "{}: multi-source app: syncing each source to its targetRevision ({targets}) and waiting for {}",
                self.name,
                short(r)
            )),
            Some(r) => body.revision = Some(r.clone()),
            None => {}
        }
        let mut announced = false;
        let mut delay = Duration::from_secs(1);
        loop {
            match self.api.sync(&body).await {
                Ok(app) => {
                    joblog::info(format!(
                        "{}: sync requested (revision {}, prune {})",
                        self.name,
                        app.operation_revision().map_or("target".to_string(), short),
                        self.opts.prune
                    ));
                    if self.expect.revision.is_none()
                        && let Some(r) = app.operation_revision()
                    {
                        self.expect.revision = Some(r.to_string());
                    }
                    self.expect.sync_requested = true;
                    // The response carries our pending operation.
                    self.expect.observe(&app);
                    return Ok(());
                }
                Err(e) if is_operation_in_progress(&e) => {
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
                Err(e) => return Err(self.remote(e, "syncing app")),
            }
        }
    }

    async fn follow_stream(&mut self) -> StreamEnd {
        let resp = match self.api.open_stream(self.name).await {
            Ok(r) => r,
            Err(e) => {
                return match e.status() {
                    Some(s) => StreamEnd::Unavailable(format!(
                        "HTTP {s}: {}",
                        e.body()
                            .and_then(|b| b.message.clone())
                            .unwrap_or_else(|| e.to_string())
                    )),
                    None => StreamEnd::Broken(e.to_string()),
                };
            }
        };
        let url = self.api.stream_url(self.name);
        let mut body = resp.bytes_stream();
        let mut parser = Parser::new();
        loop {
            let next = tokio::time::timeout(self.opts.stream_idle, body.next()).await;
            match next {
                Err(_) => {
                    // Quiet for a while: check the app directly, keep the stream.
                    match self.get().await {
                        Ok(app) => {
                            if let Some(done) = self.check(app) {
                                return StreamEnd::Done(Ok(done));
                            }
                        }
                        Err(e) => return StreamEnd::Done(Err(e)),
                    }
                }
                Ok(None) => return StreamEnd::Broken("the server ended it".into()),
                Ok(Some(Err(e))) => {
                    return StreamEnd::Broken(self.api.redact(&kit::http::describe(&e)));
                }
                Ok(Some(Ok(bytes))) => {
                    let items = match parser.feed(&bytes) {
                        Ok(items) => items,
                        Err(e) => {
                            let reason = self.api.redact(&e.to_string());
                            return StreamEnd::Done(Err(self.remote(
                                ApiError::unexpected(SERVICE, url.as_str(), reason),
                                "watching app",
                            )));
                        }
                    };
                    for item in items {
                        match item {
                            Item::Event { application, kind } => {
                                if application.name() != self.name {
                                    continue;
                                }
                                if kind == "DELETED" {
                                    return StreamEnd::Done(Err(Error::Deleted {
                                        app: self.name.to_string(),
                                    }));
                                }
                                if let Some(done) = self.check(*application) {
                                    return StreamEnd::Done(Ok(done));
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
    Done(Result<Waited, Error>),
    /// The server refused the stream (4xx/5xx): poll instead.
    Unavailable(String),
    /// It was open and ended or failed.
    Broken(String),
}
