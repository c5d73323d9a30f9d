//! One client's sent-rows graph (server-behaviour.md §8, satellite-protocol.md §7.6-7.8): the
//! rows it has been sent, each with the edges that keep it in its shapes, and what a
//! transaction from Postgres changes about them.
//!
//! A subscription is a tree of *layers*. A root layer holds the rows of its table that pass its
//! where clause; a child layer follows a foreign key from the rows of its parent layer, either to
//! the rows that reference them (one-to-many, [`Link::Children`]) or to the rows they reference
//! (many-to-one, [`Link::Parents`]). An edge `(layer, parent row)` says a row is in a layer
//! because of that parent row (none for a root layer). A row stays with the client while it
//! has at least one edge; when its last edge goes, the client is told it is *gone*.
//!
//! For each transaction [`ShapeGraph::process`] decides, change by change, what the client gets:
//! the change as it is, an insert (a row that moved into the shapes, or a parent the new rows
//! need), a gone (a row that left them, and every row that only hung on it), or nothing. Rows
//! that must come from Postgres (the children of a row that moved in, parents the transaction
//! does not carry) are returned as *move-ins* for the caller to query; their rows come back
//! through [`ShapeGraph::add_rows`], as do the rows of a new subscription.
//!
//! Foreign keys are followed to the referenced table's primary key (the only kind electrified
//! tables have). Rows are keyed by their primary key's values in the Satellite text form.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};

use super::{ColumnDef, FilterError, ShapeFilter};
use crate::electric::{ElectricChange, ElectricTransaction, ReferencedRecord, Tags};
use crate::pgoutput::{Change, Column, Datum, Relation};
use crate::satellite::values::write_text;
use crate::satellite::{DataFramer, EncodeError, Op};
use crate::shapes::text_rows::TextRows;
use crate::value::{decode_text, Kind, Value};

/// A table's index in the graph's table list.
pub type TableId = usize;
/// A map by row key. A graph holds a key per row the client has (a million for a large shape),
/// hashed on every add and lookup: foldhash (seeded per process) rather than SipHash, which was
/// a tenth of the service's time in a large initial sync.
type KeyMap<V> = HashMap<RowKey, V, foldhash::fast::RandomState>;

/// A layer's index in the graph's layer list.
pub type LayerId = usize;

/// A row's identity: its table and its primary key's values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowKey {
    table: TableId,
    /// Each key value's text, length-prefixed (u32 little-endian).
    pk: Box<[u8]>,
}

impl RowKey {
    /// The key's values as text, in primary-key order.
    pub fn values(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = &self.pk[..];
        while rest.len() >= 4 {
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            out.push(String::from_utf8_lossy(&rest[4..4 + len]).into_owned());
            rest = &rest[4 + len..];
        }
        out
    }
}

/// How a layer's rows hang on its parent layer's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// A root layer: its where clause alone decides.
    Root,
    /// One-to-many: this layer's rows reference the parent's rows through these columns of this
    /// layer's table (aligned with the parent table's primary key).
    Children { fk: Vec<usize> },
    /// Many-to-one: the parent's rows reference this layer's rows through these columns of the
    /// parent layer's table (aligned with this table's primary key).
    Parents { fk: Vec<usize> },
}

/// A layer as the caller describes it.
#[derive(Debug, Clone)]
pub struct LayerSpec {
    pub subscription: String,
    pub schema: String,
    pub table: String,
    pub where_clause: String,
    pub parent: Option<LayerId>,
    /// The foreign key's columns by name (empty for a root layer); on this layer's table when
    /// `holds_fk`, else on the parent layer's table.
    pub fk: Vec<String>,
    pub holds_fk: bool,
}

/// Why a layer cannot be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerError {
    #[error("unknown table {0}")]
    UnknownTable(String),
    #[error("unknown parent layer {0}")]
    UnknownParent(LayerId),
    #[error("column {0:?} does not exist")]
    UnknownColumn(String),
    #[error("the foreign key has {got} columns, the referenced primary key {want}")]
    KeyWidth { got: usize, want: usize },
    #[error(transparent)]
    Filter(#[from] FilterError),
}

#[derive(Debug)]
struct Table {
    relation: Arc<Relation>,
    pk: Vec<usize>,
    owner: Option<usize>,
    /// Layers on this table, ascending.
    layers: Vec<LayerId>,
    /// Whether every layer on this table is a root layer with no layer under it: a row's
    /// edges are then the layers whose where clause it passes ([`ShapeGraph::upsert`]).
    flat: bool,
}

#[derive(Debug)]
struct Layer {
    subscription: String,
    /// `<subscription>/<n>` for the subscription's n-th layer: stable across restarts.
    label: String,
    table: TableId,
    /// Shared with every layer of the same clause on the same columns ([`shared_filter`]).
    filter: Arc<ShapeFilter>,
    parent: Option<LayerId>,
    link: Link,
    children: Vec<LayerId>,
}

type Edge = (LayerId, Option<RowKey>);

#[derive(Debug, Default)]
struct RowState {
    edges: Edges,
}

/// A row's edges. Most rows of a large shape hang on one edge of a root layer: that one is
/// kept in place (no allocation: 48 bytes a row less), in the 24 bytes a `Vec` takes. A row in
/// several root layers and no other (a client's many shapes of one table) keeps their ids, 4
/// bytes each instead of an edge's 32.
#[derive(Debug)]
enum Edges {
    Root(LayerId),
    /// Root edges of these layers (at least two, ascending), and no other edge.
    Roots(Box<[u32]>),
    Many(Vec<Edge>),
}

// The point of `Edges`: a row's state in the graph's map is no larger than a `Vec`.
const _: () = assert!(std::mem::size_of::<Edges>() == std::mem::size_of::<Vec<Edge>>());

impl Default for Edges {
    fn default() -> Edges {
        Edges::Many(Vec::new())
    }
}

fn layer_u32(layer: LayerId) -> u32 {
    u32::try_from(layer).expect("fewer than 2^32 layers in a graph")
}

impl Edges {
    /// The edges of these root layers (ascending, distinct).
    fn of_roots(layers: Vec<u32>) -> Edges {
        match layers[..] {
            [] => Edges::default(),
            [l] => Edges::Root(l as LayerId),
            _ => Edges::Roots(layers.into()),
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Edges::Many(v) if v.is_empty())
    }

    fn len(&self) -> usize {
        match self {
            Edges::Root(_) => 1,
            Edges::Roots(r) => r.len(),
            Edges::Many(v) => v.len(),
        }
    }

    /// Each edge's layer.
    fn layers(&self) -> impl Iterator<Item = LayerId> + '_ {
        let (root, roots, many) = match self {
            Edges::Root(l) => (Some(*l), &[][..], &[][..]),
            Edges::Roots(r) => (None, &r[..], &[][..]),
            Edges::Many(v) => (None, &[][..], &v[..]),
        };
        root.into_iter()
            .chain(roots.iter().map(|&l| l as LayerId))
            .chain(many.iter().map(|(l, _)| *l))
    }

    /// The layers of the root edges (those with no parent row).
    fn roots(&self) -> impl Iterator<Item = LayerId> + '_ {
        let (all, many) = match self {
            Edges::Many(v) => (None, &v[..]),
            other => (Some(other.layers()), &[][..]),
        };
        all.into_iter()
            .flatten()
            .chain(many.iter().filter(|(_, p)| p.is_none()).map(|(l, _)| *l))
    }

    fn contains(&self, edge: &Edge) -> bool {
        match self {
            Edges::Root(l) => *edge == (*l, None),
            Edges::Roots(r) => edge.1.is_none() && r.binary_search(&layer_u32(edge.0)).is_ok(),
            Edges::Many(v) => v.contains(edge),
        }
    }

    /// Adds root edges of these layers (which the row does not have).
    fn extend_roots(&mut self, layers: &[LayerId]) {
        match layers {
            [] => return,
            [layer] => return self.push((*layer, None)),
            _ => {}
        }
        let mut ids: Vec<u32> = match self {
            Edges::Root(l) => vec![layer_u32(*l)],
            Edges::Roots(r) => r.to_vec(),
            Edges::Many(v) if v.is_empty() => Vec::new(),
            Edges::Many(v) => {
                v.reserve_exact(layers.len());
                v.extend(layers.iter().map(|&l| (l, None)));
                return;
            }
        };
        ids.reserve_exact(layers.len());
        ids.extend(layers.iter().map(|&l| layer_u32(l)));
        ids.sort_unstable();
        ids.dedup();
        *self = Edges::of_roots(ids);
    }

    fn push(&mut self, edge: Edge) {
        match self {
            Edges::Many(v) if v.is_empty() && edge.1.is_none() => *self = Edges::Root(edge.0),
            Edges::Many(v) => {
                if v.is_empty() {
                    v.reserve_exact(1); // room for one, not the four a first push reserves
                }
                v.push(edge);
            }
            Edges::Root(_) | Edges::Roots(_) if edge.1.is_none() => {
                let mut ids: Vec<u32> = self.layers().map(layer_u32).collect();
                ids.push(layer_u32(edge.0));
                ids.sort_unstable();
                ids.dedup();
                *self = Edges::of_roots(ids);
            }
            Edges::Root(_) | Edges::Roots(_) => {
                let mut v = self.to_vec();
                v.push(edge);
                *self = Edges::Many(v);
            }
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&Edge) -> bool) {
        match self {
            Edges::Root(l) => {
                if !keep(&(*l, None)) {
                    *self = Edges::default();
                }
            }
            Edges::Roots(r) => {
                if !r.iter().all(|&l| keep(&(l as LayerId, None))) {
                    let kept = r
                        .iter()
                        .copied()
                        .filter(|&l| keep(&(l as LayerId, None)))
                        .collect();
                    *self = Edges::of_roots(kept);
                }
            }
            Edges::Many(v) => v.retain(keep),
        }
    }

    /// The edges, cloned.
    fn to_vec(&self) -> Vec<Edge> {
        match self {
            Edges::Root(l) => vec![(*l, None)],
            Edges::Roots(r) => r.iter().map(|&l| (l as LayerId, None)).collect(),
            Edges::Many(v) => v.clone(),
        }
    }
}

