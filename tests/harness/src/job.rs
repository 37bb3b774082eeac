//! Starting a job binary the way CI does, and judging what it printed.
//!
//! One helper for every crate's tests: a clean environment (nothing from the
//! developer's shell leaks in), a working directory, and checks a user would
//! make: the exit code, the one-line cause, no secret in any form anywhere.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;

/// A job binary about to run.
pub struct Job {
    name: String,
    cmd: Command,
}

impl Job {
    /// `bin` is `env!("CARGO_BIN_EXE_<job>")`. The environment starts empty
    /// but for `PATH` and `HOME` (= `dir`); `DOCKER_CONFIG` points at nothing.
    pub fn new(bin: impl AsRef<OsStr>, dir: &Path) -> Self {
        let bin = bin.as_ref();
        let name = Path::new(bin)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut cmd = Command::new(bin);
        cmd.current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir)
            .env("DOCKER_CONFIG", dir.join("no-docker-config"))
            .stdin(Stdio::null());
        Job { name, cmd }
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(a);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.cmd.env(k, v);
        self
    }

    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.cmd.envs(vars);
        self
    }

    /// The underlying command, for what the builder does not cover.
    pub fn command(&mut self) -> &mut Command {
        &mut self.cmd
    }

    pub fn run(mut self) -> Run {
        let out = self
            .cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.name));
        let run = Run {
            job: self.name,
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if std::env::var_os("SHOW_JOB_LOG").is_some() {
            eprintln!(
                "--- {} exit {}\n{}{}",
                run.job, run.code, run.stdout, run.stderr
            );
        }
        run
    }
}

/// What a finished job left.
#[derive(Debug, Clone)]
pub struct Run {
    pub job: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// The one-line cause: the text after `JOB: error: ` on the last line of
    /// stderr that carries it. Panics when there is none.
    pub fn cause(&self) -> &str {
        let prefix = format!("{}: error: ", self.job);
        self.stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no `{prefix}…` line in stderr:\n{}", self.stderr))
    }

    /// Asserts the exit code and that the one-line cause matches `pattern`
    /// (a regex over the whole cause).
    #[track_caller]
    pub fn assert_failed(&self, code: i32, pattern: &str) {
        assert_eq!(
            self.code,
            code,
            "{} exited {} (expected {code}):\n{}",
            self.job,
            self.code,
            self.all()
        );
        let re = regex::Regex::new(&format!("^(?:{pattern})$")).expect("pattern");
        let cause = self.cause();
        assert!(
            re.is_match(cause),
            "{}'s cause {cause:?} does not match /{pattern}/",
            self.job
        );
        assert_eq!(
            self.stderr
                .matches(&format!("{}: error: ", self.job))
                .count(),
            1,
            "more than one error line:\n{}",
            self.stderr
        );
    }

    #[track_caller]
    pub fn assert_success(&self) {
        assert_eq!(self.code, 0, "{} failed:\n{}", self.job, self.all());
    }

    /// Asserts no secret appears in stdout or stderr in any form.
    #[track_caller]
    pub fn assert_no_secret(&self, secrets: &[&str]) {
        assert_no_secret_in(&format!("{}'s output", self.job), &self.all(), secrets);
    }
}

/// The forms a secret takes when it leaks: plain, URL-encoded, base64 of the
/// secret alone and inside `user:secret` (every alignment, standard and
/// URL-safe alphabets), hex.
pub fn secret_forms(secret: &str) -> Vec<String> {
    let mut forms = vec![
        secret.to_string(),
        url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
        hex_lower(secret.as_bytes()),
    ];
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE,
    ];
    for engine in engines {
        // The secret at each offset mod 3 inside a longer base64 text: drop
        // the characters that depend on the unknown neighbours.
        for pad in 0..3usize {
            let mut bytes = vec![b':'; pad];
            bytes.extend_from_slice(secret.as_bytes());
            let enc = engine.encode(&bytes).trim_end_matches('=').to_string();
            let skip = if pad == 0 { 0 } else { (pad * 4).div_ceil(3) };
            let tail_len = enc.len().saturating_sub(skip);
            // Keep whole 4-character groups only from the aligned start; the
            // last character may depend on what follows.
            let core: String = enc
                .chars()
                .skip(skip)
                .take(tail_len.saturating_sub(1))
                .collect();
            if core.len() >= 6 {
                forms.push(core);
            }
        }
    }
    forms.sort();
    forms.dedup();
    forms
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Asserts none of the forms of any secret appears in `text`; also decodes
/// every base64-looking word of `text` and looks inside.
#[track_caller]
pub fn assert_no_secret_in(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(secret.len() >= 6, "canary {secret:?} is too short to find");
        for form in secret_forms(secret) {
            assert!(
                !text.contains(&form),
                "{what} holds the secret (as {form:?}):\n{text}"
            );
        }
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || "+/=-_".contains(c))) {
            if word.len() < 8 {
                continue;
            }
            for engine in [
                &base64::engine::general_purpose::STANDARD,
                &base64::engine::general_purpose::URL_SAFE,
            ] {
                if let Ok(bytes) = engine.decode(word)
                    && String::from_utf8_lossy(&bytes).contains(secret)
                {
                    panic!("{what} holds the secret base64-encoded in {word:?}:\n{text}");
                }
            }
        }
    }
}

/// Asserts no secret is in any file below `dir` (reports, dotenv files,
/// checked-out commits), following no symlink.
#[track_caller]
pub fn assert_no_secret_in_files(dir: &Path, secrets: &[&str]) {
    for file in files_below(dir) {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        assert_no_secret_in(&file.display().to_string(), &text, secrets);
    }
}

fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_secret_in_a_basic_auth_header() {
        let secret = "glpat-canary-7Hq2";
        for user in ["u", "us", "oauth2", "gitlab-ci-token"] {
            let header =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
            let text = format!("> Authorization: Basic {header}\n");
            let r = std::panic::catch_unwind(|| assert_no_secret_in("log", &text, &[secret]));
            assert!(r.is_err(), "missed base64 of {user}:secret");
            // Without the decodable word (cut out of a longer line), the
            // aligned forms still catch it.
            let glued = format!("x{header}y");
            let r = std::panic::catch_unwind(|| assert_no_secret_in("log", &glued, &[secret]));
            assert!(r.is_err(), "missed glued base64 of {user}:secret");
        }
        for text in [
            format!(
                "token={}",
                url::form_urlencoded::byte_serialize(b"a b&c=canary").collect::<String>()
            ),
            "plain a b&c=canary".to_string(),
        ] {
            let r =
                std::panic::catch_unwind(|| assert_no_secret_in("log", &text, &["a b&c=canary"]));
            assert!(r.is_err(), "missed {text}");
        }
        assert_no_secret_in("log", "nothing here but Basic dXNlcjpvdGhlcg==", &[secret]);
    }

    #[test]
    fn cause_is_the_error_line() {
        let r = Run {
            job: "scan-image".into(),
            code: 2,
            stdout: String::new(),
            stderr: "progress\nscan-image: error: --fail-on: unknown level \"x\"\n".into(),
        };
        assert_eq!(r.cause(), "--fail-on: unknown level \"x\"");
        r.assert_failed(2, r#"--fail-on: unknown level ".*""#);
    }
}
