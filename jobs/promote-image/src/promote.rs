//! The promotion: resolve SRC once, walk its manifests, make every blob
//! present at DST, then push manifests (children first) and tags.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt, stream};
use kit::credentials::Credentials;
use kit::env::Env;
use kit::joblog::{Section, info};
use kit::reference::Digest;
use registry::{
    BlobCopy, ClientOptions, Contents, Descriptor, Manifest, Registry, RegistryEnv, Stats,
    credentials_for_with,
};

use crate::carry::{CarryTally, Side, carry};
use crate::config::Config;
use crate::error::Error;

/// Blob outcomes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlobTally {
    pub copied: usize,
    pub mounted: usize,
    pub present: usize,
    /// Blob bytes uploaded.
    pub bytes: u64,
}

impl BlobTally {
    /// Counts one blob's outcome.
    pub fn add(&mut self, r: &BlobCopy) {
        match r {
            BlobCopy::Present => self.present += 1,
            BlobCopy::Mounted => self.mounted += 1,
            BlobCopy::Copied(n) => {
                self.copied += 1;
                self.bytes += n;
            }
        }
    }
}

/// What a promotion did.
#[derive(Debug, Clone)]
pub struct Report {
    /// `DST-name@sha256:…`
    pub reference: String,
    pub digest: Digest,
    /// The image was already complete at DST (only tags were checked).
    pub already_present: bool,
    /// Manifests pushed (index and platform manifests; tags not counted).
    pub manifests_pushed: usize,
    /// Tags written (tags already on the digest are not rewritten).
    pub tags_pushed: Vec<String>,
    /// Tags checked and already right.
    pub tags_unchanged: Vec<String>,
    pub blobs: BlobTally,
    /// What `--with-signatures` carried (`None` when it was off).
    pub signatures: Option<CarryTally>,
    pub src_stats: Stats,
    /// DST counters (equal to `src_stats` when one client served both).
    pub dst_stats: Stats,
    pub shared_client: bool,
    pub elapsed: Duration,
}

impl Report {
    /// Requests sent to registries and token endpoints, both sides.
    pub fn requests(&self) -> u64 {
        if self.shared_client {
            self.dst_stats.requests
        } else {
            self.src_stats.requests + self.dst_stats.requests
        }
    }
}

