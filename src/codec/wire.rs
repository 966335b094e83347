//! Primitive AMQP types: integers, short and long strings, and the cursor that
//! reads them from a received payload without copying.

use super::CodecError;
use bytes::{Buf, BufMut, Bytes, BytesMut};
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

#[derive(Clone)]
enum Repr {
    Inline { len: u8, buf: [u8; INLINE] },
    Shared(Bytes),
}

const INLINE: usize = 23;

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
        ShortString(Repr::Inline {
            len: 0,
            buf: [0; INLINE],
        })
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
        let mut buf = [0u8; INLINE];
        buf[..bytes.len()].copy_from_slice(bytes);
        Some(ShortString(Repr::Inline {
            len: bytes.len() as u8,
            buf,
        }))
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
            Repr::Inline { len, buf } => &buf[..usize::from(*len)],
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
/// first, so a short payload is an error, never a panic; variable-length
/// values are sliced out of the payload without copying.
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    /// A reader over `buf`.
    pub fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn need(&self, n: usize, what: &'static str) -> Result<(), CodecError> {
        if self.buf.len() < n {
            Err(CodecError::Truncated(what))
        } else {
            Ok(())
        }
    }

    /// Reads an octet.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }

    /// Reads a big-endian u16.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, CodecError> {
        self.need(2, what)?;
        Ok(self.buf.get_u16())
    }

    /// Reads a big-endian u32.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        self.need(4, what)?;
        Ok(self.buf.get_u32())
    }

    /// Reads a big-endian u64.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        self.need(8, what)?;
        Ok(self.buf.get_u64())
    }

    /// Takes the next `n` bytes as a slice of the payload.
    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<Bytes, CodecError> {
        self.need(n, what)?;
        Ok(self.buf.split_to(n))
    }

    /// Reads a `shortstr`: an octet length, then that many bytes of UTF-8.
    pub fn shortstr(&mut self, what: &'static str) -> Result<ShortString, CodecError> {
        let len = self.u8(what)? as usize;
        self.need(len, what)?;
        let raw = &self.buf[..len];
        // Names and routing keys are nearly always ASCII: check that first.
        if !raw.is_ascii() {
            std::str::from_utf8(raw).map_err(|_| CodecError::InvalidUtf8(what))?;
        }
        if let Some(s) = ShortString::inline(raw) {
            self.buf.advance(len);
            return Ok(s);
        }
        Ok(ShortString(Repr::Shared(self.buf.split_to(len))))
    }

    /// Reads a `longstr`: a u32 length, then that many bytes (checked against
    /// the bytes remaining before anything is taken).
    pub fn longstr(&mut self, what: &'static str) -> Result<Bytes, CodecError> {
        let len = self.u32(what)? as usize;
        self.bytes(len, what)
    }

    /// The bytes not yet read, consuming the reader.
    pub fn into_rest(self) -> Bytes {
        self.buf
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
        let mut r = Reader::new(dst.freeze());
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
        let mut r = Reader::new(Bytes::from_static(b"\x05hel"));
        assert_eq!(r.shortstr("name"), Err(CodecError::Truncated("name")));
        let mut r = Reader::new(Bytes::from_static(b"\xff\xff\xff\xffab"));
        assert_eq!(r.longstr("body"), Err(CodecError::Truncated("body")));
        let mut r = Reader::new(Bytes::from_static(b"\x01"));
        assert_eq!(r.u16("x"), Err(CodecError::Truncated("x")));
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
        let mut r = Reader::new(payload.clone());
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
    fn invalid_utf8_is_rejected() {
        let mut r = Reader::new(Bytes::from_static(b"\x02\xff\xfe"));
        assert_eq!(r.shortstr("key"), Err(CodecError::InvalidUtf8("key")));
    }
}
