//! Sans-IO core of electric-trio.
//!
//! Nothing here does I/O or knows about Python: the binding crate feeds bytes in and turns the
//! results into Python objects. Each codec parses from a buffer (returning `Ok(None)` when more
//! bytes are needed) and encodes into a caller's buffer.

pub mod electric;
pub mod error;
pub mod pgoutput;
pub mod pgwire;
pub mod satellite;
pub mod shapes;
pub mod value;

pub use error::{DecodeError, WireError};
