//! Scale without a broker: how puka's cost per event grows with the number
//! of consumers on one connection and with the confirm window, when a
//! scripted loopback server sends the same batches whatever N is.
//!
//! Against RabbitMQ (`scale.rs`) the broker batches differently as N grows
//! (smaller batches over more queues, so more wakeups per delivery or per
//! confirm), which hides whether the client's own cost per event is flat.
//! Here the server writes 64 KiB blocks regardless of N, so a cost that
//! grows with N is the client's own: a lookup that scans, a shift that
//! grows with the window.
//!
//! CPU is the client thread's alone (getrusage RUSAGE_THREAD): the server
//! thread runs in the same process.

use crate::common::*;
use crate::loopback::{self, CHUNK, FRAME_MAX};
use bytes::BytesMut;
use puka::codec::frame::{self, Frame};
use puka::codec::method::{
    BasicAck, BasicConsumeOk, BasicDeliver, BasicQosOk, ChannelOpenOk, ConnectionCloseOk,
};
use puka::codec::{BasicProperties, Method};
use puka::{Client, Confirms, Consume, Options};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The channel_max the server offers (and the client asks for): room for
/// 10,000 consumers of one channel each.
pub(crate) const CHANNEL_MAX: u16 = 16_383;
/// Deliveries per consumers figure, whatever N.
const CONSUMER_DELIVERIES: usize = 1_000_000;
/// Deliveries per consumers figure with `--quick`.
const CONSUMER_DELIVERIES_QUICK: usize = 100_000;
/// Confirms per confirms figure at least (windows repeat up to it).
const CONFIRMS_TOTAL: usize = 1_000_000;
/// Confirms per confirms figure with `--quick`.
const CONFIRMS_TOTAL_QUICK: usize = 100_000;
/// `multiple` acks of the batched confirm order settle this many each.
const ACK_BATCH: usize = 100;

/// The order in which the server confirms a window of publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOrder {
    /// One `basic.ack` per publish, oldest first (what a single classic
    /// queue does when every publish is confirmed on its own).
    InOrder,
    /// `basic.ack` with `multiple` set every [`ACK_BATCH`] publishes.
    Multiple,
    /// The newer half first, then the older half, one ack each: publishes
    /// to a slow queue, then to a fast one, confirmed as each queue gets to
    /// them (the broker may confirm in any order).
    Halves,
    /// One ack each, newest first.
    Reverse,
}

impl AckOrder {
    pub const ALL: [AckOrder; 4] = [
        AckOrder::InOrder,
        AckOrder::Multiple,
        AckOrder::Halves,
        AckOrder::Reverse,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AckOrder::InOrder => "in_order",
            AckOrder::Multiple => "multiple",
            AckOrder::Halves => "halves",
            AckOrder::Reverse => "reverse",
        }
    }

    /// The (delivery tag, multiple) acks confirming publishes 1..=w.
    fn acks(self, w: u64) -> Vec<(u64, bool)> {
        match self {
            AckOrder::InOrder => (1..=w).map(|t| (t, false)).collect(),
            AckOrder::Multiple => {
                let b = ACK_BATCH as u64;
                let mut v: Vec<(u64, bool)> = (1..=w / b).map(|i| (i * b, true)).collect();
                if !w.is_multiple_of(b) {
                    v.push((w, true));
                }
                v
            }
            AckOrder::Halves => {
                let h = w / 2;
                (h + 1..=w).chain(1..=h).map(|t| (t, false)).collect()
            }
            AckOrder::Reverse => (1..=w).rev().map(|t| (t, false)).collect(),
        }
    }
}

/// One figure: `events` deliveries or confirms handled by the client.
#[derive(Debug, Clone)]
pub struct ScaleLoopFigure {
    /// "consumers", "confirms" or "acks"
    pub kind: &'static str,
    /// The confirm order, or "ack" / "no_ack" for the consumers.
    pub variant: &'static str,
    pub n: usize,
    pub events: usize,
    pub secs: f64,
    pub cpu: f64,
    pub wakeups: u64,
}

