//! `--path` values: one rule for every mode.
//!
//! Each entry is a directory (or file) relative to the repo root, without
//! `..`. An empty entry (`a,,b`, a trailing comma in `BUMP_PATHS`) is an
//! error, never "the whole repo": one stray comma must not widen a bump
//! meant for one overlay to every overlay. `.` means the whole repo, and
//! only when it is the sole entry.

/// Why a `--path` list cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error(
        "--path has an empty entry (in {list:?}; a stray or trailing comma?): name each directory, or give `.` alone for the whole repo"
    )]
    Empty { list: String },
    #[error("--path {0:?} must be relative to the repo and must not contain '..'")]
    Outside(String),
    #[error("--path `.` (the whole repo) must be the only entry, not one of {list:?}")]
    DotWithOthers { list: String },
}

/// Validates and cleans the entries: no empty entry, relative, no `..`,
/// without `./` in front or `/` at the ends. Returns an empty list for the
/// whole repo (no entries, or `.` alone).
pub fn normalize(raw: &[String]) -> Result<Vec<String>, PathError> {
    let list = raw.join(",");
    let mut out: Vec<String> = Vec::new();
    let mut dot = false;
    for p in raw {
        let t = p.trim();
        if t.is_empty() {
            return Err(PathError::Empty { list });
        }
        if t.starts_with('/') || t.split('/').any(|c| c == "..") {
            return Err(PathError::Outside(p.clone()));
        }
        let mut clean = t.trim_end_matches('/');
        while let Some(rest) = clean.strip_prefix("./") {
            clean = rest.trim_start_matches('/');
        }
        if clean.is_empty() || clean == "." {
            dot = true;
            continue;
        }
        if !out.iter().any(|o| o == clean) {
            out.push(clean.to_string());
        }
    }
    if dot && (!out.is_empty() || raw.len() > 1) {
        return Err(PathError::DotWithOthers { list });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(xs: &[&str]) -> Result<Vec<String>, PathError> {
        normalize(&xs.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn empty_entries_are_refused_dot_only_alone() {
        assert_eq!(n(&[]).unwrap(), Vec::<String>::new());
        assert_eq!(n(&["."]).unwrap(), Vec::<String>::new());
        assert_eq!(n(&["./apps/", "b"]).unwrap(), vec!["apps", "b"]);
        assert!(matches!(n(&["a", "", "b"]), Err(PathError::Empty { .. })));
        assert!(matches!(n(&["a", ""]), Err(PathError::Empty { .. })));
        assert!(matches!(n(&[" "]), Err(PathError::Empty { .. })));
        assert!(matches!(
            n(&[".", "a"]),
            Err(PathError::DotWithOthers { .. })
        ));
        assert!(matches!(
            n(&[".", "."]),
            Err(PathError::DotWithOthers { .. })
        ));
        assert!(matches!(n(&["../x"]), Err(PathError::Outside(_))));
        assert!(matches!(n(&["/etc"]), Err(PathError::Outside(_))));
        assert!(matches!(n(&["a/../../x"]), Err(PathError::Outside(_))));
    }
}
