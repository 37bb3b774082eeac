//! OCI 1.1 referrers against both kinds of registry: docker-registry 2.8
//! (no referrers API: the referrers tag schema) and go-containerregistry's
//! registry (the referrers API), plus scripted answers for what neither
//! real registry does (pages, garbage).

use std::collections::BTreeMap;
use std::time::Duration;

use harness::http_server::Response;
use harness::oci_registry::{AnyRegistry, OciRegistry, push_image_to};
use harness::origin::RecordingOrigin;
use harness::registry::{
    Gateway, GatewayOptions, ImageSpec, TestRegistry, skopeo_raw, try_skopeo_raw,
};
use kit::ExitKind;
use kit::env::MapEnv;
use kit::http::RetryPolicy;
use kit::reference::Digest;
use registry::{ClientOptions, Registry, referrers_tag};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";
const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const SBOM: &str = "application/vnd.example.sbom+json";

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

fn one_manifest(seed: u64) -> ImageSpec {
    ImageSpec {
        index: false,
        attestation: false,
        layer_sizes: vec![100],
        seed,
        ..Default::default()
    }
}

/// An artifact manifest the way cosign v3 writes a bundle: empty config,
/// one layer, `artifactType`, `subject`, annotations.
async fn artifact(
    reg: &Registry,
    repo: &str,
    subject: &Digest,
    subject_size: u64,
    artifact_type: &str,
    note: &str,
) -> Vec<u8> {
    let empty = reg.push_blob(repo, b"{}".to_vec()).await.unwrap();
    let layer = reg
        .push_blob(repo, format!("{{\"note\":\"{note}\"}}").into_bytes())
        .await
        .unwrap();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": EMPTY, "digest": empty.to_string(), "size": 2},
        "layers": [{"mediaType": artifact_type, "digest": layer.to_string(), "size": note.len() + 11}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.to_string(), "size": subject_size},
        "annotations": {"note": note, "org.opencontainers.image.created": "2026-12-03T00:00:00Z"},
    }))
    .unwrap()
}

fn kinds() -> Vec<Box<dyn AnyRegistry>> {
    vec![
        Box::new(TestRegistry::start()),
        Box::new(OciRegistry::start()),
    ]
}

/// Two referrers pushed, listed with their artifact types and annotations,
/// filtered by type; a re-push writes nothing but the manifest itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_lists_and_filters_referrers_on_both_kinds() {
    for reg in kinds() {
        let kind = reg.kind();
        let img = push_image_to(reg.as_ref(), "team/app", "1", &one_manifest(1));
        let gw = Gateway::start(&reg.host(), GatewayOptions::default());
        let c = client(&gw.host());
        let subject: Digest = img.digest.parse().unwrap();
        let size = img.manifests[0].1.size;
        let sig = artifact(&c, "team/app", &subject, size, BUNDLE, "sig").await;
        let sbom = artifact(&c, "team/app", &subject, size, SBOM, "sbom").await;

        assert!(
            c.referrers("team/app", &subject, None)
                .await
                .unwrap()
                .is_empty()
        );
        let d_sig = c
            .push_referrer("team/app", OCI_MANIFEST, sig.clone(), &subject)
            .await
            .unwrap();
        let d_sbom = c
            .push_referrer("team/app", OCI_MANIFEST, sbom.clone(), &subject)
            .await
            .unwrap();

        let all = c.referrers("team/app", &subject, None).await.unwrap();
        let mut found: Vec<_> = all
            .iter()
            .map(|r| {
                (
                    r.digest.clone(),
                    r.artifact_type.clone().unwrap_or_default(),
                )
            })
            .collect();
        found.sort();
        let mut want = vec![
            (d_sig.clone(), BUNDLE.to_string()),
            (d_sbom.clone(), SBOM.to_string()),
        ];
        want.sort();
        assert_eq!(found, want, "{kind}");
        let s = all.iter().find(|r| r.digest == d_sig).unwrap();
        assert_eq!(s.annotations["note"], "sig", "{kind}");
        assert_eq!(s.size, sig.len() as u64);
        assert_eq!(s.media_type, OCI_MANIFEST);

        let only = c
            .referrers("team/app", &subject, Some(BUNDLE))
            .await
            .unwrap();
        assert_eq!(only.len(), 1, "{kind}: {only:?}");
        assert_eq!(only[0].digest, d_sig);

        // Where the list lives: the tag schema only without the API.
        let tag_ref = format!("{}/team/app:{}", reg.host(), referrers_tag(&subject));
        if reg.has_referrers_api() {
            assert!(
                try_skopeo_raw(&tag_ref, None).is_err(),
                "{kind}: tag written"
            );
        } else {
            let index: serde_json::Value =
                serde_json::from_slice(&skopeo_raw(&tag_ref, None)).unwrap();
            assert_eq!(index["mediaType"], OCI_INDEX);
            let entries = index["manifests"].as_array().unwrap();
            assert_eq!(entries.len(), 2, "{index}");
            let e = entries
                .iter()
                .find(|e| e["digest"] == d_sig.to_string())
                .unwrap();
            assert_eq!(e["artifactType"], BUNDLE);
            assert_eq!(e["annotations"]["note"], "sig");
        }

        // Idempotent: pushing again writes the manifest and nothing else.
        gw.reset_counters();
        c.push_referrer("team/app", OCI_MANIFEST, sig.clone(), &subject)
            .await
            .unwrap();
        let puts: Vec<_> = gw
            .requests()
            .into_iter()
            .filter(|r| r.method == "PUT")
            .map(|r| r.path)
            .collect();
        assert_eq!(
            puts,
            vec![format!("/v2/team/app/manifests/{d_sig}")],
            "{kind}"
        );
        let sent: Vec<_> = gw
            .requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        eprintln!("{kind}: re-push sends {} requests: {sent:?}", sent.len());
        assert_eq!(
            c.referrers("team/app", &subject, None).await.unwrap().len(),
            2
        );

        // A manifest naming another subject (or none) is refused, nothing sent.
        gw.reset_counters();
        let other: Digest = format!("sha256:{}", "2".repeat(64)).parse().unwrap();
        let e = c
            .push_referrer("team/app", OCI_MANIFEST, sig.clone(), &other)
            .await
            .unwrap_err();
        assert_eq!(e.exit_kind(), ExitKind::Usage);
        assert!(e.to_string().contains("subject is"), "{e}");
        assert!(gw.requests().is_empty());
    }
}

