//! The job's contract as a user sees it: flags and their variables, `--help`,
//! each documented exit code with its whole one-line cause, the `{old}`
//! placeholder, secrets (output, dotenv, commits), and what the GitLab
//! token and the git transport's token never follow (issue 17).

mod common;

use common::*;
use harness::git_server::GitServer;
use harness::gitlab_sim::GitLabSim;
use harness::http_server::{HttpServer, Response};
use harness::origin::RecordingOrigin;

const PROJECT: &str = "acme-iot/config-repo";
/// Any port of 127.0.0.1, in a cause pattern.
const PORT: &str = r"127\.0\.0\.1:\d+";

fn sim() -> GitLabSim {
    GitLabSim::start(TOKEN, PROJECT, "main", &GitLabSim::files_of(&fixture()))
}

/// gitlab-api (or merge-request) mode against `api`.
fn api_cmd(api: &str, mode: &str) -> std::process::Command {
    let mut c = cmd();
    c.env("CI_API_V4_URL", api)
        .env(
            "CONFIG_REPO_URL",
            format!("https://gitlab.example.com/{PROJECT}.git"),
        )
        .env("CONFIG_REPO_TOKEN", TOKEN)
        .args(["--mode", mode, "--image", "acmeiot/sensor-app"])
        .args([
            "--new-tag",
            "1.5.0",
            "--new-digest",
            D1,
            "--order-key",
            "10",
        ]);
    c
}

fn server() -> GitServer {
    let srv = GitServer::start("bot", TOKEN);
    srv.create_repo("config", "main", &fixture());
    srv
}

fn push_cmd(srv: &GitServer) -> std::process::Command {
    let mut c = cmd();
    c.env("CONFIG_REPO_URL", srv.url("config"))
        .env("CONFIG_REPO_TOKEN", TOKEN)
        .env("CONFIG_REPO_TOKEN_USER", "bot")
        .env("BUMP_IMAGE", "acmeiot/sensor-app")
        .env("BUMP_NEW_TAG", "1.5.0");
    c
}

/// A GitLab in front of the simulator that answers `path` (a suffix of the
/// request path, for `method`) with `fault` and forwards everything else.
fn faulty(
    sim: &GitLabSim,
    method: &'static str,
    path: &'static str,
    fault: Response,
) -> HttpServer {
    let port: u16 = sim
        .base_url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("sim port");
    let fault = std::sync::Mutex::new(Some(fault));
    HttpServer::start(move |req| {
        if req.method == method && req.path.ends_with(path) {
            // Answer the fault every time (clone the first).
            let f = fault.lock().unwrap();
            let f = f.as_ref().unwrap();
            let mut r = Response::new(f.status, f.body.clone());
            for (k, v) in &f.headers {
                r = r.with_header(k, v);
            }
            return r;
        }
        forward(port, &req)
    })
}

// --- the interface ---------------------------------------------------------

#[test]
fn every_flag_has_an_environment_variable() {
    let cmd = kit::cli::command::<bump_manifest::cli::Args>();
    assert!(
        kit::cli::flags_without_env(&cmd).is_empty(),
        "{:?}",
        kit::cli::flags_without_env(&cmd)
    );
}

#[test]
fn help_snapshot() {
    // Variables' values (set in a CI job) are not part of the interface.
    let help = kit::cli::command::<bump_manifest::cli::Args>()
        .mut_args(|a| a.hide_env_values(true))
        .render_help()
        .to_string();
    insta::assert_snapshot!("help", help);
}

// --- exit codes (README table), each with its whole cause -----------------

