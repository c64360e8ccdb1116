//! Throwaway prototype of the ALTERNATIVE bridge for ferrule (see RESULTS.md):
//! tokio runs on its OWN thread (accept, read, httparse), and hands parsed
//! requests to the Python thread in batches: a `Mutex<Vec<..>>` queue plus one
//! eventfd that is written only when the queue goes from empty to non-empty.
//! The asyncio loop watches the eventfd with `add_reader`; the drain builds
//! scopes and starts the app as tasks. Responses are written directly from the
//! Python thread with one non-blocking `send()`; only the remainder after EAGAIN
//! is handed back to the connection's tokio task.
//!
//! Hello-world grade: no chunked request bodies, no percent-decoding of the
//! path, no timeouts, `receive()` after the body returns `http.disconnect`.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Buf, BytesMut};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyStopIteration, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

// ---------------------------------------------------------------- stats

const NB: usize = 9; // batch sizes: 1, 2, 3-4, 5-8, 9-16, 17-32, 33-64, 65-128, 129+
const NL: usize = 10; // wake latency (us): <2 <5 <10 <20 <50 <100 <200 <500 <1000 >=1000
const LAT_EDGES_US: [u64; NL - 1] = [2, 5, 10, 20, 50, 100, 200, 500, 1000];

fn batch_bucket(n: usize) -> usize {
    if n <= 1 {
        0
    } else {
        ((usize::BITS - (n - 1).leading_zeros()) as usize).min(NB - 1)
    }
}

fn lat_bucket(us: u64) -> usize {
    LAT_EDGES_US.iter().position(|&e| us < e).unwrap_or(NL - 1)
}

#[derive(Default)]
struct Stats {
    conns: AtomicU64,
    reads: AtomicU64,         // tokio read() calls that returned data
    requests: AtomicU64,      // requests parsed and queued
    pushes: AtomicU64,        // queue lock+append operations (one per read with >=1 request)
    efd_writes: AtomicU64,    // eventfd writes (queue went empty -> non-empty)
    efd_read_sum: AtomicU64,  // sum of eventfd counter values read by the Python thread
    efd_read_eagain: AtomicU64,
    dispatches: AtomicU64,    // drain calls from the loop
    empty_dispatches: AtomicU64,
    batch_hist: [AtomicU64; NB],
    max_batch: AtomicU64,
    wake_ns_sum: AtomicU64,   // first push of a batch -> Python takes the batch
    wake_hist: [AtomicU64; NL],
    take_ns_sum: AtomicU64,   // time in take (+ scope build + create_task when dispatch())
    direct_writes: AtomicU64, // responses fully written by the Python thread
    handoffs: AtomicU64,      // partial write / EAGAIN: remainder handed to tokio
    tokio_flushes: AtomicU64, // write batches done by tokio
}

// ---------------------------------------------------------------- shared state

struct Parsed {
    conn: Arc<Conn>,
    method: String,
    target: Vec<u8>,
    minor: u8,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
    keep_alive: bool,
}

#[derive(Default)]
struct Queue {
    items: Vec<Parsed>,
    t_first: Option<Instant>,
}

struct Shared {
    queue: Mutex<Queue>,
    efd: RawFd,
    stats: Stats,
}

#[derive(Default)]
struct WState {
    closed: bool,
    flushing: bool, // tokio owns writing until `pending` is drained
    close_after: bool,
    pending: Vec<u8>,
}

struct Conn {
    fd: RawFd,
    peer: SocketAddr,
    w: Mutex<WState>,
    notify: Notify,
}

