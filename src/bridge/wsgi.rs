//! WSGI (PEP 3333) over the engine's [`HttpExchange`], on a pool of
//! threads ferrule owns: no asyncio at all on a request's path.
//!
//! The loop thread only queues each parsed request ([`WsgiPool::submit`])
//! and passes the engine's wake-ups on to the thread they concern
//! ([`WsgiPool::wake`]); a worker thread (a Python thread blocked in
//! [`WsgiPool::work`] with the GIL released while the queue is empty)
//! builds the environ, calls the app, and writes the response through the
//! exchange directly (the engine's `app_threads` mode: each message is
//! written at once, and a driver that must take over is woken from here).
//! A read of `wsgi.input` or a write the socket cannot take blocks the
//! worker (GIL released) until the driver has bytes or room.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use ferrule_engine::proto::h1::{RequestHead, Version};
use ferrule_engine::runtime::lock;
use ferrule_engine::server::exchange::{
    AppEnd, ConnId, Event, HttpExchange, Received, ResponsePart, SendError, Sent,
};
use pyo3::exceptions::{PyAssertionError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use super::context::Bridge;
use super::errors::{is_fatal, log_error, ClientDisconnected};
use super::http::{access_log, bytes_of, LogInfo, CLIENT_CLOSED};
use super::scope::percent_decode;
use super::task;

/// How long a blocked worker sleeps before it looks at the pool's abort
/// flag again (a wake-up normally ends the wait first).
const ABORT_CHECK: Duration = Duration::from_millis(200);

/// Requests allowed to wait per worker thread; beyond, a request is
/// answered 503 at once. The engine's `--limit-concurrency` stops counting
/// a request whose client left, so without this bound such requests (each
/// holding its head, up to 64 KB) pile up while the apps are slow.
const QUEUE_PER_THREAD: usize = 128;

/// A request waiting for a worker.
struct Job {
    exchange: Arc<dyn HttpExchange>,
    head: RequestHead,
    seq: u64,
    log: Option<LogInfo>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    stopping: bool,
}

/// One request's wake-up flag: set by the loop thread for an engine
/// wake-up, waited on by the worker.
#[derive(Default)]
struct Signal {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Signal {
    fn clear(&self) {
        *lock(&self.set) = false;
    }

    fn notify(&self) {
        *lock(&self.set) = true;
        self.cv.notify_one();
    }

    /// Waits (without the GIL) until notified or `ABORT_CHECK` passed.
    fn wait(&self) {
        let set = lock(&self.set);
        if *set {
            return;
        }
        let _ = self
            .cv
            .wait_timeout(set, ABORT_CHECK)
            .unwrap_or_else(|e| e.into_inner());
    }
}

/// The WSGI app and its worker threads' queue.
pub struct WsgiPool {
    bridge: Arc<Bridge>,
    app: Py<PyAny>,
    /// The environ's constant keys, copied per request.
    environ: Py<PyDict>,
    /// `wsgi.file_wrapper`: a result of this type may go out by sendfile.
    file_wrapper: Py<PyAny>,
    /// `report(exc)`: logs an app failure with its traceback.
    report: Py<PyAny>,
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Requests a worker is running.
    running: AtomicUsize,
    /// Worker threads started (the queue's bound grows with them).
    workers: AtomicUsize,
    /// After the shutdown's grace: blocked reads and writes give up.
    abort: AtomicBool,
    /// The signal of each connection's running request.
    signals: Mutex<HashMap<ConnId, Arc<Signal>>>,
}

impl WsgiPool {
    pub fn new(
        bridge: Arc<Bridge>,
        app: Py<PyAny>,
        environ: Py<PyDict>,
        file_wrapper: Py<PyAny>,
        report: Py<PyAny>,
    ) -> Self {
        Self {
            bridge,
            app,
            environ,
            file_wrapper,
            report,
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            running: AtomicUsize::new(0),
            workers: AtomicUsize::new(0),
            abort: AtomicBool::new(false),
            signals: Mutex::new(HashMap::new()),
        }
    }

    /// From the loop thread: a parsed request, for the next free worker.
    pub fn submit(&self, exchange: Arc<dyn HttpExchange>, head: RequestHead) {
        let log = self.bridge.refs.access_log.as_ref().map(|_| {
            let fwd = exchange.forwarded(&head);
            LogInfo::new(&head, fwd.client)
        });
        let seq = exchange.seq();
        let limit = QUEUE_PER_THREAD * self.workers.load(Ordering::Acquire).max(1);
        {
            let mut q = lock(&self.queue);
            if q.jobs.len() < limit && !self.abort.load(Ordering::Acquire) {
                q.jobs.push_back(Job {
                    exchange,
                    head,
                    seq,
                    log,
                });
                drop(q);
                self.ready.notify_one();
                return;
            }
        }
        refuse(&*exchange, seq);
    }

    /// From the loop thread: routes a WSGI app's events to its threads;
    /// gives back the events that are not theirs.
    pub fn route(&self, ev: Event) -> Option<Event> {
        match ev {
            Event::Request(exchange, head) => self.submit(exchange, head),
            Event::Wake(exchange) => self.wake(exchange.id()),
            // The bridge keeps nothing per connection for WSGI.
            Event::Closed(id) => self.wake(id),
            other => return Some(other),
        }
        None
    }

    /// From the loop thread: what a blocked read or write of connection
    /// `id` waits for may have changed.
    pub fn wake(&self, id: ConnId) {
        let signal = lock(&self.signals).get(&id).cloned();
        if let Some(s) = signal {
            s.notify();
        }
    }

    /// Requests queued or running.
    pub fn busy(&self) -> usize {
        lock(&self.queue).jobs.len() + self.running.load(Ordering::Acquire)
    }

    /// Workers end once the queue is empty; `abort`: blocked reads and
    /// writes give up (the client is treated as gone), and the requests
    /// still queued are settled without running the app (a 500, or 499 in
    /// the log if the client left).
    pub fn stop(&self, py: Python<'_>, abort: bool) {
        let drained = {
            let mut q = lock(&self.queue);
            q.stopping = true;
            if abort {
                // Set under the queue's lock: a worker that pops after
                // this sees it and skips the job.
                self.abort.store(true, Ordering::Release);
                std::mem::take(&mut q.jobs)
            } else {
                VecDeque::new()
            }
        };
        self.ready.notify_all();
        // Logged, not raised: this runs in Server.run()'s clean-up, which
        // must go on (an access log handler's failure is not the stop's).
        for job in drained {
            if let Err(e) = self.skip(py, job) {
                log_error(py, "ferrule: error while settling a queued WSGI request", e);
            }
        }
    }

    /// Settles a queued job without calling the app: its client left, or
    /// the shutdown's grace is over.
    fn skip(&self, py: Python<'_>, job: Job) -> PyResult<()> {
        let log = Mutex::new(job.log);
        settle(py, &self.bridge, &*job.exchange, job.seq, &log, false).map(|_| ())
    }

    /// A worker thread's life: run requests until the pool stops.
    pub fn work(self: &Arc<Self>, py: Python<'_>) -> PyResult<()> {
        self.workers.fetch_add(1, Ordering::AcqRel);
        let r = self.work_loop(py);
        self.workers.fetch_sub(1, Ordering::AcqRel);
        r
    }

    fn work_loop(self: &Arc<Self>, py: Python<'_>) -> PyResult<()> {
        loop {
            let job = py.detach(|| {
                let mut q = lock(&self.queue);
                loop {
                    if let Some(job) = q.jobs.pop_front() {
                        // Counted before the lock is released, so busy()
                        // never misses a request between the two.
                        self.running.fetch_add(1, Ordering::AcqRel);
                        return Some(job);
                    }
                    if q.stopping {
                        return None;
                    }
                    q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
                }
            });
            let Some(job) = job else {
                return Ok(());
            };
            // No app call for a client already gone (its request waited
            // in the queue) nor after the shutdown's grace.
            let r = if job.exchange.is_closed() || self.abort.load(Ordering::Acquire) {
                self.skip(py, job)
            } else {
                self.run(py, job)
            };
            self.running.fetch_sub(1, Ordering::AcqRel);
            if let Err(e) = r {
                if is_fatal(py, &e) {
                    return Err(e);
                }
                log_error(py, "ferrule: error while serving a WSGI request", e);
            }
        }
    }

    fn run(self: &Arc<Self>, py: Python<'_>, job: Job) -> PyResult<()> {
        let id = job.exchange.id();
        let signal = Arc::new(Signal::default());
        lock(&self.signals).insert(id, signal.clone());
        let req = Arc::new(WsgiRequest {
            pool: self.clone(),
            exchange: job.exchange,
            seq: job.seq,
            signal: signal.clone(),
            log: Mutex::new(job.log),
            start: Mutex::new(StartState::default()),
        });
        // Each request runs in a fresh context: contextvars one request
        // sets do not leak into the next on the same thread.
        // Failing to make or enter it fails the request like the app would.
        let outcome = task::new_context(py)
            .and_then(|ctx| task::in_context(py, &ctx, || self.call_app(py, &req, &job.head)))
            .and_then(|r| r);
        {
            // A later request on the same connection may own the entry.
            let mut signals = lock(&self.signals);
            if signals.get(&id).is_some_and(|s| Arc::ptr_eq(s, &signal)) {
                signals.remove(&id);
            }
        }
        let failed = match outcome {
            Ok(()) => false,
            Err(e) if e.is_instance_of::<ClientDisconnected>(py) => false,
            Err(e) => {
                let fatal = is_fatal(py, &e);
                req.app_done(py, true)?;
                self.report.bind(py).call1((e.value(py),))?;
                return if fatal { Err(e) } else { Ok(()) };
            }
        };
        if req.app_done(py, failed)? {
            // The app returned without a complete response (an iterable
            // that ended early cannot happen; this is a protocol slip).
            self.report.bind(py).call1((py.None(),))?;
        }
        Ok(())
    }

    /// Calls the app and writes its response; the result's `close()` is
    /// always called.
    fn call_app(&self, py: Python<'_>, req: &Arc<WsgiRequest>, head: &RequestHead) -> PyResult<()> {
        let input = Py::new(
            py,
            WsgiInput {
                req: req.clone(),
                state: Mutex::new(InputState::default()),
            },
        )?;
        let environ = self.environ(py, req, head, input.into_any())?;
        let start_response = Py::new(py, StartResponse { req: req.clone() })?;
        let result = self.app.bind(py).call1((environ, start_response))?;
        let written = self.respond(py, req, &result);
        // A list or tuple has no close(): spare the failed lookup (an
        // AttributeError made and dropped) on the usual result.
        let plain =
            result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>();
        let closed = if plain {
            Ok(())
        } else {
            match result.getattr_opt(intern!(py, "close")) {
                Ok(Some(close)) => close.call0().map(|_| ()),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            }
        };
        // The response's error first; a failing close() counts as the
        // app's failure too.
        written.and(closed)
    }

    /// Writes the result: a list or tuple as one body, a file wrapper by
    /// sendfile when it holds a real file, any other iterable chunk by
    /// chunk as the app yields them.
    fn respond(
        &self,
        py: Python<'_>,
        req: &WsgiRequest,
        result: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
            let items: Vec<Bound<'_, PyAny>> = result.try_iter()?.collect::<PyResult<_>>()?;
            let chunks = items.iter().map(bytes_of).collect::<PyResult<Vec<_>>>()?;
            let body: Cow<[u8]> = match chunks.len() {
                0 => Cow::Borrowed(&[]),
                1 => Cow::Borrowed(chunks[0].as_ref()),
                _ => Cow::Owned(chunks.concat()),
            };
            req.send_head(py)?;
            return req.send_body(py, &body, false);
        }
        if result.is_instance(self.file_wrapper.bind(py))? {
            let path = result.call_method0(intern!(py, "_sendfile_path"))?;
            if !path.is_none() {
                let path: std::path::PathBuf = path.extract()?;
                req.send_head(py)?;
                let sent = req
                    .exchange
                    .send(req.seq, ResponsePart::PathSend { path: &path });
                return req.sent(py, sent);
            }
        }
        for item in result.try_iter()? {
            let item = item?;
            let data = bytes_of(&item)?;
            if data.is_empty() {
                continue;
            }
            req.send_head(py)?;
            req.send_body(py, &data, true)?;
        }
        req.send_head(py)?;
        req.send_body(py, b"", false)
    }

    /// The PEP 3333 environ of a request.
    fn environ<'py>(
        &self,
        py: Python<'py>,
        req: &WsgiRequest,
        head: &RequestHead,
        input: Py<PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let env = self.environ.bind(py).copy()?;
        let exchange = &*req.exchange;
        let method = head.method();
        env.set_item(
            intern!(py, "REQUEST_METHOD"),
            PyString::new(py, &latin1(method)),
        )?;
        // PEP 3333: the decoded path, its bytes as latin-1 characters.
        let decoded = percent_decode(head.bytes(head.path));
        env.set_item(
            intern!(py, "PATH_INFO"),
            PyString::new(py, &latin1(&decoded)),
        )?;
        // The target as sent (gunicorn's and werkzeug's extra keys, which
        // rolo's gateway and werkzeug read when present).
        let target = PyString::new(py, &latin1(head.bytes(head.target)));
        env.set_item(intern!(py, "RAW_URI"), &target)?;
        env.set_item(intern!(py, "REQUEST_URI"), target)?;
        env.set_item(
            intern!(py, "QUERY_STRING"),
            PyString::new(py, &latin1(head.bytes(head.query))),
        )?;
        let protocol = match head.version {
            Version::Http11 => intern!(py, "HTTP/1.1"),
            Version::Http10 => intern!(py, "HTTP/1.0"),
            Version::Http2 => intern!(py, "HTTP/2"),
        };
        env.set_item(intern!(py, "SERVER_PROTOCOL"), protocol)?;
        let (server_name, server_port) = match exchange.local() {
            Some(a) => (ip_text(&a), port_text(a.port())),
            None => ("localhost".to_string(), "0".to_string()),
        };
        env.set_item(intern!(py, "SERVER_NAME"), server_name)?;
        env.set_item(intern!(py, "SERVER_PORT"), server_port)?;
        let fwd = exchange.forwarded(head);
        match (fwd.client, exchange.peer()) {
            (Some(c), _) => {
                env.set_item(intern!(py, "REMOTE_ADDR"), c)?;
                env.set_item(intern!(py, "REMOTE_PORT"), "0")?;
            }
            (None, Some(p)) => {
                env.set_item(intern!(py, "REMOTE_ADDR"), ip_text(&p))?;
                env.set_item(intern!(py, "REMOTE_PORT"), port_text(p.port()))?;
            }
            // A Unix socket has no peer address: CGI's keys stay unset.
            (None, None) => {}
        }
        let scheme = match fwd.scheme {
            Some(s) => s,
            None if exchange.tls().is_some() => "https",
            None => "http",
        };
        env.set_item(intern!(py, "wsgi.url_scheme"), scheme)?;
        env.set_item(intern!(py, "wsgi.input"), input)?;
        let mut key = Vec::with_capacity(64);
        for (n, v) in &head.headers {
            let name = head.bytes(*n);
            let value = PyString::new(py, &latin1(head.bytes(*v)));
            let key_str: Bound<'_, PyString> = match name {
                b"content-type" => intern!(py, "CONTENT_TYPE").clone(),
                b"content-length" => intern!(py, "CONTENT_LENGTH").clone(),
                // `X_Foo` and `X-Foo` would both be HTTP_X_FOO: a client
                // could pass one for the other a proxy set, so names with
                // an underscore are dropped (nginx and gunicorn do too).
                _ if name.contains(&b'_') => continue,
                _ => {
                    key.clear();
                    key.extend_from_slice(b"HTTP_");
                    key.extend(name.iter().map(|c| match c {
                        b'-' => b'_',
                        c => c.to_ascii_uppercase(),
                    }));
                    PyString::new(py, &latin1(&key))
                }
            };
            match env.get_item(&key_str)? {
                // Repeats are joined, as one comma-separated header.
                Some(prev) => {
                    let joined = format!("{}, {}", prev.str()?, value);
                    env.set_item(key_str, joined)?;
                }
                _ => env.set_item(key_str, value)?,
            }
        }
        Ok(env)
    }
}