#[test]
fn exit_0_commit_prints_the_sha_and_keeps_secrets_out_of_output_dotenv_and_commit() {
    let sim = sim();
    let out = tempfile::tempdir().unwrap();
    let dotenv = out.path().join("deploy.env");
    let r = run(api_cmd(&sim.api_url(), "gitlab-api").env("BUMP_DOTENV", &dotenv));
    r.assert_success();
    r.assert_no_secret(&[TOKEN]);
    assert_no_secret_in_files(out.path(), &[TOKEN]);
    let env = std::fs::read_to_string(&dotenv).unwrap();
    let repo = sim.repo.lock().unwrap();
    let head = &repo.history("main")[0];
    assert_eq!(r.stdout.trim(), head.id);
    assert!(
        env.contains(&format!("BUMP_MANIFEST_COMMIT={}\n", head.id)),
        "{env}"
    );
    assert_no_secret_in("the commit message", &head.message, &[TOKEN]);
    for (path, content) in &head.files {
        assert_no_secret_in(path, content, &[TOKEN]);
    }
}

#[test]
fn exit_0_push_commit_and_dotenv_hold_no_secret() {
    let srv = server();
    let out = tempfile::tempdir().unwrap();
    let r = run(push_cmd(&srv)
        .args(["--order-key", "3"])
        .env("BUMP_DOTENV", out.path().join("deploy.env")));
    r.assert_success();
    r.assert_no_secret(&[TOKEN]);
    assert_no_secret_in_files(out.path(), &[TOKEN]);
    // Every object of the pushed history (messages, trees, files).
    let all = srv.git(
        "config",
        &["log", "-p", "--format=%H %an <%ae>%n%B", "main"],
    );
    assert_no_secret_in("the pushed commits", &all, &[TOKEN]);
}

#[test]
fn exit_2_bad_input_names_the_flag() {
    let srv = server();
    let r = run(push_cmd(&srv).args(["--new-digest", "sha256:abc"]));
    r.assert_failed(2, "--new-digest: .*");
    let r = run(push_cmd(&srv).args(["--image", "acmeiot/sensor-app:1.0"]));
    r.assert_failed(
        2,
        r#"--image "acmeiot/sensor-app:1.0" must be the name only; pass the tag with --new-tag and the digest with --new-digest"#,
    );
    let r = run(push_cmd(&srv).args(["--image", "acmeiot/unknown"]));
    r.assert_failed(
        2,
        r"no reference to acmeiot/unknown found in the repo \(kustomize images, Helm values, workload manifests, Argo CD Applications\); check --image and --path, or pass --allow-missing",
    );
    assert_eq!(srv.log("config", "main").len(), 1);
}

#[test]
fn exit_3_missing_branch_and_refused_token() {
    let srv = server();
    let r = run(push_cmd(&srv).args(["--branch", "nope"]));
    r.assert_failed(
        3,
        &format!(
            r"cannot clone http://{PORT}/config\.git branch nope: .* \(does the branch exist\?\)"
        ),
    );
    let sim = sim();
    let r =
        run(api_cmd(&sim.api_url(), "gitlab-api").env("CONFIG_REPO_TOKEN", "glpat-wrong-123456"));
    r.assert_failed(
        3,
        &format!(
            r"the token \(PRIVATE-TOKEN\) was refused; it needs the api scope \(or write_repository\): GitLab answered 401 to GET http://{PORT}/api/v4/projects/acme-iot%2Fconfig-repo/repository/branches/main: 401 Unauthorized"
        ),
    );
    r.assert_no_secret(&["glpat-wrong-123456"]);
}

#[test]
fn exit_4_a_gitlab_request_that_never_answers() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _hold = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let r = run(
        api_cmd(&format!("http://127.0.0.1:{port}/api/v4"), "gitlab-api")
            .args(["--request-timeout", "1s"])
            .env("BUMP_RETRY_DELAY_MS", "1"),
    );
    r.assert_failed(
        4,
        &format!(r"GitLab at http://127\.0\.0\.1:{port}/api/v4/projects/acme-iot%2Fconfig-repo/repository/branches/main: .*timed out.*"),
    );
}

// --- typed GitLab answers: a malformed 200 is exit 3, never a default -------

