//! Which platform manifests of IMAGE trivy scans: `--platforms all` (every
//! platform of the index, attestation manifests left out) or a list, and
//! `--platform` as a list of one. The selection is pure ([`select`]); the
//! registry is read once ([`resolve`]) with the job's registry credentials.

use kit::env::Env;
use kit::job::UsageError;
use kit::joblog;
use registry::{ClientOptions, Contents, IndexEntry, Registry};
use serde::Deserialize;

use crate::config::TrivySettings;
use crate::error::Error;

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platforms {
    /// Every platform of the index (the default).
    All,
    /// These, in this order; each must be in the index.
    Only(Vec<String>),
}

impl Platforms {
    /// `all`, or a comma-separated list of `os/arch[/variant]`. `flag` names
    /// the flag and its variable for the message.
    pub fn parse(s: &str, flag: &str) -> Result<Platforms, UsageError> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("all") {
            return Ok(Platforms::All);
        }
        let mut out: Vec<String> = Vec::new();
        for p in s.split(',').map(str::trim) {
            let p = check_platform(p, flag)?;
            if !out.contains(&p) {
                out.push(p);
            }
        }
        Ok(Platforms::Only(out))
    }
}

/// `os/arch` or `os/arch/variant`, as an OCI index names a platform.
pub fn check_platform(p: &str, flag: &str) -> Result<String, UsageError> {
    let parts: Vec<&str> = p.split('/').collect();
    let ok = (2..=3).contains(&parts.len())
        && parts.iter().all(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        });
    if ok {
        Ok(p.to_string())
    } else {
        Err(UsageError::new(format!(
            "{flag}: {p:?} is not OS/ARCH[/VARIANT], e.g. linux/arm64{}",
            if flag.starts_with("--platforms") {
                " (or all)"
            } else {
                ""
            }
        )))
    }
}

/// One `trivy image` run: a platform manifest by digest, or IMAGE itself
/// when it is a single manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanTarget {
    /// `os/arch[/variant]`; `None` when it could not be told.
    pub platform: Option<String>,
    /// What trivy is given.
    pub reference: String,
    /// The platform manifest's digest (index entries only).
    pub digest: Option<String>,
}

/// A platform asked for that IMAGE does not have (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("platform {wanted} is not in {image} (it has {}); pick from those, or use --platforms all", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
pub struct UnknownPlatform {
    pub wanted: String,
    pub image: String,
    pub available: Vec<String>,
}

/// The index entries that are images of a platform: attestation manifests
/// and entries without a real platform are not.
pub fn platform_entries(entries: &[IndexEntry]) -> Vec<(&str, &IndexEntry)> {
    let mut out: Vec<(&str, &IndexEntry)> = Vec::new();
    for e in entries {
        let Some(p) = e.platform.as_deref() else {
            continue;
        };
        if e.attestation || p.starts_with("unknown/") || out.iter().any(|(q, _)| *q == p) {
            continue;
        }
        out.push((p, e));
    }
    out
}

/// The scan targets of an index for a selection. A platform asked without
/// its variant (`linux/arm`) matches an entry with one (`linux/arm/v7`) when
/// only one entry has that OS and architecture.
pub fn select(
    image: &str,
    name: &str,
    entries: &[IndexEntry],
    wanted: &Platforms,
) -> Result<Vec<ScanTarget>, UnknownPlatform> {
    let have = platform_entries(entries);
    let target = |(p, e): &(&str, &IndexEntry)| ScanTarget {
        platform: Some(p.to_string()),
        reference: format!("{name}@{}", e.descriptor.digest),
        digest: Some(e.descriptor.digest.to_string()),
    };
    match wanted {
        Platforms::All => Ok(have.iter().map(target).collect()),
        Platforms::Only(list) => list
            .iter()
            .map(|w| {
                let exact = have.iter().find(|(p, _)| p == w);
                let loose: Vec<_> = have
                    .iter()
                    .filter(|(p, _)| p.starts_with(&format!("{w}/")))
                    .collect();
                match (exact, loose.as_slice()) {
                    (Some(x), _) | (None, &[x]) => Ok(target(x)),
                    _ => Err(UnknownPlatform {
                        wanted: w.clone(),
                        image: image.to_string(),
                        available: have.iter().map(|(p, _)| p.to_string()).collect(),
                    }),
                }
            })
            .collect(),
    }
}

/// The platform fields of an image config blob.
#[derive(Debug, Deserialize)]
struct ImageConfig {
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
}

