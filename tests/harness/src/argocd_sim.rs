//! An Argo CD API server simulator for tests, following Argo CD's Swagger
//! spec (API server 3.x; the reference schema `argocd-swagger.json` that
//! [`crate::schemas`] finds, which this module's tests check against): the REST routes of the
//! grpc-gateway, realistic `v1alpha1Application` JSON, gRPC-gateway error
//! bodies, and a scripted controller that moves each Application through
//! refresh, sync operation and health the way Argo CD does.
//!
//! It runs on [`crate::http_server::HttpServer`] (hyper, its own thread and
//! Tokio runtime, 127.0.0.1 and an ephemeral port, HTTPS with a certificate
//! from [`crate::tls`]), so it serves sync tests, async tests and standalone
//! programs alike; it stops when dropped.
//!
//! Routes (all but the session login need `Authorization: Bearer TOKEN` or
//! the `argocd.token` cookie):
//! - `POST /api/v1/session` `{"username","password"}` → `{"token"}`
//! - `GET  /api/v1/applications?selector=&projects=&appNamespace=` → list
//! - `GET  /api/v1/applications/{name}?refresh=normal|hard` → blocks until
//!   the controller has reconciled the app, like Argo CD's server does
//! - `POST /api/v1/applications/{name}/sync` (`applicationApplicationSyncRequest`;
//!   a body with a field of the wrong type is refused as Argo CD refuses it,
//!   and one with a field the spec does not declare is refused too, where
//!   Argo CD would drop it silently: see [`sync_request_problem`])
//! - `GET  /api/v1/stream/applications?name=&selector=` → newline-delimited
//!   `{"result":{"type":…,"application":…}}`, or server-sent events
//!   (`data: …\n\n`) when the client accepts `text/event-stream`
//!
//! Errors are `{"error","code","message"}` with grpc-gateway's HTTP
//! statuses: 401/16 Unauthenticated, 403/7 PermissionDenied, 404/5 NotFound,
//! 400/9 FailedPrecondition ("another operation is already in progress",
//! "Cannot sync to …: auto-sync currently set to …"), 503/14 Unavailable.
//!
//! Scenarios are knobs of [`SimApp`] (`auto_sync`, `head_visible_after`,
//! `sync_duration`, `progressing_for`, `outcome` — Healthy, Degraded,
//! Suspended, Missing, Unknown, stuck Progressing, sync Failed or Error —,
//! `busy_for`, `previous_operation_failed`, `forbidden`, `multi_source`,
//! `malformed`) and [`SimConfig`]
//! (`unavailable_first`, `stream`, `refresh_delay`, `ndjson_only`, `tls`,
//! `users`). [`ArgoSim::push`] lands a real commit SHA (e.g. the one
//! bump-manifest pushed) during a test. What the tests assert on:
//! [`ArgoSim::requests`] (method, path, query, Accept, body, status, gRPC
//! code), [`ArgoSim::sync_bodies`], [`ArgoSim::requests_per_minute`],
//! [`ArgoSim::transitions`] / [`ArgoSim::transition_at`] (the instant of
//! each state change, e.g. `health=Healthy`), [`ArgoSim::app_json`].
//!
//! ```no_run
//! use harness::argocd_sim::{ArgoSim, Outcome, SimApp, SimConfig};
//! let mut app = SimApp::new("sensor");
//! app.auto_sync = true;
//! app.outcome = Outcome::Healthy;
//! let sim = ArgoSim::start(SimConfig::new("token", vec![app]));
//! // ARGOCD_SERVER=sim.url(), ARGOCD_AUTH_TOKEN=token …
//! sim.push("sensor", "4e5b2f1c9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c", std::time::Duration::from_secs(1));
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::http_server::{Body, BoxError, HttpServer, full};
/// The server certificate of [`SimConfig::tls`] (from [`crate::tls`]).
pub use crate::tls::TlsIdentity;

/// What happens to an application once the new revision is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Health goes Progressing, then Healthy after `progressing_for`.
    Healthy,
    /// Health goes Progressing, then Degraded after `progressing_for`.
    Degraded,
    /// Health stays Progressing for ever.
    StuckProgressing,
    /// The sync operation ends `Failed` (a resource fails to apply).
    SyncFailed,
    /// The sync operation ends `Error`.
    SyncError,
    /// Health goes Progressing, then `Suspended` ("Deployment is paused",
    /// as for a paused rollout) and stays so.
    Suspended,
    /// Health goes Progressing, then `Missing`: the Deployment is gone from
    /// the cluster after the apply, so the app is OutOfSync and Missing.
    Missing,
    /// Health goes Progressing, then `Unknown` (the health check failed).
    Unknown,
}

/// How the watch stream behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamMode {
    /// Events for as long as the client listens.
    Normal,
    /// The connection is cut (no terminating chunk) right after the first
    /// event of every stream, as a proxy with a short idle timeout does.
    CloseAfterFirstEvent,
    /// The connection is cut after this long.
    CloseAfter(Duration),
    /// The route answers 404, as behind a proxy that does not pass it.
    Unavailable,
}

/// One scripted Argo CD Application.
#[derive(Debug, Clone)]
pub struct SimApp {
    pub name: String,
    /// `metadata.namespace` (Argo CD's own namespace by default).
    pub namespace: String,
    pub project: String,
    pub labels: BTreeMap<String, String>,
    pub repo_url: String,
    pub path: String,
    pub target_revision: String,
    pub dest_server: String,
    pub dest_namespace: String,
    /// `spec.syncPolicy.automated` set: the controller syncs by itself when
    /// it notices the new revision.
    pub auto_sync: bool,
    /// Deployed, Synced and Healthy when the simulator starts.
    pub old_revision: String,
    /// The head of `target_revision` once the push is visible to Argo CD.
    pub new_revision: String,
    /// How long after the start Argo CD keeps seeing `old_revision` as the
    /// head (Synced and Healthy on the old revision all that time).
    pub head_visible_after: Duration,
    /// How long a sync operation runs.
    pub sync_duration: Duration,
    /// How long health stays Progressing after the apply.
    pub progressing_for: Duration,
    pub outcome: Outcome,
    /// An operation started by someone else is running at the start and
    /// finishes after this long; syncs are refused meanwhile.
    pub busy_for: Option<Duration>,
    /// The previous operation (before the start) ended Failed, on the old
    /// revision: stale state a waiter must not take for its own.
    pub previous_operation_failed: bool,
    /// GET/sync/stream answer 403 PermissionDenied for this app.
    pub forbidden: bool,
    /// `spec.sources` instead of `spec.source`: the config repo (as above)
    /// and a Helm chart ([`MULTI_SOURCE_CHART`] at
    /// [`MULTI_SOURCE_CHART_VERSION`]); `status.sync.revisions`,
    /// `syncResult.revisions` and the history carry one revision per
    /// source. A sync request with `revision` is refused (InvalidArgument):
    /// multi-source apps take `revisions` with `sourcePositions`.
    pub multi_source: bool,
    /// Every Application JSON of this app the API sends (GET, list, sync,
    /// stream) has `status.sync` as a string instead of an object, as a
    /// broken proxy or an incompatible server would: a client must refuse
    /// it, not read defaults.
    pub malformed: bool,
}

/// The Helm chart source of a [`SimApp::multi_source`] app.
pub const MULTI_SOURCE_CHART: &str = "sensor-base";
/// Its version (`targetRevision`, and its revision in `revisions`).
pub const MULTI_SOURCE_CHART_VERSION: &str = "1.4.2";
/// Its repository.
pub const MULTI_SOURCE_CHART_REPO: &str = "https://charts.example.com/iot";

impl SimApp {
    /// A plain app: manual sync, becomes Healthy 500 ms after a sync.
    pub fn new(name: &str) -> Self {
        SimApp {
            name: name.to_string(),
            namespace: "argocd".into(),
            project: "default".into(),
            labels: BTreeMap::from([(
                "app.kubernetes.io/part-of".to_string(),
                "sensor-fleet".to_string(),
            )]),
            repo_url: "https://gitlab.example.com/iot/config-repo.git".into(),
            path: format!("apps/{name}"),
            target_revision: "main".into(),
            dest_server: "https://kubernetes.default.svc".into(),
            dest_namespace: "sensors".into(),
            auto_sync: false,
            old_revision: "0ld0000000000000000000000000000000000000".replace('l', "1"),
            new_revision: "4e5b2f1c9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c".into(),
            head_visible_after: Duration::ZERO,
            sync_duration: Duration::from_millis(300),
            progressing_for: Duration::from_millis(500),
            outcome: Outcome::Healthy,
            busy_for: None,
            previous_operation_failed: false,
            forbidden: false,
            multi_source: false,
            malformed: false,
        }
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }
}

/// The whole simulated server.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The API token accepted as `Bearer`.
    pub token: String,
    /// Local users for `POST /api/v1/session`.
    pub users: Vec<(String, String)>,
    pub apps: Vec<SimApp>,
    /// The first N requests (any route) get 503 Unavailable.
    pub unavailable_first: u32,
    pub stream: StreamMode,
    /// How long a refresh takes to be reconciled.
    pub refresh_delay: Duration,
    /// Stream newline-delimited JSON even to clients that accept
    /// `text/event-stream` (as a server without SSE support would).
    pub ndjson_only: bool,
    /// Serve HTTPS with this certificate (e.g. [`crate::tls::TestCa::issue`]).
    pub tls: Option<TlsIdentity>,
}

