//! The real binary against a real registry (Debian's docker-registry on
//! 127.0.0.1) holding real multi-arch images pushed with skopeo.

mod common;

use common::*;
use harness::registry::{ImageSpec, TestRegistry, push_image};

fn small_spec(seed: u64) -> ImageSpec {
    ImageSpec {
        layer_sizes: vec![512],
        seed,
        ..ImageSpec::default()
    }
}

#[test]
fn sign_then_verify_multiarch_and_dedupe_and_append() {
    let reg = TestRegistry::start();
    let host = reg.host();
    let img = push_image(&reg, "team/app", "1.0", &small_spec(1), None);
    let dir = tempfile::tempdir().unwrap();
    let a = keys(dir.path(), "a", "pass-a-1234");
    let b = keys(dir.path(), "b", "");

    // Sign by tag: the tag resolves to the index digest; key from env://, password from COSIGN_PASSWORD.
    let pem = std::fs::read_to_string(&a.key_path).unwrap();
    let r = job(dir.path())
        .args([
            "sign",
            &format!("{host}/team/app:1.0"),
            "--insecure-registry",
            &host,
        ])
        .env("COSIGN_PRIVATE_KEY", &pem)
        .env("COSIGN_PASSWORD", &a.password)
        .run();
    assert_code(&r, 0);
    assert_eq!(r.stdout.trim(), format!("{host}/team/app@{}", img.digest));
    r.assert_no_secret(&[&a.password, pem.lines().nth(1).unwrap()]);
    let layers = sig_layers(&host, "team/app", &img.digest, None).expect("sig tag exists");
    assert_eq!(layers.as_array().unwrap().len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    assert!(
        layers[0]["annotations"]["dev.cosignproject.cosign/signature"]
            .as_str()
            .unwrap()
            .len()
            > 60
    );

    // Signing again with the same key leaves one signature and pushes nothing.
    let r = job(dir.path())
        .args([
            "sign",
            &format!("{host}/team/app@{}", img.digest),
            "--insecure-registry",
            &host,
        ])
        .args(["--key", a.key_path.to_str().unwrap()])
        .env("COSIGN_PASSWORD", &a.password)
        .run();
    assert_code(&r, 0);
    assert!(r.stderr.contains("already signed"), "{}", r.stderr);
    assert_eq!(
        sig_layers(&host, "team/app", &img.digest, None)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Another key appends (empty password; COSIGN_PASSWORD unset).
    let r = job(dir.path())
        .args([
            "sign",
            &format!("{host}/team/app:1.0"),
            "--insecure-registry",
            &host,
        ])
        .args(["--key", b.key_path.to_str().unwrap()])
        .run();
    assert_code(&r, 0);
    let layers = sig_layers(&host, "team/app", &img.digest, None).unwrap();
    assert_eq!(layers.as_array().unwrap().len(), 2);

    // Both keys verify; stdout is cosign's JSON array of verified payloads.
    for k in [&a, &b] {
        let r = job(dir.path())
            .args([
                "verify",
                &format!("{host}/team/app:1.0"),
                "--insecure-registry",
                &host,
            ])
            .args(["--key", k.pub_path.to_str().unwrap()])
            .run();
        assert_code(&r, 0);
        let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1, "{}", r.stdout);
        assert_eq!(
            v[0]["critical"]["image"]["docker-manifest-digest"],
            img.digest.as_str()
        );
        assert_eq!(
            v[0]["critical"]["identity"]["docker-reference"],
            format!("{host}/team/app")
        );
    }

    // A third key: signatures exist but none is valid → exit 1 saying so.
    let c = keys(dir.path(), "c", "x");
    let r = job(dir.path())
        .args([
            "verify",
            &format!("{host}/team/app:1.0"),
            "--insecure-registry",
            &host,
        ])
        .env(
            "COSIGN_PUBLIC_KEY",
            std::fs::read_to_string(&c.pub_path).unwrap(),
        )
        .run();
    assert_code(&r, 1);
    assert!(
        r.cause().contains("2 signature(s) found, none valid"),
        "{}",
        r.cause()
    );
    assert!(
        r.cause().contains("does not verify with this key"),
        "{}",
        r.cause()
    );
    assert!(r.stdout.trim().is_empty());
}

#[test]
fn unsigned_missing_and_unreachable() {
    let reg = TestRegistry::start();
    let host = reg.host();
    let img = push_image(
        &reg,
        "team/unsigned",
        "1",
        &ImageSpec {
            index: false,
            attestation: false,
            ..small_spec(2)
        },
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path(), "k", "pw-9999");

    let r = job(dir.path())
        .args([
            "verify",
            &format!("{host}/team/unsigned:1"),
            "--insecure-registry",
            &host,
        ])
        .args(["--key", k.pub_path.to_str().unwrap()])
        .run();
    assert_code(&r, 1);
    assert!(
        r.cause().contains("has no signatures") && r.cause().contains(&img.digest),
        "{}",
        r.cause()
    );

    // A tag that does not exist: exit 3, both for sign and verify.
    for sub in ["sign", "verify"] {
        let key = if sub == "sign" {
            &k.key_path
        } else {
            &k.pub_path
        };
        let r = job(dir.path())
            .args([
                sub,
                &format!("{host}/team/unsigned:nope"),
                "--insecure-registry",
                &host,
            ])
            .args(["--key", key.to_str().unwrap()])
            .env("COSIGN_PASSWORD", &k.password)
            .run();
        assert_code(&r, 3);
        assert!(r.cause().contains("not found"), "{}", r.cause());
        assert!(
            r.cause().contains("resolving tag") && r.cause().contains(":nope"),
            "{}",
            r.cause()
        );
        r.assert_no_secret(&[&k.password]);
    }
    // A digest that does not exist: exit 3 for verify and for sign, and sign
    // writes nothing (the existence check comes before any push).
    let zero = format!("sha256:{}", "0".repeat(64));
    let missing = format!("{host}/team/unsigned@{zero}");
    let r = job(dir.path())
        .args(["verify", &missing, "--insecure-registry", &host])
        .args(["--key", k.pub_path.to_str().unwrap()])
        .run();
    assert_code(&r, 3);
    assert!(r.cause().contains("not found"), "{}", r.cause());
    let r = job(dir.path())
        .args(["sign", &missing, "--insecure-registry", &host])
        .args(["--key", k.key_path.to_str().unwrap()])
        .env("COSIGN_PASSWORD", &k.password)
        .run();
    assert_code(&r, 3);
    assert!(r.cause().contains("not found"), "{}", r.cause());
    r.assert_no_secret(&[&k.password]);
    assert!(sig_layers(&host, "team/unsigned", &zero, None).is_none());

    // Nobody listens: exit 3 after bounded retries.
    let port = harness::registry::free_port();
    let r = job(dir.path())
        .args([
            "verify",
            &format!("127.0.0.1:{port}/x/y:1"),
            "--insecure-registry",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--key", k.pub_path.to_str().unwrap()])
        .run();
    assert_code(&r, 3);
}

#[test]
fn key_and_input_errors_are_exit_2_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path(), "k", "the-right-password");
    let img = "127.0.0.1:1/never/contacted:1";

    // Wrong password: exit 2 before any network traffic, nothing secret echoed.
    let r = job(dir.path())
        .args([
            "sign",
            img,
            "--insecure-registry",
            "127.0.0.1:1",
            "--key",
            k.key_path.to_str().unwrap(),
        ])
        .env("COSIGN_PASSWORD", "a-wrong-password")
        .run();
    assert_code(&r, 2);
    assert!(
        r.cause().contains("wrong password or not a cosign key"),
        "{}",
        r.cause()
    );
    r.assert_no_secret(&["a-wrong-password", "the-right-password"]);

    // Unreadable key file; a file that is no key at all.
    let missing = dir.path().join("nowhere/cosign.key");
    let r = job(dir.path())
        .args(["sign", img, "--key"])
        .arg(&missing)
        .run();
    assert_code(&r, 2);
    assert!(
        r.cause().contains("cannot read key file") && r.cause().contains("nowhere/cosign.key"),
        "{}",
        r.cause()
    );
    let junk = dir.path().join("junk.key");
    std::fs::write(&junk, "just some text, secret-ish-content-42\n").unwrap();
    let r = job(dir.path())
        .args(["sign", img, "--key"])
        .arg(&junk)
        .env("COSIGN_PASSWORD", "pw-junk-77")
        .run();
    assert_code(&r, 2);
    assert!(r.cause().contains("junk.key"), "{}", r.cause());
    r.assert_no_secret(&["secret-ish-content-42", "pw-junk-77"]);

    // Key variable unset; a public key where a private one is needed; garbage; bad reference.
    let r = job(dir.path()).args(["sign", img]).run();
    assert_code(&r, 2);
    assert!(r.cause().contains("COSIGN_PRIVATE_KEY"), "{}", r.cause());
    let r = job(dir.path())
        .args(["sign", img, "--key", k.pub_path.to_str().unwrap()])
        .run();
    assert_code(&r, 2);
    assert!(r.cause().contains("PUBLIC KEY"), "{}", r.cause());
    let r = job(dir.path())
        .args(["verify", img, "--key", "env://JUNK"])
        .env("JUNK", "not a key")
        .run();
    assert_code(&r, 2);
    assert!(
        r.cause().contains("env://JUNK") && !r.all().contains("not a key"),
        "{}",
        r.cause()
    );
    let r = job(dir.path())
        .args(["verify", "Bad//Ref", "--key", k.pub_path.to_str().unwrap()])
        .run();
    assert_code(&r, 2);
    let r = job(dir.path())
        .args(["sign", img, "--key", "awskms:///x"])
        .run();
    assert_code(&r, 2);
    let r = job(dir.path())
        .args([
            "sign",
            img,
            "-a",
            "novalue",
            "--key",
            k.key_path.to_str().unwrap(),
        ])
        .run();
    assert_code(&r, 2);
    assert!(r.cause().contains("KEY=VALUE"), "{}", r.cause());
}

#[test]
fn recursive_platform_and_annotations() {
    let reg = TestRegistry::start();
    let host = reg.host();
    let img = push_image(&reg, "team/multi", "2.0", &small_spec(3), None);
    assert!(
        img.manifests.len() >= 3,
        "index with arm64, amd64 and an attestation"
    );
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path(), "k", "pw-rec-1");
    let r = job(dir.path())
        .args([
            "sign",
            &format!("{host}/team/multi:2.0"),
            "--insecure-registry",
            &host,
            "--recursive",
        ])
        .args(["-a", "pipeline=42", "--annotation", "commit=abc"])
        .args(["--key", k.key_path.to_str().unwrap()])
        .env("COSIGN_PASSWORD", &k.password)
        .run();
    assert_code(&r, 0);
    assert_eq!(
        r.stdout.lines().count(),
        1 + img.manifests.len(),
        "{}",
        r.stdout
    );
    for (_, m) in &img.manifests {
        assert!(
            sig_layers(&host, "team/multi", &m.digest, None).is_some(),
            "{} signed",
            m.digest
        );
    }
    let verify = |extra: &[&str]| {
        job(dir.path())
            .args([
                "verify",
                &format!("{host}/team/multi:2.0"),
                "--insecure-registry",
                &host,
            ])
            .args(["--key", k.pub_path.to_str().unwrap()])
            .args(extra)
            .run()
    };
    assert_code(&verify(&["-a", "pipeline=42"]), 0);
    let r = verify(&["-a", "pipeline=43"]);
    assert_code(&r, 1);
    assert!(
        r.cause().contains("lacks annotation pipeline=43"),
        "{}",
        r.cause()
    );
    // --platform verifies that platform's manifest signature.
    let r = verify(&["--platform", "linux/arm64"]);
    assert_code(&r, 0);
    let arm = &img
        .manifests
        .iter()
        .find(|(p, _)| p == "linux/arm64")
        .unwrap()
        .1
        .digest;
    assert!(r.stdout.contains(arm.as_str()), "{}", r.stdout);
    let r = verify(&["--platform", "linux/s390x"]);
    assert_code(&r, 2);
    assert!(r.cause().contains("linux/arm64"), "{}", r.cause());
}

