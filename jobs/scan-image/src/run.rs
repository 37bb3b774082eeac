//! One run: obtain trivy's JSON (run trivy, or take the recorded report),
//! classify every finding, write every report, log, write the dotenv file,
//! apply the gate.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use kit::env::Env;
use kit::job::Outcome;
use kit::joblog;
use time::OffsetDateTime;

use crate::config::{BaselineSource, Config, DbSettings, MrNote, Source, TrivySettings};
use crate::error::Error;
use crate::finding::{Finding, Key};
use crate::platforms;
use crate::report::codequality::CodeQualityWriter;
use crate::report::gitlab::GitlabWriter;
use crate::report::junit::JunitWriter;
use crate::report::sarif::SarifWriter;
use crate::report::{DockerfileLocation, ScanContext};
use crate::severity::{FailOn, Severity};
use crate::summary::{Counts, Row, Scanned};
use crate::suppress::Suppressions;
use crate::trivy::report::{self, Header, Target, Vulnerability, WalkError};
use crate::trivy::runner::{self, Sandbox};
use crate::{gitlab, mr_note};
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Reported {
        rule: u32,
    },
    BelowThreshold,
    Suppressed,
    Duplicate,
    /// Already reported from an earlier platform's report.
    Merged,
}

#[derive(Debug, Clone, Copy)]
struct Verdict {
    class: Class,
    severity: Severity,
    key: Key,
    /// Bit set of the reports (platforms) this finding is on.
    platforms: u64,
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

/// One trivy JSON report: of one platform of the index, of IMAGE when it
/// is a single manifest, or recorded (`--trivy-report`).
pub struct PlatformReport<'a> {
    /// `os/arch[/variant]` when IMAGE is an index.
    pub platform: Option<String>,
    /// The platform manifest's digest, when IMAGE is an index.
    pub digest: Option<String>,
    /// Where the JSON is (trivy's output, or the recorded file).
    pub json: std::path::PathBuf,
    pub bytes: Cow<'a, [u8]>,
}

