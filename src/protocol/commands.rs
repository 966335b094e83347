//! The operations a caller starts: pooled RPCs, `basic.get`, publishes, consumers, qos, recover, secret updates.

use super::*;

impl Connection {
    /// Runs a synchronous exchange or queue method on a pooled channel:
    /// `exchange.declare/delete/bind/unbind`, `queue.declare/bind/unbind/
    /// purge/delete`. `tag` completes with the reply.
    pub fn rpc(&mut self, tag: Tag, mut method: Method) {
        if self.refuse(tag) {
            return;
        }
        // Every operation completes on its reply, so none is sent no-wait.
        match &mut method {
            Method::ExchangeDeclare(m) => m.no_wait = false,
            Method::ExchangeDelete(m) => m.no_wait = false,
            Method::ExchangeBind(m) => m.no_wait = false,
            Method::ExchangeUnbind(m) => m.no_wait = false,
            Method::QueueDeclare(m) => m.no_wait = false,
            Method::QueueBind(m) => m.no_wait = false,
            Method::QueuePurge(m) => m.no_wait = false,
            Method::QueueDelete(m) => m.no_wait = false,
            _ => {}
        }
        if pool_reply(&method).is_none() {
            self.complete(
                tag,
                Err(Error::InvalidArgument(CodecError::InvalidValue(
                    "not a pooled-channel method",
                ))),
            );
            return;
        }
        match self.take_pooled_channel() {
            Some(ch) => self.send_rpc(ch, tag, method),
            None => self.wait_for_channel(Waiting::Rpc { tag, method }),
        }
    }

    /// Sends a pooled-channel method on `ch`; `tag` completes with the reply.
    pub(super) fn send_rpc(&mut self, ch: u16, tag: Tag, method: Method) {
        let reply = pool_reply(&method).unwrap_or_default();
        let class = method.class_id();
        if self.send_method(ch, &method).is_err() {
            self.release_on_encode_error(ch, tag);
            return;
        }
        self.chan(ch).expect.push_back(Expect::Op {
            tag,
            class,
            method: reply,
        });
    }

    /// `basic.get` on a pooled channel; completes with [`Outcome::Get`].
    pub fn basic_get(&mut self, tag: Tag, queue: &str, no_ack: bool) {
        if self.refuse(tag) {
            return;
        }
        // A message that needs an ack pins its channel until it is settled
        // (a channel error would take the message back): while a
        // transaction is selected the get runs on the transactional publish
        // channel; otherwise on the channel already holding messages of this
        // queue, or on a pooled one.
        let channel = if self.tx == TxState::Active && !no_ack {
            self.publish_channel()
        } else {
            // (Most gets find no message held: the map is empty.)
            let held = (!no_ack && !self.held_gets.is_empty())
                .then(|| self.held_gets.get(&QueueKey::of(queue)).copied())
                .flatten();
            match held {
                Some(ch) => Some(ch),
                None => self.take_pooled_channel(),
            }
        };
        match channel {
            Some(ch) => self.send_get(ch, tag, queue, no_ack),
            None => self.wait_for_channel(Waiting::Get {
                tag,
                queue: ShortString::from(queue),
                no_ack,
            }),
        }
    }

    pub(super) fn send_get(&mut self, ch: u16, tag: Tag, queue: &str, no_ack: bool) {
        // As `send_method` does: a coalesced ack of this channel goes first.
        self.emit_pending_ack(ch);
        if frame::encode_basic_get(self.out(), ch, queue, no_ack).is_err() {
            self.release_on_encode_error(ch, tag);
            return;
        }
        self.stats.frames_out += 1;
        self.chan(ch).expect.push_back(Expect::Get {
            tag,
            no_ack,
            queue: QueueKey::of(queue),
        });
    }

