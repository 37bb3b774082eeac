//! Real registries for tests, plus what to put in them and what to put in
//! front of them. Everything listens on 127.0.0.1 with an ephemeral port and
//! stops when dropped.
//!
//! - [`TestRegistry`]: Debian's `docker-registry serve CONFIG.yml` with
//!   filesystem storage in a temp dir, optionally htpasswd basic auth.
//! - [`ImageSpec`] / [`build_layout`] / [`push_layout`] / [`push_image`]:
//!   a multi-arch OCI image (index → linux/arm64 + linux/amd64 manifests,
//!   configs, tar layers of chosen sizes, optionally a BuildKit-style
//!   attestation manifest) written as an OCI layout in Rust and pushed with
//!   `skopeo copy --all --preserve-digests` (a tool we did not write).
//! - [`buildah_push_image`]: the same from real `buildah bud --isolation
//!   chroot` builds of a `FROM scratch` Dockerfile per platform, pushed with
//!   `buildah manifest push --all` (Docker manifest list or OCI index).
//! - [`skopeo_raw`]: `skopeo inspect --raw` of a reference, for digest checks.
//! - [`auth_file`]: a containers `auth.json` so passwords stay out of argv.
//! - [`Gateway`]: an HTTP proxy in front of a registry that can act as a
//!   Docker-Hub-style Bearer token server (`WWW-Authenticate` challenge,
//!   `/token` endpoint with scope, expiring tokens) and inject faults (429
//!   with `Retry-After`, 5xx, connection resets, bodies cut short). It counts
//!   requests and request-body bytes, so benchmarks use it to measure any
//!   client (ours or skopeo) the same way.
//!
//! ```no_run
//! use harness::registry::*;
//! let src = TestRegistry::start();
//! let dst = TestRegistry::start_with_htpasswd("alice", "s3cret-pass");
//! let img = push_image(&src, "team/app", "1.0", &ImageSpec::default(), None);
//! // img.index_digest is what SRC's tag points at
//! let gw = Gateway::start(&dst.host(), GatewayOptions::default());
//! gw.inject(FaultRule::new(Fault::Status { code: 429, retry_after: Some(1) }).path_contains("/blobs/").times(2));
//! // point the job at gw.host() instead of dst.host(); then gw.requests() / gw.bytes_in()
//! ```
//!
//! `Gateway` runs on its own thread and runtime, so it serves while a test
//! blocks on a child process.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::http_server::{Body, BoxError, HttpServer};

// ---------------------------------------------------------------------------
// docker-registry

/// A running `docker-registry` (Debian's distribution 2.8) on 127.0.0.1.
pub struct TestRegistry {
    child: Child,
    dir: tempfile::TempDir,
    host: String,
    credentials: Option<(String, String)>,
}

impl TestRegistry {
    /// An anonymous registry (anyone may pull and push).
    pub fn start() -> TestRegistry {
        Self::start_inner(None)
    }

    /// A registry with htpasswd basic auth for one user.
    pub fn start_with_htpasswd(user: &str, password: &str) -> TestRegistry {
        Self::start_inner(Some((user.to_string(), password.to_string())))
    }