/// Answers a request the queue cannot take: 503 and the connection
/// closed, as the engine answers over `--limit-concurrency` (and, like
/// those, without an access log line: the loop thread has no GIL here).
fn refuse(exchange: &dyn HttpExchange, seq: u64) {
    let headers: [(&[u8], &[u8]); 2] = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"connection", b"close"),
    ];
    let mut it = headers.into_iter();
    let start = ResponsePart::Start {
        status: 503,
        headers: &mut it,
        trailers: false,
    };
    // A client already gone fails the sends: nothing more to do then.
    if exchange.send(seq, start).is_ok() {
        let body = ResponsePart::Body {
            data: b"Service Unavailable",
            more: false,
        };
        let _ = exchange.send(seq, body);
    }
    let _ = exchange.app_done(seq, false);
}

/// The app is done with a request (or never ran): settles the response as
/// the ASGI path does (500, abort, or nothing) and logs it, with 499 when
/// the client left before a response head. True: it was incomplete.
fn settle(
    py: Python<'_>,
    bridge: &Bridge,
    exchange: &dyn HttpExchange,
    seq: u64,
    log: &Mutex<Option<LogInfo>>,
    failed: bool,
) -> PyResult<bool> {
    let (sent, incomplete) = match exchange.app_done(seq, failed) {
        AppEnd::Complete => return Ok(false),
        AppEnd::ClientGone(mut sent) => {
            if sent.status == 0 {
                sent.status = CLIENT_CLOSED;
            }
            (sent, false)
        }
        AppEnd::Abandoned(sent) => (sent, false),
        AppEnd::Aborted(sent) | AppEnd::Answered(sent) => (sent, true),
    };
    access_log(py, bridge, exchange, log, sent)?;
    Ok(incomplete)
}

