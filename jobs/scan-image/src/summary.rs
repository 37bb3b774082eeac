//! What a run found, in numbers: the job-log summary and the dotenv file.

use std::path::Path;

use kit::JobResult;
use kit::dotenv::Dotenv;
use kit::joblog::{self, Section};

use crate::severity::{FailOn, Severity};

/// Rows kept for the log tables; the reports hold everything.
pub const MAX_ROWS: usize = 50;

/// A finding as a log table row.
#[derive(Debug, Clone)]
pub struct Row {
    pub severity: Severity,
    pub id: String,
    pub package: String,
    pub installed: String,
    pub fixed: String,
    pub place: String,
    /// Why it was suppressed (suppressed rows only).
    pub reason: String,
    /// The platforms it is on, comma-separated (empty: not an index).
    pub platforms: String,
}

impl Row {
    /// Severity, id, package and installed version, then `more`: a log table row.
    pub fn cells<const N: usize>(&self, more: [&String; N]) -> Vec<String> {
        [
            &self.severity.to_string(),
            &self.id,
            &self.package,
            &self.installed,
        ]
        .into_iter()
        .chain(more)
        .cloned()
        .collect()
    }
}

/// What was scanned, for the dotenv file (each comma-separated, in the
/// same platform order; empty when IMAGE is not an index).
#[derive(Debug, Default, Clone)]
pub struct Scanned {
    /// `SCAN_PLATFORMS_SCANNED`: linux/amd64,linux/arm64
    pub platforms: String,
    /// `SCAN_MANIFEST_DIGESTS`: the platform manifests' digests.
    pub digests: String,
    /// `SCAN_SBOM_FILES`: the CycloneDX SBOMs written.
    pub sboms: String,
    /// With `--fail-on-new` and a baseline: the new findings over the gate
    /// (`SCAN_NEW_OVER_GATE`); `SCAN_GATE` then follows them.
    pub new_over_gate: Option<u64>,
}

/// Counts per severity, indexed by `Severity as usize`.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub reported: [u64; 5],
    pub below_threshold: [u64; 5],
    pub suppressed: [u64; 5],
    pub duplicates: u64,
    /// Findings at or above the gate, per severity, and the first rows of each.
    pub over_gate: [u64; 5],
    pub gate_rows: [Vec<Row>; 5],
    pub suppressed_rows: Vec<Row>,
    /// Expired ignore entries that matched a finding (now reported).
    pub expired_hits: Vec<String>,
}

impl Counts {
    pub fn total_reported(&self) -> u64 {
        self.reported.iter().sum()
    }
    pub fn total_suppressed(&self) -> u64 {
        self.suppressed.iter().sum()
    }
    pub fn total_over_gate(&self) -> u64 {
        self.over_gate.iter().sum()
    }
    /// Findings that count for the gate: not suppressed, any severity.
    pub fn remaining(&self, s: Severity) -> u64 {
        self.reported[s as usize] + self.below_threshold[s as usize]
    }

    pub fn add_gate_row(&mut self, row: Row) {
        let i = row.severity as usize;
        self.over_gate[i] += 1;
        if self.gate_rows[i].len() < MAX_ROWS {
            self.gate_rows[i].push(row);
        }
    }

    pub fn add_suppressed_row(&mut self, row: Row) {
        self.suppressed[row.severity as usize] += 1;
        if self.suppressed_rows.len() < MAX_ROWS {
            self.suppressed_rows.push(row);
        }
    }

    /// Writes counts and the gate result for later jobs, and the image
    /// scanned (so a later job can check it acts on that very digest).
    pub fn write_dotenv(
        &self,
        path: &Path,
        image: Option<&str>,
        fail_on: FailOn,
        threshold: Severity,
        scanned: &Scanned,
    ) -> JobResult<()> {
        let mut d = Dotenv::new();
        if let Some(image) = image {
            d.set("SCAN_IMAGE", image)?;
        }
        for s in Severity::WORST_FIRST {
            d.set(&format!("SCAN_{}", s.trivy()), self.reported[s as usize])?;
        }
        d.set("SCAN_TOTAL", self.total_reported())?;
        d.set("SCAN_SUPPRESSED", self.total_suppressed())?;
        d.set("SCAN_OVER_GATE", self.total_over_gate())?;
        d.set("SCAN_FAIL_ON", fail_on)?;
        d.set("SCAN_SEVERITY_THRESHOLD", threshold.lower())?;
        let over = scanned.new_over_gate.unwrap_or(self.total_over_gate());
        d.set("SCAN_GATE", if over > 0 { "failed" } else { "passed" })?;
        if let Some(n) = scanned.new_over_gate {
            d.set("SCAN_NEW_OVER_GATE", n)?;
        }
        d.set("SCAN_PLATFORMS_SCANNED", &scanned.platforms)?;
        d.set("SCAN_MANIFEST_DIGESTS", &scanned.digests)?;
        d.set("SCAN_SBOM_FILES", &scanned.sboms)?;
        d.write(path)
    }

