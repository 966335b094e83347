//! Frames: the unit of the AMQP 0-9-1 wire protocol.
//!
//! ```text
//!   0      1         3             7                  size+7 size+8
//!   +------+---------+-------------+  +------------+  +-----------+
//!   | type | channel |    size     |  |  payload   |  | frame-end |
//!   +------+---------+-------------+  +------------+  +-----------+
//!    octet   short       long          size octets       0xCE
//! ```
//!
//! [`decode`] reads the 7-byte header first and refuses a frame larger than the
//! negotiated `frame_max` before it reserves any memory for it; a short buffer
//! is "need more bytes" (`Ok(None)`), not an error.

use super::method::{BasicPublish, Method};
use super::properties::BasicProperties;
use super::wire::Reader;
use super::CodecError;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The protocol header a client sends first: "AMQP", 0, then version 0-9-1.
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";
/// The octet every frame ends with.
pub const FRAME_END: u8 = 0xCE;
/// The spec's `frame-min-size`: no peer may negotiate a `frame_max` below it,
/// and frames up to this size are accepted before tuning.
pub const FRAME_MIN_SIZE: u32 = 4096;
/// Bytes a frame adds around its payload: the 7-byte header and the frame end.
pub const FRAME_OVERHEAD: u32 = 8;

/// Frame type octet of a method frame.
pub const FRAME_METHOD: u8 = 1;
/// Frame type octet of a content header frame.
pub const FRAME_HEADER: u8 = 2;
/// Frame type octet of a content body frame.
pub const FRAME_BODY: u8 = 3;
/// Frame type octet of a heartbeat frame.
pub const FRAME_HEARTBEAT: u8 = 8;

/// A content header: the class, the total body size and the properties that
/// follow a content-bearing method.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContentHeader {
    /// The class of the method the content belongs to (60 for basic).
    pub class_id: u16,
    /// The total size of the body frames that follow.
    pub body_size: u64,
    /// The message properties.
    pub properties: BasicProperties,
}

impl ContentHeader {
    /// Decodes a content header frame's payload.
    ///
    /// # Errors
    /// A [`CodecError`] when the payload is truncated or malformed.
    pub fn decode(payload: Bytes) -> Result<ContentHeader, CodecError> {
        Self::read(&mut Reader::new(&payload))
    }

    /// Reads a content header from `r`, which a caller has bounded to one
    /// header frame's payload (see [`FrameRef::reader`]).
    ///
    /// # Errors
    /// As [`ContentHeader::decode`].
    pub fn read(r: &mut Reader<'_>) -> Result<ContentHeader, CodecError> {
        let class_id = r.u16("content header class")?;
        // The weight field is unused and must be zero; it is not checked.
        let _weight = r.u16("content header weight")?;
        let body_size = r.u64("content header body size")?;
        let properties = BasicProperties::decode(r)?;
        Ok(ContentHeader {
            class_id,
            body_size,
            properties,
        })
    }

    /// Encodes the payload of a content header frame.
    ///
    /// # Errors
    /// A [`CodecError`] when a property cannot be encoded.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.put_u16(self.class_id);
        dst.put_u16(0);
        dst.put_u64(self.body_size);
        self.properties.encode(dst)
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A method frame.
    Method {
        /// The channel it came on.
        channel: u16,
        /// The method.
        method: Method,
    },
    /// A content header frame.
    Header {
        /// The channel it came on.
        channel: u16,
        /// The header.
        header: ContentHeader,
    },
    /// A content body frame; the payload is a slice of the read buffer.
    Body {
        /// The channel it came on.
        channel: u16,
        /// The body bytes this frame carries.
        payload: Bytes,
    },
    /// A heartbeat frame (always channel 0).
    Heartbeat,
}

impl Frame {
    /// The channel this frame belongs to.
    pub fn channel(&self) -> u16 {
        match self {
            Frame::Method { channel, .. }
            | Frame::Header { channel, .. }
            | Frame::Body { channel, .. } => *channel,
            Frame::Heartbeat => 0,
        }
    }

    /// Appends this frame's bytes to `dst`.
    ///
    /// # Errors
    /// A [`CodecError`] when a field cannot be encoded; `dst` is then left as
    /// it was.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), CodecError> {
        match self {
            Frame::Method { channel, method } => encode_method(dst, *channel, method),
            Frame::Header { channel, header } => {
                encode_frame(dst, FRAME_HEADER, *channel, |d| header.encode(d))
            }
            Frame::Body { channel, payload } => {
                encode_body(dst, *channel, payload);
                Ok(())
            }
            Frame::Heartbeat => {
                encode_heartbeat(dst);
                Ok(())
            }
        }
    }
}

