//! Property test: over many generated YAML files (every layout, random
//! quoting, comments, anchors, CRLF, unicode, indentation, with or without a
//! final newline), the edit changes only the bytes of the reference scalars.
//! Cases come from a seeded generator; a failure prints its seed.
//!
//! The outputs are judged twice: with the editor's own parser (saphyr
//! events, spans) and with an independent one (`serde_yaml_ng`, on
//! unsafe-libyaml): the edited file parses with both, and its documents
//! differ from the original's only in the edited scalars.

use kit::reference::ImageRef;
use manifest_edit::edit;
use manifest_edit::rules::{Target, match_file};
use manifest_edit::yaml::{self, Kind, Node, Style};
use serde_yaml_ng::Value;

const TAG: &str = "2.0.1";
const DIGEST: &str = "sha256:abababababababababababababababababababababababababababababababab";

struct Gen {
    rng: fastrand::Rng,
    nl: &'static str,
    ind: usize,
    /// References to the target written into the file.
    expected: usize,
}

impl Gen {
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.rng.usize(..xs.len())]
    }
    fn quote(&mut self, v: &str) -> String {
        match self.rng.u8(..3) {
            0 => v.to_string(),
            1 => format!("'{v}'"),
            _ => format!("\"{v}\""),
        }
    }
    fn comment(&mut self) -> String {
        match self.rng.u8(..4) {
            0 => format!(
                "  # {}",
                self.pick(&[
                    "note",
                    "Grüße — ünïcode ✓",
                    "image: acmeiot/app:0.0.1",
                    "x: [1,2"
                ])
            ),
            _ => String::new(),
        }
    }
    fn filler(&mut self, indent: usize) -> String {
        let pad = " ".repeat(indent);
        let nl = self.nl;
        match self.rng.u8(..6) {
            0 => format!("{pad}# a comment with ünïcode and 'quotes'{nl}"),
            1 => nl.to_string(),
            2 => format!(
                "{pad}labels: &lbl{}{nl}{pad}  app: \"x\"{nl}",
                self.rng.u16(..999)
            ),
            3 => format!(
                "{pad}note: {}{}{nl}",
                self.quote("hello wörld"),
                self.comment()
            ),
            4 => format!("{pad}count: {}{nl}", self.rng.u16(..500)),
            _ => String::new(),
        }
    }
    fn img_name(&mut self, matching: bool) -> &'static str {
        if matching {
            self.expected += 1;
            self.pick(&[
                "acmeiot/app",
                "docker.io/acmeiot/app",
                "index.docker.io/acmeiot/app",
            ])
        } else {
            self.pick(&["acmeiot/other", "ghcr.io/acmeiot/app", "busybox"])
        }
    }
    fn old_suffix(&mut self) -> String {
        match self.rng.u8(..3) {
            0 => ":1.0.0".into(),
            1 => format!(":1.{}@sha256:{}", self.rng.u8(..9), "c".repeat(64)),
            _ => format!("@sha256:{}", "d".repeat(64)),
        }
    }

    fn kustomization(&mut self) -> String {
        let nl = self.nl;
        let i = " ".repeat(self.ind);
        let mut s = format!("# kustomization{nl}resources:{nl}{i}- ../base{nl}");
        s += &self.filler(0);
        s += &format!("images:{}{nl}", self.comment());
        for _ in 0..self.rng.usize(1..4) {
            let m = self.rng.bool();
            let name = self.img_name(m);
            let name = self.quote(name);
            let tag = self.quote("1.0.0");
            let c = self.comment();
            s += &format!(
                "{i}- name: {name}{c}{nl}{i}  newTag: {tag}{nl}{i}  digest: sha256:{}{nl}",
                "e".repeat(64)
            );
            s += &self.filler(self.ind + 2);
        }
        s
    }

    fn values(&mut self) -> String {
        let nl = self.nl;
        let i = " ".repeat(self.ind);
        let m = self.rng.bool();
        let repo = self.img_name(m);
        let repo = self.quote(repo);
        let tag = self.quote("1.0.0");
        let m2 = self.rng.bool();
        let n2 = self.img_name(m2);
        let suf = self.old_suffix();
        let whole = self.quote(&format!("{n2}{suf}"));
        let f = self.filler(0);
        format!(
            "image:{nl}{i}repository: {repo}{nl}{i}tag: {tag}{}{nl}{i}digest: \"\"{nl}{f}sidecar:{nl}{i}image: {whole}{nl}",
            self.comment()
        )
    }

    fn workload(&mut self) -> String {
        let nl = self.nl;
        let i = " ".repeat(self.ind);
        let kind = self.pick(&["Deployment", "StatefulSet", "DaemonSet", "Job"]);
        let m = self.rng.bool();
        let n = self.img_name(m);
        let suf = self.old_suffix();
        let img = self.quote(&format!("{n}{suf}"));
        let c = self.comment();
        let f = self.filler(0);
        format!(
            "apiVersion: apps/v1{nl}kind: {kind}{nl}{f}spec:{nl}{i}template:{nl}{i}{i}spec:{nl}{i}{i}{i}containers:{nl}{i}{i}{i}- name: c{nl}{i}{i}{i}  image: {img}{c}{nl}{i}{i}{i}  env: [{{name: A, value: \"1\"}}]{nl}"
        )
    }

    fn argocd(&mut self) -> String {
        let nl = self.nl;
        let i = " ".repeat(self.ind);
        let m = self.rng.bool();
        let n = self.img_name(m);
        let suf = self.old_suffix();
        let v = self.quote(&format!("app={n}{suf}"));
        format!(
            "apiVersion: argoproj.io/v1alpha1{nl}kind: Application{nl}spec:{nl}{i}source:{nl}{i}{i}kustomize:{nl}{i}{i}{i}images:{nl}{i}{i}{i}- {v}{}{nl}",
            self.comment()
        )
    }
}

