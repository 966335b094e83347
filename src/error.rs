//! The public error type: what a promise resolves with when it fails.

use crate::codec::{reply_code, CodecError};
use std::fmt;
use std::io;
use std::sync::Arc;

/// A reply from the broker that closed a channel or the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reply {
    /// The AMQP reply code, e.g. 404.
    pub code: u16,
    /// The broker's reply text, e.g. `NOT_FOUND - no exchange 'x' in vhost '/'`.
    pub text: String,
    /// The class of the method that caused it (0 when none).
    pub class_id: u16,
    /// The method that caused it (0 when none).
    pub method_id: u16,
    /// Whether it closed the whole connection (`connection.close`, or a
    /// login the broker refused by dropping the socket) rather than one
    /// channel (`channel.close`) or one operation.
    pub connection: bool,
}

impl Reply {
    /// A reply with no causing method, closing no more than a channel.
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Reply {
            code,
            text: text.into(),
            class_id: 0,
            method_id: 0,
            connection: false,
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text)?;
        if self.class_id != 0 {
            write!(f, " (method {}.{})", self.class_id, self.method_id)?;
        }
        Ok(())
    }
}

/// Everything a promise can fail with.
///
/// Broker replies are mapped to a variant by reply code: the channel errors
/// (311, 312, 313, 403, 404, 405, 406) fail only the operation that caused
/// them; the connection errors (320, 402, 501–506, 530, 540, 541) fail every
/// pending promise. The [`Reply`] they carry holds the broker's text and the
/// method that caused it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 311: the message was larger than the broker accepts.
    #[error("content too large: {0}")]
    ContentTooLarge(Reply),
    /// 312: a mandatory message could not be routed to any queue.
    #[error("no route: {0}")]
    NoRoute(Reply),
    /// 313: an immediate message could not be delivered to a consumer.
    #[error("no consumers: {0}")]
    NoConsumers(Reply),
    /// 403: access refused (permissions, bad credentials, exclusive consumer).
    #[error("access refused: {0}")]
    AccessRefused(Reply),
    /// 404: the exchange or queue does not exist.
    #[error("not found: {0}")]
    NotFound(Reply),
    /// 405: the resource is locked by another connection (exclusive queue).
    #[error("resource locked: {0}")]
    ResourceLocked(Reply),
    /// 406: a precondition failed (redeclare with other arguments, double ack).
    #[error("precondition failed: {0}")]
    PreconditionFailed(Reply),
    /// 320: the broker or an operator closed the connection.
    #[error("connection forced: {0}")]
    ConnectionForced(Reply),
    /// 402: the virtual host does not exist or may not be used.
    #[error("invalid path: {0}")]
    InvalidPath(Reply),
    /// 501: the broker received a malformed frame.
    #[error("frame error: {0}")]
    FrameError(Reply),
    /// 502: a frame carried illegal values.
    #[error("syntax error: {0}")]
    SyntaxError(Reply),
    /// 503: an invalid sequence of frames.
    #[error("command invalid: {0}")]
    CommandInvalid(Reply),
    /// 504: a channel was used that was not open.
    #[error("channel error: {0}")]
    ChannelError(Reply),
    /// 505: a frame arrived where it was not expected.
    #[error("unexpected frame: {0}")]
    UnexpectedFrame(Reply),
    /// 506: the broker lacked resources.
    #[error("resource error: {0}")]
    ResourceError(Reply),
    /// 530: an operation the broker does not allow.
    #[error("not allowed: {0}")]
    NotAllowed(Reply),
    /// 540: functionality the broker does not implement.
    #[error("not implemented: {0}")]
    NotImplemented(Reply),
    /// 541: the broker hit an internal error.
    #[error("internal error: {0}")]
    InternalError(Reply),
    /// A reply code that has no variant of its own.
    #[error("server error: {0}")]
    Server(Reply),
    /// The broker sent bytes that do not decode (a malformed frame, a bad
    /// length, nesting too deep); the connection was closed with the
    /// error's reply code. A broker bug or not a broker: report it.
    #[error("malformed frame from the peer: {0}")]
    Protocol(#[from] CodecError),
    /// The peer broke a protocol rule above the codec (e.g. content on the
    /// wrong channel, a reply nothing asked for); the connection was
    /// closed with this reply. A broker bug: report it.
    #[error("protocol rule broken by the peer: {0}")]
    ProtocolViolation(Reply),
    /// The socket failed or the peer went away.
    #[error("connection broken: {0}")]
    ConnectionBroken(Arc<io::Error>),
    /// The TLS layer ended the connection: most often the server's
    /// certificate was refused ([`TlsErrorKind::ServerCertificate`]), and
    /// the message says what it was checked against and what to change.
    #[cfg(feature = "tls")]
    #[error("tls: {0}")]
    Tls(TlsError),
    /// No bytes arrived for two heartbeat intervals.
    #[error("heartbeat timeout: no data from the broker for {0:?}")]
    HeartbeatTimeout(std::time::Duration),
    /// The connection was closed by this client.
    #[error("connection closed")]
    ConnectionClosed,
    /// Every channel the connection may open (`channel_max`, negotiated
    /// with the broker) is in use by consumers and the publish channel; the
    /// operation was not started (pooled operations wait for a channel
    /// instead). A local limit, not a broker reply: the connection is fine.
    #[error("all {channel_max} channels are in use (consumers hold one each)")]
    NoChannel {
        /// The negotiated `channel_max`.
        channel_max: u16,
    },
    /// The broker kept the connection blocked (`connection.blocked`, a
    /// memory or disk alarm) longer than `Options::blocked_timeout`; the
    /// connection was dropped.
    #[error("the broker kept the connection blocked for over {0:?}")]
    BlockedTimeout(std::time::Duration),
    /// The TCP connect or the handshake did not finish in time.
    #[error("connection timed out")]
    ConnectTimeout,
    /// The broker negotiated a value the spec forbids (e.g. frame_max < 4096).
    #[error("bad tune from broker: {0}")]
    BadTune(&'static str),
    /// The broker does not offer an authentication mechanism this client has.
    #[error("no common authentication mechanism (server offers {0})")]
    NoAuthMechanism(String),
    /// The broker nacked a published message.
    #[error("message nacked by the broker")]
    Nacked,
    /// The broker cancelled the consumer (`basic.cancel`: its queue was
    /// deleted, or the queue's node failed). A consumer over several queues
    /// ends as a whole when any one of them is cancelled; this names that
    /// queue.
    #[error("consumer {consumer_tag:?} on queue {queue:?} cancelled by the broker")]
    ConsumerCancelled {
        /// The queue whose consumer the broker cancelled.
        queue: String,
        /// That consumer's tag.
        consumer_tag: String,
    },
    /// The operation was sent, but the client cannot know whether the broker
    /// carried it out: the channel or connection ended before its reply (or
    /// publisher confirm) arrived, or [`crate::Client::close`] gave up
    /// waiting. The cause is inside. Check (e.g. look for the message)
    /// before retrying something that must not happen twice.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(Box<Error>),
    /// The promise or delivery belongs to another `Client`; nothing was done.
    #[error("promise or delivery of another client")]
    ForeignPromise,
    /// An ack, nack or reject named a delivery tag that is not outstanding
    /// (already acked, never delivered, or from a closed channel). Nothing
    /// was sent.
    #[error("unknown delivery tag {0}")]
    UnknownDeliveryTag(u64),
    /// An incoming message is larger than the configured maximum.
    #[error("incoming message of {size} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// The announced body size.
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// A value could not be encoded (e.g. a routing key over 255 bytes).
    #[error("invalid argument: {0}")]
    InvalidArgument(CodecError),
    /// The client is configured wrongly and nothing was sent: e.g. an
    /// `amqps://` URL without puka's `tls` feature, or a TLS file that
    /// cannot be read or parsed. Fix the configuration; retrying will not
    /// help.
    #[error("configuration: {0}")]
    Config(String),
    /// A promise was resolved as another type than the operation gives
    /// (a bug in a [`crate::Resolve`] impl, or a forged id).
    #[error("the promise resolved with a result of another type")]
    TypeMismatch,
    /// The promise id is not (or no longer) known to this client.
    #[error("unknown or already consumed promise")]
    UnknownPromise,
    /// `wait_timeout` returned before the promise resolved.
    #[error("timed out waiting for the promise")]
    Timeout,
    /// The URL could not be parsed.
    #[error("bad url: {0}")]
    Url(#[from] crate::url::UrlError),
    /// The client is at one of its bounds (queued bytes over
    /// `Options::write_high_water`, `Options::max_unconfirmed` publishes in
    /// flight, or too many operations waiting for a channel) and the
    /// operation was not started. Drive the connection (`wait`, `run_loop`,
    /// or `on_write` in a reactor) and retry once [`crate::Client::can_publish`]
    /// (for publishes) is true.
    #[error("the client is at a bound (queued bytes, unconfirmed publishes or waiting operations); drive the connection and retry")]
    WouldBlock,
}

/// What kind of failure an [`Error`] is, and so what to do about it
/// ([`Error::category`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCategory {
    /// The program used the API wrongly (a stale or foreign promise, an ack
    /// of a delivery not outstanding, an argument that cannot be encoded).
    /// Nothing was sent; fix the code.
    Misuse,
    /// The configuration is wrong (URL, TLS files, a missing feature, a
    /// mechanism the broker does not offer). Nothing useful was sent.
    Config,
    /// The broker refused one operation (a channel-level reply: 404, 406,
    /// a nack, a cancelled consumer...); the connection is fine.
    Refused,
    /// The broker (or a protocol violation) closed the whole connection.
    ConnectionClosedByPeer,
    /// The connection was lost or closed (socket error, heartbeat or
    /// blocked timeout, our own close).
    ConnectionLost,
    /// The operation was sent but its result never came: it may have
    /// happened.
    OutcomeUnknown,
    /// A client bound was reached ([`Error::WouldBlock`]): drive the
    /// connection and retry.
    Backpressure,
    /// A wait gave up ([`Error::Timeout`]); the operation goes on.
    Timeout,
}

impl Error {
    /// What kind of failure this is: see [`ErrorCategory`].
    ///
    /// ```
    /// use puka::{Error, ErrorCategory};
    /// assert_eq!(Error::Timeout.category(), ErrorCategory::Timeout);
    /// assert_eq!(Error::Nacked.category(), ErrorCategory::Refused);
    /// ```
    pub fn category(&self) -> ErrorCategory {
        match self {
            Error::UnknownPromise
            | Error::ForeignPromise
            | Error::UnknownDeliveryTag(_)
            | Error::InvalidArgument(_)
            | Error::TypeMismatch
            | Error::NoChannel { .. } => ErrorCategory::Misuse,
            Error::Config(_) | Error::Url(_) | Error::NoAuthMechanism(_) => ErrorCategory::Config,
            Error::OutcomeUnknown(_) => ErrorCategory::OutcomeUnknown,
            Error::WouldBlock => ErrorCategory::Backpressure,
            Error::Timeout => ErrorCategory::Timeout,
            Error::ConnectionBroken(_)
            | Error::HeartbeatTimeout(_)
            | Error::BlockedTimeout(_)
            | Error::ConnectTimeout
            | Error::ConnectionClosed => ErrorCategory::ConnectionLost,
            #[cfg(feature = "tls")]
            Error::Tls(e) => match e.kind {
                TlsErrorKind::ServerCertificate | TlsErrorKind::RefusedByPeer => {
                    ErrorCategory::Config
                }
                TlsErrorKind::Protocol => ErrorCategory::ConnectionLost,
            },
            Error::Nacked | Error::ConsumerCancelled { .. } => ErrorCategory::Refused,
            Error::Protocol(_)
            | Error::ProtocolViolation(_)
            | Error::BadTune(_)
            | Error::MessageTooLarge { .. } => ErrorCategory::ConnectionClosedByPeer,
            e if e.is_connection_error() => ErrorCategory::ConnectionClosedByPeer,
            _ => ErrorCategory::Refused,
        }
    }

    /// Maps a broker reply (from `channel.close` or `connection.close`) to
    /// the variant for its code.
    pub fn from_reply(reply: Reply) -> Error {
        match reply.code {
            reply_code::CONTENT_TOO_LARGE => Error::ContentTooLarge(reply),
            reply_code::NO_ROUTE => Error::NoRoute(reply),
            reply_code::NO_CONSUMERS => Error::NoConsumers(reply),
            reply_code::ACCESS_REFUSED => Error::AccessRefused(reply),
            reply_code::NOT_FOUND => Error::NotFound(reply),
            reply_code::RESOURCE_LOCKED => Error::ResourceLocked(reply),
            reply_code::PRECONDITION_FAILED => Error::PreconditionFailed(reply),
            reply_code::CONNECTION_FORCED => Error::ConnectionForced(reply),
            reply_code::INVALID_PATH => Error::InvalidPath(reply),
            reply_code::FRAME_ERROR => Error::FrameError(reply),
            reply_code::SYNTAX_ERROR => Error::SyntaxError(reply),
            reply_code::COMMAND_INVALID => Error::CommandInvalid(reply),
            reply_code::CHANNEL_ERROR => Error::ChannelError(reply),
            reply_code::UNEXPECTED_FRAME => Error::UnexpectedFrame(reply),
            reply_code::RESOURCE_ERROR => Error::ResourceError(reply),
            reply_code::NOT_ALLOWED => Error::NotAllowed(reply),
            reply_code::NOT_IMPLEMENTED => Error::NotImplemented(reply),
            reply_code::INTERNAL_ERROR => Error::InternalError(reply),
            _ => Error::Server(reply),
        }
    }

    /// The broker's reply, for errors that carry one.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            Error::ContentTooLarge(r)
            | Error::NoRoute(r)
            | Error::NoConsumers(r)
            | Error::AccessRefused(r)
            | Error::NotFound(r)
            | Error::ResourceLocked(r)
            | Error::PreconditionFailed(r)
            | Error::ConnectionForced(r)
            | Error::InvalidPath(r)
            | Error::FrameError(r)
            | Error::SyntaxError(r)
            | Error::CommandInvalid(r)
            | Error::ChannelError(r)
            | Error::UnexpectedFrame(r)
            | Error::ResourceError(r)
            | Error::NotAllowed(r)
            | Error::NotImplemented(r)
            | Error::InternalError(r)
            | Error::Server(r)
            | Error::ProtocolViolation(r) => Some(r),
            _ => None,
        }
    }

    /// The AMQP reply code, for errors that carry one (broker replies and
    /// protocol violations by the peer).
    pub fn reply_code(&self) -> Option<u16> {
        match self {
            Error::Protocol(e) => Some(e.reply_code()),
            _ => self.reply().map(|r| r.code),
        }
    }

    /// Whether this error ended the whole connection (as opposed to one
    /// channel or one operation).
    pub fn is_connection_error(&self) -> bool {
        match self {
            Error::ConnectionBroken(_)
            | Error::HeartbeatTimeout(_)
            | Error::BlockedTimeout(_)
            | Error::ConnectionClosed
            | Error::ConnectTimeout
            | Error::BadTune(_)
            | Error::NoAuthMechanism(_)
            | Error::Protocol(_)
            | Error::ProtocolViolation(_) => true,
            #[cfg(feature = "tls")]
            Error::Tls(_) => true,
            Error::OutcomeUnknown(cause) => cause.is_connection_error(),
            // The spec makes 320, 402 and every 5xx code connection
            // errors; a 403 or 404 is one when it came in connection.close
            // (a refused login, an unknown vhost).
            _ => self
                .reply()
                .is_some_and(|r| r.connection || r.code == 320 || r.code == 402 || r.code >= 500),
        }
    }

    /// Whether the operation's outcome is unknown ([`Error::OutcomeUnknown`]):
    /// it may have taken effect.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Error::OutcomeUnknown(_))
    }

    /// `self` as the cause of an unknown outcome (unchanged when it is one).
    pub(crate) fn unknown_outcome(self) -> Error {
        match self {
            Error::OutcomeUnknown(_) => self,
            e => Error::OutcomeUnknown(Box::new(e)),
        }
    }

    /// A socket error, or the TLS error it carries ([`Error::Tls`]).
    pub(crate) fn io(e: io::Error) -> Error {
        #[cfg(feature = "tls")]
        if let Some(tls) = e.get_ref().and_then(|e| e.downcast_ref::<TlsError>()) {
            return Error::Tls(tls.clone());
        }
        Error::ConnectionBroken(Arc::new(e))
    }
}

