//! Shared code of puka's fuzz targets.
//!
//! The two targets in `fuzz_targets/` are thin wrappers around
//! [`check_decode`] and [`check_connection`], so the same checks also run as
//! ordinary tests (`cargo test` in this directory, on stable Rust, no libFuzzer)
//! over every input saved under `regressions/` and every seed under `seeds/`.
//! [`decode_seeds`] and [`connection_seeds`] build those seeds; the
//! `gen_seeds` example writes them out.

use bytes::{Bytes, BytesMut};
use puka::codec::frame::{self, ContentHeader, Frame};
use puka::codec::method::*;
use puka::codec::wire::Reader;
use puka::codec::{
    BasicProperties, CodecError, Decimal, FieldArray, FieldTable, FieldValue, Method, Timestamp,
};
use puka::protocol::{Config, Confirms, Connection, ConsumeQueue, Event, Outcome, Tag};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod recovery;
pub use recovery::check_recovery;

/// Smallest and largest `frame_max` the decode target uses.
pub const FRAME_MAX_RANGE: (u32, u32) = (4096, 1 << 20);

// ---------------------------------------------------------------------------
// Target 1: frame, method, properties and table decoding.

/// The `frame_max` the decode target takes from the input's first 4 bytes
/// (big-endian, clamped to [`FRAME_MAX_RANGE`]), and the rest of the input.
pub fn split_frame_max(data: &[u8]) -> (u32, &[u8]) {
    if data.len() < 4 {
        return (FRAME_MAX_RANGE.0, data);
    }
    let raw = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    (raw.clamp(FRAME_MAX_RANGE.0, FRAME_MAX_RANGE.1), &data[4..])
}

/// Decodes `data` every way the codec can, checking that nothing panics, that
/// every decoded value re-encodes to bytes that decode to the same value
/// (compared as encoded bytes, and as values unless a float is NaN), and that
/// feeding the bytes in pieces gives the same frames as feeding them at once.
pub fn check_decode(data: &[u8]) {
    let (frame_max, rest) = split_frame_max(data);

    // Frames: all at once, then in pieces of a size the input picks.
    let whole = decode_stream(rest, frame_max, usize::MAX);
    let piece = 1 + data.first().map_or(0, |b| usize::from(*b) % 61);
    let pieces = decode_stream(rest, frame_max, piece);
    assert_eq!(
        whole, pieces,
        "decoding in pieces of {piece} bytes differs from decoding at once"
    );
    // The batch path (split_frames + frames) agrees with frame by frame.
    let batch = decode_stream_batch(rest, frame_max, piece);
    assert_eq!(
        whole, batch,
        "split_frames in pieces of {piece} bytes differs from decode"
    );

    // Each decoder directly on the same bytes.
    let payload = Bytes::copy_from_slice(rest);
    if let Ok(m) = Method::decode(payload.clone()) {
        round_trip(&m, encode_method_payload, decode_method_payload);
    }
    if let Ok(h) = ContentHeader::decode(payload.clone()) {
        round_trip(&h, |h, d| h.encode(d), ContentHeader::decode);
    }
    if let Ok(p) = BasicProperties::decode(&mut Reader::new(&payload)) {
        round_trip(
            &p,
            |p, d| p.encode(d),
            decode_whole(BasicProperties::decode),
        );
    }
    let mut r = Reader::new(&payload);
    if let Ok(t) = FieldTable::decode(&mut r) {
        let consumed = rest.len() - r.remaining();
        assert_eq!(
            consumed,
            t.encoded_len(),
            "table length differs from the bytes read"
        );
        check_table(&t);
    }
    if let Ok(a) = FieldArray::decode(&mut Reader::new(&payload)) {
        let mut e = BytesMut::new();
        a.encode(&mut e).expect("a decoded array must re-encode");
        assert_eq!(e.len(), a.encoded_len(), "FieldArray::encoded_len is wrong");
        round_trip(&a, |a, d| a.encode(d), decode_whole(FieldArray::decode));
    }
}

/// One decoded table: encoded_len agrees with encode, and it round-trips.
fn check_table(t: &FieldTable) {
    let mut e = BytesMut::new();
    t.encode(&mut e).expect("a decoded table must re-encode");
    assert_eq!(e.len(), t.encoded_len(), "FieldTable::encoded_len is wrong");
    round_trip(t, |t, d| t.encode(d), decode_whole(FieldTable::decode));
}

/// What decoding a byte stream gave: each frame re-encoded, then the error
/// that stopped it (if any) and the bytes left undecoded.
#[derive(Debug, PartialEq)]
struct Stream {
    frames: Vec<BytesMut>,
    error: Option<CodecError>,
    left: usize,
}

fn decode_stream(bytes: &[u8], frame_max: u32, piece: usize) -> Stream {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    loop {
        let before = buf.len();
        match frame::decode(&mut buf, frame_max) {
            Ok(Some(f)) => {
                assert!(buf.len() < before, "a decoded frame consumed no bytes");
                frames.push(check_frame(&f, frame_max));
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                if fed == bytes.len() {
                    return Stream {
                        frames,
                        error: None,
                        left: buf.len(),
                    };
                }
                let n = piece.min(bytes.len() - fed);
                buf.extend_from_slice(&bytes[fed..fed + n]);
                fed += n;
            }
            Err(e) => {
                // Every error maps to a close code and prints.
                assert!(matches!(e.reply_code(), 501..=505));
                let _ = e.to_string();
                return Stream {
                    frames,
                    error: Some(e),
                    left: usize::MAX,
                };
            }
        }
    }
}

/// As [`decode_stream`], with `frame::split_frames` and `FrameRef::decode`.
fn decode_stream_batch(bytes: &[u8], frame_max: u32, piece: usize) -> Stream {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    loop {
        let before = buf.len();
        match frame::split_frames(&mut buf, frame_max) {
            Ok(whole) if whole.is_empty() => {
                assert_eq!(buf.len(), before, "an empty split consumed bytes");
                if fed == bytes.len() {
                    return Stream {
                        frames,
                        error: None,
                        left: buf.len(),
                    };
                }
                let n = piece.min(bytes.len() - fed);
                buf.extend_from_slice(&bytes[fed..fed + n]);
                fed += n;
            }
            Ok(whole) => {
                assert_eq!(whole.len() + buf.len(), before, "bytes lost in a split");
                let mut walked = 0;
                for f in frame::frames(&whole) {
                    walked += f.len() + 8;
                    match f.decode() {
                        Ok(f) => frames.push(check_frame(&f, frame_max)),
                        Err(e) => {
                            return Stream {
                                frames,
                                error: Some(e),
                                left: usize::MAX,
                            }
                        }
                    }
                }
                assert_eq!(walked, whole.len(), "frames() skipped bytes");
            }
            Err(e) => {
                return Stream {
                    frames,
                    error: Some(e),
                    left: usize::MAX,
                };
            }
        }
    }
}

/// Checks one decoded frame: within `frame_max`, and it round-trips. Returns
/// its encoding.
fn check_frame(f: &Frame, frame_max: u32) -> BytesMut {
    match f {
        Frame::Method { method, .. } => {
            round_trip(method, encode_method_payload, decode_method_payload)
        }
        Frame::Header { header, .. } => {
            if let Some(h) = header.properties.headers() {
                check_table(h);
            }
            round_trip(header, |h, d| h.encode(d), ContentHeader::decode)
        }
        Frame::Body { payload, .. } => {
            assert!(payload.len() + 8 <= frame_max as usize);
            BytesMut::new()
        }
        Frame::Heartbeat => BytesMut::new(),
    };
    let mut e1 = BytesMut::new();
    f.encode(&mut e1).expect("a decoded frame must re-encode");
    let mut buf = e1.clone();
    let f2 = frame::decode(&mut buf, u32::MAX)
        .expect("a re-encoded frame must decode")
        .expect("a re-encoded frame is whole");
    assert!(buf.is_empty(), "a re-encoded frame left bytes behind");
    let mut e2 = BytesMut::new();
    f2.encode(&mut e2).unwrap();
    assert_eq!(e1, e2, "frame encoding is not stable");
    if *f != f2 {
        assert!(has_nan(f), "frame changed in a round trip: {f:?} -> {f2:?}");
    }
    e1
}