impl ScaleLoopFigure {
    fn cpu_us(&self) -> f64 {
        self.cpu * 1e6 / self.events as f64
    }

    pub(crate) fn print(&self, round: usize) {
        println!(
            "result scenario=loopback_scale_{} variant={} n={} round={} events={} secs={:.4} \
             events_per_s={:.0} cpu_s={:.4} cpu_us_per_event={:.3} wakeups_per_event={:.4}",
            self.kind,
            self.variant,
            self.n,
            round,
            self.events,
            self.secs,
            self.events as f64 / self.secs,
            self.cpu,
            self.cpu_us(),
            self.wakeups as f64 / self.events as f64,
        );
    }
}

pub(crate) fn listen() -> Res<(TcpListener, u16)> {
    let l = TcpListener::bind("127.0.0.1:0").ctx("bind")?;
    let port = l.local_addr().ctx("addr")?.port();
    Ok((l, port))
}

/// The server's side up to the end of the handshake (`done`): the socket
/// and what was read past it.
fn accept(l: TcpListener, done: fn(&Method) -> bool) -> Res<(TcpStream, BytesMut)> {
    let (mut sock, _) = l.accept().ctx("accept")?;
    let _ = sock.set_nodelay(true);
    let rest = loopback::handshake(&mut sock, CHANNEL_MAX, done)?;
    Ok((sock, rest))
}

