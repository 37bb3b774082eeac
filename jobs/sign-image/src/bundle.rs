//! cosign 3's signature format: a Sigstore bundle v0.3 (JSON) holding a
//! DSSE envelope around an in-toto Statement v1 whose subject is the image
//! digest, stored as an OCI referrer of that digest.
//!
//! What `cosign sign --key K --tlog-upload=false` (v3.1) writes, read from
//! its source (cmd/cosign/cli/sign/sign.go `signDigestBundle`,
//! pkg/oci/remote/write.go `WriteAttestationNewBundleFormat`,
//! sigstore-go pkg/sign) and checked against the real CLI in
//! tests/cosign_interop.rs:
//!
//! - the statement: `{"_type":"https://in-toto.io/Statement/v1",
//!   "subject":[{"digest":{"sha256":HEX},"annotations":{…-a k=v…}}],
//!   "predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}`;
//! - the DSSE envelope: payloadType `application/vnd.in-toto+json`, one
//!   signature = ECDSA P-256/SHA-256 (ASN.1 DER) over the DSSE
//!   pre-authentication encoding `DSSEv1 <len> <type> <len> <payload>`;
//! - the bundle: mediaType `application/vnd.dev.sigstore.bundle.v0.3+json`,
//!   verificationMaterial.publicKey.hint = base64(sha256(SPKI DER)), no
//!   transparency-log entry, no timestamp;
//! - the referrer: an OCI image manifest, config = the empty descriptor
//!   (`{}`, with `artifactType`), one layer = the bundle, `subject` = the
//!   image's descriptor, `artifactType` = the bundle media type, annotations
//!   `dev.sigstore.bundle.content: dsse-envelope`,
//!   `dev.sigstore.bundle.predicateType: <predicate type>`,
//!   `org.opencontainers.image.created: <RFC 3339 UTC>`.
//!
//! The JSON types are written here (a dozen fields) rather than taken from
//! `sigstore_protobuf_specs`: that crate brings prost and a reflection-based
//! protobuf JSON mapping into a binary that runs on Raspberry Pis, for six
//! structs; the mapping rules we need (camelCase names, base64 bytes, empty
//! fields omitted) are the few below.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kit::reference::Digest;
use serde::{Deserialize, Serialize};

use crate::keys::{PrivateKey, PublicKey};

pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The same version, as older clients spell it (accepted when reading).
pub const BUNDLE_MEDIA_TYPE_03_LEGACY: &str =
    "application/vnd.dev.sigstore.bundle+json;version=0.3";
pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub const STATEMENT_TYPE_V1: &str = "https://in-toto.io/Statement/v1";
/// Earlier statement type (cosign 2 attestations); accepted when reading.
pub const STATEMENT_TYPE_V01: &str = "https://in-toto.io/Statement/v0.1";
/// The predicate type of a cosign 3 image signature.
pub const SIGN_PREDICATE_TYPE: &str = "https://sigstore.dev/cosign/sign/v1";
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_BLOB: &[u8] = b"{}";
pub const ANNOTATION_CONTENT: &str = "dev.sigstore.bundle.content";
pub const ANNOTATION_PREDICATE_TYPE: &str = "dev.sigstore.bundle.predicateType";
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
/// Bundles bigger than this are not read (a key-based bundle is ~1 KiB).
pub const MAX_BUNDLE_BYTES: usize = 1024 * 1024;

