//! One run: obtain trivy's JSON (run trivy, or take the recorded report),
//! classify every finding, write every report, log, write the dotenv file,
//! apply the gate.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use kit::env::Env;
use kit::job::Outcome;
use kit::joblog;
use time::OffsetDateTime;

use crate::config::{Config, Source, TrivySettings};
use crate::error::Error;
use crate::finding::{Finding, Key};
use crate::report::codequality::CodeQualityWriter;
use crate::report::gitlab::GitlabWriter;
use crate::report::junit::JunitWriter;
use crate::report::sarif::SarifWriter;
use crate::report::{DockerfileLocation, ScanContext};
use crate::severity::{FailOn, Severity};
use crate::summary::{Counts, Row};
use crate::suppress::Suppressions;
use crate::trivy::report::{self, Header, Target, Vulnerability};
use crate::trivy::runner::{self, Sandbox};
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Reported { rule: u32 },
    BelowThreshold,
    Suppressed,
    Duplicate,
}

#[derive(Debug, Clone, Copy)]
struct Verdict {
    class: Class,
    severity: Severity,
    key: Key,
}

/// Says that findings come from a recorded report, not from a scan now, and
/// warns when that report is of another image than IMAGE.
fn note_recorded_report(path: &std::path::Path, header: &report::Header<'_>, image: Option<&str>) {
    let artifact = header
        .artifact_name
        .as_deref()
        .unwrap_or("an unnamed artifact");
    joblog::info(format!(
        "using the recorded trivy report {} (of {artifact}); trivy is not run",
        path.display()
    ));
    let digest = |r: &str| r.rsplit_once('@').map(|(_, d)| d.to_string());
    if let Some(image) = image
        && digest(image) != digest(artifact)
    {
        joblog::warn(format!(
            "the recorded report is of {artifact}, not of {image}: its findings describe that image"
        ));
    }
}

/// Runs the job: `Refused` when the gate trips (reports and dotenv are
/// written first). When trivy fails, the GitLab report is still written,
/// with `scan.status: failure` and the cause.
pub fn run(config: &Config, env: &dyn Env) -> Result<Outcome, Error> {
    let started = OffsetDateTime::now_utc();
    let sandbox = Sandbox::new()?;
    let scanned: Vec<u8>;
    let (bytes, json_path, from_trivy): (&[u8], std::path::PathBuf, bool) = match &config.source {
        Source::Recorded { path, bytes } => (bytes, path.clone(), false),
        Source::Trivy(settings) => {
            let out = sandbox.path().join("trivy.json");
            let result = run_trivy(config, settings, &sandbox, env, &out).and_then(|()| {
                std::fs::read(&out).map_err(|source| Error::ReadOutput {
                    path: out.clone(),
                    source,
                })
            });
            scanned = match result {
                Ok(b) => b,
                Err(e) => {
                    write_failure_report(config, started, &e);
                    return Err(e);
                }
            };
            (&scanned, out, true)
        }
    };
    let finished = OffsetDateTime::now_utc();
    let bad_report = |e: report::ReportError| {
        if from_trivy {
            Error::TrivyOutput(e)
        } else {
            Error::RecordedReport {
                path: json_path.clone(),
                source: e,
            }
        }
    };
    let header = match report::read_header(bytes) {
        Ok(h) => h,
        Err(e) => {
            let e = bad_report(e);
            if from_trivy {
                write_failure_report(config, started, &e);
            }
            return Err(e);
        }
    };
    if !from_trivy {
        note_recorded_report(&json_path, &header, config.image.as_deref());
    }
    let mut ctx = context(
        config,
        &header,
        if from_trivy {
            started
        } else {
            created_at(&header).unwrap_or(started)
        },
        finished,
    );
    ctx.run_seconds = (finished - started).as_seconds_f64();

    let mut sarif = config
        .outputs
        .sarif
        .as_ref()
        .map(|p| SarifWriter::create(p, &ctx))
        .transpose()?;
    let classified = classify(bytes, config, sarif.as_mut(), &bad_report)?;
    let written = write_reports(config, bytes, &ctx, &classified, sarif)?;
    let counts = classified.1;
    if let Some(sbom) = &config.outputs.sbom {
        write_sbom(config, &sandbox, env, &json_path, sbom, from_trivy)?;
    }

    let title = format!(
        "scan-image: {} ({}), trivy {}",
        ctx.image,
        ctx.operating_system,
        ctx.trivy_version.as_deref().unwrap_or("version unknown")
    );
    counts.log(&title, config.fail_on, config.severity_threshold);
    joblog::info(format!("reports written: {}", written.join(", ")));
    counts.write_dotenv(
        &config.outputs.dotenv,
        config.image.as_deref(),
        config.fail_on,
        config.severity_threshold,
    )?;
    Ok(gate(&counts, config.fail_on))
}

