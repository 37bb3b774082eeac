//! The registry client: one [`Registry`] per registry host and set of
//! credentials. What it does is split by concern:
//!
//! - [`crate::transport`]: the HTTP client, retries, the 401 round-trip,
//!   where credentials may go, reading answers;
//! - [`crate::auth`]: challenges, scopes, tokens and the token realm rule;
//! - [`crate::blobs`]: HEAD, GET, upload, mount, streamed copy;
//! - [`crate::manifests`]: resolve, GET, exact-bytes PUT, tags.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kit::JobResult;
use kit::credentials::Credentials;
use kit::env::Env;
use kit::http::{HttpOptions, RetryPolicy};
use kit::reference::ImageRef;
use kit::secret::Redactor;
use reqwest::{Client, Url};

use crate::auth::AuthState;

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

/// Counters for one [`Registry`] (all clones share them). For the job's
/// summary line; tests count requests at a gateway instead.
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
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub token_requests: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub blobs_uploaded: AtomicU64,
    pub blobs_mounted: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A client for one registry with its own credentials.
///
/// Cheap to clone (clones share the connection pool, token cache and
/// counters). Operations return [`crate::Error`]; it converts into
/// `kit::JobError` for callers that still use that.
#[derive(Clone)]
pub struct Registry {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub name: String,
    /// `scheme://host[:port]`
    pub base: String,
    pub base_url: Url,
    pub http: Client,
    pub creds: Option<Credentials>,
    pub retry: RetryPolicy,
    pub base_timeout: std::time::Duration,
    pub auth: tokio::sync::Mutex<AuthState>,
    pub counters: Counters,
    pub redactor: Redactor,
    /// Origins other than the registry's own that may receive its
    /// credentials as a token realm (HTTPS only; see `auth::declared_token_services`).
    pub token_services: Vec<url::Origin>,
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

impl Registry {
    /// A client for `registry` (a normalized registry name as in
    /// [`ImageRef::registry`], e.g. `docker.io` or `127.0.0.1:5000`).
    /// `docker.io` is spoken to at `registry-1.docker.io`. Fails only on
    /// the kit's HTTP setup (an unreadable CA bundle: exit 2), hence
    /// `kit::JobResult`.
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
        let base = format!("{scheme}://{host}");
        let base_url = Url::parse(&base).map_err(|e| {
            kit::JobError::usage(format!("registry {registry:?} is not a host[:port]: {e}"))
        })?;
        let http = crate::transport::http_client(&options.http, env)?;
        let mut redactor = Redactor::new();
        if let Some(c) = &credentials {
            redactor.add(&c.password);
        }
        Ok(Registry {
            inner: Arc::new(Inner {
                name: registry.to_string(),
                base,
                base_url,
                http,
                creds: credentials,
                retry: options.retry,
                base_timeout: options
                    .base_timeout
                    .unwrap_or(std::time::Duration::from_secs(120)),
                auth: tokio::sync::Mutex::new(AuthState::default()),
                counters: Counters::default(),
                redactor,
                token_services: crate::auth::declared_token_services(registry, env),
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

    /// `BASE/v2/{path}` (always the registry's own origin).
    pub(crate) fn url(&self, path: &str) -> Url {
        self.inner
            .base_url
            .join(&format!("/v2/{path}"))
            .expect("a path joins onto the registry's base URL")
    }
}

/// Whole-request timeout for a request carrying (or fetching) `bytes`:
/// the base (two minutes) plus the time to move them at 512 kB/s. Generous
/// on purpose: it only has to catch a connection that stalled.
pub(crate) fn blob_timeout(base: std::time::Duration, bytes: u64) -> std::time::Duration {
    base + std::time::Duration::from_secs(bytes / 512_000)
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
        assert_eq!(
            r.url("a/b/manifests/1").as_str(),
            "http://127.0.0.1:5000/v2/a/b/manifests/1"
        );
        let hub = Registry::new("docker.io", None, &o, &env).unwrap();
        assert_eq!(hub.base_url(), "https://registry-1.docker.io");
    }
}