fn encode_method_payload(m: &Method, dst: &mut BytesMut) -> Result<(), CodecError> {
    m.encode(dst)
}

fn decode_method_payload(b: Bytes) -> Result<Method, CodecError> {
    Method::decode(b)
}

/// A decoder on a [`Reader`] that must consume all of its input.
fn decode_whole<T>(
    f: impl Fn(&mut Reader<'_>) -> Result<T, CodecError>,
) -> impl Fn(Bytes) -> Result<T, CodecError> {
    move |b| {
        let mut r = Reader::new(&b);
        let v = f(&mut r)?;
        assert_eq!(
            r.remaining(),
            0,
            "a re-encoded value was not consumed whole"
        );
        Ok(v)
    }
}

/// encode(v) = e1, decode(e1) = v2, encode(v2) = e2: e1 must equal e2, and
/// v must equal v2 unless it holds a NaN. Returns e1.
fn round_trip<T: PartialEq + Debug>(
    v: &T,
    encode: impl Fn(&T, &mut BytesMut) -> Result<(), CodecError>,
    decode: impl Fn(Bytes) -> Result<T, CodecError>,
) -> BytesMut {
    let mut e1 = BytesMut::new();
    encode(v, &mut e1).unwrap_or_else(|e| panic!("{v:?} was decoded but does not encode: {e}"));
    let v2 = decode(e1.clone().freeze())
        .unwrap_or_else(|e| panic!("re-encoding of {v:?} does not decode: {e}"));
    let mut e2 = BytesMut::new();
    encode(&v2, &mut e2).unwrap();
    assert_eq!(e1, e2, "encoding is not stable for {v:?}");
    if *v != v2 {
        assert!(has_nan(v), "value changed in a round trip: {v:?} -> {v2:?}");
    }
    e1
}

/// Whether a value (through its Debug output) may hold a NaN float, which
/// is never equal to itself.
fn has_nan<T: Debug>(v: &T) -> bool {
    format!("{v:?}").contains("NaN")
}

// ---------------------------------------------------------------------------
// Target 2: the connection state machine fed server bytes.

/// Operation tags the connection target uses.
pub mod tags {
    use puka::protocol::Tag;
    /// The connect operation.
    pub const CONNECT: Tag = 1;
    /// The consumer on channel 1.
    pub const CONSUME: Tag = 2;
    /// A confirmed publish on channel 2 (sequence 1).
    pub const PUBLISH: Tag = 3;
    /// A queue.declare on channel 3 (channel.open sent, nothing answered).
    pub const DECLARE: Tag = 4;
    /// A basic.get on channel 4 (channel.open sent, nothing answered).
    pub const GET: Tag = 5;
    /// A second confirmed publish on channel 2 (sequence 2).
    pub const PUBLISH2: Tag = 6;
    /// A graceful close, when the input asks for one.
    pub const CLOSE: Tag = 7;
    /// A cancel of the consumer, when the input asks for one.
    pub const CANCEL: Tag = 8;
}

/// The negotiated frame_max of the scripted connection.
pub const CONN_FRAME_MAX: u32 = 131_072;

/// Encodes one method frame as a server would send it.
pub fn server_method(dst: &mut Vec<u8>, channel: u16, method: impl Into<Method>) {
    let mut b = BytesMut::new();
    frame::encode_method(&mut b, channel, &method.into()).unwrap();
    dst.extend_from_slice(&b);
}

/// Encodes a content header and body frames.
pub fn server_content(dst: &mut Vec<u8>, channel: u16, props: &BasicProperties, body: &[u8]) {
    let mut b = BytesMut::new();
    frame::encode_content(&mut b, channel, 60, props, body, CONN_FRAME_MAX).unwrap();
    dst.extend_from_slice(&b);
}

/// `connection.start`, `tune` and `open-ok` from a RabbitMQ-like server.
pub fn handshake_bytes() -> Vec<u8> {
    let capabilities = FieldTable::new()
        .with("publisher_confirms", true)
        .with("consumer_cancel_notify", true)
        .with("basic.nack", true)
        .with("connection.blocked", true)
        .with("authentication_failure_close", true);
    let props = FieldTable::new()
        .with("product", "RabbitMQ")
        .with("version", "3.13.0")
        .with("capabilities", capabilities);
    let mut v = Vec::new();
    server_method(
        &mut v,
        0,
        ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: props,
            mechanisms: Bytes::from_static(b"PLAIN AMQPLAIN"),
            locales: Bytes::from_static(b"en_US"),
        },
    );
    server_method(
        &mut v,
        0,
        ConnectionTune {
            channel_max: 2047,
            frame_max: CONN_FRAME_MAX,
            heartbeat: 60,
        },
    );
    server_method(&mut v, 0, ConnectionOpenOk {});
    v
}

/// The replies that set up the consumer (channel 1) and the publish channel
/// (channel 2).
pub fn setup_bytes() -> Vec<u8> {
    let mut v = Vec::new();
    server_method(&mut v, 1, ChannelOpenOk {});
    server_method(&mut v, 1, BasicQosOk {});
    server_method(
        &mut v,
        1,
        BasicConsumeOk {
            consumer_tag: "ctag.1".into(),
        },
    );
    server_method(&mut v, 2, ChannelOpenOk {});
    server_method(&mut v, 2, ConfirmSelectOk {});
    v
}

/// One consumer the run started: what its events must respect.
#[derive(Debug)]
struct ConsumerInfo {
    /// How many queues it consumes from.
    queues: usize,
    /// `Event::ConsumerEnded` came.
    ended: bool,
    /// The last delivery tag reported to it (they rise on its channel).
    last_delivery: u64,
}

/// What the events said about each operation.
#[derive(Debug, Default)]
struct Tracker {
    issued: Vec<Tag>,
    completed: HashMap<Tag, usize>,
    succeeded: Vec<Tag>,
    consumers: HashMap<Tag, ConsumerInfo>,
    /// Consumers in the order they were started (script ops pick by index).
    consumer_order: Vec<Tag>,
    /// `consumer_ready` operations and the consumer each waits for.
    ready: HashMap<Tag, Tag>,
    /// Deliveries (consumed or got) kept for the script's settle ops.
    held: Vec<puka::Delivery>,
    closed: bool,
    /// Operations issued after `Event::Closed`.
    after_closed: Vec<Tag>,
    deliveries: usize,
    late_deliveries: usize,
    consumer_tags: Vec<(Tag, usize)>,
    lost_ready: usize,
}

/// Whether a delivery reported after its consumer completed or ended is
/// tolerated (counted, not a failure): set `PUKA_FUZZ_ALLOW_LATE_DELIVERY=1`
/// to keep fuzzing past such a finding (see
/// `regressions/connection/delivery-after-server-cancel`) until it is fixed.
fn allow_late_delivery() -> bool {
    static ALLOW: OnceLock<bool> = OnceLock::new();
    *ALLOW
        .get_or_init(|| std::env::var_os("PUKA_FUZZ_ALLOW_LATE_DELIVERY").is_some_and(|v| v == "1"))
}

/// Whether a `consumer_ready` that never completes is tolerated (counted,
/// not a failure): set `PUKA_FUZZ_ALLOW_LOST_READY=1` to keep fuzzing past
/// that known finding (see `regressions/connection/ready-lost-after-cancel`)
/// until it is fixed.
fn allow_lost_ready() -> bool {
    static ALLOW: OnceLock<bool> = OnceLock::new();
    *ALLOW.get_or_init(|| std::env::var_os("PUKA_FUZZ_ALLOW_LOST_READY").is_some_and(|v| v == "1"))
}

