//! ASGI `http`: `receive()` and `send()` over the engine's
//! [`HttpExchange`], run on the loop thread with the GIL held. Both usually
//! complete without suspending: `send()` hands the message to the engine,
//! which writes it at once or at the end of the batch, and returns a
//! shared, already-completed future; `receive()` returns a completed future
//! when the body is already buffered. When either must wait, the bridge
//! keeps the future and the engine's [`Event::Wake`] resolves it.
//!
//! [`Event::Wake`]: ferrule_engine::server::exchange::Event::Wake

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ferrule_engine::net::tls::TlsInfo;
use ferrule_engine::proto::h1::{RequestHead, Version};
use ferrule_engine::server::exchange::{
    AppEnd, Completion, ConnId, HttpExchange, Received, ResponsePart, SendError, Sent,
};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use super::context::{Bridge, ConnEntry};
use super::errors::{is_fatal, log_error, ClientDisconnected};
use super::scope::{addr_tuple, build_scope, tls_extension};
use super::task::{self, RequestTask, TaskOwner};

/// What the access log needs once the response is complete.
pub(super) struct LogInfo {
    /// The client a trusted proxy named (`X-Forwarded-For`), as the scope
    /// has it; None: the connection's peer.
    forwarded_client: Option<String>,
    method: String,
    target: String,
    version: Version,
    started: Instant,
}

/// The bridge's side of one request: what its `receive`, `send` and task
/// share.
pub struct HttpResponder {
    exchange: Arc<dyn HttpExchange>,
    seq: u64,
    bridge: Arc<Bridge>,
    log: Mutex<Option<LogInfo>>,
}

#[pyclass(frozen, module = "ferrule._ferrule")]
pub struct Receive {
    r: Arc<HttpResponder>,
    /// The last call object, reused once nothing else holds it.
    spare: Spare,
}

#[pyclass(frozen, name = "Send", module = "ferrule._ferrule")]
pub struct Sender {
    r: Arc<HttpResponder>,
    /// The last call object, reused once nothing else holds it.
    spare: Spare,
}

type Spare = Mutex<Option<Py<Call>>>;

/// A call object for `message` (None: a `receive()`): the spare one when
/// only `spare` still holds it (its await is over: an app awaits each call
/// at once and drops it), else a new one that becomes the spare. Saves an
/// allocation and a deallocation per call on the hot path.
fn call_object(
    py: Python<'_>,
    spare: &Spare,
    r: &Arc<HttpResponder>,
    message: Option<Py<PyAny>>,
) -> PyResult<Py<Call>> {
    let mut slot = spare.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = slot.as_ref() {
        // SAFETY: reading the reference count of a live object, attached.
        if unsafe { pyo3::ffi::Py_REFCNT(c.as_ptr()) } == 1 {
            if let Ok(mut call) = c.bind(py).try_borrow_mut() {
                let old_it = call.it.take();
                let old_message = std::mem::replace(&mut call.message, message);
                call.started = false;
                drop(call);
                let out = c.clone_ref(py);
                drop(slot);
                // Outside the lock: a last reference may run Python.
                drop((old_it, old_message));
                return Ok(out);
            }
        }
    }
    let c = Py::new(
        py,
        Call {
            r: r.clone(),
            message,
            it: None,
            started: false,
        },
    )?;
    let old = slot.replace(c.clone_ref(py));
    drop(slot);
    drop(old);
    Ok(c)
}

/// What `receive()` and `send(message)` return: a coroutine-like object
/// (registered as a `collections.abc.Coroutine`, so `asyncio.iscoroutine`
/// and `run_coroutine_threadsafe` take it) that acts only when awaited or
/// first stepped, on the thread that runs it (the loop's).
#[pyclass(module = "ferrule._ferrule", name = "ASGICall", freelist = 64)]
pub struct Call {
    r: Arc<HttpResponder>,
    /// `send(message)`'s message; None: a `receive()`.
    message: Option<Py<PyAny>>,
    /// The iterator of the future the call returned, once stepped.
    it: Option<Py<PyAny>>,
    started: bool,
}

fn disconnect_msg(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "type"), intern!(py, "http.disconnect"))?;
    Ok(d.into_any())
}

fn request_msg<'py>(
    py: Python<'py>,
    body: Option<Bound<'py, PyBytes>>,
    more: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "type"), intern!(py, "http.request"))?;
    match body {
        Some(b) => d.set_item(intern!(py, "body"), b)?,
        None => d.set_item(intern!(py, "body"), PyBytes::new(py, b""))?,
    }
    d.set_item(intern!(py, "more_body"), more)?;
    Ok(d.into_any())
}

