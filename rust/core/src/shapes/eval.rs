//! The evaluator: a compiled filter on one row, with SQL's NULL propagation and three-valued
//! AND/OR, and Postgres's errors for overflow, division by zero and bad casts.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::check::{ColumnInfo, EnumInfo, Expr, Func, Kind};
use super::datetime::{self, USECS_PER_DAY};
use super::like::{self, Escape};
use super::numeric::Dec;
use super::parser::BinOp;
use super::types::{compare, input, output, Type, Val};
use super::{EvalError, RowValues, ShapeFilter};
use crate::value::Value;

/// The filter's truth on `row`: TRUE, FALSE or NULL (None).
pub fn truth<R: RowValues + ?Sized>(
    f: &ShapeFilter,
    e: &Expr,
    row: &R,
) -> Result<Option<bool>, EvalError> {
    let ev = Ev {
        columns: &f.columns,
        enums: &f.enums,
        row,
    };
    Ok(match ev.eval(e)? {
        Val::Bool(b) => Some(b),
        _ => None,
    })
}

/// The value of an expression without columns (for constant folding).
pub fn constant(
    columns: &[ColumnInfo],
    enums: &[EnumInfo],
    e: &Expr,
) -> Result<Val<'static>, EvalError> {
    let ev = Ev {
        columns,
        enums,
        row: &[] as &[Value<'_>],
    };
    Ok(ev.eval(e)?.into_owned())
}

struct Ev<'a, R: ?Sized> {
    columns: &'a [ColumnInfo],
    enums: &'a [EnumInfo],
    row: &'a R,
}

fn bool_of(v: &Val<'_>) -> Option<bool> {
    match v {
        Val::Bool(b) => Some(*b),
        _ => None,
    }
}

fn int_name(ty: Type) -> &'static str {
    match ty {
        Type::Int2 => "smallint",
        Type::Int4 => "integer",
        _ => "bigint",
    }
}

fn in_range(ty: Type, i: Option<i64>) -> Result<Val<'static>, EvalError> {
    let (lo, hi) = ty.int_range();
    match i {
        Some(i) if i >= lo && i <= hi => Ok(Val::Int(i)),
        _ => Err(EvalError::IntegerOutOfRange(int_name(ty))),
    }
}

/// Postgres's float checks: an infinite result from finite inputs overflows, a zero result
/// from nonzero inputs (for `*` and `/`) underflows.
fn float_result(r: f64, a: f64, b: f64, zero_check: bool) -> Result<Val<'static>, EvalError> {
    if r.is_infinite() && !a.is_infinite() && !b.is_infinite() {
        return Err(EvalError::FloatOverflow);
    }
    if zero_check && r == 0.0 && a != 0.0 && b != 0.0 && !b.is_infinite() {
        return Err(EvalError::FloatUnderflow);
    }
    Ok(Val::Float(r))
}

fn float_op(op: BinOp, a: f64, b: f64, float4: bool) -> Result<Val<'static>, EvalError> {
    if op == BinOp::Div && b == 0.0 {
        return Err(EvalError::DivisionByZero);
    }
    let r = if float4 {
        let (x, y) = (a as f32, b as f32);
        (match op {
            BinOp::Add => x + y,
            BinOp::Sub => x - y,
            BinOp::Mul => x * y,
            _ => x / y,
        }) as f64
    } else {
        match op {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            _ => a / b,
        }
    };
    float_result(r, a, b, matches!(op, BinOp::Mul | BinOp::Div))
}

fn int_op(op: BinOp, ty: Type, a: i64, b: i64) -> Result<Val<'static>, EvalError> {
    let r = match op {
        BinOp::Add => a.checked_add(b),
        BinOp::Sub => a.checked_sub(b),
        BinOp::Mul => a.checked_mul(b),
        BinOp::Div => {
            if b == 0 {
                return Err(EvalError::DivisionByZero);
            }
            a.checked_div(b)
        }
        BinOp::Mod => {
            if b == 0 {
                return Err(EvalError::DivisionByZero);
            }
            Some(if b == -1 { 0 } else { a % b })
        }
        BinOp::BitAnd => Some(a & b),
        BinOp::BitOr => Some(a | b),
        _ => Some(a ^ b),
    };
    in_range(ty, r)
}

