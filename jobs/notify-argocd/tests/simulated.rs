//! The notify-argocd binary against the Argo CD API simulator
//! (`harness::argocd_sim`, which follows Argo CD's swagger spec): Argo CD
//! itself cannot run here (no Kubernetes), so every test that needs it says
//! `simulated` in its name.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::argocd_sim::{ArgoSim, Outcome, SimApp, SimConfig, StreamMode};

const TOKEN: &str = "argocd-api-token-Zx9s3cr3t";
const NEW: &str = "4e5b2f1c9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c";

struct Out {
    code: i32,
    stderr: String,
    stdout: String,
    took: Duration,
    exited: Instant,
    dir: tempfile::TempDir,
}

impl Out {
    fn dotenv(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("notify-argocd.env")).ok()
    }
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
    /// The one-line cause: the last line of stderr.
    fn cause(&self) -> String {
        self.stderr.lines().last().unwrap_or("").to_string()
    }
}

/// Kills the child if the test panics.
struct Guard(Option<Child>);
impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn run_with(server: &str, args: &[&str], env: &[(&str, &str)]) -> Out {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_notify-argocd"));
    cmd.env_clear()
        .current_dir(dir.path())
        .arg("--server")
        .arg(server)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let mut guard = Guard(Some(cmd.spawn().expect("spawn notify-argocd")));
    let child = guard.0.as_mut().unwrap();
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let to = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let te = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let deadline = start + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "notify-argocd did not exit within 120s"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let exited = Instant::now();
    guard.0 = None;
    let out = Out {
        code: status.code().unwrap_or(-1),
        stdout: to.join().unwrap(),
        stderr: te.join().unwrap(),
        took: exited - start,
        exited,
        dir,
    };
    eprintln!("--- exit {} after {:?}\n{}", out.code, out.took, out.stderr);
    for secret in [TOKEN, "wrong-token-9f8e7d6c", "pa55-w0rd-secret"] {
        assert!(
            !out.all().contains(secret),
            "a secret leaked into the output:\n{}",
            out.all()
        );
    }
    out
}

fn run(sim: &ArgoSim, args: &[&str]) -> Out {
    run_with(&sim.url(), args, &[("ARGOCD_AUTH_TOKEN", TOKEN)])
}

fn sim(apps: Vec<SimApp>) -> ArgoSim {
    ArgoSim::start(SimConfig::new(TOKEN, apps))
}

#[test]
fn simulated_sync_becomes_healthy() {
    let sim = sim(vec![SimApp::new("sensor")]);
    let out = run(
        &sim,
        &["--app", "sensor", "--revision", NEW, "--sync", "--prune"],
    );
    assert_eq!(out.code, 0);
    let bodies = sim.sync_bodies();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["revision"], NEW);
    assert_eq!(bodies[0]["prune"], true);
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
    assert!(out.stderr.contains("deployed"), "summary table");
    let env = out.dotenv().expect("dotenv written");
    assert!(
        env.contains(&format!(
            "ARGOCD_APP_URL={}/applications/argocd/sensor\n",
            sim.url()
        )),
        "{env}"
    );
    assert!(env.contains(&format!("DEPLOYED_REVISION={NEW}\n")), "{env}");
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
    assert_eq!(out.code, 0);
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
}

#[test]
fn simulated_degraded_exits_1_naming_resources() {
    let mut app = SimApp::new("sensor");
    app.outcome = Outcome::Degraded;
    let sim = sim(vec![app]);
    let out = run(&sim, &["--app", "sensor", "--revision", NEW, "--sync"]);
    assert_eq!(out.code, 1);
    let cause = out.cause();
    assert!(
        cause.starts_with("notify-argocd: error: sensor: Degraded on 4e5b2f1"),
        "{cause}"
    );
    assert!(cause.contains("Deployment/sensors/sensor Degraded: Deployment \"sensor\" exceeded its progress deadline"), "{cause}");
    assert!(out.took < Duration::from_secs(30));
    assert!(out.dotenv().is_none(), "no dotenv on failure");
}

