//! Restoring the record on a fresh connection: exchanges and queues first,
//! then (once those are answered, so a server-named queue's new name is
//! known) bindings, consumers and transaction mode; a queue still locked by
//! the lost connection is declared again after a wait.

use super::record::Entity;
use super::{Event, Recoverer};
use crate::codec::{Method, ShortString};
use crate::error::Error;
use crate::protocol::{Connection, Outcome, Tag};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often a queue locked by the lost connection is declared again.
pub(super) const LOCKED_RETRIES: u32 = 20;
/// The wait between those attempts (20 × 500 ms: 10 s, several heartbeat
/// intervals of a broker noticing the old connection is gone).
pub(super) const LOCKED_RETRY_DELAY: Duration = Duration::from_millis(500);

/// A queue restore to try again.
#[derive(Debug, Clone, Copy)]
struct Locked {
    index: usize,
    /// When to declare it again; `None` while that declare is in flight.
    at: Option<Instant>,
    tries: u32,
}

/// How far a reconnection's restore has come.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The reconnection's handshake runs; transaction mode, if recorded,
    /// is already queued on its connection (see
    /// [`Recoverer::start_early_restore`]).
    Handshake,
    /// Exchanges, queues and transaction mode, until all are answered.
    #[default]
    First,
    /// Bindings, qos and consumers, which refer to what the first stage
    /// restored.
    Second,
    /// Everything answered; `Event::Restored` was reported.
    Done,
}

/// The restore in flight.
#[derive(Debug, Default)]
pub(super) struct Restore {
    /// Its operations (by their internal tags), with the index of the
    /// entity in the record.
    restoring: HashMap<Tag, usize>,
    stage: Stage,
    /// Queues the broker refused with 405 `RESOURCE_LOCKED` (an exclusive
    /// queue still held by the lost connection's half-open other end, until
    /// the broker notices it is gone): declared again at `at`, up to
    /// [`LOCKED_RETRIES`] times. Bindings and consumers wait for them.
    locked: Vec<Locked>,
}

impl Restore {
    /// Whether answers are due (removals then leave slots).
    pub(super) fn in_flight(&self) -> bool {
        !self.restoring.is_empty() || !self.locked.is_empty()
    }

    /// The entity index of the restore operation `tag`, if it is one.
    pub(super) fn take(&mut self, tag: Tag) -> Option<usize> {
        self.restoring.remove(&tag)
    }

    pub(super) fn clear(&mut self) {
        self.restoring.clear();
        self.locked.clear();
        self.stage = Stage::First;
    }

    /// When the next locked queue is declared again.
    pub(super) fn next_retry(&self) -> Option<Instant> {
        self.locked.iter().filter_map(|l| l.at).min()
    }

    /// How often the queue at `index` was refused as locked.
    fn locked_tries(&self, index: usize) -> u32 {
        self.locked
            .iter()
            .find(|l| l.index == index)
            .map_or(0, |l| l.tries)
    }
}

impl Recoverer {
    /// A reconnection's fresh connection, before its handshake: transaction
    /// mode goes first of all, as the connection's first channel work. What
    /// the user queues during the handshake is sent once it is open, behind
    /// this `tx.select` on the publish channel: transactional, as before the
    /// loss, not applied at once.
    pub(super) fn start_early_restore(&mut self, conn: &mut Connection) {
        self.restart_restore();
        self.restore.stage = Stage::Handshake;
        let tx = self
            .record
            .entities
            .iter()
            .position(|e| matches!(e, Entity::Tx));
        if let Some(i) = tx {
            self.restore_entity(i, conn);
        }
    }

    /// Reconnected: restores exchanges and queues first; bindings and
    /// consumers follow once those are answered.
    pub(super) fn start_restore(&mut self, conn: &mut Connection) {
        let early = self.restore.stage == Stage::Handshake;
        if !early {
            // A caller that skipped `start_early_restore`.
            self.restart_restore();
        }
        self.restore.stage = Stage::First;
        let mut first: Vec<usize> = (0..self.record.entities.len())
            .filter(|&i| self.record.entities[i].phase() == 0)
            // Sent with the handshake already.
            .filter(|&i| !(early && matches!(self.record.entities[i], Entity::Tx)))
            .collect();
        // Transaction mode before anything else (see `Entity::phase`).
        first.sort_by_key(|&i| !matches!(self.record.entities[i], Entity::Tx));
        for i in first {
            self.restore_entity(i, conn);
        }
        self.maybe_second_phase(conn);
    }

    /// No restore is in flight: a new one starts from the first stage, and
    /// the slots left by removals go now.
    fn restart_restore(&mut self) {
        self.restore.clear();
        self.record.entities.retain(|e| !matches!(e, Entity::Gone));
    }

