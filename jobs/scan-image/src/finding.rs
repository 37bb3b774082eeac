//! One finding as the output writers see it, and its stable identity.

use sha2::{Digest as _, Sha256};

use crate::severity::Severity;
use crate::trivy::report::{Target, Vulnerability};

/// A vulnerability in one package of one target, with what the writers need.
pub struct Finding<'r, 'de> {
    pub target: &'r Target<'de>,
    pub vuln: &'r Vulnerability<'de>,
    pub severity: Severity,
    pub key: Key,
    /// Index of this finding's vulnerability id among the SARIF rules.
    pub rule_index: u32,
    /// The platforms of the index this finding is on (empty when IMAGE is
    /// not an index, or findings come from a recorded report).
    pub platforms: &'r [String],
}

/// A finding's identity: the same vulnerability in the same package at the
/// same place hashes the same in every run (the image tag, which changes
/// with each commit, is left out), and the same CVE in two packages differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Key(pub [u8; 16]);

impl Key {
    /// `salt` separates findings that would otherwise collide (the same id,
    /// package and path listed twice at different versions).
    pub fn of(target: &Target<'_>, v: &Vulnerability<'_>, salt: Option<&str>) -> Key {
        let mut h = Sha256::new();
        let place: &str = if target.is_os() {
            &target.kind
        } else {
            &target.target
        };
        for part in [
            "secdeliv/scan-image/v1",
            &target.class,
            place,
            &v.vulnerability_id,
            &v.pkg_name,
            v.pkg_path.as_deref().unwrap_or(""),
            salt.unwrap_or(""),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let d = h.finalize();
        let mut k = [0u8; 16];
        k.copy_from_slice(&d[..16]);
        Key(k)
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// An RFC 4122 shaped id (version 8, custom), as GitLab recommends UUIDs.
    pub fn uuid(&self) -> String {
        let mut b = self.0;
        b[6] = (b[6] & 0x0f) | 0x80;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(b);
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }
}

impl Finding<'_, '_> {
    pub fn id(&self) -> &str {
        &self.vuln.vulnerability_id
    }

    /// The title, or the id when trivy has none.
    pub fn title(&self) -> &str {
        self.vuln
            .title
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or(self.id())
    }

    /// ` on linux/amd64, linux/arm64`, or empty when no platform is known.
    pub fn on_platforms(&self) -> String {
        if self.platforms.is_empty() {
            String::new()
        } else {
            format!(" on {}", self.platforms.join(", "))
        }
    }

    /// The description, or the title when trivy has none.
    pub fn description(&self) -> &str {
        self.vuln
            .description
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .unwrap_or(self.title())
    }

    /// `[CVE-…](url)`, or the bare id when there is no web link.
    pub fn markdown_link(&self) -> String {
        match self.url() {
            Some(u) => format!("[{}]({u})", self.id()),
            None => self.id().to_string(),
        }
    }

    /// Where the package lives inside the image: its file for language
    /// packages, none for OS packages.
    pub fn package_path(&self) -> Option<&str> {
        if self.target.is_os() {
            return None;
        }
        Some(
            self.vuln
                .pkg_path
                .as_deref()
                .filter(|p| !p.is_empty())
                .unwrap_or(&self.target.target),
        )
    }

    /// `Upgrade openssl from 3.0.1 to 3.0.7`, when a fix exists.
    pub fn solution(&self) -> Option<String> {
        self.vuln.fixed().map(|fix| {
            format!(
                "Upgrade {} from {} to {fix}",
                self.vuln.pkg_name, self.vuln.installed_version
            )
        })
    }

    /// The best link for people: trivy's primary URL when it is http(s).
    pub fn url(&self) -> Option<&str> {
        self.vuln.primary_url.as_deref().filter(|u| is_web_url(u))
    }
}

/// `http(s)://…` or `ftp://…` with something after the scheme (GitLab's pattern).
pub fn is_web_url(u: &str) -> bool {
    ["https://", "http://", "ftp://"].iter().any(|p| {
        u.strip_prefix(p)
            .is_some_and(|rest| !rest.trim().is_empty())
    }) && !u.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn target(class: &'static str, kind: &'static str, t: &'static str) -> Target<'static> {
        Target {
            index: 0,
            target: Cow::Borrowed(t),
            class: Cow::Borrowed(class),
            kind: Cow::Borrowed(kind),
        }
    }

    fn vuln(id: &'static str, pkg: &'static str) -> Vulnerability<'static> {
        Vulnerability {
            vulnerability_id: Cow::Borrowed(id),
            pkg_name: Cow::Borrowed(pkg),
            ..Default::default()
        }
    }

    #[test]
    fn key_is_stable_across_image_tags_and_distinct_per_package() {
        let a = target("os-pkgs", "alpine", "registry/app:sha1 (alpine 3.19.1)");
        let b = target("os-pkgs", "alpine", "registry/app:sha2 (alpine 3.19.1)");
        assert_eq!(
            Key::of(&a, &vuln("CVE-1", "openssl"), None),
            Key::of(&b, &vuln("CVE-1", "openssl"), None)
        );
        assert_ne!(
            Key::of(&a, &vuln("CVE-1", "openssl"), None),
            Key::of(&a, &vuln("CVE-1", "libssl3"), None)
        );
        let lang = target("lang-pkgs", "npm", "app/package-lock.json");
        assert_ne!(
            Key::of(&a, &vuln("CVE-1", "openssl"), None),
            Key::of(&lang, &vuln("CVE-1", "openssl"), None)
        );
        let u = Key::of(&a, &vuln("CVE-1", "openssl"), None).uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "8");
    }

    #[test]
    fn web_urls_only() {
        assert!(is_web_url("https://avd.aquasec.com/nvd/cve-2021-1"));
        assert!(is_web_url("ftp://x/y"));
        assert!(!is_web_url("https://"));
        assert!(!is_web_url("git://x"));
        assert!(!is_web_url("www.example.com"));
    }
}
