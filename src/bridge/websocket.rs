//! ASGI `websocket`: `receive()` and `send()` over the engine's
//! [`WsExchange`], and the start of an app for an upgrade request. As for
//! HTTP, both calls usually complete without suspending; when one must
//! wait, the bridge keeps its future and the engine's `WsWake` resolves it.

use std::borrow::Cow;
use std::sync::Arc;

use ferrule_engine::proto::h1::RequestHead;
use ferrule_engine::proto::ws::handshake::subprotocols;
use ferrule_engine::proto::ws::message::valid_close_code;
use ferrule_engine::server::exchange::{AppEnd, ConnId, Sent, WsExchange, WsReceived, WsSend};
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use super::context::Bridge;
use super::http::{
    bytes_of, call_app, conn_entry, disconnected, header_bytes, header_pairs, message_item,
    park_waiter, ready, resolve, send_error, truthy, unexpected,
};
use super::scope::build_ws_scope;
use super::task::TaskOwner;

/// The bridge's side of one WebSocket.
pub struct WsResponder {
    exchange: Arc<dyn WsExchange>,
    bridge: Arc<Bridge>,
    /// `client - "WebSocket /path?query"`, for the lines uvicorn logs on
    /// its error logger when the handshake is answered.
    line: String,
}

/// Logs `line` and how the handshake was answered at INFO on
/// `ferrule.error`, as uvicorn does on `uvicorn.error`.
fn log_handshake(py: Python<'_>, line: &str, outcome: &str) -> PyResult<()> {
    let logger = py
        .import(intern!(py, "logging"))?
        .call_method1(intern!(py, "getLogger"), ("ferrule.error",))?;
    if logger
        .call_method1(intern!(py, "isEnabledFor"), (20,))?
        .is_truthy()?
    {
        logger.call_method1(intern!(py, "info"), (format!("{line} {outcome}"),))?;
    }
    Ok(())
}

#[pyclass(frozen, name = "WebSocketReceive", module = "ferrule._ferrule")]
pub struct WsReceive {
    r: Arc<WsResponder>,
}

#[pyclass(frozen, name = "WebSocketSend", module = "ferrule._ferrule")]
pub struct WsSender {
    r: Arc<WsResponder>,
}

/// A received message's payload, as Python gets it.
enum Payload<'py> {
    Text(Bound<'py, PyString>),
    Bytes(Bound<'py, PyBytes>),
}

fn payload<'py>(py: Python<'py>, data: &[u8], text: bool) -> Payload<'py> {
    if text {
        // The engine checked the UTF-8 as the message arrived.
        Payload::Text(PyString::new(py, &String::from_utf8_lossy(data)))
    } else {
        Payload::Bytes(PyBytes::new(py, data))
    }
}

fn received_msg<'py>(
    py: Python<'py>,
    got: &WsReceived,
    data: Option<Payload<'py>>,
) -> PyResult<Bound<'py, PyAny>> {
    let d = PyDict::new(py);
    match got {
        WsReceived::Connect => {
            d.set_item(intern!(py, "type"), intern!(py, "websocket.connect"))?;
        }
        WsReceived::Message { .. } => {
            d.set_item(intern!(py, "type"), intern!(py, "websocket.receive"))?;
            match data {
                Some(Payload::Text(s)) => d.set_item(intern!(py, "text"), s)?,
                Some(Payload::Bytes(b)) => d.set_item(intern!(py, "bytes"), b)?,
                None => d.set_item(intern!(py, "bytes"), PyBytes::new(py, b""))?,
            }
        }
        WsReceived::Disconnect { code, reason } => {
            d.set_item(intern!(py, "type"), intern!(py, "websocket.disconnect"))?;
            d.set_item(intern!(py, "code"), *code)?;
            d.set_item(intern!(py, "reason"), reason.as_str())?;
        }
        WsReceived::Wait => {
            d.set_item(intern!(py, "type"), intern!(py, "websocket.disconnect"))?;
            d.set_item(intern!(py, "code"), 1006)?;
            d.set_item(intern!(py, "reason"), "")?;
        }
    }
    Ok(d.into_any())
}

impl WsResponder {
    fn id(&self) -> ConnId {
        self.exchange.id()
    }

