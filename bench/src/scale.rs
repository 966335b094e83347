//! Scale in one thread (issue 17): many connections in one `mio::Poll`,
//! many consumers on one connection, a large window of unconfirmed
//! publishes. Each figure runs in a fresh child process (`__scale KIND N
//! URL`), so that its resident set is its own.
//!
//! - `scale_connections`: N `Client`s, each a `mio::event::Source` under its
//!   own `Token` in the caller's `Poll` (the contract of
//!   examples/reactor.rs), each consuming its own queue with an ack per
//!   delivery; a publisher (its own connection, on another thread) trickles
//!   messages round-robin over the queues at a fixed total rate.
//! - `scale_consumers`: one connection with N consumers (one channel each),
//!   driven by `run_loop`; a publisher thread spreads messages over them.
//! - `scale_confirms`: N publishes with confirms, none awaited until the
//!   last is made (`write_high_water` raised so `basic_publish` never stops
//!   to read: all N are unconfirmed when the loop ends), then a `wait` on
//!   the last.
//!
//! CPU is `RUSAGE_THREAD` of the measured thread (the publisher threads do
//! not count).

use crate::common::*;
use crate::memory::rss_kib;
use mio::{Events, Poll, Token};
use puka::{Client, Confirms, Consume, Deadlines, Options};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The scale scenarios and their default counts.
pub const KINDS: [(&str, &[usize]); 3] = [
    // 1000 needs a broker allowed well over 1000 open files: with the
    // usual 1024 (RabbitMQ 3.10 reports 927 usable, 832 for sockets) it
    // runs out of descriptors first, and its memory monitors crash
    // (EMFILE reading /proc), which breaks every later queue.declare.
    ("connections", &[1, 10, 100, 1000]),
    ("consumers", &[1, 100, 1000, 10000]),
    ("confirms", &[1000, 100_000, 1_000_000]),
];

/// Trickle of the connections scenario: messages per second, all
/// connections together, and for how long.
pub(crate) const TRICKLE_RATE: f64 = 1000.0;
const TRICKLE_SECS: f64 = 5.0;

/// The trickle's length: [`TRICKLE_SECS`], or `PUKA_BENCH_TRICKLE_SECS`
/// (longer runs for a profiler, whose samples of the opening then count
/// for little).
pub(crate) fn trickle_secs() -> f64 {
    std::env::var("PUKA_BENCH_TRICKLE_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(TRICKLE_SECS)
}
/// Messages spread over the consumers of the consumers scenario.
const CONSUMER_MSGS: usize = 20_000;
/// Prefetch of every consumer.
const SCALE_PREFETCH: u16 = 10;
/// Queues declared for the consumers scenario at most; consumers beyond it
/// share them (consumer i takes queue i mod this). Above puka's channel
/// cap (2047), so every consumer that gets a channel has a queue of its own.
const MAX_CONSUMER_QUEUES: usize = 2200;
/// How long opening the connections may take before we count what we got.
const OPEN_DEADLINE: Duration = Duration::from_secs(40);

/// One child's figures: `key=value` pairs, in the order printed.
#[derive(Debug, Clone)]
pub struct ScaleFigure {
    pub kind: String,
    pub n: usize,
    pub fields: Vec<(String, String)>,
}

impl ScaleFigure {
    fn get(&self, k: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
}

/// Voluntary context switches of the calling thread so far (each a sleep
/// in `epoll_wait` or a blocking call that had to wait): wakeups.
pub(crate) fn wakeups() -> u64 {
    // SAFETY: getrusage fills the struct we pass; a zeroed rusage is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    ru.ru_nvcsw as u64
}

/// `wakeups_per_delivery` since `from`.
fn wakeup_field(from: u64, got: usize) -> (String, String) {
    (
        "wakeups_per_delivery".into(),
        format!("{:.3}", (wakeups() - from) as f64 / got.max(1) as f64),
    )
}

/// Raises RLIMIT_NOFILE's soft limit to its hard limit; returns the limit.
pub(crate) fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit fill and read the struct we pass.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur as u64
    }
}

