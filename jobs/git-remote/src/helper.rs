//! The remote helper itself (gitremote-helpers(7)): git runs
//! `git-remote-secdeliv <remote> <url>` for `secdeliv::<url>` and talks to
//! it over stdin/stdout.
//!
//! The helper advertises `connect` only. (git prefers `connect` over
//! `stateless-connect` whenever a helper offers both, and needs `connect`
//! for pushes, so one capability serves both directions.)
//! - `connect git-upload-pack`: protocol v2, which is stateless by design:
//!   the advertisement from `GET info/refs?service=git-upload-pack` (with
//!   `Git-Protocol: version=2`) is passed on without its `# service=`
//!   header, then every request (pkt-lines up to a flush-pkt) becomes one
//!   `POST /git-upload-pack` whose response is streamed back.
//! - `connect git-receive-pack`: protocol v0. The ref advertisement is
//!   passed on, then git's whole request (commands up to a flush-pkt, push
//!   options if negotiated, then a packfile unless every command is a
//!   delete; the pack's end is found by parsing it) becomes one
//!   `POST /git-receive-pack` whose report-status is streamed back.
//!
//! Auth: the `Authorization` header value comes from [`crate::AUTH_ENV`]
//! (set in git's environment, never in argv); it is never printed, and it
//! never follows a redirect to another origin (scheme, host, port).

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use kit::env::ProcessEnv;
use kit::http::{RetryPolicy, describe, send_with_retry};
use kit::secret::{Redactor, redact_url_credentials};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, LOCATION};
use reqwest::{Client, RequestBuilder, Response};

use crate::pack::read_pack;
use crate::pkt::{Pkt, read_pkt, strip_service_header};
use crate::{AUTH_ENV, ERROR_PREFIX, HELPER_NAME};

/// Why the helper stopped. Printed after [`ERROR_PREFIX`] as one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("usage: {HELPER_NAME} <remote> <url> (run by git for secdeliv:: URLs)")]
    Usage,
    #[error("talking to git")]
    Git(#[source] std::io::Error),
    #[error("{url}: not a URL")]
    BadUrl {
        url: String,
        #[source]
        source: url::ParseError,
    },
    #[error("only http(s) URLs are supported, not {0}")]
    Scheme(String),
    #[error("cannot read the CA bundles")]
    Ca(#[source] kit::JobError),
    #[error("cannot set up the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("{HELPER_NAME} does not support the {0} service")]
    Service(String),
    #[error("unknown remote-helper command {0:?}")]
    Command(String),
    #[error("{what} at '{url}': {reason}")]
    Transport {
        what: String,
        url: String,
        reason: String,
    },
    #[error("Authentication failed for '{url}' (HTTP {status}) during {what}")]
    Auth {
        what: String,
        url: String,
        status: u16,
    },
    #[error("repository '{url}' not found (HTTP 404) during {what}")]
    NotFound { what: String, url: String },
    #[error(
        "{what} at '{url}' was redirected to another origin ({to}); the credentials stay with '{url}', not following"
    )]
    Redirected {
        what: String,
        url: String,
        to: String,
    },
    #[error("{what} at '{url}' answered HTTP {status}")]
    Status {
        what: String,
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("'{url}' is not a smart-HTTP git server (info/refs answered {content_type:?})")]
    NotSmart { url: String, content_type: String },
    #[error(
        "'{0}' does not speak git protocol v2 (needed by --git-transport builtin; use --git-transport git)"
    )]
    NoV2(String),
    #[error("git closed the connection mid-request")]
    Closed,
    #[error("reading git's pack")]
    Pack(#[source] std::io::Error),
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// The helper's entry point: `git-remote-secdeliv <remote> <url>`.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let auth = std::env::var(AUTH_ENV).ok().filter(|a| !a.is_empty());
    let mut redactor = Redactor::new();
    if let Some(a) = &auth {
        redactor.add_str(a);
        if let Some(b) = a.strip_prefix("Basic ") {
            redactor.add_str(b);
        }
    }
    let result = match args.get(2).or_else(|| args.get(1)) {
        None => Err(Error::Usage),
        Some(url) => Helper::new(url, auth)
            .and_then(|mut h| h.serve(&mut std::io::stdin().lock(), &mut std::io::stdout().lock())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "{ERROR_PREFIX}{}",
                redactor.redact(&kit::job::cause_line(&e))
            );
            ExitCode::from(128)
        }
    }
}

