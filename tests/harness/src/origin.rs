//! A "recording other origin": a server on another 127.0.0.1 port that
//! records every request (method, URL, headers, body) and answers from a
//! script, so a test can prove a credential was never sent there — e.g. a
//! registry that redirects a blob to another host, a `WWW-Authenticate`
//! realm on another origin, a GitLab `web_url` or Argo CD link pointing
//! elsewhere.
//!
//! ```no_run
//! use harness::http_server::Response;
//! use harness::origin::RecordingOrigin;
//! let other = RecordingOrigin::start();            // answers 200 "" by default
//! other.then(Response::redirect(302, "http://127.0.0.1:1/elsewhere")); // first request
//! other.always(Response::new(401, "").with_header("WWW-Authenticate", "Bearer realm=\"x\""));
//! // point a redirect / realm / link of the service under test at other.url("/blob") …
//! other.assert_no_credentials();                   // no Authorization, PRIVATE-TOKEN, … header
//! other.assert_no_secret(&["s3cret-token"]);       // raw, base64, URL-encoded, in URL/headers/body
//! assert_eq!(other.requests().len(), 1);           // it was reached
//! ```
//!
//! Control: [`RecordingOrigin::assert_no_secret`] fails when a request
//! carried the secret in any form (the module's tests show it).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::http_server::{HttpServer, Recorded, Response};
use crate::tls::TlsIdentity;

/// Headers that carry credentials in the services these jobs talk to.
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "private-token",
    "job-token",
    "deploy-token",
    "x-registry-auth",
];

#[derive(Default)]
struct Script {
    next: VecDeque<Response>,
    default: Option<Response>,
}

/// A running recording origin; stops when dropped.
pub struct RecordingOrigin {
    script: Arc<Mutex<Script>>,
    http: HttpServer,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RecordingOrigin {
    /// Plain HTTP; answers `200` with an empty body until scripted.
    pub fn start() -> RecordingOrigin {
        Self::start_inner(None)
    }

    /// HTTPS with `identity` (see [`crate::tls::TestCa::issue`]).
    pub fn start_tls(identity: &TlsIdentity) -> RecordingOrigin {
        Self::start_inner(Some(identity))
    }

    fn start_inner(tls: Option<&TlsIdentity>) -> RecordingOrigin {
        let script: Arc<Mutex<Script>> = Arc::default();
        let s2 = script.clone();
        let handler = move |_req: crate::http_server::Request| {
            let mut s = lock(&s2);
            s.next
                .pop_front()
                .or_else(|| s.default.clone())
                .unwrap_or_else(|| Response::new(200, ""))
        };
        let http = match tls {
            None => HttpServer::start(handler),
            Some(id) => HttpServer::start_tls(id, handler),
        };
        RecordingOrigin { script, http }
    }

    /// Answers the next request with `resp` (queued replies are used in
    /// order, before the [`RecordingOrigin::always`] one).
    pub fn then(&self, resp: Response) -> &Self {
        lock(&self.script).next.push_back(resp);
        self
    }

    /// Answers every request (once the queue is empty) with `resp`.
    pub fn always(&self, resp: Response) -> &Self {
        lock(&self.script).default = Some(resp);
        self
    }

    /// `http://127.0.0.1:PORT` + `path` (`https://` with TLS).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http.base_url())
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        self.http.host()
    }

    pub fn port(&self) -> u16 {
        self.http.port
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.http.received()
    }

