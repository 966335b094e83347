//! Several broker addresses: a refused or blackholed address moves on to the
//! next, the per-address TCP connect timeout, the handshake timer counted
//! from the TCP connect, shuffled and in-order walks, and a user's reactor
//! that follows the socket from one address to the next.

mod common;
mod support;

use mio::{Events, Poll, Token};
use puka::codec::method::{ConnectionClose, QueueDeclareOk};
use puka::codec::Method;
use puka::UrlError;
use puka::{AddressOrder, Client, Error, Options, Promise, QueueDeclare};
use socket2::{Domain, Socket, Type};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};
use support::fake_broker::{self as fb, FakeBroker, Step};
use support::W;

/// A loopback port nothing listens on (bound, then released).
fn refused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local_addr").port()
}

/// A loopback address whose SYNs are dropped: a listener that never
/// accepts, with its accept queue (backlog 0) filled first. A connect to it
/// stays pending until its timeout. Drop it to release the port.
struct Blackhole {
    addr: SocketAddr,
    _listener: Socket,
    _fill: Vec<Socket>,
}

impl Blackhole {
    fn new() -> Blackhole {
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        listener
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .expect("bind");
        listener.listen(0).expect("listen");
        let addr = listener
            .local_addr()
            .expect("local_addr")
            .as_socket()
            .unwrap();
        // Connect until one does not complete: the queue is then full.
        let mut fill = Vec::new();
        loop {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
            match s.connect_timeout(&addr.into(), Duration::from_millis(300)) {
                Ok(()) => fill.push(s),
                Err(_) => break,
            }
            assert!(fill.len() < 64, "the accept queue never filled");
        }
        // Make sure it holds: a fresh connect times out.
        let probe = TcpStream::connect_timeout(&addr, Duration::from_millis(300));
        assert!(probe.is_err(), "the blackhole accepted a connection");
        Blackhole {
            addr,
            _listener: listener,
            _fill: fill,
        }
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }
}

/// The broker's URL, as host:port.
fn broker() -> (String, u16) {
    common::require_broker();
    common::host_port(&common::amqp_url())
}

fn in_order(connect_timeout: Duration) -> Options {
    Options::default()
        .address_order(AddressOrder::InOrder)
        .connect_timeout(connect_timeout)
}

/// Connects (waiting at most `W`) and checks the connection works.
fn connect_and_use(c: &mut Client) {
    let p = c.handshake();
    c.wait_timeout(p, W).expect("connect");
    assert!(c.is_open());
    let q = c.queue_declare(QueueDeclare::server_named().exclusive());
    c.wait_timeout(q, W).expect("queue.declare");
    let p = c.close();
    c.wait_timeout(p, W).expect("close");
}

#[test]
fn a_refused_first_address_moves_on_to_the_broker() {
    let (host, port) = broker();
    let refused = refused_port();
    let urls = [
        format!("amqp://guest:guest@127.0.0.1:{refused}/%2f"),
        common::amqp_url(),
    ];
    let mut c = Client::with_addresses(&urls, in_order(Duration::from_secs(5))).expect("client");
    connect_and_use(&mut c);
    let a = c.connected_address().expect("connected_address");
    assert_eq!((a.index, a.host.as_str(), a.port), (1, host.as_str(), port));
    assert_eq!(a.socket_addr.port(), port);

    // The same as one multi-host URL.
    let url = format!("amqp://guest:guest@127.0.0.1:{refused},{host}:{port}/%2f");
    let mut c = Client::with_options(&url, in_order(Duration::from_secs(5))).expect("client");
    connect_and_use(&mut c);
    assert_eq!(c.connected_address().map(|a| a.index), Some(1));
}

#[test]
fn a_blackholed_first_address_times_out_and_moves_on() {
    let _ = broker();
    let hole = Blackhole::new();
    let urls = [hole.url(), common::amqp_url()];
    let t0 = Instant::now();
    let mut c =
        Client::with_addresses(&urls, in_order(Duration::from_millis(500))).expect("client");
    let p = c.handshake();
    c.wait_timeout(p, W).expect("connect");
    let took = t0.elapsed();
    assert_eq!(c.connected_address().map(|a| a.index), Some(1));
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(1500),
        "connected after {took:?}, expected 0.5-1.5 s"
    );
    let p = c.close();
    c.wait_timeout(p, W).expect("close");
}

