//! The server's fan-out of one transaction to its caught-up clients, in one call: each client's
//! graph processes the transaction and its frame goes to the client's socket at once, before
//! the next client's graph is even looked at (the first clients have it while the last graphs
//! are processed, and no Python runs between the transaction and the last write).

use std::collections::HashMap;
use std::io::{ErrorKind, Write};
use std::mem::ManuallyDrop;
use std::net::TcpStream;
use std::os::fd::FromRawFd;

use electric_core::electric::ElectricTransaction;
use electric_core::satellite::push_ws_header;
use electric_core::shapes::{FilterMemo, Plan, PlanOp};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::PyBytes;

use crate::electric::PyElectricTransaction;
use crate::errors;
use crate::shape_graph::{
    encode_error, move_ins, relations_of, transaction_bracket, MoveInInfo, RelationInfo, ShapeGraph,
};

/// What [`fanout_send`] did for a client whose frame it did not write (its relations must go
/// first): the caller writes it.
const NOT_WRITTEN: isize = -1;
/// The socket refused the write (closed, reset): the connection's reader finds out.
const BROKEN: isize = -2;

/// Per client its frame (WebSocket framing included; the same bytes object for clients with
/// the same changes) and what was written of it; the clients that need relations announced
/// or move-ins started: `(index, new relations, move-ins)`.
type Sent<'py> = (
    Vec<Option<Bound<'py, PyBytes>>>,
    Vec<isize>,
    Vec<(usize, Vec<RelationInfo>, Vec<MoveInInfo>)>,
);

/// One WebSocket binary message of the `SatOpLog` of a transaction's plan (no migration).
fn framed(
    graph: &mut ShapeGraph,
    inner: &ElectricTransaction,
    plan: &Plan,
    additional: u64,
) -> PyResult<Vec<u8>> {
    let bracket = transaction_bracket(inner, additional);
    let ops = plan.ops.iter().filter_map(|op| op.op(inner));
    let mut out = Vec::new();
    graph
        .encoder
        .encode_into(&bracket, ops, &mut out, |len, out| push_ws_header(out, len))
        .map_err(encode_error)?;
    Ok(out)
}

/// Writes what the non-blocking socket `fd` takes of `data` at once: the bytes written, or
/// [`BROKEN`].
fn write_now(fd: i32, data: &[u8]) -> isize {
    if fd < 0 {
        return BROKEN;
    }
    // SAFETY: the caller passes the descriptor of a socket it holds open for this call (Python
    // objects the GIL protects); ManuallyDrop leaves it open.
    let mut socket = ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
    loop {
        match socket.write(data) {
            Ok(n) => return n as isize,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return 0,
            Err(_) => return BROKEN,
        }
    }
}

/// The fan-out of one transaction (carrying no migration) to caught-up clients: each graph
/// steps (`begin_step`) and processes `txn`; a client whose plan is empty gets None unless
/// `client_ids[i]` is the transaction's origin (its echo). A client's frame is written to its
/// socket `fds[i]` (non-blocking; -1: none) as soon as its graph has processed the
/// transaction, unless relations must be announced to it first (then `written[i]` is -1 and
/// the caller writes it); `written[i]` is otherwise how many bytes the socket took, or -2 when
/// it refused them. Clients whose plans are the same changes of the transaction get the same
/// bytes object, built once. The third list names the clients that need relations announced
/// or move-ins started (with `refs[i]` as their additional-data ref).
#[pyfunction]
pub fn fanout_send<'py>(
    py: Python<'py>,
    txn: PyRef<'py, PyElectricTransaction>,
    graphs: Vec<Bound<'py, ShapeGraph>>,
    client_ids: Vec<PyBackedStr>,
    refs: Vec<u64>,
    fds: Vec<i32>,
) -> PyResult<Sent<'py>> {
    errors::guard(|| {
        let inner = &txn.inner;
        let origin = inner.origin.as_deref();
        let mut frames = Vec::with_capacity(graphs.len());
        let mut written = Vec::with_capacity(graphs.len());
        let mut special = Vec::new();
        let mut shared: HashMap<Vec<usize>, Bound<'py, PyBytes>> = HashMap::new();
        // A where clause many clients share is evaluated once per row.
        let mut memo = FilterMemo::new();
        for (i, graph) in graphs.iter().enumerate() {
            let mut g = graph.borrow_mut();
            let g = &mut *g;
            g.inner.begin_step(inner.end_lsn);
            let plan = g.inner.process_shared(inner, &mut memo);
            let force = origin.is_some() && origin == client_ids.get(i).map(|s| &**s);
            if plan.ops.is_empty() && !force {
                frames.push(None);
                written.push(0);
                continue;
            }
            let relations = relations_of(
                plan.ops.iter().map(|op| op.relation(inner)),
                &mut g.announced,
            );
            let additional = if plan.move_ins.is_empty() {
                0
            } else {
                refs.get(i).copied().unwrap_or(0)
            };
            // Only changes of the transaction, no ref: the frame is the same for every such plan.
            let key: Option<Vec<usize>> = (additional == 0)
                .then(|| {
                    plan.ops
                        .iter()
                        .map(|op| match op {
                            PlanOp::Change(c) => Some(*c),
                            _ => None,
                        })
                        .collect()
                })
                .flatten();
            let frame = match key.as_ref().and_then(|k| shared.get(k)) {
                Some(bytes) => bytes.clone(),
                None => {
                    let bytes = PyBytes::new(py, &framed(g, inner, &plan, additional)?);
                    if let Some(k) = key {
                        shared.insert(k, bytes.clone());
                    }
                    bytes
                }
            };
            written.push(if relations.is_empty() {
                write_now(fds.get(i).copied().unwrap_or(-1), frame.as_bytes())
            } else {
                NOT_WRITTEN
            });
            frames.push(Some(frame));
            if !relations.is_empty() || !plan.move_ins.is_empty() {
                special.push((i, relations, move_ins(plan.move_ins)));
            }
        }
        Ok((frames, written, special))
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fanout_send, m)?)?;
    Ok(())
}
