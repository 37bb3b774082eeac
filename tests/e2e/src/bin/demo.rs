//! The local end-to-end demo (the README's first command runs it through
//! `scripts/demo.sh`): the sensor-app pipeline under gitlab-ci-local against
//! local registries, a git server and the Argo CD simulator, then where to
//! look at each stage's result. `--serve` keeps the services up afterwards.

use std::time::Duration;

use e2e::flow::{APP, APP_PATH, Flow, HUB_USER};

fn main() {
    let serve = std::env::args().any(|a| a == "--serve");
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!(
            "demo [--serve]\n\nRuns examples/sensor-app's pipeline end to end on this machine and says where\n\
             to look at each stage's result. Work files go to target/demo/ (replaced on each run).\n\
             --serve  keep the registries, git server and Argo CD simulator running until Ctrl-C."
        );
        return;
    }
    let work = e2e::flow::root().join("target/demo");
    let _ = std::fs::remove_dir_all(&work);
    let flow = match Flow::start(&work) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("demo: {e}");
            std::process::exit(2);
        }
    };
    println!("== secdeliv demo: services up");
    println!(
        "   GitLab registry (htpasswd)   http://{}",
        flow.staging.host()
    );
    println!("   Docker Hub (Bearer tokens)   http://{}", flow.hub.host());
    println!(
        "   config repo (git over HTTP)  {}",
        flow.git.url("config-repo")
    );
    println!("   Argo CD API (simulator)      {}", flow.argo.url());
    println!(
        "== gitlab-ci-local --force-shell-executor in {}",
        flow.project.display()
    );
    let run = flow.run_pipeline(true);
    // Argo CD's state settles right after the wait ends.
    std::thread::sleep(Duration::from_millis(200));
    let r = flow.results();
    let hub_ref = format!("{}@{}", flow.hub_image(), r.build_digest);
    println!();
    let scan_env = flow.artifacts("scan-image").join("scan-image.env");
    let scan_counts: Vec<String> = e2e::flow::dotenv(&scan_env)
        .into_iter()
        .filter(|(k, _)| {
            ["SCAN_TOTAL", "SCAN_SUPPRESSED", "SCAN_GATE", "SCAN_FAIL_ON"].contains(&k.as_str())
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "== where to look (job logs: {}/<job>.log; services stop when the demo ends unless --serve)",
        flow.project.join(".gitlab-ci-local/output").display()
    );
    println!("build   {}@{}", flow.staging_image(), r.build_digest);
    println!(
        "        skopeo inspect --raw --tls-verify=false --creds ci-bot:*** docker://{}@{}",
        flow.staging_image(),
        r.build_digest
    );
    println!(
        "scan    {} ({})",
        flow.artifacts("scan-image").display(),
        scan_counts.join(" ")
    );
    println!(
        "        gl-container-scanning-report.json gl-code-quality-report.json gl-container-scanning-junit.xml gl-container-scanning.sarif scan-image.env"
    );
    println!(
        "promote {hub_ref}  (same manifest bytes as the build: {})",
        !r.hub_manifest.is_empty() && r.hub_manifest == r.staging_manifest
    );
    println!(
        "sign    {}:{}.sig; verified with {}: {}",
        flow.hub_image(),
        r.build_digest.replace(':', "-"),
        flow.public_key.display(),
        r.signature_verified
    );
    println!(
        "        INSECURE_REGISTRY={} SIGN_IMAGE_REGISTRY_USER={HUB_USER} SIGN_IMAGE_REGISTRY_PASSWORD=*** target/debug/sign-image verify --key {} {hub_ref}",
        flow.hub.host(),
        flow.public_key.display()
    );
    match r.new_commits.first() {
        Some(c) => {
            println!("bump    config repo commit {c}, {APP_PATH}/kustomization.yaml now pins:");
            for line in r
                .overlay
                .lines()
                .filter(|l| l.contains("newName") || l.contains("newTag") || l.contains("digest:"))
            {
                println!("        {}", line.trim());
            }
        }
        None => println!("bump    no new commit in the config repo"),
    }
    if let Some(h) = &r.hook {
        println!(
            "device  PreSync hook of {APP_PATH} at that commit: sign-image {} -> exit {} ({})",
            h.argv,
            h.code,
            if e2e::flow::arm64_sign_image().is_some() {
                "linux/arm64 binary under qemu"
            } else {
                "host binary"
            }
        );
    }
    println!(
        "deploy  Argo CD app {APP}: {} / {} at revision {} (sync requested for {:?})",
        r.app_sync, r.app_health, r.app_revision, r.synced_revisions
    );
    println!("== wall time by job");
    for j in &run.jobs {
        println!("   {:<16} {:>7.2} s", j.job, j.seconds);
    }
    println!("   {:<16} {:>7.2} s", "pipeline", run.wall.as_secs_f64());
    let ok = run.ok
        && r.signature_verified
        && !r.hub_manifest.is_empty()
        && r.hub_manifest == r.staging_manifest
        && r.new_commits.len() == 1
        && r.app_revision == r.new_commits[0]
        && r.app_health == "Healthy"
        && r.hook.as_ref().is_some_and(|h| h.code == 0);
    println!(
        "== {}",
        if ok {
            "the flow went through"
        } else {
            "the flow did NOT go through; see the log above"
        }
    );
    if serve {
        println!("services stay up until Ctrl-C");
        loop {
            std::thread::park();
        }
    }
    drop(flow);
    std::process::exit(if ok { 0 } else { 1 });
}
