//! Template inputs never run as shell (issue 17, finding 6).
//!
//! Every input of every template (read from its `spec:inputs`, so a new input
//! is covered without touching this file) gets payloads that would create a
//! marker file if any shell evaluated them: `$(touch …)`, backticks, `;`,
//! quotes that close a quoted string, a newline. Each input is either
//!
//! - refused by its spec (`options`, `boolean`, or its `regex`, read from the
//!   template and applied here because gitlab-ci-local does not check
//!   regexes), or
//! - passed literally: the pipeline runs under gitlab-ci-local's shell
//!   executor with stub binaries that record their argv and environment, and
//!   the payload must arrive byte for byte in an argument or an environment
//!   variable of a binary, or
//! - never used by a script at all (job names, stages, `needs`, `rules`,
//!   `image`, `environment`).
//!
//! Then the inputs a spec refuses are fed anyway (as if GitLab did not check
//! the regex): nothing may run either. In every run no marker file may exist.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{DIGEST_CHECK, DIGEST_CHECKED, Project, root, template_files, yaml_documents};
use serde_json::{Value, json};

const BUILD_DIGEST: &str =
    "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const PROMOTED_DIGEST: &str =
    "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const CONFIG_COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// The binaries the templates call, as stubs that record argv and environment.
const STUBS: [&str; 6] = [
    "buildah",
    "scan-image",
    "promote-image",
    "sign-image",
    "bump-manifest",
    "notify-argocd",
];

/// Inputs a template uses only under a condition the stubs do not meet.
const CONDITIONAL: [(&str, &str, &str); 1] = [(
    "scan-image",
    "dockerfile",
    "passed to scan-image only when the file exists",
)];

/// The payload variants; `{m}` is the marker directory, `{i}` the input's number.
fn payloads(m: &Path, i: usize) -> [String; 3] {
    let m = m.display();
    let compact = format!(
        "v{i}$(>{m}/pwned-{i}-f)`>{m}/pwned-{i}-g`;>{m}/pwned-{i}-h'\"$(>{m}/pwned-{i}-j)\"'"
    );
    [
        format!(
            "v{i} $(touch {m}/pwned-{i}-a) `touch {m}/pwned-{i}-b` ;touch {m}/pwned-{i}-c '\"$(touch {m}/pwned-{i}-d)\"'\ntouch {m}/pwned-{i}-e #"
        ),
        compact.clone(),
        // For KEY=VALUE grammars (build-args, annotations).
        format!("K{i}={compact}"),
    ]
}

struct Template {
    name: String,
    inputs: serde_json::Map<String, Value>,
    body: Value,
}

