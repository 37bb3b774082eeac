//! One run: obtain trivy's JSON (run trivy, or read a file), classify every
//! finding, write every report, log, write the dotenv file, apply the gate.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use kit::credentials::{self, Credentials};
use kit::env::Env;
use kit::fsutil::AtomicFile;
use kit::joblog;
use kit::reference::ImageRef;
use kit::{ExitKind, JobError, JobResult};
use time::OffsetDateTime;

use crate::cli::Args;
use crate::finding::{Finding, Key};
use crate::report::codequality::CodeQualityWriter;
use crate::report::gitlab::GitlabWriter;
use crate::report::junit::JunitWriter;
use crate::report::sarif::SarifWriter;
use crate::report::{DockerfileLocation, ScanContext};
use crate::severity::{FailOn, Severity};
use crate::summary::{Counts, Row};
use crate::suppress::{Allowlist, IgnoreRules, Suppressions};
use crate::trivy::report::{self, Header, Target, Vulnerability};
use crate::trivy::runner;

/// What became of one finding, in document order.
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

/// Runs the job. `Err` with [`ExitKind::Policy`] means the gate tripped
/// (reports and dotenv are written first).
pub fn run(args: &Args, env: &dyn Env) -> JobResult<()> {
    let started = OffsetDateTime::now_utc();
    if args.image.is_none() && args.trivy_report.is_none() {
        return Err(JobError::usage(
            "nothing to scan: give IMAGE (or CS_IMAGE), or --trivy-report FILE",
        ));
    }
    check_outputs_writable(args)?;
    let suppressions = load_suppressions(args)?;

    let workdir = tempfile::tempdir()
        .map_err(|e| JobError::usage(format!("cannot create a temp directory: {e}")))?;
    let (json_path, from_trivy) = match &args.trivy_report {
        Some(p) => (p.clone(), false),
        None => {
            let out = workdir.path().join("trivy.json");
            if let Err(e) = run_trivy(args, env, &out, workdir.path()) {
                write_failure_report(args, started, &e);
                return Err(e);
            }
            (out, true)
        }
    };
    let finished = OffsetDateTime::now_utc();
    let bytes = std::fs::read(&json_path).map_err(|e| {
        JobError::usage(format!(
            "cannot read trivy report {}: {e}",
            json_path.display()
        ))
    })?;
    let origin = if from_trivy {
        "trivy wrote a report that is".to_string()
    } else {
        format!("{} is", json_path.display())
    };
    let bad_report = |e: report::ReportError| {
        let kind = if from_trivy {
            ExitKind::Remote
        } else {
            ExitKind::Usage
        };
        JobError::new(kind, format!("{origin} {e}"))
    };
    let header = report::read_header(&bytes).map_err(bad_report)?;
    if !from_trivy {
        note_recorded_report(&json_path, &header, args.image.as_deref());
    }
    let mut ctx = context(
        args,
        &header,
        if from_trivy {
            started
        } else {
            created_at(&header).unwrap_or(started)
        },
        finished,
    );
    ctx.run_seconds = (finished - started).as_seconds_f64();

    let mut sarif = args
        .sarif
        .as_ref()
        .map(|p| SarifWriter::create(p, &ctx))
        .transpose()?;
    let classified = classify(&bytes, args, &suppressions, sarif.as_mut(), &bad_report)?;
    let written = write_reports(args, &bytes, &ctx, &classified, sarif, &suppressions)?;
    let counts = classified.1;
    if let Some(sbom) = &args.sbom {
        write_sbom(args, &json_path, sbom, from_trivy)?;
    }

    let title = format!(
        "scan-image: {} ({}), trivy {}",
        ctx.image,
        ctx.operating_system,
        ctx.trivy_version.as_deref().unwrap_or("version unknown")
    );
    counts.log(&title, args.fail_on, args.severity_threshold);
    joblog::info(format!("reports written: {}", written.join(", ")));
    counts.write_dotenv(
        &args.dotenv,
        args.image.as_deref(),
        args.fail_on,
        args.severity_threshold,
    )?;
    gate(&counts, args.fail_on)
}

