//! Folds Electric's bookkeeping (shadow rows, DDL capture, markers, fk_chain_touch messages)
//! into each decoded transaction, leaving what clients should see (server-behaviour.md §6
//! "Outbound tags" and §8).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use thiserror::Error;

use super::tags::{satellite_tags, Tag, TagError};
use crate::pgoutput::{Change, Datum, Lsn, Relation, Row, Transaction};
use crate::value::Value;

/// The schema of Electric's own tables.
pub const ELECTRIC_SCHEMA: &str = "electric";
/// The prefix of the logical messages that report referenced records.
pub const FK_CHAIN_TOUCH: &str = "electric.fk_chain_touch";
const SHADOW_PREFIX: &str = "shadow__";
/// The `transaction_marker` row whose writes mark insertion points.
const MAGIC_WRITE: &str = "magic write";

/// A tag list in Satellite form, shared by the changes that carry the same one.
pub type Tags = Arc<[String]>;

/// A change of a user table with the row's tags (empty for deletes and truncates).
#[derive(Debug, Clone, PartialEq)]
pub struct ElectricChange {
    pub change: Change,
    pub tags: Tags,
}

/// A statement captured in `electric.ddl_commands`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ddl {
    /// The migration transaction's id (`xid8`).
    pub txid: i64,
    /// Its start time, microseconds since the Unix epoch.
    pub txts: i64,
    pub query: String,
}

/// A row that the transaction's rows reference, reported by an `electric.fk_chain_touch`
/// message (values as text, in the order of the message).
#[derive(Debug, Clone, PartialEq)]
pub struct ReferencedRecord {
    pub schema: String,
    pub table: String,
    pub pk: Vec<String>,
    pub data: Vec<(String, Option<String>)>,
    pub tags: Tags,
}

/// A committed transaction as clients should see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ElectricTransaction {
    pub xid: u32,
    pub commit_lsn: u64,
    pub end_lsn: u64,
    /// Microseconds since 2000-01-01 UTC: the tag time of its last shadow write if it has one,
    /// otherwise Postgres's commit time.
    pub commit_timestamp: i64,
    /// The writer of its last shadow write (a client id, or `postgres_1`) if it has one,
    /// otherwise the replication origin.
    pub origin: Option<String>,
    /// Changes of user tables (every schema but `electric`), in order.
    pub changes: Vec<ElectricChange>,
    /// The user relations of `changes`, each version once, in order of first use.
    pub relations: Vec<Arc<Relation>>,
    /// Captured migration statements, in order.
    pub ddl: Vec<Ddl>,
    /// The content (JSON text) of the last write of the 'magic write' marker row.
    pub marker: Option<String>,
    /// Tables electrified by this transaction, as (schema, table).
    pub electrified: Vec<(String, String)>,
    pub referenced: Vec<ReferencedRecord>,
    /// Transactional logical messages of other prefixes (dropped).
    pub other_messages: usize,
    pub streamed: bool,
}

/// Why a transaction's bookkeeping could not be folded.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum FoldErrorKind {
    #[error("bad tag in {relation}.{column}: {error}")]
    Tag {
        relation: String,
        column: String,
        error: TagError,
    },
    #[error("bad row of {relation}: {reason}")]
    Row {
        relation: &'static str,
        reason: String,
    },
    #[error("bad {FK_CHAIN_TOUCH} message at LSN {lsn}: {reason}")]
    Touch { lsn: Lsn, reason: String },
}

/// A fold error, with the transaction it happened in.
#[derive(Debug, Error, Clone, PartialEq)]
pub struct FoldError {
    pub xid: u32,
    pub commit_lsn: u64,
    pub kind: FoldErrorKind,
}

impl fmt::Display for FoldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "transaction {} committed at LSN {}: {}",
            self.xid,
            Lsn(self.commit_lsn),
            self.kind
        )
    }
}

/// Where a shadow table version keeps what the fold reads.
struct ShadowLayout {
    relation: Arc<Relation>,
    /// Its table in `Shadows::tables`.
    table: usize,
    /// The primary key: the columns whose names do not start with `_`.
    pk: Vec<usize>,
    tags: Option<usize>,
    tag: Option<usize>,
}

/// A row key: one integer (the common case, no allocation) or an encoding of its values.
#[derive(Debug, PartialEq, Eq, Hash)]
enum Key {
    Int(i64),
    Encoded(Box<[u8]>),
}

/// The latest non-delete shadow write of each row of one shadow table.
struct ShadowTable {
    name: String,
    /// Key column names (of the first version seen; keys never change).
    pk_names: Vec<String>,
    /// Key -> its `_tags` in `Shadows::texts`.
    rows: HashMap<Key, u32>,
}

