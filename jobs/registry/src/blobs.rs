//! Blobs: HEAD, small GETs, uploads from memory, cross-repository mounts
//! and the streamed copy from another registry.

use kit::reference::Digest;
use reqwest::StatusCode;
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};

use crate::auth::Scope;
use crate::client::{Counters, Registry, blob_timeout};
use crate::error::{Error, Result};
use crate::manifest::{self, Descriptor};
use crate::transport::header;

/// The outcome of [`Registry::copy_blob`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobCopy {
    /// Already at the destination (HEAD said so); nothing sent.
    Present,
    /// Mounted from the source repository of the same registry; nothing sent.
    Mounted,
    /// Streamed from the source; this many bytes sent.
    Copied(u64),
}

enum Upload {
    Mounted,
    Session(Url),
}

/// One streamed try: a failure that another whole try may cure, or not.
enum Attempt {
    Fatal(Error),
    Transient(Error, Option<std::time::Duration>),
}

impl Registry {
    /// Whether a blob exists in `repo` (HEAD).
    pub async fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let url = self.url(&format!("{repo}/blobs/{digest}"));
        let what = format!("checking blob {digest} in {}/{repo}", self.inner.name);
        let resp = self
            .send(&what, &Scope::pull(repo), 0, "HEAD", &url, |c, u| c.head(u))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        self.check(resp, "HEAD", &what).await.map(|_| true)
    }

    /// GETs a small blob into memory (at most `max_bytes`), checking its
    /// digest. For layers use [`Registry::copy_blob`], which streams. A
    /// redirect to another origin (a presigned URL) is followed without
    /// the `Authorization` header.
    pub async fn fetch_blob(
        &self,
        repo: &str,
        digest: &Digest,
        max_bytes: usize,
    ) -> Result<Vec<u8>> {
        let url = self.url(&format!("{repo}/blobs/{digest}"));
        let what = format!("reading blob {digest} from {}/{repo}", self.inner.name);
        let resp = self
            .get_blob(&what, &Scope::pull(repo), max_bytes as u64, &url)
            .await?;
        let resp = self.check(resp, "GET", &what).await?;
        let bytes = self.body(resp, max_bytes, &what).await?;
        let got = manifest::sha256(&bytes);
        if &got != digest {
            return Err(Error::Digest {
                what,
                detail: format!("registry returned bytes whose digest is {got}"),
            });
        }
        Ok(bytes)
    }

    /// Pushes a blob held in memory (configs, signatures). Skips the upload
    /// when the blob is already there. Returns its digest.
    pub async fn push_blob(&self, repo: &str, bytes: impl Into<bytes::Bytes>) -> Result<Digest> {
        let bytes: bytes::Bytes = bytes.into();
        let digest = manifest::sha256(&bytes);
        if self.blob_exists(repo, &digest).await? {
            return Ok(digest);
        }
        self.upload_blob_from(repo, None, bytes, &digest).await?;
        Ok(digest)
    }

    /// Uploads `bytes` without asking first whether the registry has them
    /// (POST + PUT, one request less than [`Registry::push_blob`]). For
    /// content that is new by construction, such as a fresh signature's
    /// payload and config; re-uploading a blob the registry has is harmless.
    pub async fn push_new_blob(
        &self,
        repo: &str,
        bytes: impl Into<bytes::Bytes>,
    ) -> Result<Digest> {
        let bytes: bytes::Bytes = bytes.into();
        let digest = manifest::sha256(&bytes);
        self.upload_blob_from(repo, None, bytes, &digest).await?;
        Ok(digest)
    }

    /// Pushes a small blob that many artifacts of `repo` share (such as
    /// the constant `{}` config of cosign signature images) in as few
    /// requests as the distribution API allows: one
    /// `POST …/blobs/uploads/?mount=<digest>&from=<repo>` that the registry
    /// answers `201 Created` when `repo` already has the blob (1 request),
    /// or `202` with an upload session that the bytes are then `PUT` into
    /// (2 requests). [`Registry::push_blob`] would take HEAD + POST + PUT.
    /// Returns the digest and whether the blob was already there.
    pub async fn push_shared_blob(
        &self,
        repo: &str,
        bytes: impl Into<bytes::Bytes>,
    ) -> Result<(Digest, bool)> {
        let bytes: bytes::Bytes = bytes.into();
        let digest = manifest::sha256(&bytes);
        let present = self
            .upload_blob_from(repo, Some(repo), bytes, &digest)
            .await?;
        Ok((digest, present))
    }

    /// POST (as a mount from `from` when given), then PUT the bytes unless
    /// the registry mounted the blob. `Ok(true)` when it was mounted.
    async fn upload_blob_from(
        &self,
        repo: &str,
        from: Option<&str>,
        bytes: bytes::Bytes,
        digest: &Digest,
    ) -> Result<bool> {
        let what = format!("uploading blob {digest} to {}/{repo}", self.inner.name);
        let location = match self.start_upload(repo, from, digest).await? {
            Upload::Mounted => return Ok(true),
            Upload::Session(l) => l,
        };
        let url = with_digest(location, digest);
        let len = bytes.len() as u64;
        let resp = self
            .send(&what, &Scope::push(repo), len, "PUT", &url, |c, u| {
                c.put(u)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, len)
                    .body(bytes.clone())
            })
            .await?;
        self.check(resp, "PUT", &what).await?;
        Counters::add(&self.inner.counters.blobs_uploaded, 1);
        Ok(false)
    }

    /// Mounts `digest` from `from_repo` into `repo` on this registry.
    /// `Ok(true)` when mounted; `Ok(false)` when the registry declined
    /// (the upload session it opened instead is cancelled).
    pub async fn mount_blob(&self, repo: &str, from_repo: &str, digest: &Digest) -> Result<bool> {
        match self.start_upload(repo, Some(from_repo), digest).await? {
            Upload::Mounted => Ok(true),
            Upload::Session(location) => {
                let _ = self
                    .send(
                        "cancelling upload",
                        &Scope::push(repo),
                        0,
                        "DELETE",
                        &location,
                        |c, u| c.delete(u),
                    )
                    .await;
                Ok(false)
            }
        }
    }

    /// Copies one blob from `src_repo` at `src` into `repo` here: nothing
    /// when it is already present (HEAD first), a cross-repository mount
    /// when both are the same registry endpoint, else a streamed GET → PUT
    /// whose memory use does not grow with the blob's size.
    ///
    /// A stream can be sent once, so `kit::http::send_with_retry` cannot
    /// retry it: a failed stream is retried whole here (a fresh upload
    /// session and a fresh GET) within the same [`kit::http::RetryPolicy`]
    /// (attempts, its backoff, `Retry-After` capped by it).
    pub async fn copy_blob(
        &self,
        repo: &str,
        src: &Registry,
        src_repo: &str,
        blob: &Descriptor,
    ) -> Result<BlobCopy> {
        let digest = &blob.digest;
        if self.blob_exists(repo, digest).await? {
            return Ok(BlobCopy::Present);
        }
        let from = (self.same_endpoint(src) && src_repo != repo).then_some(src_repo);
        let mut location = match self.start_upload(repo, from, digest).await? {
            Upload::Mounted => return Ok(BlobCopy::Mounted),
            Upload::Session(l) => l,
        };
        let what = format!("copying blob {digest} to {}/{repo}", self.inner.name);
        let policy = self.inner.retry;
        let mut retry = 0;
        loop {
            match self.stream_once(&location, repo, src, src_repo, blob).await {
                Ok(()) => {
                    Counters::add(&self.inner.counters.blobs_uploaded, 1);
                    return Ok(BlobCopy::Copied(blob.size));
                }
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Transient(e, wait)) => {
                    retry += 1;
                    if retry >= policy.attempts {
                        return Err(e.context(&what));
                    }
                    let wait = wait.map_or_else(
                        || policy.backoff(retry - 1),
                        |w| w.min(policy.max_retry_after),
                    );
                    kit::joblog::info(format!(
                        "{what}: {}; retrying in {:.1}s ({retry}/{})",
                        kit::job::cause_line(&e),
                        wait.as_secs_f64(),
                        policy.attempts - 1
                    ));
                    tokio::time::sleep(wait).await;
                    // The failed session is gone or in an unknown state.
                    location = match self.start_upload(repo, None, digest).await? {
                        Upload::Mounted => return Ok(BlobCopy::Mounted),
                        Upload::Session(l) => l,
                    };
                }
            }
        }
    }

    /// POST an upload session, optionally as a mount from `from`.
    async fn start_upload(
        &self,
        repo: &str,
        from: Option<&str>,
        digest: &Digest,
    ) -> Result<Upload> {
        let (url, scope, what) = match from {
            // A "mount" from the repository itself asks whether it already
            // has the blob (201) and otherwise opens an upload session (202);
            // it needs only push access to that one repository.
            Some(f) if f == repo => (
                self.url(&format!("{repo}/blobs/uploads/?mount={digest}&from={f}")),
                Scope::push(repo),
                format!("uploading blob {digest} to {}/{repo}", self.inner.name),
            ),
            Some(f) => (
                self.url(&format!("{repo}/blobs/uploads/?mount={digest}&from={f}")),
                Scope::mount(repo, f),
                format!("mounting {digest} from {f} into {}/{repo}", self.inner.name),
            ),
            None => (
                self.url(&format!("{repo}/blobs/uploads/")),
                Scope::push(repo),
                format!("starting upload to {}/{repo}", self.inner.name),
            ),
        };
        let resp = self
            .send(&what, &scope, 0, "POST", &url, |c, u| {
                c.post(u).header(CONTENT_LENGTH, 0)
            })
            .await?;
        let resp = self.check(resp, "POST", &what).await?;
        if resp.status() == StatusCode::CREATED && from.is_some() {
            if from != Some(repo) {
                Counters::add(&self.inner.counters.blobs_mounted, 1);
            }
            return Ok(Upload::Mounted);
        }
        let location = header(&resp, LOCATION).ok_or_else(|| {
            Error::unexpected(&what, &url, "the registry sent no upload Location")
        })?;
        Ok(Upload::Session(self.admit(
            &what,
            "upload Location",
            &location,
        )?))
    }

    /// One streamed GET → PUT.
    async fn stream_once(
        &self,
        location: &Url,
        repo: &str,
        src: &Registry,
        src_repo: &str,
        blob: &Descriptor,
    ) -> std::result::Result<(), Attempt> {
        let digest = &blob.digest;
        let src_url = src.url(&format!("{src_repo}/blobs/{digest}"));
        let what = format!("reading blob {digest} from {}/{src_repo}", src.inner.name);
        let resp = src
            .get_blob(&what, &Scope::pull(src_repo), blob.size, &src_url)
            .await
            .map_err(Attempt::Fatal)?;
        let resp = src
            .check(resp, "GET", &what)
            .await
            .map_err(Attempt::Fatal)?;
        if let Some(len) = header(&resp, CONTENT_LENGTH).and_then(|l| l.parse::<u64>().ok())
            && len != blob.size
        {
            return Err(Attempt::Fatal(Error::Digest {
                what,
                detail: format!(
                    "the source sends {len} bytes, the manifest says {}",
                    blob.size
                ),
            }));
        }
        let put_url = with_digest(location.clone(), digest);
        let what = format!("uploading blob {digest} to {}/{repo}", self.inner.name);
        self.refuse_downgrade(&what, "upload Location", &put_url)
            .map_err(Attempt::Fatal)?;
        // Credentials only to the registry's own origin.
        let auth = if self.same_origin(&put_url) {
            self.authorization(&Scope::push(repo), &what)
                .await
                .map_err(Attempt::Fatal)?
                .0
        } else {
            None
        };
        let mut req = self
            .inner
            .http
            .put(put_url.clone())
            .timeout(blob_timeout(self.inner.base_timeout, blob.size))
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, blob.size)
            .body(reqwest::Body::wrap_stream(resp.bytes_stream()));
        if let Some(h) = auth {
            req = req.header(AUTHORIZATION, h);
        }
        Counters::add(&self.inner.counters.requests, 1);
        Counters::add(&self.inner.counters.bytes_sent, blob.size);
        match req.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) if kit::http::is_retryable_status(r.status()) => {
                let wait = kit::http::retry_after(&r);
                Err(Attempt::Transient(
                    self.status_error(r, "PUT", &what, "").await,
                    wait,
                ))
            }
            Ok(r) if r.status() == StatusCode::UNAUTHORIZED && self.same_origin(&put_url) => {
                // Token expired mid-upload: drop it and try again.
                self.inner
                    .auth
                    .lock()
                    .await
                    .tokens
                    .remove(&Scope::push(repo).key());
                Err(Attempt::Transient(
                    self.status_error(r, "PUT", &what, " (token expired?)")
                        .await,
                    None,
                ))
            }
            Ok(r) => Err(Attempt::Fatal(
                self.check(r, "PUT", &what)
                    .await
                    .err()
                    .unwrap_or_else(|| Error::unexpected(&what, &put_url, "no answer")),
            )),
            Err(e) if kit::http::is_retryable_error(&e) => Err(Attempt::Transient(
                self.transport_error(&what, &put_url, &e),
                None,
            )),
            Err(e) => Err(Attempt::Fatal(self.transport_error(&what, &put_url, &e))),
        }
    }
}

fn with_digest(mut url: Url, digest: &Digest) -> Url {
    url.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    url
}