    /// Publishes a message on the publish channel. With confirms, `tag`
    /// completes on the broker's ack (or fails on a nack, or with
    /// [`Error::NoRoute`] for a returned mandatory message); without, once
    /// the frames are handed to the socket.
    #[allow(clippy::too_many_arguments)]
    pub fn publish(
        &mut self,
        tag: Tag,
        exchange: &str,
        routing_key: &str,
        mandatory: bool,
        immediate: bool,
        properties: &BasicProperties,
        body: &[u8],
    ) {
        if self.refuse(tag) {
            return;
        }
        // RabbitMQ's direct reply-to: a request naming the pseudo-queue must
        // go on the channel that consumes from it (never in confirm mode).
        let direct = properties.reply_to() == Some(DIRECT_REPLY_TO);
        let channel = if direct {
            self.direct_reply_channel()
        } else {
            self.publish_channel()
        };
        let Some(ch) = channel else {
            self.complete(tag, Err(self.no_channel_error()));
            return;
        };
        let open = self.state.is_live();
        let frame_max = self.tuned.frame_max;
        let out = if open {
            &mut self.write_buf
        } else {
            &mut self.deferred
        };
        if let Err(e) = frame::encode_basic_publish(
            out,
            ch,
            exchange,
            routing_key,
            mandatory,
            immediate,
            properties,
            body,
            frame_max,
        ) {
            self.complete(tag, Err(Error::InvalidArgument(e)));
            return;
        }
        let chunk = frame_max.saturating_sub(8).max(1) as usize;
        self.stats.publishes += 1;
        self.stats.frames_out += 2 + body.len().div_ceil(chunk) as u64;
        self.beat.note_sent();
        let confirms = self.confirm == ConfirmMode::Confirmed && self.tx == TxState::Off && !direct;
        if confirms {
            self.chan(ch).unconfirmed.push(tag);
        } else if open {
            let pos = self.written_total + self.write_buf.len() as u64;
            self.flush_marks.push_back((pos, tag));
        } else {
            self.deferred_marks.push((self.deferred.len(), tag));
        }
    }

    /// Starts a consumer over one or more queues on a channel of its own.
    /// Deliveries come as [`Event::Delivery`] with `tag`; the consumer ends
    /// with an [`Event::Complete`] carrying an error (the broker cancelled
    /// it, or its channel or the connection closed) or with
    /// [`Event::ConsumerEnded`] after [`Connection::cancel`].
    pub fn consume(
        &mut self,
        tag: Tag,
        queues: Vec<ConsumeQueue>,
        no_ack: bool,
        prefetch_count: u16,
    ) {
        self.consume_with_channel_qos(tag, queues, no_ack, prefetch_count, None);
    }

