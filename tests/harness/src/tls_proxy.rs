//! HTTPS in front of any plain-HTTP test server: a TLS-terminating TCP proxy
//! on 127.0.0.1 with a certificate from a throwaway CA
//! ([`crate::tls::self_signed`], made with rcgen), so a client is tested against real
//! TLS: trusted through the CA file, refused without it.
//!
//! ```no_run
//! let srv = harness::git_server::GitServer::start("bot", "token");
//! let dir = tempfile::tempdir().unwrap();
//! let tls = harness::tls_proxy::TlsProxy::start(&format!("127.0.0.1:{}", srv.port()), dir.path());
//! // https://127.0.0.1:{tls.port()}/NAME.git, trusted with SSL_CERT_FILE={tls.ca_file}
//! ```

use std::path::PathBuf;

use tokio::net::{TcpListener, TcpStream};

use crate::tls::{acceptor, self_signed};

/// A running proxy; it stops when dropped.
pub struct TlsProxy {
    port: u16,
    /// The CA certificate (PEM) a client must trust.
    pub ca_file: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsProxy {
    /// Terminates TLS on an ephemeral port and forwards each connection to
    /// `upstream` (`127.0.0.1:PORT`). Certificates are written to `cert_dir`.
    pub fn start(upstream: &str, cert_dir: &std::path::Path) -> TlsProxy {
        let (identity, ca_file) = self_signed(cert_dir);
        let tls = acceptor(&identity);
        let upstream = upstream.to_string();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let port = std_listener.local_addr().expect("addr").port();
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("listener");
                loop {
                    tokio::select! {
                        _ = &mut rx => break,
                        accepted = listener.accept() => {
                            let Ok((client, _)) = accepted else { continue };
                            let tls = tls.clone();
                            let upstream = upstream.clone();
                            tokio::spawn(async move {
                                // A client that refuses the certificate ends here.
                                let Ok(mut client) = tls.accept(client).await else { return };
                                let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            });
                        }
                    }
                }
            });
        });
        TlsProxy {
            port,
            ca_file,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