/// An op of a plan, owning what it does not borrow from the transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanOp {
    /// The transaction's change at this index, as it is.
    Change(usize),
    /// A row the client gets as an insert.
    Insert {
        relation: Arc<Relation>,
        row: Box<[Datum]>,
        tags: Tags,
    },
    /// A row that left the client's shapes.
    Gone {
        relation: Arc<Relation>,
        row: Box<[Datum]>,
        pk: Arc<[usize]>,
        key: RowKey,
    },
}

impl PlanOp {
    /// The relation the op is about.
    pub fn relation<'a>(&'a self, txn: &'a ElectricTransaction) -> &'a Arc<Relation> {
        match self {
            PlanOp::Change(i) => txn.changes[*i].change.relation(),
            PlanOp::Insert { relation, .. } | PlanOp::Gone { relation, .. } => relation,
        }
    }

    /// The op to encode.
    pub fn op<'a>(&'a self, txn: &'a ElectricTransaction) -> Option<Op<'a>> {
        match self {
            PlanOp::Change(i) => Op::from_change(&txn.changes[*i]),
            _ => self.data_op(),
        }
    }

    /// The op of an insert or gone, which needs no transaction (data and gone batches).
    pub fn data_op(&self) -> Option<Op<'_>> {
        match self {
            PlanOp::Change(_) => None,
            PlanOp::Insert {
                relation,
                row,
                tags,
            } => Some(Op::Insert {
                relation,
                new: row,
                tags,
            }),
            PlanOp::Gone {
                relation, row, pk, ..
            } => Some(Op::Gone {
                relation,
                row,
                pk_columns: pk,
            }),
        }
    }
}

/// Rows to fetch from Postgres for a layer: the children of these parent keys (a
/// [`Link::Children`] layer) or the rows with these keys (a [`Link::Parents`] layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveIn {
    pub layer: LayerId,
    pub keys: Vec<Vec<String>>,
}

/// What one transaction means for one client.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    pub ops: Vec<PlanOp>,
    pub move_ins: Vec<MoveIn>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.move_ins.is_empty()
    }
}

/// Compiled where clauses by clause and columns, held by the layers using them.
type Filters = HashMap<(String, Vec<ColumnDef>), Weak<ShapeFilter>>;

/// Every live filter, once: the layers of every client with the same where clause on the same
/// columns share one [`ShapeFilter`], which a [`FilterMemo`] then evaluates once per row of a
/// transaction for all of them. Entries of dropped filters are purged as the map grows.
static FILTERS: LazyLock<Mutex<(Filters, usize)>> =
    LazyLock::new(|| Mutex::new((HashMap::new(), 64)));

/// The filter of `clause` on `columns`: the one compiled for it already while any layer holds
/// it, else a new one.
fn shared_filter(clause: &str, columns: &[ColumnDef]) -> Result<Arc<ShapeFilter>, FilterError> {
    let key = (clause.to_owned(), columns.to_vec());
    let mut guard = FILTERS.lock().unwrap_or_else(PoisonError::into_inner);
    let (filters, purge_at) = &mut *guard;
    if let Some(filter) = filters.get(&key).and_then(Weak::upgrade) {
        return Ok(filter);
    }
    let filter = Arc::new(ShapeFilter::compile(clause, columns)?);
    if filters.len() >= *purge_at {
        filters.retain(|_, f| f.strong_count() > 0);
        *purge_at = (filters.len() * 2).max(64);
    }
    filters.insert(key, Arc::downgrade(&filter));
    Ok(filter)
}

/// Where-clause results on the rows of one transaction, shared by the graphs that process it
/// one after another (the server's fan-out, [`ShapeGraph::process_shared`]): a clause many
/// clients subscribed to is evaluated once per row, not once per client. The default memo
/// keeps nothing (every clause evaluated, no map kept): one graph's [`ShapeGraph::process`].
#[derive(Debug, Default)]
pub struct FilterMemo {
    /// Whether results are kept (a graph processing a transaction alone keeps none).
    keep: bool,
    /// The transaction the results are of (its end LSN): another clears them.
    lsn: Option<u64>,
    /// `(filter's address, change index)` -> whether the change's new row passes.
    results: HashMap<(usize, usize), bool, foldhash::fast::RandomState>,
    /// The filters with results, kept alive: no other takes an address while it has results.
    held: Vec<Arc<ShapeFilter>>,
}

impl FilterMemo {
    pub fn new() -> FilterMemo {
        FilterMemo {
            keep: true,
            ..FilterMemo::default()
        }
    }

    fn start(&mut self, txn: &ElectricTransaction) {
        if self.lsn != Some(txn.end_lsn) {
            self.lsn = Some(txn.end_lsn);
            self.results.clear();
            self.held.clear();
        }
    }

    /// Whether the new row of change `change` (`row`) passes `filter`.
    fn matches(&mut self, filter: &Arc<ShapeFilter>, change: usize, row: &[Datum]) -> bool {
        if !self.keep {
            return filter.matches(row).unwrap_or(false);
        }
        match self.results.entry((Arc::as_ptr(filter) as usize, change)) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                self.held.push(filter.clone());
                *e.insert(filter.matches(row).unwrap_or(false))
            }
        }
    }
}

/// The sent-rows graph of one client and the layers of its subscriptions.
#[derive(Debug)]
pub struct ShapeGraph {
    user_id: Option<String>,
    tables: Vec<Table>,
    table_ids: HashMap<(String, String), TableId>,
    /// Relation id -> table (with a check on the names' lengths), filled by `table_of`.
    by_relation: HashMap<u32, ((usize, usize), Option<TableId>)>,
    layers: Vec<Option<Layer>>,
    rows: KeyMap<RowState>,
    /// Reverse edges: a parent row's `(layer, child row)` pairs.
    children: KeyMap<Vec<(LayerId, RowKey)>>,
    /// Rows some present row of a parent layer references but the client does not have yet:
    /// target row -> `(many-to-one layer, referencing row)`.
    needs: KeyMap<Vec<(LayerId, RowKey)>>,
    /// Rows added by [`ShapeGraph::add_rows`] and gones of removed subscriptions, until taken.
    data: Vec<PlanOp>,
    /// How to undo what happened after each position not yet acknowledged: `(position, edge
    /// changes made from it on)`, oldest first.
    journal: Vec<(u64, Vec<Undo>)>,
    /// What changed since the log was last taken, to store incrementally.
    log: ChangeLog,
}

/// The graph's changes as they happen, in a form [`ShapeGraph::replay`] applies to a graph
/// imported from an earlier export (with the same subscriptions' layers): the edges added and
/// removed, and the journal's steps, acknowledgements and rollbacks. Stored piece by piece
/// ([`ShapeGraph::take_log`]), it spares a checkpoint the export of the whole graph: a large
/// shape's rows are stored once, as they are sent, and a later checkpoint stores only what
/// changed since. Each piece names the tables and layers it uses (by name and label) itself.
#[derive(Debug, Default)]
struct ChangeLog {
    bytes: Vec<u8>,
    /// Ids given in this piece to tables and layers.
    tables: HashMap<TableId, u32>,
    /// By layer id (`u32::MAX`: none yet): looked up for every edge logged.
    layers: Vec<u32>,
    /// How many layers have an id in this piece.
    layer_count: u32,
    /// The journal step the replay is known to record into (`None`: unknown, announced again
    /// before the next edge change).
    step: Option<u64>,
}

const LOG_TABLE: u8 = 1;
const LOG_LAYER: u8 = 2;
const LOG_ADDED: u8 = 3;
const LOG_REMOVED: u8 = 4;
const LOG_STEP: u8 = 5;
const LOG_ACK: u8 = 6;
const LOG_ROLLBACK: u8 = 7;
/// Root edges of several layers added to (removed from) one row: table, key, then the count
/// and the layers.
const LOG_ADDED_ROOTS: u8 = 8;
const LOG_REMOVED_ROOTS: u8 = 9;

/// One edge change, to undo; the root edges of several layers a row gained or lost at once
/// are one change (a row in 100 shapes of a client is one entry, not 100 with a key each).
#[derive(Debug, Clone)]
enum Undo {
    Added(RowKey, Edge),
    Removed(RowKey, Edge),
    AddedRoots(RowKey, Box<[LayerId]>),
    RemovedRoots(RowKey, Box<[LayerId]>),
}

impl Undo {
    /// The change as single edge changes: `(added, key, edge)`.
    fn edges(&self) -> Vec<(bool, &RowKey, Edge)> {
        match self {
            Undo::Added(k, e) => vec![(true, k, e.clone())],
            Undo::Removed(k, e) => vec![(false, k, e.clone())],
            Undo::AddedRoots(k, layers) => layers.iter().map(|&l| (true, k, (l, None))).collect(),
            Undo::RemovedRoots(k, layers) => {
                layers.iter().map(|&l| (false, k, (l, None))).collect()
            }
        }
    }
}

/// A row written in the transaction: its new row, the old one of an update, its tags.
type Written<'t> = (&'t [Datum], Option<&'t [Datum]>, Tags);

/// Where a change's rows come from inside one `process` call.
struct TxRows<'t> {
    /// Last new row of each key written in the transaction.
    written: HashMap<RowKey, Written<'t>>,
    referenced: HashMap<RowKey, &'t ReferencedRecord>,
}

