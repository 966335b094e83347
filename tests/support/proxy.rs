//! A fault-injecting TCP proxy between the client under test and the broker.
//!
//! It listens on `127.0.0.1:<ephemeral>` and forwards every accepted
//! connection to the broker (the host and port of `AMQP_URL`). Its [`Mode`]
//! can be switched at run time through the [`Proxy`] handle and applies to
//! every live connection at once:
//!
//! - [`Mode::Pass`]: forward both ways.
//! - [`Mode::Blackhole`]: forward nothing either way, keep the sockets open.
//! - [`Mode::Reset`]: abort every connection (`SO_LINGER` 0 then close: RST).
//! - [`Mode::HalfClose`]: send FIN toward the client (shutdown of the write
//!   side), keep the rest open.
//! - [`Mode::CutAfter`]: forward only the first `bytes` bytes the server
//!   sends on each connection, then close toward the client with FIN or RST.
//! - [`Mode::Throttle`]: at most so many bytes per second in each direction.
//!
//! The proxy parses both byte streams into frames as it forwards them and
//! records, for each frame, its direction, offset in the stream, type,
//! channel and size ([`FrameRec`]), so a test can check that every frame the
//! client sent fits `frame_max`, or find the offsets of a delivery's frames.
//!
//! Bounded: every thread stops when the handle is dropped (which joins them)
//! or when the proxy's lifetime (60 s unless told) has passed.
#![allow(dead_code)]

use crate::common;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What the proxy does with the bytes of its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Pass,
    /// Forward nothing either way; the sockets stay open. Bytes already read
    /// are held and go on when the mode changes back.
    Blackhole,
    /// Abort every connection: RST toward the client, close toward the server.
    Reset,
    /// Shut down the write side toward the client (FIN); keep forwarding
    /// client → server.
    HalfClose,
    /// Forward only the first `bytes` bytes the server sends on each
    /// connection (counted from the connection's start), then end the
    /// connection toward the client: RST when `reset`, else FIN (the client
    /// side is then drained until the client closes it). The server side is
    /// closed at once.
    CutAfter {
        /// Server → client bytes forwarded before the cut.
        bytes: u64,
        /// RST instead of FIN.
        reset: bool,
    },
    /// At most this many bytes per second in each direction.
    Throttle(u64),
}

/// A direction of the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// What the client sends.
    ToServer,
    /// What the server sends.
    ToClient,
}

/// One frame seen going through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRec {
    /// Which accepted connection (0 for the first).
    pub conn: usize,
    /// Its direction.
    pub dir: Dir,
    /// Offset of its first byte in its direction's byte stream.
    pub offset: u64,
    /// Frame type octet (1 method, 2 header, 3 body, 8 heartbeat).
    pub kind: u8,
    /// Channel.
    pub channel: u16,
    /// Payload size as announced in the frame header.
    pub size: u32,
    /// Whether the frame ended with 0xCE.
    pub end_ok: bool,
    /// For method frames: class and method id (0, 0 when not a method or the
    /// payload is too short).
    pub method: (u16, u16),
}

impl FrameRec {
    /// The whole frame's size on the wire: header, payload and frame end.
    pub fn total(&self) -> u64 {
        u64::from(self.size) + 8
    }

    /// Offset of the byte after the frame.
    pub fn end(&self) -> u64 {
        self.offset + self.total()
    }
}

/// The default bound on the proxy's life.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

struct Shared {
    mode: Mutex<Mode>,
    stop: AtomicBool,
    deadline: Instant,
    upstream: SocketAddr,
    frames: Mutex<Vec<FrameRec>>,
    last_to_client: Mutex<Option<Instant>>,
    accepted: AtomicUsize,
    live: AtomicUsize,
    problems: Mutex<Vec<String>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn ending(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }

    fn mode(&self) -> Mode {
        *lock(&self.mode)
    }

    fn problem(&self, what: String) {
        lock(&self.problems).push(what);
    }
}

/// Locks, ignoring poisoning (a panicking test must not hide the first panic
/// behind a second one).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The handle of a running proxy; dropping it stops and joins every thread.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("mode", &self.shared.mode())
            .finish()
    }
}

/// The broker's address from `AMQP_URL` (first resolved address).
pub fn broker_addr() -> SocketAddr {
    let (host, port) = common::host_port(&common::amqp_url());
    (host.as_str(), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("cannot resolve the broker address {host}:{port}"))
}

