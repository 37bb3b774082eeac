//! Requests: the HTTP client, one retry policy (the kit's
//! [`kit::http::send_with_retry`]), the 401 round-trip, where credentials
//! may go, and reading answers into [`kit::api::ApiError`]s.
//!
//! Where credentials go (README "Where credentials go"):
//! - the `Authorization` header (Basic or Bearer) is attached only to URLs
//!   of the registry's own origin (scheme, host, port); an absolute upload
//!   `Location` or `Link` next page on another origin is sent without it;
//! - an HTTPS registry is never followed to plain HTTP: a `Location`, a
//!   `Link`, a token realm or a redirect to `http://` is refused (exit 3);
//! - redirects (presigned blob URLs) are followed with reqwest dropping
//!   `Authorization` when the origin changes.

use std::sync::atomic::Ordering;
use std::time::Duration;

use kit::api::ApiError;
use kit::env::Env;
use kit::http::{HttpOptions, is_retryable_status, send_with_retry};
use reqwest::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Client, RequestBuilder, Response, StatusCode, Url};

use crate::auth::{Challenge, Scope};
use crate::client::{Counters, Registry, blob_timeout};
use crate::error::{Error, Result};

/// The service name in [`ApiError`]s.
pub(crate) const SERVICE: &str = "registry";

/// How much of an error body is read.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// The kit's client settings and CA bundles, with a redirect rule that
/// refuses HTTPS → HTTP. (`kit::http::client` follows reqwest's default
/// rule, which allows that downgrade.)
pub(crate) fn http_client(opts: &HttpOptions, env: &dyn Env) -> kit::JobResult<Client> {
    let mut b = Client::builder()
        .user_agent(&opts.user_agent)
        .connect_timeout(opts.connect_timeout)
        .danger_accept_invalid_certs(opts.accept_invalid_certs)
        .redirect(redirect_policy());
    if let Some(t) = opts.request_timeout {
        b = b.timeout(t);
    }
    for cert in kit::http::extra_ca_certs(env)? {
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(|e| {
        kit::JobError::usage(format!(
            "cannot set up HTTP client: {}",
            kit::http::describe(&e)
        ))
    })
}

/// A redirect from HTTPS to plain HTTP, refused.
#[derive(Debug, thiserror::Error)]
#[error("refusing a redirect from HTTPS to plain HTTP {0}")]
pub(crate) struct RedirectDowngrade(pub String);

fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let from_https = attempt.previous().iter().any(|u| u.scheme() == "https");
        if from_https && attempt.url().scheme() != "https" {
            let to = shown(attempt.url());
            return attempt.error(RedirectDowngrade(to));
        }
        if attempt.previous().len() > 10 {
            return attempt.error("more than 10 redirects");
        }
        // reqwest drops Authorization itself when the origin changes.
        attempt.follow()
    })
}

/// A URL for messages: no credentials, no query (it may carry an account).
pub(crate) fn shown(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    kit::secret::redact_url_credentials(u.as_str())
}

pub(crate) fn header(resp: &Response, name: impl reqwest::header::AsHeaderName) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// What one request is: for the log and errors (`what`), the token scope,
/// the method and the URL.
struct Call<'a> {
    what: &'a str,
    scope: &'a Scope,
    method: &'static str,
    url: &'a Url,
}

impl Registry {
    fn is_https(&self) -> bool {
        self.inner.base_url.scheme() == "https"
    }

    /// Whether `url` is on the registry's own origin.
    pub(crate) fn same_origin(&self, url: &Url) -> bool {
        url.origin() == self.inner.base_url.origin()
    }

    /// A URL the registry named (`kind`: "upload Location", "Link next
    /// page"), resolved against the registry; plain HTTP from an HTTPS
    /// registry is refused.
    pub(crate) fn admit(&self, what: &str, kind: &'static str, raw: &str) -> Result<Url> {
        let url = self.inner.base_url.join(raw).map_err(|e| {
            Error::unexpected(
                what,
                &self.inner.base,
                &format!("the {kind} {raw:?} is not a URL: {e}"),
            )
        })?;
        self.refuse_downgrade(what, kind, &url)?;
        Ok(url)
    }

    pub(crate) fn refuse_downgrade(&self, what: &str, kind: &'static str, url: &Url) -> Result<()> {
        if self.is_https() && url.scheme() != "https" {
            return Err(Error::Downgrade {
                what: what.to_string(),
                kind,
                to: shown(url),
                registry: self.inner.name.clone(),
            });
        }
        Ok(())
    }

