//! Errors, and what to do with each.
//!
//! Every promise fails with an [`Error`]; so do the few calls that return
//! `Result` directly (acks, `try_basic_publish`, `flush`, the `wait*`
//! calls). The first question is always: is the connection still usable?
//! [`Error::is_connection_error`] answers it.
//!
//! # Broker replies, by code
//!
//! The broker's replies map to a variant by their AMQP reply code, and the
//! [`Reply`](crate::Reply) inside holds the code, the broker's text and the
//! method that caused it ([`Error::reply`], [`Error::reply_code`]).
//!
//! - **Channel errors** — 311 [`ContentTooLarge`](crate::Error::ContentTooLarge),
//!   312 [`NoRoute`](crate::Error::NoRoute), 313 [`NoConsumers`](crate::Error::NoConsumers),
//!   403 [`AccessRefused`](crate::Error::AccessRefused),
//!   404 [`NotFound`](crate::Error::NotFound),
//!   405 [`ResourceLocked`](crate::Error::ResourceLocked),
//!   406 [`PreconditionFailed`](crate::Error::PreconditionFailed): the broker closed
//!   the channel of one operation. Only that operation (or that consumer)
//!   fails; the hidden channel is replaced and the connection goes on. Fix
//!   the request: declare the missing exchange, redeclare with the same
//!   arguments, use another name for the exclusive queue.
//! - **Connection errors** — 320 [`ConnectionForced`](crate::Error::ConnectionForced),
//!   402 [`InvalidPath`](crate::Error::InvalidPath), 501–506, 530
//!   [`NotAllowed`](crate::Error::NotAllowed), 540, 541 (and a 403 that came in
//!   `connection.close`, such as a refused login): the broker closed the
//!   connection. Every pending promise fails with the same error; the client
//!   is finished. Make a new [`Client`](crate::Client) if you want to go on
//!   (see [connection loss](super::connection_loss)).
//!
//! # Errors of the connection itself
//!
//! [`ConnectionBroken`](crate::Error::ConnectionBroken) (the socket failed),
//! [`HeartbeatTimeout`](crate::Error::HeartbeatTimeout) (the broker was silent
//! for two heartbeat intervals), [`ConnectTimeout`](crate::Error::ConnectTimeout),
//! [`BlockedTimeout`](crate::Error::BlockedTimeout) (the broker kept the
//! connection blocked longer than
//! [`Options::blocked_timeout`](crate::Options::blocked_timeout): wait for
//! its alarm to clear, then connect again),
//! [`Protocol`](crate::Error::Protocol) and
//! [`ProtocolViolation`](crate::Error::ProtocolViolation) (the broker broke the
//! protocol), [`BadTune`](crate::Error::BadTune),
//! [`NoAuthMechanism`](crate::Error::NoAuthMechanism),
//! [`MessageTooLarge`](crate::Error::MessageTooLarge) (an incoming body over
//! [`Options::max_message_size`](crate::Options::max_message_size); the
//! message stays in its queue) and
//! [`ConnectionClosed`](crate::Error::ConnectionClosed) (this client closed it):
//! all end the connection and fail every pending promise (a consumer ended
//! by this client's own close gets `Ok(None)` instead: see
//! [promises](super::promises)).
//!
//! With the `tls` feature, `Error::Tls` ends the connection too. Its
//! `TlsError::kind` says what failed: `ServerCertificate` (this client
//! refused the broker's certificate: the message names what it was checked
//! against — the webpki roots, `TlsOptions::ca_file`, the platform
//! verifier — or the name it lacks, and what to change; retrying will not
//! help), `RefusedByPeer` (the broker ended the handshake, e.g. it does not
//! trust the client certificate) or `Protocol` (no TLS on the other end).
//!
//! # Errors of one operation
//!
//! - [`OutcomeUnknown(cause)`](crate::Error::OutcomeUnknown): the operation was
//!   sent, but its reply or publisher confirm never came (the channel or
//!   connection ended first, or `close` gave up waiting). It may have taken
//!   effect: check (look for the message, the queue) before retrying
//!   anything that must not happen twice. The cause is inside;
//!   [`Error::is_connection_error`] looks through it and
//!   [`Error::is_outcome_unknown`] tests for it.
//! - [`Nacked`](crate::Error::Nacked): the broker refused responsibility for a
//!   published message; publish it again.
//! - [`NoRoute`](crate::Error::NoRoute) on a publish: a `mandatory` message no
//!   queue took (with confirms on; without, it comes back as
//!   [`ConnectionEvent::Returned`](crate::ConnectionEvent::Returned)).
//! - [`ConsumerCancelled { queue, .. }`](crate::Error::ConsumerCancelled): the
//!   broker cancelled a consumer, because `queue` was deleted or its node
//!   failed. It is the consumer promise's last result; the connection is
//!   fine. Declare the queue again and start a new consumer if you still
//!   want its messages.
//! - [`WouldBlock`](crate::Error::WouldBlock): the client is at one of its bounds
//!   and did nothing (see [backpressure](super::backpressure)). Drive the
//!   connection and retry once [`Client::can_publish`](crate::Client::can_publish)
//!   is true.
//! - [`NoChannel { channel_max }`](crate::Error::NoChannel): consumers and the
//!   publish channel hold every channel the connection may open. A local
//!   limit; nothing was sent. Cancel consumers, consume several queues
//!   under one promise ([`Client::basic_consume_multi`](crate::Client::basic_consume_multi)),
//!   or ask for a higher `channel_max` in the URL.
//! - [`Timeout`](crate::Error::Timeout): a `wait_timeout` ran out. The promise is
//!   still valid: wait on it again or [`forget`](crate::Client::forget) it.
//! - [`UnknownDeliveryTag`](crate::Error::UnknownDeliveryTag): an ack, nack or
//!   reject of a delivery that is not outstanding (settled already, taken
//!   with `no_ack`, from a channel that closed, or from another client).
//!   Nothing was sent; if its channel closed, the broker has requeued it.
//!
//! # Mistakes in the calling code
//!
//! - [`ForeignPromise`](crate::Error::ForeignPromise): a promise made by another
//!   `Client` — typically one kept across a reconnect. Nothing was done.
//! - [`UnknownPromise`](crate::Error::UnknownPromise): every result of the promise
//!   was taken already, it was forgotten, or its consumer ended (see
//!   [promises](super::promises)).
//! - [`InvalidArgument`](crate::Error::InvalidArgument) and [`Url`](crate::Error::Url):
//!   a value that cannot be encoded (a routing key over 255 bytes) or a bad
//!   URL; nothing was sent.
//!
//! # Example
//!
//! ```
//! use puka::{Error, Reply};
//!
//! fn what_to_do(e: &Error) -> &'static str {
//!     match e {
//!         Error::OutcomeUnknown(_) => "check whether it happened before retrying",
//!         Error::WouldBlock => "drive the connection, then retry",
//!         Error::Timeout => "wait again: the promise is still valid",
//!         Error::NoChannel { .. } => "cancel a consumer or raise channel_max",
//!         Error::ConsumerCancelled { .. } => "declare the queue and consume again",
//!         e if e.is_connection_error() => "make a new client",
//!         e if e.reply().is_some() => "fix the request; the connection is fine",
//!         _ => "fix the calling code",
//!     }
//! }
//!
//! let e = Error::from_reply(Reply::new(404, "NOT_FOUND - no queue 'jobs'"));
//! assert!(matches!(e, Error::NotFound(_)));
//! assert_eq!(e.reply_code(), Some(404));
//! assert_eq!(what_to_do(&e), "fix the request; the connection is fine");
//!
//! let lost = Error::OutcomeUnknown(Box::new(Error::ConnectionClosed));
//! assert!(lost.is_outcome_unknown() && lost.is_connection_error());
//! assert_eq!(what_to_do(&lost), "check whether it happened before retrying");
//!
//! let forced = Error::from_reply(Reply::new(320, "CONNECTION_FORCED - shutdown"));
//! assert_eq!(what_to_do(&forced), "make a new client");
//! ```
//!
//! [`Error`]: crate::Error
//! [`Error::is_connection_error`]: crate::Error::is_connection_error
//! [`Error::is_outcome_unknown`]: crate::Error::is_outcome_unknown
//! [`Error::reply`]: crate::Error::reply
//! [`Error::reply_code`]: crate::Error::reply_code
