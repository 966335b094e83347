//! The wire codec: bytes ⇄ frames, methods, content headers and field tables.
//!
//! **Unstable**: public only with the `unstable` feature, and outside
//! semver — any release may change it.
//!
//! Nothing here owns a socket or any state beyond one frame. Decoding reads from
//! a [`bytes::BytesMut`] read buffer and hands out [`bytes::Bytes`] slices of it,
//! so message bodies and short strings are never copied. Every length read from
//! the network is checked against what remains (and frame sizes against the
//! negotiated `frame_max`) before anything is allocated, and every violation is
//! a typed [`CodecError`] that knows the reply code the connection must close with.

mod error;
pub mod frame;
pub mod method;
pub mod properties;
pub mod table;
pub mod wire;

pub use error::CodecError;
pub use frame::{ContentHeader, Frame, FRAME_END, FRAME_MIN_SIZE, PROTOCOL_HEADER};
pub use method::Method;
pub use properties::BasicProperties;
pub use table::{Decimal, FieldArray, FieldTable, FieldValue, Timestamp, MAX_NESTING_DEPTH};
pub use wire::ShortString;

/// Reply codes defined by AMQP 0-9-1 (section "constants" of the spec) and
/// used by RabbitMQ.
pub mod reply_code {
    /// Indicates that the method completed successfully.
    pub const REPLY_SUCCESS: u16 = 200;
    /// The client attempted to transfer content larger than the server could accept.
    pub const CONTENT_TOO_LARGE: u16 = 311;
    /// A mandatory message could not be routed to any queue.
    pub const NO_ROUTE: u16 = 312;
    /// An immediate message could not be delivered to any consumer.
    pub const NO_CONSUMERS: u16 = 313;
    /// An operator intervened to close the connection.
    pub const CONNECTION_FORCED: u16 = 320;
    /// The client tried to work with an unknown virtual host.
    pub const INVALID_PATH: u16 = 402;
    /// The client attempted to work with a server entity it has no access to.
    pub const ACCESS_REFUSED: u16 = 403;
    /// The client attempted to work with a server entity that does not exist.
    pub const NOT_FOUND: u16 = 404;
    /// The client attempted to work with a server entity it has no access to because another client is working with it.
    pub const RESOURCE_LOCKED: u16 = 405;
    /// The client requested a method that was not allowed because some precondition failed.
    pub const PRECONDITION_FAILED: u16 = 406;
    /// The sender sent a malformed frame that the recipient could not decode.
    pub const FRAME_ERROR: u16 = 501;
    /// The sender sent a frame that contained illegal values for one or more fields.
    pub const SYNTAX_ERROR: u16 = 502;
    /// The client sent an invalid sequence of frames.
    pub const COMMAND_INVALID: u16 = 503;
    /// The client attempted to work with a channel that had not been correctly opened.
    pub const CHANNEL_ERROR: u16 = 504;
    /// The peer sent a frame that was not expected, usually in the context of a content header and body.
    pub const UNEXPECTED_FRAME: u16 = 505;
    /// The server could not complete the method because it lacked sufficient resources.
    pub const RESOURCE_ERROR: u16 = 506;
    /// The client tried to work with some entity in a manner that is prohibited by the server.
    pub const NOT_ALLOWED: u16 = 530;
    /// The client tried to use functionality that is not implemented in the server.
    pub const NOT_IMPLEMENTED: u16 = 540;
    /// The server could not complete the method because of an internal error.
    pub const INTERNAL_ERROR: u16 = 541;
}
