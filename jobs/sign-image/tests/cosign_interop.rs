//! The real cosign CLIs (v2.6.5 and v3.1.3, built pinned from the Go module
//! proxy by `scripts/install-peers.sh cosign` into `.tools/bin/`) against
//! the real sign-image binary, on a real registry: each verifies what the
//! other signs, key pairs cross over, and the same forgeries are refused by
//! both. Every test fails (never skips) when a cosign binary is missing.
//!
//! cosign runs key-based and offline: `--tlog-upload=false` when signing,
//! `--insecure-ignore-tlog` when verifying (cosign 3 then needs no trusted
//! root and no TUF); a clean HOME, no docker config.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;
use harness::oci_registry::{AnyRegistry, OciRegistry, push_image_to};
use harness::registry::{ImageSpec, TestImage, TestRegistry};

/// `.tools/bin/cosign-v<major>`, or a panic saying how to build it.
fn cosign_bin(major: u8) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin = root.join(format!(".tools/bin/cosign-v{major}"));
    assert!(
        bin.is_file(),
        "{} is missing: build the cosign peers with `bash scripts/install-peers.sh cosign` (Go and the Go module proxy needed)",
        bin.display()
    );
    bin
}

/// What a cosign run printed.
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ok={}\nstdout:\n{}\nstderr:\n{}",
            self.ok, self.stdout, self.stderr
        )
    }
}

