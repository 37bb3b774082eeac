//! `sign-image verify`: find every signature of a digest, in each format
//! cosign writes, and check each against every `--key`.
//!
//! - **legacy**: the `sha256-<hex>.sig` tag, one simple-signing payload per
//!   layer with its signature in an annotation (cosign ≤ 2 default, cosign 3
//!   with `--new-bundle-format=false`, sigstore-rs);
//! - **bundle**: Sigstore bundles v0.3 stored as OCI referrers of the digest
//!   (cosign 3 default), found through the referrers API or the referrers tag
//!   schema ([`crate::bundle`]).
//!
//! Both are always read; no flag chooses. A digest verifies when at least one
//! signature verifies with at least one key; the report names, for each
//! signature, the format, which key verified it, or why it was refused.

use std::collections::BTreeMap;

use kit::env::Env;
use kit::joblog;
use kit::reference::{Digest, ImageRef};
use registry::referrers::Referrer;
use registry::{Registry, Stats};
use serde::Serialize;

use crate::bundle::{self, BundleError, ReferrerManifest, Statement};
use crate::config::{VerifyAttestationConfig, VerifyConfig, VerifyKey};
use crate::error::Error;
use crate::identity::{IdentityMismatch, IdentityRule};
use crate::ops::{connect, resolve};
use crate::payload::{PayloadError, SIGNATURE_TYPE, SimpleSigning};
use crate::sigtag::{self, MAX_PAYLOAD_BYTES, SigManifest, SigManifestError, signature_tag};

/// The two signature formats of cosign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `sha256-<hex>.sig` tag, simple-signing payloads.
    Legacy,
    /// Sigstore bundle v0.3 (DSSE, in-toto statement) as an OCI referrer.
    Bundle,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Legacy => "legacy",
            Format::Bundle => "bundle",
        })
    }
}

/// Why one signature is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("layer media type {0} is not a simple-signing payload")]
    NotSimpleSigning(String),
    #[error("no {} annotation", sigtag::SIGNATURE_ANNOTATION)]
    NoSignature,
    #[error("referrer has no {} layer", bundle::BUNDLE_MEDIA_TYPE)]
    NoBundleLayer,
    #[error("layer digest is malformed")]
    MalformedDigest,
    #[error("payload of {0} bytes is larger than {MAX_PAYLOAD_BYTES}")]
    TooLarge(u64),
    #[error("signature does not verify with {0}")]
    BadSignature(KeysNamed),
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
    /// A bundle that is not a valid, signed, matching bundle.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The blob could not be fetched; the registry error is kept in
    /// [`Error::Payload`] for when nothing else verifies.
    #[error("payload cannot be read: {0}")]
    Unreadable(String),
}

/// "this key" (one `--key`) or "any of the N keys".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeysNamed(pub usize);

impl std::fmt::Display for KeysNamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 == 1 {
            f.write_str("this key")
        } else {
            write!(f, "any of the {} keys", self.0)
        }
    }
}

/// What verified: the signed document as stored (cosign prints the same).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum VerifiedPayload {
    Legacy(SimpleSigning),
    Bundle(Statement),
}

/// One signature that verified.
#[derive(Debug, Clone)]
pub struct Verified {
    pub format: Format,
    /// The `--key` that verified it (as given) and its fingerprint.
    pub key: String,
    pub key_fingerprint: String,
    /// The layer (legacy) or referrer manifest (bundle) digest.
    pub source: String,
    pub payload: VerifiedPayload,
}

/// Why one signature was or was not accepted.
#[derive(Debug)]
pub struct Verdict {
    pub format: Format,
    /// The layer (legacy) or referrer manifest (bundle) digest.
    pub digest: String,
    /// `Ok(key origin)` when it verified; else the reason it did not.
    pub result: Result<String, Rejection>,
}

/// Why verify says no (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(
        "{name}@{digest} has no signatures: {name}:{tag} does not exist and no referrer of the digest is a signature bundle (sign it with `sign-image sign`)"
    )]
    NoSignatures {
        name: String,
        digest: Digest,
        tag: String,
    },
    #[error(
        "{name}@{digest} has no attestation of type {predicate_type}: none in its .att tag, and no referrer of the digest is an attestation bundle of that type (attach one with `sign-image attest`)"
    )]
    NoAttestations {
        name: String,
        digest: Digest,
        predicate_type: String,
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
    #[error("{name}@{digest}: {count} signature(s) found, none valid for {keys}: {reasons}")]
    NoneValid {
        name: String,
        digest: Digest,
        count: usize,
        /// `key <fingerprint>` or `keys <fp>, <fp>`.
        keys: String,
        /// `digest: reason; …`
        reasons: String,
    },
}