fn queue_name(kind: &str, i: usize) -> String {
    format!("puka-bench-scale-{kind}-{i}")
}

/// Declares `count` fresh queues, one round trip each.
fn declare_queues(admin: &mut Admin, kind: &str, count: usize) -> Res<Vec<String>> {
    let names: Vec<String> = (0..count).map(|i| queue_name(kind, i)).collect();
    for q in &names {
        admin.fresh_queue(q, None)?;
    }
    Ok(names)
}

fn delete_queues(url: &str, names: &[String]) -> Res<()> {
    let mut admin = Admin::connect(url)?;
    for q in names {
        admin.delete(q)?;
    }
    Ok(())
}

/// A publisher on a thread of its own: it connects at once (before the
/// measured connections take the broker's sockets), then publishes
/// `total` 32-byte messages round-robin over the queues it is sent, at
/// `rate` per second (`None`: as fast as it can).
struct Publisher {
    go: std::sync::mpsc::Sender<(Vec<String>, usize, Option<f64>)>,
    done: std::thread::JoinHandle<Res<()>>,
}

impl Publisher {
    fn start(url: &str) -> Res<Publisher> {
        let (go, orders) = std::sync::mpsc::channel::<(Vec<String>, usize, Option<f64>)>();
        let (up, is_up) = std::sync::mpsc::channel::<Res<()>>();
        let url = url.to_string();
        let done = std::thread::spawn(move || {
            let connected: Res<Client> = (|| {
                let mut c = Client::with_options(&url, Options::default().confirms(Confirms::Off))
                    .ctx("publisher")?;
                let p = c.handshake();
                c.wait(p).ctx("publisher connect")?;
                Ok(c)
            })();
            let mut c = match connected {
                Ok(c) => {
                    let _ = up.send(Ok(()));
                    c
                }
                Err(e) => {
                    let _ = up.send(Err(e.clone()));
                    return Err(e);
                }
            };
            let Ok((queues, total, rate)) = orders.recv() else {
                return Ok(()); // not needed after all
            };
            let body = body(32);
            let t0 = Instant::now();
            for i in 0..total {
                if let Some(r) = rate {
                    let due = t0 + Duration::from_secs_f64(i as f64 / r);
                    let now = Instant::now();
                    if due > now {
                        // Hand what is queued to the socket before sleeping.
                        c.flush(Duration::from_secs(5)).ctx("publisher flush")?;
                        std::thread::sleep(due - now);
                    }
                }
                let _ = c.basic_publish("", &queues[i % queues.len()], &body);
            }
            c.flush(Duration::from_secs(10)).ctx("publisher flush")?;
            let p = c.close();
            c.wait(p).ctx("publisher close")
        });
        is_up
            .recv()
            .map_err(|_| "publisher thread ended".to_string())??;
        Ok(Publisher { go, done })
    }

    fn publish(&self, queues: Vec<String>, total: usize, rate: Option<f64>) {
        let _ = self.go.send((queues, total, rate));
    }

    fn join(self) -> Res<()> {
        drop(self.go);
        self.done
            .join()
            .map_err(|_| "publisher panicked".to_string())?
    }
}

/// What the connections' callbacks count.
#[derive(Default)]
struct Counts {
    connected: Cell<usize>,
    /// Connections (or consumers, at `consumer_ready`) that failed to start.
    failed: Cell<usize>,
    /// Consumers that failed after starting (deliveries that are errors).
    consumer_errors: Cell<usize>,
    ready: Cell<usize>,
    delivered: Cell<usize>,
    /// Deliveries after which `run_loop` is broken.
    target: Cell<usize>,
    closed: Cell<usize>,
    first_error: RefCell<Option<String>>,
}

impl Counts {
    fn fail(&self, what: &str, e: &puka::Error) {
        self.failed.set(self.failed.get() + 1);
        self.first_error
            .borrow_mut()
            .get_or_insert_with(|| format!("{what}: {e}"));
    }
}