/// The message a `receive()` gets for what the engine answered.
fn received_msg<'py>(
    py: Python<'py>,
    got: &Received,
    body: Option<Bound<'py, PyBytes>>,
) -> PyResult<Bound<'py, PyAny>> {
    match got {
        Received::Body { more } => request_msg(py, body, *more),
        Received::Disconnect | Received::Wait => disconnect_msg(py),
    }
}

/// A future already resolved to `value`.
pub(super) fn ready<'py>(
    py: Python<'py>,
    bridge: &Bridge,
    value: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let fut = bridge.refs.create_future.bind(py).call0()?;
    fut.call_method1(intern!(py, "set_result"), (value,))?;
    Ok(fut)
}

/// Resolves a waiter unless the app cancelled it meanwhile.
pub(super) fn resolve(
    py: Python<'_>,
    fut: Py<PyAny>,
    value: Result<Bound<'_, PyAny>, PyErr>,
) -> PyResult<()> {
    let fut = fut.bind(py);
    if fut.call_method0(intern!(py, "done"))?.is_truthy()? {
        return Ok(());
    }
    match value {
        Ok(v) => fut.call_method1(intern!(py, "set_result"), (v,))?,
        Err(e) => fut.call_method1(intern!(py, "set_exception"), (e.into_value(py),))?,
    };
    Ok(())
}

pub(super) fn bytes_of<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(b.as_bytes()));
    }
    if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err("expected bytes, got str"));
    }
    Ok(Cow::Owned(obj.extract::<Vec<u8>>()?))
}

pub(super) fn header_pairs<'py>(
    headers: Option<Bound<'py, PyAny>>,
) -> PyResult<Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
    let Some(h) = headers else {
        return Ok(Vec::new());
    };
    let pair = |item: Bound<'py, PyAny>| -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        // Fast path for the usual 2-tuples; any 2-item sequence works.
        if let Ok(t) = item.cast::<PyTuple>() {
            if t.len() == 2 {
                return Ok((t.get_item(0)?, t.get_item(1)?));
            }
        }
        Ok((item.get_item(0)?, item.get_item(1)?))
    };
    // A list (the usual case) is walked directly, without a Python iterator.
    if let Ok(list) = h.cast::<PyList>() {
        return list.iter().map(pair).collect();
    }
    let mut out = Vec::with_capacity(h.len().unwrap_or(8));
    for item in h.try_iter()? {
        out.push(pair(item?)?);
    }
    Ok(out)
}

/// The bytes of each header pair (borrowed from `bytes` objects).
pub(super) type HeaderBytes<'a> = Vec<(Cow<'a, [u8]>, Cow<'a, [u8]>)>;

pub(super) fn header_bytes<'a>(
    pairs: &'a [(Bound<'_, PyAny>, Bound<'_, PyAny>)],
) -> PyResult<HeaderBytes<'a>> {
    pairs
        .iter()
        .map(|(n, v)| Ok((bytes_of(n)?, bytes_of(v)?)))
        .collect()
}

/// An optional boolean message key (`more_body`, `trailers`, ...).
pub(super) fn truthy(value: Option<Bound<'_, PyAny>>) -> PyResult<bool> {
    match value {
        Some(v) => v.is_truthy(),
        None => Ok(false),
    }
}

pub(super) fn disconnected() -> PyErr {
    ClientDisconnected::new_err("client disconnected")
}

pub(super) fn unexpected(ty: &str, why: &str) -> PyErr {
    PyRuntimeError::new_err(format!("Unexpected ASGI message '{ty}' sent, {why}."))
}

pub(super) fn send_error(ty: &str, e: SendError) -> PyErr {
    match e {
        SendError::Disconnected => disconnected(),
        SendError::Unexpected(why) => unexpected(ty, why),
        e @ SendError::Start(_) => PyValueError::new_err(e.to_string()),
        e @ (SendError::Body(_)
        | SendError::Trailers(_)
        | SendError::EarlyHint(_)
        | SendError::PathSend { .. }) => PyRuntimeError::new_err(e.to_string()),
    }
}

