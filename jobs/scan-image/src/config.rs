//! Every flag checked and resolved before trivy runs or anything is
//! written: levels, durations, the platform, suppression files, output paths,
//! the recorded report, the image reference, registry credentials and the
//! `--insecure` rule. A problem here is exit 2 with a one-line cause.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kit::credentials::{self, CredentialSource, Credentials};
use kit::env::Env;
use kit::fsutil::AtomicFile;
use kit::job::UsageError;
use kit::joblog;
use kit::reference::ImageRef;
use time::OffsetDateTime;

use crate::cli::Args;
use crate::platforms::{Platforms, check_platform};
use crate::severity::{FailOn, Severity};
use crate::suppress::{Allowlist, IgnoreRules, Suppressions};
use crate::trivy::report;
use kit::secret::Secret;

/// trivy v0.74's default vulnerability DB repositories (`--db-repository`).
pub const DEFAULT_DB_REPOSITORIES: [&str; 2] = [
    "mirror.gcr.io/aquasec/trivy-db:2",
    "ghcr.io/aquasecurity/trivy-db:2",
];
/// trivy v0.74's default Java DB repositories (`--java-db-repository`).
pub const DEFAULT_JAVA_DB_REPOSITORIES: [&str; 2] = [
    "mirror.gcr.io/aquasec/trivy-java-db:1",
    "ghcr.io/aquasecurity/trivy-java-db:1",
];

/// A validated run.
#[derive(Debug)]
pub struct Config {
    /// IMAGE as the user wrote it.
    pub image: Option<String>,
    pub source: Source,
    pub outputs: Outputs,
    pub fail_on: FailOn,
    pub severity_threshold: Severity,
    pub suppressions: Suppressions,
    pub dockerfile: Option<String>,
    pub default_branch_image: Option<String>,
    /// trivy's time limit (then exit 4).
    pub timeout: Duration,
    /// The trivy executable (absolute when given as a path).
    pub trivy: PathBuf,
    /// `--mr-note` in a merge-request pipeline.
    pub mr_note: Option<MrNote>,
    /// `--baseline FILE`, read (checked to be a report when the run starts,
    /// so a bad one still gets a failure report).
    pub baseline_file: Option<(PathBuf, Vec<u8>)>,
    /// `--fail-on-new`.
    pub fail_on_new: bool,
}

/// Where and how the merge-request note is posted.
#[derive(Debug)]
pub struct MrNote {
    pub api_url: String,
    pub project: String,
    pub iid: u64,
    pub token: Secret,
    /// The first line of the note: how a re-run finds it.
    pub marker: String,
    pub baseline: BaselineSource,
    pub job_url: Option<String>,
}

/// What the note compares with.
#[derive(Debug)]
pub enum BaselineSource {
    /// `--baseline FILE` ([`Config::baseline_file`]).
    File(PathBuf),
    /// The last `artifact` of `job` on `branch` (job artifacts API).
    Artifact {
        branch: String,
        job: String,
        artifact: String,
    },
    /// Neither a file nor a target branch and job to ask for.
    None(String),
}

/// Where the findings come from.
#[derive(Debug)]
pub enum Source {
    /// `--trivy-report`: the bytes of a report already checked to be one.
    Recorded { path: PathBuf, bytes: Vec<u8> },
    /// Run `trivy image`.
    Trivy(Box<TrivySettings>),
}

/// Everything `trivy image` is told, all of it as flags (see the runner).
#[derive(Debug)]
pub struct TrivySettings {
    pub image: ImageRef,
    /// Which platform manifests of the index trivy scans.
    pub platforms: Platforms,
    /// Registries spoken to over plain HTTP when reading IMAGE's index
    /// (`--insecure-registry`, and IMAGE's with `--registry-insecure`).
    pub plain_http_registries: Vec<String>,
    pub credentials: Option<(Credentials, CredentialSource)>,
    /// trivy's global `--insecure` (see [`insecure_rule`]).
    pub insecure: bool,
    pub db: DbSettings,
}