    /// A transport error (after retries) as this crate's error.
    pub(crate) fn transport_error(&self, what: &str, url: &Url, e: &reqwest::Error) -> Error {
        let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(s) = src {
            if let Some(d) = s.downcast_ref::<RedirectDowngrade>() {
                return Error::Downgrade {
                    what: what.to_string(),
                    kind: "redirect to",
                    to: d.0.clone(),
                    registry: self.inner.name.clone(),
                };
            }
            src = s.source();
        }
        Error::Api {
            what: what.to_string(),
            hint: String::new(),
            source: ApiError::transport(SERVICE, &shown(url), e),
        }
    }

    /// Sends a request built by `make` (called once per try, with `url`)
    /// with auth and retries; learns the auth scheme from a 401 and
    /// refreshes an expired token once. Other statuses are returned for the
    /// caller to [`Registry::check`]. The whole-request timeout grows with
    /// `body_len`.
    pub(crate) async fn send<F>(
        &self,
        what: &str,
        scope: &Scope,
        body_len: u64,
        method: &'static str,
        url: &Url,
        make: F,
    ) -> Result<Response>
    where
        F: Fn(&Client, Url) -> RequestBuilder,
    {
        let timeout = blob_timeout(self.inner.base_timeout, body_len);
        let call = Call {
            what,
            scope,
            method,
            url,
        };
        self.exchange(call, (body_len, timeout), make).await
    }

    /// `GET` of a blob of `size` bytes (auth and retries as [`Registry::send`]),
    /// with a whole-request timeout that grows with `size` (the body
    /// included), so a stalled download fails (and is retried) instead of
    /// hanging.
    pub(crate) async fn get_blob(
        &self,
        what: &str,
        scope: &Scope,
        size: u64,
        url: &Url,
    ) -> Result<Response> {
        let timeout = blob_timeout(self.inner.base_timeout, size);
        let call = Call {
            what,
            scope,
            method: "GET",
            url,
        };
        self.exchange(call, (0, timeout), |c, u| c.get(u)).await
    }

    /// [`Registry::send`]'s work; `sizing` is the body length (counted)
    /// and the whole-request timeout.
    async fn exchange<F>(
        &self,
        call: Call<'_>,
        sizing: (u64, Duration),
        make: F,
    ) -> Result<Response>
    where
        F: Fn(&Client, Url) -> RequestBuilder,
    {
        let Call {
            what,
            scope,
            method,
            url,
        } = call;
        let (body_len, timeout) = sizing;
        self.refuse_downgrade(what, "URL", url)?;
        if !self.same_origin(url) {
            // Another origin (an absolute Location or Link): no credentials.
            let resp = self.send_once(url, body_len, timeout, None, &make).await;
            return self.settle(what, method, url, resp).await;
        }
        for _ in 0..3 {
            let (auth, fresh) = self.authorization(scope, what).await?;
            let sent_basic = auth.is_some()
                && !fresh
                && matches!(self.challenge().await, Some(Challenge::Basic));
            let resp = self
                .send_once(url, body_len, timeout, auth.as_ref(), &make)
                .await;
            let resp = self.settle(what, method, url, resp).await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            let challenge = header(&resp, WWW_AUTHENTICATE)
                .as_deref()
                .and_then(Challenge::parse);
            let user = self.inner.creds.as_ref().map(|c| c.username.clone());
            match challenge {
                None => {
                    return Err(self
                        .status_error(
                            resp,
                            method,
                            what,
                            " (no usable WWW-Authenticate challenge)",
                        )
                        .await);
                }
                Some(Challenge::Basic) => {
                    let Some(user) = user else {
                        return Err(Error::Auth {
                            what: what.to_string(),
                            reason: format!(
                                "{} requires a login and no credentials were given for it",
                                self.inner.name
                            ),
                        });
                    };
                    if sent_basic {
                        return Err(Error::Auth {
                            what: what.to_string(),
                            reason: format!(
                                "{} rejected the username/password of user {user:?} (401)",
                                self.inner.name
                            ),
                        });
                    }
                    self.inner.auth.lock().await.challenge = Some(Challenge::Basic);
                }
                Some(c @ Challenge::Bearer { .. }) => {
                    if fresh {
                        let who =
                            user.map_or("anonymous access".to_string(), |u| format!("user {u:?}"));
                        return Err(Error::Auth {
                            what: what.to_string(),
                            reason: format!(
                                "{} refused a fresh token for {scope} ({who}): check the account's access to the repository",
                                self.inner.name
                            ),
                        });
                    }
                    let mut state = self.inner.auth.lock().await;
                    state.challenge = Some(c);
                    state.tokens.remove(&scope.key());
                }
            }
        }
        Err(Error::Auth {
            what: what.to_string(),
            reason: "authentication did not settle after 3 rounds".into(),
        })
    }

