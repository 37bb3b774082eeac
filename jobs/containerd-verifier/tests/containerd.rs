//! The verifier under a REAL containerd (v2.4.2, built by
//! scripts/install-peers.sh into .tools/bin): containerd runs as root with
//! its own root, state and socket in a temp dir, the native snapshotter, and
//! `io.containerd.image-verifier.v1.bindir` pointing at a directory holding
//! the verifier (a two-line wrapper passing the test node's files). Pulls go
//! through the transfer service (`ctr image pull`, ctr's default in 2.x; not
//! `--local`) from a docker-registry holding images signed by sign-image.
//!
//! One containerd per test binary; the tests take turns (they rewrite the
//! node's policy).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use harness::registry::{Fault, FaultRule, Gateway, GatewayOptions, TestRegistry};

/// containerd's own per-verifier timeout in these tests.
const CONTAINERD_TIMEOUT: &str = "3s";

fn tools_bin(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin");
    let p = root.join(name);
    assert!(
        p.is_file(),
        "{} is missing: build the pinned containerd and ctr with `bash scripts/install-peers.sh containerd` (as root: these tests run containerd)",
        p.display()
    );
    p
}

struct Containerd {
    _child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
    node: Node,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self._child.kill();
        let _ = self._child.wait();
    }
}

// One containerd for the whole test binary. A static is never dropped, so
// containerd is started under a small shell that kills it when this test
// process is gone.
fn containerd() -> &'static Mutex<Containerd> {
    static CD: OnceLock<Mutex<Containerd>> = OnceLock::new();
    CD.get_or_init(|| Mutex::new(start()))
}

fn lock() -> MutexGuard<'static, Containerd> {
    containerd()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn start() -> Containerd {
    let containerd = tools_bin("containerd");
    tools_bin("ctr");
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the containerd tests run containerd and must run as root"
    );
    let dir = tempfile::Builder::new()
        .prefix("containerd-test-")
        .tempdir()
        .unwrap();
    let node = Node::new();
    let bin_dir = dir.path().join("verifiers");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let wrapper = bin_dir.join("secdeliv-verifier");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} --policy {} --registries {} --cache {} \"$@\"\n",
            BIN,
            node.path("verify.yaml").display(),
            node.path("registries.yaml").display(),
            node.path("cache/verify-cache.json").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.path().join("containerd.sock");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"version = 3
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.snapshotter.v1.overlayfs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins."io.containerd.image-verifier.v1.bindir"]
  bin_dir = "{bin_dir}"
  max_verifiers = 10
  per_verifier_timeout = "{timeout}"

[plugins."io.containerd.transfer.v1.local"]
  [[plugins."io.containerd.transfer.v1.local".unpack_config]]
    platform = "linux/amd64"
    snapshotter = "native"
