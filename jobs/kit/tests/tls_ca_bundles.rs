//! Extra CA bundles against a real TLS server: a self-signed certificate made
//! by the `openssl` command, served by Python's `http.server` over TLS. The
//! client trusts it only when a bundle variable names it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use kit::env::MapEnv;
use kit::http::{HttpOptions, client};

struct Server {
    child: Child,
    port: u16,
    /// The CA that signed the server's certificate.
    cert: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SERVE: &str = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("content-length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

fn openssl(args: &[&str]) {
    let ok = Command::new("openssl")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .expect("openssl command (Debian package openssl)");
    assert!(ok.success(), "openssl {args:?}");
}

/// A private CA (as a self-hosted GitLab or registry has) and a server
/// certificate it signed for 127.0.0.1.
fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "2",
                "-subj",
                "/CN=secdeliv test CA",
                "-keyout",
                &p("ca.key"),
                "-out",
                &p("ca.pem"),
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=localhost",
                "-keyout",
                &p("key.pem"),
                "-out",
                &p("leaf.csr"),
            ],
        ]
        .concat(),
    );
    std::fs::write(p("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("leaf.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        &p("cert.pem"),
    ]);
    let (cert, key) = (p("cert.pem"), p("key.pem"));
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(SERVE)
        .arg(&cert)
        .arg(&key)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("server port");
    Server {
        child,
        port,
        cert: p("ca.pem"),
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
    let err = get(&MapEnv::default(), s.port)
        .await
        .expect_err("untrusted certificate must fail");
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    for var in ["SSL_CERT_FILE", "CI_SERVER_TLS_CA_FILE"] {
        let env = MapEnv::new([(var, s.cert.as_str())]);
        assert_eq!(get(&env, s.port).await, Ok(200), "{var}");
    }
    // GitLab passes ADDITIONAL_CA_CERT_BUNDLE as the PEM text itself.
    let pem = std::fs::read_to_string(&s.cert).unwrap();
    let env = MapEnv::new([("ADDITIONAL_CA_CERT_BUNDLE", pem.as_str())]);
    assert_eq!(get(&env, s.port).await, Ok(200));
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
        .get(format!("https://127.0.0.1:{}/", s.port))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
