//! GitLab's container_scanning security report (schema 15.x), the input of
//! the merge-request security widget and the vulnerability report.

use std::path::Path;

use kit::JobResult;
use kit::fsutil::write_error;
use serde::Serialize;
use serde_json::{Value, json};

use super::{JsonStream, ScanContext, gitlab_time, truncate};
use crate::finding::{Finding, is_web_url};

pub const SCHEMA_VERSION: &str = "15.2.1";
const SCHEMA_URL: &str = "https://gitlab.com/gitlab-org/security-products/security-report-schemas/-/raw/v15.2.1/dist/container-scanning-report-format.json";

pub struct GitlabWriter<'c> {
    out: JsonStream,
    ctx: &'c ScanContext,
    path: std::path::PathBuf,
}

impl<'c> GitlabWriter<'c> {
    pub fn create(path: &Path, ctx: &'c ScanContext) -> JobResult<Self> {
        let head = format!(
            r#"{{"version":"{SCHEMA_VERSION}","schema":"{SCHEMA_URL}","vulnerabilities":["#
        );
        Ok(GitlabWriter {
            out: JsonStream::open(path, head.as_bytes())?,
            ctx,
            path: path.to_path_buf(),
        })
    }

    pub fn add(&mut self, f: &Finding<'_, '_>) -> JobResult<()> {
        let v = vulnerability(f, self.ctx);
        self.out.element(&v).map_err(|e| write_error(&self.path, e))
    }

    pub fn finish(self) -> JobResult<()> {
        let scan = scan_object(self.ctx);
        let mut tail = b"],\"scan\":".to_vec();
        serde_json::to_writer(&mut tail, &scan).expect("scan object serializes");
        tail.push(b'}');
        self.out.finish(&tail)
    }
}

fn scan_object(ctx: &ScanContext) -> Value {
    let mut scan = json!({
        "analyzer": {
            "id": "secdeliv-scan-image",
            "name": "secdeliv scan-image",
            "url": "https://gitlab.com/secdeliv/secdeliv",
            "vendor": { "name": "secdeliv" },
            "version": env!("CARGO_PKG_VERSION"),
        },
        "scanner": {
            "id": "trivy",
            "name": "Trivy",
            "url": "https://github.com/aquasecurity/trivy/",
            "vendor": { "name": "Aqua Security" },
            "version": ctx.trivy_version.as_deref().filter(|v| !v.is_empty()).unwrap_or("unknown"),
        },
        "type": "container_scanning",
        "start_time": gitlab_time(ctx.started),
        "end_time": gitlab_time(ctx.finished),
        "status": if ctx.success { "success" } else { "failure" },
    });
    if let Some(m) = ctx.failure_message.as_deref().filter(|m| !m.is_empty()) {
        scan["messages"] = json!([{ "level": "fatal", "value": m }]);
    }
    scan
}

#[derive(Serialize)]
struct Identifier<'a> {
    #[serde(rename = "type")]
    kind: String,
    name: &'a str,
    value: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

#[derive(Serialize)]
struct Vulnerability<'a> {
    id: String,
    name: &'a str,
    description: &'a str,
    severity: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    solution: Option<String>,
    identifiers: Vec<Identifier<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cvss_vectors: Vec<CvssVector<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    links: Vec<Link<'a>>,
    location: Location<'a>,
    details: Details<'a>,
}

#[derive(Serialize)]
struct CvssVector<'a> {
    vendor: &'a str,
    vector: &'a str,
}

#[derive(Serialize)]
struct Link<'a> {
    url: &'a str,
}

#[derive(Serialize)]
struct Location<'a> {
    dependency: Dependency<'a>,
    operating_system: &'a str,
    image: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    default_branch_image: Option<&'a str>,
}

#[derive(Serialize)]
struct Dependency<'a> {
    package: Package<'a>,
    version: &'a str,
}

#[derive(Serialize)]
struct Package<'a> {
    name: &'a str,
}

