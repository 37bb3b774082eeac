//! A real git server for tests: `git http-backend` (the CGI that ships with
//! git) behind a small HTTP/1.1 server with basic auth, on 127.0.0.1 with an
//! ephemeral port; bare repositories live in a temp dir.
//!
//! ```no_run
//! let srv = harness::git_server::GitServer::start("bot", "s3cret-token");
//! srv.create_repo("config", "main", std::path::Path::new("examples/config-repo"));
//! let url = srv.url("config"); // http://127.0.0.1:PORT/config.git
//! ```
//!
//! [`GitDaemon`] serves the same bare repos over `git://` (no auth).
//!
//! The small HTTP layer (request parsing, chunked bodies, responses) is
//! public so other simulators in this harness reuse it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine;

/// One parsed HTTP request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path without the query string, still percent-encoded.
    pub path: String,
    pub query: String,
    /// Header names lower-cased.
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

/// One response.
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
    pub fn with_header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

/// Reads one request (Content-Length or chunked body).
pub fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut r = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    if headers
        .get("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            if n == 0 {
                // Trailers until the empty line.
                loop {
                    let mut t = String::new();
                    if r.read_line(&mut t)? == 0 || t.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; n];
            r.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(n) = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        body = vec![0; n];
        r.read_exact(&mut body)?;
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    Ok(Some(Request {
        method,
        path,
        query,
        headers,
        body,
    }))
}

/// Writes a response and closes the connection.
pub fn write_response(
    stream: &mut TcpStream,
    resp: &Response,
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        resp.body.len()
    ));
    stream.write_all(out.as_bytes())?;
    if !head_only {
        stream.write_all(&resp.body)?;
    }
    stream.flush()
}

/// A tiny threaded HTTP server: one thread per connection, one request per
/// connection. Stops (and joins) on drop.
pub struct HttpServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub requests: Arc<AtomicUsize>,
}

impl HttpServer {
    pub fn start<F>(handler: F) -> HttpServer
    where
        F: Fn(Request) -> Response + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let handler = Arc::new(handler);
        let (stop2, requests2) = (stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
                        let handler = handler.clone();
                        requests2.fetch_add(1, Ordering::SeqCst);
                        std::thread::spawn(move || {
                            if let Ok(Some(req)) = read_request(&mut stream) {
                                let head = req.method == "HEAD";
                                let resp = handler(req);
                                let _ = write_response(&mut stream, &resp, head);
                            }
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        HttpServer {
            port,
            stop,
            thread: Some(thread),
            requests,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `git http-backend` behind basic auth.
pub struct GitServer {
    pub root: tempfile::TempDir,
    pub user: String,
    pub password: String,
    /// Requests refused for missing or wrong credentials.
    pub auth_failures: Arc<AtomicUsize>,
    http: HttpServer,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "seed")
        .env("GIT_AUTHOR_EMAIL", "seed@example.com")
        .env("GIT_COMMITTER_NAME", "seed")
        .env("GIT_COMMITTER_EMAIL", "seed@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl GitServer {
    /// Starts the server; every request needs basic auth `user:password`.
    pub fn start(user: &str, password: &str) -> GitServer {
        let root = tempfile::tempdir().expect("temp dir");
        let project_root = root.path().to_path_buf();
        let (u, p) = (user.to_string(), password.to_string());
        let auth_failures = Arc::new(AtomicUsize::new(0));
        let failures = auth_failures.clone();
        let http = HttpServer::start(move |req| {
            match req.basic_auth() {
                Some((ru, rp)) if ru == u && rp == p => {}
                _ => {
                    failures.fetch_add(1, Ordering::SeqCst);
                    return Response::new(401, "auth required")
                        .with_header("WWW-Authenticate", "Basic realm=\"git\"");
                }
            }
            cgi(&project_root, &u, req)
        });
        GitServer {
            root,
            user: user.into(),
            password: password.into(),
            auth_failures,
            http,
        }
    }

    pub fn port(&self) -> u16 {
        self.http.port
    }

    /// `http://127.0.0.1:PORT/NAME.git` (no credentials in it).
    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}.git", self.http.base_url())
    }

    /// The URL with `user:password@` in it, for clients that cannot take a
    /// header (e.g. a CI job's plain `git clone`). Never print it.
    pub fn url_with_credentials(&self, name: &str) -> String {
        format!(
            "http://{}:{}@127.0.0.1:{}/{name}.git",
            self.user,
            self.password,
            self.port()
        )
    }

    pub fn bare_path(&self, name: &str) -> PathBuf {
        self.root.path().join(format!("{name}.git"))
    }

    /// Creates `NAME.git` with one commit on `branch` holding the files of `seed`.
    pub fn create_repo(&self, name: &str, branch: &str, seed: &Path) -> PathBuf {
        let bare = self.bare_path(name);
        git(
            self.root.path(),
            &["init", "--quiet", "--bare", &format!("{name}.git")],
        );
        git(&bare, &["config", "http.receivepack", "true"]);
        // Clients that clone without --branch check out this branch.
        git(
            &bare,
            &["symbolic-ref", "HEAD", &format!("refs/heads/{branch}")],
        );
        let work = tempfile::tempdir().expect("temp dir");
        let w = work.path();
        git(w, &["init", "--quiet", "-b", branch]);
        copy_dir(seed, w);
        git(w, &["add", "-A"]);
        git(w, &["commit", "--quiet", "-m", "seed"]);
        git(
            w,
            &[
                "push",
                "--quiet",
                bare.to_str().expect("utf-8 path"),
                &format!("HEAD:refs/heads/{branch}"),
            ],
        );
        bare
    }

    /// The commit SHAs of `branch`, newest first, with their parent counts.
    pub fn log(&self, name: &str, branch: &str) -> Vec<(String, usize)> {
        let out = git(&self.bare_path(name), &["log", "--format=%H %P", branch]);
        out.lines()
            .map(|l| {
                let mut p = l.split_whitespace();
                let sha = p.next().unwrap_or_default().to_string();
                (sha, p.count())
            })
            .collect()
    }

    /// A file's content at `rev` (e.g. `main`).
    pub fn show(&self, name: &str, rev: &str, path: &str) -> String {
        git(&self.bare_path(name), &["show", &format!("{rev}:{path}")])
    }

    /// The commit message of `rev`.
    pub fn message(&self, name: &str, rev: &str) -> String {
        git(&self.bare_path(name), &["log", "-1", "--format=%B", rev])
    }

    /// Any git command in the bare repo.
    pub fn git(&self, name: &str, args: &[&str]) -> String {
        git(&self.bare_path(name), args)
    }
}

/// Copies a directory tree (files and dirs; symlinks as symlinks).
pub fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read seed dir") {
        let entry = entry.expect("dir entry");
        let ft = entry.file_type().expect("file type");
        let dest = to.join(entry.file_name());
        if ft.is_dir() {
            std::fs::create_dir_all(&dest).expect("mkdir");
            copy_dir(&entry.path(), &dest);
        } else if ft.is_symlink() {
            #[cfg(unix)]
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).expect("readlink"), &dest)
                .expect("symlink");
        } else {
            std::fs::copy(entry.path(), &dest).expect("copy");
        }
    }
}

