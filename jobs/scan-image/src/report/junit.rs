//! JUnit XML for GitLab's test report: one failing test case per reported
//! finding, a skipped one per suppressed finding, and one passing case that
//! records that the scan ran (a clean scan must not show zero tests).

use std::io::Write;
use std::path::Path;

use kit::JobResult;
use kit::fsutil::{AtomicFile, write_error};

use super::{ScanContext, rfc3339};
use crate::finding::Finding;

pub struct JunitWriter<'c> {
    file: AtomicFile,
    ctx: &'c ScanContext,
    path: std::path::PathBuf,
}

impl<'c> JunitWriter<'c> {
    /// `failures` and `skipped` must be known up front: they are attributes
    /// of the suite element that precedes the cases.
    pub fn create(
        path: &Path,
        ctx: &'c ScanContext,
        failures: u64,
        skipped: u64,
    ) -> JobResult<Self> {
        let mut file = AtomicFile::create(path)?;
        let tests = failures + skipped + 1;
        let secs = ctx.run_seconds.max(0.0);
        let name = escape(&format!("scan-image {}", ctx.image));
        let head = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"{name}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{secs:.3}\">\n  <testsuite name=\"{name}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{secs:.3}\" timestamp=\"{}\">\n    <testcase classname=\"scan-image\" name=\"{}\" time=\"{secs:.3}\"/>\n",
            rfc3339(ctx.started),
            escape(&format!("container scan of {} ran", ctx.image)),
        );
        file.write_all(head.as_bytes())
            .map_err(|e| write_error(path, e))?;
        Ok(JunitWriter {
            file,
            ctx,
            path: path.to_path_buf(),
        })
    }

    fn case_name(f: &Finding<'_, '_>) -> String {
        format!(
            "{} in {} {}",
            f.id(),
            f.vuln.pkg_name,
            f.vuln.installed_version
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
        let xml = format!(
            "    <testcase classname=\"{}\" name=\"{}\">\n      <failure type=\"{}\" message=\"{}\">{}</failure>\n    </testcase>\n",
            escape(&self.classname(f)),
            escape(&Self::case_name(f)),
            f.severity,
            escape(&format!("{} {}: {}", f.severity, f.id(), f.title())),
            escape(body.trim_end())
        );
        self.file
            .write_all(xml.as_bytes())
            .map_err(|e| write_error(&self.path, e))
    }

    pub fn add_skipped(&mut self, f: &Finding<'_, '_>, reason: &str) -> JobResult<()> {
        let xml = format!(
            "    <testcase classname=\"{}\" name=\"{}\">\n      <skipped message=\"{}\"/>\n    </testcase>\n",
            escape(&self.classname(f)),
            escape(&Self::case_name(f)),
            escape(&format!("suppressed: {reason}"))
        );
        self.file
            .write_all(xml.as_bytes())
            .map_err(|e| write_error(&self.path, e))
    }

    pub fn finish(mut self) -> JobResult<()> {
        self.file
            .write_all(b"  </testsuite>\n</testsuites>\n")
            .map_err(|e| write_error(&self.path, e))?;
        self.file.commit()
    }
}

/// Escapes text for XML attributes and content, dropping characters XML 1.0
/// cannot carry at all (most C0 controls).
pub fn escape(s: &str) -> String {
    let plain = |b: u8| {
        b >= 0x20 && !matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'') || b == b'\n' || b == b'\t'
    };
    if s.bytes().all(plain) && !s.contains(['\u{FFFE}', '\u{FFFF}']) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' => out.push(c),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup_and_drops_invalid_chars() {
        assert_eq!(escape("a<b>&\"c'\u{1}"), "a&lt;b&gt;&amp;&quot;c&apos;");
    }
}
