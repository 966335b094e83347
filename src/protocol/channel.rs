//! One AMQP channel as the connection sees it: its role in the pool, the
//! replies it waits for, and the content it is assembling.

use super::confirms::ConfirmWindow;
use super::window::SettleWindow;
use super::Tag;
use super::{Delivery, QueueKey};
use crate::codec::{Method, ShortString};
use crate::error::Reply;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

/// What a channel is used for.
#[derive(Debug)]
pub(super) enum Role {
    /// Synchronous operations; idle between them.
    Pool,
    /// The connection's publish channel.
    Publish,
    /// A consume operation's channel.
    Consumer(Consumer),
}

/// One queue of a consumer: its consumer tag and the queue it names.
#[derive(Debug, Clone)]
pub(super) struct TagQueue {
    pub tag: ShortString,
    pub queue: ShortString,
}

#[derive(Debug)]
pub(super) struct Consumer {
    /// The consume operation's tag.
    pub tag: Tag,
    pub no_ack: bool,
    /// Consumer tags confirmed by `basic.consume-ok` and not cancelled.
    pub tags: Vec<TagQueue>,
    /// `basic.consume` sent, `consume-ok` not yet received, in the order
    /// sent.
    pub pending: VecDeque<TagQueue>,
    /// Operations waiting for every queue to be registered
    /// ([`super::Connection::consumer_ready`]).
    pub ready_waiters: Vec<Tag>,
    /// The user's cancel operation, while it runs.
    pub cancelling: Option<Tag>,
    /// No more deliveries will be reported for this consumer.
    pub ended: bool,
    /// It consumes from `amq.rabbitmq.reply-to`: requests that name it in
    /// `reply_to` are published on this channel.
    pub direct_reply_to: bool,
    /// The prefetch window it was started with (0: unlimited); 1 once the
    /// user changed the channel's `basic.qos`, which turns ack deferral off.
    pub prefetch: u16,
}

impl Consumer {
    /// Whether `consumer_tag` is one of this consumer's confirmed tags.
    pub fn has_tag(&self, consumer_tag: &[u8]) -> bool {
        self.tags.iter().any(|t| t.tag.as_bytes() == consumer_tag)
    }

    /// Moves the queue `consume-ok` answers from pending to confirmed: the
    /// entry with that tag (the client names every queue's tag).
    pub fn confirm(&mut self, consumer_tag: ShortString) {
        let i = self
            .pending
            .iter()
            .position(|p| p.tag == consumer_tag)
            .unwrap_or(0);
        let queue = match self.pending.remove(i) {
            Some(p) => p.queue,
            None => ShortString::from_static(""),
        };
        self.tags.push(TagQueue {
            tag: consumer_tag,
            queue,
        });
    }

    /// Removes `consumer_tag` (confirmed or pending) and returns its queue.
    pub fn forget(&mut self, consumer_tag: &ShortString) -> Option<ShortString> {
        if let Some(i) = self.tags.iter().position(|t| t.tag == *consumer_tag) {
            return Some(self.tags.remove(i).queue);
        }
        let i = self.pending.iter().position(|t| t.tag == *consumer_tag)?;
        self.pending.remove(i).map(|t| t.queue)
    }

    pub fn new(tag: Tag, no_ack: bool) -> Self {
        Consumer {
            tag,
            no_ack,
            tags: Vec::new(),
            pending: VecDeque::new(),
            ready_waiters: Vec::new(),
            cancelling: None,
            ended: false,
            direct_reply_to: false,
            prefetch: 1,
        }
    }
}

/// A reply the channel waits for, in the order the requests were sent.
#[derive(Debug)]
pub(super) enum Expect {
    OpenOk,
    ConfirmSelectOk,
    CloseOk,
    ConsumeOk,
    CancelOk,
    Qos(Option<Tag>),
    /// `tx.select-ok`: transaction mode starts (the user's tag, or none
    /// when a replaced publish channel is made transactional again).
    TxSelectOk(Option<Tag>),
    Get {
        tag: Tag,
        no_ack: bool,
        queue: QueueKey,
    },
    /// A request answered by one method of `class`/`method`.
    Op {
        tag: Tag,
        class: u16,
        method: u16,
    },
    /// `tx.commit-ok` or `tx.rollback-ok` of one channel of a transaction
    /// that spans several (see `Connection::tx_commit`).
    TxEnd {
        group: u64,
        rollback: bool,
    },
}

impl Expect {
    /// The user operation waiting on this reply, if any.
    pub fn tag(&self) -> Option<Tag> {
        match self {
            Expect::Qos(t) | Expect::TxSelectOk(t) => *t,
            Expect::Get { tag, .. } | Expect::Op { tag, .. } => Some(*tag),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Expect::OpenOk => "channel.open-ok",
            Expect::ConfirmSelectOk => "confirm.select-ok",
            Expect::CloseOk => "channel.close-ok",
            Expect::ConsumeOk => "basic.consume-ok",
            Expect::CancelOk => "basic.cancel-ok",
            Expect::Qos(_) => "basic.qos-ok",
            Expect::TxSelectOk(_) => "tx.select-ok",
            Expect::Get { .. } => "basic.get-ok or basic.get-empty",
            Expect::Op { .. } => "a method reply",
            Expect::TxEnd {
                rollback: false, ..
            } => "tx.commit-ok",
            Expect::TxEnd { rollback: true, .. } => "tx.rollback-ok",
        }
    }

