//! The verifier binary called the way containerd's bindir plugin calls it
//! (`-name -digest -stdin-media-type`, the descriptor on stdin, stdout the
//! reason), against a real registry (docker-registry) with images signed by
//! sign-image. No containerd here: tests/containerd.rs has the same cases
//! through a real containerd.

mod common;

use common::*;
use harness::registry::{Fault, FaultRule, Gateway, GatewayOptions, TestRegistry};

fn scope_policy(host: &str, keys: &[&Key], extra: &str) -> String {
    let keys: Vec<String> = keys
        .iter()
        .map(|k| format!("\"{}\"", k.pub_path.display()))
        .collect();
    format!(
        "{extra}scopes:\n  - name: apps\n    repositories: [\"{host}/team/*\"]\n    keys: [{}]\n",
        keys.join(", ")
    )
}

#[test]
fn signed_allowed_and_each_bad_signature_refused_with_its_reason() {
    let reg = TestRegistry::start();
    let host = reg.host();
    let node = Node::new();
    let k = key(node.dir.path(), "cosign");
    let other = key(node.dir.path(), "other");
    node.policy(&scope_policy(&host, &[&k], "unmatched: deny\n"));
    node.plain_http(&[&host]);

    // Signed: allowed, and stdout names the key.
    let good = push(&reg, "team/app", "1", 1);
    sign(&format!("{host}/team/app@{}", good.digest), &k, &host);
    let r = node.verify(&format!("{host}/team/app:1"), &good.digest);
    assert_verdict(
        &r,
        0,
        &format!(
            "^allowed: {}: signed; scope \"apps\": key {}",
            re(&format!("{host}/team/app@{}", good.digest)),
            re(&k.key.public().fingerprint())
        ),
    );

    // Unsigned.
    let unsigned = push(&reg, "team/unsigned", "1", 2);
    let r = node.verify(&format!("{host}/team/unsigned:1"), &unsigned.digest);
    assert_verdict(
        &r,
        1,
        &format!(
            "^refused: {}: no signature valid for scope \"apps\" \\(1 key\\(s\\)\\): .*has no signatures: .*sha256-.*\\.sig does not exist",
            re(&format!("{host}/team/unsigned@{}", unsigned.digest))
        ),
    );

    // Signed with a key the policy does not name.
    let wrong = push(&reg, "team/wrongkey", "1", 3);
    sign(
        &format!("{host}/team/wrongkey@{}", wrong.digest),
        &other,
        &host,
    );
    let r = node.verify(&format!("{host}/team/wrongkey:1"), &wrong.digest);
    assert_verdict(
        &r,
        1,
        "^refused: .*1 signature\\(s\\) found, none valid for key sha256:[0-9a-f]{64}: sha256:[0-9a-f]{12}: signature does not verify with this key$",
    );

    // A tag whose signature covers an older digest: the tag moved to new
    // bytes that nobody signed.
    let moved = push(&reg, "team/app", "1", 4);
    assert_ne!(moved.digest, good.digest);
    let r = node.verify(&format!("{host}/team/app:1"), &moved.digest);
    assert_verdict(
        &r,
        1,
        &format!(
            "^refused: {}: .*has no signatures",
            re(&format!("{host}/team/app@{}", moved.digest))
        ),
    );

    // An image outside every scope under `unmatched: deny`.
    let r = node.verify(&format!("{host}/elsewhere/app:1"), &good.digest);
    assert_verdict(
        &r,
        1,
        "^refused: .*no scope of .*verify.yaml matches .*/elsewhere/app and unmatched is deny$",
    );
    // … and under the default (allow): pulled.
    node.policy(&scope_policy(&host, &[&k], ""));
    let r = node.verify(&format!("{host}/elsewhere/app:1"), &good.digest);
    assert_verdict(&r, 0, "^allowed: .*\\(unmatched: allow\\)$");
}

