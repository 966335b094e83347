//! Dispatching received frames to the connection, the channels and the replies they wait for.

use super::*;

impl Connection {
    /// The first four bytes of a `basic.deliver` payload: class 60, method 60.
    pub(super) const BASIC_DELIVER_ID: u32 = 0x003C_003C;
    /// The first four bytes of a `basic.get-ok` payload: class 60, method 71.
    pub(super) const BASIC_GET_OK_ID: u32 = 0x003C_0047;

    /// Handles one frame; a payload that does not parse is the error.
    pub(super) fn handle_frame(&mut self, f: FrameRef<'_>) -> Result<(), CodecError> {
        match (f.frame_type, f.channel) {
            (frame::FRAME_METHOD, 0) => {
                let method = Method::read(&mut f.reader())?;
                self.handle_connection_method(method);
            }
            (frame::FRAME_METHOD, ch) => {
                // The hottest method, read straight into its struct when
                // nothing about the channel needs the general path.
                let mut r = f.reader();
                match r.peek_u32() {
                    Some(Self::BASIC_DELIVER_ID) if self.plain_channel(ch) => {
                        return self.on_deliver_frame(ch, &f);
                    }
                    Some(Self::BASIC_GET_OK_ID) if self.plain_channel(ch) => {
                        if let Some(at) = self.get_waiting_at(ch) {
                            return self.on_get_ok_frame(ch, at, &f);
                        }
                    }
                    _ => {}
                }
                let method = Method::read(&mut r)?;
                self.handle_channel_method(ch, method);
            }
            (frame::FRAME_HEADER, ch) => self.handle_header(ch, f.reader())?,
            (frame::FRAME_BODY, ch) => self.handle_body(ch, f),
            _ => {}
        }
        Ok(())
    }

    pub(super) fn handle_connection_method(&mut self, method: Method) {
        match (self.state, method) {
            (State::AwaitStart, Method::ConnectionStart(start)) => self.on_start(start),
            (State::AwaitSecureOrTune, Method::ConnectionTune(tune)) => self.on_tune(tune),
            (State::AwaitSecureOrTune, Method::ConnectionSecure(_)) => {
                // PLAIN and EXTERNAL need no challenge.
                self.violation(
                    reply_code::NOT_IMPLEMENTED,
                    "NOT_IMPLEMENTED - unexpected connection.secure".into(),
                    Error::NoAuthMechanism("a challenge-response exchange".into()),
                );
            }
            (State::AwaitOpenOk, Method::ConnectionOpenOk(_)) => self.on_open_ok(),
            (_, Method::ConnectionClose(c)) => {
                let _ = self.encode_now(0, &Method::ConnectionCloseOk(ConnectionCloseOk {}));
                let reply = Reply {
                    code: c.reply_code,
                    text: c.reply_text.to_string(),
                    class_id: c.class_id,
                    method_id: c.method_id,
                    connection: true,
                };
                let err = if self.close_tag.is_some() && self.state == State::Closing {
                    Error::ConnectionClosed
                } else {
                    Error::from_reply(reply)
                };
                self.finish(err);
            }
            (State::Closing, Method::ConnectionCloseOk(_)) => {
                let e = self.dead.clone().unwrap_or(Error::ConnectionClosed);
                self.finish(e);
            }
            (State::Closing, _) => {}
            (_, Method::ConnectionBlocked(b)) => {
                self.blocked = Some(self.heard.last());
                self.stats.times_blocked += 1;
                tr_warn!(reason = %b.reason, "connection blocked by the broker");
                self.events.push(Event::Blocked(b.reason.to_string()));
            }
            (_, Method::ConnectionUnblocked(_)) => {
                self.blocked = None;
                tr_info!("connection unblocked");
                self.events.push(Event::Unblocked);
            }
            (_, Method::ConnectionUpdateSecretOk(_)) => {
                if let Some(t) = self.secret_updates.pop_front() {
                    self.complete(t, Ok(Outcome::Done));
                } else {
                    self.command_invalid("unsolicited connection.update-secret-ok".into());
                }
            }
            (_, m) => self.command_invalid(format!("{} on channel 0", m.name())),
        }
    }