/// An address as text; IPv4 by hand (`Display` costs about a thousand
/// instructions per address, twice per request).
fn ip_text(a: &std::net::SocketAddr) -> String {
    let v4 = match a.ip() {
        std::net::IpAddr::V4(v4) => v4,
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4,
            None => return v6.to_string(),
        },
    };
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_decimal(&mut out, u32::from(octet));
    }
    out
}

fn port_text(port: u16) -> String {
    let mut out = String::with_capacity(5);
    push_decimal(&mut out, u32::from(port));
    out
}

fn push_decimal(out: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

/// Bytes as latin-1 text (PEP 3333's "native strings").
fn latin1(b: &[u8]) -> Cow<'_, str> {
    if b.is_ascii() {
        // ASCII is valid UTF-8.
        return Cow::Borrowed(std::str::from_utf8(b).unwrap_or_default());
    }
    Cow::Owned(b.iter().map(|&c| c as char).collect())
}

/// Text that must be latin-1 (a status or header from the app) as bytes.
fn latin1_bytes(s: &str, what: &str) -> PyResult<Vec<u8>> {
    if s.is_ascii() {
        return Ok(s.as_bytes().to_vec());
    }
    s.chars()
        .map(|c| {
            u8::try_from(u32::from(c)).map_err(|_| {
                PyValueError::new_err(format!("{what} must be latin-1 text, got {s:?}"))
            })
        })
        .collect()
}

