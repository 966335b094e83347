//! The channel pool: allocation, the idle pool and its cap, operations waiting for a channel, and failing a channel.

use super::*;

impl Connection {
    /// Every channel is in use: the operation waits for one to be freed
    /// (up to [`MAX_WAITING_OPERATIONS`]).
    pub(super) fn wait_for_channel(&mut self, op: Waiting) {
        if self.waiting.len() >= MAX_WAITING_OPERATIONS {
            let tag = match op {
                Waiting::Rpc { tag, .. } | Waiting::Get { tag, .. } => tag,
            };
            self.complete(tag, Err(Error::WouldBlock));
            return;
        }
        self.waiting.push_back(op);
    }

    pub(super) fn fail_waiting(&mut self, err: Error) {
        for op in std::mem::take(&mut self.waiting) {
            let tag = match op {
                Waiting::Rpc { tag, .. } | Waiting::Get { tag, .. } => tag,
            };
            self.complete(tag, Err(err.clone()));
        }
    }

    /// Starts waiting operations while channels are available.
    pub(super) fn dispatch_waiting(&mut self) {
        while !self.waiting.is_empty() && self.state.is_live() {
            let Some(ch) = self.take_pooled_channel() else {
                return;
            };
            match self.waiting.pop_front() {
                Some(Waiting::Rpc { tag, method }) => self.send_rpc(ch, tag, method),
                Some(Waiting::Get { tag, queue, no_ack }) => {
                    self.send_get(ch, tag, queue.as_str(), no_ack)
                }
                None => return,
            }
        }
    }

    pub(super) fn chan(&mut self, id: u16) -> &mut Channel {
        self.channels[usize::from(id)]
            .as_mut()
            .expect("channel id from a live channel")
    }

    pub(super) fn chan_opt(&mut self, id: u16) -> Option<&mut Channel> {
        self.channels
            .get_mut(usize::from(id))
            .and_then(|c| c.as_mut())
    }

    pub(super) fn no_channel_error(&self) -> Error {
        Error::NoChannel {
            channel_max: self.tuned.channel_max,
        }
    }

    pub(super) fn allocate_id(&mut self) -> Option<u16> {
        if let Some(id) = self.free_ids.pop() {
            return Some(id);
        }
        let next = self.channels.len().max(1);
        if next > usize::from(self.tuned.channel_max) {
            return None;
        }
        self.channels.resize_with(next + 1, || None);
        Some(next as u16)
    }

    pub(super) fn open_channel(&mut self, role: Role) -> Option<u16> {
        let id = self.allocate_id()?;
        // Epochs are unique in the process, not just in this connection: a
        // delivery from another connection (or an earlier one) never names
        // a channel here, so its ack fails locally instead of acking some
        // other message.
        let epoch = next_epoch();
        tr_debug!(channel = id, "channel open");
        self.channels[usize::from(id)] = Some(Channel::new(id, epoch, role));
        let _ = self.send_method(id, &Method::ChannelOpen(ChannelOpen {}));
        self.chan(id).expect.push_back(Expect::OpenOk);
        Some(id)
    }

    pub(super) fn take_pooled_channel(&mut self) -> Option<u16> {
        if let Some(id) = self.idle.pop() {
            return Some(id);
        }
        self.open_channel(Role::Pool)
    }

    pub(super) fn publish_channel(&mut self) -> Option<u16> {
        if let Some(id) = self.publish_channel {
            return Some(id);
        }
        let id = self.open_channel(Role::Publish)?;
        self.publish_channel = Some(id);
        let want = match self.config.confirms {
            Confirms::Off => false,
            Confirms::On => true,
            // Before connection.start (or after a failed handshake, held
            // for another broker) we cannot know; ask anyway, as RabbitMQ
            // always supports it.
            Confirms::Auto => {
                matches!(self.state, State::AwaitStart | State::HandshakeFailed)
                    || self.confirms_enabled()
            }
        };
        self.confirm = if want {
            ConfirmMode::Confirmed
        } else {
            ConfirmMode::Plain
        };
        if self.tx == TxState::Active {
            // A replaced publish channel stays transactional.
            let _ = self.send_method(id, &Method::TxSelect(TxSelect {}));
            self.chan(id).expect.push_back(Expect::TxSelectOk(None));
        } else if want {
            let _ = self.send_method(id, &Method::ConfirmSelect(ConfirmSelect { no_wait: false }));
            self.chan(id).expect.push_back(Expect::ConfirmSelectOk);
        }
        Some(id)
    }