    fn start_inner(credentials: Option<(String, String)>) -> TestRegistry {
        let dir = tempfile::Builder::new()
            .prefix("test-registry-")
            .tempdir()
            .expect("temp dir");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let auth = match &credentials {
            Some((u, p)) => {
                let file = dir.path().join("htpasswd");
                write_htpasswd(&file, u, p);
                format!(
                    "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
                    file.display()
                )
            }
            None => String::new(),
        };
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let host = format!("127.0.0.1:{port}");
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n  secret: harness-secret\n{auth}",
                storage.display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut cmd = Command::new("docker-registry");
            cmd.arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            // distribution reads REGISTRY_* variables as config overrides.
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("REGISTRY_") {
                    cmd.env_remove(k);
                }
            }
            let mut child = cmd
                .spawn()
                .expect("docker-registry must be installed (Debian package docker-registry)");
            match wait_ready(&mut child, &host, Duration::from_secs(30)) {
                Ok(()) => {
                    return TestRegistry {
                        child,
                        dir,
                        host,
                        credentials,
                    };
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(dir.path().join("registry.log"))
                        .unwrap_or_default();
                    last_err = format!("{e}; log: {log}");
                }
            }
        }
        panic!("docker-registry did not start: {last_err}");
    }

    /// `127.0.0.1:PORT`, as written in image references.
    pub fn host(&self) -> String {
        self.host.clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host)
    }

    /// The htpasswd user and password, when the registry has them.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The registry's own log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Where blobs and repositories are stored.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_htpasswd(file: &Path, user: &str, password: &str) {
    // -i reads the password from stdin, so it is not in argv.
    let mut child = Command::new("htpasswd")
        .args(["-Bni", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("htpasswd must be installed (Debian package apache2-utils)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "htpasswd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(file, out.stdout).unwrap();
}

/// Why a started docker-registry is not ready.
#[derive(Debug)]
enum NotReady {
    Exited(std::process::ExitStatus),
    NoAnswer,
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::Exited(status) => write!(f, "docker-registry exited with {status}"),
            NotReady::NoAnswer => f.write_str("docker-registry did not answer /v2/ in time"),
        }
    }
}

fn wait_ready(child: &mut Child, host: &str, timeout: Duration) -> Result<(), NotReady> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(NotReady::Exited(status));
        }
        if let Some(code) = http_status(host, "/v2/")
            && (code == 200 || code == 401)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(NotReady::NoAnswer);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status of a plain `GET path` (None when nothing answers).
fn http_status(host: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&host.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------
// Test images

/// What test image to build.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// `os/arch` of each platform manifest, in index order.
    pub platforms: Vec<String>,
    /// Size in bytes of each layer's file content (each platform gets its
    /// own layers of these sizes; each layer is a one-file tar).
    pub layer_sizes: Vec<usize>,
    /// Add a BuildKit-style attestation manifest (platform unknown/unknown)
    /// for the first platform.
    pub attestation: bool,
    /// `false`: a single image manifest (the first platform), no index.
    pub index: bool,
    /// Seeds layer contents: different seeds give different blobs.
    pub seed: u64,
}

impl Default for ImageSpec {
    fn default() -> Self {
        ImageSpec {
            platforms: vec!["linux/arm64".into(), "linux/amd64".into()],
            layer_sizes: vec![1024, 200 * 1024],
            attestation: true,
            index: true,
            seed: 1,
        }
    }
}

/// A blob or manifest written to a layout.
#[derive(Debug, Clone)]
pub struct Written {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

/// What [`build_layout`] produced.
#[derive(Debug, Clone)]
pub struct TestImage {
    /// The digest the tag points at: the index, or the manifest when
    /// `index` is false.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Platform (or `unknown/unknown` for attestations) → manifest.
    pub manifests: Vec<(String, Written)>,
    /// Every config and layer blob.
    pub blobs: Vec<Written>,
    /// Sum of all blob sizes.
    pub total_blob_bytes: u64,
}

/// sha256 of bytes as `sha256:<hex>`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

struct Layout {
    blobs_dir: PathBuf,
}

impl Layout {
    fn put(&self, media_type: &str, bytes: &[u8]) -> Written {
        let digest = sha256_digest(bytes);
        std::fs::write(self.blobs_dir.join(&digest[7..]), bytes).unwrap();
        Written {
            digest,
            size: bytes.len() as u64,
            media_type: media_type.into(),
        }
    }

    /// A one-file tar of `size` pseudo-random bytes, streamed to disk.
    fn put_layer(&self, seed: u64, size: usize) -> Written {
        let tmp = self.blobs_dir.join(format!("tmp-{seed}"));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
        let mut h = Sha256::new();
        let mut total = 0u64;
        let mut emit = |b: &[u8], f: &mut std::io::BufWriter<std::fs::File>| {
            h.update(b);
            f.write_all(b).unwrap();
            total += b.len() as u64;
        };
        emit(&tar_header(&format!("data-{seed}.bin"), size), &mut f);
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut left = size;
        let mut chunk = vec![0u8; 1 << 20];
        while left > 0 {
            let n = left.min(chunk.len());
            for w in chunk[..n].chunks_mut(8) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let bytes = rng.to_le_bytes();
                w.copy_from_slice(&bytes[..w.len()]);
            }
            emit(&chunk[..n], &mut f);
            left -= n;
        }
        let pad = (512 - size % 512) % 512;
        emit(&vec![0u8; pad + 1024], &mut f);
        f.flush().unwrap();
        drop(f);
        let digest = format!("sha256:{}", hex(&h.finalize()));
        std::fs::rename(&tmp, self.blobs_dir.join(&digest[7..])).unwrap();
        Written {
            digest,
            size: total,
            media_type: OCI_LAYER.into(),
        }
    }
}