    /// As [`Connection::consume`], with a channel-wide prefetch window
    /// (`basic.qos` with `global` set: `(prefetch_size, prefetch_count)`)
    /// sent on the new channel before the consumer starts — what a
    /// recovery restores after [`Connection::qos`] with `global`. A refusal
    /// closes the channel: the consumer fails with it.
    pub fn consume_with_channel_qos(
        &mut self,
        tag: Tag,
        queues: Vec<ConsumeQueue>,
        no_ack: bool,
        prefetch_count: u16,
        channel_qos: Option<(u32, u16)>,
    ) {
        if self.refuse(tag) {
            return;
        }
        // RabbitMQ answers a consumer tag used twice on one channel with
        // 530 NOT_ALLOWED, which closes the whole connection: refuse it here,
        // before anything is sent.
        for (i, q) in queues.iter().enumerate() {
            if !q.consumer_tag.is_empty()
                && queues[..i].iter().any(|p| p.consumer_tag == q.consumer_tag)
            {
                self.complete(
                    tag,
                    Err(Error::InvalidArgument(CodecError::InvalidValue(
                        "the same consumer tag is given for two queues of one consumer",
                    ))),
                );
                return;
            }
        }
        if queues.is_empty() {
            self.complete(
                tag,
                Err(Error::InvalidArgument(CodecError::InvalidValue(
                    "a consumer needs at least one queue",
                ))),
            );
            return;
        }
        let mut consumer = Consumer::new(tag, no_ack);
        // A channel-wide window makes the one the broker applies unsure:
        // acks are not deferred (as after `qos`).
        consumer.prefetch = if channel_qos.is_some() {
            1
        } else {
            prefetch_count
        };
        consumer.direct_reply_to = queues.iter().any(|q| q.queue == DIRECT_REPLY_TO);
        let Some(ch) = self.open_channel(Role::Consumer(consumer)) else {
            self.complete(tag, Err(self.no_channel_error()));
            return;
        };
        if self.tx == TxState::Active && !no_ack {
            // Acks are transactional like publishes while a transaction is
            // selected (see `tx_select`).
            self.select_tx(ch);
        }
        if let Some((prefetch_size, count)) = channel_qos {
            let m = Method::BasicQos(BasicQos {
                prefetch_size,
                prefetch_count: count,
                global: true,
            });
            let _ = self.send_method(ch, &m);
            self.chan(ch).expect.push_back(Expect::Qos(None));
        }
        if prefetch_count > 0 {
            let m = Method::BasicQos(BasicQos {
                prefetch_size: 0,
                prefetch_count,
                global: false,
            });
            let _ = self.send_method(ch, &m);
            self.chan(ch).expect.push_back(Expect::Qos(None));
        }
        let epoch = self.chan(ch).epoch;
        for (i, q) in queues.into_iter().enumerate() {
            // Every queue gets a tag chosen here, so the consume-ok (which
            // RabbitMQ may send out of order) and a later server cancel name
            // the queue they are about.
            let consumer_tag = if q.consumer_tag.is_empty() {
                ShortString::from(format!("puka.ctag-{epoch:08x}.{i}"))
            } else {
                q.consumer_tag
            };
            let m = Method::BasicConsume(BasicConsume {
                queue: q.queue.clone(),
                consumer_tag: consumer_tag.clone(),
                no_local: q.no_local,
                no_ack,
                exclusive: q.exclusive,
                no_wait: false,
                arguments: q.arguments,
            });
            if let Err(e) = self.send_method(ch, &m) {
                self.fail_channel(ch, Error::InvalidArgument(e));
                return;
            }
            let c = self.chan(ch);
            c.expect.push_back(Expect::ConsumeOk);
            if let Role::Consumer(k) = &mut c.role {
                k.pending.push_back(TagQueue {
                    tag: consumer_tag,
                    queue: q.queue,
                });
            }
        }
    }

    /// Completes `tag` with [`Outcome::ConsumerTags`] once every queue of the
    /// consumer started by `consume_tag` is registered at the broker (its
    /// `basic.consume-ok` arrived), or fails it when the consumer fails
    /// first.
    pub fn consumer_ready(&mut self, tag: Tag, consume_tag: Tag) {
        if self.refuse(tag) {
            return;
        }
        let Some(ch) = self.consumer_channel(consume_tag) else {
            self.complete(tag, Err(Error::UnknownPromise));
            return;
        };
        let Role::Consumer(k) = &mut self.chan(ch).role else {
            return;
        };
        if k.ended {
            self.complete(tag, Err(Error::UnknownPromise));
        } else if k.pending.is_empty() {
            let tags = k.tags.iter().map(|t| t.tag.clone()).collect();
            self.complete(tag, Ok(Outcome::ConsumerTags(tags)));
        } else {
            k.ready_waiters.push(tag);
        }
    }

