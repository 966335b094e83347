//! The client inside your own event loop: one `mio::Poll`, one thread, two
//! protocols.
//!
//! This program serves a plain TCP line server on 127.0.0.1 and runs an
//! AMQP connection in the same loop. Every line a TCP client sends is
//! published to a queue; every message a consumer on that queue receives is
//! written to all connected TCP clients (a chat room through RabbitMQ).
//!
//! The AMQP client is registered under its own `Token`. On its events the
//! loop calls `on_read` / `on_write`, calls `on_timer` once `poll_timeout`
//! has passed (heartbeats), and `run_any_callbacks` to deliver results.
//! After every turn `update_registration` asks for WRITABLE only while the
//! client has frames queued. The client never blocks and never sleeps: this
//! loop does.
//!
//! Run: `cargo run --example reactor -- [--port 7878]`, then
//! `nc 127.0.0.1 7878` in two terminals and type.

mod common;

use lexopt::ValueExt;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use puka::{Client, ConnectionEvent, Consume, Delivery, Options, QueueDeclare, WhenFull};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

const USAGE: &str = "\
Usage: reactor [--port PORT] [--queue NAME] [--count N] [--timeout SECS]
               [--url URL]

Serves a line server on 127.0.0.1:PORT (default 7878; 0 picks a free port,
printed on startup). Each line received is published to the queue (default
\"reactor\", or $PUKA_QUEUE; auto-deleted when this program ends), and each
message consumed from it is written to every connected client. Exits after
relaying N messages if --count is given, and fails after --timeout seconds.
The broker is --url, or $AMQP_URL.
";

/// The listening socket.
const LISTENER: Token = Token(0);
/// The AMQP connection.
const AMQP: Token = Token(1);
/// TCP clients get tokens from here on.
const FIRST_CLIENT: usize = 2;

fn main() {
    common::main("reactor", run);
}

/// A connected TCP client: bytes read but not yet a full line, and bytes
/// waiting to be written.
struct Peer {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Whether WRITABLE is in its registered interest.
    wants_write: bool,
}

/// What the AMQP callbacks hand to the loop (callbacks get only the
/// `&mut Client`, so they share these through an `Rc`).
#[derive(Default)]
struct Shared {
    /// The queue is declared: time to accept TCP clients.
    ready: bool,
    /// Deliveries to relay to the TCP clients.
    deliveries: VecDeque<Delivery>,
    /// The connection failed.
    failed: Option<String>,
    /// We asked to close; errors from then on are expected.
    closing: bool,
    /// The broker confirmed the close.
    closed: bool,
    /// Publishes the broker has not confirmed yet. The loop closes the
    /// connection only once this is zero: a close cuts off the confirms
    /// still on their way (RabbitMQ may deliver a message to our consumer
    /// before it confirms the publish).
    unconfirmed: usize,
}

fn run() -> common::Result {
    let mut port: u16 = 7878;
    let args = common::parse_args(USAGE, common::Name::Queue, "reactor", &mut |flag, p| {
        if flag == "port" {
            port = p.value()?.parse()?;
            return Ok(true);
        }
        Ok(false)
    })?;
    let deadline = args.deadline();
    let queue = args.name.clone();

    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(128);

    // The client starts a non-blocking TCP connect; register it like any
    // other mio source, under our token.
    // Inside our own loop nothing may block: a publish that meets a full
    // client (or a broker that blocks us) fails with WouldBlock instead of
    // waiting for the socket.
    let options = Options::default()
        .connection_name("reactor")
        .when_full(WhenFull::Refuse);
    let mut client = Client::with_options(&args.url, options)?;
    client.update_registration(poll.registry(), AMQP)?;

    let shared = Rc::new(RefCell::new(Shared::default()));
    start_amqp(&mut client, &queue, &shared);

    let mut listener: Option<TcpListener> = None;
    let mut peers: HashMap<Token, Peer> = HashMap::new();
    let mut next_token = FIRST_CLIENT;
    let mut relayed = 0u64;
    let mut closing = false;

    loop {
        // Sleep until an event, the client's next timer, or our deadline.
        let now = Instant::now();
        let wake = [client.poll_timeout(), deadline]
            .into_iter()
            .flatten()
            .min();
        let timeout = wake.map(|t| t.saturating_duration_since(now));
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }

        for event in events.iter() {
            match event.token() {
                AMQP => {
                    // Read or write errors are not returned here: they end
                    // the connection, which the callbacks report.
                    if event.is_writable() {
                        client.on_write();
                    }
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        client.on_read();
                    }
                }
                LISTENER => {
                    if let Some(l) = &listener {
                        accept_all(l, &poll, &mut peers, &mut next_token)?;
                    }
                }
                token => {
                    let Some(peer) = peers.get_mut(&token) else {
                        continue;
                    };
                    let mut alive = true;
                    if event.is_readable() || event.is_read_closed() {
                        let lines;
                        (alive, lines) = read_lines(peer);
                        // Each complete line becomes one message.
                        for line in lines {
                            shared.borrow_mut().unconfirmed += 1;
                            let s = shared.clone();
                            client.basic_publish_then("", &queue, &line, move |_, confirmed| {
                                s.borrow_mut().unconfirmed -= 1;
                                match confirmed {
                                    Ok(()) => {}
                                    Err(puka::Error::WouldBlock) => {
                                        eprintln!("reactor: broker busy, line dropped")
                                    }
                                    Err(e) => eprintln!("reactor: publish failed: {e}"),
                                }
                            });
                        }
                    }
                    if alive && event.is_writable() {
                        alive = flush_peer(peer, &poll, token);
                    }
                    if !alive {
                        peers.remove(&token);
                    }
                }
            }
        }

        // Heartbeats: send ours, and notice a silent broker.
        if client.poll_timeout().is_some_and(|t| Instant::now() >= t) {
            client.on_timer();
        }
        // Results that arrived are handed to their callbacks (and what
        // they queued, such as acks, is written out when possible).
        client.run_any_callbacks();

        if let Some(e) = shared.borrow_mut().failed.take() {
            return Err(e.into());
        }

        // Once the queue exists, lines published to it are kept: start
        // accepting TCP clients.
        if listener.is_none() && shared.borrow().ready {
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let mut l =
                TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            poll.registry()
                .register(&mut l, LISTENER, Interest::READABLE)?;
            println!("listening on {}", l.local_addr()?);
            listener = Some(l);
        }

        // Relay deliveries to every TCP client, then ack them (no more
        // than --count asks for).
        let wanted = args.count.map_or(usize::MAX, |n| (n - relayed) as usize);
        let batch: Vec<Delivery> = {
            let mut s = shared.borrow_mut();
            let n = wanted.min(s.deliveries.len());
            s.deliveries.drain(..n).collect()
        };
        for delivery in batch {
            let mut line = delivery.body.to_vec();
            line.push(b'\n');
            peers.retain(|&token, peer| {
                peer.output.extend_from_slice(&line);
                flush_peer(peer, &poll, token)
            });
            println!(
                "relayed {:?} to {} client(s)",
                common::body_text(&delivery),
                peers.len()
            );
            client.basic_ack(&delivery)?;
            relayed += 1;
        }

        // Enough: close the AMQP connection gracefully, from this loop too,
        // once every publish is settled.
        if !closing && args.done(relayed) && shared.borrow().unconfirmed == 0 {
            closing = true;
            shared.borrow_mut().closing = true;
            let closed = client.close();
            let shared = shared.clone();
            client.set_callback(closed, move |_, _| shared.borrow_mut().closed = true);
        }
        let all_written = peers.values().all(|p| p.output.is_empty());
        if closing && shared.borrow().closed && all_written {
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(format!("timed out after relaying {relayed} message(s)").into());
        }

        // Ask for WRITABLE only while the client has something to send.
        client.update_registration(poll.registry(), AMQP)?;
    }
}

