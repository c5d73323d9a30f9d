//! The sent-rows graph on hand-made transactions: what a client gets of each change.

use std::sync::Arc;

use super::graph::{LayerSpec, PlanOp, ShapeGraph};
use super::ColumnDef;
use crate::electric::{ElectricChange, ElectricTransaction, ReferencedRecord};
use crate::pgoutput::{Change, Column, Datum, OldRow, Relation};
use crate::value::{oid, Kind, Value};

const PROJECTS: u32 = 100;
const ISSUES: u32 = 200;

fn relation(id: u32, name: &str, cols: &[(&str, u32)]) -> Arc<Relation> {
    Arc::new(Relation {
        id,
        namespace: "public".into(),
        name: name.into(),
        replica_identity: b'f',
        columns: cols
            .iter()
            .map(|(n, t)| Column {
                name: (*n).into(),
                type_oid: *t,
                type_modifier: -1,
                is_key: true,
                kind: Kind::of(*t),
            })
            .collect(),
    })
}

fn projects() -> Arc<Relation> {
    relation(
        PROJECTS,
        "projects",
        &[("id", oid::TEXT), ("name", oid::TEXT)],
    )
}

fn issues() -> Arc<Relation> {
    relation(
        ISSUES,
        "issues",
        &[
            ("id", oid::TEXT),
            ("project_id", oid::TEXT),
            ("owner", oid::TEXT),
        ],
    )
}

fn row(values: &[Option<&str>]) -> Box<[Datum]> {
    values
        .iter()
        .map(|v| {
            Datum::Value(match v {
                Some(s) => Value::Text((*s).to_owned().into()),
                None => Value::Null,
            })
        })
        .collect()
}

fn insert(rel: &Arc<Relation>, values: &[Option<&str>]) -> ElectricChange {
    ElectricChange {
        change: Change::Insert {
            relation: rel.clone(),
            new: row(values),
        },
        tags: Arc::from(vec!["postgres_1@1".to_owned()]),
    }
}

fn update(rel: &Arc<Relation>, old: &[Option<&str>], new: &[Option<&str>]) -> ElectricChange {
    ElectricChange {
        change: Change::Update {
            relation: rel.clone(),
            old: Some(OldRow {
                key_only: false,
                row: row(old),
            }),
            new: row(new),
        },
        tags: Arc::from(vec!["postgres_1@2".to_owned()]),
    }
}

fn delete(rel: &Arc<Relation>, old: &[Option<&str>]) -> ElectricChange {
    ElectricChange {
        change: Change::Delete {
            relation: rel.clone(),
            old: OldRow {
                key_only: false,
                row: row(old),
            },
        },
        tags: Arc::from(Vec::<String>::new()),
    }
}

fn txn(end_lsn: u64, changes: Vec<ElectricChange>) -> ElectricTransaction {
    ElectricTransaction {
        xid: end_lsn as u32,
        commit_lsn: end_lsn,
        end_lsn,
        commit_timestamp: 0,
        origin: None,
        changes,
        relations: vec![],
        ddl: vec![],
        marker: None,
        electrified: vec![],
        referenced: vec![],
        other_messages: 0,
        streamed: false,
    }
}

fn graph(user: Option<&str>) -> ShapeGraph {
    let mut g = ShapeGraph::new(user.map(str::to_owned));
    let p = [
        ColumnDef::new("id", oid::TEXT),
        ColumnDef::new("name", oid::TEXT),
    ];
    let i = [
        ColumnDef::new("id", oid::TEXT),
        ColumnDef::new("project_id", oid::TEXT),
        ColumnDef::new("owner", oid::TEXT),
    ];
    g.define_table("public", "projects", PROJECTS, &p, &["id".into()], None)
        .unwrap();
    g.define_table(
        "public",
        "issues",
        ISSUES,
        &i,
        &["id".into()],
        Some("owner"),
    )
    .unwrap();
    g
}

fn layer(g: &mut ShapeGraph, sub: &str, table: &str, clause: &str, parent: Option<usize>) -> usize {
    let cols: Vec<ColumnDef> = match table {
        "projects" => vec![
            ColumnDef::new("id", oid::TEXT),
            ColumnDef::new("name", oid::TEXT),
        ],
        _ => vec![
            ColumnDef::new("id", oid::TEXT),
            ColumnDef::new("project_id", oid::TEXT),
            ColumnDef::new("owner", oid::TEXT),
        ],
    };
    let spec = LayerSpec {
        subscription: sub.into(),
        schema: "public".into(),
        table: table.into(),
        where_clause: clause.into(),
        parent,
        fk: if parent.is_some() {
            vec!["project_id".into()]
        } else {
            vec![]
        },
        holds_fk: parent.is_some(),
    };
    g.add_layer(&spec, &cols).unwrap()
}