/// Where trivy gets its databases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbSettings {
    /// Empty: trivy's defaults.
    pub repositories: Vec<String>,
    pub java_repositories: Vec<String>,
    pub skip_update: bool,
    pub skip_java_update: bool,
    /// Absolute.
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Outputs {
    pub gitlab_report: PathBuf,
    pub sarif: Option<PathBuf>,
    pub codequality: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    pub sbom: Option<PathBuf>,
    pub dotenv: PathBuf,
}

impl Outputs {
    fn all(&self) -> impl Iterator<Item = &PathBuf> {
        [
            Some(&self.gitlab_report),
            self.sarif.as_ref(),
            self.codequality.as_ref(),
            self.junit.as_ref(),
            self.sbom.as_ref(),
            Some(&self.dotenv),
        ]
        .into_iter()
        .flatten()
    }
}

impl kit::job::FromArgs for Config {
    type Args = Args;

    fn from_args(args: Args, env: &dyn Env) -> Result<Config, UsageError> {
        let image = args.image.clone().filter(|i| !i.trim().is_empty());
        if image.is_none() && args.trivy_report.is_none() {
            return Err(UsageError::new(
                "nothing to scan: give IMAGE (or CS_IMAGE), or --trivy-report FILE",
            ));
        }
        let fail_on: FailOn = args
            .fail_on
            .parse()
            .map_err(|e| UsageError::new(format!("--fail-on (SCAN_FAIL_ON): {e}")))?;
        let severity_threshold: Severity = args.severity_threshold.parse().map_err(|e| {
            UsageError::new(format!("--severity-threshold (CS_SEVERITY_THRESHOLD): {e}"))
        })?;
        let timeout = kit::duration::parse(&args.timeout)
            .map_err(|e| UsageError::with_source("--timeout (SCAN_TIMEOUT)", e))?;
        if timeout.is_zero() {
            return Err(UsageError::new(
                "--timeout (SCAN_TIMEOUT) must be more than 0",
            ));
        }
        let platforms = platform_choice(&args)?;

        let outputs = Outputs {
            gitlab_report: args.gitlab_report.clone(),
            sarif: args.sarif.clone(),
            codequality: args.codequality.clone(),
            junit: args.junit.clone(),
            sbom: args.sbom.clone(),
            dotenv: args.dotenv.clone(),
        };
        // Fail before any work when a report cannot be written where asked.
        for p in outputs.all() {
            drop(AtomicFile::create(p)?);
        }
        let suppressions = load_suppressions(&args, image.as_deref())?;

        let source = match &args.trivy_report {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| {
                    UsageError::with_source(
                        format!("cannot read trivy report {}", path.display()),
                        e,
                    )
                })?;
                report::read_header(&bytes)
                    .map_err(|e| UsageError::new(format!("{} is {e}", path.display())))?;
                Source::Recorded {
                    path: absolute(path)?,
                    bytes,
                }
            }
            None => {
                let raw = image.as_deref().expect("checked above");
                let image = ImageRef::parse(raw).map_err(|e| UsageError::new(e.to_string()))?;
                let explicit = Credentials::from_pair(
                    args.registry_user.as_deref(),
                    args.registry_password.as_ref(),
                    "--registry-user (CS_REGISTRY_USER)",
                    "--registry-password (CS_REGISTRY_PASSWORD)",
                )?;
                let credentials = credentials::discover(&image.registry, explicit, env)?;
                let db = DbSettings {
                    repositories: non_empty(&args.db_repository),
                    java_repositories: non_empty(&args.java_db_repository),
                    skip_update: args.skip_db_update,
                    skip_java_update: args.skip_java_db_update,
                    cache_dir: args
                        .cache_dir
                        .as_deref()
                        .filter(|p| !p.as_os_str().is_empty())
                        .map(absolute)
                        .transpose()?,
                };
                let insecure =
                    insecure_rule(&image, args.registry_insecure, &args.insecure_registry, &db)?;
                let mut plain_http_registries = non_empty(&args.insecure_registry);
                if args.registry_insecure {
                    plain_http_registries.push(image.registry.clone());
                }
                Source::Trivy(Box::new(TrivySettings {
                    image,
                    platforms: platforms.clone().unwrap_or(Platforms::All),
                    plain_http_registries,
                    credentials,
                    insecure,
                    db,
                }))
            }
        };
        let trivy = if args.trivy.components().count() > 1 {
            absolute(&args.trivy)?
        } else {
            args.trivy.clone()
        };
        // A scan needs trivy: say so before the registry is read.
        if matches!(source, Source::Trivy(_)) && !program_exists(&trivy, env) {
            return Err(UsageError::new(
                crate::error::Error::TrivyNotFound {
                    program: trivy.clone(),
                }
                .to_string(),
            ));
        }
        let mr_note = mr_note(&args, env)?;
        // Read here (exit 2 when unreadable); checked to be a report when
        // the run starts.
        let baseline_file = match &args.baseline {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| {
                    UsageError::with_source(
                        format!("--baseline (SCAN_BASELINE): cannot read {}", path.display()),
                        e,
                    )
                })?;
                Some((path.clone(), bytes))
            }
            None => None,
        };
        Ok(Config {
            mr_note,
            baseline_file,
            fail_on_new: args.fail_on_new,
            image,
            source,
            outputs,
            fail_on,
            severity_threshold,
            suppressions,
            dockerfile: args.dockerfile.clone().filter(|d| !d.is_empty()),
            default_branch_image: args.default_branch_image.clone(),
            timeout,
            trivy,
        })
    }
}

