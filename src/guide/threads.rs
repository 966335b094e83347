//! Threads: why `Client` is not `Send`, and patterns that work.
//!
//! puka runs no threads of its own, and a [`Client`] stays on the thread
//! that made it: it is not `Send` (nor `Sync`). The reason is the
//! callbacks. [`Client::set_callback`], [`Client::set_connection_callback`]
//! and the `*_then` operations store `Box<dyn FnMut(&mut Client, …)>`
//! without a `Send` bound, so a callback may capture `Rc<RefCell<…>>` and
//! other single-threaded state (as `examples/reactor.rs` does); a client
//! holding such a callback must not move to another thread, and the
//! compiler cannot tell which clients hold one.
//!
//! This is checked at compile time — the following does not compile:
//!
//! ```compile_fail,E0277
//! fn assert_send<T: Send>() {}
//! assert_send::<puka::Client>();
//! ```
//!
//! What a client hands out does cross threads: promises, deliveries,
//! errors and options are `Send`, so a delivery can be processed elsewhere
//! and sent back to be acked.
//!
//! ```
//! fn assert_send<T: Send>() {}
//! assert_send::<puka::Promise<puka::Delivery>>();
//! assert_send::<puka::PromiseId>();
//! assert_send::<puka::Delivery>();
//! assert_send::<puka::Error>();
//! assert_send::<puka::Options>();
//! ```
//!
//! # Patterns that work
//!
//! - **One client per thread.** Each thread makes its own `Client` (a
//!   connection each; RabbitMQ handles many). Nothing is shared.
//! - **Hand work to the client's thread** with a channel
//!   (`std::sync::mpsc`): other threads send what to publish (or
//!   deliveries they finished, to be acked) and the client's thread takes
//!   it between calls into the client. A thread driving the client with
//!   `wait` or `run_loop` can check the channel between short timeouts.
//! - **Wake a reactor** with a `mio::Waker` registered in the same
//!   `mio::Poll` as the client: senders send on the channel, then
//!   `wake()`, and the loop drains the channel on the waker's token.
//!
//! An ack must come from the client that received the delivery: send the
//! [`Delivery`](crate::Delivery) (or what identifies it) back to the
//! client's thread. Another client's ack of it fails with
//! [`Error::UnknownDeliveryTag`](crate::Error::UnknownDeliveryTag).
//!
//! # Example: worker threads publish through the client's thread
//!
//! ```no_run
//! use mio::{Events, Poll, Token, Waker};
//! use puka::{BasicProperties, Client, Error, Options, WhenFull};
//! use std::collections::VecDeque;
//! use std::sync::{mpsc, Arc};
//! use std::time::Instant;
//!
//! const AMQP: Token = Token(0);
//! const WAKE: Token = Token(1);
//!
//! let mut poll = Poll::new()?;
//! let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
//! let (tx, rx) = mpsc::channel::<Vec<u8>>();
//!
//! // Workers: any number of threads, each with a sender and the waker.
//! let workers: Vec<_> = (0..4)
//!     .map(|n| {
//!         let (tx, waker) = (tx.clone(), waker.clone());
//!         std::thread::spawn(move || {
//!             for i in 0..250 {
//!                 tx.send(format!("worker {n}, job {i}").into_bytes()).unwrap();
//!                 waker.wake().unwrap();
//!             }
//!         })
//!     })
//!     .collect();
//! drop(tx);
//!
//! // The client's thread: the client never leaves it.
//! let options = Options::default().when_full(WhenFull::Refuse);
//! let mut client = Client::with_options("amqp://guest:guest@127.0.0.1:5672/%2f", options)?;
//! client.update_registration(poll.registry(), AMQP)?;
//! let mut events = Events::with_capacity(64);
//! let mut backlog: VecDeque<Vec<u8>> = VecDeque::new();
//! let props = BasicProperties::default();
//! let mut workers_done = false;
//! let mut closed = None;
//! loop {
//!     let timeout = client.poll_timeout().map(|t| t.saturating_duration_since(Instant::now()));
//!     poll.poll(&mut events, timeout)?;
//!     for event in events.iter().filter(|e| e.token() == AMQP) {
//!         // (WAKE needs nothing here: the channel is drained below.)
//!         if event.is_writable() {
//!             client.on_write();
//!         }
//!         if event.is_readable() || event.is_read_closed() || event.is_error() {
//!             client.on_read();
//!         }
//!     }
//!     loop {
//!         match rx.try_recv() {
//!             Ok(body) => backlog.push_back(body),
//!             Err(mpsc::TryRecvError::Empty) => break,
//!             Err(mpsc::TryRecvError::Disconnected) => {
//!                 workers_done = true;
//!                 break;
//!             }
//!         }
//!     }
//!     while let Some(body) = backlog.front() {
//!         match client.try_basic_publish("", "jobs", body, &props, puka::Unroutable::Drop) {
//!             Ok(p) => {
//!                 client.forget(p);
//!                 backlog.pop_front();
//!             }
//!             Err(Error::WouldBlock) => break,
//!             Err(e) => return Err(e.into()),
//!         }
//!     }
//!     if client.poll_timeout().is_some_and(|t| Instant::now() >= t) {
//!         client.on_timer();
//!     }
//!     client.run_any_callbacks();
//!     if workers_done && backlog.is_empty() && closed.is_none() {
//!         // Graceful: the close goes out once every publish is confirmed.
//!         closed = Some(client.close());
//!     }
//!     if client.is_closed() {
//!         break;
//!     }
//!     client.update_registration(poll.registry(), AMQP)?;
//! }
//! if let Some(closed) = closed {
//!     client.wait(closed)?; // already resolved: this only takes the result
//! }
//! for w in workers {
//!     w.join().unwrap();
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Client`]: crate::Client
//! [`Client::set_callback`]: crate::Client::set_callback
//! [`Client::set_connection_callback`]: crate::Client::set_connection_callback
