//! ASGI bridge: scope building, `receive()` and `send()`, run on the loop
//! thread with the GIL held. Both usually complete without suspending:
//! `send()` writes directly with one non-blocking syscall and returns a
//! shared, already-completed future; `receive()` returns a completed future
//! when the body is already buffered.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::{create_exception, intern};

use crate::engine::conn::{Conn, ConnState, LogInfo};
use crate::engine::proxy;
use crate::engine::stats::Stats;
use crate::engine::{lock, PyRefs, Shared};
use crate::http1::{write_simple_response, RequestHead, Version, CONTINUE_100};
use crate::task::{self, RequestTask};

create_exception!(
    _ferrule,
    ClientDisconnected,
    PyOSError,
    "The client went away; the response can no longer be sent."
);

#[pyclass(frozen, module = "ferrule._ferrule")]
pub struct Receive {
    conn: Arc<Conn>,
    seq: u64,
}

#[pyclass(frozen, name = "Send", module = "ferrule._ferrule")]
pub struct Sender {
    conn: Arc<Conn>,
    seq: u64,
}

fn disconnect_msg(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "type"), intern!(py, "http.disconnect"))?;
    Ok(d)
}

/// A future already resolved to `value`.
fn ready<'py>(
    py: Python<'py>,
    refs: &PyRefs,
    value: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let fut = refs.create_future.bind(py).call0()?;
    fut.call_method1(intern!(py, "set_result"), (value,))?;
    Ok(fut)
}

/// Resolves a waiter unless the app cancelled it meanwhile.
fn resolve(py: Python<'_>, fut: Py<PyAny>, value: Result<Bound<'_, PyAny>, PyErr>) -> PyResult<()> {
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

/// The next `http.request` message, if one can be given now.
fn take_body_message<'py>(
    py: Python<'py>,
    st: &mut ConnState,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    if st.body_delivered || st.body_error || (st.body_buf.is_empty() && !st.body_done) {
        return Ok(None);
    }
    let body = PyBytes::new(py, &st.body_buf);
    st.body_buf.clear();
    let more = !st.body_done;
    st.body_delivered = !more;
    let d = PyDict::new(py);
    d.set_item(intern!(py, "type"), intern!(py, "http.request"))?;
    d.set_item(intern!(py, "body"), body)?;
    d.set_item(intern!(py, "more_body"), more)?;
    Ok(Some(d))
}

/// What a waiting `receive()` gets now, if anything.
fn receive_now<'py>(
    py: Python<'py>,
    st: &mut ConnState,
    seq: u64,
    shutting_down: bool,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    // At shutdown an app that only listens for disconnect (server-sent
    // events, long polls) is told the client is gone, so it ends.
    if st.seq != seq || st.response_done || st.closed || (shutting_down && st.body_delivered) {
        return Ok(Some(disconnect_msg(py)?.into_any()));
    }
    if let Some(m) = take_body_message(py, st)? {
        return Ok(Some(m.into_any()));
    }
    if st.body_error {
        return Ok(Some(disconnect_msg(py)?.into_any()));
    }
    Ok(None)
}

#[pymethods]
impl Receive {
    fn __call__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let conn = &self.conn;
        let shared = &conn.shared;
        let refs = shared.refs()?;
        let mut st = lock(&conn.state);
        let was_full = st.body_buf.len() >= shared.cfg.body_buffer;
        if let Some(msg) = receive_now(py, &mut st, self.seq, shared.is_shutting_down())? {
            let resume = was_full && !st.body_done;
            drop(st);
            if resume {
                shared.schedule(conn);
            }
            return ready(py, refs, msg);
        }
        // Expect: 100-continue is answered only now, when the app first
        // waits for the body.
        if st.expect_continue {
            st.expect_continue = false;
            let head_written = st.enc.as_ref().is_some_and(|e| e.head_written());
            if !head_written {
                st.out.extend_from_slice(CONTINUE_100);
                let _ = conn.write_now(&mut st);
            }
        }
        let fut = refs.create_future.bind(py).call0()?;
        st.recv_waiter = Some(fut.clone().unbind());
        drop(st);
        shared.schedule(conn);
        Ok(fut)
    }
}

fn bytes_of<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(b.as_bytes()));
    }
    if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err("expected bytes, got str"));
    }
    Ok(Cow::Owned(obj.extract::<Vec<u8>>()?))
}

