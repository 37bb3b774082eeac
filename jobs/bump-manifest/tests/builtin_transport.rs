//! `--git-transport builtin`: git reaches the real `git http-backend`
//! server through bump-manifest's own remote helper (`secdeliv::` URLs),
//! never through `git-remote-http(s)`. Every test runs git with an exec
//! path in which `git-remote-http`/`-https` fail loudly and leave a mark.

mod common;

use std::path::Path;

use common::*;
use harness::git_server::GitServer;

/// A copy of git's exec path (symlinks) in which the libcurl helpers are
/// replaced by scripts that record their use and fail.
struct NoCurlExecPath {
    dir: tempfile::TempDir,
}

impl NoCurlExecPath {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        make_no_curl_exec_path(dir.path());
        NoCurlExecPath { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// What tried to run a libcurl helper, if anything.
    fn used(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("curl-helper-used")).ok()
    }
}

fn server() -> GitServer {
    let srv = GitServer::start("bot", TOKEN);
    srv.create_repo("config", "main", &fixture());
    srv
}

fn bump(srv: &GitServer, exec: &NoCurlExecPath, tag: &str) -> std::process::Command {
    let mut c = cmd();
    c.env("CONFIG_REPO_URL", srv.url("config"))
        .env("BUMP_IMAGE", "acmeiot/sensor-app")
        .env("BUMP_NEW_TAG", tag)
        .env("CONFIG_REPO_TOKEN", TOKEN)
        .env("CONFIG_REPO_TOKEN_USER", "bot")
        .env("BUMP_MANIFEST_GIT_TRANSPORT", "builtin")
        .env("GIT_EXEC_PATH", exec.path());
    c
}

