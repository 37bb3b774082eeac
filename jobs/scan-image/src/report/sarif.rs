//! SARIF 2.1.0, built from serde-sarif's types: one rule per vulnerability
//! id, one result per finding. The run is streamed (rules first, then
//! results) so a report of any size is written with flat memory.

use std::collections::BTreeMap;
use std::path::Path;

use kit::JobResult;
use kit::fsutil::write_error;
use serde_json::json;
use serde_sarif::sarif;

use super::{JsonStream, ScanContext, rfc3339};
use crate::finding::Finding;

pub const SCHEMA_URL: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";
/// The `partialFingerprints` key our results carry.
pub const FINGERPRINT_KEY: &str = "secdeliv/scanImage/v1";

pub struct SarifWriter<'c> {
    out: JsonStream,
    ctx: &'c ScanContext,
    path: std::path::PathBuf,
    in_results: bool,
}

impl<'c> SarifWriter<'c> {
    /// Opens the file and writes everything up to the first rule.
    pub fn create(path: &Path, ctx: &'c ScanContext) -> JobResult<Self> {
        let driver = sarif::ToolComponent::builder()
            .name("Trivy")
            .full_name(
                format!(
                    "Trivy Vulnerability Scanner {}",
                    ctx.trivy_version.as_deref().unwrap_or("")
                )
                .trim()
                .to_string(),
            )
            .information_uri("https://github.com/aquasecurity/trivy")
            .version(
                ctx.trivy_version
                    .clone()
                    .unwrap_or_else(|| "unknown".into()),
            )
            .build();
        let mut driver_json = serde_json::to_vec(&driver).expect("tool component serializes");
        driver_json.pop(); // reopen the object to append "rules"
        let mut head =
            format!(r#"{{"$schema":"{SCHEMA_URL}","version":"2.1.0","runs":[{{"tool":{{"driver":"#)
                .into_bytes();
        head.extend_from_slice(&driver_json);
        head.extend_from_slice(b",\"rules\":[");
        Ok(SarifWriter {
            out: JsonStream::open(path, &head)?,
            ctx,
            path: path.to_path_buf(),
            in_results: false,
        })
    }

    /// Adds the rule for this finding's vulnerability id; call once per id,
    /// in rule-index order, before any result.
    pub fn add_rule(&mut self, f: &Finding<'_, '_>) -> JobResult<()> {
        debug_assert!(!self.in_results);
        self.out
            .element(&rule(f))
            .map_err(|e| write_error(&self.path, e))
    }

    pub fn add_result(&mut self, f: &Finding<'_, '_>) -> JobResult<()> {
        if !self.in_results {
            self.in_results = true;
            self.out
                .raw(b"]}},\"results\":[")
                .map_err(|e| write_error(&self.path, e))?;
            self.out.restart();
        }
        self.out
            .element(&result(f, self.ctx))
            .map_err(|e| write_error(&self.path, e))
    }

    pub fn finish(mut self) -> JobResult<()> {
        if !self.in_results {
            self.out
                .raw(b"]}},\"results\":[")
                .map_err(|e| write_error(&self.path, e))?;
        }
        let invocation = sarif::Invocation::builder()
            .execution_successful(self.ctx.success)
            .start_time_utc(rfc3339(self.ctx.started))
            .end_time_utc(rfc3339(self.ctx.finished))
            .build();
        let conversion = sarif::Conversion::builder()
            .tool(
                sarif::Tool::builder()
                    .driver(
                        sarif::ToolComponent::builder()
                            .name("secdeliv scan-image")
                            .version(env!("CARGO_PKG_VERSION"))
                            .information_uri("https://gitlab.com/secdeliv/secdeliv")
                            .build(),
                    )
                    .build(),
            )
            .build();
        let mut tail = b"],\"invocations\":[".to_vec();
        serde_json::to_writer(&mut tail, &invocation).expect("invocation serializes");
        tail.extend_from_slice(b"],\"conversion\":");
        serde_json::to_writer(&mut tail, &conversion).expect("conversion serializes");
        tail.extend_from_slice(b",\"properties\":");
        serde_json::to_writer(&mut tail, &json!({ "imageName": self.ctx.image })).expect("json");
        tail.extend_from_slice(b"}]}");
        self.out.finish(&tail)
    }
}

fn rule_name(f: &Finding<'_, '_>) -> &'static str {
    if f.target.is_os() {
        "OsPackageVulnerability"
    } else {
        "LanguageSpecificPackageVulnerability"
    }
}

fn security_severity(f: &Finding<'_, '_>) -> String {
    format!(
        "{:.1}",
        f.vuln.score().unwrap_or_else(|| f.severity.default_score())
    )
}

