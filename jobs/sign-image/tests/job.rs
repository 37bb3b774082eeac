//! The job as a user meets it: every flag has a variable, `--help` as
//! reviewed (snapshots), each documented exit code with its whole one-line
//! cause, the identity rule (issue 17) against a real registry, and no secret
//! in any form in the output, the files written or the registry's storage.

mod common;

use common::*;
use harness::job::assert_no_secret_in_files;
use harness::registry::{ImageSpec, TestRegistry, push_image};
use kit::secret::Secret;
use sign_image::keys::PrivateKey;

fn small_spec(seed: u64) -> ImageSpec {
    ImageSpec {
        layer_sizes: vec![512],
        seed,
        ..ImageSpec::default()
    }
}

/// `skopeo copy` of one `.sig` tag, as an attacker with push rights (or a
/// promotion that carries signatures along) would copy it.
fn copy_sig(src: &str, dst: &str, src_creds: Option<(&str, &str)>) {
    let mut cmd = std::process::Command::new("skopeo");
    cmd.args([
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--preserve-digests",
    ]);
    if let Some((u, p)) = src_creds {
        cmd.arg(format!("--src-creds={u}:{p}"));
    }
    let out = cmd
        .arg(format!("docker://{src}"))
        .arg(format!("docker://{dst}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy {src} {dst}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sig_tag(digest: &str) -> String {
    digest.replace(':', "-") + ".sig"
}

#[test]
fn every_flag_reads_an_environment_variable() {
    let cmd = kit::cli::command::<sign_image::cli::Args>();
    assert_eq!(kit::cli::flags_without_env(&cmd), Vec::<String>::new());
    // The walk does reach the subcommands' flags.
    let sign = cmd.find_subcommand("sign").expect("sign");
    assert!(
        sign.get_arguments()
            .any(|a| a.get_long() == Some("recursive"))
    );
}

#[test]
fn help_of_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    for (name, args) in [
        ("help", vec!["--help"]),
        ("help_sign", vec!["sign", "--help"]),
        ("help_verify", vec!["verify", "--help"]),
        ("help_attest", vec!["attest", "--help"]),
        (
            "help_verify_attestation",
            vec!["verify-attestation", "--help"],
        ),
        (
            "help_generate_key_pair",
            vec!["generate-key-pair", "--help"],
        ),
    ] {
        let r = job(dir.path()).args(&args).run();
        r.assert_success();
        insta::assert_snapshot!(name, r.stdout);
    }
}

#[test]
fn exit_0_signed_then_verified_with_the_payloads_on_stdout() {
    let reg = TestRegistry::start();
    let host = reg.host();
    let img = push_image(&reg, "team/ok", "1", &small_spec(31), None);
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path(), "k", "pw-exit-0");
    let r = job(dir.path())
        .args(["sign", &format!("{host}/team/ok:1"), "--key"])
        .arg(&k.key_path)
        .env("INSECURE_REGISTRY", &host)
        .env("COSIGN_PASSWORD", &k.password)
        .run();
    r.assert_success();
    assert_eq!(r.stdout, format!("{host}/team/ok@{}\n", img.digest));
    let r = job(dir.path())
        .args(["verify", &format!("{host}/team/ok@{}", img.digest)])
        .env("SIGN_IMAGE_PUBLIC_KEY", &k.pub_path)
        .env("INSECURE_REGISTRY", &host)
        .run();
    r.assert_success();
    assert!(!r.stderr.contains("sign-image: error:"), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(
        v[0]["critical"]["identity"]["docker-reference"],
        format!("{host}/team/ok")
    );
}

#[test]
fn exit_1_no_signature_and_none_valid() {
    let reg = TestRegistry::start();
    let host = reg.host();
    let img = push_image(&reg, "team/no", "1", &small_spec(32), None);
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path(), "k", "pw-exit-1");
    let other = keys(dir.path(), "other", "pw-exit-1b");
    let name = format!("{host}/team/no");
    let d = &img.digest;
    let verify = |key: &std::path::Path| {
        job(dir.path())
            .args(["verify", &format!("{name}:1"), "--key"])
            .arg(key)
            .env("INSECURE_REGISTRY", &host)
            .run()
    };
    let r = verify(&k.pub_path);
    r.assert_failed(
        1,
        &format!(
            "{n}@{d} has no signatures: {n}:{t} does not exist and no referrer of the digest is a signature bundle \\(sign it with `sign-image sign`\\)",
            n = re(&name),
            d = re(d),
            t = re(&sig_tag(d))
        ),
    );
    assert_eq!(r.stdout, "");

    let r = job(dir.path())
        .args(["sign", &format!("{name}:1"), "--key"])
        .arg(&k.key_path)
        .env("INSECURE_REGISTRY", &host)
        .env("COSIGN_PASSWORD", &k.password)
        .run();
    r.assert_success();
    let r = verify(&other.pub_path);
    r.assert_failed(
        1,
        &format!(
            "{}@{}: 1 signature\\(s\\) found, none valid for key {}: sha256:[0-9a-f]{{12}}: signature does not verify with this key",
            re(&name),
            re(d),
            re(&other.key.public().fingerprint()),
        ),
    );
    assert_eq!(r.stdout, "");
    // The log shows each layer and why it was refused.
    assert!(
        r.stderr.contains("signature does not verify with this key"),
        "{}",
        r.stderr
    );
}