/// A layer of the projects the rows of layer `root` (issues) reference (many-to-one: the
/// issue holds the key), in subscription `sub`.
fn parents_layer(g: &mut ShapeGraph, sub: &str, root: usize) -> usize {
    let spec = LayerSpec {
        subscription: sub.into(),
        schema: "public".into(),
        table: "projects".into(),
        where_clause: String::new(),
        parent: Some(root),
        fk: vec!["project_id".into()],
        holds_fk: false,
    };
    let cols = [
        ColumnDef::new("id", oid::TEXT),
        ColumnDef::new("name", oid::TEXT),
    ];
    g.add_layer(&spec, &cols).unwrap()
}

/// `(kind, first value)` of each op of a plan.
fn kinds(ops: &[PlanOp], t: &ElectricTransaction) -> Vec<(&'static str, String)> {
    ops.iter()
        .map(|op| {
            let (kind, values) = match op {
                PlanOp::Change(i) => match &t.changes[*i].change {
                    Change::Insert { new, .. } => ("insert", new.clone()),
                    Change::Update { new, .. } => ("update", new.clone()),
                    Change::Delete { old, .. } => ("delete", old.row.clone()),
                    Change::Truncate { .. } => ("truncate", row(&[])),
                },
                PlanOp::Insert { row, .. } => ("insert", row.clone()),
                PlanOp::Gone { row, .. } => ("gone", row.clone()),
            };
            let first = match &values[0] {
                Datum::Value(Value::Text(s)) => s.to_string(),
                other => format!("{other:?}"),
            };
            (kind, first)
        })
        .collect()
}

fn s(kind: &'static str, v: &str) -> (&'static str, String) {
    (kind, v.to_owned())
}

#[test]
fn a_where_clause_decides_inserts_moves_and_gones() {
    let mut g = graph(None);
    layer(&mut g, "s", "projects", "this.name LIKE 'a%'", None);
    let p = projects();
    let t = txn(
        1,
        vec![
            insert(&p, &[Some("1"), Some("alpha")]),
            insert(&p, &[Some("2"), Some("beta")]),
        ],
    );
    assert_eq!(kinds(&g.process(&t).ops, &t), [s("insert", "1")]);
    let t = txn(
        2,
        vec![
            update(&p, &[Some("1"), Some("alpha")], &[Some("1"), Some("zeta")]),
            update(&p, &[Some("2"), Some("beta")], &[Some("2"), Some("apple")]),
            update(
                &p,
                &[Some("2"), Some("apple")],
                &[Some("2"), Some("avocado")],
            ),
        ],
    );
    assert_eq!(
        kinds(&g.process(&t).ops, &t),
        [s("gone", "1"), s("insert", "2"), s("update", "2")]
    );
    let t = txn(3, vec![delete(&p, &[Some("1"), Some("zeta")])]);
    assert!(g.process(&t).is_empty(), "the client does not have row 1");
    let t = txn(4, vec![delete(&p, &[Some("2"), Some("avocado")])]);
    assert_eq!(kinds(&g.process(&t).ops, &t), [s("delete", "2")]);
    assert!(g.is_empty());
}

