//! Postgres values in text format, decoded into typed Rust values.
//!
//! The same decoder serves query results (text format) and pgoutput tuples (always text). It
//! assumes the session settings every electric-trio connection sets: `DateStyle = ISO`,
//! `bytea_output = hex`, `TimeZone = UTC` (any numeric offset is still honoured).

use crate::error::DecodeError;

/// Well-known type OIDs (pg_type.h).
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const XID: u32 = 28;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const TIMETZ: u32 = 1266;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const PG_LSN: u32 = 3220;
    pub const JSONB: u32 = 3802;
    pub const XID8: u32 = 5069;

    pub const BOOL_ARRAY: u32 = 1000;
    pub const BYTEA_ARRAY: u32 = 1001;
    pub const NAME_ARRAY: u32 = 1003;
    pub const INT2_ARRAY: u32 = 1005;
    pub const INT4_ARRAY: u32 = 1007;
    pub const TEXT_ARRAY: u32 = 1009;
    pub const BPCHAR_ARRAY: u32 = 1014;
    pub const VARCHAR_ARRAY: u32 = 1015;
    pub const INT8_ARRAY: u32 = 1016;
    pub const FLOAT4_ARRAY: u32 = 1021;
    pub const FLOAT8_ARRAY: u32 = 1022;
    pub const OID_ARRAY: u32 = 1028;
    pub const TIMESTAMP_ARRAY: u32 = 1115;
    pub const DATE_ARRAY: u32 = 1182;
    pub const TIME_ARRAY: u32 = 1183;
    pub const TIMESTAMPTZ_ARRAY: u32 = 1185;
    pub const NUMERIC_ARRAY: u32 = 1231;
    pub const JSON_ARRAY: u32 = 199;
    pub const UUID_ARRAY: u32 = 2951;
    pub const JSONB_ARRAY: u32 = 3807;
}

/// How a column's text is turned into a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int,
    Float,
    Numeric,
    Text,
    Bytea,
    Uuid,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Json,
    Array(Scalar),
}

/// Element kinds of arrays (arrays of arrays are multi-dimensional arrays, not a kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    Bool,
    Int,
    Float,
    Numeric,
    Text,
    Bytea,
    Uuid,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Json,
}

impl Kind {
    /// The decoding of a type OID; unknown types (enums, domains, intervals, ...) stay text.
    pub fn of(type_oid: u32) -> Kind {
        use oid::*;
        match type_oid {
            BOOL => Kind::Bool,
            INT2 | INT4 | INT8 | OID | XID | XID8 => Kind::Int,
            FLOAT4 | FLOAT8 => Kind::Float,
            NUMERIC => Kind::Numeric,
            BYTEA => Kind::Bytea,
            UUID => Kind::Uuid,
            DATE => Kind::Date,
            TIME => Kind::Time,
            TIMETZ => Kind::TimeTz,
            TIMESTAMP => Kind::Timestamp,
            TIMESTAMPTZ => Kind::TimestampTz,
            JSON | JSONB => Kind::Json,
            other => match Scalar::of_array(other) {
                Some(s) => Kind::Array(s),
                None => Kind::Text,
            },
        }
    }
}

impl Scalar {
    fn of_array(array_oid: u32) -> Option<Scalar> {
        use oid::*;
        Some(match array_oid {
            BOOL_ARRAY => Scalar::Bool,
            INT2_ARRAY | INT4_ARRAY | INT8_ARRAY | OID_ARRAY => Scalar::Int,
            FLOAT4_ARRAY | FLOAT8_ARRAY => Scalar::Float,
            NUMERIC_ARRAY => Scalar::Numeric,
            TEXT_ARRAY | VARCHAR_ARRAY | BPCHAR_ARRAY | NAME_ARRAY => Scalar::Text,
            BYTEA_ARRAY => Scalar::Bytea,
            UUID_ARRAY => Scalar::Uuid,
            DATE_ARRAY => Scalar::Date,
            TIME_ARRAY => Scalar::Time,
            TIMESTAMP_ARRAY => Scalar::Timestamp,
            TIMESTAMPTZ_ARRAY => Scalar::TimestampTz,
            JSON_ARRAY | JSONB_ARRAY => Scalar::Json,
            _ => return None,
        })
    }

