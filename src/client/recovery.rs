//! Automatic recovery (opt-in, [`Options::recovery`]): after a connection
//! is lost, reconnect with backoff through the broker addresses and restore
//! the topology this client declared — driven by the caller's `wait`, loop
//! or reactor like everything else (no thread).
//!
//! What is kept across a loss: the client, its promises' ids, consumers
//! (their promise goes on yielding deliveries), and the record of what was
//! declared. What is not: pending operations fail (never replayed), publishes
//! awaiting confirms fail with [`Error::OutcomeUnknown`], deliveries from
//! before the loss can no longer be acked (their channel is gone: a local
//! [`Error::UnknownDeliveryTag`]).

use super::addresses;
use super::*;
use crate::codec::method::{ExchangeBind, QueueBind};
use crate::codec::{reply_code, ShortString};
use crate::protocol::{ConsumeQueue, Outcome};
use std::collections::HashMap;

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

/// Something the client declared, recorded to be restored after a loss.
#[derive(Debug, Clone)]
enum Entity {
    Exchange(ExchangeDeclare),
    /// A queue; `name` is its current name (a server-named queue's changes
    /// with each recovery).
    Queue {
        declare: QueueDeclare,
        name: String,
        server_named: bool,
        /// A consumer of this client consumed from it.
        consumed: bool,
    },
    ExchangeBinding(ExchangeBind),
    QueueBinding(QueueBind),
    /// A consumer: its promise's tag and what it consumes (with the consumer
    /// tags it was given, so they stay the same).
    Consumer {
        tag: Tag,
        queues: Vec<ConsumeQueue>,
        no_ack: bool,
        prefetch: u16,
        /// The channel-wide window (`basic.qos` with `global`:
        /// `(prefetch_size, prefetch_count)`) last set on its channel,
        /// restored before the consumer starts again.
        channel_qos: Option<(u32, u16)>,
    },
    /// A channel-wide `basic.qos` sent for the consumer `consumer`: only
    /// ever pending, it lands on that consumer's record when it succeeds.
    ChannelQos {
        consumer: Tag,
        size: u32,
        count: u16,
    },
    /// Transactions were selected (`tx.select`): the new publish channel,
    /// and the channels holding deliveries, are made transactional again.
    Tx,
    /// Removed while a restore was in flight: the restore's operations name
    /// entities by their index, so the slot stays until it is over.
    Gone,
}

impl Entity {
    /// Restore order: exchanges, queues, then what refers to them.
    fn phase(&self) -> u8 {
        match self {
            Entity::Exchange(_) | Entity::Queue { .. } => 0,
            Entity::ExchangeBinding(_)
            | Entity::QueueBinding(_)
            | Entity::Consumer { .. }
            | Entity::ChannelQos { .. }
            | Entity::Tx
            | Entity::Gone => 1,
        }
    }

    fn describe(&self) -> String {
        match self {
            Entity::Exchange(x) => format!("exchange {:?}", x.exchange.as_str()),
            Entity::Queue { name, .. } => format!("queue {name:?}"),
            Entity::ExchangeBinding(b) => format!(
                "binding of exchange {:?} to {:?}",
                b.destination.as_str(),
                b.source.as_str()
            ),
            Entity::QueueBinding(b) => format!(
                "binding of queue {:?} to {:?}",
                b.queue.as_str(),
                b.exchange.as_str()
            ),
            Entity::Consumer { queues, .. } => {
                let names: Vec<&str> = queues.iter().map(|q| q.queue.as_str()).collect();
                format!("consumer of {names:?}")
            }
            Entity::ChannelQos { .. } => "channel prefetch window".to_string(),
            Entity::Tx => "transaction mode".to_string(),
            Entity::Gone => "nothing (removed)".to_string(),
        }
    }
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
    /// Attempt `attempt` is under way (TCP, handshake, then restoring).
    Connecting { attempt: u32 },
}

