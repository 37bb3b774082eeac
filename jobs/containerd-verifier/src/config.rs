//! Flags, stdin and the node's files → a validated [`Config`]. Everything
//! that can be checked without the network is checked here (a refusal with
//! exit 2): the flags containerd passes, stdin against `-stdin-media-type`
//! and `-digest`, the image name, the policy and its keys.

use std::path::PathBuf;

use kit::reference::{Digest, ImageRef, ReferenceError};

use crate::cli::Args;
use crate::contract::{self, ContractError, Descriptor, Operation};
use crate::policy::{Policy, PolicyError};
use crate::registries::{RegistriesError, RegistriesYaml};

#[derive(Debug)]
pub struct Config {
    /// `-name` as containerd passed it (for messages).
    pub name: String,
    /// `-name`, parsed and normalized, with `-digest` as its digest.
    pub image: ImageRef,
    pub digest: Digest,
    pub operation: Option<Operation>,
    pub descriptor: Descriptor,
    pub policy: Policy,
    /// Read only when a signature must be fetched: a broken registries.yaml
    /// refuses the images that need verifying, not the ones outside every
    /// scope.
    pub registries: Result<RegistriesYaml, RegistriesError>,
    /// `None`: `--cache none`.
    pub cache: Option<PathBuf>,
}

/// Why the verifier refuses before any request (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "-{0} is missing; containerd passes -name, -digest and -stdin-media-type (is this binary run by containerd's image-verifier bindir plugin?)"
    )]
    Missing(&'static str),
    #[error(transparent)]
    Contract(#[from] ContractError),
    #[error("-name {name:?}: {source}")]
    Name {
        name: String,
        #[source]
        source: ReferenceError,
    },
    #[error("cannot read stdin: {0}")]
    Stdin(#[source] std::io::Error),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

impl Config {
    /// Validates flags and `stdin` (the bytes containerd wrote), loads the
    /// policy and its keys and the registries file.
    pub fn from_args(args: Args, stdin: &[u8]) -> Result<Config, ConfigError> {
        let name = args.name.ok_or(ConfigError::Missing("name"))?;
        let digest = args.digest.ok_or(ConfigError::Missing("digest"))?;
        let media_type = args
            .stdin_media_type
            .ok_or(ConfigError::Missing("stdin-media-type"))?;
        let operation = args
            .operation
            .as_deref()
            .map(contract::parse_operation)
            .transpose()?;
        let digest = contract::parse_digest(&digest)?;
        let descriptor = contract::read_descriptor(&media_type, stdin, &digest)?;
        let image = ImageRef::parse(&name)
            .map_err(|source| ConfigError::Name {
                name: name.clone(),
                source,
            })?
            .with_digest(digest.clone());
        let policy = Policy::load(&args.policy)?;
        let registries = RegistriesYaml::load(&args.registries);
        let cache = match args.cache.trim() {
            "none" | "" => None,
            p => Some(PathBuf::from(p)),
        };
        Ok(Config {
            name,
            image,
            digest,
            operation,
            descriptor,
            policy,
            registries,
            cache,
        })
    }

    /// `registry/repository`, what policy globs match.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.image.registry, self.image.repository)
    }
}

/// Reads stdin up to one byte past the contract's limit (so an oversized
/// stdin is refused, not cut).
pub fn read_stdin() -> Result<Vec<u8>, ConfigError> {
    use std::io::Read as _;
    let mut buf = Vec::new();
    std::io::stdin()
        .take(contract::MAX_STDIN_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(ConfigError::Stdin)?;
    Ok(buf)
}
