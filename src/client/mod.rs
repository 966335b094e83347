//! The `Client`: a mio socket around the protocol state machine, promises,
//! callbacks, and the two ways to drive it (`wait` and `run_loop`).

mod addresses;
mod args;
mod promise;
mod transport;

pub use addresses::{AddressOrder, ConnectedAddress};
pub use args::Consume;
pub use promise::{Promise, PromiseId, RawResult, Resolve};
#[cfg(feature = "tls")]
pub use transport::TlsOptions;

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
}

/// What the broker does with a published message no queue takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unroutable {
    /// Drop it silently (the default of AMQP).
    #[default]
    Drop,
    /// Send it back (`mandatory`): the publish fails with
    /// [`Error::NoRoute`] under publisher confirms, or the message comes as
    /// [`ConnectionEvent::Returned`] without them.
    Return,
}

/// Whether a rejected or recovered message goes back to its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// Back to the queue, to be delivered again (flagged `redelivered`).
    Yes,
    /// Not back: dropped, or dead-lettered when the queue has a
    /// dead-letter exchange.
    No,
}

/// A `basic.qos` prefetch window: [`Client::basic_qos`].
///
/// ```
/// use puka::Qos;
/// let q = Qos::prefetch(100).size(1 << 20).global();
/// # let _ = q;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[must_use]
pub struct Qos {
    prefetch_count: u16,
    prefetch_size: u32,
    global: bool,
}

impl Qos {
    /// At most `count` unacknowledged messages in flight (0: no limit).
    pub fn prefetch(count: u16) -> Self {
        Qos {
            prefetch_count: count,
            ..Qos::default()
        }
    }

    /// At most `bytes` of unacknowledged bodies in flight (RabbitMQ does not
    /// implement it and refuses a non-zero value).
    pub fn size(mut self, bytes: u32) -> Self {
        self.prefetch_size = bytes;
        self
    }

    /// The limit is the channel's, shared by all its consumers (RabbitMQ's
    /// reading of `global`), rather than each new consumer's.
    pub fn global(mut self) -> Self {
        self.global = true;
        self
    }
}

/// What a publish does when the client is full (queued bytes over
/// [`Options::write_high_water`], or [`Options::max_unconfirmed`] publishes
/// awaiting their confirms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhenFull {
    /// Block: drive the connection (write, read, fire timers; no callbacks
    /// run) until there is room again — half the high-water mark, or one
    /// confirm. While the broker blocks the connection this waits until it
    /// unblocks, or [`Options::blocked_timeout`] ends the connection. For
    /// scripts; never inside someone else's event loop.
    #[default]
    Block,
    /// Never block: the publish fails at once with [`Error::WouldBlock`]
    /// and nothing is queued. Retry once [`Client::can_publish`] is true:
    /// after `on_write` drained the socket, or confirms arrived (`on_read`).
    Refuse,
}

/// Options beyond what the URL says.
#[derive(Debug, Clone)]
pub struct Options {
    /// Entries added to the `client_properties` the broker shows (e.g.
    /// `connection_name`).
    pub client_properties: FieldTable,
    /// Publisher confirms: on when the broker supports them (default), or
    /// forced on or off.
    pub confirms: Confirms,
    /// Largest incoming message body accepted (default 64 MiB).
    pub max_message_size: u64,
    /// Bytes of queued outgoing frames above which a publish meets
    /// backpressure (default 4 MiB): see [`Options::when_full`].
    pub write_high_water: usize,
    /// Publishes sent and not yet confirmed above which a publish meets
    /// backpressure (`None`, the default: no limit but `write_high_water`).
    pub max_unconfirmed: Option<usize>,
    /// What a publish does at `write_high_water` or `max_unconfirmed`:
    /// [`WhenFull::Block`] (the default, for scripts) drives the connection
    /// until there is room; [`WhenFull::Refuse`] (for a reactor: never
    /// blocks) fails it with [`Error::WouldBlock`] at once.
    pub when_full: WhenFull,
    /// The longest the broker may keep the connection blocked
    /// (`connection.blocked`: a memory or disk alarm) before the client
    /// drops it with [`Error::BlockedTimeout`], failing every pending
    /// promise (default `None`: wait as long as the broker does).
    pub blocked_timeout: Option<Duration>,
    /// How long [`Client::close`] waits for the operations in flight and
    /// then the broker's `close-ok` (default 5 s); what is unsettled when it
    /// passes fails with [`Error::OutcomeUnknown`].
    pub close_timeout: Duration,
    /// When a consumer's acks are handed to the socket (default
    /// [`AckTiming::Prompt`]: by the end of the next call into the client).
    pub ack_timing: AckTiming,
    /// Bytes of received messages the client holds for promises that have
    /// not taken them (deliveries waiting for `wait` or a callback; default
    /// 64 MiB). Above it the client stops reading from the socket, so the
    /// broker is held back by TCP instead of the client growing without
    /// bound (a broker that ignores prefetch, or a consumer without
    /// prefetch nobody takes from). Reading resumes once half is taken.
    /// While reading is stopped, replies to other operations wait too.
    pub max_buffered_bytes: usize,
    /// How long dropping the client may block to hand queued frames
    /// (publishes, acks) to the socket (default 1 s; zero: only what fits
    /// without blocking). Drop never waits for publisher confirms: use
    /// [`Client::close`] to learn the outcome of every publish.
    pub drop_flush_timeout: Duration,
    /// The longest one TCP connect may take before the next broker address
    /// is tried (default 5 s; never longer than the URL's
    /// `connection_timeout`), so that a node that drops packets does not
    /// use up the handshake's time. See [`Client::with_addresses`].
    pub connect_timeout: Duration,
    /// The order in which a connection attempt tries several broker
    /// addresses (default [`AddressOrder::Shuffled`]).
    pub address_order: AddressOrder,
    /// TLS settings for `amqps://` URLs.
    #[cfg(feature = "tls")]
    pub tls: TlsOptions,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            client_properties: FieldTable::new(),
            confirms: Confirms::Auto,
            max_message_size: protocol::DEFAULT_MAX_MESSAGE_SIZE,
            write_high_water: 4 << 20,
            max_unconfirmed: None,
            when_full: WhenFull::Block,
            blocked_timeout: None,
            close_timeout: Duration::from_secs(5),
            ack_timing: AckTiming::Prompt,
            max_buffered_bytes: 64 << 20,
            drop_flush_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            address_order: AddressOrder::Shuffled,
            #[cfg(feature = "tls")]
            tls: TlsOptions::default(),
        }
    }
}

