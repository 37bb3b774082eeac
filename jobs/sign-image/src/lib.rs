//! sign-image: cosign-compatible signing and verification of container
//! image digests with ECDSA P-256 keys, in cosign's `.sig` tag format.
//!
//! - [`keys`]: cosign's key formats, ECDSA P-256 signing and verifying;
//! - [`keyref`]: `--key` as a path or `env://VAR`;
//! - [`payload`]: the simple-signing payload, byte for byte as cosign writes it;
//! - [`sigtag`]: the `sha256-<hex>.sig` manifest, append and dedupe;
//! - [`ops`]: sign, verify, generate-key-pair against a registry;
//! - [`cli`]: what the commands print.

pub mod cli;
pub mod keyref;
pub mod keys;
pub mod ops;
pub mod payload;
pub mod sigtag;