/// Copies SRC's digest to DST. See the crate docs.
pub async fn promote(o: &Config, env: &dyn Env) -> Result<Report, Error> {
    let started = Instant::now();
    let (src, dst, tags) = (&o.src, &o.dst, &o.tags);
    let client_opts = ClientOptions {
        insecure_registries: o.insecure_registries.clone(),
        retry: o.retry,
        base_timeout: Some(o.request_timeout),
        ..Default::default()
    };
    // REGISTRY_USER/REGISTRY_PASSWORD serve the host they are bound to;
    // unbound, the source only: never the destination by default.
    use RegistryEnv::{DefaultRegistry, OnlyWhenBound};
    let [src_creds, dst_creds] = [
        ("source", src, &o.src_credentials, DefaultRegistry),
        ("destination", dst, &o.dst_credentials, OnlyWhenBound),
    ]
    .map(|(side, image, given, rule)| {
        credentials_for_with(side, &image.registry, given.clone(), env, rule)
    });
    let (src_creds, dst_creds) = (src_creds?, dst_creds?);
    let same_login = src.registry == dst.registry && same_credentials(&src_creds, &dst_creds);
    let src_reg =
        Registry::for_image(src, src_creds, &client_opts, env).map_err(registry::Error::from)?;
    let dst_reg = if same_login {
        src_reg.clone()
    } else {
        Registry::for_image(dst, dst_creds, &client_opts, env).map_err(registry::Error::from)?
    };

    // 1. Resolve SRC once: one GET of the manifest; its digest is the sha256 of those bytes.
    let reference = registry::reference_of(src);
    let top = src_reg
        .manifest(&src.repository, &reference)
        .await?
        .ok_or_else(|| {
            registry::Error::NotFound(registry::display_ref(
                &src.registry,
                &src.repository,
                &reference,
            ))
        })?;
    let digest = top.digest.clone();
    let out_ref = format!("{}@{digest}", dst.name());
    info(format!(
        "source {} resolved to {digest} ({})",
        src,
        kind_of(&top.media_type)
    ));

    // 2. Already complete at DST? Then only tags can be missing.
    let already = dst_reg
        .manifest_head(&dst.repository, &digest.to_string())
        .await?
        .is_some();
    let mut manifests_pushed = 0;
    let mut tally = BlobTally::default();
    if already {
        info(format!(
            "{out_ref} is already at the destination; no blob is sent"
        ));
        if !o.platforms.is_empty() {
            check_platforms(&src_reg, &src.repository, &top, &o.platforms).await?;
        }
    } else {
        // 3. Every manifest under the top one, children before parents.
        let nodes = collect(&src_reg, &src.repository, top.clone(), o.parallel).await?;
        check_platforms(&src_reg, &src.repository, &top, &o.platforms).await?;
        // 4. Which of them DST lacks (a manifest there implies its blobs are).
        let missing: Vec<&Node> = stream::iter(nodes.iter())
            .map(|n| {
                let (dst_reg, dst_repo, digest) = (&dst_reg, &dst.repository, &digest);
                async move {
                    if &n.manifest.digest == digest {
                        return Ok::<_, Error>(Some(n));
                    }
                    let have = dst_reg
                        .manifest_head(dst_repo, &n.manifest.digest.to_string())
                        .await?
                        .is_some();
                    Ok((!have).then_some(n))
                }
            })
            .buffered(o.parallel)
            .try_filter_map(|x| async move { Ok(x) })
            .try_collect()
            .await?;
        // 5. Blobs.
        let mut seen = HashSet::new();
        let mut blobs: Vec<(Descriptor, String)> = Vec::new();
        for n in &missing {
            if let Contents::Image { config, layers } = &n.contents {
                for b in std::iter::once(config).chain(layers) {
                    if is_foreign(&b.media_type) {
                        info(format!("  skipping non-distributable layer {}", b.digest));
                        continue;
                    }
                    if seen.insert(b.digest.clone()) {
                        blobs.push((b.clone(), n.label.clone()));
                    }
                }
            }
        }
        let total: u64 = blobs.iter().map(|(b, _)| b.size).sum();
        {
            let _s = Section::start(
                "promote_blobs",
                &format!("Blobs: {} ({})", blobs.len(), human(total)),
                false,
            );
            let results: Vec<(Descriptor, String, BlobCopy)> = stream::iter(blobs)
                .map(|(b, label)| {
                    let (src_reg, dst_reg) = (&src_reg, &dst_reg);
                    let (src_repo, dst_repo) = (&src.repository, &dst.repository);
                    async move {
                        let r = dst_reg.copy_blob(dst_repo, src_reg, src_repo, &b).await?;
                        let what = match r {
                            BlobCopy::Present => "present".to_string(),
                            BlobCopy::Mounted => format!("mounted from {src_repo}"),
                            BlobCopy::Copied(n) => format!("copied {}", human(n)),
                        };
                        info(format!(
                            "  {label:<16} {} {:>10}  {what}",
                            short(&b.digest),
                            human(b.size)
                        ));
                        Ok::<_, Error>((b, label, r))
                    }
                })
                .buffer_unordered(o.parallel)
                .try_collect()
                .await?;
            for (_, _, r) in &results {
                tally.add(r);
            }
        }
        // 6. Manifests, children first; the top one by digest only when no
        //    tag will carry it.
        for n in &missing {
            let is_top = n.manifest.digest == digest;
            if is_top && !tags.is_empty() {
                continue;
            }
            dst_reg
                .push_manifest_raw(&dst.repository, &n.manifest.digest.to_string(), &n.manifest)
                .await?;
            manifests_pushed += 1;
            info(format!(
                "  pushed manifest {} ({})",
                short(&n.manifest.digest),
                n.label
            ));
        }
    }

    // 7. Signatures, attestations and other referrers of the digest, before
    //    the tags: a tag at DST means its signatures are there too.
    let signatures = if o.with_signatures {
        let _s = Section::start(
            "promote_signatures",
            "Signatures, attestations, referrers",
            false,
        );
        let src_side = Side {
            reg: &src_reg,
            repo: &src.repository,
        };
        let dst_side = Side {
            reg: &dst_reg,
            repo: &dst.repository,
        };
        Some(carry(&src_side, &dst_side, &top, o.parallel).await?)
    } else {
        None
    };

    // 8. Tags, after everything they point at is in place.
    let mut tags_pushed = Vec::new();
    let mut tags_unchanged = Vec::new();
    for t in tags {
        let current = dst_reg.manifest_head(&dst.repository, t).await?;
        if current.as_ref().is_some_and(|c| c.digest == digest) {
            tags_unchanged.push(t.clone());
            continue;
        }
        dst_reg.push_manifest_raw(&dst.repository, t, &top).await?;
        if !already && tags_pushed.is_empty() {
            manifests_pushed += 1;
        }
        info(format!("  tagged {}:{t}", dst.name()));
        tags_pushed.push(t.clone());
    }

    let report = Report {
        reference: out_ref,
        digest,
        already_present: already,
        manifests_pushed,
        tags_pushed,
        tags_unchanged,
        blobs: tally,
        signatures,
        src_stats: src_reg.stats(),
        dst_stats: dst_reg.stats(),
        shared_client: same_login,
        elapsed: started.elapsed(),
    };
    summary(&report);
    Ok(report)
}

