//! promote-image as a process against real docker-registry instances, the
//! harness's Bearer token server and its fault-injecting proxy. Digests at
//! DST are read back with `skopeo inspect --raw`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use harness::registry::{
    BearerConfig, Fault, FaultRule, Gateway, GatewayOptions, ImageSpec, TestImage, TestRegistry,
    push_image, sha256_digest, skopeo_raw, try_skopeo_raw,
};

const DST_USER: &str = "deployer";
const DST_PASS: &str = "dst-Secret-pw-9";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the binary with a clean environment plus `env`.
fn promote(args: &[&str], env: &[(&str, &str)], dir: &Path) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_promote-image"));
    cmd.env_clear()
        .env("HOME", dir)
        .env("DOCKER_CONFIG", dir.join("no-docker-config"))
        .env("PROMOTE_DOTENV", dir.join("promote.env"))
        .env("PROMOTE_RETRIES", "4")
        .current_dir(dir)
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    if std::env::var_os("SHOW_JOB_LOG").is_some() {
        eprintln!(
            "$ promote-image {}\n--- exit {}\n{}{}",
            args.join(" "),
            r.code,
            r.stdout,
            r.stderr
        );
    }
    for secret in [
        DST_PASS,
        "hub-token-xyz",
        "wrong-pass-123",
        "src-pass-4567",
        "job-token-abc",
    ] {
        assert!(
            !r.stdout.contains(secret) && !r.stderr.contains(secret),
            "secret leaked:\n{}\n{}",
            r.stdout,
            r.stderr
        );
    }
    r
}

fn insecure(hosts: &[String]) -> String {
    hosts.join(",")
}

fn small_spec(seed: u64) -> ImageSpec {
    ImageSpec {
        layer_sizes: vec![2000, 150_000, 40_000],
        seed,
        ..Default::default()
    }
}

/// DST serves the same bytes as SRC for the index and every child manifest.
fn assert_identical(src: &str, dst: &str, img: &TestImage, dst_creds: Option<(&str, &str)>) {
    assert_identical_with(src, None, dst, img, dst_creds);
}

fn assert_identical_with(
    src: &str,
    src_creds: Option<(&str, &str)>,
    dst: &str,
    img: &TestImage,
    dst_creds: Option<(&str, &str)>,
) {
    let s = skopeo_raw(&format!("{src}@{}", img.digest), src_creds);
    let d = skopeo_raw(&format!("{dst}@{}", img.digest), dst_creds);
    assert_eq!(s, d, "index bytes differ");
    assert_eq!(sha256_digest(&d), img.digest);
    for (platform, m) in &img.manifests {
        let d = skopeo_raw(&format!("{dst}@{}", m.digest), dst_creds);
        assert_eq!(sha256_digest(&d), m.digest, "{platform} manifest");
    }
}

