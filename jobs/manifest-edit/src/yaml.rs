//! A read-only YAML tree with byte spans, built from `saphyr-parser` events.
//!
//! The parser reports positions in characters; this module converts them to
//! byte offsets and locates each scalar's exact source text (after any anchor
//! or tag), so an edit can replace just those bytes and nothing else.

use saphyr_parser::{Event, Parser, ScalarStyle};

/// How a scalar is written in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Single,
    Double,
    /// `|` or `>` block scalars: never rewritten by this tool.
    Block,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Scalar { value: String, style: Style },
    Map(Vec<(Node, Node)>),
    Seq(Vec<Node>),
    Alias,
}

/// One node with its source position.
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: Kind,
    /// Byte offset where the node's own text starts (for scalars: the
    /// opening quote or first character, after anchor and tag).
    pub start: usize,
    /// Byte offset just after the node's text (for scalars: after the
    /// closing quote).
    pub end: usize,
    /// 1-based line of `start`.
    pub line: usize,
    /// Whether a flow collection (`{}` / `[]`).
    pub flow: bool,
    /// The anchor this node defines (`&a`), or for an alias the anchor it
    /// refers to; 0 when none.
    pub anchor: usize,
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    pub fn style(&self) -> Option<Style> {
        match &self.kind {
            Kind::Scalar { style, .. } => Some(*style),
            _ => None,
        }
    }

    pub fn entries(&self) -> &[(Node, Node)] {
        match &self.kind {
            Kind::Map(e) => e,
            _ => &[],
        }
    }

    pub fn items(&self) -> &[Node] {
        match &self.kind {
            Kind::Seq(i) => i,
            _ => &[],
        }
    }

    pub fn is_map(&self) -> bool {
        matches!(self.kind, Kind::Map(_))
    }

    /// The value under a scalar key of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The key node of an entry.
    pub fn key_node(&self, key: &str) -> Option<&Node> {
        self.entries()
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, _)| k)
    }

    /// The scalar string under `key`, if it is a scalar.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Node::as_str)
    }

    /// Follows a path of mapping keys.
    pub fn path(&self, keys: &[&str]) -> Option<&Node> {
        keys.iter().try_fold(self, |n, k| n.get(k))
    }

    /// The byte offset just after the last text that belongs to this node.
    pub fn deep_end(&self) -> usize {
        match &self.kind {
            Kind::Map(e) if !self.flow => e.last().map_or(self.end, |(_, v)| v.deep_end()),
            Kind::Seq(i) if !self.flow => i.last().map_or(self.end, Node::deep_end),
            _ => self.end,
        }
    }
}

/// The node that defines anchor `id` inside `root` (aliases point back to it).
pub fn find_anchor(root: &Node, id: usize) -> Option<&Node> {
    if id == 0 {
        return None;
    }
    if root.anchor == id && !matches!(root.kind, Kind::Alias) {
        return Some(root);
    }
    match &root.kind {
        Kind::Map(e) => e
            .iter()
            .find_map(|(k, v)| find_anchor(k, id).or_else(|| find_anchor(v, id))),
        Kind::Seq(i) => i.iter().find_map(|n| find_anchor(n, id)),
        _ => None,
    }
}

/// A parse failure: 1-based line and column, and the parser's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: usize,
    pub col: usize,
    pub reason: String,
}

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} column {}: {}", self.line, self.col, self.reason)
    }
}

impl std::error::Error for YamlError {}

/// Converts the parser's character indexes to byte offsets. Indexes arrive
/// almost in order, so a cursor makes this linear; pure-ASCII input skips it.
struct CharMap<'a> {
    src: &'a str,
    ascii: bool,
    char_pos: usize,
    byte_pos: usize,
}

impl<'a> CharMap<'a> {
    fn new(src: &'a str) -> Self {
        CharMap {
            src,
            ascii: src.is_ascii(),
            char_pos: 0,
            byte_pos: 0,
        }
    }