/// Recovery's state in a client.
#[derive(Debug)]
pub(super) struct RecoveryState {
    policy: Recovery,
    phase: Phase,
    /// What was declared, in order.
    record: Vec<Entity>,
    /// Declarations sent and not yet confirmed: recorded when they succeed.
    pending: HashMap<Tag, Entity>,
    /// Deletions sent: applied to the record when they succeed.
    deleting: HashMap<Tag, Method>,
    /// Operations of the restore in flight (by their internal tags), with
    /// the index of the entity in `record`.
    restoring: HashMap<Tag, usize>,
    /// The restore's second phase (bindings, consumers) waits for the
    /// first (exchanges, queues) to be answered.
    second_phase_started: bool,
    /// Queues the broker refused with 405 `RESOURCE_LOCKED` (an exclusive
    /// queue still held by the lost connection's half-open other end, until
    /// the broker notices it is gone): declared again at `at`, up to
    /// [`LOCKED_RETRIES`] times. Bindings and consumers wait for them.
    locked: Vec<Locked>,
    /// The internal tag of the reconnection's handshake.
    handshake: Option<Tag>,
    next_tag: u64,
    /// Jitter: seeded per client, so clients of one process (or of many
    /// started together) do not come back in step.
    rng: super::addresses::XorShift,
    /// Reconnections that reached an open connection.
    pub(super) reconnects: u64,
    last_error: Option<Error>,
}

/// How often a queue locked by the lost connection is declared again.
const LOCKED_RETRIES: u32 = 20;
/// The wait between those attempts (20 × 500 ms: 10 s, several heartbeat
/// intervals of a broker noticing the old connection is gone).
const LOCKED_RETRY_DELAY: Duration = Duration::from_millis(500);

/// A queue restore to try again.
#[derive(Debug, Clone, Copy)]
struct Locked {
    index: usize,
    /// When to declare it again; `None` while that declare is in flight.
    at: Option<Instant>,
    tries: u32,
}

/// Internal tags (restore operations, handshakes of reconnections) have a
/// generation of 0, which no promise has.
fn internal_tag(n: u64) -> Tag {
    n & 0xFFFF_FFFF
}

