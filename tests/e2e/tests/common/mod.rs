//! Helpers shared by the CI template tests: YAML documents as JSON (for the
//! GitLab CI schema) and gitlab-ci-local on a throwaway project.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;

/// The workspace root.
pub fn root() -> PathBuf {
    harness::schemas::workspace_root()
}

/// ci-templates/digest-check.yml: the hidden job `.secdeliv-digest-check`
/// that scan-image, promote-image, sign-image and bump-manifest run with
/// `!reference`. Not a template: no `spec:` header, no visible job.
pub const DIGEST_CHECK: &str = "digest-check";

/// The templates that run the digest check and need digest-check.yml beside them.
pub const DIGEST_CHECKED: [&str; 4] =
    ["scan-image", "promote-image", "sign-image", "bump-manifest"];

/// Every template file in ci-templates/ (a `spec:` header, `---`, jobs),
/// sorted; digest-check.yml is not one.
pub fn template_files() -> Vec<PathBuf> {
    let dir = root().join("ci-templates");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .filter(|p| p.file_stem().is_some_and(|s| s != DIGEST_CHECK))
        .collect();
    files.sort();
    files
}

/// Converts one YAML value to JSON the way GitLab's schema sees it: merge keys
/// (`<<: *anchor`) applied, `!reference [job, key]` as its sequence, keys as strings.
pub fn yaml_to_json(v: &serde_yaml_ng::Value) -> serde_json::Value {
    use serde_yaml_ng::Value as Y;
    match v {
        Y::Null => serde_json::Value::Null,
        Y::Bool(b) => serde_json::Value::Bool(*b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into()
            } else if let Some(u) = n.as_u64() {
                u.into()
            } else {
                let f = n.as_f64().expect("a YAML number is i64, u64 or f64");
                serde_json::Number::from_f64(f)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
        }
        Y::String(s) => serde_json::Value::String(s.clone()),
        Y::Sequence(items) => serde_json::Value::Array(items.iter().map(yaml_to_json).collect()),
        Y::Mapping(m) => {
            let mut out = serde_json::Map::new();
            for (k, val) in m {
                let key = match k {
                    Y::String(s) => s.clone(),
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    Y::Null => "null".into(),
                    other => panic!("unsupported mapping key {other:?}"),
                };
                out.insert(key, yaml_to_json(val));
            }
            serde_json::Value::Object(out)
        }
        Y::Tagged(t) => {
            let tag = t.tag.to_string();
            assert!(
                tag == "!reference",
                "unsupported YAML tag {tag}: GitLab CI only knows !reference"
            );
            assert!(
                t.value.is_sequence(),
                "!reference takes a sequence, got {:?}",
                t.value
            );
            yaml_to_json(&t.value)
        }
    }
}

/// Every YAML document of `text`, merge keys applied, as JSON.
pub fn yaml_documents(text: &str, what: &str) -> Vec<serde_json::Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| {
            let mut v = serde_yaml_ng::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{what}: not YAML: {e}"));
            v.apply_merge()
                .unwrap_or_else(|e| panic!("{what}: bad merge key: {e}"));
            yaml_to_json(&v)
        })
        .collect()
}

/// gitlab-ci-local 4.70.0 (see [`e2e::flow::gitlab_ci_local`]); missing
/// means a failed test with the command that installs it.
pub fn gitlab_ci_local() -> PathBuf {
    e2e::flow::gitlab_ci_local().unwrap_or_else(|e| panic!("{e}"))
}

/// A throwaway Git project for gitlab-ci-local: ci-templates/ copied in, the
/// given .gitlab-ci.yml, one commit on `main`, an origin remote on gitlab.com.
pub struct Project {
    pub dir: tempfile::TempDir,
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=secdeliv-test",
            "-c",
            "user.email=test@localhost",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let dst = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).expect("copy");
        }
    }
}

impl Project {
    pub fn new(gitlab_ci: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        copy_dir(
            &root().join("ci-templates"),
            &dir.path().join("ci-templates"),
        );
        std::fs::write(dir.path().join(".gitlab-ci.yml"), gitlab_ci).expect("write .gitlab-ci.yml");
        std::fs::write(dir.path().join(".gitignore"), ".gitlab-ci-local/\n")
            .expect("write .gitignore");
        git(dir.path(), &["init", "-q"]);
        git(
            dir.path(),
            &[
                "remote",
                "add",
                "origin",
                "https://gitlab.com/acme/sensor-app.git",
            ],
        );
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-qm", "init"]);
        Project { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `rel` (parents created) and commits it; returns the new HEAD SHA.
    pub fn commit_file(&self, rel: &str, content: &str) -> String {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, content).expect("write");
        git(self.path(), &["add", "-A"]);
        git(self.path(), &["commit", "-qm", rel]);
        let out = Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(self.path())
            .output()
            .expect("git");
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_string()
    }

    /// Creates and switches to another branch.
    pub fn branch(&self, name: &str) {
        git(self.path(), &["checkout", "-qb", name]);
    }

    /// Runs gitlab-ci-local in the project with `args`.
    pub fn gcl(&self, args: &[&str]) -> Output {
        let home = self.path().join(".gitlab-ci-local/home");
        std::fs::create_dir_all(&home).expect("mkdir home");
        Command::new(gitlab_ci_local())
            .args(args)
            .arg("--home")
            .arg(&home)
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env("FORCE_COLOR", "0")
            .output()
            .expect("running gitlab-ci-local")
    }

    /// `--list-json` (with `extra` arguments): the jobs that run, i.e. not `when: never`.
    pub fn jobs(&self, extra: &[&str]) -> Vec<serde_json::Value> {
        let mut args = vec![
            "--list-json",
            "--ignore-predefined-vars",
            "CI_PIPELINE_SOURCE,CI_COMMIT_TAG",
        ];
        args.extend_from_slice(extra);
        let out = self.gcl(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "gitlab-ci-local --list-json {extra:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Warnings may precede the JSON array, which starts on a line of its own.
        let start = if stdout.starts_with('[') {
            Some(0)
        } else {
            stdout.find("\n[").map(|i| i + 1)
        }
        .unwrap_or_else(|| panic!("no JSON in gitlab-ci-local output:\n{stdout}"));
        let all: Vec<serde_json::Value> = serde_json::from_str(&stdout[start..])
            .unwrap_or_else(|e| panic!("gitlab-ci-local JSON: {e}\n{stdout}"));
        all.into_iter().filter(|j| j["when"] != "never").collect()
    }

    /// `--preview`: the merged configuration, as one YAML text.
    pub fn preview(&self) -> String {
        let out = self.gcl(&["--preview"]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "gitlab-ci-local --preview failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

/// Names of `jobs`.
pub fn names(jobs: &[serde_json::Value]) -> Vec<String> {
    jobs.iter()
        .map(|j| j["name"].as_str().expect("job name").to_string())
        .collect()
}
