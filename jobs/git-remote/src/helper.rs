//! `git-remote-secdeliv`: a git remote helper (gitremote-helpers(7)) that
//! speaks git's smart HTTP protocol with the kit's rustls client, so a job
//! image needs git core only, not `git-remote-http(s)` with libcurl and
//! OpenSSL.
//!
//! `--git-transport builtin` makes bump-manifest hand git the URL
//! `secdeliv::<url>` and put a symlink `git-remote-secdeliv` -> its own
//! binary on git's PATH; git then runs `git-remote-secdeliv <remote> <url>`
//! and main.rs lands here.
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
//! Auth: the `Authorization` header value comes from [`AUTH_ENV`] (set by
//! bump-manifest in git's environment, never in argv); it is never printed.

use std::io::{BufRead, Read, Write};
use std::process::ExitCode;

use flate2::{Decompress, FlushDecompress, Status};
use kit::env::ProcessEnv;
use kit::http::{HttpOptions, RetryPolicy, describe, send_with_retry};
use kit::secret::{Redactor, redact_url_credentials};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Client, RequestBuilder, Response};

/// The file name git runs for `secdeliv::` URLs.
pub const HELPER_NAME: &str = "git-remote-secdeliv";
/// The URL prefix that selects this helper.
pub const URL_PREFIX: &str = "secdeliv::";
/// The environment variable carrying the `Authorization` header value.
pub const AUTH_ENV: &str = "SECDELIV_GIT_AUTHORIZATION";

/// How the helper's own complaints start (git's follow-up lines, such as
/// "Could not read from remote repository", say less).
pub const ERROR_PREFIX: &str = "fatal: git-remote-secdeliv: ";

/// Whether this process was started as the remote helper (argv[0]'s file
/// name is `git-remote-secdeliv`).
pub fn invoked_as_helper() -> bool {
    std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|f| f == HELPER_NAME)
        })
        .unwrap_or(false)
}

/// The helper's entry point: `git-remote-secdeliv <remote> <url>`.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(url) = args.get(2).or_else(|| args.get(1)).cloned() else {
        eprintln!("fatal: usage: {HELPER_NAME} <remote> <url> (run by git for secdeliv:: URLs)");
        return ExitCode::from(128);
    };
    let auth = std::env::var(AUTH_ENV).ok().filter(|a| !a.is_empty());
    let mut redactor = Redactor::new();
    if let Some(a) = &auth {
        redactor.add_str(a);
        if let Some(b) = a.strip_prefix("Basic ") {
            redactor.add_str(b);
        }
    }
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut helper = match Helper::new(&url, auth) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{ERROR_PREFIX}{}", redactor.redact(&e));
            return ExitCode::from(128);
        }
    };
    match helper.serve(&mut stdin.lock(), &mut stdout.lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{ERROR_PREFIX}{}", redactor.redact(&e));
            ExitCode::from(128)
        }
    }
}

struct Helper {
    /// The repo URL without a trailing slash.
    base: String,
    shown: String,
    auth: Option<String>,
    client: Client,
    rt: tokio::runtime::Runtime,
}

type HResult<T> = Result<T, String>;

fn io_err(e: std::io::Error) -> String {
    format!("talking to git: {e}")
}

