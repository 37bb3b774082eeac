//! GitLab's `vulnerability-allowlist.yml`:
//!
//! ```yaml
//! generalallowlist:
//!   CVE-2019-8696:
//!   CVE-2014-8166: cups          # the value is a note, not a package filter
//! images:
//!   registry.gitlab.com/group/app:   # no tag: every tag of the image
//!     CVE-2018-8723: mysql-server
//!   your.registry:5000/centos:7      # this tag only
//!     CVE-2015-1419:
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use kit::reference::ImageRef;
use kit::{JobError, JobResult};
use serde::Deserialize;

use super::Reason;

#[derive(Debug, Default)]
pub struct Allowlist {
    /// vulnerability id → (scope, note); general entries and those of images matching this scan.
    entries: BTreeMap<String, (String, Option<String>)>,
}

/// Vulnerability id → optional note.
type Entries = BTreeMap<String, Option<serde_yaml_ng::Value>>;

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    generalallowlist: Option<Entries>,
    #[serde(default)]
    images: Option<BTreeMap<String, Option<Entries>>>,
}

impl Allowlist {
    /// Reads the file, keeping the general entries and those of image keys
    /// that match `image` (the scanned image, if known).
    pub fn load(path: &Path, image: Option<&str>) -> JobResult<Allowlist> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            JobError::usage(format!("cannot read allowlist {}: {e}", path.display()))
        })?;
        Self::parse(&text, image).map_err(|e| e.context(format!("allowlist {}", path.display())))
    }

    pub fn parse(text: &str, image: Option<&str>) -> JobResult<Allowlist> {
        let file: File = if text.trim().is_empty() {
            File {
                generalallowlist: None,
                images: None,
            }
        } else {
            serde_yaml_ng::from_str(text)
                .map_err(|e| JobError::usage(format!("not a vulnerability-allowlist.yml: {e}")))?
        };
        let mut out = Allowlist::default();
        for (id, note) in file.generalallowlist.unwrap_or_default() {
            out.entries.insert(
                id.trim().to_string(),
                ("generalallowlist".into(), note_text(note)),
            );
        }
        let image = image.and_then(|i| ImageRef::parse(i).ok());
        for (key, ids) in file.images.unwrap_or_default() {
            if image
                .as_ref()
                .is_some_and(|img| image_key_matches(&key, img))
            {
                for (id, note) in ids.unwrap_or_default() {
                    out.entries.insert(
                        id.trim().to_string(),
                        (format!("images[{key}]"), note_text(note)),
                    );
                }
            }
        }
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn check(&self, id: &str) -> Option<Reason> {
        self.entries.get(id).map(|(scope, note)| Reason::Allowlist {
            scope: scope.clone(),
            note: note.clone(),
        })
    }
}

fn note_text(v: Option<serde_yaml_ng::Value>) -> Option<String> {
    match v? {
        serde_yaml_ng::Value::Null => None,
        serde_yaml_ng::Value::String(s) => Some(s),
        other => serde_yaml_ng::to_string(&other)
            .ok()
            .map(|s| s.trim().to_string()),
    }
}

/// GitLab's rule: `name` matches every tag, `name:tag` only that tag. Keys
/// written with a digest (`name@sha256:…`) match that digest, and a bare
/// `name@sha256` (as in GitLab's docs) any digest.
fn image_key_matches(key: &str, image: &ImageRef) -> bool {
    let key = key.trim();
    let (name_tag, digest) = match key.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (key, None),
    };
    let Ok(k) = ImageRef::parse(name_tag) else {
        return false;
    };
    if !k.same_repository(image) {
        return false;
    }
    if let Some(t) = &k.tag
        && image.tag.as_ref() != Some(t)
    {
        return false;
    }
    match (digest, &image.digest) {
        (Some(d), Some(id)) if d.contains(':') => d == id.to_string(),
        (Some(d), None) if d.contains(':') => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
generalallowlist:
  CVE-2019-8696:
  CVE-2014-8166: cups
images:
  registry.gitlab.com/group/app:
    CVE-2018-8723: mysql-server
  registry.gitlab.com/group/app:v2:
    CVE-2000-0002:
  registry.gitlab.com/gitlab-org/security-products/dast/webgoat-8.0@sha256:
    CVE-2015-9251:
  alpine:
    CVE-2000-0003:
"#;

    #[test]
    fn general_and_image_entries() {
        let a = Allowlist::parse(FILE, Some("registry.gitlab.com/group/app:v1")).unwrap();
        assert!(a.check("CVE-2019-8696").is_some());
        assert_eq!(
            a.check("CVE-2014-8166"),
            Some(Reason::Allowlist {
                scope: "generalallowlist".into(),
                note: Some("cups".into())
            })
        );
        assert!(a.check("CVE-2018-8723").is_some());
        assert!(a.check("CVE-2000-0002").is_none(), "tag v2 only");
        assert!(a.check("CVE-2000-0003").is_none());
        let b = Allowlist::parse(FILE, Some("registry.gitlab.com/group/app:v2")).unwrap();
        assert!(b.check("CVE-2000-0002").is_some());
        let c = Allowlist::parse(FILE, Some("docker.io/library/alpine:3.20")).unwrap();
        assert!(c.check("CVE-2000-0003").is_some());
        let d = Allowlist::parse(
            FILE,
            Some("registry.gitlab.com/gitlab-org/security-products/dast/webgoat-8.0:latest"),
        )
        .unwrap();
        assert!(d.check("CVE-2015-9251").is_some());
    }

    #[test]
    fn malformed_is_usage_error_with_location() {
        let e = Allowlist::parse("generalallowlist: [unclosed", None).unwrap_err();
        assert_eq!(e.kind, kit::ExitKind::Usage);
        assert!(e.message.contains("line"), "{}", e.message);
        let e = Allowlist::parse("generalallowlist: 5", None).unwrap_err();
        assert!(e.message.contains("vulnerability-allowlist"));
        assert!(Allowlist::parse("", None).unwrap().is_empty());
    }
}
