//! How the client's own loop sleeps. Over plain TCP, `wait` sleeps inside
//! the socket's `recv` (the socket is blocking once connected, every other
//! read and write passes `MSG_DONTWAIT`): these tests hold it to what the
//! `epoll_wait` sleep it replaces promised — heartbeats leave on time while
//! a `wait` sleeps, a `wait_timeout` ends on time, a late reply still wakes
//! it at once, and no call of the reactor contract ever blocks.

mod common;
mod support;

use puka::codec::frame::Frame;
use puka::{Client, Error, QueueDeclare};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
use support::fake_broker::{self as fb, raw_frame, FakeBroker, Step};

/// The bound on what must succeed.
const W: Duration = Duration::from_secs(5);

/// Sends heartbeats every `every` for `total`, so the client keeps hearing
/// from the fake broker.
fn heartbeats(every: Duration, total: Duration) -> Vec<Step> {
    let n = (total.as_millis() / every.as_millis()) as usize;
    (0..n)
        .flat_map(|_| [Step::Sleep(every), Step::Send(raw_frame(8, 0, b""))])
        .collect()
}

#[test]
fn heartbeats_leave_on_time_while_wait_sleeps() {
    // heartbeat=1: the client sends a heartbeat every half second of its
    // own silence, here while it sits in `wait_timeout` on a consumer that
    // never gets a delivery. The fake broker's own heartbeats (every 1.2 s,
    // inside the client's 2 s dead-peer limit) are the only bytes that
    // arrive: a sleep that woke only for bytes would leave 1.2 s gaps.
    let mut steps = fb::handshake(2047, 131_072, 1);
    steps.extend(fb::consumer(1, "c"));
    steps.extend(heartbeats(
        Duration::from_millis(1200),
        Duration::from_secs(6),
    ));
    let fake = FakeBroker::start(steps);
    let mut c = Client::new(&fake.url("")).expect("Client::new");
    let consumer = c.basic_consume("q");
    // Let the consume-ok arrive (a timeout at 300 ms is expected).
    let _ = c.wait_timeout(consumer, Duration::from_millis(300));
    let started = Instant::now();
    let r = c.wait_timeout(consumer, Duration::from_secs(4));
    let waited = started.elapsed();
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_millis(4_500),
        "wait_timeout(4 s) returned after {waited:?}"
    );
    assert!(c.is_open(), "{:?}", c.next_connection_event());
    let record = fake.record();
    assert!(record.failures.is_empty(), "{:?}", record.failures);
    let beats: Vec<Instant> = record
        .frames
        .iter()
        .zip(&record.frame_times)
        .filter(|(f, t)| matches!(f, Frame::Heartbeat) && **t >= started)
        .map(|(_, t)| *t)
        .collect();
    assert!(
        beats.len() >= 4,
        "{} heartbeats in the 4 s wait: {beats:?}",
        beats.len()
    );
    let mut last = started;
    for t in &beats {
        let gap = t.duration_since(last);
        assert!(
            gap <= Duration::from_millis(1_000),
            "{gap:?} without a heartbeat while wait slept"
        );
        last = *t;
    }
}

#[test]
fn a_reply_wakes_a_long_wait_at_once() {
    // The reply comes 300 ms into a wait whose only timer is 60 s away: the
    // sleep must end with the bytes, not with its timeout.
    let mut steps = fb::handshake(2047, 131_072, 60);
    steps.extend(fb::open_channel(1));
    steps.push(Step::Expect("queue.declare"));
    steps.push(Step::Sleep(Duration::from_millis(300)));
    steps.push(Step::Method(
        1,
        puka::codec::Method::QueueDeclareOk(puka::codec::method::QueueDeclareOk {
            queue: "q".into(),
            message_count: 0,
            consumer_count: 0,
        }),
    ));
    let fake = FakeBroker::start(steps);
    let mut c = Client::new(&fake.url("")).expect("Client::new");
    let p = c.handshake();
    c.wait_timeout(p, W).expect("connect");
    let started = Instant::now();
    let p = c.queue_declare(QueueDeclare::named("q"));
    let ok = c.wait_timeout(p, W).expect("declare");
    let took = started.elapsed();
    assert_eq!(ok.queue, "q");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "the reply sent after 300 ms was seen after {took:?}"
    );
}

#[test]
fn reactor_calls_never_block_once_connected() {
    common::require_broker();
    // Run the client in a thread; a call that blocked would hold it past
    // the bound and the channel would time out.
    let url = common::amqp_url();
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        let mut c = Client::new(&url).expect("Client::new");
        let p = c.handshake();
        c.wait_timeout(p, W).expect("connect");
        let p = c.queue_declare(QueueDeclare::server_named().exclusive());
        let q = c.wait_timeout(p, W).expect("declare").queue;
        let _consumer = c.basic_consume(&q);
        // The socket holds nothing now (or only the consume-ok): each of
        // these must return at once.
        let started = Instant::now();
        for _ in 0..100 {
            c.on_read();
            c.on_write();
            c.on_timer();
            c.run_any_callbacks();
        }
        let took = started.elapsed();
        tx.send(took).expect("send");
        let _ = c.close_now();
    });
    let took = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a reactor call blocked for 10 s");
    assert!(
        took < Duration::from_secs(2),
        "400 reactor calls on an idle socket took {took:?}"
    );
    worker.join().expect("worker");
}