#[test]
fn simulated_sync_failed_exits_1() {
    let mut app = SimApp::new("sensor");
    app.outcome = Outcome::SyncFailed;
    let sim = sim(vec![app]);
    let out = run(&sim, &["--app", "sensor", "--revision", NEW, "--sync"]);
    assert_eq!(out.code, 1);
    let cause = out.cause();
    assert!(
        cause.contains("sync operation Failed on 4e5b2f1: one or more objects failed to apply"),
        "{cause}"
    );
    assert!(
        cause.contains("Deployment/sensors/sensor SyncFailed"),
        "{cause}"
    );
    assert!(out.took < Duration::from_secs(30));
}

#[test]
fn simulated_stale_failed_operation_is_not_taken_for_this_one() {
    // The previous operation (old revision) Failed; the automated sync of the
    // new revision then succeeds.
    let mut app = SimApp::new("sensor");
    app.auto_sync = true;
    app.previous_operation_failed = true;
    app.head_visible_after = Duration::from_millis(800);
    let sim = sim(vec![app]);
    let out = run(&sim, &["--app", "sensor", "--revision", NEW]);
    assert_eq!(out.code, 0, "{}", out.cause());
}

#[test]
fn simulated_stuck_progressing_times_out_with_last_state() {
    let mut app = SimApp::new("sensor");
    app.outcome = Outcome::StuckProgressing;
    let sim = sim(vec![app]);
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
    assert_eq!(out.code, 4);
    assert!(
        out.took >= Duration::from_secs(3) && out.took < Duration::from_secs(20),
        "{:?}",
        out.took
    );
    let cause = out.cause();
    assert!(cause.contains("timed out after 3.0s"), "{cause}");
    assert!(
        cause.contains(
            "sensor: sync=Synced health=Progressing operation=Succeeded revision=4e5b2f1"
        ),
        "{cause}"
    );
    assert!(
        cause.contains("waiting for health Progressing to become Healthy"),
        "{cause}"
    );
    assert!(out.stderr.contains("TIMEOUT"), "table");
}