/// Declares the queue and starts the consumer, from callbacks; what they
/// learn goes into `shared`.
fn start_amqp(client: &mut Client, queue: &str, shared: &Rc<RefCell<Shared>>) {
    let s = shared.clone();
    client.set_connection_callback(move |_, event| {
        if let ConnectionEvent::Closed(e) = event {
            let mut s = s.borrow_mut();
            if !s.closing {
                s.failed.get_or_insert(format!("connection lost: {e}"));
            }
        }
    });

    let connected = client.handshake();
    let s = shared.clone();
    client.set_callback(connected, move |client, result| {
        if let Err(e) = result {
            let url = client.params().to_string(); // the password is hidden
            s.borrow_mut()
                .failed
                .get_or_insert(format!("cannot connect to {url}: {e}"));
        }
    });

    // auto_delete: the queue goes away when our consumer does.
    let s = shared.clone();
    let q = queue.to_string();
    client.queue_declare_then(
        QueueDeclare::named(queue).auto_delete(),
        move |client, r| {
            if let Err(e) = r {
                s.borrow_mut().failed = Some(format!("cannot declare {q}: {e}"));
                return;
            }
            s.borrow_mut().ready = true;
            let s = s.clone();
            client.basic_consume_then(Consume::queue(&q), move |_, delivery| {
                let mut s = s.borrow_mut();
                match delivery {
                    Ok(Some(d)) => s.deliveries.push_back(d),
                    // Ended by our own close: a value, not an error.
                    Ok(None) => {}
                    Err(e) => {
                        s.failed.get_or_insert(format!("consumer failed: {e}"));
                    }
                }
            });
        },
    );
}

/// Accepts every pending TCP connection.
fn accept_all(
    listener: &TcpListener,
    poll: &Poll,
    peers: &mut HashMap<Token, Peer>,
    next_token: &mut usize,
) -> io::Result<()> {
    loop {
        match listener.accept() {
            Ok((mut stream, _addr)) => {
                let token = Token(*next_token);
                *next_token += 1;
                poll.registry()
                    .register(&mut stream, token, Interest::READABLE)?;
                let peer = Peer {
                    stream,
                    input: Vec::new(),
                    output: Vec::new(),
                    wants_write: false,
                };
                peers.insert(token, peer);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Reads what the peer sent (until it would block: mio is edge-triggered)
/// and returns whether it is still connected, and the complete lines.
fn read_lines(peer: &mut Peer) -> (bool, Vec<Vec<u8>>) {
    let mut buf = [0u8; 4096];
    let mut alive = true;
    loop {
        match peer.stream.read(&mut buf) {
            Ok(0) => {
                alive = false;
                break;
            }
            Ok(n) => peer.input.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                alive = false;
                break;
            }
        }
    }
    let mut lines = Vec::new();
    while let Some(end) = peer.input.iter().position(|&b| b == b'\n') {
        let mut line: Vec<u8> = peer.input.drain(..=end).collect();
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        lines.push(line);
    }
    (alive, lines)
}

/// Writes what is queued for the peer; asks for WRITABLE while some is
/// left. Returns whether the peer is still connected.
fn flush_peer(peer: &mut Peer, poll: &Poll, token: Token) -> bool {
    while !peer.output.is_empty() {
        match peer.stream.write(&peer.output) {
            Ok(0) => return false,
            Ok(n) => {
                peer.output.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    let want = !peer.output.is_empty();
    if want != peer.wants_write {
        peer.wants_write = want;
        let interest = if want {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if poll
            .registry()
            .reregister(&mut peer.stream, token, interest)
            .is_err()
        {
            return false;
        }
    }
    true
}