#[test]
fn copied_signature_from_another_image_is_rejected() {
    let reg = TestRegistry::start();
    let host = reg.host();
    let good = push_image(&reg, "team/app", "good", &small_spec(4), None);
    let evil = push_image(&reg, "team/app", "evil", &small_spec(5), None);
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path(), "k", "pw-copy-1");
    let r = job(dir.path())
        .args([
            "sign",
            &format!("{host}/team/app:good"),
            "--insecure-registry",
            &host,
        ])
        .args(["--key", k.key_path.to_str().unwrap()])
        .env("COSIGN_PASSWORD", &k.password)
        .run();
    assert_code(&r, 0);
    // Copy good's .sig manifest to evil's .sig tag (an attacker with push rights).
    let tag = |d: &str| d.replace(':', "-") + ".sig";
    let out = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--preserve-digests",
        ])
        .arg(format!("docker://{host}/team/app:{}", tag(&good.digest)))
        .arg(format!("docker://{host}/team/app:{}", tag(&evil.digest)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = job(dir.path())
        .args([
            "verify",
            &format!("{host}/team/app:evil"),
            "--insecure-registry",
            &host,
        ])
        .args(["--key", k.pub_path.to_str().unwrap()])
        .run();
    r.assert_failed(
        1,
        &format!(
            "{}/team/app@{}: 1 signature\\(s\\) found, none valid for key {}: sha256:[0-9a-f]{{12}}: signed payload names digest {}, not {} \\(a signature copied from another image\\)",
            re(&host),
            re(&evil.digest),
            re(&k.key.public().fingerprint()),
            re(&good.digest),
            re(&evil.digest),
        ),
    );
}

#[test]
fn basic_auth_registry_with_discovered_credentials() {
    let reg = TestRegistry::start_with_htpasswd("signer", "registry-secret-77");
    let host = reg.host();
    let img = push_image(&reg, "team/private", "1", &small_spec(6), None);
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path(), "k", "pw-auth-1");
    let r = job(dir.path())
        .args([
            "sign",
            &format!("{host}/team/private:1"),
            "--insecure-registry",
            &host,
        ])
        .args(["--key", k.key_path.to_str().unwrap()])
        .env("COSIGN_PASSWORD", &k.password)
        .env("REGISTRY_USER", "signer")
        .env("REGISTRY_PASSWORD", "registry-secret-77")
        .run();
    assert_code(&r, 0);
    r.assert_no_secret(&["registry-secret-77"]);
    assert!(sig_layers(&host, "team/private", &img.digest, reg.credentials()).is_some());
    // Without credentials the registry refuses: exit 3 naming the cause.
    let r = job(dir.path())
        .args([
            "verify",
            &format!("{host}/team/private:1"),
            "--insecure-registry",
            &host,
        ])
        .args(["--key", k.pub_path.to_str().unwrap()])
        .run();
    assert_code(&r, 3);
    assert!(r.cause().contains("no credentials"), "{}", r.cause());
    // Wrong password: exit 3, password not echoed.
    let r = job(dir.path())
        .args([
            "verify",
            &format!("{host}/team/private:1"),
            "--insecure-registry",
            &host,
        ])
        .args([
            "--key",
            k.pub_path.to_str().unwrap(),
            "--username",
            "signer",
        ])
        .env("SIGN_IMAGE_REGISTRY_PASSWORD", "wrong-secret-88")
        .run();
    assert_code(&r, 3);
    r.assert_no_secret(&["wrong-secret-88"]);
}

