//! The GitLab job log: collapsible sections, aligned tables, one-line
//! progress. Everything goes to stderr; stdout is kept for a job's result
//! (such as `DST@sha256:…`) so scripts can capture it.
//!
//! Section markers are GitLab's log protocol and are written whenever the
//! job runs under GitLab CI (the log is not a tty there). Colour is only
//! used on a real terminal and never when `NO_COLOR` is set.

use std::io::{IsTerminal, Write};
use std::time::{SystemTime, UNIX_EPOCH};

/// Whether we are inside a GitLab CI job.
pub fn in_gitlab() -> bool {
    std::env::var_os("GITLAB_CI").is_some()
}

/// Whether stderr is a terminal that may get ANSI colour.
pub fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A collapsible log section; ends when dropped.
pub struct Section {
    id: String,
    gitlab: bool,
}

impl Section {
    /// Starts a section. `id` must be unique in the job and made of
    /// `[a-z0-9_.-]`; other characters are replaced.
    pub fn start(id: &str, header: &str, collapsed: bool) -> Section {
        Self::start_with(id, header, collapsed, in_gitlab())
    }

    fn start_with(id: &str, header: &str, collapsed: bool, gitlab: bool) -> Section {
        let id: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let line = start_marker(&id, header, collapsed, gitlab, now());
        let _ = writeln!(std::io::stderr(), "{line}");
        Section { id, gitlab }
    }
}

impl Drop for Section {
    fn drop(&mut self) {
        if self.gitlab {
            let _ = writeln!(std::io::stderr(), "{}", end_marker(&self.id, now()));
        }
    }
}

fn start_marker(id: &str, header: &str, collapsed: bool, gitlab: bool, ts: u64) -> String {
    if gitlab {
        let opts = if collapsed { "[collapsed=true]" } else { "" };
        format!("\x1b[0Ksection_start:{ts}:{id}{opts}\r\x1b[0K{header}")
    } else {
        format!("== {header}")
    }
}

fn end_marker(id: &str, ts: u64) -> String {
    format!("\x1b[0Ksection_end:{ts}:{id}\r\x1b[0K")
}

/// Prints one log line to stderr.
pub fn info(line: impl AsRef<str>) {
    let _ = writeln!(std::io::stderr(), "{}", line.as_ref());
}

/// Prints a warning line to stderr (yellow on a terminal).
pub fn warn(line: impl AsRef<str>) {
    let l = line.as_ref();
    if colour() {
        let _ = writeln!(std::io::stderr(), "\x1b[33mwarning:\x1b[0m {l}");
    } else {
        let _ = writeln!(std::io::stderr(), "warning: {l}");
    }
}

/// Renders rows as a left-aligned text table with a header rule.
/// Cells are cut at `max_cell` characters so one long title cannot push the
/// table off the screen.
pub fn table(headers: &[&str], rows: &[Vec<String>], max_cell: usize) -> String {
    let cut = |s: &str| -> String {
        let s = s.replace(['\n', '\r', '\t'], " ");
        if s.chars().count() > max_cell {
            let mut t: String = s.chars().take(max_cell.saturating_sub(1)).collect();
            t.push('…');
            t
        } else {
            s
        }
    };
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cut(c)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let parts: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    let mut out = line(&mut headers.iter().copied());
    out.push('\n');
    out.push_str(
        &widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("  "),
    );
    out.push('\n');
    for r in &rows {
        out.push_str(&line(&mut r.iter().map(String::as_str)));
        out.push('\n');
    }
    out
}

/// Progress on one line: rewritten in place on a terminal; in a CI log, a
/// line only at each quarter so the log stays short.
pub struct Progress {
    label: String,
    total: u64,
    last_quarter: u64,
    tty: bool,
}

impl Progress {
    pub fn new(label: &str, total: u64) -> Self {
        Progress {
            label: label.to_string(),
            total,
            last_quarter: 0,
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub fn update(&mut self, done: u64) {
        let pct = (done * 100).checked_div(self.total).unwrap_or(100).min(100);
        if self.tty {
            let _ = write!(
                std::io::stderr(),
                "\r{}: {pct:>3}% ({done}/{})",
                self.label,
                self.total
            );
        } else if pct / 25 > self.last_quarter {
            self.last_quarter = pct / 25;
            let _ = writeln!(
                std::io::stderr(),
                "{}: {pct}% ({done}/{})",
                self.label,
                self.total
            );
        }
    }

    pub fn finish(self) {
        if self.tty {
            let _ = writeln!(std::io::stderr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitlab_section_markers() {
        assert_eq!(
            start_marker("scan_summary", "Findings", true, true, 1700000000),
            "\x1b[0Ksection_start:1700000000:scan_summary[collapsed=true]\r\x1b[0KFindings"
        );
        assert_eq!(
            end_marker("scan_summary", 5),
            "\x1b[0Ksection_end:5:scan_summary\r\x1b[0K"
        );
        // Outside GitLab: plain text, no escape codes.
        let plain = start_marker("x", "Findings", true, false, 1);
        assert_eq!(plain, "== Findings");
        assert!(!plain.contains('\x1b'));
    }

    #[test]
    fn table_aligns_and_cuts() {
        let t = table(
            &["ID", "PKG"],
            &[
                vec!["CVE-1".into(), "openssl".into()],
                vec!["X".into(), "a\nb".into()],
            ],
            10,
        );
        assert_eq!(
            t,
            "ID     PKG\n-----  -------\nCVE-1  openssl\nX      a b\n"
        );
        let t = table(&["T"], &[vec!["abcdefghijkl".into()]], 5);
        assert!(t.contains("abcd…"));
    }
}