/// N clients in one `mio::Poll`, driven the way examples/many_clients.rs
/// drives them: `on_event` for each of their events, `run_any_callbacks`,
/// and the registration updated when `wants_registration_update`; each client's
/// next `poll_timeout` kept in a min-heap (re-read after the client is
/// touched), so a turn costs O(events + timers due), not O(N).
pub(crate) struct Reactor {
    poll: Poll,
    events: Events,
    pub(crate) clients: Vec<Client>,
    /// `poll` calls that returned.
    pub(crate) turns: u64,
    /// Each client's next `poll_timeout`, earliest first.
    timers: Deadlines,
    /// The clients of this turn's events (kept to reuse its allocation).
    ready: Vec<usize>,
    /// Drive the clients with `on_read`/`on_write` instead of `on_event`
    /// (which knows the event, and stops at a read that emptied the
    /// socket: one `recv` fewer per wakeup).
    pub(crate) on_read: bool,
}

impl Reactor {
    /// An empty loop with room for `clients`.
    pub(crate) fn new(clients: usize) -> Res<Reactor> {
        Ok(Reactor {
            poll: Poll::new().ctx("poll")?,
            events: Events::with_capacity(1024),
            clients: Vec::with_capacity(clients),
            turns: 0,
            timers: Deadlines::new(),
            ready: Vec::new(),
            on_read: false,
        })
    }

    pub(crate) fn add(&mut self, mut c: Client) -> Res<()> {
        let i = self.clients.len();
        c.update_registration(self.poll.registry(), Token(i))
            .ctx("register")?;
        self.timers.schedule_client(i, &c);
        self.clients.push(c);
        Ok(())
    }

    pub(crate) fn touch(&mut self, i: usize) {
        let c = &mut self.clients[i];
        c.run_any_callbacks();
        if c.wants_registration_update() {
            // A failed update means the connection ended; its callbacks say so.
            let _ = c.update_registration(self.poll.registry(), Token(i));
        }
        self.timers.schedule_client(i, c);
    }

    /// One turn: waits up to `max` for events and handles them, then the
    /// timers that came due.
    fn turn(&mut self, max: Duration) -> Res<()> {
        let timeout = self.timers.timeout(Instant::now(), max);
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(format!("poll: {e}")),
        }
        self.turns += 1;
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        for e in self.events.iter() {
            let i = e.token().0;
            let c = &mut self.clients[i];
            if self.on_read {
                if e.is_writable() || e.is_error() {
                    c.on_write();
                }
                if e.is_readable() || e.is_read_closed() || e.is_error() {
                    c.on_read();
                }
            } else {
                c.on_event(e);
            }
            ready.push(i);
        }
        for &i in &ready {
            self.touch(i);
        }
        self.ready = ready;
        let now = Instant::now();
        while let Some(i) = self.timers.pop_due(now) {
            if self.clients[i].poll_timeout().is_some_and(|d| d <= now) {
                self.clients[i].on_timer();
                self.touch(i);
            } else {
                self.timers.schedule_client(i, &self.clients[i]);
            }
        }
        Ok(())
    }

    /// Turns until `done` or `deadline`; whether `done` held.
    pub(crate) fn run_until(&mut self, deadline: Instant, done: impl Fn() -> bool) -> Res<bool> {
        while !done() {
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            self.turn(deadline - now)?;
        }
        Ok(true)
    }
}

fn child_connections(url: &str, n: usize) -> Res<Vec<(String, String)>> {
    let nofile = raise_nofile();
    let mut admin = Admin::connect(url)?;
    let queues = declare_queues(&mut admin, "conn", n)?;
    drop(admin);
    let out = connections(url, &queues, nofile);
    delete_queues(url, &queues)?;
    out
}

