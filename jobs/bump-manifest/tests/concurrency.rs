//! 20 bump-manifest processes at once against one real git server, each
//! with its own tag and an increasing order key: every accepted commit
//! lands, history is linear, nothing is lost, the greatest key wins.

mod common;

use std::collections::BTreeSet;

use common::*;
use harness::git_server::GitServer;

#[test]
fn twenty_concurrent_processes_lose_nothing_and_never_go_backwards() {
    let srv = GitServer::start("bot", TOKEN);
    srv.create_repo("config", "main", &fixture());
    let n = 20;
    let children: Vec<_> = (1..=n)
        .map(|i| {
            let mut c = cmd();
            c.args([
                "--repo",
                &srv.url("config"),
                "--image",
                "acmeiot/sensor-app",
            ])
            .args([
                "--new-tag",
                &format!("1.{i}.0"),
                "--order-key",
                &i.to_string(),
            ])
            .args(["--max-attempts", "80", "--retry-delay-ms", "100"])
            .env("CONFIG_REPO_TOKEN", TOKEN)
            .env("CONFIG_REPO_TOKEN_USER", "bot")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
            (i, c.spawn().expect("spawn"))
        })
        .collect();
    let mut pushed = Vec::new();
    let mut refused = Vec::new();
    let mut rejected_pushes = 0;
    for (i, child) in children {
        let o = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        assert_eq!(o.status.code(), Some(0), "process {i} failed:\n{stderr}");
        assert!(!stderr.contains(TOKEN) && !stdout.contains(TOKEN));
        rejected_pushes += stderr.matches("push rejected").count();
        if stderr.contains("pushed ") {
            pushed.push((i, stdout.trim().to_string()));
        } else {
            assert!(
                stderr.contains("not going backwards"),
                "process {i}: neither pushed nor refused:\n{stderr}"
            );
            refused.push(i);
        }
    }
    let log = srv.log("config", "main");
    // Linear: every commit has exactly one parent, except the seed.
    assert!(
        log[..log.len() - 1]
            .iter()
            .all(|(_, parents)| *parents == 1),
        "{log:?}"
    );
    // Every accepted commit is in the history; nothing else is.
    assert_eq!(
        log.len(),
        pushed.len() + 1,
        "pushed {pushed:?}, log {log:?}"
    );
    let history: BTreeSet<&str> = log.iter().map(|(s, _)| s.as_str()).collect();
    for (i, sha) in &pushed {
        assert!(
            history.contains(sha.as_str()),
            "commit of process {i} ({sha}) lost"
        );
    }
    // Order keys only grow along the history (oldest first).
    let mut keys = Vec::new();
    for (sha, _) in log.iter().rev().skip(1) {
        let msg = srv.message("config", sha);
        let k: u32 = msg
            .lines()
            .find_map(|l| l.strip_prefix("Bump-Manifest-Order-Key: "))
            .expect("order key trailer")
            .parse()
            .unwrap();
        keys.push(k);
    }
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "order keys went backwards: {keys:?}"
    );
    // The greatest key is what the repo holds.
    assert_eq!(keys.last(), Some(&n));
    let state: serde_json::Value =
        serde_json::from_str(&srv.show("config", "main", ".bump-manifest/state.json")).unwrap();
    assert_eq!(
        state["images"]["docker.io/acmeiot/sensor-app"]["order_key"],
        n.to_string()
    );
    let broker = srv.show("config", "main", "apps/mqtt/broker.yaml");
    assert!(
        broker.contains(&format!("\"acmeiot/sensor-app:1.{n}.0\"")),
        "{broker}"
    );
    eprintln!(
        "pushed {}, refused {} (older than what had landed), {rejected_pushes} rejected pushes retried",
        pushed.len(),
        refused.len()
    );
}

#[test]
fn twenty_concurrent_processes_without_order_keys_all_land() {
    let srv = GitServer::start("bot", TOKEN);
    srv.create_repo("config", "main", &fixture());
    let n = 20;
    let children: Vec<_> = (1..=n)
        .map(|i| {
            let mut c = cmd();
            c.args([
                "--repo",
                &srv.url("config"),
                "--image",
                "acmeiot/sensor-app",
            ])
            .args(["--new-tag", &format!("2.{i}.0"), "--path", "apps/mqtt"])
            .args(["--max-attempts", "200", "--retry-delay-ms", "100"])
            .env("CONFIG_REPO_TOKEN", TOKEN)
            .env("CONFIG_REPO_TOKEN_USER", "bot")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
            (i, c.spawn().expect("spawn"))
        })
        .collect();
    let mut shas = Vec::new();
    for (i, child) in children {
        let o = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(0), "process {i} failed:\n{stderr}");
        assert!(stderr.contains("pushed "), "process {i}:\n{stderr}");
        shas.push(String::from_utf8_lossy(&o.stdout).trim().to_string());
    }
    let log = srv.log("config", "main");
    assert_eq!(log.len(), n + 1, "every one of the {n} commits landed");
    assert!(
        log[..n].iter().all(|(_, parents)| *parents == 1),
        "linear: {log:?}"
    );
    let history: BTreeSet<&str> = log.iter().map(|(s, _)| s.as_str()).collect();
    assert!(
        shas.iter().all(|s| history.contains(s.as_str())),
        "{shas:?} vs {log:?}"
    );
    // The last commit's tag is what the file holds.
    let top = srv.message("config", &log[0].0);
    let reference = top
        .lines()
        .find_map(|l| l.strip_prefix("Bump-Manifest-Reference: "))
        .unwrap();
    let tag = reference.rsplit(':').next().unwrap();
    let broker = srv.show("config", "main", "apps/mqtt/broker.yaml");
    assert!(
        broker.contains(&format!("\"acmeiot/sensor-app:{tag}\"")),
        "{broker}"
    );
}
