//! The whole delivery flow, for real, on one machine: `gitlab-ci-local`
//! runs `examples/sensor-app/.gitlab-ci.yml` (the one `include:` of
//! `gitops-iot.yml`) with the shell executor and the real job binaries on
//! `PATH`, against
//! - a real `docker-registry` with htpasswd auth standing for the GitLab
//!   registry (`CI_REGISTRY`, `CI_REGISTRY_USER`, `CI_REGISTRY_PASSWORD`),
//! - a second `docker-registry` behind a Docker-Hub-style Bearer token
//!   server standing for Docker Hub (`DOCKERHUB_USERNAME`, `DOCKERHUB_TOKEN`),
//! - `examples/config-repo` served by `git http-backend` behind basic auth
//!   (`CONFIG_REPO_URL`, `CONFIG_REPO_TOKEN`),
//! - the Argo CD API simulator (`ARGOCD_SERVER`, `ARGOCD_AUTH_TOKEN`): Argo
//!   CD cannot run here. A watcher plays Argo CD's repository polling: each
//!   new commit on the config repo's `main` becomes the app's head.
//!
//! buildah builds the sensor-app image for linux/arm64 and linux/amd64 from
//! its own Dockerfile (`BINARIES=prebuilt`: the static musl binaries built
//! beforehand, so nothing runs emulated and nothing is pulled). scan-image
//! runs the real trivy (v0.74.0 from `.tools/bin`, `SCAN_TRIVY`, as the job
//! image's `ENV` names it) on the image it built. trivy's vulnerability DB
//! cannot be downloaded here, nor by an air-gapped user: as such a user
//! does, the project mirrors one into its registry — the fixture DB
//! (`tests/peers/trivy-db`) pushed as trivy's OCI artifact to the staging
//! registry at [`DB_REPOSITORY`] — and points the scan at it with CI/CD
//! variables (`TRIVY_DB_REPOSITORY`, `TRIVY_SKIP_JAVA_DB_UPDATE`).
//!
//! Three things differ from a user's pipeline, each rewritten on a copy and
//! checked to be there: the include is `local:` instead of `project:` (there
//! is no GitLab to fetch from), Docker Hub's host is the local registry's
//! (in the pipeline's `target-image` and in the config repo), and the build
//! passes `BINARIES=prebuilt`.
//!
//! Used by the end-to-end test (`tests/flow.rs`) and the demo
//! (`cargo run -p secdeliv-e2e --bin demo`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::argocd_sim::{ArgoSim, Outcome, SimApp, SimConfig};
use harness::git_server::{GitServer, copy_dir};
use harness::registry::{BearerConfig, Gateway, GatewayOptions, TestRegistry};

use crate::kustomize::{HookRun, run_rendered_hook};

/// The five job binaries the templates call.
pub const JOBS: [&str; 5] = [
    "scan-image",
    "promote-image",
    "sign-image",
    "bump-manifest",
    "notify-argocd",
];

/// The jobs of the whole flow (`gitops-iot.yml`), in pipeline order: one
/// template each, build-image first (buildah; no binary of ours).
pub const PIPELINE_JOBS: [&str; 6] = [
    "build-image",
    "scan-image",
    "promote-image",
    "sign-image",
    "bump-manifest",
    "notify-argocd",
];

/// The Argo CD application the example deploys (its `argocd-app` input).
pub const APP: &str = "sensor-app-pi-lab";
/// Where that application's overlay lives in the config repo.
pub const APP_PATH: &str = "apps/sensor-app/overlays/pi-lab";
/// The public key the config repo's PreSync hook verifies with.
pub const HOOK_KEY: &str = "apps/sensor-app/presync-verify/cosign.pub";
/// The Docker Hub account of the example config repo.
pub const HUB_USER: &str = "acmeiot";
/// The image name the config repo pins, on Docker Hub.
pub const HUB_IMAGE: &str = "docker.io/acmeiot/sensor-app";
/// The platforms built, the Raspberry Pi first.
pub const PLATFORMS: [&str; 2] = ["linux/arm64", "linux/amd64"];
/// Musl targets of the prebuilt sensor-app binaries, per platform.
pub const SENSOR_TARGETS: [&str; 2] = ["aarch64-unknown-linux-musl", "x86_64-unknown-linux-musl"];

const STAGING_USER: &str = "ci-bot";

/// Where the trivy DB mirror lives in the staging ("GitLab") registry.
pub const DB_REPOSITORY: &str = "secdeliv/trivy-db:2";

/// A peer tool built by `scripts/install-peers.sh` into `<root>/.tools/bin`.
pub fn peer(name: &str) -> Result<PathBuf, String> {
    let p = root().join(".tools/bin").join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing: run scripts/install-peers.sh (it builds trivy v0.74.0 and trivy-db-fixture)",
            p.display()
        ))
    }
}

