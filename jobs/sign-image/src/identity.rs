//! Which repository a signature was made for.
//!
//! A cosign payload names the repository it was signed at in
//! `critical.identity.docker-reference` (cosign writes go-containerregistry's
//! `Repository.Name()`: `index.docker.io/acme/app`, `registry.example/team/app`).
//! `sign-image verify` accepts a signature only when that repository is the
//! one being verified, or one named with `--identity`; `--allow-any-identity`
//! turns the check off (cosign's behaviour). Without the check, anyone who can
//! push to a repository could copy a valid signature made for *another*
//! repository of the same digest (`registry/other@D` → `registry/app@D`) and
//! have it accepted.
//!
//! Names are compared after normalization: `docker.io`, `index.docker.io` and
//! `registry-1.docker.io` are one registry; a one-component Docker Hub path
//! gets `library/`; the registry host is compared without regard to case.
//! Tags and digests in a payload's reference are ignored (the digest is
//! checked on its own); a different port is a different registry.

use std::fmt;

use kit::reference::{DOCKER_HUB, ImageRef, ReferenceError};

/// A normalized `registry/repository`, without tag or digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repository {
    registry: String,
    path: String,
}

/// A repository name that cannot be used as an identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("--identity {input:?}: {source}")]
    Invalid {
        input: String,
        #[source]
        source: ReferenceError,
    },
    #[error(
        "--identity {0:?} names a tag or digest; give the repository only (registry/path), as the payload's docker-reference names it"
    )]
    NotARepository(String),
}

/// Docker Hub's API host, as some signers write it.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

impl Repository {
    /// The repository of an image reference (tag and digest dropped).
    pub fn of(image: &ImageRef) -> Self {
        let registry = image.registry.to_ascii_lowercase();
        let registry = if registry == DOCKER_HUB_API || registry == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        Repository {
            registry,
            path: image.repository.clone(),
        }
    }

    /// A `docker-reference` as written in a payload: tags and digests are
    /// ignored.
    pub fn parse(reference: &str) -> Result<Self, ReferenceError> {
        let reference = reference.trim();
        // `registry-1.docker.io/alpine` must become `docker.io/library/alpine`:
        // rewrite the host before the kit's parser adds `library/`.
        let rewritten = match reference.split_once('/') {
            Some((host, rest)) if host.eq_ignore_ascii_case(DOCKER_HUB_API) => {
                format!("{DOCKER_HUB}/{rest}")
            }
            Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => {
                format!("{}/{rest}", host.to_ascii_lowercase())
            }
            _ => reference.to_string(),
        };
        Ok(Self::of(&ImageRef::parse(&rewritten)?))
    }

    /// An `--identity` value: a repository without tag or digest.
    pub fn parse_flag(value: &str) -> Result<Self, IdentityError> {
        let image = Self::parse(value).map_err(|source| IdentityError::Invalid {
            input: value.to_string(),
            source,
        })?;
        let parsed = ImageRef::parse(value.trim()).map_err(|source| IdentityError::Invalid {
            input: value.to_string(),
            source,
        })?;
        if parsed.tag.is_some() || parsed.digest.is_some() {
            return Err(IdentityError::NotARepository(value.to_string()));
        }
        Ok(image)
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
    }
}

/// Which payload identities `verify` accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityRule {
    /// `--allow-any-identity`: whatever repository the payload names.
    Any,
    /// The verified repository, and the `--identity` repositories.
    Repositories {
        verified: Repository,
        also: Vec<Repository>,
    },
}

/// Why a payload's identity is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityMismatch {
    #[error(transparent)]
    Other(Box<OtherRepository>),
    #[error("the payload's docker-reference {named:?} is not a repository name: {reason}")]
    Malformed { named: String, reason: String },
}

/// The payload names a repository verify does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "signed for {named}, not for {verified}{} (a signature made for another repository; if that repository is a name of this image, accept it with --identity {normalized})",
    also_text(.also)
)]
pub struct OtherRepository {
    /// The payload's docker-reference, as written.
    pub named: String,
    /// Its normalized form.
    pub normalized: Repository,
    pub verified: Repository,
    pub also: Vec<Repository>,
}

fn also_text(also: &[Repository]) -> String {
    if also.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = also.iter().map(ToString::to_string).collect();
        format!(" nor for --identity {}", names.join(", "))
    }
}