fn num_op(op: BinOp, a: Dec, b: Dec) -> Result<Val<'static>, EvalError> {
    Ok(Val::Num(match op {
        BinOp::Add => a.add(b)?,
        BinOp::Sub => a.sub(b)?,
        BinOp::Mul => a.mul(b)?,
        BinOp::Div => a.div(b)?,
        _ => a.rem(b)?,
    }))
}

/// A float rounded to an integer type as Postgres's casts do (half to even, NaN out of range).
fn float_to_int(f: f64, ty: Type) -> Result<Val<'static>, EvalError> {
    let r = f.round_ties_even();
    let (lo, hi) = ty.int_range();
    // `hi as f64` rounds up for int8: a value equal to 2^63 is out of range.
    if r.is_nan() || r < lo as f64 || r >= hi as f64 + 1.0 {
        return Err(EvalError::IntegerOutOfRange(int_name(ty)));
    }
    Ok(Val::Int(r as i64))
}

impl<'a, R: RowValues + ?Sized> Ev<'a, R> {
    fn column(&self, i: usize) -> Result<Val<'a>, EvalError> {
        let col = &self.columns[i];
        let v = self.row.value(i).ok_or_else(|| EvalError::MissingValue {
            column: col.name.clone(),
        })?;
        let bad = || EvalError::BadValue {
            column: col.name.clone(),
            value: format!("{v:?}"),
        };
        Ok(match (col.ty, v) {
            (_, Value::Null) => Val::Null,
            (Type::Bool, Value::Bool(b)) => Val::Bool(*b),
            (Type::Int2 | Type::Int4 | Type::Int8, Value::Int(i)) => Val::Int(*i),
            // A float4 read from its shortest text is the nearest double: make it the float4.
            (Type::Float4, Value::Float(f)) => Val::Float(*f as f32 as f64),
            (Type::Float8, Value::Float(f)) => Val::Float(*f),
            (Type::Numeric, Value::Numeric(s)) => match Dec::parse(s) {
                Some(d) => Val::Num(d),
                None => {
                    return Err(EvalError::InvalidInput(format!(
                        "numeric {s} is not supported in a where clause"
                    )))
                }
            },
            (Type::Text, Value::Text(s)) => Val::Text(Cow::Borrowed(s.as_ref())),
            (Type::Uuid, Value::Uuid(u)) => Val::Uuid(*u),
            (Type::Date, v) => Val::Date(datetime::date_from_value(v).ok_or_else(bad)?),
            (Type::Time, Value::Time(t)) => Val::Time(datetime::time_of_value(t)),
            (Type::Timestamp | Type::TimestampTz, v) => {
                Val::Ts(datetime::timestamp_from_value(v).ok_or_else(bad)?)
            }
            (Type::Enum(e), Value::Text(s)) => {
                let labels = &self.enums[e as usize].labels;
                match labels.iter().position(|l| l == s.as_ref()) {
                    Some(p) => Val::Enum(p as u32),
                    None => return Err(bad()),
                }
            }
            (Type::Opaque(_), _) => Val::Other,
            _ => return Err(bad()),
        })
    }

    fn labels(&self, ty: Type) -> &'a [String] {
        match ty {
            Type::Enum(i) => &self.enums[i as usize].labels,
            _ => &[],
        }
    }

    fn eval(&self, e: &'a Expr) -> Result<Val<'a>, EvalError> {
        Ok(match &e.kind {
            Kind::Const(v) => match v {
                Val::Text(s) => Val::Text(Cow::Borrowed(s.as_ref())),
                v => v.clone(),
            },
            Kind::Column(i) => self.column(*i)?,
            Kind::Not(x) => match self.eval(x)? {
                Val::Bool(b) => Val::Bool(!b),
                _ => Val::Null,
            },
            Kind::And(l, r) => {
                let a = bool_of(&self.eval(l)?);
                if a == Some(false) {
                    return Ok(Val::Bool(false));
                }
                match (a, bool_of(&self.eval(r)?)) {
                    (_, Some(false)) => Val::Bool(false),
                    (Some(true), Some(true)) => Val::Bool(true),
                    _ => Val::Null,
                }
            }
            Kind::Or(l, r) => {
                let a = bool_of(&self.eval(l)?);
                if a == Some(true) {
                    return Ok(Val::Bool(true));
                }
                match (a, bool_of(&self.eval(r)?)) {
                    (_, Some(true)) => Val::Bool(true),
                    (Some(false), Some(false)) => Val::Bool(false),
                    _ => Val::Null,
                }
            }
            Kind::IsNull(x) => Val::Bool(self.eval(x)? == Val::Null),
            Kind::IsBool(x, want) => {
                let v = bool_of(&self.eval(x)?);
                Val::Bool(v == *want)
            }
            Kind::Distinct(l, r) => {
                let a = self.eval(l)?;
                let b = self.eval(r)?;
                Val::Bool(match (&a, &b) {
                    (Val::Null, Val::Null) => false,
                    (Val::Null, _) | (_, Val::Null) => true,
                    _ => compare(&a, &b) != Ordering::Equal,
                })
            }
            Kind::Cmp(op, l, r) => {
                let a = self.eval(l)?;
                let b = self.eval(r)?;
                if a == Val::Null || b == Val::Null {
                    return Ok(Val::Null);
                }
                let o = compare(&a, &b);
                Val::Bool(match op {
                    BinOp::Eq => o == Ordering::Equal,
                    BinOp::Ne => o != Ordering::Equal,
                    BinOp::Lt => o == Ordering::Less,
                    BinOp::Le => o != Ordering::Greater,
                    BinOp::Gt => o == Ordering::Greater,
                    _ => o != Ordering::Less,
                })
            }
            Kind::Like {
                expr,
                pattern,
                compiled,
                escape,
                case_insensitive,
            } => {
                let s = self.eval(expr)?;
                let p = self.eval(pattern)?;
                let (Val::Text(s), Val::Text(p)) = (s, p) else {
                    return Ok(Val::Null);
                };
                let matched = match compiled {
                    Some(c) => c.matches(&s),
                    None => {
                        like::compile(&p, Escape::char(*escape), *case_insensitive)?.matches(&s)
                    }
                };
                Val::Bool(matched)
            }
            Kind::In(x, items) => {
                let v = self.eval(x)?;
                if v == Val::Null {
                    return Ok(Val::Null);
                }
                let mut saw_null = false;
                for item in items {
                    let w = self.eval(item)?;
                    if w == Val::Null {
                        saw_null = true;
                    } else if compare(&v, &w) == Ordering::Equal {
                        return Ok(Val::Bool(true));
                    }
                }
                if saw_null {
                    Val::Null
                } else {
                    Val::Bool(false)
                }
            }
            Kind::Arith(op, l, r) => {
                let a = self.eval(l)?;
                let b = self.eval(r)?;
                match (a, b) {
                    (Val::Int(a), Val::Int(b)) => int_op(*op, e.ty, a, b)?,
                    (Val::Float(a), Val::Float(b)) => float_op(*op, a, b, e.ty == Type::Float4)?,
                    (Val::Num(a), Val::Num(b)) => num_op(*op, a, b)?,
                    _ => Val::Null,
                }
            }
            Kind::Neg(x) => match self.eval(x)? {
                Val::Int(i) => in_range(e.ty, i.checked_neg())?,
                Val::Float(f) => Val::Float(-f),
                Val::Num(d) => Val::Num(d.neg()),
                _ => Val::Null,
            },
            Kind::DateArith(op, l, r) => {
                let a = self.eval(l)?;
                let b = self.eval(r)?;
                let (date, days) = match (a, b) {
                    (Val::Date(d), Val::Int(n)) => (d, if *op == BinOp::Sub { -n } else { n }),
                    (Val::Int(n), Val::Date(d)) => (d, n),
                    _ => return Ok(Val::Null),
                };
                if date == datetime::DATE_INFINITY || date == datetime::DATE_NEG_INFINITY {
                    Val::Date(date)
                } else {
                    let r = date as i64 + days;
                    if !datetime::valid_date(r) {
                        return Err(EvalError::DateOutOfRange);
                    }
                    Val::Date(r as i32)
                }
            }
            Kind::DateDiff(l, r) => {
                let a = self.eval(l)?;
                let b = self.eval(r)?;
                match (a, b) {
                    (Val::Date(a), Val::Date(b)) => {
                        let inf =
                            |d| d == datetime::DATE_INFINITY || d == datetime::DATE_NEG_INFINITY;
                        if inf(a) || inf(b) {
                            return Err(EvalError::InfiniteDates);
                        }
                        Val::Int(a as i64 - b as i64)
                    }
                    _ => Val::Null,
                }
            }
            Kind::Concat(l, r) => {
                let a = self.eval(l)?;
                let b = self.eval(r)?;
                match (a, b) {
                    (Val::Text(a), Val::Text(b)) => Val::Text(Cow::Owned(a.into_owned() + &b)),
                    _ => Val::Null,
                }
            }
            Kind::Func(f, args) => {
                // Strict, like Postgres's: every argument is evaluated, then NULL in, NULL out.
                let vals = args
                    .iter()
                    .map(|a| self.eval(a))
                    .collect::<Result<Vec<_>, _>>()?;
                if vals.contains(&Val::Null) {
                    return Ok(Val::Null);
                }
                self.function(*f, e.ty, vals)?
            }
            Kind::Cast(x) => {
                let v = self.eval(x)?;
                if v == Val::Null {
                    return Ok(Val::Null);
                }
                self.cast(v, x.ty, e.ty)?
            }
        })
    }

    fn function(&self, f: Func, ty: Type, vals: Vec<Val<'a>>) -> Result<Val<'a>, EvalError> {
        let text = |v: &Val<'a>| match v {
            Val::Text(s) => s.to_string(),
            _ => unreachable!("text argument"),
        };
        Ok(match f {
            Func::Lower => Val::Text(Cow::Owned(like::ascii_lower(&text(&vals[0])))),
            Func::Upper => Val::Text(Cow::Owned(like::ascii_upper(&text(&vals[0])))),
            Func::Length => match &vals[0] {
                Val::Text(s) => Val::Int(s.chars().count() as i64),
                _ => unreachable!("text argument"),
            },
            Func::StartsWith => match (&vals[0], &vals[1]) {
                (Val::Text(s), Val::Text(p)) => Val::Bool(s.starts_with(p.as_ref())),
                _ => unreachable!("text arguments"),
            },
            Func::Abs => match &vals[0] {
                Val::Int(i) => in_range(ty, i.checked_abs())?,
                Val::Float(f) => Val::Float(f.abs()),
                Val::Num(d) => Val::Num(d.abs()),
                _ => unreachable!("numeric argument"),
            },
        })
    }

    fn cast(&self, v: Val<'a>, from: Type, to: Type) -> Result<Val<'a>, EvalError> {
        use Type::*;
        Ok(match (v, to) {
            (v, Text) => Val::Text(Cow::Owned(output(from, &v, self.labels(from)))),
            (Val::Text(s), to) => {
                input(to, &s, self.labels(to)).map_err(EvalError::InvalidInput)?
            }
            (Val::Int(i), Int2 | Int4 | Int8) => in_range(to, Some(i))?,
            (Val::Int(i), Float4) => Val::Float(i as f32 as f64),
            (Val::Int(i), Float8) => Val::Float(i as f64),
            (Val::Int(i), Numeric) => Val::Num(Dec::from_int(i)),
            (Val::Int(i), Bool) => Val::Bool(i != 0),
            (Val::Bool(b), Int4) => Val::Int(b as i64),
            (Val::Float(f), Int2 | Int4 | Int8) => float_to_int(f, to)?,
            (Val::Float(f), Float8) => Val::Float(f),
            (Val::Float(f), Float4) => {
                let r = f as f32;
                if r.is_infinite() && !f.is_infinite() {
                    return Err(EvalError::FloatOverflow);
                }
                if r == 0.0 && f != 0.0 {
                    return Err(EvalError::FloatUnderflow);
                }
                Val::Float(r as f64)
            }
            (Val::Num(d), Int2 | Int4 | Int8) => {
                let i = d.round_to_int().and_then(|i| i64::try_from(i).ok());
                in_range(to, i)?
            }
            (Val::Num(d), Float8) => Val::Float(d.to_f64()),
            // 38 digits are well inside float4's range, above its smallest denormal.
            (Val::Num(d), Float4) => Val::Float(d.to_f32() as f64),
            (Val::Date(d), Timestamp | TimestampTz) => {
                Val::Ts(datetime::date_to_timestamp(d).ok_or(EvalError::TimestampOutOfRange)?)
            }
            (Val::Ts(t), Timestamp | TimestampTz) => Val::Ts(t),
            (Val::Ts(t), Date) => Val::Date(datetime::timestamp_to_date(t)),
            (Val::Ts(t), Time) => {
                if t == datetime::TS_INFINITY || t == datetime::TS_NEG_INFINITY {
                    Val::Null
                } else {
                    Val::Time(datetime::timestamp_to_time(t) % USECS_PER_DAY)
                }
            }
            (v, to) => unreachable!("cast of {v:?} to {to:?} passed the type checker"),
        })
    }
}
