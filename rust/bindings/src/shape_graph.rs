//! One client's sent-rows graph (`electric_core::shapes::ShapeGraph`): the session asks it what
//! each transaction means for its client and gets the `SatOpLog` frame, rows never becoming
//! Python objects.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use electric_core::electric::ElectricTransaction;
use electric_core::electric::POSTGRES_ORIGIN;
use electric_core::pgoutput::Relation;
use electric_core::satellite::{commit_timestamp_ms, Bracket, DataFramer, OplogEncoder, TxInfo};
use electric_core::shapes::{
    ColumnDef, LayerError, LayerSpec, MoveIn, Plan, PlanOp, ShapeGraph as CoreGraph, TextRows,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use crate::electric::PyElectricTransaction;
use crate::errors;

/// Ops per `SatOpLog` message of subscription data (`take_data`'s default).
const DATA_OPS_PER_FRAME: usize = 1000;

/// `(relation id, schema, table, [(column, type oid)])`.
pub(crate) type RelationInfo = (u32, String, String, Vec<(String, u32)>);
/// `(layer, [key values])`: rows to fetch for a layer.
pub(crate) type MoveInInfo = (usize, Vec<Vec<String>>);
/// A transaction's frame, the relations it uses and its move-ins.
type Processed<'py> = (Bound<'py, PyBytes>, Vec<RelationInfo>, Vec<MoveInInfo>);

fn layer_error(e: LayerError) -> PyErr {
    match e {
        LayerError::Filter(f) => errors::shape_filter(f),
        other => pyo3::exceptions::PyValueError::new_err(other.to_string()),
    }
}

fn relation_info(r: &Relation) -> RelationInfo {
    (
        r.id,
        r.namespace.clone(),
        r.name.clone(),
        r.columns
            .iter()
            .map(|c| (c.name.clone(), c.type_oid))
            .collect(),
    )
}

/// The relations of `ops` in order of first use, except those `announced` already has in the
/// same form (which it then records).
pub(crate) fn relations_of<'a>(
    relations: impl Iterator<Item = &'a Arc<Relation>>,
    announced: &mut HashMap<u32, u64>,
) -> Vec<RelationInfo> {
    let mut seen: Vec<&Arc<Relation>> = Vec::new();
    for r in relations {
        if !seen.iter().any(|s| Arc::ptr_eq(s, r)) {
            seen.push(r);
        }
    }
    seen.into_iter()
        .filter(|r| {
            let form = relation_form(r);
            announced.insert(r.id, form) != Some(form)
        })
        .map(|r| relation_info(r))
        .collect()
}

/// A fingerprint of what a client is told of a relation: names and column types.
fn relation_form(r: &Relation) -> u64 {
    let mut h = DefaultHasher::new();
    r.namespace.hash(&mut h);
    r.name.hash(&mut h);
    for c in &r.columns {
        c.name.hash(&mut h);
        c.type_oid.hash(&mut h);
    }
    h.finish()
}

pub(crate) fn move_ins(list: Vec<MoveIn>) -> Vec<MoveInInfo> {
    list.into_iter().map(|m| (m.layer, m.keys)).collect()
}

/// The rows one client has and the layers of its subscriptions.
#[pyclass(module = "electric_trio._native")]
pub struct ShapeGraph {
    pub(crate) inner: CoreGraph,
    columns: HashMap<(String, String), Vec<ColumnDef>>,
    pub(crate) encoder: OplogEncoder,
    /// The relations reported to the caller since `reset_relations`, by id: their form.
    pub(crate) announced: HashMap<u32, u64>,
    /// Subscription data being framed by `add_rows_framed`, until `finish_framed`.
    framer: Option<DataFramer>,
}

#[pymethods]
impl ShapeGraph {
    #[new]
    #[pyo3(signature = (user_id = None))]
    fn new(user_id: Option<String>) -> ShapeGraph {
        ShapeGraph {
            inner: CoreGraph::new(user_id),
            columns: HashMap::new(),
            encoder: OplogEncoder::new(),
            announced: HashMap::new(),
            framer: None,
        }
    }

