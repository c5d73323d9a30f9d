//! The decoder on pgoutput streams captured from PostgreSQL 18 (see testdata/README.md).

use std::path::Path;

use electric_core::pgoutput::{
    Change, Datum, Decoded, Decoder, Message, StreamErrorKind, Transaction,
};
use electric_core::pgwire::replication::ReplicationMessage;
use electric_core::value::{Date, Scalar, Time, Value};

fn payloads(name: &str) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let n = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        out.push(data[pos + 4..pos + 4 + n].to_vec());
        pos += 4 + n;
    }
    out
}

fn decode(name: &str) -> (Decoder, Vec<Decoded>) {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    d.decode_into(payloads(name).iter().map(Vec::as_slice), &mut out)
        .unwrap();
    (d, out)
}

fn transactions(out: &[Decoded]) -> Vec<&Transaction> {
    out.iter()
        .filter_map(|d| match d {
            Decoded::Transaction(t) => Some(t),
            Decoded::Message(_) => None,
        })
        .collect()
}

/// The new row of an insert, as (column name, datum) pairs.
fn inserted(c: &Change) -> Vec<(&str, &Datum)> {
    let Change::Insert { relation, new } = c else {
        panic!("not an insert: {c:?}")
    };
    relation
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .zip(new.iter())
        .collect()
}

fn v(d: &Datum) -> &Value<'static> {
    match d {
        Datum::Value(v) => v,
        Datum::UnchangedToast => panic!("unchanged TOAST"),
    }
}

fn int(d: &Datum) -> i64 {
    match v(d) {
        Value::Int(i) => *i,
        other => panic!("not an int: {other:?}"),
    }
}

fn date(year: i32, month: u8, day: u8) -> Date {
    Date { year, month, day }
}

fn time(hour: u8, minute: u8, second: u8, micro: u32) -> Time {
    Time {
        hour,
        minute,
        second,
        micro,
    }
}

#[test]
fn every_golden_message_round_trips_through_the_encoder() {
    for name in ["types.bin", "changes.bin", "streamed.bin"] {
        let mut streaming = false;
        for p in payloads(name) {
            let ReplicationMessage::XLogData { data, .. } = ReplicationMessage::parse(&p).unwrap()
            else {
                continue;
            };
            let m = Message::parse(data, streaming).unwrap();
            match m {
                Message::StreamStart(_) => streaming = true,
                Message::StreamStop => streaming = false,
                _ => {}
            }
            let mut again = Vec::new();
            m.encode_into(&mut again);
            assert_eq!(again, data, "{name}: {m:?}");
        }
    }
}

