//! Outputs for later jobs, as a dotenv file for GitLab's
//! `artifacts:reports:dotenv`. GitLab's parser takes `KEY=value` lines, keys
//! of letters, digits and `_`, single-line values; it does not unquote, so
//! values are written bare.

use std::path::Path;

use crate::fsutil::write_atomic;
use crate::{JobError, JobResult};

/// Ordered key/value pairs to hand to later jobs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dotenv {
    entries: Vec<(String, String)>,
}

impl Dotenv {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces `key`. Invalid keys or multi-line values are a bug in
    /// the job, not user input, but are still reported rather than written.
    pub fn set(&mut self, key: &str, value: impl ToString) -> JobResult<()> {
        let value = value.to_string();
        let key_ok = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !key_ok {
            return Err(JobError::usage(format!(
                "dotenv key {key:?} is not a valid variable name"
            )));
        }
        if value.contains(['\n', '\r']) {
            return Err(JobError::usage(format!(
                "dotenv value for {key} spans lines; GitLab accepts one line"
            )));
        }
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = value,
            None => self.entries.push((key.to_string(), value)),
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn render(&self) -> String {
        self.entries
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect()
    }

    /// Writes a fresh file with exactly these entries. Whatever is at the
    /// path is never read: a committed `job.env` (or a symlink to
    /// `/proc/self/environ`) cannot inject variables into later jobs or turn
    /// the environment into an artifact. The content goes to a new temp file
    /// (`O_EXCL`) that is renamed over the path, so a symlink there is
    /// replaced, not followed.
    pub fn write(&self, path: &Path) -> JobResult<()> {
        write_atomic(path, self.render().as_bytes())
    }
}

/// Parses `KEY=value` lines (comments and blank lines skipped).
pub fn parse(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_replaces() {
        let mut d = Dotenv::new();
        d.set("A", 1).unwrap();
        d.set("B_2", "x=y").unwrap();
        d.set("A", 3).unwrap();
        assert_eq!(d.render(), "A=3\nB_2=x=y\n");
        assert!(d.set("1A", "x").is_err());
        assert!(d.set("A-B", "x").is_err());
        assert!(d.set("A", "two\nlines").is_err());
    }

    #[test]
    fn an_existing_file_is_replaced_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("job.env");
        std::fs::write(&p, "INSECURE_REGISTRY=evil.example\nA=old\n").unwrap();
        let mut d = Dotenv::new();
        d.set("A", "new").unwrap();
        d.write(&p).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "A=new\n");
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_at_the_path_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("environ-like");
        std::fs::write(&target, "SECRET_TOKEN=canary-9f3\n").unwrap();
        let p = dir.path().join("job.env");
        std::os::unix::fs::symlink("/proc/self/environ", &p).unwrap();
        let other = dir.path().join("other.env");
        std::os::unix::fs::symlink(&target, &other).unwrap();
        let mut d = Dotenv::new();
        d.set("A", "1").unwrap();
        d.write(&p).unwrap();
        d.write(&other).unwrap();
        for path in [&p, &other] {
            let meta = std::fs::symlink_metadata(path).unwrap();
            assert!(
                meta.file_type().is_file(),
                "{} is still a link",
                path.display()
            );
            assert_eq!(std::fs::read_to_string(path).unwrap(), "A=1\n");
        }
        // The link's old target is untouched.
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "SECRET_TOKEN=canary-9f3\n"
        );
    }
}
