//! Consumers: deliveries, consume-ok, cancels from either side, and when a consumer ends.

use super::*;

impl Connection {
    pub(super) fn maybe_end_consumer(&mut self, ch: u16) {
        let Some(c) = self.chan_opt(ch) else { return };
        let Role::Consumer(k) = &mut c.role else {
            return;
        };
        if k.cancelling.is_none() || !k.tags.is_empty() || !k.pending.is_empty() || k.ended {
            return;
        }
        let cancel_tag = k.cancelling.take();
        k.ended = true;
        let tag = k.tag;
        let waiters = std::mem::take(&mut k.ready_waiters);
        if let Some(t) = cancel_tag {
            self.complete(t, Ok(Outcome::Done));
        }
        // Cancelled before every queue was registered: it never will be.
        for t in waiters {
            self.complete(t, Err(Error::UnknownPromise));
        }
        self.events.push(Event::ConsumerEnded { tag });
        self.maybe_close_drained_consumer(ch);
    }

    /// A consumer channel whose consumers are all gone is closed once its
    /// last unacked delivery is settled (closing earlier would requeue them).
    pub(super) fn maybe_close_drained_consumer(&mut self, ch: u16) {
        let Some(c) = self.chan_opt(ch) else { return };
        if let Role::Consumer(k) = &c.role {
            if k.ended && c.unacked.is_empty() && c.expect.is_empty() {
                self.close_channel(ch);
            }
        }
    }