#[derive(Debug)]
pub struct VerifyReport {
    pub image: ImageRef,
    pub digest: Digest,
    /// The signatures that verified.
    pub verified: Vec<Verified>,
    pub verdicts: Vec<Verdict>,
    /// `Some` exactly when nothing verified.
    pub refusal: Option<Refusal>,
    pub stats: Stats,
}

/// What a signature must satisfy.
#[derive(Clone, Copy)]
pub(crate) struct Checks<'a> {
    pub digest: &'a Digest,
    pub keys: &'a [VerifyKey],
    pub required: &'a BTreeMap<String, String>,
    pub identity: &'a IdentityRule,
    /// The predicate type a bundle's statement must have (cosign's
    /// signature type for verify, `--type` for verify-attestation).
    pub predicate_type: &'a str,
}

impl Checks<'_> {
    /// The index of the first key whose signature over `message` is the
    /// base64 `signature_b64` (the legacy annotation).
    fn key_for_base64(&self, message: &[u8], signature_b64: &str) -> Option<usize> {
        self.keys
            .iter()
            .position(|k| k.key.verify_base64(message, signature_b64))
    }

    pub fn bad_signature(&self) -> Rejection {
        Rejection::BadSignature(KeysNamed(self.keys.len()))
    }

    /// `optional` (legacy) or the statement subject's annotations (bundle)
    /// must carry every `-a k=v`.
    pub fn annotations(
        &self,
        got: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<(), Rejection> {
        for (k, v) in self.required {
            let ok = match got.and_then(|o| o.get(k)) {
                Some(serde_json::Value::String(s)) => s == v,
                Some(other) => serde_json::to_string(other).ok().as_deref() == Some(v.as_str()),
                None => false,
            };
            if !ok {
                return Err(Rejection::MissingAnnotation(k.clone(), v.clone()));
            }
        }
        Ok(())
    }
}

/// The legacy `.sig` tag of a digest, as found.
enum LegacyTag {
    Absent,
    /// The tag exists but cannot be used as a whole.
    Refused(Refusal),
    Checked,
}

/// `sign-image verify`: a report whose `refusal` says why nothing verified
/// (exit 1), or an error when the registry cannot be read (exit 3/4).
pub async fn verify(cfg: &VerifyConfig, env: &dyn Env) -> Result<VerifyReport, Error> {
    let image = &cfg.image;
    for k in &cfg.keys {
        joblog::info(format!(
            "verification key {} ({})",
            k.origin,
            k.key.fingerprint()
        ));
    }
    match &cfg.identity {
        IdentityRule::Any => joblog::info("accepted identities: any repository"),
        IdentityRule::Repositories { verified, also } => {
            let mut names = vec![verified.to_string()];
            names.extend(also.iter().map(ToString::to_string));
            joblog::info(format!("accepted identities: {}", names.join(", ")));
        }
    }
    let reg = connect(image, &cfg.registry, env)?;
    let (subject, _) = resolve(&reg, image, cfg.registry.platform.as_deref(), false).await?;
    let digest = subject.digest;
    let checks = Checks {
        digest: &digest,
        keys: &cfg.keys,
        required: &cfg.annotations,
        identity: &cfg.identity,
        predicate_type: bundle::SIGN_PREDICATE_TYPE,
    };
    let mut report = empty_report(image, &digest);
    let mut unreadable: Option<Error> = None;
    let legacy = verify_legacy(&reg, image, &checks, &mut report, &mut unreadable).await?;
    // One valid signature is enough: when the `.sig` tag already holds one,
    // the referrers are not read (2 requests fewer on registries without the
    // referrers API, 1 with it).
    let bundles = if report.verified.is_empty() {
        verify_bundles(&reg, image, &checks, &mut report, &mut unreadable).await?
    } else {
        joblog::info("a legacy signature verified: the referrers (bundle signatures) are not read");
        0
    };
    if bundles > 0 && cfg.identity != IdentityRule::Any {
        joblog::info(
            "bundle signatures name a digest, not a repository: the identity rule applies to legacy signatures only",
        );
    }
    if report.verified.is_empty() {
        if let Some(e) = unreadable {
            return Err(e);
        }
        report.refusal = Some(match legacy {
            LegacyTag::Absent if bundles == 0 => Refusal::NoSignatures {
                name: image.name(),
                digest: digest.clone(),
                tag: signature_tag(&digest),
            },
            LegacyTag::Refused(r) if bundles == 0 => r,
            _ => none_valid(image, &digest, &checks, &report.verdicts),
        });
    }
    report.stats = reg.stats();
    Ok(report)
}