impl Helper {
    fn new(url: &str, auth: Option<String>) -> HResult<Helper> {
        let parsed = url::Url::parse(url)
            .map_err(|e| format!("{}: not a URL: {e}", redact_url_credentials(url)))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "only http(s) URLs are supported, not {}",
                parsed.scheme()
            ));
        }
        let client =
            kit::http::client(&HttpOptions::default(), &ProcessEnv).map_err(|e| e.message)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        Ok(Helper {
            base: url.trim_end_matches('/').to_string(),
            shown: redact_url_credentials(url),
            auth,
            client,
            rt,
        })
    }

    /// The command loop until git connects a service or closes stdin.
    fn serve(&mut self, input: &mut impl BufRead, out: &mut impl Write) -> HResult<()> {
        loop {
            let mut line = String::new();
            if input.read_line(&mut line).map_err(io_err)? == 0 {
                return Ok(());
            }
            let line = line.trim_end_matches(['\n', '\r']);
            match line.split_once(' ').unwrap_or((line, "")) {
                ("capabilities", _) => {
                    out.write_all(b"connect\n\n").map_err(io_err)?;
                    out.flush().map_err(io_err)?;
                }
                ("", _) => return Ok(()),
                ("connect", "git-upload-pack") => {
                    out.write_all(b"\n").map_err(io_err)?;
                    out.flush().map_err(io_err)?;
                    return self.upload_pack(input, out);
                }
                ("connect", "git-receive-pack") => {
                    out.write_all(b"\n").map_err(io_err)?;
                    out.flush().map_err(io_err)?;
                    return self.receive_pack(input, out);
                }
                ("connect", other) => {
                    return Err(format!(
                        "{HELPER_NAME} does not support the {other} service"
                    ));
                }
                ("option", _) => {
                    out.write_all(b"unsupported\n").map_err(io_err)?;
                    out.flush().map_err(io_err)?;
                }
                (other, _) => return Err(format!("unknown remote-helper command {other:?}")),
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

    /// A non-success status as one actionable line.
    fn status_error(&self, what: &str, resp: &Response) -> String {
        let s = resp.status();
        match s.as_u16() {
            401 | 403 => format!(
                "Authentication failed for '{}' (HTTP {}) during {what}",
                self.shown,
                s.as_u16()
            ),
            404 => format!(
                "repository '{}' not found (HTTP 404) during {what}",
                self.shown
            ),
            _ => format!("{what} at '{}' answered HTTP {s}", self.shown),
        }
    }

    /// `GET info/refs?service=<service>`, without the `# service=` header.
    fn advertisement(&self, service: &str, v2: bool) -> HResult<Vec<u8>> {
        let url = format!("{}/info/refs?service={service}", self.base);
        let what = format!("{service} discovery");
        let body = self.rt.block_on(async {
            let resp = send_with_retry(&RetryPolicy::default(), || {
                with_protocol(self.with_auth(self.client.get(&url)), v2)
            })
            .await
            .map_err(|e| format!("{what} at '{}': {}", self.shown, describe(&e)))?;
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
                return Err(format!(
                    "'{}' is not a smart-HTTP git server (info/refs answered {ct:?})",
                    self.shown
                ));
            }
            resp.bytes()
                .await
                .map(|b| b.to_vec())
                .map_err(|e| format!("{what} at '{}': {}", self.shown, describe(&e)))
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
    ) -> HResult<()> {
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
            .map_err(|e| format!("{what} at '{}': {}", self.shown, describe(&e)))?;
            if !resp.status().is_success() {
                return Err(self.status_error(&what, &resp));
            }
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| format!("{what} at '{}': {}", self.shown, describe(&e)))?
            {
                out.write_all(&chunk).map_err(io_err)?;
            }
            out.flush().map_err(io_err)
        })
    }

    fn upload_pack(&self, input: &mut impl BufRead, out: &mut impl Write) -> HResult<()> {
        let adv = self.advertisement("git-upload-pack", true)?;
        // v0 negotiation is stateful; proxying it request by request would
        // break, so a server without v2 is refused clearly.
        if !adv.starts_with(b"000eversion 2\n") {
            return Err(format!(
                "'{}' does not speak git protocol v2 (needed by --git-transport builtin; use --git-transport git)",
                self.shown
            ));
        }
        out.write_all(&adv).map_err(io_err)?;
        out.flush().map_err(io_err)?;
        loop {
            let mut req = Vec::new();
            loop {
                match read_pkt(input).map_err(io_err)? {
                    None if req.is_empty() => return Ok(()),
                    None => return Err("git closed the connection mid-request".into()),
                    Some(Pkt::Flush) => {
                        req.extend_from_slice(b"0000");
                        break;
                    }
                    Some(p) => p.append_to(&mut req),
                }
            }
            // A lone flush-pkt ends a v2 session; nothing to send.
            if req == b"0000" {
                continue;
            }
            self.rpc("git-upload-pack", req, true, true, out)?;
        }
    }

    fn receive_pack(&self, input: &mut impl BufRead, out: &mut impl Write) -> HResult<()> {
        let adv = self.advertisement("git-receive-pack", false)?;
        let hash_len = if contains(&adv, b"object-format=sha256") {
            32
        } else {
            20
        };
        out.write_all(&adv).map_err(io_err)?;
        out.flush().map_err(io_err)?;
        let mut req = Vec::new();
        let mut updates = false;
        let mut commands = 0;
        let mut push_options = false;
        loop {
            match read_pkt(input).map_err(io_err)? {
                // git found nothing to push and hung up.
                None if req.is_empty() => return Ok(()),
                None => return Err("git closed the connection mid-request".into()),
                Some(Pkt::Flush) => {
                    req.extend_from_slice(b"0000");
                    break;
                }
                Some(p) => {
                    if let Pkt::Data(d) = &p {
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
                    }
                    p.append_to(&mut req);
                }
            }
        }
        if commands == 0 {
            // Only a flush: nothing to update.
            return Ok(());
        }
        if push_options {
            loop {
                match read_pkt(input).map_err(io_err)? {
                    None => return Err("git closed the connection mid-request".into()),
                    Some(Pkt::Flush) => {
                        req.extend_from_slice(b"0000");
                        break;
                    }
                    Some(p) => p.append_to(&mut req),
                }
            }
        }
        if updates {
            read_pack(input, &mut req, hash_len).map_err(|e| format!("reading git's pack: {e}"))?;
        }
        // Not idempotent: one try.
        self.rpc("git-receive-pack", req, false, false, out)
    }
}

