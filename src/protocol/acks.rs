//! Settling deliveries: acks, nacks and rejects, and coalescing acks into one `multiple` frame.

use super::*;

impl Connection {
    /// Queues every coalesced ack now, deferred or not (before the caller
    /// lets the connection go without closing it).
    pub fn release_acks(&mut self) {
        self.emit_pending_acks();
    }

    /// When the acks that are waiting must go out at the latest (`None`:
    /// none wait). [`Connection::poll_timeout`] includes it.
    pub fn ack_deadline(&self) -> Option<Instant> {
        match self.acks {
            AckWait::Until(t) if !self.ack_channels.is_empty() => Some(t),
            _ => None,
        }
    }

    /// Acknowledges a delivery (and, with `multiple`, every earlier one on
    /// its channel).
    ///
    /// # Errors
    /// [`Error::UnknownDeliveryTag`] when the delivery is not outstanding
    /// (already settled, no-ack, or its channel is gone); nothing is sent.
    pub fn ack(&mut self, delivery: &Delivery, multiple: bool) -> Result<(), Error> {
        self.settle(delivery, multiple, true, |delivery_tag| {
            Method::BasicAck(BasicAck {
                delivery_tag,
                multiple,
            })
        })
    }

    /// Rejects a delivery (and, with `multiple`, every earlier one), putting
    /// it back in the queue when `requeue`.
    ///
    /// # Errors
    /// As [`Connection::ack`].
    pub fn nack(
        &mut self,
        delivery: &Delivery,
        multiple: bool,
        requeue: bool,
    ) -> Result<(), Error> {
        self.settle(delivery, multiple, false, |delivery_tag| {
            Method::BasicNack(BasicNack {
                delivery_tag,
                multiple,
                requeue,
            })
        })
    }

    /// Rejects one delivery, putting it back in the queue when `requeue`.
    ///
    /// # Errors
    /// As [`Connection::ack`].
    pub fn reject(&mut self, delivery: &Delivery, requeue: bool) -> Result<(), Error> {
        self.settle(delivery, false, false, |delivery_tag| {
            Method::BasicReject(BasicReject {
                delivery_tag,
                requeue,
            })
        })
    }

    /// Sends a channel's coalesced ack, if it has one.
    pub(super) fn emit_pending_ack(&mut self, ch: u16) {
        let Some(Some(c)) = self.channels.get_mut(usize::from(ch)) else {
            return;
        };
        let Some(delivery_tag) = c.pending_ack.take() else {
            return;
        };
        c.pending_ack_count = 0;
        frame::encode_basic_ack(self.out(), ch, delivery_tag, true);
        self.stats.frames_out += 1;
    }

    pub(super) fn emit_pending_acks(&mut self) {
        for ch in std::mem::take(&mut self.ack_channels) {
            self.emit_pending_ack(ch);
        }
        self.acks = AckWait::Idle;
    }

    pub(super) fn settle(
        &mut self,
        delivery: &Delivery,
        multiple: bool,
        is_ack: bool,
        method: impl FnOnce(u64) -> Method,
    ) -> Result<(), Error> {
        if !self.state.is_live() {
            return Err(self.dead.clone().unwrap_or(Error::ConnectionClosed));
        }
        let tag = delivery.delivery_tag;
        let Some(cref) = delivery.channel else {
            return Err(Error::UnknownDeliveryTag(tag));
        };
        let Some(Some(c)) = self.channels.get_mut(usize::from(cref.id)) else {
            return Err(Error::UnknownDeliveryTag(tag));
        };
        if c.epoch != cref.epoch || c.closing {
            return Err(Error::UnknownDeliveryTag(tag));
        }
        let lowest = c.unacked.lowest() == Some(tag);
        let Some(settled) = c.settle(tag, multiple) else {
            return Err(Error::UnknownDeliveryTag(tag));
        };
        if is_ack {
            self.stats.acks += settled as u64;
        } else {
            self.stats.rejects += settled as u64;
        }
        if is_ack && (lowest || multiple) {
            // Acks of the lowest outstanding tag coalesce into one
            // `multiple` ack, sent before the next frame on this channel or
            // at the next write: nothing below it is outstanding, so it
            // acks exactly what the user acked.
            if c.pending_ack.is_none() {
                self.ack_channels.push(cref.id);
            }
            c.pending_ack = Some(tag);
            c.pending_ack_count += settled;
            // A consumer's acks may wait (for a write that happens anyway,
            // or ACK_DELAY) while the broker still has half its window to
            // send in: it is not held up, and many deliveries then cost one
            // ack frame and no write of their own.
            let deferrable = match &c.role {
                Role::Consumer(k) if self.config.ack_timing == AckTiming::Deferred => {
                    let window = if k.prefetch == 0 {
                        UNLIMITED_WINDOW
                    } else {
                        usize::from(k.prefetch)
                    };
                    k.prefetch != 1 && (c.unacked.len() + c.pending_ack_count) * 2 < window
                }
                _ => false,
            };
            if !deferrable {
                self.acks = AckWait::Due;
            } else if self.acks == AckWait::Idle {
                self.acks = AckWait::Until(self.heard.last() + ACK_DELAY);
            }
            self.beat.note_sent();
        } else {
            let _ = self.send_method(cref.id, &method(tag));
        }
        self.maybe_close_drained_consumer(cref.id);
        self.release_held_get(cref.id);
        Ok(())
    }
}