#[test]
fn generate_key_pair_writes_cosign_format_and_refuses_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("cosign");
    let r = job(dir.path())
        .args([
            "generate-key-pair",
            "--output-key-prefix",
            prefix.to_str().unwrap(),
        ])
        .env("COSIGN_PASSWORD", "gen-pass-123")
        .run();
    assert_code(&r, 0);
    let key_path = dir.path().join("cosign.key");
    let pem = std::fs::read_to_string(&key_path).unwrap();
    assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let key = sign_image::keys::PrivateKey::from_pem(
        pem.as_bytes(),
        &kit::secret::Secret::new("gen-pass-123"),
        "k",
    )
    .unwrap();
    let public = std::fs::read_to_string(dir.path().join("cosign.pub")).unwrap();
    assert_eq!(key.public().to_pem(), public);

    let r = job(dir.path())
        .args([
            "generate-key-pair",
            "--output-key-prefix",
            prefix.to_str().unwrap(),
        ])
        .env("COSIGN_PASSWORD", "x")
        .run();
    assert_code(&r, 2);
    assert!(r.cause().contains("already exists"), "{}", r.cause());
    assert_eq!(
        std::fs::read_to_string(&key_path).unwrap(),
        pem,
        "not overwritten"
    );
    let r = job(dir.path())
        .args([
            "generate-key-pair",
            "--force",
            "--output-key-prefix",
            prefix.to_str().unwrap(),
        ])
        .env("COSIGN_PASSWORD", "x")
        .run();
    assert_code(&r, 0);
    assert_ne!(std::fs::read_to_string(&key_path).unwrap(), pem);
}

