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
/// The exchange, routing key and consumer tag stay where they arrived, in
/// the method frame, and are read on demand.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The broker's tag for this delivery on its channel; ack with it.
    pub delivery_tag: u64,
    /// Whether the message was delivered before and not acknowledged.
    pub redelivered: bool,
    /// For `basic.get`: how many messages remain in the queue.
    pub message_count: Option<u32>,
    /// The message properties and headers.
    pub properties: BasicProperties,
    /// The message body.
    pub body: Bytes,
    pub(crate) names: Names,
    pub(crate) channel: Option<ChannelRef>,
}

impl Delivery {
    /// What a channel's content slot holds once its delivery has moved on.
    pub(crate) const PLACEHOLDER: Delivery = Delivery {
        delivery_tag: 0,
        redelivered: false,
        message_count: None,
        properties: BasicProperties::EMPTY,
        body: Bytes::new(),
        names: Names::EMPTY,
        channel: None,
    };

    /// The body as UTF-8 text, if it is.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// The exchange the message was published to (empty: the default
    /// exchange).
    pub fn exchange(&self) -> &str {
        self.names.get(self.names.exchange)
    }

    /// The routing key it was published with.
    pub fn routing_key(&self) -> &str {
        self.names.get(self.names.routing_key)
    }

    /// The consumer it was delivered to (empty for `basic.get` and returns).
    pub fn consumer_tag(&self) -> &str {
        self.names.get(self.names.consumer_tag)
    }

    /// Whether this delivery must be acknowledged (it came on a consumer or
    /// `basic.get` without `no_ack`).
    pub fn needs_ack(&self) -> bool {
        self.channel.is_some()
    }
}

/// The exchange, routing key and consumer tag of a message: three short
/// strings (a length octet, then UTF-8 checked when they were read) at
/// offsets into one shared buffer. For `basic.deliver` that buffer is the
/// method frame's payload, so taking the names costs one reference count
/// and no copy; anything else gets a small buffer of its own.
#[derive(Clone)]
pub(crate) struct Names {
    raw: Bytes,
    exchange: u16,
    routing_key: u16,
    consumer_tag: u16,
}

impl Names {
    /// Three empty names.
    const EMPTY: Names = Names {
        raw: Bytes::new(),
        exchange: u16::MAX,
        routing_key: u16::MAX,
        consumer_tag: u16::MAX,
    };

    /// Names found in `raw`, each offset at its length octet.
    pub(crate) fn in_frame(
        raw: Bytes,
        consumer_tag: usize,
        exchange: usize,
        routing_key: usize,
    ) -> Names {
        // A `basic.deliver` puts them within its first 600 bytes; an offset
        // that does not fit reads as empty rather than as something else.
        let at = |i: usize| u16::try_from(i).unwrap_or(u16::MAX);
        Names {
            raw,
            exchange: at(exchange),
            routing_key: at(routing_key),
            consumer_tag: at(consumer_tag),
        }
    }

    /// Names copied into a buffer of their own (each at most 255 bytes,
    /// as short strings are; a longer one is cut there).
    pub(crate) fn from_parts(exchange: &str, routing_key: &str, consumer_tag: &str) -> Names {
        let mut raw =
            Vec::with_capacity(3 + exchange.len() + routing_key.len() + consumer_tag.len());
        let mut offsets = [0usize; 3];
        for (slot, part) in offsets
            .iter_mut()
            .zip([exchange, routing_key, consumer_tag])
        {
            *slot = raw.len();
            let part = &part.as_bytes()[..part.len().min(255)];
            raw.push(part.len() as u8);
            raw.extend_from_slice(part);
        }
        Names::in_frame(Bytes::from(raw), offsets[2], offsets[0], offsets[1])
    }

    /// The short string at `at`.
    fn get(&self, at: u16) -> &str {
        let at = usize::from(at);
        let value = match self.raw.get(at) {
            Some(&len) => self
                .raw
                .get(at + 1..at + 1 + usize::from(len))
                .unwrap_or_default(),
            None => &[],
        };
        // Checked as UTF-8 when read from the network; the fallback is
        // never taken and only avoids `unsafe`.
        std::str::from_utf8(value).unwrap_or_default()
    }
}

impl PartialEq for Names {
    fn eq(&self, other: &Self) -> bool {
        self.get(self.exchange) == other.get(other.exchange)
            && self.get(self.routing_key) == other.get(other.routing_key)
            && self.get(self.consumer_tag) == other.get(other.consumer_tag)
    }
}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Names")
            .field("exchange", &self.get(self.exchange))
            .field("routing_key", &self.get(self.routing_key))
            .field("consumer_tag", &self.get(self.consumer_tag))
            .finish()
    }
}

/// A mandatory message the broker could not route, with the reason.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Returned {
    /// The reply code (312 NO_ROUTE).
    pub reply_code: u16,
    /// The broker's reply text.
    pub reply_text: ShortString,
    /// The message (its `delivery_tag` is 0).
    pub message: Delivery,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_in_place_from_a_deliver_payload() {
        // class 60, method 60, consumer-tag "ct", delivery-tag 9, flags 1,
        // exchange "", routing-key "rk".
        let raw = Bytes::from_static(
            b"\x00\x3c\x00\x3c\x02ct\x00\x00\x00\x00\x00\x00\x00\x09\x01\x00\x02rk",
        );
        let n = Names::in_frame(raw, 4, 16, 17);
        assert_eq!(n.get(n.consumer_tag), "ct");
        assert_eq!(n.get(n.exchange), "");
        assert_eq!(n.get(n.routing_key), "rk");
        assert_eq!(n, Names::from_parts("", "rk", "ct"));
        assert_eq!(
            format!("{n:?}"),
            r#"Names { exchange: "", routing_key: "rk", consumer_tag: "ct" }"#
        );
    }

    #[test]
    fn delivery_stays_small() {
        // Every delivery is moved a few times on its way to the caller.
        let size = std::mem::size_of::<Delivery>();
        eprintln!("Delivery: {size} bytes");
        assert!(size <= 160, "Delivery grew to {size} bytes");
    }

    #[test]
    fn names_out_of_range_read_as_empty() {
        let n = Names::in_frame(Bytes::from_static(b"\x05ab"), 0, 70_000, 3);
        // The length octet promises more than there is; the offset does not
        // fit in u16; the offset is past the end: all empty, no panic.
        assert_eq!(n.get(n.consumer_tag), "");
        assert_eq!(n.get(n.exchange), "");
        assert_eq!(n.get(n.routing_key), "");
    }
}