/// `sign-image verify-attestation`: the bundles of `--type` among the
/// digest's referrers, checked against every key (no identity rule: an
/// attestation statement names its subject by digest).
pub async fn verify_attestation(
    cfg: &VerifyAttestationConfig,
    env: &dyn Env,
) -> Result<VerifyReport, Error> {
    let image = &cfg.image;
    for k in &cfg.keys {
        joblog::info(format!(
            "verification key {} ({})",
            k.origin,
            k.key.fingerprint()
        ));
    }
    let reg = connect(image, &cfg.registry, env)?;
    let (subject, _) = resolve(&reg, image, cfg.registry.platform.as_deref(), false).await?;
    let digest = subject.digest;
    let required = BTreeMap::new();
    let identity = IdentityRule::Any;
    let checks = Checks {
        digest: &digest,
        keys: &cfg.keys,
        required: &required,
        identity: &identity,
        predicate_type: &cfg.predicate_type,
    };
    let mut report = empty_report(image, &digest);
    let mut unreadable: Option<Error> = None;
    let legacy = verify_att_tag(&reg, image, &checks, &mut report, &mut unreadable).await?;
    let found = legacy + verify_bundles(&reg, image, &checks, &mut report, &mut unreadable).await?;
    if report.verified.is_empty() {
        if let Some(e) = unreadable {
            return Err(e);
        }
        report.refusal = Some(if found == 0 {
            Refusal::NoAttestations {
                name: image.name(),
                digest: digest.clone(),
                predicate_type: cfg.predicate_type.clone(),
            }
        } else {
            none_valid(image, &digest, &checks, &report.verdicts)
        });
    }
    report.stats = reg.stats();
    Ok(report)
}

/// cosign 2's `.att` tag: every DSSE layer of the wanted predicate type
/// checked into `report`. Returns how many there were.
async fn verify_att_tag(
    reg: &Registry,
    image: &ImageRef,
    checks: &Checks<'_>,
    report: &mut VerifyReport,
    unreadable: &mut Option<Error>,
) -> Result<usize, Error> {
    let repo = &image.repository;
    let tag = sigtag::attestation_tag(checks.digest);
    let Some(m) = reg.manifest(repo, &tag).await? else {
        return Ok(0);
    };
    let Ok(att) = SigManifest::parse(&m.bytes) else {
        joblog::warn(format!(
            "{}:{tag} is not an image manifest; ignored",
            image.name()
        ));
        return Ok(0);
    };
    let mut count = 0;
    for layer in att.layers.iter().filter(|l| {
        l.media_type == sigtag::DSSE_MEDIA_TYPE
            && l.annotations
                .as_ref()
                .and_then(|a| a.get(sigtag::PREDICATE_TYPE_ANNOTATION))
                .is_none_or(|p| p == checks.predicate_type)
    }) {
        if count >= sigtag::MAX_SIGNATURE_LAYERS {
            break;
        }
        count += 1;
        let outcome = checked(
            check_att_layer(reg, repo, layer, checks).await,
            VerifiedPayload::Bundle,
            &layer.digest,
            unreadable,
        );
        record(report, checks, Format::Legacy, &layer.digest, outcome);
    }
    Ok(count)
}

/// A report with nothing checked yet.
fn empty_report(image: &ImageRef, digest: &Digest) -> VerifyReport {
    VerifyReport {
        image: image.clone(),
        digest: digest.clone(),
        verified: Vec::new(),
        verdicts: Vec::new(),
        refusal: None,
        stats: Stats::default(),
    }
}

/// One layer's or referrer's outcome: a blob that cannot be read is a
/// rejection in the report, and the first such error is kept for when
/// nothing verifies (exit 3, not 1).
fn checked<T>(
    result: Result<Result<(usize, T), Rejection>, registry::Error>,
    wrap: fn(T) -> VerifiedPayload,
    digest: &str,
    unreadable: &mut Option<Error>,
) -> Result<(usize, VerifiedPayload), Rejection> {
    match result {
        Ok(o) => o.map(|(i, p)| (i, wrap(p))),
        Err(e) => {
            let why = Rejection::Unreadable(e.to_string());
            unreadable.get_or_insert(Error::Payload {
                layer: short(digest).to_string(),
                source: Box::new(e),
            });
            Err(why)
        }
    }
}