/// Reads until the client's `connection.close` and answers it with
/// `close-ok`, so that the client's close ends at once; returns then, at
/// the client's end of stream, at a read error, or after `timeout` of
/// silence.
pub(crate) fn answer_close(sock: &mut TcpStream, timeout: Duration) -> Res<()> {
    let mut buf = BytesMut::new();
    let mut tmp = vec![0u8; CHUNK];
    let _ = sock.set_read_timeout(Some(timeout));
    loop {
        while let Some(f) = frame::decode(&mut buf, FRAME_MAX).ctx("decode")? {
            if let Frame::Method {
                method: Method::ConnectionClose(_),
                ..
            } = f
            {
                let mut out = BytesMut::new();
                loopback::method(&mut out, 0, ConnectionCloseOk);
                let _ = sock.write_all(&out);
                return Ok(());
            }
        }
        match sock.read(&mut tmp) {
            Ok(0) | Err(_) => return Ok(()),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

pub(crate) fn join(h: JoinHandle<Res<()>>) -> Res<()> {
    h.join().map_err(|_| "server thread panicked".to_string())?
}

pub(crate) fn client(port: u16, options: Options) -> Res<Client> {
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f?channel_max={CHANNEL_MAX}");
    let mut c = Client::with_options(&url, options).ctx("client")?;
    let p = c.handshake();
    c.wait_timeout(p, Duration::from_secs(5)).ctx("connect")?;
    Ok(c)
}

/// `k` rounds of one 32-byte delivery to each of `n` consumers (consumer
/// `i` on channel `i`, tag `c<i>`), round `j` with delivery tag `j + 1`;
/// with where each delivery tag sits, for [`loopback::renumber`].
fn consumer_block(n: usize, k: usize) -> (Vec<u8>, Vec<usize>) {
    let body = body(32);
    let props = BasicProperties::default();
    let mut buf = BytesMut::new();
    let mut offsets = Vec::with_capacity(n * k);
    for j in 0..k {
        for i in 1..=n {
            let ch = i as u16;
            let tag = format!("c{ch}");
            // Frame header (7), class and method (4), the consumer tag's
            // length byte and the tag: then the delivery tag.
            offsets.push(buf.len() + 7 + 4 + 1 + tag.len());
            loopback::method(
                &mut buf,
                ch,
                BasicDeliver {
                    consumer_tag: tag.as_str().into(),
                    delivery_tag: j as u64 + 1,
                    redelivered: false,
                    exchange: "".into(),
                    routing_key: "bench".into(),
                },
            );
            frame::encode_content(&mut buf, ch, 60, &props, &body, FRAME_MAX).expect("encode");
        }
    }
    (buf.to_vec(), offsets)
}

/// Answers `channel.open`, `basic.qos` and `basic.consume` (tag `c<channel>`)
/// until `n` consumers are started; `buf` holds what was read already.
pub(crate) fn start_consumers(sock: &mut TcpStream, mut buf: BytesMut, n: usize) -> Res<()> {
    let mut tmp = vec![0u8; CHUNK];
    let mut started = 0;
    while started < n {
        let mut out = BytesMut::new();
        while let Some(f) = frame::decode(&mut buf, FRAME_MAX).ctx("decode")? {
            let Frame::Method { channel, method: m } = f else {
                continue;
            };
            match m {
                Method::ChannelOpen(_) => loopback::method(&mut out, channel, ChannelOpenOk),
                Method::BasicQos(_) => loopback::method(&mut out, channel, BasicQosOk),
                Method::BasicConsume(_) => {
                    started += 1;
                    loopback::method(
                        &mut out,
                        channel,
                        BasicConsumeOk {
                            consumer_tag: format!("c{channel}").as_str().into(),
                        },
                    );
                }
                _ => {}
            }
        }
        if !out.is_empty() {
            sock.write_all(&out).ctx("write")?;
        }
        if started < n {
            let got = sock.read(&mut tmp).ctx("read")?;
            if got == 0 {
                return Err(format!("client closed after {started} consumers"));
            }
            buf.extend_from_slice(&tmp[..got]);
        }
    }
    Ok(())
}

/// `n` consumers on one connection, each acking every delivery (or with
/// `no_ack`, none); the server sends about `total` deliveries round-robin
/// over them in blocks of at least 64 KiB.
fn consumers(n: usize, total: usize, no_ack: bool) -> Res<ScaleLoopFigure> {
    if n == 0 || n > usize::from(CHANNEL_MAX) {
        return Err(format!("{n} consumers: between 1 and {CHANNEL_MAX}"));
    }
    let per_round = consumer_block(n, 1).0.len();
    let k = CHUNK.div_ceil(per_round).max(1);
    let (mut block, offsets) = consumer_block(n, k);
    let reps = total.div_ceil(k * n).max(1);
    let deliveries = reps * k * n;
    let (l, port) = listen()?;
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let server = std::thread::spawn(move || -> Res<()> {
        let (mut sock, rest) = accept(l, |m| matches!(m, Method::ConnectionOpen(_)))?;
        start_consumers(&mut sock, rest, n)?;
        // The client's acks are read (and dropped) by a thread of their
        // own, so that neither side's writes can block the other's.
        let mut rd = sock.try_clone().ctx("clone")?;
        let drain = std::thread::spawn(move || loopback::drain_until_eof(&mut rd));
        if go_rx.recv().is_err() {
            return Ok(());
        }
        for rep in 0..reps {
            if rep > 0 {
                loopback::renumber(&mut block, &offsets, k as u64);
            }
            sock.write_all(&block).ctx("write")?;
        }
        let _ = drain.join();
        Ok(())
    });
    let mut c = client(port, Options::default())?;
    let ready = Rc::new(Cell::new(0usize));
    let failed = Rc::new(Cell::new(0usize));
    let delivered = Rc::new(Cell::new(0usize));
    let error: Rc<Cell<Option<String>>> = Rc::default();
    for i in 0..n {
        let (got, err) = (delivered.clone(), error.clone());
        let mut consume = Consume::queue(&format!("q{i}"));
        if no_ack {
            consume = consume.no_ack();
        }
        let consumer = c.basic_consume_then(consume, move |c, d| match d {
            Ok(Some(d)) => {
                got.set(got.get() + 1);
                let acked = if no_ack { Ok(()) } else { c.basic_ack(&d) };
                if let Err(e) = acked {
                    err.set(Some(format!("ack: {e}")));
                    c.loop_break();
                }
                if got.get() >= deliveries {
                    c.loop_break();
                }
            }
            Ok(None) => {}
            Err(e) => {
                err.set(Some(format!("consumer: {e}")));
                c.loop_break();
            }
        });
        let p = c.consumer_ready(consumer);
        let (r, f) = (ready.clone(), failed.clone());
        c.set_callback(p, move |_, res| match res {
            Ok(_) => r.set(r.get() + 1),
            Err(_) => f.set(f.get() + 1),
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready.get() + failed.get() < n && Instant::now() < deadline {
        c.run_loop(Some(Duration::from_millis(10)))
            .ctx("run_loop")?;
    }
    if ready.get() != n {
        return Err(format!("{} of {n} consumers started", ready.get()));
    }
    let w0 = crate::scale::wakeups();
    let m = Meter::thread();
    go_tx.send(()).ctx("go")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while delivered.get() < deliveries && Instant::now() < deadline {
        if let Some(e) = error.take() {
            return Err(e);
        }
        c.run_loop(Some(Duration::from_millis(100)))
            .ctx("run_loop")?;
    }
    c.flush(Duration::from_secs(5)).ctx("flush")?;
    let (secs, cpu) = m.stop();
    let wakeups = crate::scale::wakeups() - w0;
    if let Some(e) = error.take() {
        return Err(e);
    }
    if delivered.get() != deliveries {
        return Err(format!("{} of {deliveries} delivered", delivered.get()));
    }
    drop(c);
    join(server)?;
    Ok(ScaleLoopFigure {
        kind: "consumers",
        variant: if no_ack { "no_ack" } else { "ack" },
        n,
        events: deliveries,
        secs,
        cpu,
        wakeups,
    })
}

/// Windows of `w` publishes with confirms, all unconfirmed until the
/// server has read every one; then the server confirms them in `order`.
/// As many windows as make about `total` confirms (at least one), so that
/// small windows are timed over enough of them.
fn confirms(w: usize, order: AckOrder, total: usize) -> Res<ScaleLoopFigure> {
    let per = loopback::publishes(1, 32).len() as u64;
    let expect = per * w as u64;
    let windows = (total / w.max(1)).max(1);
    let (l, port) = listen()?;
    let server = std::thread::spawn(move || -> Res<()> {
        let (mut sock, rest) = accept(l, |m| matches!(m, Method::ConfirmSelect(_)))?;
        let mut got = rest.len() as u64;
        for window in 0..windows {
            loopback::swallow(&mut sock, got, expect)?;
            got = 0;
            let base = (window * w) as u64;
            let mut acks = BytesMut::new();
            for (tag, multiple) in order.acks(w as u64) {
                let ack = BasicAck {
                    delivery_tag: base + tag,
                    multiple,
                };
                loopback::method(&mut acks, 1, ack);
            }
            for piece in acks.chunks(CHUNK) {
                sock.write_all(piece).ctx("write acks")?;
            }
        }
        answer_close(&mut sock, Duration::from_secs(30))
    });
    let mut c = client(
        port,
        // Never stop inside basic_publish to read confirms: all `w` are
        // unconfirmed when the publishing loop ends.
        Options::default()
            .confirms(Confirms::On)
            .write_high_water(usize::MAX / 2),
    )?;
    let body = body(32);
    let (mut secs, mut cpu, mut wakeups) = (0.0, 0.0, 0);
    for _ in 0..windows {
        let promises: Vec<_> = (0..w)
            .map(|_| c.basic_publish("", "bench", &body))
            .collect();
        // Handed to the kernel before the clock starts: the server
        // confirms only once it has read them all, so what is timed is the
        // confirms.
        c.flush(Duration::from_secs(60)).ctx("flush")?;
        let w0 = crate::scale::wakeups();
        let m = Meter::thread();
        for p in promises {
            c.wait_timeout(p, Duration::from_secs(600)).ctx("confirm")?;
        }
        let (s, u) = m.stop();
        secs += s;
        cpu += u;
        wakeups += crate::scale::wakeups() - w0;
    }
    let p = c.close();
    c.wait_timeout(p, Duration::from_secs(10)).ctx("close")?;
    join(server)?;
    Ok(ScaleLoopFigure {
        kind: "confirms",
        variant: order.name(),
        n: w,
        events: w * windows,
        secs,
        cpu,
        wakeups,
    })
}

/// Windows of `w` deliveries to one consumer (prefetch unlimited), each
/// held until all `w` arrived and then acked in `order` (`multiple`: one
/// `basic_ack_multiple` per 100): the client's own bookkeeping of
/// deliveries awaiting acks. As many windows as make about `total` acks.
fn held_acks(w: usize, order: AckOrder, total: usize) -> Res<ScaleLoopFigure> {
    let windows = (total / w.max(1)).max(1);
    let deliveries = windows * w;
    let k = CHUNK.div_ceil(consumer_block(1, 1).0.len()).max(1);
    let (mut block, offsets) = consumer_block(1, k);
    let one = block.len() / k;
    let (l, port) = listen()?;
    let server = std::thread::spawn(move || -> Res<()> {
        let (mut sock, rest) = accept(l, |m| matches!(m, Method::ConnectionOpen(_)))?;
        start_consumers(&mut sock, rest, 1)?;
        let mut rd = sock.try_clone().ctx("clone")?;
        let drain = std::thread::spawn(move || loopback::drain_until_eof(&mut rd));
        let mut left = deliveries;
        let mut rep = 0;
        while left > 0 {
            if rep > 0 {
                loopback::renumber(&mut block, &offsets, k as u64);
            }
            let m = left.min(k);
            sock.write_all(&block[..m * one]).ctx("write")?;
            left -= m;
            rep += 1;
        }
        let _ = drain.join();
        Ok(())
    });
    let mut c = client(port, Options::default())?;
    let consumer = c.basic_consume_with(Consume::queue("q0"));
    let (mut secs, mut cpu, mut wakeups) = (0.0, 0.0, 0);
    for _ in 0..windows {
        let mut held = Vec::with_capacity(w);
        for _ in 0..w {
            let d = c
                .wait_timeout(consumer, Duration::from_secs(30))
                .ctx("delivery")?
                .ctx("consumer ended")?;
            held.push(d);
        }
        let w0 = crate::scale::wakeups();
        let m = Meter::thread();
        match order {
            AckOrder::Multiple => {
                for d in held.iter().skip(ACK_BATCH - 1).step_by(ACK_BATCH) {
                    c.basic_ack_multiple(d).ctx("ack")?;
                }
                if !w.is_multiple_of(ACK_BATCH) {
                    c.basic_ack_multiple(&held[w - 1]).ctx("ack")?;
                }
            }
            _ => {
                for (tag, _) in order.acks(w as u64) {
                    c.basic_ack(&held[tag as usize - 1]).ctx("ack")?;
                }
            }
        }
        c.flush(Duration::from_secs(60)).ctx("flush")?;
        let (s, u) = m.stop();
        secs += s;
        cpu += u;
        wakeups += crate::scale::wakeups() - w0;
    }
    drop(c);
    join(server)?;
    Ok(ScaleLoopFigure {
        kind: "acks",
        variant: order.name(),
        n: w,
        events: deliveries,
        secs,
        cpu,
        wakeups,
    })
}

/// Runs the wanted kinds ("consumers", "confirms") at `counts` (or each
/// kind's defaults), `rounds` times each, in this process.
pub fn run_all(
    kinds: &[&str],
    counts: &[usize],
    rounds: usize,
    quick: bool,
    failures: &mut Vec<String>,
) -> Vec<ScaleLoopFigure> {
    let mut figs = Vec::new();
    let mut record = |what: String, r: Res<ScaleLoopFigure>, round: usize| match r {
        Ok(f) => {
            f.print(round);
            figs.push(f);
        }
        Err(e) => {
            println!("error {what}: {e}");
            failures.push(format!("{what}: {e}"));
        }
    };
    let pick = |defaults: &[usize]| -> Vec<usize> {
        if counts.is_empty() {
            defaults.to_vec()
        } else {
            counts.to_vec()
        }
    };
    for round in 1..=rounds.max(1) {
        if kinds.contains(&"consumers") {
            let total = if quick {
                CONSUMER_DELIVERIES_QUICK
            } else {
                CONSUMER_DELIVERIES
            };
            for n in pick(&[1, 100, 1_000, 10_000]) {
                for no_ack in [false, true] {
                    record(
                        format!("loopback consumers {n} no_ack={no_ack}"),
                        consumers(n, total, no_ack),
                        round,
                    );
                }
            }
        }
        if kinds.contains(&"connections") {
            for n in pick(if quick {
                &[1, 100]
            } else {
                &[1, 10, 100, 1_000]
            }) {
                for driver in crate::loopback_conns::drivers() {
                    record(
                        format!("loopback connections {n} {}", driver.name()),
                        crate::loopback_conns::connections(n, driver),
                        round,
                    );
                }
            }
        }
        // Held acks and confirm windows: the same counts and orders.
        let total = if quick {
            CONFIRMS_TOTAL_QUICK
        } else {
            CONFIRMS_TOTAL
        };
        let defaults: &[usize] = if quick {
            &[1_000, 10_000]
        } else {
            &[1_000, 100_000, 1_000_000]
        };
        type Window = fn(usize, AckOrder, usize) -> Res<ScaleLoopFigure>;
        let windows: [(&str, Window); 2] = [("acks", held_acks), ("confirms", confirms)];
        for (kind, run) in windows {
            if !kinds.contains(&kind) {
                continue;
            }
            for w in pick(defaults) {
                for order in AckOrder::ALL {
                    record(
                        format!("loopback {kind} {w} {}", order.name()),
                        run(w, order, total),
                        round,
                    );
                }
            }
        }
    }
    figs
}

/// Markdown tables: median over rounds of each figure's CPU per event.
pub fn summary(figs: &[ScaleLoopFigure]) {
    let mut keys: Vec<(&str, &str, usize)> = Vec::new();
    for f in figs {
        let k = (f.kind, f.variant, f.n);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    for kind in ["connections", "consumers", "confirms", "acks"] {
        let rows: Vec<_> = keys.iter().filter(|k| k.0 == kind).collect();
        if rows.is_empty() {
            continue;
        }
        println!();
        if kind == "connections" {
            println!(
                "## N connections in one thread, one delivery at a time from a loopback server (client thread CPU)"
            );
        } else if kind == "consumers" {
            println!("## N consumers on one connection, loopback server (client thread CPU)");
        } else if kind == "acks" {
            println!("## N deliveries held, then acked, loopback server (client thread CPU)");
        } else {
            println!(
                "## N publishes in flight, confirmed by a loopback server (client thread CPU)"
            );
        }
        println!();
        println!(
            "| N | variant | events | CPU µs / event, median [min–max] | events/s | wakeups / event |"
        );
        println!("| --- | --- | --- | --- | --- | --- |");
        for &&(kind, variant, n) in &rows {
            let of: Vec<&ScaleLoopFigure> = figs
                .iter()
                .filter(|f| (f.kind, f.variant, f.n) == (kind, variant, n))
                .collect();
            let cpu: Vec<f64> = of.iter().map(|f| f.cpu_us()).collect();
            let rate: Vec<f64> = of.iter().map(|f| f.events as f64 / f.secs).collect();
            let wakes: Vec<f64> = of
                .iter()
                .map(|f| f.wakeups as f64 / f.events as f64)
                .collect();
            let lo = cpu.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = cpu.iter().copied().fold(0.0, f64::max);
            println!(
                "| {n} | {variant} | {} | {:.3} [{lo:.3}–{hi:.3}] | {:.0}k | {:.4} |",
                of[0].events,
                median(&cpu),
                median(&rate) / 1e3,
                median(&wakes),
            );
        }
    }
}