/// Runs the job: `Refused` when the gate trips (reports and dotenv are
/// written first). When trivy fails, the GitLab report is still written,
/// with `scan.status: failure` and the cause.
pub async fn run(config: &Config, env: &dyn Env) -> Result<Outcome, Error> {
    let started = OffsetDateTime::now_utc();
    // A baseline file that is not a report stops the run before the scan.
    let baseline_file = match &config.baseline_file {
        Some((path, bytes)) => match mr_note::GitlabReport::parse(bytes) {
            Ok(r) => Some(r),
            Err(source) => {
                let e = Error::Baseline {
                    path: path.clone(),
                    source,
                };
                write_failure_report(config, started, &e);
                return Err(e);
            }
        },
        None => None,
    };
    let sandbox = Sandbox::new()?;
    let (reports, from_trivy): (Vec<PlatformReport<'_>>, bool) = match &config.source {
        Source::Recorded { path, bytes } => (
            vec![PlatformReport {
                platform: None,
                digest: None,
                json: path.clone(),
                bytes: Cow::Borrowed(bytes),
            }],
            false,
        ),
        Source::Trivy(settings) => match scan(config, settings, &sandbox, env).await {
            Ok(r) => (r, true),
            Err(e) => {
                write_failure_report(config, started, &e);
                return Err(e);
            }
        },
    };
    let finished = OffsetDateTime::now_utc();
    let bad_report = |r: &PlatformReport<'_>, e: report::ReportError| {
        if from_trivy {
            Error::TrivyOutput(e)
        } else {
            Error::RecordedReport {
                path: r.json.clone(),
                source: e,
            }
        }
    };
    let mut headers = Vec::with_capacity(reports.len());
    for r in &reports {
        match report::read_header(&r.bytes) {
            Ok(h) => headers.push(h),
            Err(e) => {
                let e = bad_report(r, e);
                if from_trivy {
                    write_failure_report(config, started, &e);
                }
                return Err(e);
            }
        }
    }
    let header = &headers[0];
    if !from_trivy {
        note_recorded_report(&reports[0].json, header, config.image.as_deref());
    }
    let mut ctx = context(
        config,
        header,
        if from_trivy {
            started
        } else {
            created_at(header).unwrap_or(started)
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
    let merge = Merge::of(&reports)?;
    let classified = classify(&reports, &merge, config, sarif.as_mut(), &bad_report)?;
    let written = write_reports(config, &reports, &merge, &ctx, &classified, sarif)?;
    let counts = classified.1;
    let mut sboms: Vec<String> = Vec::new();
    if let Some(sbom) = &config.outputs.sbom {
        for r in &reports {
            let path = sbom_path(sbom, r.platform.as_deref());
            if write_sbom(config, &sandbox, env, &r.json, &path, from_trivy)? {
                sboms.push(path.display().to_string());
            }
        }
    }

    let title = format!(
        "scan-image: {} ({}), trivy {}",
        ctx.image,
        ctx.operating_system,
        ctx.trivy_version.as_deref().unwrap_or("version unknown")
    );
    counts.log(&title, config.fail_on, config.severity_threshold);
    if reports.len() > 1 {
        joblog::info(format!(
            "{} platforms scanned ({}); findings on several platforms are merged into one, listing them",
            reports.len(),
            merge.labels.join(", ")
        ));
    }
    joblog::info(format!("reports written: {}", written.join(", ")));
    let mut scanned = Scanned {
        new_over_gate: None,
        platforms: merge.labels.join(","),
        digests: reports
            .iter()
            .filter_map(|r| r.digest.clone())
            .collect::<Vec<_>>()
            .join(","),
        sboms: sboms.join(","),
    };
    // The dotenv file, written again when the gate changes to new findings only.
    let write_dotenv = |scanned: &Scanned| {
        counts.write_dotenv(
            &config.outputs.dotenv,
            config.image.as_deref(),
            config.fail_on,
            config.severity_threshold,
            scanned,
        )
    };
    write_dotenv(&scanned)?;
    let mut outcome = gate(&counts, config.fail_on);
    if config.mr_note.is_none() && !config.fail_on_new {
        return Ok(outcome);
    }
    // This run's findings as GitLab got them, and what they are compared with.
    let current = std::fs::read(&config.outputs.gitlab_report)
        .ok()
        .and_then(|b| mr_note::GitlabReport::parse(&b).ok())
        .ok_or_else(|| {
            Error::Kit(kit::JobError::usage(format!(
                "cannot read back {}",
                config.outputs.gitlab_report.display()
            )))
        })?;
    let api = config
        .mr_note
        .as_ref()
        .map(|n| gitlab::Api::new(&n.api_url, &n.project, n.token.clone(), env))
        .transpose()?;
    let baseline = baseline(config, baseline_file, api.as_ref()).await?;
    let mut new_gate = None;
    if config.fail_on_new {
        match (&baseline, config.fail_on) {
            (mr_note::Baseline::Report { what, report }, FailOn::AtOrAbove(level)) => {
                let new = mr_note::new_at_or_above(&current, report, level);
                new_gate = Some(new.len() as u64);
                outcome = gate_new(&new, counts.total_over_gate(), level, what);
                scanned.new_over_gate = Some(new.len() as u64);
                write_dotenv(&scanned)?;
            }
            (mr_note::Baseline::Missing(why), FailOn::AtOrAbove(_)) => joblog::warn(format!(
                "--fail-on-new: no baseline ({why}); the gate counts every finding"
            )),
            (_, FailOn::Never) => {}
        }
    }
    if let (Some(note), Some(api)) = (&config.mr_note, &api) {
        let body = mr_note::render(&mr_note::NoteInput {
            marker: &note.marker,
            image: &ctx.image,
            counts: &counts,
            fail_on: config.fail_on,
            new_over_gate: new_gate,
            platforms: &merge.labels,
            current: &current,
            baseline: &baseline,
            job_url: note.job_url.as_deref(),
        });
        post_note(note, api, &body).await?;
    }
    Ok(outcome)
}

/// `--fail-on-new`: the gate over the findings the baseline did not have.
fn gate_new(
    new: &[&mr_note::ReportFinding],
    all_over: u64,
    level: Severity,
    what: &str,
) -> Outcome {
    let known = all_over.saturating_sub(new.len() as u64);
    if new.is_empty() {
        joblog::info(format!(
            "gate (--fail-on-new): passed, no finding at or above {level} that {what} did not have ({known} it had)"
        ));
        return Outcome::Done;
    }
    let ids: Vec<&str> = new.iter().take(3).map(|f| f.id()).collect();
    let more = if new.len() > 3 {
        format!(" and {} more", new.len() - 3)
    } else {
        String::new()
    };
    Outcome::Refused(format!(
        "{} new finding(s) at or above {level} that {what} did not have ({}{more}); fix them, or suppress with --allowlist/--ignore-file, or raise --fail-on",
        new.len(),
        ids.join(", ")
    ))
}

/// What new and fixed are judged against: `--baseline FILE`, else with
/// `--mr-note` the target branch's last report (job artifacts API).
async fn baseline(
    config: &Config,
    file: Option<mr_note::GitlabReport>,
    api: Option<&gitlab::Api>,
) -> Result<mr_note::Baseline, Error> {
    if let (Some(report), Some((path, _))) = (file, &config.baseline_file) {
        return Ok(mr_note::Baseline::Report {
            what: format!("`{}`", path.display()),
            report,
        });
    }
    let (Some(note), Some(api)) = (&config.mr_note, api) else {
        return Ok(mr_note::Baseline::Missing(
            "no --baseline, and no merge request to find the target branch's report".into(),
        ));
    };
    match &note.baseline {
        BaselineSource::File(_) => unreachable!("read with the config"),
        BaselineSource::None(why) => Ok(mr_note::Baseline::Missing(why.clone())),
        BaselineSource::Artifact {
            branch,
            job,
            artifact,
        } => {
            let got = api
                .last_artifact(branch, artifact, job)
                .await
                .map_err(|source| Error::Gitlab {
                    what: format!(
                        "reading the last {artifact} of job {job} on {branch} (the baseline)"
                    ),
                    source,
                })?;
            Ok(match got.map(|b| mr_note::GitlabReport::parse(&b)) {
                Some(Ok(report)) => mr_note::Baseline::Report {
                    what: format!("`{branch}` (job {job})"),
                    report,
                },
                Some(Err(e)) => {
                    joblog::warn(format!(
                        "the last {artifact} of job {job} on {branch} is {e}; no new/fixed findings"
                    ));
                    mr_note::Baseline::Missing(format!(
                        "the last report of `{branch}` (job {job}) could not be read"
                    ))
                }
                None => mr_note::Baseline::Missing(format!(
                    "`{branch}` has no report from job {job} yet; every finding is listed below"
                )),
            })
        }
    }
}

/// The merge-request note, posted once per merge request and scan job; a
/// re-run edits the note it finds by its marker.
async fn post_note(note: &MrNote, api: &gitlab::Api, body: &str) -> Result<(), Error> {
    let gitlab = |what: String| move |source| Error::Gitlab { what, source };
    let iid = note.iid;
    let mine = api
        .notes(iid)
        .await
        .map_err(gitlab(format!("listing the notes of merge request !{iid}")))?
        .into_iter()
        .find(|n| !n.system && n.body.starts_with(&note.marker));
    let hint = "(SCAN_IMAGE_GITLAB_TOKEN needs the api scope and at least the Reporter role)";
    match mine {
        Some(n) => {
            api.update_note(iid, n.id, body)
                .await
                .map_err(gitlab(format!(
                    "editing note {} on merge request !{iid} {hint}",
                    n.id
                )))?;
            joblog::info(format!("merge request !{iid}: note {} edited", n.id));
        }
        None => {
            let n = api.create_note(iid, body).await.map_err(gitlab(format!(
                "posting the note on merge request !{iid} {hint}"
            )))?;
            joblog::info(format!("merge request !{iid}: note {} posted", n.id));
        }
    }
    Ok(())
}

/// `--sbom FILE` for one platform: FILE itself when IMAGE is not an index,
/// else FILE with the platform before its first dot
/// (`gl-sbom.cdx.json` → `gl-sbom-linux-arm64.cdx.json`).
pub fn sbom_path(file: &Path, platform: Option<&str>) -> std::path::PathBuf {
    let Some(p) = platform else {
        return file.to_path_buf();
    };
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tag = p.replace('/', "-");
    let named = match name.split_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}-{tag}.{ext}"),
        _ => format!("{name}-{tag}"),
    };
    file.with_file_name(named)
}