#[test]
fn simulated_503_then_recovery() {
    let mut cfg = SimConfig::new(TOKEN, vec![SimApp::new("sensor")]);
    cfg.unavailable_first = 3;
    let sim = ArgoSim::start(cfg);
    let out = run(&sim, &["--app", "sensor", "--revision", NEW, "--sync"]);
    assert_eq!(out.code, 0, "{}", out.cause());
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
    assert_eq!(out.code, 0, "{}", out.cause());
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
fn simulated_missing_app_exits_3() {
    let sim = sim(vec![SimApp::new("sensor")]);
    let out = run(&sim, &["--app", "ghost", "--revision", NEW]);
    assert_eq!(out.code, 3);
    let cause = out.cause();
    assert!(
        cause.contains(
            "refreshing app ghost: HTTP 404, NotFound: applications.argoproj.io \"ghost\" not found"
        ),
        "{cause}"
    );
    assert!(out.took < Duration::from_secs(20));
}

#[test]
fn simulated_forbidden_app_exits_3() {
    let mut app = SimApp::new("sensor");
    app.forbidden = true;
    let sim = sim(vec![app]);
    let out = run(&sim, &["--app", "sensor", "--sync"]);
    assert_eq!(out.code, 3);
    assert!(
        out.cause()
            .contains("HTTP 403, PermissionDenied: permission denied"),
        "{}",
        out.cause()
    );
    assert!(out.took < Duration::from_secs(20), "{:?}", out.took);
}

#[test]
fn simulated_wrong_token_exits_3() {
    let sim = sim(vec![SimApp::new("sensor")]);
    let out = run_with(
        &sim.url(),
        &["--app", "sensor"],
        &[("ARGOCD_AUTH_TOKEN", "wrong-token-9f8e7d6c")],
    );
    assert_eq!(out.code, 3);
    let cause = out.cause();
    assert!(
        cause.contains("HTTP 401, Unauthenticated: invalid session"),
        "{cause}"
    );
    assert!(cause.contains("ARGOCD_AUTH_TOKEN"), "{cause}");
    assert!(out.took < Duration::from_secs(20));
}

#[test]
fn simulated_session_login_with_username_and_password() {
    let mut cfg = SimConfig::new(TOKEN, vec![SimApp::new("sensor")]);
    cfg.users = vec![("ci-bot".into(), "pa55-w0rd-secret".into())];
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
        &[("ARGOCD_PASSWORD", "pa55-w0rd-secret")],
    );
    assert_eq!(out.code, 0, "{}", out.cause());
    assert_eq!(sim.requests()[0].path, "/api/v1/session");
    assert!(out.took < Duration::from_secs(30), "{:?}", out.took);
    // The session token is a secret too.
    assert!(!out.all().contains("sim-session"), "{}", out.all());

    let out = run_with(
        &sim.url(),
        &["--app", "sensor", "--username", "ci-bot"],
        &[("ARGOCD_PASSWORD", "wrong-token-9f8e7d6c")],
    );
    assert_eq!(out.code, 3);
    assert!(
        out.cause()
            .contains("logging in to Argo CD as ci-bot: HTTP 401"),
        "{}",
        out.cause()
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
    assert_eq!(out.code, 0, "{}", out.cause());
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
    assert_eq!(out.code, 0, "{}", out.cause());
    assert!(
        out.stderr.contains("watch stream unavailable (HTTP 404"),
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
fn simulated_auto_sync_app_is_synced_without_a_revision() {
    let mut app = SimApp::new("sensor");
    app.auto_sync = true;
    app.head_visible_after = Duration::from_millis(300);
    let sim = sim(vec![app]);
    let out = run(&sim, &["--app", "sensor", "--revision", NEW, "--sync"]);
    assert_eq!(out.code, 0, "{}", out.cause());
    for b in sim.sync_bodies() {
        assert!(
            b.get("revision").is_none(),
            "Argo CD refuses a revision for auto-sync apps: {b}"
        );
    }
    assert!(out.stderr.contains("automated sync is on"));
    assert!(out.took < Duration::from_secs(30), "{:?}", out.took);
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
    assert_eq!(out.code, 0, "{}", out.cause());
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
        assert!(
            out.stderr
                .lines()
                .any(|l| l.starts_with(app) && l.contains("deployed")),
            "table row for {app}"
        );
    }
    assert!(
        out.dotenv()
            .unwrap()
            .contains("ARGOCD_APPS=gateway,sensor-pi1,sensor-pi2\n")
    );

    let out = run(&sim, &["--selector", "fleet=mars", "--revision", NEW]);
    assert_eq!(out.code, 3);
    assert!(
        out.cause()
            .contains("no Argo CD application matches --selector \"fleet=mars\"")
    );
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
    assert_eq!(out.code, 1);
    assert!(
        out.cause().contains("sensor-pi2: Degraded"),
        "{}",
        out.cause()
    );
    assert!(
        out.took < Duration::from_secs(30),
        "did not wait for the stuck app: {:?}",
        out.took
    );
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("sensor-pi1") && l.contains("stopped"))
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
    assert_eq!(out.code, 3);
    assert!(
        out.cause().contains("cannot reach http://127.0.0.1:"),
        "{}",
        out.cause()
    );
    // Bounded retries (5 tries with backoff), not the 5 min timeout.
    assert!(out.took < Duration::from_secs(60), "{:?}", out.took);
}

#[test]
fn usage_errors_exit_2() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 4] = [
        (
            &["--revision", NEW],
            &[("ARGOCD_AUTH_TOKEN", TOKEN)],
            "no application",
        ),
        (&["--app", "a"], &[], "no credentials"),
        (
            &["--app", "a", "--timeout", "5 minutes"],
            &[("ARGOCD_AUTH_TOKEN", TOKEN)],
            "not a duration",
        ),
        (
            &["--app", "a", "--sync", "maybe"],
            &[("ARGOCD_AUTH_TOKEN", TOKEN)],
            "expected true or false",
        ),
    ];
    for (args, env, want) in cases {
        let out = run_with("http://127.0.0.1:9", args, env);
        assert_eq!(out.code, 2, "{args:?}");
        assert!(out.stderr.contains(want), "{args:?}: {}", out.stderr);
    }
}