    /// The log: counts per severity, then the findings over the gate, worst
    /// first, then (collapsed) what was suppressed.
    pub fn log(&self, title: &str, fail_on: FailOn, threshold: Severity) {
        {
            let _s = Section::start("scan_summary", title, false);
            let rows: Vec<Vec<String>> = Severity::WORST_FIRST
                .iter()
                .map(|s| {
                    let i = *s as usize;
                    vec![
                        s.to_string(),
                        self.reported[i].to_string(),
                        self.below_threshold[i].to_string(),
                        self.suppressed[i].to_string(),
                    ]
                })
                .collect();
            joblog::info(
                joblog::table(
                    &["SEVERITY", "REPORTED", "BELOW THRESHOLD", "SUPPRESSED"],
                    &rows,
                    40,
                )
                .trim_end(),
            );
            if threshold > Severity::Unknown {
                joblog::info(format!(
                    "reports list findings at or above {threshold} (--severity-threshold); the gate counts all"
                ));
            }
            if self.duplicates > 0 {
                joblog::info(format!(
                    "{} duplicate entries in trivy's report were merged",
                    self.duplicates
                ));
            }
            for hit in &self.expired_hits {
                joblog::warn(hit);
            }
            match fail_on {
                FailOn::Never => joblog::info("gate: off (--fail-on none)"),
                FailOn::AtOrAbove(level) if self.total_over_gate() == 0 => joblog::info(format!(
                    "gate: passed, no finding at or above {level} (--fail-on {fail_on})"
                )),
                FailOn::AtOrAbove(level) => {
                    joblog::info(format!(
                        "gate: FAILED, {} finding(s) at or above {level} (--fail-on {fail_on})",
                        self.total_over_gate()
                    ));
                    let gate_rows = || self.gate_rows.iter().rev().flatten();
                    let on_platforms = gate_rows().any(|r| !r.platforms.is_empty());
                    let rows: Vec<Vec<String>> = gate_rows()
                        .map(|r| match on_platforms {
                            true => r.cells([&r.fixed, &r.place, &r.platforms]),
                            false => r.cells([&r.fixed, &r.place]),
                        })
                        .collect();
                    let headers = [
                        "SEVERITY",
                        "ID",
                        "PACKAGE",
                        "INSTALLED",
                        "FIXED IN",
                        "WHERE",
                        "PLATFORMS",
                    ];
                    let headers = &headers[..if on_platforms { 7 } else { 6 }];
                    joblog::info(joblog::table(headers, &rows, 60).trim_end());
                    let shown = rows.len() as u64;
                    if shown < self.total_over_gate() {
                        joblog::info(format!(
                            "… and {} more in the reports",
                            self.total_over_gate() - shown
                        ));
                    }
                }
            }
        }
        if self.total_suppressed() > 0 {
            let _s = Section::start(
                "scan_suppressed",
                &format!("{} suppressed finding(s)", self.total_suppressed()),
                true,
            );
            let mut rows: Vec<&Row> = self.suppressed_rows.iter().collect();
            rows.sort_by_key(|r| std::cmp::Reverse(r.severity));
            let rows: Vec<Vec<String>> = rows.iter().map(|r| r.cells([&r.reason])).collect();
            joblog::info(
                joblog::table(
                    &["SEVERITY", "ID", "PACKAGE", "INSTALLED", "SUPPRESSED BY"],
                    &rows,
                    100,
                )
                .trim_end(),
            );
            let shown = rows.len() as u64;
            if shown < self.total_suppressed() {
                joblog::info(format!("… and {} more", self.total_suppressed() - shown));
            }
        }
    }
}
