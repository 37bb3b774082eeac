//! The three commands: sign, verify, generate-key-pair.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kit::credentials::Credentials;
use kit::env::Env;
use kit::joblog;
use kit::reference::{Digest, ImageRef};
use kit::secret::Secret;
use kit::{JobError, JobResult};
use registry::{ClientOptions, Contents, Registry, Stats};

use crate::keyref::{KeyRef, PASSWORD_VAR};
use crate::keys::{PrivateKey, PublicKey};
use crate::payload::{SIGNATURE_TYPE, SimpleSigning};
use crate::sigtag::{
    self, Appended, MAX_PAYLOAD_BYTES, OCI_MANIFEST_MEDIA_TYPE, SigManifest, signature_tag,
};

/// Registry access shared by sign and verify.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    pub client: ClientOptions,
    /// Explicit credentials (`--username`/`--password`); else the kit's discovery.
    pub credentials: Option<Credentials>,
    /// `os/arch[/variant]`: sign or verify that platform's manifest of an index.
    pub platform: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SignOptions {
    pub image: String,
    pub key: KeyRef,
    pub recursive: bool,
    pub annotations: BTreeMap<String, String>,
    pub registry: RegistryOptions,
}

/// One digest handled by `sign`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub digest: Digest,
    /// `false` when an identical signature by this key was already there.
    pub added: bool,
}

#[derive(Debug, Clone)]
pub struct SignReport {
    pub image: ImageRef,
    pub signed: Vec<Signed>,
    pub stats: Stats,
}

/// Parses `k=v` annotations (flag values); a duplicate key is an error.
pub fn parse_annotations(items: &[String]) -> JobResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items.iter().filter(|i| !i.trim().is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| JobError::usage(format!("--annotation {item:?} is not KEY=VALUE")))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(JobError::usage(format!(
                "--annotation {item:?} has an empty key"
            )));
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(JobError::usage(format!(
                "--annotation key {k:?} is given twice"
            )));
        }
    }
    Ok(out)
}

fn parse_image(s: &str) -> JobResult<ImageRef> {
    Ok(ImageRef::parse(s.trim())?)
}

fn connect(image: &ImageRef, opts: &RegistryOptions, env: &dyn Env) -> JobResult<Registry> {
    let creds =
        registry::credentials_for("registry", &image.registry, opts.credentials.clone(), env)?;
    Registry::for_image(image, creds, &opts.client, env)
}

/// Resolves IMAGE to the digest to sign or verify: its own digest, or with
/// `--platform` the matching manifest of its index. Also returns the
/// platform manifests (for `--recursive`).
async fn resolve(
    reg: &Registry,
    image: &ImageRef,
    platform: Option<&str>,
    want_children: bool,
) -> JobResult<(Digest, Vec<Digest>)> {
    let resolved = reg.resolve_image(image).await.map_err(|e| {
        if image.digest.is_none() && image.tag.is_some() {
            e.context(format!("resolving tag {} to a digest", image.pinned()))
        } else {
            e
        }
    })?;
    joblog::info(format!(
        "{} resolves to {} ({})",
        image, resolved.digest, resolved.media_type
    ));
    let is_index = matches!(
        resolved.media_type.as_str(),
        registry::manifest::OCI_INDEX | registry::manifest::DOCKER_MANIFEST_LIST
    );
    if platform.is_none() && !(want_children && is_index) {
        return Ok((resolved.digest, Vec::new()));
    }
    let digest_str = resolved.digest.to_string();
    let m = reg
        .manifest(&image.repository, &digest_str)
        .await?
        .ok_or_else(|| {
            JobError::remote(format!(
                "{}@{digest_str} disappeared while reading it",
                image.name()
            ))
        })?;
    let entries = match m.contents()? {
        Contents::Index(entries) => entries,
        Contents::Image { .. } => {
            if let Some(p) = platform {
                joblog::info(format!(
                    "{image} is a single-platform image; --platform {p} is not needed"
                ));
            }
            return Ok((resolved.digest, Vec::new()));
        }
    };
    if let Some(p) = platform {
        let p = p.trim();
        let found = entries
            .iter()
            .find(|e| e.platform.as_deref() == Some(p) && !e.attestation);
        return match found {
            Some(e) => {
                joblog::info(format!("platform {p}: {}", e.descriptor.digest));
                Ok((e.descriptor.digest.clone(), Vec::new()))
            }
            None => {
                let have: Vec<&str> = entries
                    .iter()
                    .filter(|e| !e.attestation)
                    .filter_map(|e| e.platform.as_deref())
                    .collect();
                Err(JobError::usage(format!(
                    "{image} has no {p} manifest (it has: {})",
                    have.join(", ")
                )))
            }
        };
    }
    // cosign --recursive signs every manifest of the index (attestations included).
    Ok((
        resolved.digest,
        entries.into_iter().map(|e| e.descriptor.digest).collect(),
    ))
}