/// Why a bundle is not a valid signature (each is one line in the report).
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle is not Sigstore bundle JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("bundle media type {0:?} is not v0.3 ({BUNDLE_MEDIA_TYPE})")]
    MediaType(String),
    #[error("bundle holds a message signature, not a DSSE envelope (not an image signature)")]
    NotDsse,
    #[error(
        "bundle is keyless (a certificate, not a public key): sign-image verifies key-based signatures"
    )]
    Keyless,
    #[error("DSSE payload type is {0:?}, not {INTOTO_PAYLOAD_TYPE:?}")]
    PayloadType(String),
    #[error("DSSE {what} is not base64")]
    Base64 { what: &'static str },
    #[error("DSSE envelope has no signature")]
    NoSignature,
    #[error("signed statement is not an in-toto Statement: {0}")]
    Statement(#[source] serde_json::Error),
    #[error("statement type is {0:?}, not {STATEMENT_TYPE_V1:?}")]
    StatementType(String),
    #[error("statement predicate type is {got:?}, not {want:?}")]
    PredicateType { got: String, want: String },
    #[error(
        "signed statement's subject is {named}, not {want} (a signature for another image, or copied from one)"
    )]
    WrongSubject { named: String, want: Digest },
}

/// The bundle JSON (protobuf JSON mapping of `dev.sigstore.bundle.v1.Bundle`),
/// the fields key-based signatures use.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub media_type: String,
    #[serde(default)]
    pub verification_material: VerificationMaterial,
    #[serde(default, skip_serializing)]
    pub message_signature: Option<serde::de::IgnoredAny>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsse_envelope: Option<Envelope>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PublicKeyIdentifier>,
    #[serde(default, skip_serializing)]
    pub x509_certificate_chain: Option<serde::de::IgnoredAny>,
    #[serde(default, skip_serializing)]
    pub certificate: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublicKeyIdentifier {
    #[serde(default)]
    pub hint: String,
}

/// A DSSE envelope; `payload` and `sig` are base64 (standard, padded).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub payload: String,
    pub payload_type: String,
    #[serde(default)]
    pub signatures: Vec<DsseSignature>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DsseSignature {
    pub sig: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
}

/// An in-toto Statement (v1 field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub kind: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    #[serde(default)]
    pub predicate: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub digest: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Statement {
    /// The statement `cosign sign` v3 signs for `digest`: `-a k=v` go into
    /// the subject's annotations.
    pub fn for_signature(digest: &Digest, annotations: &BTreeMap<String, String>) -> Self {
        Statement {
            kind: STATEMENT_TYPE_V1.into(),
            subject: vec![Subject {
                name: String::new(),
                digest: BTreeMap::from([(
                    digest.algorithm().to_string(),
                    digest.hex().to_string(),
                )]),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                        .collect(),
                ),
            }],
            predicate_type: SIGN_PREDICATE_TYPE.into(),
            predicate: Default::default(),
        }
    }

    /// The statement `cosign attest` writes: in-toto Statement v0.1, the
    /// subject named by its repository, the predicate as given.
    pub fn for_attestation(
        repository: &str,
        digest: &Digest,
        predicate_type: &str,
        predicate: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        Statement {
            kind: STATEMENT_TYPE_V01.into(),
            subject: vec![Subject {
                name: repository.to_string(),
                digest: BTreeMap::from([(
                    digest.algorithm().to_string(),
                    digest.hex().to_string(),
                )]),
                annotations: None,
            }],
            predicate_type: predicate_type.to_string(),
            predicate,
        }
    }

    /// The subject naming `digest`, if any.
    pub fn subject_for(&self, digest: &Digest) -> Option<&Subject> {
        self.subject
            .iter()
            .find(|s| s.digest.get(digest.algorithm()).map(String::as_str) == Some(digest.hex()))
    }
}

/// DSSE pre-authentication encoding: what the signature covers.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// cosign's public key hint: base64(sha256(SPKI DER)).
pub fn key_hint(key: &PublicKey) -> String {
    use sha2::Digest as _;
    B64.encode(sha2::Sha256::digest(key.to_spki_der()))
}

