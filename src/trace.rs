//! Optional diagnostics: with the `tracing` feature, these macros are
//! `tracing`'s (target `puka`); without it they expand to nothing, so no
//! argument is evaluated and nothing is compiled in.
//!
//! Never pass a password, a secret or a message body to them.

#[cfg(feature = "tracing")]
macro_rules! tr_debug { ($($t:tt)*) => { ::tracing::debug!(target: "puka", $($t)*) } }
#[cfg(feature = "tracing")]
macro_rules! tr_info { ($($t:tt)*) => { ::tracing::info!(target: "puka", $($t)*) } }
#[cfg(feature = "tracing")]
macro_rules! tr_warn { ($($t:tt)*) => { ::tracing::warn!(target: "puka", $($t)*) } }
#[cfg(feature = "tracing")]
macro_rules! tr_error { ($($t:tt)*) => { ::tracing::error!(target: "puka", $($t)*) } }

#[cfg(not(feature = "tracing"))]
macro_rules! tr_debug {
    ($($t:tt)*) => {
        ()
    };
}
#[cfg(not(feature = "tracing"))]
macro_rules! tr_info {
    ($($t:tt)*) => {
        ()
    };
}
#[cfg(not(feature = "tracing"))]
macro_rules! tr_warn {
    ($($t:tt)*) => {
        ()
    };
}
#[cfg(not(feature = "tracing"))]
macro_rules! tr_error {
    ($($t:tt)*) => {
        ()
    };
}

/// Enters a client's span for the rest of the block (nothing without the
/// `tracing` feature).
macro_rules! in_span {
    ($client:expr) => {
        #[cfg(feature = "tracing")]
        let _span = $client.span.clone().entered();
    };
}