impl SimConfig {
    pub fn new(token: &str, apps: Vec<SimApp>) -> Self {
        SimConfig {
            token: token.into(),
            users: vec![],
            apps,
            unavailable_first: 0,
            stream: StreamMode::Normal,
            refresh_delay: Duration::from_millis(100),
            ndjson_only: false,
            tls: None,
        }
    }
}

/// One request as the simulator saw it.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub accept: String,
    pub body: Option<Value>,
    pub status: u16,
    /// The gRPC code of an error answer.
    pub code: Option<u32>,
}

impl RequestRecord {
    pub fn is_stream(&self) -> bool {
        self.path == "/api/v1/stream/applications"
    }
    pub fn is_sync(&self) -> bool {
        self.method == "POST" && self.path.ends_with("/sync")
    }
}

/// One change of an application's state, with the instant it happened.
#[derive(Debug, Clone)]
pub struct Transition {
    pub at: Instant,
    pub app: String,
    /// e.g. `health=Healthy`, `sync=Synced`, `phase=Succeeded`, `operation=started`.
    pub what: String,
}

/// A running simulator; stops when dropped.
pub struct ArgoSim {
    shared: Arc<Shared>,
    server: HttpServer,
}

impl ArgoSim {
    pub fn start(config: SimConfig) -> ArgoSim {
        let (version, _) = watch::channel(0u64);
        let (stopping, _) = watch::channel(false);
        let now = Instant::now();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(&config, now)),
            version,
            stopping,
            config,
            started: now,
        });
        let sh = shared.clone();
        let server = HttpServer::start_async(shared.config.tls.as_ref(), move |req| {
            handle(sh.clone(), req)
        });
        server.spawn(controller(shared.clone()));
        ArgoSim { shared, server }
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS)
    pub fn url(&self) -> String {
        let scheme = if self.shared.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.server.port())
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.server.port()))
    }

    /// When the simulator started (the origin of `head_visible_after`).
    pub fn started(&self) -> Instant {
        self.shared.started
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().log.clone()
    }

    /// The bodies of every sync request (accepted or not).
    pub fn sync_bodies(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_sync())
            .filter_map(|r| r.body)
            .collect()
    }

    /// Requests started in `[from, to)`.
    pub fn requests_between(&self, from: Instant, to: Instant) -> usize {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|r| r.at >= from && r.at < to)
            .count()
    }

    /// Requests per minute over `[from, to)`.
    pub fn requests_per_minute(&self, from: Instant, to: Instant) -> f64 {
        let n = self.requests_between(from, to) as f64;
        n * 60.0 / to.duration_since(from).as_secs_f64().max(0.001)
    }

    pub fn transitions(&self) -> Vec<Transition> {
        self.shared.lock().transitions.clone()
    }

    /// The first instant `app` made the transition `what` (e.g. `health=Healthy`).
    pub fn transition_at(&self, app: &str, what: &str) -> Option<Instant> {
        self.shared
            .lock()
            .transitions
            .iter()
            .find(|t| t.app == app && t.what == what)
            .map(|t| t.at)
    }

    /// A new commit lands on the tracked branch of `app` (e.g. the one
    /// bump-manifest just pushed): Argo CD sees it as the head after
    /// `visible_after`; syncs to it are accepted from now on.
    pub fn push(&self, app: &str, revision: &str, visible_after: Duration) {
        {
            let mut st = self.shared.lock();
            let Some(a) = st.apps.get_mut(app) else {
                return;
            };
            a.cfg.old_revision = a.live_revision.clone();
            a.cfg.new_revision = revision.to_string();
            a.head_visible = false;
            st.schedule.push((
                Instant::now() + visible_after,
                app.to_string(),
                Event::HeadVisible,
            ));
        }
        self.shared.bump();
    }

    /// Deletes an app: GET answers 404 from now on and open watch streams
    /// get a `DELETED` event.
    pub fn delete(&self, app: &str) {
        {
            let mut st = self.shared.lock();
            let Some(a) = st.apps.remove(app) else { return };
            let mut j = a.to_json();
            j["metadata"]["deletionTimestamp"] = json!(rfc3339(SystemTime::now()));
            st.deleted.insert(app.to_string(), j);
            st.note(app, "deleted".into());
        }
        self.shared.bump();
    }

    /// The Application JSON as the API would return it now.
    pub fn app_json(&self, name: &str) -> Option<Value> {
        let st = self.shared.lock();
        st.apps.get(name).map(|a| a.to_json())
    }
}

impl Drop for ArgoSim {
    fn drop(&mut self) {
        // Open watch streams end (with their last chunk) before the server
        // stops, so the server's graceful stop has nothing left to wait for.
        self.shared.stopping.send_replace(true);
    }
}

// ---------------------------------------------------------------------------
// State

struct Shared {
    state: Mutex<State>,
    /// Bumped on every state change; refresh and stream waiters watch it.
    version: watch::Sender<u64>,
    /// Set when the simulator is dropped: watch streams end.
    stopping: watch::Sender<bool>,
    config: SimConfig,
    started: Instant,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }
}

#[derive(Debug, Clone)]
enum Event {
    HeadVisible,
    Reconcile,
    OpStart,
    OpFinish,
    HealthOutcome,
    BusyFinish,
}

struct State {
    apps: BTreeMap<String, AppState>,
    /// Due events, unsorted (few).
    schedule: Vec<(Instant, String, Event)>,
    log: Vec<RequestRecord>,
    transitions: Vec<Transition>,
    requests_seen: u32,
    resource_version: u64,
    sessions: Vec<String>,
    /// Deleted apps, with their last JSON (for `DELETED` watch events).
    deleted: BTreeMap<String, Value>,
}

#[derive(Debug, Clone)]
struct OpState {
    phase: String,
    message: String,
    started_at: SystemTime,
    finished_at: Option<SystemTime>,
    revision: String,
    prune: bool,
    dry_run: bool,
    automated: bool,
    username: String,
    sync_result: bool,
}

#[derive(Debug, Clone)]
struct AppState {
    cfg: SimApp,
    created: SystemTime,
    resource_version: u64,
    /// What the controller compares against (`status.sync.revision`).
    compared_revision: String,
    /// What is applied on the cluster.
    live_revision: String,
    sync_status: String,
    health: String,
    health_message: Option<String>,
    /// The pending `operation`, if any.
    operation: Option<Value>,
    op: Option<OpState>,
    reconciled_at: SystemTime,
    refresh: Option<String>,
    history: Vec<(u64, String, SystemTime, SystemTime)>,
    head_visible: bool,
}

