//! The reports written from one parsed trivy report. Each writer streams its
//! findings straight to an [`kit::fsutil::AtomicFile`], so memory stays flat
//! whatever the number of findings, and a failed run leaves no half report.

pub mod codequality;
pub mod gitlab;
pub mod junit;
pub mod sarif;

use std::io::Write;
use std::path::PathBuf;

use kit::JobResult;
use kit::fsutil::{AtomicFile, write_error};
use time::OffsetDateTime;

/// Facts about the scan that every report repeats.
#[derive(Debug, Clone)]
pub struct ScanContext {
    /// The scanned image, as the user named it (or trivy's ArtifactName).
    pub image: String,
    /// `alpine 3.19.1`, or `Unknown` when trivy found no OS.
    pub operating_system: String,
    pub default_branch_image: Option<String>,
    /// Where findings point in the repository when `--dockerfile` is given.
    pub dockerfile: Option<DockerfileLocation>,
    pub started: OffsetDateTime,
    pub finished: OffsetDateTime,
    /// How long this run took (trivy included), for JUnit's `time`.
    pub run_seconds: f64,
    pub trivy_version: Option<String>,
    /// False when trivy itself failed: reports then say so and hold no findings.
    pub success: bool,
    pub failure_message: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DockerfileLocation {
    pub path: String,
    /// 1-based line of the last `FROM` (the stage that ships), else 1.
    pub from_line: u32,
}

impl DockerfileLocation {
    /// Reads the Dockerfile to point at its final `FROM`; a missing file
    /// still gives a usable location (line 1).
    pub fn find(path: &str) -> DockerfileLocation {
        let from_line = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| {
                t.lines()
                    .enumerate()
                    .filter(|(_, l)| l.trim_start().to_ascii_uppercase().starts_with("FROM "))
                    .map(|(i, _)| i as u32 + 1)
                    .last()
            })
            .unwrap_or(1);
        DockerfileLocation {
            path: path.trim_start_matches("./").to_string(),
            from_line,
        }
    }
}

/// A file that holds a JSON array written one element at a time.
pub(crate) struct JsonStream {
    pub file: AtomicFile,
    first: bool,
}

impl JsonStream {
    pub fn open(path: &std::path::Path, prefix: &[u8]) -> JobResult<Self> {
        let mut file = AtomicFile::create(path)?;
        file.write_all(prefix).map_err(|e| write_error(path, e))?;
        Ok(JsonStream { file, first: true })
    }

    pub fn element<T: serde::Serialize>(&mut self, item: &T) -> std::io::Result<()> {
        if !self.first {
            self.file.write_all(b",")?;
        }
        self.first = false;
        serde_json::to_writer(&mut self.file, item).map_err(std::io::Error::other)
    }

    /// Writes raw bytes (already valid JSON) after the elements.
    pub fn raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)
    }

    /// Starts a new array: the next element gets no leading comma.
    pub fn restart(&mut self) {
        self.first = true;
    }

    pub fn finish(mut self, suffix: &[u8]) -> JobResult<()> {
        let path: PathBuf = self.file.path().to_path_buf();
        self.file
            .write_all(suffix)
            .map_err(|e| write_error(&path, e))?;
        self.file.commit()
    }
}

/// GitLab's time format: UTC, no zone, no fraction.
pub fn gitlab_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    t.format(&f).unwrap_or_default()
}

/// RFC 3339 in UTC, for SARIF and JUnit.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_default()
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_truncation() {
        let t = time::macros::datetime!(2026-11-26 06:30:01.5 +02:00);
        assert_eq!(gitlab_time(t), "2026-11-26T04:30:01");
        assert_eq!(rfc3339(t), "2026-11-26T04:30:01Z");
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
