//! A scripted fake broker: one TCP connection on `127.0.0.1:<ephemeral>`,
//! served by one thread that runs a list of [`Step`]s and records everything
//! the client sends, decoded with `puka::codec`.
//!
//! After the script it keeps reading and recording (and answers a client's
//! `connection.close` with `close-ok`, unless told not to) until the client
//! closes its side, the linger time passes, or the handle is dropped. The
//! thread also stops by itself at the end of its lifetime (20 s), so a test
//! can never hang on it.
//!
//! ```ignore
//! let mut steps = fake_broker::handshake(2047, 131072, 0);
//! steps.push(Step::Send(raw_frame(9, 0, b"")));
//! let fb = FakeBroker::start(steps);
//! let mut c = Client::new(&fb.url("")).unwrap();
//! ```
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use puka::codec::frame::{self, Frame};
use puka::codec::method::{
    BasicConsumeOk, BasicDeliver, ChannelOpenOk, ConnectionClose, ConnectionCloseOk,
    ConnectionOpenOk, ConnectionStart, ConnectionTune, ConnectionTuneOk,
};
use puka::codec::{BasicProperties, CodecError, FieldTable, FieldValue, Method};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// One action of the fake broker's script.
#[derive(Debug, Clone)]
pub enum Step {
    /// Wait (up to 3 s) until the client's 8-byte protocol header is in.
    ReadHeader,
    /// Send these bytes as they are.
    Send(Vec<u8>),
    /// Send a method frame on a channel.
    Method(u16, Method),
    /// Wait (up to 3 s) for the client's next method frame, which must be
    /// the named one (`"channel.open"`); other frame types are skipped.
    /// A mismatch is recorded in [`Record::failures`] and ends the script.
    Expect(&'static str),
    /// Keep reading (and recording) for this long.
    Sleep(Duration),
    /// Shut down the write side (FIN); reading and recording go on.
    Close,
    /// Abort the connection (RST) and stop.
    Reset,
}

/// Everything the fake broker saw.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// Whether a client connected.
    pub accepted: bool,
    /// The client's first 8 bytes (its protocol header).
    pub header: Vec<u8>,
    /// The client's frames, decoded, in order.
    pub frames: Vec<Frame>,
    /// When each of `frames` was decoded (they arrive at most a few
    /// milliseconds earlier).
    pub frame_times: Vec<Instant>,
    /// The client's bytes could not be decoded (after `frames`).
    pub decode_error: Option<CodecError>,
    /// Script steps that did not go as written.
    pub failures: Vec<String>,
    /// The client closed its side (a read returned 0) or reset it.
    pub eof: bool,
    /// The serving thread has finished.
    pub finished: bool,
}

impl Record {
    /// The client's method frames with their channels.
    pub fn methods(&self) -> impl Iterator<Item = (u16, &Method)> {
        self.frames.iter().filter_map(|f| match f {
            Frame::Method { channel, method } => Some((*channel, method)),
            _ => None,
        })
    }

    /// The first method of that name the client sent.
    pub fn method(&self, name: &str) -> Option<&Method> {
        self.methods().map(|(_, m)| m).find(|m| m.name() == name)
    }

    /// The `connection.close` the client sent, if any.
    pub fn connection_close(&self) -> Option<ConnectionClose> {
        self.methods().find_map(|(_, m)| match m {
            Method::ConnectionClose(c) => Some(c.clone()),
            _ => None,
        })
    }

    /// The `connection.tune-ok` the client sent, if any.
    pub fn tune_ok(&self) -> Option<ConnectionTuneOk> {
        self.methods().find_map(|(_, m)| match m {
            Method::ConnectionTuneOk(t) => Some(t.clone()),
            _ => None,
        })
    }

    /// The names of the client's methods, in order.
    pub fn method_names(&self) -> Vec<&'static str> {
        self.methods().map(|(_, m)| m.name()).collect()
    }
}

/// How the fake broker behaves around its script.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long it keeps reading after the script when the client does not
    /// close its side.
    pub linger: Duration,
    /// Answer the client's `connection.close` with `close-ok` after the
    /// script.
    pub close_ok: bool,
    /// The bound on the whole life of the serving thread.
    pub lifetime: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            linger: Duration::from_secs(3),
            close_ok: true,
            lifetime: Duration::from_secs(20),
        }
    }
}

struct Inner {
    record: Mutex<Record>,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The handle of a running fake broker; dropping it stops and joins its
/// thread.
pub struct FakeBroker {
    addr: SocketAddr,
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FakeBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeBroker")
            .field("addr", &self.addr)
            .finish()
    }
}