/// Keeps `fut` as connection `id`'s waiting `receive()` (or `send()`)
/// until the engine's wake-up; false if the connection is already gone.
pub(super) fn park_waiter(
    bridge: &Bridge,
    id: ConnId,
    fut: &Bound<'_, PyAny>,
    receive: bool,
) -> bool {
    // A replaced future is dropped after the lock (it may run Python).
    let replaced = bridge.conns().get_mut(&id).map(|e| {
        let slot = if receive {
            &mut e.recv_waiter
        } else {
            &mut e.send_waiter
        };
        slot.replace(fut.clone().unbind())
    });
    replaced.is_some()
}

/// A key of an ASGI message; None when absent. Messages are almost always
/// dicts, looked up without raising (an absent optional key would
/// otherwise cost a KeyError); any other mapping works too.
// Always inlined: it is on every send()'s path.
#[inline(always)]
pub(super) fn message_item<'py>(
    message: &Bound<'py, PyAny>,
    as_dict: Option<&Bound<'py, PyDict>>,
    key: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    if let Some(d) = as_dict {
        return d.get_item(key);
    }
    match message.get_item(key) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyKeyError>(message.py()) => Ok(None),
        Err(e) => Err(e),
    }
}

impl HttpResponder {
    fn id(&self) -> ConnId {
        self.exchange.id()
    }

    /// A message without a key it needs; an out-of-order message is
    /// refused as such first.
    fn missing(&self, ty: &str, key: &str) -> PyErr {
        if let Err(e) = self.exchange.check_send(self.seq) {
            return send_error(ty, e);
        }
        PyValueError::new_err(format!("'{ty}' needs '{key}'"))
    }

    /// Resolves a `receive()` still waiting with `http.disconnect` (the
    /// response ended or the client went away).
    fn release_receive(&self, py: Python<'_>) -> PyResult<()> {
        let waiter = self
            .bridge
            .conns()
            .get_mut(&self.id())
            .and_then(|e| e.recv_waiter.take());
        match waiter {
            Some(w) => resolve(py, w, disconnect_msg(py)),
            None => Ok(()),
        }
    }

    /// Keeps `fut` until the engine's wake-up for this connection.
    fn park(&self, py: Python<'_>, fut: &Bound<'_, PyAny>, receive: bool) -> PyResult<()> {
        if park_waiter(&self.bridge, self.id(), fut, receive) {
            return Ok(());
        }
        // The connection is already gone: nothing will wake this call.
        let value = if receive {
            disconnect_msg(py)
        } else {
            Err(disconnected())
        };
        resolve(py, fut.clone().unbind(), value)
    }

    fn access_log(&self, py: Python<'_>, done: Completion) -> PyResult<()> {
        access_log(py, &self.bridge, &*self.exchange, &self.log, done)
    }

    /// What `send()` returns for what the engine did with a message.
    fn sent<'py>(
        &self,
        py: Python<'py>,
        ty: &str,
        result: Result<Sent, SendError>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let refs = &self.bridge.refs;
        match result {
            Ok(Sent::Done) => Ok(refs.done.bind(py).clone()),
            Ok(Sent::Wait) => {
                let fut = refs.create_future.bind(py).call0()?;
                self.park(py, &fut, false)?;
                Ok(fut)
            }
            Ok(Sent::Complete(done)) => {
                if done.waiting_receive {
                    self.release_receive(py)?;
                }
                self.access_log(py, done)?;
                Ok(refs.done.bind(py).clone())
            }
            Err(SendError::Disconnected) => {
                self.release_receive(py)?;
                Err(send_error(ty, SendError::Disconnected))
            }
            Err(e) => Err(send_error(ty, e)),
        }
    }
}

impl TaskOwner for HttpResponder {
    /// Every request reaches the access log once: here, if its response
    /// did not complete (nginx's convention: the status sent, or 499 when
    /// the client left before any).
    fn app_done(&self, py: Python<'_>, failed: bool) -> PyResult<bool> {
        match self.exchange.app_done(self.seq, failed) {
            AppEnd::Complete => Ok(false),
            AppEnd::ClientGone(mut sent) => {
                if sent.status == 0 {
                    sent.status = CLIENT_CLOSED;
                }
                self.release_receive(py)?;
                self.access_log(py, sent)?;
                Ok(false)
            }
            AppEnd::Abandoned(sent) => {
                self.release_receive(py)?;
                self.access_log(py, sent)?;
                Ok(false)
            }
            AppEnd::Aborted(sent) | AppEnd::Answered(sent) => {
                self.release_receive(py)?;
                self.access_log(py, sent)?;
                Ok(true)
            }
        }
    }
}

