//! `--with-signatures` (on by default): the `.sig`/`.att` tags and every OCI
//! referrer of the digest and of its platform manifests come along, on both
//! kinds of registry (docker-registry 2.8 without the referrers API, where
//! the referrers tag schema is used; go-containerregistry's registry with
//! it), and what was signed at SRC verifies at DST unchanged.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use harness::job::Run;
use harness::oci_registry::{AnyRegistry, OciRegistry, push_image_to};
use harness::registry::{
    BearerConfig, Gateway, GatewayOptions, ImageSpec, Logged, TestImage, TestRegistry, skopeo_raw,
    try_skopeo_raw,
};
use kit::env::MapEnv;
use kit::http::RetryPolicy;
use kit::reference::Digest;
use registry::{ClientOptions, Registry, referrers_tag};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";
const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const SBOM: &str = "application/vnd.cyclonedx+json";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn client(host: &str) -> Registry {
    let opts = ClientOptions {
        insecure_registries: vec![host.to_string()],
        retry: RetryPolicy {
            attempts: 2,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(1),
        },
        ..Default::default()
    };
    Registry::new(host, None, &opts, &MapEnv::default()).unwrap()
}

fn spec(seed: u64) -> ImageSpec {
    ImageSpec {
        layer_sizes: vec![700],
        seed,
        ..Default::default()
    }
}

fn promote(dir: &Path, args: &[&str], insecure: &[String]) -> Run {
    promote_with(dir, args, insecure, &[])
}

fn promote_with(dir: &Path, args: &[&str], insecure: &[String], env: &[(&str, &str)]) -> Run {
    let r = harness::job::Job::new(env!("CARGO_BIN_EXE_promote-image"), dir)
        .env("PROMOTE_DOTENV", dir.join("promote.env"))
        .env("PROMOTE_RETRIES", "2")
        .env("INSECURE_REGISTRY", insecure.join(","))
        .envs(env.iter().copied())
        .args(args)
        .run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    r
}

fn writes(log: &[Logged]) -> Vec<String> {
    log.iter()
        .filter(|l| l.method != "GET" && l.method != "HEAD")
        .map(|l| format!("{} {}", l.method, l.path))
        .collect()
}

/// A cosign-like artifact manifest (empty config, one layer) with `subject`.
async fn artifact(
    c: &Registry,
    repo: &str,
    subject: &Digest,
    artifact_type: &str,
    note: &str,
) -> Vec<u8> {
    let empty = c.push_blob(repo, b"{}".to_vec()).await.unwrap();
    let body = format!("{{\"note\":\"{note}\"}}").into_bytes();
    let len = body.len();
    let layer = c.push_blob(repo, body).await.unwrap();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": EMPTY, "digest": empty.to_string(), "size": 2},
        "layers": [{"mediaType": artifact_type, "digest": layer.to_string(), "size": len}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.to_string(), "size": 100},
        "annotations": {"note": note},
    }))
    .unwrap()
}

/// What [`plant`] put at SRC.
struct Planted {
    /// The tags `.sig` and `.att` of the index and `.sig` of the platform
    /// manifest, with their digests.
    legacy: Vec<(String, Digest)>,
    /// Referrer of the index.
    a: Digest,
    /// Another referrer of the index (an attestation).
    a2: Digest,
    /// Referrer of the first platform manifest.
    b: Digest,
    /// Referrer of `b`.
    c: Digest,
    platform: Digest,
}

