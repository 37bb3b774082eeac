//! Key references as cosign spells them: a file path, or `env://VAR` for a
//! key held in an environment variable (a masked GitLab CI/CD variable).

use std::path::{Path, PathBuf};

use kit::env::Env;
use kit::secret::Secret;

use crate::keys::{KeyError, PrivateKey, PublicKey};

pub const DEFAULT_PRIVATE_KEY: &str = "env://COSIGN_PRIVATE_KEY";
pub const DEFAULT_PUBLIC_KEY: &str = "env://COSIGN_PUBLIC_KEY";
/// Where the private key's password comes from (cosign's variable).
pub const PASSWORD_VAR: &str = "COSIGN_PASSWORD";

/// Why `--key` cannot be used. Messages name the reference, never a key's
/// content.
#[derive(Debug, thiserror::Error)]
pub enum KeyRefError {
    #[error("--key is empty; give a path or env://VAR")]
    Empty,
    #[error("--key {0:?}: env:// must be followed by a variable name")]
    BadVariable(String),
    #[error(
        "--key {0}://… is not supported by sign-image; use a file path or env://VAR (KMS, k8s:// and pkcs11: keys need cosign itself)"
    )]
    UnsupportedScheme(String),
    #[error(
        "key variable {0} is not set or empty (from --key env://{0}); set it to the PEM text of the key"
    )]
    Unset(String),
    #[error("cannot read key file {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {} is not a PEM text file", .0.display())]
    NotText(PathBuf),
    #[error("env://{var} names a file: {source}")]
    FileVariable {
        var: String,
        #[source]
        source: Box<KeyRefError>,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// What an `env://VAR` variable may hold, in the forms GitLab CI/CD
/// variables take: the PEM text itself (cosign's meaning); the path of a
/// file holding it (a GitLab "File" variable); or the PEM base64-encoded on
/// one line (masked GitLab variables cannot contain line breaks).
fn env_value(var: &str, value: String) -> Result<Secret, KeyRefError> {
    use base64::Engine as _;
    if value.contains("-----BEGIN") {
        return Ok(Secret::new(value));
    }
    let trimmed = value.trim();
    if !trimmed.contains('\n') && trimmed.len() < 4096 {
        let path = Path::new(trimmed);
        if path.is_file() {
            return KeyRef::read_file(path).map_err(|e| KeyRefError::FileVariable {
                var: var.to_string(),
                source: Box::new(e),
            });
        }
    }
    let compact: String = trimmed
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(compact)
        && let Ok(text) = String::from_utf8(bytes)
        && text.contains("-----BEGIN")
    {
        return Ok(Secret::new(text));
    }
    // Not a key in any form: the PEM parser reports it (without the content).
    Ok(Secret::new(value))
}

/// A parsed `--key` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    Env(String),
    Path(PathBuf),
}

