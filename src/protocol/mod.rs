//! The sans-IO protocol state machine.
//!
//! **Unstable**: public only with the `unstable` feature, and outside
//! semver — any release may change it.
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

mod acks;
mod channel;
mod commands;
mod confirms;
mod consumers;
mod content;
mod debug;
mod delivery;
mod dispatch;
mod events;
mod handshake;
pub mod negotiate;
mod pool;
mod stats;
mod stream;
mod teardown;
mod timers;
mod tx;
mod window;

use delivery::Names;
pub use delivery::{ChannelRef, Delivery, Returned};
pub use stats::Stats;

use crate::codec::frame::{self, encode_method, FrameRef, Frames, FRAME_MIN_SIZE};
use crate::codec::method::*;
use crate::codec::wire::{truncate_utf8, Reader};
use crate::codec::{reply_code, BasicProperties, CodecError, FieldTable, Method, ShortString};
use crate::error::{Error, Reply};
use bytes::{Bytes, BytesMut};
use channel::{Body, Channel, Consumer, Expect, Incoming, IncomingKind, Role, TagQueue};
use negotiate::Tuned;
use std::collections::VecDeque;
use std::hash::BuildHasherDefault;
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
    /// What a failed handshake does with the work queued meanwhile.
    pub on_handshake_failure: OnHandshakeFailure,
}

/// What a failed handshake does with the operations queued before it
/// (none of which was sent: the broker never opened the connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnHandshakeFailure {
    /// Fail them with the handshake's error, and end the connection.
    #[default]
    Fail,
    /// Keep them and report [`Event::HandshakeFailed`]: the caller then
    /// starts over on another socket ([`Connection::restart_handshake`]),
    /// where they go out once that handshake is done, or gives up
    /// ([`Connection::release_held`]).
    Hold,
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
            on_handshake_failure: OnHandshakeFailure::Fail,
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
    /// A consumer ended as its user asked: cancelled ([`Connection::cancel`]),
    /// or the connection closed by the user. No more deliveries come for it.
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
    /// The handshake failed and the work queued meanwhile is held
    /// ([`OnHandshakeFailure::Hold`]): restart on a new socket
    /// ([`Connection::restart_handshake`]) or give up
    /// ([`Connection::release_held`], which ends with [`Event::Closed`]).
    HandshakeFailed(Error),
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

/// When coalesced acks go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckWait {
    /// None is waiting.
    Idle,
    /// At the next write: an ack's consumer has half its window used, or it
    /// is not a consumer's with a window (or [`AckTiming::Prompt`]).
    Due,
    /// Deferred ([`AckTiming::Deferred`]): with the next write, or at this
    /// time even if nothing else is written.
    Until(Instant),
}

/// When the peer was last heard from (the heartbeat timeout counts from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heard {
    /// At this time.
    At(Instant),
    /// Bytes arrived after this time; the next `now` the connection is
    /// given stamps them (reading takes no clock).
    Unstamped(Instant),
}

impl Heard {
    fn last(self) -> Instant {
        match self {
            Heard::At(t) | Heard::Unstamped(t) => t,
        }
    }

    fn note_input(&mut self) {
        if let Heard::At(t) = *self {
            *self = Heard::Unstamped(t);
        }
    }

    fn stamp(&mut self, now: Instant) {
        if let Heard::Unstamped(_) = *self {
            *self = Heard::At(now);
        }
    }
}

/// This side's heartbeats: a frame is sent at each due time unless another
/// frame went out since the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Beat {
    /// Not scheduled: heartbeats off, or the handshake not finished.
    Off,
    /// The next is due at this time, and nothing was sent since the last.
    Quiet(Instant),
    /// Due at this time, but a frame went out since the last: none needed.
    Busy(Instant),
}

impl Beat {
    fn due(self) -> Option<Instant> {
        match self {
            Beat::Off => None,
            Beat::Quiet(t) | Beat::Busy(t) => Some(t),
        }
    }

    #[inline]
    fn note_sent(&mut self) {
        if let Beat::Quiet(t) = *self {
            *self = Beat::Busy(t);
        }
    }
}

/// Whether the publish channel is in confirm mode (`confirm.select`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConfirmMode {
    /// Plain publishes: settled once written.
    Plain,
    /// Publishes are settled by the broker's `basic.ack`/`basic.nack`.
    Confirmed,
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
    /// The handshake failed (with the error in `dead`); the queued work
    /// is held ([`OnHandshakeFailure::Hold`]).
    HandshakeFailed,
    Closed,
}

impl State {
    /// Open for frames: the handshake is done and no close was sent.
    fn is_live(self) -> bool {
        matches!(self, State::Open | State::Draining { .. })
    }

