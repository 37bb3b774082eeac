//! trivy's JSON report (`trivy image --format json`, SchemaVersion 2), read
//! without keeping it all in memory twice: the input bytes are parsed with
//! borrowed strings, and vulnerabilities are handed to a callback one at a
//! time, so a 100 MB report never becomes a 100 MB tree of structs.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Top-level facts of a report (everything but the findings).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Header<'a> {
    pub schema_version: Option<u32>,
    #[serde(borrow)]
    pub created_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub artifact_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub artifact_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub metadata: Option<Metadata<'a>>,
    #[serde(borrow, default)]
    pub trivy: Option<TrivyInfo<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Metadata<'a> {
    #[serde(borrow, rename = "OS")]
    pub os: Option<Os<'a>>,
    #[serde(borrow, rename = "ImageID")]
    pub image_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub repo_digests: Option<Vec<Cow<'a, str>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Os<'a> {
    #[serde(borrow)]
    pub family: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub name: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TrivyInfo<'a> {
    #[serde(borrow)]
    pub version: Option<Cow<'a, str>>,
}

impl Header<'_> {
    /// `alpine 3.19.1`, or None when trivy detected no OS.
    pub fn operating_system(&self) -> Option<String> {
        let os = self.metadata.as_ref()?.os.as_ref()?;
        let family = os.family.as_deref().unwrap_or("").trim();
        let name = os.name.as_deref().unwrap_or("").trim();
        let s = format!("{family} {name}").trim().to_string();
        (!s.is_empty()).then_some(s)
    }
}

/// Where a vulnerability was found: one entry of `Results`.
#[derive(Debug, Default, Clone)]
pub struct Target<'a> {
    pub index: usize,
    pub target: Cow<'a, str>,
    pub class: Cow<'a, str>,
    pub kind: Cow<'a, str>,
}

impl Target<'_> {
    /// OS packages (apk, deb, rpm) as opposed to language packages found in files.
    pub fn is_os(&self) -> bool {
        self.class == "os-pkgs"
    }
}

/// One entry of a result's `Vulnerabilities`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Vulnerability<'a> {
    #[serde(borrow, rename = "VulnerabilityID")]
    pub vulnerability_id: Cow<'a, str>,
    #[serde(borrow, default)]
    pub pkg_name: Cow<'a, str>,
    #[serde(borrow, rename = "PkgID")]
    pub pkg_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub pkg_path: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub pkg_identifier: Option<PkgIdentifier<'a>>,
    #[serde(borrow, default)]
    pub installed_version: Cow<'a, str>,
    #[serde(borrow)]
    pub fixed_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub severity: Cow<'a, str>,
    #[serde(borrow)]
    pub severity_source: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "PrimaryURL")]
    pub primary_url: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub title: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub description: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "CweIDs", default)]
    pub cwe_ids: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, rename = "CVSS", default)]
    pub cvss: Option<VendorCvss<'a>>,
    #[serde(borrow, default)]
    pub references: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    pub published_date: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub last_modified_date: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PkgIdentifier<'a> {
    #[serde(borrow, rename = "PURL")]
    pub purl: Option<Cow<'a, str>>,
}

/// One vendor's CVSS entry; trivy's v4 fields are ignored (GitLab's schema
/// accepts only v2 and v3 vectors).
#[derive(Debug, Default, Deserialize)]
pub struct Cvss<'a> {
    #[serde(borrow, rename = "V2Vector")]
    pub v2_vector: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "V3Vector")]
    pub v3_vector: Option<Cow<'a, str>>,
    #[serde(rename = "V2Score")]
    pub v2_score: Option<f64>,
    #[serde(rename = "V3Score")]
    pub v3_score: Option<f64>,
}

