//! Network faults between the client and a real broker, injected by the
//! TCP proxy of `support::proxy`: a silent network (heartbeat timeout),
//! connections cut at every interesting byte of a large delivery, a small
//! `frame_max` with bodies around its boundaries, a slow link, and resets.

mod common;
mod support;

use puka::{Client, ConnectionEvent, Delivery, Error, Options, QueueDeclare};
use std::io::ErrorKind;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use support::proxy::{Dir, FrameRec, Mode, Proxy};
use support::{connect, declare, publish, Cleanup, W};

/// Deterministic bytes that differ at every offset a frame could start at.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Asserts `got` is byte-exact `want` without printing megabytes.
fn assert_same_body(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: body length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: bodies differ first at byte {i}");
    }
}

/// Taken first by every test of this file: they share the broker, and the
/// 100 MiB round trip of `frame_max_4096_round_trips_bodies_around_the_boundary`
/// (and the 1 MiB cut sweep) can stall it for seconds on a loaded machine —
/// longer than the 4 s heartbeat window of the blackhole test or the bounded
/// waits of the others. One at a time, as in tests/hostile.rs.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Connects through `proxy` with `query` and `options`.
fn connect_via(proxy: &Proxy, query: &str, options: Options) -> Client {
    let mut c = Client::with_options(&proxy.url(query), options).expect("Client::with_options");
    let p = c.handshake();
    c.wait_timeout(p, W).expect("connect through the proxy");
    c
}

/// The error of a connection that ended, from its Closed event.
fn closed_event(c: &mut Client) -> Option<Error> {
    while let Some(ev) = c.next_connection_event() {
        if let ConnectionEvent::Closed(e) = ev {
            return Some(e);
        }
    }
    None
}

// ----------------------------------------------------------------------
// (a) A network that goes silent.

#[test]
fn blackhole_is_detected_by_heartbeats() {
    let _s = serial();
    common::require_broker();
    let q = common::unique("faults-blackhole");
    let _g = Cleanup::new().queue(&q);
    let proxy = Proxy::start();
    let mut c = connect_via(&proxy, "heartbeat=2", Options::default());
    assert_eq!(c.tuned().heartbeat, 2);
    declare(&mut c, &q);

    // Heartbeats both ways keep an idle connection alive past 2T.
    c.run_loop(Some(Duration::from_millis(4500)))
        .expect("run_loop");
    assert!(c.is_open(), "an idle connection with heartbeats died");
    let p = c.queue_declare(QueueDeclare::named(&q).passive());
    c.wait_timeout(p, W).expect("declare after 4.5 s idle");

    proxy.set_mode(Mode::Blackhole);
    let blackhole = Instant::now();
    let p = c.queue_declare(QueueDeclare::named(&q).passive());
    let r = c.wait_timeout(p, Duration::from_secs(10));
    let failed = Instant::now();
    match r {
        Err(Error::HeartbeatTimeout(d)) => assert_eq!(d, Duration::from_secs(4)),
        other => panic!("expected HeartbeatTimeout, got {other:?}"),
    }
    let since_blackhole = failed - blackhole;
    let last_in = proxy.last_to_client().expect("the broker sent bytes");
    let since_last_byte = failed.saturating_duration_since(last_in);
    eprintln!("heartbeat timeout {since_blackhole:?} after the blackhole, {since_last_byte:?} after the last inbound byte");
    assert!(
        since_blackhole >= Duration::from_millis(1500)
            && since_blackhole <= Duration::from_millis(4500),
        "declared dead {since_blackhole:?} after the blackhole started (1.5-4.5 s)"
    );
    assert!(
        since_last_byte >= Duration::from_secs(2) && since_last_byte <= Duration::from_millis(4500),
        "declared dead {since_last_byte:?} after the last inbound byte (T=2 s .. 2T+0.5 s)"
    );
    assert!(c.is_closed());
    assert!(
        matches!(closed_event(&mut c), Some(Error::HeartbeatTimeout(_))),
        "the Closed event does not carry the heartbeat timeout"
    );
    // Later operations fail at once with the same error.
    let p = c.queue_declare(QueueDeclare::named(&q).passive());
    assert!(matches!(
        c.wait_timeout(p, W),
        Err(Error::HeartbeatTimeout(_))
    ));
}

