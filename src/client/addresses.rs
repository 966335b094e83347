//! Several broker addresses: the order a connection attempt tries them in,
//! name resolution at each attempt, the per-address TCP connect timeout,
//! and the TLS server name of each.
//!
//! An attempt walks the addresses (shuffled, or in the order given); each
//! host is resolved when its turn comes, and each of its socket addresses
//! gets one non-blocking TCP connect bounded by [`Options::connect_timeout`].
//! The first connect that completes ends the walk: the AMQP handshake then
//! runs on it, bounded by the URL's `connection_timeout` counted from there.
//! A handshake that fails in a way another broker might not (the socket
//! closed or reset, bytes that are not AMQP, a handshake timeout, a
//! `connection.close` other than a refused login or vhost) moves on to the
//! next address of the walk, on a fresh protocol connection — the first
//! connect and a recovery's reconnection alike ([`Client::next_transport`]).
//! A refused login or vhost ends the attempt: it would be the same
//! everywhere. On the first connect, operations queued before the failed
//! handshake (never sent) go on to the next address with the connection
//! ([`crate::protocol::OnHandshakeFailure::Hold`]); on a reconnection they
//! fail, as everything pending at a loss does.

use super::{transport, Client, Options, PlainSocket, Reading, Transport, Writing, OWN_TOKEN};
use crate::error::Error;
use crate::protocol::{Connection, Tag};
use crate::rng::XorShift;
use crate::url::ConnectionParams;
use mio::net::TcpStream;
use mio::Interest;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// The order in which a connection attempt tries the broker addresses
/// ([`Options::address_order`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AddressOrder {
    /// A fresh random order at each attempt (the default), so that clients
    /// spread over the nodes of a cluster.
    #[default]
    Shuffled,
    /// The order given: the first address that accepts the TCP connection
    /// wins (a primary, then fall-backs).
    InOrder,
}

/// The broker address a client's TCP connection reached
/// ([`Client::connected_address`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectedAddress {
    /// Position of the address in the list the client was given, from 0
    /// (each host of a multi-host URL counts as one).
    pub index: usize,
    /// The host as given: a name or an IP address.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The socket address the host resolved to and the connection reached.
    pub socket_addr: SocketAddr,
}

/// One address to try: what differs between the addresses of a client.
#[derive(Debug)]
struct Endpoint {
    host: String,
    port: u16,
    /// The URL's `server_name_indication` (read only with TLS).
    #[cfg(feature = "tls")]
    server_name: Option<String>,
    /// TLS to this address, for an `amqps://` URL
    /// ([`Addresses::with_tls`]); plain TCP when `None`.
    #[cfg(feature = "tls")]
    tls: Option<transport::TlsTarget>,
}

impl Endpoint {
    /// `host:port`, with an IPv6 address in brackets.
    fn label(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// TLS to this address with `config`, for the URL's
    /// `server_name_indication`, else its host.
    ///
    /// # Errors
    /// [`Error::Config`] naming the server name when rustls refuses it.
    #[cfg(feature = "tls")]
    fn use_tls(&mut self, config: &transport::TlsConfig) -> Result<(), Error> {
        let (name, part) = match &self.server_name {
            Some(name) => (name, "server_name_indication"),
            None => (&self.host, "host"),
        };
        let Some(target) = transport::TlsTarget::new(config, name) else {
            return Err(Error::Config(format!(
                "tls: invalid server name {name:?} (the {part} of {}): neither a DNS \
                 name nor an IP address",
                self.label()
            )));
        };
        self.tls = Some(target);
        Ok(())
    }

    /// Puts TLS over a fresh socket when the address has it.
    ///
    /// # Errors
    /// When rustls cannot start the session ([`transport::TlsStream::new`]).
    fn wrap(&self, sock: TcpStream) -> Result<Transport, Error> {
        #[cfg(feature = "tls")]
        if let Some(target) = &self.tls {
            let t = transport::TlsStream::new(sock, target)?;
            return Ok(Transport::Tls(Box::new(t)));
        }
        Ok(Transport::Plain(PlainSocket::new(sock)))
    }
}

/// Why a TCP connect could not be started at one address.
#[derive(Debug)]
enum StartFailure {
    /// The socket could not be made, connected or registered: the walk
    /// moves on to the next address.
    Socket(io::Error),
    /// The TLS session could not be made: it would not be made for any
    /// other address either, so the walk ends with this error.
    Tls(Error),
}

impl From<io::Error> for StartFailure {
    fn from(e: io::Error) -> StartFailure {
        StartFailure::Socket(e)
    }
}

/// The addresses of a client and where the current attempt is in them.
#[derive(Debug)]
pub(super) struct Addresses {
    endpoints: Vec<Endpoint>,
    order: AddressOrder,
    rng: XorShift,
    /// Bound of one TCP connect.
    connect_timeout: Duration,
    /// Bound of the AMQP handshake, from the TCP connect.
    handshake_timeout: Duration,
    /// Endpoints this attempt has still to try, the next last.
    pending: Vec<usize>,
    /// The endpoint being tried, and its socket addresses still to try
    /// (the next last).
    current: Option<usize>,
    resolved: Vec<SocketAddr>,
    /// The socket address of the TCP connect in progress, and its deadline.
    trying: Option<(SocketAddr, Instant)>,
    connected: Option<ConnectedAddress>,
    /// What went wrong with each address tried in this attempt.
    failures: Vec<(String, io::Error)>,
}

impl Addresses {
    /// The addresses of `list`, which must agree on everything but host,
    /// port and server name (checked by the caller).
    pub(super) fn new(list: &[ConnectionParams], options: &Options) -> Addresses {
        let handshake_timeout = list[0]
            .connection_timeout
            .unwrap_or(Duration::from_secs(30));
        let mut a = Addresses {
            endpoints: list
                .iter()
                .map(|p| Endpoint {
                    host: p.host.clone(),
                    port: p.port,
                    #[cfg(feature = "tls")]
                    server_name: p.server_name.clone(),
                    #[cfg(feature = "tls")]
                    tls: None,
                })
                .collect(),
            order: options.address_order,
            rng: XorShift::seeded(),
            connect_timeout: options.connect_timeout.min(handshake_timeout),
            handshake_timeout,
            pending: Vec::new(),
            current: None,
            resolved: Vec::new(),
            trying: None,
            connected: None,
            failures: Vec::new(),
        };
        a.start_attempt();
        a
    }

