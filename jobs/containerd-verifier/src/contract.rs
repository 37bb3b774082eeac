//! containerd's side of the contract (`pkg/imageverifier/bindir` in
//! containerd v2.4.2, `docs/image-verification.md`): what arrives on stdin
//! and what the flags may say. Pure: bytes in, typed values out.

use std::collections::BTreeMap;

use kit::reference::Digest;
use serde::Deserialize;

/// What containerd v2.x writes on stdin today: the image's OCI descriptor.
pub const OCI_DESCRIPTOR: &str = "application/vnd.oci.descriptor.v1+json";
/// What a containerd with `verify_on_run` writes (containerd PR #12541; not
/// in v2.4.2): the descriptor wrapped with the request's context.
pub const VERIFIER_INPUT_V1: &str = "application/vnd.containerd.image-verifier.input.v1+json";

/// The most stdin bytes read. A descriptor is a few hundred bytes; containerd
/// limits the verifier's stdout and stderr to 32 KiB each, and so do we for
/// stdin.
pub const MAX_STDIN_BYTES: usize = 32 * 1024;

/// The most reason bytes containerd keeps from stdout (`outputLimitBytes`).
pub const MAX_REASON_BYTES: usize = 32 * 1024;

/// `-operation`, sent only by a containerd with `verify_on_run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Pull,
    Run,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Pull => "pull",
            Operation::Run => "run",
        }
    }
}

/// An OCI content descriptor. Fields this verifier does not use (`urls`,
/// `data`, `platform`, `artifactType`) are allowed and ignored, as the OCI
/// spec lets descriptors grow.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// `application/vnd.containerd.image-verifier.input.v1+json`: the
/// descriptor and the request's context. Only the descriptor is used; the
/// context (pod annotations, namespace) is whatever the deployer wrote and
/// proves nothing about the image.
#[derive(Debug, Clone, Deserialize)]
pub struct VerifierInput {
    pub descriptor: Descriptor,
}

/// Why stdin or a flag does not fit the contract (exit 2, a refusal).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContractError {
    #[error(
        "-stdin-media-type {0:?} is not one this verifier reads ({OCI_DESCRIPTOR}, {VERIFIER_INPUT_V1}); a newer containerd? refusing rather than guessing"
    )]
    UnknownMediaType(String),
    #[error(
        "-operation {0:?} is not pull or run; a newer containerd? refusing rather than guessing"
    )]
    UnknownOperation(String),
    #[error("-digest {0:?} is not a digest (sha256:<64 hex>)")]
    BadDigest(String),
    #[error("stdin is larger than {MAX_STDIN_BYTES} bytes; refusing")]
    StdinTooLarge,
    #[error("stdin is not a {media_type} JSON document: {reason}")]
    NotJson { media_type: String, reason: String },
    #[error(
        "the descriptor on stdin names digest {stdin}, but -digest is {flag}; refusing a pull whose two names disagree"
    )]
    DigestMismatch { stdin: String, flag: String },
}

pub fn parse_operation(s: &str) -> Result<Operation, ContractError> {
    match s {
        "pull" => Ok(Operation::Pull),
        "run" => Ok(Operation::Run),
        other => Err(ContractError::UnknownOperation(other.to_string())),
    }
}

pub fn parse_digest(s: &str) -> Result<Digest, ContractError> {
    s.parse::<Digest>()
        .map_err(|_| ContractError::BadDigest(s.to_string()))
}

/// Reads stdin as `media_type` and checks that it names `digest`.
pub fn read_descriptor(
    media_type: &str,
    stdin: &[u8],
    digest: &Digest,
) -> Result<Descriptor, ContractError> {
    if stdin.len() > MAX_STDIN_BYTES {
        return Err(ContractError::StdinTooLarge);
    }
    let not_json = |e: serde_json::Error| ContractError::NotJson {
        media_type: media_type.to_string(),
        reason: e.to_string(),
    };
    let descriptor = match media_type {
        OCI_DESCRIPTOR => serde_json::from_slice::<Descriptor>(stdin).map_err(not_json)?,
        VERIFIER_INPUT_V1 => {
            serde_json::from_slice::<VerifierInput>(stdin)
                .map_err(not_json)?
                .descriptor
        }
        other => return Err(ContractError::UnknownMediaType(other.to_string())),
    };
    if descriptor.digest != digest.to_string() {
        return Err(ContractError::DigestMismatch {
            stdin: descriptor.digest,
            flag: digest.to_string(),
        });
    }
    Ok(descriptor)
}

/// One line, at most [`MAX_REASON_BYTES`], cut on a character boundary:
/// what containerd shows as the reason.
pub fn reason_line(s: &str) -> String {
    let mut line = s.replace(['\r', '\n'], " ");
    if line.len() > MAX_REASON_BYTES - 16 {
        let mut cut = MAX_REASON_BYTES - 16;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str(" …");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Digest {
        parse_digest(&format!("sha256:{}", "a".repeat(64))).unwrap()
    }

    #[test]
    fn descriptor_and_wrapper() {
        let digest = d();
        let desc = format!(
            r#"{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{digest}","size":42,"platform":{{"os":"linux"}}}}"#
        );
        let got = read_descriptor(OCI_DESCRIPTOR, desc.as_bytes(), &digest).unwrap();
        assert_eq!(got.size, 42);
        let wrapped = format!(r#"{{"descriptor":{desc},"annotations":{{"a":"b"}}}}"#);
        read_descriptor(VERIFIER_INPUT_V1, wrapped.as_bytes(), &digest).unwrap();
        // The wrapper's media type with a bare descriptor: no `descriptor`.
        let e = read_descriptor(VERIFIER_INPUT_V1, desc.as_bytes(), &digest).unwrap_err();
        assert!(matches!(e, ContractError::NotJson { .. }), "{e}");
    }

    #[test]
    fn refusals() {
        let digest = d();
        let e = read_descriptor(OCI_DESCRIPTOR, b"not json", &digest).unwrap_err();
        assert!(e.to_string().starts_with("stdin is not a"), "{e}");
        let other = format!(
            r#"{{"mediaType":"x","digest":"sha256:{}","size":1}}"#,
            "b".repeat(64)
        );
        let e = read_descriptor(OCI_DESCRIPTOR, other.as_bytes(), &digest).unwrap_err();
        assert!(matches!(e, ContractError::DigestMismatch { .. }), "{e}");
        let e = read_descriptor("application/json", b"{}", &digest).unwrap_err();
        assert!(e.to_string().contains("newer containerd"), "{e}");
        assert_eq!(
            parse_operation("create").unwrap_err(),
            ContractError::UnknownOperation("create".into())
        );
        assert!(parse_digest("sha256:abc").is_err());
        let big = vec![b' '; MAX_STDIN_BYTES + 1];
        assert_eq!(
            read_descriptor(OCI_DESCRIPTOR, &big, &digest).unwrap_err(),
            ContractError::StdinTooLarge
        );
    }

    #[test]
    fn reason_is_one_bounded_line() {
        assert_eq!(reason_line("a\nb"), "a b");
        let long = "é".repeat(MAX_REASON_BYTES);
        assert!(reason_line(&long).len() <= MAX_REASON_BYTES);
    }
}
