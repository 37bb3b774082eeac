//! Shared helpers: run the real binary with a clean environment, make keys.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub use harness::job::{Job, Run};

use kit::secret::Secret;
use sign_image::keys::PrivateKey;

pub const BIN: &str = env!("CARGO_BIN_EXE_sign-image");

/// A key pair written to files: `<dir>/<name>.key` (encrypted with
/// `password`, cheap scrypt so debug builds stay fast) and `<name>.pub`.
pub struct Keys {
    pub key: PrivateKey,
    pub key_path: PathBuf,
    pub pub_path: PathBuf,
    pub password: String,
}

pub fn keys(dir: &Path, name: &str, password: &str) -> Keys {
    let key = PrivateKey::generate().unwrap();
    let key_path = dir.join(format!("{name}.key"));
    let pub_path = dir.join(format!("{name}.pub"));
    std::fs::write(
        &key_path,
        key.to_encrypted_pem_with_n(&Secret::new(password), 1024)
            .unwrap(),
    )
    .unwrap();
    std::fs::write(&pub_path, key.public().to_pem()).unwrap();
    Keys {
        key,
        key_path,
        pub_path,
        password: password.to_string(),
    }
}

/// The binary the way CI starts it (harness::job): an empty environment but
/// `PATH` and `HOME` (= `home`), so nothing leaks in from the developer's or
/// CI's shell (keys, passwords, registry logins).
pub fn job(home: &Path) -> Job {
    Job::new(BIN, home).env("NO_COLOR", "1")
}

#[track_caller]
pub fn assert_code(r: &Run, code: i32) {
    assert_eq!(
        r.code, code,
        "exit code; stdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
}

/// `regex::escape`, for building whole-cause patterns from hosts and digests.
pub fn re(s: &str) -> String {
    regex::escape(s)
}

/// `(layers, signature annotations)` of the `.sig` manifest of `digest`
/// as skopeo (a tool we did not write) reads it.
pub fn sig_layers(
    host: &str,
    repo: &str,
    digest: &str,
    creds: Option<(&str, &str)>,
) -> Option<serde_json::Value> {
    let tag = digest.replace(':', "-") + ".sig";
    harness::registry::try_skopeo_raw(&format!("{host}/{repo}:{tag}"), creds)
        .ok()
        .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap()["layers"].clone())
}