/// Builds the fixture trivy DB and pushes it to `registry` as
/// `HOST/`[`DB_REPOSITORY`], with the registry's credentials in a docker
/// config of its own (never argv).
fn mirror_trivy_db(registry: &TestRegistry, work: &Path) -> Result<String, String> {
    let tool = peer("trivy-db-fixture")?;
    let dest = format!("{}/{DB_REPOSITORY}", registry.host());
    let dir = work.join("trivy-db");
    let docker = dir.join("docker");
    std::fs::create_dir_all(&docker).map_err(|e| e.to_string())?;
    if let Some((u, p)) = registry.credentials() {
        let auth = harness::registry::auth_file(&docker, &registry.host(), u, p);
        std::fs::rename(auth, docker.join("config.json")).map_err(|e| e.to_string())?;
    }
    let out = Command::new(tool)
        .arg("-advisories")
        .arg(root().join("tests/peers/trivy-db/advisories.json"))
        .arg("-out")
        .arg(dir.join("db"))
        .args(["-push", &dest, "-insecure"])
        .env("DOCKER_CONFIG", &docker)
        .output()
        .map_err(|e| format!("trivy-db-fixture: {e}"))?;
    let _ = std::fs::remove_dir_all(&docker);
    if !out.status.success() {
        return Err(format!(
            "trivy-db-fixture could not mirror the DB to {dest}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(dest)
}

/// The workspace root.
pub fn root() -> PathBuf {
    harness::schemas::workspace_root()
}

/// Where the host's job binaries are: `$SECDELIV_BIN_DIR`, else
/// `<root>/target/debug`. Every one of [`JOBS`] must be there.
pub fn job_bin_dir() -> Result<PathBuf, String> {
    let dir = std::env::var_os("SECDELIV_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/debug"));
    let missing: Vec<&str> = JOBS
        .iter()
        .copied()
        .filter(|j| !dir.join(j).is_file())
        .collect();
    if missing.is_empty() {
        Ok(dir)
    } else {
        Err(format!(
            "job binaries {missing:?} are not in {}; build them with `cargo build --workspace --bins` \
             (or point SECDELIV_BIN_DIR at them)",
            dir.display()
        ))
    }
}

/// Cargo's target dir holding `<triple>/release/sensor-app` for both
/// [`SENSOR_TARGETS`]: `$SENSOR_APP_TARGET_DIR`, else `<root>/target/sensor-app`.
pub fn sensor_app_target_dir() -> Result<PathBuf, String> {
    let dir = std::env::var_os("SENSOR_APP_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/sensor-app"));
    for t in SENSOR_TARGETS {
        let bin = dir.join(t).join("release/sensor-app");
        if !bin.is_file() {
            return Err(format!(
                "{} is missing; build the sensor-app binaries with `bash scripts/build-sensor-app.sh`",
                bin.display()
            ));
        }
    }
    Ok(dir)
}

/// gitlab-ci-local 4.70.0: `$GITLAB_CI_LOCAL`, else `<root>/.tools/node_modules/.bin/`, else PATH.
pub fn gitlab_ci_local() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("GITLAB_CI_LOCAL").map(PathBuf::from) {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("GITLAB_CI_LOCAL={} does not exist", p.display()))
        };
    }
    let local = root().join(".tools/node_modules/.bin/gitlab-ci-local");
    if local.is_file() {
        return Ok(local);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("gitlab-ci-local"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "gitlab-ci-local is not installed; install it (needs Node 20 and rsync) with \
                 `npm install --prefix {}/.tools --no-audit --no-fund gitlab-ci-local@4.70.0`",
                root().display()
            )
        })
}

/// The secrets of the flow: none of them may appear in any output.
#[derive(Debug, Clone)]
pub struct Secrets {
    pub staging_password: String,
    pub hub_token: String,
    pub config_repo_token: String,
    pub argocd_token: String,
    pub cosign_password: String,
    /// The encrypted private key PEM; its body must not leak either.
    pub cosign_private_key: String,
}

impl Secrets {
    fn new() -> Self {
        // Distinct per run, so a leak cannot be a coincidence of fixtures.
        let n = std::process::id();
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Secrets {
            staging_password: format!("stg-pw-{n}-{t}"),
            hub_token: format!("dckr_pat_{n}x{t}"),
            config_repo_token: format!("glpat-cfg{n}x{t}"),
            argocd_token: format!("argo-tok-{n}-{t}"),
            cosign_password: format!("cosign-pw-{n}-{t}"),
            cosign_private_key: String::new(),
        }
    }