fn gate(counts: &Counts, fail_on: FailOn) -> Outcome {
    let FailOn::AtOrAbove(level) = fail_on else {
        return Outcome::Done;
    };
    let n = counts.total_over_gate();
    if n == 0 {
        return Outcome::Done;
    }
    let mut ids: Vec<&str> = Vec::new();
    for r in counts.gate_rows.iter().rev().flatten() {
        if !ids.contains(&r.id.as_str()) {
            ids.push(&r.id);
        }
    }
    let first: Vec<&str> = ids.iter().take(3).copied().collect();
    let more = if ids.len() > 3 {
        format!(" and {} more", ids.len() - 3)
    } else {
        String::new()
    };
    Outcome::Refused(format!(
        "{n} finding(s) at or above {level} ({}{more}); fix them, or suppress with --allowlist/--ignore-file, or raise --fail-on",
        first.join(", ")
    ))
}

fn run_trivy(
    config: &Config,
    settings: &TrivySettings,
    sandbox: &Sandbox,
    env: &dyn Env,
    out: &Path,
) -> Result<(), Error> {
    let image = config.image.as_deref().expect("a trivy run has an image");
    if let Some((_, source)) = &settings.credentials {
        joblog::info(format!(
            "registry credentials for {} from {source}",
            settings.image.registry
        ));
    }
    if settings.insecure {
        joblog::warn(format!(
            "trivy runs with --insecure: {} and every registry trivy downloads from in this run are insecure-listed",
            settings.image.registry
        ));
    }
    joblog::info(format!("running trivy on {image}"));
    runner::ImageScan {
        program: &config.trivy,
        image,
        platform: settings.platform.as_deref(),
        insecure: settings.insecure,
        credentials: settings.credentials.as_ref().map(|(c, _)| c),
        list_all_pkgs: config.outputs.sbom.is_some(),
        timeout: config.timeout,
        output: out,
        config: &sandbox.config(),
        ignore_file: &sandbox.ignore_file(),
        db: &settings.db,
    }
    .run(sandbox, env)
}

/// When trivy fails, GitLab still gets a report that says the scan failed,
/// and why.
fn write_failure_report(config: &Config, started: OffsetDateTime, e: &Error) {
    let ctx = ScanContext {
        image: config.image.clone().unwrap_or_else(|| "unknown".into()),
        operating_system: "Unknown".into(),
        default_branch_image: None,
        dockerfile: None,
        started,
        finished: OffsetDateTime::now_utc(),
        run_seconds: (OffsetDateTime::now_utc() - started).as_seconds_f64(),
        trivy_version: None,
        success: false,
        failure_message: Some(kit::job::cause_line(e)),
    };
    if let Ok(w) = GitlabWriter::create(&config.outputs.gitlab_report, &ctx) {
        let _ = w.finish();
    }
}

fn created_at(h: &Header<'_>) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(
        h.created_at.as_deref()?,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()
}

