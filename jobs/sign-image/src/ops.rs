//! The work of the three commands against the registry: sign, verify,
//! generate-key-pair. Nothing here prints results (see [`crate::report`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kit::env::Env;
use kit::joblog;
use kit::reference::{Digest, ImageRef};
use kit::secret::Secret;
use registry::{Contents, Registry, Stats};

use crate::config::{GenerateConfig, RegistryConfig, SignConfig, VerifyConfig};
use crate::error::Error;
use crate::identity::{IdentityMismatch, IdentityRule};
use crate::keyref::PASSWORD_VAR;
use crate::keys::{PrivateKey, PublicKey};
use crate::payload::{PayloadError, SIGNATURE_TYPE, SimpleSigning};
use crate::sigtag::{
    self, Appended, MAX_PAYLOAD_BYTES, OCI_MANIFEST_MEDIA_TYPE, SigManifest, SigManifestError,
    signature_tag,
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

fn connect(image: &ImageRef, opts: &RegistryConfig, env: &dyn Env) -> Result<Registry, Error> {
    // `registry::Error::from` also takes the kit's setup errors (CA bundles).
    let reg = Registry::for_image(image, opts.credentials.clone(), &opts.client, env)
        .map_err(registry::Error::from)?;
    Ok(reg)
}

/// Resolves IMAGE to the digest to sign or verify: its own digest, or with
/// `--platform` the matching manifest of its index. Also returns the
/// platform manifests (for `--recursive`).
async fn resolve(
    reg: &Registry,
    image: &ImageRef,
    platform: Option<&str>,
    want_children: bool,
) -> Result<(Digest, Vec<Digest>), Error> {
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
    if platform.is_none() && !(want_children && is_index) {
        return Ok((resolved.digest, Vec::new()));
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
            return Ok((resolved.digest, Vec::new()));
        }
    };
    if let Some(p) = platform {
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
                Err(Error::UnknownPlatform {
                    image: image.to_string(),
                    platform: p.to_string(),
                    have: have.join(", "),
                })
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
pub async fn sign(cfg: &SignConfig, env: &dyn Env) -> Result<SignReport, Error> {
    let image = &cfg.image;
    let public = cfg.key.public();
    joblog::info(format!(
        "signing key {} ({})",
        cfg.key_origin,
        public.fingerprint()
    ));
    let reg = connect(image, &cfg.registry, env)?;
    let (digest, children) =
        resolve(&reg, image, cfg.registry.platform.as_deref(), cfg.recursive).await?;
    let mut signed = Vec::new();
    for d in std::iter::once(digest).chain(children) {
        let added = sign_one(&reg, image, &d, &cfg.key, &public, &cfg.annotations).await?;
        signed.push(Signed { digest: d, added });
    }
    Ok(SignReport {
        image: image.clone(),
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

/// Why one signature layer is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("layer media type {0} is not a simple-signing payload")]
    NotSimpleSigning(String),
    #[error("no {} annotation", sigtag::SIGNATURE_ANNOTATION)]
    NoSignature,
    #[error("layer digest is malformed")]
    MalformedDigest,
    #[error("payload of {0} bytes is larger than {MAX_PAYLOAD_BYTES}")]
    TooLarge(u64),
    #[error("signature does not verify with this key")]
    BadSignature,
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error("payload type is {0:?}, not {SIGNATURE_TYPE:?}")]
    WrongType(String),
    #[error(
        "signed payload names digest {named}, not {want} (a signature copied from another image)"
    )]
    WrongDigest { named: String, want: Digest },
    #[error(transparent)]
    WrongIdentity(#[from] IdentityMismatch),
    #[error("payload lacks annotation {0}={1}")]
    MissingAnnotation(String, String),
    /// The blob could not be fetched; the registry error is kept in
    /// [`Error::Payload`] for when nothing else verifies.
    #[error("payload cannot be read: {0}")]
    Unreadable(String),
}

/// Why one signature layer was or was not accepted.
#[derive(Debug)]
pub struct LayerVerdict {
    pub layer_digest: String,
    /// `None` when the signature verified; else the reason it did not.
    pub rejected: Option<Rejection>,
}

/// Why verify says no (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(
        "{name}@{digest} has no signatures: {name}:{tag} does not exist (sign it with `sign-image sign`)"
    )]
    NoSignatures {
        name: String,
        digest: Digest,
        tag: String,
    },
    #[error("{name}@{digest} has no signatures: {name}:{tag} has no layers")]
    NoLayers {
        name: String,
        digest: Digest,
        tag: String,
    },
    #[error("{name}:{tag}: {source}")]
    Unreadable {
        name: String,
        tag: String,
        #[source]
        source: SigManifestError,
    },
    #[error(
        "{name}:{tag} has {count} signature layers, more than the {} sign-image checks; clean up the .sig tag",
        sigtag::MAX_SIGNATURE_LAYERS
    )]
    TooManyLayers {
        name: String,
        tag: String,
        count: usize,
    },
    #[error("{name}@{digest}: {count} signature(s) found, none valid for key {key}: {reasons}")]
    NoneValid {
        name: String,
        digest: Digest,
        count: usize,
        key: String,
        /// `layer: reason; …`
        reasons: String,
    },
}

