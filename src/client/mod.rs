//! The `Client`: a mio socket around the protocol state machine, promises,
//! callbacks, and the two ways to drive it (`wait` and `run_loop`).

mod addresses;
mod args;
mod construct;
mod deadlines;
mod driver;
mod operations;
mod options;
mod plain;
mod promise;
mod reactor;
mod recovery;
mod results;
mod transport;

pub use crate::recover::Recovery;
pub use addresses::{AddressOrder, ConnectedAddress};
pub use args::{Consume, Qos, Requeue, Unroutable};
pub use deadlines::Deadlines;
pub use options::{Options, WhenFull};
pub use promise::{Promise, PromiseId, RawResult, Resolve};
#[cfg(feature = "tls")]
pub use transport::{ServerVerification, TlsOptions};

use crate::codec::method::{
    ExchangeBind, ExchangeDeclare, ExchangeDelete, ExchangeUnbind, QueueBind, QueueDeclare,
    QueueDeclareOk, QueueDelete, QueuePurge, QueueUnbind,
};
use crate::codec::{BasicProperties, FieldTable, FieldValue, Method};
use crate::error::Error;
use crate::protocol::{
    self, AckTiming, Config, Confirms, Connection, Delivery, Event, Returned, Tag,
};
use crate::url::ConnectionParams;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};
use plain::{PlainSocket, Waited};
use promise::{Promises, Raw, Taken};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};
use transport::Transport;

/// Something that happened to the connection as a whole.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The broker stopped reading from this connection (`connection.blocked`),
    /// usually because of a memory or disk alarm; the reason it gave.
    Blocked(String),
    /// The broker resumed reading (`connection.unblocked`).
    Unblocked,
    /// A mandatory message came back unroutable while publisher confirms are
    /// off (with confirms on, the publish promise fails with `NoRoute`).
    Returned(Box<Returned>),
    /// The broker closed the publish channel with this error while no
    /// promise could report it (publishes without confirms had already
    /// resolved), e.g. after a publish to a missing exchange.
    PublishChannelClosed(Error),
    /// The connection ended; every pending promise has been failed with this.
    Closed(Error),
    /// The connection was lost and recovery ([`Options::recovery`]) takes
    /// over: pending operations failed with this error (publishes awaiting
    /// confirms with [`Error::OutcomeUnknown`]); consumers stay.
    Disconnected(Error),
    /// Reconnection attempt `attempt` starts (after its backoff).
    Reconnecting {
        /// 1 for the first attempt after a loss.
        attempt: u32,
    },
    /// The connection is open again (to `address`, `host:port`); the
    /// recorded topology is being restored.
    Reconnected {
        /// The broker address reached.
        address: String,
    },
    /// The recorded topology is back: every exchange, queue, binding,
    /// channel-wide qos and transaction mode was answered (what could not
    /// be restored came first as [`ConnectionEvent::RecoveryFailed`]) and
    /// every consumer's `basic.consume` was sent. Once per reconnection,
    /// after `Reconnected`: operations that need the topology can wait for
    /// it. A restore cut off by another loss or by your close reports
    /// neither this nor `RecoveryFailed` for what was in flight: after a
    /// loss `Disconnected` follows, and the next reconnection restores
    /// everything anew. One cut off by a broker's close that is not
    /// recovered ends with `Closed`, without this.
    Restored,
    /// Something recorded could not be restored; the broker's error. (A
    /// consumer that could not be restored ends with the error on its own
    /// promise instead.)
    RecoveryFailed {
        /// What it was, e.g. `queue "jobs"`.
        entity: String,
        /// Why.
        error: Error,
    },
    /// A server-named queue came back under a new name; its bindings and
    /// consumers follow it.
    QueueRenamed {
        /// The name before the loss.
        old: String,
        /// The name now.
        new: String,
    },
}

/// What the client knows of the bytes the socket holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// The last read took what there was (or none was needed).
    UpToDate,
    /// `on_read` stopped at its budget, or reading resumed after a pause:
    /// bytes may be left that no readiness event will announce.
    MoreToRead,
    /// Held deliveries reached [`Options::max_buffered_bytes`]: the socket
    /// is left unread (TCP holds the broker back) until half is taken.
    Paused,
}

/// Whether a write may be tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writing {
    /// The TCP connect is in progress: nothing is written until the socket
    /// reports writable and the connect turns out to have finished.
    Connecting,
    /// Try at the next flush.
    Ready,
    /// The last write stopped at `WouldBlock`: none is tried again until the
    /// socket reports writable (each try would be a failing syscall; with a
    /// full send buffer that was one per publish).
    Blocked,
}