    /// Describes (again, after a migration) a table: OID, `(column, type oid, enum labels)`
    /// in table order, primary key, owner column.
    #[pyo3(signature = (schema, name, oid, columns, primary_key, owner_column = None))]
    fn define_table(
        &mut self,
        schema: &str,
        name: &str,
        oid: u32,
        columns: Vec<(String, u32, Option<Vec<String>>)>,
        primary_key: Vec<String>,
        owner_column: Option<&str>,
    ) -> PyResult<()> {
        let defs: Vec<ColumnDef> = columns
            .into_iter()
            .map(|(n, t, labels)| match labels {
                Some(l) => ColumnDef::enumeration(n, t, l),
                None => ColumnDef::new(n, t),
            })
            .collect();
        self.inner
            .define_table(schema, name, oid, &defs, &primary_key, owner_column)
            .map_err(layer_error)?;
        self.columns
            .insert((schema.to_owned(), name.to_owned()), defs);
        Ok(())
    }

    /// Adds a layer of `subscription` and returns its id; raises `ShapeFilterError` for a where
    /// clause that does not compile.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (subscription, schema, table, where_clause, parent = None, fk = Vec::new(), holds_fk = false))]
    fn add_layer(
        &mut self,
        subscription: String,
        schema: String,
        table: String,
        where_clause: String,
        parent: Option<usize>,
        fk: Vec<String>,
        holds_fk: bool,
    ) -> PyResult<usize> {
        let columns = self
            .columns
            .get(&(schema.clone(), table.clone()))
            .cloned()
            .unwrap_or_default();
        let spec = LayerSpec {
            subscription,
            schema,
            table,
            where_clause,
            parent,
            fk,
            holds_fk,
        };
        errors::guard(|| self.inner.add_layer(&spec, &columns).map_err(layer_error))
    }

    /// Adds rows read from Postgres for `layer`: `(tags, values as text in table order)`; the
    /// client gets those it lacks (all of them with `resend`).
    /// Returns the rows still to fetch for its many-to-one child layers.
    /// `rows` may also be a [`ShapeRows`] (rows read by a `COPY`), of which only those from
    /// `start` to `end` (excluded; the last one when `None`) are added: a large layer is added
    /// in parts, letting other tasks run between them.
    #[pyo3(signature = (layer, rows, resend = false, start = 0, end = None))]
    fn add_rows(
        &mut self,
        layer: usize,
        rows: &Bound<'_, PyAny>,
        resend: bool,
        start: usize,
        end: Option<usize>,
    ) -> PyResult<Vec<MoveInInfo>> {
        if let Ok(text) = rows.cast::<ShapeRows>() {
            let text = text.borrow();
            let end = end.unwrap_or(usize::MAX);
            return errors::guard(|| {
                Ok(move_ins(self.inner.add_text_rows_range(
                    layer,
                    &text.inner,
                    start..end,
                    resend,
                )))
            });
        }
        let rows: Vec<(Vec<String>, Vec<Option<String>>)> = rows.extract()?;
        let rows = rows
            .into_iter()
            .map(|(tags, values)| (Arc::from(tags), values))
            .collect();
        errors::guard(|| Ok(move_ins(self.inner.add_rows(layer, rows, resend))))
    }

    /// The relations of these layers' tables not reported before (recorded as reported now):
    /// sent before their data is streamed by `add_rows_framed`.
    fn layer_relations(&mut self, layers: Vec<usize>) -> Vec<RelationInfo> {
        let relations: Vec<Arc<Relation>> = layers
            .iter()
            .filter_map(|&l| self.inner.layer_relation(l).cloned())
            .collect();
        relations_of(relations.iter(), &mut self.announced)
    }

