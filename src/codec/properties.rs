//! The 14 properties of the `basic` class, carried in a content header.
//!
//! On the wire the properties are a list of 16-bit flag words followed by the
//! values of the properties that are present. Bit 15 of the first word stands
//! for the first property (content-type) and bit 2 for the fourteenth
//! (cluster-id); bit 0 of every word means another flag word follows.

use super::table::{FieldTable, FieldValue, Timestamp};
use super::wire::{put_shortstr, Reader, ShortString};
use super::CodecError;
use bytes::{BufMut, BytesMut};

const CONTENT_TYPE: u16 = 1 << 15;
const CONTENT_ENCODING: u16 = 1 << 14;
const HEADERS: u16 = 1 << 13;
const DELIVERY_MODE: u16 = 1 << 12;
const PRIORITY: u16 = 1 << 11;
const CORRELATION_ID: u16 = 1 << 10;
const REPLY_TO: u16 = 1 << 9;
const EXPIRATION: u16 = 1 << 8;
const MESSAGE_ID: u16 = 1 << 7;
const TIMESTAMP: u16 = 1 << 6;
const TYPE: u16 = 1 << 5;
const USER_ID: u16 = 1 << 4;
const APP_ID: u16 = 1 << 3;
const CLUSTER_ID: u16 = 1 << 2;
/// The flags of the properties kept out of line.
const REST: u16 = CONTENT_ENCODING
    | HEADERS
    | CORRELATION_ID
    | REPLY_TO
    | EXPIRATION
    | MESSAGE_ID
    | TIMESTAMP
    | TYPE
    | USER_ID
    | APP_ID
    | CLUSTER_ID;
/// Bit 0 of a flag word: another flag word follows.
const CONTINUATION: u16 = 1;

/// The properties of a message: the `basic` class content-header fields.
///
/// Every property is optional. Build them with the `with_*` methods and read
/// them with the getter of the same name; strings decoded from the wire are
/// slices of the received frame, not copies.
///
/// ```
/// use puka::codec::{BasicProperties, FieldValue};
/// let props = BasicProperties::default()
///     .with_content_type("application/json")
///     .persistent()
///     .with_header("x-retry", 3i32);
/// assert_eq!(props.content_type(), Some("application/json"));
/// assert!(props.is_persistent());
/// assert_eq!(
///     props.headers().and_then(|h| h.get("x-retry")).and_then(FieldValue::as_i64),
///     Some(3)
/// );
///
/// let mut buf = bytes::BytesMut::new();
/// props.encode(&mut buf).unwrap();
/// let payload = buf.freeze();
/// let mut r = puka::codec::wire::Reader::new(&payload);
/// assert_eq!(BasicProperties::decode(&mut r).unwrap(), props);
/// ```
#[derive(Clone, Default)]
pub struct BasicProperties {
    content_type: Option<ShortString>,
    delivery_mode: Option<u8>,
    priority: Option<u8>,
    /// The other eleven, boxed so a message that has none of them (and the
    /// `Delivery` that carries it) stays small and allocates nothing.
    rest: Option<Box<Fields>>,
}

/// The properties kept out of line.
#[derive(Debug, Clone, Default, PartialEq)]
struct Fields {
    content_encoding: Option<ShortString>,
    headers: Option<FieldTable>,
    correlation_id: Option<ShortString>,
    reply_to: Option<ShortString>,
    expiration: Option<ShortString>,
    message_id: Option<ShortString>,
    timestamp: Option<Timestamp>,
    kind: Option<ShortString>,
    user_id: Option<ShortString>,
    app_id: Option<ShortString>,
    cluster_id: Option<ShortString>,
}

impl BasicProperties {
    fn fields(&self) -> &Fields {
        self.rest.as_deref().unwrap_or(&NO_FIELDS)
    }

    fn fields_mut(&mut self) -> &mut Fields {
        self.rest.get_or_insert_with(Box::default)
    }

    /// The `delivery_mode` of a message the broker may lose on restart.
    pub const DELIVERY_MODE_TRANSIENT: u8 = 1;
    /// The `delivery_mode` of a message a durable queue writes to disk.
    pub const DELIVERY_MODE_PERSISTENT: u8 = 2;

    /// No properties set, as a constant.
    pub const EMPTY: BasicProperties = BasicProperties {
        content_type: None,
        delivery_mode: None,
        priority: None,
        rest: None,
    };

    /// Whether no property is set (the property flags are 0).
    pub fn is_empty(&self) -> bool {
        self.flags() == 0
    }