/// The shadow writes of a transaction.
#[derive(Default)]
struct Shadows {
    tables: Vec<ShadowTable>,
    /// `_tags` texts (None: NULL), each run of equal ones once (a Postgres write gives every
    /// row of a statement the same tags), and their Satellite form once converted.
    texts: Vec<(Option<String>, Option<Tags>)>,
}

impl Shadows {
    fn table(&self, name: &str) -> Option<usize> {
        self.tables.iter().position(|t| t.name == name)
    }

    fn layout(&mut self, relation: &Arc<Relation>) -> ShadowLayout {
        let find = |name: &str| relation.columns.iter().position(|c| c.name == name);
        let pk: Vec<usize> = (relation.columns.iter().enumerate())
            .filter(|(_, c)| !c.name.starts_with('_'))
            .map(|(i, _)| i)
            .collect();
        let table = self.table(&relation.name).unwrap_or_else(|| {
            self.tables.push(ShadowTable {
                name: relation.name.clone(),
                pk_names: pk
                    .iter()
                    .map(|&i| relation.columns[i].name.clone())
                    .collect(),
                rows: HashMap::new(),
            });
            self.tables.len() - 1
        });
        ShadowLayout {
            relation: relation.clone(),
            table,
            pk,
            tags: find("_tags"),
            tag: find("_tag"),
        }
    }

    fn record(&mut self, table: usize, key: Key, tags: Option<String>) {
        if self.texts.last().is_none_or(|(t, _)| *t != tags) {
            self.texts.push((tags, None));
        }
        let i = (self.texts.len() - 1) as u32;
        self.tables[table].rows.insert(key, i);
    }

    /// The Satellite form of `texts[i]`, converted once.
    fn tags(&mut self, i: u32, empty: &Tags) -> Result<Tags, TagError> {
        let (text, converted) = &mut self.texts[i as usize];
        if let Some(tags) = converted {
            return Ok(tags.clone());
        }
        let tags: Tags = match text {
            None => empty.clone(),
            Some(t) => satellite_tags(t)?.into(),
        };
        *converted = Some(tags.clone());
        Ok(tags)
    }
}

/// The value of column `i` of a change's new row, from the old row when the update left it
/// TOASTed and unchanged (with REPLICA IDENTITY FULL the old row has it).
fn new_value<'r>(row: &'r Row, old: Option<&'r Row>, i: usize) -> Option<&'r Value<'static>> {
    match row.get(i)? {
        Datum::Value(v) => Some(v),
        Datum::UnchangedToast => match old?.get(i)? {
            Datum::Value(v) => Some(v),
            Datum::UnchangedToast => None,
        },
    }
}

fn take_text(row: &mut Row, old: Option<&Row>, i: Option<usize>) -> Option<String> {
    let i = i?;
    match std::mem::replace(row.get_mut(i)?, Datum::Value(Value::Null)) {
        Datum::Value(Value::Text(s)) => Some(s.into_owned()),
        Datum::Value(_) => None,
        Datum::UnchangedToast => match old?.get(i)? {
            Datum::Value(Value::Text(s)) => Some(s.to_string()),
            _ => None,
        },
    }
}

/// Appends an unambiguous encoding of a key value (values of one column share a type).
fn encode_key(out: &mut Vec<u8>, v: &Value<'_>) {
    let mut bytes = |tag: u8, b: &[u8]| {
        out.push(tag);
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    };
    match v {
        Value::Null => bytes(0, &[]),
        Value::Bool(b) => bytes(1, &[*b as u8]),
        Value::Int(i) => bytes(2, &i.to_le_bytes()),
        Value::Float(f) => bytes(3, &f.to_bits().to_le_bytes()),
        Value::Numeric(s) | Value::Text(s) | Value::Json(s) => bytes(4, s.as_bytes()),
        Value::Bytes(b) => bytes(5, b),
        Value::Uuid(u) => bytes(6, u),
        other => bytes(7, format!("{other:?}").as_bytes()),
    }
}

/// The key of a row, or None when a key column is missing or unknown.
fn row_key(row: &Row, old: Option<&Row>, columns: &[usize]) -> Option<Key> {
    if let [i] = columns {
        if let Value::Int(n) = new_value(row, old, *i)? {
            return Some(Key::Int(*n));
        }
    }
    let mut key = Vec::with_capacity(16 * columns.len());
    for &i in columns {
        encode_key(&mut key, new_value(row, old, i)?);
    }
    Some(Key::Encoded(key.into_boxed_slice()))
}

fn column<'r>(rel: &Relation, row: &'r Row, name: &str) -> Option<&'r Value<'static>> {
    let i = rel.columns.iter().position(|c| c.name == name)?;
    match &row[i] {
        Datum::Value(v) => Some(v),
        Datum::UnchangedToast => None,
    }
}

