//! The sans-IO protocol state machine.
//!
//! [`Connection`] owns no socket and reads no clock. The caller feeds it
//! bytes ([`Connection::read_from`] then [`Connection::handle_input`]) and the
//! current time ([`Connection::handle_timeout`]); it queues frames to send
//! ([`Connection::write_to`], [`Connection::wants_write`]) and events for the
//! caller ([`Connection::poll_event`]). Every user operation carries an opaque
//! [`Tag`] chosen by the caller, and comes back as exactly one
//! [`Event::Complete`] for that tag (consumers also yield
//! [`Event::Delivery`] many times before it).
//!
//! The order of calls, for one turn of an event loop:
//!
//! ```text
//!   readable  -> read_from(sock) until WouldBlock -> handle_input(now)
//!   timer     -> handle_timeout(now)
//!   always    -> poll_event() until None; write_to(sock) while wants_write()
//!   sleep at most until poll_timeout()
//! ```
//!
//! Channels are pooled and hidden, as in puka: each synchronous operation
//! takes an idle channel (opening one when none is idle) and returns it when
//! its reply arrives; each consumer owns a channel; publishes share one
//! publish channel, in confirm mode when the broker supports it.

mod channel;
mod debug;
mod delivery;
pub mod negotiate;

use delivery::Names;
pub use delivery::{ChannelRef, Delivery, Returned};

use crate::codec::frame::{self, encode_method, FrameRef, FRAME_MIN_SIZE};
use crate::codec::method::*;
use crate::codec::wire::Reader;
use crate::codec::{reply_code, BasicProperties, CodecError, FieldTable, Method, ShortString};
use crate::error::{Error, Reply};
use bytes::{Bytes, BytesMut};
use channel::{
    Body, Channel, Consumer, Expect, Incoming, IncomingKind, Role, TagQueue, Unconfirmed,
};
use negotiate::Tuned;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// An opaque token the caller attaches to an operation; it comes back in the
/// events for that operation.
pub type Tag = u64;

/// Whether publishes use publisher confirms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Confirms {
    /// On when the broker advertises `publisher_confirms` (the default).
    #[default]
    Auto,
    /// Always on.
    On,
    /// Off: a publish resolves once its frames are handed to the socket.
    Off,
}

/// When a consumer's acks are handed to the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckTiming {
    /// By the end of the call into the client that follows the ack (the
    /// next `wait`, `run_loop`, `run_any_callbacks` or `flush` returns with
    /// it in the kernel's send buffer); acks made within one call coalesce
    /// into one frame. Python puka's guarantee, and the default.
    #[default]
    Prompt,
    /// A consumer's acks may wait, across calls, while fewer than half of
    /// its prefetch window are outstanding (never with a prefetch of 1, nor
    /// after `basic.qos`): they go out with the next write, or after
    /// [`ACK_DELAY`]. Fewer writes under load; the cost is that a client
    /// that dies (or is dropped without `close`) right after acking may
    /// leave up to half a prefetch window of acked messages to be
    /// redelivered.
    Deferred,
}

/// The SASL mechanism used to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mechanism {
    /// User name and password.
    #[default]
    Plain,
    /// The identity of the TLS client certificate.
    External,
}

/// What the connection is asked to negotiate.
#[derive(Clone)]
pub struct Config {
    /// User name for PLAIN.
    pub username: String,
    /// Password for PLAIN (never printed by `Debug`).
    pub password: String,
    /// Virtual host to open.
    pub vhost: String,
    /// Wished heartbeat in seconds; `None` accepts the broker's, `Some(0)`
    /// turns heartbeats off.
    pub heartbeat: Option<u16>,
    /// Wished largest frame; `None` uses 131072.
    pub frame_max: Option<u32>,
    /// Wished highest channel number; `None` uses 2047.
    pub channel_max: Option<u16>,
    /// Extra `client_properties` entries (e.g. `connection_name`).
    pub client_properties: FieldTable,
    /// Publisher confirms policy.
    pub confirms: Confirms,
    /// Largest incoming message body accepted; a larger one closes the
    /// connection with [`Error::MessageTooLarge`].
    pub max_message_size: u64,
    /// How long the handshake may take, from [`Connection::new`].
    pub connect_timeout: Option<Duration>,
    /// Authentication mechanism.
    pub mechanism: Mechanism,
    /// When a consumer's acks go out.
    pub ack_timing: AckTiming,
    /// The longest the broker may keep the connection blocked
    /// (`connection.blocked`) before it is closed with
    /// [`Error::BlockedTimeout`]; `None`: no limit.
    pub blocked_timeout: Option<Duration>,
}

/// The default limit on an incoming message body: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 << 20;

impl Default for Config {
    fn default() -> Self {
        Config {
            username: "guest".into(),
            password: "guest".into(),
            vhost: "/".into(),
            heartbeat: None,
            frame_max: None,
            channel_max: None,
            client_properties: FieldTable::new(),
            confirms: Confirms::Auto,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            connect_timeout: Some(Duration::from_secs(30)),
            mechanism: Mechanism::Plain,
            ack_timing: AckTiming::Prompt,
            blocked_timeout: None,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("username", &self.username)
            .field("password", &"***")
            .field("vhost", &self.vhost)
            .field("heartbeat", &self.heartbeat)
            .field("frame_max", &self.frame_max)
            .field("channel_max", &self.channel_max)
            .field("confirms", &self.confirms)
            .field("max_message_size", &self.max_message_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("mechanism", &self.mechanism)
            .field("ack_timing", &self.ack_timing)
            .field("blocked_timeout", &self.blocked_timeout)
            .finish()
    }
}

/// What a completed operation produced.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// The operation succeeded and has nothing to report.
    Done,
    /// `queue.declare-ok`.
    QueueDeclared(QueueDeclareOk),
    /// A message count: `queue.purge-ok` or `queue.delete-ok`.
    MessageCount(u32),
    /// `basic.get`: a message, or `None` when the queue was empty.
    Get(Option<Delivery>),
    /// Every queue of a consumer is registered: its consumer tags.
    ConsumerTags(Vec<ShortString>),
}

/// What the connection reports to its caller.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// An operation finished; its tag will not be seen again (except a
    /// consumer's, which ends with this).
    Complete {
        /// The operation's tag.
        tag: Tag,
        /// Its result.
        result: Result<Outcome, Error>,
    },
    /// A consumer received a message.
    Delivery {
        /// The consume operation's tag.
        tag: Tag,
        /// The message.
        delivery: Delivery,
    },
    /// A consumer was cancelled by the user; no more deliveries come for it.
    ConsumerEnded {
        /// The consume operation's tag.
        tag: Tag,
    },
    /// A mandatory message came back while confirms are off.
    Returned(Box<Returned>),
    /// The broker blocked publishing (`connection.blocked`), with its reason.
    Blocked(String),
    /// The broker lifted the block (`connection.unblocked`).
    Unblocked,
    /// The broker closed the publish channel while no pending operation
    /// could carry the error (publishes without confirms had resolved),
    /// e.g. after a publish to a missing exchange. The next publish opens a
    /// new channel.
    PublishChannelClosed(Error),
    /// The connection is finished; every pending operation has been failed.
    Closed(Error),
}

/// The most idle pooled channels kept open; a channel going idle beyond it
/// is closed.
pub const MAX_IDLE_CHANNELS: usize = 16;

/// The most pooled operations that wait for a channel (all `channel_max`
/// channels in use); beyond it an operation fails with
/// [`Error::WouldBlock`].
pub const MAX_WAITING_OPERATIONS: usize = 65_536;

/// A pooled operation waiting for a channel.
#[derive(Debug)]
enum Waiting {
    Rpc {
        tag: Tag,
        method: Method,
    },
    Get {
        tag: Tag,
        queue: ShortString,
        no_ack: bool,
    },
}

/// The reply that completes a pooled-channel method, or `None` for a
/// method that is not one.
fn pool_reply(method: &Method) -> Option<u16> {
    Some(match method {
        Method::ExchangeDeclare(_) => ExchangeDeclareOk::METHOD_ID,
        Method::ExchangeDelete(_) => ExchangeDeleteOk::METHOD_ID,
        Method::ExchangeBind(_) => ExchangeBindOk::METHOD_ID,
        Method::ExchangeUnbind(_) => ExchangeUnbindOk::METHOD_ID,
        Method::QueueDeclare(_) => QueueDeclareOk::METHOD_ID,
        Method::QueueBind(_) => QueueBindOk::METHOD_ID,
        Method::QueueUnbind(_) => QueueUnbindOk::METHOD_ID,
        Method::QueuePurge(_) => QueuePurgeOk::METHOD_ID,
        Method::QueueDelete(_) => QueueDeleteOk::METHOD_ID,
        _ => return None,
    })
}

/// Whether transactions are in use (RabbitMQ's `tx` class).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxState {
    /// No `tx.select` succeeded.
    Off,
    /// The publish channel is transactional, and so is every channel that
    /// holds deliveries.
    Active,
}

/// A commit or rollback spanning several channels.
#[derive(Debug)]
struct TxGroup {
    group: u64,
    tag: Tag,
    remaining: usize,
    error: Option<Error>,
}

/// One queue of a consume operation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsumeQueue {
    /// The queue to consume from.
    pub queue: ShortString,
    /// The consumer tag; empty lets the broker choose one.
    pub consumer_tag: ShortString,
    /// Don't deliver messages published on this connection.
    pub no_local: bool,
    /// Request exclusive access to the queue.
    pub exclusive: bool,
    /// Consumer arguments (e.g. `x-priority`).
    pub arguments: FieldTable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitStart,
    AwaitSecureOrTune,
    AwaitOpenOk,
    Open,
    /// A graceful close: no new operations; replies and confirms of those
    /// in flight are awaited until `deadline`, then `connection.close` goes
    /// out and `tag` completes on its `close-ok`.
    Draining {
        tag: Tag,
        deadline: Instant,
    },
    /// We sent `connection.close` and wait for `close-ok`.
    Closing,
    Closed,
}

impl State {
    /// Open for frames: the handshake is done and no close was sent.
    fn is_live(self) -> bool {
        matches!(self, State::Open | State::Draining { .. })
    }
}

const READ_CHUNK: usize = 64 * 1024;

/// How long a graceful close that used its whole timeout still waits for
/// the broker's `close-ok`.
pub const CLOSE_OK_GRACE: Duration = Duration::from_millis(500);

/// The longest a consumer's ack waits for a write to ride on.
pub const ACK_DELAY: Duration = Duration::from_millis(5);

/// The window taken for a consumer without a prefetch limit, for deciding
/// how many acks may wait.
const UNLIMITED_WINDOW: usize = 2000;
/// RabbitMQ's pseudo-queue for direct reply-to.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";
const CLASS_BASIC: u16 = 60;

/// `text` cut to at most `max` bytes at a character boundary.
fn truncate_utf8(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The next channel epoch: unique across every connection of the process
/// (a `u32` that wraps after four billion channel opens).
fn next_epoch() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static EPOCHS: AtomicU32 = AtomicU32::new(1);
    EPOCHS.fetch_add(1, Ordering::Relaxed)
}

/// The AMQP 0-9-1 client protocol state machine. See the module docs.
///
/// Its `Debug` shows state and sizes, never buffered bytes (see `debug.rs`).
pub struct Connection {
    config: Config,
    state: State,
    tuned: Tuned,
    read_buf: BytesMut,
    scratch: Box<[u8]>,
    write_buf: BytesMut,
    /// Channel frames queued before `connection.open-ok`.
    deferred: BytesMut,
    deferred_marks: Vec<(usize, Tag)>,
    written_total: u64,
    /// Non-confirmed publishes, resolved when the socket has taken their bytes.
    flush_marks: VecDeque<(u64, Tag)>,
    /// Publishes (confirms off) whose bytes were all written: completed, to
    /// be reported by `poll_written` or `poll_event`.
    written: VecDeque<Tag>,
    events: VecDeque<Event>,
    channels: Vec<Option<Channel>>,
    free_ids: Vec<u16>,
    idle: Vec<u16>,
    publish_channel: Option<u16>,
    /// Channels holding a coalesced ack not yet encoded.
    ack_channels: Vec<u16>,
    /// A coalesced ack that must go out at the next write (its consumer's
    /// window is half used, or it is not on a consumer with a window).
    acks_due: bool,
    /// When deferred acks go out even if nothing else is written.
    ack_deadline: Option<Instant>,
    /// Transactions: whether the publish channel is (to be) transactional.
    tx: TxState,
    /// Pooled channels that hold unsettled `basic.get` deliveries, by queue:
    /// the next get of that queue runs there.
    held_gets: std::collections::HashMap<ShortString, u16>,
    /// Commits and rollbacks in flight, each spanning several channels.
    tx_groups: Vec<TxGroup>,
    next_tx_group: u64,
    connect_tag: Option<Tag>,
    close_tag: Option<Tag>,
    server_properties: FieldTable,
    confirms: bool,
    dead: Option<Error>,
    // Timers.
    got_input: bool,
    last_recv: Instant,
    next_heartbeat: Option<Instant>,
    sent_since_heartbeat: bool,
    handshake_deadline: Option<Instant>,
    close_deadline: Option<Instant>,
    /// Since when the broker has blocked the connection, if it has.
    blocked: Option<Instant>,
    /// `connection.update-secret` operations awaiting their `-ok`, in order.
    secret_updates: VecDeque<Tag>,
    /// Pooled operations waiting for a channel (every channel is in use).
    waiting: VecDeque<Waiting>,
}

