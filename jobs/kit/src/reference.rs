//! Image references, following the distribution reference grammar
//! (github.com/distribution/reference) and Docker's normalization:
//! `alpine` → `docker.io/library/alpine`, `index.docker.io` → `docker.io`.

use std::fmt;
use std::str::FromStr;

/// The registry Docker Hub references normalize to.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API actually lives.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

const NAME_TOTAL_MAX: usize = 255;

/// A content digest such as `sha256:<64 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: String,
    hex: String,
}

impl Digest {
    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }
    pub fn hex(&self) -> &str {
        &self.hex
    }
    /// The sha256 digest of some bytes.
    pub fn sha256_hex(hex: impl Into<String>) -> Result<Self, ReferenceError> {
        format!("sha256:{}", hex.into()).parse()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl FromStr for Digest {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| ReferenceError::new(s, why);
        let (algorithm, hex) = s
            .split_once(':')
            .ok_or_else(|| bad("a digest is ALGORITHM:HEX"))?;
        let alg_ok = !algorithm.is_empty()
            && algorithm.split(['+', '.', '-', '_']).all(|c| {
                let mut chars = c.chars();
                chars.next().is_some_and(|f| f.is_ascii_alphabetic())
                    && chars.all(|ch| ch.is_ascii_alphanumeric())
            });
        if !alg_ok {
            return Err(bad("digest algorithm is not valid"));
        }
        // The OCI image spec fixes the encoding of the registered algorithms:
        // lowercase hex of the exact length.
        let want_len = match algorithm {
            "sha256" => Some(64),
            "sha512" => Some(128),
            _ => None,
        };
        let lower_hex = |h: &str| {
            h.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        };
        match want_len {
            Some(n) if hex.len() != n || !lower_hex(hex) => {
                return Err(bad(&format!(
                    "{algorithm} digest must be {n} lowercase hex characters"
                )));
            }
            None if hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) => {
                return Err(bad("digest must be at least 32 hex characters"));
            }
            _ => {}
        }
        Ok(Digest {
            algorithm: algorithm.to_string(),
            hex: hex.to_string(),
        })
    }
}

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Registry host (with port), normalized: `docker.io` for Docker Hub.
    pub registry: String,
    /// Repository path inside the registry, e.g. `library/alpine`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        s.parse()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The host to talk the registry API to (Docker Hub's API is not on docker.io).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The same repository pinned to `digest` (tag kept for readability).
    pub fn with_digest(&self, digest: Digest) -> Self {
        ImageRef {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same repository at a tag, no digest.
    pub fn with_tag(&self, tag: &str) -> Self {
        ImageRef {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// `name@digest` when there is a digest, else `name:tag` (`latest` when neither).
    pub fn pinned(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}@{d}", self.name()),
            None => format!(
                "{}:{}",
                self.name(),
                self.tag.as_deref().unwrap_or("latest")
            ),
        }
    }

    /// Whether two names (no tag/digest) denote the same repository after
    /// normalization: `acme/app` matches `docker.io/acme/app`.
    pub fn same_repository(&self, other: &ImageRef) -> bool {
        self.registry == other.registry && self.repository == other.repository
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| ReferenceError::new(s, why);
        if s.is_empty() {
            return Err(bad("image reference is empty"));
        }
        if s.chars().any(|c| c.is_whitespace()) {
            return Err(bad("image reference contains whitespace"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>().map_err(|e| bad(&e.reason))?)),
            None => (s, None),
        };
        // A tag follows the last ':' that comes after the last '/'
        // (a ':' before it belongs to the registry port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            validate_tag(t).map_err(|why| bad(&why.0))?;
        }
        if name.is_empty() {
            return Err(bad("image name is empty"));
        }
        if name.len() > NAME_TOTAL_MAX {
            return Err(bad("image name is longer than 255 characters"));
        }
        let (registry, path) = split_registry(name);
        if let Some(r) = registry {
            validate_registry(r).map_err(|why| bad(&why.0))?;
        }
        validate_path(path).map_err(|why| bad(&why.0))?;
        let (registry, repository) = match registry {
            None | Some("index.docker.io") | Some(DOCKER_HUB) => {
                let repo = if path.contains('/') {
                    path.to_string()
                } else {
                    format!("library/{path}")
                };
                (DOCKER_HUB.to_string(), repo)
            }
            Some(r) => (r.to_string(), path.to_string()),
        };
        Ok(ImageRef {
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest,
        })
    }
}