#[test]
fn types() {
    let (d, out) = decode("types.bin");
    let txns = transactions(&out);
    assert_eq!(txns.len(), 3);
    for t in &txns {
        assert!(t.commit_lsn < t.end_lsn && !t.streamed && t.origin.is_none());
        // 2020-01-01 < commit timestamp < 2100-01-01, in µs since 2000-01-01.
        assert!((631_152_000_000_000..3_155_760_000_000_000).contains(&t.commit_timestamp));
    }
    assert!(txns[0].commit_lsn < txns[1].commit_lsn);
    // The enum column's type came in a Type message.
    let rel = d.relation(txns[0].relations[0].id).unwrap();
    let mood = rel.columns.iter().find(|c| c.name == "m").unwrap();
    assert_eq!(d.type_info(mood.type_oid).unwrap().name, "mood");
    assert!(rel.columns[0].is_key && !rel.columns[1].is_key);
    assert_eq!(rel.replica_identity, b'd');

    let row = inserted(&txns[0].changes[0]);
    let get = |name: &str| v(row.iter().find(|(n, _)| *n == name).unwrap().1).clone();
    let text = |s: &str| Value::Text(s.to_owned().into());
    assert_eq!(get("id"), Value::Int(1));
    assert_eq!(get("b"), Value::Bool(true));
    assert_eq!(get("i2"), Value::Int(-32768));
    assert_eq!(get("i4"), Value::Int(2147483647));
    assert_eq!(get("i8"), Value::Int(i64::MIN));
    assert_eq!(get("f4"), Value::Float(1.5));
    assert_eq!(get("f8"), Value::Float(std::f64::consts::PI));
    assert_eq!(
        get("num"),
        Value::Numeric("12345678901234.123456".to_owned().into())
    );
    assert_eq!(get("t"), text("h\u{e9}llo, \"world\"\n\ttab"));
    assert_eq!(get("vc"), text("varchar"));
    assert_eq!(get("bp"), text("ab  "));
    assert_eq!(get("ba"), Value::Bytes(vec![0, 0xff, 0x10]));
    assert_eq!(
        get("u"),
        Value::Uuid([
            0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
            0x0a, 0x11
        ])
    );
    assert_eq!(get("d"), Value::Date(date(2024, 2, 29)));
    assert_eq!(get("tm"), Value::Time(time(13, 14, 15, 500_000)));
    assert_eq!(get("ttz"), Value::TimeTz(time(13, 14, 15, 0), 19800));
    assert_eq!(
        get("ts"),
        Value::Timestamp(date(2024, 1, 2), time(3, 4, 5, 6))
    );
    // Sent as 2024-01-01 04:30:00+05:30 (the walsender's time zone), normalised to UTC.
    assert_eq!(
        get("tstz"),
        Value::TimestampTz(date(2023, 12, 31), time(23, 0, 0, 0))
    );
    assert_eq!(
        get("j"),
        Value::Json(r#"{"a": [1, 2.5, null]}"#.to_owned().into())
    );
    assert_eq!(
        get("jb"),
        Value::Json(r#"{"b": {"c": true}}"#.to_owned().into())
    );
    assert_eq!(
        get("ai"),
        Value::Array(vec![Value::Int(1), Value::Null, Value::Int(-3)])
    );
    assert_eq!(
        get("at"),
        Value::Array(vec![
            text("a b"),
            text("c\"d"),
            Value::Null,
            text("NULL"),
            text("e")
        ])
    );
    assert_eq!(
        get("af"),
        Value::Array(vec![Value::Float(1.5), Value::Float(-0.25)])
    );
    assert_eq!(
        get("ad"),
        Value::Array(vec![Value::Date(date(2000, 1, 1)), Value::Null])
    );
    assert_eq!(
        get("atz"),
        Value::Array(vec![Value::TimestampTz(
            date(2024, 6, 1),
            time(12, 0, 0, 0)
        )])
    );
    assert_eq!(get("m"), text("happy"));
    assert_eq!(get("iv"), text("1 day 02:03:04"));

    let row = inserted(&txns[1].changes[0]);
    let get = |name: &str| v(row.iter().find(|(n, _)| *n == name).unwrap().1).clone();
    assert!(matches!(get("f4"), Value::Float(f) if f.is_nan()));
    assert_eq!(get("f8"), Value::Float(f64::NEG_INFINITY));
    assert_eq!(get("num"), Value::Numeric("NaN".to_owned().into()));
    assert_eq!(get("ba"), Value::Bytes(vec![]));
    assert_eq!(get("u"), Value::Uuid([0; 16]));
    assert_eq!(
        get("d"),
        Value::Infinity {
            positive: true,
            of: Scalar::Date
        }
    );
    assert_eq!(get("tm"), Value::Time(time(23, 59, 59, 999_999)));
    assert_eq!(get("ttz"), Value::TimeTz(time(0, 0, 0, 0), -12 * 3600));
    assert_eq!(
        get("ts"),
        Value::Infinity {
            positive: false,
            of: Scalar::Timestamp
        }
    );
    assert_eq!(get("j"), Value::Json("[]".to_owned().into()));
    assert_eq!(get("ai"), Value::Array(vec![]));
    assert_eq!(
        get("at"),
        Value::Array(vec![
            Value::Array(vec![text("x"), text("y")]),
            Value::Array(vec![text("z"), Value::Null])
        ])
    );

    let row = inserted(&txns[2].changes[0]);
    assert_eq!(int(row[0].1), 3);
    assert!(row[1..]
        .iter()
        .all(|(_, d)| **d == Datum::Value(Value::Null)));
}

#[test]
fn changes() {
    let (_, out) = decode("changes.bin");
    let nontx: Vec<_> = out
        .iter()
        .filter_map(|d| match d {
            Decoded::Message(m) => Some(m),
            Decoded::Transaction(_) => None,
        })
        .collect();
    assert_eq!(nontx.len(), 1);
    assert_eq!(
        (nontx[0].prefix.as_str(), &nontx[0].content[..]),
        ("nontx", &b"hello"[..])
    );
    assert!(!nontx[0].transactional);

    let txns = transactions(&out);
    assert_eq!(txns.len(), 10);
    let names =
        |t: &Transaction| -> Vec<String> { t.relations.iter().map(|r| r.name.clone()).collect() };

    // Insert of a TOASTed value, then an update leaving it unchanged.
    let big = inserted(&txns[0].changes[0]);
    assert!(matches!(v(big[2].1), Value::Text(s) if s.len() == 6400));
    let Change::Update { old: None, new, .. } = &txns[1].changes[0] else {
        panic!("{:?}", txns[1].changes[0])
    };
    assert_eq!(int(&new[0]), 1);
    assert_eq!(v(&new[1]), &Value::Text("changed".to_owned().into()));
    assert_eq!(new[2], Datum::UnchangedToast);

    // An update of the key sends the old key.
    let Change::Update {
        old: Some(old),
        new,
        ..
    } = &txns[2].changes[0]
    else {
        panic!("{:?}", txns[2].changes[0])
    };
    assert!(old.key_only);
    assert_eq!(int(&old.row[0]), 1);
    assert_eq!(old.row[1], Datum::Value(Value::Null));
    assert_eq!(int(&new[0]), 10);
    assert_eq!(new[2], Datum::UnchangedToast);

    // REPLICA IDENTITY FULL: the whole old row.
    assert_eq!(txns[3].changes.len(), 2);
    assert_eq!(txns[3].relations[0].replica_identity, b'f');
    let Change::Update {
        old: Some(old),
        new,
        ..
    } = &txns[4].changes[0]
    else {
        panic!()
    };
    assert!(!old.key_only);
    assert_eq!(
        (int(&old.row[0]), v(&old.row[1]), int(&old.row[2])),
        (1, &Value::Text("a".to_owned().into()), 1)
    );
    assert_eq!(int(&new[2]), 11);
    let Change::Delete { old, .. } = &txns[5].changes[0] else {
        panic!()
    };
    assert!(!old.key_only);
    assert_eq!(
        (int(&old.row[0]), &old.row[1]),
        (2, &Datum::Value(Value::Null))
    );
    let Change::Delete { old, .. } = &txns[6].changes[0] else {
        panic!()
    };
    assert!(old.key_only);
    assert_eq!(int(&old.row[0]), 10);

    // Two inserts and a transactional message.
    assert_eq!(names(txns[7]), ["parent", "child"]);
    assert_eq!(txns[7].messages.len(), 1);
    let m = &txns[7].messages[0];
    assert!(m.transactional);
    assert_eq!(m.prefix, "electric.fk_chain_touch");
    assert_eq!(m.content, br#"{"a": 1}"#);
    assert!(m.lsn > 0 && m.lsn <= txns[7].commit_lsn);

    // TRUNCATE parent RESTART IDENTITY CASCADE: both tables, with the options.
    assert_eq!(names(txns[8]), ["parent", "child"]);
    for c in &txns[8].changes {
        assert!(matches!(c, Change::Truncate { options: 3, .. }), "{c:?}");
    }

    // A transaction holding only a message.
    assert!(txns[9].changes.is_empty());
    assert_eq!(txns[9].messages[0].content, b"\x00\xff");
}

#[test]
fn streamed_transaction_with_a_subtransaction_abort() {
    let (d, out) = decode("streamed.bin");
    let txns = transactions(&out);
    assert_eq!(
        txns.len(),
        2,
        "the rolled-back transaction is not delivered"
    );
    // The small transaction committed while the large one was streaming comes first.
    assert_eq!(txns[0].relations[0].name, "small_t");
    assert!(!txns[0].streamed);
    let big = txns[1];
    assert!(big.streamed);
    assert!(big.commit_lsn > txns[0].end_lsn);
    let ids: Vec<i64> = big.changes.iter().map(|c| int(inserted(c)[0].1)).collect();
    let expected: Vec<i64> = (1..=1000).chain(1501..=2000).collect();
    assert_eq!(ids, expected);
    let label = |i: usize| v(inserted(&big.changes[i])[1].1).clone();
    assert_eq!(label(1000), Value::Text("released 1501".to_owned().into()));
    assert_eq!(label(1200), Value::Text("row 1701".to_owned().into()));
    assert_eq!(d.streams_in_progress(), 0);
    assert!(!d.in_transaction());
    // big_t was described inside the stream only; it is known once the stream committed.
    assert_eq!(d.relation(big.relations[0].id).unwrap().name, "big_t");
}

#[test]
fn a_corrupted_byte_is_an_error_with_its_lsn() {
    let mut p = payloads("changes.bin");
    // The first Insert: corrupt its new-tuple marker.
    let i = p
        .iter()
        .position(|p| p.first() == Some(&b'w') && p[25] == b'I')
        .unwrap();
    p[i][30] = b'X';
    let lsn = u64::from_be_bytes(p[i][1..9].try_into().unwrap());
    let mut d = Decoder::new();
    let mut out = Vec::new();
    let e = d
        .decode_into(p.iter().map(Vec::as_slice), &mut out)
        .unwrap_err();
    assert_eq!(e.lsn, Some(lsn));
    assert!(matches!(e.kind, StreamErrorKind::Message(_)), "{e}");
    assert!(
        e.to_string().contains("expected 'N' before the new tuple"),
        "{e}"
    );
}

#[test]
fn every_truncation_of_every_golden_payload_is_an_error_not_a_panic() {
    for name in ["types.bin", "changes.bin"] {
        let p = payloads(name);
        for (i, payload) in p.iter().enumerate() {
            for cut in 0..payload.len() {
                let mut d = Decoder::new();
                let mut out = Vec::new();
                // Everything before, intact, then the cut payload.
                let _ = d.decode_into(p[..i].iter().map(Vec::as_slice), &mut out);
                let _ = d.decode_payload(&payload[..cut], &mut out);
            }
        }
    }
}