    /// `add_rows` of rows read by a `COPY`, the rows the client gets written at once as
    /// subscription data: `SatOpLog` messages of at most 1000 inserts, each framed as a
    /// binary WebSocket message (anything `take_data` still had goes first). Returns the
    /// messages completed by this call (all framed, in one `bytes`) and the move-ins; the last,
    /// incomplete message is returned by `finish_framed`. The relations must have been reported
    /// (`layer_relations`).
    #[pyo3(signature = (layer, rows, resend = false, start = 0, end = None))]
    fn add_rows_framed<'py>(
        &mut self,
        py: Python<'py>,
        layer: usize,
        rows: PyRef<'py, ShapeRows>,
        resend: bool,
        start: usize,
        end: Option<usize>,
    ) -> PyResult<(Bound<'py, PyBytes>, Vec<MoveInInfo>)> {
        errors::guard(|| {
            let framer = self
                .framer
                .get_or_insert_with(|| DataFramer::new(DATA_OPS_PER_FRAME));
            let end = end.unwrap_or(usize::MAX);
            let found = self
                .inner
                .add_text_rows_framed(layer, &rows.inner, start..end, resend, framer)
                .map_err(encode_error)?;
            let data = framer.take_closed();
            Ok((PyBytes::new(py, &data), move_ins(found)))
        })
    }

    /// Ends the data of `add_rows_framed`: its last message (framed; empty when it has none)
    /// and how many ops were written in all.
    fn finish_framed<'py>(&mut self, py: Python<'py>) -> (Bound<'py, PyBytes>, usize) {
        match self.framer.take() {
            Some(mut framer) => {
                let data = framer.finish();
                (PyBytes::new(py, &data), framer.ops())
            }
            None => (PyBytes::new(py, b""), 0),
        }
    }

    /// Removes a subscription's layers; the rows that leave are queued as gone ops. Returns
    /// how many.
    fn remove_subscription(&mut self, subscription: &str) -> usize {
        self.inner.remove_subscription(subscription)
    }

    /// The queued data (inserts of added rows, gones of removed subscriptions) as `SatOpLog`
    /// frames of at most `max_ops` ops, bare or within `additional_begin/commit` of
    /// `additional_ref`, and the relations they use not reported before in the same form. No frame when nothing is queued.
    #[pyo3(signature = (max_ops = 1000, additional_ref = None))]
    fn take_data<'py>(
        &mut self,
        py: Python<'py>,
        max_ops: usize,
        additional_ref: Option<u64>,
    ) -> PyResult<(Vec<Bound<'py, PyBytes>>, Vec<RelationInfo>)> {
        errors::guard(|| {
            let data = self.inner.take_data();
            let relations = relations_of(
                data.iter().filter_map(|op| match op {
                    PlanOp::Insert { relation, .. } | PlanOp::Gone { relation, .. } => {
                        Some(relation)
                    }
                    PlanOp::Change(_) => None,
                }),
                &mut self.announced,
            );
            let mut frames = Vec::new();
            if let Some(r) = additional_ref {
                // One pseudo-transaction: the client applies it as a whole.
                let frame = self
                    .encoder
                    .encode(
                        &Bracket::Additional(r),
                        data.iter().filter_map(PlanOp::data_op),
                    )
                    .map_err(encode_error)?;
                frames.push(PyBytes::new(py, &frame));
            } else {
                for chunk in data.chunks(max_ops.max(1)) {
                    let frame = self
                        .encoder
                        .encode(&Bracket::None, chunk.iter().filter_map(PlanOp::data_op))
                        .map_err(encode_error)?;
                    frames.push(PyBytes::new(py, &frame));
                }
            }
            Ok((frames, relations))
        })
    }

    /// What `txn` means for this client: `None` when it gets nothing (no change it sees, no
    /// migration in `migrate`, and not `force`d — the client's own write is always echoed),
    /// else `(SatOpLog frame, relations used, move-ins)`. When there are move-ins the frame
    /// carries `additional_ref` on begin and commit, and the caller sends their rows later.
    #[pyo3(signature = (txn, migrate = Vec::new(), force = false, additional_ref = 0))]
    fn process<'py>(
        &mut self,
        py: Python<'py>,
        txn: PyRef<'py, PyElectricTransaction>,
        migrate: Vec<PyBackedBytes>,
        force: bool,
        additional_ref: u64,
    ) -> PyResult<Option<Processed<'py>>> {
        errors::guard(|| {
            let inner = &txn.inner;
            let plan = self.inner.process(inner);
            if plan.ops.is_empty() && migrate.is_empty() && !force {
                return Ok(None);
            }
            let additional = if plan.move_ins.is_empty() {
                0
            } else {
                additional_ref
            };
            let frame = encode_plan(&mut self.encoder, inner, &plan, &migrate, additional)?;
            let relations = relations_of(
                plan.ops.iter().map(|op| op.relation(inner)),
                &mut self.announced,
            );
            Ok(Some((
                PyBytes::new(py, &frame),
                relations,
                move_ins(plan.move_ins),
            )))
        })
    }

    /// Starts recording what processing the transaction at `position` changes, so that
    /// `rollback` can undo it.
    fn begin_step(&mut self, position: u64) {
        self.inner.begin_step(position);
    }

    /// The client acknowledged `position`: no rollback will go back before it.
    fn acknowledge(&mut self, position: u64) {
        self.inner.acknowledge(position);
    }

    /// Takes the graph back to `position` (a client resuming from there).
    fn rollback(&mut self, position: u64) {
        self.inner.rollback(position);
    }

    /// The graph with its journal of unacknowledged steps, to store (tables by name, layers
    /// by label).
    fn export<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.export())
    }

    /// Adds the rows of an `export` (after the same subscriptions' layers were added again);
    /// returns how many. Raises `ValueError` for bytes that are not an export.
    fn import_rows(&mut self, data: &[u8]) -> PyResult<usize> {
        self.inner
            .import(data)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
    }

    /// `export`, the change log starting again from it: the base the logs taken from now on
    /// (`take_log`) apply to.
    fn export_base<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.export_base())
    }

    /// What changed in the graph (edges, journal steps) since the log was last taken, or
    /// since `export_base`; the log starts again, empty.
    fn take_log<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.take_log())
    }

    /// Bytes of change log not taken yet.
    fn log_len(&self) -> usize {
        self.inner.log_len()
    }

    /// Applies a `take_log` of a graph whose base (`import_rows`) and earlier logs this graph
    /// has; returns how many edge changes it made. Raises `ValueError` for bytes that are not
    /// a log.
    fn replay(&mut self, data: &[u8]) -> PyResult<usize> {
        self.inner
            .replay(data)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
    }

    /// Forgets which relations were reported: `process` and `take_data` list every relation
    /// they use again (a new connection, or a relation the caller announced in another form).
    fn reset_relations(&mut self) {
        self.announced.clear();
    }

    /// Whether the client has the row of `schema.table` with these key values (text).
    fn contains(&self, schema: &str, table: &str, pk: Vec<String>) -> bool {
        let pk: Vec<&str> = pk.iter().map(String::as_str).collect();
        self.inner.contains(schema, table, &pk)
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}