impl Connection {
    /// Starts a connection: queues the protocol header; `connect_tag`
    /// completes when `connection.open-ok` arrives.
    pub fn new(config: Config, connect_tag: Tag, now: Instant) -> Connection {
        let mut write_buf = BytesMut::with_capacity(READ_CHUNK);
        write_buf.extend_from_slice(&frame::PROTOCOL_HEADER);
        let handshake_deadline = config.connect_timeout.map(|t| now + t);
        Connection {
            config,
            state: State::AwaitStart,
            tuned: Tuned {
                channel_max: negotiate::DEFAULT_CHANNEL_MAX,
                frame_max: FRAME_MIN_SIZE,
                heartbeat: 0,
            },
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            write_buf,
            deferred: BytesMut::new(),
            deferred_marks: Vec::new(),
            written_total: 0,
            flush_marks: VecDeque::new(),
            written: VecDeque::new(),
            events: VecDeque::new(),
            channels: Vec::new(),
            free_ids: Vec::new(),
            idle: Vec::new(),
            publish_channel: None,
            ack_channels: Vec::new(),
            acks_due: false,
            ack_deadline: None,
            tx: TxState::Off,
            held_gets: std::collections::HashMap::new(),
            tx_groups: Vec::new(),
            next_tx_group: 0,
            connect_tag: Some(connect_tag),
            close_tag: None,
            server_properties: FieldTable::new(),
            confirms: false,
            dead: None,
            got_input: false,
            last_recv: now,
            next_heartbeat: None,
            sent_since_heartbeat: false,
            handshake_deadline,
            close_deadline: None,
            blocked: None,
            secret_updates: VecDeque::new(),
            waiting: VecDeque::new(),
        }
    }

    // ------------------------------------------------------------------
    // Getters.

    /// Whether the handshake finished and the connection is usable.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Whether the connection is finished (closed or failed).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The error that ended the connection, if it has ended.
    pub fn error(&self) -> Option<&Error> {
        self.dead.as_ref()
    }

    /// The negotiated limits (before tuning: the spec's minimums).
    pub fn tuned(&self) -> Tuned {
        self.tuned
    }

    /// The broker's `server_properties` from `connection.start`.
    pub fn server_properties(&self) -> &FieldTable {
        &self.server_properties
    }

    /// Whether publishes are confirmed by the broker.
    pub fn confirms_enabled(&self) -> bool {
        self.confirms
    }

    /// Whether the broker has blocked publishing.
    pub fn is_blocked(&self) -> bool {
        self.blocked.is_some()
    }

    /// Publishes sent and not yet confirmed by the broker.
    pub fn unconfirmed_count(&self) -> usize {
        self.publish_channel
            .and_then(|ch| self.channels.get(usize::from(ch))?.as_ref())
            .map_or(0, |c| c.unconfirmed.len())
    }

    /// Pooled operations waiting for a channel to free up.
    pub fn waiting_count(&self) -> usize {
        self.waiting.len()
    }

    /// Bytes queued for the socket and not yet written.
    pub fn pending_write_bytes(&self) -> usize {
        self.write_buf.len() + self.deferred.len()
    }

    /// Number of channels currently open or opening.
    pub fn open_channels(&self) -> usize {
        self.channels.iter().filter(|c| c.is_some()).count()
    }

    // ------------------------------------------------------------------
    // Input.

    /// Reads once from `r` into the read buffer. Returns what `read` returned
    /// (0 means the peer closed; call [`Connection::handle_eof`]).
    ///
    /// # Errors
    /// Whatever `r.read` returns, including `WouldBlock`.
    pub fn read_from(&mut self, r: &mut dyn Read) -> io::Result<usize> {
        // Read into a scratch buffer zeroed once (no `unsafe`, so no reads
        // into uninitialised capacity), then append only what arrived.
        let n = r.read(&mut self.scratch)?;
        if n > 0 {
            if self.read_buf.capacity() - self.read_buf.len() < n {
                // Grow by a frame and a read at once, so a frame split
                // across reads is moved rarely; the frame counted as no
                // larger than what is buffered plus a read (memory follows
                // the bytes that arrive, not frame_max).
                let frame = (self.tuned.frame_max as usize).min(self.read_buf.len() + READ_CHUNK);
                self.read_buf.reserve(n.max(frame + READ_CHUNK));
            }
            self.read_buf.extend_from_slice(&self.scratch[..n]);
            self.got_input = true;
        }
        Ok(n)
    }

    /// How many bytes one [`Connection::read_from`] asks for: a read that
    /// returns fewer took everything the socket had.
    pub fn read_capacity(&self) -> usize {
        self.scratch.len()
    }

    /// Queues every coalesced ack now, deferred or not (before the caller
    /// lets the connection go without closing it).
    pub fn release_acks(&mut self) {
        self.emit_pending_acks();
    }

    /// When the acks that are waiting must go out at the latest (`None`:
    /// none wait). [`Connection::poll_timeout`] includes it.
    pub fn ack_deadline(&self) -> Option<Instant> {
        self.ack_deadline.filter(|_| !self.ack_channels.is_empty())
    }

    /// Appends received bytes (for callers that read elsewhere, and tests).
    pub fn handle_bytes(&mut self, data: &[u8]) {
        if !data.is_empty() {
            self.read_buf.extend_from_slice(data);
            self.got_input = true;
        }
    }

