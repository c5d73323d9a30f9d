//! Tests of the compiled filter: type errors, three-valued logic, every operator and function,
//! rows from pgoutput, and the generated SQL.

use super::*;
use crate::value::{oid, Date, Time};

const MOOD_OID: u32 = 90_001;

fn columns() -> Vec<ColumnDef> {
    vec![
        ColumnDef::new("id", oid::INT4),
        ColumnDef::new("i2", oid::INT2),
        ColumnDef::new("i8", oid::INT8),
        ColumnDef::new("f4", oid::FLOAT4),
        ColumnDef::new("f8", oid::FLOAT8),
        ColumnDef::new("t", oid::TEXT),
        ColumnDef::new("v", oid::VARCHAR),
        ColumnDef::new("a", oid::BOOL),
        ColumnDef::new("b", oid::BOOL),
        ColumnDef::new("u", oid::UUID),
        ColumnDef::new("d", oid::DATE),
        ColumnDef::new("tm", oid::TIME),
        ColumnDef::new("ts", oid::TIMESTAMP),
        ColumnDef::new("tz", oid::TIMESTAMPTZ),
        ColumnDef::new("j", oid::JSONB),
        ColumnDef::enumeration(
            "mood",
            MOOD_OID,
            vec!["sad".into(), "ok".into(), "happy".into()],
        ),
        ColumnDef::new("Mixed Case", oid::TEXT),
    ]
}

