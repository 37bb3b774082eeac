//! Flags → a validated [`Config`]. Everything that can be checked without the
//! network is checked here, before any request (exit 2): the image reference,
//! annotations, `--platform`, `--identity`, `--timeout`, registry
//! credentials, and the key itself (read, decrypted with `COSIGN_PASSWORD`,
//! checked to be ECDSA P-256).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use kit::credentials::Credentials;
use kit::duration::DurationError;
use kit::env::Env;
use kit::job::UsageError;
use kit::reference::{ImageRef, ReferenceError};
use kit::secret::Secret;

use crate::cli::{
    Args, AttestArgs, Command, GenerateArgs, RegistryArgs, SignArgs, SignFormat, VerifyArgs,
    VerifyAttestationArgs,
};
use crate::identity::{IdentityError, IdentityRule, Repository};
use crate::keyref::{KeyRef, KeyRefError, PASSWORD_VAR};
use crate::keys::{PrivateKey, PublicKey};

/// What to do, validated: one variant per subcommand.
#[derive(Debug)]
pub enum Config {
    Sign(SignConfig),
    Verify(VerifyConfig),
    GenerateKeyPair(GenerateConfig),
    Attest(AttestConfig),
    VerifyAttestation(VerifyAttestationConfig),
}

#[derive(Debug)]
pub struct AttestConfig {
    pub image: ImageRef,
    pub key: PrivateKey,
    pub key_origin: String,
    /// The predicate type URI (`--type` resolved).
    pub predicate_type: String,
    /// The predicate file's JSON object.
    pub predicate: serde_json::Map<String, serde_json::Value>,
    pub format: SignFormat,
    pub registry: RegistryConfig,
}

#[derive(Debug)]
pub struct VerifyAttestationConfig {
    pub image: ImageRef,
    pub keys: Vec<VerifyKey>,
    /// The predicate type URI (`--type` resolved).
    pub predicate_type: String,
    pub registry: RegistryConfig,
}

/// Registry access shared by sign and verify.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    pub client: registry::ClientOptions,
    /// Credentials for the image's registry (flags, else the discovery
    /// order of `registry::credentials_for`); `None` is anonymous.
    pub credentials: Option<Credentials>,
    /// `os/arch[/variant]`: sign or verify that platform's manifest of an index.
    pub platform: Option<String>,
    /// The whole job's deadline (`--timeout`).
    pub timeout: Option<Duration>,
}

#[derive(Debug)]
pub struct SignConfig {
    pub image: ImageRef,
    pub key: PrivateKey,
    /// `--key` as given (a path or `env://VAR`), for the log.
    pub key_origin: String,
    pub format: SignFormat,
    pub recursive: bool,
    pub annotations: BTreeMap<String, String>,
    pub registry: RegistryConfig,
}

/// One `--key` of verify: the key and where it came from (for the log and
/// the report: which key verified).
#[derive(Debug, Clone)]
pub struct VerifyKey {
    pub key: PublicKey,
    /// `--key` as given (a path or `env://VAR`).
    pub origin: String,
}

#[derive(Debug)]
pub struct VerifyConfig {
    pub image: ImageRef,
    /// Every `--key`, in the order given, without duplicates: a signature
    /// by any one of them verifies (key rotation).
    pub keys: Vec<VerifyKey>,
    /// `k=v` that each accepted payload's `optional` must carry.
    pub annotations: BTreeMap<String, String>,
    /// Which repositories an accepted payload may name.
    pub identity: IdentityRule,
    pub registry: RegistryConfig,
}

#[derive(Debug)]
pub struct GenerateConfig {
    pub key_path: PathBuf,
    pub pub_path: PathBuf,
    /// `COSIGN_PASSWORD`; `None` when unset (the key is encrypted with the
    /// empty password, with a warning).
    pub password: Option<Secret>,
}

