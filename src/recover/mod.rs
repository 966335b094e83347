//! Connection recovery as a state machine without I/O: the record of what
//! was declared, the backoff between attempts, and the restore of the
//! record on a fresh protocol [`Connection`].
//!
//! **Unstable**: public only with the `unstable` feature, and outside
//! semver — any release may change it.
//!
//! [`Recoverer`] owns no socket, no [`Connection`] and reads no clock: its
//! caller (the `Client`, or a test or fuzz harness) feeds it what the
//! connection reported and the current time, passes the connection where
//! the restore sends something, and opens a transport when told to. The
//! layering reads: codec → protocol ([`Connection`]) → recovery
//! ([`Recoverer`]) → client (sockets, addresses, promises).
//!
//! The order of calls:
//!
//! ```text
//!   operations     -> note_rpc / note_consumer / note_tx_select / note_channel_qos
//!   each Complete  -> handle_complete(tag, result, conn, now): Some(result) goes
//!                     to its promise, None was recovery's own
//!   ConsumerEnded  -> consumer_ended(tag)
//!   first open-ok  -> handle_connected()
//!   Closed(e)      -> handle_loss(e, walk_pending, now): true = recovering
//!   timer          -> handle_timeout(now, conn) at poll_timeout(); a
//!                     Reconnect means: a fresh Connection completing its
//!                     `handshake` tag, on a transport to the next address
//!   that Connection-> handle_transport(conn), before anything else on it
//!   always         -> poll_event() until None
//! ```

mod record;
mod restore;
#[cfg(test)]
mod tests;

use crate::codec::reply_code;
use crate::codec::Method;
use crate::error::Error;
use crate::protocol::{Connection, ConsumeQueue, Outcome, Tag};
use crate::rng::XorShift;
use record::{Entity, Record};
use restore::Restore;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a client recovers a lost connection ([`Options::recovery`]).
///
/// ```
/// use puka::{Options, Recovery};
/// use std::time::Duration;
/// let options = Options::default().recovery(Some(
///     Recovery::default()
///         .initial_backoff(Duration::from_millis(200))
///         .max_backoff(Duration::from_secs(5))
///         .max_attempts(Some(30)),
/// ));
/// # let _ = options;
/// ```
///
/// [`Options::recovery`]: crate::Options::recovery
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// The wait before the first reconnection attempt (default 100 ms);
    /// each failed attempt doubles it, up to `max_backoff`, with up to
    /// ±25 % jitter so many clients do not come back at once.
    pub initial_backoff: Duration,
    /// The longest wait between attempts (default 10 s).
    pub max_backoff: Duration,
    /// Attempts before giving up (`None`, the default: never give up). When
    /// it gives up, the connection ends with the last error, as without
    /// recovery.
    pub max_attempts: Option<u32>,
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_attempts: None,
        }
    }
}

impl Recovery {
    /// Sets the wait before the first attempt.
    #[must_use]
    pub fn initial_backoff(mut self, d: Duration) -> Self {
        self.initial_backoff = d;
        self
    }

    /// Sets the longest wait between attempts.
    #[must_use]
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// Sets how many attempts are made before giving up.
    #[must_use]
    pub fn max_attempts(mut self, n: Option<u32>) -> Self {
        self.max_attempts = n;
        self
    }

    /// The wait before attempt `attempt` (1-based), jittered by `noise`
    /// (a number in 0..1000).
    fn backoff(&self, attempt: u32, noise: u64) -> Duration {
        let doublings = attempt.saturating_sub(1).min(20);
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff);
        // ±25 %.
        let jitter = base / 4;
        let offset = jitter.mul_f64(noise as f64 / 500.0);
        (base - jitter + offset).min(self.max_backoff)
    }
}