#[test]
fn promotes_multi_arch_index_byte_for_byte_then_rerun_sends_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = TestRegistry::start();
    let dst = TestRegistry::start_with_htpasswd(DST_USER, DST_PASS);
    let img = push_image(&src, "staging/app", "build-7", &small_spec(1), None);
    let gw = Gateway::start(&dst.host(), GatewayOptions::default());
    let dst_name = format!("{}/prod/app", gw.host());
    let env = [
        ("INSECURE_REGISTRY", insecure(&[src.host(), gw.host()])),
        ("PROMOTE_DST_USERNAME", DST_USER.to_string()),
        ("PROMOTE_DST_PASSWORD", DST_PASS.to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = promote(
        &[
            &format!("{}/staging/app:build-7", src.host()),
            &format!("{dst_name}:1.0"),
            "--tag",
            "latest",
            "--platform",
            "linux/arm64,linux/amd64",
        ],
        &env,
        tmp.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let expected = format!("{dst_name}@{}", img.digest);
    assert_eq!(r.stdout, format!("{expected}\n"));
    let dotenv = std::fs::read_to_string(tmp.path().join("promote.env")).unwrap();
    assert!(
        dotenv.contains(&format!("PROMOTED_IMAGE={expected}\n")),
        "{dotenv}"
    );
    assert!(
        dotenv.contains(&format!("PROMOTED_DIGEST={}\n", img.digest)),
        "{dotenv}"
    );
    let creds = Some((DST_USER, DST_PASS));
    assert_identical(
        &format!("{}/staging/app", src.host()),
        &format!("{}/prod/app", dst.host()),
        &img,
        creds,
    );
    for tag in ["1.0", "latest"] {
        let bytes = skopeo_raw(&format!("{}/prod/app:{tag}", dst.host()), creds);
        assert_eq!(sha256_digest(&bytes), img.digest, "tag {tag}");
    }
    // Every blob was uploaded exactly once; manifests came after all blobs.
    let log = gw.requests();
    let blob_puts = log
        .iter()
        .filter(|l| l.method == "PUT" && l.path.contains("/blobs/uploads/"))
        .count();
    assert_eq!(blob_puts, img.blobs.len());
    let first_manifest_put = log
        .iter()
        .position(|l| l.method == "PUT" && l.path.contains("/manifests/"))
        .unwrap();
    let last_blob_put = log
        .iter()
        .rposition(|l| l.method == "PUT" && l.path.contains("/blobs/uploads/"))
        .unwrap();
    assert!(
        last_blob_put < first_manifest_put,
        "a manifest was pushed before every blob was in place"
    );
    assert!(gw.bytes_in() >= img.total_blob_bytes);
    assert!(r.stderr.contains("attestation"), "{}", r.stderr);

    // Re-run: nothing uploaded, nothing changed, few requests.
    gw.reset_counters();
    let r = promote(
        &[
            &format!("{}/staging/app:build-7", src.host()),
            &format!("{dst_name}:1.0"),
            "--tag",
            "latest",
        ],
        &env,
        tmp.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, format!("{expected}\n"));
    let log = gw.requests();
    assert!(
        log.iter().all(|l| l.method == "GET" || l.method == "HEAD"),
        "{log:?}"
    );
    assert_eq!(gw.bytes_in(), 0);
    assert!(
        r.stderr.contains("already at the destination"),
        "{}",
        r.stderr
    );
    let platforms = 2;
    let total = log.len() + 1; // + the one GET of SRC's manifest (SRC is not behind the gateway)
    assert!(
        total <= 5 * platforms,
        "rerun took {total} requests: {log:?}"
    );
}

#[test]
fn within_one_registry_blobs_are_mounted_not_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start();
    let img = push_image(&reg, "staging/app", "b1", &small_spec(2), None);
    let gw = Gateway::start(&reg.host(), GatewayOptions::default());
    let r = promote(
        &[
            &format!("{}/staging/app:b1", gw.host()),
            &format!("{}/prod/app:2.0", gw.host()),
            "--insecure-registry",
            &gw.host(),
        ],
        &[],
        tmp.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_identical(
        &format!("{}/staging/app", reg.host()),
        &format!("{}/prod/app", reg.host()),
        &img,
        None,
    );
    let log = gw.requests();
    assert!(
        !log.iter()
            .any(|l| l.method == "PUT" && l.path.contains("/blobs/")),
        "a blob was uploaded: {log:?}"
    );
    let mounts = log
        .iter()
        .filter(|l| l.method == "POST" && l.path.contains("mount=") && l.status == 201)
        .count();
    assert_eq!(mounts, img.blobs.len());
    let manifest_bytes: usize = img.manifests.len() + 1;
    assert!(
        gw.bytes_in() < 64 * 1024 * manifest_bytes as u64,
        "only manifests are sent: {}",
        gw.bytes_in()
    );
    assert!(
        r.stderr.contains("mounted from staging/app"),
        "{}",
        r.stderr
    );
}

#[test]
fn bearer_token_flow_with_separate_source_and_destination_logins() {
    let tmp = tempfile::tempdir().unwrap();
    let src_backend = TestRegistry::start();
    let dst_backend = TestRegistry::start();
    let img = push_image(&src_backend, "staging/app", "b3", &small_spec(3), None);
    let src_gw = Gateway::start(
        &src_backend.host(),
        GatewayOptions {
            bearer: Some(BearerConfig::new("gitlab-ci-token", "job-token-abc")),
        },
    );
    let mut hub = BearerConfig::new("hubuser", "hub-token-xyz");
    hub.ttl = Duration::from_secs(2);
    let dst_gw = Gateway::start(&dst_backend.host(), GatewayOptions { bearer: Some(hub) });
    // A 429 asking for 2 s on the first manifest push outlives the 2 s
    // token: the retry meets an expired token and must refresh it.
    dst_gw.inject(
        FaultRule::new(Fault::Status {
            code: 429,
            retry_after: Some(2),
        })
        .method("PUT")
        .path_contains("/manifests/"),
    );
    let env = [
        (
            "INSECURE_REGISTRY",
            insecure(&[src_gw.host(), dst_gw.host()]),
        ),
        ("PROMOTE_SRC_USERNAME", "gitlab-ci-token".to_string()),
        ("PROMOTE_SRC_PASSWORD", "job-token-abc".to_string()),
        ("PROMOTE_DST_USERNAME", "hubuser".to_string()),
        ("PROMOTE_DST_PASSWORD", "hub-token-xyz".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = promote(
        &[
            &format!("{}/staging/app:b3", src_gw.host()),
            &format!("{}/acme/app:3.0", dst_gw.host()),
        ],
        &env,
        tmp.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_identical(
        &format!("{}/staging/app", src_backend.host()),
        &format!("{}/acme/app", dst_backend.host()),
        &img,
        None,
    );
    assert!(
        src_gw
            .token_scopes()
            .iter()
            .all(|s| s == "repository:staging/app:pull"),
        "{:?}",
        src_gw.token_scopes()
    );
    let dst_scopes = dst_gw.token_scopes();
    assert!(
        dst_scopes.contains(&"repository:acme/app:pull,push".to_string()),
        "{dst_scopes:?}"
    );
    let refreshed = dst_scopes
        .iter()
        .filter(|s| *s == "repository:acme/app:pull,push")
        .count();
    assert!(
        refreshed >= 2,
        "token was not refreshed after expiry: {dst_scopes:?}"
    );

    // Wrong destination token: exit 3, the token endpoint's reason, no secret.
    let env = [
        (
            "INSECURE_REGISTRY",
            insecure(&[src_gw.host(), dst_gw.host()]),
        ),
        ("PROMOTE_SRC_USERNAME", "gitlab-ci-token".to_string()),
        ("PROMOTE_SRC_PASSWORD", "job-token-abc".to_string()),
        ("PROMOTE_DST_USERNAME", "hubuser".to_string()),
        ("PROMOTE_DST_PASSWORD", "wrong-pass-123".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = promote(
        &[
            &format!("{}/staging/app:b3", src_gw.host()),
            &format!("{}/acme/other:1", dst_gw.host()),
        ],
        &env,
        tmp.path(),
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    let last = r.stderr.lines().last().unwrap();
    assert!(last.starts_with("promote-image: error: "), "{last}");
    assert!(
        last.contains("token exchange")
            && last.contains("401")
            && last.contains("incorrect username or password"),
        "{last}"
    );
    assert!(last.contains("\"hubuser\""), "{last}");
}

#[test]
fn faults_are_retried_and_an_interrupted_run_leaves_no_tag() {
    let tmp = tempfile::tempdir().unwrap();
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let img = push_image(&src, "staging/app", "b4", &small_spec(4), None);
    let src_gw = Gateway::start(&src.host(), GatewayOptions::default());
    let dst_gw = Gateway::start(&dst.host(), GatewayOptions::default());
    let env = [(
        "INSECURE_REGISTRY",
        insecure(&[src_gw.host(), dst_gw.host()]),
    )];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let src_ref = format!("{}/staging/app:b4", src_gw.host());

    // Beyond the retry bound on one blob upload: exit 3, no manifest, no tag.
    dst_gw.inject(
        FaultRule::new(Fault::Status {
            code: 503,
            retry_after: None,
        })
        .method("POST")
        .path_contains("/blobs/uploads/")
        .times(100),
    );
    let r = promote(
        &[&src_ref, &format!("{}/prod/app:4.0", dst_gw.host())],
        &env,
        tmp.path(),
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.lines().last().unwrap().contains("503"),
        "{}",
        r.stderr
    );
    assert!(
        try_skopeo_raw(&format!("{}/prod/app:4.0", dst.host()), None).is_err(),
        "a tag exists after a failed run"
    );
    assert!(try_skopeo_raw(&format!("{}/prod/app@{}", dst.host(), img.digest), None).is_err());
    assert!(
        !dst_gw
            .requests()
            .iter()
            .any(|l| l.method == "PUT" && l.path.contains("/manifests/"))
    );

    // Transient faults of every kind: retried, same digest.
    drop(dst_gw); // its 503 rule is not used up
    let dst_gw2 = Gateway::start(&dst.host(), GatewayOptions::default());
    dst_gw2.inject(
        FaultRule::new(Fault::Status {
            code: 429,
            retry_after: Some(1),
        })
        .method("POST")
        .path_contains("/blobs/uploads/"),
    );
    dst_gw2.inject(
        FaultRule::new(Fault::Status {
            code: 502,
            retry_after: None,
        })
        .method("PUT")
        .path_contains("/manifests/"),
    );
    dst_gw2.inject(
        FaultRule::new(Fault::Reset)
            .method("HEAD")
            .path_contains("/blobs/"),
    );
    src_gw.inject(
        FaultRule::new(Fault::CutResponseBody(20_000))
            .method("GET")
            .path_contains("/blobs/sha256:"),
    );
    src_gw.inject(
        FaultRule::new(Fault::Status {
            code: 503,
            retry_after: None,
        })
        .method("GET")
        .path_contains("/manifests/"),
    );
    let env = [(
        "INSECURE_REGISTRY",
        insecure(&[src_gw.host(), dst_gw2.host()]),
    )];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = promote(
        &[&src_ref, &format!("{}/prod/app:4.0", dst_gw2.host())],
        &env,
        tmp.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("retrying"), "{}", r.stderr);
    assert_identical(
        &format!("{}/staging/app", src.host()),
        &format!("{}/prod/app", dst.host()),
        &img,
        None,
    );
    let tagged = skopeo_raw(&format!("{}/prod/app:4.0", dst.host()), None);
    assert_eq!(sha256_digest(&tagged), img.digest);
}

#[test]
fn single_manifest_by_digest_and_platform_check() {
    let tmp = tempfile::tempdir().unwrap();
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let spec = ImageSpec {
        index: false,
        attestation: false,
        layer_sizes: vec![5000],
        seed: 5,
        ..Default::default()
    };
    let img = push_image(&src, "staging/one", "x", &spec, None);
    let ins = insecure(&[src.host(), dst.host()]);
    let src_ref = format!("{}/staging/one@{}", src.host(), img.digest);
    let r = promote(
        &[
            &src_ref,
            &format!("{}/prod/one", dst.host()),
            "--insecure-registry",
            &ins,
            "--platform",
            "linux/arm64",
        ],
        &[],
        tmp.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout.trim(),
        format!("{}/prod/one@{}", dst.host(), img.digest)
    );
    assert_eq!(
        sha256_digest(&skopeo_raw(
            &format!("{}/prod/one@{}", dst.host(), img.digest),
            None
        )),
        img.digest
    );

    let r = promote(
        &[
            &src_ref,
            &format!("{}/prod/two", dst.host()),
            "--insecure-registry",
            &ins,
            "--platform",
            "linux/s390x",
        ],
        &[],
        tmp.path(),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("no linux/s390x manifest (it has: linux/arm64)"),
        "{}",
        r.stderr
    );
}

#[test]
fn failures_map_to_exit_codes_with_one_line_causes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = TestRegistry::start();
    let dst = TestRegistry::start_with_htpasswd(DST_USER, DST_PASS);
    push_image(&src, "staging/app", "b6", &small_spec(6), None);
    let ins = insecure(&[src.host(), dst.host()]);
    let last = |r: &Run| r.stderr.lines().last().unwrap_or_default().to_string();

    // Bad references and flags: exit 2.
    let r = promote(&["Not A Ref", "x/y"], &[], tmp.path());
    assert_eq!(r.code, 2);
    assert!(
        last(&r).contains("SRC: invalid image reference"),
        "{}",
        r.stderr
    );
    let r = promote(&["a/b", "x/y", "--dst-username", "u"], &[], tmp.path());
    assert_eq!(r.code, 2);
    assert!(
        last(&r).contains("--dst-username is set but --dst-password is not"),
        "{}",
        r.stderr
    );
    let r = promote(&["a/b", "x/y", "--parallel", "0"], &[], tmp.path());
    assert_eq!(r.code, 2, "clap usage errors exit 2");

    // Missing source image: exit 3.
    let r = promote(
        &[
            &format!("{}/staging/app:nope", src.host()),
            &format!("{}/prod/app", dst.host()),
            "--insecure-registry",
            &ins,
        ],
        &[],
        tmp.path(),
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        last(&r).contains("staging/app:nope not found"),
        "{}",
        r.stderr
    );

    // Wrong DST password: exit 3 naming the user, not the password.
    let r = promote(
        &[
            &format!("{}/staging/app:b6", src.host()),
            &format!("{}/prod/app", dst.host()),
            "--insecure-registry",
            &ins,
        ],
        &[
            ("PROMOTE_DST_USERNAME", DST_USER),
            ("PROMOTE_DST_PASSWORD", "wrong-pass-123"),
        ],
        tmp.path(),
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        last(&r).contains("rejected the username/password of user \"deployer\""),
        "{}",
        r.stderr
    );

    // No DST credentials at all.
    let r = promote(
        &[
            &format!("{}/staging/app:b6", src.host()),
            &format!("{}/prod/app", dst.host()),
            "--insecure-registry",
            &ins,
        ],
        &[],
        tmp.path(),
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        last(&r).contains("requires a login and no credentials"),
        "{}",
        r.stderr
    );

    // Nothing listening: exit 3 after bounded retries.
    let dead = format!("127.0.0.1:{}", harness::registry::free_port());
    let r = promote(
        &[
            &format!("{dead}/a/b:1"),
            &format!("{}/prod/app", dst.host()),
            "--insecure-registry",
            &dead,
        ],
        &[("PROMOTE_RETRIES", "2")],
        tmp.path(),
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(last(&r).to_lowercase().contains("connect"), "{}", r.stderr);
}

#[test]
fn layers_stream_with_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let spec = ImageSpec {
        index: false,
        attestation: false,
        layer_sizes: vec![96 * 1024 * 1024],
        seed: 7,
        ..Default::default()
    };
    let img = push_image(&src, "big/app", "1", &spec, None);
    let r = promote(
        &[
            &format!("{}/big/app:1", src.host()),
            &format!("{}/big/app:1", dst.host()),
            "--insecure-registry",
            &insecure(&[src.host(), dst.host()]),
        ],
        &[],
        tmp.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        sha256_digest(&skopeo_raw(&format!("{}/big/app:1", dst.host()), None)),
        img.digest
    );
    // "peak memory 23.4 MB" from the job's summary (Linux VmHWM).
    let peak = r
        .stderr
        .split("peak memory ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .expect("summary names peak memory");
    assert!(
        peak < 48.0,
        "peak memory {peak} MB for a 96 MB layer: not streaming\n{}",
        r.stderr
    );
}

#[test]
fn promotes_a_buildah_built_docker_manifest_list() {
    let tmp = tempfile::tempdir().unwrap();
    let src = TestRegistry::start();
    let dst = TestRegistry::start_with_htpasswd(DST_USER, DST_PASS);
    let digest = harness::registry::buildah_push_image(
        &src,
        "staging/bh",
        "1",
        &["linux/arm64", "linux/amd64"],
        50_000,
        "v2s2",
    );
    let src_raw = skopeo_raw(&format!("{}/staging/bh:1", src.host()), None);
    assert_eq!(sha256_digest(&src_raw), digest);
    let r = promote(
        &[
            &format!("{}/staging/bh:1", src.host()),
            &format!("{}/prod/bh:1", dst.host()),
            "--platform",
            "linux/arm64,linux/amd64",
        ],
        &[
            ("INSECURE_REGISTRY", &insecure(&[src.host(), dst.host()])),
            ("PROMOTE_DST_USERNAME", DST_USER),
            ("PROMOTE_DST_PASSWORD", DST_PASS),
        ],
        tmp.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("Docker manifest list"), "{}", r.stderr);
    let dst_raw = skopeo_raw(
        &format!("{}/prod/bh:1", dst.host()),
        Some((DST_USER, DST_PASS)),
    );
    assert_eq!(dst_raw, src_raw);
    assert_eq!(r.stdout.trim(), format!("{}/prod/bh@{digest}", dst.host()));
}

#[test]
fn source_and_destination_logins_are_discovered_independently() {
    let tmp = tempfile::tempdir().unwrap();
    let src = TestRegistry::start_with_htpasswd("reader", "src-pass-4567");
    let dst = TestRegistry::start_with_htpasswd(DST_USER, DST_PASS);
    let img = push_image(&src, "staging/app", "c1", &small_spec(8), None);
    // SRC's login only in docker's config.json, DST's only in the flags'
    // variables: each registry gets its own.
    let cfg = tmp.path().join("docker");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("config.json"),
        serde_json::json!({"auths": {src.host(): {"auth": "cmVhZGVyOnNyYy1wYXNzLTQ1Njc="}}})
            .to_string(),
    )
    .unwrap();
    let r = promote(
        &[
            &format!("{}/staging/app:c1", src.host()),
            &format!("{}/prod/app:c1", dst.host()),
        ],
        &[
            ("INSECURE_REGISTRY", &insecure(&[src.host(), dst.host()])),
            ("DOCKER_CONFIG", cfg.to_str().unwrap()),
            ("PROMOTE_DST_USERNAME", DST_USER),
            ("PROMOTE_DST_PASSWORD", DST_PASS),
        ],
        tmp.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("source") && r.stderr.contains("user reader from"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("user deployer from flags"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("src-pass-4567"));
    assert_identical_with(
        &format!("{}/staging/app", src.host()),
        Some(("reader", "src-pass-4567")),
        &format!("{}/prod/app", dst.host()),
        &img,
        Some((DST_USER, DST_PASS)),
    );
}