#[test]
fn children_follow_their_parent_in_and_out() {
    let mut g = graph(None);
    let root = layer(&mut g, "s", "projects", "this.name = 'mine'", None);
    layer(&mut g, "s", "issues", "", Some(root));
    let (p, i) = (projects(), issues());
    let t = txn(
        1,
        vec![
            insert(&p, &[Some("p1"), Some("mine")]),
            insert(&p, &[Some("p2"), Some("other")]),
            insert(&i, &[Some("i1"), Some("p1"), None]),
            insert(&i, &[Some("i2"), Some("p2"), None]),
        ],
    );
    assert_eq!(
        kinds(&g.process(&t).ops, &t),
        [s("insert", "p1"), s("insert", "i1")]
    );
    // An issue moved to the other project leaves; the other project becoming "mine" brings
    // it in, with its children to fetch.
    let t = txn(
        2,
        vec![update(
            &i,
            &[Some("i1"), Some("p1"), None],
            &[Some("i1"), Some("p2"), None],
        )],
    );
    assert_eq!(kinds(&g.process(&t).ops, &t), [s("gone", "i1")]);
    let t = txn(
        3,
        vec![update(
            &p,
            &[Some("p2"), Some("other")],
            &[Some("p2"), Some("mine")],
        )],
    );
    let plan = g.process(&t);
    assert_eq!(kinds(&plan.ops, &t), [s("insert", "p2")]);
    assert_eq!(plan.move_ins.len(), 1);
    assert_eq!(plan.move_ins[0].keys, [vec!["p2".to_owned()]]);
    // The move-in rows arrive; the parent leaving takes them along.
    let child_layer = plan.move_ins[0].layer;
    g.add_rows(
        child_layer,
        vec![
            (
                Arc::from(vec![]),
                vec![Some("i1".into()), Some("p2".into()), None],
            ),
            (
                Arc::from(vec![]),
                vec![Some("i2".into()), Some("p2".into()), None],
            ),
        ],
        false,
    );
    assert_eq!(g.take_data().len(), 2);
    let t = txn(
        4,
        vec![update(
            &p,
            &[Some("p2"), Some("mine")],
            &[Some("p2"), Some("gone")],
        )],
    );
    let mut got = kinds(&g.process(&t).ops, &t);
    got[1..].sort();
    assert_eq!(got, [s("gone", "p2"), s("gone", "i1"), s("gone", "i2")]);
    assert_eq!(g.len(), 1); // p1
}

#[test]
fn referenced_parents_come_with_a_new_child() {
    let mut g = graph(None);
    let root = layer(&mut g, "s", "issues", "", None);
    parents_layer(&mut g, "s", root);
    let i = issues();
    let mut t = txn(1, vec![insert(&i, &[Some("i1"), Some("p9"), None])]);
    t.referenced.push(ReferencedRecord {
        schema: "public".into(),
        table: "projects".into(),
        pk: vec!["p9".into()],
        data: vec![
            ("id".into(), Some("p9".into())),
            ("name".into(), Some("n".into())),
        ],
        tags: Arc::from(vec!["postgres_1@0".to_owned()]),
    });
    let plan = g.process(&t);
    assert_eq!(kinds(&plan.ops, &t), [s("insert", "i1"), s("insert", "p9")]);
    // Without the record (not in the transaction), the parent is a move-in to fetch.
    let t = txn(2, vec![insert(&i, &[Some("i2"), Some("p8"), None])]);
    let plan = g.process(&t);
    assert_eq!(kinds(&plan.ops, &t), [s("insert", "i2")]);
    assert_eq!(plan.move_ins[0].keys, [vec!["p8".to_owned()]]);
}

#[test]
fn the_ownership_rule() {
    let mut g = graph(Some("alice"));
    layer(&mut g, "s", "issues", "", None);
    let i = issues();
    let t = txn(
        1,
        vec![
            insert(&i, &[Some("1"), None, Some("alice")]),
            insert(&i, &[Some("2"), None, Some("bob")]),
            insert(&i, &[Some("3"), None, None]),
            insert(&i, &[Some("4"), None, Some("")]),
        ],
    );
    assert_eq!(
        kinds(&g.process(&t).ops, &t),
        [s("insert", "1"), s("insert", "3"), s("insert", "4")]
    );
}

#[test]
fn rollback_and_export_take_the_graph_back_to_a_position() {
    let mut g = graph(None);
    layer(&mut g, "s", "projects", "", None);
    let p = projects();
    for (lsn, change) in [
        (10, insert(&p, &[Some("1"), Some("a")])),
        (20, insert(&p, &[Some("2"), Some("b")])),
        (30, delete(&p, &[Some("1"), Some("a")])),
    ] {
        let t = txn(lsn, vec![change]);
        g.begin_step(lsn);
        g.process(&t);
    }
    assert!(!g.contains("public", "projects", &["1"]));
    g.acknowledge(10);
    let stored = g.export();
    g.rollback(20);
    assert!(g.contains("public", "projects", &["1"]));
    assert!(g.contains("public", "projects", &["2"]));
    g.rollback(10);
    assert!(!g.contains("public", "projects", &["2"]));
    // The stored graph, journal included, in a new graph with the same layers.
    let mut h = graph(None);
    layer(&mut h, "s", "projects", "", None);
    assert_eq!(h.import(&stored).unwrap(), 1);
    assert!(!h.contains("public", "projects", &["1"]));
    h.rollback(10);
    assert!(h.contains("public", "projects", &["1"]));
    assert_eq!(h.len(), 1);
    assert!(h.import(&[1, 2]).is_err());
}

