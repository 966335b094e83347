//! The record of what the client declared: kept true by what the broker
//! confirms (declarations join, deletions leave, server-named queues follow
//! their new name).

use crate::codec::method::{ExchangeBind, ExchangeDeclare, QueueBind, QueueDeclare};
use crate::codec::{Method, ShortString};
use crate::protocol::{ConsumeQueue, Outcome, Tag};
use std::collections::HashMap;

/// Something the client declared, recorded to be restored after a loss.
#[derive(Debug, Clone)]
pub(super) enum Entity {
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
    /// Restore order: exchanges, queues and transaction mode, then what
    /// refers to them. Transaction mode goes first of all, queued on the
    /// new connection before its handshake (`Recoverer::handle_transport`):
    /// a publish or `tx_rollback` made while it runs, or on `Reconnected`,
    /// must find its channel transactional already (its `tx.select` is
    /// ahead of them on the publish channel), not be applied at once or
    /// refused with 406.
    pub(super) fn phase(&self) -> u8 {
        match self {
            Entity::Tx | Entity::Exchange(_) | Entity::Queue { .. } => 0,
            Entity::ExchangeBinding(_)
            | Entity::QueueBinding(_)
            | Entity::Consumer { .. }
            | Entity::ChannelQos { .. }
            | Entity::Gone => 1,
        }
    }

    pub(super) fn describe(&self) -> String {
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

/// What was declared, in order, and what waits for the broker's answer.
#[derive(Debug, Default)]
pub(super) struct Record {
    pub(super) entities: Vec<Entity>,
    /// Declarations sent and not yet confirmed: recorded when they succeed.
    pub(super) pending: HashMap<Tag, Entity>,
    /// Deletions sent: applied to the record when they succeed.
    pub(super) deleting: HashMap<Tag, Method>,
}

impl Record {
    pub(super) fn note_rpc(&mut self, tag: Tag, method: &Method) {
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
                self.deleting.insert(tag, method.clone());
                return;
            }
            _ => return,
        };
        self.pending.insert(tag, entity);
    }

    pub(super) fn note_tx_select(&mut self, tag: Tag) {
        if !self.entities.iter().any(|e| matches!(e, Entity::Tx)) {
            self.pending.insert(tag, Entity::Tx);
        }
    }

    /// A consumer started: `tags` are the (consumer tag, queue) pairs the
    /// connection gave its queues.
    pub(super) fn note_consumer(
        &mut self,
        tag: Tag,
        mut queues: Vec<ConsumeQueue>,
        tags: Vec<(ShortString, ShortString)>,
        no_ack: bool,
        prefetch: u16,
    ) {
        for (q, (ctag, _)) in queues.iter_mut().zip(tags) {
            q.consumer_tag = ctag;
        }
        for e in &mut self.entities {
            if let Entity::Queue { name, consumed, .. } = e {
                if queues.iter().any(|q| q.queue.as_str() == name) {
                    *consumed = true;
                }
            }
        }
        self.entities.push(Entity::Consumer {
            tag,
            queues,
            no_ack,
            prefetch,
            channel_qos: None,
        });
    }

