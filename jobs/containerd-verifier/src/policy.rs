//! The node's policy file (default `/etc/secdeliv/verify.yaml`): which
//! repositories need a signature from which keys.
//!
//! ```yaml
//! unmatched: allow          # images no scope matches: allow (default) or deny
//! timeout: 8s               # this verifier's own deadline; keep it under containerd's per_verifier_timeout (10s)
//! cache:                    # verified digests kept on the node
//!   max_entries: 1000
//!   max_age: 24h
//! scopes:
//!   - name: sensor-app
//!     repositories: ["registry.example.com/acme/**", "docker.io/acme/*"]
//!     keys: [/etc/secdeliv/keys/cosign.pub, /etc/secdeliv/keys/cosign-next.pub]
//! ```
//!
//! Globs match `registry/repository` as normalized from the image name
//! (`alpine` → `docker.io/library/alpine`): `*` stays inside one path
//! component, `**` crosses `/`. Every scope an image matches must be
//! satisfied (a signature valid for one of that scope's keys); keys of one
//! scope are alternatives (rotation).
//!
//! Fail closed, but only as far as the fault reaches: a scope with an unknown
//! field or an unreadable key refuses every pull it matches (its
//! `repositories` are still read to know which); a file that is not YAML,
//! an unknown top-level field, a bad glob or a scope without readable
//! `repositories` refuses every pull on the node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobBuilder, GlobMatcher};
use serde::Deserialize;
use sign_image::keys::PublicKey;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(8);
pub const DEFAULT_MAX_ENTRIES: usize = 1000;
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Unmatched {
    #[default]
    Allow,
    Deny,
}

/// The top level, strictly: an unknown field here refuses everything.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    unmatched: Unmatched,
    timeout: Option<String>,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    scopes: Vec<serde_yaml_ng::Value>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCache {
    max_entries: Option<usize>,
    max_age: Option<String>,
}

/// One scope, strictly.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScope {
    name: Option<String>,
    repositories: Vec<String>,
    keys: Vec<PathBuf>,
}

/// One scope, leniently: enough to know which pulls a broken scope refuses.
#[derive(Debug, Deserialize)]
struct ScopeRepositories {
    name: Option<String>,
    repositories: Vec<String>,
}

/// A key of a scope, loaded.
#[derive(Debug, Clone)]
pub struct ScopeKey {
    pub path: PathBuf,
    pub key: PublicKey,
    pub fingerprint: String,
}

/// A scope as the verifier uses it.
#[derive(Debug)]
pub struct Scope {
    pub name: String,
    matchers: Vec<GlobMatcher>,
    /// The keys, or why this scope refuses every pull it matches.
    pub keys: Result<Vec<ScopeKey>, ScopeError>,
}

impl Scope {
    pub fn matches(&self, repository: &str) -> bool {
        self.matchers.iter().any(|m| m.is_match(repository))
    }
}

#[derive(Debug)]
pub struct Policy {
    pub path: PathBuf,
    pub unmatched: Unmatched,
    pub timeout: Duration,
    pub max_entries: usize,
    pub max_age: Duration,
    pub scopes: Vec<Scope>,
}

/// Why the policy refuses every pull on the node.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("policy {}: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
}

/// Why one scope refuses every pull it matches.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error("policy scope {scope:?} lists no keys")]
    NoKeys { scope: String },
    #[error("policy scope {scope:?}: cannot read key {}: {source}", path.display())]
    ReadKey {
        scope: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("policy scope {scope:?}: {source}")]
    Key {
        scope: String,
        #[source]
        source: sign_image::keys::KeyError,
    },
    #[error(
        "policy {} scope {scope:?} is malformed ({reason}); every image it matches is refused",
        path.display()
    )]
    Malformed {
        path: PathBuf,
        scope: String,
        reason: String,
    },
}

fn glob(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    let g: Glob = GlobBuilder::new(pattern).literal_separator(true).build()?;
    Ok(g.compile_matcher())
}

fn duration(path: &Path, field: &str, s: &str) -> Result<Duration, PolicyError> {
    let malformed = |reason: String| PolicyError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let d = kit::duration::parse(s).map_err(|e| malformed(format!("{field}: {e}")))?;
    if d.is_zero() {
        return Err(malformed(format!("{field} must be more than 0")));
    }
    Ok(d)
}

fn load_key(scope: &str, base: &Path, path: &Path) -> Result<ScopeKey, ScopeError> {
    let full = if path.is_relative() {
        base.join(path)
    } else {
        path.to_path_buf()
    };
    let bytes = std::fs::read(&full).map_err(|source| ScopeError::ReadKey {
        scope: scope.to_string(),
        path: full.clone(),
        source,
    })?;
    let origin = full.display().to_string();
    let key = PublicKey::from_pem(&bytes, &origin).map_err(|source| ScopeError::Key {
        scope: scope.to_string(),
        source,
    })?;
    Ok(ScopeKey {
        path: full,
        fingerprint: key.fingerprint(),
        key,
    })
}

