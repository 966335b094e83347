//! Scripted-server tests for the sans-IO [`Connection`].
//!
//! No socket: each test plays the broker. Server frames are built with the
//! codec, fed with `handle_bytes` + `handle_input(now)`; what the client sent
//! is read back with `take_output` and decoded; events are drained with
//! `poll_event`. Every drain checks that no tag completes twice.

use super::*;
use crate::codec::frame::{self, encode_body, encode_content, ContentHeader, Frame};
use crate::codec::{reply_code, BasicProperties, CodecError, FieldTable, FieldValue, Method};
use crate::error::Error;
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// The tag every test connects with.
const CONNECT: Tag = 1_000_000_000;

macro_rules! assert_matches {
    ($value:expr, $pattern:pat $(if $guard:expr)? $(,)?) => {
        match $value {
            $pattern $(if $guard)? => {}
            ref other => panic!("expected `{}`, got {:?}", stringify!($pattern), other),
        }
    };
}

// ----------------------------------------------------------------------
// Building server input.

fn server_start() -> Method {
    Method::ConnectionStart(ConnectionStart {
        version_major: 0,
        version_minor: 9,
        server_properties: FieldTable::from([
            ("product", FieldValue::from("RabbitMQ")),
            (
                "capabilities",
                FieldValue::from(FieldTable::from([
                    ("publisher_confirms", FieldValue::from(true)),
                    ("consumer_cancel_notify", FieldValue::from(true)),
                    ("basic.nack", FieldValue::from(true)),
                ])),
            ),
        ]),
        mechanisms: Bytes::from_static(b"AMQPLAIN PLAIN"),
        locales: Bytes::from_static(b"en_US"),
    })
}

fn tune(channel_max: u16, frame_max: u32, heartbeat: u16) -> ConnectionTune {
    ConnectionTune {
        channel_max,
        frame_max,
        heartbeat,
    }
}

fn default_tune() -> ConnectionTune {
    tune(2047, 131_072, 60)
}

fn method_bytes(ch: u16, method: impl Into<Method>) -> BytesMut {
    let mut b = BytesMut::new();
    frame::encode_method(&mut b, ch, &method.into()).expect("encodable server method");
    b
}

fn header_bytes(ch: u16, class_id: u16, body_size: u64, properties: BasicProperties) -> BytesMut {
    let mut b = BytesMut::new();
    Frame::Header {
        channel: ch,
        header: ContentHeader {
            class_id,
            body_size,
            properties,
        },
    }
    .encode(&mut b)
    .expect("encodable header");
    b
}

fn body_bytes(ch: u16, payload: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    encode_body(&mut b, ch, payload);
    b
}

/// A frame with any type and payload, frame end included.
fn raw_frame(frame_type: u8, ch: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![frame_type];
    f.extend_from_slice(&ch.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(frame::FRAME_END);
    f
}

const HEARTBEAT: [u8; 8] = [8, 0, 0, 0, 0, 0, 0, 0xCE];

fn feed(conn: &mut Connection, now: Instant, bytes: &[u8]) {
    conn.handle_bytes(bytes);
    conn.handle_input(now);
}

// ----------------------------------------------------------------------
// Reading client output.

/// Decodes everything the client sent (skipping the protocol header at the
/// start); every byte must belong to a well-formed frame within `frame_max`.
fn decode_frames(bytes: &[u8], frame_max: u32) -> Vec<Frame> {
    let mut buf = BytesMut::from(bytes);
    if buf.starts_with(b"AMQP") {
        let _ = buf.split_to(8);
    }
    let mut frames = Vec::new();
    while let Some(f) = frame::decode(&mut buf, frame_max).expect("client sent a malformed frame") {
        frames.push(f);
    }
    assert!(buf.is_empty(), "client output ends in a partial frame");
    frames
}

/// What the client sent, with each publish's frames gathered into one item.
#[derive(Debug, Clone, PartialEq)]
enum Sent {
    M(u16, Method),
    Publish {
        ch: u16,
        method: BasicPublish,
        properties: Box<BasicProperties>,
        body: Vec<u8>,
    },
    Heartbeat,
}

fn m(ch: u16, method: impl Into<Method>) -> Sent {
    Sent::M(ch, method.into())
}

fn publish_sent(ch: u16, exchange: &str, routing_key: &str, mandatory: bool, body: &[u8]) -> Sent {
    Sent::Publish {
        ch,
        method: BasicPublish {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            mandatory,
            immediate: false,
        },
        properties: Box::default(),
        body: body.to_vec(),
    }
}

fn parse_sent(frames: Vec<Frame>) -> Vec<Sent> {
    let mut out = Vec::new();
    let mut it = frames.into_iter();
    while let Some(f) = it.next() {
        match f {
            Frame::Method {
                channel,
                method: Method::BasicPublish(p),
            } => {
                let Some(Frame::Header {
                    channel: hc,
                    header,
                }) = it.next()
                else {
                    panic!("basic.publish not followed by its content header");
                };
                assert_eq!(hc, channel, "content header on another channel");
                assert_eq!(header.class_id, 60);
                let mut body = Vec::new();
                while (body.len() as u64) < header.body_size {
                    match it.next() {
                        Some(Frame::Body {
                            channel: bc,
                            payload,
                        }) => {
                            assert_eq!(bc, channel, "body frame on another channel");
                            assert!(!payload.is_empty(), "empty body frame");
                            body.extend_from_slice(&payload);
                        }
                        other => panic!("expected a body frame, got {other:?}"),
                    }
                }
                assert_eq!(body.len() as u64, header.body_size, "body overrun");
                out.push(Sent::Publish {
                    ch: channel,
                    method: p,
                    properties: Box::new(header.properties),
                    body,
                });
            }
            Frame::Method {
                channel,
                method: Method::BasicConsume(mut c),
            } if c.consumer_tag.as_str().starts_with("puka.ctag-") => {
                // The tag the client chose for a queue given none; the
                // scripts compare with the empty tag the user gave (the
                // generated tags have tests of their own).
                c.consumer_tag = ShortString::from_static("");
                out.push(Sent::M(channel, Method::BasicConsume(c)));
            }
            Frame::Method { channel, method } => out.push(Sent::M(channel, method)),
            Frame::Heartbeat => out.push(Sent::Heartbeat),
            other => panic!("content frame without a basic.publish: {other:?}"),
        }
    }
    out
}

/// `sent` with the `multiple` flag of every ack cleared. The client may send
/// an ack of the lowest outstanding delivery tag with `multiple` set (it
/// coalesces consecutive acks); nothing lower being outstanding, the flag
/// then means nothing. Use only where that holds.
fn lowest_acks(sent: Vec<Sent>) -> Vec<Sent> {
    sent.into_iter()
        .map(|s| match s {
            Sent::M(ch, Method::BasicAck(a)) => m(
                ch,
                BasicAck {
                    delivery_tag: a.delivery_tag,
                    multiple: false,
                },
            ),
            other => other,
        })
        .collect()
}

fn expect_connection_close(sent: &[Sent], code: u16) {
    match sent {
        [Sent::M(0, Method::ConnectionClose(c))] => {
            assert_eq!(c.reply_code, code, "reply code of connection.close ({c:?})");
            assert!(!c.reply_text.is_empty());
        }
        other => panic!("expected exactly connection.close({code}), got {other:?}"),
    }
}

// ----------------------------------------------------------------------
// Events.

/// The one `Complete` for `tag` among `events`.
fn result_of(events: &[Event], tag: Tag) -> &Result<Outcome, Error> {
    let found: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Complete { tag: t, result } if *t == tag => Some(result),
            _ => None,
        })
        .collect();
    assert_eq!(found.len(), 1, "completions of tag {tag} in {events:?}");
    found[0]
}

fn closed_error(events: &[Event]) -> &Error {
    let found: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Closed(err) => Some(err),
            _ => None,
        })
        .collect();
    assert_eq!(found.len(), 1, "Closed events in {events:?}");
    found[0]
}

fn deliveries(events: &[Event], consume_tag: Tag) -> Vec<Delivery> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Delivery { tag, delivery } if *tag == consume_tag => Some(delivery.clone()),
            _ => None,
        })
        .collect()
}

// ----------------------------------------------------------------------
// The handshake.

/// Plays the broker's side of the handshake on a fresh `conn` and checks
/// every byte the client sends until `connection.open`.
fn drive_handshake(
    conn: &mut Connection,
    now: Instant,
    config: &Config,
    server_tune: ConnectionTune,
) {
    assert_eq!(&conn.take_output()[..], &frame::PROTOCOL_HEADER[..]);
    feed(conn, now, &method_bytes(0, server_start()));
    let sent = parse_sent(decode_frames(&conn.take_output(), FRAME_MIN_SIZE));
    let [Sent::M(0, Method::ConnectionStartOk(ok))] = &sent[..] else {
        panic!("expected connection.start-ok, got {sent:?}");
    };
    assert_eq!(ok.mechanism, "PLAIN");
    let mut response = vec![0u8];
    response.extend_from_slice(config.username.as_bytes());
    response.push(0);
    response.extend_from_slice(config.password.as_bytes());
    assert_eq!(&ok.response[..], &response[..]);
    assert_eq!(ok.locale, "en_US");
    let caps = ok
        .client_properties
        .get("capabilities")
        .and_then(FieldValue::as_table)
        .expect("client_properties.capabilities");
    for cap in [
        "consumer_cancel_notify",
        "authentication_failure_close",
        "publisher_confirms",
        "basic.nack",
        "connection.blocked",
    ] {
        assert_eq!(
            caps.get(cap).and_then(FieldValue::as_bool),
            Some(true),
            "{cap}"
        );
    }
    assert!(conn.poll_event().is_none());

    feed(conn, now, &method_bytes(0, server_tune.clone()));
    let expected = negotiate::tune(
        server_tune.channel_max,
        server_tune.frame_max,
        server_tune.heartbeat,
        config.channel_max,
        config.frame_max,
        config.heartbeat,
    )
    .expect("a valid tune");
    let sent = parse_sent(decode_frames(&conn.take_output(), FRAME_MIN_SIZE));
    assert_eq!(
        sent,
        vec![
            m(
                0,
                ConnectionTuneOk {
                    channel_max: expected.channel_max,
                    frame_max: expected.frame_max,
                    heartbeat: expected.heartbeat,
                }
            ),
            m(
                0,
                ConnectionOpen {
                    virtual_host: config.vhost.as_str().into(),
                }
            ),
        ]
    );
    assert_eq!(conn.tuned(), expected);
    assert!(!conn.is_open());
    assert!(conn.poll_event().is_none());

    feed(conn, now, &method_bytes(0, ConnectionOpenOk {}));
    assert_matches!(
        conn.poll_event(),
        Some(Event::Complete {
            tag: CONNECT,
            result: Ok(Outcome::Done)
        })
    );
    assert_matches!(conn.poll_event(), None);
    assert!(conn.is_open());
}

/// A connection opened against the default tune (2047, 131072, 60).
fn handshake(config: Config) -> (Connection, Instant) {
    handshake_with(config, default_tune())
}

fn handshake_with(config: Config, server_tune: ConnectionTune) -> (Connection, Instant) {
    let now = Instant::now();
    let mut conn = Connection::new(config.clone(), CONNECT, now);
    drive_handshake(&mut conn, now, &config, server_tune);
    (conn, now)
}

// ----------------------------------------------------------------------
// The harness: a connection, a clock and the completions seen so far.

struct H {
    conn: Connection,
    now: Instant,
    completed: HashMap<Tag, usize>,
    closed: usize,
}

impl H {
    fn new(config: Config) -> H {
        let (conn, now) = handshake(config);
        H::wrap(conn, now, true)
    }

    fn with_tune(config: Config, server_tune: ConnectionTune) -> H {
        let (conn, now) = handshake_with(config, server_tune);
        H::wrap(conn, now, true)
    }

    fn wrap(conn: Connection, now: Instant, connected: bool) -> H {
        let mut completed = HashMap::new();
        if connected {
            completed.insert(CONNECT, 1);
        }
        H {
            conn,
            now,
            completed,
            closed: 0,
        }
    }

    fn frame_max(&self) -> u32 {
        self.conn.tuned().frame_max
    }

    fn recv(&mut self, ch: u16, method: impl Into<Method>) {
        let b = method_bytes(ch, method);
        self.recv_raw(&b);
    }

    fn recv_raw(&mut self, bytes: &[u8]) {
        feed(&mut self.conn, self.now, bytes);
    }

    /// A content header and body frames for `body`, split to `frame_max`.
    fn recv_content(&mut self, ch: u16, properties: &BasicProperties, body: &[u8]) {
        let mut b = BytesMut::new();
        encode_content(&mut b, ch, 60, properties, body, self.frame_max()).expect("content");
        self.recv_raw(&b);
    }

    fn sent(&mut self) -> Vec<Sent> {
        let fm = self.frame_max();
        parse_sent(decode_frames(&self.conn.take_output(), fm))
    }

    /// Drains the events; panics when a tag completes a second time or the
    /// connection reports `Closed` twice.
    fn events(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(e) = self.conn.poll_event() {
            match &e {
                Event::Complete { tag, .. } => {
                    let n = self.completed.entry(*tag).or_insert(0);
                    *n += 1;
                    assert_eq!(*n, 1, "tag {tag} completed twice (now {e:?})");
                }
                Event::Closed(_) => {
                    self.closed += 1;
                    assert_eq!(self.closed, 1, "a second Closed event: {e:?}");
                }
                _ => {}
            }
            out.push(e);
        }
        out
    }

    /// The only event must be the completion of `tag`.
    fn result(&mut self, tag: Tag) -> Result<Outcome, Error> {
        let mut events = self.events();
        assert_eq!(
            events.len(),
            1,
            "expected only the completion of {tag}: {events:?}"
        );
        match events.pop() {
            Some(Event::Complete { tag: t, result }) if t == tag => result,
            other => panic!("expected the completion of {tag}, got {other:?}"),
        }
    }

    fn assert_quiet(&mut self) {
        let events = self.events();
        assert!(events.is_empty(), "unexpected events {events:?}");
        let sent = self.sent();
        assert!(sent.is_empty(), "unexpected output {sent:?}");
    }

    /// A consumer on `ch` (the next free channel) with consumer tag `ctag`.
    fn consumer(&mut self, tag: Tag, ch: u16, ctag: &str, prefetch: u16) {
        self.conn.consume(tag, queues("q"), false, prefetch);
        let mut expected = vec![m(ch, ChannelOpen {})];
        if prefetch > 0 {
            expected.push(m(
                ch,
                BasicQos {
                    prefetch_size: 0,
                    prefetch_count: prefetch,
                    global: false,
                },
            ));
        }
        expected.push(m(
            ch,
            BasicConsume {
                queue: "q".into(),
                ..Default::default()
            },
        ));
        assert_eq!(self.sent(), expected);
        self.recv(ch, ChannelOpenOk {});
        if prefetch > 0 {
            self.recv(ch, BasicQosOk {});
        }
        self.recv(
            ch,
            BasicConsumeOk {
                consumer_tag: ctag.into(),
            },
        );
        self.assert_quiet();
    }

    /// The broker delivers `body` to `ctag` on `ch`.
    fn deliver(&mut self, ch: u16, ctag: &str, delivery_tag: u64, body: &[u8]) {
        self.recv(
            ch,
            BasicDeliver {
                consumer_tag: ctag.into(),
                delivery_tag,
                redelivered: false,
                exchange: "".into(),
                routing_key: "q".into(),
            },
        );
        self.recv_content(ch, &BasicProperties::default(), body);
    }
}

fn queues(name: &str) -> Vec<ConsumeQueue> {
    vec![ConsumeQueue {
        queue: name.into(),
        ..Default::default()
    }]
}

fn declare(name: &str) -> Method {
    QueueDeclare {
        queue: name.into(),
        ..Default::default()
    }
    .into()
}

fn declare_ok(name: &str) -> QueueDeclareOk {
    QueueDeclareOk {
        queue: name.into(),
        message_count: 0,
        consumer_count: 0,
    }
}

fn publish(h: &mut H, tag: Tag, routing_key: &str, mandatory: bool, body: &[u8]) {
    h.conn.publish(
        tag,
        "",
        routing_key,
        mandatory,
        false,
        &BasicProperties::default(),
        body,
    );
}

// ----------------------------------------------------------------------
// 1. Handshake.

#[test]
fn handshake_sends_header_start_ok_tune_ok_and_open() {
    let config = Config {
        heartbeat: Some(10),
        vhost: "prod".into(),
        username: "alice".into(),
        password: "s3cret".into(),
        ..Config::default()
    };
    let now = Instant::now();
    let mut conn = Connection::new(config.clone(), CONNECT, now);
    assert!(conn.wants_write());
    // The protocol header goes first, alone.
    assert_eq!(&conn.take_output()[..], b"AMQP\x00\x00\x09\x01");
    assert!(!conn.wants_write());
    feed(&mut conn, now, &method_bytes(0, server_start()));
    let sent = parse_sent(decode_frames(&conn.take_output(), FRAME_MIN_SIZE));
    let [Sent::M(0, Method::ConnectionStartOk(ok))] = &sent[..] else {
        panic!("{sent:?}");
    };
    assert_eq!(ok.mechanism, "PLAIN");
    assert_eq!(&ok.response[..], b"\0alice\0s3cret");
    let caps = ok
        .client_properties
        .get("capabilities")
        .and_then(FieldValue::as_table)
        .unwrap();
    for cap in [
        "consumer_cancel_notify",
        "authentication_failure_close",
        "publisher_confirms",
    ] {
        assert_eq!(caps.get(cap).and_then(FieldValue::as_bool), Some(true));
    }
    assert_eq!(
        ok.client_properties
            .get("product")
            .and_then(FieldValue::as_str),
        Some("puka (rust)")
    );
    // Server heartbeat 60, client wishes 10: 10. Server frame_max 0: ours.
    feed(&mut conn, now, &method_bytes(0, tune(2047, 0, 60)));
    let sent = parse_sent(decode_frames(&conn.take_output(), FRAME_MIN_SIZE));
    assert_eq!(
        sent,
        vec![
            m(
                0,
                ConnectionTuneOk {
                    channel_max: 2047,
                    frame_max: 131_072,
                    heartbeat: 10
                }
            ),
            m(
                0,
                ConnectionOpen {
                    virtual_host: "prod".into()
                }
            ),
        ]
    );
    assert!(conn.poll_event().is_none());
    assert!(!conn.is_open());
    feed(&mut conn, now, &method_bytes(0, ConnectionOpenOk {}));
    assert_matches!(
        conn.poll_event(),
        Some(Event::Complete {
            tag: CONNECT,
            result: Ok(Outcome::Done)
        })
    );
    assert!(conn.poll_event().is_none());
    assert!(conn.is_open());
    assert!(conn.confirms_enabled());
    assert_eq!(
        conn.server_properties()
            .get("product")
            .and_then(FieldValue::as_str),
        Some("RabbitMQ")
    );
    assert_eq!(
        conn.tuned(),
        negotiate::Tuned {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 10
        }
    );
    assert!(conn.take_output().is_empty());
}

/// (server channel_max, frame_max, heartbeat), the client's wishes, and the
/// values agreed.
type TuneCase = (
    (u16, u32, u16),
    (Option<u16>, Option<u32>, Option<u16>),
    (u16, u32, u16),
);

#[test]
fn tune_values_are_negotiated() {
    // (server channel_max, frame_max, heartbeat), (client wishes) -> tune-ok
    let cases: [TuneCase; 6] = [
        ((2047, 131_072, 60), (None, None, None), (2047, 131_072, 60)),
        (
            (2047, 131_072, 60),
            (None, None, Some(10)),
            (2047, 131_072, 10),
        ),
        ((0, 0, 0), (None, None, None), (2047, 131_072, 0)),
        ((0, 0, 0), (Some(10), Some(8192), Some(5)), (10, 8192, 5)),
        // heartbeat Some(0) turns heartbeats off whatever the broker
        // proposes (as the URL documents, like pika).
        (
            (100, 65_536, 60),
            (Some(500), Some(1_000_000), Some(0)),
            (100, 65_536, 0),
        ),
        ((2047, 4096, 30), (None, Some(1), None), (2047, 4096, 30)),
    ];
    for (server, client, want) in cases {
        let config = Config {
            channel_max: client.0,
            frame_max: client.1,
            heartbeat: client.2,
            ..Config::default()
        };
        // drive_handshake checks the tune-ok against negotiate::tune; check
        // the concrete numbers here too.
        let (conn, _) = handshake_with(config, tune(server.0, server.1, server.2));
        let t = conn.tuned();
        assert_eq!(
            (t.channel_max, t.frame_max, t.heartbeat),
            want,
            "{server:?} {client:?}"
        );
    }
}