/// What `start_response` was given, and whether the head left.
#[derive(Default)]
struct StartState {
    status: Option<u16>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The head went to the engine (a body chunk followed it): headers
    /// can no longer change.
    sent: bool,
}

/// One request on a worker: what its `start_response`, `write` and
/// `wsgi.input` share.
struct WsgiRequest {
    pool: Arc<WsgiPool>,
    exchange: Arc<dyn HttpExchange>,
    seq: u64,
    signal: Arc<Signal>,
    log: Mutex<Option<LogInfo>>,
    start: Mutex<StartState>,
}

fn disconnected() -> PyErr {
    ClientDisconnected::new_err("client disconnected")
}

impl WsgiRequest {
    fn bridge(&self) -> &Bridge {
        &self.pool.bridge
    }

    /// Blocks (without the GIL) until the engine's next wake-up for this
    /// request; the client counts as gone once the pool aborts.
    fn wait(&self, py: Python<'_>) -> PyResult<()> {
        if self.pool.abort.load(Ordering::Acquire) {
            return Err(disconnected());
        }
        py.detach(|| self.signal.wait());
        Ok(())
    }

    /// Sends the response head if it has not left yet.
    fn send_head(&self, py: Python<'_>) -> PyResult<()> {
        let mut st = lock(&self.start);
        if st.sent {
            return Ok(());
        }
        let Some(status) = st.status else {
            return Err(PyRuntimeError::new_err(
                "WSGI application did not call start_response() before its body",
            ));
        };
        st.sent = true;
        let headers = std::mem::take(&mut st.headers);
        drop(st);
        let mut it = headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice()));
        let r = self.exchange.send(
            self.seq,
            ResponsePart::Start {
                status,
                headers: &mut it,
                trailers: false,
            },
        );
        self.sent(py, r)
    }

    fn send_body(&self, py: Python<'_>, data: &[u8], more: bool) -> PyResult<()> {
        let r = self
            .exchange
            .send(self.seq, ResponsePart::Body { data, more });
        self.sent(py, r)
    }

    /// Acts on what the engine did with a message: waits out backpressure,
    /// logs a complete response.
    fn sent(&self, py: Python<'_>, r: Result<Sent, SendError>) -> PyResult<()> {
        match r {
            Ok(Sent::Done) => Ok(()),
            Ok(Sent::Wait) => loop {
                self.signal.clear();
                if let Some(ok) = self.exchange.wakeup(&mut |_| {}).send {
                    return ok.map_err(|()| disconnected());
                }
                self.wait(py)?;
            },
            Ok(Sent::Complete(done)) => {
                access_log(py, self.bridge(), &*self.exchange, &self.log, done)
            }
            Err(SendError::Disconnected) => Err(disconnected()),
            Err(e) => Err(super::http::send_error("wsgi", e)),
        }
    }

    /// The app is done with the request: settle the response as the
    /// ASGI path does (500, abort, or nothing). True: it was incomplete.
    fn app_done(&self, py: Python<'_>, failed: bool) -> PyResult<bool> {
        settle(
            py,
            self.bridge(),
            &*self.exchange,
            self.seq,
            &self.log,
            failed,
        )
    }

    /// The next body chunk, appended to `buf`; false at the end of the body.
    fn read_chunk(&self, py: Python<'_>, buf: &mut Vec<u8>) -> PyResult<bool> {
        let mut sink = |b: &[u8]| buf.extend_from_slice(b);
        let mut got = self.exchange.receive(self.seq, &mut sink);
        while got == Received::Wait {
            self.wait(py)?;
            self.signal.clear();
            match self.exchange.wakeup(&mut sink).receive {
                Some(r) => got = r,
                None => continue,
            }
        }
        match got {
            Received::Body { more } => Ok(more),
            // The body ended early: the client went away.
            Received::Disconnect | Received::Wait => Err(disconnected()),
        }
    }
}

