//! The reactor contract: the client in your own `mio` event loop.
//!
//! In a reactor, the client never sleeps and never blocks: your loop does.
//! The client is a `mio` source plus a few calls, in the manner of rustls's
//! `read_tls` / `process_new_packets` / `write_tls` with `wants_write`.
//! `examples/reactor.rs` is a complete program (an AMQP connection and a
//! TCP line server in one `mio::Poll`).
//!
//! # The contract
//!
//! 1. **Register.** [`Client::new`] starts a non-blocking TCP connect.
//!    Register the client under a `Token` of yours with
//!    [`Client::update_registration`]`(registry, token)`. It asks for
//!    READABLE, and for WRITABLE only while [`Client::needs_write`] (which
//!    is true while the connect is in progress, so its completion wakes
//!    you). `Client` also implements `mio::event::Source`, and `fileno()` /
//!    `AsRawFd` / `AsFd` serve a select or poll loop the same way.
//! 2. **Sleep** at most until [`Client::poll_timeout`] (heartbeats, the
//!    handshake and close deadlines, deferred acks), or your own deadline.
//! 3. **Readiness.** On the client's token: writable → [`Client::on_write`];
//!    readable, read-closed or error → [`Client::on_read`]. Each drains the
//!    socket until it would block and handles what it read, so spurious
//!    events are harmless. Neither runs callbacks, and neither returns an
//!    error: a failure ends the connection, which resolves every promise.
//! 4. **Timers.** Once `poll_timeout()` has passed → [`Client::on_timer`]:
//!    sends heartbeats, notices a silent broker, enforces deadlines.
//! 5. **Results.** [`Client::run_any_callbacks`] hands the results that
//!    arrived to their callbacks (and connection events to the connection
//!    callback), then writes what they queued (acks, publishes) as far as
//!    the socket takes it.
//! 6. **Re-register after each turn** with
//!    `update_registration(registry, token)`, so WRITABLE interest
//!    follows [`Client::needs_write`]. Always go through it rather than
//!    `reregister`: when a connect is refused and the client moves on to
//!    the host's next address, the socket is a new one, and
//!    `update_registration` registers it.
//!
//! Inside a reactor, never call what blocks: the `wait*` calls,
//! `run_loop`, `flush`, or `basic_publish` with
//! [`WhenFull::Block`](crate::WhenFull::Block). Publish with
//! [`WhenFull::Refuse`](crate::WhenFull::Refuse) or
//! [`Client::try_basic_publish`], and retry refused publishes once
//! [`Client::can_publish`] (see [backpressure](super::backpressure)).
//! Callbacks that need to reach your loop's state can capture
//! `Rc<RefCell<…>>`: callbacks need not be `Send`.
//!
//! When [`Client::is_closed`], every promise has resolved; drop the client
//! (closing its socket takes it out of the poll) or make a new one.
//!
//! # Example
//!
//! ```no_run
//! use mio::{Events, Poll, Token};
//! use puka::{Client, Consume, Options, WhenFull};
//! use std::cell::Cell;
//! use std::io;
//! use std::rc::Rc;
//! use std::time::Instant;
//!
//! const AMQP: Token = Token(0);
//!
//! let mut poll = Poll::new()?;
//! let mut events = Events::with_capacity(64);
//! let options = Options::default().when_full(WhenFull::Refuse);
//! let mut client = Client::with_options("amqp://guest:guest@127.0.0.1:5672/%2f", options)?;
//! client.update_registration(poll.registry(), AMQP)?;
//!
//! let received = Rc::new(Cell::new(0u64));
//! let seen = received.clone();
//! client.basic_consume_then(Consume::queue("jobs").prefetch(100), move |client, delivery| {
//!     match delivery {
//!         Ok(Some(d)) => {
//!             seen.set(seen.get() + 1);
//!             client.basic_ack(&d).expect("an outstanding delivery");
//!         }
//!         // Cancelled, or the connection closed by us: not an error.
//!         Ok(None) => {}
//!         Err(e) => eprintln!("consumer failed: {e}"),
//!     }
//! });
//!
//! while !client.is_closed() && received.get() < 1000 {
//!     let timeout = client.poll_timeout().map(|t| t.saturating_duration_since(Instant::now()));
//!     match poll.poll(&mut events, timeout) {
//!         Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
//!         other => other?,
//!     }
//!     for event in events.iter() {
//!         if event.token() == AMQP {
//!             if event.is_writable() {
//!                 client.on_write();
//!             }
//!             if event.is_readable() || event.is_read_closed() || event.is_error() {
//!                 client.on_read();
//!             }
//!         }
//!     }
//!     if client.poll_timeout().is_some_and(|t| Instant::now() >= t) {
//!         client.on_timer();
//!     }
//!     client.run_any_callbacks();
//!     client.update_registration(poll.registry(), AMQP)?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Client::new`]: crate::Client::new
//! [`Client::update_registration`]: crate::Client::update_registration
//! [`Client::needs_write`]: crate::Client::needs_write
//! [`Client::poll_timeout`]: crate::Client::poll_timeout
//! [`Client::on_read`]: crate::Client::on_read
//! [`Client::on_write`]: crate::Client::on_write
//! [`Client::on_timer`]: crate::Client::on_timer
//! [`Client::run_any_callbacks`]: crate::Client::run_any_callbacks
//! [`Client::try_basic_publish`]: crate::Client::try_basic_publish
//! [`Client::can_publish`]: crate::Client::can_publish
//! [`Client::is_closed`]: crate::Client::is_closed