    fn maybe_second_phase(&mut self, conn: &mut Connection) {
        // The connection ended (a broker's close that is not recovered)
        // with the restore unfinished: it never is, so no second phase on
        // it and no `Restored`.
        if self.restore.in_flight() || conn.is_closed() {
            return;
        }
        if self.restore.stage == Stage::First {
            self.restore.stage = Stage::Second;
            let second: Vec<usize> = (0..self.record.entities.len())
                .filter(|&i| self.record.entities[i].phase() == 1)
                .collect();
            for i in second {
                self.restore_entity(i, conn);
            }
            if self.restore.in_flight() {
                return;
            }
        }
        if self.restore.stage == Stage::Second {
            self.restore.stage = Stage::Done;
            tr_info!("restored");
            self.events.push_back(Event::Restored);
        }
    }

    fn restore_entity(&mut self, i: usize, conn: &mut Connection) {
        let entity = self.record.entities[i].clone();
        // What goes out: a pooled RPC, or `tx.select` (`None`).
        let method = match entity {
            Entity::Exchange(x) => Some(Method::ExchangeDeclare(x)),
            Entity::Queue {
                mut declare,
                name,
                server_named,
                consumed,
            } => {
                if self.record.would_resurrect(&declare, &name, consumed) {
                    tr_info!(queue = %name, "not restored: it would have gone away");
                    self.restore.locked.retain(|l| l.index != i);
                    return;
                }
                if server_named {
                    // An `amq.gen-` name cannot be declared by a client:
                    // ask for a new one.
                    declare.queue = ShortString::from_static("");
                }
                Some(Method::QueueDeclare(declare))
            }
            Entity::ExchangeBinding(b) => Some(b.into()),
            Entity::QueueBinding(b) => Some(b.into()),
            Entity::Consumer {
                tag,
                queues,
                no_ack,
                prefetch,
                channel_qos,
            } => {
                // The consumer's own promise tag: its deliveries go on
                // arriving there; a channel-wide window first.
                conn.consume_with_channel_qos(tag, queues, no_ack, prefetch, channel_qos);
                return;
            }
            Entity::Tx => None,
            Entity::ChannelQos { .. } | Entity::Gone => return,
        };
        let t = self.tag();
        self.restore.restoring.insert(t, i);
        match method {
            Some(m) => conn.rpc(t, m),
            None => conn.tx_select(t),
        }
    }

    /// A restore operation was answered.
    pub(super) fn restore_answered(
        &mut self,
        i: usize,
        result: Result<Outcome, Error>,
        conn: &mut Connection,
        now: Instant,
    ) {
        if i >= self.record.entities.len() {
            return;
        }
        let locked = &mut self.restore.locked;
        if matches!(self.record.entities[i], Entity::Gone) {
            // Removed meanwhile (deleted, or its consumer ended): nothing
            // to report.
            locked.retain(|l| l.index != i);
            self.maybe_second_phase(conn);
            return;
        }
        if result.is_ok() {
            locked.retain(|l| l.index != i);
        }
        match result {
            Ok(Outcome::QueueDeclared(ok)) => {
                if let Entity::Queue {
                    name,
                    server_named: true,
                    ..
                } = &mut self.record.entities[i]
                {
                    let old = std::mem::replace(name, ok.queue.to_string());
                    let new = name.clone();
                    if old != new {
                        self.record.rename_queue(&old, &new);
                        self.events.push_back(Event::QueueRenamed { old, new });
                    }
                }
            }
            Ok(_) => {}
            Err(Error::ResourceLocked(_))
                if matches!(self.record.entities[i], Entity::Queue { .. })
                    && self.restore.locked_tries(i) < LOCKED_RETRIES =>
            {
                let tries = self.restore.locked_tries(i) + 1;
                let locked = &mut self.restore.locked;
                locked.retain(|l| l.index != i);
                locked.push(Locked {
                    index: i,
                    at: Some(now + LOCKED_RETRY_DELAY),
                    tries,
                });
                tr_info!(queue = %self.record.entities[i].describe(), tries, "locked by the old connection; trying again");
            }
            Err(error) => {
                self.restore.locked.retain(|l| l.index != i);
                let entity = self.record.entities[i].describe();
                tr_warn!(%entity, %error, "not restored");
                self.events
                    .push_back(Event::RecoveryFailed { entity, error });
            }
        }
        self.maybe_second_phase(conn);
    }

    /// Declares again the locked queues whose wait is over.
    pub(super) fn retry_locked(&mut self, now: Instant, conn: &mut Connection) {
        let due: Vec<usize> = self
            .restore
            .locked
            .iter()
            .filter(|l| l.at.is_some_and(|at| at <= now))
            .map(|l| l.index)
            .collect();
        for l in self
            .restore
            .locked
            .iter_mut()
            .filter(|l| due.contains(&l.index))
        {
            l.at = None;
        }
        if due.is_empty() {
            return;
        }
        for i in due {
            self.restore_entity(i, conn);
        }
        // A queue not declared after all (it would have gone away) may
        // have been the last thing the second phase waited for.
        self.maybe_second_phase(conn);
    }
}
