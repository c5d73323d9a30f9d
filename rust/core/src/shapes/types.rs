//! The types a where clause computes with, their values, and the input and output functions
//! shared by literals, casts and the generated SQL's parameters.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::datetime;
use super::numeric::Dec;
use crate::value::oid;

/// A type of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    /// `text` and `varchar` (Postgres gives `varchar` text's operators).
    Text,
    Uuid,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    /// The enum of the filter's table column with this index (labels in sort order).
    Enum(u16),
    /// A column type with no operators here (json, jsonb, bytea, arrays...): only `IS NULL`.
    Opaque(u32),
    /// A quoted literal or NULL whose type comes from where it is used.
    Unknown,
}

impl Type {
    /// The type of a column of type `type_oid` (enums are resolved by the caller).
    pub fn of_oid(type_oid: u32) -> Type {
        match type_oid {
            oid::BOOL => Type::Bool,
            oid::INT2 => Type::Int2,
            oid::INT4 => Type::Int4,
            oid::INT8 => Type::Int8,
            oid::FLOAT4 => Type::Float4,
            oid::FLOAT8 => Type::Float8,
            oid::NUMERIC => Type::Numeric,
            oid::TEXT | oid::VARCHAR => Type::Text,
            oid::UUID => Type::Uuid,
            oid::DATE => Type::Date,
            oid::TIME => Type::Time,
            oid::TIMESTAMP => Type::Timestamp,
            oid::TIMESTAMPTZ => Type::TimestampTz,
            other => Type::Opaque(other),
        }
    }

    /// A type named in a cast (`::T`, `CAST(x AS T)`, `T 'literal'`), lower case, multi-word
    /// names joined by one space.
    pub fn from_name(name: &str) -> Option<Type> {
        Some(match name {
            "bool" | "boolean" => Type::Bool,
            "int2" | "smallint" => Type::Int2,
            "int4" | "int" | "integer" => Type::Int4,
            "int8" | "bigint" => Type::Int8,
            "float4" | "real" => Type::Float4,
            "float8" | "double precision" | "float" => Type::Float8,
            "numeric" | "decimal" => Type::Numeric,
            "text" | "varchar" | "character varying" => Type::Text,
            "uuid" => Type::Uuid,
            "date" => Type::Date,
            "time" | "time without time zone" => Type::Time,
            "timestamp" | "timestamp without time zone" => Type::Timestamp,
            "timestamptz" | "timestamp with time zone" => Type::TimestampTz,
            _ => return None,
        })
    }

    /// The name used in the generated SQL's casts (None for enums and opaque types).
    pub fn sql_name(self) -> Option<&'static str> {
        Some(match self {
            Type::Bool => "bool",
            Type::Int2 => "int2",
            Type::Int4 => "int4",
            Type::Int8 => "int8",
            Type::Float4 => "float4",
            Type::Float8 => "float8",
            Type::Numeric => "numeric",
            Type::Text | Type::Unknown => "text",
            Type::Uuid => "uuid",
            Type::Date => "date",
            Type::Time => "time",
            Type::Timestamp => "timestamp",
            Type::TimestampTz => "timestamptz",
            Type::Enum(_) | Type::Opaque(_) => return None,
        })
    }

    /// The type's OID (enums: the column's, known to the caller).
    pub fn builtin_oid(self) -> Option<u32> {
        Some(match self {
            Type::Bool => oid::BOOL,
            Type::Int2 => oid::INT2,
            Type::Int4 => oid::INT4,
            Type::Int8 => oid::INT8,
            Type::Float4 => oid::FLOAT4,
            Type::Float8 => oid::FLOAT8,
            Type::Numeric => oid::NUMERIC,
            Type::Text | Type::Unknown => oid::TEXT,
            Type::Uuid => oid::UUID,
            Type::Date => oid::DATE,
            Type::Time => oid::TIME,
            Type::Timestamp => oid::TIMESTAMP,
            Type::TimestampTz => oid::TIMESTAMPTZ,
            Type::Opaque(o) => o,
            Type::Enum(_) => return None,
        })
    }

    /// Postgres's name of the type, for messages.
    pub fn display(self) -> String {
        match self {
            Type::Bool => "boolean".into(),
            Type::Int2 => "smallint".into(),
            Type::Int4 => "integer".into(),
            Type::Int8 => "bigint".into(),
            Type::Float4 => "real".into(),
            Type::Float8 => "double precision".into(),
            Type::Numeric => "numeric".into(),
            Type::Text => "text".into(),
            Type::Uuid => "uuid".into(),
            Type::Date => "date".into(),
            Type::Time => "time without time zone".into(),
            Type::Timestamp => "timestamp without time zone".into(),
            Type::TimestampTz => "timestamp with time zone".into(),
            Type::Enum(_) => "an enum".into(),
            Type::Opaque(o) => format!("the type with OID {o}"),
            Type::Unknown => "unknown".into(),
        }
    }

    pub fn is_int(self) -> bool {
        matches!(self, Type::Int2 | Type::Int4 | Type::Int8)
    }

    pub fn is_number(self) -> bool {
        self.is_int() || matches!(self, Type::Float4 | Type::Float8 | Type::Numeric)
    }

    pub fn is_datetime(self) -> bool {
        matches!(self, Type::Date | Type::Timestamp | Type::TimestampTz)
    }

    /// The range of an integer type.
    pub fn int_range(self) -> (i64, i64) {
        match self {
            Type::Int2 => (i16::MIN as i64, i16::MAX as i64),
            Type::Int4 => (i32::MIN as i64, i32::MAX as i64),
            _ => (i64::MIN, i64::MAX),
        }
    }

    /// The type two numbers meet at, as Postgres's operator resolution picks it (`float4` with
    /// anything but `float4` goes to `float8`, through the cross-type operators).
    pub fn unify_numbers(a: Type, b: Type) -> Type {
        use Type::*;
        match (a, b) {
            (Float8, _) | (_, Float8) => Float8,
            (Float4, Float4) => Float4,
            (Float4, _) | (_, Float4) => Float8,
            (Numeric, _) | (_, Numeric) => Numeric,
            (Int8, _) | (_, Int8) => Int8,
            (Int4, _) | (_, Int4) => Int4,
            _ => Int2,
        }
    }

    /// Whether Postgres converts `self` to `to` implicitly.
    pub fn implicitly_casts_to(self, to: Type) -> bool {
        use Type::*;
        match (self, to) {
            (Int2, Int4 | Int8 | Numeric | Float4 | Float8)
            | (Int4, Int8 | Numeric | Float4 | Float8)
            | (Int8, Numeric | Float4 | Float8)
            | (Numeric, Float4 | Float8)
            | (Float4, Float8)
            | (Date, Timestamp | TimestampTz)
            | (Timestamp, TimestampTz) => true,
            _ => self == to,
        }
    }
}