fn header_pairs<'py>(
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
type HeaderBytes<'a> = Vec<(Cow<'a, [u8]>, Cow<'a, [u8]>)>;

fn header_bytes<'a>(
    pairs: &'a [(Bound<'_, PyAny>, Bound<'_, PyAny>)],
) -> PyResult<HeaderBytes<'a>> {
    pairs
        .iter()
        .map(|(n, v)| Ok((bytes_of(n)?, bytes_of(v)?)))
        .collect()
}

/// An optional boolean message key (`more_body`, `trailers`, ...).
fn truthy(value: Option<Bound<'_, PyAny>>) -> PyResult<bool> {
    match value {
        Some(v) => v.is_truthy(),
        None => Ok(false),
    }
}

fn unexpected(ty: &str, why: &str) -> PyErr {
    PyRuntimeError::new_err(format!("Unexpected ASGI message '{ty}' sent, {why}."))
}

/// Completion bookkeeping once the last byte of a response is encoded.
/// Returns the waiter to resolve with `http.disconnect` and the log line.
fn finish_response(
    st: &mut ConnState,
    shared: &Shared,
) -> (Option<Py<PyAny>>, Option<AccessEntry>, bool) {
    st.response_done = true;
    Stats::inc(&shared.stats.responses);
    let enc_keep = st.enc.as_ref().is_none_or(|e| e.keep_alive());
    // A client still waiting for `100 Continue` may send its body or not:
    // framing is in doubt, so the connection ends with this response.
    let unanswered_continue = st.expect_continue && !st.body_done;
    st.keep_alive_after = st.keep_alive_after && enc_keep && !unanswered_continue;
    let log = st.log.take().map(|l| {
        let (status, bytes) = st
            .enc
            .as_ref()
            .map(|e| (e.status(), e.body_bytes()))
            .unwrap_or((0, 0));
        (l, status, bytes)
    });
    // The usual end (keep-alive, body read, response written, nothing
    // pipelined) needs nothing from the connection's task until the client
    // sends again: its pending read sees the next request. Not waking it
    // saves a poll per request; the request stops counting as in flight
    // here instead, and the keep-alive time counts from now.
    let settled = st.keep_alive_after
        && st.active
        && !st.abort
        && st.body_done
        && !st.body_error
        && !st.has_next
        && !st.write_pending
        && !shared.is_shutting_down();
    let quiet = settled && st.out.is_empty() && !st.deferred;
    if quiet {
        st.end_quietly(shared);
    }
    // Bytes left for the end of the dispatch batch: the request ends
    // quietly only once they are all written (Shared::flush_deferred).
    st.quiet_pending = settled && st.deferred && !st.out.is_empty();
    let wake = !quiet && !st.quiet_pending;
    (st.recv_waiter.take(), log, wake)
}

/// A completed response's access-log data: request info, status, bytes.
type AccessEntry = (LogInfo, u16, u64);

fn after_finish(
    py: Python<'_>,
    conn: &Arc<Conn>,
    refs: &PyRefs,
    waiter: Option<Py<PyAny>>,
    log: Option<AccessEntry>,
    wake: bool,
) -> PyResult<()> {
    if wake {
        conn.shared.schedule(conn);
    }
    if let Some(w) = waiter {
        resolve(py, w, Ok(disconnect_msg(py)?.into_any()))?;
    }
    if let (Some((info, status, bytes)), Some(cb)) = (log, refs.access_log.as_ref()) {
        let client = match conn.peer {
            Some(p) => format!("{}:{}", p.ip(), p.port()),
            None => "unix".to_string(),
        };
        let version = match info.version {
            Version::Http10 => "1.0",
            Version::Http11 => "1.1",
        };
        let ms = info.started.elapsed().as_secs_f64() * 1000.0;
        cb.bind(py)
            .call1((client, info.method, info.target, version, status, bytes, ms))?;
    }
    Ok(())
}