/// What recovery reports; the client turns each into its
/// `ConnectionEvent` of the same name.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The connection was lost and recovery takes over.
    Disconnected(Error),
    /// Reconnection attempt `attempt` starts.
    Reconnecting {
        /// 1 for the first attempt after a loss.
        attempt: u32,
    },
    /// A reconnection's handshake finished; the restore starts.
    Reconnected,
    /// The restore finished: every recorded exchange, queue, binding,
    /// channel-wide qos and transaction mode was answered (what could not be
    /// restored was reported first, as [`Event::RecoveryFailed`]) and every
    /// consumer's `basic.consume` was sent. Once per reconnection; not for
    /// a restore cut off by another loss or by [`Recoverer::stop`] (nor
    /// `RecoveryFailed` for what it had in flight).
    Restored,
    /// Something recorded could not be restored.
    RecoveryFailed {
        /// What it was, e.g. `queue "jobs"`.
        entity: String,
        /// The broker's error.
        error: Error,
    },
    /// A server-named queue came back under a new name.
    QueueRenamed {
        /// The name before the loss.
        old: String,
        /// The name now.
        new: String,
    },
}

/// What [`Recoverer::handle_timeout`] asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reconnect {
    /// Which attempt this is (1 for the first after a loss).
    pub attempt: u32,
    /// The tag the fresh [`Connection`]'s handshake completes: pass it to
    /// [`Connection::new`], and its completion to
    /// [`Recoverer::handle_complete`].
    pub handshake: Tag,
}

/// Where recovery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The first handshake has not finished: a failure then is not
    /// recovered (the caller sees it).
    Starting,
    /// Connected; the record is kept up to date.
    Connected,
    /// Lost: the next attempt starts at `at`.
    Waiting { attempt: u32, at: Instant },
    /// Attempt `attempt` is under way (transport, handshake), its
    /// handshake completing `handshake`.
    Connecting { attempt: u32, handshake: Tag },
}

/// The recovery state machine of one client. See the module docs.
#[derive(Debug)]
pub struct Recoverer {
    policy: Recovery,
    phase: Phase,
    /// What was declared.
    record: Record,
    /// The restore in flight (empty when none is).
    restore: Restore,
    next_tag: u64,
    /// Jitter: seeded per client, so clients of one process (or of many
    /// started together) do not come back in step.
    rng: XorShift,
    /// Reconnections that reached an open connection.
    reconnects: u64,
    events: VecDeque<Event>,
}

/// Internal tags (restore operations, handshakes of reconnections) have a
/// generation of 0, which no promise of the client has.
fn internal_tag(n: u64) -> Tag {
    n & 0xFFFF_FFFF
}

/// Whether a handshake that failed with `e` may go better at another
/// address: yes unless the broker refused the login or the vhost, or the
/// user closed (the same would happen everywhere).
pub fn moves_on(e: &Error) -> bool {
    !matches!(
        e,
        Error::AccessRefused(_)
            | Error::NotAllowed(_)
            | Error::InvalidPath(_)
            | Error::NoAuthMechanism(_)
            | Error::ConnectionClosed
            | Error::Config(_)
            | Error::InvalidArgument(_)
    )
}

/// Whether a connection that ended with `e` is recovered: once connected,
/// a lost socket, a silent peer, or a node shutting down (320); during a
/// reconnection, any failure that moves on to the next address (as the
/// first connect's: [`moves_on`]). Never our own close, a refused login or
/// vhost, or a protocol violation of an open connection.
fn recoverable(e: &Error, phase: Phase) -> bool {
    match phase {
        Phase::Starting => false,
        Phase::Connecting { .. } | Phase::Waiting { .. } => moves_on(e),
        Phase::Connected => match e {
            Error::ConnectionBroken(_) | Error::HeartbeatTimeout(_) => true,
            // Like a broken socket: TLS failing on an open connection.
            #[cfg(feature = "tls")]
            Error::Tls(_) => true,
            Error::ConnectionForced(r) => r.code == reply_code::CONNECTION_FORCED,
            _ => false,
        },
    }
}

impl Recoverer {
    /// A recoverer with `policy`, its backoff jitter drawn from `seed`.
    pub fn new(policy: Recovery, seed: u64) -> Recoverer {
        Recoverer {
            policy,
            phase: Phase::Starting,
            record: Record::default(),
            restore: Restore::default(),
            next_tag: 1,
            rng: XorShift::from_seed(seed),
            reconnects: 0,
            events: VecDeque::new(),
        }
    }

    fn tag(&mut self) -> Tag {
        let t = internal_tag(self.next_tag);
        self.next_tag += 1;
        t
    }

    /// A number in 0..1000 for the jitter of a backoff.
    fn noise(&mut self) -> u64 {
        self.rng.next() % 1000
    }

