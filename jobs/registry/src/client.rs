//! The registry client: one [`Registry`] per registry host and set of
//! credentials, over the kit's reqwest client (rustls, CA bundles) with the
//! kit's bounded retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kit::credentials::Credentials;
use kit::env::Env;
use kit::http::{
    HttpOptions, RetryPolicy, describe, is_retryable_error, is_retryable_status, remote_error,
    send_with_retry,
};
use kit::reference::{Digest, ImageRef};
use kit::secret::Redactor;
use kit::{JobError, JobResult};
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Client, RequestBuilder, Response, StatusCode, Url};

use crate::auth::{AuthState, Challenge, Scope, Token, TokenResponse};
use crate::manifest::{self, Descriptor, Manifest};

/// How registry clients are built.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// `HOST[:PORT]` entries (`--insecure-registry`) spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Retry bounds for every request (connect errors, 429 with
    /// `Retry-After`, 502/503/504; a streamed blob upload is retried whole).
    pub retry: RetryPolicy,
    /// TLS and timeouts for the underlying reqwest client.
    pub http: HttpOptions,
    /// Base whole-request timeout; a request moving N bytes gets this plus
    /// N / 512 kB/s. `None`: 2 minutes. (Tests set it short.)
    pub base_timeout: Option<std::time::Duration>,
}

impl ClientOptions {
    /// Whether `host` (as written in references, e.g. `127.0.0.1:5000`) is
    /// to be spoken to over plain HTTP.
    pub fn is_insecure(&self, host: &str) -> bool {
        self.insecure_registries.iter().any(|h| {
            let h = h.trim().trim_start_matches("http://").trim_end_matches('/');
            h.eq_ignore_ascii_case(host)
        })
    }
}

/// Counters for one [`Registry`] (all clones share them).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// HTTP requests sent, retries and token requests included.
    pub requests: u64,
    /// Of those, requests to a token endpoint.
    pub token_requests: u64,
    /// Request body bytes sent (blobs and manifests).
    pub bytes_sent: u64,
    /// Blobs uploaded (streamed or from bytes).
    pub blobs_uploaded: u64,
    /// Blobs mounted from another repository of the same registry.
    pub blobs_mounted: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    token_requests: AtomicU64,
    bytes_sent: AtomicU64,
    blobs_uploaded: AtomicU64,
    blobs_mounted: AtomicU64,
}

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

/// A manifest found by [`Registry::resolve`] or [`Registry::manifest_head`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// A client for one registry with its own credentials.
///
/// Cheap to clone (clones share the connection pool, token cache and
/// counters). Every method maps failures to [`JobError`]: exit 3 for remote
/// problems (after retries), exit 2 for bad input.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    base: String,
    http: Client,
    creds: Option<Credentials>,
    retry: RetryPolicy,
    base_timeout: std::time::Duration,
    auth: tokio::sync::Mutex<AuthState>,
    counters: Counters,
    redactor: Redactor,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("name", &self.inner.name)
            .field("base", &self.inner.base)
            .field(
                "user",
                &self.inner.creds.as_ref().map(|c| c.username.as_str()),
            )
            .finish()
    }
}

/// Whole-request timeout for a request carrying (or fetching) `bytes`:
/// the base (two minutes) plus the time to move them at 512 kB/s. Generous
/// on purpose: it only has to catch a connection that stalled.
fn blob_timeout(base: std::time::Duration, bytes: u64) -> std::time::Duration {
    base + std::time::Duration::from_secs(bytes / 512_000)
}

/// Max bytes of an error body we read and quote.
const ERROR_BODY_MAX: usize = 300;

