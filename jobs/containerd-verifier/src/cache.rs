//! Verified digests kept on the node, so a re-pull or a restart of a
//! verified image does not need the registry.
//!
//! One JSON file (default `/var/lib/secdeliv/verify-cache.json`), replaced
//! atomically (temp file in the same directory, then rename) on each new
//! verification. An entry is (digest, repository, key fingerprint, when):
//! the repository because a signature is only valid for the repository it
//! names, the fingerprint so a key removed from the policy no longer vouches
//! for anything. Bounded: entries older than `max_age` are ignored and
//! dropped; past `max_entries` the oldest go first.
//!
//! The file is a trust decision: whoever can write it can allow an image.
//! It is created mode 0600 in a directory created 0700 (root's, like the
//! policy). A file that cannot be read or parsed is treated as empty (a
//! cache miss means verifying against the registry, never allowing).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub digest: String,
    pub repository: String,
    pub key: String,
    /// Seconds since the Unix epoch.
    pub verified_at: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    entries: Vec<Entry>,
}

const VERSION: u32 = 1;

#[derive(Debug)]
pub struct Cache {
    path: PathBuf,
    max_entries: usize,
    max_age: Duration,
    entries: Vec<Entry>,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Cache {
    /// Reads the cache; any problem is an empty cache (with a note on stderr).
    pub fn open(path: &Path, max_entries: usize, max_age: Duration) -> Cache {
        let entries = match std::fs::read(path) {
            Ok(bytes) => match serde_json::from_slice::<File>(&bytes) {
                Ok(f) if f.version == VERSION => f.entries,
                Ok(f) => {
                    kit::joblog::warn(format!(
                        "cache {}: version {} is not {VERSION}; starting empty",
                        path.display(),
                        f.version
                    ));
                    Vec::new()
                }
                Err(e) => {
                    kit::joblog::warn(format!(
                        "cache {} is unreadable ({e}); starting empty",
                        path.display()
                    ));
                    Vec::new()
                }
            },
            Err(_) => Vec::new(),
        };
        Cache {
            path: path.to_path_buf(),
            max_entries,
            max_age,
            entries,
        }
    }

    fn fresh(&self, e: &Entry, now: u64) -> bool {
        e.verified_at <= now && now - e.verified_at < self.max_age.as_secs()
    }

    /// A fresh entry for this digest and repository by one of `keys`.
    pub fn lookup(
        &self,
        digest: &str,
        repository: &str,
        keys: &[&str],
        now: u64,
    ) -> Option<&Entry> {
        self.entries.iter().find(|e| {
            e.digest == digest
                && e.repository == repository
                && keys.contains(&e.key.as_str())
                && self.fresh(e, now)
        })
    }

    /// Records a verification and writes the file; entries of keys not in
    /// `known_keys` and stale ones are dropped, then the oldest past the bound.
    pub fn record(&mut self, entry: Entry, known_keys: &[String], now: u64) -> std::io::Result<()> {
        self.entries.retain(|e| {
            !(e.digest == entry.digest && e.repository == entry.repository && e.key == entry.key)
        });
        self.entries.push(entry);
        let max_age = self.max_age.as_secs();
        self.entries.retain(|e| {
            known_keys.contains(&e.key) && e.verified_at <= now && now - e.verified_at < max_age
        });
        self.entries
            .sort_by_key(|e| std::cmp::Reverse(e.verified_at));
        self.entries.truncate(self.max_entries);
        self.write()
    }

    fn write(&self) -> std::io::Result<()> {
        use std::io::Write as _;
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode_0700()
                .create(dir)?;
        }
        let bytes = serde_json::to_vec(&File {
            version: VERSION,
            entries: self.entries.clone(),
        })
        .map_err(std::io::Error::other)?;
        // tempfile creates the file mode 0600 in the target's directory.
        let mut tmp = tempfile::Builder::new()
            .prefix(".verify-cache.")
            .tempfile_in(dir)?;
        tmp.write_all(&bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

trait Mode0700 {
    fn mode_0700(&mut self) -> &mut Self;
}

impl Mode0700 for std::fs::DirBuilder {
    fn mode_0700(&mut self) -> &mut Self {
        use std::os::unix::fs::DirBuilderExt as _;
        self.mode(0o700)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(d: &str, key: &str, at: u64) -> Entry {
        Entry {
            digest: d.into(),
            repository: "r/app".into(),
            key: key.into(),
            verified_at: at,
        }
    }

    #[test]
    fn bounded_by_age_and_count_and_keyed_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cache.json");
        let keys = vec!["k1".to_string(), "k2".to_string()];
        let mut c = Cache::open(&path, 2, Duration::from_secs(100));
        c.record(entry("d1", "k1", 1000), &keys, 1000).unwrap();
        c.record(entry("d2", "k1", 1001), &keys, 1001).unwrap();
        c.record(entry("d3", "k2", 1002), &keys, 1002).unwrap();
        let c = Cache::open(&path, 2, Duration::from_secs(100));
        assert_eq!(c.len(), 2);
        // The oldest went first.
        assert!(c.lookup("d1", "r/app", &["k1"], 1002).is_none());
        assert!(c.lookup("d2", "r/app", &["k1"], 1002).is_some());
        // Another repository, another key: no.
        assert!(c.lookup("d2", "r/other", &["k1"], 1002).is_none());
        assert!(c.lookup("d2", "r/app", &["k2"], 1002).is_none());
        // Too old.
        assert!(c.lookup("d2", "r/app", &["k1"], 1101).is_none());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_removed_key_drops_its_entries_and_junk_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.json");
        let mut c = Cache::open(&path, 10, Duration::from_secs(100));
        c.record(entry("d1", "old", 10), &["old".into()], 10)
            .unwrap();
        c.record(entry("d2", "new", 11), &["new".into()], 11)
            .unwrap();
        let c = Cache::open(&path, 10, Duration::from_secs(100));
        assert_eq!(c.len(), 1);
        std::fs::write(&path, "{not json").unwrap();
        assert!(Cache::open(&path, 10, Duration::from_secs(100)).is_empty());
    }
}
