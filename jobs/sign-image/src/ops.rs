//! The work of the commands against the registry: sign and
//! generate-key-pair here, verify in [`crate::verify`] (re-exported).
//! Nothing here prints results (see [`crate::report`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kit::env::Env;
use kit::joblog;
use kit::reference::{Digest, ImageRef};
use kit::secret::Secret;
use registry::{Contents, Descriptor, Registry, Stats};

use crate::bundle;
use crate::config::{AttestConfig, GenerateConfig, RegistryConfig, SignConfig};
use crate::error::Error;
use crate::keyref::PASSWORD_VAR;
use crate::keys::{PrivateKey, PublicKey};
use crate::payload::SimpleSigning;
use crate::sigtag::{self, Appended, OCI_MANIFEST_MEDIA_TYPE, SigManifest, signature_tag};
pub use crate::verify::{
    Format, Refusal, Rejection, Verdict, Verified, VerifiedPayload, VerifyReport, verify,
    verify_attestation,
};

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

pub(crate) fn connect(
    image: &ImageRef,
    opts: &RegistryConfig,
    env: &dyn Env,
) -> Result<Registry, Error> {
    // `registry::Error::from` also takes the kit's setup errors (CA bundles).
    let reg = Registry::for_image(image, opts.credentials.clone(), &opts.client, env)
        .map_err(registry::Error::from)?;
    Ok(reg)
}