#[test]
fn a_sig_copied_from_another_digest_and_a_tampered_signature_are_refused() {
    let reg = TestRegistry::start();
    let host = reg.host();
    let node = Node::new();
    let k = key(node.dir.path(), "cosign");
    node.policy(&scope_policy(&host, &[&k], ""));
    node.plain_http(&[&host]);

    let signed = push(&reg, "team/app", "signed", 11);
    sign(&format!("{host}/team/app@{}", signed.digest), &k, &host);
    let sig_tag = |d: &str| d.replace("sha256:", "sha256-") + ".sig";
    let sig_manifest = harness::registry::skopeo_raw(
        &format!("{host}/team/app:{}", sig_tag(&signed.digest)),
        None,
    );

    // The .sig of `signed` copied to the .sig tag of `copied`: a valid
    // signature, over a payload naming the other digest.
    let copied = push(&reg, "team/app", "copied", 12);
    put_manifest(&host, "team/app", &sig_tag(&copied.digest), &sig_manifest);
    let r = node.verify(&format!("{host}/team/app:copied"), &copied.digest);
    assert_verdict(
        &r,
        1,
        &format!(
            "^refused: .*signed payload names digest {}, not {} \\(a signature copied from another image\\)$",
            re(&signed.digest),
            re(&copied.digest)
        ),
    );

    // A signature made for this digest, one character of it altered.
    let tampered = push(&reg, "team/app", "tampered", 13);
    sign(&format!("{host}/team/app@{}", tampered.digest), &k, &host);
    let tag = sig_tag(&tampered.digest);
    let text = String::from_utf8(harness::registry::skopeo_raw(
        &format!("{host}/team/app:{tag}"),
        None,
    ))
    .unwrap();
    let marker = "\"dev.cosignproject.cosign/signature\":\"";
    let i = text.find(marker).unwrap() + marker.len() + 20;
    let mut bytes = text.into_bytes();
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    put_manifest(&host, "team/app", &tag, &bytes);
    let r = node.verify(&format!("{host}/team/app:tampered"), &tampered.digest);
    assert_verdict(
        &r,
        1,
        "^refused: .*none valid for key .*: signature does not verify with this key$",
    );
}

/// PUT a manifest as-is (the test writes the registry's contents directly).
fn put_manifest(host: &str, repo: &str, tag: &str, bytes: &[u8]) {
    let url = format!("http://{host}/v2/{repo}/manifests/{tag}");
    let out = std::process::Command::new("curl")
        .args(["-sf", "-X", "PUT", "-H"])
        .arg("Content-Type: application/vnd.oci.image.manifest.v1+json")
        .arg("--data-binary")
        .arg("@-")
        .arg(&url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(bytes)?;
            c.wait_with_output()
        })
        .expect("curl must be installed");
    assert!(out.status.success(), "PUT {url} failed");
}

#[test]
fn registry_down_refuses_and_a_cached_digest_still_pulls() {
    let reg = TestRegistry::start();
    let host = reg.host();
    let node = Node::new();
    let k = key(node.dir.path(), "cosign");
    let next = key(node.dir.path(), "next");
    node.policy(&scope_policy(&host, &[&next, &k], ""));
    node.plain_http(&[&host]);
    let img = push(&reg, "team/app", "1", 21);
    sign(&format!("{host}/team/app@{}", img.digest), &k, &host);
    let uncached = push(&reg, "team/app", "2", 22);
    sign(&format!("{host}/team/app@{}", uncached.digest), &k, &host);
    // Verified once (the second key of the scope: rotation), then cached.
    let r = node.verify(&format!("{host}/team/app:1"), &img.digest);
    assert_verdict(&r, 0, "^allowed: .*signed; scope \"apps\": key sha256:");
    assert!(node.path("cache/verify-cache.json").is_file());
    drop(reg);

    // Registry down: the cached digest pulls, saying so …
    let r = node.verify(&format!("{host}/team/app:1"), &img.digest);
    assert_verdict(&r, 0, "^allowed: .*\\(cached\\)$");
    // … another one is refused (exit 3) with the registry's error.
    let r = node.verify(&format!("{host}/team/app:2"), &uncached.digest);
    assert_verdict(
        &r,
        3,
        &format!(
            "^refused: {}: cannot read signatures from {}: .*",
            re(&format!("{host}/team/app@{}", uncached.digest)),
            re(&host)
        ),
    );

    // The key removed from the policy: its cache entries no longer count.
    node.policy(&scope_policy(&host, &[&next], ""));
    let r = node.verify(&format!("{host}/team/app:1"), &img.digest);
    assert_verdict(&r, 3, "^refused: .*cannot read signatures from");
}

