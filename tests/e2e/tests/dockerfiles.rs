//! docker/: one Dockerfile per distinct job image (promote, sign and notify share
//! `job.Dockerfile` with `--build-arg JOB=<job>`), with both ways to get the binary
//! (compiled in a Rust builder, or prebuilt musl binaries for both
//! architectures), a non-root user, CA certificates and the OCI labels.
//! Building them is measured elsewhere (it needs the base images); this
//! checks what each file promises, instruction by instruction.

mod common;

use common::root;

use e2e::flow::JOBS;

/// Instructions with line continuations joined.
fn instructions(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            cur.push_str(body);
            cur.push(' ');
        } else {
            cur.push_str(t);
            if !cur.trim().is_empty() {
                out.push(cur.trim().to_string());
            }
            cur.clear();
        }
    }
    out
}

/// The jobs whose images differ only by name share `docker/job.Dockerfile`
/// (`--build-arg JOB=<job>`); scan-image (trivy) and bump-manifest (git) have their own.
const SHARED: [&str; 3] = ["promote-image", "sign-image", "notify-argocd"];

fn dockerfile(job: &str) -> String {
    if SHARED.contains(&job) {
        "docker/job.Dockerfile".into()
    } else {
        format!("docker/{job}.Dockerfile")
    }
}

#[test]
fn the_jobs_that_differ_only_by_name_share_one_dockerfile() {
    let mut files: Vec<String> = std::fs::read_dir(root().join("docker"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("Dockerfile"))
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "bump-manifest.Dockerfile",
            "job.Dockerfile",
            "scan-image.Dockerfile"
        ]
    );
    let text = std::fs::read_to_string(root().join("docker/job.Dockerfile")).unwrap();
    let ins = instructions(&text);
    // JOB has no default, and a build without a known JOB stops with a cause.
    assert!(ins.iter().any(|i| i == "ARG JOB"));
    assert!(!ins.iter().any(|i| i.starts_with("ARG JOB=")));
    let guard = ins
        .iter()
        .find(|i| i.starts_with("RUN case \"${JOB}\" in"))
        .expect("a JOB check");
    for job in SHARED {
        assert!(guard.contains(job), "{job} is not accepted by {guard}");
    }
    // The project's pipeline builds the three images from it.
    let ci = std::fs::read_to_string(root().join(".gitlab-ci.yml")).unwrap();
    for job in SHARED {
        assert!(
            ci.contains(&format!("JOB={job} ")),
            ".gitlab-ci.yml does not build {job} with JOB={job}"
        );
    }
}