#[test]
fn steps_that_change_nothing_do_not_pile_up() {
    let mut g = graph(None);
    layer(&mut g, "s", "projects", "", None);
    let (p, i) = (projects(), issues());
    g.begin_step(10);
    g.process(&txn(10, vec![insert(&p, &[Some("1"), Some("a")])]));
    // Transactions of a table no layer is on, never acknowledged: nothing to undo, so nothing
    // kept per transaction (a client idle on one table while another is written).
    let mut sizes = Vec::new();
    for lsn in (20..2000).step_by(10) {
        g.begin_step(lsn);
        g.process(&txn(lsn, vec![insert(&i, &[Some("x"), Some("1"), None])]));
        sizes.push(g.export().len());
    }
    assert!(sizes.windows(2).all(|w| w[0] == w[1]), "{sizes:?}");
    g.begin_step(3000);
    g.process(&txn(3000, vec![insert(&p, &[Some("2"), Some("b")])]));
    g.rollback(1990);
    assert!(g.contains("public", "projects", &["1"]));
    assert!(!g.contains("public", "projects", &["2"]));
    g.rollback(5);
    assert!(!g.contains("public", "projects", &["1"]));
}

#[test]
fn unsubscribing_queues_gones_for_rows_no_other_subscription_holds() {
    let mut g = graph(None);
    layer(&mut g, "a", "projects", "this.name = 'x'", None);
    layer(&mut g, "b", "projects", "", None);
    let p = projects();
    let t = txn(
        1,
        vec![
            insert(&p, &[Some("1"), Some("x")]),
            insert(&p, &[Some("2"), Some("y")]),
        ],
    );
    g.process(&t);
    assert_eq!(g.remove_subscription("a"), 0, "both rows are still in b");
    assert_eq!(g.remove_subscription("b"), 2);
    assert_eq!(g.take_data().len(), 2);
    assert!(g.is_empty());
}

#[test]
fn rows_added_in_parts_give_what_they_give_at_once() {
    let mut rows = super::text_rows::TextRows::new(2);
    for i in 0..7 {
        rows.push_line(format!("\\N\tp{i}\tname {i}\n").as_bytes())
            .unwrap();
    }
    let t = txn(1, vec![]);
    let mut whole = graph(None);
    let l = layer(&mut whole, "s", "projects", "this.id <> 'p3'", None);
    whole.add_text_rows(l, &rows, false);
    let mut parts = graph(None);
    let l = layer(&mut parts, "s", "projects", "this.id <> 'p3'", None);
    for start in (0..rows.len()).step_by(3) {
        parts.add_text_rows_range(l, &rows, start..start + 3, false);
    }
    parts.add_text_rows_range(l, &rows, 9..20, false); // past the end: nothing
    let expected = ["p0", "p1", "p2", "p4", "p5", "p6"].map(|p| s("insert", p));
    assert_eq!(kinds(&whole.take_data(), &t), expected);
    assert_eq!(kinds(&parts.take_data(), &t), expected);
    assert_eq!(parts.len(), whole.len());
}

/// The typed table of the framing test: every kind of value the framer copies or converts.
fn typed_graph(clause: &str) -> (ShapeGraph, usize) {
    let cols = [
        ColumnDef::new("id", oid::UUID),
        ColumnDef::new("title", oid::TEXT),
        ColumnDef::new("n", oid::INT4),
        ColumnDef::new("big", oid::INT8),
        ColumnDef::new("amount", oid::FLOAT8),
        ColumnDef::new("ratio", oid::FLOAT4),
        ColumnDef::new("done", oid::BOOL),
        ColumnDef::new("created", oid::TIMESTAMPTZ),
        ColumnDef::new("day", oid::DATE),
        ColumnDef::new("at", oid::TIME),
        ColumnDef::new("local", oid::TIMESTAMP),
        ColumnDef::new("raw", oid::BYTEA),
        ColumnDef::new("doc", oid::JSONB),
        ColumnDef::new("owner", oid::TEXT),
    ];
    let mut g = ShapeGraph::new(Some("me".into()));
    g.define_table("public", "typed", 300, &cols, &["id".into()], Some("owner"))
        .unwrap();
    let spec = LayerSpec {
        subscription: "s".into(),
        schema: "public".into(),
        table: "typed".into(),
        where_clause: clause.into(),
        parent: None,
        fk: vec![],
        holds_fk: false,
    };
    let l = g.add_layer(&spec, &cols).unwrap();
    (g, l)
}

