//! The reference schemas (GitLab reports, SARIF, GitLab CI, Argo CD API).
//! They are not committed: tests look in `$SECDELIV_SCHEMAS`, then
//! `../shared/schemas` beside the checkout, then `.schemas/` filled by
//! `scripts/fetch-schemas.sh`.

use std::path::{Path, PathBuf};

pub const GITLAB_CONTAINER_SCANNING: &str = "gitlab-container-scanning-report-format-15.2.1.json";
pub const GITLAB_DEPENDENCY_SCANNING: &str = "gitlab-dependency-scanning-report-format-15.2.1.json";
pub const SARIF: &str = "sarif-schema-2.1.0.json";
pub const GITLAB_CI: &str = "gitlab-ci.json";
pub const ARGOCD_SWAGGER: &str = "argocd-swagger.json";
/// CycloneDX 1.6; it refers to `spdx.schema.json` and `jsf-0.82.schema.json`
/// by relative name, so the three stay together in `cyclonedx/` (resolved
/// from there by [`violations`], never from the network).
pub const CYCLONEDX_1_6: &str = "cyclonedx/bom-1.6.schema.json";

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The directory holding the schemas; panics with what to do when none has them.
pub fn dir() -> PathBuf {
    let root = workspace_root();
    let candidates: Vec<PathBuf> = std::env::var_os("SECDELIV_SCHEMAS")
        .map(PathBuf::from)
        .into_iter()
        .chain([root.join("../shared/schemas"), root.join(".schemas")])
        .collect();
    candidates.iter().find(|d| d.join(SARIF).is_file()).cloned().unwrap_or_else(|| {
        panic!(
            "reference schemas not found in {candidates:?}: set SECDELIV_SCHEMAS, or run scripts/fetch-schemas.sh (needs the internet)"
        )
    })
}

/// Reads one schema as JSON.
pub fn load(name: &str) -> serde_json::Value {
    let p = dir().join(name);
    let text =
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", p.display()))
}

/// Validates `instance` against schema `name`; returns every violation as
/// `path: message` (empty when valid).
pub fn violations(name: &str, instance: &serde_json::Value) -> Vec<String> {
    let schema = load(name);
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .with_retriever(Beside(
            dir().join(name).parent().expect("schema dir").to_path_buf(),
        ))
        .build(&schema)
        .unwrap_or_else(|e| panic!("compiling schema {name}: {e}"));
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Resolves a schema's `$ref` to another schema file by its file name, from
/// the directory of the schema being compiled (CycloneDX's `$id`s are
/// `http://cyclonedx.org/schema/NAME`; nothing is downloaded).
struct Beside(PathBuf);

impl jsonschema::Retrieve for Beside {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<serde_json::Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri.path().as_str().rsplit('/').next().unwrap_or_default();
        let p = self.0.join(name);
        let text =
            std::fs::read_to_string(&p).map_err(|e| format!("{uri} -> {}: {e}", p.display()))?;
        Ok(serde_json::from_str(&text)?)
    }
}

/// Panics with every violation when `instance` is not valid against `name`.
pub fn assert_valid(name: &str, instance: &serde_json::Value) {
    let v = violations(name, instance);
    assert!(v.is_empty(), "not valid against {name}:\n{}", v.join("\n"));
}