    /// A pending declaration succeeded with `outcome`: it joins the record
    /// (a server-named queue under the name it got; a channel-wide qos on
    /// its consumer).
    pub(super) fn confirmed(&mut self, entity: Entity, outcome: &Outcome) {
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
                for e in &mut self.entities {
                    if let Entity::Consumer {
                        tag, channel_qos, ..
                    } = e
                    {
                        if *tag == consumer {
                            *channel_qos = Some((size, count));
                        }
                    }
                }
                return;
            }
            (e, _) => e,
        };
        self.entities.push(entity);
    }

    /// Whether a consumer's promise is recorded (its failure at a loss is
    /// not reported: it goes on after recovery).
    pub(super) fn is_consumer(&self, tag: Tag) -> bool {
        self.entities
            .iter()
            .any(|e| matches!(e, Entity::Consumer { tag: t, .. } if *t == tag))
    }

    pub(super) fn forget_consumer(&mut self, tag: Tag, in_flight: bool) {
        self.remove_where(
            |e| matches!(e, Entity::Consumer { tag: t, .. } if *t == tag),
            in_flight,
        );
    }

    /// Every recorded consumer's tag; they leave the record.
    pub(super) fn take_consumers(&mut self, in_flight: bool) -> Vec<Tag> {
        let tags = self
            .entities
            .iter()
            .filter_map(|x| match x {
                Entity::Consumer { tag, .. } => Some(*tag),
                _ => None,
            })
            .collect();
        self.remove_where(|x| matches!(x, Entity::Consumer { .. }), in_flight);
        tags
    }

    /// Takes what `gone` picks out of the record: at once when no restore
    /// is `in_flight`, else as [`Entity::Gone`] slots (the restore's answers
    /// find their entities by index), dropped when the next restore starts.
    pub(super) fn remove_where(&mut self, gone: impl Fn(&Entity) -> bool, in_flight: bool) {
        if in_flight {
            for e in &mut self.entities {
                if gone(e) {
                    *e = Entity::Gone;
                }
            }
        } else {
            self.entities
                .retain(|e| !gone(e) && !matches!(e, Entity::Gone));
        }
    }

    /// A deletion succeeded: what it deleted leaves the record.
    pub(super) fn apply_delete(&mut self, method: &Method, in_flight: bool) {
        match method {
            Method::QueueDelete(d) => {
                let q = d.queue.as_str();
                self.remove_where(
                    |e| match e {
                        Entity::Queue { name, .. } => name == q,
                        Entity::QueueBinding(b) => b.queue.as_str() == q,
                        _ => false,
                    },
                    in_flight,
                );
            }
            Method::ExchangeDelete(d) => {
                let x = d.exchange.as_str();
                self.remove_where(
                    |e| match e {
                        Entity::Exchange(e) => e.exchange.as_str() == x,
                        Entity::QueueBinding(b) => b.exchange.as_str() == x,
                        Entity::ExchangeBinding(b) => {
                            b.source.as_str() == x || b.destination.as_str() == x
                        }
                        _ => false,
                    },
                    in_flight,
                );
            }
            Method::QueueUnbind(u) => self.remove_where(
                |e| match e {
                    Entity::QueueBinding(b) => {
                        b.queue == u.queue
                            && b.exchange == u.exchange
                            && b.routing_key == u.routing_key
                            && b.arguments == u.arguments
                    }
                    _ => false,
                },
                in_flight,
            ),
            Method::ExchangeUnbind(u) => self.remove_where(
                |e| match e {
                    Entity::ExchangeBinding(b) => {
                        b.destination == u.destination
                            && b.source == u.source
                            && b.routing_key == u.routing_key
                            && b.arguments == u.arguments
                    }
                    _ => false,
                },
                in_flight,
            ),
            _ => {}
        }
    }

    /// A queue whose restore would resurrect something that was meant to
    /// go away: an auto-delete queue whose consumers have all left (it was
    /// consumed, and no recorded consumer is left on it), or a queue that
    /// expires (`x-expires`).
    pub(super) fn would_resurrect(
        &self,
        declare: &QueueDeclare,
        name: &str,
        was_consumed: bool,
    ) -> bool {
        let consumed_now = self.entities.iter().any(|e| match e {
            Entity::Consumer { queues, .. } => queues.iter().any(|q| q.queue.as_str() == name),
            _ => false,
        });
        (declare.auto_delete && was_consumed && !consumed_now)
            || declare.arguments.get("x-expires").is_some()
    }

    /// A server-named queue came back under a new name: its bindings and
    /// consumers follow it.
    pub(super) fn rename_queue(&mut self, old: &str, new: &str) {
        for e in &mut self.entities {
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
}