impl Policy {
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("/"));
        Self::parse(&text, path, base)
    }

    /// Parses the policy; relative key paths are taken from `base` (the
    /// policy's directory).
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Policy, PolicyError> {
        let malformed = |reason: String| PolicyError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let raw: RawPolicy = serde_yaml_ng::from_str(text).map_err(|e| malformed(e.to_string()))?;
        let timeout = match &raw.timeout {
            Some(t) => duration(path, "timeout", t)?,
            None => DEFAULT_TIMEOUT,
        };
        let max_age = match &raw.cache.max_age {
            Some(t) => duration(path, "cache.max_age", t)?,
            None => DEFAULT_MAX_AGE,
        };
        let mut scopes = Vec::new();
        for (i, value) in raw.scopes.into_iter().enumerate() {
            let label =
                |name: &Option<String>| name.clone().unwrap_or_else(|| format!("scopes[{i}]"));
            let (name, repositories, keys) =
                match serde_yaml_ng::from_value::<RawScope>(value.clone()) {
                    Ok(s) => {
                        let name = label(&s.name);
                        let keys = if s.keys.is_empty() {
                            Err(ScopeError::NoKeys {
                                scope: name.clone(),
                            })
                        } else {
                            s.keys
                                .iter()
                                .map(|k| load_key(&name, base, k))
                                .collect::<Result<Vec<_>, _>>()
                        };
                        (name, s.repositories, keys)
                    }
                    Err(strict) => {
                        let lenient: ScopeRepositories = serde_yaml_ng::from_value(value)
                            .map_err(|e| malformed(format!("scopes[{i}]: {e}")))?;
                        let name = label(&lenient.name);
                        let why = ScopeError::Malformed {
                            path: path.to_path_buf(),
                            scope: name.clone(),
                            reason: strict.to_string(),
                        };
                        (name, lenient.repositories, Err(why))
                    }
                };
            if repositories.is_empty() {
                return Err(malformed(format!("scope {name:?} lists no repositories")));
            }
            let matchers = repositories
                .iter()
                .map(|r| glob(r).map_err(|e| malformed(format!("scope {name:?}: {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            scopes.push(Scope {
                name,
                matchers,
                keys,
            });
        }
        Ok(Policy {
            path: path.to_path_buf(),
            unmatched: raw.unmatched,
            timeout,
            max_entries: raw.cache.max_entries.unwrap_or(DEFAULT_MAX_ENTRIES),
            max_age,
            scopes,
        })
    }

    /// The scopes `repository` (`registry/path`) falls in, in file order.
    pub fn scopes_for(&self, repository: &str) -> Vec<&Scope> {
        self.scopes
            .iter()
            .filter(|s| s.matches(repository))
            .collect()
    }

    /// Every key fingerprint the policy names (for pruning the cache).
    pub fn fingerprints(&self) -> BTreeMap<String, ()> {
        self.scopes
            .iter()
            .filter_map(|s| s.keys.as_ref().ok())
            .flatten()
            .map(|k| (k.fingerprint.clone(), ()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_key(dir: &Path, name: &str) -> String {
        let k = sign_image::keys::PrivateKey::generate().unwrap();
        std::fs::write(dir.join(name), k.public().to_pem()).unwrap();
        k.public().fingerprint()
    }

    fn parse(dir: &Path, text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(text, &dir.join("verify.yaml"), dir)
    }

    #[test]
    fn scopes_globs_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let fp = write_key(dir.path(), "a.pub");
        write_key(dir.path(), "b.pub");
        let p = parse(
            dir.path(),
            "scopes:\n  - name: apps\n    repositories: ['registry.example/acme/*', 'docker.io/team/**']\n    keys: [a.pub, b.pub]\n",
        )
        .unwrap();
        assert_eq!(p.unmatched, Unmatched::Allow);
        assert_eq!(p.timeout, DEFAULT_TIMEOUT);
        assert_eq!(p.scopes_for("registry.example/acme/app").len(), 1);
        // `*` stays in one path component.
        assert!(p.scopes_for("registry.example/acme/x/app").is_empty());
        assert_eq!(p.scopes_for("docker.io/team/a/b").len(), 1);
        assert!(p.scopes_for("docker.io/library/alpine").is_empty());
        let keys = p.scopes[0].keys.as_ref().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].fingerprint, fp);
    }

    #[test]
    fn an_unknown_field_in_a_scope_refuses_that_scope_only() {
        let dir = tempfile::tempdir().unwrap();
        write_key(dir.path(), "a.pub");
        let p = parse(
            dir.path(),
            "unmatched: deny\ntimeout: 3s\nscopes:\n  - name: typo\n    repositories: ['r.example/a']\n    keys: [a.pub]\n    key: b.pub\n  - repositories: ['r.example/b']\n    keys: [a.pub]\n",
        )
        .unwrap();
        assert_eq!(p.unmatched, Unmatched::Deny);
        assert_eq!(p.timeout, Duration::from_secs(3));
        let e = p.scopes_for("r.example/a")[0]
            .keys
            .as_ref()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("scope \"typo\" is malformed") && e.contains("unknown field `key`"),
            "{e}"
        );
        assert!(p.scopes_for("r.example/b")[0].keys.is_ok());
    }

    #[test]
    fn broken_files_refuse_everything() {
        let dir = tempfile::tempdir().unwrap();
        for (text, want) in [
            ("unmatchd: allow\n", "unknown field `unmatchd`"),
            (
                "scopes: [{keys: [a.pub]}]\n",
                "missing field `repositories`",
            ),
            (
                "scopes: [{repositories: ['a/[b'], keys: [a.pub]}]\n",
                "scope",
            ),
            ("timeout: 0s\n", "timeout must be more than 0"),
            ("cache: {max_age: soon}\n", "cache.max_age"),
            (": : :\n", "policy"),
        ] {
            let e = parse(dir.path(), text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_missing_key_refuses_its_scope() {
        let dir = tempfile::tempdir().unwrap();
        let p = parse(
            dir.path(),
            "scopes: [{name: s, repositories: ['r/a'], keys: [gone.pub]}]\n",
        )
        .unwrap();
        let e = p.scopes[0].keys.as_ref().unwrap_err().to_string();
        assert!(
            e.contains("cannot read key") && e.contains("gone.pub"),
            "{e}"
        );
    }
}