/// The most deliveries kept for settle ops.
const HELD_MAX: usize = 32;

impl Tracker {
    fn issue(&mut self, tag: Tag) {
        assert!(!self.issued.contains(&tag), "tag {tag} issued twice");
        self.issued.push(tag);
        if self.closed {
            self.after_closed.push(tag);
        }
    }

    fn add_consumer(&mut self, tag: Tag, queues: usize) {
        self.issue(tag);
        self.consumers.insert(
            tag,
            ConsumerInfo {
                queues,
                ended: false,
                last_delivery: 0,
            },
        );
        self.consumer_order.push(tag);
    }

    fn hold(&mut self, d: &puka::Delivery) {
        if self.held.len() == HELD_MAX {
            self.held.remove(0);
        }
        self.held.push(d.clone());
    }

    fn drain(&mut self, conn: &mut Connection, settle: u8) {
        while let Some(ev) = conn.poll_event() {
            // After Event::Closed only the completions of operations issued
            // since: refusals, or a `close` of the closed connection, which
            // succeeds when it ended by a close.
            assert!(
                !self.closed
                    || matches!(&ev, Event::Complete { tag, .. }
                        if self.after_closed.contains(tag)),
                "event after Event::Closed: {ev:?}"
            );
            match ev {
                Event::Complete { tag, result } => {
                    assert!(
                        self.issued.contains(&tag),
                        "completion of unknown tag {tag}"
                    );
                    let n = self.completed.entry(tag).or_insert(0);
                    *n += 1;
                    assert_eq!(*n, 1, "tag {tag} completed twice, now with {result:?}");
                    if let Some(c) = self.consumers.get(&tag) {
                        assert!(!c.ended, "consumer {tag} completed after it ended");
                    }
                    if result.is_ok() {
                        self.succeeded.push(tag);
                    }
                    match &result {
                        Ok(Outcome::Get(Some(d))) => {
                            self.hold(d);
                            self.settle(conn, d, settle);
                        }
                        Ok(Outcome::ConsumerTags(v)) => {
                            let consumer = *self.ready.get(&tag).unwrap_or_else(|| {
                                panic!("consumer tags for {tag}, not a ready op")
                            });
                            let queues = self.consumers[&consumer].queues;
                            assert!(
                                v.len() <= queues,
                                "consumer {consumer} of {queues} queues ready with tags {v:?}"
                            );
                            self.consumer_tags.push((tag, v.len()));
                        }
                        _ => {}
                    }
                }
                Event::Delivery { tag, delivery } => {
                    let late = self.completed.contains_key(&tag);
                    let c = self
                        .consumers
                        .get_mut(&tag)
                        .unwrap_or_else(|| panic!("delivery for {tag}, not a consumer"));
                    let late = late || c.ended;
                    if late && allow_late_delivery() {
                        self.late_deliveries += 1;
                    } else {
                        assert!(
                            !late,
                            "delivery to consumer {tag} after it completed or ended"
                        );
                    }
                    assert!(
                        delivery.delivery_tag > c.last_delivery,
                        "delivery tag {} to consumer {tag} after {}",
                        delivery.delivery_tag,
                        c.last_delivery
                    );
                    c.last_delivery = delivery.delivery_tag;
                    self.deliveries += 1;
                    self.hold(&delivery);
                    self.settle(conn, &delivery, settle);
                }
                Event::ConsumerEnded { tag } => {
                    let done = self.completed.contains_key(&tag);
                    let c = self
                        .consumers
                        .get_mut(&tag)
                        .unwrap_or_else(|| panic!("ConsumerEnded for {tag}, not a consumer"));
                    assert!(!c.ended, "consumer {tag} ended twice");
                    assert!(!done, "consumer {tag} ended after completing");
                    c.ended = true;
                }
                Event::Closed(e) => {
                    let _ = e.to_string();
                    assert!(
                        conn.is_closed(),
                        "Event::Closed but the connection is not closed"
                    );
                    self.closed = true;
                }
                Event::Returned(r) => {
                    let _ = r.message.body.len();
                }
                Event::Blocked(_) | Event::Unblocked => {}
                other => {
                    let _ = format!("{other:?}");
                }
            }
        }
    }

    fn settle(&mut self, conn: &mut Connection, d: &puka::Delivery, settle: u8) {
        let multiple = settle & 4 != 0;
        let _ = match settle & 3 {
            0 => return,
            1 => conn.ack(d, multiple),
            2 => conn.nack(d, multiple, true),
            _ => conn.reject(d, false),
        };
    }
}

/// Checks that what the client wrote is whole, well-formed frames.
fn check_output(out: &[u8]) {
    let mut buf = BytesMut::from(out);
    loop {
        match frame::decode(&mut buf, CONN_FRAME_MAX) {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => panic!("the client wrote a bad frame: {e}"),
        }
    }
    assert!(buf.is_empty(), "the client wrote part of a frame");
}

/// Option bits of the connection target's byte 1.
pub mod opts {
    /// Bits 0-1: how deliveries are settled (none, ack, nack, reject).
    pub const SETTLE: u8 = 3;
    /// Settle with `multiple`.
    pub const MULTIPLE: u8 = 4;
    /// A graceful `close` before the input.
    pub const CLOSE: u8 = 8;
    /// A `cancel` of the consumer before the input.
    pub const CANCEL: u8 = 16;
    /// End with EOF (else with a timer an hour later).
    pub const EOF: u8 = 32;
    /// The input is a script of server bytes and user operations (see
    /// [`super::ops`]), not only server bytes.
    pub const SCRIPT: u8 = 64;
    /// Publisher confirms off (`Confirms::Off`): publishes complete when
    /// written, and transactions can be selected.
    pub const NO_CONFIRMS: u8 = 128;
}

/// The user operations of a script (see [`check_connection`]). A record
/// byte `0xC0 | variant << 4 | op` runs `op` with `variant` (0-3).
pub mod ops {
    /// Graceful `close` (timeout 1 s, 100 ms, 10 s, 0 by variant).
    pub const CLOSE: u8 = 0;
    /// `close_now` (same timeouts).
    pub const CLOSE_NOW: u8 = 1;
    /// `consumer_ready` for consumer number `variant` (modulo their count).
    pub const CONSUMER_READY: u8 = 2;
    /// `tx_select`.
    pub const TX_SELECT: u8 = 3;
    /// `tx_commit`.
    pub const TX_COMMIT: u8 = 4;
    /// `tx_rollback`.
    pub const TX_ROLLBACK: u8 = 5;
    /// A new consumer on queues `qN.0`, `qN.1` (and `qN.2` with variant
    /// bit 1), consumer tags `cN.0`, `cN.1`, …, where N is its number (the
    /// setup's consumer is 0; its tag is `ctag.1`). Variant bit 0: no-ack
    /// (else prefetch 10).
    pub const CONSUME: u8 = 6;
    /// `basic_get` of `q` (variant bit 0: `q2`), variant bit 1: no-ack.
    pub const GET: u8 = 7;
    /// Settle the newest kept delivery: ack, ack multiple, nack (requeue),
    /// reject, by variant.
    pub const SETTLE: u8 = 8;
    /// `cancel` consumer number `variant`.
    pub const CANCEL: u8 = 9;
    /// `publish` to `q` (variant bit 0: mandatory; bit 1: to `amq.direct`).
    pub const PUBLISH: u8 = 10;
    /// `rpc`: queue.declare, queue.purge, exchange.declare, or a method
    /// that is not a pooled-channel one, by variant.
    pub const RPC: u8 = 11;
    /// Time passes: 10 ms, 600 ms, 2 s, 200 s, then `handle_timeout`.
    pub const TIME: u8 = 12;
    /// `qos` (variant bit 0 clear) or `recover` (requeue = bit 1) on
    /// consumer number 0 or 1 (variant bit 1 for qos).
    pub const QOS_RECOVER: u8 = 13;
    /// `release_acks` (variant 0-1), `handle_eof` (2), an I/O error (3).
    pub const IO: u8 = 14;
    /// Settle the oldest kept delivery: ack, ack multiple, nack multiple
    /// without requeue, reject with requeue, by variant.
    pub const SETTLE_OLDEST: u8 = 15;
}