    /// One request with the kit's retries, counted.
    async fn send_once<F>(
        &self,
        url: &Url,
        body_len: u64,
        timeout: Duration,
        auth: Option<&HeaderValue>,
        make: &F,
    ) -> std::result::Result<Response, reqwest::Error>
    where
        F: Fn(&Client, Url) -> RequestBuilder,
    {
        let c = &self.inner.counters;
        send_with_retry(&self.inner.retry, || {
            Counters::add(&c.requests, 1);
            Counters::add(&c.bytes_sent, body_len);
            let rb = make(&self.inner.http, url.clone()).timeout(timeout);
            match auth {
                Some(h) => rb.header(AUTHORIZATION, h.clone()),
                None => rb,
            }
        })
        .await
    }

    /// A transport error or a status still retryable after the last try
    /// becomes an error; anything else is the caller's to read.
    async fn settle(
        &self,
        what: &str,
        method: &'static str,
        url: &Url,
        resp: std::result::Result<Response, reqwest::Error>,
    ) -> Result<Response> {
        let resp = resp.map_err(|e| self.transport_error(what, url, &e))?;
        if is_retryable_status(resp.status()) {
            let hint = format!(" (gave up after {} tries)", self.inner.retry.attempts);
            return Err(self.status_error(resp, method, what, &hint).await);
        }
        Ok(resp)
    }

    pub(crate) async fn challenge(&self) -> Option<Challenge> {
        self.inner.auth.lock().await.challenge.clone()
    }

    /// Passes 2xx answers; the rest become [`Error::Api`] quoting the
    /// registry's error code and message.
    pub(crate) async fn check(
        &self,
        resp: Response,
        method: &'static str,
        what: &str,
    ) -> Result<Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let hint = match status.as_u16() {
            403 => " (the credentials lack access to this repository)",
            404 => " (not found)",
            _ => "",
        };
        Err(self.status_error(resp, method, what, hint).await)
    }

    /// An error status as [`Error::Api`]: the body read (bounded), the
    /// password removed from it, then the kit's one reading of error bodies.
    pub(crate) async fn status_error(
        &self,
        resp: Response,
        method: &'static str,
        what: &str,
        hint: &str,
    ) -> Error {
        Error::Api {
            what: what.to_string(),
            hint: hint.to_string(),
            source: self.api_status(resp, method).await,
        }
    }

    pub(crate) async fn api_status(&self, resp: Response, method: &'static str) -> ApiError {
        let url = Url::parse(resp.url().as_str()).map(|u| shown(&u));
        let url = url.unwrap_or_default();
        let status = resp.status();
        let body = kit::api::read_limited(resp, SERVICE, ERROR_BODY_LIMIT)
            .await
            .unwrap_or_default();
        let body = self.inner.redactor.redact(&String::from_utf8_lossy(&body));
        ApiError::from_status(SERVICE, method, &url, status, body.as_bytes())
    }

    /// Reads at most `limit` bytes of a success answer.
    pub(crate) async fn body(&self, resp: Response, limit: usize, what: &str) -> Result<Vec<u8>> {
        kit::api::read_limited(resp, SERVICE, limit)
            .await
            .map_err(|source| Error::Api {
                what: what.to_string(),
                hint: String::new(),
                source,
            })
    }

    pub(crate) fn count_token_request(&self) {
        let c = &self.inner.counters;
        c.requests.fetch_add(1, Ordering::Relaxed);
        c.token_requests.fetch_add(1, Ordering::Relaxed);
    }
}

/// `<url>; rel="next"` from a `Link` header.
pub(crate) fn next_link(link: &str) -> Option<String> {
    link.split(',')
        .find(|p| p.contains("rel=\"next\""))
        .and_then(|p| {
            let start = p.find('<')? + 1;
            let end = p.find('>')?;
            Some(p[start..end].to_string())
        })
}

/// `application/json; charset=utf-8` → `application/json`.
pub(crate) fn base_media_type(ct: &str) -> String {
    ct.split(';').next().unwrap_or("").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn locations_are_resolved_and_downgrades_refused() {
        let env = kit::env::MapEnv::default();
        let o = crate::ClientOptions::default();
        let r = Registry::new("reg.example", None, &o, &env).unwrap();
        let u = r
            .admit("w", "upload Location", "/v2/a/blobs/uploads/x")
            .unwrap();
        assert_eq!(u.as_str(), "https://reg.example/v2/a/blobs/uploads/x");
        assert!(r.same_origin(&u));
        let other = r
            .admit("w", "upload Location", "https://s3.example/bucket/x?sig=1")
            .unwrap();
        assert!(!r.same_origin(&other));
        let e = r
            .admit("uploading", "upload Location", "http://other.example/x")
            .unwrap_err();
        assert_eq!(e.exit_kind(), kit::ExitKind::Remote);
        assert_eq!(
            e.to_string(),
            "uploading: refusing the upload Location http://other.example/x from HTTPS registry reg.example: it is plain HTTP"
        );
        // Same host, other port or scheme: another origin.
        assert!(!r.same_origin(&Url::parse("https://reg.example:444/v2/").unwrap()));
    }
}