    /// Nothing more is read or timed: closed, or a failed handshake held.
    fn is_over(self) -> bool {
        matches!(self, State::Closed | State::HandshakeFailed)
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

/// The next channel epoch: unique across every connection of the process
/// (a `u32` that wraps after four billion channel opens).
fn next_epoch() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static EPOCHS: AtomicU32 = AtomicU32::new(1);
    EPOCHS.fetch_add(1, Ordering::Relaxed)
}

/// Pooled channels holding unsettled `basic.get` deliveries, by queue
/// ([`QueueKey`]: the name's FNV-1a hash, made once per get).
///
/// Looked up and updated on every get and its ack, so the name is not
/// hashed with SipHash, cloned or compared there (a third of a get's
/// instructions once went to that); the keys come from the caller's own
/// queue names, nothing a peer chooses. Two names with one hash share a
/// key: a get of one may then run on the channel holding the other's
/// deliveries, which is still correct (a channel gets from any queue) and
/// only keeps that channel out of the pool until both are settled.
type HeldGets = std::collections::HashMap<QueueKey, u16, BuildHasherDefault<KeyHasher>>;

/// The FNV-1a hash of a queue name, as [`HeldGets`] knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct QueueKey(u64);

impl QueueKey {
    /// The key of the queue named `name`.
    pub(super) fn of(name: &str) -> QueueKey {
        use std::hash::Hasher;
        let mut h = Fnv1a::default();
        h.write(name.as_bytes());
        QueueKey(h.finish())
    }
}

/// Hands a [`QueueKey`], already a hash, to the map as it is.
#[derive(Debug, Default, Clone, Copy)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not reached (a key hashes as one u64); kept correct anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The 64-bit FNV-1a hash, for short keys the caller chose.
#[derive(Debug, Clone, Copy)]
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The AMQP 0-9-1 client protocol state machine. See the module docs.
///
/// Its `Debug` shows state and sizes, never buffered bytes (see `debug.rs`).
pub struct Connection {
    config: Config,
    state: State,
    tuned: Tuned,
    read_buf: BytesMut,
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
    events: events::EventQueue,
    channels: Vec<Option<Channel>>,
    free_ids: Vec<u16>,
    idle: Vec<u16>,
    publish_channel: Option<u16>,
    /// Channels holding a coalesced ack not yet encoded.
    ack_channels: Vec<u16>,
    /// When the coalesced acks of `ack_channels` go out.
    acks: AckWait,
    /// Transactions: whether the publish channel is (to be) transactional.
    tx: TxState,
    /// Pooled channels that hold unsettled `basic.get` deliveries, by queue:
    /// the next get of that queue runs there.
    held_gets: HeldGets,
    /// Commits and rollbacks in flight, each spanning several channels.
    tx_groups: Vec<TxGroup>,
    next_tx_group: u64,
    connect_tag: Option<Tag>,
    close_tag: Option<Tag>,
    server_properties: FieldTable,
    confirm: ConfirmMode,
    dead: Option<Error>,
    // Timers.
    heard: Heard,
    beat: Beat,
    handshake_deadline: Option<Instant>,
    close_deadline: Option<Instant>,
    /// Counters; gauges are added by [`Connection::stats`].
    stats: Stats,
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
            write_buf,
            deferred: BytesMut::new(),
            deferred_marks: Vec::new(),
            written_total: 0,
            flush_marks: VecDeque::new(),
            written: VecDeque::new(),
            events: events::EventQueue::default(),
            channels: Vec::new(),
            free_ids: Vec::new(),
            idle: Vec::new(),
            publish_channel: None,
            ack_channels: Vec::new(),
            acks: AckWait::Idle,
            tx: TxState::Off,
            held_gets: HeldGets::default(),
            tx_groups: Vec::new(),
            next_tx_group: 0,
            connect_tag: Some(connect_tag),
            close_tag: None,
            server_properties: FieldTable::new(),
            confirm: ConfirmMode::Plain,
            dead: None,
            heard: Heard::At(now),
            beat: Beat::Off,
            handshake_deadline,
            close_deadline: None,
            stats: Stats::default(),
            blocked: None,
            secret_updates: VecDeque::new(),
            waiting: VecDeque::new(),
        }
    }

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
        self.confirm == ConfirmMode::Confirmed
    }

    /// Whether the broker has blocked publishing.
    pub fn is_blocked(&self) -> bool {
        self.blocked.is_some()
    }

    /// What the connection has done so far, and its state now (the
    /// `promises` gauge is left 0: the caller knows it).
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.channels = self.open_channels();
        s.consumers = self
            .channels
            .iter()
            .flatten()
            .filter(|c| matches!(&c.role, Role::Consumer(k) if !k.ended))
            .count();
        s.unconfirmed = self.unconfirmed_count();
        s.write_buffer = self.pending_write_bytes();
        s.blocked = self.is_blocked();
        s
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

    /// The settings this connection was made with (the secret as last
    /// updated): what a reconnection reuses.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The queues of the consumer started by `consume_tag`, each with the
    /// consumer tag it was given, in the order they were asked for (right
    /// after [`Connection::consume`]: what a restore must ask for again).
    pub fn consumer_queues(&self, consume_tag: Tag) -> Option<Vec<(ShortString, ShortString)>> {
        self.channels.iter().flatten().find_map(|c| match &c.role {
            Role::Consumer(k) if k.tag == consume_tag => Some(
                k.tags
                    .iter()
                    .chain(k.pending.iter())
                    .map(|t| (t.tag.clone(), t.queue.clone()))
                    .collect(),
            ),
            _ => None,
        })
    }

    /// Number of channels currently open or opening.
    pub fn open_channels(&self) -> usize {
        self.channels.iter().filter(|c| c.is_some()).count()
    }
}

#[cfg(test)]
mod tests;
