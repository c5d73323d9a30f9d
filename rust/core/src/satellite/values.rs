//! Column values as `SatOpRow` carries them (satellite-protocol.md §6.6): the server's text for
//! each type, and the validation of what clients send.
//!
//! Server to client, values are Postgres's text output under the session settings every
//! electric-trio connection uses (`DateStyle = ISO`, `TimeZone = UTC`, `extra_float_digits = 1`),
//! except that timestamptz ends in `Z` and bytea is raw bytes. Client to server, each value is
//! checked against its column type as the legacy server did.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::error::DecodeError;
use crate::value::{oid, Date, Time, Value};

/// The column types a table can have once electrified (server-behaviour.md §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Text,
    Varchar,
    Uuid,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Json,
    Jsonb,
    Bytea,
    /// An enum type with its labels in order.
    Enum(Arc<[String]>),
}

impl ColumnType {
    /// The type of a `pg_type.typname`; `None` for names that are not electrifiable (and for
    /// enums, whose labels must be given: [`ColumnType::Enum`]).
    pub fn from_pg_name(name: &str) -> Option<ColumnType> {
        Some(match name {
            "bool" => ColumnType::Bool,
            "int2" => ColumnType::Int2,
            "int4" => ColumnType::Int4,
            "int8" => ColumnType::Int8,
            "float4" => ColumnType::Float4,
            "float8" => ColumnType::Float8,
            "text" => ColumnType::Text,
            "varchar" => ColumnType::Varchar,
            "uuid" => ColumnType::Uuid,
            "date" => ColumnType::Date,
            "time" => ColumnType::Time,
            "timestamp" => ColumnType::Timestamp,
            "timestamptz" => ColumnType::TimestampTz,
            "json" => ColumnType::Json,
            "jsonb" => ColumnType::Jsonb,
            "bytea" => ColumnType::Bytea,
            _ => return None,
        })
    }

    /// The type of a built-in type OID; `None` for other OIDs (enums have OIDs of their own).
    pub fn from_oid(type_oid: u32) -> Option<ColumnType> {
        Some(match type_oid {
            oid::BOOL => ColumnType::Bool,
            oid::INT2 => ColumnType::Int2,
            oid::INT4 => ColumnType::Int4,
            oid::INT8 => ColumnType::Int8,
            oid::FLOAT4 => ColumnType::Float4,
            oid::FLOAT8 => ColumnType::Float8,
            oid::TEXT => ColumnType::Text,
            oid::VARCHAR => ColumnType::Varchar,
            oid::UUID => ColumnType::Uuid,
            oid::DATE => ColumnType::Date,
            oid::TIME => ColumnType::Time,
            oid::TIMESTAMP => ColumnType::Timestamp,
            oid::TIMESTAMPTZ => ColumnType::TimestampTz,
            oid::JSON => ColumnType::Json,
            oid::JSONB => ColumnType::Jsonb,
            oid::BYTEA => ColumnType::Bytea,
            _ => return None,
        })
    }

    /// The `pg_type.typname` (`"enum"` for enums, whose own name the type does not keep).
    pub fn pg_name(&self) -> &'static str {
        match self {
            ColumnType::Bool => "bool",
            ColumnType::Int2 => "int2",
            ColumnType::Int4 => "int4",
            ColumnType::Int8 => "int8",
            ColumnType::Float4 => "float4",
            ColumnType::Float8 => "float8",
            ColumnType::Text => "text",
            ColumnType::Varchar => "varchar",
            ColumnType::Uuid => "uuid",
            ColumnType::Date => "date",
            ColumnType::Time => "time",
            ColumnType::Timestamp => "timestamp",
            ColumnType::TimestampTz => "timestamptz",
            ColumnType::Json => "json",
            ColumnType::Jsonb => "jsonb",
            ColumnType::Bytea => "bytea",
            ColumnType::Enum(_) => "enum",
        }
    }
}

