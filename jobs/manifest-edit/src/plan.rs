//! Which files change and how: given a tree listing and file contents
//! (from git or the GitLab API: the caller reads them), runs the rules on
//! every YAML file that may mention the image and collects the new
//! contents. No I/O here.

use crate::edit;
use crate::rules::{self, Found, Target};
use crate::yaml;
use crate::{Error, Result};

/// One file that changes.
#[derive(Debug, Clone)]
pub struct FileChange {
    /// Path relative to the repo root, with '/' separators.
    pub path: String,
    pub old: String,
    pub new: String,
}

/// Everything the rules found and would change.
#[derive(Debug, Default)]
pub struct Plan {
    pub files: Vec<FileChange>,
    /// Every reference found, changed or already current, with its file.
    pub found: Vec<(String, Found)>,
    pub skipped: Vec<String>,
}

impl Plan {
    pub fn changed(&self) -> bool {
        !self.files.is_empty()
    }

    /// The distinct previous versions of the image among the references
    /// being replaced, in the form of [`Target::new_ref`] (`{old}` in the
    /// commit message): `docker.io/acme/app:1.0.0`, not every spelling.
    pub fn previous(&self, t: &Target) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (_, f) in self.found.iter().filter(|(_, f)| f.changed()) {
            if f.before.is_empty() {
                continue;
            }
            let r = t.reference(&f.before);
            if !out.contains(&r) {
                out.push(r);
            }
        }
        out
    }

    /// A unified diff of every changed file.
    pub fn diff(&self) -> String {
        self.files
            .iter()
            .map(|f| edit::unified_diff(&f.path, &f.old, &f.new))
            .collect()
    }
}

/// Whether a file is one the rules read.
pub fn is_yaml(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.ends_with(".yaml") || name.ends_with(".yml") || rules::is_kustomization(name)
}

/// Cheap test before parsing: the file can only matter if it names the
/// image's last path component, or the first key of a `--helm-key`.
pub fn may_mention(content: &str, t: &Target) -> bool {
    let last = t
        .image
        .repository
        .rsplit('/')
        .next()
        .unwrap_or(&t.image.repository);
    content.contains(last)
        || t.helm_keys
            .iter()
            .any(|k| k.first().is_some_and(|f| content.contains(f.as_str())))
}

/// Runs the rules on one file's content. Parse errors name file and line.
pub fn plan_file(plan: &mut Plan, path: &str, bytes: &[u8], t: &Target) -> Result<()> {
    if !is_yaml(path) {
        return Ok(());
    }
    let Ok(src) = std::str::from_utf8(bytes) else {
        if bytes
            .windows(t.image.repository.len().max(1))
            .any(|w| w == t.image.repository.as_bytes())
        {
            return Err(Error::NotUtf8 {
                path: path.to_string(),
            });
        }
        return Ok(());
    };
    if !may_mention(src, t) {
        return Ok(());
    }
    let docs = match yaml::parse(src) {
        Ok(d) => d,
        // Helm chart templates are Go templates, not YAML: not ours to edit.
        Err(_) if src.contains("{{") && path.split('/').any(|c| c == "templates") => {
            plan.skipped.push(path.to_string());
            return Ok(());
        }
        Err(e) => {
            return Err(Error::Yaml {
                path: path.to_string(),
                line: e.line,
                col: e.col,
                reason: e.reason,
            });
        }
    };
    let name = path.rsplit('/').next().unwrap_or(path);
    let m = rules::match_file(src, &docs, name, t);
    let mut blocks = Vec::new();
    block_scalars(&docs, &mut blocks);
    if let Some((_, _, line)) = blocks
        .iter()
        .find(|(s, e, _)| m.edits.iter().any(|x| x.start == *s && x.end == *e))
    {
        return Err(Error::BlockScalar {
            path: path.to_string(),
            line: *line,
        });
    }
    for f in m.found {
        plan.found.push((path.to_string(), f));
    }
    if !m.edits.is_empty() {
        let new = edit::apply(src, &m.edits);
        if new != src {
            // Never write something we could not read back.
            yaml::parse(&new).map_err(|source| Error::EditBreaksYaml {
                path: path.to_string(),
                source,
            })?;
            plan.files.push(FileChange {
                path: path.to_string(),
                old: src.to_string(),
                new,
            });
        }
    }
    Ok(())
}

/// (start, end, line) of every `|`/`>` scalar: never rewritten.
fn block_scalars(nodes: &[yaml::Node], out: &mut Vec<(usize, usize, usize)>) {
    for n in nodes {
        match &n.kind {
            yaml::Kind::Scalar {
                style: yaml::Style::Block,
                ..
            } => out.push((n.start, n.end, n.line)),
            yaml::Kind::Map(e) => {
                for (k, v) in e {
                    block_scalars(std::slice::from_ref(k), out);
                    block_scalars(std::slice::from_ref(v), out);
                }
            }
            yaml::Kind::Seq(i) => block_scalars(i, out),
            _ => {}
        }
    }
}

/// One blob of a tree listing (`git ls-tree -r -l`, or the GitLab tree
/// API): mode, object id, size, path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    pub mode: String,
    pub id: String,
    pub size: u64,
    pub path: String,
}

impl TreeEntry {
    pub fn is_symlink(&self) -> bool {
        self.mode == "120000"
    }
    pub fn is_submodule(&self) -> bool {
        self.mode == "160000"
    }
}