#[test]
fn bearer_token_registry_with_faults_is_retried() {
    use harness::registry::{BearerConfig, Fault, FaultRule, Gateway, GatewayOptions};
    let reg = TestRegistry::start();
    let img = push_image(&reg, "team/hub", "1", &small_spec(7), None);
    // Docker-Hub-style token server in front of the registry, with faults.
    let gw = Gateway::start(
        &reg.host(),
        GatewayOptions {
            bearer: Some(BearerConfig::new("hubuser", "hub-token-secret")),
        },
    );
    let host = gw.host();
    gw.inject(
        FaultRule::new(Fault::Status {
            code: 429,
            retry_after: Some(1),
        })
        .method("GET")
        .path_contains(".sig")
        .times(1),
    );
    gw.inject(
        FaultRule::new(Fault::Status {
            code: 503,
            retry_after: None,
        })
        .method("PUT")
        .path_contains("/manifests/")
        .times(2),
    );
    gw.inject(
        FaultRule::new(Fault::Reset)
            .method("HEAD")
            .path_contains("/blobs/")
            .times(1),
    );
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path(), "k", "pw-hub-1");
    let r = job(dir.path())
        .args([
            "sign",
            &format!("{host}/team/hub:1"),
            "--insecure-registry",
            &host,
        ])
        .args(["--key", k.key_path.to_str().unwrap()])
        .env("COSIGN_PASSWORD", &k.password)
        .env("REGISTRY_USER", "hubuser")
        .env("REGISTRY_PASSWORD", "hub-token-secret")
        .run();
    assert_code(&r, 0);
    r.assert_no_secret(&["hub-token-secret"]);
    let log = gw.requests();
    assert!(
        log.iter().any(|l| l.status == 429) && log.iter().filter(|l| l.status == 503).count() == 2,
        "{log:?}"
    );
    assert!(
        gw.token_scopes()
            .iter()
            .any(|s| s.contains("team/hub") && s.contains("push")),
        "{:?}",
        gw.token_scopes()
    );
    assert!(sig_layers(&reg.host(), "team/hub", &img.digest, None).is_some());

    let r = job(dir.path())
        .args([
            "verify",
            &format!("{host}/team/hub:1"),
            "--insecure-registry",
            &host,
        ])
        .args(["--key", k.pub_path.to_str().unwrap()])
        .env("REGISTRY_USER", "hubuser")
        .env("REGISTRY_PASSWORD", "hub-token-secret")
        .run();
    assert_code(&r, 0);
    // Persistent 503: bounded retries, then exit 3 (not 1: the registry could not be read).
    gw.inject(
        FaultRule::new(Fault::Status {
            code: 503,
            retry_after: None,
        })
        .method("GET")
        .path_contains(".sig")
        .times(100),
    );
    let r = job(dir.path())
        .args([
            "verify",
            &format!("{host}/team/hub:1"),
            "--insecure-registry",
            &host,
        ])
        .args(["--key", k.pub_path.to_str().unwrap()])
        .env("REGISTRY_USER", "hubuser")
        .env("REGISTRY_PASSWORD", "hub-token-secret")
        .run();
    assert_code(&r, 3);
    assert!(r.cause().contains("503"), "{}", r.cause());
}

