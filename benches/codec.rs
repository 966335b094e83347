//! Codec throughput and allocations: `cargo bench --bench codec`.
//!
//! Decode: a stream of `basic.deliver` + content header + 32-byte body
//! frames (as RabbitMQ sends a consumer), either from one buffer holding
//! everything or fed in 64 KiB reads the way `Connection::read_from` fills
//! its read buffer. Once with no `headers` property and once with a 2-entry
//! headers table. `codec_decode_deliver` decodes frame by frame with
//! `frame::decode` (one split of the read buffer per frame);
//! `codec_decode_deliver_batch` splits off every whole frame at once with
//! `frame::split_frames` and decodes each in place with `frames` +
//! `FrameRef::decode` (what `Connection` does). Both yield owned `Frame`s
//! whose bodies are slices of the read buffer.
//!
//! Encode: `frame::encode_basic_publish` with content-type, delivery-mode and
//! a 2-entry headers table, into a buffer cleared every 64 KiB as a socket
//! write would.
//!
//! Consume: the same deliveries through the sans-IO `Connection` (handshake,
//! one no-ack consumer, `handle_input`, `poll_event`), the whole client-side
//! receive path short of the socket.
//!
//! A counting global allocator reports allocations per message. Each figure
//! is the median of several runs; one machine-readable line per figure:
//!
//! ```text
//! bench=codec_decode_deliver mode=whole n=1000000 secs=0.123 msgs_per_sec=8130081 allocs_per_msg=1.00
//! ```
//!
//! Environment: `PUKA_BENCH_N` (messages per run, default 1,000,000) and
//! `PUKA_BENCH_RUNS` (runs per figure, default 5).

use bytes::{Bytes, BytesMut};
use puka::codec::frame::{self, Frame};
use puka::codec::method::{
    BasicConsumeOk, BasicDeliver, ChannelOpenOk, ConnectionOpenOk, ConnectionStart, ConnectionTune,
};
use puka::codec::{BasicProperties, FieldTable, Method};
use puka::protocol::{Config, Connection, ConsumeQueue, Event};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

// ---------------------------------------------------------------------------
// Allocation counting.

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static REALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        REALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size.saturating_sub(layout.size()) as u64, Relaxed);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Copy)]
struct Counts {
    allocs: u64,
    reallocs: u64,
    bytes: u64,
}

fn counts() -> Counts {
    Counts {
        allocs: ALLOCS.load(Relaxed),
        reallocs: REALLOCS.load(Relaxed),
        bytes: BYTES.load(Relaxed),
    }
}

// ---------------------------------------------------------------------------
// Inputs.

const FRAME_MAX: u32 = 131_072;
const BODY: [u8; 32] = [0x5a; 32];
const CHUNK: usize = 64 * 1024;

fn headers() -> FieldTable {
    FieldTable::new()
        .with("x-trace-id", "4bf92f3577b34da6")
        .with("x-retries", 3i32)
}

fn deliver_properties(with_headers: bool) -> BasicProperties {
    let p = BasicProperties::default()
        .with_content_type("application/octet-stream")
        .with_delivery_mode(1);
    if with_headers {
        p.with_headers(headers())
    } else {
        p
    }
}

/// `n` deliveries on `channel` as a broker sends them: method, header, body.
fn deliveries(n: usize, channel: u16, with_headers: bool) -> Vec<u8> {
    let props = deliver_properties(with_headers);
    let mut buf = BytesMut::new();
    for i in 0..n {
        let m = Method::BasicDeliver(BasicDeliver {
            consumer_tag: "ctag.1".into(),
            delivery_tag: i as u64 + 1,
            redelivered: false,
            exchange: "".into(),
            routing_key: "bench".into(),
        });
        frame::encode_method(&mut buf, channel, &m).unwrap();
        frame::encode_content(&mut buf, channel, 60, &props, &BODY, FRAME_MAX).unwrap();
    }
    buf.to_vec()
}

// ---------------------------------------------------------------------------
// Measurements.

struct Sample {
    secs: f64,
    allocs: u64,
    reallocs: u64,
    bytes: u64,
}

