//! The byte pipe under the protocol: a plain TCP socket, or (feature `tls`)
//! rustls over one. Either way it is non-blocking and driven by the
//! client's `on_read`/`on_write`, the TLS handshake included.

use crate::protocol::Connection;
use mio::net::TcpStream;
use std::io;
use std::time::Duration;

/// Idle time before the first TCP keepalive probe.
pub(crate) const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Time between unanswered keepalive probes.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes after which the kernel reports the peer dead.
pub(crate) const KEEPALIVE_RETRIES: u32 = 3;

/// Turns TCP keepalive on: with heartbeats off (`heartbeat=0`) a peer that
/// vanished (a blackholed route, a powered-off host) is otherwise never
/// noticed. The socket fails about 90 s (60 + 3 × 10) after the last byte
/// from a dead peer; with heartbeats on, they usually notice first.
pub(crate) fn set_keepalive(sock: &TcpStream) -> io::Result<()> {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    socket2::SockRef::from(sock).set_tcp_keepalive(&keepalive)
}

#[cfg(feature = "tls")]
pub use tls::TlsOptions;
#[cfg(feature = "tls")]
pub(crate) use tls::TlsStream;

/// A connected (or connecting) socket.
#[derive(Debug)]
pub(crate) enum Transport {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tls::TlsStream>),
}

impl Transport {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            #[cfg(feature = "tls")]
            Transport::Tls(t) => &t.sock,
        }
    }

    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(s) => s,
            #[cfg(feature = "tls")]
            Transport::Tls(t) => &mut t.sock,
        }
    }

    pub fn into_tcp(self) -> TcpStream {
        match self {
            Transport::Plain(s) => s,
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.sock,
        }
    }

    /// Reads once into the connection's read buffer. Returns the byte count
    /// (0: the peer closed) and whether the socket is known to be drained: a
    /// plain TCP read that did not fill the buffer took everything queued,
    /// so a second read would only return `WouldBlock` (edge-triggered
    /// readiness fires again for anything that arrives later). A TLS read
    /// never says so, since rustls may hold more plaintext than one read.
    pub fn read_into(&mut self, conn: &mut Connection) -> io::Result<(usize, bool)> {
        match self {
            Transport::Plain(s) => {
                let room = conn.read_capacity();
                let n = conn.read_from(s)?;
                Ok((n, n < room))
            }
            #[cfg(feature = "tls")]
            Transport::Tls(t) => Ok((conn.read_from(&mut tls::PlainReader(t))?, false)),
        }
    }

    /// Writes the connection's queued frames until the socket would block.
    pub fn write_from(&mut self, conn: &mut Connection) -> io::Result<()> {
        match self {
            Transport::Plain(s) => conn.write_to(s).map(drop),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.write_from(conn),
        }
    }

    /// Whether bytes wait below the connection (TLS records, handshake).
    pub fn wants_write(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.tls.wants_write(),
        }
    }
}