/// Decodes one frame from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole frame (it may then
/// reserve room for the rest of a frame whose header it has seen, never more
/// than `frame_max` nor more than [`RESERVE_AHEAD`] beyond twice the bytes
/// there). On success the frame's bytes are split off `buf`; body
/// payloads and strings are slices of them, not copies.
///
/// # Errors
/// A [`CodecError`] naming what is wrong; the connection must then be closed
/// with [`CodecError::reply_code`].
///
/// ```
/// use bytes::BytesMut;
/// use puka::codec::frame::{decode, Frame};
///
/// let mut buf = BytesMut::from(&[8u8, 0, 0, 0, 0, 0, 0, 0xCE][..]);
/// assert_eq!(decode(&mut buf, 4096).unwrap(), Some(Frame::Heartbeat));
/// assert!(buf.is_empty());
/// assert_eq!(decode(&mut buf, 4096).unwrap(), None);
/// ```
#[inline]
pub fn decode(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, CodecError> {
    let Some(raw) = decode_raw(buf, frame_max)? else {
        return Ok(None);
    };
    let channel = raw.channel;
    let frame = match raw.frame_type {
        FRAME_METHOD => Frame::Method {
            channel,
            method: Method::read(&mut Reader::new(&raw.payload))?,
        },
        FRAME_HEADER => Frame::Header {
            channel,
            header: ContentHeader::read(&mut Reader::new(&raw.payload))?,
        },
        FRAME_BODY => Frame::Body {
            channel,
            payload: raw.payload,
        },
        _ => Frame::Heartbeat,
    };
    Ok(Some(frame))
}

/// A frame whose payload is not parsed yet: what [`decode_raw`] yields, for
/// callers (the protocol state machine) that parse payloads in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// [`FRAME_METHOD`], [`FRAME_HEADER`], [`FRAME_BODY`] or [`FRAME_HEARTBEAT`].
    pub frame_type: u8,
    /// The channel it came on.
    pub channel: u16,
    /// The payload, a slice of the read buffer.
    pub payload: Bytes,
}

/// Splits one frame off the front of `buf` with every frame-level check of
/// [`decode`] (type, size against `frame_max` before any allocation,
/// heartbeat shape, frame end), leaving the payload unparsed.
///
/// # Errors
/// As [`decode`], for the frame-level checks.
pub fn decode_raw(buf: &mut BytesMut, frame_max: u32) -> Result<Option<RawFrame>, CodecError> {
    let head = match check(buf, frame_max)? {
        Check::Whole(head) => head,
        Check::Partial { total } => {
            reserve_rest(buf, total);
            return Ok(None);
        }
        Check::Short => return Ok(None),
    };
    // One shared handle per frame: skip the header, split the payload off,
    // skip the frame end.
    buf.advance(7);
    let payload = buf.split_to(head.size).freeze();
    buf.advance(1);
    Ok(Some(RawFrame {
        frame_type: head.frame_type,
        channel: head.channel,
        payload,
    }))
}

/// Splits every whole frame at the front of `buf` off as one shared buffer,
/// each checked as [`decode_raw`] checks it; iterate them with [`frames`].
///
/// This is the fast way to decode what one socket read brought: the read
/// buffer is split once, not once per frame, and payloads are parsed in
/// place ([`FrameRef::reader`]) or sliced ([`FrameRef::payload`]) only when
/// they must outlive the buffer. The result is empty when `buf` does not
/// start with a whole frame (it then reserves room for the rest of a frame
/// whose header it has seen, bounded as [`decode`] bounds it).
///
/// The walk stops before the first frame that is incomplete or wrong; a
/// wrong frame is only an error once it is at the front, so the frames
/// before it are handled first, as they arrived.
///
/// # Errors
/// As [`decode`], for the frame-level checks of the first frame.
///
/// ```
/// use bytes::BytesMut;
/// use puka::codec::frame::{frames, split_frames, FRAME_HEARTBEAT};
///
/// let heartbeat = [8u8, 0, 0, 0, 0, 0, 0, 0xCE];
/// let mut buf = BytesMut::new();
/// buf.extend_from_slice(&heartbeat);
/// buf.extend_from_slice(&heartbeat);
/// buf.extend_from_slice(&heartbeat[..3]); // the start of a third
/// let whole = split_frames(&mut buf, 4096).unwrap();
/// assert_eq!(frames(&whole).filter(|f| f.frame_type == FRAME_HEARTBEAT).count(), 2);
/// assert_eq!(buf.len(), 3);
/// ```
pub fn split_frames(buf: &mut BytesMut, frame_max: u32) -> Result<Bytes, CodecError> {
    let mut end = 0;
    let mut partial = None;
    loop {
        match check(&buf[end..], frame_max) {
            Ok(Check::Whole(head)) => end += head.size + FRAME_OVERHEAD as usize,
            Ok(Check::Partial { total }) => {
                partial = Some(total);
                break;
            }
            Ok(Check::Short) => break,
            Err(e) if end == 0 => return Err(e),
            Err(_) => break,
        }
    }
    let whole = buf.split_to(end).freeze();
    if let Some(total) = partial {
        reserve_rest(buf, total);
    }
    Ok(whole)
}

/// The most that is reserved ahead of the bytes that arrived for a frame
/// whose start is in the buffer: 64 KiB, or as many bytes as arrived if more.
pub const RESERVE_AHEAD: usize = 64 * 1024;

/// Reserves room for the rest of a frame of `total` bytes (at most
/// `frame_max`: `check` refused anything larger) whose start is in `buf`,
/// but never more than [`RESERVE_AHEAD`] or the bytes already there: a peer
/// that announces a large frame and sends a few bytes of it gets memory in
/// proportion to what it sent, and a large frame that does arrive is moved
/// a few times at most as its buffer doubles.
fn reserve_rest(buf: &mut BytesMut, total: usize) {
    let missing = total.saturating_sub(buf.len());
    buf.reserve(missing.min(buf.len().max(RESERVE_AHEAD)));
}

