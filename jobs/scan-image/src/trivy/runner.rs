//! Running trivy as a child process: once per scan, JSON to a file, registry
//! credentials through its environment (never its argv), bounded by a timeout.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kit::credentials::Credentials;
use kit::secret::Redactor;
use kit::{JobError, JobResult};

/// How to run one `trivy image` scan.
#[derive(Debug)]
pub struct ImageScan<'a> {
    pub program: &'a Path,
    pub image: &'a str,
    pub platform: Option<&'a str>,
    /// Allow plain HTTP / unverified TLS to the image's registry.
    pub insecure: bool,
    pub credentials: Option<&'a Credentials>,
    /// Include every package (needed for an SBOM by `trivy convert`).
    pub list_all_pkgs: bool,
    pub timeout: Duration,
    pub output: &'a Path,
    /// Passed as `--ignorefile` so trivy itself suppresses nothing.
    pub ignore_file: &'a Path,
}

impl ImageScan<'_> {
    /// The argv after the program name. Credentials are not in it.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "image".into(),
            "--quiet".into(),
            "--format".into(),
            "json".into(),
        ];
        a.extend(["--output".into(), self.output.display().to_string()]);
        a.extend(["--scanners".into(), "vuln".into()]);
        a.extend([
            "--ignorefile".into(),
            self.ignore_file.display().to_string(),
        ]);
        // trivy's own deadline sits past ours, so our timeout (exit 4) wins.
        a.extend([
            "--timeout".into(),
            format!("{}s", self.timeout.as_secs() + 60),
        ]);
        if let Some(p) = self.platform {
            a.extend(["--platform".into(), p.into()]);
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

    pub fn run(&self) -> JobResult<()> {
        let mut cmd = Command::new(self.program);
        cmd.args(self.args())
            .env_remove("TRIVY_IGNOREFILE")
            .env_remove("TRIVY_IGNORE_UNFIXED");
        let mut redactor = Redactor::new();
        if let Some(c) = self.credentials {
            cmd.env("TRIVY_USERNAME", &c.username)
                .env("TRIVY_PASSWORD", c.password.expose());
            redactor.add(&c.password);
        }
        if self.insecure {
            // For registries on plain HTTP (trivy's switch for them).
            cmd.env("TRIVY_NON_SSL", "true");
        }
        run_bounded(cmd, self.program, "trivy image", self.timeout, &redactor)
    }
}

/// `trivy convert --format cyclonedx` of a JSON report: the SBOM comes from
/// the same scan, not a second one.
pub fn convert_to_cyclonedx(
    program: &Path,
    json: &Path,
    out: &Path,
    timeout: Duration,
) -> JobResult<()> {
    let mut cmd = Command::new(program);
    cmd.args(["convert", "--quiet", "--format", "cyclonedx", "--output"])
        .arg(out)
        .arg(json);
    run_bounded(cmd, program, "trivy convert", timeout, &Redactor::new())
}

/// Runs `cmd`, keeping the tail of its stderr; kills it at `timeout`.
fn run_bounded(
    mut cmd: Command,
    program: &Path,
    what: &str,
    timeout: Duration,
    redactor: &Redactor,
) -> JobResult<()> {
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
        None => Err(JobError::timeout(format!(
            "{what} did not finish within {}; raise --timeout (SCAN_TIMEOUT) or check the registry",
            kit::duration::human(timeout)
        ))),
        Some(Ok(s)) if s.success() => Ok(()),
        Some(Ok(s)) => {
            let code = s
                .code()
                .map_or_else(|| "a signal".to_string(), |c| format!("status {c}"));
            let tail = if tail.is_empty() {
                "no output on stderr".to_string()
            } else {
                tail
            };
            Err(JobError::remote(format!(
                "{what} failed with {code}: {tail}"
            )))
        }
        Some(Err(e)) => Err(JobError::remote(format!(
            "{what}: waiting for the process failed: {e}"
        ))),
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

fn spawn_error(program: &Path, e: std::io::Error) -> JobError {
    if e.kind() == std::io::ErrorKind::NotFound {
        JobError::usage(format!(
            "trivy not found ({}): install it (https://trivy.dev/latest/getting-started/installation/), set SCAN_TRIVY to its path, or convert an existing report with --trivy-report FILE",
            program.display()
        ))
    } else {
        JobError::usage(format!("cannot run trivy ({}): {e}", program.display()))
    }
}

/// The trivy program: an explicit path, else `trivy` from PATH.
pub fn program(explicit: Option<&Path>) -> PathBuf {
    explicit.map_or_else(|| PathBuf::from("trivy"), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_has_no_credentials() {
        let creds = Credentials::new("ci-user", "s3cr3t-pass");
        let scan = ImageScan {
            program: Path::new("trivy"),
            image: "registry.example.com/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            platform: Some("linux/arm64"),
            insecure: true,
            credentials: Some(&creds),
            list_all_pkgs: false,
            timeout: Duration::from_secs(300),
            output: Path::new("/tmp/out.json"),
            ignore_file: Path::new("/tmp/empty"),
        };
        let a = scan.args();
        assert!(
            !a.iter()
                .any(|x| x.contains("s3cr3t") || x.contains("ci-user"))
        );
        assert_eq!(&a[..4], ["image", "--quiet", "--format", "json"]);
        assert!(a.windows(2).any(|w| w == ["--platform", "linux/arm64"]));
        assert!(a.contains(&"--insecure".to_string()));
        assert_eq!(a.last().unwrap(), scan.image);
    }
}
