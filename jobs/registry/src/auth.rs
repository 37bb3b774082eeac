//! Registry authentication: the `WWW-Authenticate` challenge, HTTP Basic,
//! and the Bearer token flow Docker Hub uses (token endpoint with scope,
//! tokens cached per scope until shortly before they expire).
//!
//! oci-client keeps the first credentials per registry and drops token
//! exchange errors; here every [`crate::Registry`] has its own credentials
//! and a failed exchange becomes a one-line error naming the realm, the
//! status and the server's reason.
//!
//! The token realm rule: the credentials go to a realm on the registry's
//! own origin, or over HTTPS to its declared token service
//! ([`declared_token_services`]); any other realm gets none (exit 3 when
//! there are credentials to send), and an HTTPS registry's `http://` realm
//! is refused.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use kit::env::Env;
use kit::secret::Secret;
use reqwest::Url;
use reqwest::header::HeaderValue;

use crate::client::Registry;
use crate::error::{Error, Result};
use crate::transport::{SERVICE, shown};

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
    /// The challenge to answer from a `WWW-Authenticate` value (parsed with
    /// the `http-auth` crate, RFC 7235 challenge lists): Bearer (with a
    /// realm) when offered, else Basic. Unknown schemes and syntax errors
    /// give `None`.
    pub fn parse(header: &str) -> Option<Challenge> {
        let challenges = http_auth::parse_challenges(header).ok()?;
        let param = |c: &http_auth::ChallengeRef<'_>, name: &str| {
            c.params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_unescaped())
        };
        let bearer = challenges.iter().find_map(|c| {
            if !c.scheme.eq_ignore_ascii_case("bearer") {
                return None;
            }
            Some(Challenge::Bearer {
                realm: param(c, "realm")?,
                service: param(c, "service"),
            })
        });
        bearer.or_else(|| {
            challenges
                .iter()
                .any(|c| c.scheme.eq_ignore_ascii_case("basic"))
                .then_some(Challenge::Basic)
        })
    }
}