    fn kind(self) -> Kind {
        match self {
            Scalar::Bool => Kind::Bool,
            Scalar::Int => Kind::Int,
            Scalar::Float => Kind::Float,
            Scalar::Numeric => Kind::Numeric,
            Scalar::Text => Kind::Text,
            Scalar::Bytea => Kind::Bytea,
            Scalar::Uuid => Kind::Uuid,
            Scalar::Date => Kind::Date,
            Scalar::Time => Kind::Time,
            Scalar::Timestamp => Kind::Timestamp,
            Scalar::TimestampTz => Kind::TimestampTz,
            Scalar::Json => Kind::Json,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    pub year: i32,
    pub month: u8,
    pub day: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub micro: u32,
}

/// A decoded value. Strings borrow from the input where no unescaping was needed.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Decimal text as Postgres printed it (including `NaN`, `Infinity`).
    Numeric(std::borrow::Cow<'a, str>),
    Text(std::borrow::Cow<'a, str>),
    Bytes(Vec<u8>),
    Uuid([u8; 16]),
    Date(Date),
    /// `infinity` (true) or `-infinity` (false) of a date or timestamp.
    Infinity {
        positive: bool,
        of: Scalar,
    },
    Time(Time),
    /// A time with its UTC offset in seconds.
    TimeTz(Time, i32),
    Timestamp(Date, Time),
    /// A timestamptz normalised to UTC.
    TimestampTz(Date, Time),
    Json(std::borrow::Cow<'a, str>),
    /// A possibly multi-dimensional array: nested `Array`s for each dimension.
    Array(Vec<Value<'a>>),
}

impl Value<'_> {
    /// The same value with nothing borrowed from the input.
    pub fn into_owned(self) -> Value<'static> {
        use std::borrow::Cow::Owned;
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            Value::Int(i) => Value::Int(i),
            Value::Float(f) => Value::Float(f),
            Value::Numeric(s) => Value::Numeric(Owned(s.into_owned())),
            Value::Text(s) => Value::Text(Owned(s.into_owned())),
            Value::Json(s) => Value::Json(Owned(s.into_owned())),
            Value::Bytes(b) => Value::Bytes(b),
            Value::Uuid(u) => Value::Uuid(u),
            Value::Date(d) => Value::Date(d),
            Value::Infinity { positive, of } => Value::Infinity { positive, of },
            Value::Time(t) => Value::Time(t),
            Value::TimeTz(t, o) => Value::TimeTz(t, o),
            Value::Timestamp(d, t) => Value::Timestamp(d, t),
            Value::TimestampTz(d, t) => Value::TimestampTz(d, t),
            Value::Array(a) => Value::Array(a.into_iter().map(Value::into_owned).collect()),
        }
    }
}

fn utf8<'a>(type_name: &'static str, raw: &'a [u8]) -> Result<&'a str, DecodeError> {
    std::str::from_utf8(raw).map_err(|_| DecodeError::new(type_name, raw, "invalid UTF-8"))
}

/// Decodes the text form of a value of `kind`.
pub fn decode_text(kind: Kind, raw: &[u8]) -> Result<Value<'_>, DecodeError> {
    Ok(match kind {
        Kind::Bool => match raw {
            b"t" | b"true" => Value::Bool(true),
            b"f" | b"false" => Value::Bool(false),
            _ => return Err(DecodeError::new("bool", raw, "expected t or f")),
        },
        Kind::Int => Value::Int(
            parse_int(raw).ok_or_else(|| DecodeError::new("integer", raw, "not an integer"))?,
        ),
        Kind::Float => Value::Float(parse_float(raw)?),
        Kind::Numeric => Value::Numeric(utf8("numeric", raw)?.into()),
        Kind::Text => Value::Text(utf8("text", raw)?.into()),
        Kind::Json => Value::Json(utf8("json", raw)?.into()),
        Kind::Bytea => Value::Bytes(parse_bytea(raw)?),
        Kind::Uuid => Value::Uuid(parse_uuid(raw)?),
        Kind::Date => match infinity(raw, Scalar::Date) {
            Some(v) => v,
            None => Value::Date(parse_date(raw, "date")?.0),
        },
        Kind::Time => Value::Time(parse_time_exact(raw, "time")?),
        Kind::TimeTz => {
            let (t, rest) = parse_time(raw, "timetz")?;
            Value::TimeTz(t, parse_offset(rest, raw, "timetz")?)
        }
        Kind::Timestamp => match infinity(raw, Scalar::Timestamp) {
            Some(v) => v,
            None => {
                let (d, t, rest) = parse_timestamp(raw, "timestamp")?;
                if !rest.is_empty() {
                    return Err(DecodeError::new("timestamp", raw, "trailing characters"));
                }
                Value::Timestamp(d, t)
            }
        },
        Kind::TimestampTz => match infinity(raw, Scalar::TimestampTz) {
            Some(v) => v,
            None => {
                let (d, t, rest) = parse_timestamp(raw, "timestamptz")?;
                let off = parse_offset(rest, raw, "timestamptz")?;
                let (d, t) = shift_to_utc(d, t, off);
                Value::TimestampTz(d, t)
            }
        },
        Kind::Array(elem) => parse_array(raw, elem)?,
    })
}

fn infinity(raw: &[u8], of: Scalar) -> Option<Value<'static>> {
    match raw {
        b"infinity" => Some(Value::Infinity { positive: true, of }),
        b"-infinity" => Some(Value::Infinity {
            positive: false,
            of,
        }),
        _ => None,
    }
}

