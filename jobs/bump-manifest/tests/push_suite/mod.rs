//! The `--mode push` scenarios, run by `tests/push.rs` with git's own
//! transport and by `tests/push_builtin.rs` with the built-in one.

use crate::common::*;
use harness::git_server::GitServer;

/// The binary with the suite's `--git-transport`. With `builtin`, git runs
/// with an exec path whose `git-remote-http(s)` fail: every http(s) access
/// must go through bump-manifest's helper.
fn cmd() -> std::process::Command {
    let mut c = crate::common::cmd();
    c.env("BUMP_MANIFEST_GIT_TRANSPORT", crate::TRANSPORT);
    if crate::TRANSPORT == "builtin" {
        c.env("GIT_EXEC_PATH", shared_no_curl_exec_path());
    }
    c
}

fn server() -> GitServer {
    let srv = GitServer::start("bot", TOKEN);
    srv.create_repo("config", "main", &fixture());
    srv
}

fn bump(
    srv: &GitServer,
    tag: &str,
    digest: Option<&str>,
    key: Option<&str>,
) -> std::process::Command {
    let mut c = cmd();
    // Through the env, as a GitLab job sets them; tests override with flags.
    c.env("CONFIG_REPO_URL", srv.url("config"))
        .env("CONFIG_REPO_BRANCH", "main")
        .env("BUMP_IMAGE", "acmeiot/sensor-app")
        .env("BUMP_NEW_TAG", tag)
        .env("CONFIG_REPO_TOKEN", TOKEN)
        .env("CONFIG_REPO_TOKEN_USER", "bot")
        .env(
            "CI_PIPELINE_URL",
            "https://gitlab.example.com/acme-iot/sensor-app/-/pipelines/981",
        )
        .env("GITLAB_USER_NAME", "Release Bot")
        .env("GITLAB_USER_EMAIL", "release-bot@example.com");
    if let Some(d) = digest {
        c.env("BUMP_NEW_DIGEST", d);
    }
    if let Some(k) = key {
        c.env("BUMP_ORDER_KEY", k);
    }
    c
}