// ----------------------------------------------------------------------
// 2. A tune below the spec's frame-min-size.

#[test]
fn tune_with_frame_max_below_minimum_closes_with_syntax_error() {
    let now = Instant::now();
    let mut conn = Connection::new(Config::default(), CONNECT, now);
    let _ = conn.take_output();
    feed(&mut conn, now, &method_bytes(0, server_start()));
    let _ = conn.take_output();
    feed(&mut conn, now, &method_bytes(0, tune(2047, 4095, 60)));
    let mut h = H::wrap(conn, now, false);
    // No tune-ok, no open: only connection.close(502).
    let sent = h.sent();
    expect_connection_close(&sent, reply_code::SYNTAX_ERROR);
    let events = h.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_matches!(result_of(&events, CONNECT), Err(Error::BadTune(_)));
    assert!(!h.conn.is_closed());
    assert_matches!(h.conn.error(), Some(Error::BadTune(_)));
    // The broker's close-ok finishes it.
    h.recv(0, ConnectionCloseOk {});
    let events = h.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_matches!(closed_error(&events), Error::BadTune(_));
    assert!(h.conn.is_closed());
    assert!(h.conn.poll_timeout().is_none());
}

// ----------------------------------------------------------------------
// 3. Operations queued before open-ok.

#[test]
fn operations_before_open_ok_are_deferred_then_sent_in_order() {
    let config = Config::default();
    let now = Instant::now();
    let mut conn = Connection::new(config.clone(), CONNECT, now);
    conn.rpc(10, declare("q1"));
    conn.publish(
        11,
        "",
        "q1",
        false,
        false,
        &BasicProperties::default(),
        b"hello",
    );
    // drive_handshake asserts that nothing but the handshake goes out until
    // open-ok: the header, start-ok, then tune-ok + open only.
    drive_handshake(&mut conn, now, &config, default_tune());
    let mut h = H::wrap(conn, now, true);
    assert_eq!(
        h.sent(),
        vec![
            m(1, ChannelOpen {}),
            m(1, declare("q1")),
            m(2, ChannelOpen {}),
            m(2, ConfirmSelect { no_wait: false }),
            publish_sent(2, "", "q1", false, b"hello"),
        ]
    );
    h.recv(1, ChannelOpenOk {});
    h.recv(2, ChannelOpenOk {});
    h.recv(2, ConfirmSelectOk {});
    h.assert_quiet();
    h.recv(1, declare_ok("q1"));
    assert_matches!(h.result(10), Ok(Outcome::QueueDeclared(ok)) if ok == declare_ok("q1"));
    h.recv(
        2,
        BasicAck {
            delivery_tag: 1,
            multiple: false,
        },
    );
    assert_matches!(h.result(11), Ok(Outcome::Done));
}

#[test]
fn unconfirmed_publish_before_open_ok_completes_once_written() {
    let config = Config {
        confirms: Confirms::Off,
        ..Config::default()
    };
    let now = Instant::now();
    let mut conn = Connection::new(config.clone(), CONNECT, now);
    conn.publish(
        11,
        "",
        "q",
        false,
        false,
        &BasicProperties::default(),
        b"early",
    );
    assert!(conn.poll_event().is_none());
    drive_handshake(&mut conn, now, &config, default_tune());
    let mut h = H::wrap(conn, now, true);
    assert!(
        h.events().is_empty(),
        "not complete before its bytes are taken"
    );
    assert_eq!(
        h.sent(),
        vec![
            m(1, ChannelOpen {}),
            publish_sent(1, "", "q", false, b"early")
        ]
    );
    assert_matches!(h.result(11), Ok(Outcome::Done));
}

#[test]
fn written_publishes_come_from_poll_written_or_else_poll_event() {
    let config = Config {
        confirms: Confirms::Off,
        ..Config::default()
    };
    let now = Instant::now();
    let mut conn = Connection::new(config.clone(), CONNECT, now);
    drive_handshake(&mut conn, now, &config, default_tune());
    let props = BasicProperties::default();
    for tag in [21, 22, 23] {
        conn.publish(tag, "", "q", false, false, &props, b"x");
    }
    // Nothing before the bytes are taken; then each once, in order.
    assert!(conn.poll_written().is_none());
    assert!(!conn.take_output().is_empty());
    assert_eq!(conn.poll_written(), Some(21));
    assert_matches!(
        conn.poll_event(),
        Some(Event::Complete {
            tag: 22,
            result: Ok(Outcome::Done)
        })
    );
    assert_eq!(conn.poll_written(), Some(23));
    assert!(conn.poll_written().is_none());
    assert!(conn.poll_event().is_none());
}

