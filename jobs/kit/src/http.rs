//! HTTP for every job: reqwest with rustls, extra CA bundles the way GitLab
//! runners provide them, and bounded retries with backoff and jitter on
//! connect errors, 429 (honouring `Retry-After`), 502, 503 and 504.

use std::time::Duration;

use reqwest::{Certificate, Client, RequestBuilder, Response, StatusCode};

use crate::env::Env;
use crate::secret::redact_url_credentials;
use crate::{JobError, JobResult};

/// How a job's HTTP client is built.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Skip TLS verification (`--insecure`); the caller warns.
    pub accept_invalid_certs: bool,
    /// Whole-request timeout (connect + response headers + body).
    pub request_timeout: Option<Duration>,
    pub connect_timeout: Duration,
    pub user_agent: String,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            accept_invalid_certs: false,
            request_timeout: None,
            connect_timeout: Duration::from_secs(15),
            user_agent: format!("secdeliv/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Builds the client: platform roots plus every extra CA bundle the
/// environment names.
pub fn client(opts: &HttpOptions, env: &dyn Env) -> JobResult<Client> {
    let mut b = Client::builder()
        .user_agent(&opts.user_agent)
        .connect_timeout(opts.connect_timeout)
        .danger_accept_invalid_certs(opts.accept_invalid_certs);
    if let Some(t) = opts.request_timeout {
        b = b.timeout(t);
    }
    for cert in extra_ca_certs(env)? {
        b = b.add_root_certificate(cert);
    }
    b.build()
        .map_err(|e| JobError::usage(format!("cannot set up HTTP client: {}", describe(&e))))
}

/// CA certificates from `SSL_CERT_FILE` and `CI_SERVER_TLS_CA_FILE` (paths)
/// and `ADDITIONAL_CA_CERT_BUNDLE` (PEM text, as GitLab's templates use it;
/// a path is accepted too). A named file that cannot be read or holds no
/// certificate is a usage error: silently ignoring it would surface later as
/// a baffling TLS failure.
pub fn extra_ca_certs(env: &dyn Env) -> JobResult<Vec<Certificate>> {
    let mut out = Vec::new();
    for var in [
        "SSL_CERT_FILE",
        "CI_SERVER_TLS_CA_FILE",
        "ADDITIONAL_CA_CERT_BUNDLE",
    ] {
        let Some(value) = env.first(&[var]) else {
            continue;
        };
        let (pem, origin) = if value.contains("-----BEGIN") {
            (value.into_bytes(), format!("{var} (inline PEM)"))
        } else {
            let bytes = std::fs::read(&value).map_err(|e| {
                JobError::usage(format!("{var} names {value}, which cannot be read: {e}"))
            })?;
            (bytes, format!("{var} ({value})"))
        };
        let certs = Certificate::from_pem_bundle(&pem).map_err(|e| {
            JobError::usage(format!("{origin} is not a PEM certificate bundle: {e}"))
        })?;
        if certs.is_empty() {
            return Err(JobError::usage(format!(
                "{origin} holds no PEM certificate"
            )));
        }
        out.extend(certs);
    }
    Ok(out)
}

/// Bounds on retrying one request.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Total tries, the first included.
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// The longest `Retry-After` we wait; a server asking for more gets this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with full jitter in [delay/2, delay].
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << retry.min(16));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// Whether a status is worth another try.
pub fn is_retryable_status(s: StatusCode) -> bool {
    matches!(s.as_u16(), 429 | 502 | 503 | 504)
}

