//! `--mode gitlab-api` and `--mode merge-request` against the GitLab API
//! simulator (real GitLab cannot run here), with the example config repo.

mod common;

use common::*;
use harness::gitlab_sim::GitLabSim;

const PROJECT: &str = "acme-iot/config-repo";

fn sim() -> GitLabSim {
    GitLabSim::start(TOKEN, PROJECT, "main", &GitLabSim::files_of(&fixture()))
}

fn api_cmd(sim: &GitLabSim, mode: &str, tag: &str, key: &str) -> std::process::Command {
    let mut c = cmd();
    c.env("CI_API_V4_URL", sim.api_url())
        .env(
            "CONFIG_REPO_URL",
            format!("{}/{PROJECT}.git", sim.base_url()),
        )
        .env("CONFIG_REPO_TOKEN", TOKEN)
        .env(
            "CI_PIPELINE_URL",
            "https://gitlab.example.com/acme-iot/sensor-app/-/pipelines/77",
        )
        .args([
            "--mode",
            mode,
            "--image",
            "acmeiot/sensor-app",
            "--new-tag",
            tag,
            "--new-digest",
            D1,
        ])
        .args(["--order-key", key]);
    c
}

fn posts(sim: &GitLabSim, suffix: &str) -> Vec<(String, String, String)> {
    let r = sim.repo.lock().unwrap();
    r.log
        .iter()
        .filter(|(m, p, _)| m != "GET" && m != "HEAD" && p.ends_with(suffix))
        .cloned()
        .collect()
}

#[test]
fn gitlab_api_mode_simulated_one_commit_with_every_file() {
    let sim = sim();
    let r = run(&mut api_cmd(&sim, "gitlab-api", "1.5.0", "10"));
    assert_eq!(r.code, 0, "{}", r.all());
    r.assert_no_secret(&[TOKEN]);
    let commits = posts(&sim, "/repository/commits");
    assert_eq!(commits.len(), 1, "one commits-API call");
    assert_eq!(commits[0].2, "PRIVATE-TOKEN");
    let repo = sim.repo.lock().unwrap();
    let hist = repo.history("main");
    assert_eq!(hist.len(), 2);
    assert_eq!(r.stdout.trim(), hist[0].id);
    assert!(
        hist[0].message.contains("Bump-Manifest-Order-Key: 10"),
        "{}",
        hist[0].message
    );
    // Same bytes as push mode would write: only the scalars changed.
    let before = &hist[1].files;
    let after = &hist[0].files;
    let changed: Vec<&String> = after
        .keys()
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert_eq!(changed.len(), 8, "7 manifests + state: {changed:?}");
    let broker = &after["apps/mqtt/broker.yaml"];
    assert_eq!(
        broker,
        &before["apps/mqtt/broker.yaml"].replace(
            "acmeiot/sensor-app:1.4.0",
            &format!("acmeiot/sensor-app:1.5.0@{D1}")
        )
    );
    assert!(after[".bump-manifest/state.json"].contains("\"order_key\": \"10\""));
}