    /// Whether `method` is the reply this waits for. RabbitMQ may answer a
    /// channel's requests out of order (`basic.consume-ok` comes from the
    /// queue and can follow the `basic.qos-ok` of a later `basic.qos`), so
    /// a reply goes to the first request it answers, not to the oldest.
    pub fn accepts(&self, method: &Method) -> bool {
        match (self, method) {
            (Expect::OpenOk, Method::ChannelOpenOk(_))
            | (Expect::ConfirmSelectOk, Method::ConfirmSelectOk(_))
            | (Expect::CloseOk, Method::ChannelCloseOk(_))
            | (Expect::ConsumeOk, Method::BasicConsumeOk(_))
            | (Expect::CancelOk, Method::BasicCancelOk(_))
            | (Expect::Qos(_), Method::BasicQosOk(_))
            | (Expect::TxSelectOk(_), Method::TxSelectOk(_))
            | (Expect::Get { .. }, Method::BasicGetOk(_) | Method::BasicGetEmpty(_))
            | (
                Expect::TxEnd {
                    rollback: false, ..
                },
                Method::TxCommitOk(_),
            )
            | (Expect::TxEnd { rollback: true, .. }, Method::TxRollbackOk(_)) => true,
            (Expect::Op { class, method, .. }, m) => {
                m.class_id() == *class && m.method_id() == *method
            }
            _ => false,
        }
    }
}

/// A body being assembled from frames.
#[derive(Debug, Default)]
pub(super) enum Body {
    #[default]
    Empty,
    /// One frame: a slice of the read buffer, not copied.
    One(Bytes),
    /// Several frames joined.
    Many(BytesMut),
}

/// What content being received will become.
#[derive(Debug)]
pub(super) enum IncomingKind {
    /// A delivery to the consume operation `tag`.
    Deliver { tag: Tag, no_ack: bool },
    /// The answer to the `basic.get` operation `tag`.
    GetOk {
        tag: Tag,
        no_ack: bool,
        queue: QueueKey,
    },
    /// A returned message, with the broker's reply.
    Return {
        reply_code: u16,
        reply_text: ShortString,
    },
    /// A delivery for a consumer that has ended: its content is read and
    /// dropped, and it is rejected back to the queue when it needs an ack.
    Stray { reject: bool },
}

/// Content being received: method, then header, then body frames. The
/// message is filled in place, so completing it moves no large values.
#[derive(Debug)]
pub(super) struct Incoming {
    pub kind: IncomingKind,
    pub message: Delivery,
    pub header_seen: bool,
    pub remaining: u64,
    pub body: Body,
}

impl Incoming {
    pub fn new(kind: IncomingKind, message: Delivery) -> Self {
        Incoming {
            kind,
            message,
            header_seen: false,
            remaining: 0,
            body: Body::Empty,
        }
    }
}

#[derive(Debug)]
pub(super) struct Channel {
    pub id: u16,
    /// Distinguishes this channel from earlier ones with the same id.
    pub epoch: u32,
    pub role: Role,
    pub expect: VecDeque<Expect>,
    /// We sent `channel.close` and wait for `close-ok`.
    pub closing: bool,
    pub incoming: Option<Incoming>,
    /// Delivery tags received and not yet settled, ascending.
    pub unacked: SettleWindow<()>,
    /// Publisher confirms: the publishes awaiting them.
    pub unconfirmed: ConfirmWindow,
    /// A `basic.return` waiting for the ack of the same message.
    pub pending_return: Option<Reply>,
    /// The highest delivery tag of consecutive user acks not yet sent; sent
    /// as one `basic.ack` with `multiple` set.
    pub pending_ack: Option<u64>,
    /// How many deliveries that coalesced ack settles.
    pub pending_ack_count: usize,
    /// The highest tag of a delivery that needs an ack: such tags must
    /// rise, or coalesced acks would settle the wrong range (no-ack
    /// deliveries may repeat a tag: see `consumers::tag_follows`).
    pub last_delivery_tag: u64,
    /// The channel is transactional (`tx.select-ok` received).
    pub tx: bool,
    /// Deliveries settled (acked, nacked, rejected) since the last commit
    /// or rollback, while transactional: a rollback makes them outstanding
    /// again (the broker keeps them unacked).
    pub tx_settled: Vec<u64>,
    /// A `basic.get` of this queue left deliveries outstanding here: the
    /// channel stays out of the pool until they are settled.
    pub held_get: Option<QueueKey>,
}

impl Channel {
    pub fn new(id: u16, epoch: u32, role: Role) -> Self {
        Channel {
            id,
            epoch,
            role,
            expect: VecDeque::new(),
            closing: false,
            incoming: None,
            unacked: SettleWindow::default(),
            unconfirmed: ConfirmWindow::default(),
            pending_return: None,
            pending_ack: None,
            pending_ack_count: 0,
            last_delivery_tag: 0,
            tx: false,
            tx_settled: Vec::new(),
            held_get: None,
        }
    }

    /// Marks `tag` (and with `multiple` every earlier tag) settled and
    /// returns how many deliveries that settled; `None` when `tag` is not
    /// outstanding.
    pub fn settle(&mut self, tag: u64, multiple: bool) -> Option<usize> {
        // A single settle finds `tag` once and settles nothing when it is
        // not outstanding; `multiple` would settle what lies below it.
        if multiple && !self.unacked.contains(tag) {
            return None;
        }
        let (tx, tx_settled) = (self.tx, &mut self.tx_settled);
        let settled = self.unacked.settle(tag, multiple, |t, ()| {
            if tx {
                tx_settled.push(t);
            }
        });
        (settled > 0).then_some(settled)
    }

    /// A rollback: what was settled in the transaction is outstanding again.
    pub fn unsettle_rolled_back(&mut self) {
        if self.tx_settled.is_empty() {
            return;
        }
        let mut all: Vec<u64> = self.unacked.take_all().map(|(t, ())| t).collect();
        all.append(&mut self.tx_settled);
        all.sort_unstable();
        all.dedup();
        for t in all {
            self.unacked.push(t, ());
        }
    }
}
