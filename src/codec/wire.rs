//! Primitive AMQP types: integers, short and long strings, and the cursor that
//! reads them from a received payload without copying.

use super::CodecError;
use bytes::{BufMut, Bytes, BytesMut};
use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

/// An AMQP `shortstr`: at most 255 bytes of UTF-8.
///
/// Short values (up to [`ShortString::INLINE_CAPACITY`] bytes: nearly every
/// routing key, consumer tag and content type) are stored inline, so
/// decoding one copies a few bytes and touches no reference count; longer
/// ones are a [`Bytes`] slice of the read buffer, not a copy.
///
/// ```
/// use puka::codec::ShortString;
/// let s = ShortString::from("amq.direct");
/// assert_eq!(s, "amq.direct");
/// assert_eq!(s.len(), 10);
/// ```
#[derive(Clone)]
pub struct ShortString(Repr);

/// `text` cut to at most `max` bytes at a character boundary (what fits a
/// `shortstr` without splitting a character).
pub(crate) fn truncate_utf8(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[derive(Clone)]
enum Repr {
    /// The value as it is on the wire: a length octet, then the bytes
    /// (what follows them is not part of the value).
    Inline(Inline),
    Shared(Bytes),
}

const INLINE: usize = 23;

/// An inline value's bytes, 8-aligned so that a copy is whole aligned
/// words (at an odd offset, copies of it split into overlapping stores
/// that the CPU cannot forward to the next load).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Inline([u8; INLINE + 1]);

impl Default for ShortString {
    fn default() -> Self {
        ShortString::new()
    }
}

impl ShortString {
    /// Strings up to this many bytes are stored inline.
    pub const INLINE_CAPACITY: usize = INLINE;

    /// The empty string.
    pub const fn new() -> Self {
        ShortString(Repr::Inline(Inline([0; INLINE + 1])))
    }

    /// A string from a `'static` literal, without allocating.
    pub const fn from_static(s: &'static str) -> Self {
        ShortString(Repr::Shared(Bytes::from_static(s.as_bytes())))
    }

    /// Wraps bytes that must be valid UTF-8.
    ///
    /// # Errors
    /// [`CodecError::InvalidUtf8`] when they are not.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, CodecError> {
        std::str::from_utf8(&bytes).map_err(|_| CodecError::InvalidUtf8("short string"))?;
        Ok(ShortString::from_checked(bytes))
    }

    /// Bytes already checked as UTF-8: inline when short, shared otherwise.
    fn from_checked(bytes: Bytes) -> Self {
        match Self::inline(&bytes) {
            Some(s) => s,
            None => ShortString(Repr::Shared(bytes)),
        }
    }

    fn inline(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > INLINE {
            return None;
        }
        let mut raw = [0u8; INLINE + 1];
        raw[0] = bytes.len() as u8;
        raw[1..=bytes.len()].copy_from_slice(bytes);
        Some(ShortString(Repr::Inline(Inline(raw))))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // The bytes were checked as UTF-8 when this value was made; the
        // fallback is never taken and only avoids `unsafe`.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            // The length octet is at most INLINE by construction.
            Repr::Inline(Inline(raw)) => raw.get(1..=usize::from(raw[0])).unwrap_or_default(),
            Repr::Shared(b) => b,
        }
    }
}

