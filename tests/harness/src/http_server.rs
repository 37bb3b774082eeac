//! The one HTTP server every simulator in this harness runs on: hyper 1 on
//! 127.0.0.1 with an ephemeral port, on its own thread and Tokio runtime (so
//! it serves while a test blocks on a child process), optionally HTTPS with
//! a certificate from [`crate::tls`], stopped gracefully when dropped, and
//! logging every request it received (method, path, query, headers; the body
//! too for buffered handlers) so a test can assert what reached it.
//!
//! Two kinds of handler:
//! - [`HttpServer::start`] / [`HttpServer::start_tls`]: a plain closure
//!   `Fn(Request) -> Response` over a fully read request. It runs on Tokio's
//!   blocking pool, so it may block (e.g. run `git http-backend`).
//! - [`HttpServer::start_async`]: an async closure over the raw
//!   `hyper::Request`, answering a `hyper::Response<Body>` whose body may
//!   stream (see [`full`], [`Body`]); returning `Err` drops the connection
//!   without an answer (a "reset").
//!
//! ```no_run
//! use harness::http_server::{HttpServer, Response};
//! let srv = HttpServer::start(|req| Response::new(200, format!("hello {}", req.path)));
//! // GET {srv.base_url()}/x …
//! let seen = srv.received();
//! assert_eq!(seen[0].path, "/x");
//! ```
//!
//! A server that only records what it got and answers from a script (to
//! prove a credential never went to another origin) is
//! [`crate::origin::RecordingOrigin`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use http_body_util::BodyExt;

use crate::tls::TlsIdentity;

/// Errors a handler or a body stream may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A response body: full or streaming.
pub type Body = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, BoxError>;

/// How long in-flight requests may finish after the server is dropped.
const GRACE: Duration = Duration::from_secs(1);

/// One fully read HTTP request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path without the query string, still percent-encoded.
    pub path: String,
    pub query: String,
    /// Header names lower-cased; repeated headers joined with `, `.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// A query parameter, percent-decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// `user:password` of a basic Authorization header.
    pub fn basic_auth(&self) -> Option<(String, String)> {
        let v = self.header("authorization")?.strip_prefix("Basic ")?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .ok()?;
        let s = String::from_utf8(raw).ok()?;
        let (u, p) = s.split_once(':')?;
        Some((u.to_string(), p.to_string()))
    }
}

