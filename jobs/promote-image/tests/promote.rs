//! promote-image as a process against real docker-registry instances, the
//! harness's Bearer token server and its fault-injecting proxy. Digests at
//! DST are read back with `skopeo inspect --raw`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::job::Run;
use harness::registry::{
    BearerConfig, Fault, FaultRule, Gateway, GatewayOptions, ImageSpec, TestImage, TestRegistry,
    build_layout, free_port, push_image, push_layout, sha256_digest, skopeo_raw, try_skopeo_raw,
};

const DST_USER: &str = "deployer";
const DST_PASS: &str = "dst-Secret-pw-9";
const READER_PASS: &str = "reader-Pw-31337";
const PUSHER_PASS: &str = "pusher-Pw-27182";

const SECRETS: &[&str] = &[
    DST_PASS,
    "hub-token-xyz",
    "wrong-pass-123",
    "src-pass-4567",
    "job-token-abc",
    READER_PASS,
    PUSHER_PASS,
];

fn job(dir: &Path) -> harness::job::Job {
    harness::job::Job::new(env!("CARGO_BIN_EXE_promote-image"), dir)
        .env("PROMOTE_DOTENV", dir.join("promote.env"))
        .env("PROMOTE_RETRIES", "4")
}

/// Runs the binary with a clean environment plus `env`; no secret may
/// show in its output, in any form, nor in any file it wrote.
fn promote(args: &[&str], env: &[(&str, &str)], dir: &Path) -> Run {
    let r = job(dir).args(args).envs(env.iter().copied()).run();
    r.assert_no_secret(SECRETS);
    // What the job wrote (the test's own docker config.json is beside it).
    if let Ok(text) = std::fs::read_to_string(dir.join("promote.env")) {
        harness::job::assert_no_secret_in("promote.env", &text, SECRETS);
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
    // The child's peak RSS measured from outside, by GNU time (wait4's
    // rusage), not by the job's own summary.
    let r = harness::job::Job::new("/usr/bin/time", tmp.path())
        .args(["-f", "maxrss-kb=%M", env!("CARGO_BIN_EXE_promote-image")])
        .args([
            &format!("{}/big/app:1", src.host()),
            &format!("{}/big/app:1", dst.host()),
            "--insecure-registry",
            &insecure(&[src.host(), dst.host()]),
        ])
        .env("PROMOTE_DOTENV", tmp.path().join("promote.env"))
        .run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        sha256_digest(&skopeo_raw(&format!("{}/big/app:1", dst.host()), None)),
        img.digest
    );
    let kb: u64 = r
        .stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("maxrss-kb="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no maxrss line from /usr/bin/time:\n{}", r.stderr));
    assert!(kb > 1024, "implausible peak RSS {kb} kB");
    assert!(
        kb < 48 * 1024,
        "peak RSS {kb} kB for a 96 MB layer: not streaming\n{}",
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

/// `PUT /v2/REPO/manifests/REFERENCE` straight to a registry (plain HTTP,
/// no auth); returns the status. Moves a tag in milliseconds, so a test can
/// do it while the job waits out a `Retry-After`.
fn put_manifest(host: &str, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "PUT /v2/{repo}/manifests/{reference} HTTP/1.0\r\nHost: {host}\r\nContent-Type: {media_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {resp:?}"))
}

/// Every `sha256:<hex>` named in a request path (`%3A` counts as `:`; the
/// tags `sha256-<hex>`, `sha256-<hex>.sig`, `.att` of `--with-signatures`
/// name their digest too).
fn digests_named(path: &str) -> Vec<String> {
    let p = path
        .replace("%3A", ":")
        .replace("%3a", ":")
        .replace("/sha256-", "/sha256:");
    p.match_indices("sha256:")
        .filter_map(|(i, _)| p.get(i..i + 71))
        .filter(|d| d[7..].bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string)
        .collect()
}

/// Index/manifest and blob digests of a test image.
fn digests_of(img: &TestImage) -> Vec<String> {
    std::iter::once(img.digest.clone())
        .chain(img.manifests.iter().map(|(_, m)| m.digest.clone()))
        .chain(img.blobs.iter().map(|b| b.digest.clone()))
        .collect()
}

#[test]
fn source_tag_is_resolved_once_even_when_it_moves_mid_promotion() {
    let tmp = tempfile::tempdir().unwrap();
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let original = push_image(&src, "staging/app", "build", &small_spec(11), None);
    let other = push_image(&src, "staging/app", "other", &small_spec(12), None);
    assert_ne!(original.digest, other.digest);
    let original_raw = skopeo_raw(
        &format!("{}/staging/app@{}", src.host(), original.digest),
        None,
    );
    let other_raw = skopeo_raw(&format!("{}/staging/app:other", src.host()), None);
    let gw = Gateway::start(&src.host(), GatewayOptions::default());
    // Hold the job right after it resolved the tag: the first try of every
    // child-manifest GET (all by digest) gets a 429 asking for 3 s.
    gw.inject(
        FaultRule::new(Fault::Status {
            code: 429,
            retry_after: Some(3),
        })
        .method("GET")
        .path_contains("/manifests/sha256:")
        .times(original.manifests.len()),
    );
    let dst_name = format!("{}/prod/app", dst.host());
    let ins = insecure(&[gw.host(), dst.host()]);
    let src_ref = format!("{}/staging/app:build", gw.host());
    let dst_ref = format!("{dst_name}:1.0");
    let (r, moved_at) = std::thread::scope(|s| {
        let job = s.spawn(|| {
            promote(
                &[&src_ref, &dst_ref, "--tag", "stable"],
                &[("INSECURE_REGISTRY", ins.as_str())],
                tmp.path(),
            )
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        while !gw.requests().iter().any(|l| l.status == 429) {
            assert!(
                !job.is_finished() && Instant::now() < deadline,
                "the job never reached a child manifest: {:?}",
                gw.requests()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // The tag moves to another image while the job waits (straight at
        // the registry, so the gateway log holds only the job's requests).
        let status = put_manifest(
            &src.host(),
            "staging/app",
            "build",
            &other.media_type,
            &other_raw,
        );
        assert_eq!(status, 201, "retag failed");
        let moved_at = gw.requests().len();
        (job.join().unwrap(), moved_at)
    });
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, format!("{dst_name}@{}\n", original.digest));
    // The tag really moved ...
    assert_eq!(
        sha256_digest(&skopeo_raw(
            &format!("{}/staging/app:build", src.host()),
            None
        )),
        other.digest
    );
    // ... and DST holds the ORIGINAL image, byte for byte, under both tags.
    for tag in ["1.0", "stable"] {
        let d = skopeo_raw(&format!("{dst_name}:{tag}"), None);
        assert!(d == original_raw, "DST:{tag} is not the original index");
    }
    for (platform, m) in &original.manifests {
        let d = skopeo_raw(&format!("{dst_name}@{}", m.digest), None);
        assert_eq!(sha256_digest(&d), m.digest, "{platform}");
    }
    assert!(try_skopeo_raw(&format!("{dst_name}@{}", other.digest), None).is_err());

    // The gateway log: one manifest request names the tag; every other
    // manifest and blob request names a digest of the original image.
    let log = gw.requests();
    let by_tag: Vec<_> = log
        .iter()
        .filter(|l| {
            l.path
                .split('?')
                .next()
                .unwrap()
                .ends_with("/manifests/build")
        })
        .collect();
    assert_eq!(by_tag.len(), 1, "{log:?}");
    assert_eq!((by_tag[0].method.as_str(), by_tag[0].status), ("GET", 200));
    let original_digests = digests_of(&original);
    let other_digests = digests_of(&other);
    let mut blob_gets = 0;
    for (i, l) in log.iter().enumerate() {
        assert!(
            l.method == "GET" || l.method == "HEAD",
            "SRC was written to: {l:?}"
        );
        let is_manifest = l.path.contains("/manifests/");
        let is_blob = l.path.contains("/blobs/");
        if std::ptr::eq(l, by_tag[0]) || !(is_manifest || is_blob) {
            continue;
        }
        let named = digests_named(&l.path);
        assert_eq!(named.len(), 1, "not by digest: {l:?}");
        assert!(
            original_digests.contains(&named[0]),
            "a digest that is not the original image's: {l:?}"
        );
        assert!(!other_digests.contains(&named[0]), "{l:?}");
        if is_blob && l.method == "GET" {
            blob_gets += 1;
            assert!(
                i >= moved_at,
                "blob read before the tag moved: the race was not exercised"
            );
        }
    }
    assert_eq!(blob_gets, original.blobs.len(), "{log:?}");
}

#[test]
fn extra_tags_from_repeated_flag_and_comma_separated_variable_share_one_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let img = push_image(&src, "staging/app", "b21", &small_spec(21), None);
    // `prod` already exists at DST on another image: it must be moved.
    let older = push_image(&dst, "prod/app", "prod", &small_spec(22), None);
    let src_raw = skopeo_raw(&format!("{}/staging/app:b21", src.host()), None);
    let gw = Gateway::start(&dst.host(), GatewayOptions::default());
    let dst_name = format!("{}/prod/app", gw.host());
    let ins = insecure(&[src.host(), gw.host()]);
    let src_ref = format!("{}/staging/app:b21", src.host());
    let tag_puts = |log: &[harness::registry::Logged]| -> Vec<String> {
        let mut t: Vec<String> = log
            .iter()
            .filter(|l| l.method == "PUT" && l.path.contains("/manifests/"))
            .map(|l| l.path.rsplit('/').next().unwrap().to_string())
            .filter(|r| !r.starts_with("sha256:"))
            .collect();
        t.sort();
        t
    };
    let all_at_digest = |tags: &[&str]| {
        for t in tags {
            let d = skopeo_raw(&format!("{}/prod/app:{t}", dst.host()), None);
            assert!(d == src_raw, "DST:{t} is not SRC's index");
        }
    };

    // --tag twice (long and short form) plus DST's own tag.
    let r = promote(
        &[
            &src_ref,
            &format!("{dst_name}:1.0"),
            "--tag",
            "stable",
            "-t",
            "prod",
        ],
        &[("INSECURE_REGISTRY", &ins)],
        tmp.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, format!("{dst_name}@{}\n", img.digest));
    assert_eq!(tag_puts(&gw.requests()), ["1.0", "prod", "stable"]);
    all_at_digest(&["1.0", "stable", "prod"]);
    assert_ne!(older.digest, img.digest);

    // Re-run with the same tags from PROMOTE_TAGS: nothing is written.
    gw.reset_counters();
    let r = promote(
        &[&src_ref, &format!("{dst_name}:1.0")],
        &[("INSECURE_REGISTRY", &ins), ("PROMOTE_TAGS", "stable,prod")],
        tmp.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, format!("{dst_name}@{}\n", img.digest));
    let log = gw.requests();
    assert!(
        log.iter().all(|l| l.method == "GET" || l.method == "HEAD"),
        "a re-run wrote to DST: {log:?}"
    );
    assert!(
        !log.iter().any(|l| l.path.contains("/blobs/")),
        "a re-run touched blobs: {log:?}"
    );
    assert_eq!(gw.bytes_in(), 0);
    assert!(
        r.stderr
            .contains("tags written: none (unchanged: 1.0, stable, prod)"),
        "{}",
        r.stderr
    );

    // New tags from PROMOTE_TAGS on the finished image: only tag PUTs.
    gw.reset_counters();
    let r = promote(
        &[&src_ref, &dst_name],
        &[
            ("INSECURE_REGISTRY", &ins),
            ("PROMOTE_TAGS", "edge,candidate"),
        ],
        tmp.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let log = gw.requests();
    assert!(
        log.iter()
            .all(|l| matches!(l.method.as_str(), "GET" | "HEAD")
                || (l.method == "PUT" && l.path.contains("/manifests/"))),
        "{log:?}"
    );
    assert_eq!(tag_puts(&log), ["candidate", "edge"]);
    all_at_digest(&["1.0", "stable", "prod", "edge", "candidate"]);
}

/// `docker-registry` with htpasswd basic auth for TWO users and a JSON
/// debug log naming the user of every request that touches storage
/// (`auth.user.name`).
struct TwoUserRegistry {
    child: Child,
    dir: tempfile::TempDir,
    host: String,
}

impl TwoUserRegistry {
    fn start(users: &[(&str, &str)]) -> TwoUserRegistry {
        let dir = tempfile::tempdir().unwrap();
        let mut htpasswd = Vec::new();
        for (u, p) in users {
            // -i: the password comes from stdin, not argv.
            let mut c = Command::new("htpasswd")
                .args(["-Bni", u])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("htpasswd (apache2-utils)");
            c.stdin
                .take()
                .unwrap()
                .write_all(format!("{p}\n").as_bytes())
                .unwrap();
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success());
            htpasswd.extend(String::from_utf8(out.stdout).unwrap().trim().bytes());
            htpasswd.push(b'\n');
        }
        std::fs::write(dir.path().join("htpasswd"), htpasswd).unwrap();
        let host = format!("127.0.0.1:{}", free_port());
        let config = format!(
            "version: 0.1\nlog:\n  level: debug\n  formatter: json\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n  secret: two-users\nauth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
            dir.path().join("storage").display(),
            dir.path().join("htpasswd").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(k);
            }
        }
        let mut reg = TwoUserRegistry {
            child: cmd.spawn().expect("docker-registry"),
            dir,
            host,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&reg.host).is_err() {
            assert!(
                reg.child.try_wait().unwrap().is_none() && Instant::now() < deadline,
                "docker-registry did not start: {}",
                reg.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for TwoUserRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn same_registry_with_different_logins_uses_each_for_its_side() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = TwoUserRegistry::start(&[("reader", READER_PASS), ("pusher", PUSHER_PASS)]);
    let layout = tmp.path().join("layout");
    let img = build_layout(&layout, "b31", &small_spec(31));
    push_layout(
        &layout,
        "b31",
        &format!("{}/staging/app:b31", reg.host),
        Some(("reader", READER_PASS)),
    );
    let before = reg.log().len();
    let src_ref = format!("{}/staging/app:b31", reg.host);
    let dst_ref = format!("{}/prod/app:3.1", reg.host);
    let r = promote(
        &[
            &src_ref,
            &dst_ref,
            "--insecure-registry",
            &reg.host,
            "--src-username",
            "reader",
            "--src-password",
            READER_PASS,
            "--dst-username",
            "pusher",
            "--dst-password",
            PUSHER_PASS,
        ],
        &[],
        tmp.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("user reader from flags") && r.stderr.contains("user pusher from flags"),
        "{}",
        r.stderr
    );
    assert_identical_with(
        &format!("{}/staging/app", reg.host),
        Some(("reader", READER_PASS)),
        &format!("{}/prod/app", reg.host),
        &img,
        Some(("pusher", PUSHER_PASS)),
    );
    // The registry's own debug log, grouped by request id: who sent which
    // request during the job (storage lines carry `auth.user.name`).
    let log = reg.log();
    let mut requests: std::collections::BTreeMap<String, (String, String, bool, Option<String>)> =
        Default::default();
    for line in log[before..].lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(id), Some(uri), Some(method)) = (
            v["http.request.id"].as_str(),
            v["http.request.uri"].as_str(),
            v["http.request.method"].as_str(),
        ) else {
            continue;
        };
        let e = requests
            .entry(id.to_string())
            .or_insert_with(|| (method.to_string(), uri.to_string(), false, None));
        if v["msg"] == "authorized request" {
            e.2 = true;
        }
        if let Some(u) = v["auth.user.name"].as_str() {
            assert!(e.3.is_none() || e.3.as_deref() == Some(u), "{line}");
            e.3 = Some(u.to_string());
        }
    }
    let (mut by_reader, mut by_pusher) = (0, 0);
    for (method, uri, authorized, user) in requests.values() {
        let side = if uri.starts_with("/v2/staging/app/") {
            "reader"
        } else if uri.starts_with("/v2/prod/app/") {
            "pusher"
        } else {
            continue;
        };
        if !authorized {
            continue; // a 401 challenge, no user yet
        }
        assert_eq!(user.as_deref(), Some(side), "{method} {uri}\n{log}");
        if side == "reader" {
            assert!(method == "GET" || method == "HEAD", "{method} {uri}");
            by_reader += 1;
        } else {
            by_pusher += 1;
        }
    }
    // SRC: the tag and every child manifest; DST: HEADs, mounts, manifests.
    assert!(by_reader > img.manifests.len(), "{by_reader}\n{log}");
    assert!(by_pusher > img.blobs.len(), "{by_pusher}\n{log}");
    assert!(
        r.stderr.contains("mounted from staging/app"),
        "{}",
        r.stderr
    );

    // A wrong SRC password fails on SRC's side (exit 3, naming the
    // reader), with the right DST login beside it; neither password shows.
    let r = promote(
        &[
            &src_ref,
            &format!("{}/prod/other:1", reg.host),
            "--insecure-registry",
            &reg.host,
            "--src-username",
            "reader",
            "--src-password",
            "wrong-pass-123",
            "--dst-username",
            "pusher",
            "--dst-password",
            PUSHER_PASS,
        ],
        &[],
        tmp.path(),
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    let last = r.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("rejected the username/password of user \"reader\""),
        "{last}"
    );
}

#[test]
fn blobs_already_at_the_destination_are_not_sent_again() {
    let tmp = tempfile::tempdir().unwrap();
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    // Same seed, one more layer: B shares A's first two layers per platform
    // and the attestation blobs, and has new configs and third layers.
    let a_spec = ImageSpec {
        layer_sizes: vec![2000, 150_000],
        seed: 41,
        ..Default::default()
    };
    let b_spec = ImageSpec {
        layer_sizes: vec![2000, 150_000, 40_000],
        ..a_spec.clone()
    };
    let a = push_image(&src, "staging/app", "a", &a_spec, None);
    let b = push_image(&src, "staging/app", "b", &b_spec, None);
    let shared: Vec<_> = b
        .blobs
        .iter()
        .filter(|x| a.blobs.iter().any(|y| y.digest == x.digest))
        .collect();
    let new: Vec<_> = b
        .blobs
        .iter()
        .filter(|x| !a.blobs.iter().any(|y| y.digest == x.digest))
        .collect();
    assert!(!shared.is_empty() && !new.is_empty());
    let gw = Gateway::start(&dst.host(), GatewayOptions::default());
    let ins = insecure(&[src.host(), gw.host()]);
    let r = promote(
        &[
            &format!("{}/staging/app:a", src.host()),
            &format!("{}/prod/app:a", gw.host()),
        ],
        &[("INSECURE_REGISTRY", &ins)],
        tmp.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    gw.reset_counters();
    let r = promote(
        &[
            &format!("{}/staging/app:b", src.host()),
            &format!("{}/prod/app:b", gw.host()),
        ],
        &[("INSECURE_REGISTRY", &ins)],
        tmp.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_identical(
        &format!("{}/staging/app", src.host()),
        &format!("{}/prod/app", dst.host()),
        &b,
        None,
    );
    let log = gw.requests();
    let uploaded: Vec<String> = log
        .iter()
        .filter(|l| l.method == "PUT" && l.path.contains("/blobs/uploads/"))
        .flat_map(|l| digests_named(&l.path))
        .collect();
    let mut want: Vec<String> = new.iter().map(|x| x.digest.clone()).collect();
    let mut got = uploaded.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want, "uploads: {log:?}");
    // Platform manifests new in B: their shared blobs were checked with
    // HEAD (and, above, not uploaded). A manifest B shares with A (the
    // attestation) was found at DST, so its blobs needed no check at all.
    let head = |what: &str| {
        log.iter()
            .any(|l| l.method == "HEAD" && l.path.ends_with(what))
    };
    let mut checked = 0;
    for (platform, m) in &b.manifests {
        if a.manifests.iter().any(|(_, x)| x.digest == m.digest) {
            assert!(head(&format!("/manifests/{}", m.digest)), "{platform}");
            assert!(
                !log.iter()
                    .any(|l| l.method == "PUT" && l.path.contains(&m.digest)),
                "{platform} manifest was pushed again"
            );
            continue;
        }
        let raw = skopeo_raw(&format!("{}/staging/app@{}", src.host(), m.digest), None);
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        let refs = std::iter::once(&v["config"]).chain(v["layers"].as_array().unwrap());
        for d in refs.filter_map(|d| d["digest"].as_str()) {
            if shared.iter().any(|x| x.digest == d) {
                assert!(
                    head(&format!("/blobs/{d}")),
                    "{d} was not checked with HEAD"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 2, "no shared layer was exercised");
    let new_bytes: u64 = new.iter().map(|x| x.size).sum();
    assert!(
        gw.bytes_in() < new_bytes + 64 * 1024,
        "{} bytes sent, new blobs are {new_bytes}",
        gw.bytes_in()
    );
    assert!(
        r.stderr.contains(&format!("blobs: {} copied", new.len()))
            && r.stderr.contains(&format!("{} already present", checked)),
        "{}",
        r.stderr
    );
}

#[test]
fn a_promotion_interrupted_at_the_manifests_leaves_no_tag_and_resumes_without_resending_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let img = push_image(&src, "staging/app", "b51", &small_spec(51), None);
    let (_, amd64) = img
        .manifests
        .iter()
        .find(|(p, _)| p == "linux/amd64")
        .unwrap();
    let src_ref = format!("{}/staging/app:b51", src.host());
    let gw = Gateway::start(&dst.host(), GatewayOptions::default());
    // Every blob gets in; the amd64 manifest never does.
    gw.inject(
        FaultRule::new(Fault::Status {
            code: 503,
            retry_after: None,
        })
        .method("PUT")
        .path_contains(&amd64.digest)
        .times(100),
    );
    let r = promote(
        &[&src_ref, &format!("{}/prod/app:5.0", gw.host())],
        &[
            ("INSECURE_REGISTRY", &insecure(&[src.host(), gw.host()])),
            ("PROMOTE_RETRIES", "2"),
        ],
        tmp.path(),
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    let last = r.stderr.lines().last().unwrap_or_default();
    assert!(last.contains("503"), "{last}");
    let uploads = |log: &[harness::registry::Logged]| {
        log.iter()
            .filter(|l| l.method == "PUT" && l.path.contains("/blobs/uploads/"))
            .count()
    };
    let first = gw.requests();
    assert_eq!(uploads(&first), img.blobs.len());
    let pushed_before: Vec<&str> = first
        .iter()
        .filter(|l| l.method == "PUT" && l.path.contains("/manifests/") && l.status == 201)
        .map(|l| l.path.rsplit('/').next().unwrap())
        .collect();
    assert!(
        !pushed_before
            .iter()
            .any(|d| *d == amd64.digest || *d == img.digest)
    );
    assert!(try_skopeo_raw(&format!("{}/prod/app:5.0", dst.host()), None).is_err());
    assert!(try_skopeo_raw(&format!("{}/prod/app@{}", dst.host(), img.digest), None).is_err());
    drop(gw); // its rule is not used up

    let gw = Gateway::start(&dst.host(), GatewayOptions::default());
    let r = promote(
        &[&src_ref, &format!("{}/prod/app:5.0", gw.host())],
        &[("INSECURE_REGISTRY", &insecure(&[src.host(), gw.host()]))],
        tmp.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let log = gw.requests();
    assert_eq!(uploads(&log), 0, "blobs sent again: {log:?}");
    assert!(
        !log.iter()
            .any(|l| matches!(l.method.as_str(), "POST" | "PATCH")),
        "{log:?}"
    );
    // Only what was missing: the child manifests the first run did not
    // get in (amd64 among them), then the tag carrying the index.
    let mut puts: Vec<&str> = log
        .iter()
        .filter(|l| l.method == "PUT")
        .map(|l| l.path.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(puts.pop(), Some("5.0"), "{log:?}");
    let mut want: Vec<&str> = img
        .manifests
        .iter()
        .map(|(_, m)| m.digest.as_str())
        .filter(|d| !pushed_before.contains(d))
        .collect();
    puts.sort();
    want.sort();
    assert_eq!(puts, want, "{log:?}");
    assert!(puts.contains(&amd64.digest.as_str()));
    assert_identical(
        &format!("{}/staging/app", src.host()),
        &format!("{}/prod/app", dst.host()),
        &img,
        None,
    );
}

#[test]
fn gitlab_ci_registry_login_is_used_for_the_source_only() {
    let tmp = tempfile::tempdir().unwrap();
    let src = TestRegistry::start_with_htpasswd("gitlab-ci-token", "job-token-abc");
    let dst = TestRegistry::start_with_htpasswd(DST_USER, DST_PASS);
    let img = push_image(&src, "group/app", "c61", &small_spec(61), None);
    let src_ref = format!("{}/group/app:c61", src.host());
    let ins = insecure(&[src.host(), dst.host()]);
    let ci = [
        ("INSECURE_REGISTRY", ins.as_str()),
        ("CI_REGISTRY", &src.host()),
        ("CI_REGISTRY_USER", "gitlab-ci-token"),
        ("CI_REGISTRY_PASSWORD", "job-token-abc"),
    ];
    let with_dst: Vec<(&str, &str)> = ci
        .iter()
        .copied()
        .chain([
            ("PROMOTE_DST_USERNAME", DST_USER),
            ("PROMOTE_DST_PASSWORD", DST_PASS),
        ])
        .collect();
    let r = promote(
        &[&src_ref, &format!("{}/prod/app:6.1", dst.host())],
        &with_dst,
        tmp.path(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("user gitlab-ci-token from CI_REGISTRY_USER/CI_REGISTRY_PASSWORD"),
        "{}",
        r.stderr
    );
    assert_identical_with(
        &format!("{}/group/app", src.host()),
        Some(("gitlab-ci-token", "job-token-abc")),
        &format!("{}/prod/app", dst.host()),
        &img,
        Some((DST_USER, DST_PASS)),
    );
    // Without a DST login, the CI_REGISTRY one is not tried on DST.
    let r = promote(
        &[&src_ref, &format!("{}/prod/app:6.2", dst.host())],
        &ci,
        tmp.path(),
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    let last = r.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("requires a login and no credentials"),
        "{last}"
    );
    assert!(
        r.stderr
            .contains(&format!("destination {}: anonymous", dst.host())),
        "{}",
        r.stderr
    );
}

#[test]
fn every_flag_reads_an_environment_variable() {
    let cmd = kit::cli::command::<promote_image::cli::Args>();
    cmd.clone().debug_assert();
    assert!(
        kit::cli::flags_without_env(&cmd).is_empty(),
        "{:?}",
        kit::cli::flags_without_env(&cmd)
    );
    let a: promote_image::cli::Args = kit::cli::try_parse_from([
        "promote-image",
        "a:1",
        "b",
        "--tag",
        "x",
        "-t",
        "y",
        "--insecure-registry",
        "h:5000",
    ])
    .unwrap();
    assert_eq!(a.tags, vec!["x", "y"]);
    assert_eq!(a.parallel, 4);
    assert!(
        kit::cli::try_parse_from::<promote_image::cli::Args, _, _>([
            "promote-image",
            "a",
            "b",
            "--parallel",
            "0"
        ])
        .is_err()
    );
}

#[test]
fn help_is_the_reviewed_interface() {
    let help = kit::cli::command::<promote_image::cli::Args>()
        .render_help()
        .to_string();
    insta::assert_snapshot!("help", help);
}

/// Every exit code the README documents, with its whole one-line cause.
#[test]
fn each_documented_exit_code_with_its_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let spec = ImageSpec {
        index: false,
        attestation: false,
        layer_sizes: vec![3000],
        seed: 71,
        ..Default::default()
    };
    push_image(&src, "staging/app", "c71", &spec, None);
    let ins = insecure(&[src.host(), dst.host()]);
    let base = [("INSECURE_REGISTRY", ins.as_str())];

    // 0: promoted.
    let r = promote(
        &[
            &format!("{}/staging/app:c71", src.host()),
            &format!("{}/prod/app:1", dst.host()),
        ],
        &base,
        tmp.path(),
    );
    r.assert_success();

    // 2: a bad flag, a bad reference, a platform SRC lacks.
    promote(&["Not A Ref", "x/y"], &[], tmp.path())
        .assert_failed(2, r"SRC: invalid image reference .*");
    promote(&["a/b", "x/y", "--dst-username", "u"], &[], tmp.path())
        .assert_failed(2, "--dst-username is set but --dst-password is not");
    promote(
        &["a/b", "x/y", "--request-timeout", "soon"],
        &[],
        tmp.path(),
    )
    .assert_failed(2, r#"--request-timeout "soon": .*"#);
    promote(
        &[
            &format!("{}/staging/app:c71", src.host()),
            &format!("{}/prod/app:2", dst.host()),
            "--platform",
            "linux/s390x",
        ],
        &base,
        tmp.path(),
    )
    .assert_failed(
        2,
        r"--platform linux/s390x: the source image has no linux/s390x manifest \(it has: linux/arm64\)",
    );

    // 3: SRC does not exist.
    promote(
        &[
            &format!("{}/staging/app:nope", src.host()),
            &format!("{}/prod/app", dst.host()),
        ],
        &base,
        tmp.path(),
    )
    .assert_failed(3, r"127\.0\.0\.1:\d+/staging/app:nope not found");

    // 4: every try of a request stalls past --request-timeout.
    let gw = Gateway::start(&src.host(), GatewayOptions::default());
    gw.inject(
        FaultRule::new(Fault::Stall)
            .path_contains("/manifests/")
            .times(10),
    );
    let ins = insecure(&[gw.host(), dst.host()]);
    promote(
        &[
            &format!("{}/staging/app:c71", gw.host()),
            &format!("{}/prod/app", dst.host()),
            "--request-timeout",
            "1s",
        ],
        &[("INSECURE_REGISTRY", ins.as_str()), ("PROMOTE_RETRIES", "2")],
        tmp.path(),
    )
    .assert_failed(
        4,
        r"reading manifest 127\.0\.0\.1:\d+/staging/app:c71: registry at http://127\.0\.0\.1:\d+/v2/staging/app/manifests/c71: .*timed out.*",
    );
}

#[path = "../../registry/tests/common/front.rs"]
mod front;

/// Issue 17, finding 4: REGISTRY_USER/REGISTRY_PASSWORD meant for the
/// source registry never reach the destination registry, whose own
/// config.json entry is used instead; the log names the source of each.
#[test]
fn registry_user_is_bound_to_its_host_and_never_sent_to_the_destination() {
    const A_PASS: &str = "stagingA-Secret-77";
    const B_PASS: &str = "prodB-Secret-88";
    let tmp = tempfile::tempdir().unwrap();
    let a = TestRegistry::start_with_htpasswd("alice", A_PASS);
    let b = TestRegistry::start_with_htpasswd("bob", B_PASS);
    push_image(
        &a,
        "staging/app",
        "s1",
        &small_spec(81),
        Some(("alice", A_PASS)),
    );
    // B behind a recording front: every header B was sent is kept.
    let b_front = front::Front::start_passing_auth(b.host());
    let cfg = tmp.path().join("docker");
    std::fs::create_dir_all(&cfg).unwrap();
    let bob = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("bob:{B_PASS}"),
    );
    std::fs::write(
        cfg.join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{bob}"}}}}}}"#, b_front.host),
    )
    .unwrap();
    let ins = insecure(&[a.host(), b_front.host.clone()]);
    let src_ref = format!("{}/staging/app:s1", a.host());
    for binding in ["REGISTRY_HOST", "CI_REGISTRY"] {
        let r = promote(
            &[&src_ref, &format!("{}/prod/app:{binding}", b_front.host)],
            &[
                ("INSECURE_REGISTRY", ins.as_str()),
                ("REGISTRY_USER", "alice"),
                ("REGISTRY_PASSWORD", A_PASS),
                (binding, &a.host()),
                ("DOCKER_CONFIG", cfg.to_str().unwrap()),
            ],
            tmp.path(),
        );
        r.assert_success();
        r.assert_no_secret(&[A_PASS, B_PASS]);
        assert!(
            r.stderr.contains(&format!(
                "source {}: user alice from REGISTRY_USER/REGISTRY_PASSWORD (bound to {} by {binding})",
                a.host(),
                a.host()
            )),
            "{}",
            r.stderr
        );
        assert!(
            r.stderr.contains(&format!(
                "destination {}: user bob from {}",
                b_front.host,
                cfg.join("config.json").display()
            )),
            "{}",
            r.stderr
        );
    }
    // Unbound (neither REGISTRY_HOST nor CI_REGISTRY): the source only.
    let r = promote(
        &[&src_ref, &format!("{}/prod/app:unbound", b_front.host)],
        &[
            ("INSECURE_REGISTRY", ins.as_str()),
            ("REGISTRY_USER", "alice"),
            ("REGISTRY_PASSWORD", A_PASS),
        ],
        tmp.path(),
    );
    r.assert_failed(
        3,
        r"resolving 127\.0\.0\.1:\d+/prod/app@sha256:[0-9a-f]{64}: 127\.0\.0\.1:\d+ requires a login and no credentials were given for it",
    );
    assert!(
        r.stderr.contains("anonymous; REGISTRY_USER/REGISTRY_PASSWORD are not used here (no REGISTRY_HOST or CI_REGISTRY: the job's default registry only)"),
        "{}",
        r.stderr
    );
    assert!(!b_front.seen().is_empty());
    harness::job::assert_no_secret_in("registry B's requests", &b_front.headers_text(), &[A_PASS]);
    // Control: B did receive its own password, so the check can fire.
    assert!(b_front.with_authorization().len() > 2);
}
