//! A hostile or broken peer, played by the scripted fake broker: each case
//! checks the exact error the client's pending promise fails with (within
//! 1 s), the reply code of the `connection.close` the client sends (501
//! frame errors, 502 syntax, 503 command invalid, 504 channel error, 505
//! unexpected frame, as `src/protocol` sends them), and, for the cases that
//! announce huge sizes, that memory did not grow.
//!
//! The cases run one at a time (a process-wide lock) so that the memory
//! measurements of one are not disturbed by another.

mod common;
mod support;

use bytes::{BufMut, BytesMut};
use puka::codec::method::{ConnectionClose, QueueDeclareOk};
use puka::codec::{CodecError, FieldTable, FieldValue, Method};
use puka::{Client, Error, Promise, QueueDeclare, Resolve};
use std::fmt::Debug;
use std::io::ErrorKind;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use support::fake_broker::{
    self as fb, body_frame, frame_header, header_frame, method_bytes, raw_frame, FakeBroker,
    Record, Step,
};

/// The bound on the failure every case expects.
const ONE_S: Duration = Duration::from_secs(1);
/// The bound on what must succeed (connect before the hostile part).
const W: Duration = Duration::from_secs(5);
/// The most a case that announces a huge size may grow the process by.
const RSS_SLACK: u64 = 8 << 20;
/// The tune most cases use.
const FRAME_MAX: u32 = 131_072;

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the client is doing when the hostile bytes come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Still connecting: the connect promise must fail.
    Connect,
    /// Open, with a `queue.declare` pending on channel 1.
    Declare,
    /// Open, with a consumer on channel 1 (consumer tag `ctag`) that is
    /// receiving a `basic.deliver` (delivery tag 1).
    Consume,
}

/// What a case produced.
struct Outcome {
    err: Error,
    /// The `connection.close` the client sent, if any (waited for up to 1 s
    /// after the failure).
    close: Option<ConnectionClose>,
    record: Record,
}

/// The steps that bring the client to `op` before `hostile` is sent.
fn script(op: Op, tune_frame_max: u32, hostile: Vec<u8>) -> Vec<Step> {
    let mut s = match op {
        Op::Connect => vec![Step::ReadHeader],
        Op::Declare => {
            let mut s = fb::handshake(2047, tune_frame_max, 0);
            s.extend(fb::open_channel(1));
            s.push(Step::Expect("queue.declare"));
            s
        }
        Op::Consume => {
            let mut s = fb::handshake(2047, tune_frame_max, 0);
            s.extend(fb::consumer(1, "ctag"));
            s.push(Step::Method(1, fb::deliver("ctag", 1)));
            s
        }
    };
    s.push(Step::Send(hostile));
    s
}

/// Waits at most 1 s for `p` to fail and returns the error.
fn fails<T: Resolve>(c: &mut Client, p: Promise<T>) -> Error
where
    T::Output: Debug,
{
    match c.wait_timeout(p, ONE_S) {
        Ok(v) => panic!("expected a failure, the promise resolved with {v:?}"),
        Err(Error::Timeout) => panic!("the promise did not fail within {ONE_S:?}"),
        Err(e) => e,
    }
}

/// Runs `steps` against a fresh client doing `op` (URL query `query`).
fn run(steps: Vec<Step>, query: &str, op: Op) -> Outcome {
    let fake = FakeBroker::start(steps);
    let mut c = Client::new(&fake.url(query)).expect("Client::new");
    let err = match op {
        Op::Connect => {
            let p = c.handshake();
            fails(&mut c, p)
        }
        Op::Declare | Op::Consume => {
            let p = c.handshake();
            c.wait_timeout(p, W).expect("connect to the fake broker");
            if op == Op::Declare {
                let p = c.queue_declare(QueueDeclare::named("q"));
                fails::<QueueDeclareOk>(&mut c, p)
            } else {
                let p = c.basic_consume("q");
                fails(&mut c, p)
            }
        }
    };
    let close = fake.connection_close(ONE_S);
    assert!(
        !c.is_open(),
        "the client still says it is open after {err:?}"
    );
    // Whatever else the client does, it must not hang or panic.
    let p = c.close();
    let _ = c.wait_timeout(p, W);
    drop(c);
    let record = fake.finish();
    assert!(
        record.failures.is_empty(),
        "the fake broker's script did not run as written: {:?} (client sent {:?})",
        record.failures,
        record.method_names()
    );
    Outcome { err, close, record }
}

/// Asserts the client sent `connection.close` with `code` (and channel 0).
fn assert_close(o: &Outcome, code: u16) {
    let close = o.close.as_ref().unwrap_or_else(|| {
        panic!(
            "the client sent no connection.close after {:?}; it sent {:?}",
            o.err,
            o.record.method_names()
        )
    });
    assert_eq!(
        close.reply_code, code,
        "connection.close reply code (text {:?}) after {:?}",
        close.reply_text, o.err
    );
    let on_zero = o
        .record
        .methods()
        .any(|(ch, m)| ch == 0 && matches!(m, Method::ConnectionClose(_)));
    assert!(on_zero, "connection.close not on channel 0");
}

/// A violation found by the state machine: `ProtocolViolation` with `code`.
fn assert_violation(o: &Outcome, code: u16) {
    match &o.err {
        Error::ProtocolViolation(r) if r.code == code => {}
        e => panic!("expected ProtocolViolation({code}), got {e:?}"),
    }
    assert_eq!(o.err.reply_code(), Some(code));
    assert!(o.err.is_connection_error());
    assert_close(o, code);
}

/// Runs `f` and asserts the process's resident memory grew by less than
/// [`RSS_SLACK`] meanwhile.
fn bounded_memory<R>(what: &str, f: impl FnOnce() -> R) -> R {
    let before = common::rss_bytes();
    assert!(before > 0, "cannot read VmRSS from /proc/self/status");
    let r = f();
    let after = common::rss_bytes();
    assert!(
        after < before + RSS_SLACK,
        "{what}: resident memory grew from {before} to {after} bytes"
    );
    r
}

// ----------------------------------------------------------------------
// Frame sizes.

#[test]
fn frame_of_4097_bytes_before_tuning_is_a_frame_error() {
    let _s = serial();
    // A method frame on channel 0 announcing 4089 payload bytes: 4097 in all.
    let mut hostile = frame_header(1, 0, 4089);
    hostile.extend_from_slice(&[0u8; 64]);
    let o = run(script(Op::Connect, FRAME_MAX, hostile), "", Op::Connect);
    assert!(
        matches!(
            o.err,
            Error::Protocol(CodecError::FrameTooLarge {
                size: 4097,
                max: 4096
            })
        ),
        "got {:?}",
        o.err
    );
    assert_close(&o, 501);
    assert!(o.record.tune_ok().is_none());
}