/// PEP 3333's `start_response(status, headers, exc_info=None)`.
#[pyclass(frozen, module = "ferrule._ferrule")]
pub struct StartResponse {
    req: Arc<WsgiRequest>,
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &str,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let req = &slf.get().req;
        let exc_info = exc_info.filter(|e| !e.is_none());
        let code = status
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (100..=999).contains(c))
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "WSGI status must start with a 3-digit code, got {status:?}"
                ))
            })?;
        let pair = |item: Bound<'py, PyAny>| -> PyResult<(Vec<u8>, Vec<u8>)> {
            let (n, v) = match item.cast::<PyTuple>() {
                Ok(t) if t.len() == 2 => (t.get_item(0)?, t.get_item(1)?),
                _ => item.extract()?,
            };
            let (Ok(n), Ok(v)) = (n.cast::<PyString>(), v.cast::<PyString>()) else {
                return Err(PyTypeError::new_err(
                    "WSGI response header names and values must be str",
                ));
            };
            // Names keep the app's case: the engine compares them without.
            Ok((
                latin1_bytes(&n.to_cow()?, "a header name")?,
                latin1_bytes(&v.to_cow()?, "a header value")?,
            ))
        };
        let pairs = match headers.cast::<PyList>() {
            Ok(list) => list.iter().map(pair).collect::<PyResult<Vec<_>>>()?,
            Err(_) => headers
                .try_iter()?
                .map(|item| pair(item?))
                .collect::<PyResult<Vec<_>>>()?,
        };
        let mut st = lock(&req.start);
        if let Some(exc) = exc_info {
            if st.sent {
                // Too late to replace the response: re-raise the app's
                // error (PEP 3333), and the connection is aborted.
                drop(st);
                let value = exc.get_item(1)?;
                return Err(PyErr::from_value(value));
            }
        } else if st.status.is_some() {
            return Err(PyAssertionError::new_err(
                "start_response() called again without exc_info",
            ));
        }
        st.status = Some(code);
        st.headers = pairs;
        drop(st);
        slf.getattr(intern!(py, "write"))
    }

    /// PEP 3333's `write(data)`: sends a body chunk at once.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = bytes_of(data)?;
        self.req.send_head(py)?;
        if data.is_empty() {
            return Ok(());
        }
        self.req.send_body(py, &data, true)
    }
}

