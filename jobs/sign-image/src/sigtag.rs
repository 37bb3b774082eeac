//! cosign's `.sig` tag format: the signatures of image digest
//! `sha256:<hex>` live in the same repository under the tag
//! `sha256-<hex>.sig`, as an OCI image manifest with one layer per
//! signature. Each layer's blob is a simple-signing payload
//! (media type [`SIMPLESIGNING_MEDIA_TYPE`]) and its annotation
//! [`SIGNATURE_ANNOTATION`] holds the base64 signature of that blob.
//!
//! The manifest is laid out as cosign (go-containerregistry) writes it:
//! descriptor fields in the order `mediaType`, `size`, `digest`,
//! `annotations`. The config is the constant 2-byte `{}` ([`CONFIG`]), as
//! sigstore-rs's cosign client writes it (`CONFIG_DATA`), not
//! go-containerregistry's config listing every layer in `rootfs.diff_ids`:
//! a constant blob is already in the repository after its first signature,
//! so pushing it is a single mount request instead of an upload (see
//! [`registry::Registry::push_shared_blob`]). cosign's verifier reads only
//! the manifest's layers and their annotations, never the config; when
//! cosign appends to such an image it parses `{}` as an empty config.

use std::collections::BTreeMap;

use kit::reference::Digest;
use serde::{Deserialize, Serialize};

use crate::keys::PublicKey;

pub const SIMPLESIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The signature image's config blob, the same for every signature (see the
/// module comment: one request to push instead of two, sigstore-rs precedent).
pub const CONFIG: &[u8] = b"{}";
/// `sha256` of [`CONFIG`].
pub const CONFIG_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
/// Payload blobs bigger than this are not read (cosign payloads are ~250 bytes).
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// At most this many signature layers are checked by verify (each costs a
/// blob fetch); a `.sig` manifest with more is refused (fails closed).
pub const MAX_SIGNATURE_LAYERS: usize = 256;

/// A `.sig` manifest that cannot be read as an OCI image manifest.
#[derive(Debug, thiserror::Error)]
#[error("signature manifest cannot be parsed: {0}")]
pub struct SigManifestError(#[source] serde_json::Error);

/// `sha256:<hex>` → `sha256-<hex>.sig`.
pub fn signature_tag(digest: &Digest) -> String {
    format!("{}-{}.sig", digest.algorithm(), digest.hex())
}

/// cosign 2's attestation layers: a DSSE envelope each.
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The layer annotation naming an attestation's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";

/// `sha256:<hex>` → `sha256-<hex>.att` (cosign 2's attestations).
pub fn attestation_tag(digest: &Digest) -> String {
    format!("{}-{}.att", digest.algorithm(), digest.hex())
}

/// A content descriptor with annotations (the registry crate's
/// `Descriptor` has none; signatures live in them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub size: u64,
    pub digest: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Fields we do not interpret (`urls`, `artifactType`, …) are kept.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Layer {
    pub fn signature(&self) -> Option<&str> {
        self.annotations
            .as_ref()?
            .get(SIGNATURE_ANNOTATION)
            .map(String::as_str)
    }
    pub fn is_simplesigning(&self) -> bool {
        self.media_type == SIMPLESIGNING_MEDIA_TYPE
    }
}

/// The signature manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigManifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", skip_serializing_if = "Option::is_none", default)]
    pub media_type: Option<String>,
    pub config: Layer,
    #[serde(default)]
    pub layers: Vec<Layer>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// What [`SigManifest::append`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// A layer with the same payload and a signature by the same key was
    /// already there (cosign's duplicate rule); nothing to push.
    Duplicate,
    /// The new manifest bytes; their config is [`CONFIG`].
    New { manifest: Vec<u8> },
}

impl SigManifest {
    pub fn parse(bytes: &[u8]) -> Result<Self, SigManifestError> {
        serde_json::from_slice(bytes).map_err(SigManifestError)
    }

