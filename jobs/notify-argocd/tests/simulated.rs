//! The notify-argocd binary against the Argo CD API simulator
//! (`harness::argocd_sim`, which follows Argo CD's swagger spec): Argo CD
//! itself cannot run here (no Kubernetes), so every test that needs it says
//! `simulated` in its name.
//!
//! Every run goes through `harness::job` (clean environment, the one-line
//! cause matched whole) and is checked for the token, the password and the
//! session token in every form, in the output and in every file it wrote.

use std::ops::Deref;
use std::time::{Duration, Instant};

use harness::argocd_sim::{ArgoSim, Outcome, SimApp, SimConfig, StreamMode};
use harness::job::{Job, Run, assert_no_secret_in_files};
use serde_json::json;

const TOKEN: &str = "argocd-api-token-Zx9s3cr3t";
const PASSWORD: &str = "pa55-w0rd-secret";
const WRONG_TOKEN: &str = "wrong-token-9f8e7d6c";
/// The part of the simulator's session tokens that is unique to them.
const SESSION: &str = "sim-session-ci-bot";
const SECRETS: [&str; 4] = [TOKEN, PASSWORD, WRONG_TOKEN, SESSION];
const NEW: &str = "4e5b2f1c9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c";

struct Out {
    run: Run,
    took: Duration,
    exited: Instant,
    dir: tempfile::TempDir,
}

impl Deref for Out {
    type Target = Run;
    fn deref(&self) -> &Run {
        &self.run
    }
}

impl Out {
    fn dotenv(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("notify-argocd.env")).ok()
    }

    /// The summary table's row of `app`, its cells split on runs of spaces.
    fn row(&self, app: &str) -> Vec<String> {
        let line = self
            .stderr
            .lines()
            .find(|l| l.split_whitespace().next() == Some(app) && l.contains("  "))
            .unwrap_or_else(|| panic!("no table row for {app}:\n{}", self.stderr));
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    }
}

fn run_with(server: &str, args: &[&str], env: &[(&str, &str)]) -> Out {
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let run = Job::new(env!("CARGO_BIN_EXE_notify-argocd"), dir.path())
        .arg("--server")
        .arg(server)
        .args(args)
        .envs(env.iter().copied())
        .run();
    let exited = Instant::now();
    eprintln!(
        "--- exit {} after {:?}\n{}",
        run.code,
        exited - start,
        run.stderr
    );
    run.assert_no_secret(&SECRETS);
    assert_no_secret_in_files(dir.path(), &SECRETS);
    Out {
        run,
        took: exited - start,
        exited,
        dir,
    }
}

fn run(sim: &ArgoSim, args: &[&str]) -> Out {
    run_with(&sim.url(), args, &[("ARGOCD_AUTH_TOKEN", TOKEN)])
}

fn sim(apps: Vec<SimApp>) -> ArgoSim {
    ArgoSim::start(SimConfig::new(TOKEN, apps))
}

/// A pattern that matches exactly `s`.
fn exact(s: &str) -> String {
    regex::escape(s)
}

fn with_outcome(outcome: Outcome) -> SimApp {
    let mut app = SimApp::new("sensor");
    app.outcome = outcome;
    app
}

// ---------------------------------------------------------------------------
// Exit 0

#[test]
fn simulated_sync_becomes_healthy() {
    let sim = sim(vec![SimApp::new("sensor")]);
    let out = run(
        &sim,
        &["--app", "sensor", "--revision", NEW, "--sync", "--prune"],
    );
    out.assert_success();
    assert_eq!(
        sim.sync_bodies(),
        [json!({"name": "sensor", "prune": true, "revision": NEW})]
    );
    // It exited after the app really became Healthy, and not long after.
    let healthy = sim
        .transition_at("sensor", "health=Healthy")
        .expect("became healthy");
    assert!(out.exited >= healthy);
    assert!(out.took < Duration::from_secs(30), "{:?}", out.took);
    // The refresh came first.
    let reqs = sim.requests();
    assert_eq!(
        reqs[0].query.get("refresh").map(String::as_str),
        Some("normal")
    );
    // One progress line per state change, not per event.
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("sensor: sync="))
        .collect();
    assert!(lines.len() >= 3 && lines.len() <= 10, "{lines:?}");
    for w in lines.windows(2) {
        assert_ne!(
            w[0].split_once(']').unwrap().1,
            w[1].split_once(']').unwrap().1
        );
    }
    assert_eq!(
        out.row("sensor")[..6],
        [
            "sensor",
            "deployed",
            "Synced",
            "Healthy",
            "Succeeded",
            "4e5b2f1"
        ]
    );
    assert_eq!(
        out.dotenv().expect("dotenv written"),
        format!(
            "ARGOCD_APP_URL={}/applications/argocd/sensor\nDEPLOYED_REVISION={NEW}\nARGOCD_APPS=sensor\n",
            sim.url()
        )
    );
}