/// `.sig` and `.att` tags of the index, a `.sig` tag of a platform manifest
/// (`cosign sign --recursive`), a bundle-typed referrer of the
/// index, an SBOM referrer of a platform manifest and a referrer of that
/// SBOM.
async fn plant(c: &Registry, repo: &str, img: &TestImage) -> Planted {
    let top: Digest = img.digest.parse().unwrap();
    let platform: Digest = img.manifests[0].1.digest.parse().unwrap();
    let mut legacy = Vec::new();
    for (subject, suffix, kind) in [
        (&top, ".sig", "simplesigning"),
        (&top, ".att", "dsse"),
        (&platform, ".sig", "simplesigning"),
    ] {
        let config_bytes = format!("{{\"kind\":\"{kind}\"}}").into_bytes();
        let config_len = config_bytes.len();
        let config = c.push_blob(repo, config_bytes).await.unwrap();
        let layer_bytes = format!("{{\"payload\":\"{kind}-{}\"}}", img.digest).into_bytes();
        let len = layer_bytes.len();
        let layer = c.push_blob(repo, layer_bytes).await.unwrap();
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": config_len},
            "layers": [{"mediaType": format!("application/vnd.dev.cosign.{kind}.v1+json"), "digest": layer.to_string(), "size": len,
                        "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ"}}],
        }))
        .unwrap();
        let tag = format!("{}{suffix}", referrers_tag(subject));
        let d = c.push_manifest(repo, &tag, OCI_MANIFEST, m).await.unwrap();
        legacy.push((tag, d));
    }
    let a = artifact(c, repo, &top, BUNDLE, "a").await;
    let a = c.push_referrer(repo, OCI_MANIFEST, a, &top).await.unwrap();
    let a2 = artifact(c, repo, &top, SBOM, "a2").await;
    let a2 = c.push_referrer(repo, OCI_MANIFEST, a2, &top).await.unwrap();
    let b = artifact(c, repo, &platform, SBOM, "b").await;
    let b = c
        .push_referrer(repo, OCI_MANIFEST, b, &platform)
        .await
        .unwrap();
    let cc = artifact(c, repo, &b, BUNDLE, "c").await;
    let cc = c.push_referrer(repo, OCI_MANIFEST, cc, &b).await.unwrap();
    Planted {
        legacy,
        a,
        a2,
        b,
        c: cc,
        platform,
    }
}

fn digests(list: &[registry::Referrer]) -> BTreeSet<String> {
    list.iter().map(|r| r.digest.to_string()).collect()
}

/// Every pairing of the two kinds: SRC's tags and referrers arrive at DST
/// (in DST's way of keeping referrers, with artifactType and annotations),
/// a re-run writes nothing; the extra requests per carried artifact are
/// printed.
#[test]
fn carries_sig_att_tags_and_referrers_between_both_kinds_and_rerun_writes_nothing() {
    let start = |api: bool| -> Box<dyn AnyRegistry> {
        if api {
            Box::new(OciRegistry::start())
        } else {
            Box::new(TestRegistry::start())
        }
    };
    let rt = rt();
    for (src_api, dst_api) in [(false, false), (true, true), (false, true), (true, false)] {
        let src = start(src_api);
        let dst = start(dst_api);
        let base = start(dst_api);
        let pair = format!("{} -> {}", src.kind(), dst.kind());
        let tmp = tempfile::tempdir().unwrap();
        let img = push_image_to(src.as_ref(), "team/app", "1", &spec(11));
        let top: Digest = img.digest.parse().unwrap();
        let planted = rt.block_on(plant(&client(&src.host()), "team/app", &img));
        let gw = Gateway::start(&dst.host(), GatewayOptions::default());
        let gw_base = Gateway::start(&base.host(), GatewayOptions::default());
        let insecure = [src.host(), gw.host(), gw_base.host()];
        let src_ref = format!("{}/team/app:1", src.host());

        // The image alone, for comparison.
        promote(
            tmp.path(),
            &[
                &src_ref,
                &format!("{}/prod/app:1", gw_base.host()),
                "--with-signatures=false",
            ],
            &insecure,
        );
        let r = promote(
            tmp.path(),
            &[&src_ref, &format!("{}/prod/app:1", gw.host())],
            &insecure,
        );
        assert!(
            r.stderr
                .contains("3 tag(s) written, 0 unchanged; 4 referrer(s) copied, 0 already there"),
            "{pair}: {}",
            r.stderr
        );
        let (with, without) = (gw.requests(), gw_base.requests());
        eprintln!(
            "{pair}: first promotion {} requests at DST with signatures, {} without: {:.1} extra per carried artifact (7 carried)",
            with.len(),
            without.len(),
            (with.len() - without.len()) as f64 / 7.0
        );

        // At DST: the same tags, the same referrers of the same subjects.
        let d = client(&dst.host());
        for (tag, want) in &planted.legacy {
            let got = skopeo_raw(&format!("{}/prod/app:{tag}", dst.host()), None);
            assert_eq!(registry::sha256(&got), *want, "{pair}: {tag}");
        }
        rt.block_on(async {
            let of_top = d.referrers("prod/app", &top, None).await.unwrap();
            let want = [planted.a.to_string(), planted.a2.to_string()];
            assert_eq!(digests(&of_top), want.into(), "{pair}");
            let a = of_top.iter().find(|r| r.digest == planted.a).unwrap();
            assert_eq!(a.artifact_type.as_deref(), Some(BUNDLE), "{pair}");
            assert_eq!(a.annotations["note"], "a", "{pair}");
            let of_platform = d
                .referrers("prod/app", &planted.platform, Some(SBOM))
                .await
                .unwrap();
            assert_eq!(
                digests(&of_platform),
                [planted.b.to_string()].into(),
                "{pair}"
            );
            let of_b = d.referrers("prod/app", &planted.b, None).await.unwrap();
            assert_eq!(digests(&of_b), [planted.c.to_string()].into(), "{pair}");
        });
        let tag_index = try_skopeo_raw(
            &format!("{}/prod/app:{}", dst.host(), referrers_tag(&top)),
            None,
        );
        if dst.has_referrers_api() {
            assert!(
                tag_index.is_err(),
                "{pair}: wrote the tag schema beside the API"
            );
        } else {
            let index: serde_json::Value = serde_json::from_slice(&tag_index.unwrap()).unwrap();
            let entries = index["manifests"].as_array().unwrap();
            assert_eq!(entries.len(), 2, "{pair}: {index}");
            let a = entries
                .iter()
                .find(|e| e["digest"] == planted.a.to_string())
                .unwrap();
            assert_eq!(a["artifactType"], BUNDLE, "{pair}: {index}");
            assert_eq!(a["annotations"]["note"], "a", "{pair}");
            // Both referrers of the index went in with one update of its tag.
            let tag_path = format!("/v2/prod/app/manifests/{}", referrers_tag(&top));
            let tag_writes = with
                .iter()
                .filter(|l| l.method == "PUT" && l.path == tag_path)
                .count();
            assert_eq!(tag_writes, 1, "{pair}");
        }

        // Re-run: only reads.
        gw.reset_counters();
        gw_base.reset_counters();
        let r = promote(
            tmp.path(),
            &[&src_ref, &format!("{}/prod/app:1", gw.host())],
            &insecure,
        );
        assert!(
            r.stderr
                .contains("0 tag(s) written, 3 unchanged; 0 referrer(s) copied, 4 already there"),
            "{pair}: {}",
            r.stderr
        );
        let log = gw.requests();
        assert_eq!(writes(&log), Vec::<String>::new(), "{pair}");
        promote(
            tmp.path(),
            &[
                &src_ref,
                &format!("{}/prod/app:1", gw_base.host()),
                "--with-signatures=false",
            ],
            &insecure,
        );
        eprintln!(
            "{pair}: re-run {} requests at DST with signatures, {} without",
            log.len(),
            gw_base.requests().len()
        );
        assert!(gw.bytes_in() == 0, "{pair}");
    }
}

