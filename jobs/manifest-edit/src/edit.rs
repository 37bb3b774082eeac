//! Byte-span edits: replacing a scalar in its original quoting style,
//! inserting or removing one mapping entry, applying edits, and showing
//! them as a unified diff.

use crate::yaml::{Node, Style};

/// Replace `src[start..end]` with `text` (an insertion when start == end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// Applies non-overlapping edits. Overlapping edits (two rules writing the
/// same scalar) keep the first; identical duplicates are dropped.
pub fn apply(src: &str, edits: &[Edit]) -> String {
    let mut sorted: Vec<&Edit> = edits.iter().collect();
    sorted.sort_by_key(|e| (e.start, e.end));
    let mut out = String::with_capacity(src.len() + 64);
    let mut pos = 0;
    for e in sorted {
        if e.start < pos {
            continue;
        }
        out.push_str(&src[pos..e.start]);
        out.push_str(&e.text);
        pos = e.end;
    }
    out.push_str(&src[pos..]);
    out
}

/// Whether a value written as a plain scalar would be read back as
/// something other than the same string (a number, bool, null, or a
/// different string because of YAML indicators).
pub fn needs_quotes(v: &str) -> bool {
    if v.is_empty() || v.trim() != v {
        return true;
    }
    let lower = v.to_ascii_lowercase();
    let special = [
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~", ".inf", "-.inf", "+.inf",
        ".nan",
    ];
    if special.contains(&lower.as_str()) {
        return true;
    }
    // Numbers in YAML 1.1 or 1.2: ints, floats, 0x/0o, 1_000, 1e3, sexagesimal.
    let numeric_chars = v
        .chars()
        .all(|c| c.is_ascii_digit() || "+-._:eExXoOabcdefABCDEF".contains(c));
    if numeric_chars && v.chars().any(|c| c.is_ascii_digit()) && looks_numeric(v) {
        return true;
    }
    let first = v.chars().next().unwrap_or(' ');
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        return true;
    }
    v.contains(": ") || v.contains(" #") || v.ends_with(':') || v.contains(['\n', '\r', '\t'])
}

fn looks_numeric(v: &str) -> bool {
    let t = v.trim_start_matches(['+', '-']).replace('_', "");
    if t.parse::<f64>().is_ok() {
        return true;
    }
    let hex = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X"));
    if hex.is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit())) {
        return true;
    }
    let oct = t.strip_prefix("0o");
    if oct.is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_digit(8))) {
        return true;
    }
    // 1.1 sexagesimal: 1:20, 190:20:30
    t.contains(':')
        && t.split(':')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// Renders `value` in the style the old scalar used. A plain scalar whose
/// new value would change type gets double quotes (the only bytes added).
pub fn render(style: Style, value: &str) -> String {
    match style {
        Style::Single if !value.contains(['\n', '\r']) => {
            format!("'{}'", value.replace('\'', "''"))
        }
        Style::Plain if !needs_quotes(value) => value.to_string(),
        _ => double_quoted(value),
    }
}

pub fn double_quoted(value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 2);
    s.push('"');
    for c in value.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            '\r' => s.push_str("\\r"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// Replaces a scalar node's text with `value` in its own style.
pub fn replace_scalar(node: &Node, value: &str) -> Edit {
    Edit {
        start: node.start,
        end: node.end,
        text: render(node.style().unwrap_or(Style::Plain), value),
    }
}

/// The line ending the file uses (CRLF when its first line ends so).
pub fn newline_of(src: &str) -> &'static str {
    match src.find('\n') {
        Some(i) if i > 0 && src.as_bytes()[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}

fn line_start(src: &str, pos: usize) -> usize {
    src[..pos].rfind('\n').map_or(0, |i| i + 1)
}

/// Adds `key: value` to a mapping, after its last entry, with the same
/// indentation as its first key (block) or as `, key: value` (flow).
/// Returns None when the mapping has no entries to align with.
pub fn insert_entry(src: &str, map: &Node, key: &str, value: &str) -> Option<Edit> {
    let (first_key, _) = map.entries().first()?;
    let rendered = render(Style::Plain, value);
    if map.flow {
        // Before the closing brace, after the last value.
        let close = src[..map.end].rfind('}')?;
        let at = src[..close].trim_end().len();
        return Some(Edit {
            start: at,
            end: at,
            text: format!(", {key}: {rendered}"),
        });
    }
    let ls = line_start(src, first_key.start);
    let prefix = &src[ls..first_key.start];
    // Under a "- " the key column is the prefix length with dashes as spaces.
    let indent: String = prefix
        .chars()
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let end = map.deep_end();
    // After the end of the line holding the last value (keeps its comment).
    let line_end = src[end..].find('\n').map_or(src.len(), |i| end + i);
    let line_end = if src[..line_end].ends_with('\r') {
        line_end - 1
    } else {
        line_end
    };
    let nl = newline_of(src);
    Some(Edit {
        start: line_end,
        end: line_end,
        text: format!("{nl}{indent}{key}: {rendered}"),
    })
}

/// Removes one `key: value` entry of a block mapping: its whole line(s).
/// Returns None for flow mappings, a sole entry, or an entry that shares
/// its line with another.
pub fn remove_entry(src: &str, map: &Node, key: &str) -> Option<Edit> {
    if map.flow || map.entries().len() < 2 {
        return None;
    }
    let (k, v) = map
        .entries()
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))?;
    let ls = line_start(src, k.start);
    if !src[ls..k.start].chars().all(|c| c == ' ' || c == '\t') {
        // "- digest: x": the entry carries the sequence dash; replace with
        // the next entry would reindent, so leave it.
        return None;
    }
    let vend = v.deep_end();
    let le = src[vend..].find('\n').map_or(src.len(), |i| vend + i + 1);
    Some(Edit {
        start: ls,
        end: le,
        text: String::new(),
    })
}

