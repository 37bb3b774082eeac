//! Issue 17, finding 2: registry credentials stay with the registry's own
//! origin. Each test points something the registry says (an upload
//! `Location`, a `Link` next page, a `WWW-Authenticate` realm, a redirect)
//! at another origin on another 127.0.0.1 port that records what it
//! receives, and proves the credentials never got there; over HTTPS, that
//! a plain-HTTP URL is refused (exit 3) before anything is sent to it.

#[path = "common/front.rs"]
mod front;

use std::time::Duration;

use front::{Action, Front};
use harness::registry::{ImageSpec, TestRegistry, push_image};
use kit::ExitKind;
use kit::credentials::Credentials;
use kit::env::MapEnv;
use kit::http::RetryPolicy;
use kit::reference::Digest;
use registry::{ClientOptions, Registry};

const USER: &str = "carol";
const PASS: &str = "origin-Canary-pw-41";

fn opts(insecure: &[&str]) -> ClientOptions {
    ClientOptions {
        insecure_registries: insecure.iter().map(|h| h.to_string()).collect(),
        retry: RetryPolicy {
            attempts: 2,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(1),
        },
        ..Default::default()
    }
}

fn cause(e: &registry::Error) -> String {
    kit::job::cause_line(e)
}

#[track_caller]
fn assert_cause(e: &registry::Error, code: ExitKind, pattern: &str) {
    assert_eq!(e.exit_kind(), code, "{}", cause(e));
    let re = regex::Regex::new(&format!("^(?:{pattern})$")).unwrap();
    assert!(
        re.is_match(&cause(e)),
        "cause {:?} does not match /{pattern}/",
        cause(e)
    );
}

/// The other origin got nothing that carries the password, in any form.
#[track_caller]
fn assert_clean(other: &Front) {
    assert!(other.with_authorization().is_empty(), "{:?}", other.seen());
    harness::job::assert_no_secret_in(
        "the other origin's requests",
        &other.headers_text(),
        &[PASS],
    );
}

/// An open registry with an image, a front that wants Basic credentials,
/// and another origin forwarding to the same registry.
fn setup() -> (TestRegistry, Front, Front) {
    let reg = TestRegistry::start();
    push_image(
        &reg,
        "team/app",
        "1.0",
        &ImageSpec {
            layer_sizes: vec![3000],
            ..Default::default()
        },
        None,
    );
    let front = Front::start(Some(reg.host()), Some((USER, PASS)));
    let other = Front::start(Some(reg.host()), None);
    (reg, front, other)
}