fn rfc3339(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t)
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::from(t));
    dt.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl State {
    fn new(cfg: &SimConfig, now: Instant) -> State {
        let wall = SystemTime::now();
        let hour_ago = wall - Duration::from_secs(3600);
        let mut st = State {
            apps: BTreeMap::new(),
            schedule: vec![],
            log: vec![],
            transitions: vec![],
            requests_seen: 0,
            resource_version: 1000,
            sessions: vec![],
            deleted: BTreeMap::new(),
        };
        for a in &cfg.apps {
            let previous = OpState {
                phase: if a.previous_operation_failed {
                    "Failed"
                } else {
                    "Succeeded"
                }
                .into(),
                message: if a.previous_operation_failed {
                    "one or more objects failed to apply, reason: ConfigMap \"sensor-config\" is invalid".into()
                } else {
                    "successfully synced (all tasks run)".into()
                },
                started_at: hour_ago,
                finished_at: Some(hour_ago + Duration::from_secs(4)),
                revision: a.old_revision.clone(),
                prune: false,
                dry_run: false,
                automated: a.auto_sync,
                username: "admin".into(),
                sync_result: true,
            };
            let mut app = AppState {
                cfg: a.clone(),
                created: wall - Duration::from_secs(86400),
                resource_version: 0,
                compared_revision: a.old_revision.clone(),
                live_revision: a.old_revision.clone(),
                sync_status: "Synced".into(),
                health: "Healthy".into(),
                health_message: None,
                operation: None,
                op: Some(previous),
                reconciled_at: wall - Duration::from_secs(30),
                refresh: None,
                history: vec![(
                    1,
                    a.old_revision.clone(),
                    hour_ago,
                    hour_ago + Duration::from_secs(4),
                )],
                head_visible: false,
            };
            if let Some(busy) = a.busy_for {
                app.operation = Some(operation_json(
                    &a.old_revision,
                    false,
                    false,
                    false,
                    "alice",
                ));
                app.op = Some(OpState {
                    phase: "Running".into(),
                    message: "waiting for completion of hook batch/Job/db-migrate".into(),
                    started_at: wall,
                    finished_at: None,
                    revision: a.old_revision.clone(),
                    prune: false,
                    dry_run: false,
                    automated: false,
                    username: "alice".into(),
                    sync_result: false,
                });
                st.schedule
                    .push((now + busy, a.name.clone(), Event::BusyFinish));
            }
            st.schedule.push((
                now + a.head_visible_after,
                a.name.clone(),
                Event::HeadVisible,
            ));
            st.resource_version += 1;
            app.resource_version = st.resource_version;
            st.apps.insert(a.name.clone(), app);
        }
        st
    }

    fn note(&mut self, app: &str, what: String) {
        self.transitions.push(Transition {
            at: Instant::now(),
            app: app.to_string(),
            what,
        });
    }

    fn touch(&mut self, name: &str) {
        self.resource_version += 1;
        let rv = self.resource_version;
        if let Some(a) = self.apps.get_mut(name) {
            a.resource_version = rv;
        }
    }

    fn set_health(&mut self, name: &str, health: &str, msg: Option<String>) {
        let Some(a) = self.apps.get_mut(name) else {
            return;
        };
        if a.health != health {
            a.health = health.to_string();
            a.health_message = msg;
            self.note(name, format!("health={health}"));
        }
    }

    fn set_sync(&mut self, name: &str, status: &str, revision: &str) {
        let Some(a) = self.apps.get_mut(name) else {
            return;
        };
        let changed = a.sync_status != status || a.compared_revision != revision;
        a.sync_status = status.to_string();
        a.compared_revision = revision.to_string();
        if changed {
            self.note(name, format!("sync={status}"));
            self.note(name, format!("revision={revision}"));
        }
    }

    /// Starts a sync operation (from the API or the automated policy).
    fn begin_sync(
        &mut self,
        name: &str,
        revision: &str,
        prune: bool,
        dry_run: bool,
        automated: bool,
        now: Instant,
    ) {
        let Some(a) = self.apps.get_mut(name) else {
            return;
        };
        a.operation = Some(operation_json(
            revision,
            prune,
            dry_run,
            automated,
            if automated { "" } else { "ci-bot" },
        ));
        a.op = Some(OpState {
            phase: "Running".into(),
            message: String::new(),
            started_at: SystemTime::now(),
            finished_at: None,
            revision: revision.to_string(),
            prune,
            dry_run,
            automated,
            username: if automated {
                String::new()
            } else {
                "ci-bot".into()
            },
            sync_result: false,
        });
        let d = a.cfg.sync_duration;
        self.schedule.push((
            now + Duration::from_millis(30),
            name.to_string(),
            Event::OpStart,
        ));
        self.schedule
            .push((now + d, name.to_string(), Event::OpFinish));
        self.note(name, "operation=started".into());
    }

    fn apply(&mut self, name: &str, ev: Event, now: Instant) {
        let wall = SystemTime::now();
        let Some(a) = self.apps.get(name).cloned() else {
            return;
        };
        match ev {
            Event::HeadVisible => {
                if let Some(app) = self.apps.get_mut(name) {
                    app.head_visible = true;
                    app.reconciled_at = wall;
                }
                if a.live_revision == a.cfg.new_revision {
                    self.set_sync(name, "Synced", &a.cfg.new_revision);
                } else {
                    self.set_sync(name, "OutOfSync", &a.cfg.new_revision);
                    if a.cfg.auto_sync && a.operation.is_none() {
                        self.begin_sync(name, &a.cfg.new_revision, false, false, true, now);
                    }
                }
            }
            Event::Reconcile => {
                if let Some(app) = self.apps.get_mut(name) {
                    app.reconciled_at = wall;
                    app.refresh = None;
                }
            }
            Event::OpStart => {
                if let Some(app) = self.apps.get_mut(name)
                    && let Some(op) = app.op.as_mut()
                    && op.finished_at.is_none()
                {
                    op.message = "waiting for healthy state of apps/Deployment/sensor".into();
                    self.note(name, "phase=Running".into());
                }
            }
            Event::OpFinish => {
                let Some(op) = a.op.clone() else { return };
                if op.finished_at.is_some() {
                    return;
                }
                let (phase, message) = match a.cfg.outcome {
                    Outcome::SyncFailed => (
                        "Failed",
                        "one or more objects failed to apply, reason: Deployment.apps \"sensor\" is invalid: spec.template.spec.containers[0].image: Invalid value: \"registry.example.com/sensor@sha256:zz\": invalid reference format",
                    ),
                    Outcome::SyncError => (
                        "Error",
                        "ComparisonError: failed to generate manifest: rpc error: code = Unknown desc = kustomize build failed",
                    ),
                    _ if op.dry_run => ("Succeeded", "successfully synced (dry run)"),
                    _ => ("Succeeded", "successfully synced (all tasks run)"),
                };
                if let Some(app) = self.apps.get_mut(name) {
                    app.operation = None;
                    if let Some(o) = app.op.as_mut() {
                        o.phase = phase.into();
                        o.message = message.into();
                        o.finished_at = Some(wall);
                        o.sync_result = true;
                    }
                    app.reconciled_at = wall;
                }
                self.note(name, format!("phase={phase}"));
                if phase == "Succeeded" && !op.dry_run {
                    let head = if a.head_visible {
                        &a.cfg.new_revision
                    } else {
                        &a.cfg.old_revision
                    };
                    if let Some(app) = self.apps.get_mut(name) {
                        let id = app.history.len() as u64 + 1;
                        app.history
                            .push((id, op.revision.clone(), op.started_at, wall));
                        app.live_revision = op.revision.clone();
                    }
                    if op.revision == *head {
                        self.set_sync(name, "Synced", head);
                    } else {
                        // Synced to another commit than the branch head:
                        // the controller compares against the head.
                        self.set_sync(name, "OutOfSync", head);
                        if a.cfg.auto_sync {
                            self.begin_sync(name, head, false, false, true, now);
                        }
                    }
                    self.set_health(name, "Progressing", Some("Waiting for rollout to finish: 1 old replicas are pending termination...".into()));
                    if a.cfg.outcome != Outcome::StuckProgressing {
                        self.schedule.push((
                            now + a.cfg.progressing_for,
                            name.to_string(),
                            Event::HealthOutcome,
                        ));
                    }
                } else if phase != "Succeeded" {
                    self.set_sync(name, "OutOfSync", &op.revision);
                }
            }
            Event::HealthOutcome => match a.cfg.outcome {
                Outcome::Degraded => self.set_health(
                    name,
                    "Degraded",
                    Some("Deployment \"sensor\" exceeded its progress deadline".into()),
                ),
                Outcome::Suspended => self.set_health(
                    name,
                    "Suspended",
                    Some("Deployment is paused".into()),
                ),
                Outcome::Missing => {
                    self.set_health(name, "Missing", None);
                    let rev = a.compared_revision.clone();
                    self.set_sync(name, "OutOfSync", &rev);
                }
                Outcome::Unknown => self.set_health(
                    name,
                    "Unknown",
                    Some("failed to get resource health for \"Deployment\" with name \"sensor\": the server is currently unable to handle the request".into()),
                ),
                _ => self.set_health(name, "Healthy", None),
            },
            Event::BusyFinish => {
                if let Some(app) = self.apps.get_mut(name) {
                    app.operation = None;
                    if let Some(o) = app.op.as_mut() {
                        o.phase = "Succeeded".into();
                        o.message = "successfully synced (all tasks run)".into();
                        o.finished_at = Some(wall);
                        o.sync_result = true;
                    }
                    app.reconciled_at = wall;
                }
                self.note(name, "phase=Succeeded".into());
            }
        }
        self.touch(name);
    }

    /// Applies every due event; returns whether anything changed and when
    /// the next one is due.
    fn advance(&mut self, now: Instant) -> (bool, Option<Instant>) {
        let mut changed = false;
        loop {
            let due = self
                .schedule
                .iter()
                .enumerate()
                .filter(|(_, (t, _, _))| *t <= now)
                .min_by_key(|(_, (t, _, _))| *t)
                .map(|(i, _)| i);
            let Some(i) = due else { break };
            let (_, name, ev) = self.schedule.remove(i);
            self.apply(&name, ev, now);
            changed = true;
        }
        (changed, self.schedule.iter().map(|(t, _, _)| *t).min())
    }
}

fn operation_json(
    revision: &str,
    prune: bool,
    dry_run: bool,
    automated: bool,
    user: &str,
) -> Value {
    let mut sync = json!({ "revision": revision, "syncStrategy": { "hook": {} } });
    if prune {
        sync["prune"] = json!(true);
    }
    if dry_run {
        sync["dryRun"] = json!(true);
    }
    let initiated = if automated {
        json!({ "automated": true })
    } else {
        json!({ "username": user })
    };
    json!({ "sync": sync, "initiatedBy": initiated, "retry": {} })
}

const RESOURCES: [(&str, &str, &str); 3] = [
    ("", "ConfigMap", "sensor-config"),
    ("", "Service", "sensor"),
    ("apps", "Deployment", "sensor"),
];

