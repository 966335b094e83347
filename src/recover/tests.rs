//! The recovery state machine against scripted servers, without sockets:
//! a loss, the backoff, a fresh `Connection`, its handshake, and the restore,
//! checking the exact frames the restore sends.

use super::*;
use crate::codec::frame::{self, Frame};
use crate::codec::method::*;
use crate::protocol::Event as ConnEvent;
use bytes::BytesMut;
use std::io;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn server_properties() -> crate::codec::FieldTable {
    use crate::codec::{FieldTable, FieldValue};
    let caps = FieldTable::from([
        ("publisher_confirms", FieldValue::from(true)),
        ("consumer_cancel_notify", FieldValue::from(true)),
        ("authentication_failure_close", FieldValue::from(true)),
    ]);
    FieldTable::from([("capabilities", FieldValue::from(caps))])
}

/// A client's side (a `Connection` and the recoverer, pumped the way the
/// `Client` does) against a scripted server that answers frame by frame.
struct Harness {
    conn: Connection,
    rec: Recoverer,
    now: Instant,
    /// Frames the client sent, decoded, since the last `take_sent`.
    sent: Vec<(u16, Method)>,
    /// Results that reached "promises".
    results: Vec<(Tag, Result<Outcome, Error>)>,
    events: Vec<Event>,
    /// Whether the connection ended and recovery did not take over.
    closed: Option<Error>,
    out: BytesMut,
}

const CONNECT: Tag = 1 << 32;

impl Harness {
    fn new(policy: Recovery) -> Harness {
        Harness::with_config(policy, crate::protocol::Config::default())
    }

    fn with_config(policy: Recovery, config: crate::protocol::Config) -> Harness {
        let now = Instant::now();
        let mut h = Harness {
            conn: Connection::new(config, CONNECT, now),
            rec: Recoverer::new(policy, 7),
            now,
            sent: Vec::new(),
            results: Vec::new(),
            events: Vec::new(),
            closed: None,
            out: BytesMut::new(),
        };
        h.handshake();
        h.rec.handle_connected();
        h.take_sent();
        h
    }

    /// A harness whose client declared the queue `q` (answered).
    fn with_queue_q() -> Harness {
        let mut h = Harness::new(Recovery::default());
        h.declare(user(1), QueueDeclare::named("q").into());
        let (ch, _) = h.expect("queue.declare");
        h.server(ch, declare_ok("q"));
        h.take_sent();
        h
    }

    /// A harness reconnected after a loss, the restore's declare of the
    /// queue `q` sent and not answered.
    fn restoring_queue_q() -> Harness {
        let mut h = Harness::with_queue_q();
        h.lose();
        h.advance().expect("a reconnection");
        h.handshake();
        h.expect("queue.declare");
        h
    }

    /// How many `Restored` were reported.
    fn restored_count(&self) -> usize {
        let restored = |e: &&Event| matches!(e, Event::Restored);
        self.events.iter().filter(restored).count()
    }

    /// The bytes the client wrote, decoded into method frames.
    fn pump_out(&mut self) {
        let mut buf = Vec::new();
        while self.conn.wants_write() {
            if self.conn.write_to(&mut buf).is_err() {
                break;
            }
        }
        self.out.extend_from_slice(&buf);
        if self.out.starts_with(b"AMQP") {
            let _ = self.out.split_to(8);
        }
        let mut opened = Vec::new();
        while let Ok(Some(f)) = frame::decode(&mut self.out, 1 << 20) {
            match f {
                // Channels open at once: what goes on them is the point.
                Frame::Method {
                    channel,
                    method: Method::ChannelOpen(_),
                } => opened.push(channel),
                Frame::Method { channel, method } => self.sent.push((channel, method)),
                _ => {}
            }
        }
        for ch in opened {
            let mut b = BytesMut::new();
            frame::encode_method(&mut b, ch, &Method::ChannelOpenOk(ChannelOpenOk {})).unwrap();
            self.conn.handle_bytes(&b);
            self.conn.handle_input(self.now);
            self.pump_out();
        }
    }