#[test]
fn push_rewrites_only_the_reference_bytes_in_every_layout() {
    let srv = server();
    let before = read_tree(&fixture());
    let r = run(&mut bump(&srv, "1.5.0", Some(D1), Some("7")));
    assert_eq!(r.code, 0, "{}", r.all());
    r.assert_no_secret(&[TOKEN]);
    let log = srv.log("config", "main");
    assert_eq!(log.len(), 2, "one commit on top of the seed");
    assert_eq!(r.stdout.trim(), log[0].0, "stdout is the new commit SHA");
    assert_eq!(
        srv.auth_failures.load(std::sync::atomic::Ordering::SeqCst),
        0
    );

    let old_lab = "sha256:f4b9a364a032bc81bce365e09df62104e1688a7d2081a67e79b7802671996815";
    let old_south = "sha256:a961f5a33a0faf27ed075ce3ebe3feab9dca407b829e69a381fa6d5181cbf21c";
    let old_north = "sha256:0f4e5cd4c8a3b3a8a1f0e3d0d4a6b5c7e9f1a2b3c4d5e6f708192a3b4c5d6e7f";
    let expect: Vec<(&str, Vec<(String, String)>)> = vec![
        (
            "apps/sensor-app/overlays/pi-lab/kustomization.yaml",
            vec![
                ("newTag: \"1.4.1\"".into(), "newTag: \"1.5.0\"".into()),
                (old_lab.into(), D1.into()),
            ],
        ),
        (
            "apps/sensor-app/overlays/pi-fleet-north/kustomization.yaml",
            vec![
                ("newTag: 1.4.0".into(), "newTag: 1.5.0".into()),
                (old_north.into(), D1.into()),
            ],
        ),
        (
            "apps/sensor-app/overlays/pi-fleet-south/kustomization.yaml",
            vec![
                ("newTag: '1.3.2'".into(), "newTag: '1.5.0'".into()),
                (old_south.into(), D1.into()),
            ],
        ),
        (
            "apps/gateway/values-pi.yaml",
            vec![(
                "acmeiot/sensor-app:1.4.0".into(),
                format!("acmeiot/sensor-app:1.5.0@{D1}"),
            )],
        ),
        (
            "apps/mqtt/broker.yaml",
            vec![(
                "acmeiot/sensor-app:1.4.0".into(),
                format!("acmeiot/sensor-app:1.5.0@{D1}"),
            )],
        ),
        (
            "argocd/gateway.yaml",
            vec![(
                "acmeiot/sensor-app:1.4.0".into(),
                format!("acmeiot/sensor-app:1.5.0@{D1}"),
            )],
        ),
        (
            "argocd/sensor-app-pi-fleet.yaml",
            vec![(
                format!("sensor-app:1.3.2@{old_south}"),
                format!("sensor-app:1.5.0@{D1}"),
            )],
        ),
    ];
    for (path, bytes) in &before {
        let now = srv.show("config", "main", path);
        let mut want = String::from_utf8(bytes.clone()).unwrap();
        if let Some((_, reps)) = expect.iter().find(|(p, _)| p == path) {
            for (a, b) in reps {
                assert_eq!(
                    want.matches(a.as_str()).count(),
                    1,
                    "{path}: {a} should occur once in the fixture"
                );
                want = want.replace(a.as_str(), b);
            }
        }
        assert_eq!(now, want, "{path} differs beyond the expected scalars");
    }
    let state: serde_json::Value =
        serde_json::from_str(&srv.show("config", "main", ".bump-manifest/state.json")).unwrap();
    let e = &state["images"]["docker.io/acmeiot/sensor-app"];
    assert_eq!(e["order_key"], "7");
    assert_eq!(
        e["reference"],
        format!("docker.io/acmeiot/sensor-app:1.5.0@{D1}")
    );
    let msg = srv.message("config", "main");
    assert!(
        msg.starts_with("Deploy acmeiot/sensor-app docker.io/acmeiot/sensor-app:1.5.0@"),
        "{msg}"
    );
    assert!(msg.contains("Bump-Manifest-Order-Key: 7\n"), "{msg}");
    assert!(
        msg.contains(
            "Source-Pipeline: https://gitlab.example.com/acme-iot/sensor-app/-/pipelines/981"
        ),
        "{msg}"
    );
    let author = srv.git("config", &["log", "-1", "--format=%an <%ae>", "main"]);
    assert_eq!(author.trim(), "Release Bot <release-bot@example.com>");

    // Same request again: nothing to do.
    let again = run(&mut bump(&srv, "1.5.0", Some(D1), Some("8")));
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(
        again.stderr.contains("already up to date"),
        "{}",
        again.stderr
    );
    assert_eq!(
        srv.log("config", "main").len(),
        2,
        "no commit when up to date"
    );
    assert_eq!(again.stdout.trim(), log[0].0);

    // An older pipeline: refused, exit 0, names the newer deploy.
    let old = run(&mut bump(&srv, "1.4.9", None, Some("6")));
    assert_eq!(old.code, 0, "{}", old.all());
    assert!(old.stderr.contains("not going backwards"), "{}", old.stderr);
    assert!(old.stderr.contains("order key 7"), "{}", old.stderr);
    assert!(old.stderr.contains("1.5.0"), "{}", old.stderr);
    assert_eq!(srv.log("config", "main").len(), 2);

    // A newer one with a tag only: the stale digests go.
    let newer = run(&mut bump(&srv, "1.6.0", None, Some("9")));
    assert_eq!(newer.code, 0, "{}", newer.all());
    let lab = srv.show(
        "config",
        "main",
        "apps/sensor-app/overlays/pi-lab/kustomization.yaml",
    );
    assert!(lab.contains("    newTag: \"1.6.0\"\n\npatches:"), "{lab}");
    assert!(!lab.contains("digest:"), "{lab}");
    let broker = srv.show("config", "main", "apps/mqtt/broker.yaml");
    assert!(
        broker.contains("image: \"acmeiot/sensor-app:1.6.0\"\n"),
        "{broker}"
    );
}