/// `url` with its host and port replaced by `addr`, and `query` (e.g.
/// `"heartbeat=2"`, may be empty) added to its query string.
pub fn url_via(url: &str, addr: SocketAddr, query: &str) -> String {
    let (scheme, rest) = url.split_once("//").unwrap_or(("amqp:", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let userinfo = authority
        .rsplit_once('@')
        .map_or(String::new(), |(u, _)| format!("{u}@"));
    let mut out = format!("{scheme}//{userinfo}{addr}{tail}");
    if !query.is_empty() {
        out.push(if tail.contains('?') { '&' } else { '?' });
        out.push_str(query);
    }
    out
}

impl Proxy {
    /// A proxy to the broker of `AMQP_URL`, living at most
    /// [`DEFAULT_LIFETIME`].
    pub fn start() -> Proxy {
        Proxy::with_lifetime(DEFAULT_LIFETIME)
    }

    /// A proxy to the broker of `AMQP_URL`, living at most `lifetime`.
    pub fn with_lifetime(lifetime: Duration) -> Proxy {
        common::require_broker();
        Proxy::to(broker_addr(), lifetime)
    }

    /// A proxy to `upstream`, living at most `lifetime`.
    pub fn to(upstream: SocketAddr, lifetime: Duration) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy: bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("proxy: non-blocking listener");
        let addr = listener.local_addr().expect("proxy: local_addr");
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Pass),
            stop: AtomicBool::new(false),
            deadline: Instant::now() + lifetime,
            upstream,
            frames: Mutex::new(Vec::new()),
            last_to_client: Mutex::new(None),
            accepted: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            problems: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let acceptor = thread::Builder::new()
            .name("proxy-accept".into())
            .spawn(move || accept_loop(listener, s))
            .expect("proxy: spawn");
        Proxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `AMQP_URL` pointed at the proxy, with `query` added (may be empty).
    pub fn url(&self, query: &str) -> String {
        url_via(&common::amqp_url(), self.addr, query)
    }

    /// Switches the mode of every live and future connection.
    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.shared.mode) = mode;
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.shared.mode()
    }

    /// Every frame recorded so far, both directions, in forwarding order per
    /// direction and connection.
    pub fn frames(&self) -> Vec<FrameRec> {
        lock(&self.shared.frames).clone()
    }

    /// The frames the client sent (all connections).
    pub fn client_frames(&self) -> Vec<FrameRec> {
        lock(&self.shared.frames)
            .iter()
            .filter(|f| f.dir == Dir::ToServer)
            .copied()
            .collect()
    }

    /// The frames of connection `conn` in direction `dir`.
    pub fn frames_of(&self, conn: usize, dir: Dir) -> Vec<FrameRec> {
        lock(&self.shared.frames)
            .iter()
            .filter(|f| f.conn == conn && f.dir == dir)
            .copied()
            .collect()
    }

    /// Forgets the recorded frames.
    pub fn clear_frames(&self) {
        lock(&self.shared.frames).clear();
    }

    /// When a byte last went to a client.
    pub fn last_to_client(&self) -> Option<Instant> {
        *lock(&self.shared.last_to_client)
    }

    /// How many connections were accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// How many connections are being served now.
    pub fn live(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }

    /// Waits up to `timeout` for no connection to be served; returns whether
    /// that happened.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if self.live() == 0 {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// What went wrong inside the proxy (upstream connect failures,
    /// malformed frames seen in transit).
    pub fn problems(&self) -> Vec<String> {
        lock(&self.shared.problems).clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let threads = std::mem::take(&mut *lock(&self.shared.threads));
        for t in threads {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.ending() {
        match listener.accept() {
            Ok((client, _)) => {
                let conn = shared.accepted.fetch_add(1, Ordering::SeqCst);
                let server =
                    match TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(5)) {
                        Ok(s) => s,
                        Err(e) => {
                            shared.problem(format!("conn {conn}: upstream connect: {e}"));
                            continue; // dropping `client` closes it
                        }
                    };
                shared.live.fetch_add(1, Ordering::SeqCst);
                let s = shared.clone();
                let t = thread::Builder::new()
                    .name(format!("proxy-conn-{conn}"))
                    .spawn(move || {
                        serve(&s, conn, client, server);
                        s.live.fetch_sub(1, Ordering::SeqCst);
                    });
                match t {
                    Ok(t) => lock(&shared.threads).push(t),
                    Err(e) => {
                        shared.live.fetch_sub(1, Ordering::SeqCst);
                        shared.problem(format!("conn {conn}: spawn: {e}"));
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(2));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                shared.problem(format!("accept: {e}"));
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Incremental frame parser over one direction's byte stream.
struct Parser {
    conn: usize,
    dir: Dir,
    /// Bytes still to skip (the client's 8-byte protocol header).
    skip: u64,
    /// Stream offset of the next byte.
    pos: u64,
    /// Header (and the first 4 payload bytes, for method ids) of the frame
    /// being read.
    head: [u8; 11],
    head_len: usize,
    /// Payload and frame-end bytes of the current frame not yet seen.
    remaining: u64,
    start: u64,
    broken: bool,
}

impl Parser {
    fn new(conn: usize, dir: Dir) -> Parser {
        Parser {
            conn,
            dir,
            skip: if dir == Dir::ToServer { 8 } else { 0 },
            pos: 0,
            head: [0; 11],
            head_len: 0,
            remaining: 0,
            start: 0,
            broken: false,
        }
    }

    fn size(&self) -> u32 {
        u32::from_be_bytes([self.head[3], self.head[4], self.head[5], self.head[6]])
    }

    fn feed(&mut self, mut data: &[u8], out: &mut Vec<FrameRec>, shared: &Shared) {
        while !data.is_empty() && !self.broken {
            if self.skip > 0 {
                let n = (self.skip as usize).min(data.len());
                self.skip -= n as u64;
                self.pos += n as u64;
                data = &data[n..];
                continue;
            }
            if self.head_len < 7 {
                if self.head_len == 0 {
                    self.start = self.pos;
                }
                let n = (7 - self.head_len).min(data.len());
                self.head[self.head_len..self.head_len + n].copy_from_slice(&data[..n]);
                self.head_len += n;
                self.pos += n as u64;
                data = &data[n..];
                if self.head_len == 7 {
                    if !matches!(self.head[0], 1 | 2 | 3 | 8) {
                        shared.problem(format!(
                            "conn {} {:?}: frame type {} at offset {}; no longer parsing",
                            self.conn, self.dir, self.head[0], self.start
                        ));
                        self.broken = true;
                    }
                    self.remaining = u64::from(self.size()) + 1;
                }
                continue;
            }
            // Payload: keep its first 4 bytes (class and method ids).
            let n = (self.remaining.min(data.len() as u64)) as usize;
            let seen = u64::from(self.size()) + 1 - self.remaining;
            for (i, b) in data[..n].iter().enumerate() {
                let at = seen + i as u64;
                if at < 4 {
                    self.head[7 + at as usize] = *b;
                } else {
                    break;
                }
            }
            self.remaining -= n as u64;
            self.pos += n as u64;
            let last = data[n - 1];
            data = &data[n..];
            if self.remaining == 0 {
                let size = self.size();
                let method = if self.head[0] == 1 && size >= 4 {
                    (
                        u16::from_be_bytes([self.head[7], self.head[8]]),
                        u16::from_be_bytes([self.head[9], self.head[10]]),
                    )
                } else {
                    (0, 0)
                };
                out.push(FrameRec {
                    conn: self.conn,
                    dir: self.dir,
                    offset: self.start,
                    kind: self.head[0],
                    channel: u16::from_be_bytes([self.head[1], self.head[2]]),
                    size,
                    end_ok: last == 0xCE,
                    method,
                });
                self.head_len = 0;
                self.head = [0; 11];
            }
        }
    }
}

/// One direction of a connection.
struct Pipe {
    dir: Dir,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    /// The source said EOF.
    eof: bool,
    /// The EOF was passed on (shutdown of the destination's write side).
    eof_sent: bool,
    forwarded: u64,
    parser: Parser,
    tokens: f64,
    refilled: Instant,
}

/// What one step of a pipe did.
#[derive(PartialEq, Eq)]
enum Step {
    Idle,
    Progress,
    /// A socket error: end the connection.
    Failed,
}

impl Pipe {
    fn new(conn: usize, dir: Dir) -> Pipe {
        Pipe {
            dir,
            buf: vec![0; 64 * 1024],
            pos: 0,
            len: 0,
            eof: false,
            eof_sent: false,
            forwarded: 0,
            parser: Parser::new(conn, dir),
            tokens: 0.0,
            refilled: Instant::now(),
        }
    }

    fn pending(&self) -> usize {
        self.len - self.pos
    }

    /// Refills the token bucket for `rate` bytes/s; returns the bytes that
    /// may be written now.
    fn allowance(&mut self, rate: Option<u64>) -> u64 {
        let now = Instant::now();
        let dt = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        match rate {
            None => {
                self.tokens = 0.0;
                u64::MAX
            }
            Some(rate) => {
                let cap = (rate as f64 / 20.0).max(1024.0);
                self.tokens = (self.tokens + rate as f64 * dt).min(cap);
                self.tokens as u64
            }
        }
    }

    /// Reads from `src` when nothing is pending, writes at most `allow`
    /// pending bytes to `dst`.
    fn step(
        &mut self,
        src: &mut TcpStream,
        dst: &mut TcpStream,
        allow: u64,
        shared: &Shared,
    ) -> Step {
        let mut progress = false;
        if self.pending() == 0 && !self.eof {
            match src.read(&mut self.buf) {
                Ok(0) => {
                    self.eof = true;
                    progress = true;
                }
                Ok(n) => {
                    self.pos = 0;
                    self.len = n;
                    progress = true;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(_) => return Step::Failed,
            }
        }
        let n = (self.pending() as u64).min(allow) as usize;
        if n > 0 {
            match dst.write(&self.buf[self.pos..self.pos + n]) {
                Ok(0) => return Step::Failed,
                Ok(w) => {
                    let mut recs = Vec::new();
                    self.parser
                        .feed(&self.buf[self.pos..self.pos + w], &mut recs, shared);
                    if !recs.is_empty() {
                        lock(&shared.frames).extend(recs);
                    }
                    self.pos += w;
                    self.forwarded += w as u64;
                    self.tokens = (self.tokens - w as f64).max(0.0);
                    if self.dir == Dir::ToClient {
                        *lock(&shared.last_to_client) = Some(Instant::now());
                    }
                    progress = true;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(_) => return Step::Failed,
            }
        }
        if self.eof && self.pending() == 0 && !self.eof_sent {
            let _ = dst.shutdown(Shutdown::Write);
            self.eof_sent = true;
            progress = true;
        }
        if progress {
            Step::Progress
        } else {
            Step::Idle
        }
    }
}

fn abort(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}

/// Serves one connection until it ends, the mode kills it, or the proxy
/// stops. Dropping the sockets at the end closes them.
fn serve(shared: &Shared, conn: usize, mut client: TcpStream, server: TcpStream) {
    let mut server = Some(server);
    for s in std::iter::once(&client).chain(server.as_ref()) {
        let _ = s.set_nodelay(true);
        if s.set_nonblocking(true).is_err() {
            shared.problem(format!("conn {conn}: set_nonblocking failed"));
            return;
        }
    }
    let mut up = Pipe::new(conn, Dir::ToServer);
    let mut down = Pipe::new(conn, Dir::ToClient);
    let mut half_closed = false;
    // After a FIN cut: only drain the client until it closes.
    let mut draining = false;
    let mut sink = [0u8; 16 * 1024];
    while !shared.ending() {
        if draining {
            match client.read(&mut sink) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                    thread::sleep(Duration::from_millis(2));
                    continue;
                }
                Err(_) => return,
            }
        }
        let Some(srv) = server.as_mut() else { return };
        let mode = shared.mode();
        let mut rate = None;
        let mut cut = None;
        match mode {
            Mode::Pass => {}
            Mode::Blackhole => {
                thread::sleep(Duration::from_millis(2));
                continue;
            }
            Mode::Reset => {
                abort(&client);
                abort(srv);
                return;
            }
            Mode::HalfClose => {
                if !half_closed {
                    let _ = client.shutdown(Shutdown::Write);
                    half_closed = true;
                }
            }
            Mode::CutAfter { bytes, reset } => cut = Some((bytes, reset)),
            Mode::Throttle(r) => rate = Some(r.max(1)),
        }
        let allow_up = up.allowance(rate);
        let mut allow_down = down.allowance(rate);
        if half_closed {
            allow_down = 0;
        }
        if let Some((bytes, _)) = cut {
            allow_down = allow_down.min(bytes.saturating_sub(down.forwarded));
        }
        let a = up.step(&mut client, srv, allow_up, shared);
        let b = if half_closed {
            Step::Idle
        } else {
            down.step(srv, &mut client, allow_down, shared)
        };
        if a == Step::Failed || b == Step::Failed {
            return;
        }
        if let Some((bytes, reset)) = cut {
            if down.forwarded >= bytes {
                server = None; // close toward the broker now
                if reset {
                    abort(&client);
                    return;
                }
                let _ = client.shutdown(Shutdown::Write);
                draining = true;
                continue;
            }
        }
        if up.eof_sent && (down.eof_sent || half_closed) {
            return;
        }
        if a == Step::Idle && b == Step::Idle {
            thread::sleep(Duration::from_millis(1));
        }
    }
}