impl Conn {
    /// Called on the Python thread: one non-blocking send(); remainder to tokio.
    fn write_direct(&self, sh: &Shared, data: &[u8], close_after: bool) {
        let mut w = self.w.lock().unwrap();
        if w.closed {
            return;
        }
        if close_after {
            w.close_after = true;
        }
        if w.flushing {
            w.pending.extend_from_slice(data);
            return;
        }
        let mut written = 0usize;
        if !data.is_empty() {
            let n = unsafe {
                libc::send(
                    self.fd,
                    data.as_ptr() as *const libc::c_void,
                    data.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                if e != libc::EAGAIN && e != libc::EWOULDBLOCK && e != libc::EINTR {
                    return; // broken connection: tokio's read side will see it
                }
            } else {
                written = n as usize;
            }
        }
        if written == data.len() {
            sh.stats.direct_writes.fetch_add(1, Relaxed);
            if !close_after {
                return;
            }
        } else {
            w.pending.extend_from_slice(&data[written..]);
            sh.stats.handoffs.fetch_add(1, Relaxed);
        }
        w.flushing = true;
        drop(w);
        self.notify.notify_one(); // remote wake of the tokio thread (rare path)
    }
}

fn push(sh: &Shared, batch: &mut Vec<Parsed>) {
    let n = batch.len() as u64;
    let was_empty = {
        let mut q = sh.queue.lock().unwrap();
        let was_empty = q.items.is_empty();
        if was_empty {
            q.t_first = Some(Instant::now());
        }
        q.items.append(batch);
        was_empty
    };
    sh.stats.pushes.fetch_add(1, Relaxed);
    sh.stats.requests.fetch_add(n, Relaxed);
    if was_empty {
        let one: u64 = 1;
        unsafe { libc::write(sh.efd, &one as *const u64 as *const libc::c_void, 8) };
        sh.stats.efd_writes.fetch_add(1, Relaxed);
    }
}

// ---------------------------------------------------------------- tokio side

const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

enum Ev {
    Flush,
    Read(std::io::Result<usize>),
}

async fn serve_conn(mut stream: TcpStream, peer: SocketAddr, sh: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    sh.stats.conns.fetch_add(1, Relaxed);
    let conn = Arc::new(Conn {
        fd: stream.as_raw_fd(),
        peer,
        w: Mutex::new(WState::default()),
        notify: Notify::new(),
    });
    let mut buf = BytesMut::with_capacity(8192);
    let mut batch: Vec<Parsed> = Vec::new();
    'outer: loop {
        if buf.capacity() - buf.len() < 2048 {
            buf.reserve(8192);
        }
        let ev = tokio::select! {
            biased;
            _ = conn.notify.notified() => Ev::Flush,
            r = stream.read_buf(&mut buf) => Ev::Read(r),
        };
        match ev {
            Ev::Flush => loop {
                let data = {
                    let mut w = conn.w.lock().unwrap();
                    if w.pending.is_empty() {
                        w.flushing = false;
                        if w.close_after {
                            break 'outer;
                        }
                        break;
                    }
                    std::mem::take(&mut w.pending)
                };
                sh.stats.tokio_flushes.fetch_add(1, Relaxed);
                if stream.write_all(&data).await.is_err() {
                    break 'outer;
                }
            },
            Ev::Read(Ok(0)) | Ev::Read(Err(_)) => break,
            Ev::Read(Ok(_)) => {
                sh.stats.reads.fetch_add(1, Relaxed);
                let mut bad = false;
                loop {
                    if buf.is_empty() {
                        break;
                    }
                    let mut hdrs = [httparse::EMPTY_HEADER; 64];
                    let mut req = httparse::Request::new(&mut hdrs);
                    match req.parse(&buf) {
                        Ok(httparse::Status::Complete(n)) => {
                            let minor = req.version.unwrap_or(1);
                            let mut keep_alive = minor == 1;
                            let mut cl = 0usize;
                            let mut headers = Vec::with_capacity(req.headers.len());
                            for h in req.headers.iter() {
                                if h.name.eq_ignore_ascii_case("content-length") {
                                    match std::str::from_utf8(h.value)
                                        .ok()
                                        .and_then(|s| s.trim().parse().ok())
                                    {
                                        Some(v) => cl = v,
                                        None => bad = true,
                                    }
                                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                                    bad = true; // not in this prototype
                                } else if h.name.eq_ignore_ascii_case("connection") {
                                    if h.value.eq_ignore_ascii_case(b"close") {
                                        keep_alive = false;
                                    } else if h.value.eq_ignore_ascii_case(b"keep-alive") {
                                        keep_alive = true;
                                    }
                                }
                                headers.push((
                                    h.name.to_ascii_lowercase().into_bytes(),
                                    h.value.to_vec(),
                                ));
                            }
                            if bad {
                                break;
                            }
                            if buf.len() < n + cl {
                                break; // wait for the rest of the body
                            }
                            let method = req.method.unwrap_or("GET").to_owned();
                            let target = req.path.unwrap_or("/").as_bytes().to_vec();
                            buf.advance(n);
                            let body = buf.split_to(cl).to_vec();
                            batch.push(Parsed {
                                conn: conn.clone(),
                                method,
                                target,
                                minor,
                                headers,
                                body,
                                keep_alive,
                            });
                            if !keep_alive {
                                break; // ignore anything after a closing request
                            }
                        }
                        Ok(httparse::Status::Partial) => {
                            if buf.len() > 65536 {
                                bad = true;
                            }
                            break;
                        }
                        Err(_) => {
                            bad = true;
                            break;
                        }
                    }
                }
                if !batch.is_empty() {
                    push(&sh, &mut batch);
                }
                if bad {
                    // Let earlier responses go first: queue the 400 behind them.
                    conn.write_direct(&sh, BAD_REQUEST, true);
                }
            }
        }
    }
    conn.w.lock().unwrap().closed = true;
    drop(stream);
}

