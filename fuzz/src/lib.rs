//! The fuzz targets use the engine crate's sans-IO codec directly; the
//! engine crate has no pyo3, so fuzzing needs no libpython.

pub use ferrule_engine::proto::h1 as http1;
pub use ferrule_engine::proto::ws;
