//! Automatic recovery (opt-in, [`Options::recovery`]) in the client: the
//! shell around [`Recoverer`] (in `crate::recover`, which holds the record,
//! the backoff and the restore, without I/O). Here the recoverer's answers
//! meet sockets, addresses, promises and connection events — driven by the
//! caller's `wait`, loop or reactor like everything else (no thread).
//!
//! What is kept across a loss: the client, its promises' ids, consumers
//! (their promise goes on yielding deliveries), and the record of what was
//! declared. What is not: pending operations fail (never replayed), publishes
//! awaiting confirms fail with [`Error::OutcomeUnknown`], deliveries from
//! before the loss can no longer be acked (their channel is gone: a local
//! [`Error::UnknownDeliveryTag`]).

use super::*;
use crate::protocol::{ConsumeQueue, Outcome};
use crate::recover::{self, Recoverer};

impl Client {
    /// Records a declaration or deletion sent as `tag` (when recovery is
    /// on): it joins or leaves the record once the broker confirms it.
    pub(super) fn note_rpc(&mut self, tag: Tag, method: &Method) {
        if let Some(r) = self.recovery.as_mut() {
            r.note_rpc(tag, method);
        }
    }

    /// Records a `tx.select` sent as `tag` (when recovery is on).
    pub(super) fn note_tx_select(&mut self, tag: Tag) {
        if let Some(r) = self.recovery.as_mut() {
            r.note_tx_select(tag);
        }
    }

    /// Records a consumer (when recovery is on), with the consumer tags the
    /// protocol chose, so a restored consumer keeps them.
    pub(super) fn note_consumer(
        &mut self,
        tag: Tag,
        queues: Vec<ConsumeQueue>,
        no_ack: bool,
        prefetch: u16,
    ) {
        if let Some(r) = self.recovery.as_mut() {
            r.note_consumer(&self.conn, tag, queues, no_ack, prefetch);
        }
    }

    /// Records a `basic.qos` with `global` (when recovery is on).
    pub(super) fn note_channel_qos(&mut self, tag: Tag, consumer: Tag, size: u32, count: u16) {
        if let Some(r) = self.recovery.as_mut() {
            r.note_channel_qos(tag, consumer, size, count);
        }
    }

    /// Sees a completion before it reaches its promise. Returns the result
    /// when it is for a promise.
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
        let result = r.handle_complete(tag, result, &mut self.conn, Instant::now());
        self.recovery_events();
        result
    }

    /// Moves the recoverer's events to the connection events.
    fn recovery_events(&mut self) {
        let Some(r) = self.recovery.as_mut() else {
            return;
        };
        let events: Vec<recover::Event> = std::iter::from_fn(|| r.poll_event()).collect();
        for ev in events {
            let ev = match ev {
                recover::Event::Disconnected(e) => ConnectionEvent::Disconnected(e),
                recover::Event::Reconnecting { attempt } => {
                    ConnectionEvent::Reconnecting { attempt }
                }
                recover::Event::Reconnected => {
                    let address = self
                        .connected_address()
                        .map(|a| format!("{}:{}", a.host, a.port))
                        .unwrap_or_default();
                    tr_info!(%address, "reconnected");
                    ConnectionEvent::Reconnected { address }
                }
                recover::Event::Restored => ConnectionEvent::Restored,
                recover::Event::RecoveryFailed { entity, error } => {
                    ConnectionEvent::RecoveryFailed { entity, error }
                }
                recover::Event::QueueRenamed { old, new } => {
                    ConnectionEvent::QueueRenamed { old, new }
                }
            };
            self.conn_events.push_back(ev);
        }
    }

    /// A consumer ended (cancelled by the user): it leaves the record.
    pub(super) fn recovery_consumer_ended(&mut self, tag: Tag) {
        if let Some(r) = self.recovery.as_mut() {
            r.consumer_ended(tag);
        }
    }

    /// The first handshake finished: from now on a loss is recovered.
    pub(super) fn recovery_connected(&mut self) {
        if let Some(r) = self.recovery.as_mut() {
            r.handle_connected();
        }
    }

    /// The connection ended with `e`: whether recovery takes over (then a
    /// reconnection is scheduled and the caller sees `Disconnected`, not
    /// `Closed`).
    pub(super) fn recovery_takes_over(&mut self, e: &Error) -> bool {
        let Some(r) = self.recovery.as_mut() else {
            return false;
        };
        let taken = r.handle_loss(e, self.addresses.has_pending(), Instant::now());
        self.recovery_events();
        taken
    }

    /// Recovery gave up (or was not possible): consumers kept alive for it
    /// end now with `e`.
    pub(super) fn recovery_fail_consumers(&mut self, e: &Error) {
        let Some(r) = self.recovery.as_mut() else {
            return;
        };
        for tag in r.take_consumers() {
            let id = self.promises.id_of(tag);
            if matches!(e, Error::ConnectionClosed) {
                // The user closed: the consumers end as asked.
                self.promises.end(id);
            } else {
                self.promises.push(id, Err(e.clone()), true);
            }
        }
    }

    /// The user closes: recovery stops. Between attempts (no connection),
    /// the client is closed at once and its consumers end; returns whether
    /// that was the case (the close is then complete).
    pub(super) fn recovery_stop(&mut self) -> bool {
        let Some(r) = self.recovery.as_mut() else {
            return false;
        };
        let waiting = r.stop();
        if waiting {
            self.recovery_fail_consumers(&Error::ConnectionClosed);
            self.conn_events
                .push_back(ConnectionEvent::Closed(Error::ConnectionClosed));
        }
        waiting
    }

    /// Whether a reconnection is scheduled or under way.
    pub(super) fn recovering(&self) -> bool {
        self.recovery.as_ref().is_some_and(Recoverer::is_recovering)
    }

    /// When the next reconnection attempt (or restore retry) is due.
    pub(super) fn recovery_deadline(&self) -> Option<Instant> {
        self.recovery.as_ref()?.poll_timeout()
    }

    /// Starts the reconnection attempt when it is due: a fresh protocol
    /// connection over the next address ([`Client::next_transport`]); or
    /// declares again a queue locked by the lost connection.
    pub(super) fn poll_recovery(&mut self, now: Instant) {
        let Some(r) = self.recovery.as_mut() else {
            return;
        };
        let reconnect = r.handle_timeout(now, &mut self.conn);
        self.recovery_events();
        let Some(reconnect) = reconnect else {
            return;
        };
        in_span!(self);
        self.next_transport(reconnect.handshake, now);
        if let Some(r) = self.recovery.as_mut() {
            r.handle_transport(&mut self.conn);
        }
        if self.conn.is_closed() {
            self.after_io();
        }
    }
}

/// A recoverer for a new client: its jitter seeded apart from every other
/// client's.
pub(super) fn recoverer(policy: recover::Recovery) -> Recoverer {
    Recoverer::new(policy, crate::rng::XorShift::seeded().next())
}