#[test]
fn simulated_old_revision_for_a_while_does_not_pass_early() {
    // Auto-sync app that Argo CD sees Synced+Healthy on the OLD revision for
    // 3 s after the push: `argocd app wait` would pass at once.
    let mut app = SimApp::new("sensor");
    app.auto_sync = true;
    app.head_visible_after = Duration::from_secs(3);
    let sim = sim(vec![app]);
    let out = run(&sim, &["--app", "sensor", "--revision", NEW]);
    out.assert_success();
    assert!(
        out.took >= Duration::from_secs(3),
        "passed early: {:?}",
        out.took
    );
    let healthy = sim
        .transition_at("sensor", "health=Healthy")
        .expect("became healthy");
    assert!(healthy >= sim.started() + Duration::from_secs(3));
    assert!(out.exited >= healthy);
    assert!(
        sim.sync_bodies().is_empty(),
        "no --sync, so no sync request"
    );
    assert!(
        out.dotenv()
            .unwrap()
            .contains(&format!("DEPLOYED_REVISION={NEW}\n"))
    );
}

#[test]
fn simulated_stale_failed_operation_is_not_taken_for_this_one() {
    // The previous operation (old revision) Failed; the automated sync of the
    // new revision then succeeds. The job must see the stale failure, not
    // stop on it, and end on the new operation.
    let mut app = SimApp::new("sensor");
    app.auto_sync = true;
    app.previous_operation_failed = true;
    app.head_visible_after = Duration::from_millis(800);
    let sim = sim(vec![app]);
    let out = run(&sim, &["--app", "sensor", "--revision", NEW]);
    out.assert_success();
    assert!(
        sim.sync_bodies().is_empty(),
        "no --sync, so no sync request"
    );
    // The stale state was read …
    assert!(
        out.stderr
            .contains("sensor: sync=Synced health=Healthy operation=Failed revision=01d0000"),
        "{}",
        out.stderr
    );
    // … and the job ended only after the automated sync of NEW succeeded
    // and the app turned Healthy on it.
    let new_op = sim
        .transitions()
        .into_iter()
        .find(|t| t.what == "phase=Succeeded")
        .expect("the automated sync succeeded")
        .at;
    assert!(new_op >= sim.started() + Duration::from_millis(800));
    assert!(out.exited >= new_op);
    assert!(out.exited >= sim.transition_at("sensor", "health=Healthy").unwrap());
    assert_eq!(
        out.row("sensor")[..6],
        [
            "sensor",
            "deployed",
            "Synced",
            "Healthy",
            "Succeeded",
            "4e5b2f1"
        ]
    );
    assert!(
        out.dotenv()
            .unwrap()
            .contains(&format!("DEPLOYED_REVISION={NEW}\n"))
    );
    let app = sim.app_json("sensor").unwrap();
    assert_eq!(
        app["status"]["operationState"]["operation"]["initiatedBy"]["automated"],
        true
    );
}

#[test]
fn simulated_auto_sync_app_is_synced_without_a_revision() {
    let mut app = SimApp::new("sensor");
    app.auto_sync = true;
    app.head_visible_after = Duration::from_millis(300);
    let sim = sim(vec![app]);
    let out = run(&sim, &["--app", "sensor", "--revision", NEW, "--sync"]);
    out.assert_success();
    // At least one sync was sent, each without `revision` (Argo CD refuses
    // one for auto-sync apps), and the last was accepted.
    let syncs: Vec<_> = sim.requests().into_iter().filter(|r| r.is_sync()).collect();
    assert!(!syncs.is_empty(), "no sync was sent");
    for s in &syncs {
        assert_eq!(s.body, Some(json!({"name": "sensor", "prune": false})));
        assert!(s.status == 200 || s.code == Some(9), "{s:?}");
    }
    assert_eq!(syncs.last().unwrap().status, 200);
    assert!(
        out.stderr.contains(
            "sensor: automated sync is on, so Argo CD only syncs to targetRevision main: syncing without --revision and waiting for 4e5b2f1"
        ),
        "{}",
        out.stderr
    );
    // What is reported deployed is NEW, and Argo CD is on it.
    assert_eq!(
        out.row("sensor")[..6],
        [
            "sensor",
            "deployed",
            "Synced",
            "Healthy",
            "Succeeded",
            "4e5b2f1"
        ]
    );
    assert!(
        out.dotenv()
            .unwrap()
            .contains(&format!("DEPLOYED_REVISION={NEW}\n"))
    );
    assert_eq!(
        sim.app_json("sensor").unwrap()["status"]["sync"]["revision"],
        NEW
    );
    assert!(out.took < Duration::from_secs(30), "{:?}", out.took);
}