/// The tag schema's index is merged: entries other clients wrote stay (with
/// fields we do not model), a cosign-style entry (no artifactType, no
/// annotations, sigstore/cosign#4641) is still found by type and is
/// completed when its manifest is pushed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_schema_merge_keeps_other_entries_and_completes_cosign_style_ones() {
    let reg = TestRegistry::start();
    let img = push_image_to(&reg, "team/app", "1", &one_manifest(2));
    let c = client(&reg.host());
    let subject: Digest = img.digest.parse().unwrap();
    let size = img.manifests[0].1.size;
    let cosign = artifact(&c, "team/app", &subject, size, BUNDLE, "cosign").await;
    let d_cosign = c
        .push_manifest(
            "team/app",
            &registry::sha256(&cosign).to_string(),
            OCI_MANIFEST,
            cosign.clone(),
        )
        .await
        .unwrap();
    let other = artifact(&c, "team/app", &subject, size, SBOM, "other").await;
    let d_other = c
        .push_manifest(
            "team/app",
            &registry::sha256(&other).to_string(),
            OCI_MANIFEST,
            other.clone(),
        )
        .await
        .unwrap();
    let tag = referrers_tag(&subject);
    let written = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d_cosign.to_string(), "size": cosign.len()},
        {"mediaType": OCI_MANIFEST, "digest": d_other.to_string(), "size": other.len(),
         "artifactType": SBOM, "x-vendor": {"kept": true}},
    ]});
    c.push_manifest(
        "team/app",
        &tag,
        OCI_INDEX,
        serde_json::to_vec(&written).unwrap(),
    )
    .await
    .unwrap();

    // Found by type although the tag's entry does not say it.
    let found = c
        .referrers("team/app", &subject, Some(BUNDLE))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].digest, d_cosign);
    assert_eq!(found[0].artifact_type.as_deref(), Some(BUNDLE));

    let mine = artifact(&c, "team/app", &subject, size, BUNDLE, "mine").await;
    let d_mine = c
        .push_referrer("team/app", OCI_MANIFEST, mine, &subject)
        .await
        .unwrap();
    c.push_referrer("team/app", OCI_MANIFEST, cosign, &subject)
        .await
        .unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&skopeo_raw(&format!("{}/team/app:{tag}", reg.host()), None))
            .unwrap();
    let entries = index["manifests"].as_array().unwrap();
    let by: BTreeMap<String, &serde_json::Value> = entries
        .iter()
        .map(|e| (e["digest"].as_str().unwrap().to_string(), e))
        .collect();
    assert_eq!(by.len(), 3, "{index}");
    assert_eq!(
        by[&d_other.to_string()]["x-vendor"]["kept"],
        true,
        "{index}"
    );
    assert_eq!(by[&d_mine.to_string()]["annotations"]["note"], "mine");
    assert_eq!(by[&d_cosign.to_string()]["artifactType"], BUNDLE, "{index}");
    assert_eq!(by[&d_cosign.to_string()]["annotations"]["note"], "cosign");
}

