//! JUnit XML for GitLab's test report: one failing test case per reported
//! finding, a skipped one per suppressed finding, and one passing case that
//! records that the scan ran (a clean scan must not show zero tests).
//!
//! Streamed with quick-xml's writer, like the other reports: the counts come
//! from the classify pass, so the `<testsuite>` header is written first and
//! each case as it is met. (quick-junit, used before, builds the whole
//! report in memory: +117 MB peak RSS and +3.5 s on the 200,000-finding
//! benchmark, bench/scan-image.) quick-xml escapes markup; the characters
//! XML 1.0 cannot carry at all (most C0 controls) are dropped here.

use std::borrow::Cow;
use std::path::Path;

use kit::JobResult;
use kit::fsutil::{AtomicFile, write_error};
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

use super::{ScanContext, rfc3339};
use crate::finding::Finding;

pub struct JunitWriter<'c> {
    xml: Writer<AtomicFile>,
    path: std::path::PathBuf,
    ctx: &'c ScanContext,
}

/// Text XML 1.0 can carry: C0 controls other than tab, newline and carriage
/// return, and U+FFFE/U+FFFF, are dropped (they cannot be escaped).
fn xml_text(s: &str) -> Cow<'_, str> {
    let bad = |c: char| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{fffe}' | '\u{ffff}')
    };
    if s.chars().any(bad) {
        Cow::Owned(s.chars().filter(|c| !bad(*c)).collect())
    } else {
        Cow::Borrowed(s)
    }
}

impl<'c> JunitWriter<'c> {
    /// Opens the file now, so an unwritable path fails before any work, and
    /// writes the header with the counts of the cases to come.
    pub fn create(
        path: &Path,
        ctx: &'c ScanContext,
        failures: u64,
        skipped: u64,
    ) -> JobResult<Self> {
        let file = AtomicFile::create(path)?;
        let mut w = JunitWriter {
            xml: Writer::new_with_indent(file, b' ', 4),
            path: path.to_path_buf(),
            ctx,
        };
        let name = format!("scan-image {}", ctx.image);
        let tests = (failures + skipped + 1).to_string();
        let failures = failures.to_string();
        let time = run_time(ctx);
        w.event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        w.event(Event::Start(BytesStart::new("testsuites").with_attributes(
            [
                ("name", xml_text(&name).as_ref()),
                ("tests", &tests),
                ("failures", &failures),
                ("errors", "0"),
                ("time", &time),
            ],
        )))?;
        w.event(Event::Start(BytesStart::new("testsuite").with_attributes(
            [
                ("name", xml_text(&name).as_ref()),
                ("tests", &tests),
                ("disabled", "0"),
                ("errors", "0"),
                ("failures", &failures),
                ("skipped", &skipped.to_string()),
                ("time", &time),
                ("timestamp", &rfc3339(ctx.started)),
            ],
        )))?;
        let ran = format!("container scan of {} ran", ctx.image);
        w.event(Event::Empty(BytesStart::new("testcase").with_attributes([
            ("name", xml_text(&ran).as_ref()),
            ("classname", "scan-image"),
            ("time", &time),
        ])))?;
        Ok(w)
    }

    fn event(&mut self, e: Event<'_>) -> JobResult<()> {
        self.xml
            .write_event(e)
            .map_err(|e| write_error(&self.path, e))
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

    /// `<testcase name classname>` around `inner`.
    fn case(&mut self, f: &Finding<'_, '_>, inner: &[Event<'_>]) -> JobResult<()> {
        let name = Self::case_name(f);
        let classname = self.classname(f);
        self.event(Event::Start(BytesStart::new("testcase").with_attributes([
            ("name", xml_text(&name).as_ref()),
            ("classname", xml_text(&classname).as_ref()),
        ])))?;
        for e in inner {
            self.event(e.borrow())?;
        }
        self.event(Event::End(BytesEnd::new("testcase")))
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
        let message = format!("{} {}: {}", f.severity, f.id(), f.title());
        let severity = f.severity.to_string();
        let start = BytesStart::new("failure").with_attributes([
            ("message", xml_text(&message).as_ref()),
            ("type", severity.as_str()),
        ]);
        self.case(
            f,
            &[
                Event::Start(start),
                Event::Text(BytesText::new(&xml_text(body.trim_end()))),
                Event::End(BytesEnd::new("failure")),
            ],
        )
    }

    pub fn add_skipped(&mut self, f: &Finding<'_, '_>, reason: &str) -> JobResult<()> {
        let message = format!("suppressed: {reason}");
        let skipped =
            BytesStart::new("skipped").with_attributes([("message", xml_text(&message).as_ref())]);
        self.case(f, &[Event::Empty(skipped)])
    }

    pub fn finish(mut self) -> JobResult<()> {
        self.event(Event::End(BytesEnd::new("testsuite")))?;
        self.event(Event::End(BytesEnd::new("testsuites")))?;
        self.xml.into_inner().commit()
    }
}

/// Seconds, as JUnit writes them.
fn run_time(ctx: &ScanContext) -> String {
    format!("{:.3}", ctx.run_seconds.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_control_characters_come_out_well_formed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.xml");
        let mut w = Writer::new(AtomicFile::create(&path).unwrap());
        let msg = "a<b>&\"c'\u{1}";
        w.write_event(Event::Empty(
            BytesStart::new("failure").with_attributes([("message", xml_text(msg).as_ref())]),
        ))
        .unwrap();
        w.write_event(Event::Text(BytesText::new(&xml_text("x</failure>\u{1b}"))))
            .unwrap();
        w.into_inner().commit().unwrap();
        let xml = std::fs::read_to_string(&path).unwrap();
        assert!(xml.contains("a&lt;b&gt;&amp;&quot;c&apos;"), "{xml}");
        assert!(
            !xml.contains('\u{1}') && !xml.contains('\u{1b}') && !xml.contains("x</failure>"),
            "{xml}"
        );
    }
}