/// Runs `git http-backend` for one request (CGI/1.1).
fn cgi(project_root: &Path, user: &str, req: Request) -> Response {
    let path_info = url::form_urlencoded::parse(format!("p={}", req.path).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or(req.path.clone());
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", project_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("PATH_INFO", path_info)
        .env("QUERY_STRING", &req.query)
        .env("REQUEST_METHOD", &req.method)
        .env("CONTENT_LENGTH", req.body.len().to_string())
        .env("REMOTE_USER", user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ct) = req.header("content-type") {
        cmd.env("CONTENT_TYPE", ct);
    }
    if let Some(ce) = req.header("content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", ce);
    }
    if let Some(gp) = req.header("git-protocol") {
        cmd.env("GIT_PROTOCOL", gp);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Response::new(500, format!("cannot run git http-backend: {e}")),
    };
    let mut stdin = child.stdin.take().expect("stdin");
    let body = req.body;
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let out = match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => return Response::new(500, format!("git http-backend: {e}")),
    };
    let _ = writer.join();
    // CGI output: headers, blank line, body.
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((i, n)) = split else {
        return Response::new(500, String::from_utf8_lossy(&out.stderr).into_owned());
    };
    let head = String::from_utf8_lossy(&raw[..i]).into_owned();
    let mut resp = Response::new(200, raw[i + n..].to_vec());
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("status") {
            resp.status = v
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(500);
        } else if !k.eq_ignore_ascii_case("content-length") {
            resp.headers.push((k.to_string(), v.to_string()));
        }
    }
    resp
}

/// `git daemon` serving the bare repos of a [`GitServer`]'s root (or any
/// dir) over `git://127.0.0.1:PORT/NAME.git`, pushes enabled, no auth (the
/// git protocol has none). Killed on drop.
pub struct GitDaemon {
    pub port: u16,
    child: std::process::Child,
}

impl GitDaemon {
    pub fn start(root: &Path) -> GitDaemon {
        for _ in 0..20 {
            // git daemon cannot report an ephemeral port: take a free one.
            let port = TcpListener::bind("127.0.0.1:0")
                .expect("bind")
                .local_addr()
                .expect("addr")
                .port();
            let mut child = Command::new("git")
                .arg("daemon")
                .arg("--reuseaddr")
                .arg("--export-all")
                .arg("--enable=receive-pack")
                .arg("--listen=127.0.0.1")
                .arg(format!("--port={port}"))
                .arg(format!("--base-path={}", root.display()))
                .arg(root)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run git daemon");
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while std::time::Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return GitDaemon { port, child };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("git daemon did not start");
    }

    /// `git://127.0.0.1:PORT/NAME.git`
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}.git", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