/// A layer's blob, when its digest parses and its declared size is within
/// `max` (a rejection otherwise; the registry's own errors stay errors).
async fn fetch_bounded(
    reg: &Registry,
    repo: &str,
    digest: &str,
    size: u64,
    max: usize,
) -> Result<Result<Vec<u8>, Rejection>, registry::Error> {
    let Ok(digest) = digest.parse::<Digest>() else {
        return Ok(Err(Rejection::MalformedDigest));
    };
    if size > max as u64 {
        return Ok(Err(Rejection::TooLarge(size)));
    }
    Ok(Ok(reg.fetch_blob(repo, &digest, max).await?))
}

async fn check_att_layer(
    reg: &Registry,
    repo: &str,
    layer: &sigtag::Layer,
    checks: &Checks<'_>,
) -> Result<Result<(usize, Statement), Rejection>, registry::Error> {
    let bytes = match fetch_bounded(
        reg,
        repo,
        &layer.digest,
        layer.size,
        bundle::MAX_BUNDLE_BYTES,
    )
    .await?
    {
        Ok(b) => b,
        Err(why) => return Ok(Err(why)),
    };
    let keys: Vec<&crate::keys::PublicKey> = checks.keys.iter().map(|k| &k.key).collect();
    let opened = bundle::parse_envelope(&bytes)
        .and_then(|env| bundle::open_envelope(&env, &keys, checks.digest, checks.predicate_type));
    Ok(match opened {
        Ok(Some(o)) => Ok((o.key, o.statement)),
        Ok(None) => Err(checks.bad_signature()),
        Err(e) => Err(e.into()),
    })
}

fn none_valid(
    image: &ImageRef,
    digest: &Digest,
    checks: &Checks<'_>,
    verdicts: &[Verdict],
) -> Refusal {
    let reasons: Vec<String> = verdicts
        .iter()
        .filter_map(|v| {
            v.result
                .as_ref()
                .err()
                .map(|r| format!("{}: {r}", short(&v.digest)))
        })
        .collect();
    let fps: Vec<String> = checks.keys.iter().map(|k| k.key.fingerprint()).collect();
    let keys = if fps.len() == 1 {
        format!("key {}", fps[0])
    } else {
        format!("keys {}", fps.join(", "))
    };
    Refusal::NoneValid {
        name: image.name(),
        digest: digest.clone(),
        count: verdicts.len(),
        keys,
        reasons: reasons.join("; "),
    }
}

pub(crate) fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

/// Records one signature's outcome in the report.
pub(crate) fn record(
    report: &mut VerifyReport,
    checks: &Checks<'_>,
    format: Format,
    digest: &str,
    outcome: Result<(usize, VerifiedPayload), Rejection>,
) {
    let result = match outcome {
        Ok((i, payload)) => {
            let key = &checks.keys[i];
            joblog::info(format!(
                "{format} signature {} verified by key {} ({})",
                short(digest),
                key.origin,
                key.key.fingerprint()
            ));
            report.verified.push(Verified {
                format,
                key: key.origin.clone(),
                key_fingerprint: key.key.fingerprint(),
                source: digest.to_string(),
                payload,
            });
            Ok(key.origin.clone())
        }
        Err(why) => Err(why),
    };
    report.verdicts.push(Verdict {
        format,
        digest: digest.to_string(),
        result,
    });
}

