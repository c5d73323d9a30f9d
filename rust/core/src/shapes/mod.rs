//! The shape filter: where clauses of shape subscriptions, parsed, type-checked against a
//! table's columns and compiled once, then used two ways that always agree:
//!
//! - [`ShapeFilter::matches`] evaluates it on a row of typed values (a decoded pgoutput row, or
//!   any [`RowValues`]) for the live stream, with SQL's three-valued logic: only TRUE passes;
//! - [`ShapeFilter::to_sql`] turns it into a Postgres WHERE fragment for the initial query, with
//!   a `$n` parameter for every literal and explicit casts for every conversion, so the clause
//!   text is never spliced into SQL and Postgres computes exactly what the evaluator does.
//!
//! # The language
//!
//! A Postgres expression that must be boolean (a bare quoted literal or NULL counts as one):
//!
//! - columns: `this.col`, `col`, `this."Col"`, `"Col"` (unquoted names are lower-cased);
//! - literals: `'text'` (with `''`), integers (int4, int8 beyond its range, numeric beyond
//!   that), decimals and exponents (numeric, up to 38 digits), `TRUE`, `FALSE`, `NULL`, and
//!   typed ones: `'…'::T`, `CAST(x AS T)`, `T '…'`. A quoted literal takes the type its
//!   context needs (`this.day = '2024-05-01'` compares dates);
//! - types: bool, int2/smallint, int4/int/integer, int8/bigint, float4/real,
//!   float8/double precision, numeric/decimal, text, varchar, uuid, date, time, timestamp,
//!   timestamptz (and their long names), plus the table's enums (compared by label position,
//!   literals checked against the labels); other column types (json, jsonb, bytea, arrays…)
//!   only support `IS [NOT] NULL`;
//! - `AND`, `OR`, `NOT`; `IS [NOT] NULL`, `ISNULL`, `NOTNULL`, `IS [NOT] TRUE|FALSE|UNKNOWN`,
//!   `IS [NOT] DISTINCT FROM`;
//! - `= <> != < > <= >=` on every type above (text compares bytewise, as `COLLATE "C"`;
//!   floats order NaN last, as Postgres); `[NOT] IN (…)`, `[NOT] BETWEEN a AND b`;
//! - `[NOT] LIKE` and `[NOT] ILIKE` with `%`, `_` and `ESCAPE 'c'` (default `\`); ILIKE and
//!   `lower`/`upper` fold ASCII letters only, as Postgres's C collation does;
//! - arithmetic `+ - * / %` and unary `-`/`+` on numbers, with Postgres's result types,
//!   integer division and its errors (overflow, division by zero); `& | #` on integers;
//!   `date ± integer`, `date - date`; `||` on text (other types are cast to text);
//! - casts between numbers (not float to numeric), int4 ↔ bool, anything to text, text to
//!   anything but timestamptz, date → timestamp(tz), timestamp ↔ timestamptz,
//!   timestamp(tz) → date or time;
//! - functions: `lower`, `upper`, `length`/`char_length`/`character_length`, `starts_with`,
//!   `abs`.
//!
//! Not supported (each a clear error): clock functions (`now()`, `current_date`…, which would
//! make the initial query and the live stream disagree), intervals (and so timestamp
//! arithmetic, `justify_*`, `timezone()`), `^`, `@`, `|/`, the `int4out`-style output functions,
//! `SIMILAR TO`, `CASE`, `COALESCE`, subqueries, arrays, `E'…'`/dollar-quoted strings,
//! parameters, type modifiers, numerics beyond 38 significant digits.
//!
//! Constant sub-expressions are folded when compiling, as Postgres's planner folds them (a
//! FALSE operand decides an AND, a NULL operand a strict operator), and `IN` lists are
//! evaluated as Postgres plans them, so both sides evaluate — and fail on — the same things
//! for a row. One difference remains: Postgres may evaluate the top-level AND's operands in
//! another order (cheapest first), so a row that makes one operand fail may fail the initial
//! query while the evaluator has already found another operand FALSE, or the other way round.
//!
//! Time zones are UTC: a timestamptz literal without an offset is UTC, and the generated SQL
//! converts between dates, timestamps and timestamptz `AT TIME ZONE 'UTC'`, whatever the
//! session's TimeZone (text to timestamptz casts, which would depend on it, are refused). Casts
//! to text assume the output settings of electric-trio sessions: DateStyle ISO and the default
//! extra_float_digits (shortest exact floats).

mod check;
mod datetime;
mod eval;
pub mod graph;
mod like;
mod numeric;
mod parser;
mod sql;
pub mod text_rows;
mod types;

#[cfg(test)]
mod graph_tests;
#[cfg(test)]
mod tests;

use crate::pgoutput::Datum;
use crate::value::Value;

pub use graph::{FilterMemo, LayerError, LayerSpec, Link, MoveIn, Plan, PlanOp, ShapeGraph};
pub use sql::{SqlFragment, SqlParam};
pub use text_rows::{CopyRowError, TextRows};

