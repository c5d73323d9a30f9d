//! The fold on transactions built by hand (the golden stream is in tests/electric.rs).

use std::sync::Arc;

use super::*;
use crate::pgoutput::{Change, Column, Datum, LogicalMessage, OldRow, Relation, Row, Transaction};
use crate::value::{oid, Kind, Value};

/// A type OID outside pg_catalog (electric.tag and electric.tag[]): decoded as text.
const TAG_OID: u32 = 90_000;

fn rel(id: u32, namespace: &str, name: &str, columns: &[(&str, u32)]) -> Arc<Relation> {
    Arc::new(Relation {
        id,
        namespace: namespace.into(),
        name: name.into(),
        replica_identity: b'f',
        columns: columns
            .iter()
            .map(|&(name, type_oid)| Column {
                name: name.into(),
                type_oid,
                type_modifier: -1,
                is_key: true,
                kind: Kind::of(type_oid),
            })
            .collect(),
    })
}

fn items() -> Arc<Relation> {
    rel(1, "public", "items", &[("id", oid::INT8), ("v", oid::TEXT)])
}

fn shadow_items() -> Arc<Relation> {
    rel(
        2,
        "electric",
        "shadow__public__items",
        &[
            ("_tags", TAG_OID),
            ("_is_a_delete_operation", oid::BOOL),
            ("_tag", TAG_OID),
            ("__reordered_v", oid::TEXT),
            ("id", oid::INT8),
            ("_tag_v", TAG_OID),
        ],
    )
}

fn v(value: Value<'static>) -> Datum {
    Datum::Value(value)
}

fn int(i: i64) -> Datum {
    v(Value::Int(i))
}

fn text(s: &str) -> Datum {
    v(Value::Text(s.to_owned().into()))
}

fn null() -> Datum {
    v(Value::Null)
}

fn row(items: Vec<Datum>) -> Box<[Datum]> {
    items.into_boxed_slice()
}

/// `("<ts>",<source>)` as Postgres prints an electric.tag.
fn tag(ts: &str, source: &str) -> String {
    format!("(\"{ts}\",{source})")
}