/// Runs cosign v`major` in `dir` with a clean environment (HOME = `dir`).
fn cosign(major: u8, dir: &Path, args: &[&str], password: &str) -> Ran {
    let out: Output = Command::new(cosign_bin(major))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("DOCKER_CONFIG", dir.join("no-docker-config"))
        .env("COSIGN_PASSWORD", password)
        .env("COSIGN_YES", "true")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `cosign verify --key PUB --insecure-ignore-tlog IMAGE`.
fn cosign_verify(major: u8, dir: &Path, public: &Path, image: &str) -> Ran {
    cosign(
        major,
        dir,
        &[
            "verify",
            "--key",
            public.to_str().unwrap(),
            "--insecure-ignore-tlog=true",
            "--allow-http-registry",
            image,
        ],
        "",
    )
}

/// cosign 2 reads bundles only with `--new-bundle-format`, and then wants a
/// trusted root even for a key: an empty one (no CA, no log) is enough for
/// key-based, offline verification.
const EMPTY_TRUSTED_ROOT: &str =
    r#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}"#;

/// `cosign verify --key PUB --insecure-ignore-tlog --new-bundle-format
/// --trusted-root EMPTY IMAGE` (cosign 2 reading the bundle format).
fn cosign_v2_verify_bundle(dir: &Path, public: &Path, image: &str) -> Ran {
    let root = dir.join("empty-trusted-root.json");
    std::fs::write(&root, EMPTY_TRUSTED_ROOT).unwrap();
    cosign(
        2,
        dir,
        &[
            "verify",
            "--key",
            public.to_str().unwrap(),
            "--insecure-ignore-tlog=true",
            "--new-bundle-format",
            "--trusted-root",
            root.to_str().unwrap(),
            "--allow-http-registry",
            image,
        ],
        "",
    )
}

/// `cosign sign --key KEY --tlog-upload=false IMAGE` plus `extra`.
fn cosign_sign(
    major: u8,
    dir: &Path,
    key: &Path,
    password: &str,
    image: &str,
    extra: &[&str],
) -> Ran {
    let mut args = vec![
        "sign",
        "--key",
        key.to_str().unwrap(),
        "--tlog-upload=false",
        "--allow-http-registry",
    ];
    args.extend_from_slice(extra);
    args.push(image);
    cosign(major, dir, &args, password)
}

/// cosign 3's default format (bundle), key-based without a transparency
/// log: `--tlog-upload=false` is refused with the (default) TUF signing
/// config, so that is turned off.
const V3_BUNDLE: &[&str] = &["--use-signing-config=false"];

/// cosign 3 writes the legacy `.sig` format only when asked.
const V3_LEGACY: &[&str] = &["--new-bundle-format=false", "--use-signing-config=false"];

fn small(seed: u64) -> ImageSpec {
    ImageSpec {
        layer_sizes: vec![256],
        seed,
        attestation: false,
        ..ImageSpec::default()
    }
}

fn image(reg: &dyn AnyRegistry, repo: &str, tag: &str, seed: u64) -> (TestImage, String) {
    let img = push_image_to(reg, repo, tag, &small(seed));
    let r = format!("{}/{repo}@{}", reg.host(), img.digest);
    (img, r)
}

fn si_sign(dir: &Path, image: &str, host: &str, key: &Path, password: &str, format: &str) -> Run {
    job(dir)
        .args([
            "sign",
            image,
            "--insecure-registry",
            host,
            "--format",
            format,
        ])
        .args(["--key", key.to_str().unwrap()])
        .env("COSIGN_PASSWORD", password)
        .run()
}

fn si_verify(dir: &Path, image: &str, host: &str, keys: &[&Path]) -> Run {
    let mut j = job(dir).args(["verify", image, "--insecure-registry", host]);
    for k in keys {
        j = j.args(["--key", k.to_str().unwrap()]);
    }
    j.run()
}

#[test]
fn legacy_signatures_by_sign_image_verify_with_cosign_v2_and_v3_and_any_of_several_keys() {
    let reg = TestRegistry::start();
    let host = reg.host();
    let dir = tempfile::tempdir().unwrap();
    let a = keys(dir.path(), "a", "pw-a");
    let old = keys(dir.path(), "old", "");
    let (_, img) = image(&reg, "team/app", "1", 11);
    let r = si_sign(dir.path(), &img, &host, &a.key_path, "pw-a", "legacy");
    assert_code(&r, 0);

    for major in [2, 3] {
        let c = cosign_verify(major, dir.path(), &a.pub_path, &img);
        assert!(c.ok, "cosign v{major} verify: {c:?}");
        assert!(
            c.stdout.contains("cosign container image signature"),
            "{c:?}"
        );
        // And cosign refuses another key.
        let c = cosign_verify(major, dir.path(), &old.pub_path, &img);
        assert!(!c.ok, "cosign v{major} accepted another key: {c:?}");
    }

    // Key rotation: the old key and the new one; the new one verifies, named.
    let r = si_verify(dir.path(), &img, &host, &[&old.pub_path, &a.pub_path]);
    assert_code(&r, 0);
    assert!(
        r.stderr.contains(&format!(
            "verified: legacy format, key {}",
            a.pub_path.display()
        )),
        "{}",
        r.stderr
    );
    // The old key alone: refused, naming it.
    let r = si_verify(dir.path(), &img, &host, &[&old.pub_path]);
    r.assert_failed(
        1,
        ".*none valid for key sha256:.*signature does not verify with this key.*",
    );
}

#[test]
fn legacy_signatures_by_cosign_v2_and_v3_verify_with_sign_image_with_their_own_keys() {
    let reg = TestRegistry::start();
    let host = reg.host();
    let dir = tempfile::tempdir().unwrap();
    for (major, seed) in [(2u8, 21u64), (3, 22)] {
        let prefix = format!("c{major}");
        let g = cosign(
            major,
            dir.path(),
            &["generate-key-pair", "--output-key-prefix", &prefix],
            "cosign-pw",
        );
        assert!(g.ok, "cosign v{major} generate-key-pair: {g:?}");
        let key = dir.path().join(format!("{prefix}.key"));
        let public = dir.path().join(format!("{prefix}.pub"));
        let (_, img) = image(&reg, "team/app", &format!("v{major}"), seed);
        let extra: &[&str] = if major == 3 { V3_LEGACY } else { &[] };
        let c = cosign_sign(major, dir.path(), &key, "cosign-pw", &img, extra);
        assert!(c.ok, "cosign v{major} sign: {c:?}");
        let r = si_verify(dir.path(), &img, &host, &[&public]);
        assert_code(&r, 0);
        assert!(
            r.stderr.contains(&format!(
                "verified: legacy format, key {}",
                public.display()
            )),
            "{}",
            r.stderr
        );
        let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
        assert_eq!(v[0]["critical"]["type"], "cosign container image signature");

        // cosign's key signs with sign-image (same COSIGN_PASSWORD) on
        // another digest, and cosign verifies it.
        let (_, img2) = image(&reg, "team/app", &format!("v{major}-b"), seed + 100);
        let r = si_sign(dir.path(), &img2, &host, &key, "cosign-pw", "legacy");
        assert_code(&r, 0);
        let c = cosign_verify(major, dir.path(), &public, &img2);
        assert!(
            c.ok,
            "cosign v{major} verify of sign-image's signature with cosign's key: {c:?}"
        );
    }
}

#[test]
fn sign_image_generated_key_pair_signs_with_cosign_v2_and_v3() {
    let reg = TestRegistry::start();
    let host = reg.host();
    let dir = tempfile::tempdir().unwrap();
    let r = job(dir.path())
        .args(["generate-key-pair", "--output-key-prefix", "si"])
        .env("COSIGN_PASSWORD", "si-pw")
        .run();
    assert_code(&r, 0);
    let key = dir.path().join("si.key");
    let public = dir.path().join("si.pub");
    for (major, seed) in [(2u8, 31u64), (3, 32)] {
        let (_, img) = image(&reg, "team/app", &format!("g{major}"), seed);
        let extra: &[&str] = if major == 3 { V3_LEGACY } else { &[] };
        let c = cosign_sign(major, dir.path(), &key, "si-pw", &img, extra);
        assert!(c.ok, "cosign v{major} sign with sign-image's key: {c:?}");
        let r = si_verify(dir.path(), &img, &host, &[&public]);
        assert_code(&r, 0);
        // A wrong password: cosign refuses the key too.
        let c = cosign_sign(major, dir.path(), &key, "not-the-password", &img, extra);
        assert!(!c.ok, "cosign v{major} signed with a wrong password: {c:?}");
    }
}

/// A registry client for forging test inputs (plain HTTP to `host`).
fn client(host: &str) -> registry::Registry {
    registry::Registry::new(
        host,
        None,
        &registry::ClientOptions {
            insecure_registries: vec![host.to_string()],
            ..Default::default()
        },
        &kit::env::MapEnv(Default::default()),
    )
    .unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn sig_tag(digest: &str) -> String {
    digest.replace(':', "-") + ".sig"
}

/// Copies the `.sig` manifest of `from` to the `.sig` tag of `to` (a
/// signature moved to another image, byte for byte).
fn copy_sig_tag(host: &str, repo: &str, from: &str, to: &str) {
    block_on(async {
        let c = client(host);
        let m = c.manifest(repo, &sig_tag(from)).await.unwrap().unwrap();
        c.push_manifest(repo, &sig_tag(to), &m.media_type, m.bytes)
            .await
            .unwrap();
    });
}

/// Replaces the payload of the first signature of `digest` with `edit(payload)`,
/// keeping the signature: a tampered payload.
fn tamper_sig_payload(host: &str, repo: &str, digest: &str, edit: impl Fn(&str) -> String) {
    block_on(async {
        let c = client(host);
        let m = c.manifest(repo, &sig_tag(digest)).await.unwrap().unwrap();
        let mut doc: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap();
        let layer = &mut doc["layers"][0];
        let d: kit::reference::Digest = layer["digest"].as_str().unwrap().parse().unwrap();
        let payload = c.fetch_blob(repo, &d, 1 << 20).await.unwrap();
        let edited = edit(std::str::from_utf8(&payload).unwrap());
        assert_ne!(edited.as_bytes(), &payload[..], "the edit changed nothing");
        let nd = c
            .push_blob(repo, edited.clone().into_bytes())
            .await
            .unwrap();
        layer["digest"] = nd.to_string().into();
        layer["size"] = edited.len().into();
        c.push_manifest(
            repo,
            &sig_tag(digest),
            &m.media_type,
            serde_json::to_vec(&doc).unwrap(),
        )
        .await
        .unwrap();
    });
}

#[test]
fn legacy_forgeries_are_refused_by_sign_image_and_cosign_v2_and_v3() {
    let reg = TestRegistry::start();
    let host = reg.host();
    let dir = tempfile::tempdir().unwrap();
    let a = keys(dir.path(), "a", "pw");
    let (ia, img_a) = image(&reg, "team/app", "a", 41);
    let (ib, img_b) = image(&reg, "team/app", "b", 42);
    let (ic, img_c) = image(&reg, "team/app", "c", 43);
    for img in [&img_a, &img_c] {
        assert_code(
            &si_sign(dir.path(), img, &host, &a.key_path, "pw", "legacy"),
            0,
        );
    }
    // A's signature copied to B; C's payload edited (an annotation added).
    copy_sig_tag(&host, "team/app", &ia.digest, &ib.digest);
    tamper_sig_payload(&host, "team/app", &ic.digest, |p| {
        p.replace(r#""optional":null"#, r#""optional":{"approved":"yes"}"#)
    });

    // Sanity: A still verifies everywhere.
    assert_code(&si_verify(dir.path(), &img_a, &host, &[&a.pub_path]), 0);
    for (img, sign_image_cause) in [
        (
            &img_b,
            format!(
                ".*signed payload names digest {}, not {} \\(a signature copied from another image\\).*",
                re(&ia.digest),
                re(&ib.digest)
            ),
        ),
        (
            &img_c,
            ".*signature does not verify with this key.*".to_string(),
        ),
    ] {
        si_verify(dir.path(), img, &host, &[&a.pub_path]).assert_failed(1, &sign_image_cause);
        for major in [2, 3] {
            let c = cosign_verify(major, dir.path(), &a.pub_path, img);
            assert!(!c.ok, "cosign v{major} accepted a forgery of {img}: {c:?}");
        }
    }
    let _ = ic;
}

/// Both kinds of registry: docker-registry 2.8 (referrers tag schema) and
/// go-containerregistry's (referrers API).
fn both_kinds() -> Vec<Box<dyn AnyRegistry>> {
    vec![
        Box::new(TestRegistry::start()),
        Box::new(OciRegistry::start()),
    ]
}

/// The referrers of `digest` as the registry lists them: the tag schema's
/// index read by skopeo (docker-registry), or the referrers API.
fn listed_referrers(reg: &dyn AnyRegistry, repo: &str, digest: &str) -> Vec<serde_json::Value> {
    let index: serde_json::Value = if reg.has_referrers_api() {
        let host = reg.host();
        let d: kit::reference::Digest = digest.parse().unwrap();
        // Through the registry crate only to fetch the raw answer's entries.
        let list = block_on(async { client(&host).referrers(repo, &d, None).await.unwrap() });
        return list
            .into_iter()
            .map(|r| {
                serde_json::json!({"digest": r.digest.to_string(), "artifactType": r.artifact_type, "annotations": r.annotations})
            })
            .collect();
    } else {
        let tag = digest.replace(':', "-");
        match harness::registry::try_skopeo_raw(&format!("{}/{repo}:{tag}", reg.host()), None) {
            Ok(b) => serde_json::from_slice(&b).unwrap(),
            Err(_) => return Vec::new(),
        }
    };
    index["manifests"].as_array().cloned().unwrap_or_default()
}

const BUNDLE_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

#[test]
fn bundle_signatures_by_sign_image_verify_with_cosign_v3_on_both_registry_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let a = keys(dir.path(), "a", "pw");
    let other = keys(dir.path(), "other", "");
    for reg in both_kinds() {
        let kind = reg.kind();
        let host = reg.host();
        let (img_a, img) = image(reg.as_ref(), "team/app", "1", 51);
        let r = si_sign(dir.path(), &img, &host, &a.key_path, "pw", "bundle");
        assert_code(&r, 0);
        // No .sig tag; one referrer, with artifactType and cosign's annotations.
        assert!(
            sig_layers(&host, "team/app", &img_a.digest, None).is_none(),
            "{kind}"
        );
        let listed = listed_referrers(reg.as_ref(), "team/app", &img_a.digest);
        assert_eq!(listed.len(), 1, "{kind}: {listed:?}");
        assert_eq!(listed[0]["artifactType"], BUNDLE_TYPE, "{kind}: {listed:?}");
        if !reg.has_referrers_api() {
            // The tag schema entry we wrote carries cosign's annotations.
            assert_eq!(
                listed[0]["annotations"]["dev.sigstore.bundle.predicateType"],
                "https://sigstore.dev/cosign/sign/v1",
                "{kind}: {listed:?}"
            );
            assert_eq!(
                listed[0]["annotations"]["dev.sigstore.bundle.content"],
                "dsse-envelope"
            );
        }

        let c = cosign_verify(3, dir.path(), &a.pub_path, &img);
        assert!(
            c.ok,
            "{kind}: cosign v3 verify of sign-image's bundle: {c:?}"
        );
        assert!(
            c.stdout.contains("https://sigstore.dev/cosign/sign/v1"),
            "{kind}: {c:?}"
        );
        let c = cosign_verify(3, dir.path(), &other.pub_path, &img);
        assert!(!c.ok, "{kind}: cosign v3 accepted another key: {c:?}");
        // cosign 2: only with --new-bundle-format (and an empty trusted root).
        let c = cosign_v2_verify_bundle(dir.path(), &a.pub_path, &img);
        assert!(c.ok, "{kind}: cosign v2 --new-bundle-format verify: {c:?}");
        si_verify(dir.path(), &img, &host, &[&other.pub_path]).assert_failed(
            1,
            ".*none valid for key .*signature does not verify with this key.*",
        );
        let c = cosign_v2_verify_bundle(dir.path(), &other.pub_path, &img);
        assert!(!c.ok, "{kind}: cosign v2 accepted another key: {c:?}");
        // Without them cosign 2.6 still switches to the bundle, then fails
        // offline for want of a trusted root.
        let c = cosign_verify(2, dir.path(), &a.pub_path, &img);
        assert!(
            !c.ok && c.stderr.contains("trusted root is required"),
            "{kind}: cosign v2 verify offline: {c:?}"
        );

        let r = si_verify(dir.path(), &img, &host, &[&other.pub_path, &a.pub_path]);
        assert_code(&r, 0);
        assert!(
            r.stderr.contains(&format!(
                "verified: bundle format, key {}",
                a.pub_path.display()
            )),
            "{kind}: {}",
            r.stderr
        );
        let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
        assert_eq!(v[0]["predicateType"], "https://sigstore.dev/cosign/sign/v1");

        // Signing again with the same key pushes nothing new.
        let r = si_sign(dir.path(), &img, &host, &a.key_path, "pw", "bundle");
        assert_code(&r, 0);
        assert!(r.stderr.contains("already signed"), "{kind}: {}", r.stderr);
        assert_eq!(
            listed_referrers(reg.as_ref(), "team/app", &img_a.digest).len(),
            1
        );
    }
}

#[test]
fn bundle_signatures_by_cosign_v3_verify_with_sign_image_and_referrers_are_merged_on_both_registry_kinds()
 {
    let dir = tempfile::tempdir().unwrap();
    let g = cosign(
        3,
        dir.path(),
        &["generate-key-pair", "--output-key-prefix", "c3"],
        "c3-pw",
    );
    assert!(g.ok, "cosign v3 generate-key-pair: {g:?}");
    let key = dir.path().join("c3.key");
    let public = dir.path().join("c3.pub");
    let a = keys(dir.path(), "a", "pw");
    for reg in both_kinds() {
        let kind = reg.kind();
        let host = reg.host();
        let (img_a, img) = image(reg.as_ref(), "team/app", "1", 61);
        // cosign 3's default format (bundle), key-based, no transparency log.
        let c = cosign_sign(3, dir.path(), &key, "c3-pw", &img, V3_BUNDLE);
        assert!(c.ok, "{kind}: cosign v3 sign: {c:?}");
        let r = si_verify(dir.path(), &img, &host, &[&public]);
        assert_code(&r, 0);
        assert!(
            r.stderr.contains(&format!(
                "verified: bundle format, key {}",
                public.display()
            )),
            "{kind}: {}",
            r.stderr
        );
        // sign-image adds its bundle beside cosign's: both stay listed and
        // each verifies with its key, by both tools.
        let r = si_sign(dir.path(), &img, &host, &a.key_path, "pw", "bundle");
        assert_code(&r, 0);
        let listed = listed_referrers(reg.as_ref(), "team/app", &img_a.digest);
        assert_eq!(listed.len(), 2, "{kind}: {listed:?}");
        for k in [&public, &a.pub_path] {
            assert_code(&si_verify(dir.path(), &img, &host, &[k]), 0);
            let c = cosign_verify(3, dir.path(), k, &img);
            assert!(c.ok, "{kind}: cosign v3 verify with {}: {c:?}", k.display());
        }
    }
}

/// Pushes `bundle` as a signature referrer of `subject` (a forgery's
/// delivery: what a registry user with push rights can do).
fn push_bundle_referrer(host: &str, repo: &str, subject: &str, bundle: Vec<u8>) {
    use sign_image::bundle as b;
    block_on(async {
        let c = client(host);
        let s = c.resolve(repo, subject).await.unwrap();
        c.push_blob(repo, bundle.clone()).await.unwrap();
        c.push_blob(repo, b::EMPTY_BLOB.to_vec()).await.unwrap();
        let m = b::ReferrerManifest::for_bundle(
            &bundle,
            b::OciDescriptor {
                media_type: s.media_type,
                size: s.size,
                digest: s.digest.to_string(),
                annotations: None,
                artifact_type: None,
            },
            b::SIGN_PREDICATE_TYPE,
            &b::created_now(),
        );
        c.push_referrer(
            repo,
            "application/vnd.oci.image.manifest.v1+json",
            m.to_bytes(),
            &s.digest,
        )
        .await
        .unwrap();
    });
}

#[test]
fn bundle_forgeries_are_refused_by_sign_image_and_cosign_v3_on_both_registry_kinds() {
    use base64::Engine as _;
    use sign_image::bundle as b;
    let b64 = base64::engine::general_purpose::STANDARD;
    let dir = tempfile::tempdir().unwrap();
    let a = keys(dir.path(), "a", "pw");
    for reg in both_kinds() {
        let kind = reg.kind();
        let host = reg.host();
        let (ia, _) = image(reg.as_ref(), "team/app", "a", 71);
        let (ib, img_b) = image(reg.as_ref(), "team/app", "b", 72);
        let (ic, img_c) = image(reg.as_ref(), "team/app", "c", 73);
        let statement = |d: &str| {
            serde_json::to_vec(&b::Statement::for_signature(
                &d.parse().unwrap(),
                &Default::default(),
            ))
            .unwrap()
        };
        // B carries a valid bundle by key a whose statement names A.
        push_bundle_referrer(
            &host,
            "team/app",
            &ib.digest,
            b::sign(&a.key, &statement(&ia.digest)),
        );
        // C carries a bundle for C by key a whose payload was edited after signing.
        let mut tampered: serde_json::Value =
            serde_json::from_slice(&b::sign(&a.key, &statement(&ic.digest))).unwrap();
        let payload = String::from_utf8(
            b64.decode(tampered["dsseEnvelope"]["payload"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
        .replace(r#""annotations":{}"#, r#""annotations":{"approved":"yes"}"#);
        tampered["dsseEnvelope"]["payload"] = b64.encode(payload).into();
        push_bundle_referrer(
            &host,
            "team/app",
            &ic.digest,
            serde_json::to_vec(&tampered).unwrap(),
        );

        for (img, cause) in [
            (
                &img_b,
                format!(
                    ".*signed statement's subject is {}, not {} .*",
                    re(&ia.digest),
                    re(&ib.digest)
                ),
            ),
            (
                &img_c,
                ".*signature does not verify with this key.*".to_string(),
            ),
        ] {
            let r = si_verify(dir.path(), img, &host, &[&a.pub_path]);
            r.assert_failed(1, &cause);
            let c = cosign_verify(3, dir.path(), &a.pub_path, img);
            assert!(
                !c.ok,
                "{kind}: cosign v3 accepted a forged bundle on {img}: {c:?}"
            );
            let c = cosign_v2_verify_bundle(dir.path(), &a.pub_path, img);
            assert!(
                !c.ok,
                "{kind}: cosign v2 accepted a forged bundle on {img}: {c:?}"
            );
        }
    }
}

#[test]
fn format_both_is_read_by_every_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let a = keys(dir.path(), "a", "pw");
    for reg in both_kinds() {
        let kind = reg.kind();
        let host = reg.host();
        let (_, img) = image(reg.as_ref(), "team/app", "1", 81);
        assert_code(
            &si_sign(dir.path(), &img, &host, &a.key_path, "pw", "both"),
            0,
        );
        let c = cosign_verify(3, dir.path(), &a.pub_path, &img);
        assert!(c.ok, "{kind}: cosign v3 verify: {c:?}");
        // cosign 2.6 switches to the bundle when one exists, and then wants a
        // trusted root (from TUF, online) even for a key: offline it fails
        // although the legacy signature is there.
        let c = cosign_verify(2, dir.path(), &a.pub_path, &img);
        assert!(
            !c.ok && c.stderr.contains("trusted root is required"),
            "{kind}: cosign v2 verify offline: {c:?}"
        );
        let c = cosign_v2_verify_bundle(dir.path(), &a.pub_path, &img);
        assert!(c.ok, "{kind}: cosign v2 --new-bundle-format verify: {c:?}");
        let r = si_verify(dir.path(), &img, &host, &[&a.pub_path]);
        assert_code(&r, 0);
        // The legacy signature verifies first; the referrers are then not read.
        assert!(
            r.stderr.contains("1 of 1 signature(s) valid")
                && r.stderr.contains("verified: legacy format"),
            "{kind}: {}",
            r.stderr
        );
        let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
        assert_eq!(
            v[0]["critical"]["type"], "cosign container image signature",
            "{kind}"
        );
        assert_eq!(v.as_array().unwrap().len(), 1, "{kind}");
    }
}

/// A small CycloneDX SBOM, as the scan job writes one.
const SBOM: &str = r#"{"bomFormat":"CycloneDX","specVersion":"1.6","version":1,"components":[{"type":"library","name":"openssl","version":"3.0.15"}]}"#;

#[test]
fn attestations_in_the_bundle_format_cross_verify_with_cosign_v3_on_both_registry_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let sbom = dir.path().join("sbom.json");
    std::fs::write(&sbom, SBOM).unwrap();
    let g = cosign(
        3,
        dir.path(),
        &["generate-key-pair", "--output-key-prefix", "c3"],
        "c3-pw",
    );
    assert!(g.ok, "cosign v3 generate-key-pair: {g:?}");
    let c3_key = dir.path().join("c3.key");
    let c3_pub = dir.path().join("c3.pub");
    let a = keys(dir.path(), "a", "pw");
    let other = keys(dir.path(), "other", "");
    for reg in both_kinds() {
        let kind = reg.kind();
        let host = reg.host();
        // sign-image attests; cosign v3 verifies it (and refuses another key or type).
        let (_, img) = image(reg.as_ref(), "team/app", "1", 91);
        let r = job(dir.path())
            .args([
                "attest",
                &img,
                "--insecure-registry",
                &host,
                "--type",
                "cyclonedx",
                "--format",
                "bundle",
            ])
            .args(["--predicate", sbom.to_str().unwrap()])
            .args(["--key", a.key_path.to_str().unwrap()])
            .env("COSIGN_PASSWORD", "pw")
            .run();
        assert_code(&r, 0);
        let cv = |public: &Path, t: &str| {
            cosign(
                3,
                dir.path(),
                &[
                    "verify-attestation",
                    "--key",
                    public.to_str().unwrap(),
                    "--type",
                    t,
                    "--insecure-ignore-tlog=true",
                    "--allow-http-registry",
                    &img,
                ],
                "",
            )
        };
        let c = cv(&a.pub_path, "cyclonedx");
        assert!(c.ok, "{kind}: cosign v3 verify-attestation: {c:?}");
        assert!(
            !cv(&other.pub_path, "cyclonedx").ok,
            "{kind}: another key accepted"
        );
        let si = |public: &Path, t: &str| {
            job(dir.path())
                .args(["verify-attestation", &img, "--insecure-registry", &host])
                .args(["--type", t, "--key", public.to_str().unwrap()])
                .run()
        };
        let r = si(&a.pub_path, "cyclonedx");
        assert_code(&r, 0);
        let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
        assert_eq!(
            v[0]["predicate"]["components"][0]["name"], "openssl",
            "{kind}"
        );
        si(&a.pub_path, "spdxjson").assert_failed(
            1,
            ".*has no attestation of type https://spdx\\.dev/Document.*",
        );
        si(&other.pub_path, "cyclonedx")
            .assert_failed(1, ".*signature does not verify with this key.*");

        // cosign v3 attests (its default bundle format); sign-image verifies.
        let (_, img2) = image(reg.as_ref(), "team/app", "2", 92);
        let c = cosign(
            3,
            dir.path(),
            &[
                "attest",
                "--key",
                c3_key.to_str().unwrap(),
                "--type",
                "cyclonedx",
                "--predicate",
                sbom.to_str().unwrap(),
                "--tlog-upload=false",
                "--use-signing-config=false",
                "--allow-http-registry",
                &img2,
            ],
            "c3-pw",
        );
        assert!(c.ok, "{kind}: cosign v3 attest: {c:?}");
        let r = job(dir.path())
            .args(["verify-attestation", &img2, "--insecure-registry", &host])
            .args(["--type", "cyclonedx", "--key", c3_pub.to_str().unwrap()])
            .run();
        assert_code(&r, 0);
        assert!(
            r.stderr.contains("verified: bundle format"),
            "{kind}: {}",
            r.stderr
        );
    }
}

/// `cosign verify-attestation --key PUB --type T --insecure-ignore-tlog IMAGE`.
fn cosign_verify_attestation(major: u8, dir: &Path, public: &Path, t: &str, image: &str) -> Ran {
    cosign(
        major,
        dir,
        &[
            "verify-attestation",
            "--key",
            public.to_str().unwrap(),
            "--type",
            t,
            "--insecure-ignore-tlog=true",
            "--allow-http-registry",
            image,
        ],
        "",
    )
}

#[test]
fn attestations_in_the_legacy_att_format_cross_verify_with_cosign_v2_and_v3() {
    let reg = TestRegistry::start();
    let host = reg.host();
    let dir = tempfile::tempdir().unwrap();
    let sbom = dir.path().join("sbom.json");
    std::fs::write(&sbom, SBOM).unwrap();
    let a = keys(dir.path(), "a", "pw");
    let other = keys(dir.path(), "other", "");
    // sign-image attests in the .att tag (the default format).
    let (img_a, img) = image(&reg, "team/app", "1", 101);
    let attest = || {
        job(dir.path())
            .args([
                "attest",
                &img,
                "--insecure-registry",
                &host,
                "--type",
                "cyclonedx",
            ])
            .args(["--predicate", sbom.to_str().unwrap()])
            .args(["--key", a.key_path.to_str().unwrap()])
            .env("COSIGN_PASSWORD", "pw")
            .run()
    };
    assert_code(&attest(), 0);
    let att = harness::registry::skopeo_raw(
        &format!(
            "{host}/team/app:{}",
            img_a.digest.replace(':', "-") + ".att"
        ),
        None,
    );
    let att: serde_json::Value = serde_json::from_slice(&att).unwrap();
    assert_eq!(
        att["layers"][0]["mediaType"],
        "application/vnd.dsse.envelope.v1+json"
    );
    assert_eq!(
        att["layers"][0]["annotations"]["predicateType"],
        "https://cyclonedx.org/bom"
    );
    // Again: nothing new.
    let r = attest();
    assert_code(&r, 0);
    assert!(r.stderr.contains("nothing pushed"), "{}", r.stderr);
    for major in [2, 3] {
        let c = cosign_verify_attestation(major, dir.path(), &a.pub_path, "cyclonedx", &img);
        assert!(
            c.ok,
            "cosign v{major} verify-attestation of sign-image's .att: {c:?}"
        );
        let c = cosign_verify_attestation(major, dir.path(), &other.pub_path, "cyclonedx", &img);
        assert!(!c.ok, "cosign v{major} accepted another key: {c:?}");
    }
    let r = job(dir.path())
        .args(["verify-attestation", &img, "--insecure-registry", &host])
        .args(["--type", "cyclonedx", "--key", a.pub_path.to_str().unwrap()])
        .run();
    assert_code(&r, 0);
    assert!(r.stderr.contains("verified: legacy format"), "{}", r.stderr);

    // cosign v2 attests (its .att format); sign-image verifies.
    let g = cosign(
        2,
        dir.path(),
        &["generate-key-pair", "--output-key-prefix", "c2"],
        "c2-pw",
    );
    assert!(g.ok, "{g:?}");
    let (_, img2) = image(&reg, "team/app", "2", 102);
    let c = cosign(
        2,
        dir.path(),
        &[
            "attest",
            "--key",
            dir.path().join("c2.key").to_str().unwrap(),
            "--type",
            "cyclonedx",
            "--predicate",
            sbom.to_str().unwrap(),
            "--tlog-upload=false",
            "--allow-http-registry",
            &img2,
        ],
        "c2-pw",
    );
    assert!(c.ok, "cosign v2 attest: {c:?}");
    let verify = |public: &Path, t: &str| {
        job(dir.path())
            .args(["verify-attestation", &img2, "--insecure-registry", &host])
            .args(["--type", t, "--key", public.to_str().unwrap()])
            .run()
    };
    let r = verify(&dir.path().join("c2.pub"), "cyclonedx");
    assert_code(&r, 0);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v[0]["predicate"]["bomFormat"], "CycloneDX");
    verify(&a.pub_path, "cyclonedx")
        .assert_failed(1, ".*signature does not verify with this key.*");
    verify(&dir.path().join("c2.pub"), "openvex")
        .assert_failed(1, ".*has no attestation of type https://openvex\\.dev/ns.*");
}