/// A column of the table a filter is compiled against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ColumnDef {
    pub name: String,
    pub type_oid: u32,
    /// The labels of an enum type, in their sort order (`None` for other types).
    pub enum_labels: Option<Vec<String>>,
}

impl ColumnDef {
    pub fn new(name: impl Into<String>, type_oid: u32) -> ColumnDef {
        ColumnDef {
            name: name.into(),
            type_oid,
            enum_labels: None,
        }
    }

    pub fn enumeration(name: impl Into<String>, type_oid: u32, labels: Vec<String>) -> ColumnDef {
        ColumnDef {
            name: name.into(),
            type_oid,
            enum_labels: Some(labels),
        }
    }
}

/// A where clause that does not parse or type-check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("At location {position}: {message}")]
pub struct FilterError {
    /// Where in the clause, in characters from 0.
    pub position: usize,
    pub message: String,
}

impl FilterError {
    fn at(src: &str, byte_pos: usize, message: String) -> FilterError {
        let byte_pos = byte_pos.min(src.len());
        FilterError {
            position: src[..byte_pos].chars().count(),
            message,
        }
    }
}

/// A row the filter could not be evaluated on. Postgres raises the same errors (an initial
/// query fails as a whole where it meets one); for the live stream the row does not match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("{0} out of range")]
    IntegerOutOfRange(&'static str),
    #[error("value out of range: overflow")]
    FloatOverflow,
    #[error("value out of range: underflow")]
    FloatUnderflow,
    #[error("division by zero")]
    DivisionByZero,
    #[error("numeric value too large for a where clause (38 digits)")]
    NumericTooLarge,
    #[error("date out of range")]
    DateOutOfRange,
    #[error("date out of range for timestamp")]
    TimestampOutOfRange,
    #[error("cannot subtract infinite dates")]
    InfiniteDates,
    #[error("LIKE pattern must not end with escape character")]
    LikeEscape,
    #[error("{0}")]
    InvalidInput(String),
    #[error("column {column:?} is missing from the row (an unchanged TOAST value?)")]
    MissingValue { column: String },
    #[error("column {column:?} holds {value}, not a value of its type")]
    BadValue { column: String, value: String },
}

/// A row the filter reads, by the index of the column in the list it was compiled with.
pub trait RowValues {
    /// The value of column `index`; `None` when the row does not have it (an unchanged TOAST
    /// value of a pgoutput update).
    fn value(&self, index: usize) -> Option<&Value<'_>>;
}

impl RowValues for [Value<'_>] {
    fn value(&self, index: usize) -> Option<&Value<'_>> {
        self.get(index)
    }
}

impl RowValues for Vec<Value<'_>> {
    fn value(&self, index: usize) -> Option<&Value<'_>> {
        self.get(index)
    }
}

/// A pgoutput row in its relation's column order.
impl RowValues for [Datum] {
    fn value(&self, index: usize) -> Option<&Value<'_>> {
        match self.get(index)? {
            Datum::Value(v) => Some(v),
            Datum::UnchangedToast => None,
        }
    }
}

/// A compiled where clause; cheap to share between connections (`Send + Sync`).
#[derive(Debug, Clone)]
pub struct ShapeFilter {
    source: String,
    columns: Vec<check::ColumnInfo>,
    enums: Vec<check::EnumInfo>,
    /// None for an empty clause, which every row passes.
    expr: Option<check::Expr>,
    referenced: Vec<usize>,
}

impl ShapeFilter {
    /// Parses and type-checks `clause` against the table's `columns` (in the order rows will
    /// have them). An empty (or blank) clause is a filter that every row passes.
    pub fn compile(clause: &str, columns: &[ColumnDef]) -> Result<ShapeFilter, FilterError> {
        check::compile(clause, columns)
    }

    /// The clause as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the clause is empty (every row passes).
    pub fn is_empty(&self) -> bool {
        self.expr.is_none()
    }

    /// The indexes of the columns the clause reads, ascending.
    pub fn referenced_columns(&self) -> &[usize] {
        &self.referenced
    }

    /// The clause's value on `row`: `Some(true)`, `Some(false)` or `None` (SQL NULL).
    pub fn evaluate<R: RowValues + ?Sized>(&self, row: &R) -> Result<Option<bool>, EvalError> {
        match &self.expr {
            None => Ok(Some(true)),
            Some(e) => eval::truth(self, e, row),
        }
    }

    /// Whether `row` passes: the clause is TRUE on it (FALSE and NULL do not pass).
    pub fn matches<R: RowValues + ?Sized>(&self, row: &R) -> Result<bool, EvalError> {
        Ok(self.evaluate(row)? == Some(true))
    }

    /// A WHERE fragment for Postgres selecting exactly the rows [`Self::matches`] accepts,
    /// with the table's columns qualified by `alias` and parameters numbered from
    /// `first_param` (`$first_param`, ...). An empty clause gives `TRUE`.
    pub fn to_sql(&self, alias: &str, first_param: usize) -> SqlFragment {
        sql::generate(self, alias, first_param)
    }
}
