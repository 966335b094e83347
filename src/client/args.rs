//! Builders that make the operations' arguments read well at the call site.
//!
//! The full argument structs are the codec's method structs (names from the
//! spec, every field public, `Default` for the rest); the constructors here
//! cover the common cases. Their `no_wait` fields are ignored: every
//! operation is sent without `no-wait`, because its promise completes on the
//! broker's reply (a no-wait declare could fail with nothing to report it).
//!
//! ```
//! use puka::{ExchangeDeclare, QueueBind, QueueDeclare};
//! let q = QueueDeclare::named("tasks").durable().argument("x-max-priority", 10u8);
//! let x = ExchangeDeclare::new("logs", "fanout").durable();
//! let b = QueueBind::new("tasks", "logs", "");
//! assert!(q.durable && x.durable && b.routing_key.is_empty());
//! ```

use crate::codec::method::{
    ExchangeBind, ExchangeDeclare, ExchangeDelete, ExchangeUnbind, QueueBind, QueueDeclare,
    QueueDelete, QueueUnbind,
};
use crate::codec::{FieldTable, FieldValue, ShortString};
use crate::protocol::ConsumeQueue;

impl ExchangeDeclare {
    /// Declares exchange `name` of type `kind` (`direct`, `fanout`, `topic`,
    /// `headers`, or a plugin's type).
    #[must_use]
    pub fn new(name: &str, kind: &str) -> Self {
        ExchangeDeclare {
            exchange: name.into(),
            kind: kind.into(),
            ..Default::default()
        }
    }

    /// Survives a broker restart.
    #[must_use]
    pub fn durable(mut self) -> Self {
        self.durable = true;
        self
    }

    /// Deleted when its last binding goes.
    #[must_use]
    pub fn auto_delete(mut self) -> Self {
        self.auto_delete = true;
        self
    }

    /// Cannot be published to directly, only through exchange bindings.
    #[must_use]
    pub fn internal(mut self) -> Self {
        self.internal = true;
        self
    }

    /// Only checks that the exchange exists (404 when not).
    #[must_use]
    pub fn passive(mut self) -> Self {
        self.passive = true;
        self
    }

    /// Adds an argument (e.g. `alternate-exchange`).
    #[must_use]
    pub fn argument(mut self, key: &str, value: impl Into<FieldValue>) -> Self {
        self.arguments.insert(key, value);
        self
    }
}

impl ExchangeDelete {
    /// Deletes exchange `name`.
    #[must_use]
    pub fn new(name: &str) -> Self {
        ExchangeDelete {
            exchange: name.into(),
            ..Default::default()
        }
    }

    /// Only when it has no bindings (406 otherwise).
    #[must_use]
    pub fn if_unused(mut self) -> Self {
        self.if_unused = true;
        self
    }
}

impl ExchangeBind {
    /// Routes messages from exchange `source` to exchange `destination`.
    #[must_use]
    pub fn new(destination: &str, source: &str, routing_key: &str) -> Self {
        ExchangeBind {
            destination: destination.into(),
            source: source.into(),
            routing_key: routing_key.into(),
            ..Default::default()
        }
    }
}

impl ExchangeUnbind {
    /// Removes the binding made by the same [`ExchangeBind::new`] arguments.
    #[must_use]
    pub fn new(destination: &str, source: &str, routing_key: &str) -> Self {
        ExchangeUnbind {
            destination: destination.into(),
            source: source.into(),
            routing_key: routing_key.into(),
            ..Default::default()
        }
    }
}

impl QueueDeclare {
    /// Declares queue `name` (empty: the broker names it).
    #[must_use]
    pub fn named(name: &str) -> Self {
        QueueDeclare {
            queue: name.into(),
            ..Default::default()
        }
    }

    /// A server-named, exclusive, auto-delete queue (the usual reply or
    /// subscription queue).
    #[must_use]
    pub fn server_named() -> Self {
        QueueDeclare {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        }
    }

    /// Survives a broker restart.
    #[must_use]
    pub fn durable(mut self) -> Self {
        self.durable = true;
        self
    }

    /// Used only by this connection and deleted when it closes.
    #[must_use]
    pub fn exclusive(mut self) -> Self {
        self.exclusive = true;
        self
    }

    /// Deleted when its last consumer goes.
    #[must_use]
    pub fn auto_delete(mut self) -> Self {
        self.auto_delete = true;
        self
    }

    /// Only checks that the queue exists (404 when not).
    #[must_use]
    pub fn passive(mut self) -> Self {
        self.passive = true;
        self
    }

    /// Adds an argument (`x-message-ttl`, `x-dead-letter-exchange`,
    /// `x-max-priority`, `x-queue-type`, ...).
    #[must_use]
    pub fn argument(mut self, key: &str, value: impl Into<FieldValue>) -> Self {
        self.arguments.insert(key, value);
        self
    }
}

