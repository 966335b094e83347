//! The handshake: `connection.start` to `open-ok`, mechanism and tune negotiation.

use super::*;

impl Connection {
    /// Before `connection.start`, a server sends a method frame or (when it
    /// cannot speak 0-9-1) a protocol header; anything else is not AMQP.
    /// Returns false when decoding must wait or stop.
    pub(super) fn not_amqp_check(&mut self) -> bool {
        let first = match self.read_buf.first() {
            None => return false,
            Some(&b) => b,
        };
        if first == frame::FRAME_METHOD || first == b'A' {
            return true;
        }
        if self.read_buf.len() < 8 {
            return false;
        }
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.read_buf[..8]);
        self.read_buf.clear();
        let e = CodecError::NotAmqp(head);
        self.violation(e.reply_code(), e.to_string(), Error::Protocol(e));
        false
    }

    /// Whether the broker's `connection.start` advertised `capability`.
    pub(super) fn server_capability(&self, capability: &str) -> bool {
        self.server_properties
            .get("capabilities")
            .and_then(|c| c.as_table())
            .and_then(|c| c.get(capability))
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }

    pub(super) fn on_start(&mut self, start: ConnectionStart) {
        // "If the server cannot support the protocol specified in the
        // protocol header, it MUST respond with a valid protocol header and
        // then close the socket" — and a client seeing another version in
        // connection.start must not go on.
        if (start.version_major, start.version_minor) != (0, 9) {
            self.violation(
                reply_code::NOT_IMPLEMENTED,
                "NOT_IMPLEMENTED - version".into(),
                Error::Protocol(CodecError::InvalidValue(
                    "server offered another AMQP version",
                )),
            );
            return;
        }
        let mechanism = match self.config.mechanism {
            Mechanism::Plain => "PLAIN",
            Mechanism::External => "EXTERNAL",
        };
        if !negotiate::offers(&start.mechanisms, mechanism) {
            let offered = String::from_utf8_lossy(&start.mechanisms).into_owned();
            self.finish(Error::NoAuthMechanism(offered));
            return;
        }
        let server_confirms = start
            .server_properties
            .get("capabilities")
            .and_then(|c| c.as_table())
            .and_then(|c| c.get("publisher_confirms"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        self.confirm = match self.publish_channel {
            // A publish channel opened before this start (its frames wait
            // for open-ok) keeps the mode it asked for — even one opened
            // before a failed handshake that is being restarted: publishes
            // must not wait for confirms its channel never selected.
            Some(ch) => {
                let selected = self
                    .chan(ch)
                    .expect
                    .iter()
                    .any(|e| matches!(e, Expect::ConfirmSelectOk));
                if selected {
                    ConfirmMode::Confirmed
                } else {
                    ConfirmMode::Plain
                }
            }
            None => match self.config.confirms {
                Confirms::On => ConfirmMode::Confirmed,
                Confirms::Auto if server_confirms => ConfirmMode::Confirmed,
                Confirms::Off | Confirms::Auto => ConfirmMode::Plain,
            },
        };
        self.server_properties = start.server_properties;
        let response = match self.config.mechanism {
            Mechanism::Plain => {
                negotiate::plain_response(&self.config.username, &self.config.password)
            }
            Mechanism::External => Vec::new(),
        };
        let m = Method::from(ConnectionStartOk {
            client_properties: negotiate::client_properties(&self.config.client_properties),
            mechanism: ShortString::from_static(mechanism),
            response: Bytes::from(response),
            locale: ShortString::from_static("en_US"),
        });
        let _ = self.encode_now(0, &m);
        self.state = State::AwaitSecureOrTune;
    }

    pub(super) fn on_tune(&mut self, tune: ConnectionTune) {
        let tuned = match negotiate::tune(
            tune.channel_max,
            tune.frame_max,
            tune.heartbeat,
            self.config.channel_max,
            self.config.frame_max,
            self.config.heartbeat,
        ) {
            Ok(t) => t,
            Err(e) => {
                self.violation(reply_code::SYNTAX_ERROR, e.to_string(), e);
                return;
            }
        };
        let ok = Method::ConnectionTuneOk(ConnectionTuneOk {
            channel_max: tuned.channel_max,
            frame_max: tuned.frame_max,
            heartbeat: tuned.heartbeat,
        });
        let _ = self.encode_now(0, &ok);
        let open = Method::ConnectionOpen(ConnectionOpen {
            virtual_host: ShortString::from(self.config.vhost.as_str()),
        });
        if let Err(e) = self.encode_now(0, &open) {
            self.finish(Error::InvalidArgument(e));
            return;
        }
        self.tuned = tuned;
        self.state = State::AwaitOpenOk;
        tr_info!(
            channel_max = tuned.channel_max,
            frame_max = tuned.frame_max,
            heartbeat = tuned.heartbeat,
            "connection tuned"
        );
    }

    pub(super) fn on_open_ok(&mut self) {
        self.state = State::Open;
        tr_info!(vhost = %self.config.vhost, confirms = self.confirms_enabled(), "connection open");
        self.handshake_deadline = None;
        // Arm the send timer now: inbound heartbeats keep moving the dead-peer
        // deadline, so that one alone would never fire it.
        if self.tuned.heartbeat > 0 {
            let interval = Duration::from_millis(u64::from(self.tuned.heartbeat) * 500);
            self.beat = Beat::Quiet(self.heard.last() + interval);
        }
        if let Some(t) = self.connect_tag.take() {
            self.complete(t, Ok(Outcome::Done));
        }
        // Channel work queued during the handshake goes out now.
        let base = self.written_total + self.write_buf.len() as u64;
        for (pos, tag) in std::mem::take(&mut self.deferred_marks) {
            self.flush_marks.push_back((base + pos as u64, tag));
        }
        let deferred = std::mem::take(&mut self.deferred);
        self.write_buf.extend_from_slice(&deferred);
    }
}