#[test]
fn dry_run_prints_a_diff_and_pushes_nothing() {
    let srv = server();
    let r = run(bump(&srv, "1.5.0", Some(D1), Some("3")).arg("--dry-run"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout
            .contains("--- a/apps/mqtt/broker.yaml\n+++ b/apps/mqtt/broker.yaml\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!(
            "+              image: \"acmeiot/sensor-app:1.5.0@{D1}\""
        )),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("+++ b/.bump-manifest/state.json"),
        "{}",
        r.stdout
    );
    assert_eq!(srv.log("config", "main").len(), 1);
    r.assert_no_secret(&[TOKEN]);
}

#[test]
fn wrong_token_is_exit_3_and_never_printed() {
    let srv = server();
    let r =
        run(bump(&srv, "1.5.0", None, None)
            .env("CONFIG_REPO_TOKEN", "glpat-Sup3rS3cretTok3n-wrong"));
    assert_eq!(r.code, 3, "{}", r.all());
    let last = r.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("bump-manifest: error: cannot clone http://127.0.0.1:"),
        "{last}"
    );
    assert!(last.contains("CONFIG_REPO_TOKEN"), "{last}");
    assert!(!r.all().contains("Tok3n-wrong"), "{}", r.all());
    r.assert_no_secret(&[TOKEN]);
}

#[test]
fn missing_branch_and_unknown_image_fail_clearly() {
    let srv = server();
    let r = run(bump(&srv, "1.5.0", None, None).args(["--branch", "nope"]));
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(r.stderr.contains("branch nope"), "{}", r.stderr);

    let mut c = bump(&srv, "1.5.0", None, None);
    c.args(["--image", "acmeiot/unknown"]);
    let r = run(&mut c);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("no reference to acmeiot/unknown found"),
        "{}",
        r.stderr
    );
    let r = run(c.arg("--allow-missing"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(srv.log("config", "main").len(), 1);
}

#[test]
fn bad_input_is_exit_2() {
    let srv = server();
    for (args, why) in [
        (vec!["--new-digest", "sha256:abc"], "--new-digest"),
        (vec!["--image", "acmeiot/sensor-app:1.0"], "name only"),
        (vec!["--new-tag=-bad"], "--new-tag"),
        (vec!["--path", "../outside"], "must not contain '..'"),
        (vec!["--path", "does/not/exist"], "does not exist"),
    ] {
        let r = run(bump(&srv, "1.5.0", None, None).args(&args));
        assert_eq!(r.code, 2, "{args:?}: {}", r.all());
        assert!(r.stderr.contains(why), "{args:?}: {}", r.stderr);
        r.assert_no_secret(&[TOKEN]);
    }
    assert_eq!(srv.log("config", "main").len(), 1);
}

#[test]
fn unparseable_yaml_is_exit_2_naming_file_and_line_and_nothing_is_pushed() {
    let seed = tempfile::tempdir().unwrap();
    harness::git_server::copy_dir(&fixture(), seed.path());
    std::fs::write(
        seed.path().join("apps/broken.yaml"),
        "image: acmeiot/sensor-app:1.0\nlist: [a, b\nother: x\n",
    )
    .unwrap();
    let srv = GitServer::start("bot", TOKEN);
    srv.create_repo("config", "main", seed.path());
    let r = run(&mut bump(&srv, "1.5.0", None, None));
    assert_eq!(r.code, 2, "{}", r.all());
    let last = r.stderr.lines().last().unwrap_or_default();
    assert!(last.contains("apps/broken.yaml:3:"), "{last}");
    assert!(last.contains("cannot parse YAML"), "{last}");
    assert_eq!(srv.log("config", "main").len(), 1);
}

#[test]
fn symlink_leaving_the_repo_is_refused() {
    let seed = tempfile::tempdir().unwrap();
    harness::git_server::copy_dir(&fixture(), seed.path());
    std::os::unix::fs::symlink("/etc", seed.path().join("apps/escape")).unwrap();
    let srv = GitServer::start("bot", TOKEN);
    srv.create_repo("config", "main", seed.path());
    let r = run(&mut bump(&srv, "1.5.0", None, None));
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr
            .contains("apps/escape is a symlink pointing outside the repo"),
        "{}",
        r.stderr
    );
    // Limited to a path without the link, the bump works.
    let r = run(bump(&srv, "1.5.0", None, None).args(["--path", "apps/sensor-app"]));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(srv.log("config", "main").len(), 2);
}