#[test]
fn simulated_multi_source_app_syncs_each_source_and_waits_for_the_revision() {
    let mut app = SimApp::new("sensor");
    app.multi_source = true;
    let sim = sim(vec![app]);
    let out = run(&sim, &["--app", "sensor", "--revision", NEW, "--sync"]);
    out.assert_success();
    // No `revision` (the simulator refuses one for multi-source apps).
    let syncs: Vec<_> = sim.requests().into_iter().filter(|r| r.is_sync()).collect();
    assert_eq!(syncs.len(), 1, "{syncs:?}");
    assert_eq!(
        syncs[0].body,
        Some(json!({"name": "sensor", "prune": false}))
    );
    assert_eq!(syncs[0].status, 200);
    assert!(
        out.stderr.contains(
            "sensor: multi-source app: syncing each source to its targetRevision (main, 1.4.2) and waiting for 4e5b2f1"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.dotenv()
            .unwrap()
            .contains(&format!("DEPLOYED_REVISION={NEW}\n"))
    );
    assert_eq!(
        sim.app_json("sensor").unwrap()["status"]["sync"]["revisions"],
        json!([NEW, "1.4.2"])
    );

    // A revision no source is at keeps it waiting, and says where it is.
    let other = "abcdef0123456789abcdef0123456789abcdef01";
    let out = run(
        &sim,
        &["--app", "sensor", "--revision", other, "--timeout", "2s"],
    );
    out.assert_failed(
        4,
        &exact(
            "timed out after 2.0s (--timeout); last state: sensor: sync=Synced health=Healthy operation=Succeeded revision=4e5b2f1, waiting for revision abcdef0 (Argo CD is at 4e5b2f1, 1.4.2)",
        ),
    );
}

// ---------------------------------------------------------------------------
// Exit 1

#[test]
fn simulated_degraded_exits_1_naming_resources() {
    let sim = sim(vec![with_outcome(Outcome::Degraded)]);
    let out = run(&sim, &["--app", "sensor", "--revision", NEW, "--sync"]);
    out.assert_failed(
        1,
        &exact(
            "sensor: Degraded on 4e5b2f1: Deployment/sensors/sensor Degraded: Deployment \"sensor\" exceeded its progress deadline",
        ),
    );
    assert!(out.took < Duration::from_secs(30));
    assert!(out.dotenv().is_none(), "no dotenv on failure");
    assert_eq!(out.row("sensor")[1], "FAILED");
}

#[test]
fn simulated_sync_failed_exits_1() {
    let sim = sim(vec![with_outcome(Outcome::SyncFailed)]);
    let out = run(&sim, &["--app", "sensor", "--revision", NEW, "--sync"]);
    out.assert_failed(
        1,
        &exact(
            "sensor: sync operation Failed on 4e5b2f1: one or more objects failed to apply, reason: Deployment.apps \"sensor\" is invalid: spec.template.spec.containers[0].image: Invalid value: \"registry.example.com/sensor@sha256:zz\": invalid reference format; Deployment/sensors/sensor SyncFailed: Deployment.apps \"sensor\" is invalid: spec.template.spec.containers[0].image: Invalid value",
        ),
    );
    assert!(out.took < Duration::from_secs(30));
}

#[test]
fn simulated_sync_error_phase_exits_1() {
    let sim = sim(vec![with_outcome(Outcome::SyncError)]);
    let out = run(&sim, &["--app", "sensor", "--revision", NEW, "--sync"]);
    out.assert_failed(
        1,
        &exact(
            "sensor: sync operation Error on 4e5b2f1: ComparisonError: failed to generate manifest: rpc error: code = Unknown desc = kustomize build failed",
        ),
    );
    assert!(out.dotenv().is_none());
}

#[test]
fn simulated_one_degraded_app_stops_the_fleet_at_once() {
    let mut bad = SimApp::new("sensor-pi2");
    bad.outcome = Outcome::Degraded;
    let mut slow = SimApp::new("sensor-pi1");
    slow.outcome = Outcome::StuckProgressing;
    let sim = sim(vec![slow, bad]);
    let out = run_with(
        &sim.url(),
        &["--revision", NEW, "--sync", "--timeout", "60s"],
        &[
            ("ARGOCD_AUTH_TOKEN", TOKEN),
            ("ARGOCD_APP", "sensor-pi1,sensor-pi2"),
        ],
    );
    out.assert_failed(
        1,
        &exact(
            "sensor-pi2: Degraded on 4e5b2f1: Deployment/sensors/sensor Degraded: Deployment \"sensor\" exceeded its progress deadline",
        ),
    );
    assert!(
        out.took < Duration::from_secs(30),
        "did not wait for the stuck app: {:?}",
        out.took
    );
    assert_eq!(out.row("sensor-pi1")[1], "stopped");
    assert_eq!(out.row("sensor-pi2")[1], "FAILED");
}

// ---------------------------------------------------------------------------
// Exit 2

#[test]
fn usage_errors_exit_2_before_any_request() {
    let sim = sim(vec![SimApp::new("sensor")]);
    let tok = ("ARGOCD_AUTH_TOKEN", TOKEN);
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 7] = [
        (
            &["--revision", NEW],
            &[tok],
            "no application: give --app NAME \\(ARGOCD_APP\\) or --selector LABELS \\(ARGOCD_SELECTOR\\)",
        ),
        (
            &["--app", "a"],
            &[],
            "no credentials: set ARGOCD_AUTH_TOKEN \\(--auth-token\\), or --username and --password \\(ARGOCD_USERNAME/ARGOCD_PASSWORD\\)",
        ),
        (
            &["--app", "a", "--username", "ci-bot"],
            &[],
            "no credentials: .*",
        ),
        (
            &["--app", "a", "--timeout", "5 minutes"],
            &[tok],
            "--timeout: \"5 minutes\" is not a duration: use e\\.g\\. 90s, 5m, 1h30m, 500ms",
        ),
        (
            &["--app", "a", "--poll-interval", "10ms"],
            &[tok],
            "--poll-interval must be at least 100ms",
        ),
        (
            &["--app", "a", "--revision", "4e5b 2f1"],
            &[tok],
            "--revision \"4e5b 2f1\" contains whitespace",
        ),
        (
            &["--app", "a"],
            &[tok, ("SSL_CERT_FILE", "/nonexistent/ca.pem")],
            "SSL_CERT_FILE names /nonexistent/ca\\.pem, which cannot be read: .*",
        ),
    ];
    for (args, env, cause) in cases {
        let out = run_with(&sim.url(), args, env);
        out.assert_failed(2, cause);
    }
    for server in ["ftp://argo", "https://admin:hunter22@argo"] {
        let out = run_with(server, &["--app", "a"], &[tok]);
        assert_eq!(out.code, 2, "{server}");
        assert!(!out.stderr.contains("hunter22"), "{}", out.stderr);
    }
    assert!(
        sim.requests().is_empty(),
        "a request was sent before exit 2"
    );

    // Booleans are clap's: a bad one is exit 2 with clap's message.
    for (args, env) in [
        (&["--app", "a", "--sync=maybe"][..], &[tok][..]),
        (&["--app", "a"][..], &[tok, ("ARGOCD_SYNC", "maybe")][..]),
    ] {
        let out = run_with(&sim.url(), args, env);
        assert_eq!(out.code, 2);
        assert!(
            out.stderr.contains("expected true or false"),
            "{}",
            out.stderr
        );
    }
    // … and the flag takes the forms GitLab users write.
    let out = run_with(
        &sim.url(),
        &["--revision", NEW, "--dotenv", ""],
        &[tok, ("ARGOCD_APP", "sensor"), ("ARGOCD_SYNC", "yes")],
    );
    out.assert_success();
    assert_eq!(sim.sync_bodies().len(), 1);
}