    pub(super) fn handle_channel_method(&mut self, ch: u16, method: Method) {
        if matches!(self.state, State::Closing) {
            return;
        }
        if !self.state.is_live() {
            self.command_invalid(format!("{} before connection.open-ok", method.name()));
            return;
        }
        let Some(c) = self.chan_opt(ch) else {
            // "channel-error: The client attempted to work with a channel
            // that had not been correctly opened."
            let text = format!("{} on unknown channel {ch}", method.name());
            self.violation(
                reply_code::CHANNEL_ERROR,
                format!("CHANNEL_ERROR - {text}"),
                Error::ProtocolViolation(Reply::new(reply_code::CHANNEL_ERROR, text)),
            );
            return;
        };
        if c.incoming.is_some() {
            self.unexpected("method frame in the middle of content");
            return;
        }
        if c.closing {
            // After sending channel.close, "the peer MUST discard all frames
            // on the channel" except close and close-ok.
            match method {
                Method::ChannelCloseOk(_) | Method::ChannelClose(_) => {
                    if let Method::ChannelClose(_) = method {
                        let _ = self.send_method(ch, &Method::ChannelCloseOk(ChannelCloseOk {}));
                    }
                    if let Some(mut c) = self
                        .channels
                        .get_mut(usize::from(ch))
                        .and_then(Option::take)
                    {
                        // Nothing can be pending on a channel we closed
                        // ourselves but publishes: fail them.
                        let err = Error::ChannelError(Reply::new(
                            reply_code::CHANNEL_ERROR,
                            "channel closed",
                        ));
                        for tag in c.unconfirmed.take_all() {
                            self.complete(tag, Err(err.clone()));
                        }
                        if let Role::Consumer(k) = c.role {
                            if let Some(t) = k.cancelling {
                                self.complete(t, Ok(Outcome::Done));
                            }
                            for t in k.ready_waiters {
                                self.complete(t, Err(Error::UnknownPromise));
                            }
                        }
                        self.free_ids.push(ch);
                        self.dispatch_waiting();
                    }
                }
                _ => {}
            }
            return;
        }
        match method {
            Method::BasicDeliver(d) => {
                let names = Names::from_parts(
                    d.exchange.as_str(),
                    d.routing_key.as_str(),
                    d.consumer_tag.as_str(),
                );
                self.on_deliver(
                    ch,
                    d.consumer_tag.as_bytes(),
                    d.delivery_tag,
                    d.redelivered,
                    names,
                );
            }
            Method::BasicReturn(r) => {
                let message = Delivery {
                    delivery_tag: 0,
                    redelivered: false,
                    names: Names::from_parts(r.exchange.as_str(), r.routing_key.as_str(), ""),
                    message_count: None,
                    properties: BasicProperties::default(),
                    body: Bytes::new(),
                    channel: None,
                };
                let kind = IncomingKind::Return {
                    reply_code: r.reply_code,
                    reply_text: r.reply_text,
                };
                self.chan(ch).incoming = Some(Incoming::new(kind, message));
            }
            Method::BasicAck(a) => self.on_confirm(ch, a.delivery_tag, a.multiple, true),
            Method::BasicNack(n) => self.on_confirm(ch, n.delivery_tag, n.multiple, false),
            Method::BasicCancel(cancel) => self.on_server_cancel(ch, cancel),
            Method::ChannelClose(close) => {
                let _ = self.send_method(ch, &Method::ChannelCloseOk(ChannelCloseOk {}));
                let reply = Reply {
                    code: close.reply_code,
                    text: close.reply_text.to_string(),
                    class_id: close.class_id,
                    method_id: close.method_id,
                    connection: false,
                };
                tr_warn!(
                    channel = ch,
                    code = close.reply_code,
                    text = %close.reply_text,
                    "channel closed by the broker"
                );
                let caused_by_publish = (close.class_id, close.method_id)
                    == (BasicPublish::CLASS_ID, BasicPublish::METHOD_ID);
                let err = Error::from_reply(reply);
                let unreported = self.publish_channel == Some(ch)
                    && self.chan(ch).unconfirmed.is_empty()
                    && self.chan(ch).expect.iter().all(|e| e.tag().is_none());
                if unreported {
                    // Publishes without confirms already resolved: nothing
                    // else would tell the user the broker refused one.
                    self.events.push(Event::PublishChannelClosed(err.clone()));
                }
                // A publish the broker refused closes the channel; the
                // publishes before it may have been routed and the ones
                // after it were dropped, and which is which cannot be told.
                // Only a lone unconfirmed publish is known to be the one.
                let publishes = if caused_by_publish && self.chan(ch).unconfirmed.len() == 1 {
                    err.clone()
                } else {
                    err.clone().unknown_outcome()
                };
                self.fail_channel_with(ch, err, publishes);
            }
            Method::ChannelFlow(f) => {
                let _ = self.send_method(
                    ch,
                    &Method::ChannelFlowOk(ChannelFlowOk { active: f.active }),
                );
            }
            other => self.on_reply(ch, other),
        }
    }

    /// Whether a method on `ch` can skip the general checks of
    /// [`Connection::handle_channel_method`]: the connection is open and the
    /// channel open, not closing and not inside a content.
    pub(super) fn plain_channel(&self, ch: u16) -> bool {
        self.state.is_live()
            && matches!(
                self.channels.get(usize::from(ch)),
                Some(Some(c)) if !c.closing && c.incoming.is_none()
            )
    }

