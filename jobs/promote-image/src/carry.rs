//! `--with-signatures`: what belongs to the digest comes along.
//!
//! - cosign's legacy tags of the digest, `sha256-<hex>.sig` and `.att`
//!   (manifest and blobs, byte for byte; when DST already holds a different
//!   one, the union of both layer lists, so no signature DST had is lost);
//! - every OCI 1.1 referrer of the digest and of each platform manifest
//!   (cosign 3 bundles, attestations, SBOMs), with its blobs, and then the
//!   referrers of those referrers (a signature of an SBOM), read through
//!   SRC's referrers API or its referrers tag schema and written with
//!   [`Registry::push_referrer_to`] (DST's API where it has one, else the
//!   tag schema's `sha256-<hex>` index, merged).
//!
//! Nothing is written that DST already lists: a re-run only reads.

use std::collections::HashSet;

use futures_util::{StreamExt, TryStreamExt, stream};
use kit::joblog::info;
use kit::reference::Digest;
use registry::{
    BlobCopy, Contents, Descriptor, Manifest, Referrer, ReferrersStore, Registry, referrers_tag,
};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::promote::{BlobTally, collect, is_foreign, short};

/// cosign's legacy tags beside a digest.
const LEGACY_SUFFIXES: [&str; 2] = [".sig", ".att"];

/// Referrers of referrers are followed this deep (a signature of an
/// attestation of the image is depth 2).
const MAX_DEPTH: usize = 4;

/// What was carried.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CarryTally {
    /// `.sig` / `.att` tags written at DST.
    pub legacy_written: Vec<String>,
    /// Of those, written as the union with a different one DST had.
    pub legacy_merged: usize,
    /// `.sig` / `.att` tags DST already had as SRC has them.
    pub legacy_unchanged: usize,
    /// Referrers pushed to DST.
    pub referrers_copied: usize,
    /// Referrers DST already listed.
    pub referrers_unchanged: usize,
    /// Blobs of carried artifacts.
    pub blobs: BlobTally,
}

impl CarryTally {
    /// Artifacts written to DST (tags and referrers).
    pub fn written(&self) -> usize {
        self.legacy_written.len() + self.referrers_copied
    }
}

/// One side of the copy.
pub struct Side<'a> {
    pub reg: &'a Registry,
    pub repo: &'a str,
}

/// Carries the `.sig`/`.att` tags of `top` and the referrers of `top` and
/// of its platform manifests from SRC to DST.
pub async fn carry(
    src: &Side<'_>,
    dst: &Side<'_>,
    top: &Manifest,
    parallel: usize,
) -> Result<CarryTally, Error> {
    let mut tally = CarryTally::default();
    for suffix in LEGACY_SUFFIXES {
        let tag = format!("{}{suffix}", referrers_tag(&top.digest));
        legacy_tag(src, dst, &tag, parallel, &mut tally).await?;
    }
    let mut subjects = vec![(top.digest.clone(), 0usize)];
    if let Contents::Index(entries) = top.contents()? {
        subjects.extend(
            entries
                .into_iter()
                .filter(|e| !e.attestation)
                .map(|e| (e.descriptor.digest, 0)),
        );
    }
    let mut seen: HashSet<Digest> = subjects.iter().map(|(d, _)| d.clone()).collect();
    let (mut src_store, mut dst_store) = (None, None);
    while let Some((subject, depth)) = subjects.pop() {
        let (listed, store) = src
            .reg
            .referrers_listed(src.repo, &subject, src_store)
            .await?;
        src_store = Some(store);
        if listed.is_empty() {
            continue;
        }
        let (at_dst, store) = dst
            .reg
            .referrers_listed(dst.repo, &subject, dst_store)
            .await?;
        dst_store = Some(store);
        for r in listed {
            if at_dst.iter().any(|d| d.digest == r.digest) {
                tally.referrers_unchanged += 1;
            } else {
                copy_referrer(src, dst, &subject, &r, dst_store, parallel, &mut tally).await?;
            }
            if depth + 1 < MAX_DEPTH && seen.insert(r.digest.clone()) {
                subjects.push((r.digest, depth + 1));
            }
        }
    }
    Ok(tally)
}

/// A `.sig` / `.att` tag: copied when DST lacks it, left alone when DST
/// has the same, the union of both when they differ.
async fn legacy_tag(
    src: &Side<'_>,
    dst: &Side<'_>,
    tag: &str,
    parallel: usize,
    tally: &mut CarryTally,
) -> Result<(), Error> {
    let Some(m) = src.reg.manifest(src.repo, tag).await? else {
        return Ok(());
    };
    let at_dst = dst.reg.manifest_head(dst.repo, tag).await?;
    let (bytes, merged) = match at_dst {
        Some(d) if d.digest == m.digest => {
            tally.legacy_unchanged += 1;
            return Ok(());
        }
        None => (m.bytes.clone(), false),
        Some(_) => {
            let theirs = dst.reg.manifest(dst.repo, tag).await?;
            match theirs
                .as_ref()
                .map(|t| union_of_layers(&m, t))
                .transpose()?
            {
                Some(u) if registry::sha256(&u) == theirs.as_ref().unwrap().digest => {
                    tally.legacy_unchanged += 1;
                    return Ok(());
                }
                Some(u) => (u, true),
                None => (m.bytes.clone(), false),
            }
        }
    };
    copy_blobs_of(src, dst, m.clone(), parallel, tally).await?;
    dst.reg
        .push_manifest(dst.repo, tag, &m.media_type, bytes)
        .await?;
    info(format!(
        "  {} {tag}{}",
        if merged { "merged" } else { "copied" },
        if merged {
            " (with the signatures the destination had)"
        } else {
            ""
        }
    ));
    tally.legacy_written.push(tag.to_string());
    tally.legacy_merged += usize::from(merged);
    Ok(())
}

