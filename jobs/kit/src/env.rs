//! Reading the process environment through one seam, so tests can supply a
//! fixed environment instead of mutating the real one.

use std::collections::HashMap;

/// A source of environment variables.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;

    /// The first of `names` that is set and not empty.
    fn first(&self, names: &[&str]) -> Option<String> {
        names
            .iter()
            .find_map(|n| self.var(n).filter(|v| !v.is_empty()))
    }
}

/// The real process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// A fixed environment for tests.
#[derive(Debug, Default, Clone)]
pub struct MapEnv(pub HashMap<String, String>);

impl MapEnv {
    pub fn new<const N: usize>(pairs: [(&str, &str); N]) -> Self {
        MapEnv(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
}

impl Env for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// Parses a boolean the way GitLab users write them: `true/false`, `1/0`,
/// `yes/no`, case-insensitive. Used as a clap value parser for env flags.
pub fn parse_bool(s: &str) -> Result<bool, NotABool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "on" => Ok(true),
        "false" | "0" | "no" | "n" | "off" | "" => Ok(false),
        other => Err(NotABool(other.to_string())),
    }
}

/// A value [`parse_bool`] does not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected true or false, got {0:?}")]
pub struct NotABool(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_skips_empty() {
        let env = MapEnv::new([("A", ""), ("B", "b")]);
        assert_eq!(env.first(&["A", "B"]).as_deref(), Some("b"));
        assert_eq!(env.first(&["C"]), None);
    }

    #[test]
    fn bools_like_gitlab() {
        assert_eq!(parse_bool("TRUE"), Ok(true));
        assert_eq!(parse_bool("0"), Ok(false));
        assert!(parse_bool("maybe").is_err());
    }
}