/// Reads IMAGE's manifest and picks what trivy scans.
pub async fn resolve(
    image: &str,
    settings: &TrivySettings,
    wanted: &Platforms,
    env: &dyn Env,
) -> Result<Vec<ScanTarget>, Error> {
    let r = &settings.image;
    let opts = ClientOptions {
        insecure_registries: settings.plain_http_registries.clone(),
        ..Default::default()
    };
    let reg = Registry::for_image(
        r,
        settings.credentials.as_ref().map(|(c, _)| c.clone()),
        &opts,
        env,
    )?;
    let reference = registry::reference_of(r);
    let shown = registry::display_ref(&r.registry, &r.repository, &reference);
    let manifest = reg
        .manifest(&r.repository, &reference)
        .await?
        .ok_or(registry::Error::NotFound(shown))?;
    match manifest.contents()? {
        Contents::Index(entries) => {
            let targets = select(image, &r.name(), &entries, wanted)?;
            if targets.is_empty() {
                return Err(Error::NoPlatform {
                    image: image.to_string(),
                });
            }
            let all: Vec<&str> = platform_entries(&entries).iter().map(|(p, _)| *p).collect();
            joblog::info(format!(
                "{image} is an index of {}; scanning {}",
                all.join(", "),
                targets
                    .iter()
                    .filter_map(|t| t.platform.as_deref())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            Ok(targets)
        }
        Contents::Image { config, .. } => {
            let platform = reg
                .fetch_blob(&r.repository, &config.digest, 1 << 20)
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<ImageConfig>(&b).ok())
                .and_then(|c| {
                    let mut p = format!("{}/{}", c.os?, c.architecture?);
                    if let Some(v) = c.variant.filter(|v| !v.is_empty()) {
                        p = format!("{p}/{v}");
                    }
                    Some(p)
                });
            if let Platforms::Only(list) = wanted {
                let matches = |w: &String| {
                    platform
                        .as_deref()
                        .is_some_and(|p| p == w || p.starts_with(&format!("{w}/")))
                };
                if let Some(w) = list.iter().find(|w| !matches(w)) {
                    return Err(UnknownPlatform {
                        wanted: w.clone(),
                        image: format!("{image} (a single image, not an index)"),
                        available: platform.iter().cloned().collect(),
                    }
                    .into());
                }
            }
            joblog::info(format!(
                "{image} is a single image ({}), not an index",
                platform.as_deref().unwrap_or("platform unknown")
            ));
            Ok(vec![ScanTarget {
                platform: None,
                reference: image.to_string(),
                digest: None,
            }])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry::Descriptor;

    fn entry(p: Option<&str>, hex: char, attestation: bool) -> IndexEntry {
        IndexEntry {
            descriptor: Descriptor {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                digest: format!("sha256:{}", hex.to_string().repeat(64))
                    .parse()
                    .unwrap(),
                size: 1,
            },
            platform: p.map(str::to_string),
            attestation,
        }
    }

    #[test]
    fn selection_parses_all_and_lists() {
        assert_eq!(
            Platforms::parse("ALL", "--platforms").unwrap(),
            Platforms::All
        );
        assert_eq!(
            Platforms::parse("linux/arm64, linux/amd64,linux/arm64", "--platforms").unwrap(),
            Platforms::Only(vec!["linux/arm64".into(), "linux/amd64".into()])
        );
        for bad in [
            "",
            "linux",
            "linux/",
            "linux/arm64/v8/x",
            "linux arm64",
            "linux/$(id)",
            "linux/arm64,",
        ] {
            assert!(Platforms::parse(bad, "--platforms").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn selection_skips_attestations_and_names_what_the_index_has() {
        let entries = vec![
            entry(Some("linux/arm64"), 'a', false),
            entry(Some("linux/amd64"), 'b', false),
            entry(Some("unknown/unknown"), 'c', true),
            entry(Some("linux/arm/v7"), 'd', false),
        ];
        let all = select("img", "r/app", &entries, &Platforms::All).unwrap();
        let names: Vec<_> = all.iter().map(|t| t.platform.clone().unwrap()).collect();
        assert_eq!(names, ["linux/arm64", "linux/amd64", "linux/arm/v7"]);
        assert_eq!(all[0].reference, format!("r/app@sha256:{}", "a".repeat(64)));
        let one = select(
            "img",
            "r/app",
            &entries,
            &Platforms::Only(vec!["linux/arm".into()]),
        )
        .unwrap();
        assert_eq!(one[0].platform.as_deref(), Some("linux/arm/v7"));
        let e = select(
            "img",
            "r/app",
            &entries,
            &Platforms::Only(vec!["linux/s390x".into()]),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "platform linux/s390x is not in img (it has linux/arm64, linux/amd64, linux/arm/v7); pick from those, or use --platforms all"
        );
    }
}