fn non_empty(v: &[String]) -> Vec<String> {
    v.iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn absolute(p: &Path) -> Result<PathBuf, UsageError> {
    std::path::absolute(p)
        .map_err(|e| UsageError::with_source(format!("cannot resolve {}", p.display()), e))
}

/// `--mr-note`: every input checked before anything runs. `None` outside a
/// merge-request pipeline (said in the log).
fn mr_note(args: &Args, env: &dyn Env) -> Result<Option<MrNote>, UsageError> {
    let given = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    if !args.mr_note {
        if args.baseline.is_some() && !args.fail_on_new {
            joblog::warn(
                "--baseline (SCAN_BASELINE) is what --mr-note and --fail-on-new compare with; without them it is not used",
            );
        }
        return Ok(None);
    }
    let token = match args
        .gitlab_token
        .as_ref()
        .filter(|t| !t.expose().trim().is_empty())
    {
        Some(t) => t.clone(),
        None if env.var("CI_JOB_TOKEN").is_some_and(|t| !t.is_empty()) => {
            return Err(UsageError::new(
                "--mr-note (SCAN_MR_NOTE): CI_JOB_TOKEN cannot write merge-request notes; set SCAN_IMAGE_GITLAB_TOKEN to a project access token with the api scope and at least the Reporter role (a masked, protected CI/CD variable)",
            ));
        }
        None => {
            return Err(UsageError::new(
                "--mr-note (SCAN_MR_NOTE) needs SCAN_IMAGE_GITLAB_TOKEN: a project access token with the api scope and at least the Reporter role",
            ));
        }
    };
    let Some(iid) = given(&args.merge_request_iid) else {
        joblog::info(
            "--mr-note: not a merge-request pipeline (CI_MERGE_REQUEST_IID is not set); no note is posted",
        );
        return Ok(None);
    };
    let iid: u64 = iid.parse().map_err(|_| {
        UsageError::new(format!(
            "--merge-request-iid (CI_MERGE_REQUEST_IID): {iid:?} is not a merge-request number"
        ))
    })?;
    let api_url = given(&args.gitlab_api_url)
        .ok_or_else(|| UsageError::new("--mr-note needs --gitlab-api-url (CI_API_V4_URL)"))?;
    match url::Url::parse(&api_url) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => {}
        _ => {
            return Err(UsageError::new(format!(
                "--gitlab-api-url (CI_API_V4_URL): {:?} is not an http(s) URL",
                kit::secret::redact_url_credentials(&api_url)
            )));
        }
    }
    let project = given(&args.project_id)
        .ok_or_else(|| UsageError::new("--mr-note needs --project-id (CI_PROJECT_ID)"))?;
    let job_name = env.var("CI_JOB_NAME").filter(|j| !j.is_empty());
    let baseline = match &args.baseline {
        Some(path) => BaselineSource::File(path.clone()),
        None => match (
            given(&args.target_branch),
            given(&args.baseline_job).or(job_name.clone()),
        ) {
            (Some(branch), Some(job)) => BaselineSource::Artifact {
                branch,
                job,
                artifact: args.gitlab_report.display().to_string(),
            },
            (None, _) => BaselineSource::None(
                "no target branch (CI_MERGE_REQUEST_TARGET_BRANCH_NAME) to compare with".into(),
            ),
            (_, None) => BaselineSource::None(
                "no job to take the target branch's report from (SCAN_BASELINE_JOB, CI_JOB_NAME)"
                    .into(),
            ),
        },
    };
    // One note per scan job: the marker names the job (an HTML comment,
    // so `--` is kept out of it).
    let who: String = job_name
        .unwrap_or_else(|| "scan-image".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ' ' | ':' | '/' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut who = who;
    while who.contains("--") {
        who = who.replace("--", "-");
    }
    Ok(Some(MrNote {
        api_url,
        project,
        iid,
        token,
        marker: format!("<!-- secdeliv scan-image note: {who} -->"),
        baseline,
        job_url: env
            .var("CI_JOB_URL")
            .filter(|u| u.starts_with("https://") || u.starts_with("http://")),
    }))
}

/// Whether `program` (a path, or a name looked up in the job's PATH, as
/// the child's PATH is the job's) is an existing file.
fn program_exists(program: &Path, env: &dyn Env) -> bool {
    if program.components().count() > 1 {
        return program.is_file();
    }
    env.var("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// `--platforms`, or `--platform` as a list of one (not both); `None` when
/// neither is given (then: all).
fn platform_choice(args: &Args) -> Result<Option<Platforms>, UsageError> {
    let given = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
    };
    let choice = match (given(&args.platforms), given(&args.platform)) {
        (Some(_), Some(_)) => {
            return Err(UsageError::new(
                "--platforms (SCAN_PLATFORMS) and --platform (TRIVY_PLATFORM) both given: use --platforms, it takes one platform too",
            ));
        }
        (Some(list), None) => Some(Platforms::parse(&list, "--platforms (SCAN_PLATFORMS)")?),
        (None, Some(one)) => Some(Platforms::Only(vec![check_platform(
            &one,
            "--platform (TRIVY_PLATFORM)",
        )?])),
        (None, None) => None,
    };
    if choice.is_some() && args.trivy_report.is_some() {
        joblog::warn(
            "--platforms/--platform choose what trivy scans; with --trivy-report nothing is scanned, so they change nothing",
        );
    }
    Ok(choice)
}

/// Whether trivy gets `--insecure`.
///
/// trivy has one `--insecure` switch for every connection it makes: the
/// image's registry, and also the vulnerability DB and Java DB downloads
/// (and anything else over HTTPS). So scan-image passes it only when
///
/// 1. IMAGE's registry is insecure (`--registry-insecure`, or listed in
///    `--insecure-registry`), and
/// 2. every registry trivy may download a database from in this run is
///    listed in `--insecure-registry` too: the `--db-repository` hosts
///    (trivy's defaults when none is given) unless `--skip-db-update`, and
///    the `--java-db-repository` hosts unless `--skip-java-db-update`.
///
/// When 1 holds and 2 does not, the run stops here (exit 2) and says how to
/// go on; it never switches certificate checks off for a database download
/// nobody asked to trust.
pub fn insecure_rule(
    image: &ImageRef,
    registry_insecure: bool,
    insecure_registries: &[String],
    db: &DbSettings,
) -> Result<bool, UsageError> {
    let listed: Vec<String> = insecure_registries
        .iter()
        .map(|h| h.trim())
        .filter(|h| !h.is_empty())
        .map(credentials::normalize_registry_key)
        .collect();
    let is_listed = |host: &str| listed.iter().any(|l| *l == host);
    if !(registry_insecure || is_listed(&image.registry)) {
        return Ok(false);
    }
    let mut downloads: Vec<(&str, String)> = Vec::new();
    let mut add = |flag: &'static str, given: &[String], defaults: &[&str]| {
        let repos: Vec<String> = if given.is_empty() {
            defaults.iter().map(|s| s.to_string()).collect()
        } else {
            given.to_vec()
        };
        for r in repos {
            downloads.push((flag, r));
        }
    };
    if !db.skip_update {
        add(
            "--db-repository",
            &db.repositories,
            &DEFAULT_DB_REPOSITORIES,
        );
    }
    if !db.skip_java_update {
        add(
            "--java-db-repository",
            &db.java_repositories,
            &DEFAULT_JAVA_DB_REPOSITORIES,
        );
    }
    let mut unlisted: Vec<String> = Vec::new();
    for (flag, repo) in &downloads {
        let host = ImageRef::parse(repo)
            .map_err(|e| UsageError::new(format!("{flag}: {e}")))?
            .registry;
        if !is_listed(&host) && !unlisted.contains(&host) {
            unlisted.push(host);
        }
    }
    if unlisted.is_empty() {
        return Ok(true);
    }
    Err(UsageError::new(format!(
        "{} is an insecure registry, but trivy's --insecure would also switch off certificate checks for its database downloads from {}; \
         list those in --insecure-registry (INSECURE_REGISTRY) only if you mean it, or serve the databases from a listed registry \
         (--db-repository, --java-db-repository), or use the cached ones (--skip-db-update and --skip-java-db-update with --cache-dir)",
        image.registry,
        unlisted.join(", ")
    )))
}

fn load_suppressions(args: &Args, image: Option<&str>) -> Result<Suppressions, UsageError> {
    let today = OffsetDateTime::now_utc().date();
    let allowlist_path = args.allowlist.clone().or_else(|| {
        let p = PathBuf::from("vulnerability-allowlist.yml");
        p.is_file().then_some(p)
    });
    let allowlist = match &allowlist_path {
        Some(p) => {
            let a = Allowlist::load(p, image)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn image(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap()
    }

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn insecure_only_for_a_listed_registry_whose_db_downloads_are_listed_or_skipped() {
        let img = image(
            "registry.local:5000/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        );
        let default_db = DbSettings::default();
        // Not listed: no --insecure, whatever the DB.
        assert!(!insecure_rule(&img, false, &[], &default_db).unwrap());
        assert!(!insecure_rule(&img, false, &list(&["other:5000"]), &default_db).unwrap());
        // Listed, default DBs: refused, naming the hosts.
        let e = insecure_rule(&img, false, &list(&["registry.local:5000"]), &default_db)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mirror.gcr.io, ghcr.io"), "{e}");
        // CS_REGISTRY_INSECURE is the same.
        assert!(insecure_rule(&img, true, &[], &default_db).is_err());
        // Both DB downloads skipped: --insecure.
        let skipped = DbSettings {
            skip_update: true,
            skip_java_update: true,
            ..Default::default()
        };
        assert!(insecure_rule(&img, false, &list(&["registry.local:5000"]), &skipped).unwrap());
        // DBs served from the listed registry: --insecure.
        let local = DbSettings {
            repositories: list(&["registry.local:5000/trivy-db:2"]),
            java_repositories: list(&["registry.local:5000/trivy-java-db:1"]),
            ..Default::default()
        };
        assert!(insecure_rule(&img, false, &list(&["registry.local:5000"]), &local).unwrap());
        // Java DB still from the internet: refused.
        let half = DbSettings {
            repositories: list(&["registry.local:5000/trivy-db:2"]),
            ..Default::default()
        };
        let e = insecure_rule(&img, false, &list(&["registry.local:5000"]), &half)
            .unwrap_err()
            .to_string();
        assert!(e.contains("from mirror.gcr.io, ghcr.io;"), "{e}");
        // Listed as a URL or with another case still counts.
        assert!(
            insecure_rule(
                &img,
                false,
                &list(&["http://Registry.Local:5000"]),
                &skipped
            )
            .unwrap()
        );
    }
}
