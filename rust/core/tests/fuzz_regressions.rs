//! Inputs the fuzz targets (rust/fuzz) and the bad-input tests found problems with, and the
//! limits that came of them: each was a crash or a hang of the whole service that one client
//! (or one odd value) could cause.

use electric_core::shapes::{ColumnDef, ShapeFilter};
use electric_core::value::{decode_text, oid, Kind, Value};

fn int_column() -> Vec<ColumnDef> {
    vec![ColumnDef::new("a", oid::INT4)]
}

/// Compiles `clause`, generates its SQL and evaluates it, on a thread of its own: a stack
/// overflow aborts the test binary instead of failing a test. The stack is large because a
/// debug build needs about 16 KiB per level (a release build about 4 KiB).
fn compile_and_use(clause: String) -> Result<(), String> {
    std::thread::Builder::new()
        .stack_size(32 << 20)
        .spawn(move || {
            let filter = ShapeFilter::compile(&clause, &int_column()).map_err(|e| e.to_string())?;
            filter.to_sql("t", 1);
            let _ = filter.evaluate(&vec![Value::Int(1)]);
            Ok(())
        })
        .expect("thread")
        .join()
        .expect("no panic")
}

/// Clauses nested `n` levels deep, in each of the ways the grammar nests.
fn nested(n: usize) -> Vec<String> {
    vec![
        format!("{}this.a = 1{}", "(".repeat(n), ")".repeat(n)),
        vec!["this.a = 1"; n].join(" OR "),
        vec!["this.a = 1"; n].join(" AND "),
        format!("{}this.a = 1", "NOT ".repeat(n)),
        format!("this.a = {}1", "- ".repeat(n)),
        format!("this.a = {}", vec!["this.a"; n].join(" + ")),
        format!("{}this.a{} = 1", "abs(".repeat(n), ")".repeat(n)),
        format!("this.a IN ({})", vec!["this.a + 1"; n].join(", ")),
    ]
}

#[test]
fn clauses_up_to_the_depth_limit_work() {
    for clause in nested(200) {
        assert_eq!(compile_and_use(clause.clone()), Ok(()), "{}", &clause[..60]);
    }
}

#[test]
fn deeper_clauses_are_refused_not_a_stack_overflow() {
    for n in [300, 100_000] {
        for clause in nested(n) {
            let error = compile_and_use(clause.clone()).expect_err(&clause[..60]);
            assert!(
                error.ends_with("expression nested more than 256 levels deep"),
                "{error}"
            );
        }
    }
}

#[test]
fn between_does_not_expand_exponentially() {
    // Each BETWEEN copies its operand: 40 levels would be 2^40 nodes.
    let mut clause = "this.a BETWEEN 1 AND 2".to_owned();
    for _ in 0..40 {
        clause = format!("({clause}) BETWEEN false AND true");
    }
    let error = compile_and_use(clause).unwrap_err();
    assert!(error.contains("expression too large"), "{error}");
    // Nor IN, which copies its operand for every item that is not a literal.
    let ids: Vec<String> = (0..5000).map(|i| i.to_string()).collect();
    let wide = format!("this.a IN ({})", ids.join(", "));
    let clause = format!("({wide}) IN ({})", vec!["this.a = 1"; 100].join(", "));
    let error = compile_and_use(clause).unwrap_err();
    assert!(error.contains("expression too large"), "{error}");
}

#[test]
fn long_in_lists_of_literals_are_fine() {
    let ids: Vec<String> = (0..50_000).map(|i| i.to_string()).collect();
    let clause = format!("this.a IN ({})", ids.join(", "));
    assert_eq!(compile_and_use(clause), Ok(()));
}

#[test]
fn a_date_with_a_year_beyond_u32_is_an_error() {
    for raw in [
        &b"99999999999-01-01"[..],
        b"4294967296-01-01",
        b"2147483648-01-01",
    ] {
        assert!(decode_text(Kind::Date, raw).is_err());
        let mut timestamp = raw.to_vec();
        timestamp.extend_from_slice(b" 00:00:00+00");
        assert!(decode_text(Kind::TimestampTz, &timestamp).is_err());
    }
    assert!(decode_text(Kind::Date, b"2147483647-01-01").is_ok());
}

#[test]
fn bytea_octal_escapes_past_377_are_errors() {
    assert!(decode_text(Kind::Bytea, b"\\777").is_err());
    assert!(decode_text(Kind::Bytea, b"a\\400").is_err());
    assert_eq!(
        decode_text(Kind::Bytea, b"\\377\\101\\\\"),
        Ok(Value::Bytes(vec![255, b'A', b'\\']))
    );
}

#[test]
fn a_numeric_exponent_at_the_edge_of_i32_is_refused() {
    let columns = vec![ColumnDef::new("a", oid::NUMERIC)];
    for clause in [
        "this.a = 2e2147483648",
        "this.a = 2e-2147483648",
        "this.a = 1e2147483647",
    ] {
        let error = ShapeFilter::compile(clause, &columns).unwrap_err();
        assert!(error.message.contains("numeric"), "{clause}: {error}");
    }
}