impl QueueBind {
    /// Binds `queue` to `exchange` with `routing_key`.
    #[must_use]
    pub fn new(queue: &str, exchange: &str, routing_key: &str) -> Self {
        QueueBind {
            queue: queue.into(),
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            ..Default::default()
        }
    }

    /// Sets the binding arguments (e.g. for a headers exchange).
    #[must_use]
    pub fn arguments(mut self, arguments: FieldTable) -> Self {
        self.arguments = arguments;
        self
    }
}

impl QueueUnbind {
    /// Removes the binding made by the same [`QueueBind::new`] arguments.
    #[must_use]
    pub fn new(queue: &str, exchange: &str, routing_key: &str) -> Self {
        QueueUnbind {
            queue: queue.into(),
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            ..Default::default()
        }
    }

    /// Sets the binding arguments.
    #[must_use]
    pub fn arguments(mut self, arguments: FieldTable) -> Self {
        self.arguments = arguments;
        self
    }
}

impl QueueDelete {
    /// Deletes queue `name`.
    #[must_use]
    pub fn new(name: &str) -> Self {
        QueueDelete {
            queue: name.into(),
            ..Default::default()
        }
    }

    /// Only when it has no consumers (406 otherwise).
    #[must_use]
    pub fn if_unused(mut self) -> Self {
        self.if_unused = true;
        self
    }

    /// Only when it holds no messages (406 otherwise).
    #[must_use]
    pub fn if_empty(mut self) -> Self {
        self.if_empty = true;
        self
    }
}

/// What to consume and how: one or more queues on one channel, under one
/// promise.
///
/// ```
/// use puka::Consume;
/// let c = Consume::queue("tasks").prefetch(1).consumer_tag("worker-1");
/// let all = Consume::queue("a").and_queue("b").no_ack();
/// # let _ = (c, all);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Consume {
    pub(crate) queues: Vec<ConsumeQueue>,
    pub(crate) no_ack: bool,
    pub(crate) prefetch_count: u16,
}

impl Consume {
    /// Consumes from `queue`.
    #[must_use]
    pub fn queue(queue: &str) -> Self {
        Consume::default().and_queue(queue)
    }

    /// Also consumes from `queue` (on the same channel and promise).
    #[must_use]
    pub fn and_queue(mut self, queue: &str) -> Self {
        self.queues.push(ConsumeQueue {
            queue: queue.into(),
            ..Default::default()
        });
        self
    }

    /// The broker considers messages acknowledged once sent.
    #[must_use]
    pub fn no_ack(mut self) -> Self {
        self.no_ack = true;
        self
    }

    /// At most `count` unacknowledged messages in flight (`basic.qos`).
    #[must_use]
    pub fn prefetch(mut self, count: u16) -> Self {
        self.prefetch_count = count;
        self
    }

    /// Asks for exclusive access to the queues added so far.
    #[must_use]
    pub fn exclusive(mut self) -> Self {
        for q in &mut self.queues {
            q.exclusive = true;
        }
        self
    }

    /// Doesn't deliver messages this connection published (queues so far).
    #[must_use]
    pub fn no_local(mut self) -> Self {
        for q in &mut self.queues {
            q.no_local = true;
        }
        self
    }

    /// Sets the consumer tag of the last queue added.
    #[must_use]
    pub fn consumer_tag(mut self, tag: &str) -> Self {
        if let Some(q) = self.queues.last_mut() {
            q.consumer_tag = ShortString::from(tag);
        }
        self
    }

    /// Adds a consumer argument (e.g. `x-priority`) to the last queue added.
    #[must_use]
    pub fn argument(mut self, key: &str, value: impl Into<FieldValue>) -> Self {
        if let Some(q) = self.queues.last_mut() {
            q.arguments.insert(key, value);
        }
        self
    }
}

/// What the broker does with a published message no queue takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unroutable {
    /// Drop it silently (the default of AMQP).
    #[default]
    Drop,
    /// Send it back (`mandatory`): the publish fails with
    /// [`Error::NoRoute`](crate::Error::NoRoute) under publisher confirms, or the message comes as
    /// [`ConnectionEvent::Returned`](crate::ConnectionEvent::Returned) without them.
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

/// A `basic.qos` prefetch window: [`Client::basic_qos`](crate::Client::basic_qos).
///
/// ```
/// use puka::Qos;
/// let q = Qos::prefetch(100).size(1 << 20).global();
/// # let _ = q;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[must_use]
pub struct Qos {
    pub(crate) prefetch_count: u16,
    pub(crate) prefetch_size: u32,
    pub(crate) global: bool,
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