/// Docker Hub simulated (the harness's Bearer token server in front of
/// docker-registry 2.8, no referrers API): the tags and referrers arrive
/// through the tag schema with the destination's token, whose scopes name
/// the destination repository only; the token never shows; a re-run writes
/// nothing.
#[test]
fn carries_signatures_to_a_bearer_registry_without_referrers_api_simulated() {
    let src = TestRegistry::start();
    let backend = TestRegistry::start();
    let hub = Gateway::start(
        &backend.host(),
        GatewayOptions {
            bearer: Some(BearerConfig::new("hubuser", "hub-token-sig-77")),
        },
    );
    let tmp = tempfile::tempdir().unwrap();
    let img = push_image_to(&src, "team/app", "1", &spec(15));
    let planted = rt().block_on(plant(&client(&src.host()), "team/app", &img));
    let insecure = [src.host(), hub.host()];
    let env = [
        ("PROMOTE_DST_USERNAME", "hubuser"),
        ("PROMOTE_DST_PASSWORD", "hub-token-sig-77"),
    ];
    let args = [
        format!("{}/team/app:1", src.host()),
        format!("{}/acme/app:1", hub.host()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = promote_with(tmp.path(), &args, &insecure, &env);
    r.assert_no_secret(&["hub-token-sig-77"]);
    assert!(
        r.stderr
            .contains("3 tag(s) written, 0 unchanged; 4 referrer(s) copied"),
        "{}",
        r.stderr
    );
    let scopes = hub.token_scopes();
    assert!(
        scopes.iter().all(|s| s.contains("repository:acme/app:")),
        "{scopes:?}"
    );
    let top: Digest = img.digest.parse().unwrap();
    let d = client(&backend.host());
    rt().block_on(async {
        let of_top = d.referrers("acme/app", &top, None).await.unwrap();
        let want = [planted.a.to_string(), planted.a2.to_string()];
        assert_eq!(digests(&of_top), want.into());
        let of_b = d.referrers("acme/app", &planted.b, None).await.unwrap();
        assert_eq!(digests(&of_b), [planted.c.to_string()].into());
    });
    for (tag, want) in &planted.legacy {
        let got = skopeo_raw(&format!("{}/acme/app:{tag}", backend.host()), None);
        assert_eq!(registry::sha256(&got), *want, "{tag}");
    }
    hub.reset_counters();
    let r = promote_with(tmp.path(), &args, &insecure, &env);
    assert!(
        r.stderr.contains("0 referrer(s) copied, 4 already there"),
        "{}",
        r.stderr
    );
    assert_eq!(writes(&hub.requests()), Vec::<String>::new());
}

/// A `.sig` tag DST already has with another signature is merged, not
/// replaced: both signatures stay, and a re-run writes nothing.
#[test]
fn a_different_sig_at_the_destination_is_merged_not_replaced() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let img = push_image_to(&src, "team/app", "1", &spec(12));
    let rt = rt();
    let top: Digest = img.digest.parse().unwrap();
    let tag = format!("{}.sig", referrers_tag(&top));
    let sig_manifest = |c: Registry, note: &'static str| async move {
        let config = c.push_blob("team/app", b"{}".to_vec()).await.unwrap();
        let layer = c
            .push_blob("team/app", note.as_bytes().to_vec())
            .await
            .unwrap();
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 2},
            "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": layer.to_string(), "size": note.len()}],
        }))
        .unwrap()
    };
    rt.block_on(async {
        let s = client(&src.host());
        let m = sig_manifest(s.clone(), "source-signature").await;
        s.push_manifest("team/app", &tag, OCI_MANIFEST, m)
            .await
            .unwrap();
        // DST holds the image and its own signature of it already.
        let d = client(&dst.host());
        let m = sig_manifest(d.clone(), "destination-signature").await;
        // (the blobs go to prod/app, where the tag will be)
        let config = d.push_blob("prod/app", b"{}".to_vec()).await.unwrap();
        let layer = d
            .push_blob("prod/app", b"destination-signature".to_vec())
            .await
            .unwrap();
        let _ = (config, layer);
        d.push_manifest("prod/app", &tag, OCI_MANIFEST, m)
            .await
            .unwrap();
    });
    let insecure = [src.host(), dst.host()];
    let src_ref = format!("{}/team/app:1", src.host());
    let dst_ref = format!("{}/prod/app:1", dst.host());
    let r = promote(tmp.path(), &[&src_ref, &dst_ref], &insecure);
    assert!(r.stderr.contains("merged"), "{}", r.stderr);
    let merged: serde_json::Value =
        serde_json::from_slice(&skopeo_raw(&format!("{}/prod/app:{tag}", dst.host()), None))
            .unwrap();
    let layers: Vec<u64> = merged["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .collect();
    assert_eq!(
        layers,
        [
            "source-signature".len() as u64,
            "destination-signature".len() as u64
        ],
        "{merged}"
    );
    let gw = Gateway::start(&dst.host(), GatewayOptions::default());
    let r = promote(
        tmp.path(),
        &[&src_ref, &format!("{}/prod/app:1", gw.host())],
        &[src.host(), gw.host()],
    );
    assert!(
        r.stderr.contains("0 tag(s) written, 1 unchanged"),
        "{}",
        r.stderr
    );
    assert_eq!(writes(&gw.requests()), Vec::<String>::new());
}