impl FakeBroker {
    /// Starts serving `steps` with the default [`Config`].
    pub fn start(steps: Vec<Step>) -> FakeBroker {
        FakeBroker::start_with(steps, Config::default())
    }

    /// Starts serving `steps`.
    pub fn start_with(steps: Vec<Step>, config: Config) -> FakeBroker {
        let listener = TcpListener::bind("127.0.0.1:0").expect("fake broker: bind");
        let addr = listener.local_addr().expect("fake broker: local_addr");
        let inner = Arc::new(Inner {
            record: Mutex::new(Record::default()),
            stop: AtomicBool::new(false),
        });
        let i = inner.clone();
        let thread = thread::Builder::new()
            .name("fake-broker".into())
            .spawn(move || {
                serve(listener, &i, steps, &config);
                lock(&i.record).finished = true;
            })
            .expect("fake broker: spawn");
        FakeBroker {
            addr,
            inner,
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`, with `query` (may be empty).
    pub fn url(&self, query: &str) -> String {
        let mut u = format!("amqp://guest:guest@{}/%2f", self.addr);
        if !query.is_empty() {
            u.push('?');
            u.push_str(query);
        }
        u
    }

    /// A copy of what was recorded so far.
    pub fn record(&self) -> Record {
        lock(&self.inner.record).clone()
    }

    /// Waits up to `timeout` for the client to send the named method.
    pub fn wait_for(&self, name: &str, timeout: Duration) -> Option<Method> {
        let end = Instant::now() + timeout;
        loop {
            {
                let r = lock(&self.inner.record);
                if let Some(m) = r.method(name) {
                    return Some(m.clone());
                }
                if r.finished {
                    return None;
                }
            }
            if Instant::now() >= end {
                return None;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits up to `timeout` for the client's `connection.close`.
    pub fn connection_close(&self, timeout: Duration) -> Option<ConnectionClose> {
        match self.wait_for("connection.close", timeout) {
            Some(Method::ConnectionClose(c)) => Some(c),
            _ => None,
        }
    }

    /// Waits up to `timeout` for the client to close its side.
    pub fn wait_eof(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            {
                let r = lock(&self.inner.record);
                if r.eof || r.finished {
                    return r.eof;
                }
            }
            if Instant::now() >= end {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for the serving thread to end by itself (the client closed,
    /// or the linger time or lifetime passed) and returns the record.
    pub fn finish(mut self) -> Record {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.record()
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The connection being served.
struct Conn<'a> {
    sock: TcpStream,
    inner: &'a Inner,
    buf: BytesMut,
    header_done: bool,
    /// The client's bytes stopped making sense; later ones are dropped.
    garbage: bool,
    eof: bool,
    /// Index in `Record::frames` of the next frame an `Expect` looks at.
    cursor: usize,
    write_shut: bool,
    closes_answered: usize,
}

impl Conn<'_> {
    fn stopped(&self) -> bool {
        self.inner.stop.load(Ordering::Relaxed)
    }

    /// One read (waiting at most the socket's read timeout); decodes and
    /// records what is complete. Returns false at EOF or error.
    fn poll(&mut self) -> bool {
        if self.eof {
            return false;
        }
        let mut chunk = [0u8; 64 * 1024];
        match self.sock.read(&mut chunk) {
            Ok(0) => {
                self.eof = true;
                lock(&self.inner.record).eof = true;
                return false;
            }
            Ok(n) => {
                if !self.garbage {
                    self.buf.extend_from_slice(&chunk[..n]);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                return true
            }
            Err(_) => {
                self.eof = true;
                lock(&self.inner.record).eof = true;
                return false;
            }
        }
        self.decode();
        true
    }

    fn decode(&mut self) {
        if !self.header_done {
            if self.buf.len() < 8 {
                return;
            }
            let h = self.buf.split_to(8);
            lock(&self.inner.record).header = h.to_vec();
            self.header_done = true;
        }
        while !self.garbage {
            match frame::decode(&mut self.buf, 1 << 24) {
                Ok(Some(f)) => {
                    let mut r = lock(&self.inner.record);
                    r.frames.push(f);
                    r.frame_times.push(Instant::now());
                }
                Ok(None) => break,
                Err(e) => {
                    lock(&self.inner.record).decode_error = Some(e);
                    self.garbage = true;
                    self.buf.clear();
                }
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.sock
            .write_all(bytes)
            .map_err(|e| format!("send of {} bytes failed: {e}", bytes.len()))
    }

    /// Polls until `until` returns true or `deadline` passes.
    fn poll_until(&mut self, deadline: Instant, mut until: impl FnMut(&mut Self) -> bool) -> bool {
        loop {
            if until(self) {
                return true;
            }
            if self.stopped() || Instant::now() >= deadline {
                return false;
            }
            if !self.poll() {
                return until(self);
            }
        }
    }

    /// The name of the client's next method frame after the cursor.
    fn next_method(&mut self) -> Option<&'static str> {
        let r = lock(&self.inner.record);
        while self.cursor < r.frames.len() {
            let f = &r.frames[self.cursor];
            self.cursor += 1;
            if let Frame::Method { method, .. } = f {
                return Some(method.name());
            }
        }
        None
    }

    fn step(&mut self, step: Step) -> Result<(), String> {
        let soon = Instant::now() + Duration::from_secs(3);
        match step {
            Step::ReadHeader => {
                if self.poll_until(soon, |c| c.header_done) {
                    Ok(())
                } else {
                    Err("no protocol header from the client".into())
                }
            }
            Step::Send(bytes) => self.send(&bytes),
            Step::Method(ch, m) => self.send(&method_bytes(ch, &m)),
            Step::Expect(name) => {
                let mut got = None;
                self.poll_until(soon, |c| {
                    got = c.next_method();
                    got.is_some()
                });
                match got {
                    Some(n) if n == name => Ok(()),
                    Some(n) => Err(format!("expected {name}, the client sent {n}")),
                    None => Err(format!("expected {name}, the client sent nothing")),
                }
            }
            Step::Sleep(d) => {
                let end = Instant::now() + d;
                while !self.stopped() && Instant::now() < end {
                    if !self.poll() {
                        thread::sleep(Duration::from_millis(5));
                    }
                }
                Ok(())
            }
            Step::Close => {
                let _ = self.sock.shutdown(Shutdown::Write);
                self.write_shut = true;
                Ok(())
            }
            Step::Reset => {
                let _ = socket2::SockRef::from(&self.sock).set_linger(Some(Duration::ZERO));
                Err(String::new()) // ends the script; not a failure
            }
        }
    }

    /// Answers every client `connection.close` not answered yet.
    fn answer_closes(&mut self) {
        if self.write_shut {
            return;
        }
        let closes = lock(&self.inner.record)
            .methods()
            .filter(|(_, m)| matches!(m, Method::ConnectionClose(_)))
            .count();
        while self.closes_answered < closes {
            self.closes_answered += 1;
            let _ = self.send(&method_bytes(
                0,
                &Method::ConnectionCloseOk(ConnectionCloseOk {}),
            ));
        }
    }
}

fn serve(listener: TcpListener, inner: &Inner, steps: Vec<Step>, config: &Config) {
    let deadline = Instant::now() + config.lifetime;
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    let sock = loop {
        if inner.stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
            return;
        }
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(2));
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    };
    drop(listener); // one connection only: later ones are refused
    lock(&inner.record).accepted = true;
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_nodelay(true);
    let _ = sock.set_read_timeout(Some(Duration::from_millis(10)));
    let _ = sock.set_write_timeout(Some(Duration::from_secs(5)));
    let mut conn = Conn {
        sock,
        inner,
        buf: BytesMut::new(),
        header_done: false,
        garbage: false,
        eof: false,
        cursor: 0,
        write_shut: false,
        closes_answered: 0,
    };
    for step in steps {
        if conn.stopped() || Instant::now() >= deadline {
            return;
        }
        let reset = matches!(step, Step::Reset);
        if let Err(e) = conn.step(step) {
            if reset {
                return; // dropping the socket sends the RST
            }
            lock(&inner.record).failures.push(e);
            break;
        }
    }
    let end = (Instant::now() + config.linger).min(deadline);
    loop {
        if config.close_ok {
            conn.answer_closes();
        }
        if conn.stopped() || Instant::now() >= end || !conn.poll() {
            break;
        }
    }
}

// ----------------------------------------------------------------------
// Building what the fake broker sends.

/// A method frame's bytes.
pub fn method_bytes(channel: u16, m: &Method) -> Vec<u8> {
    let mut b = BytesMut::new();
    frame::encode_method(&mut b, channel, m).expect("encode method");
    b.to_vec()
}

/// A frame with any type octet, channel and payload (size and frame end
/// filled in correctly).
pub fn raw_frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 8);
    v.push(kind);
    v.extend_from_slice(&channel.to_be_bytes());
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v.push(frame::FRAME_END);
    v
}

/// Just a frame header announcing `size` payload bytes.
pub fn frame_header(kind: u8, channel: u16, size: u32) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(&channel.to_be_bytes());
    v.extend_from_slice(&size.to_be_bytes());
    v
}

/// A content header payload: class, weight 0, body size, properties.
pub fn header_payload(class_id: u16, body_size: u64, props: &BasicProperties) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.extend_from_slice(&class_id.to_be_bytes());
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&body_size.to_be_bytes());
    props.encode(&mut b).expect("encode properties");
    b.to_vec()
}

/// A content header frame.
pub fn header_frame(channel: u16, class_id: u16, body_size: u64) -> Vec<u8> {
    raw_frame(
        frame::FRAME_HEADER,
        channel,
        &header_payload(class_id, body_size, &BasicProperties::default()),
    )
}

/// A content body frame.
pub fn body_frame(channel: u16, payload: &[u8]) -> Vec<u8> {
    raw_frame(frame::FRAME_BODY, channel, payload)
}

/// The `server_properties` of a RabbitMQ-like broker.
pub fn server_properties() -> FieldTable {
    let capabilities = FieldTable::from([
        ("publisher_confirms", FieldValue::from(true)),
        ("exchange_exchange_bindings", FieldValue::from(true)),
        ("basic.nack", FieldValue::from(true)),
        ("consumer_cancel_notify", FieldValue::from(true)),
        ("connection.blocked", FieldValue::from(true)),
        ("authentication_failure_close", FieldValue::from(true)),
        ("per_consumer_qos", FieldValue::from(true)),
    ]);
    FieldTable::from([
        ("product", FieldValue::from("fake broker")),
        ("version", FieldValue::from("0.0.0")),
        ("capabilities", FieldValue::from(capabilities)),
    ])
}

/// `connection.start` with [`server_properties`], PLAIN and en_US.
pub fn start() -> Method {
    start_with(server_properties())
}

/// `connection.start` with these server properties.
pub fn start_with(server_properties: FieldTable) -> Method {
    Method::ConnectionStart(ConnectionStart {
        version_major: 0,
        version_minor: 9,
        server_properties,
        mechanisms: Bytes::from_static(b"PLAIN AMQPLAIN"),
        locales: Bytes::from_static(b"en_US"),
    })
}

/// `connection.tune`.
pub fn tune(channel_max: u16, frame_max: u32, heartbeat: u16) -> Method {
    Method::ConnectionTune(ConnectionTune {
        channel_max,
        frame_max,
        heartbeat,
    })
}

/// Header, start, start-ok: the steps up to the client's `start-ok`.
pub fn until_start_ok() -> Vec<Step> {
    vec![
        Step::ReadHeader,
        Step::Method(0, start()),
        Step::Expect("connection.start-ok"),
    ]
}

/// The steps up to the client's `connection.open` (tune sent, tune-ok and
/// open received).
pub fn until_open(channel_max: u16, frame_max: u32, heartbeat: u16) -> Vec<Step> {
    let mut s = until_start_ok();
    s.extend([
        Step::Method(0, tune(channel_max, frame_max, heartbeat)),
        Step::Expect("connection.tune-ok"),
        Step::Expect("connection.open"),
    ]);
    s
}

/// A whole handshake with these tune values, ending with `open-ok`.
pub fn handshake(channel_max: u16, frame_max: u32, heartbeat: u16) -> Vec<Step> {
    let mut s = until_open(channel_max, frame_max, heartbeat);
    s.push(Step::Method(
        0,
        Method::ConnectionOpenOk(ConnectionOpenOk {}),
    ));
    s
}

/// Channel `ch` opened at the client's request.
pub fn open_channel(ch: u16) -> Vec<Step> {
    vec![
        Step::Expect("channel.open"),
        Step::Method(ch, Method::ChannelOpenOk(ChannelOpenOk {})),
    ]
}

/// Channel `ch` opened and a `basic.consume` on it confirmed with `ctag`.
pub fn consumer(ch: u16, ctag: &str) -> Vec<Step> {
    let mut s = open_channel(ch);
    s.extend([
        Step::Expect("basic.consume"),
        Step::Method(
            ch,
            Method::BasicConsumeOk(BasicConsumeOk {
                consumer_tag: ctag.into(),
            }),
        ),
    ]);
    s
}

/// `basic.deliver` for consumer `ctag`.
pub fn deliver(ctag: &str, delivery_tag: u64) -> Method {
    Method::BasicDeliver(BasicDeliver {
        consumer_tag: ctag.into(),
        delivery_tag,
        redelivered: false,
        exchange: "".into(),
        routing_key: "q".into(),
    })
}
