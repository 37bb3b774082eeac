//! Why a finding is not reported: `--ignore-unfixed`, GitLab's
//! `vulnerability-allowlist.yml`, trivy's ignore files. Suppressed findings
//! are counted and listed in the log, never silently dropped.

pub mod allowlist;
pub mod glob;
pub mod ignorefile;

use std::fmt;

use crate::trivy::report::{Target, Vulnerability};

pub use allowlist::Allowlist;
pub use ignorefile::IgnoreRules;

/// The rule that suppressed a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// `--ignore-unfixed` and no fixed version exists.
    Unfixed,
    /// An allowlist entry; `scope` is `generalallowlist` or the image key.
    Allowlist { scope: String, note: Option<String> },
    /// An ignore-file entry, with its statement if it has one.
    IgnoreFile {
        file: String,
        statement: Option<String>,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Unfixed => f.write_str("unfixed (--ignore-unfixed)"),
            Reason::Allowlist {
                scope,
                note: Some(n),
            } => write!(f, "allowlist {scope}: {n}"),
            Reason::Allowlist { scope, note: None } => write!(f, "allowlist {scope}"),
            Reason::IgnoreFile {
                file,
                statement: Some(s),
            } => write!(f, "{file}: {s}"),
            Reason::IgnoreFile {
                file,
                statement: None,
            } => write!(f, "{file}"),
        }
    }
}

/// Every suppression source of one run.
#[derive(Debug, Default)]
pub struct Suppressions {
    pub ignore_unfixed: bool,
    pub allowlist: Option<Allowlist>,
    pub ignore: Option<IgnoreRules>,
}

impl Suppressions {
    /// The first rule that suppresses this finding, if any.
    pub fn check(&self, target: &Target<'_>, v: &Vulnerability<'_>) -> Option<Reason> {
        if self.ignore_unfixed && v.fixed().is_none() {
            return Some(Reason::Unfixed);
        }
        if let Some(r) = self.ignore.as_ref().and_then(|i| i.check(target, v)) {
            return Some(r);
        }
        self.allowlist
            .as_ref()
            .and_then(|a| a.check(&v.vulnerability_id))
    }
}