    /// Hands the connection's events to the recoverer, as the client does.
    fn drain(&mut self) {
        self.pump_out();
        while let Some(ev) = self.conn.poll_event() {
            match ev {
                ConnEvent::Complete { tag, result } => {
                    if let Some(r) = self
                        .rec
                        .handle_complete(tag, result, &mut self.conn, self.now)
                    {
                        self.results.push((tag, r));
                    }
                }
                ConnEvent::ConsumerEnded { tag } => self.rec.consumer_ended(tag),
                ConnEvent::Closed(e) if !self.rec.handle_loss(&e, false, self.now) => {
                    self.closed = Some(e);
                }
                _ => {}
            }
        }
        while let Some(e) = self.rec.poll_event() {
            self.events.push(e);
        }
        self.pump_out();
    }

    /// The server sends `m` on `ch`.
    fn server(&mut self, ch: u16, m: Method) {
        let mut b = BytesMut::new();
        frame::encode_method(&mut b, ch, &m).unwrap();
        self.conn.handle_bytes(&b);
        self.conn.handle_input(self.now);
        self.drain();
    }

    fn handshake(&mut self) {
        self.drain();
        self.server(
            0,
            Method::ConnectionStart(ConnectionStart {
                version_major: 0,
                version_minor: 9,
                server_properties: server_properties(),
                mechanisms: bytes::Bytes::from_static(b"PLAIN"),
                locales: bytes::Bytes::from_static(b"en_US"),
            }),
        );
        self.server(
            0,
            Method::ConnectionTune(ConnectionTune {
                channel_max: 2047,
                frame_max: 131_072,
                heartbeat: 0,
            }),
        );
        self.server(0, Method::ConnectionOpenOk(ConnectionOpenOk {}));
        // The handshake's own frames are not what the tests look at.
        self.sent.retain(|(ch, _)| *ch != 0);
    }

    /// Selects transaction mode as `tag` (recorded), answered.
    fn select_tx(&mut self, tag: Tag) {
        self.rec.note_tx_select(tag);
        self.conn.tx_select(tag);
        self.drain();
        let (ch, _) = self.expect("tx.select");
        self.server(ch, Method::TxSelectOk(TxSelectOk {}));
    }

    /// Publishes `body` to the queue `q` (through the default exchange).
    fn publish(&mut self, tag: Tag, body: &'static [u8]) {
        let props = crate::codec::BasicProperties::default();
        self.conn.publish(tag, "", "q", false, false, &props, body);
    }

    /// No `RecoveryFailed` was reported.
    fn assert_no_recovery_failed(&self) {
        let failed = |e: &Event| matches!(e, Event::RecoveryFailed { .. });
        assert!(!self.events.iter().any(failed), "{:?}", self.events);
    }

    /// The last event reported is `Restored`.
    fn assert_restored_last(&self) {
        assert!(
            matches!(self.events.last(), Some(Event::Restored)),
            "{:?}",
            self.events
        );
    }

    fn take_sent(&mut self) -> Vec<(u16, Method)> {
        std::mem::take(&mut self.sent)
    }

    /// The last method sent, which must be `name`; its channel.
    fn expect(&mut self, name: &str) -> (u16, Method) {
        self.pump_out();
        assert!(!self.sent.is_empty(), "nothing sent, expected {name}");
        let (ch, m) = self.sent.remove(0);
        assert_eq!(m.name(), name, "sent {m:?}");
        (ch, m)
    }

    /// The socket drops.
    fn lose(&mut self) {
        self.conn
            .handle_io_error(io::Error::from(io::ErrorKind::ConnectionReset));
        self.drain();
    }

    /// Advances time to the next recovery deadline and runs what is due; a
    /// reconnection gets a fresh connection (as the client's
    /// `next_transport`) and its handshake.
    fn advance(&mut self) -> Option<Reconnect> {
        let at = self.rec.poll_timeout().expect("a recovery deadline");
        assert!(at >= self.now);
        self.now = at;
        let r = self.rec.handle_timeout(self.now, &mut self.conn);
        if let Some(r) = r {
            let config = self.conn.config().clone();
            self.conn = Connection::new(config, r.handshake, self.now);
            self.rec.handle_transport(&mut self.conn);
            self.out.clear();
            self.sent.clear();
        }
        self.drain();
        r
    }

    /// Starts the consumer `tag` on `queue` (recorded).
    fn consume(&mut self, tag: Tag, queue: &str, no_ack: bool, prefetch: u16) {
        let queues = vec![ConsumeQueue {
            queue: queue.into(),
            ..Default::default()
        }];
        self.conn.consume(tag, queues.clone(), no_ack, prefetch);
        self.rec
            .note_consumer(&self.conn, tag, queues, no_ack, prefetch);
        self.drain();
    }