    /// The full URLs requested so far (`http://127.0.0.1:PORT/path?query`).
    pub fn urls(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| self.url(&r.target()))
            .collect()
    }

    /// Forgets what was received.
    pub fn clear(&self) {
        self.http.clear_received();
    }

    /// Asserts nothing reached this origin.
    #[track_caller]
    pub fn assert_untouched(&self) {
        let reqs = self.requests();
        assert!(
            reqs.is_empty(),
            "the other origin {} was requested:\n{}",
            self.host(),
            text(&reqs)
        );
    }

    /// Asserts no request carried a credential header
    /// ([`CREDENTIAL_HEADERS`]) or a userinfo-looking query parameter.
    #[track_caller]
    pub fn assert_no_credentials(&self) {
        for r in self.requests() {
            for (k, _) in &r.headers {
                assert!(
                    !CREDENTIAL_HEADERS.contains(&k.as_str()),
                    "the other origin {} received a {k} header:\n{}",
                    self.host(),
                    r.to_text()
                );
            }
        }
    }

    /// Asserts no request (URL, headers, body) held any of the secrets in
    /// any form (raw, URL-encoded, base64 alone or in `user:secret`, hex;
    /// see [`crate::job::secret_forms`]).
    #[track_caller]
    pub fn assert_no_secret(&self, secrets: &[&str]) {
        let reqs = self.requests();
        crate::job::assert_no_secret_in(
            &format!("a request to the other origin {}", self.host()),
            &text(&reqs),
            secrets,
        );
    }
}

fn text(reqs: &[Recorded]) -> String {
    reqs.iter()
        .map(Recorded::to_text)
        .collect::<Vec<_>>()
        .join("\n----\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends GET `url` with `headers`, following no redirect: (status,
    /// Location, WWW-Authenticate).
    fn get(url: &str, headers: &[(&str, &str)]) -> (u16, Option<String>, Option<String>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let c = reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let mut rb = c.get(url);
            for (k, v) in headers {
                rb = rb.header(*k, *v);
            }
            let r = rb.send().await.unwrap();
            let h = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), h("location"), h("www-authenticate"))
        })
    }

    #[test]
    fn answers_from_its_script_and_records_every_request() {
        let other = RecordingOrigin::start();
        other
            .then(Response::redirect(302, "http://127.0.0.1:9/next"))
            .always(Response::new(401, "").with_header("WWW-Authenticate", "Bearer realm=\"r\""));
        other.assert_untouched();
        let first = get(&other.url("/v2/a/blobs/x?y=1"), &[("Accept", "*/*")]);
        assert_eq!(
            first,
            (302, Some("http://127.0.0.1:9/next".to_string()), None)
        );
        for _ in 0..2 {
            let (status, _, challenge) = get(&other.url("/token"), &[]);
            assert_eq!(status, 401);
            assert_eq!(challenge.as_deref(), Some("Bearer realm=\"r\""));
        }
        assert_eq!(
            other.urls(),
            [
                other.url("/v2/a/blobs/x?y=1"),
                other.url("/token"),
                other.url("/token")
            ]
        );
        assert_eq!(other.requests()[0].header("accept"), Some("*/*"));
        other.assert_no_credentials();
        other.assert_no_secret(&["s3cret-token"]);
        other.clear();
        other.assert_untouched();
    }

    #[test]
    fn its_checks_fail_when_a_credential_arrives() {
        use base64::Engine;
        let other = RecordingOrigin::start();
        let basic = base64::engine::general_purpose::STANDARD.encode("bot:s3cret-token");
        get(
            &other.url("/x"),
            &[("Authorization", &format!("Basic {basic}"))],
        );
        let caught = |f: &dyn Fn()| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .expect_err("the check must fail")
        };
        caught(&|| other.assert_no_credentials());
        caught(&|| other.assert_no_secret(&["s3cret-token"]));
        caught(&|| other.assert_untouched());

        // In the URL, URL-encoded, under a header that is not a credential one.
        let other = RecordingOrigin::start();
        get(&other.url("/x?t=s3cret%2Btoken"), &[("X-Other", "-")]);
        other.assert_no_credentials();
        caught(&|| other.assert_no_secret(&["s3cret+token"]));
    }

    #[test]
    fn serves_https_too() {
        let ca = crate::tls::TestCa::new();
        let other = RecordingOrigin::start_tls(&ca.issue(&["127.0.0.1"]));
        assert!(other.url("/").starts_with("https://127.0.0.1:"));
    }
}