    /// Where the `basic.get` that a `basic.get-ok` on `ch` answers waits in
    /// the channel's queue (the first get: see [`Expect::accepts`]).
    pub(super) fn get_waiting_at(&self, ch: u16) -> Option<usize> {
        let c = self.channels.get(usize::from(ch))?.as_ref()?;
        c.expect
            .iter()
            .position(|e| matches!(e, Expect::Get { .. }))
    }

    /// A whole small `basic.get` answer in one pass, as
    /// [`Connection::whole_delivery`] takes a consumer's: `f` is a
    /// `basic.get-ok` on a plain channel whose get waits, and its content
    /// header and single body frame follow in `rest`. The message is built
    /// once and completes the get (no content slot); `rest` then moves past
    /// the frames taken.
    ///
    /// Returns false, having changed nothing, when anything differs (a
    /// message split across reads or body frames, a method that does not
    /// decode, a tag that does not rise): the general path then reports
    /// whatever is wrong.
    pub(super) fn whole_get_ok<'a>(&mut self, f: &FrameRef<'a>, rest: &mut Frames<'a>) -> bool {
        let ch = f.channel;
        if !self.plain_channel(ch) {
            return false;
        }
        let Some(at) = self.get_waiting_at(ch) else {
            return false;
        };
        let Ok(GetOkHead {
            delivery_tag,
            redelivered,
            message_count,
            names,
        }) = GetOkHead::read(f)
        else {
            return false;
        };
        if delivery_tag <= self.chan(ch).last_delivery_tag {
            return false;
        }
        let mut ahead = rest.clone();
        let Some((properties, body, frames)) =
            consumers::whole_content(&mut ahead, ch, self.config.max_message_size)
        else {
            return false;
        };
        let c = self.chan(ch);
        let Some(Expect::Get { tag, no_ack, queue }) = c.expect.remove(at) else {
            // Not reached: `get_waiting_at` found a get there.
            return false;
        };
        *rest = ahead;
        c.last_delivery_tag = delivery_tag;
        self.stats.frames_in += frames;
        let message = Delivery {
            delivery_tag,
            redelivered,
            names,
            message_count: Some(message_count),
            properties,
            body,
            channel: None,
        };
        self.get_ok_complete(ch, tag, no_ack, queue, message);
        true
    }

    /// `basic.get-ok` on a plain channel whose get waits at `at`, read in
    /// place: the names stay in the frame (see [`Names`]), as
    /// `basic.deliver`'s do.
    pub(super) fn on_get_ok_frame(
        &mut self,
        ch: u16,
        at: usize,
        f: &FrameRef<'_>,
    ) -> Result<(), CodecError> {
        let g = GetOkHead::read(f)?;
        self.on_get_ok(
            ch,
            at,
            g.delivery_tag,
            g.redelivered,
            g.message_count,
            g.names,
        );
        Ok(())
    }

    /// `basic.get-ok` answering the get at `at` of the channel's queue: the
    /// start of its message.
    pub(super) fn on_get_ok(
        &mut self,
        ch: u16,
        at: usize,
        delivery_tag: u64,
        redelivered: bool,
        message_count: u32,
        names: Names,
    ) {
        if delivery_tag <= self.chan(ch).last_delivery_tag {
            // The get stays queued, so the violation fails it too.
            self.delivery_tag_not_rising(ch, delivery_tag);
            return;
        }
        let c = self.chan(ch);
        let Some(Expect::Get { tag, no_ack, queue }) = c.expect.remove(at) else {
            return;
        };
        c.last_delivery_tag = delivery_tag;
        let message = Delivery {
            delivery_tag,
            redelivered,
            names,
            message_count: Some(message_count),
            properties: BasicProperties::default(),
            body: Bytes::new(),
            channel: None,
        };
        c.incoming = Some(Incoming::new(
            IncomingKind::GetOk { tag, no_ack, queue },
            message,
        ));
        // The channel returns to the pool when the content is in.
    }

    /// A reply to the request at the head of the channel's queue.
    pub(super) fn on_reply(&mut self, ch: u16, method: Method) {
        let c = self.chan(ch);
        // The first request this reply answers (usually the oldest: see
        // `Expect::accepts` for when it is not).
        let at = c
            .expect
            .iter()
            .position(|e| e.accepts(&method))
            .unwrap_or(0);
        let Some(expect) = c.expect.remove(at) else {
            self.command_invalid(format!("unsolicited {} on channel {ch}", method.name()));
            return;
        };
        match (expect, method) {
            (Expect::OpenOk, Method::ChannelOpenOk(_)) => {}
            (Expect::ConfirmSelectOk, Method::ConfirmSelectOk(_)) => {}
            (Expect::TxSelectOk(tag), Method::TxSelectOk(_)) => {
                if let Some(t) = tag {
                    self.on_tx_select_ok(t);
                }
            }
            (Expect::TxEnd { group, rollback }, _) => {
                let c = self.chan(ch);
                if rollback {
                    c.unsettle_rolled_back();
                } else {
                    c.tx_settled.clear();
                }
                self.tx_part_done(group, None);
            }
            (Expect::Qos(tag), Method::BasicQosOk(_)) => {
                if let Some(t) = tag {
                    self.complete(t, Ok(Outcome::Done));
                }
            }
            (Expect::ConsumeOk, Method::BasicConsumeOk(ok)) => self.on_consume_ok(ch, ok),
            (Expect::CancelOk, Method::BasicCancelOk(ok)) => {
                if let Role::Consumer(k) = &mut self.chan(ch).role {
                    k.forget(&ok.consumer_tag);
                }
                self.maybe_end_consumer(ch);
                self.maybe_close_drained_consumer(ch);
            }
            (expect @ Expect::Get { .. }, Method::BasicGetOk(ok)) => {
                // Put it back: `on_get_ok` takes it where the fast path
                // (`on_get_ok_frame`) finds it too.
                self.chan(ch).expect.insert(at, expect);
                let names = Names::from_parts(ok.exchange.as_str(), ok.routing_key.as_str(), "");
                self.on_get_ok(
                    ch,
                    at,
                    ok.delivery_tag,
                    ok.redelivered,
                    ok.message_count,
                    names,
                );
                return;
            }
            (Expect::Get { tag, .. }, Method::BasicGetEmpty(_)) => {
                self.complete(tag, Ok(Outcome::Get(None)));
            }
            (Expect::Op { tag, class, method }, m)
                if m.class_id() == class && m.method_id() == method =>
            {
                let outcome = match m {
                    Method::QueueDeclareOk(ok) => Outcome::QueueDeclared(ok),
                    Method::QueuePurgeOk(ok) => Outcome::MessageCount(ok.message_count),
                    Method::QueueDeleteOk(ok) => Outcome::MessageCount(ok.message_count),
                    _ => Outcome::Done,
                };
                self.complete(tag, Ok(outcome));
            }
            (expect, m) => {
                let text = format!("{} while waiting for {}", m.name(), expect.name());
                // Put it back so the violation fails its operation too.
                self.chan(ch).expect.insert(at, expect);
                self.command_invalid(text);
                return;
            }
        }
        self.maybe_idle(ch);
    }

    pub(super) fn on_confirm(&mut self, ch: u16, delivery_tag: u64, multiple: bool, ack: bool) {
        let Some(Some(c)) = self.channels.get_mut(usize::from(ch)) else {
            return;
        };
        if !matches!(c.role, Role::Publish) {
            self.command_invalid("basic.ack from the broker on a non-publish channel".into());
            return;
        }
        let returned = c.pending_return.take();
        let events = &mut self.events;
        let stats = &mut self.stats;
        let settle = |seq: u64, tag: Tag| {
            if ack {
                stats.confirms += 1;
            } else {
                stats.nacks_received += 1;
            }
            let result = match (ack, &returned) {
                (true, Some(reply)) if seq == delivery_tag => Err(Error::from_reply(reply.clone())),
                (true, _) => Ok(Outcome::Done),
                (false, _) => Err(Error::Nacked),
            };
            events.push_complete(tag, result);
        };
        c.unconfirmed.settle(delivery_tag, multiple, settle);
    }
}

/// A `basic.get-ok` method read in place: the names stay in the frame (see
/// [`Names`]).
struct GetOkHead {
    delivery_tag: u64,
    redelivered: bool,
    message_count: u32,
    names: Names,
}

impl GetOkHead {
    fn read(f: &FrameRef<'_>) -> Result<GetOkHead, CodecError> {
        let mut r = f.reader();
        let base = r.position();
        r.skip(4, "method id")?;
        let delivery_tag = r.u64("basic.get-ok delivery-tag")?;
        let redelivered = r.u8("basic.get-ok flags")? & 0x01 != 0;
        let exchange_at = r.position() - base;
        r.shortstr_bytes("basic.get-ok exchange")?;
        let routing_key_at = r.position() - base;
        r.shortstr_bytes("basic.get-ok routing-key")?;
        let message_count = r.u32("basic.get-ok message-count")?;
        Ok(GetOkHead {
            delivery_tag,
            redelivered,
            message_count,
            // No consumer tag: an offset past any frame reads as empty.
            names: Names::in_frame(f.payload(), usize::MAX, exchange_at, routing_key_at),
        })
    }
}