#[test]
fn framed_rows_are_the_frames_of_the_queued_rows() {
    use crate::satellite::{push_ws_header, Bracket, DataFramer, OplogEncoder};
    let mut rows = super::text_rows::TextRows::new(14);
    for i in 0..23 {
        let owner = match i % 4 {
            0 => "\\N",
            1 => "me",
            2 => "someone else",
            _ => "",
        };
        let line = format!(
            "{{\"(\\\\\"1970-01-01 00:00:00.{i:03}+00\\\\\",)\",\"(\\\\\"1970-01-01 00:00:00.002+00\\\\\",\\\\\"x y\\\\\")\"}}\t{i:08x}-0000-4000-8000-00000000000{}\ttitle\\t{i} é\t{}\t{}\t{}\t{}\t{}\t2024-01-0{} 00:00:0{}.25+00\t2024-02-03\t10:11:12.5\t2024-01-01 00:00:00\t\\\\x00ff{i:02x}\t{{\"a\": {i}}}\t{owner}\n",
            i % 10,
            i - 11,
            i64::MAX - i,
            if i % 5 == 0 { "\\N".to_owned() } else { format!("{}", i as f64 * 0.1) },
            if i == 3 { "Infinity".to_owned() } else { format!("{}", i as f32 / 3.0) },
            // `done::text`, as the shape query reads it
            if i % 2 == 0 { "true" } else { "false" },
            1 + i % 9,
            i % 10,
        );
        rows.push_line(line.as_bytes()).unwrap();
    }
    for clause in ["", "this.n > -5"] {
        // Queued, then encoded as before: frames of 4 ops, each framed.
        let (mut queued, l) = typed_graph(clause);
        queued.add_text_rows(l, &rows, false);
        let data = queued.take_data();
        let mut expected = Vec::new();
        let mut encoder = OplogEncoder::new();
        for chunk in data.chunks(4) {
            let frame = encoder
                .encode(&Bracket::None, chunk.iter().filter_map(PlanOp::data_op))
                .unwrap();
            push_ws_header(&mut expected, frame.len());
            expected.extend_from_slice(&frame);
        }
        // Framed from the text, in parts of 5 rows.
        let (mut framed, l) = typed_graph(clause);
        let mut framer = DataFramer::new(4);
        let mut got = Vec::new();
        for start in (0..rows.len()).step_by(5) {
            framed
                .add_text_rows_framed(l, &rows, start..start + 5, false, &mut framer)
                .unwrap();
            got.extend(framer.take_closed());
        }
        got.extend(framer.finish());
        assert!(!data.is_empty() && data.len() < rows.len(), "{clause}");
        assert_eq!(framer.ops(), data.len());
        assert_eq!(got, expected, "{clause}");
        assert_eq!(framed.len(), queued.len());
        assert!(framed.take_data().is_empty());
    }
}

/// The same changes, one graph logging them (its log taken in pieces, the base exported
/// midway when `base_at` says so).
fn logged_run(g: &mut ShapeGraph, base_at: bool) -> (Option<Vec<u8>>, Vec<Vec<u8>>) {
    let (p, i) = (projects(), issues());
    let mut pieces = Vec::new();
    let mut base = None;
    g.begin_step(1);
    g.process(&txn(
        1,
        vec![
            insert(&p, &[Some("p1"), Some("mine")]),
            insert(&p, &[Some("p2"), Some("other")]),
            insert(&i, &[Some("i1"), Some("p1"), None]),
            insert(&i, &[Some("i2"), Some("p2"), None]),
        ],
    ));
    pieces.push(g.take_log());
    g.begin_step(2);
    g.process(&txn(
        2,
        vec![update(
            &i,
            &[Some("i1"), Some("p1"), None],
            &[Some("i1"), Some("p2"), None],
        )],
    ));
    g.begin_step(3);
    let plan = g.process(&txn(
        3,
        vec![update(
            &p,
            &[Some("p2"), Some("other")],
            &[Some("p2"), Some("mine")],
        )],
    ));
    // The move-in's rows, added in two parts with a piece taken between them.
    let children = |id: &str| {
        (
            Arc::from(vec![]),
            vec![Some(id.into()), Some("p2".into()), None],
        )
    };
    g.add_rows(plan.move_ins[0].layer, vec![children("i1")], false);
    pieces.push(g.take_log());
    g.add_rows(plan.move_ins[0].layer, vec![children("i2")], false);
    g.take_data();
    g.acknowledge(1);
    if base_at {
        base = Some(g.export_base());
        pieces.clear();
    }
    g.begin_step(4);
    g.process(&txn(
        4,
        vec![update(
            &p,
            &[Some("p2"), Some("mine")],
            &[Some("p2"), Some("gone")],
        )],
    ));
    g.begin_step(5);
    g.remove_subscription("t");
    g.process(&txn(5, vec![insert(&p, &[Some("p3"), Some("mine")])]));
    pieces.push(g.take_log());
    g.rollback(4);
    pieces.push(g.take_log());
    g.begin_step(6);
    g.process(&txn(6, vec![insert(&p, &[Some("p4"), Some("mine")])]));
    g.take_data();
    pieces.push(g.take_log());
    (base, pieces)
}