fn tar_header(name: &str, size: usize) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// Writes an OCI image layout for `spec` into `dir`, tagged `tag`
/// (`oci:DIR:TAG` for skopeo).
pub fn build_layout(dir: &Path, tag: &str, spec: &ImageSpec) -> TestImage {
    let blobs_dir = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs_dir).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let layout = Layout { blobs_dir };
    let mut blobs = Vec::new();
    let mut manifests = Vec::new();
    let platforms: Vec<&String> = if spec.index {
        spec.platforms.iter().collect()
    } else {
        spec.platforms.iter().take(1).collect()
    };
    for (pi, platform) in platforms.iter().enumerate() {
        let (os, arch) = platform.split_once('/').expect("platform is os/arch");
        let layers: Vec<Written> = spec
            .layer_sizes
            .iter()
            .enumerate()
            .map(|(li, &size)| {
                layout.put_layer(
                    spec.seed * 1_000_003 + (pi as u64) * 1009 + li as u64 + 1,
                    size,
                )
            })
            .collect();
        let config = serde_json::json!({
            "architecture": arch, "os": os,
            "config": {"Env": ["PATH=/"], "Labels": {"seed": spec.seed.to_string()}},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>()},
        });
        let config = layout.put(OCI_CONFIG, &serde_json::to_vec(&config).unwrap());
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": desc(&config),
            "layers": layers.iter().map(desc).collect::<Vec<_>>(),
        });
        let m = layout.put(OCI_MANIFEST, &serde_json::to_vec_pretty(&manifest).unwrap());
        blobs.push(config);
        blobs.extend(layers);
        manifests.push((platform.to_string(), m));
    }
    if spec.index && spec.attestation {
        let statement = serde_json::json!({"_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://spdx.dev/Document", "subject": [], "predicate": {"seed": spec.seed}});
        let layer = layout.put(
            "application/vnd.in-toto+json",
            &serde_json::to_vec(&statement).unwrap(),
        );
        let config = serde_json::json!({"architecture": "unknown", "os": "unknown", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer.digest.clone()]}});
        let config = layout.put(OCI_CONFIG, &serde_json::to_vec(&config).unwrap());
        let mut ldesc = desc(&layer);
        ldesc["annotations"] =
            serde_json::json!({"in-toto.io/predicate-type": "https://spdx.dev/Document"});
        let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": desc(&config), "layers": [ldesc]});
        let m = layout.put(OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap());
        blobs.push(config);
        blobs.push(layer);
        manifests.push(("unknown/unknown".into(), m));
    }
    let (top, media_type) = if spec.index {
        let entries: Vec<serde_json::Value> = manifests
            .iter()
            .map(|(p, m)| {
                let mut d = desc(m);
                let (os, arch) = p.split_once('/').unwrap();
                d["platform"] = serde_json::json!({"os": os, "architecture": arch});
                if p == "unknown/unknown" {
                    d["annotations"] = serde_json::json!({
                        "vnd.docker.reference.type": "attestation-manifest",
                        "vnd.docker.reference.digest": manifests[0].1.digest,
                    });
                }
                d
            })
            .collect();
        let index =
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        (
            layout.put(OCI_INDEX, &serde_json::to_vec_pretty(&index).unwrap()),
            OCI_INDEX,
        )
    } else {
        (manifests[0].1.clone(), OCI_MANIFEST)
    };
    let mut top_desc = desc(&top);
    top_desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
    let root = serde_json::json!({"schemaVersion": 2, "manifests": [top_desc]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&root).unwrap()).unwrap();
    let total_blob_bytes = blobs.iter().map(|b| b.size).sum();
    TestImage {
        digest: top.digest,
        media_type: media_type.into(),
        manifests,
        blobs,
        total_blob_bytes,
    }
}