impl ShapeGraph {
    /// An empty graph for a client of `user_id` (rows of tables with an owner column are only
    /// seen by their owner, or by everyone when the owner is NULL or empty).
    pub fn new(user_id: Option<String>) -> ShapeGraph {
        ShapeGraph {
            user_id,
            tables: Vec::new(),
            table_ids: HashMap::new(),
            by_relation: HashMap::new(),
            layers: Vec::new(),
            rows: KeyMap::default(),
            children: KeyMap::default(),
            needs: KeyMap::default(),
            data: Vec::new(),
            journal: Vec::new(),
            log: ChangeLog::default(),
        }
    }

    /// Describes (or re-describes, after a migration) a table: its OID (the relation id
    /// clients know), columns in table order, primary key and owner column.
    pub fn define_table(
        &mut self,
        schema: &str,
        name: &str,
        oid: u32,
        columns: &[ColumnDef],
        primary_key: &[String],
        owner_column: Option<&str>,
    ) -> Result<TableId, LayerError> {
        let find = |col: &str| {
            columns
                .iter()
                .position(|c| c.name == col)
                .ok_or_else(|| LayerError::UnknownColumn(col.to_owned()))
        };
        let pk = primary_key
            .iter()
            .map(|c| find(c))
            .collect::<Result<Vec<_>, _>>()?;
        let owner = owner_column.and_then(|c| find(c).ok());
        let relation = Arc::new(Relation {
            id: oid,
            namespace: schema.to_owned(),
            name: name.to_owned(),
            replica_identity: b'f',
            columns: columns
                .iter()
                .map(|c| Column {
                    name: c.name.clone(),
                    type_oid: c.type_oid,
                    type_modifier: -1,
                    is_key: true,
                    kind: if c.enum_labels.is_some() {
                        Kind::Text
                    } else {
                        Kind::of(c.type_oid)
                    },
                })
                .collect(),
        });
        let key = (schema.to_owned(), name.to_owned());
        self.by_relation.clear();
        Ok(match self.table_ids.entry(key) {
            Entry::Occupied(e) => {
                let t = &mut self.tables[*e.get()];
                t.relation = relation;
                t.pk = pk;
                t.owner = owner;
                *e.get()
            }
            Entry::Vacant(e) => {
                self.tables.push(Table {
                    relation,
                    pk,
                    owner,
                    layers: Vec::new(),
                    flat: true,
                });
                *e.insert(self.tables.len() - 1)
            }
        })
    }

