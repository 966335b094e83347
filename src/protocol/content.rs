//! Content assembly: headers and bodies into messages, deliveries, gets and returns.

use super::*;

impl Connection {
    pub(super) fn handle_header(&mut self, ch: u16, mut r: Reader<'_>) -> Result<(), CodecError> {
        if !self.state.is_live() {
            if self.state != State::Closing {
                self.unexpected("content header before the connection is open");
            }
            return Ok(());
        }
        if ch == 0 {
            self.unexpected("content header on channel 0");
            return Ok(());
        }
        let max = self.config.max_message_size;
        let Some(c) = self.chan_opt(ch) else {
            self.unexpected("content header on a channel that is not open");
            return Ok(());
        };
        if c.closing {
            return Ok(());
        }
        let Some(inc) = c.incoming.as_mut() else {
            self.unexpected("content header without a content method");
            return Ok(());
        };
        if inc.header_seen {
            self.unexpected("second content header");
            return Ok(());
        }
        let class_id = r.u16("content header class")?;
        // The weight field is unused and must be zero; it is not checked.
        let _weight = r.u16("content header weight")?;
        let body_size = r.u64("content header body size")?;
        if class_id != CLASS_BASIC {
            self.unexpected("content header class differs from its method's");
            return Ok(());
        }
        if body_size > max {
            self.violation(
                reply_code::CONTENT_TOO_LARGE,
                format!("CONTENT_TOO_LARGE - message of {body_size} bytes exceeds {max}"),
                Error::MessageTooLarge {
                    size: body_size,
                    max,
                },
            );
            return Ok(());
        }
        // Decoded straight into the message being built.
        inc.message.properties = BasicProperties::decode(&mut r)?;
        inc.remaining = body_size;
        inc.header_seen = true;
        if body_size == 0 {
            self.content_complete(ch);
        }
        Ok(())
    }

    pub(super) fn handle_body(&mut self, ch: u16, f: FrameRef<'_>) {
        if !self.state.is_live() {
            if self.state != State::Closing {
                self.unexpected("content body before the connection is open");
            }
            return;
        }
        if ch == 0 {
            self.unexpected("content body on channel 0");
            return;
        }
        let Some(c) = self.chan_opt(ch) else {
            self.unexpected("content body on a channel that is not open");
            return;
        };
        if c.closing {
            return;
        }
        let Some(inc) = c.incoming.as_mut().filter(|i| i.header_seen) else {
            self.unexpected("content body without a content header");
            return;
        };
        let len = f.len() as u64;
        if len > inc.remaining {
            self.unexpected("content body longer than the header's body size");
            return;
        }
        inc.remaining -= len;
        if inc.remaining == 0 && matches!(inc.body, Body::Empty) {
            // The whole body in one frame (the usual case): a slice of the
            // read buffer, straight into the message.
            inc.message.body = f.payload();
        } else {
            inc.body.push(f.payload());
        }
        if inc.remaining == 0 {
            self.content_complete(ch);
        }
    }

    /// A `basic.get`'s message is in: it completes `tag`. One that needs an
    /// ack pins its channel, held for its queue, until it is settled.
    pub(super) fn get_ok_complete(
        &mut self,
        ch: u16,
        tag: Tag,
        no_ack: bool,
        queue: QueueKey,
        mut message: Delivery,
    ) {
        let Some(Some(c)) = self.channels.get_mut(usize::from(ch)) else {
            return;
        };
        self.stats.deliveries += 1;
        if !no_ack {
            c.unacked.push(message.delivery_tag, ());
            message.channel = Some(ChannelRef {
                id: ch,
                epoch: c.epoch,
            });
            if matches!(c.role, Role::Pool) && c.held_get.is_none() {
                self.held_gets.entry(queue).or_insert(ch);
                c.held_get = Some(queue);
            }
        }
        self.complete(tag, Ok(Outcome::Get(Some(message))));
        self.maybe_idle(ch);
    }

    pub(super) fn content_complete(&mut self, ch: u16) {
        let confirming = self.confirm == ConfirmMode::Confirmed && self.tx == TxState::Off;
        let Some(Some(c)) = self.channels.get_mut(usize::from(ch)) else {
            return;
        };
        let cref = ChannelRef {
            id: ch,
            epoch: c.epoch,
        };
        // The hottest case first: a delivery to a consumer goes from the
        // channel's slot straight into the event queue (one move, not the
        // two or three that taking the whole `Incoming` out costs).
        if let Some(Incoming {
            kind: IncomingKind::Deliver { tag, no_ack },
            message,
            body,
            ..
        }) = &mut c.incoming
        {
            let (tag, no_ack) = (*tag, *no_ack);
            self.stats.deliveries += 1;
            if let Some(joined) = body.take_bytes() {
                message.body = joined;
            }
            if !no_ack {
                c.unacked.push(message.delivery_tag, ());
                message.channel = Some(cref);
            }
            self.events
                .push_delivery(tag, std::mem::replace(message, Delivery::PLACEHOLDER));
            c.incoming = None;
            return;
        }
        let Some(inc) = c.incoming.take() else { return };
        let mut message = inc.message;
        if let Some(joined) = inc.body.into_bytes() {
            message.body = joined;
        }
        match inc.kind {
            IncomingKind::Deliver { .. } => {} // handled above
            IncomingKind::GetOk { tag, no_ack, queue } => {
                self.get_ok_complete(ch, tag, no_ack, queue, message);
            }
            IncomingKind::Return {
                reply_code,
                reply_text,
            } => {
                self.stats.returns += 1;
                if matches!(c.role, Role::Publish) && confirming {
                    // RabbitMQ sends basic.return right before the basic.ack
                    // of the same message (and the ack's tag names it).
                    c.pending_return = Some(Reply::new(reply_code, reply_text.to_string()));
                } else {
                    self.events.push(Event::Returned(Box::new(Returned {
                        reply_code,
                        reply_text,
                        message,
                    })));
                }
            }
            IncomingKind::Stray { reject } => {
                if reject {
                    let m = Method::BasicReject(BasicReject {
                        delivery_tag: message.delivery_tag,
                        requeue: true,
                    });
                    let _ = self.send_method(ch, &m);
                }
            }
        }
    }
}

impl Body {
    fn push(&mut self, part: Bytes) {
        match std::mem::take(self) {
            Body::Empty => *self = Body::One(part),
            Body::One(first) => {
                let mut joined = BytesMut::with_capacity(first.len() + part.len());
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&part);
                *self = Body::Many(joined);
            }
            Body::Many(mut joined) => {
                joined.extend_from_slice(&part);
                *self = Body::Many(joined);
            }
        }
    }

    /// The body assembled here; `None` when no frame came through here
    /// (an empty body, or one frame put straight into the message).
    fn into_bytes(self) -> Option<Bytes> {
        match self {
            Body::Empty => None,
            Body::One(b) => Some(b),
            Body::Many(b) => Some(b.freeze()),
        }
    }

    fn take_bytes(&mut self) -> Option<Bytes> {
        std::mem::take(self).into_bytes()
    }
}