/// Origins besides the registry's own that are its declared token service
/// and so may receive its credentials, over HTTPS only (README: "Where
/// credentials go"):
/// - `docker.io` (`registry-1.docker.io`) → `https://auth.docker.io`;
/// - `registry.gitlab.com` → `https://gitlab.com`;
/// - `$CI_REGISTRY` → `$CI_SERVER_URL` when that is HTTPS (a GitLab
///   registry's realm is `$CI_SERVER_URL/jwt/auth`).
pub fn declared_token_services(registry: &str, env: &dyn Env) -> Vec<url::Origin> {
    let mut urls: Vec<String> = Vec::new();
    let key = kit::credentials::normalize_registry_key(registry);
    match key.as_str() {
        "docker.io" => urls.push("https://auth.docker.io".into()),
        "registry.gitlab.com" => urls.push("https://gitlab.com".into()),
        _ => {}
    }
    if let Some(ci) = env.first(&["CI_REGISTRY"])
        && kit::credentials::normalize_registry_key(&ci) == key
        && let Some(server) = env.first(&["CI_SERVER_URL"])
    {
        urls.push(server);
    }
    urls.iter()
        .filter_map(|u| Url::parse(u).ok())
        .filter(|u| u.scheme() == "https")
        .map(|u| u.origin())
        .collect()
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

/// What token servers send with an error status: Docker Hub
/// `{"details": …}`, OAuth `{"error", "error_description"}`.
#[derive(serde::Deserialize)]
struct TokenErrorBody {
    details: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

impl Registry {
    /// Whether the credentials may go to `url`: the registry's own origin,
    /// or its declared token service over HTTPS.
    pub(crate) fn may_receive_credentials(&self, url: &Url) -> bool {
        self.same_origin(url)
            || (url.scheme() == "https" && self.inner.token_services.contains(&url.origin()))
    }

    /// The `Authorization` header for `scope`, fetching a token when the
    /// registry uses Bearer auth and we hold none that is still fresh.
    /// The bool says whether a token was fetched just now.
    pub(crate) async fn authorization(
        &self,
        scope: &Scope,
        what: &str,
    ) -> Result<(Option<HeaderValue>, bool)> {
        let mut state = self.inner.auth.lock().await;
        match state.challenge.clone() {
            None => Ok((None, false)),
            Some(Challenge::Basic) => {
                let Some(c) = &self.inner.creds else {
                    return Ok((None, false));
                };
                let raw = format!("{}:{}", c.username, c.password.expose());
                let mut h = HeaderValue::from_str(&format!(
                    "Basic {}",
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw)
                ))
                .map_err(|_| {
                    Error::Usage(
                        "registry username or password contains characters HTTP cannot carry"
                            .into(),
                    )
                })?;
                h.set_sensitive(true);
                Ok((Some(h), false))
            }
            Some(Challenge::Bearer { realm, service }) => {
                let key = scope.key();
                if let Some(t) = state.tokens.get(&key)
                    && t.refresh_at > Instant::now()
                {
                    return Ok((Some(bearer(&t.value)?), false));
                }
                let token = self
                    .fetch_token(&realm, service.as_deref(), scope, what)
                    .await?;
                let h = bearer(&token.value)?;
                state.tokens.insert(key, token);
                Ok((Some(h), true))
            }
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &Scope,
        what: &str,
    ) -> Result<Token> {
        let mut url = Url::parse(realm)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http"))
            .ok_or_else(|| Error::Auth {
                what: what.to_string(),
                reason: format!("the token realm {realm:?} is not an http(s) URL"),
            })?;
        self.refuse_downgrade(what, "token realm", &url)?;
        let creds = match &self.inner.creds {
            Some(c) if self.may_receive_credentials(&url) => Some(c),
            Some(_) => {
                return Err(Error::CredentialOrigin {
                    what: what.to_string(),
                    reason: format!(
                        "the token realm {} is not on the registry's origin {} nor its declared token service over HTTPS",
                        shown(&url),
                        self.inner.base
                    ),
                });
            }
            None => None,
        };
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scope.parts() {
                q.append_pair("scope", s);
            }
        }
        let realm_shown = shown(&url);
        let token_error = |hint: String, source| {
            Error::Token(Box::new(crate::error::TokenFailure {
                what: what.to_string(),
                realm: realm_shown.clone(),
                scope: scope.to_string(),
                hint,
                source,
            }))
        };
        let resp = kit::http::send_with_retry(&self.inner.retry, || {
            self.count_token_request();
            let rb = self.inner.http.get(url.clone());
            match creds {
                Some(c) => rb.basic_auth(&c.username, Some(c.password.expose())),
                None => rb,
            }
        })
        .await
        .map_err(|e| match self.transport_error(what, &url, &e) {
            Error::Api { source, .. } => token_error(String::new(), source),
            other => other,
        })?;
        let status = resp.status();
        if !status.is_success() {
            let hint = match (status.as_u16(), creds) {
                (401 | 403, Some(c)) => {
                    format!(" (check the password or token of user {:?})", c.username)
                }
                (401 | 403, None) => " (no credentials were given for this registry)".to_string(),
                _ => String::new(),
            };
            let source = self.token_status(resp).await;
            return Err(token_error(hint, source));
        }
        let body = kit::api::read_limited(resp, SERVICE, 1024 * 1024)
            .await
            .map_err(|e| token_error(String::new(), e))?;
        let parsed: TokenResponse = kit::api::decode(SERVICE, &realm_shown, &body)
            .map_err(|e| token_error(String::new(), e))?;
        parsed.into_token().ok_or_else(|| {
            token_error(
                String::new(),
                kit::api::ApiError::unexpected(SERVICE, &realm_shown, "the answer holds no token"),
            )
        })
    }

    /// A token endpoint's error status, its body read as a token server's
    /// error ({details} or {error, error_description}) or an OCI one.
    async fn token_status(&self, resp: reqwest::Response) -> kit::api::ApiError {
        let url = shown(&Url::parse(resp.url().as_str()).expect("a response URL parses"));
        let status = resp.status();
        let body = kit::api::read_limited(resp, SERVICE, 64 * 1024)
            .await
            .unwrap_or_default();
        let body = self.inner.redactor.redact(&String::from_utf8_lossy(&body));
        let mut err =
            kit::api::ApiError::from_status(SERVICE, "GET", &url, status, body.as_bytes());
        if let kit::api::ApiError::Status { body: b, .. } = &mut err
            && b.message.is_none()
            && let Ok(t) = serde_json::from_str::<TokenErrorBody>(&body)
        {
            let message = [t.details, t.error_description, t.error]
                .into_iter()
                .flatten()
                .next();
            if message.is_some() {
                b.message = message;
                b.excerpt.clear();
            }
        }
        err
    }
}

fn bearer(token: &Secret) -> Result<HeaderValue> {
    let mut h =
        HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| Error::Auth {
            what: "reading the token".into(),
            reason: "the token endpoint returned a token HTTP cannot carry".into(),
        })?;
    h.set_sensitive(true);
    Ok(h)
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
        // Quoted commas and escapes; Bearer preferred in a list.
        assert_eq!(
            Challenge::parse(
                r#"Basic realm="a, b", Bearer realm="https://t.example/tok?a=1,2",service="q\"s""#
            ),
            Some(Challenge::Bearer {
                realm: "https://t.example/tok?a=1,2".into(),
                service: Some("q\"s".into())
            })
        );
    }

    #[test]
    fn declared_token_services_are_https_and_named() {
        let env = kit::env::MapEnv::default();
        let hub = declared_token_services("docker.io", &env);
        assert_eq!(
            hub,
            vec![Url::parse("https://auth.docker.io/token").unwrap().origin()]
        );
        assert!(declared_token_services("ghcr.io", &env).is_empty());
        let env = kit::env::MapEnv::new([
            ("CI_REGISTRY", "registry.example.com:5050"),
            ("CI_SERVER_URL", "https://gitlab.example.com"),
        ]);
        assert_eq!(
            declared_token_services("registry.example.com:5050", &env),
            vec![
                Url::parse("https://gitlab.example.com/jwt/auth")
                    .unwrap()
                    .origin()
            ]
        );
        assert!(declared_token_services("other.example", &env).is_empty());
        let env = kit::env::MapEnv::new([
            ("CI_REGISTRY", "registry.example.com"),
            ("CI_SERVER_URL", "http://gitlab.example.com"),
        ]);
        assert!(declared_token_services("registry.example.com", &env).is_empty());
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
