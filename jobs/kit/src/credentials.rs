//! Registry credential discovery, first match wins:
//! 1. explicit flags (each job maps its own flags/env, e.g. `CS_REGISTRY_USER`);
//! 2. `REGISTRY_USER` / `REGISTRY_PASSWORD`, only for the one host they are
//!    bound to: `REGISTRY_HOST`, else `$CI_REGISTRY`;
//! 3. `CI_REGISTRY_USER` / `CI_REGISTRY_PASSWORD`, only for `$CI_REGISTRY`;
//! 4. `auths` of `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`
//!    (host-specific);
//! 5. when neither `REGISTRY_HOST` nor `CI_REGISTRY` is set,
//!    `REGISTRY_USER` / `REGISTRY_PASSWORD` for the job's default registry
//!    only ([`RegistryEnv::DefaultRegistry`]: the one registry of
//!    scan-image and sign-image, promote-image's source), never for
//!    another one.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::env::Env;
use crate::secret::Secret;
use crate::{JobError, JobResult};

/// A username and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, [redacted])", self.username)
    }
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: Secret::new(password.into()),
        }
    }

    /// Builds credentials from a username/password flag pair; one without the
    /// other is a usage error naming the missing flag.
    pub fn from_pair(
        username: Option<&str>,
        password: Option<&Secret>,
        user_flag: &str,
        password_flag: &str,
    ) -> JobResult<Option<Credentials>> {
        match (
            username.filter(|u| !u.is_empty()),
            password.filter(|p| !p.is_empty()),
        ) {
            (Some(u), Some(p)) => Ok(Some(Credentials {
                username: u.to_string(),
                password: p.clone(),
            })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(JobError::usage(format!(
                "{user_flag} is set but {password_flag} is not"
            ))),
            (None, Some(_)) => Err(JobError::usage(format!(
                "{password_flag} is set but {user_flag} is not"
            ))),
        }
    }
}

/// Which registry `REGISTRY_USER` / `REGISTRY_PASSWORD` are for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// `REGISTRY_HOST` names it.
    RegistryHost(String),
    /// `REGISTRY_HOST` is unset; `CI_REGISTRY` names it.
    CiRegistry(String),
    /// Neither is set: the job's default registry only.
    JobDefault,
}

impl Binding {
    /// From `REGISTRY_HOST`, else `CI_REGISTRY`.
    pub fn from_env(env: &dyn Env) -> Binding {
        if let Some(h) = env.first(&["REGISTRY_HOST"]) {
            return Binding::RegistryHost(h);
        }
        if let Some(h) = env.first(&["CI_REGISTRY"]) {
            return Binding::CiRegistry(h);
        }
        Binding::JobDefault
    }

    /// The host it names, if any.
    pub fn host(&self) -> Option<&str> {
        match self {
            Binding::RegistryHost(h) | Binding::CiRegistry(h) => Some(h),
            Binding::JobDefault => None,
        }
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Binding::RegistryHost(h) => write!(f, "bound to {h} by REGISTRY_HOST"),
            Binding::CiRegistry(h) => write!(f, "bound to {h} by CI_REGISTRY"),
            Binding::JobDefault => {
                f.write_str("no REGISTRY_HOST or CI_REGISTRY: the job's default registry only")
            }
        }
    }
}

/// Whether the registry being looked up is the job's default one, which
/// `REGISTRY_USER` / `REGISTRY_PASSWORD` serve when no host is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryEnv {
    /// The job's only registry (scan-image, sign-image) or promote-image's source.
    DefaultRegistry,
    /// Another registry (promote-image's destination): only when bound to it.
    OnlyWhenBound,
}