#[pymethods]
impl Sender {
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        message: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let conn = &self.conn;
        let shared = &*conn.shared;
        let refs = shared.refs()?;
        let ty_obj = message.get_item(intern!(py, "type"))?;
        let ty = ty_obj.cast::<PyString>()?.to_cow()?;
        // Messages are almost always dicts: look keys up without raising
        // (an absent optional key would otherwise cost a KeyError).
        let as_dict = message.cast::<PyDict>().ok();
        let get = |key: &Bound<'py, PyString>| -> PyResult<Option<Bound<'py, PyAny>>> {
            if let Some(d) = as_dict {
                return d.get_item(key);
            }
            match message.get_item(key) {
                Ok(v) => Ok(Some(v)),
                Err(e) if e.is_instance_of::<pyo3::exceptions::PyKeyError>(py) => Ok(None),
                Err(e) => Err(e),
            }
        };
        let mut st = lock(&conn.state);
        if st.seq != self.seq || (st.response_done && !st.closed) {
            return Err(unexpected(&ty, "after response already completed"));
        }
        if st.closed {
            return Err(ClientDisconnected::new_err("client disconnected"));
        }
        match &*ty {
            "http.response.start" => {
                let status: u16 = match get(intern!(py, "status"))? {
                    Some(s) => s.extract()?,
                    None => {
                        return Err(PyValueError::new_err(
                            "'http.response.start' needs 'status'",
                        ))
                    }
                };
                let trailers = truthy(get(intern!(py, "trailers"))?)?;
                let pairs = header_pairs(get(intern!(py, "headers"))?)?;
                let raw = header_bytes(&pairs)?;
                let enc = st
                    .enc
                    .as_mut()
                    .ok_or_else(|| unexpected(&ty, "with no request"))?;
                if enc.is_started() {
                    return Err(unexpected(&ty, "after response already started"));
                }
                enc.start(
                    status,
                    raw.iter().map(|(n, v)| (n.as_ref(), v.as_ref())),
                    trailers,
                )
                .map_err(|e| PyValueError::new_err(format!("invalid response start: {e}")))?;
                Ok(refs.done.bind(py).clone())
            }
            "http.response.body" => {
                let body_obj = get(intern!(py, "body"))?;
                let body: Cow<[u8]> = match &body_obj {
                    Some(b) => bytes_of(b)?,
                    None => Cow::Borrowed(&[]),
                };
                let more = truthy(get(intern!(py, "more_body"))?)?;
                let date = shared.date.get();
                let shutting_down = shared.is_shutting_down();
                let st = &mut *st;
                let enc = st
                    .enc
                    .as_mut()
                    .ok_or_else(|| unexpected(&ty, "with no request"))?;
                if !enc.is_started() {
                    return Err(unexpected(&ty, "before 'http.response.start'"));
                }
                if shutting_down && !enc.head_written() {
                    enc.force_close();
                }
                enc.body(&body, more, &shared.cfg.defaults, &date, &mut st.out)
                    .map_err(|e| PyRuntimeError::new_err(format!("invalid response body: {e}")))?;
                let complete = enc.is_complete();
                self.flush_and_finish(py, st, refs, complete)
            }
            "http.response.trailers" => {
                let more = truthy(get(intern!(py, "more_trailers"))?)?;
                let pairs = header_pairs(get(intern!(py, "headers"))?)?;
                let raw = header_bytes(&pairs)?;
                let st = &mut *st;
                let enc = st
                    .enc
                    .as_mut()
                    .ok_or_else(|| unexpected(&ty, "with no request"))?;
                enc.trailers(
                    raw.iter().map(|(n, v)| (n.as_ref(), v.as_ref())),
                    more,
                    &mut st.out,
                )
                .map_err(|e| PyRuntimeError::new_err(format!("invalid trailers: {e}")))?;
                let complete = enc.is_complete();
                self.flush_and_finish(py, st, refs, complete)
            }
            other => Err(unexpected(other, "not a valid HTTP response message")),
        }
    }

    /// Called by the Python runner when the app coroutine ends. Returns
    /// true when the response was not complete (ferrule then sent a 500, or
    /// closed the connection if part of the response had been written).
    pub fn app_done(&self, py: Python<'_>, failed: bool) -> PyResult<bool> {
        let conn = &self.conn;
        let shared = &*conn.shared;
        let refs = shared.refs()?;
        let mut st = lock(&conn.state);
        if st.seq != self.seq || st.response_done {
            return Ok(false);
        }
        if failed {
            Stats::inc(&shared.stats.app_errors);
        }
        if st.closed {
            // The client went away: nothing more can be sent, and that is
            // not the app's fault, so there is nothing to report.
            st.response_done = true;
            drop(st);
            conn.shared.schedule(conn);
            return Ok(false);
        }
        let head_written = st.enc.as_ref().is_some_and(|e| e.head_written());
        if head_written {
            st.abort = true;
            st.response_done = true;
            let waiter = st.recv_waiter.take();
            drop(st);
            after_finish(py, conn, refs, waiter, None, true)?;
            return Ok(true);
        }
        // Nothing of the response reached the wire: answer 500 instead.
        let date = shared.date.get();
        let keep = st.keep_alive_after && !shared.is_shutting_down();
        write_simple_response(
            &mut st.out,
            500,
            b"Internal Server Error",
            !keep,
            &shared.cfg.defaults,
            &date,
        );
        let _ = conn.write_now(&mut st);
        let (waiter, log, _) = finish_response(&mut st, shared);
        let log = log.map(|(info, _, _)| (info, 500, 21));
        st.keep_alive_after = keep && st.keep_alive_after;
        drop(st);
        after_finish(py, conn, refs, waiter, log, true)?;
        Ok(true)
    }
}