    /// A whole small message in one pass: `f` is a `basic.deliver` and the
    /// frames after it in `rest` its content header and single body frame
    /// (or a header of an empty body) on the same channel, for a live
    /// consumer of a plain channel. The delivery is built once and goes
    /// straight to the event queue (no content slot, one channel lookup);
    /// `rest` then moves past the frames taken.
    ///
    /// Returns false, having changed nothing, when anything differs from
    /// that (a message split across reads or body frames, a frame that does
    /// not parse, a tag that does not rise, a stray delivery): the frames
    /// then take the general path, which reports whatever is wrong.
    pub(super) fn whole_delivery<'a>(&mut self, f: &FrameRef<'a>, rest: &mut Frames<'a>) -> bool {
        let ch = f.channel;
        if !self.state.is_live() {
            return false;
        }
        let max = self.config.max_message_size;
        let Some(Some(c)) = self.channels.get_mut(usize::from(ch)) else {
            return false;
        };
        let Role::Consumer(k) = &c.role else {
            return false;
        };
        if c.closing || c.incoming.is_some() || k.ended {
            return false;
        }
        // The method, as on_deliver_frame reads it but by hand: class and
        // method (4), consumer tag, delivery tag (8), flags (1), exchange,
        // routing key. Names that are not all ASCII take the general path,
        // which checks them as UTF-8.
        let p = f.as_slice();
        let Some(&ctag_len) = p.get(4) else {
            return false;
        };
        let ctag_at = 4;
        let after_ctag = 5 + usize::from(ctag_len);
        let (Some(consumer_tag), Some(fixed)) =
            (p.get(5..after_ctag), p.get(after_ctag..after_ctag + 10))
        else {
            return false;
        };
        let mut tag_bytes = [0u8; 8];
        tag_bytes.copy_from_slice(&fixed[..8]);
        let delivery_tag = u64::from_be_bytes(tag_bytes);
        let flags = fixed[8];
        let exchange_at = after_ctag + 9;
        let routing_key_at = exchange_at + 1 + usize::from(fixed[9]);
        let Some(&rk_len) = p.get(routing_key_at) else {
            return false;
        };
        let names_end = routing_key_at + 1 + usize::from(rk_len);
        // The names' bytes, not their length octets (a name of 128 bytes
        // or more is still ASCII).
        let ascii = |r: std::ops::Range<usize>| p.get(r).is_some_and(<[u8]>::is_ascii);
        if !ascii(exchange_at + 1..routing_key_at) || !ascii(routing_key_at + 1..names_end) {
            return false;
        }
        // Our own tags are UTF-8: one that matches is.
        if !tag_follows(delivery_tag, c.last_delivery_tag, k.no_ack) || !k.has_tag(consumer_tag) {
            return false;
        }
        let mut ahead = rest.clone();
        let Some((properties, body, frames)) = whole_content(&mut ahead, ch, max) else {
            return false;
        };
        *rest = ahead;
        let (tag, no_ack) = (k.tag, k.no_ack);
        if !no_ack {
            c.last_delivery_tag = delivery_tag;
        }
        let channel = if no_ack {
            None
        } else {
            c.unacked.push(delivery_tag, ());
            Some(ChannelRef {
                id: ch,
                epoch: c.epoch,
            })
        };
        self.stats.deliveries += 1;
        self.stats.frames_in += frames;
        self.events.push_delivery(
            tag,
            Delivery {
                delivery_tag,
                redelivered: flags & 0x01 != 0,
                message_count: None,
                properties,
                body,
                names: Names::in_frame(f.payload(), ctag_at, exchange_at, routing_key_at),
                channel,
            },
        );
        true
    }

    /// `basic.deliver` on a plain channel, read in place: the names stay in
    /// the frame (see [`Names`]), nothing else is built.
    pub(super) fn on_deliver_frame(&mut self, ch: u16, f: &FrameRef<'_>) -> Result<(), CodecError> {
        let mut r = f.reader();
        let base = r.position();
        r.skip(4, "method id")?;
        let ctag_at = r.position() - base;
        let consumer_tag = r.shortstr_bytes("basic.deliver consumer-tag")?;
        let delivery_tag = r.u64("basic.deliver delivery-tag")?;
        let redelivered = r.u8("basic.deliver flags")? & 0x01 != 0;
        let exchange_at = r.position() - base;
        r.shortstr_bytes("basic.deliver exchange")?;
        let routing_key_at = r.position() - base;
        r.shortstr_bytes("basic.deliver routing-key")?;
        let names = Names::in_frame(f.payload(), ctag_at, exchange_at, routing_key_at);
        self.on_deliver(ch, consumer_tag, delivery_tag, redelivered, names);
        Ok(())
    }

    /// `basic.deliver`: the start of a message for one of our consumers.
    pub(super) fn on_deliver(
        &mut self,
        ch: u16,
        consumer_tag: &[u8],
        delivery_tag: u64,
        redelivered: bool,
        names: Names,
    ) {
        let c = self.chan(ch);
        if !matches!(c.role, Role::Consumer(_)) {
            self.unexpected("basic.deliver on a channel without a consumer");
            return;
        }
        let Role::Consumer(k) = &c.role else {
            return;
        };
        if !tag_follows(delivery_tag, c.last_delivery_tag, k.no_ack) {
            self.delivery_tag_not_rising(ch, delivery_tag);
            return;
        }
        if !k.no_ack {
            c.last_delivery_tag = delivery_tag;
        }
        let ours = k.has_tag(consumer_tag);
        let kind = if k.ended || !ours {
            // A broker delivering to a consumer that has ended
            // (cancelled, or never confirmed): never reported.
            IncomingKind::Stray { reject: !k.no_ack }
        } else {
            IncomingKind::Deliver {
                tag: k.tag,
                no_ack: k.no_ack,
            }
        };
        let message = Delivery {
            delivery_tag,
            redelivered,
            names,
            message_count: None,
            properties: BasicProperties::default(),
            body: Bytes::new(),
            channel: None,
        };
        c.incoming = Some(Incoming::new(kind, message));
    }

    /// A delivery whose tag breaks [`tag_follows`]: a command-invalid
    /// close.
    pub(super) fn delivery_tag_not_rising(&mut self, ch: u16, delivery_tag: u64) {
        let last = self.chan(ch).last_delivery_tag;
        self.command_invalid(format!(
            "delivery tag {delivery_tag} on channel {ch} does not follow {last}"
        ));
    }

    pub(super) fn on_consume_ok(&mut self, ch: u16, ok: BasicConsumeOk) {
        let c = self.chan(ch);
        let Role::Consumer(k) = &mut c.role else {
            return;
        };
        tr_debug!(channel = ch, consumer_tag = %ok.consumer_tag, "consumer started");
        k.confirm(ok.consumer_tag.clone());
        if k.cancelling.is_some() || k.ended {
            // The user cancelled (or the broker cancelled another queue of
            // this consumer) before this queue was confirmed.
            let m = Method::BasicCancel(BasicCancel {
                consumer_tag: ok.consumer_tag,
                no_wait: false,
            });
            let _ = self.send_method(ch, &m);
            self.chan(ch).expect.push_back(Expect::CancelOk);
            return;
        }
        if k.pending.is_empty() && !k.ready_waiters.is_empty() {
            let tags: Vec<ShortString> = k.tags.iter().map(|t| t.tag.clone()).collect();
            for t in std::mem::take(&mut k.ready_waiters) {
                self.complete(t, Ok(Outcome::ConsumerTags(tags.clone())));
            }
        }
    }

    /// `basic.cancel` from the broker: a queue of this consumer was deleted
    /// (or its node went away). The consumer ends as a whole, with an error
    /// naming that queue: its other queues are cancelled too, so a consumer
    /// never goes on silently with part of what it asked for. Deliveries
    /// already received stay valid to ack.
    pub(super) fn on_server_cancel(&mut self, ch: u16, cancel: BasicCancel) {
        if !cancel.no_wait {
            let m = Method::BasicCancelOk(BasicCancelOk {
                consumer_tag: cancel.consumer_tag.clone(),
            });
            let _ = self.send_method(ch, &m);
        }
        let c = self.chan(ch);
        let Role::Consumer(k) = &mut c.role else {
            return;
        };
        let queue = k.forget(&cancel.consumer_tag);
        if k.ended {
            return;
        }
        let Some(queue) = queue else {
            // Not one of ours: nothing to end.
            return;
        };
        tr_info!(
            channel = ch,
            queue = %queue,
            consumer_tag = %cancel.consumer_tag,
            "consumer cancelled by the broker"
        );
        k.ended = true;
        let tag = k.tag;
        let cancelling = k.cancelling.take();
        let waiters = std::mem::take(&mut k.ready_waiters);
        let others: Vec<ShortString> = k.tags.iter().map(|t| t.tag.clone()).collect();
        let err = Error::ConsumerCancelled {
            queue: queue.to_string(),
            consumer_tag: cancel.consumer_tag.to_string(),
        };
        // Queues still pending are cancelled when their consume-ok comes
        // (see on_consume_ok).
        for consumer_tag in others {
            let m = Method::BasicCancel(BasicCancel {
                consumer_tag,
                no_wait: false,
            });
            let _ = self.send_method(ch, &m);
            self.chan(ch).expect.push_back(Expect::CancelOk);
        }
        if let Some(t) = cancelling {
            self.complete(t, Ok(Outcome::Done));
        }
        for t in waiters {
            self.complete(t, Err(err.clone()));
        }
        self.complete(tag, Err(err));
        self.maybe_close_drained_consumer(ch);
    }
}