// ---------------------------------------------------------------- Python side

/// Shared, stateless, already-complete awaitable returned by `send()`.
#[pyclass(frozen)]
struct Done;

#[pymethods]
impl Done {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    fn __next__(&self) -> Option<Py<PyAny>> {
        None
    }
}

/// Already-complete awaitable carrying a value (for `receive()`).
#[pyclass(frozen)]
struct Ready {
    v: Py<PyAny>,
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Err(PyStopIteration::new_err((self.v.clone_ref(py),)))
    }
}

#[derive(Default)]
struct Resp {
    started: bool,
    head_sent: bool,
    finished: bool,
    chunked: bool,
    has_cl: bool,
    head: Vec<u8>,
}

#[pyclass(frozen)]
struct Req {
    conn: Arc<Conn>,
    sh: Arc<Shared>,
    keep_alive: bool,
    head_only: bool,
    body: Mutex<Option<Vec<u8>>>,
    resp: Mutex<Resp>,
    done: Py<Done>,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        _ => "",
    }
}

fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

#[pymethods]
impl Req {
    fn send(&self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<Py<Done>> {
        let t = message
            .get_item(intern!(py, "type"))?
            .ok_or_else(|| PyValueError::new_err("message without type"))?;
        let t = t.cast::<PyString>()?;
        let t = t.to_str()?;
        let mut r = self.resp.lock().unwrap();
        match t {
            "http.response.start" => {
                if r.started {
                    return Err(PyRuntimeError::new_err("response already started"));
                }
                let status: u16 = message
                    .get_item(intern!(py, "status"))?
                    .ok_or_else(|| PyValueError::new_err("status missing"))?
                    .extract()?;
                let mut head = Vec::with_capacity(256);
                head.extend_from_slice(b"HTTP/1.1 ");
                head.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
                head.push(b' ');
                head.extend_from_slice(reason(status).as_bytes());
                head.extend_from_slice(b"\r\n");
                if let Some(hs) = message.get_item(intern!(py, "headers"))? {
                    for item in hs.try_iter()? {
                        let item = item?;
                        let k = item.get_item(0)?;
                        let v = item.get_item(1)?;
                        let k = k.cast::<PyBytes>()?.as_bytes();
                        let v = v.cast::<PyBytes>()?.as_bytes();
                        if k.eq_ignore_ascii_case(b"content-length") {
                            r.has_cl = true;
                        }
                        head.extend_from_slice(k);
                        head.extend_from_slice(b": ");
                        head.extend_from_slice(v);
                        head.extend_from_slice(b"\r\n");
                    }
                }
                if !self.keep_alive {
                    head.extend_from_slice(b"connection: close\r\n");
                }
                r.head = head;
                r.started = true;
            }
            "http.response.body" => {
                if !r.started || r.finished {
                    return Err(PyRuntimeError::new_err("unexpected http.response.body"));
                }
                let body_obj = message.get_item(intern!(py, "body"))?;
                let body: &[u8] = match &body_obj {
                    Some(b) => b.cast::<PyBytes>()?.as_bytes(),
                    None => b"",
                };
                let more = match message.get_item(intern!(py, "more_body"))? {
                    Some(m) => m.is_truthy()?,
                    None => false,
                };
                let body = if self.head_only { &b""[..] } else { body };
                let mut out;
                if !r.head_sent {
                    out = std::mem::take(&mut r.head);
                    if !r.has_cl {
                        if more {
                            r.chunked = !self.head_only;
                            if r.chunked {
                                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                            }
                        } else {
                            out.extend_from_slice(b"content-length: ");
                            out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
                            out.extend_from_slice(b"\r\n");
                        }
                    }
                    out.extend_from_slice(b"\r\n");
                    r.head_sent = true;
                } else {
                    out = Vec::with_capacity(body.len() + 16);
                }
                if r.chunked {
                    push_chunk(&mut out, body);
                    if !more {
                        out.extend_from_slice(b"0\r\n\r\n");
                    }
                } else {
                    out.extend_from_slice(body);
                }
                if !more {
                    r.finished = true;
                }
                drop(r);
                self.conn
                    .write_direct(&self.sh, &out, !more && !self.keep_alive);
            }
            _ => return Err(PyValueError::new_err(format!("unexpected message type {t}"))),
        }
        Ok(self.done.clone_ref(py))
    }

    fn receive(&self, py: Python<'_>) -> PyResult<Ready> {
        let d = PyDict::new(py);
        match self.body.lock().unwrap().take() {
            Some(b) => {
                d.set_item(intern!(py, "type"), intern!(py, "http.request"))?;
                d.set_item(intern!(py, "body"), PyBytes::new(py, &b))?;
                d.set_item(intern!(py, "more_body"), false)?;
            }
            None => d.set_item(intern!(py, "type"), intern!(py, "http.disconnect"))?,
        }
        Ok(Ready { v: d.into_any().unbind() })
    }
}

#[pyclass(frozen)]
struct Server {
    sh: Arc<Shared>,
    app: Py<PyAny>,
    create_task: Py<PyAny>,
    done: Py<Done>,
    asgi: Py<PyDict>,
    server_addr: Py<PyTuple>,
}

impl Server {
    /// Read the eventfd FIRST, then swap the queue out (the reverse order can
    /// strand a batch whose eventfd write we would consume).
    fn take(&self) -> Vec<Parsed> {
        let sh = &*self.sh;
        let mut v: u64 = 0;
        let n = unsafe { libc::read(sh.efd, &mut v as *mut u64 as *mut libc::c_void, 8) };
        if n == 8 {
            sh.stats.efd_read_sum.fetch_add(v, Relaxed);
        } else {
            sh.stats.efd_read_eagain.fetch_add(1, Relaxed);
        }
        let (items, t_first) = {
            let mut q = sh.queue.lock().unwrap();
            (std::mem::take(&mut q.items), q.t_first.take())
        };
        sh.stats.dispatches.fetch_add(1, Relaxed);
        if items.is_empty() {
            sh.stats.empty_dispatches.fetch_add(1, Relaxed);
            return items;
        }
        let n = items.len();
        sh.stats.batch_hist[batch_bucket(n)].fetch_add(1, Relaxed);
        sh.stats.max_batch.fetch_max(n as u64, Relaxed);
        if let Some(t) = t_first {
            let ns = t.elapsed().as_nanos() as u64;
            sh.stats.wake_ns_sum.fetch_add(ns, Relaxed);
            sh.stats.wake_hist[lat_bucket(ns / 1000)].fetch_add(1, Relaxed);
        }
        items
    }

