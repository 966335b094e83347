//! Ending the connection: graceful close (draining), close now, violations, and failing what is pending.

use super::*;

impl Connection {
    /// The peer closed its side (a read returned 0).
    pub fn handle_eof(&mut self) {
        self.handle_io_error(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed by peer",
        ));
    }

    /// The socket failed: every pending operation fails with
    /// [`Error::ConnectionBroken`].
    pub fn handle_io_error(&mut self, e: io::Error) {
        if self.state == State::Closing && self.close_tag.is_some() && self.dead.is_none() {
            // The broker may drop the socket right after close-ok.
            self.finish(Error::ConnectionClosed);
            return;
        }
        if self.state == State::AwaitSecureOrTune
            && e.kind() == io::ErrorKind::UnexpectedEof
            && !self.server_capability("authentication_failure_close")
        {
            // Brokers without authentication_failure_close drop the socket
            // after a bad login. (With it, as RabbitMQ has, a refused login
            // comes as connection.close 403: an end of stream is just a
            // broken connection.)
            self.finish(Error::AccessRefused(Reply {
                connection: true,
                ..Reply::new(
                    reply_code::ACCESS_REFUSED,
                    "connection closed during authentication (bad credentials?)",
                )
            }));
            return;
        }
        self.finish(Error::io(e));
    }

    /// No transport could be set up (the caller's connect failed at every
    /// address): the connection ends with `err`, the caller's account of
    /// it (e.g. [`Error::ConnectTimeout`]). Nothing is held
    /// ([`OnHandshakeFailure::Hold`]): there is no address left to move on
    /// to.
    pub fn handle_connect_failure(&mut self, err: Error) {
        if self.state == State::HandshakeFailed {
            self.release_held();
            return;
        }
        if self.state.is_over() {
            return;
        }
        let err = self.dead.clone().unwrap_or(err);
        self.end_with(err);
    }

    /// Closes the connection gracefully. New operations are refused at once;
    /// the replies and publisher confirms of those in flight are awaited,
    /// then `connection.close` goes out and `tag` completes on `close-ok`.
    /// `timeout` bounds the whole: what is still unsettled when it passes
    /// fails with [`Error::OutcomeUnknown`], and the connection is closed.
    /// Consumers end with [`Event::ConsumerEnded`].
    pub fn close(&mut self, tag: Tag, now: Instant, timeout: Duration) {
        tr_info!(?timeout, "closing gracefully");
        if self.state == State::Open {
            self.state = State::Draining {
                tag,
                deadline: now + timeout,
            };
            self.poll_drain(now);
            return;
        }
        self.close_now(tag, now, timeout);
    }

    /// Closes the connection without waiting for operations in flight:
    /// `connection.close` goes out now, and `tag` completes on `close-ok`
    /// (or when `timeout` passes). Unconfirmed publishes then fail with
    /// [`Error::OutcomeUnknown`], other pending operations with
    /// [`Error::ConnectionClosed`].
    pub fn close_now(&mut self, tag: Tag, now: Instant, timeout: Duration) {
        tr_info!("closing now");
        if self.state == State::HandshakeFailed {
            self.release_held();
        }
        match self.state {
            State::Draining { tag: first, .. } => {
                // The first close gives up waiting; it completes with this.
                self.close_tag = Some(first);
                self.send_connection_close(reply_code::REPLY_SUCCESS, "bye", 0, 0);
                self.close_deadline = Some(now + timeout);
                self.complete(tag, Ok(Outcome::Done));
            }
            State::Closed => {
                let result = match &self.dead {
                    Some(Error::ConnectionClosed) | None => Ok(Outcome::Done),
                    Some(e) => Err(e.clone()),
                };
                self.complete(tag, result);
            }
            State::Closing => {
                if self.close_tag.is_none() {
                    self.close_tag = Some(tag);
                } else {
                    self.complete(tag, Ok(Outcome::Done));
                }
            }
            State::AwaitStart => {
                // Nothing negotiated yet: just drop the socket.
                self.close_tag = Some(tag);
                self.finish(Error::ConnectionClosed);
            }
            _ => {
                self.close_tag = Some(tag);
                self.send_connection_close(reply_code::REPLY_SUCCESS, "bye", 0, 0);
                self.close_deadline = Some(now + timeout);
            }
        }
    }

    /// Whether an operation (other than a consumer's stream) waits for the
    /// broker: a reply, a publisher confirm, or the write of a publish.
    pub(super) fn has_outstanding(&self) -> bool {
        if !self.flush_marks.is_empty()
            || !self.deferred_marks.is_empty()
            || !self.tx_groups.is_empty()
            || !self.waiting.is_empty()
            || !self.secret_updates.is_empty()
        {
            return true;
        }
        self.channels.iter().flatten().any(|c| {
            !c.unconfirmed.is_empty()
                || c.expect.iter().any(|e| e.tag().is_some())
                || matches!(
                    c.incoming,
                    Some(Incoming {
                        kind: IncomingKind::GetOk { .. },
                        ..
                    })
                )
                || matches!(&c.role, Role::Consumer(k) if k.cancelling.is_some())
        })
    }

    /// A graceful close: once nothing is outstanding (or at the deadline,
    /// failing what still is with an unknown outcome), `connection.close`.
    pub(super) fn poll_drain(&mut self, now: Instant) {
        let State::Draining { tag, deadline } = self.state else {
            return;
        };
        if now < deadline && self.has_outstanding() {
            return;
        }
        let unknown = Error::ConnectionClosed.unknown_outcome();
        for id in 0..self.channels.len() {
            let Some(c) = self.channels[id].as_mut() else {
                continue;
            };
            let mut tags: Vec<Tag> = c.unconfirmed.take_all().collect();
            c.expect.retain(|e| match e.tag() {
                Some(t) => {
                    tags.push(t);
                    false
                }
                None => true,
            });
            if let Some(Incoming {
                kind: IncomingKind::GetOk { tag, .. },
                ..
            }) = c.incoming
            {
                tags.push(tag);
                c.incoming = None;
            }
            if let Role::Consumer(k) = &mut c.role {
                tags.extend(k.cancelling.take());
            }
            for t in tags {
                self.complete(t, Err(unknown.clone()));
            }
        }
        for (_, t) in std::mem::take(&mut self.flush_marks) {
            self.complete(t, Err(unknown.clone()));
        }
        for g in std::mem::take(&mut self.tx_groups) {
            self.complete(g.tag, Err(unknown.clone()));
        }
        for t in std::mem::take(&mut self.secret_updates) {
            self.complete(t, Err(unknown.clone()));
        }
        // Never sent: these certainly did not happen.
        self.fail_waiting(Error::ConnectionClosed);
        self.close_tag = Some(tag);
        self.send_connection_close(reply_code::REPLY_SUCCESS, "bye", 0, 0);
        self.close_deadline = Some(if now < deadline {
            deadline
        } else {
            now + CLOSE_OK_GRACE
        });
    }

    /// A graceful close cut short (by the broker, a violation, the socket):
    /// its tag completes as a pending close.
    pub(super) fn adopt_draining_tag(&mut self) {
        if let State::Draining { tag, .. } = self.state {
            if self.close_tag.is_none() {
                self.close_tag = Some(tag);
            }
        }
    }

    pub(super) fn send_connection_close(
        &mut self,
        code: u16,
        text: &str,
        class_id: u16,
        method_id: u16,
    ) {
        self.adopt_draining_tag();
        // Acks the user made go out before the close, or the broker ignores
        // them and requeues the messages.
        self.emit_pending_acks();
        let m = Method::ConnectionClose(ConnectionClose {
            reply_code: code,
            reply_text: ShortString::from(truncate_utf8(text, 255)),
            class_id,
            method_id,
        });
        self.state = State::Closing;
        let _ = self.encode_now(0, &m);
    }

    /// The peer broke the protocol: close the connection with `code` and
    /// fail everything with `err` now (not waiting for close-ok).
    pub(super) fn violation(&mut self, code: u16, text: String, err: Error) {
        tr_error!(code, text = %text, "protocol violation by the peer; closing");
        if matches!(
            self.state,
            State::Closing | State::Closed | State::HandshakeFailed
        ) {
            self.finish(err);
            return;
        }
        if self.holds_on_failure() {
            // The close is queued for the caller to write before it drops
            // this socket; no close-ok is awaited.
            self.send_connection_close(code, &text, 0, 0);
            self.hold(err);
            return;
        }
        self.send_connection_close(code, &text, 0, 0);
        self.fail_all(err.clone());
        self.dead = Some(err);
        // Wait briefly for close-ok so the close reaches the peer; the
        // caller's flush sends it.
        self.close_deadline = Some(self.heard.last() + Duration::from_secs(1));
    }

    pub(super) fn fail_all(&mut self, err: Error) {
        // Publishes sent and not confirmed may have been routed: their
        // outcome is unknown. (Before open-ok nothing was sent.)
        let sent = self.connect_tag.is_none();
        if let Some(t) = self.connect_tag.take() {
            self.complete(t, Err(err.clone()));
        }
        let publishes = if sent {
            err.clone().unknown_outcome()
        } else {
            err.clone()
        };
        for id in 0..self.channels.len() {
            self.fail_channel_with(id as u16, err.clone(), publishes.clone());
        }
        self.idle.clear();
        self.publish_channel = None;
        for (_, tag) in std::mem::take(&mut self.flush_marks) {
            self.complete(tag, Err(err.clone()));
        }
        for (_, tag) in std::mem::take(&mut self.deferred_marks) {
            self.complete(tag, Err(err.clone()));
        }
        self.fail_waiting(err.clone());
        for t in std::mem::take(&mut self.secret_updates) {
            self.complete(t, Err(err.clone()));
        }
        self.deferred.clear();
    }

    /// The connection is over: fail everything with `err`, complete a
    /// pending close, and report [`Event::Closed`].
    pub(super) fn finish(&mut self, err: Error) {
        if self.state.is_over() {
            return;
        }
        let err = self.dead.clone().unwrap_or(err);
        if self.holds_on_failure() {
            self.hold(err);
            return;
        }
        self.end_with(err);
    }

    /// Whether a failure now keeps the queued work
    /// ([`OnHandshakeFailure::Hold`]): the handshake is not done (so
    /// nothing of that work was sent) and the user is not closing.
    fn holds_on_failure(&self) -> bool {
        self.config.on_handshake_failure == OnHandshakeFailure::Hold
            && matches!(
                self.state,
                State::AwaitStart | State::AwaitSecureOrTune | State::AwaitOpenOk
            )
            && self.close_tag.is_none()
    }

    /// The handshake failed with `err`: the queued work is kept for
    /// another socket ([`Event::HandshakeFailed`]).
    fn hold(&mut self, err: Error) {
        tr_warn!(error = %err, "handshake failed; queued work held");
        self.state = State::HandshakeFailed;
        self.dead = Some(err.clone());
        self.read_buf.clear();
        self.events.push(Event::HandshakeFailed(err));
    }

    /// Fails everything with `err` and reports [`Event::Closed`].
    fn end_with(&mut self, err: Error) {
        if matches!(err, Error::ConnectionClosed) {
            tr_info!("connection closed");
        } else {
            tr_warn!(error = %err, "connection closed");
        }
        self.adopt_draining_tag();
        self.state = State::Closed;
        self.fail_all(err.clone());
        if let Some(t) = self.close_tag.take() {
            let r = match err {
                Error::ConnectionClosed => Ok(Outcome::Done),
                ref e => Err(e.clone()),
            };
            self.complete(t, r);
        }
        self.dead = Some(err.clone());
        self.read_buf.clear();
        self.events.push(Event::Closed(err));
    }

    /// After [`Event::HandshakeFailed`]: starts the handshake over (on the
    /// caller's new socket), keeping the work queued before it, which goes
    /// out once this handshake is done. The protocol header is queued; the
    /// handshake deadline starts at `now`. Does nothing in any other state.
    pub fn restart_handshake(&mut self, now: Instant) {
        if self.state != State::HandshakeFailed {
            return;
        }
        self.state = State::AwaitStart;
        self.dead = None;
        self.read_buf.clear();
        // Only the failed handshake's own frames can be here: the queued
        // work waits in `deferred` until open-ok.
        self.write_buf.clear();
        self.write_buf.extend_from_slice(&frame::PROTOCOL_HEADER);
        self.tuned = Tuned {
            channel_max: negotiate::DEFAULT_CHANNEL_MAX,
            frame_max: FRAME_MIN_SIZE,
            heartbeat: 0,
        };
        self.server_properties = FieldTable::new();
        self.heard = Heard::At(now);
        self.beat = Beat::Off;
        self.handshake_deadline = self.config.connect_timeout.map(|t| now + t);
        self.close_deadline = None;
        self.blocked = None;
    }

    /// After [`Event::HandshakeFailed`]: gives up, failing the held work
    /// with the handshake's error ([`Event::Closed`] follows). Does nothing
    /// in any other state.
    pub fn release_held(&mut self) {
        if self.state != State::HandshakeFailed {
            return;
        }
        let err = self.dead.take().unwrap_or(Error::ConnectionClosed);
        self.end_with(err);
    }

    pub(super) fn unexpected(&mut self, what: &str) {
        self.violation(
            reply_code::UNEXPECTED_FRAME,
            format!("UNEXPECTED_FRAME - {what}"),
            Error::ProtocolViolation(Reply::new(reply_code::UNEXPECTED_FRAME, what)),
        );
    }

    pub(super) fn command_invalid(&mut self, what: String) {
        self.violation(
            reply_code::COMMAND_INVALID,
            format!("COMMAND_INVALID - {what}"),
            Error::ProtocolViolation(Reply::new(reply_code::COMMAND_INVALID, what)),
        );
    }
}
