//! `--with-signatures`: what belongs to the digest comes along.
//!
//! - cosign's legacy tags of the digest and of each platform manifest,
//!   `sha256-<hex>.sig` and `.att`
//!   (manifest and blobs, byte for byte; when DST already holds a different
//!   one, the union of both layer lists, so no signature DST had is lost);
//! - every OCI 1.1 referrer of the digest and of each platform manifest
//!   (cosign 3 bundles, attestations, SBOMs), with its blobs, and then the
//!   referrers of those referrers (a signature of an SBOM), read through
//!   SRC's referrers API or its referrers tag schema and written with
//!   [`Registry::push_referrers_to`] (DST's API where it has one, else the
//!   tag schema's `sha256-<hex>` index, merged once per subject).
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
    /// Referrers SRC lists but does not have (skipped).
    pub referrers_dangling: usize,
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

/// Carries the `.sig`/`.att` tags and the referrers of `top` and of its
/// platform manifests from SRC to DST.
pub async fn carry(
    src: &Side<'_>,
    dst: &Side<'_>,
    top: &Manifest,
    parallel: usize,
) -> Result<CarryTally, Error> {
    let mut c = Carrier {
        src,
        dst,
        parallel,
        tally: CarryTally::default(),
        blobs_at_dst: HashSet::new(),
    };
    let mut subjects = vec![(top.digest.clone(), 0usize)];
    if let Contents::Index(entries) = top.contents()? {
        subjects.extend(
            entries
                .into_iter()
                .filter(|e| !e.attestation)
                .map(|e| (e.descriptor.digest, 0)),
        );
    }
    // `cosign sign --recursive` (and sign-image's) signs each platform
    // manifest too: their tags come along like the index's.
    for (subject, _) in &subjects {
        for suffix in LEGACY_SUFFIXES {
            c.legacy_tag(&format!("{}{suffix}", referrers_tag(subject)))
                .await?;
        }
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
        let mut missing = Vec::new();
        for r in listed {
            if at_dst.iter().any(|d| d.digest == r.digest) {
                c.tally.referrers_unchanged += 1;
            } else {
                missing.push(r.clone());
            }
            if depth + 1 < MAX_DEPTH && seen.insert(r.digest.clone()) {
                subjects.push((r.digest, depth + 1));
            }
        }
        if !missing.is_empty() {
            c.referrers(&subject, &missing, store).await?;
        }
    }
    Ok(c.tally)
}

/// One carrying run: the two sides, what was done, which blobs DST is
/// known to have (artifacts share blobs, e.g. the empty `{}` config: one
/// HEAD each, not one per artifact).
struct Carrier<'a> {
    src: &'a Side<'a>,
    dst: &'a Side<'a>,
    parallel: usize,
    tally: CarryTally,
    blobs_at_dst: HashSet<Digest>,
}

impl Carrier<'_> {
    /// A `.sig` / `.att` tag: copied when DST lacks it, left alone when DST
    /// has the same, the union of both when they differ.
    async fn legacy_tag(&mut self, tag: &str) -> Result<(), Error> {
        let (src, dst) = (self.src, self.dst);
        let Some(m) = src.reg.manifest(src.repo, tag).await? else {
            return Ok(());
        };
        let (bytes, merged) = match dst.reg.manifest_head(dst.repo, tag).await? {
            Some(d) if d.digest == m.digest => {
                self.tally.legacy_unchanged += 1;
                return Ok(());
            }
            None => (m.bytes.clone(), false),
            Some(_) => match dst.reg.manifest(dst.repo, tag).await? {
                Some(theirs) => {
                    let union = union_of_layers(&m, &theirs)?;
                    if registry::sha256(&union) == theirs.digest {
                        self.tally.legacy_unchanged += 1;
                        return Ok(());
                    }
                    (union, true)
                }
                None => (m.bytes.clone(), false),
            },
        };
        self.copy_blobs_of(m.clone()).await?;
        dst.reg
            .push_manifest(dst.repo, tag, &m.media_type, bytes)
            .await?;
        info(if merged {
            format!("  merged {tag} (with the signatures the destination had)")
        } else {
            format!("  copied {tag}")
        });
        self.tally.legacy_written.push(tag.to_string());
        self.tally.legacy_merged += usize::from(merged);
        Ok(())
    }

    /// Referrers of one subject DST lacks: their blobs (and child
    /// manifests, for an index), then the manifests, with one update of
    /// DST's tag-schema index for all of them.
    async fn referrers(
        &mut self,
        subject: &Digest,
        missing: &[Referrer],
        dst_store: ReferrersStore,
    ) -> Result<(), Error> {
        let (src, dst) = (self.src, self.dst);
        let mut manifests = Vec::with_capacity(missing.len());
        let mut copied = Vec::with_capacity(missing.len());
        for r in missing {
            let d = r.digest.to_string();
            // A tag-schema index can name a manifest deleted since: the
            // source's inconsistency, not a reason to stop the promotion.
            let Some(m) = src.reg.manifest(src.repo, &d).await? else {
                info(format!(
                    "  skipping referrer {} of {}: the source lists it but {} does not have it",
                    short(&r.digest),
                    short(subject),
                    src.repo
                ));
                self.tally.referrers_dangling += 1;
                continue;
            };
            self.copy_blobs_of(m.clone()).await?;
            manifests.push((m.media_type, m.bytes));
            copied.push(r);
        }
        if manifests.is_empty() {
            return Ok(());
        }
        dst.reg
            .push_referrers_to(dst.repo, subject, manifests, Some(dst_store))
            .await?;
        for r in &copied {
            info(format!(
                "  referrer {} ({}) of {}",
                short(&r.digest),
                r.artifact_type.as_deref().unwrap_or(&r.media_type),
                short(subject)
            ));
        }
        self.tally.referrers_copied += copied.len();
        Ok(())
    }

    /// The blobs of `m` and, for an index, its child manifests (pushed by
    /// digest when DST lacks them); `m` itself is left to the caller.
    async fn copy_blobs_of(&mut self, m: Manifest) -> Result<(), Error> {
        let (src, dst) = (self.src, self.dst);
        let top = m.digest.clone();
        let nodes = collect(src.reg, src.repo, m, self.parallel).await?;
        let mut blobs: Vec<Descriptor> = Vec::new();
        for n in &nodes {
            if let Contents::Image { config, layers } = &n.contents {
                for b in std::iter::once(config).chain(layers) {
                    if !is_foreign(&b.media_type) && self.blobs_at_dst.insert(b.digest.clone()) {
                        blobs.push(b.clone());
                    }
                }
            }
        }
        let results: Vec<BlobCopy> = stream::iter(blobs)
            .map(|b| async move {
                Ok::<_, Error>(dst.reg.copy_blob(dst.repo, src.reg, src.repo, &b).await?)
            })
            .buffer_unordered(self.parallel)
            .try_collect()
            .await?;
        for r in results {
            self.tally.blobs.add(&r);
        }
        for n in nodes.iter().filter(|n| n.manifest.digest != top) {
            let d = n.manifest.digest.to_string();
            if dst.reg.manifest_head(dst.repo, &d).await?.is_none() {
                dst.reg.push_manifest_raw(dst.repo, &d, &n.manifest).await?;
            }
        }
        Ok(())
    }
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