// ----------------------------------------------------------------------
// (b) Cut at every interesting byte of a 1 MiB delivery.

/// The offsets (in the server → client stream of one connection) of a
/// delivery's frames: the `basic.deliver` method, the content header, the
/// body frames, and the end of the last one.
#[derive(Debug)]
struct Layout {
    deliver: FrameRec,
    header: FrameRec,
    bodies: Vec<FrameRec>,
}

impl Layout {
    fn of(frames: &[FrameRec]) -> Layout {
        let i = frames
            .iter()
            .position(|f| f.kind == 1 && f.method == (60, 60))
            .expect("a basic.deliver in the dry run");
        let deliver = frames[i];
        let header = frames[i + 1];
        assert_eq!(header.kind, 2, "content header after basic.deliver");
        let bodies: Vec<FrameRec> = frames[i + 2..]
            .iter()
            .take_while(|f| f.kind == 3 && f.channel == deliver.channel)
            .copied()
            .collect();
        Layout {
            deliver,
            header,
            bodies,
        }
    }

    fn end(&self) -> u64 {
        self.bodies.last().map_or(self.header.end(), FrameRec::end)
    }

    /// The cut points: each frame boundary, one byte either side, inside
    /// frame headers, in the middle of a body frame, and the very end.
    fn cuts(&self) -> Vec<u64> {
        let d = self.deliver.offset;
        let h = self.header.offset;
        let b1 = self.bodies[0].offset;
        let b2 = self.bodies[1].offset;
        let last = self.bodies.last().expect("bodies").offset;
        let e = self.end();
        let mut k = vec![
            d,
            d + 1,
            d + 7,
            h - 1,
            h,
            h + 1,
            b1 - 1,
            b1,
            b1 + 7,
            b1 + 8,
            b1 + 65_536,
            b2 - 1,
            b2,
            b2 + 1,
            last,
            e - 2,
            e - 1,
            e,
        ];
        k.sort_unstable();
        k.dedup();
        k
    }
}

/// The socket a client uses: its fd and what /proc says it is.
fn socket_of(c: &Client) -> (i32, String) {
    let fd = c.fileno();
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    (fd, link)
}

fn still_open(fd: i32, link: &str) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok_and(|p| p.to_string_lossy() == link)
}