fn measure(f: impl FnOnce() -> usize) -> (Sample, usize) {
    let c0 = counts();
    let t0 = Instant::now();
    let out = f();
    let secs = t0.elapsed().as_secs_f64();
    let c1 = counts();
    (
        Sample {
            secs,
            allocs: c1.allocs - c0.allocs,
            reallocs: c1.reallocs - c0.reallocs,
            bytes: c1.bytes - c0.bytes,
        },
        out,
    )
}

struct Figure {
    name: String,
    mode: &'static str,
    n: usize,
    secs: f64,
    best_secs: f64,
    allocs: u64,
    reallocs: u64,
    bytes: u64,
}

impl Figure {
    fn msgs_per_sec(&self) -> f64 {
        self.n as f64 / self.secs
    }
    fn allocs_per_msg(&self) -> f64 {
        self.allocs as f64 / self.n as f64
    }
    fn print(&self) {
        println!(
            "bench={} mode={} n={} secs={:.4} msgs_per_sec={:.0} best_msgs_per_sec={:.0} \
             ns_per_msg={:.1} allocs_per_msg={:.2} reallocs_per_msg={:.4} alloc_bytes_per_msg={:.1}",
            self.name,
            self.mode,
            self.n,
            self.secs,
            self.msgs_per_sec(),
            self.n as f64 / self.best_secs,
            self.secs * 1e9 / self.n as f64,
            self.allocs_per_msg(),
            self.reallocs as f64 / self.n as f64,
            self.bytes as f64 / self.n as f64,
        );
    }
}

/// Runs `run` `runs` times (after one warm-up) and keeps the median time;
/// allocations are those of the median run (they do not vary).
fn figure(
    name: &str,
    mode: &'static str,
    n: usize,
    runs: usize,
    mut run: impl FnMut() -> (Sample, usize),
) -> Figure {
    let (_, got) = run();
    assert_eq!(got, n, "{name}/{mode}: wrong message count");
    let mut samples: Vec<Sample> = (0..runs).map(|_| run().0).collect();
    samples.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let best_secs = samples[0].secs;
    let mid = samples.swap_remove(samples.len() / 2);
    let fig = Figure {
        name: name.to_string(),
        mode,
        n,
        secs: mid.secs,
        best_secs,
        allocs: mid.allocs,
        reallocs: mid.reallocs,
        bytes: mid.bytes,
    };
    fig.print();
    fig
}

/// Decodes frames until the buffer runs dry; returns the messages (body
/// frames) seen. Not inlined, so a profiler can single it out
/// (`valgrind --tool=callgrind --toggle-collect=codec::drain`).
#[inline(never)]
fn drain(buf: &mut BytesMut) -> usize {
    let mut msgs = 0;
    while let Some(f) = frame::decode(buf, FRAME_MAX).expect("valid stream") {
        if let Frame::Body { .. } = f {
            msgs += 1;
        }
        black_box(f);
    }
    msgs
}

/// Everything in one buffer (as if the socket had delivered it at once).
fn decode_whole(input: &[u8]) -> (Sample, usize) {
    // The copy into the read buffer is not timed.
    let mut buf = BytesMut::from(input);
    measure(move || drain(&mut buf))
}

/// `split_frames` + `frames`: the read buffer split once per batch of whole
/// frames, each frame decoded in place (what `Connection` does).
#[inline(never)]
fn drain_batch(buf: &mut BytesMut) -> usize {
    let mut msgs = 0;
    loop {
        let whole = frame::split_frames(buf, FRAME_MAX).expect("valid stream");
        if whole.is_empty() {
            return msgs;
        }
        for f in frame::frames(&whole) {
            let f = f.decode().expect("valid frame");
            if let Frame::Body { .. } = f {
                msgs += 1;
            }
            black_box(f);
        }
    }
}

fn decode_batch_whole(input: &[u8]) -> (Sample, usize) {
    let mut buf = BytesMut::from(input);
    measure(move || drain_batch(&mut buf))
}