fn scalars(n: &Node, out: &mut Vec<(usize, usize, String, Style)>) {
    match &n.kind {
        Kind::Scalar { value, style } => out.push((n.start, n.end, value.clone(), *style)),
        Kind::Map(e) => e.iter().for_each(|(k, v)| {
            scalars(k, out);
            scalars(v, out);
        }),
        Kind::Seq(i) => i.iter().for_each(|x| scalars(x, out)),
        Kind::Alias => {}
    }
}

/// Every document of `src` as the independent parser reads it.
fn independent(src: &str, ctx: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(src)
        .map(|d| {
            serde::Deserialize::deserialize(d)
                .unwrap_or_else(|e| panic!("serde_yaml_ng cannot read it ({e}), {ctx}"))
        })
        .collect()
}

fn is_new_value(v: &Value) -> bool {
    matches!(v, Value::String(s) if s == TAG || s == DIGEST || s.ends_with(&format!(":{TAG}@{DIGEST}")))
}

/// Walks two documents of the same shape; returns how many scalars differ,
/// each of which must now hold the new tag, digest or reference.
fn changed_leaves(old: &Value, new: &Value, at: &str, ctx: &str) -> usize {
    match (old, new) {
        (Value::Mapping(a), Value::Mapping(b)) => {
            assert_eq!(a.len(), b.len(), "mapping at {at} changed size, {ctx}");
            a.iter()
                .zip(b.iter())
                .map(|((ka, va), (kb, vb))| {
                    assert_eq!(ka, kb, "key at {at} changed, {ctx}");
                    changed_leaves(va, vb, &format!("{at}.{ka:?}"), ctx)
                })
                .sum()
        }
        (Value::Sequence(a), Value::Sequence(b)) => {
            assert_eq!(a.len(), b.len(), "sequence at {at} changed length, {ctx}");
            a.iter()
                .zip(b)
                .enumerate()
                .map(|(i, (x, y))| changed_leaves(x, y, &format!("{at}[{i}]"), ctx))
                .sum()
        }
        (Value::Tagged(a), Value::Tagged(b)) => {
            assert_eq!(a.tag, b.tag, "tag at {at} changed, {ctx}");
            changed_leaves(&a.value, &b.value, at, ctx)
        }
        (a, b) if a == b => 0,
        (a, b) => {
            assert!(
                !matches!(a, Value::Mapping(_) | Value::Sequence(_)),
                "a collection at {at} became {b:?}, {ctx}"
            );
            assert!(
                is_new_value(b),
                "{at}: {a:?} became {b:?}, not the new reference, {ctx}"
            );
            1
        }
    }
}

fn all_scalars(docs: &[Node]) -> Vec<(usize, usize, String, Style)> {
    let mut out = Vec::new();
    docs.iter().for_each(|d| scalars(d, &mut out));
    out
}

