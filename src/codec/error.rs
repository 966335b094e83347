use super::reply_code;

/// Everything that can be wrong with bytes on the wire, or with a value that
/// cannot be encoded.
///
/// Each decode error maps, through [`CodecError::reply_code`], to the AMQP reply
/// code the connection must be closed with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The peer answered with a protocol header instead of a frame: it does not
    /// speak AMQP 0-9-1 (the bytes are the header it offered).
    #[error("peer does not speak AMQP 0-9-1; it offered protocol header {0:?}")]
    ProtocolHeader([u8; 8]),
    /// The first bytes from the peer are neither a frame nor an AMQP protocol header.
    #[error("peer does not speak AMQP: unexpected bytes {0:?}")]
    NotAmqp([u8; 8]),
    /// A frame announced a payload larger than the negotiated `frame_max` allows.
    #[error("frame of {size} bytes exceeds frame_max {max}")]
    FrameTooLarge {
        /// Total frame size announced (header, payload and frame end).
        size: u64,
        /// The negotiated limit.
        max: u32,
    },
    /// A frame did not end with the frame-end octet 0xCE.
    #[error("frame end octet is {0:#04x}, expected 0xce")]
    BadFrameEnd(u8),
    /// A frame of a type this protocol does not define.
    #[error("unknown frame type {0}")]
    UnknownFrameType(u8),
    /// A heartbeat frame that was not on channel 0 or had a payload.
    #[error("malformed heartbeat frame (channel {channel}, payload {size} bytes)")]
    BadHeartbeat {
        /// The channel the heartbeat came on.
        channel: u16,
        /// Its payload size.
        size: u32,
    },
    /// A payload ended before all of its fields were read.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A method whose class and method ids this protocol does not define.
    #[error("unknown method {class_id}.{method_id}")]
    UnknownMethod {
        /// The class id read.
        class_id: u16,
        /// The method id read.
        method_id: u16,
    },
    /// A field-table value with a type tag RabbitMQ does not define.
    #[error("unknown field type tag {0:#04x}")]
    UnknownFieldType(u8),
    /// Field tables or arrays nested deeper than [`super::MAX_NESTING_DEPTH`].
    #[error("field tables nested deeper than {0}")]
    NestingTooDeep(usize),
    /// A string on the wire that is not valid UTF-8.
    #[error("invalid utf-8 in {0}")]
    InvalidUtf8(&'static str),
    /// A short string of more than 255 bytes cannot be encoded.
    #[error("short string of {0} bytes exceeds 255")]
    ShortStringTooLong(usize),
    /// A long string, table or array of more than `u32::MAX` bytes cannot be encoded.
    #[error("value of {0} bytes exceeds the u32 length limit")]
    LongValueTooLong(usize),
    /// A value the spec forbids, such as a frame_max below 4096.
    #[error("invalid value: {0}")]
    InvalidValue(&'static str),
}

impl CodecError {
    /// The AMQP reply code a connection must be closed with when it receives
    /// input that raised this error.
    pub fn reply_code(&self) -> u16 {
        match self {
            CodecError::ProtocolHeader(_)
            | CodecError::NotAmqp(_)
            | CodecError::FrameTooLarge { .. }
            | CodecError::BadFrameEnd(_)
            | CodecError::UnknownFrameType(_)
            | CodecError::BadHeartbeat { .. } => reply_code::FRAME_ERROR,
            CodecError::UnknownMethod { .. } => reply_code::COMMAND_INVALID,
            CodecError::Truncated(_)
            | CodecError::UnknownFieldType(_)
            | CodecError::NestingTooDeep(_)
            | CodecError::InvalidUtf8(_)
            | CodecError::ShortStringTooLong(_)
            | CodecError::LongValueTooLong(_)
            | CodecError::InvalidValue(_) => reply_code::SYNTAX_ERROR,
        }
    }
}