/// Input layout: byte 0 picks the piece size server bytes are fed in (0:
/// all at once), byte 1 holds option bits ([`opts`]), then the rest.
///
/// Without [`opts::SCRIPT`] the rest is server bytes. With it, the rest is
/// records: a byte below `0xC0` is followed by that many plus one server
/// bytes; a byte from `0xC0` is a user operation ([`ops`]). After each
/// operation and each piece the events are checked; an operation issued
/// while the connection is not open must fail at once.
///
/// Option bits 0-1: how deliveries are settled (none, ack, nack, reject),
/// 2 settle with `multiple`, 3 close gracefully before the input, 4 cancel
/// the consumer before the input, 5 end with EOF (else with a timer an hour
/// later), 6 script, 7 confirms off.
pub fn check_connection(data: &[u8]) {
    run_connection(data);
}

/// What one run of the connection target saw (for tests of the harness).
#[derive(Debug)]
pub struct RunSummary {
    /// Deliveries reported to consumers.
    pub deliveries: usize,
    /// Operations that completed successfully, in order.
    pub succeeded: Vec<Tag>,
    /// Operations that completed with an error.
    pub failed: Vec<Tag>,
    /// Consumers that ended with `Event::ConsumerEnded`.
    pub ended: Vec<Tag>,
    /// `consumer_ready` results: the op's tag and how many consumer tags.
    pub consumer_tags: Vec<(Tag, usize)>,
}

/// The setup (after the handshake) with confirms off: no confirm.select-ok.
pub fn setup_bytes_no_confirms() -> Vec<u8> {
    let mut v = Vec::new();
    server_method(&mut v, 1, ChannelOpenOk {});
    server_method(&mut v, 1, BasicQosOk {});
    server_method(
        &mut v,
        1,
        BasicConsumeOk {
            consumer_tag: "ctag.1".into(),
        },
    );
    server_method(&mut v, 2, ChannelOpenOk {});
    v
}

/// The state of a run the script's operations act on.
struct Run {
    conn: Connection,
    t: Tracker,
    now: Instant,
    settle: u8,
    piece: usize,
    next_tag: Tag,
}

impl Run {
    fn new_tag(&mut self) -> Tag {
        self.next_tag += 1;
        self.next_tag
    }

    /// Feeds server bytes in pieces, with the timers and output after each.
    fn feed(&mut self, bytes: &[u8]) {
        for part in bytes.chunks(self.piece) {
            self.now += Duration::from_millis(1);
            self.conn.handle_bytes(part);
            self.conn.handle_input(self.now);
            self.t.drain(&mut self.conn, self.settle);
            self.conn.handle_timeout(self.now);
            self.t.drain(&mut self.conn, self.settle);
            check_output(&self.conn.take_output());
            let _ = self.conn.poll_timeout();
            self.t.drain(&mut self.conn, self.settle);
        }
    }

    fn consumer(&self, n: u8) -> Tag {
        let c = &self.t.consumer_order;
        c[usize::from(n) % c.len()]
    }

    fn settle_held(&mut self, newest: bool, variant: u8) {
        if self.t.held.is_empty() {
            return;
        }
        let d = if newest {
            self.t.held.pop().unwrap()
        } else {
            self.t.held.remove(0)
        };
        let c = &mut self.conn;
        let _ = match (newest, variant) {
            (_, 0) => c.ack(&d, false),
            (_, 1) => c.ack(&d, true),
            (true, 2) => c.nack(&d, false, true),
            (false, 2) => c.nack(&d, true, false),
            (true, _) => c.reject(&d, false),
            (false, _) => c.reject(&d, true),
        };
    }