#[derive(Debug)]
pub struct VerifyReport {
    pub image: ImageRef,
    pub digest: Digest,
    /// The payloads whose signatures verified, as stored.
    pub verified: Vec<SimpleSigning>,
    pub verdicts: Vec<LayerVerdict>,
    /// `Some` exactly when nothing verified.
    pub refusal: Option<Refusal>,
    pub stats: Stats,
}

/// `sign-image verify`: a report whose `refusal` says why nothing verified
/// (exit 1), or an error when the registry cannot be read (exit 3/4).
pub async fn verify(cfg: &VerifyConfig, env: &dyn Env) -> Result<VerifyReport, Error> {
    let image = &cfg.image;
    joblog::info(format!(
        "verification key {} ({})",
        cfg.key_origin,
        cfg.key.fingerprint()
    ));
    match &cfg.identity {
        IdentityRule::Any => joblog::info("accepted identities: any repository"),
        IdentityRule::Repositories { verified, also } => {
            let mut names = vec![verified.to_string()];
            names.extend(also.iter().map(ToString::to_string));
            joblog::info(format!("accepted identities: {}", names.join(", ")));
        }
    }
    let reg = connect(image, &cfg.registry, env)?;
    let (digest, _) = resolve(&reg, image, cfg.registry.platform.as_deref(), false).await?;
    let checks = Checks {
        digest: &digest,
        key: &cfg.key,
        required: &cfg.annotations,
        identity: &cfg.identity,
    };
    let mut report = VerifyReport {
        image: image.clone(),
        digest: digest.clone(),
        verified: Vec::new(),
        verdicts: Vec::new(),
        refusal: None,
        stats: Stats::default(),
    };
    if let Err(refusal) = verify_digest(&reg, image, &checks, &mut report).await? {
        report.refusal = Some(refusal);
    } else if report.verified.is_empty() {
        let reasons: Vec<String> = report
            .verdicts
            .iter()
            .filter_map(|v| {
                v.rejected
                    .as_ref()
                    .map(|r| format!("{}: {r}", short(&v.layer_digest)))
            })
            .collect();
        report.refusal = Some(Refusal::NoneValid {
            name: image.name(),
            digest: digest.clone(),
            count: report.verdicts.len(),
            key: cfg.key.fingerprint(),
            reasons: reasons.join("; "),
        });
    }
    report.stats = reg.stats();
    Ok(report)
}

fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

/// What a signature layer must satisfy.
struct Checks<'a> {
    digest: &'a Digest,
    key: &'a PublicKey,
    required: &'a BTreeMap<String, String>,
    identity: &'a IdentityRule,
}

/// Fills `report.verified` and `report.verdicts`. Outer error: the registry
/// failed; inner error: the `.sig` tag itself is refused.
async fn verify_digest(
    reg: &Registry,
    image: &ImageRef,
    checks: &Checks<'_>,
    report: &mut VerifyReport,
) -> Result<Result<(), Refusal>, Error> {
    let repo = &image.repository;
    let digest = checks.digest;
    let tag = signature_tag(digest);
    let Some(m) = reg.manifest(repo, &tag).await? else {
        return Ok(Err(Refusal::NoSignatures {
            name: image.name(),
            digest: digest.clone(),
            tag,
        }));
    };
    let sig = match SigManifest::parse(&m.bytes) {
        Ok(s) => s,
        Err(source) => {
            return Ok(Err(Refusal::Unreadable {
                name: image.name(),
                tag,
                source,
            }));
        }
    };
    if sig.layers.is_empty() {
        return Ok(Err(Refusal::NoLayers {
            name: image.name(),
            digest: digest.clone(),
            tag,
        }));
    }
    if sig.layers.len() > sigtag::MAX_SIGNATURE_LAYERS {
        return Ok(Err(Refusal::TooManyLayers {
            name: image.name(),
            tag,
            count: sig.layers.len(),
        }));
    }
    // A payload blob that cannot be read does not sink the others: it only
    // matters (exit 3) when no other signature verifies.
    let mut unreadable: Option<Error> = None;
    for layer in &sig.layers {
        let rejected = match check_layer(reg, repo, layer, checks).await {
            Ok(Ok(payload)) => {
                report.verified.push(payload);
                None
            }
            Ok(Err(why)) => Some(why),
            Err(e) => {
                let why = Rejection::Unreadable(e.to_string());
                unreadable.get_or_insert(Error::Payload {
                    layer: short(&layer.digest).to_string(),
                    source: Box::new(e),
                });
                Some(why)
            }
        };
        report.verdicts.push(LayerVerdict {
            layer_digest: layer.digest.clone(),
            rejected,
        });
    }
    if report.verified.is_empty()
        && let Some(e) = unreadable
    {
        return Err(e);
    }
    Ok(Ok(()))
}

