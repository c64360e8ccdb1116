//! The engine's events, handled in one batch per loop iteration.

use std::sync::Arc;

use ferrule_engine::server::exchange::Event;
use pyo3::prelude::*;

use super::context::Bridge;
use super::errors::{is_fatal, log_error};
use super::wsgi::WsgiPool;
use super::{http, websocket};

/// Starts apps and completes waiting calls for what the drivers reported.
/// An error here concerns one connection and is logged, because an
/// exception out of `select()` stops the whole event loop; only an app's
/// KeyboardInterrupt/SystemExit is raised (that is meant to stop it), once
/// the rest of the batch is handled. With a WSGI app (`wsgi`), requests
/// and their wake-ups go to its worker threads.
pub fn dispatch(
    py: Python<'_>,
    bridge: &Arc<Bridge>,
    wsgi: Option<&WsgiPool>,
    batch: &mut Vec<Event>,
) -> PyResult<()> {
    let mut fatal = None;
    for ev in batch.drain(..) {
        let ev = match wsgi {
            Some(pool) => match pool.route(ev) {
                Some(ev) => ev,
                None => continue,
            },
            None => ev,
        };
        let r = match ev {
            Event::Request(exchange, head) => http::start_app(py, bridge, &exchange, &head),
            Event::Wake(exchange) => http::on_wake(py, bridge, &*exchange),
            Event::WebSocket(exchange, head) => {
                websocket::start_ws_app(py, bridge, &exchange, &head)
            }
            Event::WsWake(exchange) => websocket::on_wake(py, bridge, &*exchange),
            Event::Closed(id) => {
                http::on_closed(bridge, id);
                Ok(())
            }
            Event::Log(line) => match &bridge.refs.debug_log {
                Some(log) => log.bind(py).call1((line,)).map(|_| ()),
                None => Ok(()),
            },
        };
        match r {
            Ok(()) => {}
            Err(e) if is_fatal(py, &e) => {
                fatal.get_or_insert(e);
            }
            Err(e) => log_error(
                py,
                "ferrule engine: error while dispatching a connection event",
                e,
            ),
        }
    }
    match fatal {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