    fn declare(&mut self, tag: Tag, m: Method) {
        self.rec.note_rpc(tag, &m);
        self.conn.rpc(tag, m);
        self.drain();
    }
}

fn declare_ok(name: &str) -> Method {
    Method::QueueDeclareOk(QueueDeclareOk {
        queue: name.into(),
        message_count: 0,
        consumer_count: 0,
    })
}

/// A user tag (generation 1).
fn user(n: u64) -> Tag {
    (1 << 32) | n
}

#[test]
fn a_loss_is_restored_in_order_under_the_new_queue_name() {
    let mut h = Harness::new(Recovery::default().initial_backoff(ms(100)));
    // Topology: exchange, server-named queue, binding, consumer with a
    // chosen tag and a prefetch, a channel-wide qos, and tx mode.
    h.declare(user(2), ExchangeDeclare::new("x", "direct").into());
    let (ch, _) = h.expect("exchange.declare");
    h.server(ch, Method::ExchangeDeclareOk(ExchangeDeclareOk {}));
    h.declare(user(3), QueueDeclare::server_named().into());
    h.expect("queue.declare");
    h.server(ch, declare_ok("amq.gen-A"));
    h.declare(user(4), QueueBind::new("amq.gen-A", "x", "k").into());
    h.expect("queue.bind");
    h.server(ch, Method::QueueBindOk(QueueBindOk {}));
    let queues = vec![ConsumeQueue {
        queue: "amq.gen-A".into(),
        consumer_tag: "kept".into(),
        ..Default::default()
    }];
    h.conn.consume(user(5), queues.clone(), false, 10);
    h.rec.note_consumer(&h.conn, user(5), queues, false, 10);
    h.drain();
    let (cch, _) = h.expect("basic.qos");
    h.server(cch, Method::BasicQosOk(BasicQosOk {}));
    h.expect("basic.consume");
    h.server(
        cch,
        Method::BasicConsumeOk(BasicConsumeOk {
            consumer_tag: "kept".into(),
        }),
    );
    h.rec.note_channel_qos(user(6), user(5), 0, 50);
    h.conn.qos(user(6), user(5), 0, 50, true);
    h.drain();
    h.expect("basic.qos");
    h.server(cch, Method::BasicQosOk(BasicQosOk {}));
    assert_eq!(h.results.len(), 5, "{:?}", h.results);
    h.take_sent();

    // The loss: the consumer's promise is not failed, the backoff starts.
    let lost_at = h.now;
    h.lose();
    assert!(h.closed.is_none());
    assert!(
        matches!(h.events[..], [Event::Disconnected(_)]),
        "{:?}",
        h.events
    );
    assert_eq!(h.results.len(), 5, "the consumer goes on: {:?}", h.results);
    assert!(h.rec.is_recovering());
    let at = h.rec.poll_timeout().unwrap();
    let wait = at - lost_at;
    assert!(wait >= ms(75) && wait <= ms(125), "{wait:?}");

    // The attempt: a fresh connection and its handshake.
    let r = h.advance().expect("a reconnection");
    assert_eq!(r.attempt, 1);
    h.handshake();
    assert!(
        matches!(h.events.last(), Some(Event::Reconnected)),
        "{:?}",
        h.events
    );
    assert_eq!(h.rec.reconnects(), 1);

    // First phase: the exchange and the queue (server-named: asked anew).
    let (ch, _) = h.expect("exchange.declare");
    let (qch, q) = h.expect("queue.declare");
    assert!(
        matches!(&q, Method::QueueDeclare(d) if d.queue.is_empty()),
        "{q:?}"
    );
    assert!(h.sent.is_empty(), "the second phase waits: {:?}", h.sent);
    h.server(ch, Method::ExchangeDeclareOk(ExchangeDeclareOk {}));
    h.server(qch, declare_ok("amq.gen-B"));
    assert!(
        h.events.iter().any(|e| matches!(e, Event::QueueRenamed { old, new } if old == "amq.gen-A" && new == "amq.gen-B")),
        "{:?}",
        h.events
    );
    // Second phase: the binding and the consumer under the new name, the
    // channel-wide qos before the consumer's own and its consume.
    let (bch, b) = h.expect("queue.bind");
    assert!(
        matches!(&b, Method::QueueBind(b) if b.queue == "amq.gen-B"),
        "{b:?}"
    );
    let (cch, g) = h.expect("basic.qos");
    assert!(
        matches!(&g, Method::BasicQos(q) if q.global && q.prefetch_count == 50),
        "{g:?}"
    );
    let (_, p) = h.expect("basic.qos");
    assert!(
        matches!(&p, Method::BasicQos(q) if !q.global && q.prefetch_count == 10),
        "{p:?}"
    );
    let (_, c) = h.expect("basic.consume");
    assert!(
        matches!(&c, Method::BasicConsume(c) if c.queue == "amq.gen-B" && c.consumer_tag == "kept"),
        "{c:?}"
    );
    assert_eq!(h.restored_count(), 0, "the binding is not answered yet");
    h.server(bch, Method::QueueBindOk(QueueBindOk {}));
    h.assert_restored_last();
    h.server(cch, Method::BasicQosOk(BasicQosOk {}));
    h.server(cch, Method::BasicQosOk(BasicQosOk {}));
    h.server(
        cch,
        Method::BasicConsumeOk(BasicConsumeOk {
            consumer_tag: "kept".into(),
        }),
    );
    h.assert_no_recovery_failed();
    assert!(!h.rec.is_recovering());
    assert_eq!(h.rec.poll_timeout(), None);
    assert_eq!(h.restored_count(), 1, "once: {:?}", h.events);
}