/// The frames in `buf`, a buffer [`split_frames`] returned. On other bytes
/// it stops at the first frame that is incomplete or does not end with the
/// frame end; it never panics, but it checks nothing else.
#[inline]
pub fn frames(buf: &Bytes) -> Frames<'_> {
    Frames { buf, pos: 0 }
}

/// An iterator over the frames of a buffer: see [`frames`].
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl<'a> Iterator for Frames<'a> {
    type Item = FrameRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<FrameRef<'a>> {
        let rest = self.buf.get(self.pos..)?;
        let header = rest.get(..7)?;
        let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
        let total = size.checked_add(FRAME_OVERHEAD as usize)?;
        if rest.get(total - 1) != Some(&FRAME_END) {
            return None;
        }
        let start = self.pos + 7;
        self.pos += total;
        Some(FrameRef {
            frame_type: header[0],
            channel: u16::from_be_bytes([header[1], header[2]]),
            buf: self.buf,
            start,
            end: start + size,
        })
    }
}

/// One frame of a shared buffer, its payload not parsed yet.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    /// [`FRAME_METHOD`], [`FRAME_HEADER`], [`FRAME_BODY`] or [`FRAME_HEARTBEAT`].
    pub frame_type: u8,
    /// The channel it came on.
    pub channel: u16,
    buf: &'a Bytes,
    start: usize,
    end: usize,
}

impl<'a> FrameRef<'a> {
    /// A reader over the payload, to parse it in place.
    #[inline]
    pub fn reader(&self) -> Reader<'a> {
        Reader::clamped(self.buf, self.start, self.end)
    }

    /// The payload as a slice of the shared buffer (one reference count, no
    /// copy).
    #[inline]
    pub fn payload(&self) -> Bytes {
        self.buf.slice(self.start..self.end)
    }

    /// The payload as a plain slice of the shared buffer, to parse by hand
    /// where a [`Reader`] checks too much.
    #[inline]
    pub fn as_slice(&self) -> &'a [u8] {
        let buf: &'a [u8] = self.buf;
        buf.get(self.start..self.end).unwrap_or_default()
    }

    /// The payload's length.
    #[inline]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the payload is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Decodes the payload as [`decode`] does.
    ///
    /// # Errors
    /// A [`CodecError`] when the payload does not parse.
    #[inline]
    pub fn decode(&self) -> Result<Frame, CodecError> {
        let channel = self.channel;
        Ok(match self.frame_type {
            FRAME_METHOD => Frame::Method {
                channel,
                method: Method::read(&mut self.reader())?,
            },
            FRAME_HEADER => Frame::Header {
                channel,
                header: ContentHeader::read(&mut self.reader())?,
            },
            FRAME_BODY => Frame::Body {
                channel,
                payload: self.payload(),
            },
            _ => Frame::Heartbeat,
        })
    }
}

/// A frame header that passed the checks.
struct Head {
    frame_type: u8,
    channel: u16,
    size: usize,
}

/// What the front of a buffer holds.
enum Check {
    /// A whole frame.
    Whole(Head),
    /// The start of a frame of `total` bytes (header, payload, frame end).
    Partial { total: usize },
    /// Too little to tell.
    Short,
}

/// Every frame-level check of the frame at the front of `buf`, reading only
/// its header and its frame-end octet.
fn check(buf: &[u8], frame_max: u32) -> Result<Check, CodecError> {
    let Some(&frame_type) = buf.first() else {
        return Ok(Check::Short);
    };
    if frame_type == b'A' {
        // A server that cannot speak our version answers with its own
        // protocol header and closes the socket (spec 4.2.2).
        let Some(header) = buf.get(..PROTOCOL_HEADER.len()) else {
            return Ok(Check::Short);
        };
        let mut header8 = [0u8; 8];
        header8.copy_from_slice(header);
        return Err(if &header8[..4] == b"AMQP" {
            CodecError::ProtocolHeader(header8)
        } else {
            CodecError::NotAmqp(header8)
        });
    }
    if !matches!(
        frame_type,
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
    ) {
        return Err(CodecError::UnknownFrameType(frame_type));
    }
    let Some(header) = buf.get(..7) else {
        return Ok(Check::Short);
    };
    let channel = u16::from_be_bytes([header[1], header[2]]);
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]);
    // "A peer MUST NOT send frames larger than the agreed-upon size. A peer
    // that receives an oversized frame MUST signal a connection exception
    // with reply code 501 (frame error)." Checked before any allocation.
    let total = u64::from(size) + u64::from(FRAME_OVERHEAD);
    if total > u64::from(frame_max) {
        return Err(CodecError::FrameTooLarge {
            size: total,
            max: frame_max,
        });
    }
    // Bounded by frame_max above, so it fits in usize.
    let total = total as usize;
    if frame_type == FRAME_HEARTBEAT && (channel != 0 || size != 0) {
        return Err(CodecError::BadHeartbeat { channel, size });
    }
    let Some(&end) = buf.get(total - 1) else {
        return Ok(Check::Partial { total });
    };
    if end != FRAME_END {
        // "If the frame-end octet is not 0xCE, the recipient MUST treat this
        // as a fatal error" — 501 frame-error.
        return Err(CodecError::BadFrameEnd(end));
    }
    Ok(Check::Whole(Head {
        frame_type,
        channel,
        size: size as usize,
    }))
}

