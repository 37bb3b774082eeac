//! The shared registry client against real `docker-registry` instances, the
//! harness's Bearer token server and its fault-injecting proxy.

use std::time::Duration;

use harness::registry::{
    BearerConfig, Fault, FaultRule, Gateway, GatewayOptions, ImageSpec, TestRegistry, push_image,
    skopeo_raw,
};
use kit::ExitKind;
use kit::credentials::Credentials;
use kit::env::MapEnv;
use kit::http::RetryPolicy;
use kit::reference::Digest;
use registry::{BlobCopy, ClientOptions, Contents, Registry};

fn opts(hosts: &[&str]) -> ClientOptions {
    ClientOptions {
        insecure_registries: hosts.iter().map(|h| h.to_string()).collect(),
        retry: RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(5),
        },
        ..Default::default()
    }
}

fn client(host: &str, creds: Option<Credentials>) -> Registry {
    Registry::new(host, creds, &opts(&[host]), &MapEnv::default()).unwrap()
}

/// The one-line cause a job would print: the error and its sources.
fn cause(e: &registry::Error) -> String {
    kit::job::cause_line(e)
}

fn small() -> ImageSpec {
    ImageSpec {
        layer_sizes: vec![3000, 70_000],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_index_manifests_and_blobs_from_a_real_registry() {
    let reg = TestRegistry::start();
    let img = push_image(&reg, "team/app", "1.0", &small(), None);
    let c = client(&reg.host(), None);

    let r = c.resolve("team/app", "1.0").await.unwrap();
    assert_eq!(r.digest.to_string(), img.digest);
    assert_eq!(r.media_type, "application/vnd.oci.image.index.v1+json");

    let m = c.manifest("team/app", &img.digest).await.unwrap().unwrap();
    assert_eq!(
        m.bytes,
        skopeo_raw(&format!("{}/team/app:1.0", reg.host()), None)
    );
    let Contents::Index(entries) = m.contents().unwrap() else {
        panic!("not an index")
    };
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0].platform.as_deref(), Some("linux/arm64"));
    assert!(entries[2].attestation);

    let blob = &img.blobs[0];
    let d: Digest = blob.digest.parse().unwrap();
    assert!(c.blob_exists("team/app", &d).await.unwrap());
    assert!(!c.blob_exists("team/other", &d).await.unwrap());
    let bytes = c.fetch_blob("team/app", &d, 1 << 20).await.unwrap();
    assert_eq!(bytes.len() as u64, blob.size);

    // Missing things: None from manifest(), exit 3 from resolve().
    assert!(c.manifest("team/app", "nope").await.unwrap().is_none());
    let e = c.resolve("team/app", "nope").await.unwrap_err();
    assert_eq!(e.exit_kind(), ExitKind::Remote);
    assert!(
        cause(&e).contains("team/app:nope not found"),
        "{}",
        cause(&e)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_blobs_and_exact_manifest_bytes_and_lists_tags() {
    let reg = TestRegistry::start();
    let gw = Gateway::start(&reg.host(), GatewayOptions::default());
    let c = client(&gw.host(), None);
    let config = c.push_blob("sig/app", b"{}".to_vec()).await.unwrap();
    let layer = c.push_blob("sig/app", b"payload".to_vec()).await.unwrap();
    // Unusual whitespace: a re-serializing client would change the digest.
    let manifest = format!(
        "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"application/vnd.oci.image.manifest.v1+json\",\n  \"config\": {{\"mediaType\": \"application/vnd.oci.image.config.v1+json\", \"digest\": \"{config}\", \"size\": 2}},\n  \"layers\": [{{\"mediaType\": \"application/vnd.dev.cosign.simplesigning.v1+json\", \"digest\": \"{layer}\", \"size\": 7}}]   \n}}\n"
    );
    let d = c
        .push_manifest(
            "sig/app",
            "sha256-abc.sig",
            "application/vnd.oci.image.manifest.v1+json",
            manifest.clone().into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(d, registry::sha256(manifest.as_bytes()));
    assert_eq!(
        skopeo_raw(&format!("{}/sig/app:sha256-abc.sig", reg.host()), None),
        manifest.as_bytes()
    );
    c.push_manifest(
        "sig/app",
        &d.to_string(),
        "application/vnd.oci.image.manifest.v1+json",
        manifest.clone().into_bytes(),
    )
    .await
    .unwrap();
    c.push_manifest(
        "sig/app",
        "v2",
        "application/vnd.oci.image.manifest.v1+json",
        manifest.into_bytes(),
    )
    .await
    .unwrap();
    let mut tags = c.list_tags("sig/app").await.unwrap();
    tags.sort();
    assert_eq!(tags, vec!["sha256-abc.sig", "v2"]);
    assert!(c.list_tags("no/such").await.unwrap().is_empty());
    // Pushing the same blob again sends nothing: counted at the gateway,
    // not by the client's own counters.
    gw.reset_counters();
    c.push_blob("sig/app", b"payload".to_vec()).await.unwrap();
    let seen: Vec<(String, u16)> = gw
        .requests()
        .iter()
        .map(|l| (l.method.clone(), l.status))
        .collect();
    assert_eq!(seen, [("HEAD".to_string(), 200)], "{:?}", gw.requests());
    assert_eq!(gw.bytes_in(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_between_registries_streaming_and_mounts_within_one() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start_with_htpasswd("carol", "dst-password-1");
    let img = push_image(&src, "team/app", "1.0", &small(), None);
    let s = client(&src.host(), None);
    let d = client(
        &dst.host(),
        Some(Credentials::new("carol", "dst-password-1")),
    );
    let layer = img.blobs.iter().max_by_key(|b| b.size).unwrap();
    let desc = registry::Descriptor {
        media_type: layer.media_type.clone(),
        digest: layer.digest.parse().unwrap(),
        size: layer.size,
    };
    assert_eq!(
        d.copy_blob("prod/app", &s, "team/app", &desc)
            .await
            .unwrap(),
        BlobCopy::Copied(layer.size)
    );
    assert_eq!(
        d.copy_blob("prod/app", &s, "team/app", &desc)
            .await
            .unwrap(),
        BlobCopy::Present
    );
    assert!(d.blob_exists("prod/app", &desc.digest).await.unwrap());
    // Within one registry: a mount, no bytes.
    let before = d.stats().bytes_sent;
    assert_eq!(
        d.copy_blob("prod/other", &d, "prod/app", &desc)
            .await
            .unwrap(),
        BlobCopy::Mounted
    );
    assert_eq!(d.stats().bytes_sent, before);
    assert!(
        d.mount_blob("prod/third", "prod/app", &desc.digest)
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_errors_name_the_user_and_hide_the_password() {
    let reg = TestRegistry::start_with_htpasswd("dave", "right-password");
    let anon = client(&reg.host(), None);
    let e = anon.resolve("a/b", "1").await.unwrap_err();
    assert_eq!(e.exit_kind(), ExitKind::Remote);
    assert!(
        cause(&e).contains("requires a login and no credentials"),
        "{}",
        cause(&e)
    );
    let wrong = client(
        &reg.host(),
        Some(Credentials::new("dave", "wrong-password")),
    );
    let e = wrong.resolve("a/b", "1").await.unwrap_err();
    assert!(
        cause(&e).contains("rejected the username/password of user \"dave\""),
        "{}",
        cause(&e)
    );
    assert!(!cause(&e).contains("wrong-password"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_flow_scopes_refresh_and_token_errors() {
    let reg = TestRegistry::start();
    let img = push_image(&reg, "team/app", "1.0", &small(), None);
    let mut bearer = BearerConfig::new("erin", "hub-token-123");
    bearer.ttl = Duration::from_secs(300);
    let gw = Gateway::start(
        &reg.host(),
        GatewayOptions {
            bearer: Some(bearer),
        },
    );
    let c = client(&gw.host(), Some(Credentials::new("erin", "hub-token-123")));
    let r = c.resolve("team/app", "1.0").await.unwrap();
    assert_eq!(r.digest.to_string(), img.digest);
    assert_eq!(gw.token_scopes(), vec!["repository:team/app:pull"]);
    // The token is reused...
    c.manifest("team/app", &img.digest).await.unwrap().unwrap();
    assert_eq!(c.stats().token_requests, 1);
    // ...and refreshed when the server stops accepting it.
    gw.revoke_tokens();
    c.manifest("team/app", &img.digest).await.unwrap().unwrap();
    assert_eq!(c.stats().token_requests, 2);
    // A push scope is asked for when writing.
    c.push_blob("team/app", b"x".to_vec()).await.unwrap();
    assert!(
        gw.token_scopes()
            .contains(&"repository:team/app:pull,push".to_string()),
        "{:?}",
        gw.token_scopes()
    );

    // Wrong password: the token exchange error is surfaced with its cause.
    let bad = client(&gw.host(), Some(Credentials::new("erin", "not-the-token")));
    let e = bad.resolve("team/app", "1.0").await.unwrap_err();
    assert_eq!(e.exit_kind(), ExitKind::Remote);
    assert!(
        cause(&e).contains("token exchange with http://"),
        "{}",
        cause(&e)
    );
    assert!(
        cause(&e).contains("401 Unauthorized: incorrect username or password")
            || cause(&e).contains("401"),
        "{}",
        cause(&e)
    );
    assert!(cause(&e).contains("erin"), "{}", cause(&e));
    assert!(!cause(&e).contains("not-the-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_refreshed() {
    let reg = TestRegistry::start();
    let img = push_image(&reg, "team/app", "1.0", &small(), None);
    let mut bearer = BearerConfig::new("erin", "hub-token-123");
    bearer.ttl = Duration::from_secs(1);
    let gw = Gateway::start(
        &reg.host(),
        GatewayOptions {
            bearer: Some(bearer),
        },
    );
    let c = client(&gw.host(), Some(Credentials::new("erin", "hub-token-123")));
    c.resolve("team/app", "1.0").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    c.manifest("team/app", &img.digest).await.unwrap().unwrap();
    assert_eq!(c.stats().token_requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_retried_within_a_bound() {
    let reg = TestRegistry::start();
    let img = push_image(&reg, "team/app", "1.0", &small(), None);
    let gw = Gateway::start(&reg.host(), GatewayOptions::default());
    let c = client(&gw.host(), None);
    gw.inject(
        FaultRule::new(Fault::Status {
            code: 429,
            retry_after: Some(1),
        })
        .path_contains("/manifests/")
        .times(1),
    );
    gw.inject(
        FaultRule::new(Fault::Status {
            code: 503,
            retry_after: None,
        })
        .path_contains("/manifests/")
        .times(1),
    );
    gw.inject(
        FaultRule::new(Fault::Reset)
            .path_contains("/manifests/")
            .times(1),
    );
    let t = std::time::Instant::now();
    let r = c.resolve("team/app", "1.0").await.unwrap();
    assert_eq!(r.digest.to_string(), img.digest);
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "Retry-After honoured: {:?}",
        t.elapsed()
    );
    assert_eq!(gw.requests().len(), 4);

    // A streamed copy whose source body is cut is retried whole.
    let dst = TestRegistry::start();
    let d = client(&dst.host(), None);
    let layer = img.blobs.iter().max_by_key(|b| b.size).unwrap();
    let desc = registry::Descriptor {
        media_type: layer.media_type.clone(),
        digest: layer.digest.parse().unwrap(),
        size: layer.size,
    };
    gw.inject(
        FaultRule::new(Fault::CutResponseBody(10_000))
            .method("GET")
            .path_contains("/blobs/sha256:")
            .times(1),
    );
    assert_eq!(
        d.copy_blob("x/app", &c, "team/app", &desc).await.unwrap(),
        BlobCopy::Copied(layer.size)
    );
    assert!(d.blob_exists("x/app", &desc.digest).await.unwrap());

    // Beyond the bound: exit 3 naming the status.
    gw.inject(
        FaultRule::new(Fault::Status {
            code: 503,
            retry_after: None,
        })
        .path_contains("/manifests/")
        .times(10),
    );
    let e = c.resolve("team/app", "1.0").await.unwrap_err();
    assert_eq!(e.exit_kind(), ExitKind::Remote);
    assert!(cause(&e).contains("503"), "{}", cause(&e));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_times_out_and_is_retried() {
    let reg = TestRegistry::start();
    let img = push_image(&reg, "team/app", "1.0", &small(), None);
    let gw = Gateway::start(&reg.host(), GatewayOptions::default());
    gw.inject(FaultRule::new(Fault::Stall).path_contains("/manifests/"));
    let mut o = opts(&[&gw.host()]);
    o.base_timeout = Some(Duration::from_millis(800));
    let c = Registry::new(&gw.host(), None, &o, &MapEnv::default()).unwrap();
    let t = std::time::Instant::now();
    let r = c.resolve("team/app", "1.0").await.unwrap();
    assert_eq!(r.digest.to_string(), img.digest);
    assert!(
        t.elapsed() >= Duration::from_millis(750),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(gw.requests().len(), 2, "one stalled try, one answered");

    // Stalled every time: exit 4 (a timeout anywhere is exit 4), saying so.
    gw.inject(
        FaultRule::new(Fault::Stall)
            .path_contains("/manifests/")
            .times(10),
    );
    let e = c.resolve("team/app", "1.0").await.unwrap_err();
    assert_eq!(e.exit_kind(), ExitKind::Timeout);
    assert!(cause(&e).contains("timed out"), "{}", cause(&e));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_registry_is_exit_3_with_cause() {
    let port = harness::registry::free_port();
    let host = format!("127.0.0.1:{port}");
    let mut o = opts(&[&host]);
    o.retry.attempts = 2;
    let c = Registry::new(&host, None, &o, &MapEnv::default()).unwrap();
    let e = c.resolve("a/b", "1").await.unwrap_err();
    assert_eq!(e.exit_kind(), ExitKind::Remote);
    assert!(
        cause(&e).contains("resolving") && cause(&e).to_lowercase().contains("connect"),
        "{}",
        cause(&e)
    );
}

/// `push_shared_blob`: a mount from the repository itself is answered
/// 201 Created by the real distribution registry when the repository has the
/// blob (1 request), else 202 with an upload session (POST + PUT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_blob_is_one_request_when_the_repository_has_it() {
    let reg = TestRegistry::start();
    let gw = Gateway::start(&reg.host(), GatewayOptions::default());
    let c = client(&gw.host(), None);
    let config = b"{}".to_vec();
    let want: Digest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        .parse()
        .unwrap();

    // Not in the repository: POST answered 202, then PUT.
    let (d, present) = c.push_shared_blob("sig/app", config.clone()).await.unwrap();
    assert_eq!((d.clone(), present), (want.clone(), false));
    let log = gw.requests();
    let seen: Vec<(&str, u16)> = log.iter().map(|l| (l.method.as_str(), l.status)).collect();
    assert_eq!(seen, vec![("POST", 202), ("PUT", 201)], "{log:?}");
    assert!(
        log[0].path.contains(&format!(
            "/v2/sig/app/blobs/uploads/?mount={want}&from=sig/app"
        )),
        "{log:?}"
    );
    assert!(c.blob_exists("sig/app", &want).await.unwrap());

    // Now present: one POST, answered 201 Created by distribution; nothing sent.
    gw.reset_counters();
    let before = c.stats();
    let (d, present) = c.push_shared_blob("sig/app", config.clone()).await.unwrap();
    assert_eq!((d, present), (want.clone(), true));
    let log = gw.requests();
    let seen: Vec<(&str, u16)> = log.iter().map(|l| (l.method.as_str(), l.status)).collect();
    assert_eq!(seen, vec![("POST", 201)], "{log:?}");
    let after = c.stats();
    assert_eq!(after.requests - before.requests, 1);
    assert_eq!(after.bytes_sent, before.bytes_sent);
    assert_eq!(after.blobs_uploaded, before.blobs_uploaded);
    assert_eq!(
        after.blobs_mounted, before.blobs_mounted,
        "not a cross-repo mount"
    );

    // Another repository of the same registry does not get it for free: the
    // blob is in the registry's storage but not linked there, so 202 + PUT.
    gw.reset_counters();
    let (_, present) = c.push_shared_blob("sig/other", config).await.unwrap();
    assert!(!present);
    let seen: Vec<u16> = gw.requests().iter().map(|l| l.status).collect();
    assert_eq!(seen, vec![202, 201]);
    assert!(c.blob_exists("sig/other", &want).await.unwrap());

    // Behind a Bearer token server it needs only the repository's push scope
    // (no second token for a two-repository mount scope).
    let mut bearer = BearerConfig::new("frank", "hub-token-456");
    bearer.ttl = Duration::from_secs(300);
    let hub = Gateway::start(
        &reg.host(),
        GatewayOptions {
            bearer: Some(bearer),
        },
    );
    let t = client(
        &hub.host(),
        Some(Credentials::new("frank", "hub-token-456")),
    );
    let (_, present) = t.push_shared_blob("sig/app", b"{}".to_vec()).await.unwrap();
    assert!(present);
    assert_eq!(hub.token_scopes(), vec!["repository:sig/app:pull,push"]);
}

/// oci-client keeps the first credentials it saw per registry; here two
/// clients of one registry (SRC and DST of a promotion within one registry)
/// each keep their own login, whichever is used first, with Basic and Bearer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_one_registry_keep_their_own_credentials() {
    let reg = TestRegistry::start_with_htpasswd("gina", "right-pw-1");
    push_image(&reg, "team/app", "1.0", &small(), None);
    // The token server fronts an open registry (it does not log in upstream).
    let open = TestRegistry::start();
    push_image(&open, "team/app", "1.0", &small(), None);
    let hub = Gateway::start(
        &open.host(),
        GatewayOptions {
            bearer: Some(BearerConfig::new("gina", "right-pw-1")),
        },
    );
    for host in [reg.host(), hub.host()] {
        let bad = client(&host, Some(Credentials::new("gina", "wrong-pw-2")));
        let good = client(&host, Some(Credentials::new("gina", "right-pw-1")));
        let e = bad.resolve("team/app", "1.0").await.unwrap_err();
        assert_eq!(e.exit_kind(), ExitKind::Remote, "{}", cause(&e));
        assert!(!cause(&e).contains("wrong-pw-2"), "{}", cause(&e));
        good.resolve("team/app", "1.0").await.unwrap();
        assert!(bad.resolve("team/app", "1.0").await.is_err(), "{host}");
        good.resolve("team/app", "1.0").await.unwrap();
    }
}
