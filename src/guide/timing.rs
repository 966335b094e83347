//! When acks and publishes leave the socket.
//!
//! An operation only queues frames. Nothing reaches the socket except
//! inside a call into the [`Client`]: there is no background thread to send
//! them. This chapter says which calls write, and what "sent" means at each
//! point.
//!
//! # Which calls write
//!
//! Queued frames are handed to the socket by every [`Client::wait`] (and
//! the other `wait*` calls), every turn of [`Client::run_loop`],
//! [`Client::run_any_callbacks`], [`Client::flush`], [`Client::on_write`],
//! [`Client::on_timer`], [`Client::close`] and [`Client::close_now`].
//! Publishes also write on their own, without blocking, each time 64 KiB
//! are queued. In your own reactor, [`Client::needs_write`] is true while
//! anything is queued: ask for WRITABLE then and call `on_write` (see
//! [the reactor chapter](super::reactor)).
//!
//! "Handed to the socket" means in the kernel's send buffer: the kernel may
//! still hold the bytes, and a broker that stops reading leaves the buffer
//! full and the rest queued in the client. [`Client::flush`] blocks (up to
//! its timeout) until everything queued is in the kernel.
//!
//! # Acks: `AckTiming::Prompt` and `Deferred`
//!
//! [`Client::basic_ack`] (and `nack`, `reject`) checks the delivery locally
//! and queues the ack; [`Options::ack_timing`] says when it leaves:
//!
//! - [`AckTiming::Prompt`] (the default, Python puka's guarantee): by the
//!   end of the next call into the client. When the next `wait`,
//!   `run_loop`, `run_any_callbacks` or `flush` returns, the ack is in the
//!   kernel's send buffer. Acks made within one call coalesce into one
//!   `basic.ack` with `multiple` set.
//! - [`AckTiming::Deferred`]: a consumer's acks may wait across calls
//!   while fewer than half of its prefetch window is outstanding (never
//!   with a prefetch of 1, nor after `basic_qos`), and go out with the next
//!   write or after [`ACK_DELAY`](crate::ACK_DELAY)
//!   (5 ms, part of [`Client::poll_timeout`]). Fewer writes under load. The
//!   cost: a process that dies (or a client dropped without `close`) right
//!   after acking may leave up to half a prefetch window of acked messages
//!   to be redelivered. [`Client::flush`] sends deferred acks at once.
//!
//! # Publishes
//!
//! With publisher confirms (the default when the broker offers them,
//! [`Options::confirms`]) a publish's promise resolves when the broker has
//! taken responsibility for the message: its `basic.ack` arrived. Without
//! confirms it resolves once the frames are in the kernel's send buffer,
//! which says nothing about whether the broker got them; a broker error
//! then comes as [`ConnectionEvent::PublishChannelClosed`](crate::ConnectionEvent::PublishChannelClosed).
//!
//! # Closing and dropping
//!
//! - [`Client::close`] is graceful: new operations fail at once with
//!   [`Error::ConnectionClosed`](crate::Error::ConnectionClosed); the
//!   operations in flight, publisher confirms included, are awaited; then
//!   `connection.close` goes out and the promise resolves on the broker's
//!   `close-ok`. [`Options::close_timeout`] (5 s) bounds the whole; what is
//!   still unsettled then fails with
//!   [`Error::OutcomeUnknown`](crate::Error::OutcomeUnknown), never with a
//!   failure that did not happen.
//! - [`Client::close_now`] sends `connection.close` at once: unconfirmed
//!   publishes fail with `OutcomeUnknown`, other pending operations with
//!   `ConnectionClosed`.
//! - Dropping an open client closes it as `close_now` does, blocking up to
//!   [`Options::drop_flush_timeout`] (1 s) for the broker's `close-ok`, so
//!   the publishes and acks queued before it have been taken by the broker.
//!   Confirms still in flight are never learnt, and the broker requeues the
//!   deliveries left unacked. With a zero timeout, drop only writes what
//!   fits without blocking.
//!
//! To know the outcome of every publish, call `close` and wait on it.
//!
//! # Example
//!
//! ```
//! use puka::{AckTiming, Client, Consume, Options, QueueDeclare};
//! use std::time::Duration;
//!
//! let url = std::env::var("AMQP_URL")
//!     .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
//! let options = Options::default().ack_timing(AckTiming::Deferred);
//! let mut client = Client::with_options(&url, options)?;
//! let declared = client.queue_declare(QueueDeclare::named("guide-timing").auto_delete());
//! let queue = client.wait_timeout(declared, Duration::from_secs(10))?.queue.to_string();
//!
//! let published = client.basic_publish("", &queue, b"work");
//! let consumer = client.basic_consume_with(Consume::queue(&queue).prefetch(100));
//! if let Some(d) = client.wait_timeout(consumer, Duration::from_secs(10))? {
//!     client.basic_ack(&d)?;
//! }
//! // With `Deferred` the ack may still be waiting in the client; this puts
//! // it (and anything else queued) in the kernel's send buffer.
//! client.flush(Duration::from_secs(1))?;
//!
//! // Graceful close: the publish's confirm arrived before the close went out.
//! let closed = client.close();
//! client.wait(closed)?;
//! client.wait(published)?;
//! # Ok::<(), puka::Error>(())
//! ```
//!
//! [`Client`]: crate::Client
//! [`Client::wait`]: crate::Client::wait
//! [`Client::run_loop`]: crate::Client::run_loop
//! [`Client::run_any_callbacks`]: crate::Client::run_any_callbacks
//! [`Client::flush`]: crate::Client::flush
//! [`Client::on_write`]: crate::Client::on_write
//! [`Client::on_timer`]: crate::Client::on_timer
//! [`Client::close`]: crate::Client::close
//! [`Client::close_now`]: crate::Client::close_now
//! [`Client::needs_write`]: crate::Client::needs_write
//! [`Client::basic_ack`]: crate::Client::basic_ack
//! [`Client::poll_timeout`]: crate::Client::poll_timeout
//! [`Options::ack_timing`]: crate::Options::ack_timing
//! [`Options::confirms`]: crate::Options::confirms
//! [`Options::close_timeout`]: crate::Options::close_timeout
//! [`Options::drop_flush_timeout`]: crate::Options::drop_flush_timeout
//! [`AckTiming::Prompt`]: crate::AckTiming::Prompt
//! [`AckTiming::Deferred`]: crate::AckTiming::Deferred