/// Signs `payload` (an in-toto statement's bytes) into a bundle, as
/// sigstore-go does for a key without transparency log or timestamp.
pub fn sign(key: &PrivateKey, payload: &[u8]) -> Vec<u8> {
    let sig = key.sign(&pae(INTOTO_PAYLOAD_TYPE, payload));
    let bundle = Bundle {
        media_type: BUNDLE_MEDIA_TYPE.into(),
        verification_material: VerificationMaterial {
            public_key: Some(PublicKeyIdentifier {
                hint: key_hint(&key.public()),
            }),
            ..Default::default()
        },
        message_signature: None,
        dsse_envelope: Some(Envelope {
            payload: B64.encode(payload),
            payload_type: INTOTO_PAYLOAD_TYPE.into(),
            signatures: vec![DsseSignature {
                sig: B64.encode(sig),
                keyid: String::new(),
            }],
        }),
    };
    // Strings and vectors only: serializing cannot fail.
    serde_json::to_vec(&bundle).unwrap_or_default()
}

/// The DSSE envelope as cosign 2 stores it in an `.att` layer
/// (in-toto-golang's field order; `keyid` always present).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StoredEnvelope<'a> {
    payload_type: &'a str,
    payload: String,
    signatures: [StoredSignature; 1],
}

#[derive(Serialize)]
struct StoredSignature {
    keyid: String,
    sig: String,
}

/// Signs `payload` (a statement's bytes) into a bare DSSE envelope, the
/// blob of a cosign 2 `.att` layer.
pub fn envelope(key: &PrivateKey, payload: &[u8]) -> Vec<u8> {
    let sig = key.sign(&pae(INTOTO_PAYLOAD_TYPE, payload));
    serde_json::to_vec(&StoredEnvelope {
        payload_type: INTOTO_PAYLOAD_TYPE,
        payload: B64.encode(payload),
        signatures: [StoredSignature {
            keyid: String::new(),
            sig: B64.encode(sig),
        }],
    })
    .unwrap_or_default()
}

/// Parses a bare DSSE envelope (an `.att` layer).
pub fn parse_envelope(bytes: &[u8]) -> Result<Envelope, BundleError> {
    serde_json::from_slice(bytes).map_err(BundleError::Json)
}

/// What a verified bundle says.
#[derive(Debug, Clone)]
pub struct Opened {
    /// Index of the key (in the slice given) whose signature verified.
    pub key: usize,
    pub statement: Statement,
}

fn b64(what: &'static str, s: &str) -> Result<Vec<u8>, BundleError> {
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    B64.decode(compact)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s.trim()))
        .map_err(|_| BundleError::Base64 { what })
}

/// Opens a bundle: the DSSE signature must verify with one of `keys`
/// (`Ok(None)` when none does), the payload must be an in-toto statement of
/// `predicate_type` whose subject is `digest`. The checks run in that order:
/// nothing of an unsigned payload is believed.
pub fn open(
    bytes: &[u8],
    keys: &[&PublicKey],
    digest: &Digest,
    predicate_type: &str,
) -> Result<Option<Opened>, BundleError> {
    let bundle: Bundle = serde_json::from_slice(bytes).map_err(BundleError::Json)?;
    if bundle.media_type != BUNDLE_MEDIA_TYPE && bundle.media_type != BUNDLE_MEDIA_TYPE_03_LEGACY {
        return Err(BundleError::MediaType(bundle.media_type));
    }
    let vm = &bundle.verification_material;
    if vm.public_key.is_none() && (vm.certificate.is_some() || vm.x509_certificate_chain.is_some())
    {
        return Err(BundleError::Keyless);
    }
    let Some(env) = bundle.dsse_envelope else {
        return Err(if bundle.message_signature.is_some() {
            BundleError::NotDsse
        } else {
            BundleError::NoSignature
        });
    };
    open_envelope(&env, keys, digest, predicate_type)
}