#[test]
fn every_job_image_has_both_build_paths_a_non_root_user_and_oci_labels() {
    for job in JOBS {
        let shared = SHARED.contains(&job);
        let path = root().join(dockerfile(job));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // The shared file as `--build-arg JOB=<job>` makes it.
        let ins: Vec<String> = instructions(&text)
            .into_iter()
            .map(|i| {
                if shared && !i.starts_with("ARG ") {
                    i.replace("${JOB}", job)
                } else {
                    i
                }
            })
            .collect();
        let froms: Vec<&String> = ins.iter().filter(|i| i.starts_with("FROM ")).collect();
        let has = |needle: &str| ins.iter().any(|i| i.contains(needle));

        // Rust builder -> static musl binary.
        assert!(
            froms.iter().any(|f| f.ends_with(" AS build")),
            "{job}: no builder stage"
        );
        assert!(
            has(&format!("cargo build --release --locked -p {job}")),
            "{job}: builder does not build {job}"
        );
        // Prebuilt binaries of both architectures, picked by TARGETARCH.
        for (arch, triple) in [
            ("amd64", "x86_64-unknown-linux-musl"),
            ("arm64", "aarch64-unknown-linux-musl"),
        ] {
            assert!(
                froms
                    .iter()
                    .any(|f| *f == &format!("FROM scratch AS prebuilt-{arch}")),
                "{job}: no prebuilt-{arch}"
            );
            assert!(
                has(&format!("{triple}/release/{job} /out/{job}")),
                "{job}: {triple} binary not copied"
            );
        }
        assert!(
            froms
                .iter()
                .any(|f| *f == "FROM prebuilt-${TARGETARCH} AS prebuilt"),
            "{job}"
        );
        assert!(
            froms.iter().any(|f| *f == "FROM ${BINARIES} AS bin"),
            "{job}"
        );
        assert!(has("ARG BINARIES=build"), "{job}: compiled by default");
        // Nothing in the prebuilt path runs on the target platform: every stage
        // with a RUN is the builder or runs on the build platform.
        let mut stage = String::new();
        for i in &ins {
            if i.starts_with("FROM ") {
                stage = i.clone();
            } else if i.starts_with("RUN ") && !stage.ends_with(" AS build") {
                assert!(
                    stage.starts_with("FROM --platform=$BUILDPLATFORM"),
                    "{job}: RUN in a target-platform stage ({stage}) needs emulation"
                );
            }
        }
        // The final stage: non-root, the binary, labels.
        let last_from = ins.iter().rposition(|i| i.starts_with("FROM ")).unwrap();
        let fin = &ins[last_from..];
        let fin_has = |needle: &str| fin.iter().any(|i| i.contains(needle));
        assert!(
            fin.iter().any(|i| i == "USER 65532:65532"),
            "{job}: final stage not non-root"
        );
        assert!(
            fin_has(&format!("COPY --from=bin /out/{job} /usr/local/bin/{job}")),
            "{job}: binary not installed"
        );
        for label in [
            "title",
            "description",
            "version",
            "revision",
            "created",
            "source",
            "licenses",
        ] {
            assert!(
                fin_has(&format!("org.opencontainers.image.{label}=")),
                "{job}: no org.opencontainers.image.{label}"
            );
        }
        if shared {
            // An exec-form ENTRYPOINT cannot expand ${JOB}: a fixed symlink to the binary.
            assert!(
                fin.iter()
                    .any(|i| i == "ENTRYPOINT [\"/usr/local/bin/secdeliv-job\"]"),
                "{job}: entrypoint"
            );
            assert!(
                has(&format!(
                    "ln -s \"{job}\" /rootfs/usr/local/bin/secdeliv-job"
                )),
                "{job}: the entrypoint symlink"
            );
        } else {
            assert!(
                fin.iter()
                    .any(|i| *i == format!("ENTRYPOINT [\"/usr/local/bin/{job}\"]")),
                "{job}: entrypoint"
            );
        }
        match job {
            "scan-image" => {
                let f = &ins[last_from];
                assert_eq!(f, "FROM ${TRIVY_IMAGE}", "scan-image starts from trivy");
                let arg = ins
                    .iter()
                    .find(|i| i.starts_with("ARG TRIVY_IMAGE="))
                    .unwrap();
                let tag = arg.rsplit_once(':').unwrap().1;
                assert!(
                    arg.contains("aquasec/trivy:") && tag.split('.').count() == 3,
                    "trivy pinned to a release: {arg}"
                );
                // The job image ships the trivy the tests, the demo and CI run.
                let peers = std::fs::read_to_string(
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("../../scripts/install-peers.sh"),
                )
                .unwrap();
                let tested = peers
                    .lines()
                    .find_map(|l| l.strip_prefix("TRIVY_VERSION=v"))
                    .expect("TRIVY_VERSION in scripts/install-peers.sh");
                assert_eq!(tag, tested, "job image's trivy = the trivy the tests build");
            }
            "bump-manifest" => {
                assert!(
                    has(" git") && has("apk add --root /rootfs --arch"),
                    "bump-manifest needs git, installed without emulation"
                );
                assert!(
                    has("ca-certificates-bundle"),
                    "bump-manifest: CA certificates"
                );
                // No libcurl/OpenSSL: git's HTTP helpers go, the job's own transport is on.
                assert!(
                    has("git-remote-http git-remote-https") && has("prune-libs.sh /rootfs"),
                    "bump-manifest: git's HTTP helpers removed and their libraries pruned"
                );
                assert!(
                    fin.iter().any(|i| i.starts_with("ENV ")
                        && i.contains("BUMP_MANIFEST_GIT_TRANSPORT=builtin")),
                    "bump-manifest: the built-in git transport is the image's default"
                );
            }
            _ => {
                assert!(
                    has("ca-certificates.crt /rootfs/etc/ssl/certs/"),
                    "{job}: CA certificates"
                );
                assert!(
                    fin.iter().any(|i| i == "COPY --from=rootfs /rootfs/ /"),
                    "{job}"
                );
            }
        }
    }
}