    /// No properties set; the same as [`BasicProperties::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The MIME content type of the body.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The MIME content encoding of the body.
    pub fn content_encoding(&self) -> Option<&str> {
        self.fields().content_encoding.as_deref()
    }

    /// The application headers.
    pub fn headers(&self) -> Option<&FieldTable> {
        self.fields().headers.as_ref()
    }

    /// The delivery mode: [`Self::DELIVERY_MODE_TRANSIENT`] or
    /// [`Self::DELIVERY_MODE_PERSISTENT`].
    pub fn delivery_mode(&self) -> Option<u8> {
        self.delivery_mode
    }

    /// The message priority.
    pub fn priority(&self) -> Option<u8> {
        self.priority
    }

    /// The correlation id, usually the message id of the request this replies to.
    pub fn correlation_id(&self) -> Option<&str> {
        self.fields().correlation_id.as_deref()
    }

    /// The queue to send replies to.
    pub fn reply_to(&self) -> Option<&str> {
        self.fields().reply_to.as_deref()
    }

    /// The per-message TTL, in milliseconds as a decimal string (RabbitMQ's
    /// interpretation).
    pub fn expiration(&self) -> Option<&str> {
        self.fields().expiration.as_deref()
    }

    /// The application's message id.
    pub fn message_id(&self) -> Option<&str> {
        self.fields().message_id.as_deref()
    }