/// One response of a buffered handler.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }
    pub fn json(status: u16, v: &serde_json::Value) -> Self {
        Response::new(status, v.to_string()).with_header("Content-Type", "application/json")
    }
    /// A redirect (`301`, `302`, `303`, `307`, `308`) to `location`.
    pub fn redirect(status: u16, location: &str) -> Self {
        Response::new(status, "").with_header("Location", location)
    }
    pub fn with_header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    fn into_hyper(self) -> hyper::Response<Body> {
        let mut b = hyper::Response::builder().status(self.status);
        for (k, v) in &self.headers {
            // The length is the body's; the connection is hyper's business.
            if k.eq_ignore_ascii_case("content-length")
                || k.eq_ignore_ascii_case("connection")
                || k.eq_ignore_ascii_case("transfer-encoding")
            {
                continue;
            }
            b = b.header(k.as_str(), v.as_str());
        }
        b.body(full(self.body)).unwrap_or_else(|e| {
            let mut r = hyper::Response::new(full(format!("harness: bad response: {e}")));
            *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
    }
}

/// A whole body.
pub fn full(body: impl Into<bytes::Bytes>) -> Body {
    http_body_util::Full::new(body.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub at: Instant,
    pub method: String,
    /// Path without the query string, still percent-encoded.
    pub path: String,
    pub query: String,
    /// Header names lower-cased, in the order received, repeats kept.
    pub headers: Vec<(String, String)>,
    /// The body, for buffered handlers ([`HttpServer::start`]); empty for
    /// async ones, which read the body themselves.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `path?query` (just the path without a query).
    pub fn target(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }

    /// Method, target, headers and body as one text, for secret checks and
    /// assertion messages.
    pub fn to_text(&self) -> String {
        let mut s = format!("{} {}\n", self.method, self.target());
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\n"));
        }
        s.push('\n');
        s.push_str(&String::from_utf8_lossy(&self.body));
        s
    }
}

type Log = Arc<Mutex<Vec<Recorded>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running server; stops when dropped.
pub struct HttpServer {
    pub port: u16,
    /// Requests received so far.
    pub requests: Arc<AtomicUsize>,
    tls: bool,
    log: Log,
    runtime: tokio::runtime::Handle,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Plain HTTP, buffered handler (see the module docs).
    pub fn start<F>(handler: F) -> HttpServer
    where
        F: Fn(Request) -> Response + Send + Sync + 'static,
    {
        Self::start_buffered(None, handler)
    }

    /// HTTPS with `identity` (e.g. [`crate::tls::TestCa::issue`]), buffered
    /// handler.
    pub fn start_tls<F>(identity: &TlsIdentity, handler: F) -> HttpServer
    where
        F: Fn(Request) -> Response + Send + Sync + 'static,
    {
        Self::start_buffered(Some(identity), handler)
    }

    fn start_buffered<F>(tls: Option<&TlsIdentity>, handler: F) -> HttpServer
    where
        F: Fn(Request) -> Response + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        let log: Log = Arc::default();
        let log2 = log.clone();
        Self::serve(bind(), tls, log, true, move |req| {
            let handler = handler.clone();
            let log = log2.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body.collect().await?.to_bytes().to_vec();
                let request = Request {
                    method: parts.method.as_str().to_string(),
                    path: parts.uri.path().to_string(),
                    query: parts.uri.query().unwrap_or_default().to_string(),
                    headers: joined_headers(&parts.headers),
                    body: body.clone(),
                };
                let mut rec = recorded(&parts);
                rec.body = body;
                lock(&log).push(rec);
                let resp = match tokio::task::spawn_blocking(move || handler(request)).await {
                    Ok(r) => r,
                    Err(e) => Response::new(500, format!("harness handler failed: {e}")),
                };
                Ok(resp.into_hyper())
            }
        })
    }

    /// An async handler over the raw request, on plain HTTP or (with
    /// `tls`) HTTPS. The request is logged (without body) before the
    /// handler runs.
    pub fn start_async<F, Fut>(tls: Option<&TlsIdentity>, handler: F) -> HttpServer
    where
        F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<hyper::Response<Body>, BoxError>> + Send + 'static,
    {
        Self::start_async_on(bind(), tls, handler)
    }

    /// Like [`HttpServer::start_async`] on a listener the caller bound
    /// (e.g. [`bind`]), for handlers that must know their own address.
    pub fn start_async_on<F, Fut>(
        listener: std::net::TcpListener,
        tls: Option<&TlsIdentity>,
        handler: F,
    ) -> HttpServer
    where
        F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<hyper::Response<Body>, BoxError>> + Send + 'static,
    {
        Self::serve(listener, tls, Arc::default(), false, handler)
    }

    fn serve<F, Fut>(
        listener: std::net::TcpListener,
        tls: Option<&TlsIdentity>,
        log: Log,
        buffered: bool,
        handler: F,
    ) -> HttpServer
    where
        F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<hyper::Response<Body>, BoxError>> + Send + 'static,
    {
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local addr").port();
        let requests = Arc::new(AtomicUsize::new(0));
        let acceptor = tls.map(crate::tls::acceptor);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let handler = Arc::new(handler);
        let (count, log2) = (requests.clone(), log.clone());
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("harness-http-{port}"))
            .spawn(move || {
                // Two workers: a proxy (the registry gateway) streams blobs
                // while other connections are served.
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name(format!("harness-http-{port}"))
                    .enable_all()
                    .build()
                    .expect("runtime");
                let _ = handle_tx.send(rt.handle().clone());
                rt.block_on(accept_loop(
                    listener, acceptor, stop_rx, handler, count, log2, buffered,
                ));
                rt.shutdown_background();
            })
            .expect("spawn server thread");
        let runtime = handle_rx.recv().expect("server runtime");
        HttpServer {
            port,
            requests,
            tls: tls.is_some(),
            log,
            runtime,
            shutdown: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS), no trailing slash.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Runs a background task (e.g. a simulator's controller) on the
    /// server's runtime; it is dropped when the server stops.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.runtime.spawn(task);
    }

    /// Every request received so far, in arrival order.
    pub fn received(&self) -> Vec<Recorded> {
        lock(&self.log).clone()
    }

    /// Forgets the request log and the request count.
    pub fn clear_received(&self) {
        lock(&self.log).clear();
        self.requests.store(0, Ordering::SeqCst);
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A listener on `127.0.0.1:0`.
pub fn bind() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

fn joined_headers(h: &hyper::HeaderMap) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    for (k, v) in h {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        out.entry(k.as_str().to_string())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    out
}

fn recorded(parts: &hyper::http::request::Parts) -> Recorded {
    Recorded {
        at: Instant::now(),
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: Vec::new(),
    }
}

async fn accept_loop<F, Fut>(
    listener: std::net::TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    handler: Arc<F>,
    count: Arc<AtomicUsize>,
    log: Log,
    buffered: bool,
) where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<hyper::Response<Body>, BoxError>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((sock, _)) = accepted else { continue };
                let (handler, count, log) = (handler.clone(), count.clone(), log.clone());
                let (acceptor, stop) = (acceptor.clone(), stop.clone());
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        count.fetch_add(1, Ordering::SeqCst);
                        if !buffered {
                            let (parts, body) = req.into_parts();
                            lock(&log).push(recorded(&parts));
                            return handler(hyper::Request::from_parts(parts, body));
                        }
                        handler(req)
                    });
                    match acceptor {
                        None => serve_conn(sock, svc, stop).await,
                        Some(acc) => {
                            // A client that refuses the certificate ends here.
                            if let Ok(s) = acc.accept(sock).await {
                                serve_conn(s, svc, stop).await;
                            }
                        }
                    }
                });
            }
        }
    }
    // Stop accepting; let requests in flight finish (keep-alive connections
    // close after their current answer), for a while.
    drop(listener);
    let _ = tokio::time::timeout(GRACE, async { while conns.join_next().await.is_some() {} }).await;
}