impl Sender {
    fn flush_and_finish<'py>(
        &self,
        py: Python<'py>,
        st: &mut ConnState,
        refs: &PyRefs,
        complete: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let conn = &self.conn;
        let shared = &*conn.shared;
        // Wire rule 2: the last message of a response is written at once; a
        // non-final one waits for the end of this loop iteration, so chunks
        // sent without an await in between leave in one write. "At once"
        // inside select()'s dispatch means at the end of that batch: the
        // batch's responses then leave in one burst of writes after the
        // batch's Python work, which keeps each side's code and data in
        // the caches (design.md, "Responses finished in a dispatch batch").
        let at_once = st.out.len() >= shared.cfg.write_high_water
            || (complete && !shared.in_dispatch.load(Ordering::Relaxed));
        if at_once {
            if conn.write_now(st).is_err() {
                if let Some(w) = st.recv_waiter.take() {
                    resolve(py, w, Ok(disconnect_msg(py)?.into_any()))?;
                }
                shared.schedule(conn);
                return Err(ClientDisconnected::new_err("client disconnected"));
            }
        } else if !st.deferred && !st.write_pending {
            st.deferred = true;
            lock(&shared.deferred).push(conn.clone());
        }
        if complete {
            let (waiter, log, wake) = finish_response(st, shared);
            after_finish(py, conn, refs, waiter, log, wake)?;
            return Ok(refs.done.bind(py).clone());
        }
        if st.write_pending && st.out.len() > shared.cfg.write_high_water {
            // Backpressure: suspend the app until the task has drained the
            // connection's output below the low-water mark.
            let fut = refs.create_future.bind(py).call0()?;
            st.send_waiter = Some(fut.clone().unbind());
            return Ok(fut);
        }
        Ok(refs.done.bind(py).clone())
    }
}

/// Resolves the waiters of a connection whose state changed.
pub fn on_wake(py: Python<'_>, conn: &Arc<Conn>) -> PyResult<()> {
    let mut st = lock(&conn.state);
    let seq = st.seq;
    let mut recv: Option<(Py<PyAny>, Bound<'_, PyAny>)> = None;
    if let Some(w) = st.recv_waiter.take() {
        match receive_now(py, &mut st, seq, conn.shared.is_shutting_down())? {
            Some(msg) => recv = Some((w, msg)),
            None => st.recv_waiter = Some(w),
        }
    }
    let mut send: Option<(Py<PyAny>, bool)> = None;
    if let Some(w) = st.send_waiter.take() {
        if st.closed {
            send = Some((w, false));
        } else if st.out.len() <= conn.shared.cfg.write_high_water / 2 {
            send = Some((w, true));
        } else {
            st.send_waiter = Some(w);
        }
    }
    drop(st);
    if let Some((w, msg)) = recv {
        resolve(py, w, Ok(msg))?;
    }
    if let Some((w, ok)) = send {
        let v = if ok {
            Ok(py.None().into_bound(py))
        } else {
            Err(ClientDisconnected::new_err("client disconnected"))
        };
        resolve(py, w, v)?;
    }
    Ok(())
}

fn percent_decode(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.contains(&b'%') {
        return Cow::Borrowed(raw);
    }
    let hex = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            if let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    Cow::Owned(out)
}

fn method_str<'py>(py: Python<'py>, m: &[u8]) -> Bound<'py, PyString> {
    match m {
        b"GET" => intern!(py, "GET").clone(),
        b"POST" => intern!(py, "POST").clone(),
        b"HEAD" => intern!(py, "HEAD").clone(),
        b"PUT" => intern!(py, "PUT").clone(),
        b"DELETE" => intern!(py, "DELETE").clone(),
        b"PATCH" => intern!(py, "PATCH").clone(),
        b"OPTIONS" => intern!(py, "OPTIONS").clone(),
        // The parser only admits token characters: ASCII.
        _ => PyString::new(py, &String::from_utf8_lossy(m)),
    }
}