fn text_column(rel: &Relation, row: &Row, name: &str) -> Option<String> {
    match column(rel, row, name)? {
        Value::Text(s) | Value::Json(s) => Some(s.to_string()),
        _ => None,
    }
}

/// A user relation's shadow table in `Shadows::tables` and its key columns' positions (None:
/// no shadow writes in this transaction, or a key column missing).
type KeyLayout = Option<(usize, Vec<usize>)>;

/// The key layout of each user relation version, computed once per transaction.
struct MainLayouts {
    layouts: Vec<(Arc<Relation>, KeyLayout)>,
    last: usize,
}

impl MainLayouts {
    fn of(&mut self, rel: &Arc<Relation>, shadows: &Shadows) -> Option<(usize, &[usize])> {
        if !self
            .layouts
            .get(self.last)
            .is_some_and(|(r, _)| Arc::ptr_eq(r, rel))
        {
            self.last = match self.layouts.iter().position(|(r, _)| Arc::ptr_eq(r, rel)) {
                Some(i) => i,
                None => {
                    let name = format!("{SHADOW_PREFIX}{}__{}", rel.namespace, rel.name);
                    let layout = shadows.table(&name).and_then(|t| {
                        let columns = shadows.tables[t]
                            .pk_names
                            .iter()
                            .map(|n| rel.columns.iter().position(|c| &c.name == n))
                            .collect::<Option<Vec<usize>>>()?;
                        Some((t, columns))
                    });
                    self.layouts.push((rel.clone(), layout));
                    self.layouts.len() - 1
                }
            };
        }
        let (table, columns) = self.layouts[self.last].1.as_ref()?;
        Some((*table, columns))
    }
}

