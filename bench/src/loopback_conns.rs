//! N connections in one thread against a scripted loopback server
//! (`--scenario loopback_scale_connections`): the connections question of
//! issue 17 without a broker.
//!
//! Against RabbitMQ (`scale_connections`) the broker's own work grows with
//! N (a queue and a channel process per connection, all on the same two
//! cores), which changes what the client's thread pays to wake, read and
//! write. Here one server thread holds the N sockets and trickles one
//! 32-byte delivery at a time round-robin over them, at the same rate
//! whatever N is, reading the acks back. What grows with N is then the
//! client's own cost, its kernel calls included: a cold `Client`, a cold
//! socket, an `epoll` set of N.
//!
//! The clients run in the loop of `scale_connections` ([`Reactor`]:
//! `on_event`, `run_any_callbacks`, `update_registration` when
//! `wants_registration_update`, a min-heap of deadlines). CPU is the client
//! thread's (`RUSAGE_THREAD`) from the first delivery sent to the last
//! handled.
//!
//! The `raw` variant is the yardstick: the same loop of one `mio::Poll`
//! over N sockets, but no client at all — a buffer per socket, frames cut
//! by their size field, one hand-encoded `basic.ack` per delivery written
//! once per wakeup. What it pays as N grows (the kernel's cold sockets, a
//! cold buffer per connection) no client can avoid; puka's growth beyond
//! it is puka's own.

use crate::common::*;
use crate::loopback::{self, FRAME_MAX};
use crate::loopback_scale::{self as ls, ScaleLoopFigure};
use crate::scale::{raise_nofile, trickle_secs, wakeups, Reactor, TRICKLE_RATE};
use bytes::BytesMut;
use puka::codec::frame;
use puka::codec::method::BasicDeliver;
use puka::codec::{BasicProperties, Method};
use puka::{Consume, Options};
use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the whole figure may take beyond its trickle.
const SLACK: Duration = Duration::from_secs(60);

/// One delivery to consumer `c1` on channel 1 with `tag`.
fn delivery(tag: u64) -> Vec<u8> {
    let mut buf = BytesMut::new();
    loopback::method(
        &mut buf,
        1,
        BasicDeliver {
            consumer_tag: "c1".into(),
            delivery_tag: tag,
            redelivered: false,
            exchange: "".into(),
            routing_key: "bench".into(),
        },
    );
    frame::encode_content(
        &mut buf,
        1,
        60,
        &BasicProperties::default(),
        &body(32),
        FRAME_MAX,
    )
    .expect("encode");
    buf.to_vec()
}

/// Writes all of `bytes` to a non-blocking socket (retrying on a full
/// send buffer, which a client that keeps up never leaves).
fn write_all(sock: &mut TcpStream, mut bytes: &[u8], deadline: Instant) -> Res<()> {
    while !bytes.is_empty() {
        match sock.write(bytes) {
            Ok(0) => return Err("server write: 0 bytes".into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err("server write: client stopped reading".into());
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("server write: {e}")),
        }
    }
    Ok(())
}

/// Reads what is there (the client's acks) and drops it.
fn drain(sock: &mut TcpStream, tmp: &mut [u8]) {
    while let Ok(n) = sock.read(tmp) {
        if n == 0 {
            break;
        }
    }
}

/// How the client side of [`connections`] is driven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// `Client::on_event`.
    OnEvent,
    /// `Client::on_read` / `on_write`.
    OnRead,
    /// No client: the raw yardstick of the module doc.
    Raw,
}

impl Driver {
    pub const ALL: [Driver; 3] = [Driver::OnEvent, Driver::OnRead, Driver::Raw];

    pub fn name(self) -> &'static str {
        match self {
            Driver::OnEvent => "on_event",
            Driver::OnRead => "on_read",
            Driver::Raw => "raw",
        }
    }
}

/// The drivers to run: all of [`Driver::ALL`], or those named in
/// `PUKA_BENCH_DRIVERS` (comma-separated; for a profiler that should see
/// one).
pub fn drivers() -> Vec<Driver> {
    match std::env::var("PUKA_BENCH_DRIVERS") {
        Ok(names) => Driver::ALL
            .into_iter()
            .filter(|d| names.split(',').any(|n| n.trim() == d.name()))
            .collect(),
        Err(_) => Driver::ALL.to_vec(),
    }
}