#[test]
fn a_locked_queue_is_declared_again_before_its_consumer() {
    let mut h = Harness::new(Recovery::default().initial_backoff(ms(10)));
    h.declare(user(2), QueueDeclare::named("excl").exclusive().into());
    let (ch, _) = h.expect("queue.declare");
    h.server(ch, declare_ok("excl"));
    h.consume(user(3), "excl", true, 0);
    let (cch, c) = h.expect("basic.consume");
    let Method::BasicConsume(c) = c else {
        unreachable!()
    };
    let ctag = c.consumer_tag.clone();
    h.server(
        cch,
        Method::BasicConsumeOk(BasicConsumeOk {
            consumer_tag: ctag.clone(),
        }),
    );
    h.lose();
    h.advance().expect("a reconnection");
    h.handshake();
    let (ch, _) = h.expect("queue.declare");
    // Still held by the old connection's half-open end.
    h.server(
        ch,
        Method::ChannelClose(ChannelClose {
            reply_code: 405,
            reply_text: "RESOURCE_LOCKED - locked".into(),
            class_id: 50,
            method_id: 10,
        }),
    );
    h.expect("channel.close-ok");
    assert!(h.sent.is_empty(), "the consumer waits: {:?}", h.sent);
    let retry_at = h.rec.poll_timeout().expect("a retry");
    assert_eq!(retry_at - h.now, restore::LOCKED_RETRY_DELAY);
    assert!(h.advance().is_none(), "a retry is no reconnection");
    let (ch, _) = h.expect("queue.declare");
    h.server(ch, declare_ok("excl"));
    let (cch, c) = h.expect("basic.consume");
    assert!(
        matches!(&c, Method::BasicConsume(c) if c.consumer_tag == ctag),
        "{c:?}"
    );
    h.server(
        cch,
        Method::BasicConsumeOk(BasicConsumeOk { consumer_tag: ctag }),
    );
    h.assert_no_recovery_failed();
}

