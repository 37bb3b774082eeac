//! trivy's ignore files.
//!
//! `.trivyignore`: one id per line, `#` comments, optional `exp:YYYY-MM-DD`.
//! `.trivyignore.yaml`: `vulnerabilities: [{id, paths, purls, expired_at, statement}]`.
//! An entry whose `expired_at`/`exp:` date has passed stops suppressing; the
//! log names it so nobody is surprised when the finding comes back.

use std::path::Path;

use kit::{JobError, JobResult};
use serde::Deserialize;
use time::{Date, OffsetDateTime};

use super::{Reason, glob};
use crate::trivy::report::{Target, Vulnerability};

#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    /// Compiled `paths`; `None` when the entry has none (any path).
    pub paths: Option<globset::GlobSet>,
    pub purls: Vec<String>,
    pub expired_at: Option<Date>,
    pub statement: Option<String>,
}

#[derive(Debug, Default)]
pub struct IgnoreRules {
    file: String,
    active: Vec<Entry>,
    /// Entries past their date: kept only to be named in the log.
    pub expired: Vec<Entry>,
}

#[derive(Deserialize)]
struct YamlFile {
    #[serde(default)]
    vulnerabilities: Option<Vec<YamlEntry>>,
}

#[derive(Deserialize)]
struct YamlEntry {
    id: String,
    #[serde(default)]
    paths: Option<Vec<String>>,
    #[serde(default)]
    purls: Option<Vec<String>>,
    #[serde(default)]
    expired_at: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    statement: Option<String>,
}

impl IgnoreRules {
    /// Reads a `.trivyignore` (text) or `.trivyignore.yaml`/`.yml` (by extension).
    pub fn load(path: &Path, today: Date) -> JobResult<IgnoreRules> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            JobError::usage(format!("cannot read ignore file {}: {e}", path.display()))
        })?;
        let name = path.display().to_string();
        let yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        let entries = if yaml {
            parse_yaml(&text)
        } else {
            parse_text(&text)
        }
        .map_err(|e| e.context(format!("ignore file {name}")))?;
        Ok(Self::from_entries(name, entries, today))
    }

    pub fn from_entries(file: String, entries: Vec<Entry>, today: Date) -> IgnoreRules {
        let (expired, active) = entries
            .into_iter()
            .partition(|e| e.expired_at.is_some_and(|d| d < today));
        IgnoreRules {
            file,
            active,
            expired,
        }
    }

    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    pub fn check(&self, target: &Target<'_>, v: &Vulnerability<'_>) -> Option<Reason> {
        self.active
            .iter()
            .find(|e| e.matches(target, v))
            .map(|e| Reason::IgnoreFile {
                file: self.file.clone(),
                statement: e.statement.clone(),
            })
    }

    /// The expired entry that would have matched this finding, if any.
    pub fn expired_match(&self, target: &Target<'_>, v: &Vulnerability<'_>) -> Option<&Entry> {
        self.expired.iter().find(|e| e.matches(target, v))
    }
}

impl Entry {
    fn matches(&self, target: &Target<'_>, v: &Vulnerability<'_>) -> bool {
        if self.id != v.vulnerability_id {
            return false;
        }
        if let Some(paths) = &self.paths {
            let path = v
                .pkg_path
                .as_deref()
                .filter(|p| !p.is_empty())
                .unwrap_or(&target.target);
            if !glob::matches(paths, path) {
                return false;
            }
        }
        if !self.purls.is_empty() {
            let purl = v
                .pkg_identifier
                .as_ref()
                .and_then(|i| i.purl.as_deref())
                .unwrap_or("");
            if !self.purls.iter().any(|p| p == purl) {
                return false;
            }
        }
        true
    }
}

pub fn parse_text(text: &str) -> JobResult<Vec<Entry>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let id = parts.next().unwrap_or_default().to_string();
        let mut expired_at = None;
        for p in parts {
            match p.strip_prefix("exp:") {
                Some(d) => {
                    expired_at = Some(
                        parse_date(d)
                            .map_err(|e| JobError::usage(format!("line {}: {e}", n + 1)))?,
                    );
                }
                None => {
                    return Err(JobError::usage(format!(
                        "line {}: unexpected {p:?} after the id",
                        n + 1
                    )));
                }
            }
        }
        out.push(Entry {
            id,
            paths: None,
            purls: vec![],
            expired_at,
            statement: None,
        });
    }
    Ok(out)
}