    /// These addresses with TLS to every one, with `config` (an `amqps://`
    /// client): each address's server name is checked here, when the
    /// client is made, rather than at its first connect.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first server name rustls refuses.
    #[cfg(feature = "tls")]
    pub(super) fn with_tls(mut self, config: &transport::TlsConfig) -> Result<Addresses, Error> {
        for e in &mut self.endpoints {
            e.use_tls(config)?;
        }
        Ok(self)
    }

    /// Whether the walk in progress has addresses left to try.
    pub(super) fn has_pending(&self) -> bool {
        !self.pending.is_empty() || !self.resolved.is_empty()
    }

    /// Starts a new walk through the addresses.
    pub(super) fn start_attempt(&mut self) {
        self.pending = (0..self.endpoints.len()).rev().collect();
        if self.order == AddressOrder::Shuffled {
            self.rng.shuffle(&mut self.pending);
        }
        self.current = None;
        self.resolved.clear();
        self.trying = None;
        self.failures.clear();
    }

    /// Ends the walk in progress before its addresses are used up: the
    /// next connect starts a new one.
    fn end_attempt(&mut self) {
        self.pending.clear();
        self.current = None;
        self.resolved.clear();
        self.trying = None;
        self.failures.clear();
    }

    /// The next socket address to connect to, resolving the next host when
    /// the current one has none left; `None` when the walk is over.
    fn next(&mut self) -> Option<(usize, SocketAddr)> {
        loop {
            if let (Some(i), Some(addr)) = (self.current, self.resolved.pop()) {
                return Some((i, addr));
            }
            let i = self.pending.pop()?;
            self.current = Some(i);
            let e = &self.endpoints[i];
            match (e.host.as_str(), e.port).to_socket_addrs() {
                Ok(addrs) => {
                    self.resolved = addrs.collect();
                    if self.resolved.is_empty() {
                        let e =
                            io::Error::new(io::ErrorKind::NotFound, "host resolved to no address");
                        self.failures.push((self.endpoints[i].label(), e));
                    }
                    self.resolved.reverse();
                }
                Err(err) => self.failures.push((e.label(), err)),
            }
        }
    }

    /// Records why the connect in progress failed.
    fn failed(&mut self, e: io::Error) {
        let Some(i) = self.current else { return };
        let mut label = self.endpoints[i].label();
        if let Some((addr, _)) = self.trying.take() {
            if addr.to_string() != label {
                label = format!("{label} ({addr})");
            }
        }
        self.failures.push((label, e));
    }