impl LogInfo {
    /// Taken when the request starts (its duration counts from now).
    pub(super) fn new(head: &RequestHead, forwarded_client: Option<&str>) -> Self {
        LogInfo {
            forwarded_client: forwarded_client.map(str::to_owned),
            method: String::from_utf8_lossy(head.method()).into_owned(),
            target: String::from_utf8_lossy(head.bytes(head.target)).into_owned(),
            version: head.version,
            started: Instant::now(),
        }
    }
}

/// The access log line of a finished request (once: `log` is emptied).
pub(super) fn access_log(
    py: Python<'_>,
    bridge: &Bridge,
    exchange: &dyn HttpExchange,
    log: &Mutex<Option<LogInfo>>,
    done: Completion,
) -> PyResult<()> {
    let Some(cb) = bridge.refs.access_log.as_ref() else {
        return Ok(());
    };
    let info = log.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(info) = info else {
        return Ok(());
    };
    let client = match (info.forwarded_client, exchange.peer()) {
        // The port of a forwarded client is unknown: 0, as in the scope.
        (Some(c), _) => format!("{c}:0"),
        (None, Some(p)) => format!("{}:{}", p.ip(), p.port()),
        (None, None) => "unix".to_string(),
    };
    let version = match info.version {
        Version::Http10 => "1.0",
        Version::Http11 => "1.1",
        Version::Http2 => "2",
    };
    let ms = info.started.elapsed().as_secs_f64() * 1000.0;
    cb.bind(py).call1((
        client,
        info.method,
        info.target,
        version,
        done.status,
        done.body_bytes,
        ms,
    ))?;
    Ok(())
}

/// The access log's status for a request whose client closed the
/// connection before a response head was sent (nginx's 499).
pub(super) const CLIENT_CLOSED: u16 = 499;

/// `--request-body-end-event`: a last chunk that carries bytes goes out
/// with `more_body=True`, and the connection's next `receive()` gets an
/// empty final event (h11's way), for apps that drop a last chunk's body.
fn split_end(bridge: &Bridge, id: ConnId, got: &mut Received, has_body: bool) {
    if let Received::Body { more } = got {
        if !*more && has_body {
            if let Some(e) = bridge.conns().get_mut(&id) {
                *more = true;
                e.end_pending = true;
            }
        }
    }
}

impl HttpResponder {
    /// `receive()` now: the message, or a future the engine's wake-up
    /// resolves.
    fn receive_now<'py>(&self, py: Python<'py>) -> PyResult<Outcome<'py>> {
        let body_end = self.bridge.refs.body_end_event;
        if body_end {
            let pending = self
                .bridge
                .conns()
                .get_mut(&self.id())
                .is_some_and(|e| std::mem::take(&mut e.end_pending));
            if pending {
                return Ok(Outcome::Ready(request_msg(py, None, false)?));
            }
        }
        let mut body = None;
        let mut got = self
            .exchange
            .receive(self.seq, &mut |b| body = Some(PyBytes::new(py, b)));
        if got == Received::Wait {
            let fut = self.bridge.refs.create_future.bind(py).call0()?;
            self.park(py, &fut, true)?;
            return Ok(Outcome::Wait(fut));
        }
        if body_end {
            let has_body = body.as_ref().is_some_and(|b| !b.as_bytes().is_empty());
            split_end(&self.bridge, self.id(), &mut got, has_body);
        }
        Ok(Outcome::Ready(received_msg(py, &got, body)?))
    }
}