    fn empty() -> Self {
        SigManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST_MEDIA_TYPE.to_string()),
            config: config_descriptor(),
            layers: Vec::new(),
            annotations: None,
            extra: Default::default(),
        }
    }

    /// Adds a signature layer for `payload` to `existing` (or a new manifest).
    ///
    /// Duplicate rule, as cosign's `DupeDetector`: an existing simple-signing
    /// layer with the same payload digest whose signature verifies with
    /// `key` is the same signature (ECDSA signatures by other signers are
    /// randomized, so the bytes may differ; ours are deterministic).
    pub fn append(
        existing: Option<SigManifest>,
        payload: &[u8],
        signature_b64: &str,
        key: &PublicKey,
    ) -> Appended {
        let payload_digest = registry::sha256(payload).to_string();
        let mut m = existing.unwrap_or_else(Self::empty);
        let dup = m.layers.iter().any(|l| {
            l.is_simplesigning()
                && l.digest == payload_digest
                && l.signature().is_some_and(|s| key.verify_base64(payload, s))
        });
        if dup {
            return Appended::Duplicate;
        }
        m.layers.push(Layer {
            media_type: SIMPLESIGNING_MEDIA_TYPE.into(),
            size: payload.len() as u64,
            digest: payload_digest,
            annotations: Some(BTreeMap::from([(
                SIGNATURE_ANNOTATION.to_string(),
                signature_b64.to_string(),
            )])),
            extra: Default::default(),
        });
        m.schema_version = 2;
        m.media_type = Some(OCI_MANIFEST_MEDIA_TYPE.into());
        // Also when appending to cosign's image, whose config lists the
        // layers' diff ids: `{}` replaces it (cosign never reads it).
        m.config = config_descriptor();
        let manifest = serde_json::to_vec(&m).unwrap_or_default();
        Appended::New { manifest }
    }
}

impl SigManifest {
    /// Adds an attestation layer (a DSSE envelope blob) as cosign 2 writes
    /// it: media type [`DSSE_MEDIA_TYPE`], annotations `predicateType` and
    /// an empty signature annotation. `None` when a layer with the same
    /// envelope is already there (ours are deterministic).
    pub fn append_attestation(
        existing: Option<SigManifest>,
        envelope: &[u8],
        predicate_type: &str,
    ) -> Option<Vec<u8>> {
        let digest = registry::sha256(envelope).to_string();
        let mut m = existing.unwrap_or_else(Self::empty);
        if m.layers.iter().any(|l| l.digest == digest) {
            return None;
        }
        m.layers.push(Layer {
            media_type: DSSE_MEDIA_TYPE.into(),
            size: envelope.len() as u64,
            digest,
            annotations: Some(BTreeMap::from([
                (SIGNATURE_ANNOTATION.to_string(), String::new()),
                (
                    PREDICATE_TYPE_ANNOTATION.to_string(),
                    predicate_type.to_string(),
                ),
            ])),
            extra: Default::default(),
        });
        m.schema_version = 2;
        m.media_type = Some(OCI_MANIFEST_MEDIA_TYPE.into());
        m.config = config_descriptor();
        Some(serde_json::to_vec(&m).unwrap_or_default())
    }
}

