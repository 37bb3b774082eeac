//! What the commands print: results on stdout (for scripts), the story on
//! stderr (the job log).

use std::path::Path;

use kit::joblog;

use crate::keys::PublicKey;
use crate::ops::{AttestReport, SignReport, VerifyReport};

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

/// A table of every signature found (format, digest, which key verified it
/// or why it was refused) on stderr; when something verified, the verified
/// payloads as a JSON array on stdout, as `cosign verify` prints them (the
/// simple-signing payload for the legacy format, the in-toto statement for
/// bundles).
pub fn verified(report: &VerifyReport) {
    if !report.verdicts.is_empty() {
        let rows: Vec<Vec<String>> = report
            .verdicts
            .iter()
            .map(|v| {
                vec![
                    v.format.to_string(),
                    v.digest.clone(),
                    match &v.result {
                        Ok(key) => format!("verified by key {key}"),
                        Err(why) => why.to_string(),
                    },
                ]
            })
            .collect();
        eprintln!(
            "{}",
            joblog::table(&["format", "signature", "result"], &rows, 100)
        );
    }
    joblog::info(format!(
        "{}@{}: {} of {} signature(s) valid for the key(s)",
        report.image.name(),
        report.digest,
        report.verified.len(),
        report.verdicts.len()
    ));
    if let Some(v) = report.verified.first() {
        joblog::info(format!(
            "verified: {} format, key {} ({})",
            v.format, v.key, v.key_fingerprint
        ));
    }
    if report.refusal.is_none() {
        let payloads: Vec<_> = report.verified.iter().map(|v| &v.payload).collect();
        println!("{}", serde_json::to_string(&payloads).unwrap_or_default());
    }
}

/// `NAME@DIGEST` on stdout; what happened in the log.
pub fn attested(report: &AttestReport) {
    println!("{}@{}", report.image.name(), report.digest);
    joblog::info(format!(
        "{}@{}: attestation of {} {}; {} registry requests",
        report.image.name(),
        report.digest,
        report.predicate_type,
        if report.added {
            "added"
        } else {
            "already there (same key and predicate): nothing pushed"
        },
        report.stats.requests
    ));
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