    /// Decodes and handles every complete frame in the read buffer.
    pub fn handle_input(&mut self, now: Instant) {
        if self.got_input {
            self.got_input = false;
            self.last_recv = now;
        }
        if self.state == State::AwaitStart && !self.not_amqp_check() {
            return;
        }
        // The read buffer is split once per batch of whole frames (not once
        // per frame); payloads are parsed in place.
        'batches: while self.state != State::Closed {
            let frame_max = self.tuned.frame_max;
            let result = match frame::split_frames(&mut self.read_buf, frame_max) {
                Ok(whole) if whole.is_empty() => break,
                Ok(whole) => {
                    let mut result = Ok(());
                    for f in frame::frames(&whole) {
                        if self.state == State::Closed {
                            break 'batches;
                        }
                        result = self.handle_frame(f);
                        if result.is_err() {
                            break;
                        }
                    }
                    result
                }
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                self.read_buf.clear();
                if self.state == State::Closing {
                    // Garbage after our close: give up waiting for close-ok.
                    self.finish(Error::Protocol(e));
                } else {
                    let code = e.reply_code();
                    self.violation(code, e.to_string(), Error::Protocol(e));
                }
                break;
            }
        }
        self.poll_drain(now);
    }

    /// Before `connection.start`, a server sends a method frame or (when it
    /// cannot speak 0-9-1) a protocol header; anything else is not AMQP.
    /// Returns false when decoding must wait or stop.
    fn not_amqp_check(&mut self) -> bool {
        let first = match self.read_buf.first() {
            None => return false,
            Some(&b) => b,
        };
        if first == frame::FRAME_METHOD || first == b'A' {
            return true;
        }
        if self.read_buf.len() < 8 {
            return false;
        }
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.read_buf[..8]);
        self.read_buf.clear();
        let e = CodecError::NotAmqp(head);
        self.violation(e.reply_code(), e.to_string(), Error::Protocol(e));
        false
    }

    /// The peer closed its side (a read returned 0).
    pub fn handle_eof(&mut self) {
        self.handle_io_error(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed by peer",
        ));
    }

    /// The socket failed: every pending operation fails with
    /// [`Error::ConnectionBroken`].
    pub fn handle_io_error(&mut self, e: io::Error) {
        if self.state == State::Closing && self.close_tag.is_some() && self.dead.is_none() {
            // The broker may drop the socket right after close-ok.
            self.finish(Error::ConnectionClosed);
            return;
        }
        if self.state == State::AwaitSecureOrTune
            && e.kind() == io::ErrorKind::UnexpectedEof
            && !self.server_capability("authentication_failure_close")
        {
            // Brokers without authentication_failure_close drop the socket
            // after a bad login. (With it, as RabbitMQ has, a refused login
            // comes as connection.close 403: an end of stream is just a
            // broken connection.)
            self.finish(Error::AccessRefused(Reply {
                connection: true,
                ..Reply::new(
                    reply_code::ACCESS_REFUSED,
                    "connection closed during authentication (bad credentials?)",
                )
            }));
            return;
        }
        self.finish(Error::io(e));
    }

    /// Whether the broker's `connection.start` advertised `capability`.
    fn server_capability(&self, capability: &str) -> bool {
        self.server_properties
            .get("capabilities")
            .and_then(|c| c.as_table())
            .and_then(|c| c.get(capability))
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }

    /// When [`Connection::handle_timeout`] next needs to be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let mut t = self.handshake_deadline;
        let mut earliest = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t: Instant| t.min(x)));
            }
        };
        earliest(self.close_deadline);
        earliest(self.ack_deadline());
        if let State::Draining { deadline, .. } = self.state {
            earliest(Some(deadline));
        }
        earliest(self.blocked_deadline());
        if self.tuned.heartbeat > 0 && (self.state.is_live() || self.state == State::Closing) {
            earliest(Some(self.next_heartbeat.unwrap_or(self.last_recv)));
            earliest(Some(self.last_recv + self.dead_after()));
        }
        t
    }

    /// When a blocked connection is given up ([`Config::blocked_timeout`]).
    fn blocked_deadline(&self) -> Option<Instant> {
        Some(self.blocked? + self.config.blocked_timeout?)
    }

    fn dead_after(&self) -> Duration {
        Duration::from_secs(u64::from(self.tuned.heartbeat) * 2)
    }

    /// Fires the timers due at `now`: heartbeats to send, a peer silent for
    /// two heartbeat intervals, a handshake or close that took too long.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if self.got_input {
            self.got_input = false;
            self.last_recv = now;
        }
        if self.handshake_deadline.is_some_and(|d| now >= d) {
            self.finish(Error::ConnectTimeout);
            return;
        }
        if self.blocked_deadline().is_some_and(|d| now >= d) {
            // The broker is not reading: a connection.close would not be
            // read either. The socket is dropped.
            let limit = self.config.blocked_timeout.unwrap_or_default();
            self.finish(Error::BlockedTimeout(limit));
            return;
        }
        if self.ack_deadline.is_some_and(|d| now >= d) {
            self.emit_pending_acks();
        }
        self.poll_drain(now);
        if self.close_deadline.is_some_and(|d| now >= d) {
            let e = if self.close_tag.is_some() {
                Error::ConnectionClosed
            } else {
                self.dead.clone().unwrap_or(Error::ConnectionClosed)
            };
            self.finish(e);
            return;
        }
        if self.tuned.heartbeat == 0 || !(self.state.is_live() || self.state == State::Closing) {
            return;
        }
        if now >= self.last_recv + self.dead_after() {
            self.finish(Error::HeartbeatTimeout(self.dead_after()));
            return;
        }
        let interval = Duration::from_millis(u64::from(self.tuned.heartbeat) * 500);
        match self.next_heartbeat {
            Some(t) if now < t => {}
            _ => {
                if !self.sent_since_heartbeat {
                    frame::encode_heartbeat(&mut self.write_buf);
                }
                self.sent_since_heartbeat = false;
                self.next_heartbeat = Some(now + interval);
            }
        }
    }

    /// Moves the handshake deadline (set by [`Connection::new`] from
    /// [`Config::connect_timeout`]): `None` stops the timer while the
    /// transport is still being set up (a TCP connect under its own
    /// timeout, maybe to the next of several addresses); a deadline
    /// restarts it, e.g. once the transport is up. Does nothing once the
    /// broker has spoken.
    pub fn set_handshake_deadline(&mut self, deadline: Option<Instant>) {
        if self.state == State::AwaitStart && self.read_buf.is_empty() {
            self.handshake_deadline = deadline;
        }
    }

    // ------------------------------------------------------------------
    // Output.

    /// Whether frames are waiting for the socket.
    pub fn wants_write(&self) -> bool {
        !self.write_buf.is_empty() || (self.acks_due && !self.ack_channels.is_empty())
    }

    /// Writes queued frames to `w` until it would block or the queue is
    /// empty. Publishes without confirms complete once their bytes are taken.
    ///
    /// # Errors
    /// The first error `w.write` returns other than `WouldBlock` and
    /// `Interrupted`.
    pub fn write_to(&mut self, w: &mut dyn Write) -> io::Result<usize> {
        self.emit_pending_acks();
        let mut total = 0;
        while !self.write_buf.is_empty() {
            match w.write(&self.write_buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    // `split_to`, not `advance`: the written front is let
                    // go, so a buffer that keeps some bytes queued does not
                    // grow by doubling (`advance` cost 2× the peak memory
                    // publishing 1 M × 1 KiB).
                    let _ = self.write_buf.split_to(n);
                    total += n;
                    self.written_total += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.write_buf.is_empty() && self.write_buf.capacity() > 4 * READ_CHUNK {
            // Give back a buffer a burst grew.
            self.write_buf = BytesMut::with_capacity(READ_CHUNK);
        }
        while let Some(&(pos, tag)) = self.flush_marks.front() {
            if pos > self.written_total {
                break;
            }
            self.flush_marks.pop_front();
            self.written.push_back(tag);
        }
        if matches!(self.state, State::Draining { .. }) && self.flush_marks.is_empty() {
            self.poll_drain(self.last_recv);
        }
        Ok(total)
    }

    /// Takes every queued byte (for tests and callers that write elsewhere);
    /// counts as written.
    pub fn take_output(&mut self) -> Bytes {
        let mut out = Vec::new();
        let _ = self.write_to(&mut out);
        Bytes::from(out)
    }

    /// The next event for the caller.
    ///
    /// Publishes made while confirms are off complete once written; they
    /// come first, as `Event::Complete` with `Ok(Outcome::Done)`, unless
    /// [`Connection::poll_written`] took them.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(tag) = self.written.pop_front() {
            return Some(Event::Complete {
                tag,
                result: Ok(Outcome::Done),
            });
        }
        self.events.pop_front()
    }

    /// The next publish made while confirms are off whose bytes were all
    /// written (it succeeded as far as the client can know): the cheap way
    /// to take what [`Connection::poll_event`] would otherwise report as an
    /// `Event::Complete`, for a caller publishing millions.
    pub fn poll_written(&mut self) -> Option<Tag> {
        self.written.pop_front()
    }

    /// The next event, only if it is a delivery to the consumer `tag`: a
    /// caller waiting on that consumer takes it straight from the queue.
    pub fn poll_delivery(&mut self, tag: Tag) -> Option<Delivery> {
        if !self.delivery_is_next(tag) {
            return None;
        }
        match self.events.pop_front() {
            Some(Event::Delivery { delivery, .. }) => Some(delivery),
            _ => None,
        }
    }

    /// Whether anything waits for [`Connection::poll_event`] (written
    /// publishes included).
    pub fn has_events(&self) -> bool {
        !self.written.is_empty() || !self.events.is_empty()
    }

    /// Whether the next event is a delivery to the consumer `tag`.
    pub fn delivery_is_next(&self, tag: Tag) -> bool {
        matches!(self.events.front(), Some(Event::Delivery { tag: t, .. }) if *t == tag)
    }

    // ------------------------------------------------------------------
    // Commands.

    /// Runs a synchronous exchange or queue method on a pooled channel:
    /// `exchange.declare/delete/bind/unbind`, `queue.declare/bind/unbind/
    /// purge/delete`. `tag` completes with the reply.
    pub fn rpc(&mut self, tag: Tag, mut method: Method) {
        if self.refuse(tag) {
            return;
        }
        // Every operation completes on its reply, so none is sent no-wait.
        match &mut method {
            Method::ExchangeDeclare(m) => m.no_wait = false,
            Method::ExchangeDelete(m) => m.no_wait = false,
            Method::ExchangeBind(m) => m.no_wait = false,
            Method::ExchangeUnbind(m) => m.no_wait = false,
            Method::QueueDeclare(m) => m.no_wait = false,
            Method::QueueBind(m) => m.no_wait = false,
            Method::QueuePurge(m) => m.no_wait = false,
            Method::QueueDelete(m) => m.no_wait = false,
            _ => {}
        }
        if pool_reply(&method).is_none() {
            self.complete(
                tag,
                Err(Error::InvalidArgument(CodecError::InvalidValue(
                    "not a pooled-channel method",
                ))),
            );
            return;
        }
        match self.take_pooled_channel() {
            Some(ch) => self.send_rpc(ch, tag, method),
            None => self.wait_for_channel(Waiting::Rpc { tag, method }),
        }
    }

    /// Sends a pooled-channel method on `ch`; `tag` completes with the reply.
    fn send_rpc(&mut self, ch: u16, tag: Tag, method: Method) {
        let reply = pool_reply(&method).unwrap_or_default();
        let class = method.class_id();
        if self.send_method(ch, &method).is_err() {
            self.release_on_encode_error(ch, tag);
            return;
        }
        self.chan(ch).expect.push_back(Expect::Op {
            tag,
            class,
            method: reply,
        });
    }

    /// `basic.get` on a pooled channel; completes with [`Outcome::Get`].
    pub fn basic_get(&mut self, tag: Tag, queue: &str, no_ack: bool) {
        if self.refuse(tag) {
            return;
        }
        let queue = ShortString::from(queue);
        // A message that needs an ack pins its channel until it is settled
        // (a channel error would take the message back): while a
        // transaction is selected the get runs on the transactional publish
        // channel; otherwise on the channel already holding messages of this
        // queue, or on a pooled one.
        let channel = if self.tx == TxState::Active && !no_ack {
            self.publish_channel()
        } else {
            match self.held_gets.get(&queue) {
                Some(&ch) if !no_ack => Some(ch),
                _ => self.take_pooled_channel(),
            }
        };
        match channel {
            Some(ch) => self.send_get(ch, tag, queue, no_ack),
            None => self.wait_for_channel(Waiting::Get { tag, queue, no_ack }),
        }
    }

    /// Every channel is in use: the operation waits for one to be freed
    /// (up to [`MAX_WAITING_OPERATIONS`]).
    fn wait_for_channel(&mut self, op: Waiting) {
        if self.waiting.len() >= MAX_WAITING_OPERATIONS {
            let tag = match op {
                Waiting::Rpc { tag, .. } | Waiting::Get { tag, .. } => tag,
            };
            self.complete(tag, Err(Error::WouldBlock));
            return;
        }
        self.waiting.push_back(op);
    }

    fn fail_waiting(&mut self, err: Error) {
        for op in std::mem::take(&mut self.waiting) {
            let tag = match op {
                Waiting::Rpc { tag, .. } | Waiting::Get { tag, .. } => tag,
            };
            self.complete(tag, Err(err.clone()));
        }
    }

    /// Starts waiting operations while channels are available.
    fn dispatch_waiting(&mut self) {
        while !self.waiting.is_empty() && self.state.is_live() {
            let Some(ch) = self.take_pooled_channel() else {
                return;
            };
            match self.waiting.pop_front() {
                Some(Waiting::Rpc { tag, method }) => self.send_rpc(ch, tag, method),
                Some(Waiting::Get { tag, queue, no_ack }) => self.send_get(ch, tag, queue, no_ack),
                None => return,
            }
        }
    }

    fn send_get(&mut self, ch: u16, tag: Tag, queue: ShortString, no_ack: bool) {
        let m = Method::BasicGet(BasicGet {
            queue: queue.clone(),
            no_ack,
        });
        if self.send_method(ch, &m).is_err() {
            self.release_on_encode_error(ch, tag);
            return;
        }
        self.chan(ch)
            .expect
            .push_back(Expect::Get { tag, no_ack, queue });
    }

    /// Publishes a message on the publish channel. With confirms, `tag`
    /// completes on the broker's ack (or fails on a nack, or with
    /// [`Error::NoRoute`] for a returned mandatory message); without, once
    /// the frames are handed to the socket.
    #[allow(clippy::too_many_arguments)]
    pub fn publish(
        &mut self,
        tag: Tag,
        exchange: &str,
        routing_key: &str,
        mandatory: bool,
        immediate: bool,
        properties: &BasicProperties,
        body: &[u8],
    ) {
        if self.refuse(tag) {
            return;
        }
        // RabbitMQ's direct reply-to: a request naming the pseudo-queue must
        // go on the channel that consumes from it (never in confirm mode).
        let direct = properties.reply_to() == Some(DIRECT_REPLY_TO);
        let channel = if direct {
            self.direct_reply_channel()
        } else {
            self.publish_channel()
        };
        let Some(ch) = channel else {
            self.complete(tag, Err(self.no_channel_error()));
            return;
        };
        let open = self.state.is_live();
        let frame_max = self.tuned.frame_max;
        let out = if open {
            &mut self.write_buf
        } else {
            &mut self.deferred
        };
        if let Err(e) = frame::encode_basic_publish(
            out,
            ch,
            exchange,
            routing_key,
            mandatory,
            immediate,
            properties,
            body,
            frame_max,
        ) {
            self.complete(tag, Err(Error::InvalidArgument(e)));
            return;
        }
        self.sent_since_heartbeat = true;
        let confirms = self.confirms && self.tx == TxState::Off && !direct;
        if confirms {
            let c = self.chan(ch);
            c.next_seq += 1;
            let seq = c.next_seq;
            c.unconfirmed.push_back(Unconfirmed { seq, tag });
        } else if open {
            let pos = self.written_total + self.write_buf.len() as u64;
            self.flush_marks.push_back((pos, tag));
        } else {
            self.deferred_marks.push((self.deferred.len(), tag));
        }
    }

    /// Starts a consumer over one or more queues on a channel of its own.
    /// Deliveries come as [`Event::Delivery`] with `tag`; the consumer ends
    /// with an [`Event::Complete`] carrying an error (the broker cancelled
    /// it, or its channel or the connection closed) or with
    /// [`Event::ConsumerEnded`] after [`Connection::cancel`].
    pub fn consume(
        &mut self,
        tag: Tag,
        queues: Vec<ConsumeQueue>,
        no_ack: bool,
        prefetch_count: u16,
    ) {
        if self.refuse(tag) {
            return;
        }
        // RabbitMQ answers a consumer tag used twice on one channel with
        // 530 NOT_ALLOWED, which closes the whole connection: refuse it here,
        // before anything is sent.
        for (i, q) in queues.iter().enumerate() {
            if !q.consumer_tag.is_empty()
                && queues[..i].iter().any(|p| p.consumer_tag == q.consumer_tag)
            {
                self.complete(
                    tag,
                    Err(Error::InvalidArgument(CodecError::InvalidValue(
                        "the same consumer tag is given for two queues of one consumer",
                    ))),
                );
                return;
            }
        }
        if queues.is_empty() {
            self.complete(
                tag,
                Err(Error::InvalidArgument(CodecError::InvalidValue(
                    "a consumer needs at least one queue",
                ))),
            );
            return;
        }
        let mut consumer = Consumer::new(tag, no_ack);
        consumer.prefetch = prefetch_count;
        consumer.direct_reply_to = queues.iter().any(|q| q.queue == DIRECT_REPLY_TO);
        let Some(ch) = self.open_channel(Role::Consumer(consumer)) else {
            self.complete(tag, Err(self.no_channel_error()));
            return;
        };
        if self.tx == TxState::Active && !no_ack {
            // Acks are transactional like publishes while a transaction is
            // selected (see `tx_select`).
            self.select_tx(ch);
        }
        if prefetch_count > 0 {
            let m = Method::BasicQos(BasicQos {
                prefetch_size: 0,
                prefetch_count,
                global: false,
            });
            let _ = self.send_method(ch, &m);
            self.chan(ch).expect.push_back(Expect::Qos(None));
        }
        let epoch = self.chan(ch).epoch;
        for (i, q) in queues.into_iter().enumerate() {
            // Every queue gets a tag chosen here, so the consume-ok (which
            // RabbitMQ may send out of order) and a later server cancel name
            // the queue they are about.
            let consumer_tag = if q.consumer_tag.is_empty() {
                ShortString::from(format!("puka.ctag-{epoch:08x}.{i}"))
            } else {
                q.consumer_tag
            };
            let m = Method::BasicConsume(BasicConsume {
                queue: q.queue.clone(),
                consumer_tag: consumer_tag.clone(),
                no_local: q.no_local,
                no_ack,
                exclusive: q.exclusive,
                no_wait: false,
                arguments: q.arguments,
            });
            if let Err(e) = self.send_method(ch, &m) {
                self.fail_channel(ch, Error::InvalidArgument(e));
                return;
            }
            let c = self.chan(ch);
            c.expect.push_back(Expect::ConsumeOk);
            if let Role::Consumer(k) = &mut c.role {
                k.pending.push_back(TagQueue {
                    tag: consumer_tag,
                    queue: q.queue,
                });
            }
        }
    }

    /// Completes `tag` with [`Outcome::ConsumerTags`] once every queue of the
    /// consumer started by `consume_tag` is registered at the broker (its
    /// `basic.consume-ok` arrived), or fails it when the consumer fails
    /// first.
    pub fn consumer_ready(&mut self, tag: Tag, consume_tag: Tag) {
        if self.refuse(tag) {
            return;
        }
        let Some(ch) = self.consumer_channel(consume_tag) else {
            self.complete(tag, Err(Error::UnknownPromise));
            return;
        };
        let Role::Consumer(k) = &mut self.chan(ch).role else {
            return;
        };
        if k.ended {
            self.complete(tag, Err(Error::UnknownPromise));
        } else if k.pending.is_empty() {
            let tags = k.tags.iter().map(|t| t.tag.clone()).collect();
            self.complete(tag, Ok(Outcome::ConsumerTags(tags)));
        } else {
            k.ready_waiters.push(tag);
        }
    }

    /// Cancels the consumer started by `consume_tag`; `tag` completes when
    /// the broker confirms, and the consumer then ends with
    /// [`Event::ConsumerEnded`].
    pub fn cancel(&mut self, tag: Tag, consume_tag: Tag) {
        if self.refuse(tag) {
            return;
        }
        let Some(ch) = self.consumer_channel(consume_tag) else {
            self.complete(tag, Err(Error::UnknownPromise));
            return;
        };
        let tags = match &mut self.chan(ch).role {
            Role::Consumer(c) if c.cancelling.is_some() || c.ended => {
                // Already cancelled or being cancelled: nothing to send.
                self.complete(tag, Ok(Outcome::Done));
                return;
            }
            Role::Consumer(c) => {
                c.cancelling = Some(tag);
                c.tags.iter().map(|t| t.tag.clone()).collect()
            }
            _ => Vec::new(),
        };
        // Consumers whose consume-ok has not arrived yet are cancelled when
        // it does (see on_consume_ok).
        for ctag in tags {
            let m = Method::BasicCancel(BasicCancel {
                consumer_tag: ctag,
                no_wait: false,
            });
            let _ = self.send_method(ch, &m);
            self.chan(ch).expect.push_back(Expect::CancelOk);
        }
        self.maybe_end_consumer(ch);
    }

    /// `basic.qos` on the channel of the consumer started by `consume_tag`.
    pub fn qos(
        &mut self,
        tag: Tag,
        consume_tag: Tag,
        prefetch_size: u32,
        prefetch_count: u16,
        global: bool,
    ) {
        if self.refuse(tag) {
            return;
        }
        let Some(ch) = self.consumer_channel(consume_tag) else {
            self.complete(tag, Err(Error::UnknownPromise));
            return;
        };
        let m = Method::BasicQos(BasicQos {
            prefetch_size,
            prefetch_count,
            global,
        });
        let _ = self.send_method(ch, &m);
        let c = self.chan(ch);
        c.expect.push_back(Expect::Qos(Some(tag)));
        if let Role::Consumer(k) = &mut c.role {
            // The window the broker applies is no longer known for sure:
            // acks on this channel are no longer deferred.
            k.prefetch = 1;
        }
    }

    /// `basic.recover` on the channel of the consumer started by
    /// `consume_tag`: the broker redelivers its unacknowledged messages.
    pub fn recover(&mut self, tag: Tag, consume_tag: Tag, requeue: bool) {
        if self.refuse(tag) {
            return;
        }
        let Some(ch) = self.consumer_channel(consume_tag) else {
            self.complete(tag, Err(Error::UnknownPromise));
            return;
        };
        let m = Method::BasicRecover(BasicRecover { requeue });
        let _ = self.send_method(ch, &m);
        let c = self.chan(ch);
        c.unacked.clear();
        c.expect.push_back(Expect::Op {
            tag,
            class: CLASS_BASIC,
            method: BasicRecoverOk::METHOD_ID,
        });
    }

    /// Acknowledges a delivery (and, with `multiple`, every earlier one on
    /// its channel).
    ///
    /// # Errors
    /// [`Error::UnknownDeliveryTag`] when the delivery is not outstanding
    /// (already settled, no-ack, or its channel is gone); nothing is sent.
    pub fn ack(&mut self, delivery: &Delivery, multiple: bool) -> Result<(), Error> {
        self.settle(delivery, multiple, true, |delivery_tag| {
            Method::BasicAck(BasicAck {
                delivery_tag,
                multiple,
            })
        })
    }

    /// Rejects a delivery (and, with `multiple`, every earlier one), putting
    /// it back in the queue when `requeue`.
    ///
    /// # Errors
    /// As [`Connection::ack`].
    pub fn nack(
        &mut self,
        delivery: &Delivery,
        multiple: bool,
        requeue: bool,
    ) -> Result<(), Error> {
        self.settle(delivery, multiple, false, |delivery_tag| {
            Method::BasicNack(BasicNack {
                delivery_tag,
                multiple,
                requeue,
            })
        })
    }

    /// Rejects one delivery, putting it back in the queue when `requeue`.
    ///
    /// # Errors
    /// As [`Connection::ack`].
    pub fn reject(&mut self, delivery: &Delivery, requeue: bool) -> Result<(), Error> {
        self.settle(delivery, false, false, |delivery_tag| {
            Method::BasicReject(BasicReject {
                delivery_tag,
                requeue,
            })
        })
    }

    /// `tx.select`: publishes, and the acks, nacks and rejects of every
    /// delivery received, become transactional until the connection ends
    /// (`tx_commit` applies them, `tx_rollback` discards them). The broker
    /// refuses it on a channel already in confirm mode, so use it with
    /// [`Confirms::Off`].
    ///
    /// It selects the publish channel, and once that succeeds every channel
    /// holding deliveries (consumers' and `basic.get`'s) before `tag`
    /// completes; consumers started later are selected as they open, and
    /// `basic.get` then runs on the publish channel.
    pub fn tx_select(&mut self, tag: Tag) {
        if self.refuse(tag) {
            return;
        }
        let Some(ch) = self.publish_channel() else {
            self.complete(tag, Err(self.no_channel_error()));
            return;
        };
        let _ = self.send_method(ch, &Method::TxSelect(TxSelect {}));
        // Transaction mode starts with tx.select-ok: a refused select
        // (e.g. on a confirm channel) leaves publishing as it was.
        self.chan(ch)
            .expect
            .push_back(Expect::TxSelectOk(Some(tag)));
    }

    /// The publish channel is transactional: so become the channels that
    /// hold deliveries.
    fn on_tx_select_ok(&mut self, tag: Tag) {
        self.tx = TxState::Active;
        if let Some(ch) = self.publish_channel {
            self.chan(ch).tx = true;
        }
        let others: Vec<u16> = self
            .channels
            .iter()
            .flatten()
            .filter(|c| {
                !c.tx
                    && !c.closing
                    && match &c.role {
                        Role::Consumer(k) => !k.no_ack && !k.ended,
                        Role::Pool => c.held_get.is_some(),
                        Role::Publish => false,
                    }
            })
            .map(|c| c.id)
            .collect();
        for ch in others {
            self.select_tx(ch);
        }
        self.complete(tag, Ok(Outcome::Done));
    }

    /// Sends `tx.select` on a channel that holds deliveries.
    fn select_tx(&mut self, ch: u16) {
        let _ = self.send_method(ch, &Method::TxSelect(TxSelect {}));
        let c = self.chan(ch);
        c.tx = true;
        c.expect.push_back(Expect::TxSelectOk(None));
    }

    /// `tx.commit` on every transactional channel; `tag` completes when all
    /// have committed (or fails with the first error).
    pub fn tx_commit(&mut self, tag: Tag) {
        self.tx_end(tag, Method::TxCommit(TxCommit {}), false);
    }

    /// `tx.rollback` on every transactional channel. Acks made in the
    /// transaction are undone: those deliveries are outstanding again (the
    /// broker keeps them unacked; ack them again, or they are requeued when
    /// their channel closes).
    pub fn tx_rollback(&mut self, tag: Tag) {
        self.tx_end(tag, Method::TxRollback(TxRollback {}), true);
    }

    fn tx_end(&mut self, tag: Tag, method: Method, rollback: bool) {
        if self.refuse(tag) {
            return;
        }
        let Some(publish) = self.publish_channel() else {
            self.complete(tag, Err(self.no_channel_error()));
            return;
        };
        let mut chans: Vec<u16> = vec![publish];
        chans.extend(
            self.channels
                .iter()
                .flatten()
                .filter(|c| c.tx && !c.closing && c.id != publish)
                .map(|c| c.id),
        );
        let group = self.next_tx_group;
        self.next_tx_group += 1;
        self.tx_groups.push(TxGroup {
            group,
            tag,
            remaining: chans.len(),
            error: None,
        });
        for ch in chans {
            let _ = self.send_method(ch, &method);
            self.chan(ch)
                .expect
                .push_back(Expect::TxEnd { group, rollback });
        }
    }

    /// One channel of the commit or rollback `group` finished (`err`: it
    /// failed); the operation completes with the last.
    fn tx_part_done(&mut self, group: u64, err: Option<Error>) {
        let Some(i) = self.tx_groups.iter().position(|g| g.group == group) else {
            return;
        };
        let g = &mut self.tx_groups[i];
        g.remaining -= 1;
        if g.error.is_none() {
            g.error = err;
        }
        if g.remaining == 0 {
            let g = self.tx_groups.swap_remove(i);
            let result = match g.error {
                Some(e) => Err(e),
                None => Ok(Outcome::Done),
            };
            self.complete(g.tag, result);
        }
    }

    /// `connection.update-secret` (RabbitMQ 3.10+): replaces the secret
    /// the connection authenticated with (a refreshed OAuth 2 token); `tag`
    /// completes on `update-secret-ok`. A secret the broker refuses closes
    /// the connection (RabbitMQ: 530 `NOT_ALLOWED`).
    pub fn update_secret(&mut self, tag: Tag, new_secret: &str, reason: &str) {
        if self.refuse(tag) {
            return;
        }
        if !self.state.is_live() {
            self.complete(
                tag,
                Err(Error::InvalidArgument(CodecError::InvalidValue(
                    "update_secret needs an open connection",
                ))),
            );
            return;
        }
        let m = Method::ConnectionUpdateSecret(ConnectionUpdateSecret {
            new_secret: Bytes::copy_from_slice(new_secret.as_bytes()),
            reason: ShortString::from(truncate_utf8(reason, 255)),
        });
        if let Err(e) = encode_method(self.out(), 0, &m) {
            self.complete(tag, Err(Error::InvalidArgument(e)));
            return;
        }
        self.config.password = new_secret.to_string();
        self.secret_updates.push_back(tag);
    }

    /// Closes the connection gracefully. New operations are refused at once;
    /// the replies and publisher confirms of those in flight are awaited,
    /// then `connection.close` goes out and `tag` completes on `close-ok`.
    /// `timeout` bounds the whole: what is still unsettled when it passes
    /// fails with [`Error::OutcomeUnknown`], and the connection is closed.
    /// Consumers end with [`Error::ConnectionClosed`].
    pub fn close(&mut self, tag: Tag, now: Instant, timeout: Duration) {
        if self.state == State::Open {
            self.state = State::Draining {
                tag,
                deadline: now + timeout,
            };
            self.poll_drain(now);
            return;
        }
        self.close_now(tag, now, timeout);
    }

    /// Closes the connection without waiting for operations in flight:
    /// `connection.close` goes out now, and `tag` completes on `close-ok`
    /// (or when `timeout` passes). Unconfirmed publishes then fail with
    /// [`Error::OutcomeUnknown`], other pending operations with
    /// [`Error::ConnectionClosed`].
    pub fn close_now(&mut self, tag: Tag, now: Instant, timeout: Duration) {
        match self.state {
            State::Draining { tag: first, .. } => {
                // The first close gives up waiting; it completes with this.
                self.close_tag = Some(first);
                self.send_connection_close(reply_code::REPLY_SUCCESS, "bye", 0, 0);
                self.close_deadline = Some(now + timeout);
                self.complete(tag, Ok(Outcome::Done));
            }
            State::Closed => {
                let result = match &self.dead {
                    Some(Error::ConnectionClosed) | None => Ok(Outcome::Done),
                    Some(e) => Err(e.clone()),
                };
                self.complete(tag, result);
            }
            State::Closing => {
                if self.close_tag.is_none() {
                    self.close_tag = Some(tag);
                } else {
                    self.complete(tag, Ok(Outcome::Done));
                }
            }
            State::AwaitStart => {
                // Nothing negotiated yet: just drop the socket.
                self.close_tag = Some(tag);
                self.finish(Error::ConnectionClosed);
            }
            _ => {
                self.close_tag = Some(tag);
                self.send_connection_close(reply_code::REPLY_SUCCESS, "bye", 0, 0);
                self.close_deadline = Some(now + timeout);
            }
        }
    }

    /// Whether an operation (other than a consumer's stream) waits for the
    /// broker: a reply, a publisher confirm, or the write of a publish.
    fn has_outstanding(&self) -> bool {
        if !self.flush_marks.is_empty()
            || !self.deferred_marks.is_empty()
            || !self.tx_groups.is_empty()
            || !self.waiting.is_empty()
            || !self.secret_updates.is_empty()
        {
            return true;
        }
        self.channels.iter().flatten().any(|c| {
            !c.unconfirmed.is_empty()
                || c.expect.iter().any(|e| e.tag().is_some())
                || matches!(
                    c.incoming,
                    Some(Incoming {
                        kind: IncomingKind::GetOk { .. },
                        ..
                    })
                )
                || matches!(&c.role, Role::Consumer(k) if k.cancelling.is_some())
        })
    }

    /// A graceful close: once nothing is outstanding (or at the deadline,
    /// failing what still is with an unknown outcome), `connection.close`.
    fn poll_drain(&mut self, now: Instant) {
        let State::Draining { tag, deadline } = self.state else {
            return;
        };
        if now < deadline && self.has_outstanding() {
            return;
        }
        let unknown = Error::ConnectionClosed.unknown_outcome();
        for id in 0..self.channels.len() {
            let Some(c) = self.channels[id].as_mut() else {
                continue;
            };
            let mut tags: Vec<Tag> = c.unconfirmed.drain(..).map(|u| u.tag).collect();
            c.expect.retain(|e| match e.tag() {
                Some(t) => {
                    tags.push(t);
                    false
                }
                None => true,
            });
            if let Some(Incoming {
                kind: IncomingKind::GetOk { tag, .. },
                ..
            }) = c.incoming
            {
                tags.push(tag);
                c.incoming = None;
            }
            if let Role::Consumer(k) = &mut c.role {
                tags.extend(k.cancelling.take());
            }
            for t in tags {
                self.complete(t, Err(unknown.clone()));
            }
        }
        for (_, t) in std::mem::take(&mut self.flush_marks) {
            self.complete(t, Err(unknown.clone()));
        }
        for g in std::mem::take(&mut self.tx_groups) {
            self.complete(g.tag, Err(unknown.clone()));
        }
        for t in std::mem::take(&mut self.secret_updates) {
            self.complete(t, Err(unknown.clone()));
        }
        // Never sent: these certainly did not happen.
        self.fail_waiting(Error::ConnectionClosed);
        self.close_tag = Some(tag);
        self.send_connection_close(reply_code::REPLY_SUCCESS, "bye", 0, 0);
        self.close_deadline = Some(if now < deadline {
            deadline
        } else {
            now + CLOSE_OK_GRACE
        });
    }

    // ------------------------------------------------------------------
    // Internals: channels.

    fn chan(&mut self, id: u16) -> &mut Channel {
        self.channels[usize::from(id)]
            .as_mut()
            .expect("channel id from a live channel")
    }

    fn chan_opt(&mut self, id: u16) -> Option<&mut Channel> {
        self.channels
            .get_mut(usize::from(id))
            .and_then(|c| c.as_mut())
    }

    fn refuse(&mut self, tag: Tag) -> bool {
        let err = match self.state {
            State::Closed | State::Closing | State::Draining { .. } => {
                self.dead.clone().unwrap_or(Error::ConnectionClosed)
            }
            _ => return false,
        };
        self.complete(tag, Err(err));
        true
    }

    fn no_channel_error(&self) -> Error {
        Error::NoChannel {
            channel_max: self.tuned.channel_max,
        }
    }

    fn out(&mut self) -> &mut BytesMut {
        self.sent_since_heartbeat = true;
        if self.state.is_live() || self.state == State::Closing {
            &mut self.write_buf
        } else {
            &mut self.deferred
        }
    }

    fn send_method(&mut self, ch: u16, method: &Method) -> Result<(), CodecError> {
        self.emit_pending_ack(ch);
        encode_method(self.out(), ch, method)
    }

    /// Sends a channel's coalesced ack, if it has one.
    fn emit_pending_ack(&mut self, ch: u16) {
        let Some(Some(c)) = self.channels.get_mut(usize::from(ch)) else {
            return;
        };
        let Some(delivery_tag) = c.pending_ack.take() else {
            return;
        };
        c.pending_ack_count = 0;
        let m = Method::BasicAck(BasicAck {
            delivery_tag,
            multiple: true,
        });
        let _ = encode_method(self.out(), ch, &m);
    }

    fn emit_pending_acks(&mut self) {
        for ch in std::mem::take(&mut self.ack_channels) {
            self.emit_pending_ack(ch);
        }
        self.acks_due = false;
        self.ack_deadline = None;
    }

    fn allocate_id(&mut self) -> Option<u16> {
        if let Some(id) = self.free_ids.pop() {
            return Some(id);
        }
        let next = self.channels.len().max(1);
        if next > usize::from(self.tuned.channel_max) {
            return None;
        }
        self.channels.resize_with(next + 1, || None);
        Some(next as u16)
    }

    fn open_channel(&mut self, role: Role) -> Option<u16> {
        let id = self.allocate_id()?;
        // Epochs are unique in the process, not just in this connection: a
        // delivery from another connection (or an earlier one) never names
        // a channel here, so its ack fails locally instead of acking some
        // other message.
        let epoch = next_epoch();
        self.channels[usize::from(id)] = Some(Channel::new(id, epoch, role));
        let _ = self.send_method(id, &Method::ChannelOpen(ChannelOpen {}));
        self.chan(id).expect.push_back(Expect::OpenOk);
        Some(id)
    }

    fn take_pooled_channel(&mut self) -> Option<u16> {
        if let Some(id) = self.idle.pop() {
            return Some(id);
        }
        self.open_channel(Role::Pool)
    }

    fn publish_channel(&mut self) -> Option<u16> {
        if let Some(id) = self.publish_channel {
            return Some(id);
        }
        let id = self.open_channel(Role::Publish)?;
        self.publish_channel = Some(id);
        let want = match self.config.confirms {
            Confirms::Off => false,
            Confirms::On => true,
            // Before connection.start we cannot know; ask anyway, as
            // RabbitMQ always supports it.
            Confirms::Auto => self.state == State::AwaitStart || self.confirms,
        };
        self.confirms = want;
        if self.tx == TxState::Active {
            // A replaced publish channel stays transactional.
            let _ = self.send_method(id, &Method::TxSelect(TxSelect {}));
            self.chan(id).expect.push_back(Expect::TxSelectOk(None));
        } else if want {
            let _ = self.send_method(id, &Method::ConfirmSelect(ConfirmSelect { no_wait: false }));
            self.chan(id).expect.push_back(Expect::ConfirmSelectOk);
        }
        Some(id)
    }

    /// The channel consuming from `amq.rabbitmq.reply-to`, or else the
    /// publish channel (the broker then refuses the request with 406).
    fn direct_reply_channel(&mut self) -> Option<u16> {
        let found = self.channels.iter().flatten().find_map(|c| match &c.role {
            Role::Consumer(k) if k.direct_reply_to && !c.closing && !k.ended => Some(c.id),
            _ => None,
        });
        found.or_else(|| self.publish_channel())
    }

    fn consumer_channel(&self, consume_tag: Tag) -> Option<u16> {
        self.channels.iter().flatten().find_map(|c| match &c.role {
            Role::Consumer(k) if k.tag == consume_tag && !c.closing => Some(c.id),
            _ => None,
        })
    }

    fn release_on_encode_error(&mut self, ch: u16, tag: Tag) {
        self.complete(
            tag,
            Err(Error::InvalidArgument(CodecError::InvalidValue(
                "argument cannot be encoded",
            ))),
        );
        self.maybe_idle(ch);
    }

    fn maybe_idle(&mut self, ch: u16) {
        let Some(c) = self.chan_opt(ch) else { return };
        if !(matches!(c.role, Role::Pool)
            && c.expect.is_empty()
            && !c.closing
            && c.held_get.is_none())
        {
            return;
        }
        if !self.waiting.is_empty() {
            self.idle.push(ch);
            self.dispatch_waiting();
        } else if self.idle.len() >= MAX_IDLE_CHANNELS {
            // A burst opened many channels: the pool keeps a few.
            self.close_channel(ch);
        } else {
            self.idle.push(ch);
        }
    }

    /// A pooled channel whose `basic.get` deliveries are all settled goes
    /// back to the pool.
    fn release_held_get(&mut self, ch: u16) {
        let Some(c) = self.chan_opt(ch) else { return };
        if !c.unacked.is_empty() || c.incoming.is_some() {
            return;
        }
        let Some(queue) = c.held_get.take() else {
            return;
        };
        if self.held_gets.get(&queue) == Some(&ch) {
            self.held_gets.remove(&queue);
        }
        self.maybe_idle(ch);
    }

    fn settle(
        &mut self,
        delivery: &Delivery,
        multiple: bool,
        is_ack: bool,
        method: impl FnOnce(u64) -> Method,
    ) -> Result<(), Error> {
        if !self.state.is_live() {
            return Err(self.dead.clone().unwrap_or(Error::ConnectionClosed));
        }
        let tag = delivery.delivery_tag;
        let Some(cref) = delivery.channel else {
            return Err(Error::UnknownDeliveryTag(tag));
        };
        let Some(Some(c)) = self.channels.get_mut(usize::from(cref.id)) else {
            return Err(Error::UnknownDeliveryTag(tag));
        };
        if c.epoch != cref.epoch || c.closing {
            return Err(Error::UnknownDeliveryTag(tag));
        }
        let lowest = c.unacked.front() == Some(&tag);
        let Some(settled) = c.settle(tag, multiple) else {
            return Err(Error::UnknownDeliveryTag(tag));
        };
        if is_ack && (lowest || multiple) {
            // Acks of the lowest outstanding tag coalesce into one
            // `multiple` ack, sent before the next frame on this channel or
            // at the next write: nothing below it is outstanding, so it
            // acks exactly what the user acked.
            if c.pending_ack.is_none() {
                self.ack_channels.push(cref.id);
            }
            c.pending_ack = Some(tag);
            c.pending_ack_count += settled;
            // A consumer's acks may wait (for a write that happens anyway,
            // or ACK_DELAY) while the broker still has half its window to
            // send in: it is not held up, and many deliveries then cost one
            // ack frame and no write of their own.
            let deferrable = match &c.role {
                Role::Consumer(k) if self.config.ack_timing == AckTiming::Deferred => {
                    let window = if k.prefetch == 0 {
                        UNLIMITED_WINDOW
                    } else {
                        usize::from(k.prefetch)
                    };
                    k.prefetch != 1 && (c.unacked.len() + c.pending_ack_count) * 2 < window
                }
                _ => false,
            };
            if !deferrable {
                self.acks_due = true;
            } else if self.ack_deadline.is_none() {
                self.ack_deadline = Some(self.last_recv + ACK_DELAY);
            }
            self.sent_since_heartbeat = true;
        } else {
            let _ = self.send_method(cref.id, &method(tag));
        }
        self.maybe_close_drained_consumer(cref.id);
        self.release_held_get(cref.id);
        Ok(())
    }

    /// Fails everything waiting on a channel and forgets it (the channel
    /// was closed by the broker or could not be used). Unconfirmed
    /// publishes fail with `publishes` (their outcome is usually unknown).
    fn fail_channel(&mut self, ch: u16, err: Error) {
        let publishes = err.clone();
        self.fail_channel_with(ch, err, publishes);
    }

    fn fail_channel_with(&mut self, ch: u16, err: Error, publishes: Error) {
        let Some(c) = self
            .channels
            .get_mut(usize::from(ch))
            .and_then(Option::take)
        else {
            return;
        };
        self.idle.retain(|&i| i != ch);
        if c.held_get.is_some() {
            self.held_gets.retain(|_, held| *held != ch);
        }
        if self.publish_channel == Some(ch) {
            self.publish_channel = None;
        }
        self.free_ids.push(ch);
        // The first pending request caused the close; later ones were
        // pipelined behind it and fail with the same error.
        for e in c.expect {
            if let Expect::TxEnd { group, .. } = e {
                self.tx_part_done(group, Some(err.clone()));
            } else if let Some(tag) = e.tag() {
                self.complete(tag, Err(err.clone()));
            }
        }
        if let Some(Incoming {
            kind: IncomingKind::GetOk { tag, .. },
            ..
        }) = c.incoming
        {
            self.complete(tag, Err(err.clone()));
        }
        for u in c.unconfirmed {
            self.complete(u.tag, Err(publishes.clone()));
        }
        if let Role::Consumer(k) = c.role {
            if let Some(t) = k.cancelling {
                self.complete(t, Err(err.clone()));
            }
            for t in k.ready_waiters {
                self.complete(t, Err(err.clone()));
            }
            if !k.ended {
                self.complete(k.tag, Err(err));
            }
        }
        self.dispatch_waiting();
    }

    fn close_channel(&mut self, ch: u16) {
        let Some(c) = self.chan_opt(ch) else { return };
        if c.closing {
            return;
        }
        c.closing = true;
        let m = Method::ChannelClose(ChannelClose {
            reply_code: reply_code::REPLY_SUCCESS,
            reply_text: ShortString::from_static("done"),
            class_id: 0,
            method_id: 0,
        });
        let _ = self.send_method(ch, &m);
        self.chan(ch).expect.push_back(Expect::CloseOk);
    }

    fn maybe_end_consumer(&mut self, ch: u16) {
        let Some(c) = self.chan_opt(ch) else { return };
        let Role::Consumer(k) = &mut c.role else {
            return;
        };
        if k.cancelling.is_none() || !k.tags.is_empty() || !k.pending.is_empty() || k.ended {
            return;
        }
        let cancel_tag = k.cancelling.take();
        k.ended = true;
        let tag = k.tag;
        if let Some(t) = cancel_tag {
            self.complete(t, Ok(Outcome::Done));
        }
        self.events.push_back(Event::ConsumerEnded { tag });
        self.maybe_close_drained_consumer(ch);
    }

    /// A consumer channel whose consumers are all gone is closed once its
    /// last unacked delivery is settled (closing earlier would requeue them).
    fn maybe_close_drained_consumer(&mut self, ch: u16) {
        let Some(c) = self.chan_opt(ch) else { return };
        if let Role::Consumer(k) = &c.role {
            if k.ended && c.unacked.is_empty() && c.expect.is_empty() {
                self.close_channel(ch);
            }
        }
    }

    // ------------------------------------------------------------------
    // Internals: completion and connection end.

    fn complete(&mut self, tag: Tag, result: Result<Outcome, Error>) {
        self.events.push_back(Event::Complete { tag, result });
    }

    /// A graceful close cut short (by the broker, a violation, the socket):
    /// its tag completes as a pending close.
    fn adopt_draining_tag(&mut self) {
        if let State::Draining { tag, .. } = self.state {
            if self.close_tag.is_none() {
                self.close_tag = Some(tag);
            }
        }
    }

    fn send_connection_close(&mut self, code: u16, text: &str, class_id: u16, method_id: u16) {
        self.adopt_draining_tag();
        // Acks the user made go out before the close, or the broker ignores
        // them and requeues the messages.
        self.emit_pending_acks();
        let m = Method::ConnectionClose(ConnectionClose {
            reply_code: code,
            reply_text: ShortString::from(truncate_utf8(text, 255)),
            class_id,
            method_id,
        });
        self.state = State::Closing;
        let _ = encode_method(&mut self.write_buf, 0, &m);
    }

    /// The peer broke the protocol: close the connection with `code` and
    /// fail everything with `err` now (not waiting for close-ok).
    fn violation(&mut self, code: u16, text: String, err: Error) {
        if matches!(self.state, State::Closing | State::Closed) {
            self.finish(err);
            return;
        }
        self.send_connection_close(code, &text, 0, 0);
        self.fail_all(err.clone());
        self.dead = Some(err);
        // Wait briefly for close-ok so the close reaches the peer; the
        // caller's flush sends it.
        self.close_deadline = Some(self.last_recv + Duration::from_secs(1));
    }

    fn fail_all(&mut self, err: Error) {
        // Publishes sent and not confirmed may have been routed: their
        // outcome is unknown. (Before open-ok nothing was sent.)
        let sent = self.connect_tag.is_none();
        if let Some(t) = self.connect_tag.take() {
            self.complete(t, Err(err.clone()));
        }
        let publishes = if sent {
            err.clone().unknown_outcome()
        } else {
            err.clone()
        };
        for id in 0..self.channels.len() {
            self.fail_channel_with(id as u16, err.clone(), publishes.clone());
        }
        self.idle.clear();
        self.publish_channel = None;
        for (_, tag) in std::mem::take(&mut self.flush_marks) {
            self.complete(tag, Err(err.clone()));
        }
        for (_, tag) in std::mem::take(&mut self.deferred_marks) {
            self.complete(tag, Err(err.clone()));
        }
        self.fail_waiting(err.clone());
        for t in std::mem::take(&mut self.secret_updates) {
            self.complete(t, Err(err.clone()));
        }
        self.deferred.clear();
    }

    /// The connection is over: fail everything with `err`, complete a
    /// pending close, and report [`Event::Closed`].
    fn finish(&mut self, err: Error) {
        if self.state == State::Closed {
            return;
        }
        let err = self.dead.clone().unwrap_or(err);
        self.adopt_draining_tag();
        self.state = State::Closed;
        self.fail_all(err.clone());
        if let Some(t) = self.close_tag.take() {
            let r = match err {
                Error::ConnectionClosed => Ok(Outcome::Done),
                ref e => Err(e.clone()),
            };
            self.complete(t, r);
        }
        self.dead = Some(err.clone());
        self.read_buf.clear();
        self.events.push_back(Event::Closed(err));
    }

    // ------------------------------------------------------------------
    // Internals: frames.

    /// The first four bytes of a `basic.deliver` payload: class 60, method 60.
    const BASIC_DELIVER_ID: u32 = 0x003C_003C;

    /// Handles one frame; a payload that does not parse is the error.
    fn handle_frame(&mut self, f: FrameRef<'_>) -> Result<(), CodecError> {
        match (f.frame_type, f.channel) {
            (frame::FRAME_METHOD, 0) => {
                let method = Method::read(&mut f.reader())?;
                self.handle_connection_method(method);
            }
            (frame::FRAME_METHOD, ch) => {
                // The hottest method, read straight into its struct when
                // nothing about the channel needs the general path.
                let mut r = f.reader();
                if r.peek_u32() == Some(Self::BASIC_DELIVER_ID) && self.plain_channel(ch) {
                    return self.on_deliver_frame(ch, &f);
                }
                let method = Method::read(&mut r)?;
                self.handle_channel_method(ch, method);
            }
            (frame::FRAME_HEADER, ch) => self.handle_header(ch, f.reader())?,
            (frame::FRAME_BODY, ch) => self.handle_body(ch, f),
            _ => {}
        }
        Ok(())
    }

    fn unexpected(&mut self, what: &str) {
        self.violation(
            reply_code::UNEXPECTED_FRAME,
            format!("UNEXPECTED_FRAME - {what}"),
            Error::ProtocolViolation(Reply::new(reply_code::UNEXPECTED_FRAME, what)),
        );
    }

    fn command_invalid(&mut self, what: String) {
        self.violation(
            reply_code::COMMAND_INVALID,
            format!("COMMAND_INVALID - {what}"),
            Error::ProtocolViolation(Reply::new(reply_code::COMMAND_INVALID, what)),
        );
    }

    fn handle_connection_method(&mut self, method: Method) {
        match (self.state, method) {
            (State::AwaitStart, Method::ConnectionStart(start)) => self.on_start(start),
            (State::AwaitSecureOrTune, Method::ConnectionTune(tune)) => self.on_tune(tune),
            (State::AwaitSecureOrTune, Method::ConnectionSecure(_)) => {
                // PLAIN and EXTERNAL need no challenge.
                self.violation(
                    reply_code::NOT_IMPLEMENTED,
                    "NOT_IMPLEMENTED - unexpected connection.secure".into(),
                    Error::NoAuthMechanism("a challenge-response exchange".into()),
                );
            }
            (State::AwaitOpenOk, Method::ConnectionOpenOk(_)) => self.on_open_ok(),
            (_, Method::ConnectionClose(c)) => {
                let _ = encode_method(
                    &mut self.write_buf,
                    0,
                    &Method::ConnectionCloseOk(ConnectionCloseOk {}),
                );
                let reply = Reply {
                    code: c.reply_code,
                    text: c.reply_text.to_string(),
                    class_id: c.class_id,
                    method_id: c.method_id,
                    connection: true,
                };
                let err = if self.close_tag.is_some() && self.state == State::Closing {
                    Error::ConnectionClosed
                } else {
                    Error::from_reply(reply)
                };
                self.finish(err);
            }
            (State::Closing, Method::ConnectionCloseOk(_)) => {
                let e = self.dead.clone().unwrap_or(Error::ConnectionClosed);
                self.finish(e);
            }
            (State::Closing, _) => {}
            (_, Method::ConnectionBlocked(b)) => {
                self.blocked = Some(self.last_recv);
                self.events.push_back(Event::Blocked(b.reason.to_string()));
            }
            (_, Method::ConnectionUnblocked(_)) => {
                self.blocked = None;
                self.events.push_back(Event::Unblocked);
            }
            (_, Method::ConnectionUpdateSecretOk(_)) => {
                if let Some(t) = self.secret_updates.pop_front() {
                    self.complete(t, Ok(Outcome::Done));
                } else {
                    self.command_invalid("unsolicited connection.update-secret-ok".into());
                }
            }
            (_, m) => self.command_invalid(format!("{} on channel 0", m.name())),
        }
    }

    fn on_start(&mut self, start: ConnectionStart) {
        // "If the server cannot support the protocol specified in the
        // protocol header, it MUST respond with a valid protocol header and
        // then close the socket" — and a client seeing another version in
        // connection.start must not go on.
        if (start.version_major, start.version_minor) != (0, 9) {
            self.violation(
                reply_code::NOT_IMPLEMENTED,
                "NOT_IMPLEMENTED - version".into(),
                Error::Protocol(CodecError::InvalidValue(
                    "server offered another AMQP version",
                )),
            );
            return;
        }
        let mechanism = match self.config.mechanism {
            Mechanism::Plain => "PLAIN",
            Mechanism::External => "EXTERNAL",
        };
        if !negotiate::offers(&start.mechanisms, mechanism) {
            let offered = String::from_utf8_lossy(&start.mechanisms).into_owned();
            self.finish(Error::NoAuthMechanism(offered));
            return;
        }
        let server_confirms = start
            .server_properties
            .get("capabilities")
            .and_then(|c| c.as_table())
            .and_then(|c| c.get("publisher_confirms"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        self.confirms = match self.config.confirms {
            Confirms::Off => false,
            Confirms::On => true,
            Confirms::Auto => server_confirms,
        };
        if !self.confirms {
            // A publish channel opened before we knew asked for confirms
            // (see publish_channel); it stays in confirm mode, which is
            // harmless, but this keeps later channels plain.
            if let Some(ch) = self.publish_channel {
                if self
                    .chan(ch)
                    .expect
                    .iter()
                    .any(|e| matches!(e, Expect::ConfirmSelectOk))
                {
                    self.confirms = true;
                }
            }
        }
        self.server_properties = start.server_properties;
        let response = match self.config.mechanism {
            Mechanism::Plain => {
                negotiate::plain_response(&self.config.username, &self.config.password)
            }
            Mechanism::External => Vec::new(),
        };
        let m = Method::from(ConnectionStartOk {
            client_properties: negotiate::client_properties(&self.config.client_properties),
            mechanism: ShortString::from_static(mechanism),
            response: Bytes::from(response),
            locale: ShortString::from_static("en_US"),
        });
        let _ = encode_method(&mut self.write_buf, 0, &m);
        self.state = State::AwaitSecureOrTune;
    }

    fn on_tune(&mut self, tune: ConnectionTune) {
        let tuned = match negotiate::tune(
            tune.channel_max,
            tune.frame_max,
            tune.heartbeat,
            self.config.channel_max,
            self.config.frame_max,
            self.config.heartbeat,
        ) {
            Ok(t) => t,
            Err(e) => {
                self.violation(reply_code::SYNTAX_ERROR, e.to_string(), e);
                return;
            }
        };
        let ok = Method::ConnectionTuneOk(ConnectionTuneOk {
            channel_max: tuned.channel_max,
            frame_max: tuned.frame_max,
            heartbeat: tuned.heartbeat,
        });
        let _ = encode_method(&mut self.write_buf, 0, &ok);
        let open = Method::ConnectionOpen(ConnectionOpen {
            virtual_host: ShortString::from(self.config.vhost.as_str()),
        });
        if let Err(e) = encode_method(&mut self.write_buf, 0, &open) {
            self.finish(Error::InvalidArgument(e));
            return;
        }
        self.tuned = tuned;
        self.state = State::AwaitOpenOk;
    }

    fn on_open_ok(&mut self) {
        self.state = State::Open;
        self.handshake_deadline = None;
        // Arm the send timer now: inbound heartbeats keep moving the dead-peer
        // deadline, so that one alone would never fire it.
        self.next_heartbeat = (self.tuned.heartbeat > 0)
            .then(|| self.last_recv + Duration::from_millis(u64::from(self.tuned.heartbeat) * 500));
        if let Some(t) = self.connect_tag.take() {
            self.complete(t, Ok(Outcome::Done));
        }
        // Channel work queued during the handshake goes out now.
        let base = self.written_total + self.write_buf.len() as u64;
        for (pos, tag) in std::mem::take(&mut self.deferred_marks) {
            self.flush_marks.push_back((base + pos as u64, tag));
        }
        let deferred = std::mem::take(&mut self.deferred);
        self.write_buf.extend_from_slice(&deferred);
    }

    fn handle_channel_method(&mut self, ch: u16, method: Method) {
        if matches!(self.state, State::Closing) {
            return;
        }
        if !self.state.is_live() {
            self.command_invalid(format!("{} before connection.open-ok", method.name()));
            return;
        }
        let Some(c) = self.chan_opt(ch) else {
            // "channel-error: The client attempted to work with a channel
            // that had not been correctly opened."
            let text = format!("{} on unknown channel {ch}", method.name());
            self.violation(
                reply_code::CHANNEL_ERROR,
                format!("CHANNEL_ERROR - {text}"),
                Error::ProtocolViolation(Reply::new(reply_code::CHANNEL_ERROR, text)),
            );
            return;
        };
        if c.incoming.is_some() {
            self.unexpected("method frame in the middle of content");
            return;
        }
        if c.closing {
            // After sending channel.close, "the peer MUST discard all frames
            // on the channel" except close and close-ok.
            match method {
                Method::ChannelCloseOk(_) | Method::ChannelClose(_) => {
                    if let Method::ChannelClose(_) = method {
                        let _ = self.send_method(ch, &Method::ChannelCloseOk(ChannelCloseOk {}));
                    }
                    if let Some(c) = self
                        .channels
                        .get_mut(usize::from(ch))
                        .and_then(Option::take)
                    {
                        // Nothing can be pending on a channel we closed
                        // ourselves but publishes: fail them.
                        let err = Error::ChannelError(Reply::new(
                            reply_code::CHANNEL_ERROR,
                            "channel closed",
                        ));
                        for u in c.unconfirmed {
                            self.complete(u.tag, Err(err.clone()));
                        }
                        if let Role::Consumer(k) = c.role {
                            if let Some(t) = k.cancelling {
                                self.complete(t, Ok(Outcome::Done));
                            }
                        }
                        self.free_ids.push(ch);
                        self.dispatch_waiting();
                    }
                }
                _ => {}
            }
            return;
        }
        match method {
            Method::BasicDeliver(d) => {
                let names = Names::from_parts(
                    d.exchange.as_str(),
                    d.routing_key.as_str(),
                    d.consumer_tag.as_str(),
                );
                self.on_deliver(
                    ch,
                    d.consumer_tag.as_bytes(),
                    d.delivery_tag,
                    d.redelivered,
                    names,
                );
            }
            Method::BasicReturn(r) => {
                let message = Delivery {
                    delivery_tag: 0,
                    redelivered: false,
                    names: Names::from_parts(r.exchange.as_str(), r.routing_key.as_str(), ""),
                    message_count: None,
                    properties: BasicProperties::default(),
                    body: Bytes::new(),
                    channel: None,
                };
                let kind = IncomingKind::Return {
                    reply_code: r.reply_code,
                    reply_text: r.reply_text,
                };
                self.chan(ch).incoming = Some(Incoming::new(kind, message));
            }
            Method::BasicAck(a) => self.on_confirm(ch, a.delivery_tag, a.multiple, true),
            Method::BasicNack(n) => self.on_confirm(ch, n.delivery_tag, n.multiple, false),
            Method::BasicCancel(cancel) => self.on_server_cancel(ch, cancel),
            Method::ChannelClose(close) => {
                let _ = self.send_method(ch, &Method::ChannelCloseOk(ChannelCloseOk {}));
                let reply = Reply {
                    code: close.reply_code,
                    text: close.reply_text.to_string(),
                    class_id: close.class_id,
                    method_id: close.method_id,
                    connection: false,
                };
                let caused_by_publish = (close.class_id, close.method_id)
                    == (BasicPublish::CLASS_ID, BasicPublish::METHOD_ID);
                let err = Error::from_reply(reply);
                let unreported = self.publish_channel == Some(ch)
                    && self.chan(ch).unconfirmed.is_empty()
                    && self.chan(ch).expect.iter().all(|e| e.tag().is_none());
                if unreported {
                    // Publishes without confirms already resolved: nothing
                    // else would tell the user the broker refused one.
                    self.events
                        .push_back(Event::PublishChannelClosed(err.clone()));
                }
                // A publish the broker refused closes the channel; the
                // publishes before it may have been routed and the ones
                // after it were dropped, and which is which cannot be told.
                // Only a lone unconfirmed publish is known to be the one.
                let publishes = if caused_by_publish && self.chan(ch).unconfirmed.len() == 1 {
                    err.clone()
                } else {
                    err.clone().unknown_outcome()
                };
                self.fail_channel_with(ch, err, publishes);
            }
            Method::ChannelFlow(f) => {
                let _ = self.send_method(
                    ch,
                    &Method::ChannelFlowOk(ChannelFlowOk { active: f.active }),
                );
            }
            other => self.on_reply(ch, other),
        }
    }

    /// Whether a method on `ch` can skip the general checks of
    /// [`Connection::handle_channel_method`]: the connection is open and the
    /// channel open, not closing and not inside a content.
    fn plain_channel(&self, ch: u16) -> bool {
        self.state.is_live()
            && matches!(
                self.channels.get(usize::from(ch)),
                Some(Some(c)) if !c.closing && c.incoming.is_none()
            )
    }

    /// `basic.deliver` on a plain channel, read in place: the names stay in
    /// the frame (see [`Names`]), nothing else is built.
    fn on_deliver_frame(&mut self, ch: u16, f: &FrameRef<'_>) -> Result<(), CodecError> {
        let mut r = f.reader();
        let base = r.position();
        r.skip(4, "method id")?;
        let ctag_at = r.position() - base;
        let consumer_tag = r.shortstr_bytes("basic.deliver consumer-tag")?;
        let delivery_tag = r.u64("basic.deliver delivery-tag")?;
        let redelivered = r.u8("basic.deliver flags")? & 0x01 != 0;
        let exchange_at = r.position() - base;
        r.shortstr_bytes("basic.deliver exchange")?;
        let routing_key_at = r.position() - base;
        r.shortstr_bytes("basic.deliver routing-key")?;
        let names = Names::in_frame(f.payload(), ctag_at, exchange_at, routing_key_at);
        self.on_deliver(ch, consumer_tag, delivery_tag, redelivered, names);
        Ok(())
    }

    /// `basic.deliver`: the start of a message for one of our consumers.
    fn on_deliver(
        &mut self,
        ch: u16,
        consumer_tag: &[u8],
        delivery_tag: u64,
        redelivered: bool,
        names: Names,
    ) {
        let c = self.chan(ch);
        if !matches!(c.role, Role::Consumer(_)) {
            self.unexpected("basic.deliver on a channel without a consumer");
            return;
        }
        if delivery_tag <= c.last_delivery_tag {
            self.delivery_tag_not_rising(ch, delivery_tag);
            return;
        }
        c.last_delivery_tag = delivery_tag;
        let Role::Consumer(k) = &c.role else {
            return;
        };
        let ours = k.has_tag(consumer_tag);
        let kind = if k.ended || !ours {
            // A broker delivering to a consumer that has ended
            // (cancelled, or never confirmed): never reported.
            IncomingKind::Stray { reject: !k.no_ack }
        } else {
            IncomingKind::Deliver {
                tag: k.tag,
                no_ack: k.no_ack,
            }
        };
        let message = Delivery {
            delivery_tag,
            redelivered,
            names,
            message_count: None,
            properties: BasicProperties::default(),
            body: Bytes::new(),
            channel: None,
        };
        c.incoming = Some(Incoming::new(kind, message));
    }

    /// "The server MUST NOT use a zero value for delivery tags", and tags
    /// count up on a channel: a tag at or below the last one would make a
    /// coalesced (`multiple`) ack settle messages the user did not ack.
    fn delivery_tag_not_rising(&mut self, ch: u16, delivery_tag: u64) {
        let last = self.chan(ch).last_delivery_tag;
        self.command_invalid(format!(
            "delivery tag {delivery_tag} on channel {ch} does not follow {last}"
        ));
    }

    /// A reply to the request at the head of the channel's queue.
    fn on_reply(&mut self, ch: u16, method: Method) {
        let c = self.chan(ch);
        // The first request this reply answers (usually the oldest: see
        // `Expect::accepts` for when it is not).
        let at = c
            .expect
            .iter()
            .position(|e| e.accepts(&method))
            .unwrap_or(0);
        let Some(expect) = c.expect.remove(at) else {
            self.command_invalid(format!("unsolicited {} on channel {ch}", method.name()));
            return;
        };
        match (expect, method) {
            (Expect::OpenOk, Method::ChannelOpenOk(_)) => {}
            (Expect::ConfirmSelectOk, Method::ConfirmSelectOk(_)) => {}
            (Expect::TxSelectOk(tag), Method::TxSelectOk(_)) => {
                if let Some(t) = tag {
                    self.on_tx_select_ok(t);
                }
            }
            (Expect::TxEnd { group, rollback }, _) => {
                let c = self.chan(ch);
                if rollback {
                    c.unsettle_rolled_back();
                } else {
                    c.tx_settled.clear();
                }
                self.tx_part_done(group, None);
            }
            (Expect::Qos(tag), Method::BasicQosOk(_)) => {
                if let Some(t) = tag {
                    self.complete(t, Ok(Outcome::Done));
                }
            }
            (Expect::ConsumeOk, Method::BasicConsumeOk(ok)) => self.on_consume_ok(ch, ok),
            (Expect::CancelOk, Method::BasicCancelOk(ok)) => {
                if let Role::Consumer(k) = &mut self.chan(ch).role {
                    k.forget(&ok.consumer_tag);
                }
                self.maybe_end_consumer(ch);
                self.maybe_close_drained_consumer(ch);
            }
            (Expect::Get { tag, no_ack, queue }, Method::BasicGetOk(ok)) => {
                if ok.delivery_tag <= self.chan(ch).last_delivery_tag {
                    self.delivery_tag_not_rising(ch, ok.delivery_tag);
                    return;
                }
                self.chan(ch).last_delivery_tag = ok.delivery_tag;
                let message = Delivery {
                    delivery_tag: ok.delivery_tag,
                    redelivered: ok.redelivered,
                    names: Names::from_parts(ok.exchange.as_str(), ok.routing_key.as_str(), ""),
                    message_count: Some(ok.message_count),
                    properties: BasicProperties::default(),
                    body: Bytes::new(),
                    channel: None,
                };
                self.chan(ch).incoming = Some(Incoming::new(
                    IncomingKind::GetOk { tag, no_ack, queue },
                    message,
                ));
                // The channel returns to the pool when the content is in.
                return;
            }
            (Expect::Get { tag, .. }, Method::BasicGetEmpty(_)) => {
                self.complete(tag, Ok(Outcome::Get(None)));
            }
            (Expect::Op { tag, class, method }, m)
                if m.class_id() == class && m.method_id() == method =>
            {
                let outcome = match m {
                    Method::QueueDeclareOk(ok) => Outcome::QueueDeclared(ok),
                    Method::QueuePurgeOk(ok) => Outcome::MessageCount(ok.message_count),
                    Method::QueueDeleteOk(ok) => Outcome::MessageCount(ok.message_count),
                    _ => Outcome::Done,
                };
                self.complete(tag, Ok(outcome));
            }
            (expect, m) => {
                let text = format!("{} while waiting for {}", m.name(), expect.name());
                // Put it back so the violation fails its operation too.
                self.chan(ch).expect.insert(at, expect);
                self.command_invalid(text);
                return;
            }
        }
        self.maybe_idle(ch);
    }

    fn on_consume_ok(&mut self, ch: u16, ok: BasicConsumeOk) {
        let c = self.chan(ch);
        let Role::Consumer(k) = &mut c.role else {
            return;
        };
        k.confirm(ok.consumer_tag.clone());
        if k.cancelling.is_some() || k.ended {
            // The user cancelled (or the broker cancelled another queue of
            // this consumer) before this queue was confirmed.
            let m = Method::BasicCancel(BasicCancel {
                consumer_tag: ok.consumer_tag,
                no_wait: false,
            });
            let _ = self.send_method(ch, &m);
            self.chan(ch).expect.push_back(Expect::CancelOk);
            return;
        }
        if k.pending.is_empty() && !k.ready_waiters.is_empty() {
            let tags: Vec<ShortString> = k.tags.iter().map(|t| t.tag.clone()).collect();
            for t in std::mem::take(&mut k.ready_waiters) {
                self.complete(t, Ok(Outcome::ConsumerTags(tags.clone())));
            }
        }
    }

    /// `basic.cancel` from the broker: a queue of this consumer was deleted
    /// (or its node went away). The consumer ends as a whole, with an error
    /// naming that queue: its other queues are cancelled too, so a consumer
    /// never goes on silently with part of what it asked for. Deliveries
    /// already received stay valid to ack.
    fn on_server_cancel(&mut self, ch: u16, cancel: BasicCancel) {
        if !cancel.no_wait {
            let m = Method::BasicCancelOk(BasicCancelOk {
                consumer_tag: cancel.consumer_tag.clone(),
            });
            let _ = self.send_method(ch, &m);
        }
        let c = self.chan(ch);
        let Role::Consumer(k) = &mut c.role else {
            return;
        };
        let queue = k.forget(&cancel.consumer_tag);
        if k.ended {
            return;
        }
        let Some(queue) = queue else {
            // Not one of ours: nothing to end.
            return;
        };
        k.ended = true;
        let tag = k.tag;
        let cancelling = k.cancelling.take();
        let waiters = std::mem::take(&mut k.ready_waiters);
        let others: Vec<ShortString> = k.tags.iter().map(|t| t.tag.clone()).collect();
        let err = Error::ConsumerCancelled {
            queue: queue.to_string(),
            consumer_tag: cancel.consumer_tag.to_string(),
        };
        // Queues still pending are cancelled when their consume-ok comes
        // (see on_consume_ok).
        for consumer_tag in others {
            let m = Method::BasicCancel(BasicCancel {
                consumer_tag,
                no_wait: false,
            });
            let _ = self.send_method(ch, &m);
            self.chan(ch).expect.push_back(Expect::CancelOk);
        }
        if let Some(t) = cancelling {
            self.complete(t, Ok(Outcome::Done));
        }
        for t in waiters {
            self.complete(t, Err(err.clone()));
        }
        self.complete(tag, Err(err));
        self.maybe_close_drained_consumer(ch);
    }

    fn on_confirm(&mut self, ch: u16, delivery_tag: u64, multiple: bool, ack: bool) {
        let Some(Some(c)) = self.channels.get_mut(usize::from(ch)) else {
            return;
        };
        if !matches!(c.role, Role::Publish) {
            self.command_invalid("basic.ack from the broker on a non-publish channel".into());
            return;
        }
        let returned = c.pending_return.take();
        let events = &mut self.events;
        let mut settle = |u: Unconfirmed| {
            let result = match (ack, &returned) {
                (true, Some(reply)) if u.seq == delivery_tag => {
                    Err(Error::from_reply(reply.clone()))
                }
                (true, _) => Ok(Outcome::Done),
                (false, _) => Err(Error::Nacked),
            };
            events.push_back(Event::Complete { tag: u.tag, result });
        };
        if multiple {
            while c.unconfirmed.front().is_some_and(|u| u.seq <= delivery_tag) {
                if let Some(u) = c.unconfirmed.pop_front() {
                    settle(u);
                }
            }
        } else if c.unconfirmed.front().is_some_and(|u| u.seq == delivery_tag) {
            // Confirms mostly come in publish order: the oldest first.
            if let Some(u) = c.unconfirmed.pop_front() {
                settle(u);
            }
        } else if let Ok(i) = c.unconfirmed.binary_search_by_key(&delivery_tag, |u| u.seq) {
            if let Some(u) = c.unconfirmed.remove(i) {
                settle(u);
            }
        }
    }

    fn handle_header(&mut self, ch: u16, mut r: Reader<'_>) -> Result<(), CodecError> {
        if !self.state.is_live() {
            if self.state != State::Closing {
                self.unexpected("content header before the connection is open");
            }
            return Ok(());
        }
        if ch == 0 {
            self.unexpected("content header on channel 0");
            return Ok(());
        }
        let max = self.config.max_message_size;
        let Some(c) = self.chan_opt(ch) else {
            self.unexpected("content header on a channel that is not open");
            return Ok(());
        };
        if c.closing {
            return Ok(());
        }
        let Some(inc) = c.incoming.as_mut() else {
            self.unexpected("content header without a content method");
            return Ok(());
        };
        if inc.header_seen {
            self.unexpected("second content header");
            return Ok(());
        }
        let class_id = r.u16("content header class")?;
        // The weight field is unused and must be zero; it is not checked.
        let _weight = r.u16("content header weight")?;
        let body_size = r.u64("content header body size")?;
        if class_id != CLASS_BASIC {
            self.unexpected("content header class differs from its method's");
            return Ok(());
        }
        if body_size > max {
            self.violation(
                reply_code::CONTENT_TOO_LARGE,
                format!("CONTENT_TOO_LARGE - message of {body_size} bytes exceeds {max}"),
                Error::MessageTooLarge {
                    size: body_size,
                    max,
                },
            );
            return Ok(());
        }
        // Decoded straight into the message being built.
        inc.message.properties = BasicProperties::decode(&mut r)?;
        inc.remaining = body_size;
        inc.header_seen = true;
        if body_size == 0 {
            self.content_complete(ch);
        }
        Ok(())
    }

    fn handle_body(&mut self, ch: u16, f: FrameRef<'_>) {
        if !self.state.is_live() {
            if self.state != State::Closing {
                self.unexpected("content body before the connection is open");
            }
            return;
        }
        if ch == 0 {
            self.unexpected("content body on channel 0");
            return;
        }
        let Some(c) = self.chan_opt(ch) else {
            self.unexpected("content body on a channel that is not open");
            return;
        };
        if c.closing {
            return;
        }
        let Some(inc) = c.incoming.as_mut().filter(|i| i.header_seen) else {
            self.unexpected("content body without a content header");
            return;
        };
        let len = f.len() as u64;
        if len > inc.remaining {
            self.unexpected("content body longer than the header's body size");
            return;
        }
        inc.remaining -= len;
        if inc.remaining == 0 && matches!(inc.body, Body::Empty) {
            // The whole body in one frame (the usual case): a slice of the
            // read buffer, straight into the message.
            inc.message.body = f.payload();
        } else {
            inc.body.push(f.payload());
        }
        if inc.remaining == 0 {
            self.content_complete(ch);
        }
    }

    fn content_complete(&mut self, ch: u16) {
        let confirming = self.confirms && self.tx == TxState::Off;
        let Some(Some(c)) = self.channels.get_mut(usize::from(ch)) else {
            return;
        };
        let cref = ChannelRef {
            id: ch,
            epoch: c.epoch,
        };
        // The hottest case first: a delivery to a consumer goes from the
        // channel's slot straight into the event queue (one move, not the
        // two or three that taking the whole `Incoming` out costs).
        if let Some(Incoming {
            kind: IncomingKind::Deliver { tag, no_ack },
            message,
            body,
            ..
        }) = &mut c.incoming
        {
            let (tag, no_ack) = (*tag, *no_ack);
            if let Some(joined) = body.take_bytes() {
                message.body = joined;
            }
            if !no_ack {
                c.unacked.push_back(message.delivery_tag);
                message.channel = Some(cref);
            }
            self.events.push_back(Event::Delivery {
                tag,
                delivery: std::mem::replace(message, Delivery::PLACEHOLDER),
            });
            c.incoming = None;
            return;
        }
        let Some(inc) = c.incoming.take() else { return };
        let mut message = inc.message;
        if let Some(joined) = inc.body.into_bytes() {
            message.body = joined;
        }
        match inc.kind {
            IncomingKind::Deliver { .. } => {} // handled above
            IncomingKind::GetOk { tag, no_ack, queue } => {
                if !no_ack {
                    c.unacked.push_back(message.delivery_tag);
                    message.channel = Some(cref);
                    if matches!(c.role, Role::Pool) && c.held_get.is_none() {
                        self.held_gets.entry(queue.clone()).or_insert(ch);
                        c.held_get = Some(queue);
                    }
                }
                self.complete(tag, Ok(Outcome::Get(Some(message))));
                self.maybe_idle(ch);
            }
            IncomingKind::Return {
                reply_code,
                reply_text,
            } => {
                if matches!(c.role, Role::Publish) && confirming {
                    // RabbitMQ sends basic.return right before the basic.ack
                    // of the same message (and the ack's tag names it).
                    c.pending_return = Some(Reply::new(reply_code, reply_text.to_string()));
                } else {
                    self.events.push_back(Event::Returned(Box::new(Returned {
                        reply_code,
                        reply_text,
                        message,
                    })));
                }
            }
            IncomingKind::Stray { reject } => {
                if reject {
                    let m = Method::BasicReject(BasicReject {
                        delivery_tag: message.delivery_tag,
                        requeue: true,
                    });
                    let _ = self.send_method(ch, &m);
                }
            }
        }
    }
}

impl Body {
    fn push(&mut self, part: Bytes) {
        match std::mem::take(self) {
            Body::Empty => *self = Body::One(part),
            Body::One(first) => {
                let mut joined = BytesMut::with_capacity(first.len() + part.len());
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&part);
                *self = Body::Many(joined);
            }
            Body::Many(mut joined) => {
                joined.extend_from_slice(&part);
                *self = Body::Many(joined);
            }
        }
    }

    /// The body assembled here; `None` when no frame came through here
    /// (an empty body, or one frame put straight into the message).
    fn into_bytes(self) -> Option<Bytes> {
        match self {
            Body::Empty => None,
            Body::One(b) => Some(b),
            Body::Many(b) => Some(b.freeze()),
        }
    }

    fn take_bytes(&mut self) -> Option<Bytes> {
        std::mem::take(self).into_bytes()
    }
}

#[cfg(test)]
mod tests;