/// One pkt-line.
#[derive(Debug, PartialEq, Eq)]
enum Pkt {
    Flush,
    Delim,
    ResponseEnd,
    Data(Vec<u8>),
}

impl Pkt {
    fn append_to(&self, buf: &mut Vec<u8>) {
        match self {
            Pkt::Flush => buf.extend_from_slice(b"0000"),
            Pkt::Delim => buf.extend_from_slice(b"0001"),
            Pkt::ResponseEnd => buf.extend_from_slice(b"0002"),
            Pkt::Data(d) => {
                buf.extend_from_slice(format!("{:04x}", d.len() + 4).as_bytes());
                buf.extend_from_slice(d);
            }
        }
    }
}

/// Reads one pkt-line; `None` at a clean end of input.
fn read_pkt(r: &mut impl Read) -> std::io::Result<Option<Pkt>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..])?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    let n = std::str::from_utf8(&len)
        .ok()
        .and_then(|s| usize::from_str_radix(s, 16).ok())
        .ok_or_else(|| std::io::Error::other(format!("bad pkt-line length {len:?}")))?;
    Ok(Some(match n {
        0 => Pkt::Flush,
        1 => Pkt::Delim,
        2 => Pkt::ResponseEnd,
        3 => return Err(std::io::Error::other("bad pkt-line length 3")),
        n => {
            let mut d = vec![0u8; n - 4];
            r.read_exact(&mut d)?;
            Pkt::Data(d)
        }
    }))
}