impl KeyRef {
    pub fn parse(s: &str) -> Result<Self, KeyRefError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(KeyRefError::Empty);
        }
        if let Some(var) = s.strip_prefix("env://") {
            if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(KeyRefError::BadVariable(s.to_string()));
            }
            return Ok(KeyRef::Env(var.to_string()));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(KeyRefError::UnsupportedScheme(scheme.to_string()));
        }
        Ok(KeyRef::Path(PathBuf::from(s)))
    }

    /// A description for messages: the path or `env://VAR`, never the content.
    pub fn origin(&self) -> String {
        match self {
            KeyRef::Env(v) => format!("env://{v}"),
            KeyRef::Path(p) => p.display().to_string(),
        }
    }

    /// The key bytes. Unset/empty variables and unreadable files are errors.
    pub fn read(&self, env: &dyn Env) -> Result<Secret, KeyRefError> {
        match self {
            KeyRef::Env(var) => match env.var(var) {
                Some(v) if !v.trim().is_empty() => env_value(var, v),
                _ => Err(KeyRefError::Unset(var.clone())),
            },
            KeyRef::Path(p) => Self::read_file(p),
        }
    }

    /// Reads a key file (for `KeyRef::Path` and GitLab "File" variables).
    fn read_file(p: &Path) -> Result<Secret, KeyRefError> {
        let bytes = std::fs::read(p).map_err(|source| KeyRefError::ReadFile {
            path: p.to_path_buf(),
            source,
        })?;
        String::from_utf8(bytes)
            .map(Secret::new)
            .map_err(|_| KeyRefError::NotText(p.to_path_buf()))
    }

    /// The private key, decrypted with `COSIGN_PASSWORD` (unset: empty).
    pub fn load_private(&self, env: &dyn Env) -> Result<PrivateKey, KeyRefError> {
        let pem = self.read(env)?;
        let password = Secret::new(env.var(PASSWORD_VAR).unwrap_or_default());
        Ok(PrivateKey::from_pem(
            pem.expose().as_bytes(),
            &password,
            &self.origin(),
        )?)
    }

    pub fn load_public(&self, env: &dyn Env) -> Result<PublicKey, KeyRefError> {
        let pem = self.read(env)?;
        Ok(PublicKey::from_pem(
            pem.expose().as_bytes(),
            &self.origin(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kit::env::MapEnv;

    #[test]
    fn parse_refs() {
        assert_eq!(
            KeyRef::parse("env://COSIGN_KEY").unwrap(),
            KeyRef::Env("COSIGN_KEY".into())
        );
        assert_eq!(
            KeyRef::parse("./cosign.key").unwrap(),
            KeyRef::Path("./cosign.key".into())
        );
        assert!(KeyRef::parse("env://").is_err());
        assert!(KeyRef::parse("env://A-B").is_err());
        assert!(KeyRef::parse("").is_err());
        let e = KeyRef::parse("awskms:///arn").unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
    }

    #[test]
    fn env_keys_and_password() {
        let k = PrivateKey::generate().unwrap();
        let pem = k
            .to_encrypted_pem_with_n(&Secret::new("pw-1234"), 1024)
            .unwrap();
        let env = MapEnv::new([
            ("K", pem.as_str()),
            ("COSIGN_PASSWORD", "pw-1234"),
            ("P", &k.public().to_pem()),
        ]);
        let r = KeyRef::parse(
            DEFAULT_PRIVATE_KEY
                .replace("COSIGN_PRIVATE_KEY", "K")
                .as_str(),
        )
        .unwrap();
        assert_eq!(r.load_private(&env).unwrap().public(), k.public());
        assert_eq!(
            KeyRef::Env("P".into()).load_public(&env).unwrap(),
            k.public()
        );
        let e = KeyRef::Env("MISSING".into()).load_public(&env).unwrap_err();
        assert!(e.to_string().contains("MISSING"));
        // Unset COSIGN_PASSWORD means the empty password.
        let env = MapEnv::new([("K", pem.as_str())]);
        let e = r.load_private(&env).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("env://K: {}", crate::keys::WRONG_PASSWORD)
        );
        let e = KeyRef::Path("/nonexistent/cosign.key".into())
            .load_private(&env)
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/cosign.key"));
    }

    #[test]
    fn gitlab_file_and_base64_variables() {
        use base64::Engine as _;
        let k = PrivateKey::generate().unwrap();
        let public = k.public().to_pem();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cosign.pub");
        std::fs::write(&file, &public).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&public);
        let env = MapEnv::new([
            ("FILEVAR", file.to_str().unwrap()),
            ("B64VAR", b64.as_str()),
            ("JUNK", "bm90IGEga2V5"),
        ]);
        assert_eq!(
            KeyRef::Env("FILEVAR".into()).load_public(&env).unwrap(),
            k.public()
        );
        assert_eq!(
            KeyRef::Env("B64VAR".into()).load_public(&env).unwrap(),
            k.public()
        );
        let e = KeyRef::Env("JUNK".into()).load_public(&env).unwrap_err();
        let e = e.to_string();
        assert!(e.contains("env://JUNK") && !e.contains("bm90"), "{e}");
    }
}
