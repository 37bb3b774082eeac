//! sign-image: thin CLI over the `sign_image` library.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kit::credentials::Credentials;
use kit::env::{Env, ProcessEnv};
use kit::secret::Secret;
use sign_image::cli;

#[derive(Parser)]
#[command(
    name = "sign-image",
    version,
    about = "Sign container image digests the way cosign does, and verify them",
    long_about = "Sign container image digests the way cosign does (key-based, `.sig` tag format), and verify them.\n\n\
A signature written by `sign-image sign` verifies with `cosign verify --key cosign.pub --insecure-ignore-tlog=true IMAGE` \
(cosign 3.x: add --new-bundle-format=false), and `sign-image verify` accepts signatures written by cosign and sigstore-rs.\n\n\
Keys: --key is a file path or env://VAR (the PEM text in a variable). Private keys may be cosign's encrypted \
format (password in COSIGN_PASSWORD; unset means empty) or unencrypted PKCS#8 / EC PRIVATE KEY PEM; ECDSA P-256 only.\n\n\
Exit codes: 0 done; 1 no valid signature (verify); 2 usage or key error, including a wrong password; \
3 registry error (unreachable, auth refused, image not found); 4 timed out.",
    after_help = "Examples:\n  COSIGN_PASSWORD=… sign-image generate-key-pair\n  \
COSIGN_PRIVATE_KEY=\"$(cat cosign.key)\" sign-image sign registry.example/app@sha256:…\n  \
sign-image verify --key cosign.pub registry.example/app:1.0"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sign IMAGE's digest (an index digest for multi-arch images) and push the signature to its `.sig` tag.
    Sign(SignArgs),
    /// Check that IMAGE's digest carries at least one signature valid for the public key.
    Verify(VerifyArgs),
    /// Write a new key pair: <prefix>.key (cosign's encrypted format, mode 0600) and <prefix>.pub.
    GenerateKeyPair(GenerateArgs),
}

#[derive(Args)]
struct RegistryArgs {
    /// Registry host[:port] to speak plain HTTP to (local registries). Repeatable; comma-separated in the variable.
    #[arg(
        long = "insecure-registry",
        env = "INSECURE_REGISTRY",
        value_delimiter = ',',
        value_name = "HOST[:PORT]"
    )]
    insecure_registry: Vec<String>,
    /// With an index: act on this platform's manifest (os/arch[/variant], e.g. linux/arm64) instead of the index.
    #[arg(long, env = "SIGN_IMAGE_PLATFORM", value_name = "OS/ARCH")]
    platform: Option<String>,
    /// Registry username (else REGISTRY_USER, CI_REGISTRY_USER for $CI_REGISTRY, DOCKERHUB_USERNAME, docker config.json).
    #[arg(long, env = "SIGN_IMAGE_REGISTRY_USER")]
    username: Option<String>,
    /// Registry password or token (pairs with --username).
    #[arg(long, env = "SIGN_IMAGE_REGISTRY_PASSWORD", hide_env_values = true)]
    password: Option<Secret>,
}

#[derive(Args)]
struct SignArgs {
    /// Image to sign: a tag is resolved to its digest once; a digest is used as is.
    #[arg(env = "SIGN_IMAGE")]
    image: String,
    /// Private key: a path or env://VAR.
    #[arg(long, env = "SIGN_IMAGE_KEY", default_value = sign_image::keyref::DEFAULT_PRIVATE_KEY, value_name = "REF")]
    key: String,
    /// Also sign each manifest of an index (every platform), as `cosign sign --recursive`.
    #[arg(long, env = "SIGN_IMAGE_RECURSIVE", value_parser = kit::env::parse_bool, num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    recursive: bool,
    /// KEY=VALUE added to the payload's `optional` section. Repeatable; comma-separated in the variable.
    #[arg(
        short = 'a',
        long = "annotation",
        env = "SIGN_IMAGE_ANNOTATIONS",
        value_delimiter = ',',
        value_name = "KEY=VALUE"
    )]
    annotations: Vec<String>,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args)]
struct VerifyArgs {
    /// Image to verify (tag or digest; a tag is resolved to its digest).
    #[arg(env = "SIGN_IMAGE")]
    image: String,
    /// Public key: a path (cosign.pub) or env://VAR.
    #[arg(long, env = "SIGN_IMAGE_PUBLIC_KEY", default_value = sign_image::keyref::DEFAULT_PUBLIC_KEY, value_name = "REF")]
    key: String,
    /// KEY=VALUE the signed payload must carry in `optional` (as `cosign verify -a`). Repeatable.
    #[arg(
        short = 'a',
        long = "annotation",
        env = "SIGN_IMAGE_ANNOTATIONS",
        value_delimiter = ',',
        value_name = "KEY=VALUE"
    )]
    annotations: Vec<String>,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args)]
struct GenerateArgs {
    /// Write <PREFIX>.key and <PREFIX>.pub (as cosign's flag of the same name).
    #[arg(
        long,
        env = "SIGN_IMAGE_KEY_PREFIX",
        default_value = "cosign",
        value_name = "PREFIX"
    )]
    output_key_prefix: std::path::PathBuf,
    /// Overwrite existing <PREFIX>.key / <PREFIX>.pub (without it, existing files are never replaced).
    #[arg(long, env = "SIGN_IMAGE_FORCE", value_parser = kit::env::parse_bool, num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    force: bool,
}

impl RegistryArgs {
    fn into_options(self) -> kit::JobResult<sign_image::ops::RegistryOptions> {
        let credentials = Credentials::from_pair(
            self.username.as_deref(),
            self.password.as_ref(),
            "--username",
            "--password",
        )?;
        Ok(sign_image::ops::RegistryOptions {
            client: registry::ClientOptions {
                insecure_registries: self
                    .insecure_registry
                    .into_iter()
                    .filter(|h| !h.trim().is_empty())
                    .collect(),
                ..Default::default()
            },
            credentials,
            platform: self.platform.filter(|p| !p.trim().is_empty()),
        })
    }
}

fn run(cli: Cli, env: &dyn Env) -> kit::JobResult<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| kit::JobError::usage(format!("cannot start the async runtime: {e}")))?;
    match cli.command {
        Command::Sign(a) => {
            let opts = sign_image::ops::SignOptions {
                image: a.image,
                key: sign_image::keyref::KeyRef::parse(&a.key)?,
                recursive: a.recursive,
                annotations: sign_image::ops::parse_annotations(&a.annotations)?,
                registry: a.registry.into_options()?,
            };
            rt.block_on(cli::sign(&opts, env))
        }
        Command::Verify(a) => {
            let opts = sign_image::ops::VerifyOptions {
                image: a.image,
                key: sign_image::keyref::KeyRef::parse(&a.key)?,
                annotations: sign_image::ops::parse_annotations(&a.annotations)?,
                registry: a.registry.into_options()?,
            };
            rt.block_on(cli::verify(&opts, env))
        }
        Command::GenerateKeyPair(a) => cli::generate_key_pair(
            &sign_image::ops::GenerateOptions {
                output_key_prefix: a.output_key_prefix,
                force: a.force,
            },
            env,
        ),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    kit::exit::finish("sign-image", run(cli, &ProcessEnv))
}