/// N clients, each consuming (and acking) from a server that trickles
/// `TRICKLE_RATE` deliveries a second over all of them, driven as `driver`
/// says.
pub fn connections(n: usize, driver: Driver) -> Res<ScaleLoopFigure> {
    if n == 0 {
        return Err("0 connections".into());
    }
    // Two descriptors per connection (both ends are in this process).
    let nofile = raise_nofile();
    if (nofile as usize) < 2 * n + 64 {
        return Err(format!(
            "{n} connections need {} open files, the limit is {nofile}",
            2 * n + 64
        ));
    }
    let secs = trickle_secs();
    let total = (TRICKLE_RATE * secs) as usize;
    let (l, port) = ls::listen()?;
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let server = std::thread::spawn(move || -> Res<()> {
        let deadline = Instant::now() + SLACK + Duration::from_secs_f64(secs);
        let mut socks = Vec::with_capacity(n);
        for _ in 0..n {
            let (mut sock, _) = l.accept().ctx("accept")?;
            let _ = sock.set_nodelay(true);
            if driver != Driver::Raw {
                let rest = loopback::handshake(&mut sock, ls::CHANNEL_MAX, |m| {
                    matches!(m, Method::ConnectionOpen(_))
                })?;
                ls::start_consumers(&mut sock, rest, 1)?;
            }
            sock.set_nonblocking(true).ctx("nonblocking")?;
            socks.push(sock);
        }
        if go_rx.recv().is_err() {
            return Ok(());
        }
        let mut tags = vec![0u64; n];
        let mut tmp = vec![0u8; 4096];
        let t0 = Instant::now();
        for i in 0..total {
            let due = t0 + Duration::from_secs_f64(i as f64 / TRICKLE_RATE);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let k = i % n;
            tags[k] += 1;
            write_all(&mut socks[k], &delivery(tags[k]), deadline)?;
            drain(&mut socks[k], &mut tmp);
        }
        if driver == Driver::Raw {
            // The raw side just drops its sockets.
            return Ok(());
        }
        for sock in &mut socks {
            sock.set_nonblocking(false).ctx("blocking")?;
            ls::answer_close(sock, Duration::from_secs(5))?;
        }
        Ok(())
    });
    if driver == Driver::Raw {
        let fig = raw::run(n, port, total, secs, go_tx);
        ls::join(server)?;
        return fig;
    }
    let delivered = Rc::new(Cell::new(0usize));
    let failed: Rc<Cell<Option<String>>> = Rc::default();
    let mut r = Reactor::new(n)?;
    r.on_read = driver == Driver::OnRead;
    for _ in 0..n {
        let mut c = ls::client(port, Options::default())?;
        let (got, err) = (delivered.clone(), failed.clone());
        let consumer =
            c.basic_consume_then(Consume::queue("q").prefetch(10), move |c, d| match d {
                Ok(Some(d)) => {
                    got.set(got.get() + 1);
                    if let Err(e) = c.basic_ack(&d) {
                        err.set(Some(format!("ack: {e}")));
                    }
                }
                Ok(None) => {}
                Err(e) => err.set(Some(format!("consumer: {e}"))),
            });
        let ready = c.consumer_ready(consumer);
        c.wait_timeout(ready, Duration::from_secs(5))
            .ctx("consume")?;
        r.add(c)?;
    }
    let w0 = wakeups();
    let m = Meter::thread();
    go_tx.send(()).ctx("go")?;
    let d = delivered.clone();
    let all = r.run_until(
        Instant::now() + Duration::from_secs_f64(secs) + SLACK,
        || d.get() >= total,
    )?;
    let (elapsed, cpu) = m.stop();
    let woke = wakeups() - w0;
    if let Some(e) = failed.take() {
        return Err(e);
    }
    if !all {
        return Err(format!("{} of {total} delivered", delivered.get()));
    }
    for c in r.clients.iter_mut() {
        let p = c.close();
        c.wait_timeout(p, Duration::from_secs(5)).ctx("close")?;
    }
    ls::join(server)?;
    Ok(ScaleLoopFigure {
        kind: "connections",
        variant: driver.name(),
        n,
        events: total,
        secs: elapsed,
        cpu,
        wakeups: woke,
    })
}

/// The raw yardstick: one `mio::Poll`, N sockets, no client.
mod raw {
    use super::*;
    use mio::net::TcpStream as MioStream;
    use mio::{Events, Interest, Poll, Token};

    /// Read buffer per socket (puka's default read size).
    const BUF: usize = 64 * 1024;

    /// One connection: its socket and the bytes read but not yet cut into
    /// frames (`buf[start..end]`).
    struct Conn {
        sock: MioStream,
        buf: Box<[u8]>,
        start: usize,
        end: usize,
    }

