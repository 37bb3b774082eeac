//! K3s's `/etc/rancher/k3s/registries.yaml` (docs.k3s.io,
//! installation/private-registry): the mirrors and credentials containerd
//! pulls with, so the verifier reads signatures the way the node pulls.
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["https://mirror.example:5000"]
//!     rewrite: {"^rancher/(.*)": "mirrorproject/rancher-images/$1"}
//! configs:
//!   mirror.example:5000:
//!     auth: {username: u, password: p}      # or auth: base64(user:pass)
//!     tls: {ca_file: /etc/ssl/mirror-ca.pem, insecure_skip_verify: false}
//! ```
//!
//! Endpoints are tried in order, then the registry's default endpoint
//! (containerd always falls back to it; rewrites are not applied there). A
//! signature is checked by its key wherever it is read from, so an endpoint
//! that cannot be used (a path prefix, client certificates) is skipped
//! rather than trusted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use kit::credentials::Credentials;
use kit::reference::{DOCKER_HUB, ImageRef};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct RegistriesYaml {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, RegistryConfig>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RegistryConfig {
    pub auth: Option<Auth>,
    pub tls: Option<Tls>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Auth {
    pub username: Option<String>,
    pub password: Option<String>,
    /// base64 of `user:password`.
    pub auth: Option<String>,
    pub identity_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Tls {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistriesError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
}

/// Where to read an image's signatures from, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` to connect to (`docker.io` means Docker Hub).
    pub host: String,
    pub plain_http: bool,
    /// The repository at this endpoint (after a mirror's rewrite).
    pub repository: String,
    pub credentials: Option<Credentials>,
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    /// Why this endpoint is not used, when it cannot be.
    pub unusable: Option<String>,
}

impl RegistriesYaml {
    /// Reads the file; a missing file is no mirrors and no credentials.
    pub fn load(path: &Path) -> Result<RegistriesYaml, RegistriesError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RegistriesYaml::default());
            }
            Err(source) => {
                return Err(RegistriesError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        if text.trim().is_empty() {
            return Ok(RegistriesYaml::default());
        }
        serde_yaml_ng::from_str(&text).map_err(|e| RegistriesError::Malformed {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// The endpoints for `image`, in the order containerd tries them.
    pub fn endpoints(&self, image: &ImageRef) -> Vec<Endpoint> {
        let mut out: Vec<Endpoint> = Vec::new();
        let mirror = self
            .mirrors
            .get(&image.registry)
            .or_else(|| {
                // `index.docker.io` / `registry-1.docker.io` keys name Docker Hub too.
                (image.registry == DOCKER_HUB)
                    .then(|| self.mirrors.get("index.docker.io"))
                    .flatten()
            })
            .or_else(|| self.mirrors.get("*"));
        if let Some(m) = mirror {
            for e in &m.endpoint {
                let mut ep = self.endpoint_from_url(e, &image.registry);
                ep.repository = rewrite(&m.rewrite, &image.repository);
                out.push(ep);
            }
        }
        let default = Endpoint {
            host: image.registry.clone(),
            plain_http: false,
            repository: image.repository.clone(),
            credentials: None,
            ca_file: None,
            insecure_skip_verify: false,
            unusable: None,
        };
        let default = self.with_config(default);
        if !out
            .iter()
            .any(|e| e.host == default.host && e.repository == default.repository)
        {
            out.push(default);
        }
        out
    }

    fn endpoint_from_url(&self, raw: &str, registry: &str) -> Endpoint {
        let mut ep = Endpoint {
            host: registry.to_string(),
            plain_http: false,
            repository: String::new(),
            credentials: None,
            ca_file: None,
            insecure_skip_verify: false,
            unusable: None,
        };
        let with_scheme = if raw.contains("://") {
            raw.to_string()
        } else {
            format!("https://{raw}")
        };
        match url::Url::parse(&with_scheme) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                let host = u.host_str().unwrap_or_default();
                ep.host = match u.port() {
                    Some(p) => format!("{host}:{p}"),
                    None => host.to_string(),
                };
                ep.plain_http = u.scheme() == "http";
                let path = u.path().trim_end_matches('/');
                if !(path.is_empty() || path == "/v2") {
                    ep.unusable = Some(format!(
                        "endpoint {raw}: a path prefix ({path}) is not supported by this verifier"
                    ));
                }
            }
            _ => ep.unusable = Some(format!("endpoint {raw:?} is not an http(s) URL")),
        }
        self.with_config(ep)
    }

    /// Adds `configs[host]`: credentials and TLS.
    fn with_config(&self, mut ep: Endpoint) -> Endpoint {
        let Some(c) = self.configs.get(&ep.host) else {
            return ep;
        };
        if let Some(a) = &c.auth {
            match credentials(a) {
                Ok(creds) => ep.credentials = creds,
                Err(why) => {
                    ep.unusable
                        .get_or_insert(format!("configs.{:?}.auth: {why}", ep.host));
                }
            }
        }
        if let Some(t) = &c.tls {
            if t.cert_file.is_some() || t.key_file.is_some() {
                ep.unusable.get_or_insert(format!(
                    "configs.{:?}.tls: client certificates are not supported by this verifier",
                    ep.host
                ));
            }
            ep.ca_file = t.ca_file.clone();
            ep.insecure_skip_verify = t.insecure_skip_verify;
        }
        ep
    }
}

/// Why a `configs.<host>.auth` entry cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("identity_token is not supported")]
    IdentityToken,
    #[error("auth is not base64 of user:password")]
    NotUserPassword,
    #[error("username and password go together")]
    Unpaired,
}

fn credentials(a: &Auth) -> Result<Option<Credentials>, AuthError> {
    if a.identity_token.is_some() {
        return Err(AuthError::IdentityToken);
    }
    if let (Some(u), Some(p)) = (&a.username, &a.password) {
        return Ok(Some(Credentials::new(u.clone(), p.clone())));
    }
    if let Some(auth) = &a.auth {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| AuthError::NotUserPassword)?;
        let text = String::from_utf8(bytes).map_err(|_| AuthError::NotUserPassword)?;
        let (u, p) = text.split_once(':').ok_or(AuthError::NotUserPassword)?;
        return Ok(Some(Credentials::new(u, p)));
    }
    if a.username.is_some() != a.password.is_some() {
        return Err(AuthError::Unpaired);
    }
    Ok(None)
}

