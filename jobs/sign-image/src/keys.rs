//! cosign-compatible keys: reading, writing, signing and verifying.
//!
//! Formats (byte for byte what cosign 2.x/3.x reads and writes):
//!
//! * `ENCRYPTED SIGSTORE PRIVATE KEY` (cosign ≥ 1.x) and the older
//!   `ENCRYPTED COSIGN PRIVATE KEY`: a PEM block whose bytes are the JSON
//!   document of go-securesystemslib's `encrypted` package:
//!   `{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"<b64>"},
//!     "cipher":{"name":"nacl/secretbox","nonce":"<b64>"},"ciphertext":"<b64>"}`.
//!   The secretbox key is `scrypt(password, salt, N, r, p, 32)`; the plaintext
//!   is the PKCS#8 DER of the private key.
//! * `PRIVATE KEY` (unencrypted PKCS#8) and `EC PRIVATE KEY` (SEC1).
//! * `PUBLIC KEY`: SubjectPublicKeyInfo DER (what `cosign.pub` holds).
//!
//! Signatures are ECDSA P-256 over SHA-256 of the payload bytes, ASN.1 DER,
//! base64 (standard alphabet, padded) in the signature annotation.
//!
//! Signing is deterministic (RFC 6979, p256's `SigningKey`): the same key and
//! payload always give the same signature bytes. cosign's Go signer is
//! randomized, so verification and duplicate detection never rely on that.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Key, Nonce, XSalsa20Poly1305};
use kit::secret::Secret;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::der::pem::{self, LineEnding};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use serde::{Deserialize, Serialize};

/// PEM label cosign ≥ 1.x writes for encrypted private keys.
pub const SIGSTORE_PRIVATE_KEY_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// PEM label of older cosign encrypted private keys.
pub const COSIGN_PRIVATE_KEY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
pub const PKCS8_LABEL: &str = "PRIVATE KEY";
pub const SEC1_LABEL: &str = "EC PRIVATE KEY";
pub const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";

/// The message for every decryption failure. A wrong password and a file
/// that is not a cosign key cannot be told apart (secretbox authentication
/// fails either way), so the message names both.
pub const WRONG_PASSWORD: &str = "wrong password or not a cosign key";

/// scrypt parameters cosign writes (go-securesystemslib's defaults).
pub const SCRYPT_N: u64 = 32768;
pub const SCRYPT_R: u32 = 8;
pub const SCRYPT_P: u32 = 1;
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const BOX_KEY_LEN: usize = 32;
/// Largest scrypt work factor accepted when reading a key (2^20, 1 GiB with
/// r = 8): bounds the memory a hostile key file can make us allocate.
const MAX_SCRYPT_LOG_N: u8 = 20;
const MAX_SCRYPT_MEMORY: u64 = 1 << 30;

/// Why a key cannot be read, written or made. Every message names where the
/// key came from (a path or `env://VAR`), never its content or password.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{origin} is not a PEM {what} (not text)")]
    NotText { origin: String, what: &'static str },
    #[error("{origin} is not a PEM {what} (no -----BEGIN … ----- block)")]
    NoPemBlock { origin: String, what: &'static str },
    #[error("{origin} is not a valid PEM {what}: {reason}")]
    BadPem {
        origin: String,
        what: &'static str,
        reason: pem::Error,
    },
    #[error("{origin}: {source}")]
    Decrypt {
        origin: String,
        #[source]
        source: DecryptError,
    },
    #[error(
        "{origin}: the {what} is not an ECDSA P-256 key (sign-image supports P-256, cosign's default key type)"
    )]
    NotP256 { origin: String, what: &'static str },
    #[error("{origin} holds a PUBLIC KEY; signing needs the private key (cosign.key)")]
    PublicWherePrivate { origin: String },
    #[error("{origin} holds a private key; verify takes the public key (cosign.pub)")]
    PrivateWherePublic { origin: String },
    #[error("{origin} holds a PEM {label:?} block; expected {expected}")]
    UnexpectedLabel {
        origin: String,
        label: String,
        expected: &'static str,
    },
    #[error("cannot get random bytes from the OS: {0}")]
    Random(getrandom::Error),
    #[error("cannot encode the private key: {0}")]
    EncodePkcs8(p256::pkcs8::Error),
    #[error("cannot encode the key as PEM: {0}")]
    EncodePem(pem::Error),
    #[error("cannot encode the encrypted key: {0}")]
    EncodeJson(#[source] serde_json::Error),
    #[error("cannot encrypt the private key: {0}")]
    Scrypt(#[source] ScryptError),
    #[error("cannot encrypt the private key")]
    Encrypt,
}

/// Why an encrypted cosign key does not open. Every variant says
/// [`WRONG_PASSWORD`] first: from the outside a wrong password and a
/// malformed key look the same.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    #[error("wrong password or not a cosign key")]
    WrongPassword,
    #[error(
        "wrong password or not a cosign key (unsupported key derivation {0:?}, expected scrypt)"
    )]
    UnsupportedKdf(String),
    #[error(
        "wrong password or not a cosign key (unsupported cipher {0:?}, expected nacl/secretbox)"
    )]
    UnsupportedCipher(String),
    #[error("wrong password or not a cosign key (secretbox nonce is not 24 bytes)")]
    BadNonce,
    #[error("wrong password or not a cosign key ({0})")]
    Scrypt(#[source] ScryptError),
}

