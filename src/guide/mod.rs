//! The guide: how puka works and how to use it well, chapter by chapter.
//!
//! This module holds no code, only documentation, in the manner of rustls's
//! `manual`. The API reference ([`Client`](crate::Client),
//! [`Options`](crate::Options), [`Error`](crate::Error), …) says what each
//! item does; these chapters say how the pieces fit, what happens when, and
//! what to do when something fails. Every example compiles (they are doc
//! tests); those that need a broker are marked `no_run`.
//!
//! Read in this order:
//!
//! 1. [`design`] — what puka is: promises, three ways to drive a
//!    connection, and the layers of the crate.
//! 2. [`promises`] — promises and their lifetime: results are kept until
//!    taken, `forget`, consumers, what ends a promise.
//! 3. [`timing`] — when acks and publishes leave the socket:
//!    [`AckTiming`](crate::AckTiming), `flush`, `close`, and drop.
//! 4. [`backpressure`] — the client's bounds, what a publish does at them,
//!    and which calls can block.
//! 5. [`errors`] — every kind of failure and what to do about each.
//! 6. [`connection_loss`] — what a lost connection resolves, and why there
//!    is no automatic recovery yet.
//! 7. [`reactor`] — the contract for running the client in your own `mio`
//!    event loop.
//! 8. [`threads`] — why `Client` is not `Send`, and patterns that work.
//! 9. `sans_io` (with the `unstable` feature) — the protocol state machine alone, driven over any
//!    byte stream.

pub mod backpressure;
pub mod connection_loss;
pub mod design;
pub mod errors;
pub mod promises;
pub mod reactor;
#[cfg(feature = "unstable")]
pub mod sans_io;
pub mod threads;
pub mod timing;