/// The `.sig` tag: fills `report`. A payload blob that cannot be read does
/// not sink the others: it only matters (exit 3) when nothing else verifies
/// (`unreadable`).
async fn verify_legacy(
    reg: &Registry,
    image: &ImageRef,
    checks: &Checks<'_>,
    report: &mut VerifyReport,
    unreadable: &mut Option<Error>,
) -> Result<LegacyTag, Error> {
    let repo = &image.repository;
    let digest = checks.digest;
    let tag = signature_tag(digest);
    let Some(m) = reg.manifest(repo, &tag).await? else {
        return Ok(LegacyTag::Absent);
    };
    let sig = match SigManifest::parse(&m.bytes) {
        Ok(s) => s,
        Err(source) => {
            return Ok(LegacyTag::Refused(Refusal::Unreadable {
                name: image.name(),
                tag,
                source,
            }));
        }
    };
    if sig.layers.is_empty() {
        return Ok(LegacyTag::Refused(Refusal::NoLayers {
            name: image.name(),
            digest: digest.clone(),
            tag,
        }));
    }
    if sig.layers.len() > sigtag::MAX_SIGNATURE_LAYERS {
        return Ok(LegacyTag::Refused(Refusal::TooManyLayers {
            name: image.name(),
            tag,
            count: sig.layers.len(),
        }));
    }
    for layer in &sig.layers {
        let outcome = checked(
            check_layer(reg, repo, layer, checks).await,
            VerifiedPayload::Legacy,
            &layer.digest,
            unreadable,
        );
        record(report, checks, Format::Legacy, &layer.digest, outcome);
    }
    Ok(LegacyTag::Checked)
}

/// Every referrer of `digest` (referrers API, else the referrers tag
/// schema), unfiltered: cosign writes tag-schema entries without
/// `artifactType` (sigstore/cosign#4641); the registry crate completes those
/// from the manifest.
pub(crate) async fn referrers(
    reg: &Registry,
    repo: &str,
    digest: &Digest,
) -> Result<Vec<Referrer>, Error> {
    Ok(reg.referrers(repo, digest, None).await?)
}

/// Whether a referrer listing may be a signature bundle (type unknown
/// included), and not an attestation.
fn maybe_signature_bundle(r: &Referrer, predicate_type: &str) -> bool {
    let type_ok = r
        .artifact_type
        .as_deref()
        .is_none_or(|t| t == bundle::BUNDLE_MEDIA_TYPE || t == bundle::BUNDLE_MEDIA_TYPE_03_LEGACY);
    let predicate_ok = r
        .annotations
        .get(bundle::ANNOTATION_PREDICATE_TYPE)
        .is_none_or(|p| p == predicate_type);
    type_ok && predicate_ok
}

/// The referrers: every signature bundle checked into `report`. Returns how
/// many signature bundles there were.
async fn verify_bundles(
    reg: &Registry,
    image: &ImageRef,
    checks: &Checks<'_>,
    report: &mut VerifyReport,
    unreadable: &mut Option<Error>,
) -> Result<usize, Error> {
    let repo = &image.repository;
    let mut count = 0;
    let listed = referrers(reg, repo, checks.digest).await?;
    for r in listed
        .iter()
        .filter(|r| maybe_signature_bundle(r, checks.predicate_type))
    {
        if count >= sigtag::MAX_SIGNATURE_LAYERS {
            joblog::warn(format!(
                "{}@{}: more than {} signature referrers; the rest are not checked",
                image.name(),
                checks.digest,
                sigtag::MAX_SIGNATURE_LAYERS
            ));
            break;
        }
        let Some(m) = reg.manifest(repo, &r.digest.to_string()).await? else {
            continue; // listed but gone (deleted since): not a signature
        };
        let Ok(rm) = serde_json::from_slice::<ReferrerManifest>(&m.bytes) else {
            continue;
        };
        let is_bundle = rm.artifact_type().is_some_and(|t| {
            t == bundle::BUNDLE_MEDIA_TYPE || t == bundle::BUNDLE_MEDIA_TYPE_03_LEGACY
        });
        let predicate_ok = rm
            .annotations
            .as_ref()
            .and_then(|a| a.get(bundle::ANNOTATION_PREDICATE_TYPE))
            .is_none_or(|p| p == checks.predicate_type);
        if !is_bundle || !predicate_ok {
            continue;
        }
        count += 1;
        let outcome = checked(
            check_referrer(reg, repo, &rm, checks).await,
            VerifiedPayload::Bundle,
            &r.digest.to_string(),
            unreadable,
        );
        record(
            report,
            checks,
            Format::Bundle,
            &r.digest.to_string(),
            outcome,
        );
    }
    Ok(count)
}