/// `connection.start` padded (with a long-string server property) to
/// exactly `total` bytes on the wire.
fn start_frame_of(total: usize) -> Vec<u8> {
    let with_padding = |n: usize| {
        let mut props = fb::server_properties();
        props.insert("padding", FieldValue::from("x".repeat(n)));
        method_bytes(0, &fb::start_with(props))
    };
    let base = with_padding(0).len();
    let f = with_padding(total - base);
    assert_eq!(f.len(), total);
    f
}

#[test]
fn frame_of_exactly_4096_bytes_before_tuning_is_accepted() {
    let _s = serial();
    let mut steps = vec![
        Step::ReadHeader,
        Step::Send(start_frame_of(4096)),
        Step::Expect("connection.start-ok"),
    ];
    steps.extend([
        Step::Method(0, fb::tune(2047, FRAME_MAX, 0)),
        Step::Expect("connection.tune-ok"),
        Step::Expect("connection.open"),
        Step::Method(0, Method::ConnectionOpenOk(Default::default())),
    ]);
    let fake = FakeBroker::start(steps);
    let mut c = Client::new(&fake.url("")).expect("Client::new");
    let p = c.handshake();
    c.wait_timeout(p, W)
        .expect("a 4096-byte connection.start must be accepted");
    assert!(
        c.server_properties().contains_key("padding"),
        "the padded connection.start was not the one used"
    );
    drop(c);
    let r = fake.finish();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
}

#[test]
fn frame_of_4_gib_after_tuning_is_a_frame_error_without_allocating() {
    let _s = serial();
    for kind in [1u8, 2, 3] {
        let o = bounded_memory(&format!("frame type {kind} of 2^32-1"), || {
            let mut hostile = frame_header(kind, 1, u32::MAX);
            hostile.extend_from_slice(&[0u8; 1024]);
            run(script(Op::Declare, FRAME_MAX, hostile), "", Op::Declare)
        });
        let want = u64::from(u32::MAX) + 8;
        assert!(
            matches!(o.err, Error::Protocol(CodecError::FrameTooLarge { size, max: FRAME_MAX }) if size == want),
            "frame type {kind}: got {:?}",
            o.err
        );
        assert_close(&o, 501);
    }
}

// ----------------------------------------------------------------------
// Content.

#[test]
fn body_size_of_2_pow_63_is_message_too_large() {
    let _s = serial();
    for size in [1u64 << 63, u64::MAX] {
        let o = bounded_memory(&format!("body size {size}"), || {
            run(
                script(Op::Consume, FRAME_MAX, header_frame(1, 60, size)),
                "",
                Op::Consume,
            )
        });
        assert!(
            matches!(o.err, Error::MessageTooLarge { size: s, max } if s == size && max == 64 << 20),
            "body size {size}: got {:?}",
            o.err
        );
        assert_close(&o, 311);
    }
}

#[test]
fn body_longer_than_announced_is_unexpected_frame() {
    let _s = serial();
    let two = [
        header_frame(1, 60, 10),
        body_frame(1, &[1; 6]),
        body_frame(1, &[2; 6]),
    ]
    .concat();
    let one = [header_frame(1, 60, 10), body_frame(1, &[1; 11])].concat();
    for hostile in [two, one] {
        let o = run(script(Op::Consume, FRAME_MAX, hostile), "", Op::Consume);
        assert_violation(&o, 505);
    }
}

#[test]
fn method_in_the_middle_of_content_is_unexpected_frame() {
    let _s = serial();
    // Between deliver and header, and between two body frames.
    let before_header = method_bytes(1, &fb::deliver("ctag", 2));
    let mid_body = [
        header_frame(1, 60, 10),
        body_frame(1, &[1; 5]),
        method_bytes(1, &fb::deliver("ctag", 2)),
    ]
    .concat();
    for hostile in [before_header, mid_body] {
        let o = run(script(Op::Consume, FRAME_MAX, hostile), "", Op::Consume);
        assert_violation(&o, 505);
    }
}

#[test]
fn content_header_of_another_class_is_unexpected_frame() {
    let _s = serial();
    let o = run(
        script(Op::Consume, FRAME_MAX, header_frame(1, 50, 3)),
        "",
        Op::Consume,
    );
    assert_violation(&o, 505);
}

#[test]
fn content_on_channel_zero_is_unexpected_frame() {
    let _s = serial();
    for hostile in [header_frame(0, 60, 1), body_frame(0, b"x")] {
        let o = run(script(Op::Declare, FRAME_MAX, hostile), "", Op::Declare);
        assert_violation(&o, 505);
    }
}

#[test]
fn body_without_header_is_unexpected_frame() {
    let _s = serial();
    let o = run(
        script(Op::Consume, FRAME_MAX, body_frame(1, b"abc")),
        "",
        Op::Consume,
    );
    assert_violation(&o, 505);
}

/// A content header whose `headers` property is a table nested `depth`
/// deep (each level: empty key, 'F', length), announcing a 1-byte body.
fn nested_headers_frame(channel: u16, depth: usize) -> Vec<u8> {
    let mut p = BytesMut::with_capacity(16 + 6 * depth + 4);
    p.put_u16(60);
    p.put_u16(0);
    p.put_u64(1);
    p.put_u16(1 << 13); // headers only
    for level in 0..depth {
        // This table's content: the rest of the levels plus the innermost
        // empty table's 4-byte length.
        let inner = 6 * (depth - level - 1) + 4;
        p.put_u32((inner + 2) as u32);
        p.put_u8(0); // empty key
        p.put_u8(b'F');
    }
    p.put_u32(0);
    raw_frame(2, channel, &p)
}

#[test]
fn nested_headers_builder_is_well_formed() {
    // The builder's tables decode when they are within the nesting limit,
    // so the 100,000-deep case fails on depth, not on a malformed length.
    let depth = puka::codec::MAX_NESTING_DEPTH - 1;
    let mut buf = BytesMut::from(&nested_headers_frame(1, depth)[..]);
    let f = puka::codec::frame::decode(&mut buf, 1 << 20)
        .expect("decodes")
        .expect("a whole frame");
    let puka::codec::Frame::Header { header, .. } = f else {
        panic!("expected a content header, got {f:?}");
    };
    let mut t = header.properties.headers().expect("headers").clone();
    let mut levels = 0;
    while let Some(inner) = t.get("").and_then(|v| v.as_table()).cloned() {
        t = inner;
        levels += 1;
    }
    assert_eq!(levels, depth);
    assert!(buf.is_empty());
}

