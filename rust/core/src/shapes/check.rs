//! The type checker: resolves columns, types every node with Postgres's rules (literal typing,
//! operator resolution, implicit casts made explicit) and yields the compiled tree.

use std::borrow::Cow;

use super::eval;
use super::like::{self, Escape, Pattern};
use super::numeric::Dec;
use super::parser::{self, Ast, BinOp, Node};
use super::types::{input, Type, Val};
use super::{ColumnDef, FilterError, ShapeFilter};

#[derive(Debug, Clone)]
pub struct ColumnInfo {
    pub name: String,
    pub ty: Type,
}

#[derive(Debug, Clone)]
pub struct EnumInfo {
    pub type_oid: u32,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Lower,
    Upper,
    Length,
    StartsWith,
    Abs,
}

impl Func {
    pub fn sql_name(self) -> &'static str {
        match self {
            Func::Lower => "lower",
            Func::Upper => "upper",
            Func::Length => "length",
            Func::StartsWith => "starts_with",
            Func::Abs => "abs",
        }
    }
}

/// A typed node of a compiled filter.
#[derive(Debug, Clone)]
pub struct Expr {
    pub ty: Type,
    /// Byte offset in the clause (for errors found while checking).
    pub pos: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Const(Val<'static>),
    Column(usize),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    IsNull(Box<Expr>),
    /// `IS TRUE`, `IS FALSE`, `IS UNKNOWN` (None).
    IsBool(Box<Expr>, Option<bool>),
    Distinct(Box<Expr>, Box<Expr>),
    /// A comparison of two operands of one type.
    Cmp(BinOp, Box<Expr>, Box<Expr>),
    Like {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        /// The pattern compiled when it is a constant.
        compiled: Option<Pattern>,
        escape: Escape,
        case_insensitive: bool,
    },
    /// `x = ANY(constants)`; other IN items are ORed comparisons.
    In(Box<Expr>, Vec<Expr>),
    /// `+ - * / % & | #` on two operands of the node's (numeric) type.
    Arith(BinOp, Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
    /// `date + int4`, `int4 + date` or `date - int4` (operands in source order).
    DateArith(BinOp, Box<Expr>, Box<Expr>),
    /// `date - date`.
    DateDiff(Box<Expr>, Box<Expr>),
    Concat(Box<Expr>, Box<Expr>),
    Func(Func, Vec<Expr>),
    /// A conversion of the operand to the node's type.
    Cast(Box<Expr>),
}

const CLOCK: [&str; 9] = [
    "now",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
];

pub fn compile(clause: &str, columns: &[ColumnDef]) -> Result<ShapeFilter, FilterError> {
    let mut enums: Vec<EnumInfo> = Vec::new();
    let mut infos = Vec::with_capacity(columns.len());
    for c in columns {
        let ty = match &c.enum_labels {
            Some(labels) => {
                let i = match enums.iter().position(|e| e.type_oid == c.type_oid) {
                    Some(i) => i,
                    None => {
                        enums.push(EnumInfo {
                            type_oid: c.type_oid,
                            labels: labels.clone(),
                        });
                        enums.len() - 1
                    }
                };
                Type::Enum(i as u16)
            }
            None => Type::of_oid(c.type_oid),
        };
        infos.push(ColumnInfo {
            name: c.name.clone(),
            ty,
        });
    }
    let mut checker = Checker {
        src: clause,
        columns: &infos,
        enums: &enums,
        referenced: Vec::new(),
    };
    let expr = if clause.trim().is_empty() {
        None
    } else {
        let node = parser::parse(clause)?;
        let e = checker.check(&node)?;
        let ty = e.ty;
        Some(checker.coerce(e, Type::Bool).map_err(|_| {
            FilterError::at(
                clause,
                0,
                format!(
                    "Where expression should evaluate to a boolean, but it's {}",
                    ty.display()
                ),
            )
        })?)
    };
    let mut referenced = checker.referenced;
    referenced.sort_unstable();
    referenced.dedup();
    Ok(ShapeFilter {
        source: clause.to_owned(),
        columns: infos,
        enums,
        expr,
        referenced,
    })
}

struct Checker<'a> {
    src: &'a str,
    columns: &'a [ColumnInfo],
    enums: &'a [EnumInfo],
    referenced: Vec<usize>,
}

fn boxed(e: Expr) -> Box<Expr> {
    Box::new(e)
}

/// The type two comparison operands meet at, if they can be compared.
fn comparable(a: Type, b: Type) -> Option<Type> {
    match (a, b) {
        (Type::Opaque(_), _) | (_, Type::Opaque(_)) => None,
        (Type::Unknown, Type::Unknown) => Some(Type::Text),
        (Type::Unknown, t) | (t, Type::Unknown) => Some(t),
        _ if a.is_number() && b.is_number() => Some(Type::unify_numbers(a, b)),
        _ if a.is_datetime() && b.is_datetime() => {
            let rank = |t| match t {
                Type::Date => 0,
                Type::Timestamp => 1,
                _ => 2,
            };
            Some(if rank(a) >= rank(b) { a } else { b })
        }
        _ if a == b => Some(a),
        _ => None,
    }
}

impl Checker<'_> {
    fn err(&self, pos: usize, msg: impl Into<String>) -> FilterError {
        FilterError::at(self.src, pos, msg.into())
    }