/// `DELETE /v2/<repo>/blobs/<digest>` on a registry that allows deletes.
fn delete_blob(host: &str, repo: &str, digest: &str) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "DELETE /v2/{repo}/blobs/{digest} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
}

#[test]
fn unreadable_payload_only_matters_when_nothing_else_verifies() {
    let reg = TestRegistry::start();
    let host = reg.host();
    push_image(&reg, "team/gone", "1", &small_spec(8), None);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (keys(dir.path(), "a", "pa"), keys(dir.path(), "b", "pb"));
    let image = format!("{host}/team/gone:1");
    for (k, ann) in [(&a, "by=a"), (&b, "by=b")] {
        let r = job(dir.path())
            .args(["sign", &image, "--insecure-registry", &host, "-a", ann])
            .args(["--key", k.key_path.to_str().unwrap()])
            .env("COSIGN_PASSWORD", &k.password)
            .run();
        assert_code(&r, 0);
    }
    let img_digest = job(dir.path())
        .args([
            "verify",
            &image,
            "--insecure-registry",
            &host,
            "--key",
            a.pub_path.to_str().unwrap(),
        ])
        .run()
        .stdout;
    let v: serde_json::Value = serde_json::from_str(img_digest.trim()).unwrap();
    let digest = v[0]["critical"]["image"]["docker-manifest-digest"]
        .as_str()
        .unwrap()
        .to_string();
    let layers = sig_layers(&host, "team/gone", &digest, None).unwrap();
    // Layer 0 is a's payload; remove its blob.
    delete_blob(&host, "team/gone", layers[0]["digest"].as_str().unwrap());
    let verify = |k: &Keys| {
        job(dir.path())
            .args([
                "verify",
                &image,
                "--insecure-registry",
                &host,
                "--key",
                k.pub_path.to_str().unwrap(),
            ])
            .run()
    };
    assert_code(&verify(&b), 0);
    let r = verify(&a);
    assert_code(&r, 3);
    assert!(
        r.cause().contains("not found") || r.cause().contains("404"),
        "{}",
        r.cause()
    );
}