#[test]
fn table_nested_100000_deep_is_a_syntax_error() {
    let _s = serial();
    let hostile = nested_headers_frame(1, 100_000);
    assert!(hostile.len() < 1 << 20);
    let o = bounded_memory("headers nested 100000 deep", || {
        run(
            script(Op::Consume, 1 << 20, hostile),
            "frame_max=1048576",
            Op::Consume,
        )
    });
    assert!(
        matches!(
            o.err,
            Error::Protocol(CodecError::NestingTooDeep(puka::codec::MAX_NESTING_DEPTH))
        ),
        "got {:?}",
        o.err
    );
    assert_close(&o, 502);
}

/// A `connection.start` payload whose mechanisms long string, or a
/// server-property long string, announces 0xFFFFFFFF bytes.
fn start_with_huge_longstr(in_table: bool) -> Vec<u8> {
    let mut p = BytesMut::new();
    p.put_u16(10);
    p.put_u16(10);
    p.put_u8(0);
    p.put_u8(9);
    if in_table {
        let mut t = BytesMut::new();
        t.put_u8(7);
        t.put_slice(b"product");
        t.put_u8(b'S');
        t.put_u32(u32::MAX);
        t.put_slice(b"fake");
        p.put_u32(t.len() as u32);
        p.put_slice(&t);
        p.put_u32(5);
        p.put_slice(b"PLAIN");
    } else {
        FieldTable::new().encode(&mut p).expect("empty table");
        p.put_u32(u32::MAX);
        p.put_slice(b"PLAIN");
    }
    p.put_u32(5);
    p.put_slice(b"en_US");
    raw_frame(1, 0, &p)
}

#[test]
fn long_string_of_4_gib_is_a_syntax_error_without_allocating() {
    let _s = serial();
    for in_table in [false, true] {
        let o = bounded_memory("long string of 0xFFFFFFFF", || {
            run(
                script(Op::Connect, FRAME_MAX, start_with_huge_longstr(in_table)),
                "",
                Op::Connect,
            )
        });
        assert!(
            matches!(o.err, Error::Protocol(CodecError::Truncated(_))),
            "in table {in_table}: got {:?}",
            o.err
        );
        assert_close(&o, 502);
        assert!(o.record.method("connection.start-ok").is_none());
    }
}

// ----------------------------------------------------------------------
// Frames the codec refuses.

#[test]
fn heartbeat_on_channel_one_is_a_frame_error() {
    let _s = serial();
    let o = run(
        script(Op::Declare, FRAME_MAX, raw_frame(8, 1, b"")),
        "",
        Op::Declare,
    );
    assert!(
        matches!(
            o.err,
            Error::Protocol(CodecError::BadHeartbeat {
                channel: 1,
                size: 0
            })
        ),
        "got {:?}",
        o.err
    );
    assert_close(&o, 501);
}

#[test]
fn frame_type_9_is_a_frame_error() {
    let _s = serial();
    let o = run(
        script(Op::Declare, FRAME_MAX, raw_frame(9, 0, b"")),
        "",
        Op::Declare,
    );
    assert!(
        matches!(o.err, Error::Protocol(CodecError::UnknownFrameType(9))),
        "got {:?}",
        o.err
    );
    assert_close(&o, 501);
}

#[test]
fn bad_frame_end_is_a_frame_error() {
    let _s = serial();
    let ok = Method::QueueDeclareOk(QueueDeclareOk {
        queue: "q".into(),
        message_count: 0,
        consumer_count: 0,
    });
    let mut hostile = method_bytes(1, &ok);
    *hostile.last_mut().expect("frame") = 0xCD;
    let o = run(script(Op::Declare, FRAME_MAX, hostile), "", Op::Declare);
    assert!(
        matches!(o.err, Error::Protocol(CodecError::BadFrameEnd(0xCD))),
        "got {:?}",
        o.err
    );
    assert_close(&o, 501);
}

#[test]
fn delivery_on_a_channel_never_opened_is_a_channel_error() {
    let _s = serial();
    let hostile = [
        method_bytes(9, &fb::deliver("ctag", 1)),
        header_frame(9, 60, 1),
        body_frame(9, b"x"),
    ]
    .concat();
    let o = run(script(Op::Declare, FRAME_MAX, hostile), "", Op::Declare);
    assert_violation(&o, 504);
}

#[test]
fn unknown_method_is_command_invalid() {
    let _s = serial();
    let mut payload = Vec::new();
    payload.extend_from_slice(&99u16.to_be_bytes());
    payload.extend_from_slice(&99u16.to_be_bytes());
    let o = run(
        script(Op::Declare, FRAME_MAX, raw_frame(1, 0, &payload)),
        "",
        Op::Declare,
    );
    assert!(
        matches!(
            o.err,
            Error::Protocol(CodecError::UnknownMethod {
                class_id: 99,
                method_id: 99
            })
        ),
        "got {:?}",
        o.err
    );
    assert_close(&o, 503);
}

#[test]
fn connection_method_out_of_sequence_is_command_invalid() {
    let _s = serial();
    // A second connection.tune once the connection is open.
    let o = run(
        script(
            Op::Declare,
            FRAME_MAX,
            method_bytes(0, &fb::tune(10, 8192, 0)),
        ),
        "",
        Op::Declare,
    );
    assert_violation(&o, 503);
    // A channel method during the handshake.
    let mut steps = fb::until_start_ok();
    steps.push(Step::Method(1, Method::ChannelOpenOk(Default::default())));
    let o = run(steps, "", Op::Connect);
    assert_violation(&o, 503);
}

#[test]
fn delivery_on_a_channel_without_a_consumer_is_unexpected_frame() {
    let _s = serial();
    // Channel 1 is open for the pending queue.declare, not for consuming.
    let hostile = method_bytes(1, &fb::deliver("ctag", 1));
    let o = run(script(Op::Declare, FRAME_MAX, hostile), "", Op::Declare);
    assert_violation(&o, 505);
}

