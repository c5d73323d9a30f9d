//! The read path's `SatOpLog` frames, encoded in Rust from a folded transaction: the session
//! picks which changes a client sees (by index) and gets one frame, without a Python object per
//! row.

use std::sync::Arc;

use electric_core::electric::POSTGRES_ORIGIN;
use electric_core::pgoutput::Relation;
use electric_core::satellite::{commit_timestamp_ms, Bracket, Op, OplogEncoder, TxInfo};
use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use crate::electric::PyElectricTransaction;
use crate::errors;

/// `(relation id, schema, table, [(column, type oid)])`.
type RelationInfo = (u32, String, String, Vec<(String, u32)>);

/// The changes at `indexes`, checked against the transaction's length.
fn selected<'a>(
    txn: &'a PyElectricTransaction,
    indexes: &[usize],
) -> PyResult<Vec<&'a electric_core::electric::ElectricChange>> {
    let changes = &txn.inner.changes;
    indexes
        .iter()
        .map(|&i| {
            changes.get(i).ok_or_else(|| {
                PyIndexError::new_err(format!(
                    "change {i} of a transaction of {} changes",
                    changes.len()
                ))
            })
        })
        .collect()
}

/// One `SatOpLog` frame (type byte included) of the transaction: `begin` (commit time in ms,
/// `end_lsn` as the position, the origin or "postgres_1", `is_migration` when it carries
/// captured DDL, the xid as `transaction_id`), the already encoded `SatOpMigrate` messages of
/// `migrate`, the changes at `changes` (indexes into `changes()`, truncates skipped), `commit`.
#[pyfunction]
#[pyo3(signature = (txn, changes, migrate = Vec::new()))]
fn encode_transaction_oplog<'py>(
    py: Python<'py>,
    txn: PyRef<'py, PyElectricTransaction>,
    changes: Vec<usize>,
    migrate: Vec<PyBackedBytes>,
) -> PyResult<Bound<'py, PyBytes>> {
    let chosen = selected(&txn, &changes)?;
    let inner = &txn.inner;
    let bracket = Bracket::Transaction(TxInfo {
        commit_timestamp_ms: commit_timestamp_ms(inner.commit_timestamp),
        lsn: inner.end_lsn,
        origin: Some(inner.origin.as_deref().unwrap_or(POSTGRES_ORIGIN)),
        is_migration: !inner.ddl.is_empty(),
        additional_data_ref: 0,
        transaction_id: Some(u64::from(inner.xid)),
    });
    let ops = migrate
        .iter()
        .map(|m| Op::Migrate(m))
        .chain(chosen.iter().filter_map(|c| Op::from_change(c)));
    let frame = OplogEncoder::new()
        .encode(&bracket, ops)
        // A row the encoder refuses (an unchanged TOAST value without an old row) is a server
        // fault, not the client's.
        .map_err(|e| {
            errors::ElectricError::new_err(format!("cannot encode the transaction: {e}"))
        })?;
    Ok(PyBytes::new(py, &frame))
}

/// The relations of the changes at `changes`, in order of first use, as `(relation id,
/// schema, table, [(column, type oid)])`; a relation whose definition changed within the
/// transaction is listed once per version.
#[pyfunction]
fn transaction_relations(
    txn: PyRef<'_, PyElectricTransaction>,
    changes: Vec<usize>,
) -> PyResult<Vec<RelationInfo>> {
    let mut seen: Vec<&Arc<Relation>> = Vec::new();
    for change in selected(&txn, &changes)? {
        let relation = change.change.relation();
        if !seen.iter().any(|r| Arc::ptr_eq(r, relation)) {
            seen.push(relation);
        }
    }
    Ok(seen
        .into_iter()
        .map(|r| {
            let columns = r
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.type_oid))
                .collect();
            (r.id, r.namespace.clone(), r.name.clone(), columns)
        })
        .collect())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(encode_transaction_oplog, m)?)?;
    m.add_function(wrap_pyfunction!(transaction_relations, m)?)?;
    Ok(())
}