/// Outer error: the registry failed. Inner error: this layer is not a valid
/// signature for the key, digest, identity and annotations.
async fn check_layer(
    reg: &Registry,
    repo: &str,
    layer: &sigtag::Layer,
    checks: &Checks<'_>,
) -> Result<Result<SimpleSigning, Rejection>, registry::Error> {
    if !layer.is_simplesigning() {
        return Ok(Err(Rejection::NotSimpleSigning(layer.media_type.clone())));
    }
    let Some(signature) = layer.signature() else {
        return Ok(Err(Rejection::NoSignature));
    };
    let Ok(layer_digest) = layer.digest.parse::<Digest>() else {
        return Ok(Err(Rejection::MalformedDigest));
    };
    if layer.size > MAX_PAYLOAD_BYTES as u64 {
        return Ok(Err(Rejection::TooLarge(layer.size)));
    }
    let payload = reg
        .fetch_blob(repo, &layer_digest, MAX_PAYLOAD_BYTES)
        .await?;
    Ok(check_payload(&payload, signature, checks))
}

/// The checks on a fetched payload, in the order a reader would make them:
/// the signature, then what the signed bytes say.
fn check_payload(
    payload: &[u8],
    signature: &str,
    checks: &Checks<'_>,
) -> Result<SimpleSigning, Rejection> {
    if !checks.key.verify_base64(payload, signature) {
        return Err(Rejection::BadSignature);
    }
    let parsed = SimpleSigning::parse(payload)?;
    if parsed.critical.kind != SIGNATURE_TYPE {
        return Err(Rejection::WrongType(parsed.critical.kind));
    }
    if parsed.critical.image.docker_manifest_digest != checks.digest.to_string() {
        return Err(Rejection::WrongDigest {
            named: parsed.critical.image.docker_manifest_digest,
            want: checks.digest.clone(),
        });
    }
    checks
        .identity
        .check(&parsed.critical.identity.docker_reference)?;
    for (k, v) in checks.required {
        let got = parsed.optional.as_ref().and_then(|o| o.get(k));
        let ok = match got {
            Some(serde_json::Value::String(s)) => s == v,
            Some(other) => serde_json::to_string(other).ok().as_deref() == Some(v.as_str()),
            None => false,
        };
        if !ok {
            return Err(Rejection::MissingAnnotation(k.clone(), v.clone()));
        }
    }
    Ok(parsed)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_checks_in_order() {
        let k = PrivateKey::generate().unwrap();
        let image = ImageRef::parse("registry.example/team/app:1").unwrap();
        let digest = Digest::sha256_hex("ab".repeat(32)).unwrap();
        let payload = SimpleSigning::new(&image, &digest, &BTreeMap::new()).to_bytes();
        let sig = k.sign_base64(&payload);
        let required = BTreeMap::new();
        let identity = IdentityRule::new(&image, vec![], false);
        let public = k.public();
        let checks = Checks {
            digest: &digest,
            key: &public,
            required: &required,
            identity: &identity,
        };
        check_payload(&payload, &sig, &checks).unwrap();

        // The same signature verified as another repository's: refused.
        let other = ImageRef::parse("registry.example/team/other:1").unwrap();
        let identity = IdentityRule::new(&other, vec![], false);
        let e = check_payload(
            &payload,
            &sig,
            &Checks {
                identity: &identity,
                ..checks
            },
        )
        .unwrap_err();
        assert!(matches!(e, Rejection::WrongIdentity(_)), "{e}");

        // Another key: the signature check comes first.
        let stranger = PrivateKey::generate().unwrap().public();
        let e = check_payload(
            &payload,
            &sig,
            &Checks {
                key: &stranger,
                identity: &identity,
                ..checks
            },
        )
        .unwrap_err();
        assert!(matches!(e, Rejection::BadSignature), "{e}");
    }
}