/// Parses a decimal integer in the range of i64.
pub fn parse_int(raw: &[u8]) -> Option<i64> {
    let (neg, digits) = match raw.first()? {
        b'-' => (true, &raw[1..]),
        b'+' => (false, &raw[1..]),
        _ => (false, raw),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut acc: i64 = 0;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        acc = acc.checked_mul(10)?;
        acc = if neg {
            acc.checked_sub(d as i64)?
        } else {
            acc.checked_add(d as i64)?
        };
    }
    Some(acc)
}

fn parse_float(raw: &[u8]) -> Result<f64, DecodeError> {
    let s = utf8("float", raw)?;
    match s {
        "NaN" => Ok(f64::NAN),
        "Infinity" => Ok(f64::INFINITY),
        "-Infinity" => Ok(f64::NEG_INFINITY),
        _ => s
            .parse::<f64>()
            .map_err(|_| DecodeError::new("float", raw, "not a number")),
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn parse_bytea(raw: &[u8]) -> Result<Vec<u8>, DecodeError> {
    if let Some(hex) = raw.strip_prefix(b"\\x") {
        if hex.len() % 2 != 0 {
            return Err(DecodeError::new("bytea", raw, "odd number of hex digits"));
        }
        return hex
            .chunks_exact(2)
            .map(|p| Some(hex_val(p[0])? << 4 | hex_val(p[1])?))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| DecodeError::new("bytea", raw, "invalid hex digit"));
    }
    // The escape format (bytea_output = escape): backslash-octal and doubled backslashes.
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            out.push(raw[i]);
            i += 1;
        } else if raw.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else if let Some(byte) = raw
            .get(i + 1..i + 4)
            .filter(|o| o.iter().all(|b| (b'0'..=b'7').contains(b)))
            .and_then(|o| {
                u8::try_from(
                    u16::from(o[0] - b'0') * 64
                        + u16::from(o[1] - b'0') * 8
                        + u16::from(o[2] - b'0'),
                )
                .ok()
            })
        {
            // `\ooo` up to `\377`; more is not a byte.
            out.push(byte);
            i += 4;
        } else {
            return Err(DecodeError::new("bytea", raw, "invalid escape"));
        }
    }
    Ok(out)
}

fn parse_uuid(raw: &[u8]) -> Result<[u8; 16], DecodeError> {
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut i = 0;
    let bad = || DecodeError::new("uuid", raw, "not a UUID");
    let raw_inner = raw
        .strip_prefix(b"{")
        .and_then(|r| r.strip_suffix(b"}"))
        .unwrap_or(raw);
    while i < raw_inner.len() {
        if raw_inner[i] == b'-' {
            i += 1;
            continue;
        }
        if n == 16 || i + 1 >= raw_inner.len() {
            return Err(bad());
        }
        out[n] = hex_val(raw_inner[i]).ok_or_else(bad)? << 4
            | hex_val(raw_inner[i + 1]).ok_or_else(bad)?;
        n += 1;
        i += 2;
    }
    if n != 16 {
        return Err(bad());
    }
    Ok(out)
}

fn digits(raw: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = raw.get(at..at + n)?;
    let mut acc = 0u32;
    for &b in s {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        acc = acc.checked_mul(10)?.checked_add(d as u32)?;
    }
    Some(acc)
}

