//! puka's client path alone: a loopback server (std::net, one thread) that
//! speaks just enough AMQP — a scripted handshake — then either streams
//! pre-encoded deliveries as fast as the socket takes them, swallows the
//! published frames, or answers each `basic.get` at once. Beside each, the
//! same bytes over a plain std `TcpStream` (no AMQP at either end): the raw
//! loopback limit; for `get`, the hand-encoded `raw` client of `c_raw`, so
//! the round trip is the two clients' own cost with no broker in it.
//!
//! CPU is the client thread's alone (getrusage RUSAGE_THREAD): the server
//! thread runs in the same process.

use crate::common::*;
use bytes::BytesMut;
use puka::codec::frame::{self, Frame};
use puka::codec::method::{
    BasicConsumeOk, BasicDeliver, BasicGetOk, BasicQosOk, ChannelCloseOk, ChannelOpenOk,
    ConfirmSelectOk, ConnectionCloseOk, ConnectionOpenOk, ConnectionStart, ConnectionTune,
};
use puka::codec::{BasicProperties, FieldTable, Method};
use puka::{AckTiming, Client, Confirms, Consume, Options};
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub(crate) const FRAME_MAX: u32 = 131_072;
pub(crate) const CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct LoopFigure {
    /// consume, publish or get
    pub direction: &'static str,
    /// puka or raw
    pub client: &'static str,
    pub size: usize,
    pub n: usize,
    pub bytes: u64,
    pub secs: f64,
    pub cpu: f64,
    /// Median round trip (get only).
    pub p50_us: Option<f64>,
}