impl Registry {
    /// A client for `registry` (a normalized registry name as in
    /// [`ImageRef::registry`], e.g. `docker.io` or `127.0.0.1:5000`).
    /// `docker.io` is spoken to at `registry-1.docker.io`.
    pub fn new(
        registry: &str,
        credentials: Option<Credentials>,
        options: &ClientOptions,
        env: &dyn Env,
    ) -> JobResult<Registry> {
        let host = if registry == kit::reference::DOCKER_HUB {
            kit::reference::DOCKER_HUB_API
        } else {
            registry
        };
        let scheme = if options.is_insecure(registry) || options.is_insecure(host) {
            "http"
        } else {
            "https"
        };
        let http = kit::http::client(&options.http, env)?;
        let mut redactor = Redactor::new();
        if let Some(c) = &credentials {
            redactor.add(&c.password);
        }
        Ok(Registry {
            inner: Arc::new(Inner {
                name: registry.to_string(),
                base: format!("{scheme}://{host}"),
                http,
                creds: credentials,
                retry: options.retry,
                base_timeout: options
                    .base_timeout
                    .unwrap_or(std::time::Duration::from_secs(120)),
                auth: tokio::sync::Mutex::new(AuthState::default()),
                counters: Counters::default(),
                redactor,
            }),
        })
    }

    /// A client for the registry of `image`.
    pub fn for_image(
        image: &ImageRef,
        credentials: Option<Credentials>,
        options: &ClientOptions,
        env: &dyn Env,
    ) -> JobResult<Registry> {
        Self::new(&image.registry, credentials, options, env)
    }