#[test]
fn a_failed_reconnection_backs_off_and_a_refusal_is_reported() {
    let mut h = Harness::new(
        Recovery::default()
            .initial_backoff(ms(100))
            .max_attempts(Some(3)),
    );
    h.declare(user(2), ExchangeDeclare::new("x", "direct").into());
    let (ch, _) = h.expect("exchange.declare");
    h.server(ch, Method::ExchangeDeclareOk(ExchangeDeclareOk {}));
    h.lose();
    // Attempt 1: the transport drops during the handshake.
    let t0 = h.now;
    assert_eq!(h.advance().map(|r| r.attempt), Some(1));
    h.lose();
    assert!(h.closed.is_none());
    let wait = h.rec.poll_timeout().unwrap() - h.now;
    assert!(wait >= ms(150) && wait <= ms(250), "doubled: {wait:?}");
    // Attempt 2 works; the exchange is refused.
    assert_eq!(h.advance().map(|r| r.attempt), Some(2));
    assert!(h.now - t0 >= ms(150));
    h.handshake();
    let (ch, _) = h.expect("exchange.declare");
    h.server(
        ch,
        Method::ChannelClose(ChannelClose {
            reply_code: 406,
            reply_text: "PRECONDITION_FAILED - inequivalent arg".into(),
            class_id: 40,
            method_id: 10,
        }),
    );
    assert!(
        h.events.iter().any(|e| matches!(e, Event::RecoveryFailed { entity, error: Error::PreconditionFailed(_) } if entity == "exchange \"x\"")),
        "{:?}",
        h.events
    );
    // A refused login during a later reconnection is not retried.
    h.lose();
    h.advance().expect("a reconnection");
    h.server(
        0,
        Method::ConnectionStart(ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(),
            mechanisms: bytes::Bytes::from_static(b"PLAIN"),
            locales: bytes::Bytes::from_static(b"en_US"),
        }),
    );
    h.server(
        0,
        Method::ConnectionClose(ConnectionClose {
            reply_code: 403,
            reply_text: "ACCESS_REFUSED".into(),
            class_id: 0,
            method_id: 0,
        }),
    );
    assert!(
        matches!(h.closed, Some(Error::AccessRefused(_))),
        "{:?}",
        h.closed
    );
    assert!(!h.rec.is_recovering());
}

#[test]
fn attempts_run_out() {
    let mut h = Harness::new(Recovery::default().max_attempts(Some(2)));
    h.lose();
    for attempt in 1..=2 {
        assert_eq!(h.advance().map(|r| r.attempt), Some(attempt));
        h.lose();
    }
    assert!(h.closed.is_some(), "gave up");
    assert!(!h.rec.is_recovering());
    assert_eq!(h.rec.poll_timeout(), None);
}

/// The last attempt still goes through the addresses its walk has left:
/// the attempt limit counts attempts, not addresses.
#[test]
fn the_last_attempt_walks_its_remaining_addresses() {
    let mut h = Harness::new(Recovery::default().max_attempts(Some(1)));
    h.lose();
    assert_eq!(h.advance().map(|r| r.attempt), Some(1));
    let lost = Error::io(io::Error::from(io::ErrorKind::ConnectionReset));
    assert!(
        h.rec.handle_loss(&lost, true, h.now),
        "addresses are left in the walk of attempt 1"
    );
    assert_eq!(h.rec.poll_timeout(), Some(h.now), "the next one at once");
    assert_eq!(h.advance().map(|r| r.attempt), Some(1));
    // With no address left, attempt 1 is over, and so is recovery.
    assert!(!h.rec.handle_loss(&lost, false, h.now));
    assert!(!h.rec.is_recovering());
}

#[test]
fn backoff_doubles_to_its_cap_with_bounded_jitter() {
    let r = Recovery::default()
        .initial_backoff(ms(100))
        .max_backoff(Duration::from_secs(1));
    for noise in [0, 500, 999] {
        let first = r.backoff(1, noise);
        assert!(first >= ms(75) && first <= ms(125));
        let third = r.backoff(3, noise);
        assert!(third >= ms(300) && third <= ms(500));
        assert!(r.backoff(30, noise) <= Duration::from_secs(1));
    }
}

#[test]
fn clients_jitter_apart() {
    let mut a = Recoverer::new(Recovery::default(), 1);
    let mut b = Recoverer::new(Recovery::default(), 2);
    let na: Vec<u64> = (0..8).map(|_| a.noise()).collect();
    let nb: Vec<u64> = (0..8).map(|_| b.noise()).collect();
    assert!(na.iter().all(|&n| n < 1000));
    assert_ne!(na, nb, "two clients would come back in step");
}

#[test]
fn what_is_recovered() {
    let lost = Error::io(io::Error::from(io::ErrorKind::ConnectionReset));
    let connecting = Phase::Connecting {
        attempt: 1,
        handshake: 1,
    };
    assert!(recoverable(&lost, Phase::Connected));
    assert!(
        !recoverable(&lost, Phase::Starting),
        "not the first connect"
    );
    let forced = Error::from_reply(crate::error::Reply::new(320, "CONNECTION_FORCED"));
    assert!(recoverable(&forced, Phase::Connected));
    assert!(!recoverable(&Error::ConnectionClosed, Phase::Connected));
    let login = Error::from_reply(crate::error::Reply {
        connection: true,
        ..crate::error::Reply::new(403, "ACCESS_REFUSED")
    });
    assert!(!recoverable(&login, connecting));
    let violation = Error::ProtocolViolation(crate::error::Reply::new(505, "x"));
    assert!(!recoverable(&violation, Phase::Connected));
    assert!(recoverable(&violation, connecting), "another node may do");
}

