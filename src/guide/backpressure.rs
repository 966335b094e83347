//! Backpressure: the client's bounds, and which calls block.
//!
//! A client that accepted every publish and held every delivery would grow
//! without bound whenever the broker or the application falls behind. puka
//! has a bound for each direction, and each is an [`Options`] field.
//!
//! # Outgoing: publishes
//!
//! A publish meets backpressure when the client is *full*:
//!
//! - more than [`Options::write_high_water`] bytes of frames are queued and
//!   not yet in the kernel (default 4 MiB: the broker or the network is
//!   slower than the publisher), or
//! - [`Options::max_unconfirmed`] publishes await their confirms (default
//!   `None`: no limit but the bytes).
//!
//! [`Client::can_publish`] says whether a publish now would go ahead.
//! What a publish does when the client is full is [`Options::when_full`]:
//!
//! - [`WhenFull::Block`] (the default, for scripts): `basic_publish` drives
//!   the connection — writes, reads, fires timers, but runs no callbacks —
//!   until half the high-water mark is queued and a publish is allowed
//!   again. Never use it inside someone else's event loop.
//! - [`WhenFull::Refuse`] (for a reactor): the publish's promise fails at
//!   once with [`Error::WouldBlock`] and nothing is queued.
//!
//! [`Client::try_basic_publish`] never blocks whatever `when_full` says: it
//! returns `Err(Error::WouldBlock)` when full, so the caller keeps the
//! message and retries once [`Client::can_publish`] is true again — after
//! `on_write` drained the socket, or after `on_read` brought confirms.
//!
//! When the broker blocks the connection (`connection.blocked`, a memory or
//! disk alarm; [`Client::is_blocked`]), it stops reading, queued bytes grow
//! and publishes meet the bound above. A blocking publish then waits until
//! the broker unblocks. [`Options::blocked_timeout`] (default `None`)
//! bounds that: a connection blocked longer is dropped with
//! [`Error::BlockedTimeout`], failing every pending promise.
//!
//! # Incoming: deliveries
//!
//! Deliveries that no `wait` or callback has taken yet are held, up to
//! [`Options::max_buffered_bytes`] (default 64 MiB). At the bound the
//! client stops reading from the socket, so TCP holds the broker back
//! instead of the client growing; reading resumes once half is taken.
//! While reading is stopped, replies to other operations wait too: take a
//! consumer's deliveries (or give it a callback) before waiting on
//! something else, and give consumers a prefetch
//! ([`Consume::prefetch`](crate::Consume::prefetch)) so the broker never
//! sends more than you can hold.
//!
//! Pooled operations (declare, bind, get, …) that find every channel in use
//! wait for one, up to
//! [`MAX_WAITING_OPERATIONS`](crate::MAX_WAITING_OPERATIONS);
//! beyond it they fail with [`Error::WouldBlock`] too.
//!
//! # Which calls block
//!
//! Only these:
//!
//! - [`Client::wait`] and the other `wait*` calls (bounded by their
//!   timeout, when they take one);
//! - [`Client::run_loop`] (bounded by its timeout);
//! - [`Client::flush`] (bounded by its timeout);
//! - `basic_publish`, `basic_publish_with` and `basic_publish_then` with
//!   [`WhenFull::Block`], and only when the client is full;
//! - dropping an open client, bounded by [`Options::drop_flush_timeout`];
//! - [`Client::new`], only while the system resolver looks up a host name
//!   (give an IP address to avoid it).
//!
//! Everything else returns at once: `on_read`, `on_write`, `on_timer`,
//! `run_any_callbacks` (unless one of your callbacks blocks), acks,
//! `try_basic_publish`, `close` (it returns a promise) and every other
//! operation.
//!
//! # Example: a publisher that never blocks
//!
//! ```no_run
//! use puka::{BasicProperties, Client, Error, Options, WhenFull};
//! use std::collections::VecDeque;
//! use std::time::Duration;
//!
//! /// Publishes from `backlog` until the client is full; call it again
//! /// after `on_write` or `on_read` (or a loop turn).
//! fn pump(client: &mut Client, backlog: &mut VecDeque<Vec<u8>>) -> Result<(), Error> {
//!     let props = BasicProperties::default();
//!     while let Some(body) = backlog.front() {
//!         match client.try_basic_publish("", "jobs", body, &props, puka::Unroutable::Drop) {
//!             Ok(p) => {
//!                 client.set_callback(p, |_, confirmed| {
//!                     if let Err(e) = confirmed {
//!                         eprintln!("publish failed: {e}");
//!                     }
//!                 });
//!                 backlog.pop_front();
//!             }
//!             Err(Error::WouldBlock) => break, // keep it; retry later
//!             Err(e) => return Err(e),
//!         }
//!     }
//!     Ok(())
//! }
//!
//! let options = Options::default()
//!     .write_high_water(1 << 20)
//!     .max_unconfirmed(Some(1000))
//!     .when_full(WhenFull::Refuse)
//!     .blocked_timeout(Some(Duration::from_secs(60)))
//!     .max_buffered_bytes(16 << 20);
//! let mut client = Client::with_options("amqp://guest:guest@127.0.0.1:5672/%2f", options)?;
//! let mut backlog: VecDeque<Vec<u8>> = (0..100_000).map(|i| format!("job {i}").into_bytes()).collect();
//! while !backlog.is_empty() {
//!     pump(&mut client, &mut backlog)?;
//!     // A script can drive the connection like this; a reactor calls
//!     // `pump` after its `on_write` / `on_read` instead.
//!     client.run_loop(Some(Duration::from_millis(10)))?;
//! }
//! let closed = client.close();
//! client.wait(closed)?;
//! # Ok::<(), puka::Error>(())
//! ```
//!
//! [`Options`]: crate::Options
//! [`Options::write_high_water`]: crate::Options::write_high_water
//! [`Options::max_unconfirmed`]: crate::Options::max_unconfirmed
//! [`Options::when_full`]: crate::Options::when_full
//! [`Options::blocked_timeout`]: crate::Options::blocked_timeout
//! [`Options::max_buffered_bytes`]: crate::Options::max_buffered_bytes
//! [`Options::drop_flush_timeout`]: crate::Options::drop_flush_timeout
//! [`WhenFull::Block`]: crate::WhenFull::Block
//! [`WhenFull::Refuse`]: crate::WhenFull::Refuse
//! [`Client::can_publish`]: crate::Client::can_publish
//! [`Client::try_basic_publish`]: crate::Client::try_basic_publish
//! [`Client::is_blocked`]: crate::Client::is_blocked
//! [`Client::wait`]: crate::Client::wait
//! [`Client::run_loop`]: crate::Client::run_loop
//! [`Client::flush`]: crate::Client::flush
//! [`Client::new`]: crate::Client::new
//! [`Error::WouldBlock`]: crate::Error::WouldBlock
//! [`Error::BlockedTimeout`]: crate::Error::BlockedTimeout
