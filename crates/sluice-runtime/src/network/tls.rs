//! Mutual TLS for data connections, on the blocking sockets the reader and
//! writer threads use. One rustls connection is shared by the two threads
//! behind a mutex that is never held across a socket call: the reader reads
//! ciphertext without it and decrypts with it; the writer encrypts with it
//! and writes without it. Only the writer writes to the socket, so TLS
//! records leave in the order rustls made them.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection,
};

use sluice_core::{Result, SluiceError};

/// TLS settings of a data plane: this TaskManager's certificate and key,
/// and the CA every TaskManager's certificate must be signed by.
#[derive(Debug, Clone)]
pub struct DataTls {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

impl DataTls {
    /// Loads PEM files; the error names the file and what is wrong.
    pub fn load(cert: &Path, key: &Path, ca: &Path) -> Result<Self> {
        let bad = |path: &Path, what: &str, e: &dyn std::fmt::Display| {
            SluiceError::Config(format!("TLS {what} {}: {e}", path.display()))
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| bad(cert, "certificate", &e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad(cert, "certificate", &e))?;
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, "key", &e))?;
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).map_err(|e| bad(ca, "CA certificate", &e))? {
            roots
                .add(c.map_err(|e| bad(ca, "CA certificate", &e))?)
                .map_err(|e| bad(ca, "CA certificate", &e))?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| bad(ca, "CA certificate", &e))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| SluiceError::Internal(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key_der.clone_key())
            .map_err(|e| bad(cert, "certificate and key", &e))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| SluiceError::Internal(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key_der)
            .map_err(|e| bad(cert, "certificate and key", &e))?;
        Ok(Self { client: Arc::new(client), server: Arc::new(server) })
    }

    /// Runs the TLS handshake on `stream`: as the client towards `peer_ip`
    /// (its certificate must name that address), or as the server.
    pub(crate) fn handshake(
        &self,
        stream: &TcpStream,
        peer_ip: Option<IpAddr>,
    ) -> Result<TlsStream> {
        let mut conn: Connection = match peer_ip {
            Some(ip) => {
                ClientConnection::new(self.client.clone(), ServerName::IpAddress(ip.into()))
                    .map_err(tls_error)?
                    .into()
            }
            None => ServerConnection::new(self.server.clone()).map_err(tls_error)?.into(),
        };
        let mut socket = stream;
        while conn.is_handshaking() {
            conn.complete_io(&mut socket).map_err(|e| {
                SluiceError::external("data connection", format!("TLS handshake failed: {e}"))
            })?;
        }
        let socket = stream.try_clone().map_err(super::frame::io)?;
        Ok(TlsStream::new(Arc::new(Mutex::new(conn)), socket))
    }
}

fn tls_error(e: rustls::Error) -> SluiceError {
    SluiceError::external("data connection", format!("TLS: {e}"))
}

/// One end of a TLS data connection; cloned for the reader and the writer.
#[derive(Debug)]
pub(crate) struct TlsStream {
    conn: Arc<Mutex<Connection>>,
    socket: TcpStream,
    /// Ciphertext read from the socket; `start..end` is what rustls has not
    /// taken yet (it takes no more while decrypted data waits to be read).
    ciphertext: Vec<u8>,
    start: usize,
    end: usize,
}

impl TlsStream {
    fn new(conn: Arc<Mutex<Connection>>, socket: TcpStream) -> Self {
        Self { conn, socket, ciphertext: vec![0; 16 << 10], start: 0, end: 0 }
    }

    /// The TCP socket underneath.
    pub(crate) fn socket(&self) -> &TcpStream {
        &self.socket
    }

    /// A second handle on the same connection (one for reading, one for writing).
    pub(crate) fn try_clone(&self) -> std::io::Result<Self> {
        Ok(Self::new(self.conn.clone(), self.socket.try_clone()?))
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            {
                let mut conn = self.conn.lock().expect("TLS lock");
                match conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                // No plaintext waits, so rustls has room: give it what the socket gave.
                if self.start < self.end {
                    let mut input = &self.ciphertext[self.start..self.end];
                    let n = conn.read_tls(&mut input)?;
                    if n == 0 {
                        return Err(std::io::Error::other("TLS took no data"));
                    }
                    self.start += n;
                    conn.process_new_packets().map_err(std::io::Error::other)?;
                    // What rustls wants to send in reply (a key update) goes with the writer's next flush.
                    continue;
                }
            }
            let n = self.socket.read(&mut self.ciphertext)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            (self.start, self.end) = (0, n);
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut ciphertext = Vec::new();
        let n = {
            let mut conn = self.conn.lock().expect("TLS lock");
            let n = conn.writer().write(buf)?;
            while conn.wants_write() {
                conn.write_tls(&mut ciphertext)?;
            }
            n
        };
        self.socket.write_all(&ciphertext)?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut ciphertext = Vec::new();
        {
            let mut conn = self.conn.lock().expect("TLS lock");
            while conn.wants_write() {
                conn.write_tls(&mut ciphertext)?;
            }
        }
        self.socket.write_all(&ciphertext)?;
        self.socket.flush()
    }
}

/// Certificates for tests, made at test time (feature `testing`).
#[cfg(feature = "testing")]
pub mod testing {
    use std::path::{Path, PathBuf};

    /// PEM files of a certificate for 127.0.0.1 and localhost, its key, and
    /// the fresh CA that signed it, written to `dir` as `NAME-cert.pem`,
    /// `NAME-key.pem` and `NAME-ca.pem`; returned in that order.
    pub fn certificates(dir: &Path, name: &str) -> [PathBuf; 3] {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::new()).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("a CA key");
        let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");
        let key = KeyPair::generate().expect("a key");
        let cert = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("certificate parameters")
            .signed_by(&key, &ca, &ca_key)
            .expect("a certificate");
        let write = |file: &str, pem: String| {
            let path = dir.join(format!("{name}-{file}"));
            std::fs::write(&path, pem).expect("a writable directory");
            path
        };
        [
            write("cert.pem", cert.pem()),
            write("key.pem", key.serialize_pem()),
            write("ca.pem", ca.pem()),
        ]
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Two ends of a TLS connection on loopback.
    fn connected() -> (TlsStream, TlsStream) {
        let dir = tempfile::tempdir().unwrap();
        let [cert, key, ca] = testing::certificates(dir.path(), "t");
        let tls = DataTls::load(&cert, &key, &ca).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server_tls = tls.clone();
        let server = std::thread::spawn(move || {
            let (socket, _) = listener.accept().unwrap();
            server_tls.handshake(&socket, None).unwrap()
        });
        let socket = TcpStream::connect(address).unwrap();
        let client = tls.handshake(&socket, Some(address.ip())).unwrap();
        (client, server.join().unwrap())
    }

    #[test]
    fn a_reader_far_behind_its_writer_gets_every_byte_in_order() {
        let (mut client, mut server) = connected();
        let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        // Small and large writes, so that one socket read holds the end of a
        // full record and the start of others: more than rustls holds decrypted.
        let writer = std::thread::spawn(move || {
            for (i, chunk) in data.chunks(100_000).enumerate() {
                let (small, rest) = chunk.split_at(i % 7 + 1);
                client.write_all(small).unwrap();
                client.write_all(rest).unwrap();
            }
            client.flush().unwrap();
            client
        });
        // Let the socket fill before reading.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut got = vec![0u8; expected.len()];
        server.read_exact(&mut got).unwrap();
        assert!(got == expected, "every byte, in order");
        drop(writer.join().unwrap());
    }
}