    /// Every string that must never be printed (the key as its base64 lines).
    pub fn all(&self) -> Vec<String> {
        let mut v = vec![
            self.staging_password.clone(),
            self.hub_token.clone(),
            self.config_repo_token.clone(),
            self.argocd_token.clone(),
            self.cosign_password.clone(),
        ];
        v.extend(
            self.cosign_private_key
                .lines()
                .filter(|l| !l.starts_with("-----") && l.len() >= 16)
                .map(String::from),
        );
        v
    }
}

/// How long one job took, from gitlab-ci-local's `finished in` lines.
#[derive(Debug, Clone, PartialEq)]
pub struct JobTiming {
    pub job: String,
    pub seconds: f64,
}

/// One pipeline run.
#[derive(Debug)]
pub struct PipelineRun {
    pub ok: bool,
    /// gitlab-ci-local's stdout and stderr (every job's log).
    pub output: String,
    pub wall: Duration,
    pub jobs: Vec<JobTiming>,
}

/// Every service of the flow, the project and the config repo.
pub struct Flow {
    pub work: PathBuf,
    pub project: PathBuf,
    pub staging: TestRegistry,
    /// Docker Hub's storage; clients go through [`Flow::hub`].
    pub hub_registry: TestRegistry,
    /// Docker Hub as clients see it: Bearer tokens in front of `hub_registry`.
    pub hub: Gateway,
    pub git: GitServer,
    pub argo: Arc<ArgoSim>,
    /// The config repo's commit before the pipeline.
    pub seed_commit: String,
    pub public_key: PathBuf,
    pub secrets: Secrets,
    /// Config-repo commits the watcher handed to Argo CD, in order.
    pub heads_seen: Arc<Mutex<Vec<String>>>,
    stop_watcher: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
    bin_dir: PathBuf,
    gitlab_ci_local: PathBuf,
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn git(dir: &Path, args: &[&str]) -> String {
    run_ok(
        Command::new("git")
            .args([
                "-c",
                "user.name=Ada Developer",
                "-c",
                "user.email=ada@example.com",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(dir),
        &format!("git {args:?}"),
    )
    .trim()
    .to_string()
}

/// Replaces `from` with `to` in `text`, insisting that `from` is there.
fn rewrite(text: &str, from: &str, to: &str, file: &str) -> String {
    assert!(
        text.contains(from),
        "{file} no longer contains `{from}`; update tests/e2e/src/flow.rs to match"
    );
    text.replace(from, to)
}

impl Flow {
    /// Starts every service and prepares the project and the config repo
    /// under `work` (which the caller keeps or removes).
    pub fn start(work: &Path) -> Result<Flow, String> {
        let bin_dir = job_bin_dir()?;
        let sensor_target = sensor_app_target_dir()?;
        let gitlab_ci_local = gitlab_ci_local()?;
        std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
        let mut secrets = Secrets::new();

        let staging = TestRegistry::start_with_htpasswd(STAGING_USER, &secrets.staging_password);
        let trivy = peer("trivy")?;
        let db_repository = mirror_trivy_db(&staging, work)?;
        let hub_registry = TestRegistry::start();
        let hub = Gateway::start(
            &hub_registry.host(),
            GatewayOptions {
                bearer: Some(BearerConfig::new(HUB_USER, &secrets.hub_token)),
            },
        );
        let hub_image = format!("{}/{HUB_USER}/sensor-app", hub.host());

        // The signing key pair, made by the job itself.
        let keys = work.join("keys");
        std::fs::create_dir_all(&keys).map_err(|e| e.to_string())?;
        run_ok(
            Command::new(bin_dir.join("sign-image"))
                .args(["generate-key-pair", "--output-key-prefix"])
                .arg(keys.join("cosign"))
                .env("COSIGN_PASSWORD", &secrets.cosign_password),
            "sign-image generate-key-pair",
        );
        secrets.cosign_private_key = std::fs::read_to_string(keys.join("cosign.key"))
            .map_err(|e| format!("cosign.key: {e}"))?;
        let public_key = keys.join("cosign.pub");

        // The config repo, with Docker Hub's host replaced by the local one.
        let seed = work.join("config-repo-seed");
        let _ = std::fs::remove_dir_all(&seed);
        std::fs::create_dir_all(&seed).map_err(|e| e.to_string())?;
        copy_dir(&root().join("examples/config-repo"), &seed);
        let mut rewritten = 0;
        rewrite_tree(&seed, HUB_IMAGE, &hub_image, &mut rewritten);
        assert!(
            rewritten > 0,
            "examples/config-repo no longer references {HUB_IMAGE}"
        );
        // The device's PreSync hook verifies against the pipeline's key, as a user sets it up.
        let hook_key = seed.join(HOOK_KEY);
        assert!(hook_key.is_file(), "examples/config-repo has no {HOOK_KEY}");
        std::fs::copy(&public_key, &hook_key).map_err(|e| e.to_string())?;
        let git_server = GitServer::start("oauth2", &secrets.config_repo_token);
        let bare = git_server.create_repo("config-repo", "main", &seed);
        let seed_commit = git(&bare, &["rev-parse", "refs/heads/main"]);

        // Argo CD: the pi-lab app, Synced and Healthy on the seed commit.
        let mut app = SimApp::new(APP);
        app.repo_url = git_server.url("config-repo");
        app.path = APP_PATH.into();
        app.dest_namespace = "sensors-lab".into();
        app.old_revision = seed_commit.clone();
        app.new_revision = seed_commit.clone();
        app.outcome = Outcome::Healthy;
        app.progressing_for = Duration::from_millis(800);
        let argo = Arc::new(ArgoSim::start(SimConfig::new(
            &secrets.argocd_token,
            vec![app],
        )));

        // The application project: examples/sensor-app with its prebuilt binaries.
        let project = work.join("sensor-app");
        let _ = std::fs::remove_dir_all(&project);
        let example = root().join("examples/sensor-app");
        std::fs::create_dir_all(project.join("src")).map_err(|e| e.to_string())?;
        for entry in [
            "Dockerfile",
            "Cargo.toml",
            "Cargo.lock",
            "README.md",
            "vulnerability-allowlist.yml",
            "src",
        ] {
            let from = example.join(entry);
            if from.is_dir() {
                copy_dir(&from, &project.join(entry));
            } else {
                std::fs::create_dir_all(&project).map_err(|e| e.to_string())?;
                std::fs::copy(&from, project.join(entry))
                    .map_err(|e| format!("{}: {e}", from.display()))?;
            }
        }
        for t in SENSOR_TARGETS {
            let dir = project.join("target").join(t).join("release");
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            std::fs::copy(
                sensor_target.join(t).join("release/sensor-app"),
                dir.join("sensor-app"),
            )
            .map_err(|e| e.to_string())?;
        }
        std::fs::create_dir_all(project.join("ci-templates")).map_err(|e| e.to_string())?;
        copy_dir(&root().join("ci-templates"), &project.join("ci-templates"));
        let ci = std::fs::read_to_string(example.join(".gitlab-ci.yml"))
            .map_err(|e| format!("examples/sensor-app/.gitlab-ci.yml: {e}"))?;
        let file = "examples/sensor-app/.gitlab-ci.yml";
        let ci = rewrite(
            &ci,
            "  - project: secdeliv/secdeliv\n    ref: 0.1.0\n    file: /ci-templates/gitops-iot.yml\n",
            "  - local: /ci-templates/gitops-iot.yml\n",
            file,
        );
        let ci = rewrite(
            &ci,
            "docker.io/$DOCKERHUB_USERNAME/sensor-app",
            &format!("{}/$DOCKERHUB_USERNAME/sensor-app", hub.host()),
            file,
        );
        let ci = rewrite(
            &ci,
            "    inputs:\n",
            "    inputs:\n      build-args: BINARIES=prebuilt\n",
            file,
        );
        std::fs::write(project.join(".gitlab-ci.yml"), ci).map_err(|e| e.to_string())?;
        std::fs::write(
            project.join(".gitignore"),
            ".gitlab-ci-local/\n.gitlab-ci-local-variables.yml\n",
        )
        .map_err(|e| e.to_string())?;
        git(&project, &["init", "-q"]);
        git(
            &project,
            &[
                "remote",
                "add",
                "origin",
                "https://gitlab.example.com/acme/sensor-app.git",
            ],
        );
        git(&project, &["add", "-A"]);
        git(
            &project,
            &["commit", "-qm", "sensor-app: read the SoC temperature"],
        );
        // As a clone has it: origin's default branch is main.
        git(
            &project,
            &["update-ref", "refs/remotes/origin/main", "HEAD"],
        );
        git(
            &project,
            &[
                "symbolic-ref",
                "refs/remotes/origin/HEAD",
                "refs/remotes/origin/main",
            ],
        );

        // Settings > CI/CD > Variables, as gitlab-ci-local reads them.
        let staging_image = format!("{}/acme/sensor-app", staging.host());
        let variables = serde_json::json!({
            "CI_REGISTRY": staging.host(),
            "CI_REGISTRY_IMAGE": staging_image,
            "CI_REGISTRY_USER": STAGING_USER,
            "CI_REGISTRY_PASSWORD": secrets.staging_password,
            "DOCKERHUB_USERNAME": HUB_USER,
            "DOCKERHUB_TOKEN": secrets.hub_token,
            "COSIGN_PRIVATE_KEY": secrets.cosign_private_key,
            "COSIGN_PASSWORD": secrets.cosign_password,
            "COSIGN_PUBLIC_KEY": std::fs::read_to_string(&public_key).map_err(|e| e.to_string())?,
            "CONFIG_REPO_URL": git_server.url("config-repo"),
            "CONFIG_REPO_TOKEN": secrets.config_repo_token,
            "ARGOCD_SERVER": argo.url(),
            "ARGOCD_AUTH_TOKEN": secrets.argocd_token,
            // As the bump-manifest job image sets it: git core does no HTTP, the job does.
            "BUMP_MANIFEST_GIT_TRANSPORT": "builtin",
            // Both registries here speak plain HTTP on 127.0.0.1.
            "INSECURE_REGISTRY": format!("{},{}", staging.host(), hub.host()),
            // The real trivy, where the job image's ENV SCAN_TRIVY names it.
            "SCAN_TRIVY": trivy.display().to_string(),
            // The project's mirror of trivy's DB (no Java DB mirrored).
            "TRIVY_DB_REPOSITORY": db_repository,
            "TRIVY_SKIP_JAVA_DB_UPDATE": "true",
        });
        // JSON is YAML: one flat mapping of strings.
        std::fs::write(
            project.join(".gitlab-ci-local-variables.yml"),
            serde_json::to_string_pretty(&variables).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;

        // buildah: storage and registries of its own, nothing system-wide.
        let containers = work.join("containers");
        std::fs::create_dir_all(&containers).map_err(|e| e.to_string())?;
        std::fs::write(
            containers.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/storage\"\nrunroot = \"{0}/run\"\n",
                containers.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(
            containers.join("registries.conf"),
            format!(
                "unqualified-search-registries = []\n[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
                staging.host()
            ),
        )
        .map_err(|e| e.to_string())?;

        let mut flow = Flow {
            work: work.to_path_buf(),
            project,
            staging,
            hub_registry,
            hub,
            git: git_server,
            argo,
            seed_commit,
            public_key,
            secrets,
            heads_seen: Arc::new(Mutex::new(vec![])),
            stop_watcher: Arc::new(AtomicBool::new(false)),
            watcher: None,
            bin_dir,
            gitlab_ci_local,
        };
        flow.start_watcher(bare);
        Ok(flow)
    }

    /// Argo CD's repository polling: a new head of `main` becomes the app's
    /// target, visible to Argo CD shortly after.
    fn start_watcher(&mut self, bare: PathBuf) {
        let stop = self.stop_watcher.clone();
        let argo = self.argo.clone();
        let seen = self.heads_seen.clone();
        let mut last = self.seed_commit.clone();
        self.watcher = Some(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let head = Command::new("git")
                    .args(["rev-parse", "refs/heads/main"])
                    .current_dir(&bare)
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
                if let Some(head) = head
                    && head != last
                {
                    argo.push(APP, &head, Duration::from_millis(300));
                    seen.lock().unwrap().push(head.clone());
                    last = head;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }));
    }

    /// The image name build-image pushes to.
    pub fn staging_image(&self) -> String {
        format!("{}/acme/sensor-app", self.staging.host())
    }

    /// The published image name ("Docker Hub").
    pub fn hub_image(&self) -> String {
        format!("{}/{HUB_USER}/sensor-app", self.hub.host())
    }

    /// The project's commit SHA (what build-image tags with).
    pub fn commit_sha(&self) -> String {
        git(&self.project, &["rev-parse", "HEAD"])
    }

    /// Where gitlab-ci-local keeps `job`'s artifacts.
    pub fn artifacts(&self, job: &str) -> PathBuf {
        self.project.join(".gitlab-ci-local/artifacts").join(job)
    }

    /// The config repo's bare repository.
    pub fn config_repo(&self) -> PathBuf {
        self.git.bare_path("config-repo")
    }

    /// Runs the pipeline of the default branch; `live` echoes
    /// gitlab-ci-local's output as it comes.
    pub fn run_pipeline(&self, live: bool) -> PipelineRun {
        use std::io::BufRead;
        let home = self.work.join("gitlab-ci-local-home");
        std::fs::create_dir_all(&home).expect("mkdir home");
        let containers = self.work.join("containers");
        let path = format!(
            "{}:{}",
            self.bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let started = Instant::now();
        let mut child = Command::new(&self.gitlab_ci_local)
            // gitlab-ci-local warns about any predefined variable set; these stand for the GitLab registry.
            .args(["--ignore-predefined-vars", "CI_REGISTRY,CI_REGISTRY_IMAGE"])
            .args(["--force-shell-executor", "--home"])
            .arg(&home)
            .current_dir(&self.project)
            .env("PATH", path)
            .env("CONTAINERS_STORAGE_CONF", containers.join("storage.conf"))
            .env(
                "CONTAINERS_REGISTRIES_CONF",
                containers.join("registries.conf"),
            )
            .env("REGISTRY_AUTH_FILE", containers.join("auth.json"))
            // The host may have these; the pipeline must not.
            .env_remove("DOCKER_CONFIG")
            .env_remove("REGISTRY_USER")
            .env_remove("REGISTRY_PASSWORD")
            .env("NO_COLOR", "1")
            .env("FORCE_COLOR", "0")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("running gitlab-ci-local");
        let collected = Arc::new(Mutex::new(String::new()));
        let readers: Vec<_> = [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ]
        .into_iter()
        .map(|stream| {
            let collected = collected.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    if live {
                        println!("{line}");
                    }
                    let mut c = collected.lock().unwrap();
                    c.push_str(&line);
                    c.push('\n');
                }
            })
        })
        .collect();
        let status = child.wait().expect("waiting for gitlab-ci-local");
        for r in readers {
            let _ = r.join();
        }
        let wall = started.elapsed();
        let output = std::mem::take(&mut *collected.lock().unwrap());
        let jobs = job_timings(&output);
        PipelineRun {
            ok: status.success(),
            output,
            wall,
            jobs,
        }
    }

    /// What the pipeline left behind, read from the registries, the config
    /// repo, Argo CD and the job artifacts (each read independently of the
    /// jobs' own claims where it can be).
    pub fn results(&self) -> Results {
        let build_env = self.artifacts("build-image").join("build-image.env");
        let build_digest = dotenv_value(&build_env, "BUILD_DIGEST");
        let creds = self.staging.credentials();
        let staging_manifest = harness::registry::try_skopeo_raw(
            &format!("{}@{build_digest}", self.staging_image()),
            creds,
        )
        .unwrap_or_default();
        let hub_creds = Some((HUB_USER, self.secrets.hub_token.as_str()));
        let hub_manifest = harness::registry::try_skopeo_raw(
            &format!("{}@{build_digest}", self.hub_image()),
            hub_creds,
        )
        .unwrap_or_default();
        let promote_env = self.artifacts("promote-image").join("promote.env");
        let promoted_digest = std::fs::read_to_string(&promote_env)
            .ok()
            .and_then(|_| {
                dotenv(&promote_env)
                    .into_iter()
                    .find(|(k, _)| k == "PROMOTED_DIGEST")
            })
            .map(|(_, v)| v);
        let verify = Command::new(self.bin_dir.join("sign-image"))
            .args(["verify", "--key"])
            .arg(&self.public_key)
            .arg(format!("{}@{build_digest}", self.hub_image()))
            .env("INSECURE_REGISTRY", self.hub.host())
            .env("SIGN_IMAGE_REGISTRY_USER", HUB_USER)
            .env("SIGN_IMAGE_REGISTRY_PASSWORD", &self.secrets.hub_token)
            .output()
            .expect("sign-image verify");
        let bare = self.config_repo();
        let new_commits: Vec<String> = git(
            &bare,
            &[
                "rev-list",
                &format!("{}..refs/heads/main", self.seed_commit),
            ],
        )
        .lines()
        .map(String::from)
        .collect();
        let overlay = if let Some(head) = new_commits.first() {
            git(
                &bare,
                &["show", &format!("{head}:{APP_PATH}/kustomization.yaml")],
            )
        } else {
            String::new()
        };
        let hook = new_commits.first().map(|head| self.run_device_hook(head));
        let synced_revisions = self
            .argo
            .sync_bodies()
            .iter()
            .filter_map(|b| b["revision"].as_str().map(String::from))
            .collect();
        let app = self.argo.app_json(APP).unwrap_or_default();
        Results {
            build_digest,
            staging_manifest,
            hub_manifest,
            promoted_digest,
            signature_verified: verify.status.code() == Some(0),
            verify_output: format!(
                "{}{}",
                String::from_utf8_lossy(&verify.stdout),
                String::from_utf8_lossy(&verify.stderr)
            ),
            new_commits,
            overlay,
            hook,
            synced_revisions,
            app_revision: app["status"]["sync"]["revision"]
                .as_str()
                .unwrap_or("")
                .into(),
            app_sync: app["status"]["sync"]["status"]
                .as_str()
                .unwrap_or("")
                .into(),
            app_health: app["status"]["health"]["status"]
                .as_str()
                .unwrap_or("")
                .into(),
        }
    }
}

impl Flow {
    /// Renders the pi-lab overlay at config-repo commit `rev` with kubectl's
    /// kustomize and runs its PreSync hook's command: the linux/arm64 static
    /// sign-image under `qemu-aarch64-static` when it is built (see
    /// [`arm64_sign_image`]), else the host's. The Secret the hook reads
    /// registry credentials from is passed as env, and Docker Hub's host is
    /// plain HTTP here.
    pub fn run_device_hook(&self, rev: &str) -> HookRun {
        let checkout = tempfile::tempdir().expect("temp dir");
        let bare = self.config_repo();
        git(
            checkout.path(),
            &["clone", "-q", &bare.display().to_string(), "repo"],
        );
        let repo = checkout.path().join("repo");
        git(&repo, &["checkout", "-q", rev]);
        let hub = self.hub.host();
        let env = [
            ("INSECURE_REGISTRY", hub.as_str()),
            ("SIGN_IMAGE_REGISTRY_USER", HUB_USER),
            (
                "SIGN_IMAGE_REGISTRY_PASSWORD",
                self.secrets.hub_token.as_str(),
            ),
        ];
        let host_bin = self.bin_dir.join("sign-image");
        match arm64_sign_image() {
            Some((qemu, bin)) => run_rendered_hook(&repo.join(APP_PATH), Some(&qemu), &bin, &env),
            None => run_rendered_hook(&repo.join(APP_PATH), None, &host_bin, &env),
        }
    }
}

/// What the device's containerd image verifier said (see
/// [`Flow::run_device_verifier`]).
#[derive(Debug, Clone)]
pub struct VerifierRun {
    /// Its exit code: containerd allows the pull on 0 only.
    pub code: Option<i32>,
    /// Standard output: the reason containerd shows.
    pub stdout: String,
    pub stderr: String,
    /// Which binary ran (the aarch64 one under qemu, or the host's).
    pub binary: String,
}

impl Flow {
    /// Runs the device's image verifier (`secdeliv-verifier`, set up as
    /// examples/device sets it up) exactly as containerd v2.4 runs it before
    /// pulling `image` (`name:tag`) at `digest` (`size` bytes): the example
    /// policy, its sensor-app scope pointed at this "Docker Hub" and its key
    /// file replaced by `key`; a K3s registries.yaml holding the node's
    /// Docker Hub login and its plain-HTTP endpoint; the OCI descriptor on
    /// stdin. The linux/arm64 static binary under `qemu-aarch64-static` when
    /// it is built, else the host's.
    pub fn run_device_verifier(
        &self,
        image: &str,
        digest: &str,
        size: usize,
        key: &Path,
    ) -> VerifierRun {
        let node = tempfile::tempdir().expect("temp dir");
        let example = root().join("examples/device/verify.yaml");
        let policy = std::fs::read_to_string(&example).expect("examples/device/verify.yaml");
        let hub = self.hub.host();
        let policy = rewrite(
            &policy,
            "\"docker.io/acme/sensor-app\"",
            &format!("\"{hub}/{HUB_USER}/sensor-app\""),
            "examples/device/verify.yaml",
        );
        let policy = rewrite(
            &policy,
            "/etc/secdeliv/keys/cosign.pub",
            &key.display().to_string(),
            "examples/device/verify.yaml",
        );
        std::fs::write(node.path().join("verify.yaml"), policy).unwrap();
        std::fs::write(
            node.path().join("registries.yaml"),
            format!(
                "mirrors:\n  \"{hub}\":\n    endpoint: [\"http://{hub}\"]\nconfigs:\n  \"{hub}\":\n    auth:\n      username: {HUB_USER}\n      password: \"{}\"\n",
                self.secrets.hub_token
            ),
        )
        .unwrap();
        let arm64 = musl_dir().join("aarch64-unknown-linux-musl/release/secdeliv-verifier");
        let qemu = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join("qemu-aarch64-static"))
            .find(|p| p.is_file());
        let (mut cmd, binary) = match qemu {
            Some(qemu) if arm64.is_file() => {
                let mut c = Command::new(qemu);
                c.arg(&arm64);
                (c, format!("{} under qemu-aarch64-static", arm64.display()))
            }
            _ => {
                let host = self.bin_dir.join("secdeliv-verifier");
                (Command::new(&host), host.display().to_string())
            }
        };
        let descriptor = format!(
            r#"{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{digest}","size":{size}}}"#
        );
        let mut child = cmd
            .args(["-name", image, "-digest", digest, "-stdin-media-type"])
            .arg("application/vnd.oci.descriptor.v1+json")
            .arg("--policy")
            .arg(node.path().join("verify.yaml"))
            .arg("--registries")
            .arg(node.path().join("registries.yaml"))
            .arg("--cache")
            .arg(node.path().join("cache/verify-cache.json"))
            .env_clear()
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("secdeliv-verifier starts");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(descriptor.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().expect("secdeliv-verifier ends");
        VerifierRun {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            binary,
        }
    }
}

/// Cargo's target dir holding the static musl job binaries
/// (`<triple>/release/<job>`, as `scripts/build-musl.sh` builds them):
/// `$SECDELIV_MUSL_DIR`, else `<root>/target`.
pub fn musl_dir() -> PathBuf {
    std::env::var_os("SECDELIV_MUSL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// The linux/arm64 static sign-image (`$SECDELIV_MUSL_DIR`, else
/// `<root>/target`, then `aarch64-unknown-linux-musl/release/sign-image`, as
/// `scripts/build-musl.sh` builds it) and `qemu-aarch64-static` to run it,
/// when both are there.
pub fn arm64_sign_image() -> Option<(PathBuf, PathBuf)> {
    let bin = musl_dir().join("aarch64-unknown-linux-musl/release/sign-image");
    let qemu = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("qemu-aarch64-static"))
        .find(|p| p.is_file())?;
    bin.is_file().then_some((qemu, bin))
}

/// See [`Flow::results`].
#[derive(Debug, Clone)]
pub struct Results {
    /// BUILD_DIGEST of build-image's dotenv report.
    pub build_digest: String,
    /// The index at the staging registry, by that digest (empty if absent).
    pub staging_manifest: Vec<u8>,
    /// The index at Docker Hub, by the same digest (empty if absent).
    pub hub_manifest: Vec<u8>,
    pub promoted_digest: Option<String>,
    /// `sign-image verify --key cosign.pub` of the published digest.
    pub signature_verified: bool,
    pub verify_output: String,
    /// Config-repo commits after the seed, newest first.
    pub new_commits: Vec<String>,
    /// The pi-lab overlay's kustomization.yaml at the newest commit.
    pub overlay: String,
    /// The pi-lab overlay's PreSync hook at the newest commit, run as the
    /// device would (see [`Flow::run_device_hook`]).
    pub hook: Option<HookRun>,
    /// `revision` of every sync request Argo CD got.
    pub synced_revisions: Vec<String>,
    pub app_revision: String,
    pub app_sync: String,
    pub app_health: String,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.stop_watcher.store(true, Ordering::SeqCst);
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
    }
}

fn rewrite_tree(dir: &Path, from: &str, to: &str, count: &mut usize) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            rewrite_tree(&p, from, to, count);
        } else if let Ok(text) = std::fs::read_to_string(&p)
            && text.contains(from)
        {
            *count += text.matches(from).count();
            std::fs::write(&p, text.replace(from, to)).expect("rewrite");
        }
    }
}