/// One referrer: its blobs (and child manifests, for an index), then the
/// manifest as a referrer of `subject`.
async fn copy_referrer(
    src: &Side<'_>,
    dst: &Side<'_>,
    subject: &Digest,
    r: &Referrer,
    dst_store: Option<ReferrersStore>,
    parallel: usize,
    tally: &mut CarryTally,
) -> Result<(), Error> {
    let d = r.digest.to_string();
    let m = src.reg.manifest(src.repo, &d).await?.ok_or_else(|| {
        Error::Index(format!(
            "the source lists {d} as a referrer of {subject}, but {} does not have it",
            src.repo
        ))
    })?;
    copy_blobs_of(src, dst, m.clone(), parallel, tally).await?;
    dst.reg
        .push_referrer_to(dst.repo, &m.media_type, m.bytes, subject, dst_store)
        .await?;
    info(format!(
        "  referrer {} ({}) of {}",
        short(&r.digest),
        r.artifact_type.as_deref().unwrap_or(&r.media_type),
        short(subject)
    ));
    tally.referrers_copied += 1;
    Ok(())
}

/// The blobs of `m` and, for an index, its child manifests (pushed by
/// digest when DST lacks them); `m` itself is left to the caller.
async fn copy_blobs_of(
    src: &Side<'_>,
    dst: &Side<'_>,
    m: Manifest,
    parallel: usize,
    tally: &mut CarryTally,
) -> Result<(), Error> {
    let top = m.digest.clone();
    let nodes = collect(src.reg, src.repo, m, parallel).await?;
    let mut seen = HashSet::new();
    let mut blobs: Vec<Descriptor> = Vec::new();
    for n in &nodes {
        if let Contents::Image { config, layers } = &n.contents {
            for b in std::iter::once(config).chain(layers) {
                if !is_foreign(&b.media_type) && seen.insert(b.digest.clone()) {
                    blobs.push(b.clone());
                }
            }
        }
    }
    let results: Vec<BlobCopy> = stream::iter(blobs)
        .map(|b| async move {
            Ok::<_, Error>(dst.reg.copy_blob(dst.repo, src.reg, src.repo, &b).await?)
        })
        .buffer_unordered(parallel)
        .try_collect()
        .await?;
    for r in results {
        tally.blobs.add(&r);
    }
    for n in nodes.iter().filter(|n| n.manifest.digest != top) {
        let d = n.manifest.digest.to_string();
        if dst.reg.manifest_head(dst.repo, &d).await?.is_none() {
            dst.reg.push_manifest_raw(dst.repo, &d, &n.manifest).await?;
        }
    }
    Ok(())
}

/// A legacy signature manifest (an OCI image manifest whose layers are
/// signatures); fields not modelled are kept.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayeredManifest {
    layers: Vec<LayerDescriptor>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LayerDescriptor {
    digest: String,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// SRC's `.sig`/`.att` manifest with DST's layers appended that SRC lacks
/// (cosign appends a layer per signature; a union loses none).
fn union_of_layers(src: &Manifest, dst: &Manifest) -> Result<Vec<u8>, Error> {
    let parse = |m: &Manifest, side: &str| {
        serde_json::from_slice::<LayeredManifest>(&m.bytes).map_err(|e| {
            Error::Index(format!(
                "the {side} signature manifest {} cannot be read: {e}",
                m.digest
            ))
        })
    };
    let mut ours = parse(src, "source")?;
    let theirs = parse(dst, "destination")?;
    for l in theirs.layers {
        if !ours.layers.iter().any(|o| o.digest == l.digest) {
            ours.layers.push(l);
        }
    }
    serde_json::to_vec(&ours)
        .map_err(|e| Error::Index(format!("the merged signature manifest: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(layers: &[&str]) -> Manifest {
        let layers: Vec<serde_json::Value> = layers
            .iter()
            .map(|d| serde_json::json!({"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": d, "size": 1, "annotations": {"dev.cosignproject.cosign/signature": d}}))
            .collect();
        Manifest::new(
            registry::manifest::OCI_MANIFEST,
            serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": registry::manifest::OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:00", "size": 2},
                "layers": layers})).unwrap(),
        )
    }

    #[test]
    fn union_keeps_every_signature_once_and_is_stable() {
        let a = sig(&["sha256:aa", "sha256:bb"]);
        let b = sig(&["sha256:bb", "sha256:cc"]);
        let u = Manifest::new(
            registry::manifest::OCI_MANIFEST,
            union_of_layers(&a, &b).unwrap(),
        );
        let layers: Vec<String> = serde_json::from_slice::<LayeredManifest>(&u.bytes)
            .unwrap()
            .layers
            .into_iter()
            .map(|l| l.digest)
            .collect();
        assert_eq!(layers, ["sha256:aa", "sha256:bb", "sha256:cc"]);
        // Merging again with the union changes nothing (a re-run writes nothing).
        assert_eq!(union_of_layers(&a, &u).unwrap(), u.bytes);
        assert!(
            String::from_utf8(u.bytes)
                .unwrap()
                .contains("cosign/signature")
        );
    }
}