/// Opens a DSSE envelope (in a bundle, or alone as cosign 2's `.att`
/// layers): the checks of [`open`] after the bundle's own.
pub fn open_envelope(
    env: &Envelope,
    keys: &[&PublicKey],
    digest: &Digest,
    predicate_type: &str,
) -> Result<Option<Opened>, BundleError> {
    if env.payload_type != INTOTO_PAYLOAD_TYPE {
        return Err(BundleError::PayloadType(env.payload_type.clone()));
    }
    if env.signatures.is_empty() {
        return Err(BundleError::NoSignature);
    }
    let payload = b64("payload", &env.payload)?;
    let message = pae(&env.payload_type, &payload);
    let mut key = None;
    for s in &env.signatures {
        let sig = b64("signature", &s.sig)?;
        if let Some(i) = keys.iter().position(|k| k.verify(&message, &sig)) {
            key = Some(i);
            break;
        }
    }
    let Some(key) = key else {
        return Ok(None);
    };
    let statement: Statement = serde_json::from_slice(&payload).map_err(BundleError::Statement)?;
    if statement.kind != STATEMENT_TYPE_V1 && statement.kind != STATEMENT_TYPE_V01 {
        return Err(BundleError::StatementType(statement.kind));
    }
    if statement.predicate_type != predicate_type {
        return Err(BundleError::PredicateType {
            got: statement.predicate_type,
            want: predicate_type.to_string(),
        });
    }
    if statement.subject_for(digest).is_none() {
        let named: Vec<String> = statement
            .subject
            .iter()
            .flat_map(|s| s.digest.iter().map(|(a, h)| format!("{a}:{h}")))
            .collect();
        return Err(BundleError::WrongSubject {
            named: if named.is_empty() {
                "empty".into()
            } else {
                named.join(", ")
            },
            want: digest.clone(),
        });
    }
    Ok(Some(Opened { key, statement }))
}

/// A descriptor as OCI manifests write it (go-containerregistry's field
/// order: mediaType, size, digest, annotations, artifactType).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciDescriptor {
    pub media_type: String,
    pub size: u64,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

