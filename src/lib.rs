#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]
#![forbid(unsafe_code)]

#[macro_use]
mod trace;
mod client;
pub mod codec;
pub mod error;
pub mod guide;
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
pub use protocol::{AckTiming, Confirms, Stats};
pub use protocol::{Delivery, Returned};
