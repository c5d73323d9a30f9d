//! The fold on a stream captured from PostgreSQL 18 with the electric schema installed
//! (testdata/electric.bin, written by scripts/capture_electric.py, whose workload this follows).

use std::path::Path;

use electric_core::electric::{fold, ElectricTransaction, PG_EPOCH_UNIX_US};
use electric_core::pgoutput::{Change, Datum, Decoded, Decoder};
use electric_core::value::Value;

fn folded() -> Vec<ElectricTransaction> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/electric.bin");
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut payloads = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let n = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        payloads.push(&data[pos + 4..pos + 4 + n]);
        pos += 4 + n;
    }
    let mut out = Vec::new();
    Decoder::new()
        .decode_into(payloads.iter().copied(), &mut out)
        .unwrap();
    out.into_iter()
        .filter_map(|d| match d {
            Decoded::Transaction(t) => Some(fold(t).unwrap()),
            Decoded::Message(_) => None,
        })
        .collect()
}

/// (kind, table, id, tags) of each change.
fn summary(t: &ElectricTransaction) -> Vec<(&'static str, String, i64, Vec<String>)> {
    t.changes
        .iter()
        .map(|c| {
            let (kind, row) = match &c.change {
                Change::Insert { new, .. } => ("insert", new),
                Change::Update { new, .. } => ("update", new),
                Change::Delete { old, .. } => ("delete", &old.row),
                Change::Truncate { .. } => panic!("no truncate here"),
            };
            let Datum::Value(Value::Int(id)) = row[0] else {
                panic!("id first")
            };
            (kind, c.change.relation().name.clone(), id, c.tags.to_vec())
        })
        .collect()
}

fn commit_ms(t: &ElectricTransaction) -> i64 {
    assert_eq!(t.commit_timestamp % 1000, 0, "tag times are in ms");
    (t.commit_timestamp + PG_EPOCH_UNIX_US) / 1000
}

#[test]
fn golden_electric_stream() {
    let txns = folded();
    assert_eq!(txns.len(), 8);
    let [pg, del, child, c1, c2, migration, magic, ack] = &txns[..] else {
        unreachable!()
    };

    // 1. A Postgres write: the unpublished table is absent, both rows carry the
    // transaction's tag, which also gives the transaction its writer and time.
    let ms = commit_ms(pg);
    let pg_tag = vec![format!("postgres_1@{ms}")];
    assert_eq!(
        summary(pg),
        [
            ("insert", "parent".into(), 2, pg_tag.clone()),
            ("update", "parent".into(), 1, pg_tag.clone())
        ]
    );
    assert_eq!(pg.origin.as_deref(), Some("postgres_1"));
    assert_eq!(
        pg.relations
            .iter()
            .map(|r| (r.namespace.as_str(), r.name.as_str()))
            .collect::<Vec<_>>(),
        [("public", "parent")]
    );

    // 2. A delete has no tags.
    assert_eq!(summary(del), [("delete", "parent".into(), 2, vec![])]);
    assert_eq!(del.origin.as_deref(), Some("postgres_1"));
    assert!(commit_ms(del) >= ms);

    // 3. A child of an existing parent: the parent is a referenced record.
    let ms3 = commit_ms(child);
    assert_eq!(
        summary(child),
        [(
            "insert",
            "child".into(),
            10,
            vec![format!("postgres_1@{ms3}")]
        )]
    );
    let [parent] = &child.referenced[..] else {
        panic!("{:?}", child.referenced)
    };
    assert_eq!(
        (parent.schema.as_str(), parent.table.as_str()),
        ("public", "parent")
    );
    assert_eq!(parent.pk, ["1"]);
    assert_eq!(
        parent.data,
        [
            ("id".to_owned(), Some("1".to_owned())),
            ("name".to_owned(), Some("uno".to_owned()))
        ]
    );
    assert_eq!(parent.tags.to_vec(), pg_tag);

    // 4. Client writes come back with the client's id and commit time.
    assert_eq!(
        summary(c1),
        [(
            "insert",
            "parent".into(),
            3,
            vec!["client_1@1709528767891".to_owned()]
        )]
    );
    assert_eq!(c1.origin.as_deref(), Some("client_1"));
    assert_eq!(commit_ms(c1), 1_709_528_767_891);
    assert_eq!(
        summary(c2),
        [(
            "insert",
            "parent".into(),
            4,
            vec![r#"odd "src",\x@1709521568500"#.to_owned()]
        )]
    );
    assert_eq!(c2.origin.as_deref(), Some(r#"odd "src",\x"#));

    // 5. A migration: its DDL and the electrified table, no changes.
    assert!(migration.changes.is_empty() && migration.relations.is_empty());
    let [ddl] = &migration.ddl[..] else {
        panic!("{:?}", migration.ddl)
    };
    assert_eq!(ddl.txid, migration.xid as i64);
    assert!(
        ddl.query.starts_with("CREATE TABLE public.later ("),
        "{}",
        ddl.query
    );
    assert_eq!(migration.electrified, [("public".into(), "later".into())]);
    assert_eq!(migration.origin, None);

    // 6. The magic write.
    let marker: serde_json::Value = serde_json::from_str(magic.marker.as_deref().unwrap()).unwrap();
    assert_eq!(marker["caused_by"], "subscription:s1");
    assert_eq!(marker["xid"], magic.xid.to_string());
    assert!(magic.changes.is_empty());

    // 7. Bookkeeping and another message only: kept, empty.
    assert!(ack.changes.is_empty() && ack.referenced.is_empty() && ack.marker.is_none());
    assert_eq!(ack.other_messages, 1);
    assert!(txns.windows(2).all(|w| w[0].end_lsn < w[1].end_lsn));
}
