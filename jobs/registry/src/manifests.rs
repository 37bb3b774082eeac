//! Manifests and tags: resolve a tag or digest, GET the exact bytes, PUT
//! exact bytes (checking the registry kept them), list tags.

use kit::reference::{Digest, ImageRef};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LINK};

use crate::auth::Scope;
use crate::client::Registry;
use crate::error::{Error, Result};
use crate::manifest::{self, Manifest};
use crate::transport::{SERVICE, base_media_type, header, next_link};

/// A manifest found by [`Registry::resolve`] or [`Registry::manifest_head`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// `registry/repo:tag` or `registry/repo@digest`.
pub fn display_ref(registry: &str, repo: &str, reference: &str) -> String {
    if reference.parse::<Digest>().is_ok() {
        format!("{registry}/{repo}@{reference}")
    } else {
        format!("{registry}/{repo}:{reference}")
    }
}

/// The tag or digest to ask a registry for.
pub fn reference_of(image: &ImageRef) -> String {
    match (&image.digest, &image.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_string(),
    }
}

/// What a manifest PUT answered.
pub(crate) struct Pushed {
    pub digest: Digest,
    /// `OCI-Subject`: the registry indexed the manifest as a referrer of it.
    pub subject: Option<Digest>,
}

/// The answer of `GET /v2/<name>/tags/list`.
#[derive(serde::Deserialize)]
struct TagList {
    tags: Option<Vec<String>>,
}

impl Registry {
    /// Resolves `reference` (a tag or a digest) in `repo` to the manifest's
    /// digest and media type with one HEAD (a GET when the registry sends no
    /// `Docker-Content-Digest`). A missing manifest is exit 3.
    pub async fn resolve(&self, repo: &str, reference: &str) -> Result<Resolved> {
        match self.manifest_head(repo, reference).await? {
            Some(r) => Ok(r),
            None => Err(Error::NotFound(display_ref(
                &self.inner.name,
                repo,
                reference,
            ))),
        }
    }

    /// Resolves an image reference: its digest if it has one, else its tag
    /// (`latest` when neither).
    pub async fn resolve_image(&self, image: &ImageRef) -> Result<Resolved> {
        self.resolve(&image.repository, &reference_of(image)).await
    }