    /// Adds a layer (its where clause compiled against the table's columns, as `columns`
    /// gives them with their enum labels) and returns its id.
    pub fn add_layer(
        &mut self,
        spec: &LayerSpec,
        columns: &[ColumnDef],
    ) -> Result<LayerId, LayerError> {
        let table = *self
            .table_ids
            .get(&(spec.schema.clone(), spec.table.clone()))
            .ok_or_else(|| LayerError::UnknownTable(format!("{}.{}", spec.schema, spec.table)))?;
        let filter = shared_filter(&spec.where_clause, columns)?;
        let link = match spec.parent {
            None => Link::Root,
            Some(parent) => {
                let parent_table = self
                    .layers
                    .get(parent)
                    .and_then(Option::as_ref)
                    .ok_or(LayerError::UnknownParent(parent))?
                    .table;
                let (holder, target) = if spec.holds_fk {
                    (table, parent_table)
                } else {
                    (parent_table, table)
                };
                let holder_cols = &self.tables[holder].relation.columns;
                let fk = spec
                    .fk
                    .iter()
                    .map(|c| {
                        holder_cols
                            .iter()
                            .position(|col| &col.name == c)
                            .ok_or_else(|| LayerError::UnknownColumn(c.clone()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let want = self.tables[target].pk.len();
                if fk.len() != want {
                    return Err(LayerError::KeyWidth {
                        got: fk.len(),
                        want,
                    });
                }
                if spec.holds_fk {
                    Link::Children { fk }
                } else {
                    Link::Parents { fk }
                }
            }
        };
        let id = self.layers.len();
        let n = self
            .layers
            .iter()
            .flatten()
            .filter(|l| l.subscription == spec.subscription)
            .count();
        self.layers.push(Some(Layer {
            label: format!("{}/{n}", spec.subscription),
            subscription: spec.subscription.clone(),
            table,
            filter,
            parent: spec.parent,
            link,
            children: Vec::new(),
        }));
        if let Some(parent) = spec.parent {
            if let Some(p) = self.layers[parent].as_mut() {
                p.children.push(id);
            }
        }
        self.tables[table].layers.push(id);
        self.refresh_flat();
        Ok(id)
    }

    /// Sets each table's [`Table::flat`] after its layers changed.
    fn refresh_flat(&mut self) {
        for table in &mut self.tables {
            table.flat = table.layers.iter().all(|&l| {
                self.layers[l]
                    .as_ref()
                    .is_some_and(|l| l.link == Link::Root && l.children.is_empty())
            });
        }
    }

    /// The number of rows the client has.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Whether the client has the row of `schema.table` with these primary key values (text).
    pub fn contains(&self, schema: &str, table: &str, pk: &[&str]) -> bool {
        let Some(&t) = self.table_ids.get(&(schema.to_owned(), table.to_owned())) else {
            return false;
        };
        let mut buf = Vec::new();
        for v in pk {
            push_key_part(&mut buf, v.as_bytes());
        }
        self.rows.contains_key(&RowKey {
            table: t,
            pk: buf.into(),
        })
    }

    /// The table of a relation of the stream (looked up by name once per relation id).
    fn table_of(&mut self, relation: &Relation) -> Option<TableId> {
        if let Some(&(name_hash, table)) = self.by_relation.get(&relation.id) {
            if name_hash == (relation.namespace.len(), relation.name.len()) {
                return table;
            }
        }
        let table = self
            .table_ids
            .get(&(relation.namespace.clone(), relation.name.clone()))
            .copied();
        self.by_relation.insert(
            relation.id,
            ((relation.namespace.len(), relation.name.len()), table),
        );
        table
    }

    /// The relation of `layer`'s table; `None` for a layer not in the graph.
    pub fn layer_relation(&self, layer: LayerId) -> Option<&Arc<Relation>> {
        let l = self.layers.get(layer)?.as_ref()?;
        Some(&self.tables[l.table].relation)
    }

    fn layer(&self, id: LayerId) -> &Layer {
        self.layers[id].as_ref().expect("a live layer")
    }

    /// The key of the row of `table` whose primary key is `row`'s values at `cols`; None when
    /// one of them is NULL or missing.
    fn key_at(&self, table: TableId, row: &[Datum], cols: &[usize]) -> Option<RowKey> {
        let mut buf = Vec::new();
        let mut text = Vec::new();
        for &c in cols {
            match row.get(c)? {
                Datum::Value(Value::Null) | Datum::UnchangedToast => return None,
                Datum::Value(v) => {
                    text.clear();
                    write_text(v, false, &mut text).ok()?;
                    push_key_part(&mut buf, &text);
                }
            }
        }
        Some(RowKey {
            table,
            pk: buf.into(),
        })
    }

    fn pk_key(&self, table: TableId, row: &[Datum]) -> Option<RowKey> {
        self.key_at(table, row, &self.tables[table].pk)
    }

    fn visible(&self, table: TableId, row: &[Datum]) -> bool {
        let Some(owner) = self.tables[table].owner else {
            return true;
        };
        match row.get(owner) {
            Some(Datum::Value(Value::Text(s))) => {
                s.is_empty() || self.user_id.as_deref() == Some(s.as_ref())
            }
            Some(Datum::Value(Value::Null)) | None => true,
            Some(Datum::Value(_)) | Some(Datum::UnchangedToast) => false,
        }
    }

    fn passes(&self, layer: LayerId, table: TableId, row: &[Datum]) -> bool {
        self.visible(table, row) && self.layer(layer).filter.matches(row).unwrap_or(false)
    }

    fn has_edge_in(&self, key: &RowKey, layer: LayerId) -> bool {
        self.rows
            .get(key)
            .is_some_and(|s| s.edges.layers().any(|l| l == layer))
    }

    /// Adds an edge; true when the row was not in the graph before.
    fn add_edge(&mut self, key: &RowKey, edge: Edge) -> bool {
        let mut new = false;
        let state = self.rows.entry(key.clone()).or_insert_with(|| {
            new = true;
            RowState::default()
        });
        if state.edges.contains(&edge) {
            return new;
        }
        state.edges.push(edge.clone());
        if let Some((_, undo)) = self.journal.last_mut() {
            undo.push(Undo::Added(key.clone(), edge.clone()));
        }
        self.log_edge(LOG_ADDED, key, &edge);
        if let (layer, Some(parent)) = edge {
            self.children
                .entry(parent)
                .or_default()
                .push((layer, key.clone()));
        }
        new
    }

    /// Adds the root edges of `layers` (ascending) that row `key` lacks, journaled and logged
    /// as one change; true when the row was not in the graph before.
    fn add_root_edges(&mut self, key: &RowKey, layers: &[LayerId]) -> bool {
        if let [layer] = layers {
            return self.add_edge(key, (*layer, None));
        }
        let mut new = false;
        let state = self.rows.entry(key.clone()).or_insert_with(|| {
            new = true;
            RowState::default()
        });
        let added: Vec<LayerId> = if new {
            layers.to_vec()
        } else {
            let mut have: Vec<LayerId> = state.edges.roots().collect();
            have.sort_unstable();
            layers
                .iter()
                .copied()
                .filter(|l| have.binary_search(l).is_err())
                .collect()
        };
        state.edges.extend_roots(&added);
        match added[..] {
            [] => {}
            [layer] => {
                if let Some((_, undo)) = self.journal.last_mut() {
                    undo.push(Undo::Added(key.clone(), (layer, None)));
                }
                self.log_edge(LOG_ADDED, key, &(layer, None));
            }
            _ => {
                self.log_roots(LOG_ADDED_ROOTS, key, &added);
                if let Some((_, undo)) = self.journal.last_mut() {
                    undo.push(Undo::AddedRoots(key.clone(), added.into()));
                }
            }
        }
        new
    }

    /// Removes the edges of `key` that `drop` selects, then what hung on them (the rows left
    /// with no edge become gone ops in `out`, except `key` itself).
    fn remove_edges(
        &mut self,
        key: &RowKey,
        mut drop: impl FnMut(&Edge) -> bool,
        out: &mut Vec<PlanOp>,
    ) {
        let Some(state) = self.rows.get_mut(key) else {
            return;
        };
        let mut removed = Vec::new();
        state.edges.retain(|e| {
            if drop(e) {
                removed.push(e.clone());
                false
            } else {
                true
            }
        });
        if removed.is_empty() {
            return;
        }
        // The root edges as one change when there are several, the others one by one.
        let roots: Vec<LayerId> = removed
            .iter()
            .filter(|(_, p)| p.is_none())
            .map(|(l, _)| *l)
            .collect();
        let grouped = roots.len() > 1;
        for edge in &removed {
            if !(grouped && edge.1.is_none()) {
                self.log_edge(LOG_REMOVED, key, edge);
            }
        }
        if grouped {
            self.log_roots(LOG_REMOVED_ROOTS, key, &roots);
        }
        if let Some((_, undo)) = self.journal.last_mut() {
            undo.extend(
                removed
                    .iter()
                    .filter(|e| !(grouped && e.1.is_none()))
                    .map(|e| Undo::Removed(key.clone(), e.clone())),
            );
            if grouped {
                undo.push(Undo::RemovedRoots(key.clone(), roots.into()));
            }
        }
        for (layer, parent) in &removed {
            if let Some(parent) = parent {
                if let Some(kids) = self.children.get_mut(parent) {
                    kids.retain(|(l, k)| !(l == layer && k == key));
                    if kids.is_empty() {
                        self.children.remove(parent);
                    }
                }
            }
        }
        let left: HashSet<LayerId> = self.rows[key].edges.layers().collect();
        let lost: HashSet<LayerId> = removed
            .iter()
            .map(|(l, _)| *l)
            .filter(|l| !left.contains(l))
            .collect();
        if left.is_empty() {
            self.rows.remove(key);
        }
        self.cascade(key, &lost, out);
    }

    /// `key` left the layers in `lost`: the rows of their child layers that hung on it lose
    /// that edge, and a row left with none is gone.
    fn cascade(&mut self, key: &RowKey, lost: &HashSet<LayerId>, out: &mut Vec<PlanOp>) {
        if lost.is_empty() {
            return;
        }
        let child_layers: HashSet<LayerId> = lost
            .iter()
            .filter_map(|l| self.layers.get(*l).and_then(Option::as_ref))
            .flat_map(|l| l.children.iter().copied())
            .collect();
        let Some(kids) = self.children.get(key) else {
            return;
        };
        let affected: Vec<(LayerId, RowKey)> = kids
            .iter()
            .filter(|(l, _)| child_layers.contains(l))
            .cloned()
            .collect();
        for (layer, child) in affected {
            let had = self.rows.contains_key(&child);
            self.remove_edges(&child, |(l, p)| *l == layer && p.as_ref() == Some(key), out);
            if had && !self.rows.contains_key(&child) {
                self.push_gone(&child, out);
            }
        }
        // Needs recorded for `key` in those layers are void.
        for targets in self.needs.values_mut() {
            targets.retain(|(l, holder)| !(holder == key && child_layers.contains(l)));
        }
        self.needs.retain(|_, v| !v.is_empty());
    }

    fn push_gone(&self, key: &RowKey, out: &mut Vec<PlanOp>) {
        // A value's wire text is the key's text: the key is all a gone op carries.
        let table = &self.tables[key.table];
        let relation = table.relation.clone();
        let mut row: Vec<Datum> = vec![Datum::Value(Value::Null); relation.columns.len()];
        for (&col, text) in table.pk.iter().zip(key.values()) {
            row[col] = Datum::Value(Value::Text(text.into()));
        }
        out.push(PlanOp::Gone {
            relation,
            row: row.into(),
            pk: table.pk.clone().into(),
            key: key.clone(),
        });
    }

    /// The rows the layers under `layer` hanging on row `key` need: many-to-one targets are
    /// linked or recorded as needs; one-to-many children are returned as move-ins when
    /// `fetch_children` (the row moved in: its children exist in Postgres already).
    fn follow_children(
        &mut self,
        key: &RowKey,
        layer: LayerId,
        row: &[Datum],
        fetch_children: bool,
        plan: &mut Plan,
        new_needs: &mut Vec<RowKey>,
    ) {
        let children = self.layer(layer).children.clone();
        for child in children {
            let (link, table) = {
                let l = self.layer(child);
                (l.link.clone(), l.table)
            };
            match link {
                Link::Parents { fk } => {
                    let Some(target) = self.key_at(table, row, &fk) else {
                        continue;
                    };
                    let edge = (child, Some(key.clone()));
                    if self.rows.contains_key(&target) {
                        self.add_edge(&target, edge);
                    } else {
                        let waiting = self.needs.entry(target.clone()).or_default();
                        if !waiting.contains(&(child, key.clone())) {
                            waiting.push((child, key.clone()));
                        }
                        new_needs.push(target);
                    }
                }
                Link::Children { .. } => {
                    if fetch_children {
                        push_move_in(plan, child, key.values());
                    }
                }
                Link::Root => {}
            }
        }
    }

    /// What transaction `txn` means for this client.
    pub fn process(&mut self, txn: &ElectricTransaction) -> Plan {
        self.process_shared(txn, &mut FilterMemo::default())
    }

    /// [`ShapeGraph::process`], with the where clauses' results on the transaction's rows taken
    /// from (and added to) `memo`, which other graphs processing the same transaction share.
    pub fn process_shared(&mut self, txn: &ElectricTransaction, memo: &mut FilterMemo) -> Plan {
        memo.start(txn);
        let mut plan = Plan::default();
        if self.tables.iter().all(|t| t.layers.is_empty()) {
            return plan;
        }
        let mut tx_rows = TxRows {
            written: HashMap::new(),
            referenced: HashMap::new(),
        };
        let mut new_needs: Vec<RowKey> = Vec::new();
        // Children whose parent was not in the graph when they came: retried at the end.
        let mut waiting_children: Vec<(usize, LayerId, RowKey)> = Vec::new();

        for (i, change) in txn.changes.iter().enumerate() {
            let relation = change.change.relation();
            let Some(table) = self.table_of(relation) else {
                continue;
            };
            if self.tables[table].layers.is_empty() {
                continue;
            }
            match &change.change {
                Change::Insert { new, .. } => {
                    let Some(key) = self.pk_key(table, new) else {
                        continue;
                    };
                    tx_rows
                        .written
                        .insert(key.clone(), (new, None, change.tags.clone()));
                    self.upsert(
                        i,
                        change,
                        table,
                        key,
                        None,
                        new,
                        &mut plan,
                        &mut new_needs,
                        &mut waiting_children,
                        memo,
                    );
                }
                Change::Update { old, new, .. } => {
                    let old = old.as_ref().map(|o| &o.row[..]);
                    let Some(key) = self
                        .pk_key(table, new)
                        .or_else(|| old.and_then(|o| self.pk_key(table, o)))
                    else {
                        continue;
                    };
                    if let Some(old_key) = old.and_then(|o| self.pk_key(table, o)) {
                        if old_key != key && self.rows.contains_key(&old_key) {
                            // A changed primary key: the old row is gone.
                            self.remove_edges(&old_key, |_| true, &mut plan.ops);
                            self.push_gone(&old_key, &mut plan.ops);
                        }
                    }
                    tx_rows
                        .written
                        .insert(key.clone(), (new, old, change.tags.clone()));
                    self.upsert(
                        i,
                        change,
                        table,
                        key,
                        old,
                        new,
                        &mut plan,
                        &mut new_needs,
                        &mut waiting_children,
                        memo,
                    );
                }
                Change::Delete { old, .. } => {
                    let Some(key) = self.pk_key(table, &old.row) else {
                        continue;
                    };
                    tx_rows.written.remove(&key);
                    if self.rows.contains_key(&key) {
                        plan.ops.push(PlanOp::Change(i));
                        self.remove_edges(&key, |_| true, &mut plan.ops);
                    }
                }
                Change::Truncate { .. } => {}
            }
        }

        for record in &txn.referenced {
            if let Some(&table) = self
                .table_ids
                .get(&(record.schema.clone(), record.table.clone()))
            {
                let mut buf = Vec::new();
                for v in &record.pk {
                    push_key_part(&mut buf, v.as_bytes());
                }
                tx_rows.referenced.insert(
                    RowKey {
                        table,
                        pk: buf.into(),
                    },
                    record,
                );
            }
        }

        // Children that came before their parent.
        for (i, layer, key) in waiting_children {
            let change = &txn.changes[i];
            let Some(new) = change_new_row(&change.change) else {
                continue;
            };
            let (table, parent_layer, fk) = {
                let l = self.layer(layer);
                match &l.link {
                    Link::Children { fk } => (l.table, l.parent, fk.clone()),
                    _ => continue,
                }
            };
            let Some(parent_layer) = parent_layer else {
                continue;
            };
            let parent_table = self.layer(parent_layer).table;
            let Some(parent) = self.key_at(parent_table, new, &fk) else {
                continue;
            };
            if self.has_edge_in(&parent, parent_layer) && self.passes(layer, table, new) {
                let was = self.rows.contains_key(&key);
                self.add_edge(&key, (layer, Some(parent)));
                if !was {
                    plan.ops.push(insert_of(change, new));
                }
                self.follow_children(&key, layer, new, false, &mut plan, &mut new_needs);
            }
        }

        self.resolve_needs(&tx_rows, &mut plan, new_needs);
        self.dedupe_gones(&mut plan.ops);
        plan
    }

    /// One gone per row, and none for a row the client still has (cycles in the graph can
    /// report a row twice, or report a row that came back later in the transaction).
    fn dedupe_gones(&self, ops: &mut Vec<PlanOp>) {
        let mut seen = HashSet::new();
        ops.retain(|op| match op {
            PlanOp::Gone { key, .. } => !self.rows.contains_key(key) && seen.insert(key.clone()),
            _ => true,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn upsert(
        &mut self,
        index: usize,
        change: &ElectricChange,
        table: TableId,
        key: RowKey,
        old: Option<&[Datum]>,
        new: &[Datum],
        plan: &mut Plan,
        new_needs: &mut Vec<RowKey>,
        waiting_children: &mut Vec<(usize, LayerId, RowKey)>,
        memo: &mut FilterMemo,
    ) {
        let before = self.rows.contains_key(&key);
        if self.tables[table].flat {
            // Root layers with nothing under them: the where clauses alone decide, and the
            // row's edges change as one set.
            let mut passing = Vec::with_capacity(self.tables[table].layers.len());
            if self.visible(table, new) {
                for &layer in &self.tables[table].layers {
                    if memo.matches(&self.layer(layer).filter, index, new) {
                        passing.push(layer);
                    }
                }
            }
            debug_assert!(passing.is_sorted());
            let mut cascaded = Vec::new();
            if before {
                let keep = |(l, _): &Edge| passing.binary_search(l).is_ok();
                self.remove_edges(&key, |e| !keep(e), &mut cascaded);
            }
            let after = !passing.is_empty();
            if after {
                self.add_root_edges(&key, &passing);
            }
            match (before, after) {
                (true, true) => plan.ops.push(PlanOp::Change(index)),
                (false, true) => plan.ops.push(insert_or_change(index, change, new)),
                (true, false) if old.is_some() => self.push_gone(&key, &mut plan.ops),
                _ => {}
            }
            plan.ops.append(&mut cascaded);
            return;
        }
        let layers_before: HashSet<LayerId> = self
            .rows
            .get(&key)
            .map(|s| s.edges.layers().collect())
            .unwrap_or_default();
        let mut cascaded = Vec::new();
        let visible = self.visible(table, new);
        for layer in self.tables[table].layers.clone() {
            let passes = visible && memo.matches(&self.layer(layer).filter, index, new);
            let (link, parent_layer) = {
                let l = self.layer(layer);
                (l.link.clone(), l.parent)
            };
            match link {
                Link::Root => {
                    if passes {
                        self.add_edge(&key, (layer, None));
                    } else {
                        self.remove_edges(&key, |(l, _)| *l == layer, &mut cascaded);
                    }
                }
                Link::Children { fk } => {
                    let parent_layer = parent_layer.expect("a child layer has a parent");
                    let parent_table = self.layer(parent_layer).table;
                    let parent = self.key_at(parent_table, new, &fk);
                    let attach = passes
                        && parent
                            .as_ref()
                            .is_some_and(|p| self.has_edge_in(p, parent_layer));
                    self.remove_edges(
                        &key,
                        |(l, p)| *l == layer && !(attach && p.as_ref() == parent.as_ref()),
                        &mut cascaded,
                    );
                    if attach {
                        self.add_edge(&key, (layer, parent));
                    } else if passes && parent.is_some() {
                        waiting_children.push((index, layer, key.clone()));
                    }
                }
                Link::Parents { .. } => {
                    if !passes {
                        self.remove_edges(&key, |(l, _)| *l == layer, &mut cascaded);
                    } else if let Some(waiting) = self.needs.remove(&key) {
                        // A row other rows of the client need, written in this transaction.
                        let (mine, rest): (Vec<_>, Vec<_>) =
                            waiting.into_iter().partition(|(l, _)| *l == layer);
                        if !rest.is_empty() {
                            self.needs.insert(key.clone(), rest);
                        }
                        for (l, holder) in mine {
                            if self.rows.contains_key(&holder) {
                                self.add_edge(&key, (l, Some(holder)));
                            }
                        }
                    }
                }
            }
        }
        let after = self.rows.contains_key(&key);
        match (before, after) {
            (true, true) => plan.ops.push(PlanOp::Change(index)),
            (false, true) => plan.ops.push(insert_or_change(index, change, new)),
            (true, false) => {
                if old.is_some() {
                    self.push_gone(&key, &mut plan.ops);
                }
            }
            (false, false) => {}
        }
        plan.ops.append(&mut cascaded);
        if after {
            let layers_after: Vec<LayerId> = self.rows[&key].edges.layers().collect();
            let mut seen = HashSet::new();
            for layer in layers_after {
                if seen.insert(layer) {
                    // Only a row that moved into the layer has children in Postgres to fetch; a
                    // new row's children come in later changes of the transaction.
                    let moved_in = old.is_some() && !layers_before.contains(&layer);
                    self.follow_children(&key, layer, new, moved_in, plan, new_needs);
                }
            }
        }
    }

    /// Brings in the rows the client now needs: from the transaction's own rows or its
    /// referenced records when they are there, else as move-ins.
    fn resolve_needs(&mut self, tx_rows: &TxRows<'_>, plan: &mut Plan, mut pending: Vec<RowKey>) {
        let mut fetch: Vec<RowKey> = Vec::new();
        while let Some(target) = pending.pop() {
            if self.rows.contains_key(&target) {
                // Linked meanwhile: add the edges still waiting.
                if let Some(waiting) = self.needs.remove(&target) {
                    for (layer, holder) in waiting {
                        if self.rows.contains_key(&holder) {
                            self.add_edge(&target, (layer, Some(holder)));
                        }
                    }
                }
                continue;
            }
            let Some(waiting) = self.needs.get(&target).cloned() else {
                continue;
            };
            let table = target.table;
            let row: Option<(Box<[Datum]>, Tags)> =
                if let Some((new, old, tags)) = tx_rows.written.get(&target) {
                    Some((merged_row(new, *old), tags.clone()))
                } else {
                    tx_rows
                        .referenced
                        .get(&target)
                        .map(|r| (self.row_from_text(table, &r.data), r.tags.clone()))
                };
            let Some((row, tags)) = row else {
                fetch.push(target);
                continue;
            };
            self.needs.remove(&target);
            let mut linked = Vec::new();
            for (layer, holder) in waiting {
                if self.rows.contains_key(&holder) && self.passes(layer, table, &row) {
                    self.add_edge(&target, (layer, Some(holder)));
                    linked.push(layer);
                }
            }
            if linked.is_empty() {
                continue;
            }
            for layer in linked {
                self.follow_children(&target, layer, &row, false, plan, &mut pending);
            }
            plan.ops.push(PlanOp::Insert {
                relation: self.tables[table].relation.clone(),
                row,
                tags,
            });
        }
        // Needed rows the transaction does not carry: fetched by layer.
        let mut by_layer: HashMap<LayerId, Vec<Vec<String>>> = HashMap::new();
        for target in fetch {
            if let Some(waiting) = self.needs.get(&target) {
                let layers: HashSet<LayerId> = waiting.iter().map(|(l, _)| *l).collect();
                for layer in layers {
                    by_layer.entry(layer).or_default().push(target.values());
                }
            }
        }
        let mut layers: Vec<_> = by_layer.into_iter().collect();
        layers.sort_by_key(|(l, _)| *l);
        for (layer, keys) in layers {
            for key in keys {
                push_move_in(plan, layer, key);
            }
        }
    }

    /// A row of `table` from text values by column name (a referenced record, or a row read
    /// from Postgres as text); columns it lacks are NULL, values that do not decode stay text.
    fn row_from_text(&self, table: TableId, data: &[(String, Option<String>)]) -> Box<[Datum]> {
        let relation = &self.tables[table].relation;
        relation
            .columns
            .iter()
            .map(|c| {
                let text = data
                    .iter()
                    .find(|(n, _)| n == &c.name)
                    .and_then(|(_, v)| v.as_deref());
                Datum::Value(match text {
                    None => Value::Null,
                    Some(t) => decode_text(c.kind, t.as_bytes())
                        .map(Value::into_owned)
                        .unwrap_or_else(|_| Value::Text(t.to_owned().into())),
                })
            })
            .collect()
    }

    /// Adds rows read from Postgres for `layer` (a new subscription's data or a move-in), each
    /// with its tags and its values as text in table column order. Rows the client does not
    /// have yet (all of them with `resend`: data the client lost) are queued for
    /// [`ShapeGraph::take_data`]. Returns the keys, per many-to-one
    /// child layer, of the rows these rows reference and the client still lacks.
    pub fn add_rows(
        &mut self,
        layer: LayerId,
        rows: Vec<(Tags, Vec<Option<String>>)>,
        resend: bool,
    ) -> Vec<MoveIn> {
        self.add_rows_queued(
            layer,
            rows.iter()
                .map(|(tags, values)| (tags.clone(), values.iter().map(Option::as_deref), ())),
            resend,
        )
    }

    /// [`ShapeGraph::add_rows`] of rows read by a `COPY` ([`TextRows`]), without a `String`
    /// per value.
    pub fn add_text_rows(&mut self, layer: LayerId, rows: &TextRows, resend: bool) -> Vec<MoveIn> {
        self.add_text_rows_range(layer, rows, 0..rows.len(), resend)
    }

    /// [`ShapeGraph::add_text_rows`] of the rows at `range` only (clamped to the rows there
    /// are): a large layer added in parts gives the same graph as added at once.
    pub fn add_text_rows_range(
        &mut self,
        layer: LayerId,
        rows: &TextRows,
        range: std::ops::Range<usize>,
        resend: bool,
    ) -> Vec<MoveIn> {
        let end = range.end.min(rows.len());
        let start = range.start.min(end);
        self.add_rows_queued(
            layer,
            (start..end).map(|i| {
                let (tags, values) = rows.row(i);
                (tags.clone(), values, ())
            }),
            resend,
        )
    }

    /// Adds rows, queueing those the client gets for [`ShapeGraph::take_data`].
    fn add_rows_queued<'v, R, V>(&mut self, layer: LayerId, rows: R, resend: bool) -> Vec<MoveIn>
    where
        R: IntoIterator<Item = (Tags, V, ())>,
        V: Iterator<Item = Option<&'v str>>,
    {
        let relation = self.tables[self.layer(layer).table].relation.clone();
        let mut queued = Vec::new();
        let move_ins = self.add_rows_from(layer, rows, resend, None, |row, tags, ()| {
            queued.push(PlanOp::Insert {
                relation: relation.clone(),
                row,
                tags,
            });
        });
        self.data.append(&mut queued);
        move_ins
    }

    /// [`ShapeGraph::add_text_rows_range`], except that the rows the client gets are written
    /// into `framer` as insert ops straight from their text (after whatever
    /// [`ShapeGraph::take_data`] still had, pushed first so the order stays), not queued.
    /// Only the values the graph reads (key, owner, where clause, links) are decoded.
    pub fn add_text_rows_framed(
        &mut self,
        layer: LayerId,
        rows: &TextRows,
        range: std::ops::Range<usize>,
        resend: bool,
        framer: &mut DataFramer,
    ) -> Result<Vec<MoveIn>, EncodeError> {
        for op in std::mem::take(&mut self.data) {
            if let Some(op) = op.data_op() {
                framer.push_op(op)?;
            }
        }
        let end = range.end.min(rows.len());
        let start = range.start.min(end);
        let needed = self.columns_read(layer);
        let relation = self.tables[self.layer(layer).table].relation.clone();
        let mut failed = None;
        let move_ins = self.add_rows_from(
            layer,
            (start..end).map(|i| {
                let (tags, values) = rows.row(i);
                (tags.clone(), values, i)
            }),
            resend,
            Some(&needed),
            |_, tags, i| {
                if failed.is_none() {
                    let (_, values) = rows.row(i);
                    failed = framer.push_text_insert(&relation, values, &tags).err();
                }
            },
        );
        match failed {
            Some(e) => Err(e),
            None => Ok(move_ins),
        }
    }

    /// Which columns of `layer`'s rows the graph reads when adding them: the key, the owner
    /// and the where clause's columns of a root layer without children; every column else.
    fn columns_read(&self, layer: LayerId) -> Vec<bool> {
        let l = self.layer(layer);
        let table = &self.tables[l.table];
        let n = table.relation.columns.len();
        if !matches!(l.link, Link::Root) || !l.children.is_empty() {
            return vec![true; n];
        }
        let mut read = vec![false; n];
        for &i in table
            .pk
            .iter()
            .chain(table.owner.iter())
            .chain(l.filter.referenced_columns())
        {
            if let Some(r) = read.get_mut(i) {
                *r = true;
            }
        }
        read
    }

    /// Adds rows; `needed` (when given) marks the columns to decode, the others are read as
    /// NULL; `emit` gets each row the client gets (decoded as far as `needed` says), its tags
    /// and its extra item.
    fn add_rows_from<'v, R, V, E>(
        &mut self,
        layer: LayerId,
        rows: R,
        resend: bool,
        needed: Option<&[bool]>,
        mut emit: impl FnMut(Box<[Datum]>, Tags, E),
    ) -> Vec<MoveIn>
    where
        R: IntoIterator<Item = (Tags, V, E)>,
        V: Iterator<Item = Option<&'v str>>,
    {
        let (table, link, parent_layer) = {
            let l = self.layer(layer);
            (l.table, l.link.clone(), l.parent)
        };
        let relation = self.tables[table].relation.clone();
        let mut plan = Plan::default();
        let mut needs = Vec::new();
        for (tags, values, extra) in rows {
            let row: Box<[Datum]> = relation
                .columns
                .iter()
                .zip(values.chain(std::iter::repeat(None)))
                .enumerate()
                .map(|(i, (c, text))| {
                    Datum::Value(match text {
                        None => Value::Null,
                        Some(_) if needed.is_some_and(|n| !n[i]) => Value::Null,
                        Some(t) => decode_text(c.kind, t.as_bytes())
                            .map(Value::into_owned)
                            .unwrap_or_else(|_| Value::Text(t.to_owned().into())),
                    })
                })
                .collect();
            let Some(key) = self.pk_key(table, &row) else {
                continue;
            };
            // The query selected with the filter's SQL; the filter itself decides, as it does
            // for the live stream.
            if !self.passes(layer, table, &row) {
                continue;
            }
            let edges: Vec<Edge> = match &link {
                Link::Root => vec![(layer, None)],
                Link::Children { fk } => {
                    let Some(parent_layer) = parent_layer else {
                        continue;
                    };
                    let parent_table = self.layer(parent_layer).table;
                    match self.key_at(parent_table, &row, fk) {
                        Some(p) if self.has_edge_in(&p, parent_layer) => vec![(layer, Some(p))],
                        _ => continue,
                    }
                }
                Link::Parents { .. } => {
                    let Some(waiting) = self.needs.remove(&key) else {
                        continue;
                    };
                    let (mine, rest): (Vec<_>, Vec<_>) =
                        waiting.into_iter().partition(|(l, _)| *l == layer);
                    if !rest.is_empty() {
                        self.needs.insert(key.clone(), rest);
                    }
                    mine.into_iter()
                        .filter(|(_, h)| self.rows.contains_key(h))
                        .map(|(l, h)| (l, Some(h)))
                        .collect()
                }
            };
            if edges.is_empty() {
                continue;
            }
            // Whether the row is new, from the first edge's lookup (a second lookup in a
            // million-row map was a tenth of the time of adding a large shape).
            let mut new = false;
            for (n, edge) in edges.into_iter().enumerate() {
                let added = self.add_edge(&key, edge);
                if n == 0 {
                    new = added;
                }
            }
            self.follow_children(&key, layer, &row, false, &mut plan, &mut needs);
            if new || resend {
                emit(row, tags, extra);
            }
        }
        // Rows needed that are already in the graph got linked by follow_children.
        let mut by_layer: HashMap<LayerId, Vec<Vec<String>>> = HashMap::new();
        let mut seen = HashSet::new();
        for target in needs {
            if !seen.insert(target.clone()) {
                continue;
            }
            if let Some(waiting) = self.needs.get(&target) {
                let layers: HashSet<LayerId> = waiting.iter().map(|(l, _)| *l).collect();
                for l in layers {
                    by_layer.entry(l).or_default().push(target.values());
                }
            }
        }
        let mut out: Vec<MoveIn> = by_layer
            .into_iter()
            .map(|(layer, keys)| MoveIn { layer, keys })
            .collect();
        out.sort_by_key(|m| m.layer);
        out
    }

    /// The ops queued by [`ShapeGraph::add_rows`] and [`ShapeGraph::remove_subscription`].
    pub fn take_data(&mut self) -> Vec<PlanOp> {
        std::mem::take(&mut self.data)
    }

    /// Removes a subscription's layers. Rows left with no edge are queued as gone ops for
    /// [`ShapeGraph::take_data`]; returns how many.
    pub fn remove_subscription(&mut self, subscription: &str) -> usize {
        let ids: HashSet<LayerId> = self
            .layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                l.as_ref()
                    .filter(|l| l.subscription == subscription)
                    .map(|_| i)
            })
            .collect();
        if ids.is_empty() {
            return 0;
        }
        let keys: Vec<RowKey> = self
            .rows
            .iter()
            .filter(|(_, s)| s.edges.layers().any(|l| ids.contains(&l)))
            .map(|(k, _)| k.clone())
            .collect();
        let mut gone = Vec::new();
        for key in keys {
            if !self.rows.contains_key(&key) {
                continue; // already gone through a cascade
            }
            self.remove_edges(&key, |(l, _)| ids.contains(l), &mut gone);
            if !self.rows.contains_key(&key) {
                self.push_gone(&key, &mut gone);
            }
        }
        for targets in self.needs.values_mut() {
            targets.retain(|(l, _)| !ids.contains(l));
        }
        self.needs.retain(|_, v| !v.is_empty());
        for id in &ids {
            if let Some(layer) = self.layers[*id].take() {
                self.tables[layer.table].layers.retain(|l| l != id);
            }
        }
        self.refresh_flat();
        self.dedupe_gones(&mut gone);
        let n = gone.len();
        self.data.append(&mut gone);
        n
    }
}

impl ShapeGraph {
    /// Starts recording the changes made from position `position` on (the transaction about to
    /// be processed), so that the graph can be taken back to the position before it.
    pub fn begin_step(&mut self, position: u64) {
        match self.journal.last_mut() {
            Some((p, _)) if *p >= position => {}
            // An empty step undoes nothing: it moves on instead of piling up (a client that
            // acknowledges nothing would otherwise keep one per transaction of the log).
            Some((p, undo)) if undo.is_empty() => *p = position,
            _ => self.journal.push((position, Vec::new())),
        }
    }

    /// Forgets how to undo what happened up to `position` (acknowledged by the client).
    pub fn acknowledge(&mut self, position: u64) {
        let before = self.journal.len();
        self.journal.retain(|(p, _)| *p > position);
        if self.journal.len() != before {
            self.log_position(LOG_ACK, position);
        }
    }

    /// Takes the graph back to what it was at `position`: every step after it is undone.
    /// Rows still awaited by pending move-ins are forgotten.
    pub fn rollback(&mut self, position: u64) {
        if self.journal.last().is_some_and(|(p, _)| *p > position) {
            self.log_position(LOG_ROLLBACK, position);
        }
        self.undo_after(position);
        self.needs.clear();
        self.data.clear();
    }

    /// Undoes every step after `position`.
    fn undo_after(&mut self, position: u64) {
        while let Some((p, _)) = self.journal.last() {
            if *p <= position {
                break;
            }
            let (_, undo) = self.journal.pop().expect("a step");
            for op in undo.into_iter().rev() {
                match op {
                    Undo::Added(key, edge) => {
                        self.unlink(&key, &edge);
                    }
                    Undo::Removed(key, edge) => {
                        self.link(&key, edge);
                    }
                    Undo::AddedRoots(key, layers) => {
                        for &l in layers.iter().rev() {
                            self.unlink(&key, &(l, None));
                        }
                    }
                    Undo::RemovedRoots(key, layers) => {
                        for &l in layers.iter() {
                            self.link(&key, (l, None));
                        }
                    }
                }
            }
        }
    }

    /// Adds an edge with no journal and no cascade (none of a removed layer); true when the
    /// row did not have it.
    fn link(&mut self, key: &RowKey, edge: Edge) -> bool {
        if self.layers.get(edge.0).and_then(Option::as_ref).is_none() {
            return false;
        }
        let state = self.rows.entry(key.clone()).or_default();
        if state.edges.contains(&edge) {
            return false;
        }
        state.edges.push(edge.clone());
        if let (layer, Some(parent)) = edge {
            self.children
                .entry(parent)
                .or_default()
                .push((layer, key.clone()));
        }
        true
    }

    /// Removes an edge with no journal and no cascade; true when the row had it.
    fn unlink(&mut self, key: &RowKey, edge: &Edge) -> bool {
        let mut had = false;
        if let Some(state) = self.rows.get_mut(key) {
            let before = state.edges.len();
            state.edges.retain(|e| e != edge);
            had = state.edges.len() != before;
            if state.edges.is_empty() {
                self.rows.remove(key);
            }
        }
        if let (layer, Some(parent)) = edge {
            if let Some(kids) = self.children.get_mut(parent) {
                kids.retain(|(l, k)| !(l == layer && k == key));
                if kids.is_empty() {
                    self.children.remove(parent);
                }
            }
        }
        had
    }

    /// The rows and edges, with the journal of the steps not yet acknowledged, in a form
    /// [`ShapeGraph::import`] reads (tables by name, layers by their stable labels), to store
    /// and resume from after a restart.
    pub fn export(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let live: Vec<_> = self
            .rows
            .iter()
            .filter(|(_, s)| !s.edges.is_empty())
            .collect();
        out.extend_from_slice(&(live.len() as u32).to_le_bytes());
        for (key, state) in live {
            self.write_key(key, &mut out);
            let edges: Vec<_> = state
                .edges
                .to_vec()
                .into_iter()
                .filter(|e| self.live_layer(e.0))
                .collect();
            out.extend_from_slice(&(edges.len() as u32).to_le_bytes());
            for edge in &edges {
                self.write_edge(edge, &mut out);
            }
        }
        out.extend_from_slice(&(self.journal.len() as u32).to_le_bytes());
        for (position, undo) in &self.journal {
            out.extend_from_slice(&position.to_le_bytes());
            let ops: Vec<_> = undo
                .iter()
                .flat_map(Undo::edges)
                .filter(|(_, _, e)| self.live_layer(e.0))
                .collect();
            out.extend_from_slice(&(ops.len() as u32).to_le_bytes());
            for (added, key, edge) in ops {
                out.push(if added { 0 } else { 1 });
                self.write_key(key, &mut out);
                self.write_edge(&edge, &mut out);
            }
        }
        out
    }

    fn live_layer(&self, layer: LayerId) -> bool {
        self.layers.get(layer).is_some_and(Option::is_some)
    }

    fn write_edge(&self, (layer, parent): &Edge, out: &mut Vec<u8>) {
        let label = self.layers[*layer]
            .as_ref()
            .map_or("", |l| l.label.as_str());
        write_bytes(out, label.as_bytes());
        match parent {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                self.write_key(p, out);
            }
        }
    }

    fn write_key(&self, key: &RowKey, out: &mut Vec<u8>) {
        let relation = &self.tables[key.table].relation;
        write_bytes(out, relation.namespace.as_bytes());
        write_bytes(out, relation.name.as_bytes());
        write_bytes(out, &key.pk);
    }

    /// Adds the rows, edges and journal of an [`ShapeGraph::export`] whose tables and layers
    /// this graph has (the same subscriptions added again); returns how many rows. Anything
    /// else is skipped. Fails only on bytes that are not an export.
    pub fn import(&mut self, data: &[u8]) -> Result<usize, ImportError> {
        let labels: HashMap<String, LayerId> = self
            .layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.as_ref().map(|l| (l.label.clone(), i)))
            .collect();
        let mut r = Reader(data);
        let n = r.u32()?;
        let mut count = 0;
        for _ in 0..n {
            let key = self.read_key(&mut r)?;
            let edges = r.u32()?;
            for _ in 0..edges {
                let edge = self.read_edge(&mut r, &labels)?;
                if let (Some(key), Some(edge)) = (&key, edge) {
                    self.link(key, edge);
                }
            }
            count += usize::from(key.is_some());
        }
        let steps = r.u32()?;
        for _ in 0..steps {
            let position = r.u64()?;
            let ops = r.u32()?;
            let mut undo = Vec::new();
            for _ in 0..ops {
                let kind = r.u8()?;
                let key = self.read_key(&mut r)?;
                let edge = self.read_edge(&mut r, &labels)?;
                if let (Some(key), Some(edge)) = (key, edge) {
                    undo.push(if kind == 0 {
                        Undo::Added(key, edge)
                    } else {
                        Undo::Removed(key, edge)
                    });
                }
            }
            self.journal.push((position, undo));
        }
        Ok(count)
    }

    fn read_edge(
        &self,
        r: &mut Reader<'_>,
        labels: &HashMap<String, LayerId>,
    ) -> Result<Option<Edge>, ImportError> {
        let label = String::from_utf8_lossy(r.bytes()?).into_owned();
        let parent = match r.u8()? {
            0 => None,
            _ => match self.read_key(r)? {
                Some(p) => Some(p),
                None => return Ok(None),
            },
        };
        Ok(labels.get(&label).map(|&layer| (layer, parent)))
    }

    fn read_key(&self, r: &mut Reader<'_>) -> Result<Option<RowKey>, ImportError> {
        let schema = String::from_utf8_lossy(r.bytes()?).into_owned();
        let name = String::from_utf8_lossy(r.bytes()?).into_owned();
        let pk = r.bytes()?;
        Ok(self.table_ids.get(&(schema, name)).map(|&table| RowKey {
            table,
            pk: pk.into(),
        }))
    }
}

impl ShapeGraph {
    /// Records an edge change in the log (after the journal took it): the journal step it
    /// went to first, when the replay may not know it.
    fn log_edge(&mut self, kind: u8, key: &RowKey, (layer, parent): &Edge) {
        self.log_step();
        let table = self.log_table(key.table);
        let layer_id = self.log_layer(*layer);
        let parent_table = parent.as_ref().map(|p| self.log_table(p.table));
        let out = &mut self.log.bytes;
        // Room for the whole change at once (a large shape logs a million of them).
        out.reserve(24 + key.pk.len() + parent.as_ref().map_or(0, |p| p.pk.len() + 12));
        out.push(kind);
        push_varint(out, u64::from(table));
        push_log_pk(out, &key.pk);
        push_varint(out, u64::from(layer_id));
        match (parent, parent_table) {
            (Some(p), Some(t)) => {
                out.push(1);
                push_varint(out, u64::from(t));
                push_log_pk(out, &p.pk);
            }
            _ => out.push(0),
        }
    }

    /// The journal step the next edge changes go to, when the replay may not know it.
    fn log_step(&mut self) {
        let step = self.journal.last().map(|(p, _)| *p);
        if step.is_some() && step != self.log.step {
            self.log.bytes.push(LOG_STEP);
            self.log
                .bytes
                .extend_from_slice(&step.unwrap_or(0).to_le_bytes());
            self.log.step = step;
        }
    }

    /// Records root edges of several layers added to (or removed from) one row as one change.
    fn log_roots(&mut self, kind: u8, key: &RowKey, layers: &[LayerId]) {
        self.log_step();
        let table = self.log_table(key.table);
        let ids: Vec<u32> = layers.iter().map(|&l| self.log_layer(l)).collect();
        let out = &mut self.log.bytes;
        out.reserve(16 + key.pk.len() + 2 * ids.len());
        out.push(kind);
        push_varint(out, u64::from(table));
        push_log_pk(out, &key.pk);
        push_varint(out, ids.len() as u64);
        for id in ids {
            push_varint(out, u64::from(id));
        }
    }

    /// An acknowledgement or rollback in the log; the replay's step is unknown after it.
    fn log_position(&mut self, kind: u8, position: u64) {
        self.log.bytes.push(kind);
        self.log.bytes.extend_from_slice(&position.to_le_bytes());
        self.log.step = None;
    }

    fn log_table(&mut self, table: TableId) -> u32 {
        if let Some(&id) = self.log.tables.get(&table) {
            return id;
        }
        let id = self.log.tables.len() as u32;
        self.log.tables.insert(table, id);
        let relation = &self.tables[table].relation;
        let out = &mut self.log.bytes;
        out.push(LOG_TABLE);
        push_varint(out, u64::from(id));
        write_bytes(out, relation.namespace.as_bytes());
        write_bytes(out, relation.name.as_bytes());
        id
    }

    fn log_layer(&mut self, layer: LayerId) -> u32 {
        if let Some(&id) = self.log.layers.get(layer).filter(|&&id| id != u32::MAX) {
            return id;
        }
        let id = self.log.layer_count;
        self.log.layer_count += 1;
        if self.log.layers.len() <= layer {
            self.log.layers.resize(layer + 1, u32::MAX);
        }
        self.log.layers[layer] = id;
        let label = self.layers[layer].as_ref().map_or("", |l| l.label.as_str());
        let out = &mut self.log.bytes;
        out.push(LOG_LAYER);
        push_varint(out, u64::from(id));
        write_bytes(out, label.as_bytes());
        id
    }

    /// Bytes of log not taken yet.
    pub fn log_len(&self) -> usize {
        self.log.bytes.len()
    }

    /// The changes logged since the last take (or [`ShapeGraph::export_base`]), for
    /// [`ShapeGraph::replay`]; the log starts again, empty.
    pub fn take_log(&mut self) -> Vec<u8> {
        let step = self.log.step;
        let log = std::mem::take(&mut self.log);
        self.log.step = step;
        log.bytes
    }

    /// [`ShapeGraph::export`], the log starting again from it: the base the pieces of log
    /// taken from now on apply to.
    pub fn export_base(&mut self) -> Vec<u8> {
        self.log = ChangeLog::default();
        self.export()
    }

    /// Applies a piece of log ([`ShapeGraph::take_log`]) to this graph, which holds what the
    /// graph that logged it held when the piece began (an import of its base and of every
    /// piece before). Changes of tables and layers this graph does not have are skipped.
    /// Returns how many edge changes were applied; fails only on bytes that are not a log.
    pub fn replay(&mut self, data: &[u8]) -> Result<usize, ImportError> {
        let labels: HashMap<&str, LayerId> = self
            .layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.as_ref().map(|l| (l.label.as_str(), i)))
            .collect();
        let mut tables: HashMap<u64, Option<TableId>> = HashMap::new();
        let mut layers: HashMap<u64, Option<LayerId>> = HashMap::new();
        let mut changes = Vec::new();
        let mut r = Reader(data);
        // Read whole first: the labels borrow the layers the changes then modify.
        while !r.0.is_empty() {
            match r.u8()? {
                LOG_TABLE => {
                    let id = r.varint()?;
                    let schema = String::from_utf8_lossy(r.bytes()?).into_owned();
                    let name = String::from_utf8_lossy(r.bytes()?).into_owned();
                    tables.insert(id, self.table_ids.get(&(schema, name)).copied());
                }
                LOG_LAYER => {
                    let id = r.varint()?;
                    let label = String::from_utf8_lossy(r.bytes()?);
                    layers.insert(id, labels.get(label.as_ref()).copied());
                }
                kind @ (LOG_ADDED | LOG_REMOVED) => {
                    let key = Self::log_key(&mut r, &tables)?;
                    let layer = layers.get(&r.varint()?).copied().flatten();
                    let parent = match r.u8()? {
                        0 => Some(None),
                        _ => Self::log_key(&mut r, &tables)?.map(Some),
                    };
                    if let (Some(key), Some(layer), Some(parent)) = (key, layer, parent) {
                        changes.push(Replayed::Edge(kind == LOG_ADDED, key, (layer, parent)));
                    }
                }
                kind @ (LOG_ADDED_ROOTS | LOG_REMOVED_ROOTS) => {
                    let key = Self::log_key(&mut r, &tables)?;
                    let n = r.varint()?;
                    for _ in 0..n {
                        let layer = layers.get(&r.varint()?).copied().flatten();
                        if let (Some(key), Some(layer)) = (&key, layer) {
                            changes.push(Replayed::Edge(
                                kind == LOG_ADDED_ROOTS,
                                key.clone(),
                                (layer, None),
                            ));
                        }
                    }
                }
                kind @ (LOG_STEP | LOG_ACK | LOG_ROLLBACK) => {
                    changes.push(Replayed::Position(kind, r.u64()?));
                }
                _ => return Err(ImportError(data.len() - r.0.len())),
            }
        }
        let mut applied = 0;
        for change in changes {
            match change {
                Replayed::Edge(true, key, edge) => {
                    if self.link(&key, edge.clone()) {
                        if let Some((_, undo)) = self.journal.last_mut() {
                            undo.push(Undo::Added(key, edge));
                        }
                        applied += 1;
                    }
                }
                Replayed::Edge(false, key, edge) => {
                    if self.unlink(&key, &edge) {
                        if let Some((_, undo)) = self.journal.last_mut() {
                            undo.push(Undo::Removed(key, edge));
                        }
                        applied += 1;
                    }
                }
                Replayed::Position(LOG_STEP, p) => self.begin_step(p),
                Replayed::Position(LOG_ACK, p) => self.journal.retain(|(q, _)| *q > p),
                Replayed::Position(_, p) => self.undo_after(p),
            }
        }
        // What the replay did is in the graph's stored form already: not logged again.
        self.log = ChangeLog::default();
        Ok(applied)
    }

    fn log_key(
        r: &mut Reader<'_>,
        tables: &HashMap<u64, Option<TableId>>,
    ) -> Result<Option<RowKey>, ImportError> {
        let table = tables.get(&r.varint()?).copied().flatten();
        let pk = read_log_pk(r)?;
        Ok(table.map(|table| RowKey { table, pk }))
    }
}

/// A change read from a log, resolved to this graph's tables and layers.
enum Replayed {
    Edge(bool, RowKey, Edge),
    Position(u8, u64),
}

/// A key in the log: a key of one canonical UUID (the usual key of an electrified table) as
/// its 16 bytes, 17 bytes in all instead of 41; any other as its bytes.
pub(crate) fn push_log_pk(out: &mut Vec<u8>, pk: &[u8]) {
    if let Some(uuid) = packed_uuid(pk) {
        out.push(1);
        out.extend_from_slice(&uuid);
    } else {
        out.push(0);
        push_varint(out, pk.len() as u64);
        out.extend_from_slice(pk);
    }
}

fn read_log_pk(r: &mut Reader<'_>) -> Result<Box<[u8]>, ImportError> {
    if r.u8()? == 1 {
        return Ok(unpacked_uuid(r.take(16)?).into());
    }
    let len = r.varint()? as usize;
    Ok(r.take(len)?.into())
}

/// The 16 bytes of a key made of one UUID in its canonical text (lowercase, hyphenated).
fn packed_uuid(pk: &[u8]) -> Option<[u8; 16]> {
    let text = pk.strip_prefix(&36u32.to_le_bytes())?;
    if text.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut nibbles = 0;
    for (i, &c) in text.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        out[nibbles / 2] |= if nibbles % 2 == 0 { v << 4 } else { v };
        nibbles += 1;
    }
    Some(out)
}

