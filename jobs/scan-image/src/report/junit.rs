//! JUnit XML for GitLab's test report (quick-junit): one failing test case
//! per reported finding, a skipped one per suppressed finding, and one
//! passing case that records that the scan ran (a clean scan must not show
//! zero tests).
//!
//! Unlike the other reports this one is built in memory and written at the
//! end: quick-junit serializes a whole `Report`. It holds a few strings per
//! finding, bounded by the input's size.

use std::path::Path;
use std::time::Duration;

use kit::JobResult;
use kit::fsutil::{AtomicFile, write_error};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite, XmlString};

use super::{ScanContext, rfc3339};
use crate::finding::Finding;

pub struct JunitWriter<'c> {
    file: AtomicFile,
    ctx: &'c ScanContext,
    suite: TestSuite,
}

impl<'c> JunitWriter<'c> {
    /// Opens the file now, so an unwritable path fails before any work.
    /// (`failures` and `skipped` are counted by quick-junit as cases are
    /// added; they are kept in the signature for the streaming writers'
    /// symmetry.)
    pub fn create(
        path: &Path,
        ctx: &'c ScanContext,
        _failures: u64,
        _skipped: u64,
    ) -> JobResult<Self> {
        let file = AtomicFile::create(path)?;
        let name = format!("scan-image {}", ctx.image);
        let mut suite = TestSuite::new(name);
        suite.set_time(run_time(ctx));
        // quick-junit takes a chrono time; the attribute is set as text.
        suite.extra.insert(
            XmlString::new("timestamp"),
            XmlString::new(rfc3339(ctx.started)),
        );
        let mut ran = TestCase::new(
            format!("container scan of {} ran", ctx.image),
            TestCaseStatus::success(),
        );
        ran.set_classname("scan-image").set_time(run_time(ctx));
        suite.add_test_case(ran);
        Ok(JunitWriter { file, ctx, suite })
    }

    fn case_name(f: &Finding<'_, '_>) -> String {
        format!(
            "{} in {} {}{}",
            f.id(),
            f.vuln.pkg_name,
            f.vuln.installed_version,
            f.on_platforms()
        )
    }

    fn classname(&self, f: &Finding<'_, '_>) -> String {
        f.package_path()
            .map_or_else(|| self.ctx.image.clone(), str::to_string)
    }

    pub fn add_failure(&mut self, f: &Finding<'_, '_>) -> JobResult<()> {
        let v = f.vuln;
        let body = format!(
            "{}\nSeverity: {}\nPackage: {} {}\nFixed version: {}\n{}\n{}",
            f.title(),
            f.severity,
            v.pkg_name,
            v.installed_version,
            v.fixed().unwrap_or("none"),
            f.url().unwrap_or(""),
            v.description.as_deref().unwrap_or("")
        );
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
        status
            .set_type(f.severity.to_string())
            .set_message(format!("{} {}: {}", f.severity, f.id(), f.title()))
            .set_description(body.trim_end());
        let mut case = TestCase::new(Self::case_name(f), status);
        case.set_classname(self.classname(f));
        self.suite.add_test_case(case);
        Ok(())
    }

    pub fn add_skipped(&mut self, f: &Finding<'_, '_>, reason: &str) -> JobResult<()> {
        let mut status = TestCaseStatus::skipped();
        status.set_message(format!("suppressed: {reason}"));
        let mut case = TestCase::new(Self::case_name(f), status);
        case.set_classname(self.classname(f));
        self.suite.add_test_case(case);
        Ok(())
    }

    pub fn finish(mut self) -> JobResult<()> {
        let mut report = Report::new(self.suite.name.clone());
        report.set_time(run_time(self.ctx));
        report.add_test_suite(self.suite);
        let path = self.file.path().to_path_buf();
        report
            .serialize(&mut self.file)
            .map_err(|e| write_error(&path, std::io::Error::other(e)))?;
        self.file.commit()
    }
}

fn run_time(ctx: &ScanContext) -> Duration {
    Duration::try_from_secs_f64(ctx.run_seconds.max(0.0)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_control_characters_come_out_well_formed() {
        let mut suite = TestSuite::new("s");
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
        status
            .set_message("a<b>&\"c'\u{1}")
            .set_description("x</failure>\u{1b}");
        suite.add_test_case(TestCase::new("t", status));
        let mut r = Report::new("r");
        r.add_test_suite(suite);
        let xml = r.to_string().unwrap();
        assert!(xml.contains("a&lt;b&gt;&amp;&quot;c&apos;"), "{xml}");
        assert!(
            !xml.contains('\u{1}') && !xml.contains("x</failure>"),
            "{xml}"
        );
    }
}