    /// The registry name this client was made for.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// `scheme://host[:port]` requests go to.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// Whether `other` talks to the same registry endpoint (so blobs can be
    /// mounted between their repositories).
    pub fn same_endpoint(&self, other: &Registry) -> bool {
        self.inner.base == other.inner.base
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            requests: c.requests.load(Ordering::Relaxed),
            token_requests: c.token_requests.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            blobs_uploaded: c.blobs_uploaded.load(Ordering::Relaxed),
            blobs_mounted: c.blobs_mounted.load(Ordering::Relaxed),
        }
    }

    // ----- reading -------------------------------------------------------

    /// Resolves `reference` (a tag or a digest) in `repo` to the manifest's
    /// digest and media type with one HEAD (a GET when the registry sends no
    /// `Docker-Content-Digest`). A missing manifest is exit 3.
    pub async fn resolve(&self, repo: &str, reference: &str) -> JobResult<Resolved> {
        match self.manifest_head(repo, reference).await? {
            Some(r) => Ok(r),
            None => Err(JobError::remote(format!(
                "{} not found",
                display_ref(&self.inner.name, repo, reference)
            ))),
        }
    }

    /// Resolves an image reference: its digest if it has one, else its tag
    /// (`latest` when neither).
    pub async fn resolve_image(&self, image: &ImageRef) -> JobResult<Resolved> {
        self.resolve(&image.repository, &reference_of(image)).await
    }

    /// HEAD of a manifest: `None` when it does not exist.
    pub async fn manifest_head(&self, repo: &str, reference: &str) -> JobResult<Option<Resolved>> {
        let url = self.url(&format!("{repo}/manifests/{reference}"));
        let what = format!(
            "resolving {}",
            display_ref(&self.inner.name, repo, reference)
        );
        let resp = self
            .send(&what, &Scope::pull(repo), 0, |c| {
                c.head(&url).header(ACCEPT, manifest::ACCEPT)
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.check(resp, &what).await?;
        let media_type = header(&resp, CONTENT_TYPE).unwrap_or_default();
        let size = header(&resp, CONTENT_LENGTH)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        match header(&resp, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok()) {
            Some(digest) => {
                if let Ok(want) = reference.parse::<Digest>()
                    && want != digest
                {
                    return Err(JobError::remote(format!(
                        "{what}: registry answered with digest {digest}"
                    )));
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
    pub async fn manifest(&self, repo: &str, reference: &str) -> JobResult<Option<Manifest>> {
        let url = self.url(&format!("{repo}/manifests/{reference}"));
        let what = format!(
            "reading manifest {}",
            display_ref(&self.inner.name, repo, reference)
        );
        let resp = self
            .send(&what, &Scope::pull(repo), 0, |c| {
                c.get(&url).header(ACCEPT, manifest::ACCEPT)
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.check(resp, &what).await?;
        let media_type = base_media_type(&header(&resp, CONTENT_TYPE).unwrap_or_default());
        let announced =
            header(&resp, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok());
        let bytes = read_limited(resp, manifest::MAX_MANIFEST_BYTES, &what).await?;
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
            return Err(JobError::remote(format!(
                "{what}: registry returned bytes whose digest is {}",
                m.digest
            )));
        }
        Ok(Some(m))
    }

    /// Whether a blob exists in `repo` (HEAD).
    pub async fn blob_exists(&self, repo: &str, digest: &Digest) -> JobResult<bool> {
        let url = self.url(&format!("{repo}/blobs/{digest}"));
        let what = format!("checking blob {digest} in {}/{repo}", self.inner.name);
        let resp = self
            .send(&what, &Scope::pull(repo), 0, |c| c.head(&url))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        self.check(resp, &what).await.map(|_| true)
    }

    /// GETs a small blob into memory (at most `max_bytes`), checking its
    /// digest. For layers use [`Registry::copy_blob`], which streams.
    pub async fn fetch_blob(
        &self,
        repo: &str,
        digest: &Digest,
        max_bytes: usize,
    ) -> JobResult<Vec<u8>> {
        let url = self.url(&format!("{repo}/blobs/{digest}"));
        let what = format!("reading blob {digest} from {}/{repo}", self.inner.name);
        let timeout = blob_timeout(self.inner.base_timeout, max_bytes as u64);
        let resp = self
            .send_timed(&what, &Scope::pull(repo), 0, timeout, |c| c.get(&url))
            .await?;
        let resp = self.check(resp, &what).await?;
        let bytes = read_limited(resp, max_bytes, &what).await?;
        let got = manifest::sha256(&bytes);
        if &got != digest {
            return Err(JobError::remote(format!(
                "{what}: registry returned bytes whose digest is {got}"
            )));
        }
        Ok(bytes)
    }

    /// Lists the tags of `repo` (following `Link` pagination). A repository
    /// that does not exist has no tags.
    pub async fn list_tags(&self, repo: &str) -> JobResult<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Tags {
            tags: Option<Vec<String>>,
        }
        let what = format!("listing tags of {}/{repo}", self.inner.name);
        let mut next = Some(self.url(&format!("{repo}/tags/list?n=1000")));
        let mut out = Vec::new();
        while let Some(url) = next.take() {
            let resp = self
                .send(&what, &Scope::pull(repo), 0, |c| c.get(&url))
                .await?;
            if resp.status() == StatusCode::NOT_FOUND {
                break;
            }
            let resp = self.check(resp, &what).await?;
            next = header(&resp, "link")
                .and_then(|l| next_link(&l))
                .map(|l| self.join(&l));
            let bytes = read_limited(resp, 64 * 1024 * 1024, &what).await?;
            let tags: Tags = serde_json::from_slice(&bytes)
                .map_err(|e| JobError::remote(format!("{what}: answer is not a tag list: {e}")))?;
            out.extend(tags.tags.unwrap_or_default());
        }
        Ok(out)
    }

    // ----- writing -------------------------------------------------------

    /// Pushes a blob held in memory (configs, signatures). Skips the upload
    /// when the blob is already there. Returns its digest.
    pub async fn push_blob(&self, repo: &str, bytes: impl Into<bytes::Bytes>) -> JobResult<Digest> {
        let bytes: bytes::Bytes = bytes.into();
        let digest = manifest::sha256(&bytes);
        if self.blob_exists(repo, &digest).await? {
            return Ok(digest);
        }
        self.upload_blob(repo, bytes, digest).await
    }

    /// Uploads `bytes` without asking first whether the registry has them
    /// (POST + PUT, one request less than [`Registry::push_blob`]). For
    /// content that is new by construction, such as a fresh signature's
    /// payload and config; re-uploading a blob the registry has is harmless.
    pub async fn push_new_blob(
        &self,
        repo: &str,
        bytes: impl Into<bytes::Bytes>,
    ) -> JobResult<Digest> {
        let bytes: bytes::Bytes = bytes.into();
        let digest = manifest::sha256(&bytes);
        self.upload_blob(repo, bytes, digest).await
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
    ) -> JobResult<(Digest, bool)> {
        let bytes: bytes::Bytes = bytes.into();
        let digest = manifest::sha256(&bytes);
        let present = self
            .upload_blob_from(repo, Some(repo), bytes, &digest)
            .await?;
        Ok((digest, present))
    }

    async fn upload_blob(
        &self,
        repo: &str,
        bytes: bytes::Bytes,
        digest: Digest,
    ) -> JobResult<Digest> {
        self.upload_blob_from(repo, None, bytes, &digest).await?;
        Ok(digest)
    }

    /// POST (as a mount from `from` when given), then PUT the bytes unless
    /// the registry mounted the blob. `Ok(true)` when it was mounted.
    async fn upload_blob_from(
        &self,
        repo: &str,
        from: Option<&str>,
        bytes: bytes::Bytes,
        digest: &Digest,
    ) -> JobResult<bool> {
        let what = format!("uploading blob {digest} to {}/{repo}", self.inner.name);
        let location = match self.start_upload(repo, from, digest).await? {
            Upload::Mounted => return Ok(true),
            Upload::Session(l) => l,
        };
        let url = with_digest(&location, digest)?;
        let len = bytes.len() as u64;
        let resp = self
            .send(&what, &Scope::push(repo), len, |c| {
                c.put(url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, len)
                    .body(bytes.clone())
            })
            .await?;
        self.check(resp, &what).await?;
        self.inner
            .counters
            .blobs_uploaded
            .fetch_add(1, Ordering::Relaxed);
        Ok(false)
    }

    /// Mounts `digest` from `from_repo` into `repo` on this registry.
    /// `Ok(true)` when mounted; `Ok(false)` when the registry declined
    /// (the upload session it opened instead is cancelled).
    pub async fn mount_blob(
        &self,
        repo: &str,
        from_repo: &str,
        digest: &Digest,
    ) -> JobResult<bool> {
        match self.start_upload(repo, Some(from_repo), digest).await? {
            Upload::Mounted => Ok(true),
            Upload::Session(location) => {
                let _ = self
                    .send("cancelling upload", &Scope::push(repo), 0, |c| {
                        c.delete(location.clone())
                    })
                    .await;
                Ok(false)
            }
        }
    }

    /// Copies one blob from `src_repo` at `src` into `repo` here: nothing
    /// when it is already present (HEAD first), a cross-repository mount
    /// when both are the same registry endpoint, else a streamed GET → PUT
    /// whose memory use does not grow with the blob's size. A failed stream
    /// is retried whole within the retry policy.
    pub async fn copy_blob(
        &self,
        repo: &str,
        src: &Registry,
        src_repo: &str,
        blob: &Descriptor,
    ) -> JobResult<BlobCopy> {
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
                    self.inner
                        .counters
                        .blobs_uploaded
                        .fetch_add(1, Ordering::Relaxed);
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
                        e.message,
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

    /// Pushes a manifest's exact bytes under `reference` (a tag or its
    /// digest) and checks the registry stored those bytes (its digest must
    /// match). Returns the digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: impl Into<bytes::Bytes>,
    ) -> JobResult<Digest> {
        let bytes: bytes::Bytes = bytes.into();
        let digest = manifest::sha256(&bytes);
        if let Ok(d) = reference.parse::<Digest>()
            && d != digest
        {
            return Err(JobError::usage(format!(
                "manifest bytes have digest {digest}, not {d}"
            )));
        }
        let url = self.url(&format!("{repo}/manifests/{reference}"));
        let what = format!(
            "pushing manifest {}",
            display_ref(&self.inner.name, repo, reference)
        );
        let len = bytes.len() as u64;
        let media_type = media_type.to_string();
        let resp = self
            .send(&what, &Scope::push(repo), len, |c| {
                c.put(&url)
                    .header(CONTENT_TYPE, &media_type)
                    .header(CONTENT_LENGTH, len)
                    .body(bytes.clone())
            })
            .await?;
        let resp = self.check(resp, &what).await?;
        if let Some(got) =
            header(&resp, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok())
            && got != digest
        {
            return Err(JobError::remote(format!(
                "{what}: registry stored the manifest as {got}, not {digest} (it rewrote the bytes)"
            )));
        }
        Ok(digest)
    }

    /// Convenience: pushes a [`Manifest`] under `reference`.
    pub async fn push_manifest_raw(
        &self,
        repo: &str,
        reference: &str,
        m: &Manifest,
    ) -> JobResult<Digest> {
        self.push_manifest(repo, reference, &m.media_type, m.bytes.clone())
            .await
    }

    // ----- internals -----------------------------------------------------

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{path}", self.inner.base)
    }

    /// Resolves a `Location` (absolute or relative) against the registry.
    fn join(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if location.starts_with('/') {
            format!("{}{location}", self.inner.base)
        } else {
            format!("{}/{location}", self.inner.base)
        }
    }

    /// POST an upload session, optionally as a mount from `from`.
    async fn start_upload(
        &self,
        repo: &str,
        from: Option<&str>,
        digest: &Digest,
    ) -> JobResult<Upload> {
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
            .send(&what, &scope, 0, |c| c.post(&url).header(CONTENT_LENGTH, 0))
            .await?;
        let resp = self.check(resp, &what).await?;
        if resp.status() == StatusCode::CREATED && from.is_some() {
            if from != Some(repo) {
                self.inner
                    .counters
                    .blobs_mounted
                    .fetch_add(1, Ordering::Relaxed);
            }
            return Ok(Upload::Mounted);
        }
        let location = header(&resp, LOCATION)
            .ok_or_else(|| JobError::remote(format!("{what}: registry sent no upload Location")))?;
        Ok(Upload::Session(self.join(&location)))
    }

    /// One streamed GET → PUT.
    async fn stream_once(
        &self,
        location: &str,
        repo: &str,
        src: &Registry,
        src_repo: &str,
        blob: &Descriptor,
    ) -> Result<(), Attempt> {
        let digest = &blob.digest;
        let src_url = src.url(&format!("{src_repo}/blobs/{digest}"));
        let what = format!("reading blob {digest} from {}/{src_repo}", src.inner.name);
        let resp = src
            .send_timed(
                &what,
                &Scope::pull(src_repo),
                0,
                blob_timeout(src.inner.base_timeout, blob.size),
                |c| c.get(&src_url),
            )
            .await
            .map_err(Attempt::Fatal)?;
        let resp = src.check(resp, &what).await.map_err(Attempt::Fatal)?;
        if let Some(len) = header(&resp, CONTENT_LENGTH).and_then(|l| l.parse::<u64>().ok())
            && len != blob.size
        {
            return Err(Attempt::Fatal(JobError::remote(format!(
                "{what}: source sends {len} bytes, the manifest says {}",
                blob.size
            ))));
        }
        let put_url = with_digest(location, digest).map_err(Attempt::Fatal)?;
        let what = format!("uploading blob {digest} to {}/{repo}", self.inner.name);
        let (auth, _) = self
            .authorization(&Scope::push(repo), &what)
            .await
            .map_err(Attempt::Fatal)?;
        let mut req = self
            .inner
            .http
            .put(put_url)
            .timeout(blob_timeout(self.inner.base_timeout, blob.size))
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, blob.size)
            .body(reqwest::Body::wrap_stream(resp.bytes_stream()));
        if let Some(h) = auth {
            req = req.header(AUTHORIZATION, h);
        }
        self.inner.counters.requests.fetch_add(1, Ordering::Relaxed);
        self.inner
            .counters
            .bytes_sent
            .fetch_add(blob.size, Ordering::Relaxed);
        match req.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) if is_retryable_status(r.status()) => {
                let wait = kit::http::retry_after(&r);
                Err(Attempt::Transient(
                    JobError::remote(format!("{}", r.status())),
                    wait,
                ))
            }
            Ok(r) if r.status() == StatusCode::UNAUTHORIZED => {
                // Token expired mid-upload: drop it and try again.
                self.inner
                    .auth
                    .lock()
                    .await
                    .tokens
                    .remove(&Scope::push(repo).key());
                Err(Attempt::Transient(
                    JobError::remote("401 Unauthorized (token expired?)"),
                    None,
                ))
            }
            Ok(r) => Err(Attempt::Fatal(
                self.check(r, &what)
                    .await
                    .err()
                    .unwrap_or_else(|| JobError::remote(&what)),
            )),
            Err(e) if is_retryable_error(&e) => Err(Attempt::Transient(
                JobError::remote(describe(&e.without_url())),
                None,
            )),
            Err(e) => Err(Attempt::Fatal(remote_error(&what, &e))),
        }
    }

    /// The `Authorization` header for `scope`, fetching a token when the
    /// registry uses Bearer auth and we hold none that is still fresh.
    /// The bool says whether a token was fetched just now.
    async fn authorization(
        &self,
        scope: &Scope,
        what: &str,
    ) -> JobResult<(Option<HeaderValue>, bool)> {
        let mut state = self.inner.auth.lock().await;
        match state.challenge.clone() {
            None => Ok((None, false)),
            Some(Challenge::Basic) => {
                let Some(c) = &self.inner.creds else {
                    return Ok((None, false));
                };
                let raw = format!("{}:{}", c.username, c.password.expose());
                let mut h = HeaderValue::from_str(&format!(
                    "Basic {}",
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw)
                ))
                .map_err(|_| {
                    JobError::usage(
                        "registry username or password contains characters HTTP cannot carry",
                    )
                })?;
                h.set_sensitive(true);
                Ok((Some(h), false))
            }
            Some(Challenge::Bearer { realm, service }) => {
                let key = scope.key();
                if let Some(t) = state.tokens.get(&key)
                    && t.refresh_at > std::time::Instant::now()
                {
                    return Ok((Some(bearer(&t.value)?), false));
                }
                let token = self
                    .fetch_token(&realm, service.as_deref(), scope, what)
                    .await?;
                let h = bearer(&token.value)?;
                state.tokens.insert(key, token);
                Ok((Some(h), true))
            }
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &Scope,
        what: &str,
    ) -> JobResult<Token> {
        let mut url = Url::parse(realm).map_err(|e| {
            JobError::remote(format!("{what}: token realm {realm:?} is not a URL: {e}"))
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scope.parts() {
                q.append_pair("scope", s);
            }
        }
        let shown = format!("token exchange with {} for {scope}", redact_query(&url));
        let resp = send_with_retry(&self.inner.retry, || {
            self.inner.counters.requests.fetch_add(1, Ordering::Relaxed);
            self.inner
                .counters
                .token_requests
                .fetch_add(1, Ordering::Relaxed);
            let rb = self.inner.http.get(url.clone());
            match &self.inner.creds {
                Some(c) => rb.basic_auth(&c.username, Some(c.password.expose())),
                None => rb,
            }
        })
        .await
        .map_err(|e| remote_error(&format!("{what}: {shown}"), &e))?;
        let status = resp.status();
        if !status.is_success() {
            let reason = self.error_text(resp).await;
            let hint = match (status.as_u16(), &self.inner.creds) {
                (401 | 403, Some(c)) => {
                    format!(" (check the password or token of user {:?})", c.username)
                }
                (401 | 403, None) => " (no credentials were given for this registry)".to_string(),
                _ => String::new(),
            };
            return Err(JobError::remote(format!(
                "{what}: {shown} failed: {status}{reason}{hint}"
            )));
        }
        let body = read_limited(resp, 1024 * 1024, &shown).await?;
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            JobError::remote(format!(
                "{what}: {shown}: answer is not a token response: {e}"
            ))
        })?;
        parsed
            .into_token()
            .ok_or_else(|| JobError::remote(format!("{what}: {shown}: answer holds no token")))
    }

    /// Sends a request built by `make` (called once per try) with auth and
    /// retries; learns the auth scheme from a 401 and refreshes an expired
    /// token once. Non-401 statuses are returned for the caller to check.
    async fn send<F>(
        &self,
        what: &str,
        scope: &Scope,
        body_len: u64,
        make: F,
    ) -> JobResult<Response>
    where
        F: Fn(&Client) -> RequestBuilder,
    {
        self.send_timed(
            what,
            scope,
            body_len,
            blob_timeout(self.inner.base_timeout, body_len),
            make,
        )
        .await
    }

    /// [`Registry::send`] with a whole-request timeout (body included), so a
    /// stalled connection fails (and is retried) instead of hanging the job.
    async fn send_timed<F>(
        &self,
        what: &str,
        scope: &Scope,
        body_len: u64,
        timeout: std::time::Duration,
        make: F,
    ) -> JobResult<Response>
    where
        F: Fn(&Client) -> RequestBuilder,
    {
        for _ in 0..3 {
            let (auth, fresh) = self.authorization(scope, what).await?;
            let sent_basic = auth.is_some()
                && !fresh
                && matches!(self.challenge().await, Some(Challenge::Basic));
            let resp = send_with_retry(&self.inner.retry, || {
                self.inner.counters.requests.fetch_add(1, Ordering::Relaxed);
                self.inner
                    .counters
                    .bytes_sent
                    .fetch_add(body_len, Ordering::Relaxed);
                let rb = make(&self.inner.http).timeout(timeout);
                match &auth {
                    Some(h) => rb.header(AUTHORIZATION, h.clone()),
                    None => rb,
                }
            })
            .await
            .map_err(|e| remote_error(what, &e))?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                if is_retryable_status(resp.status()) {
                    return Err(JobError::remote(format!(
                        "{what}: {} (gave up after {} tries)",
                        resp.status(),
                        self.inner.retry.attempts
                    )));
                }
                return Ok(resp);
            }
            let challenge = header(&resp, WWW_AUTHENTICATE)
                .as_deref()
                .and_then(Challenge::parse);
            let user = self.inner.creds.as_ref().map(|c| c.username.clone());
            match challenge {
                None => {
                    let reason = self.error_text(resp).await;
                    return Err(JobError::remote(format!(
                        "{what}: 401 Unauthorized{reason}"
                    )));
                }
                Some(Challenge::Basic) => {
                    let Some(user) = user else {
                        return Err(JobError::remote(format!(
                            "{what}: {} requires a login and no credentials were given for it",
                            self.inner.name
                        )));
                    };
                    if sent_basic {
                        return Err(JobError::remote(format!(
                            "{what}: {} rejected the username/password of user {user:?} (401)",
                            self.inner.name
                        )));
                    }
                    self.inner.auth.lock().await.challenge = Some(Challenge::Basic);
                }
                Some(c @ Challenge::Bearer { .. }) => {
                    if fresh {
                        let who =
                            user.map_or("anonymous access".to_string(), |u| format!("user {u:?}"));
                        return Err(JobError::remote(format!(
                            "{what}: {} refused a fresh token for {scope} ({who}): check the account's access to the repository",
                            self.inner.name
                        )));
                    }
                    let mut state = self.inner.auth.lock().await;
                    state.challenge = Some(c);
                    state.tokens.remove(&scope.key());
                }
            }
        }
        Err(JobError::remote(format!(
            "{what}: authentication did not settle after 3 rounds"
        )))
    }

    async fn challenge(&self) -> Option<Challenge> {
        self.inner.auth.lock().await.challenge.clone()
    }

    /// Passes 2xx responses; turns the rest into a one-line exit-3 error
    /// quoting the registry's error code and message.
    async fn check(&self, resp: Response, what: &str) -> JobResult<Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let reason = self.error_text(resp).await;
        let hint = match status.as_u16() {
            403 => " (the credentials lack access to this repository)",
            404 => " (not found)",
            _ => "",
        };
        Err(JobError::remote(format!("{what}: {status}{reason}{hint}")))
    }

    /// `": CODE: message"` from an OCI error body, else its first characters.
    async fn error_text(&self, resp: Response) -> String {
        #[derive(serde::Deserialize)]
        struct Envelope {
            errors: Vec<OciError>,
        }
        #[derive(serde::Deserialize)]
        struct OciError {
            code: Option<String>,
            message: Option<String>,
        }
        /// Token servers' shapes: Docker Hub `{"details": …}`, OAuth `{"error", "error_description"}`.
        #[derive(serde::Deserialize)]
        struct TokenError {
            details: Option<String>,
            error: Option<String>,
            error_description: Option<String>,
        }
        let Ok(bytes) = resp.bytes().await else {
            return String::new();
        };
        let text = if let Ok(env) = serde_json::from_slice::<Envelope>(&bytes) {
            env.errors
                .iter()
                .map(|e| {
                    [e.code.as_deref(), e.message.as_deref()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(": ")
                })
                .collect::<Vec<_>>()
                .join("; ")
        } else if let Ok(t) = serde_json::from_slice::<TokenError>(&bytes)
            && (t.details.is_some() || t.error.is_some())
        {
            [t.details, t.error, t.error_description]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ")
        } else {
            String::from_utf8_lossy(&bytes).trim().to_string()
        };
        let text: String = text.chars().take(ERROR_BODY_MAX).collect();
        let text = self.inner.redactor.redact(&text).replace(['\r', '\n'], " ");
        if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        }
    }
}

