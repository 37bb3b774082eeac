//! A registry with the OCI 1.1 referrers API, beside [`crate::registry`]'s
//! docker-registry 2.8 (which has none), so a test can run one body against
//! both kinds through [`AnyRegistry`].
//!
//! [`OciRegistry`] is go-containerregistry's `pkg/registry` (v0.22.1, the
//! version `scripts/install-peers.sh` builds crane from) behind the few lines
//! of Go in `tests/peers/ociregistry/`: in-memory storage, anonymous, on
//! 127.0.0.1 with an ephemeral port. The binary is built with `go build` on
//! first use into `.tools/bin/ociregistry-<hash of the sources>` (so an
//! edited source builds anew; Go's own cache makes a rebuild quick) and
//! reused after that. It needs Go (and the Go module proxy the first time).
//!
//! What this registry does differently from the spec (the registry crate's
//! referrers module absorbs each): no `OCI-Subject` header on a PUT with a
//! `subject`, `?artifactType=` ignored (no `OCI-Filters-Applied`),
//! `artifactType` in the referrers list taken from the config's media type
//! only. No auth: put a [`crate::registry::Gateway`] with Bearer in front.
//!
//! ```no_run
//! use harness::oci_registry::{AnyRegistry, OciRegistry, push_image_to};
//! use harness::registry::{ImageSpec, TestRegistry};
//! let kinds: Vec<Box<dyn AnyRegistry>> = vec![Box::new(TestRegistry::start()), Box::new(OciRegistry::start())];
//! for reg in &kinds {
//!     let img = push_image_to(reg.as_ref(), "team/app", "1.0", &ImageSpec::default());
//!     println!("{} ({}): {}", reg.host(), reg.kind(), img.digest);
//! }
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::registry::{ImageSpec, TestImage, TestRegistry, build_layout, push_layout};

/// What a test needs from either kind of registry.
pub trait AnyRegistry {
    /// `127.0.0.1:PORT`, as written in image references.
    fn host(&self) -> String;
    /// `http://127.0.0.1:PORT`.
    fn url(&self) -> String {
        format!("http://{}", self.host())
    }
    /// Basic credentials, when the registry wants them.
    fn credentials(&self) -> Option<(&str, &str)>;
    /// Whether it answers `GET /v2/<name>/referrers/<digest>`.
    fn has_referrers_api(&self) -> bool;
    /// `docker-registry-2.8` or `ggcr-referrers`, for test messages.
    fn kind(&self) -> &'static str;
    /// The registry's own log so far (for assertion messages).
    fn log(&self) -> String;
}

impl AnyRegistry for TestRegistry {
    fn host(&self) -> String {
        TestRegistry::host(self)
    }
    fn credentials(&self) -> Option<(&str, &str)> {
        TestRegistry::credentials(self)
    }
    fn has_referrers_api(&self) -> bool {
        false
    }
    fn kind(&self) -> &'static str {
        "docker-registry-2.8"
    }
    fn log(&self) -> String {
        TestRegistry::log(self)
    }
}

/// A running go-containerregistry registry with the referrers API.
pub struct OciRegistry {
    child: Child,
    dir: tempfile::TempDir,
    host: String,
}

impl OciRegistry {
    /// Builds the peer if needed, starts it and waits until `/v2/` answers.
    /// Panics with the cause when Go or the build is missing.
    pub fn start() -> OciRegistry {
        let bin = binary();
        let dir = tempfile::Builder::new()
            .prefix("oci-registry-")
            .tempdir()
            .expect("temp dir");
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let mut child = Command::new(&bin)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        let port: u16 = match read.ok().and_then(|_| line.trim().parse().ok()) {
            Some(p) => p,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                let log =
                    std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default();
                panic!("{} printed no port ({line:?}); log: {log}", bin.display());
            }
        };
        let host = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while get_status(&host, "/v2/") != Some(200) {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{} did not answer /v2/ on {host}", bin.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        OciRegistry { child, dir, host }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.host.clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host)
    }

    /// The registry's request log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl AnyRegistry for OciRegistry {
    fn host(&self) -> String {
        OciRegistry::host(self)
    }
    fn credentials(&self) -> Option<(&str, &str)> {
        None
    }
    fn has_referrers_api(&self) -> bool {
        true
    }
    fn kind(&self) -> &'static str {
        "ggcr-referrers"
    }
    fn log(&self) -> String {
        OciRegistry::log(self)
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// [`crate::registry::push_image`] for either kind: builds `spec` as an OCI
/// layout and pushes it with `skopeo copy --all --preserve-digests`.
pub fn push_image_to(
    registry: &dyn AnyRegistry,
    repo: &str,
    tag: &str,
    spec: &ImageSpec,
) -> TestImage {
    let dir = tempfile::tempdir().unwrap();
    let img = build_layout(dir.path(), tag, spec);
    push_layout(
        dir.path(),
        tag,
        &format!("{}/{repo}:{tag}", registry.host()),
        registry.credentials(),
    );
    img
}

/// The repository's root (this crate is `tests/harness`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

/// The peer's binary, built once per source version.
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build).clone()
}

fn build() -> PathBuf {
    let root = repo_root();
    let src = root.join("tests/peers/ociregistry");
    let mut h = Sha256::new();
    for f in ["go.mod", "go.sum", "main.go"] {
        let bytes = std::fs::read(src.join(f))
            .unwrap_or_else(|e| panic!("reading {}: {e}", src.join(f).display()));
        h.update(f.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    let hash: String = h
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let bin_dir = root.join(".tools/bin");
    let bin = bin_dir.join(format!("ociregistry-{hash}"));
    if bin.is_file() {
        return bin;
    }
    std::fs::create_dir_all(&bin_dir).unwrap();
    // Several test binaries may build at once: each writes its own file and
    // renames it into place (the same bytes either way).
    let tmp = bin_dir.join(format!(".ociregistry-{hash}.{}.tmp", std::process::id()));
    let out = Command::new("go")
        .args(["build", "-trimpath", "-mod=readonly", "-o"])
        .arg(&tmp)
        .arg(".")
        .current_dir(&src)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "the OCI referrers registry peer needs Go (go build in {}): {e}",
                src.display()
            )
        });
    assert!(
        out.status.success(),
        "go build of {} failed (it needs the Go module proxy the first time): {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &bin).unwrap();
    bin
}

/// Status of a plain `GET path` (None when nothing answers).
fn get_status(host: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&host.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The peer starts, answers the referrers API (an empty index for an
    /// unknown subject of an existing repository) and docker-registry does
    /// not.
    #[test]
    fn oci_registry_has_the_referrers_api_and_docker_registry_not() {
        let oci = OciRegistry::start();
        let spec = ImageSpec {
            index: false,
            attestation: false,
            layer_sizes: vec![10],
            ..Default::default()
        };
        let img = push_image_to(&oci, "team/app", "1", &spec);
        let url = format!("{}/v2/team/app/referrers/{}", oci.url(), img.digest);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (status, body) = rt.block_on(async {
            let r = reqwest::get(&url).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        });
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"manifests\":[]"), "{body}");
        let dr = TestRegistry::start();
        let img = push_image_to(&dr, "team/app", "1", &spec);
        let url = format!("{}/v2/team/app/referrers/{}", dr.url(), img.digest);
        let status = rt.block_on(async { reqwest::get(&url).await.unwrap().status().as_u16() });
        assert_eq!(status, 404, "docker-registry 2.8 has no referrers API");
        assert!(oci.has_referrers_api() && !AnyRegistry::has_referrers_api(&dr));
    }
}