    /// `basic.ack` (class 60, method 80) of `tag` on channel 1, not multiple.
    fn ack(out: &mut Vec<u8>, tag: u64) {
        out.extend_from_slice(&[1, 0, 1, 0, 0, 0, 13, 0, 60, 0, 80]);
        out.extend_from_slice(&tag.to_be_bytes());
        out.extend_from_slice(&[0, 0xCE]);
    }

    /// Cuts the whole frames out of `c`'s buffer: an ack into `out` for
    /// each `basic.deliver`, the count of body frames (deliveries done).
    fn cut(c: &mut Conn, out: &mut Vec<u8>) -> Res<usize> {
        let mut done = 0;
        loop {
            let b = &c.buf[c.start..c.end];
            if b.len() < 8 {
                break;
            }
            let size = u32::from_be_bytes([b[3], b[4], b[5], b[6]]) as usize;
            if size + 8 > BUF {
                return Err(format!("raw: frame of {size} bytes"));
            }
            if b.len() < size + 8 {
                break;
            }
            if b[size + 7] != 0xCE {
                return Err("raw: bad frame end".into());
            }
            let p = &b[7..7 + size];
            match b[0] {
                // basic.deliver: consumer tag (shortstr), then the tag.
                1 if p.len() > 5 && p[..4] == [0, 60, 0, 60] => {
                    let t = 5 + usize::from(p[4]);
                    let tag = p
                        .get(t..t + 8)
                        .ok_or("raw: short basic.deliver")?
                        .try_into()
                        .map(u64::from_be_bytes)
                        .map_err(|_| "raw: tag")?;
                    ack(out, tag);
                }
                3 => done += 1,
                _ => {}
            }
            c.start += size + 8;
        }
        if c.start == c.end {
            c.start = 0;
            c.end = 0;
        } else if c.end == BUF {
            c.buf.copy_within(c.start..c.end, 0);
            c.end -= c.start;
            c.start = 0;
        }
        Ok(done)
    }

    /// Reads what `c` has (to a short read, as puka does), cuts it, and
    /// writes the acks in one `write`.
    fn handle(c: &mut Conn, out: &mut Vec<u8>) -> Res<usize> {
        let mut done = 0;
        loop {
            let space = BUF - c.end;
            match c.sock.read(&mut c.buf[c.end..]) {
                Ok(0) => return Err("raw: server closed".into()),
                Ok(k) => {
                    c.end += k;
                    done += cut(c, out)?;
                    if k < space {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("raw read: {e}")),
            }
        }
        if !out.is_empty() {
            // A few dozen bytes into an empty send buffer: written whole.
            let k = c.sock.write(out).ctx("raw write")?;
            if k != out.len() {
                return Err("raw: short write".into());
            }
            out.clear();
        }
        Ok(done)
    }

    pub(super) fn run(
        n: usize,
        port: u16,
        total: usize,
        secs: f64,
        go: mpsc::Sender<()>,
    ) -> Res<ScaleLoopFigure> {
        let mut poll = Poll::new().ctx("poll")?;
        let mut conns = Vec::with_capacity(n);
        for i in 0..n {
            let s = TcpStream::connect(("127.0.0.1", port)).ctx("connect")?;
            s.set_nodelay(true).ctx("nodelay")?;
            s.set_nonblocking(true).ctx("nonblocking")?;
            let mut sock = MioStream::from_std(s);
            poll.registry()
                .register(&mut sock, Token(i), Interest::READABLE)
                .ctx("register")?;
            conns.push(Conn {
                sock,
                buf: vec![0u8; BUF].into_boxed_slice(),
                start: 0,
                end: 0,
            });
        }
        let mut events = Events::with_capacity(1024);
        let mut out = Vec::with_capacity(1024);
        let deadline = Instant::now() + Duration::from_secs_f64(secs) + SLACK;
        let w0 = wakeups();
        let m = Meter::thread();
        go.send(()).ctx("go")?;
        let mut got = 0;
        while got < total {
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("raw: {got} of {total} delivered"));
            }
            poll.poll(&mut events, Some(deadline - now)).ctx("poll")?;
            for ev in events.iter() {
                // The server closes its sockets once it has sent the last.
                if got == total {
                    break;
                }
                let c = conns.get_mut(ev.token().0).ctx("raw: token")?;
                got += handle(c, &mut out)?;
            }
        }
        let (elapsed, cpu) = m.stop();
        Ok(ScaleLoopFigure {
            kind: "connections",
            variant: Driver::Raw.name(),
            n,
            events: total,
            secs: elapsed,
            cpu,
            wakeups: wakeups() - w0,
        })
    }
}
