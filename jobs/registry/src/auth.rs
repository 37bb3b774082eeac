//! Registry authentication: the `WWW-Authenticate` challenge, HTTP Basic,
//! and the Bearer token flow Docker Hub uses (token endpoint with scope,
//! tokens cached per scope until shortly before they expire).
//!
//! oci-client keeps the first credentials per registry and drops token
//! exchange errors; here every [`crate::Registry`] has its own credentials
//! and a failed exchange becomes a one-line error naming the realm, the
//! status and the server's reason.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use kit::secret::Secret;

/// What a registry access needs: one or more `repository:NAME:ACTIONS` scopes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope(Vec<String>);

impl Scope {
    /// Read access to `repo`.
    pub fn pull(repo: &str) -> Self {
        Scope(vec![format!("repository:{repo}:pull")])
    }
    /// Read and write access to `repo`.
    pub fn push(repo: &str) -> Self {
        Scope(vec![format!("repository:{repo}:pull,push")])
    }
    /// Write `dst` and read `src` (a cross-repository blob mount).
    pub fn mount(dst: &str, src: &str) -> Self {
        Scope(vec![
            format!("repository:{dst}:pull,push"),
            format!("repository:{src}:pull"),
        ])
    }
    /// The scope strings, as sent in the token request's `scope` parameters.
    pub fn parts(&self) -> &[String] {
        &self.0
    }
    pub(crate) fn key(&self) -> String {
        self.0.join(" ")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

impl Challenge {
    /// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
    /// Unknown schemes give `None`.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header
            .split_once(char::is_whitespace)
            .unwrap_or((header, ""));
        let params = parse_params(rest);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Some(Challenge::Basic),
            "bearer" => {
                let realm = params.get("realm")?.clone();
                Some(Challenge::Bearer {
                    realm,
                    service: params.get("service").cloned(),
                })
            }
            _ => None,
        }
    }
}

/// `k="v", k2=v2` with quoted strings that may contain commas.
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            continue;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .to_string();
        }
        out.insert(key.trim().to_ascii_lowercase(), value);
    }
    out
}

/// A bearer token and when to stop using it.
#[derive(Clone)]
pub(crate) struct Token {
    pub value: Secret,
    pub refresh_at: Instant,
}

/// What we know about one registry's auth.
#[derive(Default)]
pub(crate) struct AuthState {
    /// Learned from the first 401; `None` until then (we try anonymously first).
    pub challenge: Option<Challenge>,
    pub tokens: HashMap<String, Token>,
}

/// The token endpoint's answer (Docker's token spec; `access_token` is the
/// OAuth2 spelling some servers use).
#[derive(serde::Deserialize)]
pub(crate) struct TokenResponse {
    pub token: Option<String>,
    pub access_token: Option<String>,
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    pub fn into_token(self) -> Option<Token> {
        let value = self
            .token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))?;
        // Docker's spec: 60 s when not given. Refresh a little early so a
        // token does not expire between our check and the registry's.
        let ttl = Duration::from_secs(self.expires_in.unwrap_or(60).max(1));
        let margin = (ttl / 5).min(Duration::from_secs(10));
        Some(Token {
            value: Secret::new(value),
            refresh_at: Instant::now() + ttl - margin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_challenge() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            }
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="basic-realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("basic"), Some(Challenge::Basic));
        assert_eq!(Challenge::parse(r#"Negotiate abc"#), None);
        assert_eq!(
            Challenge::parse(r#"Bearer service="x""#),
            None,
            "a bearer challenge needs a realm"
        );
        let p = parse_params(r#"a="x,y", b=plain , c="q\"uote""#);
        assert_eq!(p["a"], "x,y");
        assert_eq!(p["b"], "plain");
        assert_eq!(p["c"], "q\"uote");
    }

    #[test]
    fn scopes() {
        assert_eq!(Scope::pull("a/b").key(), "repository:a/b:pull");
        assert_eq!(
            Scope::mount("d", "s").key(),
            "repository:d:pull,push repository:s:pull"
        );
    }

    #[test]
    fn token_expiry() {
        let t: TokenResponse =
            serde_json::from_str(r#"{"access_token":"abc","expires_in":300}"#).unwrap();
        let t = t.into_token().unwrap();
        assert_eq!(t.value.expose(), "abc");
        let left = t.refresh_at - Instant::now();
        assert!(
            left > Duration::from_secs(285) && left <= Duration::from_secs(290),
            "{left:?}"
        );
        let t: TokenResponse = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert!(t.into_token().is_none());
    }
}