    fn byte(&mut self, char_index: usize) -> usize {
        if self.ascii {
            return char_index.min(self.src.len());
        }
        if char_index < self.char_pos {
            self.char_pos = 0;
            self.byte_pos = 0;
        }
        let mut it = self.src[self.byte_pos..].char_indices();
        while self.char_pos < char_index {
            match it.next() {
                Some((_, c)) => {
                    self.byte_pos += c.len_utf8();
                    self.char_pos += 1;
                }
                None => break,
            }
        }
        self.byte_pos
    }
}

enum Frame {
    Map {
        start: usize,
        line: usize,
        flow: bool,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        pending: Option<Node>,
    },
    Seq {
        start: usize,
        line: usize,
        flow: bool,
        anchor: usize,
        items: Vec<Node>,
    },
}

/// Parses every document of a YAML stream into trees with byte spans.
pub fn parse(src: &str) -> Result<Vec<Node>, YamlError> {
    let mut map = CharMap::new(src);
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let err_at = |line: usize, col: usize, reason: String| YamlError { line, col, reason };
    for ev in Parser::new_from_str(src) {
        let (event, span) = ev.map_err(|e| {
            err_at(
                e.marker().line(),
                e.marker().col() + 1,
                e.info().to_string(),
            )
        })?;
        let s = map.byte(span.start.index());
        let e = map.byte(span.end.index());
        let line = span.start.line();
        let node = match event {
            Event::Scalar(value, style, anchor, _) => {
                let (start, end) = locate_scalar(src, s, e, &value, style).ok_or_else(|| {
                    err_at(
                        line,
                        span.start.col() + 1,
                        "cannot locate the scalar's text in the source".into(),
                    )
                })?;
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted => Style::Single,
                    ScalarStyle::DoubleQuoted => Style::Double,
                    _ => Style::Block,
                };
                let line = line + src[s..start].matches('\n').count();
                Some(Node {
                    kind: Kind::Scalar {
                        value: value.into_owned(),
                        style,
                    },
                    start,
                    end,
                    line,
                    flow: false,
                    anchor,
                })
            }
            Event::Alias(anchor) => Some(Node {
                kind: Kind::Alias,
                start: s,
                end: e,
                line,
                flow: false,
                anchor,
            }),
            Event::MappingStart(anchor, _) => {
                let flow = src[s..].starts_with('{')
                    || skip_props(src, s).is_some_and(|p| src[p..].starts_with('{'));
                stack.push(Frame::Map {
                    start: s,
                    line,
                    flow,
                    anchor,
                    entries: Vec::new(),
                    pending: None,
                });
                None
            }
            Event::SequenceStart(anchor, _) => {
                let flow = src[s..].starts_with('[')
                    || skip_props(src, s).is_some_and(|p| src[p..].starts_with('['));
                stack.push(Frame::Seq {
                    start: s,
                    line,
                    flow,
                    anchor,
                    items: Vec::new(),
                });
                None
            }
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    start,
                    line,
                    flow,
                    anchor,
                    entries,
                    ..
                }) => {
                    let end = if flow {
                        e
                    } else {
                        entries.last().map_or(e, |(_, v)| v.deep_end())
                    };
                    Some(Node {
                        kind: Kind::Map(entries),
                        start,
                        end,
                        line,
                        flow,
                        anchor,
                    })
                }
                _ => return Err(err_at(line, 1, "unbalanced mapping".into())),
            },
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq {
                    start,
                    line,
                    flow,
                    anchor,
                    items,
                }) => {
                    let end = if flow {
                        e
                    } else {
                        items.last().map_or(e, Node::deep_end)
                    };
                    Some(Node {
                        kind: Kind::Seq(items),
                        start,
                        end,
                        line,
                        flow,
                        anchor,
                    })
                }
                _ => return Err(err_at(line, 1, "unbalanced sequence".into())),
            },
            _ => None,
        };
        let Some(node) = node else { continue };
        match stack.last_mut() {
            None => docs.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries, pending, ..
            }) => match pending.take() {
                None => *pending = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
    Ok(docs)
}

/// Skips anchors (`&a`) and tags (`!t`, `!!str`) and the blanks after them.
fn skip_props(src: &str, mut i: usize) -> Option<usize> {
    let b = src.as_bytes();
    loop {
        match b.get(i) {
            Some(b'&') | Some(b'!') => {
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
            }
            Some(_) => return Some(i),
            None => return None,
        }
    }
}

