//! Which files change and how: walks the `--path` dirs of a checkout (or
//! takes file contents from the GitLab API), runs the rules on every YAML
//! file that may mention the image, and collects the new contents.

use std::path::{Component, Path};

use kit::{JobError, JobResult};

use crate::edit;
use crate::git::{Git, TreeEntry};
use crate::rules::{self, Found, Target};
use crate::state::STATE_PATH;
use crate::yaml;

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

    /// The distinct references being replaced, for messages ("old → new").
    pub fn old_refs(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (_, f) in self.found.iter().filter(|(_, f)| f.changed()) {
            if !out.contains(&f.old) {
                out.push(f.old.clone());
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
pub fn plan_file(plan: &mut Plan, path: &str, bytes: &[u8], t: &Target) -> JobResult<()> {
    if !is_yaml(path) {
        return Ok(());
    }
    let Ok(src) = std::str::from_utf8(bytes) else {
        if bytes
            .windows(t.image.repository.len().max(1))
            .any(|w| w == t.image.repository.as_bytes())
        {
            return Err(JobError::usage(format!(
                "{path}: not UTF-8 text; YAML files must be UTF-8"
            )));
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
            return Err(JobError::usage(format!(
                "{path}:{}:{}: cannot parse YAML: {}; fix the file (nothing was changed)",
                e.line, e.col, e.reason
            )));
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
        return Err(JobError::usage(format!(
            "{path}:{line}: the image reference is a block scalar (| or >); write it as a plain or quoted scalar (nothing was changed)"
        )));
    }
    for f in m.found {
        plan.found.push((path.to_string(), f));
    }
    if !m.edits.is_empty() {
        let new = edit::apply(src, &m.edits);
        if new != src {
            // Never write something we could not read back.
            yaml::parse(&new).map_err(|e| {
                JobError::usage(format!(
                    "{path}: the edit would make the YAML invalid ({e}); nothing was changed"
                ))
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

/// Checks `--path` values against a tree listing: relative, no `..`, and
/// naming a directory or file of the repo. Returns them without slashes at
/// the ends.
pub fn check_tree_paths(paths: &[String], entries: &[TreeEntry]) -> JobResult<Vec<String>> {
    let mut out = Vec::new();
    for p in paths {
        let rel = Path::new(p);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(JobError::usage(format!(
                "--path {p:?} must be relative to the repo and must not contain '..'"
            )));
        }
        let clean = p.trim_matches('/').trim_start_matches("./").to_string();
        if clean.is_empty() || clean == "." {
            return Ok(Vec::new());
        }
        let dir = format!("{clean}/");
        match entries
            .iter()
            .find(|e| e.path == clean || e.path.starts_with(&dir))
        {
            None => {
                return Err(JobError::usage(format!(
                    "--path {p:?} does not exist in the repo"
                )));
            }
            Some(e) if e.path == clean && e.mode == "120000" => {
                return Err(JobError::usage(format!(
                    "--path {p:?} is a symlink; give the directory it points to"
                )));
            }
            Some(_) => out.push(clean),
        }
    }
    Ok(out)
}

/// Whether a symlink (its target text, from the link at `path`) stays
/// inside the repo.
fn link_stays_inside(path: &str, target: &str) -> bool {
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

/// Plans from a git tree (no checkout): lists the tree, reads the YAML
/// blobs under `paths` in one batch, and runs the rules. Symlinks are not
/// followed; one pointing outside the repo is refused. Returns the plan,
/// the state file's text and the tree listing (for file modes).
pub fn plan_tree(
    g: &Git,
    rev: &str,
    paths: &[String],
    t: &Target,
    max_size: u64,
) -> JobResult<(Plan, Option<String>, Vec<TreeEntry>)> {
    let entries = g.ls_tree(rev)?;
    let prefixes: Vec<String> = check_tree_paths(paths, &entries)?
        .into_iter()
        .map(|p| format!("{p}/"))
        .collect();
    let inside = |path: &str| {
        prefixes.is_empty()
            || prefixes
                .iter()
                .any(|pre| path.starts_with(pre.as_str()) || format!("{path}/") == *pre)
    };
    let mut wanted: Vec<&TreeEntry> = Vec::new();
    let mut links: Vec<&TreeEntry> = Vec::new();
    for e in entries.iter().filter(|e| inside(&e.path)) {
        if e.mode == "120000" {
            links.push(e);
        } else if e.mode != "160000" && is_yaml(&e.path) {
            if e.size > max_size {
                return Err(JobError::usage(format!(
                    "{} is {} bytes, over the {max_size}-byte bound (--max-file-size); raise it or narrow --path",
                    e.path, e.size
                )));
            }
            wanted.push(e);
        }
    }
    let state_entry = entries.iter().find(|e| e.path == STATE_PATH);
    let mut ids: Vec<&str> = links
        .iter()
        .chain(wanted.iter())
        .map(|e| e.id.as_str())
        .collect();
    if let Some(s) = state_entry {
        ids.push(&s.id);
    }
    let blobs = g.cat_blobs(&ids)?;
    let (link_blobs, rest) = blobs.split_at(links.len());
    for (l, target) in links.iter().zip(link_blobs) {
        let target = String::from_utf8_lossy(target);
        if !link_stays_inside(&l.path, &target) {
            return Err(JobError::usage(format!(
                "{} is a symlink pointing outside the repo; refusing to read through it",
                l.path
            )));
        }
    }
    let mut plan = Plan::default();
    for (e, bytes) in wanted.iter().zip(rest) {
        plan_file(&mut plan, &e.path, bytes, t)?;
    }
    let state = state_entry
        .and_then(|_| rest.last())
        .map(|b| String::from_utf8_lossy(b).into_owned());
    Ok((plan, state, entries))
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
        assert_eq!(e.kind, kit::ExitKind::Usage);
        assert!(e.message.starts_with("values.yaml:"), "{}", e.message);
        assert!(e.message.contains("block scalar"), "{}", e.message);
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
        assert_eq!(
            check_tree_paths(&["apps/".into()], &entries).unwrap(),
            vec!["apps"]
        );
        assert!(check_tree_paths(&["/apps".into()], &entries).is_err());
        assert!(check_tree_paths(&["apps/../x".into()], &entries).is_err());
        assert!(
            check_tree_paths(&["nope".into()], &entries)
                .unwrap_err()
                .message
                .contains("does not exist")
        );
        assert!(
            check_tree_paths(&["apps/link".into()], &entries)
                .unwrap_err()
                .message
                .contains("symlink")
        );
        assert!(
            check_tree_paths(&[".".into()], &entries)
                .unwrap()
                .is_empty()
        );
    }
}