#[test]
fn exit_2_before_any_request() {
    // Nothing listens on port 1: a request would be exit 3, so exit 2 proves
    // the check came first.
    let img = "127.0.0.1:1/never/contacted:1";
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path(), "k", "the-right-password");
    let key = k.key_path.to_str().unwrap();
    let public = k.pub_path.to_str().unwrap();
    let not_json_path = dir.path().join("predicate.txt");
    std::fs::write(&not_json_path, "not json").unwrap();
    let not_json = not_json_path.to_str().unwrap();
    let sbom_path = dir.path().join("sbom.json");
    std::fs::write(&sbom_path, r#"{"bomFormat":"CycloneDX"}"#).unwrap();
    let sbom = sbom_path.to_str().unwrap();
    /// Arguments, environment, the whole cause (a regex).
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, String);
    let cases: Vec<Case<'_>> = vec![
        (
            vec!["sign", img, "--key", key],
            vec![("COSIGN_PASSWORD", "a-wrong-password")],
            format!("{}: wrong password or not a cosign key", re(key)),
        ),
        (
            vec!["sign", img],
            vec![],
            "key variable COSIGN_PRIVATE_KEY is not set or empty \\(from --key env://COSIGN_PRIVATE_KEY\\); set it to the PEM text of the key".into(),
        ),
        (
            vec!["sign", img, "--key", public],
            vec![],
            format!(
                "{} holds a PUBLIC KEY; signing needs the private key \\(cosign.key\\)",
                re(public)
            ),
        ),
        (
            vec!["verify", img, "--key", key],
            vec![],
            format!(
                "{} holds a private key; verify takes the public key \\(cosign.pub\\)",
                re(key)
            ),
        ),
        (
            vec!["verify", "Bad//Ref", "--key", public],
            vec![],
            "invalid image reference \"Bad//Ref\": .*".into(),
        ),
        (
            vec!["sign", img, "--key", "awskms:///x"],
            vec![],
            "--key awskms://… is not supported by sign-image; use a file path or env://VAR \\(KMS, k8s:// and pkcs11: keys need cosign itself\\)".into(),
        ),
        (
            vec!["sign", img, "-a", "novalue", "--key", key],
            vec![],
            "--annotation \"novalue\" is not KEY=VALUE".into(),
        ),
        (
            vec!["verify", img, "--platform", "linux", "--key", public],
            vec![],
            "--platform \"linux\" is not OS/ARCH\\[/VARIANT\\] \\(e.g. linux/arm64\\)".into(),
        ),
        (
            vec!["verify", img, "--key", public],
            vec![("SIGN_IMAGE_IDENTITIES", "127.0.0.1:1/other:1.0")],
            "--identity \"127.0.0.1:1/other:1.0\" names a tag or digest; give the repository only \\(registry/path\\), as the payload's docker-reference names it".into(),
        ),
        (
            vec!["verify", img, "--timeout", "soon", "--key", public],
            vec![],
            "--timeout: \"soon\" is not a duration: use e.g. 90s, 5m, 1h30m, 500ms".into(),
        ),
        (
            vec!["verify", img, "--username", "someone", "--key", public],
            vec![],
            "--username is set but --password is not".into(),
        ),
        (
            vec![
                "attest", img, "--type", "cyclonedx", "--predicate", not_json, "--key", key,
            ],
            vec![("COSIGN_PASSWORD", "the-right-password")],
            format!("--predicate {} is not a JSON object: .*", re(not_json)),
        ),
        (
            vec![
                "attest", img, "--type", "cyclonedxx", "--predicate", sbom, "--key", key,
            ],
            vec![("COSIGN_PASSWORD", "the-right-password")],
            "--type \"cyclonedxx\" is not a predicate type: use cyclonedx, spdxjson, vuln, slsaprovenance1, openvex, spdx, slsaprovenance, slsaprovenance02, link, custom, or a URI".into(),
        ),
        (
            vec!["attest", img, "--type", "vuln", "--predicate", sbom, "--key", key],
            vec![("COSIGN_PASSWORD", "a-wrong-password")],
            format!("{}: wrong password or not a cosign key", re(key)),
        ),
        (
            vec![
                "attest", img, "--type", "openvex", "--predicate", sbom, "--key", not_json,
            ],
            vec![],
            format!(
                "{} is not a PEM private key \\(no -----BEGIN … ----- block\\)",
                re(not_json)
            ),
        ),
        (
            vec!["verify-attestation", img, "--type", "nope", "--key", public],
            vec![],
            "--type \"nope\" is not a predicate type: .*".into(),
        ),
    ];
    for (args, env, cause) in cases {
        let r = job(dir.path()).args(&args).envs(env.clone()).run();
        r.assert_failed(2, &cause);
        r.assert_no_secret(&["a-wrong-password", "the-right-password"]);
    }

    // generate-key-pair never replaces a key.
    std::fs::write(dir.path().join("cosign.pub"), "old").unwrap();
    let r = job(dir.path()).arg("generate-key-pair").run();
    r.assert_failed(
        2,
        "cosign.pub already exists; refusing to overwrite a key \\(use --force, or another --output-key-prefix\\)",
    );
    assert!(!dir.path().join("cosign.key").exists());
}