/// The HTTP client: the kit's CA bundles, and redirects followed only
/// within the origin the request went to (a cross-origin 3xx comes back
/// to the caller, which refuses it).
pub fn client() -> Result<Client> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let same = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if attempt.previous().len() > 10 {
            attempt.error("too many redirects")
        } else if same {
            attempt.follow()
        } else {
            attempt.stop()
        }
    });
    let mut b = Client::builder()
        .user_agent(format!("git/secdeliv-{}", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(15))
        .redirect(policy);
    for cert in kit::http::extra_ca_certs(&ProcessEnv).map_err(Error::Ca)? {
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(Error::Client)
}

/// The origin (`scheme://host:port`) of a URL, for messages.
fn origin_of(location: &str, base: &str) -> String {
    url::Url::parse(base)
        .and_then(|b| b.join(location))
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| redact_url_credentials(location))
}

struct Helper {
    /// The repo URL without a trailing slash.
    base: String,
    shown: String,
    auth: Option<String>,
    client: Client,
    rt: tokio::runtime::Runtime,
}

fn git_io(e: std::io::Error) -> Error {
    Error::Git(e)
}

impl Helper {
    fn new(url: &str, auth: Option<String>) -> Result<Helper> {
        let parsed = url::Url::parse(url).map_err(|source| Error::BadUrl {
            url: redact_url_credentials(url),
            source,
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::Scheme(parsed.scheme().to_string()));
        }
        let client = client()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        Ok(Helper {
            base: url.trim_end_matches('/').to_string(),
            shown: redact_url_credentials(url),
            auth,
            client,
            rt,
        })
    }

    /// The command loop until git connects a service or closes stdin.
    fn serve(&mut self, input: &mut impl BufRead, out: &mut impl Write) -> Result<()> {
        loop {
            let mut line = String::new();
            if input.read_line(&mut line).map_err(git_io)? == 0 {
                return Ok(());
            }
            let line = line.trim_end_matches(['\n', '\r']);
            match line.split_once(' ').unwrap_or((line, "")) {
                ("capabilities", _) => reply(out, b"connect\n\n")?,
                ("", _) => return Ok(()),
                ("connect", "git-upload-pack") => {
                    reply(out, b"\n")?;
                    return self.upload_pack(input, out);
                }
                ("connect", "git-receive-pack") => {
                    reply(out, b"\n")?;
                    return self.receive_pack(input, out);
                }
                ("connect", other) => return Err(Error::Service(other.to_string())),
                ("option", _) => reply(out, b"unsupported\n")?,
                (other, _) => return Err(Error::Command(other.to_string())),
            }
        }
    }

    fn with_auth(&self, rb: RequestBuilder) -> RequestBuilder {
        match self
            .auth
            .as_deref()
            .and_then(|a| HeaderValue::from_str(a).ok())
        {
            Some(mut v) => {
                v.set_sensitive(true);
                rb.header(AUTHORIZATION, v)
            }
            None => rb,
        }
    }

    fn transport(&self, what: &str, e: &reqwest::Error) -> Error {
        Error::Transport {
            what: what.to_string(),
            url: self.shown.clone(),
            reason: describe(e),
        }
    }

    /// A non-success status as one actionable error.
    fn status_error(&self, what: &str, resp: &Response) -> Error {
        let (what, url) = (what.to_string(), self.shown.clone());
        let s = resp.status();
        if s.is_redirection() {
            let to = resp
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(|l| origin_of(l, &self.base))
                .unwrap_or_else(|| "no Location".to_string());
            return Error::Redirected { what, url, to };
        }
        match s.as_u16() {
            401 | 403 => Error::Auth {
                what,
                url,
                status: s.as_u16(),
            },
            404 => Error::NotFound { what, url },
            _ => Error::Status {
                what,
                url,
                status: s,
            },
        }
    }

    /// `GET info/refs?service=<service>`, without the `# service=` header.
    fn advertisement(&self, service: &str, v2: bool) -> Result<Vec<u8>> {
        let url = format!("{}/info/refs?service={service}", self.base);
        let what = format!("{service} discovery");
        let body = self.rt.block_on(async {
            let resp = send_with_retry(&RetryPolicy::default(), || {
                with_protocol(self.with_auth(self.client.get(&url)), v2)
            })
            .await
            .map_err(|e| self.transport(&what, &e))?;
            if !resp.status().is_success() {
                return Err(self.status_error(&what, &resp));
            }
            let ct = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            if ct != format!("application/x-{service}-advertisement") {
                return Err(Error::NotSmart {
                    url: self.shown.clone(),
                    content_type: ct,
                });
            }
            resp.bytes()
                .await
                .map(|b| b.to_vec())
                .map_err(|e| self.transport(&what, &e))
        })?;
        Ok(strip_service_header(&body).to_vec())
    }