/// The referrer manifest of a bundle (and, read back, of any referrer).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferrerManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: OciDescriptor,
    #[serde(default)]
    pub layers: Vec<OciDescriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<OciDescriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl ReferrerManifest {
    /// The manifest `cosign sign` v3 pushes for a bundle: `subject` is the
    /// signed image's descriptor, `created` RFC 3339 UTC.
    pub fn for_bundle(
        bundle: &[u8],
        subject: OciDescriptor,
        predicate_type: &str,
        created: &str,
    ) -> Self {
        ReferrerManifest {
            schema_version: 2,
            media_type: Some(crate::sigtag::OCI_MANIFEST_MEDIA_TYPE.into()),
            config: OciDescriptor {
                media_type: EMPTY_MEDIA_TYPE.into(),
                size: EMPTY_BLOB.len() as u64,
                digest: registry::sha256(EMPTY_BLOB).to_string(),
                annotations: None,
                artifact_type: Some(BUNDLE_MEDIA_TYPE.into()),
            },
            layers: vec![OciDescriptor {
                media_type: BUNDLE_MEDIA_TYPE.into(),
                size: bundle.len() as u64,
                digest: registry::sha256(bundle).to_string(),
                annotations: None,
                artifact_type: None,
            }],
            annotations: Some(BTreeMap::from([
                (ANNOTATION_CONTENT.into(), "dsse-envelope".into()),
                (ANNOTATION_PREDICATE_TYPE.into(), predicate_type.into()),
                (ANNOTATION_CREATED.into(), created.into()),
            ])),
            subject: Some(subject),
            artifact_type: Some(BUNDLE_MEDIA_TYPE.into()),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The artifact type: the manifest's, else its config's (OCI 1.1 rule).
    pub fn artifact_type(&self) -> Option<&str> {
        self.artifact_type
            .as_deref()
            .or(self.config.artifact_type.as_deref())
            .or(Some(self.config.media_type.as_str()).filter(|t| *t != EMPTY_MEDIA_TYPE))
    }

    /// The bundle layer, when this is a bundle referrer.
    pub fn bundle_layer(&self) -> Option<&OciDescriptor> {
        self.layers.iter().find(|l| {
            l.media_type == BUNDLE_MEDIA_TYPE || l.media_type == BUNDLE_MEDIA_TYPE_03_LEGACY
        })
    }
}

/// `org.opencontainers.image.created` as cosign writes it (RFC 3339, UTC, seconds).
pub fn created_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    now.format(&f).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::sha256_hex("ab".repeat(32)).unwrap()
    }

    #[test]
    fn pae_is_dsse_v1() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn statement_layout_as_cosign_writes_it() {
        let s = Statement::for_signature(&digest(), &BTreeMap::new());
        assert_eq!(
            String::from_utf8(serde_json::to_vec(&s).unwrap()).unwrap(),
            format!(
                r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"digest":{{"sha256":"{}"}},"annotations":{{}}}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{{}}}}"#,
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn sign_then_open_and_every_refusal() {
        let k = PrivateKey::generate().unwrap();
        let other = PrivateKey::generate().unwrap();
        let d = digest();
        let stmt = serde_json::to_vec(&Statement::for_signature(&d, &BTreeMap::new())).unwrap();
        let b = sign(&k, &stmt);
        let pk = k.public();
        let opk = other.public();
        let o = open(&b, &[&opk, &pk], &d, SIGN_PREDICATE_TYPE)
            .unwrap()
            .unwrap();
        assert_eq!(o.key, 1);
        assert_eq!(o.statement.predicate_type, SIGN_PREDICATE_TYPE);
        // Another key only: not verified.
        assert!(
            open(&b, &[&opk], &d, SIGN_PREDICATE_TYPE)
                .unwrap()
                .is_none()
        );
        // Another digest.
        let d2 = Digest::sha256_hex("cd".repeat(32)).unwrap();
        let e = open(&b, &[&pk], &d2, SIGN_PREDICATE_TYPE).unwrap_err();
        assert!(matches!(e, BundleError::WrongSubject { .. }), "{e}");
        // Another predicate type.
        let e = open(&b, &[&pk], &d, "https://cyclonedx.org/bom").unwrap_err();
        assert!(matches!(e, BundleError::PredicateType { .. }), "{e}");
        // A tampered payload: the signature no longer verifies.
        let mut bundle: Bundle = serde_json::from_slice(&b).unwrap();
        let env = bundle.dsse_envelope.as_mut().unwrap();
        let tampered = String::from_utf8(stmt.clone())
            .unwrap()
            .replace(&"ab".repeat(32), &"cd".repeat(32));
        env.payload = B64.encode(tampered);
        let tb = serde_json::to_vec(&bundle).unwrap();
        assert!(
            open(&tb, &[&pk], &d2, SIGN_PREDICATE_TYPE)
                .unwrap()
                .is_none()
        );
        // The hint is cosign's.
        let text = String::from_utf8(b).unwrap();
        assert!(
            text.starts_with(&format!(
                r#"{{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{{"publicKey":{{"hint":"{}"}}}},"dsseEnvelope":{{"payload":""#,
                key_hint(&pk)
            )),
            "{text}"
        );
    }

    #[test]
    fn referrer_manifest_layout() {
        let subject = OciDescriptor {
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            size: 100,
            digest: digest().to_string(),
            annotations: None,
            artifact_type: None,
        };
        let m = ReferrerManifest::for_bundle(
            b"{}",
            subject,
            SIGN_PREDICATE_TYPE,
            "2026-01-02T03:04:05Z",
        );
        let text = String::from_utf8(m.to_bytes()).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json"}},"layers":[{{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}}],"annotations":{{"dev.sigstore.bundle.content":"dsse-envelope","dev.sigstore.bundle.predicateType":"https://sigstore.dev/cosign/sign/v1","org.opencontainers.image.created":"2026-01-02T03:04:05Z"}},"subject":{{"mediaType":"application/vnd.oci.image.index.v1+json","size":100,"digest":"sha256:{}"}},"artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json"}}"#,
                "ab".repeat(32)
            )
        );
        assert_eq!(m.artifact_type(), Some(BUNDLE_MEDIA_TYPE));
        assert!(created_now().ends_with('Z'));
    }
}