fn unpacked_uuid(bytes: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(40);
    out.extend_from_slice(&36u32.to_le_bytes());
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
    out
}

/// [`push_log_pk`] then its reading back (for tests).
#[cfg(test)]
pub(crate) fn log_pk_round_trip(pk: &[u8]) -> (usize, Vec<u8>) {
    let mut out = Vec::new();
    push_log_pk(&mut out, pk);
    let mut r = Reader(&out);
    (out.len(), read_log_pk(&mut r).expect("a key").into_vec())
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes that are not a graph export.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a shape graph export (truncated at byte {0})")]
pub struct ImportError(pub usize);

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ImportError> {
        if self.0.len() < n {
            return Err(ImportError(self.0.len()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ImportError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, ImportError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    fn u32(&mut self) -> Result<u32, ImportError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn bytes(&mut self) -> Result<&'a [u8], ImportError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn varint(&mut self) -> Result<u64, ImportError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(ImportError(self.0.len()))
    }
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn push_key_part(buf: &mut Vec<u8>, text: &[u8]) {
    buf.extend_from_slice(&(text.len() as u32).to_le_bytes());
    buf.extend_from_slice(text);
}

fn push_move_in(plan: &mut Plan, layer: LayerId, key: Vec<String>) {
    if let Some(m) = plan.move_ins.iter_mut().find(|m| m.layer == layer) {
        if !m.keys.contains(&key) {
            m.keys.push(key);
        }
    } else {
        plan.move_ins.push(MoveIn {
            layer,
            keys: vec![key],
        });
    }
}

/// `new` with the values Postgres did not send (unchanged TOAST) taken from `old`.
fn merged_row(new: &[Datum], old: Option<&[Datum]>) -> Box<[Datum]> {
    new.iter()
        .enumerate()
        .map(|(i, d)| match (d, old.and_then(|o| o.get(i))) {
            (Datum::UnchangedToast, Some(o)) => o.clone(),
            (Datum::UnchangedToast, None) => Datum::Value(Value::Null),
            (d, _) => d.clone(),
        })
        .collect()
}

fn change_new_row(change: &Change) -> Option<&[Datum]> {
    match change {
        Change::Insert { new, .. } | Change::Update { new, .. } => Some(new),
        _ => None,
    }
}

/// A row new to the client: an insert of the transaction goes as it is (no copy, and the same
/// op for every client), an update as an insert of its new row.
fn insert_or_change(index: usize, change: &ElectricChange, new: &[Datum]) -> PlanOp {
    match change.change {
        Change::Insert { .. } => PlanOp::Change(index),
        _ => insert_of(change, new),
    }
}

fn insert_of(change: &ElectricChange, new: &[Datum]) -> PlanOp {
    let old = match &change.change {
        Change::Update { old, .. } => old.as_ref().map(|o| &o.row[..]),
        _ => None,
    };
    PlanOp::Insert {
        relation: change.change.relation().clone(),
        row: merged_row(new, old),
        tags: change.tags.clone(),
    }
}
