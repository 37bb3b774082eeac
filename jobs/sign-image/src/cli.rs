//! The flags. Every flag and positional also reads the environment variable
//! shown; booleans are plain `bool`s that `kit::cli::parse` normalizes
//! (`--force`, `--force=false`, `SIGN_IMAGE_FORCE=true|false|1|0|yes|no`).
//! Nothing is validated here: that is [`crate::config`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use kit::secret::Secret;

use crate::keyref::{DEFAULT_PRIVATE_KEY, DEFAULT_PUBLIC_KEY};

#[derive(Debug, Parser)]
#[command(
    name = "sign-image",
    version,
    about = "Sign container image digests the way cosign does, and verify them",
    long_about = "Sign container image digests the way cosign does (key-based; cosign's `.sig` tag format, cosign 3's Sigstore bundle format, or both), and verify them.\n\n\
A signature written by `sign-image sign` verifies with `cosign verify --key cosign.pub --insecure-ignore-tlog=true IMAGE` \
(cosign 2.x and 3.x; a bundle with cosign 2.x also needs --new-bundle-format and --trusted-root), and `sign-image verify` accepts \
signatures in either format written by cosign and sigstore-rs, by any of its --key keys, when they were made for the repository \
being verified (see --identity, --allow-any-identity).\n\n\
Keys: --key is a file path or env://VAR (the PEM text in a variable). Private keys may be cosign's encrypted \
format (password in COSIGN_PASSWORD; unset means empty) or unencrypted PKCS#8 / EC PRIVATE KEY PEM; ECDSA P-256 only.\n\n\
Exit codes: 0 done; 1 no valid signature (verify); 2 usage or key error, including a wrong password; \
3 registry error (unreachable, auth refused, image not found); 4 timed out.",
    after_help = "Examples:\n  COSIGN_PASSWORD=… sign-image generate-key-pair\n  \
COSIGN_PRIVATE_KEY=\"$(cat cosign.key)\" sign-image sign registry.example/app@sha256:…\n  \
sign-image verify --key cosign.pub registry.example/app:1.0"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign IMAGE's digest (an index digest for multi-arch images): the signature goes to its `.sig` tag (--format legacy) and/or as a Sigstore bundle referrer (--format bundle).
    Sign(SignArgs),
    /// Check that IMAGE's digest carries at least one signature (either format) valid for one of the public keys, made for IMAGE's repository.
    Verify(VerifyArgs),
    /// Write a new key pair: <prefix>.key (cosign's encrypted format, mode 0600) and <prefix>.pub.
    GenerateKeyPair(GenerateArgs),
    /// Attach a signed in-toto attestation (--predicate of --type) to IMAGE's digest, as `cosign attest --key` (its `.att` tag and/or cosign 3's bundle referrer, --format).
    Attest(AttestArgs),
    /// Check that IMAGE's digest carries an attestation of --type signed by one of the keys (either format), as `cosign verify-attestation`.
    VerifyAttestation(VerifyAttestationArgs),
}

/// Registry access, shared by sign and verify.
#[derive(Debug, clap::Args)]
pub struct RegistryArgs {
    /// Registry host[:port] to speak plain HTTP to (local registries). Repeatable; comma-separated in the variable.
    #[arg(
        long = "insecure-registry",
        env = "INSECURE_REGISTRY",
        value_delimiter = ',',
        value_name = "HOST[:PORT]"
    )]
    pub insecure_registry: Vec<String>,
    /// With an index: act on this platform's manifest (os/arch[/variant], e.g. linux/arm64) instead of the index.
    #[arg(long, env = "SIGN_IMAGE_PLATFORM", value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// Registry username (else DOCKERHUB_USERNAME for Docker Hub, REGISTRY_USER, CI_REGISTRY_USER for $CI_REGISTRY, docker config.json).
    #[arg(long, env = "SIGN_IMAGE_REGISTRY_USER")]
    pub username: Option<String>,
    /// Registry password or token (pairs with --username).
    #[arg(long, env = "SIGN_IMAGE_REGISTRY_PASSWORD", hide_env_values = true)]
    pub password: Option<Secret>,
    /// Give up after this long (e.g. 90s, 5m) with exit 4 [default: no limit for the whole job; each request is bounded].
    #[arg(long, env = "SIGN_IMAGE_TIMEOUT", value_name = "DURATION")]
    pub timeout: Option<String>,
}

/// Which signature format(s) `sign` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SignFormat {
    // cosign's `.sig` tag (simple-signing payload).
    Legacy,
    // cosign 3's Sigstore bundle v0.3, as an OCI referrer.
    Bundle,
    // Both: every verifier finds its format.
    Both,
}

impl SignFormat {
    pub fn legacy(self) -> bool {
        matches!(self, SignFormat::Legacy | SignFormat::Both)
    }
    pub fn bundle(self) -> bool {
        matches!(self, SignFormat::Bundle | SignFormat::Both)
    }
}

