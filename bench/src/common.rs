//! What every client's scenarios share: the job description, the meter
//! (wall clock and CPU), latency percentiles, and the puka "admin"
//! connection the harness uses to set queues up and check counts.

use puka::{Client, Options, QueueDeclare, QueueDelete};
use std::time::{Duration, Instant};

pub type Res<T> = Result<T, String>;

/// Turns any error into the harness's `String` error with some context.
pub trait Ctx<T> {
    fn ctx(self, what: &str) -> Res<T>;
}

impl<T, E: std::fmt::Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Res<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

impl<T> Ctx<T> for Option<T> {
    fn ctx(self, what: &str) -> Res<T> {
        self.ok_or_else(|| format!("{what}: nothing"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    /// Publish n messages without confirms; done when the queue holds n.
    Publish,
    /// Publish n messages with confirms, pipelined; done when all are acked.
    Confirm,
    /// Consume n prefilled messages, manual ack per message, prefetch 1000.
    ConsumeAck,
    /// Consume n prefilled messages with no_ack.
    ConsumeNoAck,
    /// basic.get + ack, one message at a time.
    Get,
    /// Request/reply through direct reply-to with an echo server.
    Rpc,
    /// The memory scenario: publish with confirms keeping nothing per
    /// message, then wait until the broker confirmed the last.
    ConfirmStream,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::Publish,
        Scenario::Confirm,
        Scenario::ConsumeAck,
        Scenario::ConsumeNoAck,
        Scenario::Get,
        Scenario::Rpc,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Publish => "publish",
            Scenario::Confirm => "publish_confirm",
            Scenario::ConsumeAck => "consume_ack",
            Scenario::ConsumeNoAck => "consume_noack",
            Scenario::Get => "get",
            Scenario::Rpc => "rpc",
            Scenario::ConfirmStream => "publish_confirm_stream",
        }
    }

    /// Whether the harness fills the queue with n messages before the run.
    pub fn prefilled(self) -> bool {
        matches!(
            self,
            Scenario::ConsumeAck | Scenario::ConsumeNoAck | Scenario::Get
        )
    }

    /// Whether per-operation latency is the figure that matters.
    pub fn latency(self) -> bool {
        matches!(self, Scenario::Get | Scenario::Rpc)
    }
}

/// One measured run of one client.
#[derive(Debug, Clone)]
pub struct Job {
    pub url: String,
    pub scenario: Scenario,
    /// The queue (for RPC: the request queue, served by the echo server).
    pub queue: String,
    pub n: usize,
    pub size: usize,
}

/// RPCs (and gets) done before timing starts.
pub const WARMUP: usize = 100;
pub const PREFETCH: u16 = 1000;

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub secs: f64,
    /// Client CPU seconds (user + sys) over the timed part.
    pub cpu: f64,
    /// Messages the client saw (received, confirmed, counted by the broker).
    pub count: usize,
    /// Per-operation latency in microseconds (get, rpc).
    pub lat_us: Vec<f64>,
    /// Resident set (KiB) when the meter started (after connecting).
    pub base_kib: u64,
}