/// Folds the bookkeeping of a decoded transaction. The transaction is always kept, even when
/// nothing of it remains for clients.
pub fn fold(txn: Transaction) -> Result<ElectricTransaction, FoldError> {
    let Transaction {
        xid,
        commit_lsn,
        end_lsn,
        commit_timestamp,
        origin,
        changes,
        messages,
        relations,
        streamed,
    } = txn;
    let error = |kind| FoldError {
        xid,
        commit_lsn,
        kind,
    };
    let empty: Tags = Arc::from(Vec::new());
    let mut out = ElectricTransaction {
        xid,
        commit_lsn,
        end_lsn,
        commit_timestamp,
        origin,
        changes: Vec::new(),
        relations: relations
            .into_iter()
            .filter(|r| r.namespace != ELECTRIC_SCHEMA)
            .collect(),
        ddl: Vec::new(),
        marker: None,
        electrified: Vec::new(),
        referenced: Vec::new(),
        other_messages: 0,
        streamed,
    };

    // Pass 1: user changes kept (without tags yet), bookkeeping read (shadow writes may follow
    // the main ones).
    if !out.relations.is_empty() {
        out.changes.reserve_exact(changes.len());
    }
    let mut shadows = Shadows::default();
    let mut layout: Option<ShadowLayout> = None;
    let mut last_tag: Option<(String, Arc<Relation>)> = None;
    for change in changes {
        if change.relation().namespace != ELECTRIC_SCHEMA {
            out.changes.push(ElectricChange {
                change,
                tags: empty.clone(),
            });
            continue;
        }
        let rel = change.relation().clone();
        let name = rel.name.as_str();
        if name.starts_with(SHADOW_PREFIX) {
            // Only inserts and updates count: Electric never deletes shadow rows itself.
            let (relation, mut new, old) = match change {
                Change::Insert { relation, new } => (relation, new, None),
                Change::Update { relation, new, old } => (relation, new, old.map(|o| o.row)),
                _ => continue,
            };
            if !layout
                .as_ref()
                .is_some_and(|l| Arc::ptr_eq(&l.relation, &relation))
            {
                layout = Some(shadows.layout(&relation));
            }
            let l = layout.as_ref().expect("set above");
            let Some(key) = row_key(&new, old.as_ref(), &l.pk) else {
                continue;
            };
            let tags = take_text(&mut new, old.as_ref(), l.tags);
            if let Some(tag) = take_text(&mut new, old.as_ref(), l.tag) {
                last_tag = Some((tag, relation.clone()));
            }
            shadows.record(l.table, key, tags);
            continue;
        }
        match (name, change) {
            ("ddl_commands", Change::Insert { relation, new }) => {
                let bad = |what: &str| {
                    error(FoldErrorKind::Row {
                        relation: "electric.ddl_commands",
                        reason: format!("no {what}"),
                    })
                };
                let int = |name| match column(&relation, &new, name) {
                    Some(Value::Int(i)) => Some(*i),
                    _ => None,
                };
                out.ddl.push(Ddl {
                    txid: int("txid").ok_or_else(|| bad("txid"))?,
                    txts: int("txts").ok_or_else(|| bad("txts"))?,
                    query: text_column(&relation, &new, "query").ok_or_else(|| bad("query"))?,
                });
            }
            (
                "transaction_marker",
                Change::Insert { relation, new } | Change::Update { relation, new, .. },
            ) if text_column(&relation, &new, "id").as_deref() == Some(MAGIC_WRITE) => {
                out.marker =
                    Some(text_column(&relation, &new, "content").unwrap_or_else(|| "null".into()));
            }
            ("electrified", Change::Insert { relation, new }) => {
                let name = |n| text_column(&relation, &new, n);
                match (name("schema_name"), name("table_name")) {
                    (Some(s), Some(t)) => out.electrified.push((s, t)),
                    _ => {
                        return Err(error(FoldErrorKind::Row {
                            relation: "electric.electrified",
                            reason: "no schema_name or table_name".into(),
                        }))
                    }
                }
            }
            // tombstones, acknowledged_client_lsns, grants...
            _ => {}
        }
    }

    // The transaction's writer and time: the last non-delete shadow write's tag.
    if let Some((text, relation)) = last_tag {
        let tag = Tag::parse(&text).map_err(|e| {
            error(FoldErrorKind::Tag {
                relation: format!("{ELECTRIC_SCHEMA}.{}", relation.name),
                column: "_tag".into(),
                error: e,
            })
        })?;
        out.commit_timestamp = tag.pg_us();
        out.origin = Some(tag.origin().to_owned());
    }

    // Pass 2: each insert or update gets the tags of its row's last shadow write.
    if !shadows.tables.is_empty() {
        let mut mains = MainLayouts {
            layouts: Vec::new(),
            last: 0,
        };
        for c in &mut out.changes {
            let (new, old) = match &c.change {
                Change::Insert { new, .. } => (new, None),
                Change::Update { new, old, .. } => (new, old.as_ref().map(|o| &o.row)),
                Change::Delete { .. } | Change::Truncate { .. } => continue,
            };
            let rel = c.change.relation();
            let Some((table, columns)) = mains.of(rel, &shadows) else {
                continue;
            };
            let Some(&i) =
                row_key(new, old, columns).and_then(|k| shadows.tables[table].rows.get(&k))
            else {
                continue;
            };
            c.tags = shadows.tags(i, &empty).map_err(|e| {
                error(FoldErrorKind::Tag {
                    relation: format!(
                        "{ELECTRIC_SCHEMA}.{SHADOW_PREFIX}{}__{}",
                        rel.namespace, rel.name
                    ),
                    column: "_tags".into(),
                    error: e,
                })
            })?;
        }
    }

    for m in messages {
        if m.prefix != FK_CHAIN_TOUCH {
            out.other_messages += 1;
            continue;
        }
        let record = referenced(&m.content).map_err(|reason| {
            error(FoldErrorKind::Touch {
                lsn: Lsn(m.lsn),
                reason,
            })
        })?;
        out.referenced.push(record);
    }
    Ok(out)
}

/// Parses an fk_chain_touch message:
/// `{"schema", "table", "tags": <tag[] text>, "data": {col: text|null}, "pk": [text]}`.
fn referenced(content: &[u8]) -> Result<ReferencedRecord, String> {
    use serde_json::Value as J;
    let json: J = serde_json::from_slice(content).map_err(|e| e.to_string())?;
    let field = |name: &str| json.get(name).ok_or_else(|| format!("no {name:?}"));
    let string = |name: &str| {
        field(name)?
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{name:?} is not a string"))
    };
    let tags = satellite_tags(&string("tags")?).map_err(|e| format!("tags: {e}"))?;
    let data = field("data")?
        .as_object()
        .ok_or("\"data\" is not an object")?
        .iter()
        .map(|(k, v)| match v {
            J::Null => Ok((k.clone(), None)),
            J::String(s) => Ok((k.clone(), Some(s.clone()))),
            _ => Err(format!("data value of {k:?} is not text")),
        })
        .collect::<Result<_, _>>()?;
    let pk = field("pk")?
        .as_array()
        .ok_or("\"pk\" is not an array")?
        .iter()
        .map(|v| v.as_str().map(str::to_owned).ok_or("pk value is not text"))
        .collect::<Result<_, _>>()?;
    Ok(ReferencedRecord {
        schema: string("schema")?,
        table: string("table")?,
        pk,
        data,
        tags: tags.into(),
    })
}