impl IdentityRule {
    /// The rule for verifying `image`: its repository plus `also`, or any.
    pub fn new(image: &ImageRef, also: Vec<Repository>, allow_any: bool) -> Self {
        if allow_any {
            return IdentityRule::Any;
        }
        let verified = Repository::of(image);
        let mut also = also;
        also.retain(|r| *r != verified);
        also.dedup();
        IdentityRule::Repositories { verified, also }
    }

    /// Checks a payload's `docker-reference`.
    pub fn check(&self, named: &str) -> Result<(), IdentityMismatch> {
        let IdentityRule::Repositories { verified, also } = self else {
            return Ok(());
        };
        let normalized = Repository::parse(named).map_err(|e| IdentityMismatch::Malformed {
            named: named.to_string(),
            reason: e.reason,
        })?;
        if normalized == *verified || also.contains(&normalized) {
            return Ok(());
        }
        Err(IdentityMismatch::Other(Box::new(OtherRepository {
            named: named.to_string(),
            normalized,
            verified: verified.clone(),
            also: also.clone(),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(s: &str) -> Repository {
        Repository::parse(s).unwrap()
    }

    #[test]
    fn docker_hub_spellings_are_one_repository() {
        let want = repo("docker.io/library/alpine");
        for s in [
            "alpine",
            "library/alpine",
            "docker.io/alpine",
            "index.docker.io/library/alpine",
            "index.docker.io/alpine",
            "registry-1.docker.io/alpine",
            "Registry-1.Docker.io/library/alpine",
            "alpine:3.20",
            "index.docker.io/library/alpine@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert_eq!(repo(s), want, "{s}");
        }
        assert_eq!(want.to_string(), "docker.io/library/alpine");
        assert_ne!(repo("acme/alpine"), want);
        assert_ne!(repo("ghcr.io/library/alpine"), want);
    }

    #[test]
    fn registry_host_case_is_ignored_but_ports_are_not() {
        assert_eq!(
            repo("Registry.Example:5000/team/app"),
            repo("registry.example:5000/team/app")
        );
        assert_ne!(
            repo("registry.example:5000/team/app"),
            repo("registry.example/team/app")
        );
        assert_ne!(repo("localhost:5000/app"), repo("127.0.0.1:5000/app"));
    }

    #[test]
    fn the_rule_accepts_the_verified_repository_and_the_named_ones_only() {
        let image = ImageRef::parse("127.0.0.1:5000/team/app@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855").unwrap();
        let rule = IdentityRule::new(&image, vec![], false);
        rule.check("127.0.0.1:5000/team/app").unwrap();
        rule.check("127.0.0.1:5000/team/app:1.0").unwrap();
        let e = rule.check("127.0.0.1:5000/team/other").unwrap_err();
        assert_eq!(
            e.to_string(),
            "signed for 127.0.0.1:5000/team/other, not for 127.0.0.1:5000/team/app (a signature made for another repository; if that repository is a name of this image, accept it with --identity 127.0.0.1:5000/team/other)"
        );
        assert!(matches!(
            rule.check("Not A Reference").unwrap_err(),
            IdentityMismatch::Malformed { .. }
        ));

        let mirror = Repository::parse_flag("127.0.0.1:5000/team/other").unwrap();
        let rule = IdentityRule::new(&image, vec![mirror], false);
        rule.check("127.0.0.1:5000/team/other").unwrap();
        rule.check("127.0.0.1:5000/team/app").unwrap();
        let e = rule.check("127.0.0.1:5000/team/third").unwrap_err();
        assert!(
            e.to_string().contains(
                "not for 127.0.0.1:5000/team/app nor for --identity 127.0.0.1:5000/team/other"
            ),
            "{e}"
        );

        IdentityRule::new(&image, vec![], true)
            .check("anything/at/all")
            .unwrap();
    }

    #[test]
    fn identity_flags_are_repositories() {
        assert_eq!(
            Repository::parse_flag("acme/app").unwrap().to_string(),
            "docker.io/acme/app"
        );
        assert!(matches!(
            Repository::parse_flag("acme/app:1.0"),
            Err(IdentityError::NotARepository(_))
        ));
        assert!(matches!(
            Repository::parse_flag("Bad//Name"),
            Err(IdentityError::Invalid { .. })
        ));
    }
}