/// `YYYY-MM-DD` (more year digits allowed, ` BC` suffix rejected: Python has no year 0).
fn parse_date<'r>(raw: &'r [u8], type_name: &'static str) -> Result<(Date, &'r [u8]), DecodeError> {
    let bad = |why| DecodeError::new(type_name, raw, why);
    let dash = raw
        .iter()
        .position(|&b| b == b'-')
        .ok_or_else(|| bad("expected YYYY-MM-DD"))?;
    if dash < 4 {
        return Err(bad("expected YYYY-MM-DD"));
    }
    let year = digits(raw, 0, dash)
        .and_then(|y| i32::try_from(y).ok())
        .ok_or_else(|| bad("bad year"))?;
    let month = digits(raw, dash + 1, 2).ok_or_else(|| bad("bad month"))?;
    if raw.get(dash + 3) != Some(&b'-') {
        return Err(bad("expected YYYY-MM-DD"));
    }
    let day = digits(raw, dash + 4, 2).ok_or_else(|| bad("bad day"))?;
    let rest = &raw[dash + 6..];
    if rest.ends_with(b" BC") {
        return Err(bad("dates before year 1 are not representable"));
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(bad("month or day out of range"));
    }
    Ok((
        Date {
            year,
            month: month as u8,
            day: day as u8,
        },
        rest,
    ))
}

/// `HH:MM:SS[.ffffff]`, returning what follows.
fn parse_time<'r>(raw: &'r [u8], type_name: &'static str) -> Result<(Time, &'r [u8]), DecodeError> {
    let bad = |why| DecodeError::new(type_name, raw, why);
    let hour = digits(raw, 0, 2).ok_or_else(|| bad("bad hour"))?;
    let minute = digits(raw, 3, 2).ok_or_else(|| bad("bad minute"))?;
    let second = digits(raw, 6, 2).ok_or_else(|| bad("bad second"))?;
    if raw[2] != b':' || raw[5] != b':' || hour > 24 || minute > 59 || second > 60 {
        return Err(bad("expected HH:MM:SS"));
    }
    let mut i = 8;
    let mut micro = 0u32;
    if raw.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < raw.len() && raw[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &raw[start..i];
        if frac.is_empty() || frac.len() > 6 {
            return Err(bad("bad fraction"));
        }
        micro = digits(frac, 0, frac.len()).expect("digits") * 10u32.pow(6 - frac.len() as u32);
    }
    // Postgres accepts 24:00:00, Python does not: clamp to the last microsecond of the day.
    let t = if hour == 24 {
        Time {
            hour: 23,
            minute: 59,
            second: 59,
            micro: 999_999,
        }
    } else {
        Time {
            hour: hour as u8,
            minute: minute as u8,
            second: second.min(59) as u8,
            micro,
        }
    };
    Ok((t, &raw[i..]))
}

fn parse_time_exact(raw: &[u8], type_name: &'static str) -> Result<Time, DecodeError> {
    let (t, rest) = parse_time(raw, type_name)?;
    if !rest.is_empty() {
        return Err(DecodeError::new(type_name, raw, "trailing characters"));
    }
    Ok(t)
}

fn parse_timestamp<'r>(
    raw: &'r [u8],
    type_name: &'static str,
) -> Result<(Date, Time, &'r [u8]), DecodeError> {
    let (d, rest) = parse_date(raw, type_name)?;
    let rest = match rest.first() {
        Some(b' ') | Some(b'T') => &rest[1..],
        _ => {
            return Err(DecodeError::new(
                type_name,
                raw,
                "expected a time after the date",
            ))
        }
    };
    let (t, rest) = parse_time(rest, type_name)?;
    Ok((d, t, rest))
}

/// `+HH[:MM[:SS]]` or `-HH...` to seconds east of UTC.
fn parse_offset(rest: &[u8], raw: &[u8], type_name: &'static str) -> Result<i32, DecodeError> {
    let bad = || DecodeError::new(type_name, raw, "bad UTC offset");
    let sign = match rest.first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err(bad()),
    };
    let h = digits(rest, 1, 2).ok_or_else(bad)? as i32;
    let mut secs = h * 3600;
    let mut i = 3;
    for mult in [60, 1] {
        if rest.get(i) == Some(&b':') {
            secs += digits(rest, i + 1, 2).ok_or_else(bad)? as i32 * mult;
            i += 3;
        }
    }
    if i != rest.len() {
        return Err(bad());
    }
    Ok(sign * secs)
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