#[test]
fn violation_without_close_ok_still_ends_the_connection() {
    let _s = serial();
    // The peer never answers the client's connection.close: the client
    // gives up waiting after its 1 s close timeout and closes the socket.
    let fake = FakeBroker::start_with(
        script(Op::Declare, FRAME_MAX, raw_frame(9, 0, b"")),
        fb::Config {
            close_ok: false,
            ..fb::Config::default()
        },
    );
    let mut c = Client::new(&fake.url("")).expect("Client::new");
    let p = c.handshake();
    c.wait_timeout(p, W).expect("connect");
    let p = c.queue_declare(QueueDeclare::named("q"));
    let err = fails(&mut c, p);
    assert!(matches!(
        err,
        Error::Protocol(CodecError::UnknownFrameType(9))
    ));
    assert!(fake.connection_close(ONE_S).is_some());
    let t0 = Instant::now();
    c.run_loop(Some(Duration::from_secs(5))).expect("run_loop");
    let took = t0.elapsed();
    assert!(c.is_closed(), "still not closed after {took:?}");
    assert!(took <= Duration::from_millis(1500), "closed after {took:?}");
    assert!(fake.wait_eof(ONE_S), "the client did not close its socket");
    // The Closed event carries the first error.
    let mut closed = None;
    while let Some(ev) = c.next_connection_event() {
        if let puka::ConnectionEvent::Closed(e) = ev {
            closed = Some(e);
        }
    }
    assert!(
        matches!(
            closed,
            Some(Error::Protocol(CodecError::UnknownFrameType(9)))
        ),
        "{closed:?}"
    );
    drop(c);
    let r = fake.finish();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
}

fn server_close(code: u16, text: &str) -> Method {
    Method::ConnectionClose(ConnectionClose {
        reply_code: code,
        reply_text: text.into(),
        class_id: 0,
        method_id: 0,
    })
}

#[test]
fn broker_closing_the_connection_fails_with_its_reply_and_gets_close_ok() {
    let _s = serial();
    // A refused login: connection.close 403 right after start-ok.
    let mut steps = fb::until_start_ok();
    steps.push(Step::Method(
        0,
        server_close(403, "ACCESS_REFUSED - bad login"),
    ));
    steps.push(Step::Expect("connection.close-ok"));
    let o = run(steps, "", Op::Connect);
    match &o.err {
        Error::AccessRefused(r) => {
            assert_eq!(
                (r.code, r.text.as_str()),
                (403, "ACCESS_REFUSED - bad login")
            )
        }
        e => panic!("expected AccessRefused, got {e:?}"),
    }
    assert!(o.close.is_none(), "answered a close with {:?}", o.close);
    // An operator closing an open connection with an operation pending.
    let mut steps = script(
        Op::Declare,
        FRAME_MAX,
        method_bytes(0, &server_close(320, "CONNECTION_FORCED - shutdown")),
    );
    steps.push(Step::Expect("connection.close-ok"));
    let o = run(steps, "", Op::Declare);
    match &o.err {
        Error::ConnectionForced(r) => assert_eq!(r.code, 320),
        e => panic!("expected ConnectionForced, got {e:?}"),
    }
    assert!(o.close.is_none(), "answered a close with {:?}", o.close);
}

// ----------------------------------------------------------------------
// Tuning.

#[test]
fn tune_with_frame_max_below_4096_is_refused() {
    let _s = serial();
    for frame_max in [1u32, 4095] {
        let mut steps = fb::until_start_ok();
        steps.push(Step::Method(0, fb::tune(2047, frame_max, 0)));
        let o = run(steps, "", Op::Connect);
        assert!(
            matches!(o.err, Error::BadTune(_)),
            "frame_max {frame_max}: got {:?}",
            o.err
        );
        assert_close(&o, 502);
        assert!(
            o.record.tune_ok().is_none(),
            "frame_max {frame_max}: the client answered with {:?}",
            o.record.tune_ok()
        );
        assert!(o.record.method("connection.open").is_none());
    }
}

#[test]
fn tune_with_frame_max_4096_is_accepted() {
    let _s = serial();
    let fake = FakeBroker::start(fb::handshake(2047, 4096, 0));
    let mut c = Client::new(&fake.url("")).expect("Client::new");
    let p = c.handshake();
    c.wait_timeout(p, W).expect("connect");
    assert_eq!(c.tuned().frame_max, 4096);
    drop(c);
    let r = fake.finish();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!(r.tune_ok().expect("tune-ok").frame_max, 4096);
}

#[test]
fn tune_with_zero_limits_never_yields_zero_or_more_than_the_server() {
    let _s = serial();
    for (server_ch, server_fm) in [(0u16, 0u32), (0, 8192), (100, 0), (100, 8192)] {
        for query in [
            "",
            "channel_max=0&frame_max=0",
            "channel_max=2000&frame_max=200000",
            "channel_max=10&frame_max=4096",
        ] {
            let case = format!("server ({server_ch}, {server_fm}), client {query:?}");
            let fake = FakeBroker::start(fb::handshake(server_ch, server_fm, 0));
            let mut c = Client::new(&fake.url(query)).expect("Client::new");
            let p = c.handshake();
            c.wait_timeout(p, W)
                .unwrap_or_else(|e| panic!("{case}: connect: {e:?}"));
            let tuned = c.tuned();
            drop(c);
            let r = fake.finish();
            assert!(r.failures.is_empty(), "{case}: {:?}", r.failures);
            let ok = r.tune_ok().unwrap_or_else(|| panic!("{case}: no tune-ok"));
            assert_ne!(ok.channel_max, 0, "{case}: tune-ok channel_max");
            assert_ne!(ok.frame_max, 0, "{case}: tune-ok frame_max");
            assert!(ok.frame_max >= 4096, "{case}: tune-ok {ok:?}");
            if server_ch != 0 {
                assert!(ok.channel_max <= server_ch, "{case}: tune-ok {ok:?}");
            }
            if server_fm != 0 {
                assert!(ok.frame_max <= server_fm, "{case}: tune-ok {ok:?}");
            }
            assert_eq!(
                (tuned.channel_max, tuned.frame_max),
                (ok.channel_max, ok.frame_max),
                "{case}: what the client uses differs from what it told the server"
            );
        }
    }
}

// ----------------------------------------------------------------------
// Peers that are not AMQP 0-9-1 brokers, or go away.

#[test]
fn peer_speaking_http_is_not_amqp() {
    let _s = serial();
    let o = run(
        script(
            Op::Connect,
            FRAME_MAX,
            b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
        ),
        "",
        Op::Connect,
    );
    assert!(
        matches!(o.err, Error::Protocol(CodecError::NotAmqp(h)) if &h == b"HTTP/1.1"),
        "got {:?}",
        o.err
    );
    assert_close(&o, 501);
}

#[test]
fn peer_offering_another_protocol_version_is_a_protocol_header_error() {
    let _s = serial();
    let mut steps = script(Op::Connect, FRAME_MAX, b"AMQP\x00\x00\x08\x00".to_vec());
    // As the spec says a server does: the header, then close the socket.
    steps.push(Step::Close);
    let o = run(steps, "", Op::Connect);
    assert!(
        matches!(o.err, Error::Protocol(CodecError::ProtocolHeader(h)) if &h == b"AMQP\x00\x00\x08\x00"),
        "got {:?}",
        o.err
    );
    assert_eq!(o.err.reply_code(), Some(501));
    assert_close(&o, 501);
}