/// `(host, port)` for the scope; `None` on a Unix domain socket, as uvicorn.
fn addr_tuple(py: Python<'_>, a: Option<&std::net::SocketAddr>) -> PyResult<Py<PyAny>> {
    let Some(a) = a else {
        return Ok(py.None());
    };
    let ip = match a.ip() {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        ip => ip.to_string(),
    };
    Ok(PyTuple::new(
        py,
        [
            ip.into_pyobject(py)?.into_any(),
            a.port().into_pyobject(py)?.into_any(),
        ],
    )?
    .into_any()
    .unbind())
}

fn build_scope<'py>(
    py: Python<'py>,
    refs: &PyRefs,
    conn: &Conn,
    head: &RequestHead,
) -> PyResult<Bound<'py, PyDict>> {
    // Copying a template that already holds every key (constants filled
    // in) is a memcpy of its table; setting the rest then never resizes.
    let d = refs.scope_template.bind(py).copy()?;
    d.set_item(intern!(py, "asgi"), refs.asgi_template.bind(py).copy()?)?;
    let version = match head.version {
        Version::Http11 => intern!(py, "1.1"),
        Version::Http10 => intern!(py, "1.0"),
    };
    d.set_item(intern!(py, "http_version"), version)?;
    d.set_item(intern!(py, "method"), method_str(py, head.method()))?;
    // --proxy-headers: a trusted proxy's X-Forwarded-Proto/-For win.
    let mut scheme = intern!(py, "http").clone();
    let mut forwarded_client: Option<Bound<'py, PyAny>> = None;
    if conn.via_proxy {
        let proxies = &conn.shared.cfg.proxies;
        for (n, v) in &head.headers {
            let (name, value) = (head.bytes(*n), head.bytes(*v));
            let Ok(value) = std::str::from_utf8(value) else {
                continue;
            };
            if name == b"x-forwarded-proto" {
                if let Some(s) = proxy::forwarded_scheme(value) {
                    scheme = PyString::intern(py, s);
                }
            } else if name == b"x-forwarded-for" {
                if let Some(host) = proxy::forwarded_client(value, proxies) {
                    forwarded_client = Some(
                        PyTuple::new(
                            py,
                            [
                                host.into_pyobject(py)?.into_any(),
                                0u16.into_pyobject(py)?.into_any(),
                            ],
                        )?
                        .into_any(),
                    );
                }
            }
        }
    }
    d.set_item(intern!(py, "scheme"), scheme)?;
    let root = refs.root_path.bind(py);
    let root_str = root.cast::<PyString>()?.to_cow()?;
    let raw_path = head.bytes(head.path);
    let decoded = percent_decode(raw_path);
    let path = String::from_utf8_lossy(&decoded);
    if root_str.is_empty() {
        d.set_item(intern!(py, "path"), PyString::new(py, &path))?;
        d.set_item(intern!(py, "raw_path"), PyBytes::new(py, raw_path))?;
    } else {
        // Like uvicorn: path and raw_path are the full path, root_path
        // included, so frameworks can strip it themselves.
        d.set_item(
            intern!(py, "path"),
            PyString::new(py, &format!("{root_str}{path}")),
        )?;
        let mut rp = root_str.as_bytes().to_vec();
        rp.extend_from_slice(raw_path);
        d.set_item(intern!(py, "raw_path"), PyBytes::new(py, &rp))?;
    }
    d.set_item(
        intern!(py, "query_string"),
        PyBytes::new(py, head.bytes(head.query)),
    )?;
    let headers = PyList::empty(py);
    for (n, v) in &head.headers {
        let t = PyTuple::new(
            py,
            [
                PyBytes::new(py, head.bytes(*n)),
                PyBytes::new(py, head.bytes(*v)),
            ],
        )?;
        headers.append(t)?;
    }
    d.set_item(intern!(py, "headers"), headers)?;
    if conn.addrs.get().is_none() {
        let _ = conn.addrs.set((
            addr_tuple(py, conn.peer.as_ref())?,
            addr_tuple(py, conn.local.as_ref())?,
        ));
    }
    if let Some((client, server)) = conn.addrs.get() {
        match forwarded_client {
            Some(c) => d.set_item(intern!(py, "client"), c)?,
            None => d.set_item(intern!(py, "client"), client.bind(py))?,
        }
        d.set_item(intern!(py, "server"), server.bind(py))?;
    }
    if let Some(state) = &refs.state {
        let state = state.bind(py);
        let copy = match state.cast::<PyDict>() {
            Ok(dict) => dict.copy()?.into_any(),
            Err(_) => state.call_method0(intern!(py, "copy"))?,
        };
        d.set_item(intern!(py, "state"), copy)?;
    }
    let ext = PyDict::new(py);
    ext.set_item(intern!(py, "http.response.trailers"), PyDict::new(py))?;
    d.set_item(intern!(py, "extensions"), ext)?;
    Ok(d)
}

