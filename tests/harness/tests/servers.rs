//! The harness's servers, checked with clients we did not write: the git
//! CLI (curl inside) against the git server, plain and behind the TLS proxy
//! with an rcgen CA; reqwest against the GitLab simulator and the registry
//! gateway.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;

use harness::git_server::GitServer;
use harness::gitlab_sim::GitLabSim;
use harness::http_server::{HttpServer, Response};
use harness::registry::{Fault, FaultRule, Gateway, GatewayOptions};

const TOKEN: &str = "s3cret-token";

fn git(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .envs(env.iter().copied())
        .output()
        .expect("git")
}

fn ok(o: std::process::Output) -> String {
    assert!(
        o.status.success(),
        "git failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn seeded() -> (GitServer, tempfile::TempDir) {
    let srv = GitServer::start("bot", TOKEN);
    let seed = tempfile::tempdir().unwrap();
    std::fs::write(seed.path().join("app.yaml"), "image: a:1\n").unwrap();
    srv.create_repo("config", "main", seed.path());
    (srv, seed)
}

#[test]
fn git_server_serves_clone_and_a_chunked_push_and_refuses_bad_credentials() {
    let (srv, _seed) = seeded();
    let work = tempfile::tempdir().unwrap();
    let url = srv.url_with_credentials("config");
    ok(git(work.path(), &["clone", "--quiet", &url, "c"], &[]));
    let c = work.path().join("c");
    assert_eq!(
        std::fs::read_to_string(c.join("app.yaml")).unwrap(),
        "image: a:1\n"
    );
    // Over http.postBuffer (1 MiB): git sends the pack chunked.
    // Random bytes, so the compressed pack stays over 1 MiB.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let big: Vec<u8> = (0..1_500_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(c.join("big.bin"), big).unwrap();
    ok(git(&c, &["add", "-A"], &[]));
    ok(git(&c, &["commit", "--quiet", "-m", "big"], &[]));
    ok(git(&c, &["push", "--quiet", "origin", "main"], &[]));
    assert_eq!(srv.log("config", "main").len(), 2);
    assert_eq!(srv.message("config", "main").trim(), "big");
    let received = srv.received();
    // git probes with a small POST first, then sends the pack chunked.
    let pushes: Vec<_> = received
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/git-receive-pack"))
        .collect();
    assert!(
        pushes
            .iter()
            .any(|r| r.header("transfer-encoding") == Some("chunked") && r.body.len() > 1 << 20),
        "{:?}",
        pushes
            .iter()
            .map(|r| (r.header("transfer-encoding"), r.body.len()))
            .collect::<Vec<_>>()
    );

    let before = srv.auth_failures.load(Ordering::SeqCst);
    let bad = format!("http://bot:wrong-pass@127.0.0.1:{}/config.git", srv.port());
    let o = git(work.path(), &["clone", "--quiet", &bad, "d"], &[]);
    assert!(!o.status.success());
    assert!(srv.auth_failures.load(Ordering::SeqCst) > before);
}

#[test]
fn tls_proxy_with_an_rcgen_ca_is_trusted_by_git_through_the_ca_file_only() {
    let (srv, _seed) = seeded();
    let certs = tempfile::tempdir().unwrap();
    let tls =
        harness::tls_proxy::TlsProxy::start(&format!("127.0.0.1:{}", srv.port()), certs.path());
    let url = format!("https://bot:{TOKEN}@127.0.0.1:{}/config.git", tls.port());
    let work = tempfile::tempdir().unwrap();
    let o = git(work.path(), &["clone", "--quiet", &url, "a"], &[]);
    assert!(!o.status.success(), "an unknown CA must be refused");
    let ca = tls.ca_file.to_str().unwrap();
    ok(git(
        work.path(),
        &["clone", "--quiet", &url, "b"],
        &[("GIT_SSL_CAINFO", ca)],
    ));
    assert!(work.path().join("b/app.yaml").exists());
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn gitlab_simulator_answers_head_get_and_post_and_logs_them() {
    let sim = GitLabSim::start(
        TOKEN,
        "group/config",
        "main",
        &[("app.yaml".into(), "image: a:1\n".into())],
    );
    let api = sim.api_url();
    block_on(async {
        let c = reqwest::Client::builder().no_proxy().build().unwrap();
        let file = format!("{api}/projects/group%2Fconfig/repository/files/app.yaml?ref=main");
        let r = c
            .head(&file)
            .header("PRIVATE-TOKEN", TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().contains_key("x-gitlab-last-commit-id"));
        let r = c.get(&file).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let r = c
            .post(format!("{api}/projects/42/repository/commits"))
            .header("JOB-TOKEN", TOKEN)
            .json(&serde_json::json!({"branch": "main", "commit_message": "m",
                "actions": [{"action": "update", "file_path": "app.yaml", "content": "image: a:2\n"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    });
    let repo = sim.repo.lock().unwrap();
    assert_eq!(
        repo.file("main", "app.yaml").as_deref(),
        Some("image: a:2\n")
    );
    let methods: Vec<String> = sim.received().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["HEAD", "GET", "POST"]);
}

#[test]
fn gateway_injects_faults_and_counts_what_it_forwards() {
    let upstream = HttpServer::start(|req| {
        Response::new(200, vec![b'x'; 1000]).with_header("X-Path", &req.path)
    });
    let gw = Gateway::start(&upstream.host(), GatewayOptions::default());
    gw.inject(
        FaultRule::new(Fault::Status {
            code: 429,
            retry_after: Some(1),
        })
        .path_contains("/blobs/")
        .times(1),
    );
    block_on(async {
        let c = reqwest::Client::builder().no_proxy().build().unwrap();
        let url = format!("http://{}/v2/a/blobs/sha256:00", gw.host());
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "1");
        let r = c
            .get(&url)
            .header("Authorization", "Basic eA==")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-path"], "/v2/a/blobs/sha256:00");
        assert_eq!(r.bytes().await.unwrap().len(), 1000);
    });
    let statuses: Vec<u16> = gw.requests().iter().map(|l| l.status).collect();
    assert_eq!(statuses, [429, 200]);
    assert_eq!(gw.bytes_out(), 1000);
    // Only the forwarded request reached the upstream, Authorization passed on.
    let up = upstream.received();
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].header("authorization"), Some("Basic eA=="));
    assert_eq!(gw.received().len(), 2);
}
