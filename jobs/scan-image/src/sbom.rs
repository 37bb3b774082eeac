//! The CycloneDX SBOM as GitLab reads it. trivy v0.74's `trivy convert
//! --format cyclonedx` writes CycloneDX 1.7, but GitLab's CycloneDX parser
//! (`Gitlab::Ci::Parsers::Sbom::Validators::CyclonedxSchemaValidator`)
//! accepts spec versions 1.4, 1.5 and 1.6 only, so a 1.7 SBOM in
//! `artifacts:reports:cyclonedx` would be dropped. trivy's document uses
//! nothing 1.7 added (the tests validate the result against the 1.6
//! schema), so scan-image relabels it 1.6: `specVersion` and `$schema`,
//! every other field kept as trivy wrote it.

use serde::{Deserialize, Serialize};

/// The version written.
pub const SPEC_VERSION: &str = "1.6";
const SCHEMA_URL: &str = "http://cyclonedx.org/schema/bom-1.6.schema.json";

/// The fields read or changed; everything else passes through.
#[derive(Debug, Deserialize, Serialize)]
struct Bom {
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    schema: Option<String>,
    #[serde(rename = "bomFormat")]
    bom_format: String,
    #[serde(rename = "specVersion")]
    spec_version: String,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// What trivy wrote is not a CycloneDX JSON document.
#[derive(Debug, thiserror::Error)]
#[error("trivy convert wrote no CycloneDX JSON document: {0}")]
pub struct NotCycloneDx(String);

/// `bytes` relabelled as CycloneDX 1.6 when trivy wrote 1.7, and the
/// version trivy wrote. Versions GitLab reads (1.4–1.6) are left alone.
pub fn for_gitlab(bytes: &[u8]) -> Result<(Vec<u8>, String), NotCycloneDx> {
    let mut bom: Bom = serde_json::from_slice(bytes).map_err(|e| NotCycloneDx(e.to_string()))?;
    if bom.bom_format != "CycloneDX" {
        return Err(NotCycloneDx(format!("bomFormat is {:?}", bom.bom_format)));
    }
    let written = bom.spec_version.clone();
    if written != "1.7" {
        return Ok((bytes.to_vec(), written));
    }
    bom.spec_version = SPEC_VERSION.into();
    bom.schema = Some(SCHEMA_URL.into());
    let out = serde_json::to_vec_pretty(&bom).map_err(|e| NotCycloneDx(e.to_string()))?;
    Ok((out, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relabels_1_7_only_and_keeps_the_rest() {
        let v17 = br#"{"$schema":"http://cyclonedx.org/schema/bom-1.7.schema.json","bomFormat":"CycloneDX","specVersion":"1.7","components":[{"name":"zlib1g"}]}"#;
        let (out, from) = for_gitlab(v17).unwrap();
        assert_eq!(from, "1.7");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["specVersion"], "1.6");
        assert_eq!(v["$schema"], SCHEMA_URL);
        assert_eq!(v["components"][0]["name"], "zlib1g");
        let v15 = br#"{"bomFormat":"CycloneDX","specVersion":"1.5"}"#;
        assert_eq!(for_gitlab(v15).unwrap().0, v15.to_vec());
        assert!(for_gitlab(br#"{"spdxVersion":"SPDX-2.3"}"#).is_err());
    }
}