fn template(name: &str) -> Template {
    let path = root().join(format!("ci-templates/{name}.yml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let docs = yaml_documents(&text, name);
    Template {
        name: name.into(),
        inputs: docs[0]["spec"]["inputs"].as_object().unwrap().clone(),
        body: docs[1].clone(),
    }
}

/// Every place `$[[ inputs.<input> ]]` appears in `v`, as the key path
/// (mapping keys count: a job name may carry an input).
fn uses(v: &Value, input: &str, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let needle = format!("$[[ inputs.{input} ]]");
    match v {
        Value::String(s) if s.contains(&needle) => out.push(path.clone()),
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                path.push(i.to_string());
                uses(x, input, path, out);
                path.pop();
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                if k.contains(&needle) {
                    out.push([path.clone(), vec![k.clone()]].concat());
                }
                path.push(k.clone());
                uses(x, input, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn is_script_key(k: &str) -> bool {
    matches!(k, "script" | "before_script" | "after_script")
}

/// How an input reaches a shell: `Some(true)` through a job's `variables:`
/// (directly or through an included template's input), `Some(false)` never.
fn reaches_variables(t: &Template, input: &str) -> bool {
    let mut found = Vec::new();
    uses(&t.body, input, &mut Vec::new(), &mut found);
    found.iter().any(|p| {
        if p.len() >= 2 && p[1] == "variables" {
            return true;
        }
        if p.first().map(String::as_str) == Some("include")
            && p.get(2).map(String::as_str) == Some("inputs")
        {
            let i: usize = p[1].parse().unwrap();
            let local = t.body["include"][i]["local"].as_str().unwrap();
            let sub = template(
                local
                    .trim_start_matches("/ci-templates/")
                    .trim_end_matches(".yml"),
            );
            return reaches_variables(&sub, &p[3]);
        }
        false
    })
}

/// What the spec lets through for an input: the payload variants its regex
/// accepts, or none (options, boolean, or a regex refusing all of them).
fn accepted_variants(spec: &Value, variants: &[String]) -> Vec<usize> {
    if spec["type"] == "boolean" {
        return vec![];
    }
    if let Some(opts) = spec["options"].as_array() {
        return (0..variants.len())
            .filter(|&k| opts.iter().any(|o| o == variants[k].as_str()))
            .collect();
    }
    match spec["regex"].as_str() {
        Some(re) => {
            let re = regex::Regex::new(re).unwrap_or_else(|e| panic!("regex {re}: {e}"));
            (0..variants.len())
                .filter(|&k| re.is_match(&variants[k]))
                .collect()
        }
        None => (0..variants.len()).collect(),
    }
}

fn write_stubs(bin: &Path) {
    let body = r#"#!/bin/sh
name="${0##*/}"
printf '%s\0' "$@" > "$STUB_RECORDS/$name.$$.argv"
cat /proc/$$/environ > "$STUB_RECORDS/$name.$$.env"
case "$name" in
  buildah)
    if [ "${1:-}" = login ]; then cat > /dev/null; exit 0; fi
    while [ $# -gt 0 ]; do if [ "$1" = --digestfile ]; then printf '%s' "$STUB_BUILD_DIGEST" > "$2"; fi; shift; done ;;
  scan-image) printf 'SCAN_GATE=pass\n' > scan-image.env ;;
  promote-image) printf 'PROMOTED_IMAGE=docker.io/acme/app@%s\nPROMOTED_DIGEST=%s\n' "$STUB_PROMOTED_DIGEST" "$STUB_PROMOTED_DIGEST" > promote.env ;;
  bump-manifest) printf 'BUMP_MANIFEST_COMMIT=%s\n' "$STUB_CONFIG_COMMIT" > bump-manifest.env ;;
  notify-argocd) printf 'ARGOCD_APP_URL=https://argocd.example.com/applications/argocd/app\n' > notify-argocd.env ;;
esac
"#;
    for name in STUBS {
        let p = bin.join(name);
        std::fs::write(&p, body).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

struct Outcome {
    ok: bool,
    output: String,
    /// Every argument and every environment entry (but the templates' own
    /// `SECDELIV_*` channels) each stub received.
    received: Vec<String>,
}

/// A project including `t` with `inputs`; the jobs a stage template needs are
/// stubbed. Runs the whole pipeline under the shell executor.
fn run(t: &Template, inputs: &BTreeMap<String, String>, markers: &Path) -> Outcome {
    let mut ci = serde_json::Map::new();
    let mut include =
        vec![json!({"local": format!("/ci-templates/{}.yml", t.name), "inputs": inputs})];
    if DIGEST_CHECKED.contains(&t.name.as_str()) {
        include.insert(
            0,
            json!({"local": format!("/ci-templates/{DIGEST_CHECK}.yml")}),
        );
    }
    ci.insert("include".into(), Value::Array(include));
    if t.name != "gitops-iot" {
        for (input, spec) in &t.inputs {
            if input.ends_with("-job") {
                let job = spec["default"].as_str().unwrap();
                ci.insert(job.into(), json!({"stage": ".pre", "script": ["true"]}));
            }
        }
    }
    let p = Project::new(&serde_json::to_string_pretty(&Value::Object(ci)).unwrap());
    let bin = p.path().join(".stub-bin");
    let records = p.path().join(".stub-records");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&records).unwrap();
    write_stubs(&bin);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let vars = [
        format!("BUILD_IMAGE=registry.example.com/acme/app@{BUILD_DIGEST}"),
        format!("PROMOTED_IMAGE=docker.io/acme/app@{PROMOTED_DIGEST}"),
        "PROMOTED_NAME=docker.io/acme/app".into(),
        "PROMOTED_TAG=1.0.0".into(),
        format!("PROMOTED_DIGEST={PROMOTED_DIGEST}"),
        format!("BUMP_MANIFEST_COMMIT={CONFIG_COMMIT}"),
        "CONFIG_REPO_URL=https://gitlab.example.com/acme/config.git".into(),
        "ARGOCD_SERVER=https://argocd.example.com".into(),
        "DOCKERHUB_USERNAME=acme".into(),
    ];
    let mut cmd = std::process::Command::new(common::gitlab_ci_local());
    cmd.args([
        "--force-shell-executor",
        "--ignore-predefined-vars",
        "CI_COMMIT_TAG",
    ]);
    for v in &vars {
        cmd.args(["--variable", v]);
    }
    let out = cmd
        .arg("--home")
        .arg(p.path().join(".gitlab-ci-local/home"))
        .current_dir(p.path())
        .env("PATH", path)
        .env("STUB_RECORDS", &records)
        .env("STUB_BUILD_DIGEST", BUILD_DIGEST)
        .env("STUB_PROMOTED_DIGEST", PROMOTED_DIGEST)
        .env("STUB_CONFIG_COMMIT", CONFIG_COMMIT)
        .env("NO_COLOR", "1")
        .env("FORCE_COLOR", "0")
        .output()
        .expect("running gitlab-ci-local");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut received = Vec::new();
    for e in std::fs::read_dir(&records).unwrap() {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        for item in bytes.split(|b| *b == 0) {
            let s = String::from_utf8_lossy(item).into_owned();
            if !s.starts_with("SECDELIV_") {
                received.push(s);
            }
        }
    }
    assert_no_marker(markers, &t.name, &output);
    Outcome {
        ok: out.status.success(),
        output,
        received,
    }
}

fn assert_no_marker(markers: &Path, what: &str, output: &str) {
    let made: Vec<PathBuf> = std::fs::read_dir(markers)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        made.is_empty(),
        "{what}: an input ran as shell, it created {made:?}\n{output}"
    );
}

/// Feeds every input of `name` the payloads; see the module docs.
fn inputs_never_run_as_shell(name: &str) {
    let t = template(name);
    let markers = tempfile::tempdir().unwrap();
    let m = markers.path();
    let names: Vec<&String> = t.inputs.keys().collect();

    // No interpolation inside a script: inputs reach scripts as variables only.
    for (job, def) in t.body.as_object().unwrap() {
        for (k, v) in def.as_object().into_iter().flatten() {
            if is_script_key(k) {
                assert!(
                    !v.to_string().contains("$[["),
                    "{name}: {job}.{k} interpolates an input into script text"
                );
            }
        }
    }

    let mut literal: [BTreeMap<String, String>; 3] = Default::default();
    let mut refused = BTreeMap::new();
    let mut never_scripted = BTreeMap::new();
    for (i, input) in names.iter().enumerate() {
        let spec = &t.inputs[input.as_str()];
        let variants = payloads(m, i);
        let accepted = accepted_variants(spec, &variants);
        let scripted = reaches_variables(&t, input);
        if !scripted {
            if spec["type"] != "boolean" && spec.get("options").is_none() {
                never_scripted.insert(input.to_string(), variants[0].clone());
            }
            continue;
        }
        for &k in &accepted {
            literal[k].insert(input.to_string(), variants[k].clone());
        }
        if accepted.len() < variants.len()
            && spec["type"] != "boolean"
            && spec.get("options").is_none()
        {
            // Refused by the regex: fed anyway below.
            let k = (0..variants.len()).find(|k| !accepted.contains(k)).unwrap();
            refused.insert(input.to_string(), variants[k].clone());
        }
    }

    eprintln!(
        "{name}: literal {:?}, refused {:?}, never scripted {:?}",
        literal
            .iter()
            .map(|b| b.keys().collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        refused.keys().collect::<Vec<_>>(),
        never_scripted.keys().collect::<Vec<_>>()
    );
    // Accepted payloads arrive byte for byte at a binary.
    for batch in &literal {
        if batch.is_empty() {
            continue;
        }
        let r = run(&t, batch, m);
        assert!(
            r.ok,
            "{name}: the pipeline failed with {batch:?}:\n{}",
            r.output
        );
        for (input, payload) in batch {
            if CONDITIONAL
                .iter()
                .any(|(tn, i, _)| *tn == name && i == input)
            {
                continue;
            }
            assert!(
                r.received.iter().any(|x| x.contains(payload.as_str())),
                "{name}: input {input}'s value never reached a binary literally\n{payload:?}\n{}",
                r.output
            );
        }
    }
    // Refused payloads, fed anyway (gitlab-ci-local ignores regexes): nothing runs.
    if !refused.is_empty() {
        run(&t, &refused, m);
    }
    // Inputs no script sees (names, stages, rules, images): nothing runs either.
    if !never_scripted.is_empty() {
        run(&t, &never_scripted, m);
    }
}

#[test]
fn the_test_covers_every_template() {
    let mut have: Vec<String> = template_files()
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    have.sort();
    let mut tested = vec![
        "build-image",
        "bump-manifest",
        "gitops-iot",
        "notify-argocd",
        "promote-image",
        "scan-image",
        "sign-image",
    ];
    tested.sort_unstable();
    assert_eq!(
        have, tested,
        "a template without an inputs_never_run_as_shell test"
    );
}

#[test]
fn the_marker_check_can_fail() {
    // Control: an input pasted into script text (the old way) does run.
    let markers = tempfile::tempdir().unwrap();
    let payload = &payloads(markers.path(), 0)[0];
    let p = Project::new("stub:\n  script: [\"true\"]\n");
    p.commit_file(
        "t.yml",
        "spec:\n  inputs:\n    x:\n      default: ''\n---\nj:\n  script:\n    - echo \"$[[ inputs.x ]]\"\n",
    );
    std::fs::write(
        p.path().join(".gitlab-ci.yml"),
        serde_json::to_string(&json!({"include": [{"local": "/t.yml", "inputs": {"x": payload}}]}))
            .unwrap(),
    )
    .unwrap();
    let out = p.gcl(&["--force-shell-executor"]);
    let made = std::fs::read_dir(markers.path()).unwrap().count();
    assert!(
        made > 0,
        "the unsafe control ran nothing: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn build_image_inputs_never_run_as_shell() {
    inputs_never_run_as_shell("build-image");
}

#[test]
fn scan_image_inputs_never_run_as_shell() {
    inputs_never_run_as_shell("scan-image");
}

#[test]
fn promote_image_inputs_never_run_as_shell() {
    inputs_never_run_as_shell("promote-image");
}

#[test]
fn sign_image_inputs_never_run_as_shell() {
    inputs_never_run_as_shell("sign-image");
}

#[test]
fn bump_manifest_inputs_never_run_as_shell() {
    inputs_never_run_as_shell("bump-manifest");
}

#[test]
fn notify_argocd_inputs_never_run_as_shell() {
    inputs_never_run_as_shell("notify-argocd");
}

#[test]
fn gitops_iot_inputs_never_run_as_shell() {
    inputs_never_run_as_shell("gitops-iot");
}

/// The by-digest check is written once, in digest-check.yml (a hidden job),
/// and each template that checks runs it with
/// `!reference [.secdeliv-digest-check, script]`: exactly one such item in its
/// job's script, and no copy of the check's text anywhere else.
#[test]
fn the_digest_check_is_written_once_and_referenced_by_each_template() {
    let path = root().join(format!("ci-templates/{DIGEST_CHECK}.yml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let docs = yaml_documents(&text, DIGEST_CHECK);
    assert_eq!(
        docs.len(),
        1,
        "{DIGEST_CHECK}.yml: one document, no spec header"
    );
    let check = docs[0][".secdeliv-digest-check"]["script"]
        .as_array()
        .unwrap_or_else(|| panic!("{DIGEST_CHECK}.yml: no .secdeliv-digest-check script"));
    assert!(
        check
            .iter()
            .any(|s| s.as_str().is_some_and(|s| s.contains("secdeliv_hex"))
                && s.as_str().is_some_and(|s| s.contains("exit 2"))),
        "{DIGEST_CHECK}.yml: the check is not there: {check:?}"
    );
    let reference = json!([".secdeliv-digest-check", "script"]);
    for name in DIGEST_CHECKED {
        let t = template(name);
        let job = t
            .body
            .as_object()
            .unwrap()
            .iter()
            .find(|(k, _)| k.starts_with(name))
            .unwrap()
            .1
            .clone();
        let items = job["script"].as_array().unwrap();
        assert_eq!(
            items.iter().filter(|s| **s == reference).count(),
            1,
            "{name}: want one `!reference [.secdeliv-digest-check, script]` in {items:?}"
        );
        assert!(
            job["variables"]["SECDELIV_IMAGE"].is_string(),
            "{name}: the check reads SECDELIV_IMAGE"
        );
    }
    for path in template_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("secdeliv_hex"),
            "{}: a copy of the digest check; reference {DIGEST_CHECK}.yml instead",
            path.display()
        );
    }
}