fn connections(url: &str, queues: &[String], nofile: u64) -> Res<Vec<(String, String)>> {
    let publisher = Publisher::start(url)?;
    let counts = Rc::new(Counts::default());
    let mut r = Reactor::new(queues.len())?;
    let rss0 = rss_kib();
    let cpu0 = cpu_thread();
    let t0 = Instant::now();
    // Which clients finished their handshake and have their consumer ready.
    let ready_ids: Rc<RefCell<Vec<usize>>> = Rc::default();
    for q in queues {
        let mut c = match Client::with_options(url, Options::default()) {
            Ok(c) => c,
            Err(e) => {
                counts.fail("new", &e);
                continue;
            }
        };
        let k = counts.clone();
        let p = c.handshake();
        c.set_callback(p, move |_, res| match res {
            Ok(()) => k.connected.set(k.connected.get() + 1),
            Err(e) => k.fail("connect", &e),
        });
        let k = counts.clone();
        let consumer = c.basic_consume_then(
            Consume::queue(q).prefetch(SCALE_PREFETCH),
            move |c, d| match d {
                Ok(Some(d)) => {
                    k.delivered.set(k.delivered.get() + 1);
                    if let Err(e) = c.basic_ack(&d) {
                        k.fail("ack", &e);
                    }
                }
                // Ended by our own close.
                Ok(None) => {}
                Err(e) => {
                    if k.closed.get() == 0 {
                        k.consumer_errors.set(k.consumer_errors.get() + 1);
                        k.first_error
                            .borrow_mut()
                            .get_or_insert_with(|| format!("consumer: {e}"));
                    }
                }
            },
        );
        let k = counts.clone();
        let ids = ready_ids.clone();
        let slot = r.clients.len();
        let ready = c.consumer_ready(consumer);
        c.set_callback(ready, move |_, res| match res {
            Ok(_) => {
                k.ready.set(k.ready.get() + 1);
                ids.borrow_mut().push(slot);
            }
            Err(e) => k.fail("consume", &e),
        });
        r.add(c)?;
    }
    let made = r.clients.len();
    let k = counts.clone();
    r.run_until(Instant::now() + OPEN_DEADLINE, || {
        k.connected.get() + k.failed.get() >= made
    })?;
    let open_secs = t0.elapsed().as_secs_f64();
    let k = counts.clone();
    r.run_until(Instant::now() + OPEN_DEADLINE, || {
        k.ready.get() + k.failed.get() >= made
    })?;
    let ready_secs = t0.elapsed().as_secs_f64();
    let open_cpu = cpu_thread() - cpu0;
    // Idle for a second: whatever the handshakes left to do is done, then
    // the resident set and the idle cost.
    let settle = Instant::now() + Duration::from_millis(500);
    r.run_until(settle, || false)?;
    let rss1 = rss_kib();
    let idle_cpu0 = cpu_thread();
    let idle_t = Instant::now();
    let turns0 = r.turns;
    r.run_until(idle_t + Duration::from_secs(1), || false)?;
    let idle_cpu = cpu_thread() - idle_cpu0;
    let idle_turns = r.turns - turns0;
    let reached = counts.ready.get();

    // The trickle.
    let mut fields = vec![
        ("nofile".to_string(), nofile.to_string()),
        ("made".into(), made.to_string()),
        ("connected".into(), counts.connected.get().to_string()),
        ("reached".into(), reached.to_string()),
        ("failed".into(), counts.failed.get().to_string()),
        ("open_secs".into(), format!("{open_secs:.3}")),
        ("ready_secs".into(), format!("{ready_secs:.3}")),
        (
            "open_cpu_ms_per_conn".into(),
            format!("{:.3}", open_cpu * 1e3 / made.max(1) as f64),
        ),
        ("rss0_kib".into(), rss0.to_string()),
        ("rss_idle_kib".into(), rss1.to_string()),
        (
            "rss_kib_per_conn".into(),
            format!(
                "{:.1}",
                rss1.saturating_sub(rss0) as f64 / reached.max(1) as f64
            ),
        ),
        (
            "idle_cpu_us_per_s".into(),
            format!("{:.1}", idle_cpu * 1e6 / idle_t.elapsed().as_secs_f64()),
        ),
        ("idle_turns".into(), idle_turns.to_string()),
    ];
    if reached > 0 {
        let trickle = trickle_secs();
        let total = (TRICKLE_RATE * trickle) as usize;
        let qs: Vec<String> = ready_ids
            .borrow()
            .iter()
            .map(|&i| queues[i].clone())
            .collect();
        publisher.publish(qs, total, Some(TRICKLE_RATE));
        let sys0 = wakeups();
        let cpu0 = cpu_thread();
        let kernel0 = sys_thread();
        let t = Instant::now();
        let turns0 = r.turns;
        let k = counts.clone();
        let all = r.run_until(t + Duration::from_secs_f64(trickle + 30.0), || {
            k.delivered.get() >= total
        })?;
        let cpu = cpu_thread() - cpu0;
        let kernel = sys_thread() - kernel0;
        let secs = t.elapsed().as_secs_f64();
        let got = counts.delivered.get();
        if !all {
            return Err(format!("trickle: {got} of {total} delivered"));
        }
        fields.extend([
            ("deliveries".to_string(), got.to_string()),
            ("trickle_secs".into(), format!("{secs:.3}")),
            ("cpu_s".into(), format!("{cpu:.4}")),
            (
                "cpu_us_per_delivery".into(),
                format!("{:.2}", cpu * 1e6 / got as f64),
            ),
            (
                "sys_us_per_delivery".into(),
                format!("{:.2}", kernel * 1e6 / got as f64),
            ),
            (
                "turns_per_delivery".into(),
                format!("{:.3}", (r.turns - turns0) as f64 / got as f64),
            ),
        ]);
        fields.push(wakeup_field(sys0, got));
    }
    if let Some(e) = counts.first_error.borrow().as_ref() {
        fields.push(("first_error".into(), format!("{e:?}")));
    }
    // Close them all from the loop, then clean up.
    counts.closed.set(1);
    let closing = Rc::new(Cell::new(0usize));
    for c in r.clients.iter_mut() {
        let p = c.close();
        let k = closing.clone();
        c.set_callback(p, move |_, _| k.set(k.get() + 1));
    }
    for i in 0..r.clients.len() {
        r.touch(i);
    }
    let k = closing.clone();
    let total = r.clients.len();
    r.run_until(Instant::now() + Duration::from_secs(20), || {
        k.get() >= total
    })?;
    fields.push(("closed".into(), k.get().to_string()));
    for mut c in r.clients.drain(..) {
        let _ = r.poll.registry().deregister(&mut c);
    }
    publisher.join()?;
    Ok(fields)
}