    /// Runs one user operation.
    fn op(&mut self, op: u8, variant: u8) {
        const TIMEOUTS: [Duration; 4] = [
            Duration::from_secs(1),
            Duration::from_millis(100),
            Duration::from_secs(10),
            Duration::ZERO,
        ];
        let open = self.conn.is_open();
        let tag = self.new_tag();
        let now = self.now;
        let c = &mut self.conn;
        // Whether `tag` was issued (and must be refused when not open).
        let mut tagged = true;
        match op {
            ops::CLOSE | ops::CLOSE_NOW => {
                self.t.issue(tag);
                let timeout = TIMEOUTS[usize::from(variant)];
                if op == ops::CLOSE {
                    c.close(tag, now, timeout);
                } else {
                    c.close_now(tag, now, timeout);
                }
                tagged = false;
            }
            ops::CONSUMER_READY => {
                let consumer = self.consumer(variant);
                self.t.issue(tag);
                self.t.ready.insert(tag, consumer);
                self.conn.consumer_ready(tag, consumer);
            }
            ops::TX_SELECT => {
                self.t.issue(tag);
                c.tx_select(tag);
            }
            ops::TX_COMMIT => {
                self.t.issue(tag);
                c.tx_commit(tag);
            }
            ops::TX_ROLLBACK => {
                self.t.issue(tag);
                c.tx_rollback(tag);
            }
            ops::CONSUME => {
                let n = self.t.consumer_order.len();
                let queues: Vec<ConsumeQueue> = (0..2 + usize::from(variant >> 1))
                    .map(|i| ConsumeQueue {
                        queue: format!("q{n}.{i}").into(),
                        consumer_tag: format!("c{n}.{i}").into(),
                        ..Default::default()
                    })
                    .collect();
                self.t.add_consumer(tag, queues.len());
                let no_ack = variant & 1 != 0;
                self.conn
                    .consume(tag, queues, no_ack, if no_ack { 0 } else { 10 });
            }
            ops::GET => {
                self.t.issue(tag);
                let queue = if variant & 1 != 0 { "q2" } else { "q" };
                c.basic_get(tag, queue, variant & 2 != 0);
            }
            ops::SETTLE | ops::SETTLE_OLDEST => {
                tagged = false;
                self.settle_held(op == ops::SETTLE, variant);
            }
            ops::CANCEL => {
                let consumer = self.consumer(variant);
                self.t.issue(tag);
                self.conn.cancel(tag, consumer);
            }
            ops::PUBLISH => {
                self.t.issue(tag);
                let props = BasicProperties::default().with_content_type("text/plain");
                let exchange = if variant & 2 != 0 { "amq.direct" } else { "" };
                c.publish(tag, exchange, "q", variant & 1 != 0, false, &props, b"x");
            }
            ops::RPC => {
                self.t.issue(tag);
                let m = match variant {
                    0 => Method::QueueDeclare(QueueDeclare {
                        queue: "q3".into(),
                        ..Default::default()
                    }),
                    1 => Method::QueuePurge(QueuePurge {
                        queue: "q".into(),
                        ..Default::default()
                    }),
                    2 => Method::ExchangeDeclare(ExchangeDeclare {
                        exchange: "x".into(),
                        kind: "direct".into(),
                        ..Default::default()
                    }),
                    _ => Method::BasicRecover(BasicRecover { requeue: true }),
                };
                c.rpc(tag, m);
            }
            ops::TIME => {
                tagged = false;
                const STEPS: [Duration; 4] = [
                    Duration::from_millis(10),
                    Duration::from_millis(600),
                    Duration::from_secs(2),
                    Duration::from_secs(200),
                ];
                self.now += STEPS[usize::from(variant)];
                c.handle_timeout(self.now);
            }
            ops::QOS_RECOVER => {
                let consumer = self.consumer(variant >> 1);
                self.t.issue(tag);
                if variant & 1 == 0 {
                    self.conn.qos(tag, consumer, 0, 5, false);
                } else {
                    self.conn.recover(tag, consumer, variant & 2 != 0);
                }
            }
            ops::IO => {
                tagged = false;
                match variant {
                    0 | 1 => c.release_acks(),
                    2 => c.handle_eof(),
                    _ => {
                        c.handle_io_error(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
                    }
                }
            }
            _ => unreachable!("ops are 4 bits"),
        }
        self.t.drain(&mut self.conn, self.settle);
        if tagged && !open {
            assert!(
                self.t.completed.contains_key(&tag),
                "op {op} ({variant}) issued while the connection is not open did not fail at once"
            );
            assert!(
                !self.t.succeeded.contains(&tag),
                "op {op} ({variant}) issued while the connection is not open succeeded"
            );
        }
        check_output(&self.conn.take_output());
        self.t.drain(&mut self.conn, self.settle);
    }

    /// Runs a script: records of server bytes and operations.
    fn script(&mut self, mut input: &[u8]) {
        while let Some((&b, rest)) = input.split_first() {
            if b >= 0xC0 {
                self.op(b & 0x0F, (b >> 4) & 3);
                input = rest;
            } else {
                let n = (usize::from(b) + 1).min(rest.len());
                self.feed(&rest[..n]);
                input = &rest[n..];
            }
        }
    }
}

/// [`check_connection`], returning what happened.
pub fn run_connection(data: &[u8]) -> RunSummary {
    static HANDSHAKE: OnceLock<(Vec<u8>, Vec<u8>, Vec<u8>)> = OnceLock::new();
    let (handshake, setup, setup_nc) =
        HANDSHAKE.get_or_init(|| (handshake_bytes(), setup_bytes(), setup_bytes_no_confirms()));
    let piece = match data.first() {
        None | Some(0) => usize::MAX,
        Some(&n) => usize::from(n),
    };
    let o = data.get(1).copied().unwrap_or(0);
    let input = data.get(2..).unwrap_or(&[]);
    let confirms = o & opts::NO_CONFIRMS == 0;

    let t0 = Instant::now();
    let mut t = Tracker::default();
    t.issue(tags::CONNECT);
    let config = if confirms {
        Config::default()
    } else {
        Config {
            confirms: Confirms::Off,
            ..Config::default()
        }
    };
    let mut conn = Connection::new(config, tags::CONNECT, t0);
    conn.handle_bytes(handshake);
    conn.handle_input(t0);
    t.drain(&mut conn, 0);
    assert_eq!(
        t.completed.get(&tags::CONNECT),
        Some(&1),
        "handshake did not complete"
    );
    assert!(conn.is_open());

    t.add_consumer(tags::CONSUME, 1);
    t.issue(tags::PUBLISH);
    conn.consume(
        tags::CONSUME,
        vec![ConsumeQueue {
            queue: "q".into(),
            ..Default::default()
        }],
        false,
        10,
    );
    let props = BasicProperties::default().with_content_type("text/plain");
    conn.publish(tags::PUBLISH, "", "q", true, false, &props, b"hello");
    let _ = conn.take_output();
    conn.handle_bytes(if confirms { setup } else { setup_nc });
    conn.handle_input(t0);
    t.drain(&mut conn, 0);
    // Without confirms the publish completed when written.
    let done = if confirms { 1 } else { 2 };
    assert_eq!(t.completed.len(), done);
    assert_eq!(conn.confirms_enabled(), confirms);

    t.issue(tags::DECLARE);
    t.issue(tags::GET);
    t.issue(tags::PUBLISH2);
    conn.rpc(
        tags::DECLARE,
        Method::QueueDeclare(QueueDeclare {
            queue: "q2".into(),
            ..Default::default()
        }),
    );
    conn.basic_get(tags::GET, "q", false);
    conn.publish(tags::PUBLISH2, "amq.direct", "k", false, false, &props, b"");
    check_output(&conn.take_output());
    t.drain(&mut conn, 0);
    assert_eq!(t.completed.len(), if confirms { 1 } else { 3 });

    if o & opts::CLOSE != 0 {
        t.issue(tags::CLOSE);
        conn.close(tags::CLOSE, t0, Duration::from_secs(1));
    }
    if o & opts::CANCEL != 0 {
        t.issue(tags::CANCEL);
        conn.cancel(tags::CANCEL, tags::CONSUME);
    }
    let mut run = Run {
        conn,
        t,
        now: t0,
        settle: o & (opts::SETTLE | opts::MULTIPLE),
        piece,
        next_tag: 99,
    };
    if o & opts::SCRIPT != 0 {
        run.script(input);
    } else {
        run.feed(input);
    }
    let Run {
        mut conn,
        mut t,
        now,
        settle,
        ..
    } = run;

    // End the connection: every operation must then have finished once.
    if o & opts::EOF != 0 {
        conn.handle_eof();
    } else {
        conn.handle_timeout(now + Duration::from_secs(3600));
    }
    t.drain(&mut conn, settle);
    let _ = conn.take_output();
    t.drain(&mut conn, settle);
    assert!(
        conn.is_closed(),
        "connection still open after EOF or a silent hour"
    );
    assert!(t.closed, "no Event::Closed");
    assert_eq!(conn.poll_timeout(), None);
    for tag in &t.issued {
        let n = t.completed.get(tag).copied().unwrap_or(0);
        if t.consumers.get(tag).is_some_and(|c| c.ended) {
            assert_eq!(n, 0, "consumer {tag} ended and completed");
        } else if n == 0 && t.ready.contains_key(tag) && allow_lost_ready() {
            t.lost_ready += 1;
        } else {
            assert_eq!(n, 1, "tag {tag} never completed: {:?}", t.completed);
        }
    }
    let failed = t
        .issued
        .iter()
        .copied()
        .filter(|tag| t.completed.contains_key(tag) && !t.succeeded.contains(tag))
        .collect();
    let mut ended: Vec<Tag> = t
        .consumers
        .iter()
        .filter(|(_, c)| c.ended)
        .map(|(tag, _)| *tag)
        .collect();
    ended.sort_unstable();
    RunSummary {
        deliveries: t.deliveries,
        succeeded: t.succeeded,
        failed,
        ended,
        consumer_tags: t.consumer_tags,
    }
}

// ---------------------------------------------------------------------------
// Seeds.

/// Every (class, method) pair of AMQP 0-9-1 with RabbitMQ's extensions.
#[rustfmt::skip]
pub const METHOD_IDS: &[(u16, u16)] = &[
    (10, 10), (10, 11), (10, 20), (10, 21), (10, 30), (10, 31), (10, 40), (10, 41),
    (10, 50), (10, 51), (10, 60), (10, 61), (10, 70), (10, 71), (20, 10), (20, 11),
    (20, 20), (20, 21), (20, 40), (20, 41), (40, 10), (40, 11), (40, 20), (40, 21),
    (40, 30), (40, 31), (40, 40), (40, 51), (50, 10), (50, 11), (50, 20), (50, 21),
    (50, 30), (50, 31), (50, 40), (50, 41), (50, 50), (50, 51), (60, 10), (60, 11),
    (60, 20), (60, 21), (60, 30), (60, 31), (60, 40), (60, 50), (60, 60), (60, 70),
    (60, 71), (60, 72), (60, 80), (60, 90), (60, 100), (60, 110), (60, 111), (60, 120),
    (85, 10), (85, 11), (90, 10), (90, 11), (90, 20), (90, 21), (90, 30), (90, 31),
];

/// A table with one value of every type, nested.
pub fn every_type_table() -> FieldTable {
    let inner = FieldTable::new().with("deep", true).with("n", 7u16);
    FieldTable::new()
        .with("t", true)
        .with("b", -5i8)
        .with("B", 200u8)
        .with("s", -300i16)
        .with("u", 60000u16)
        .with("I", -70000i32)
        .with("i", 4_000_000_000u32)
        .with("l", -1i64)
        .with("f", 1.5f32)
        .with("d", -2.25f64)
        .with("D", FieldValue::Decimal(Decimal::new(2, 1999)))
        .with("S", "long string")
        .with(
            "A",
            vec![
                FieldValue::from(1i32),
                FieldValue::Void,
                FieldValue::from("x"),
            ],
        )
        .with("T", FieldValue::Timestamp(Timestamp(1_700_000_000)))
        .with("F", inner)
        .with("V", FieldValue::Void)
        .with("x", FieldValue::ByteArray(Bytes::from_static(b"\x00\xff")))
}

/// Properties with every field set.
pub fn full_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json")
        .with_content_encoding("gzip")
        .with_headers(every_type_table())
        .with_delivery_mode(2)
        .with_priority(5)
        .with_correlation_id("corr")
        .with_reply_to("amq.rabbitmq.reply-to")
        .with_expiration("60000")
        .with_message_id("m-1")
        .with_timestamp(Timestamp(1_700_000_000))
        .with_kind("event")
        .with_user_id("guest")
        .with_app_id("app")
        .with_cluster_id("c")
}

