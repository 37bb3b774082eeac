//! Running trivy as a child process: once per scan, JSON to a file, bounded
//! by a timeout, and isolated from the checkout and the job's environment:
//!
//! - **Config:** `--config` points at an empty file scan-image creates, so a
//!   `trivy.yaml` committed to the project (or named by `TRIVY_CONFIG`)
//!   changes nothing; every setting is a flag. trivy also runs in a temp
//!   directory, not the checkout.
//! - **Environment:** cleared, then only [`PASSED_ENV`] is copied from the
//!   job's; `DOCKER_CONFIG` points at an empty directory; registry
//!   credentials for IMAGE's registry go in `TRIVY_USERNAME`/`TRIVY_PASSWORD`
//!   (never argv). No other `TRIVY_*` variable reaches trivy.
//! - **`--insecure`:** see [`crate::config::insecure_rule`].

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kit::credentials::Credentials;
use kit::env::Env;
use kit::secret::Redactor;

use crate::config::DbSettings;
use crate::error::Error;

/// What a child process gets of the job's environment, by name: what finds
/// programs and writable places, proxies, and extra CA certificates.
pub const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "TMPDIR",
    "XDG_CACHE_HOME",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// The directory trivy runs in: its empty config, an empty docker config
/// directory, and its output. Removed when dropped.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Result<Sandbox, Error> {
        let dir = tempfile::Builder::new()
            .prefix("scan-image.")
            .tempdir()
            .map_err(Error::TempDir)?;
        std::fs::write(dir.path().join("trivy.yaml"), b"").map_err(Error::TempDir)?;
        std::fs::write(dir.path().join("empty.trivyignore"), b"").map_err(Error::TempDir)?;
        std::fs::create_dir(dir.path().join("docker")).map_err(Error::TempDir)?;
        Ok(Sandbox { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The config trivy is given: an empty file.
    pub fn config(&self) -> PathBuf {
        self.path().join("trivy.yaml")
    }

    /// The ignore file trivy is given (empty: scan-image applies them).
    pub fn ignore_file(&self) -> PathBuf {
        self.path().join("empty.trivyignore")
    }

    /// `program` with a cleared environment but for [`PASSED_ENV`], run in
    /// the sandbox.
    pub fn command(&self, program: &Path, env: &dyn Env) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear().current_dir(self.path());
        for name in PASSED_ENV {
            if let Some(v) = env.var(name) {
                cmd.env(name, v);
            }
        }
        // trivy's keychain falls back to the docker config: give it none, so
        // it holds no credentials but those for IMAGE's registry.
        cmd.env("DOCKER_CONFIG", self.path().join("docker"));
        cmd
    }
}

/// How to run one `trivy image` scan.
#[derive(Debug)]
pub struct ImageScan<'a> {
    pub program: &'a Path,
    /// What trivy scans: a platform manifest by digest (`repo@sha256:…`),
    /// or IMAGE when it is a single manifest.
    pub image: &'a str,
    /// trivy's global `--insecure` (already decided by the config's rule).
    pub insecure: bool,
    pub credentials: Option<&'a Credentials>,
    /// Include every package (needed for an SBOM by `trivy convert`).
    pub list_all_pkgs: bool,
    pub timeout: Duration,
    pub output: &'a Path,
    /// The empty config file.
    pub config: &'a Path,
    /// Passed as `--ignorefile` so trivy itself suppresses nothing.
    pub ignore_file: &'a Path,
    pub db: &'a DbSettings,
}

impl ImageScan<'_> {
    /// The argv after the program name. Credentials are not in it.
    pub fn args(&self) -> Vec<String> {
        let path = |p: &Path| p.display().to_string();
        let mut a: Vec<String> = vec![
            "image".into(),
            "--config".into(),
            path(self.config),
            "--quiet".into(),
            "--format".into(),
            "json".into(),
            "--output".into(),
            path(self.output),
            "--scanners".into(),
            "vuln".into(),
            "--ignorefile".into(),
            path(self.ignore_file),
            "--skip-version-check".into(),
            "--disable-telemetry".into(),
        ];
        // trivy's own deadline sits past ours, so our timeout (exit 4) wins.
        a.extend([
            "--timeout".into(),
            format!("{}s", self.timeout.as_secs() + 60),
        ]);
        if let Some(d) = &self.db.cache_dir {
            a.extend(["--cache-dir".into(), path(d)]);
        }
        for r in &self.db.repositories {
            a.extend(["--db-repository".into(), r.clone()]);
        }
        for r in &self.db.java_repositories {
            a.extend(["--java-db-repository".into(), r.clone()]);
        }
        if self.db.skip_update {
            a.push("--skip-db-update".into());
        }
        if self.db.skip_java_update {
            a.push("--skip-java-db-update".into());
        }
        if self.insecure {
            a.push("--insecure".into());
        }
        if self.list_all_pkgs {
            a.push("--list-all-pkgs".into());
        }
        a.push(self.image.into());
        a
    }

    pub fn run(&self, sandbox: &Sandbox, env: &dyn Env) -> Result<(), Error> {
        let mut cmd = sandbox.command(self.program, env);
        cmd.args(self.args());
        let mut redactor = Redactor::new();
        if let Some(c) = self.credentials {
            cmd.env("TRIVY_USERNAME", &c.username)
                .env("TRIVY_PASSWORD", c.password.expose());
            redactor.add(&c.password);
        }
        run_bounded(cmd, self.program, "trivy image", self.timeout, &redactor)
    }
}