    /// Cancels the consumer started by `consume_tag`; `tag` completes when
    /// the broker confirms, and the consumer then ends with
    /// [`Event::ConsumerEnded`].
    pub fn cancel(&mut self, tag: Tag, consume_tag: Tag) {
        if self.refuse(tag) {
            return;
        }
        let Some(ch) = self.consumer_channel(consume_tag) else {
            self.complete(tag, Err(Error::UnknownPromise));
            return;
        };
        let tags = match &mut self.chan(ch).role {
            Role::Consumer(c) if c.cancelling.is_some() || c.ended => {
                // Already cancelled or being cancelled: nothing to send.
                self.complete(tag, Ok(Outcome::Done));
                return;
            }
            Role::Consumer(c) => {
                tr_debug!(channel = ch, "consumer cancel");
                c.cancelling = Some(tag);
                c.tags.iter().map(|t| t.tag.clone()).collect()
            }
            _ => Vec::new(),
        };
        // Consumers whose consume-ok has not arrived yet are cancelled when
        // it does (see on_consume_ok).
        for ctag in tags {
            let m = Method::BasicCancel(BasicCancel {
                consumer_tag: ctag,
                no_wait: false,
            });
            let _ = self.send_method(ch, &m);
            self.chan(ch).expect.push_back(Expect::CancelOk);
        }
        self.maybe_end_consumer(ch);
    }

    /// `basic.qos` on the channel of the consumer started by `consume_tag`.
    pub fn qos(
        &mut self,
        tag: Tag,
        consume_tag: Tag,
        prefetch_size: u32,
        prefetch_count: u16,
        global: bool,
    ) {
        if self.refuse(tag) {
            return;
        }
        let Some(ch) = self.consumer_channel(consume_tag) else {
            self.complete(tag, Err(Error::UnknownPromise));
            return;
        };
        let m = Method::BasicQos(BasicQos {
            prefetch_size,
            prefetch_count,
            global,
        });
        let _ = self.send_method(ch, &m);
        let c = self.chan(ch);
        c.expect.push_back(Expect::Qos(Some(tag)));
        if let Role::Consumer(k) = &mut c.role {
            // The window the broker applies is no longer known for sure:
            // acks on this channel are no longer deferred.
            k.prefetch = 1;
        }
    }

    /// `basic.recover` on the channel of the consumer started by
    /// `consume_tag`: the broker redelivers its unacknowledged messages.
    pub fn recover(&mut self, tag: Tag, consume_tag: Tag, requeue: bool) {
        if self.refuse(tag) {
            return;
        }
        let Some(ch) = self.consumer_channel(consume_tag) else {
            self.complete(tag, Err(Error::UnknownPromise));
            return;
        };
        let m = Method::BasicRecover(BasicRecover { requeue });
        let _ = self.send_method(ch, &m);
        let c = self.chan(ch);
        c.unacked.clear();
        c.expect.push_back(Expect::Op {
            tag,
            class: CLASS_BASIC,
            method: BasicRecoverOk::METHOD_ID,
        });
    }

    /// `connection.update-secret` (RabbitMQ 3.10+): replaces the secret
    /// the connection authenticated with (a refreshed OAuth 2 token); `tag`
    /// completes on `update-secret-ok`. A secret the broker refuses closes
    /// the connection (RabbitMQ: 530 `NOT_ALLOWED`).
    pub fn update_secret(&mut self, tag: Tag, new_secret: &str, reason: &str) {
        if self.refuse(tag) {
            return;
        }
        if !self.state.is_live() {
            self.complete(
                tag,
                Err(Error::InvalidArgument(CodecError::InvalidValue(
                    "update_secret needs an open connection",
                ))),
            );
            return;
        }
        let m = Method::ConnectionUpdateSecret(ConnectionUpdateSecret {
            new_secret: Bytes::copy_from_slice(new_secret.as_bytes()),
            reason: ShortString::from(truncate_utf8(reason, 255)),
        });
        if let Err(e) = self.encode_out(0, &m) {
            self.complete(tag, Err(Error::InvalidArgument(e)));
            return;
        }
        self.config.password = new_secret.to_string();
        self.secret_updates.push_back(tag);
    }

    pub(super) fn refuse(&mut self, tag: Tag) -> bool {
        let err = match self.state {
            State::Closed | State::Closing | State::Draining { .. } => {
                self.dead.clone().unwrap_or(Error::ConnectionClosed)
            }
            _ => return false,
        };
        self.complete(tag, Err(err));
        true
    }
}