/// Why TLS ended a connection ([`Error::Tls`]).
#[cfg(feature = "tls")]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct TlsError {
    /// What failed.
    pub kind: TlsErrorKind,
    /// rustls's description, and for a refused certificate what it was
    /// checked against and what to change.
    pub message: String,
}

/// What failed in TLS ([`TlsError::kind`]).
#[cfg(feature = "tls")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsErrorKind {
    /// This client refused the server's certificate: an issuer it does not
    /// trust, a name the certificate does not have, expired, revoked...
    /// Fix the trust settings ([`crate::TlsOptions::verification`]) or the
    /// broker's certificate; retrying will not help.
    ServerCertificate,
    /// The server ended the handshake with an alert (e.g. it does not
    /// trust this client's certificate).
    RefusedByPeer,
    /// Anything else: not TLS on the other end, a malformed record.
    Protocol,
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_and_connection_errors_agree() {
        let channel = Error::from_reply(Reply::new(404, "NOT_FOUND"));
        assert_eq!(channel.category(), ErrorCategory::Refused);
        assert!(!channel.is_connection_error());
        let forced = Error::from_reply(Reply::new(320, "CONNECTION_FORCED"));
        assert_eq!(forced.category(), ErrorCategory::ConnectionClosedByPeer);
        assert!(forced.is_connection_error());
        let login = Error::from_reply(Reply {
            connection: true,
            ..Reply::new(403, "ACCESS_REFUSED")
        });
        assert_eq!(login.category(), ErrorCategory::ConnectionClosedByPeer);
        let unknown = forced.clone().unknown_outcome();
        assert_eq!(unknown.category(), ErrorCategory::OutcomeUnknown);
        assert!(unknown.is_connection_error(), "looks through to the cause");
        let local = Error::NoChannel { channel_max: 2047 };
        assert_eq!(local.category(), ErrorCategory::Misuse);
        assert!(!local.is_connection_error());
        assert_eq!(Error::Config("x".into()).category(), ErrorCategory::Config);
        assert_eq!(Error::WouldBlock.category(), ErrorCategory::Backpressure);
        assert_eq!(
            Error::HeartbeatTimeout(std::time::Duration::from_secs(1)).category(),
            ErrorCategory::ConnectionLost
        );
        // The two kinds of protocol breakage read differently.
        let codec = Error::Protocol(CodecError::InvalidValue("x")).to_string();
        let rule = Error::ProtocolViolation(Reply::new(505, "x")).to_string();
        assert_ne!(codec.split(':').next(), rule.split(':').next());
    }
}