/// A mirror's first matching rewrite (Go regexp `$1` replacements; the
/// `regex` crate reads the same syntax).
fn rewrite(rules: &BTreeMap<String, String>, repository: &str) -> String {
    for (pattern, replacement) in rules {
        if let Ok(re) = regex::Regex::new(pattern)
            && re.is_match(repository)
        {
            return re.replace(repository, replacement.as_str()).into_owned();
        }
    }
    repository.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> RegistriesYaml {
        serde_yaml_ng::from_str(text).unwrap()
    }

    #[test]
    fn mirrors_rewrites_credentials_then_the_default_endpoint() {
        let r = parse(
            "mirrors:\n  docker.io:\n    endpoint: ['http://127.0.0.1:5000', 'https://m.example/v2/', 'https://p.example/prefix']\n    rewrite:\n      '^rancher/(.*)': 'mirror/rancher/$1'\nconfigs:\n  127.0.0.1:5000:\n    auth: {auth: dTpw}\n  m.example:\n    auth: {username: u2, password: p2}\n    tls: {ca_file: /ca.pem}\n",
        );
        let image = ImageRef::parse("rancher/pause:3.6").unwrap();
        let eps = r.endpoints(&image);
        assert_eq!(eps.len(), 4, "{eps:#?}");
        assert_eq!(eps[0].host, "127.0.0.1:5000");
        assert!(eps[0].plain_http);
        assert_eq!(eps[0].repository, "mirror/rancher/pause");
        assert_eq!(eps[0].credentials, Some(Credentials::new("u", "p")));
        assert_eq!(eps[1].host, "m.example");
        assert_eq!(eps[1].ca_file.as_deref(), Some(Path::new("/ca.pem")));
        assert!(eps[1].unusable.is_none());
        assert!(eps[2].unusable.as_deref().unwrap().contains("path prefix"));
        assert_eq!(eps[3].host, "docker.io");
        assert_eq!(eps[3].repository, "rancher/pause");
        assert!(!eps[3].plain_http);
    }

    #[test]
    fn no_file_is_no_mirrors_and_a_broken_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let r = RegistriesYaml::load(&dir.path().join("none.yaml")).unwrap();
        let eps = r.endpoints(&ImageRef::parse("r.example:5000/a/b:1").unwrap());
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].host, "r.example:5000");
        let p = dir.path().join("registries.yaml");
        std::fs::write(&p, "mirrors: [1, 2]\n").unwrap();
        let e = RegistriesYaml::load(&p).unwrap_err().to_string();
        assert!(e.contains("registries.yaml"), "{e}");
    }

    #[test]
    fn wildcard_mirror_and_unsupported_auth() {
        let r = parse(
            "mirrors:\n  '*':\n    endpoint: ['http://cache.local:5000']\nconfigs:\n  cache.local:5000:\n    auth: {identity_token: t}\n",
        );
        let eps = r.endpoints(&ImageRef::parse("ghcr.io/o/a:1").unwrap());
        assert_eq!(eps[0].host, "cache.local:5000");
        assert!(
            eps[0]
                .unusable
                .as_deref()
                .unwrap()
                .contains("identity_token")
        );
        assert_eq!(eps[1].host, "ghcr.io");
    }
}
