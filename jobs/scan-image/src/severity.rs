//! Severities as trivy reports them, and how each output format spells them.

use std::fmt;
use std::str::FromStr;

/// A finding's severity, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Unknown = 0,
    Low = 1,
    Medium = 2,
    High = 3,
    Critical = 4,
}

impl Severity {
    /// Worst first, for tables and counts.
    pub const WORST_FIRST: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Unknown,
    ];

    /// trivy's spelling (`HIGH`); anything else trivy might add is Unknown.
    pub fn from_trivy(s: &str) -> Severity {
        s.parse().unwrap_or(Severity::Unknown)
    }

    pub fn trivy(self) -> &'static str {
        match self {
            Severity::Unknown => "UNKNOWN",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }

    /// GitLab security report spelling (title case).
    pub fn gitlab(self) -> &'static str {
        match self {
            Severity::Unknown => "Unknown",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
        }
    }

    /// GitLab Code Quality severity (info/minor/major/critical/blocker), as
    /// trivy's own gitlab-codequality template maps them.
    pub fn codequality(self) -> &'static str {
        match self {
            Severity::Unknown | Severity::Low => "info",
            Severity::Medium => "minor",
            Severity::High => "major",
            Severity::Critical => "critical",
        }
    }

    /// SARIF result level, as trivy's SARIF writer maps them.
    pub fn sarif_level(self) -> &'static str {
        match self {
            Severity::Critical | Severity::High => "error",
            Severity::Medium => "warning",
            Severity::Low | Severity::Unknown => "note",
        }
    }

    /// GitHub's `security-severity` when no CVSS score is known (trivy's values).
    pub fn default_score(self) -> f64 {
        match self {
            Severity::Critical => 9.5,
            Severity::High => 8.0,
            Severity::Medium => 5.5,
            Severity::Low => 2.0,
            Severity::Unknown => 0.0,
        }
    }

    pub fn lower(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.trivy())
    }
}

impl FromStr for Severity {
    type Err = String;
    /// Case-insensitive: `HIGH`, `High` and `high` all parse (GitLab documents
    /// `CS_SEVERITY_THRESHOLD=HIGH`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "unknown" => Ok(Severity::Unknown),
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            other => Err(format!(
                "{other:?} is not a severity: use unknown, low, medium, high or critical"
            )),
        }
    }
}

/// The gate: fail when a finding at or above this level remains, or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOn {
    Never,
    AtOrAbove(Severity),
}

impl FailOn {
    pub fn trips(self, s: Severity) -> bool {
        matches!(self, FailOn::AtOrAbove(level) if s >= level)
    }
}

impl fmt::Display for FailOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailOn::Never => f.write_str("none"),
            FailOn::AtOrAbove(s) => f.write_str(s.lower()),
        }
    }
}

impl FromStr for FailOn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "never" | "off" => Ok(FailOn::Never),
            other => other.parse().map(FailOn::AtOrAbove).map_err(|_| {
                format!(
                    "{s:?} is not a gate level: use none, unknown, low, medium, high or critical"
                )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_case_insensitive_and_order() {
        assert_eq!("HIGH".parse::<Severity>(), Ok(Severity::High));
        assert_eq!("high".parse::<Severity>(), Ok(Severity::High));
        assert!(Severity::Critical > Severity::High && Severity::Low > Severity::Unknown);
        assert!("severe".parse::<Severity>().is_err());
        assert_eq!(Severity::from_trivy("NEGLIGIBLE"), Severity::Unknown);
    }

    #[test]
    fn gate_levels() {
        assert_eq!("None".parse::<FailOn>(), Ok(FailOn::Never));
        let high: FailOn = "HIGH".parse().unwrap();
        assert!(
            high.trips(Severity::Critical)
                && high.trips(Severity::High)
                && !high.trips(Severity::Medium)
        );
        assert!(!FailOn::Never.trips(Severity::Critical));
        assert!(
            "loud"
                .parse::<FailOn>()
                .unwrap_err()
                .contains("none, unknown")
        );
    }
}
