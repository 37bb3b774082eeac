//! Where image references live in a GitOps repo, and how each layout is
//! updated: kustomize `images:`, Helm values, plain workload manifests, and
//! Argo CD `Application` sources.

use kit::reference::ImageRef;

use crate::edit::{self, Edit};
use crate::yaml::{Kind, Node};

/// What to write: the image (as normalized) and its new tag and/or digest.
#[derive(Debug, Clone)]
pub struct Target {
    pub image: ImageRef,
    pub tag: Option<String>,
    pub digest: Option<String>,
    /// Extra Helm value paths (`--helm-key sensor.image.tag`), split on '.'.
    pub helm_keys: Vec<Vec<String>>,
}

impl Target {
    /// `:tag@digest`, `@digest` or `:tag`.
    pub fn suffix(&self) -> String {
        let mut s = String::new();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// The new reference, for messages: `name:tag@digest`.
    pub fn new_ref(&self) -> String {
        format!("{}{}", self.image.name(), self.suffix())
    }

    /// A version of this image in the form of [`Target::new_ref`]:
    /// `name:tag@digest` with the normalized name.
    pub fn reference(&self, v: &Version) -> String {
        let mut s = self.image.name();
        if let Some(t) = &v.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &v.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// Whether an image name as written (no tag/digest) is this image.
    pub fn matches(&self, name: &str) -> bool {
        ImageRef::parse(name.trim())
            .is_ok_and(|r| r.tag.is_none() && r.digest.is_none() && r.same_repository(&self.image))
    }
}

/// A tag and/or a digest: one version of the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Version {
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Version {
    fn of(tag: Option<&str>, digest: Option<&str>) -> Version {
        let keep = |x: Option<&str>| {
            x.map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
        };
        Version {
            tag: keep(tag),
            digest: keep(digest),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }
}

/// One reference that was found (and changed, unless already current).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub line: usize,
    /// Which layout: `kustomize`, `helm`, `manifest`, `argocd`.
    pub layout: &'static str,
    /// The reference before, as written (`name:tag@digest`, or the one
    /// scalar a tag or digest key holds).
    pub old: String,
    pub new: String,
    /// What the scalars held before: the previous version of the image.
    pub before: Version,
}

impl Found {
    pub fn changed(&self) -> bool {
        self.old != self.new
    }
}

/// What the rules found in one file.
#[derive(Debug, Default)]
pub struct FileMatch {
    pub edits: Vec<Edit>,
    pub found: Vec<Found>,
}

const WORKLOADS: &[&str] = &[
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
];

/// Whether a file name is a kustomization.
pub fn is_kustomization(file_name: &str) -> bool {
    matches!(
        file_name,
        "kustomization.yaml" | "kustomization.yml" | "Kustomization"
    )
}

/// Splits `name[:tag][@digest]` as written, keeping the name's spelling.
pub fn split_ref(s: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..]), digest),
        None => (rest, None, digest),
    }
}

fn tag_digest(tag: Option<&str>, digest: Option<&str>) -> String {
    let mut s = String::new();
    if let Some(t) = tag.filter(|t| !t.is_empty()) {
        s.push_str(t);
    }
    if let Some(d) = digest.filter(|d| !d.is_empty()) {
        s.push('@');
        s.push_str(d);
    }
    s
}

/// Finds and updates every reference to the target in one file's documents.
pub fn match_file(src: &str, docs: &[Node], file_name: &str, t: &Target) -> FileMatch {
    let mut m = FileMatch::default();
    let kustomization = is_kustomization(file_name);
    for doc in docs {
        if !doc.is_map() {
            continue;
        }
        if kustomization {
            kustomize(src, doc, t, &mut m);
            continue;
        }
        let kind = doc.get_str("kind");
        let api = doc.get_str("apiVersion");
        match (api, kind) {
            (Some(api), Some("Application")) if api.starts_with("argoproj.io/") => {
                argocd(src, doc, t, &mut m)
            }
            (Some(_), Some(k)) if WORKLOADS.contains(&k) => workload(doc, k, t, &mut m),
            (Some(_), Some("Kustomization")) => kustomize(src, doc, t, &mut m),
            (Some(_), Some(_)) => {}
            _ => helm_values(src, doc, doc, t, &mut m),
        }
    }
    // Two rules may reach the same scalar (--helm-key and the auto layout).
    m.edits.sort_by_key(|e| (e.start, e.end));
    m.edits.dedup();
    m
}