#[test]
fn gitlab_api_mode_simulated_stale_last_commit_id_is_retried() {
    let sim = sim();
    // Another pipeline changes a file we edit between our read and our commit.
    let other = "apps/sensor-app/overlays/pi-lab/kustomization.yaml";
    let changed_by_other = {
        let r = sim.repo.lock().unwrap();
        r.file("main", other)
            .unwrap()
            .replace("value: 192Mi", "value: 256Mi")
    };
    sim.repo.lock().unwrap().race = vec![(other.to_string(), changed_by_other)];
    let r = run(&mut api_cmd(&sim, "gitlab-api", "1.5.0", "10"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("changed since"), "{}", r.stderr);
    assert_eq!(
        posts(&sim, "/repository/commits").len(),
        2,
        "one stale, one accepted"
    );
    let repo = sim.repo.lock().unwrap();
    let lab = repo.file("main", other).unwrap();
    assert!(
        lab.contains("value: 256Mi"),
        "the concurrent change survives:\n{lab}"
    );
    assert!(lab.contains("newTag: \"1.5.0\""), "{lab}");
    assert_eq!(repo.history("main").len(), 3);
}

#[test]
fn gitlab_api_mode_simulated_job_token_header_idempotence_and_order() {
    let sim = sim();
    let mut c = api_cmd(&sim, "gitlab-api", "1.5.0", "10");
    c.env_remove("CONFIG_REPO_TOKEN").env("CI_JOB_TOKEN", TOKEN);
    let r = run(&mut c);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(posts(&sim, "/repository/commits")[0].2, "JOB-TOKEN");
    // Again: already up to date, no second commit.
    let r = run(&mut c);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("already up to date"), "{}", r.stderr);
    // Older key: refused.
    let r = run(&mut api_cmd(&sim, "gitlab-api", "1.4.9", "9"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("not going backwards"), "{}", r.stderr);
    assert_eq!(posts(&sim, "/repository/commits").len(), 1);
}

#[test]
fn gitlab_api_mode_simulated_bad_token_is_exit_3_without_leak() {
    let sim = sim();
    let mut c = api_cmd(&sim, "gitlab-api", "1.5.0", "10");
    c.env("CONFIG_REPO_TOKEN", "glpat-Sup3rS3cretTok3n-nope");
    let r = run(&mut c);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(r.stderr.contains("401"), "{}", r.stderr);
    assert!(!r.all().contains("Tok3n-nope"));
    r.assert_no_secret(&[TOKEN]);
}

#[test]
fn merge_request_mode_simulated_opens_reuses_and_auto_merges_after_405() {
    let sim = sim();
    sim.repo.lock().unwrap().early_merge_405 = 2;
    let scan = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        scan.path(),
        "0 critical, 1 high (CVE-2026-0001, fixed in 1.5.1)",
    )
    .unwrap();
    let mut c = api_cmd(&sim, "merge-request", "1.5.0", "10");
    c.args([
        "--auto-merge",
        "--scan-summary",
        scan.path().to_str().unwrap(),
    ]);
    let r = run(&mut c);
    assert_eq!(r.code, 0, "{}", r.all());
    r.assert_no_secret(&[TOKEN]);
    assert!(r.stderr.contains("405"), "{}", r.stderr);
    {
        let repo = sim.repo.lock().unwrap();
        assert_eq!(repo.mrs.len(), 1);
        let mr = &repo.mrs[0];
        assert_eq!(mr.source_branch, "bump-manifest/acmeiot-sensor-app-main");
        assert_eq!(mr.target_branch, "main");
        assert!(mr.auto_merge, "merge when pipeline succeeds is set");
        assert!(
            mr.title.contains("acmeiot/sensor-app") && mr.title.contains("1.5.0"),
            "{}",
            mr.title
        );
        assert!(
            mr.description.contains("1.4.1"),
            "old reference named: {}",
            mr.description
        );
        assert!(
            mr.description.contains("pipelines/77"),
            "{}",
            mr.description
        );
        assert!(
            mr.description.contains("CVE-2026-0001"),
            "{}",
            mr.description
        );
        assert!(
            r.stdout
                .trim()
                .ends_with("/acme-iot/config-repo/-/merge_requests/1"),
            "{}",
            r.stdout
        );
        // main untouched until the MR merges.
        assert_eq!(repo.history("main").len(), 1);
        assert_eq!(repo.history(&mr.source_branch).len(), 2);
    }
    // A newer pipeline reuses the open MR and updates its branch.
    let r = run(&mut api_cmd(&sim, "merge-request", "1.6.0", "11"));
    assert_eq!(r.code, 0, "{}", r.all());
    let repo = sim.repo.lock().unwrap();
    assert_eq!(repo.mrs.len(), 1, "reused");
    assert!(repo.mrs[0].title.contains("1.6.0"), "{}", repo.mrs[0].title);
    let b = "bump-manifest/acmeiot-sensor-app-main";
    assert_eq!(repo.history(b).len(), 3);
    assert!(
        repo.file(b, "apps/mqtt/broker.yaml")
            .unwrap()
            .contains("sensor-app:1.6.0@")
    );
}