    /// Reconnections that reached an open connection.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Whether a reconnection is scheduled or under way.
    pub fn is_recovering(&self) -> bool {
        matches!(self.phase, Phase::Waiting { .. } | Phase::Connecting { .. })
    }

    /// When [`Recoverer::handle_timeout`] is next due: the next attempt, or
    /// a queue restore waiting to be tried again.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Waiting { at, .. } => Some(at),
            _ => self.restore.next_retry(),
        }
    }

    /// The next event to report.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Records a declaration or deletion sent as `tag`: it joins or leaves
    /// the record once the broker confirms it.
    pub fn note_rpc(&mut self, tag: Tag, method: &Method) {
        self.record.note_rpc(tag, method);
    }

    /// Records a `tx.select` sent as `tag`: the mode is restored once it
    /// succeeded.
    pub fn note_tx_select(&mut self, tag: Tag) {
        self.record.note_tx_select(tag);
    }

    /// Records the consumer `tag` just started on `conn` with `queues`,
    /// keeping the consumer tags the connection chose.
    pub fn note_consumer(
        &mut self,
        conn: &Connection,
        tag: Tag,
        queues: Vec<ConsumeQueue>,
        no_ack: bool,
        prefetch: u16,
    ) {
        let Some(tags) = conn.consumer_queues(tag) else {
            // Refused at once (no channel, a bad tag): nothing to restore.
            return;
        };
        self.record
            .note_consumer(tag, queues, tags, no_ack, prefetch);
    }

    /// Records a `basic.qos` with `global` sent as `tag` on the channel of
    /// `consumer`: once it succeeded, that window is set again before the
    /// consumer is restored.
    pub fn note_channel_qos(&mut self, tag: Tag, consumer: Tag, size: u32, count: u16) {
        self.record.pending.insert(
            tag,
            Entity::ChannelQos {
                consumer,
                size,
                count,
            },
        );
    }

    /// A consumer ended (cancelled by the user): it leaves the record.
    pub fn consumer_ended(&mut self, tag: Tag) {
        let in_flight = self.restore.in_flight();
        self.record.forget_consumer(tag, in_flight);
    }

    /// The first handshake finished: from now on a loss is recovered.
    pub fn handle_connected(&mut self) {
        if self.phase == Phase::Starting {
            self.phase = Phase::Connected;
        }
    }

    /// Sees a completion of `conn` before it reaches its promise: keeps the
    /// record current and takes the restore's own results (the restore may
    /// send more on `conn`). Returns the result when it is for a promise.
    pub fn handle_complete(
        &mut self,
        tag: Tag,
        result: Result<Outcome, Error>,
        conn: &mut Connection,
        now: Instant,
    ) -> Option<Result<Outcome, Error>> {
        if let Phase::Connecting { handshake, .. } = self.phase {
            if handshake != tag && self.restore.take(tag).is_some() {
                // Transaction mode, queued with the handshake, failed with
                // the connection: the next attempt restores it anew.
                return None;
            }
            if handshake == tag {
                // A failed handshake: the connection's end follows and
                // schedules the next attempt.
                if result.is_ok() {
                    self.reconnects += 1;
                    tr_info!("reconnected");
                    self.events.push_back(Event::Reconnected);
                    self.phase = Phase::Connected;
                    self.start_restore(conn);
                }
                return None;
            }
        }
        if let Some(i) = self.restore.take(tag) {
            match &result {
                // Cut off by a loss, not refused: no `RecoveryFailed`, and
                // no `Restored`; the next attempt restores anew.
                Err(e) if conn.is_closed() && recoverable(e, self.phase) => {}
                _ => self.restore_answered(i, result, conn, now),
            }
            return None;
        }
        let in_flight = self.restore.in_flight();
        if let Some(entity) = self.record.pending.remove(&tag) {
            if let Ok(outcome) = &result {
                self.record.confirmed(entity, outcome);
            }
            return Some(result);
        }
        if let Some(method) = self.record.deleting.remove(&tag) {
            if result.is_ok() {
                self.record.apply_delete(&method, in_flight);
            }
            return Some(result);
        }
        // A consumer's promise completes only when it fails: the scan of
        // the record is not paid by every get and RPC.
        if result.is_err() && self.record.is_consumer(tag) {
            match &result {
                // Lost with the connection: the consumer goes on after
                // recovery, so this is not its end.
                Err(e) if conn.is_closed() && recoverable(e, self.phase) => return None,
                // The consumer ended for good (cancelled, its queue gone,
                // recovery gave up): it is not revived.
                _ => self.record.forget_consumer(tag, in_flight),
            }
        }
        Some(result)
    }

    /// The connection ended with `e`: whether recovery takes over (then a
    /// reconnection is scheduled, see [`Recoverer::poll_timeout`]).
    /// `walk_pending` tells whether the attempt's walk through the
    /// addresses has addresses left: a reconnection that failed after its
    /// transport was up goes on at once with the next one.
    pub fn handle_loss(&mut self, e: &Error, walk_pending: bool, now: Instant) -> bool {
        if !recoverable(e, self.phase) {
            // Over (a refused login during a reconnection): nothing is
            // scheduled any more.
            self.phase = Phase::Starting;
            self.restore.clear();
            return false;
        }
        let attempt = match self.phase {
            Phase::Connected => {
                tr_warn!(error = %e, "connection lost; recovering");
                self.events.push_back(Event::Disconnected(e.clone()));
                1
            }
            // The attempt goes on with the addresses its walk has left.
            Phase::Connecting { attempt, .. } if walk_pending => attempt,
            Phase::Connecting { attempt, .. } => attempt + 1,
            Phase::Waiting { attempt, .. } => attempt,
            Phase::Starting => return false,
        };
        if self.policy.max_attempts.is_some_and(|max| attempt > max) {
            tr_warn!(attempts = attempt - 1, "recovery gives up");
            self.phase = Phase::Starting;
            self.restore.clear();
            return false;
        }
        let at = match self.phase {
            Phase::Connecting { .. } if walk_pending => now,
            _ => {
                let noise = self.noise();
                now + self.policy.backoff(attempt, noise)
            }
        };
        self.phase = Phase::Waiting { attempt, at };
        self.restore.clear();
        // Declarations and deletions in flight were failed with the
        // connection: they are not recorded.
        self.record.pending.clear();
        self.record.deleting.clear();
        true
    }

    /// Fires what is due at `now`: the next reconnection attempt (returned:
    /// the caller makes a fresh [`Connection`] and a transport), or queue
    /// restores waiting to be tried again (sent on `conn`).
    pub fn handle_timeout(&mut self, now: Instant, conn: &mut Connection) -> Option<Reconnect> {
        let Phase::Waiting { attempt, at } = self.phase else {
            self.retry_locked(now, conn);
            return None;
        };
        if now < at {
            return None;
        }
        let handshake = self.tag();
        self.phase = Phase::Connecting { attempt, handshake };
        tr_info!(attempt, "reconnecting");
        self.events.push_back(Event::Reconnecting { attempt });
        Some(Reconnect { attempt, handshake })
    }

    /// A reconnection's fresh [`Connection`] (the one a [`Reconnect`] asked
    /// for), before anything else is done on it: transaction mode, if it
    /// was selected, is queued as its first channel work, so that work
    /// queued during the handshake stays transactional.
    pub fn handle_transport(&mut self, conn: &mut Connection) {
        if matches!(self.phase, Phase::Connecting { .. }) {
            self.start_early_restore(conn);
        }
    }

    /// Recovery gave up (or was not possible): the tags of the consumers
    /// kept alive for it, which end now; they leave the record.
    pub fn take_consumers(&mut self) -> Vec<Tag> {
        let in_flight = self.restore.in_flight();
        self.record.take_consumers(in_flight)
    }

    /// The user closes: recovery stops. Returns whether it was waiting
    /// between attempts (no connection: the close is then complete, and the
    /// caller ends the consumers, see [`Recoverer::take_consumers`]).
    pub fn stop(&mut self) -> bool {
        let waiting = matches!(self.phase, Phase::Waiting { .. });
        if self.is_recovering() {
            self.phase = Phase::Starting;
        }
        // A restore in flight ends with the close: what it sent fails with
        // the close, which is no failure to restore (no `RecoveryFailed`),
        // and it is not `Restored`.
        self.restore.clear();
        waiting
    }
}