/// scrypt parameters that are not used (too large, or not scrypt's).
#[derive(Debug, thiserror::Error)]
pub enum ScryptError {
    #[error("scrypt N is not a power of two")]
    NotPowerOfTwo,
    #[error("scrypt parameters N={n} r={r} p={p} are out of the supported range")]
    OutOfRange { n: u64, r: u32, p: u32 },
    #[error("scrypt parameters: {0}")]
    Params(scrypt::errors::InvalidParams),
    #[error("scrypt: {0}")]
    Output(scrypt::errors::InvalidOutputLen),
}

/// The public key bytes are not an ECDSA P-256 SubjectPublicKeyInfo.
#[derive(Debug, thiserror::Error)]
#[error("not an ECDSA P-256 public key: {0}")]
pub struct SpkiError(p256::pkcs8::spki::Error);

#[derive(Serialize, Deserialize)]
struct Encrypted {
    kdf: Kdf,
    cipher: Cipher,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    #[serde(with = "b64")]
    salt: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    #[serde(with = "b64")]
    nonce: Vec<u8>,
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::B64.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        super::B64
            .decode(s.trim())
            .map_err(serde::de::Error::custom)
    }
}

/// Where a key came from, for messages (never the content).
pub type Origin<'a> = &'a str;

/// A private key that can sign.
#[derive(Clone)]
pub struct PrivateKey {
    key: SigningKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PrivateKey([redacted], public {})",
            self.public().fingerprint()
        )
    }
}

/// A public key that verifies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
}