#[test]
fn help_teaches_and_hides_the_token() {
    let out = Command::new(env!("CARGO_BIN_EXE_notify-argocd"))
        .arg("--help")
        .env("ARGOCD_AUTH_TOKEN", TOKEN)
        .env("ARGOCD_PASSWORD", "pa55-w0rd-secret")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for flag in [
        "--server",
        "--app",
        "--selector",
        "--revision",
        "--sync",
        "--prune",
        "--timeout",
        "--insecure",
        "--dotenv",
        "Exit codes",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    assert!(help.contains("[env: ARGOCD_AUTH_TOKEN]"));
    assert!(!help.contains(TOKEN) && !help.contains("pa55-w0rd-secret"));
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
    assert_eq!(out.code, 0);
    assert!(
        out.stderr.contains("warning: --insecure: TLS certificates"),
        "{}",
        out.stderr
    );
    assert!(out.dotenv().is_none(), "--dotenv '' writes none");
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
    assert_eq!(out.code, 0, "{}", out.cause());
    let reqs = sim.requests();
    let stream = reqs.iter().find(|r| r.is_stream()).expect("stream opened");
    assert!(stream.accept.contains("text/event-stream"));
    // Detected from the stream, not from a 30 s poll.
    assert!(out.took < Duration::from_secs(15), "{:?}", out.took);
    assert_eq!(reqs.iter().filter(|r| r.is_stream()).count(), 1);
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
    assert_eq!(out.code, 4);
    assert!(
        out.cause()
            .contains("the app has no automated sync: add --sync"),
        "{}",
        out.cause()
    );
    assert!(sim.sync_bodies().is_empty());
}

fn tls_sim(dir: &std::path::Path) -> (ArgoSim, String) {
    let (id, ca) = harness::argocd_sim::self_signed(dir);
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
    assert_eq!(out.code, 0, "{}", out.cause());
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
    assert_eq!(out.code, 0, "{}", out.cause());
}

#[test]
fn simulated_https_untrusted_exits_3_and_insecure_warns() {
    let certs = tempfile::tempdir().unwrap();
    let (sim, _) = tls_sim(certs.path());
    let args = ["--app", "sensor", "--revision", NEW, "--sync"];
    let out = run_with(&sim.url(), &args, &[("ARGOCD_AUTH_TOKEN", TOKEN)]);
    assert_eq!(out.code, 3);
    assert!(
        out.cause().contains("cannot reach https://127.0.0.1:"),
        "{}",
        out.cause()
    );
    assert!(
        out.cause().to_lowercase().contains("certificate"),
        "{}",
        out.cause()
    );
    assert!(out.took < Duration::from_secs(60), "{:?}", out.took);
    assert!(sim.sync_bodies().is_empty());

    let mut insecure = args.to_vec();
    insecure.push("--insecure");
    let out = run_with(&sim.url(), &insecure, &[("ARGOCD_AUTH_TOKEN", TOKEN)]);
    assert_eq!(out.code, 0, "{}", out.cause());
    assert!(out.stderr.contains("warning: --insecure"), "{}", out.stderr);
}

#[test]
fn simulated_app_deleted_while_waiting_exits_3() {
    let mut app = SimApp::new("sensor");
    app.outcome = Outcome::StuckProgressing;
    let sim = sim(vec![app]);
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
    assert_eq!(out.code, 3);
    assert!(
        out.cause()
            .contains("sensor: the Application was deleted while waiting"),
        "{}",
        out.cause()
    );
    assert!(out.took < Duration::from_secs(30), "{:?}", out.took);
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
    assert_eq!(out.code, 0, "{}", out.cause());
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
    let body = &sim.sync_bodies()[0];
    assert_eq!(
        (body["appNamespace"].as_str(), body["project"].as_str()),
        (Some("team-iot"), Some("pi-fleet"))
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
    assert_eq!(out.code, 3);
    assert!(out.cause().contains("HTTP 404"), "{}", out.cause());
}