#[test]
fn malformed_branch_answer_is_unexpected_not_a_missing_branch() {
    let sim = sim();
    let proxy = faulty(
        &sim,
        "GET",
        "/repository/branches/main",
        Response::json(200, &serde_json::json!({"name": "main"})),
    );
    let r = run(&mut api_cmd(
        &format!("{}/api/v4", proxy.base_url()),
        "gitlab-api",
    ));
    r.assert_failed(
        3,
        &format!(r"unexpected answer from GitLab at http://{PORT}/api/v4/projects/acme-iot%2Fconfig-repo/repository/branches/main: missing field `commit` at line 1 column 15"),
    );
    assert!(!r.stderr.contains("does not exist"), "{}", r.stderr);
}

#[test]
fn malformed_commit_answer_never_writes_an_empty_sha() {
    let sim = sim();
    let proxy = faulty(
        &sim,
        "POST",
        "/repository/commits",
        Response::json(201, &serde_json::json!({"id": "", "message": "x"})),
    );
    let out = tempfile::tempdir().unwrap();
    let dotenv = out.path().join("deploy.env");
    let r = run(
        api_cmd(&format!("{}/api/v4", proxy.base_url()), "gitlab-api").env("BUMP_DOTENV", &dotenv),
    );
    r.assert_failed(
        3,
        &format!(r#"unexpected answer from GitLab at http://{PORT}/api/v4/projects/acme-iot%2Fconfig-repo/repository/commits: commit id "" is not a commit SHA"#),
    );
    assert!(!dotenv.exists(), "no dotenv with an empty SHA");
    assert_eq!(r.stdout, "");
}

#[test]
fn malformed_merge_request_answer_never_puts_merge_request_0() {
    let sim = sim();
    // The list of open MRs holds one without an iid.
    sim.repo.lock().unwrap().mr_race = false;
    let proxy = faulty(
        &sim,
        "GET",
        "/merge_requests",
        Response::json(
            200,
            &serde_json::json!([{"title": "x", "web_url": "http://x/-/merge_requests/7"}]),
        ),
    );
    let r = run(&mut api_cmd(
        &format!("{}/api/v4", proxy.base_url()),
        "merge-request",
    ));
    r.assert_failed(
        3,
        &format!(r"unexpected answer from GitLab at http://{PORT}/api/v4/projects/acme-iot%2Fconfig-repo/merge_requests\?state=opened&source_branch=.*: missing field `iid` at line 1 column \d+"),
    );
    let repo = sim.repo.lock().unwrap();
    assert!(
        !repo
            .log
            .iter()
            .any(|(m, p, _)| m == "PUT" && p.contains("/merge_requests/0")),
        "{:?}",
        repo.log
    );
}

// --- issue 17: credentials stay with their host ---------------------------

/// The GitLab token is a custom header, which clients do not strip on a
/// redirect: the API client follows none.
#[test]
fn gitlab_token_never_follows_a_redirect() {
    let other = RecordingOrigin::start();
    let api = RecordingOrigin::start();
    api.always(Response::redirect(302, &other.url("/api/v4/stolen")));
    for mode in ["gitlab-api", "merge-request"] {
        let r = run(&mut api_cmd(&api.url("/api/v4"), mode));
        r.assert_failed(
            3,
            &format!(
                r"GitLab answered 302 to GET http://{PORT}/api/v4/projects/acme-iot%2Fconfig-repo/repository/branches/main, redirecting to http://127\.0\.0\.1:{}; the token is never sent after a redirect: point --gitlab-api-url \(CI_API_V4_URL\) at the API itself",
                other.port()
            ),
        );
        r.assert_no_secret(&[TOKEN]);
    }
    other.assert_untouched();
    other.assert_no_secret(&[TOKEN]);
    // Control: the token did reach the API's own origin.
    assert!(
        api.requests()
            .iter()
            .any(|q| q.header("private-token") == Some(TOKEN))
    );
}

/// The built-in git transport follows redirects only within the origin.
#[test]
fn git_transport_token_never_follows_a_cross_origin_redirect() {
    let other = RecordingOrigin::start();
    let git = RecordingOrigin::start();
    git.always(Response::redirect(
        302,
        &other.url("/config.git/info/refs?service=git-upload-pack"),
    ));
    let r = run(cmd()
        .env("CONFIG_REPO_URL", git.url("/config.git"))
        .env("CONFIG_REPO_TOKEN", TOKEN)
        .env("BUMP_MANIFEST_GIT_TRANSPORT", "builtin")
        .args(["--image", "acmeiot/sensor-app", "--new-tag", "1.5.0"]));
    r.assert_failed(
        3,
        &format!(
            r"cannot clone http://{PORT}/config\.git branch main: git-upload-pack discovery at 'http://{PORT}/config\.git' was redirected to another origin \(http://127\.0\.0\.1:{}\); the credentials stay with 'http://{PORT}/config\.git', not following",
            other.port()
        ),
    );
    r.assert_no_secret(&[TOKEN]);
    other.assert_untouched();
    assert!(
        git.requests()
            .iter()
            .any(|q| q.header("authorization").is_some())
    );
}

/// `--path a,,b` (a stray comma in BUMP_PATHS) is exit 2 before any network
/// call, in every mode; `.` is the whole repo only alone.
#[test]
fn empty_path_entry_is_exit_2_in_every_mode_before_any_request() {
    let api = RecordingOrigin::start();
    let srv = server();
    for paths in ["apps/sensor-app/overlays/pi-lab,", "a,,b", ".,apps"] {
        let r = run(push_cmd(&srv).env("BUMP_PATHS", paths));
        r.assert_failed(2, "--path .*");
        for mode in ["gitlab-api", "merge-request"] {
            let r = run(api_cmd(&api.url("/api/v4"), mode).env("BUMP_PATHS", paths));
            r.assert_failed(2, "--path .*");
        }
    }
    let r = run(push_cmd(&srv).env("BUMP_PATHS", "a,"));
    r.assert_failed(
        2,
        r#"--path has an empty entry \(in "a,"; a stray or trailing comma\?\): name each directory, or give `.` alone for the whole repo"#,
    );
    api.assert_untouched();
    assert_eq!(srv.log("config", "main").len(), 1);
    // `.` alone: the whole repo.
    let r = run(push_cmd(&srv).env("BUMP_PATHS", "."));
    r.assert_success();
    assert_eq!(srv.log("config", "main").len(), 2);
}

// --- {old} ----------------------------------------------------------------

#[test]
fn old_placeholder_is_the_previous_version_in_the_form_of_new() {
    let srv = server();
    let r = run(push_cmd(&srv).args([
        "--path",
        "apps/mqtt",
        "--message",
        "deploy {image}: {old} -> {new}",
    ]));
    r.assert_success();
    let msg = srv.message("config", "main");
    assert_eq!(
        msg.lines().next().unwrap(),
        "deploy acmeiot/sensor-app: docker.io/acmeiot/sensor-app:1.4.0 -> docker.io/acmeiot/sensor-app:1.5.0",
        "{msg}"
    );
    // Across layouts the distinct previous versions, each once, no raw forms.
    let r = run(push_cmd(&srv).args(["--new-tag", "1.6.0", "--message", "{old}"]));
    r.assert_success();
    let subject = srv
        .message("config", "main")
        .lines()
        .next()
        .unwrap()
        .to_string();
    for part in subject.split(", ") {
        assert!(
            part.starts_with("docker.io/acmeiot/sensor-app:"),
            "{subject}"
        );
    }
    let parts: Vec<&str> = subject.split(", ").collect();
    let mut uniq = parts.clone();
    uniq.dedup();
    assert_eq!(parts, uniq, "{subject}");
}