/// A whole-reference scalar (`name:tag@digest`): rewrite keeping the name.
fn full_ref(node: &Node, layout: &'static str, t: &Target, m: &mut FileMatch) {
    let Some(v) = node.as_str() else { return };
    let (name, tag, digest) = split_ref(v.trim());
    if !t.matches(name) {
        return;
    }
    let new = format!("{name}{}", t.suffix());
    let old = format!("{name}{}", tag.map(|x| format!(":{x}")).unwrap_or_default())
        + &digest.map(|d| format!("@{d}")).unwrap_or_default();
    if old != new {
        m.edits.push(edit::replace_scalar(node, &new));
    }
    m.found.push(Found {
        line: node.line,
        layout,
        old,
        new,
        before: Version::of(tag, digest),
    });
}

fn kustomize(src: &str, doc: &Node, t: &Target, m: &mut FileMatch) {
    let Some(images) = doc.get("images") else {
        return;
    };
    for entry in images.items() {
        let Some(name) = entry.get_str("name") else {
            continue;
        };
        let effective = entry.get_str("newName").unwrap_or(name);
        if !t.matches(effective) {
            continue;
        }
        let old_tag = entry.get("newTag").and_then(Node::as_str);
        let old_digest = entry.get("digest").and_then(Node::as_str);
        let mut edits = Vec::new();
        // Tag: written when given; removed when only a digest is given
        // (kustomize would otherwise render the stale tag beside the digest).
        match (&t.tag, entry.get("newTag")) {
            (Some(tag), Some(n)) if n.as_str() != Some(tag) => {
                edits.push(edit::replace_scalar(n, tag))
            }
            (Some(tag), None) => edits.extend(edit::insert_entry(src, entry, "newTag", tag)),
            (None, Some(n)) if t.digest.is_some() => match edit::remove_entry(src, entry, "newTag")
            {
                Some(e) => edits.push(e),
                None => edits.push(edit::replace_scalar(n, "")),
            },
            _ => {}
        }
        match (&t.digest, entry.get("digest")) {
            (Some(d), Some(n)) if n.as_str() != Some(d) => edits.push(edit::replace_scalar(n, d)),
            (Some(d), None) => edits.extend(edit::insert_entry(src, entry, "digest", d)),
            (None, Some(n)) if n.as_str().is_some_and(|s| !s.is_empty()) => {
                match edit::remove_entry(src, entry, "digest") {
                    Some(e) => edits.push(e),
                    None => edits.push(edit::replace_scalar(n, "")),
                }
            }
            _ => {}
        }
        let old = tag_digest(old_tag, old_digest);
        let new = tag_digest(t.tag.as_deref(), t.digest.as_deref());
        let line = entry.key_node("name").map_or(entry.line, |k| k.line);
        m.edits.extend(edits);
        m.found.push(Found {
            line,
            layout: "kustomize",
            old: format!("{effective}:{old}"),
            new: format!("{effective}:{new}"),
            before: Version::of(old_tag, old_digest),
        });
    }
}