/// A value the wire has no text for.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("a {0} value has no Satellite encoding")]
pub struct UnencodableValue(pub &'static str);

fn variant_name(v: &Value<'_>) -> &'static str {
    match v {
        Value::Null => "NULL",
        Value::Bool(_) => "bool",
        Value::Int(_) => "integer",
        Value::Float(_) => "float",
        Value::Numeric(_) => "numeric",
        Value::Text(_) => "text",
        Value::Bytes(_) => "bytea",
        Value::Uuid(_) => "uuid",
        Value::Date(_) => "date",
        Value::Infinity { .. } => "infinity",
        Value::Time(_) => "time",
        Value::TimeTz(..) => "timetz",
        Value::Timestamp(..) => "timestamp",
        Value::TimestampTz(..) => "timestamptz",
        Value::Json(_) => "json",
        Value::Array(_) => "array",
    }
}

/// Appends the wire text of a non-NULL `value` of a column of type `ty` to `out`. The type only
/// matters for floats (float4 prints the shortest text of the single-precision value); the
/// value decides the rest, so an enum column's `Value::Text` is written as its label. NULL,
/// arrays and timetz (never electrifiable) have no encoding.
pub fn encode_value(
    ty: &ColumnType,
    value: &Value<'_>,
    out: &mut Vec<u8>,
) -> Result<(), UnencodableValue> {
    write_text(value, matches!(ty, ColumnType::Float4), out)
}

/// The number of bytes [`encode_value`] appends, without building the text (floats are
/// formatted on the stack).
pub fn encoded_value_len(ty: &ColumnType, value: &Value<'_>) -> Result<usize, UnencodableValue> {
    text_len(value, matches!(ty, ColumnType::Float4))
}

pub(crate) fn write_text(
    value: &Value<'_>,
    float4: bool,
    out: &mut Vec<u8>,
) -> Result<(), UnencodableValue> {
    match value {
        Value::Bool(b) => out.push(if *b { b't' } else { b'f' }),
        Value::Int(i) => push_int(out, *i),
        Value::Float(f) => {
            let mut buf = StackBuf::new();
            write_float(&mut buf, *f, float4);
            out.extend_from_slice(buf.as_bytes());
        }
        Value::Numeric(s) | Value::Text(s) | Value::Json(s) => out.extend_from_slice(s.as_bytes()),
        Value::Bytes(b) => out.extend_from_slice(b),
        Value::Uuid(u) => push_uuid(out, u),
        Value::Date(d) => push_date(out, *d),
        Value::Infinity { positive, .. } => {
            out.extend_from_slice(if *positive { b"infinity" } else { b"-infinity" })
        }
        Value::Time(t) => push_time(out, *t),
        Value::Timestamp(d, t) => {
            push_date(out, *d);
            out.push(b' ');
            push_time(out, *t);
        }
        Value::TimestampTz(d, t) => {
            push_date(out, *d);
            out.push(b' ');
            push_time(out, *t);
            out.push(b'Z');
        }
        Value::Null | Value::TimeTz(..) | Value::Array(_) => {
            return Err(UnencodableValue(variant_name(value)))
        }
    }
    Ok(())
}

pub(crate) fn text_len(value: &Value<'_>, float4: bool) -> Result<usize, UnencodableValue> {
    Ok(match value {
        Value::Bool(_) => 1,
        Value::Int(i) => int_len(*i),
        Value::Float(f) => {
            let mut buf = StackBuf::new();
            write_float(&mut buf, *f, float4);
            buf.len
        }
        Value::Numeric(s) | Value::Text(s) | Value::Json(s) => s.len(),
        Value::Bytes(b) => b.len(),
        Value::Uuid(_) => 36,
        Value::Date(d) => date_len(*d),
        Value::Infinity { positive, .. } => 8 + usize::from(!positive),
        Value::Time(t) => time_len(*t),
        Value::Timestamp(d, t) => date_len(*d) + 1 + time_len(*t),
        Value::TimestampTz(d, t) => date_len(*d) + 1 + time_len(*t) + 1,
        Value::Null | Value::TimeTz(..) | Value::Array(_) => {
            return Err(UnencodableValue(variant_name(value)))
        }
    })
}

/// Appends a value that [`text_len`] accepted as a protobuf length-delimited payload (varint
/// length, then the text); floats are formatted once.
pub(crate) fn write_delimited(value: &Value<'_>, float4: bool, out: &mut Vec<u8>) {
    if let Value::Float(f) = value {
        let mut buf = StackBuf::new();
        write_float(&mut buf, *f, float4);
        out.push(buf.len as u8);
        out.extend_from_slice(buf.as_bytes());
    } else if let Ok(len) = text_len(value, float4) {
        super::oplog::put_varint(out, len as u64);
        let _ = write_text(value, float4, out);
    }
}

fn int_len(i: i64) -> usize {
    let mut n = i.unsigned_abs();
    let mut len = usize::from(i < 0) + 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

fn push_int(out: &mut Vec<u8>, i: i64) {
    let mut buf = [0u8; 20];
    let mut n = i.unsigned_abs();
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if i < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[at..]);
}

/// A fixed buffer for float text (the longest is `-2.2250738585072014e-308`, 24 bytes).
struct StackBuf {
    buf: [u8; 32],
    len: usize,
}

impl StackBuf {
    fn new() -> StackBuf {
        StackBuf {
            buf: [0; 32],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn extend(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Postgres's shortest-exact float text (`float8out`/`float4out` with `extra_float_digits > 0`):
/// the shortest digits that read back as the same value, in fixed notation when the decimal
/// exponent is in [-4, 15) (float4: [-4, 6)), else `d.ddde±XX` with at least two exponent digits.
fn write_float(buf: &mut StackBuf, f: f64, float4: bool) {
    if f.is_nan() {
        buf.extend(b"NaN");
        return;
    }
    if f.is_infinite() {
        buf.extend(if f > 0.0 { b"Infinity" } else { b"-Infinity" });
        return;
    }
    // Rust's `{:e}` gives the same shortest round-trip digits as Postgres's Ryu; only the
    // layout differs, so the digits and exponent are laid out again here.
    let mut sci = StackBuf::new();
    let _ = if float4 {
        write!(sci, "{:e}", f as f32)
    } else {
        write!(sci, "{f:e}")
    };
    let text = sci.as_bytes();
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let e = text.iter().position(|&b| b == b'e').expect("exponent");
    let exp = match &text[e + 1..] {
        [b'-', digits @ ..] => -digits_value(digits),
        digits => digits_value(digits),
    };
    let mut digits = [0u8; 20];
    let mut n = 0;
    for &b in text[..e].iter().filter(|&&b| b != b'.') {
        digits[n] = b;
        n += 1;
    }
    let digits = &digits[..n];
    if negative {
        buf.extend(b"-");
    }
    let fixed_below = if float4 { 6 } else { 15 };
    if (0..fixed_below).contains(&exp) {
        let int_len = exp as usize + 1;
        if n <= int_len {
            buf.extend(digits);
            for _ in n..int_len {
                buf.extend(b"0");
            }
        } else {
            buf.extend(&digits[..int_len]);
            buf.extend(b".");
            buf.extend(&digits[int_len..]);
        }
    } else if (-4..0).contains(&exp) {
        buf.extend(b"0.");
        for _ in 1..-exp {
            buf.extend(b"0");
        }
        buf.extend(digits);
    } else {
        buf.extend(&digits[..1]);
        if n > 1 {
            buf.extend(b".");
            buf.extend(&digits[1..]);
        }
        buf.extend(if exp < 0 { b"e-" } else { b"e+" });
        let abs = exp.unsigned_abs();
        if abs >= 100 {
            buf.extend(&[b'0' + (abs / 100) as u8]);
        }
        buf.extend(&[b'0' + (abs / 10 % 10) as u8, b'0' + (abs % 10) as u8]);
    }
}

fn digits_value(digits: &[u8]) -> i32 {
    digits
        .iter()
        .fold(0, |acc, &d| acc * 10 + i32::from(d - b'0'))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_uuid(out: &mut Vec<u8>, u: &[u8; 16]) {
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
}

fn push_digits(out: &mut Vec<u8>, n: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut n = n;
    let mut at = buf.len();
    while n > 0 {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let start = at.min(buf.len() - width);
    out.extend_from_slice(&buf[start..]);
}

fn date_len(d: Date) -> usize {
    let year_digits = int_len(i64::from(d.year)).max(4);
    year_digits + 6
}

fn push_date(out: &mut Vec<u8>, d: Date) {
    push_digits(out, d.year.max(0) as u32, 4);
    out.push(b'-');
    push_digits(out, u32::from(d.month), 2);
    out.push(b'-');
    push_digits(out, u32::from(d.day), 2);
}

/// The fraction digits Postgres prints: up to six, trailing zeros dropped.
fn fraction_digits(micro: u32) -> (u32, usize) {
    if micro == 0 {
        return (0, 0);
    }
    let (mut n, mut width) = (micro, 6);
    while n % 10 == 0 {
        n /= 10;
        width -= 1;
    }
    (n, width)
}

fn time_len(t: Time) -> usize {
    match fraction_digits(t.micro) {
        (_, 0) => 8,
        (_, width) => 9 + width,
    }
}

fn push_time(out: &mut Vec<u8>, t: Time) {
    push_digits(out, u32::from(t.hour), 2);
    out.push(b':');
    push_digits(out, u32::from(t.minute), 2);
    out.push(b':');
    push_digits(out, u32::from(t.second), 2);
    if let (n, width @ 1..) = fraction_digits(t.micro) {
        out.push(b'.');
        push_digits(out, n, width);
    }
}

// ---------------------------------------------------------------------------------------------
// Client to server

/// Decodes and validates the wire text of a non-NULL value a client sent for a column of type
/// `ty`, with the legacy server's rules (satellite-protocol.md §6.6, last column). Text, enum
/// labels and JSON borrow from `raw`.
pub fn decode_value<'a>(ty: &ColumnType, raw: &'a [u8]) -> Result<Value<'a>, DecodeError> {
    let name = ty.pg_name();
    let bad = |reason| DecodeError::new(name, raw, reason);
    Ok(match ty {
        ColumnType::Bool => match raw {
            b"t" => Value::Bool(true),
            b"f" => Value::Bool(false),
            _ => return Err(bad("expected t or f")),
        },
        ColumnType::Int2 | ColumnType::Int4 | ColumnType::Int8 => {
            let i = crate::value::parse_int(raw).ok_or_else(|| bad("not an integer"))?;
            let fits = match ty {
                ColumnType::Int2 => i16::try_from(i).is_ok(),
                ColumnType::Int4 => i32::try_from(i).is_ok(),
                _ => true,
            };
            if !fits {
                return Err(bad("out of range"));
            }
            Value::Int(i)
        }
        ColumnType::Float4 | ColumnType::Float8 => {
            Value::Float(parse_float(raw, matches!(ty, ColumnType::Float4)).map_err(bad)?)
        }
        ColumnType::Text | ColumnType::Varchar => Value::Text(Cow::Borrowed(utf8(raw, name)?)),
        ColumnType::Enum(labels) => {
            let label = utf8(raw, name)?;
            if !labels.iter().any(|l| l == label) {
                return Err(bad("not a label of the enum"));
            }
            Value::Text(Cow::Borrowed(label))
        }
        ColumnType::Json | ColumnType::Jsonb => {
            let text = utf8(raw, name)?;
            serde_json::from_str::<serde_json::Value>(text).map_err(|_| bad("not JSON"))?;
            Value::Json(Cow::Borrowed(text))
        }
        ColumnType::Bytea => Value::Bytes(raw.to_vec()),
        ColumnType::Uuid => {
            Value::Uuid(parse_uuid(raw).ok_or_else(|| bad("expected 8-4-4-4-12 hex digits"))?)
        }
        ColumnType::Date => {
            let (d, rest) = parse_date(raw).map_err(bad)?;
            if !rest.is_empty() {
                return Err(bad("trailing characters"));
            }
            Value::Date(d)
        }
        ColumnType::Time => {
            let (t, rest) = parse_time(raw).map_err(bad)?;
            if !rest.is_empty() {
                return Err(bad("trailing characters"));
            }
            Value::Time(t)
        }
        ColumnType::Timestamp => {
            let (d, t, rest) = parse_timestamp(raw).map_err(bad)?;
            if !rest.is_empty() {
                return Err(bad("a timestamp has no UTC offset"));
            }
            Value::Timestamp(d, t)
        }
        ColumnType::TimestampTz => {
            let (d, t, rest) = parse_timestamp(raw).map_err(bad)?;
            if !is_zero_offset(rest) {
                return Err(bad("expected the UTC offset Z, +00 or +00:00"));
            }
            Value::TimestampTz(d, t)
        }
    })
}

fn utf8<'a>(raw: &'a [u8], name: &'static str) -> Result<&'a str, DecodeError> {
    std::str::from_utf8(raw).map_err(|_| DecodeError::new(name, raw, "invalid UTF-8"))
}

/// A float in any spelling Rust parses (`1.5`, `1e+21`, `.5`), or `inf`, `infinity`, `nan` in any
/// case with an optional sign. A float4 that overflows to infinity or underflows to zero is
/// refused.
fn parse_float(raw: &[u8], float4: bool) -> Result<f64, &'static str> {
    let text = std::str::from_utf8(raw).map_err(|_| "not a number")?;
    let f: f64 = text.parse().map_err(|_| "not a number")?;
    if float4 && f.is_finite() {
        let narrow = f as f32;
        if narrow.is_infinite() {
            return Err("out of range for float4");
        }
        if narrow == 0.0 && f != 0.0 {
            return Err("underflows float4");
        }
    }
    Ok(f)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Exactly `8-4-4-4-12` hex digits with hyphens, any case.
fn parse_uuid(raw: &[u8]) -> Option<[u8; 16]> {
    if raw.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut i = 0;
    while i < 36 {
        if matches!(i, 8 | 13 | 18 | 23) {
            if raw[i] != b'-' {
                return None;
            }
            i += 1;
            continue;
        }
        out[n] = hex(raw[i])? << 4 | hex(raw[i + 1])?;
        n += 1;
        i += 2;
    }
    Some(out)
}

fn fixed_digits(raw: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = raw.get(at..at + n)?;
    s.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// `YYYY-MM-DD` with a year from 1 to 9999 and a day that exists.
fn parse_date(raw: &[u8]) -> Result<(Date, &[u8]), &'static str> {
    let year = fixed_digits(raw, 0, 4).ok_or("expected YYYY-MM-DD")?;
    let month = fixed_digits(raw, 5, 2).ok_or("expected YYYY-MM-DD")?;
    let day = fixed_digits(raw, 8, 2).ok_or("expected YYYY-MM-DD")?;
    if raw[4] != b'-' || raw[7] != b'-' {
        return Err("expected YYYY-MM-DD");
    }
    if year == 0 {
        return Err("year out of range");
    }
    let (year, month, day) = (year as i32, month as u8, day as u8);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err("no such date");
    }
    Ok((Date { year, month, day }, &raw[10..]))
}

/// `HH:MM:SS[.f]` with up to six fraction digits and hours, minutes and seconds in range.
fn parse_time(raw: &[u8]) -> Result<(Time, &[u8]), &'static str> {
    let hour = fixed_digits(raw, 0, 2).ok_or("expected HH:MM:SS")?;
    let minute = fixed_digits(raw, 3, 2).ok_or("expected HH:MM:SS")?;
    let second = fixed_digits(raw, 6, 2).ok_or("expected HH:MM:SS")?;
    if raw[2] != b':' || raw[5] != b':' {
        return Err("expected HH:MM:SS");
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err("time out of range");
    }
    let mut micro = 0;
    let mut end = 8;
    if raw.get(8) == Some(&b'.') {
        let digits = raw[9..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 6 {
            return Err("expected 1 to 6 fraction digits");
        }
        let frac = fixed_digits(raw, 9, digits).expect("digits");
        micro = frac * 10u32.pow(6 - digits as u32);
        end = 9 + digits;
    }
    let t = Time {
        hour: hour as u8,
        minute: minute as u8,
        second: second as u8,
        micro,
    };
    Ok((t, &raw[end..]))
}

/// `YYYY-MM-DD HH:MM:SS[.f]` (or `T` between date and time), returning what follows.
fn parse_timestamp(raw: &[u8]) -> Result<(Date, Time, &[u8]), &'static str> {
    let (d, rest) = parse_date(raw)?;
    let rest = match rest.first() {
        Some(b' ' | b'T') => &rest[1..],
        _ => return Err("expected a time after the date"),
    };
    let (t, rest) = parse_time(rest)?;
    Ok((d, t, rest))
}

fn is_zero_offset(rest: &[u8]) -> bool {
    matches!(
        rest,
        b"Z" | b"z" | b"+00" | b"-00" | b"+00:00" | b"-00:00" | b"+0000" | b"-0000"
    )
}
