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
//! It runs on the harness's one HTTP server, [`crate::http_server`]
//! (hyper); [`HttpServer`], [`Request`] and [`Response`] are re-exported here
//! for the tests that name them by this path.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use crate::http_server::{HttpServer, Recorded, Request, Response};

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

    /// Every request the server received (refused ones included), with
    /// headers and body.
    pub fn received(&self) -> Vec<Recorded> {
        self.http.received()
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