fn assert_broken(o: &Outcome, kind: ErrorKind) {
    match &o.err {
        Error::ConnectionBroken(e) => assert_eq!(e.kind(), kind, "{e}"),
        e => panic!("expected ConnectionBroken({kind:?}), got {e:?}"),
    }
    assert!(o.close.is_none(), "sent {:?} to a closed socket", o.close);
}

#[test]
fn peer_closing_after_the_protocol_header_breaks_the_connection() {
    let _s = serial();
    let o = run(vec![Step::ReadHeader, Step::Close], "", Op::Connect);
    assert_broken(&o, ErrorKind::UnexpectedEof);
    let o = run(vec![Step::ReadHeader, Step::Reset], "", Op::Connect);
    assert_broken(&o, ErrorKind::ConnectionReset);
}

#[test]
fn peer_closing_after_start_ok_is_a_broken_connection() {
    let _s = serial();
    // The fake broker advertises authentication_failure_close (as RabbitMQ
    // does): a refused login would come as connection.close 403, so an end
    // of stream here is a broken connection, not bad credentials.
    let mut steps = fb::until_start_ok();
    steps.push(Step::Close);
    let o = run(steps, "", Op::Connect);
    assert_broken(&o, ErrorKind::UnexpectedEof);
    assert!(o.close.is_none());
    // A reset is not the "closed after a bad login" of old brokers.
    let mut steps = fb::until_start_ok();
    steps.push(Step::Reset);
    let o = run(steps, "", Op::Connect);
    assert_broken(&o, ErrorKind::ConnectionReset);
}

#[test]
fn peer_closing_after_tune_breaks_the_connection() {
    let _s = serial();
    let mut steps = fb::until_open(2047, FRAME_MAX, 0);
    steps.push(Step::Close);
    let o = run(steps, "", Op::Connect);
    assert_broken(&o, ErrorKind::UnexpectedEof);
    let mut steps = fb::until_open(2047, FRAME_MAX, 0);
    steps.push(Step::Reset);
    let o = run(steps, "", Op::Connect);
    assert_broken(&o, ErrorKind::ConnectionReset);
}

#[test]
fn silent_peer_is_a_connect_timeout() {
    let _s = serial();
    let fake = FakeBroker::start(vec![Step::ReadHeader]);
    let t0 = Instant::now();
    let mut c = Client::new(&fake.url("connection_timeout=500")).expect("Client::new");
    let p = c.handshake();
    let r = c.wait_timeout(p, Duration::from_secs(3));
    let elapsed = t0.elapsed();
    assert!(matches!(r, Err(Error::ConnectTimeout)), "got {r:?}");
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed <= Duration::from_millis(1500),
        "ConnectTimeout after {elapsed:?}, expected 0.5-1.5 s"
    );
    drop(c);
    assert!(fake.wait_eof(W), "the client did not close its socket");
    let r = fake.finish();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!(r.header, b"AMQP\x00\x00\x09\x01");
    assert!(r.frames.is_empty(), "the client sent {:?}", r.frames);
}

// ----------------------------------------------------------------------
// Reply texts cut inside a character (RabbitMQ cuts them at 255 bytes).

/// A close method's payload (`class`/`method` 10/50 or 20/40) with a reply
/// text of 255 bytes whose last character is cut in half.
fn close_with_cut_text(class: u16, method: u16, code: u16) -> Vec<u8> {
    let text = format!("NOT_FOUND - no queue '{}'", "ü".repeat(127));
    let cut = &text.as_bytes()[..255];
    assert!(std::str::from_utf8(cut).is_err());
    let mut p = BytesMut::new();
    p.put_u16(class);
    p.put_u16(method);
    p.put_u16(code);
    p.put_u8(255);
    p.extend_from_slice(cut);
    p.put_u16(50); // queue
    p.put_u16(10); // declare
    p.to_vec()
}

#[test]
fn channel_close_with_a_text_cut_mid_character_fails_only_the_operation() {
    let _s = serial();
    let mut steps = script(
        Op::Declare,
        FRAME_MAX,
        raw_frame(1, 1, &close_with_cut_text(20, 40, 404)),
    );
    steps.push(Step::Expect("channel.close-ok"));
    let fake = FakeBroker::start(steps);
    let mut c = Client::new(&fake.url("")).expect("Client::new");
    let p = c.handshake();
    c.wait_timeout(p, W).expect("connect to the fake broker");
    let p = c.queue_declare(QueueDeclare::named("q"));
    match fails::<QueueDeclareOk>(&mut c, p) {
        Error::NotFound(r) => {
            assert_eq!(r.code, 404);
            assert!(r.text.starts_with("NOT_FOUND - no queue 'üü"), "{r:?}");
        }
        e => panic!("expected NotFound, got {e:?}"),
    }
    assert!(fake.wait_for("channel.close-ok", ONE_S).is_some());
    assert!(c.is_open(), "the connection ended");
    assert!(fake.connection_close(Duration::from_millis(200)).is_none());
    let p = c.close();
    let _ = c.wait_timeout(p, W);
    drop(c);
    let r = fake.finish();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
}

#[test]
fn connection_close_with_a_text_cut_mid_character_keeps_its_reply_code() {
    let _s = serial();
    let mut steps = script(
        Op::Declare,
        FRAME_MAX,
        raw_frame(1, 0, &close_with_cut_text(10, 50, 320)),
    );
    steps.push(Step::Expect("connection.close-ok"));
    let o = run(steps, "", Op::Declare);
    match &o.err {
        Error::ConnectionForced(r) => assert_eq!(r.code, 320),
        e => panic!("expected ConnectionForced, got {e:?}"),
    }
    assert!(o.close.is_none(), "answered a close with {:?}", o.close);
}

// ----------------------------------------------------------------------
// Secrets in Debug output.

#[test]
fn debug_output_never_shows_the_password_once_start_ok_is_queued() {
    let _s = serial();
    let fake = FakeBroker::start(fb::until_start_ok());
    let url = fake.url("").replace("guest:guest@", "guest:s3cr3t-pw@");
    assert!(url.contains("s3cr3t-pw"), "{url}");
    #[allow(unused_mut)]
    let mut options = puka::Options::default();
    #[cfg(feature = "tls")]
    {
        options.tls.client_key_file = Some("/keys/s3cr3t-pw.pem".into());
    }
    let mut c = Client::with_options(&url, options.clone()).expect("Client::new");
    let p = c.handshake();
    // Driven until start-ok is out; the fake broker then says nothing.
    let r = c.wait_timeout(p, Duration::from_millis(300));
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    let start_ok = fake
        .record()
        .method("connection.start-ok")
        .cloned()
        .unwrap();
    let mut shown = vec![
        format!("{c:?}"),
        format!("{c:#?}"),
        format!("{:?}", c.params()),
        c.params().to_string(),
        format!("{options:?}"),
        format!("{start_ok:?}"),
    ];
    let p = c.close();
    let r = c.wait_timeout(p, ONE_S);
    shown.push(format!("{r:?}"));
    for s in &shown {
        assert!(!s.contains("s3cr3t"), "password shown in {s}");
    }
    drop(c);
    let _ = fake.finish();
}