/// `job  finished in 1.23 s` (or `… in 1 min 2 s`) lines of gitlab-ci-local.
pub fn job_timings(output: &str) -> Vec<JobTiming> {
    let re =
        regex::Regex::new(r"(?m)^(\S+)\s+finished in (?:(\d+) min\s*)?(?:([\d.]+) s|([\d.]+) ms)")
            .expect("regex");
    let mut v: Vec<JobTiming> = vec![];
    for c in re.captures_iter(output) {
        let min: f64 = c.get(2).map_or(0.0, |m| m.as_str().parse().unwrap_or(0.0));
        let s: f64 = c.get(3).map_or(0.0, |m| m.as_str().parse().unwrap_or(0.0));
        let ms: f64 = c.get(4).map_or(0.0, |m| m.as_str().parse().unwrap_or(0.0));
        let job = c[1].to_string();
        // `pipeline finished in …` is the total, not a job.
        if job == "pipeline" || v.iter().any(|t| t.job == job) {
            continue;
        }
        v.push(JobTiming {
            job,
            seconds: min * 60.0 + s + ms / 1000.0,
        });
    }
    v
}

/// Reads a dotenv report into pairs (the kit's parser, the jobs' own format).
pub fn dotenv(path: &Path) -> Vec<(String, String)> {
    kit::dotenv::parse(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
}

/// One value of a dotenv report.
pub fn dotenv_value(path: &Path, key: &str) -> String {
    dotenv(path)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("{} has no {key}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_timings_reads_gitlab_ci_local_lines() {
        let out = "build-image   finished in 2.07 s\nscan-image    finished in 312 ms\nnotify-argocd finished in 1 min 3.5 s\n";
        assert_eq!(
            job_timings(out),
            vec![
                JobTiming {
                    job: "build-image".into(),
                    seconds: 2.07
                },
                JobTiming {
                    job: "scan-image".into(),
                    seconds: 0.312
                },
                JobTiming {
                    job: "notify-argocd".into(),
                    seconds: 63.5
                },
            ]
        );
    }
}