impl AppState {
    fn to_json(&self) -> Value {
        let c = &self.cfg;
        let mut annotations = serde_json::Map::new();
        if let Some(r) = &self.refresh {
            annotations.insert("argocd.argoproj.io/refresh".into(), json!(r));
        }
        let mut spec = json!({
            "project": c.project,
            "source": { "repoURL": c.repo_url, "path": c.path, "targetRevision": c.target_revision },
            "destination": { "server": c.dest_server, "namespace": c.dest_namespace },
            "syncPolicy": { "syncOptions": ["CreateNamespace=true"] },
        });
        if c.auto_sync {
            spec["syncPolicy"]["automated"] = json!({ "prune": true, "selfHeal": true });
        }
        let resources: Vec<Value> = RESOURCES
            .iter()
            .map(|(group, kind, name)| {
                let mut r = json!({
                    "group": group, "version": "v1", "kind": kind, "namespace": c.dest_namespace,
                    "name": name, "status": self.sync_status,
                });
                if *kind == "Deployment" || *kind == "Service" {
                    let (status, msg) = if *kind == "Deployment" {
                        (self.health.as_str(), self.health_message.clone())
                    } else {
                        ("Healthy", None)
                    };
                    let mut h = json!({ "status": status });
                    if let Some(m) = msg {
                        h["message"] = json!(m);
                    }
                    r["health"] = h;
                }
                r
            })
            .collect();
        let mut status = json!({
            "sync": {
                "status": self.sync_status,
                "revision": self.compared_revision,
                "comparedTo": {
                    "source": { "repoURL": c.repo_url, "path": c.path, "targetRevision": c.target_revision },
                    "destination": { "server": c.dest_server, "namespace": c.dest_namespace },
                },
            },
            "health": { "status": self.health, "lastTransitionTime": rfc3339(self.reconciled_at) },
            "resources": resources,
            "reconciledAt": rfc3339(self.reconciled_at),
            "observedAt": rfc3339(self.reconciled_at),
            "sourceType": "Kustomize",
            "controllerNamespace": "argocd",
            "summary": { "images": [format!("registry.example.com/iot/{}@sha256:{}", c.name, "ab".repeat(32))] },
            "history": self.history.iter().map(|(id, rev, started, deployed)| json!({
                "id": id, "revision": rev, "deployStartedAt": rfc3339(*started), "deployedAt": rfc3339(*deployed),
                "source": { "repoURL": c.repo_url, "path": c.path, "targetRevision": c.target_revision },
                "initiatedBy": { "username": "admin" },
            })).collect::<Vec<_>>(),
        });
        if let Some(m) = &self.health_message {
            status["health"]["message"] = json!(m);
        }
        if let Some(op) = &self.op {
            let mut sync = json!({ "revision": op.revision, "syncStrategy": { "hook": {} } });
            if op.prune {
                sync["prune"] = json!(true);
            }
            if op.dry_run {
                sync["dryRun"] = json!(true);
            }
            let initiated = if op.automated {
                json!({ "automated": true })
            } else {
                json!({ "username": op.username })
            };
            let mut os = json!({
                "operation": { "sync": sync, "initiatedBy": initiated, "retry": {} },
                "phase": op.phase,
                "message": op.message,
                "startedAt": rfc3339(op.started_at),
            });
            if let Some(f) = op.finished_at {
                os["finishedAt"] = json!(rfc3339(f));
            }
            if op.sync_result {
                let failed = op.phase == "Failed";
                let res: Vec<Value> = RESOURCES
                    .iter()
                    .map(|(group, kind, name)| {
                        let bad = failed && *kind == "Deployment";
                        json!({
                            "group": group, "version": "v1", "kind": kind, "namespace": c.dest_namespace, "name": name,
                            "status": if bad { "SyncFailed" } else { "Synced" },
                            "message": if bad {
                                "Deployment.apps \"sensor\" is invalid: spec.template.spec.containers[0].image: Invalid value".to_string()
                            } else {
                                format!("{} {name} configured", kind.to_lowercase())
                            },
                            "hookPhase": if bad { "Failed" } else { "Succeeded" },
                            "syncPhase": "Sync",
                        })
                    })
                    .collect();
                os["syncResult"] = json!({
                    "revision": op.revision,
                    "resources": res,
                    "source": { "repoURL": c.repo_url, "path": c.path, "targetRevision": c.target_revision },
                });
            }
            status["operationState"] = os;
        }
        let mut app = json!({
            "metadata": {
                "name": c.name,
                "namespace": c.namespace,
                "uid": format!("6f1c2a3b-0000-4000-8000-{:012x}", fnv(&c.name) & 0xffff_ffff_ffff),
                "resourceVersion": self.resource_version.to_string(),
                "generation": self.resource_version as i64,
                "creationTimestamp": rfc3339(self.created),
                "labels": c.labels,
                "annotations": annotations,
                "finalizers": ["resources-finalizer.argocd.argoproj.io"],
            },
            "spec": spec,
            "status": status,
        });
        if let Some(op) = &self.operation {
            app["operation"] = op.clone();
        }
        if c.multi_source {
            to_multi_source(&mut app);
        }
        if c.malformed {
            // `v1alpha1SyncStatus` is an object; a string is what a broken
            // proxy or an incompatible server might send.
            app["status"]["sync"] = json!(self.sync_status);
        }
        app
    }
}

/// Rewrites a single-source Application as the same app with two sources:
/// the config repo, then the Helm chart. Every `source`/`revision` pair the
/// spec has a plural for becomes `sources`/`revisions`, one per source.
fn to_multi_source(app: &mut Value) {
    let chart = json!({
        "repoURL": MULTI_SOURCE_CHART_REPO,
        "chart": MULTI_SOURCE_CHART,
        "targetRevision": MULTI_SOURCE_CHART_VERSION,
    });
    let pluralize = |v: &mut Value| {
        let Some(o) = v.as_object_mut() else { return };
        if let Some(s) = o.remove("source") {
            o.insert("sources".into(), json!([s, chart.clone()]));
        }
        if let Some(r) = o.remove("revision") {
            o.insert("revisions".into(), json!([r, MULTI_SOURCE_CHART_VERSION]));
        }
    };
    pluralize(&mut app["spec"]);
    pluralize(&mut app["status"]["sync"]);
    pluralize(&mut app["status"]["sync"]["comparedTo"]);
    if let Some(h) = app["status"]["history"].as_array_mut() {
        h.iter_mut().for_each(pluralize);
    }
    if app["status"].get("operationState").is_some() {
        pluralize(&mut app["status"]["operationState"]["operation"]["sync"]);
        if app["status"]["operationState"].get("syncResult").is_some() {
            pluralize(&mut app["status"]["operationState"]["syncResult"]);
        }
    }
    if app.get("operation").is_some() {
        pluralize(&mut app["operation"]["sync"]);
    }
}

/// The fields of `applicationApplicationSyncRequest` and their JSON types,
/// as Argo CD's swagger spec declares them (a test checks this list against
/// the spec).
pub const SYNC_REQUEST_FIELDS: [(&str, &str); 14] = [
    ("appNamespace", "string"),
    ("dryRun", "boolean"),
    ("infos", "array"),
    ("manifests", "array"),
    ("name", "string"),
    ("project", "string"),
    ("prune", "boolean"),
    ("resources", "array"),
    ("retryStrategy", "object"),
    ("revision", "string"),
    ("revisions", "array"),
    ("sourcePositions", "array"),
    ("strategy", "object"),
    ("syncOptions", "object"),
];

