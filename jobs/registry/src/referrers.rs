//! OCI 1.1 referrers: the manifests whose `subject` is a given digest
//! (signatures, attestations, SBOMs attached to an image).
//!
//! Two ways a registry keeps them (distribution-spec v1.1):
//!
//! - the **referrers API**, `GET /v2/<name>/referrers/<digest>`, an image
//!   index of descriptors with `artifactType` and `annotations`; a registry
//!   that processed a pushed manifest's `subject` answers the PUT with
//!   `OCI-Subject`;
//! - the **referrers tag schema** where there is no API (docker-registry
//!   2.8, Docker Hub): the tag `<alg>-<hex>` holds an image index listing
//!   every referrer, kept by clients with read-modify-write.
//!
//! [`Registry::referrers`] reads whichever the registry has;
//! [`Registry::push_referrer`] writes a referrer and, where the registry did
//! not index it itself, merges its descriptor into the tag schema's index
//! (never dropping an entry; re-pushing changes nothing).
//!
//! Registries differ from the spec in ways this module absorbs (each has a
//! test): go-containerregistry's registry indexes referrers but sends no
//! `OCI-Subject`, ignores `?artifactType=` (no `OCI-Filters-Applied`), and
//! derives `artifactType` from the config's media type only (so an artifact
//! with an empty config shows `application/vnd.oci.empty.v1+json`); cosign
//! writes tag-schema descriptors without `artifactType` or annotations
//! (sigstore/cosign#4641). A descriptor without a usable `artifactType` is
//! completed from its manifest (one GET).

use std::collections::BTreeMap;

use kit::reference::Digest;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, LINK};
use serde::{Deserialize, Serialize};

use crate::auth::Scope;
use crate::client::Registry;
use crate::error::{Error, Result};
use crate::manifest::{self, OCI_INDEX};
use crate::manifests::display_ref;
use crate::transport::{header, next_link, shown};

/// The media type of the empty config (`{}`) artifacts use; never an
/// artifact's type (the spec requires `artifactType` when the config is
/// empty).
pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

/// Pages of a referrers answer followed before giving up (a `Link` loop).
const MAX_PAGES: usize = 1000;

/// One manifest that refers to a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// The manifest's `artifactType` (else its config's media type).
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

/// Where a registry keeps the referrers of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferrersStore {
    /// It answers `GET /v2/<name>/referrers/<digest>`.
    Api,
    /// It does not: the `sha256-<hex>` tag's image index.
    TagSchema,
}

/// The referrers tag schema's tag for `subject`: `<alg>-<hex>` (the spec
/// truncates the algorithm to 32 and the hex to 64 characters).
pub fn referrers_tag(subject: &Digest) -> String {
    let alg: String = subject.algorithm().chars().take(32).collect();
    let hex: String = subject.hex().chars().take(64).collect();
    format!("{alg}-{hex}")
}

/// An image index as the referrers API answers it and the tag schema
/// stores it. Fields we do not model are kept (`rest`) so a rewritten
/// tag-schema index drops nothing another client wrote.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireIndex {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    /// Missing or `null` reads as empty (Go registries serialize a nil slice
    /// as `null`).
    #[serde(default)]
    manifests: Option<Vec<WireDescriptor>>,
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireDescriptor {
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

/// Why a referrers list is not a valid OCI image index of referrers.
#[derive(Debug, thiserror::Error)]
pub enum NotAnIndex {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("schemaVersion is {0}, not 2")]
    SchemaVersion(u32),
    #[error("mediaType is {0:?}, not {OCI_INDEX}")]
    MediaType(String),
    #[error("descriptor digest {digest:?}: {reason}")]
    Digest {
        digest: String,
        reason: <Digest as std::str::FromStr>::Err,
    },
    #[error("descriptor {0} has a negative size")]
    NegativeSize(Digest),
    #[error("descriptor {0} has no mediaType")]
    NoMediaType(Digest),
}

impl WireIndex {
    fn empty() -> WireIndex {
        WireIndex {
            schema_version: 2,
            media_type: Some(OCI_INDEX.to_string()),
            manifests: Some(Vec::new()),
            rest: BTreeMap::new(),
        }
    }