#[test]
fn exit_2_for_a_platform_the_index_does_not_have() {
    let reg = TestRegistry::start();
    let host = reg.host();
    push_image(&reg, "team/plat", "1", &small_spec(33), None);
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path(), "k", "pw-plat");
    let r = job(dir.path())
        .args(["verify", &format!("{host}/team/plat:1"), "--platform"])
        .arg("linux/s390x")
        .arg("--key")
        .arg(&k.pub_path)
        .env("INSECURE_REGISTRY", &host)
        .run();
    r.assert_failed(
        2,
        &format!(
            "{}/team/plat:1 has no linux/s390x manifest \\(it has: linux/arm64, linux/amd64\\)",
            re(&host)
        ),
    );
}

#[test]
fn exit_3_tag_not_found_and_registry_unreachable() {
    let reg = TestRegistry::start();
    let host = reg.host();
    push_image(&reg, "team/three", "1", &small_spec(34), None);
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path(), "k", "pw-exit-3");
    let r = job(dir.path())
        .args(["verify", &format!("{host}/team/three:nope"), "--key"])
        .arg(&k.pub_path)
        .env("INSECURE_REGISTRY", &host)
        .run();
    r.assert_failed(
        3,
        &format!(
            "resolving tag {}/team/three:nope to a digest: .*not found.*",
            re(&host)
        ),
    );

    let port = harness::registry::free_port();
    let nobody = format!("127.0.0.1:{port}");
    let r = job(dir.path())
        .args([
            "sign",
            &format!("{nobody}/team/three@sha256:{}", "0".repeat(64)),
        ])
        .arg("--key")
        .arg(&k.key_path)
        .env("INSECURE_REGISTRY", &nobody)
        .env("COSIGN_PASSWORD", &k.password)
        .run();
    r.assert_failed(3, &format!(".*{}.*", re(&nobody)));
    r.assert_no_secret(&[&k.password]);
}