/// A flag or input that cannot be used (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Image(#[from] ReferenceError),
    #[error("--annotation {0:?} is not KEY=VALUE")]
    AnnotationNotPair(String),
    #[error("--annotation {0:?} has an empty key")]
    AnnotationEmptyKey(String),
    #[error("--annotation key {0:?} is given twice")]
    AnnotationTwice(String),
    #[error("--platform {0:?} is not OS/ARCH[/VARIANT] (e.g. linux/arm64)")]
    Platform(String),
    #[error("--timeout: {0}")]
    Timeout(#[source] DurationError),
    #[error("--timeout must be more than 0")]
    ZeroTimeout,
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Key(#[from] KeyRefError),
    /// A lone `--username` or `--password`.
    #[error(transparent)]
    CredentialFlags(kit::JobError),
    /// Credential discovery (a lone `DOCKERHUB_USERNAME`, a malformed docker
    /// `config.json`).
    #[error(transparent)]
    Credentials(Box<registry::Error>),
    #[error(
        "--type {0:?} is not a predicate type: use cyclonedx, spdxjson, vuln, slsaprovenance1, openvex, spdx, slsaprovenance, slsaprovenance02, link, custom, or a URI"
    )]
    PredicateType(String),
    #[error("cannot read --predicate {}: {source}", path.display())]
    PredicateRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--predicate {} is not a JSON object: {reason}", path.display())]
    PredicateJson { path: PathBuf, reason: String },
    #[error("--output-key-prefix is empty")]
    EmptyPrefix,
    #[error(
        "{} already exists; refusing to overwrite a key (use --force, or another --output-key-prefix)",
        .0.display()
    )]
    KeyFileExists(PathBuf),
}

impl From<registry::Error> for ConfigError {
    fn from(e: registry::Error) -> Self {
        ConfigError::Credentials(Box::new(e))
    }
}

impl From<ConfigError> for UsageError {
    fn from(e: ConfigError) -> Self {
        UsageError::with_source(e.to_string(), e)
    }
}

impl kit::job::FromArgs for Config {
    type Args = Args;

    /// Validates every flag; reads the key and local credential files, never
    /// the network.
    fn from_args(args: Args, env: &dyn Env) -> Result<Config, UsageError> {
        Ok(match args.command {
            Command::Sign(a) => Config::Sign(sign(a, env)?),
            Command::Verify(a) => Config::Verify(verify(a, env)?),
            Command::GenerateKeyPair(a) => Config::GenerateKeyPair(generate(a, env)?),
            Command::Attest(a) => Config::Attest(attest(a, env)?),
            Command::VerifyAttestation(a) => Config::VerifyAttestation(verify_attestation(a, env)?),
        })
    }

    /// The whole-job deadline (`--timeout`), for `kit::job`.
    fn deadline(&self) -> Option<Duration> {
        match self {
            Config::Sign(c) => c.registry.timeout,
            Config::Verify(c) => c.registry.timeout,
            Config::Attest(c) => c.registry.timeout,
            Config::VerifyAttestation(c) => c.registry.timeout,
            Config::GenerateKeyPair(_) => None,
        }
    }
}

fn sign(a: SignArgs, env: &dyn Env) -> Result<SignConfig, ConfigError> {
    let image = parse_image(&a.image)?;
    let annotations = parse_annotations(&a.annotations)?;
    let registry = registry_config(a.registry, &image, env)?;
    // The key last: decrypting it (scrypt) is the slow part.
    let key_ref = KeyRef::parse(&a.key)?;
    let key = key_ref.load_private(env)?;
    Ok(SignConfig {
        image,
        key,
        key_origin: key_ref.origin(),
        format: a.format,
        recursive: a.recursive,
        annotations,
        registry,
    })
}

fn verify(a: VerifyArgs, env: &dyn Env) -> Result<VerifyConfig, ConfigError> {
    let image = parse_image(&a.image)?;
    let annotations = parse_annotations(&a.annotations)?;
    let identities = a
        .identities
        .iter()
        .filter(|i| !i.trim().is_empty())
        .map(|i| Repository::parse_flag(i))
        .collect::<Result<Vec<_>, _>>()?;
    let identity = IdentityRule::new(&image, identities, a.allow_any_identity);
    if identity == IdentityRule::Any {
        kit::joblog::warn(
            "--allow-any-identity: a signature made for any repository is accepted for this digest",
        );
    }
    let registry = registry_config(a.registry, &image, env)?;
    let keys = verify_keys(&a.key, env)?;
    Ok(VerifyConfig {
        image,
        keys,
        annotations,
        identity,
        registry,
    })
}