#[test]
fn written_bytes_leave_once_whether_a_write_takes_all_or_part() {
    // A socket that takes at most `limit` bytes a call.
    struct Taker {
        out: Vec<u8>,
        limit: usize,
    }
    impl Write for Taker {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let n = b.len().min(self.limit);
            self.out.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let config = Config {
        confirms: Confirms::Off,
        ..Config::default()
    };
    let now = Instant::now();
    let props = BasicProperties::default();
    let mut runs = Vec::new();
    for limit in [usize::MAX, 7] {
        let mut conn = Connection::new(config.clone(), CONNECT, now);
        drive_handshake(&mut conn, now, &config, default_tune());
        let capacity = conn.write_buf.capacity();
        let mut sock = Taker {
            out: Vec::new(),
            limit,
        };
        let mut written = Vec::new();
        let mut start = None;
        for tag in 1..=10_000u64 {
            conn.publish(tag, "", "q", false, false, &props, &tag.to_be_bytes());
            conn.write_to(&mut sock).unwrap();
            assert!(!conn.wants_write());
            written.extend(std::iter::from_fn(|| conn.poll_written()));
            if limit == usize::MAX {
                // Whole writes: the next frames go where these were.
                let at = conn.write_buf.as_ptr();
                assert_eq!(*start.get_or_insert(at), at, "write {tag}");
            }
        }
        // Each publish completes once, in order, after its bytes left.
        assert_eq!(written, (1..=10_000).collect::<Vec<_>>());
        if limit == usize::MAX {
            // Whole writes: the buffer is reused where it is, never grown.
            assert!(conn.write_buf.capacity() <= capacity);
        }
        runs.push(sock.out);
    }
    // The same bytes, once each, in order, however the writes were cut.
    assert_eq!(runs[0], runs[1]);
    let frames = decode_frames(&runs[0], FRAME_MIN_SIZE);
    assert_eq!(
        frames.len(),
        3 * 10_000 + 1,
        "each publish 3 frames, plus channel.open"
    );
}

// ----------------------------------------------------------------------
// 4. Pooled channels.

#[test]
fn rpc_uses_a_pooled_channel_and_reuses_it() {
    let mut h = H::new(Config::default());
    h.conn.rpc(10, declare("q"));
    assert_eq!(h.sent(), vec![m(1, ChannelOpen {}), m(1, declare("q"))]);
    h.recv(1, ChannelOpenOk {});
    h.assert_quiet();
    let ok = QueueDeclareOk {
        queue: "q".into(),
        message_count: 3,
        consumer_count: 1,
    };
    h.recv(1, ok.clone());
    assert_matches!(h.result(10), Ok(Outcome::QueueDeclared(got)) if got == ok);
    assert_eq!(h.conn.open_channels(), 1);

    // The channel is idle again: no second channel.open.
    let exchange = ExchangeDeclare {
        exchange: "x".into(),
        kind: "topic".into(),
        durable: true,
        ..Default::default()
    };
    h.conn.rpc(11, exchange.clone().into());
    assert_eq!(h.sent(), vec![m(1, exchange)]);
    h.recv(1, ExchangeDeclareOk {});
    assert_matches!(h.result(11), Ok(Outcome::Done));

    let purge = QueuePurge {
        queue: "q".into(),
        no_wait: false,
    };
    h.conn.rpc(12, purge.clone().into());
    assert_eq!(h.sent(), vec![m(1, purge)]);
    h.recv(1, QueuePurgeOk { message_count: 7 });
    assert_matches!(h.result(12), Ok(Outcome::MessageCount(7)));

    // Two at once: the second needs a channel of its own.
    h.conn.rpc(13, declare("a"));
    h.conn.rpc(14, declare("b"));
    assert_eq!(
        h.sent(),
        vec![m(1, declare("a")), m(2, ChannelOpen {}), m(2, declare("b"))]
    );
    h.recv(2, ChannelOpenOk {});
    h.recv(2, declare_ok("b"));
    assert_matches!(h.result(14), Ok(Outcome::QueueDeclared(_)));
    h.recv(1, declare_ok("a"));
    assert_matches!(h.result(13), Ok(Outcome::QueueDeclared(_)));
    assert_eq!(h.conn.open_channels(), 2);
}

#[test]
fn rpc_refuses_methods_that_are_not_pool_operations() {
    let mut h = H::new(Config::default());
    h.conn.rpc(
        10,
        BasicQos {
            prefetch_size: 0,
            prefetch_count: 1,
            global: false,
        }
        .into(),
    );
    assert_matches!(h.result(10), Err(Error::InvalidArgument(_)));
    assert!(h.sent().is_empty());
    assert_eq!(h.conn.open_channels(), 0);
}

#[test]
fn rpc_with_no_wait_does_not_hang() {
    // The broker never answers a no_wait method; the connection clears the
    // flag so every operation completes on its reply, and the pooled
    // channel stays usable.
    let mut h = H::new(Config::default());
    h.conn.rpc(10, declare("warm-up"));
    let _ = h.sent();
    h.recv(1, ChannelOpenOk {});
    h.recv(1, declare_ok("warm-up"));
    assert_matches!(h.result(10), Ok(_));
    h.conn.rpc(
        11,
        QueueDeclare {
            queue: "q".into(),
            no_wait: true,
            ..Default::default()
        }
        .into(),
    );
    assert_eq!(h.sent(), vec![m(1, declare("q"))], "sent without no_wait");
    h.recv(1, declare_ok("q"));
    assert_matches!(h.result(11), Ok(Outcome::QueueDeclared(_)));
    h.conn.rpc(12, declare("next"));
    assert_eq!(h.sent(), vec![m(1, declare("next"))]);
    h.recv(1, declare_ok("next"));
    assert_matches!(h.result(12), Ok(Outcome::QueueDeclared(_)));
}

// ----------------------------------------------------------------------
// 5. Channel errors stay on their channel.

#[test]
fn channel_error_fails_only_its_operation_and_frees_the_channel() {
    let mut h = H::new(Config::default());
    let passive = QueueDeclare {
        queue: "missing".into(),
        passive: true,
        ..Default::default()
    };
    h.conn.rpc(10, passive.clone().into());
    h.conn.rpc(11, declare("other"));
    assert_eq!(
        h.sent(),
        vec![
            m(1, ChannelOpen {}),
            m(1, passive),
            m(2, ChannelOpen {}),
            m(2, declare("other")),
        ]
    );
    h.recv(1, ChannelOpenOk {});
    h.recv(2, ChannelOpenOk {});
    let text = "NOT_FOUND - no queue 'missing' in vhost '/'";
    h.recv(
        1,
        ChannelClose {
            reply_code: 404,
            reply_text: text.into(),
            class_id: 50,
            method_id: 10,
        },
    );
    assert_eq!(h.sent(), vec![m(1, ChannelCloseOk {})]);
    match h.result(10) {
        Err(Error::NotFound(r)) => {
            assert_eq!(
                (r.code, r.text.as_str(), r.class_id, r.method_id),
                (404, text, 50, 10)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.conn.open_channels(), 1);
    assert!(h.conn.is_open());
    // The other channel is unaffected.
    h.recv(2, declare_ok("other"));
    assert_matches!(h.result(11), Ok(Outcome::QueueDeclared(_)));
    // The idle channel 2 serves the next op; the one after reopens id 1.
    h.conn.rpc(12, declare("x"));
    h.conn.rpc(13, declare("y"));
    assert_eq!(
        h.sent(),
        vec![m(2, declare("x")), m(1, ChannelOpen {}), m(1, declare("y"))]
    );
    h.recv(2, declare_ok("x"));
    assert_matches!(h.result(12), Ok(_));
    h.recv(1, ChannelOpenOk {});
    h.recv(1, declare_ok("y"));
    assert_matches!(h.result(13), Ok(Outcome::QueueDeclared(ok)) if ok.queue == "y");
}

#[test]
fn consume_on_a_missing_queue_fails_the_consumer() {
    let mut h = H::new(Config::default());
    h.conn.consume(20, queues("nope"), false, 0);
    let _ = h.sent();
    h.recv(1, ChannelOpenOk {});
    h.recv(
        1,
        ChannelClose {
            reply_code: 404,
            reply_text: "NOT_FOUND - no queue 'nope'".into(),
            class_id: 60,
            method_id: 20,
        },
    );
    assert_eq!(h.sent(), vec![m(1, ChannelCloseOk {})]);
    assert_matches!(h.result(20), Err(Error::NotFound(r)) if r.code == 404);
    assert_eq!(h.conn.open_channels(), 0);
    // Cancelling it now: the consumer is gone.
    h.conn.cancel(21, 20);
    assert_matches!(h.result(21), Err(Error::UnknownPromise));
}

// ----------------------------------------------------------------------
// 6. Publisher confirms.

#[test]
fn publisher_confirms_ack_multiple_nack_and_no_route() {
    let mut h = H::new(Config::default());
    assert!(h.conn.confirms_enabled());
    publish(&mut h, 1, "rk", false, b"m1");
    publish(&mut h, 2, "rk", false, b"m2");
    publish(&mut h, 3, "rk", false, b"m3");
    assert_eq!(
        h.sent(),
        vec![
            m(1, ChannelOpen {}),
            m(1, ConfirmSelect { no_wait: false }),
            publish_sent(1, "", "rk", false, b"m1"),
            publish_sent(1, "", "rk", false, b"m2"),
            publish_sent(1, "", "rk", false, b"m3"),
        ]
    );
    assert!(
        h.events().is_empty(),
        "confirmed publishes wait for the broker"
    );
    h.recv(1, ChannelOpenOk {});
    h.recv(1, ConfirmSelectOk {});
    h.assert_quiet();
    h.recv(
        1,
        BasicAck {
            delivery_tag: 2,
            multiple: true,
        },
    );
    let events = h.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_matches!(
        &events[0],
        Event::Complete {
            tag: 1,
            result: Ok(Outcome::Done)
        }
    );
    assert_matches!(
        &events[1],
        Event::Complete {
            tag: 2,
            result: Ok(Outcome::Done)
        }
    );
    h.recv(
        1,
        BasicNack {
            delivery_tag: 3,
            multiple: false,
            requeue: false,
        },
    );
    assert_matches!(h.result(3), Err(Error::Nacked));

    // Mandatory and unroutable: basic.return, then the ack of the same seq.
    publish(&mut h, 4, "nowhere", true, b"lost");
    assert_eq!(
        h.sent(),
        vec![publish_sent(1, "", "nowhere", true, b"lost")]
    );
    h.recv(
        1,
        BasicReturn {
            reply_code: 312,
            reply_text: "NO_ROUTE".into(),
            exchange: "".into(),
            routing_key: "nowhere".into(),
        },
    );
    h.recv_content(1, &BasicProperties::default(), b"lost");
    assert!(h.events().is_empty(), "no Returned event in confirm mode");
    h.recv(
        1,
        BasicAck {
            delivery_tag: 4,
            multiple: false,
        },
    );
    assert_matches!(h.result(4), Err(Error::NoRoute(r)) if r.code == 312 && r.text == "NO_ROUTE");

    // The return is not carried over to the next message; an empty body has
    // a header and no body frame.
    publish(&mut h, 5, "rk", false, b"");
    assert_eq!(h.sent(), vec![publish_sent(1, "", "rk", false, b"")]);
    h.recv(
        1,
        BasicAck {
            delivery_tag: 5,
            multiple: false,
        },
    );
    assert_matches!(h.result(5), Ok(Outcome::Done));
}

#[test]
fn single_confirms_settle_in_any_order_and_only_once() {
    let mut h = H::new(Config::default());
    for tag in 1..=3 {
        publish(&mut h, tag, "rk", false, b"m");
    }
    let _ = h.sent();
    h.recv(1, ChannelOpenOk {});
    h.recv(1, ConfirmSelectOk {});
    // Not the oldest (searched), then the oldest twice (the front).
    for (seq, want) in [(3, 3), (1, 1), (2, 2)] {
        h.recv(
            1,
            BasicAck {
                delivery_tag: seq,
                multiple: false,
            },
        );
        let events = h.events();
        assert_eq!(events.len(), 1, "ack {seq}: {events:?}");
        assert_matches!(&events[0], Event::Complete { tag, result: Ok(Outcome::Done) } if *tag == want);
    }
    // A repeated confirm settles nothing.
    h.recv(
        1,
        BasicAck {
            delivery_tag: 2,
            multiple: false,
        },
    );
    h.assert_quiet();
}

#[test]
fn publish_channel_closed_by_broker_fails_unconfirmed_and_reopens() {
    let mut h = H::new(Config::default());
    h.conn.publish(
        1,
        "no-such-x",
        "rk",
        false,
        false,
        &BasicProperties::default(),
        b"a",
    );
    h.conn.publish(
        2,
        "no-such-x",
        "rk",
        false,
        false,
        &BasicProperties::default(),
        b"b",
    );
    let _ = h.sent();
    h.recv(1, ChannelOpenOk {});
    h.recv(1, ConfirmSelectOk {});
    h.recv(
        1,
        ChannelClose {
            reply_code: 404,
            reply_text: "NOT_FOUND - no exchange 'no-such-x'".into(),
            class_id: 60,
            method_id: 40,
        },
    );
    assert_eq!(h.sent(), vec![m(1, ChannelCloseOk {})]);
    let events = h.events();
    assert_eq!(events.len(), 2);
    // Two unconfirmed: which one the broker refused (and whether the other
    // was routed) cannot be known.
    for tag in [1, 2] {
        assert_matches!(
            result_of(&events, tag),
            Err(Error::OutcomeUnknown(e)) if matches!(**e, Error::NotFound(_))
        );
    }
    // A new publish channel, in confirm mode again, numbering from 1.
    publish(&mut h, 3, "rk", false, b"c");
    assert_eq!(
        h.sent(),
        vec![
            m(1, ChannelOpen {}),
            m(1, ConfirmSelect { no_wait: false }),
            publish_sent(1, "", "rk", false, b"c"),
        ]
    );
    h.recv(1, ChannelOpenOk {});
    h.recv(1, ConfirmSelectOk {});
    h.recv(
        1,
        BasicAck {
            delivery_tag: 1,
            multiple: false,
        },
    );
    assert_matches!(h.result(3), Ok(Outcome::Done));
}

#[test]
fn large_publish_is_split_to_frame_max() {
    let mut h = H::new(Config::default());
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    publish(&mut h, 1, "big", false, &body);
    let out = h.conn.take_output();
    let frames = decode_frames(&out, 131_072);
    let body_frames = frames
        .iter()
        .filter(|f| matches!(f, Frame::Body { .. }))
        .count();
    assert_eq!(body_frames, 3, "300000 bytes in frames of at most 131064");
    let sent = parse_sent(frames);
    assert_eq!(sent.last(), Some(&publish_sent(1, "", "big", false, &body)));
}

// ----------------------------------------------------------------------
// 7. Confirms off.

/// A socket that takes at most `room` bytes, then would block.
struct Limited {
    taken: Vec<u8>,
    room: usize,
}

impl io::Write for Limited {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        self.taken.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn confirms_off_publish_completes_when_its_bytes_are_written() {
    let mut h = H::new(Config {
        confirms: Confirms::Off,
        ..Config::default()
    });
    assert!(!h.conn.confirms_enabled());
    publish(&mut h, 1, "q", false, b"first");
    publish(&mut h, 2, "q", false, b"second");
    assert!(h.events().is_empty(), "nothing written yet");
    let second_len = {
        let mut b = BytesMut::new();
        frame::encode_basic_publish(
            &mut b,
            1,
            "",
            "q",
            false,
            false,
            &BasicProperties::default(),
            b"second",
            131_072,
        )
        .unwrap();
        b.len()
    };
    let total = h.conn.pending_write_bytes();
    // Write everything but the second publish: only the first completes.
    let mut sock = Limited {
        taken: Vec::new(),
        room: total - second_len - 1,
    };
    h.conn.write_to(&mut sock).unwrap();
    assert!(
        h.events().is_empty(),
        "one byte of the first is still queued"
    );
    sock.room = 1;
    h.conn.write_to(&mut sock).unwrap();
    assert_matches!(h.result(1), Ok(Outcome::Done));
    sock.room = usize::MAX;
    h.conn.write_to(&mut sock).unwrap();
    assert_matches!(h.result(2), Ok(Outcome::Done));
    assert_eq!(
        parse_sent(decode_frames(&sock.taken, 131_072)),
        vec![
            m(1, ChannelOpen {}),
            publish_sent(1, "", "q", false, b"first"),
            publish_sent(1, "", "q", false, b"second"),
        ]
    );
    // take_output counts as written too.
    publish(&mut h, 3, "q", false, b"third");
    assert!(h.events().is_empty());
    assert_eq!(h.sent(), vec![publish_sent(1, "", "q", false, b"third")]);
    assert_matches!(h.result(3), Ok(Outcome::Done));
}

#[test]
fn confirms_off_mandatory_return_is_an_event() {
    let mut h = H::new(Config {
        confirms: Confirms::Off,
        ..Config::default()
    });
    publish(&mut h, 1, "nowhere", true, b"lost");
    let _ = h.sent();
    assert_matches!(h.result(1), Ok(Outcome::Done));
    h.recv(1, ChannelOpenOk {});
    h.recv(
        1,
        BasicReturn {
            reply_code: 312,
            reply_text: "NO_ROUTE".into(),
            exchange: "".into(),
            routing_key: "nowhere".into(),
        },
    );
    h.recv_content(
        1,
        &BasicProperties::default().with_message_id("id-1"),
        b"lost",
    );
    let events = h.events();
    match &events[..] {
        [Event::Returned(r)] => {
            assert_eq!(r.reply_code, 312);
            assert_eq!(r.reply_text, "NO_ROUTE");
            assert_eq!(r.message.routing_key(), "nowhere");
            assert_eq!(&r.message.body[..], b"lost");
            assert_eq!(r.message.properties.message_id(), Some("id-1"));
            assert!(!r.message.needs_ack());
        }
        other => panic!("{other:?}"),
    }
}

// ----------------------------------------------------------------------
// 8. Consumers.

#[test]
fn consumer_receives_split_and_whole_deliveries_and_acks() {
    let mut h = H::new(Config::default());
    h.consumer(20, 1, "ctag1", 10);
    let props = BasicProperties::default()
        .with_content_type("text/plain")
        .with_delivery_mode(2)
        .with_message_id("m-1")
        .with_header("x-retry", 3i32);
    h.recv(
        1,
        BasicDeliver {
            consumer_tag: "ctag1".into(),
            delivery_tag: 1,
            redelivered: true,
            exchange: "ex".into(),
            routing_key: "rk".into(),
        },
    );
    h.recv_raw(&header_bytes(1, 60, 11, props.clone()));
    h.recv_raw(&body_bytes(1, b"hello "));
    assert!(h.events().is_empty(), "the body is not complete yet");
    h.recv_raw(&body_bytes(1, b"world"));
    let events = h.events();
    assert_eq!(events.len(), 1);
    let d1 = deliveries(&events, 20).pop().expect("a delivery");
    assert_eq!(d1.delivery_tag, 1);
    assert!(d1.redelivered);
    assert_eq!(d1.exchange(), "ex");
    assert_eq!(d1.routing_key(), "rk");
    assert_eq!(d1.consumer_tag(), "ctag1");
    assert_eq!(d1.message_count, None);
    assert_eq!(d1.properties, props);
    assert_eq!(&d1.body[..], b"hello world");
    assert!(d1.needs_ack());

    h.deliver(1, "ctag1", 2, b"x");
    let d2 = deliveries(&h.events(), 20).pop().unwrap();
    assert_eq!(
        (d2.delivery_tag, &d2.body[..], d2.redelivered),
        (2, &b"x"[..], false)
    );

    h.conn.ack(&d1, false).unwrap();
    assert_eq!(
        lowest_acks(h.sent()),
        vec![m(
            1,
            BasicAck {
                delivery_tag: 1,
                multiple: false
            }
        )]
    );
    assert_matches!(h.conn.ack(&d1, false), Err(Error::UnknownDeliveryTag(1)));
    assert!(
        h.conn.take_output().is_empty(),
        "a refused ack sends nothing"
    );

    // Multiple: acking 4 settles 2, 3 and 4.
    h.deliver(1, "ctag1", 3, b"3");
    h.deliver(1, "ctag1", 4, b"4");
    let ds = deliveries(&h.events(), 20);
    assert_eq!(ds.len(), 2);
    h.conn.ack(&ds[1], true).unwrap();
    assert_eq!(
        h.sent(),
        vec![m(
            1,
            BasicAck {
                delivery_tag: 4,
                multiple: true
            }
        )]
    );
    assert_matches!(h.conn.ack(&d2, false), Err(Error::UnknownDeliveryTag(2)));
    assert_matches!(
        h.conn.nack(&ds[0], false, true),
        Err(Error::UnknownDeliveryTag(3))
    );
    assert!(h.conn.take_output().is_empty());

    // Reject and nack.
    h.deliver(1, "ctag1", 5, b"5");
    h.deliver(1, "ctag1", 6, b"6");
    let ds = deliveries(&h.events(), 20);
    h.conn.reject(&ds[0], true).unwrap();
    h.conn.nack(&ds[1], false, false).unwrap();
    assert_eq!(
        h.sent(),
        vec![
            m(
                1,
                BasicReject {
                    delivery_tag: 5,
                    requeue: true
                }
            ),
            m(
                1,
                BasicNack {
                    delivery_tag: 6,
                    multiple: false,
                    requeue: false
                }
            ),
        ]
    );
    // The consumer tag never completed: it is still running.
    assert!(!h.completed.contains_key(&20));
}

fn deferred_acks() -> Config {
    Config {
        ack_timing: AckTiming::Deferred,
        ..Config::default()
    }
}

#[test]
fn acks_are_due_at_once_by_default() {
    let mut h = H::new(Config::default());
    h.consumer(20, 1, "c", 10);
    h.deliver(1, "c", 1, b"x");
    h.deliver(1, "c", 2, b"y");
    let ds = deliveries(&h.events(), 20);
    h.conn.ack(&ds[0], false).unwrap();
    // Prompt: the ack wants the socket now, not after ACK_DELAY.
    assert!(h.conn.wants_write());
    assert_eq!(h.conn.ack_deadline(), None);
    h.conn.ack(&ds[1], false).unwrap();
    // Acks made before the write coalesce into one frame.
    assert_eq!(
        h.sent(),
        vec![m(
            1,
            BasicAck {
                delivery_tag: 2,
                multiple: true
            }
        )]
    );
    assert!(!h.conn.wants_write());
}

#[test]
fn acks_of_a_consumer_wait_while_half_its_window_is_free() {
    let ack = |tag| {
        m(
            1,
            BasicAck {
                delivery_tag: tag,
                multiple: true,
            },
        )
    };
    let mut h = H::new(deferred_acks());
    h.consumer(20, 1, "c", 10);
    for tag in 1..=3 {
        h.deliver(1, "c", tag, b"x");
    }
    let ds = deliveries(&h.events(), 20);
    // Outstanding at the broker: 2 unacked + 1 acked but unsent = 3 of 10.
    h.conn.ack(&ds[0], false).unwrap();
    h.conn.ack(&ds[1], false).unwrap();
    assert!(!h.conn.wants_write(), "acks wait: the broker has room");
    let deadline = h.now + ACK_DELAY;
    assert_eq!(h.conn.poll_timeout(), Some(deadline));
    // Two more arrive; acking the third makes 2 + 3 = 5 of 10: due now.
    h.deliver(1, "c", 4, b"x");
    h.deliver(1, "c", 5, b"x");
    let more = deliveries(&h.events(), 20);
    h.conn.ack(&ds[2], false).unwrap();
    assert!(h.conn.wants_write(), "half the window is held: send");
    assert_eq!(h.sent(), vec![ack(3)]);
    // A lone ack waits for ACK_DELAY at most.
    h.conn.ack(&more[0], false).unwrap();
    assert!(!h.conn.wants_write());
    h.conn
        .handle_timeout(h.now + ACK_DELAY - Duration::from_millis(1));
    assert!(!h.conn.wants_write());
    h.conn.handle_timeout(h.now + ACK_DELAY);
    assert!(h.conn.wants_write());
    assert_eq!(h.sent(), vec![ack(4)]);
    // After a basic.qos from the user, the window is unknown: no waiting.
    h.conn.qos(30, 20, 0, 100, false);
    let _ = h.sent();
    h.conn.ack(&more[1], false).unwrap();
    assert!(h.conn.wants_write());
    assert_eq!(h.sent(), vec![ack(5)]);
    // A prefetch of 1 never waits.
    let mut h = H::new(Config::default());
    h.consumer(20, 1, "c", 1);
    h.deliver(1, "c", 1, b"x");
    let ds = deliveries(&h.events(), 20);
    h.conn.ack(&ds[0], false).unwrap();
    assert!(h.conn.wants_write());
}

#[test]
fn consecutive_acks_coalesce_without_changing_their_meaning() {
    let mut h = H::new(deferred_acks());
    h.consumer(20, 1, "c", 0);
    for tag in 1..=5 {
        h.deliver(1, "c", tag, b"x");
    }
    let ds = deliveries(&h.events(), 20);
    assert_eq!(ds.len(), 5);
    // 1 then 2: one ack of 2 with multiple.
    h.conn.ack(&ds[0], false).unwrap();
    h.conn.ack(&ds[1], false).unwrap();
    // Deferred (see acks_of_a_consumer_wait_while_half_its_window_is_free),
    // but any write takes it.
    assert!(!h.conn.wants_write());
    assert_eq!(
        h.sent(),
        vec![m(
            1,
            BasicAck {
                delivery_tag: 2,
                multiple: true
            }
        )]
    );
    // 4 while 3 is outstanding: exactly 4, not multiple.
    h.conn.ack(&ds[3], false).unwrap();
    assert_eq!(
        h.sent(),
        vec![m(
            1,
            BasicAck {
                delivery_tag: 4,
                multiple: false
            }
        )]
    );
    // 3 (now the lowest) then a reject of 5: order kept.
    h.conn.ack(&ds[2], false).unwrap();
    h.conn.reject(&ds[4], false).unwrap();
    assert_eq!(
        lowest_acks(h.sent()),
        vec![
            m(
                1,
                BasicAck {
                    delivery_tag: 3,
                    multiple: false
                }
            ),
            m(
                1,
                BasicReject {
                    delivery_tag: 5,
                    requeue: false
                }
            ),
        ]
    );
    for d in &ds {
        assert_matches!(h.conn.ack(d, false), Err(Error::UnknownDeliveryTag(_)));
    }
    assert!(h.conn.take_output().is_empty());
}

#[test]
fn ack_before_close_is_sent_before_connection_close() {
    let mut h = H::new(Config::default());
    h.consumer(20, 1, "c", 0);
    h.deliver(1, "c", 1, b"x");
    let d = deliveries(&h.events(), 20).pop().unwrap();
    h.conn.ack(&d, false).unwrap();
    h.conn.close(50, h.now, Duration::from_secs(1));
    // The ack was made while the connection was open: it must reach the
    // broker, and before connection.close (after which the broker
    // discards everything but close and close-ok).
    let sent = lowest_acks(h.sent());
    assert_eq!(
        sent,
        vec![
            m(
                1,
                BasicAck {
                    delivery_tag: 1,
                    multiple: false
                }
            ),
            m(
                0,
                ConnectionClose {
                    reply_code: 200,
                    reply_text: "bye".into(),
                    class_id: 0,
                    method_id: 0
                }
            ),
        ]
    );
}

#[test]
fn delivery_fed_one_byte_at_a_time() {
    let mut h = H::new(Config::default());
    h.consumer(20, 1, "c", 0);
    let mut bytes = method_bytes(
        1,
        BasicDeliver {
            consumer_tag: "c".into(),
            delivery_tag: 1,
            redelivered: false,
            exchange: "".into(),
            routing_key: "q".into(),
        },
    );
    encode_content(&mut bytes, 1, 60, &BasicProperties::default(), b"abc", 4096).unwrap();
    bytes.extend_from_slice(&HEARTBEAT);
    for (i, b) in bytes.iter().enumerate() {
        h.recv_raw(&[*b]);
        if i + 1 < bytes.len() - HEARTBEAT.len() {
            assert!(h.events().is_empty(), "delivered early at byte {i}");
        }
    }
    let ds = deliveries(&h.events(), 20);
    assert_eq!(ds.len(), 1);
    assert_eq!(&ds[0].body[..], b"abc");
    assert!(h.conn.is_open());
}

#[test]
fn no_ack_consumer_deliveries_need_no_ack() {
    let mut h = H::new(Config::default());
    h.conn.consume(20, queues("q"), true, 0);
    assert_eq!(
        h.sent(),
        vec![
            m(1, ChannelOpen {}),
            m(
                1,
                BasicConsume {
                    queue: "q".into(),
                    no_ack: true,
                    ..Default::default()
                }
            ),
        ]
    );
    h.recv(1, ChannelOpenOk {});
    h.recv(
        1,
        BasicConsumeOk {
            consumer_tag: "c".into(),
        },
    );
    h.deliver(1, "c", 1, b"x");
    let d = deliveries(&h.events(), 20).pop().unwrap();
    assert!(!d.needs_ack());
    assert_matches!(h.conn.ack(&d, false), Err(Error::UnknownDeliveryTag(1)));
    assert!(h.conn.take_output().is_empty());
}

#[test]
fn ack_after_channel_reopened_under_same_id_is_refused() {
    let mut h = H::new(Config::default());
    h.consumer(20, 1, "c", 0);
    h.deliver(1, "c", 1, b"old");
    let old = deliveries(&h.events(), 20).pop().unwrap();
    h.recv(
        1,
        ChannelClose {
            reply_code: 406,
            reply_text: "PRECONDITION_FAILED - unknown delivery tag 9".into(),
            class_id: 60,
            method_id: 80,
        },
    );
    assert_eq!(h.sent(), vec![m(1, ChannelCloseOk {})]);
    assert_matches!(h.result(20), Err(Error::PreconditionFailed(_)));
    // A new consumer gets channel 1 again and a delivery with tag 1.
    h.consumer(21, 1, "c2", 0);
    h.deliver(1, "c2", 1, b"new");
    let new = deliveries(&h.events(), 21).pop().unwrap();
    assert_matches!(h.conn.ack(&old, false), Err(Error::UnknownDeliveryTag(1)));
    assert!(
        h.conn.take_output().is_empty(),
        "must not ack the new channel's tag 1"
    );
    h.conn.ack(&new, false).unwrap();
    assert_eq!(
        lowest_acks(h.sent()),
        vec![m(
            1,
            BasicAck {
                delivery_tag: 1,
                multiple: false
            }
        )]
    );
}

// ----------------------------------------------------------------------
// 9. Cancellation.

#[test]
fn server_cancel_fails_the_consumer_and_closes_its_channel() {
    let mut h = H::new(Config::default());
    h.consumer(20, 1, "ctag1", 0);
    h.recv(
        1,
        BasicCancel {
            consumer_tag: "ctag1".into(),
            no_wait: false,
        },
    );
    assert_eq!(
        h.sent(),
        vec![
            m(
                1,
                BasicCancelOk {
                    consumer_tag: "ctag1".into()
                }
            ),
            m(
                1,
                ChannelClose {
                    reply_code: 200,
                    reply_text: "done".into(),
                    class_id: 0,
                    method_id: 0
                }
            ),
        ]
    );
    assert_matches!(h.result(20), Err(Error::ConsumerCancelled { .. }));
    h.recv(1, ChannelCloseOk {});
    assert_eq!(h.conn.open_channels(), 0);
    h.assert_quiet();

    // no_wait: no cancel-ok; with a delivery unacked the channel stays open
    // until it is settled.
    h.consumer(21, 1, "ctag2", 0);
    h.deliver(1, "ctag2", 1, b"x");
    let d = deliveries(&h.events(), 21).pop().unwrap();
    h.recv(
        1,
        BasicCancel {
            consumer_tag: "ctag2".into(),
            no_wait: true,
        },
    );
    assert!(h.sent().is_empty());
    assert_matches!(h.result(21), Err(Error::ConsumerCancelled { .. }));
    h.conn.ack(&d, false).unwrap();
    assert_eq!(
        lowest_acks(h.sent()),
        vec![
            m(
                1,
                BasicAck {
                    delivery_tag: 1,
                    multiple: false
                }
            ),
            m(
                1,
                ChannelClose {
                    reply_code: 200,
                    reply_text: "done".into(),
                    class_id: 0,
                    method_id: 0
                }
            ),
        ]
    );
}

#[test]
fn user_cancel_ends_the_consumer_and_closes_after_the_last_ack() {
    let mut h = H::new(Config::default());
    h.consumer(20, 1, "ctag1", 0);
    h.deliver(1, "ctag1", 1, b"x");
    let d = deliveries(&h.events(), 20).pop().unwrap();
    h.conn.cancel(21, 20);
    assert_eq!(
        h.sent(),
        vec![m(
            1,
            BasicCancel {
                consumer_tag: "ctag1".into(),
                no_wait: false
            }
        )]
    );
    assert!(h.events().is_empty());
    h.recv(
        1,
        BasicCancelOk {
            consumer_tag: "ctag1".into(),
        },
    );
    let events = h.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_matches!(
        &events[0],
        Event::Complete {
            tag: 21,
            result: Ok(Outcome::Done)
        }
    );
    assert_matches!(&events[1], Event::ConsumerEnded { tag: 20 });
    // One delivery is still unacked: the channel stays open.
    assert!(h.sent().is_empty());
    h.conn.ack(&d, false).unwrap();
    assert_eq!(
        lowest_acks(h.sent()),
        vec![
            m(
                1,
                BasicAck {
                    delivery_tag: 1,
                    multiple: false
                }
            ),
            m(
                1,
                ChannelClose {
                    reply_code: 200,
                    reply_text: "done".into(),
                    class_id: 0,
                    method_id: 0
                }
            ),
        ]
    );
    h.recv(1, ChannelCloseOk {});
    assert_eq!(h.conn.open_channels(), 0);
    h.assert_quiet();
    assert!(
        !h.completed.contains_key(&20),
        "a cancelled consumer ends with ConsumerEnded"
    );
    // Cancelling an unknown consumer.
    h.conn.cancel(22, 20);
    assert_matches!(h.result(22), Err(Error::UnknownPromise));
}

#[test]
fn cancel_before_consume_ok_cancels_when_it_arrives() {
    let mut h = H::new(Config::default());
    h.conn.consume(20, queues("q"), false, 0);
    let _ = h.sent();
    h.conn.cancel(21, 20);
    assert!(h.sent().is_empty());
    h.recv(1, ChannelOpenOk {});
    h.recv(
        1,
        BasicConsumeOk {
            consumer_tag: "late".into(),
        },
    );
    assert_eq!(
        h.sent(),
        vec![m(
            1,
            BasicCancel {
                consumer_tag: "late".into(),
                no_wait: false
            }
        )]
    );
    h.recv(
        1,
        BasicCancelOk {
            consumer_tag: "late".into(),
        },
    );
    let events = h.events();
    assert_matches!(result_of(&events, 21), Ok(Outcome::Done));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::ConsumerEnded { tag: 20 })));
}

#[test]
fn cancel_twice_completes_both_tags() {
    let mut h = H::new(Config::default());
    h.consumer(20, 1, "c", 0);
    h.conn.cancel(21, 20);
    h.conn.cancel(22, 20);
    let _ = h.sent();
    h.recv(
        1,
        BasicCancelOk {
            consumer_tag: "c".into(),
        },
    );
    // Whatever the broker does with a second basic.cancel, let it answer.
    h.recv(
        1,
        BasicCancelOk {
            consumer_tag: "c".into(),
        },
    );
    let _ = h.sent();
    let _ = h.events();
    // Both cancel operations must have completed (exactly once each).
    assert_eq!(
        h.completed.get(&21),
        Some(&1),
        "first cancel tag never completed"
    );
    assert_eq!(
        h.completed.get(&22),
        Some(&1),
        "second cancel tag never completed"
    );
}

#[test]
fn cancel_after_consumer_ended_completes() {
    let mut h = H::new(Config::default());
    h.consumer(20, 1, "c", 0);
    h.deliver(1, "c", 1, b"x");
    let _unacked = deliveries(&h.events(), 20).pop().unwrap();
    h.conn.cancel(21, 20);
    let _ = h.sent();
    h.recv(
        1,
        BasicCancelOk {
            consumer_tag: "c".into(),
        },
    );
    let _ = h.events();
    // The consumer has ended but its channel waits for the unacked message;
    // a second cancel must still complete, at once.
    h.conn.cancel(22, 20);
    let _ = h.sent();
    let events = h.events();
    assert_matches!(
        result_of(&events, 22),
        Ok(Outcome::Done) | Err(Error::UnknownPromise)
    );
}

// ----------------------------------------------------------------------
// 10. basic.get.

#[test]
fn a_get_whose_queue_name_cannot_be_encoded_fails_alone() {
    let mut h = H::new(Config::default());
    h.conn.basic_get(30, "q", true);
    h.recv(1, ChannelOpenOk {});
    h.recv(1, BasicGetEmpty);
    assert_matches!(h.result(30), Ok(Outcome::Get(None)));
    let _ = h.sent();
    // 256 bytes do not fit a shortstr: the get fails, nothing is sent, and
    // the channel serves the next get.
    h.conn.basic_get(31, &"x".repeat(256), false);
    assert_matches!(h.result(31), Err(Error::InvalidArgument(_)));
    assert!(h.sent().is_empty());
    h.conn.basic_get(32, &"y".repeat(255), false);
    assert_eq!(
        h.sent(),
        vec![m(
            1,
            BasicGet {
                queue: "y".repeat(255).into(),
                no_ack: false
            }
        )]
    );
    assert!(h.conn.is_open());
}

#[test]
fn basic_get_ok_and_empty() {
    let mut h = H::new(Config::default());
    h.conn.basic_get(30, "q", false);
    assert_eq!(
        h.sent(),
        vec![
            m(1, ChannelOpen {}),
            m(
                1,
                BasicGet {
                    queue: "q".into(),
                    no_ack: false
                }
            ),
        ]
    );
    h.recv(1, ChannelOpenOk {});
    h.recv(
        1,
        BasicGetOk {
            delivery_tag: 1,
            redelivered: true,
            exchange: "ex".into(),
            routing_key: "q".into(),
            message_count: 5,
        },
    );
    assert!(h.events().is_empty(), "waits for the content");
    let props = BasicProperties::default().with_content_type("application/json");
    h.recv_content(1, &props, b"{\"n\":1}");
    let d = match h.result(30) {
        Ok(Outcome::Get(Some(d))) => d,
        other => panic!("{other:?}"),
    };
    assert_eq!(d.delivery_tag, 1);
    assert!(d.redelivered);
    assert_eq!(d.message_count, Some(5));
    assert_eq!(d.exchange(), "ex");
    assert_eq!(d.routing_key(), "q");
    assert_eq!(d.consumer_tag(), "");
    assert_eq!(d.properties, props);
    assert_eq!(d.body_str(), Some("{\"n\":1}"));
    assert!(d.needs_ack());
    h.conn.ack(&d, false).unwrap();
    assert_eq!(
        lowest_acks(h.sent()),
        vec![m(
            1,
            BasicAck {
                delivery_tag: 1,
                multiple: false
            }
        )]
    );
    // The channel went back to the pool: no second channel.open.
    h.conn.basic_get(31, "q", true);
    assert_eq!(
        h.sent(),
        vec![m(
            1,
            BasicGet {
                queue: "q".into(),
                no_ack: true
            }
        )]
    );
    h.recv(1, BasicGetEmpty {});
    assert_matches!(h.result(31), Ok(Outcome::Get(None)));
    // An empty message.
    h.conn.basic_get(32, "q", true);
    let _ = h.sent();
    h.recv(
        1,
        BasicGetOk {
            delivery_tag: 2,
            redelivered: false,
            exchange: "".into(),
            routing_key: "q".into(),
            message_count: 0,
        },
    );
    h.recv_content(1, &BasicProperties::default(), b"");
    match h.result(32) {
        Ok(Outcome::Get(Some(d))) => {
            assert!(d.body.is_empty());
            assert!(!d.needs_ack());
            assert_eq!(d.message_count, Some(0));
        }
        other => panic!("{other:?}"),
    }
}

// ----------------------------------------------------------------------
// 11. Heartbeats.

#[test]
fn heartbeats_are_sent_and_silence_kills_the_connection() {
    let mut h = H::with_tune(Config::default(), tune(2047, 131_072, 2));
    let t0 = h.now;
    assert_eq!(h.conn.tuned().heartbeat, 2);
    let deadline = h.conn.poll_timeout().expect("a timer with heartbeats on");
    assert!(deadline <= t0 + Duration::from_secs(4));
    // Nothing else to send: a heartbeat frame goes out.
    h.conn.handle_timeout(t0 + Duration::from_secs(1));
    assert_eq!(&h.conn.take_output()[..], &HEARTBEAT[..]);
    assert!(h.events().is_empty());

    // Work in flight: an rpc, a publish awaiting its confirm, a consumer.
    h.conn.rpc(10, declare("q"));
    publish(&mut h, 11, "q", false, b"m");
    h.conn.consume(12, queues("q"), false, 0);
    let _ = h.sent();
    h.recv(2, ChannelOpenOk {});
    h.recv(2, ConfirmSelectOk {});

    // Input at +3 s resets the clock: +4 s is fine, +7 s is not.
    conn_input_at(&mut h, t0 + Duration::from_secs(3), &HEARTBEAT);
    h.conn.handle_timeout(t0 + Duration::from_secs(4));
    assert!(h.events().is_empty());
    assert!(h.conn.is_open());
    h.conn.handle_timeout(t0 + Duration::from_millis(6_999));
    assert!(h.events().is_empty());
    h.conn.handle_timeout(t0 + Duration::from_secs(7));
    let events = h.events();
    let four = Duration::from_secs(4);
    assert_matches!(closed_error(&events), Error::HeartbeatTimeout(d) if *d == four);
    for tag in [10, 12] {
        assert_matches!(result_of(&events, tag), Err(Error::HeartbeatTimeout(_)));
    }
    // The publish was sent: whether the broker took it is unknown.
    assert_matches!(
        result_of(&events, 11),
        Err(Error::OutcomeUnknown(e)) if matches!(**e, Error::HeartbeatTimeout(_))
    );
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(h.conn.is_closed());
    assert!(h.conn.poll_timeout().is_none());
    // Later operations fail at once with the same error.
    h.conn.rpc(13, declare("q"));
    assert_matches!(h.result(13), Err(Error::HeartbeatTimeout(_)));
}

fn conn_input_at(h: &mut H, at: Instant, bytes: &[u8]) {
    h.now = at;
    h.recv_raw(bytes);
}

#[test]
fn first_heartbeat_is_scheduled_by_poll_timeout() {
    // A loop that sleeps until poll_timeout() must wake in time to send the
    // first heartbeat (every heartbeat/2 = 1 s), not only when the peer is
    // declared dead (2 * heartbeat = 4 s).
    let h = H::with_tune(Config::default(), tune(2047, 131_072, 2));
    let t = h.conn.poll_timeout().expect("a timer with heartbeats on");
    assert!(
        t <= h.now + Duration::from_secs(1),
        "first wake-up {:?} after open-ok, but a heartbeat is due after 1 s",
        t - h.now
    );
}

#[test]
fn heartbeat_is_skipped_when_other_frames_went_out() {
    let mut h = H::with_tune(Config::default(), tune(2047, 131_072, 2));
    let t0 = h.now;
    h.conn.handle_timeout(t0 + Duration::from_secs(1));
    assert_eq!(h.sent(), vec![Sent::Heartbeat]);
    h.conn.rpc(10, declare("q"));
    let _ = h.sent();
    conn_input_at(&mut h, t0 + Duration::from_secs(2), &HEARTBEAT);
    h.conn.handle_timeout(t0 + Duration::from_secs(2));
    assert!(h.sent().is_empty(), "a frame was sent in this interval");
    h.conn.handle_timeout(t0 + Duration::from_secs(3));
    assert_eq!(h.sent(), vec![Sent::Heartbeat]);
    assert!(h.events().is_empty());
    let t = h.conn.poll_timeout().unwrap();
    assert!(t <= t0 + Duration::from_secs(4));
}

// ----------------------------------------------------------------------
// 12. The broker closes the connection.

#[test]
fn server_connection_close_fails_everything() {
    let mut h = H::new(Config::default());
    h.conn.rpc(10, declare("q"));
    publish(&mut h, 11, "q", false, b"m");
    h.consumer_in_flight(12);
    let _ = h.sent();
    h.recv(3, ChannelOpenOk {});
    h.recv(
        3,
        BasicConsumeOk {
            consumer_tag: "c".into(),
        },
    );
    h.deliver(3, "c", 1, b"x");
    let d = deliveries(&h.events(), 12).pop().unwrap();
    let text = "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'";
    h.recv(
        0,
        ConnectionClose {
            reply_code: 320,
            reply_text: text.into(),
            class_id: 0,
            method_id: 0,
        },
    );
    assert_eq!(h.sent(), vec![m(0, ConnectionCloseOk {})]);
    let events = h.events();
    for tag in [10, 12] {
        assert_matches!(result_of(&events, tag), Err(Error::ConnectionForced(r)) if r.code == 320);
    }
    assert_matches!(
        result_of(&events, 11),
        Err(Error::OutcomeUnknown(e)) if matches!(**e, Error::ConnectionForced(_))
    );
    assert_matches!(closed_error(&events), Error::ConnectionForced(r) if r.text == text);
    assert_eq!(events.len(), 4);
    assert!(h.conn.is_closed());
    assert_matches!(h.conn.error(), Some(Error::ConnectionForced(_)));
    // Everything afterwards fails at once with the same error.
    h.conn.rpc(13, declare("q"));
    assert_matches!(h.result(13), Err(Error::ConnectionForced(_)));
    publish(&mut h, 14, "q", false, b"m");
    assert_matches!(h.result(14), Err(Error::ConnectionForced(_)));
    h.conn.consume(15, queues("q"), false, 0);
    assert_matches!(h.result(15), Err(Error::ConnectionForced(_)));
    h.conn.basic_get(16, "q", false);
    assert_matches!(h.result(16), Err(Error::ConnectionForced(_)));
    h.conn.close(17, h.now, Duration::from_secs(1));
    assert_matches!(h.result(17), Err(Error::ConnectionForced(_)));
    assert_matches!(h.conn.ack(&d, false), Err(Error::ConnectionForced(_)));
    assert!(h.conn.take_output().is_empty());
}

impl H {
    /// A consumer whose channel.open has been sent but not answered.
    fn consumer_in_flight(&mut self, tag: Tag) {
        self.conn.consume(tag, queues("q"), false, 0);
    }
}

#[test]
fn access_refused_during_handshake() {
    for confirms in [Confirms::Auto, Confirms::Off] {
        access_refused_with_deferred_work(confirms);
    }
}

fn access_refused_with_deferred_work(confirms: Confirms) {
    let now = Instant::now();
    let config = Config {
        confirms,
        ..Config::default()
    };
    let mut conn = Connection::new(config, CONNECT, now);
    // Work queued before the handshake fails with it, and is never sent.
    conn.rpc(10, declare("q"));
    conn.publish(11, "", "q", false, false, &BasicProperties::default(), b"m");
    conn.consume(12, queues("q"), false, 1);
    let _ = conn.take_output();
    feed(&mut conn, now, &method_bytes(0, server_start()));
    let _ = conn.take_output();
    feed(
        &mut conn,
        now,
        &method_bytes(
            0,
            ConnectionClose {
                reply_code: 403,
                reply_text: "ACCESS_REFUSED - Login was refused".into(),
                class_id: 10,
                method_id: 11,
            },
        ),
    );
    let mut h = H::wrap(conn, now, false);
    assert_eq!(h.sent(), vec![m(0, ConnectionCloseOk {})]);
    let events = h.events();
    assert_matches!(result_of(&events, CONNECT), Err(Error::AccessRefused(r)) if r.code == 403);
    for tag in [10, 11, 12] {
        assert_matches!(result_of(&events, tag), Err(Error::AccessRefused(_)));
    }
    assert_matches!(closed_error(&events), Error::AccessRefused(r) if r.connection);
    assert!(closed_error(&events).is_connection_error());
    assert_eq!(events.len(), 5, "{events:?}");
    assert!(h.conn.take_output().is_empty());
}

/// With [`OnHandshakeFailure::Hold`], a failed handshake keeps the work
/// queued before it: restarted on a new socket, that work goes out after
/// the new handshake; released, it fails with the handshake's error.
#[test]
fn a_held_handshake_failure_keeps_the_queued_work() {
    let now = Instant::now();
    let config = Config {
        on_handshake_failure: OnHandshakeFailure::Hold,
        ..Config::default()
    };
    let mut conn = Connection::new(config.clone(), CONNECT, now);
    conn.rpc(10, declare("q"));
    conn.publish(11, "", "q", false, false, &BasicProperties::default(), b"m");
    assert_eq!(&conn.take_output()[..], &frame::PROTOCOL_HEADER[..]);
    conn.handle_eof();
    assert_matches!(
        conn.poll_event(),
        Some(Event::HandshakeFailed(Error::ConnectionBroken(_)))
    );
    assert_matches!(conn.poll_event(), None);
    assert!(!conn.is_closed() && !conn.is_open());
    assert!(conn.poll_timeout().is_none(), "nothing is timed while held");
    // Input and timers do nothing while held.
    feed(&mut conn, now, &method_bytes(0, server_start()));
    conn.handle_timeout(now + Duration::from_secs(60));
    assert_matches!(conn.poll_event(), None);

    conn.restart_handshake(now);
    drive_handshake(&mut conn, now, &config, default_tune());
    let mut h = H::wrap(conn, now, true);
    let sent = h.sent();
    let declare_ch = sent
        .iter()
        .find_map(|s| match s {
            Sent::M(ch, Method::QueueDeclare(d)) if d.queue == "q" => Some(*ch),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the held declare went out: {sent:?}"));
    assert!(
        sent.iter()
            .any(|s| matches!(s, Sent::Publish { body, .. } if body == b"m")),
        "the held publish went out: {sent:?}"
    );
    h.recv(declare_ch, ChannelOpenOk {});
    h.recv(
        declare_ch,
        QueueDeclareOk {
            queue: "q".into(),
            message_count: 0,
            consumer_count: 0,
        },
    );
    assert_matches!(h.result(10), Ok(Outcome::QueueDeclared(_)));

    // Given up: the held work fails once, with the handshake's error.
    let mut conn = Connection::new(config, CONNECT, now);
    conn.rpc(10, declare("q"));
    conn.handle_eof();
    assert_matches!(conn.poll_event(), Some(Event::HandshakeFailed(_)));
    conn.release_held();
    let mut h = H::wrap(conn, now, false);
    let events = h.events();
    assert_matches!(result_of(&events, CONNECT), Err(Error::ConnectionBroken(_)));
    assert_matches!(result_of(&events, 10), Err(Error::ConnectionBroken(_)));
    assert_matches!(closed_error(&events), Error::ConnectionBroken(_));
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(h.conn.is_closed());
}

/// A publish made while a failed handshake is held opens its channel in
/// the mode the connection then uses: confirm mode asked for, and the
/// publish settled by the broker's ack (it used to open a plain channel
/// that the next broker's `connection.start` then expected confirms from).
#[test]
fn a_publish_while_held_gets_the_confirm_mode_the_connection_uses() {
    let now = Instant::now();
    let config = Config {
        on_handshake_failure: OnHandshakeFailure::Hold,
        ..Config::default()
    };
    let mut conn = Connection::new(config.clone(), CONNECT, now);
    let _ = conn.take_output();
    conn.handle_eof();
    assert_matches!(conn.poll_event(), Some(Event::HandshakeFailed(_)));
    conn.publish(11, "", "q", false, false, &BasicProperties::default(), b"m");
    conn.restart_handshake(now);
    drive_handshake(&mut conn, now, &config, default_tune());
    let mut h = H::wrap(conn, now, true);
    let sent = h.sent();
    let ch = sent
        .iter()
        .find_map(|s| match s {
            Sent::M(ch, Method::ConfirmSelect(_)) => Some(*ch),
            _ => None,
        })
        .unwrap_or_else(|| panic!("confirm.select on the publish channel: {sent:?}"));
    assert!(h.conn.confirms_enabled());
    h.recv(ch, ChannelOpenOk {});
    h.recv(ch, ConfirmSelectOk {});
    h.recv(
        ch,
        BasicAck {
            delivery_tag: 1,
            multiple: false,
        },
    );
    assert_matches!(h.result(11), Ok(Outcome::Done));
}

/// A connect that found no transport at all has nowhere to move on to:
/// even with [`OnHandshakeFailure::Hold`] the work fails, with the
/// caller's error as it is.
#[test]
fn a_failed_connect_walk_holds_nothing() {
    let now = Instant::now();
    let config = Config {
        on_handshake_failure: OnHandshakeFailure::Hold,
        ..Config::default()
    };
    let mut conn = Connection::new(config, CONNECT, now);
    conn.rpc(10, declare("q"));
    conn.handle_connect_failure(Error::ConnectTimeout);
    let mut h = H::wrap(conn, now, false);
    let events = h.events();
    assert_matches!(result_of(&events, CONNECT), Err(Error::ConnectTimeout));
    assert_matches!(result_of(&events, 10), Err(Error::ConnectTimeout));
    assert_matches!(closed_error(&events), Error::ConnectTimeout);
    assert!(h.conn.is_closed());
}

#[test]
fn pooled_operations_beyond_channel_max_wait_for_a_channel() {
    let mut h = H::with_tune(Config::default(), tune(2, 131_072, 60));
    h.conn.rpc(10, declare("a"));
    h.conn.consume(11, queues("q"), false, 0);
    // Both channels are taken: pooled operations wait, in order.
    h.conn.rpc(12, declare("b"));
    h.conn.basic_get(14, "q", true);
    assert!(h.events().is_empty());
    assert_eq!(h.conn.waiting_count(), 2);
    // A publish needs a channel of its own: a local error, not a broker's.
    publish(&mut h, 13, "q", false, b"m");
    let err = h.result(13).expect_err("no channel for the publish");
    assert_matches!(err, Error::NoChannel { channel_max: 2 });
    assert!(!err.is_connection_error());
    assert!(h.conn.is_open());
    assert_eq!(
        h.sent(),
        vec![
            m(1, ChannelOpen {}),
            m(1, declare("a")),
            m(2, ChannelOpen {}),
            m(
                2,
                BasicConsume {
                    queue: "q".into(),
                    ..Default::default()
                }
            ),
        ]
    );
    // Channel 1 frees up and serves the waiting ones, one after another.
    h.recv(1, ChannelOpenOk {});
    h.recv(1, declare_ok("a"));
    assert_matches!(h.result(10), Ok(_));
    assert_eq!(h.sent(), vec![m(1, declare("b"))]);
    h.recv(1, declare_ok("b"));
    assert_matches!(h.result(12), Ok(_));
    assert_matches!(&h.sent()[..], [Sent::M(1, Method::BasicGet(_))]);
    h.recv(1, BasicGetEmpty {});
    assert_matches!(h.result(14), Ok(Outcome::Get(None)));
    assert_eq!(h.conn.waiting_count(), 0);
    h.conn.rpc(15, declare("c"));
    assert_eq!(h.sent(), vec![m(1, declare("c"))]);
}

#[test]
fn a_burst_of_channels_shrinks_back_to_the_idle_cap() {
    let mut h = H::new(Config::default());
    let n = MAX_IDLE_CHANNELS as u64 + 10;
    for i in 0..n {
        h.conn.rpc(100 + i, declare("q"));
    }
    let _ = h.sent();
    assert_eq!(h.conn.open_channels(), n as usize);
    for ch in 1..=n as u16 {
        h.recv(ch, ChannelOpenOk {});
        h.recv(ch, declare_ok("q"));
    }
    let _ = h.events();
    let closes = h
        .sent()
        .into_iter()
        .filter(|s| matches!(s, Sent::M(_, Method::ChannelClose(_))))
        .count();
    assert_eq!(closes, 10);
    for ch in MAX_IDLE_CHANNELS as u16 + 1..=n as u16 {
        h.recv(ch, ChannelCloseOk {});
    }
    assert_eq!(h.conn.open_channels(), MAX_IDLE_CHANNELS);
}

#[test]
fn blocked_longer_than_the_timeout_ends_the_connection() {
    let mut h = H::new(Config {
        blocked_timeout: Some(Duration::from_secs(5)),
        ..Config::default()
    });
    h.conn.rpc(10, declare("q"));
    let _ = h.sent();
    let t0 = h.now;
    h.recv(
        0,
        ConnectionBlocked {
            reason: "low on memory".into(),
        },
    );
    let _ = h.events();
    assert!(h.conn.is_blocked());
    assert!(h
        .conn
        .poll_timeout()
        .is_some_and(|t| t <= t0 + Duration::from_secs(5)));
    h.conn.handle_timeout(t0 + Duration::from_millis(4_999));
    assert!(h.conn.is_open());
    h.conn.handle_timeout(t0 + Duration::from_secs(5));
    let events = h.events();
    assert_matches!(result_of(&events, 10), Err(Error::BlockedTimeout(_)));
    assert_matches!(closed_error(&events), Error::BlockedTimeout(d) if *d == Duration::from_secs(5));
    // Unblocked in time: nothing happens.
    let mut h = H::new(Config {
        blocked_timeout: Some(Duration::from_secs(5)),
        ..Config::default()
    });
    h.recv(
        0,
        ConnectionBlocked {
            reason: "low on memory".into(),
        },
    );
    h.recv(0, ConnectionUnblocked {});
    let _ = h.events();
    h.conn.handle_timeout(h.now + Duration::from_secs(6));
    assert!(h.conn.is_open());
}

#[test]
fn update_secret_completes_on_its_ok() {
    let mut h = H::new(Config::default());
    h.conn.update_secret(10, "new-token", "refresh");
    let sent = h.sent();
    assert_matches!(
        &sent[..],
        [Sent::M(0, Method::ConnectionUpdateSecret(u))] if &u.new_secret[..] == b"new-token"
    );
    assert!(!format!("{:?}", h.conn).contains("new-token"));
    h.recv(0, ConnectionUpdateSecretOk {});
    assert_matches!(h.result(10), Ok(Outcome::Done));
    // An ok nobody asked for is a violation.
    h.recv(0, ConnectionUpdateSecretOk {});
    expect_connection_close(&h.sent(), reply_code::COMMAND_INVALID);
}

// ----------------------------------------------------------------------
// 13. Hostile input.

struct Case {
    name: &'static str,
    config: Config,
    tune: ConnectionTune,
    input: Vec<u8>,
    code: u16,
    check: fn(&Error) -> bool,
}

fn deliver_on(ch: u16, ctag: &str) -> BytesMut {
    method_bytes(
        ch,
        BasicDeliver {
            consumer_tag: ctag.into(),
            delivery_tag: 1,
            redelivered: false,
            exchange: "".into(),
            routing_key: "q".into(),
        },
    )
}

/// A content header whose `headers` property is raw `table` bytes.
fn header_with_raw_headers(ch: u16, table: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(14 + table.len());
    payload.extend_from_slice(&60u16.to_be_bytes());
    payload.extend_from_slice(&0u16.to_be_bytes());
    payload.extend_from_slice(&1u64.to_be_bytes());
    payload.extend_from_slice(&(1u16 << 13).to_be_bytes());
    payload.extend_from_slice(table);
    raw_frame(frame::FRAME_HEADER, ch, &payload)
}

/// A field table nested `depth` deep (each level one entry with an empty
/// name holding the next table), built outside-in in linear time.
fn nested_table(depth: usize) -> Vec<u8> {
    let mut t = Vec::with_capacity(6 * depth);
    for level in 0..depth {
        let inside = depth - 1 - level;
        t.extend_from_slice(&((6 * inside) as u32).to_be_bytes());
        if inside > 0 {
            t.push(0);
            t.push(b'F');
        }
    }
    t
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn hostile_cases() -> Vec<Case> {
    let d = deliver_on(2, "ctag");
    let hdr1 = header_bytes(2, 60, 1, BasicProperties::default());
    let mut too_large = vec![frame::FRAME_BODY, 0, 2];
    too_large.extend_from_slice(&(131_072u32 - 7).to_be_bytes());
    let mut long_string_table = Vec::new();
    long_string_table.extend_from_slice(&7u32.to_be_bytes());
    long_string_table.extend_from_slice(&[1, b'k', b'S', 0xFF, 0xFF, 0xFF, 0xFF]);
    let mut unknown_method = Vec::new();
    unknown_method.extend_from_slice(&60u16.to_be_bytes());
    unknown_method.extend_from_slice(&999u16.to_be_bytes());
    let base = Config::default;
    vec![
        Case {
            name: "frame larger than frame_max",
            config: base(),
            tune: default_tune(),
            input: too_large,
            code: 501,
            check: |e| {
                matches!(
                    e,
                    Error::Protocol(CodecError::FrameTooLarge {
                        size: 131_073,
                        max: 131_072
                    })
                )
            },
        },
        Case {
            name: "bad frame end",
            config: base(),
            tune: default_tune(),
            input: vec![3, 0, 2, 0, 0, 0, 1, b'x', 0x00],
            code: 501,
            check: |e| matches!(e, Error::Protocol(CodecError::BadFrameEnd(0))),
        },
        Case {
            name: "unknown frame type 9",
            config: base(),
            tune: default_tune(),
            input: vec![9, 0, 0, 0, 0, 0, 0, 0xCE],
            code: 501,
            check: |e| matches!(e, Error::Protocol(CodecError::UnknownFrameType(9))),
        },
        Case {
            name: "heartbeat on channel 1",
            config: base(),
            tune: default_tune(),
            input: vec![8, 0, 1, 0, 0, 0, 0, 0xCE],
            code: 501,
            check: |e| {
                matches!(
                    e,
                    Error::Protocol(CodecError::BadHeartbeat {
                        channel: 1,
                        size: 0
                    })
                )
            },
        },
        Case {
            name: "method in the middle of content",
            config: base(),
            tune: default_tune(),
            input: cat(&[&d, &d]),
            code: 505,
            check: |e| matches!(e, Error::ProtocolViolation(r) if r.code == 505),
        },
        Case {
            name: "content header of class 50",
            config: base(),
            tune: default_tune(),
            input: cat(&[&d, &header_bytes(2, 50, 1, BasicProperties::default())]),
            code: 505,
            check: |e| matches!(e, Error::ProtocolViolation(r) if r.code == 505),
        },
        Case {
            name: "body frame without a content method",
            config: base(),
            tune: default_tune(),
            input: body_bytes(2, b"x").to_vec(),
            code: 505,
            check: |e| matches!(e, Error::ProtocolViolation(r) if r.code == 505),
        },
        Case {
            name: "header without a content method",
            config: base(),
            tune: default_tune(),
            input: hdr1.to_vec(),
            code: 505,
            check: |e| matches!(e, Error::ProtocolViolation(r) if r.code == 505),
        },
        Case {
            name: "body overrun",
            config: base(),
            tune: default_tune(),
            input: cat(&[
                &d,
                &header_bytes(2, 60, 3, BasicProperties::default()),
                &body_bytes(2, b"12345"),
            ]),
            code: 505,
            check: |e| matches!(e, Error::ProtocolViolation(r) if r.code == 505),
        },
        Case {
            name: "delivery on a never-opened channel",
            config: base(),
            tune: default_tune(),
            input: deliver_on(99, "ctag").to_vec(),
            code: 504,
            check: |e| matches!(e, Error::ProtocolViolation(r) if r.code == 504),
        },
        Case {
            name: "body above max_message_size",
            config: Config {
                max_message_size: 1000,
                ..Config::default()
            },
            tune: default_tune(),
            input: cat(&[&d, &header_bytes(2, 60, 1001, BasicProperties::default())]),
            code: 311,
            check: |e| {
                matches!(
                    e,
                    Error::MessageTooLarge {
                        size: 1001,
                        max: 1000
                    }
                )
            },
        },
        Case {
            name: "field table nested 100000 deep",
            config: Config {
                frame_max: Some(1 << 20),
                ..Config::default()
            },
            tune: tune(2047, 0, 60),
            input: cat(&[&d, &header_with_raw_headers(2, &nested_table(100_000))]),
            code: 502,
            check: |e| matches!(e, Error::Protocol(CodecError::NestingTooDeep(_))),
        },
        Case {
            name: "long string of length 0xFFFFFFFF",
            config: base(),
            tune: default_tune(),
            input: cat(&[&d, &header_with_raw_headers(2, &long_string_table)]),
            code: 502,
            check: |e| matches!(e, Error::Protocol(CodecError::Truncated(_))),
        },
        Case {
            name: "unknown method",
            config: base(),
            tune: default_tune(),
            input: raw_frame(frame::FRAME_METHOD, 2, &unknown_method),
            code: 503,
            check: |e| {
                matches!(
                    e,
                    Error::Protocol(CodecError::UnknownMethod {
                        class_id: 60,
                        method_id: 999
                    })
                )
            },
        },
        Case {
            name: "unsolicited reply",
            config: base(),
            tune: default_tune(),
            input: method_bytes(2, declare_ok("q")).to_vec(),
            code: 503,
            check: |e| matches!(e, Error::ProtocolViolation(r) if r.code == 503),
        },
        Case {
            name: "confirm on a consumer channel",
            config: base(),
            tune: default_tune(),
            input: method_bytes(
                2,
                BasicAck {
                    delivery_tag: 1,
                    multiple: false,
                },
            )
            .to_vec(),
            code: 503,
            check: |e| matches!(e, Error::ProtocolViolation(r) if r.code == 503),
        },
        Case {
            name: "connection.start after open",
            config: base(),
            tune: default_tune(),
            input: method_bytes(0, server_start()).to_vec(),
            code: 503,
            check: |e| matches!(e, Error::ProtocolViolation(r) if r.code == 503),
        },
        Case {
            name: "delivery on a pooled channel",
            config: base(),
            tune: default_tune(),
            input: deliver_on(1, "ctag").to_vec(),
            code: 505,
            check: |e| matches!(e, Error::ProtocolViolation(r) if r.code == 505),
        },
    ]
}

/// A connection with an rpc in flight on channel 1, a consumer ("ctag") on
/// channel 2 and a publish awaiting its confirm on channel 3.
fn busy(config: Config, server_tune: ConnectionTune) -> H {
    let mut h = H::with_tune(config, server_tune);
    h.conn.rpc(10, declare("q"));
    h.conn.consume(20, queues("q"), false, 0);
    publish(&mut h, 30, "q", false, b"m");
    let _ = h.sent();
    h.recv(1, ChannelOpenOk {});
    h.recv(2, ChannelOpenOk {});
    h.recv(
        2,
        BasicConsumeOk {
            consumer_tag: "ctag".into(),
        },
    );
    h.recv(3, ChannelOpenOk {});
    h.recv(3, ConfirmSelectOk {});
    h.assert_quiet();
    h
}

#[test]
fn hostile_input_closes_the_connection() {
    for (i, case) in hostile_cases().into_iter().enumerate() {
        let name = case.name;
        let mut h = busy(case.config, case.tune);
        h.recv_raw(&case.input);
        let sent = h.sent();
        match &sent[..] {
            [Sent::M(0, Method::ConnectionClose(c))] => {
                assert_eq!(c.reply_code, case.code, "{name}: reply code ({c:?})");
            }
            other => panic!("{name}: expected connection.close, sent {other:?}"),
        }
        let events = h.events();
        assert_eq!(events.len(), 3, "{name}: {events:?}");
        for tag in [10, 20, 30] {
            let r = result_of(&events, tag);
            // 30 is a publish awaiting its confirm: its outcome is unknown.
            let r = match r {
                Err(Error::OutcomeUnknown(e)) if tag == 30 => Err(&**e),
                r => r.as_ref(),
            };
            assert!(
                matches!(r, Err(e) if (case.check)(e)),
                "{name}: tag {tag} completed with {r:?}"
            );
        }
        assert!(!h.conn.is_open(), "{name}");
        assert!(!h.conn.is_closed(), "{name}: waits for close-ok");
        assert!((case.check)(h.conn.error().expect("an error")), "{name}");
        // More input from the broker after the violation is ignored
        // (channel frames) until close-ok.
        h.recv(2, declare_ok("late"));
        assert!(h.events().is_empty(), "{name}");
        let deadline = h.conn.poll_timeout().expect("the close deadline");
        assert!(deadline <= h.now + Duration::from_secs(1), "{name}");
        if i % 2 == 0 {
            h.recv(0, ConnectionCloseOk {});
        } else {
            h.conn.handle_timeout(h.now + Duration::from_millis(999));
            assert!(h.events().is_empty(), "{name}: closed before the deadline");
            h.conn.handle_timeout(h.now + Duration::from_secs(1));
        }
        let events = h.events();
        assert_eq!(events.len(), 1, "{name}: {events:?}");
        assert!((case.check)(closed_error(&events)), "{name}: {events:?}");
        assert!(h.conn.is_closed(), "{name}");
        assert!(h.conn.poll_timeout().is_none(), "{name}");
        assert!(h.sent().is_empty(), "{name}");
    }
}

#[test]
fn operations_after_a_violation_fail_with_the_violation_error() {
    let mut h = busy(Config::default(), default_tune());
    h.recv_raw(&[9, 0, 0, 0, 0, 0, 0, 0xCE]);
    let _ = h.sent();
    let _ = h.events();
    // Between the violation and the close-ok, a new operation is refused;
    // the reason is the broker's violation, not a close by this client.
    h.conn.rpc(11, declare("q"));
    assert_matches!(
        h.result(11),
        Err(Error::Protocol(CodecError::UnknownFrameType(9)))
    );
}

#[test]
fn garbage_after_our_close_finishes_at_once() {
    let mut h = busy(Config::default(), default_tune());
    h.recv_raw(&[9, 0, 0, 0, 0, 0, 0, 0xCE]);
    let _ = h.sent();
    let _ = h.events();
    h.recv_raw(&[7, 7, 7, 7, 7, 7, 7, 7]);
    let events = h.events();
    assert_matches!(
        closed_error(&events),
        Error::Protocol(CodecError::UnknownFrameType(9))
    );
    assert!(h.conn.is_closed());
}

// ----------------------------------------------------------------------
// 14. Closing.

/// The user's close ends a consumer as asked ([`Event::ConsumerEnded`]),
/// not with an error; a connection lost ends it with the error.
#[test]
fn user_close_ends_consumers_quietly_a_loss_with_the_error() {
    let mut h = H::new(Config::default());
    h.consumer(20, 1, "c", 0);
    let _ = h.events();
    h.conn.close_now(50, h.now, Duration::from_secs(1));
    let _ = h.sent();
    h.recv(0, ConnectionCloseOk {});
    let events = h.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ConsumerEnded { tag: 20 })),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Complete { tag: 20, .. })),
        "{events:?}"
    );

    let mut h = H::new(Config::default());
    h.consumer(20, 1, "c", 0);
    let _ = h.events();
    h.conn.handle_eof();
    let events = h.events();
    assert_matches!(result_of(&events, 20), Err(Error::ConnectionBroken(_)));
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::ConsumerEnded { .. })));
}