fn rule(f: &Finding<'_, '_>) -> sarif::ReportingDescriptor {
    let (id, severity, package) = (f.id(), f.severity, &f.vuln.pkg_name);
    let description = f.description();
    let link = f.markdown_link();
    let fixed = f.vuln.fixed().unwrap_or("none");
    let help_text = format!(
        "Vulnerability {id}\nSeverity: {severity}\nPackage: {package}\nFixed Version: {fixed}\nLink: {link}\n{description}"
    );
    let help_md = format!(
        "**Vulnerability {id}**\n| Severity | Package | Fixed Version | Link |\n| --- | --- | --- | --- |\n|{severity}|{package}|{fixed}|{link}|\n\n{description}"
    );
    let mut additional = BTreeMap::new();
    additional.insert("precision".to_string(), json!("very-high"));
    additional.insert("security-severity".to_string(), json!(security_severity(f)));
    let properties = sarif::PropertyBag::builder()
        .tags(vec![
            "vulnerability".to_string(),
            "security".to_string(),
            f.severity.to_string(),
        ])
        .additional_properties(additional)
        .build();
    let mut b = sarif::ReportingDescriptor::builder()
        .id(f.id())
        .name(rule_name(f))
        .short_description(
            sarif::MultiformatMessageString::builder()
                .text(f.title())
                .build(),
        )
        .full_description(
            sarif::MultiformatMessageString::builder()
                .text(description)
                .build(),
        )
        .default_configuration(
            sarif::ReportingConfiguration::builder()
                .level(json!(f.severity.sarif_level()))
                .build(),
        )
        .help(
            sarif::MultiformatMessageString::builder()
                .text(help_text)
                .markdown(help_md)
                .build(),
        )
        .properties(properties)
        .build();
    if let Some(u) = f.url() {
        b.help_uri = Some(u.to_string());
    }
    b
}

/// Where a result points: the Dockerfile line that builds the shipped
/// stage, else the package's file inside the image, else the image.
fn location(f: &Finding<'_, '_>, ctx: &ScanContext) -> sarif::Location {
    let (uri, line, message) = match (&ctx.dockerfile, f.package_path()) {
        (Some(d), path) => (
            d.path.clone(),
            d.from_line,
            match path {
                Some(p) => format!(
                    "{} {} in {p} of {}",
                    f.vuln.pkg_name, f.vuln.installed_version, ctx.image
                ),
                None => format!(
                    "{} {} in {}",
                    f.vuln.pkg_name, f.vuln.installed_version, ctx.image
                ),
            },
        ),
        (None, Some(p)) => (
            p.trim_start_matches('/').to_string(),
            1,
            format!("{} in {}", f.vuln.pkg_name, ctx.image),
        ),
        (None, None) => (
            image_uri(&ctx.image),
            1,
            format!("{} {}", f.vuln.pkg_name, f.vuln.installed_version),
        ),
    };
    let message = message + &f.on_platforms();
    sarif::Location::builder()
        .physical_location(
            sarif::PhysicalLocation::builder()
                .artifact_location(sarif::ArtifactLocation::builder().uri(uri).build())
                .region(
                    sarif::Region::builder()
                        .start_line(line as i64)
                        .start_column(1)
                        .end_line(line as i64)
                        .end_column(1)
                        .build(),
                )
                .build(),
        )
        .message(sarif::Message::builder().text(message).build())
        .build()
}

/// An image reference as a relative URI reference: registry host and port
/// dropped (a `host:port` first segment would read as a URI scheme), tag and
/// digest kept in the path.
fn image_uri(image: &str) -> String {
    let path = match image.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => rest,
        _ => image,
    };
    path.replace(':', "%3A")
}

fn result(f: &Finding<'_, '_>, ctx: &ScanContext) -> sarif::Result {
    let v = f.vuln;
    let text = format!(
        "Package: {}\nInstalled Version: {}\nVulnerability {}\nSeverity: {}\nFixed Version: {}\nLink: {}",
        v.pkg_name,
        v.installed_version,
        f.id(),
        f.severity,
        v.fixed().unwrap_or("none"),
        f.markdown_link()
    );
    let mut fingerprints = BTreeMap::new();
    fingerprints.insert(FINGERPRINT_KEY.to_string(), f.key.hex());
    sarif::Result::builder()
        .rule_id(f.id())
        .rule_index(f.rule_index as i64)
        .level(
            f.severity
                .sarif_level()
                .parse::<sarif::ResultLevel>()
                .unwrap_or(sarif::ResultLevel::Warning),
        )
        .message(sarif::Message::builder().text(text).build())
        .locations(vec![location(f, ctx)])
        .partial_fingerprints(fingerprints)
        .build()
}

#[cfg(test)]
mod tests {
    use super::image_uri;

    #[test]
    fn image_uris_are_relative_references() {
        assert_eq!(
            image_uri("registry.example.com:5000/group/app:1.0"),
            "group/app%3A1.0"
        );
        assert_eq!(image_uri("alpine:3.20"), "alpine%3A3.20");
        assert_eq!(image_uri("localhost/app"), "app");
    }
}