fn logged_graph() -> ShapeGraph {
    let mut g = graph(None);
    let root = layer(&mut g, "s", "projects", "this.name = 'mine'", None);
    layer(&mut g, "s", "issues", "", Some(root));
    layer(&mut g, "t", "projects", "this.name = 'other'", None);
    g
}

/// What a graph holds of the rows the run touches.
fn held(g: &ShapeGraph) -> (usize, Vec<bool>) {
    let rows = [
        ("projects", "p1"),
        ("projects", "p2"),
        ("projects", "p3"),
        ("projects", "p4"),
        ("issues", "i1"),
        ("issues", "i2"),
    ];
    let held = rows.map(|(t, k)| g.contains("public", t, &[k])).to_vec();
    (g.len(), held)
}

#[test]
fn a_base_and_its_log_replayed_give_the_graph_and_its_journal() {
    for base_at in [false, true] {
        let mut g = logged_graph();
        let (base, pieces) = logged_run(&mut g, base_at);
        assert_eq!(g.log_len(), 0);
        // Loaded after a restart: the subscriptions still stored (not "t"), the base (or
        // none: the log since the graph was new), then every piece in order.
        let mut h = graph(None);
        let root = layer(&mut h, "s", "projects", "this.name = 'mine'", None);
        layer(&mut h, "s", "issues", "", Some(root));
        if let Some(base) = &base {
            h.import(base).unwrap();
        }
        for piece in &pieces {
            h.replay(piece).unwrap();
        }
        assert_eq!(h.log_len(), 0, "a replay is not logged again");
        assert_eq!(held(&h), held(&g), "base at midway: {base_at}");
        // p2 left with its issues, p3's step was rolled back, p4 came after.
        assert_eq!(held(&g), (2, vec![true, false, false, true, false, false]));
        // The journals agree: both go back to the same positions.
        for position in [3, 2] {
            g.rollback(position);
            h.rollback(position);
            assert_eq!(
                held(&h),
                held(&g),
                "at {position}, base at midway: {base_at}"
            );
        }
        assert!(h.replay(&[LOG_NOT_A_KIND]).is_err());
    }
}

const LOG_NOT_A_KIND: u8 = 99;

