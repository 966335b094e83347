//! Target 3: the recovery state machine (`puka::recover::Recoverer`) over a
//! sans-IO `Connection`, driven by the input: operations that build the
//! record, losses at any point, reconnections with good or bad handshakes,
//! and arbitrary server replies (well-formed answers, channel errors, raw
//! bytes) during the restore. It must never panic, and recovery must never
//! be stuck: while it is recovering with the connection gone, it has a
//! deadline. Its events must be true: `Restored` once per reconnection,
//! and no lost or closed connection reported as a failure to restore.
//! With the first byte's top bit, the first connect holds its queued work
//! through failed handshakes (`OnHandshakeFailure::Hold`), as the client
//! does: restarted on a "new socket" or released, as the input says.

use bytes::BytesMut;
use puka::codec::frame::{self, Frame};
use puka::codec::method::*;
use puka::codec::{FieldTable, Method};
use puka::protocol::{Config, Connection, ConsumeQueue, Event, OnHandshakeFailure, Tag};
use puka::recover::{Recoverer, Recovery};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A user tag (generation 1, as the client's promises).
fn user(n: u64) -> Tag {
    (1 << 32) | (n & 0xFFFF_FFFF)
}

struct Run<'a> {
    data: &'a [u8],
    pos: usize,
    conn: Connection,
    rec: Recoverer,
    now: Instant,
    /// Client methods not answered yet, with their channels.
    asked: VecDeque<(u16, Method)>,
    out: BytesMut,
    next_tag: u64,
    next_queue: u32,
    queues: Vec<String>,
    consumers: Vec<Tag>,
    /// The connection ended and recovery did not take over.
    over: bool,
    /// Handshakes restarted after a held failure.
    restarts: u8,
    /// A reconnection's restore is under way: `Reconnected` was reported,
    /// `Restored` not yet.
    restoring: bool,
}