#[test]
fn one_blackholed_address_is_a_connect_timeout_after_connect_timeout() {
    let hole = Blackhole::new();
    let t0 = Instant::now();
    let mut c =
        Client::with_options(&hole.url(), in_order(Duration::from_millis(400))).expect("client");
    let p = c.handshake();
    let r = c.wait_timeout(p, W);
    let took = t0.elapsed();
    assert!(matches!(r, Err(Error::ConnectTimeout)), "got {r:?}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(1400),
        "timed out after {took:?}, expected 0.4-1.4 s"
    );
    assert!(c.connected_address().is_none());
    // The URL's connection_timeout caps the connect timeout too.
    let t0 = Instant::now();
    let url = format!("{}?connection_timeout=300", hole.url());
    let mut c = Client::with_options(&url, Options::default()).expect("client");
    let p = c.handshake();
    let r = c.wait_timeout(p, W);
    let took = t0.elapsed();
    assert!(matches!(r, Err(Error::ConnectTimeout)), "got {r:?}");
    assert!(
        took < Duration::from_millis(1300),
        "timed out after {took:?}"
    );
}

#[test]
fn the_handshake_timer_starts_at_the_tcp_connect() {
    // A blackholed address takes 600 ms; then a silent broker gets the
    // whole 800 ms handshake timeout, not what was left of it.
    let hole = Blackhole::new();
    let fake = FakeBroker::start(vec![Step::ReadHeader, Step::Sleep(Duration::from_secs(3))]);
    let urls = [
        format!("{}?connection_timeout=800", hole.url()),
        fake.url("connection_timeout=800"),
    ];
    let t0 = Instant::now();
    let mut c =
        Client::with_addresses(&urls, in_order(Duration::from_millis(600))).expect("client");
    let p = c.handshake();
    let r = c.wait_timeout(p, W);
    let took = t0.elapsed();
    assert!(matches!(r, Err(Error::ConnectTimeout)), "got {r:?}");
    assert_eq!(c.connected_address().map(|a| a.index), Some(1));
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(2400),
        "handshake timed out after {took:?}, expected 1.4-2.4 s"
    );
}

/// A user's reactor around a client whose first address is blackholed and
/// whose second is the broker: the client, its handshake promise, a `Poll`
/// and the socket the client started on.
struct ReactorOnTwoAddresses {
    _hole: Blackhole,
    c: Client,
    p: Promise<()>,
    poll: Poll,
    events: Events,
    fd_before: RawFd,
}

const TOKEN: Token = Token(7);

impl ReactorOnTwoAddresses {
    fn new() -> ReactorOnTwoAddresses {
        let _ = broker();
        let hole = Blackhole::new();
        let urls = [hole.url(), common::amqp_url()];
        let c =
            Client::with_addresses(&urls, in_order(Duration::from_millis(300))).expect("client");
        let p = c.handshake();
        let fd_before = c.fileno();
        ReactorOnTwoAddresses {
            _hole: hole,
            c,
            p,
            poll: Poll::new().expect("poll"),
            events: Events::with_capacity(8),
            fd_before,
        }
    }

    /// Waits for one readiness event or the client's next timer.
    fn poll_once(&mut self, deadline: Instant) {
        let now = Instant::now();
        assert!(now < deadline, "not open after {W:?}");
        let timeout = self
            .c
            .poll_timeout()
            .map_or(deadline - now, |t| t.saturating_duration_since(now));
        self.poll
            .poll(&mut self.events, Some(timeout))
            .expect("poll");
    }

    /// Fires the client's timer if it is due, and checks it is not closed.
    fn on_timer_if_due(&mut self) {
        if self.c.poll_timeout().is_some_and(|t| Instant::now() >= t) {
            self.c.on_timer();
        }
        assert!(
            !self.c.is_closed(),
            "closed: {:?}",
            self.c.next_connection_event()
        );
    }

    /// The client is open on a new socket, to the second address.
    fn assert_moved_on(mut self) {
        assert_ne!(
            self.c.fileno(),
            self.fd_before,
            "the socket was not replaced"
        );
        assert_eq!(self.c.connected_address().map(|a| a.index), Some(1));
        self.c.wait_timeout(self.p, W).expect("connect promise");
    }
}

#[test]
fn a_users_reactor_follows_the_socket_to_the_next_address() {
    let mut r = ReactorOnTwoAddresses::new();
    r.c.update_registration(r.poll.registry(), TOKEN)
        .expect("register");
    let deadline = Instant::now() + W;
    while !r.c.is_open() {
        r.poll_once(deadline);
        for ev in r.events.iter() {
            if ev.is_writable() {
                r.c.on_write();
            }
            if ev.is_readable() {
                r.c.on_read();
            }
        }
        r.on_timer_if_due();
        r.c.update_registration(r.poll.registry(), TOKEN)
            .expect("update_registration");
    }
    r.assert_moved_on();
}