impl LoopFigure {
    fn rate(&self) -> f64 {
        self.n as f64 / self.secs
    }
    fn mb(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
    fn print(&self, round: usize) {
        let p50 = self
            .p50_us
            .map(|p| format!(" p50_us={p:.1}"))
            .unwrap_or_default();
        println!(
            "result scenario=loopback_{} client={} size={} n={} round={} secs={:.4} msgs_per_s={:.0} \
             mb_per_s={:.1} wire_bytes={} cpu_s={:.4} cpu_us_per_msg={:.3}{p50}",
            self.direction,
            self.client,
            self.size,
            self.n,
            round,
            self.secs,
            self.rate(),
            self.mb(),
            self.bytes,
            self.cpu,
            self.cpu * 1e6 / self.n as f64
        );
    }
}

pub(crate) fn method(dst: &mut BytesMut, channel: u16, m: impl Into<Method>) {
    frame::encode_method(dst, channel, &m.into()).expect("encode");
}

/// Where each message of a block of [`deliveries`] holds its delivery tag
/// (a big-endian u64): a consumer refuses tags that do not rise, so each
/// repetition of the block is renumbered.
fn tag_offsets(block: &[u8]) -> Vec<usize> {
    // Frame header (7), class and method (4), then the consumer tag
    // "ctag.1" (1 + 6): the delivery tag follows.
    const AT: usize = 7 + 4 + 1 + 6;
    let mut offsets = Vec::new();
    let mut pos = 0;
    while pos + 7 <= block.len() {
        let size = u32::from_be_bytes([
            block[pos + 3],
            block[pos + 4],
            block[pos + 5],
            block[pos + 6],
        ]);
        if block[pos] == frame::FRAME_METHOD {
            offsets.push(pos + AT);
        }
        pos += size as usize + 8;
    }
    offsets
}

/// Adds `by` to every delivery tag of `block`.
pub(crate) fn renumber(block: &mut [u8], offsets: &[usize], by: u64) {
    for &at in offsets {
        let tag = u64::from_be_bytes(block[at..at + 8].try_into().expect("8 bytes"));
        block[at..at + 8].copy_from_slice(&(tag + by).to_be_bytes());
    }
}

/// `count` deliveries with `size`-byte bodies, as RabbitMQ sends a no-ack
/// consumer on channel 1: basic.deliver, content header, body.
fn deliveries(count: usize, size: usize) -> Vec<u8> {
    let body = body(size);
    let props = BasicProperties::default();
    let mut buf = BytesMut::new();
    for i in 0..count {
        method(
            &mut buf,
            1,
            BasicDeliver {
                consumer_tag: "ctag.1".into(),
                delivery_tag: i as u64 + 1,
                redelivered: false,
                exchange: "".into(),
                routing_key: "bench".into(),
            },
        );
        frame::encode_content(&mut buf, 1, 60, &props, &body, FRAME_MAX).expect("encode");
    }
    buf.to_vec()
}

/// `count` publishes as puka sends them on its publish channel (1).
pub(crate) fn publishes(count: usize, size: usize) -> Vec<u8> {
    let body = body(size);
    let props = BasicProperties::default();
    let mut buf = BytesMut::new();
    for _ in 0..count {
        frame::encode_basic_publish(
            &mut buf, 1, "", "bench", false, false, &props, &body, FRAME_MAX,
        )
        .expect("encode");
    }
    buf.to_vec()
}

/// A block of whole messages of about 64 KiB (at least one message), and
/// how many messages it holds.
fn block(size: usize, encode: fn(usize, usize) -> Vec<u8>) -> (Vec<u8>, usize) {
    let one = encode(1, size).len();
    let k = (CHUNK / one).max(1);
    (encode(k, size), k)
}

/// Reads client frames and answers them until `done` says the handshake is
/// over; returns the bytes read past it. The server offers `channel_max`.
pub(crate) fn handshake(
    sock: &mut TcpStream,
    channel_max: u16,
    done: fn(&Method) -> bool,
) -> Res<BytesMut> {
    let mut buf = BytesMut::new();
    let mut tmp = vec![0u8; CHUNK];
    let mut header_seen = false;
    loop {
        if !header_seen && buf.len() >= 8 {
            if buf[..8] != frame::PROTOCOL_HEADER {
                return Err("bad protocol header".into());
            }
            let _ = buf.split_to(8);
            header_seen = true;
            let mut out = BytesMut::new();
            method(
                &mut out,
                0,
                ConnectionStart {
                    version_major: 0,
                    version_minor: 9,
                    server_properties: FieldTable::new(),
                    mechanisms: bytes::Bytes::from_static(b"PLAIN"),
                    locales: bytes::Bytes::from_static(b"en_US"),
                },
            );
            sock.write_all(&out).ctx("write start")?;
        }
        while let Some(f) = if header_seen {
            frame::decode(&mut buf, FRAME_MAX).ctx("decode")?
        } else {
            None
        } {
            let Frame::Method { channel, method: m } = f else {
                continue;
            };
            let mut out = BytesMut::new();
            match &m {
                Method::ConnectionStartOk(_) => method(
                    &mut out,
                    0,
                    ConnectionTune {
                        channel_max,
                        frame_max: FRAME_MAX,
                        heartbeat: 0,
                    },
                ),
                Method::ConnectionOpen(_) => method(&mut out, 0, ConnectionOpenOk),
                Method::ChannelOpen(_) => method(&mut out, channel, ChannelOpenOk),
                Method::ConfirmSelect(_) => method(&mut out, channel, ConfirmSelectOk),
                Method::BasicQos(_) => method(&mut out, channel, BasicQosOk),
                Method::BasicConsume(_) => method(
                    &mut out,
                    channel,
                    BasicConsumeOk {
                        consumer_tag: "ctag.1".into(),
                    },
                ),
                _ => {}
            }
            sock.write_all(&out).ctx("write reply")?;
            if done(&m) {
                return Ok(buf);
            }
        }
        let n = sock.read(&mut tmp).ctx("read")?;
        if n == 0 {
            return Err("client closed during the handshake".into());
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// What a server thread does after accepting.
enum Serve {
    /// Handshake, then write `block` `reps` times, its `k` delivery tags
    /// renumbered each time so that they keep rising.
    Deliver {
        block: Vec<u8>,
        k: usize,
        reps: usize,
    },
    /// Handshake, then read `expect` bytes; returns when the last arrived.
    Swallow { expect: u64 },
    /// No handshake: write `block` `reps` times.
    RawWrite { block: Vec<u8>, reps: usize },
    /// No handshake: read `expect` bytes.
    RawRead { expect: u64 },
    /// Handshake, then answer each `basic.get` with a `size`-byte message.
    AnswerGets { size: usize },
}

/// Answers every `basic.get` at once with a message of `size` bytes
/// (get-ok with a rising delivery tag, header, body), acks ignored, until
/// the client closes; `buf` holds what the handshake read past its end.
fn answer_gets(sock: &mut TcpStream, mut buf: BytesMut, size: usize) -> Res<Instant> {
    let body = body(size);
    let props = BasicProperties::default();
    let mut tmp = vec![0u8; CHUNK];
    let mut out = BytesMut::new();
    let mut tag = 0u64;
    let evict_kib: usize = std::env::var("PUKA_BENCH_EVICT_KIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut evict = vec![0u8; evict_kib * 1024];
    loop {
        if !evict.is_empty() && !buf.is_empty() {
            for i in (0..evict.len()).step_by(64) {
                evict[i] = evict[i].wrapping_add(1);
            }
            black_box(&evict);
        }
        while let Some(f) = frame::decode(&mut buf, FRAME_MAX).ctx("decode")? {
            let Frame::Method { channel, method: m } = f else {
                continue;
            };
            match m {
                Method::BasicGet(_) => {
                    tag += 1;
                    method(
                        &mut out,
                        channel,
                        BasicGetOk {
                            delivery_tag: tag,
                            redelivered: false,
                            exchange: "".into(),
                            routing_key: "bench".into(),
                            message_count: 0,
                        },
                    );
                    frame::encode_content(&mut out, channel, 60, &props, &body, FRAME_MAX)
                        .expect("encode");
                }
                Method::ChannelClose(_) => method(&mut out, channel, ChannelCloseOk),
                Method::ConnectionClose(_) => {
                    method(&mut out, 0, ConnectionCloseOk);
                    sock.write_all(&out).ctx("write close-ok")?;
                    return Ok(Instant::now());
                }
                _ => {}
            }
        }
        if !out.is_empty() {
            sock.write_all(&out).ctx("write")?;
            out.clear();
        }
        let n = sock.read(&mut tmp).ctx("read")?;
        if n == 0 {
            return Ok(Instant::now());
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

pub(crate) fn swallow(sock: &mut TcpStream, mut got: u64, expect: u64) -> Res<Instant> {
    let mut tmp = vec![0u8; 4 * CHUNK];
    while got < expect {
        let n = sock.read(&mut tmp).ctx("read")?;
        if n == 0 {
            return Err(format!("client closed after {got} of {expect} bytes"));
        }
        got += n as u64;
    }
    if got != expect {
        return Err(format!("read {got} bytes, expected {expect}"));
    }
    Ok(Instant::now())
}

pub(crate) fn drain_until_eof(sock: &mut TcpStream) {
    let mut tmp = vec![0u8; CHUNK];
    let _ = sock.set_read_timeout(Some(Duration::from_secs(30)));
    while matches!(sock.read(&mut tmp), Ok(n) if n > 0) {}
}

/// Starts a server on an ephemeral port; its thread returns the instant
/// the last byte arrived (read modes) or when it finished writing.
fn server(what: Serve) -> Res<(u16, JoinHandle<Res<Instant>>)> {
    let l = TcpListener::bind("127.0.0.1:0").ctx("bind")?;
    let port = l.local_addr().ctx("addr")?.port();
    let h = std::thread::spawn(move || -> Res<Instant> {
        let (mut sock, _) = l.accept().ctx("accept")?;
        let _ = sock.set_nodelay(true);
        match what {
            Serve::Deliver { mut block, k, reps } => {
                let offsets = tag_offsets(&block);
                assert_eq!(offsets.len(), k, "one delivery tag per message");
                handshake(&mut sock, 2047, |m| matches!(m, Method::BasicConsume(_)))?;
                for rep in 0..reps {
                    if rep > 0 {
                        renumber(&mut block, &offsets, k as u64);
                    }
                    sock.write_all(&block).ctx("write")?;
                }
                let t = Instant::now();
                drain_until_eof(&mut sock);
                Ok(t)
            }
            Serve::Swallow { expect } => {
                let rest = handshake(&mut sock, 2047, |m| matches!(m, Method::ChannelOpen(_)))?;
                // Returns (and closes) as soon as all arrived: the client
                // is dropped only after that, since closing a socket with
                // unread input (a channel.open-ok the publishing client
                // never needed to read) resets the connection, and a reset
                // throws away what this side had not read yet.
                swallow(&mut sock, rest.len() as u64, expect)
            }
            Serve::RawWrite { block, reps } => {
                // Start when the client says so (its clock is running).
                let mut go = [0u8; 1];
                sock.read_exact(&mut go).ctx("read go")?;
                for _ in 0..reps {
                    sock.write_all(&block).ctx("write")?;
                }
                let t = Instant::now();
                drain_until_eof(&mut sock);
                Ok(t)
            }
            Serve::RawRead { expect } => {
                let t = swallow(&mut sock, 0, expect)?;
                Ok(t)
            }
            Serve::AnswerGets { size } => {
                let rest = handshake(&mut sock, 2047, |m| matches!(m, Method::ChannelOpen(_)))?;
                answer_gets(&mut sock, rest, size)
            }
        }
    });
    Ok((port, h))
}

fn join(h: JoinHandle<Res<Instant>>) -> Res<Instant> {
    h.join().map_err(|_| "server thread panicked".to_string())?
}

fn puka_client(port: u16) -> Res<Client> {
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let mut c =
        Client::with_options(&url, Options::default().confirms(Confirms::Off)).ctx("client")?;
    let p = c.handshake();
    c.wait_timeout(p, Duration::from_secs(5)).ctx("connect")?;
    Ok(c)
}

/// puka consuming `reps` blocks of deliveries (no-ack).
fn puka_consume(size: usize, reps: usize) -> Res<LoopFigure> {
    let (block, k) = block(size, deliveries);
    let bytes = (block.len() * reps) as u64;
    let n = k * reps;
    let (port, h) = server(Serve::Deliver { block, k, reps })?;
    let mut c = puka_client(port)?;
    let m = Meter::thread();
    let consumer = c.basic_consume_with(Consume::queue("bench").no_ack());
    let mut body_bytes = 0usize;
    for _ in 0..n {
        let d = c.wait(consumer).ctx("delivery")?.ctx("consumer ended")?;
        body_bytes += d.body.len();
        black_box(&d);
    }
    let (secs, cpu) = m.stop();
    drop(c);
    join(h)?;
    if body_bytes != n * size {
        return Err(format!("received {body_bytes} body bytes"));
    }
    Ok(LoopFigure {
        direction: "consume",
        client: "puka",
        size,
        n,
        bytes,
        secs,
        cpu,
        p50_us: None,
    })
}

fn raw_consume(size: usize, reps: usize) -> Res<LoopFigure> {
    let (block, k) = block(size, deliveries);
    let bytes = (block.len() * reps) as u64;
    let (port, h) = server(Serve::RawWrite { block, reps })?;
    let mut s = TcpStream::connect(("127.0.0.1", port)).ctx("connect")?;
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; CHUNK];
    let m = Meter::thread();
    s.write_all(b"g").ctx("write go")?;
    let mut got = 0u64;
    while got < bytes {
        let n = s.read(&mut buf).ctx("read")?;
        if n == 0 {
            return Err("server closed".into());
        }
        black_box(&buf[..n]);
        got += n as u64;
    }
    let (secs, cpu) = m.stop();
    drop(s);
    join(h)?;
    Ok(LoopFigure {
        direction: "consume",
        client: "raw",
        size,
        n: k * reps,
        bytes,
        secs,
        cpu,
        p50_us: None,
    })
}

/// `n` gets (each acked before the next) against the answering server, by
/// `client` (puka, or the hand-encoded raw client), client-thread CPU.
fn get_round_trips(client: &'static str, size: usize, n: usize) -> Res<LoopFigure> {
    let (port, h) = server(Serve::AnswerGets { size })?;
    let job = Job {
        url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        scenario: crate::common::Scenario::Get,
        queue: "bench".into(),
        n,
        size,
    };
    let out = if client == "puka" {
        crate::c_puka::get(&job, AckTiming::Prompt, Meter::thread)?
    } else {
        crate::c_raw::get(&job, Meter::thread)?
    };
    join(h)?;
    Ok(LoopFigure {
        direction: "get",
        client,
        size,
        n: out.count,
        bytes: (out.count * size) as u64,
        secs: out.secs,
        cpu: out.cpu,
        p50_us: Some(median(&out.lat_us)),
    })
}

/// puka publishing n messages, confirms off; timed until the server has
/// read the last byte.
fn puka_publish(size: usize, n: usize) -> Res<LoopFigure> {
    let per = publishes(1, size).len() as u64;
    let bytes = per * n as u64;
    let (port, h) = server(Serve::Swallow { expect: bytes })?;
    let mut c = puka_client(port)?;
    let body = body(size);
    let m = Meter::thread();
    let mut last = None;
    for _ in 0..n {
        last = Some(c.basic_publish("", "bench", &body));
    }
    if let Some(p) = last {
        c.wait(p).ctx("last publish")?;
    }
    let (client_secs, cpu) = m.stop();
    let t_last = join(h)?;
    drop(c);
    let secs = t_last
        .saturating_duration_since(m.start_instant())
        .as_secs_f64()
        .max(client_secs);
    Ok(LoopFigure {
        direction: "publish",
        client: "puka",
        size,
        n,
        bytes,
        secs,
        cpu,
        p50_us: None,
    })
}

fn raw_publish(size: usize, n: usize) -> Res<LoopFigure> {
    let (block, k) = block(size, publishes);
    let reps = n.div_ceil(k);
    let bytes = (block.len() * reps) as u64;
    let (port, h) = server(Serve::RawRead { expect: bytes })?;
    let mut s = TcpStream::connect(("127.0.0.1", port)).ctx("connect")?;
    let _ = s.set_nodelay(true);
    let m = Meter::thread();
    for _ in 0..reps {
        s.write_all(&block).ctx("write")?;
    }
    let (client_secs, cpu) = m.stop();
    let t_last = join(h)?;
    let secs = t_last
        .saturating_duration_since(m.start_instant())
        .as_secs_f64()
        .max(client_secs);
    Ok(LoopFigure {
        direction: "publish",
        client: "raw",
        size,
        n: k * reps,
        bytes,
        secs,
        cpu,
        p50_us: None,
    })
}

pub fn run_all(
    quick: bool,
    n: usize,
    rounds: usize,
    dirs: &[&str],
    sizes: &[usize],
    failures: &mut Vec<String>,
) -> Vec<LoopFigure> {
    let n32 = if quick {
        200_000
    } else {
        (n * 10).max(100_000)
    };
    let n64 = (n32 / 100).max(100);
    let n_get = if quick { 2_000 } else { 20_000 };
    let mut figs = Vec::new();
    let k32 = block(32, deliveries).1;
    let k64 = block(65536, deliveries).1;
    for round in 1..=rounds {
        type Run = Box<dyn Fn() -> Res<LoopFigure>>;
        let runs: Vec<(&str, Run)> = vec![
            (
                "consume 32 puka",
                Box::new(move || puka_consume(32, n32.div_ceil(k32))),
            ),
            (
                "consume 32 raw",
                Box::new(move || raw_consume(32, n32.div_ceil(k32))),
            ),
            ("publish 32 puka", Box::new(move || puka_publish(32, n32))),
            ("publish 32 raw", Box::new(move || raw_publish(32, n32))),
            (
                "consume 64K puka",
                Box::new(move || puka_consume(65536, n64.div_ceil(k64))),
            ),
            (
                "consume 64K raw",
                Box::new(move || raw_consume(65536, n64.div_ceil(k64))),
            ),
            (
                "publish 64K puka",
                Box::new(move || puka_publish(65536, n64)),
            ),
            ("publish 64K raw", Box::new(move || raw_publish(65536, n64))),
            (
                "get 32 puka",
                Box::new(move || get_round_trips("puka", 32, n_get)),
            ),
            (
                "get 32 raw",
                Box::new(move || get_round_trips("raw", 32, n_get)),
            ),
        ];
        for (name, f) in runs {
            let size = if name.contains(" 32 ") { 32 } else { 65536 };
            if !dirs.iter().any(|d| name.starts_with(d)) || !sizes.contains(&size) {
                continue;
            }
            match f() {
                Ok(fig) => {
                    fig.print(round);
                    figs.push(fig);
                }
                Err(e) => {
                    println!("error loopback {name} round={round}: {e}");
                    failures.push(format!("loopback {name} round={round}: {e}"));
                }
            }
        }
    }
    figs
}

pub fn summary(figs: &[LoopFigure]) {
    if figs.is_empty() {
        return;
    }
    println!();
    println!(
        "## Loopback server (no broker): puka's client path alone vs raw TCP of the same bytes; \
         median [min–max]; client-thread CPU (RUSAGE_THREAD)"
    );
    println!();
    println!(
        "(size_of: puka::Delivery {} B, BasicProperties {} B, ShortString {} B)",
        std::mem::size_of::<puka::Delivery>(),
        std::mem::size_of::<BasicProperties>(),
        std::mem::size_of::<puka::ShortString>()
    );
    println!();
    println!("| direction | size | n | puka msgs/s | puka MB/s | puka CPU µs/msg | raw MB/s | puka % of raw | target |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for dir in ["consume", "publish"] {
        for size in [32usize, 65536] {
            let pick = |client: &str| -> Vec<&LoopFigure> {
                figs.iter()
                    .filter(|f| f.direction == dir && f.size == size && f.client == client)
                    .collect()
            };
            let p = pick("puka");
            let r = pick("raw");
            if p.is_empty() || r.is_empty() {
                continue;
            }
            let rates: Vec<f64> = p.iter().map(|f| f.rate()).collect();
            let rate = median(&rates);
            let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = rates.iter().copied().fold(0.0, f64::max);
            let mb = median(&p.iter().map(|f| f.mb()).collect::<Vec<_>>());
            let cpu = median(
                &p.iter()
                    .map(|f| f.cpu * 1e6 / f.n as f64)
                    .collect::<Vec<_>>(),
            );
            let raw_mb = median(&r.iter().map(|f| f.mb()).collect::<Vec<_>>());
            let pct = 100.0 * mb / raw_mb;
            let target = if size == 32 {
                let ok = rate >= 5e6;
                format!("≥5M msgs/s {}", if ok { "met" } else { "MISSED" })
            } else {
                format!("≥80% of raw {}", if pct >= 80.0 { "met" } else { "MISSED" })
            };
            println!(
                "| {dir} | {} | {} | {:.2}M [{:.2}–{:.2}M] | {:.0} | {:.3} | {:.0} | {:.0}% | {target} |",
                if size == 32 { "32 B" } else { "64 KiB" },
                p[0].n,
                rate / 1e6,
                lo / 1e6,
                hi / 1e6,
                mb,
                cpu,
                raw_mb,
                pct
            );
        }
    }

    get_summary(figs);
}

/// The get round trips side by side: each round ran puka then raw, so the
/// ratio is taken per round and its median given.
fn get_summary(figs: &[LoopFigure]) {
    let pick = |client: &str| -> Vec<&LoopFigure> {
        figs.iter()
            .filter(|f| f.direction == "get" && f.client == client)
            .collect()
    };
    let (p, r) = (pick("puka"), pick("raw"));
    if p.is_empty() || r.is_empty() {
        return;
    }
    let rate = |v: &[&LoopFigure]| median(&v.iter().map(|f| f.rate()).collect::<Vec<_>>());
    let p50 = |v: &[&LoopFigure]| median(&v.iter().filter_map(|f| f.p50_us).collect::<Vec<_>>());
    let cpu = |v: &[&LoopFigure]| {
        median(
            &v.iter()
                .map(|f| f.cpu * 1e6 / f.n as f64)
                .collect::<Vec<_>>(),
        )
    };
    let ratios: Vec<f64> = p.iter().zip(&r).map(|(a, b)| a.rate() / b.rate()).collect();
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(0.0, f64::max);
    println!();
    println!(
        "| get, loopback server (no broker) | n | puka gets/s | raw gets/s | puka/raw rate, median of rounds [min–max] | p50 puka / raw | CPU µs/get puka / raw |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| 32 B | {} | {:.1}k | {:.1}k | {:.3} [{:.3}–{:.3}] | {:.1} / {:.1} µs | {:.2} / {:.2} |",
        p[0].n,
        rate(&p) / 1e3,
        rate(&r) / 1e3,
        median(&ratios),
        lo,
        hi,
        p50(&p),
        p50(&r),
        cpu(&p),
        cpu(&r)
    );
}