/// `trivy convert --format cyclonedx` of a JSON report: the SBOM comes from
/// the same scan, not a second one. Paths must be absolute (it runs in the
/// sandbox).
pub fn convert_to_cyclonedx(
    program: &Path,
    sandbox: &Sandbox,
    env: &dyn Env,
    json: &Path,
    out: &Path,
    timeout: Duration,
) -> Result<(), Error> {
    let mut cmd = sandbox.command(program, env);
    cmd.arg("convert")
        .arg("--config")
        .arg(sandbox.config())
        .args(["--quiet", "--format", "cyclonedx", "--output"])
        .arg(out)
        .arg(json);
    run_bounded(cmd, program, "trivy convert", timeout, &Redactor::new())
}

/// Runs `cmd`, keeping the tail of its stderr; kills it at `timeout`.
fn run_bounded(
    mut cmd: Command,
    program: &Path,
    what: &'static str,
    timeout: Duration,
    redactor: &Redactor,
) -> Result<(), Error> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| spawn_error(program, e))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let tail_reader = std::thread::spawn(move || {
        let mut tail: VecDeque<String> = VecDeque::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tail.len() == 8 {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        tail
    });
    let status = wait_with_timeout(&mut child, timeout);
    // After a timeout a grandchild may still hold stderr open: don't wait for it.
    let tail = if status.is_some() {
        tail_reader.join().unwrap_or_default()
    } else {
        VecDeque::new()
    };
    let tail = redactor.redact(&tail.into_iter().collect::<Vec<_>>().join(" | "));
    match status {
        None => Err(Error::TrivyTimeout { what, timeout }),
        Some(Ok(s)) if s.success() => Ok(()),
        Some(Ok(s)) => Err(Error::TrivyFailed {
            what,
            status: s
                .code()
                .map_or_else(|| "a signal".to_string(), |c| format!("status {c}")),
            tail: if tail.is_empty() {
                "no output on stderr".to_string()
            } else {
                tail
            },
        }),
        Some(Err(source)) => Err(Error::TrivyWait { what, source }),
    }
}

/// None when the deadline passed (the child is then killed and reaped).
fn wait_with_timeout(
    child: &mut Child,
    timeout: Duration,
) -> Option<std::io::Result<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(Ok(s)),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(25)),
            Err(e) => return Some(Err(e)),
        }
    }
}

fn spawn_error(program: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::TrivyNotFound {
            program: program.to_path_buf(),
        }
    } else {
        Error::TrivySpawn {
            program: program.to_path_buf(),
            source: e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_has_no_credentials_and_an_explicit_config() {
        let creds = Credentials::new("ci-user", "s3cr3t-pass");
        let db = DbSettings::default();
        let scan = ImageScan {
            program: Path::new("trivy"),
            image: "registry.example.com/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            insecure: true,
            credentials: Some(&creds),
            list_all_pkgs: false,
            timeout: Duration::from_secs(300),
            output: Path::new("/tmp/out.json"),
            config: Path::new("/tmp/sandbox/trivy.yaml"),
            ignore_file: Path::new("/tmp/empty"),
            db: &db,
        };
        let a = scan.args();
        assert!(
            !a.iter()
                .any(|x| x.contains("s3cr3t") || x.contains("ci-user"))
        );
        assert_eq!(&a[..3], ["image", "--config", "/tmp/sandbox/trivy.yaml"]);
        assert!(a.contains(&"--insecure".to_string()));
        assert_eq!(a.last().unwrap(), scan.image);
    }
}