/// Extracts the first PEM block of a text, tolerating what CI variables do
/// to files: CRLF line ends, surrounding blank lines or text, a missing final
/// newline.
fn first_pem_block(text: &str) -> Option<String> {
    let text = text.replace("\r\n", "\n");
    let begin = text.find("-----BEGIN ")?;
    let rest = &text[begin..];
    let label_end = rest["-----BEGIN ".len()..].find("-----")? + "-----BEGIN ".len();
    let label = &rest["-----BEGIN ".len()..label_end];
    let end_marker = format!("-----END {label}-----");
    let end = rest.find(&end_marker)? + end_marker.len();
    // Strip leading/trailing whitespace of each line (indented YAML blocks).
    let mut out = String::with_capacity(end + 1);
    for line in rest[..end].lines() {
        let line = line.trim();
        if !line.is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    Some(out)
}

fn decode_pem(
    bytes: &[u8],
    origin: Origin<'_>,
    what: &'static str,
) -> Result<(String, Vec<u8>), KeyError> {
    let origin = || origin.to_string();
    let text = std::str::from_utf8(bytes).map_err(|_| KeyError::NotText {
        origin: origin(),
        what,
    })?;
    let block = first_pem_block(text).ok_or_else(|| KeyError::NoPemBlock {
        origin: origin(),
        what,
    })?;
    let (label, der) = pem::decode_vec(block.as_bytes()).map_err(|reason| KeyError::BadPem {
        origin: origin(),
        what,
        reason,
    })?;
    Ok((label.to_string(), der))
}

impl PrivateKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, KeyError> {
        loop {
            let mut bytes = zeroizing32();
            getrandom::fill(&mut bytes[..]).map_err(KeyError::Random)?;
            // Fails only for 0 or ≥ n, probability ~2^-128: draw again.
            if let Ok(key) = SigningKey::from_slice(&bytes[..]) {
                return Ok(PrivateKey { key });
            }
        }
    }

    /// Reads any supported private key PEM. `password` is used only for the
    /// encrypted cosign formats. Every failure names `origin`, never the key
    /// or password.
    pub fn from_pem(bytes: &[u8], password: &Secret, origin: Origin<'_>) -> Result<Self, KeyError> {
        let (label, der) = decode_pem(bytes, origin, "private key")?;
        match label.as_str() {
            SIGSTORE_PRIVATE_KEY_LABEL | COSIGN_PRIVATE_KEY_LABEL => {
                let pkcs8 = decrypt(&der, password.expose().as_bytes()).map_err(|source| {
                    KeyError::Decrypt {
                        origin: origin.to_string(),
                        source,
                    }
                })?;
                Self::from_pkcs8_der(&pkcs8, origin)
            }
            PKCS8_LABEL => Self::from_pkcs8_der(&der, origin),
            SEC1_LABEL => {
                let secret =
                    p256::SecretKey::from_sec1_der(&der).map_err(|_| KeyError::NotP256 {
                        origin: origin.to_string(),
                        what: "EC private key",
                    })?;
                Ok(PrivateKey {
                    key: SigningKey::from(secret),
                })
            }
            PUBLIC_KEY_LABEL => Err(KeyError::PublicWherePrivate {
                origin: origin.to_string(),
            }),
            other => Err(KeyError::UnexpectedLabel {
                origin: origin.to_string(),
                label: other.to_string(),
                expected: "a cosign private key (ENCRYPTED SIGSTORE PRIVATE KEY, ENCRYPTED COSIGN PRIVATE KEY, PRIVATE KEY or EC PRIVATE KEY)",
            }),
        }
    }

    fn from_pkcs8_der(der: &[u8], origin: Origin<'_>) -> Result<Self, KeyError> {
        SigningKey::from_pkcs8_der(der)
            .map(|key| PrivateKey { key })
            .map_err(|_| KeyError::NotP256 {
                origin: origin.to_string(),
                what: "private key",
            })
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: *self.key.verifying_key(),
        }
    }

    /// ECDSA P-256 / SHA-256 signature of `payload`, ASN.1 DER.
    pub fn sign(&self, payload: &[u8]) -> Vec<u8> {
        let sig: DerSignature = self.key.sign(payload);
        sig.as_bytes().to_vec()
    }

    /// The signature as it goes into the `dev.cosignproject.cosign/signature` annotation.
    pub fn sign_base64(&self, payload: &[u8]) -> String {
        B64.encode(self.sign(payload))
    }

    /// Unencrypted PKCS#8 DER (zeroized on drop).
    pub fn to_pkcs8_der(&self) -> Result<ZeroVec, KeyError> {
        let doc = self.key.to_pkcs8_der().map_err(KeyError::EncodePkcs8)?;
        Ok(zeroize::Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// Unencrypted `PRIVATE KEY` PEM (PKCS#8), for tests and key import.
    pub fn to_pkcs8_pem(&self) -> Result<Secret, KeyError> {
        let der = self.to_pkcs8_der()?;
        pem::encode_string(PKCS8_LABEL, LineEnding::LF, &der[..])
            .map(Secret::new)
            .map_err(KeyError::EncodePem)
    }

    /// cosign's `ENCRYPTED SIGSTORE PRIVATE KEY` PEM, as `cosign generate-key-pair` writes it.
    pub fn to_encrypted_pem(&self, password: &Secret) -> Result<String, KeyError> {
        self.to_encrypted_pem_with_n(password, SCRYPT_N)
    }

    /// [`Self::to_encrypted_pem`] with another scrypt work factor `n` (a
    /// power of two). Only for tests: a smaller `n` is weaker, and cosign and
    /// sigstore-rs accept only 32768 and 65536.
    #[doc(hidden)]
    pub fn to_encrypted_pem_with_n(&self, password: &Secret, n: u64) -> Result<String, KeyError> {
        let der = self.to_pkcs8_der()?;
        let mut salt = vec![0u8; SALT_LEN];
        let mut nonce = vec![0u8; NONCE_LEN];
        getrandom::fill(&mut salt)
            .and_then(|()| getrandom::fill(&mut nonce))
            .map_err(KeyError::Random)?;
        let ciphertext = encrypt_with(
            &der[..],
            password.expose().as_bytes(),
            &salt,
            &nonce,
            n,
            SCRYPT_R,
            SCRYPT_P,
        )?;
        let doc = Encrypted {
            kdf: Kdf {
                name: "scrypt".into(),
                params: ScryptParams {
                    n,
                    r: SCRYPT_R,
                    p: SCRYPT_P,
                },
                salt,
            },
            cipher: Cipher {
                name: "nacl/secretbox".into(),
                nonce,
            },
            ciphertext,
        };
        let json = serde_json::to_vec(&doc).map_err(KeyError::EncodeJson)?;
        pem::encode_string(SIGSTORE_PRIVATE_KEY_LABEL, LineEnding::LF, &json)
            .map_err(KeyError::EncodePem)
    }
}

/// Secret bytes, wiped when dropped.
pub type ZeroVec = zeroize::Zeroizing<Vec<u8>>;

fn zeroizing32() -> ZeroVec {
    zeroize::Zeroizing::new(vec![0u8; 32])
}

fn scrypt_key(
    password: &[u8],
    salt: &[u8],
    n: u64,
    r: u32,
    p: u32,
) -> Result<ZeroVec, ScryptError> {
    if n < 2 || !n.is_power_of_two() {
        return Err(ScryptError::NotPowerOfTwo);
    }
    let log_n = n.trailing_zeros() as u8;
    if log_n > MAX_SCRYPT_LOG_N
        || r == 0
        || p == 0
        || p > 16
        || 128 * n * u64::from(r) > MAX_SCRYPT_MEMORY
    {
        return Err(ScryptError::OutOfRange { n, r, p });
    }
    let params = scrypt::Params::new(log_n, r, p).map_err(ScryptError::Params)?;
    let mut out = zeroize::Zeroizing::new(vec![0u8; BOX_KEY_LEN]);
    scrypt::scrypt(password, salt, &params, &mut out[..]).map_err(ScryptError::Output)?;
    Ok(out)
}

#[allow(deprecated)] // generic-array's from_slice, as crypto_secretbox 0.1 takes it
fn encrypt_with(
    plaintext: &[u8],
    password: &[u8],
    salt: &[u8],
    nonce: &[u8],
    n: u64,
    r: u32,
    p: u32,
) -> Result<Vec<u8>, KeyError> {
    let key = scrypt_key(password, salt, n, r, p).map_err(KeyError::Scrypt)?;
    let cipher = XSalsa20Poly1305::new(Key::from_slice(&key[..]));
    cipher
        .encrypt(Nonce::from_slice(nonce), plaintext)
        .map_err(|_| KeyError::Encrypt)
}

/// Decrypts the JSON document of an encrypted cosign key to the PKCS#8 DER
/// inside. Every failure says [`WRONG_PASSWORD`] or names the malformed part;
/// nothing of the input is echoed.
#[allow(deprecated)] // generic-array's from_slice, as crypto_secretbox 0.1 takes it
fn decrypt(json: &[u8], password: &[u8]) -> Result<Vec<u8>, DecryptError> {
    let doc: Encrypted = serde_json::from_slice(json).map_err(|_| DecryptError::WrongPassword)?;
    if doc.kdf.name != "scrypt" {
        return Err(DecryptError::UnsupportedKdf(doc.kdf.name));
    }
    if doc.cipher.name != "nacl/secretbox" {
        return Err(DecryptError::UnsupportedCipher(doc.cipher.name));
    }
    if doc.cipher.nonce.len() != NONCE_LEN {
        return Err(DecryptError::BadNonce);
    }
    let key = scrypt_key(
        password,
        &doc.kdf.salt,
        doc.kdf.params.n,
        doc.kdf.params.r,
        doc.kdf.params.p,
    )
    .map_err(DecryptError::Scrypt)?;
    let cipher = XSalsa20Poly1305::new(Key::from_slice(&key[..]));
    cipher
        .decrypt(
            Nonce::from_slice(&doc.cipher.nonce),
            doc.ciphertext.as_slice(),
        )
        .map_err(|_| DecryptError::WrongPassword)
}

impl PublicKey {
    /// Reads a `PUBLIC KEY` PEM (cosign.pub). A private key PEM is refused
    /// with a hint, so a swapped pair of variables is caught.
    pub fn from_pem(bytes: &[u8], origin: Origin<'_>) -> Result<Self, KeyError> {
        let (label, der) = decode_pem(bytes, origin, "public key")?;
        match label.as_str() {
            PUBLIC_KEY_LABEL => Self::from_spki_der(&der).map_err(|_| KeyError::NotP256 {
                origin: origin.to_string(),
                what: "public key",
            }),
            SIGSTORE_PRIVATE_KEY_LABEL | COSIGN_PRIVATE_KEY_LABEL | PKCS8_LABEL | SEC1_LABEL => {
                Err(KeyError::PrivateWherePublic {
                    origin: origin.to_string(),
                })
            }
            other => Err(KeyError::UnexpectedLabel {
                origin: origin.to_string(),
                label: other.to_string(),
                expected: "a PUBLIC KEY",
            }),
        }
    }

    pub fn from_spki_der(der: &[u8]) -> Result<Self, SpkiError> {
        VerifyingKey::from_public_key_der(der)
            .map(|key| PublicKey { key })
            .map_err(SpkiError)
    }

    pub fn to_spki_der(&self) -> Vec<u8> {
        // Encoding a valid point cannot fail.
        self.key
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default()
    }

    /// `PUBLIC KEY` PEM as cosign writes cosign.pub.
    pub fn to_pem(&self) -> String {
        pem::encode_string(PUBLIC_KEY_LABEL, LineEnding::LF, &self.to_spki_der())
            .unwrap_or_default()
    }

    /// Verifies an ASN.1 DER ECDSA P-256 / SHA-256 signature over `payload`.
    pub fn verify(&self, payload: &[u8], der_signature: &[u8]) -> bool {
        // Accept both encodings cosign-family tools produce: DER (cosign, sigstore-rs)
        // and the raw 64-byte r||s form some KMS signers emit.
        let sig = match Signature::from_der(der_signature) {
            Ok(s) => s,
            Err(_) if der_signature.len() == 64 => match Signature::from_slice(der_signature) {
                Ok(s) => s,
                Err(_) => return false,
            },
            Err(_) => return false,
        };
        self.key.verify(payload, &sig).is_ok()
    }

    /// Verifies the base64 signature of a cosign annotation.
    pub fn verify_base64(&self, payload: &[u8], signature_b64: &str) -> bool {
        // Go's base64 (cosign) ignores line breaks; so do we.
        let compact: String = signature_b64
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        match B64.decode(compact) {
            Ok(sig) => self.verify(payload, &sig),
            Err(_) => false,
        }
    }

    /// `sha256:<hex>` of the SPKI DER: a short name for the key in logs.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        let d = sha2::Sha256::digest(self.to_spki_der());
        format!("sha256:{}", hex::encode(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Secret {
        Secret::new(s)
    }

    #[test]
    fn encrypted_round_trip_and_format() {
        let k = PrivateKey::generate().unwrap();
        let pem_text = k.to_encrypted_pem(&pw("correct horse")).unwrap();
        assert!(pem_text.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        assert!(pem_text.lines().all(|l| l.len() <= 64));
        // The JSON inside has cosign's field order and parameters.
        let (_, json) = pem::decode_vec(pem_text.as_bytes()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["kdf"]["name"], "scrypt");
        assert_eq!(
            v["kdf"]["params"],
            serde_json::json!({"N": 32768, "r": 8, "p": 1})
        );
        assert_eq!(v["cipher"]["name"], "nacl/secretbox");
        let text = String::from_utf8(json).unwrap();
        assert!(
            text.starts_with(
                r#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":""#
            ),
            "{text}"
        );
        let back =
            PrivateKey::from_pem(pem_text.as_bytes(), &pw("correct horse"), "cosign.key").unwrap();
        assert_eq!(back.public(), k.public());
    }

    #[test]
    fn wrong_password_is_usage_error_without_secret() {
        let k = PrivateKey::generate().unwrap();
        let pem_text = k
            .to_encrypted_pem_with_n(&pw("right-password"), 1024)
            .unwrap();
        let e = PrivateKey::from_pem(pem_text.as_bytes(), &pw("wrong-password"), "cosign.key")
            .unwrap_err();
        assert!(matches!(e, KeyError::Decrypt { .. }), "{e:?}");
        assert_eq!(e.to_string(), format!("cosign.key: {WRONG_PASSWORD}"));
        assert_eq!(DecryptError::WrongPassword.to_string(), WRONG_PASSWORD);
        // Empty password is a valid password.
        let empty = k.to_encrypted_pem_with_n(&pw(""), 1024).unwrap();
        PrivateKey::from_pem(empty.as_bytes(), &pw(""), "k").unwrap();
        assert!(PrivateKey::from_pem(empty.as_bytes(), &pw("x"), "k").is_err());
    }

    #[test]
    fn older_cosign_label_and_crlf_accepted() {
        let k = PrivateKey::generate().unwrap();
        let pem_text = k
            .to_encrypted_pem_with_n(&pw("p"), 1024)
            .unwrap()
            .replace(SIGSTORE_PRIVATE_KEY_LABEL, COSIGN_PRIVATE_KEY_LABEL);
        let crlf = format!("\n  {}  \n", pem_text.replace('\n', "\r\n"));
        let back = PrivateKey::from_pem(crlf.trim_end().as_bytes(), &pw("p"), "k").unwrap();
        assert_eq!(back.public(), k.public());
    }

    #[test]
    fn unencrypted_pkcs8_and_sec1() {
        let k = PrivateKey::generate().unwrap();
        let p8 = k.to_pkcs8_pem().unwrap();
        let back = PrivateKey::from_pem(p8.expose().as_bytes(), &pw("ignored"), "k").unwrap();
        assert_eq!(back.public(), k.public());
        let sec1 = p256::SecretKey::from(&k.key)
            .to_sec1_pem(LineEnding::LF)
            .unwrap();
        let back = PrivateKey::from_pem(sec1.as_bytes(), &pw(""), "k").unwrap();
        assert_eq!(back.public(), k.public());
    }

    #[test]
    fn malformed_keys_are_named_usage_errors() {
        for (input, want) in [
            ("", "no -----BEGIN"),
            ("hello", "no -----BEGIN"),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "CERTIFICATE",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
                "not a valid PEM",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "not an ECDSA P-256",
            ),
            (
                "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
                WRONG_PASSWORD,
            ),
        ] {
            let e = PrivateKey::from_pem(input.as_bytes(), &pw("pw"), "key.pem").unwrap_err();
            let e = e.to_string();
            assert!(e.contains(want) && e.contains("key.pem"), "{input:?}: {e}");
        }
        let k = PrivateKey::generate().unwrap();
        let e = PrivateKey::from_pem(k.public().to_pem().as_bytes(), &pw(""), "k").unwrap_err();
        assert!(e.to_string().contains("PUBLIC KEY"), "{e}");
        let e =
            PublicKey::from_pem(k.to_pkcs8_pem().unwrap().expose().as_bytes(), "k").unwrap_err();
        assert!(e.to_string().contains("private key"), "{e}");
    }

    #[test]
    fn hostile_scrypt_parameters_rejected() {
        let json = br#"{"kdf":{"name":"scrypt","params":{"N":1073741824,"r":8,"p":1},"salt":"AAAA"},"cipher":{"name":"nacl/secretbox","nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},"ciphertext":"AAAA"}"#;
        let e = decrypt(json, b"").unwrap_err().to_string();
        assert!(e.contains("out of the supported range"), "{e}");
    }

    #[test]
    fn sign_verify_deterministic_and_tamper_evident() {
        let k = PrivateKey::generate().unwrap();
        let sig = k.sign(b"payload");
        assert_eq!(sig, k.sign(b"payload"), "RFC 6979 signing is deterministic");
        let public = k.public();
        assert!(public.verify(b"payload", &sig));
        assert!(!public.verify(b"payload!", &sig));
        assert!(public.verify_base64(b"payload", &k.sign_base64(b"payload")));
        assert!(!public.verify_base64(b"payload", "not base64"));
        let other = PrivateKey::generate().unwrap().public();
        assert!(!other.verify(b"payload", &sig));
        let pem_text = public.to_pem();
        assert!(pem_text.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(
            PublicKey::from_pem(pem_text.as_bytes(), "p").unwrap(),
            public
        );
        assert!(public.fingerprint().starts_with("sha256:"));
    }

    #[test]
    fn debug_never_shows_key_material() {
        let k = PrivateKey::generate().unwrap();
        let p8 = k.to_pkcs8_pem().unwrap();
        let body: String = p8
            .expose()
            .lines()
            .nth(1)
            .unwrap()
            .chars()
            .take(20)
            .collect();
        assert!(!format!("{k:?}").contains(&body));
    }
}