/// `sign-image sign`.
pub async fn sign(opts: &SignOptions, env: &dyn Env) -> JobResult<SignReport> {
    let image = parse_image(&opts.image)?;
    // The key is checked before any network traffic.
    let key = opts.key.load_private(env)?;
    let public = key.public();
    joblog::info(format!(
        "signing key {} ({})",
        opts.key.origin(),
        public.fingerprint()
    ));
    let reg = connect(&image, &opts.registry, env)?;
    let (digest, children) = resolve(
        &reg,
        &image,
        opts.registry.platform.as_deref(),
        opts.recursive,
    )
    .await?;
    let mut signed = Vec::new();
    for d in std::iter::once(digest).chain(children) {
        let added = sign_one(&reg, &image, &d, &key, &public, &opts.annotations).await?;
        signed.push(Signed { digest: d, added });
    }
    Ok(SignReport {
        image,
        signed,
        stats: reg.stats(),
    })
}

async fn sign_one(
    reg: &Registry,
    image: &ImageRef,
    digest: &Digest,
    key: &PrivateKey,
    public: &PublicKey,
    annotations: &BTreeMap<String, String>,
) -> JobResult<bool> {
    let repo = &image.repository;
    let payload = SimpleSigning::new(image, digest, annotations).to_bytes();
    let signature = key.sign_base64(&payload);
    let tag = signature_tag(digest);
    let existing = match reg.manifest(repo, &tag).await? {
        Some(m) => Some(SigManifest::parse(&m.bytes).map_err(|e| {
            JobError::remote(format!(
                "{}:{tag}: {e}; refusing to overwrite it",
                image.name()
            ))
        })?),
        None => None,
    };
    let before = existing.as_ref().map_or(0, |m| m.layers.len());
    match SigManifest::append(existing, &payload, &signature, public) {
        Appended::Duplicate => {
            joblog::info(format!(
                "{}@{digest}: already signed by this key with the same payload; nothing to do",
                image.name()
            ));
            Ok(false)
        }
        Appended::New { manifest } => {
            // The payload is new with each new signature: no HEAD first
            // (POST + PUT). The config is the constant `{}`: one mount
            // request when the repository already has it (any earlier
            // signature put it there), else POST + PUT.
            reg.push_new_blob(repo, payload).await?;
            reg.push_shared_blob(repo, sigtag::CONFIG).await?;
            reg.push_manifest(repo, &tag, OCI_MANIFEST_MEDIA_TYPE, manifest)
                .await?;
            joblog::info(format!(
                "{}@{digest}: signature added to {}:{tag} ({} before)",
                image.name(),
                image.name(),
                before
            ));
            Ok(true)
        }
    }
}

#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub image: String,
    pub key: KeyRef,
    /// `k=v` that each accepted payload's `optional` must carry.
    pub annotations: BTreeMap<String, String>,
    pub registry: RegistryOptions,
}

/// Why one signature layer was or was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerVerdict {
    pub layer_digest: String,
    /// `None` when the signature verified; else the reason it did not.
    pub rejected: Option<String>,
}

#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub image: ImageRef,
    pub digest: Digest,
    /// The payloads whose signatures verified, as stored.
    pub verified: Vec<SimpleSigning>,
    pub verdicts: Vec<LayerVerdict>,
    pub stats: Stats,
}