fn desc(w: &Written) -> serde_json::Value {
    serde_json::json!({"mediaType": w.media_type, "digest": w.digest, "size": w.size})
}

/// Writes a containers `auth.json` for one registry into `dir` and returns
/// its path (so passwords stay out of skopeo's argv).
pub fn auth_file(dir: &Path, host: &str, user: &str, password: &str) -> PathBuf {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let path = dir.join(format!("auth-{}.json", host.replace([':', '/'], "_")));
    std::fs::write(
        &path,
        serde_json::json!({"auths": {host: {"auth": auth}}}).to_string(),
    )
    .unwrap();
    path
}

/// `skopeo copy --all --preserve-digests` of the layout to
/// `docker://DEST` (plain HTTP). `creds` are the destination's.
pub fn push_layout(layout: &Path, tag: &str, dest: &str, creds: Option<(&str, &str)>) {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("skopeo");
    cmd.args([
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--retry-times",
        "2",
    ]);
    if let Some((u, p)) = creds {
        let host = dest.split('/').next().unwrap();
        cmd.arg("--dest-authfile")
            .arg(auth_file(tmp.path(), host, u, p));
    }
    cmd.arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{dest}"));
    let out = cmd.output().expect("skopeo must be installed");
    assert!(
        out.status.success(),
        "skopeo copy to {dest} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds `spec` and pushes it to `registry` as `repo:tag` (using the
/// registry's htpasswd credentials when it has them, else `creds`).
pub fn push_image(
    registry: &TestRegistry,
    repo: &str,
    tag: &str,
    spec: &ImageSpec,
    creds: Option<(&str, &str)>,
) -> TestImage {
    let dir = tempfile::tempdir().unwrap();
    let img = build_layout(dir.path(), tag, spec);
    let creds = registry.credentials().or(creds);
    push_layout(
        dir.path(),
        tag,
        &format!("{}/{repo}:{tag}", registry.host()),
        creds,
    );
    img
}

/// `skopeo inspect --raw --tls-verify=false docker://REF`: the manifest
/// bytes the registry serves. Panics with skopeo's message on failure.
pub fn skopeo_raw(reference: &str, creds: Option<(&str, &str)>) -> Vec<u8> {
    try_skopeo_raw(reference, creds)
        .unwrap_or_else(|e| panic!("skopeo inspect --raw {reference}: {e}"))
}

/// `skopeo inspect` failed (e.g. manifest unknown): its exit status and
/// what it printed.
#[derive(Debug)]
pub struct SkopeoError {
    pub status: std::process::ExitStatus,
    pub stderr: String,
}

impl std::fmt::Display for SkopeoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "skopeo {}: {}", self.status, self.stderr)
    }
}

impl std::error::Error for SkopeoError {}

/// Like [`skopeo_raw`], but a failure (e.g. manifest unknown) is an `Err`.
pub fn try_skopeo_raw(
    reference: &str,
    creds: Option<(&str, &str)>,
) -> Result<Vec<u8>, SkopeoError> {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("skopeo");
    cmd.args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--retry-times",
        "2",
    ]);
    if let Some((u, p)) = creds {
        let host = reference.split('/').next().unwrap();
        cmd.arg("--authfile").arg(auth_file(tmp.path(), host, u, p));
    }
    let out = cmd
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo must be installed");
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(SkopeoError {
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

// ---------------------------------------------------------------------------
// Gateway: token server + fault proxy

/// A fault to answer a request with instead of forwarding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (and `Retry-After: N` when given).
    Status { code: u16, retry_after: Option<u64> },
    /// Close the connection without answering.
    Reset,
    /// Forward, but cut the response body after this many bytes.
    CutResponseBody(usize),
    /// Accept the request and never answer (until the gateway stops).
    Stall,
}

/// Which requests a fault hits, and how many times.
#[derive(Debug, Clone)]
pub struct FaultRule {
    pub fault: Fault,
    pub method: Option<String>,
    pub path_contains: Option<String>,
    pub times: usize,
}

impl FaultRule {
    /// Hits every request once (narrow it with the builders).
    pub fn new(fault: Fault) -> Self {
        FaultRule {
            fault,
            method: None,
            path_contains: None,
            times: 1,
        }
    }
    pub fn method(mut self, m: &str) -> Self {
        self.method = Some(m.to_ascii_uppercase());
        self
    }
    pub fn path_contains(mut self, s: &str) -> Self {
        self.path_contains = Some(s.to_string());
        self
    }
    pub fn times(mut self, n: usize) -> Self {
        self.times = n;
        self
    }
    fn matches(&self, method: &str, path_and_query: &str) -> bool {
        self.times > 0
            && self.method.as_deref().is_none_or(|m| m == method)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path_and_query.contains(p))
    }
}

