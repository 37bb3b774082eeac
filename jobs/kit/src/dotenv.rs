//! Outputs for later jobs, as a dotenv file for GitLab's
//! `artifacts:reports:dotenv`. GitLab's parser takes `KEY=value` lines, keys
//! of letters, digits and `_`, single-line values; it does not unquote, so
//! values are written bare.

use std::collections::BTreeMap;
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

    /// Writes the file, keeping keys another step of the same job already
    /// wrote there (ours win on conflict).
    pub fn write_merged(&self, path: &Path) -> JobResult<()> {
        let mut merged: BTreeMap<String, String> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        if let Ok(old) = std::fs::read_to_string(path) {
            for (k, v) in parse(&old) {
                if merged.insert(k.clone(), v).is_none() {
                    order.push(k);
                }
            }
        }
        for (k, v) in &self.entries {
            if merged.insert(k.clone(), v.clone()).is_none() {
                order.push(k.clone());
            }
        }
        let text: String = order
            .iter()
            .map(|k| format!("{k}={}\n", merged[k]))
            .collect();
        write_atomic(path, text.as_bytes())
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
    fn merges_with_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("job.env");
        std::fs::write(&p, "# earlier step\nKEEP=1\nA=old\n").unwrap();
        let mut d = Dotenv::new();
        d.set("A", "new").unwrap();
        d.set("C", "c").unwrap();
        d.write_merged(&p).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "KEEP=1\nA=new\nC=c\n");
    }
}