#[test]
fn builtin_transport_clones_and_pushes_one_commit_without_git_remote_https() {
    let srv = server();
    let exec = NoCurlExecPath::new();
    let work = tempfile::tempdir().unwrap();
    let clone = work.path().join("clone.git");
    let r = run(bump(&srv, &exec, "1.5.0")
        .args(["--new-digest", D1])
        .arg("--workdir")
        .arg(&clone));
    assert_eq!(r.code, 0, "{}", r.all());
    r.assert_no_secret(&[TOKEN]);
    assert_eq!(exec.used(), None, "a libcurl helper ran");
    let log = srv.log("config", "main");
    assert_eq!(log.len(), 2, "one commit on top of the seed");
    assert_eq!(r.stdout.trim(), log[0].0, "stdout is the new commit SHA");
    assert_eq!(
        srv.auth_failures.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the helper sent the token with every request"
    );
    let broker = srv.show("config", "main", "apps/mqtt/broker.yaml");
    assert!(
        broker.contains(&format!("acmeiot/sensor-app:1.5.0@{D1}")),
        "{broker}"
    );
    // The URL git saw selects the built-in helper.
    let url = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(&clone)
        .args(["config", "remote.origin.url"])
        .output()
        .unwrap();
    let url = String::from_utf8_lossy(&url.stdout);
    assert_eq!(url.trim(), format!("secdeliv::{}", srv.url("config")));
    // The shallow clone fetched one commit (protocol v2 `fetch` with deepen).
    let count = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(&clone)
        .args(["rev-list", "--count", "refs/heads/main"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&count.stdout).trim(), "2");

    // A second bump fetches nothing new, pushes on top of the first.
    let r = run(&mut bump(&srv, &exec, "1.6.0"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(srv.log("config", "main").len(), 3);
    assert_eq!(exec.used(), None);
}

#[test]
fn without_builtin_the_same_setup_needs_git_remote_https() {
    // The control: proves the exec path above really takes libcurl away.
    let srv = server();
    let exec = NoCurlExecPath::new();
    let r = run(bump(&srv, &exec, "1.5.0").env("BUMP_MANIFEST_GIT_TRANSPORT", "git"));
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        exec.used().is_some_and(|u| u.contains("git-remote-http")),
        "{:?}",
        exec.used()
    );
    r.assert_no_secret(&[TOKEN]);
    assert_eq!(srv.log("config", "main").len(), 1);
}

#[test]
fn builtin_transport_retries_a_push_rejected_after_a_concurrent_commit() {
    let srv = server();
    let exec = NoCurlExecPath::new();
    // A `git` wrapper first on PATH lands a concurrent commit on the
    // server right before the job's first push, so that push is rejected.
    let real = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let real = real.trim();
    let bin = tempfile::tempdir().unwrap();
    let bare = srv.bare_path("config");
    let mark = bin.path().join("raced");
    let script = format!(
        r#"#!/bin/sh
if [ "$1" = push ] && [ ! -e '{mark}' ]; then
  touch '{mark}'
  g() {{ env -u GIT_DIR -u GIT_CONFIG_COUNT '{real}' --git-dir='{bare}' "$@"; }}
  tree=$(g rev-parse 'main^{{tree}}')
  c=$(echo 'concurrent commit' | g commit-tree "$tree" -p main)
  g update-ref refs/heads/main "$c"
fi
exec '{real}' "$@"
"#,
        mark = mark.display(),
        bare = bare.display(),
    );
    let wrapper = bin.path().join("git");
    std::fs::write(&wrapper, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let r = run(bump(&srv, &exec, "1.5.0").env("PATH", path));
    assert_eq!(r.code, 0, "{}", r.all());
    r.assert_no_secret(&[TOKEN]);
    assert!(mark.exists(), "the wrapper did not run");
    assert_eq!(exec.used(), None);
    assert_eq!(r.stderr.matches("push rejected").count(), 1, "{}", r.stderr);
    let log = srv.log("config", "main");
    assert_eq!(log.len(), 3, "seed, concurrent commit, the bump: {log:?}");
    assert_eq!(r.stdout.trim(), log[0].0);
    assert_eq!(srv.message("config", "main~1").trim(), "concurrent commit");
    let broker = srv.show("config", "main", "apps/mqtt/broker.yaml");
    assert!(broker.contains("acmeiot/sensor-app:1.5.0"), "{broker}");
}

#[test]
fn builtin_transport_wrong_token_is_exit_3_and_never_printed() {
    let srv = server();
    let exec = NoCurlExecPath::new();
    let r =
        run(bump(&srv, &exec, "1.5.0").env("CONFIG_REPO_TOKEN", "glpat-Sup3rS3cretTok3n-wrong"));
    assert_eq!(r.code, 3, "{}", r.all());
    let last = r.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("bump-manifest: error: cannot clone http://127.0.0.1:"),
        "{last}"
    );
    eprintln!("{last}");
    assert!(last.contains("Authentication failed"), "{last}");
    assert!(last.contains("CONFIG_REPO_TOKEN"), "{last}");
    assert!(!last.contains("secdeliv::"), "{last}");
    assert!(!r.all().contains("Tok3n-wrong"), "{}", r.all());
    r.assert_no_secret(&[TOKEN]);
    assert_eq!(exec.used(), None);
    assert_eq!(srv.log("config", "main").len(), 1);
}

#[test]
fn builtin_transport_missing_repo_names_it() {
    let srv = server();
    let exec = NoCurlExecPath::new();
    let r = run(bump(&srv, &exec, "1.5.0").env("CONFIG_REPO_URL", srv.url("nope")));
    assert_eq!(r.code, 3, "{}", r.all());
    let last = r.stderr.lines().last().unwrap_or_default();
    eprintln!("{last}");
    assert!(last.contains("not found"), "{last}");
    r.assert_no_secret(&[TOKEN]);
    assert_eq!(exec.used(), None);
}

#[test]
fn builtin_transport_eight_concurrent_processes_all_land() {
    let srv = server();
    let exec = NoCurlExecPath::new();
    let n = 8;
    let children: Vec<_> = (1..=n)
        .map(|i| {
            let mut c = bump(&srv, &exec, &format!("1.{i}.0"));
            c.args(["--max-attempts", "60", "--retry-delay-ms", "100"])
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
        assert!(!stderr.contains(TOKEN), "{stderr}");
        shas.push(String::from_utf8_lossy(&o.stdout).trim().to_string());
    }
    assert_eq!(exec.used(), None);
    let log = srv.log("config", "main");
    assert_eq!(log.len(), n + 1, "{log:?}");
    assert!(log[..n].iter().all(|(_, parents)| *parents == 1), "{log:?}");
    for sha in &shas {
        assert!(log.iter().any(|(s, _)| s == sha), "{sha} lost: {log:?}");
    }
}

#[test]
fn builtin_transport_retries_discovery_and_fetch_through_a_flaky_proxy() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let srv = server();
    let exec = NoCurlExecPath::new();
    let port = srv.port();
    // The first info/refs and the first upload-pack POST get a 503; every
    // request (method, path, Git-Protocol) is recorded.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let failed = Arc::new(AtomicUsize::new(0));
    let (seen2, failed2) = (seen.clone(), failed.clone());
    let flaky_info = Arc::new(AtomicUsize::new(0));
    let flaky_post = Arc::new(AtomicUsize::new(0));
    let proxy = harness::git_server::HttpServer::start(move |req| {
        seen2.lock().unwrap().push(format!(
            "{} {}?{} {}",
            req.method,
            req.path,
            req.query,
            req.header("git-protocol").unwrap_or("-")
        ));
        let first = if req.path.ends_with("/info/refs") {
            flaky_info.fetch_add(1, Ordering::SeqCst) == 0
        } else if req.path.ends_with("/git-upload-pack") {
            flaky_post.fetch_add(1, Ordering::SeqCst) == 0
        } else {
            false
        };
        if first {
            failed2.fetch_add(1, Ordering::SeqCst);
            return harness::git_server::Response::new(503, "busy").with_header("Retry-After", "0");
        }
        forward(port, &req)
    });
    let url = format!("{}/config.git", proxy.base_url());
    let r = run(bump(&srv, &exec, "1.5.0").env("CONFIG_REPO_URL", &url));
    assert_eq!(r.code, 0, "{}", r.all());
    r.assert_no_secret(&[TOKEN]);
    assert_eq!(exec.used(), None);
    assert_eq!(failed.load(Ordering::SeqCst), 2);
    assert_eq!(srv.log("config", "main").len(), 2);
    let seen = seen.lock().unwrap().clone();
    // Fetches speak protocol v2; the push is v0 and sent exactly once.
    assert!(
        seen.iter()
            .filter(|l| l.contains("upload-pack"))
            .all(|l| l.ends_with("version=2")),
        "{seen:#?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|l| l.starts_with("POST /config.git/git-receive-pack"))
            .count(),
        1,
        "{seen:#?}"
    );
}

#[test]
fn builtin_transport_simulated_servers_without_v2_or_smart_http_are_refused_clearly() {
    let srv = server();
    let exec = NoCurlExecPath::new();
    for (adv, ct, why) in [
        (
            "001e# service=git-upload-pack\n0000003f0000000000000000000000000000000000000000 capabilities^{}\0\n0000",
            "application/x-git-upload-pack-advertisement",
            "does not speak git protocol v2",
        ),
        (
            "<html>hi</html>",
            "text/html",
            "is not a smart-HTTP git server",
        ),
    ] {
        let fake = harness::git_server::HttpServer::start(move |_| {
            harness::git_server::Response::new(200, adv).with_header("Content-Type", ct)
        });
        let url = format!("{}/config.git", fake.base_url());
        let r = run(bump(&srv, &exec, "1.5.0").env("CONFIG_REPO_URL", &url));
        assert_eq!(r.code, 3, "{}", r.all());
        let last = r.stderr.lines().last().unwrap_or_default();
        assert!(last.contains(why), "{last}");
        r.assert_no_secret(&[TOKEN]);
    }
    assert_eq!(exec.used(), None);
}

#[test]
fn builtin_transport_speaks_https_trusting_the_ci_server_ca_and_refuses_an_unknown_one() {
    // Real TLS (rustls on both ends) in front of the real git http-backend.
    let srv = server();
    let certs = tempfile::tempdir().unwrap();
    let tls =
        harness::tls_proxy::TlsProxy::start(&format!("127.0.0.1:{}", srv.port()), certs.path());
    let url = format!("https://127.0.0.1:{}/config.git", tls.port());
    let exec = NoCurlExecPath::new();

    // The server's CA is not trusted: exit 3, a one-line cause about the
    // certificate, nothing pushed, no secret printed.
    let r = run(bump(&srv, &exec, "1.5.0")
        .env("CONFIG_REPO_URL", &url)
        .args(["--new-digest", D1]));
    assert_eq!(r.code, 3, "{}", r.all());
    let last = r
        .stderr
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_lowercase();
    assert!(last.contains("certificate"), "{}", r.all());
    r.assert_no_secret(&[TOKEN]);
    assert_eq!(exec.used(), None, "a libcurl helper ran");
    assert_eq!(srv.log("config", "main").len(), 1);

    // GitLab's CI_SERVER_TLS_CA_FILE makes it trusted: clone and push over HTTPS.
    let r = run(bump(&srv, &exec, "1.5.0")
        .env("CONFIG_REPO_URL", &url)
        .env("CI_SERVER_TLS_CA_FILE", &tls.ca_file)
        .args(["--new-digest", D1]));
    assert_eq!(r.code, 0, "{}", r.all());
    r.assert_no_secret(&[TOKEN]);
    assert_eq!(exec.used(), None, "a libcurl helper ran");
    let log = srv.log("config", "main");
    assert_eq!(log.len(), 2, "one commit on top of the seed");
    assert_eq!(r.stdout.trim(), log[0].0);
}
