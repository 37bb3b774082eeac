//! kit's extra CA bundles against a real TLS server: a private CA and a
//! server certificate it signed for 127.0.0.1 (rcgen, `harness::tls`),
//! served by the harness's HTTPS server (hyper + rustls). The client trusts
//! it only when a bundle variable names that CA.
//!
//! (This lives in the harness crate because kit has no dev-dependency on
//! the harness; it moves to `jobs/kit/tests/` unchanged once kit has
//! `harness = { path = "../../tests/harness", package = "secdeliv-harness" }`
//! under `[dev-dependencies]`.)

use harness::http_server::{HttpServer, Response};
use harness::tls::TestCa;
use kit::env::MapEnv;
use kit::http::{HttpOptions, client};

struct Server {
    http: HttpServer,
    /// The CA that signed the server's certificate, as a file.
    ca_file: String,
    ca_pem: String,
    _dir: tempfile::TempDir,
}

/// A private CA (as a self-hosted GitLab or registry has) and an HTTPS
/// server whose certificate it signed for 127.0.0.1 and localhost.
fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let http = HttpServer::start_tls(&ca.issue(&["127.0.0.1", "localhost"]), |_| {
        Response::new(200, "ok")
    });
    Server {
        http,
        ca_file: ca.write_pem(dir.path()).to_str().unwrap().to_string(),
        ca_pem: ca.cert_pem().to_string(),
        _dir: dir,
    }
}

async fn get(env: &MapEnv, port: u16) -> Result<u16, String> {
    let c = client(&HttpOptions::default(), env).map_err(|e| e.message)?;
    c.get(format!("https://127.0.0.1:{port}/"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| kit::http::describe(&e))
}

#[tokio::test]
async fn self_signed_server_is_trusted_only_through_a_bundle_variable() {
    let s = start();
    let port = s.http.port();
    let err = get(&MapEnv::default(), port)
        .await
        .expect_err("untrusted certificate must fail");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // Another private CA does not help either.
    let dir = tempfile::tempdir().unwrap();
    let other = TestCa::named("another test CA").write_pem(dir.path());
    let env = MapEnv::new([("SSL_CERT_FILE", other.to_str().unwrap())]);
    let err = get(&env, port).await.expect_err("wrong CA must fail");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // Refused handshakes never became requests.
    assert!(s.http.received().is_empty());

    for var in ["SSL_CERT_FILE", "CI_SERVER_TLS_CA_FILE"] {
        let env = MapEnv::new([(var, s.ca_file.as_str())]);
        assert_eq!(get(&env, port).await, Ok(200), "{var}");
    }
    // GitLab passes ADDITIONAL_CA_CERT_BUNDLE as the PEM text itself.
    let env = MapEnv::new([("ADDITIONAL_CA_CERT_BUNDLE", s.ca_pem.as_str())]);
    assert_eq!(get(&env, port).await, Ok(200));
    assert_eq!(s.http.received().len(), 3);
}

#[tokio::test]
async fn accept_invalid_certs_only_when_asked() {
    let s = start();
    let opts = HttpOptions {
        accept_invalid_certs: true,
        ..Default::default()
    };
    let c = client(&opts, &MapEnv::default()).unwrap();
    let r = c
        .get(format!("https://127.0.0.1:{}/", s.http.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.http.received().len(), 1);
}