#[test]
fn wants_registration_update_follows_the_socket_to_the_next_address() {
    // The loop of examples/many_clients.rs: `update_registration` only
    // when `wants_registration_update`. The first address never answers,
    // so both sockets are connecting (WRITABLE wanted) when the client
    // replaces the first: a loop that re-registered only when
    // `needs_write` changed would never register the second.
    let mut r = ReactorOnTwoAddresses::new();
    assert!(r.c.wants_registration_update(), "never registered");
    r.c.update_registration(r.poll.registry(), TOKEN)
        .expect("register");
    assert!(!r.c.wants_registration_update(), "registered just now");
    let mut registered_fd = r.fd_before;
    let mut updates = 0;
    let deadline = Instant::now() + W;
    while !r.c.is_open() {
        r.poll_once(deadline);
        for ev in r.events.iter() {
            r.c.on_event(ev);
        }
        r.on_timer_if_due();
        r.c.run_any_callbacks();
        if r.c.fileno() != registered_fd {
            // (The loop would otherwise only get there by timers.)
            assert!(
                r.c.wants_registration_update(),
                "the socket was replaced, yet no update is wanted"
            );
        }
        if r.c.wants_registration_update() {
            updates += 1;
            r.c.update_registration(r.poll.registry(), TOKEN)
                .expect("update_registration");
            registered_fd = r.c.fileno();
            assert!(!r.c.wants_registration_update());
        }
    }
    assert!(updates >= 1, "the new socket was registered by an update");
    r.assert_moved_on();
}

/// The addresses in the order a failed attempt tried them, from the error
/// (which names each address with its failure).
fn tried_order(urls: &[String], options: Options, ports: &[u16]) -> Vec<u16> {
    let err = match Client::with_addresses(urls, options) {
        Err(e) => e,
        Ok(mut c) => {
            let p = c.handshake();
            c.wait_timeout(p, W).expect_err("every address refuses")
        }
    };
    let Error::ConnectionBroken(e) = &err else {
        panic!("expected ConnectionBroken, got {err:?}");
    };
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    let text = e.to_string();
    let mut found: Vec<(usize, u16)> = ports
        .iter()
        .map(|&p| {
            let at = text
                .find(&format!("127.0.0.1:{p}:"))
                .unwrap_or_else(|| panic!("{p} not in {text:?}"));
            (at, p)
        })
        .collect();
    found.sort_unstable();
    found.into_iter().map(|(_, p)| p).collect()
}

#[test]
fn addresses_are_tried_shuffled_or_in_order() {
    let ports = [refused_port(), refused_port(), refused_port()];
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("amqp://127.0.0.1:{p}"))
        .collect();
    for _ in 0..10 {
        let order = tried_order(&urls, in_order(Duration::from_secs(5)), &ports);
        assert_eq!(order, ports);
    }
    let mut firsts = std::collections::HashSet::new();
    let mut orders = std::collections::HashSet::new();
    for _ in 0..60 {
        let order = tried_order(&urls, Options::default(), &ports);
        firsts.insert(order[0]);
        orders.insert(order);
    }
    assert_eq!(firsts.len(), 3, "first tried: {firsts:?}");
    assert!(orders.len() >= 4, "orders seen: {orders:?}");
}

#[test]
fn addresses_must_agree_on_all_but_host_and_port() {
    let ok = Client::with_addresses(
        &[
            "amqp://u:p@127.0.0.1:1/v?server_name_indication=a",
            "amqp://u:p@127.0.0.2:2/v",
        ],
        Options::default(),
    );
    assert!(ok.is_ok(), "{ok:?}");
    for other in ["amqp://u:x@127.0.0.2/v", "amqp://u:p@127.0.0.2/w"] {
        let r = Client::with_addresses(&["amqp://u:p@127.0.0.1:1/v", other], Options::default());
        assert!(
            matches!(r, Err(Error::Url(UrlError::InconsistentAddresses(1)))),
            "{other}: {r:?}"
        );
    }
    let none: [&str; 0] = [];
    let r = Client::with_addresses(&none, Options::default());
    assert!(matches!(r, Err(Error::Url(UrlError::NoAddress))), "{r:?}");
}

/// A fake broker that completes the handshake and then stays.
fn good_broker() -> FakeBroker {
    let mut steps = fb::handshake(2047, 131_072, 0);
    steps.push(Step::Sleep(Duration::from_secs(2)));
    FakeBroker::start(steps)
}

fn close(code: u16, text: &str) -> Step {
    Step::Method(
        0,
        Method::ConnectionClose(ConnectionClose {
            reply_code: code,
            reply_text: text.into(),
            class_id: 0,
            method_id: 0,
        }),
    )
}