/// What is wrong with a sync request body, if anything.
///
/// Argo CD's API server decodes request bodies with Go's `encoding/json`
/// (its grpc-gateway marshaler, `util/grpc/json.go`): a value of the wrong
/// type is refused (400, InvalidArgument, "json: cannot unmarshal …"), an
/// unknown field is silently ignored. The simulator refuses unknown fields
/// too, so that a misspelt field (`revison`) fails a test instead of being
/// dropped unnoticed as it would be in production.
pub fn sync_request_problem(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Some(format!("invalid character in the request body: {e}")),
    };
    let Some(map) = v.as_object() else {
        return Some(format!(
            "json: cannot unmarshal {} into Go value of type application.ApplicationSyncRequest",
            json_type(&v)
        ));
    };
    for (k, val) in map {
        let Some((_, want)) = SYNC_REQUEST_FIELDS.iter().find(|(f, _)| f == k) else {
            return Some(format!(
                "unknown field {k:?} in applicationApplicationSyncRequest (Argo CD would ignore it silently; the simulator refuses it so the mistake shows)"
            ));
        };
        if !val.is_null() && json_type(val) != *want {
            return Some(format!(
                "json: cannot unmarshal {} into Go struct field ApplicationSyncRequest.{k} of type {}",
                json_type(val),
                match *want {
                    "boolean" => "bool",
                    "array" => "[]",
                    "object" => "struct",
                    other => other,
                }
            ));
        }
    }
    None
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// Moves scheduled events forward and wakes waiters.
async fn controller(sh: Arc<Shared>) {
    let mut rx = sh.version.subscribe();
    loop {
        let (changed, next) = sh.lock().advance(Instant::now());
        if changed {
            sh.bump();
            rx.borrow_and_update();
        }
        let sleep = match next {
            Some(t) => tokio::time::sleep_until(t.into()),
            None => tokio::time::sleep(Duration::from_secs(3600)),
        };
        tokio::select! {
            _ = sleep => {}
            _ = rx.changed() => {}
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP

struct Request {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// Reads the whole request: path percent-decoded, query parsed, header
/// names lower-cased (repeats joined with `, `).
async fn read_request(req: hyper::Request<hyper::body::Incoming>) -> Result<Request, BoxError> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes().to_vec();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &parts.headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        headers
            .entry(k.as_str().to_string())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    let query = url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Ok(Request {
        method: parts.method.as_str().to_string(),
        path: percent_decode(parts.uri.path()),
        query,
        headers,
        body,
    })
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("p={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

fn json_response(status: u16, body: &Value) -> hyper::Response<Body> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(body.to_string()))
        .expect("valid response")
}

/// gRPC-gateway's error body and HTTP status for a gRPC code.
pub fn grpc_error(code: u32, message: &str) -> (u16, Value) {
    let status = match code {
        3 | 9 | 11 => 400,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        4 => 504,
        16 => 401,
        _ => 500,
    };
    (
        status,
        json!({ "error": message, "code": code, "message": message }),
    )
}

struct Reply {
    status: u16,
    body: Value,
    code: Option<u32>,
}

fn ok(body: Value) -> Reply {
    Reply {
        status: 200,
        body,
        code: None,
    }
}

fn err(code: u32, message: &str) -> Reply {
    let (status, body) = grpc_error(code, message);
    Reply {
        status,
        body,
        code: Some(code),
    }
}

async fn handle(
    sh: Arc<Shared>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Body>, BoxError> {
    let req = read_request(req).await?;
    let body: Option<Value> = if req.body.is_empty() {
        None
    } else {
        serde_json::from_slice(&req.body).ok()
    };
    let record = RequestRecord {
        at: Instant::now(),
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        accept: req.headers.get("accept").cloned().unwrap_or_default(),
        body: body.clone(),
        status: 0,
        code: None,
    };
    let idx = {
        let mut st = sh.lock();
        st.log.push(record);
        st.requests_seen += 1;
        st.log.len() - 1
    };
    let set_status = |sh: &Shared, status: u16, code: Option<u32>| {
        let mut st = sh.lock();
        st.log[idx].status = status;
        st.log[idx].code = code;
    };

    let seen = sh.lock().requests_seen;
    let reply = if seen <= sh.config.unavailable_first {
        err(
            14,
            "connection error: desc = \"transport: Error while dialing: dial tcp 10.43.0.12:8083: connect: connection refused\"",
        )
    } else if req.method == "POST" && req.path == "/api/v1/session" {
        login(&sh, body.as_ref())
    } else if let Some(e) = check_auth(&sh, &req) {
        e
    } else if req.method == "GET" && req.path == "/api/v1/stream/applications" {
        if sh.config.stream == StreamMode::Unavailable {
            err(5, "Not Found")
        } else {
            set_status(&sh, 200, None);
            return Ok(stream(&sh, req));
        }
    } else if req.method == "GET" && req.path == "/api/v1/applications" {
        list(&sh, &req)
    } else if let Some(rest) = req.path.strip_prefix("/api/v1/applications/") {
        match (req.method.as_str(), rest.split_once('/')) {
            ("GET", None) => get_app(&sh, rest, &req).await,
            ("POST", Some((name, "sync"))) => match sync_request_problem(&req.body) {
                Some(problem) => err(3, &problem),
                None => sync(&sh, name, body.as_ref()),
            },
            _ => err(5, "Not Found"),
        }
    } else {
        err(5, "Not Found")
    };
    set_status(&sh, reply.status, reply.code);
    Ok(json_response(reply.status, &reply.body))
}

fn bearer(req: &Request) -> Option<String> {
    if let Some(a) = req.headers.get("authorization")
        && let Some(t) = a.strip_prefix("Bearer ")
    {
        return Some(t.trim().to_string());
    }
    let cookie = req.headers.get("cookie")?;
    cookie
        .split(';')
        .find_map(|c| c.trim().strip_prefix("argocd.token=").map(str::to_string))
}

fn check_auth(sh: &Shared, req: &Request) -> Option<Reply> {
    match bearer(req) {
        None => Some(err(16, "no session information")),
        Some(t) if t == sh.config.token || sh.lock().sessions.contains(&t) => None,
        Some(_) => Some(err(16, "invalid session: token signature is invalid")),
    }
}

fn login(sh: &Shared, body: Option<&Value>) -> Reply {
    let user = body.and_then(|b| b["username"].as_str()).unwrap_or("");
    let pass = body.and_then(|b| b["password"].as_str()).unwrap_or("");
    if !user.is_empty() && sh.config.users.iter().any(|(u, p)| u == user && p == pass) {
        let mut st = sh.lock();
        let token = format!(
            "eyJhbGciOiJIUzI1NiJ9.sim-session-{}-{}.c2ln",
            user,
            st.sessions.len() + 1
        );
        st.sessions.push(token.clone());
        ok(json!({ "token": token }))
    } else {
        err(16, "Invalid username or password")
    }
}

fn ns_matches(app: &SimApp, req: &Request) -> bool {
    req.query
        .get("appNamespace")
        .is_none_or(|ns| ns.is_empty() || *ns == app.namespace)
}

/// Kubernetes equality-based label selector: `k=v,k!=v,k` (and `k==v`).
pub fn selector_matches(selector: &str, labels: &BTreeMap<String, String>) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .all(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                labels.get(k.trim()).is_none_or(|x| x != v.trim())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                labels.get(k.trim()).is_some_and(|x| x == v.trim())
            } else if let Some(k) = term.strip_prefix('!') {
                !labels.contains_key(k.trim())
            } else {
                labels.contains_key(term)
            }
        })
}

fn selected<'a>(st: &'a State, req: &Request) -> Vec<&'a AppState> {
    let projects: Vec<&str> = req
        .query
        .get("projects")
        .or_else(|| req.query.get("project"))
        .map(|p| p.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    st.apps
        .values()
        .filter(|a| !a.cfg.forbidden)
        .filter(|a| {
            req.query
                .get("name")
                .is_none_or(|n| n.is_empty() || *n == a.cfg.name)
        })
        .filter(|a| {
            req.query
                .get("selector")
                .is_none_or(|s| selector_matches(s, &a.cfg.labels))
        })
        .filter(|a| projects.is_empty() || projects.contains(&a.cfg.project.as_str()))
        .filter(|a| ns_matches(&a.cfg, req))
        .collect()
}

fn list(sh: &Shared, req: &Request) -> Reply {
    let st = sh.lock();
    let items: Vec<Value> = selected(&st, req).iter().map(|a| a.to_json()).collect();
    ok(
        json!({ "metadata": { "resourceVersion": st.resource_version.to_string() }, "items": items }),
    )
}

fn lookup(st: &State, name: &str, req: &Request, action: &str) -> Result<(), Reply> {
    match st.apps.get(name) {
        Some(a) if !ns_matches(&a.cfg, req) => Err(err(
            5,
            &format!("applications.argoproj.io \"{name}\" not found"),
        )),
        Some(a) if a.cfg.forbidden => Err(err(
            7,
            &format!(
                "permission denied: applications, {action}, {}/{name}, sub: ci-bot, iat: 2026-11-26T06:00:00Z",
                a.cfg.project
            ),
        )),
        Some(a)
            if req
                .query
                .get("project")
                .is_some_and(|p| !p.is_empty() && *p != a.cfg.project) =>
        {
            Err(err(
                5,
                &format!("applications.argoproj.io \"{name}\" not found"),
            ))
        }
        Some(_) => Ok(()),
        None => Err(err(
            5,
            &format!("applications.argoproj.io \"{name}\" not found"),
        )),
    }
}

async fn get_app(sh: &Arc<Shared>, name: &str, req: &Request) -> Reply {
    let refresh = req.query.get("refresh").filter(|r| !r.is_empty()).cloned();
    let mut rx = sh.version.subscribe();
    {
        let mut st = sh.lock();
        if let Err(e) = lookup(&st, name, req, "get") {
            return e;
        }
        if let Some(r) = &refresh {
            if r != "normal" && r != "hard" {
                return err(3, &format!("unknown refresh type {r:?}"));
            }
            if let Some(a) = st.apps.get_mut(name) {
                a.refresh = Some(r.clone());
            }
            st.touch(name);
            let due = Instant::now() + sh.config.refresh_delay;
            st.schedule.push((due, name.to_string(), Event::Reconcile));
        }
    }
    if refresh.is_some() {
        sh.bump();
        // Like Argo CD's server: wait until the controller has dropped the
        // refresh annotation, i.e. reconciled the app.
        loop {
            if sh.lock().apps.get(name).is_none_or(|a| a.refresh.is_none()) {
                break;
            }
            if rx.changed().await.is_err() {
                break;
            }
        }
    }
    let st = sh.lock();
    match st.apps.get(name) {
        Some(a) => ok(a.to_json()),
        None => err(5, &format!("applications.argoproj.io \"{name}\" not found")),
    }
}