/// Docker-Hub-style Bearer auth in front of the upstream.
#[derive(Debug, Clone)]
pub struct BearerConfig {
    pub username: String,
    pub password: String,
    /// `expires_in` of issued tokens; expired tokens get 401.
    pub ttl: Duration,
    pub service: String,
}

impl BearerConfig {
    pub fn new(username: &str, password: &str) -> Self {
        BearerConfig {
            username: username.into(),
            password: password.into(),
            ttl: Duration::from_secs(300),
            service: "harness-registry".into(),
        }
    }
}

/// How a [`Gateway`] behaves.
#[derive(Debug, Clone, Default)]
pub struct GatewayOptions {
    /// `Some`: require Bearer tokens from its own `/token` endpoint.
    /// `None`: pass `Authorization` through to the upstream.
    pub bearer: Option<BearerConfig>,
}

/// One request the gateway saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Status answered (0 for a reset).
    pub status: u16,
}

#[derive(Default)]
struct GatewayState {
    rules: Mutex<Vec<FaultRule>>,
    log: Mutex<Vec<Logged>>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// token → (scopes, expiry)
    tokens: Mutex<HashMap<String, (Vec<String>, Instant)>>,
    token_requests: Mutex<Vec<String>>,
    counter: AtomicU64,
}

/// An HTTP/1.1 proxy in front of a registry: token server, fault injector
/// and request counter, on the harness's one HTTP server
/// ([`crate::http_server`]). See the module docs.
pub struct Gateway {
    host: String,
    state: Arc<GatewayState>,
    http: HttpServer,
}

impl Gateway {
    /// Starts a gateway forwarding to `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream: &str, options: GatewayOptions) -> Gateway {
        let state = Arc::new(GatewayState::default());
        let listener = crate::http_server::bind();
        let host = listener.local_addr().expect("local addr").to_string();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("reqwest client");
        let ctx = Arc::new(Ctx {
            state: state.clone(),
            upstream: format!("http://{upstream}"),
            host: host.clone(),
            options,
            client,
        });
        let http = HttpServer::start_async_on(listener, None, move |req| handle(ctx.clone(), req));
        Gateway { host, state, http }
    }

    /// Every request as it arrived (method, path, headers), for checks on
    /// what the client sent; [`Gateway::requests`] has the statuses.
    pub fn received(&self) -> Vec<crate::http_server::Recorded> {
        self.http.received()
    }

    /// `127.0.0.1:PORT` of the gateway.
    pub fn host(&self) -> String {
        self.host.clone()
    }

    /// Adds a fault rule (rules are tried in the order added).
    pub fn inject(&self, rule: FaultRule) {
        self.state.rules.lock().unwrap().push(rule);
    }

    /// Every request seen so far (token requests included, path `/token…`).
    pub fn requests(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }

    /// Request-body bytes received from clients so far.
    pub fn bytes_in(&self) -> u64 {
        self.state.bytes_in.load(Ordering::SeqCst)
    }

    /// Response-body bytes sent to clients so far.
    pub fn bytes_out(&self) -> u64 {
        self.state.bytes_out.load(Ordering::SeqCst)
    }

    /// Forgets the request log and byte counters.
    pub fn reset_counters(&self) {
        self.state.log.lock().unwrap().clear();
        self.state.bytes_in.store(0, Ordering::SeqCst);
        self.state.bytes_out.store(0, Ordering::SeqCst);
    }

    /// The `scope` parameters of every token request so far.
    pub fn token_scopes(&self) -> Vec<String> {
        self.state.token_requests.lock().unwrap().clone()
    }

    /// Invalidates every issued token (clients must fetch new ones).
    pub fn revoke_tokens(&self) {
        self.state.tokens.lock().unwrap().clear();
    }
}