fn deliver(tag: u64) -> BasicDeliver {
    BasicDeliver {
        consumer_tag: "ctag.1".into(),
        delivery_tag: tag,
        redelivered: false,
        exchange: "".into(),
        routing_key: "q".into(),
    }
}

/// Seeds for the decode target: 4 bytes of frame_max, then frames (or a bare
/// payload, which the direct decoders read).
pub fn decode_seeds() -> Vec<(String, Vec<u8>)> {
    let fm = 131_072u32.to_be_bytes();
    let mut out = Vec::new();
    // Every method, its arguments all zero (empty strings and tables).
    for &(c, m) in METHOD_IDS {
        let mut payload = BytesMut::new();
        payload.extend_from_slice(&c.to_be_bytes());
        payload.extend_from_slice(&m.to_be_bytes());
        payload.extend_from_slice(&[0u8; 40]);
        let mut v = fm.to_vec();
        v.extend_from_slice(&[1, 0, 1]);
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(&payload);
        v.push(frame::FRAME_END);
        out.push((format!("method-{c}-{m}"), v));
    }
    // Rich frames.
    let rich: Vec<(&str, Method)> = vec![
        (
            "start",
            Method::ConnectionStart(ConnectionStart {
                version_major: 0,
                version_minor: 9,
                server_properties: every_type_table(),
                mechanisms: Bytes::from_static(b"PLAIN AMQPLAIN"),
                locales: Bytes::from_static(b"en_US"),
            }),
        ),
        (
            "declare",
            Method::QueueDeclare(QueueDeclare {
                queue: "q".into(),
                durable: true,
                arguments: every_type_table(),
                ..Default::default()
            }),
        ),
        ("deliver", Method::BasicDeliver(deliver(1))),
        (
            "close",
            Method::ConnectionClose(ConnectionClose {
                reply_code: 320,
                reply_text: "CONNECTION_FORCED".into(),
                class_id: 0,
                method_id: 0,
            }),
        ),
    ];
    for (name, m) in rich {
        let mut b = BytesMut::new();
        frame::encode_method(&mut b, 1, &m).unwrap();
        let mut v = fm.to_vec();
        v.extend_from_slice(&b);
        out.push((format!("frame-{name}"), v));
    }
    // A delivery: method, header with every property, body in two frames.
    let mut b = BytesMut::new();
    frame::encode_method(&mut b, 1, &Method::BasicDeliver(deliver(7))).unwrap();
    frame::encode_content(&mut b, 1, 60, &full_properties(), &[b'x'; 5000], 4096).unwrap();
    frame::encode_heartbeat(&mut b);
    let mut v = 4096u32.to_be_bytes().to_vec();
    v.extend_from_slice(&b);
    out.push(("delivery-full".into(), v));
    // Bare payloads for the direct decoders.
    let mut t = BytesMut::new();
    every_type_table().encode(&mut t).unwrap();
    let mut v = fm.to_vec();
    v.extend_from_slice(&t);
    out.push(("table".into(), v));
    let mut p = BytesMut::new();
    full_properties().encode(&mut p).unwrap();
    let mut v = fm.to_vec();
    v.extend_from_slice(&p);
    out.push(("properties".into(), v));
    out
}

/// Seeds for the connection target: two control bytes, then server frames.
pub fn connection_seeds() -> Vec<(String, Vec<u8>)> {
    let props = BasicProperties::default().with_content_type("text/plain");
    let mut out = Vec::new();
    let mut add = |name: &str, ctl: [u8; 2], frames: Vec<u8>| {
        let mut v = ctl.to_vec();
        v.extend_from_slice(&frames);
        out.push((name.to_string(), v));
    };

    // Deliveries, one with the body in two frames and one with full properties.
    let mut v = Vec::new();
    server_method(&mut v, 1, deliver(1));
    server_content(&mut v, 1, &props, b"hello");
    server_method(&mut v, 1, deliver(2));
    let mut b = BytesMut::new();
    frame::encode_content(&mut b, 1, 60, &full_properties(), &[b'y'; 3000], 4096).unwrap();
    v.extend_from_slice(&b);
    server_method(&mut v, 1, deliver(3));
    server_content(&mut v, 1, &props, b"");
    add("deliveries-ack", [0, 1], v.clone());
    add("deliveries-bytewise-nack-multiple", [1, 6], v.clone());
    add("deliveries-reject-eof", [7, 3 | 32], v);

    // Confirms, a return before its ack, a nack.
    let mut v = Vec::new();
    server_method(
        &mut v,
        2,
        BasicReturn {
            reply_code: 312,
            reply_text: "NO_ROUTE".into(),
            exchange: "".into(),
            routing_key: "q".into(),
        },
    );
    server_content(&mut v, 2, &props, b"hello");
    server_method(
        &mut v,
        2,
        BasicAck {
            delivery_tag: 1,
            multiple: false,
        },
    );
    server_method(
        &mut v,
        2,
        BasicNack {
            delivery_tag: 2,
            multiple: true,
            requeue: false,
        },
    );
    add("confirms", [0, 0], v);

    // The pooled channels: open-ok, declare-ok, get-ok with content, get-empty.
    let mut v = Vec::new();
    server_method(&mut v, 3, ChannelOpenOk {});
    server_method(
        &mut v,
        3,
        QueueDeclareOk {
            queue: "q2".into(),
            message_count: 3,
            consumer_count: 1,
        },
    );
    server_method(&mut v, 4, ChannelOpenOk {});
    server_method(
        &mut v,
        4,
        BasicGetOk {
            delivery_tag: 1,
            redelivered: true,
            exchange: "".into(),
            routing_key: "q".into(),
            message_count: 0,
        },
    );
    server_content(&mut v, 4, &props, b"got");
    add("pool-replies", [0, 1], v.clone());
    let mut w = Vec::new();
    server_method(&mut w, 4, ChannelOpenOk {});
    server_method(&mut w, 4, BasicGetEmpty {});
    add("get-empty", [0, 0], w);

    // Broker-side cancel, channel close, flow, blocked, heartbeat, close.
    let mut v = Vec::new();
    v.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, 0xCE]);
    server_method(
        &mut v,
        0,
        ConnectionBlocked {
            reason: "low memory".into(),
        },
    );
    server_method(&mut v, 0, ConnectionUnblocked {});
    server_method(&mut v, 1, ChannelFlow { active: false });
    server_method(
        &mut v,
        1,
        BasicCancel {
            consumer_tag: "ctag.1".into(),
            no_wait: false,
        },
    );
    server_method(
        &mut v,
        2,
        ChannelClose {
            reply_code: 404,
            reply_text: "NOT_FOUND".into(),
            class_id: 60,
            method_id: 40,
        },
    );
    server_method(
        &mut v,
        0,
        ConnectionClose {
            reply_code: 320,
            reply_text: "CONNECTION_FORCED".into(),
            class_id: 0,
            method_id: 0,
        },
    );
    add("server-closes", [0, 0], v);

    // Our cancel answered.
    let mut v = Vec::new();
    server_method(
        &mut v,
        1,
        BasicCancelOk {
            consumer_tag: "ctag.1".into(),
        },
    );
    server_method(&mut v, 1, ChannelCloseOk {});
    add("cancel-ok", [0, 16], v);
    out.extend(script_seeds());
    out
}