#[test]
fn every_flag_reads_an_environment_variable() {
    let missing = kit::cli::flags_without_env(&kit::cli::command::<notify_argocd::Args>());
    assert!(missing.is_empty(), "{missing:?}");
}

#[test]
fn help_is_stable_and_hides_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = Job::new(env!("CARGO_BIN_EXE_notify-argocd"), dir.path())
        .arg("--help")
        .env("ARGOCD_AUTH_TOKEN", TOKEN)
        .env("ARGOCD_PASSWORD", PASSWORD)
        .run();
    out.assert_success();
    out.assert_no_secret(&SECRETS);
    assert!(out.stdout.contains("[env: ARGOCD_AUTH_TOKEN]"));
    let help = Job::new(env!("CARGO_BIN_EXE_notify-argocd"), dir.path())
        .arg("--help")
        .run();
    insta::assert_snapshot!("help", help.stdout);
}

// ---------------------------------------------------------------------------
// Exit 3

#[test]
fn simulated_missing_app_exits_3() {
    let sim = sim(vec![SimApp::new("sensor")]);
    let out = run(&sim, &["--app", "ghost", "--revision", NEW]);
    out.assert_failed(
        3,
        &exact(&format!(
            "refreshing app ghost: Argo CD answered 404 to GET {}/api/v1/applications/ghost?refresh=normal: applications.argoproj.io \"ghost\" not found (check the app name, --app-namespace and --project)",
            sim.url()
        )),
    );
    assert!(out.took < Duration::from_secs(20));
}