/// Where credentials came from, for the job log (never the values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    Flags,
    RegistryEnv(Binding),
    CiRegistry,
    DockerConfig(PathBuf),
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Flags => f.write_str("flags"),
            CredentialSource::RegistryEnv(b) => {
                write!(f, "REGISTRY_USER/REGISTRY_PASSWORD ({b})")
            }
            CredentialSource::CiRegistry => f.write_str("CI_REGISTRY_USER/CI_REGISTRY_PASSWORD"),
            CredentialSource::DockerConfig(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Finds credentials for `registry` (a normalized host such as `docker.io` or
/// `localhost:5000`), the job's default registry. `Ok(None)` means
/// anonymous access.
pub fn discover(
    registry: &str,
    explicit: Option<Credentials>,
    env: &dyn Env,
) -> JobResult<Option<(Credentials, CredentialSource)>> {
    discover_with(registry, explicit, env, RegistryEnv::DefaultRegistry)
}

/// [`discover`] for a registry that may not be the job's default one.
pub fn discover_with(
    registry: &str,
    explicit: Option<Credentials>,
    env: &dyn Env,
    role: RegistryEnv,
) -> JobResult<Option<(Credentials, CredentialSource)>> {
    if let Some(c) = explicit {
        return Ok(Some((c, CredentialSource::Flags)));
    }
    let pair = |u: &str, p: &str| -> JobResult<Option<Credentials>> {
        Credentials::from_pair(
            env.var(u).as_deref(),
            env.var(p).map(Secret::new).as_ref(),
            u,
            p,
        )
    };
    let want = normalize_registry_key(registry);
    let registry_env = pair("REGISTRY_USER", "REGISTRY_PASSWORD")?;
    let binding = Binding::from_env(env);
    if let Some(c) = &registry_env
        && binding.host().map(normalize_registry_key).as_deref() == Some(want.as_str())
    {
        return Ok(Some((c.clone(), CredentialSource::RegistryEnv(binding))));
    }
    if let Some(ci) = env.first(&["CI_REGISTRY"])
        && normalize_registry_key(&ci) == want
        && let Some(c) = pair("CI_REGISTRY_USER", "CI_REGISTRY_PASSWORD")?
    {
        return Ok(Some((c, CredentialSource::CiRegistry)));
    }
    if let Some(path) = docker_config_path(env)
        && let Some(c) = from_docker_config(&path, registry)?
    {
        return Ok(Some((c, CredentialSource::DockerConfig(path))));
    }
    if let Some(c) = registry_env
        && binding == Binding::JobDefault
        && role == RegistryEnv::DefaultRegistry
    {
        return Ok(Some((c, CredentialSource::RegistryEnv(binding))));
    }
    Ok(None)
}

/// Why `REGISTRY_USER` / `REGISTRY_PASSWORD`, when set, are not for
/// `registry` (for the job log), or `None` when they are unset or are.
pub fn registry_env_not_for(registry: &str, env: &dyn Env, role: RegistryEnv) -> Option<String> {
    env.first(&["REGISTRY_USER"])?;
    let binding = Binding::from_env(env);
    let want = normalize_registry_key(registry);
    let applies = match binding.host() {
        Some(h) => normalize_registry_key(h) == want,
        None => role == RegistryEnv::DefaultRegistry,
    };
    (!applies).then(|| format!("REGISTRY_USER/REGISTRY_PASSWORD are not used here ({binding})"))
}

/// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
pub fn docker_config_path(env: &dyn Env) -> Option<PathBuf> {
    if let Some(dir) = env.first(&["DOCKER_CONFIG"]) {
        return Some(Path::new(&dir).join("config.json"));
    }
    env.first(&["HOME"])
        .map(|h| Path::new(&h).join(".docker").join("config.json"))
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize, Default)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// Reads the `auths` entry for `registry` from a docker `config.json`.
/// A missing file is not an error; a malformed one is (exit 2, naming it).
pub fn from_docker_config(path: &Path, registry: &str) -> JobResult<Option<Credentials>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(JobError::usage(format!(
                "cannot read docker config {}: {e}",
                path.display()
            )));
        }
    };
    let config: DockerConfig = serde_json::from_str(&text).map_err(|e| {
        // serde_json's message names line and column, never the content.
        JobError::usage(format!(
            "docker config {} is not valid JSON: {e}",
            path.display()
        ))
    })?;
    let want = normalize_registry_key(registry);
    let Some((key, entry)) = config
        .auths
        .iter()
        .find(|(k, _)| normalize_registry_key(k) == want)
    else {
        return Ok(None);
    };
    let bad = |why: &str| {
        JobError::usage(format!(
            "docker config {}: auths entry {key:?} {why}",
            path.display()
        ))
    };
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad("has an `auth` field that is not base64"))?;
        let decoded =
            String::from_utf8(decoded).map_err(|_| bad("has an `auth` field that is not UTF-8"))?;
        let (u, p) = decoded
            .split_once(':')
            .ok_or_else(|| bad("has an `auth` field that is not user:password"))?;
        return Ok(Some(Credentials::new(u, p)));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) if !u.is_empty() => Ok(Some(Credentials::new(u.clone(), p.clone()))),
        _ => Ok(None),
    }
}