    /// Keeps `fut` until the engine's wake-up for this connection.
    fn park(&self, py: Python<'_>, fut: &Bound<'_, PyAny>, receive: bool) -> PyResult<()> {
        if park_waiter(&self.bridge, self.id(), fut, receive) {
            return Ok(());
        }
        let value = if receive {
            received_msg(
                py,
                &WsReceived::Disconnect {
                    code: 1006,
                    reason: String::new(),
                },
                None,
            )
        } else {
            Err(disconnected())
        };
        resolve(py, fut.clone().unbind(), value)
    }

    /// Resolves a waiting `receive()` with what it may now get.
    fn release_receive(&self, py: Python<'_>) -> PyResult<()> {
        on_wake(py, &self.bridge, &*self.exchange)
    }
}

impl TaskOwner for WsResponder {
    fn app_done(&self, py: Python<'_>, failed: bool) -> PyResult<bool> {
        let end = self.exchange.app_done(failed);
        self.release_receive(py)?;
        Ok(matches!(end, AppEnd::Answered(_) | AppEnd::Aborted(_)))
    }
}

#[pymethods]
impl WsReceive {
    fn __call__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let r = &self.r;
        let mut data = None;
        let got = r
            .exchange
            .receive(&mut |b, text| data = Some(payload(py, b, text)));
        if got == WsReceived::Wait {
            let fut = r.bridge.refs.create_future.bind(py).call0()?;
            r.park(py, &fut, true)?;
            return Ok(fut);
        }
        ready(py, &r.bridge, received_msg(py, &got, data)?)
    }
}

#[pymethods]
impl WsSender {
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        message: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let r = &self.r;
        let ty_obj = message.get_item(intern!(py, "type"))?;
        let ty = ty_obj.cast::<PyString>()?.to_cow()?;
        // A None value counts as absent, as ASGI says.
        let as_dict = message.cast::<PyDict>().ok();
        let get = |key: &Bound<'py, PyString>| -> PyResult<Option<Bound<'py, PyAny>>> {
            Ok(message_item(message, as_dict, key)?.filter(|v| !v.is_none()))
        };
        let result = match &*ty {
            "websocket.accept" => {
                let sub: Option<String> = get(intern!(py, "subprotocol"))?
                    .map(|s| s.extract())
                    .transpose()?;
                let pairs = header_pairs(get(intern!(py, "headers"))?)?;
                let raw = header_bytes(&pairs)?;
                let mut headers = raw.iter().map(|(n, v)| (n.as_ref(), v.as_ref()));
                let sent = r.exchange.send(WsSend::Accept {
                    subprotocol: sub.as_deref().map(str::as_bytes),
                    headers: &mut headers,
                });
                if sent.is_ok() {
                    log_handshake(py, &r.line, "[accepted]")?;
                }
                sent
            }
            "websocket.send" => {
                let text = get(intern!(py, "text"))?;
                let bytes = get(intern!(py, "bytes"))?;
                match (bytes, text) {
                    (Some(b), _) => {
                        let data = bytes_of(&b)?;
                        r.exchange.send(WsSend::Message {
                            data: &data,
                            text: false,
                        })
                    }
                    (None, Some(t)) => {
                        let s = t.cast::<PyString>()?.to_cow()?;
                        r.exchange.send(WsSend::Message {
                            data: s.as_bytes(),
                            text: true,
                        })
                    }
                    (None, None) => {
                        r.exchange.check_send().map_err(|e| send_error(&ty, e))?;
                        return Err(PyValueError::new_err(
                            "'websocket.send' needs 'bytes' or 'text'",
                        ));
                    }
                }
            }
            "websocket.close" => {
                let code: i64 = match get(intern!(py, "code"))? {
                    Some(c) => c.extract()?,
                    None => 1000,
                };
                // Reserved codes (1004-1006, 1015) and unregistered ones
                // would make the client fail the connection (RFC 6455 7.4).
                let code = match u16::try_from(code) {
                    Ok(c) if valid_close_code(c) => c,
                    _ => {
                        return Err(PyValueError::new_err(format!(
                            "invalid WebSocket close code {code}: use 1000-1003, 1007-1014 or 3000-4999"
                        )))
                    }
                };
                let reason: Cow<str> = match get(intern!(py, "reason"))? {
                    Some(s) => Cow::Owned(s.extract::<String>()?),
                    None => Cow::Borrowed(""),
                };
                let before_accept = r.exchange.accepting();
                let sent = r.exchange.send(WsSend::Close {
                    code,
                    reason: &reason,
                });
                if sent.is_ok() && before_accept {
                    log_handshake(py, &r.line, "403")?;
                }
                sent
            }
            "websocket.http.response.start" => {
                let status: u16 = match get(intern!(py, "status"))? {
                    Some(s) => s.extract()?,
                    None => return Err(PyValueError::new_err(format!("'{ty}' needs 'status'"))),
                };
                let pairs = header_pairs(get(intern!(py, "headers"))?)?;
                let raw = header_bytes(&pairs)?;
                let mut headers = raw.iter().map(|(n, v)| (n.as_ref(), v.as_ref()));
                let sent = r.exchange.send(WsSend::ResponseStart {
                    status,
                    headers: &mut headers,
                });
                if sent.is_ok() {
                    log_handshake(py, &r.line, &status.to_string())?;
                }
                sent
            }
            "websocket.http.response.body" => {
                let body_obj = get(intern!(py, "body"))?;
                let data: Cow<[u8]> = match &body_obj {
                    Some(b) => bytes_of(b)?,
                    None => Cow::Borrowed(&[]),
                };
                let more = truthy(get(intern!(py, "more_body"))?)?;
                r.exchange.send(WsSend::ResponseBody { data: &data, more })
            }
            other => {
                r.exchange.check_send().map_err(|e| send_error(other, e))?;
                return Err(unexpected(other, "not a valid WebSocket message"));
            }
        };
        let refs = &r.bridge.refs;
        match result {
            Ok(Sent::Done) | Ok(Sent::Complete(_)) => Ok(refs.done.bind(py).clone()),
            Ok(Sent::Wait) => {
                let fut = refs.create_future.bind(py).call0()?;
                r.park(py, &fut, false)?;
                Ok(fut)
            }
            Err(e) => Err(send_error(&ty, e)),
        }
    }

    /// Called by the Python runner when the app coroutine ends.
    pub fn app_done(&self, py: Python<'_>, failed: bool) -> PyResult<bool> {
        self.r.app_done(py, failed)
    }
}