    /// POSTs one request to `/<service>` and streams the response to `out`.
    fn rpc(
        &self,
        service: &str,
        body: Vec<u8>,
        v2: bool,
        retry: bool,
        out: &mut impl Write,
    ) -> Result<()> {
        let url = format!("{}/{service}", self.base);
        let what = format!("{service} request");
        self.rt.block_on(async {
            let policy = if retry {
                RetryPolicy::default()
            } else {
                RetryPolicy {
                    attempts: 1,
                    ..RetryPolicy::default()
                }
            };
            let mut resp = send_with_retry(&policy, || {
                let rb = self
                    .with_auth(self.client.post(&url))
                    .header(CONTENT_TYPE, format!("application/x-{service}-request"))
                    .header(ACCEPT, format!("application/x-{service}-result"))
                    .body(body.clone());
                with_protocol(rb, v2)
            })
            .await
            .map_err(|e| self.transport(&what, &e))?;
            if !resp.status().is_success() {
                return Err(self.status_error(&what, &resp));
            }
            while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(&what, &e))? {
                out.write_all(&chunk).map_err(git_io)?;
            }
            out.flush().map_err(git_io)
        })
    }

    fn upload_pack(&self, input: &mut impl BufRead, out: &mut impl Write) -> Result<()> {
        let adv = self.advertisement("git-upload-pack", true)?;
        // v0 negotiation is stateful; proxying it request by request would
        // break, so a server without v2 is refused clearly.
        if !adv.starts_with(b"000eversion 2\n") {
            return Err(Error::NoV2(self.shown.clone()));
        }
        reply(out, &adv)?;
        loop {
            let mut req = Vec::new();
            if !read_to_flush(input, &mut req, |_| {})? {
                return Ok(());
            }
            // A lone flush-pkt ends a v2 session; nothing to send.
            if req == b"0000" {
                continue;
            }
            self.rpc("git-upload-pack", req, true, true, out)?;
        }
    }

    fn receive_pack(&self, input: &mut impl BufRead, out: &mut impl Write) -> Result<()> {
        let adv = self.advertisement("git-receive-pack", false)?;
        let hash_len = if contains(&adv, b"object-format=sha256") {
            32
        } else {
            20
        };
        reply(out, &adv)?;
        let mut req = Vec::new();
        let mut updates = false;
        let mut commands = 0;
        let mut push_options = false;
        let inspect = |p: &Pkt| {
            let Pkt::Data(d) = p else { return };
            let (line, caps) = match d.iter().position(|b| *b == 0) {
                Some(i) => (&d[..i], &d[i + 1..]),
                None => (&d[..], &[][..]),
            };
            if commands == 0 && contains(caps, b"push-options") {
                push_options = true;
            }
            let line = String::from_utf8_lossy(line);
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() == 3 && !line.starts_with("shallow ") {
                commands += 1;
                if f[1].bytes().any(|b| b != b'0') {
                    updates = true;
                }
            }
        };
        // git found nothing to push and hung up.
        if !read_to_flush(input, &mut req, inspect)? {
            return Ok(());
        }
        if commands == 0 {
            // Only a flush: nothing to update.
            return Ok(());
        }
        if push_options && !read_to_flush(input, &mut req, |_| {})? {
            return Err(Error::Closed);
        }
        if updates {
            read_pack(input, &mut req, hash_len).map_err(Error::Pack)?;
        }
        // Not idempotent: one try.
        self.rpc("git-receive-pack", req, false, false, out)
    }
}

/// Reads pkt-lines from git into `req` up to and including the next
/// flush-pkt; `inspect` sees every other packet first. `Ok(false)`: git hung
/// up before sending anything (`req` still empty); an end after some
/// packets is [`Error::Closed`].
fn read_to_flush(
    input: &mut impl BufRead,
    req: &mut Vec<u8>,
    mut inspect: impl FnMut(&Pkt),
) -> Result<bool> {
    loop {
        match read_pkt(input).map_err(git_io)? {
            None if req.is_empty() => return Ok(false),
            None => return Err(Error::Closed),
            Some(Pkt::Flush) => {
                req.extend_from_slice(b"0000");
                return Ok(true);
            }
            Some(p) => {
                inspect(&p);
                p.append_to(req);
            }
        }
    }
}

fn reply(out: &mut impl Write, bytes: &[u8]) -> Result<()> {
    out.write_all(bytes).map_err(git_io)?;
    out.flush().map_err(git_io)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Asks for git protocol v2 (`Git-Protocol: version=2`) when `v2`.
fn with_protocol(rb: RequestBuilder, v2: bool) -> RequestBuilder {
    if v2 {
        rb.header("Git-Protocol", "version=2")
    } else {
        rb
    }
}