/// Outer error: the registry failed. Inner error: this referrer is not a
/// valid signature bundle for the keys, digest and annotations.
async fn check_referrer(
    reg: &Registry,
    repo: &str,
    rm: &ReferrerManifest,
    checks: &Checks<'_>,
) -> Result<Result<(usize, Statement), Rejection>, registry::Error> {
    let want = checks.digest.to_string();
    if let Some(s) = &rm.subject
        && s.digest != want
    {
        return Ok(Err(Rejection::Bundle(BundleError::WrongSubject {
            named: s.digest.clone(),
            want: checks.digest.clone(),
        })));
    }
    let Some(layer) = rm.bundle_layer() else {
        return Ok(Err(Rejection::NoBundleLayer));
    };
    let bytes = match fetch_bounded(
        reg,
        repo,
        &layer.digest,
        layer.size,
        bundle::MAX_BUNDLE_BYTES,
    )
    .await?
    {
        Ok(b) => b,
        Err(why) => return Ok(Err(why)),
    };
    let keys: Vec<&crate::keys::PublicKey> = checks.keys.iter().map(|k| &k.key).collect();
    let opened = match bundle::open(&bytes, &keys, checks.digest, checks.predicate_type) {
        Ok(Some(o)) => o,
        Ok(None) => return Ok(Err(checks.bad_signature())),
        Err(e) => return Ok(Err(e.into())),
    };
    let annotations = opened
        .statement
        .subject_for(checks.digest)
        .and_then(|s| s.annotations.as_ref());
    if let Err(e) = checks.annotations(annotations) {
        return Ok(Err(e));
    }
    Ok(Ok((opened.key, opened.statement)))
}

/// Outer error: the registry failed. Inner error: this layer is not a valid
/// signature for the keys, digest, identity and annotations.
async fn check_layer(
    reg: &Registry,
    repo: &str,
    layer: &sigtag::Layer,
    checks: &Checks<'_>,
) -> Result<Result<(usize, SimpleSigning), Rejection>, registry::Error> {
    if !layer.is_simplesigning() {
        return Ok(Err(Rejection::NotSimpleSigning(layer.media_type.clone())));
    }
    let Some(signature) = layer.signature() else {
        return Ok(Err(Rejection::NoSignature));
    };
    let payload =
        match fetch_bounded(reg, repo, &layer.digest, layer.size, MAX_PAYLOAD_BYTES).await? {
            Ok(b) => b,
            Err(why) => return Ok(Err(why)),
        };
    Ok(check_payload(&payload, signature, checks))
}

/// The checks on a fetched payload, in the order a reader would make them:
/// the signature (which key), then what the signed bytes say.
fn check_payload(
    payload: &[u8],
    signature: &str,
    checks: &Checks<'_>,
) -> Result<(usize, SimpleSigning), Rejection> {
    let Some(key) = checks.key_for_base64(payload, signature) else {
        return Err(checks.bad_signature());
    };
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
    let optional: Option<serde_json::Map<String, serde_json::Value>> = parsed
        .optional
        .as_ref()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    checks.annotations(optional.as_ref())?;
    Ok((key, parsed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;

    fn vk(k: &PrivateKey, origin: &str) -> VerifyKey {
        VerifyKey {
            key: k.public(),
            origin: origin.to_string(),
        }
    }

    #[test]
    fn payload_checks_in_order_and_name_the_key() {
        let k = PrivateKey::generate().unwrap();
        let old = PrivateKey::generate().unwrap();
        let image = ImageRef::parse("registry.example/team/app:1").unwrap();
        let digest = Digest::sha256_hex("ab".repeat(32)).unwrap();
        let payload = SimpleSigning::new(&image, &digest, &BTreeMap::new()).to_bytes();
        let sig = k.sign_base64(&payload);
        let required = BTreeMap::new();
        let identity = IdentityRule::new(&image, vec![], false);
        let keys = [vk(&old, "old.pub"), vk(&k, "new.pub")];
        let checks = Checks {
            digest: &digest,
            keys: &keys,
            required: &required,
            identity: &identity,
            predicate_type: bundle::SIGN_PREDICATE_TYPE,
        };
        // The second key verifies: its index is returned.
        assert_eq!(check_payload(&payload, &sig, &checks).unwrap().0, 1);

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

        // Other keys only: the signature check comes first.
        let strangers = [
            vk(&old, "old.pub"),
            vk(&PrivateKey::generate().unwrap(), "x.pub"),
        ];
        let e = check_payload(
            &payload,
            &sig,
            &Checks {
                keys: &strangers,
                identity: &identity,
                ..checks
            },
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "signature does not verify with any of the 2 keys"
        );
        let e = check_payload(
            &payload,
            &sig,
            &Checks {
                keys: &strangers[..1],
                ..checks
            },
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "signature does not verify with this key");
    }
}