#[test]
fn the_sensor_app_image_is_from_scratch_and_cross_compiles() {
    let text = std::fs::read_to_string(root().join("examples/sensor-app/Dockerfile")).unwrap();
    let ins = instructions(&text);
    let last_from = ins.iter().rposition(|i| i.starts_with("FROM ")).unwrap();
    assert_eq!(ins[last_from], "FROM scratch");
    assert!(
        ins.iter()
            .any(|i| i.starts_with("FROM --platform=$BUILDPLATFORM ") && i.ends_with(" AS build"))
    );
    assert!(ins[last_from..].iter().any(|i| i == "USER 65532:65532"));
}

/// docker/prune-libs.sh on a real root file system: Debian's git and
/// git-remote-http with every library they load (ldd). With the helper there
/// nothing goes; without it, libcurl and its TLS stack go while git keeps
/// what it needs and still runs (chroot). Needs scanelf (pax-utils) and root.
#[test]
fn prune_libs_drops_what_only_git_remote_http_needed_and_git_still_runs() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let copy = |from: &str| {
        let to = r.join(from.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, &to).unwrap_or_else(|e| panic!("{from}: {e}"));
    };
    let helper = "/usr/lib/git-core/git-remote-http";
    for bin in ["/usr/bin/git", helper] {
        copy(bin);
        let ldd = std::process::Command::new("ldd").arg(bin).output().unwrap();
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(p) = path.filter(|p| p.starts_with('/')) {
                copy(p);
            }
        }
    }
    let libs = |r: &std::path::Path| -> Vec<String> {
        let out = std::process::Command::new("find")
            .arg(r)
            .args(["-name", "*.so*"])
            .output()
            .unwrap();
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.rsplit('/').next().map(String::from))
            .collect();
        v.sort();
        v
    };
    let prune = |r: &std::path::Path| {
        let out = std::process::Command::new("sh")
            .arg(common::root().join("docker/prune-libs.sh"))
            .arg(r)
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "prune-libs.sh failed (is scanelf from pax-utils installed?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let before = libs(r);
    assert!(
        before.iter().any(|l| l.starts_with("libcurl")),
        "{before:?}"
    );
    prune(r);
    assert_eq!(
        libs(r),
        before,
        "nothing goes while git-remote-http is there"
    );

    std::fs::remove_file(r.join(helper.trim_start_matches('/'))).unwrap();
    prune(r);
    let after = libs(r);
    for gone in ["libcurl", "libgnutls", "libnghttp2", "libidn2"] {
        assert!(
            !after.iter().any(|l| l.starts_with(gone)),
            "{gone} should be gone: {after:?}"
        );
    }
    for kept in ["libc.so", "libz.so", "libpcre2-8.so"] {
        assert!(
            after.iter().any(|l| l.starts_with(kept)),
            "{kept} kept: {after:?}"
        );
    }
    assert!(
        after.len() < before.len() / 2,
        "{} -> {}",
        before.len(),
        after.len()
    );
    // git still starts in the pruned root.
    std::fs::create_dir_all(r.join("dev")).unwrap();
    std::fs::write(r.join("dev/null"), "").unwrap();
    let v = std::process::Command::new("chroot")
        .arg(r)
        .args(["/usr/bin/git", "--version"])
        .output()
        .expect("chroot");
    assert!(
        v.status.success() && String::from_utf8_lossy(&v.stdout).starts_with("git version"),
        "{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
}
