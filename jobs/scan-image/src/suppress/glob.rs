//! Path globs as trivy's ignore file uses them: `*` and `?` within one path
//! segment, `**` across segments.

/// Whether `path` matches `pattern`.
pub fn matches(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.trim_start_matches("./").split('/').collect();
    let s: Vec<&str> = path
        .trim_start_matches("./")
        .trim_start_matches('/')
        .split('/')
        .collect();
    match_segments(&p, &s)
}

fn match_segments(p: &[&str], s: &[&str]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((&"**", rest)) => (0..=s.len()).any(|i| match_segments(rest, &s[i..])),
        Some((first, rest)) => match s.split_first() {
            Some((seg, srest)) => {
                match_segment(first.as_bytes(), seg.as_bytes()) && match_segments(rest, srest)
            }
            None => false,
        },
    }
}

fn match_segment(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            match_segment(&p[1..], s) || (!s.is_empty() && match_segment(p, &s[1..]))
        }
        (Some(b'?'), Some(_)) => match_segment(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => match_segment(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs() {
        assert!(matches(
            "usr/local/lib/python3.9/site-packages/setuptools-58.1.0.dist-info/METADATA",
            "usr/local/lib/python3.9/site-packages/setuptools-58.1.0.dist-info/METADATA"
        ));
        assert!(matches("usr/lib/*/METADATA", "usr/lib/x/METADATA"));
        assert!(!matches("usr/lib/*/METADATA", "usr/lib/x/y/METADATA"));
        assert!(matches("**/package-lock.json", "app/web/package-lock.json"));
        assert!(matches("**/package-lock.json", "package-lock.json"));
        assert!(matches("app/**", "app/a/b"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
    }
}
