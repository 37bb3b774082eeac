//! ci-templates/: every document of every template validates against GitLab's
//! CI schema, and the templates load in gitlab-ci-local with their inputs:
//! the job DAG, the rules (no publish or deploy in merge-request pipelines),
//! the soft gate, input validation, and shell syntax of every script.

mod common;

use common::{DIGEST_CHECK, DIGEST_CHECKED, Project, names, template_files, yaml_documents};
use harness::schemas::{GITLAB_CI, assert_valid, violations};

/// One template per job of the flow.
use e2e::flow::PIPELINE_JOBS as JOB_TEMPLATES;

const FLOW: &str = "\
include:
  - local: /ci-templates/gitops-iot.yml
    inputs:
      version: 0.1.0
      soft-gate: true
      target-image: docker.io/acme/sensor-app
      argocd-app: sensor-app
";

#[test]
fn every_template_exists_with_a_spec_header_and_a_body() {
    let files: Vec<String> = template_files()
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for t in JOB_TEMPLATES.iter().chain(["gitops-iot"].iter()) {
        assert!(
            files.contains(&t.to_string()),
            "ci-templates/{t}.yml is missing (have {files:?})"
        );
    }
    for path in template_files() {
        let what = path.display().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let docs = yaml_documents(&text, &what);
        assert_eq!(
            docs.len(),
            2,
            "{what}: want a spec header, `---`, and the body"
        );
        let inputs = docs[0]["spec"]["inputs"]
            .as_object()
            .unwrap_or_else(|| panic!("{what}: no spec:inputs"));
        assert!(!inputs.is_empty(), "{what}: spec:inputs is empty");
        for (name, spec) in inputs {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{what}: input {name} is not kebab-case"
            );
            let d = spec["description"].as_str().unwrap_or_default();
            assert!(d.len() > 10, "{what}: input {name} has no description");
            assert!(
                spec.get("default").is_some(),
                "{what}: input {name} has no default (the template must work with a bare include)"
            );
            if let Some(opts) = spec["options"].as_array() {
                assert!(
                    opts.contains(&spec["default"]),
                    "{what}: {name}'s default is not one of its options"
                );
            }
            if let Some(re) = spec["regex"].as_str() {
                // GitLab checks defaults against the regex too.
                let d = spec["default"].as_str().expect("regex inputs are strings");
                assert!(
                    simple_regex_matches(re, d),
                    "{what}: {name}'s default {d:?} does not match its regex {re}"
                );
            }
            // Every input is used in the body.
            assert!(
                text.contains(&format!("inputs.{name} ]]")),
                "{what}: input {name} is declared but never used"
            );
        }
        // Every interpolation names a declared input.
        for (i, _) in text.match_indices("$[[ inputs.") {
            let rest = &text[i + 11..];
            let name = &rest[..rest.find(' ').unwrap()];
            assert!(
                inputs.contains_key(name),
                "{what}: $[[ inputs.{name} ]] is not declared"
            );
        }
    }
}

#[test]
fn every_template_document_validates_against_the_gitlab_ci_schema() {
    let mut checked = 0;
    for path in template_files() {
        let what = path.display().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, doc) in yaml_documents(&text, &what).iter().enumerate() {
            let v = violations(GITLAB_CI, doc);
            assert!(
                v.is_empty(),
                "{what} document {i} is not valid against {GITLAB_CI}:\n{}",
                v.join("\n")
            );
            checked += 1;
        }
    }
    assert!(checked >= 14, "only {checked} documents checked");
}

#[test]
fn the_schema_check_catches_a_broken_template() {
    // The validation above can fail: a script item that YAML reads as a mapping
    // (an unquoted `: `) and an unknown keyword are both reported.
    let docs = yaml_documents(
        "job:\n  script:\n    - echo notify-argocd: failed\n  allow_failure:\n    exit_codes: []\n  needz: [a]\n",
        "broken",
    );
    let v = violations(GITLAB_CI, &docs[0]);
    assert!(!v.is_empty(), "a broken job validated");
}

