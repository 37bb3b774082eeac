//! Flags → a validated [`Config`]: every check that needs no network, so a
//! bad flag is exit 2 before any request.

use std::path::PathBuf;

use kit::credentials::Credentials;
use kit::env::Env;
use kit::http::RetryPolicy;
use kit::job::{FromArgs, UsageError};
use kit::reference::ImageRef;

use crate::cli::Args;

/// What a promotion needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub src: ImageRef,
    /// DST without a digest; its tag (if any) is the first of `tags`.
    pub dst: ImageRef,
    /// DST's tag and the `--tag`s, each once, in order.
    pub tags: Vec<String>,
    pub src_credentials: Option<Credentials>,
    pub dst_credentials: Option<Credentials>,
    pub insecure_registries: Vec<String>,
    pub platforms: Vec<String>,
    pub parallel: usize,
    pub retry: RetryPolicy,
    /// Whole-request timeout before the per-byte allowance.
    pub request_timeout: std::time::Duration,
    /// `None`: no dotenv file.
    pub dotenv: Option<PathBuf>,
    /// Copy the `.sig`/`.att` tags and the referrers of the digest too.
    pub with_signatures: bool,
}

impl FromArgs for Config {
    type Args = Args;

    fn from_args(a: Args, _env: &dyn Env) -> Result<Config, UsageError> {
        let src = ImageRef::parse(&a.src).map_err(|e| UsageError::new(format!("SRC: {e}")))?;
        let dst = ImageRef::parse(&a.dst).map_err(|e| UsageError::new(format!("DST: {e}")))?;
        if dst.digest.is_some() {
            return Err(UsageError::new(format!(
                "DST {} has a digest; give DST as registry/repository[:tag] (its digest will be SRC's)",
                a.dst
            )));
        }
        let mut tags: Vec<String> = Vec::new();
        for t in dst.tag.iter().chain(a.tags.iter()) {
            let t = t.trim();
            if t.is_empty() {
                continue;
            }
            ImageRef::parse(&format!("{}:{t}", dst.name()))
                .map_err(|e| UsageError::new(format!("--tag {t:?}: {e}")))?;
            if !tags.iter().any(|x| x == t) {
                tags.push(t.to_string());
            }
        }
        // `--src-username`/`--src-password`, `--dst-…`: both or neither.
        let login = |side: &str, user: &Option<String>, password| {
            let (u, p) = (format!("--{side}-username"), format!("--{side}-password"));
            Credentials::from_pair(user.as_deref(), password, &u, &p)
        };
        let src_credentials = login("src", &a.src_username, a.src_password.as_ref())?;
        let dst_credentials = login("dst", &a.dst_username, a.dst_password.as_ref())?;
        let request_timeout = kit::duration::parse(&a.request_timeout).map_err(|e| {
            UsageError::with_source(format!("--request-timeout {:?}", a.request_timeout), e)
        })?;
        if request_timeout.is_zero() {
            return Err(UsageError::new("--request-timeout must be more than 0"));
        }
        let platforms = a
            .platform
            .iter()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        Ok(Config {
            src,
            dst,
            tags,
            src_credentials,
            dst_credentials,
            insecure_registries: a
                .insecure_registries
                .into_iter()
                .filter(|h| !h.trim().is_empty())
                .collect(),
            platforms,
            parallel: a.parallel.into(),
            retry: RetryPolicy {
                attempts: a.retries,
                ..RetryPolicy::default()
            },
            request_timeout,
            dotenv: Some(a.dotenv).filter(|p| !p.as_os_str().is_empty()),
            with_signatures: a.with_signatures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config, UsageError> {
        let a: Args =
            kit::cli::try_parse_from(std::iter::once("promote-image").chain(args.iter().copied()))
                .unwrap();
        Config::from_args(a, &kit::env::MapEnv::default())
    }

    #[test]
    fn usage_errors_before_any_network() {
        let e = config(&["Bad Ref", "127.0.0.1:1/b"]).unwrap_err();
        assert!(e.message.starts_with("SRC:"), "{e}");
        let d = format!("127.0.0.1:1/b@sha256:{}", "a".repeat(64));
        let e = config(&["127.0.0.1:1/a:1", &d]).unwrap_err();
        assert!(e.message.contains("has a digest"), "{e}");
        let e = config(&["127.0.0.1:1/a:1", "127.0.0.1:1/b", "--tag=-bad"]).unwrap_err();
        assert!(e.message.contains("--tag"), "{e}");
        let e = config(&["a/b", "x/y", "--dst-username", "u"]).unwrap_err();
        assert_eq!(e.message, "--dst-username is set but --dst-password is not");
        let c = config(&["a/b", "x/y:1", "-t", "2", "--tag", "1"]).unwrap();
        assert_eq!(c.tags, ["1", "2"]);
        assert_eq!(
            c.dotenv.as_deref(),
            Some(std::path::Path::new("promote.env"))
        );
        assert!(c.with_signatures, "on by default");
        assert!(
            config(&["a/b", "x/y", "--with-signatures"])
                .unwrap()
                .with_signatures
        );
        assert!(
            !config(&["a/b", "x/y", "--with-signatures=false"])
                .unwrap()
                .with_signatures
        );
    }
}
