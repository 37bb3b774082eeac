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
    //! Retries are judged at the server: how many attempts arrived, and how
    //! far apart (bounded windows: a sleep is never shorter than asked, and
    //! the upper bounds leave room for a loaded machine).

    use super::*;
    use crate::api::ApiError;
    use crate::env::MapEnv;
    use crate::exit::ExitKind;
    use crate::job::Failure;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What a test server saw: the arrival instant of every attempt.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<Instant>>>);

    impl Seen {
        fn count(&self) -> usize {
            self.0.lock().unwrap().len()
        }
        /// The time between consecutive attempts.
        fn gaps(&self) -> Vec<Duration> {
            let t = self.0.lock().unwrap();
            t.windows(2).map(|w| w[1] - w[0]).collect()
        }
    }

    /// A tiny HTTP/1.1 server that answers the n-th connection with
    /// `replies[n]` (the last reply repeats): a raw response, `RESET`
    /// (close without answering) or `STALL` (never answer).
    async fn serve(replies: Vec<String>) -> (String, Seen) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Seen::default();
        let s = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let n = {
                    let mut t = s.0.lock().unwrap();
                    t.push(Instant::now());
                    t.len() - 1
                };
                let reply = replies[n.min(replies.len() - 1)].clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    match reply.as_str() {
                        "RESET" => drop(sock),
                        "STALL" => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                        }
                        _ => {
                            let _ = sock.write_all(reply.as_bytes()).await;
                            let _ = sock.shutdown().await;
                        }
                    }
                });
            }
        });
        (format!("http://{addr}/"), seen)
    }

    fn reply(status: &str, headers: &str) -> String {
        format!("HTTP/1.1 {status}\r\n{headers}content-length: 0\r\nconnection: close\r\n\r\n")
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";

    fn e503() -> String {
        reply("503 Service Unavailable", "")
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            ..Default::default()
        }
    }

    fn http() -> Client {
        client(&HttpOptions::default(), &MapEnv::default()).unwrap()
    }

    /// Asserts `d` lies in `[min, max)`.
    #[track_caller]
    fn within(what: &str, d: Duration, min: Duration, max: Duration) {
        assert!(
            d >= min && d < max,
            "{what}: waited {d:?}, expected [{min:?}, {max:?})"
        );
    }

    #[tokio::test]
    async fn retries_503_then_succeeds() {
        let (url, seen) = serve(vec![e503(), e503(), OK.into()]).await;
        let c = http();
        let r = send_with_retry(&fast(), || c.get(&url)).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(seen.count(), 3);
    }

    #[tokio::test]
    async fn retry_after_one_second_waits_at_least_one_second_and_not_much_more() {
        let e429 = reply("429 Too Many Requests", "retry-after: 1\r\n");
        let (url, seen) = serve(vec![e429, OK.into()]).await;
        let c = http();
        // The backoff alone would wait at most 40 ms.
        let r = send_with_retry(&fast(), || c.get(&url)).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(seen.count(), 2);
        within(
            "Retry-After: 1",
            seen.gaps()[0],
            Duration::from_secs(1),
            Duration::from_millis(2500),
        );
    }

    #[tokio::test]
    async fn retry_after_as_a_past_http_date_retries_at_once() {
        let past = httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(30));
        let e503 = reply(
            "503 Service Unavailable",
            &format!("retry-after: {past}\r\n"),
        );
        let (url, seen) = serve(vec![e503, OK.into()]).await;
        let c = http();
        let r = send_with_retry(&fast(), || c.get(&url)).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(seen.count(), 2);
        within(
            "Retry-After in the past",
            seen.gaps()[0],
            Duration::ZERO,
            Duration::from_millis(900),
        );
    }

    #[tokio::test]
    async fn a_long_retry_after_is_capped_by_the_policy() {
        let e429 = reply("429 Too Many Requests", "retry-after: 30\r\n");
        let (url, seen) = serve(vec![e429, OK.into()]).await;
        let c = http();
        let policy = RetryPolicy {
            max_retry_after: Duration::from_millis(300),
            ..fast()
        };
        let r = send_with_retry(&policy, || c.get(&url)).await.unwrap();
        assert_eq!(r.status(), 200);
        within(
            "Retry-After: 30 capped at 300 ms",
            seen.gaps()[0],
            Duration::from_millis(300),
            Duration::from_millis(1800),
        );
    }

    #[tokio::test]
    async fn five_attempts_for_503_then_the_answer_is_exit_3() {
        assert_eq!(RetryPolicy::default().attempts, 5);
        let (url, seen) = serve(vec![e503()]).await;
        let c = http();
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            ..Default::default()
        };
        let r = send_with_retry(&policy, || c.get(&url)).await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(seen.count(), 5);
        // No sixth attempt comes later either.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(seen.count(), 5);
        let e = ApiError::from_status("registry", "GET", &url, r.status(), b"");
        assert_eq!(e.exit_kind(), ExitKind::Remote);
        assert_eq!(e.exit_kind().code(), 3);
    }

    #[tokio::test]
    async fn other_errors_are_not_retried() {
        let c = http();
        for status in [
            "400 Bad Request",
            "401 Unauthorized",
            "403 Forbidden",
            "404 Not Found",
            "409 Conflict",
            "500 Internal Server Error",
        ] {
            let (url, seen) = serve(vec![reply(status, "retry-after: 0\r\n"), OK.into()]).await;
            let t = Instant::now();
            let r = send_with_retry(&fast(), || c.get(&url)).await.unwrap();
            assert_eq!(r.status().as_u16().to_string(), status[..3], "{status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(seen.count(), 1, "{status} was retried");
            assert!(t.elapsed() < Duration::from_secs(2), "{status}");
        }
    }

    #[tokio::test]
    async fn backoff_grows_between_attempts() {
        let (url, seen) = serve(vec![e503()]).await;
        let c = http();
        let policy = RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            ..Default::default()
        };
        let r = send_with_retry(&policy, || c.get(&url)).await.unwrap();
        assert_eq!(r.status(), 503);
        let gaps = seen.gaps();
        assert_eq!(gaps.len(), 3);
        // Retry n waits in [d/2, d] with d = 200 ms · 2^n: the lower bounds
        // alone show the growth (a constant backoff would stay under 200 ms).
        for (n, gap) in gaps.iter().enumerate() {
            let d = Duration::from_millis(200 << n);
            within(
                &format!("retry {n}"),
                *gap,
                d / 2,
                d + Duration::from_secs(1),
            );
        }
    }

    #[tokio::test]
    async fn retries_reset_connections() {
        let (url, seen) = serve(vec!["RESET".into(), OK.into()]).await;
        let c = http();
        let r = send_with_retry(&fast(), || c.get(&url)).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(seen.count(), 2);
    }

    #[tokio::test]
    async fn timeouts_are_retried_then_exit_4() {
        let (url, seen) = serve(vec!["STALL".into()]).await;
        let opts = HttpOptions {
            request_timeout: Some(Duration::from_millis(200)),
            ..Default::default()
        };
        let c = client(&opts, &MapEnv::default()).unwrap();
        let policy = RetryPolicy {
            attempts: 3,
            ..fast()
        };
        let t = Instant::now();
        let e = send_with_retry(&policy, || c.get(&url)).await.unwrap_err();
        assert!(e.is_timeout(), "{e:?}");
        assert_eq!(seen.count(), 3);
        // Three timeouts of 200 ms each, at least.
        assert!(
            t.elapsed() >= Duration::from_millis(600),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(
            remote_error("reaching registry", &e).kind,
            ExitKind::Timeout
        );
        let api = ApiError::transport("registry", &url, &e);
        assert_eq!(api.exit_kind().code(), 4);
    }

    #[tokio::test]
    async fn connect_refused_is_retried_then_reported() {
        // Bind and drop to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = http();
        let policy = RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            ..Default::default()
        };
        let tries = std::sync::atomic::AtomicUsize::new(0);
        let t = Instant::now();
        let e = send_with_retry(&policy, || {
            tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            c.get(format!("http://user:pw@127.0.0.1:{port}/"))
        })
        .await
        .unwrap_err();
        assert!(e.is_connect(), "{e:?}");
        assert_eq!(tries.into_inner(), 4);
        // Three backoffs of at least 50, 100 and 200 ms.
        assert!(
            t.elapsed() >= Duration::from_millis(350),
            "{:?}",
            t.elapsed()
        );
        let err = remote_error("reaching registry", &e);
        assert_eq!(err.kind, ExitKind::Remote);
        assert!(err.message.contains("reaching registry"), "{}", err.message);
        assert!(!err.message.contains("pw@"), "{}", err.message);
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
    fn jitter_spreads_the_backoff_over_its_window() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            ..Default::default()
        };
        // Retry 2: d = 400 ms, waits in [200, 400] ms.
        let samples: Vec<Duration> = (0..400).map(|_| p.backoff(2)).collect();
        let (lo, hi) = (Duration::from_millis(200), Duration::from_millis(400));
        assert!(samples.iter().all(|d| *d >= lo && *d <= hi), "{samples:?}");
        let mut distinct = samples.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > 100, "too little jitter: {distinct:?}");
        assert!(samples.iter().any(|d| *d < Duration::from_millis(250)));
        assert!(samples.iter().any(|d| *d > Duration::from_millis(350)));
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