/// GitLab's `details`: named, typed fields shown on the vulnerability page.
#[derive(Serialize)]
struct Details<'a> {
    vulnerable_package: TextDetail<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fixed_version: Option<TextDetail<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    package_path: Option<TextDetail<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purl: Option<TextDetail<&'a str>>,
    /// The platforms of the index the finding is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    platforms: Option<TextDetail<String>>,
}

#[derive(Serialize)]
struct TextDetail<T> {
    name: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    value: T,
}

fn text<T>(name: &'static str, value: T) -> TextDetail<T> {
    TextDetail {
        name,
        kind: "text",
        value,
    }
}

fn vulnerability<'a>(f: &'a Finding<'_, '_>, ctx: &'a ScanContext) -> Vulnerability<'a> {
    let v = f.vuln;
    let id = f.id();
    let mut identifiers = vec![Identifier {
        kind: identifier_type(id),
        name: id,
        value: id,
        url: f.url().map(str::to_string),
    }];
    for cwe in v.cwe_ids.iter().flatten() {
        if let Some(n) = cwe
            .strip_prefix("CWE-")
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        {
            identifiers.push(Identifier {
                kind: "cwe".into(),
                name: cwe,
                value: n,
                url: Some(format!("https://cwe.mitre.org/data/definitions/{n}.html")),
            });
        }
    }
    let mut links: Vec<Link<'a>> = Vec::new();
    for r in v.references.iter().flatten().map(|r| r.trim()) {
        if is_web_url(r) && !links.iter().any(|l| l.url == r) {
            links.push(Link { url: r });
        }
    }
    let description = f.description();
    Vulnerability {
        id: f.key.uuid(),
        name: truncate(f.title(), 255),
        description: truncate(description, 1_048_576),
        severity: f.severity.gitlab(),
        solution: f.solution().map(|s| truncate(&s, 7000).to_string()),
        identifiers,
        cvss_vectors: cvss_vectors(f),
        links,
        location: Location {
            dependency: Dependency {
                package: Package { name: &v.pkg_name },
                version: &v.installed_version,
            },
            operating_system: &ctx.operating_system,
            image: &ctx.image,
            default_branch_image: ctx
                .default_branch_image
                .as_deref()
                .filter(|d| !d.is_empty())
                .map(|d| truncate(d, 255)),
        },
        details: Details {
            vulnerable_package: text(
                "Vulnerable package",
                format!("{}:{}", v.pkg_name, v.installed_version),
            ),
            fixed_version: v.fixed().map(|x| text("Fixed version", x)),
            package_path: f.package_path().map(|x| text("Package path", x)),
            purl: v
                .pkg_identifier
                .as_ref()
                .and_then(|i| i.purl.as_deref())
                .map(|x| text("Package URL", x)),
            platforms: (!f.platforms.is_empty()).then(|| text("Platforms", f.platforms.join(", "))),
        },
    }
}

/// `cve` for CVE ids, `ghsa` for GitHub advisories, else the id's prefix.
fn identifier_type(id: &str) -> String {
    let prefix = id
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if prefix.is_empty() || prefix == id.to_ascii_lowercase() {
        "trivy".into()
    } else {
        prefix
    }
}

/// Vendor CVSS vectors that GitLab's schema accepts (v2 and v3.x only),
/// trivy's severity source first, at most 10.
fn cvss_vectors<'a>(f: &'a Finding<'_, '_>) -> Vec<CvssVector<'a>> {
    let Some(cvss) = f.vuln.cvss.as_ref() else {
        return vec![];
    };
    let source = f.vuln.severity_source.as_deref().unwrap_or("");
    let mut entries: Vec<_> = cvss.0.iter().collect();
    entries.sort_by_key(|(vendor, _)| vendor.as_ref() != source);
    let mut out = Vec::new();
    for (vendor, c) in entries {
        let vendor = if vendor.is_empty() {
            "unknown"
        } else {
            vendor.as_ref()
        };
        for vector in [c.v3_vector.as_deref(), c.v2_vector.as_deref()]
            .into_iter()
            .flatten()
        {
            if (valid_cvss3(vector) || valid_cvss2(vector)) && out.len() < 10 {
                out.push(CvssVector { vendor, vector });
            }
        }
    }
    out
}