/// (user, system) CPU seconds of `who`.
fn rusage_split(who: libc::c_int) -> (f64, f64) {
    // SAFETY: getrusage fills the struct we pass; a zeroed rusage is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(who, &mut ru) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

fn rusage(who: libc::c_int) -> f64 {
    let (user, system) = rusage_split(who);
    user + system
}

/// System (kernel) CPU seconds of the calling thread only.
pub fn sys_thread() -> f64 {
    rusage_split(libc::RUSAGE_THREAD).1
}

/// CPU seconds of the whole process (every thread: the peers' I/O threads
/// and runtime tasks included).
pub fn cpu_process() -> f64 {
    rusage(libc::RUSAGE_SELF)
}

/// CPU seconds of the calling thread only.
pub fn cpu_thread() -> f64 {
    rusage(libc::RUSAGE_THREAD)
}

/// Wall clock and CPU from `start` to `stop`.
pub struct Meter {
    rss0: u64,
    t0: Instant,
    c0: f64,
    thread: bool,
}

impl Meter {
    /// Process-wide CPU (the broker scenarios).
    pub fn process() -> Meter {
        Meter {
            rss0: crate::memory::rss_kib(),
            c0: cpu_process(),
            t0: Instant::now(),
            thread: false,
        }
    }

    /// This thread's CPU (the loopback scenarios, whose server thread must
    /// not count).
    pub fn thread() -> Meter {
        Meter {
            rss0: 0,
            c0: cpu_thread(),
            t0: Instant::now(),
            thread: true,
        }
    }

    pub fn start_instant(&self) -> Instant {
        self.t0
    }

    /// (seconds, cpu seconds) since the start.
    pub fn stop(&self) -> (f64, f64) {
        let secs = self.t0.elapsed().as_secs_f64();
        let c = if self.thread {
            cpu_thread()
        } else {
            cpu_process()
        };
        (secs, c - self.c0)
    }

    pub fn outcome(&self, count: usize) -> Outcome {
        let (secs, cpu) = self.stop();
        Outcome {
            secs,
            cpu,
            count,
            lat_us: Vec::new(),
            base_kib: self.rss0,
        }
    }
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

pub fn body(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// `url` with `heartbeat=0` (connections the harness leaves idle for long).
pub fn no_heartbeat(url: &str) -> String {
    if url.contains('?') {
        format!("{url}&heartbeat=0")
    } else {
        format!("{url}?heartbeat=0")
    }
}

pub fn url_parts(url: &str) -> Res<puka::ConnectionParams> {
    puka::ConnectionParams::parse(url).ctx("url")
}

/// A puka connection for setup and checks; never timed.
pub struct Admin {
    c: Client,
}

impl Admin {
    pub fn connect(url: &str) -> Res<Admin> {
        let mut c = Client::with_options(&no_heartbeat(url), Options::default()).ctx("admin")?;
        let p = c.handshake();
        c.wait_timeout(p, Duration::from_secs(10))
            .ctx("admin connect")?;
        Ok(Admin { c })
    }

    /// Deletes `name` if it exists and declares it afresh (transient).
    pub fn fresh_queue(&mut self, name: &str, max_length: Option<i64>) -> Res<()> {
        self.delete(name)?;
        let mut q = QueueDeclare::named(name);
        if let Some(m) = max_length {
            q = q.argument("x-max-length", m);
        }
        let p = self.c.queue_declare(q);
        self.c.wait(p).ctx("declare")?;
        Ok(())
    }

    pub fn delete(&mut self, name: &str) -> Res<()> {
        let p = self.c.queue_delete(QueueDelete::new(name));
        self.c.wait(p).ctx("delete")?;
        Ok(())
    }

    pub fn count(&mut self, name: &str) -> Res<u32> {
        let p = self.c.queue_declare(QueueDeclare::named(name).passive());
        Ok(self.c.wait(p).ctx("passive declare")?.message_count)
    }

    /// Waits (up to `timeout`) until the queue holds `n` ready messages.
    pub fn await_count(&mut self, name: &str, n: usize, timeout: Duration) -> Res<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.count(name)? as usize;
            if c == n {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("queue {name} holds {c} messages, expected {n}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Fills the queue with `n` messages of `size` bytes (publisher
    /// confirms on) and checks the count.
    pub fn prefill(&mut self, name: &str, n: usize, size: usize) -> Res<()> {
        let body = body(size);
        let mut last = None;
        for _ in 0..n {
            last = Some(self.c.basic_publish("", name, &body));
        }
        if let Some(p) = last {
            self.c.wait(p).ctx("prefill confirm")?;
        }
        self.await_count(name, n, Duration::from_secs(60))
    }
}
