//! The simple-signing payload cosign signs (sigstore/sigstore
//! `pkg/signature/payload`, type "cosign container image signature").
//!
//! The bytes are laid out as Go's `encoding/json` writes them for cosign, so
//! a payload we write for a given image and annotations is byte-identical to
//! cosign's: keys in struct order (`critical`, `optional`), map keys sorted,
//! `optional` is `null` without annotations, and `<`, `>`, `&` escaped as
//! `\u003c`, `\u003e`, `\u0026`. Identical payloads let cosign's and our
//! duplicate detection recognize each other's signatures.

use std::collections::BTreeMap;

use kit::reference::{Digest, ImageRef};
use serde::{Deserialize, Serialize};

pub const SIGNATURE_TYPE: &str = "cosign container image signature";

/// A payload blob that is not a simple-signing document.
#[derive(Debug, thiserror::Error)]
#[error("payload is not a simple-signing document: {0}")]
pub struct PayloadError(#[source] serde_json::Error);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimpleSigning {
    pub critical: Critical,
    pub optional: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Critical {
    pub identity: Identity,
    pub image: Image,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

/// The `docker-reference` cosign writes: go-containerregistry's
/// `Repository.Name()`, which spells Docker Hub `index.docker.io`.
pub fn docker_reference(image: &ImageRef) -> String {
    let registry = if image.registry == kit::reference::DOCKER_HUB {
        "index.docker.io"
    } else {
        &image.registry
    };
    format!("{registry}/{}", image.repository)
}

impl SimpleSigning {
    pub fn new(image: &ImageRef, digest: &Digest, annotations: &BTreeMap<String, String>) -> Self {
        SimpleSigning {
            critical: Critical {
                identity: Identity {
                    docker_reference: docker_reference(image),
                },
                image: Image {
                    docker_manifest_digest: digest.to_string(),
                },
                kind: SIGNATURE_TYPE.to_string(),
            },
            optional: if annotations.is_empty() {
                None
            } else {
                Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                        .collect(),
                )
            },
        }
    }

    /// The exact bytes that are signed and pushed as the layer blob.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain strings and maps cannot fail.
        let json = serde_json::to_string(self).unwrap_or_default();
        go_html_escape(&json).into_bytes()
    }

    /// Parses a payload blob. Unknown fields are ignored, as cosign does.
    pub fn parse(bytes: &[u8]) -> Result<Self, PayloadError> {
        serde_json::from_slice(bytes).map_err(PayloadError)
    }
}

/// Go's `encoding/json` escapes these three characters inside strings; they
/// cannot occur outside strings in JSON, so replacing them everywhere is exact.
fn go_html_escape(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn bytes_match_cosign_layout() {
        let image = ImageRef::parse("alpine:3.20").unwrap();
        let digest = Digest::sha256_hex(HEX).unwrap();
        let p = SimpleSigning::new(&image, &digest, &BTreeMap::new());
        let want = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"index.docker.io/library/alpine"}},"image":{{"docker-manifest-digest":"sha256:{HEX}"}},"type":"cosign container image signature"}},"optional":null}}"#
        );
        assert_eq!(String::from_utf8(p.to_bytes()).unwrap(), want);
        assert_eq!(SimpleSigning::parse(want.as_bytes()).unwrap(), p);
    }

    #[test]
    fn annotations_sorted_and_go_escaped() {
        let image = ImageRef::parse("localhost:5000/team/app:v1").unwrap();
        let digest = Digest::sha256_hex(HEX).unwrap();
        let ann = BTreeMap::from([
            ("z".to_string(), "1".to_string()),
            ("a".to_string(), "<b&c>".to_string()),
        ]);
        let text = String::from_utf8(SimpleSigning::new(&image, &digest, &ann).to_bytes()).unwrap();
        assert!(
            text.contains(r#""docker-reference":"localhost:5000/team/app""#),
            "{text}"
        );
        assert!(
            text.ends_with(r#""optional":{"a":"\u003cb\u0026c\u003e","z":"1"}}"#),
            "{text}"
        );
        let back = SimpleSigning::parse(text.as_bytes()).unwrap();
        assert_eq!(back.optional.unwrap()["a"], "<b&c>");
    }

    #[test]
    fn foreign_payloads_parse() {
        // Extra fields and a non-string optional value, as other signers write.
        let text = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"r/x"}},"image":{{"docker-manifest-digest":"sha256:{HEX}"}},"type":"cosign container image signature","extra":1}},"optional":{{"n":2}}}}"#
        );
        let p = SimpleSigning::parse(text.as_bytes()).unwrap();
        assert_eq!(
            p.critical.image.docker_manifest_digest,
            format!("sha256:{HEX}")
        );
        assert!(SimpleSigning::parse(b"{}").is_err());
    }
}