/// A unified diff of one file (hunks with 3 lines of context), as
/// `git diff` shows it; empty when nothing changed.
pub fn unified_diff(path: &str, old: &str, new: &str) -> String {
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    #[test]
    fn quoting_keeps_style_and_types() {
        assert_eq!(render(Style::Plain, "1.2.3"), "1.2.3");
        assert_eq!(render(Style::Plain, "1.2"), "\"1.2\"");
        assert_eq!(render(Style::Plain, "42"), "\"42\"");
        assert_eq!(render(Style::Plain, "true"), "\"true\"");
        assert_eq!(render(Style::Plain, "1e3"), "\"1e3\"");
        assert_eq!(render(Style::Plain, "0x1f"), "\"0x1f\"");
        assert_eq!(render(Style::Plain, "v1.2"), "v1.2");
        assert_eq!(render(Style::Plain, "a/b:1@sha256:ab"), "a/b:1@sha256:ab");
        assert_eq!(render(Style::Single, "it's"), "'it''s'");
        assert_eq!(render(Style::Double, "a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn insert_and_remove_entries() {
        let src = "images:\r\n  - name: a # x\r\n    newTag: \"1\" # tag\r\nz: 1";
        let docs = parse(src).unwrap();
        let entry = &docs[0].get("images").unwrap().items()[0];
        let e = insert_entry(src, entry, "digest", "sha256:ab").unwrap();
        assert_eq!(
            apply(src, &[e]),
            "images:\r\n  - name: a # x\r\n    newTag: \"1\" # tag\r\n    digest: sha256:ab\r\nz: 1"
        );
        let e = remove_entry(src, entry, "newTag").unwrap();
        assert_eq!(apply(src, &[e]), "images:\r\n  - name: a # x\r\nz: 1");
        assert!(remove_entry(src, entry, "name").is_none());
        let flow = "images: [{name: a, newTag: '1'}]\n";
        let docs = parse(flow).unwrap();
        let entry = &docs[0].get("images").unwrap().items()[0];
        let e = insert_entry(flow, entry, "digest", "sha256:ab").unwrap();
        assert_eq!(
            apply(flow, &[e]),
            "images: [{name: a, newTag: '1', digest: sha256:ab}]\n"
        );
    }

    #[test]
    fn diff_shows_changed_lines() {
        let old = "a: 1\nb: 2\nc: 3\nd: 4\ne: 5\nf: 6\ng: 7\nh: 8\nx: 0\ny: 0\ni: 9\n";
        let new = old.replace("b: 2", "b: 3").replace("i: 9\n", "i: 10");
        let d = unified_diff("x.yaml", old, &new);
        assert!(
            d.starts_with("--- a/x.yaml\n+++ b/x.yaml\n@@ -1,5 +1,5 @@\n a: 1\n-b: 2\n+b: 3\n"),
            "{d}"
        );
        assert!(d.contains("@@ -8,4 +8,4 @@\n h: 8\n"), "{d}");
        assert!(
            d.contains("-i: 9\n+i: 10\n\\ No newline at end of file\n"),
            "{d}"
        );
        assert_eq!(unified_diff("x", old, old), "");
    }
}