fn gate(counts: &Counts, fail_on: FailOn) -> JobResult<()> {
    let FailOn::AtOrAbove(level) = fail_on else {
        return Ok(());
    };
    let n = counts.total_over_gate();
    if n == 0 {
        return Ok(());
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
    Err(JobError::policy(format!(
        "{n} finding(s) at or above {level} ({}{more}); fix them, or suppress with --allowlist/--ignore-file, or raise --fail-on",
        first.join(", ")
    )))
}

/// Fails before any work when a report cannot be written where asked.
fn check_outputs_writable(args: &Args) -> JobResult<()> {
    let paths = [
        Some(&args.gitlab_report),
        args.sarif.as_ref(),
        args.codequality.as_ref(),
        args.junit.as_ref(),
        args.sbom.as_ref(),
        Some(&args.dotenv),
    ];
    for p in paths.into_iter().flatten() {
        drop(AtomicFile::create(p)?);
    }
    Ok(())
}

fn load_suppressions(args: &Args) -> JobResult<Suppressions> {
    let today = OffsetDateTime::now_utc().date();
    let allowlist_path = args.allowlist.clone().or_else(|| {
        let p = PathBuf::from("vulnerability-allowlist.yml");
        p.is_file().then_some(p)
    });
    let image_for_allowlist = args.image.as_deref();
    let allowlist = match &allowlist_path {
        Some(p) => {
            let a = Allowlist::load(p, image_for_allowlist)?;
            joblog::info(format!(
                "allowlist {}: {} entr(ies) apply to this image",
                p.display(),
                a.len()
            ));
            Some(a)
        }
        None => None,
    };
    let ignore_path = args.ignore_file.clone().or_else(|| {
        let p = PathBuf::from(".trivyignore");
        p.is_file().then_some(p)
    });
    let ignore = match &ignore_path {
        Some(p) => {
            let r = IgnoreRules::load(p, today)?;
            joblog::info(format!(
                "ignore file {}: {} active entr(ies)",
                p.display(),
                r.active_len()
            ));
            for e in &r.expired {
                joblog::warn(format!(
                    "{}: entry {} expired on {} and no longer suppresses",
                    p.display(),
                    e.id,
                    e.expired_at.map(|d| d.to_string()).unwrap_or_default()
                ));
            }
            Some(r)
        }
        None => None,
    };
    Ok(Suppressions {
        ignore_unfixed: args.ignore_unfixed,
        allowlist,
        ignore,
    })
}

fn run_trivy(args: &Args, env: &dyn Env, out: &Path, workdir: &Path) -> JobResult<()> {
    let image = args.image.as_deref().expect("checked by run");
    let reference = ImageRef::parse(image)?;
    let explicit = Credentials::from_pair(
        args.registry_user.as_deref(),
        args.registry_password.as_ref(),
        "--registry-user (CS_REGISTRY_USER)",
        "--registry-password (CS_REGISTRY_PASSWORD)",
    )?;
    let creds = credentials::discover(&reference.registry, explicit, env)?;
    if let Some((_, source)) = &creds {
        joblog::info(format!(
            "registry credentials for {} from {source}",
            reference.registry
        ));
    }
    let insecure = args.registry_insecure
        || args
            .insecure_registry
            .iter()
            .any(|h| credentials::normalize_registry_key(h) == reference.registry);
    // trivy applies ./.trivyignore by itself; give it an empty one so every
    // finding reaches us and suppressions are counted and listed here.
    let empty_ignore = workdir.join("empty.trivyignore");
    std::fs::write(&empty_ignore, b"")
        .map_err(|e| JobError::usage(format!("cannot write temp file: {e}")))?;
    let program = runner::program(Some(&args.trivy));
    joblog::info(format!("running trivy on {image}"));
    runner::ImageScan {
        program: &program,
        image,
        platform: args.platform.as_deref(),
        insecure,
        credentials: creds.as_ref().map(|(c, _)| c),
        list_all_pkgs: args.sbom.is_some(),
        timeout: args.timeout,
        output: out,
        ignore_file: &empty_ignore,
    }
    .run()
}

/// When trivy fails, GitLab still gets a report that says the scan failed.
fn write_failure_report(args: &Args, started: OffsetDateTime, e: &JobError) {
    let ctx = ScanContext {
        image: args.image.clone().unwrap_or_else(|| "unknown".into()),
        operating_system: "Unknown".into(),
        default_branch_image: None,
        dockerfile: None,
        started,
        finished: OffsetDateTime::now_utc(),
        run_seconds: (OffsetDateTime::now_utc() - started).as_seconds_f64(),
        trivy_version: None,
        success: false,
        failure_message: Some(e.message.clone()),
    };
    if let Ok(w) = GitlabWriter::create(&args.gitlab_report, &ctx) {
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
    args: &Args,
    h: &Header<'_>,
    started: OffsetDateTime,
    finished: OffsetDateTime,
) -> ScanContext {
    let image = args
        .image
        .clone()
        .or_else(|| h.artifact_name.as_deref().map(str::to_string))
        .filter(|i| !i.trim().is_empty())
        .unwrap_or_else(|| "unknown".into());
    ScanContext {
        image,
        operating_system: h.operating_system().unwrap_or_else(|| "Unknown".into()),
        default_branch_image: args.default_branch_image.clone(),
        dockerfile: args
            .dockerfile
            .as_deref()
            .filter(|d| !d.is_empty())
            .map(DockerfileLocation::find),
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
    args: &Args,
    sup: &Suppressions,
    mut sarif: Option<&mut SarifWriter<'_>>,
    bad_report: &dyn Fn(report::ReportError) -> JobError,
) -> JobResult<Classified> {
    let mut verdicts = Vec::new();
    let mut counts = Counts::default();
    let mut seen: HashSet<Key> = HashSet::new();
    let mut seen_exact: HashSet<Key> = HashSet::new();
    let mut rules: HashMap<String, u32> = HashMap::new();
    let mut failure: Option<JobError> = None;
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
            if args.fail_on.trips(severity) {
                counts.add_gate_row(row(t, &v, severity, String::new()));
            }
            if severity >= args.severity_threshold {
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
                        failure = Some(e);
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
    args: &Args,
    bytes: &[u8],
    ctx: &ScanContext,
    classified: &Classified,
    mut sarif: Option<SarifWriter<'_>>,
    sup: &Suppressions,
) -> JobResult<Vec<String>> {
    let (verdicts, counts) = classified;
    let mut gitlab = GitlabWriter::create(&args.gitlab_report, ctx)?;
    let mut cq = args
        .codequality
        .as_ref()
        .map(|p| CodeQualityWriter::create(p, ctx))
        .transpose()?;
    let mut junit = args
        .junit
        .as_ref()
        .map(|p| JunitWriter::create(p, ctx, counts.total_reported(), counts.total_suppressed()))
        .transpose()?;
    let mut i = 0;
    let mut failure: Option<JobError> = None;
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
        let mut step = || -> JobResult<()> {
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
    .map_err(|e| {
        failure
            .take()
            .unwrap_or_else(|| JobError::usage(e.to_string()))
    })?;
    gitlab.finish()?;
    let mut written = vec![args.gitlab_report.display().to_string()];
    for (done, path) in [
        (sarif.map(SarifWriter::finish), &args.sarif),
        (cq.map(CodeQualityWriter::finish), &args.codequality),
        (junit.map(JunitWriter::finish), &args.junit),
    ] {
        if let (Some(result), Some(path)) = (done, path) {
            result?;
            written.push(path.display().to_string());
        }
    }
    Ok(written)
}

/// The SBOM comes from `trivy convert` of the very JSON the reports came from.
fn write_sbom(args: &Args, json: &Path, sbom: &Path, from_trivy: bool) -> JobResult<()> {
    let program = runner::program(Some(&args.trivy));
    let dir = sbom
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".sbom.")
        .tempfile_in(dir)
        .map_err(|e| JobError::usage(format!("cannot write {}: {e}", sbom.display())))?;
    match runner::convert_to_cyclonedx(&program, json, tmp.path(), args.timeout) {
        Ok(()) => {
            tmp.persist(sbom).map_err(|e| {
                JobError::usage(format!("cannot write {}: {}", sbom.display(), e.error))
            })?;
            joblog::info(format!(
                "SBOM written: {} (CycloneDX, trivy convert)",
                sbom.display()
            ));
            Ok(())
        }
        Err(e) if !from_trivy && e.kind == ExitKind::Usage => {
            joblog::warn(format!(
                "--sbom needs trivy for `trivy convert`; no SBOM written ({})",
                e.message
            ));
            Ok(())
        }
        Err(e) => Err(e),
    }
}