fn shift_to_utc(mut d: Date, t: Time, offset: i32) -> (Date, Time) {
    if offset == 0 {
        return (d, t);
    }
    let mut secs = t.hour as i32 * 3600 + t.minute as i32 * 60 + t.second as i32 - offset;
    if secs < 0 {
        secs += 86400;
        if d.day > 1 {
            d.day -= 1;
        } else {
            if d.month > 1 {
                d.month -= 1;
            } else {
                d.month = 12;
                d.year -= 1;
            }
            d.day = days_in_month(d.year, d.month);
        }
    } else if secs >= 86400 {
        secs -= 86400;
        if d.day < days_in_month(d.year, d.month) {
            d.day += 1;
        } else {
            d.day = 1;
            if d.month < 12 {
                d.month += 1;
            } else {
                d.month = 1;
                d.year += 1;
            }
        }
    }
    let t = Time {
        hour: (secs / 3600) as u8,
        minute: (secs / 60 % 60) as u8,
        second: (secs % 60) as u8,
        micro: t.micro,
    };
    (d, t)
}

/// Parses an array literal such as `{1,2,NULL}` or `[0:1]={{"a","b"},{c,"d\"e"}}`.
fn parse_array(raw: &[u8], elem: Scalar) -> Result<Value<'_>, DecodeError> {
    let mut body = raw;
    if body.first() == Some(&b'[') {
        let eq = body
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| DecodeError::new("array", raw, "bad dimensions"))?;
        body = &body[eq + 1..];
    }
    let mut p = ArrayParser {
        raw,
        s: body,
        i: 0,
        elem,
    };
    let v = p.parse_level()?;
    if p.i != body.len() {
        return Err(DecodeError::new("array", raw, "trailing characters"));
    }
    Ok(v)
}

struct ArrayParser<'a> {
    raw: &'a [u8],
    s: &'a [u8],
    i: usize,
    elem: Scalar,
}

impl<'a> ArrayParser<'a> {
    fn err(&self, why: &'static str) -> DecodeError {
        DecodeError::new("array", self.raw, why)
    }

