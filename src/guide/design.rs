//! Design: promises, three ways to drive, and the layers.
//!
//! puka is a single-threaded AMQP 0-9-1 client for RabbitMQ, in the style
//! of Python's [puka](https://github.com/majek/puka): every operation
//! returns a promise at once, and the user chooses how to drive the
//! connection. There are no hidden threads and no async runtime; nothing
//! happens on the socket except inside a call into the [`Client`].
//!
//! # Three ways to drive a connection
//!
//! - **Block on one promise** with [`Client::wait`] (or
//!   [`Client::wait_timeout`], [`Client::wait_for_any`],
//!   [`Client::wait_for_all`]): a script reads top to bottom.
//! - **Callbacks**: give promises callbacks ([`Client::set_callback`], the
//!   `*_then` operations) and let [`Client::run_loop`] run them until a
//!   callback calls [`Client::loop_break`].
//! - **Your own reactor**: register the client's socket with your
//!   `mio::Poll` and call [`Client::on_read`], [`Client::on_write`],
//!   [`Client::on_timer`] and [`Client::run_any_callbacks`] from your loop
//!   (see [the reactor chapter](super::reactor)). The client then never
//!   sleeps; your loop does.
//!
//! The three mix: a callback may call `wait`, and callbacks of other
//! promises run while `wait` blocks.
//!
//! # Hidden channels
//!
//! Channels are pooled and hidden, as in Python's puka: each synchronous
//! operation (declare, bind, purge, delete, get) takes an idle channel,
//! opening one when none is idle, and gives it back when its reply arrives;
//! each consumer owns a channel; publishes share one publish channel, in
//! confirm mode when the broker supports it ([`Options::confirms`]). A
//! channel error therefore fails one operation (or one consumer), never the
//! others.
//!
//! # Layers
//!
//! The crate is layered, each layer knowing only the one below it:
//!
//! ```text
//!   Client      socket, promises, callbacks, wait / run_loop      (src/client)
//!     │
//!   protocol    handshake, channels, content assembly, confirms,  (src/protocol)
//!     │         heartbeats — bytes and `now` in, bytes and events out
//!   codec       bytes ⇄ frames, methods, properties, field tables (src/codec)
//! ```
//!
//! `puka::codec` (feature `unstable`) turns bytes into frames and back, with no
//! connection state. `puka::protocol` (feature `unstable`) is a sans-IO state
//! machine: it owns no socket and reads no clock (see
//! the `sans_io` chapter, with the `unstable` feature). [`Client`] adds the socket,
//! promises and callbacks.
//!
//! [`Client`]: crate::Client
//! [`Client::wait`]: crate::Client::wait
//! [`Client::wait_timeout`]: crate::Client::wait_timeout
//! [`Client::wait_for_any`]: crate::Client::wait_for_any
//! [`Client::wait_for_all`]: crate::Client::wait_for_all
//! [`Client::set_callback`]: crate::Client::set_callback
//! [`Client::run_loop`]: crate::Client::run_loop
//! [`Client::loop_break`]: crate::Client::loop_break
//! [`Client::on_read`]: crate::Client::on_read
//! [`Client::on_write`]: crate::Client::on_write
//! [`Client::on_timer`]: crate::Client::on_timer
//! [`Client::run_any_callbacks`]: crate::Client::run_any_callbacks
//! [`Options::confirms`]: crate::Options::confirms
