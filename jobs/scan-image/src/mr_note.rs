//! The merge-request note (`--mr-note`): what GitLab Free users see in the
//! merge request, since the security widget is Ultimate-only. Pure: reads
//! GitLab container-scanning reports (this run's, and the target branch's
//! last one as the baseline) into typed structs and renders the note.

use std::collections::HashSet;

use serde::Deserialize;

use crate::severity::{FailOn, Severity};
use crate::summary::Counts;

/// How many findings each list shows.
pub const MAX_LISTED: usize = 10;

/// A GitLab container-scanning report, as much as the note uses. `version`
/// and `vulnerabilities` are required: without them it is not a report.
#[derive(Debug, Clone, Deserialize)]
pub struct GitlabReport {
    pub version: String,
    pub vulnerabilities: Vec<ReportFinding>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReportFinding {
    #[serde(default)]
    pub name: String,
    pub severity: String,
    #[serde(default)]
    pub identifiers: Vec<Identifier>,
    pub location: Location,
    #[serde(default)]
    pub details: Details,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Identifier {
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Location {
    pub dependency: Dependency,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Dependency {
    pub package: Package,
    #[serde(default)]
    pub version: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Package {
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Details {
    pub fixed_version: Option<TextValue>,
    pub platforms: Option<TextValue>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TextValue {
    pub value: String,
}

/// Why a baseline is not a report.
#[derive(Debug, thiserror::Error)]
#[error("not a GitLab container-scanning report (it needs `version` and `vulnerabilities`): {0}")]
pub struct NotAReport(String);

impl GitlabReport {
    pub fn parse(bytes: &[u8]) -> Result<GitlabReport, NotAReport> {
        serde_json::from_slice(bytes).map_err(|e| NotAReport(e.to_string()))
    }
}

impl ReportFinding {
    /// The vulnerability id (CVE-…, GHSA-…), else the name.
    pub fn id(&self) -> &str {
        self.identifiers
            .first()
            .map(|i| i.value.as_str())
            .unwrap_or(&self.name)
    }

    /// What "the same finding" means across branches: the vulnerability in
    /// the package (the installed version may change without a fix).
    fn identity(&self) -> (String, String) {
        (
            self.id().to_string(),
            self.location.dependency.package.name.clone(),
        )
    }

    fn severity(&self) -> Severity {
        Severity::from_trivy(&self.severity)
    }
}

/// The baseline the note compares with.
#[derive(Debug, Clone)]
pub enum Baseline {
    /// A report (from `--baseline FILE`, or the target branch's last job).
    Report { what: String, report: GitlabReport },
    /// None yet (the target branch has no report), or none asked for.
    Missing(String),
}

/// Everything the note says.
pub struct NoteInput<'a> {
    pub marker: &'a str,
    pub image: &'a str,
    pub counts: &'a Counts,
    pub fail_on: FailOn,
    /// With `--fail-on-new` and a baseline: the new findings over the gate.
    pub new_over_gate: Option<u64>,
    pub platforms: &'a [String],
    pub current: &'a GitlabReport,
    pub baseline: &'a Baseline,
    /// A link to the job, when known.
    pub job_url: Option<&'a str>,
}

/// The findings of `current` at or above `level` that `baseline` does not
/// have (same vulnerability, same package), worst first.
pub fn new_at_or_above<'a>(
    current: &'a GitlabReport,
    baseline: &GitlabReport,
    level: Severity,
) -> Vec<&'a ReportFinding> {
    let before: HashSet<(String, String)> = baseline
        .vulnerabilities
        .iter()
        .map(|f| f.identity())
        .collect();
    let mut new: Vec<&ReportFinding> = current
        .vulnerabilities
        .iter()
        .filter(|f| f.severity() >= level && !before.contains(&f.identity()))
        .collect();
    worst_first(&mut new);
    new
}

/// `|`, `<`, `>` and line breaks neutralised for a Markdown table cell
/// (a finding's text is data: it must not close the table or the marker).
fn cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace(['\r', '\n'], " ")
}

fn worst_first(v: &mut [&ReportFinding]) {
    v.sort_by(|a, b| {
        b.severity()
            .cmp(&a.severity())
            .then_with(|| a.id().cmp(b.id()))
    });
}

fn table(rows: &[&ReportFinding], more: usize) -> String {
    let mut t = String::from(
        "| Severity | ID | Package | Installed | Fixed in | Platforms |\n|---|---|---|---|---|---|\n",
    );
    for f in rows.iter().take(MAX_LISTED) {
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            cell(&f.severity),
            cell(f.id()),
            cell(&f.location.dependency.package.name),
            cell(&f.location.dependency.version),
            cell(
                f.details
                    .fixed_version
                    .as_ref()
                    .map_or("none", |v| v.value.as_str())
            ),
            cell(
                f.details
                    .platforms
                    .as_ref()
                    .map_or("", |v| v.value.as_str())
            ),
        ));
    }
    let hidden = rows.len().saturating_sub(MAX_LISTED) + more;
    if hidden > 0 {
        t.push_str(&format!("\n… and {hidden} more in the job's reports.\n"));
    }
    t
}

/// The note's Markdown. The marker (an HTML comment, first line) is how a
/// re-run finds the note to edit.
pub fn render(n: &NoteInput<'_>) -> String {
    let c = n.counts;
    let over = c.total_over_gate();
    let verdict = match (n.fail_on, n.new_over_gate) {
        (FailOn::Never, _) => "gate off (`--fail-on none`)".to_string(),
        (FailOn::AtOrAbove(l), Some(0)) => {
            format!("gate **passed** (no new finding at or above {l}; `--fail-on-new`)")
        }
        (FailOn::AtOrAbove(l), Some(new)) => {
            format!("gate **failed**: {new} new finding(s) at or above {l} (`--fail-on-new`)")
        }
        (FailOn::AtOrAbove(l), None) if over == 0 => {
            format!("gate **passed** (nothing at or above {l})")
        }
        (FailOn::AtOrAbove(l), None) => {
            format!("gate **failed**: {over} finding(s) at or above {l}")
        }
    };
    let mut out = format!(
        "{}\n### Container scan of `{}`: {verdict}\n\n",
        n.marker,
        cell(n.image)
    );
    if !n.platforms.is_empty() {
        out.push_str(&format!(
            "Platforms scanned: {}\n\n",
            cell(&n.platforms.join(", "))
        ));
    }
    out.push_str("| Critical | High | Medium | Low | Unknown | Suppressed |\n|---:|---:|---:|---:|---:|---:|\n|");
    for s in Severity::WORST_FIRST {
        out.push_str(&format!(" {} |", c.remaining(s)));
    }
    out.push_str(&format!(" {} |\n\n", c.total_suppressed()));

    let current: Vec<&ReportFinding> = n.current.vulnerabilities.iter().collect();
    match n.baseline {
        Baseline::Report { what, report } => {
            let before: HashSet<(String, String)> = report
                .vulnerabilities
                .iter()
                .map(|f| f.identity())
                .collect();
            let now: HashSet<(String, String)> = current.iter().map(|f| f.identity()).collect();
            let mut new: Vec<&ReportFinding> = current
                .iter()
                .copied()
                .filter(|f| !before.contains(&f.identity()))
                .collect();
            let mut seen = HashSet::new();
            let mut fixed: Vec<&ReportFinding> = report
                .vulnerabilities
                .iter()
                .filter(|f| !now.contains(&f.identity()) && seen.insert(f.identity()))
                .collect();
            worst_first(&mut new);
            worst_first(&mut fixed);
            out.push_str(&format!(
                "**New** compared to {}: {}\n\n",
                cell(what),
                new.len()
            ));
            if !new.is_empty() {
                out.push_str(&table(&new, 0));
                out.push('\n');
            }
            out.push_str(&format!(
                "**Fixed** compared to {}: {}\n\n",
                cell(what),
                fixed.len()
            ));
            if !fixed.is_empty() {
                out.push_str(&table(&fixed, 0));
                out.push('\n');
            }
        }
        Baseline::Missing(why) => {
            out.push_str(&format!("New and fixed findings: {}\n\n", cell(why)));
        }
    }
    let mut worst = current.clone();
    worst_first(&mut worst);
    if worst.is_empty() {
        out.push_str("No finding is reported.\n");
    } else {
        out.push_str("**Worst findings**\n\n");
        out.push_str(&table(&worst, 0));
    }
    if let Some(u) = n.job_url {
        out.push_str(&format!("\n[The job and its reports]({u})\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str, pkg: &str, sev: &str, fixed: Option<&str>) -> ReportFinding {
        ReportFinding {
            name: id.into(),
            severity: sev.into(),
            identifiers: vec![Identifier { value: id.into() }],
            location: Location {
                dependency: Dependency {
                    package: Package { name: pkg.into() },
                    version: "1.0".into(),
                },
            },
            details: Details {
                fixed_version: fixed.map(|v| TextValue { value: v.into() }),
                platforms: None,
            },
        }
    }

    #[test]
    fn new_and_fixed_by_vulnerability_and_package_and_cells_escaped() {
        let current = GitlabReport {
            version: "15.2.1".into(),
            vulnerabilities: vec![
                finding("CVE-1", "openssl", "High", Some("3.0.14")),
                finding("CVE-2", "a|b<!--", "Critical", None),
            ],
        };
        let baseline = Baseline::Report {
            what: "`main`".into(),
            report: GitlabReport {
                version: "15.2.1".into(),
                vulnerabilities: vec![
                    finding("CVE-1", "openssl", "High", None),
                    finding("CVE-9", "zlib", "Low", None),
                ],
            },
        };
        let counts = Counts::default();
        let md = render(&NoteInput {
            marker: "<!-- m -->",
            image: "img",
            counts: &counts,
            fail_on: FailOn::Never,
            platforms: &[],
            current: &current,
            baseline: &baseline,
            job_url: None,
            new_over_gate: None,
        });
        assert!(md.starts_with("<!-- m -->\n"));
        assert!(md.contains("**New** compared to `main`: 1"), "{md}");
        assert!(md.contains("**Fixed** compared to `main`: 1"), "{md}");
        assert!(md.contains("a\\|b&lt;!--"), "{md}");
        assert_eq!(md.matches("<!--").count(), 1, "{md}");
        assert!(GitlabReport::parse(b"{\"SchemaVersion\":2}").is_err());
    }
}
