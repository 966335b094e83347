//! Primitive AMQP types: integers, short and long strings, and the cursor that
//! reads them from a received payload without copying.

use super::CodecError;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

/// An AMQP `shortstr`: at most 255 bytes of UTF-8, held as a [`Bytes`] so a
/// string decoded from the wire is a slice of the read buffer, not a copy.
///
/// ```
/// use puka::codec::ShortString;
/// let s = ShortString::from("amq.direct");
/// assert_eq!(s, "amq.direct");
/// assert_eq!(s.len(), 10);
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShortString(Bytes);

impl ShortString {
    /// The empty string.
    pub const fn new() -> Self {
        ShortString(Bytes::new())
    }

    /// A string from a `'static` literal, without allocating.
    pub const fn from_static(s: &'static str) -> Self {
        ShortString(Bytes::from_static(s.as_bytes()))
    }

    /// Wraps bytes that must be valid UTF-8.
    ///
    /// # Errors
    /// [`CodecError::InvalidUtf8`] when they are not.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, CodecError> {
        std::str::from_utf8(&bytes).map_err(|_| CodecError::InvalidUtf8("short string"))?;
        Ok(ShortString(bytes))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // The bytes were checked as UTF-8 when this value was made; the
        // fallback is never taken and only avoids `unsafe`.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The bytes, shared with the buffer they came from.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
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
        ShortString(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for ShortString {
    fn from(s: String) -> Self {
        ShortString(Bytes::from(s))
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
        let bytes = self.bytes(len, what)?;
        // Names and routing keys are nearly always ASCII: check that first.
        if !bytes.is_ascii() {
            std::str::from_utf8(&bytes).map_err(|_| CodecError::InvalidUtf8(what))?;
        }
        Ok(ShortString(bytes))
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
    fn invalid_utf8_is_rejected() {
        let mut r = Reader::new(Bytes::from_static(b"\x02\xff\xfe"));
        assert_eq!(r.shortstr("key"), Err(CodecError::InvalidUtf8("key")));
    }
}
