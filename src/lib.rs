//! # puka
//!
//! A single-threaded AMQP 0-9-1 client for RabbitMQ, in the style of Python's
//! [puka](https://github.com/majek/puka): every operation returns a promise at
//! once, and the user chooses how to drive the connection — block on one promise
//! with `wait`, run callbacks from a loop, or plug the socket into an existing
//! `mio` reactor. There are no hidden threads and no async runtime.
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
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]
#![forbid(unsafe_code)]

mod client;
pub mod codec;
pub mod error;
pub mod protocol;
pub mod url;

#[cfg(feature = "tls")]
pub use client::TlsOptions;
pub use client::{
    AddressOrder, Client, ConnectedAddress, ConnectionEvent, Consume, Options, Promise, PromiseId,
    RawResult, Resolve, WhenFull,
};
pub use codec::method::{
    ExchangeBind, ExchangeDeclare, ExchangeDelete, ExchangeUnbind, QueueBind, QueueDeclare,
    QueueDeclareOk, QueueDelete, QueueUnbind,
};
pub use codec::{BasicProperties, FieldArray, FieldTable, FieldValue, ShortString, Timestamp};
pub use error::{Error, Reply};
pub use protocol::{AckTiming, Confirms};
pub use protocol::{Delivery, Returned};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