/// `image: {registry?, repository, tag, digest}` blocks.
fn helm_image_map(src: &str, root: &Node, map: &Node, t: &Target, m: &mut FileMatch) -> bool {
    // `<<: *defaults` merge keys: inherited values count for matching.
    let get = |key: &str| merged(root, map, key);
    let Some(repo) = get("repository").and_then(Node::as_str) else {
        return false;
    };
    let name = match get("registry").and_then(Node::as_str) {
        Some(reg) if !reg.is_empty() => format!("{reg}/{repo}"),
        _ => repo.to_string(),
    };
    if !t.matches(&name) {
        return false;
    }
    let old_tag = get("tag").and_then(Node::as_str);
    let old_digest = get("digest").and_then(Node::as_str);
    // Keys written in this map are replaced; a missing key, or an inherited
    // one with another value, gets an entry in this map (an override).
    if let Some(tag) = &t.tag {
        match map.get("tag") {
            Some(n) if n.as_str() != Some(tag) => m.edits.push(edit::replace_scalar(n, tag)),
            Some(_) => {}
            None if old_tag != Some(tag.as_str()) => {
                m.edits.extend(edit::insert_entry(src, map, "tag", tag))
            }
            None => {}
        }
    }
    match (&t.digest, map.get("digest")) {
        (Some(d), Some(n)) if n.as_str() != Some(d) => m.edits.push(edit::replace_scalar(n, d)),
        (Some(d), None) if old_digest != Some(d.as_str()) => {
            m.edits.extend(edit::insert_entry(src, map, "digest", d))
        }
        // Charts prefer the digest when set: a stale one would pin the old image.
        (None, Some(n)) if n.as_str().is_some_and(|s| !s.is_empty()) => {
            m.edits.push(edit::replace_scalar(n, ""))
        }
        (None, None) if old_digest.is_some_and(|s| !s.is_empty()) => {
            m.edits.extend(edit::insert_entry(src, map, "digest", ""))
        }
        _ => {}
    }
    let new_tag = t.tag.as_deref().or(old_tag);
    m.found.push(Found {
        line: map.line,
        layout: "helm",
        old: format!("{name}:{}", tag_digest(old_tag, old_digest)),
        new: format!("{name}:{}", tag_digest(new_tag, t.digest.as_deref())),
        before: Version::of(old_tag, old_digest),
    });
    true
}

/// A key of a mapping, or inherited through a `<<` merge key (an alias, a
/// list of aliases, or an inline mapping).
fn merged<'a>(root: &'a Node, map: &'a Node, key: &str) -> Option<&'a Node> {
    if let Some(n) = map.get(key) {
        return Some(n);
    }
    let merge = map.get("<<")?;
    let sources: Vec<&Node> = match &merge.kind {
        Kind::Seq(items) => items.iter().collect(),
        _ => vec![merge],
    };
    sources.into_iter().find_map(|n| match &n.kind {
        Kind::Alias => crate::yaml::find_anchor(root, n.anchor).and_then(|a| a.get(key)),
        Kind::Map(_) => n.get(key),
        _ => None,
    })
}

/// Helm values: every `image:` key in the tree, plus `--helm-key` paths.
fn helm_values(src: &str, root: &Node, doc: &Node, t: &Target, m: &mut FileMatch) {
    fn walk(src: &str, root: &Node, n: &Node, t: &Target, m: &mut FileMatch) {
        match &n.kind {
            Kind::Map(entries) => {
                for (k, v) in entries {
                    if k.as_str() == Some("image") {
                        match &v.kind {
                            Kind::Scalar { .. } => full_ref(v, "helm", t, m),
                            Kind::Map(_) => {
                                helm_image_map(src, root, v, t, m);
                            }
                            _ => {}
                        }
                    }
                    walk(src, root, v, t, m);
                }
            }
            Kind::Seq(items) => items.iter().for_each(|i| walk(src, root, i, t, m)),
            _ => {}
        }
    }
    walk(src, root, doc, t, m);
    for key in &t.helm_keys {
        let path: Vec<&str> = key.iter().map(String::as_str).collect();
        let Some(node) = doc.path(&path) else {
            continue;
        };
        let parent = doc.path(&path[..path.len() - 1]);
        helm_key_node(
            src,
            root,
            node,
            parent,
            path.last().copied().unwrap_or(""),
            t,
            m,
        );
    }
}