/// Reduces the ways people write a registry in `auths` keys and variables
/// (`https://index.docker.io/v1/`, `registry.gitlab.com:443`?) to the form
/// references normalize to.
pub fn normalize_registry_key(key: &str) -> String {
    let k = key.trim();
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::MapEnv;

    fn config_dir(json: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("config.json"), json).unwrap();
        d
    }

    fn env_with(dir: &tempfile::TempDir, extra: &[(&str, &str)]) -> MapEnv {
        let mut e = MapEnv::new([("DOCKER_CONFIG", dir.path().to_str().unwrap())]);
        for (k, v) in extra {
            e.0.insert(k.to_string(), v.to_string());
        }
        e
    }

    #[test]
    fn order_flags_env_ci_config() {
        // user:pass in base64 → dXNlcjpwYXNz
        let dir = config_dir(r#"{"auths":{"reg.example:5000":{"auth":"dXNlcjpwYXNz"}}}"#);
        let env = env_with(&dir, &[]);
        let (c, src) = discover("reg.example:5000", None, &env).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.expose()), ("user", "pass"));
        assert!(matches!(src, CredentialSource::DockerConfig(_)));

        let env = env_with(
            &dir,
            &[
                ("CI_REGISTRY", "reg.example:5000"),
                ("CI_REGISTRY_USER", "gitlab-ci-token"),
                ("CI_REGISTRY_PASSWORD", "jobtoken"),
            ],
        );
        let (c, src) = discover("reg.example:5000", None, &env).unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), src),
            ("gitlab-ci-token", CredentialSource::CiRegistry)
        );
        // CI_REGISTRY credentials are not sent to another registry.
        assert!(discover("other.example", None, &env).unwrap().is_none());

        let env = env_with(
            &dir,
            &[
                ("REGISTRY_USER", "ru"),
                ("REGISTRY_PASSWORD", "rp"),
                ("CI_REGISTRY", "reg.example:5000"),
                ("CI_REGISTRY_USER", "x"),
                ("CI_REGISTRY_PASSWORD", "y"),
            ],
        );
        let (c, src) = discover("reg.example:5000", None, &env).unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), src),
            (
                "ru",
                CredentialSource::RegistryEnv(Binding::CiRegistry("reg.example:5000".into()))
            )
        );
        // Bound to $CI_REGISTRY: not for another registry, whatever its role.
        assert!(discover("other.example", None, &env).unwrap().is_none());

        let (c, src) = discover("reg.example:5000", Some(Credentials::new("f", "fp")), &env)
            .unwrap()
            .unwrap();
        assert_eq!((c.username.as_str(), src), ("f", CredentialSource::Flags));
    }

    #[test]
    fn docker_hub_keys_and_username_fields() {
        let dir = config_dir(
            r#"{"auths":{"https://index.docker.io/v1/":{"username":"hub","password":"tok"}}}"#,
        );
        let (c, _) = discover("docker.io", None, &env_with(&dir, &[]))
            .unwrap()
            .unwrap();
        assert_eq!(c.username, "hub");
    }

    #[test]
    fn password_may_contain_colons() {
        // "u:p:q" → dTpwOnE=
        let dir = config_dir(r#"{"auths":{"h.example":{"auth":"dTpwOnE="}}}"#);
        let (c, _) = discover("h.example", None, &env_with(&dir, &[]))
            .unwrap()
            .unwrap();
        assert_eq!(c.password.expose(), "p:q");
    }

    #[test]
    fn malformed_config_is_usage_error_without_content() {
        let dir = config_dir(r#"{"auths": {"h.example": {"auth": "!!!not-base64-secretish"}}}"#);
        let e = discover("h.example", None, &env_with(&dir, &[])).unwrap_err();
        assert_eq!(e.kind, crate::ExitKind::Usage);
        assert!(e.message.contains("not base64"));
        assert!(!e.message.contains("secretish"));

        let dir = config_dir("{ not json");
        let e = discover("h.example", None, &env_with(&dir, &[])).unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{}", e.message);

        // "nocolon" → bm9jb2xvbg==
        let dir = config_dir(r#"{"auths":{"h.example":{"auth":"bm9jb2xvbg=="}}}"#);
        let e = discover("h.example", None, &env_with(&dir, &[])).unwrap_err();
        assert!(e.message.contains("user:password"));
        assert!(!e.message.contains("nocolon"));
    }

    #[test]
    fn missing_config_means_anonymous() {
        let env = MapEnv::new([("DOCKER_CONFIG", "/nonexistent/dir")]);
        assert!(discover("h.example", None, &env).unwrap().is_none());
    }

    #[test]
    fn registry_user_is_bound_to_one_host() {
        // A host-specific config.json entry for the other registry.
        // "cfg:cfgpass" → Y2ZnOmNmZ3Bhc3M=
        let dir = config_dir(r#"{"auths":{"dst.example":{"auth":"Y2ZnOmNmZ3Bhc3M="}}}"#);
        let bound = env_with(
            &dir,
            &[
                ("REGISTRY_USER", "ru"),
                ("REGISTRY_PASSWORD", "rp-secret"),
                ("REGISTRY_HOST", "src.example"),
                ("CI_REGISTRY", "gitlab.example"),
            ],
        );
        let (c, src) = discover("src.example", None, &bound).unwrap().unwrap();
        assert_eq!(c.username, "ru");
        assert_eq!(
            src.to_string(),
            "REGISTRY_USER/REGISTRY_PASSWORD (bound to src.example by REGISTRY_HOST)"
        );
        // REGISTRY_HOST wins over CI_REGISTRY as the binding.
        assert!(discover("gitlab.example", None, &bound).unwrap().is_none());
        let (c, _) = discover("dst.example", None, &bound).unwrap().unwrap();
        assert_eq!(c.username, "cfg");
        assert_eq!(
            registry_env_not_for("dst.example", &bound, RegistryEnv::DefaultRegistry).unwrap(),
            "REGISTRY_USER/REGISTRY_PASSWORD are not used here (bound to src.example by REGISTRY_HOST)"
        );
        assert!(registry_env_not_for("src.example", &bound, RegistryEnv::OnlyWhenBound).is_none());

        // Unbound: the job's default registry only, after its config.json entry.
        let unbound = env_with(
            &dir,
            &[("REGISTRY_USER", "ru"), ("REGISTRY_PASSWORD", "rp-secret")],
        );
        let (c, src) = discover("src.example", None, &unbound).unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), src),
            ("ru", CredentialSource::RegistryEnv(Binding::JobDefault))
        );
        assert!(
            discover_with("other.example", None, &unbound, RegistryEnv::OnlyWhenBound)
                .unwrap()
                .is_none()
        );
        let (c, _) = discover("dst.example", None, &unbound).unwrap().unwrap();
        assert_eq!(
            c.username, "cfg",
            "a host-specific entry wins over unbound REGISTRY_USER"
        );
        assert!(
            registry_env_not_for("x.example", &unbound, RegistryEnv::OnlyWhenBound)
                .unwrap()
                .contains("the job's default registry only")
        );
    }

    #[test]
    fn half_a_pair_is_an_error() {
        let env = MapEnv::new([("REGISTRY_USER", "u")]);
        let e = discover("h.example", None, &env).unwrap_err();
        assert!(e.message.contains("REGISTRY_PASSWORD"));
    }

    #[test]
    fn key_normalization() {
        assert_eq!(
            normalize_registry_key("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(
            normalize_registry_key("http://localhost:5000"),
            "localhost:5000"
        );
        assert_eq!(
            normalize_registry_key("Registry.GitLab.com"),
            "registry.gitlab.com"
        );
    }
}
