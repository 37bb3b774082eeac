//! Path globs as trivy's ignore file uses them (trivy matches with
//! doublestar): `*` and `?` within one path segment, `**` across segments,
//! `[…]` classes and `{a,b}` alternatives; by globset.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// The `paths` of one ignore entry, compiled once.
pub fn compile(patterns: &[String]) -> Result<GlobSet, globset::Error> {
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        set.add(
            GlobBuilder::new(p.trim_start_matches("./"))
                .literal_separator(true)
                .backslash_escape(true)
                .build()?,
        );
    }
    set.build()
}

/// Whether `path` (a package path or target as trivy reports it) matches.
pub fn matches(set: &GlobSet, path: &str) -> bool {
    set.is_match(path.trim_start_matches("./").trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        matches(&compile(&[pattern.to_string()]).unwrap(), path)
    }

    #[test]
    fn globs() {
        assert!(m(
            "usr/local/lib/python3.9/site-packages/setuptools-58.1.0.dist-info/METADATA",
            "usr/local/lib/python3.9/site-packages/setuptools-58.1.0.dist-info/METADATA"
        ));
        assert!(m("usr/lib/*/METADATA", "usr/lib/x/METADATA"));
        assert!(!m("usr/lib/*/METADATA", "usr/lib/x/y/METADATA"));
        assert!(m("**/package-lock.json", "app/web/package-lock.json"));
        assert!(m("**/package-lock.json", "package-lock.json"));
        assert!(m("app/**", "app/a/b"));
        assert!(m("./app/**", "/app/a/b"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(!m("a?c", "a/c"));
        assert!(m("lib/{a,b}.jar", "lib/b.jar"));
        assert!(m("lib/[ab].jar", "lib/a.jar"));
        assert!(compile(&["lib/[a.jar".to_string()]).is_err());
    }
}
