//! Field tables and field arrays, with RabbitMQ's type tags.
//!
//! RabbitMQ does not use the type tags of the AMQP 0-9-1 grammar but those of
//! its own errata (which every widely used client follows); the differences
//! are that `s` is a signed 16-bit integer, `u` an unsigned one, `I` a signed
//! 32-bit integer and `i` an unsigned one, and that `x` is a byte array.
//!
//! | tag | value                   | payload                              |
//! |-----|-------------------------|--------------------------------------|
//! | `t` | [`FieldValue::Bool`]    | octet, 0 is false, anything else true|
//! | `b` | [`FieldValue::I8`]      | octet                                |
//! | `B` | [`FieldValue::U8`]      | octet                                |
//! | `s` | [`FieldValue::I16`]     | 2 octets                             |
//! | `u` | [`FieldValue::U16`]     | 2 octets                             |
//! | `I` | [`FieldValue::I32`]     | 4 octets                             |
//! | `i` | [`FieldValue::U32`]     | 4 octets                             |
//! | `l` | [`FieldValue::I64`]     | 8 octets                             |
//! | `f` | [`FieldValue::F32`]     | 4 octets, IEEE 754                   |
//! | `d` | [`FieldValue::F64`]     | 8 octets, IEEE 754                   |
//! | `D` | [`FieldValue::Decimal`] | scale octet, then 4 octets, signed   |
//! | `S` | [`FieldValue::LongString`] | u32 length, then bytes            |
//! | `A` | [`FieldValue::Array`]   | u32 byte length, then tagged values  |
//! | `T` | [`FieldValue::Timestamp`] | 8 octets, seconds since the epoch  |
//! | `F` | [`FieldValue::Table`]   | u32 byte length, then entries        |
//! | `V` | [`FieldValue::Void`]    | nothing                              |
//! | `x` | [`FieldValue::ByteArray`] | u32 length, then bytes             |
//!
//! All integers are big-endian. A table entry is a `shortstr` name followed by
//! a tagged value.

use super::wire::{put_longstr, put_shortstr, Reader, ShortString};
use super::CodecError;
use bytes::{BufMut, Bytes, BytesMut};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The deepest nesting of field tables and arrays that is decoded or encoded.
///
/// A top-level table or array is at depth 1, a table inside it at depth 2, and
/// so on. Input nested deeper than this is rejected with
/// [`CodecError::NestingTooDeep`]`(MAX_NESTING_DEPTH)` before the decoder
/// descends into it, so hostile input cannot exhaust the stack; encoding a
/// value nested deeper fails with the same error, so we never send what we
/// would refuse to receive.
pub const MAX_NESTING_DEPTH: usize = 32;

/// An AMQP decimal: `value / 10^scale`.
///
/// The value is a signed 32-bit integer, as pika and the Java client write and
/// read it: −1.5 is scale 1, value −15. (RabbitMQ passes the four octets on
/// unchanged.)
///
/// ```
/// use puka::codec::Decimal;
/// let price = Decimal::new(2, 1999); // 19.99
/// assert_eq!((price.scale, price.value), (2, 1999));
/// let loss = Decimal::new(1, -15); // -1.5
/// assert_eq!(loss.value, -15);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    /// The number of decimal digits after the point.
    pub scale: u8,
    /// The unscaled value.
    pub value: i32,
}

impl Decimal {
    /// A decimal of `value / 10^scale`.
    pub const fn new(scale: u8, value: i32) -> Self {
        Decimal { scale, value }
    }
}

/// An AMQP timestamp: whole seconds since the Unix epoch.
///
/// ```
/// use puka::codec::Timestamp;
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = Timestamp::from(1_700_000_000);
/// assert_eq!(t.0, 1_700_000_000);
/// let later = Timestamp::from_system_time(UNIX_EPOCH + Duration::from_millis(1_500));
/// assert_eq!(later, Timestamp(1));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The timestamp of a [`SystemTime`], truncated to whole seconds.
    ///
    /// AMQP timestamps are unsigned, so a time before the Unix epoch becomes 0.
    pub fn from_system_time(t: SystemTime) -> Self {
        Timestamp(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    }

    /// This timestamp as a [`SystemTime`], or `None` if the platform's
    /// `SystemTime` cannot represent it.
    pub fn to_system_time(self) -> Option<SystemTime> {
        UNIX_EPOCH.checked_add(Duration::from_secs(self.0))
    }
}

impl From<u64> for Timestamp {
    fn from(secs: u64) -> Self {
        Timestamp(secs)
    }
}

impl From<Timestamp> for u64 {
    fn from(t: Timestamp) -> Self {
        t.0
    }
}

/// One value in a [`FieldTable`] or [`FieldArray`], with the RabbitMQ type tag
/// given for each variant.
///
/// `From` conversions build values from literals: integers and floats map to
/// the variant of the same type, `&str`, `String` and [`Bytes`] to
/// [`FieldValue::LongString`], `Vec<FieldValue>` to [`FieldValue::Array`].
///
/// ```
/// use puka::codec::FieldValue;
/// let ttl = FieldValue::from(60_000i32);
/// assert_eq!(ttl.tag(), b'I');
/// assert_eq!(ttl.as_i64(), Some(60_000));
/// let mode = FieldValue::from("lazy");
/// assert_eq!(mode.as_str(), Some("lazy"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// `t`: a boolean.
    Bool(bool),
    /// `b`: a signed 8-bit integer.
    I8(i8),
    /// `B`: an unsigned 8-bit integer.
    U8(u8),
    /// `s`: a signed 16-bit integer.
    I16(i16),
    /// `u`: an unsigned 16-bit integer.
    U16(u16),
    /// `I`: a signed 32-bit integer.
    I32(i32),
    /// `i`: an unsigned 32-bit integer.
    U32(u32),
    /// `l`: a signed 64-bit integer.
    I64(i64),
    /// `f`: a 32-bit float.
    F32(f32),
    /// `d`: a 64-bit float.
    F64(f64),
    /// `D`: a decimal.
    Decimal(Decimal),
    /// `S`: a long string. These are bytes, not necessarily UTF-8; see
    /// [`FieldValue::as_str`].
    LongString(Bytes),
    /// `A`: an array of values.
    Array(FieldArray),
    /// `T`: a timestamp.
    Timestamp(Timestamp),
    /// `F`: a nested table.
    Table(FieldTable),
    /// `V`: no value.
    Void,
    /// `x`: a byte array (a RabbitMQ extension).
    ByteArray(Bytes),
}