#[test]
fn only_reference_scalars_change() {
    let target = Target {
        image: ImageRef::parse("acmeiot/app").unwrap(),
        tag: Some(TAG.into()),
        digest: Some(DIGEST.into()),
        helm_keys: vec![],
    };
    let base_seed = std::env::var("BUMP_PROP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    let cases = 600;
    let mut edited_files = 0;
    for case in 0..cases {
        let seed = base_seed + case;
        let mut g = Gen {
            rng: fastrand::Rng::with_seed(seed),
            nl: "\n",
            ind: 2,
            expected: 0,
        };
        g.nl = if g.rng.u8(..4) == 0 { "\r\n" } else { "\n" };
        g.ind = if g.rng.bool() { 2 } else { 4 };
        let kustomize = g.rng.u8(..3) == 0;
        let (name, mut src) = if kustomize {
            ("kustomization.yaml", g.kustomization())
        } else {
            let mut docs = Vec::new();
            for _ in 0..g.rng.usize(1..4) {
                docs.push(match g.rng.u8(..3) {
                    0 => g.values(),
                    1 => g.workload(),
                    _ => g.argocd(),
                });
            }
            let sep = format!("---{}", g.nl);
            let lead = if g.rng.bool() {
                sep.clone()
            } else {
                String::new()
            };
            ("app.yaml", lead + &docs.join(&sep))
        };
        if g.rng.bool() {
            // No final newline.
            while src.ends_with(['\n', '\r']) {
                src.pop();
            }
        }
        let ctx = format!("seed {seed}:\n{src}");
        let old_docs =
            yaml::parse(&src).unwrap_or_else(|e| panic!("generator made bad YAML ({e}) {ctx}"));
        let m = match_file(&src, &old_docs, name, &target);
        assert_eq!(m.found.len(), g.expected, "references found, {ctx}");
        let new = edit::apply(&src, &m.edits);
        let new_docs = yaml::parse(&new)
            .unwrap_or_else(|e| panic!("edit made bad YAML ({e}) {ctx}\n=>\n{new}"));

        // 1. Every edit replaces exactly one old scalar's text.
        let old_scalars = all_scalars(&old_docs);
        for e in &m.edits {
            assert!(
                old_scalars
                    .iter()
                    .any(|(s, en, _, _)| *s == e.start && *en == e.end),
                "edit {e:?} is not a whole scalar, {ctx}"
            );
        }
        // 2. Outside the edited spans the bytes are identical, in order.
        let mut sorted = m.edits.clone();
        sorted.sort_by_key(|e| e.start);
        let (mut pos_old, mut pos_new) = (0, 0);
        for e in &sorted {
            let seg = &src[pos_old..e.start];
            assert_eq!(
                &new[pos_new..pos_new + seg.len()],
                seg,
                "bytes before an edit changed, {ctx}"
            );
            pos_new += seg.len() + e.text.len();
            pos_old = e.end;
        }
        assert_eq!(
            &new[pos_new..],
            &src[pos_old..],
            "bytes after the last edit changed, {ctx}"
        );
        // 3. Same number of scalars; unedited ones keep their value; edited
        //    ones now carry the new tag and/or digest.
        let new_scalars = all_scalars(&new_docs);
        assert_eq!(old_scalars.len(), new_scalars.len(), "{ctx}");
        for (o, n) in old_scalars.iter().zip(&new_scalars) {
            let edited = m.edits.iter().any(|e| e.start == o.0);
            if edited {
                assert!(
                    n.2 == TAG || n.2 == DIGEST || n.2.ends_with(&format!(":{TAG}@{DIGEST}")),
                    "{n:?} {ctx}"
                );
                // Quoting style kept (a plain scalar may gain quotes only
                // when the new value would otherwise read as a number).
                let plain_quoted =
                    o.3 == Style::Plain && n.3 == Style::Double && edit::needs_quotes(&n.2);
                assert!(
                    o.3 == n.3 || plain_quoted,
                    "style {:?} -> {:?} for {n:?}, {ctx}",
                    o.3,
                    n.3
                );
            } else {
                assert_eq!(o.2, n.2, "{ctx}");
            }
        }
        // 4. The independent parser reads both files, sees the same
        //    documents, and finds changes only where edits were made, each
        //    one holding the new value (an aliased scalar may show up at
        //    every alias, so at least one change per edit).
        let (old_v, new_v) = (independent(&src, &ctx), independent(&new, &ctx));
        assert_eq!(old_v.len(), new_v.len(), "document count, {ctx}");
        let changed: usize = old_v
            .iter()
            .zip(&new_v)
            .map(|(a, b)| changed_leaves(a, b, "$", &ctx))
            .sum();
        let real_edits = m
            .edits
            .iter()
            .filter(|e| src[e.start..e.end] != e.text)
            .count();
        assert!(
            changed >= real_edits.min(1) && (changed == 0) == (real_edits == 0),
            "{changed} scalars differ for {real_edits} edits, {ctx}"
        );
        // 5. Idempotent: a second run finds everything current.
        let again = match_file(&new, &new_docs, name, &target);
        assert!(
            again.edits.is_empty(),
            "second run still edits {:?}, {ctx}",
            again.edits
        );
        assert_eq!(again.found.len(), g.expected);
        if !m.edits.is_empty() {
            edited_files += 1;
        }
    }
    assert!(
        edited_files > cases / 3,
        "the generator should produce many files to edit ({edited_files})"
    );
}