#[cfg(feature = "tls")]
mod tls {
    use crate::error::Error;
    use crate::protocol::Connection;
    use mio::net::TcpStream;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, RootCertStore};
    use std::io::{self, Read, Write};
    use std::path::PathBuf;
    use std::sync::Arc;

    /// TLS settings for `amqps://` URLs.
    ///
    /// Certificate and hostname verification are on by default, against the
    /// webpki (Mozilla) roots, or only against `ca_file` when it is given.
    /// Set with builder methods (the struct is `#[non_exhaustive]`):
    ///
    /// ```
    /// use puka::{Options, TlsOptions};
    /// let tls = TlsOptions::default()
    ///     .ca_file("/etc/rabbitmq/ca.pem")
    ///     .client_cert("client.pem", "client-key.pem");
    /// let options = Options::default().tls(tls);
    /// # let _ = options;
    /// ```
    #[derive(Clone, Default)]
    #[non_exhaustive]
    pub struct TlsOptions {
        /// PEM file of the CA certificates to trust instead of the webpki roots.
        pub ca_file: Option<PathBuf>,
        /// PEM file of the client certificate chain (for mutual TLS and the
        /// EXTERNAL mechanism).
        pub client_cert_file: Option<PathBuf>,
        /// PEM file of the client certificate's private key.
        pub client_key_file: Option<PathBuf>,
        /// Accepts any server certificate and host name. Only for tests
        /// against a throwaway broker: it makes the connection open to
        /// interception.
        pub dangerous_skip_verification: bool,
        /// A complete rustls configuration, overriding all the fields
        /// above: an escape hatch outside semver (it exposes rustls's
        /// types), so only with the `unstable` feature.
        #[cfg(feature = "unstable")]
        pub config: Option<Arc<ClientConfig>>,
    }

    impl TlsOptions {
        /// Trusts only the CA certificates in this PEM file (instead of the
        /// webpki roots).
        #[must_use]
        pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
            self.ca_file = Some(path.into());
            self
        }

        /// Presents this client certificate chain and its private key (PEM
        /// files), for mutual TLS and the EXTERNAL mechanism.
        #[must_use]
        pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
            self.client_cert_file = Some(cert.into());
            self.client_key_file = Some(key.into());
            self
        }

        /// Accepts any server certificate and host name: only for tests
        /// against a throwaway broker.
        #[must_use]
        pub fn dangerous_skip_verification(mut self) -> Self {
            self.dangerous_skip_verification = true;
            self
        }
    }

    impl std::fmt::Debug for TlsOptions {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("TlsOptions")
                .field("ca_file", &self.ca_file)
                .field("client_cert_file", &self.client_cert_file)
                .field(
                    "client_key_file",
                    &self.client_key_file.as_ref().map(|_| "***"),
                )
                .field(
                    "dangerous_skip_verification",
                    &self.dangerous_skip_verification,
                )
                .finish()
        }
    }

    fn bad(msg: String) -> Error {
        Error::Config(msg)
    }

    impl TlsOptions {
        /// Builds the rustls configuration these options describe.
        pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>, Error> {
            #[cfg(feature = "unstable")]
            if let Some(c) = &self.config {
                return Ok(c.clone());
            }
            // The process-wide provider when the program installed one,
            // else ring (the one puka is built with).
            let provider = rustls::crypto::CryptoProvider::get_default()
                .cloned()
                .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
            let builder = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| bad(format!("tls: {e}")))?;
            let builder = if self.dangerous_skip_verification {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(danger::NoVerification::new()))
            } else {
                let mut roots = RootCertStore::empty();
                match &self.ca_file {
                    Some(path) => {
                        for cert in CertificateDer::pem_file_iter(path)
                            .map_err(|e| bad(format!("tls: reading CA file: {e}")))?
                        {
                            let cert =
                                cert.map_err(|e| bad(format!("tls: parsing CA file: {e}")))?;
                            roots
                                .add(cert)
                                .map_err(|e| bad(format!("tls: CA certificate: {e}")))?;
                        }
                    }
                    None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
                }
                builder.with_root_certificates(roots)
            };
            let config = match (&self.client_cert_file, &self.client_key_file) {
                (Some(cert), Some(key)) => {
                    let chain = CertificateDer::pem_file_iter(cert)
                        .map_err(|e| bad(format!("tls: reading client certificate: {e}")))?
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| bad(format!("tls: parsing client certificate: {e}")))?;
                    let key = PrivateKeyDer::from_pem_file(key)
                        .map_err(|_| bad("tls: cannot read the client key".into()))?;
                    builder
                        .with_client_auth_cert(chain, key)
                        .map_err(|e| bad(format!("tls: client certificate: {e}")))?
                }
                (None, None) => builder.with_no_client_auth(),
                _ => {
                    return Err(bad(
                        "tls: client_cert_file and client_key_file go together".into()
                    ))
                }
            };
            Ok(Arc::new(config))
        }
    }

    /// Reads that keep `Interrupted` out of the caller's way.
    fn read_retry(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match r.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    /// rustls over a non-blocking socket.
    #[derive(Debug)]
    pub(crate) struct TlsStream {
        pub sock: TcpStream,
        pub tls: ClientConnection,
    }

    impl TlsStream {
        pub fn new(
            sock: TcpStream,
            config: Arc<ClientConfig>,
            server_name: &str,
        ) -> Result<Self, Error> {
            let name = ServerName::try_from(server_name.to_string())
                .map_err(|_| bad(format!("tls: invalid server name {server_name:?}")))?;
            let tls = ClientConnection::new(config, name).map_err(|e| bad(format!("tls: {e}")))?;
            Ok(TlsStream { sock, tls })
        }

        /// Hands queued frames to rustls and TLS records to the socket,
        /// alternating until the socket would block or nothing is left (a
        /// socket that took everything reports no new writability, so
        /// stopping early would stall a large message).
        pub fn write_from(&mut self, conn: &mut Connection) -> io::Result<()> {
            loop {
                conn.write_to(&mut PlainWriter(&mut self.tls))?;
                if !self.tls.wants_write() {
                    return Ok(());
                }
                while self.tls.wants_write() {
                    match self.tls.write_tls(&mut self.sock) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) => return Err(e),
                    }
                }
                if !conn.wants_write() {
                    return Ok(());
                }
            }
        }
    }

    /// Plaintext in, with rustls's buffer limit reported as `WouldBlock`.
    struct PlainWriter<'a>(&'a mut ClientConnection);

    impl Write for PlainWriter<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            match self.0.writer().write(buf)? {
                0 if !buf.is_empty() => Err(io::ErrorKind::WouldBlock.into()),
                n => Ok(n),
            }
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Plaintext out: reads TLS records from the socket as needed.
    pub(crate) struct PlainReader<'a>(pub &'a mut TlsStream);

    impl Read for PlainReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let t = &mut *self.0;
            loop {
                match t.tls.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                let n = t.tls.read_tls(&mut ReadAdapter(&mut t.sock))?;
                if n == 0 {
                    return Ok(0);
                }
                if let Err(e) = t.tls.process_new_packets() {
                    // Send the alert rustls queued, then fail.
                    let _ = t.tls.write_tls(&mut t.sock);
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("tls: {e}"),
                    ));
                }
                if t.tls.wants_write() {
                    // Handshake messages to send: the caller's flush sends
                    // them, but try now so the handshake does not stall.
                    let _ = t.tls.write_tls(&mut t.sock);
                }
            }
        }
    }

    struct ReadAdapter<'a>(&'a mut TcpStream);

    impl Read for ReadAdapter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            read_retry(self.0, buf)
        }
    }

    mod danger {
        use rustls::client::danger::{
            HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
        };
        use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
        use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
        use rustls::{DigitallySignedStruct, SignatureScheme};

        /// Accepts every certificate (but still checks the handshake
        /// signatures). Used only when the user asks for it by name.
        #[derive(Debug)]
        pub struct NoVerification(CryptoProvider);

        impl NoVerification {
            pub fn new() -> Self {
                NoVerification(rustls::crypto::ring::default_provider())
            }
        }

        impl ServerCertVerifier for NoVerification {
            fn verify_server_cert(
                &self,
                _end_entity: &CertificateDer<'_>,
                _intermediates: &[CertificateDer<'_>],
                _server_name: &ServerName<'_>,
                _ocsp: &[u8],
                _now: UnixTime,
            ) -> Result<ServerCertVerified, rustls::Error> {
                Ok(ServerCertVerified::assertion())
            }

            fn verify_tls12_signature(
                &self,
                message: &[u8],
                cert: &CertificateDer<'_>,
                dss: &DigitallySignedStruct,
            ) -> Result<HandshakeSignatureValid, rustls::Error> {
                verify_tls12_signature(
                    message,
                    cert,
                    dss,
                    &self.0.signature_verification_algorithms,
                )
            }

            fn verify_tls13_signature(
                &self,
                message: &[u8],
                cert: &CertificateDer<'_>,
                dss: &DigitallySignedStruct,
            ) -> Result<HandshakeSignatureValid, rustls::Error> {
                verify_tls13_signature(
                    message,
                    cert,
                    dss,
                    &self.0.signature_verification_algorithms,
                )
            }

            fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
                self.0.signature_verification_algorithms.supported_schemes()
            }
        }
    }
}
