//! What the commands print: results on stdout (for scripts), the story on
//! stderr (the job log).

use std::path::Path;

use kit::joblog;

use crate::keys::PublicKey;
use crate::ops::{SignReport, VerifyReport};

/// One `NAME@DIGEST` line per signed digest on stdout; a summary in the log.
pub fn signed(report: &SignReport) {
    for s in &report.signed {
        println!("{}@{}", report.image.name(), s.digest);
    }
    let added = report.signed.iter().filter(|s| s.added).count();
    joblog::info(format!(
        "{} digest(s) signed ({} new, {} already signed); {} registry requests",
        report.signed.len(),
        added,
        report.signed.len() - added,
        report.stats.requests
    ));
}

/// A table of every signature layer with the reason it was accepted or
/// refused (stderr); when something verified, the verified payloads as a
/// JSON array on stdout, as `cosign verify` prints them.
pub fn verified(report: &VerifyReport) {
    if !report.verdicts.is_empty() {
        let rows: Vec<Vec<String>> = report
            .verdicts
            .iter()
            .map(|v| {
                vec![
                    v.layer_digest.clone(),
                    v.rejected
                        .as_ref()
                        .map_or_else(|| "verified".to_string(), ToString::to_string),
                ]
            })
            .collect();
        eprintln!(
            "{}",
            joblog::table(&["signature layer", "result"], &rows, 100)
        );
    }
    joblog::info(format!(
        "{}@{}: {} of {} signature(s) valid for the key",
        report.image.name(),
        report.digest,
        report.verified.len(),
        report.verdicts.len()
    ));
    if report.refusal.is_none() {
        println!(
            "{}",
            serde_json::to_string(&report.verified).unwrap_or_default()
        );
    }
}

/// Where generate-key-pair put the files.
pub fn generated(key: &Path, public: &Path, pk: &PublicKey) {
    joblog::info(format!("Private key written to {}", key.display()));
    joblog::info(format!(
        "Public key written to {} ({})",
        public.display(),
        pk.fingerprint()
    ));
}
