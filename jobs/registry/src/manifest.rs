//! Manifests as bytes plus what they reference, parsed with oci-client's
//! OCI models (which also read Docker schema 2 manifests and lists: the
//! shapes are the same).
//!
//! The bytes are never re-serialized: a manifest's digest is the sha256 of
//! the exact bytes the registry returned, and those bytes are what gets
//! pushed elsewhere.

use kit::reference::Digest;
use oci_client::manifest::{OciImageIndex, OciImageManifest};

use crate::error::{Error, Result};
use sha2::{Digest as _, Sha256};

pub use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE as DOCKER_MANIFEST_LIST,
    IMAGE_MANIFEST_MEDIA_TYPE as DOCKER_MANIFEST, OCI_IMAGE_INDEX_MEDIA_TYPE as OCI_INDEX,
    OCI_IMAGE_MEDIA_TYPE as OCI_MANIFEST,
};

/// The media types we ask for (`Accept`) when reading a manifest.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Manifests larger than this are refused (the distribution spec's 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// The sha256 digest of some bytes.
pub fn sha256(bytes: &[u8]) -> Digest {
    Digest::sha256_hex(hex::encode(Sha256::digest(bytes))).expect("64 lowercase hex characters")
}

/// A manifest exactly as stored: its bytes, media type and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl Manifest {
    /// Wraps bytes, computing their digest.
    pub fn new(media_type: impl Into<String>, bytes: Vec<u8>) -> Self {
        Manifest {
            digest: sha256(&bytes),
            media_type: media_type.into(),
            bytes,
        }
    }

    /// Parses what this manifest references.
    pub fn contents(&self) -> Result<Contents> {
        Contents::parse(&self.media_type, &self.bytes)
    }
}

/// A content descriptor: a blob or a manifest by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// One entry of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub descriptor: Descriptor,
    /// `os/arch[/variant]`, or `None` when the entry has no platform.
    pub platform: Option<String>,
    /// Whether this is a BuildKit attestation manifest
    /// (`vnd.docker.reference.type: attestation-manifest`).
    pub attestation: bool,
}

/// What a manifest references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    /// An image index / manifest list: other manifests.
    Index(Vec<IndexEntry>),
    /// An image manifest: a config blob and layer blobs.
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

impl Contents {
    /// Parses by media type, falling back to the JSON's shape when the
    /// registry sent a generic type.
    pub fn parse(media_type: &str, bytes: &[u8]) -> Result<Contents> {
        /// What decides how to read the rest.
        #[derive(serde::Deserialize)]
        struct Probe {
            #[serde(rename = "schemaVersion")]
            schema_version: Option<i64>,
            manifests: Option<serde::de::IgnoredAny>,
        }
        let bad = |e: &dyn std::fmt::Display| {
            Error::Manifest(format!("manifest ({media_type}) cannot be parsed: {e}"))
        };
        let probe: Probe = serde_json::from_slice(bytes).map_err(|e| bad(&e))?;
        let is_index = match media_type {
            OCI_INDEX | DOCKER_MANIFEST_LIST => true,
            OCI_MANIFEST | DOCKER_MANIFEST => false,
            _ => probe.manifests.is_some(),
        };
        if probe.schema_version == Some(1) {
            return Err(Error::Manifest(
                "manifest is Docker schema 1, which registries no longer accept; rebuild the image"
                    .into(),
            ));
        }
        if is_index {
            let index: OciImageIndex = serde_json::from_slice(bytes).map_err(|e| bad(&e))?;
            let entries = index
                .manifests
                .into_iter()
                .map(|m| {
                    let attestation = m
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get("vnd.docker.reference.type"))
                        .is_some_and(|t| t == "attestation-manifest");
                    let platform = m.platform.as_ref().map(|p| {
                        let mut s = format!("{}/{}", p.os, p.architecture);
                        if let Some(v) = p.variant.as_deref().filter(|v| !v.is_empty()) {
                            s.push('/');
                            s.push_str(v);
                        }
                        s
                    });
                    Ok(IndexEntry {
                        descriptor: descriptor(m.media_type, &m.digest, m.size)?,
                        platform,
                        attestation,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Contents::Index(entries))
        } else {
            let m: OciImageManifest = serde_json::from_slice(bytes).map_err(|e| bad(&e))?;
            let config = descriptor(m.config.media_type, &m.config.digest, m.config.size)?;
            let layers = m
                .layers
                .into_iter()
                .map(|l| descriptor(l.media_type, &l.digest, l.size))
                .collect::<Result<Vec<_>>>()?;
            Ok(Contents::Image { config, layers })
        }
    }
}

fn descriptor(media_type: String, digest: &str, size: i64) -> Result<Descriptor> {
    let digest: Digest = digest
        .parse()
        .map_err(|e| Error::Manifest(format!("manifest references an invalid digest: {e}")))?;
    let size = u64::try_from(size)
        .map_err(|_| Error::Manifest(format!("manifest gives {digest} a negative size")))?;
    Ok(Descriptor {
        media_type,
        digest,
        size,
    })
}

/// The `mediaType` field of a manifest's JSON, if it has one.
pub fn media_type_in(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Typed>(bytes).ok()?.media_type
}

/// Whether a media type is a manifest (index or image) rather than a blob.
pub fn is_manifest_type(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_INDEX | OCI_MANIFEST | DOCKER_MANIFEST | DOCKER_MANIFEST_LIST
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn digest_of_bytes() {
        assert_eq!(
            sha256(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parses_index_with_platforms_and_attestation() {
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":10,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":11,"platform":{{"os":"unknown","architecture":"unknown"}},
              "annotations":{{"vnd.docker.reference.type":"attestation-manifest","vnd.docker.reference.digest":"{D1}"}}}}]}}"#
        );
        let Contents::Index(e) = Contents::parse(OCI_INDEX, idx.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].platform.as_deref(), Some("linux/arm64/v8"));
        assert!(!e[0].attestation);
        assert!(e[1].attestation);
        assert_eq!(e[1].descriptor.size, 11);
    }

    #[test]
    fn parses_image_manifest_and_shape_fallback() {
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{D2}","size":5}}]}}"#
        );
        let Contents::Image { config, layers } =
            Contents::parse("application/json", m.as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(config.digest.to_string(), D1);
        assert_eq!(layers[0].size, 5);
        let e = Contents::parse(OCI_MANIFEST, b"{not json").unwrap_err();
        assert!(e.to_string().contains("cannot be parsed"), "{e}");
        assert_eq!(e.exit_kind(), kit::ExitKind::Remote);
        let e = Contents::parse(OCI_MANIFEST, br#"{"schemaVersion":1}"#).unwrap_err();
        assert!(e.to_string().contains("schema 1"));
    }
}