    /// Parses and checks an index; `Err` is the reason it is not one.
    fn parse(bytes: &[u8]) -> std::result::Result<(WireIndex, Vec<Referrer>), NotAnIndex> {
        let index: WireIndex = serde_json::from_slice(bytes)?;
        if index.schema_version != 2 {
            return Err(NotAnIndex::SchemaVersion(index.schema_version));
        }
        if let Some(t) = index.media_type.as_deref()
            && t != OCI_INDEX
        {
            return Err(NotAnIndex::MediaType(t.to_string()));
        }
        let referrers = index
            .manifests
            .iter()
            .flatten()
            .map(WireDescriptor::referrer)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok((index, referrers))
    }
}

impl WireDescriptor {
    fn referrer(&self) -> std::result::Result<Referrer, NotAnIndex> {
        let digest: Digest = self.digest.parse().map_err(|e| NotAnIndex::Digest {
            digest: self.digest.clone(),
            reason: e,
        })?;
        let size =
            u64::try_from(self.size).map_err(|_| NotAnIndex::NegativeSize(digest.clone()))?;
        if self.media_type.is_empty() {
            return Err(NotAnIndex::NoMediaType(digest));
        }
        Ok(Referrer {
            digest,
            media_type: self.media_type.clone(),
            size,
            artifact_type: self.artifact_type.clone().filter(|t| !t.is_empty()),
            annotations: self.annotations.clone().unwrap_or_default(),
        })
    }

    fn of(r: &Referrer) -> WireDescriptor {
        WireDescriptor {
            media_type: r.media_type.clone(),
            digest: r.digest.to_string(),
            size: i64::try_from(r.size).unwrap_or(i64::MAX),
            artifact_type: r.artifact_type.clone(),
            annotations: (!r.annotations.is_empty()).then(|| r.annotations.clone()),
            rest: BTreeMap::new(),
        }
    }
}

/// What a manifest says about itself as a referrer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SelfDescription {
    artifact_type: Option<String>,
    config: Option<ConfigType>,
    subject: Option<SubjectRef>,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigType {
    media_type: String,
}

#[derive(Deserialize)]
struct SubjectRef {
    digest: String,
}

impl SelfDescription {
    fn parse(bytes: &[u8]) -> serde_json::Result<SelfDescription> {
        serde_json::from_slice(bytes)
    }

    /// The spec's rule: `artifactType`, else the config's media type.
    fn artifact_type(&self) -> Option<String> {
        self.artifact_type
            .clone()
            .filter(|t| !t.is_empty())
            .or_else(|| self.config.as_ref().map(|c| c.media_type.clone()))
    }
}

/// The descriptor the referrers list should hold for a manifest, and the
/// subject it names (pure: for tests and for callers that build manifests).
pub fn describe_referrer(media_type: &str, bytes: &[u8]) -> Result<(Referrer, Option<Digest>)> {
    let d = SelfDescription::parse(bytes)
        .map_err(|e| Error::Usage(format!("the referrer manifest is not JSON: {e}")))?;
    let subject = match &d.subject {
        Some(s) => Some(s.digest.parse::<Digest>().map_err(|e| {
            Error::Usage(format!(
                "the referrer manifest's subject digest {:?}: {e}",
                s.digest
            ))
        })?),
        None => None,
    };
    let r = Referrer {
        digest: manifest::sha256(bytes),
        media_type: media_type.to_string(),
        size: bytes.len() as u64,
        artifact_type: d.artifact_type(),
        annotations: d.annotations.clone().unwrap_or_default(),
    };
    Ok((r, subject))
}