#[test]
fn graceful_close_waits_for_close_ok() {
    for variant in ["close-ok", "deadline", "eof"] {
        let mut h = H::new(Config::default());
        h.conn.rpc(10, declare("q"));
        let _ = h.sent();
        h.recv(1, ChannelOpenOk {});
        h.conn.close_now(50, h.now, Duration::from_secs(1));
        assert_eq!(
            h.sent(),
            vec![m(
                0,
                ConnectionClose {
                    reply_code: 200,
                    reply_text: "bye".into(),
                    class_id: 0,
                    method_id: 0
                }
            )],
            "{variant}"
        );
        assert!(
            h.events().is_empty(),
            "{variant}: nothing fails before close-ok"
        );
        // New work is refused while closing.
        h.conn.rpc(11, declare("q"));
        assert_matches!(h.result(11), Err(Error::ConnectionClosed));
        // A second close completes at once.
        h.conn.close(51, h.now, Duration::from_secs(1));
        assert_matches!(h.result(51), Ok(Outcome::Done));
        match variant {
            "close-ok" => h.recv(0, ConnectionCloseOk {}),
            "deadline" => {
                h.conn.handle_timeout(h.now + Duration::from_millis(500));
                assert!(h.events().is_empty());
                h.conn.handle_timeout(h.now + Duration::from_secs(1));
            }
            _ => h.conn.handle_eof(),
        }
        let events = h.events();
        assert_eq!(events.len(), 3, "{variant}: {events:?}");
        assert_matches!(result_of(&events, 10), Err(Error::ConnectionClosed));
        assert_matches!(result_of(&events, 50), Ok(Outcome::Done));
        assert_matches!(closed_error(&events), Error::ConnectionClosed);
        assert!(h.conn.is_closed());
        h.conn.close(52, h.now, Duration::from_secs(1));
        assert_matches!(h.result(52), Ok(Outcome::Done));
    }
}