#[test]
fn simulated_forbidden_app_exits_3() {
    let mut app = SimApp::new("sensor");
    app.forbidden = true;
    let sim = sim(vec![app]);
    let out = run(&sim, &["--app", "sensor", "--sync"]);
    out.assert_failed(
        3,
        &exact(&format!(
            "refreshing app sensor: Argo CD answered 403 to GET {}/api/v1/applications/sensor?refresh=normal: permission denied: applications, get, default/sensor, sub: ci-bot, iat: 2026-11-26T06:00:00Z (the account lacks this permission in Argo CD's RBAC; Argo CD also answers 403 for an app that does not exist when the account may not list it)",
            sim.url()
        )),
    );
    assert!(out.took < Duration::from_secs(20), "{:?}", out.took);
}

#[test]
fn simulated_wrong_token_exits_3() {
    let sim = sim(vec![SimApp::new("sensor")]);
    let out = run_with(
        &sim.url(),
        &["--app", "sensor"],
        &[("ARGOCD_AUTH_TOKEN", WRONG_TOKEN)],
    );
    out.assert_failed(
        3,
        &exact(&format!(
            "refreshing app sensor: Argo CD answered 401 to GET {}/api/v1/applications/sensor?refresh=normal: invalid session: token signature is invalid (check ARGOCD_AUTH_TOKEN, or --username/--password; tokens expire)",
            sim.url()
        )),
    );
    assert!(out.took < Duration::from_secs(20));
}

#[test]
fn simulated_malformed_application_exits_3() {
    let mut app = SimApp::new("sensor");
    app.malformed = true;
    let sim = sim(vec![app]);
    let out = run(&sim, &["--app", "sensor", "--revision", NEW, "--sync"]);
    out.assert_failed(
        3,
        &format!(
            "{}line 1 column \\d+",
            exact(&format!(
                "refreshing app sensor: unexpected answer from Argo CD at {}/api/v1/applications/sensor?refresh=normal: invalid type: string \"OutOfSync\", expected struct SyncStatus at ",
                sim.url()
            ))
        ),
    );
    assert!(sim.sync_bodies().is_empty(), "no sync on an unreadable app");
    assert!(out.dotenv().is_none());
}

#[test]
fn simulated_session_login_with_username_and_password() {
    let mut cfg = SimConfig::new(TOKEN, vec![SimApp::new("sensor")]);
    cfg.users = vec![("ci-bot".into(), PASSWORD.into())];
    let sim = ArgoSim::start(cfg);
    let out = run_with(
        &sim.url(),
        &[
            "--app",
            "sensor",
            "--revision",
            NEW,
            "--sync",
            "--username",
            "ci-bot",
        ],
        &[("ARGOCD_PASSWORD", PASSWORD)],
    );
    out.assert_success();
    assert_eq!(sim.requests()[0].path, "/api/v1/session");
    assert!(out.took < Duration::from_secs(30), "{:?}", out.took);

    let out = run_with(
        &sim.url(),
        &["--app", "sensor", "--username", "ci-bot"],
        &[("ARGOCD_PASSWORD", WRONG_TOKEN)],
    );
    out.assert_failed(
        3,
        &exact(&format!(
            "logging in to Argo CD as ci-bot: Argo CD answered 401 to POST {}/api/v1/session: Invalid username or password (check ARGOCD_AUTH_TOKEN, or --username/--password; tokens expire)",
            sim.url()
        )),
    );
}

#[test]
fn simulated_fleet_by_selector_and_repeated_app() {
    let apps = vec![
        SimApp::new("sensor-pi1").label("fleet", "pi"),
        SimApp::new("sensor-pi2").label("fleet", "pi"),
        SimApp::new("dashboard").label("fleet", "cloud"),
        SimApp::new("gateway").label("fleet", "edge"),
    ];
    let sim = sim(apps);
    let out = run(
        &sim,
        &[
            "--selector",
            "fleet=pi",
            "--app",
            "gateway",
            "--revision",
            NEW,
            "--sync",
        ],
    );
    out.assert_success();
    let mut synced: Vec<String> = sim
        .sync_bodies()
        .iter()
        .map(|b| b["name"].as_str().unwrap_or_default().to_string())
        .collect();
    synced.sort();
    assert_eq!(synced, ["gateway", "sensor-pi1", "sensor-pi2"]);
    let list = sim
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/v1/applications")
        .unwrap();
    assert_eq!(
        list.query.get("selector").map(String::as_str),
        Some("fleet=pi")
    );
    for app in ["gateway", "sensor-pi1", "sensor-pi2"] {
        assert_eq!(out.row(app)[1], "deployed");
    }
    assert!(
        out.dotenv()
            .unwrap()
            .contains("ARGOCD_APPS=gateway,sensor-pi1,sensor-pi2\n")
    );

    let out = run(&sim, &["--selector", "fleet=mars", "--revision", NEW]);
    out.assert_failed(
        3,
        &exact("no Argo CD application matches --selector \"fleet=mars\""),
    );
}