fn sync(sh: &Arc<Shared>, name: &str, body: Option<&Value>) -> Reply {
    let empty = json!({});
    let body = body.unwrap_or(&empty);
    let now = Instant::now();
    let reply = {
        let mut st = sh.lock();
        let q = Request {
            method: String::new(),
            path: String::new(),
            query: body
                .get("appNamespace")
                .and_then(Value::as_str)
                .map(|ns| BTreeMap::from([("appNamespace".to_string(), ns.to_string())]))
                .unwrap_or_default(),
            headers: BTreeMap::new(),
            body: vec![],
        };
        if let Err(e) = lookup(&st, name, &q, "sync") {
            return e;
        }
        let a = st.apps[name].clone();
        let mut requested = body
            .get("revision")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let strings = |k: &str| -> Vec<String> {
            body.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|v| match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let (revisions, positions) = (strings("revisions"), strings("sourcePositions"));
        if revisions.len() != positions.len() {
            return err(
                3,
                "the number of revisions must match the number of sourcePositions",
            );
        }
        if a.cfg.multi_source {
            if !requested.is_empty() {
                return err(
                    3,
                    "revision is not used for a multi-source application: give revisions with sourcePositions (the simulator's rule)",
                );
            }
            // Position 1 is the config repo; the chart stays at its version.
            if let Some(i) = positions.iter().position(|p| p == "1") {
                requested = revisions[i].clone();
            }
        } else if !revisions.is_empty() {
            return err(
                3,
                "revisions and sourcePositions are for multi-source applications",
            );
        }
        let target = &a.cfg.target_revision;
        if a.cfg.auto_sync && !requested.is_empty() && requested != *target {
            return err(
                9,
                &format!("Cannot sync to {requested}: auto-sync currently set to {target}"),
            );
        }
        if a.operation.is_some() {
            return err(9, "another operation is already in progress");
        }
        let head = if a.head_visible {
            &a.cfg.new_revision
        } else {
            &a.cfg.old_revision
        };
        let revision = if requested.is_empty() || requested == *target || requested == "HEAD" {
            head.clone()
        } else if [&a.cfg.new_revision, &a.cfg.old_revision]
            .iter()
            .any(|r| r.starts_with(&requested))
        {
            if a.cfg.new_revision.starts_with(&requested) {
                a.cfg.new_revision.clone()
            } else {
                a.cfg.old_revision.clone()
            }
        } else {
            return err(
                9,
                &format!(
                    "rpc error: code = Unknown desc = unable to resolve '{requested}' to a commit SHA"
                ),
            );
        };
        let prune = body.get("prune").and_then(Value::as_bool).unwrap_or(false);
        let dry_run = body.get("dryRun").and_then(Value::as_bool).unwrap_or(false);
        st.begin_sync(name, &revision, prune, dry_run, false, now);
        st.touch(name);
        ok(st.apps[name].to_json())
    };
    sh.bump();
    reply
}

/// One frame of a watch stream's body, or the error that cuts it.
type Chunk = Result<hyper::body::Frame<bytes::Bytes>, BoxError>;

/// The watch stream: the head at once, then one event per change of a
/// selected app, written by a task on the server's runtime until the
/// client goes away, the [`StreamMode`] cuts it, or the simulator stops.
fn stream(sh: &Arc<Shared>, req: Request) -> hyper::Response<Body> {
    let sse = !sh.config.ndjson_only
        && req
            .headers
            .get("accept")
            .is_some_and(|a| a.contains("text/event-stream"));
    if let Some(name) = req.query.get("name").filter(|n| !n.is_empty()) {
        let mut st = sh.lock();
        if let Err(e) = lookup(&st, name, &req, "get") {
            if let Some(rec) = st.log.iter_mut().rev().find(|r| r.is_stream()) {
                rec.status = e.status;
                rec.code = e.code;
            }
            return json_response(e.status, &e.body);
        }
    }
    let ctype = if sse {
        "text/event-stream"
    } else {
        "application/json"
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(16);
    tokio::spawn(watch_events(sh.clone(), req, sse, tx));
    let frames =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    hyper::Response::builder()
        .status(200)
        .header("content-type", ctype)
        .header("cache-control", "no-cache")
        .body(http_body_util::StreamBody::new(frames).boxed_unsync())
        .expect("valid response")
}

/// Sends the events of one watch stream into `tx`. Returning drops `tx`:
/// the body ends with its last chunk; sending an `Err` cuts the connection
/// without one, as a proxy that drops it does.
async fn watch_events(
    sh: Arc<Shared>,
    req: Request,
    sse: bool,
    tx: tokio::sync::mpsc::Sender<Chunk>,
) {
    let opened = Instant::now();
    let mut rx = sh.version.subscribe();
    let mut stopping = sh.stopping.subscribe();
    let mut sent: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        let events: Vec<(String, u64, Value, bool)> = {
            let st = sh.lock();
            let mut ev: Vec<_> = selected(&st, &req)
                .into_iter()
                .filter(|a| sent.get(&a.cfg.name) != Some(&a.resource_version))
                .map(|a| (a.cfg.name.clone(), a.resource_version, a.to_json(), false))
                .collect();
            ev.extend(
                sent.keys()
                    .filter_map(|n| st.deleted.get(n).map(|j| (n.clone(), 0, j.clone(), true))),
            );
            ev
        };
        for (name, rv, app, gone) in events {
            let kind = if gone {
                "DELETED"
            } else if sent.contains_key(&name) {
                "MODIFIED"
            } else {
                "ADDED"
            };
            if gone {
                sent.remove(&name);
            } else {
                sent.insert(name, rv);
            }
            let msg = json!({ "result": { "type": kind, "application": app } }).to_string();
            let data = if sse {
                format!("data: {msg}\n\n")
            } else {
                format!("{msg}\n")
            };
            if tx
                .send(Ok(hyper::body::Frame::data(data.into())))
                .await
                .is_err()
            {
                return;
            }
            if sh.config.stream == StreamMode::CloseAfterFirstEvent {
                let _ = tx
                    .send(Err("argocd-sim: stream cut after the first event".into()))
                    .await;
                return;
            }
        }
        let cut = match sh.config.stream {
            StreamMode::CloseAfter(d) => Some(opened + d),
            _ => None,
        };
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = async {
                match cut {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            } => {
                let _ = tx.send(Err("argocd-sim: stream cut (StreamMode::CloseAfter)".into())).await;
                return;
            }
            // The client went away (hyper dropped the body).
            _ = tx.closed() => return,
            _ = async { drop(stopping.wait_for(|s| *s).await) } => return,
        }
    }
}

// ---------------------------------------------------------------------------
// Swagger conformance helpers (used by this module's tests and by anyone who
// wants to check JSON against the spec)

/// Every key in `value` that the Swagger definition `def` (followed through
/// `$ref`, arrays and `additionalProperties`) does not declare, as JSON
/// pointers. Empty when every emitted field name exists in the spec.
pub fn unknown_fields(swagger: &Value, def: &str, value: &Value) -> Vec<String> {
    let mut out = vec![];
    let schema = json!({ "$ref": format!("#/definitions/{def}") });
    walk(swagger, &schema, value, String::new(), &mut out);
    out
}

fn resolve<'a>(swagger: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/definitions/");
        schema = &swagger["definitions"][name];
    }
    schema
}