/// A value computed by a filter; strings borrow from the row where they can.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Null,
    Bool(bool),
    /// Any integer type (the expression's type bounds it).
    Int(i64),
    /// float8, or a float4 held exactly.
    Float(f64),
    Num(Dec),
    Text(Cow<'a, str>),
    Uuid([u8; 16]),
    /// Days since 2000-01-01 (`i32::MIN`/`MAX` are -infinity/infinity).
    Date(i32),
    /// Microseconds since midnight.
    Time(i64),
    /// Microseconds since 2000-01-01 (UTC for timestamptz; `i64::MIN`/`MAX` are infinities).
    Ts(i64),
    /// The position of an enum label.
    Enum(u32),
    /// A non-NULL value of an opaque type.
    Other,
}

impl Val<'_> {
    pub fn into_owned(self) -> Val<'static> {
        match self {
            Val::Text(t) => Val::Text(Cow::Owned(t.into_owned())),
            Val::Null => Val::Null,
            Val::Bool(b) => Val::Bool(b),
            Val::Int(i) => Val::Int(i),
            Val::Float(f) => Val::Float(f),
            Val::Num(d) => Val::Num(d),
            Val::Uuid(u) => Val::Uuid(u),
            Val::Date(d) => Val::Date(d),
            Val::Time(t) => Val::Time(t),
            Val::Ts(t) => Val::Ts(t),
            Val::Enum(e) => Val::Enum(e),
            Val::Other => Val::Other,
        }
    }
}

/// Postgres's float order: NaN equals NaN and sorts above everything, -0 equals 0.
pub fn cmp_float(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(&b).expect("not NaN"),
    }
}

/// Compares two non-NULL values of one type (text bytewise, as `COLLATE "C"`).
pub fn compare(a: &Val<'_>, b: &Val<'_>) -> Ordering {
    match (a, b) {
        (Val::Bool(x), Val::Bool(y)) => x.cmp(y),
        (Val::Int(x), Val::Int(y)) => x.cmp(y),
        (Val::Float(x), Val::Float(y)) => cmp_float(*x, *y),
        (Val::Num(x), Val::Num(y)) => x.cmp(y),
        (Val::Text(x), Val::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Val::Uuid(x), Val::Uuid(y)) => x.cmp(y),
        (Val::Date(x), Val::Date(y)) => x.cmp(y),
        (Val::Time(x), Val::Time(y)) | (Val::Ts(x), Val::Ts(y)) => x.cmp(y),
        (Val::Enum(x), Val::Enum(y)) => x.cmp(y),
        _ => unreachable!("compare of {a:?} and {b:?}: the type checker unifies operands"),
    }
}