/// Every verify `--key`, loaded; a key given twice is checked once.
fn verify_keys(refs: &[String], env: &dyn Env) -> Result<Vec<VerifyKey>, ConfigError> {
    let mut keys: Vec<VerifyKey> = Vec::new();
    for r in refs.iter().filter(|k| !k.trim().is_empty()) {
        let key_ref = KeyRef::parse(r.trim())?;
        let key = key_ref.load_public(env)?;
        let origin = key_ref.origin();
        if let Some(first) = keys.iter().find(|k| k.key == key) {
            kit::joblog::warn(format!(
                "--key {origin} is the same public key as --key {}; checked once",
                first.origin
            ));
            continue;
        }
        keys.push(VerifyKey { key, origin });
    }
    if keys.is_empty() {
        return Err(ConfigError::Key(KeyRefError::Empty));
    }
    Ok(keys)
}

/// cosign's `--type` names and their predicate type URIs
/// (cmd/cosign/cli/options/predicate.go, v3.1.3).
pub const PREDICATE_TYPES: &[(&str, &str)] = &[
    ("custom", "https://cosign.sigstore.dev/attestation/v1"),
    ("slsaprovenance", "https://slsa.dev/provenance/v0.2"),
    ("slsaprovenance02", "https://slsa.dev/provenance/v0.2"),
    ("slsaprovenance1", "https://slsa.dev/provenance/v1"),
    ("spdx", "https://spdx.dev/Document"),
    ("spdxjson", "https://spdx.dev/Document"),
    ("cyclonedx", "https://cyclonedx.org/bom"),
    ("link", "https://in-toto.io/Link/v1"),
    ("vuln", "https://cosign.sigstore.dev/attestation/vuln/v1"),
    ("openvex", "https://openvex.dev/ns"),
];

/// `--type`: a cosign type name, or an absolute URI used as is.
pub fn predicate_type(t: &str) -> Result<String, ConfigError> {
    let t = t.trim();
    if let Some((_, uri)) = PREDICATE_TYPES.iter().find(|(n, _)| *n == t) {
        return Ok((*uri).to_string());
    }
    match url::Url::parse(t) {
        Ok(u) if !u.cannot_be_a_base() || u.scheme() == "urn" => Ok(t.to_string()),
        _ => Err(ConfigError::PredicateType(t.to_string())),
    }
}

fn attest(a: AttestArgs, env: &dyn Env) -> Result<AttestConfig, ConfigError> {
    let image = parse_image(&a.image)?;
    let predicate_type = predicate_type(&a.predicate_type)?;
    let bytes = std::fs::read(&a.predicate).map_err(|source| ConfigError::PredicateRead {
        path: a.predicate.clone(),
        source,
    })?;
    let predicate: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes)
        .map_err(|e| ConfigError::PredicateJson {
            path: a.predicate.clone(),
            reason: e.to_string(),
        })?;
    let registry = registry_config(a.registry, &image, env)?;
    let key_ref = KeyRef::parse(&a.key)?;
    let key = key_ref.load_private(env)?;
    Ok(AttestConfig {
        image,
        key,
        key_origin: key_ref.origin(),
        predicate_type,
        predicate,
        format: a.format,
        registry,
    })
}

fn verify_attestation(
    a: VerifyAttestationArgs,
    env: &dyn Env,
) -> Result<VerifyAttestationConfig, ConfigError> {
    let image = parse_image(&a.image)?;
    let predicate_type = predicate_type(&a.predicate_type)?;
    let registry = registry_config(a.registry, &image, env)?;
    let keys = verify_keys(&a.key, env)?;
    Ok(VerifyAttestationConfig {
        image,
        keys,
        predicate_type,
        registry,
    })
}

fn generate(a: GenerateArgs, env: &dyn Env) -> Result<GenerateConfig, ConfigError> {
    let prefix = a.output_key_prefix.to_string_lossy().to_string();
    if prefix.trim().is_empty() {
        return Err(ConfigError::EmptyPrefix);
    }
    let key_path = PathBuf::from(format!("{prefix}.key"));
    let pub_path = PathBuf::from(format!("{prefix}.pub"));
    if !a.force {
        for p in [&key_path, &pub_path] {
            // A dangling symlink exists too: never write through it.
            if p.symlink_metadata().is_ok() {
                return Err(ConfigError::KeyFileExists(p.clone()));
            }
        }
    }
    Ok(GenerateConfig {
        key_path,
        pub_path,
        password: env.var(PASSWORD_VAR).map(Secret::new),
    })
}