    /// HEAD of a manifest: `None` when it does not exist.
    pub async fn manifest_head(&self, repo: &str, reference: &str) -> Result<Option<Resolved>> {
        let url = self.url(&format!("{repo}/manifests/{reference}"));
        let what = format!(
            "resolving {}",
            display_ref(&self.inner.name, repo, reference)
        );
        let resp = self
            .send(&what, &Scope::pull(repo), 0, "HEAD", &url, |c, u| {
                c.head(u).header(ACCEPT, manifest::ACCEPT)
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.check(resp, "HEAD", &what).await?;
        let media_type = header(&resp, CONTENT_TYPE).unwrap_or_default();
        let size = header(&resp, CONTENT_LENGTH)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        match header(&resp, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok()) {
            Some(digest) => {
                if let Ok(want) = reference.parse::<Digest>()
                    && want != digest
                {
                    return Err(Error::Digest {
                        what,
                        detail: format!("registry answered with digest {digest}"),
                    });
                }
                Ok(Some(Resolved {
                    digest,
                    media_type: base_media_type(&media_type),
                    size,
                }))
            }
            None => Ok(self.manifest(repo, reference).await?.map(|m| Resolved {
                size: m.bytes.len() as u64,
                digest: m.digest,
                media_type: m.media_type,
            })),
        }
    }

    /// GETs a manifest's exact bytes; `None` when it does not exist. When
    /// `reference` is a digest the bytes are checked against it.
    pub async fn manifest(&self, repo: &str, reference: &str) -> Result<Option<Manifest>> {
        let url = self.url(&format!("{repo}/manifests/{reference}"));
        let what = format!(
            "reading manifest {}",
            display_ref(&self.inner.name, repo, reference)
        );
        let resp = self
            .send(&what, &Scope::pull(repo), 0, "GET", &url, |c, u| {
                c.get(u).header(ACCEPT, manifest::ACCEPT)
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.check(resp, "GET", &what).await?;
        let media_type = base_media_type(&header(&resp, CONTENT_TYPE).unwrap_or_default());
        let announced =
            header(&resp, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok());
        let bytes = self.body(resp, manifest::MAX_MANIFEST_BYTES, &what).await?;
        let mut m = Manifest::new(media_type, bytes);
        if !manifest::is_manifest_type(&m.media_type)
            && let Some(t) = manifest::media_type_in(&m.bytes)
        {
            m.media_type = t;
        }
        let want = reference
            .parse::<Digest>()
            .ok()
            .or(announced.filter(|d| d.algorithm() == "sha256"));
        if let Some(want) = want
            && want != m.digest
        {
            return Err(Error::Digest {
                what,
                detail: format!("registry returned bytes whose digest is {}", m.digest),
            });
        }
        Ok(Some(m))
    }

    /// Lists the tags of `repo` (following `Link` pagination; a next page
    /// on another origin is read without credentials). A repository that
    /// does not exist has no tags.
    pub async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        let what = format!("listing tags of {}/{repo}", self.inner.name);
        let mut next = Some(self.url(&format!("{repo}/tags/list?n=1000")));
        let mut out = Vec::new();
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > 10_000 {
                return Err(Error::unexpected(
                    &what,
                    &url,
                    "more than 10000 pages of tags (a Link loop?)",
                ));
            }
            let resp = self
                .send(&what, &Scope::pull(repo), 0, "GET", &url, |c, u| c.get(u))
                .await?;
            if resp.status() == StatusCode::NOT_FOUND {
                break;
            }
            let resp = self.check(resp, "GET", &what).await?;
            next = match header(&resp, LINK).and_then(|l| next_link(&l)) {
                Some(l) => Some(self.admit(&what, "Link next page", &l)?),
                None => None,
            };
            let page_url = resp.url().to_string();
            let bytes = self.body(resp, 64 * 1024 * 1024, &what).await?;
            let tags: TagList =
                kit::api::decode(SERVICE, &page_url, &bytes).map_err(|source| Error::Api {
                    what: what.clone(),
                    hint: String::new(),
                    source,
                })?;
            out.extend(tags.tags.unwrap_or_default());
        }
        Ok(out)
    }

    /// Pushes a manifest's exact bytes under `reference` (a tag or its
    /// digest) and checks the registry stored those bytes (its digest must
    /// match). Returns the digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: impl Into<bytes::Bytes>,
    ) -> Result<Digest> {
        Ok(self
            .put_manifest(repo, reference, media_type, bytes.into())
            .await?
            .digest)
    }

    /// [`Registry::push_manifest`]'s work, also returning the `OCI-Subject`
    /// header of the answer (a registry that processed the manifest's
    /// `subject` says so with it).
    pub(crate) async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: bytes::Bytes,
    ) -> Result<Pushed> {
        let digest = manifest::sha256(&bytes);
        if let Ok(d) = reference.parse::<Digest>()
            && d != digest
        {
            return Err(Error::Usage(format!(
                "manifest bytes have digest {digest}, not {d}"
            )));
        }
        let url = self.url(&format!("{repo}/manifests/{reference}"));
        let what = format!(
            "pushing manifest {}",
            display_ref(&self.inner.name, repo, reference)
        );
        let len = bytes.len() as u64;
        let resp = self
            .send(&what, &Scope::push(repo), len, "PUT", &url, |c, u| {
                c.put(u)
                    .header(CONTENT_TYPE, media_type)
                    .header(CONTENT_LENGTH, len)
                    .body(bytes.clone())
            })
            .await?;
        let resp = self.check(resp, "PUT", &what).await?;
        if let Some(got) =
            header(&resp, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok())
            && got != digest
        {
            return Err(Error::Digest {
                what,
                detail: format!(
                    "registry stored the manifest as {got}, not {digest} (it rewrote the bytes)"
                ),
            });
        }
        let subject = header(&resp, "oci-subject").and_then(|d| d.parse::<Digest>().ok());
        Ok(Pushed { digest, subject })
    }

    /// Convenience: pushes a [`Manifest`] under `reference`.
    pub async fn push_manifest_raw(
        &self,
        repo: &str,
        reference: &str,
        m: &Manifest,
    ) -> Result<Digest> {
        self.push_manifest(repo, reference, &m.media_type, m.bytes.clone())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_choice() {
        let i = ImageRef::parse("r.example/a:1").unwrap();
        assert_eq!(reference_of(&i), "1");
        let i = ImageRef::parse("r.example/a").unwrap();
        assert_eq!(reference_of(&i), "latest");
        assert_eq!(display_ref("r", "a", "1"), "r/a:1");
    }
}