/// Server replies to everything the setup leaves pending: the declare's and
/// the get's channels open, declare-ok, get-empty, both publishes acked.
pub fn pending_answers() -> Vec<u8> {
    let mut v = Vec::new();
    server_method(&mut v, 3, ChannelOpenOk {});
    server_method(
        &mut v,
        3,
        QueueDeclareOk {
            queue: "q2".into(),
            message_count: 0,
            consumer_count: 0,
        },
    );
    server_method(&mut v, 4, ChannelOpenOk {});
    server_method(&mut v, 4, BasicGetEmpty {});
    server_method(
        &mut v,
        2,
        BasicAck {
            delivery_tag: 2,
            multiple: true,
        },
    );
    v
}

/// Builds a script input (see [`check_connection`]).
#[derive(Debug, Clone)]
pub struct Script(Vec<u8>);

impl Script {
    /// Piece size and option bits ([`opts::SCRIPT`] is added).
    pub fn new(piece: u8, options: u8) -> Script {
        Script(vec![piece, options | opts::SCRIPT])
    }

    /// A user operation ([`ops`]) with its variant (0-3).
    pub fn op(mut self, op: u8, variant: u8) -> Script {
        assert!(op < 16 && variant < 4);
        self.0.push(0xC0 | variant << 4 | op);
        self
    }

    /// Server bytes, in records of at most 192 bytes.
    pub fn server(mut self, bytes: &[u8]) -> Script {
        for chunk in bytes.chunks(0xC0) {
            self.0.push((chunk.len() - 1) as u8);
            self.0.extend_from_slice(chunk);
        }
        self
    }

    /// One server method.
    pub fn method(self, channel: u16, method: impl Into<Method>) -> Script {
        let mut v = Vec::new();
        server_method(&mut v, channel, method);
        self.server(&v)
    }

    /// A content header and body.
    pub fn content(self, channel: u16, body: &[u8]) -> Script {
        let mut v = Vec::new();
        let props = BasicProperties::default().with_content_type("text/plain");
        server_content(&mut v, channel, &props, body);
        self.server(&v)
    }

    /// The input.
    pub fn build(self) -> Vec<u8> {
        self.0
    }
}

fn deliver_to(ctag: &str, tag: u64) -> BasicDeliver {
    BasicDeliver {
        consumer_tag: ctag.into(),
        ..deliver(tag)
    }
}

fn get_ok(tag: u64) -> BasicGetOk {
    BasicGetOk {
        delivery_tag: tag,
        redelivered: false,
        exchange: "".into(),
        routing_key: "q".into(),
        message_count: 0,
    }
}

/// Tags the script seeds' operations get: the first op is 100.
pub const SCRIPT_TAG0: Tag = 100;

/// Seeds of the recovery target: a topology built and answered, then a
/// loss and a reconnection with each kind of handshake, the restore
/// answered well, refused, or interrupted.
pub fn recovery_seeds() -> Vec<(String, Vec<u8>)> {
    // declare exchange, server-named queue, named exclusive queue, bind,
    // consume (prefetch, tagged), global qos, tx; answer everything.
    let topology = [
        0, 13, 1, 0, 13, 2, 0x11, 13, 3, 2, 13, 4, 1, 1, 13, 5, 7, 13, 6, 13,
    ];
    let mut seeds = Vec::new();
    for (name, handshake) in [("good", 0u8), ("eof", 5), ("refused", 6), ("garbage", 7)] {
        for (restore, tail) in [
            ("answered", &[13u8, 13, 13, 13][..]),
            ("refused", &[17, 1, 17, 2, 13, 17, 0, 13][..]),
            ("lost-again", &[16, 9, 0, 11, 0, 13, 13, 13][..]),
            ("locked", &[17, 1, 19, 20, 11, 13, 13][..]),
        ] {
            let mut v = vec![3];
            v.extend_from_slice(&topology);
            v.extend_from_slice(&[9, 0, 11, handshake]);
            v.extend_from_slice(tail);
            seeds.push((format!("{name}-{restore}"), v));
        }
    }
    seeds
}

