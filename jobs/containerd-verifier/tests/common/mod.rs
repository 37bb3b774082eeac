//! Shared by the contract tests and the containerd tests: a node directory
//! (policy, keys, registries.yaml, cache), signing with sign-image's
//! library, and the verifier called the way containerd calls it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;

pub use harness::job::{Job, Run};
use harness::registry::{ImageSpec, TestImage, TestRegistry, push_image};
use kit::env::MapEnv;
use kit::job::FromArgs;
use kit::secret::Secret;
use sign_image::keys::PrivateKey;

pub const BIN: &str = env!("CARGO_BIN_EXE_secdeliv-verifier");
pub const OCI_DESCRIPTOR: &str = "application/vnd.oci.descriptor.v1+json";

/// A key pair: the private key in memory and on disk (for sign-image), the
/// public key on the node.
pub struct Key {
    pub key: PrivateKey,
    pub private_path: PathBuf,
    pub pub_path: PathBuf,
}

pub fn key(dir: &Path, name: &str) -> Key {
    let key = PrivateKey::generate().unwrap();
    let private_path = dir.join(format!("{name}.key"));
    let pub_path = dir.join(format!("{name}.pub"));
    std::fs::write(
        &private_path,
        key.to_encrypted_pem_with_n(&Secret::new("pw"), 1024)
            .unwrap(),
    )
    .unwrap();
    std::fs::write(&pub_path, key.public().to_pem()).unwrap();
    Key {
        key,
        private_path,
        pub_path,
    }
}

/// `sign-image sign IMAGE --key KEY` through sign-image's own flags and
/// library (the code the CI job runs).
pub fn sign(image: &str, key: &Key, insecure_host: &str) {
    let args = kit::cli::try_parse_from::<sign_image::cli::Args, _, _>([
        "sign-image",
        "sign",
        image,
        "--key",
        key.private_path.to_str().unwrap(),
        "--insecure-registry",
        insecure_host,
    ])
    .unwrap();
    let env = MapEnv::new([("COSIGN_PASSWORD", "pw")]);
    let cfg = match sign_image::config::Config::from_args(args, &env).unwrap() {
        sign_image::config::Config::Sign(c) => c,
        other => panic!("not a sign config: {other:?}"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(sign_image::ops::sign(&cfg, &env)).unwrap();
}

pub fn small(seed: u64) -> ImageSpec {
    ImageSpec {
        platforms: vec!["linux/amd64".into()],
        layer_sizes: vec![64],
        attestation: false,
        index: false,
        seed,
    }
}

pub fn push(reg: &TestRegistry, repo: &str, tag: &str, seed: u64) -> TestImage {
    push_image(reg, repo, tag, &small(seed), None)
}

/// The node's files in a temp dir.
pub struct Node {
    pub dir: tempfile::TempDir,
}

impl Node {
    pub fn new() -> Node {
        Node {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn policy(&self, text: &str) {
        std::fs::write(self.path("verify.yaml"), text).unwrap();
    }
    /// registries.yaml saying `host` speaks plain HTTP (K3s's way: a mirror
    /// endpoint with an http:// URL).
    pub fn plain_http(&self, hosts: &[&str]) {
        let mut text = String::from("mirrors:\n");
        for h in hosts {
            text.push_str(&format!("  \"{h}\":\n    endpoint: [\"http://{h}\"]\n"));
        }
        std::fs::write(self.path("registries.yaml"), text).unwrap();
    }
    pub fn registries(&self, text: &str) {
        std::fs::write(self.path("registries.yaml"), text).unwrap();
    }

    /// The verifier as containerd starts it: `-name -digest
    /// -stdin-media-type`, the descriptor on stdin, our files by flag.
    pub fn verify(&self, name: &str, digest: &str) -> Run {
        let desc = descriptor(digest);
        self.verify_with(
            &[
                "-name",
                name,
                "-digest",
                digest,
                "-stdin-media-type",
                OCI_DESCRIPTOR,
            ],
            desc.as_bytes(),
        )
    }

    pub fn verify_with(&self, args: &[&str], stdin: &[u8]) -> Run {
        let stdin_path = self.path("stdin.json");
        std::fs::write(&stdin_path, stdin).unwrap();
        let mut job = verifier_job(self.dir.path())
            .args(args)
            .arg("--policy")
            .arg(self.path("verify.yaml"))
            .arg("--registries")
            .arg(self.path("registries.yaml"))
            .arg("--cache")
            .arg(self.path("cache/verify-cache.json"));
        job.command()
            .stdin(Stdio::from(std::fs::File::open(&stdin_path).unwrap()));
        job.run()
    }
}

/// The verifier under test: this build, or with `SECDELIV_VERIFIER_AARCH64`
/// set to the static aarch64 binary (scripts/build-musl.sh's layout), that
/// binary under `qemu-aarch64-static`: the same contract tests, emulated.
pub fn verifier_job(dir: &Path) -> Job {
    match std::env::var_os("SECDELIV_VERIFIER_AARCH64") {
        Some(bin) => {
            assert!(
                Path::new(&bin).is_file(),
                "SECDELIV_VERIFIER_AARCH64={} does not exist",
                Path::new(&bin).display()
            );
            Job::new("qemu-aarch64-static", dir).arg(bin)
        }
        None => Job::new(BIN, dir),
    }
}

pub fn descriptor(digest: &str) -> String {
    format!(
        r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":500}}"#
    )
}

/// Asserts exit code and that stdout is one line matching `pattern`.
#[track_caller]
pub fn assert_verdict(r: &Run, code: i32, pattern: &str) {
    let re = regex::Regex::new(pattern).unwrap();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        r.code == code && lines.len() == 1 && re.is_match(lines[0]),
        "want exit {code} and one stdout line matching {pattern:?}; got exit {}\nstdout:\n{}\nstderr:\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
}

pub fn re(s: &str) -> String {
    regex::escape(s)
}