#[test]
fn log_keys_of_one_uuid_are_packed_and_come_back_the_same() {
    let key = |parts: &[&str]| {
        let mut pk = Vec::new();
        for p in parts {
            pk.extend_from_slice(&(p.len() as u32).to_le_bytes());
            pk.extend_from_slice(p.as_bytes());
        }
        pk
    };
    let uuid = key(&["0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"]);
    assert_eq!(super::graph::log_pk_round_trip(&uuid), (17, uuid.clone()));
    // Anything else as it is: upper case, no hyphens, two values, not a UUID.
    for other in [
        key(&["0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0"]),
        key(&["0f1e2d3c4b5a69788796a5b4c3d2e1f0"]),
        key(&["0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "x"]),
        key(&["0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1fg"]),
        key(&["42"]),
    ] {
        let (_, back) = super::graph::log_pk_round_trip(&other);
        assert_eq!(back, other);
    }
}

/// A graph with `n` subscriptions to projects, the i-th `this.name <> 'x<i>'`.
fn many_shapes(user: Option<&str>, n: usize) -> ShapeGraph {
    let mut g = graph(user);
    for i in 0..n {
        layer(
            &mut g,
            &format!("s{i}"),
            "projects",
            &format!("this.name <> 'x{i}'"),
            None,
        );
    }
    g
}

#[test]
fn a_row_in_many_shapes_of_a_client_comes_once_and_leaves_with_the_last() {
    let mut g = many_shapes(None, 100);
    let p = projects();
    let t = txn(1, vec![insert(&p, &[Some("1"), Some("a")])]);
    assert_eq!(kinds(&g.process(&t).ops, &t), [s("insert", "1")]);
    // Out of one shape (x5), still in the 99 others: an update, not a gone.
    let t = txn(
        2,
        vec![update(
            &p,
            &[Some("1"), Some("a")],
            &[Some("1"), Some("x5")],
        )],
    );
    assert_eq!(kinds(&g.process(&t).ops, &t), [s("update", "1")]);
    // Unsubscribing 99 of them (s5 among them) keeps it: s0 still holds it.
    for i in 1..100 {
        assert_eq!(g.remove_subscription(&format!("s{i}")), 0, "s{i}");
    }
    assert!(g.contains("public", "projects", &["1"]));
    // Out of s0 too: gone.
    let t = txn(
        3,
        vec![update(
            &p,
            &[Some("1"), Some("x5")],
            &[Some("1"), Some("x0")],
        )],
    );
    assert_eq!(kinds(&g.process(&t).ops, &t), [s("gone", "1")]);
    assert!(g.is_empty());
}

#[test]
fn a_delete_of_a_row_some_shapes_let_go_is_still_a_delete() {
    let mut g = many_shapes(None, 10);
    let p = projects();
    g.process(&txn(1, vec![insert(&p, &[Some("1"), Some("a")])]));
    assert_eq!(g.remove_subscription("s3"), 0);
    let t = txn(
        2,
        vec![update(
            &p,
            &[Some("1"), Some("a")],
            &[Some("1"), Some("x4")],
        )],
    );
    assert_eq!(kinds(&g.process(&t).ops, &t), [s("update", "1")]);
    let t = txn(3, vec![delete(&p, &[Some("1"), Some("x4")])]);
    assert_eq!(kinds(&g.process(&t).ops, &t), [s("delete", "1")]);
    assert!(g.is_empty());
    // Back in: once, whichever shapes hold it.
    let t = txn(4, vec![insert(&p, &[Some("1"), Some("b")])]);
    assert_eq!(kinds(&g.process(&t).ops, &t), [s("insert", "1")]);
    // A layer under one of the shapes: the table is no longer flat, the row stays.
    let root = layer(&mut g, "with-issues", "projects", "", None);
    layer(&mut g, "with-issues", "issues", "", Some(root));
    let i = issues();
    let t = txn(
        5,
        vec![
            update(&p, &[Some("1"), Some("b")], &[Some("1"), Some("c")]),
            insert(&i, &[Some("i1"), Some("1"), None]),
        ],
    );
    assert_eq!(
        kinds(&g.process(&t).ops, &t),
        [s("update", "1"), s("insert", "i1")]
    );
}

#[test]
fn graphs_sharing_where_clause_results_get_what_each_gets_alone() {
    let i = issues();
    let t = txn(
        1,
        vec![
            insert(&i, &[Some("1"), None, Some("alice")]),
            insert(&i, &[Some("2"), None, Some("bob")]),
            insert(&i, &[Some("3"), Some("p"), None]),
        ],
    );
    let clients = |n: usize| {
        ["alice", "bob", "carol"]
            .map(|user| {
                let mut g = graph(Some(user));
                for k in 0..n {
                    layer(
                        &mut g,
                        &format!("s{k}"),
                        "issues",
                        &format!("this.id <> '{k}'"),
                        None,
                    );
                }
                g
            })
            .into_iter()
            .collect::<Vec<_>>()
    };
    let alone: Vec<_> = clients(3)
        .iter_mut()
        .map(|g| kinds(&g.process(&t).ops, &t))
        .collect();
    let mut memo = super::graph::FilterMemo::new();
    let shared: Vec<_> = clients(3)
        .iter_mut()
        .map(|g| kinds(&g.process_shared(&t, &mut memo).ops, &t))
        .collect();
    assert_eq!(shared, alone);
    // Each sees its own rows and the unowned one (in one shape or more).
    assert_eq!(
        alone,
        [
            vec![s("insert", "1"), s("insert", "3")],
            vec![s("insert", "2"), s("insert", "3")],
            vec![s("insert", "3")],
        ]
    );
    // The memo of another transaction starts over.
    let t2 = txn(2, vec![insert(&i, &[Some("0"), None, None])]);
    let mut g = clients(1).remove(0);
    g.process_shared(&t, &mut memo);
    assert!(
        g.process_shared(&t2, &mut memo).is_empty(),
        "row 0 is outside s0, the only shape"
    );
}

#[test]
fn rows_in_many_shapes_are_journaled_and_logged_as_one_change() {
    let p = projects();
    let mut g = many_shapes(None, 100);
    let base = g.export_base();
    let mut pieces = Vec::new();
    let mut sizes = Vec::new();
    for lsn in 1..=3u64 {
        g.begin_step(lsn);
        let id = lsn.to_string();
        g.process(&txn(lsn, vec![insert(&p, &[Some(&id), Some("a")])]));
        sizes.push(g.log_len());
        if lsn == 1 {
            pieces.push(g.take_log());
        }
    }
    // A row's 100 edges are one entry of the log (about a byte a layer), not 100 with its
    // key each (about 14 bytes a layer); a piece names the layers once, by label.
    assert!(sizes[2] - sizes[1] < 120, "{sizes:?}");
    g.acknowledge(1);
    // Row 2 leaves 2 shapes, then every one.
    g.begin_step(4);
    g.process(&txn(
        4,
        vec![update(
            &p,
            &[Some("2"), Some("a")],
            &[Some("2"), Some("x7")],
        )],
    ));
    g.begin_step(5);
    g.process(&txn(5, vec![delete(&p, &[Some("2"), Some("x7")])]));
    pieces.push(g.take_log());
    let mut h = many_shapes(None, 100);
    h.import(&base).unwrap();
    for piece in &pieces {
        h.replay(piece).unwrap();
    }
    let ids = ["1", "2", "3"];
    let held = |g: &ShapeGraph| ids.map(|k| g.contains("public", "projects", &[k]));
    assert_eq!(held(&g), [true, false, true]);
    assert_eq!(held(&h), held(&g));
    // Back before the delete: row 2 in 99 shapes (not x7); before its update: in all 100.
    for (position, in_x7) in [(4, false), (3, true)] {
        g.rollback(position);
        h.rollback(position);
        assert_eq!(held(&g), [true, true, true]);
        // Exported (the journal as single edges) into a new graph, every shape but x7 left.
        for graph in [&g, &h] {
            let mut k = many_shapes(None, 100);
            k.import(&graph.export()).unwrap();
            for i in (0..100).filter(|&i| i != 7) {
                k.remove_subscription(&format!("s{i}"));
            }
            assert_eq!(held(&k), [true, in_x7, true], "at {position}");
        }
    }
    // Both at 1: rows 2 and 3 (after the acknowledged step) gone.
    g.rollback(1);
    h.rollback(1);
    assert_eq!(held(&g), [true, false, false]);
    assert_eq!(held(&h), held(&g));
}

#[test]
fn a_row_in_many_shapes_can_also_hang_on_another_row() {
    let mut g = many_shapes(None, 3);
    let (p, i) = (projects(), issues());
    g.process(&txn(1, vec![insert(&p, &[Some("p1"), Some("a")])]));
    // Issues with their projects (many-to-one): p1 also hangs on issue i1.
    let root = layer(&mut g, "issues", "issues", "", None);
    parents_layer(&mut g, "issues", root);
    g.begin_step(2);
    let t = txn(2, vec![insert(&i, &[Some("i1"), Some("p1"), None])]);
    assert_eq!(kinds(&g.process(&t).ops, &t), [s("insert", "i1")]);
    // The shapes let go of p1 (one at a time, then all at once): i1 still holds it.
    let t = txn(
        3,
        vec![update(
            &p,
            &[Some("p1"), Some("a")],
            &[Some("p1"), Some("x0")],
        )],
    );
    g.begin_step(3);
    assert_eq!(kinds(&g.process(&t).ops, &t), [s("update", "p1")]);
    for k in 1..3 {
        assert_eq!(g.remove_subscription(&format!("s{k}")), 0);
    }
    let t = txn(
        4,
        vec![update(
            &p,
            &[Some("p1"), Some("x0")],
            &[Some("p1"), Some("b")],
        )],
    );
    g.begin_step(4);
    assert_eq!(kinds(&g.process(&t).ops, &t), [s("update", "p1")]);
    // The issue deleted, p1 stays: it is back in shape 0 since transaction 4.
    let t = txn(5, vec![delete(&i, &[Some("i1"), Some("p1"), None])]);
    g.begin_step(5);
    assert_eq!(kinds(&g.process(&t).ops, &t), [s("delete", "i1")]);
    assert!(g.contains("public", "projects", &["p1"]));
    assert_eq!(
        g.remove_subscription("s0"),
        1,
        "p1 goes with the last shape"
    );
    // Back to before the delete: i1 and the p1 it holds (the shapes are no more).
    g.rollback(4);
    assert!(g.contains("public", "issues", &["i1"]));
    assert!(g.contains("public", "projects", &["p1"]));
    assert_eq!(g.len(), 2);
}