impl Writing {
    /// The socket may take bytes again (a connect still in progress stays).
    fn unblock(&mut self) {
        if *self == Writing::Blocked {
            *self = Writing::Ready;
        }
    }
}

type ConnectionCallback = Box<dyn FnMut(&mut Client, ConnectionEvent)>;

/// The span of one connection's events: its name (`connection_name`) and
/// host, never its credentials.
#[cfg(feature = "tracing")]
fn connection_span(name: &str, host: &str) -> tracing::Span {
    tracing::info_span!(target: "puka", "amqp", connection = %name, host = %host)
}

const OWN_TOKEN: Token = Token(0);
/// Reads per `on_read` before yielding to the caller's loop.
const READ_BUDGET: usize = 64;
/// What `basic_publish` sends: no properties.
static NO_PROPERTIES: BasicProperties = BasicProperties::EMPTY;

/// Queued bytes at which a publish writes to the socket without blocking.
const WRITE_BATCH: usize = 64 * 1024;

/// An AMQP connection: one TCP socket, many hidden channels, and promises.
///
/// Every operation returns a [`Promise`] at once. Drive the connection by
/// blocking on one promise with [`Client::wait`], by running callbacks with
/// [`Client::run_loop`], or from your own reactor with [`Client::on_read`],
/// [`Client::on_write`] and [`Client::on_timer`].
///
/// # Which calls block
///
/// Only these, and only because you asked to wait: [`Client::wait`] and
/// its `_timeout`/`wait_for_*` kin, [`Client::run_loop`], [`Client::flush`]
/// (bounded by its timeout), `basic_publish*` when the client is full and
/// [`Options::when_full`] is [`WhenFull::Block`] (the default; bounded by
/// [`Options::blocked_timeout`] if set), and dropping an open client
/// (bounded by [`Options::drop_flush_timeout`]). Every other method returns
/// at once: operations only queue frames, and the reactor calls
/// (`on_read`, `on_write`, `on_timer`, `run_any_callbacks`) do the I/O the
/// socket is ready for and no more. Name resolution in [`Client::new`] uses
/// the system resolver and may block; give an IP address to avoid it.
///
/// ```no_run
/// use puka::Client;
///
/// let mut client = Client::new("amqp://guest:guest@127.0.0.1/")?;
/// let p = client.handshake();
/// client.wait(p)?;
/// let q = client.queue_declare(puka::QueueDeclare::named("hello"));
/// client.wait(q)?;
/// let p = client.basic_publish("", "hello", b"Hello world!");
/// client.wait(p)?;
/// let p = client.basic_get("hello");
/// if let Some(msg) = client.wait(p)? {
///     println!("got {:?}", msg.body_str());
///     client.basic_ack(&msg)?;
/// }
/// let p = client.close();
/// client.wait(p)?;
/// # Ok::<(), puka::Error>(())
/// ```
pub struct Client {
    conn: Connection,
    params: ConnectionParams,
    options: Options,
    sock: Option<Transport>,
    /// The last socket after the connection ended, kept so the file
    /// descriptor stays valid for `AsFd` (it is shut down).
    closed_sock: Option<TcpStream>,
    /// The interest [`Client::update_registration`] last set for the
    /// current socket (`None`: not registered by it, or since replaced).
    registered: Option<Interest>,
    addresses: addresses::Addresses,
    poll: Option<Poll>,
    events: Option<Events>,
    promises: Promises,
    connect_promise: Promise<()>,
    conn_events: VecDeque<ConnectionEvent>,
    conn_callback: Option<ConnectionCallback>,
    loop_break: bool,
    /// What is known of the socket's unread bytes.
    reading: Reading,
    /// Whether a write may be tried now.
    writing: Writing,
    /// Automatic recovery, when [`Options::recovery`] asks for it.
    recovery: Option<crate::recover::Recoverer>,
    /// The span every event of this connection is in (`amqp`, with the
    /// connection name and host).
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.params.to_string())
            .field("open", &self.conn.is_open())
            .field("closed", &self.conn.is_closed())
            .field("promises", &self.promises.len())
            .finish()
    }
}

impl Client {
    /// The connection parameters (`Display` hides the password); of the
    /// first address when there are several.
    pub fn params(&self) -> &ConnectionParams {
        &self.params
    }