impl PartialEq for ShortString {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for ShortString {}

impl PartialOrd for ShortString {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ShortString {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl std::hash::Hash for ShortString {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `str` hashes, so `Borrow<str>` lookups agree.
        self.as_str().hash(state);
    }
}

impl Deref for ShortString {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ShortString {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for ShortString {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for ShortString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ShortString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for ShortString {
    fn from(s: &str) -> Self {
        Self::inline(s.as_bytes())
            .unwrap_or_else(|| ShortString(Repr::Shared(Bytes::copy_from_slice(s.as_bytes()))))
    }
}

impl From<String> for ShortString {
    fn from(s: String) -> Self {
        Self::inline(s.as_bytes()).unwrap_or_else(|| ShortString(Repr::Shared(Bytes::from(s))))
    }
}

impl From<&String> for ShortString {
    fn from(s: &String) -> Self {
        ShortString::from(s.as_str())
    }
}

impl PartialEq<str> for ShortString {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ShortString {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A cursor over a received payload. Every read checks the bytes remaining
/// first, so a short payload is an error, never a panic.
///
/// It borrows the shared buffer the payload lives in and reads by position:
/// numbers and short strings are copied out, and only a value that must
/// outlive the buffer's borrow (a long string, a long short string) takes a
/// [`Bytes`] slice of it (one reference count, no copy).
///
/// ```
/// use bytes::Bytes;
/// use puka::codec::wire::Reader;
///
/// let payload = Bytes::from_static(b"\x00\x2a\x05hello");
/// let mut r = Reader::new(&payload);
/// assert_eq!(r.u16("id").unwrap(), 42);
/// assert_eq!(r.shortstr("name").unwrap(), "hello");
/// assert_eq!(r.remaining(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    src: &'a Bytes,
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    /// A reader over all of `buf`.
    #[inline]
    pub fn new(buf: &'a Bytes) -> Self {
        Reader {
            src: buf,
            pos: 0,
            end: buf.len(),
        }
    }

    /// A reader over `buf[start..end]`, or `None` when that range is not in
    /// `buf`.
    pub fn with_range(buf: &'a Bytes, start: usize, end: usize) -> Option<Self> {
        (start <= end && end <= buf.len()).then_some(Reader {
            src: buf,
            pos: start,
            end,
        })
    }

    /// A reader over `buf[start..end]`, the range narrowed to fit `buf`
    /// (callers pass ranges they have checked; narrowing keeps a mistake
    /// from becoming a panic).
    #[inline]
    pub(crate) fn clamped(buf: &'a Bytes, start: usize, end: usize) -> Self {
        let end = end.min(buf.len());
        Reader {
            src: buf,
            pos: start.min(end),
            end,
        }
    }

    /// Bytes not yet read.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// The next `n` bytes, after checking they are there; advances past them.
    #[inline]
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        if self.end - self.pos < n {
            return Err(CodecError::Truncated(what));
        }
        let src: &'a [u8] = self.src;
        let out = &src[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    #[inline]
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CodecError> {
        let b = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    /// Reads an octet.
    #[inline]
    pub fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// Reads a big-endian u16.
    #[inline]
    pub fn u16(&mut self, what: &'static str) -> Result<u16, CodecError> {
        self.array(what).map(u16::from_be_bytes)
    }

    /// Reads a big-endian u32.
    #[inline]
    pub fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        self.array(what).map(u32::from_be_bytes)
    }

    /// Reads a big-endian u64.
    #[inline]
    pub fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        self.array(what).map(u64::from_be_bytes)
    }

