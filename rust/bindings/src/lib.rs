//! `electric_trio._native`: the thin PyO3 layer over `electric-core`.

use pyo3::prelude::*;

mod client_writes;
mod electric;
mod errors;
mod fanout;
mod pgoutput;
mod pgproxy;
mod pgserver;
mod pgwire;
mod satellite;
mod satellite_stream;
mod shape_graph;
mod shapes;
mod values;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    pgwire::register(m)?;
    pgoutput::register(m)?;
    pgserver::register(m)?;
    pgproxy::register(m)?;
    electric::register(m)?;
    satellite::register(m)?;
    satellite_stream::register(m)?;
    shapes::register(m)?;
    shape_graph::register(m)?;
    fanout::register(m)?;
    client_writes::register(m)?;
    Ok(())
}