struct Ctx {
    state: Arc<GatewayState>,
    upstream: String,
    host: String,
    options: GatewayOptions,
    client: reqwest::Client,
}

fn full(
    status: u16,
    headers: &[(&str, String)],
    body: impl Into<bytes::Bytes>,
) -> hyper::Response<Body> {
    use http_body_util::BodyExt;
    let mut b = hyper::Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.body(
        http_body_util::Full::new(body.into())
            .map_err(|e| match e {})
            .boxed_unsync(),
    )
    .unwrap()
}

async fn handle(
    ctx: Arc<Ctx>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Body>, BoxError> {
    let method = req.method().as_str().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let log = |status: u16| {
        ctx.state.log.lock().unwrap().push(Logged {
            method: method.clone(),
            path: path.clone(),
            status,
        });
    };
    let fault = {
        let mut rules = ctx.state.rules.lock().unwrap();
        rules
            .iter_mut()
            .find(|r| r.matches(&method, &path))
            .map(|r| {
                r.times -= 1;
                r.fault.clone()
            })
    };
    match &fault {
        Some(Fault::Status { code, retry_after }) => {
            log(*code);
            let mut h = vec![("content-type", "application/json".to_string())];
            if let Some(s) = retry_after {
                h.push(("retry-after", s.to_string()));
            }
            return Ok(full(
                *code,
                &h,
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"injected fault"}]}"#,
            ));
        }
        Some(Fault::Reset) => {
            log(0);
            return Err("injected connection reset".into());
        }
        Some(Fault::Stall) => {
            log(0);
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Err("stalled".into());
        }
        _ => {}
    }
    if let Some(b) = &ctx.options.bearer {
        if path.starts_with("/token") {
            return Ok(token_endpoint(&ctx, b, &req, &path, &log));
        }
        if let Some(resp) = check_bearer(&ctx, b, &req, &method, &path) {
            log(401);
            return Ok(resp);
        }
    }
    forward(ctx.clone(), req, &method, &path, fault, &log).await
}

fn token_endpoint(
    ctx: &Ctx,
    b: &BearerConfig,
    req: &hyper::Request<hyper::body::Incoming>,
    path: &str,
    log: &(dyn Fn(u16) + Sync),
) -> hyper::Response<Body> {
    use base64::Engine as _;
    let want =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", b.username, b.password));
    let ok = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Basic {want}"));
    if !ok {
        log(401);
        return full(
            401,
            &[("content-type", "application/json".into())],
            r#"{"details":"incorrect username or password"}"#,
        );
    }
    let scopes: Vec<String> = url::Url::parse(&format!("http://x{path}"))
        .unwrap()
        .query_pairs()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .collect();
    ctx.state
        .token_requests
        .lock()
        .unwrap()
        .push(scopes.join(" "));
    let n = ctx.state.counter.fetch_add(1, Ordering::SeqCst);
    let token = format!("harness-token-{n}-{}", std::process::id());
    ctx.state
        .tokens
        .lock()
        .unwrap()
        .insert(token.clone(), (scopes, Instant::now() + b.ttl));
    log(200);
    let body = serde_json::json!({"token": token, "access_token": token, "expires_in": b.ttl.as_secs(), "issued_at": "2026-01-01T00:00:00Z"});
    full(
        200,
        &[("content-type", "application/json".into())],
        body.to_string(),
    )
}

/// `/v2/<name>/(manifests|blobs|tags)/…` → name.
fn repo_of(path: &str) -> Option<String> {
    let p = path.split('?').next()?.strip_prefix("/v2/")?;
    for marker in ["/manifests/", "/blobs/", "/tags/"] {
        if let Some(i) = p.find(marker) {
            return Some(p[..i].to_string());
        }
    }
    None
}

