//! ferrule's extension module `ferrule._ferrule`: the thin Python face of
//! the engine crate (`crates/engine`, which knows no Python).
//!
//! Layers (one-way): `ferrule_engine` (codec, drivers, runtime) ->
//! [`bridge`] (ASGI: scope, receive, send, the request task; the only
//! layer holding Python objects) -> [`py`] (the `Engine` class).

pub mod bridge;
pub mod py;

use pyo3::prelude::*;

#[pymodule]
fn _ferrule(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<py::engine::Engine>()?;
    m.add_class::<bridge::http::Receive>()?;
    m.add_class::<bridge::http::Sender>()?;
    m.add_class::<bridge::http::Call>()?;
    bridge::http::install_call_slots(m.py());
    m.add_class::<bridge::task::RequestTask>()?;
    m.add_class::<bridge::websocket::WsReceive>()?;
    m.add_class::<bridge::websocket::WsSender>()?;
    m.add_class::<bridge::wsgi::StartResponse>()?;
    m.add_class::<bridge::wsgi::WsgiInput>()?;
    m.add(
        "ClientDisconnected",
        m.py().get_type::<bridge::errors::ClientDisconnected>(),
    )?;
    m.add("TlsError", m.py().get_type::<py::engine::TlsError>())?;
    m.add("EVENT_READ", ferrule_engine::runtime::poller::EVENT_READ)?;
    m.add("EVENT_WRITE", ferrule_engine::runtime::poller::EVENT_WRITE)?;
    Ok(())
}