    /// The message timestamp.
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.fields().timestamp
    }

    /// The AMQP `type` property: the application's message type name.
    pub fn kind(&self) -> Option<&str> {
        self.fields().kind.as_deref()
    }

    /// The id of the user who published the message (RabbitMQ checks it
    /// against the connection's user).
    pub fn user_id(&self) -> Option<&str> {
        self.fields().user_id.as_deref()
    }

    /// The id of the publishing application.
    pub fn app_id(&self) -> Option<&str> {
        self.fields().app_id.as_deref()
    }

    /// The cluster id (deprecated in AMQP 0-9-1).
    pub fn cluster_id(&self) -> Option<&str> {
        self.fields().cluster_id.as_deref()
    }

    /// Whether the delivery mode is [`Self::DELIVERY_MODE_PERSISTENT`].
    pub fn is_persistent(&self) -> bool {
        self.delivery_mode == Some(Self::DELIVERY_MODE_PERSISTENT)
    }

    /// The application headers, created empty if they were not set.
    pub fn headers_mut(&mut self) -> &mut FieldTable {
        self.fields_mut()
            .headers
            .get_or_insert_with(FieldTable::new)
    }

    /// Sets the MIME content type of the body.
    #[must_use]
    pub fn with_content_type(mut self, v: impl Into<ShortString>) -> Self {
        self.content_type = Some(v.into());
        self
    }

    /// Sets the MIME content encoding of the body.
    #[must_use]
    pub fn with_content_encoding(mut self, v: impl Into<ShortString>) -> Self {
        self.fields_mut().content_encoding = Some(v.into());
        self
    }

    /// Sets the application headers, replacing any set before.
    #[must_use]
    pub fn with_headers(mut self, headers: FieldTable) -> Self {
        self.fields_mut().headers = Some(headers);
        self
    }

    /// Sets one application header, creating the headers table if needed.
    #[must_use]
    pub fn with_header(
        mut self,
        key: impl Into<ShortString>,
        value: impl Into<FieldValue>,
    ) -> Self {
        self.headers_mut().insert(key, value);
        self
    }

    /// Sets the delivery mode.
    #[must_use]
    pub fn with_delivery_mode(mut self, v: u8) -> Self {
        self.delivery_mode = Some(v);
        self
    }

    /// Sets the delivery mode to [`Self::DELIVERY_MODE_PERSISTENT`].
    #[must_use]
    pub fn persistent(self) -> Self {
        self.with_delivery_mode(Self::DELIVERY_MODE_PERSISTENT)
    }

    /// Sets the message priority.
    #[must_use]
    pub fn with_priority(mut self, v: u8) -> Self {
        self.priority = Some(v);
        self
    }

    /// Sets the correlation id.
    #[must_use]
    pub fn with_correlation_id(mut self, v: impl Into<ShortString>) -> Self {
        self.fields_mut().correlation_id = Some(v.into());
        self
    }

    /// Sets the queue to send replies to.
    #[must_use]
    pub fn with_reply_to(mut self, v: impl Into<ShortString>) -> Self {
        self.fields_mut().reply_to = Some(v.into());
        self
    }

    /// Sets the per-message TTL, in milliseconds as a decimal string, such as
    /// `"60000"`.
    #[must_use]
    pub fn with_expiration(mut self, v: impl Into<ShortString>) -> Self {
        self.fields_mut().expiration = Some(v.into());
        self
    }

    /// Sets the application's message id.
    #[must_use]
    pub fn with_message_id(mut self, v: impl Into<ShortString>) -> Self {
        self.fields_mut().message_id = Some(v.into());
        self
    }

    /// Sets the message timestamp.
    #[must_use]
    pub fn with_timestamp(mut self, v: impl Into<Timestamp>) -> Self {
        self.fields_mut().timestamp = Some(v.into());
        self
    }

    /// Sets the AMQP `type` property: the application's message type name.
    #[must_use]
    pub fn with_kind(mut self, v: impl Into<ShortString>) -> Self {
        self.fields_mut().kind = Some(v.into());
        self
    }

    /// Sets the id of the publishing user.
    #[must_use]
    pub fn with_user_id(mut self, v: impl Into<ShortString>) -> Self {
        self.fields_mut().user_id = Some(v.into());
        self
    }

    /// Sets the id of the publishing application.
    #[must_use]
    pub fn with_app_id(mut self, v: impl Into<ShortString>) -> Self {
        self.fields_mut().app_id = Some(v.into());
        self
    }

    /// Sets the cluster id.
    #[must_use]
    pub fn with_cluster_id(mut self, v: impl Into<ShortString>) -> Self {
        self.fields_mut().cluster_id = Some(v.into());
        self
    }

    /// Reads the property flags and the properties they say are present.
    ///
    /// Further flag words (announced by bit 0) are read and their bits
    /// ignored, as is the unused bit 1 of the first word: this protocol
    /// defines only 14 properties.
    ///
    /// # Errors
    /// [`CodecError::Truncated`] if the input ends early,
    /// [`CodecError::InvalidUtf8`] for a string property that is not UTF-8,
    /// and the errors of [`FieldTable::decode`] for the headers.
    pub fn decode(r: &mut Reader<'_>) -> Result<BasicProperties, CodecError> {
        Self::decode_fields(r)
    }

    /// Writes one property-flags word, then the properties that are set.
    ///
    /// # Errors
    /// [`CodecError::ShortStringTooLong`] for a string property over 255
    /// bytes, and the errors of [`FieldTable::encode`] for the headers. On
    /// error `dst` is left as it was.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), CodecError> {
        let start = dst.len();
        let result = self.encode_inner(dst);
        if result.is_err() {
            dst.truncate(start);
        }
        result
    }

    /// The property-flags word for the properties that are set.
    fn flags(&self) -> u16 {
        let bit = |present: bool, flag: u16| if present { flag } else { 0 };
        bit(self.content_type.is_some(), CONTENT_TYPE)
            | bit(self.fields().content_encoding.is_some(), CONTENT_ENCODING)
            | bit(self.fields().headers.is_some(), HEADERS)
            | bit(self.delivery_mode.is_some(), DELIVERY_MODE)
            | bit(self.priority.is_some(), PRIORITY)
            | bit(self.fields().correlation_id.is_some(), CORRELATION_ID)
            | bit(self.fields().reply_to.is_some(), REPLY_TO)
            | bit(self.fields().expiration.is_some(), EXPIRATION)
            | bit(self.fields().message_id.is_some(), MESSAGE_ID)
            | bit(self.fields().timestamp.is_some(), TIMESTAMP)
            | bit(self.fields().kind.is_some(), TYPE)
            | bit(self.fields().user_id.is_some(), USER_ID)
            | bit(self.fields().app_id.is_some(), APP_ID)
            | bit(self.fields().cluster_id.is_some(), CLUSTER_ID)
    }

    fn decode_fields(r: &mut Reader<'_>) -> Result<BasicProperties, CodecError> {
        let flags = r.u16("property flags")?;
        let mut word = flags;
        // Each word consumes two bytes, so this ends with the input at worst.
        while word & CONTINUATION != 0 {
            word = r.u16("property flags")?;
        }
        if flags & !(CONTINUATION | 0b10) == 0 {
            // No property present: nothing to allocate.
            return Ok(BasicProperties::EMPTY);
        }

        let shortstr = |r: &mut Reader<'_>, flag: u16, what| -> Result<_, CodecError> {
            if flags & flag != 0 {
                r.shortstr(what).map(Some)
            } else {
                Ok(None)
            }
        };
        let octet = |r: &mut Reader<'_>, flag: u16, what| -> Result<_, CodecError> {
            if flags & flag != 0 {
                r.u8(what).map(Some)
            } else {
                Ok(None)
            }
        };

        let content_type = shortstr(r, CONTENT_TYPE, "content-type")?;
        let content_encoding = shortstr(r, CONTENT_ENCODING, "content-encoding")?;
        let headers = if flags & HEADERS != 0 {
            Some(FieldTable::decode(r)?)
        } else {
            None
        };
        let delivery_mode = octet(r, DELIVERY_MODE, "delivery-mode")?;
        let priority = octet(r, PRIORITY, "priority")?;
        let correlation_id = shortstr(r, CORRELATION_ID, "correlation-id")?;
        let reply_to = shortstr(r, REPLY_TO, "reply-to")?;
        let expiration = shortstr(r, EXPIRATION, "expiration")?;
        let message_id = shortstr(r, MESSAGE_ID, "message-id")?;
        let timestamp = if flags & TIMESTAMP != 0 {
            Some(Timestamp(r.u64("timestamp")?))
        } else {
            None
        };
        let kind = shortstr(r, TYPE, "type")?;
        let user_id = shortstr(r, USER_ID, "user-id")?;
        let app_id = shortstr(r, APP_ID, "app-id")?;
        let cluster_id = shortstr(r, CLUSTER_ID, "cluster-id")?;

        let rest = if flags & REST != 0 {
            Some(Box::new(Fields {
                content_encoding,
                headers,
                correlation_id,
                reply_to,
                expiration,
                message_id,
                timestamp,
                kind,
                user_id,
                app_id,
                cluster_id,
            }))
        } else {
            None
        };
        Ok(BasicProperties {
            content_type,
            delivery_mode,
            priority,
            rest,
        })
    }

    fn encode_inner(&self, dst: &mut BytesMut) -> Result<(), CodecError> {
        fn shortstr(dst: &mut BytesMut, s: &Option<ShortString>) -> Result<(), CodecError> {
            match s {
                Some(s) => put_shortstr(dst, s.as_bytes()),
                None => Ok(()),
            }
        }

        dst.put_u16(self.flags());
        shortstr(dst, &self.content_type)?;
        shortstr(dst, &self.fields().content_encoding)?;
        if let Some(headers) = &self.fields().headers {
            headers.encode(dst)?;
        }
        if let Some(v) = self.delivery_mode {
            dst.put_u8(v);
        }
        if let Some(v) = self.priority {
            dst.put_u8(v);
        }
        shortstr(dst, &self.fields().correlation_id)?;
        shortstr(dst, &self.fields().reply_to)?;
        shortstr(dst, &self.fields().expiration)?;
        shortstr(dst, &self.fields().message_id)?;
        if let Some(t) = self.fields().timestamp {
            dst.put_u64(t.0);
        }
        shortstr(dst, &self.fields().kind)?;
        shortstr(dst, &self.fields().user_id)?;
        shortstr(dst, &self.fields().app_id)?;
        shortstr(dst, &self.fields().cluster_id)
    }
}