/// Docker's rule: the first component is a registry when it has a '.' or ':'
/// or is `localhost`.
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn validate_registry(r: &str) -> Result<(), Reason> {
    let (host, port) = if let Some(stripped) = r.strip_prefix('[') {
        // [IPv6]:port
        let end = stripped
            .find(']')
            .ok_or_else(|| Reason("registry IPv6 address is missing ']'".into()))?;
        (&r[..end + 2], stripped[end + 1..].strip_prefix(':'))
    } else {
        match r.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (r, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty()
            || !p.chars().all(|c| c.is_ascii_digit())
            || p.parse::<u32>().map_or(true, |n| n > 65535))
    {
        return Err(Reason(format!(
            "registry port {p:?} is not a number from 0 to 65535"
        )));
    }
    if host.starts_with('[') {
        return Ok(());
    }
    let ok = !host.is_empty()
        && host.split('.').all(|c| {
            !c.is_empty()
                && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
                && !c.starts_with('-')
                && !c.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(Reason(format!(
            "registry host {host:?} is not a valid host name"
        )))
    }
}

fn validate_path(path: &str) -> Result<(), Reason> {
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(Reason("repository name must be lowercase".into()));
    }
    for component in path.split('/') {
        if component.is_empty() {
            return Err(Reason(
                "repository path has an empty component (double or trailing '/')".into(),
            ));
        }
        if !valid_path_component(component) {
            return Err(Reason(format!(
                "repository path component {component:?} is not valid: use a-z, 0-9 and single '.', '_', '__' or '-' runs between them"
            )));
        }
    }
    Ok(())
}

/// alpha-numeric (separator alpha-numeric)*, separator := [_.] | __ | [-]+
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn validate_tag(t: &str) -> Result<(), Reason> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = t.chars();
    let ok = t.len() <= 128
        && chars.next().is_some_and(word)
        && chars.all(|c| word(c) || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Reason(format!(
            "tag {t:?} is not valid: up to 128 of A-Z a-z 0-9 _ . -, not starting with . or -"
        )))
    }
}

/// Why one part of a reference is not valid (the caller adds the reference).
struct Reason(String);

/// Why a reference was rejected, with the reference itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

impl ReferenceError {
    fn new(input: &str, reason: &str) -> Self {
        ReferenceError {
            input: input.to_string(),
            reason: reason.to_string(),
        }
    }
}

impl From<ReferenceError> for crate::JobError {
    fn from(e: ReferenceError) -> Self {
        crate::JobError::usage(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn r(s: &str) -> ImageRef {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_normalization() {
        assert_eq!(r("alpine").to_string(), "docker.io/library/alpine");
        assert_eq!(r("alpine:3.20").pinned(), "docker.io/library/alpine:3.20");
        assert_eq!(r("acme/app").name(), "docker.io/acme/app");
        assert_eq!(r("index.docker.io/acme/app").name(), "docker.io/acme/app");
        assert_eq!(r("docker.io/alpine").name(), "docker.io/library/alpine");
        assert_eq!(r("alpine").api_host(), DOCKER_HUB_API);
        assert!(r("acme/app").same_repository(&r("docker.io/acme/app:1")));
    }

    #[test]
    fn registries_ports_tags_digests() {
        let x = r(&format!("localhost:5000/team/app:v1.2@{D}"));
        assert_eq!(x.registry, "localhost:5000");
        assert_eq!(x.repository, "team/app");
        assert_eq!(x.tag.as_deref(), Some("v1.2"));
        assert_eq!(x.digest.as_ref().unwrap().to_string(), D);
        assert_eq!(x.pinned(), format!("localhost:5000/team/app@{D}"));
        let y = r("registry.gitlab.com/group/sub/project/image:abc123");
        assert_eq!(y.registry, "registry.gitlab.com");
        assert_eq!(y.repository, "group/sub/project/image");
        let z = r("127.0.0.1:5000/a");
        assert_eq!(z.registry, "127.0.0.1:5000");
        assert_eq!(r("[::1]:5000/a").registry, "[::1]:5000");
        assert_eq!(r("localhost/a").registry, "localhost");
        // separators
        r("a/b__c/d-e--f/g.h_i");
    }

    #[test]
    fn malformed_references_rejected_with_reason() {
        for (bad, why) in [
            ("", "empty"),
            ("Alpine", "lowercase"),
            ("a//b", "empty component"),
            ("a/b/", "empty component"),
            ("a:", "tag"),
            ("a:-x", "tag"),
            ("a:.x", "tag"),
            ("-a", "not valid"),
            ("a..b", "not valid"),
            ("a___b", "not valid"),
            ("a b", "whitespace"),
            ("localhost:99999/a", "port"),
            ("localhost:x1/a", "port"),
            ("a@sha256:abc", "64"),
            (
                "a@sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                "lowercase",
            ),
            ("a@md5", "ALGORITHM:HEX"),
            ("a@1sha:0123456789abcdef0123456789abcdef", "algorithm"),
            ("bad_host.example.com/a", "host"),
        ] {
            let e = bad.parse::<ImageRef>().expect_err(bad);
            assert!(e.reason.contains(why), "{bad:?}: {}", e.reason);
        }
        let long = format!("a/{}", "b".repeat(300));
        assert!(long.parse::<ImageRef>().is_err());
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(long_tag.parse::<ImageRef>().is_err());
    }

    #[test]
    fn digests() {
        let d: Digest = D.parse().unwrap();
        assert_eq!(d.algorithm(), "sha256");
        assert_eq!(d.hex().len(), 64);
        assert!("sha512:abcd".parse::<Digest>().is_err());
        assert!(
            format!("sha512:{}", "a".repeat(128))
                .parse::<Digest>()
                .is_ok()
        );
        assert!(
            "multihash+base58:0123456789abcdef0123456789abcdef"
                .parse::<Digest>()
                .is_ok()
        );
    }
}