/// Resolves the platforms, then runs trivy once per platform manifest; the
/// vulnerability DB is downloaded by the first run only (later runs use
/// the same cache with `--skip-db-update`).
async fn scan(
    config: &Config,
    settings: &TrivySettings,
    sandbox: &Sandbox,
    env: &dyn Env,
) -> Result<Vec<PlatformReport<'static>>, Error> {
    let image = config.image.as_deref().expect("a trivy run has an image");
    if let Some((_, source)) = &settings.credentials {
        joblog::info(format!(
            "registry credentials for {} from {source}",
            settings.image.registry
        ));
    }
    let targets = platforms::resolve(image, settings, &settings.platforms, env).await?;
    if settings.insecure {
        joblog::warn(format!(
            "trivy runs with --insecure: {} and every registry trivy downloads from in this run are insecure-listed",
            settings.image.registry
        ));
    }
    let deadline = std::time::Instant::now() + config.timeout;
    let mut out = Vec::with_capacity(targets.len());
    for (i, t) in targets.into_iter().enumerate() {
        let db = if i == 0 {
            settings.db.clone()
        } else {
            DbSettings {
                skip_update: true,
                ..settings.db.clone()
            }
        };
        let json = sandbox.path().join(format!("trivy-{i}.json"));
        let on = t
            .platform
            .as_deref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default();
        joblog::info(format!(
            "running trivy on {}{on}{}",
            t.reference,
            if i > 0 && !settings.db.skip_update {
                ", DB from the first run"
            } else {
                ""
            }
        ));
        let timeout = deadline.saturating_duration_since(std::time::Instant::now());
        if timeout.is_zero() {
            return Err(Error::TrivyTimeout {
                what: "trivy image",
                timeout: config.timeout,
            });
        }
        runner::ImageScan {
            program: &config.trivy,
            image: &t.reference,
            insecure: settings.insecure,
            credentials: settings.credentials.as_ref().map(|(c, _)| c),
            list_all_pkgs: config.outputs.sbom.is_some(),
            timeout,
            output: &json,
            config: &sandbox.config(),
            ignore_file: &sandbox.ignore_file(),
            db: &db,
        }
        .run(sandbox, env)
        .map_err(|e| match e {
            // The limit the user set, not what was left of it.
            Error::TrivyTimeout { what, .. } => Error::TrivyTimeout {
                what,
                timeout: config.timeout,
            },
            e => e,
        })?;
        let bytes = std::fs::read(&json).map_err(|source| Error::ReadOutput {
            path: json.clone(),
            source,
        })?;
        out.push(PlatformReport {
            platform: t.platform,
            digest: t.digest,
            json,
            bytes: Cow::Owned(bytes),
        });
    }
    Ok(out)
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