impl Registry {
    /// OCI 1.1 referrers of `subject` in `repo`: the referrers API
    /// (`GET /v2/<repo>/referrers/<digest>`, `?artifactType=` when given,
    /// `Link` pages followed) when the registry has it, else the referrers
    /// tag schema (`sha256-<hex>` image index); empty when neither exists.
    /// Filtered by `artifact_type` here too (registries may ignore the
    /// filter). An answer that is not a valid image index is
    /// [`Error::Referrers`] (exit 3) naming the endpoint.
    pub async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let listed = match self.referrers_api(repo, subject, artifact_type).await? {
            Some(list) => list,
            None => self.referrers_from_tag(repo, subject).await?.1,
        };
        let mut out: Vec<Referrer> = Vec::with_capacity(listed.len());
        for mut r in listed {
            if out.iter().any(|o| o.digest == r.digest) {
                continue;
            }
            if r.artifact_type.as_deref().is_none_or(|t| t == EMPTY_CONFIG)
                && manifest::is_manifest_type(&r.media_type)
                && let Some(t) = self.artifact_type_of(repo, &r.digest).await?
            {
                r.artifact_type = Some(t);
            }
            if artifact_type.is_some_and(|want| r.artifact_type.as_deref() != Some(want)) {
                continue;
            }
            out.push(r);
        }
        Ok(out)
    }

    /// PUTs a manifest carrying `subject` (by digest) and returns its
    /// digest. When the registry does not index it itself (no referrers API
    /// and no `OCI-Subject` in the answer), its descriptor,
    /// with `artifactType` and annotations, is merged into the referrers tag
    /// schema's `sha256-<hex>` index: existing entries are kept, an entry
    /// for the same digest missing `artifactType` or annotations is
    /// completed, and nothing is written when nothing changes. The
    /// referrers list is read (and checked) before anything is written. The
    /// manifest's blobs must be in `repo` already.
    ///
    /// Requests: 2 where the registry has the referrers API (GET referrers,
    /// PUT); 4 on the tag schema (GET referrers 404, GET tag, PUT, PUT tag;
    /// 3 when the tag already lists it).
    pub async fn push_referrer(
        &self,
        repo: &str,
        media_type: &str,
        bytes: Vec<u8>,
        subject: &Digest,
    ) -> Result<Digest> {
        self.push_referrer_to(repo, media_type, bytes, subject, None)
            .await
    }

    /// [`Registry::push_referrer`] when the caller already knows where the
    /// registry keeps referrers (from [`Registry::referrers_listed`]): one
    /// request less (no probe of the referrers API).
    pub async fn push_referrer_to(
        &self,
        repo: &str,
        media_type: &str,
        bytes: Vec<u8>,
        subject: &Digest,
        store: Option<ReferrersStore>,
    ) -> Result<Digest> {
        let mut pushed = self
            .push_referrers_to(repo, subject, vec![(media_type.to_string(), bytes)], store)
            .await?;
        Ok(pushed.remove(0))
    }

    /// Several referrers of one `subject` ([`Registry::push_referrer`] for
    /// each, `(media type, bytes)`), with one read and at most one write of
    /// the tag schema's index for all of them. Every manifest's `subject` is
    /// checked before anything is sent. Returns their digests, in order.
    pub async fn push_referrers_to(
        &self,
        repo: &str,
        subject: &Digest,
        manifests: Vec<(String, Vec<u8>)>,
        store: Option<ReferrersStore>,
    ) -> Result<Vec<Digest>> {
        let mut described = Vec::with_capacity(manifests.len());
        for (media_type, bytes) in manifests {
            let (referrer, named) = describe_referrer(&media_type, &bytes)?;
            match named {
                Some(s) if &s == subject => {}
                Some(s) => {
                    return Err(Error::Usage(format!(
                        "the referrer manifest's subject is {s}, not {subject}"
                    )));
                }
                None => {
                    return Err(Error::Usage(format!(
                        "the referrer manifest has no subject (it should name {subject})"
                    )));
                }
            }
            described.push((referrer, media_type, bytes));
        }
        // Read what the registry keeps before writing anything, so an
        // unusable answer stops us with nothing pushed.
        let store = match store {
            Some(s) => s,
            None => self.referrers_store(repo, subject).await?,
        };
        let tag_index = match store {
            ReferrersStore::Api => None,
            ReferrersStore::TagSchema => Some(self.referrers_from_tag(repo, subject).await?.0),
        };
        let mut unindexed = Vec::new();
        let mut digests = Vec::with_capacity(described.len());
        for (referrer, media_type, bytes) in described {
            let pushed = self
                .put_manifest(
                    repo,
                    &referrer.digest.to_string(),
                    &media_type,
                    bytes.into(),
                )
                .await?;
            digests.push(referrer.digest.clone());
            // The registry indexes referrers when it has the API (with
            // `OCI-Subject` or, like go-containerregistry's, without saying
            // so) or answers with `OCI-Subject`.
            if tag_index.is_some() && pushed.subject.as_ref() != Some(subject) {
                unindexed.push(referrer);
            }
        }
        if let Some(index) = tag_index
            && !unindexed.is_empty()
        {
            self.merge_into_referrers_tag(repo, subject, index, &unindexed)
                .await?;
        }
        Ok(digests)
    }

    /// The referrers of `subject` as the registry lists them (no
    /// `artifactType` completed, no filter), and where it keeps them. With
    /// `known`, only that store is read (no probe of the referrers API).
    pub async fn referrers_listed(
        &self,
        repo: &str,
        subject: &Digest,
        known: Option<ReferrersStore>,
    ) -> Result<(Vec<Referrer>, ReferrersStore)> {
        if known != Some(ReferrersStore::TagSchema)
            && let Some(list) = self.referrers_api(repo, subject, None).await?
        {
            return Ok((list, ReferrersStore::Api));
        }
        let (_, list) = self.referrers_from_tag(repo, subject).await?;
        Ok((list, ReferrersStore::TagSchema))
    }

    /// Whether `repo` answers the referrers API (one GET; an unusable
    /// answer is [`Error::Referrers`]).
    async fn referrers_store(&self, repo: &str, subject: &Digest) -> Result<ReferrersStore> {
        Ok(match self.referrers_api(repo, subject, None).await? {
            Some(_) => ReferrersStore::Api,
            None => ReferrersStore::TagSchema,
        })
    }

    /// The referrers API's answer (all pages), or `None` when the registry
    /// has no referrers API (404, 405 or 501 to the first page).
    async fn referrers_api(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<Referrer>>> {
        let what = format!(
            "listing referrers of {}",
            display_ref(&self.inner.name, repo, &subject.to_string())
        );
        let mut url = self.url(&format!("{repo}/referrers/{subject}"));
        if let Some(t) = artifact_type {
            url.query_pairs_mut().append_pair("artifactType", t);
        }
        let mut next = Some(url);
        let mut out = Vec::new();
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(Error::unexpected(
                    &what,
                    &shown(&url),
                    "more than 1000 pages of referrers (a Link loop?)",
                ));
            }
            let resp = self
                .send(&what, &Scope::pull(repo), 0, "GET", &url, |c, u| {
                    c.get(u).header(ACCEPT, OCI_INDEX)
                })
                .await?;
            // No such endpoint: 404 (the spec's signal; docker-registry 2.8,
            // Docker Hub), or 405 / 501 from registries that route it
            // elsewhere.
            if pages == 1
                && matches!(
                    resp.status(),
                    StatusCode::NOT_FOUND
                        | StatusCode::METHOD_NOT_ALLOWED
                        | StatusCode::NOT_IMPLEMENTED
                )
            {
                return Ok(None);
            }
            let resp = self.check(resp, "GET", &what).await?;
            next = match header(&resp, LINK).and_then(|l| next_link(&l)) {
                Some(l) => Some(self.admit(&what, "Link next page", &l)?),
                None => None,
            };
            let endpoint = shown(&url);
            let bytes = self.body(resp, manifest::MAX_MANIFEST_BYTES, &what).await?;
            let (_, list) = WireIndex::parse(&bytes).map_err(|reason| Error::Referrers {
                what: what.clone(),
                endpoint,
                reason: Box::new(reason),
            })?;
            out.extend(list);
        }
        Ok(Some(out))
    }

    /// The referrers tag schema's index for `subject` (`None` and empty
    /// when the tag does not exist).
    async fn referrers_from_tag(
        &self,
        repo: &str,
        subject: &Digest,
    ) -> Result<(Option<WireIndex>, Vec<Referrer>)> {
        let tag = referrers_tag(subject);
        let Some(m) = self.manifest(repo, &tag).await? else {
            return Ok((None, Vec::new()));
        };
        let (index, list) = WireIndex::parse(&m.bytes).map_err(|reason| Error::Referrers {
            what: format!("reading the referrers tag schema index for {subject}",),
            endpoint: shown(&self.url(&format!("{repo}/manifests/{tag}"))),
            reason: Box::new(reason),
        })?;
        Ok((Some(index), list))
    }

    /// Read-modify-write of the tag schema's index (see
    /// [`Registry::push_referrer`]).
    async fn merge_into_referrers_tag(
        &self,
        repo: &str,
        subject: &Digest,
        index: Option<WireIndex>,
        referrers: &[Referrer],
    ) -> Result<()> {
        let mut index = index.unwrap_or_else(WireIndex::empty);
        let entries = index.manifests.get_or_insert_with(Vec::new);
        let mut changed = false;
        for referrer in referrers {
            let wire = WireDescriptor::of(referrer);
            match entries.iter_mut().find(|d| d.digest == wire.digest) {
                Some(existing) => {
                    if existing.artifact_type.is_none() && wire.artifact_type.is_some() {
                        existing.artifact_type = wire.artifact_type;
                        changed = true;
                    }
                    if existing.annotations.as_ref().is_none_or(|a| a.is_empty())
                        && wire.annotations.is_some()
                    {
                        existing.annotations = wire.annotations;
                        changed = true;
                    }
                }
                None => {
                    entries.push(wire);
                    changed = true;
                }
            }
        }
        if !changed {
            return Ok(());
        }
        let media_type = index
            .media_type
            .clone()
            .unwrap_or_else(|| OCI_INDEX.to_string());
        let bytes = serde_json::to_vec(&index).map_err(|e| {
            Error::Manifest(format!("the referrers index cannot be serialized: {e}"))
        })?;
        self.put_manifest(repo, &referrers_tag(subject), &media_type, bytes.into())
            .await
            .map_err(|e| {
                e.context(format!(
                    "updating the referrers tag schema index of {subject}"
                ))
            })?;
        Ok(())
    }

    /// A referrer manifest's own artifact type (`None` when it is gone or
    /// says nothing).
    async fn artifact_type_of(&self, repo: &str, digest: &Digest) -> Result<Option<String>> {
        let Some(m) = self.manifest(repo, &digest.to_string()).await? else {
            return Ok(None);
        };
        Ok(SelfDescription::parse(&m.bytes)
            .ok()
            .and_then(|d| d.artifact_type()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn tag_of_a_digest() {
        let d: Digest = D1.parse().unwrap();
        assert_eq!(referrers_tag(&d), format!("sha256-{}", "1".repeat(64)));
    }

    #[test]
    fn index_parsing_checks_the_shape() {
        let ok = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{D1}","size":3,"artifactType":"a/b","annotations":{{"k":"v"}},"x-extra":1}}],"annotations":{{"i":"j"}}}}"#
        );
        let (index, list) = WireIndex::parse(ok.as_bytes()).unwrap();
        assert_eq!(list[0].artifact_type.as_deref(), Some("a/b"));
        assert_eq!(list[0].annotations["k"], "v");
        // unknown fields survive a rewrite
        let back = serde_json::to_string(&index).unwrap();
        assert!(
            back.contains("x-extra") && back.contains(r#""i":"j""#),
            "{back}"
        );
        for (bad, why) in [
            ("<html>", "expected value"),
            (r#"{"schemaVersion":1,"manifests":[]}"#, "not 2"),
            (
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#,
                "not application/vnd.oci.image.index",
            ),
            (
                r#"{"schemaVersion":2,"manifests":[{"mediaType":"m","digest":"nope","size":1}]}"#,
                "descriptor digest",
            ),
            (
                r#"{"schemaVersion":2,"manifests":[{"mediaType":"m","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":-1}]}"#,
                "negative size",
            ),
        ] {
            let e = WireIndex::parse(bad.as_bytes()).unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
        let (_, none) = WireIndex::parse(br#"{"schemaVersion":2,"manifests":null}"#).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn a_manifest_describes_itself() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"t/x",
            "config":{{"mediaType":"{EMPTY_CONFIG}","digest":"{D1}","size":2}},"layers":[],
            "subject":{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{D1}","size":9}},
            "annotations":{{"a":"b"}}}}"#
        );
        let (r, s) = describe_referrer(manifest::OCI_MANIFEST, m.as_bytes()).unwrap();
        assert_eq!(r.artifact_type.as_deref(), Some("t/x"));
        assert_eq!(r.annotations["a"], "b");
        assert_eq!(r.size, m.len() as u64);
        assert_eq!(s.unwrap().to_string(), D1);
        // no artifactType: the config's media type
        let m2 = m.replace(r#""artifactType":"t/x","#, "");
        let (r2, _) = describe_referrer(manifest::OCI_MANIFEST, m2.as_bytes()).unwrap();
        assert_eq!(r2.artifact_type.as_deref(), Some(EMPTY_CONFIG));
    }
}