/// `registry/repo:tag` or `registry/repo@digest`.
pub fn display_ref(registry: &str, repo: &str, reference: &str) -> String {
    if reference.parse::<Digest>().is_ok() {
        format!("{registry}/{repo}@{reference}")
    } else {
        format!("{registry}/{repo}:{reference}")
    }
}

enum Upload {
    Mounted,
    Session(String),
}

enum Attempt {
    Fatal(JobError),
    Transient(JobError, Option<std::time::Duration>),
}

/// The tag or digest to ask a registry for.
pub fn reference_of(image: &ImageRef) -> String {
    match (&image.digest, &image.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_string(),
    }
}

fn bearer(token: &kit::secret::Secret) -> JobResult<HeaderValue> {
    let mut h = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map_err(|_| JobError::remote("token endpoint returned a token HTTP cannot carry"))?;
    h.set_sensitive(true);
    Ok(h)
}

fn header(resp: &Response, name: impl reqwest::header::AsHeaderName) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `application/json; charset=utf-8` → `application/json`.
fn base_media_type(ct: &str) -> String {
    ct.split(';').next().unwrap_or("").trim().to_string()
}

fn with_digest(location: &str, digest: &Digest) -> JobResult<Url> {
    let mut url = Url::parse(location).map_err(|e| {
        JobError::remote(format!(
            "registry sent an upload Location that is not a URL: {e}"
        ))
    })?;
    url.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    Ok(url)
}