#[test]
fn unreachable_server_exits_3() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run_with(
        &format!("http://127.0.0.1:{port}"),
        &["--app", "sensor"],
        &[("ARGOCD_AUTH_TOKEN", TOKEN)],
    );
    out.assert_failed(
        3,
        &format!(
            "{}.*[Cc]onnection refused.*",
            exact(&format!(
                "refreshing app sensor: cannot reach Argo CD at http://127.0.0.1:{port}/api/v1/applications/sensor?refresh=normal: "
            ))
        ),
    );
    // Bounded retries (5 tries with backoff), not the 5 min timeout.
    assert!(out.took < Duration::from_secs(60), "{:?}", out.took);
}

#[test]
fn simulated_app_deleted_while_waiting_exits_3() {
    let sim = sim(vec![with_outcome(Outcome::StuckProgressing)]);
    let server = sim.url();
    let waiter = std::thread::spawn(move || {
        run_with(
            &server,
            &["--app", "sensor", "--revision", NEW, "--sync"],
            &[("ARGOCD_AUTH_TOKEN", TOKEN)],
        )
    });
    // Delete once the job follows the stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sim
        .requests()
        .iter()
        .any(|r| r.is_stream() && r.status == 200)
    {
        assert!(Instant::now() < deadline, "the job never opened the stream");
        std::thread::sleep(Duration::from_millis(20));
    }
    sim.delete("sensor");
    let out = waiter.join().unwrap();
    out.assert_failed(
        3,
        &exact("sensor: the Application was deleted while waiting"),
    );
    assert!(out.took < Duration::from_secs(30), "{:?}", out.took);
}

// ---------------------------------------------------------------------------
// Exit 4

#[test]
fn simulated_stuck_progressing_times_out_with_last_state() {
    let sim = sim(vec![with_outcome(Outcome::StuckProgressing)]);
    let out = run(
        &sim,
        &[
            "--app",
            "sensor",
            "--revision",
            NEW,
            "--sync",
            "--timeout",
            "3s",
        ],
    );
    out.assert_failed(
        4,
        &exact(
            "timed out after 3.0s (--timeout); last state: sensor: sync=Synced health=Progressing operation=Succeeded revision=4e5b2f1, waiting for health Progressing to become Healthy: Waiting for rollout to finish: 1 old replicas are pending termination...",
        ),
    );
    assert!(
        out.took >= Duration::from_secs(3) && out.took < Duration::from_secs(20),
        "{:?}",
        out.took
    );
    assert_eq!(out.row("sensor")[1], "TIMEOUT");
}

/// Health Argo CD reports after a successful sync that is neither Healthy
/// nor Degraded keeps the job waiting: exit 4 naming the health.
#[test]
fn simulated_suspended_missing_and_unknown_health_time_out_naming_it() {
    for (outcome, state) in [
        (
            Outcome::Suspended,
            "sync=Synced health=Suspended operation=Succeeded revision=4e5b2f1, waiting for health Suspended to become Healthy: Deployment is paused",
        ),
        (
            Outcome::Missing,
            "sync=OutOfSync health=Missing operation=Succeeded revision=4e5b2f1, waiting for sync OutOfSync to become Synced",
        ),
        (
            Outcome::Unknown,
            "sync=Synced health=Unknown operation=Succeeded revision=4e5b2f1, waiting for health Unknown to become Healthy: failed to get resource health for \"Deployment\" with name \"sensor\": the server is currently unable to handle the request",
        ),
    ] {
        let sim = sim(vec![with_outcome(outcome)]);
        let out = run(
            &sim,
            &[
                "--app",
                "sensor",
                "--revision",
                NEW,
                "--sync",
                "--timeout",
                "3s",
            ],
        );
        out.assert_failed(
            4,
            &exact(&format!(
                "timed out after 3.0s (--timeout); last state: sensor: {state}"
            )),
        );
        assert!(out.dotenv().is_none());
    }
}

#[test]
fn simulated_manual_app_without_sync_times_out_with_a_hint() {
    // Nothing will deploy a manual-sync app unless asked: the job does not
    // pass on the old revision, and says what is missing.
    let sim = sim(vec![SimApp::new("sensor")]);
    let out = run(
        &sim,
        &["--app", "sensor", "--revision", NEW, "--timeout", "2s"],
    );
    out.assert_failed(
        4,
        &exact(
            "timed out after 2.0s (--timeout); last state: sensor: sync=OutOfSync health=Healthy operation=Succeeded revision=4e5b2f1, waiting for sync OutOfSync to become Synced (the app has no automated sync: add --sync)",
        ),
    );
    assert!(sim.sync_bodies().is_empty());
}