    fn labels(&self, ty: Type) -> &[String] {
        match ty {
            Type::Enum(i) => &self.enums[i as usize].labels,
            _ => &[],
        }
    }

    fn konst(ty: Type, pos: usize, v: Val<'static>) -> Expr {
        Expr {
            ty,
            pos,
            kind: Kind::Const(v),
        }
    }

    /// Converts `e` to `to` where Postgres would do it implicitly: a quoted literal or NULL
    /// takes the type (parsed now), a number widens, a date becomes a timestamp.
    fn coerce(&self, e: Expr, to: Type) -> Result<Expr, FilterError> {
        if e.ty == to {
            return Ok(e);
        }
        if e.ty == Type::Unknown {
            return self.literal_as(e, to);
        }
        if e.ty.implicitly_casts_to(to) {
            return self.fold(Expr {
                ty: to,
                pos: e.pos,
                kind: Kind::Cast(boxed(e)),
            });
        }
        Err(self.err(
            e.pos,
            format!(
                "cannot use a value of type {} as {}",
                e.ty.display(),
                to.display()
            ),
        ))
    }

    /// An untyped literal (quoted string or NULL) read as a `to`.
    fn literal_as(&self, e: Expr, to: Type) -> Result<Expr, FilterError> {
        match e.kind {
            Kind::Const(Val::Null) => Ok(Self::konst(to, e.pos, Val::Null)),
            Kind::Const(Val::Text(s)) => match input(to, &s, self.labels(to)) {
                Ok(v) => Ok(Self::konst(to, e.pos, v)),
                Err(msg) => Err(self.err(e.pos, msg)),
            },
            _ => unreachable!("only literals are untyped"),
        }
    }

    fn column(&mut self, pos: usize, name: &str) -> Result<Expr, FilterError> {
        match self.columns.iter().position(|c| c.name == name) {
            Some(i) => {
                self.referenced.push(i);
                Ok(Expr {
                    ty: self.columns[i].ty,
                    pos,
                    kind: Kind::Column(i),
                })
            }
            None if CLOCK.contains(&name) => Err(self.clock(pos, name)),
            None => {
                let hint = self
                    .columns
                    .iter()
                    .find(|c| c.name.eq_ignore_ascii_case(name))
                    .map(|c| format!(" (did you mean this.\"{}\"?)", c.name))
                    .unwrap_or_default();
                Err(self.err(pos, format!("column \"{name}\" does not exist{hint}")))
            }
        }
    }

