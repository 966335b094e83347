//! The byte pipe under the protocol: a plain TCP socket, or (feature `tls`)
//! rustls over one. Either way it is non-blocking and driven by the
//! client's `on_read`/`on_write`, the TLS handshake included.

use super::plain::PlainSocket;
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
pub use tls::{ServerVerification, TlsOptions};
#[cfg(feature = "tls")]
pub(crate) use tls::{TlsConfig, TlsStream, TlsTarget};

/// A connected (or connecting) socket.
#[derive(Debug)]
pub(crate) enum Transport {
    Plain(PlainSocket),
    #[cfg(feature = "tls")]
    Tls(Box<tls::TlsStream>),
}

impl Transport {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => &s.sock,
            #[cfg(feature = "tls")]
            Transport::Tls(t) => &t.sock,
        }
    }

    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(s) => &mut s.sock,
            #[cfg(feature = "tls")]
            Transport::Tls(t) => &mut t.sock,
        }
    }

    pub fn into_tcp(self) -> TcpStream {
        match self {
            Transport::Plain(s) => s.sock,
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
            Transport::Plain(s) => s.read_into(conn),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => Ok((conn.read_from(&mut tls::PlainReader(t))?, false)),
        }
    }

    /// Writes the connection's queued frames until the socket would block.
    pub fn write_from(&mut self, conn: &mut Connection) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.write_from(conn),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.write_from(conn),
        }
    }

    /// The TCP connect finished.
    pub fn handle_connected(&mut self) {
        match self {
            Transport::Plain(s) => s.handle_connected(),
            #[cfg(feature = "tls")]
            Transport::Tls(_) => {}
        }
    }

    /// The plain socket, when a wait of `timeout` may sleep in its `recv`
    /// ([`PlainSocket::recv_waiting`]); TLS waits in `epoll_wait`.
    pub fn recv_waiter(&mut self, timeout: Option<Duration>) -> Option<&mut PlainSocket> {
        match self {
            Transport::Plain(s) if s.wants_recv_wait(timeout) => Some(s),
            _ => None,
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
    use crate::error::{Error, TlsError, TlsErrorKind};
    use crate::protocol::Connection;
    use mio::net::TcpStream;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, RootCertStore};
    use std::io::{self, Read, Write};
    use std::path::PathBuf;
    use std::sync::Arc;

    /// How the client decides whether to trust the server's certificate
    /// ([`TlsOptions::verification`]).
    ///
    /// Every variant but [`DangerousSkip`](Self::DangerousSkip) checks the
    /// certificate chain, its validity dates and its purpose, and that it
    /// names the host (or the `server_name_indication` of the URL).
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    #[non_exhaustive]
    pub enum ServerVerification {
        /// Against the webpki roots: Mozilla's CA list, built into puka (the
        /// `webpki-roots` crate), the same on every machine. The default.
        #[default]
        Webpki,
        /// Against the operating system's trust store and policy, through
        /// the `rustls-platform-verifier` crate (feature
        /// `tls-platform-verifier`): on Linux the system's CA bundle, or
        /// only the certificates of `SSL_CERT_FILE` / `SSL_CERT_DIR` when
        /// either variable is set; Security.framework on Apple systems;
        /// the Windows certificate store; Android's trust manager (which
        /// the app must initialise, see that crate). On Linux the store is
        /// read when the client is made ([`crate::Client::with_options`]);
        /// finding no certificate there at all is an [`Error::Config`].
        #[cfg(feature = "tls-platform-verifier")]
        Platform,
        /// Against the CA certificates in this PEM file only (neither the
        /// webpki roots nor the system's): for a broker whose certificate
        /// comes from a private CA.
        CaFile(PathBuf),
        /// No verification at all: any certificate, for any name, is
        /// accepted (the handshake signatures are still checked). Only for
        /// tests against a throwaway broker: the connection is open to
        /// interception.
        DangerousSkip,
    }

    /// TLS settings for `amqps://` URLs.
    ///
    /// Certificate and host name verification are on by default, against the
    /// webpki (Mozilla) roots; [`ServerVerification`] lists the other
    /// choices. The process-wide rustls
    /// [`CryptoProvider`](rustls::crypto::CryptoProvider) is used when the
    /// program installed one, else *ring*. Set with builder methods (the
    /// struct is `#[non_exhaustive]`):
    ///
    /// ```
    /// use puka::{Options, ServerVerification, TlsOptions};
    /// let tls = TlsOptions::default()
    ///     .ca_file("/etc/rabbitmq/ca.pem")
    ///     .client_cert("client.pem", "client-key.pem");
    /// assert_eq!(
    ///     tls.verification,
    ///     ServerVerification::CaFile("/etc/rabbitmq/ca.pem".into())
    /// );
    /// let options = Options::default().tls(tls);
    /// # let _ = options;
    /// ```
    ///
    /// With the `tls-platform-verifier` feature, the operating system's
    /// trust store instead:
    ///
    /// ```
    /// # #[cfg(feature = "tls-platform-verifier")] {
    /// use puka::{Options, TlsOptions};
    /// let options = Options::default().tls(TlsOptions::default().platform_verifier());
    /// # let _ = options;
    /// # }
    /// ```
    #[derive(Clone, Default)]
    #[non_exhaustive]
    pub struct TlsOptions {
        /// How the server's certificate is verified.
        pub verification: ServerVerification,
        /// PEM file of the client certificate chain (for mutual TLS and the
        /// EXTERNAL mechanism).
        pub client_cert_file: Option<PathBuf>,
        /// PEM file of the client certificate's private key.
        pub client_key_file: Option<PathBuf>,
        /// A complete rustls configuration, overriding all the fields
        /// above: an escape hatch outside semver (it exposes rustls's
        /// types), so only with the `unstable` feature.
        #[cfg(feature = "unstable")]
        pub config: Option<Arc<ClientConfig>>,
    }

    impl TlsOptions {
        /// Verifies the server's certificate as `verification` says.
        #[must_use]
        pub fn verification(mut self, verification: ServerVerification) -> Self {
            self.verification = verification;
            self
        }

        /// Trusts only the CA certificates in this PEM file (instead of the
        /// webpki roots): [`ServerVerification::CaFile`].
        #[must_use]
        pub fn ca_file(self, path: impl Into<PathBuf>) -> Self {
            self.verification(ServerVerification::CaFile(path.into()))
        }

        /// Trusts what the operating system trusts:
        /// [`ServerVerification::Platform`].
        #[cfg(feature = "tls-platform-verifier")]
        #[must_use]
        pub fn platform_verifier(self) -> Self {
            self.verification(ServerVerification::Platform)
        }

        /// Presents this client certificate chain and its private key (PEM
        /// files), for mutual TLS and the EXTERNAL mechanism.
        #[must_use]
        pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
            self.client_cert_file = Some(cert.into());
            self.client_key_file = Some(key.into());
            self
        }

        /// Accepts any server certificate and host name
        /// ([`ServerVerification::DangerousSkip`]): only for tests against
        /// a throwaway broker.
        #[must_use]
        pub fn dangerous_skip_verification(self) -> Self {
            self.verification(ServerVerification::DangerousSkip)
        }
    }

    impl std::fmt::Debug for TlsOptions {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let mut d = f.debug_struct("TlsOptions");
            d.field("verification", &self.verification)
                .field("client_cert_file", &self.client_cert_file)
                .field(
                    "client_key_file",
                    &self.client_key_file.as_ref().map(|_| "***"),
                );
            #[cfg(feature = "unstable")]
            d.field("config", &self.config.as_ref().map(|_| "ClientConfig"));
            d.finish()
        }
    }

    fn bad(msg: String) -> Error {
        Error::Config(msg)
    }

    /// A rustls configuration and what to tell the user when the server's
    /// certificate does not pass it.
    #[derive(Debug, Clone)]
    pub(crate) struct TlsConfig {
        config: Arc<ClientConfig>,
        /// Which certificates were trusted, and what to do about it: the
        /// tail of a certificate error's message.
        advice: &'static str,
    }

    impl ServerVerification {
        /// The tail of the message of a certificate this verification
        /// refused.
        fn advice(&self) -> &'static str {
            match self {
                ServerVerification::Webpki => {
                    "checked against the webpki (Mozilla) roots, the default: for a broker \
                     whose certificate comes from a private CA, trust that CA with \
                     TlsOptions::ca_file or the platform verifier"
                }
                #[cfg(feature = "tls-platform-verifier")]
                ServerVerification::Platform => {
                    "checked by the platform verifier (the operating system's trust store; \
                     on Linux SSL_CERT_FILE or SSL_CERT_DIR when set): add the broker's CA \
                     there, or trust it with TlsOptions::ca_file"
                }
                ServerVerification::CaFile(_) => {
                    "checked against TlsOptions::ca_file only: that file must hold the CA \
                     that issued the broker's certificate"
                }
                ServerVerification::DangerousSkip => "verification was off",
            }
        }
    }

    impl TlsOptions {
        /// Builds the rustls configuration these options describe.
        pub(crate) fn client_config(&self) -> Result<TlsConfig, Error> {
            #[cfg(feature = "unstable")]
            if let Some(c) = &self.config {
                return Ok(TlsConfig {
                    config: c.clone(),
                    advice: "checked by the rustls configuration of TlsOptions::config",
                });
            }
            // The process-wide provider when the program installed one,
            // else ring (the one puka is built with). Every verifier below
            // gets this same provider.
            let provider = rustls::crypto::CryptoProvider::get_default()
                .cloned()
                .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
            let builder = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| bad(format!("tls: {e}")))?;
            let builder = match &self.verification {
                ServerVerification::Webpki => {
                    let mut roots = RootCertStore::empty();
                    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                    builder.with_root_certificates(roots)
                }
                #[cfg(feature = "tls-platform-verifier")]
                ServerVerification::Platform => {
                    let verifier =
                        rustls_platform_verifier::Verifier::new(provider).map_err(|e| {
                            bad(format!(
                                "tls: platform verifier: {e} (on Linux it reads \
                                 SSL_CERT_FILE or SSL_CERT_DIR when set, else the \
                                 system's CA bundle)"
                            ))
                        })?;
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(verifier))
                }
                ServerVerification::CaFile(path) => {
                    let mut roots = RootCertStore::empty();
                    for cert in CertificateDer::pem_file_iter(path)
                        .map_err(|e| bad(format!("tls: reading CA file: {e}")))?
                    {
                        let cert = cert.map_err(|e| bad(format!("tls: parsing CA file: {e}")))?;
                        roots
                            .add(cert)
                            .map_err(|e| bad(format!("tls: CA certificate: {e}")))?;
                    }
                    if roots.is_empty() {
                        return Err(bad(format!(
                            "tls: no certificate in the CA file {}",
                            path.display()
                        )));
                    }
                    builder.with_root_certificates(roots)
                }
                ServerVerification::DangerousSkip => builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(danger::NoVerification(provider))),
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
            Ok(TlsConfig {
                config: Arc::new(config),
                advice: self.verification.advice(),
            })
        }
    }

    /// The typed error for a failed TLS handshake or record: what the
    /// protocol layer sees is an `io::Error` carrying it, which
    /// [`Error::io`] turns back into [`Error::Tls`].
    fn tls_failure(e: rustls::Error, advice: &str) -> io::Error {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        let (kind, message) = match &e {
            rustls::Error::InvalidCertificate(NotValidForName | NotValidForNameContext { .. }) => (
                TlsErrorKind::ServerCertificate,
                format!(
                    "the server's certificate was refused: {e}; connect by a name the \
                     certificate has, or set the URL's server_name_indication to one"
                ),
            ),
            rustls::Error::InvalidCertificate(_) => (
                TlsErrorKind::ServerCertificate,
                format!("the server's certificate was refused: {e}; {advice}"),
            ),
            rustls::Error::AlertReceived(_) => (
                TlsErrorKind::RefusedByPeer,
                format!(
                    "the server refused the handshake: {e} (a client certificate it does \
                     not trust, or no protocol version or cipher in common?)"
                ),
            ),
            _ => (TlsErrorKind::Protocol, e.to_string()),
        };
        io::Error::new(io::ErrorKind::InvalidData, TlsError { kind, message })
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
        /// From [`TlsConfig`]: for the message of a refused certificate.
        advice: &'static str,
    }

    /// Where the TLS sessions to one broker address go: the configuration,
    /// and the server name they send (SNI) and verify the certificate
    /// against, checked when the client is made.
    #[derive(Debug, Clone)]
    pub(crate) struct TlsTarget {
        config: TlsConfig,
        name: ServerName<'static>,
    }

    impl TlsTarget {
        /// `config` for the server `name` (the URL's
        /// `server_name_indication`, else its host); `None` when rustls
        /// refuses `name` as a server name, being neither a DNS name nor an
        /// IP address (the caller says which part of which URL it is).
        pub fn new(config: &TlsConfig, name: &str) -> Option<TlsTarget> {
            let name = ServerName::try_from(name.to_owned()).ok()?;
            Some(TlsTarget {
                config: config.clone(),
                name,
            })
        }
    }

    impl TlsStream {
        /// A TLS session to `target` over the fresh socket `sock`, its
        /// ClientHello queued.
        ///
        /// # Errors
        /// [`Error::Config`] when rustls cannot start the session with this
        /// configuration (the name was checked when the client was made;
        /// what is left is the crypto provider failing, e.g. at key share
        /// generation or random numbers).
        pub fn new(sock: TcpStream, target: &TlsTarget) -> Result<Self, Error> {
            let tls = ClientConnection::new(target.config.config.clone(), target.name.clone())
                .map_err(|e| bad(format!("tls: cannot start a session: {e}")))?;
            Ok(TlsStream {
                sock,
                tls,
                advice: target.config.advice,
            })
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
                    return Err(tls_failure(e, t.advice));
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

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn verification_defaults_to_the_webpki_roots() {
            let o = TlsOptions::default();
            assert_eq!(o.verification, ServerVerification::Webpki);
            assert_eq!(ServerVerification::default(), ServerVerification::Webpki);
            assert!(o.client_config().is_ok());
        }

        #[test]
        fn builders_set_the_verification() {
            let o = TlsOptions::default().ca_file("/ca.pem");
            assert_eq!(
                o.verification,
                ServerVerification::CaFile(PathBuf::from("/ca.pem"))
            );
            let o = o.dangerous_skip_verification();
            assert_eq!(o.verification, ServerVerification::DangerousSkip);
            #[cfg(feature = "tls-platform-verifier")]
            assert_eq!(
                o.platform_verifier().verification,
                ServerVerification::Platform
            );
        }

        #[test]
        fn debug_hides_the_key_path() {
            let o = TlsOptions::default()
                .ca_file("/etc/ca.pem")
                .client_cert("/etc/client.pem", "/secret/dir/client-key.pem");
            let s = format!("{o:?}");
            assert!(!s.contains("secret"), "{s}");
            assert!(!s.contains("client-key"), "{s}");
            assert!(s.contains("***"), "{s}");
            assert!(s.contains("CaFile(\"/etc/ca.pem\")"), "{s}");
            assert!(s.contains("/etc/client.pem"), "{s}");
        }

        #[test]
        fn a_missing_or_empty_ca_file_is_a_config_error() {
            let o = TlsOptions::default().ca_file("/nonexistent/puka-ca.pem");
            assert!(matches!(o.client_config(), Err(Error::Config(_))));
            let empty =
                std::env::temp_dir().join(format!("puka-empty-ca-{}.pem", std::process::id()));
            std::fs::write(&empty, "").unwrap();
            let r = TlsOptions::default().ca_file(&empty).client_config();
            let _ = std::fs::remove_file(&empty);
            match r {
                Err(Error::Config(m)) => assert!(m.contains("no certificate"), "{m}"),
                other => panic!("{other:?}"),
            }
        }

        #[test]
        fn a_refused_certificate_becomes_a_typed_error_with_advice() {
            let cert = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
            let e = Error::io(tls_failure(cert, ServerVerification::Webpki.advice()));
            let Error::Tls(t) = &e else { panic!("{e:?}") };
            assert_eq!(t.kind, TlsErrorKind::ServerCertificate);
            assert!(e.is_connection_error());
            assert_eq!(e.category(), crate::ErrorCategory::Config);
            let msg = e.to_string();
            assert!(msg.starts_with("tls: "), "{msg}");
            assert!(msg.contains("UnknownIssuer"), "{msg}");
            assert!(msg.contains("ca_file"), "{msg}");
            let other = Error::io(tls_failure(rustls::Error::General("x".into()), "unused"));
            assert!(matches!(&other, Error::Tls(t) if t.kind == TlsErrorKind::Protocol));
            assert_eq!(other.category(), crate::ErrorCategory::ConnectionLost);
        }
    }

    mod danger {
        use rustls::client::danger::{
            HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
        };
        use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
        use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
        use rustls::{DigitallySignedStruct, SignatureScheme};
        use std::sync::Arc;

        /// Accepts every certificate (but still checks the handshake
        /// signatures). Used only when the user asks for it by name.
        /// Its provider is the connection's, for the signature algorithms.
        #[derive(Debug)]
        pub struct NoVerification(pub Arc<CryptoProvider>);

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