    /// Records why the handshake on the connected address failed (`e`):
    /// the walk goes on, and the failure is part of its error if every
    /// address fails.
    pub(super) fn handshake_failed(&mut self, e: &Error) {
        let Some(a) = self.connected.take() else {
            return;
        };
        let label = self.endpoints[a.index].label();
        let kind = match e {
            Error::ConnectTimeout => io::ErrorKind::TimedOut,
            Error::ConnectionBroken(io) => io.kind(),
            _ => io::ErrorKind::Other,
        };
        self.failures
            .push((label, io::Error::new(kind, format!("handshake: {e}"))));
    }

    /// The error that ends an attempt where every address failed:
    /// [`Error::ConnectTimeout`] when every connect timed out, the one
    /// failure when there was one, else each address with its failure.
    fn exhausted(&mut self) -> Error {
        let failures = std::mem::take(&mut self.failures);
        if !failures.is_empty()
            && failures
                .iter()
                .all(|(_, e)| e.kind() == io::ErrorKind::TimedOut)
        {
            return Error::ConnectTimeout;
        }
        let mut failures = failures.into_iter();
        match (failures.next(), failures.len()) {
            (None, _) => Error::io(io::Error::new(
                io::ErrorKind::NotFound,
                "no broker address to connect to",
            )),
            (Some((_, e)), 0) => Error::io(e),
            (Some(first), _) => {
                let all: Vec<_> = std::iter::once(first).chain(failures).collect();
                let kind = all.last().map_or(io::ErrorKind::Other, |(_, e)| e.kind());
                let text: Vec<String> = all.iter().map(|(a, e)| format!("{a}: {e}")).collect();
                Error::io(io::Error::new(kind, text.join("; ")))
            }
        }
    }

    /// The deadline of the TCP connect in progress.
    pub(super) fn connect_deadline(&self) -> Option<Instant> {
        self.trying.map(|(_, d)| d)
    }
}

pub(super) use crate::recover::moves_on;

impl Client {
    /// Starts over on a fresh protocol connection (the same settings, the
    /// current secret) whose handshake completes `handshake`, with a TCP
    /// connect to the next address of the walk (a new walk when it is used
    /// up). The one path of the first connect moving on after a failed
    /// handshake and of a recovery's reconnection.
    pub(super) fn next_transport(&mut self, handshake: Tag, now: Instant) {
        let config = self.conn.config().clone();
        self.conn = Connection::new(config, handshake, now);
        self.connect_elsewhere();
    }

    /// A TCP connect to the next address of the walk (a new walk when it is
    /// used up) for the connection as it is (fresh, or restarting its
    /// handshake with the work queued before it).
    pub(super) fn connect_elsewhere(&mut self) {
        self.reading = Reading::UpToDate;
        if !self.addresses.has_pending() {
            self.addresses.start_attempt();
        }
        match self.connect_next() {
            // The shut-down socket of the last connection goes (a reactor's
            // registry forgets a closed descriptor by itself).
            Ok(()) => self.closed_sock = None,
            // No address took the connect: the attempt failed at once.
            Err(e) => self.conn.handle_connect_failure(e),
        }
    }

    /// Starts a non-blocking TCP connect to the next address of the
    /// attempt (the handshake timer waits meanwhile).
    ///
    /// # Errors
    /// When every address has failed: see [`Addresses::exhausted`]. When
    /// the TLS session cannot be made: that error, and the walk ends.
    pub(super) fn connect_next(&mut self) -> Result<(), Error> {
        in_span!(self);
        self.conn.set_handshake_deadline(None);
        while let Some((i, addr)) = self.addresses.next() {
            tr_info!(%addr, host = %self.addresses.endpoints[i].host, "connecting");
            self.addresses.trying = Some((addr, Instant::now() + self.addresses.connect_timeout));
            match self.start_connect(i, addr) {
                Ok(()) => return Ok(()),
                Err(StartFailure::Socket(e)) => self.addresses.failed(e),
                Err(StartFailure::Tls(e)) => {
                    self.addresses.end_attempt();
                    return Err(e);
                }
            }
        }
        Err(self.addresses.exhausted())
    }

    /// Starts a non-blocking TCP connect to `addr`, of endpoint `i`, with
    /// TLS over it when the endpoint has it.
    fn start_connect(&mut self, i: usize, addr: SocketAddr) -> Result<(), StartFailure> {
        let s = TcpStream::connect(addr)?;
        let _ = s.set_nodelay(true);
        let _ = transport::set_keepalive(&s);
        let sock = self.addresses.endpoints[i]
            .wrap(s)
            .map_err(StartFailure::Tls)?;
        if let Some(poll) = &self.poll {
            let fd = sock.tcp().as_raw_fd();
            poll.registry().register(
                &mut mio::unix::SourceFd(&fd),
                OWN_TOKEN,
                Interest::READABLE | Interest::WRITABLE,
            )?;
        }
        self.sock = Some(sock);
        self.registered = None;
        self.writing = Writing::Connecting;
        Ok(())
    }