/// The `SatOpBegin` of a transaction sent to a client: Postgres's own transactions carry
/// `POSTGRES_ORIGIN`; `additional` names the client's additional data to come (0: none).
pub(crate) fn transaction_bracket(inner: &ElectricTransaction, additional: u64) -> Bracket<'_> {
    Bracket::Transaction(TxInfo {
        commit_timestamp_ms: commit_timestamp_ms(inner.commit_timestamp),
        lsn: inner.end_lsn,
        origin: Some(inner.origin.as_deref().unwrap_or(POSTGRES_ORIGIN)),
        is_migration: !inner.ddl.is_empty(),
        additional_data_ref: additional,
        transaction_id: Some(u64::from(inner.xid)),
    })
}

/// The `SatOpLog` frame of a transaction's plan.
fn encode_plan(
    encoder: &mut OplogEncoder,
    inner: &ElectricTransaction,
    plan: &Plan,
    migrate: &[PyBackedBytes],
    additional: u64,
) -> PyResult<Vec<u8>> {
    let bracket = transaction_bracket(inner, additional);
    let ops = migrate
        .iter()
        .map(|m| electric_core::satellite::Op::Migrate(m))
        .chain(plan.ops.iter().filter_map(|op| op.op(inner)));
    encoder.encode(&bracket, ops).map_err(encode_error)
}

pub(crate) fn encode_error(e: electric_core::satellite::EncodeError) -> PyErr {
    // A row the encoder refuses is a server fault, not the client's.
    errors::ElectricError::new_err(format!("cannot encode the rows: {e}"))
}

/// Rows of a shape's data query read by `COPY ... TO STDOUT` (text format): the tags array,
/// then `columns` values as text; kept in Rust until `ShapeGraph.add_rows` takes them.
#[pyclass(module = "electric_trio._native")]
pub struct ShapeRows {
    inner: TextRows,
}

#[pymethods]
impl ShapeRows {
    #[new]
    fn new(columns: usize) -> ShapeRows {
        ShapeRows {
            inner: TextRows::new(columns),
        }
    }

    /// Adds CopyData payloads, one row each.
    fn extend(&mut self, lines: Vec<PyBackedBytes>) -> PyResult<()> {
        for line in &lines {
            self.inner
                .push_line(line)
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
        }
        Ok(())
    }

    /// Every row's values at `columns` (indexes into the table's columns).
    fn values(&self, columns: Vec<usize>) -> PyResult<Vec<Vec<Option<&str>>>> {
        if let Some(c) = columns.iter().find(|&&c| c >= self.inner.columns()) {
            return Err(PyValueError::new_err(format!("no column {c}")));
        }
        Ok((0..self.inner.len())
            .map(|i| columns.iter().map(|&c| self.inner.value(i, c)).collect())
            .collect())
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ShapeGraph>()?;
    m.add_class::<ShapeRows>()?;
    Ok(())
}