#[test]
fn removals_during_a_restore_keep_the_indices_of_its_answers() {
    let mut r = Record::default();
    r.entities
        .push(Entity::Exchange(ExchangeDeclare::new("x", "direct")));
    r.entities
        .push(Entity::QueueBinding(QueueBind::new("q", "x", "k")));
    r.entities.push(Entity::Queue {
        declare: QueueDeclare::named("q"),
        name: "q".into(),
        server_named: false,
        consumed: false,
    });
    // A restore is in flight (its answer for index 2 is due).
    r.apply_delete(&Method::ExchangeDelete(ExchangeDelete::new("x")), true);
    assert_eq!(r.entities.len(), 3, "slots stay while answers are due");
    assert!(matches!(r.entities[2], Entity::Queue { .. }));
    assert!(matches!(r.entities[0], Entity::Gone));
    // Once nothing is in flight, removals compact the record.
    r.apply_delete(&Method::QueueDelete(QueueDelete::new("q")), false);
    assert!(r.entities.is_empty());
}

#[test]
fn deletes_and_renames_keep_the_record_true() {
    let mut r = Record::default();
    r.entities.push(Entity::Queue {
        declare: QueueDeclare::named(""),
        name: "amq.gen-1".into(),
        server_named: true,
        consumed: true,
    });
    r.entities
        .push(Entity::QueueBinding(QueueBind::new("amq.gen-1", "x", "k")));
    r.entities.push(Entity::Consumer {
        tag: 7,
        queues: vec![ConsumeQueue {
            queue: "amq.gen-1".into(),
            ..Default::default()
        }],
        no_ack: false,
        prefetch: 0,
        channel_qos: None,
    });
    if let Entity::Queue { name, .. } = &mut r.entities[0] {
        *name = "amq.gen-2".into();
    }
    r.rename_queue("amq.gen-1", "amq.gen-2");
    assert!(matches!(&r.entities[1], Entity::QueueBinding(b) if b.queue == "amq.gen-2"));
    assert!(
        matches!(&r.entities[2], Entity::Consumer { queues, .. } if queues[0].queue == "amq.gen-2")
    );
    r.apply_delete(&Method::QueueDelete(QueueDelete::new("amq.gen-2")), false);
    assert_eq!(r.entities.len(), 1, "the queue and its binding went");
    r.forget_consumer(7, false);
    assert!(r.entities.is_empty());
}

#[test]
fn transaction_mode_is_restored_before_the_user_can_publish() {
    // Transactions need a publish channel without confirms.
    let config = crate::protocol::Config {
        confirms: crate::protocol::Confirms::Off,
        ..Default::default()
    };
    let mut h = Harness::with_config(Recovery::default().initial_backoff(ms(10)), config);
    h.declare(user(2), QueueDeclare::named("q").into());
    let (ch, _) = h.expect("queue.declare");
    h.server(ch, declare_ok("q"));
    h.select_tx(user(3));
    let ok = |t: Tag| h.results.iter().any(|(u, r)| *u == t && r.is_ok());
    assert!(ok(user(2)) && ok(user(3)), "{:?}", h.results);
    h.take_sent();

    h.lose();
    h.advance().expect("a reconnection");
    h.handshake();
    assert!(matches!(h.events.last(), Some(Event::Reconnected)));
    // Before any restore answer: what the user does on Reconnected.
    h.publish(user(4), b"rolled back");
    h.conn.tx_rollback(user(5));
    h.drain();
    // The restore's tx.select went first, on the channel the publish and
    // the rollback then took; the queue's declare beside it.
    let sent = h.take_sent();
    let names: Vec<(u16, &str)> = sent.iter().map(|(c, m)| (*c, m.name())).collect();
    let select = names
        .iter()
        .position(|n| n.1 == "tx.select")
        .unwrap_or_else(|| panic!("no tx.select in {names:?}"));
    let publish = names
        .iter()
        .position(|n| n.1 == "basic.publish")
        .unwrap_or_else(|| panic!("no publish in {names:?}"));
    let rollback = names
        .iter()
        .position(|n| n.1 == "tx.rollback")
        .unwrap_or_else(|| panic!("no rollback in {names:?}"));
    assert!(select < publish && publish < rollback, "{names:?}");
    assert_eq!(names[select].0, names[publish].0, "{names:?}");
    assert_eq!(names[select].0, names[rollback].0, "{names:?}");
    assert!(names.iter().any(|n| n.1 == "queue.declare"), "{names:?}");
    // Restored once both restore operations are answered.
    let qch = names.iter().find(|n| n.1 == "queue.declare").unwrap().0;
    h.server(names[select].0, Method::TxSelectOk(TxSelectOk {}));
    assert!(!h.events.iter().any(|e| matches!(e, Event::Restored)));
    h.server(qch, declare_ok("q"));
    h.assert_restored_last();
}