fn config_descriptor() -> Layer {
    Layer {
        media_type: OCI_CONFIG_MEDIA_TYPE.into(),
        size: CONFIG.len() as u64,
        digest: CONFIG_DIGEST.into(),
        annotations: None,
        extra: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;

    #[test]
    fn tag_name() {
        let d = Digest::sha256_hex("ab".repeat(32)).unwrap();
        assert_eq!(signature_tag(&d), format!("sha256-{}.sig", "ab".repeat(32)));
    }

    #[test]
    fn append_builds_cosign_layout_and_dedupes() {
        let k = PrivateKey::generate().unwrap();
        let payload = br#"{"critical":{}}"#;
        let sig = k.sign_base64(payload);
        let Appended::New { manifest } = SigManifest::append(None, payload, &sig, &k.public())
        else {
            panic!("first signature must be new")
        };
        let text = String::from_utf8(manifest.clone()).unwrap();
        // Exactly what sigstore-rs writes for its config: `{}` as an OCI config.
        assert!(text.starts_with(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[{"#), "{text}");
        assert!(text.contains(r#""layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":15,"digest":"sha256:"#), "{text}");
        let m = SigManifest::parse(&manifest).unwrap();
        assert_eq!(m.config.digest, registry::sha256(CONFIG).to_string());
        assert_eq!(m.config.size, 2);
        assert_eq!(m.layers[0].signature(), Some(sig.as_str()));

        // Same key + payload → duplicate, even with a different (randomized) signature encoding.
        assert_eq!(
            SigManifest::append(Some(m.clone()), payload, &sig, &k.public()),
            Appended::Duplicate
        );
        // Another key → appended, first layer kept byte for byte, same config.
        let k2 = PrivateKey::generate().unwrap();
        let Appended::New { manifest: m2 } = SigManifest::append(
            Some(m.clone()),
            payload,
            &k2.sign_base64(payload),
            &k2.public(),
        ) else {
            panic!()
        };
        let m2 = SigManifest::parse(&m2).unwrap();
        assert_eq!(m2.layers.len(), 2);
        assert_eq!(m2.layers[0], m.layers[0]);
        assert_eq!(m2.config, m.config);
    }

    #[test]
    fn config_digest_constant_is_right() {
        assert_eq!(registry::sha256(CONFIG).to_string(), CONFIG_DIGEST);
    }

    #[test]
    fn appending_to_cosigns_diff_ids_config_writes_the_constant_config() {
        // As cosign (go-containerregistry) writes a first signature.
        let k = PrivateKey::generate().unwrap();
        let old_payload = b"cosign-payload";
        let old_digest = registry::sha256(old_payload).to_string();
        let cfg = format!(
            r#"{{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{{"created":"0001-01-01T00:00:00Z"}}],"os":"","rootfs":{{"type":"layers","diff_ids":["{old_digest}"]}},"config":{{}}}}"#
        );
        let text = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":{},"digest":"{}"}},"layers":[{{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":14,"digest":"{old_digest}","annotations":{{"dev.cosignproject.cosign/signature":"{}"}}}}]}}"#,
            cfg.len(),
            registry::sha256(cfg.as_bytes()),
            k.sign_base64(old_payload)
        );
        let old = SigManifest::parse(text.as_bytes()).unwrap();
        let k2 = PrivateKey::generate().unwrap();
        let Appended::New { manifest } =
            SigManifest::append(Some(old.clone()), b"p", &k2.sign_base64(b"p"), &k2.public())
        else {
            panic!()
        };
        let new = SigManifest::parse(&manifest).unwrap();
        assert_eq!(new.layers[0], old.layers[0]);
        assert_eq!(new.layers.len(), 2);
        assert_eq!(new.config.digest, CONFIG_DIGEST);
        assert_eq!(new.config.size, 2);
    }

    #[test]
    fn foreign_fields_survive() {
        let text = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":3,"digest":"sha256:aaaa","annotations":{"dev.cosignproject.cosign/signature":"x","dev.sigstore.cosign/bundle":"{}"}}],"subject":{"x":1}}"#;
        let m = SigManifest::parse(text.as_bytes()).unwrap();
        assert_eq!(m.extra["subject"]["x"], 1);
        let k = PrivateKey::generate().unwrap();
        let Appended::New { manifest, .. } =
            SigManifest::append(Some(m), b"p", &k.sign_base64(b"p"), &k.public())
        else {
            panic!()
        };
        let back = SigManifest::parse(&manifest).unwrap();
        assert_eq!(
            back.layers[0].annotations.as_ref().unwrap()["dev.sigstore.cosign/bundle"],
            "{}"
        );
        assert!(back.extra.contains_key("subject"));
    }
}