fn decode_batch_chunked(input: &[u8]) -> (Sample, usize) {
    let mut buf = BytesMut::with_capacity(CHUNK);
    measure(move || {
        let mut msgs = 0;
        for chunk in input.chunks(CHUNK) {
            if buf.capacity() - buf.len() < CHUNK / 4 {
                buf.reserve(CHUNK);
            }
            buf.extend_from_slice(chunk);
            msgs += drain_batch(&mut buf);
        }
        assert!(buf.is_empty());
        msgs
    })
}

/// Floor: walk the frames, splitting each off as one `Bytes` and dropping
/// it, decoding nothing (one refcount increment and decrement per frame).
fn floor_split_only(input: &[u8]) -> (Sample, usize) {
    let mut buf = BytesMut::from(input);
    measure(move || {
        let mut msgs = 0;
        while buf.len() >= 7 {
            let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
            if buf[0] == frame::FRAME_BODY {
                msgs += 1;
            }
            black_box(buf.split_to(size + 8).freeze());
        }
        msgs
    })
}

/// 64 KiB reads into a read buffer managed as `Connection::read_from` does.
fn decode_chunked(input: &[u8]) -> (Sample, usize) {
    let mut buf = BytesMut::with_capacity(CHUNK);
    measure(move || {
        let mut msgs = 0;
        for chunk in input.chunks(CHUNK) {
            if buf.capacity() - buf.len() < CHUNK / 4 {
                buf.reserve(CHUNK);
            }
            buf.extend_from_slice(chunk);
            msgs += drain(&mut buf);
        }
        assert!(buf.is_empty());
        msgs
    })
}

fn encode_publish(n: usize, props: &BasicProperties) -> (Sample, usize) {
    let mut buf = BytesMut::with_capacity(2 * CHUNK);
    measure(move || encode_loop(&mut buf, n, props))
}

/// `n` publishes into `buf`, cleared whenever it holds 64 KiB.
#[inline(never)]
fn encode_loop(buf: &mut BytesMut, n: usize, props: &BasicProperties) -> usize {
    let mut written = 0usize;
    for _ in 0..n {
        frame::encode_basic_publish(buf, 1, "", "bench", false, false, props, &BODY, FRAME_MAX)
            .unwrap();
        if buf.len() >= CHUNK {
            written += buf.len();
            black_box(&buf[..]);
            buf.clear();
        }
    }
    written += buf.len();
    black_box(written);
    n
}

// ---------------------------------------------------------------------------
// The whole receive path through the sans-IO connection.

fn server_method(dst: &mut Vec<u8>, channel: u16, m: impl Into<Method>) {
    let mut b = BytesMut::new();
    frame::encode_method(&mut b, channel, &m.into()).unwrap();
    dst.extend_from_slice(&b);
}

/// A connection after the handshake with one no-ack consumer on channel 1.
fn consuming_connection(now: Instant) -> Connection {
    let mut conn = Connection::new(Config::default(), 1, now);
    let mut v = Vec::new();
    server_method(
        &mut v,
        0,
        ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: FieldTable::new(),
            mechanisms: Bytes::from_static(b"PLAIN"),
            locales: Bytes::from_static(b"en_US"),
        },
    );
    server_method(
        &mut v,
        0,
        ConnectionTune {
            channel_max: 2047,
            frame_max: FRAME_MAX,
            heartbeat: 0,
        },
    );
    server_method(&mut v, 0, ConnectionOpenOk {});
    conn.handle_bytes(&v);
    conn.handle_input(now);
    conn.consume(
        2,
        vec![ConsumeQueue {
            queue: "bench".into(),
            ..Default::default()
        }],
        true,
        0,
    );
    let mut v = Vec::new();
    server_method(&mut v, 1, ChannelOpenOk {});
    server_method(
        &mut v,
        1,
        BasicConsumeOk {
            consumer_tag: "ctag.1".into(),
        },
    );
    conn.handle_bytes(&v);
    conn.handle_input(now);
    let _ = conn.take_output();
    while let Some(e) = conn.poll_event() {
        assert!(
            matches!(
                e,
                Event::Complete {
                    tag: 1,
                    result: Ok(_)
                }
            ),
            "{e:?}"
        );
    }
    assert!(conn.is_open());
    conn
}