impl Run<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn tag(&mut self) -> Tag {
        self.next_tag += 1;
        user(self.next_tag)
    }

    /// What the client wrote, decoded; channel opens are answered at once.
    fn pump(&mut self) {
        for _ in 0..64 {
            let mut buf = Vec::new();
            while self.conn.wants_write() {
                if self.conn.write_to(&mut buf).is_err() {
                    break;
                }
            }
            self.out.extend_from_slice(&buf);
            if self.out.starts_with(b"AMQP") {
                let _ = self.out.split_to(8);
            }
            let mut opened = Vec::new();
            loop {
                match frame::decode(&mut self.out, 1 << 20) {
                    Ok(Some(Frame::Method {
                        channel,
                        method: Method::ChannelOpen(_),
                    })) => opened.push(channel),
                    Ok(Some(Frame::Method { channel, method })) => {
                        self.asked.push_back((channel, method))
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => panic!("the client wrote bytes that do not decode: {e:?}"),
                }
            }
            if opened.is_empty() {
                return;
            }
            for ch in opened {
                self.send(ch, ChannelOpenOk {}.into());
            }
        }
    }

    /// Hands the connection's events to the recoverer, as the client does.
    fn drain(&mut self) {
        self.pump();
        while let Some(ev) = self.conn.poll_event() {
            match ev {
                Event::Complete { tag, result } => {
                    let _ = self
                        .rec
                        .handle_complete(tag, result, &mut self.conn, self.now);
                }
                Event::ConsumerEnded { tag } => self.rec.consumer_ended(tag),
                Event::HandshakeFailed(_) => {
                    assert!(
                        !self.conn.is_closed() && !self.conn.is_open(),
                        "a held handshake failure is neither open nor closed"
                    );
                    // As the client: a reconnection's failure is released
                    // to recovery; the first connect moves on or gives up.
                    if self.rec.is_recovering() || self.restarts >= 3 || self.byte() & 1 == 0 {
                        self.conn.release_held();
                    } else {
                        self.restarts += 1;
                        self.conn.restart_handshake(self.now);
                        self.out.clear();
                        self.asked.clear();
                        let how = self.byte();
                        self.pump();
                        self.handshake(how);
                    }
                }
                Event::Closed(e) => {
                    let pending = self.byte() & 1 == 1;
                    if !self.rec.handle_loss(&e, pending, self.now) {
                        let _ = self.rec.take_consumers();
                        self.over = true;
                    }
                }
                _ => {}
            }
        }
        while let Some(ev) = self.rec.poll_event() {
            self.check_event(&ev);
        }
        self.pump();
        if self.conn.is_closed() && self.rec.is_recovering() {
            assert!(
                self.rec.poll_timeout().is_some(),
                "recovering with no connection and no deadline: stuck"
            );
        }
    }

    /// What recovery reports is true: `Restored` once per reconnection,
    /// after its `Reconnected`; a lost or closed connection is no failure
    /// to restore.
    fn check_event(&mut self, ev: &puka::recover::Event) {
        use puka::recover::Event as R;
        match ev {
            R::Reconnected => self.restoring = true,
            R::Restored => {
                assert!(self.restoring, "Restored without a restore under way");
                self.restoring = false;
            }
            R::Disconnected(_) => self.restoring = false,
            R::RecoveryFailed { error, .. } => assert!(
                !matches!(
                    error,
                    puka::Error::ConnectionBroken(_)
                        | puka::Error::HeartbeatTimeout(_)
                        | puka::Error::ConnectionClosed
                ),
                "a lost or closed connection reported as a failure to restore: {error:?}"
            ),
            _ => {}
        }
    }

    /// The server sends these bytes.
    fn feed(&mut self, bytes: &[u8]) {
        self.conn.handle_bytes(bytes);
        self.conn.handle_input(self.now);
        self.drain();
    }

    fn send(&mut self, ch: u16, m: Method) {
        let mut b = BytesMut::new();
        frame::encode_method(&mut b, ch, &m).unwrap();
        self.conn.handle_bytes(&b);
        self.conn.handle_input(self.now);
    }

    /// The well-formed answer to a client method, if it has one.
    fn answer(&mut self, m: &Method) -> Option<Method> {
        Some(match m {
            Method::ExchangeDeclare(_) => ExchangeDeclareOk {}.into(),
            Method::ExchangeDelete(_) => ExchangeDeleteOk {}.into(),
            Method::ExchangeBind(_) => ExchangeBindOk {}.into(),
            Method::ExchangeUnbind(_) => ExchangeUnbindOk {}.into(),
            Method::QueueDeclare(q) => {
                let queue = if q.queue.is_empty() {
                    self.next_queue += 1;
                    let name = format!("amq.gen-{}", self.next_queue);
                    if self.queues.len() < 8 {
                        self.queues.push(name.clone());
                    }
                    name.into()
                } else {
                    q.queue.clone()
                };
                QueueDeclareOk {
                    queue,
                    message_count: 0,
                    consumer_count: 0,
                }
                .into()
            }
            Method::QueueBind(_) => QueueBindOk {}.into(),
            Method::QueueUnbind(_) => QueueUnbindOk {}.into(),
            Method::QueueDelete(_) => QueueDeleteOk { message_count: 0 }.into(),
            Method::QueuePurge(_) => QueuePurgeOk { message_count: 0 }.into(),
            Method::BasicQos(_) => BasicQosOk {}.into(),
            Method::BasicConsume(c) => BasicConsumeOk {
                consumer_tag: c.consumer_tag.clone(),
            }
            .into(),
            Method::BasicCancel(c) => BasicCancelOk {
                consumer_tag: c.consumer_tag.clone(),
            }
            .into(),
            Method::TxSelect(_) => TxSelectOk {}.into(),
            Method::ConfirmSelect(_) => ConfirmSelectOk {}.into(),
            Method::ChannelClose(_) => ChannelCloseOk {}.into(),
            Method::ConnectionClose(_) => ConnectionCloseOk {}.into(),
            _ => return None,
        })
    }

    /// Answers the next client method: well, or with a channel error.
    fn answer_next(&mut self, well: bool) {
        let Some((ch, m)) = self.asked.pop_front() else {
            return;
        };
        if well || ch == 0 {
            if let Some(a) = self.answer(&m) {
                self.send(ch, a);
            }
        } else {
            let code = [404, 405, 406, 403, 530][usize::from(self.byte()) % 5];
            self.send(
                ch,
                ChannelClose {
                    reply_code: code,
                    reply_text: "REFUSED".into(),
                    class_id: 0,
                    method_id: 0,
                }
                .into(),
            );
        }
        self.drain();
    }

    fn handshake(&mut self, how: u8) {
        match how % 8 {
            // A dropped transport, a refused login, not AMQP, or silence.
            5 => self.conn.handle_eof(),
            6 => {
                self.feed(&start_only());
                self.send(
                    0,
                    ConnectionClose {
                        reply_code: 403,
                        reply_text: "ACCESS_REFUSED".into(),
                        class_id: 0,
                        method_id: 0,
                    }
                    .into(),
                );
            }
            7 => self.feed(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
            _ => self.feed(&crate::handshake_bytes()),
        }
        self.drain();
    }

    fn op(&mut self) {
        let op = self.byte();
        match op % 20 {
            0 => {
                let t = self.tag();
                let m: Method = ExchangeDeclare::new("x", "direct").into();
                self.rec.note_rpc(t, &m);
                self.conn.rpc(t, m);
            }
            1 | 2 => {
                let t = self.tag();
                let flags = self.byte();
                let mut d = if op % 20 == 1 {
                    QueueDeclare::server_named()
                } else {
                    QueueDeclare::named(&format!("q{}", flags % 4))
                };
                d.exclusive = flags & 0x10 != 0;
                d.auto_delete = flags & 0x20 != 0;
                if flags & 0x40 != 0 {
                    d.arguments = FieldTable::new().with("x-expires", 1000i32);
                }
                let m: Method = d.into();
                self.rec.note_rpc(t, &m);
                self.conn.rpc(t, m);
            }
            3 => {
                let t = self.tag();
                let q = self.queue();
                let m: Method = QueueBind::new(&q, "x", "k").into();
                self.rec.note_rpc(t, &m);
                self.conn.rpc(t, m);
            }
            4 => {
                let t = self.tag();
                let q = self.queue();
                let prefetch = u16::from(self.byte() % 4);
                let tagged = self.byte();
                let queues = vec![ConsumeQueue {
                    queue: q.as_str().into(),
                    consumer_tag: if tagged & 1 == 1 {
                        format!("ctag-{t}").into()
                    } else {
                        "".into()
                    },
                    ..Default::default()
                }];
                self.conn
                    .consume(t, queues.clone(), tagged & 2 == 2, prefetch);
                self.rec
                    .note_consumer(&self.conn, t, queues, tagged & 2 == 2, prefetch);
                self.consumers.push(t);
            }
            5 => {
                if let Some(&c) = self.consumers.last() {
                    let t = self.tag();
                    let n = u16::from(self.byte());
                    self.rec.note_channel_qos(t, c, 0, n);
                    self.conn.qos(t, c, 0, n, true);
                }
            }
            6 => {
                let t = self.tag();
                self.rec.note_tx_select(t);
                self.conn.tx_select(t);
            }
            7 => {
                let t = self.tag();
                let q = self.queue();
                let m: Method = if self.byte() & 1 == 0 {
                    QueueDelete::new(&q).into()
                } else {
                    ExchangeDelete::new("x").into()
                };
                self.rec.note_rpc(t, &m);
                self.conn.rpc(t, m);
            }
            8 => {
                if !self.consumers.is_empty() {
                    let i = usize::from(self.byte()) % self.consumers.len();
                    let c = self.consumers[i];
                    let t = self.tag();
                    self.conn.cancel(t, c);
                }
            }
            9 => self
                .conn
                .handle_io_error(std::io::ErrorKind::ConnectionReset.into()),
            10 => {
                let code = [320, 320, 541, 501][usize::from(self.byte()) % 4];
                self.send(
                    0,
                    ConnectionClose {
                        reply_code: code,
                        reply_text: "CLOSED".into(),
                        class_id: 0,
                        method_id: 0,
                    }
                    .into(),
                );
            }
            11 | 12 => {
                // Time goes to the next deadline (a reconnection, a retry).
                let Some(at) = self.rec.poll_timeout() else {
                    return;
                };
                self.now = self.now.max(at);
                self.conn.handle_timeout(self.now);
                self.timeout();
            }
            13..=15 => {
                while !self.asked.is_empty() {
                    self.answer_next(true);
                }
            }
            16 => self.answer_next(true),
            17 => self.answer_next(false),
            18 => {
                let n = usize::from(self.byte() % 32);
                let end = (self.pos + n).min(self.data.len());
                let raw = self.data[self.pos.min(end)..end].to_vec();
                self.pos = end;
                self.feed(&raw);
            }
            _ => {
                let step = Duration::from_millis(u64::from(self.byte()) * 50);
                self.now += step;
                self.conn.handle_timeout(self.now);
                self.drain();
                self.timeout();
            }
        }
        self.drain();
    }

    /// The recoverer's timer; a reconnection gets a fresh connection (as
    /// the client's `next_transport`) and a handshake the input picks.
    fn timeout(&mut self) {
        if let Some(r) = self.rec.handle_timeout(self.now, &mut self.conn) {
            let config = self.conn.config().clone();
            self.conn = Connection::new(config, r.handshake, self.now);
            self.rec.handle_transport(&mut self.conn);
            self.out.clear();
            self.asked.clear();
            let how = self.byte();
            self.drain();
            self.handshake(how);
        }
    }

    fn queue(&mut self) -> String {
        if self.queues.is_empty() {
            return "q0".into();
        }
        let i = usize::from(self.byte()) % self.queues.len();
        self.queues[i].clone()
    }
}

/// Just `connection.start`.
fn start_only() -> Vec<u8> {
    let all = crate::handshake_bytes();
    let mut b = BytesMut::from(&all[..]);
    let mut v = Vec::new();
    if let Ok(Some(f)) = frame::decode(&mut b, 1 << 20) {
        let mut e = BytesMut::new();
        if let Frame::Method { channel, method } = f {
            frame::encode_method(&mut e, channel, &method).unwrap();
        }
        v.extend_from_slice(&e);
    }
    v
}

/// Runs one input. See the module docs.
pub fn check_recovery(data: &[u8]) {
    let now = Instant::now();
    let policy = Recovery::default()
        .initial_backoff(Duration::from_millis(100))
        .max_attempts(Some(u32::from(data.first().copied().unwrap_or(0) % 6) + 1));
    let hold = data.first().is_some_and(|b| b & 0x80 != 0);
    let config = Config {
        on_handshake_failure: if hold {
            OnHandshakeFailure::Hold
        } else {
            OnHandshakeFailure::Fail
        },
        ..Config::default()
    };
    let mut run = Run {
        data,
        pos: 1,
        conn: Connection::new(config, user(0), now),
        rec: Recoverer::new(policy, 1),
        now,
        asked: VecDeque::new(),
        out: BytesMut::new(),
        next_tag: 0,
        next_queue: 0,
        queues: vec!["q0".into(), "q1".into()],
        consumers: Vec::new(),
        over: false,
        restarts: 0,
        restoring: false,
    };
    run.drain();
    if hold {
        // Work queued before a first handshake the input picks.
        run.op();
        let how = run.byte();
        run.handshake(how);
        if !run.conn.is_open() {
            // Given up (or still in a silent handshake): the connect failed.
            return;
        }
    } else {
        run.feed(&crate::handshake_bytes());
    }
    run.rec.handle_connected();
    // Bounded: each op takes at least one byte.
    while run.pos < data.len() && !run.over {
        run.op();
    }
}