/// A URL without its query (it may carry an account name).
fn redact_query(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    kit::secret::redact_url_credentials(u.as_str())
}

/// `<url>; rel="next"` from a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',')
        .find(|p| p.contains("rel=\"next\""))
        .and_then(|p| {
            let start = p.find('<')? + 1;
            let end = p.find('>')?;
            Some(p[start..end].to_string())
        })
}

async fn read_limited(resp: Response, max: usize, what: &str) -> JobResult<Vec<u8>> {
    use futures_util::StreamExt;
    if let Some(len) = resp.content_length()
        && len > max as u64
    {
        return Err(JobError::remote(format!(
            "{what}: {len} bytes is more than the {max} allowed"
        )));
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| remote_error(what, &e))?;
        if out.len() + chunk.len() > max {
            return Err(JobError::remote(format!(
                "{what}: more than the {max} bytes allowed"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_matching() {
        let o = ClientOptions {
            insecure_registries: vec!["127.0.0.1:5000".into(), "http://reg.local/".into()],
            ..Default::default()
        };
        assert!(o.is_insecure("127.0.0.1:5000"));
        assert!(o.is_insecure("reg.local"));
        assert!(!o.is_insecure("127.0.0.1:5001"));
        let env = kit::env::MapEnv::default();
        let r = Registry::new("127.0.0.1:5000", None, &o, &env).unwrap();
        assert_eq!(r.base_url(), "http://127.0.0.1:5000");
        let hub = Registry::new("docker.io", None, &o, &env).unwrap();
        assert_eq!(hub.base_url(), "https://registry-1.docker.io");
    }

    #[test]
    fn links_and_media_types() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?last=b&n=2")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
        assert_eq!(
            base_media_type("application/json; charset=utf-8"),
            "application/json"
        );
    }

    #[test]
    fn reference_choice() {
        let i = ImageRef::parse("r.example/a:1").unwrap();
        assert_eq!(reference_of(&i), "1");
        let i = ImageRef::parse("r.example/a").unwrap();
        assert_eq!(reference_of(&i), "latest");
    }
}