/// `sign-image` (in-process, its real `Job`) with `args` and `env`.
fn sign_image(args: &[&str], env: &[(&str, &str)]) -> ExitCode {
    let a: sign_image::cli::Args =
        kit::cli::try_parse_from(std::iter::once("sign-image").chain(args.iter().copied()))
            .unwrap();
    let env = MapEnv(
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    kit::job::execute::<sign_image::Job>(a, &env)
}

/// A digest signed with sign-image at SRC, in cosign's `.sig` format and in
/// cosign 3's bundle format (a referrer), verifies at DST after promotion,
/// on both kinds; promoted without signatures it does not.
#[test]
fn signed_at_the_source_verifies_at_the_destination_with_sign_image() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("cosign");
    let password = [("COSIGN_PASSWORD", "promote-test-pw")];
    assert_eq!(
        sign_image(
            &[
                "generate-key-pair",
                "--output-key-prefix",
                prefix.to_str().unwrap()
            ],
            &password,
        ),
        ExitCode::SUCCESS
    );
    let key = tmp.path().join("cosign.key");
    let public = tmp.path().join("cosign.pub");
    let kinds: [Box<dyn AnyRegistry>; 2] = [
        Box::new(TestRegistry::start()),
        Box::new(OciRegistry::start()),
    ];
    for reg in kinds {
        for (seed, format) in [(13, "legacy"), (14, "bundle")] {
            let kind = format!("{} ({format})", reg.kind());
            let img = push_image_to(reg.as_ref(), &format!("team/{format}"), "1", &spec(seed));
            let host = reg.host();
            let src_ref = format!("{host}/team/{format}@{}", img.digest);
            let signed = sign_image(
                &[
                    "sign",
                    &src_ref,
                    "--key",
                    key.to_str().unwrap(),
                    "--format",
                    format,
                    "--insecure-registry",
                    &host,
                ],
                &password,
            );
            assert_eq!(signed, ExitCode::SUCCESS, "{kind}");
            let verify = |repo: &str| {
                sign_image(
                    &[
                        "verify",
                        &format!("{host}/{repo}@{}", img.digest),
                        "--key",
                        public.to_str().unwrap(),
                        "--identity",
                        &format!("{host}/team/{format}"),
                        "--insecure-registry",
                        &host,
                    ],
                    &[],
                )
            };
            let at = |side: &str| format!("{side}/{format}");
            assert_eq!(
                verify(&at("team")),
                ExitCode::SUCCESS,
                "{kind}: at the source"
            );
            let insecure = [host.clone()];
            let src = format!("{host}/team/{format}:1");
            promote(
                tmp.path(),
                &[&src, &format!("{host}/prod/{format}:1")],
                &insecure,
            );
            assert_eq!(
                verify(&at("prod")),
                ExitCode::SUCCESS,
                "{kind}: after promotion"
            );
            promote(
                tmp.path(),
                &[
                    &src,
                    &format!("{host}/bare/{format}:1"),
                    "--with-signatures=false",
                ],
                &insecure,
            );
            assert_eq!(
                verify(&at("bare")),
                ExitCode::from(1),
                "{kind}: promoted without signatures, yet verified"
            );
        }
    }
}

