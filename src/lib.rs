#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]
#![forbid(unsafe_code)]
// Without `unstable`, the codec and the state machine are private: what the
// client does not use of them is dead code there, and that is fine.
#![cfg_attr(not(feature = "unstable"), allow(dead_code, unused_imports))]

#[macro_use]
mod trace;
mod client;
#[cfg(feature = "unstable")]
pub mod codec;
#[cfg(not(feature = "unstable"))]
mod codec;
mod error;
pub mod guide;
#[cfg(feature = "unstable")]
pub mod protocol;
#[cfg(not(feature = "unstable"))]
mod protocol;
#[cfg(feature = "unstable")]
pub mod recover;
#[cfg(not(feature = "unstable"))]
mod recover;
mod rng;
mod url;

pub use client::{
    AddressOrder, Client, ConnectedAddress, ConnectionEvent, Consume, Deadlines, Options, Promise,
    PromiseId, Qos, RawResult, Recovery, Requeue, Resolve, Unroutable, WhenFull,
};
#[cfg(feature = "tls")]
pub use client::{ServerVerification, TlsOptions};
pub use codec::method::{
    ExchangeBind, ExchangeDeclare, ExchangeDelete, ExchangeUnbind, QueueBind, QueueDeclare,
    QueueDeclareOk, QueueDelete, QueueUnbind,
};
pub use codec::{
    BasicProperties, CodecError, Decimal, FieldArray, FieldTable, FieldValue, ShortString,
    Timestamp, MAX_NESTING_DEPTH,
};
pub use error::{Error, ErrorCategory, Reply};
#[cfg(feature = "tls")]
pub use error::{TlsError, TlsErrorKind};
pub use protocol::negotiate::{Tuned, MAX_FRAME_MAX};
pub use protocol::{AckTiming, Confirms, Stats};
pub use protocol::{Delivery, Returned};
pub use protocol::{ACK_DELAY, CLOSE_OK_GRACE, MAX_IDLE_CHANNELS, MAX_WAITING_OPERATIONS};
pub use url::{ConnectionParams, UrlError, SUPPORTED_AUTH_MECHANISMS};
