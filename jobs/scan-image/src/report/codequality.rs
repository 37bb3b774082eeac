//! GitLab Code Quality report: the merge-request widget that works on
//! GitLab Free, where the security widget does not.

use std::path::Path;

use kit::JobResult;
use kit::fsutil::write_error;
use serde::Serialize;

use super::{JsonStream, ScanContext};
use crate::finding::Finding;

/// One Code Quality issue (GitLab's subset of the Code Climate format).
#[derive(Serialize)]
struct Issue<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    check_name: &'a str,
    description: String,
    categories: [&'static str; 1],
    severity: &'static str,
    fingerprint: String,
    location: IssueLocation,
}

#[derive(Serialize)]
struct IssueLocation {
    path: String,
    lines: Lines,
}

#[derive(Serialize)]
struct Lines {
    begin: u32,
}

pub struct CodeQualityWriter<'c> {
    out: JsonStream,
    ctx: &'c ScanContext,
    path: std::path::PathBuf,
}

impl<'c> CodeQualityWriter<'c> {
    pub fn create(path: &Path, ctx: &'c ScanContext) -> JobResult<Self> {
        Ok(CodeQualityWriter {
            out: JsonStream::open(path, b"[")?,
            ctx,
            path: path.to_path_buf(),
        })
    }

    pub fn add(&mut self, f: &Finding<'_, '_>) -> JobResult<()> {
        let v = f.vuln;
        let fix = match v.fixed() {
            Some(fix) => format!("fixed in {fix}"),
            None => "no fix yet".to_string(),
        };
        let description = format!(
            "{} ({}): {} {} in {}{}, {fix}: {}",
            f.id(),
            f.severity,
            v.pkg_name,
            v.installed_version,
            self.ctx.image,
            f.on_platforms(),
            f.title()
        );
        let (path, line) = match (&self.ctx.dockerfile, f.package_path()) {
            (Some(d), _) => (d.path.clone(), d.from_line),
            (None, Some(p)) => (p.trim_start_matches('/').to_string(), 1),
            (None, None) => ("Dockerfile".to_string(), 1),
        };
        // Code Quality matches issues between branches by fingerprint: the
        // finding's identity, which leaves out the image tag.
        let fingerprint = f.key.hex();
        let issue = Issue {
            kind: "issue",
            check_name: f.id(),
            description,
            categories: ["Security"],
            severity: f.severity.codequality(),
            fingerprint,
            location: IssueLocation {
                path,
                lines: Lines { begin: line },
            },
        };
        self.out
            .element(&issue)
            .map_err(|e| write_error(&self.path, e))
    }

    pub fn finish(self) -> JobResult<()> {
        self.out.finish(b"]")
    }
}
