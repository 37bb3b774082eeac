//! A recording HTTP front on its own 127.0.0.1 port: it records every
//! request (method, path and query, headers) and either forwards it to an
//! upstream (a real `docker-registry`) or answers it from a rule. Two of
//! them make "the registry" and "another origin" for the credential-origin
//! tests: the registry's front rewrites what the registry says (a
//! `Location`, a `Link`, a `WWW-Authenticate` realm, a redirect) to point at
//! the other origin, which records what it received.
//!
//! Shared by the registry and promote-image tests (`#[path]`).

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use http_body_util::BodyExt;

/// One request a front received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a rule does with a request it matches.
#[derive(Debug, Clone)]
pub enum Action {
    /// Answer this status, headers and body.
    Respond(u16, Vec<(String, String)>, String),
    /// Answer `status` with `Location: {origin}{path and query}`.
    Redirect(u16, String),
    /// Forward, then point the answer's `Location` at `{origin}` (same path).
    ForwardLocationTo(String),
    /// Forward, then point the answer's `Link` at `{origin}` (same path).
    ForwardLinkTo(String),
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub method: Option<&'static str>,
    pub path_contains: String,
    pub action: Action,
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    rules: Mutex<Vec<Rule>>,
    pass_auth: std::sync::atomic::AtomicBool,
}

/// A running front; stops with the test process.
pub struct Front {
    pub host: String,
    state: Arc<State>,
}

impl Front {
    /// A front for `upstream` (`127.0.0.1:PORT`, plain HTTP), or answering
    /// 404 to what no rule covers when `None`. With `basic`, requests
    /// without those Basic credentials get a 401 `Basic` challenge before
    /// any rule (so a client holds credentials the test can look for).
    pub fn start(upstream: Option<String>, basic: Option<(&str, &str)>) -> Front {
        let state = Arc::new(State::default());
        let st = state.clone();
        let want = basic.map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let me = listener.local_addr().unwrap().to_string();
                tx.send(me.clone()).unwrap();
                let client = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .no_proxy()
                    .build()
                    .unwrap();
                let ctx = Arc::new(Ctx {
                    state: st,
                    upstream,
                    basic: want,
                    client,
                    me,
                });
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| handle(ctx.clone(), req));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        });
        let host = rx.recv_timeout(Duration::from_secs(30)).expect("front");
        Front { host, state }
    }

    /// A front that records and forwards everything, `Authorization`
    /// included (to watch what a client sends a real, protected registry).
    pub fn start_passing_auth(upstream: String) -> Front {
        let f = Front::start(Some(upstream), None);
        f.state
            .pass_auth
            .store(true, std::sync::atomic::Ordering::SeqCst);
        f
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.host)
    }

    pub fn rule(&self, method: Option<&'static str>, path_contains: &str, action: Action) {
        self.state.rules.lock().unwrap().push(Rule {
            method,
            path_contains: path_contains.to_string(),
            action,
        });
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Every header of every request, one per line, for secret checks.
    pub fn headers_text(&self) -> String {
        self.seen()
            .iter()
            .flat_map(|s| {
                let line = format!("{} {}", s.method, s.path);
                std::iter::once(line).chain(s.headers.iter().map(|(k, v)| format!("{k}: {v}")))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Requests that carried an `Authorization` header.
    pub fn with_authorization(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.header("authorization").is_some())
            .collect()
    }
}

type Body = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, BoxError>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn answer(
    status: u16,
    headers: &[(String, String)],
    body: impl Into<bytes::Bytes>,
) -> hyper::Response<Body> {
    let mut b = hyper::Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(k.as_str(), v.as_str());
    }
    b.body(
        http_body_util::Full::new(body.into())
            .map_err(|e| match e {})
            .boxed_unsync(),
    )
    .unwrap()
}

/// `http://h:p/x?y` or `/x?y` → `/x?y`.
fn path_of(v: &str) -> String {
    match v.find("://") {
        Some(i) => v[i + 3..]
            .find('/')
            .map_or("/".into(), |j| v[i + 3 + j..].to_string()),
        None => v.to_string(),
    }
}

struct Ctx {
    state: Arc<State>,
    upstream: Option<String>,
    basic: Option<String>,
    client: reqwest::Client,
    /// This front's own `127.0.0.1:PORT`.
    me: String,
}

async fn handle(
    ctx: Arc<Ctx>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Body>, BoxError> {
    let (state, upstream, basic, client) = (&ctx.state, &ctx.upstream, &ctx.basic, &ctx.client);
    let method = req.method().as_str().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                v.to_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    state.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        headers: headers.clone(),
    });
    if let Some(want) = basic {
        let got = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if got != Some(want.as_str()) {
            return Ok(answer(
                401,
                &[("www-authenticate".into(), "Basic realm=\"front\"".into())],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            ));
        }
    }
    let rule = state
        .rules
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.method.is_none_or(|m| m == method) && path.contains(&r.path_contains))
        .cloned();
    match rule.as_ref().map(|r| &r.action) {
        Some(Action::Respond(status, h, body)) => return Ok(answer(*status, h, body.clone())),
        Some(Action::Redirect(status, origin)) => {
            return Ok(answer(
                *status,
                &[("location".into(), format!("{origin}{path}"))],
                "",
            ));
        }
        _ => {}
    }
    let Some(up) = upstream else {
        return Ok(answer(404, &[], ""));
    };
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut rb = client
        .request(parts.method.clone(), format!("http://{up}{path}"))
        .body(body);
    for (k, v) in &parts.headers {
        let pass_auth = state.pass_auth.load(std::sync::atomic::Ordering::SeqCst);
        if k != "host" && (k != "authorization" || pass_auth) {
            rb = rb.header(k, v);
        }
    }
    let resp = rb.send().await?;
    let status = resp.status().as_u16();
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in resp.headers() {
        if matches!(
            k.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            continue;
        }
        let mut v = v.to_str().unwrap_or("").to_string();
        match rule.as_ref().map(|r| &r.action) {
            Some(Action::ForwardLocationTo(o)) if k == "location" => {
                v = format!("{o}{}", path_of(&v));
            }
            Some(Action::ForwardLinkTo(o)) if k == "link" => {
                v = v.replacen('<', &format!("<{o}"), 1);
            }
            // Like any reverse proxy: the upstream's own URLs become ours.
            _ if k == "location" => {
                v = v.replace(&format!("http://{up}/"), &format!("http://{}/", ctx.me));
            }
            _ => {}
        }
        out.push((k.as_str().to_string(), v));
    }
    let body = resp.bytes().await?;
    Ok(answer(status, &out, body))
}