#[test]
fn work_queued_during_a_reconnection_handshake_goes_ahead_of_the_restore() {
    // What the docs say (README "Recovery", the guide's connection-loss
    // chapter): work queued while a reconnection's handshake runs is sent
    // once the connection is open, ahead of the restore, so work that
    // needs the topology waits for `Restored`.
    let mut h = Harness::with_queue_q();

    h.lose();
    h.advance().expect("a reconnection");
    // During the handshake: queued in the fresh connection.
    h.publish(user(2), b"early");
    h.drain();
    assert!(h.take_sent().is_empty(), "sent before the handshake");
    h.handshake();
    assert!(matches!(h.events.last(), Some(Event::Reconnected)));
    let sent = h.take_sent();
    let names: Vec<(u16, &str)> = sent.iter().map(|(c, m)| (*c, m.name())).collect();
    let at = |name: &str| {
        names
            .iter()
            .position(|n| n.1 == name)
            .unwrap_or_else(|| panic!("no {name} in {names:?}"))
    };
    assert!(at("basic.publish") < at("queue.declare"), "{names:?}");
    let qch = names[at("queue.declare")].0;
    assert!(!h.events.iter().any(|e| matches!(e, Event::Restored)));
    h.server(qch, declare_ok("q"));
    h.assert_restored_last();
}

#[test]
fn a_publish_queued_during_a_reconnection_handshake_stays_transactional() {
    // Transaction mode is restored as the fresh connection's first channel
    // work, before the handshake: a publish queued meanwhile goes out
    // behind its `tx.select` on the same channel. (It used to go out
    // first, applied at once: a later `tx_rollback` did not undo it.)
    let config = crate::protocol::Config {
        confirms: crate::protocol::Confirms::Off,
        ..Default::default()
    };
    let mut h = Harness::with_config(Recovery::default(), config);
    h.select_tx(user(3));
    h.take_sent();

    // The first attempt's transport drops during its handshake: the
    // `tx.select` queued with it fails with the connection, which is no
    // failure to restore; the next attempt queues it again.
    h.lose();
    h.advance().expect("a reconnection");
    h.lose();
    assert!(h.closed.is_none(), "{:?}", h.closed);
    h.advance().expect("a second attempt");
    h.publish(user(4), b"in the transaction");
    h.conn.tx_rollback(user(5));
    h.handshake();
    assert!(matches!(h.events.last(), Some(Event::Reconnected)));
    let sent = h.take_sent();
    let names: Vec<(u16, &str)> = sent.iter().map(|(c, m)| (*c, m.name())).collect();
    assert_eq!(
        names,
        [(1, "tx.select"), (1, "basic.publish"), (1, "tx.rollback")],
        "tx.select once, first"
    );
    h.server(1, Method::TxSelectOk(TxSelectOk {}));
    h.assert_restored_last();
    h.assert_no_recovery_failed();
    assert_eq!(h.restored_count(), 1, "{:?}", h.events);
}