/// What an ASGI call came to when it acted.
enum Outcome<'py> {
    /// Done: `receive()`'s message, or None for `send()`.
    Ready(Bound<'py, PyAny>),
    /// A future the engine's wake-up resolves.
    Wait(Bound<'py, PyAny>),
}

/// One step of an [`Call`]: the await ends with a value, or yields one.
enum Step<'py> {
    Return(Bound<'py, PyAny>),
    Yield(Bound<'py, PyAny>),
}

/// `PyIter_Send` on a future's iterator, as a [`Step`].
fn iter_send<'py>(it: &Bound<'py, PyAny>, value: &Bound<'py, PyAny>) -> PyResult<Step<'py>> {
    let py = it.py();
    let mut out: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
    // SAFETY: both objects are live and we are attached; PyIter_Send
    // hands back a new reference in `out` (or none, with an exception set).
    let r = unsafe { pyo3::ffi::PyIter_Send(it.as_ptr(), value.as_ptr(), &mut out) };
    match r {
        pyo3::ffi::PySendResult::PYGEN_ERROR => Err(PyErr::fetch(py)),
        // SAFETY: `out` is the new reference PyIter_Send gave us.
        pyo3::ffi::PySendResult::PYGEN_NEXT => {
            Ok(Step::Yield(unsafe { Bound::from_owned_ptr(py, out) }))
        }
        pyo3::ffi::PySendResult::PYGEN_RETURN => {
            Ok(Step::Return(unsafe { Bound::from_owned_ptr(py, out) }))
        }
    }
}

impl Call {
    /// Steps the call: the first step acts (receives or sends). Ready, the
    /// await ends here with no future made (None for a `send()`, the
    /// message for a `receive()`); otherwise it yields the future as
    /// awaiting it would, and later steps go to that future's iterator.
    fn step<'py>(&mut self, py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Step<'py>> {
        if let Some(it) = &self.it {
            let it = it.bind(py).clone();
            let step = iter_send(&it, value);
            if !matches!(step, Ok(Step::Yield(_))) {
                self.it = None;
            }
            return step;
        }
        if self.started {
            return Err(PyRuntimeError::new_err(
                "cannot reuse already awaited ASGI call",
            ));
        }
        self.started = true;
        let outcome = match self.message.take() {
            None => self.r.receive_now(py)?,
            Some(m) => {
                let fut = send_now(&self.r, py, m.bind(py))?;
                if fut.is(self.r.bridge.refs.done.bind(py)) {
                    return Ok(Step::Return(py.None().into_bound(py)));
                }
                Outcome::Wait(fut)
            }
        };
        match outcome {
            Outcome::Ready(v) => Ok(Step::Return(v)),
            Outcome::Wait(fut) => {
                let it = fut.try_iter()?.into_any();
                self.it = Some(it.clone().unbind());
                iter_send(&it, &py.None().into_bound(py))
            }
        }
    }

    /// A step as the iterator protocol reports it: the value yielded, or
    /// StopIteration carrying the result.
    fn step_iter<'py>(
        &mut self,
        py: Python<'py>,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self.step(py, value)? {
            Step::Yield(v) => Ok(Some(v)),
            Step::Return(v) if v.is_none() => Ok(None),
            Step::Return(v) => Err(pyo3::exceptions::PyStopIteration::new_err((v.unbind(),))),
        }
    }
}

/// `am_send`, the slot `await` and asyncio's Tasks step a call through
/// (`PyIter_Send`): the result comes back without a StopIteration, and
/// without the argument parsing of a method call.
unsafe extern "C" fn call_am_send(
    slf: *mut pyo3::ffi::PyObject,
    arg: *mut pyo3::ffi::PyObject,
    result: *mut *mut pyo3::ffi::PyObject,
) -> pyo3::ffi::PySendResult {
    use pyo3::ffi::PySendResult::{PYGEN_ERROR, PYGEN_NEXT, PYGEN_RETURN};
    // SAFETY: CPython calls the slot attached, with live objects.
    let py = unsafe { Python::assume_attached() };
    let run = std::panic::AssertUnwindSafe(|| -> PyResult<Step<'_>> {
        // SAFETY: the slot is only installed on the Call type.
        let slf = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<Call>() };
        let arg = unsafe { Bound::from_borrowed_ptr(py, arg) };
        let mut call = slf.try_borrow_mut()?;
        call.step(py, &arg)
    });
    let r = std::panic::catch_unwind(run)
        .unwrap_or_else(|_| Err(PyRuntimeError::new_err("ferrule: panic in an ASGI call")));
    // SAFETY: `result` is CPython's out pointer.
    unsafe {
        match r {
            Ok(Step::Return(v)) => {
                *result = v.into_ptr();
                PYGEN_RETURN
            }
            Ok(Step::Yield(v)) => {
                *result = v.into_ptr();
                PYGEN_NEXT
            }
            Err(e) => {
                e.restore(py);
                *result = std::ptr::null_mut();
                PYGEN_ERROR
            }
        }
    }
}

/// `am_await`: the call is its own iterator.
unsafe extern "C" fn call_am_await(slf: *mut pyo3::ffi::PyObject) -> *mut pyo3::ffi::PyObject {
    // SAFETY: a live object; the new reference is the caller's.
    unsafe { pyo3::ffi::Py_IncRef(slf) };
    slf
}