// ----------------------------------------------------------------------
// Authentication mechanisms.

#[test]
fn unsupported_auth_mechanism_fails_before_any_byte_is_sent() {
    let _s = serial();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("amqp://guest:s3cr3t@{}/", listener.local_addr().unwrap());
    let url = format!("{base}?auth_mechanism=SCRAM-SHA-256");
    match Client::new(&url) {
        Err(Error::Url(puka::UrlError::UnsupportedAuthMechanism(m))) => {
            assert_eq!(m, "SCRAM-SHA-256")
        }
        r => panic!("expected UnsupportedAuthMechanism, got {r:?}"),
    }
    // The same name set on parsed parameters by hand.
    let mut params = puka::ConnectionParams::parse(&base).unwrap();
    params.auth_mechanism = Some("SCRAM-SHA-256".into());
    match Client::from_params(params, puka::Options::default()) {
        Err(Error::Url(puka::UrlError::UnsupportedAuthMechanism(m))) => {
            assert_eq!(m, "SCRAM-SHA-256")
        }
        r => panic!("expected UnsupportedAuthMechanism, got {r:?}"),
    }
    std::thread::sleep(Duration::from_millis(50));
    let r = listener.accept();
    assert!(
        matches!(&r, Err(e) if e.kind() == ErrorKind::WouldBlock),
        "the client connected: {r:?}"
    );
}

#[test]
fn mechanism_the_broker_does_not_offer_is_no_auth_mechanism() {
    let _s = serial();
    let mut start = fb::start();
    if let Method::ConnectionStart(s) = &mut start {
        s.mechanisms = bytes::Bytes::from_static(b"AMQPLAIN");
    }
    let o = run(
        vec![Step::ReadHeader, Step::Method(0, start)],
        "",
        Op::Connect,
    );
    match &o.err {
        Error::NoAuthMechanism(offered) => assert_eq!(offered, "AMQPLAIN"),
        e => panic!("expected NoAuthMechanism, got {e:?}"),
    }
    assert!(
        o.record.method("connection.start-ok").is_none(),
        "credentials sent with a mechanism the broker does not offer"
    );
}

// ----------------------------------------------------------------------
// TCP keepalive.

#[test]
fn client_socket_has_tcp_keepalive_on() {
    let _s = serial();
    let fake = FakeBroker::start(fb::handshake(2047, FRAME_MAX, 0));
    let mut c = Client::new(&fake.url("heartbeat=0")).expect("Client::new");
    let p = c.handshake();
    c.wait_timeout(p, W).expect("connect to the fake broker");
    let sock = socket2::SockRef::from(&c);
    assert!(sock.keepalive().unwrap(), "SO_KEEPALIVE is off");
    #[cfg(target_os = "linux")]
    {
        assert_eq!(sock.keepalive_time().unwrap(), Duration::from_secs(60));
        assert_eq!(sock.keepalive_interval().unwrap(), Duration::from_secs(10));
        assert_eq!(sock.keepalive_retries().unwrap(), 3);
    }
    let p = c.close();
    let _ = c.wait_timeout(p, W);
    drop(c);
    let r = fake.finish();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
}

/// A broker that ignores prefetch: after the handshake it floods consumer
/// `x` on channel 1 with 64 KiB deliveries as fast as the socket takes
/// them, counting the bytes the socket took. Runs until `stop`.
fn flooding_broker(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> (String, std::thread::JoinHandle<()>) {
    use puka::codec::method::{BasicConsumeOk, ChannelOpenOk, ConnectionOpenOk};
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "amqp://guest:guest@{}/%2f?heartbeat=0",
        listener.local_addr().unwrap()
    );
    let handle = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut header = [0u8; 8];
        s.read_exact(&mut header).expect("protocol header");
        // The whole handshake, the channel and the consume at once: the
        // client handles them in order.
        let mut hello = Vec::new();
        hello.extend(method_bytes(0, &fb::start()));
        hello.extend(method_bytes(0, &fb::tune(2047, 131_072, 0)));
        hello.extend(method_bytes(
            0,
            &Method::ConnectionOpenOk(ConnectionOpenOk {}),
        ));
        hello.extend(method_bytes(1, &Method::ChannelOpenOk(ChannelOpenOk {})));
        hello.extend(method_bytes(
            1,
            &Method::BasicConsumeOk(BasicConsumeOk {
                consumer_tag: "x".into(),
            }),
        ));
        s.write_all(&hello).expect("handshake");
        // Whatever the client sends is read and dropped.
        let mut reader = s.try_clone().expect("clone");
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
        });
        s.set_nonblocking(true).expect("nonblocking");
        let body = vec![7u8; 65_536];
        let lifetime = Instant::now() + Duration::from_secs(30);
        let mut tag = 0u64;
        let mut pending: Vec<u8> = Vec::new();
        while !stop.load(Ordering::Relaxed) && Instant::now() < lifetime {
            if pending.is_empty() {
                tag += 1;
                pending.extend(method_bytes(1, &fb::deliver("x", tag)));
                pending.extend(header_frame(1, 60, body.len() as u64));
                pending.extend(body_frame(1, &body));
            }
            match s.write(&pending) {
                Ok(n) => {
                    pending.drain(..n);
                    written.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => break,
            }
        }
    });
    (url, handle)
}