#[test]
fn exit_4_when_the_registry_never_answers() {
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = silent.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path(), "k", "pw-exit-4");
    let started = std::time::Instant::now();
    let r = job(dir.path())
        .args(["verify", &format!("{host}/team/slow:1"), "--timeout", "2s"])
        .arg("--key")
        .arg(&k.pub_path)
        .env("INSECURE_REGISTRY", &host)
        .run();
    r.assert_failed(
        4,
        "the job's deadline of 2.0s passed \\(--timeout\\); nothing more was done",
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // The variable works as the flag does.
    let r = job(dir.path())
        .args(["verify", &format!("{host}/team/slow:1"), "--key"])
        .arg(&k.pub_path)
        .env("INSECURE_REGISTRY", &host)
        .env("SIGN_IMAGE_TIMEOUT", "1s")
        .run();
    r.assert_failed(
        4,
        "the job's deadline of 1.0s passed \\(--timeout\\); nothing more was done",
    );
    drop(silent);
}

/// Issue 17, finding 7: a signature made for `registry/other@D`, copied to
/// `registry/app`'s `.sig` tag for the same digest, is refused for
/// `registry/app@D` — unless the verifier names `registry/other` with
/// `--identity` or turns the check off.
#[test]
fn a_signature_made_for_another_repository_is_refused() {
    let reg = TestRegistry::start();
    let host = reg.host();
    let spec = small_spec(35);
    let app = push_image(&reg, "team/app", "1", &spec, None);
    let other = push_image(&reg, "team/other", "1", &spec, None);
    assert_eq!(app.digest, other.digest, "one digest in both repositories");
    let d = &app.digest;
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path(), "k", "pw-identity");
    let r = job(dir.path())
        .args(["sign", &format!("{host}/team/other@{d}"), "--key"])
        .arg(&k.key_path)
        .env("INSECURE_REGISTRY", &host)
        .env("COSIGN_PASSWORD", &k.password)
        .run();
    r.assert_success();
    copy_sig(
        &format!("{host}/team/other:{}", sig_tag(d)),
        &format!("{host}/team/app:{}", sig_tag(d)),
        None,
    );

    let verify = |extra: &[&str], env: &[(&str, &str)]| {
        job(dir.path())
            .args(["verify", &format!("{host}/team/app@{d}"), "--key"])
            .arg(&k.pub_path)
            .args(extra)
            .env("INSECURE_REGISTRY", &host)
            .envs(env.iter().copied())
            .run()
    };
    let r = verify(&[], &[]);
    r.assert_failed(
        1,
        &format!(
            "{h}/team/app@{d}: 1 signature\\(s\\) found, none valid for key {fp}: sha256:[0-9a-f]{{12}}: signed for {h}/team/other, not for {h}/team/app \\(a signature made for another repository; if that repository is a name of this image, accept it with --identity {h}/team/other\\)",
            h = re(&host),
            d = re(d),
            fp = re(&k.key.public().fingerprint()),
        ),
    );
    assert_eq!(r.stdout, "");
    // The signature itself is fine where it was made.
    verify_ok(&dir, &k, &host, &format!("{host}/team/other@{d}"), &[]);

    // Named with --identity (or the variable): accepted.
    let named = format!("{host}/team/other");
    let with_mirror = format!("{host}/team/mirror,{named}");
    for (extra, env) in [
        (vec!["--identity", named.as_str()], vec![]),
        (vec![], vec![("SIGN_IMAGE_IDENTITIES", named.as_str())]),
        (
            vec![],
            vec![("SIGN_IMAGE_IDENTITIES", with_mirror.as_str())],
        ),
    ] {
        let r = verify(&extra, &env);
        r.assert_success();
        let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
        assert_eq!(v[0]["critical"]["identity"]["docker-reference"], named);
    }
    // Another name does not help.
    let r = verify(&["--identity", &format!("{host}/team/third")], &[]);
    r.assert_failed(
        1,
        &format!(
            ".*signed for {h}/team/other, not for {h}/team/app nor for --identity {h}/team/third .*",
            h = re(&host)
        ),
    );

    // The documented opt-out: any identity (cosign's default).
    for (extra, env) in [
        (vec!["--allow-any-identity"], vec![]),
        (vec![], vec![("SIGN_IMAGE_ALLOW_ANY_IDENTITY", "true")]),
    ] {
        let r = verify(&extra, &env);
        r.assert_success();
        assert!(r.stderr.contains("--allow-any-identity"), "{}", r.stderr);
    }
    // --allow-any-identity=false is the default rule.
    verify(&["--allow-any-identity=false"], &[]).assert_failed(1, ".*signed for .*");

    // The digest check still holds with any identity: a signature copied to
    // another digest's tag is refused.
    let evil = push_image(&reg, "team/app", "evil", &small_spec(36), None);
    copy_sig(
        &format!("{host}/team/other:{}", sig_tag(d)),
        &format!("{host}/team/app:{}", sig_tag(&evil.digest)),
        None,
    );
    let r = job(dir.path())
        .args([
            "verify",
            &format!("{host}/team/app:evil"),
            "--allow-any-identity",
        ])
        .arg("--key")
        .arg(&k.pub_path)
        .env("INSECURE_REGISTRY", &host)
        .run();
    r.assert_failed(
        1,
        &format!(
            ".*signed payload names digest {}, not {} \\(a signature copied from another image\\)",
            re(d),
            re(&evil.digest)
        ),
    );
}