/// Whether a consumer's delivery tag is acceptable after `last` (the last
/// tag of a delivery that needs an ack on that channel).
///
/// "The server MUST NOT use a zero value for delivery tags." Past that, the
/// spec does not order tags, but a delivery that needs an ack must come
/// after the last such one: a tag at or below it would make a coalesced
/// (`multiple`) ack settle messages the user did not ack. A no-ack
/// delivery is never acked, so only the zero rule applies to it: RabbitMQ's
/// direct reply-to (`amq.rabbitmq.reply-to`) gives every reply the
/// channel's next tag without advancing it, so replies repeat a tag.
pub(super) fn tag_follows(delivery_tag: u64, last: u64, no_ack: bool) -> bool {
    delivery_tag != 0 && (no_ack || delivery_tag > last)
}

/// The content of a whole small message whose method frame was just read:
/// its content header and single body frame (no body frame for an empty
/// body) next in `ahead`, on channel `ch`, of class basic and at most `max`
/// bytes. Returns the properties, the body and how many frames that took,
/// with `ahead` moved past them; `None` when anything differs (the general
/// path then reports whatever is wrong).
pub(super) fn whole_content(
    ahead: &mut Frames<'_>,
    ch: u16,
    max: u64,
) -> Option<(BasicProperties, Bytes, u64)> {
    // The header: class, weight, body size, then the properties.
    let h = ahead.next()?;
    if h.frame_type != frame::FRAME_HEADER || h.channel != ch {
        return None;
    }
    let fixed = h.as_slice().get(..14)?;
    let mut size_bytes = [0u8; 8];
    size_bytes.copy_from_slice(&fixed[4..12]);
    let body_size = u64::from_be_bytes(size_bytes);
    if u16::from_be_bytes([fixed[0], fixed[1]]) != CLASS_BASIC || body_size > max {
        return None;
    }
    let properties = if fixed[12..14] == [0, 0] {
        BasicProperties::EMPTY
    } else {
        let mut r = h.reader();
        r.skip(12, "content header").ok()?;
        BasicProperties::decode(&mut r).ok()?
    };
    if body_size == 0 {
        return Some((properties, Bytes::new(), 1));
    }
    // The body, in one frame.
    let b = ahead.next()?;
    if b.frame_type != frame::FRAME_BODY || b.channel != ch || b.len() as u64 != body_size {
        return None;
    }
    Some((properties, b.payload(), 2))
}