    /// The next 4 bytes as a big-endian u32, without reading past them.
    #[inline]
    pub fn peek_u32(&self) -> Option<u32> {
        let src: &'a [u8] = self.src;
        let b = src
            .get(self.pos..self.pos + 4)
            .filter(|_| self.pos + 4 <= self.end)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Skips the next `n` bytes.
    #[inline]
    pub fn skip(&mut self, n: usize, what: &'static str) -> Result<(), CodecError> {
        self.take(n, what).map(drop)
    }

    /// Takes the next `n` bytes as a slice of the payload (no copy).
    #[inline]
    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<Bytes, CodecError> {
        let start = self.pos;
        self.take(n, what)?;
        Ok(self.src.slice(start..self.pos))
    }

    /// A reader over the next `n` bytes (a table's body, say); this one
    /// advances past them. Nothing is sliced or counted.
    #[inline]
    pub fn sub(&mut self, n: usize, what: &'static str) -> Result<Reader<'a>, CodecError> {
        let start = self.pos;
        self.take(n, what)?;
        Ok(Reader {
            src: self.src,
            pos: start,
            end: self.pos,
        })
    }

    /// Where the next read starts, as an index into the shared buffer.
    #[inline]
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Reads a `shortstr` in place: its bytes, checked as UTF-8, still in
    /// the shared buffer.
    #[inline]
    pub(crate) fn shortstr_bytes(&mut self, what: &'static str) -> Result<&'a [u8], CodecError> {
        let len = usize::from(self.u8(what)?);
        let value = self.take(len, what)?;
        // Names and routing keys are nearly always ASCII: check that first.
        if !value.is_ascii() {
            std::str::from_utf8(value).map_err(|_| CodecError::InvalidUtf8(what))?;
        }
        Ok(value)
    }

    /// Reads a `shortstr`: an octet length, then that many bytes of UTF-8.
    pub fn shortstr(&mut self, what: &'static str) -> Result<ShortString, CodecError> {
        let value = self.shortstr_bytes(what)?;
        let len = value.len();
        let start = self.pos - len;
        if len > INLINE {
            return Ok(ShortString(Repr::Shared(self.src.slice(start..self.pos))));
        }
        // Copy the length octet and a whole inline buffer's worth after it
        // when the shared buffer has them: a fixed-size move (one 16-byte
        // and one 8-byte load and store), not a call to memcpy. Only the
        // first `len` bytes after the length count.
        let src: &'a [u8] = self.src;
        if let Some(whole) = src.get(start - 1..start + INLINE) {
            if let Ok(raw) = <[u8; INLINE + 1]>::try_from(whole) {
                return Ok(ShortString(Repr::Inline(Inline(raw))));
            }
        }
        Ok(ShortString::inline(value).unwrap_or_default())
    }

    /// Reads a descriptive `shortstr` (a reply text, a reason) that may not
    /// be valid UTF-8: RabbitMQ cuts reply texts at 255 bytes, sometimes in
    /// the middle of a character. Invalid sequences become U+FFFD and the
    /// result is cut back, at a character boundary, to the 255 bytes a
    /// `shortstr` can hold, so it re-encodes. Names stay strict: use
    /// [`Reader::shortstr`] for them.
    pub fn shortstr_lossy(&mut self, what: &'static str) -> Result<ShortString, CodecError> {
        let len = usize::from(self.u8(what)?);
        let value = self.take(len, what)?;
        if std::str::from_utf8(value).is_ok() {
            // Read it again the usual way (inline when short).
            self.pos -= len + 1;
            return self.shortstr(what);
        }
        let text = String::from_utf8_lossy(value);
        Ok(ShortString::from(truncate_utf8(
            &text,
            usize::from(u8::MAX),
        )))
    }

    /// Reads a `longstr`: a u32 length, then that many bytes (checked against
    /// the bytes remaining before anything is taken).
    #[inline]
    pub fn longstr(&mut self, what: &'static str) -> Result<Bytes, CodecError> {
        let len = self.u32(what)? as usize;
        self.bytes(len, what)
    }
}

/// Writes a `shortstr`.
///
/// # Errors
/// [`CodecError::ShortStringTooLong`] for more than 255 bytes: never truncated.
pub fn put_shortstr(dst: &mut BytesMut, s: &[u8]) -> Result<(), CodecError> {
    let len = u8::try_from(s.len()).map_err(|_| CodecError::ShortStringTooLong(s.len()))?;
    dst.put_u8(len);
    dst.put_slice(s);
    Ok(())
}

/// Writes a `longstr`.
///
/// # Errors
/// [`CodecError::LongValueTooLong`] for more than `u32::MAX` bytes.
pub fn put_longstr(dst: &mut BytesMut, s: &[u8]) -> Result<(), CodecError> {
    let len = u32::try_from(s.len()).map_err(|_| CodecError::LongValueTooLong(s.len()))?;
    dst.put_u32(len);
    dst.put_slice(s);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortstr_round_trip_and_limits() {
        let mut dst = BytesMut::new();
        put_shortstr(&mut dst, b"hello").unwrap();
        assert_eq!(&dst[..], b"\x05hello");
        let payload = dst.freeze();
        let mut r = Reader::new(&payload);
        assert_eq!(r.shortstr("s").unwrap(), "hello");
        assert_eq!(r.remaining(), 0);

        let long = vec![b'a'; 256];
        let mut dst = BytesMut::new();
        assert_eq!(
            put_shortstr(&mut dst, &long),
            Err(CodecError::ShortStringTooLong(256))
        );
        put_shortstr(&mut dst, &long[..255]).unwrap();
        assert_eq!(dst.len(), 256);
    }

    #[test]
    fn truncated_reads_are_errors() {
        let b = Bytes::from_static(b"\x05hel");
        assert_eq!(
            Reader::new(&b).shortstr("name"),
            Err(CodecError::Truncated("name"))
        );
        let b = Bytes::from_static(b"\xff\xff\xff\xffab");
        assert_eq!(
            Reader::new(&b).longstr("body"),
            Err(CodecError::Truncated("body"))
        );
        let b = Bytes::from_static(b"\x01");
        assert_eq!(Reader::new(&b).u16("x"), Err(CodecError::Truncated("x")));
        // A range ends the reader even when the buffer goes on.
        let b = Bytes::from_static(b"\x00\x01\x02\x03");
        let mut r = Reader::with_range(&b, 1, 3).unwrap();
        assert_eq!(r.u16("x"), Ok(0x0102));
        assert_eq!(r.u8("y"), Err(CodecError::Truncated("y")));
        assert!(Reader::with_range(&b, 3, 5).is_none());
        assert!(Reader::with_range(&b, 3, 2).is_none());
    }

    #[test]
    fn short_values_are_inline_and_long_ones_shared() {
        assert_eq!(std::mem::size_of::<ShortString>(), 32);
        let long = "x".repeat(100);
        let mut dst = BytesMut::new();
        put_shortstr(&mut dst, b"rk").unwrap();
        put_shortstr(&mut dst, long.as_bytes()).unwrap();
        let payload = dst.freeze();
        let range = payload.as_ptr_range();
        let mut r = Reader::new(&payload);
        let short = r.shortstr("a").unwrap();
        let shared = r.shortstr("b").unwrap();
        assert_eq!(short, "rk");
        assert!(!range.contains(&short.as_bytes().as_ptr()), "inline");
        assert_eq!(shared.as_str(), long);
        assert!(range.contains(&shared.as_bytes().as_ptr()), "a slice");
        assert_eq!(ShortString::from(long.as_str()), shared);
        assert_eq!(ShortString::from_static("rk"), short);
    }

    #[test]
    fn lossy_shortstr_takes_a_text_cut_mid_character() {
        // A reply text naming a queue of 127 "ü", cut at 255 bytes as
        // RabbitMQ cuts it: in the middle of the last "ü" that fits.
        let text = format!("NOT_FOUND - no queue '{}' in vhost '/'", "ü".repeat(127));
        let cut = &text.as_bytes()[..255];
        assert!(std::str::from_utf8(cut).is_err());
        let mut dst = BytesMut::new();
        put_shortstr(&mut dst, cut).unwrap();
        dst.put_u8(7);
        let payload = dst.freeze();
        let mut r = Reader::new(&payload);
        assert_eq!(
            Reader::new(&payload).shortstr("reply-text"),
            Err(CodecError::InvalidUtf8("reply-text"))
        );
        let lossy = r.shortstr_lossy("reply-text").unwrap();
        assert_eq!(r.u8("after").unwrap(), 7, "the whole string was read");
        assert!(lossy.starts_with("NOT_FOUND - no queue 'üü"));
        // 254 valid bytes, then the lone lead byte: U+FFFD (3 bytes) does
        // not fit, so it is cut back to what a shortstr holds.
        assert!(lossy.len() <= 255, "{}", lossy.len());
        assert_eq!(lossy.as_bytes(), &cut[..254]);
        let mut again = BytesMut::new();
        put_shortstr(&mut again, lossy.as_bytes()).unwrap();

        // Invalid bytes in the middle become U+FFFD; valid text is as is.
        let b = Bytes::from_static(b"\x05a\xffb\xc3\xbc\x03abc");
        let mut r = Reader::new(&b);
        assert_eq!(r.shortstr_lossy("t").unwrap(), "a\u{fffd}bü");
        assert_eq!(r.shortstr_lossy("t").unwrap(), "abc");
        assert_eq!(
            r.shortstr_lossy("t"),
            Err(CodecError::Truncated("t")),
            "lengths are still checked"
        );
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let b = Bytes::from_static(b"\x02\xff\xfe");
        assert_eq!(
            Reader::new(&b).shortstr("key"),
            Err(CodecError::InvalidUtf8("key"))
        );
    }
}