    /// Whether the handshake finished and the connection is usable.
    pub fn is_open(&self) -> bool {
        self.conn.is_open()
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    /// Whether the broker has blocked publishing (`connection.blocked`).
    pub fn is_blocked(&self) -> bool {
        self.conn.is_blocked()
    }

    /// Whether publishes are confirmed by the broker.
    pub fn confirms_enabled(&self) -> bool {
        self.conn.confirms_enabled()
    }

    /// The broker's `server_properties` (empty before the handshake).
    pub fn server_properties(&self) -> &FieldTable {
        self.conn.server_properties()
    }

    /// The negotiated `frame_max`, `channel_max` and heartbeat.
    pub fn tuned(&self) -> protocol::negotiate::Tuned {
        self.conn.tuned()
    }

    /// Number of channels open or opening.
    pub fn channel_count(&self) -> usize {
        self.conn.open_channels()
    }

    /// Publishes sent and not yet confirmed by the broker.
    pub fn unconfirmed_count(&self) -> usize {
        self.conn.unconfirmed_count()
    }

    /// The connection's counters (bytes and frames each way, publishes,
    /// confirms, nacks, returns, deliveries, acks, rejects, times blocked)
    /// and gauges (channels, consumers, promises, unconfirmed publishes,
    /// queued bytes, blocked). Cheap: a copy of a few integers, and one pass
    /// over the channel table for the consumer count.
    ///
    /// ```no_run
    /// # let client = puka::Client::new("amqp://127.0.0.1/")?;
    /// let stats = client.stats();
    /// eprintln!("{} unconfirmed, {} bytes queued", stats.unconfirmed, stats.write_buffer);
    /// # Ok::<(), puka::Error>(())
    /// ```
    pub fn stats(&self) -> protocol::Stats {
        let mut s = self.conn.stats();
        s.promises = self.promises.len();
        s.reconnects = self.recovery.as_ref().map_or(0, |r| r.reconnects());
        s
    }

    /// Promises this client holds: operations in flight, results not yet
    /// taken, and publishes awaiting their outcome.
    pub fn promise_count(&self) -> usize {
        self.promises.len()
    }
}

impl AsRawFd for Client {
    fn as_raw_fd(&self) -> RawFd {
        self.sock
            .as_ref()
            .map(Transport::tcp)
            .or(self.closed_sock.as_ref())
            .map_or(-1, |s| s.as_raw_fd())
    }
}

impl AsFd for Client {
    /// The socket (after the connection ended: the shut-down socket).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock
            .as_ref()
            .map(Transport::tcp)
            .or(self.closed_sock.as_ref())
            .expect("a client always holds a socket: construction fails without one")
            .as_fd()
    }
}

impl mio::event::Source for Client {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.registered = None;
        match self.sock.as_mut().map(Transport::tcp_mut) {
            Some(s) => s.register(registry, token, interests),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.registered = None;
        match self.sock.as_mut().map(Transport::tcp_mut) {
            Some(s) => s.reregister(registry, token, interests),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.registered = None;
        match self.sock.as_mut().map(Transport::tcp_mut) {
            Some(s) => s.deregister(registry),
            // After the connection ended, the shut-down socket kept for
            // `AsFd` may still be registered: take it out too.
            None => match self.closed_sock.as_mut() {
                Some(s) => match s.deregister(registry) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    other => other,
                },
                None => Ok(()),
            },
        }
    }
}

/// Dropping an open client closes the connection without waiting for
/// operations in flight (as [`Client::close_now`]), blocking up to
/// [`Options::drop_flush_timeout`] for the broker's `close-ok`: everything
/// queued before it (publishes, acks) has then been taken by the broker —
/// a socket merely closed with unsent or unread bytes may be reset, and the
/// kernel then discards what it held. Publisher confirms still in flight
/// are never learnt and the broker requeues unacked deliveries: call
/// [`Client::close`] and wait on it to settle everything. With a zero
/// timeout, drop only writes what fits without blocking.
impl Drop for Client {
    fn drop(&mut self) {
        self.conn.release_acks();
        let timeout = self.options.drop_flush_timeout;
        if timeout.is_zero() || self.conn.is_closed() || self.sock.is_none() {
            // One last try without blocking, even if the previous write
            // would have blocked.
            self.writing.unblock();
            self.flush_queued();
            return;
        }
        let deadline = Instant::now() + timeout;
        let id = self.promises.create();
        self.conn.close_now(id.tag(), Instant::now(), timeout);
        while !self.conn.is_closed() && self.sock.is_some() {
            let now = Instant::now();
            if now >= deadline || self.turn(Some(deadline - now), true).is_err() {
                break;
            }
        }
    }
}