/// The `http` scope with its constant values, copied for each request; the
/// `None`s are filled per request, in this key order.
pub fn scope_template<'py>(
    py: Python<'py>,
    root_path: &Bound<'py, PyAny>,
    with_state: bool,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyDict>)> {
    let none = py.None().into_bound(py);
    let d = PyDict::new(py);
    d.set_item(intern!(py, "type"), intern!(py, "http"))?;
    d.set_item(intern!(py, "asgi"), &none)?;
    d.set_item(intern!(py, "http_version"), &none)?;
    d.set_item(intern!(py, "method"), &none)?;
    d.set_item(intern!(py, "scheme"), intern!(py, "http"))?;
    d.set_item(intern!(py, "path"), &none)?;
    d.set_item(intern!(py, "raw_path"), &none)?;
    d.set_item(intern!(py, "query_string"), &none)?;
    d.set_item(intern!(py, "root_path"), root_path)?;
    d.set_item(intern!(py, "headers"), &none)?;
    d.set_item(intern!(py, "client"), &none)?;
    d.set_item(intern!(py, "server"), &none)?;
    if with_state {
        d.set_item(intern!(py, "state"), &none)?;
    }
    d.set_item(intern!(py, "extensions"), &none)?;
    let asgi = PyDict::new(py);
    asgi.set_item(intern!(py, "version"), intern!(py, "3.0"))?;
    asgi.set_item(intern!(py, "spec_version"), intern!(py, "2.4"))?;
    Ok((d, asgi))
}

/// Builds the scope and starts the app for a parsed request.
pub fn start_app(py: Python<'_>, conn: &Arc<Conn>, head: &RequestHead) -> PyResult<()> {
    let refs = conn.shared.refs()?;
    let seq = {
        let mut st = lock(&conn.state);
        if refs.access_log.is_some() {
            st.log = Some(LogInfo {
                method: String::from_utf8_lossy(head.method()).into_owned(),
                target: String::from_utf8_lossy(head.bytes(head.target)).into_owned(),
                version: head.version,
                started: std::time::Instant::now(),
            });
        }
        st.seq
    };
    let run = || -> PyResult<()> {
        let scope = build_scope(py, refs, conn, head)?;
        let receive = Py::new(
            py,
            Receive {
                conn: conn.clone(),
                seq,
            },
        )?;
        let send = Py::new(
            py,
            Sender {
                conn: conn.clone(),
                seq,
            },
        )?;
        // Each request runs in its own copy of the context, as an asyncio
        // task would; the app is called inside it too.
        let ctx = task::copy_context(py)?;
        task::in_context(py, &ctx, || -> PyResult<()> {
            let call = match refs
                .app
                .bind(py)
                .call1((scope, receive, send.clone_ref(py)))
            {
                Ok(call) => call,
                Err(e) => {
                    // The app failed before returning an awaitable.
                    send.get().app_done(py, true)?;
                    refs.report.bind(py).call1((e.value(py),))?;
                    return if task::is_fatal(py, &e) {
                        Err(e)
                    } else {
                        Ok(())
                    };
                }
            };
            if refs.task_driver && task::is_coroutine(&call) {
                return RequestTask::start(py, &conn.shared, call, ctx.clone(), send);
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
        Ok(()) => {}
        Err(e) if task::is_fatal(py, &e) => return Err(e),
        Err(e) => {
            // Could not even start the app: answer 500 through the same
            // path as an app failure.
            crate::pyengine::log_error(py, "ferrule: could not start the ASGI application", e);
            let send = Sender {
                conn: conn.clone(),
                seq,
            };
            send.app_done(py, true)?;
        }
    }
    Ok(())
}