/// Puts the C-level `await` slots on the Call type: pyo3's generated
/// `__await__`/`__next__` trampolines cost about 500 instructions per
/// `send()` (measured with callgrind), the slots almost none. The methods
/// stay for callers that use them by name.
pub fn install_call_slots(py: Python<'_>) {
    let ty = py.get_type::<Call>();
    // SAFETY: a heap type pyo3 created with an `__await__` slot, so its
    // `tp_as_async` points at the type's own, writable, async methods;
    // nothing has used the type yet.
    unsafe {
        let tp = ty.as_type_ptr();
        let am = (*tp).tp_as_async;
        if !am.is_null() {
            (*am).am_await = Some(call_am_await);
            (*am).am_send = Some(call_am_send);
        }
    }
}

#[pymethods]
impl Call {
    /// `await call`: the call is its own iterator; it acts at its first step.
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.step_iter(py, &py.None().into_bound(py))
    }

    fn send<'py>(
        &mut self,
        py: Python<'py>,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.step_iter(py, value)
    }

    #[pyo3(signature = (typ, val = None, tb = None))]
    fn throw<'py>(
        &mut self,
        py: Python<'py>,
        typ: &Bound<'py, PyAny>,
        val: Option<&Bound<'py, PyAny>>,
        tb: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Some(it) = &self.it {
            let it = it.bind(py).clone();
            if it.hasattr(intern!(py, "throw"))? {
                // The one-argument form unless the caller used the old three
                // (3.12 deprecated them: a warning per thrown exception).
                let name = intern!(py, "throw");
                return match (val, tb) {
                    (None, None) => it.call_method1(name, (typ,)),
                    _ => it.call_method1(name, (typ, val, tb)),
                };
            }
        }
        self.started = true;
        self.message = None;
        let exc = match val {
            Some(v) if !v.is_none() => v.clone(),
            _ if typ.is_instance_of::<pyo3::types::PyType>() => typ.call0()?,
            _ => typ.clone(),
        };
        Err(PyErr::from_value(exc))
    }

    fn close(&mut self) {
        self.started = true;
        self.message = None;
        self.it = None;
    }
}

#[pymethods]
impl Receive {
    fn __call__(&self, py: Python<'_>) -> PyResult<Py<Call>> {
        call_object(py, &self.spare, &self.r, None)
    }
}

#[pymethods]
impl Sender {
    fn __call__(&self, py: Python<'_>, message: Py<PyAny>) -> PyResult<Py<Call>> {
        call_object(py, &self.spare, &self.r, Some(message))
    }