fn verify_ok(dir: &tempfile::TempDir, k: &Keys, host: &str, image: &str, extra: &[&str]) {
    job(dir.path())
        .args(["verify", image, "--key"])
        .arg(&k.pub_path)
        .args(extra)
        .env("INSECURE_REGISTRY", host)
        .run()
        .assert_success();
}

/// Promotion: signed at the staging registry, then copied with its `.sig` tag
/// to the public one. The payload names the staging repository, so verifying
/// the public name needs `--identity` (the project signs after promotion, at
/// the public name, and needs nothing).
#[test]
fn a_signature_carried_along_by_promotion_needs_identity() {
    let staging = TestRegistry::start();
    let public = TestRegistry::start();
    let spec = small_spec(37);
    let img = push_image(&staging, "team/app", "1", &spec, None);
    let promoted = push_image(&public, "acme/app", "1", &spec, None);
    assert_eq!(img.digest, promoted.digest);
    let d = &img.digest;
    let (s, p) = (staging.host(), public.host());
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path(), "k", "pw-promote");
    job(dir.path())
        .args(["sign", &format!("{s}/team/app@{d}"), "--key"])
        .arg(&k.key_path)
        .env("INSECURE_REGISTRY", format!("{s},{p}"))
        .env("COSIGN_PASSWORD", &k.password)
        .run()
        .assert_success();
    copy_sig(
        &format!("{s}/team/app:{}", sig_tag(d)),
        &format!("{p}/acme/app:{}", sig_tag(d)),
        None,
    );
    let image = format!("{p}/acme/app@{d}");
    let r = job(dir.path())
        .args(["verify", &image, "--key"])
        .arg(&k.pub_path)
        .env("INSECURE_REGISTRY", &p)
        .run();
    r.assert_failed(
        1,
        &format!(
            ".*signed for {}/team/app, not for {}/acme/app .*",
            re(&s),
            re(&p)
        ),
    );
    verify_ok(
        &dir,
        &k,
        &p,
        &image,
        &["--identity", &format!("{s}/team/app")],
    );
}