    fn parse_level(&mut self) -> Result<Value<'a>, DecodeError> {
        if self.s.get(self.i) != Some(&b'{') {
            return Err(self.err("expected {"));
        }
        self.i += 1;
        let mut items = Vec::new();
        if self.s.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(Value::Array(items));
        }
        loop {
            match self.s.get(self.i) {
                Some(b'{') => items.push(self.parse_level()?),
                Some(b'"') => {
                    self.i += 1;
                    let start = self.i;
                    let mut owned: Option<Vec<u8>> = None;
                    loop {
                        match self.s.get(self.i) {
                            None => return Err(self.err("unterminated quoted element")),
                            Some(b'"') => break,
                            Some(b'\\') => {
                                let o = owned.get_or_insert_with(|| self.s[start..self.i].to_vec());
                                let c = *self
                                    .s
                                    .get(self.i + 1)
                                    .ok_or_else(|| self.err("dangling backslash"))?;
                                o.push(c);
                                self.i += 2;
                            }
                            Some(&c) => {
                                if let Some(o) = owned.as_mut() {
                                    o.push(c);
                                }
                                self.i += 1;
                            }
                        }
                    }
                    let text = &self.s[start..self.i];
                    self.i += 1;
                    items.push(match owned {
                        None => self.element(text)?,
                        Some(o) => decode_text(self.elem.kind(), &o)
                            .map_err(|_| self.err("bad element"))?
                            .into_owned(),
                    });
                }
                Some(_) => {
                    let start = self.i;
                    while let Some(&c) = self.s.get(self.i) {
                        if c == b',' || c == b'}' {
                            break;
                        }
                        self.i += 1;
                    }
                    let text = &self.s[start..self.i];
                    if text.is_empty() {
                        return Err(self.err("empty element"));
                    }
                    items.push(if text.eq_ignore_ascii_case(b"NULL") {
                        Value::Null
                    } else {
                        self.element(text)?
                    });
                }
                None => return Err(self.err("unterminated array")),
            }
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.err("expected , or }")),
            }
        }
    }

    fn element(&self, text: &'a [u8]) -> Result<Value<'a>, DecodeError> {
        decode_text(self.elem.kind(), text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(year: i32, month: u8, day: u8) -> Date {
        Date { year, month, day }
    }
    fn t(hour: u8, minute: u8, second: u8, micro: u32) -> Time {
        Time {
            hour,
            minute,
            second,
            micro,
        }
    }

    #[test]
    fn scalars() {
        assert_eq!(
            decode_text(Kind::of(oid::BOOL), b"t").unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            decode_text(Kind::of(oid::INT8), b"-9223372036854775808").unwrap(),
            Value::Int(i64::MIN)
        );
        assert!(decode_text(Kind::of(oid::INT8), b"9223372036854775808").is_err());
        assert_eq!(
            decode_text(Kind::of(oid::FLOAT8), b"1.5e+300").unwrap(),
            Value::Float(1.5e300)
        );
        assert!(
            matches!(decode_text(Kind::of(oid::FLOAT4), b"NaN").unwrap(), Value::Float(f) if f.is_nan())
        );
        assert_eq!(
            decode_text(Kind::of(oid::BYTEA), b"\\x00ff10").unwrap(),
            Value::Bytes(vec![0, 255, 16])
        );
        assert_eq!(
            decode_text(Kind::of(oid::BYTEA), b"a\\\\b\\001").unwrap(),
            Value::Bytes(b"a\\b\x01".to_vec())
        );
        assert_eq!(
            decode_text(Kind::of(oid::UUID), b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap(),
            Value::Uuid([
                0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
                0x0a, 0x11
            ])
        );
        assert!(decode_text(Kind::of(oid::UUID), b"a0eebc99").is_err());
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(
            decode_text(Kind::Date, b"2024-02-29").unwrap(),
            Value::Date(d(2024, 2, 29))
        );
        assert_eq!(
            decode_text(Kind::Date, b"12345-01-01").unwrap(),
            Value::Date(d(12345, 1, 1))
        );
        assert!(decode_text(Kind::Date, b"0044-03-15 BC").is_err());
        assert_eq!(
            decode_text(Kind::Date, b"infinity").unwrap(),
            Value::Infinity {
                positive: true,
                of: Scalar::Date
            }
        );
        assert_eq!(
            decode_text(Kind::Time, b"13:14:15.5").unwrap(),
            Value::Time(t(13, 14, 15, 500_000))
        );
        assert_eq!(
            decode_text(Kind::TimeTz, b"13:14:15+05:30").unwrap(),
            Value::TimeTz(t(13, 14, 15, 0), 19800)
        );
        assert_eq!(
            decode_text(Kind::Timestamp, b"2024-01-02 03:04:05.000006").unwrap(),
            Value::Timestamp(d(2024, 1, 2), t(3, 4, 5, 6))
        );
        assert_eq!(
            decode_text(Kind::TimestampTz, b"2024-01-01 01:00:00+02").unwrap(),
            Value::TimestampTz(d(2023, 12, 31), t(23, 0, 0, 0))
        );
        assert_eq!(
            decode_text(Kind::TimestampTz, b"2023-12-31 23:30:00-01").unwrap(),
            Value::TimestampTz(d(2024, 1, 1), t(0, 30, 0, 0))
        );
        assert!(decode_text(Kind::Timestamp, b"2024-01-02").is_err());
        assert!(decode_text(Kind::TimestampTz, b"2024-01-02 03:04:05").is_err());
    }

    #[test]
    fn arrays() {
        assert_eq!(
            decode_text(Kind::of(oid::INT4_ARRAY), b"{1,NULL,-3}").unwrap(),
            Value::Array(vec![Value::Int(1), Value::Null, Value::Int(-3)])
        );
        assert_eq!(
            decode_text(
                Kind::of(oid::TEXT_ARRAY),
                br#"{"a b","c\"d",NULL,"NULL",e}"#
            )
            .unwrap(),
            Value::Array(vec![
                Value::Text("a b".into()),
                Value::Text("c\"d".into()),
                Value::Null,
                Value::Text("NULL".into()),
                Value::Text("e".into())
            ])
        );
        assert_eq!(
            decode_text(Kind::of(oid::INT8_ARRAY), b"[0:1]={{1,2},{3,4}}").unwrap(),
            Value::Array(vec![
                Value::Array(vec![Value::Int(1), Value::Int(2)]),
                Value::Array(vec![Value::Int(3), Value::Int(4)])
            ])
        );
        assert_eq!(
            decode_text(Kind::of(oid::BOOL_ARRAY), b"{}").unwrap(),
            Value::Array(vec![])
        );
        for bad in [&b"{1,2"[..], b"1,2}", b"{1,,2}", b"{\"a}", b"{1}x"] {
            assert!(
                decode_text(Kind::of(oid::INT4_ARRAY), bad).is_err(),
                "{bad:?}"
            );
        }
    }
}
