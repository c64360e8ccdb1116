//! ferrule's Rust engine, built as the extension module `ferrule._ferrule`.
//!
//! Layers (one-way): `http1` (sans-IO codec) -> `engine` (tokio connection
//! driver, listener, the asyncio selector's epoll) -> `asgi` (scope,
//! receive, send) -> `pyengine` (the `Engine` class Python sees).

pub mod asgi;
pub mod engine;
pub mod http1;
pub mod pyengine;
pub mod task;

use pyo3::prelude::*;

#[pymodule]
fn _ferrule(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<pyengine::Engine>()?;
    m.add_class::<asgi::Receive>()?;
    m.add_class::<asgi::Sender>()?;
    m.add_class::<task::RequestTask>()?;
    m.add(
        "ClientDisconnected",
        m.py().get_type::<asgi::ClientDisconnected>(),
    )?;
    m.add("EVENT_READ", engine::poller::EVENT_READ)?;
    m.add("EVENT_WRITE", engine::poller::EVENT_WRITE)?;
    Ok(())
}
