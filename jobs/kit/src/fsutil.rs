//! Files written so that a failed run never leaves a half-written one:
//! content goes to a temp file in the same directory, then is renamed over
//! the target (atomic on POSIX file systems).

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::{JobError, JobResult};

/// A file being written; it appears at its path only on [`AtomicFile::commit`].
/// Dropping it without committing removes the temp file.
pub struct AtomicFile {
    target: PathBuf,
    writer: BufWriter<NamedTempFile>,
}

impl AtomicFile {
    /// Starts writing `path`. Fails (exit 2) when its directory does not exist
    /// or is not writable, before any work is done.
    pub fn create(path: &Path) -> JobResult<Self> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if path.is_dir() {
            return Err(JobError::usage(format!(
                "cannot write {}: it is a directory",
                path.display()
            )));
        }
        let tmp = tempfile::Builder::new()
            .prefix(&format!(
                ".{}.",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("out")
            ))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| JobError::usage(format!("cannot write {}: {e}", path.display())))?;
        Ok(AtomicFile {
            target: path.to_path_buf(),
            writer: BufWriter::with_capacity(256 * 1024, tmp),
        })
    }

    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Flushes and renames the temp file over the target. No fsync: the
    /// guarantee is against a failed or killed job (the old file or the whole
    /// new one), which is what CI artifacts need, not against power loss.
    pub fn commit(self) -> JobResult<()> {
        let target = self.target;
        let fail = |e: &dyn std::fmt::Display| {
            JobError::usage(format!("cannot write {}: {e}", target.display()))
        };
        let tmp = self
            .writer
            .into_inner()
            .map_err(|e| fail(&e.error().to_string()))?;
        // Reports are read by other users of the runner (GitLab's uploader):
        // tempfile creates 0600, make it like any other file we write.
        set_readable(tmp.path());
        tmp.persist(&target).map_err(|e| fail(&e.error))?;
        Ok(())
    }
}

#[cfg(unix)]
fn set_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644));
}

#[cfg(not(unix))]
fn set_readable(_: &Path) {}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> JobResult<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)
        .map_err(|e| JobError::usage(format!("cannot write {}: {e}", path.display())))?;
    f.commit()
}

/// Maps an I/O error while writing `path` to the job error users see.
pub fn write_error(path: &Path, e: io::Error) -> JobError {
    JobError::usage(format!("cannot write {}: {e}", path.display()))
}

/// Reads an input file; a missing or unreadable file is a usage error naming it.
pub fn read_input(path: &Path, what: &str) -> JobResult<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| JobError::usage(format!("cannot read {what} {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appears_only_on_commit() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("report.json");
        let mut f = AtomicFile::create(&p).unwrap();
        f.write_all(b"{}").unwrap();
        assert!(!p.exists());
        f.commit().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
    }

    #[test]
    fn dropped_write_leaves_old_content_and_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("report.json");
        std::fs::write(&p, "old").unwrap();
        {
            let mut f = AtomicFile::create(&p).unwrap();
            f.write_all(b"half").unwrap();
        }
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn unwritable_paths_are_usage_errors() {
        let e = write_atomic(Path::new("/nonexistent-dir/x.json"), b"x").unwrap_err();
        assert_eq!(e.kind, crate::ExitKind::Usage);
        assert!(e.message.contains("/nonexistent-dir/x.json"));
        let d = tempfile::tempdir().unwrap();
        let e = write_atomic(d.path(), b"x").unwrap_err();
        assert!(e.message.contains("directory"));
    }
}