/// Resolves IMAGE to the digest to sign or verify: its own digest, or with
/// `--platform` the matching manifest of its index. Also returns the
/// platform manifests (for `--recursive`).
pub(crate) async fn resolve(
    reg: &Registry,
    image: &ImageRef,
    platform: Option<&str>,
    want_children: bool,
) -> Result<(Descriptor, Vec<Descriptor>), Error> {
    let resolved = reg.resolve_image(image).await.map_err(|e| {
        if image.digest.is_none() && image.tag.is_some() {
            Error::ResolveTag {
                image: image.pinned(),
                source: Box::new(e),
            }
        } else {
            Error::from(e)
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
    let own = Descriptor {
        media_type: resolved.media_type.clone(),
        digest: resolved.digest.clone(),
        size: resolved.size,
    };
    if platform.is_none() && !(want_children && is_index) {
        return Ok((own, Vec::new()));
    }
    let digest_str = resolved.digest.to_string();
    let m = reg
        .manifest(&image.repository, &digest_str)
        .await?
        .ok_or_else(|| Error::Disappeared {
            image: format!("{}@{digest_str}", image.name()),
        })?;
    let entries = match m.contents()? {
        Contents::Index(entries) => entries,
        Contents::Image { .. } => {
            if let Some(p) = platform {
                joblog::info(format!(
                    "{image} is a single-platform image; --platform {p} is not needed"
                ));
            }
            return Ok((own, Vec::new()));
        }
    };
    if let Some(p) = platform {
        let found = entries
            .iter()
            .find(|e| e.platform.as_deref() == Some(p) && !e.attestation);
        return match found {
            Some(e) => {
                joblog::info(format!("platform {p}: {}", e.descriptor.digest));
                Ok((e.descriptor.clone(), Vec::new()))
            }
            None => {
                let have: Vec<&str> = entries
                    .iter()
                    .filter(|e| !e.attestation)
                    .filter_map(|e| e.platform.as_deref())
                    .collect();
                Err(Error::UnknownPlatform {
                    image: image.to_string(),
                    platform: p.to_string(),
                    have: have.join(", "),
                })
            }
        };
    }
    // cosign --recursive signs every manifest of the index (attestations included).
    Ok((own, entries.into_iter().map(|e| e.descriptor).collect()))
}

/// `sign-image sign`.
pub async fn sign(cfg: &SignConfig, env: &dyn Env) -> Result<SignReport, Error> {
    let image = &cfg.image;
    let public = cfg.key.public();
    joblog::info(format!(
        "signing key {} ({}), format {}",
        cfg.key_origin,
        public.fingerprint(),
        cfg.format
    ));
    let reg = connect(image, &cfg.registry, env)?;
    let (subject, children) =
        resolve(&reg, image, cfg.registry.platform.as_deref(), cfg.recursive).await?;
    let mut signed = Vec::new();
    let digests: Vec<Descriptor> = std::iter::once(subject).chain(children).collect();
    // Every referrers list is read (and checked) before anything is pushed:
    // a registry answering garbage stops the job with nothing written.
    let mut bundles: Vec<Option<Vec<u8>>> = Vec::with_capacity(digests.len());
    for d in &digests {
        bundles.push(if cfg.format.bundle() {
            let statement = bundle::Statement::for_signature(&d.digest, &cfg.annotations);
            new_bundle(&reg, image, &d.digest, &cfg.key, &statement).await?
        } else {
            None
        });
    }
    for (d, b) in digests.into_iter().zip(bundles) {
        let mut added = false;
        if cfg.format.legacy() {
            added |= sign_one(&reg, image, &d.digest, &cfg.key, &public, &cfg.annotations).await?;
        }
        if let Some(b) = b {
            push_bundle(&reg, image, &d, b, bundle::SIGN_PREDICATE_TYPE).await?;
            added = true;
        }
        signed.push(Signed {
            digest: d.digest,
            added,
        });
    }
    Ok(SignReport {
        image: image.clone(),
        signed,
        stats: reg.stats(),
    })
}

/// What `attest` did.
#[derive(Debug, Clone)]
pub struct AttestReport {
    pub image: ImageRef,
    pub digest: Digest,
    pub predicate_type: String,
    /// `false` when the same attestation by this key was already there.
    pub added: bool,
    pub stats: Stats,
}

/// `sign-image attest`: the predicate in an in-toto statement (as `cosign
/// attest` writes it: Statement v0.1, subject = repository + digest), signed
/// into a bundle, pushed as a referrer of the digest.
pub async fn attest(cfg: &AttestConfig, env: &dyn Env) -> Result<AttestReport, Error> {
    let image = &cfg.image;
    joblog::info(format!(
        "signing key {} ({}), predicate type {}",
        cfg.key_origin,
        cfg.key.public().fingerprint(),
        cfg.predicate_type
    ));
    let reg = connect(image, &cfg.registry, env)?;
    let (subject, _) = resolve(&reg, image, cfg.registry.platform.as_deref(), false).await?;
    let statement = bundle::Statement::for_attestation(
        &crate::payload::docker_reference(image),
        &subject.digest,
        &cfg.predicate_type,
        cfg.predicate.clone(),
    );
    // Everything is read before anything is pushed.
    let b = if cfg.format.bundle() {
        new_bundle(&reg, image, &subject.digest, &cfg.key, &statement).await?
    } else {
        None
    };
    let legacy = if cfg.format.legacy() {
        let payload = serde_json::to_vec(&statement).unwrap_or_default();
        let envelope = bundle::envelope(&cfg.key, &payload);
        let tag = sigtag::attestation_tag(&subject.digest);
        let existing =
            match reg.manifest(&image.repository, &tag).await? {
                Some(m) => Some(SigManifest::parse(&m.bytes).map_err(|source| {
                    Error::ForeignSignatures {
                        name: image.name(),
                        tag: tag.clone(),
                        source,
                    }
                })?),
                None => None,
            };
        SigManifest::append_attestation(existing, &envelope, &cfg.predicate_type)
            .map(|manifest| (tag, envelope, manifest))
    } else {
        None
    };
    let added = b.is_some() || legacy.is_some();
    if let Some((tag, envelope, manifest)) = legacy {
        let repo = &image.repository;
        reg.push_new_blob(repo, envelope).await?;
        reg.push_shared_blob(repo, sigtag::CONFIG).await?;
        reg.push_manifest(repo, &tag, OCI_MANIFEST_MEDIA_TYPE, manifest)
            .await?;
        joblog::info(format!(
            "{}@{}: attestation added to {}:{tag}",
            image.name(),
            subject.digest,
            image.name()
        ));
    }
    if let Some(b) = b {
        push_bundle(&reg, image, &subject, b, &cfg.predicate_type).await?;
    }
    Ok(AttestReport {
        image: image.clone(),
        digest: subject.digest,
        predicate_type: cfg.predicate_type.clone(),
        added,
        stats: reg.stats(),
    })
}

/// The bundle signing `digest` (cosign 3's statement, DSSE, bundle v0.3),
/// or `None` when a referrer with this very bundle is already there
/// (signatures are deterministic: the same key and statement give the same
/// bundle). Reads the referrers list, pushes nothing.
async fn new_bundle(
    reg: &Registry,
    image: &ImageRef,
    digest: &Digest,
    key: &PrivateKey,
    statement: &bundle::Statement,
) -> Result<Option<Vec<u8>>, Error> {
    let repo = &image.repository;
    let payload = serde_json::to_vec(statement).unwrap_or_default();
    let bundle_bytes = bundle::sign(key, &payload);
    let bundle_digest = registry::sha256(&bundle_bytes).to_string();
    for r in crate::verify::referrers(reg, repo, digest).await? {
        let maybe = r
            .artifact_type
            .as_deref()
            .is_none_or(|t| t == bundle::BUNDLE_MEDIA_TYPE);
        if !maybe {
            continue;
        }
        if let Some(m) = reg.manifest(repo, &r.digest.to_string()).await?
            && let Ok(rm) = serde_json::from_slice::<bundle::ReferrerManifest>(&m.bytes)
            && rm.bundle_layer().is_some_and(|l| l.digest == bundle_digest)
        {
            joblog::info(format!(
                "{}@{digest}: already signed by this key with the same statement (bundle referrer {}); nothing to do",
                image.name(),
                r.digest
            ));
            return Ok(None);
        }
    }
    Ok(Some(bundle_bytes))
}

/// Pushes a bundle as a referrer of `subject`: the bundle blob, the empty
/// config, and the referrer manifest (through the referrers API, or merged
/// into the referrers tag schema where the registry has none).
async fn push_bundle(
    reg: &Registry,
    image: &ImageRef,
    subject: &Descriptor,
    bundle_bytes: Vec<u8>,
    predicate_type: &str,
) -> Result<(), Error> {
    let repo = &image.repository;
    let digest = &subject.digest;
    let manifest = bundle::ReferrerManifest::for_bundle(
        &bundle_bytes,
        bundle::OciDescriptor {
            media_type: subject.media_type.clone(),
            size: subject.size,
            digest: digest.to_string(),
            annotations: None,
            artifact_type: None,
        },
        predicate_type,
        &bundle::created_now(),
    );
    reg.push_new_blob(repo, bundle_bytes).await?;
    reg.push_shared_blob(repo, bundle::EMPTY_BLOB).await?;
    let pushed = reg
        .push_referrer(repo, OCI_MANIFEST_MEDIA_TYPE, manifest.to_bytes(), digest)
        .await?;
    joblog::info(format!(
        "{}@{digest}: bundle of {predicate_type} added as referrer {pushed}",
        image.name()
    ));
    Ok(())
}

async fn sign_one(
    reg: &Registry,
    image: &ImageRef,
    digest: &Digest,
    key: &PrivateKey,
    public: &PublicKey,
    annotations: &BTreeMap<String, String>,
) -> Result<bool, Error> {
    let repo = &image.repository;
    let payload = SimpleSigning::new(image, digest, annotations).to_bytes();
    let signature = key.sign_base64(&payload);
    let tag = signature_tag(digest);
    let existing = match reg.manifest(repo, &tag).await? {
        Some(m) => {
            Some(
                SigManifest::parse(&m.bytes).map_err(|source| Error::ForeignSignatures {
                    name: image.name(),
                    tag: tag.clone(),
                    source,
                })?,
            )
        }
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

/// `sign-image generate-key-pair`: writes `<prefix>.key` (cosign's encrypted
/// format, mode 0600) and `<prefix>.pub`. The config already refused to
/// overwrite existing files without `--force`.
pub fn generate_key_pair(cfg: &GenerateConfig) -> Result<PublicKey, Error> {
    let password = match &cfg.password {
        Some(p) => p.clone(),
        None => {
            joblog::warn(format!(
                "{PASSWORD_VAR} is not set: the private key is encrypted with an empty password"
            ));
            Secret::default()
        }
    };
    let key = PrivateKey::generate()?;
    let encrypted = key.to_encrypted_pem(&password)?;
    write_private(&cfg.key_path, encrypted.as_bytes())?;
    kit::fsutil::write_atomic(&cfg.pub_path, key.public().to_pem().as_bytes())
        .map_err(Error::Write)?;
    Ok(key.public())
}

/// Writes a private key file readable by its owner only, atomically.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write as _;
    let fail = |source: std::io::Error| Error::WriteKey {
        path: PathBuf::from(path),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // tempfile creates files with mode 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(".cosign-key.")
        .tempfile_in(dir)
        .map_err(fail)?;
    tmp.write_all(bytes).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}
