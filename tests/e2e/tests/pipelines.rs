//! The project's own .gitlab-ci.yml and examples/sensor-app/.gitlab-ci.yml:
//! valid against GitLab's CI schema, loadable in gitlab-ci-local, and the
//! jobs that run on the default branch, on tags and in merge requests.

mod common;

use common::{Project, names, root, yaml_documents};
use harness::schemas::{GITLAB_CI, assert_valid};

use e2e::flow::JOBS;

fn project_pipeline() -> String {
    std::fs::read_to_string(root().join(".gitlab-ci.yml")).expect("reading .gitlab-ci.yml")
}

fn has(list: &[String], name: &str) -> bool {
    list.iter().any(|n| n == name)
}

#[test]
fn the_project_pipeline_validates_against_the_gitlab_ci_schema() {
    let docs = yaml_documents(&project_pipeline(), ".gitlab-ci.yml");
    assert_eq!(docs.len(), 1);
    assert_valid(GITLAB_CI, &docs[0]);
    // It uses the project's own templates.
    let includes = docs[0]["include"].as_array().expect("include list");
    for t in ["build-image", "scan-image", "sign-image", "promote-image"] {
        let path = format!("/ci-templates/{t}.yml");
        assert_eq!(
            includes
                .iter()
                .filter(|i| i["local"] == path.as_str())
                .count(),
            5,
            "{path} once per job image"
        );
    }
}

#[test]
fn the_project_pipeline_runs_checks_binaries_images_scan_sign_and_release_in_order() {
    let p = Project::new(&project_pipeline());
    let main = p.jobs(&[]);
    let n = names(&main);
    for j in ["fmt", "clippy", "test", "cargo-deny"] {
        assert!(has(&n, j), "{j} missing on main: {n:?}");
    }
    assert!(
        n.iter().filter(|x| x.starts_with("musl-binaries")).count() == 2,
        "one musl job per arch: {n:?}"
    );
    for j in JOBS {
        for stage in ["build-image", "scan-image", "sign-image"] {
            assert!(
                has(&n, &format!("{stage}-{j}")),
                "{stage}-{j} missing on main: {n:?}"
            );
        }
        assert!(
            !has(&n, &format!("promote-image-{j}")),
            "release tags only on tags"
        );
    }
    assert!(!has(&n, "release"));
    let stage_of = |name: &str| {
        main.iter().find(|j| j["name"] == name).unwrap()["stage"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(stage_of("build-image-sign-image"), "images");
    assert_eq!(stage_of("scan-image-notify-argocd"), "scan");
    let needs = |name: &str| -> Vec<String> {
        let j = main.iter().find(|j| j["name"] == name).unwrap();
        j["needs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["job"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(needs("build-image-bump-manifest"), ["musl-binaries"]);
    // Each job waits for its image and for the job image it runs in (built in this pipeline).
    assert_eq!(
        needs("scan-image-bump-manifest"),
        ["build-image-bump-manifest", "build-image-scan-image"]
    );
    assert_eq!(needs("scan-image-scan-image"), ["build-image-scan-image"]);
    assert_eq!(
        needs("sign-image-bump-manifest"),
        [
            "build-image-bump-manifest",
            "scan-image-bump-manifest",
            "build-image-sign-image"
        ]
    );
    for j in JOBS {
        for (job, tool) in [("scan-image", "scan-image"), ("sign-image", "sign-image")] {
            let n = needs(&format!("{job}-{j}"));
            assert!(
                n.contains(&format!("build-image-{tool}")),
                "{job}-{j} runs before its job image exists: {n:?}"
            );
        }
    }

    let tag = names(&p.jobs(&["--variable", "CI_COMMIT_TAG=0.1.0"]));
    for j in JOBS {
        assert!(
            has(&tag, &format!("promote-image-{j}")),
            "promote-image-{j} missing on a tag: {tag:?}"
        );
    }
    assert!(has(&tag, "release"));

    let mr = names(&p.jobs(&["--variable", "CI_PIPELINE_SOURCE=merge_request_event"]));
    assert!(has(&mr, "scan-image-sign-image"), "{mr:?}");
    assert!(
        !mr.iter()
            .any(|x| x.starts_with("sign-image-") || x.starts_with("promote-image-")),
        "merge requests sign and publish nothing: {mr:?}"
    );

    let out = p.gcl(&["--validate-dependency-chain"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_merged_project_pipeline_validates_and_its_scripts_are_valid_shell() {
    let p = Project::new(&project_pipeline());
    let merged = yaml_documents(&p.preview(), "--preview")
        .into_iter()
        .find(|d| d.is_object())
        .unwrap();
    assert_valid(GITLAB_CI, &merged);
    let mut checked = 0;
    for (name, job) in merged.as_object().unwrap() {
        let Some(script) = job.get("script").and_then(|s| s.as_array()) else {
            continue;
        };
        let text: Vec<&str> = script
            .iter()
            .map(|l| l.as_str().expect("script lines are strings"))
            .collect();
        let text = text.join("\n");
        let out = std::process::Command::new("sh")
            .args(["-n", "-c", &text])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: not valid sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} scripts checked");
    // Our own images scan with the scan-image built in the same pipeline.
    assert_eq!(
        merged["scan-image-promote-image"]["image"]["name"],
        "$CI_REGISTRY_IMAGE/scan-image:$CI_COMMIT_SHA"
    );
}

#[test]
fn the_sensor_app_pipeline_is_only_the_gitops_iot_include_and_its_inputs() {
    let path = root().join("examples/sensor-app/.gitlab-ci.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let docs = yaml_documents(&text, "sensor-app .gitlab-ci.yml");
    assert_eq!(docs.len(), 1);
    assert_valid(GITLAB_CI, &docs[0]);
    let top: Vec<&String> = docs[0].as_object().unwrap().keys().collect();
    assert_eq!(top, ["include"], "nothing but the include");
    let includes = docs[0]["include"].as_array().unwrap();
    assert_eq!(includes.len(), 1);
    assert_eq!(includes[0]["file"], "/ci-templates/gitops-iot.yml");
    let inputs = includes[0]["inputs"].as_object().unwrap();

    // The same inputs, with the templates of this checkout (include: local):
    // gitlab-ci-local cannot fetch include: project offline.
    let local = serde_json::json!({"include": [{"local": "/ci-templates/gitops-iot.yml", "inputs": inputs}]});
    let p = Project::new(&serde_json::to_string_pretty(&local).unwrap());
    let jobs = p.jobs(&[]);
    assert_eq!(
        names(&jobs),
        [
            "build-image",
            "scan-image",
            "promote-image",
            "sign-image",
            "bump-manifest",
            "notify-argocd"
        ]
    );
    let merged = yaml_documents(&p.preview(), "--preview")
        .into_iter()
        .find(|d| d.is_object())
        .unwrap();
    assert_valid(GITLAB_CI, &merged);
    assert_eq!(
        merged["scan-image"]["variables"]["SCAN_FAIL_ON"],
        inputs["fail-on"]
    );
    assert_eq!(
        merged["notify-argocd"]["environment"]["name"],
        inputs["environment"]
    );
    assert_eq!(
        merged["notify-argocd"]["resource_group"],
        format!("argocd-{}", inputs["environment"].as_str().unwrap())
    );
    assert_eq!(
        merged["build-image"]["variables"]["SECDELIV_PLATFORMS"],
        "linux/arm64,linux/amd64"
    );
}
