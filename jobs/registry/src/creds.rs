//! Credentials per registry, kept apart for SRC and DST.
//!
//! Order: explicit flags; for Docker Hub `DOCKERHUB_USERNAME` /
//! `DOCKERHUB_TOKEN`; then the kit's discovery (`REGISTRY_USER` /
//! `REGISTRY_PASSWORD`, `CI_REGISTRY_*` for `$CI_REGISTRY`, docker
//! `config.json`).

use kit::JobResult;
use kit::credentials::{Credentials, discover};
use kit::env::Env;
use kit::secret::Secret;

/// Finds credentials for `registry` (normalized, e.g. `docker.io`) and
/// logs where they came from (never the values). `Ok(None)` is anonymous.
/// `label` names the side in the log (`source`, `destination`).
pub fn credentials_for(
    label: &str,
    registry: &str,
    explicit: Option<Credentials>,
    env: &dyn Env,
) -> JobResult<Option<Credentials>> {
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
    match discover(registry, explicit, env)? {
        Some((c, source)) => {
            kit::joblog::info(format!(
                "{label} {registry}: user {} from {source}",
                c.username
            ));
            Ok(Some(c))
        }
        None => {
            kit::joblog::info(format!("{label} {registry}: anonymous"));
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
        assert_eq!(e.kind, kit::ExitKind::Usage);
        assert!(e.message.contains("DOCKERHUB_TOKEN"));
    }
}