    fn clock(&self, pos: usize, name: &str) -> FilterError {
        self.err(
            pos,
            format!(
                "{name} is not allowed: a shape's rows must not depend on when the filter runs"
            ),
        )
    }

    fn number(&self, pos: usize, text: &str) -> Result<Expr, FilterError> {
        if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            if let Ok(i) = text.parse::<i64>() {
                let ty = if i32::try_from(i).is_ok() {
                    Type::Int4
                } else {
                    Type::Int8
                };
                return Ok(Self::konst(ty, pos, Val::Int(i)));
            }
        }
        match Dec::parse(text) {
            Some(d) => Ok(Self::konst(Type::Numeric, pos, Val::Num(d))),
            None => Err(self.err(
                pos,
                format!("numeric literal {text} has more digits than a where clause supports (38)"),
            )),
        }
    }

    /// Types a node, folding it to a constant when its operands are constants (as Postgres's
    /// planner does, so `1/0` or `32768::int2` is an error of the clause, not of every row).
    fn check(&mut self, n: &Node) -> Result<Expr, FilterError> {
        let e = self.check_node(n)?;
        self.fold(e)
    }

    fn fold(&self, e: Expr) -> Result<Expr, FilterError> {
        let children: Vec<&Expr> = match &e.kind {
            Kind::Const(_) | Kind::Column(_) => return Ok(e),
            Kind::Not(x) | Kind::IsNull(x) | Kind::IsBool(x, _) | Kind::Neg(x) | Kind::Cast(x) => {
                vec![x]
            }
            Kind::And(l, r)
            | Kind::Or(l, r)
            | Kind::Distinct(l, r)
            | Kind::Cmp(_, l, r)
            | Kind::Arith(_, l, r)
            | Kind::DateArith(_, l, r)
            | Kind::DateDiff(l, r)
            | Kind::Concat(l, r)
            | Kind::Like {
                expr: l,
                pattern: r,
                ..
            } => vec![l, r],
            Kind::In(x, items) => std::iter::once(&**x).chain(items).collect(),
            Kind::Func(_, args) => args.iter().collect(),
        };
        let konst = |c: &Expr, v: &Val<'_>| matches!(&c.kind, Kind::Const(k) if k == v);
        // Postgres's planner simplifications that decide what is evaluated at all: a FALSE
        // operand makes an AND false and a TRUE one an OR true, and a strict operator or
        // function with a NULL constant operand is NULL, whatever the other operands are.
        let absorbed = match &e.kind {
            Kind::And(..) if children.iter().any(|c| konst(c, &Val::Bool(false))) => {
                Some(Val::Bool(false))
            }
            Kind::Or(..) if children.iter().any(|c| konst(c, &Val::Bool(true))) => {
                Some(Val::Bool(true))
            }
            Kind::Not(_)
            | Kind::And(..)
            | Kind::Or(..)
            | Kind::IsNull(_)
            | Kind::IsBool(..)
            | Kind::Distinct(..)
            | Kind::In(..) => None,
            _ if children.iter().any(|c| konst(c, &Val::Null)) => Some(Val::Null),
            _ => None,
        };
        if let Some(v) = absorbed {
            return Ok(Self::konst(e.ty, e.pos, v));
        }
        if !children.iter().all(|c| matches!(c.kind, Kind::Const(_))) {
            return Ok(e);
        }
        match eval::constant(self.columns, self.enums, &e) {
            Ok(v) => Ok(Self::konst(e.ty, e.pos, v)),
            Err(err) => Err(self.err(e.pos, err.to_string())),
        }
    }

    /// `e`, or `NOT e`, each folded.
    fn negate(&self, negated: bool, e: Expr) -> Result<Expr, FilterError> {
        let e = self.fold(e)?;
        if !negated {
            return Ok(e);
        }
        self.fold(Expr {
            ty: Type::Bool,
            pos: e.pos,
            kind: Kind::Not(boxed(e)),
        })
    }

    /// `x IN (items)` as Postgres plans it: one `x = ANY(array)` of the constant items when
    /// there are several, then `x = item` for each other item, ORed in order.
    fn in_list(&self, x: Expr, items: Vec<Expr>, pos: usize) -> Result<Expr, FilterError> {
        let is_const = |i: &Expr| matches!(i.kind, Kind::Const(_));
        let grouped = items.iter().filter(|i| is_const(i)).count() > 1;
        let mut parts = Vec::new();
        let mut consts = Vec::new();
        for item in items {
            if grouped && is_const(&item) {
                consts.push(item);
            } else {
                parts.push(self.fold(Expr {
                    ty: Type::Bool,
                    pos,
                    kind: Kind::Cmp(BinOp::Eq, boxed(x.clone()), boxed(item)),
                })?);
            }
        }
        if grouped {
            parts.insert(
                0,
                Expr {
                    ty: Type::Bool,
                    pos,
                    kind: Kind::In(boxed(x), consts),
                },
            );
        }
        let mut parts = parts.into_iter();
        let mut acc = parts.next().expect("IN has at least one item");
        for p in parts {
            acc = self.fold(Expr {
                ty: Type::Bool,
                pos,
                kind: Kind::Or(boxed(acc), boxed(p)),
            })?;
        }
        Ok(acc)
    }

    fn check_node(&mut self, n: &Node) -> Result<Expr, FilterError> {
        let pos = n.pos;
        Ok(match &n.ast {
            Ast::Column(name) => self.column(pos, name)?,
            Ast::Null => Self::konst(Type::Unknown, pos, Val::Null),
            Ast::Bool(b) => Self::konst(Type::Bool, pos, Val::Bool(*b)),
            Ast::Number(text) => self.number(pos, text)?,
            Ast::Str(s) => Self::konst(Type::Unknown, pos, Val::Text(Cow::Owned(s.clone()))),
            Ast::Cast(e, to) => {
                let e = self.check(e)?;
                self.cast(e, *to, pos)?
            }
            Ast::Neg(e) => {
                let e = self.check(e)?;
                if !e.ty.is_number() {
                    return Err(self.no_operator(pos, &format!("- {}", e.ty.display())));
                }
                Expr {
                    ty: e.ty,
                    pos,
                    kind: Kind::Neg(boxed(e)),
                }
            }
            Ast::Binary(op, l, r) => {
                let l = self.check(l)?;
                let r = self.check(r)?;
                self.binary(*op, l, r, pos)?
            }
            Ast::Not(e) => {
                let e = self.boolean(e, "NOT")?;
                Expr {
                    ty: Type::Bool,
                    pos,
                    kind: Kind::Not(boxed(e)),
                }
            }
            Ast::And(l, r) => {
                let l = self.boolean(l, "AND")?;
                let r = self.boolean(r, "AND")?;
                Expr {
                    ty: Type::Bool,
                    pos,
                    kind: Kind::And(boxed(l), boxed(r)),
                }
            }
            Ast::Or(l, r) => {
                let l = self.boolean(l, "OR")?;
                let r = self.boolean(r, "OR")?;
                Expr {
                    ty: Type::Bool,
                    pos,
                    kind: Kind::Or(boxed(l), boxed(r)),
                }
            }
            Ast::IsNull(e, negated) => {
                let e = self.check(e)?;
                self.negate(
                    *negated,
                    Expr {
                        ty: Type::Bool,
                        pos,
                        kind: Kind::IsNull(boxed(e)),
                    },
                )?
            }
            Ast::IsBool(e, value, negated) => {
                let e = self.boolean(e, "IS")?;
                self.negate(
                    *negated,
                    Expr {
                        ty: Type::Bool,
                        pos,
                        kind: Kind::IsBool(boxed(e), *value),
                    },
                )?
            }
            Ast::Distinct(l, r, negated) => {
                let l = self.check(l)?;
                let r = self.check(r)?;
                let (l, r) = self.unify_pair(l, r, pos, "IS DISTINCT FROM")?;
                self.negate(
                    *negated,
                    Expr {
                        ty: Type::Bool,
                        pos,
                        kind: Kind::Distinct(boxed(l), boxed(r)),
                    },
                )?
            }
            Ast::Like {
                expr,
                pattern,
                escape,
                case_insensitive,
                negated,
            } => {
                let op = if *case_insensitive { "ILIKE" } else { "LIKE" };
                let e = self.check(expr)?;
                let p = self.check(pattern)?;
                if !matches!(e.ty, Type::Text | Type::Unknown)
                    || !matches!(p.ty, Type::Text | Type::Unknown)
                {
                    return Err(self
                        .no_operator(pos, &format!("{} {op} {}", e.ty.display(), p.ty.display())));
                }
                let e = self.coerce(e, Type::Text)?;
                let p = self.coerce(p, Type::Text)?;
                let escape = match escape {
                    None => Escape::Default,
                    Some(esc) => {
                        let Ast::Str(s) = &esc.ast else {
                            return Err(self.err(esc.pos, "ESCAPE must be a quoted literal"));
                        };
                        let mut chars = s.chars();
                        match (chars.next(), chars.next()) {
                            (None, _) => Escape::None,
                            (Some(c), None) => Escape::Char(c),
                            _ => return Err(self.err(esc.pos, "invalid escape string")),
                        }
                    }
                };
                let compiled = match &p.kind {
                    Kind::Const(Val::Text(s)) => Some(
                        like::compile(s, escape.char(), *case_insensitive)
                            .map_err(|e| self.err(p.pos, e.to_string()))?,
                    ),
                    _ => None,
                };
                self.negate(
                    *negated,
                    Expr {
                        ty: Type::Bool,
                        pos,
                        kind: Kind::Like {
                            expr: boxed(e),
                            pattern: boxed(p),
                            compiled,
                            escape,
                            case_insensitive: *case_insensitive,
                        },
                    },
                )?
            }
            Ast::In(e, list, negated) => {
                let e = self.check(e)?;
                let items = list
                    .iter()
                    .map(|n| self.check(n))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut ty = e.ty;
                for item in &items {
                    ty = comparable(ty, item.ty).ok_or_else(|| {
                        self.no_operator(
                            item.pos,
                            &format!("{} = {}", e.ty.display(), item.ty.display()),
                        )
                    })?;
                }
                if ty == Type::Unknown {
                    ty = Type::Text;
                }
                let e = self.coerce(e, ty)?;
                let items = items
                    .into_iter()
                    .map(|i| self.coerce(i, ty))
                    .collect::<Result<Vec<_>, _>>()?;
                self.negate(*negated, self.in_list(e, items, pos)?)?
            }
            Ast::Between(e, lo, hi, negated) => {
                let e = self.check(e)?;
                let lo = self.check(lo)?;
                let hi = self.check(hi)?;
                // Postgres's own rewrite: a >= lo AND a <= hi, or a < lo OR a > hi.
                let (op_lo, op_hi) = if *negated {
                    (BinOp::Lt, BinOp::Gt)
                } else {
                    (BinOp::Ge, BinOp::Le)
                };
                let l = self.binary(op_lo, e.clone(), lo, pos)?;
                let l = self.fold(l)?;
                let r = self.binary(op_hi, e, hi, pos)?;
                let r = self.fold(r)?;
                let kind = if *negated {
                    Kind::Or(boxed(l), boxed(r))
                } else {
                    Kind::And(boxed(l), boxed(r))
                };
                Expr {
                    ty: Type::Bool,
                    pos,
                    kind,
                }
            }
            Ast::Func(name, args) => {
                let args = args
                    .iter()
                    .map(|a| self.check(a))
                    .collect::<Result<Vec<_>, _>>()?;
                self.function(pos, name, args)?
            }
        })
    }

    fn boolean(&mut self, n: &Node, what: &str) -> Result<Expr, FilterError> {
        let e = self.check(n)?;
        if !matches!(e.ty, Type::Bool | Type::Unknown) {
            return Err(self.err(
                e.pos,
                format!(
                    "argument of {what} must be type boolean, not type {}",
                    e.ty.display()
                ),
            ));
        }
        self.coerce(e, Type::Bool)
    }

    fn no_operator(&self, pos: usize, signature: &str) -> FilterError {
        self.err(pos, format!("operator does not exist: {signature}"))
    }

    /// Both operands converted to the type they meet at, for `op`.
    fn unify_pair(
        &self,
        l: Expr,
        r: Expr,
        pos: usize,
        op: &str,
    ) -> Result<(Expr, Expr), FilterError> {
        let Some(ty) = comparable(l.ty, r.ty) else {
            return Err(
                self.no_operator(pos, &format!("{} {op} {}", l.ty.display(), r.ty.display()))
            );
        };
        Ok((self.coerce(l, ty)?, self.coerce(r, ty)?))
    }

    fn binary(&self, op: BinOp, l: Expr, r: Expr, pos: usize) -> Result<Expr, FilterError> {
        let sig = || format!("{} {} {}", l.ty.display(), op.symbol(), r.ty.display());
        if op.is_comparison() {
            let (l, r) = self.unify_pair(l, r, pos, op.symbol())?;
            return Ok(Expr {
                ty: Type::Bool,
                pos,
                kind: Kind::Cmp(op, boxed(l), boxed(r)),
            });
        }
        if op == BinOp::Concat {
            let texty = |t: Type| matches!(t, Type::Text | Type::Unknown);
            if !(texty(l.ty) || texty(r.ty)) {
                return Err(self.no_operator(pos, &sig()));
            }
            let l = self.to_text(l, pos)?;
            let r = self.to_text(r, pos)?;
            return Ok(Expr {
                ty: Type::Text,
                pos,
                kind: Kind::Concat(boxed(l), boxed(r)),
            });
        }
        // An untyped literal is first tried as the other operand's type (Postgres's rule).
        let (lt, rt) = match (l.ty, r.ty) {
            (Type::Unknown, Type::Unknown) => {
                return Err(self.err(
                    pos,
                    format!("operator is not unique: {} (add a cast)", sig()),
                ))
            }
            (Type::Unknown, t) => (t, t),
            (t, Type::Unknown) => (t, t),
            (a, b) => (a, b),
        };
        if lt == Type::Date || rt == Type::Date {
            let small_int = |t: Type| matches!(t, Type::Int2 | Type::Int4);
            let (ty, kind) = match (op, lt, rt) {
                (BinOp::Sub, Type::Date, Type::Date) => {
                    let l = self.coerce(l, Type::Date)?;
                    let r = self.coerce(r, Type::Date)?;
                    (Type::Int4, Kind::DateDiff(boxed(l), boxed(r)))
                }
                (BinOp::Add | BinOp::Sub, Type::Date, t) if small_int(t) => {
                    let r = self.coerce(r, Type::Int4)?;
                    (Type::Date, Kind::DateArith(op, boxed(l), boxed(r)))
                }
                (BinOp::Add, t, Type::Date) if small_int(t) => {
                    let l = self.coerce(l, Type::Int4)?;
                    (Type::Date, Kind::DateArith(op, boxed(l), boxed(r)))
                }
                _ => return Err(self.no_operator(pos, &sig())),
            };
            return Ok(Expr { ty, pos, kind });
        }
        if !(lt.is_number() && rt.is_number()) {
            let hint = if lt.is_datetime() || rt.is_datetime() || lt == Type::Time {
                " (intervals are not supported)"
            } else {
                ""
            };
            return Err(self.err(pos, format!("operator does not exist: {}{hint}", sig())));
        }
        let ty = Type::unify_numbers(lt, rt);
        let ok = match op {
            BinOp::Mod => matches!(ty, Type::Int2 | Type::Int4 | Type::Int8 | Type::Numeric),
            BinOp::BitAnd | BinOp::BitOr | BinOp::BitXor => ty.is_int(),
            _ => true,
        };
        if !ok {
            return Err(self.no_operator(pos, &sig()));
        }
        let l = self.coerce(l, ty)?;
        let r = self.coerce(r, ty)?;
        Ok(Expr {
            ty,
            pos,
            kind: Kind::Arith(op, boxed(l), boxed(r)),
        })
    }

    /// An operand of `||`: text as is, anything else cast to text (as `anytextcat` does).
    fn to_text(&self, e: Expr, pos: usize) -> Result<Expr, FilterError> {
        match e.ty {
            Type::Text => Ok(e),
            Type::Unknown => self.coerce(e, Type::Text),
            _ => self.cast(e, Type::Text, pos),
        }
    }

    /// An explicit cast (`::`, `CAST`, `type 'literal'`).
    fn cast(&self, e: Expr, to: Type, pos: usize) -> Result<Expr, FilterError> {
        use Type::*;
        if e.ty == to {
            return Ok(e);
        }
        if e.ty == Unknown {
            return self.literal_as(e, to);
        }
        let ok = match (e.ty, to) {
            (Text, TimestampTz) => {
                return Err(self.err(
                    pos,
                    "casting text to timestamptz is not supported: text without an offset \
                     would be read in the session's time zone",
                ))
            }
            (Float4 | Float8, Numeric) => {
                return Err(self.err(
                    pos,
                    format!("casting {} to numeric is not supported", e.ty.display()),
                ))
            }
            (a, b) if a.is_number() && b.is_number() => true,
            (Int4, Bool) | (Bool, Int4) => true,
            (Opaque(_), _) | (_, Opaque(_)) | (_, Enum(_)) => false,
            (_, Text) | (Text, _) => true,
            (Date, Timestamp | TimestampTz)
            | (Timestamp, TimestampTz)
            | (TimestampTz, Timestamp) => true,
            (Timestamp | TimestampTz, Date | Time) => true,
            _ => false,
        };
        if !ok {
            return Err(self.err(
                pos,
                format!("cannot cast type {} to {}", e.ty.display(), to.display()),
            ));
        }
        self.fold(Expr {
            ty: to,
            pos,
            kind: Kind::Cast(boxed(e)),
        })
    }

    fn function(&self, pos: usize, name: &str, args: Vec<Expr>) -> Result<Expr, FilterError> {
        let types: Vec<String> = args.iter().map(|a| a.ty.display()).collect();
        let sig = format!("function {name}({}) does not exist", types.join(", "));
        let sig = || sig.clone();
        let texts = |args: Vec<Expr>, n: usize| -> Result<Vec<Expr>, FilterError> {
            if args.len() != n
                || args
                    .iter()
                    .any(|a| !matches!(a.ty, Type::Text | Type::Unknown))
            {
                return Err(self.err(pos, sig()));
            }
            args.into_iter()
                .map(|a| self.coerce(a, Type::Text))
                .collect()
        };
        let (f, ty, args) = match name {
            "lower" => (Func::Lower, Type::Text, texts(args, 1)?),
            "upper" => (Func::Upper, Type::Text, texts(args, 1)?),
            "length" | "char_length" | "character_length" => {
                (Func::Length, Type::Int4, texts(args, 1)?)
            }
            "starts_with" => (Func::StartsWith, Type::Bool, texts(args, 2)?),
            "abs" => {
                if args.len() != 1 || !args[0].ty.is_number() {
                    return Err(self.err(pos, sig()));
                }
                (Func::Abs, args[0].ty, args)
            }
            _ if CLOCK.contains(&name) => return Err(self.clock(pos, &format!("{name}()"))),
            "coalesce" | "nullif" | "greatest" | "least" => {
                return Err(self.err(pos, format!("{} is not supported", name.to_uppercase())))
            }
            _ => return Err(self.err(pos, sig())),
        };
        Ok(Expr {
            ty,
            pos,
            kind: Kind::Func(f, args),
        })
    }
}