#[test]
fn a_loss_during_the_restore_is_neither_a_failure_nor_the_end_of_it() {
    // A restore operation that fails because the connection was lost
    // again was not refused: no `RecoveryFailed`, and no `Restored` for a
    // restore that never finished. The next attempt restores it all, and
    // `Restored` comes once, then.
    let mut h = Harness::restoring_queue_q();
    h.lose();
    h.assert_no_recovery_failed();
    assert_eq!(h.restored_count(), 0, "{:?}", h.events);
    assert!(h.closed.is_none(), "{:?}", h.closed);
    h.advance().expect("a second attempt");
    h.handshake();
    let (ch, _) = h.expect("queue.declare");
    h.server(ch, declare_ok("q"));
    h.assert_restored_last();
    assert_eq!(h.restored_count(), 1, "{:?}", h.events);
    h.assert_no_recovery_failed();
}

#[test]
fn a_close_during_the_restore_is_neither_a_failure_nor_the_end_of_it() {
    // The user closes at once while a restore operation is in flight: it
    // fails with the close, which is no failure to restore, and the
    // restore that never finished is not `Restored`.
    let mut h = Harness::restoring_queue_q();
    h.rec.stop();
    h.conn.close_now(user(9), h.now, ms(1000));
    h.drain();
    h.server(0, Method::ConnectionCloseOk(ConnectionCloseOk {}));
    assert!(
        matches!(h.closed, Some(Error::ConnectionClosed)),
        "{:?}",
        h.closed
    );
    h.assert_no_recovery_failed();
    assert_eq!(h.restored_count(), 0, "{:?}", h.events);
}

#[test]
fn a_broker_close_during_the_restore_is_not_restored() {
    // The broker closes the connection (541, not recovered) while the
    // restore's declare is in flight: that declare failed with the close
    // (reported, with the broker's reason), but the restore never finished,
    // so no second phase and no `Restored`; the connection is closed.
    let mut h = Harness::restoring_queue_q();
    h.server(
        0,
        Method::ConnectionClose(ConnectionClose {
            reply_code: 541,
            reply_text: "INTERNAL_ERROR".into(),
            class_id: 0,
            method_id: 0,
        }),
    );
    assert!(
        matches!(h.closed, Some(Error::InternalError(_))),
        "{:?}",
        h.closed
    );
    assert_eq!(h.restored_count(), 0, "{:?}", h.events);
    assert!(
        matches!(
            h.events.last(),
            Some(Event::RecoveryFailed {
                error: Error::InternalError(_),
                ..
            })
        ),
        "{:?}",
        h.events
    );
}

#[test]
fn a_consumer_refused_at_the_restore_ends_its_promise_and_is_not_restored_again() {
    // What the guide says: a refused `basic.consume` of the restore comes
    // as the consumer's promise's error (not `RecoveryFailed`), and the
    // consumer has ended: the next reconnection does not restore it.
    let mut h = Harness::with_queue_q();
    h.consume(user(5), "q", false, 10);
    let (cch, _) = h.expect("basic.qos");
    h.server(cch, Method::BasicQosOk(BasicQosOk {}));
    let (_, c) = h.expect("basic.consume");
    let Method::BasicConsume(c) = c else {
        unreachable!()
    };
    let consumer_tag = c.consumer_tag.clone();
    h.server(cch, Method::BasicConsumeOk(BasicConsumeOk { consumer_tag }));
    h.take_sent();

    h.lose();
    h.advance().expect("a reconnection");
    h.handshake();
    let (ch, _) = h.expect("queue.declare");
    h.server(ch, declare_ok("q"));
    let (cch, _) = h.expect("basic.qos");
    h.server(cch, Method::BasicQosOk(BasicQosOk {}));
    h.expect("basic.consume");
    h.server(
        cch,
        Method::ChannelClose(ChannelClose {
            reply_code: 404,
            reply_text: "NOT_FOUND - no queue 'q'".into(),
            class_id: 60,
            method_id: 20,
        }),
    );
    assert!(
        h.results
            .iter()
            .any(|(t, r)| *t == user(5) && matches!(r, Err(Error::NotFound(_)))),
        "{:?}",
        h.results
    );
    h.assert_no_recovery_failed();
    assert_eq!(h.restored_count(), 1, "{:?}", h.events);
    h.take_sent();

    h.lose();
    h.advance().expect("a second reconnection");
    h.handshake();
    let (ch, _) = h.expect("queue.declare");
    h.server(ch, declare_ok("q"));
    assert!(
        h.sent.is_empty(),
        "the ended consumer came back: {:?}",
        h.sent
    );
    assert_eq!(h.restored_count(), 2, "{:?}", h.events);
}