/// What [`BasicProperties`] without a box reads as.
static NO_FIELDS: Fields = Fields {
    content_encoding: None,
    headers: None,
    correlation_id: None,
    reply_to: None,
    expiration: None,
    message_id: None,
    timestamp: None,
    kind: None,
    user_id: None,
    app_id: None,
    cluster_id: None,
};

impl PartialEq for BasicProperties {
    fn eq(&self, other: &Self) -> bool {
        // No box and a box of nothing are the same properties.
        self.content_type == other.content_type
            && self.delivery_mode == other.delivery_mode
            && self.priority == other.priority
            && self.fields() == other.fields()
    }
}

impl std::fmt::Debug for BasicProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.fields();
        f.debug_struct("BasicProperties")
            .field("content_type", &self.content_type)
            .field("content_encoding", &p.content_encoding)
            .field("headers", &p.headers)
            .field("delivery_mode", &self.delivery_mode)
            .field("priority", &self.priority)
            .field("correlation_id", &p.correlation_id)
            .field("reply_to", &p.reply_to)
            .field("expiration", &p.expiration)
            .field("message_id", &p.message_id)
            .field("timestamp", &p.timestamp)
            .field("kind", &p.kind)
            .field("user_id", &p.user_id)
            .field("app_id", &p.app_id)
            .field("cluster_id", &p.cluster_id)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::MAX_NESTING_DEPTH;
    use bytes::Bytes;

    fn encode(p: &BasicProperties) -> BytesMut {
        let mut dst = BytesMut::new();
        p.encode(&mut dst).unwrap();
        dst
    }

    fn decode(bytes: &[u8]) -> Result<BasicProperties, CodecError> {
        let payload = Bytes::copy_from_slice(bytes);
        let mut r = Reader::new(&payload);
        let p = BasicProperties::decode(&mut r)?;
        assert_eq!(r.remaining(), 0, "properties did not consume their input");
        Ok(p)
    }

    fn all_set() -> BasicProperties {
        BasicProperties::new()
            .with_content_type("application/json")
            .with_content_encoding("gzip")
            .with_header("x-retry", 3i32)
            .with_header("x-origin", "test")
            .with_delivery_mode(BasicProperties::DELIVERY_MODE_TRANSIENT)
            .with_priority(9)
            .with_correlation_id("corr-1")
            .with_reply_to("amq.rabbitmq.reply-to")
            .with_expiration("60000")
            .with_message_id("msg-1")
            .with_timestamp(1_700_000_000)
            .with_kind("order.created")
            .with_user_id("guest")
            .with_app_id("puka-tests")
            .with_cluster_id("c1")
    }

    #[test]
    fn all_properties_round_trip() {
        let p = all_set();
        let bytes = encode(&p);
        // Bits 15 down to 2, and no continuation.
        assert_eq!(&bytes[..2], &[0xFF, 0xFC]);
        let q = decode(&bytes).unwrap();
        assert_eq!(q, p);
        assert_eq!(q.content_type(), Some("application/json"));
        assert_eq!(q.content_encoding(), Some("gzip"));
        assert_eq!(
            q.headers().and_then(|h| h.get("x-retry")),
            Some(&FieldValue::I32(3))
        );
        assert_eq!(q.delivery_mode(), Some(1));
        assert!(!q.is_persistent());
        assert_eq!(q.priority(), Some(9));
        assert_eq!(q.correlation_id(), Some("corr-1"));
        assert_eq!(q.reply_to(), Some("amq.rabbitmq.reply-to"));
        assert_eq!(q.expiration(), Some("60000"));
        assert_eq!(q.message_id(), Some("msg-1"));
        assert_eq!(q.timestamp(), Some(Timestamp(1_700_000_000)));
        assert_eq!(q.kind(), Some("order.created"));
        assert_eq!(q.user_id(), Some("guest"));
        assert_eq!(q.app_id(), Some("puka-tests"));
        assert_eq!(q.cluster_id(), Some("c1"));
    }

    #[test]
    fn each_property_alone_uses_its_own_bit() {
        let cases: [(BasicProperties, u16); 14] = [
            (BasicProperties::new().with_content_type("a"), 15),
            (BasicProperties::new().with_content_encoding("a"), 14),
            (BasicProperties::new().with_headers(FieldTable::new()), 13),
            (BasicProperties::new().with_delivery_mode(2), 12),
            (BasicProperties::new().with_priority(1), 11),
            (BasicProperties::new().with_correlation_id("a"), 10),
            (BasicProperties::new().with_reply_to("a"), 9),
            (BasicProperties::new().with_expiration("a"), 8),
            (BasicProperties::new().with_message_id("a"), 7),
            (BasicProperties::new().with_timestamp(Timestamp(1)), 6),
            (BasicProperties::new().with_kind("a"), 5),
            (BasicProperties::new().with_user_id("a"), 4),
            (BasicProperties::new().with_app_id("a"), 3),
            (BasicProperties::new().with_cluster_id("a"), 2),
        ];
        for (p, bit) in cases {
            let bytes = encode(&p);
            assert_eq!(&bytes[..2], &(1u16 << bit).to_be_bytes(), "{p:?}");
            assert_eq!(decode(&bytes).unwrap(), p);
        }
    }

    #[test]
    fn none_set_is_a_zero_flags_word() {
        let p = BasicProperties::default();
        assert_eq!(&encode(&p)[..], &[0x00, 0x00]);
        assert_eq!(decode(&[0x00, 0x00]).unwrap(), p);
        assert_eq!(p.content_type(), None);
        assert_eq!(p.headers(), None);
        assert!(!p.is_persistent());
    }

    #[test]
    fn byte_exact_content_type_and_delivery_mode() {
        let p = BasicProperties::new()
            .with_content_type("text/plain")
            .persistent();
        let expected: &[u8] = &[
            0x90, 0x00, // flags: bit 15 (content-type) | bit 12 (delivery-mode)
            10, b't', b'e', b'x', b't', b'/', b'p', b'l', b'a', b'i', b'n', // shortstr
            2,    // delivery-mode: persistent
        ];
        assert_eq!(&encode(&p)[..], expected);
        let q = decode(expected).unwrap();
        assert_eq!(q, p);
        assert!(q.is_persistent());
    }

    #[test]
    fn truncated_input_is_an_error() {
        assert!(matches!(decode(&[]), Err(CodecError::Truncated(_))));
        assert!(matches!(decode(&[0x90]), Err(CodecError::Truncated(_))));
        // Flags promise content-type and delivery-mode; the string is short.
        assert!(matches!(
            decode(b"\x90\x00\x0atext"),
            Err(CodecError::Truncated(_))
        ));
        // Continuation bit set but no second word.
        assert!(matches!(
            decode(&[0x00, 0x01]),
            Err(CodecError::Truncated(_))
        ));
        // Every prefix of a full encoding fails cleanly.
        let full = encode(&all_set());
        for n in 0..full.len() {
            let payload = Bytes::copy_from_slice(&full[..n]);
            let mut r = Reader::new(&payload);
            assert!(BasicProperties::decode(&mut r).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn continuation_words_are_read_and_ignored() {
        // First word: content-type plus continuation; second word: unknown
        // bits plus continuation; third word: ends the list.
        let bytes = b"\x80\x01\xff\xff\x00\x00\x04text";
        let p = decode(bytes).unwrap();
        assert_eq!(p, BasicProperties::new().with_content_type("text"));
        // Unused bit 1 of the first word is ignored too.
        let p = decode(b"\x00\x02").unwrap();
        assert_eq!(p, BasicProperties::new());
    }

    #[test]
    fn invalid_utf8_string_property_is_rejected() {
        assert!(matches!(
            decode(b"\x80\x00\x01\xff"),
            Err(CodecError::InvalidUtf8(_))
        ));
    }

    #[test]
    fn header_errors_propagate() {
        // A header value with an unknown tag.
        assert_eq!(
            decode(b"\x20\x00\x00\x00\x00\x03\x01aQ"),
            Err(CodecError::UnknownFieldType(b'Q'))
        );
        // Headers nested too deep refuse to encode, leaving dst as it was.
        let mut t = FieldTable::new();
        for _ in 0..MAX_NESTING_DEPTH {
            t = FieldTable::new().with("k", t);
        }
        let p = BasicProperties::new().with_headers(t);
        let mut dst = BytesMut::from(&b"x"[..]);
        assert_eq!(
            p.encode(&mut dst),
            Err(CodecError::NestingTooDeep(MAX_NESTING_DEPTH))
        );
        assert_eq!(&dst[..], b"x");
    }

    #[test]
    fn long_string_property_fails_to_encode() {
        let p = BasicProperties::new().with_message_id("m".repeat(256));
        let mut dst = BytesMut::new();
        assert_eq!(p.encode(&mut dst), Err(CodecError::ShortStringTooLong(256)));
        assert!(dst.is_empty());
    }

    #[test]
    fn decoded_strings_share_the_input_buffer() {
        let input = encode(&all_set()).freeze();
        let mut r = Reader::new(&input);
        let p = BasicProperties::decode(&mut r).unwrap();
        let range = input.as_ptr_range();
        // Values longer than the inline capacity are slices of the input.
        for v in [p.app_id(), p.content_type(), p.message_id()]
            .into_iter()
            .flatten()
        {
            let shared = range.contains(&v.as_ptr());
            assert_eq!(shared, v.len() > ShortString::INLINE_CAPACITY, "{v}");
        }
    }

    #[test]
    fn headers_mut_and_with_header() {
        let mut p = BasicProperties::new();
        assert!(p.headers().is_none());
        p.headers_mut().insert("a", 1u8);
        let p = p.with_header("b", true).with_header("a", 2u8);
        let h = p.headers().unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h.get("a"), Some(&FieldValue::U8(2)));
        // with_headers replaces the whole table.
        let p = p.with_headers(FieldTable::new());
        assert_eq!(p.headers(), Some(&FieldTable::new()));
    }
}