impl Options {
    /// Sets the name the broker shows for this connection.
    pub fn connection_name(mut self, name: &str) -> Self {
        self.client_properties
            .insert("connection_name", FieldValue::from(name));
        self
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
    connecting: bool,
    addresses: addresses::Addresses,
    poll: Option<Poll>,
    events: Option<Events>,
    promises: Promises,
    connect_promise: Promise<()>,
    conn_events: VecDeque<ConnectionEvent>,
    conn_callback: Option<ConnectionCallback>,
    loop_break: bool,
    more_to_read: bool,
    /// The last write stopped at `WouldBlock`: no write is tried again until
    /// the socket reports writable (each try would be a failing syscall;
    /// with a full send buffer that was one per publish).
    write_blocked: bool,
    /// Reading stopped because held deliveries reached
    /// [`Options::max_buffered_bytes`].
    read_paused: bool,
    /// The span every event of this connection is in (`amqp`, with the
    /// connection name and host).
    #[cfg(feature = "tracing")]
    span: tracing::Span,
    #[cfg(feature = "tls")]
    tls_config: Option<std::sync::Arc<rustls::ClientConfig>>,
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
    /// Parses `url` (`amqp://user:pass@host:port/vhost?heartbeat=..`) and
    /// starts connecting, without blocking on the TCP connect.
    ///
    /// Name resolution uses the system resolver and may block; give an IP
    /// address to avoid it. A URL may name several brokers
    /// (`amqp://user:pass@h1:5672,h2:5673/vhost`): see
    /// [`Client::with_addresses`].
    ///
    /// # Errors
    /// [`Error::Url`] for a bad URL; [`Error::ConnectionBroken`] when the
    /// host does not resolve or no socket can be made.
    pub fn new(url: &str) -> Result<Client, Error> {
        Client::with_options(url, Options::default())
    }

    /// As [`Client::new`], with [`Options`].
    ///
    /// # Errors
    /// As [`Client::new`].
    pub fn with_options(url: &str, options: Options) -> Result<Client, Error> {
        Client::from_params_list(ConnectionParams::parse_hosts(url)?, options)
    }

    /// Connects with parsed [`ConnectionParams`].
    ///
    /// # Errors
    /// As [`Client::new`].
    pub fn from_params(params: ConnectionParams, options: Options) -> Result<Client, Error> {
        Client::from_params_list(vec![params], options)
    }

    /// Connects to whichever of several brokers (the nodes of a cluster)
    /// answers: each URL names one broker, or several
    /// (`amqp://u:p@h1,h2:5673/vhost`).
    ///
    /// The URLs must agree on everything but host, port and
    /// `server_name_indication` (user, password, vhost, scheme, query
    /// parameters); each host gets its own TLS server name. The attempt
    /// tries the addresses in [`Options::address_order`] (shuffled by
    /// default), resolving each host when its turn comes and giving each
    /// TCP connect [`Options::connect_timeout`]; the first to connect gets
    /// the AMQP handshake, bounded by the URL's `connection_timeout` (30 s
    /// by default). [`Client::connected_address`] tells which it was.
    ///
    /// ```no_run
    /// use puka::{AddressOrder, Client, Options};
    ///
    /// let options = Options {
    ///     address_order: AddressOrder::InOrder,
    ///     ..Options::default()
    /// };
    /// let mut client = Client::with_addresses(
    ///     &["amqp://app:pw@rabbit1/%2f", "amqp://app:pw@rabbit2:5673/%2f"],
    ///     options,
    /// )?;
    /// let p = client.handshake();
    /// client.wait(p)?;
    /// println!("connected to {:?}", client.connected_address());
    /// # Ok::<(), puka::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Url`] for a bad URL, no URL
    /// ([`UrlError::NoAddress`](crate::url::UrlError::NoAddress)) or URLs
    /// that disagree
    /// ([`UrlError::InconsistentAddresses`](crate::url::UrlError::InconsistentAddresses)).
    /// When no TCP connect can even be started: [`Error::ConnectionBroken`]
    /// naming each address and its failure. Failures found later fail the
    /// [`Client::connect`] promise the same way, or with
    /// [`Error::ConnectTimeout`] when every connect timed out.
    pub fn with_addresses<S: AsRef<str>>(urls: &[S], options: Options) -> Result<Client, Error> {
        let mut list = Vec::new();
        for url in urls {
            list.extend(ConnectionParams::parse_hosts(url.as_ref())?);
        }
        Client::from_params_list(list, options)
    }

    /// As [`Client::with_addresses`], with parsed [`ConnectionParams`]:
    /// [`Client::params`] is the first.
    ///
    /// # Errors
    /// As [`Client::with_addresses`].
    pub fn from_params_list(
        mut list: Vec<ConnectionParams>,
        options: Options,
    ) -> Result<Client, Error> {
        if list.is_empty() {
            return Err(crate::url::UrlError::NoAddress.into());
        }
        if let Some(i) = list.iter().position(|p| !p.same_but_address(&list[0])) {
            return Err(crate::url::UrlError::InconsistentAddresses(i).into());
        }
        let addresses = addresses::Addresses::new(&list, &options);
        let params = list.swap_remove(0);
        #[cfg(not(feature = "tls"))]
        if params.tls {
            return Err(Error::Config("amqps:// needs puka's `tls` feature".into()));
        }
        #[cfg(feature = "tls")]
        let tls_config = if params.tls {
            Some(options.tls.client_config()?)
        } else {
            None
        };
        let mechanism = protocol::negotiate::mechanism(params.auth_mechanism.as_deref())?;
        let config = Config {
            username: params.username.clone(),
            password: params.password().to_string(),
            vhost: params.vhost.clone(),
            heartbeat: params.heartbeat,
            frame_max: params.frame_max,
            channel_max: params.channel_max,
            client_properties: options.client_properties.clone(),
            confirms: options.confirms,
            max_message_size: options.max_message_size,
            connect_timeout: Some(params.connection_timeout.unwrap_or(Duration::from_secs(30))),
            mechanism,
            ack_timing: options.ack_timing,
            blocked_timeout: options.blocked_timeout,
        };
        #[cfg(feature = "tracing")]
        let (client_name, host) = (
            options
                .client_properties
                .get("connection_name")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string(),
            params.host.clone(),
        );
        let mut promises = Promises::default();
        let connect_id = promises.create();
        let conn = Connection::new(config, connect_id.tag(), Instant::now());
        let mut client = Client {
            conn,
            params,
            options,
            sock: None,
            closed_sock: None,
            connecting: false,
            addresses,
            poll: None,
            events: None,
            promises,
            connect_promise: Promise::new(connect_id),
            #[cfg(feature = "tls")]
            tls_config,
            conn_events: VecDeque::new(),
            conn_callback: None,
            loop_break: false,
            more_to_read: false,
            write_blocked: false,
            read_paused: false,
            #[cfg(feature = "tracing")]
            span: connection_span(&client_name, &host),
        };
        client.connect_next()?;
        Ok(client)
    }

    /// Puts TLS over a fresh socket when the URL asks for it, for the
    /// server `name`.
    fn wrap(&self, sock: TcpStream, name: &str) -> Result<Transport, Error> {
        #[cfg(feature = "tls")]
        if let Some(config) = &self.tls_config {
            let t = transport::TlsStream::new(sock, config.clone(), name)?;
            return Ok(Transport::Tls(Box::new(t)));
        }
        let _ = name;
        Ok(Transport::Plain(sock))
    }

    // ------------------------------------------------------------------
    // Getters.

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

    // ------------------------------------------------------------------
    // Integration with an event loop.

    /// The socket's file descriptor, to watch in a select/poll loop.
    pub fn fileno(&self) -> RawFd {
        self.as_raw_fd()
    }

    /// Whether frames wait to be written: watch the socket for writability.
    pub fn needs_write(&self) -> bool {
        match &self.sock {
            Some(s) => self.connecting || self.conn.wants_write() || s.wants_write(),
            None => false,
        }
    }

    /// When the heartbeat, handshake or TCP connect timer next needs
    /// [`Client::on_timer`].
    ///
    /// It is `now` while [`Client::wants_read`]: bytes are left in the
    /// socket that no readiness event will report again.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.more_to_read {
            return Some(Instant::now());
        }
        let t = self.conn.poll_timeout();
        match self
            .addresses
            .connect_deadline()
            .filter(|_| self.connecting)
        {
            Some(d) => Some(t.map_or(d, |t| t.min(d))),
            None => t,
        }
    }

    /// Whether bytes may be left in the socket that no new readiness event
    /// will announce: `on_read` stopped at its budget (64 reads, about
    /// 4 MiB, so one busy connection cannot starve the rest of your loop),
    /// or reading resumed after [`Options::max_buffered_bytes`] paused it.
    /// Call [`Client::on_read`] (or `on_timer`, which does it) again soon;
    /// [`Client::poll_timeout`] says so too.
    pub fn wants_read(&self) -> bool {
        self.more_to_read
    }

    /// Call when the socket is readable: reads until it would block or its
    /// budget of 64 reads is spent (then [`Client::wants_read`] is true),
    /// handles the frames, and queues the results (callbacks run in
    /// [`Client::run_any_callbacks`]).
    pub fn on_read(&mut self) {
        self.read_ready(false);
        self.after_io();
    }

    /// Handles one readiness event of your `mio::Poll` for this client's
    /// token: reads when readable (or closed, or in error), writes when
    /// writable. The whole reactor contract is then: `on_event` for each
    /// event, `on_timer` once [`Client::poll_timeout`] passes,
    /// [`Client::run_any_callbacks`], and
    /// [`Client::update_registration`] after each turn.
    ///
    /// ```no_run
    /// # use mio::{Events, Poll, Token};
    /// # use std::time::Instant;
    /// # let mut client = puka::Client::new("amqp://127.0.0.1/")?;
    /// let mut poll = Poll::new()?;
    /// let mut events = Events::with_capacity(64);
    /// client.update_registration(poll.registry(), Token(0))?;
    /// loop {
    ///     let timeout = client.poll_timeout().map(|t| t.saturating_duration_since(Instant::now()));
    ///     poll.poll(&mut events, timeout)?;
    ///     for event in events.iter() {
    ///         client.on_event(event);
    ///     }
    ///     if client.poll_timeout().is_some_and(|t| Instant::now() >= t) {
    ///         client.on_timer();
    ///     }
    ///     client.run_any_callbacks();
    ///     client.update_registration(poll.registry(), Token(0))?;
    /// #   break;
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_event(&mut self, event: &mio::event::Event) {
        if event.is_writable() || event.is_error() {
            self.write_ready();
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.read_ready(false);
        }
        self.after_io();
    }

    /// `on_read` without handing results to their promises. With
    /// `short_is_drained`, a plain read that does not fill the buffer ends
    /// the reading: the caller's poll reported neither end of stream nor an
    /// error (either would need a read of its own, and no new readiness
    /// event would come for it).
    fn read_ready(&mut self, short_is_drained: bool) {
        in_span!(self);
        if !self.check_connected() {
            return;
        }
        // Set only when the budget runs out with the socket maybe not
        // drained: the next turn then reads again without sleeping. (Left
        // set after a read that ended in `WouldBlock`, it cost every wakeup
        // a spare `epoll_wait` and `recv`.)
        self.more_to_read = false;
        for round in 1..=READ_BUDGET {
            if self.promises.buffered_bytes() >= self.options.max_buffered_bytes {
                // Held deliveries are at their bound: leave the rest in the
                // socket (TCP holds the broker back) until they are taken.
                self.read_paused = true;
                break;
            }
            let Some(sock) = self.sock.as_mut() else {
                break;
            };
            match sock.read_into(&mut self.conn) {
                Ok((0, _)) => {
                    self.conn.handle_eof();
                    break;
                }
                Ok((_, drained)) => {
                    self.conn.handle_input(Instant::now());
                    if drained && short_is_drained {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.conn.handle_io_error(e);
                    break;
                }
            }
            if self.conn.is_closed() {
                break;
            }
            self.more_to_read = round == READ_BUDGET;
        }
    }

    /// Reading stopped at [`Options::max_buffered_bytes`] resumes once half
    /// of it has been taken: the next turn reads without waiting for a
    /// readiness event (none comes for bytes already in the socket).
    fn resume_reading(&mut self) {
        if self.read_paused && self.promises.buffered_bytes() <= self.options.max_buffered_bytes / 2
        {
            self.read_paused = false;
            self.more_to_read = true;
        }
    }

    /// Call when the socket is writable: writes queued frames until the
    /// socket would block.
    pub fn on_write(&mut self) {
        self.write_ready();
        self.after_io();
    }

    /// `on_write` without handing results to their promises.
    fn write_ready(&mut self) {
        self.write_blocked = false;
        if self.check_connected() {
            self.flush_queued();
        }
    }

    /// Call when [`Client::poll_timeout`] has passed: sends heartbeats and
    /// detects a dead peer. A TCP connect that timed out moves on to the
    /// next address (a new socket: see [`Client::update_registration`]).
    pub fn on_timer(&mut self) {
        in_span!(self);
        if self.more_to_read {
            self.read_ready(false);
        }
        self.handle_connect_timeout(Instant::now());
        self.conn.handle_timeout(Instant::now());
        self.flush_queued();
        self.after_io();
    }

    /// Registers the socket with a caller's mio `registry` under `token`
    /// (or updates its registration), with WRITABLE interest only while
    /// [`Client::needs_write`]. Call it once to start and again after each
    /// turn of your loop to keep the interest current; it registers a socket
    /// the client replaced (the next address after a failed connect) on its
    /// own.
    ///
    /// # Errors
    /// What mio's `register`/`reregister` return.
    pub fn update_registration(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let interest = if self.needs_write() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let Some(sock) = self.sock.as_mut().map(Transport::tcp_mut) else {
            return Ok(());
        };
        match registry.reregister(sock, token, interest) {
            // Not registered yet (the first call), or the socket was
            // replaced: register it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                registry.register(sock, token, interest)
            }
            other => other,
        }
    }

    /// Whether the TCP connect finished; starts the next address or fails
    /// the connection when it did not.
    fn check_connected(&mut self) -> bool {
        if !self.connecting {
            return self.sock.is_some();
        }
        let Some(sock) = self.sock.as_ref().map(Transport::tcp) else {
            return false;
        };
        if let Ok(Some(e)) | Err(e) = sock.take_error() {
            return self.connect_failed(e);
        }
        match sock.peer_addr() {
            Ok(_) => {
                self.connecting = false;
                self.tcp_connected();
                true
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => false,
            Err(e) => self.connect_failed(e),
        }
    }

    fn connect_failed(&mut self, e: io::Error) -> bool {
        self.tcp_failed(e);
        false
    }

    fn drop_socket(&mut self) {
        if let Some(sock) = self.sock.take() {
            let sock = sock.into_tcp();
            if let Some(poll) = &self.poll {
                let fd = sock.as_raw_fd();
                let _ = poll.registry().deregister(&mut mio::unix::SourceFd(&fd));
            }
            let _ = sock.shutdown(std::net::Shutdown::Both);
            self.closed_sock = Some(sock);
        }
        self.connecting = false;
    }

    fn flush_queued(&mut self) {
        in_span!(self);
        if self.connecting || self.write_blocked {
            return;
        }
        // Acks that waited their time go out before control returns to the
        // user, who may not call back for a while.
        if self
            .conn
            .ack_deadline()
            .is_some_and(|d| Instant::now() >= d)
        {
            self.conn.release_acks();
        }
        let Some(sock) = self.sock.as_mut() else {
            return;
        };
        if !self.conn.wants_write() && !sock.wants_write() {
            return;
        }
        let result = sock.write_from(&mut self.conn);
        // `write_from` returns with bytes still queued only when the socket
        // would block.
        self.write_blocked = result.is_ok() && (self.conn.wants_write() || sock.wants_write());
        if let Err(e) = result {
            // A broker that closes the connection (connection.close, then
            // the socket) makes our next write fail with a reset while its
            // close frame is still readable: read what is there first, so
            // the user sees the broker's reason rather than the reset.
            self.drain_reads();
            if !self.conn.is_closed() {
                self.conn.handle_io_error(e);
            }
        }
    }

    /// Reads and handles what the socket already holds, until it would
    /// block, ends or fails (errors here are left to the caller's).
    fn drain_reads(&mut self) {
        for _ in 0..READ_BUDGET {
            let Some(sock) = self.sock.as_mut() else {
                return;
            };
            match sock.read_into(&mut self.conn) {
                Ok((0, _)) | Err(_) => break,
                Ok(_) => self.conn.handle_input(Instant::now()),
            }
            if self.conn.is_closed() {
                break;
            }
        }
        self.conn.handle_input(Instant::now());
    }

    /// Moves the connection's events into promise slots, and drops the
    /// socket once the connection has ended.
    fn after_io(&mut self) -> usize {
        let mut n = 0;
        while let Some(tag) = self.conn.poll_written() {
            n += 1;
            self.promises.publish_ok(self.promises.id_of(tag));
        }
        while let Some(ev) = self.conn.poll_event() {
            n += 1;
            match ev {
                Event::Complete { tag, result } => {
                    let id = self.promises.id_of(tag);
                    self.promises.push(id, result.map(Raw::Outcome), true);
                }
                Event::Delivery { tag, delivery } => {
                    let id = self.promises.id_of(tag);
                    self.promises.push(id, Ok(Raw::Delivery(delivery)), false);
                }
                Event::ConsumerEnded { tag } => self.promises.end(self.promises.id_of(tag)),
                Event::Returned(r) => self.conn_events.push_back(ConnectionEvent::Returned(r)),
                Event::PublishChannelClosed(e) => self
                    .conn_events
                    .push_back(ConnectionEvent::PublishChannelClosed(e)),
                Event::Blocked(reason) => {
                    self.conn_events.push_back(ConnectionEvent::Blocked(reason))
                }
                Event::Unblocked => self.conn_events.push_back(ConnectionEvent::Unblocked),
                Event::Closed(e) => {
                    // Best effort: let a close or close-ok reach the broker.
                    if let Some(sock) = self.sock.as_mut() {
                        let _ = sock.write_from(&mut self.conn);
                    }
                    self.drop_socket();
                    self.conn_events.push_back(ConnectionEvent::Closed(e));
                }
            }
        }
        n
    }

    // ------------------------------------------------------------------
    // Driving: wait and loop.

    /// One turn of the built-in loop: write, sleep until the socket is ready
    /// or `timeout` (and the heartbeat timer) passes, read, fire timers.
    ///
    /// With `drain`, results are then handed to their promises; without, a
    /// caller waiting on a consumer takes its deliveries straight from the
    /// connection's events first ([`Client::wait`]'s fast lane).
    fn turn(&mut self, timeout: Option<Duration>, drain: bool) -> Result<(), Error> {
        in_span!(self);
        self.flush_queued();
        // The flush may have resolved something (a publish without
        // confirms): let the caller look before sleeping. (Without `drain`
        // the results stay in the connection's events; sleeping on them
        // would wait for the timeout, since no reply will wake us.)
        let resolved = if drain {
            self.after_io() > 0
        } else {
            self.conn.has_events()
        };
        // A callback waiting to run (e.g. a result that arrived while its
        // own callback was running a nested `wait`) must not sleep either.
        if resolved || self.promises.ready_len() > 0 {
            return Ok(());
        }
        if self.sock.is_none() {
            return Ok(());
        }
        if self.poll.is_none() {
            let poll = Poll::new().map_err(Error::io)?;
            if let Some(sock) = &self.sock {
                let fd = sock.tcp().as_raw_fd();
                poll.registry()
                    .register(
                        &mut mio::unix::SourceFd(&fd),
                        OWN_TOKEN,
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .map_err(Error::io)?;
            }
            self.poll = Some(poll);
            self.events = Some(Events::with_capacity(8));
            // Level state is unknown after registering: try both.
            self.write_ready();
            self.read_ready(false);
            if drain {
                self.after_io();
            }
            return Ok(());
        }
        let now = Instant::now();
        let mut wait = timeout;
        if let Some(t) = self.poll_timeout() {
            let d = t.saturating_duration_since(now);
            wait = Some(wait.map_or(d, |w| w.min(d)));
        }
        if self.more_to_read {
            wait = Some(Duration::ZERO);
        }
        let (readable, writable, ended) = {
            let (Some(poll), Some(events)) = (self.poll.as_mut(), self.events.as_mut()) else {
                return Ok(());
            };
            match poll.poll(events, wait) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(e)),
            }
            let mut r = false;
            let mut w = false;
            let mut end = false;
            for ev in events.iter() {
                r |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
                w |= ev.is_writable() || ev.is_error();
                end |= ev.is_read_closed() || ev.is_error();
            }
            (r, w, end)
        };
        if writable {
            self.write_ready();
        }
        if readable || self.more_to_read {
            // A short read ends the reading only on a fresh readiness event
            // that reported no end of stream and no error.
            self.read_ready(readable && !ended && !self.more_to_read);
        }
        let now = Instant::now();
        self.handle_connect_timeout(now);
        if self.conn.poll_timeout().is_some_and(|t| now >= t) {
            self.conn.handle_timeout(now);
        }
        self.flush_queued();
        if drain {
            self.after_io();
        }
        Ok(())
    }

    /// Blocks until `promise` resolves and returns its result. Callbacks of
    /// other promises run meanwhile.
    ///
    /// For a consumer's promise, each call returns the next delivery.
    ///
    /// When frames leave: everything queued before the call (acks
    /// included) is in the socket's send buffer when it returns — with the
    /// default [`AckTiming::Prompt`]; the kernel may still hold it, and a
    /// send buffer that stays full (a broker not reading) is the one case
    /// where bytes remain queued: [`Client::flush`] waits for them. With
    /// [`AckTiming::Deferred`], a consumer's acks may wait across calls (see
    /// there), and while more deliveries are already buffered the write is
    /// left to the call that returns the last of them.
    ///
    /// # Errors
    /// The operation's error; [`Error::UnknownPromise`] for a promise whose
    /// results were all taken; [`Error::ForeignPromise`] for a promise of
    /// another client.
    pub fn wait<T: Resolve>(&mut self, promise: Promise<T>) -> Result<T, Error> {
        self.wait_deadline(promise, None)
    }

    /// As [`Client::wait`], giving up with [`Error::Timeout`] after
    /// `timeout` (the promise stays valid).
    ///
    /// # Errors
    /// As [`Client::wait`], or [`Error::Timeout`].
    pub fn wait_timeout<T: Resolve>(
        &mut self,
        promise: Promise<T>,
        timeout: Duration,
    ) -> Result<T, Error> {
        self.wait_deadline(promise, Some(Instant::now() + timeout))
    }

    fn wait_deadline<T: Resolve>(
        &mut self,
        promise: Promise<T>,
        deadline: Option<Instant>,
    ) -> Result<T, Error> {
        loop {
            // The fast lane of a consumer: its next delivery is at the head
            // of the connection's events and nothing of it is queued here.
            if self.promises.is_idle(promise.id) {
                let tag = promise.id.tag();
                if let Some(d) = self.conn.poll_delivery(tag) {
                    // As below: acks go out (with deferred acks: unless the
                    // caller is about to come back for the next delivery
                    // already here).
                    if !self.defer_acks() || !self.conn.delivery_is_next(tag) {
                        self.flush_queued();
                    }
                    return T::from_delivery(d);
                }
            }
            self.after_io();
            match self.promises.take(promise.id) {
                Taken::Ready(r) => {
                    // Frames queued so far (acks of earlier deliveries) go out
                    // now — with deferred acks, unless more results are
                    // already here: the caller is about to come back and the
                    // write is batched with the next ones.
                    if !self.defer_acks() || self.promises.has_result(promise.id) != Some(true) {
                        self.flush_queued();
                    }
                    self.resume_reading();
                    return T::resolve(RawResult(r));
                }
                Taken::Unknown => return Err(Error::UnknownPromise),
                Taken::Foreign => return Err(Error::ForeignPromise),
                Taken::Pending => {}
            }
            self.run_any_callbacks();
            if self.promises.has_result(promise.id) == Some(true) {
                continue;
            }
            if self.sock.is_none() && self.conn.is_closed() {
                // Everything pending was failed; nothing more can arrive.
                self.after_io();
                if let Taken::Ready(r) = self.promises.take(promise.id) {
                    return T::resolve(RawResult(r));
                }
                return Err(self
                    .conn
                    .error()
                    .cloned()
                    .unwrap_or(Error::ConnectionClosed));
            }
            let timeout = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        self.flush_queued();
                        return Err(Error::Timeout);
                    }
                    Some(d - now)
                }
                None => None,
            };
            self.turn(timeout, false)?;
        }
    }

    /// Blocks until one of `ids` has a result; returns that id (its result
    /// is then taken with [`Client::wait`]).
    ///
    /// # Errors
    /// [`Error::UnknownPromise`] when none of the ids is known;
    /// [`Error::ForeignPromise`] when one belongs to another client.
    pub fn wait_for_any(&mut self, ids: &[PromiseId]) -> Result<PromiseId, Error> {
        self.wait_for_any_deadline(ids, None)
    }

    /// As [`Client::wait_for_any`], giving up with [`Error::Timeout`] after
    /// `timeout`.
    ///
    /// # Errors
    /// As [`Client::wait_for_any`], or [`Error::Timeout`].
    pub fn wait_for_any_timeout(
        &mut self,
        ids: &[PromiseId],
        timeout: Duration,
    ) -> Result<PromiseId, Error> {
        self.wait_for_any_deadline(ids, Some(Instant::now() + timeout))
    }

    fn wait_for_any_deadline(
        &mut self,
        ids: &[PromiseId],
        deadline: Option<Instant>,
    ) -> Result<PromiseId, Error> {
        self.check_own(ids)?;
        loop {
            self.after_io();
            let mut known = false;
            for &id in ids {
                match self.promises.has_result(id) {
                    Some(true) => {
                        self.flush_queued();
                        return Ok(id);
                    }
                    Some(false) => known = true,
                    None => {}
                }
            }
            if !known {
                return Err(Error::UnknownPromise);
            }
            self.run_any_callbacks();
            if self.sock.is_none() && self.conn.is_closed() {
                self.after_io();
                continue;
            }
            let timeout = self.time_left(deadline)?;
            self.turn(timeout, true)?;
        }
    }

    /// Blocks until every one of `ids` has a result (or is unknown).
    ///
    /// # Errors
    /// An I/O error of the poller; [`Error::ForeignPromise`] when an id
    /// belongs to another client.
    pub fn wait_for_all(&mut self, ids: &[PromiseId]) -> Result<(), Error> {
        self.wait_for_all_deadline(ids, None)
    }

    /// As [`Client::wait_for_all`], giving up with [`Error::Timeout`] after
    /// `timeout` (the results that arrived stay with their promises).
    ///
    /// # Errors
    /// As [`Client::wait_for_all`], or [`Error::Timeout`].
    pub fn wait_for_all_timeout(
        &mut self,
        ids: &[PromiseId],
        timeout: Duration,
    ) -> Result<(), Error> {
        self.wait_for_all_deadline(ids, Some(Instant::now() + timeout))
    }

    fn wait_for_all_deadline(
        &mut self,
        ids: &[PromiseId],
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        self.check_own(ids)?;
        let mut from = 0;
        loop {
            self.after_io();
            // Results stay until taken, so ids before `from` stay resolved.
            while from < ids.len() && self.promises.has_result(ids[from]) != Some(false) {
                from += 1;
            }
            if from == ids.len() {
                self.flush_queued();
                return Ok(());
            }
            self.run_any_callbacks();
            if self.sock.is_none() && self.conn.is_closed() {
                self.after_io();
                continue;
            }
            let timeout = self.time_left(deadline)?;
            self.turn(timeout, true)?;
        }
    }

    /// What is left until `deadline` (`None`: no deadline); at the deadline,
    /// flushes and fails with [`Error::Timeout`].
    fn time_left(&mut self, deadline: Option<Instant>) -> Result<Option<Duration>, Error> {
        let Some(d) = deadline else {
            return Ok(None);
        };
        let now = Instant::now();
        if now >= d {
            self.flush_queued();
            return Err(Error::Timeout);
        }
        Ok(Some(d - now))
    }

    /// Fails with [`Error::ForeignPromise`] when an id was made by another
    /// client.
    fn check_own(&self, ids: &[PromiseId]) -> Result<(), Error> {
        if ids.iter().all(|&id| self.promises.owns(id)) {
            Ok(())
        } else {
            Err(Error::ForeignPromise)
        }
    }

    /// Whether a consumer's acks may wait across calls.
    fn defer_acks(&self) -> bool {
        self.options.ack_timing == AckTiming::Deferred
    }

    /// Writes every queued frame — acks (deferred ones too) and publishes —
    /// to the socket, blocking until they are all in the kernel's send
    /// buffer or `timeout` passes. Reads meanwhile (so a broker that waits
    /// for us to read never deadlocks us) but runs no callbacks.
    ///
    /// ```no_run
    /// # use puka::Client;
    /// # use std::time::Duration;
    /// # let mut client = Client::new("amqp://127.0.0.1/")?;
    /// # let d: puka::Delivery = unimplemented!();
    /// client.basic_ack(&d)?;
    /// client.flush(Duration::from_secs(1))?; // the ack is on its way
    /// # Ok::<(), puka::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Timeout`] when bytes are still queued at the deadline; the
    /// connection's error when it has ended with bytes unsent.
    pub fn flush(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        self.conn.release_acks();
        loop {
            self.write_blocked = false;
            self.flush_queued();
            if !self.needs_write() {
                return Ok(());
            }
            if self.sock.is_none() || self.conn.is_closed() {
                return Err(self
                    .conn
                    .error()
                    .cloned()
                    .unwrap_or(Error::ConnectionClosed));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout);
            }
            self.turn(Some(deadline - now), true)?;
        }
    }

    /// Runs the callbacks whose promises have results; returns how many ran.
    pub fn run_any_callbacks(&mut self) -> usize {
        self.after_io();
        let mut ran = 0;
        let budget = self.promises.ready_len();
        for _ in 0..budget {
            let Some(next) = self.promises.pop_ready() else {
                break;
            };
            let Some((id, mut cb, result)) = next else {
                continue;
            };
            cb(self, RawResult(result));
            ran += 1;
            self.promises.restore_callback(id, cb);
        }
        if self.read_paused {
            self.resume_reading();
            if self.more_to_read {
                // In a user's reactor no readiness event comes for bytes
                // left in the socket: read them now.
                self.read_ready(false);
                self.after_io();
            }
        }
        while let Some(ev) = self.conn_events.pop_front() {
            let Some(mut cb) = self.conn_callback.take() else {
                self.conn_events.push_front(ev);
                break;
            };
            cb(self, ev);
            ran += 1;
            if self.conn_callback.is_none() {
                self.conn_callback = Some(cb);
            }
        }
        self.flush_queued();
        ran
    }

    /// Runs the loop: I/O, timers and callbacks, until [`Client::loop_break`]
    /// is called from a callback, `timeout` passes, or the connection ends
    /// (the loop of Python puka; `loop` is a Rust keyword).
    ///
    /// # Errors
    /// An I/O error of the poller.
    pub fn run_loop(&mut self, timeout: Option<Duration>) -> Result<(), Error> {
        self.loop_break = false;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            self.run_any_callbacks();
            if self.loop_break {
                self.loop_break = false;
                self.flush_queued();
                return Ok(());
            }
            if self.sock.is_none() && self.conn.is_closed() {
                self.run_any_callbacks();
                return Ok(());
            }
            let wait = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        self.flush_queued();
                        return Ok(());
                    }
                    Some(d - now)
                }
                None => None,
            };
            self.turn(wait, true)?;
        }
    }

    /// Makes [`Client::run_loop`] return after the current callback.
    pub fn loop_break(&mut self) {
        self.loop_break = true;
    }

    /// Sets the callback for `promise`. It runs (from `run_loop`, `wait` or
    /// `run_any_callbacks`) once per result: once for most operations, once
    /// per delivery for a consumer.
    pub fn set_callback<T, F>(&mut self, promise: Promise<T>, mut f: F)
    where
        T: Resolve,
        F: FnMut(&mut Client, Result<T, Error>) + 'static,
    {
        self.promises
            .set_callback(promise.id, Box::new(move |c, raw| f(c, T::resolve(raw))));
    }

    /// Sets the callback for connection events (blocked, unblocked, returned
    /// messages, close). Without one, they queue for
    /// [`Client::next_connection_event`].
    pub fn set_connection_callback<F>(&mut self, f: F)
    where
        F: FnMut(&mut Client, ConnectionEvent) + 'static,
    {
        self.conn_callback = Some(Box::new(f));
    }

    /// The next connection event not handled by a callback.
    pub fn next_connection_event(&mut self) -> Option<ConnectionEvent> {
        self.after_io();
        self.conn_events.pop_front()
    }

    /// Starts an operation: a new promise whose tag `start` hands to the
    /// protocol, then the events that produced (e.g. an immediate failure).
    fn operation<T>(&mut self, start: impl FnOnce(&mut Connection, Tag)) -> Promise<T> {
        in_span!(self);
        let id = self.promises.create();
        start(&mut self.conn, id.tag());
        self.after_io();
        Promise::new(id)
    }

    fn with_callback<T: Resolve>(
        &mut self,
        p: Promise<T>,
        f: impl FnMut(&mut Client, Result<T, Error>) + 'static,
    ) -> Promise<T> {
        self.set_callback(p, f);
        p
    }

    // ------------------------------------------------------------------
    // Operations.

    /// The promise of the connection handshake, which [`Client::new`]
    /// started: it resolves when the broker has opened the connection.
    ///
    /// ```no_run
    /// # let mut client = puka::Client::new("amqp://127.0.0.1/")?;
    /// client.handshake().wait(&mut client)?;
    /// # Ok::<(), puka::Error>(())
    /// ```
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn handshake(&self) -> Promise<()> {
        self.connect_promise
    }

    /// Closes the connection gracefully. New operations fail at once with
    /// [`Error::ConnectionClosed`]; the operations in flight — publisher
    /// confirms included — are awaited and resolve as the broker answers;
    /// then `connection.close` goes out and the promise resolves on the
    /// broker's `close-ok`. [`Options::close_timeout`] bounds the whole:
    /// what is still unsettled then fails with [`Error::OutcomeUnknown`]
    /// (never a failure that did not happen), and the close goes out (with
    /// up to [`crate::CLOSE_OK_GRACE`] more for `close-ok`). Consumers
    /// end with [`Error::ConnectionClosed`].
    ///
    /// ```no_run
    /// # use puka::Client;
    /// # let mut client = Client::new("amqp://127.0.0.1/")?;
    /// let p = client.basic_publish("", "tasks", b"job");
    /// let closed = client.close();
    /// client.wait(closed)?;
    /// client.wait(p)?; // confirmed before the close went out
    /// # Ok::<(), puka::Error>(())
    /// ```
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn close(&mut self) -> Promise<()> {
        let timeout = self.options.close_timeout;
        let p = self.operation(|conn, tag| conn.close(tag, Instant::now(), timeout));
        self.flush_queued();
        p
    }

    /// Closes the connection without waiting for operations in flight:
    /// `connection.close` goes out now and the promise resolves on
    /// `close-ok` (or after [`Options::close_timeout`]). Unconfirmed
    /// publishes fail with [`Error::OutcomeUnknown`], other pending
    /// operations with [`Error::ConnectionClosed`]. After [`Client::close`],
    /// it cuts the wait short.
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn close_now(&mut self) -> Promise<()> {
        let timeout = self.options.close_timeout;
        let p = self.operation(|conn, tag| conn.close_now(tag, Instant::now(), timeout));
        self.flush_queued();
        p
    }

    /// A pooled-channel operation (the protocol sends it without `no_wait`:
    /// every operation completes on its reply).
    fn rpc<T>(&mut self, method: Method) -> Promise<T> {
        self.operation(|conn, tag| {
            conn.rpc(tag, method);
        })
    }

    /// Declares an exchange (`exchange.declare`).
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn exchange_declare(&mut self, args: ExchangeDeclare) -> Promise<()> {
        self.rpc(Method::ExchangeDeclare(args))
    }

    /// Deletes an exchange (`exchange.delete`).
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn exchange_delete(&mut self, args: ExchangeDelete) -> Promise<()> {
        self.rpc(Method::ExchangeDelete(args))
    }

    /// Binds exchange `destination` to `source` (`exchange.bind`, a RabbitMQ
    /// extension).
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn exchange_bind(&mut self, args: ExchangeBind) -> Promise<()> {
        self.rpc(args.into())
    }

    /// Removes an exchange-to-exchange binding (`exchange.unbind`).
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn exchange_unbind(&mut self, args: ExchangeUnbind) -> Promise<()> {
        self.rpc(args.into())
    }

    /// Declares a queue (`queue.declare`); an empty name asks the broker to
    /// choose one, returned in [`QueueDeclareOk::queue`].
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn queue_declare(&mut self, args: QueueDeclare) -> Promise<QueueDeclareOk> {
        self.rpc(Method::QueueDeclare(args))
    }

    /// Binds a queue to an exchange (`queue.bind`).
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn queue_bind(&mut self, args: QueueBind) -> Promise<()> {
        self.rpc(args.into())
    }

    /// Removes a binding (`queue.unbind`).
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn queue_unbind(&mut self, args: QueueUnbind) -> Promise<()> {
        self.rpc(args.into())
    }

    /// Removes every ready message of a queue (`queue.purge`); resolves with
    /// how many were removed.
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn queue_purge(&mut self, queue: &str) -> Promise<u32> {
        self.rpc(Method::QueuePurge(QueuePurge {
            queue: queue.into(),
            no_wait: false,
        }))
    }

    /// Deletes a queue (`queue.delete`); resolves with how many messages it
    /// held.
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn queue_delete(&mut self, args: QueueDelete) -> Promise<u32> {
        self.rpc(Method::QueueDelete(args))
    }

    /// Publishes `body` to `exchange` with `routing_key` and no properties.
    ///
    /// With publisher confirms (the default when the broker has them) the
    /// promise resolves on the broker's ack and fails with
    /// [`Error::Nacked`] on a nack; without, once the frames reach the
    /// socket.
    ///
    /// Blocks only when the client is full (see [`Options::when_full`]):
    /// with the default [`WhenFull::Block`] it then drives the connection
    /// until there is room; with [`WhenFull::Refuse`] it never blocks and
    /// the promise fails with [`Error::WouldBlock`].
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn basic_publish(&mut self, exchange: &str, routing_key: &str, body: &[u8]) -> Promise<()> {
        self.basic_publish_with(
            exchange,
            routing_key,
            body,
            &NO_PROPERTIES,
            Unroutable::Drop,
        )
    }

    /// Publishes with properties, saying what happens when no queue takes
    /// it: [`Unroutable::Drop`] (the broker drops it silently), or
    /// [`Unroutable::Return`] (`mandatory`: the promise fails with
    /// [`Error::NoRoute`] when confirms are on, or it comes back as
    /// [`ConnectionEvent::Returned`]). Blocks as [`Client::basic_publish`]
    /// says.
    ///
    /// ```no_run
    /// # use puka::{BasicProperties, Client, Unroutable};
    /// # let mut client = Client::new("amqp://127.0.0.1/")?;
    /// let props = BasicProperties::default().with_content_type("text/plain");
    /// let p = client.basic_publish_with("logs", "info", b"hi", &props, Unroutable::Return);
    /// p.wait(&mut client)?;
    /// # Ok::<(), puka::Error>(())
    /// ```
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn basic_publish_with(
        &mut self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: &BasicProperties,
        unroutable: Unroutable,
    ) -> Promise<()> {
        let mandatory = unroutable == Unroutable::Return;
        if !self.can_publish() {
            match self.options.when_full {
                WhenFull::Block => self.drain_until_room(),
                WhenFull::Refuse => {
                    let id = self.promises.create();
                    self.promises.push(id, Err(Error::WouldBlock), true);
                    return Promise::new(id);
                }
            }
        }
        self.publish_now(exchange, routing_key, body, properties, mandatory)
    }

    /// Publishes without ever blocking: `Err(Error::WouldBlock)` when the
    /// client is full (nothing is queued; retry once
    /// [`Client::can_publish`] is true), whatever [`Options::when_full`]
    /// says.
    ///
    /// ```no_run
    /// # use puka::{BasicProperties, Client, Error, Unroutable};
    /// # let mut client = Client::new("amqp://127.0.0.1/")?;
    /// let props = BasicProperties::default();
    /// match client.try_basic_publish("", "tasks", b"job", &props, Unroutable::Drop) {
    ///     Ok(promise) => { let _ = promise; }
    ///     Err(Error::WouldBlock) => { /* keep the message; retry after on_write */ }
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), puka::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::WouldBlock`] when full.
    pub fn try_basic_publish(
        &mut self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: &BasicProperties,
        unroutable: Unroutable,
    ) -> Result<Promise<()>, Error> {
        if !self.can_publish() {
            return Err(Error::WouldBlock);
        }
        let mandatory = unroutable == Unroutable::Return;
        Ok(self.publish_now(exchange, routing_key, body, properties, mandatory))
    }

    /// Whether a publish now would go ahead: fewer than
    /// [`Options::write_high_water`] bytes are queued and fewer than
    /// [`Options::max_unconfirmed`] publishes await their confirms. In a
    /// reactor, check it after `on_write` (bytes drained) and `on_read`
    /// (confirms arrived).
    pub fn can_publish(&self) -> bool {
        self.conn.pending_write_bytes() <= self.options.write_high_water
            && self
                .options
                .max_unconfirmed
                .is_none_or(|max| self.conn.unconfirmed_count() < max)
    }

    fn publish_now(
        &mut self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: &BasicProperties,
        mandatory: bool,
    ) -> Promise<()> {
        in_span!(self);
        let id = self.promises.create_publish();
        let p = Promise::new(id);
        self.conn.publish(
            id.tag(),
            exchange,
            routing_key,
            mandatory,
            false,
            properties,
            body,
        );
        if self.conn.pending_write_bytes() >= WRITE_BATCH {
            // Hand the socket full batches early, without blocking.
            self.flush_queued();
        }
        self.after_io();
        p
    }

    /// [`WhenFull::Block`]: drives the connection (no callbacks) until
    /// half the high-water mark is queued and a publish is allowed, or the
    /// connection ends.
    fn drain_until_room(&mut self) {
        // During the handshake the bytes wait for open-ok; turns drive that too.
        let level = self.options.write_high_water / 2;
        while (self.conn.pending_write_bytes() > level || !self.can_publish())
            && self.sock.is_some()
        {
            if self.turn(Some(Duration::from_millis(100)), true).is_err() || self.conn.is_closed() {
                break;
            }
        }
    }

    /// Replaces the secret this connection authenticated with
    /// (`connection.update-secret`, RabbitMQ 3.10+), e.g. a refreshed OAuth 2
    /// token; resolves when the broker accepts it. A secret the broker
    /// refuses ends the connection with its error (RabbitMQ:
    /// [`Error::NotAllowed`], 530). The new secret is never printed.
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn update_secret(&mut self, new_secret: &str, reason: &str) -> Promise<()> {
        let p = self.operation(|conn, tag| conn.update_secret(tag, new_secret, reason));
        self.flush_queued();
        p
    }

    /// Says you will not take `promise`'s result: it is dropped when it
    /// arrives (or now, if it is here), and the promise is forgotten — a
    /// later `wait` on it fails with [`Error::UnknownPromise`]. For
    /// fire-and-forget operations, so their results do not accumulate.
    /// Forgetting a consumer drops its deliveries as they come (unacked
    /// ones stay unacked until the channel closes): cancel it instead.
    pub fn forget<T>(&mut self, promise: Promise<T>) {
        self.promises.forget(promise.id);
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
        s
    }

    /// Promises this client holds: operations in flight, results not yet
    /// taken, and publishes awaiting their outcome.
    pub fn promise_count(&self) -> usize {
        self.promises.len()
    }

    /// Fetches one message (`basic.get`) that must be acked; resolves with
    /// `None` when the queue is empty.
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn basic_get(&mut self, queue: &str) -> Promise<Option<Delivery>> {
        self.operation(|conn, tag| {
            conn.basic_get(tag, queue, false);
        })
    }

    /// Fetches one message the broker counts as acknowledged once sent
    /// (`basic.get` with `no-ack`): nothing to settle, and lost if this
    /// process dies before handling it.
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn basic_get_no_ack(&mut self, queue: &str) -> Promise<Option<Delivery>> {
        self.operation(|conn, tag| {
            conn.basic_get(tag, queue, true);
        })
    }

    /// Consumes from `queue` with manual acks; the promise resolves once per
    /// delivery.
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn basic_consume(&mut self, queue: &str) -> Promise<Delivery> {
        self.basic_consume_with(Consume::queue(queue))
    }

    /// Consumes from several queues on one channel under one promise.
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn basic_consume_multi(&mut self, queues: &[&str]) -> Promise<Delivery> {
        let mut c = Consume::default();
        for q in queues {
            c = c.and_queue(q);
        }
        self.basic_consume_with(c)
    }

    /// Consumes as described by [`Consume`] (queues, `no_ack`, prefetch,
    /// exclusive, consumer tags, arguments).
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn basic_consume_with(&mut self, consume: Consume) -> Promise<Delivery> {
        self.operation(|conn, tag| {
            conn.consume(tag, consume.queues, consume.no_ack, consume.prefetch_count);
        })
    }

    /// Resolves once the broker has registered every queue of `consumer`
    /// (each `basic.consume-ok` arrived), with the consumer tags — the
    /// moment from which exclusive, single-active and priority consumers
    /// hold, with no sleep needed. Fails with the consumer's error when it
    /// fails first.
    ///
    /// ```no_run
    /// # use puka::{Client, Consume};
    /// # let mut client = Client::new("amqp://127.0.0.1/")?;
    /// let consumer = client.basic_consume_with(Consume::queue("jobs").exclusive());
    /// let ready = client.consumer_ready(consumer);
    /// let tags: Vec<String> = client.wait(ready)?;
    /// # Ok::<(), puka::Error>(())
    /// ```
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn consumer_ready(&mut self, consumer: Promise<Delivery>) -> Promise<Vec<String>> {
        if let Some(p) = self.refuse_foreign(consumer) {
            return p;
        }
        self.operation(|conn, tag| conn.consumer_ready(tag, consumer.id.tag()))
    }

    /// A promise failed with [`Error::ForeignPromise`] when `consumer` was
    /// made by another client (whose consumer ids mean nothing here).
    fn refuse_foreign<T>(&mut self, consumer: Promise<Delivery>) -> Option<Promise<T>> {
        if self.promises.owns(consumer.id) {
            return None;
        }
        let id = self.promises.create();
        self.promises.push(id, Err(Error::ForeignPromise), true);
        Some(Promise::new(id))
    }

    /// Sets the prefetch window of a consumer's channel (`basic.qos`).
    ///
    /// RabbitMQ applies a per-consumer limit only to consumers started after
    /// it, so on a running consumer it changes nothing the broker does.
    /// [`Qos::global`] sets a limit for the whole channel, which applies at
    /// once (to every queue of a multi-queue consumer together; quorum queues
    /// do not support it). To change a running consumer's own window, cancel
    /// it and consume again (or start it with [`Consume::prefetch`]).
    ///
    /// ```no_run
    /// # use puka::{Client, Qos};
    /// # let mut client = Client::new("amqp://127.0.0.1/")?;
    /// let consumer = client.basic_consume("jobs");
    /// client.basic_qos(consumer, Qos::prefetch(10).global()).wait(&mut client)?;
    /// # Ok::<(), puka::Error>(())
    /// ```
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn basic_qos(&mut self, consumer: Promise<Delivery>, qos: Qos) -> Promise<()> {
        if let Some(p) = self.refuse_foreign(consumer) {
            return p;
        }
        self.operation(|conn, tag| {
            conn.qos(
                tag,
                consumer.id.tag(),
                qos.prefetch_size,
                qos.prefetch_count,
                qos.global,
            );
        })
    }

    /// Cancels a consumer (`basic.cancel`). Deliveries already received stay
    /// valid to ack; the consumer's promise then ends.
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn basic_cancel(&mut self, consumer: Promise<Delivery>) -> Promise<()> {
        if let Some(p) = self.refuse_foreign(consumer) {
            return p;
        }
        self.operation(|conn, tag| {
            conn.cancel(tag, consumer.id.tag());
        })
    }

    /// Asks the broker to redeliver a consumer's unacked messages
    /// (`basic.recover`).
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn basic_recover(&mut self, consumer: Promise<Delivery>, requeue: Requeue) -> Promise<()> {
        if let Some(p) = self.refuse_foreign(consumer) {
            return p;
        }
        self.operation(|conn, tag| {
            conn.recover(tag, consumer.id.tag(), requeue == Requeue::Yes);
        })
    }

    /// Acknowledges one delivery. Queued; sent by the next flush (every
    /// `wait`, loop turn and `on_write`).
    ///
    /// # Errors
    /// [`Error::UnknownDeliveryTag`] when the delivery is not outstanding
    /// (already settled, or its channel closed); nothing is sent then.
    pub fn basic_ack(&mut self, delivery: &Delivery) -> Result<(), Error> {
        self.conn.ack(delivery, false)
    }

    /// Acknowledges a delivery and every earlier one on its channel.
    ///
    /// # Errors
    /// As [`Client::basic_ack`].
    pub fn basic_ack_multiple(&mut self, delivery: &Delivery) -> Result<(), Error> {
        self.conn.ack(delivery, true)
    }

    /// Negatively acknowledges a delivery (`basic.nack`), putting it back
    /// in the queue or not ([`Requeue::No`]: dropped or dead-lettered).
    ///
    /// ```no_run
    /// # use puka::{Client, Requeue};
    /// # let mut client = Client::new("amqp://127.0.0.1/")?;
    /// # let d: puka::Delivery = unimplemented!();
    /// client.basic_nack(&d, Requeue::No)?; // to the dead-letter exchange
    /// # Ok::<(), puka::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Client::basic_ack`].
    pub fn basic_nack(&mut self, delivery: &Delivery, requeue: Requeue) -> Result<(), Error> {
        self.conn.nack(delivery, false, requeue == Requeue::Yes)
    }

    /// [`Client::basic_nack`] of a delivery and every earlier one on its
    /// channel.
    ///
    /// # Errors
    /// As [`Client::basic_ack`].
    pub fn basic_nack_multiple(
        &mut self,
        delivery: &Delivery,
        requeue: Requeue,
    ) -> Result<(), Error> {
        self.conn.nack(delivery, true, requeue == Requeue::Yes)
    }

    /// Rejects one delivery (`basic.reject`).
    ///
    /// # Errors
    /// As [`Client::basic_ack`].
    pub fn basic_reject(&mut self, delivery: &Delivery, requeue: Requeue) -> Result<(), Error> {
        self.conn.reject(delivery, requeue == Requeue::Yes)
    }

    /// Makes the publish channel transactional (`tx.select`). Needs
    /// publisher confirms off ([`Confirms::Off`]): RabbitMQ refuses both on
    /// one channel.
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn tx_select(&mut self) -> Promise<()> {
        self.operation(|conn, tag| {
            conn.tx_select(tag);
        })
    }

    /// Commits the publishes and acks since the last commit (`tx.commit`).
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn tx_commit(&mut self) -> Promise<()> {
        self.operation(|conn, tag| {
            conn.tx_commit(tag);
        })
    }

    /// Discards the publishes since the last commit (`tx.rollback`).
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn tx_rollback(&mut self) -> Promise<()> {
        self.operation(|conn, tag| {
            conn.tx_rollback(tag);
        })
    }

    /// [`Client::queue_declare`] with a callback.
    pub fn queue_declare_then(
        &mut self,
        args: QueueDeclare,
        f: impl FnMut(&mut Client, Result<QueueDeclareOk, Error>) + 'static,
    ) -> Promise<QueueDeclareOk> {
        let p = self.queue_declare(args);
        self.with_callback(p, f)
    }

    /// [`Client::basic_publish`] with a callback.
    pub fn basic_publish_then(
        &mut self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        f: impl FnMut(&mut Client, Result<(), Error>) + 'static,
    ) -> Promise<()> {
        let p = self.basic_publish(exchange, routing_key, body);
        self.with_callback(p, f)
    }

    /// [`Client::basic_consume_with`] with a callback run per delivery.
    pub fn basic_consume_then(
        &mut self,
        consume: Consume,
        f: impl FnMut(&mut Client, Result<Delivery, Error>) + 'static,
    ) -> Promise<Delivery> {
        let p = self.basic_consume_with(consume);
        self.with_callback(p, f)
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
        match self.sock.as_mut().map(Transport::tcp_mut) {
            Some(s) => s.reregister(registry, token, interests),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
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
            self.write_blocked = false;
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