/// Drives `c` the way examples/many_clients.rs does (a caller's
/// `mio::Poll`, `on_event`, `on_timer`, `run_any_callbacks`, and
/// `update_registration` only when `wants_registration_update`:
/// re-registering every turn would re-arm readiness and hide a missed
/// event) until `done` or `limit` passes; returns whether `done` came true.
fn drive_on_event(
    c: &mut Client,
    limit: Duration,
    mut done: impl FnMut(&mut Client) -> bool,
) -> bool {
    let mut poll = mio::Poll::new().expect("poll");
    let mut events = mio::Events::with_capacity(16);
    let token = mio::Token(7);
    c.update_registration(poll.registry(), token)
        .expect("register");
    let deadline = Instant::now() + limit;
    while !done(c) {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let mut wait = deadline - now;
        if let Some(t) = c.poll_timeout() {
            wait = wait.min(t.saturating_duration_since(now));
        }
        poll.poll(&mut events, Some(wait)).expect("poll");
        for event in events.iter() {
            c.on_event(event);
        }
        if c.poll_timeout().is_some_and(|t| Instant::now() >= t) {
            c.on_timer();
        }
        c.run_any_callbacks();
        if c.wants_registration_update() && c.update_registration(poll.registry(), token).is_err() {
            // The connection ended: its end is what `done` looks at.
            return done(c);
        }
    }
    true
}

#[test]
fn on_event_sees_an_end_of_stream_that_came_with_data() {
    // `on_event` stops reading at a read that left the socket empty (no
    // `recv` just to hear `WouldBlock`), but not when the event also says
    // the peer closed: then the data and the end of stream came in one
    // event, and no later event will report the end. Here both are in the
    // socket before the client registers it, so its first event carries
    // both.
    let mut steps = fb::handshake(2047, 131_072, 0);
    steps.extend(fb::consumer(1, "ct"));
    steps.push(Step::Sleep(Duration::from_millis(200)));
    let mut data = fb::method_bytes(1, &fb::deliver("ct", 1));
    data.extend(fb::header_frame(1, 60, 3));
    data.extend(fb::body_frame(1, b"abc"));
    steps.push(Step::Send(data));
    steps.push(Step::Close);
    let fake = FakeBroker::start(steps);
    let mut c = Client::new(&fake.url("")).expect("Client::new");
    let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen = got.clone();
    let consumer = c.basic_consume_then(puka::Consume::queue("q"), move |_, d| {
        seen.borrow_mut().push(d.map(|d| d.map(|d| d.body)));
    });
    let ready = c.consumer_ready(consumer);
    c.wait_timeout(ready, W).expect("consume-ok");
    // The delivery and the FIN arrive while nothing reads.
    thread::sleep(Duration::from_millis(800));
    let ended = drive_on_event(&mut c, Duration::from_secs(3), |c| !c.is_open());
    assert!(
        ended,
        "the end of stream that came with the delivery was never seen"
    );
    let got = got.borrow();
    assert!(
        matches!(got.first(), Some(Ok(Some(b))) if &b[..] == b"abc"),
        "the delivery before the end: {got:?}"
    );
    assert!(
        got.len() == 2 && got[1].is_err(),
        "the consumer ends with the connection, once: {got:?}"
    );
}

#[test]
fn on_event_consumer_gets_every_message_past_the_read_budget() {
    // 8 MiB of large messages and 2,000 small ones wait in the socket's
    // path before the consumer reads: `on_event` reads up to its budget
    // (about 4 MiB), `poll_timeout` then says "now", and `on_timer` reads
    // on; short reads end a turn without a spare `recv`. Nothing may be
    // lost or stall.
    common::require_broker();
    let q = common::unique("on-event");
    let mut admin = support::connect();
    support::declare(&mut admin, &q);
    let big = vec![7u8; 256 * 1024];
    let mut last = None;
    for i in 0..2032 {
        last = Some(if i % 64 == 0 {
            admin.basic_publish("", &q, &big)
        } else {
            admin.basic_publish("", &q, format!("m{i}").as_bytes())
        });
    }
    admin
        .wait_timeout(last.expect("published"), W)
        .expect("last publish");
    let mut c = support::connect();
    let count = std::rc::Rc::new(std::cell::Cell::new((0usize, 0usize)));
    let k = count.clone();
    let _consumer = c.basic_consume_then(puka::Consume::queue(&q).no_ack(), move |_, d| {
        if let Ok(Some(d)) = d {
            let (n, bytes) = k.get();
            k.set((n + 1, bytes + d.body.len()));
        }
    });
    let all = drive_on_event(&mut c, Duration::from_secs(20), |_| count.get().0 == 2032);
    let (n, bytes) = count.get();
    let small: usize = (0..2032)
        .filter(|i| i % 64 != 0)
        .map(|i| format!("m{i}").len())
        .sum();
    assert!(all, "{n} of 2032 messages arrived");
    assert_eq!(bytes, 32 * big.len() + small);
    support::delete_queue(&mut admin, &q);
    support::close(c);
    support::close(admin);
}