#[test]
fn request_counts_for_signing_an_already_pushed_digest() {
    use harness::registry::{Gateway, GatewayOptions};
    let reg = TestRegistry::start();
    let img = push_image(&reg, "team/count", "1", &small_spec(9), None);
    let img2 = push_image(&reg, "team/count", "2", &small_spec(10), None);
    assert_ne!(img.digest, img2.digest);
    // The gateway counts every request it forwards (Location headers are rewritten to it).
    let gw = Gateway::start(&reg.host(), GatewayOptions::default());
    let host = gw.host();
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path(), "k", "pw-count");
    let sign = |digest: &str| {
        job(dir.path())
            .args([
                "sign",
                &format!("{host}/team/count@{digest}"),
                "--insecure-registry",
                &host,
            ])
            .args(["--key", k.key_path.to_str().unwrap()])
            .env("COSIGN_PASSWORD", &k.password)
            .run()
    };
    let calls = |log: &[harness::registry::Logged]| -> Vec<String> {
        log.iter()
            .map(|l| format!("{} {}", l.method, l.status))
            .collect()
    };
    // The very first signature in the repository: the shared `{}` config is
    // not there yet, so the mount POST opens an upload (202) and it is PUT.
    assert_code(&sign(&img.digest), 0);
    let first = gw.requests();
    assert_eq!(
        calls(&first),
        [
            "HEAD 200", // the image exists
            "GET 404",  // no .sig manifest yet
            "POST 202", // payload upload
            "PUT 201", "POST 202", // config: mount from the repository itself, declined
            "PUT 201", "PUT 201", // manifest
        ],
        "{first:?}"
    );
    assert!(first[4].path.contains("mount=sha256:44136fa"), "{first:?}");

    // A new digest in a repository that already holds a signature: the
    // config mount is answered 201 Created → 6 requests (the target).
    gw.reset_counters();
    assert_code(&sign(&img2.digest), 0);
    let second = gw.requests();
    assert_eq!(
        calls(&second),
        [
            "HEAD 200", "GET 404", "POST 202", "PUT 201", "POST 201", "PUT 201"
        ],
        "{second:?}"
    );

    // Re-signing with the same key: 2 requests, nothing written.
    gw.reset_counters();
    let r = sign(&img.digest);
    assert_code(&r, 0);
    let again = gw.requests();
    assert_eq!(calls(&again), ["HEAD 200", "GET 200"], "{again:?}");

    // Both signatures verify, and their .sig manifests carry the `{}` config.
    for d in [&img.digest, &img2.digest] {
        let r = job(dir.path())
            .args([
                "verify",
                &format!("{host}/team/count@{d}"),
                "--insecure-registry",
                &host,
                "--key",
                k.pub_path.to_str().unwrap(),
            ])
            .run();
        assert_code(&r, 0);
        let tag = d.replace(':', "-") + ".sig";
        let raw = harness::registry::skopeo_raw(&format!("{}/team/count:{tag}", reg.host()), None);
        let m: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(
            m["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }
}

/// A referrers tag (`sha256-<hex>`) holding something that is not an image
/// index: sign (any format that reads referrers) and verify stop with exit 3
/// naming the endpoint, and sign pushes nothing (not even the legacy
/// signature of `--format both`).
#[test]
fn garbage_referrers_are_exit_3_naming_the_endpoint_and_nothing_is_pushed() {
    let reg = TestRegistry::start();
    let host = reg.host();
    let img = push_image(&reg, "team/app", "1.0", &small_spec(91), None);
    // A platform manifest of the image pushed under its referrers tag: not an index.
    let tag = img.digest.replace(':', "-");
    let platform = &img.manifests[0].1;
    let raw = harness::registry::skopeo_raw(&format!("{host}/team/app@{}", platform.digest), None);
    let c = registry::Registry::new(
        &host,
        None,
        &registry::ClientOptions {
            insecure_registries: vec![host.clone()],
            ..Default::default()
        },
        &kit::env::MapEnv(Default::default()),
    )
    .unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(c.push_manifest("team/app", &tag, &platform.media_type, raw))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = keys(dir.path(), "a", "pw");
    let endpoint = format!(".*/v2/team/app/manifests/{tag}.*not a valid OCI image index.*");
    let r = job(dir.path())
        .args(["sign", &format!("{host}/team/app@{}", img.digest)])
        .args(["--insecure-registry", &host, "--format", "both"])
        .args(["--key", a.key_path.to_str().unwrap()])
        .env("COSIGN_PASSWORD", "pw")
        .run();
    r.assert_failed(3, &endpoint);
    assert!(
        sig_layers(&host, "team/app", &img.digest, None).is_none(),
        "the legacy signature was pushed"
    );
    let r = job(dir.path())
        .args(["verify", &format!("{host}/team/app@{}", img.digest)])
        .args(["--insecure-registry", &host])
        .args(["--key", a.pub_path.to_str().unwrap()])
        .run();
    r.assert_failed(3, &endpoint);
}
