//! Connection loss: what resolves, and what you must do yourself.
//!
//! A connection ends when the socket fails or reaches end of stream, when
//! the broker is silent for two heartbeat intervals
//! ([`Error::HeartbeatTimeout`]; TCP keepalive notices a vanished peer
//! within about 90 s even without heartbeats), when the broker closes it
//! (e.g. [`Error::ConnectionForced`] when it shuts down), when it stays
//! blocked past [`Options::blocked_timeout`], when the broker breaks the
//! protocol, or when you close it.
//!
//! # Every promise resolves
//!
//! Nothing hangs and nothing is lost silently. When the connection ends:
//!
//! - every pending promise fails with the error that ended it, so a `wait`
//!   returns and `run_loop` returns;
//! - publishes sent and still awaiting their confirm fail with
//!   [`Error::OutcomeUnknown`] wrapping that error: the broker may have
//!   taken them, or not;
//! - each consumer's promise gets the error as its last result;
//! - the connection callback (or [`Client::next_connection_event`]) gets
//!   [`ConnectionEvent::Closed`] with the error;
//! - new operations fail at once with the same error;
//! - deliveries received and not acked go back to their queues at the
//!   broker (they come again with `redelivered` set), and acking them now
//!   fails with [`Error::UnknownDeliveryTag`] without sending anything.
//!
//! [`Client::is_closed`] is then true, and the `Client` is finished.
//!
//! # No automatic recovery — yet
//!
//! puka does not reconnect by itself. It does not redeclare queues,
//! exchanges or bindings, restart consumers, or publish again what was
//! unconfirmed. To go on after a loss, make a new [`Client`], declare your
//! topology again, start your consumers again, and decide what to do with
//! each publish that failed with `OutcomeUnknown`: publishing it again may
//! deliver it twice (give messages a `message_id` and let consumers drop
//! duplicates), not publishing it may lose it. Promises of the old client
//! mean nothing to the new one ([`Error::ForeignPromise`]).
//!
//! # Example: reconnecting in your own code
//!
//! ```no_run
//! use puka::{Client, Consume, Delivery, Error, QueueDeclare};
//! use std::time::Duration;
//!
//! fn handle(d: &Delivery) {
//!     // `d.redelivered`: it may have been handled before a loss.
//!     println!("{:?} (redelivered: {})", d.body_str(), d.redelivered);
//! }
//!
//! /// One connection's life: returns only with the error that ended it.
//! fn consume(url: &str) -> Result<(), Error> {
//!     let mut client = Client::new(url)?;
//!     let connected = client.handshake();
//!     client.wait_timeout(connected, Duration::from_secs(10))?;
//!     // The topology is declared again on every connection.
//!     let declared = client.queue_declare(QueueDeclare::named("jobs").durable());
//!     client.wait(declared)?;
//!     let consumer = client.basic_consume_with(Consume::queue("jobs").prefetch(10));
//!     loop {
//!         let d = client.wait(consumer)?;
//!         handle(&d);
//!         client.basic_ack(&d)?;
//!     }
//! }
//!
//! let url = "amqp://guest:guest@127.0.0.1:5672/%2f";
//! loop {
//!     match consume(url) {
//!         Err(e) if e.is_connection_error() => {
//!             eprintln!("connection lost ({e}); connecting again in 1 s");
//!             std::thread::sleep(Duration::from_secs(1));
//!         }
//!         Err(e) => return Err(e), // e.g. the queue was declared with other arguments
//!         Ok(()) => return Ok(()),
//!     }
//! }
//! # Ok::<(), puka::Error>(())
//! ```
//!
//! [`Client`]: crate::Client
//! [`Client::next_connection_event`]: crate::Client::next_connection_event
//! [`Client::is_closed`]: crate::Client::is_closed
//! [`ConnectionEvent::Closed`]: crate::ConnectionEvent::Closed
//! [`Options::blocked_timeout`]: crate::Options::blocked_timeout
//! [`Error::HeartbeatTimeout`]: crate::Error::HeartbeatTimeout
//! [`Error::ConnectionForced`]: crate::Error::ConnectionForced
//! [`Error::OutcomeUnknown`]: crate::Error::OutcomeUnknown
//! [`Error::UnknownDeliveryTag`]: crate::Error::UnknownDeliveryTag
//! [`Error::ForeignPromise`]: crate::Error::ForeignPromise