/// `{...}` as Postgres prints an electric.tag[] of `tag()`s.
fn tags(items: &[&str]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|t| format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

fn shadow_row(id: i64, tags_text: Option<&str>, tag_text: Option<&str>, delete: bool) -> Row {
    row(vec![
        tags_text.map_or_else(null, text),
        v(Value::Bool(delete)),
        tag_text.map_or_else(null, text),
        null(),
        int(id),
        tag_text.map_or_else(null, text),
    ])
}

fn txn(changes: Vec<Change>, messages: Vec<LogicalMessage>) -> Transaction {
    let mut relations: Vec<Arc<Relation>> = Vec::new();
    for c in &changes {
        if !relations.iter().any(|r| Arc::ptr_eq(r, c.relation())) {
            relations.push(c.relation().clone());
        }
    }
    Transaction {
        xid: 700,
        commit_lsn: 0x1_0000_0010,
        end_lsn: 0x1_0000_0040,
        commit_timestamp: 1_000,
        origin: None,
        changes,
        messages,
        relations,
        streamed: false,
    }
}

fn insert(relation: &Arc<Relation>, new: Row) -> Change {
    Change::Insert {
        relation: relation.clone(),
        new,
    }
}

fn update(relation: &Arc<Relation>, old: Row, new: Row) -> Change {
    Change::Update {
        relation: relation.clone(),
        old: Some(OldRow {
            key_only: false,
            row: old,
        }),
        new,
    }
}

fn delete(relation: &Arc<Relation>, old: Row) -> Change {
    Change::Delete {
        relation: relation.clone(),
        old: OldRow {
            key_only: false,
            row: old,
        },
    }
}

fn message(prefix: &str, content: &str) -> LogicalMessage {
    LogicalMessage {
        lsn: 0x1_0000_0020,
        transactional: true,
        prefix: prefix.into(),
        content: content.as_bytes().to_vec(),
    }
}

fn tag_lists(t: &ElectricTransaction) -> Vec<Vec<String>> {
    t.changes.iter().map(|c| c.tags.to_vec()).collect()
}

const T1: &str = "2024-03-04 05:06:07.891+00";
const T1_MS: i64 = 1_709_528_767_891;
const T2: &str = "2024-03-04 10:36:08.5+05:30";
const T2_MS: i64 = 1_709_528_768_500;

#[test]
fn postgres_write_takes_the_last_shadow_tags_and_its_tag() {
    let (main, shadow) = (items(), shadow_items());
    let t1 = tag(T1, "");
    let t2 = tag(T2, "");
    let t = fold(txn(
        vec![
            // the row trigger's shadow insert, the main insert, then the commit-time fix-up
            insert(
                &shadow,
                shadow_row(1, Some(&tags(&[&t1])), Some(&t1), false),
            ),
            insert(&main, row(vec![int(1), text("a")])),
            insert(&main, row(vec![int(2), text("b")])),
            insert(
                &shadow,
                shadow_row(2, Some(&tags(&[&t1])), Some(&t1), false),
            ),
            update(
                &shadow,
                shadow_row(1, Some(&tags(&[&t1])), Some(&t1), false),
                shadow_row(1, Some(&tags(&[&t2])), Some(&t2), false),
            ),
        ],
        vec![],
    ))
    .unwrap();
    assert_eq!(
        tag_lists(&t),
        [
            vec![format!("postgres_1@{T2_MS}")],
            vec![format!("postgres_1@{T1_MS}")]
        ]
    );
    assert_eq!(t.origin.as_deref(), Some("postgres_1"));
    assert_eq!(t.commit_timestamp, T2_MS * 1000 - tags::PG_EPOCH_UNIX_US);
    assert_eq!(t.relations.len(), 1);
    assert!(Arc::ptr_eq(&t.relations[0], &main));
    assert_eq!(
        (t.xid, t.commit_lsn, t.end_lsn),
        (700, 0x1_0000_0010, 0x1_0000_0040)
    );
}

#[test]
fn client_write_echoes_its_origin_and_time() {
    let (main, shadow) = (items(), shadow_items());
    let c = tag(T2, "client_1");
    let t = fold(txn(
        vec![
            // the main write diverted into the shadow row, the upsert resolving it
            insert(&shadow, shadow_row(1, Some("{}"), None, false)),
            insert(&main, row(vec![int(1), text("a")])),
            update(
                &shadow,
                shadow_row(1, Some("{}"), None, false),
                shadow_row(1, Some(&tags(&[&c])), Some(&c), false),
            ),
        ],
        vec![],
    ))
    .unwrap();
    assert_eq!(tag_lists(&t), [vec![format!("client_1@{T2_MS}")]]);
    assert_eq!(t.origin.as_deref(), Some("client_1"));
    assert_eq!(t.commit_timestamp, T2_MS * 1000 - tags::PG_EPOCH_UNIX_US);
}

#[test]
fn deletes_and_truncates_have_no_tags() {
    let (main, shadow) = (items(), shadow_items());
    let t1 = tag(T1, "");
    let t = fold(txn(
        vec![
            update(
                &shadow,
                shadow_row(1, Some(&tags(&[&t1])), Some(&t1), false),
                shadow_row(1, Some(&tags(&[&t1])), Some(&t1), true),
            ),
            delete(&main, row(vec![int(1), text("a")])),
            Change::Truncate {
                relation: main.clone(),
                options: 0,
            },
            // a shadow delete is not a write that counts
            delete(
                &shadow,
                shadow_row(1, Some("{}"), Some(&tag(T2, "x")), false),
            ),
        ],
        vec![],
    ))
    .unwrap();
    assert_eq!(tag_lists(&t), [Vec::<String>::new(), vec![]]);
    // the delete-flagged shadow update is still a shadow write (not a DELETE): its tag counts
    assert_eq!(t.origin.as_deref(), Some("postgres_1"));
    assert_eq!(t.commit_timestamp, T1_MS * 1000 - tags::PG_EPOCH_UNIX_US);
}

#[test]
fn without_shadow_writes_nothing_is_overridden() {
    let main = items();
    let mut input = txn(vec![insert(&main, row(vec![int(1), text("a")]))], vec![]);
    input.origin = Some("elsewhere".into());
    let t = fold(input).unwrap();
    assert_eq!(tag_lists(&t), [Vec::<String>::new()]);
    assert_eq!(t.origin.as_deref(), Some("elsewhere"));
    assert_eq!(t.commit_timestamp, 1_000);
}

#[test]
fn empty_and_bookkeeping_only_transactions_are_kept() {
    let t = fold(txn(vec![], vec![])).unwrap();
    assert!(t.changes.is_empty() && t.relations.is_empty() && t.marker.is_none());
    assert_eq!(t.end_lsn, 0x1_0000_0040);

    let acks = rel(
        3,
        "electric",
        "acknowledged_client_lsns",
        &[("client_id", oid::TEXT), ("lsn", oid::BYTEA)],
    );
    let tomb = rel(
        4,
        "electric",
        "tombstone__public__items",
        &[("id", oid::INT8)],
    );
    let marker = rel(
        5,
        "electric",
        "transaction_marker",
        &[("id", oid::VARCHAR), ("content", oid::JSONB)],
    );
    let json = |s: &str| v(Value::Json(s.to_owned().into()));
    let t = fold(txn(
        vec![
            insert(&acks, row(vec![text("c"), v(Value::Bytes(vec![1]))])),
            insert(&tomb, row(vec![int(1)])),
            update(
                &marker,
                row(vec![text("cluster_id"), json("\"u\"")]),
                row(vec![text("cluster_id"), json("\"v\"")]),
            ),
            update(
                &marker,
                row(vec![text("magic write"), json("{}")]),
                row(vec![text("magic write"), json(r#"{"xid": "9"}"#)]),
            ),
        ],
        vec![],
    ))
    .unwrap();
    assert!(t.changes.is_empty() && t.relations.is_empty());
    assert_eq!(t.marker.as_deref(), Some(r#"{"xid": "9"}"#));
}

#[test]
fn migrations_and_electrified_tables() {
    let ddl = rel(
        6,
        "electric",
        "ddl_commands",
        &[
            ("id", oid::INT8),
            ("txid", oid::XID8),
            ("txts", oid::INT8),
            ("query", oid::TEXT),
        ],
    );
    let electrified = rel(
        7,
        "electric",
        "electrified",
        &[
            ("id", oid::INT8),
            ("schema_name", oid::TEXT),
            ("table_name", oid::TEXT),
        ],
    );
    let t = fold(txn(
        vec![
            insert(
                &ddl,
                row(vec![int(1), int(761), int(5), text("CREATE TABLE a ()")]),
            ),
            insert(&electrified, row(vec![int(1), text("public"), text("a")])),
            insert(
                &ddl,
                row(vec![int(2), int(761), int(5), text("CREATE INDEX")]),
            ),
        ],
        vec![],
    ))
    .unwrap();
    assert_eq!(
        t.ddl,
        [
            Ddl {
                txid: 761,
                txts: 5,
                query: "CREATE TABLE a ()".into()
            },
            Ddl {
                txid: 761,
                txts: 5,
                query: "CREATE INDEX".into()
            }
        ]
    );
    assert_eq!(t.electrified, [("public".into(), "a".into())]);

    let err = fold(txn(
        vec![insert(&ddl, row(vec![int(1), null(), int(5), text("x")]))],
        vec![],
    ))
    .unwrap_err();
    assert!(matches!(err.kind, FoldErrorKind::Row { .. }), "{err}");
}

#[test]
fn referenced_records_and_other_messages() {
    let touch = concat!(
        r#"{"schema" : "public", "table" : "parent", "#,
        r#""tags" : "{\"(\\\"2026-11-26 11:37:57.443+00\\\",)\"}", "#,
        r#""data" : {"id" : "1", "name" : null, "a" : "x"}, "pk" : ["1"]}"#
    );
    let t = fold(txn(
        vec![],
        vec![message("other", "x"), message(FK_CHAIN_TOUCH, touch)],
    ))
    .unwrap();
    assert_eq!(t.other_messages, 1);
    assert_eq!(
        t.referenced,
        [ReferencedRecord {
            schema: "public".into(),
            table: "parent".into(),
            pk: vec!["1".into()],
            data: vec![
                ("id".into(), Some("1".into())),
                ("name".into(), None),
                ("a".into(), Some("x".into()))
            ],
            tags: vec!["postgres_1@1795693077443".to_owned()].into(),
        }]
    );
    for bad in [
        "not json",
        r#"{"schema": "public"}"#,
        r#"{"schema": "s", "table": "t", "tags": "{}", "data": {"a": 1}, "pk": []}"#,
        r#"{"schema": "s", "table": "t", "tags": "{x}", "data": {}, "pk": []}"#,
    ] {
        let err = fold(txn(vec![], vec![message(FK_CHAIN_TOUCH, bad)])).unwrap_err();
        assert!(matches!(err.kind, FoldErrorKind::Touch { .. }), "{bad}");
        assert!(err.to_string().contains("LSN 1/20"), "{err}");
    }
}

#[test]
fn composite_keys_and_unchanged_toast() {
    let main = rel(
        8,
        "public",
        "pairs",
        &[("a", oid::TEXT), ("b", oid::INT4), ("big", oid::TEXT)],
    );
    let shadow = rel(
        9,
        "electric",
        "shadow__public__pairs",
        &[
            ("_tags", TAG_OID),
            ("_tag", TAG_OID),
            ("a", oid::TEXT),
            ("b", oid::INT4),
        ],
    );
    let s = |a: &str, b: i64, source: &str| {
        let t = tag(T1, source);
        row(vec![text(&tags(&[&t])), text(&t), text(a), int(b)])
    };
    let t = fold(txn(
        vec![
            insert(&shadow, s("x", 1, "one")),
            insert(&shadow, s("x", 2, "two")),
            insert(&shadow, s("x1", 1, "three")),
            update(
                &main,
                row(vec![text("x"), int(2), text("long")]),
                // a TOASTed key column left unchanged: taken from the old row
                row(vec![Datum::UnchangedToast, int(2), text("v")]),
            ),
            insert(&main, row(vec![text("x1"), int(1), null()])),
            insert(&main, row(vec![text("x"), int(1), null()])),
            insert(&main, row(vec![text("y"), int(1), null()])),
        ],
        vec![],
    ))
    .unwrap();
    assert_eq!(
        tag_lists(&t),
        [
            vec![format!("two@{T1_MS}")],
            vec![format!("three@{T1_MS}")],
            vec![format!("one@{T1_MS}")],
            vec![]
        ]
    );
    // the last shadow write names the transaction's writer
    assert_eq!(t.origin.as_deref(), Some("three"));
}

#[test]
fn bad_tags_are_errors_with_the_transaction() {
    let (main, shadow) = (items(), shadow_items());
    let err = fold(txn(
        vec![
            insert(
                &shadow,
                shadow_row(1, Some("{\"(bad,)\"}"), Some(&tag(T1, "")), false),
            ),
            insert(&main, row(vec![int(1), text("a")])),
        ],
        vec![],
    ))
    .unwrap_err();
    assert_eq!((err.xid, err.commit_lsn), (700, 0x1_0000_0010));
    assert!(
        err.to_string()
            .starts_with("transaction 700 committed at LSN 1/10: bad tag in electric.shadow__public__items._tags"),
        "{err}"
    );
    let err = fold(txn(
        vec![insert(
            &shadow,
            shadow_row(1, Some("{}"), Some("(x,)"), false),
        )],
        vec![],
    ))
    .unwrap_err();
    assert!(err.to_string().contains("._tag:"), "{err}");
}