/// `.tools/bin/cosign-v<major>`, or a panic saying how to build it.
fn cosign_bin(major: u8) -> std::path::PathBuf {
    let bin =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../.tools/bin/cosign-v{major}"));
    assert!(
        bin.is_file(),
        "{} is missing: build it with `bash scripts/install-peers.sh cosign` (Go and the Go module proxy needed)",
        bin.display()
    );
    bin
}

/// cosign v`major` in `dir`, clean environment, key-based and offline;
/// panics with its output unless it ends as `ok` says.
fn cosign(major: u8, dir: &Path, args: &[&str], ok: bool) -> String {
    let out = std::process::Command::new(cosign_bin(major))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("DOCKER_CONFIG", dir.join("no-docker-config"))
        .env("COSIGN_PASSWORD", "cosign-pw")
        .env("COSIGN_YES", "true")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.success(),
        ok,
        "cosign-v{major} {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// What cosign v`major` needs to sign or attest key-based without Rekor.
fn cosign_offline(major: u8) -> &'static [&'static str] {
    if major == 3 {
        // `--tlog-upload=false` alone is refused while a signing config is used.
        &[
            "--use-signing-config=false",
            "--tlog-upload=false",
            "--allow-http-registry",
        ]
    } else {
        &["--tlog-upload=false", "--allow-http-registry"]
    }
}