    /// `send.__self__`, as on a bound method (hypercorn's `send` is one):
    /// rolo reads `send.__self__.closed` before each body write. The app
    /// gets this object itself, so no bound method is made per request.
    #[getter(__self__)]
    fn self_(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// True once the client has gone.
    #[getter]
    fn closed(&self) -> bool {
        self.r.exchange.is_closed()
    }

    /// Called by the Python runner when the app coroutine ends. Returns
    /// true when the response was not complete (ferrule then sent a 500, or
    /// closed the connection if part of the response had been written).
    pub fn app_done(&self, py: Python<'_>, failed: bool) -> PyResult<bool> {
        self.r.app_done(py, failed)
    }
}

/// `send(message)` now: a future (the shared completed one, or one the
/// engine's wake-up resolves).
fn send_now<'py>(
    r: &HttpResponder,
    py: Python<'py>,
    message: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    {
        let ty_obj = message.get_item(intern!(py, "type"))?;
        let ty = ty_obj.cast::<PyString>()?.to_cow()?;
        let as_dict = message.cast::<PyDict>().ok();
        let get = |key: &Bound<'py, PyString>| message_item(message, as_dict, key);
        let result = match &*ty {
            "http.response.start" => {
                let status: u16 = match get(intern!(py, "status"))? {
                    Some(s) => s.extract()?,
                    None => return Err(r.missing(&ty, "status")),
                };
                let trailers = truthy(get(intern!(py, "trailers"))?)?;
                let pairs = header_pairs(get(intern!(py, "headers"))?)?;
                let raw = header_bytes(&pairs)?;
                let mut headers = raw.iter().map(|(n, v)| (n.as_ref(), v.as_ref()));
                r.exchange.send(
                    r.seq,
                    ResponsePart::Start {
                        status,
                        headers: &mut headers,
                        trailers,
                    },
                )
            }
            "http.response.body" => {
                let body_obj = get(intern!(py, "body"))?;
                let data: Cow<[u8]> = match &body_obj {
                    Some(b) => bytes_of(b)?,
                    None => Cow::Borrowed(&[]),
                };
                let more = truthy(get(intern!(py, "more_body"))?)?;
                r.exchange
                    .send(r.seq, ResponsePart::Body { data: &data, more })
            }
            "http.response.trailers" => {
                let more = truthy(get(intern!(py, "more_trailers"))?)?;
                let pairs = header_pairs(get(intern!(py, "headers"))?)?;
                let raw = header_bytes(&pairs)?;
                let mut headers = raw.iter().map(|(n, v)| (n.as_ref(), v.as_ref()));
                r.exchange.send(
                    r.seq,
                    ResponsePart::Trailers {
                        headers: &mut headers,
                        more,
                    },
                )
            }
            "http.response.pathsend" => {
                let path: std::path::PathBuf = match get(intern!(py, "path"))? {
                    Some(p) => p.extract()?,
                    None => return Err(r.missing(&ty, "path")),
                };
                r.exchange
                    .send(r.seq, ResponsePart::PathSend { path: &path })
            }
            "http.response.early_hint" => {
                let links: Vec<Bound<'py, PyAny>> = match get(intern!(py, "links"))? {
                    Some(l) => l.try_iter()?.collect::<PyResult<_>>()?,
                    None => Vec::new(),
                };
                let raw = links.iter().map(bytes_of).collect::<PyResult<Vec<_>>>()?;
                let mut it = raw.iter().map(|l| l.as_ref());
                r.exchange
                    .send(r.seq, ResponsePart::EarlyHint { links: &mut it })
            }
            other => {
                // An out-of-order message is refused as such, whatever its type.
                r.exchange
                    .check_send(r.seq)
                    .map_err(|e| send_error(other, e))?;
                return Err(unexpected(other, "not a valid HTTP response message"));
            }
        };
        r.sent(py, &ty, result)
    }
}

/// Builds the scope and starts the app for a parsed request.
pub fn start_app(
    py: Python<'_>,
    bridge: &Arc<Bridge>,
    exchange: &Arc<dyn HttpExchange>,
    head: &RequestHead,
) -> PyResult<()> {
    let refs = &bridge.refs;
    let (addrs, stale) = conn_entry(
        py,
        bridge,
        exchange.id(),
        exchange.peer(),
        exchange.local(),
        || exchange.tls(),
    );
    // Waiters of the connection's previous request are done with.
    drop(stale);
    let forwarded = exchange.forwarded(head);
    let log = refs
        .access_log
        .as_ref()
        .map(|_| LogInfo::new(head, forwarded.client));
    let responder = Arc::new(HttpResponder {
        exchange: exchange.clone(),
        seq: exchange.seq(),
        bridge: bridge.clone(),
        log: Mutex::new(log),
    });
    let owner: Arc<dyn TaskOwner> = responder.clone();
    call_app(py, bridge, owner, || {
        let (client, server, tls) = addrs?;
        let scope = build_scope(
            py,
            &bridge.scope,
            head,
            forwarded,
            &client,
            &server,
            tls.as_ref(),
        )?;
        let receive = Py::new(
            py,
            Receive {
                r: responder.clone(),
                spare: Mutex::new(None),
            },
        )?;
        let send = Py::new(
            py,
            Sender {
                r: responder.clone(),
                spare: Mutex::new(None),
            },
        )?;
        Ok((scope, receive.into_any(), send.into_any()))
    })
}

/// A connection's scope tuples and TLS dict: `(client, server, tls)`.
pub(super) type ConnAddrs = (Py<PyAny>, Py<PyAny>, Option<Py<PyDict>>);

/// The waiters a connection's previous request left (dropped by the caller
/// once no lock is held: a last reference may run Python).
pub(super) type StaleWaiters = Option<(Option<Py<PyAny>>, Option<Py<PyAny>>)>;