    /// The TCP connect finished: the handshake timer starts.
    pub(super) fn tcp_connected(&mut self) {
        let now = Instant::now();
        let a = &mut self.addresses;
        if let (Some(i), Some((addr, _))) = (a.current, a.trying.take()) {
            let e = &a.endpoints[i];
            a.connected = Some(ConnectedAddress {
                index: i,
                host: e.host.clone(),
                port: e.port,
                socket_addr: addr,
            });
        }
        let deadline = now + self.addresses.handshake_timeout;
        self.conn.set_handshake_deadline(Some(deadline));
        tr_debug!("tcp connected");
    }

    /// The TCP connect failed (`e`): tries the next address, or ends the
    /// connection when none is left.
    pub(super) fn tcp_failed(&mut self, e: io::Error) {
        tr_warn!(error = %e, "tcp connect failed");
        self.drop_socket();
        self.addresses.failed(e);
        if let Err(e) = self.connect_next() {
            self.conn.handle_connect_failure(e);
        }
        self.after_io();
    }

    /// Fires the per-address connect timeout: a connect still pending at
    /// its deadline moves on to the next address.
    pub(super) fn handle_connect_timeout(&mut self, now: Instant) {
        let due = |c: &Client| {
            c.writing == Writing::Connecting
                && c.addresses.connect_deadline().is_some_and(|d| now >= d)
        };
        if !due(self) {
            return;
        }
        // A connect that finished (or failed) since the last event.
        self.check_connected();
        if due(self) {
            let limit = self.addresses.connect_timeout;
            self.tcp_failed(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("tcp connect timed out after {limit:?}"),
            ));
        }
    }

    /// The broker address the TCP connection reached (`None` before it
    /// did): which of several addresses the client is connected to.
    pub fn connected_address(&self) -> Option<&ConnectedAddress> {
        self.addresses.connected.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_permutation_and_varies() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let mut v: Vec<u8> = (0..4).collect();
            XorShift::seeded().shuffle(&mut v);
            let mut sorted = v.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2, 3]);
            seen.insert(v);
        }
        // 24 orders; 200 draws see nearly all of them.
        assert!(seen.len() >= 20, "{} orders seen", seen.len());
    }

    fn addresses(urls: &[&str], order: AddressOrder) -> Addresses {
        let list: Vec<ConnectionParams> = urls.iter().map(|u| u.parse().unwrap()).collect();
        let options = Options {
            address_order: order,
            ..Options::default()
        };
        Addresses::new(&list, &options)
    }

    #[test]
    fn in_order_walks_hosts_and_their_addresses() {
        let mut a = addresses(
            &["amqp://127.0.0.1:1", "amqp://[::1]:2", "amqp://127.0.0.2:3"],
            AddressOrder::InOrder,
        );
        let got: Vec<(usize, u16)> = std::iter::from_fn(|| a.next())
            .map(|(i, s)| (i, s.port()))
            .collect();
        assert_eq!(got, [(0, 1), (1, 2), (2, 3)]);
        a.start_attempt();
        assert_eq!(a.next().map(|(i, _)| i), Some(0));
    }

    #[test]
    fn failures_name_each_address() {
        let mut a = addresses(
            &["amqp://127.0.0.1:1", "amqp://[::1]:2"],
            AddressOrder::InOrder,
        );
        while a.next().is_some() {
            a.failed(io::Error::new(io::ErrorKind::ConnectionRefused, "refused"));
        }
        let Error::ConnectionBroken(e) = a.exhausted() else {
            panic!("not ConnectionBroken")
        };
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(e.to_string(), "127.0.0.1:1: refused; [::1]:2: refused");
        // Every connect timing out is a ConnectTimeout.
        a.start_attempt();
        while a.next().is_some() {
            a.failed(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
        }
        assert!(matches!(a.exhausted(), Error::ConnectTimeout));
    }

    #[test]
    fn connect_timeout_is_capped_by_the_handshake_timeout() {
        let a = addresses(&["amqp://h?connection_timeout=700"], AddressOrder::InOrder);
        assert_eq!(a.connect_timeout, Duration::from_millis(700));
        let a = addresses(&["amqp://h"], AddressOrder::InOrder);
        assert_eq!(a.connect_timeout, Duration::from_secs(5));
        assert_eq!(a.handshake_timeout, Duration::from_secs(30));
    }
}