#[test]
fn close_crossing_the_brokers_close() {
    let mut h = H::new(Config::default());
    h.conn.close(50, h.now, Duration::from_secs(1));
    let _ = h.sent();
    h.recv(
        0,
        ConnectionClose {
            reply_code: 320,
            reply_text: "CONNECTION_FORCED".into(),
            class_id: 0,
            method_id: 0,
        },
    );
    assert_eq!(h.sent(), vec![m(0, ConnectionCloseOk {})]);
    let events = h.events();
    assert_matches!(result_of(&events, 50), Ok(Outcome::Done));
    assert_matches!(closed_error(&events), Error::ConnectionClosed);
}

#[test]
fn close_before_start_drops_the_connection() {
    let now = Instant::now();
    let conn = Connection::new(Config::default(), CONNECT, now);
    let mut h = H::wrap(conn, now, false);
    h.conn.close(50, now, Duration::from_secs(1));
    let events = h.events();
    assert_matches!(result_of(&events, CONNECT), Err(Error::ConnectionClosed));
    assert_matches!(result_of(&events, 50), Ok(Outcome::Done));
    assert_matches!(closed_error(&events), Error::ConnectionClosed);
}

// ----------------------------------------------------------------------
// 15, 16. Failures during the handshake.

#[test]
fn protocol_header_reply_fails_the_connection() {
    let now = Instant::now();
    let mut conn = Connection::new(Config::default(), CONNECT, now);
    let _ = conn.take_output();
    conn.rpc(10, declare("q"));
    feed(&mut conn, now, b"AMQP\x00\x00\x09\x00");
    let mut h = H::wrap(conn, now, false);
    let _ = h.conn.take_output();
    let want = *b"AMQP\x00\x00\x09\x00";
    let events = h.events();
    assert_matches!(
        result_of(&events, CONNECT),
        Err(Error::Protocol(CodecError::ProtocolHeader(got))) if *got == want
    );
    assert_matches!(
        result_of(&events, 10),
        Err(Error::Protocol(CodecError::ProtocolHeader(_)))
    );
    // The broker closes the socket.
    h.conn.handle_eof();
    let events = h.events();
    assert_matches!(
        closed_error(&events),
        Error::Protocol(CodecError::ProtocolHeader(got)) if *got == want
    );
    assert!(h.conn.is_closed());
}

#[test]
fn eof_during_authentication_is_access_refused() {
    let now = Instant::now();
    let mut conn = Connection::new(Config::default(), CONNECT, now);
    let _ = conn.take_output();
    feed(&mut conn, now, &method_bytes(0, server_start()));
    assert!(!conn.take_output().is_empty(), "start-ok sent");
    conn.handle_eof();
    let mut h = H::wrap(conn, now, false);
    let events = h.events();
    assert_matches!(result_of(&events, CONNECT), Err(Error::AccessRefused(r)) if r.code == 403);
    assert_matches!(closed_error(&events), Error::AccessRefused(_));
    assert!(closed_error(&events).is_connection_error());
}

#[test]
fn eof_after_open_is_connection_broken() {
    let mut h = H::new(Config::default());
    h.conn.rpc(10, declare("q"));
    h.conn.handle_eof();
    let events = h.events();
    assert_matches!(result_of(&events, 10), Err(Error::ConnectionBroken(_)));
    assert_matches!(closed_error(&events), Error::ConnectionBroken(e) if e.kind() == io::ErrorKind::UnexpectedEof);
}

