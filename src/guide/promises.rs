//! Promises and their lifetime.
//!
//! Every operation returns a [`Promise<T>`](crate::Promise) at once: a small
//! `Copy` id (12 bytes) typed by what the operation resolves to —
//! `Promise<()>` for a publish or a bind, `Promise<QueueDeclareOk>` for a
//! declare, `Promise<Delivery>` for a consumer (whose results are
//! `Option<Delivery>`, below). The id carries a generation,
//! so an id whose results were all taken is reported as
//! [`Error::UnknownPromise`], never confused with a newer operation in the
//! same slot; and it carries the id of the client that made it, so another
//! client refuses it with [`Error::ForeignPromise`].
//!
//! # Results are kept until taken
//!
//! A result waits in the client until something takes it:
//!
//! - [`Client::wait`] (and `wait_timeout`) takes the next result;
//! - a callback ([`Client::set_callback`], or the `*_then` operations)
//!   takes each result as it runs, from `run_loop`, `wait` or
//!   `run_any_callbacks`;
//! - [`Client::forget`] says nobody will: results are dropped now and as
//!   they arrive, and a later `wait` on the promise fails with
//!   [`Error::UnknownPromise`].
//!
//! A promise nobody takes keeps its result, and the client's memory grows
//! with each one. That is why every operation that returns a promise is
//! `#[must_use]`: `let _ = client.queue_bind(..)` compiles without a
//! warning but leaves the result behind for the life of the connection.
//! [`Client::promise_count`] counts what the client holds (operations in
//! flight, results not taken, publishes awaiting their outcome); a number
//! that only grows is a promise nobody takes.
//!
//! Publish promises are lean: they take no slot (their id is the publish's
//! sequence number), a success is not stored at all (waiting on it again
//! returns `Ok(())` again), and only a failure is kept. Fire-and-forget
//! publishes still need [`Client::forget`] if their failures are not to
//! pile up.
//!
//! # Consumers yield many results
//!
//! A consumer's promise resolves once per delivery: each `wait` returns the
//! next message as `Some(delivery)`, a callback runs once per message. Deliveries that arrive
//! before anyone takes them are held, up to
//! [`Options::max_buffered_bytes`](crate::Options::max_buffered_bytes)
//! (see [backpressure](super::backpressure)). [`Client::consumer_ready`]
//! gives a second promise that resolves once the broker has registered the
//! consumer on every queue, with the consumer tags.
//!
//! A consumer's promise ends in one of these ways; the results already
//! there are still taken first, then the end, and then the promise is
//! spent (`wait` fails with [`Error::UnknownPromise`]). An end the user
//! asked for is a value, `Ok(None)`; any other end is an error:
//!
//! - [`Client::basic_cancel`]: once the broker confirms the cancel, the
//!   last result is `Ok(None)`. Deliveries received before it stay valid
//!   to ack.
//! - The user closes the connection ([`Client::close`] or `close_now`):
//!   `Ok(None)` as well.
//! - The broker cancels it (its queue was deleted, or the queue's node
//!   failed): the last result is [`Error::ConsumerCancelled`] naming the
//!   queue. A consumer over several queues ends as a whole.
//! - Its channel fails (e.g. [`Error::NotFound`] for a missing queue,
//!   [`Error::AccessRefused`] for an exclusive queue in use): that error is
//!   the last result.
//! - The connection is lost (and [recovery](super::connection_loss) is off or
//!   gives up): the connection's error is the last result.
//!
//! Forgetting a consumer drops its deliveries as they come, and those left
//! unacked stay unacked until the channel closes: cancel it instead.
//!
//! # Example
//!
//! ```
//! use puka::{Client, Error, QueueDeclare, QueueDelete};
//! use std::time::Duration;
//!
//! let url = std::env::var("AMQP_URL")
//!     .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
//! let mut client = Client::new(&url)?;
//! let declared = client.queue_declare(QueueDeclare::named("guide-promises").auto_delete());
//! let queue = client.wait_timeout(declared, Duration::from_secs(10))?.queue.to_string();
//!
//! // Fire and forget: nothing is kept for these promises, whatever happens.
//! for i in 0..3 {
//!     let p = client.basic_publish("", &queue, format!("job {i}").as_bytes());
//!     client.forget(p);
//! }
//!
//! // One promise, many results.
//! let consumer = client.basic_consume(&queue);
//! for _ in 0..3 {
//!     let d = client.wait_timeout(consumer, Duration::from_secs(10))?;
//!     client.basic_ack(&d.expect("not cancelled yet"))?;
//! }
//!
//! // Cancelling ends the consumer: what it had received comes first, then
//! // `None`, and then the promise is spent.
//! let cancelled = client.basic_cancel(consumer);
//! client.wait(cancelled)?;
//! while let Some(d) = client.wait(consumer)? {
//!     client.basic_ack(&d)?;
//! }
//! assert!(matches!(client.wait(consumer), Err(Error::UnknownPromise)));
//!
//! let deleted = client.queue_delete(QueueDelete::new(&queue));
//! client.wait(deleted)?;
//! let closed = client.close();
//! client.wait(closed)?;
//! # Ok::<(), puka::Error>(())
//! ```
//!
//! [`Client::wait`]: crate::Client::wait
//! [`Client::set_callback`]: crate::Client::set_callback
//! [`Client::forget`]: crate::Client::forget
//! [`Client::promise_count`]: crate::Client::promise_count
//! [`Client::consumer_ready`]: crate::Client::consumer_ready
//! [`Client::basic_cancel`]: crate::Client::basic_cancel
//! [`Client::close`]: crate::Client::close
//! [`Error::UnknownPromise`]: crate::Error::UnknownPromise
//! [`Error::ForeignPromise`]: crate::Error::ForeignPromise
//! [`Error::ConsumerCancelled`]: crate::Error::ConsumerCancelled
//! [`Error::NotFound`]: crate::Error::NotFound
//! [`Error::AccessRefused`]: crate::Error::AccessRefused