#[test]
fn path_scoping_and_local_bare_repo() {
    // A local path works too (file:// under the hood), without auth.
    let srv = server();
    let bare = srv.bare_path("config");
    let mut c = cmd();
    c.args([
        "--repo",
        bare.to_str().unwrap(),
        "--image",
        "docker.io/acmeiot/sensor-app",
        "--new-tag",
        "2.0.0",
    ])
    .args([
        "--path",
        "apps/sensor-app/overlays/pi-lab",
        "--order-key",
        "v2.0.0",
    ]);
    let r = run(&mut c);
    assert_eq!(r.code, 0, "{}", r.all());
    let diff = srv.git("config", &["diff", "--stat", "main~1", "main"]);
    assert!(
        diff.contains("apps/sensor-app/overlays/pi-lab/kustomization.yaml"),
        "{diff}"
    );
    assert!(diff.contains("2 files changed"), "{diff}");
    let state = srv.show("config", "main", ".bump-manifest/state.json");
    assert!(
        state.contains("\"docker.io/acmeiot/sensor-app @ apps/sensor-app/overlays/pi-lab\""),
        "{state}"
    );
    // Semver order keys: v1.9.0 < v2.0.0 is refused.
    let mut c = cmd();
    c.args([
        "--repo",
        bare.to_str().unwrap(),
        "--image",
        "acmeiot/sensor-app",
        "--new-tag",
        "1.9.0",
    ])
    .args([
        "--path",
        "apps/sensor-app/overlays/pi-lab/",
        "--order-key",
        "v1.9.0",
    ]);
    let r = run(&mut c);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("not going backwards"), "{}", r.stderr);
    assert_eq!(srv.log("config", "main").len(), 2);
}

#[test]
fn token_never_reaches_git_argv_and_dotenv_is_written() {
    // A `git` wrapper first on PATH records every argv, then runs real git.
    let real = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let bin = tempfile::tempdir().unwrap();
    let argv_log = bin.path().join("argv.log");
    let wrapper = bin.path().join("git");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{real}' \"$@\"\n",
            argv_log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let srv = server();
    let out = tempfile::tempdir().unwrap();
    let dotenv = out.path().join("deploy.env");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    let r = run(bump(&srv, "1.5.0", Some(D1), Some("4"))
        .env("PATH", path)
        .env("BUMP_DOTENV", &dotenv));
    assert_eq!(r.code, 0, "{}", r.all());
    r.assert_no_secret(&[TOKEN]);
    let argv = std::fs::read_to_string(&argv_log).unwrap();
    assert!(argv.contains("clone") && argv.contains("push"), "{argv}");
    assert!(
        !argv.contains(TOKEN) && !argv.contains("Authorization"),
        "token in argv: {argv}"
    );
    let env = std::fs::read_to_string(&dotenv).unwrap();
    let head = &srv.log("config", "main")[0].0;
    assert!(
        env.contains(&format!("BUMP_MANIFEST_COMMIT={head}\n")),
        "{env}"
    );
    assert!(
        env.contains(&format!(
            "BUMP_MANIFEST_REFERENCE=docker.io/acmeiot/sensor-app:1.5.0@{D1}\n"
        )),
        "{env}"
    );
}