/// `sign-image verify`: `Ok` when at least one signature verifies;
/// exit 1 when none does; exit 3 when the registry cannot be read.
pub async fn verify(opts: &VerifyOptions, env: &dyn Env) -> JobResult<VerifyReport> {
    let image = parse_image(&opts.image)?;
    let key = opts.key.load_public(env)?;
    joblog::info(format!(
        "verification key {} ({})",
        opts.key.origin(),
        key.fingerprint()
    ));
    let reg = connect(&image, &opts.registry, env)?;
    let (digest, _) = resolve(&reg, &image, opts.registry.platform.as_deref(), false).await?;
    let report = verify_digest(&reg, &image, &digest, &key, &opts.annotations).await?;
    if report.verified.is_empty() {
        let reasons: Vec<String> = report
            .verdicts
            .iter()
            .filter_map(|v| {
                v.rejected
                    .as_ref()
                    .map(|r| format!("{}: {r}", short(&v.layer_digest)))
            })
            .collect();
        return Err(JobError::policy(format!(
            "{}@{digest}: {} signature(s) found, none valid for key {}: {}",
            image.name(),
            report.verdicts.len(),
            key.fingerprint(),
            reasons.join("; ")
        )));
    }
    Ok(report)
}

fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

async fn verify_digest(
    reg: &Registry,
    image: &ImageRef,
    digest: &Digest,
    key: &PublicKey,
    required: &BTreeMap<String, String>,
) -> JobResult<VerifyReport> {
    let repo = &image.repository;
    let tag = signature_tag(digest);
    let Some(m) = reg.manifest(repo, &tag).await? else {
        return Err(JobError::policy(format!(
            "{}@{digest} has no signatures: {}:{tag} does not exist (sign it with `sign-image sign`)",
            image.name(),
            image.name()
        )));
    };
    let sig = SigManifest::parse(&m.bytes)
        .map_err(|e| JobError::policy(format!("{}:{tag}: {e}", image.name())))?;
    if sig.layers.is_empty() {
        return Err(JobError::policy(format!(
            "{}@{digest} has no signatures: {}:{tag} has no layers",
            image.name(),
            image.name()
        )));
    }
    if sig.layers.len() > sigtag::MAX_SIGNATURE_LAYERS {
        return Err(JobError::policy(format!(
            "{}:{tag} has {} signature layers, more than the {} sign-image checks; clean up the .sig tag",
            image.name(),
            sig.layers.len(),
            sigtag::MAX_SIGNATURE_LAYERS
        )));
    }
    let mut verified = Vec::new();
    let mut verdicts = Vec::new();
    // A payload blob that cannot be read does not sink the others: it only
    // matters (exit 3) when no other signature verifies.
    let mut unreadable: Option<JobError> = None;
    for layer in &sig.layers {
        let rejected = match check_layer(reg, repo, layer, digest, key, required).await {
            Ok(Ok(payload)) => {
                verified.push(payload);
                None
            }
            Ok(Err(why)) => Some(why),
            Err(e) => {
                let why = format!("payload cannot be read: {}", e.message);
                unreadable.get_or_insert(e);
                Some(why)
            }
        };
        verdicts.push(LayerVerdict {
            layer_digest: layer.digest.clone(),
            rejected,
        });
    }
    if verified.is_empty()
        && let Some(e) = unreadable
    {
        return Err(e);
    }
    Ok(VerifyReport {
        image: image.clone(),
        digest: digest.clone(),
        verified,
        verdicts,
        stats: reg.stats(),
    })
}

