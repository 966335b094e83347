//! The sans-IO core: `protocol::Connection` over any byte stream.
//!
//! [`protocol::Connection`](crate::protocol::Connection) is the whole AMQP
//! client protocol — handshake, hidden channels, content assembly,
//! publisher confirms, acks, heartbeats, close — with no I/O. It owns no
//! socket and reads no clock, in the manner of quinn-proto and rustls:
//! bytes and the current time go in, bytes and events come out. [`Client`]
//! is one driver of it (a mio socket, promises, callbacks); you can write
//! another — a blocking `std::net::TcpStream`, a TLS stream of your own, an
//! io_uring loop, a simulated network in a test.
//!
//! # The calls, in order
//!
//! - **Inputs.** [`read_from`] reads once from any `Read` into the
//!   connection's buffer (0 means end of stream: call [`handle_eof`]); then
//!   [`handle_input`]`(now)` decodes and handles every whole frame. Callers
//!   that read elsewhere hand bytes in with [`handle_bytes`]. A failed read
//!   goes to [`handle_io_error`]. [`handle_timeout`]`(now)` fires the timers
//!   due: heartbeats to send, a silent broker, handshake and close
//!   deadlines.
//! - **Commands** from the application: [`publish`], [`consume`], [`rpc`]
//!   (declare, bind, purge, delete), [`basic_get`], [`ack`], [`close`], …
//!   Each takes a [`Tag`](crate::protocol::Tag) of your choosing; the
//!   operation comes back as exactly one [`Event::Complete`] with that tag
//!   (a consumer also yields [`Event::Delivery`] many times before it).
//!   Commands given before the handshake finishes are queued and sent once
//!   the connection is open.
//! - **Outputs**, drained one at a time: [`poll_event`] until `None`;
//!   [`write_to`] any `Write` while [`wants_write`]; and
//!   [`poll_timeout`], the instant by which `handle_timeout` must be
//!   called next.
//!
//! One turn of a loop:
//!
//! ```text
//!   readable  -> read_from(sock) -> handle_input(now)     (0 bytes: handle_eof)
//!   timer     -> handle_timeout(now)
//!   always    -> poll_event() until None; write_to(sock) while wants_write()
//!   sleep at most until poll_timeout()
//! ```
//!
//! # Example: a blocking `TcpStream`
//!
//! Publish one message and close, with nothing but `std`. The socket
//! blocks, so each turn reads at most once, with a read timeout that ends
//! at the connection's next deadline.
//!
//! ```no_run
//! use puka::protocol::{Config, Connection, Event, Tag};
//! use puka::BasicProperties;
//! use std::io::ErrorKind;
//! use std::net::TcpStream;
//! use std::time::{Duration, Instant};
//!
//! const CONNECT: Tag = 1;
//! const PUBLISH: Tag = 2;
//! const CLOSE: Tag = 3;
//!
//! let mut sock = TcpStream::connect("127.0.0.1:5672")?;
//! let config = Config::default(); // guest/guest, vhost "/"
//! let mut conn = Connection::new(config, CONNECT, Instant::now());
//! // Queued now, sent once the handshake is done.
//! let props = BasicProperties::default();
//! conn.publish(PUBLISH, "", "sans-io", false, false, &props, b"hello from std");
//!
//! loop {
//!     // Outputs: everything queued goes out, then the events.
//!     while conn.wants_write() {
//!         conn.write_to(&mut sock)?;
//!     }
//!     while let Some(event) = conn.poll_event() {
//!         match event {
//!             Event::Complete { tag: CONNECT, result } => {
//!                 result?;
//!                 println!("connected");
//!             }
//!             Event::Complete { tag: PUBLISH, result } => {
//!                 result?; // with confirms (RabbitMQ has them): the broker's ack
//!                 println!("published");
//!                 conn.close(CLOSE, Instant::now(), Duration::from_secs(5));
//!             }
//!             Event::Complete { tag: CLOSE, result } => {
//!                 result?;
//!                 println!("close-ok");
//!             }
//!             Event::Closed(e) => println!("closed: {e}"),
//!             _ => {}
//!         }
//!     }
//!     if conn.is_closed() {
//!         break;
//!     }
//!     if conn.wants_write() {
//!         continue;
//!     }
//!     // Input: one read, bounded by the next timer.
//!     let wait = conn
//!         .poll_timeout()
//!         .map(|t| t.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)));
//!     sock.set_read_timeout(wait)?;
//!     match conn.read_from(&mut sock) {
//!         Ok(0) => conn.handle_eof(),
//!         Ok(_) => conn.handle_input(Instant::now()),
//!         Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
//!         Err(e) if e.kind() == ErrorKind::Interrupted => {}
//!         Err(e) => conn.handle_io_error(e),
//!     }
//!     // Timers: a no-op unless one is due.
//!     conn.handle_timeout(Instant::now());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Client`]: crate::Client
//! [`read_from`]: crate::protocol::Connection::read_from
//! [`handle_eof`]: crate::protocol::Connection::handle_eof
//! [`handle_input`]: crate::protocol::Connection::handle_input
//! [`handle_bytes`]: crate::protocol::Connection::handle_bytes
//! [`handle_io_error`]: crate::protocol::Connection::handle_io_error
//! [`handle_timeout`]: crate::protocol::Connection::handle_timeout
//! [`publish`]: crate::protocol::Connection::publish
//! [`consume`]: crate::protocol::Connection::consume
//! [`rpc`]: crate::protocol::Connection::rpc
//! [`basic_get`]: crate::protocol::Connection::basic_get
//! [`ack`]: crate::protocol::Connection::ack
//! [`close`]: crate::protocol::Connection::close
//! [`poll_event`]: crate::protocol::Connection::poll_event
//! [`write_to`]: crate::protocol::Connection::write_to
//! [`wants_write`]: crate::protocol::Connection::wants_write
//! [`poll_timeout`]: crate::protocol::Connection::poll_timeout
//! [`Event::Complete`]: crate::protocol::Event::Complete
//! [`Event::Delivery`]: crate::protocol::Event::Delivery