#[test]
fn a_broker_ignoring_prefetch_is_held_back_by_tcp() {
    use puka::{Consume, Options};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    const BOUND: usize = 8 << 20;
    let _s = serial();
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let (url, server) = flooding_broker(stop.clone(), written.clone());
    let mut c =
        Client::with_options(&url, Options::default().max_buffered_bytes(BOUND)).expect("client");
    let consumer = c.basic_consume_with(Consume::queue("q").prefetch(10));
    // The user waits on something else, which never comes, for 3 s while the
    // broker floods the consumer.
    let other = c.queue_declare(QueueDeclare::named("other"));
    assert!(matches!(
        c.wait_timeout(other, Duration::from_secs(3)),
        Err(Error::Timeout)
    ));
    let held = written.load(Ordering::Relaxed);
    // What the client holds, plus one read budget and the kernel's socket
    // buffers: never the gigabytes a loopback delivers in 3 s.
    assert!(
        held < 48 << 20,
        "the broker wrote {} MiB into a client bounded at {} MiB",
        held >> 20,
        BOUND >> 20
    );
    assert!(
        held > BOUND as u64,
        "the flood reached the bound ({held} B)"
    );
    // Taking the deliveries resumes reading: the broker gets to write more.
    for _ in 0..(BOUND / 65_536) * 2 {
        let d = c
            .wait_timeout(consumer, Duration::from_secs(5))
            .expect("delivery")
            .expect("not ended");
        assert_eq!(d.body.len(), 65_536);
    }
    assert!(written.load(Ordering::Relaxed) > held, "reading resumed");
    stop.store(true, Ordering::Relaxed);
    drop(c);
    server.join().expect("server thread");
}

#[test]
fn a_refused_secret_fails_update_secret_with_the_brokers_error() {
    use puka::codec::method::ConnectionClose;
    let _s = serial();
    let mut steps = fb::handshake(2047, FRAME_MAX, 0);
    steps.extend([
        Step::Expect("connection.update-secret"),
        Step::Method(
            0,
            Method::ConnectionClose(ConnectionClose {
                reply_code: 530,
                reply_text: "NOT_ALLOWED - New secret was refused by one of the backends".into(),
                class_id: 10,
                method_id: 70,
            }),
        ),
        Step::Expect("connection.close-ok"),
    ]);
    let fb = FakeBroker::start(steps);
    let mut c = Client::new(&fb.url("")).expect("client");
    let p = c.handshake();
    c.wait_timeout(p, W).expect("connect");
    let p = c.update_secret("expired-token", "refresh");
    let err = c.wait_timeout(p, W).expect_err("refused");
    assert!(
        matches!(&err, Error::NotAllowed(r) if r.code == 530),
        "{err:?}"
    );
    assert!(err.is_connection_error());
    assert!(c.is_closed());
    let record = fb.finish();
    assert!(record.failures.is_empty(), "{:?}", record.failures);
    match record.method("connection.update-secret") {
        Some(Method::ConnectionUpdateSecret(u)) => {
            assert_eq!(&u.new_secret[..], b"expired-token");
            assert!(!format!("{u:?}").contains("expired-token"));
        }
        other => panic!("no update-secret sent: {other:?}"),
    }
}

/// Recovery meets an exclusive queue still locked (405) by the lost
/// connection's half-open other end: it declares it again after a short
/// wait, then goes on — no `RecoveryFailed`.
#[test]
fn recovery_declares_a_locked_exclusive_queue_again() {
    use puka::codec::method::{ChannelClose, QueueDeclareOk};
    use puka::{AddressOrder, ConnectionEvent, Options, Recovery};
    let _s = serial();
    let declare_ok = || {
        Method::QueueDeclareOk(QueueDeclareOk {
            queue: "excl".into(),
            message_count: 0,
            consumer_count: 0,
        })
    };
    // The first broker: the queue, then the connection drops.
    let mut first = fb::handshake(2047, FRAME_MAX, 0);
    first.extend(fb::open_channel(1));
    first.extend([
        Step::Expect("queue.declare"),
        Step::Method(1, declare_ok()),
        Step::Sleep(Duration::from_millis(100)),
        Step::Close,
    ]);
    // The second: still locked once, then free.
    let mut second = fb::handshake(2047, FRAME_MAX, 0);
    second.extend(fb::open_channel(1));
    second.extend([
        Step::Expect("queue.declare"),
        Step::Method(
            1,
            Method::ChannelClose(ChannelClose {
                reply_code: 405,
                reply_text: "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'excl'"
                    .into(),
                class_id: 50,
                method_id: 10,
            }),
        ),
        Step::Expect("channel.close-ok"),
    ]);
    second.extend(fb::open_channel(1));
    second.extend([
        Step::Expect("queue.declare"),
        Step::Method(1, declare_ok()),
        Step::Sleep(Duration::from_secs(2)),
    ]);
    let fb1 = FakeBroker::start(first);
    let fb2 = FakeBroker::start(second);
    let mut c = Client::with_addresses(
        &[fb1.url(""), fb2.url("")],
        Options::default()
            .address_order(AddressOrder::InOrder)
            .recovery(Some(
                Recovery::default().initial_backoff(Duration::from_millis(20)),
            )),
    )
    .expect("client");
    c.handshake().wait_timeout(&mut c, W).expect("connect");
    c.queue_declare(QueueDeclare::named("excl").exclusive())
        .wait_timeout(&mut c, W)
        .expect("declare");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut events = Vec::new();
    loop {
        while let Some(e) = c.next_connection_event() {
            events.push(format!("{e:?}"));
            assert!(
                !matches!(e, ConnectionEvent::RecoveryFailed { .. }),
                "{events:?}"
            );
        }
        let record = fb2.record();
        let declares = record
            .methods()
            .filter(|(_, m)| m.name() == "queue.declare")
            .count();
        if declares == 2 && events.iter().any(|e| e.starts_with("Reconnected")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "declared {declares} times; events {events:?}; {:?}",
            record.failures
        );
        c.run_loop(Some(Duration::from_millis(50)))
            .expect("run_loop");
    }
    // Settle: the second declare-ok arrives, nothing fails.
    c.run_loop(Some(Duration::from_millis(300)))
        .expect("run_loop");
    while let Some(e) = c.next_connection_event() {
        assert!(
            !matches!(e, ConnectionEvent::RecoveryFailed { .. }),
            "{e:?}"
        );
    }
    assert!(c.is_open());
    assert!(
        fb2.record().failures.is_empty(),
        "{:?}",
        fb2.record().failures
    );
}

