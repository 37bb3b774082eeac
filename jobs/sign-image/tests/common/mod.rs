//! Shared helpers: run the real binary with a clean environment, make keys.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// The binary with an environment holding nothing that could leak in from
/// the developer's or CI's shell (keys, passwords, registry logins).
pub fn cmd(home: &Path) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().to_string();
        if k.starts_with("COSIGN_")
            || k.starts_with("SIGN_IMAGE")
            || k.starts_with("REGISTRY_")
            || k.starts_with("CI_REGISTRY")
            || k.starts_with("DOCKERHUB_")
            || k == "INSECURE_REGISTRY"
            || k == "DOCKER_CONFIG"
            || k == "GITLAB_CI"
        {
            c.env_remove(k);
        }
    }
    c.env("HOME", home).env("NO_COLOR", "1");
    c
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
    /// The last line of stderr: the one-line cause.
    pub fn cause(&self) -> &str {
        self.stderr
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("")
    }
}

pub fn run(c: &mut Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("run sign-image");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

#[track_caller]
pub fn assert_code(r: &Run, code: i32) {
    assert_eq!(
        r.code, code,
        "exit code; stdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
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