#[test]
fn handshake_times_out() {
    let now = Instant::now();
    let mut conn = Connection::new(Config::default(), CONNECT, now);
    assert_eq!(conn.poll_timeout(), Some(now + Duration::from_secs(30)));
    let _ = conn.take_output();
    feed(&mut conn, now, &method_bytes(0, server_start()));
    conn.handle_timeout(now + Duration::from_secs(29));
    assert!(conn.poll_event().is_none());
    conn.handle_timeout(now + Duration::from_secs(30));
    let mut h = H::wrap(conn, now, false);
    let events = h.events();
    assert_matches!(result_of(&events, CONNECT), Err(Error::ConnectTimeout));
    assert_matches!(closed_error(&events), Error::ConnectTimeout);
}

#[test]
fn blocked_unblocked_and_flow() {
    let mut h = H::new(Config::default());
    h.recv(
        0,
        ConnectionBlocked {
            reason: "low on memory".into(),
        },
    );
    assert!(h.conn.is_blocked());
    assert_matches!(&h.events()[..], [Event::Blocked(r)] if r == "low on memory");
    h.recv(0, ConnectionUnblocked {});
    assert!(!h.conn.is_blocked());
    assert_matches!(&h.events()[..], [Event::Unblocked]);
    h.consumer(20, 1, "c", 0);
    h.recv(1, ChannelFlow { active: false });
    assert_eq!(h.sent(), vec![m(1, ChannelFlowOk { active: false })]);
}

#[test]
fn transactions_on_the_publish_channel() {
    let mut h = H::new(Config {
        confirms: Confirms::Off,
        ..Config::default()
    });
    h.conn.tx_select(40);
    publish(&mut h, 41, "q", false, b"t");
    h.conn.tx_commit(42);
    assert_eq!(
        h.sent(),
        vec![
            m(1, ChannelOpen {}),
            m(1, TxSelect {}),
            publish_sent(1, "", "q", false, b"t"),
            m(1, TxCommit {}),
        ]
    );
    assert_matches!(h.result(41), Ok(Outcome::Done));
    h.recv(1, ChannelOpenOk {});
    h.recv(1, TxSelectOk {});
    assert_matches!(h.result(40), Ok(Outcome::Done));
    h.recv(1, TxCommitOk {});
    assert_matches!(h.result(42), Ok(Outcome::Done));
}

// ----------------------------------------------------------------------
// 17. Fuzz.

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Fewer than `max` random bytes.
    fn bytes_below(&mut self, max: u64) -> Vec<u8> {
        let n = self.below(max) as usize;
        self.bytes(n)
    }
}

/// A requests the fuzz server may answer correctly.
#[derive(Debug)]
enum Pending {
    Method(u16, Method),
    Publish(u16, bool),
}

struct Session {
    h: H,
    /// Tag -> the operation it was issued for.
    issued: HashMap<Tag, &'static str>,
    ended: HashSet<Tag>,
    consumes: Vec<Tag>,
    deliveries: Vec<Delivery>,
    pending: VecDeque<Pending>,
    /// Per channel: publish sequence numbers, next delivery tag, consumer tags.
    seq: HashMap<u16, u64>,
    next_delivery: HashMap<u16, u64>,
    ctags: HashMap<u16, Vec<String>>,
    steps: u32,
    deliveries_seen: usize,
    oks: usize,
    /// The channel the client publishes on, once seen.
    publish_ch: Option<u16>,
    /// Why the connection ended (for the statistics).
    closed_by: String,
    /// Channels the fuzz broker has opened and not closed.
    open_chs: HashSet<u16>,
}

impl Session {
    fn new(rng: &mut XorShift) -> Session {
        let heartbeat = [0u16, 2, 60][rng.below(3) as usize];
        let channel_max = [3u16, 2047][rng.below(2) as usize];
        let confirms = [Confirms::Auto, Confirms::Off][rng.below(2) as usize];
        let config = Config {
            confirms,
            max_message_size: 64,
            ..Config::default()
        };
        let h = H::with_tune(
            config,
            tune(channel_max, 4096 + rng.below(2) as u32 * 4096, heartbeat),
        );
        Session {
            h,
            issued: HashMap::new(),
            ended: HashSet::new(),
            consumes: Vec::new(),
            deliveries: Vec::new(),
            pending: VecDeque::new(),
            seq: HashMap::new(),
            next_delivery: HashMap::new(),
            ctags: HashMap::new(),
            steps: 0,
            deliveries_seen: 0,
            oks: 0,
            publish_ch: None,
            closed_by: String::new(),
            open_chs: HashSet::new(),
        }
    }

    fn user_op(&mut self, rng: &mut XorShift, tag: Tag) {
        let c = &mut self.h.conn;
        let op = match rng.below(14) {
            0 => {
                c.rpc(tag, declare("q"));
                "rpc queue.declare"
            }
            1 => {
                c.rpc(
                    tag,
                    QueueDelete {
                        queue: "q".into(),
                        ..Default::default()
                    }
                    .into(),
                );
                "rpc queue.delete"
            }
            2 => {
                c.rpc(
                    tag,
                    ExchangeDeclare {
                        exchange: "x".into(),
                        kind: "direct".into(),
                        ..Default::default()
                    }
                    .into(),
                );
                "rpc exchange.declare"
            }
            3 => {
                c.rpc(tag, BasicRecover { requeue: true }.into());
                "rpc basic.recover (refused)"
            }
            4 => {
                c.basic_get(tag, "q", rng.chance(50));
                "basic_get"
            }
            5..=7 => {
                let body = rng.bytes_below(40);
                c.publish(
                    tag,
                    "",
                    "q",
                    rng.chance(30),
                    false,
                    &BasicProperties::default(),
                    &body,
                );
                "publish"
            }
            8 => {
                let n = 1 + rng.below(2) as usize;
                let qs = (0..n)
                    .map(|i| ConsumeQueue {
                        queue: format!("q{i}").as_str().into(),
                        ..Default::default()
                    })
                    .collect();
                c.consume(tag, qs, rng.chance(30), rng.below(3) as u16);
                CONSUME
            }
            9 => {
                let target = pick(rng, &self.consumes).unwrap_or(tag + 1);
                c.cancel(tag, target);
                "cancel"
            }
            10 => {
                let target = pick(rng, &self.consumes).unwrap_or(0);
                c.qos(tag, target, 0, rng.below(5) as u16, false);
                "qos"
            }
            11 => {
                let target = pick(rng, &self.consumes).unwrap_or(0);
                c.recover(tag, target, rng.chance(50));
                "recover"
            }
            12 => {
                if rng.chance(10) {
                    c.close(tag, self.h.now, Duration::from_secs(1));
                    "close"
                } else {
                    c.rpc(tag, declare(""));
                    "rpc queue.declare"
                }
            }
            _ => {
                // Settle a random delivery; the result may be an error.
                if let Some(d) = pick(rng, &self.deliveries.clone()) {
                    let _ = match rng.below(3) {
                        0 => c.ack(&d, rng.chance(30)),
                        1 => c.nack(&d, rng.chance(30), rng.chance(50)),
                        _ => c.reject(&d, rng.chance(50)),
                    };
                }
                c.rpc(tag, declare("s"));
                "rpc queue.declare"
            }
        };
        self.issued.insert(tag, op);
        if op == CONSUME {
            self.consumes.push(tag);
        }
    }

    /// A correct answer to a pending request, or a plausible frame.
    fn server_bytes(&mut self, rng: &mut XorShift) -> Vec<u8> {
        let mut b = BytesMut::new();
        if !self.pending.is_empty() && rng.chance(70) {
            let i = if rng.chance(95) {
                0
            } else {
                rng.below(self.pending.len() as u64) as usize
            };
            let p = self.pending.remove(i).expect("in range");
            self.answer(rng, p, &mut b);
            return b.to_vec();
        }
        // Mostly frames a broker could send now; some that break the rules.
        let consumer_chs: Vec<u16> = self
            .ctags
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(ch, _)| *ch)
            .collect();
        let plausible = rng.chance(97);
        let open: Vec<u16> = self.open_chs.iter().copied().collect();
        let mut ch = if plausible {
            match pick(rng, &open) {
                Some(c) => c,
                None => return HEARTBEAT.to_vec(),
            }
        } else {
            1 + rng.below(4) as u16
        };
        match rng.below(20) {
            0..=7 => {
                if plausible {
                    match pick(rng, &consumer_chs) {
                        Some(c) => ch = c,
                        None => return HEARTBEAT.to_vec(),
                    }
                }
                let ctag = self
                    .ctags
                    .get(&ch)
                    .and_then(|v| pick(rng, v))
                    .unwrap_or_else(|| "c1".into());
                let tag = self.next_delivery.entry(ch).or_insert(0);
                *tag += 1;
                let tag = *tag;
                b = method_bytes(
                    ch,
                    BasicDeliver {
                        consumer_tag: ctag.as_str().into(),
                        delivery_tag: tag,
                        redelivered: rng.chance(20),
                        exchange: "".into(),
                        routing_key: "q".into(),
                    },
                );
                self.content(rng, ch, &mut b);
            }
            8 => {
                if plausible {
                    match pick(rng, &consumer_chs) {
                        Some(c) => ch = c,
                        None => return HEARTBEAT.to_vec(),
                    }
                }
                let tags = self.ctags.entry(ch).or_default();
                let ctag = if tags.is_empty() {
                    "c1".to_string()
                } else {
                    tags.remove(rng.below(tags.len() as u64) as usize)
                };
                b = method_bytes(
                    ch,
                    BasicCancel {
                        consumer_tag: ctag.as_str().into(),
                        no_wait: rng.chance(50),
                    },
                )
            }
            9 => {
                // The broker closes a channel: forget what it was doing.
                self.pending.retain(|p| match p {
                    Pending::Method(c, _) | Pending::Publish(c, _) => *c != ch,
                });
                self.ctags.remove(&ch);
                if !self.open_chs.remove(&ch) && plausible {
                    return HEARTBEAT.to_vec();
                }
                b = method_bytes(
                    ch,
                    ChannelClose {
                        reply_code: [404u16, 406, 403][rng.below(3) as usize],
                        reply_text: "ERR".into(),
                        class_id: 50,
                        method_id: 10,
                    },
                )
            }
            10 => {
                if plausible {
                    match self.publish_ch {
                        Some(c) => ch = c,
                        None => return HEARTBEAT.to_vec(),
                    }
                }
                let seq = self.seq.get(&ch).copied().unwrap_or(1).max(1);
                b = method_bytes(
                    ch,
                    BasicAck {
                        delivery_tag: 1 + rng.below(seq),
                        multiple: rng.chance(50),
                    },
                );
            }
            11..=13 => b.extend_from_slice(&HEARTBEAT),
            14 => {
                b = method_bytes(
                    0,
                    ConnectionBlocked {
                        reason: "mem".into(),
                    },
                );
                frame::encode_method(&mut b, 0, &ConnectionUnblocked {}.into()).unwrap();
            }
            15 => {
                b = method_bytes(
                    ch,
                    ChannelFlow {
                        active: rng.chance(50),
                    },
                )
            }
            16 if !plausible => {
                b = method_bytes(
                    0,
                    ConnectionClose {
                        reply_code: 320,
                        reply_text: "bye".into(),
                        class_id: 0,
                        method_id: 0,
                    },
                )
            }
            17 if !plausible => b = method_bytes(ch, ChannelOpenOk {}),
            _ => b.extend_from_slice(&HEARTBEAT),
        }
        b.to_vec()
    }

    fn content(&mut self, rng: &mut XorShift, ch: u16, b: &mut BytesMut) {
        let body = rng.bytes_below(70);
        let props = if rng.chance(30) {
            BasicProperties::default().with_header("k", rng.next() as i64)
        } else {
            BasicProperties::default()
        };
        b.extend_from_slice(&header_bytes(ch, 60, body.len() as u64, props));
        let mut rest = &body[..];
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len() as u64) as usize;
            encode_body(b, ch, &rest[..n]);
            rest = &rest[n..];
        }
    }

    fn answer(&mut self, rng: &mut XorShift, p: Pending, b: &mut BytesMut) {
        let (ch, reply): (u16, Option<Method>) = match p {
            Pending::Publish(ch, mandatory) => {
                let seq = self.seq.entry(ch).or_insert(0);
                *seq += 1;
                let seq = *seq;
                if mandatory && rng.chance(50) {
                    frame::encode_method(
                        b,
                        ch,
                        &BasicReturn {
                            reply_code: 312,
                            reply_text: "NO_ROUTE".into(),
                            exchange: "".into(),
                            routing_key: "q".into(),
                        }
                        .into(),
                    )
                    .unwrap();
                    self.content(rng, ch, b);
                }
                let m: Method = if rng.chance(90) {
                    BasicAck {
                        delivery_tag: seq,
                        multiple: rng.chance(30),
                    }
                    .into()
                } else {
                    BasicNack {
                        delivery_tag: seq,
                        multiple: false,
                        requeue: false,
                    }
                    .into()
                };
                (ch, Some(m))
            }
            Pending::Method(ch, method) => {
                let reply: Option<Method> = match method {
                    Method::ChannelOpen(_) => {
                        self.open_chs.insert(ch);
                        self.seq.insert(ch, 0);
                        self.next_delivery.insert(ch, 0);
                        self.ctags.remove(&ch);
                        Some(ChannelOpenOk {}.into())
                    }
                    Method::ConfirmSelect(_) => Some(ConfirmSelectOk {}.into()),
                    Method::QueueDeclare(d) => Some(declare_ok(&d.queue).into()),
                    Method::QueueDelete(_) => Some(QueueDeleteOk { message_count: 1 }.into()),
                    Method::ExchangeDeclare(_) => Some(ExchangeDeclareOk {}.into()),
                    Method::BasicQos(_) => Some(BasicQosOk {}.into()),
                    Method::BasicRecover(_) => Some(BasicRecoverOk {}.into()),
                    Method::TxSelect(_) => Some(TxSelectOk {}.into()),
                    Method::BasicConsume(c) => {
                        let tag = if c.consumer_tag.is_empty() {
                            format!("amq.ctag-{}", rng.below(1000))
                        } else {
                            c.consumer_tag.to_string()
                        };
                        self.ctags.entry(ch).or_default().push(tag.clone());
                        Some(
                            BasicConsumeOk {
                                consumer_tag: tag.as_str().into(),
                            }
                            .into(),
                        )
                    }
                    Method::BasicCancel(c) => {
                        if let Some(tags) = self.ctags.get_mut(&ch) {
                            tags.retain(|t| *t != c.consumer_tag.as_str());
                        }
                        Some(
                            BasicCancelOk {
                                consumer_tag: c.consumer_tag,
                            }
                            .into(),
                        )
                    }
                    Method::BasicGet(_) => {
                        if rng.chance(50) {
                            Some(BasicGetEmpty {}.into())
                        } else {
                            let tag = self.next_delivery.entry(ch).or_insert(0);
                            *tag += 1;
                            frame::encode_method(
                                b,
                                ch,
                                &BasicGetOk {
                                    delivery_tag: *tag,
                                    redelivered: false,
                                    exchange: "".into(),
                                    routing_key: "q".into(),
                                    message_count: 3,
                                }
                                .into(),
                            )
                            .unwrap();
                            self.content(rng, ch, b);
                            None
                        }
                    }
                    Method::ChannelClose(_) => {
                        self.ctags.remove(&ch);
                        self.open_chs.remove(&ch);
                        Some(ChannelCloseOk {}.into())
                    }
                    Method::ConnectionClose(_) => Some(ConnectionCloseOk {}.into()),
                    _ => None,
                };
                (ch, reply)
            }
        };
        if let Some(r) = reply {
            frame::encode_method(b, ch, &r).unwrap();
        }
    }

    /// Reads what the client sent: it must always decode; requests are
    /// queued for answers.
    fn read_output(&mut self) {
        for s in self.h.sent() {
            match s {
                Sent::Publish { ch, method, .. } => {
                    self.publish_ch = Some(ch);
                    if self.h.conn.confirms_enabled() {
                        self.pending
                            .push_back(Pending::Publish(ch, method.mandatory));
                    }
                }
                Sent::M(ch, method) => {
                    if let Method::ChannelOpen(_) = method {
                        // A new channel under this id: forget the old one.
                        self.ctags.remove(&ch);
                        self.open_chs.remove(&ch);
                    }
                    let answerable = matches!(
                        method,
                        Method::ChannelOpen(_)
                            | Method::ConfirmSelect(_)
                            | Method::QueueDeclare(_)
                            | Method::QueueDelete(_)
                            | Method::ExchangeDeclare(_)
                            | Method::BasicQos(_)
                            | Method::BasicRecover(_)
                            | Method::TxSelect(_)
                            | Method::BasicConsume(_)
                            | Method::BasicCancel(_)
                            | Method::BasicGet(_)
                            | Method::ChannelClose(_)
                            | Method::ConnectionClose(_)
                    );
                    if answerable {
                        self.pending.push_back(Pending::Method(ch, method));
                    }
                }
                Sent::Heartbeat => {}
            }
        }
    }

    fn read_events(&mut self) {
        for e in self.h.events() {
            match &e {
                Event::Delivery { .. } => self.deliveries_seen += 1,
                Event::Closed(e) => {
                    let text = format!("{e:?}");
                    let end = text.find([' ', '{']).unwrap_or(text.len());
                    self.closed_by = text[..end.min(40)].to_string();
                    if let Some(r) = e.reply() {
                        self.closed_by = format!("{} {} {}", self.closed_by, r.code, r.text);
                    }
                }
                Event::Complete { result: Ok(_), .. } => self.oks += 1,
                _ => {}
            }
            match e {
                Event::Delivery { delivery, .. } => self.deliveries.push(delivery),
                Event::Complete {
                    result: Ok(Outcome::Get(Some(d))),
                    ..
                } => self.deliveries.push(d),
                Event::ConsumerEnded { tag } => {
                    assert!(self.ended.insert(tag), "ConsumerEnded twice for {tag}");
                }
                _ => {}
            }
        }
    }

    /// Once closed: every tag completed exactly once, except consumers that
    /// ended with ConsumerEnded (which never complete). Violations are
    /// collected in `problems`.
    fn check_finished(&self, problems: &mut Vec<String>) {
        assert_eq!(self.h.closed, 1);
        for (&tag, &op) in &self.issued {
            let n = self.h.completed.get(&tag).copied().unwrap_or(0);
            let want = usize::from(!(op == CONSUME && self.ended.contains(&tag)));
            if n != want {
                problems.push(format!("{op}: completed {n} times, expected {want}"));
            }
        }
        for tag in &self.ended {
            if self.issued[tag] != CONSUME {
                problems.push(format!("ConsumerEnded for a {}", self.issued[tag]));
            }
        }
    }
}

const CONSUME: &str = "consume";

fn pick<T: Clone>(rng: &mut XorShift, v: &[T]) -> Option<T> {
    if v.is_empty() {
        None
    } else {
        Some(v[rng.below(v.len() as u64) as usize].clone())
    }
}

fn mutate(rng: &mut XorShift, b: &mut Vec<u8>) {
    if b.is_empty() {
        b.push(rng.next() as u8);
        return;
    }
    match rng.below(5) {
        0 => {
            let i = rng.below(b.len() as u64) as usize;
            b[i] ^= 1 + rng.below(255) as u8;
        }
        1 => {
            let n = rng.below(b.len() as u64) as usize;
            b.truncate(n);
            let junk = rng.bytes_below(8);
            b.extend_from_slice(&junk);
        }
        2 if b.len() >= 7 => {
            let size = rng.next() as u32 % 10_000;
            b[3..7].copy_from_slice(&size.to_be_bytes());
        }
        3 => b[0] = rng.below(10) as u8,
        _ if b.len() >= 3 => {
            b[1] = 0;
            b[2] = rng.below(6) as u8;
        }
        _ => b.reverse(),
    }
}

#[derive(Debug, Default)]
struct FuzzStats {
    sessions: usize,
    max_steps: u32,
    deliveries: usize,
    ok: usize,
    problems: Vec<String>,
    closed_by: HashMap<String, usize>,
}