fn check_bearer(
    ctx: &Ctx,
    b: &BearerConfig,
    req: &hyper::Request<hyper::body::Incoming>,
    method: &str,
    path: &str,
) -> Option<hyper::Response<Body>> {
    let repo = repo_of(path);
    let action = if method == "GET" || method == "HEAD" {
        "pull"
    } else {
        "push"
    };
    let scope = repo.as_ref().map(|r| format!("repository:{r}:{action}"));
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let granted = token.and_then(|t| ctx.state.tokens.lock().unwrap().get(&t).cloned());
    let allowed = match (&granted, &repo) {
        (Some((_, exp)), _) if *exp < Instant::now() => false,
        (Some(_), None) => true,
        (Some((scopes, _)), Some(r)) => scopes.iter().any(|s| {
            let mut it = s.splitn(3, ':');
            matches!((it.next(), it.next(), it.next()), (Some("repository"), Some(n), Some(acts)) if n == r && acts.split(',').any(|a| a == action))
        }),
        (None, _) => false,
    };
    if allowed {
        return None;
    }
    let mut challenge = format!(
        "Bearer realm=\"http://{}/token\",service=\"{}\"",
        ctx.host, b.service
    );
    if let Some(s) = scope {
        challenge.push_str(&format!(",scope=\"{s}\""));
    }
    Some(full(
        401,
        &[
            ("www-authenticate", challenge),
            ("content-type", "application/json".into()),
        ],
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
    ))
}

async fn forward(
    ctx: Arc<Ctx>,
    req: hyper::Request<hyper::body::Incoming>,
    method: &str,
    path: &str,
    fault: Option<Fault>,
    log: &(dyn Fn(u16) + Sync),
) -> Result<hyper::Response<Body>, BoxError> {
    use futures_util::StreamExt;
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let mut path = path.to_string();
    // With Bearer auth, a mount from a repository the token cannot pull
    // is not allowed: drop the mount like Docker Hub does (upload instead).
    if ctx.options.bearer.is_some() && path.contains("mount=") {
        let token = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let scopes = token
            .and_then(|t| {
                ctx.state
                    .tokens
                    .lock()
                    .unwrap()
                    .get(&t)
                    .map(|g| g.0.clone())
            })
            .unwrap_or_default();
        let from = url::Url::parse(&format!("http://x{path}"))
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "from")
            .map(|(_, v)| v.into_owned());
        if let Some(f) = from
            && !scopes
                .iter()
                .any(|s| s.starts_with(&format!("repository:{f}:")) && s.contains("pull"))
        {
            path = path.split('?').next().unwrap().to_string();
        }
    }
    let url = format!("{}{path}", ctx.upstream);
    let counter = ctx.state.clone();
    let stream = body.into_data_stream().map(move |r| {
        if let Ok(b) = &r {
            counter.bytes_in.fetch_add(b.len() as u64, Ordering::SeqCst);
        }
        r
    });
    let mut rb = ctx
        .client
        .request(parts.method.clone(), &url)
        .body(reqwest::Body::wrap_stream(stream));
    for (k, v) in parts.headers.iter() {
        let name = k.as_str();
        if matches!(
            name,
            "host"
                | "connection"
                | "transfer-encoding"
                | "keep-alive"
                | "proxy-connection"
                | "upgrade"
        ) || (name == "authorization" && ctx.options.bearer.is_some())
        {
            continue;
        }
        rb = rb.header(k, v);
    }
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => {
            log(502);
            return Ok(full(502, &[], format!("gateway: upstream failed: {e}")));
        }
    };
    let status = resp.status().as_u16();
    log(status);
    let mut b = hyper::Response::builder().status(status);
    for (k, v) in resp.headers() {
        let name = k.as_str();
        if matches!(name, "connection" | "transfer-encoding" | "keep-alive") {
            continue;
        }
        if name == "location" || name == "link" {
            let s = v
                .to_str()
                .unwrap_or_default()
                .replace(&ctx.upstream, &format!("http://{}", ctx.host));
            b = b.header(k, s);
        } else {
            b = b.header(k, v);
        }
    }
    let cut = match fault {
        Some(Fault::CutResponseBody(n)) => Some(n),
        _ => None,
    };
    let out_counter = ctx.state.clone();
    let mut sent = 0usize;
    let body = resp.bytes_stream().map(move |r| {
        let mut chunk = r.map_err(|e| Box::new(e) as BoxError)?;
        if let Some(limit) = cut {
            if sent >= limit {
                return Err::<_, BoxError>("injected: response body cut".into());
            }
            if sent + chunk.len() > limit {
                chunk.truncate(limit - sent);
            }
        }
        sent += chunk.len();
        out_counter
            .bytes_out
            .fetch_add(chunk.len() as u64, Ordering::SeqCst);
        Ok(hyper::body::Frame::data(chunk))
    });
    let _ = method;
    Ok(b.body(http_body_util::StreamBody::new(body).boxed_unsync())?)
}