fn walk(swagger: &Value, schema: &Value, value: &Value, at: String, out: &mut Vec<String>) {
    let schema = resolve(swagger, schema);
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in map {
                    match props.get(k) {
                        Some(s) => walk(swagger, s, v, format!("{at}/{k}"), out),
                        None => out.push(format!("{at}/{k}")),
                    }
                }
            } else if let Some(ap) = schema.get("additionalProperties") {
                for (k, v) in map {
                    walk(swagger, ap, v, format!("{at}/{k}"), out);
                }
            } else if schema.get("type").and_then(Value::as_str) != Some("object")
                || !map.is_empty()
            {
                // An object where the spec declares no object fields.
                if schema.get("type").and_then(Value::as_str) != Some("object") {
                    out.push(format!("{at} (not an object in the spec)"));
                }
            }
        }
        Value::Array(items) => match schema.get("items") {
            Some(s) => {
                for (i, v) in items.iter().enumerate() {
                    walk(swagger, s, v, format!("{at}/{i}"), out);
                }
            }
            None => out.push(format!("{at} (not an array in the spec)")),
        },
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};

    const TOKEN: &str = "sim-test-token-0123456789";

    fn http(
        sim: &ArgoSim,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> (u16, String) {
        let mut s = std::net::TcpStream::connect(sim.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        s.write_all(req.as_bytes()).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status: u16 = text[9..12].parse().unwrap();
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    fn authed(sim: &ArgoSim, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let h = format!("Bearer {TOKEN}");
        let (s, b) = http(sim, method, path, &[("authorization", &h)], body);
        (s, serde_json::from_str(&b).unwrap_or(Value::Null))
    }

    #[test]
    fn application_fields_follow_the_swagger_spec() {
        let swagger = crate::schemas::load(crate::schemas::ARGOCD_SWAGGER);
        let mut app = SimApp::new("sensor");
        app.outcome = Outcome::SyncFailed;
        app.sync_duration = Duration::from_secs(3600);
        let sim = ArgoSim::start(SimConfig::new(TOKEN, vec![app, SimApp::new("other")]));
        // An app with a pending operation and a failed earlier result covers
        // `operation`, `operationState.syncResult` and resource health.
        let (s, synced) = authed(
            &sim,
            "POST",
            "/api/v1/applications/sensor/sync",
            Some(&json!({"revision": "4e5b2f1", "prune": true})),
        );
        assert_eq!(s, 200, "{synced}");
        assert!(synced.get("operation").is_some());
        let (_, got) = authed(&sim, "GET", "/api/v1/applications/other?refresh=hard", None);
        let (_, list) = authed(
            &sim,
            "GET",
            "/api/v1/applications?selector=app.kubernetes.io/part-of%3Dsensor-fleet",
            None,
        );
        for (def, v) in [
            ("v1alpha1Application", &synced),
            ("v1alpha1Application", &got),
            ("v1alpha1ApplicationList", &list),
        ] {
            let bad = unknown_fields(&swagger, def, v);
            assert!(bad.is_empty(), "{def}: fields not in the spec: {bad:?}");
        }
        // Every field the brief lists is really there.
        for p in [
            "/status/sync/status",
            "/status/sync/revision",
            "/status/health/status",
            "/status/operationState/phase",
            "/status/operationState/startedAt",
            "/status/reconciledAt",
            "/status/resources/2/health/status",
            "/spec/source/repoURL",
            "/spec/destination/server",
            "/metadata/resourceVersion",
            "/operation/sync/revision",
        ] {
            assert!(synced.pointer(p).is_some(), "missing {p} in {synced:#}");
        }
        for p in [
            "/status/operationState/syncResult/revision",
            "/status/operationState/syncResult/resources/0/status",
        ] {
            assert!(got.pointer(p).is_some(), "missing {p} in {got:#}");
        }
        assert_eq!(list["items"].as_array().unwrap().len(), 2);
        // The checker itself catches a field that is not in the spec.
        let mut wrong = got.clone();
        wrong["status"]["health"]["colour"] = json!("green");
        assert_eq!(
            unknown_fields(&swagger, "v1alpha1Application", &wrong),
            vec!["/status/health/colour"]
        );
    }

    #[test]
    fn errors_and_session_follow_the_swagger_spec() {
        let swagger = crate::schemas::load(crate::schemas::ARGOCD_SWAGGER);
        let mut cfg = SimConfig::new(TOKEN, vec![SimApp::new("sensor")]);
        cfg.users = vec![("ci".into(), "pa55word!".into())];
        let sim = ArgoSim::start(cfg);
        let (s, b) = http(
            &sim,
            "GET",
            "/api/v1/applications/sensor",
            &[("authorization", "Bearer nope")],
            None,
        );
        assert_eq!(s, 401);
        let b: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(b["code"], 16);
        assert!(unknown_fields(&swagger, "runtimeError", &b).is_empty());
        let (s, b) = authed(&sim, "GET", "/api/v1/applications/ghost", None);
        assert_eq!((s, b["code"].as_u64()), (404, Some(5)), "{b}");
        assert!(b["message"].as_str().unwrap().contains("not found"));

        let (s, b) = http(
            &sim,
            "POST",
            "/api/v1/session",
            &[],
            Some(&json!({"username": "ci", "password": "pa55word!"})),
        );
        assert_eq!(s, 200);
        let b: Value = serde_json::from_str(&b).unwrap();
        assert!(unknown_fields(&swagger, "sessionSessionResponse", &b).is_empty());
        let session = b["token"].as_str().unwrap().to_string();
        let (s, _) = http(
            &sim,
            "GET",
            "/api/v1/applications/sensor",
            &[("cookie", &format!("argocd.token={session}"))],
            None,
        );
        assert_eq!(s, 200);
        let (s, _) = http(
            &sim,
            "POST",
            "/api/v1/session",
            &[],
            Some(&json!({"username": "ci", "password": "x"})),
        );
        assert_eq!(s, 401);
    }

    #[test]
    fn sync_lifecycle_and_busy_operation() {
        let mut app = SimApp::new("sensor");
        app.busy_for = Some(Duration::from_millis(400));
        let sim = ArgoSim::start(SimConfig::new(TOKEN, vec![app]));
        let body = json!({"revision": "4e5b2f1c9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c", "prune": true, "dryRun": false});
        let (s, b) = authed(
            &sim,
            "POST",
            "/api/v1/applications/sensor/sync",
            Some(&body),
        );
        assert_eq!((s, b["code"].as_u64()), (400, Some(9)));
        assert_eq!(b["message"], "another operation is already in progress");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (s, _) = authed(
                &sim,
                "POST",
                "/api/v1/applications/sensor/sync",
                Some(&body),
            );
            if s == 200 {
                break;
            }
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(50));
        }
        // Wait for Healthy on the new revision.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, a) = authed(&sim, "GET", "/api/v1/applications/sensor", None);
            if a["status"]["health"]["status"] == "Healthy"
                && a["status"]["sync"]["status"] == "Synced"
                && a["status"]["sync"]["revision"] == body["revision"]
            {
                assert_eq!(a["status"]["operationState"]["phase"], "Succeeded");
                assert_eq!(
                    a["status"]["operationState"]["syncResult"]["revision"],
                    body["revision"]
                );
                assert!(a.get("operation").is_none());
                assert_eq!(
                    a["status"]["operationState"]["operation"]["sync"]["prune"],
                    true
                );
                break;
            }
            assert!(Instant::now() < deadline, "{a:#}");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            sim.sync_bodies().len(),
            sim.requests().iter().filter(|r| r.is_sync()).count()
        );
        assert!(sim.transition_at("sensor", "health=Healthy").is_some());
        assert!(sim.requests().iter().any(|r| r.code == Some(9)));
    }

    #[test]
    fn push_moves_an_auto_sync_app_to_the_new_commit() {
        let mut app = SimApp::new("sensor");
        app.auto_sync = true;
        app.new_revision = app.old_revision.clone();
        let sim = ArgoSim::start(SimConfig::new(TOKEN, vec![app]));
        let sha = "a".repeat(40);
        sim.push("sensor", &sha, Duration::from_millis(100));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let a = sim.app_json("sensor").unwrap();
            if a["status"]["sync"]["revision"] == sha.as_str()
                && a["status"]["health"]["status"] == "Healthy"
                && a["status"]["sync"]["status"] == "Synced"
            {
                assert_eq!(
                    a["status"]["operationState"]["syncResult"]["revision"],
                    sha.as_str()
                );
                assert_eq!(
                    a["status"]["operationState"]["operation"]["initiatedBy"]["automated"],
                    true
                );
                break;
            }
            assert!(Instant::now() < deadline, "{a:#}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn auto_sync_refuses_other_revisions() {
        let mut app = SimApp::new("sensor");
        app.auto_sync = true;
        let sim = ArgoSim::start(SimConfig::new(TOKEN, vec![app]));
        let (s, b) = authed(
            &sim,
            "POST",
            "/api/v1/applications/sensor/sync",
            Some(&json!({"revision": "abc1234"})),
        );
        assert_eq!(s, 400);
        assert!(
            b["message"]
                .as_str()
                .unwrap()
                .starts_with("Cannot sync to abc1234")
        );
    }

    #[test]
    fn refresh_blocks_until_reconciled() {
        let mut cfg = SimConfig::new(TOKEN, vec![SimApp::new("sensor")]);
        cfg.refresh_delay = Duration::from_millis(400);
        let sim = ArgoSim::start(cfg);
        let t = Instant::now();
        let (s, a) = authed(
            &sim,
            "GET",
            "/api/v1/applications/sensor?refresh=normal",
            None,
        );
        assert_eq!(s, 200);
        assert!(
            t.elapsed() >= Duration::from_millis(380),
            "{:?}",
            t.elapsed()
        );
        assert!(
            a["metadata"]["annotations"]
                .get("argocd.argoproj.io/refresh")
                .is_none()
        );
        let t = Instant::now();
        authed(&sim, "GET", "/api/v1/applications/sensor", None);
        assert!(t.elapsed() < Duration::from_millis(350));
    }

    fn read_stream_lines(sim: &ArgoSim, accept: &str, n: usize) -> Vec<String> {
        let mut s = std::net::TcpStream::connect(sim.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            s,
            "GET /api/v1/stream/applications?name=sensor HTTP/1.1\r\nhost: x\r\naccept: {accept}\r\nauthorization: Bearer {TOKEN}\r\n\r\n"
        )
        .unwrap();
        let mut r = BufReader::new(s);
        let mut lines = vec![];
        let mut line = String::new();
        while lines.len() < n {
            line.clear();
            if r.read_line(&mut line).unwrap() == 0 {
                break;
            }
            let l = line.trim_end();
            if l.starts_with('{') || l.starts_with("data: ") {
                lines.push(l.to_string());
            }
        }
        lines
    }

    #[test]
    fn stream_formats() {
        let swagger = crate::schemas::load(crate::schemas::ARGOCD_SWAGGER);
        let mut app = SimApp::new("sensor");
        app.auto_sync = true;
        app.head_visible_after = Duration::from_millis(300);
        let sim = ArgoSim::start(SimConfig::new(TOKEN, vec![app]));
        let nd = read_stream_lines(&sim, "application/json", 3);
        assert_eq!(nd.len(), 3, "{nd:?}");
        let first: Value = serde_json::from_str(&nd[0]).unwrap();
        assert_eq!(first["result"]["type"], "ADDED");
        let later: Value = serde_json::from_str(&nd[2]).unwrap();
        assert_eq!(later["result"]["type"], "MODIFIED");
        let stream_def =
            &swagger["paths"]["/api/v1/stream/applications"]["get"]["responses"]["200"]["schema"];
        let mut out = vec![];
        walk(&swagger, stream_def, &later, String::new(), &mut out);
        assert!(out.is_empty(), "{out:?}");
        let sse = read_stream_lines(&sim, "text/event-stream", 1);
        let ev: Value = serde_json::from_str(sse[0].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(ev["result"]["application"]["metadata"]["name"], "sensor");
    }

    #[test]
    fn unavailable_then_recovers_and_logs() {
        let mut cfg = SimConfig::new(TOKEN, vec![SimApp::new("sensor")]);
        cfg.unavailable_first = 2;
        let sim = ArgoSim::start(cfg);
        assert_eq!(
            authed(&sim, "GET", "/api/v1/applications/sensor", None).0,
            503
        );
        assert_eq!(
            authed(&sim, "GET", "/api/v1/applications/sensor", None).1["code"],
            14
        );
        assert_eq!(
            authed(&sim, "GET", "/api/v1/applications/sensor", None).0,
            200
        );
        let log = sim.requests();
        assert_eq!(
            log.iter().map(|r| r.status).collect::<Vec<_>>(),
            vec![503, 503, 200]
        );
        assert!(
            sim.requests_per_minute(sim.started(), Instant::now() + Duration::from_secs(1)) > 0.0
        );
    }

    #[test]
    fn sync_request_fields_are_the_swaggers() {
        let swagger = crate::schemas::load(crate::schemas::ARGOCD_SWAGGER);
        let props = swagger["definitions"]["applicationApplicationSyncRequest"]["properties"]
            .as_object()
            .unwrap();
        let mut from_spec: Vec<(String, String)> = props
            .iter()
            .map(|(k, v)| {
                let t = v["type"].as_str().unwrap_or("object").to_string();
                (k.clone(), t)
            })
            .collect();
        from_spec.sort();
        let ours: Vec<(String, String)> = SYNC_REQUEST_FIELDS
            .iter()
            .map(|(k, t)| (k.to_string(), t.to_string()))
            .collect();
        assert_eq!(ours, from_spec);
    }

    #[test]
    fn sync_bodies_are_checked_against_the_spec() {
        let sim = ArgoSim::start(SimConfig::new(TOKEN, vec![SimApp::new("sensor")]));
        for (body, want) in [
            (
                r#"{"name":"sensor","revison":"4e5b2f1"}"#,
                "unknown field \"revison\" in applicationApplicationSyncRequest",
            ),
            (
                r#"{"name":"sensor","prune":"yes"}"#,
                "json: cannot unmarshal string into Go struct field ApplicationSyncRequest.prune of type bool",
            ),
            (
                r#"{"name":"sensor","#,
                "invalid character in the request body",
            ),
            ("[]", "json: cannot unmarshal array into Go value"),
        ] {
            let mut st = std::net::TcpStream::connect(sim.addr()).unwrap();
            write!(
                st,
                "POST /api/v1/applications/sensor/sync HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer {TOKEN}\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut text = String::new();
            st.read_to_string(&mut text).unwrap();
            assert!(text.starts_with("HTTP/1.1 400"), "{body}: {text}");
            let answer: Value =
                serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
            assert_eq!(answer["code"], 3, "{answer}");
            assert!(
                answer["message"].as_str().unwrap().starts_with(want),
                "{body}: {answer}"
            );
        }
        assert!(sim.app_json("sensor").unwrap().get("operation").is_none());
        // Every field of the spec, of the right type, is taken.
        let (s, b) = authed(
            &sim,
            "POST",
            "/api/v1/applications/sensor/sync",
            Some(&json!({
                "name": "sensor", "prune": true, "dryRun": false, "appNamespace": "argocd",
                "project": "default", "revision": "4e5b2f1c9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c",
                "syncOptions": {"items": ["CreateNamespace=true"]}, "strategy": {"hook": {}},
                "infos": null,
            })),
        );
        assert_eq!(s, 200, "{b}");
        let refused = sim
            .requests()
            .iter()
            .filter(|r| r.is_sync() && r.status == 400 && r.code == Some(3))
            .count();
        assert_eq!(refused, 4);
    }

    fn wait_for(sim: &ArgoSim, what: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let a = sim.app_json("sensor").unwrap();
            if what(&a) {
                return a;
            }
            assert!(Instant::now() < deadline, "{a:#}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn every_health_outcome_and_the_error_phase_can_be_produced() {
        let swagger = crate::schemas::load(crate::schemas::ARGOCD_SWAGGER);
        for (outcome, health, sync, message) in [
            (
                Outcome::Suspended,
                "Suspended",
                "Synced",
                Some("Deployment is paused"),
            ),
            (Outcome::Missing, "Missing", "OutOfSync", None),
            (
                Outcome::Unknown,
                "Unknown",
                "Synced",
                Some(
                    "failed to get resource health for \"Deployment\" with name \"sensor\": the server is currently unable to handle the request",
                ),
            ),
        ] {
            let mut app = SimApp::new("sensor");
            app.outcome = outcome;
            let sim = ArgoSim::start(SimConfig::new(TOKEN, vec![app]));
            let (s, _) = authed(
                &sim,
                "POST",
                "/api/v1/applications/sensor/sync",
                Some(&json!({"revision": "4e5b2f1c9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c"})),
            );
            assert_eq!(s, 200);
            let a = wait_for(&sim, |a| a["status"]["health"]["status"] == health);
            assert_eq!(a["status"]["sync"]["status"], sync, "{outcome:?}");
            assert_eq!(a["status"]["operationState"]["phase"], "Succeeded");
            assert_eq!(a["status"]["health"]["message"].as_str(), message);
            assert_eq!(a["status"]["resources"][2]["health"]["status"], health);
            assert!(unknown_fields(&swagger, "v1alpha1Application", &a).is_empty());
        }
        let mut app = SimApp::new("sensor");
        app.outcome = Outcome::SyncError;
        let sim = ArgoSim::start(SimConfig::new(TOKEN, vec![app]));
        authed(
            &sim,
            "POST",
            "/api/v1/applications/sensor/sync",
            Some(&json!({})),
        );
        let a = wait_for(&sim, |a| a["status"]["operationState"]["phase"] == "Error");
        assert!(a.get("operation").is_none());
        assert!(
            a["status"]["operationState"]["message"]
                .as_str()
                .unwrap()
                .contains("kustomize build failed")
        );
    }

    #[test]
    fn a_multi_source_app_follows_the_spec_and_syncs_by_source_position() {
        let swagger = crate::schemas::load(crate::schemas::ARGOCD_SWAGGER);
        let new = "4e5b2f1c9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c";
        let mut app = SimApp::new("sensor");
        app.multi_source = true;
        let sim = ArgoSim::start(SimConfig::new(TOKEN, vec![app]));
        let (s, b) = authed(
            &sim,
            "POST",
            "/api/v1/applications/sensor/sync",
            Some(&json!({"revision": new})),
        );
        assert_eq!((s, b["code"].as_u64()), (400, Some(3)), "{b}");
        let (s, b) = authed(
            &sim,
            "POST",
            "/api/v1/applications/sensor/sync",
            Some(&json!({"revisions": [new], "sourcePositions": [1], "prune": true})),
        );
        assert_eq!(s, 200, "{b}");
        assert_eq!(
            b["operation"]["sync"]["revisions"],
            json!([new, MULTI_SOURCE_CHART_VERSION])
        );
        assert!(b["spec"].get("source").is_none());
        assert_eq!(b["spec"]["sources"][1]["chart"], MULTI_SOURCE_CHART);
        let a = wait_for(&sim, |a| {
            a.get("operation").is_none()
                && a["status"]["operationState"]["phase"] == "Succeeded"
                && a["status"]["health"]["status"] == "Healthy"
                && a["status"]["sync"]["status"] == "Synced"
        });
        assert_eq!(
            a["status"]["sync"]["revisions"],
            json!([new, MULTI_SOURCE_CHART_VERSION])
        );
        assert!(a["status"]["sync"].get("revision").is_none());
        assert_eq!(
            a["status"]["operationState"]["syncResult"]["revisions"],
            json!([new, MULTI_SOURCE_CHART_VERSION])
        );
        for v in [&b, &a] {
            let bad = unknown_fields(&swagger, "v1alpha1Application", v);
            assert!(bad.is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn a_malformed_app_breaks_the_spec_on_purpose() {
        let swagger = crate::schemas::load(crate::schemas::ARGOCD_SWAGGER);
        let mut app = SimApp::new("sensor");
        app.malformed = true;
        let sim = ArgoSim::start(SimConfig::new(TOKEN, vec![app]));
        let (s, a) = authed(&sim, "GET", "/api/v1/applications/sensor", None);
        assert_eq!(s, 200);
        assert!(a["status"]["sync"].is_string(), "{a:#}");
        assert_eq!(
            unknown_fields(&swagger, "v1alpha1Application", &a),
            Vec::<String>::new(),
            "the field names stay the spec's; only the type is wrong"
        );
    }

    #[test]
    fn selectors() {
        let labels = BTreeMap::from([
            ("env".to_string(), "pi".to_string()),
            ("site".to_string(), "a".to_string()),
        ]);
        assert!(selector_matches("env=pi", &labels));
        assert!(selector_matches("env==pi,site", &labels));
        assert!(!selector_matches("env=pi,site!=a", &labels));
        assert!(selector_matches("!missing", &labels));
        assert!(!selector_matches("env=x86", &labels));
    }

    #[test]
    fn https_with_a_harness_ca_and_streams_that_end_when_the_simulator_stops() {
        let ca = crate::tls::TestCa::new();
        let mut cfg = SimConfig::new(TOKEN, vec![SimApp::new("sensor")]);
        cfg.tls = Some(ca.issue(&["127.0.0.1"]));
        let sim = ArgoSim::start(cfg);
        assert!(sim.url().starts_with("https://127.0.0.1:"), "{}", sim.url());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = |trust: bool| {
            let mut b = reqwest::Client::builder().no_proxy();
            if trust {
                b = b.add_root_certificate(
                    reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap(),
                );
            }
            b.build().unwrap()
        };
        let url = format!("{}/api/v1/stream/applications?name=sensor", sim.url());
        let (untrusted, first, rest) = rt.block_on(async {
            let untrusted = client(false).get(&url).send().await.is_err();
            let mut resp = client(true)
                .get(&url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            let first = resp.chunk().await.unwrap().unwrap();
            // The simulator goes away with the stream open: the stream
            // ends (no hang, no reset) and the stop takes no grace period.
            let stopped = Instant::now();
            drop(sim);
            let took = stopped.elapsed();
            let mut rest = Vec::new();
            while let Ok(Some(c)) = resp.chunk().await {
                rest.extend_from_slice(&c);
            }
            assert!(took < Duration::from_millis(900), "stopping took {took:?}");
            (untrusted, first, rest)
        });
        assert!(untrusted, "a client without the CA was served");
        let ev: Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(ev["result"]["type"], "ADDED");
        assert_eq!(ev["result"]["application"]["metadata"]["name"], "sensor");
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    }
}