/// A manifest under the top one, with what it references.
pub(crate) struct Node {
    pub manifest: Manifest,
    pub contents: Contents,
    /// Platform, `attestation`, or `index`.
    label: String,
}

/// Fetches every manifest reachable from `top` (by digest, checked) and
/// returns them children first, `top` last.
pub(crate) async fn collect(
    reg: &Registry,
    repo: &str,
    top: Manifest,
    parallel: usize,
) -> Result<Vec<Node>, Error> {
    let mut out = Vec::new();
    let mut pending = vec![(top, "index".to_string(), 0usize)];
    // Depth-first post-order without recursion: expand, then emit parents last.
    let mut stack: Vec<Node> = Vec::new();
    while let Some((m, label, depth)) = pending.pop() {
        if depth > 4 {
            return Err(Error::Index(
                "image indexes are nested more than 4 deep".into(),
            ));
        }
        let contents = m.contents()?;
        let label = if matches!(contents, Contents::Image { .. }) && label == "index" {
            "image".into()
        } else {
            label
        };
        if let Contents::Index(entries) = &contents {
            let children: Vec<(Manifest, String)> = stream::iter(entries.iter())
                .map(|e| async move {
                    let d = e.descriptor.digest.to_string();
                    let m = reg.manifest(repo, &d).await?.ok_or_else(|| {
                        Error::Index(format!("the source index references {d}, which the source repository {repo} does not have"))
                    })?;
                    let label = if e.attestation {
                        "attestation".to_string()
                    } else {
                        e.platform.clone().unwrap_or_else(|| "manifest".into())
                    };
                    Ok::<_, Error>((m, label))
                })
                .buffered(parallel)
                .try_collect()
                .await?;
            for (m, l) in children {
                pending.push((m, l, depth + 1));
            }
        }
        stack.push(Node {
            manifest: m,
            contents,
            label,
        });
    }
    // `stack` has parents before children; reverse for children first.
    let mut seen = HashSet::new();
    while let Some(n) = stack.pop() {
        if seen.insert(n.manifest.digest.clone()) {
            out.push(n);
        }
    }
    Ok(out)
}

/// `--platform`: every requested platform must be in SRC.
async fn check_platforms(
    reg: &Registry,
    repo: &str,
    top: &Manifest,
    wanted: &[String],
) -> Result<(), Error> {
    if wanted.is_empty() {
        return Ok(());
    }
    let have: Vec<String> = match top.contents()? {
        Contents::Index(entries) => entries
            .into_iter()
            .filter(|e| !e.attestation)
            .filter_map(|e| e.platform)
            .collect(),
        Contents::Image { config, .. } => {
            let bytes = reg.fetch_blob(repo, &config.digest, 1024 * 1024).await?;
            vec![config_platform(&bytes)]
        }
    };
    for w in wanted {
        let w = w.trim();
        if !have
            .iter()
            .any(|h| h == w || h.starts_with(&format!("{w}/")))
        {
            return Err(Error::Platform {
                platform: w.to_string(),
                have: if have.is_empty() {
                    "none".to_string()
                } else {
                    have.join(", ")
                },
            });
        }
    }
    Ok(())
}