#[derive(Default)]
struct InputState {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed to the app.
    pos: usize,
    eof: bool,
}

impl InputState {
    fn available(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Hands `n` buffered bytes to the app.
    fn take(&mut self, n: usize) -> Vec<u8> {
        let out = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        out
    }
}

/// `wsgi.input`: the request body, read from the engine as the app reads
/// (the driver reads the socket only while the engine's body buffer has
/// room, so an upload is never held whole unless the app asks for it).
#[pyclass(module = "ferrule._ferrule")]
pub struct WsgiInput {
    req: Arc<WsgiRequest>,
    state: Mutex<InputState>,
}

fn limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

impl WsgiInput {
    /// The input's state. A read holds it while it waits for the body
    /// (GIL released), so another thread reading the same input waits for
    /// it without the GIL too: waiting with the GIL would deadlock with the
    /// reader that needs the GIL back to finish. Reads are serialized.
    fn state(&self, py: Python<'_>) -> MutexGuard<'_, InputState> {
        loop {
            match self.state.try_lock() {
                Ok(st) => return st,
                Err(TryLockError::Poisoned(e)) => return e.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    // Wait for the holder to finish, then try again with
                    // the GIL (a guard cannot leave `detach`).
                    py.detach(|| drop(lock(&self.state)));
                }
            }
        }
    }