// ---------------------------------------------------------------------------
// Transport, stream and TLS behaviour

#[test]
fn simulated_503_then_recovery() {
    let mut cfg = SimConfig::new(TOKEN, vec![SimApp::new("sensor")]);
    cfg.unavailable_first = 3;
    let sim = ArgoSim::start(cfg);
    let out = run(&sim, &["--app", "sensor", "--revision", NEW, "--sync"]);
    out.assert_success();
    let statuses: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(&statuses[..4], &[503, 503, 503, 200], "{statuses:?}");
    assert!(
        out.stderr.contains("503 Service Unavailable"),
        "retries are logged"
    );
    assert!(out.took < Duration::from_secs(30), "{:?}", out.took);
}

#[test]
fn simulated_operation_in_progress_is_retried() {
    let mut app = SimApp::new("sensor");
    app.busy_for = Some(Duration::from_secs(2));
    let sim = sim(vec![app]);
    let out = run(&sim, &["--app", "sensor", "--revision", NEW, "--sync"]);
    out.assert_success();
    let syncs: Vec<_> = sim.requests().into_iter().filter(|r| r.is_sync()).collect();
    assert!(syncs.len() >= 2, "{syncs:?}");
    assert_eq!(syncs[0].code, Some(9));
    assert_eq!(syncs.last().unwrap().status, 200);
    assert!(out.took >= Duration::from_secs(2));
    assert_eq!(
        out.stderr
            .matches("another operation is already in progress")
            .count(),
        1,
        "said once"
    );
}

#[test]
fn simulated_stream_closed_mid_wait_recovers() {
    let mut app = SimApp::new("sensor");
    app.progressing_for = Duration::from_secs(2);
    let mut cfg = SimConfig::new(TOKEN, vec![app]);
    cfg.stream = StreamMode::CloseAfterFirstEvent;
    let sim = ArgoSim::start(cfg);
    let out = run(
        &sim,
        &[
            "--app",
            "sensor",
            "--revision",
            NEW,
            "--sync",
            "--poll-interval",
            "300ms",
        ],
    );
    out.assert_success();
    assert!(out.stderr.contains("watch stream"), "the break is logged");
    assert!(out.took < Duration::from_secs(30), "{:?}", out.took);
    let streams = sim.requests().iter().filter(|r| r.is_stream()).count();
    assert!(streams >= 2, "reconnected: {streams}");
    assert!(out.exited >= sim.transition_at("sensor", "health=Healthy").unwrap());
}

#[test]
fn simulated_stream_unavailable_falls_back_to_polling() {
    let mut app = SimApp::new("sensor");
    app.progressing_for = Duration::from_secs(1);
    let mut cfg = SimConfig::new(TOKEN, vec![app]);
    cfg.stream = StreamMode::Unavailable;
    let sim = ArgoSim::start(cfg);
    let out = run(
        &sim,
        &[
            "--app",
            "sensor",
            "--revision",
            NEW,
            "--sync",
            "--poll-interval",
            "200ms",
        ],
    );
    out.assert_success();
    assert!(
        out.stderr
            .contains("sensor: watch stream unavailable (HTTP 404: Not Found); polling every 0.2s"),
        "{}",
        out.stderr
    );
    assert_eq!(
        sim.requests().iter().filter(|r| r.is_stream()).count(),
        1,
        "asked once, then polled"
    );
}

#[test]
fn simulated_stream_as_newline_delimited_json() {
    // Asked for server-sent events, the server answers grpc-gateway's
    // newline-delimited JSON instead: read just the same.
    let mut app = SimApp::new("sensor");
    app.progressing_for = Duration::from_secs(1);
    let mut cfg = SimConfig::new(TOKEN, vec![app]);
    cfg.ndjson_only = true;
    let sim = ArgoSim::start(cfg);
    let out = run(
        &sim,
        &[
            "--app",
            "sensor",
            "--revision",
            NEW,
            "--sync",
            "--poll-interval",
            "30s",
        ],
    );
    out.assert_success();
    let reqs = sim.requests();
    let stream = reqs.iter().find(|r| r.is_stream()).expect("stream opened");
    assert!(stream.accept.contains("text/event-stream"));
    // Detected from the stream, not from a 30 s poll.
    assert!(out.took < Duration::from_secs(15), "{:?}", out.took);
    assert_eq!(reqs.iter().filter(|r| r.is_stream()).count(), 1);
}