/// `os/architecture` of an image config (`unknown` for what it lacks).
fn config_platform(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize, Default)]
    struct Platform {
        os: Option<String>,
        architecture: Option<String>,
    }
    let p: Platform = serde_json::from_slice(bytes).unwrap_or_default();
    let field = |v: Option<String>| v.unwrap_or_else(|| "unknown".into());
    format!("{}/{}", field(p.os), field(p.architecture))
}

fn same_credentials(a: &Option<Credentials>, b: &Option<Credentials>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.username == b.username && a.password == b.password,
        _ => false,
    }
}

pub(crate) fn is_foreign(media_type: &str) -> bool {
    media_type.contains("nondistributable") || media_type.contains("foreign")
}

fn kind_of(media_type: &str) -> &'static str {
    match media_type {
        registry::manifest::OCI_INDEX => "OCI image index",
        registry::manifest::DOCKER_MANIFEST_LIST => "Docker manifest list",
        registry::manifest::OCI_MANIFEST => "OCI image manifest",
        registry::manifest::DOCKER_MANIFEST => "Docker image manifest",
        _ => "manifest",
    }
}

pub(crate) fn short(d: &Digest) -> String {
    format!("{}:{}", d.algorithm(), &d.hex()[..12.min(d.hex().len())])
}

/// Bytes for people: `12.3 MB`.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Peak resident memory of this process (Linux `VmHWM`), for the summary.
pub fn peak_memory() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn summary(o: &Report) {
    let sent = if o.shared_client {
        o.dst_stats.bytes_sent
    } else {
        o.src_stats.bytes_sent + o.dst_stats.bytes_sent
    };
    info(format!(
        "blobs: {} copied ({}), {} mounted, {} already present; manifests pushed: {}; tags written: {}{}",
        o.blobs.copied,
        human(o.blobs.bytes),
        o.blobs.mounted,
        o.blobs.present,
        o.manifests_pushed,
        if o.tags_pushed.is_empty() {
            "none".to_string()
        } else {
            o.tags_pushed.join(", ")
        },
        if o.tags_unchanged.is_empty() {
            String::new()
        } else {
            format!(" (unchanged: {})", o.tags_unchanged.join(", "))
        },
    ));
    if let Some(c) = &o.signatures {
        info(format!(
            "signatures and referrers: {} tag(s) written{}, {} unchanged; {} referrer(s) copied, {} already there{}; their blobs: {} copied ({}), {} mounted, {} present",
            c.legacy_written.len(),
            if c.legacy_merged > 0 {
                format!(" ({} merged with the destination's)", c.legacy_merged)
            } else {
                String::new()
            },
            c.legacy_unchanged,
            c.referrers_copied,
            c.referrers_unchanged,
            if c.referrers_dangling > 0 {
                format!(
                    ", {} listed at the source but missing there",
                    c.referrers_dangling
                )
            } else {
                String::new()
            },
            c.blobs.copied,
            human(c.blobs.bytes),
            c.blobs.mounted,
            c.blobs.present,
        ));
    }
    info(format!(
        "done in {:.1}s: {} requests, {} sent{}",
        o.elapsed.as_secs_f64(),
        o.requests(),
        human(sent),
        peak_memory()
            .map(|p| format!(", peak memory {}", human(p)))
            .unwrap_or_default()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human(999), "999 B");
        assert_eq!(human(40_000_000), "40.0 MB");
    }

    #[test]
    fn platform_of_config() {
        assert_eq!(
            config_platform(br#"{"architecture":"arm64","os":"linux","rootfs":{}}"#),
            "linux/arm64"
        );
        assert_eq!(config_platform(b"nope"), "unknown/unknown");
    }
}
