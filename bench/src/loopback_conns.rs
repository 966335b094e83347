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

/// N clients, each consuming (and acking) from a server that trickles
/// `TRICKLE_RATE` deliveries a second over all of them; driven by
/// `on_event`, or with `on_read` by `on_read`/`on_write`.
pub fn connections(n: usize, on_read: bool) -> Res<ScaleLoopFigure> {
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
            let rest = loopback::handshake(&mut sock, ls::CHANNEL_MAX, |m| {
                matches!(m, Method::ConnectionOpen(_))
            })?;
            ls::start_consumers(&mut sock, rest, 1)?;
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
        for sock in &mut socks {
            sock.set_nonblocking(false).ctx("blocking")?;
            ls::answer_close(sock, Duration::from_secs(5))?;
        }
        Ok(())
    });
    let delivered = Rc::new(Cell::new(0usize));
    let failed: Rc<Cell<Option<String>>> = Rc::default();
    let mut r = Reactor::new(n)?;
    r.on_read = on_read;
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
        variant: if on_read { "on_read" } else { "on_event" },
        n,
        events: total,
        secs: elapsed,
        cpu,
        wakeups: woke,
    })
}