impl RecoveryState {
    pub(super) fn new(policy: Recovery) -> Self {
        RecoveryState {
            policy,
            phase: Phase::Starting,
            record: Vec::new(),
            pending: HashMap::new(),
            deleting: HashMap::new(),
            restoring: HashMap::new(),
            second_phase_started: false,
            locked: Vec::new(),
            handshake: None,
            next_tag: 1,
            reconnects: 0,
            rng: super::addresses::XorShift::seeded(),
            last_error: None,
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

    /// How often the queue at `index` was refused as locked.
    fn locked_tries(&self, index: usize) -> u32 {
        self.locked
            .iter()
            .find(|l| l.index == index)
            .map_or(0, |l| l.tries)
    }

    /// Whether a consumer's promise is recorded (its failure at a loss is
    /// not reported: it goes on after recovery).
    fn is_consumer(&self, tag: Tag) -> bool {
        self.record
            .iter()
            .any(|e| matches!(e, Entity::Consumer { tag: t, .. } if *t == tag))
    }

    fn forget_consumer(&mut self, tag: Tag) {
        self.remove_where(|e| matches!(e, Entity::Consumer { tag: t, .. } if *t == tag));
    }

    /// Takes what `gone` picks out of the record: at once when no restore
    /// is in flight, else as [`Entity::Gone`] slots (the restore's answers
    /// find their entities by index), dropped when the next restore starts.
    fn remove_where(&mut self, gone: impl Fn(&Entity) -> bool) {
        if self.restoring.is_empty() && self.locked.is_empty() {
            self.record
                .retain(|e| !gone(e) && !matches!(e, Entity::Gone));
        } else {
            for e in &mut self.record {
                if gone(e) {
                    *e = Entity::Gone;
                }
            }
        }
    }

    /// A deletion succeeded: what it deleted leaves the record.
    fn apply_delete(&mut self, method: &Method) {
        match method {
            Method::QueueDelete(d) => {
                let q = d.queue.as_str();
                self.remove_where(|e| match e {
                    Entity::Queue { name, .. } => name == q,
                    Entity::QueueBinding(b) => b.queue.as_str() == q,
                    _ => false,
                });
            }
            Method::ExchangeDelete(d) => {
                let x = d.exchange.as_str();
                self.remove_where(|e| match e {
                    Entity::Exchange(e) => e.exchange.as_str() == x,
                    Entity::QueueBinding(b) => b.exchange.as_str() == x,
                    Entity::ExchangeBinding(b) => {
                        b.source.as_str() == x || b.destination.as_str() == x
                    }
                    _ => false,
                });
            }
            Method::QueueUnbind(u) => self.remove_where(|e| match e {
                Entity::QueueBinding(b) => {
                    b.queue == u.queue
                        && b.exchange == u.exchange
                        && b.routing_key == u.routing_key
                        && b.arguments == u.arguments
                }
                _ => false,
            }),
            Method::ExchangeUnbind(u) => self.remove_where(|e| match e {
                Entity::ExchangeBinding(b) => {
                    b.destination == u.destination
                        && b.source == u.source
                        && b.routing_key == u.routing_key
                        && b.arguments == u.arguments
                }
                _ => false,
            }),
            _ => {}
        }
    }

    /// A queue whose restore would resurrect something that was meant to
    /// go away: an auto-delete queue whose consumers have all left (it was
    /// consumed, and no recorded consumer is left on it), or a queue that
    /// expires (`x-expires`).
    fn would_resurrect(&self, declare: &QueueDeclare, name: &str, was_consumed: bool) -> bool {
        let consumed_now = self.record.iter().any(|e| match e {
            Entity::Consumer { queues, .. } => queues.iter().any(|q| q.queue.as_str() == name),
            _ => false,
        });
        (declare.auto_delete && was_consumed && !consumed_now)
            || declare.arguments.get("x-expires").is_some()
    }
}

impl Client {
    /// Records a declaration or deletion sent as `tag` (when recovery is
    /// on): it joins or leaves the record once the broker confirms it.
    pub(super) fn note_rpc(&mut self, tag: Tag, method: &Method) {
        let Some(r) = self.recovery.as_mut() else {
            return;
        };
        let entity = match method {
            Method::ExchangeDeclare(x) if !x.passive => Entity::Exchange(x.clone()),
            Method::QueueDeclare(q) if !q.passive => Entity::Queue {
                declare: q.clone(),
                name: q.queue.to_string(),
                server_named: q.queue.is_empty(),
                consumed: false,
            },
            Method::ExchangeBind(b) => Entity::ExchangeBinding((**b).clone()),
            Method::QueueBind(b) => Entity::QueueBinding((**b).clone()),
            Method::QueueDelete(_)
            | Method::ExchangeDelete(_)
            | Method::QueueUnbind(_)
            | Method::ExchangeUnbind(_) => {
                r.deleting.insert(tag, method.clone());
                return;
            }
            _ => return,
        };
        r.pending.insert(tag, entity);
    }

    /// Records a `tx.select` sent as `tag` (when recovery is on): the mode
    /// is restored once it succeeded.
    pub(super) fn note_tx_select(&mut self, tag: Tag) {
        if let Some(r) = self.recovery.as_mut() {
            if !r.record.iter().any(|e| matches!(e, Entity::Tx)) {
                r.pending.insert(tag, Entity::Tx);
            }
        }
    }

    /// Records a consumer (when recovery is on), with the consumer tags the
    /// protocol chose, so a restored consumer keeps them.
    pub(super) fn note_consumer(
        &mut self,
        tag: Tag,
        mut queues: Vec<ConsumeQueue>,
        no_ack: bool,
        prefetch: u16,
    ) {
        let Some(tags) = self.conn.consumer_queues(tag) else {
            // Refused at once (no channel, a bad tag): nothing to restore.
            return;
        };
        let Some(r) = self.recovery.as_mut() else {
            return;
        };
        for (q, (ctag, _)) in queues.iter_mut().zip(tags) {
            q.consumer_tag = ctag;
        }
        for e in &mut r.record {
            if let Entity::Queue { name, consumed, .. } = e {
                if queues.iter().any(|q| q.queue.as_str() == name) {
                    *consumed = true;
                }
            }
        }
        r.record.push(Entity::Consumer {
            tag,
            queues,
            no_ack,
            prefetch,
            channel_qos: None,
        });
    }

    /// Records a `basic.qos` with `global` sent as `tag` on the channel of
    /// `consumer` (when recovery is on): once it succeeded, that window is
    /// set again before the consumer is restored.
    pub(super) fn note_channel_qos(&mut self, tag: Tag, consumer: Tag, size: u32, count: u16) {
        if let Some(r) = self.recovery.as_mut() {
            r.pending.insert(
                tag,
                Entity::ChannelQos {
                    consumer,
                    size,
                    count,
                },
            );
        }
    }

    /// Sees a completion before it reaches its promise: keeps the record
    /// current and takes the restore's own results. Returns the event when
    /// it is for a promise.
    pub(super) fn recovery_sees(
        &mut self,
        tag: Tag,
        result: Result<Outcome, Error>,
    ) -> Option<Result<Outcome, Error>> {
        let Some(r) = self.recovery.as_mut() else {
            return Some(result);
        };
        // Publish confirms, the bulk of completions, are never recorded.
        if super::promise::is_publish_tag(tag) {
            return Some(result);
        }
        if r.handshake == Some(tag) {
            r.handshake = None;
            // A failed handshake: the connection's end follows and
            // schedules the next attempt.
            if result.is_ok() {
                r.reconnects += 1;
                let address = self
                    .connected_address()
                    .map(|a| format!("{}:{}", a.host, a.port))
                    .unwrap_or_default();
                tr_info!(%address, "reconnected");
                self.conn_events
                    .push_back(ConnectionEvent::Reconnected { address });
                self.start_restore();
            }
            return None;
        }
        if let Some(i) = r.restoring.remove(&tag) {
            self.restore_answered(i, result);
            return None;
        }
        if let Some(entity) = r.pending.remove(&tag) {
            if let Ok(outcome) = &result {
                let entity = match (entity, outcome) {
                    (
                        Entity::Queue {
                            declare,
                            server_named: true,
                            ..
                        },
                        Outcome::QueueDeclared(ok),
                    ) => Entity::Queue {
                        declare,
                        name: ok.queue.to_string(),
                        server_named: true,
                        consumed: false,
                    },
                    (
                        Entity::ChannelQos {
                            consumer,
                            size,
                            count,
                        },
                        _,
                    ) => {
                        for e in &mut r.record {
                            if let Entity::Consumer {
                                tag, channel_qos, ..
                            } = e
                            {
                                if *tag == consumer {
                                    *channel_qos = Some((size, count));
                                }
                            }
                        }
                        return Some(result);
                    }
                    (e, _) => e,
                };
                r.record.push(entity);
            }
            return Some(result);
        }
        if let Some(method) = r.deleting.remove(&tag) {
            if result.is_ok() {
                r.apply_delete(&method);
            }
            return Some(result);
        }
        if r.is_consumer(tag) {
            match &result {
                // Lost with the connection: the consumer goes on after
                // recovery, so this is not its end.
                Err(e) if self.conn.is_closed() && recoverable(e, r.phase) => return None,
                // The consumer ended for good (cancelled, its queue gone,
                // recovery gave up): it is not revived.
                _ => r.forget_consumer(tag),
            }
        }
        Some(result)
    }

    /// A consumer ended (cancelled by the user): it leaves the record.
    pub(super) fn recovery_consumer_ended(&mut self, tag: Tag) {
        if let Some(r) = self.recovery.as_mut() {
            r.forget_consumer(tag);
        }
    }

    /// The first handshake finished: from now on a loss is recovered.
    pub(super) fn recovery_connected(&mut self) {
        if let Some(r) = self.recovery.as_mut() {
            if r.phase == Phase::Starting {
                r.phase = Phase::Connected;
            }
        }
    }

    /// The connection ended with `e`: whether recovery takes over (then a
    /// reconnection is scheduled and the caller sees `Disconnected`, not
    /// `Closed`).
    pub(super) fn recovery_takes_over(&mut self, e: &Error) -> bool {
        let now = Instant::now();
        let Some(r) = self.recovery.as_mut() else {
            return false;
        };
        if !recoverable(e, r.phase) {
            return false;
        }
        let attempt = match r.phase {
            Phase::Connected => {
                tr_warn!(error = %e, "connection lost; recovering");
                self.conn_events
                    .push_back(ConnectionEvent::Disconnected(e.clone()));
                1
            }
            Phase::Connecting { attempt } => attempt + 1,
            Phase::Waiting { attempt, .. } => attempt,
            Phase::Starting => return false,
        };
        if r.policy.max_attempts.is_some_and(|max| attempt > max) {
            tr_warn!(attempts = attempt - 1, "recovery gives up");
            r.phase = Phase::Starting;
            return false;
        }
        // A reconnection that failed after TCP connected (a node that
        // accepts and then stalls or refuses) goes on at once with the next
        // address of its walk; a walk used up waits its backoff.
        let (attempt, at) = match r.phase {
            Phase::Connecting { attempt } if self.addresses.has_pending() => (attempt, now),
            _ => {
                let noise = r.noise();
                (attempt, now + r.policy.backoff(attempt, noise))
            }
        };
        r.phase = Phase::Waiting { attempt, at };
        r.last_error = Some(e.clone());
        r.restoring.clear();
        r.locked.clear();
        r.handshake = None;
        // Declarations and deletions in flight were failed with the
        // connection: they are not recorded.
        r.pending.clear();
        r.deleting.clear();
        true
    }

    /// Recovery gave up (or was not possible): consumers kept alive for it
    /// end now with `e`.
    pub(super) fn recovery_fail_consumers(&mut self, e: &Error) {
        let Some(r) = self.recovery.as_mut() else {
            return;
        };
        let tags: Vec<Tag> = r
            .record
            .iter()
            .filter_map(|x| match x {
                Entity::Consumer { tag, .. } => Some(*tag),
                _ => None,
            })
            .collect();
        r.remove_where(|x| matches!(x, Entity::Consumer { .. }));
        for tag in tags {
            let id = self.promises.id_of(tag);
            self.promises.push(id, Err(e.clone()), true);
        }
    }

    /// The user closes: recovery stops. Between attempts (no connection),
    /// the client is closed at once and its consumers end; returns whether
    /// that was the case (the close is then complete).
    pub(super) fn recovery_stop(&mut self) -> bool {
        let Some(r) = self.recovery.as_mut() else {
            return false;
        };
        let waiting = matches!(r.phase, Phase::Waiting { .. });
        let stop = matches!(r.phase, Phase::Waiting { .. } | Phase::Connecting { .. });
        if stop {
            r.phase = Phase::Starting;
        }
        if waiting {
            self.recovery_fail_consumers(&Error::ConnectionClosed);
            self.conn_events
                .push_back(ConnectionEvent::Closed(Error::ConnectionClosed));
        }
        waiting
    }

    /// Whether a reconnection is scheduled or under way.
    pub(super) fn recovering(&self) -> bool {
        self.recovery
            .as_ref()
            .is_some_and(|r| matches!(r.phase, Phase::Waiting { .. } | Phase::Connecting { .. }))
    }

    /// When the next reconnection attempt is due.
    pub(super) fn recovery_deadline(&self) -> Option<Instant> {
        let r = self.recovery.as_ref()?;
        match r.phase {
            Phase::Waiting { at, .. } => Some(at),
            _ => r.locked.iter().filter_map(|l| l.at).min(),
        }
    }

    /// Declares again the locked queues whose wait is over.
    fn retry_locked(&mut self, now: Instant) {
        let Some(r) = self.recovery.as_mut() else {
            return;
        };
        let due: Vec<usize> = r
            .locked
            .iter()
            .filter(|l| l.at.is_some_and(|at| at <= now))
            .map(|l| l.index)
            .collect();
        for l in r.locked.iter_mut().filter(|l| due.contains(&l.index)) {
            l.at = None;
        }
        for i in due {
            self.restore_entity(i);
        }
    }

    /// Starts the reconnection attempt when it is due: a fresh protocol
    /// connection (same settings, the current secret) over a new walk
    /// through the addresses.
    pub(super) fn poll_recovery(&mut self, now: Instant) {
        let Some(r) = self.recovery.as_mut() else {
            return;
        };
        let Phase::Waiting { attempt, at } = r.phase else {
            self.retry_locked(now);
            return;
        };
        if now < at {
            return;
        }
        in_span!(self);
        let handshake = r.tag();
        r.handshake = Some(handshake);
        r.phase = Phase::Connecting { attempt };
        r.second_phase_started = false;
        tr_info!(attempt, "reconnecting");
        self.conn_events
            .push_back(ConnectionEvent::Reconnecting { attempt });
        self.next_transport(handshake, now);
        if self.conn.is_closed() {
            self.after_io();
        }
    }

    /// Reconnected: restores exchanges and queues first; bindings and
    /// consumers follow once those are answered (a server-named queue's
    /// new name is known then).
    fn start_restore(&mut self) {
        let Some(r) = self.recovery.as_mut() else {
            return;
        };
        r.phase = Phase::Connected;
        // No restore is in flight: slots left by removals go now.
        r.record.retain(|e| !matches!(e, Entity::Gone));
        let first: Vec<usize> = (0..r.record.len())
            .filter(|&i| r.record[i].phase() == 0)
            .collect();
        for i in first {
            self.restore_entity(i);
        }
        self.maybe_second_phase();
    }

    fn maybe_second_phase(&mut self) {
        let Some(r) = self.recovery.as_mut() else {
            return;
        };
        if r.second_phase_started || !r.restoring.is_empty() || !r.locked.is_empty() {
            return;
        }
        r.second_phase_started = true;
        let second: Vec<usize> = (0..r.record.len())
            .filter(|&i| r.record[i].phase() == 1)
            .collect();
        for i in second {
            self.restore_entity(i);
        }
    }

    fn restore_entity(&mut self, i: usize) {
        let Some(r) = self.recovery.as_mut() else {
            return;
        };
        let entity = r.record[i].clone();
        match entity {
            Entity::Exchange(x) => {
                let t = r.tag();
                r.restoring.insert(t, i);
                self.conn.rpc(t, Method::ExchangeDeclare(x));
            }
            Entity::Queue {
                declare,
                name,
                server_named,
                consumed,
            } => {
                if r.would_resurrect(&declare, &name, consumed) {
                    tr_info!(queue = %name, "not restored: it would have gone away");
                    return;
                }
                let mut d = declare.clone();
                if server_named {
                    // An `amq.gen-` name cannot be declared by a client:
                    // ask for a new one.
                    d.queue = ShortString::from_static("");
                }
                let t = r.tag();
                r.restoring.insert(t, i);
                self.conn.rpc(t, Method::QueueDeclare(d));
            }
            Entity::ExchangeBinding(b) => {
                let t = r.tag();
                r.restoring.insert(t, i);
                self.conn.rpc(t, b.into());
            }
            Entity::QueueBinding(b) => {
                let t = r.tag();
                r.restoring.insert(t, i);
                self.conn.rpc(t, b.into());
            }
            Entity::Consumer {
                tag,
                queues,
                no_ack,
                prefetch,
                channel_qos,
            } => {
                // The consumer's own promise tag: its deliveries go on
                // arriving there; a channel-wide window first.
                self.conn
                    .consume_with_channel_qos(tag, queues, no_ack, prefetch, channel_qos);
            }
            Entity::Tx => {
                let t = r.tag();
                r.restoring.insert(t, i);
                self.conn.tx_select(t);
            }
            Entity::ChannelQos { .. } | Entity::Gone => return,
        }
        self.after_io();
    }

    /// A restore operation was answered.
    fn restore_answered(&mut self, i: usize, result: Result<Outcome, Error>) {
        let Some(r) = self.recovery.as_mut() else {
            return;
        };
        if i >= r.record.len() {
            return;
        }
        if matches!(r.record[i], Entity::Gone) {
            // Removed meanwhile (deleted, or its consumer ended): nothing
            // to report.
            r.locked.retain(|l| l.index != i);
            self.maybe_second_phase();
            return;
        }
        if result.is_ok() {
            r.locked.retain(|l| l.index != i);
        }
        match result {
            Ok(Outcome::QueueDeclared(ok)) => {
                if let Entity::Queue {
                    name,
                    server_named: true,
                    ..
                } = &mut r.record[i]
                {
                    let old = std::mem::replace(name, ok.queue.to_string());
                    let new = name.clone();
                    if old != new {
                        rename_queue(&mut r.record, &old, &new);
                        self.conn_events
                            .push_back(ConnectionEvent::QueueRenamed { old, new });
                    }
                }
            }
            Ok(_) => {}
            Err(Error::ResourceLocked(_))
                if matches!(r.record[i], Entity::Queue { .. })
                    && r.locked_tries(i) < LOCKED_RETRIES =>
            {
                let tries = r.locked_tries(i) + 1;
                r.locked.retain(|l| l.index != i);
                r.locked.push(Locked {
                    index: i,
                    at: Some(Instant::now() + LOCKED_RETRY_DELAY),
                    tries,
                });
                tr_info!(queue = %r.record[i].describe(), tries, "locked by the old connection; trying again");
            }
            Err(error) => {
                r.locked.retain(|l| l.index != i);
                let entity = r.record[i].describe();
                tr_warn!(%entity, %error, "not restored");
                self.conn_events
                    .push_back(ConnectionEvent::RecoveryFailed { entity, error });
            }
        }
        self.maybe_second_phase();
    }
}

/// A server-named queue came back under a new name: its bindings and
/// consumers follow it.
fn rename_queue(record: &mut [Entity], old: &str, new: &str) {
    for e in record {
        match e {
            Entity::QueueBinding(b) if b.queue.as_str() == old => b.queue = new.into(),
            Entity::Consumer { queues, .. } => {
                for q in queues {
                    if q.queue.as_str() == old {
                        q.queue = new.into();
                    }
                }
            }
            _ => {}
        }
    }
}

/// Whether a connection that ended with `e` is recovered: once connected,
/// a lost socket, a silent peer, or a node shutting down (320); during a
/// reconnection, any failure that moves on to the next address (as the
/// first connect's: [`addresses::moves_on`]). Never our own close, a
/// refused login or vhost, or a protocol violation of an open connection.
fn recoverable(e: &Error, phase: Phase) -> bool {
    match phase {
        Phase::Starting => false,
        Phase::Connecting { .. } | Phase::Waiting { .. } => addresses::moves_on(e),
        Phase::Connected => match e {
            Error::ConnectionBroken(_) | Error::HeartbeatTimeout(_) => true,
            Error::ConnectionForced(r) => r.code == reply_code::CONNECTION_FORCED,
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_bounded_jitter() {
        let r = Recovery::default()
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_secs(1));
        for noise in [0, 500, 999] {
            let first = r.backoff(1, noise);
            assert!(first >= Duration::from_millis(75) && first <= Duration::from_millis(125));
            let third = r.backoff(3, noise);
            assert!(third >= Duration::from_millis(300) && third <= Duration::from_millis(500));
            assert!(r.backoff(30, noise) <= Duration::from_secs(1));
        }
    }

    #[test]
    fn removals_during_a_restore_keep_the_indices_of_its_answers() {
        let mut r = RecoveryState::new(Recovery::default());
        r.record
            .push(Entity::Exchange(ExchangeDeclare::new("x", "direct")));
        r.record
            .push(Entity::QueueBinding(QueueBind::new("q", "x", "k")));
        r.record.push(Entity::Queue {
            declare: QueueDeclare::named("q"),
            name: "q".into(),
            server_named: false,
            consumed: false,
        });
        // The queue's restore is in flight as index 2.
        r.restoring.insert(internal_tag(1), 2);
        r.apply_delete(&Method::ExchangeDelete(ExchangeDelete::new("x")));
        assert_eq!(r.record.len(), 3, "slots stay while answers are due");
        assert!(matches!(r.record[2], Entity::Queue { .. }));
        assert!(matches!(r.record[0], Entity::Gone));
        // Once nothing is in flight, removals compact the record.
        r.restoring.clear();
        r.apply_delete(&Method::QueueDelete(QueueDelete::new("q")));
        assert!(r.record.is_empty());
    }

    #[test]
    fn clients_of_one_process_jitter_apart() {
        let mut a = RecoveryState::new(Recovery::default());
        let mut b = RecoveryState::new(Recovery::default());
        let na: Vec<u64> = (0..8).map(|_| a.noise()).collect();
        let nb: Vec<u64> = (0..8).map(|_| b.noise()).collect();
        assert!(na.iter().all(|&n| n < 1000));
        assert_ne!(na, nb, "two clients would come back in step");
    }

    #[test]
    fn what_is_recovered() {
        let lost = Error::io(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(recoverable(&lost, Phase::Connected));
        assert!(
            !recoverable(&lost, Phase::Starting),
            "not the first connect"
        );
        let forced = Error::from_reply(crate::error::Reply::new(320, "CONNECTION_FORCED"));
        assert!(recoverable(&forced, Phase::Connected));
        assert!(!recoverable(&Error::ConnectionClosed, Phase::Connected));
        let login = Error::from_reply(crate::error::Reply {
            connection: true,
            ..crate::error::Reply::new(403, "ACCESS_REFUSED")
        });
        assert!(!recoverable(&login, Phase::Connecting { attempt: 1 }));
        let violation = Error::ProtocolViolation(crate::error::Reply::new(505, "x"));
        assert!(!recoverable(&violation, Phase::Connected));
    }

    #[test]
    fn deletes_and_renames_keep_the_record_true() {
        let mut r = RecoveryState::new(Recovery::default());
        r.record.push(Entity::Queue {
            declare: QueueDeclare::named(""),
            name: "amq.gen-1".into(),
            server_named: true,
            consumed: true,
        });
        r.record
            .push(Entity::QueueBinding(QueueBind::new("amq.gen-1", "x", "k")));
        r.record.push(Entity::Consumer {
            tag: 7,
            queues: vec![ConsumeQueue {
                queue: "amq.gen-1".into(),
                ..Default::default()
            }],
            no_ack: false,
            prefetch: 0,
            channel_qos: None,
        });
        if let Entity::Queue { name, .. } = &mut r.record[0] {
            *name = "amq.gen-2".into();
        }
        rename_queue(&mut r.record, "amq.gen-1", "amq.gen-2");
        assert!(matches!(&r.record[1], Entity::QueueBinding(b) if b.queue == "amq.gen-2"));
        assert!(
            matches!(&r.record[2], Entity::Consumer { queues, .. } if queues[0].queue == "amq.gen-2")
        );
        r.apply_delete(&Method::QueueDelete(QueueDelete::new("amq.gen-2")));
        assert_eq!(r.record.len(), 1, "the queue and its binding went");
        r.forget_consumer(7);
        assert!(r.record.is_empty());
    }
}