#[test]
fn the_whole_flow_loads_in_gitlab_ci_local_as_a_dag() {
    let p = Project::new(FLOW);
    let jobs = p.jobs(&[]);
    assert_eq!(
        names(&jobs),
        JOB_TEMPLATES.map(String::from).to_vec(),
        "jobs on the default branch"
    );
    let needs = |name: &str| -> Vec<String> {
        let j = jobs.iter().find(|j| j["name"] == name).unwrap();
        j["needs"].as_array().map_or(vec![], |n| {
            n.iter()
                .map(|x| x["job"].as_str().unwrap().to_string())
                .collect()
        })
    };
    assert!(needs("build-image").is_empty());
    assert_eq!(needs("scan-image"), ["build-image"]);
    assert_eq!(needs("promote-image"), ["build-image", "scan-image"]);
    assert_eq!(needs("sign-image"), ["promote-image"]);
    assert_eq!(needs("bump-manifest"), ["promote-image", "sign-image"]);
    assert_eq!(needs("notify-argocd"), ["bump-manifest"]);
    let scan = jobs.iter().find(|j| j["name"] == "scan-image").unwrap();
    assert_eq!(
        scan["allow_failure"],
        serde_json::json!({"exit_codes": [1]}),
        "soft-gate: true"
    );
    let out = p.gcl(&["--validate-dependency-chain"]);
    assert!(
        out.status.success(),
        "dependency chain: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn publish_and_deploy_never_run_in_merge_request_pipelines_or_feature_branches() {
    let p = Project::new(FLOW);
    let mr = p.jobs(&["--variable", "CI_PIPELINE_SOURCE=merge_request_event"]);
    assert_eq!(
        names(&mr),
        ["build-image", "scan-image"],
        "merge-request pipeline"
    );
    // Even with a tag set, a merge-request pipeline publishes nothing.
    let mr_tag = p.jobs(&[
        "--variable",
        "CI_PIPELINE_SOURCE=merge_request_event",
        "--variable",
        "CI_COMMIT_TAG=v1.0.0",
    ]);
    assert_eq!(names(&mr_tag), ["build-image", "scan-image"]);
    p.branch("feature/fan-speed");
    assert_eq!(
        names(&p.jobs(&[])),
        ["build-image", "scan-image"],
        "feature branch"
    );
    let tag = p.jobs(&["--variable", "CI_COMMIT_TAG=v1.0.0"]);
    assert_eq!(
        names(&tag),
        JOB_TEMPLATES.map(String::from).to_vec(),
        "tag pipeline"
    );
}

#[test]
fn publish_if_input_changes_where_publishing_happens() {
    let p = Project::new(&FLOW.replace(
        "      argocd-app: sensor-app\n",
        "      argocd-app: sensor-app\n      publish-if: $CI_COMMIT_TAG\n",
    ));
    assert_eq!(
        names(&p.jobs(&[])),
        ["build-image", "scan-image"],
        "default branch without a tag"
    );
    let tag = p.jobs(&["--variable", "CI_COMMIT_TAG=v1.0.0"]);
    assert_eq!(tag.len(), 6);
}

#[test]
fn hard_gate_is_the_default() {
    let p = Project::new("include:\n  - local: /ci-templates/gitops-iot.yml\n");
    let scan = p
        .jobs(&[])
        .into_iter()
        .find(|j| j["name"] == "scan-image")
        .unwrap();
    assert_eq!(scan["allow_failure"], false);
}

#[test]
fn an_input_outside_its_options_is_refused() {
    let p = Project::new(&FLOW.replace("      soft-gate: true\n", "      fail-on: severe\n"));
    let out = p.gcl(&["--list"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "fail-on: severe was accepted:\n{all}"
    );
    assert!(
        all.contains("fail-on") && all.contains("allowed options"),
        "unexpected message:\n{all}"
    );
}

#[test]
fn the_merged_flow_validates_and_every_script_is_valid_shell() {
    let p = Project::new(FLOW);
    let preview = p.preview();
    let docs = yaml_documents(&preview, "gitlab-ci-local --preview");
    let merged = docs
        .into_iter()
        .find(|d| d.is_object())
        .expect("a merged document");
    assert_valid(GITLAB_CI, &merged);
    let secret_expansion =
        regex::Regex::new(r"\$\{?[A-Z0-9_]*(PASSWORD|TOKEN|COSIGN_PRIVATE_KEY)").unwrap();
    for job in JOB_TEMPLATES {
        let j = &merged[job];
        assert!(j.is_object(), "{job} missing from the merged configuration");
        assert!(!preview.contains("$[["), "an interpolation was left behind");
        let image = j["image"]["name"].as_str().unwrap();
        if job == "build-image" {
            assert!(
                image.starts_with("quay.io/buildah/stable:v"),
                "{job}: {image}"
            );
        } else {
            assert_eq!(
                image,
                format!("registry.gitlab.com/secdeliv/secdeliv/{job}:0.1.0"),
                "pinned job image"
            );
        }
        let script: Vec<&str> = j["script"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        let text = script.join("\n");
        let out = std::process::Command::new("sh")
            .args(["-n", "-c", &text])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{job}: script is not valid sh: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        // No secret is ever printed: no `set -x`, and no expansion of a secret
        // variable reaches echo/printf except printf to a pipe into
        // --password-stdin (naming a variable in a message is fine).
        for line in text.lines() {
            assert!(
                !line.contains("set -x"),
                "{job}: set -x would print secrets"
            );
            if secret_expansion.is_match(line) && (line.contains("echo") || line.contains("printf"))
            {
                assert!(
                    line.contains("--password-stdin"),
                    "{job} prints a secret: {line}"
                );
            }
        }
        if job != "build-image" && job != "scan-image" {
            let rules = j["rules"]
                .as_array()
                .expect("publish and deploy jobs have rules");
            assert_eq!(
                rules[0]["if"],
                "$CI_PIPELINE_SOURCE == \"merge_request_event\""
            );
            assert_eq!(rules[0]["when"], "never");
        }
    }
    // Later stages refer to the image by the digest of the build, through
    // job variables (never script text).
    assert_eq!(
        merged["build-image"]["artifacts"]["reports"]["dotenv"],
        "build-image.env"
    );
    assert_eq!(
        merged["scan-image"]["variables"]["SECDELIV_IMAGE"],
        "$BUILD_IMAGE"
    );
    assert_eq!(
        merged["promote-image"]["variables"]["SECDELIV_IMAGE"],
        "$BUILD_IMAGE"
    );
    assert_eq!(
        merged["sign-image"]["variables"]["SECDELIV_IMAGE"],
        "$PROMOTED_IMAGE"
    );
    assert_eq!(
        merged["bump-manifest"]["variables"]["SECDELIV_ORDER_KEY"],
        "$CI_PIPELINE_IID"
    );
    assert!(
        merged["bump-manifest"]["script"]
            .to_string()
            .contains("--order-key \\\"$SECDELIV_ORDER_KEY\\\"")
    );
    assert_eq!(
        merged["bump-manifest"]["variables"]["SECDELIV_NEW_DIGEST"],
        "$PROMOTED_DIGEST"
    );
    let reports = &merged["scan-image"]["artifacts"]["reports"];
    for r in [
        "container_scanning",
        "codequality",
        "junit",
        "cyclonedx",
        "dotenv",
    ] {
        assert!(reports[r].is_string(), "scan-image lacks the {r} report");
    }
    assert_eq!(merged["scan-image"]["artifacts"]["when"], "always");
    let notify = &merged["notify-argocd"];
    assert_eq!(notify["resource_group"], "argocd-production");
    assert_eq!(notify["environment"]["url"], "https://$ARGOCD_APP_LINK");
    assert_eq!(
        notify["artifacts"]["reports"]["dotenv"],
        "notify-argocd.env"
    );
}

#[test]
fn each_template_loads_alone_with_its_needs_stubbed() {
    for t in JOB_TEMPLATES {
        let stubs = match t {
            "scan-image" | "promote-image" => "build-image",
            "sign-image" => "promote-image",
            "bump-manifest" => "promote-image",
            "notify-argocd" => "bump-manifest",
            _ => "",
        };
        let mut ci = String::from("include:\n");
        if DIGEST_CHECKED.contains(&t) {
            ci.push_str(&format!("  - local: /ci-templates/{DIGEST_CHECK}.yml\n"));
        }
        ci.push_str(&format!(
            "  - local: /ci-templates/{t}.yml\n    inputs:\n      stage: test\n"
        ));
        if !stubs.is_empty() {
            ci.push_str(&format!("{stubs}:\n  stage: build\n  script: [\"true\"]\n"));
        }
        let p = Project::new(&ci);
        let jobs = p.jobs(&[]);
        let mine = jobs
            .iter()
            .find(|j| j["name"] == t)
            .unwrap_or_else(|| panic!("{t} not listed: {jobs:?}"));
        assert_eq!(mine["stage"], "test", "{t}: the stage input is not applied");
        let merged = yaml_documents(&p.preview(), t)
            .into_iter()
            .find(|d| d.is_object())
            .unwrap();
        assert_valid(GITLAB_CI, &merged);
    }
}

/// The stage templates that check digests `!reference` the hidden job in
/// digest-check.yml; included without it, the pipeline does not load, and
/// the cause names the missing reference (never a job that skips the check).
#[test]
fn a_digest_checked_template_without_digest_check_yml_does_not_load() {
    let p = Project::new(
        "include:\n  - local: /ci-templates/scan-image.yml\nbuild-image:\n  stage: build\n  script: [\"true\"]\n",
    );
    let out = p.gcl(&["--list-json"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "scan-image loaded without {DIGEST_CHECK}.yml:\n{all}"
    );
    assert!(
        all.contains("!reference [.secdeliv-digest-check, script]"),
        "the cause does not name the missing reference:\n{all}"
    );
}

#[test]
fn the_digest_check_file_validates_against_the_gitlab_ci_schema() {
    let what = format!("ci-templates/{DIGEST_CHECK}.yml");
    let text = std::fs::read_to_string(common::root().join(&what)).unwrap();
    let docs = yaml_documents(&text, &what);
    assert_eq!(docs.len(), 1, "{what}: one document");
    assert_valid(GITLAB_CI, &docs[0]);
    let jobs: Vec<&String> = docs[0].as_object().unwrap().keys().collect();
    assert!(
        jobs.iter().all(|j| j.starts_with('.')),
        "{what} defines only hidden jobs (a visible one would run in every pipeline that includes it): {jobs:?}"
    );
}

#[test]
fn each_stage_template_loads_as_a_ci_cd_component() {
    // A component project holds the same files under templates/; gitlab-ci-local
    // resolves a component of the current project at HEAD locally.
    for t in JOB_TEMPLATES {
        let stub = match t {
            "scan-image" | "promote-image" => Some("build-image"),
            "sign-image" | "bump-manifest" => Some("promote-image"),
            "notify-argocd" => Some("bump-manifest"),
            _ => None,
        };
        let p = Project::new("stub:\n  script: [\"true\"]\n");
        let text =
            std::fs::read_to_string(common::root().join(format!("ci-templates/{t}.yml"))).unwrap();
        let mut sha = p.commit_file(&format!("templates/{t}.yml"), &text);
        let mut ci = String::from("include:\n");
        if DIGEST_CHECKED.contains(&t) {
            // The hidden check job, a component of the same catalog project.
            let check = std::fs::read_to_string(
                common::root().join(format!("ci-templates/{DIGEST_CHECK}.yml")),
            )
            .unwrap();
            sha = p.commit_file(&format!("templates/{DIGEST_CHECK}.yml"), &check);
            ci.push_str(&format!(
                "  - component: gitlab.com/acme/sensor-app/{DIGEST_CHECK}@{sha}\n"
            ));
        }
        ci.push_str(&format!(
            "  - component: gitlab.com/acme/sensor-app/{t}@{sha}\n    inputs:\n      stage: test\n      job-suffix: -component\n"
        ));
        if let Some(s) = stub {
            ci.push_str(&format!("{s}:\n  stage: build\n  script: [\"true\"]\n"));
        }
        // The suffixed job's needs point at the unsuffixed stub, as the defaults
        // say. The pipeline file stays uncommitted: gitlab-ci-local reads the
        // working tree, and the component's ref must stay HEAD.
        std::fs::write(p.path().join(".gitlab-ci.yml"), &ci).unwrap();
        let out = p.gcl(&["--list-json"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{t} as a component: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("\"name\": \"{t}-component\"")),
            "{t}-component not listed:\n{stdout}"
        );
    }
}

/// GitLab checks an input's default against its `regex` too (RE2 syntax;
/// the patterns here use the subset Rust's regex crate reads the same way).
fn simple_regex_matches(re: &str, s: &str) -> bool {
    regex::Regex::new(re)
        .unwrap_or_else(|e| panic!("regex {re}: {e}"))
        .is_match(s)
}

/// Values each regex-bearing input must accept and refuse. The regexes are
/// read from the templates themselves; an input with a regex and no row here
/// fails the test, so a new regex comes with its examples.
const REGEX_EXAMPLES: &[(&str, &[&str], &[&str])] = &[
    (
        "job-suffix",
        &["", "-api", "_x1"],
        &["api", "-", "-Api", "-a;b"],
    ),
    (
        "version",
        &[
            "0.1.0",
            "1.22.333-rc.1",
            "$CI_COMMIT_SHORT_SHA",
            "${VERSION}",
        ],
        &["latest", "1.0", "$", "0.1.0 ", "v1.0.0", "$(id)"],
    ),
    (
        "platforms",
        &["linux/arm64,linux/amd64,linux/arm/v7", "linux/arm64"],
        &["linux/arm64,", "linux", "linux/arm64 linux/amd64"],
    ),
    (
        "platform",
        &["linux/arm64", "linux/arm/v7"],
        &["linux/arm64,linux/amd64", ""],
    ),
    (
        "scan-platform",
        &["all", "linux/arm64"],
        &["linux/arm64,linux/amd64", "All", ""],
    ),
    (
        "build-args",
        &[
            "",
            "A=1",
            "A=1 B=2",
            "A=1,B=$CI_COMMIT_SHA",
            "A=1\nB=2",
            "VERSION=$(id>pwned)",
        ],
        &["A", "1A=2", "A-B=1", "A=1 B", "A=1 ;touch x"],
    ),
    (
        "image-name",
        &[
            "$CI_REGISTRY_IMAGE",
            "registry.example.com:5000/acme/app",
            "$CI_REGISTRY_IMAGE/scan-image",
        ],
        &["", "acme/app@sha256:00", "a b", "$(id)", "a;b", "a`id`"],
    ),
    ("staging-image", &["$CI_REGISTRY_IMAGE"], &["a b", "$(id)"]),
    (
        "target-image",
        &[
            "docker.io/$DOCKERHUB_USERNAME/$CI_PROJECT_NAME",
            "docker.io/acme/app",
        ],
        &["docker.io/acme/app@sha256:00", "$(id)", "a\nb"],
    ),
    (
        "image",
        &[
            "$BUILD_IMAGE",
            "$CI_REGISTRY_IMAGE@$MY_DIGEST",
            "r.example.com/a@sha256:0123",
        ],
        &["", "a b", "$(id)", "a;b", "'a'"],
    ),
    (
        "tag",
        &["$CI_COMMIT_SHA", "1.0.0", "v1_2-rc.3"],
        &["a b", "a:b", "$(id)", "a;b"],
    ),
    ("new-tag", &["$PROMOTED_TAG", "1.4.0", ""], &["a b", "`id`"]),
    (
        "extra-tags",
        &["", "latest", "latest,1.0"],
        &["latest,", ",latest", "a b", "$(id)"],
    ),
    (
        "new-digest",
        &[
            "$PROMOTED_DIGEST",
            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ],
        &[
            "latest",
            "sha256:0123",
            "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
            "$(id)",
        ],
    ),
    (
        "key",
        &[
            "env://COSIGN_PRIVATE_KEY",
            "cosign.key",
            "$COSIGN_PRIVATE_KEY",
            "/builds/x/cosign.key",
        ],
        &["a b", "$(cat /etc/passwd)", "a;b"],
    ),
    (
        "sign-key",
        &["env://COSIGN_PRIVATE_KEY", "keys/cosign.key"],
        &["a b", "`id`"],
    ),
    (
        "config-repo-url",
        &[
            "$CONFIG_REPO_URL",
            "https://gitlab.example.com/acme/config.git",
            "http://127.0.0.1:8080/x.git",
        ],
        &[
            "https://user:pw@gitlab.example.com/x.git",
            "a b",
            "$(id)",
            "https://x/?a=b&c",
        ],
    ),
    (
        "server",
        &["$ARGOCD_SERVER", "https://argocd.example.com:8443"],
        &["a b", "$(id)"],
    ),
    ("argocd-server", &["$ARGOCD_SERVER"], &["a;b"]),
    (
        "config-repo-branch",
        &["main", "release/1.x", "$CI_DEFAULT_BRANCH"],
        &["a b", "$(id)", "a;b"],
    ),
    (
        "paths",
        &["", "apps/sensor-app", "apps/a,apps/b", "."],
        &["apps/a,", ",apps/a", "apps/a,,apps/b", "a b", "$(id)"],
    ),
    (
        "manifest-paths",
        &["", "apps/sensor-app/overlays/pi-lab"],
        &["apps,", "a b"],
    ),
    (
        "order-key",
        &["$CI_PIPELINE_IID", "42", ""],
        &["a b", "$(id)"],
    ),
    (
        "app",
        &["$CI_PROJECT_NAME", "sensor-app", "a,b"],
        &["a,", "a b", "$(id)"],
    ),
    ("argocd-app", &["sensor-app-pi-lab"], &["a;b"]),
    (
        "revision",
        &[
            "$BUMP_MANIFEST_COMMIT",
            "",
            "0123456789abcdef0123456789abcdef01234567",
        ],
        &["main", "0123", "$(id)"],
    ),
    (
        "timeout",
        &["10m", "1h30m", "90s", "500ms", "90"],
        &["10 m", "ten", "10d", ""],
    ),
    ("deploy-timeout", &["10m"], &["$(id)"]),
    (
        "environment",
        &["production", "pi-lab", "$CI_COMMIT_REF_SLUG"],
        &["a;b", "$(id)", ""],
    ),
    (
        "db-repository",
        &[
            "",
            "registry.example.com/security/trivy-db:2",
            "$CI_REGISTRY/security/trivy-db:2",
            "127.0.0.1:5000/mirror/trivy-db:2",
        ],
        &["a b", "$(id)", "x;y", "`id`"],
    ),
    (
        "java-db-repository",
        &["", "${CI_REGISTRY}/security/trivy-java-db:1"],
        &["a b", "$(id)"],
    ),
];

#[test]
fn every_template_regex_accepts_and_refuses_its_examples() {
    let mut checked = 0;
    for path in template_files() {
        let what = path.display().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let docs = yaml_documents(&text, &what);
        for (name, spec) in docs[0]["spec"]["inputs"].as_object().unwrap() {
            let Some(re) = spec["regex"].as_str() else {
                continue;
            };
            let (_, ok, bad) = REGEX_EXAMPLES
                .iter()
                .find(|(n, _, _)| n == name)
                .unwrap_or_else(|| panic!("{what}: input {name} has a regex but no examples here"));
            for v in *ok {
                let v = v.replace("\\n", "\n");
                assert!(
                    simple_regex_matches(re, &v),
                    "{what}: {name} refuses {v:?} ({re})"
                );
            }
            for v in *bad {
                let v = v.replace("\\n", "\n");
                assert!(
                    !simple_regex_matches(re, &v),
                    "{what}: {name} accepts {v:?} ({re})"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} regexes checked");
}

#[test]
fn the_regex_checker_accepts_and_refuses() {
    // The helper itself: anchors, alternation, bounded repetition.
    assert!(simple_regex_matches(r"^(a{0,2}(,b)*)?$", ""));
    assert!(!simple_regex_matches(r"^a{0,2}$", "aaa"));
    assert!(simple_regex_matches(r"^(x|y)+$", "xyx"));
    assert!(!simple_regex_matches(r"^(x|y)+$", "xz"));
}