/// Writes a frame of `frame_type` whose payload `body` writes, back-filling
/// the size. On error `dst` is truncated back to where it was.
fn encode_frame(
    dst: &mut BytesMut,
    frame_type: u8,
    channel: u16,
    body: impl FnOnce(&mut BytesMut) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    let start = dst.len();
    dst.put_u8(frame_type);
    dst.put_u16(channel);
    dst.put_u32(0);
    if let Err(e) = body(dst) {
        dst.truncate(start);
        return Err(e);
    }
    let size = dst.len() - start - 7;
    let Ok(size32) = u32::try_from(size) else {
        dst.truncate(start);
        return Err(CodecError::LongValueTooLong(size));
    };
    dst[start + 3..start + 7].copy_from_slice(&size32.to_be_bytes());
    dst.put_u8(FRAME_END);
    Ok(())
}

/// Appends a method frame.
///
/// # Errors
/// A [`CodecError`] when a field cannot be encoded; `dst` is then unchanged.
pub fn encode_method(dst: &mut BytesMut, channel: u16, method: &Method) -> Result<(), CodecError> {
    encode_frame(dst, FRAME_METHOD, channel, |d| method.encode(d))
}

/// Appends a `basic.ack` method frame, as [`encode_method`] would, in one
/// piece: a consumer sends one per delivery (or per batch), and the general
/// encoder writes it field by field.
///
/// ```
/// use bytes::BytesMut;
/// use puka::codec::frame::{encode_basic_ack, encode_method};
/// use puka::codec::method::BasicAck;
///
/// let (mut fast, mut general) = (BytesMut::new(), BytesMut::new());
/// encode_basic_ack(&mut fast, 3, 42, true);
/// let ack = BasicAck { delivery_tag: 42, multiple: true };
/// encode_method(&mut general, 3, &ack.into()).unwrap();
/// assert_eq!(fast, general);
/// ```
pub fn encode_basic_ack(dst: &mut BytesMut, channel: u16, delivery_tag: u64, multiple: bool) {
    let c = channel.to_be_bytes();
    let t = delivery_tag.to_be_bytes();
    // Payload: class 60, method 80, the tag, the `multiple` bit: 13 bytes.
    dst.put_slice(&[
        FRAME_METHOD,
        c[0],
        c[1],
        0,
        0,
        0,
        13,
        0,
        60,
        0,
        80,
        t[0],
        t[1],
        t[2],
        t[3],
        t[4],
        t[5],
        t[6],
        t[7],
        u8::from(multiple),
        FRAME_END,
    ]);
}

/// Appends a `basic.get` method frame, as [`encode_method`] would, in one
/// piece and without building a [`Method`]: a get round trip's request
/// (reserved-1 zero).
///
/// ```
/// use bytes::BytesMut;
/// use puka::codec::frame::{encode_basic_get, encode_method};
/// use puka::codec::method::BasicGet;
///
/// let (mut fast, mut general) = (BytesMut::new(), BytesMut::new());
/// encode_basic_get(&mut fast, 3, "jobs", true).unwrap();
/// let get = BasicGet { queue: "jobs".into(), no_ack: true };
/// encode_method(&mut general, 3, &get.into()).unwrap();
/// assert_eq!(fast, general);
/// ```
///
/// # Errors
/// [`CodecError::ShortStringTooLong`] for a queue name over 255 bytes;
/// `dst` is then unchanged.
pub fn encode_basic_get(
    dst: &mut BytesMut,
    channel: u16,
    queue: &str,
    no_ack: bool,
) -> Result<(), CodecError> {
    let c = channel.to_be_bytes();
    let name = queue.as_bytes();
    let len = u8::try_from(name.len()).map_err(|_| CodecError::ShortStringTooLong(name.len()))?;
    // Payload: class 60, method 70, reserved-1 (a short), the queue, the
    // `no-ack` bit: 8 bytes and the name.
    let size = 8 + u32::from(len);
    let z = size.to_be_bytes();
    dst.reserve(size as usize + 8);
    dst.put_slice(&[
        FRAME_METHOD,
        c[0],
        c[1],
        z[0],
        z[1],
        z[2],
        z[3],
        0,
        60,
        0,
        70,
        0,
        0,
        len,
    ]);
    dst.put_slice(name);
    dst.put_slice(&[u8::from(no_ack), FRAME_END]);
    Ok(())
}

/// Appends one body frame carrying `payload` (the caller splits bodies to fit
/// `frame_max`; see [`encode_content`]).
pub fn encode_body(dst: &mut BytesMut, channel: u16, payload: &[u8]) {
    dst.reserve(payload.len() + FRAME_OVERHEAD as usize);
    let ch = channel.to_be_bytes();
    // A payload comes from one frame's worth of a body, below frame_max.
    let len = (payload.len() as u32).to_be_bytes();
    dst.extend_from_slice(&[FRAME_BODY, ch[0], ch[1], len[0], len[1], len[2], len[3]]);
    dst.extend_from_slice(payload);
    dst.extend_from_slice(&[FRAME_END]);
}