fn row(
    t: &Target<'_>,
    v: &Vulnerability<'_>,
    severity: Severity,
    reason: String,
    platforms: &[String],
) -> Row {
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
        platforms: platforms.join(", "),
    }
}

/// Which platforms each finding is on. A finding is the same on two
/// platforms when its vulnerability, package, place and installed version
/// are (its exact [`Key`]); it is reported once, at its first platform,
/// listing them all.
pub struct Merge {
    /// The platforms scanned, in report order (empty: not an index).
    pub labels: Vec<String>,
    /// Exact key → bit set of report indexes (only with several reports).
    sets: HashMap<Key, u64>,
    /// Bit set → platform names, built once per set.
    names: HashMap<u64, Vec<String>>,
}

impl Merge {
    /// One pass over every report when there are several (none otherwise).
    fn of(reports: &[PlatformReport<'_>]) -> Result<Merge, Error> {
        let labels: Vec<String> = reports.iter().filter_map(|r| r.platform.clone()).collect();
        let mut sets: HashMap<Key, u64> = HashMap::new();
        if reports.len() > 1 {
            for (i, r) in reports.iter().enumerate().take(64) {
                report::for_each_vulnerability(&r.bytes, |t: &Target<'_>, v: Vulnerability<'_>| {
                    *sets
                        .entry(Key::of(t, &v, Some(&v.installed_version)))
                        .or_default() |= 1 << i;
                    Ok::<(), Error>(())
                })
                .map_err(|e| match e {
                    WalkError::Report(e) => Error::TrivyOutput(e),
                    WalkError::Stopped(e) => e,
                })?;
            }
        }
        let mut names = HashMap::new();
        for set in sets
            .values()
            .copied()
            .chain((0..reports.len().min(64)).map(|i| 1u64 << i))
        {
            names.entry(set).or_insert_with(|| {
                (0..reports.len())
                    .filter(|i| set & (1 << i) != 0)
                    .filter_map(|i| reports[i].platform.clone())
                    .collect()
            });
        }
        Ok(Merge {
            labels,
            sets,
            names,
        })
    }

    /// The platform set of a finding first seen in report `i`.
    fn set(&self, exact: &Key, i: usize) -> u64 {
        self.sets.get(exact).copied().unwrap_or(1 << i.min(63))
    }

    fn names(&self, set: u64) -> &[String] {
        self.names.get(&set).map(Vec::as_slice).unwrap_or(&[])
    }
}

type Classified = (Vec<Vec<Verdict>>, Counts);

/// First pass: decide what each finding is, count, number the SARIF rules,
/// and write each rule at the first finding of its id (so SARIF needs no
/// pass of its own). A finding already seen on an earlier platform is
/// `Merged` into that one.
fn classify(
    reports: &[PlatformReport<'_>],
    merge: &Merge,
    config: &Config,
    mut sarif: Option<&mut SarifWriter<'_>>,
    bad_report: &dyn Fn(&PlatformReport<'_>, report::ReportError) -> Error,
) -> Result<Classified, Error> {
    let sup = &config.suppressions;
    let mut all = Vec::with_capacity(reports.len());
    let mut counts = Counts::default();
    let mut seen: HashSet<Key> = HashSet::new();
    // Exact key → the report it was first seen in.
    let mut seen_exact: HashMap<Key, usize> = HashMap::new();
    let mut rules: HashMap<String, u32> = HashMap::new();
    for (ri, r) in reports.iter().enumerate() {
        let mut verdicts = Vec::new();
        report::for_each_vulnerability(&r.bytes, |t: &Target<'_>, v: Vulnerability<'_>| {
            let severity = Severity::from_trivy(&v.severity);
            // The same entry twice is one finding; the same id, package and
            // place at another version is another one, with an id of its own.
            let exact = Key::of(t, &v, Some(&v.installed_version));
            let platforms = merge.set(&exact, ri);
            if let Some(first) = seen_exact.get(&exact) {
                let class = if *first == ri {
                    counts.duplicates += 1;
                    Class::Duplicate
                } else {
                    Class::Merged
                };
                verdicts.push(Verdict {
                    class,
                    severity,
                    key: exact,
                    platforms,
                });
                return Ok(());
            }
            seen_exact.insert(exact, ri);
            let names = merge.names(platforms);
            let base = Key::of(t, &v, None);
            let key = if seen.insert(base) { base } else { exact };
            let class = if let Some(reason) = sup.check(t, &v) {
                counts.add_suppressed_row(row(t, &v, severity, reason.to_string(), names));
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
                    counts.add_gate_row(row(t, &v, severity, String::new(), names));
                }
                if severity >= config.severity_threshold {
                    counts.reported[severity as usize] += 1;
                    let next = rules.len() as u32;
                    let rule = *rules.entry(v.vulnerability_id.to_string()).or_insert(next);
                    if rule == next
                        && let Some(w) = sarif.as_mut()
                    {
                        w.add_rule(&Finding {
                            target: t,
                            vuln: &v,
                            severity,
                            key,
                            rule_index: rule,
                            platforms: names,
                        })?;
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
                platforms,
            });
            Ok::<(), Error>(())
        })
        .map_err(|e| match e {
            WalkError::Report(e) => bad_report(r, e),
            WalkError::Stopped(e) => e,
        })?;
        all.push(verdicts);
    }
    Ok((all, counts))
}

/// Second pass: stream every finding into every report.
fn write_reports(
    config: &Config,
    reports: &[PlatformReport<'_>],
    merge: &Merge,
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
    for (r, verdicts) in reports.iter().zip(verdicts) {
        let mut i = 0;
        report::for_each_vulnerability(&r.bytes, |t: &Target<'_>, v: Vulnerability<'_>| {
            let verdict = verdicts[i];
            i += 1;
            let finding = |rule_index| Finding {
                target: t,
                vuln: &v,
                severity: verdict.severity,
                key: verdict.key,
                rule_index,
                platforms: merge.names(verdict.platforms),
            };
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
                Class::BelowThreshold | Class::Duplicate | Class::Merged => {}
            }
            Ok::<(), Error>(())
        })
        .map_err(|e| match e {
            WalkError::Report(e) => Error::TrivyOutput(e),
            WalkError::Stopped(e) => e,
        })?;
    }
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
) -> Result<bool, Error> {
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
            let bytes = std::fs::read(&tmp_path).map_err(|e| cannot(&e))?;
            let (bytes, written) = crate::sbom::for_gitlab(&bytes)?;
            std::fs::write(&tmp_path, &bytes).map_err(|e| cannot(&e))?;
            tmp.persist(sbom).map_err(|e| cannot(&e.error))?;
            let relabelled = if written == crate::sbom::SPEC_VERSION {
                String::new()
            } else if written == "1.7" {
                ", trivy's 1.7 written as 1.6 for GitLab".to_string()
            } else {
                format!(" {written}")
            };
            joblog::info(format!(
                "SBOM written: {} (CycloneDX{relabelled}, trivy convert)",
                sbom.display()
            ));
            Ok(true)
        }
        Err(e @ Error::TrivyNotFound { .. }) if !from_trivy => {
            joblog::warn(format!(
                "--sbom needs trivy for `trivy convert`; no SBOM written ({e})"
            ));
            Ok(false)
        }
        Err(e) => Err(e),
    }
}