fn child_consumers(url: &str, n: usize) -> Res<Vec<(String, String)>> {
    let mut admin = Admin::connect(url)?;
    let queues = declare_queues(&mut admin, "cons", n.min(MAX_CONSUMER_QUEUES))?;
    drop(admin);
    let out = consumers(url, &queues, n);
    delete_queues(url, &queues)?;
    out
}

fn consumers(url: &str, queues: &[String], n: usize) -> Res<Vec<(String, String)>> {
    let publisher = Publisher::start(url)?;
    let mut c = Client::with_options(url, Options::default()).ctx("new")?;
    let p = c.handshake();
    c.wait(p).ctx("connect")?;
    let channel_max = c.tuned().channel_max;
    let counts = Rc::new(Counts::default());
    let rss0 = rss_kib();
    let cpu0 = cpu_thread();
    let t0 = Instant::now();
    let mut readies = Vec::with_capacity(n);
    for i in 0..n {
        let k = counts.clone();
        let consumer = c.basic_consume_then(
            Consume::queue(&queues[i % queues.len()]).prefetch(SCALE_PREFETCH),
            move |c, d| match d {
                Ok(Some(d)) => {
                    k.delivered.set(k.delivered.get() + 1);
                    if let Err(e) = c.basic_ack(&d) {
                        k.fail("ack", &e);
                    }
                    if k.delivered.get() >= k.target.get() {
                        c.loop_break();
                    }
                }
                // Ended by our own close.
                Ok(None) => {}
                Err(e) => {
                    if k.closed.get() == 0 {
                        k.consumer_errors.set(k.consumer_errors.get() + 1);
                        k.first_error
                            .borrow_mut()
                            .get_or_insert_with(|| format!("consumer: {e}"));
                    }
                }
            },
        );
        let k = counts.clone();
        let status: Rc<Cell<Option<bool>>> = Rc::default();
        let st = status.clone();
        let ready = c.consumer_ready(consumer);
        c.set_callback(ready, move |_, res| match res {
            Ok(_) => {
                st.set(Some(true));
                k.ready.set(k.ready.get() + 1);
            }
            Err(e) => {
                st.set(Some(false));
                k.fail("consume", &e);
            }
        });
        readies.push((i, status));
    }
    // Run until every consumer is ready or failed.
    counts.target.set(usize::MAX);
    let deadline = Instant::now() + Duration::from_secs(120);
    while counts.ready.get() + counts.failed.get() < n && Instant::now() < deadline {
        c.run_loop(Some(Duration::from_millis(10)))
            .ctx("run_loop")?;
    }
    let start_secs = t0.elapsed().as_secs_f64();
    let start_cpu = cpu_thread() - cpu0;
    let rss1 = rss_kib();
    let ok = counts.ready.get();
    let ok_queues: Vec<String> = readies
        .iter()
        .filter(|(_, r)| r.get() == Some(true))
        .map(|&(i, _)| queues[i % queues.len()].clone())
        .collect();
    let mut fields = vec![
        ("channel_max".to_string(), channel_max.to_string()),
        ("queues".into(), queues.len().to_string()),
        ("ready".into(), ok.to_string()),
        ("failed".into(), counts.failed.get().to_string()),
        (
            "consumer_errors".into(),
            counts.consumer_errors.get().to_string(),
        ),
        ("open_channels".into(), c.channel_count().to_string()),
        ("start_secs".into(), format!("{start_secs:.3}")),
        (
            "start_cpu_us_per_consumer".into(),
            format!("{:.1}", start_cpu * 1e6 / n as f64),
        ),
        (
            "rss_kib_per_consumer".into(),
            format!("{:.2}", rss1.saturating_sub(rss0) as f64 / ok.max(1) as f64),
        ),
    ];
    if ok > 0 {
        let total = CONSUMER_MSGS;
        counts.target.set(total);
        publisher.publish(ok_queues, total, None);
        let sys0 = wakeups();
        let cpu0 = cpu_thread();
        let t = Instant::now();
        let deadline = t + Duration::from_secs(120);
        while counts.delivered.get() < total && Instant::now() < deadline {
            c.run_loop(Some(Duration::from_millis(100)))
                .ctx("run_loop")?;
        }
        c.flush(Duration::from_secs(5)).ctx("flush")?;
        let cpu = cpu_thread() - cpu0;
        let secs = t.elapsed().as_secs_f64();
        let got = counts.delivered.get();
        if got < total {
            return Err(format!("{got} of {total} delivered"));
        }
        fields.extend([
            ("deliveries".to_string(), got.to_string()),
            ("secs".into(), format!("{secs:.3}")),
            ("msgs_per_s".into(), format!("{:.0}", got as f64 / secs)),
            ("cpu_s".into(), format!("{cpu:.4}")),
            (
                "cpu_us_per_delivery".into(),
                format!("{:.2}", cpu * 1e6 / got as f64),
            ),
        ]);
        fields.push(wakeup_field(sys0, got));
    }
    // Last: it may hold spaces.
    if let Some(e) = counts.first_error.borrow().as_ref() {
        fields.push(("first_error".into(), format!("{e:?}")));
    }
    counts.closed.set(1);
    let p = c.close();
    c.wait_timeout(p, Duration::from_secs(30)).ctx("close")?;
    publisher.join()?;
    Ok(fields)
}