/// `CVSS`: a map from vendor (`nvd`, `redhat`, `ghsa`) to its scores, kept
/// in document order.
#[derive(Debug, Default)]
pub struct VendorCvss<'a>(pub Vec<(Cow<'a, str>, Cvss<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for VendorCvss<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = VendorCvss<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("CVSS as an object of vendor entries")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<Cow<'a, str>, Cvss<'a>>()? {
                    out.push((k, v));
                }
                Ok(VendorCvss(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

impl Vulnerability<'_> {
    pub fn fixed(&self) -> Option<&str> {
        self.fixed_version
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    /// The CVSS v3 score trivy's severity source gave, else the highest v3 (then v2) score.
    pub fn score(&self) -> Option<f64> {
        let cvss = &self.cvss.as_ref()?.0;
        if let Some(src) = self.severity_source.as_deref()
            && let Some((_, c)) = cvss.iter().find(|(v, _)| v == src)
            && let Some(s) = c.v3_score.or(c.v2_score)
        {
            return Some(s);
        }
        cvss.iter()
            .filter_map(|(_, c)| c.v3_score.or(c.v2_score))
            .reduce(f64::max)
    }
}

/// Why a report could not be read: the message says where (line, column).
#[derive(Debug)]
pub struct ReportError(pub String);

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReportError {}

/// Reads only the header (findings are skipped without being built).
pub fn read_header(bytes: &[u8]) -> Result<Header<'_>, ReportError> {
    // A syntax check first, so "not JSON" and "not trivy's shape" read differently.
    serde_json::from_slice::<IgnoredAny>(bytes)
        .map_err(|e| ReportError(format!("not valid JSON: {e}")))?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let header = ReportSeed {
        on_vuln: &mut |_: &Target<'_>, _: Vulnerability<'_>| Ok(()),
        skip_findings: true,
    }
    .deserialize(&mut de)
    .map_err(|e| ReportError(format!("not a trivy JSON report: {e}")))?;
    if header.schema_version.is_none() {
        return Err(ReportError(
            "not a trivy JSON report: no SchemaVersion at the top level (produce it with `trivy image --format json`)".into(),
        ));
    }
    Ok(header)
}

/// Why a walk over the findings ended early: the report is not one, or the
/// caller's callback stopped it with its own error.
#[derive(Debug)]
pub enum WalkError<E> {
    Report(ReportError),
    Stopped(E),
}

/// The callback's error, kept aside while serde unwinds with [`Stop`].
struct Stop;

/// Calls `on_vuln` for every vulnerability in document order; the first
/// error it returns ends the walk and comes back as [`WalkError::Stopped`].
pub fn for_each_vulnerability<'de, E, F>(bytes: &'de [u8], on_vuln: F) -> Result<(), WalkError<E>>
where
    F: FnMut(&Target<'de>, Vulnerability<'de>) -> Result<(), E>,
{
    let mut on_vuln = on_vuln;
    let mut stopped: Option<E> = None;
    let mut visit = |t: &Target<'de>, v: Vulnerability<'de>| {
        on_vuln(t, v).map_err(|e| {
            stopped = Some(e);
            Stop
        })
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result = ReportSeed {
        on_vuln: &mut visit,
        skip_findings: false,
    }
    .deserialize(&mut de);
    match (result, stopped) {
        (_, Some(e)) => Err(WalkError::Stopped(e)),
        (Err(e), None) => Err(WalkError::Report(ReportError(format!(
            "not a trivy JSON report: {e}"
        )))),
        (Ok(_), None) => Ok(()),
    }
}

struct ReportSeed<'f, F> {
    on_vuln: &'f mut F,
    skip_findings: bool,
}