fn invalid(ty: Type, s: &str) -> String {
    format!("invalid input syntax for type {}: \"{s}\"", ty.display())
}

/// Postgres's input function of `ty` for the forms Postgres itself prints (plus ISO 8601
/// variants for dates and times); `labels` are the enum's labels when `ty` is an enum.
pub fn input(ty: Type, s: &str, labels: &[String]) -> Result<Val<'static>, String> {
    let ws = |c: char| c.is_ascii_whitespace();
    Ok(match ty {
        Type::Text | Type::Unknown => Val::Text(Cow::Owned(s.to_owned())),
        Type::Bool => {
            let t = s.trim_matches(ws).to_ascii_lowercase();
            // Any unambiguous prefix of true/false/yes/no, on/off, 1/0.
            let b = match t.as_str() {
                "1" => true,
                "0" => false,
                "o" => return Err(invalid(ty, s)),
                _ if !t.is_empty() && ("true".starts_with(&t) || "yes".starts_with(&t)) => true,
                _ if !t.is_empty() && ("false".starts_with(&t) || "no".starts_with(&t)) => false,
                "on" => true,
                "off" | "of" => false,
                _ => return Err(invalid(ty, s)),
            };
            Val::Bool(b)
        }
        Type::Int2 | Type::Int4 | Type::Int8 => {
            let t = s.trim_matches(ws);
            let i = crate::value::parse_int(t.as_bytes()).ok_or_else(|| {
                if !t.is_empty()
                    && t.bytes()
                        .enumerate()
                        .all(|(i, b)| b.is_ascii_digit() || (i == 0 && (b == b'-' || b == b'+')))
                {
                    format!("value \"{s}\" is out of range for type {}", ty.display())
                } else {
                    invalid(ty, s)
                }
            })?;
            let (lo, hi) = ty.int_range();
            if i < lo || i > hi {
                return Err(format!(
                    "value \"{s}\" is out of range for type {}",
                    ty.display()
                ));
            }
            Val::Int(i)
        }
        Type::Float4 | Type::Float8 => {
            let t = s.trim_matches(ws);
            let lower = t.to_ascii_lowercase();
            let f = match lower.trim_start_matches(['+', '-']) {
                "nan" => f64::NAN,
                "infinity" | "inf" => {
                    if lower.starts_with('-') {
                        f64::NEG_INFINITY
                    } else {
                        f64::INFINITY
                    }
                }
                _ => {
                    if !t
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
                    {
                        return Err(invalid(ty, s));
                    }
                    let out_of_range =
                        || format!("\"{s}\" is out of range for type {}", ty.display());
                    // Zero from a nonzero mantissa is an underflow, as in float4in/float8in.
                    let f = if ty == Type::Float4 {
                        t.parse::<f32>().map_err(|_| invalid(ty, s))? as f64
                    } else {
                        t.parse::<f64>().map_err(|_| invalid(ty, s))?
                    };
                    if f.is_infinite() || (f == 0.0 && !zero_mantissa(t)) {
                        return Err(out_of_range());
                    }
                    f
                }
            };
            Val::Float(f)
        }
        Type::Numeric => Val::Num(Dec::parse(s).ok_or_else(|| {
            let t = s.trim_matches(ws).to_ascii_lowercase();
            if matches!(t.trim_start_matches(['+', '-']), "nan" | "infinity" | "inf") {
                format!("numeric \"{s}\" is not supported in a where clause")
            } else if Dec::parse(&t.replace(|c: char| c.is_ascii_digit(), "1")).is_some()
                || t.bytes()
                    .all(|b| b.is_ascii_digit() || b"+-.e".contains(&b))
            {
                format!("numeric \"{s}\" has more digits than a where clause supports (38)")
            } else {
                invalid(ty, s)
            }
        })?),
        Type::Uuid => Val::Uuid(parse_uuid(s.trim_matches(ws)).ok_or_else(|| invalid(ty, s))?),
        Type::Date => Val::Date(datetime::parse_date(s).map_err(|e| date_error(ty, s, e))?),
        Type::Time => Val::Time(datetime::parse_time(s).map_err(|e| date_error(ty, s, e))?),
        Type::Timestamp => {
            Val::Ts(datetime::parse_timestamp(s, false).map_err(|e| date_error(ty, s, e))?)
        }
        Type::TimestampTz => {
            Val::Ts(datetime::parse_timestamp(s, true).map_err(|e| date_error(ty, s, e))?)
        }
        Type::Enum(_) => match labels.iter().position(|l| l == s) {
            Some(i) => Val::Enum(i as u32),
            None => return Err(format!("invalid input value for enum: \"{s}\"")),
        },
        Type::Opaque(_) => {
            return Err(format!("values of {} have no operators here", ty.display()))
        }
    })
}