/// A `--helm-key` target: a tag or digest scalar (its block's `repository`
/// must match when there is one), a whole-reference scalar, or an image block.
fn helm_key_node(
    src: &str,
    root: &Node,
    node: &Node,
    parent: Option<&Node>,
    last: &str,
    t: &Target,
    m: &mut FileMatch,
) {
    if node.is_map() {
        helm_image_map(src, root, node, t, m);
        return;
    }
    let Some(v) = node.as_str() else { return };
    let lower = last.to_ascii_lowercase();
    let repo_ok = parent
        .and_then(|p| p.get_str("repository"))
        .is_none_or(|r| t.matches(r));
    if !repo_ok {
        return;
    }
    let (new, before) = if lower.contains("digest") {
        (
            t.digest.clone().unwrap_or_default(),
            Version::of(None, Some(v)),
        )
    } else if lower.contains("tag") {
        match &t.tag {
            Some(tag) => (tag.clone(), Version::of(Some(v), None)),
            None => return,
        }
    } else {
        full_ref(node, "helm", t, m);
        return;
    };
    if v != new {
        m.edits.push(edit::replace_scalar(node, &new));
    }
    m.found.push(Found {
        line: node.line,
        layout: "helm",
        old: v.to_string(),
        new,
        before,
    });
}

fn workload(doc: &Node, kind: &str, t: &Target, m: &mut FileMatch) {
    let pod = match kind {
        "Pod" => doc.get("spec"),
        "CronJob" => doc.path(&["spec", "jobTemplate", "spec", "template", "spec"]),
        _ => doc.path(&["spec", "template", "spec"]),
    };
    let Some(pod) = pod else { return };
    for list in ["initContainers", "containers"] {
        for c in pod.get(list).map(Node::items).unwrap_or_default() {
            if let Some(img) = c.get("image") {
                full_ref(img, "manifest", t, m);
            }
        }
    }
}

fn argocd(src: &str, doc: &Node, t: &Target, m: &mut FileMatch) {
    let Some(spec) = doc.get("spec") else { return };
    let mut sources: Vec<&Node> = spec.get("source").into_iter().collect();
    sources.extend(spec.get("sources").map(Node::items).unwrap_or_default());
    for source in sources {
        // kustomize.images: "[old=]name[:tag][@digest]"
        for item in source
            .path(&["kustomize", "images"])
            .map(Node::items)
            .unwrap_or_default()
        {
            let Some(v) = item.as_str() else { continue };
            let (left, right) = match v.split_once('=') {
                Some((l, r)) => (Some(l), r),
                None => (None, v),
            };
            let (name, tag, digest) = split_ref(right);
            let effective = if name.is_empty() {
                left.unwrap_or("")
            } else {
                name
            };
            if !t.matches(effective) {
                continue;
            }
            let new_right = format!("{effective}{}", t.suffix());
            let new = match left {
                Some(l) => format!("{l}={new_right}"),
                None => new_right,
            };
            if new != v {
                m.edits.push(edit::replace_scalar(item, &new));
            }
            m.found.push(Found {
                line: item.line,
                layout: "argocd",
                old: format!("{effective}:{}", tag_digest(tag, digest)),
                new: format!(
                    "{effective}:{}",
                    tag_digest(t.tag.as_deref(), t.digest.as_deref())
                ),
                before: Version::of(tag, digest),
            });
        }
        let Some(helm) = source.get("helm") else {
            continue;
        };
        if let Some(values) = helm.get("valuesObject") {
            helm_values(src, doc, values, t, m);
        }
        argocd_helm_parameters(helm, t, m);
    }
}

