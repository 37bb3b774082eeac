//! Test certificates made in Rust with `rcgen` (no `openssl` command): a
//! throwaway CA, server certificates it signs, and the rustls acceptor a
//! test server needs.
//!
//! ```no_run
//! use harness::tls::TestCa;
//! let dir = tempfile::tempdir().unwrap();
//! let ca = TestCa::new();
//! let id = ca.issue(&["127.0.0.1", "localhost"]); // server cert + key, PEM
//! let ca_file = ca.write_pem(dir.path());         // dir/ca.pem, for SSL_CERT_FILE
//! let acceptor = id.acceptor();                   // tokio_rustls::TlsAcceptor
//! // or: harness::http_server::HttpServer::start_tls(&id, |req| …)
//! ```
//!
//! [`self_signed`] is the short form: a CA in `dir/ca.pem` and an identity
//! for `127.0.0.1`/`localhost` it signed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// A server certificate (chain, PEM) and its private key (PEM).
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl TlsIdentity {
    /// A rustls acceptor serving this identity (no client certificates).
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        acceptor(self)
    }

    /// Writes `cert.pem` and `key.pem` into `dir`; returns their paths.
    pub fn write_pem(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &self.cert_pem).expect("write cert.pem");
        std::fs::write(&key, &self.key_pem).expect("write key.pem");
        (cert, key)
    }
}

/// A private certificate authority, as a self-hosted GitLab, registry or
/// Argo CD has. Valid from yesterday until the day after tomorrow.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

impl TestCa {
    /// A CA named `secdeliv test CA`.
    pub fn new() -> TestCa {
        TestCa::named("secdeliv test CA")
    }

    /// A CA with this common name (so two CAs are told apart in messages).
    pub fn named(common_name: &str) -> TestCa {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate, PEM: what a client must trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Writes the CA certificate to `dir/ca.pem` and returns that path.
    pub fn write_pem(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.cert_pem).expect("write ca.pem");
        path
    }

    /// A server certificate for these names (IP addresses become IP SANs,
    /// the rest DNS SANs; the first is the common name), signed by this CA,
    /// and its new key. The chain holds the leaf only, like most servers.
    pub fn issue(&self, names: &[&str]) -> TlsIdentity {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("subject alternative names");
        params.distinguished_name = dn(names.first().copied().unwrap_or("localhost"));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params);
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign server certificate");
        TlsIdentity {
            cert_pem: cert.pem().into_bytes(),
            key_pem: key.serialize_pem().into_bytes(),
        }
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(2);
}

/// A fresh CA written to `dir/ca.pem` and an identity for
/// `127.0.0.1`/`localhost` it signed. Returns the identity and the CA path.
pub fn self_signed(dir: &Path) -> (TlsIdentity, PathBuf) {
    let ca = TestCa::new();
    let id = ca.issue(&["127.0.0.1", "localhost"]);
    (id, ca.write_pem(dir))
}

/// A rustls acceptor serving `id` (no client certificates).
pub fn acceptor(id: &TlsIdentity) -> tokio_rustls::TlsAcceptor {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&id.cert_pem)
        .collect::<Result<_, _>>()
        .expect("certificate PEM");
    let key = PrivateKeyDer::from_pem_slice(&id.key_pem).expect("key PEM");
    let cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server certificate");
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}