fn child_confirms(url: &str, n: usize) -> Res<Vec<(String, String)>> {
    let queue = "puka-bench-scale-confirms";
    let mut admin = Admin::connect(url)?;
    admin.fresh_queue(queue, Some(100_000))?;
    let mut c = Client::with_options(
        url,
        // Never stop to drain (and read confirms) inside basic_publish:
        // all N are unconfirmed when the loop ends.
        Options::default()
            .confirms(Confirms::On)
            .write_high_water(usize::MAX / 2),
    )
    .ctx("new")?;
    let p = c.handshake();
    c.wait(p).ctx("connect")?;
    let body = body(32);
    let rss0 = rss_kib();
    let cpu0 = cpu_thread();
    let t0 = Instant::now();
    let mut last = None;
    for _ in 0..n {
        last = Some(c.basic_publish("", queue, &body));
    }
    let pub_cpu = cpu_thread() - cpu0;
    let pub_secs = t0.elapsed().as_secs_f64();
    let rss1 = rss_kib();
    // `Debug` shows the promises held: publishes in flight plus a few.
    let dbg = format!("{c:?}");
    let held: usize = dbg
        .split("promises: ")
        .nth(1)
        .and_then(|s| s.split(|ch: char| !ch.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let sys1 = wakeups();
    let cpu1 = cpu_thread();
    let t1 = Instant::now();
    if let Some(p) = last {
        c.wait_timeout(p, Duration::from_secs(300))
            .ctx("last confirm")?;
    }
    let wait_cpu = cpu_thread() - cpu1;
    let wait_secs = t1.elapsed().as_secs_f64();
    let (_, wakes) = wakeup_field(sys1, n);
    let peak = crate::memory::peak_kib();
    let p = c.close();
    c.wait_timeout(p, Duration::from_secs(30)).ctx("close")?;
    admin.delete(queue)?;
    let per = |kib: u64| format!("{:.1}", kib as f64 * 1024.0 / n as f64);
    Ok(vec![
        ("in_flight".to_string(), held.to_string()),
        ("publish_secs".into(), format!("{pub_secs:.3}")),
        (
            "publish_cpu_us".into(),
            format!("{:.3}", pub_cpu * 1e6 / n as f64),
        ),
        ("wait_secs".into(), format!("{wait_secs:.3}")),
        ("wait_wakeups_per_confirm".into(), wakes),
        (
            "confirm_cpu_us".into(),
            format!("{:.3}", wait_cpu * 1e6 / n as f64),
        ),
        (
            "total_cpu_us".into(),
            format!("{:.3}", (pub_cpu + wait_cpu) * 1e6 / n as f64),
        ),
        ("rss0_kib".into(), rss0.to_string()),
        ("rss_in_flight_kib".into(), rss1.to_string()),
        (
            "bytes_per_unconfirmed".into(),
            per(rss1.saturating_sub(rss0)),
        ),
        ("peak_kib".into(), peak.to_string()),
        (
            "peak_bytes_per_publish".into(),
            per(peak.saturating_sub(rss0)),
        ),
    ])
}

/// The child: `__scale KIND N URL`.
pub fn child(args: &[String]) -> i32 {
    let go = || -> Res<Vec<(String, String)>> {
        let [kind, n, url] = args else {
            return Err("usage: __scale KIND N URL".into());
        };
        let n: usize = n.parse().ctx("n")?;
        match kind.as_str() {
            "connections" => child_connections(url, n),
            "consumers" => child_consumers(url, n),
            "confirms" => child_confirms(url, n),
            _ => Err(format!("unknown kind {kind}")),
        }
    };
    match go() {
        Ok(fields) => {
            let line: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("scale {}", line.join(" "));
            0
        }
        Err(e) => {
            eprintln!("scale child: {e}");
            1
        }
    }
}

fn spawn(kind: &str, n: usize, url: &str) -> Res<Vec<(String, String)>> {
    let exe = std::env::current_exe().ctx("current_exe")?;
    let out = Command::new(exe)
        .args(["__scale", kind, &n.to_string(), url])
        .output()
        .ctx("spawn child")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "child failed ({}): {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("scale "))
        .ctx("child output")?;
    // `first_error` is a quoted string that may hold spaces.
    let (plain, err) = match line.find(" first_error=\"") {
        Some(i) => {
            let rest = &line[i + " first_error=".len()..];
            let end = rest.find("\" ").map_or(rest.len(), |j| j + 1);
            (
                format!("{}{}", &line[..i], &rest[end..]),
                Some(rest[..end].to_string()),
            )
        }
        None => (line.to_string(), None),
    };
    let mut fields: Vec<(String, String)> = plain
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(e) = err {
        fields.push(("first_error".into(), e));
    }
    Ok(fields)
}

/// Runs the wanted kinds (`kinds`: "connections", "consumers",
/// "confirms") at `counts` (or each kind's defaults), one child per figure.
pub fn run_all(
    url: &str,
    kinds: &[&str],
    counts: &[usize],
    failures: &mut Vec<String>,
) -> Vec<ScaleFigure> {
    let mut figs = Vec::new();
    for (kind, defaults) in KINDS {
        if !kinds.contains(&kind) {
            continue;
        }
        let ns = if counts.is_empty() { defaults } else { counts };
        for &n in ns {
            match spawn(kind, n, url) {
                Ok(fields) => {
                    let f = ScaleFigure {
                        kind: kind.to_string(),
                        n,
                        fields,
                    };
                    let line: Vec<String> =
                        f.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    println!("result scenario=scale_{kind} n={n} {}", line.join(" "));
                    figs.push(f);
                }
                Err(e) => {
                    let msg = format!("scale_{kind} n={n}: {e}");
                    println!("error {msg}");
                    failures.push(msg);
                }
            }
        }
    }
    figs
}

/// Markdown tables of the scale figures, one per kind.
pub fn summary(figs: &[ScaleFigure]) {
    let mut by_kind: BTreeMap<&str, Vec<&ScaleFigure>> = BTreeMap::new();
    for f in figs {
        by_kind.entry(f.kind.as_str()).or_default().push(f);
    }
    let cell = |f: &ScaleFigure, k: &str| f.get(k).unwrap_or("–").to_string();
    let table = |title: &str, cols: &[(&str, &str)], rows: &[&ScaleFigure]| {
        println!();
        println!("## {title}");
        println!();
        let head: Vec<&str> = cols.iter().map(|c| c.0).collect();
        println!("| N | {} |", head.join(" | "));
        println!("| --- |{}", " --- |".repeat(cols.len()));
        for f in rows {
            let vals: Vec<String> = cols.iter().map(|c| cell(f, c.1)).collect();
            println!("| {} | {} |", f.n, vals.join(" | "));
        }
    };
    if let Some(rows) = by_kind.get("connections") {
        table(
            "N connections in one thread, one mio::Poll (client thread CPU)",
            &[
                ("reached", "reached"),
                ("open N (s)", "open_secs"),
                ("+ consumers ready (s)", "ready_secs"),
                ("RSS KiB / idle conn", "rss_kib_per_conn"),
                ("idle CPU µs/s", "idle_cpu_us_per_s"),
                ("deliveries", "deliveries"),
                ("CPU µs / delivery", "cpu_us_per_delivery"),
                ("of which kernel", "sys_us_per_delivery"),
                ("polls / delivery", "turns_per_delivery"),
                ("wakeups / delivery", "wakeups_per_delivery"),
            ],
            rows,
        );
    }
    if let Some(rows) = by_kind.get("consumers") {
        table(
            "N consumers on one connection (client thread CPU)",
            &[
                ("ready", "ready"),
                ("failed", "failed"),
                ("open channels", "open_channels"),
                ("start (s)", "start_secs"),
                ("start CPU µs / consumer", "start_cpu_us_per_consumer"),
                ("RSS KiB / consumer", "rss_kib_per_consumer"),
                ("msgs/s", "msgs_per_s"),
                ("CPU µs / delivery", "cpu_us_per_delivery"),
                ("wakeups / delivery", "wakeups_per_delivery"),
            ],
            rows,
        );
    }
    if let Some(rows) = by_kind.get("confirms") {
        table(
            "N unconfirmed publishes in flight, 32 B (client thread CPU)",
            &[
                ("in flight", "in_flight"),
                ("publish CPU µs", "publish_cpu_us"),
                ("CPU µs / confirm", "confirm_cpu_us"),
                ("B / unconfirmed (RSS Δ)", "bytes_per_unconfirmed"),
                ("peak B / publish", "peak_bytes_per_publish"),
                ("publish (s)", "publish_secs"),
                ("wait (s)", "wait_secs"),
                ("wakeups / confirm", "wait_wakeups_per_confirm"),
            ],
            rows,
        );
    }
}
