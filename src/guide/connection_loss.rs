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
//! # Automatic recovery (opt-in)
//!
//! With [`Options::recovery`] set, a connection lost to a socket error or
//! end of stream, a heartbeat timeout, or a node shutting down (320
//! `CONNECTION_FORCED`) is recovered instead of ending the client:
//!
//! - [`ConnectionEvent::Disconnected`] comes instead of `Closed`; pending
//!   operations fail as above (they are never replayed: replaying a delete or
//!   a purge is not safe), unconfirmed publishes with `OutcomeUnknown`, but
//!   consumers stay;
//! - after a backoff (doubling from [`Recovery::initial_backoff`] to
//!   [`Recovery::max_backoff`], jittered ±25 %, part of
//!   [`Client::poll_timeout`]), [`ConnectionEvent::Reconnecting`] and a new
//!   walk through the broker addresses; a reactor re-registers the new
//!   socket with [`Client::update_registration`], `wait` and `run_loop` do
//!   it themselves;
//! - [`ConnectionEvent::Reconnected`], then what this client declared is
//!   restored in dependency order — transaction mode first, exchanges and
//!   queues, then bindings and consumers — and
//!   [`ConnectionEvent::Restored`] says when that is done: operations sent
//!   between the two may race the restore (a publish through a binding not
//!   yet restored is dropped as unroutable), so wait for `Restored` when
//!   they need the topology. A server-named queue comes back under a new name
//!   ([`ConnectionEvent::QueueRenamed`]) and its bindings and consumers
//!   follow it; an auto-delete queue whose consumers have all left, and a
//!   queue with `x-expires`, are not resurrected; a consumer the broker
//!   cancelled is not revived; consumer tags stay the same, and so do their
//!   prefetch windows (a channel-wide one, [`Qos::global`], is set again
//!   before its consumer starts); whatever the
//!   broker refuses comes as [`ConnectionEvent::RecoveryFailed`], except a
//!   consumer's `basic.consume`: its refusal (say, 404 for a queue that is
//!   gone) ends that consumer's promise with the error, and the consumer
//!   is not restored again;
//! - each consumer's promise goes on yielding deliveries; messages not
//!   acked before the loss come again with `redelivered` set, and acking a
//!   delivery from before the loss fails locally;
//! - operations made while disconnected fail at once with the error that
//!   ended the connection (while a reconnection's handshake is under way
//!   they are queued and sent once it is open, ahead of the restore: wait
//!   for [`ConnectionEvent::Restored`] before work that needs the topology).
//!
//! Never recovered: your own close, a refused login or vhost, a protocol
//! violation, or a failure of the very first connect. With
//! [`Recovery::max_attempts`] reached, the connection ends as without
//! recovery.
//!
//! ```no_run
//! use puka::{Client, ConnectionEvent, Options, Recovery};
//! let options = Options::default().recovery(Some(Recovery::default()));
//! let mut client = Client::with_addresses(
//!     &["amqp://127.0.0.1:5701/%2f", "amqp://127.0.0.1:5702/%2f"],
//!     options,
//! )?;
//! client.set_connection_callback(|_, event| match event {
//!     ConnectionEvent::Disconnected(e) => eprintln!("lost: {e}"),
//!     ConnectionEvent::Reconnected { address } => eprintln!("back on {address}"),
//!     ConnectionEvent::Restored => eprintln!("topology restored"),
//!     _ => {}
//! });
//! # Ok::<(), puka::Error>(())
//! ```
//!
//! Without recovery, go on after a loss as below.
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
//! /// One connection's life: the error that ended it, or `Ok` once the
//! /// consumer ended as asked.
//! fn consume(url: &str) -> Result<(), Error> {
//!     let mut client = Client::new(url)?;
//!     let connected = client.handshake();
//!     client.wait_timeout(connected, Duration::from_secs(10))?;
//!     // The topology is declared again on every connection.
//!     let declared = client.queue_declare(QueueDeclare::named("jobs").durable());
//!     client.wait(declared)?;
//!     let consumer = client.basic_consume_with(Consume::queue("jobs").prefetch(10));
//!     // `None`: the consumer ended as asked (cancelled, or we closed).
//!     while let Some(d) = client.wait(consumer)? {
//!         handle(&d);
//!         client.basic_ack(&d)?;
//!     }
//!     Ok(())
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
//! [`Qos::global`]: crate::Qos::global
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
//!
//! [`Recovery`]: crate::Recovery
//! [`Recovery::initial_backoff`]: crate::Recovery::initial_backoff
//! [`Recovery::max_backoff`]: crate::Recovery::max_backoff
//! [`Recovery::max_attempts`]: crate::Recovery::max_attempts
//! [`Options::recovery`]: crate::Options::recovery
//! [`ConnectionEvent::Disconnected`]: crate::ConnectionEvent::Disconnected
//! [`Client::poll_timeout`]: crate::Client::poll_timeout
//! [`ConnectionEvent::Reconnecting`]: crate::ConnectionEvent::Reconnecting
//! [`Client::update_registration`]: crate::Client::update_registration
//! [`ConnectionEvent::Reconnected`]: crate::ConnectionEvent::Reconnected
//! [`ConnectionEvent::QueueRenamed`]: crate::ConnectionEvent::QueueRenamed
//! [`ConnectionEvent::RecoveryFailed`]: crate::ConnectionEvent::RecoveryFailed
//! [`ConnectionEvent::Restored`]: crate::ConnectionEvent::Restored
