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

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

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
    pub fn parse(text: Option<&str>) -> Result<State> {
        match text {
            None => Ok(State {
                version: 1,
                images: BTreeMap::new(),
            }),
            Some(t) => serde_json::from_str(t).map_err(Error::BadState),
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
/// `1.2.3-rc.1`, `1.2` = `1.2.0`) by semver precedence (build metadata
/// ignored); anything else cannot be compared.
pub fn compare_keys(a: &str, b: &str) -> Result<Ordering> {
    if let (Ok(x), Ok(y)) = (a.parse::<u128>(), b.parse::<u128>()) {
        return Ok(x.cmp(&y));
    }
    match (version(a), version(b)) {
        (Some(x), Some(y)) => Ok(x.cmp_precedence(&y)),
        _ => Err(Error::IncomparableKeys {
            a: a.to_string(),
            b: b.to_string(),
        }),
    }
}

/// A version key: an optional `v`, then one to three numeric parts (the
/// missing ones are 0), then semver's pre-release and build parts.
fn version(s: &str) -> Option<semver::Version> {
    let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
    let split = s.find(['-', '+']).unwrap_or(s.len());
    let (core, rest) = s.split_at(split);
    let parts = core.split('.').count();
    if parts == 0 || parts > 3 {
        return None;
    }
    let padded = format!("{core}{}{rest}", ".0".repeat(3 - parts));
    semver::Version::parse(&padded).ok()
}

/// What the state says about a new bump.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Proceed,
    /// A greater key is already deployed: (its key, its reference).
    Newer(String, String),
}

pub fn judge(state: &State, scope: &str, key: &str) -> Result<Verdict> {
    let Some(e) = state.images.get(scope) else {
        return Ok(Verdict::Proceed);
    };
    match compare_keys(&e.order_key, key)? {
        Ordering::Greater => Ok(Verdict::Newer(e.order_key.clone(), e.reference.clone())),
        _ => Ok(Verdict::Proceed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_numerically_and_by_semver() {
        let c = |a, b| compare_keys(a, b).unwrap();
        assert_eq!(c("9", "10"), Ordering::Less);
        assert_eq!(c("v1.10.0", "1.9.9"), Ordering::Greater);
        assert_eq!(c("1.2.0-rc.1", "1.2.0"), Ordering::Less);
        assert_eq!(c("1.2.0-rc.2", "1.2.0-rc.10"), Ordering::Less);
        assert_eq!(c("1.2", "1.2.0"), Ordering::Equal);
        assert_eq!(c("1.2.0+build.7", "1.2.0"), Ordering::Equal);
        assert!(compare_keys("main", "7").is_err());
        assert!(compare_keys("1.2.3.4", "1.2.3").is_err());
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
}
