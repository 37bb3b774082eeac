//! Benchmark driver for bench/notify-argocd/run.sh (uses the Argo CD API
//! simulator from the test harness; Argo CD itself cannot run here).
//!
//! `cargo run --release -p notify-argocd --example bench -- BIN [PEER_SCRIPT]`
//!
//! 1. Detection latency: the simulator flips the app to Healthy at a
//!    recorded instant; the time until the process exits is measured, over
//!    BENCH_RUNS runs (default 20), for notify-argocd streaming
//!    (`--watch auto`), polling (`--watch poll`, default 3 s interval) and the
//!    peer (`argocd app wait` re-enacted with curl + jq).
//! 2. Requests per minute while waiting: an app stuck Progressing, for
//!    BENCH_IDLE_SECS (default 150) seconds, streaming and polling.
//! 3. Correctness: the app stays Synced+Healthy on the OLD revision for 3 s;
//!    whether each waiter passes before the new revision is deployed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::argocd_sim::{ArgoSim, Outcome, SimApp, SimConfig};

const TOKEN: &str = "bench-token-0123456789";
const NEW: &str = "4e5b2f1c9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs a command to completion; returns (exit code, exit instant).
fn run(mut cmd: Command) -> (i32, Instant) {
    cmd.env("ARGOCD_AUTH_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .stdin(Stdio::null());
    let mut child = cmd.spawn().expect("spawn");
    let status = child.wait().expect("wait");
    (status.code().unwrap_or(-1), Instant::now())
}

fn job(bin: &str, sim: &ArgoSim, extra: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args([
        "--server",
        &sim.url(),
        "--app",
        "sensor",
        "--revision",
        NEW,
        "--sync",
        "--dotenv",
        "",
    ]);
    c.args(extra);
    c
}

fn peer(script: &str, sim: &ArgoSim) -> Command {
    let mut c = Command::new(script);
    c.args([&sim.url(), "sensor", "sync"]);
    c
}

fn healthy_app() -> SimApp {
    let mut app = SimApp::new("sensor");
    // Long enough for every waiter to be settled in its loop before the
    // flip, and at a random point of a poll interval (uniform over 3 s).
    app.progressing_for = Duration::from_millis(2000 + fastrand::u64(0..3000));
    app
}

fn stats(mut ms: Vec<f64>) -> (f64, f64, f64, f64) {
    ms.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    (ms[0], pct(0.5), pct(0.9), ms[ms.len() - 1])
}

fn latency(label: &str, runs: u64, make: &dyn Fn(&ArgoSim) -> Command) -> f64 {
    let mut ms = vec![];
    for _ in 0..runs {
        let sim = ArgoSim::start(SimConfig::new(TOKEN, vec![healthy_app()]));
        let (code, exited) = run(make(&sim));
        assert_eq!(code, 0, "{label} failed");
        let flip = sim
            .transition_at("sensor", "health=Healthy")
            .expect("flipped");
        ms.push(exited.saturating_duration_since(flip).as_secs_f64() * 1000.0);
    }
    let (min, med, p90, max) = stats(ms);
    println!("| {label} | {runs} | {min:.1} | {med:.1} | {p90:.1} | {max:.1} |");
    med
}

fn requests_per_minute(label: &str, bin: &str, idle: u64, extra: &[&str]) {
    let mut app = SimApp::new("sensor");
    app.outcome = Outcome::StuckProgressing;
    let sim = ArgoSim::start(SimConfig::new(TOKEN, vec![app]));
    let timeout = format!("{idle}s");
    let mut args = vec!["--timeout", &timeout];
    args.extend_from_slice(extra);
    let (code, exited) = run(job(bin, &sim, &args));
    assert_eq!(code, 4, "{label}: expected a timeout");
    let reqs = sim.requests();
    let after_sync = reqs
        .iter()
        .find(|r| r.is_sync())
        .map(|r| r.at)
        .expect("synced");
    let waiting: Vec<_> = reqs.iter().filter(|r| r.at > after_sync).collect();
    let span = exited.duration_since(after_sync).as_secs_f64();
    let streams = waiting.iter().filter(|r| r.is_stream()).count();
    // Steady state: after the first stream open (or the first poll).
    let settled = waiting.get(1).map_or(exited, |r| r.at);
    let steady = waiting.iter().filter(|r| r.at > settled).count();
    let steady_span = exited.duration_since(settled).as_secs_f64();
    println!(
        "| {label} | {span:.0} | {} | {streams} | {:.1} | {:.2} |",
        waiting.len(),
        waiting.len() as f64 * 60.0 / span,
        steady as f64 * 60.0 / steady_span
    );
}

fn early_pass(label: &str, cmd: &dyn Fn(&ArgoSim) -> Command) {
    let mut app = SimApp::new("sensor");
    app.auto_sync = true;
    app.head_visible_after = Duration::from_secs(3);
    let sim = ArgoSim::start(SimConfig::new(TOKEN, vec![app]));
    let (code, exited) = run(cmd(&sim));
    let deployed = sim.transition_at("sensor", "health=Healthy");
    let early = deployed.is_none_or(|d| exited < d);
    println!(
        "| {label} | {code} | {:.2} | {} |",
        exited.duration_since(sim.started()).as_secs_f64(),
        if early {
            "yes: passed on the OLD revision"
        } else {
            "no"
        }
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin = args.get(1).expect("usage: bench BIN [PEER_SCRIPT]").clone();
    let peer_script = args.get(2).cloned();
    let runs = env_num("BENCH_RUNS", 20);
    let idle = env_num("BENCH_IDLE_SECS", 150);

    println!(
        "## Detection latency (ms from the simulator's flip to Healthy until the process exited)\n"
    );
    println!("| waiter | runs | min | median | p90 | max |");
    println!("|---|---|---|---|---|---|");
    let stream = latency("notify-argocd, stream (`--watch auto`)", runs, &|s| {
        job(&bin, s, &[])
    });
    let poll = latency("notify-argocd, polling (`--watch poll`, 3 s)", runs, &|s| {
        job(&bin, s, &["--watch", "poll"])
    });
    let peer_med = peer_script.as_ref().map(|p| {
        latency(
            "peer: `argocd app wait` re-enacted (curl + jq, stream)",
            runs,
            &|s| peer(p, s),
        )
    });
    println!();
    println!(
        "median ratio polling/stream: {:.1}x",
        poll / stream.max(0.001)
    );
    if let Some(p) = peer_med {
        println!(
            "median ratio peer/notify-argocd stream: {:.2}x",
            p / stream.max(0.001)
        );
    }

    println!("\n## Requests while waiting (app stuck Progressing, after the sync request)\n");
    println!(
        "| waiter | seconds | requests | of which stream opens | requests/minute (all) | requests/minute (after the stream is open / first poll) |"
    );
    println!("|---|---|---|---|---|---|");
    requests_per_minute("notify-argocd, stream", &bin, idle, &[]);
    requests_per_minute(
        "notify-argocd, polling 3 s",
        &bin,
        idle,
        &["--watch", "poll"],
    );

    println!("\n## Synced+Healthy on the OLD revision for 3 s after the push (auto-sync app)\n");
    println!("| waiter | exit code | exited after (s) | passed early? |");
    println!("|---|---|---|---|");
    early_pass("notify-argocd --revision NEW", &|s| {
        let mut c = Command::new(&bin);
        c.args([
            "--server",
            &s.url(),
            "--app",
            "sensor",
            "--revision",
            NEW,
            "--dotenv",
            "",
        ]);
        c
    });
    if let Some(p) = &peer_script {
        early_pass("peer (`argocd app wait --sync --health`)", &|s| {
            let mut c = Command::new(p);
            c.args([&s.url(), "sensor"]);
            c
        });
    }
}