/// `helm.parameters: [{name, value}]`: `X.repository` naming the image
/// selects `X.tag` / `X.digest`; a whole-reference value is rewritten; and
/// `--helm-key` names select parameters directly.
fn argocd_helm_parameters(helm: &Node, t: &Target, m: &mut FileMatch) {
    let params: Vec<(&str, &Node)> = helm
        .get("parameters")
        .map(Node::items)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| Some((p.get_str("name")?, p.get("value")?)))
        .collect();
    let lookup = |name: &str| params.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    // `digest`: whether the parameter holds the digest (else the tag).
    let set = |node: &Node, new: String, digest: bool, m: &mut FileMatch| {
        let old = node.as_str().unwrap_or_default().to_string();
        if old != new {
            m.edits.push(edit::replace_scalar(node, &new));
        }
        let before = if digest {
            Version::of(None, Some(&old))
        } else {
            Version::of(Some(&old), None)
        };
        m.found.push(Found {
            line: node.line,
            layout: "argocd",
            old,
            new,
            before,
        });
    };
    for (name, value) in &params {
        if let Some(prefix) = name.strip_suffix("repository") {
            if value.as_str().is_some_and(|r| t.matches(r)) {
                if let (Some(tag), Some(n)) = (&t.tag, lookup(&format!("{prefix}tag"))) {
                    set(n, tag.clone(), false, m);
                }
                if let Some(n) = lookup(&format!("{prefix}digest")) {
                    set(n, t.digest.clone().unwrap_or_default(), true, m);
                }
            }
        } else if value.as_str().is_some_and(|v| v.contains([':', '@'])) {
            let before = m.found.len();
            full_ref(value, "argocd", t, m);
            if m.found.len() > before {
                continue;
            }
        }
    }
    for key in &t.helm_keys {
        let joined = key.join(".");
        let Some(n) = lookup(&joined) else { continue };
        let last = key
            .last()
            .map(|s| s.to_ascii_lowercase())
            .unwrap_or_default();
        if last.contains("digest") {
            set(n, t.digest.clone().unwrap_or_default(), true, m);
        } else if last.contains("tag") {
            if let Some(tag) = &t.tag {
                set(n, tag.clone(), false, m);
            }
        } else {
            full_ref(n, "argocd", t, m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn target(tag: Option<&str>, digest: Option<&str>) -> Target {
        Target {
            image: ImageRef::parse("acme/sensor").unwrap(),
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
            helm_keys: vec![],
        }
    }

    fn run(src: &str, file: &str, t: &Target) -> (String, FileMatch) {
        let docs = parse(src).unwrap();
        let m = match_file(src, &docs, file, t);
        (edit::apply(src, &m.edits), m)
    }

    #[test]
    fn kustomize_tag_and_digest() {
        let src = "resources:\n  - ../../base\nimages:\n  - name: sensor # the app\n    newName: docker.io/acme/sensor\n    newTag: \"1.2.2\"\n  - name: other\n    newTag: x\n";
        let (out, m) = run(src, "kustomization.yaml", &target(Some("1.3.0"), Some(D)));
        assert_eq!(
            out,
            format!(
                "resources:\n  - ../../base\nimages:\n  - name: sensor # the app\n    newName: docker.io/acme/sensor\n    newTag: \"1.3.0\"\n    digest: {D}\n  - name: other\n    newTag: x\n"
            )
        );
        assert_eq!(m.found.len(), 1);
        assert_eq!(m.found[0].old, "docker.io/acme/sensor:1.2.2");
        // Digest alone removes the stale tag.
        let (out, _) = run(&out, "kustomization.yaml", &target(None, Some(D)));
        assert!(!out.contains("newTag: \"1.3.0\""), "{out}");
        assert!(out.contains(&format!("digest: {D}")));
        // Tag alone removes the stale digest.
        let (out, _) = run(
            src.replace(
                "newTag: \"1.2.2\"",
                &format!("newTag: '1'\n    digest: {D}"),
            )
            .as_str(),
            "kustomization.yaml",
            &target(Some("2"), None),
        );
        assert!(out.contains("newTag: '2'\n  - name: other"), "{out}");
        // Name match without newName, docker.io normalization.
        let (out, _) = run(
            "images:\n- name: docker.io/acme/sensor\n  newTag: v1\n",
            "kustomization.yml",
            &target(Some("v2"), None),
        );
        assert_eq!(
            out,
            "images:\n- name: docker.io/acme/sensor\n  newTag: v2\n"
        );
    }

    #[test]
    fn helm_layouts_and_keys() {
        let src = "image:\n  repository: acme/sensor\n  tag: \"1.0\"\n  digest: \"\"\nsidecar:\n  image: docker.io/acme/sensor:0.9\nsensor:\n  image:\n    tag: old\nfoo:\n  image: acme/other:1\n";
        let mut t = target(Some("1.1"), Some(D));
        t.helm_keys = vec![vec!["sensor".into(), "image".into(), "tag".into()]];
        let (out, m) = run(src, "values.yaml", &t);
        assert_eq!(
            out,
            format!(
                "image:\n  repository: acme/sensor\n  tag: \"1.1\"\n  digest: \"{D}\"\nsidecar:\n  image: docker.io/acme/sensor:1.1@{D}\nsensor:\n  image:\n    tag: \"1.1\"\nfoo:\n  image: acme/other:1\n"
            )
        );
        assert_eq!(m.found.len(), 3);
    }

    #[test]
    fn workloads_multi_doc_and_argocd() {
        let src = "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      initContainers:\n        - image: acme/sensor:1 # init\n      containers:\n        - name: a\n          image: 'acme/sensor:1'\n        - image: busybox:1\n---\napiVersion: batch/v1\nkind: CronJob\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n          - image: \"docker.io/acme/sensor@sha256:aa\"\n---\napiVersion: v1\nkind: ConfigMap\ndata:\n  image: acme/sensor:1\n";
        let (out, m) = run(src, "app.yaml", &target(Some("2"), None));
        assert_eq!(m.found.len(), 3);
        assert!(out.contains("- image: acme/sensor:2 # init"));
        assert!(out.contains("image: 'acme/sensor:2'"));
        assert!(out.contains("- image: \"docker.io/acme/sensor:2\""));
        assert!(
            out.contains("image: acme/sensor:1\n"),
            "ConfigMap untouched"
        );
        let app = "apiVersion: argoproj.io/v1alpha1\nkind: Application\nspec:\n  source:\n    kustomize:\n      images:\n        - sensor=acme/sensor:1\n        - acme/sensor:1\n    helm:\n      parameters:\n        - name: image.repository\n          value: acme/sensor\n        - name: image.tag\n          value: \"1\"\n";
        let (out, m) = run(app, "app.yaml", &target(Some("2"), Some(D)));
        assert_eq!(m.found.len(), 3, "{:?}", m.found);
        assert!(
            out.contains(&format!(
                "- sensor=acme/sensor:2@{D}\n        - acme/sensor:2@{D}\n"
            )),
            "{out}"
        );
        assert!(out.contains("value: \"2\""));
    }

    #[test]
    fn already_current_has_no_edits() {
        let src = format!("images:\n  - name: acme/sensor\n    newTag: '2'\n    digest: {D}\n");
        let (out, m) = run(&src, "kustomization.yaml", &target(Some("2"), Some(D)));
        assert_eq!(out, src);
        assert!(m.edits.is_empty());
        assert_eq!(m.found.len(), 1);
        assert!(!m.found[0].changed());
    }

    #[test]
    fn split_refs_as_written() {
        assert_eq!(
            split_ref("localhost:5000/a:1@sha256:x"),
            ("localhost:5000/a", Some("1"), Some("sha256:x"))
        );
        assert_eq!(
            split_ref("localhost:5000/a"),
            ("localhost:5000/a", None, None)
        );
        assert_eq!(split_ref("a@sha256:x"), ("a", None, Some("sha256:x")));
    }
}