async fn serve_conn<S, Svc>(io: S, svc: Svc, mut stop: tokio::sync::watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    Svc: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<Body>,
            Error = BoxError,
        > + Send
        + 'static,
    Svc::Future: Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.wait_for(|s| *s) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let c = reqwest::Client::builder().no_proxy().build().unwrap();
            let mut rb = c.get(url);
            for (k, v) in headers {
                rb = rb.header(*k, *v);
            }
            let r = rb.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    }

    #[test]
    fn buffered_handler_answers_and_logs_what_it_received() {
        let srv = HttpServer::start(|req| {
            Response::new(201, format!("{} {} {}", req.method, req.path, req.query))
                .with_header("X-Seen", req.header("x-probe").unwrap_or("-"))
        });
        let (status, body) = get(
            &format!("{}/a%20b?x=1", srv.base_url()),
            &[("X-Probe", "p1")],
        );
        assert_eq!((status, body.as_str()), (201, "GET /a%20b x=1"));
        let seen = srv.received();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].method, "GET");
        assert_eq!(seen[0].target(), "/a%20b?x=1");
        assert_eq!(seen[0].header("x-probe"), Some("p1"));
        assert_eq!(srv.requests.load(Ordering::SeqCst), 1);
        srv.clear_received();
        assert!(srv.received().is_empty());
    }

    #[test]
    fn tls_server_is_trusted_through_its_ca_only() {
        let ca = crate::tls::TestCa::new();
        let srv = HttpServer::start_tls(&ca.issue(&["127.0.0.1"]), |_| Response::new(200, "ok"));
        assert!(srv.base_url().starts_with("https://"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let untrusted = reqwest::Client::builder().no_proxy().build().unwrap();
            assert!(untrusted.get(srv.base_url()).send().await.is_err());
            let trusted = reqwest::Client::builder()
                .no_proxy()
                .add_root_certificate(
                    reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap(),
                )
                .build()
                .unwrap();
            let r = trusted.get(srv.base_url()).send().await.unwrap();
            assert_eq!(r.text().await.unwrap(), "ok");
        });
        // The refused handshake never became a request.
        assert_eq!(srv.received().len(), 1);
    }

    #[test]
    fn async_handler_streams_and_can_reset() {
        let srv = HttpServer::start_async(None, |req| async move {
            if req.uri().path() == "/reset" {
                return Err::<hyper::Response<Body>, BoxError>("reset".into());
            }
            Ok(hyper::Response::new(full("streamed")))
        });
        assert_eq!(get(&format!("{}/x", srv.base_url()), &[]).1, "streamed");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let reset = rt.block_on(async {
            reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap()
                .get(format!("{}/reset", srv.base_url()))
                .send()
                .await
        });
        assert!(reset.is_err(), "{reset:?}");
        let paths: Vec<String> = srv.received().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["/x", "/reset"]);
    }

    #[test]
    fn background_tasks_run_on_the_server_runtime_until_it_stops() {
        let srv = HttpServer::start(|_| Response::new(200, ""));
        let (tx, rx) = std::sync::mpsc::channel();
        srv.spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(5)).expect("task ran");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        srv.spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        drop(srv);
        // The task (and its sender) is gone with the server.
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        );
    }

    /// Sends raw bytes and reads until the server closes.
    fn raw(port: u16, request: &[u8]) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn hand_written_clients_get_whole_answers_and_the_connection_closed() {
        let srv = HttpServer::start(|req| {
            Response::new(200, format!("got {} bytes", req.body.len()))
                .with_header("Content-Length", "999")
        });
        // Content-Length body, `Connection: close`: read to EOF.
        let out = raw(
            srv.port,
            b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        );
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("content-length: 11\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\ngot 5 bytes"), "{out}");
        // Chunked body.
        let out = raw(
            srv.port,
            b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        );
        assert!(out.ends_with("got 5 bytes"), "{out}");
        // HEAD: the length, no body.
        let out = raw(
            srv.port,
            b"HEAD /p HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(out.contains("content-length: 11\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\n"), "{out}");
        let bodies: Vec<usize> = srv.received().iter().map(|r| r.body.len()).collect();
        assert_eq!(bodies, [5, 5, 0]);
    }

    #[test]
    fn drop_stops_the_server_and_frees_the_port() {
        let srv = HttpServer::start(|_| Response::new(200, ""));
        let port = srv.port();
        let t = Instant::now();
        drop(srv);
        assert!(t.elapsed() < GRACE + Duration::from_secs(1));
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