/// Drives connections with `iterations` random steps: user operations,
/// mostly-correct broker answers, mutated frames, junk, timers and EOFs.
fn fuzz(seed: u64, iterations: usize) -> FuzzStats {
    let mut rng = XorShift(seed | 1);
    let mut next_tag: Tag = 1;
    let mut session: Option<Session> = None;
    let mut stats = FuzzStats::default();
    for _ in 0..iterations {
        let s = session.get_or_insert_with(|| {
            stats.sessions += 1;
            Session::new(&mut rng)
        });
        s.steps += 1;
        s.h.now += Duration::from_millis(rng.below(300));
        match rng.below(100) {
            0..=24 => {
                next_tag += 1;
                s.user_op(&mut rng, next_tag);
            }
            25..=86 => {
                let b = s.server_bytes(&mut rng);
                s.h.recv_raw(&b);
            }
            87..=88 => {
                let mut b = s.server_bytes(&mut rng);
                mutate(&mut rng, &mut b);
                s.h.recv_raw(&b);
            }
            89 => {
                let n = 1 + rng.below(16) as usize;
                let b = rng.bytes(n);
                s.h.recv_raw(&b);
            }
            90..=97 => {
                s.h.now += Duration::from_millis(rng.below(3_000));
                s.h.conn.handle_timeout(s.h.now);
            }
            _ => {
                if rng.chance(20) {
                    s.h.conn.handle_eof();
                } else {
                    let _ = s.h.conn.poll_timeout();
                    s.h.conn.handle_timeout(s.h.now);
                }
            }
        }
        s.read_output();
        s.read_events();
        if s.h.closed == 0 && s.steps >= 400 {
            s.h.conn.handle_eof();
            s.read_output();
            s.read_events();
        }
        if s.h.closed > 0 {
            // Operations after the end complete at once.
            next_tag += 1;
            s.user_op(&mut rng, next_tag);
            s.read_events();
            s.check_finished(&mut stats.problems);
            stats.max_steps = stats.max_steps.max(s.steps);
            stats.deliveries += s.deliveries_seen;
            stats.ok += s.oks;
            *stats.closed_by.entry(s.closed_by.clone()).or_insert(0) += 1;
            session = None;
        }
    }
    if let Some(mut s) = session {
        s.h.conn.handle_eof();
        s.read_events();
        s.check_finished(&mut stats.problems);
        stats.deliveries += s.deliveries_seen;
        stats.ok += s.oks;
    }
    stats
}

#[test]
fn fuzz_never_panics_and_completes_each_tag_once() {
    let stats = fuzz(0x9E37_79B9_7F4A_7C15, 10_000);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for p in &stats.problems {
        *counts.entry(p.as_str()).or_insert(0) += 1;
    }
    let mut summary: Vec<_> = counts.into_iter().collect();
    summary.sort();
    assert!(
        stats.problems.is_empty(),
        "tags not completed exactly once (problem, count): {summary:#?}"
    );
    // The fuzz reached deep states, not only early violations.
    assert!(stats.sessions > 10, "{stats:?}");
    assert!(stats.max_steps > 50, "{stats:?}");
    assert!(stats.deliveries > 20, "{stats:?}");
    assert!(stats.ok > 100, "{stats:?}");
}

/// Found by the `connection` fuzz target (input in
/// `fuzz/regressions/connection/delivery-after-server-cancel`): once a
/// consumer has completed (the broker cancelled it) or ended (the user's
/// cancel was confirmed), no `Event::Delivery` may follow for its tag, even
/// when its channel stays open (a cancel-ok still expected, or deliveries
/// still unacked) and a broken broker keeps delivering.
#[test]
fn no_delivery_after_the_consumer_completed_or_ended() {
    // The user cancels; the broker's own basic.cancel crosses it; then a
    // delivery for the cancelled tag.
    let mut h = H::new(Config::default());
    h.consumer(2, 1, "ctag.1", 0);
    h.conn.cancel(3, 2);
    let _ = h.sent();
    h.recv(
        1,
        BasicCancel {
            consumer_tag: "ctag.1".into(),
            no_wait: false,
        },
    );
    let events = h.events();
    assert_matches!(result_of(&events, 2), Err(Error::ConsumerCancelled { .. }));
    h.deliver(1, "ctag.1", 1, b"late");
    let events = h.events();
    assert!(
        deliveries(&events, 2).is_empty(),
        "delivery after the consumer completed: {events:?}"
    );

    // The broker cancels while a delivery is unacked (the channel stays
    // open until it is settled), then delivers again: the stray delivery
    // is rejected back to the queue.
    let mut h = H::new(Config::default());
    h.consumer(2, 1, "ctag.1", 0);
    h.deliver(1, "ctag.1", 1, b"x");
    assert_eq!(deliveries(&h.events(), 2).len(), 1);
    h.recv(
        1,
        BasicCancel {
            consumer_tag: "ctag.1".into(),
            no_wait: true,
        },
    );
    assert_matches!(h.result(2), Err(Error::ConsumerCancelled { .. }));
    h.deliver(1, "ctag.1", 2, b"late");
    let events = h.events();
    assert!(
        deliveries(&events, 2).is_empty(),
        "delivery after the consumer completed: {events:?}"
    );
    assert_eq!(
        h.sent(),
        vec![m(
            1,
            BasicReject {
                delivery_tag: 2,
                requeue: true
            }
        )]
    );

    // The user's cancel is confirmed while a delivery is unacked, then the
    // broker delivers again.
    let mut h = H::new(Config::default());
    h.consumer(2, 1, "ctag.1", 0);
    h.deliver(1, "ctag.1", 1, b"x");
    assert_eq!(deliveries(&h.events(), 2).len(), 1);
    h.conn.cancel(3, 2);
    let _ = h.sent();
    h.recv(
        1,
        BasicCancelOk {
            consumer_tag: "ctag.1".into(),
        },
    );
    let events = h.events();
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::ConsumerEnded { tag: 2 })));
    h.deliver(1, "ctag.1", 2, b"late");
    let events = h.events();
    assert!(
        deliveries(&events, 2).is_empty(),
        "delivery after Event::ConsumerEnded: {events:?}"
    );
}

#[test]
fn poll_delivery_takes_only_a_delivery_at_the_head_for_that_consumer() {
    let mut h = H::new(Config::default());
    h.consumer(20, 1, "c", 0);
    h.consumer(30, 2, "d", 0);
    h.deliver(2, "d", 1, b"for 30");
    h.deliver(1, "c", 1, b"for 20");
    // The head is 30's: 20 gets nothing yet, and the order is kept.
    assert!(!h.conn.delivery_is_next(20));
    assert!(h.conn.poll_delivery(20).is_none());
    assert!(h.conn.delivery_is_next(30));
    let d = h.conn.poll_delivery(30).unwrap();
    assert_eq!(&d.body[..], b"for 30");
    let d = h.conn.poll_delivery(20).unwrap();
    assert_eq!(&d.body[..], b"for 20");
    assert!(h.conn.poll_delivery(20).is_none());
    assert!(h.conn.poll_event().is_none());
}

// ----------------------------------------------------------------------
// Issue 11/12: promises that keep their word.

/// A consumer of `names` (one channel), its consume-oks not yet answered;
/// returns the consumer tags the client chose, in order.
fn consume_multi(h: &mut H, tag: Tag, names: &[&str]) -> Vec<String> {
    let qs = names
        .iter()
        .map(|n| ConsumeQueue {
            queue: (*n).into(),
            ..Default::default()
        })
        .collect();
    h.conn.consume(tag, qs, false, 0);
    let out = h.conn.take_output();
    let frames = decode_frames(&out, h.frame_max());
    frames
        .into_iter()
        .filter_map(|f| match f {
            Frame::Method {
                method: Method::BasicConsume(c),
                ..
            } => Some(c.consumer_tag.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn consume_then_qos_resolve_in_either_reply_order() {
    for consume_ok_first in [true, false] {
        let mut h = H::new(Config::default());
        let tags = consume_multi(&mut h, 20, &["q"]);
        h.conn.qos(21, 20, 0, 5, false);
        let _ = h.sent();
        h.recv(1, ChannelOpenOk {});
        let consume_ok = BasicConsumeOk {
            consumer_tag: tags[0].as_str().into(),
        };
        if consume_ok_first {
            h.recv(1, consume_ok);
            h.recv(1, BasicQosOk {});
        } else {
            // RabbitMQ 3.10's order: the qos-ok overtakes the consume-ok.
            h.recv(1, BasicQosOk {});
            h.recv(1, consume_ok);
        }
        assert_matches!(h.result(21), Ok(Outcome::Done));
        assert!(h.conn.is_open(), "order {consume_ok_first}");
        h.deliver(1, &tags[0], 1, b"x");
        assert_eq!(deliveries(&h.events(), 20).len(), 1);
    }
}

#[test]
fn a_reply_that_answers_nothing_pending_is_still_a_violation() {
    let mut h = H::new(Config::default());
    let _ = consume_multi(&mut h, 20, &["q"]);
    let _ = h.sent();
    h.recv(1, ChannelOpenOk {});
    h.recv(1, TxCommitOk {});
    let sent = h.sent();
    expect_connection_close(&sent, reply_code::COMMAND_INVALID);
}

#[test]
fn consumer_tags_are_chosen_per_queue_and_duplicates_refused() {
    let mut h = H::new(Config::default());
    let tags = consume_multi(&mut h, 20, &["a", "b", "c"]);
    assert_eq!(tags.len(), 3);
    assert!(tags.iter().all(|t| t.starts_with("puka.ctag-")), "{tags:?}");
    let mut unique = tags.clone();
    unique.dedup();
    assert_eq!(unique.len(), 3, "{tags:?}");
    // The same tag for two queues: refused before anything is sent.
    let qs = vec![
        ConsumeQueue {
            queue: "a".into(),
            consumer_tag: "t".into(),
            ..Default::default()
        },
        ConsumeQueue {
            queue: "b".into(),
            consumer_tag: "t".into(),
            ..Default::default()
        },
    ];
    h.conn.consume(30, qs, false, 0);
    assert_matches!(h.result(30), Err(Error::InvalidArgument(_)));
    assert!(h.sent().is_empty());
}

#[test]
fn server_cancel_of_one_queue_ends_a_multi_queue_consumer_naming_it() {
    let mut h = H::new(Config::default());
    let tags = consume_multi(&mut h, 20, &["a", "b", "c"]);
    h.recv(1, ChannelOpenOk {});
    // consume-oks out of order: each is matched by its tag.
    for i in [2, 0, 1] {
        h.recv(
            1,
            BasicConsumeOk {
                consumer_tag: tags[i].as_str().into(),
            },
        );
    }
    h.deliver(1, &tags[0], 1, b"x");
    let d = deliveries(&h.events(), 20).pop().unwrap();
    // Queue b is deleted: the broker cancels its consumer.
    h.recv(
        1,
        BasicCancel {
            consumer_tag: tags[1].as_str().into(),
            no_wait: true,
        },
    );
    let err = match h.result(20) {
        Err(e) => e,
        other => panic!("expected the consumer to end, got {other:?}"),
    };
    assert_matches!(&err, Error::ConsumerCancelled { queue, consumer_tag }
        if queue == "b" && *consumer_tag == tags[1]);
    // The other queues are cancelled too.
    let sent = h.sent();
    let cancelled: Vec<String> = sent
        .iter()
        .filter_map(|s| match s {
            Sent::M(1, Method::BasicCancel(c)) => Some(c.consumer_tag.to_string()),
            _ => None,
        })
        .collect();
    let mut cancelled = cancelled;
    cancelled.sort();
    assert_eq!(cancelled, vec![tags[0].clone(), tags[2].clone()]);
    // A delivery received before stays valid to ack.
    h.conn.ack(&d, false).unwrap();
}

#[test]
fn consumer_ready_resolves_with_the_tags_once_every_queue_is_registered() {
    let mut h = H::new(Config::default());
    let tags = consume_multi(&mut h, 20, &["a", "b"]);
    h.conn.consumer_ready(21, 20);
    h.recv(1, ChannelOpenOk {});
    h.recv(
        1,
        BasicConsumeOk {
            consumer_tag: tags[0].as_str().into(),
        },
    );
    assert!(h.events().is_empty(), "one queue still pending");
    h.recv(
        1,
        BasicConsumeOk {
            consumer_tag: tags[1].as_str().into(),
        },
    );
    assert_matches!(h.result(21), Ok(Outcome::ConsumerTags(t)) if t.len() == 2);
    // Once ready, at once.
    h.conn.consumer_ready(22, 20);
    assert_matches!(h.result(22), Ok(Outcome::ConsumerTags(_)));
    // A consumer that fails first fails its waiters.
    let _ = h.sent();
    let tags = consume_multi(&mut h, 30, &["missing"]);
    let _ = tags;
    h.conn.consumer_ready(31, 30);
    h.recv(2, ChannelOpenOk {});
    h.recv(
        2,
        ChannelClose {
            reply_code: 404,
            reply_text: "NOT_FOUND - no queue 'missing'".into(),
            class_id: 60,
            method_id: 20,
        },
    );
    let events = h.events();
    assert_matches!(result_of(&events, 31), Err(Error::NotFound(_)));
    assert_matches!(result_of(&events, 30), Err(Error::NotFound(_)));
}

#[test]
fn graceful_close_waits_for_confirms_then_closes() {
    let mut h = H::new(Config::default());
    publish(&mut h, 10, "q", false, b"a");
    publish(&mut h, 11, "q", false, b"b");
    let _ = h.sent();
    h.recv(1, ChannelOpenOk {});
    h.recv(1, ConfirmSelectOk {});
    h.conn.close(50, h.now, Duration::from_secs(5));
    // Nothing goes out yet, and new work is refused.
    assert!(h.sent().is_empty());
    publish(&mut h, 12, "q", false, b"c");
    assert_matches!(h.result(12), Err(Error::ConnectionClosed));
    assert!(!h.conn.is_open());
    // The broker confirms both: the promises succeed, then the close goes.
    h.recv(
        1,
        BasicAck {
            delivery_tag: 2,
            multiple: true,
        },
    );
    let events = h.events();
    assert_matches!(result_of(&events, 10), Ok(Outcome::Done));
    assert_matches!(result_of(&events, 11), Ok(Outcome::Done));
    assert_matches!(
        &h.sent()[..],
        [Sent::M(0, Method::ConnectionClose(c))] if c.reply_code == 200
    );
    h.recv(0, ConnectionCloseOk {});
    let events = h.events();
    assert_matches!(result_of(&events, 50), Ok(Outcome::Done));
}

#[test]
fn graceful_close_at_its_deadline_reports_unknown_outcomes() {
    let mut h = H::new(Config::default());
    h.conn.rpc(10, declare("q"));
    publish(&mut h, 11, "q", false, b"a");
    let _ = h.sent();
    h.recv(1, ChannelOpenOk {});
    h.recv(2, ChannelOpenOk {});
    h.recv(2, ConfirmSelectOk {});
    let t0 = h.now;
    h.conn.close(50, t0, Duration::from_secs(2));
    assert_eq!(h.conn.poll_timeout(), Some(t0 + Duration::from_secs(2)));
    h.conn.handle_timeout(t0 + Duration::from_secs(2));
    let events = h.events();
    for tag in [10, 11] {
        assert_matches!(
            result_of(&events, tag),
            Err(Error::OutcomeUnknown(e)) if matches!(**e, Error::ConnectionClosed)
        );
    }
    assert_matches!(&h.sent()[..], [Sent::M(0, Method::ConnectionClose(_))]);
    // A late reply is dropped; close-ok completes the close.
    h.recv(1, declare_ok("q"));
    h.recv(0, ConnectionCloseOk {});
    let events = h.events();
    assert_matches!(result_of(&events, 50), Ok(Outcome::Done));
}

#[test]
fn a_lone_refused_publish_fails_with_the_brokers_error() {
    let mut h = H::new(Config::default());
    publish(&mut h, 1, "q", false, b"a");
    let _ = h.sent();
    h.recv(1, ChannelOpenOk {});
    h.recv(1, ConfirmSelectOk {});
    h.recv(
        1,
        ChannelClose {
            reply_code: 404,
            reply_text: "NOT_FOUND - no exchange 'x'".into(),
            class_id: 60,
            method_id: 40,
        },
    );
    let _ = h.sent();
    let events = h.events();
    assert_matches!(result_of(&events, 1), Err(Error::NotFound(_)));
}

#[test]
fn a_no_ack_consumer_takes_the_repeated_tags_of_direct_reply_to() {
    // RabbitMQ gives every direct reply-to delivery the channel's next tag
    // without advancing it: replies on `amq.rabbitmq.reply-to` all carry
    // the same tag. They are no-ack, so no ack can settle the wrong range.
    for whole in [false, true] {
        let mut h = H::new(Config::default());
        h.conn.consume(21, queues(DIRECT_REPLY_TO), true, 0);
        h.recv(1, ChannelOpenOk {});
        h.recv(
            1,
            BasicConsumeOk {
                consumer_tag: "r".into(),
            },
        );
        let _ = h.sent();
        let _ = h.events();
        let mut bytes = BytesMut::new();
        for body in [b"a", b"b", b"c"] {
            bytes.extend_from_slice(&method_bytes(
                1,
                BasicDeliver {
                    consumer_tag: "r".into(),
                    delivery_tag: 1,
                    redelivered: false,
                    exchange: "".into(),
                    routing_key: "amq.rabbitmq.reply-to.x".into(),
                },
            ));
            encode_content(
                &mut bytes,
                1,
                60,
                &BasicProperties::default(),
                body,
                131_072,
            )
            .expect("content");
            if !whole {
                h.recv_raw(&bytes.split());
            }
        }
        h.recv_raw(&bytes);
        let bodies: Vec<_> = h
            .events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Delivery { tag: 21, delivery } => {
                    assert_eq!(delivery.delivery_tag, 1);
                    assert!(!delivery.needs_ack());
                    Some(delivery.body)
                }
                _ => None,
            })
            .collect();
        assert_eq!(bodies, [&b"a"[..], b"b", b"c"], "whole: {whole}");
        assert!(h.sent().is_empty(), "whole: {whole}");
        assert!(h.conn.is_open());
        // Zero is still refused.
        h.deliver(1, "r", 0, b"z");
        expect_connection_close(&h.sent(), reply_code::COMMAND_INVALID);
    }
}

#[test]
fn delivery_tags_must_rise() {
    for tags in [[2u64, 1], [1, 1], [0, 5]] {
        let mut h = H::new(deferred_acks());
        h.consumer(20, 1, "c", 0);
        h.deliver(1, "c", tags[0], b"x");
        if tags[0] != 0 {
            let _ = h.events();
            let _ = h.sent();
            h.deliver(1, "c", tags[1], b"y");
        }
        let sent = h.sent();
        expect_connection_close(&sent, reply_code::COMMAND_INVALID);
    }
}

#[test]
fn eof_during_authentication_is_a_broken_connection_with_failure_close() {
    let now = Instant::now();
    let mut conn = Connection::new(Config::default(), CONNECT, now);
    let _ = conn.take_output();
    let mut start = server_start();
    if let Method::ConnectionStart(s) = &mut start {
        let mut caps = s
            .server_properties
            .get("capabilities")
            .and_then(FieldValue::as_table)
            .cloned()
            .unwrap();
        caps.insert("authentication_failure_close", true);
        s.server_properties.insert("capabilities", caps);
    }
    feed(&mut conn, now, &method_bytes(0, start));
    let _ = conn.take_output();
    conn.handle_eof();
    let mut h = H::wrap(conn, now, false);
    let events = h.events();
    assert_matches!(result_of(&events, CONNECT), Err(Error::ConnectionBroken(_)));
}

#[test]
fn a_held_get_keeps_its_channel_out_of_the_pool() {
    let mut h = H::new(Config::default());
    h.conn.basic_get(10, "q", false);
    let _ = h.sent();
    h.recv(1, ChannelOpenOk {});
    h.recv(
        1,
        BasicGetOk {
            delivery_tag: 1,
            redelivered: false,
            exchange: "".into(),
            routing_key: "q".into(),
            message_count: 0,
        },
    );
    h.recv_content(1, &BasicProperties::default(), b"m");
    let d = match h.result(10) {
        Ok(Outcome::Get(Some(d))) => d,
        other => panic!("{other:?}"),
    };
    // An unrelated operation gets a channel of its own, and its error
    // leaves the held delivery alone.
    h.conn.rpc(11, declare("missing"));
    let sent = h.sent();
    assert!(
        matches!(
            &sent[..],
            [Sent::M(2, Method::ChannelOpen(_)), Sent::M(2, _)]
        ),
        "{sent:?}"
    );
    h.recv(2, ChannelOpenOk {});
    h.recv(
        2,
        ChannelClose {
            reply_code: 404,
            reply_text: "NOT_FOUND".into(),
            class_id: 50,
            method_id: 10,
        },
    );
    let _ = h.events();
    let _ = h.sent();
    // The next get of the same queue reuses the held channel.
    h.conn.basic_get(12, "q", false);
    assert_matches!(&h.sent()[..], [Sent::M(1, Method::BasicGet(_))]);
    h.recv(1, BasicGetEmpty {});
    let _ = h.events();
    h.conn.ack(&d, false).unwrap();
    assert!(!h.sent().is_empty());
    // Settled: the channel is back in the pool.
    h.conn.rpc(13, declare("q"));
    assert_matches!(&h.sent()[..], [Sent::M(1, Method::QueueDeclare(_))]);
}

#[test]
fn a_transaction_covers_acks_and_a_rollback_makes_them_outstanding_again() {
    let mut h = H::new(Config {
        confirms: Confirms::Off,
        ..Config::default()
    });
    h.consumer(20, 1, "c", 0);
    h.conn.tx_select(30);
    let _ = h.sent();
    h.recv(2, ChannelOpenOk {});
    h.recv(2, TxSelectOk {});
    assert_matches!(h.result(30), Ok(Outcome::Done));
    // The consumer's channel is made transactional too.
    assert_eq!(h.sent(), vec![m(1, TxSelect {})]);
    h.recv(1, TxSelectOk {});
    h.deliver(1, "c", 1, b"x");
    let d = deliveries(&h.events(), 20).pop().unwrap();
    h.conn.ack(&d, false).unwrap();
    h.conn.tx_rollback(31);
    let sent = h.sent();
    assert!(sent.contains(&m(2, TxRollback {})), "{sent:?}");
    assert!(sent.contains(&m(1, TxRollback {})), "{sent:?}");
    h.recv(2, TxRollbackOk {});
    assert!(h.events().is_empty(), "waits for every channel");
    h.recv(1, TxRollbackOk {});
    assert_matches!(h.result(31), Ok(Outcome::Done));
    // Rolled back: the delivery is outstanding again and can be acked.
    h.conn.ack(&d, false).unwrap();
    h.conn.tx_commit(32);
    let _ = h.sent();
    h.recv(1, TxCommitOk {});
    h.recv(2, TxCommitOk {});
    assert_matches!(h.result(32), Ok(Outcome::Done));
    assert_matches!(h.conn.ack(&d, false), Err(Error::UnknownDeliveryTag(1)));
}

#[test]
fn a_delivery_of_another_connection_is_refused() {
    let mut a = H::new(Config::default());
    let mut b = H::new(Config::default());
    a.consumer(20, 1, "c", 0);
    b.consumer(20, 1, "c", 0);
    a.deliver(1, "c", 1, b"x");
    b.deliver(1, "c", 1, b"y");
    let da = deliveries(&a.events(), 20).pop().unwrap();
    let _ = b.events();
    assert_matches!(b.conn.ack(&da, false), Err(Error::UnknownDeliveryTag(1)));
    assert!(b.sent().is_empty());
}

// ----------------------------------------------------------------------
// A huge frame_max wish and a server that tunes 0 (no limit).

/// A reader that, while it is read, reads another connection first (as a
/// caller's own `Read` could): each connection still gets its own bytes.
struct ReadsAnother<'a> {
    inner: &'a mut Connection,
    inner_bytes: &'a [u8],
    bytes: &'a [u8],
}

impl Read for ReadsAnother<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read_from(&mut self.inner_bytes)?;
        assert_eq!(n, 4);
        let n = self.bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        Ok(n)
    }
}