#[test]
fn a_registry_slower_than_the_policy_timeout_refuses() {
    let reg = TestRegistry::start();
    let gw = Gateway::start(&reg.host(), GatewayOptions::default());
    let host = gw.host();
    let node = Node::new();
    let k = key(node.dir.path(), "cosign");
    node.policy(&scope_policy(&host, &[&k], "timeout: 1s\n"));
    node.plain_http(&[&host]);
    let img = push(&reg, "team/app", "1", 31);
    gw.inject(FaultRule::new(Fault::Stall).times(100));
    let start = std::time::Instant::now();
    let r = node.verify(&format!("{host}/team/app:1"), &img.digest);
    assert_verdict(
        &r,
        4,
        "^refused: .*: verification did not finish within the policy's timeout of 1\\.0s$",
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn mirrors_and_credentials_from_registries_yaml() {
    // The image is named by a registry that does not exist; registries.yaml
    // mirrors it (with a rewrite) to a registry with basic auth.
    let reg = TestRegistry::start_with_htpasswd("node", "node-secret-pw");
    let host = reg.host();
    let node = Node::new();
    let k = key(node.dir.path(), "cosign");
    let img = push(&reg, "mirror/team/app", "1", 41);
    let signer_env_host = host.clone();
    // Signed where CI signed it: the upstream name. Here that is the
    // mirror's repository (sign-image signs what it can reach), so the
    // payload names the mirror's repository: accepted for a mirror.
    sign_with_auth(
        &format!("{signer_env_host}/mirror/team/app@{}", img.digest),
        &k,
        &reg,
    );
    node.policy(
        "scopes:\n  - repositories: [\"upstream.invalid/team/*\"]\n    keys: [cosign.pub]\n",
    );
    node.registries(&format!(
        "mirrors:\n  upstream.invalid:\n    endpoint: [\"http://{host}\"]\n    rewrite:\n      \"^team/(.*)\": \"mirror/team/$1\"\nconfigs:\n  \"{host}\":\n    auth:\n      username: node\n      password: node-secret-pw\n"
    ));
    let r = node.verify("upstream.invalid/team/app:1", &img.digest);
    assert_verdict(&r, 0, "^allowed: upstream.invalid/team/app@.*signed");
    r.assert_no_secret(&["node-secret-pw"]);

    // Wrong password in registries.yaml: the mirror refuses us, the default
    // endpoint does not resolve: refused, exit 3.
    node.registries(&format!(
        "mirrors:\n  upstream.invalid:\n    endpoint: [\"http://{host}\"]\n    rewrite:\n      \"^team/(.*)\": \"mirror/team/$1\"\nconfigs:\n  \"{host}\":\n    auth:\n      username: node\n      password: wrong\n"
    ));
    std::fs::remove_dir_all(node.path("cache")).unwrap();
    let r = node.verify("upstream.invalid/team/app:1", &img.digest);
    assert_verdict(&r, 3, "^refused: .*cannot read signatures from ");
}

fn sign_with_auth(image: &str, key: &Key, reg: &TestRegistry) {
    let (u, p) = reg.credentials().unwrap();
    let args = kit::cli::try_parse_from::<sign_image::cli::Args, _, _>([
        "sign-image",
        "sign",
        image,
        "--key",
        key.private_path.to_str().unwrap(),
        "--insecure-registry",
        &reg.host(),
    ])
    .unwrap();
    let env = kit::env::MapEnv::new([
        ("COSIGN_PASSWORD", "pw"),
        ("REGISTRY_USER", u),
        ("REGISTRY_PASSWORD", p),
    ]);
    let cfg =
        match <sign_image::config::Config as kit::job::FromArgs>::from_args(args, &env).unwrap() {
            sign_image::config::Config::Sign(c) => c,
            other => panic!("{other:?}"),
        };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(sign_image::ops::sign(&cfg, &env))
        .unwrap();
}

#[test]
fn bad_input_from_containerd_is_refused_with_a_reason() {
    let node = Node::new();
    node.policy("scopes: []\n");
    let d = format!("sha256:{}", "a".repeat(64));
    let other = format!("sha256:{}", "b".repeat(64));
    let base = ["-name", "r.example/app:1", "-digest", d.as_str()];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter()
            .chain(extra.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let run = |args: Vec<String>, stdin: &str| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        node.verify_with(&a, stdin.as_bytes())
    };

    // The contract as v2.4.2 calls it, with nothing in scope: allowed.
    let r = run(
        with(&["-stdin-media-type", OCI_DESCRIPTOR]),
        &descriptor(&d),
    );
    assert_verdict(&r, 0, "^allowed: r.example/app@sha256:a{64}: no scope");
    // Go's -flag=value spelling works too.
    let r = run(
        vec![
            "-name=r.example/app:1".into(),
            format!("-digest={d}"),
            format!("-stdin-media-type={OCI_DESCRIPTOR}"),
        ],
        &descriptor(&d),
    );
    assert_verdict(&r, 0, "^allowed: ");
    // verify_on_run: -operation run with the wrapped input.
    let wrapped = format!(
        r#"{{"descriptor":{},"annotations":{{"io.kubernetes.pod.namespace":"default"}}}}"#,
        descriptor(&d)
    );
    let r = run(
        with(&[
            "-stdin-media-type",
            "application/vnd.containerd.image-verifier.input.v1+json",
            "-operation",
            "run",
        ]),
        &wrapped,
    );
    assert_verdict(&r, 0, "^allowed: ");

    for (args, stdin, code, pattern) in [
        (
            with(&["-stdin-media-type", OCI_DESCRIPTOR]),
            "not json".to_string(),
            2,
            "^refused: stdin is not a application/vnd.oci.descriptor.v1\\+json JSON document: ",
        ),
        (
            with(&["-stdin-media-type", OCI_DESCRIPTOR]),
            descriptor(&other),
            2,
            "^refused: the descriptor on stdin names digest sha256:b{64}, but -digest is sha256:a{64}; refusing",
        ),
        (
            with(&[
                "-stdin-media-type",
                OCI_DESCRIPTOR,
                "-platform",
                "linux/arm64",
            ]),
            descriptor(&d),
            2,
            "^refused: unknown flag -platform: this verifier knows -name, -digest, -stdin-media-type and -operation \\(a newer containerd\\?\\); refusing rather than guessing$",
        ),
        (
            with(&[
                "-stdin-media-type",
                "application/vnd.containerd.image-verifier.input.v2+json",
            ]),
            "{}".to_string(),
            2,
            "^refused: -stdin-media-type \"application/vnd.containerd.image-verifier.input.v2\\+json\" is not one this verifier reads",
        ),
        (
            with(&["-stdin-media-type", OCI_DESCRIPTOR, "-operation", "exec"]),
            descriptor(&d),
            2,
            "^refused: -operation \"exec\" is not pull or run",
        ),
        (
            vec![
                "-digest".into(),
                d.clone(),
                "-stdin-media-type".into(),
                OCI_DESCRIPTOR.into(),
            ],
            descriptor(&d),
            2,
            "^refused: -name is missing",
        ),
    ] {
        let r = run(args, &stdin);
        assert_verdict(&r, code, pattern);
    }
}

#[test]
fn a_malformed_policy_refuses_in_its_scope_or_everywhere() {
    let node = Node::new();
    let k = key(node.dir.path(), "cosign");
    let d = format!("sha256:{}", "a".repeat(64));
    // An unknown field in one scope: its images are refused (no request
    // made), the rest of the node is not.
    node.policy(&format!(
        "scopes:\n  - name: prod\n    repositories: [\"r.example/prod/*\"]\n    keys: [\"{}\"]\n    requireAnnotation: x\n",
        k.pub_path.display()
    ));
    let r = node.verify("r.example/prod/app:1", &d);
    assert_verdict(
        &r,
        1,
        "^refused: r.example/prod/app@sha256:a{64}: policy .*verify.yaml scope \"prod\" is malformed \\(unknown field `requireAnnotation`, expected one of `name`, `repositories`, `keys`\\); every image it matches is refused$",
    );
    let r = node.verify("docker.io/rancher/mirrored-pause:3.6", &d);
    assert_verdict(&r, 0, "^allowed: docker.io/rancher/mirrored-pause@");

    // An unknown top-level field, or no policy at all: everything refused.
    node.policy("unmached: deny\n");
    let r = node.verify("docker.io/rancher/mirrored-pause:3.6", &d);
    assert_verdict(
        &r,
        2,
        "^refused: policy .*verify.yaml: unknown field `unmached`",
    );
    std::fs::remove_file(node.path("verify.yaml")).unwrap();
    let r = node.verify("docker.io/rancher/mirrored-pause:3.6", &d);
    assert_verdict(
        &r,
        2,
        "^refused: cannot read policy .*verify.yaml: No such file",
    );
}

#[test]
fn help_teaches_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let r = Job::new(BIN, dir.path()).arg("--help").run();
    assert_eq!(r.code, 0);
    insta::assert_snapshot!("help", r.stdout);
    let missing = kit::cli::flags_without_env(
        &<containerd_verifier::cli::Args as clap::CommandFactory>::command(),
    );
    assert!(missing.is_empty(), "flags without env: {missing:?}");
}