/// Checks `--path` values (already validated as relative, without `..`,
/// see [`crate::paths::normalize`]) against a tree listing: each names a
/// directory or file of the repo and is not a symlink. An empty list is the
/// whole repo.
pub fn check_tree_paths(paths: &[String], entries: &[TreeEntry]) -> Result<()> {
    for p in paths {
        let dir = format!("{p}/");
        match entries
            .iter()
            .find(|e| e.path == *p || e.path.starts_with(&dir))
        {
            None => return Err(Error::PathMissing(p.clone())),
            Some(e) if e.path == *p && e.is_symlink() => {
                return Err(Error::PathIsSymlink(p.clone()));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Whether `path` lies under one of `paths` (all of the repo when empty).
pub fn inside(paths: &[String], path: &str) -> bool {
    paths.is_empty()
        || paths.iter().any(|p| {
            path == p
                || (path.starts_with(p.as_str()) && path.as_bytes().get(p.len()) == Some(&b'/'))
        })
}

/// Whether a symlink (its target text, from the link at `path`) stays
/// inside the repo.
pub fn link_stays_inside(path: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return false;
    }
    let mut depth: Vec<&str> = path.split('/').collect();
    depth.pop();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            other => depth.push(other),
        }
    }
    true
}

/// What to read from a tree: the YAML blobs under `paths` and the symlinks
/// there (whose targets must stay inside the repo).
#[derive(Debug, Default)]
pub struct Selection<'a> {
    pub yaml: Vec<&'a TreeEntry>,
    pub links: Vec<&'a TreeEntry>,
}

/// Selects the blobs to read; a YAML file over `max_size` is an error.
pub fn select<'a>(
    entries: &'a [TreeEntry],
    paths: &[String],
    max_size: u64,
) -> Result<Selection<'a>> {
    check_tree_paths(paths, entries)?;
    let mut sel = Selection::default();
    for e in entries.iter().filter(|e| inside(paths, &e.path)) {
        if e.is_symlink() {
            sel.links.push(e);
        } else if !e.is_submodule() && is_yaml(&e.path) {
            check_size(&e.path, e.size, max_size)?;
            sel.yaml.push(e);
        }
    }
    Ok(sel)
}

/// A file over the bound is refused before it is parsed.
pub fn check_size(path: &str, size: u64, max: u64) -> Result<()> {
    if size > max {
        return Err(Error::TooLarge {
            path: path.to_string(),
            size,
            max,
        });
    }
    Ok(())
}

/// Refuses a symlink whose target leaves the repo.
pub fn check_link(path: &str, target: &[u8]) -> Result<()> {
    if link_stays_inside(path, &String::from_utf8_lossy(target)) {
        Ok(())
    } else {
        Err(Error::LinkLeavesRepo(path.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kit::reference::ImageRef;

    fn target() -> Target {
        Target {
            image: ImageRef::parse("acme/app").unwrap(),
            tag: Some("2".into()),
            digest: None,
            helm_keys: vec![],
        }
    }

    #[test]
    fn block_scalar_references_are_refused_with_line() {
        let mut p = Plan::default();
        let src = "a: 1\nimage: |\n  acme/app:1\n";
        let e = plan_file(&mut p, "values.yaml", src.as_bytes(), &target()).unwrap_err();
        assert!(matches!(e, Error::BlockScalar { line: 3, .. }), "{e}");
        assert!(e.to_string().starts_with("values.yaml:3: "), "{e}");
    }

    #[test]
    fn helm_templates_are_skipped_other_bad_yaml_is_not() {
        let mut p = Plan::default();
        let tpl = "image: {{ .Values.image }}\nacme/app: [\n";
        plan_file(
            &mut p,
            "chart/templates/deploy.yaml",
            tpl.as_bytes(),
            &target(),
        )
        .unwrap();
        assert_eq!(p.skipped, vec!["chart/templates/deploy.yaml"]);
        assert!(plan_file(&mut p, "chart/values.yaml", tpl.as_bytes(), &target()).is_err());
        // Files that cannot mention the image are not even parsed.
        plan_file(&mut p, "other.yaml", b"x: [", &target()).unwrap();
        plan_file(&mut p, "README.md", b"acme/app: [", &target()).unwrap();
    }

    #[test]
    fn symlink_targets() {
        assert!(link_stays_inside("a/b/link", "../c"));
        assert!(link_stays_inside("a/link", "./x/../y"));
        assert!(!link_stays_inside("a/link", "../../etc"));
        assert!(!link_stays_inside("link", "/etc/passwd"));
    }

    #[test]
    fn tree_paths_checked() {
        let e = |p: &str, mode: &str| TreeEntry {
            mode: mode.into(),
            id: "x".into(),
            size: 1,
            path: p.into(),
        };
        let entries = vec![e("apps/a/k.yaml", "100644"), e("apps/link", "120000")];
        check_tree_paths(&["apps".into()], &entries).unwrap();
        check_tree_paths(&[], &entries).unwrap();
        assert!(matches!(
            check_tree_paths(&["nope".into()], &entries),
            Err(Error::PathMissing(_))
        ));
        assert!(matches!(
            check_tree_paths(&["apps/link".into()], &entries),
            Err(Error::PathIsSymlink(_))
        ));
        assert!(inside(&["apps".into()], "apps/a/k.yaml"));
        assert!(!inside(&["apps".into()], "apps2/k.yaml"));
        assert!(inside(&[], "x.yaml"));
    }
}