"#,
            root = dir.path().join("root").display(),
            state = dir.path().join("state").display(),
            socket = socket.display(),
            bin_dir = bin_dir.display(),
            timeout = CONTAINERD_TIMEOUT,
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
    let child = Command::new("sh")
        .arg("-c")
        .arg(
            "\"$0\" --config \"$1\" --log-level debug & c=$!; \
             while kill -0 \"$2\" 2>/dev/null && kill -0 $c 2>/dev/null; do sleep 0.5; done; \
             kill $c 2>/dev/null; wait $c",
        )
        .arg(&containerd)
        .arg(&config)
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start containerd");
    let cd = Containerd {
        _child: child,
        dir,
        socket,
        node,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = ctr(&cd, &["version"]);
        if out.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "containerd did not start: {}\nlog:\n{}",
            out.1,
            std::fs::read_to_string(cd.dir.path().join("containerd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    cd
}

/// `ctr --address SOCK ARGS…` → (success, stdout + stderr).
fn ctr(cd: &Containerd, args: &[&str]) -> (bool, String) {
    let out = Command::new(tools_bin("ctr"))
        .arg("--address")
        .arg(&cd.socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ctr");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `ctr image pull --plain-http --snapshotter native REF` through the
/// transfer service; the image is removed first so each pull is verified.
fn pull(cd: &Containerd, reference: &str) -> (bool, String) {
    let _ = ctr(cd, &["image", "rm", reference]);
    ctr(
        cd,
        &[
            "image",
            "pull",
            "--plain-http",
            "--snapshotter",
            "native",
            reference,
        ],
    )
}

#[track_caller]
fn assert_pulled(r: &(bool, String), what: &str) {
    assert!(r.0, "{what}: the pull should succeed:\n{}", r.1);
}

/// Refused by our verifier, and containerd's error carries its reason.
#[track_caller]
fn assert_refused(r: &(bool, String), what: &str, reason: &str) {
    let re = regex::Regex::new(reason).unwrap();
    assert!(
        !r.0 && r.1.contains("image verifier bindir blocked pull of")
            && r.1.contains("verifier secdeliv-verifier rejected image")
            && re.is_match(&r.1),
        "{what}: want a pull refused by secdeliv-verifier with a reason matching {reason:?}; ctr said:\n{}",
        r.1
    );
}

fn policy(host: &str, k: &Key, unmatched: &str) -> String {
    format!(
        "unmatched: {unmatched}\ntimeout: 8s\nscopes:\n  - name: apps\n    repositories: [\"{host}/team/*\"]\n    keys: [\"{}\"]\n",
        k.pub_path.display()
    )
}

#[test]
fn pulls_through_a_real_containerd_are_verified() {
    let cd = lock();
    let reg = TestRegistry::start();
    let host = reg.host();
    let keys = tempfile::tempdir().unwrap();
    let k = key(keys.path(), "cosign");
    let other = key(keys.path(), "other");
    cd.node.policy(&policy(&host, &k, "allow"));
    cd.node.plain_http(&[&host]);
    let _ = std::fs::remove_dir_all(cd.node.path("cache"));

    // Signed: pulled.
    let good = push(&reg, "team/app", "1", 101);
    sign(&format!("{host}/team/app@{}", good.digest), &k, &host);
    assert_pulled(&pull(&cd, &format!("{host}/team/app:1")), "signed image");

    // Unsigned.
    push(&reg, "team/unsigned", "1", 102);
    assert_refused(
        &pull(&cd, &format!("{host}/team/unsigned:1")),
        "unsigned image",
        "refused: .*team/unsigned@sha256:[0-9a-f]{64}: no signature valid for scope \"apps\".*has no signatures",
    );

    // Wrong key.
    let wrong = push(&reg, "team/wrongkey", "1", 103);
    sign(
        &format!("{host}/team/wrongkey@{}", wrong.digest),
        &other,
        &host,
    );
    assert_refused(
        &pull(&cd, &format!("{host}/team/wrongkey:1")),
        "signed by another key",
        "signature does not verify with this key",
    );

    // A .sig made for another digest, copied to this digest's .sig tag.
    let copied = push(&reg, "team/copied", "1", 104);
    let src_sig = format!("{host}/team/app:{}", sig_tag(&good.digest));
    let bytes = harness::registry::skopeo_raw(&src_sig, None);
    // The payload blob lives in team/app: mount it into team/copied.
    push_sig_with_blobs(
        &host,
        "team/app",
        "team/copied",
        &sig_tag(&copied.digest),
        &bytes,
    );
    assert_refused(
        &pull(&cd, &format!("{host}/team/copied:1")),
        ".sig of another digest",
        "signed payload names digest sha256:[0-9a-f]{64}, not sha256:[0-9a-f]{64} \\(a signature copied from another image\\)",
    );

    // A tampered signature.
    let tampered = push(&reg, "team/tampered", "1", 105);
    sign(
        &format!("{host}/team/tampered@{}", tampered.digest),
        &k,
        &host,
    );
    let tag = sig_tag(&tampered.digest);
    let text = String::from_utf8(harness::registry::skopeo_raw(
        &format!("{host}/team/tampered:{tag}"),
        None,
    ))
    .unwrap();
    let marker = "\"dev.cosignproject.cosign/signature\":\"";
    let i = text.find(marker).unwrap() + marker.len() + 20;
    let mut b = text.into_bytes();
    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
    put_manifest(&host, "team/tampered", &tag, &b);
    assert_refused(
        &pull(&cd, &format!("{host}/team/tampered:1")),
        "tampered signature",
        "signature does not verify with this key",
    );

    // A tag whose signature covers an older digest.
    push(&reg, "team/app", "1", 106);
    assert_refused(
        &pull(&cd, &format!("{host}/team/app:1")),
        "tag moved to unsigned bytes",
        "team/app@sha256:[0-9a-f]{64}: no signature valid .*has no signatures",
    );

    // Outside every scope: pulled under allow, refused under deny.
    push(&reg, "other/app", "1", 107);
    assert_pulled(
        &pull(&cd, &format!("{host}/other/app:1")),
        "unscoped image under allow",
    );
    cd.node.policy(&policy(&host, &k, "deny"));
    assert_refused(
        &pull(&cd, &format!("{host}/other/app:1")),
        "unscoped image under deny",
        "no scope of .* matches .*/other/app and unmatched is deny",
    );
}

#[test]
fn registry_down_slow_verifier_and_the_cache_under_a_real_containerd() {
    let cd = lock();
    let reg = TestRegistry::start();
    let gw = Gateway::start(&reg.host(), GatewayOptions::default());
    let host = gw.host();
    let keys = tempfile::tempdir().unwrap();
    let k = key(keys.path(), "cosign");
    cd.node.policy(&policy(&host, &k, "allow"));
    cd.node.plain_http(&[&host]);
    let _ = std::fs::remove_dir_all(cd.node.path("cache"));
    let img2 = push(&reg, "team/app", "1", 202);
    sign(&format!("{host}/team/app@{}", img2.digest), &k, &host);
    assert_pulled(
        &pull(&cd, &format!("{host}/team/app:1")),
        "signed, first pull",
    );

    // The registry answers manifests (containerd resolves the tag) but
    // stalls on the signature tag: our verifier outlives containerd's
    // per_verifier_timeout, and containerd refuses.
    let slow = push(&reg, "team/slow", "1", 203);
    sign(&format!("{host}/team/slow@{}", slow.digest), &k, &host);
    gw.inject(
        FaultRule::new(Fault::Stall)
            .path_contains(".sig")
            .times(100),
    );
    let started = Instant::now();
    let r = pull(&cd, &format!("{host}/team/slow:1"));
    assert!(
        !r.0 && r.1.contains("image verifier bindir returned error")
            && r.1.contains("failed to call verifier secdeliv-verifier"),
        "a verifier slower than containerd's {CONTAINERD_TIMEOUT}: want the pull refused; ctr said:\n{}",
        r.1
    );
    assert!(started.elapsed() < Duration::from_secs(20));

    // The cached digest pulls with the registry's signatures unreachable
    // (the stall still holds every .sig request); the layers come from
    // containerd's content store, so remove nothing but the image name.
    let _ = ctr(&cd, &["image", "rm", &format!("{host}/team/app:1")]);
    let r = ctr(
        &cd,
        &[
            "image",
            "pull",
            "--plain-http",
            "--snapshotter",
            "native",
            &format!("{host}/team/app:1"),
        ],
    );
    assert_pulled(&r, "cached digest with the signatures unreachable");
}

#[test]
fn registry_down_while_verifying_refuses_under_a_real_containerd() {
    let cd = lock();
    let reg = TestRegistry::start();
    let gw = Gateway::start(&reg.host(), GatewayOptions::default());
    let host = gw.host();
    let keys = tempfile::tempdir().unwrap();
    let k = key(keys.path(), "cosign");
    cd.node.policy(&policy(&host, &k, "allow"));
    cd.node.plain_http(&[&host]);
    let _ = std::fs::remove_dir_all(cd.node.path("cache"));
    let img = push(&reg, "team/down", "1", 301);
    sign(&format!("{host}/team/down@{}", img.digest), &k, &host);
    // containerd resolves the tag; then the signatures answer 503 (as a
    // registry going down between resolve and verify).
    gw.inject(
        FaultRule::new(Fault::Status {
            code: 503,
            retry_after: None,
        })
        .path_contains(".sig")
        .times(100),
    );
    assert_refused(
        &pull(&cd, &format!("{host}/team/down:1")),
        "registry down while verifying",
        "exit code 3\\): refused: .*team/down@sha256:[0-9a-f]{64}: cannot read signatures from ",
    );
}

fn sig_tag(d: &str) -> String {
    d.replace("sha256:", "sha256-") + ".sig"
}

fn put_manifest(host: &str, repo: &str, tag: &str, bytes: &[u8]) {
    use std::io::Write as _;
    let url = format!("http://{host}/v2/{repo}/manifests/{tag}");
    let mut c = Command::new("curl")
        .args(["-sf", "-X", "PUT", "-H"])
        .arg("Content-Type: application/vnd.oci.image.manifest.v1+json")
        .args(["--data-binary", "@-"])
        .arg(&url)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("curl must be installed");
    c.stdin.take().unwrap().write_all(bytes).unwrap();
    assert!(c.wait().unwrap().success(), "PUT {url} failed");
}

/// Copies a .sig manifest to another repository: mounts its blobs, then
/// PUTs the same bytes.
fn push_sig_with_blobs(host: &str, from: &str, to: &str, tag: &str, manifest: &[u8]) {
    #[derive(serde::Deserialize)]
    struct Desc {
        digest: String,
    }
    #[derive(serde::Deserialize)]
    struct M {
        config: Desc,
        layers: Vec<Desc>,
    }
    let m: M = serde_json::from_slice(manifest).unwrap();
    for d in std::iter::once(&m.config).chain(m.layers.iter()) {
        let url = format!(
            "http://{host}/v2/{to}/blobs/uploads/?mount={}&from={from}",
            d.digest
        );
        let out = Command::new("curl")
            .args(["-sf", "-X", "POST", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(&url)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "201", "mount {url}");
    }
    put_manifest(host, to, tag, manifest);
}