#[test]
fn simulated_insecure_warns() {
    let sim = sim(vec![SimApp::new("sensor")]);
    let out = run(
        &sim,
        &[
            "--app",
            "sensor",
            "--revision",
            NEW,
            "--sync",
            "--insecure",
            "--dotenv",
            "",
        ],
    );
    out.assert_success();
    assert!(
        out.stderr.contains("warning: --insecure: TLS certificates"),
        "{}",
        out.stderr
    );
    assert!(out.dotenv().is_none(), "--dotenv '' writes none");
}

fn tls_sim(dir: &std::path::Path) -> (ArgoSim, String) {
    // A test CA and server certificate from rcgen (harness::tls).
    let (id, ca) = harness::tls::self_signed(dir);
    let mut cfg = SimConfig::new(TOKEN, vec![SimApp::new("sensor")]);
    cfg.tls = Some(id);
    (ArgoSim::start(cfg), ca.to_string_lossy().into_owned())
}

#[test]
fn simulated_https_with_a_custom_ca() {
    let certs = tempfile::tempdir().unwrap();
    let (sim, ca) = tls_sim(certs.path());
    assert!(sim.url().starts_with("https://"));
    let args = ["--app", "sensor", "--revision", NEW, "--sync"];
    let out = run_with(
        &sim.url(),
        &args,
        &[("ARGOCD_AUTH_TOKEN", TOKEN), ("SSL_CERT_FILE", &ca)],
    );
    out.assert_success();
    assert!(
        !out.stderr.contains("warning"),
        "no warning over verified TLS: {}",
        out.stderr
    );
    assert!(out.took < Duration::from_secs(30), "{:?}", out.took);
    let pem = std::fs::read_to_string(&ca).unwrap();
    let out = run_with(
        &sim.url(),
        &args,
        &[
            ("ARGOCD_AUTH_TOKEN", TOKEN),
            ("ADDITIONAL_CA_CERT_BUNDLE", &pem),
        ],
    );
    out.assert_success();
}

#[test]
fn simulated_https_untrusted_exits_3_and_insecure_warns() {
    let certs = tempfile::tempdir().unwrap();
    let (sim, _) = tls_sim(certs.path());
    let args = ["--app", "sensor", "--revision", NEW, "--sync"];
    let out = run_with(&sim.url(), &args, &[("ARGOCD_AUTH_TOKEN", TOKEN)]);
    out.assert_failed(
        3,
        &format!(
            "{}.*certificate.*",
            exact(&format!(
                "refreshing app sensor: cannot reach Argo CD at {}/api/v1/applications/sensor?refresh=normal: ",
                sim.url()
            ))
        ),
    );
    assert!(out.took < Duration::from_secs(60), "{:?}", out.took);
    assert!(sim.sync_bodies().is_empty());

    let mut insecure = args.to_vec();
    insecure.push("--insecure");
    let out = run_with(&sim.url(), &insecure, &[("ARGOCD_AUTH_TOKEN", TOKEN)]);
    out.assert_success();
    assert!(out.stderr.contains("warning: --insecure"), "{}", out.stderr);
}

#[test]
fn simulated_app_namespace_project_and_hard_refresh() {
    let mut app = SimApp::new("sensor");
    app.namespace = "team-iot".into();
    app.project = "pi-fleet".into();
    let sim = sim(vec![app]);
    let args = [
        "--app",
        "sensor",
        "--revision",
        NEW,
        "--sync",
        "--hard-refresh",
    ];
    let ns = [
        &args[..],
        &["--app-namespace", "team-iot", "--project", "pi-fleet"],
    ]
    .concat();
    let out = run(&sim, &ns);
    out.assert_success();
    let first = &sim.requests()[0];
    assert_eq!(first.query.get("refresh").map(String::as_str), Some("hard"));
    assert_eq!(
        first.query.get("appNamespace").map(String::as_str),
        Some("team-iot")
    );
    assert_eq!(
        first.query.get("project").map(String::as_str),
        Some("pi-fleet")
    );
    assert_eq!(
        sim.sync_bodies(),
        [json!({"name": "sensor", "prune": false, "revision": NEW,
                "appNamespace": "team-iot", "project": "pi-fleet"})]
    );
    assert!(
        out.dotenv()
            .unwrap()
            .contains("/applications/team-iot/sensor\n")
    );

    // The same app looked up in another project is not found.
    let wrong = [
        &args[..],
        &["--app-namespace", "team-iot", "--project", "other"],
    ]
    .concat();
    let out = run(&sim, &wrong);
    out.assert_failed(
        3,
        &exact(&format!(
            "refreshing app sensor: Argo CD answered 404 to GET {}/api/v1/applications/sensor?refresh=hard&appNamespace=team-iot&project=other: applications.argoproj.io \"sensor\" not found (check the app name, --app-namespace and --project)",
            sim.url()
        )),
    );
}