impl std::fmt::Display for SignFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignFormat::Legacy => "legacy",
            SignFormat::Bundle => "bundle",
            SignFormat::Both => "both",
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// Image to sign: a tag is resolved to its digest once; a digest is used as is.
    #[arg(env = "SIGN_IMAGE")]
    pub image: String,
    /// Private key: a path or env://VAR.
    #[arg(long, env = "SIGN_IMAGE_KEY", default_value = DEFAULT_PRIVATE_KEY, value_name = "REF")]
    pub key: String,
    /// Signature format: legacy = cosign's `sha256-<hex>.sig` tag (read by cosign 2 and 3); bundle = cosign 3's Sigstore bundle stored as an OCI referrer (read by cosign 3, and cosign 2 with --new-bundle-format); both = each. `sign-image verify` reads either without a flag.
    #[arg(
        long,
        env = "SIGN_IMAGE_FORMAT",
        value_enum,
        default_value_t = SignFormat::Legacy,
        value_name = "FORMAT"
    )]
    pub format: SignFormat,
    /// Also sign each manifest of an index (every platform), as `cosign sign --recursive`.
    #[arg(long, env = "SIGN_IMAGE_RECURSIVE")]
    pub recursive: bool,
    /// KEY=VALUE added to the payload's `optional` section. Repeatable; comma-separated in the variable.
    #[arg(
        short = 'a',
        long = "annotation",
        env = "SIGN_IMAGE_ANNOTATIONS",
        value_delimiter = ',',
        value_name = "KEY=VALUE"
    )]
    pub annotations: Vec<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Image to verify (tag or digest; a tag is resolved to its digest).
    #[arg(env = "SIGN_IMAGE")]
    pub image: String,
    /// Public key: a path (cosign.pub) or env://VAR. Repeatable (comma-separated in the variable): a signature by any one of the keys verifies (key rotation: the new key and the old one); the log says which key and which format verified.
    #[arg(
        long,
        env = "SIGN_IMAGE_PUBLIC_KEY",
        default_value = DEFAULT_PUBLIC_KEY,
        value_delimiter = ',',
        value_name = "REF"
    )]
    pub key: Vec<String>,
    /// KEY=VALUE the signed payload must carry in `optional` (as `cosign verify -a`). Repeatable.
    #[arg(
        short = 'a',
        long = "annotation",
        env = "SIGN_IMAGE_ANNOTATIONS",
        value_delimiter = ',',
        value_name = "KEY=VALUE"
    )]
    pub annotations: Vec<String>,
    /// Also accept signatures made for REPO (the name the image was signed under, e.g. before a mirror copied it). Repeatable; comma-separated in the variable.
    #[arg(
        long = "identity",
        env = "SIGN_IMAGE_IDENTITIES",
        value_delimiter = ',',
        value_name = "REPO"
    )]
    pub identities: Vec<String>,
    /// Accept a valid signature whatever repository its payload names (cosign's default). Lets a signature made for another repository of the same digest pass.
    #[arg(long, env = "SIGN_IMAGE_ALLOW_ANY_IDENTITY")]
    pub allow_any_identity: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Write <PREFIX>.key and <PREFIX>.pub (as cosign's flag of the same name).
    #[arg(
        long,
        env = "SIGN_IMAGE_KEY_PREFIX",
        default_value = "cosign",
        value_name = "PREFIX"
    )]
    pub output_key_prefix: PathBuf,
    /// Overwrite existing <PREFIX>.key / <PREFIX>.pub (without it, existing files are never replaced).
    #[arg(long, env = "SIGN_IMAGE_FORCE")]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct AttestArgs {
    /// Image to attest (tag or digest; a tag is resolved to its digest once).
    #[arg(env = "SIGN_IMAGE")]
    pub image: String,
    /// Private key: a path or env://VAR.
    #[arg(long, env = "SIGN_IMAGE_KEY", default_value = DEFAULT_PRIVATE_KEY, value_name = "REF")]
    pub key: String,
    /// The predicate: a JSON file (a CycloneDX SBOM, an SPDX JSON document, a scan result, …), embedded in the signed statement as is.
    #[arg(long, env = "SIGN_IMAGE_PREDICATE", value_name = "FILE")]
    pub predicate: PathBuf,
    /// Predicate type, as cosign names it: cyclonedx, spdxjson, vuln, slsaprovenance1, openvex (or spdx, slsaprovenance, slsaprovenance02, link, custom), or a URI.
    #[arg(long = "type", env = "SIGN_IMAGE_PREDICATE_TYPE", value_name = "TYPE")]
    pub predicate_type: String,
    /// Attestation format: legacy = cosign 2's `sha256-<hex>.att` tag (read by cosign 2 and 3); bundle = cosign 3's Sigstore bundle as an OCI referrer; both = each. `verify-attestation` reads either.
    #[arg(
        long,
        env = "SIGN_IMAGE_FORMAT",
        value_enum,
        default_value_t = SignFormat::Legacy,
        value_name = "FORMAT"
    )]
    pub format: SignFormat,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, clap::Args)]
pub struct VerifyAttestationArgs {
    /// Image whose attestation to verify (tag or digest).
    #[arg(env = "SIGN_IMAGE")]
    pub image: String,
    /// Public key: a path or env://VAR. Repeatable (comma-separated in the variable): an attestation signed by any one of the keys verifies.
    #[arg(
        long,
        env = "SIGN_IMAGE_PUBLIC_KEY",
        default_value = DEFAULT_PUBLIC_KEY,
        value_delimiter = ',',
        value_name = "REF"
    )]
    pub key: Vec<String>,
    /// Predicate type to look for: a cosign type name (cyclonedx, spdxjson, vuln, slsaprovenance1, openvex, …) or a URI.
    #[arg(long = "type", env = "SIGN_IMAGE_PREDICATE_TYPE", value_name = "TYPE")]
    pub predicate_type: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
}