// ---------------------------------------------------------------------------
// buildah

/// Builds `FROM scratch` + one file of `payload_size` random bytes for each
/// platform with `buildah bud --isolation chroot` (vfs storage in a temp
/// dir), collects them in a manifest list and pushes it with
/// `buildah manifest push --all` in `format` (`v2s2` for a Docker manifest
/// list, `oci` for an OCI index) to `registry` as `repo:tag` over plain
/// HTTP. Returns the pushed digest.
pub fn buildah_push_image(
    registry: &TestRegistry,
    repo: &str,
    tag: &str,
    platforms: &[&str],
    payload_size: usize,
    format: &str,
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let mut data = vec![0u8; payload_size];
    let mut x = 0x2545_F491_4F6C_DD1Du64 ^ payload_size as u64;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(ctx.join("payload.bin"), data).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY payload.bin /payload.bin\n",
    )
    .unwrap();
    let root = dir.path().join("root");
    let runroot = dir.path().join("run");
    let buildah = |args: &[&str]| {
        let out = Command::new("buildah")
            .arg("--storage-driver")
            .arg("vfs")
            .arg("--root")
            .arg(&root)
            .arg("--runroot")
            .arg(&runroot)
            .args(args)
            .output()
            .expect("buildah must be installed");
        assert!(
            out.status.success(),
            "buildah {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let list = format!("localhost/harness-{}:{tag}", std::process::id());
    buildah(&["manifest", "create", &list]);
    for p in platforms {
        buildah(&[
            "bud",
            "--isolation",
            "chroot",
            "--platform",
            p,
            "--manifest",
            &list,
            "-f",
            "Dockerfile",
            ctx.to_str().unwrap(),
        ]);
    }
    let digest_file = dir.path().join("digest");
    let mut args = vec![
        "manifest",
        "push",
        "--all",
        "--tls-verify=false",
        "--format",
        format,
    ];
    let tmp_auth;
    if let Some((u, p)) = registry.credentials() {
        tmp_auth = auth_file(dir.path(), &registry.host(), u, p);
        args.push("--authfile");
        args.push(tmp_auth.to_str().unwrap());
    }
    let df = digest_file.to_str().unwrap().to_string();
    args.push("--digestfile");
    args.push(&df);
    let dest = format!("docker://{}/{repo}:{tag}", registry.host());
    args.push(&list);
    args.push(&dest);
    buildah(&args);
    std::fs::read_to_string(digest_file)
        .unwrap()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_header_checksum_is_valid() {
        let h = tar_header("a.bin", 1000);
        let stored = std::str::from_utf8(&h[148..154]).unwrap();
        let mut copy = h;
        copy[148..156].copy_from_slice(b"        ");
        let sum: u32 = copy.iter().map(|&b| b as u32).sum();
        assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum);
    }

    #[test]
    fn repo_from_path() {
        assert_eq!(repo_of("/v2/a/b/manifests/latest").as_deref(), Some("a/b"));
        assert_eq!(
            repo_of("/v2/a/blobs/uploads/?mount=x").as_deref(),
            Some("a")
        );
        assert_eq!(repo_of("/v2/"), None);
    }
}