#[test]
fn crlf_anchors_and_missing_final_newline_survive_a_real_push() {
    let seed = tempfile::tempdir().unwrap();
    let original = "# values for the Pi fleet\r\nimage: &img\r\n  repository: docker.io/acmeiot/sensor-app # pinned\r\n  tag: '1.0'\r\n  digest: \"\"\r\n\r\nsidecar:\r\n  image: *img\r\nworker:\r\n  image:\r\n    <<: *img\r\n    tag: 1.0 # old";
    std::fs::write(seed.path().join("values.yaml"), original).unwrap();
    std::fs::write(seed.path().join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    for f in ["run.sh", "values.yaml"] {
        std::fs::set_permissions(seed.path().join(f), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let srv = GitServer::start("bot", TOKEN);
    srv.create_repo("config", "main", seed.path());
    let r = run(&mut bump(&srv, "1.1", Some(D1), None));
    assert_eq!(r.code, 0, "{}", r.all());
    let now = srv.show("config", "main", "values.yaml");
    let want = original
        .replace("tag: '1.0'", "tag: '1.1'")
        .replace("digest: \"\"", &format!("digest: \"{D1}\""))
        .replace(
            "tag: 1.0 # old",
            &format!("tag: \"1.1\" # old\r\n    digest: {D1}"),
        );
    assert_eq!(
        now, want,
        "anchored block edited in place, alias follows, merge-key override updated"
    );
    // File modes survive, for the edited file too.
    let tree = srv.git("config", &["ls-tree", "main"]);
    for f in ["run.sh", "values.yaml"] {
        assert!(
            tree.lines()
                .any(|l| l.starts_with("100755 blob") && l.ends_with(f)),
            "{tree}"
        );
    }
}

/// The harness's HTTP layer under a push bigger than git's 1 MiB post
/// buffer (chunked request body), then the tool on top of it.
#[test]
fn large_chunked_push_through_the_git_server_then_bump() {
    let srv = server();
    let work = tempfile::tempdir().unwrap();
    let basic = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("bot:{TOKEN}"))
    };
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .args(args)
            .current_dir(work.path())
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env(
                "GIT_CONFIG_VALUE_0",
                format!("Authorization: Basic {basic}"),
            )
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@e")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@e")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    git(&["clone", "-q", &srv.url("config"), "c"]);
    let mut rng = fastrand::Rng::with_seed(7);
    let blob: Vec<u8> = (0..3 * 1024 * 1024).map(|_| rng.u8(..)).collect();
    std::fs::write(work.path().join("c/firmware.bin"), blob).unwrap();
    git(&["-C", "c", "add", "firmware.bin"]);
    git(&["-C", "c", "commit", "-qm", "firmware"]);
    git(&["-C", "c", "push", "-q", "origin", "HEAD:main"]);
    assert_eq!(srv.log("config", "main").len(), 2);
    let r = run(&mut bump(&srv, "1.5.0", None, None));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(srv.log("config", "main").len(), 3);
}

#[test]
fn push_over_git_daemon() {
    let srv = server();
    let daemon = harness::git_server::GitDaemon::start(srv.root.path());
    let mut c = cmd();
    c.args([
        "--repo",
        &daemon.url("config"),
        "--image",
        "acmeiot/sensor-app",
        "--new-tag",
        "3.0.0",
    ]);
    let r = run(&mut c);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(srv.log("config", "main").len(), 2);
    assert!(
        srv.show("config", "main", "apps/mqtt/broker.yaml")
            .contains("acmeiot/sensor-app:3.0.0\"")
    );
}