/// Seeds in script form, one per new operation.
pub fn script_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    // A consumer of two queues (channel 5): ready once both consume-oks are
    // in (out of order), a delivery, then the broker cancels one queue:
    // the whole consumer ends, its other queue is cancelled.
    let s = Script::new(0, 1)
        .op(ops::CONSUME, 0)
        .op(ops::CONSUMER_READY, 1)
        .method(5, ChannelOpenOk {})
        .method(5, BasicQosOk {})
        .method(
            5,
            BasicConsumeOk {
                consumer_tag: "c1.1".into(),
            },
        )
        .method(
            5,
            BasicConsumeOk {
                consumer_tag: "c1.0".into(),
            },
        )
        .method(5, deliver_to("c1.0", 1))
        .content(5, b"m")
        .method(
            5,
            BasicCancel {
                consumer_tag: "c1.1".into(),
                no_wait: false,
            },
        )
        .method(
            5,
            BasicCancelOk {
                consumer_tag: "c1.0".into(),
            },
        )
        .method(5, ChannelCloseOk {});
    out.push(("script-multi-consume-server-cancel".to_string(), s.build()));
    // The same consumer cancelled by the user before its consume-oks.
    let s = Script::new(0, 0)
        .op(ops::CONSUME, 2)
        .op(ops::CANCEL, 1)
        .method(5, ChannelOpenOk {})
        .method(5, BasicQosOk {})
        .method(
            5,
            BasicConsumeOk {
                consumer_tag: "c1.0".into(),
            },
        )
        .method(
            5,
            BasicConsumeOk {
                consumer_tag: "c1.1".into(),
            },
        )
        .method(
            5,
            BasicConsumeOk {
                consumer_tag: "c1.2".into(),
            },
        )
        .method(
            5,
            BasicCancelOk {
                consumer_tag: "c1.0".into(),
            },
        )
        .method(
            5,
            BasicCancelOk {
                consumer_tag: "c1.1".into(),
            },
        )
        .method(
            5,
            BasicCancelOk {
                consumer_tag: "c1.2".into(),
            },
        )
        .method(5, ChannelCloseOk {});
    out.push(("script-multi-consume-user-cancel".to_string(), s.build()));
    // Transactions over the publish channel and the consumer's channel.
    let s = Script::new(0, opts::NO_CONFIRMS | 1)
        .op(ops::TX_SELECT, 0)
        .method(2, TxSelectOk {})
        .method(1, TxSelectOk {})
        .method(1, deliver(1))
        .content(1, b"a")
        .op(ops::PUBLISH, 0)
        .op(ops::TX_COMMIT, 0)
        .method(2, TxCommitOk {})
        .method(1, TxCommitOk {})
        .method(1, deliver(2))
        .content(1, b"b")
        .op(ops::TX_ROLLBACK, 0)
        .method(2, TxRollbackOk {})
        .method(1, TxRollbackOk {})
        .op(ops::GET, 0)
        .method(2, get_ok(1))
        .content(2, b"g")
        .op(ops::TX_COMMIT, 0)
        .method(2, TxCommitOk {})
        .method(1, TxCommitOk {});
    out.push(("script-tx".to_string(), s.build()));
    // Gets that need an ack hold their channel until settled.
    let s = Script::new(0, 0)
        .method(4, ChannelOpenOk {})
        .method(4, get_ok(1))
        .content(4, b"1")
        .op(ops::GET, 0)
        .method(4, get_ok(2))
        .content(4, b"2")
        .op(ops::SETTLE, 0)
        .op(ops::SETTLE_OLDEST, 0)
        .op(ops::GET, 0)
        .method(4, BasicGetEmpty {})
        .op(ops::GET, 2)
        .method(4, get_ok(3))
        .content(4, b"3");
    out.push(("script-held-get".to_string(), s.build()));
    // A graceful close that drains, refusing new operations meanwhile.
    let s = Script::new(0, 0)
        .op(ops::CLOSE, 0)
        .op(ops::PUBLISH, 0)
        .server(&pending_answers())
        .method(0, ConnectionCloseOk {});
    out.push(("script-drain-close".to_string(), s.build()));
    // A graceful close whose time runs out; then close-ok.
    let s = Script::new(0, 0)
        .op(ops::CLOSE, 1)
        .method(3, ChannelOpenOk {})
        .op(ops::TIME, 1)
        .method(0, ConnectionCloseOk {});
    out.push(("script-drain-deadline".to_string(), s.build()));
    // close_now during a graceful close, and on its own.
    let s = Script::new(0, 0)
        .op(ops::CLOSE, 0)
        .op(ops::CLOSE_NOW, 0)
        .method(0, ConnectionCloseOk {});
    out.push(("script-close-now-while-draining".to_string(), s.build()));
    let s = Script::new(0, 0)
        .op(ops::CLOSE_NOW, 0)
        .op(ops::CLOSE_NOW, 0)
        .method(0, ConnectionCloseOk {});
    out.push(("script-close-now".to_string(), s.build()));
    // qos, recover, rpc variants, a publish, time passing, an I/O error.
    let s = Script::new(3, 0)
        .op(ops::QOS_RECOVER, 0)
        .op(ops::QOS_RECOVER, 3)
        .op(ops::RPC, 3)
        .op(ops::PUBLISH, 1)
        .method(1, BasicQosOk {})
        .method(1, BasicRecoverOk {})
        .op(ops::TIME, 2)
        .op(ops::IO, 3);
    out.push(("script-misc".to_string(), s.build()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn each_file(dir: &str, check: fn(&[u8])) -> usize {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return 0;
        };
        let mut n = 0;
        for e in entries {
            let path = e.unwrap().path();
            if path.is_file() {
                let data = std::fs::read(&path).unwrap();
                eprintln!("{}", path.display());
                check(&data);
                n += 1;
            }
        }
        n
    }

    #[test]
    fn decode_seeds_pass() {
        for (name, data) in decode_seeds() {
            eprintln!("{name}");
            check_decode(&data);
        }
    }

    #[test]
    fn connection_seeds_pass() {
        for (name, data) in connection_seeds() {
            eprintln!("{name}");
            check_connection(&data);
        }
    }

    #[test]
    fn connection_seeds_reach_the_states_they_aim_at() {
        let seeds: HashMap<String, Vec<u8>> = connection_seeds().into_iter().collect();
        let run = |name: &str| run_connection(&seeds[name]);
        assert_eq!(run("deliveries-ack").deliveries, 3);
        assert_eq!(run("deliveries-bytewise-nack-multiple").deliveries, 3);
        assert_eq!(run("deliveries-reject-eof").deliveries, 3);
        // The return makes publish 1 fail with NO_ROUTE; the nack fails 2.
        assert_eq!(run("confirms").succeeded, vec![tags::CONNECT]);
        assert_eq!(
            run("pool-replies").succeeded,
            vec![tags::CONNECT, tags::DECLARE, tags::GET]
        );
        assert_eq!(run("get-empty").succeeded, vec![tags::CONNECT, tags::GET]);
        assert_eq!(
            run("cancel-ok").succeeded,
            vec![tags::CONNECT, tags::CANCEL]
        );
        // The broker's cancel ends the consumer; the server's close ends the rest.
        assert_eq!(run("server-closes").succeeded, vec![tags::CONNECT]);

        // Script seeds: every op takes the next tag from SCRIPT_TAG0 on.
        let t = |i: u64| SCRIPT_TAG0 + i;
        let r = run("script-multi-consume-server-cancel");
        assert_eq!(r.consumer_tags, vec![(t(1), 2)]);
        assert_eq!(r.deliveries, 1);
        assert_eq!(r.succeeded, vec![tags::CONNECT, t(1)]);
        assert!(r.failed.contains(&t(0)));
        let r = run("script-multi-consume-user-cancel");
        assert_eq!(r.ended, vec![t(0)]);
        assert_eq!(r.succeeded, vec![tags::CONNECT, t(1)]);
        // select, publish, commit, rollback, get on the tx channel, commit.
        let r = run("script-tx");
        assert_eq!(r.deliveries, 2);
        for i in 0..6 {
            assert!(r.succeeded.contains(&t(i)), "{r:?}");
        }
        // Get, settle, settle, get (empty), get no-ack.
        let r = run("script-held-get");
        assert_eq!(
            r.succeeded,
            vec![tags::CONNECT, tags::GET, t(0), t(3), t(4)]
        );
        let r = run("script-drain-close");
        assert_eq!(
            r.succeeded,
            vec![
                tags::CONNECT,
                tags::DECLARE,
                tags::GET,
                tags::PUBLISH,
                tags::PUBLISH2,
                t(0)
            ]
        );
        // The consumer ends as asked by the close (not a failure).
        assert_eq!(r.failed, vec![t(1)]);
        assert_eq!(r.ended, vec![tags::CONSUME]);
        assert_eq!(
            run("script-drain-deadline").succeeded,
            vec![tags::CONNECT, t(0)]
        );
        for name in ["script-close-now-while-draining", "script-close-now"] {
            assert_eq!(run(name).succeeded, vec![tags::CONNECT, t(1), t(0)]);
        }
        let r = run("script-misc");
        assert_eq!(r.succeeded, vec![tags::CONNECT, t(0), t(1)]);
    }

    /// The input of `regressions/connection/ready-lost-after-cancel`.
    pub fn ready_lost_after_cancel() -> Vec<u8> {
        Script::new(0, 0)
            .op(ops::CONSUME, 0)
            .op(ops::CANCEL, 1)
            .op(ops::CONSUMER_READY, 1)
            .method(5, ChannelOpenOk {})
            .method(5, BasicQosOk {})
            .method(
                5,
                BasicConsumeOk {
                    consumer_tag: "c1.0".into(),
                },
            )
            .method(
                5,
                BasicConsumeOk {
                    consumer_tag: "c1.1".into(),
                },
            )
            .method(
                5,
                BasicCancelOk {
                    consumer_tag: "c1.0".into(),
                },
            )
            .method(
                5,
                BasicCancelOk {
                    consumer_tag: "c1.1".into(),
                },
            )
            .method(5, ChannelCloseOk {})
            .build()
    }

    #[test]
    fn regression_files_are_current() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions/connection");
        let want = ready_lost_after_cancel();
        let path = dir.join("ready-lost-after-cancel");
        if std::env::var_os("PUKA_FUZZ_WRITE_REGRESSIONS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }

    #[test]
    fn empty_and_tiny_inputs() {
        for data in [&[][..], &[0], &[0, 0], &[1, 0, 0xCE], &[0, 0, 0, 0, 8]] {
            check_decode(data);
            check_connection(data);
        }
    }

    /// Every input the fuzzers ever crashed on stays fixed.
    #[test]
    fn regressions() {
        each_file("regressions/decode_frames", check_decode);
        each_file("regressions/connection", check_connection);
        each_file("regressions/recovery", check_recovery);
    }

    /// The committed seed corpora pass too.
    #[test]
    fn committed_seeds() {
        each_file("seeds/decode_frames", check_decode);
        each_file("seeds/connection", check_connection);
        each_file("seeds/recovery", check_recovery);
    }

    /// Scripted recoveries: a topology, a loss, a reconnection with each
    /// kind of handshake, and the restore answered well or refused.
    #[test]
    fn recovery_scripts() {
        for seed in recovery_seeds() {
            eprintln!("seed {}", seed.0);
            check_recovery(&seed.1);
        }
        for data in [&[][..], &[0], &[9, 9, 9], &[1, 11, 11, 11, 11]] {
            check_recovery(data);
        }
    }
}