/// The bridge's entry for connection `id`, made on its first request (or
/// WebSocket): its address tuples, and the previous request's waiters.
pub(super) fn conn_entry(
    py: Python<'_>,
    bridge: &Bridge,
    id: ConnId,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    tls: impl FnOnce() -> Option<Arc<TlsInfo>>,
) -> (PyResult<ConnAddrs>, StaleWaiters) {
    // No Python runs while the bridge's map is locked (an allocation may
    // run the GC, and a finalizer may call receive() or send()): tuples are
    // built, and old waiters dropped, outside the lock.
    let known = bridge.conns().get_mut(&id).map(|e| {
        let tls = e.tls.as_ref().map(|t| t.clone_ref(py));
        let addrs = (e.client.clone_ref(py), e.server.clone_ref(py), tls);
        e.end_pending = false;
        (addrs, (e.recv_waiter.take(), e.send_waiter.take()))
    });
    if let Some((addrs, stale)) = known {
        return (Ok(addrs), Some(stale));
    }
    let addrs = addr_tuple(py, peer.as_ref()).and_then(|c| {
        let server = addr_tuple(py, local.as_ref())?;
        let tls = match tls() {
            Some(info) => Some(tls_extension(py, &info)?.unbind()),
            None => None,
        };
        Ok((c, server, tls))
    });
    if let Ok((client, server, tls)) = &addrs {
        let entry = ConnEntry {
            client: client.clone_ref(py),
            server: server.clone_ref(py),
            tls: tls.as_ref().map(|t| t.clone_ref(py)),
            recv_waiter: None,
            send_waiter: None,
            end_pending: false,
        };
        bridge.conns().insert(id, entry);
    }
    (addrs, None)
}

/// Calls the app with what `args` builds (scope, receive, send) and runs
/// the call as a `RequestTask` (or an asyncio Task through the runner).
/// Failing to build or call is an app failure reported to `owner`.
pub(super) fn call_app<'py>(
    py: Python<'py>,
    bridge: &Arc<Bridge>,
    owner: Arc<dyn TaskOwner>,
    args: impl FnOnce() -> PyResult<(Bound<'py, PyDict>, Py<PyAny>, Py<PyAny>)>,
) -> PyResult<()> {
    let refs = &bridge.refs;
    let run = || -> PyResult<()> {
        let (scope, receive, send) = args()?;
        // Each request runs in its own copy of the context, as an asyncio
        // task would (an empty one with --reset-contextvars); the app is
        // called inside it too.
        let ctx = if refs.fresh_context {
            task::new_context(py)?
        } else {
            task::copy_context(py)?
        };
        task::in_context(py, &ctx, || -> PyResult<()> {
            let call = match refs
                .app
                .bind(py)
                .call1((scope, receive, send.clone_ref(py)))
            {
                Ok(call) => call,
                Err(e) => {
                    // The app failed before returning an awaitable.
                    owner.app_done(py, true)?;
                    bridge.tasks.report.bind(py).call1((e.value(py),))?;
                    return if is_fatal(py, &e) { Err(e) } else { Ok(()) };
                }
            };
            if refs.task_driver && task::is_coroutine(&call) {
                return RequestTask::start(py, &bridge.tasks, call, ctx.clone(), owner.clone());
            }
            // The new Task copies the current context: the request's. No
            // `context=` argument: older task factories do not take one.
            let coro = refs.runner.bind(py).call1((call, send))?;
            refs.spawn
                .bind(py)
                .call((coro,), Some(refs.task_kwargs.bind(py)))?;
            Ok(())
        })?
    };
    match run() {
        Ok(()) => Ok(()),
        Err(e) if is_fatal(py, &e) => Err(e),
        Err(e) => {
            // Could not even start the app: answer through the same path
            // as an app failure.
            log_error(py, "ferrule: could not start the ASGI application", e);
            owner.app_done(py, true)?;
            Ok(())
        }
    }
}

/// Resolves the waiting calls of an exchange whose state changed.
pub fn on_wake(py: Python<'_>, bridge: &Bridge, exchange: &dyn HttpExchange) -> PyResult<()> {
    let mut body = None;
    let up = exchange.wakeup(&mut |b| body = Some(PyBytes::new(py, b)));
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
    if let (Some(w), Some(mut got)) = (recv, up.receive) {
        if bridge.refs.body_end_event {
            let has_body = body.as_ref().is_some_and(|b| !b.as_bytes().is_empty());
            split_end(bridge, exchange.id(), &mut got, has_body);
        }
        resolve(py, w, received_msg(py, &got, body))?;
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

/// The connection is gone: drop what the bridge kept for it.
pub fn on_closed(bridge: &Bridge, id: ConnId) {
    let entry = bridge.conns().remove(&id);
    // Dropped after the lock is released: a last reference may run Python.
    drop(entry);
}
