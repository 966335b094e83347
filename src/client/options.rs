//! Options beyond what the URL says, and what a publish does when the
//! client is full.

use super::*;

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

/// Options beyond what the URL says, set with builder methods (the struct
/// is `#[non_exhaustive]`, so new options are not breaking changes).
///
/// ```
/// use puka::{Options, WhenFull};
/// use std::time::Duration;
/// let options = Options::default()
///     .connection_name("billing")
///     .when_full(WhenFull::Refuse)
///     .close_timeout(Duration::from_secs(2));
/// assert_eq!(options.when_full, WhenFull::Refuse);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
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
    /// Automatic recovery of a lost connection (default `None`: a loss
    /// ends the client's connection for good). See [`Recovery`] and the
    /// guide's connection-loss chapter.
    pub recovery: Option<Recovery>,
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
            recovery: None,
            #[cfg(feature = "tls")]
            tls: TlsOptions::default(),
        }
    }
}

impl Options {
    /// Replaces the extra `client_properties` entries. See the field.
    #[must_use]
    pub fn client_properties(mut self, value: FieldTable) -> Self {
        self.client_properties = value;
        self
    }

    /// Sets the publisher-confirms policy. See the field.
    #[must_use]
    pub fn confirms(mut self, value: Confirms) -> Self {
        self.confirms = value;
        self
    }

    /// Sets the largest incoming message body accepted. See the field.
    #[must_use]
    pub fn max_message_size(mut self, value: u64) -> Self {
        self.max_message_size = value;
        self
    }

    /// Sets the queued bytes at which a publish meets backpressure. See the field.
    #[must_use]
    pub fn write_high_water(mut self, value: usize) -> Self {
        self.write_high_water = value;
        self
    }

    /// Sets the most publishes awaiting confirms before backpressure. See the field.
    #[must_use]
    pub fn max_unconfirmed(mut self, value: Option<usize>) -> Self {
        self.max_unconfirmed = value;
        self
    }

    /// Sets what a publish does when the client is full. See the field.
    #[must_use]
    pub fn when_full(mut self, value: WhenFull) -> Self {
        self.when_full = value;
        self
    }

    /// Sets the longest the broker may keep the connection blocked. See the field.
    #[must_use]
    pub fn blocked_timeout(mut self, value: Option<Duration>) -> Self {
        self.blocked_timeout = value;
        self
    }

    /// Sets how long `close` waits for operations in flight and close-ok. See the field.
    #[must_use]
    pub fn close_timeout(mut self, value: Duration) -> Self {
        self.close_timeout = value;
        self
    }

    /// Sets when a consumer's acks are handed to the socket. See the field.
    #[must_use]
    pub fn ack_timing(mut self, value: AckTiming) -> Self {
        self.ack_timing = value;
        self
    }

    /// Sets the bytes of received messages held before reading stops. See the field.
    #[must_use]
    pub fn max_buffered_bytes(mut self, value: usize) -> Self {
        self.max_buffered_bytes = value;
        self
    }

    /// Sets how long dropping the client may block. See the field.
    #[must_use]
    pub fn drop_flush_timeout(mut self, value: Duration) -> Self {
        self.drop_flush_timeout = value;
        self
    }

    /// Sets the bound on each TCP connect. See the field.
    #[must_use]
    pub fn connect_timeout(mut self, value: Duration) -> Self {
        self.connect_timeout = value;
        self
    }

    /// Sets the order the addresses are tried in. See the field.
    #[must_use]
    pub fn address_order(mut self, value: AddressOrder) -> Self {
        self.address_order = value;
        self
    }

    /// Sets automatic recovery. See the field.
    #[must_use]
    pub fn recovery(mut self, value: Option<Recovery>) -> Self {
        self.recovery = value;
        self
    }

    /// Sets the TLS settings for `amqps://` URLs. See the field.
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls(mut self, value: TlsOptions) -> Self {
        self.tls = value;
        self
    }

    /// Sets the name the broker shows for this connection.
    #[must_use]
    pub fn connection_name(mut self, name: &str) -> Self {
        self.client_properties
            .insert("connection_name", FieldValue::from(name));
        self
    }
}