/// A digest signed and attested at SRC by the real cosign v3.1.3 (its
/// default: Sigstore bundles as OCI referrers; on docker-registry 2.8
/// through the referrers tag schema) and by cosign v2.6.5 (the `.sig` and
/// `.att` tags) verifies at DST after promotion with `cosign verify` and
/// `cosign verify-attestation` of both versions, in all four pairings of
/// the two kinds; promoted without signatures it does not. Key-based
/// without Rekor: see [`cosign_offline`]; verifying takes
/// `--insecure-ignore-tlog=true`.
#[test]
fn signed_and_attested_with_cosign_v2_and_v3_at_the_source_verify_at_the_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    cosign(3, dir, &["generate-key-pair"], true);
    let predicate = dir.join("sbom.json");
    std::fs::write(
        &predicate,
        r#"{"bomFormat":"CycloneDX","specVersion":"1.6","components":[]}"#,
    )
    .unwrap();
    let predicate = predicate.to_str().unwrap();
    std::fs::write(
        dir.join("empty-trusted-root.json"),
        r#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}"#,
    )
    .unwrap();
    let start = |api: bool| -> Box<dyn AnyRegistry> {
        if api {
            Box::new(OciRegistry::start())
        } else {
            Box::new(TestRegistry::start())
        }
    };
    for (seed, (src_api, dst_api)) in [(false, false), (true, true), (false, true), (true, false)]
        .into_iter()
        .enumerate()
    {
        let (src, dst) = (start(src_api), start(dst_api));
        let pair = format!("{} -> {}", src.kind(), dst.kind());
        let img = push_image_to(src.as_ref(), "team/app", "1", &spec(20 + seed as u64));
        let signed = format!("{}/team/app@{}", src.host(), img.digest);
        for major in [3, 2] {
            let offline = cosign_offline(major);
            let mut sign = vec!["sign", "--key", "cosign.key"];
            sign.extend(offline);
            sign.push(&signed);
            cosign(major, dir, &sign, true);
            let mut attest = vec!["attest", "--key", "cosign.key", "--type", "cyclonedx"];
            attest.extend(["--predicate", predicate]);
            attest.extend(offline);
            attest.push(&signed);
            cosign(major, dir, &attest, true);
        }
        let verify = |major: u8, image: &str, ok: bool| {
            let mut common = vec![
                "--key",
                "cosign.pub",
                "--insecure-ignore-tlog=true",
                "--allow-http-registry",
            ];
            if major == 2 {
                // cosign 2 reads the bundles beside the `.sig` and then wants a
                // trusted root even for a key: an empty one will do offline.
                common.extend(["--trusted-root", "empty-trusted-root.json"]);
            }
            let mut v = vec!["verify"];
            v.extend(&common);
            v.push(image);
            let out = cosign(major, dir, &v, ok);
            let mut a = vec!["verify-attestation", "--type", "cyclonedx"];
            a.extend(&common);
            a.push(image);
            cosign(major, dir, &a, ok);
            out
        };
        let insecure = [src.host(), dst.host()];
        let src_ref = format!("{}/team/app:1", src.host());
        let r = promote(
            dir,
            &[&src_ref, &format!("{}/prod/app:1", dst.host())],
            &insecure,
        );
        assert!(
            r.stderr
                .contains("2 tag(s) written, 0 unchanged; 2 referrer(s) copied"),
            "{pair}: {}",
            r.stderr
        );
        let promoted = format!("{}/prod/app@{}", dst.host(), img.digest);
        for major in [3, 2] {
            let out = verify(major, &promoted, true);
            assert!(out.contains(&img.digest), "{pair}: cosign-v{major}: {out}");
        }
        promote(
            dir,
            &[
                &src_ref,
                &format!("{}/bare/app:1", dst.host()),
                "--with-signatures=false",
            ],
            &insecure,
        );
        verify(3, &format!("{}/bare/app@{}", dst.host(), img.digest), false);
    }
}

/// A tag-schema index at SRC naming a referrer SRC no longer has (deleted
/// since): the promotion goes on, copies the others and says what it
/// skipped.
#[test]
fn a_referrer_listed_but_gone_at_the_source_is_skipped_and_named() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let img = push_image_to(&src, "team/app", "1", &spec(16));
    let top: Digest = img.digest.parse().unwrap();
    let c = client(&src.host());
    let kept = rt().block_on(async {
        let m = artifact(&c, "team/app", &top, BUNDLE, "kept").await;
        let kept = c
            .push_referrer("team/app", OCI_MANIFEST, m, &top)
            .await
            .unwrap();
        // Another referrer, listed in the tag's index, then deleted.
        let m = artifact(&c, "team/app", &top, BUNDLE, "gone").await;
        let gone = c
            .push_referrer("team/app", OCI_MANIFEST, m, &top)
            .await
            .unwrap();
        let url = format!("{}/v2/team/app/manifests/{gone}", src.url());
        let status = reqwest::Client::new()
            .delete(&url)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 202, "DELETE {url}");
        kept
    });
    let r = promote(
        tmp.path(),
        &[
            &format!("{}/team/app:1", src.host()),
            &format!("{}/prod/app:1", dst.host()),
        ],
        &[src.host(), dst.host()],
    );
    assert!(
        r.stderr.contains(
            "1 referrer(s) copied, 0 already there, 1 listed at the source but missing there"
        ),
        "{}",
        r.stderr
    );
    let got = rt()
        .block_on(client(&dst.host()).referrers("prod/app", &top, None))
        .unwrap();
    assert_eq!(digests(&got), [kept.to_string()].into());
}