/// Finds the exact byte range of a scalar's text, starting at the parser's
/// span start (which includes any anchor and tag).
fn locate_scalar(
    src: &str,
    s: usize,
    e: usize,
    value: &str,
    style: ScalarStyle,
) -> Option<(usize, usize)> {
    let b = src.as_bytes();
    // An empty plain scalar (`key:` with nothing after) has no text.
    if style == ScalarStyle::Plain && value.is_empty() && s == e {
        return Some((s, s));
    }
    let start = skip_props(src, s)?;
    match style {
        ScalarStyle::DoubleQuoted => {
            if b.get(start) != Some(&b'"') {
                return None;
            }
            let mut i = start + 1;
            while i < b.len() {
                match b[i] {
                    b'\\' => i += 2,
                    b'"' => return Some((start, i + 1)),
                    _ => i += 1,
                }
            }
            None
        }
        ScalarStyle::SingleQuoted => {
            if b.get(start) != Some(&b'\'') {
                return None;
            }
            let mut i = start + 1;
            while i < b.len() {
                if b[i] == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    return Some((start, i + 1));
                }
                i += 1;
            }
            None
        }
        ScalarStyle::Plain => {
            if src[start..].starts_with(value) {
                return Some((start, start + value.len()));
            }
            // A plain scalar folded over lines: the parser's end is right.
            let end = e.max(start);
            let text = src[start..end].trim_end();
            Some((start, start + text.len()))
        }
        _ => Some((start, e.max(start))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text<'a>(src: &'a str, n: &Node) -> &'a str {
        &src[n.start..n.end]
    }

    #[test]
    fn spans_cover_exact_scalar_text() {
        let src = "a: &x 'q''x' # c\nb: !!str \"d\\\"q\"\nc: *x\né: ünï   # 注释\nz: multi\n  line\nf: {g: \"h\", i: [j, 'k']}\n";
        let docs = parse(src).unwrap();
        let root = &docs[0];
        assert_eq!(text(src, root.get("a").unwrap()), "'q''x'");
        assert_eq!(root.get_str("a"), Some("q'x"));
        assert_eq!(text(src, root.get("b").unwrap()), "\"d\\\"q\"");
        assert!(matches!(root.get("c").unwrap().kind, Kind::Alias));
        assert_eq!(text(src, root.get("é").unwrap()), "ünï");
        assert_eq!(root.get("é").unwrap().line, 4);
        assert_eq!(text(src, root.get("z").unwrap()), "multi\n  line");
        let f = root.get("f").unwrap();
        assert!(f.flow);
        assert_eq!(text(src, f.get("g").unwrap()), "\"h\"");
        assert_eq!(text(src, &f.get("i").unwrap().items()[1]), "'k'");
    }

    #[test]
    fn multi_document_and_errors() {
        let docs = parse("a: 1\n---\nb: 2\n...\n---\n- x\n").unwrap();
        assert_eq!(docs.len(), 3);
        let e = parse("a: b\nc: [1, 2\nd: e\n").unwrap_err();
        assert!(e.line >= 2, "{e}");
        let e = parse("a: b\n c: d\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn deep_end_of_block_map_is_last_value() {
        let src = "images:\n  - name: a\n    newTag: \"1\"\n\nother: x\n";
        let docs = parse(src).unwrap();
        let entry = &docs[0].get("images").unwrap().items()[0];
        assert_eq!(
            &src[..entry.deep_end()],
            "images:\n  - name: a\n    newTag: \"1\""
        );
    }
}

#[cfg(test)]
mod bom_tests {
    use super::*;

    #[test]
    fn byte_order_mark_keeps_spans_exact() {
        let src = "\u{feff}a: 'x'\nb: ünï\nc: \"y\"\n";
        let docs = parse(src).unwrap();
        for (k, want) in [("a", "'x'"), ("b", "ünï"), ("c", "\"y\"")] {
            let n = docs[0].get(k).unwrap();
            assert_eq!(&src[n.start..n.end], want, "{k}");
        }
    }
}
