//! SQL generation for the initial query: the compiled filter as a fully parenthesised Postgres
//! expression, every literal a `$n` parameter with an explicit type, every implicit conversion
//! an explicit `CAST`, text comparisons, ILIKE and case mapping under `COLLATE "C"`. Postgres
//! then has no overloads to resolve differently from the type checker, and computes what the
//! evaluator computes.

use std::fmt::Write;

use super::check::{Expr, Func, Kind};
use super::like::Escape;
use super::parser::BinOp;
use super::types::{param_text, Type, Val};
use super::ShapeFilter;

/// A parameter of a generated fragment: its text form (None for NULL) and type OID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlParam {
    pub value: Option<String>,
    pub type_oid: u32,
}

/// A WHERE fragment and its parameters, `$first_param` onwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlFragment {
    pub sql: String,
    pub params: Vec<SqlParam>,
}

/// `"name"`, with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub fn generate(f: &ShapeFilter, alias: &str, first_param: usize) -> SqlFragment {
    let mut g = Gen {
        f,
        alias: quote_ident(alias),
        next: first_param,
        out: String::new(),
        params: Vec::new(),
    };
    match &f.expr {
        None => g.out.push_str("TRUE"),
        Some(e) => g.expr(e),
    }
    SqlFragment {
        sql: g.out,
        params: g.params,
    }
}

struct Gen<'a> {
    f: &'a ShapeFilter,
    alias: String,
    next: usize,
    out: String,
    params: Vec<SqlParam>,
}

impl Gen<'_> {
    fn labels(&self, ty: Type) -> &[String] {
        match ty {
            Type::Enum(i) => &self.f.enums[i as usize].labels,
            _ => &[],
        }
    }

    fn param(&mut self, ty: Type, v: &Val<'_>) {
        let n = self.next;
        self.next += 1;
        let type_oid = match ty {
            Type::Enum(i) => self.f.enums[i as usize].type_oid,
            t => t.builtin_oid().expect("a builtin type"),
        };
        self.params.push(SqlParam {
            value: param_text(ty, v, self.labels(ty)),
            type_oid,
        });
        // Enums have no name here: Postgres infers the parameter's type from the column.
        match ty.sql_name() {
            Some(name) => write!(self.out, "${n}::{name}"),
            None => write!(self.out, "${n}"),
        }
        .expect("write to String");
    }

    fn binary(&mut self, l: &Expr, op: &str, r: &Expr) {
        self.out.push('(');
        self.expr(l);
        self.out.push(' ');
        self.out.push_str(op);
        self.out.push(' ');
        self.expr(r);
        self.out.push(')');
    }

    /// A conversion; those Postgres would do in the session's time zone are done in UTC, the
    /// evaluator's (and electric-trio's) convention, whatever the session's TimeZone.
    fn cast(&mut self, x: &Expr, to: Type) {
        const UTC: &str = " AT TIME ZONE 'UTC')";
        match (x.ty, to) {
            (Type::Date, Type::TimestampTz) => {
                self.out.push_str("(CAST(");
                self.expr(x);
                self.out.push_str(" AS timestamp)");
                self.out.push_str(UTC);
            }
            (Type::Timestamp, Type::TimestampTz) | (Type::TimestampTz, Type::Timestamp) => {
                self.out.push('(');
                self.expr(x);
                self.out.push_str(UTC);
            }
            (Type::TimestampTz, Type::Date | Type::Time) => {
                self.out.push_str("CAST((");
                self.expr(x);
                self.out.push_str(UTC);
                write!(self.out, " AS {})", to.sql_name().expect("builtin")).expect("write");
            }
            (Type::TimestampTz, Type::Text) => {
                // Postgres prints finite values in the session's zone: print them in UTC.
                self.out.push_str("(CASE WHEN isfinite(");
                self.expr(x);
                self.out.push_str(") THEN CAST((");
                self.expr(x);
                self.out.push_str(UTC);
                self.out.push_str(" AS text) || '+00' ELSE CAST(");
                self.expr(x);
                self.out.push_str(" AS text) END)");
            }
            _ => {
                self.out.push_str("CAST(");
                self.expr(x);
                let name = to.sql_name().expect("casts go to builtin types");
                write!(self.out, " AS {name})").expect("write to String");
            }
        }
    }

    fn collated(&mut self, e: &Expr) {
        self.expr(e);
        self.out.push_str(" COLLATE \"C\"");
    }

    fn expr(&mut self, e: &Expr) {
        match &e.kind {
            Kind::Const(v) => self.param(e.ty, v),
            Kind::Column(i) => {
                let name = quote_ident(&self.f.columns[*i].name);
                write!(self.out, "{}.{name}", self.alias).expect("write to String");
            }
            Kind::Not(x) => {
                self.out.push_str("(NOT ");
                self.expr(x);
                self.out.push(')');
            }
            Kind::And(l, r) => self.binary(l, "AND", r),
            Kind::Or(l, r) => self.binary(l, "OR", r),
            Kind::IsNull(x) => {
                self.out.push('(');
                self.expr(x);
                self.out.push_str(" IS NULL)");
            }
            Kind::IsBool(x, v) => {
                self.out.push('(');
                self.expr(x);
                self.out.push_str(match v {
                    Some(true) => " IS TRUE)",
                    Some(false) => " IS FALSE)",
                    None => " IS UNKNOWN)",
                });
            }
            Kind::Distinct(l, r) => self.binary(l, "IS DISTINCT FROM", r),
            Kind::Cmp(op, l, r) => {
                if l.ty == Type::Text {
                    self.out.push('(');
                    self.collated(l);
                    write!(self.out, " {} ", op.symbol()).expect("write to String");
                    self.expr(r);
                    self.out.push(')');
                } else {
                    self.binary(l, op.symbol(), r);
                }
            }
            Kind::Like {
                expr,
                pattern,
                escape,
                case_insensitive,
                ..
            } => {
                self.out.push('(');
                self.collated(expr);
                self.out.push_str(if *case_insensitive {
                    " ILIKE "
                } else {
                    " LIKE "
                });
                self.expr(pattern);
                let esc = match escape {
                    Escape::Default => None,
                    Escape::None => Some(String::new()),
                    Escape::Char(c) => Some(c.to_string()),
                };
                if let Some(esc) = esc {
                    self.out.push_str(" ESCAPE ");
                    self.param(Type::Text, &Val::Text(esc.into()));
                }
                self.out.push(')');
            }
            Kind::In(x, items) => {
                self.out.push('(');
                self.expr(x);
                self.out.push_str(" IN (");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.expr(item);
                }
                self.out.push_str("))");
            }
            Kind::Arith(op, l, r) | Kind::DateArith(op, l, r) => self.binary(l, op.symbol(), r),
            Kind::DateDiff(l, r) => self.binary(l, BinOp::Sub.symbol(), r),
            Kind::Concat(l, r) => self.binary(l, "||", r),
            Kind::Neg(x) => {
                self.out.push_str("(- ");
                self.expr(x);
                self.out.push(')');
            }
            Kind::Func(f, args) => {
                self.out.push_str(f.sql_name());
                self.out.push('(');
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    // Case mapping and prefixes under the C collation, like the evaluator.
                    if i == 0 && matches!(f, Func::Lower | Func::Upper | Func::StartsWith) {
                        self.collated(a);
                    } else {
                        self.expr(a);
                    }
                }
                self.out.push(')');
            }
            Kind::Cast(x) => self.cast(x, e.ty),
        }
    }
}