    /// Reads from the engine until `enough` holds or the body ends.
    fn fill(
        &self,
        py: Python<'_>,
        st: &mut InputState,
        enough: impl Fn(&[u8]) -> bool,
    ) -> PyResult<()> {
        while !st.eof && !enough(st.available()) {
            if !self.req.read_chunk(py, &mut st.buf)? {
                st.eof = true;
            }
        }
        Ok(())
    }

    fn line(&self, py: Python<'_>, size: Option<usize>) -> PyResult<Vec<u8>> {
        let mut st = self.state(py);
        let max = size.unwrap_or(usize::MAX);
        self.fill(py, &mut st, |b| b.len() >= max || b.contains(&b'\n'))?;
        let avail = st.available();
        let end = match avail.iter().position(|&c| c == b'\n') {
            Some(i) => i + 1,
            None => avail.len(),
        };
        let n = end.min(max);
        Ok(st.take(n))
    }
}

#[pymethods]
impl WsgiInput {
    /// Up to `size` bytes (all the rest without one): fewer only at the
    /// end of the body.
    #[pyo3(signature = (size = None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let size = limit(size);
        let mut st = self.state(py);
        let max = size.unwrap_or(usize::MAX);
        self.fill(py, &mut st, |b| b.len() >= max)?;
        let n = st.available().len().min(max);
        let data = st.take(n);
        Ok(PyBytes::new(py, &data))
    }

    #[pyo3(signature = (size = None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let line = self.line(py, limit(size))?;
        Ok(PyBytes::new(py, &line))
    }

    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(&self, py: Python<'py>, hint: Option<isize>) -> PyResult<Bound<'py, PyList>> {
        let hint = limit(hint).filter(|h| *h > 0);
        let out = PyList::empty(py);
        let mut total = 0;
        loop {
            let line = self.line(py, None)?;
            if line.is_empty() {
                break;
            }
            total += line.len();
            out.append(PyBytes::new(py, &line))?;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(out)
    }

    fn readable(&self) -> bool {
        true
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.line(py, None)?;
        if line.is_empty() {
            return Ok(None);
        }
        Ok(Some(PyBytes::new(py, &line)))
    }
}