/// The body without a leading `# service=...` pkt-line and its flush-pkt.
fn strip_service_header(body: &[u8]) -> &[u8] {
    if body.len() < 8 || !body[4..].starts_with(b"# service=") {
        return body;
    }
    let Some(n) = std::str::from_utf8(&body[..4])
        .ok()
        .and_then(|s| usize::from_str_radix(s, 16).ok())
        .filter(|n| *n >= 4 && *n <= body.len())
    else {
        return body;
    };
    let rest = &body[n..];
    rest.strip_prefix(b"0000").unwrap_or(rest)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Reads exactly one packfile from `r` and appends its bytes to `out`: the
/// header (`PACK`, version, object count), every object (type/size varint,
/// the OFS_DELTA offset or REF_DELTA base, then a zlib stream whose end is
/// found by inflating it) and the trailing checksum. Nothing past the pack
/// is consumed.
pub fn read_pack(r: &mut impl BufRead, out: &mut Vec<u8>, hash_len: usize) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    fn take(r: &mut impl BufRead, out: &mut Vec<u8>, n: usize) -> std::io::Result<()> {
        let start = out.len();
        out.resize(start + n, 0);
        r.read_exact(&mut out[start..])
    }
    fn byte(r: &mut impl BufRead, out: &mut Vec<u8>) -> std::io::Result<u8> {
        take(r, out, 1)?;
        Ok(out[out.len() - 1])
    }
    let start = out.len();
    take(r, out, 12)?;
    let header = &out[start..start + 12];
    if &header[..4] != b"PACK" {
        return Err(Error::other("no PACK signature"));
    }
    let version = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if version != 2 && version != 3 {
        return Err(Error::other(format!("unsupported pack version {version}")));
    }
    let count = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    let mut scratch = vec![0u8; 64 * 1024];
    for i in 0..count {
        let mut b = byte(r, out)?;
        let kind = (b >> 4) & 7;
        while b & 0x80 != 0 {
            b = byte(r, out)?;
        }
        match kind {
            1..=4 => {}
            // OFS_DELTA: a varint offset back to the base.
            6 => loop {
                if byte(r, out)? & 0x80 == 0 {
                    break;
                }
            },
            // REF_DELTA: the base's object id.
            7 => take(r, out, hash_len)?,
            k => return Err(Error::other(format!("object {i}: bad type {k}"))),
        }
        let mut z = Decompress::new(true);
        loop {
            let buf = r.fill_buf()?;
            if buf.is_empty() {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            let (in0, out0) = (z.total_in(), z.total_out());
            let status = z
                .decompress(buf, &mut scratch, FlushDecompress::None)
                .map_err(|e| Error::other(format!("object {i}: {e}")))?;
            let used = (z.total_in() - in0) as usize;
            out.extend_from_slice(&buf[..used]);
            r.consume(used);
            match status {
                Status::StreamEnd => break,
                _ if used == 0 && z.total_out() == out0 => {
                    return Err(Error::other(format!("object {i}: zlib stream stuck")));
                }
                _ => {}
            }
        }
    }
    take(r, out, hash_len)
}

/// Asks for git protocol v2 (`Git-Protocol: version=2`) when `v2`.
fn with_protocol(rb: reqwest::RequestBuilder, v2: bool) -> reqwest::RequestBuilder {
    if v2 {
        rb.header("Git-Protocol", "version=2")
    } else {
        rb
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn git(dir: &std::path::Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let mut c = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin).unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "git {args:?}");
        o.stdout
    }

    /// A pack with whole objects and OFS_DELTA objects (two similar large
    /// blobs), followed by junk: the parser stops exactly at the trailer.
    #[test]
    fn pack_end_is_found_in_a_real_pack_with_deltas() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        git(d, &["init", "-q", "--bare", "r.git"], b"");
        let repo = d.join("r.git");
        let mut text = String::new();
        for i in 0..2000 {
            text.push_str(&format!("line {i}: the quick brown fox {}\n", i * 7));
        }
        let a = String::from_utf8(git(
            &repo,
            &["hash-object", "-w", "--stdin"],
            text.as_bytes(),
        ))
        .unwrap();
        let text2 = text.replace("line 1000:", "LINE 1000 changed:");
        let b = String::from_utf8(git(
            &repo,
            &["hash-object", "-w", "--stdin"],
            text2.as_bytes(),
        ))
        .unwrap();
        let c =
            String::from_utf8(git(&repo, &["hash-object", "-w", "--stdin"], b"tiny\n")).unwrap();
        let ids = format!("{a}{b}{c}");
        // Without --delta-base-offset the deltas are REF_DELTA, with it OFS_DELTA.
        for extra in [None, Some("--delta-base-offset")] {
            let mut args = vec!["pack-objects", "--stdout", "--window=10", "-q"];
            args.extend(extra);
            let pack = git(&repo, &args, ids.as_bytes());
            check_pack(&repo, d, &pack);
        }
    }

    fn check_pack(repo: &std::path::Path, d: &std::path::Path, pack: &[u8]) {
        // Prove the pack really holds a delta (type 6 or 7 object header).
        let idx = d.join("p.pack");
        std::fs::write(&idx, pack).unwrap();
        let verify = String::from_utf8(git(
            repo,
            &[
                "index-pack",
                "-o",
                d.join("p.idx").to_str().unwrap(),
                idx.to_str().unwrap(),
            ],
            b"",
        ))
        .unwrap();
        assert!(!verify.trim().is_empty());
        let vp = String::from_utf8(git(
            repo,
            &["verify-pack", "-v", d.join("p.idx").to_str().unwrap()],
            b"",
        ))
        .unwrap();
        assert!(vp.contains("chain length = 1"), "no delta in pack:\n{vp}");

        let mut input = pack.to_vec();
        input.extend_from_slice(b"0000JUNK after the pack");
        let mut reader = std::io::BufReader::with_capacity(7, &input[..]);
        let mut out = b"prefix".to_vec();
        read_pack(&mut reader, &mut out, 20).unwrap();
        assert_eq!(&out[6..], pack);
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"0000JUNK after the pack");

        // A truncated pack is an error, not a hang or a short read.
        let mut short = &pack[..pack.len() - 30];
        assert!(read_pack(&mut short, &mut Vec::new(), 20).is_err());
        let mut bad = &b"JUNK\0\0\0\x02\0\0\0\x01"[..];
        assert!(read_pack(&mut bad, &mut Vec::new(), 20).is_err());
    }

    #[test]
    fn service_header_and_pkt_lines() {
        let body = b"001e# service=git-upload-pack\n0000000eversion 2\n0000";
        assert_eq!(strip_service_header(body), b"000eversion 2\n0000");
        assert_eq!(
            strip_service_header(b"000eversion 2\n0000"),
            b"000eversion 2\n0000"
        );
        let mut r = &b"0009hello0001000000020006x\n"[..];
        let mut pkts = Vec::new();
        while let Some(p) = read_pkt(&mut r).unwrap() {
            pkts.push(p);
        }
        assert_eq!(
            pkts,
            vec![
                Pkt::Data(b"hello".to_vec()),
                Pkt::Delim,
                Pkt::Flush,
                Pkt::ResponseEnd,
                Pkt::Data(b"x\n".to_vec())
            ]
        );
        let mut buf = Vec::new();
        for p in &pkts {
            p.append_to(&mut buf);
        }
        assert_eq!(buf, b"0009hello0001000000020006x\n");
        assert!(read_pkt(&mut &b"00"[..]).is_err());
        assert!(read_pkt(&mut &b"zzzz"[..]).is_err());
    }
}