fn client(host: &str, o: &ClientOptions, env: &MapEnv) -> Registry {
    Registry::new(host, Some(Credentials::new(USER, PASS)), o, env).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_location_on_another_origin_gets_no_credentials() {
    let (_reg, front, other) = setup();
    front.rule(
        Some("POST"),
        "/blobs/uploads/",
        Action::ForwardLocationTo(other.origin()),
    );
    let c = client(&front.host, &opts(&[&front.host]), &MapEnv::default());
    let d = c
        .push_blob("team/app", b"a new blob".to_vec())
        .await
        .unwrap();
    assert!(c.blob_exists("team/app", &d).await.unwrap());
    let puts: Vec<_> = other
        .seen()
        .into_iter()
        .filter(|s| s.method == "PUT")
        .collect();
    assert_eq!(
        puts.len(),
        1,
        "the PUT went to the other origin: {:?}",
        other.seen()
    );
    assert_clean(&other);
    // Control: the registry itself did get the credentials.
    assert!(!front.with_authorization().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_next_page_on_another_origin_gets_no_credentials() {
    let (reg, front, other) = setup();
    push_image(
        &reg,
        "team/app",
        "2.0",
        &ImageSpec {
            layer_sizes: vec![3000],
            ..Default::default()
        },
        None,
    );
    let link = format!(
        "<{}/v2/team/app/tags/list?last=1.0&n=1000>; rel=\"next\"",
        other.origin()
    );
    front.rule(
        Some("GET"),
        "/tags/list?n=1000",
        Action::Respond(
            200,
            vec![
                ("content-type".into(), "application/json".into()),
                ("link".into(), link),
            ],
            r#"{"name":"team/app","tags":["from-the-first-page"]}"#.into(),
        ),
    );
    let c = client(&front.host, &opts(&[&front.host]), &MapEnv::default());
    let tags = c.list_tags("team/app").await.unwrap();
    assert_eq!(tags[0], "from-the-first-page");
    assert!(
        tags.contains(&"2.0".to_string()),
        "the next page was read: {tags:?}"
    );
    assert_eq!(other.seen().len(), 1, "{:?}", other.seen());
    assert_clean(&other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_realm_on_another_origin_gets_no_credentials() {
    let reg = TestRegistry::start();
    let other = Front::start(None, None);
    let front = Front::start(Some(reg.host()), None);
    let challenge = format!(
        "Bearer realm=\"{}/token\",service=\"elsewhere\"",
        other.origin()
    );
    front.rule(
        None,
        "/v2/",
        Action::Respond(
            401,
            vec![("www-authenticate".into(), challenge)],
            String::new(),
        ),
    );
    let c = client(&front.host, &opts(&[&front.host]), &MapEnv::default());
    let e = c.resolve("team/app", "1.0").await.unwrap_err();
    assert_cause(
        &e,
        ExitKind::Remote,
        r"resolving 127\.0\.0\.1:\d+/team/app:1\.0: the token realm http://127\.0\.0\.1:\d+/token is not on the registry's origin http://127\.0\.0\.1:\d+ nor its declared token service over HTTPS; the credentials were not sent",
    );
    assert!(other.seen().is_empty(), "{:?}", other.seen());
    // Anonymous: nothing to leak, so the realm is asked (without credentials).
    let anon = Registry::new(&front.host, None, &opts(&[&front.host]), &MapEnv::default()).unwrap();
    let e = anon.resolve("team/app", "1.0").await.unwrap_err();
    assert_eq!(e.exit_kind(), ExitKind::Remote, "{}", cause(&e));
    assert_eq!(other.seen().len(), 1);
    assert_clean(&other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_redirect_to_another_origin_is_followed_without_credentials() {
    let (reg, front, other) = setup();
    front.rule(
        Some("GET"),
        "/blobs/sha256:",
        Action::Redirect(307, other.origin()),
    );
    let c = client(
        &front.host,
        &opts(&[&front.host, &reg.host()]),
        &MapEnv::default(),
    );
    let m = c.manifest("team/app", "1.0").await.unwrap().unwrap();
    let registry::Contents::Index(entries) = m.contents().unwrap() else {
        panic!("an index")
    };
    let child = c
        .manifest("team/app", &entries[0].descriptor.digest.to_string())
        .await
        .unwrap()
        .unwrap();
    let registry::Contents::Image { config, layers } = child.contents().unwrap() else {
        panic!()
    };
    let bytes = c
        .fetch_blob("team/app", &config.digest, 1 << 20)
        .await
        .unwrap();
    assert_eq!(registry::sha256(&bytes), config.digest);
    // A streamed copy from the redirecting registry to another one.
    let dst = TestRegistry::start();
    let d = Registry::new(&dst.host(), None, &opts(&[&dst.host()]), &MapEnv::default()).unwrap();
    let copied = d
        .copy_blob("x/app", &c, "team/app", &layers[0])
        .await
        .unwrap();
    assert_eq!(copied, registry::BlobCopy::Copied(layers[0].size));
    assert_eq!(other.seen().len(), 2, "{:?}", other.seen());
    assert_clean(&other);
}

/// The same registry behind HTTPS: every plain-HTTP URL it names is
/// refused with exit 3 before a byte goes there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_registry_is_never_followed_to_plain_http() {
    let (_reg, front, other) = setup();
    let certs = tempfile::tempdir().unwrap();
    let tls = harness::tls_proxy::TlsProxy::start(&front.host, certs.path());
    let host = format!("127.0.0.1:{}", tls.port());
    let env = MapEnv::new([("SSL_CERT_FILE", tls.ca_file.to_str().unwrap())]);
    let o = opts(&[]);
    let c = client(&host, &o, &env);
    // Control: over HTTPS it works.
    c.resolve("team/app", "1.0").await.unwrap();

    front.rule(
        Some("POST"),
        "/blobs/uploads/",
        Action::ForwardLocationTo(other.origin()),
    );
    let e = c
        .push_blob("team/app", b"over https".to_vec())
        .await
        .unwrap_err();
    assert_cause(
        &e,
        ExitKind::Remote,
        r"starting upload to 127\.0\.0\.1:\d+/team/app: refusing the upload Location http://127\.0\.0\.1:\d+/v2/team/app/blobs/uploads/[^ ]+ from HTTPS registry 127\.0\.0\.1:\d+: it is plain HTTP",
    );

    front.rule(
        Some("GET"),
        "/blobs/sha256:",
        Action::Redirect(307, other.origin()),
    );
    let digest: Digest = registry::sha256(b"{}");
    let e = c.fetch_blob("team/app", &digest, 1024).await.unwrap_err();
    assert_cause(
        &e,
        ExitKind::Remote,
        r"reading blob sha256:[0-9a-f]{64} from 127\.0\.0\.1:\d+/team/app: refusing the redirect to http://127\.0\.0\.1:\d+/v2/team/app/blobs/sha256:[0-9a-f]{64} from HTTPS registry 127\.0\.0\.1:\d+: it is plain HTTP",
    );

    let c2 = client(&host, &o, &env);
    let challenge = format!("Bearer realm=\"{}/token\"", other.origin());
    front.rule(
        Some("HEAD"),
        "/manifests/",
        Action::Respond(
            401,
            vec![("www-authenticate".into(), challenge)],
            String::new(),
        ),
    );
    let e = c2.resolve("team/app", "1.0").await.unwrap_err();
    assert_cause(
        &e,
        ExitKind::Remote,
        r"resolving 127\.0\.0\.1:\d+/team/app:1\.0: refusing the token realm http://127\.0\.0\.1:\d+/token from HTTPS registry 127\.0\.0\.1:\d+: it is plain HTTP",
    );
    assert!(other.seen().is_empty(), "{:?}", other.seen());
}
