//! Registry credential discovery, in DESIGN.md's order:
//! 1. explicit flags (each job maps its own flags/env, e.g. `CS_REGISTRY_USER`);
//! 2. `REGISTRY_USER` / `REGISTRY_PASSWORD`;
//! 3. `CI_REGISTRY_USER` / `CI_REGISTRY_PASSWORD`, only for `$CI_REGISTRY`;
//! 4. `auths` of `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.

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

/// Where credentials came from, for the job log (never the values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    Flags,
    RegistryEnv,
    CiRegistry,
    DockerConfig(PathBuf),
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Flags => f.write_str("flags"),
            CredentialSource::RegistryEnv => f.write_str("REGISTRY_USER/REGISTRY_PASSWORD"),
            CredentialSource::CiRegistry => f.write_str("CI_REGISTRY_USER/CI_REGISTRY_PASSWORD"),
            CredentialSource::DockerConfig(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Finds credentials for `registry` (a normalized host such as `docker.io` or
/// `localhost:5000`). `Ok(None)` means anonymous access.
pub fn discover(
    registry: &str,
    explicit: Option<Credentials>,
    env: &dyn Env,
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
    if let Some(c) = pair("REGISTRY_USER", "REGISTRY_PASSWORD")? {
        return Ok(Some((c, CredentialSource::RegistryEnv)));
    }
    if let Some(ci) = env.first(&["CI_REGISTRY"])
        && normalize_registry_key(&ci) == normalize_registry_key(registry)
        && let Some(c) = pair("CI_REGISTRY_USER", "CI_REGISTRY_PASSWORD")?
    {
        return Ok(Some((c, CredentialSource::CiRegistry)));
    }
    if let Some(path) = docker_config_path(env)
        && let Some(c) = from_docker_config(&path, registry)?
    {
        return Ok(Some((c, CredentialSource::DockerConfig(path))));
    }
    Ok(None)
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
            ("ru", CredentialSource::RegistryEnv)
        );

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