/// Outer error: the registry failed (exit 3). Inner error: this layer is not
/// a valid signature for the key and digest (the reason).
async fn check_layer(
    reg: &Registry,
    repo: &str,
    layer: &sigtag::Layer,
    digest: &Digest,
    key: &PublicKey,
    required: &BTreeMap<String, String>,
) -> JobResult<Result<SimpleSigning, String>> {
    if !layer.is_simplesigning() {
        return Ok(Err(format!(
            "layer media type {} is not a simple-signing payload",
            layer.media_type
        )));
    }
    let Some(signature) = layer.signature() else {
        return Ok(Err(format!(
            "no {} annotation",
            sigtag::SIGNATURE_ANNOTATION
        )));
    };
    let Ok(layer_digest) = layer.digest.parse::<Digest>() else {
        return Ok(Err("layer digest is malformed".into()));
    };
    if layer.size as usize > MAX_PAYLOAD_BYTES {
        return Ok(Err(format!(
            "payload of {} bytes is larger than {MAX_PAYLOAD_BYTES}",
            layer.size
        )));
    }
    let payload = reg
        .fetch_blob(repo, &layer_digest, MAX_PAYLOAD_BYTES)
        .await?;
    if !key.verify_base64(&payload, signature) {
        return Ok(Err("signature does not verify with this key".into()));
    }
    let parsed = match SimpleSigning::parse(&payload) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    if parsed.critical.kind != SIGNATURE_TYPE {
        return Ok(Err(format!(
            "payload type is {:?}, not {SIGNATURE_TYPE:?}",
            parsed.critical.kind
        )));
    }
    if parsed.critical.image.docker_manifest_digest != digest.to_string() {
        return Ok(Err(format!(
            "signed payload names digest {}, not {digest} (a signature copied from another image)",
            parsed.critical.image.docker_manifest_digest
        )));
    }
    for (k, v) in required {
        let got = parsed.optional.as_ref().and_then(|o| o.get(k));
        let ok = match got {
            Some(serde_json::Value::String(s)) => s == v,
            Some(other) => serde_json::to_string(other).ok().as_deref() == Some(v.as_str()),
            None => false,
        };
        if !ok {
            return Ok(Err(format!("payload lacks annotation {k}={v}")));
        }
    }
    Ok(Ok(parsed))
}

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Files are `<prefix>.key` and `<prefix>.pub`.
    pub output_key_prefix: PathBuf,
    pub force: bool,
}

/// `sign-image generate-key-pair`: writes `<prefix>.key` (cosign's encrypted
/// format, mode 0600) and `<prefix>.pub`. Refuses to overwrite either file
/// unless `force`. Password from `COSIGN_PASSWORD` (unset = empty).
pub fn generate_key_pair(
    opts: &GenerateOptions,
    env: &dyn Env,
) -> JobResult<(PathBuf, PathBuf, PublicKey)> {
    let prefix = opts.output_key_prefix.to_string_lossy().to_string();
    if prefix.is_empty() {
        return Err(JobError::usage("--output-key-prefix is empty"));
    }
    let key_path = PathBuf::from(format!("{prefix}.key"));
    let pub_path = PathBuf::from(format!("{prefix}.pub"));
    if !opts.force {
        for p in [&key_path, &pub_path] {
            if p.exists() {
                return Err(JobError::usage(format!(
                    "{} already exists; refusing to overwrite a key (use --force, or another --output-key-prefix)",
                    p.display()
                )));
            }
        }
    }
    let password = match env.var(PASSWORD_VAR) {
        Some(p) => Secret::new(p),
        None => {
            joblog::warn(format!(
                "{PASSWORD_VAR} is not set: the private key is encrypted with an empty password"
            ));
            Secret::default()
        }
    };
    let key = PrivateKey::generate()?;
    let encrypted = key.to_encrypted_pem(&password)?;
    write_private(&key_path, encrypted.as_bytes())?;
    kit::fsutil::write_atomic(&pub_path, key.public().to_pem().as_bytes())?;
    Ok((key_path, pub_path, key.public()))
}

/// Writes a private key file readable by its owner only, atomically.
fn write_private(path: &Path, bytes: &[u8]) -> JobResult<()> {
    use std::io::Write as _;
    let fail = |e: &dyn std::fmt::Display| {
        JobError::usage(format!("cannot write {}: {e}", path.display()))
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // tempfile creates files with mode 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(".cosign-key.")
        .tempfile_in(dir)
        .map_err(|e| fail(&e))?;
    tmp.write_all(bytes).map_err(|e| fail(&e))?;
    tmp.as_file().sync_all().map_err(|e| fail(&e))?;
    tmp.persist(path).map_err(|e| fail(&e.error))?;
    Ok(())
}