impl FieldValue {
    /// The RabbitMQ type tag this value is encoded with.
    pub fn tag(&self) -> u8 {
        match self {
            FieldValue::Bool(_) => b't',
            FieldValue::I8(_) => b'b',
            FieldValue::U8(_) => b'B',
            FieldValue::I16(_) => b's',
            FieldValue::U16(_) => b'u',
            FieldValue::I32(_) => b'I',
            FieldValue::U32(_) => b'i',
            FieldValue::I64(_) => b'l',
            FieldValue::F32(_) => b'f',
            FieldValue::F64(_) => b'd',
            FieldValue::Decimal(_) => b'D',
            FieldValue::LongString(_) => b'S',
            FieldValue::Array(_) => b'A',
            FieldValue::Timestamp(_) => b'T',
            FieldValue::Table(_) => b'F',
            FieldValue::Void => b'V',
            FieldValue::ByteArray(_) => b'x',
        }
    }

    /// The boolean, if this is a [`FieldValue::Bool`].
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            FieldValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The integer, if this is any integer variant (whose value always fits).
    ///
    /// Peers choose integer widths freely (a TTL may arrive as `I`, `l` or
    /// even `B`), so read integers through this rather than by variant.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            FieldValue::I8(v) => Some(v.into()),
            FieldValue::U8(v) => Some(v.into()),
            FieldValue::I16(v) => Some(v.into()),
            FieldValue::U16(v) => Some(v.into()),
            FieldValue::I32(v) => Some(v.into()),
            FieldValue::U32(v) => Some(v.into()),
            FieldValue::I64(v) => Some(v),
            _ => None,
        }
    }

    /// The integer, if this is an integer variant holding a value that is not
    /// negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            FieldValue::U8(v) => Some(v.into()),
            FieldValue::U16(v) => Some(v.into()),
            FieldValue::U32(v) => Some(v.into()),
            _ => self.as_i64().and_then(|v| u64::try_from(v).ok()),
        }
    }

    /// The number, if this is a [`FieldValue::F32`] or [`FieldValue::F64`].
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            FieldValue::F32(v) => Some(v.into()),
            FieldValue::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The string, if this is a [`FieldValue::LongString`] holding valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::LongString(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The bytes, if this is a [`FieldValue::LongString`] or a
    /// [`FieldValue::ByteArray`].
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            FieldValue::LongString(b) | FieldValue::ByteArray(b) => Some(b),
            _ => None,
        }
    }

    /// The table, if this is a [`FieldValue::Table`].
    pub fn as_table(&self) -> Option<&FieldTable> {
        match self {
            FieldValue::Table(t) => Some(t),
            _ => None,
        }
    }

    /// The array, if this is a [`FieldValue::Array`].
    pub fn as_array(&self) -> Option<&FieldArray> {
        match self {
            FieldValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The timestamp, if this is a [`FieldValue::Timestamp`].
    pub fn as_timestamp(&self) -> Option<Timestamp> {
        match *self {
            FieldValue::Timestamp(t) => Some(t),
            _ => None,
        }
    }

    /// The decimal, if this is a [`FieldValue::Decimal`].
    pub fn as_decimal(&self) -> Option<Decimal> {
        match *self {
            FieldValue::Decimal(d) => Some(d),
            _ => None,
        }
    }

    /// The number of bytes [`encode_value`] writes for this value, tag included.
    fn encoded_len(&self) -> usize {
        1 + match self {
            FieldValue::Void => 0,
            FieldValue::Bool(_) | FieldValue::I8(_) | FieldValue::U8(_) => 1,
            FieldValue::I16(_) | FieldValue::U16(_) => 2,
            FieldValue::I32(_) | FieldValue::U32(_) | FieldValue::F32(_) => 4,
            FieldValue::Decimal(_) => 5,
            FieldValue::I64(_) | FieldValue::F64(_) | FieldValue::Timestamp(_) => 8,
            FieldValue::LongString(b) | FieldValue::ByteArray(b) => 4 + b.len(),
            FieldValue::Array(a) => a.encoded_len(),
            FieldValue::Table(t) => t.encoded_len(),
        }
    }
}

macro_rules! field_value_from {
    ($($ty:ty => $variant:ident),* $(,)?) => {
        $(
            impl From<$ty> for FieldValue {
                fn from(v: $ty) -> Self {
                    FieldValue::$variant(v)
                }
            }
        )*
    };
}

field_value_from! {
    bool => Bool,
    i8 => I8,
    u8 => U8,
    i16 => I16,
    u16 => U16,
    i32 => I32,
    u32 => U32,
    i64 => I64,
    f32 => F32,
    f64 => F64,
    Decimal => Decimal,
    Bytes => LongString,
    FieldArray => Array,
    Timestamp => Timestamp,
    FieldTable => Table,
}

impl From<&str> for FieldValue {
    fn from(s: &str) -> Self {
        FieldValue::LongString(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for FieldValue {
    fn from(s: String) -> Self {
        FieldValue::LongString(Bytes::from(s))
    }
}

impl From<ShortString> for FieldValue {
    fn from(s: ShortString) -> Self {
        FieldValue::LongString(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<Vec<FieldValue>> for FieldValue {
    fn from(values: Vec<FieldValue>) -> Self {
        FieldValue::Array(FieldArray(values))
    }
}

/// An AMQP field table: named values, in the order they were inserted or
/// received.
///
/// Tables are small, so they are kept as a list and looked up linearly.
/// [`FieldTable::insert`] replaces the value of an existing name in place; a
/// table decoded from the wire keeps any duplicate names it had, and
/// [`FieldTable::get`] then finds the first.
///
/// ```
/// use puka::codec::{FieldTable, FieldValue};
/// let args = FieldTable::from([
///     ("x-message-ttl", FieldValue::from(60_000i32)),
///     ("x-queue-mode", FieldValue::from("lazy")),
/// ])
/// .with("x-max-length", 1_000i64);
/// assert_eq!(args.len(), 3);
/// assert_eq!(args.get("x-message-ttl").and_then(FieldValue::as_i64), Some(60_000));
///
/// let mut buf = bytes::BytesMut::new();
/// args.encode(&mut buf).unwrap();
/// let payload = buf.freeze();
/// let mut r = puka::codec::wire::Reader::new(&payload);
/// assert_eq!(FieldTable::decode(&mut r).unwrap(), args);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldTable {
    entries: Vec<(ShortString, FieldValue)>,
}

impl FieldTable {
    /// An empty table.
    pub const fn new() -> Self {
        FieldTable {
            entries: Vec::new(),
        }
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|(k, _)| k.as_bytes() == key.as_bytes())
    }

    /// The value named `key` (the first, if the peer sent duplicates).
    pub fn get(&self, key: &str) -> Option<&FieldValue> {
        self.position(key).map(|i| &self.entries[i].1)
    }

    /// A mutable reference to the value named `key`.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut FieldValue> {
        self.position(key).map(|i| &mut self.entries[i].1)
    }

    /// Whether the table has a value named `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    /// Sets the value named `key`, returning the value it replaced.
    ///
    /// An existing entry keeps its position; a new one goes at the end. Names
    /// longer than 255 bytes are accepted here but make [`FieldTable::encode`]
    /// fail with [`CodecError::ShortStringTooLong`].
    pub fn insert(
        &mut self,
        key: impl Into<ShortString>,
        value: impl Into<FieldValue>,
    ) -> Option<FieldValue> {
        let key = key.into();
        let value = value.into();
        match self.position(&key) {
            Some(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            None => {
                self.entries.push((key, value));
                None
            }
        }
    }

    /// Removes the value named `key` (the first, if there are duplicates),
    /// keeping the order of the others, and returns it.
    pub fn remove(&mut self, key: &str) -> Option<FieldValue> {
        self.position(key).map(|i| self.entries.remove(i).1)
    }

    /// The table with `key` set to `value`, for building tables in one
    /// expression.
    #[must_use]
    pub fn with(mut self, key: impl Into<ShortString>, value: impl Into<FieldValue>) -> Self {
        self.insert(key, value);
        self
    }

    /// The entries, in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.entries.iter())
    }

    /// Reads a field table: a u32 byte length, then entries filling exactly
    /// that many bytes.
    ///
    /// # Errors
    /// [`CodecError::Truncated`] if the input ends early (the length is checked
    /// against what remains before anything is read),
    /// [`CodecError::UnknownFieldType`], [`CodecError::InvalidUtf8`] for a
    /// name that is not UTF-8, and [`CodecError::NestingTooDeep`].
    pub fn decode(r: &mut Reader<'_>) -> Result<FieldTable, CodecError> {
        decode_table(r, 1)
    }

    /// Writes the table: a u32 byte length, then the entries.
    ///
    /// # Errors
    /// [`CodecError::ShortStringTooLong`] for a name over 255 bytes,
    /// [`CodecError::LongValueTooLong`] for a string, array or table over
    /// `u32::MAX` bytes, [`CodecError::NestingTooDeep`]. On error `dst` is
    /// left as it was.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), CodecError> {
        let start = dst.len();
        let result = encode_table(self, dst, 1);
        if result.is_err() {
            dst.truncate(start);
        }
        result
    }

    /// The number of bytes [`FieldTable::encode`] writes, length prefix
    /// included.
    pub fn encoded_len(&self) -> usize {
        4 + self
            .entries
            .iter()
            .map(|(k, v)| 1 + k.len() + v.encoded_len())
            .sum::<usize>()
    }
}

/// An iterator over the entries of a [`FieldTable`], in order.
#[derive(Debug, Clone)]
pub struct Iter<'a>(std::slice::Iter<'a, (ShortString, FieldValue)>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a ShortString, &'a FieldValue);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k, v))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(k, v)| (k, v))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a FieldTable {
    type Item = (&'a ShortString, &'a FieldValue);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl IntoIterator for FieldTable {
    type Item = (ShortString, FieldValue);
    type IntoIter = std::vec::IntoIter<(ShortString, FieldValue)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<K: Into<ShortString>, V: Into<FieldValue>> Extend<(K, V)> for FieldTable {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<K: Into<ShortString>, V: Into<FieldValue>> FromIterator<(K, V)> for FieldTable {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut table = FieldTable::new();
        table.extend(iter);
        table
    }
}

impl<K: Into<ShortString>, V: Into<FieldValue>, const N: usize> From<[(K, V); N]> for FieldTable {
    fn from(entries: [(K, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

/// An AMQP field array: a list of values, each with its own type.
///
/// ```
/// use puka::codec::{FieldArray, FieldValue};
/// let mut a = FieldArray::from(vec![FieldValue::from(1u8), FieldValue::from("two")]);
/// a.push(3.0f64);
/// assert_eq!(a.len(), 3);
/// assert_eq!(a.iter().filter_map(FieldValue::as_i64).sum::<i64>(), 1);
///
/// let mut buf = bytes::BytesMut::new();
/// a.encode(&mut buf).unwrap();
/// let payload = buf.freeze();
/// let mut r = puka::codec::wire::Reader::new(&payload);
/// assert_eq!(FieldArray::decode(&mut r).unwrap(), a);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldArray(pub Vec<FieldValue>);

impl FieldArray {
    /// An empty array.
    pub const fn new() -> Self {
        FieldArray(Vec::new())
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the array has no values.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends a value.
    pub fn push(&mut self, value: impl Into<FieldValue>) {
        self.0.push(value.into());
    }

    /// The values, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, FieldValue> {
        self.0.iter()
    }

    /// Reads a field array: a u32 byte length, then tagged values filling
    /// exactly that many bytes.
    ///
    /// # Errors
    /// As for [`FieldTable::decode`].
    pub fn decode(r: &mut Reader<'_>) -> Result<FieldArray, CodecError> {
        decode_array(r, 1)
    }

    /// Writes the array: a u32 byte length, then the tagged values.
    ///
    /// # Errors
    /// As for [`FieldTable::encode`]; on error `dst` is left as it was.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), CodecError> {
        let start = dst.len();
        let result = encode_array(self, dst, 1);
        if result.is_err() {
            dst.truncate(start);
        }
        result
    }

    /// The number of bytes [`FieldArray::encode`] writes, length prefix
    /// included.
    pub fn encoded_len(&self) -> usize {
        4 + self.0.iter().map(FieldValue::encoded_len).sum::<usize>()
    }
}

impl From<Vec<FieldValue>> for FieldArray {
    fn from(values: Vec<FieldValue>) -> Self {
        FieldArray(values)
    }
}

impl<V: Into<FieldValue>> FromIterator<V> for FieldArray {
    fn from_iter<I: IntoIterator<Item = V>>(iter: I) -> Self {
        FieldArray(iter.into_iter().map(Into::into).collect())
    }
}

impl<'a> IntoIterator for &'a FieldArray {
    type Item = &'a FieldValue;
    type IntoIter = std::slice::Iter<'a, FieldValue>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for FieldArray {
    type Item = FieldValue;
    type IntoIter = std::vec::IntoIter<FieldValue>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// The depth of a table or array nested inside one at `depth`, or an error
/// if that is deeper than allowed. Called before descending, so recursion is
/// bounded by [`MAX_NESTING_DEPTH`] whatever the input.
fn nested(depth: usize) -> Result<usize, CodecError> {
    if depth >= MAX_NESTING_DEPTH {
        Err(CodecError::NestingTooDeep(MAX_NESTING_DEPTH))
    } else {
        Ok(depth + 1)
    }
}

fn decode_table(r: &mut Reader<'_>, depth: usize) -> Result<FieldTable, CodecError> {
    let len = r.u32("field table")? as usize;
    let mut body = r.sub(len, "field table")?;
    // Not `with_capacity`: the entry count is not known and the byte length
    // is the peer's to choose.
    let mut entries = Vec::new();
    while body.remaining() > 0 {
        let key = body.shortstr("field table name")?;
        let value = decode_value(&mut body, depth)?;
        entries.push((key, value));
    }
    Ok(FieldTable { entries })
}

fn decode_array(r: &mut Reader<'_>, depth: usize) -> Result<FieldArray, CodecError> {
    let len = r.u32("field array")? as usize;
    let mut body = r.sub(len, "field array")?;
    let mut values = Vec::new();
    while body.remaining() > 0 {
        values.push(decode_value(&mut body, depth)?);
    }
    Ok(FieldArray(values))
}

/// Reads one tagged value belonging to a table or array at `depth`.
fn decode_value(r: &mut Reader<'_>, depth: usize) -> Result<FieldValue, CodecError> {
    let tag = r.u8("field value type")?;
    Ok(match tag {
        b't' => FieldValue::Bool(r.u8("boolean field")? != 0),
        b'b' => FieldValue::I8(i8::from_be_bytes([r.u8("i8 field")?])),
        b'B' => FieldValue::U8(r.u8("u8 field")?),
        b's' => FieldValue::I16(i16::from_be_bytes(r.u16("i16 field")?.to_be_bytes())),
        b'u' => FieldValue::U16(r.u16("u16 field")?),
        b'I' => FieldValue::I32(i32::from_be_bytes(r.u32("i32 field")?.to_be_bytes())),
        b'i' => FieldValue::U32(r.u32("u32 field")?),
        b'l' => FieldValue::I64(i64::from_be_bytes(r.u64("i64 field")?.to_be_bytes())),
        b'f' => FieldValue::F32(f32::from_bits(r.u32("f32 field")?)),
        b'd' => FieldValue::F64(f64::from_bits(r.u64("f64 field")?)),
        b'D' => {
            let scale = r.u8("decimal field")?;
            let value = i32::from_be_bytes(r.u32("decimal field")?.to_be_bytes());
            FieldValue::Decimal(Decimal { scale, value })
        }
        b'S' => FieldValue::LongString(r.longstr("long string field")?),
        b'A' => FieldValue::Array(decode_array(r, nested(depth)?)?),
        b'T' => FieldValue::Timestamp(Timestamp(r.u64("timestamp field")?)),
        b'F' => FieldValue::Table(decode_table(r, nested(depth)?)?),
        b'V' => FieldValue::Void,
        b'x' => FieldValue::ByteArray(r.longstr("byte array field")?),
        other => return Err(CodecError::UnknownFieldType(other)),
    })
}

/// Reserves a u32 length prefix at the end of `dst`, returning its position.
fn begin_length(dst: &mut BytesMut) -> usize {
    let at = dst.len();
    dst.put_u32(0);
    at
}

/// Fills in the length prefix at `at` with the number of bytes written after it.
fn end_length(dst: &mut BytesMut, at: usize) -> Result<(), CodecError> {
    let len = dst.len() - at - 4;
    let len32 = u32::try_from(len).map_err(|_| CodecError::LongValueTooLong(len))?;
    dst[at..at + 4].copy_from_slice(&len32.to_be_bytes());
    Ok(())
}

fn encode_table(table: &FieldTable, dst: &mut BytesMut, depth: usize) -> Result<(), CodecError> {
    let at = begin_length(dst);
    for (key, value) in &table.entries {
        put_shortstr(dst, key.as_bytes())?;
        encode_value(value, dst, depth)?;
    }
    end_length(dst, at)
}

fn encode_array(array: &FieldArray, dst: &mut BytesMut, depth: usize) -> Result<(), CodecError> {
    let at = begin_length(dst);
    for value in &array.0 {
        encode_value(value, dst, depth)?;
    }
    end_length(dst, at)
}

/// Writes one tagged value belonging to a table or array at `depth`.
fn encode_value(value: &FieldValue, dst: &mut BytesMut, depth: usize) -> Result<(), CodecError> {
    dst.put_u8(value.tag());
    match value {
        FieldValue::Bool(v) => dst.put_u8(u8::from(*v)),
        FieldValue::I8(v) => dst.put_i8(*v),
        FieldValue::U8(v) => dst.put_u8(*v),
        FieldValue::I16(v) => dst.put_i16(*v),
        FieldValue::U16(v) => dst.put_u16(*v),
        FieldValue::I32(v) => dst.put_i32(*v),
        FieldValue::U32(v) => dst.put_u32(*v),
        FieldValue::I64(v) => dst.put_i64(*v),
        FieldValue::F32(v) => dst.put_f32(*v),
        FieldValue::F64(v) => dst.put_f64(*v),
        FieldValue::Decimal(d) => {
            dst.put_u8(d.scale);
            dst.put_i32(d.value);
        }
        FieldValue::LongString(b) | FieldValue::ByteArray(b) => put_longstr(dst, b)?,
        FieldValue::Array(a) => encode_array(a, dst, nested(depth)?)?,
        FieldValue::Timestamp(t) => dst.put_u64(t.0),
        FieldValue::Table(t) => encode_table(t, dst, nested(depth)?)?,
        FieldValue::Void => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_table_bytes(t: &FieldTable) -> BytesMut {
        let mut dst = BytesMut::new();
        t.encode(&mut dst).unwrap();
        assert_eq!(dst.len(), t.encoded_len());
        dst
    }

    fn decode_table_bytes(bytes: &[u8]) -> Result<FieldTable, CodecError> {
        let payload = Bytes::copy_from_slice(bytes);
        let mut r = Reader::new(&payload);
        let t = FieldTable::decode(&mut r)?;
        assert_eq!(r.remaining(), 0, "table did not consume its input");
        Ok(t)
    }

    fn decode_array_bytes(bytes: &[u8]) -> Result<FieldArray, CodecError> {
        let payload = Bytes::copy_from_slice(bytes);
        let mut r = Reader::new(&payload);
        FieldArray::decode(&mut r)
    }

    fn round_trip(t: &FieldTable) {
        let bytes = encode_table_bytes(t);
        assert_eq!(&decode_table_bytes(&bytes).unwrap(), t);
    }

    /// One value of every type, with the tag each must be written with.
    fn every_type() -> Vec<(FieldValue, u8)> {
        vec![
            (FieldValue::Bool(true), b't'),
            (FieldValue::Bool(false), b't'),
            (FieldValue::I8(-128), b'b'),
            (FieldValue::U8(255), b'B'),
            (FieldValue::I16(-32_768), b's'),
            (FieldValue::U16(65_535), b'u'),
            (FieldValue::I32(i32::MIN), b'I'),
            (FieldValue::U32(u32::MAX), b'i'),
            (FieldValue::I64(i64::MIN), b'l'),
            (FieldValue::F32(-1.5), b'f'),
            (FieldValue::F64(std::f64::consts::PI), b'd'),
            (FieldValue::Decimal(Decimal::new(2, 1999)), b'D'),
            (FieldValue::Decimal(Decimal::new(255, i32::MIN)), b'D'),
            (FieldValue::from("héllo"), b'S'),
            (FieldValue::from(""), b'S'),
            (
                FieldValue::from(vec![FieldValue::from(1i32), FieldValue::Void]),
                b'A',
            ),
            (FieldValue::Array(FieldArray::new()), b'A'),
            (FieldValue::Timestamp(Timestamp(1_700_000_000)), b'T'),
            (
                FieldValue::Table(FieldTable::from([("inner", FieldValue::from(7u16))])),
                b'F',
            ),
            (FieldValue::Table(FieldTable::new()), b'F'),
            (FieldValue::Void, b'V'),
            (FieldValue::ByteArray(Bytes::from_static(b"\x00\xff")), b'x'),
            (FieldValue::ByteArray(Bytes::new()), b'x'),
        ]
    }

    #[test]
    fn every_type_round_trips_in_a_table() {
        let mut t = FieldTable::new();
        for (i, (v, tag)) in every_type().into_iter().enumerate() {
            assert_eq!(v.tag(), tag, "{v:?}");
            t.insert(format!("k{i}"), v.clone());
            // Each value alone, too.
            round_trip(&FieldTable::from([("v", v)]));
        }
        round_trip(&t);
    }

    #[test]
    fn every_type_round_trips_in_an_array() {
        let a: FieldArray = every_type().into_iter().map(|(v, _)| v).collect();
        let mut dst = BytesMut::new();
        a.encode(&mut dst).unwrap();
        assert_eq!(dst.len(), a.encoded_len());
        assert_eq!(decode_array_bytes(&dst).unwrap(), a);
    }

    #[test]
    fn nested_and_empty_round_trip() {
        round_trip(&FieldTable::new());
        round_trip(&FieldTable::from([("", "")]));
        let inner = FieldTable::new()
            .with(
                "list",
                vec![
                    FieldValue::from(FieldTable::new().with("deep", true)),
                    FieldValue::from(vec![FieldValue::from("x")]),
                ],
            )
            .with("n", 1i64);
        round_trip(&FieldTable::new().with("outer", inner).with("after", 2u8));
    }

    #[test]
    fn empty_table_is_four_zero_bytes() {
        assert_eq!(&encode_table_bytes(&FieldTable::new())[..], b"\0\0\0\0");
        assert_eq!(decode_table_bytes(b"\0\0\0\0").unwrap(), FieldTable::new());
    }

    #[test]
    fn byte_exact_small_table() {
        let t = FieldTable::new()
            .with("ttl", 60_000i32)
            .with("mode", "lazy")
            .with("on", true);
        // Entries: "ttl" 4 + 5 = 9 bytes, "mode" 5 + 9 = 14, "on" 3 + 2 = 5: 28.
        let expected: &[u8] = &[
            0, 0, 0, 28, // table length
            3, b't', b't', b'l', // name "ttl"
            b'I', 0x00, 0x00, 0xEA, 0x60, // i32 60000 = 0x0000EA60
            4, b'm', b'o', b'd', b'e', // name "mode"
            b'S', 0, 0, 0, 4, b'l', b'a', b'z', b'y', // long string "lazy"
            2, b'o', b'n', // name "on"
            b't', 1, // bool true
        ];
        assert_eq!(expected.len() - 4, 28);
        assert_eq!(&encode_table_bytes(&t)[..], expected);
        assert_eq!(decode_table_bytes(expected).unwrap(), t);
    }

    #[test]
    fn rabbitmq_integer_tags() {
        // 'I' is signed and 'i' unsigned; 's' is a signed short, 'u' unsigned.
        let bytes = b"\0\0\0\x13\x01aI\xff\xff\xff\xff\x01bi\xff\xff\xff\xff\x01cs\xff\xff";
        assert_eq!(bytes.len() - 4, 0x13);
        let t = decode_table_bytes(bytes).unwrap();
        assert_eq!(t.get("a"), Some(&FieldValue::I32(-1)));
        assert_eq!(t.get("b"), Some(&FieldValue::U32(u32::MAX)));
        assert_eq!(t.get("c"), Some(&FieldValue::I16(-1)));
        let t = decode_table_bytes(b"\0\0\0\x05\x01du\xff\xff").unwrap();
        assert_eq!(t.get("d"), Some(&FieldValue::U16(u16::MAX)));
    }

    #[test]
    fn decimal_value_is_signed() {
        // What pika sends for {"d": Decimal("-1.5")}: 'D', scale 1, then
        // struct.pack(">i", -15). The Java client reads the value signed too.
        let bytes = b"\0\0\0\x08\x01dD\x01\xff\xff\xff\xf1";
        assert_eq!(bytes.len() - 4, 8);
        let t = decode_table_bytes(bytes).unwrap();
        assert_eq!(
            t.get("d").and_then(FieldValue::as_decimal),
            Some(Decimal::new(1, -15))
        );
        assert_eq!(&encode_table_bytes(&t)[..], bytes);
    }

    #[test]
    fn any_nonzero_bool_is_true() {
        let t = decode_table_bytes(b"\0\0\0\x04\x01at\x07").unwrap();
        assert_eq!(t.get("a").and_then(FieldValue::as_bool), Some(true));
        let t = decode_table_bytes(b"\0\0\0\x04\x01at\x00").unwrap();
        assert_eq!(t.get("a").and_then(FieldValue::as_bool), Some(false));
    }

    #[test]
    fn truncated_inputs_are_errors() {
        // Length prefix itself cut short.
        assert!(matches!(
            decode_table_bytes(b"\0\0\0"),
            Err(CodecError::Truncated(_))
        ));
        // Length larger than what remains.
        assert!(matches!(
            decode_table_bytes(b"\0\0\0\x10\x01aV"),
            Err(CodecError::Truncated(_))
        ));
        // A long string claiming 0xFFFFFFFF bytes inside a table.
        assert!(matches!(
            decode_table_bytes(b"\0\0\0\x07\x01aS\xff\xff\xff\xff"),
            Err(CodecError::Truncated(_))
        ));
        // Same for a byte array and a nested table.
        assert!(matches!(
            decode_table_bytes(b"\0\0\0\x07\x01ax\xff\xff\xff\xff"),
            Err(CodecError::Truncated(_))
        ));
        assert!(matches!(
            decode_table_bytes(b"\0\0\0\x07\x01aF\xff\xff\xff\xff"),
            Err(CodecError::Truncated(_))
        ));
        // A value cut off by the table's own length.
        assert!(matches!(
            decode_table_bytes(b"\0\0\0\x04\x01aI\0\0\0\x01"),
            Err(CodecError::Truncated(_))
        ));
        // A name with no value.
        assert!(matches!(
            decode_table_bytes(b"\0\0\0\x02\x01a"),
            Err(CodecError::Truncated(_))
        ));
        // Every prefix of a valid encoding is rejected, never a panic.
        let full = encode_table_bytes(&FieldTable::from_iter(
            every_type()
                .into_iter()
                .enumerate()
                .map(|(i, (v, _))| (format!("k{i}"), v)),
        ));
        for n in 0..full.len() {
            assert!(decode_table_bytes(&full[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn unknown_tag_is_rejected() {
        assert_eq!(
            decode_table_bytes(b"\0\0\0\x03\x01aQ"),
            Err(CodecError::UnknownFieldType(b'Q'))
        );
        // 'L' (u64) is in some specs but not RabbitMQ's list.
        assert_eq!(
            decode_array_bytes(b"\0\0\0\x09L\0\0\0\0\0\0\0\x01"),
            Err(CodecError::UnknownFieldType(b'L'))
        );
    }

    #[test]
    fn invalid_utf8_name_is_rejected() {
        assert!(matches!(
            decode_table_bytes(b"\0\0\0\x03\x01\xffV"),
            Err(CodecError::InvalidUtf8(_))
        ));
    }

    #[test]
    fn long_string_with_invalid_utf8_is_accepted_as_bytes() {
        let t = decode_table_bytes(b"\0\0\0\x09\x01aS\0\0\0\x02\xff\xfe").unwrap();
        let v = t.get("a").unwrap();
        assert_eq!(v.as_str(), None);
        assert_eq!(v.as_bytes(), Some(&b"\xff\xfe"[..]));
        round_trip(&t);
    }

    #[test]
    fn long_key_fails_to_encode_and_leaves_dst_alone() {
        let t = FieldTable::new().with("ok", 1u8).with("k".repeat(256), 1u8);
        let mut dst = BytesMut::from(&b"prefix"[..]);
        assert_eq!(t.encode(&mut dst), Err(CodecError::ShortStringTooLong(256)));
        assert_eq!(&dst[..], b"prefix");
        // 255 is fine.
        round_trip(&FieldTable::new().with("k".repeat(255), 1u8));
    }

    /// A table nested `levels` deep (the outermost counts as 1), each table
    /// holding one entry named "k" whose value is the next, built front to
    /// back so that large depths cost linear time.
    fn nested_tables(levels: usize) -> Vec<u8> {
        // Each level adds a name (2 bytes), a tag and a length: 7 bytes.
        let mut out = Vec::with_capacity(levels * 7);
        for level in 1..levels {
            out.extend_from_slice(&u32::try_from((levels - level) * 7).unwrap().to_be_bytes());
            out.extend_from_slice(b"\x01kF");
        }
        out.extend_from_slice(&[0, 0, 0, 0]);
        out
    }

    /// An array nested `levels` deep, each holding only the next.
    fn nested_arrays(levels: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(levels * 5);
        for level in 1..levels {
            out.extend_from_slice(&u32::try_from((levels - level) * 5).unwrap().to_be_bytes());
            out.push(b'A');
        }
        out.extend_from_slice(&[0, 0, 0, 0]);
        out
    }

    fn table_of_depth(levels: usize) -> FieldTable {
        let mut t = FieldTable::new();
        for _ in 1..levels {
            t = FieldTable::new().with("k", t);
        }
        t
    }

    fn array_of_depth(levels: usize) -> FieldArray {
        let mut a = FieldArray::new();
        for _ in 1..levels {
            a = FieldArray(vec![FieldValue::Array(a)]);
        }
        a
    }

    #[test]
    fn nesting_builders_match_the_encoder() {
        assert_eq!(
            &encode_table_bytes(&table_of_depth(5))[..],
            &nested_tables(5)[..]
        );
        let mut dst = BytesMut::new();
        array_of_depth(5).encode(&mut dst).unwrap();
        assert_eq!(&dst[..], &nested_arrays(5)[..]);
    }

    #[test]
    fn table_nesting_limit() {
        let deepest = decode_table_bytes(&nested_tables(MAX_NESTING_DEPTH)).unwrap();
        assert_eq!(deepest, table_of_depth(MAX_NESTING_DEPTH));
        assert_eq!(
            decode_table_bytes(&nested_tables(MAX_NESTING_DEPTH + 1)),
            Err(CodecError::NestingTooDeep(MAX_NESTING_DEPTH))
        );

        round_trip(&table_of_depth(MAX_NESTING_DEPTH));
        let mut dst = BytesMut::new();
        assert_eq!(
            table_of_depth(MAX_NESTING_DEPTH + 1).encode(&mut dst),
            Err(CodecError::NestingTooDeep(MAX_NESTING_DEPTH))
        );
        assert!(dst.is_empty());
    }

    #[test]
    fn array_nesting_limit() {
        let deepest = decode_array_bytes(&nested_arrays(MAX_NESTING_DEPTH)).unwrap();
        assert_eq!(deepest, array_of_depth(MAX_NESTING_DEPTH));
        assert_eq!(
            decode_array_bytes(&nested_arrays(MAX_NESTING_DEPTH + 1)),
            Err(CodecError::NestingTooDeep(MAX_NESTING_DEPTH))
        );

        let mut dst = BytesMut::new();
        array_of_depth(MAX_NESTING_DEPTH).encode(&mut dst).unwrap();
        assert_eq!(
            array_of_depth(MAX_NESTING_DEPTH + 1).encode(&mut dst),
            Err(CodecError::NestingTooDeep(MAX_NESTING_DEPTH))
        );
    }

    #[test]
    fn mixed_nesting_counts_tables_and_arrays_together() {
        // Alternate table and array levels.
        let build = |levels: usize| {
            let mut v = FieldValue::Table(FieldTable::new());
            for i in 1..levels {
                v = if i % 2 == 0 {
                    FieldValue::Table(FieldTable::new().with("k", v))
                } else {
                    FieldValue::from(vec![v])
                };
            }
            FieldTable::new().with("top", v)
        };
        // `build(n)` is n + 1 levels deep counting the outer table.
        round_trip(&build(MAX_NESTING_DEPTH - 1));
        let mut dst = BytesMut::new();
        assert_eq!(
            build(MAX_NESTING_DEPTH).encode(&mut dst),
            Err(CodecError::NestingTooDeep(MAX_NESTING_DEPTH))
        );
    }

    #[test]
    fn hostile_deep_nesting_does_not_overflow_the_stack() {
        assert_eq!(
            decode_table_bytes(&nested_tables(100_000)),
            Err(CodecError::NestingTooDeep(MAX_NESTING_DEPTH))
        );
        assert_eq!(
            decode_array_bytes(&nested_arrays(100_000)),
            Err(CodecError::NestingTooDeep(MAX_NESTING_DEPTH))
        );
        // Same in a table of arrays.
        let mut bytes = b"\0\0\0\0\x01kA".to_vec();
        let arrays = nested_arrays(100_000);
        bytes.extend_from_slice(&arrays);
        let len = u32::try_from(bytes.len() - 4).unwrap();
        bytes[..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            decode_table_bytes(&bytes),
            Err(CodecError::NestingTooDeep(MAX_NESTING_DEPTH))
        );
    }

    #[test]
    fn table_api() {
        let mut t = FieldTable::from([("a", FieldValue::from(1i32)), ("b", FieldValue::from("x"))]);
        assert_eq!(t.len(), 2);
        assert!(!t.is_empty());
        assert!(t.contains_key("a"));
        assert!(!t.contains_key("z"));
        // Replacing keeps the position.
        assert_eq!(t.insert("a", 2i64), Some(FieldValue::I32(1)));
        let keys: Vec<&str> = t.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(t.get("a"), Some(&FieldValue::I64(2)));
        t.insert("c", Timestamp(5));
        assert_eq!(t.remove("a"), Some(FieldValue::I64(2)));
        assert_eq!(t.remove("a"), None);
        let keys: Vec<&str> = (&t).into_iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "c"]);
        if let Some(v) = t.get_mut("b") {
            *v = FieldValue::Void;
        }
        assert_eq!(t.get("b"), Some(&FieldValue::Void));
        assert_eq!(t.iter().len(), 2);
        let owned: Vec<(ShortString, FieldValue)> = t.into_iter().collect();
        assert_eq!(owned.len(), 2);
    }

    #[test]
    fn decoded_duplicates_are_kept() {
        let t = decode_table_bytes(b"\0\0\0\x0b\x01aB\x01\x01aB\x02\x01bV").unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t.get("a"), Some(&FieldValue::U8(1)));
        round_trip(&t);
    }

    #[test]
    fn accessors() {
        assert_eq!(FieldValue::from(-3i8).as_i64(), Some(-3));
        assert_eq!(FieldValue::from(-3i8).as_u64(), None);
        assert_eq!(
            FieldValue::from(u32::MAX).as_i64(),
            Some(i64::from(u32::MAX))
        );
        assert_eq!(FieldValue::from(7i64).as_u64(), Some(7));
        assert_eq!(FieldValue::from(7u16).as_u64(), Some(7));
        assert_eq!(FieldValue::from(true).as_i64(), None);
        assert_eq!(FieldValue::from(1.5f32).as_f64(), Some(1.5));
        assert_eq!(FieldValue::from(2.5f64).as_f64(), Some(2.5));
        assert_eq!(FieldValue::from(1i32).as_f64(), None);
        assert_eq!(FieldValue::from(String::from("s")).as_str(), Some("s"));
        assert_eq!(
            FieldValue::from(Bytes::from_static(b"b")).as_bytes(),
            Some(&b"b"[..])
        );
        assert_eq!(
            FieldValue::ByteArray(Bytes::from_static(b"b")).as_str(),
            None
        );
        assert_eq!(FieldValue::from(ShortString::from("q")).as_str(), Some("q"));
        assert_eq!(
            FieldValue::from(Timestamp(9)).as_timestamp(),
            Some(Timestamp(9))
        );
        assert_eq!(
            FieldValue::from(Decimal::new(1, 5)).as_decimal(),
            Some(Decimal::new(1, 5))
        );
        assert!(FieldValue::from(FieldTable::new()).as_table().is_some());
        assert!(FieldValue::from(FieldArray::new()).as_array().is_some());
        assert_eq!(FieldValue::Void.as_table(), None);
        assert_eq!(FieldValue::Void.as_bool(), None);
    }

    #[test]
    fn timestamp_conversions() {
        let t = Timestamp::from_system_time(UNIX_EPOCH + Duration::from_secs(42));
        assert_eq!(t, Timestamp(42));
        assert_eq!(u64::from(t), 42);
        assert_eq!(
            t.to_system_time(),
            Some(UNIX_EPOCH + Duration::from_secs(42))
        );
        assert_eq!(
            Timestamp::from_system_time(UNIX_EPOCH - Duration::from_secs(1)),
            Timestamp(0)
        );
    }
}