/// Recovery restores in dependency order against a scripted broker: the
/// server-named queue first (it gets a new name), then its binding and its
/// consumer under that new name, with the consumer's tag unchanged.
#[test]
fn recovery_restores_in_order_under_the_new_queue_name() {
    use puka::codec::method::{BasicConsumeOk, QueueBindOk, QueueDeclareOk};
    use puka::{AddressOrder, Consume, Options, QueueBind, Recovery};
    let _s = serial();
    let declared = |name: &str| {
        Method::QueueDeclareOk(QueueDeclareOk {
            queue: name.into(),
            message_count: 0,
            consumer_count: 0,
        })
    };
    let script = |name: &str, end: Step| {
        let mut s = fb::handshake(2047, FRAME_MAX, 0);
        s.extend(fb::open_channel(1));
        s.extend([
            Step::Expect("queue.declare"),
            Step::Method(1, declared(name)),
            Step::Expect("queue.bind"),
            Step::Method(1, Method::QueueBindOk(QueueBindOk {})),
        ]);
        s.extend(fb::open_channel(2));
        s.extend([
            Step::Expect("basic.consume"),
            Step::Method(
                2,
                Method::BasicConsumeOk(BasicConsumeOk {
                    consumer_tag: "kept-tag".into(),
                }),
            ),
            end,
        ]);
        s
    };
    let fb1 = FakeBroker::start(script("amq.gen-A", Step::Close));
    let fb2 = FakeBroker::start(script("amq.gen-B", Step::Sleep(Duration::from_secs(3))));
    let mut c = Client::with_addresses(
        &[fb1.url(""), fb2.url("")],
        Options::default()
            .address_order(AddressOrder::InOrder)
            .recovery(Some(
                Recovery::default().initial_backoff(Duration::from_millis(20)),
            )),
    )
    .expect("client");
    c.handshake().wait_timeout(&mut c, W).expect("connect");
    let q = c
        .queue_declare(QueueDeclare::server_named())
        .wait_timeout(&mut c, W)
        .expect("declare")
        .queue
        .to_string();
    assert_eq!(q, "amq.gen-A");
    c.queue_bind(QueueBind::new(&q, "amq.direct", "k"))
        .wait_timeout(&mut c, W)
        .expect("bind");
    let consumer = c.basic_consume_with(Consume::queue(&q).consumer_tag("kept-tag"));
    c.consumer_ready(consumer)
        .wait_timeout(&mut c, W)
        .expect("consumer");
    // Fake broker 1 drops the connection; the client restores on broker 2.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fb2.record().method("basic.consume").is_none() {
        assert!(
            Instant::now() < deadline,
            "not restored: {:?}",
            fb2.record().method_names()
        );
        c.run_loop(Some(Duration::from_millis(50)))
            .expect("run_loop");
    }
    c.run_loop(Some(Duration::from_millis(200)))
        .expect("run_loop");
    let record = fb2.record();
    assert!(record.failures.is_empty(), "{:?}", record.failures);
    match record.method("queue.declare") {
        Some(Method::QueueDeclare(d)) => assert_eq!(d.queue, "", "declared server-named again"),
        other => panic!("{other:?}"),
    }
    match record.method("queue.bind") {
        Some(Method::QueueBind(b)) => assert_eq!(b.queue, "amq.gen-B"),
        other => panic!("{other:?}"),
    }
    match record.method("basic.consume") {
        Some(Method::BasicConsume(b)) => {
            assert_eq!(b.queue, "amq.gen-B");
            assert_eq!(b.consumer_tag, "kept-tag");
        }
        other => panic!("{other:?}"),
    }
    let mut renamed = false;
    while let Some(e) = c.next_connection_event() {
        if let puka::ConnectionEvent::QueueRenamed { old, new } = &e {
            renamed = old == "amq.gen-A" && new == "amq.gen-B";
        }
        assert!(
            !matches!(e, puka::ConnectionEvent::RecoveryFailed { .. }),
            "{e:?}"
        );
    }
    assert!(renamed, "QueueRenamed reported");
}

/// A channel-wide window (`basic_qos` with `global`) is restored with its
/// consumer: on the new channel, before the consumer's own window and its
/// `basic.consume`.
#[test]
fn recovery_restores_a_global_qos_before_its_consumer() {
    use puka::codec::method::{BasicConsumeOk, BasicQosOk};
    use puka::{AddressOrder, Consume, Options, Qos, Recovery};
    let _s = serial();
    let qos_ok = || Step::Method(1, Method::BasicQosOk(BasicQosOk {}));
    let consume_ok = || {
        Step::Method(
            1,
            Method::BasicConsumeOk(BasicConsumeOk {
                consumer_tag: "kept-tag".into(),
            }),
        )
    };
    let mut first = fb::handshake(2047, FRAME_MAX, 0);
    first.extend(fb::open_channel(1));
    first.extend([
        Step::Expect("basic.qos"),
        qos_ok(),
        Step::Expect("basic.consume"),
        consume_ok(),
        Step::Expect("basic.qos"),
        qos_ok(),
        Step::Sleep(Duration::from_millis(100)),
        Step::Close,
    ]);
    let mut second = fb::handshake(2047, FRAME_MAX, 0);
    second.extend(fb::open_channel(1));
    second.extend([
        Step::Expect("basic.qos"),
        qos_ok(),
        Step::Expect("basic.qos"),
        qos_ok(),
        Step::Expect("basic.consume"),
        consume_ok(),
        Step::Sleep(Duration::from_secs(2)),
    ]);
    let fb1 = FakeBroker::start(first);
    let fb2 = FakeBroker::start(second);
    let mut c = Client::with_addresses(
        &[fb1.url(""), fb2.url("")],
        Options::default()
            .address_order(AddressOrder::InOrder)
            .recovery(Some(
                Recovery::default().initial_backoff(Duration::from_millis(20)),
            )),
    )
    .expect("client");
    c.handshake().wait_timeout(&mut c, W).expect("connect");
    let consumer = c.basic_consume_with(Consume::queue("q").consumer_tag("kept-tag").prefetch(5));
    c.consumer_ready(consumer)
        .wait_timeout(&mut c, W)
        .expect("consumer");
    c.basic_qos(consumer, Qos::prefetch(7).size(0).global())
        .wait_timeout(&mut c, W)
        .expect("global qos");
    let deadline = Instant::now() + Duration::from_secs(10);
    while fb2.record().method("basic.consume").is_none() {
        assert!(
            Instant::now() < deadline,
            "not restored: {:?}",
            fb2.record().method_names()
        );
        c.run_loop(Some(Duration::from_millis(50)))
            .expect("run_loop");
    }
    c.run_loop(Some(Duration::from_millis(200)))
        .expect("run_loop");
    let record = fb2.record();
    assert!(record.failures.is_empty(), "{:?}", record.failures);
    let replayed: Vec<String> = record
        .methods()
        .filter(|(ch, _)| *ch == 1)
        .filter_map(|(_, m)| match m {
            Method::BasicQos(q) => Some(format!("qos {} global={}", q.prefetch_count, q.global)),
            Method::BasicConsume(b) => Some(format!("consume {}", b.consumer_tag)),
            _ => None,
        })
        .collect();
    assert_eq!(
        replayed,
        [
            "qos 7 global=true",
            "qos 5 global=false",
            "consume kept-tag"
        ]
    );
    while let Some(e) = c.next_connection_event() {
        assert!(
            !matches!(e, puka::ConnectionEvent::RecoveryFailed { .. }),
            "{e:?}"
        );
    }
}
