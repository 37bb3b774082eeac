//! Credentials per registry, kept apart for SRC and DST.
//!
//! Order: explicit flags; for Docker Hub `DOCKERHUB_USERNAME` /
//! `DOCKERHUB_TOKEN`; then the kit's discovery (`REGISTRY_USER` /
//! `REGISTRY_PASSWORD` for the host they are bound to, `CI_REGISTRY_*` for
//! `$CI_REGISTRY`, docker `config.json`, then unbound `REGISTRY_USER` for
//! the job's default registry only; see `kit::credentials`).

use kit::credentials::{Credentials, discover_with, registry_env_not_for};
use kit::env::Env;
use kit::secret::Secret;

pub use kit::credentials::RegistryEnv;

use crate::error::Result;

/// Finds credentials for `registry` (normalized, e.g. `docker.io`), the
/// job's default registry, and logs where they came from (never the
/// values). `Ok(None)` is anonymous. `label` names the side in the log
/// (`source`, `destination`).
pub fn credentials_for(
    label: &str,
    registry: &str,
    explicit: Option<Credentials>,
    env: &dyn Env,
) -> Result<Option<Credentials>> {
    credentials_for_with(label, registry, explicit, env, RegistryEnv::DefaultRegistry)
}

/// [`credentials_for`] for a registry that may not be the job's default
/// one (promote-image's destination: [`RegistryEnv::OnlyWhenBound`]).
pub fn credentials_for_with(
    label: &str,
    registry: &str,
    explicit: Option<Credentials>,
    env: &dyn Env,
    role: RegistryEnv,
) -> Result<Option<Credentials>> {
    if explicit.is_none() && registry == kit::reference::DOCKER_HUB {
        let hub = Credentials::from_pair(
            env.var("DOCKERHUB_USERNAME").as_deref(),
            env.var("DOCKERHUB_TOKEN").map(Secret::new).as_ref(),
            "DOCKERHUB_USERNAME",
            "DOCKERHUB_TOKEN",
        )?;
        if let Some(c) = hub {
            kit::joblog::info(format!(
                "{label} {registry}: user {} from DOCKERHUB_USERNAME/DOCKERHUB_TOKEN",
                c.username
            ));
            return Ok(Some(c));
        }
    }
    let note = registry_env_not_for(registry, env, role)
        .map(|n| format!("; {n}"))
        .unwrap_or_default();
    match discover_with(registry, explicit, env, role)? {
        Some((c, source)) => {
            let note = match source {
                kit::credentials::CredentialSource::RegistryEnv(_) => String::new(),
                _ => note,
            };
            kit::joblog::info(format!(
                "{label} {registry}: user {} from {source}{note}",
                c.username
            ));
            Ok(Some(c))
        }
        None => {
            kit::joblog::info(format!("{label} {registry}: anonymous{note}"));
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kit::env::MapEnv;

    #[test]
    fn docker_hub_variables_only_for_docker_hub() {
        let env = MapEnv::new([
            ("DOCKERHUB_USERNAME", "hubuser"),
            ("DOCKERHUB_TOKEN", "dckr_pat_x"),
            ("DOCKER_CONFIG", "/nonexistent"),
        ]);
        let c = credentials_for("destination", "docker.io", None, &env)
            .unwrap()
            .unwrap();
        assert_eq!(c.username, "hubuser");
        assert!(
            credentials_for("source", "registry.gitlab.com", None, &env)
                .unwrap()
                .is_none()
        );
        // Flags win.
        let c = credentials_for(
            "destination",
            "docker.io",
            Some(Credentials::new("f", "p")),
            &env,
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.username, "f");
        // Half a pair is a usage error naming the missing variable.
        let env = MapEnv::new([("DOCKERHUB_USERNAME", "hubuser")]);
        let e = credentials_for("destination", "docker.io", None, &env).unwrap_err();
        assert_eq!(e.exit_kind(), kit::ExitKind::Usage);
        assert!(e.to_string().contains("DOCKERHUB_TOKEN"));
    }
}