/// Whether a transport error is worth another try: connect failures,
/// timeouts, and connections reset or closed mid-request.
pub fn is_retryable_error(e: &reqwest::Error) -> bool {
    if e.is_builder() || e.is_redirect() || e.is_decode() {
        return false;
    }
    // A TLS handshake that fails on the certificate fails the same way every
    // time: report it at once instead of retrying.
    if describe(e).to_ascii_lowercase().contains("certificate") {
        return false;
    }
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(resp: &Response) -> Option<Duration> {
    let v = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Sends the request `make` builds, retrying within `policy`. Returns the
/// last response (which may still be a 5xx/429 once tries run out) or the
/// last transport error. `make` is called once per try because a request
/// (and a streaming body) can only be sent once.
pub async fn send_with_retry<F>(
    policy: &RetryPolicy,
    mut make: F,
) -> Result<Response, reqwest::Error>
where
    F: FnMut() -> RequestBuilder,
{
    let mut retry = 0;
    loop {
        let last = retry + 1 >= policy.attempts;
        match make().send().await {
            Ok(resp) if is_retryable_status(resp.status()) && !last => {
                let wait = match retry_after(&resp) {
                    Some(d) => d.min(policy.max_retry_after),
                    None => policy.backoff(retry),
                };
                crate::joblog::info(format!(
                    "{} from {}; retrying in {:.1}s ({}/{})",
                    resp.status(),
                    redact_url_credentials(resp.url().as_str()),
                    wait.as_secs_f64(),
                    retry + 1,
                    policy.attempts - 1
                ));
                tokio::time::sleep(wait).await;
            }
            Err(e) if is_retryable_error(&e) && !last => {
                let wait = policy.backoff(retry);
                crate::joblog::info(format!(
                    "{}; retrying in {:.1}s ({}/{})",
                    describe(&e),
                    wait.as_secs_f64(),
                    retry + 1,
                    policy.attempts - 1
                ));
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
        retry += 1;
    }
}

/// One line for a transport error: the whole source chain (reqwest's top
/// message alone says little), with URL credentials removed.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        src = s.source();
    }
    redact_url_credentials(&parts.join(": "))
}

/// Maps a transport error that survived the retries to exit 3 (exit 4 when it
/// timed out).
pub fn remote_error(what: &str, e: &reqwest::Error) -> JobError {
    if e.is_timeout() {
        JobError::timeout(format!("{what}: timed out: {}", describe(e)))
    } else {
        JobError::remote(format!("{what}: {}", describe(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::MapEnv;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A tiny HTTP/1.1 server that answers the n-th request with `replies[n]`
    /// (the last reply repeats), counting requests.
    async fn serve(replies: Vec<&'static str>) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let n = c.fetch_add(1, Ordering::SeqCst);
                let reply = replies[n.min(replies.len() - 1)];
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                if reply == "RESET" {
                    drop(sock);
                    continue;
                }
                let _ = sock.write_all(reply.as_bytes()).await;
                let _ = sock.shutdown().await;
            }
        });
        (format!("http://{addr}/"), count)
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
    const E503: &str =
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    const E429: &str = "HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    const E404: &str = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

    fn fast() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn retries_503_then_succeeds() {
        let (url, count) = serve(vec![E503, E503, OK]).await;
        let c = client(&HttpOptions::default(), &MapEnv::default()).unwrap();
        let r = send_with_retry(&fast(), || c.get(&url)).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn honours_retry_after() {
        let (url, count) = serve(vec![E429, OK]).await;
        let c = client(&HttpOptions::default(), &MapEnv::default()).unwrap();
        let t = std::time::Instant::now();
        let r = send_with_retry(&fast(), || c.get(&url)).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            t.elapsed() >= Duration::from_millis(950),
            "waited {:?}",
            t.elapsed()
        );
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn bounded_and_4xx_not_retried() {
        let (url, count) = serve(vec![E503]).await;
        let c = client(&HttpOptions::default(), &MapEnv::default()).unwrap();
        let r = send_with_retry(&fast(), || c.get(&url)).await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(count.load(Ordering::SeqCst), 4);

        let (url, count) = serve(vec![E404]).await;
        let r = send_with_retry(&fast(), || c.get(&url)).await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn retries_reset_connections() {
        let (url, count) = serve(vec!["RESET", OK]).await;
        let c = client(&HttpOptions::default(), &MapEnv::default()).unwrap();
        let r = send_with_retry(&fast(), || c.get(&url)).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn connect_refused_is_retried_then_reported() {
        // Bind and drop to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = client(&HttpOptions::default(), &MapEnv::default()).unwrap();
        let e = send_with_retry(&fast(), || {
            c.get(format!("http://user:pw@127.0.0.1:{port}/"))
        })
        .await
        .unwrap_err();
        let msg = remote_error("reaching registry", &e).message;
        assert!(msg.contains("reaching registry"), "{msg}");
        assert!(!msg.contains("pw@"), "{msg}");
    }

    #[test]
    fn backoff_is_bounded_with_jitter() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..Default::default()
        };
        for retry in 0..20 {
            let d = p.backoff(retry);
            assert!(d <= Duration::from_secs(1));
            assert!(d >= Duration::from_millis(50));
        }
    }

    #[test]
    fn extra_ca_bundles() {
        let env = MapEnv::new([(
            "ADDITIONAL_CA_CERT_BUNDLE",
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )]);
        assert!(extra_ca_certs(&env).is_err());
        let env = MapEnv::new([("SSL_CERT_FILE", "/nonexistent/ca.pem")]);
        let e = extra_ca_certs(&env).unwrap_err();
        assert!(e.message.contains("SSL_CERT_FILE"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty.pem");
        std::fs::write(&p, "nothing here").unwrap();
        let env = MapEnv::new([("CI_SERVER_TLS_CA_FILE", p.to_str().unwrap())]);
        assert!(extra_ca_certs(&env).unwrap_err().message.contains("no PEM"));
        assert!(extra_ca_certs(&MapEnv::default()).unwrap().is_empty());
    }
}