fn context(
    config: &Config,
    h: &Header<'_>,
    started: OffsetDateTime,
    finished: OffsetDateTime,
) -> ScanContext {
    let image = config
        .image
        .clone()
        .or_else(|| h.artifact_name.as_deref().map(str::to_string))
        .filter(|i| !i.trim().is_empty())
        .unwrap_or_else(|| "unknown".into());
    ScanContext {
        image,
        operating_system: h.operating_system().unwrap_or_else(|| "Unknown".into()),
        default_branch_image: config.default_branch_image.clone(),
        dockerfile: config.dockerfile.as_deref().map(DockerfileLocation::find),
        started: started.min(finished),
        finished,
        run_seconds: 0.0,
        trivy_version: h
            .trivy
            .as_ref()
            .and_then(|t| t.version.as_deref())
            .map(str::to_string),
        success: true,
        failure_message: None,
    }
}

fn row(t: &Target<'_>, v: &Vulnerability<'_>, severity: Severity, reason: String) -> Row {
    let place = if t.is_os() {
        format!("{} packages", t.kind)
    } else {
        v.pkg_path
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or(&t.target)
            .to_string()
    };
    Row {
        severity,
        id: v.vulnerability_id.to_string(),
        package: v.pkg_name.to_string(),
        installed: v.installed_version.to_string(),
        fixed: v.fixed().unwrap_or("").to_string(),
        place,
        reason,
    }
}

type Classified = (Vec<Verdict>, Counts);

/// First pass: decide what each finding is, count, number the SARIF rules,
/// and write each rule at the first finding of its id (so SARIF needs no
/// pass of its own).
fn classify(
    bytes: &[u8],
    config: &Config,
    mut sarif: Option<&mut SarifWriter<'_>>,
    bad_report: &dyn Fn(report::ReportError) -> Error,
) -> Result<Classified, Error> {
    let sup = &config.suppressions;
    let mut verdicts = Vec::new();
    let mut counts = Counts::default();
    let mut seen: HashSet<Key> = HashSet::new();
    let mut seen_exact: HashSet<Key> = HashSet::new();
    let mut rules: HashMap<String, u32> = HashMap::new();
    let mut failure: Option<Error> = None;
    report::for_each_vulnerability(bytes, &mut |t: &Target<'_>, v: Vulnerability<'_>| {
        let severity = Severity::from_trivy(&v.severity);
        // The same entry twice is one finding; the same id, package and place
        // at another version is another one, with an id of its own.
        let exact = Key::of(t, &v, Some(&v.installed_version));
        if !seen_exact.insert(exact) {
            counts.duplicates += 1;
            verdicts.push(Verdict {
                class: Class::Duplicate,
                severity,
                key: exact,
            });
            return Ok(());
        }
        let base = Key::of(t, &v, None);
        let key = if seen.insert(base) { base } else { exact };
        let class = if let Some(reason) = sup.check(t, &v) {
            counts.add_suppressed_row(row(t, &v, severity, reason.to_string()));
            Class::Suppressed
        } else {
            if let Some(e) = sup.ignore.as_ref().and_then(|i| i.expired_match(t, &v))
                && counts.expired_hits.len() < 20
            {
                counts.expired_hits.push(format!(
                    "{} in {} is reported again: its ignore entry expired on {}",
                    v.vulnerability_id,
                    v.pkg_name,
                    e.expired_at.map(|d| d.to_string()).unwrap_or_default()
                ));
            }
            if config.fail_on.trips(severity) {
                counts.add_gate_row(row(t, &v, severity, String::new()));
            }
            if severity >= config.severity_threshold {
                counts.reported[severity as usize] += 1;
                let next = rules.len() as u32;
                let rule = *rules.entry(v.vulnerability_id.to_string()).or_insert(next);
                if rule == next
                    && let Some(w) = sarif.as_mut()
                {
                    let f = Finding {
                        target: t,
                        vuln: &v,
                        severity,
                        key,
                        rule_index: rule,
                    };
                    if let Err(e) = w.add_rule(&f) {
                        failure = Some(e.into());
                        return Err("write failed".into());
                    }
                }
                Class::Reported { rule }
            } else {
                counts.below_threshold[severity as usize] += 1;
                Class::BelowThreshold
            }
        };
        verdicts.push(Verdict {
            class,
            severity,
            key,
        });
        Ok(())
    })
    .map_err(|e| failure.take().unwrap_or_else(|| bad_report(e)))?;
    Ok((verdicts, counts))
}