/// The first connect's handshake fails at the first address in a way the
/// next might not: the client moves on within the same connect.
#[test]
fn a_failed_handshake_moves_on_to_the_next_address() {
    let mut forced = fb::until_start_ok();
    forced.extend([
        close(320, "CONNECTION_FORCED - shutdown"),
        Step::Sleep(Duration::from_millis(500)),
    ]);
    let cases: Vec<(&str, Vec<Step>)> = vec![
        ("closes", vec![Step::ReadHeader, Step::Close]),
        ("resets", vec![Step::ReadHeader, Step::Reset]),
        (
            "not AMQP",
            vec![
                Step::ReadHeader,
                Step::Send(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()),
                Step::Sleep(Duration::from_millis(500)),
            ],
        ),
        ("320 in the handshake", forced),
        (
            "silent",
            vec![Step::ReadHeader, Step::Sleep(Duration::from_secs(3))],
        ),
    ];
    for (what, steps) in cases {
        let bad = FakeBroker::start(steps);
        let good = good_broker();
        let urls = [
            bad.url("connection_timeout=400"),
            good.url("connection_timeout=400"),
        ];
        let mut c =
            Client::with_addresses(&urls, in_order(Duration::from_secs(1))).expect("client");
        let p = c.handshake();
        c.wait_timeout(p, W)
            .unwrap_or_else(|e| panic!("{what}: not connected: {e:?}"));
        assert!(c.is_open(), "{what}");
        assert_eq!(c.connected_address().map(|a| a.index), Some(1), "{what}");
        assert!(bad.record().accepted, "{what}: the first address was tried");
        drop(c);
    }
}

/// Work queued before a failed first handshake was never sent: it goes to
/// the next address with the connection, and resolves there.
#[test]
fn work_queued_before_a_failed_handshake_goes_to_the_next_address() {
    let bad = FakeBroker::start(vec![Step::ReadHeader, Step::Close]);
    let mut steps = fb::handshake(2047, 131_072, 0);
    steps.extend(fb::open_channel(1));
    steps.push(Step::Expect("queue.declare"));
    steps.push(Step::Method(
        1,
        Method::QueueDeclareOk(QueueDeclareOk {
            queue: "held".into(),
            message_count: 3,
            consumer_count: 0,
        }),
    ));
    steps.push(Step::Sleep(Duration::from_secs(2)));
    let good = FakeBroker::start(steps);
    let urls = [bad.url(""), good.url("")];
    let mut c = Client::with_addresses(&urls, in_order(Duration::from_secs(1))).expect("client");
    // Queued at once, before any handshake.
    let declared = c.queue_declare(QueueDeclare::named("held"));
    let ok = c
        .wait_timeout(declared, W)
        .expect("the declare went to the second address");
    assert_eq!((ok.queue.as_str(), ok.message_count), ("held", 3));
    assert_eq!(c.connected_address().map(|a| a.index), Some(1));
    let first = bad.record();
    assert!(first.accepted, "the first address was tried");
    assert!(
        first.frames.is_empty(),
        "nothing but the protocol header went to the first: {:?}",
        first.frames
    );
    assert!(good.record().failures.is_empty(), "{:?}", good.record());
}

/// A refused login or vhost would be refused everywhere: the connect ends
/// with it, and the next address is not tried.
#[test]
fn a_refused_login_or_vhost_does_not_move_on() {
    let mut login = fb::until_start_ok();
    login.extend([
        close(403, "ACCESS_REFUSED - Login was refused"),
        Step::Sleep(Duration::from_millis(500)),
    ]);
    let mut vhost = fb::until_open(2047, 131_072, 0);
    vhost.extend([
        close(530, "NOT_ALLOWED - vhost not found"),
        Step::Sleep(Duration::from_millis(500)),
    ]);
    for (what, steps) in [("login", login), ("vhost", vhost)] {
        let bad = FakeBroker::start(steps);
        let good = good_broker();
        let urls = [bad.url(""), good.url("")];
        let mut c =
            Client::with_addresses(&urls, in_order(Duration::from_secs(1))).expect("client");
        let p = c.handshake();
        let err = c.wait_timeout(p, W).expect_err(what);
        assert!(
            matches!(err, Error::AccessRefused(_) | Error::NotAllowed(_)),
            "{what}: {err:?}"
        );
        assert!(c.is_closed(), "{what}");
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !good.record().accepted,
            "{what}: the next address was tried"
        );
    }
}

/// When every address fails, the error names the failed handshake too.
#[test]
fn a_failed_handshake_then_a_refused_address_names_both() {
    let bad = FakeBroker::start(vec![Step::ReadHeader, Step::Close]);
    let refused = refused_port();
    let urls = [
        bad.url(""),
        format!("amqp://guest:guest@127.0.0.1:{refused}/%2f"),
    ];
    let mut c = Client::with_addresses(&urls, in_order(Duration::from_secs(1))).expect("client");
    let p = c.handshake();
    let err = c.wait_timeout(p, W).expect_err("every address fails");
    let text = err.to_string();
    assert!(text.contains("handshake:"), "{text}");
    assert!(text.contains(&refused.to_string()), "{text}");
}