/// Appends a heartbeat frame.
pub fn encode_heartbeat(dst: &mut BytesMut) {
    dst.put_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

/// Appends the content header and body frames for a message: the header,
/// then the body split into frames of at most `frame_max` bytes each.
///
/// "A peer MUST NOT send frames larger than the agreed-upon size"; a body
/// of zero bytes has no body frame at all.
///
/// # Errors
/// A [`CodecError`] when a property cannot be encoded or `frame_max` is too
/// small to carry any body; `dst` is then unchanged.
pub fn encode_content(
    dst: &mut BytesMut,
    channel: u16,
    class_id: u16,
    properties: &BasicProperties,
    body: &[u8],
    frame_max: u32,
) -> Result<(), CodecError> {
    let start = dst.len();
    let header_result = encode_frame(dst, FRAME_HEADER, channel, |d| {
        d.put_u16(class_id);
        d.put_u16(0);
        d.put_u64(body.len() as u64);
        properties.encode(d)
    });
    header_result?;
    if dst.len() - start > frame_max as usize {
        dst.truncate(start);
        return Err(CodecError::InvalidValue(
            "content header larger than frame_max",
        ));
    }
    let chunk = frame_max.saturating_sub(FRAME_OVERHEAD) as usize;
    if chunk == 0 && !body.is_empty() {
        dst.truncate(start);
        return Err(CodecError::InvalidValue("frame_max too small for a body"));
    }
    for part in body.chunks(chunk.max(1)) {
        encode_body(dst, channel, part);
    }
    Ok(())
}

/// Appends a whole `basic.publish`: method, content header and body frames,
/// without building a [`Method`] value (the publishing hot path).
///
/// # Errors
/// A [`CodecError`] when the exchange or routing key is over 255 bytes, a
/// property cannot be encoded, or the method frame exceeds `frame_max`; `dst`
/// is then unchanged.
#[allow(clippy::too_many_arguments)]
pub fn encode_basic_publish(
    dst: &mut BytesMut,
    channel: u16,
    exchange: &str,
    routing_key: &str,
    mandatory: bool,
    immediate: bool,
    properties: &BasicProperties,
    body: &[u8],
    frame_max: u32,
) -> Result<(), CodecError> {
    let (ex, rk) = (exchange.as_bytes(), routing_key.as_bytes());
    let ex_len = u8::try_from(ex.len()).map_err(|_| CodecError::ShortStringTooLong(ex.len()))?;
    let rk_len = u8::try_from(rk.len()).map_err(|_| CodecError::ShortStringTooLong(rk.len()))?;
    // class, method, ticket, two short strings, the bits octet.
    let method_size = 4 + 2 + 1 + ex.len() + 1 + rk.len() + 1;
    let method_total = method_size + FRAME_OVERHEAD as usize;
    if method_total > frame_max as usize {
        return Err(CodecError::InvalidValue(
            "method frame larger than frame_max",
        ));
    }
    let chunk = frame_max.saturating_sub(FRAME_OVERHEAD) as usize;
    if chunk == 0 && !body.is_empty() {
        return Err(CodecError::InvalidValue("frame_max too small for a body"));
    }
    let body_frames = body.len().div_ceil(chunk.max(1));
    dst.reserve(method_total + 64 + body.len() + body_frames * FRAME_OVERHEAD as usize);
    let start = dst.len();

    // The method frame, built on the stack and appended once.
    let mut m = [0u8; 8 + 7 + 2 * 256 + 1];
    let ch = channel.to_be_bytes();
    m[..7].copy_from_slice(&[FRAME_METHOD, ch[0], ch[1], 0, 0, 0, 0]);
    m[3..7].copy_from_slice(&(method_size as u32).to_be_bytes());
    m[7..9].copy_from_slice(&BasicPublish::CLASS_ID.to_be_bytes());
    m[9..11].copy_from_slice(&BasicPublish::METHOD_ID.to_be_bytes());
    // m[11..13]: reserved-1 (ticket), 0.
    let mut at = 13;
    m[at] = ex_len;
    m[at + 1..at + 1 + ex.len()].copy_from_slice(ex);
    at += 1 + ex.len();
    m[at] = rk_len;
    m[at + 1..at + 1 + rk.len()].copy_from_slice(rk);
    at += 1 + rk.len();
    m[at] = u8::from(mandatory) | (u8::from(immediate) << 1);
    m[at + 1] = FRAME_END;
    debug_assert_eq!(at + 2, method_total);
    dst.extend_from_slice(&m[..method_total]);

    // The content header: a fixed 22 bytes when there are no properties.
    let size = (body.len() as u64).to_be_bytes();
    if properties.is_empty() {
        let mut h = [0u8; 22];
        h[..11].copy_from_slice(&[FRAME_HEADER, ch[0], ch[1], 0, 0, 0, 14, 0, 60, 0, 0]);
        h[11..19].copy_from_slice(&size);
        h[21] = FRAME_END; // property flags 0x0000 in 19..21
        dst.extend_from_slice(&h);
    } else {
        let header_start = dst.len();
        let header = encode_frame(dst, FRAME_HEADER, channel, |d| {
            d.extend_from_slice(&[0, 60, 0, 0]);
            d.extend_from_slice(&size);
            properties.encode(d)
        });
        if let Err(e) = header {
            dst.truncate(start);
            return Err(e);
        }
        if dst.len() - header_start > frame_max as usize {
            dst.truncate(start);
            return Err(CodecError::InvalidValue(
                "content header larger than frame_max",
            ));
        }
    }
    for part in body.chunks(chunk.max(1)) {
        encode_body(dst, channel, part);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::method::{BasicAck, BasicDeliver, BasicPublish, ConnectionTune};

    fn one(bytes: &[u8], frame_max: u32) -> Result<Option<Frame>, CodecError> {
        let mut buf = BytesMut::from(bytes);
        decode(&mut buf, frame_max)
    }

    #[test]
    fn heartbeat_vector() {
        let mut dst = BytesMut::new();
        encode_heartbeat(&mut dst);
        assert_eq!(&dst[..], &[8, 0, 0, 0, 0, 0, 0, 0xCE]);
        assert_eq!(one(&dst, 4096), Ok(Some(Frame::Heartbeat)));
    }

    #[test]
    fn heartbeat_on_channel_one_or_with_payload_is_rejected() {
        assert_eq!(
            one(&[8, 0, 1, 0, 0, 0, 0, 0xCE], 4096),
            Err(CodecError::BadHeartbeat {
                channel: 1,
                size: 0
            })
        );
        assert_eq!(
            one(&[8, 0, 0, 0, 0, 0, 1, 0, 0xCE], 4096),
            Err(CodecError::BadHeartbeat {
                channel: 0,
                size: 1
            })
        );
    }

    #[test]
    fn basic_ack_method_frame_vector() {
        // type 1, channel 1, size 13, class 60, method 80, delivery-tag 5,
        // bits: multiple=1, frame-end.
        let bytes = [
            1, 0, 1, 0, 0, 0, 13, 0, 60, 0, 80, 0, 0, 0, 0, 0, 0, 0, 5, 1, 0xCE,
        ];
        let method = Method::BasicAck(BasicAck {
            delivery_tag: 5,
            multiple: true,
        });
        let mut dst = BytesMut::new();
        encode_method(&mut dst, 1, &method).unwrap();
        assert_eq!(&dst[..], &bytes[..]);
        assert_eq!(
            one(&bytes, 4096),
            Ok(Some(Frame::Method { channel: 1, method }))
        );
    }

    #[test]
    fn short_buffers_need_more_bytes_at_every_length() {
        let mut dst = BytesMut::new();
        let tune = Method::ConnectionTune(ConnectionTune {
            channel_max: 2047,
            frame_max: 131072,
            heartbeat: 60,
        });
        encode_method(&mut dst, 0, &tune).unwrap();
        for n in 0..dst.len() {
            assert_eq!(one(&dst[..n], 4096), Ok(None), "prefix of {n} bytes");
        }
        assert!(one(&dst, 4096).unwrap().is_some());
    }

    #[test]
    fn oversized_frame_is_rejected_before_allocation() {
        // Announces 4 GiB - 1: must fail on the header alone.
        let mut buf = BytesMut::from(&[3u8, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF][..]);
        let cap = buf.capacity();
        assert_eq!(
            decode(&mut buf, 4096),
            Err(CodecError::FrameTooLarge {
                size: 0xFFFF_FFFF + 8,
                max: 4096
            })
        );
        assert_eq!(buf.capacity(), cap);
        // Exactly frame_max is allowed; one more is not.
        let mut ok = vec![3u8, 0, 1];
        ok.extend_from_slice(&(4096u32 - 8).to_be_bytes());
        ok.resize(4095, 0);
        ok.push(0xCE);
        assert!(matches!(one(&ok, 4096), Ok(Some(Frame::Body { .. }))));
        let mut big = vec![3u8, 0, 1];
        big.extend_from_slice(&(4096u32 - 7).to_be_bytes());
        assert_eq!(
            one(&big, 4096),
            Err(CodecError::FrameTooLarge {
                size: 4097,
                max: 4096
            })
        );
    }

    #[test]
    fn bad_frame_end_and_unknown_type() {
        assert_eq!(
            one(&[3, 0, 1, 0, 0, 0, 1, b'x', 0x00], 4096),
            Err(CodecError::BadFrameEnd(0))
        );
        assert_eq!(
            one(&[9, 0, 0, 0, 0, 0, 0, 0xCE], 4096),
            Err(CodecError::UnknownFrameType(9))
        );
    }

    #[test]
    fn protocol_header_answer_is_recognised() {
        assert_eq!(one(b"AMQP\x00\x00\x09", 4096), Ok(None));
        assert_eq!(
            one(b"AMQP\x00\x00\x08\x00", 4096),
            Err(CodecError::ProtocolHeader(*b"AMQP\x00\x00\x08\x00"))
        );
        assert_eq!(
            one(b"AMQX\x01\x02\x03\x04", 4096),
            Err(CodecError::NotAmqp(*b"AMQX\x01\x02\x03\x04"))
        );
    }

    #[test]
    fn body_payload_is_a_slice_of_the_read_buffer() {
        let mut dst = BytesMut::new();
        encode_body(&mut dst, 3, b"hello");
        let base = dst.as_ptr() as usize;
        let Some(Frame::Body { channel, payload }) = decode(&mut dst, 4096).unwrap() else {
            panic!("expected a body frame");
        };
        assert_eq!(channel, 3);
        assert_eq!(&payload[..], b"hello");
        assert_eq!(payload.as_ptr() as usize, base + 7);
    }

    #[test]
    fn publish_splits_body_to_frame_max() {
        for size in [0usize, 1, 4087, 4088, 4089, 10_000] {
            let body = vec![7u8; size];
            let props = BasicProperties::default().with_content_type("text/plain");
            let mut dst = BytesMut::new();
            encode_basic_publish(&mut dst, 1, "", "q", true, false, &props, &body, 4096).unwrap();
            let mut got = Vec::new();
            let mut frames = 0;
            while let Some(frame) = decode(&mut dst, 4096).unwrap() {
                frames += 1;
                match frame {
                    Frame::Method { method, .. } => {
                        let Method::BasicPublish(p) = method else {
                            panic!("expected basic.publish")
                        };
                        assert_eq!(p.routing_key, "q");
                        assert!(p.mandatory);
                    }
                    Frame::Header { header, .. } => {
                        assert_eq!(header.body_size, size as u64);
                        assert_eq!(header.properties, props);
                    }
                    Frame::Body { payload, .. } => got.extend_from_slice(&payload),
                    Frame::Heartbeat => panic!("unexpected heartbeat"),
                }
            }
            assert_eq!(got, body);
            assert_eq!(frames, 2 + size.div_ceil(4088));
        }
    }

    #[test]
    fn fast_publish_encoding_matches_the_generic_encoders() {
        let with = BasicProperties::default()
            .with_content_type("text/plain")
            .with_header("n", 1i32);
        for props in [BasicProperties::default(), with] {
            for body in [&b""[..], b"x", &[9u8; 5000][..]] {
                let mut fast = BytesMut::new();
                encode_basic_publish(&mut fast, 7, "ex", "rk", true, true, &props, body, 4096)
                    .unwrap();
                let mut slow = BytesMut::new();
                let m = Method::BasicPublish(BasicPublish {
                    exchange: "ex".into(),
                    routing_key: "rk".into(),
                    mandatory: true,
                    immediate: true,
                });
                encode_method(&mut slow, 7, &m).unwrap();
                encode_content(&mut slow, 7, 60, &props, body, 4096).unwrap();
                assert_eq!(fast, slow, "{props:?} with {} bytes", body.len());
            }
        }
        let mut dst = BytesMut::from(&b"keep"[..]);
        let long = "k".repeat(256);
        let e = encode_basic_publish(
            &mut dst,
            1,
            "",
            &long,
            false,
            false,
            &BasicProperties::default(),
            b"",
            4096,
        );
        assert_eq!(e, Err(CodecError::ShortStringTooLong(256)));
        assert_eq!(&dst[..], b"keep");
    }

    #[test]
    fn deliver_header_body_round_trip() {
        let mut dst = BytesMut::new();
        let deliver = Method::BasicDeliver(BasicDeliver {
            consumer_tag: "ctag".into(),
            delivery_tag: 9,
            redelivered: true,
            exchange: "ex".into(),
            routing_key: "rk".into(),
        });
        encode_method(&mut dst, 2, &deliver).unwrap();
        encode_content(&mut dst, 2, 60, &BasicProperties::default(), b"abc", 4096).unwrap();
        let f1 = decode(&mut dst, 4096).unwrap().unwrap();
        assert_eq!(
            f1,
            Frame::Method {
                channel: 2,
                method: deliver
            }
        );
        let f2 = decode(&mut dst, 4096).unwrap().unwrap();
        assert!(matches!(f2, Frame::Header { channel: 2, .. }));
        let f3 = decode(&mut dst, 4096).unwrap().unwrap();
        assert_eq!(
            f3,
            Frame::Body {
                channel: 2,
                payload: Bytes::from_static(b"abc")
            }
        );
    }

    /// A deliver, its header and a body of `body`, on channel 2.
    fn delivery_bytes(dst: &mut BytesMut, tag: u64, body: &[u8]) {
        let deliver = Method::BasicDeliver(BasicDeliver {
            consumer_tag: "ctag".into(),
            delivery_tag: tag,
            redelivered: false,
            exchange: "".into(),
            routing_key: "a-routing-key-longer-than-inline".into(),
        });
        encode_method(dst, 2, &deliver).unwrap();
        let props = BasicProperties::default().with_content_type("text/plain");
        encode_content(dst, 2, 60, &props, body, 4096).unwrap();
    }

    #[test]
    fn split_frames_agrees_with_decode_frame_by_frame() {
        let mut dst = BytesMut::new();
        for tag in 1..=3 {
            delivery_bytes(&mut dst, tag, b"body");
        }
        encode_heartbeat(&mut dst);
        let mut one_by_one = dst.clone();
        let mut expected = Vec::new();
        while let Some(f) = decode(&mut one_by_one, 4096).unwrap() {
            expected.push(f);
        }
        // Every split point: the whole frames before it come out, the rest
        // stays for the next read.
        for cut in 0..=dst.len() {
            let mut buf = BytesMut::from(&dst[..cut]);
            let whole = split_frames(&mut buf, 4096).unwrap();
            let got: Vec<Frame> = frames(&whole).map(|f| f.decode().unwrap()).collect();
            assert_eq!(got[..], expected[..got.len()], "cut at {cut}");
            assert_eq!(whole.len() + buf.len(), cut);
            buf.extend_from_slice(&dst[cut..]);
            let rest = split_frames(&mut buf, 4096).unwrap();
            let tail: Vec<Frame> = frames(&rest).map(|f| f.decode().unwrap()).collect();
            assert_eq!(tail[..], expected[got.len()..], "cut at {cut}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn split_frames_shares_one_buffer() {
        let mut dst = BytesMut::new();
        delivery_bytes(&mut dst, 1, b"hello");
        let whole = split_frames(&mut dst, 4096).unwrap();
        let range = whole.as_ptr_range();
        let fs: Vec<FrameRef<'_>> = frames(&whole).collect();
        assert_eq!(fs.len(), 3);
        assert_eq!(fs[2].frame_type, FRAME_BODY);
        assert_eq!(fs[2].len(), 5);
        let body = fs[2].payload();
        assert_eq!(&body[..], b"hello");
        assert!(range.contains(&body.as_ptr()));
        // The long routing key is a slice too; the short tag is inline.
        let Frame::Method {
            method: Method::BasicDeliver(d),
            ..
        } = fs[0].decode().unwrap()
        else {
            panic!("expected basic.deliver")
        };
        assert!(range.contains(&d.routing_key.as_bytes().as_ptr()));
        assert!(!range.contains(&d.consumer_tag.as_bytes().as_ptr()));
        assert_eq!(d.consumer_tag, "ctag");
    }

    #[test]
    fn split_frames_hands_over_good_frames_before_a_bad_one() {
        let mut dst = BytesMut::new();
        encode_heartbeat(&mut dst);
        encode_heartbeat(&mut dst);
        dst.extend_from_slice(&[3, 0, 1, 0, 0, 0, 1, b'x', 0x00]); // bad frame end
        let whole = split_frames(&mut dst, 4096).unwrap();
        assert_eq!(frames(&whole).count(), 2);
        // Now at the front: an error, and nothing is taken.
        assert_eq!(
            split_frames(&mut dst, 4096),
            Err(CodecError::BadFrameEnd(0))
        );
        assert_eq!(dst.len(), 9);
        // The same for a size over frame_max, unknown types and a protocol
        // header.
        for (bytes, err) in [
            (
                &[3u8, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF][..],
                CodecError::FrameTooLarge {
                    size: 0xFFFF_FFFF + 8,
                    max: 4096,
                },
            ),
            (
                &[9, 0, 0, 0, 0, 0, 0, 0xCE],
                CodecError::UnknownFrameType(9),
            ),
            (
                b"AMQP\x00\x00\x08\x00",
                CodecError::ProtocolHeader(*b"AMQP\x00\x00\x08\x00"),
            ),
        ] {
            let mut buf = BytesMut::new();
            encode_heartbeat(&mut buf);
            buf.extend_from_slice(bytes);
            let cap = buf.capacity();
            assert_eq!(frames(&split_frames(&mut buf, 4096).unwrap()).count(), 1);
            assert_eq!(split_frames(&mut buf, 4096), Err(err));
            assert!(buf.capacity() <= cap, "nothing reserved for a bad frame");
        }
    }

    #[test]
    fn split_frames_reserves_at_most_one_frame() {
        // A body frame of frame_max announced, 10 bytes of it here.
        let mut buf = BytesMut::with_capacity(16);
        buf.extend_from_slice(&[3, 0, 1]);
        buf.extend_from_slice(&(4096u32 - 8).to_be_bytes());
        buf.extend_from_slice(&[0; 3]);
        assert!(split_frames(&mut buf, 4096).unwrap().is_empty());
        assert!(buf.capacity() >= 4096 && buf.capacity() < 2 * 4096);
    }

    #[test]
    fn split_frames_reserves_in_proportion_to_the_bytes_that_arrived() {
        // A frame of 4 GiB allowed and announced, 10 bytes of it here.
        let mut buf = BytesMut::with_capacity(16);
        buf.extend_from_slice(&[3, 0, 1]);
        buf.extend_from_slice(&(u32::MAX - 8).to_be_bytes());
        buf.extend_from_slice(&[0; 3]);
        assert!(split_frames(&mut buf, u32::MAX).unwrap().is_empty());
        assert!(buf.capacity() <= 2 * RESERVE_AHEAD, "{}", buf.capacity());
        assert_eq!(decode_raw(&mut buf, u32::MAX), Ok(None));
        assert!(buf.capacity() <= 2 * RESERVE_AHEAD, "{}", buf.capacity());
        // As more arrives, room grows with it (doubling), never to the
        // announced size at once.
        buf.extend_from_slice(&vec![0; 3 * RESERVE_AHEAD]);
        let len = buf.len();
        assert!(split_frames(&mut buf, u32::MAX).unwrap().is_empty());
        assert!(buf.capacity() >= 2 * len && buf.capacity() <= 4 * len + RESERVE_AHEAD);
    }

    #[test]
    fn frames_over_unchecked_bytes_never_panic() {
        let inputs: [&[u8]; 6] = [
            &[],
            &[1],
            &[1, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xCE],
            &[3, 0, 1, 0, 0, 0, 1, b'x', 0x00],
            &[3, 0, 1, 0, 0, 0, 1, b'x'],
            &[8, 0, 0, 0, 0, 0, 0, 0xCE, 1, 0],
        ];
        let counts: Vec<usize> = inputs
            .iter()
            .map(|b| frames(&Bytes::copy_from_slice(b)).count())
            .collect();
        assert_eq!(counts, [0, 0, 0, 0, 0, 1]);
        // A method frame whose payload is cut short decodes to an error.
        let b = Bytes::from_static(&[1, 0, 1, 0, 0, 0, 3, 0, 60, 0, 0xCE]);
        let f = frames(&b).next().unwrap();
        assert_eq!(f.decode(), Err(CodecError::Truncated("method id")));
    }

    #[test]
    fn frames_are_small_enough_to_move_inline() {
        // Larger values are moved by a call to memcpy: keep every Method
        // and Frame within 128 bytes (see `BOXED` in scripts/gen_methods.py).
        assert!(std::mem::size_of::<Method>() <= 120);
        assert!(std::mem::size_of::<Frame>() <= 128);
        assert!(std::mem::size_of::<Result<Frame, CodecError>>() <= 128);
    }
}