/// A row with every column NULL but those given.
fn row(values: &[(&str, Value<'static>)]) -> Vec<Value<'static>> {
    let cols = columns();
    let mut r = vec![Value::Null; cols.len()];
    for (name, v) in values {
        let i = cols.iter().position(|c| c.name == *name).expect(name);
        r[i] = v.clone();
    }
    r
}

fn text(s: &str) -> Value<'static> {
    Value::Text(s.to_owned().into())
}

fn date(year: i32, month: u8, day: u8) -> Value<'static> {
    Value::Date(Date { year, month, day })
}

fn ts(year: i32, month: u8, day: u8, hour: u8) -> (Date, Time) {
    (
        Date { year, month, day },
        Time {
            hour,
            minute: 0,
            second: 0,
            micro: 0,
        },
    )
}

fn compile(clause: &str) -> ShapeFilter {
    ShapeFilter::compile(clause, &columns()).unwrap_or_else(|e| panic!("{clause}: {e}"))
}

fn error(clause: &str) -> FilterError {
    match ShapeFilter::compile(clause, &columns()) {
        Ok(_) => panic!("{clause} compiled"),
        Err(e) => e,
    }
}

/// The clause's truth on a row.
fn eval(clause: &str, r: &[Value<'_>]) -> Option<bool> {
    compile(clause)
        .evaluate(r)
        .unwrap_or_else(|e| panic!("{clause}: {e}"))
}

/// The clause's truth on the all-NULL row (for clauses on literals).
fn konst(clause: &str) -> Option<bool> {
    eval(clause, &row(&[]))
}

fn eval_err(clause: &str, r: &[Value<'_>]) -> EvalError {
    compile(clause).evaluate(r).unwrap_err()
}

#[test]
fn three_valued_logic() {
    let vals = [Some(true), Some(false), None];
    let v = |b: Option<bool>| b.map_or(Value::Null, Value::Bool);
    for x in vals {
        for y in vals {
            let r = row(&[("a", v(x)), ("b", v(y))]);
            let and = match (x, y) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            };
            let or = match (x, y) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            };
            assert_eq!(eval("this.a AND this.b", &r), and, "{x:?} AND {y:?}");
            assert_eq!(eval("this.a OR this.b", &r), or, "{x:?} OR {y:?}");
            assert_eq!(
                eval("this.a IS DISTINCT FROM this.b", &r),
                Some(x != y),
                "{x:?} IS DISTINCT FROM {y:?}"
            );
            assert_eq!(eval("this.a = this.b", &r), x.zip(y).map(|(x, y)| x == y));
        }
        let r = row(&[("a", v(x))]);
        assert_eq!(eval("NOT this.a", &r), x.map(|x| !x));
        assert_eq!(eval("this.a IS TRUE", &r), Some(x == Some(true)));
        assert_eq!(eval("this.a IS NOT TRUE", &r), Some(x != Some(true)));
        assert_eq!(eval("this.a IS FALSE", &r), Some(x == Some(false)));
        assert_eq!(eval("this.a IS NOT FALSE", &r), Some(x != Some(false)));
        assert_eq!(eval("this.a IS UNKNOWN", &r), Some(x.is_none()));
        assert_eq!(eval("this.a IS NULL", &r), Some(x.is_none()));
        assert_eq!(eval("this.a IS NOT NULL", &r), Some(x.is_some()));
        assert_eq!(eval("this.a ISNULL", &r), Some(x.is_none()));
        assert_eq!(eval("this.a", &r), x);
    }
    // Only TRUE passes.
    let f = compile("this.a");
    assert!(f.matches(&row(&[("a", Value::Bool(true))])).unwrap());
    assert!(!f.matches(&row(&[("a", Value::Bool(false))])).unwrap());
    assert!(!f.matches(&row(&[])).unwrap());
    // Comparisons, arithmetic, functions and LIKE propagate NULL.
    let r = row(&[]);
    for clause in [
        "this.id = 1",
        "this.id <> 1",
        "this.id + 1 > 0",
        "lower(this.t) = 'x'",
        "this.t LIKE 'x%'",
        "'x' LIKE this.t",
        "this.id IN (1, 2)",
        "1 IN (2, NULL)",
        "this.t || 'x' = 'x'",
        "NULL::bool",
        "this.id BETWEEN 1 AND 2",
        "this.d - 1 = '2024-01-01'",
    ] {
        assert_eq!(eval(clause, &r), None, "{clause}");
    }
    assert_eq!(konst("1 IN (1, NULL)"), Some(true));
    assert_eq!(konst("NULL IS NULL"), Some(true));
    assert_eq!(konst("NOT (1 NOT IN (2, NULL))"), None);
}

#[test]
fn comparisons_of_every_type() {
    let r = row(&[
        ("id", Value::Int(5)),
        ("i2", Value::Int(-3)),
        ("i8", Value::Int(1 << 40)),
        ("f4", Value::Float(1.100000023841858)),
        ("f8", Value::Float(2.5)),
        ("t", text("abc")),
        ("v", text("ABC")),
        ("a", Value::Bool(true)),
        (
            "u",
            Value::Uuid([
                0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
                0x0a, 0x11,
            ]),
        ),
        ("d", date(2024, 2, 29)),
        (
            "tm",
            Value::Time(Time {
                hour: 13,
                minute: 30,
                second: 0,
                micro: 500_000,
            }),
        ),
        ("ts", {
            let (d, t) = ts(2024, 1, 1, 10);
            Value::Timestamp(d, t)
        }),
        ("tz", {
            let (d, t) = ts(2024, 1, 1, 10);
            Value::TimestampTz(d, t)
        }),
        ("mood", text("ok")),
        ("Mixed Case", text("yes")),
    ]);
    for (clause, want) in [
        ("this.id = 5", true),
        ("this.id <> 5", false),
        ("this.id != 4", true),
        (
            "this.id >= 5 AND this.id <= 5 AND this.id > 4 AND this.id < 6",
            true,
        ),
        ("this.i2 < this.id", true),
        ("this.i8 = 1099511627776", true),
        ("this.i8 > 2147483648", true),
        ("this.id = 5.0", true),
        ("this.id < 5.5", true),
        ("this.id = '5'", true),
        // float4 against a decimal compares as float8, as Postgres does.
        ("this.f4 = 1.1", false),
        ("this.f4 = 1.1::float4", true),
        ("this.f4 = '1.1'", true),
        ("this.f8 = 2.5", true),
        ("this.f8 > 2", true),
        ("this.f8 <> '2.5'", false),
        ("this.t = 'abc'", true),
        ("this.t < 'abd'", true),
        ("this.t > 'ab'", true),
        // Bytewise: upper-case letters sort before lower-case ones.
        ("this.v < this.t", true),
        ("this.t <> this.v", true),
        ("this.v = 'ABC'", true),
        ("this.a = true", true),
        ("this.a > false", true),
        ("this.a", true),
        ("this.u = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", true),
        ("this.u = '{A0EEBC999C0B4EF8BB6D6BB9BD380A11}'", true),
        ("this.u < 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", true),
        ("this.d = '2024-02-29'", true),
        ("this.d = date '2024-02-29'", true),
        ("this.d > '2024-02-28T23:00:00Z'", true),
        ("this.d < 'infinity'", true),
        ("this.d > '-infinity'::date", true),
        ("this.d > this.ts", true),
        ("this.d = '2024-02-29 00:00'::timestamp", true),
        ("this.tm > '13:30'", true),
        ("this.tm = '13:30:00.5'", true),
        ("this.ts = '2024-01-01 10:00:00'", true),
        ("this.ts = '2024-01-01T10:00:00.000Z'", true),
        ("this.ts = '2024-01-01T10:00:00+05'", true),
        ("this.tz = '2024-01-01T10:00:00.000Z'", true),
        ("this.tz = '2024-01-01 12:00:00+02'", true),
        ("this.tz = '2024-01-01 10:00:00'", true),
        ("this.tz = this.ts", true),
        ("this.mood = 'ok'", true),
        ("this.mood > 'sad'", true),
        ("this.mood < 'happy'", true),
        ("this.mood IN ('happy', 'sad')", false),
        ("this.\"Mixed Case\" = 'yes'", true),
        ("\"Mixed Case\" = 'yes'", true),
        ("id = 5", true),
        ("THIS.ID = 5", true),
        ("this.j IS NULL", true),
    ] {
        assert_eq!(eval(clause, &r), Some(want), "{clause}");
    }
}

#[test]
fn floats_order_like_postgres() {
    let nan = row(&[("f8", Value::Float(f64::NAN))]);
    assert_eq!(eval("this.f8 = 'NaN'", &nan), Some(true));
    assert_eq!(eval("this.f8 > 'Infinity'", &nan), Some(true));
    assert_eq!(eval("this.f8 > 1e308", &nan), Some(true));
    let neg_zero = row(&[("f8", Value::Float(-0.0))]);
    assert_eq!(eval("this.f8 = 0", &neg_zero), Some(true));
    assert_eq!(eval("this.f8::text = '-0'", &neg_zero), Some(true));
}

#[test]
fn like_ilike_in_between() {
    let r = row(&[("t", text("Hello_World%")), ("id", Value::Int(7))]);
    for (clause, want) in [
        ("this.t LIKE 'Hello%'", true),
        ("this.t LIKE 'hello%'", false),
        ("this.t ILIKE 'hello%'", true),
        ("this.t NOT ILIKE 'hello%'", false),
        ("this.t NOT LIKE ''", true),
        ("this.t LIKE 'Hello\\_World\\%'", true),
        ("this.t LIKE 'Hello!_W%' ESCAPE '!'", true),
        ("this.t LIKE 'Hello\\_%' ESCAPE ''", false),
        ("this.t LIKE '_ello%'", true),
        ("this.t LIKE this.t", true),
        ("'abc' LIKE 'a' || '%'", true),
        ("this.id IN (1, 7, 9)", true),
        ("this.id NOT IN (1, 9)", true),
        ("this.id IN (7.0)", true),
        ("this.id IN ('7')", true),
        ("this.id BETWEEN 7 AND 8", true),
        ("this.id BETWEEN 8 AND 7", false),
        ("this.id NOT BETWEEN 1 AND 6", true),
        ("this.t BETWEEN 'H' AND 'I'", true),
        ("this.t IS DISTINCT FROM 'x'", true),
        ("this.t IS NOT DISTINCT FROM 'Hello_World%'", true),
    ] {
        assert_eq!(eval(clause, &r), Some(want), "{clause}");
    }
    // A dynamic pattern ending with the escape character is an error, like in Postgres.
    let r = row(&[("t", text("a\\"))]);
    assert_eq!(eval_err("'a' LIKE this.t", &r), EvalError::LikeEscape);
    assert!(error("this.t LIKE 'a\\'")
        .message
        .contains("must not end with escape"));
    assert_eq!(
        error("this.t LIKE 'a' ESCAPE 'ab'").message,
        "invalid escape string"
    );
    assert!(error("this.id LIKE '1%'")
        .message
        .contains("operator does not exist"));
}

#[test]
fn arithmetic_types_and_errors() {
    let r = row(&[
        ("id", Value::Int(7)),
        ("i2", Value::Int(32767)),
        ("i8", Value::Int(i64::MAX)),
        ("f8", Value::Float(1e308)),
        ("f4", Value::Float(3e38)),
    ]);
    for (clause, want) in [
        ("this.id + 1 = 8", true),
        ("this.id - 10 = -3", true),
        ("this.id * 3 = 21", true),
        ("this.id / 2 = 3", true),
        ("-this.id / 2 = -3", true),
        ("this.id % 4 = 3", true),
        ("-this.id % 4 = -3", true),
        ("this.id % -1 = 0", true),
        ("this.id / 2.0 = 3.5", true),
        ("this.id * 1.5 = 10.5", true),
        ("(this.id * 1.5)::text = '10.5'", true),
        ("(this.id / 3.0)::text = '2.3333333333333333'", true),
        ("this.id / 2::float8 = 3.5", true),
        ("this.id & 3 = 3", true),
        ("this.id | 8 = 15", true),
        ("this.id # 1 = 6", true),
        ("- this.id = -7", true),
        ("+ this.id = 7", true),
        ("abs(-this.id) = 7", true),
        ("2 + 3 * 4 = 14", true),
        ("(2 + 3) * 4 = 20", true),
        ("this.f8 / 1e308 = 1", true),
    ] {
        assert_eq!(eval(clause, &r), Some(want), "{clause}");
    }
    for (clause, err) in [
        ("this.id / 0 = 1", EvalError::DivisionByZero),
        ("this.id % 0 = 1", EvalError::DivisionByZero),
        ("this.id / 0.0 = 1", EvalError::DivisionByZero),
        ("this.f8 / 0 = 1", EvalError::DivisionByZero),
        (
            "this.i2 + 1::int2 = 0",
            EvalError::IntegerOutOfRange("smallint"),
        ),
        ("this.i8 + 1 = 0", EvalError::IntegerOutOfRange("bigint")),
        (
            "this.id * 2147483647 = 0",
            EvalError::IntegerOutOfRange("integer"),
        ),
        ("this.f8 * 10 = 0", EvalError::FloatOverflow),
        ("this.f4 * 10::float4 = 0", EvalError::FloatOverflow),
        (
            "this.f8 * 1e-300 * 1e-300 * 1e-300 = 0",
            EvalError::FloatUnderflow,
        ),
        ("this.f8::float4 = 0", EvalError::FloatOverflow),
        ("this.f8::int8 = 0", EvalError::IntegerOutOfRange("bigint")),
    ] {
        assert_eq!(eval_err(clause, &r), err, "{clause}");
    }
    // Constant expressions are folded when compiled, so their errors are the clause's.
    for (clause, message) in [
        ("-2147483648 / -1 = 0", "integer out of range"),
        ("abs(-2147483648) = 0", "integer out of range"),
        (
            "1e-300::float8 * 1e-300::float8 = 0",
            "value out of range: underflow",
        ),
        ("'NaN'::float8::int4 = 0", "integer out of range"),
        ("this.id = 1 / 0", "division by zero"),
    ] {
        assert_eq!(error(clause).message, message, "{clause}");
    }
    assert!(error("this.f8 % 2 = 0")
        .message
        .contains("operator does not exist"));
    assert!(error("'1' + '2' = 3").message.contains("not unique"));
    assert!(error("this.t + 1 = 0")
        .message
        .contains("operator does not exist: text + integer"));
    assert!(error("this.ts + 1 = 0")
        .message
        .contains("intervals are not supported"));
}

#[test]
fn dates_casts_and_functions() {
    let r = row(&[
        ("d", date(2024, 2, 28)),
        ("t", text("MiXeD é")),
        ("id", Value::Int(42)),
        ("f8", Value::Float(2.5)),
        ("a", Value::Bool(true)),
        ("tz", {
            let (d, t) = ts(2024, 3, 1, 23);
            Value::TimestampTz(d, t)
        }),
    ]);
    for (clause, want) in [
        ("this.d + 1 = '2024-02-29'", true),
        ("1 + this.d = '2024-02-29'", true),
        ("this.d + 2 = '2024-03-01'", true),
        ("this.d - 366 = '2023-02-27'", true),
        ("this.d - '2024-01-01' = 58", true),
        ("this.d - date '2024-03-01' = -2", true),
        ("this.tz::date = '2024-03-01'", true),
        ("this.tz::time = '23:00'", true),
        ("this.tz::timestamp = '2024-03-01 23:00'", true),
        ("this.d::timestamptz < this.tz", true),
        ("this.d::text = '2024-02-28'", true),
        ("this.tz::text = '2024-03-01 23:00:00+00'", true),
        ("lower(this.t) = 'mixed é'", true),
        ("upper(this.t) = 'MIXED é'", true),
        ("length(this.t) = 7", true),
        ("char_length(this.t) = 7", true),
        ("starts_with(this.t, 'MiX')", true),
        ("this.t || '!' = 'MiXeD é!'", true),
        ("this.id || '' = '42'", true),
        (
            "'n=' || this.id || ',' || this.f8 || ',' || this.a = 'n=42,2.5,true'",
            true,
        ),
        ("this.id::text = '42'", true),
        ("this.id::int2 = 42", true),
        ("this.id::float4 = 42", true),
        ("this.f8::int4 = 2", true),
        ("3.5::float8::int4 = 4", true),
        ("2.5::int4 = 3", true),
        ("(-2.5)::int4 = -3", true),
        ("this.a::int4 = 1", true),
        ("this.id::bool", true),
        ("'42'::int8 = this.id", true),
        ("CAST('2.50' AS numeric)::text = '2.50'", true),
        ("this.t::text = this.t", true),
        ("'  17 '::int4 = 17", true),
        ("'1e3'::float8 = 1000", true),
        ("'2024-02-28'::date = this.d", true),
        ("'t'::bool", true),
        ("'yes'::boolean", true),
        ("1e3 = 1000", true),
        ("1.50 = 1.5", true),
        ("-2147483648 = -2147483647 - 1", true),
        ("9223372036854775807 > 0", true),
        ("99999999999999999999 > 9223372036854775807", true),
    ] {
        assert_eq!(eval(clause, &r), Some(want), "{clause}");
    }
    let bad = row(&[("t", text("abc")), ("d", date(2024, 1, 1))]);
    assert!(matches!(
        eval_err("this.t::int4 = 1", &bad),
        EvalError::InvalidInput(m) if m == "invalid input syntax for type integer: \"abc\""
    ));
    let inf = row(&[(
        "d",
        Value::Infinity {
            positive: true,
            of: crate::value::Scalar::Date,
        },
    )]);
    assert_eq!(eval("this.d + 1 > '2024-01-01'", &inf), Some(true));
    assert_eq!(
        eval_err("this.d - this.d = 0", &inf),
        EvalError::InfiniteDates
    );
    assert_eq!(
        eval_err("this.d + 2147483647 > this.d", &bad),
        EvalError::DateOutOfRange
    );
}

#[test]
fn compile_errors_have_positions() {
    let cases: &[(&str, usize, &str)] = &[
        ("this.nope = 1", 0, "column \"nope\" does not exist"),
        (
            "this.id = 1 AND this.Nope = 2",
            16,
            "column \"nope\" does not exist",
        ),
        ("mixed case = 1", 6, "syntax error at or near \"case\""),
        (
            "this.id = 'abc'",
            10,
            "invalid input syntax for type integer: \"abc\"",
        ),
        (
            "this.id = 'x' OR this.t = 1",
            10,
            "invalid input syntax for type integer",
        ),
        ("this.t = 1", 7, "operator does not exist: text = integer"),
        (
            "this.id",
            0,
            "Where expression should evaluate to a boolean, but it's integer",
        ),
        (
            "this.t || 'x'",
            0,
            "Where expression should evaluate to a boolean, but it's text",
        ),
        (
            "this.id AND true",
            0,
            "argument of AND must be type boolean, not type integer",
        ),
        (
            "NOT this.t",
            4,
            "argument of NOT must be type boolean, not type text",
        ),
        (
            "frob(this.id) = 1",
            0,
            "function frob(integer) does not exist",
        ),
        (
            "lower(this.id) = 'x'",
            0,
            "function lower(integer) does not exist",
        ),
        ("this.ts > now()", 10, "now() is not allowed"),
        ("this.d > current_date", 9, "current_date is not allowed"),
        ("this.d = 'today'", 9, "'today' is not allowed"),
        (
            "this.d = '2024-02-30'",
            9,
            "invalid input syntax for type date",
        ),
        (
            "this.mood = 'angry'",
            12,
            "invalid input value for enum: \"angry\"",
        ),
        (
            "this.mood = this.t",
            10,
            "operator does not exist: an enum = text",
        ),
        ("this.j = '{}'", 7, "operator does not exist"),
        ("this.u = 1", 7, "operator does not exist: uuid = integer"),
        ("this.id = 32768::int2", 15, "smallint out of range"),
        (
            "this.f8::numeric = 1",
            7,
            "casting double precision to numeric is not supported",
        ),
        ("this.d::int4 = 1", 6, "cannot cast type date to integer"),
        (
            "this.id IN (1, 'x')",
            15,
            "invalid input syntax for type integer",
        ),
        (
            "this.id IN (1, this.t)",
            15,
            "operator does not exist: integer = text",
        ),
        ("coalesce(this.id, 1) = 1", 0, "COALESCE is not supported"),
        (
            "this.t LIKE 'x' ESCAPE this.t",
            23,
            "ESCAPE must be a quoted literal",
        ),
        ("1 = 1; DROP TABLE t", 5, "unexpected \";\""),
        ("') OR 1=1 --", 0, "unterminated quoted string"),
        ("this.id = 1)", 11, "syntax error at or near \")\""),
        (
            "1.5e99999 = 1",
            0,
            "more digits than a where clause supports",
        ),
    ];
    for (clause, position, message) in cases {
        let e = error(clause);
        assert_eq!(e.position, *position, "{clause}: {e}");
        assert!(e.message.contains(message), "{clause}: {e}");
        assert!(e
            .to_string()
            .starts_with(&format!("At location {position}: ")));
    }
}

#[test]
fn empty_clause_passes_everything() {
    let f = compile("  ");
    assert!(f.is_empty());
    assert!(f.matches(&row(&[])).unwrap());
    assert_eq!(f.to_sql("this", 1).sql, "TRUE");
}

#[test]
fn pgoutput_rows() {
    let f = compile("this.t ILIKE 'a%' AND this.id > 1");
    assert_eq!(f.referenced_columns(), &[0, 5]);
    let mut datums: Vec<Datum> = row(&[("id", Value::Int(2)), ("t", text("ABC"))])
        .into_iter()
        .map(Datum::Value)
        .collect();
    assert!(f.matches(datums.as_slice()).unwrap());
    datums[5] = Datum::UnchangedToast;
    assert_eq!(
        f.matches(datums.as_slice()),
        Err(EvalError::MissingValue { column: "t".into() })
    );
    // A TOASTed column the clause does not read does not matter.
    datums[5] = Datum::Value(text("abc"));
    datums[14] = Datum::UnchangedToast;
    assert!(f.matches(datums.as_slice()).unwrap());
    // A value of the wrong kind is an error, not a guess.
    datums[0] = Datum::Value(text("2"));
    assert!(matches!(
        f.matches(datums.as_slice()),
        Err(EvalError::BadValue { .. })
    ));
}

#[test]
fn generated_sql() {
    let f = compile(
        "this.t ILIKE 'a%' AND (this.id > 1.5 OR this.d = '2024-01-01') AND this.mood <> 'sad'",
    );
    let q = f.to_sql("this", 3);
    assert_eq!(
        q.sql,
        "(((\"this\".\"t\" COLLATE \"C\" ILIKE $3::text) AND ((CAST(\"this\".\"id\" AS numeric) > $4::numeric) OR (\"this\".\"d\" = $5::date))) AND (\"this\".\"mood\" <> $6))"
    );
    assert_eq!(
        q.params,
        vec![
            SqlParam {
                value: Some("a%".into()),
                type_oid: oid::TEXT
            },
            SqlParam {
                value: Some("1.5".into()),
                type_oid: oid::NUMERIC
            },
            SqlParam {
                value: Some("2024-01-01".into()),
                type_oid: oid::DATE
            },
            SqlParam {
                value: Some("sad".into()),
                type_oid: MOOD_OID
            },
        ]
    );
    let q = compile("this.\"Mixed Case\" = 'it''s' OR this.t LIKE '%x' ESCAPE '' OR NULL")
        .to_sql("we\"ird", 1);
    assert_eq!(
        q.sql,
        "(((\"we\"\"ird\".\"Mixed Case\" COLLATE \"C\" = $1::text) OR (\"we\"\"ird\".\"t\" COLLATE \"C\" LIKE $2::text ESCAPE $3::text)) OR $4::bool)"
    );
    assert_eq!(q.params[0].value.as_deref(), Some("it's"));
    assert_eq!(q.params[2].value.as_deref(), Some(""));
    assert_eq!(q.params[3].value, None);
    // Literals never reach the SQL text, whatever they contain.
    let q = compile("this.t = '''; DROP TABLE t; --'").to_sql("this", 1);
    assert_eq!(q.sql, "(\"this\".\"t\" COLLATE \"C\" = $1::text)");
    assert_eq!(q.params[0].value.as_deref(), Some("'; DROP TABLE t; --"));
    let q = compile("this.tz > '2024-01-01T12:00:00+02' AND this.f4 < 1e30 AND -this.i2 < 5")
        .to_sql("t", 1);
    assert_eq!(
        q.sql,
        "(((\"t\".\"tz\" > $1::timestamptz) AND (CAST(\"t\".\"f4\" AS float8) < $2::float8)) AND (CAST((- \"t\".\"i2\") AS int4) < $3::int4))"
    );
    assert_eq!(q.params[1].value.as_deref(), Some("1e+30"));
    assert_eq!(q.params[0].value.as_deref(), Some("2024-01-01 10:00:00+00"));
}

#[test]
fn planned_like_postgres() {
    // Constant parts are folded when compiled, as Postgres's planner does, so what is left to
    // evaluate (and to fail) is the same on both sides.
    let sql = |c: &str| compile(c).to_sql("t", 1).sql;
    assert_eq!(sql("this.id IN (NULL)"), "$1::bool");
    assert_eq!(sql("-this.id = 1 AND (1 > 2)"), "$1::bool");
    assert_eq!(sql("(1 < 2) OR this.id / 0 = 1"), "$1::bool");
    assert_eq!(sql("NOT ('A' NOT LIKE '')"), "$1::bool");
    assert_eq!(sql("this.id + NULL > 1"), "$1::bool");
    // IN: one `= ANY` of the constants, then the other items in order.
    assert_eq!(
        sql("this.id IN (this.i2, 1, 2)"),
        "((\"t\".\"id\" IN ($1::int4, $2::int4)) OR (\"t\".\"id\" = CAST(\"t\".\"i2\" AS int4)))"
    );
    assert_eq!(
        sql("this.id IN (this.i2, 1)"),
        "((\"t\".\"id\" = CAST(\"t\".\"i2\" AS int4)) OR (\"t\".\"id\" = $1::int4))"
    );
    // Conversions that depend on the session's time zone are made in UTC.
    assert_eq!(
        sql("this.d < this.tz"),
        "((CAST(\"t\".\"d\" AS timestamp) AT TIME ZONE 'UTC') < \"t\".\"tz\")"
    );
    assert_eq!(
        sql("this.tz::date = this.d"),
        "(CAST((\"t\".\"tz\" AT TIME ZONE 'UTC') AS date) = \"t\".\"d\")"
    );
    assert!(sql("this.tz::text = ''").contains("isfinite"));
    assert!(error("this.t::timestamptz > '2024-01-01'")
        .message
        .contains("session's time zone"));
}
