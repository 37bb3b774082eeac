//! Never going backwards: the order key of the last accepted bump of each
//! image lives in the config repo itself, in `.bump-manifest/state.json`,
//! so every runner (and every mode) sees the same history.
//!
//! ```json
//! {
//!   "version": 1,
//!   "images": {
//!     "docker.io/acme/sensor": {
//!       "order_key": "42",
//!       "reference": "docker.io/acme/sensor:1.3.0@sha256:…",
//!       "pipeline_url": "https://gitlab.example.com/acme/sensor/-/pipelines/981",
//!       "updated_at": "2026-11-26T07:00:00Z"
//!     }
//!   }
//! }
//! ```
//!
//! The key of an entry is the normalized image name; when `--path` limits
//! the bump to some directories (one environment), they are part of it
//! (`docker.io/acme/sensor @ overlays/prod`), so environments move on their
//! own. The file is rewritten whole (sorted keys, two-space JSON, final
//! newline) on the same commit as the manifests: a concurrent writer's
//! push is rejected and it re-reads the file on the new head.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use kit::{JobError, JobResult};
use serde::{Deserialize, Serialize};

/// Where the state lives, relative to the repo root.
pub const STATE_PATH: &str = ".bump-manifest/state.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    pub version: u32,
    #[serde(default)]
    pub images: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub order_key: String,
    pub reference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

impl State {
    pub fn parse(text: Option<&str>) -> JobResult<State> {
        match text {
            None => Ok(State {
                version: 1,
                images: BTreeMap::new(),
            }),
            Some(t) => serde_json::from_str(t).map_err(|e| {
                JobError::usage(format!(
                    "{STATE_PATH} in the config repo is not valid bump-manifest state: {e}"
                ))
            }),
        }
    }

    pub fn render(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// The state key of an image, scoped to the `--path` dirs when given.
pub fn scope_key(image_name: &str, paths: &[String]) -> String {
    if paths.is_empty() {
        return image_name.to_string();
    }
    let mut p: Vec<&str> = paths.iter().map(|s| s.trim_end_matches('/')).collect();
    p.sort();
    format!("{image_name} @ {}", p.join(","))
}

/// Compares order keys: both integers numerically, both versions (`v1.2.3`,
/// `1.2.3-rc.1`) by semver precedence; anything else cannot be compared.
pub fn compare_keys(a: &str, b: &str) -> Result<Ordering, String> {
    if let (Ok(x), Ok(y)) = (a.parse::<u128>(), b.parse::<u128>()) {
        return Ok(x.cmp(&y));
    }
    match (Version::parse(a), Version::parse(b)) {
        (Some(x), Some(y)) => Ok(x.cmp(&y)),
        _ => Err(format!(
            "order keys {a:?} and {b:?} cannot be compared: use integers (e.g. $CI_PIPELINE_IID) or versions (1.2.3) consistently"
        )),
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Version {
    core: Vec<u64>,
    pre: Vec<String>,
}

impl Version {
    fn parse(s: &str) -> Option<Version> {
        let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
        let s = s.split_once('+').map_or(s, |(v, _)| v);
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c, p.split('.').map(str::to_string).collect()),
            None => (s, Vec::new()),
        };
        let core: Option<Vec<u64>> = core.split('.').map(|p| p.parse().ok()).collect();
        let core = core?;
        if core.is_empty() || core.len() > 4 {
            return None;
        }
        Some(Version { core, pre })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.core.len().max(other.core.len());
        for i in 0..n {
            let (a, b) = (
                self.core.get(i).unwrap_or(&0),
                other.core.get(i).unwrap_or(&0),
            );
            match a.cmp(b) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        // A pre-release sorts before its release.
        match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            _ => {}
        }
        for (a, b) in self.pre.iter().zip(&other.pre) {
            let o = match (a.parse::<u64>(), b.parse::<u64>()) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                (Ok(_), Err(_)) => Ordering::Less,
                (Err(_), Ok(_)) => Ordering::Greater,
                _ => a.cmp(b),
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        self.pre.len().cmp(&other.pre.len())
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// What the state says about a new bump.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Proceed,
    /// A greater key is already deployed: (its key, its reference).
    Newer(String, String),
}

pub fn judge(state: &State, scope: &str, key: &str) -> JobResult<Verdict> {
    let Some(e) = state.images.get(scope) else {
        return Ok(Verdict::Proceed);
    };
    match compare_keys(&e.order_key, key).map_err(JobError::usage)? {
        Ordering::Greater => Ok(Verdict::Newer(e.order_key.clone(), e.reference.clone())),
        _ => Ok(Verdict::Proceed),
    }
}

/// RFC 3339 UTC time of now, for `updated_at`.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_numerically_and_by_semver() {
        assert_eq!(compare_keys("9", "10"), Ok(Ordering::Less));
        assert_eq!(compare_keys("v1.10.0", "1.9.9"), Ok(Ordering::Greater));
        assert_eq!(compare_keys("1.2.0-rc.1", "1.2.0"), Ok(Ordering::Less));
        assert_eq!(
            compare_keys("1.2.0-rc.2", "1.2.0-rc.10"),
            Ok(Ordering::Less)
        );
        assert_eq!(compare_keys("1.2", "1.2.0"), Ok(Ordering::Equal));
        assert!(compare_keys("main", "7").is_err());
    }

    #[test]
    fn judge_refuses_only_greater() {
        let mut s = State::parse(None).unwrap();
        assert_eq!(judge(&s, "img", "5").unwrap(), Verdict::Proceed);
        s.images.insert(
            "img".into(),
            Entry {
                order_key: "7".into(),
                reference: "img:7".into(),
                pipeline_url: None,
                updated_at: None,
            },
        );
        assert_eq!(
            judge(&s, "img", "6").unwrap(),
            Verdict::Newer("7".into(), "img:7".into())
        );
        assert_eq!(judge(&s, "img", "7").unwrap(), Verdict::Proceed);
        assert_eq!(judge(&s, "img", "8").unwrap(), Verdict::Proceed);
        assert_eq!(State::parse(Some(&s.render())).unwrap(), s);
        assert!(State::parse(Some("{")).is_err());
        assert_eq!(scope_key("a", &["b/".into(), "a".into()]), "a @ a,b");
    }

    #[test]
    fn time_format() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20"));
    }
}