    /// The channel consuming from `amq.rabbitmq.reply-to`, or else the
    /// publish channel (the broker then refuses the request with 406).
    pub(super) fn direct_reply_channel(&mut self) -> Option<u16> {
        let found = self.channels.iter().flatten().find_map(|c| match &c.role {
            Role::Consumer(k) if k.direct_reply_to && !c.closing && !k.ended => Some(c.id),
            _ => None,
        });
        found.or_else(|| self.publish_channel())
    }

    pub(super) fn consumer_channel(&self, consume_tag: Tag) -> Option<u16> {
        self.channels.iter().flatten().find_map(|c| match &c.role {
            Role::Consumer(k) if k.tag == consume_tag && !c.closing => Some(c.id),
            _ => None,
        })
    }

    pub(super) fn release_on_encode_error(&mut self, ch: u16, tag: Tag) {
        self.complete(
            tag,
            Err(Error::InvalidArgument(CodecError::InvalidValue(
                "argument cannot be encoded",
            ))),
        );
        self.maybe_idle(ch);
    }

    pub(super) fn maybe_idle(&mut self, ch: u16) {
        let Some(c) = self.chan_opt(ch) else { return };
        if !(matches!(c.role, Role::Pool)
            && c.expect.is_empty()
            && !c.closing
            && c.held_get.is_none())
        {
            return;
        }
        if !self.waiting.is_empty() {
            self.idle.push(ch);
            self.dispatch_waiting();
        } else if self.idle.len() >= MAX_IDLE_CHANNELS {
            // A burst opened many channels: the pool keeps a few.
            self.close_channel(ch);
        } else {
            self.idle.push(ch);
        }
    }

    /// A pooled channel whose `basic.get` deliveries are all settled goes
    /// back to the pool.
    pub(super) fn release_held_get(&mut self, ch: u16) {
        let Some(c) = self.chan_opt(ch) else { return };
        if !c.unacked.is_empty() || c.incoming.is_some() {
            return;
        }
        let Some(queue) = c.held_get.take() else {
            return;
        };
        if let std::collections::hash_map::Entry::Occupied(held) = self.held_gets.entry(queue) {
            if *held.get() == ch {
                held.remove();
            }
        }
        self.maybe_idle(ch);
    }

    /// Fails everything waiting on a channel and forgets it (the channel
    /// was closed by the broker or could not be used). Unconfirmed
    /// publishes fail with `publishes` (their outcome is usually unknown).
    pub(super) fn fail_channel(&mut self, ch: u16, err: Error) {
        let publishes = err.clone();
        self.fail_channel_with(ch, err, publishes);
    }

    pub(super) fn fail_channel_with(&mut self, ch: u16, err: Error, publishes: Error) {
        let Some(mut c) = self
            .channels
            .get_mut(usize::from(ch))
            .and_then(Option::take)
        else {
            return;
        };
        self.idle.retain(|&i| i != ch);
        if c.held_get.is_some() {
            self.held_gets.retain(|_, held| *held != ch);
        }
        if self.publish_channel == Some(ch) {
            self.publish_channel = None;
        }
        self.free_ids.push(ch);
        // The first pending request caused the close; later ones were
        // pipelined behind it and fail with the same error.
        for e in c.expect {
            if let Expect::TxEnd { group, .. } = e {
                self.tx_part_done(group, Some(err.clone()));
            } else if let Some(tag) = e.tag() {
                self.complete(tag, Err(err.clone()));
            }
        }
        if let Some(Incoming {
            kind: IncomingKind::GetOk { tag, .. },
            ..
        }) = c.incoming
        {
            self.complete(tag, Err(err.clone()));
        }
        for tag in c.unconfirmed.take_all() {
            self.complete(tag, Err(publishes.clone()));
        }
        if let Role::Consumer(k) = c.role {
            if let Some(t) = k.cancelling {
                self.complete(t, Err(err.clone()));
            }
            for t in k.ready_waiters {
                self.complete(t, Err(err.clone()));
            }
            if !k.ended {
                if matches!(err, Error::ConnectionClosed) {
                    // The user closed the connection: the consumer ends as
                    // asked, a value rather than an error.
                    self.events.push(Event::ConsumerEnded { tag: k.tag });
                } else {
                    self.complete(k.tag, Err(err));
                }
            }
        }
        self.dispatch_waiting();
    }

    pub(super) fn close_channel(&mut self, ch: u16) {
        let Some(c) = self.chan_opt(ch) else { return };
        if c.closing {
            return;
        }
        tr_debug!(channel = ch, "channel close");
        c.closing = true;
        let m = Method::ChannelClose(ChannelClose {
            reply_code: reply_code::REPLY_SUCCESS,
            reply_text: ShortString::from_static("done"),
            class_id: 0,
            method_id: 0,
        });
        let _ = self.send_method(ch, &m);
        self.chan(ch).expect.push_back(Expect::CloseOk);
    }
}