#[test]
fn merge_request_mode_simulated_409_from_a_racing_job_reuses_its_mr() {
    let sim = sim();
    sim.repo.lock().unwrap().mr_race = true;
    let r = run(&mut api_cmd(&sim, "merge-request", "1.5.0", "10"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
    let repo = sim.repo.lock().unwrap();
    assert_eq!(repo.mrs.len(), 1, "no second MR");
    assert!(
        r.stdout.trim().ends_with("/merge_requests/1"),
        "{}",
        r.stdout
    );
}

#[test]
fn merge_request_mode_simulated_leftover_branch_is_not_rewritten() {
    let sim = sim();
    let b = "bump-manifest/acmeiot-sensor-app-main";
    {
        let mut repo = sim.repo.lock().unwrap();
        let head = repo.branches["main"].clone();
        repo.branches.insert(b.to_string(), head);
    }
    // The branch exists without an open MR: the job must not rewrite it and
    // uses a fresh branch instead.
    let r = run(&mut api_cmd(&sim, "merge-request", "1.5.0", "10"));
    assert_eq!(r.code, 0, "{}", r.all());
    let repo = sim.repo.lock().unwrap();
    assert_eq!(repo.mrs.len(), 1);
    assert!(
        repo.mrs[0].source_branch.starts_with(&format!("{b}-")),
        "{}",
        repo.mrs[0].source_branch
    );
    assert_eq!(repo.history(b).len(), 1, "leftover branch untouched");
}

#[test]
fn gitlab_api_mode_simulated_paginated_tree_and_path_scope() {
    // 250 device overlays: the tree listing spans several pages.
    let mut files = GitLabSim::files_of(&fixture());
    for i in 0..250 {
        files.push((
            format!("fleet/pi-{i:03}/kustomization.yaml"),
            format!("resources: [../../apps/sensor-app/base]\nimages:\n  - name: sensor-app\n    newName: acmeiot/sensor-app\n    newTag: \"1.0.{i}\"\n"),
        ));
    }
    let sim = GitLabSim::start(TOKEN, PROJECT, "main", &files);
    let mut c = api_cmd(&sim, "gitlab-api", "1.5.0", "1");
    c.args(["--path", "fleet"]);
    let r = run(&mut c);
    assert_eq!(r.code, 0, "{}", r.all());
    let repo = sim.repo.lock().unwrap();
    let hist = repo.history("main");
    let (after, before) = (&hist[0].files, &hist[1].files);
    let changed: Vec<&String> = after
        .keys()
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert_eq!(
        changed.len(),
        251,
        "250 overlays + state, nothing outside --path"
    );
    assert!(
        changed
            .iter()
            .all(|p| p.starts_with("fleet/") || p.starts_with(".bump-manifest/"))
    );
    let tree_pages = repo
        .log
        .iter()
        .filter(|(_, p, _)| p.ends_with("/repository/tree"))
        .count();
    assert!(tree_pages >= 4, "followed X-Next-Page: {tree_pages} pages");
    assert!(
        after["fleet/pi-249/kustomization.yaml"]
            .contains(&format!("newTag: \"1.5.0\"\n    digest: {D1}\n"))
    );
}

#[test]
fn merge_request_mode_simulated_nothing_to_do_opens_nothing() {
    let sim = sim();
    let r = run(&mut api_cmd(&sim, "gitlab-api", "1.5.0", "10"));
    assert_eq!(r.code, 0, "{}", r.all());
    // The target already holds it: no branch, no MR.
    let r = run(&mut api_cmd(&sim, "merge-request", "1.5.0", "10"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("already up to date"), "{}", r.stderr);
    // Older than what the target holds: refused, no MR.
    let r = run(&mut api_cmd(&sim, "merge-request", "1.4.0", "3"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("not going backwards"), "{}", r.stderr);
    let repo = sim.repo.lock().unwrap();
    assert!(repo.mrs.is_empty());
    assert_eq!(repo.branches.len(), 1);
}

#[test]
fn gitlab_api_mode_simulated_unknown_project_and_branch_are_exit_3() {
    let sim = sim();
    let mut c = api_cmd(&sim, "gitlab-api", "1.5.0", "1");
    c.args(["--project", "acme-iot/nope"]);
    let r = run(&mut c);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stderr.contains("GitLab project acme-iot/nope not found"),
        "{}",
        r.stderr
    );
    let mut c = api_cmd(&sim, "gitlab-api", "1.5.0", "1");
    c.args(["--branch", "production"]);
    let r = run(&mut c);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stderr.contains("branch production does not exist"),
        "{}",
        r.stderr
    );
    r.assert_no_secret(&[TOKEN]);
}