/// The referrers API's answer spread over `Link` pages is read whole; the
/// filter is sent and applied here too when the registry ignores it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paginated_and_unfiltered_answers_are_handled() {
    let origin = RecordingOrigin::start();
    let d = |n: char| format!("sha256:{}", n.to_string().repeat(64));
    let entry = |n: char, t: &str| serde_json::json!({"mediaType": OCI_MANIFEST, "digest": d(n), "size": 10, "artifactType": t});
    let page = |entries: Vec<serde_json::Value>| {
        Response::json(
            200,
            &serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}),
        )
        .with_header("Content-Type", OCI_INDEX)
    };
    origin.then(
        page(vec![entry('a', BUNDLE), entry('b', SBOM)])
            .with_header("Link", "</v2/team/app/referrers/x?page=2>; rel=\"next\""),
    );
    origin.then(page(vec![entry('c', BUNDLE)]));
    let c = client(&origin.host());
    let subject: Digest = d('f').parse().unwrap();
    let got = c
        .referrers("team/app", &subject, Some(BUNDLE))
        .await
        .unwrap();
    let digests: Vec<String> = got.iter().map(|r| r.digest.to_string()).collect();
    assert_eq!(digests, vec![d('a'), d('c')]);
    let urls = origin.urls();
    assert_eq!(urls.len(), 2, "{urls:?}");
    assert!(
        urls[0].contains(&format!("/v2/team/app/referrers/{}", d('f')))
            && urls[0].contains("artifactType=application%2Fvnd.dev.sigstore.bundle.v0.3%2Bjson"),
        "{urls:?}"
    );
    assert!(urls[1].contains("page=2"), "{urls:?}");
}

/// A registry that answers the referrers path with 405 or 501 has no
/// referrers API: the tag schema is read (here: no tag, so none); 400 is an
/// error (a registry with the API refusing the request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_referrers_endpoint_falls_back_to_the_tag_schema() {
    let subject: Digest = format!("sha256:{}", "d".repeat(64)).parse().unwrap();
    for status in [405, 501] {
        let origin = RecordingOrigin::start();
        origin.then(Response::new(status, "no such route"));
        origin.then(Response::new(
            404,
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#,
        ));
        let c = client(&origin.host());
        let got = c.referrers("team/app", &subject, None).await.unwrap();
        assert!(got.is_empty(), "{status}");
        let urls = origin.urls();
        assert!(
            urls[1].ends_with(&format!(
                "/v2/team/app/manifests/{}",
                referrers_tag(&subject)
            )),
            "{status}: {urls:?}"
        );
    }
    let origin = RecordingOrigin::start();
    origin.always(Response::new(400, r#"{"errors":[{"code":"UNSUPPORTED"}]}"#));
    let e = client(&origin.host())
        .referrers("team/app", &subject, None)
        .await
        .unwrap_err();
    assert_eq!(e.exit_kind(), ExitKind::Remote, "{e}");
}

/// A referrers answer that is not an image index is exit 3 naming the
/// endpoint, from the API and from the tag schema; nothing is pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_answers_are_exit_3_naming_the_endpoint() {
    let origin = RecordingOrigin::start();
    origin.always(Response::new(200, "<html>welcome</html>"));
    let c = client(&origin.host());
    let subject: Digest = format!("sha256:{}", "e".repeat(64)).parse().unwrap();
    let e = c.referrers("team/app", &subject, None).await.unwrap_err();
    assert_eq!(e.exit_kind(), ExitKind::Remote);
    let line = kit::job::cause_line(&e);
    assert!(
        line.contains(&format!(
            "http://{}/v2/team/app/referrers/{subject} is not a valid OCI image index",
            origin.host()
        )),
        "{line}"
    );
    assert!(matches!(e, registry::Error::Referrers { .. }), "{e:?}");

    // The tag schema's tag holding an image manifest instead of an index.
    let reg = TestRegistry::start();
    let img = push_image_to(&reg, "team/app", "1", &one_manifest(3));
    let subject: Digest = img.digest.parse().unwrap();
    let c = client(&reg.host());
    let m = c.manifest("team/app", &img.digest).await.unwrap().unwrap();
    c.push_manifest("team/app", &referrers_tag(&subject), OCI_MANIFEST, m.bytes)
        .await
        .unwrap();
    let e = c.referrers("team/app", &subject, None).await.unwrap_err();
    assert_eq!(e.exit_kind(), ExitKind::Remote);
    let line = kit::job::cause_line(&e);
    assert!(
        line.contains(&format!(
            "/v2/team/app/manifests/{}",
            referrers_tag(&subject)
        )) && line.contains("not application/vnd.oci.image.index.v1+json"),
        "{line}"
    );
    let gw = Gateway::start(&reg.host(), GatewayOptions::default());
    let c = client(&gw.host());
    let sig = artifact(
        &c,
        "team/app",
        &subject,
        img.manifests[0].1.size,
        BUNDLE,
        "x",
    )
    .await;
    gw.reset_counters();
    let e = c
        .push_referrer("team/app", OCI_MANIFEST, sig, &subject)
        .await
        .unwrap_err();
    assert_eq!(e.exit_kind(), ExitKind::Remote);
    let puts: Vec<_> = gw
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert!(puts.is_empty(), "pushed despite the broken index: {puts:?}");
}