    fn make<'py>(&self, py: Python<'py>, p: Parsed) -> PyResult<(Bound<'py, Req>, Bound<'py, PyDict>)> {
        let d = PyDict::new(py);
        d.set_item(intern!(py, "type"), intern!(py, "http"))?;
        d.set_item(intern!(py, "asgi"), self.asgi.bind(py))?;
        d.set_item(
            intern!(py, "http_version"),
            if p.minor == 1 { intern!(py, "1.1") } else { intern!(py, "1.0") },
        )?;
        let method = match p.method.as_str() {
            "GET" => intern!(py, "GET").clone(),
            "POST" => intern!(py, "POST").clone(),
            "HEAD" => intern!(py, "HEAD").clone(),
            m => PyString::new(py, m),
        };
        d.set_item(intern!(py, "method"), method)?;
        d.set_item(intern!(py, "scheme"), intern!(py, "http"))?;
        let (path, query) = match p.target.iter().position(|&c| c == b'?') {
            Some(i) => (&p.target[..i], &p.target[i + 1..]),
            None => (&p.target[..], &b""[..]),
        };
        d.set_item(intern!(py, "path"), PyString::new(py, &String::from_utf8_lossy(path)))?;
        d.set_item(intern!(py, "raw_path"), PyBytes::new(py, path))?;
        d.set_item(intern!(py, "query_string"), PyBytes::new(py, query))?;
        d.set_item(intern!(py, "root_path"), intern!(py, ""))?;
        let hl = PyList::empty(py);
        for (k, v) in &p.headers {
            hl.append(PyTuple::new(py, [PyBytes::new(py, k), PyBytes::new(py, v)])?)?;
        }
        d.set_item(intern!(py, "headers"), hl)?;
        d.set_item(
            intern!(py, "client"),
            (p.conn.peer.ip().to_string(), p.conn.peer.port()),
        )?;
        d.set_item(intern!(py, "server"), self.server_addr.bind(py))?;
        let req = Bound::new(
            py,
            Req {
                conn: p.conn,
                sh: self.sh.clone(),
                keep_alive: p.keep_alive,
                head_only: p.method == "HEAD",
                body: Mutex::new(Some(p.body)),
                resp: Mutex::new(Resp::default()),
                done: self.done.clone_ref(py),
            },
        )?;
        Ok((req, d))
    }
}

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (host, port, app, create_task, sched_batch=false))]
    fn new(
        py: Python<'_>,
        host: &str,
        port: u16,
        app: Py<PyAny>,
        create_task: Py<PyAny>,
        sched_batch: bool,
    ) -> PyResult<Self> {
        use socket2::{Domain, Socket, Type};
        let addr: SocketAddr = format!("{host}:{port}")
            .parse()
            .map_err(|e| PyValueError::new_err(format!("{e}")))?;
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        sock.set_reuse_address(true)?;
        sock.bind(&addr.into())?;
        sock.listen(1024)?;
        sock.set_nonblocking(true)?;
        let listener: std::net::TcpListener = sock.into();
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(PyOSError::new_err("eventfd failed"));
        }
        let sh = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            efd,
            stats: Stats::default(),
        });
        let sh2 = sh.clone();
        std::thread::Builder::new()
            .name("tokio-io".into())
            .spawn(move || {
                if sched_batch {
                    // SCHED_BATCH: a waking tokio thread does not preempt the
                    // Python thread sharing its core (see RESULTS.md).
                    let p = libc::sched_param { sched_priority: 0 };
                    unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &p) };
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    let l = TcpListener::from_std(listener).expect("listener");
                    loop {
                        if let Ok((s, peer)) = l.accept().await {
                            tokio::spawn(serve_conn(s, peer, sh2.clone()));
                        }
                    }
                });
            })?;
        let asgi = PyDict::new(py);
        asgi.set_item("version", "3.0")?;
        asgi.set_item("spec_version", "2.3")?;
        let server_addr = PyTuple::new(
            py,
            [
                PyString::new(py, &addr.ip().to_string()).into_any(),
                port.into_pyobject(py)?.into_any(),
            ],
        )?;
        Ok(Server {
            sh,
            app,
            create_task,
            done: Py::new(py, Done)?,
            asgi: asgi.unbind(),
            server_addr: server_addr.unbind(),
        })
    }

    #[getter]
    fn eventfd(&self) -> i32 {
        self.sh.efd
    }

    /// Python-side drain variant: returns [(req, scope), ...]; the caller does
    /// `create_task(app(scope, req.receive, req.send))` for each.
    fn take_batch<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let t0 = Instant::now();
        let items = self.take();
        let out = PyList::empty(py);
        for p in items {
            let (req, scope) = self.make(py, p)?;
            out.append((req, scope))?;
        }
        self.sh.stats.take_ns_sum.fetch_add(t0.elapsed().as_nanos() as u64, Relaxed);
        Ok(out)
    }

    /// Rust-side drain variant: does the whole drain (scope + create_task).
    fn dispatch(&self, py: Python<'_>) -> PyResult<()> {
        let t0 = Instant::now();
        let items = self.take();
        let app = self.app.bind(py);
        let create_task = self.create_task.bind(py);
        for p in items {
            let (req, scope) = self.make(py, p)?;
            let recv = req.getattr(intern!(py, "receive"))?;
            let send = req.getattr(intern!(py, "send"))?;
            let coro = app.call1((scope, recv, send))?;
            create_task.call1((coro,))?;
        }
        self.sh.stats.take_ns_sum.fetch_add(t0.elapsed().as_nanos() as u64, Relaxed);
        Ok(())
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = &self.sh.stats;
        let d = PyDict::new(py);
        macro_rules! put {
            ($($f:ident),*) => { $( d.set_item(stringify!($f), s.$f.load(Relaxed))?; )* };
        }
        put!(conns, reads, requests, pushes, efd_writes, efd_read_sum, efd_read_eagain,
             dispatches, empty_dispatches, max_batch, wake_ns_sum, take_ns_sum,
             direct_writes, handoffs, tokio_flushes);
        let bh: Vec<u64> = s.batch_hist.iter().map(|a| a.load(Relaxed)).collect();
        let wh: Vec<u64> = s.wake_hist.iter().map(|a| a.load(Relaxed)).collect();
        d.set_item("batch_hist", bh)?;
        d.set_item("batch_hist_labels", ["1", "2", "3-4", "5-8", "9-16", "17-32", "33-64", "65-128", "129+"])?;
        d.set_item("wake_hist", wh)?;
        d.set_item("wake_hist_labels_us", ["<2", "<5", "<10", "<20", "<50", "<100", "<200", "<500", "<1000", ">=1000"])?;
        Ok(d)
    }

    fn reset_stats(&self) {
        let s = &self.sh.stats;
        for a in [
            &s.reads, &s.requests, &s.pushes, &s.efd_writes, &s.efd_read_sum, &s.efd_read_eagain,
            &s.dispatches, &s.empty_dispatches, &s.max_batch, &s.wake_ns_sum, &s.take_ns_sum,
            &s.direct_writes, &s.handoffs, &s.tokio_flushes,
        ] {
            a.store(0, Relaxed);
        }
        for a in s.batch_hist.iter().chain(s.wake_hist.iter()) {
            a.store(0, Relaxed);
        }
    }
}

#[pymodule]
fn _eventfd_bridge(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Server>()?;
    m.add_class::<Req>()?;
    m.add_class::<Done>()?;
    m.add_class::<Ready>()?;
    Ok(())
}