/// Second pass: stream every finding into every report.
fn write_reports(
    config: &Config,
    bytes: &[u8],
    ctx: &ScanContext,
    classified: &Classified,
    mut sarif: Option<SarifWriter<'_>>,
) -> Result<Vec<String>, Error> {
    let sup: &Suppressions = &config.suppressions;
    let out = &config.outputs;
    let (verdicts, counts) = classified;
    let mut gitlab = GitlabWriter::create(&out.gitlab_report, ctx)?;
    let mut cq = out
        .codequality
        .as_ref()
        .map(|p| CodeQualityWriter::create(p, ctx))
        .transpose()?;
    let mut junit = out
        .junit
        .as_ref()
        .map(|p| JunitWriter::create(p, ctx, counts.total_reported(), counts.total_suppressed()))
        .transpose()?;
    let mut i = 0;
    let mut failure: Option<Error> = None;
    report::for_each_vulnerability(bytes, &mut |t: &Target<'_>, v: Vulnerability<'_>| {
        let verdict = verdicts[i];
        i += 1;
        let finding = |rule_index| Finding {
            target: t,
            vuln: &v,
            severity: verdict.severity,
            key: verdict.key,
            rule_index,
        };
        let mut step = || -> Result<(), Error> {
            match verdict.class {
                Class::Reported { rule } => {
                    let f = finding(rule);
                    gitlab.add(&f)?;
                    if let Some(w) = sarif.as_mut() {
                        w.add_result(&f)?;
                    }
                    if let Some(w) = cq.as_mut() {
                        w.add(&f)?;
                    }
                    if let Some(w) = junit.as_mut() {
                        w.add_failure(&f)?;
                    }
                }
                Class::Suppressed => {
                    if let Some(w) = junit.as_mut() {
                        let reason = sup.check(t, &v).map(|r| r.to_string()).unwrap_or_default();
                        w.add_skipped(&finding(0), &reason)?;
                    }
                }
                Class::BelowThreshold | Class::Duplicate => {}
            }
            Ok(())
        };
        step().map_err(|e| {
            failure = Some(e);
            "write failed".to_string()
        })
    })
    .map_err(|e| failure.take().unwrap_or(Error::TrivyOutput(e)))?;
    gitlab.finish()?;
    let mut written = vec![out.gitlab_report.display().to_string()];
    for (done, path) in [
        (sarif.map(SarifWriter::finish), &out.sarif),
        (cq.map(CodeQualityWriter::finish), &out.codequality),
        (junit.map(JunitWriter::finish), &out.junit),
    ] {
        if let (Some(result), Some(path)) = (done, path) {
            result?;
            written.push(path.display().to_string());
        }
    }
    Ok(written)
}

/// The SBOM comes from `trivy convert` of the very JSON the reports came from.
fn write_sbom(
    config: &Config,
    sandbox: &Sandbox,
    env: &dyn Env,
    json: &Path,
    sbom: &Path,
    from_trivy: bool,
) -> Result<(), Error> {
    let cannot = |e: &dyn std::fmt::Display| {
        Error::Kit(kit::JobError::usage(format!(
            "cannot write {}: {e}",
            sbom.display()
        )))
    };
    let dir = sbom
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".sbom.")
        .tempfile_in(dir)
        .map_err(|e| cannot(&e))?;
    let tmp_path = std::path::absolute(tmp.path()).map_err(|e| cannot(&e))?;
    match runner::convert_to_cyclonedx(&config.trivy, sandbox, env, json, &tmp_path, config.timeout)
    {
        Ok(()) => {
            tmp.persist(sbom).map_err(|e| cannot(&e.error))?;
            joblog::info(format!(
                "SBOM written: {} (CycloneDX, trivy convert)",
                sbom.display()
            ));
            Ok(())
        }
        Err(e @ Error::TrivyNotFound { .. }) if !from_trivy => {
            joblog::warn(format!(
                "--sbom needs trivy for `trivy convert`; no SBOM written ({e})"
            ));
            Ok(())
        }
        Err(e) => Err(e),
    }
}