#[test]
fn cut_at_every_frame_boundary_of_a_large_delivery() {
    let _s = serial();
    common::require_broker();
    let q = common::unique("faults-cut");
    let _g = Cleanup::new().queue(&q);
    let body = pattern(1 << 20, 7);
    let mut direct = connect();
    declare(&mut direct, &q);
    publish(&mut direct, &q, &body);

    let proxy = Proxy::with_lifetime(Duration::from_secs(240));
    let query = "heartbeat=0&frame_max=131072";

    // Dry run: the whole delivery, to learn where its frames are.
    let conn = proxy.accepted();
    let mut c = connect_via(&proxy, query, Options::default());
    let consumer = c.basic_consume(&q);
    let d = c
        .wait_timeout(consumer, W)
        .expect("dry run delivery")
        .expect("not ended");
    assert_same_body(&d.body, &body, "dry run");
    drop(d);
    let p = c.close();
    c.wait_timeout(p, W).expect("close");
    drop(c);
    assert!(proxy.wait_idle(W));
    let dry = proxy.frames_of(conn, Dir::ToClient);
    let layout = Layout::of(&dry);
    assert_eq!(layout.bodies.len(), (1usize << 20).div_ceil(131_072 - 8));
    assert!(layout.bodies.iter().all(|f| f.total() <= 131_072));
    let end = layout.end();
    let cuts = layout.cuts();
    eprintln!(
        "delivery: deliver at {}, header at {}, {} body frames from {} to {end}; cuts {cuts:?}",
        layout.deliver.offset,
        layout.header.offset,
        layout.bodies.len(),
        layout.bodies[0].offset
    );

    // Warm-up done (lazy statics, thread pools of other tests aside):
    // count fds now.
    let fds_before = common::open_fds().len();
    let mut runs = 0;
    for &k in &cuts {
        for reset in [false, true] {
            let what = format!(
                "cut after {k} bytes ({} into the delivery of {} bytes) with {}",
                k as i64 - layout.deliver.offset as i64,
                end - layout.deliver.offset,
                if reset { "RST" } else { "FIN" }
            );
            proxy.set_mode(Mode::CutAfter { bytes: k, reset });
            let conn = proxy.accepted();
            let mut c = connect_via(&proxy, query, Options::default());
            let (fd, link) = socket_of(&c);
            let consumer = c.basic_consume(&q);
            let mut delivered: Option<Delivery> = None;
            let err = match c.wait_timeout(consumer, W) {
                Ok(Some(d)) => {
                    delivered = Some(d);
                    c.wait_timeout(consumer, W)
                        .expect_err("a second delivery of one message")
                }
                Ok(None) => panic!("{what}: the consumer ended as if cancelled"),
                Err(e) => e,
            };
            match (&err, reset) {
                (Error::ConnectionBroken(e), false) => {
                    assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "{what}: {e}")
                }
                (Error::ConnectionBroken(e), true) => assert!(
                    matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
                    ),
                    "{what}: {e}"
                ),
                (e, _) => panic!("{what}: expected ConnectionBroken, got {e:?}"),
            }
            match &delivered {
                Some(d) => {
                    assert!(
                        k >= end,
                        "{what}: a delivery reached the user though it was cut"
                    );
                    assert_same_body(&d.body, &body, &what);
                }
                None => assert!(
                    reset || k < end,
                    "{what}: the whole delivery was sent, then FIN, but it was lost"
                ),
            }
            assert!(c.is_closed(), "{what}: client not closed");
            eprintln!("{what}: delivered {}, {err}", delivered.is_some());
            drop(delivered);
            drop(c);
            assert!(
                !still_open(fd, &link),
                "{what}: the client's socket fd {fd} ({link}) is still open after drop"
            );
            assert!(proxy.wait_idle(W), "{what}: proxy connection still open");
            // The frames forwarded were those of the dry run.
            let seen = proxy.frames_of(conn, Dir::ToClient);
            for f in &seen {
                assert!(
                    dry.iter().any(|g| (g.offset, g.kind, g.channel, g.size)
                        == (f.offset, f.kind, f.channel, f.size)),
                    "{what}: frame {f:?} differs from the dry run; the cut points are off"
                );
            }
            runs += 1;
        }
    }
    assert!(proxy.problems().is_empty(), "{:?}", proxy.problems());
    drop(proxy);
    // Other tests of this binary run meanwhile and open sockets of their
    // own: allow for them, but not for one leaked fd per run.
    let slack = 12;
    let mut fds_after = common::open_fds().len();
    let settle = Instant::now() + Duration::from_secs(3);
    while fds_after > fds_before + slack && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(50));
        fds_after = common::open_fds().len();
    }
    assert!(
        fds_after <= fds_before + slack,
        "{runs} cut connections: open fds went from {fds_before} to {fds_after}"
    );

    // The message survived every cut. The broker requeues it when it
    // notices that the last cut connection is gone, which it does
    // asynchronously (after the proxy has closed its side): poll for it.
    let deadline = Instant::now() + W;
    let d = loop {
        let p = direct.basic_get(&q);
        if let Some(d) = direct.wait_timeout(p, W).expect("basic_get") {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "the message is not back in the queue {W:?} after the last cut"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_same_body(&d.body, &body, "after the sweep");
    direct.basic_ack(&d).expect("ack");
    support::close(direct);
}

// ----------------------------------------------------------------------
// (c) frame_max 4096 and bodies around its boundaries.

#[test]
fn frame_max_4096_round_trips_bodies_around_the_boundary() {
    let _s = serial();
    common::require_broker();
    let q = common::unique("faults-fm4096");
    let _g = Cleanup::new().queue(&q);
    let limit = Duration::from_secs(120);
    let proxy = Proxy::with_lifetime(Duration::from_secs(300));
    let options = Options::default().max_message_size(128 << 20);
    let mut c = connect_via(&proxy, "frame_max=4096", options);
    assert_eq!(c.tuned().frame_max, 4096);
    declare(&mut c, &q);
    for (i, size) in [0usize, 1, 4087, 4088, 4089, 1 << 20, 100 << 20]
        .into_iter()
        .enumerate()
    {
        let what = format!("body of {size} bytes");
        let body = pattern(size, i as u64 + 1);
        let t0 = Instant::now();
        let p = c.basic_publish("", &q, &body);
        c.wait_timeout(p, limit)
            .unwrap_or_else(|e| panic!("{what}: publish: {e:?}"));
        let p = c.basic_get(&q);
        let d = c
            .wait_timeout(p, limit)
            .unwrap_or_else(|e| panic!("{what}: get: {e:?}"))
            .unwrap_or_else(|| panic!("{what}: queue empty"));
        assert_same_body(&d.body, &body, &what);
        c.basic_ack(&d).expect("ack");
        eprintln!("{what}: round trip in {:?}", t0.elapsed());
    }
    support::close(c);
    assert!(proxy.wait_idle(W));
    let sent = proxy.client_frames();
    assert!(sent.len() > (100 << 20) / 4088, "{} frames", sent.len());
    let over: Vec<_> = sent.iter().filter(|f| f.total() > 4096).collect();
    assert!(
        over.is_empty(),
        "client frames over frame_max 4096: {:?}",
        &over[..over.len().min(5)]
    );
    assert!(
        sent.iter().all(|f| f.end_ok),
        "a client frame end was not 0xCE"
    );
    assert_eq!(
        sent.iter().map(FrameRec::total).max(),
        Some(4096),
        "no client frame used the whole frame_max (4088-byte body)"
    );
    let received = proxy.frames();
    assert!(received
        .iter()
        .filter(|f| f.dir == Dir::ToClient)
        .all(|f| f.total() <= 4096));
    assert!(proxy.problems().is_empty(), "{:?}", proxy.problems());
}

// ----------------------------------------------------------------------
// (d) A slow link.

#[test]
fn throttled_link_still_delivers_a_large_message() {
    let _s = serial();
    common::require_broker();
    let q = common::unique("faults-throttle");
    let _g = Cleanup::new().queue(&q);
    let body = pattern(2 << 20, 3);
    let mut direct = connect();
    declare(&mut direct, &q);
    publish(&mut direct, &q, &body);

    let proxy = Proxy::start();
    let mut c = connect_via(&proxy, "", Options::default());
    proxy.set_mode(Mode::Throttle(1_000_000));
    let t0 = Instant::now();
    let consumer = c.basic_consume(&q);
    let d = c
        .wait_timeout(consumer, Duration::from_secs(30))
        .expect("delivery over a 1 MB/s link")
        .expect("not ended");
    let took = t0.elapsed();
    eprintln!("2 MiB at 1 MB/s: {took:?}");
    assert_same_body(&d.body, &body, "throttled");
    assert!(
        took >= Duration::from_millis(1500),
        "2 MiB at 1 MB/s took only {took:?}: the throttle did not work"
    );
    c.basic_ack(&d).expect("ack");
    proxy.set_mode(Mode::Pass);
    support::close(c);
    support::close(direct);
}

// ----------------------------------------------------------------------
// (e) Resets and half-closes of an open connection.

#[test]
fn reset_and_half_close_fail_pending_operations() {
    let _s = serial();
    common::require_broker();
    let q = common::unique("faults-reset");
    let _g = Cleanup::new().queue(&q);
    for (mode, kind) in [
        (Mode::Reset, ErrorKind::ConnectionReset),
        (Mode::HalfClose, ErrorKind::UnexpectedEof),
    ] {
        let proxy = Proxy::start();
        let mut c = connect_via(&proxy, "", Options::default());
        declare(&mut c, &q);
        let consumer = c.basic_consume(&q);
        let p = c.queue_declare(QueueDeclare::named(&q).passive());
        c.wait_timeout(p, W).expect("declare");
        proxy.set_mode(mode);
        let p = c.queue_declare(QueueDeclare::named(&q).passive());
        let t0 = Instant::now();
        match c.wait_timeout(p, W) {
            Err(Error::ConnectionBroken(e)) => assert_eq!(e.kind(), kind, "{mode:?}: {e}"),
            other => panic!("{mode:?}: expected ConnectionBroken, got {other:?}"),
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "{mode:?}: slow");
        assert!(matches!(
            c.wait_timeout(consumer, W),
            Err(Error::ConnectionBroken(_))
        ));
        assert!(c.is_closed());
        drop(c);
        assert!(proxy.wait_idle(W), "{mode:?}: proxy connection still open");
    }
}