/// Builds the `websocket` scope and starts the app for an upgrade request.
pub fn start_ws_app(
    py: Python<'_>,
    bridge: &Arc<Bridge>,
    exchange: &Arc<dyn WsExchange>,
    head: &RequestHead,
) -> PyResult<()> {
    let (addrs, stale) = conn_entry(
        py,
        bridge,
        exchange.id(),
        exchange.peer(),
        exchange.local(),
        || exchange.tls(),
    );
    drop(stale);
    let client = match exchange.peer() {
        Some(p) => format!("{}:{}", p.ip(), p.port()),
        None => "unix".to_string(),
    };
    let target = String::from_utf8_lossy(head.bytes(head.target));
    let responder = Arc::new(WsResponder {
        exchange: exchange.clone(),
        bridge: bridge.clone(),
        line: format!("{client} - \"WebSocket {target}\""),
    });
    let owner: Arc<dyn TaskOwner> = responder.clone();
    call_app(py, bridge, owner, || {
        let (client, server, tls) = addrs?;
        let forwarded = exchange.forwarded(head);
        let protocols = subprotocols(head);
        let scope = build_ws_scope(
            py,
            &bridge.scope,
            head,
            forwarded,
            &client,
            &server,
            tls.as_ref(),
            &protocols,
        )?;
        let receive = Py::new(
            py,
            WsReceive {
                r: responder.clone(),
            },
        )?;
        let send = Py::new(
            py,
            WsSender {
                r: responder.clone(),
            },
        )?;
        Ok((scope, receive.into_any(), send.into_any()))
    })
}

/// Resolves the waiting calls of a WebSocket whose state changed.
pub fn on_wake(py: Python<'_>, bridge: &Bridge, exchange: &dyn WsExchange) -> PyResult<()> {
    let mut data = None;
    let up = exchange.wakeup(&mut |b, text| data = Some(payload(py, b, text)));
    if up.receive.is_none() && up.send.is_none() {
        return Ok(());
    }
    let (recv, send) = match bridge.conns().get_mut(&exchange.id()) {
        Some(e) => (
            up.receive.as_ref().and_then(|_| e.recv_waiter.take()),
            up.send.as_ref().and_then(|_| e.send_waiter.take()),
        ),
        None => (None, None),
    };
    if let (Some(w), Some(got)) = (recv, &up.receive) {
        resolve(py, w, received_msg(py, got, data))?;
    }
    if let (Some(w), Some(ok)) = (send, up.send) {
        let v = match ok {
            Ok(()) => Ok(py.None().into_bound(py)),
            Err(()) => Err(disconnected()),
        };
        resolve(py, w, v)?;
    }
    Ok(())
}