pub fn parse_yaml(text: &str) -> JobResult<Vec<Entry>> {
    if text.trim().is_empty() {
        return Ok(vec![]);
    }
    let file: YamlFile = serde_yaml_ng::from_str(text)
        .map_err(|e| JobError::usage(format!("not a trivy ignore file: {e}")))?;
    file.vulnerabilities
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let expired_at = match e.expired_at {
                None | Some(serde_yaml_ng::Value::Null) => None,
                Some(serde_yaml_ng::Value::String(s)) => Some(
                    parse_date(&s)
                        .map_err(|why| JobError::usage(format!("entry {}: {why}", e.id)))?,
                ),
                Some(other) => {
                    return Err(JobError::usage(format!(
                        "entry {}: expired_at {other:?} is not a date",
                        e.id
                    )));
                }
            };
            let paths = match e.paths.filter(|p| !p.is_empty()) {
                None => None,
                Some(p) => Some(
                    glob::compile(&p)
                        .map_err(|why| JobError::usage(format!("entry {}: paths: {why}", e.id)))?,
                ),
            };
            Ok(Entry {
                id: e.id,
                paths,
                purls: e.purls.unwrap_or_default(),
                expired_at,
                statement: e.statement,
            })
        })
        .collect()
}

/// A date an ignore file gives that is not one.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a date (YYYY-MM-DD)")]
pub struct NotADate(String);

/// `2024-12-31` or an RFC 3339 time (its date is used).
fn parse_date(s: &str) -> Result<Date, NotADate> {
    let s = s.trim();
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = Date::parse(s.get(..10).unwrap_or(s), &fmt) {
        return Ok(d);
    }
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.date())
        .map_err(|_| NotADate(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn today() -> Date {
        Date::from_calendar_date(2026, time::Month::November, 26).unwrap()
    }

    fn vuln(id: &'static str, path: Option<&'static str>) -> Vulnerability<'static> {
        Vulnerability {
            vulnerability_id: Cow::Borrowed(id),
            pkg_path: path.map(Cow::Borrowed),
            ..Default::default()
        }
    }

    #[test]
    fn text_form_with_expiry() {
        let e =
            parse_text("# comment\nCVE-1\nCVE-2 exp:2020-01-01 # old\n\nGHSA-x exp:2099-01-01\n")
                .unwrap();
        let r = IgnoreRules::from_entries(".trivyignore".into(), e, today());
        let t = Target::default();
        assert!(r.check(&t, &vuln("CVE-1", None)).is_some());
        assert!(r.check(&t, &vuln("CVE-2", None)).is_none(), "expired");
        assert_eq!(
            r.expired_match(&t, &vuln("CVE-2", None)).unwrap().id,
            "CVE-2"
        );
        assert!(r.check(&t, &vuln("GHSA-x", None)).is_some());
        assert!(
            parse_text("CVE-3 exp:someday")
                .unwrap_err()
                .message
                .contains("line 1")
        );
    }

    #[test]
    fn yaml_form_paths_and_statement() {
        let y = r#"
vulnerabilities:
  - id: CVE-2022-40897
    paths:
      - "usr/local/lib/python3.9/site-packages/setuptools-58.1.0.dist-info/METADATA"
    statement: Accept the risk
  - id: CVE-2023-2650
  - id: CVE-2023-3446
    expired_at: 2023-09-01
misconfigurations:
  - id: AVD-DS-0001
"#;
        let r = IgnoreRules::from_entries("x.yaml".into(), parse_yaml(y).unwrap(), today());
        let t = Target::default();
        let hit = r.check(
            &t,
            &vuln(
                "CVE-2022-40897",
                Some("usr/local/lib/python3.9/site-packages/setuptools-58.1.0.dist-info/METADATA"),
            ),
        );
        assert_eq!(
            hit,
            Some(Reason::IgnoreFile {
                file: "x.yaml".into(),
                statement: Some("Accept the risk".into())
            })
        );
        assert!(
            r.check(&t, &vuln("CVE-2022-40897", Some("other/METADATA")))
                .is_none()
        );
        assert!(r.check(&t, &vuln("CVE-2023-2650", None)).is_some());
        assert!(r.check(&t, &vuln("CVE-2023-3446", None)).is_none());
        assert_eq!(r.expired.len(), 1);
        assert!(
            parse_yaml("vulnerabilities: {")
                .unwrap_err()
                .message
                .contains("line")
        );
        assert!(parse_yaml("vulnerabilities:\n  - id: X\n    expired_at: tomorrow\n").is_err());
    }
}