fn consume(input: &[u8]) -> (Sample, usize) {
    let now = Instant::now();
    let mut conn = consuming_connection(now);
    measure(move || consume_loop(&mut conn, input, now))
}

#[inline(never)]
fn consume_loop(conn: &mut Connection, input: &[u8], now: Instant) -> usize {
    let mut msgs = 0;
    for chunk in input.chunks(CHUNK) {
        conn.handle_bytes(chunk);
        conn.handle_input(now);
        while let Some(e) = conn.poll_event() {
            match e {
                Event::Delivery { delivery, .. } => {
                    msgs += 1;
                    black_box(delivery);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    msgs
}

// ---------------------------------------------------------------------------

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects figures.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let n = env_usize("PUKA_BENCH_N", 1_000_000);
    let runs = env_usize("PUKA_BENCH_RUNS", 5).max(1);
    let mut figures = Vec::new();

    let plain = deliveries(n, 1, false);
    let with_headers = deliveries(n, 1, true);
    println!(
        "# {} messages; {} bytes per delivery without headers, {} with",
        n,
        plain.len() / n,
        with_headers.len() / n
    );
    println!(
        "# sizes: Frame {} Method {} ContentHeader {} BasicProperties {} FieldTable {} \
         ShortString {} Event {} Delivery {}",
        std::mem::size_of::<Frame>(),
        std::mem::size_of::<Method>(),
        std::mem::size_of::<frame::ContentHeader>(),
        std::mem::size_of::<BasicProperties>(),
        std::mem::size_of::<FieldTable>(),
        std::mem::size_of::<puka::ShortString>(),
        std::mem::size_of::<Event>(),
        std::mem::size_of::<puka::Delivery>(),
    );

    for (name, input) in [
        ("codec_decode_deliver", &plain),
        ("codec_decode_deliver_headers", &with_headers),
    ] {
        if wanted(name) {
            figures.push(figure(name, "whole", n, runs, || decode_whole(input)));
            figures.push(figure(name, "chunked64k", n, runs, || {
                decode_chunked(input)
            }));
        }
    }

    for (name, input) in [
        ("codec_decode_deliver_batch", &plain),
        ("codec_decode_deliver_batch_headers", &with_headers),
    ] {
        if wanted(name) {
            figures.push(figure(name, "whole", n, runs, || decode_batch_whole(input)));
            figures.push(figure(name, "chunked64k", n, runs, || {
                decode_batch_chunked(input)
            }));
        }
    }

    if wanted("floor") {
        figures.push(figure("floor_split_frames_only", "whole", n, runs, || {
            floor_split_only(&plain)
        }));
    }

    let publish_props = deliver_properties(true);
    if wanted("codec_encode_publish") {
        figures.push(figure("codec_encode_publish", "clear64k", n, runs, || {
            encode_publish(n, &publish_props)
        }));
        let no_headers = deliver_properties(false);
        figures.push(figure(
            "codec_encode_publish_noheaders",
            "clear64k",
            n,
            runs,
            || encode_publish(n, &no_headers),
        ));
    }

    if wanted("protocol_consume") {
        figures.push(figure("protocol_consume", "chunked64k", n, runs, || {
            consume(&plain)
        }));
        figures.push(figure(
            "protocol_consume_headers",
            "chunked64k",
            n,
            runs,
            || consume(&with_headers),
        ));
    }

    println!();
    println!(
        "{:<32} {:>11} {:>12} {:>10} {:>12} {:>8}",
        "figure", "mode", "msgs/s", "ns/msg", "allocs/msg", ">=5M/s"
    );
    for f in &figures {
        println!(
            "{:<32} {:>11} {:>12.0} {:>10.1} {:>12.2} {:>8}",
            f.name,
            f.mode,
            f.msgs_per_sec(),
            f.secs * 1e9 / f.n as f64,
            f.allocs_per_msg(),
            if f.msgs_per_sec() >= 5e6 { "yes" } else { "no" }
        );
    }
}
