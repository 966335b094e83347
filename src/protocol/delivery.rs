//! Messages handed to the user: deliveries from a consumer or `basic.get`,
//! and messages returned by the broker.

use crate::codec::{BasicProperties, ShortString};
use bytes::Bytes;

/// Which channel (and which incarnation of it) a delivery came on, so an ack
/// can never reach a channel that was closed and reopened under the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelRef {
    pub(crate) id: u16,
    pub(crate) epoch: u32,
}

/// A message from the broker.
///
/// The body is a [`Bytes`] slice of the client's read buffer when the message
/// arrived in one frame (no copy); only a body split across frames is joined.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The broker's tag for this delivery on its channel; ack with it.
    pub delivery_tag: u64,
    /// Whether the message was delivered before and not acknowledged.
    pub redelivered: bool,
    /// The exchange the message was published to (empty: the default exchange).
    pub exchange: ShortString,
    /// The routing key it was published with.
    pub routing_key: ShortString,
    /// The consumer it was delivered to (empty for `basic.get` and returns).
    pub consumer_tag: ShortString,
    /// For `basic.get`: how many messages remain in the queue.
    pub message_count: Option<u32>,
    /// The message properties and headers.
    pub properties: BasicProperties,
    /// The message body.
    pub body: Bytes,
    pub(crate) channel: Option<ChannelRef>,
}

impl Delivery {
    /// The body as UTF-8 text, if it is.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// Whether this delivery must be acknowledged (it came on a consumer or
    /// `basic.get` without `no_ack`).
    pub fn needs_ack(&self) -> bool {
        self.channel.is_some()
    }
}

/// A mandatory message the broker could not route, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Returned {
    /// The reply code (312 NO_ROUTE).
    pub reply_code: u16,
    /// The broker's reply text.
    pub reply_text: ShortString,
    /// The message (its `delivery_tag` is 0).
    pub message: Delivery,
}
