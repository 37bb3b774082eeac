//! What the commands print: results on stdout (for scripts), the story on
//! stderr (the job log).

use kit::JobResult;
use kit::env::Env;
use kit::joblog;

use crate::ops;

/// Runs `sign` and prints one `NAME@DIGEST` line per signed digest on stdout.
pub async fn sign(opts: &ops::SignOptions, env: &dyn Env) -> JobResult<()> {
    let _section = joblog::Section::start(
        "sign_image_sign",
        &format!("sign-image sign {}", opts.image),
        false,
    );
    let report = ops::sign(opts, env).await?;
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
    Ok(())
}

/// Runs `verify`; prints the verified payloads as a JSON array on stdout,
/// as `cosign verify` does.
pub async fn verify(opts: &ops::VerifyOptions, env: &dyn Env) -> JobResult<()> {
    let _section = joblog::Section::start(
        "sign_image_verify",
        &format!("sign-image verify {}", opts.image),
        false,
    );
    let report = ops::verify(opts, env).await?;
    let rows: Vec<Vec<String>> = report
        .verdicts
        .iter()
        .map(|v| {
            vec![
                v.layer_digest.clone(),
                v.rejected.clone().unwrap_or_else(|| "verified".into()),
            ]
        })
        .collect();
    eprintln!(
        "{}",
        joblog::table(&["signature layer", "result"], &rows, 100)
    );
    joblog::info(format!(
        "{}@{}: {} of {} signature(s) valid for the key",
        report.image.name(),
        report.digest,
        report.verified.len(),
        report.verdicts.len()
    ));
    println!(
        "{}",
        serde_json::to_string(&report.verified).unwrap_or_default()
    );
    Ok(())
}

/// Runs `generate-key-pair` and says where the files went.
pub fn generate_key_pair(opts: &ops::GenerateOptions, env: &dyn Env) -> JobResult<()> {
    let (key, public, pk) = ops::generate_key_pair(opts, env)?;
    joblog::info(format!("Private key written to {}", key.display()));
    joblog::info(format!(
        "Public key written to {} ({})",
        public.display(),
        pk.fingerprint()
    ));
    Ok(())
}