#[test]
fn reads_share_a_scratch_buffer_yet_may_nest() {
    let (mut a, _) = handshake(Config::default());
    let (mut b, _) = handshake(Config::default());
    let (before_a, before_b) = (a.read_buf.len(), b.read_buf.len());
    let mut outer = ReadsAnother {
        inner: &mut b,
        inner_bytes: b"bbbb",
        bytes: b"aaaaaa",
    };
    assert_eq!(a.read_from(&mut outer).unwrap(), 6);
    assert_eq!(&a.read_buf[before_a..], b"aaaaaa");
    assert_eq!(&b.read_buf[before_b..], b"bbbb");
    // And again on the shared buffer: nothing of the last read shows.
    assert_eq!(a.read_from(&mut &b"cc"[..]).unwrap(), 2);
    assert_eq!(&a.read_buf[before_a..], b"aaaaaacc");
}

#[test]
fn huge_frame_max_wish_is_capped_and_big_frame_headers_reserve_little() {
    let config = Config {
        frame_max: Some(u32::MAX),
        ..Config::default()
    };
    let (mut conn, now) = handshake_with(config, tune(2047, 0, 0));
    assert_eq!(conn.tuned().frame_max, negotiate::MAX_FRAME_MAX);

    // A frame of exactly the cap announced, a few bytes of it sent: the
    // connection waits for the rest with little memory reserved.
    let mut partial = vec![frame::FRAME_BODY, 0, 1];
    partial.extend_from_slice(&(negotiate::MAX_FRAME_MAX - 8).to_be_bytes());
    partial.extend_from_slice(b"abc");
    conn.read_from(&mut &partial[..]).unwrap();
    conn.handle_input(now);
    assert!(conn.is_open());
    assert!(conn.poll_event().is_none());
    let cap = conn.read_buf.capacity();
    assert!(cap <= 4 * READ_CHUNK, "reserved {cap} bytes for 10");

    // A frame above the cap: a frame error (501), nothing reserved for it.
    let (mut conn, now) = handshake_with(
        Config {
            frame_max: Some(u32::MAX),
            ..Config::default()
        },
        tune(2047, 0, 0),
    );
    let mut huge = vec![frame::FRAME_BODY, 0, 1];
    huge.extend_from_slice(&(u32::MAX - 8).to_be_bytes());
    huge.extend_from_slice(b"abc");
    conn.read_from(&mut &huge[..]).unwrap();
    conn.handle_input(now);
    assert!(conn.read_buf.capacity() <= 4 * READ_CHUNK);
    assert_matches!(conn.error(), Some(Error::Protocol(e)) if e.reply_code() == 501);
    let sent = parse_sent(decode_frames(&conn.take_output(), FRAME_MIN_SIZE));
    expect_connection_close(&sent, 501);
}

#[test]
fn stats_count_a_scripted_run_exactly() {
    let mut h = H::new(Config::default());
    // The handshake: 3 frames each way.
    let s0 = h.conn.stats();
    assert_eq!((s0.frames_in, s0.frames_out), (3, 3));
    h.consumer(20, 1, "c", 0);
    h.deliver(1, "c", 1, b"one");
    h.deliver(1, "c", 2, b"two");
    let ds = deliveries(&h.events(), 20);
    h.conn.ack(&ds[0], false).unwrap();
    h.conn.reject(&ds[1], true).unwrap();
    for tag in 30..33 {
        publish(&mut h, tag, "q", tag == 32, b"m");
    }
    let _ = h.sent();
    h.recv(2, ChannelOpenOk {});
    h.recv(2, ConfirmSelectOk {});
    h.recv(
        2,
        BasicAck {
            delivery_tag: 2,
            multiple: true,
        },
    );
    h.recv(
        2,
        BasicReturn {
            reply_code: 312,
            reply_text: "NO_ROUTE".into(),
            exchange: "".into(),
            routing_key: "q".into(),
        },
    );
    h.recv_content(2, &BasicProperties::default(), b"m");
    h.recv(
        2,
        BasicNack {
            delivery_tag: 3,
            multiple: false,
            requeue: false,
        },
    );
    h.recv(
        0,
        ConnectionBlocked {
            reason: "low on memory".into(),
        },
    );
    let _ = h.events();
    let _ = h.sent();
    let s = h.conn.stats();
    assert_eq!(s.publishes, 3);
    assert_eq!(s.confirms, 2);
    assert_eq!(s.nacks_received, 1);
    assert_eq!(s.returns, 1);
    assert_eq!(s.deliveries, 2);
    assert_eq!((s.acks, s.rejects), (1, 1));
    assert_eq!(s.times_blocked, 1);
    assert!(s.blocked);
    assert_eq!(s.consumers, 1);
    assert_eq!(s.channels, 2);
    assert_eq!(s.unconfirmed, 0);
    assert_eq!(s.write_buffer, 0);
}

#[test]
fn stats_bytes_and_frames_match_the_wire() {
    let now = Instant::now();
    let config = Config::default();
    let mut conn = Connection::new(config, CONNECT, now);
    let (mut bytes_out, mut frames_out) = (0u64, 0u64);
    let (mut bytes_in, mut frames_in) = (0u64, 0u64);
    let mut take = |conn: &mut Connection| {
        let out = conn.take_output();
        bytes_out += out.len() as u64;
        frames_out += decode_frames(&out, 131_072).len() as u64;
    };
    take(&mut conn);
    let mut inputs: Vec<BytesMut> = vec![
        method_bytes(0, server_start()),
        method_bytes(0, default_tune()),
        method_bytes(0, ConnectionOpenOk {}),
    ];
    for input in inputs.drain(..) {
        bytes_in += input.len() as u64;
        frames_in += 1;
        feed(&mut conn, now, &input);
        take(&mut conn);
    }
    conn.publish(
        1,
        "",
        "q",
        false,
        false,
        &BasicProperties::default(),
        &[7u8; 300_000],
    );
    conn.rpc(2, declare("q"));
    take(&mut conn);
    bytes_in += HEARTBEAT.len() as u64;
    frames_in += 1;
    feed(&mut conn, now, &HEARTBEAT);
    let s = conn.stats();
    assert_eq!((s.bytes_in, s.frames_in), (bytes_in, frames_in));
    assert_eq!((s.bytes_out, s.frames_out), (bytes_out, frames_out));
}

/// The server's frames for a run of deliveries on two consumers (ch 1
/// with acks, tag "c1"; ch 2 no-ack, tag "c2"): whole small messages, an
/// empty body, a body in two frames, properties, a stray consumer tag,
/// and, with `violation`, last a delivery tag that does not rise. Each
/// frame separately.
fn delivery_run_frames(violation: bool) -> Vec<BytesMut> {
    let deliver = |ch: u16, ctag: &str, tag: u64, rk: &str| {
        method_bytes(
            ch,
            BasicDeliver {
                consumer_tag: ctag.into(),
                delivery_tag: tag,
                redelivered: tag.is_multiple_of(2),
                exchange: "ex".into(),
                routing_key: rk.into(),
            },
        )
    };
    let none = BasicProperties::default;
    let props = BasicProperties::default()
        .with_content_type("text/plain")
        .with_header("x-n", 7i32);
    let mut frames = vec![
        deliver(1, "c1", 1, "a"),
        header_bytes(1, 60, 1, none()),
        body_bytes(1, b"1"),
        deliver(2, "c2", 1, "b"),
        header_bytes(2, 60, 2, props.clone()),
        body_bytes(2, b"22"),
        // An empty body: no body frame.
        deliver(1, "c1", 2, "a"),
        header_bytes(1, 60, 0, none()),
        deliver(1, "c1", 3, "a"),
        header_bytes(1, 60, 5, props),
        body_bytes(1, b"he"),
        body_bytes(1, b"llo"),
        // A consumer tag that is not ours: rejected, never reported.
        deliver(1, "other", 4, "a"),
        header_bytes(1, 60, 1, none()),
        body_bytes(1, b"4"),
        deliver(2, "c2", 2, "b"),
        header_bytes(2, 60, 1, none()),
        body_bytes(2, b"5"),
        deliver(1, "c1", 5, "a"),
        header_bytes(1, 60, 1, none()),
        body_bytes(1, b"6"),
    ];
    if violation {
        // Not above 5: a protocol violation.
        frames.push(deliver(1, "c1", 5, "a"));
        frames.push(header_bytes(1, 60, 1, none()));
        frames.push(body_bytes(1, b"7"));
    }
    frames
}

/// What a connection did with `chunks`: its events, its output and its
/// counters, after acking every delivery that needs it.
fn delivery_run(chunks: &[Vec<u8>]) -> (Vec<String>, Vec<Sent>, Stats) {
    let mut h = H::new(Config::default());
    h.consumer(20, 1, "c1", 0);
    h.conn.consume(21, queues("q"), true, 0);
    let _ = h.sent();
    h.recv(2, ChannelOpenOk {});
    h.recv(
        2,
        BasicConsumeOk {
            consumer_tag: "c2".into(),
        },
    );
    let mut events = Vec::new();
    let mut received = Vec::new();
    for c in chunks {
        h.recv_raw(c);
        for e in h.events() {
            // Channel epochs count across the process: left out.
            let text = format!("{e:?}");
            let text = match text.find("epoch: ") {
                Some(i) => {
                    let digits = text[i + 7..].find(|c: char| !c.is_ascii_digit());
                    let end = i + 7 + digits.unwrap_or(0);
                    format!("{}epoch{}", &text[..i], &text[end..])
                }
                None => text,
            };
            events.push(text);
            if let Event::Delivery { delivery, .. } = e {
                received.push(delivery);
            }
        }
    }
    // Acked at the end: when the stray delivery's reject went out must not
    // depend on how the bytes were cut.
    for d in received.iter().filter(|d| d.needs_ack()) {
        let _ = h.conn.ack(d, false);
    }
    let mut stats = h.conn.stats();
    stats.bytes_in = 0;
    (events, h.sent(), stats)
}

#[test]
fn whole_messages_in_one_read_match_frame_by_frame() {
    // Fed a frame at a time, each message goes through the content slot;
    // fed at once, whole small messages take the one-pass path. Nothing
    // observable may differ: order, names, bodies, acks, counters, errors.
    for violation in [false, true] {
        let frames: Vec<Vec<u8>> = delivery_run_frames(violation)
            .into_iter()
            .map(|f| f.to_vec())
            .collect();
        let split = delivery_run(&frames);
        let whole = delivery_run(&[frames.concat()]);
        assert_eq!(split.0, whole.0);
        assert_eq!(split.1, whole.1);
        assert_eq!(split.2, whole.2);
        // And what that is: six deliveries in order (then the violation).
        let reported: Vec<&String> = whole
            .0
            .iter()
            .filter(|e| e.starts_with("Delivery"))
            .collect();
        assert_eq!(reported.len(), 6, "{:#?}", whole.0);
        let bodies = ["1", "22", "", "hello", "5", "6"];
        for (e, body) in reported.iter().zip(bodies) {
            assert!(e.contains(&format!("body: b{body:?}")), "{e} lacks {body}");
        }
        assert_eq!(whole.2.deliveries, 6);
        let refused = whole
            .0
            .last()
            .is_some_and(|e| e.contains("does not follow 5"));
        assert_eq!(refused, violation, "{:#?}", whole.0);
        if !violation {
            // The stray's reject, then one ack settling 1, 2, 3 and 5.
            assert_eq!(
                whole.1,
                vec![
                    m(
                        1,
                        BasicReject {
                            delivery_tag: 4,
                            requeue: true
                        }
                    ),
                    m(
                        1,
                        BasicAck {
                            delivery_tag: 5,
                            multiple: true
                        }
                    ),
                ]
            );
        }
    }
}

#[test]
fn held_gets_hash_is_fnv1a() {
    use std::hash::Hasher;
    let hash = |s: &[u8]| {
        let mut h = Fnv1a::default();
        h.write(s);
        h.finish()
    };
    // The published FNV-1a 64 test vectors.
    assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(hash(b"foobar"), 0x8594_4171_f739_67e8);
}

/// The server's answers to five gets, one per pooled channel (the gets of
/// tags 10–14 below): whole small messages with and without properties, an
/// empty body, a body in two frames, an exchange name that is not ASCII
/// and a `get-empty` (on a sixth channel), or with `violation` last a
/// get-ok whose delivery tag is zero. Each frame separately.
fn get_run_frames(violation: bool) -> Vec<BytesMut> {
    let get_ok = |ch: u16, tag: u64, exchange: &str| {
        method_bytes(
            ch,
            BasicGetOk {
                delivery_tag: tag,
                redelivered: tag.is_multiple_of(2),
                exchange: exchange.into(),
                routing_key: "q".into(),
                message_count: u32::from(ch),
            },
        )
    };
    let none = BasicProperties::default;
    let props = BasicProperties::default()
        .with_content_type("text/plain")
        .with_header("x-n", 7i32);
    let mut frames = vec![
        get_ok(1, 1, "ex"),
        header_bytes(1, 60, 1, none()),
        body_bytes(1, b"1"),
        get_ok(2, 2, "ex"),
        header_bytes(2, 60, 2, props.clone()),
        body_bytes(2, b"22"),
        // An empty body: no body frame.
        get_ok(3, 1, ""),
        header_bytes(3, 60, 0, none()),
        // A body in two frames: the general path.
        get_ok(4, 1, "ex"),
        header_bytes(4, 60, 5, props),
        body_bytes(4, b"he"),
        body_bytes(4, b"llo"),
    ];
    if violation {
        frames.push(get_ok(5, 0, "ex"));
        frames.push(header_bytes(5, 60, 1, none()));
        frames.push(body_bytes(5, b"5"));
    } else {
        // Not ASCII: the general path checks it as UTF-8.
        frames.push(get_ok(5, 1, "échange"));
        frames.push(header_bytes(5, 60, 1, none()));
        frames.push(body_bytes(5, b"5"));
        frames.push(method_bytes(6, BasicGetEmpty));
    }
    frames
}

/// What a connection did with the get answers in `chunks`: its events, its
/// output and its counters, after acking every delivery that needs it.
fn get_run(chunks: &[Vec<u8>], violation: bool) -> (Vec<String>, Vec<Sent>, Stats) {
    let mut h = H::new(Config::default());
    for (tag, queue, no_ack) in [
        (10, "q", false),
        (11, "q", true),
        (12, "r", false),
        (13, "s", false),
        (14, "t", false),
    ] {
        h.conn.basic_get(tag, queue, no_ack);
    }
    for ch in 1..=5 {
        h.recv(ch, ChannelOpenOk {});
    }
    let _ = h.sent();
    if !violation {
        // The get the get-empty answers, on a sixth channel.
        h.conn.basic_get(15, "z", true);
        h.recv(6, ChannelOpenOk {});
    }
    let _ = h.sent();
    let mut events = Vec::new();
    let mut received = Vec::new();
    for c in chunks {
        h.recv_raw(c);
        for e in h.events() {
            let text = format!("{e:?}");
            let text = match text.find("epoch: ") {
                Some(i) => {
                    let digits = text[i + 7..].find(|c: char| !c.is_ascii_digit());
                    let end = i + 7 + digits.unwrap_or(0);
                    format!("{}epoch{}", &text[..i], &text[end..])
                }
                None => text,
            };
            events.push(text);
            if let Event::Complete {
                result: Ok(Outcome::Get(Some(d))),
                ..
            } = e
            {
                received.push(d);
            }
        }
    }
    for d in received.iter().filter(|d| d.needs_ack()) {
        let _ = h.conn.ack(d, false);
    }
    let mut stats = h.conn.stats();
    stats.bytes_in = 0;
    (events, h.sent(), stats)
}

#[test]
fn whole_get_answers_in_one_read_match_frame_by_frame() {
    // Fed a frame at a time, each answer goes through the content slot;
    // fed at once, whole small ones take the one-pass path. Nothing
    // observable may differ: order, names, bodies, acks, counters, errors.
    for violation in [false, true] {
        let frames: Vec<Vec<u8>> = get_run_frames(violation)
            .into_iter()
            .map(|f| f.to_vec())
            .collect();
        let split = get_run(&frames, violation);
        let whole = get_run(&[frames.concat()], violation);
        assert_eq!(split.0, whole.0);
        assert_eq!(split.1, whole.1);
        assert_eq!(split.2, whole.2);
        let got: Vec<&String> = whole.0.iter().filter(|e| e.contains("Get(Some")).collect();
        let bodies: &[&str] = if violation {
            &["1", "22", "", "hello"]
        } else {
            &["1", "22", "", "hello", "5"]
        };
        assert_eq!(got.len(), bodies.len(), "{:#?}", whole.0);
        for (e, body) in got.iter().zip(bodies) {
            assert!(e.contains(&format!("body: b{body:?}")), "{e} lacks {body}");
        }
        assert_eq!(whole.2.deliveries, bodies.len() as u64);
        let refused = whole.0.iter().any(|e| e.contains("does not follow 0"));
        assert_eq!(refused, violation, "{:#?}", whole.0);
        if !violation {
            assert!(
                whole.0.iter().any(|e| e.contains("Get(None)")),
                "{:#?}",
                whole.0
            );
            // One ack per channel whose get needs one (11 was no-ack).
            let acks = whole
                .1
                .iter()
                .filter(|s| matches!(s, Sent::M(_, Method::BasicAck(_))))
                .count();
            assert_eq!(acks, 4, "{:#?}", whole.1);
        }
    }
}