impl<'de, F> DeserializeSeed<'de> for ReportSeed<'_, F>
where
    F: FnMut(&Target<'de>, Vulnerability<'de>) -> Result<(), Stop>,
{
    type Value = Header<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F> Visitor<'de> for ReportSeed<'_, F>
where
    F: FnMut(&Target<'de>, Vulnerability<'de>) -> Result<(), Stop>,
{
    type Value = Header<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a trivy report object with SchemaVersion, ArtifactName and Results")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut h = Header::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "SchemaVersion" => h.schema_version = map.next_value()?,
                "CreatedAt" => h.created_at = map.next_value()?,
                "ArtifactName" => h.artifact_name = map.next_value()?,
                "ArtifactType" => h.artifact_type = map.next_value()?,
                "Metadata" => h.metadata = map.next_value()?,
                "Trivy" => h.trivy = map.next_value()?,
                "Results" if !self.skip_findings => {
                    map.next_value_seed(NullOrSeq(ResultsSeed {
                        on_vuln: &mut *self.on_vuln,
                    }))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(h)
    }
}

/// `null` or an array handed to the sequence visitor `V` (trivy writes
/// `null` for an empty `Results` or `Vulnerabilities`).
struct NullOrSeq<V>(V);

impl<'de, V: Visitor<'de, Value = ()>> DeserializeSeed<'de> for NullOrSeq<V> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, V: Visitor<'de, Value = ()>> Visitor<'de> for NullOrSeq<V> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self.0)
    }
}

/// `Results`: an array of results.
struct ResultsSeed<'f, F> {
    on_vuln: &'f mut F,
}

impl<'de, F> Visitor<'de> for ResultsSeed<'_, F>
where
    F: FnMut(&Target<'de>, Vulnerability<'de>) -> Result<(), Stop>,
{
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Results as an array or null")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while seq
            .next_element_seed(ResultSeed {
                on_vuln: &mut *self.on_vuln,
                index,
            })?
            .is_some()
        {
            index += 1;
        }
        Ok(())
    }
}

/// One result. Target/Class/Type normally precede Vulnerabilities (trivy
/// writes them first); if they come later, that result's findings are held
/// until the end of the object.
struct ResultSeed<'f, F> {
    on_vuln: &'f mut F,
    index: usize,
}

impl<'de, F> DeserializeSeed<'de> for ResultSeed<'_, F>
where
    F: FnMut(&Target<'de>, Vulnerability<'de>) -> Result<(), Stop>,
{
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F> Visitor<'de> for ResultSeed<'_, F>
where
    F: FnMut(&Target<'de>, Vulnerability<'de>) -> Result<(), Stop>,
{
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a result object with Target and Vulnerabilities")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut t = Target {
            index: self.index,
            ..Target::default()
        };
        let mut have_target = false;
        let mut held: Vec<Vulnerability<'de>> = Vec::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "Target" => {
                    t.target = map.next_value()?;
                    have_target = true;
                }
                "Class" => {
                    t.class = map
                        .next_value::<Option<Cow<'de, str>>>()?
                        .unwrap_or_default()
                }
                "Type" => {
                    t.kind = map
                        .next_value::<Option<Cow<'de, str>>>()?
                        .unwrap_or_default()
                }
                "Vulnerabilities" if have_target && !t.class.is_empty() => {
                    map.next_value_seed(NullOrSeq(VulnsSeed {
                        on_vuln: &mut *self.on_vuln,
                        target: &t,
                    }))?;
                }
                "Vulnerabilities" => {
                    held.extend(
                        map.next_value::<Option<Vec<Vulnerability<'de>>>>()?
                            .unwrap_or_default(),
                    );
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        for v in held {
            (self.on_vuln)(&t, v).map_err(|Stop| de::Error::custom("stopped"))?;
        }
        Ok(())
    }
}

struct VulnsSeed<'f, 't, 'de, F> {
    on_vuln: &'f mut F,
    target: &'t Target<'de>,
}

impl<'de, F> Visitor<'de> for VulnsSeed<'_, '_, 'de, F>
where
    F: FnMut(&Target<'de>, Vulnerability<'de>) -> Result<(), Stop>,
{
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Vulnerabilities as an array or null")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element::<Vulnerability<'de>>()? {
            (self.on_vuln)(self.target, v).map_err(|Stop| de::Error::custom("stopped"))?;
        }
        Ok(())
    }
}
