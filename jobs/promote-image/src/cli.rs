//! Command-line flags. Every flag also reads the environment variable shown
//! in `--help`, so GitLab CI variables configure the job.

use std::path::PathBuf;

use clap::Parser;
use kit::secret::Secret;

const AFTER_HELP: &str = "\
Examples:
  # GitLab registry (job token) -> Docker Hub (access token), tagged 1.4.2 and latest
  DOCKERHUB_USERNAME=acme DOCKERHUB_TOKEN=$HUB_TOKEN \\
    promote-image $CI_REGISTRY_IMAGE/staging@$BUILD_DIGEST docker.io/acme/sensor-app:1.4.2 --tag latest

  # Within one registry: blobs are mounted, nothing is uploaded
  promote-image registry.example.com/staging/app:abc123 registry.example.com/prod/app --tag v2

  # The image only, without its signatures, attestations and other referrers
  promote-image $SRC_IMAGE registry.example.com/prod/app:1.0 --with-signatures=false

Output: DST@sha256:... on stdout, PROMOTED_IMAGE and PROMOTED_DIGEST in the dotenv file.
Exit codes: 0 done (or already there), 2 bad flag, image reference or --platform not in
SRC, 3 registry or network error after retries (missing image, auth, 4xx/5xx, credentials
refused to another origin), 4 a request timed out.";

/// Copy an image's digest, byte for byte, to another registry or repository.
///
/// SRC is resolved to its digest once. The index (or single manifest), every
/// platform manifest (attestation manifests included) and every config and
/// layer blob are copied; the manifest bytes are not rewritten, so DST's
/// digest equals SRC's. Blobs already at DST are skipped (HEAD first), blobs
/// are mounted across repositories of one registry, layers stream with
/// bounded memory. Manifests and tags are pushed only after every blob is in
/// place, so an interrupted run never leaves a tag on a broken image;
/// re-running a finished promotion uploads nothing. Signatures, attestations
/// and other referrers of the digest come along (`--with-signatures`).
#[derive(Debug, Parser)]
#[command(name = "promote-image", version, after_help = AFTER_HELP)]
pub struct Args {
    /// Image to copy: `registry/repo:tag` or `registry/repo@sha256:…` (`alpine` means Docker Hub).
    #[arg(env = "PROMOTE_SRC", value_name = "SRC")]
    pub src: String,

    /// Where to copy it: `registry/repo[:tag]` (no digest: it is SRC's).
    #[arg(env = "PROMOTE_DST", value_name = "DST")]
    pub dst: String,

    /// Extra tag at DST pointing at the same digest (repeatable; comma-separated in the variable).
    #[arg(
        short = 't',
        long = "tag",
        env = "PROMOTE_TAGS",
        value_delimiter = ',',
        value_name = "TAG"
    )]
    pub tags: Vec<String>,

    /// Username for SRC's registry (default: discovered, see README).
    #[arg(long, env = "PROMOTE_SRC_USERNAME", value_name = "USER")]
    pub src_username: Option<String>,

    /// Password or token for SRC's registry. Prefer the variable: argv is visible to other processes.
    #[arg(
        long,
        env = "PROMOTE_SRC_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub src_password: Option<Secret>,

    /// Username for DST's registry (for docker.io also DOCKERHUB_USERNAME).
    #[arg(long, env = "PROMOTE_DST_USERNAME", value_name = "USER")]
    pub dst_username: Option<String>,

    /// Password or token for DST's registry (for docker.io also DOCKERHUB_TOKEN).
    #[arg(
        long,
        env = "PROMOTE_DST_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub dst_password: Option<Secret>,

    /// Registry spoken to over plain HTTP (repeatable; comma-separated in the variable).
    #[arg(
        long = "insecure-registry",
        env = "INSECURE_REGISTRY",
        value_delimiter = ',',
        value_name = "HOST[:PORT]"
    )]
    pub insecure_registries: Vec<String>,

    /// Platforms SRC must contain, e.g. `linux/arm64,linux/amd64`; all platforms are copied regardless.
    #[arg(
        long,
        env = "PROMOTE_PLATFORM",
        value_delimiter = ',',
        value_name = "OS/ARCH"
    )]
    pub platform: Vec<String>,

    /// Dotenv file for later jobs (`artifacts:reports:dotenv`); empty to skip.
    #[arg(
        long,
        env = "PROMOTE_DOTENV",
        default_value = "promote.env",
        value_name = "FILE"
    )]
    pub dotenv: PathBuf,

    /// Also copy what belongs to the digest [default: true]: cosign's `sha256-<hex>.sig` and
    /// `.att` tags and every OCI 1.1 referrer (cosign 3 bundles, attestations, SBOMs) of the
    /// digest and of each platform manifest, with their blobs and their own referrers, so a
    /// digest signed at SRC verifies at DST unchanged. Referrers go through DST's referrers API
    /// where it has one, else the referrers tag schema (`sha256-<hex>` index). `=false` copies
    /// the image only.
    #[arg(
        long,
        env = "PROMOTE_WITH_SIGNATURES",
        action = clap::ArgAction::Set,
        value_parser = kit::env::parse_bool,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "true",
        hide_default_value = true,
        value_name = "BOOL"
    )]
    pub with_signatures: bool,

    /// Blobs copied at the same time.
    #[arg(long, env = "PROMOTE_PARALLEL", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32), value_name = "N")]
    pub parallel: u16,

    /// Tries per request (first included) on connect errors, resets, 429, 502, 503, 504.
    #[arg(long, env = "PROMOTE_RETRIES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20), value_name = "N")]
    pub retries: u32,

    /// Longest wait for one request (plus the time its bytes take at 512 kB/s); past it the
    /// request is retried, and when tries run out the job exits 4. E.g. `90s`, `5m`.
    #[arg(
        long,
        env = "PROMOTE_REQUEST_TIMEOUT",
        default_value = "2m",
        value_name = "DURATION"
    )]
    pub request_timeout: String,
}