/// The key's password, the private key itself and the registry password
/// never show up — raw, base64 or URL-encoded — in what the job prints, in
/// the files it writes, or in what it stores in the registry.
#[test]
fn no_secret_in_output_files_or_registry() {
    const REGISTRY_PASSWORD: &str = "registry-canary-5150";
    const KEY_PASSWORD: &str = "cosign-canary-7731";
    let reg = TestRegistry::start_with_htpasswd("signer", REGISTRY_PASSWORD);
    let host = reg.host();
    push_image(&reg, "team/secret", "1", &small_spec(38), None);
    let home = tempfile::tempdir().unwrap();
    let key = PrivateKey::generate().unwrap();
    let encrypted = key
        .to_encrypted_pem_with_n(&Secret::new(KEY_PASSWORD), 1024)
        .unwrap();
    let plain = key.to_pkcs8_pem().unwrap().expose().to_string();
    // Each base64 line of the unencrypted key is key material.
    let body: Vec<String> = plain
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::to_string)
        .collect();
    let mut secrets: Vec<&str> = vec![REGISTRY_PASSWORD, KEY_PASSWORD];
    secrets.extend(body.iter().map(String::as_str));
    let public = home.path().join("cosign.pub");
    std::fs::write(&public, key.public().to_pem()).unwrap();
    let image = format!("{host}/team/secret:1");
    let base = |args: &[&str]| {
        job(home.path())
            .args(args)
            .env("INSECURE_REGISTRY", &host)
            .env("SIGN_IMAGE_REGISTRY_USER", "signer")
            .env("SIGN_IMAGE_REGISTRY_PASSWORD", REGISTRY_PASSWORD)
    };
    let runs = vec![
        // Encrypted key in the variable, the right password.
        base(&["sign", &image, "-a", "run=1"])
            .env("COSIGN_PRIVATE_KEY", &encrypted)
            .env("COSIGN_PASSWORD", KEY_PASSWORD)
            .run(),
        // The unencrypted key, base64 on one line (a masked variable).
        base(&["sign", &image, "-a", "run=2"])
            .env("COSIGN_PRIVATE_KEY", base64_line(&plain))
            .run(),
        // A wrong password: exit 2.
        base(&["sign", &image])
            .env("COSIGN_PRIVATE_KEY", &encrypted)
            .env("COSIGN_PASSWORD", format!("{KEY_PASSWORD}-wrong"))
            .run(),
        // The private key where the public one belongs: exit 2.
        base(&["verify", &image, "--key", "env://COSIGN_PRIVATE_KEY"])
            .env("COSIGN_PRIVATE_KEY", &plain)
            .run(),
        base(&["verify", &image, "--key", public.to_str().unwrap()]).run(),
        // A wrong registry password: exit 3.
        job(home.path())
            .args(["verify", &image, "--key", public.to_str().unwrap()])
            .env("INSECURE_REGISTRY", &host)
            .env("SIGN_IMAGE_REGISTRY_USER", "signer")
            .env(
                "SIGN_IMAGE_REGISTRY_PASSWORD",
                format!("{REGISTRY_PASSWORD}-wrong"),
            )
            .run(),
    ];
    let codes: Vec<i32> = runs.iter().map(|r| r.code).collect();
    assert_eq!(codes, [0, 0, 2, 2, 0, 3], "{runs:#?}");
    for r in &runs {
        r.assert_no_secret(&secrets);
        r.assert_no_secret(&[&format!("{KEY_PASSWORD}-wrong")]);
        r.assert_no_secret(&[&format!("{REGISTRY_PASSWORD}-wrong")]);
    }
    // Nothing the job pushed carries a secret (payloads, manifests, config).
    assert_no_secret_in_files(&reg.storage_dir(), &secrets);

    // generate-key-pair: the password is in neither file.
    let keys_dir = tempfile::tempdir().unwrap();
    let r = job(keys_dir.path())
        .args(["generate-key-pair"])
        .env("COSIGN_PASSWORD", KEY_PASSWORD)
        .run();
    r.assert_success();
    r.assert_no_secret(&[KEY_PASSWORD]);
    assert_no_secret_in_files(keys_dir.path(), &[KEY_PASSWORD]);
    let written = std::fs::read_to_string(keys_dir.path().join("cosign.key")).unwrap();
    let opened = PrivateKey::from_pem(written.as_bytes(), &Secret::new(KEY_PASSWORD), "k").unwrap();
    // …and the new private key is not printed either.
    let new_plain = opened.to_pkcs8_pem().unwrap().expose().to_string();
    let new_body: Vec<&str> = new_plain
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    r.assert_no_secret(&new_body);
    assert_no_secret_in_files(keys_dir.path(), &new_body);
}

fn base64_line(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