fn parse_image(s: &str) -> Result<ImageRef, ConfigError> {
    Ok(ImageRef::parse(s.trim())?)
}

/// Parses `k=v` annotations (flag values); a duplicate key is an error.
pub fn parse_annotations(items: &[String]) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for item in items.iter().filter(|i| !i.trim().is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| ConfigError::AnnotationNotPair(item.clone()))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(ConfigError::AnnotationEmptyKey(item.clone()));
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(ConfigError::AnnotationTwice(k.to_string()));
        }
    }
    Ok(out)
}

/// `os/arch[/variant]`, each part as OCI platforms spell them.
fn parse_platform(p: &str) -> Result<String, ConfigError> {
    let p = p.trim();
    let parts: Vec<&str> = p.split('/').collect();
    let ok = (2..=3).contains(&parts.len())
        && parts.iter().all(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        });
    if ok {
        Ok(p.to_string())
    } else {
        Err(ConfigError::Platform(p.to_string()))
    }
}

fn registry_config(
    a: RegistryArgs,
    image: &ImageRef,
    env: &dyn Env,
) -> Result<RegistryConfig, ConfigError> {
    let platform = a
        .platform
        .filter(|p| !p.trim().is_empty())
        .map(|p| parse_platform(&p))
        .transpose()?;
    let timeout = match a.timeout.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) => {
            let d = kit::duration::parse(t).map_err(ConfigError::Timeout)?;
            if d.is_zero() {
                return Err(ConfigError::ZeroTimeout);
            }
            Some(d)
        }
    };
    let explicit = Credentials::from_pair(
        a.username.as_deref(),
        a.password.as_ref(),
        "--username",
        "--password",
    )
    .map_err(ConfigError::CredentialFlags)?;
    let credentials = registry::credentials_for("registry", &image.registry, explicit, env)?;
    Ok(RegistryConfig {
        client: registry::ClientOptions {
            insecure_registries: a
                .insecure_registry
                .into_iter()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .collect(),
            ..Default::default()
        },
        credentials,
        platform,
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations() {
        let a =
            |v: &[&str]| parse_annotations(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            a(&["k=v", "x=a=b", ""]).unwrap(),
            BTreeMap::from([("k".into(), "v".into()), ("x".into(), "a=b".into())])
        );
        assert!(matches!(
            a(&["novalue"]),
            Err(ConfigError::AnnotationNotPair(_))
        ));
        assert!(matches!(
            a(&["=v"]),
            Err(ConfigError::AnnotationEmptyKey(_))
        ));
        assert!(matches!(
            a(&["k=1", "k=2"]),
            Err(ConfigError::AnnotationTwice(_))
        ));
    }

    #[test]
    fn predicate_types_as_cosign_names_them() {
        assert_eq!(
            predicate_type("cyclonedx").unwrap(),
            "https://cyclonedx.org/bom"
        );
        assert_eq!(
            predicate_type("spdxjson").unwrap(),
            "https://spdx.dev/Document"
        );
        assert_eq!(
            predicate_type("vuln").unwrap(),
            "https://cosign.sigstore.dev/attestation/vuln/v1"
        );
        assert_eq!(
            predicate_type("slsaprovenance1").unwrap(),
            "https://slsa.dev/provenance/v1"
        );
        assert_eq!(predicate_type("openvex").unwrap(), "https://openvex.dev/ns");
        assert_eq!(
            predicate_type("https://example.com/p/v1").unwrap(),
            "https://example.com/p/v1"
        );
        for bad in ["cyclonedxx", "", "not a uri", "example.com/p"] {
            assert!(predicate_type(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn platforms() {
        for ok in ["linux/arm64", "linux/arm/v7", "windows/amd64"] {
            assert_eq!(parse_platform(ok).unwrap(), ok);
        }
        for bad in [
            "linux",
            "linux/",
            "/arm64",
            "Linux/arm64",
            "a/b/c/d",
            "linux arm64",
        ] {
            assert!(parse_platform(bad).is_err(), "{bad}");
        }
    }
}