/// Whether the mantissa of a float's text is zero (so a zero result is not an underflow).
fn zero_mantissa(t: &str) -> bool {
    let m = t.split(['e', 'E']).next().unwrap_or("");
    m.bytes().all(|b| !(b'1'..=b'9').contains(&b))
}

fn date_error(ty: Type, s: &str, why: String) -> String {
    format!("{} ({why})", invalid(ty, s))
}

/// Postgres's `uuid_in`: 32 hex digits, optionally in braces, a hyphen allowed after each group
/// of four.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    let b = match (b.first(), b.last()) {
        (Some(b'{'), Some(b'}')) if b.len() >= 2 => &b[1..b.len() - 1],
        _ => b,
    };
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut i = 0;
    while n < 32 {
        let h = (*b.get(i)? as char).to_digit(16)? as u8;
        out[n / 2] |= if n % 2 == 0 { h << 4 } else { h };
        n += 1;
        i += 1;
        if n % 4 == 0 && n < 32 && b.get(i) == Some(&b'-') {
            i += 1;
        }
    }
    (i == b.len()).then_some(out)
}

/// The text of a non-NULL value of `ty` as Postgres's cast to text prints it (with the settings
/// of electric-trio sessions: DateStyle ISO, TimeZone UTC, extra_float_digits 1).
pub fn output(ty: Type, v: &Val<'_>, labels: &[String]) -> String {
    match v {
        Val::Null | Val::Other => String::new(),
        Val::Bool(b) => if *b { "true" } else { "false" }.into(),
        Val::Int(i) => i.to_string(),
        Val::Float(f) => datetime::format_float(*f, ty == Type::Float4),
        Val::Num(d) => d.to_string(),
        Val::Text(t) => t.to_string(),
        Val::Uuid(u) => {
            let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
            format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            )
        }
        Val::Date(d) => datetime::format_date(*d),
        Val::Time(t) => datetime::format_time(*t),
        Val::Ts(t) => datetime::format_timestamp(*t, ty == Type::TimestampTz),
        Val::Enum(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
    }
}

/// The text a parameter carries for a value: the output, except floats whose output is also
/// the exact input (shortest round-trip digits).
pub fn param_text(ty: Type, v: &Val<'_>, labels: &[String]) -> Option<String> {
    match v {
        Val::Null => None,
        _ => Some(output(ty, v, labels)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs() {
        assert_eq!(input(Type::Int2, " 12 ", &[]), Ok(Val::Int(12)));
        assert!(input(Type::Int2, "32768", &[])
            .unwrap_err()
            .contains("out of range"));
        assert!(input(Type::Int4, "1.5", &[])
            .unwrap_err()
            .contains("invalid input"));
        assert_eq!(input(Type::Bool, "yes", &[]), Ok(Val::Bool(true)));
        assert_eq!(input(Type::Bool, "f", &[]), Ok(Val::Bool(false)));
        assert!(input(Type::Bool, "o", &[]).is_err());
        assert_eq!(
            input(Type::Float8, "-Infinity", &[]),
            Ok(Val::Float(f64::NEG_INFINITY))
        );
        assert!(input(Type::Float8, "1e400", &[]).is_err());
        assert!(input(Type::Float8, "1e-400", &[]).is_err());
        assert_eq!(input(Type::Float8, "0e-400", &[]), Ok(Val::Float(0.0)));
        assert!(input(Type::Numeric, "NaN", &[])
            .unwrap_err()
            .contains("not supported"));
        let u = input(Type::Uuid, "{A0EEBC999C0B4EF8BB6D6BB9BD380A11}", &[]).unwrap();
        assert_eq!(
            output(Type::Uuid, &u, &[]),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        assert_eq!(
            input(Type::Uuid, "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11", &[]),
            Ok(u)
        );
        assert!(input(Type::Uuid, "a0eebc99-9c0b4-ef8-bb6d-6bb9bd380a11", &[]).is_err());
        let labels = vec!["sad".to_string(), "happy".to_string()];
        assert_eq!(input(Type::Enum(0), "happy", &labels), Ok(Val::Enum(1)));
        assert!(input(Type::Enum(0), "HAPPY", &labels).is_err());
    }

    #[test]
    fn float_order() {
        assert_eq!(cmp_float(f64::NAN, f64::INFINITY), Ordering::Greater);
        assert_eq!(cmp_float(f64::NAN, f64::NAN), Ordering::Equal);
        assert_eq!(cmp_float(-0.0, 0.0), Ordering::Equal);
    }
}