fn metrics_ok(body: &str, allowed: &[(&str, &[&str])]) -> bool {
    !body.is_empty()
        && body.split('/').all(|m| {
            m.split_once(':').is_some_and(|(k, v)| {
                allowed
                    .iter()
                    .any(|(key, vals)| *key == k && vals.contains(&v))
            })
        })
}

pub fn valid_cvss2(v: &str) -> bool {
    const ND: &[&str] = &["L", "M", "H", "ND"];
    const CIA: &[&str] = &["N", "P", "C"];
    let allowed: &[(&str, &[&str])] = &[
        ("AV", &["N", "A", "L"]),
        ("AC", &["L", "M", "H"]),
        ("Au", &["M", "S", "N"]),
        ("C", CIA),
        ("I", CIA),
        ("A", CIA),
        ("E", &["U", "POC", "F", "H", "ND"]),
        ("RL", &["OF", "TF", "W", "U", "ND"]),
        ("RC", &["UC", "UR", "C", "ND"]),
        ("CDP", &["N", "L", "LM", "MH", "H", "ND"]),
        ("TD", &["N", "L", "M", "H", "ND"]),
        ("CR", ND),
        ("IR", ND),
        ("AR", ND),
    ];
    (16..=128).contains(&v.len()) && metrics_ok(v, allowed)
}

pub fn valid_cvss3(v: &str) -> bool {
    const NLH: &[&str] = &["N", "L", "H"];
    const XNLH: &[&str] = &["X", "N", "L", "H"];
    const XLMH: &[&str] = &["X", "L", "M", "H"];
    let allowed: &[(&str, &[&str])] = &[
        ("AV", &["N", "A", "L", "P"]),
        ("AC", &["L", "H"]),
        ("PR", NLH),
        ("UI", &["N", "R"]),
        ("S", &["U", "C"]),
        ("C", NLH),
        ("I", NLH),
        ("A", NLH),
        ("E", &["X", "U", "P", "F", "H"]),
        ("RL", &["X", "O", "T", "W", "U"]),
        ("RC", &["X", "U", "R", "C"]),
        ("CR", XLMH),
        ("IR", XLMH),
        ("AR", XLMH),
        ("MAV", &["X", "N", "A", "L", "P"]),
        ("MAC", &["X", "L", "H"]),
        ("MPR", XNLH),
        ("MUI", &["X", "N", "R"]),
        ("MS", &["X", "U", "C"]),
        ("MC", XNLH),
        ("MI", XNLH),
        ("MA", XNLH),
    ];
    let body = v
        .strip_prefix("CVSS:3.1/")
        .or_else(|| v.strip_prefix("CVSS:3.0/"));
    (32..=128).contains(&v.len()) && body.is_some_and(|b| metrics_ok(b, allowed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvss_validation_follows_gitlab_patterns() {
        assert!(valid_cvss2("AV:N/AC:L/Au:N/C:P/I:P/A:P"));
        assert!(!valid_cvss2("AV:N/AC:L"), "too short");
        assert!(valid_cvss3("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"));
        assert!(valid_cvss3("CVSS:3.0/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N"));
        assert!(!valid_cvss3(
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"
        ));
        assert!(!valid_cvss3("CVSS:3.1/AV:Z/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"));
        assert!(!valid_cvss2("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"));
    }

    #[test]
    fn identifier_types() {
        assert_eq!(identifier_type("CVE-2021-1"), "cve");
        assert_eq!(identifier_type("GHSA-abcd-efgh-ijkl"), "ghsa");
        assert_eq!(identifier_type("DLA-3000-1"), "dla");
        assert_eq!(identifier_type("TEMP"), "trivy");
    }
}
