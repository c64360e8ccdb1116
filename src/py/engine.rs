//! `ferrule._ferrule.Engine`: the engine as Python sees it. It is both the
//! listening server and the selector behind asyncio's event loop: each
//! `select()` runs the engine without the GIL, then hands what the drivers
//! reported to the bridge.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ferrule_engine::engine::EventFd;
use ferrule_engine::net::proxy::TrustedProxies;
use ferrule_engine::net::tls::{TlsAcceptor, TlsSettings, ALPN_AUTO, ALPN_H1, ALPN_H2};
use ferrule_engine::proto::h1::{Limits, ResponseDefaults};
use ferrule_engine::server::config::{H2Config, HttpMode, ServerConfig, WsConfig};
use ferrule_engine::server::exchange::Event;
use ferrule_engine::{Bind, Wait};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::bridge::context::{Bridge, PyRefs};
use crate::bridge::dispatch::dispatch;
use crate::bridge::scope::ScopeTemplate;
use crate::bridge::task::{RequestTask, TaskEnv};
use crate::bridge::wsgi::WsgiPool;

pyo3::create_exception!(
    _ferrule,
    TlsError,
    pyo3::exceptions::PyValueError,
    "The TLS options cannot be served: one line naming the flag and the file."
);

/// The option keys `Engine(options)` reads: exactly these, each once. The
/// Python option table says which options the engine gets; a test checks
/// the two agree.
const OPTIONS: [&str; 43] = [
    "bind",
    "raw_header_names",
    "host",
    "port",
    "fd",
    "uds",
    "backlog",
    "server_header",
    "date_header",
    "headers",
    "timeout_keep_alive",
    "timeout_request_header",
    "timeout_request_body",
    "timeout_send",
    "root_path",
    "limit_request_head_size",
    "limit_request_fields",
    "limit_request_line",
    "limit_request_body",
    "limit_concurrency",
    "forwarded_allow_ips",
    "proxy_protocol",
    "ws",
    "ws_max_size",
    "ws_max_queue",
    "ws_ping_interval",
    "ws_ping_timeout",
    "ws_per_message_deflate",
    "ssl_keyfile",
    "ssl_certfile",
    "ssl_keyfile_password",
    "ssl_version",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_ciphers",
    "ssl_and_plain",
    "ssl_refuse_plain",
    "interface",
    "http",
    "h2_max_concurrent_streams",
    "h2_max_header_list_size",
    "h2_max_frame_size",
    "h2_initial_window_size",
];

/// `--http` as the engine takes it (the Python side has mapped uvicorn's
/// `h11`/`httptools` to `h1`).
fn http_mode(d: &Bound<'_, PyDict>) -> PyResult<HttpMode> {
    match item(d, "http")?.extract::<String>()?.as_str() {
        "auto" => Ok(HttpMode::Auto),
        "h1" => Ok(HttpMode::H1),
        "h2" => Ok(HttpMode::H2),
        other => Err(PyValueError::new_err(format!(
            "http must be auto, h1 or h2, got {other:?}"
        ))),
    }
}

/// The TLS settings in the options (None: no certificate, plain HTTP).
fn tls_settings(d: &Bound<'_, PyDict>) -> PyResult<Option<TlsSettings>> {
    let certfile: Option<String> = item(d, "ssl_certfile")?.extract()?;
    let keyfile: Option<String> = item(d, "ssl_keyfile")?.extract()?;
    let Some(certfile) = certfile else {
        if keyfile.is_some() {
            return Err(TlsError::new_err(
                "--ssl-keyfile needs --ssl-certfile (the certificate that goes with the key)",
            ));
        }
        return Ok(None);
    };
    Ok(Some(TlsSettings {
        certfile,
        keyfile,
        password: item(d, "ssl_keyfile_password")?.extract()?,
        version: item(d, "ssl_version")?.extract()?,
        cert_reqs: item(d, "ssl_cert_reqs")?.extract()?,
        ca_certs: item(d, "ssl_ca_certs")?.extract()?,
        ciphers: item(d, "ssl_ciphers")?.extract()?,
        and_plain: item(d, "ssl_and_plain")?.extract()?,
        refuse_plain: item(d, "ssl_refuse_plain")?.extract()?,
        alpn: match http_mode(d)? {
            HttpMode::Auto => ALPN_AUTO,
            HttpMode::H1 => ALPN_H1,
            HttpMode::H2 => ALPN_H2,
        },
    }))
}

/// The TLS acceptor the options ask for, its files loaded.
fn tls_acceptor(d: &Bound<'_, PyDict>) -> PyResult<Option<Arc<TlsAcceptor>>> {
    match tls_settings(d)? {
        None => Ok(None),
        Some(s) => TlsAcceptor::new(s)
            .map(|a| Some(Arc::new(a)))
            .map_err(|e| TlsError::new_err(e.to_string())),
    }
}

#[pyclass(frozen, module = "ferrule._ferrule")]
pub struct Engine {
    /// Shared with the engine thread in embedded mode.
    core: Arc<ferrule_engine::Engine>,
    root_path: String,
    bridge: OnceLock<Arc<Bridge>>,
    /// The WSGI app's worker pool (`interface="wsgi"`).
    wsgi: OnceLock<Arc<WsgiPool>>,
    /// The `(fd, events)` list handed to Python.
    ready: Mutex<Vec<(i32, u32)>>,
    /// The event batch's buffer, kept between iterations.
    batch: Mutex<Vec<Event>>,
    /// Embedded mode: the engine's own thread and the eventfd it notifies.
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    eventfd: Mutex<Option<Arc<EventFd>>>,
}

/// One `--bind` value: `host:port`, `[v6]:port`, `unix:/path` or `fd://N`.
fn parse_bind(spec: &str) -> PyResult<Bind> {
    let bad = || PyValueError::new_err(format!("invalid bind '{spec}'"));
    if let Some(path) = spec.strip_prefix("unix:") {
        return Ok(Bind::Unix(path.to_string()));
    }
    if let Some(fd) = spec.strip_prefix("fd://") {
        return fd.parse().map(Bind::Fd).map_err(|_| bad());
    }
    let (host, port) = spec.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Ok(Bind::Tcp {
        host: host.to_string(),
        port: port.parse().map_err(|_| bad())?,
    })
}

/// True once the interpreter is finalizing: a thread that takes the GIL
/// back then is ended by `pthread_exit`, whose forced unwind through
/// Rust frames aborts the process.
fn finalizing() -> bool {
    // 3.13 made the call public and dropped the private name.
    #[cfg(Py_3_13)]
    use pyo3::ffi::Py_IsFinalizing as is_finalizing;
    #[cfg(not(Py_3_13))]
    extern "C" {
        #[link_name = "_Py_IsFinalizing"]
        fn is_finalizing() -> std::os::raw::c_int;
    }
    // SAFETY: reads the runtime's finalizing pointer; no GIL needed.
    unsafe { is_finalizing() != 0 }
}

fn item<'py>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<Bound<'py, PyAny>> {
    d.get_item(key)?
        .ok_or_else(|| PyValueError::new_err(format!("engine option '{key}' is missing")))
}

fn secs(d: &Bound<'_, PyDict>, key: &str) -> PyResult<Duration> {
    let v: f64 = item(d, key)?.extract()?;
    Duration::try_from_secs_f64(v).map_err(|_| {
        PyValueError::new_err(format!("{key} must be a non-negative number of seconds"))
    })
}

/// Optional seconds: None stays None.
fn opt_secs(d: &Bound<'_, PyDict>, key: &str) -> PyResult<Option<Duration>> {
    if item(d, key)?.is_none() {
        return Ok(None);
    }
    secs(d, key).map(Some)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An `OSError(errno, strerror)`, so Python sees `.errno` and the matching
/// subclass (`FileNotFoundError`, `PermissionError`, ...).
fn os_error(e: std::io::Error) -> PyErr {
    match e.raw_os_error() {
        Some(code) => {
            let text = e.to_string();
            let strerror = text
                .strip_suffix(&format!(" (os error {code})"))
                .unwrap_or(&text)
                .to_string();
            PyOSError::new_err((code, strerror))
        }
        None => PyOSError::new_err(e.to_string()),
    }
}

impl Engine {
    fn bridge(&self) -> PyResult<&Arc<Bridge>> {
        self.bridge
            .get()
            .ok_or_else(|| PyRuntimeError::new_err("engine not started"))
    }
}

#[pymethods]
impl Engine {
    /// The keys of the options dict.
    #[classattr]
    #[allow(non_snake_case)]
    fn OPTIONS(py: Python<'_>) -> PyResult<Py<PyTuple>> {
        Ok(PyTuple::new(py, OPTIONS)?.unbind())
    }

    /// Seconds an idle connection may still bring a request once the
    /// server stops (the shutdown waits them out).
    #[classattr]
    #[allow(non_snake_case)]
    fn DRAIN() -> f64 {
        ferrule_engine::server::shutdown::DRAIN.as_secs_f64()
    }

    #[new]
    fn new(options: &Bound<'_, PyDict>) -> PyResult<Self> {
        for key in options.keys() {
            let key = key.cast::<PyString>()?.to_cow()?.into_owned();
            if !OPTIONS.contains(&key.as_str()) {
                return Err(PyValueError::new_err(format!(
                    "unknown engine option '{key}'"
                )));
            }
        }
        let d = options;
        let headers: Vec<(Vec<u8>, Vec<u8>)> = item(d, "headers")?.extract()?;
        let allow: Vec<String> = item(d, "forwarded_allow_ips")?.extract()?;
        // None (off), or the peers whose PROXY header is believed.
        let proxy_protocol: Option<Vec<String>> = item(d, "proxy_protocol")?.extract()?;
        // A WSGI app runs on threads of its own and has no WebSockets.
        let wsgi = item(d, "interface")?.extract::<String>()? == "wsgi";
        let cfg = ServerConfig {
            limits: Limits {
                max_head_bytes: item(d, "limit_request_head_size")?.extract()?,
                max_headers: item(d, "limit_request_fields")?.extract()?,
                max_target_bytes: item(d, "limit_request_line")?.extract()?,
                keep_header_case: item(d, "raw_header_names")?.extract()?,
            },
            defaults: ResponseDefaults {
                server_header: item(d, "server_header")?.extract()?,
                date_header: item(d, "date_header")?.extract()?,
                extra: headers,
            },
            keep_alive_timeout: secs(d, "timeout_keep_alive")?,
            header_timeout: secs(d, "timeout_request_header")?,
            body_timeout: secs(d, "timeout_request_body")?,
            send_timeout: secs(d, "timeout_send")?,
            max_body: item(d, "limit_request_body")?.extract()?,
            limit_concurrency: item(d, "limit_concurrency")?.extract()?,
            proxies: TrustedProxies::parse(&allow),
            proxy_protocol: proxy_protocol.map(|p| TrustedProxies::parse(&p)),
            // Every --ws value but "none" is ferrule's own implementation.
            ws: if wsgi || item(d, "ws")?.extract::<String>()? == "none" {
                None
            } else {
                Some(WsConfig {
                    max_size: item(d, "ws_max_size")?.extract()?,
                    max_queue: item(d, "ws_max_queue")?.extract()?,
                    ping_interval: opt_secs(d, "ws_ping_interval")?,
                    ping_timeout: opt_secs(d, "ws_ping_timeout")?,
                    per_message_deflate: item(d, "ws_per_message_deflate")?.extract()?,
                })
            },
            tls: tls_acceptor(d)?,
            app_threads: wsgi,
            http: http_mode(d)?,
            h2: H2Config {
                max_concurrent_streams: item(d, "h2_max_concurrent_streams")?.extract()?,
                max_header_list_size: item(d, "h2_max_header_list_size")?.extract()?,
                max_frame_size: item(d, "h2_max_frame_size")?.extract()?,
                initial_window_size: item(d, "h2_initial_window_size")?.extract()?,
            },
            ..ServerConfig::default()
        };
        let fd: Option<i32> = item(d, "fd")?.extract()?;
        let uds: Option<String> = item(d, "uds")?.extract()?;
        let specs: Option<Vec<String>> = item(d, "bind")?.extract()?;
        let binds = match specs {
            // --bind (repeatable) replaces --host/--port/--uds/--fd.
            Some(specs) if !specs.is_empty() => specs
                .iter()
                .map(|s| parse_bind(s))
                .collect::<PyResult<Vec<_>>>()?,
            _ => vec![match (fd, uds) {
                (Some(fd), _) => Bind::Fd(fd),
                (None, Some(path)) => Bind::Unix(path),
                (None, None) => Bind::Tcp {
                    host: item(d, "host")?.extract()?,
                    port: item(d, "port")?.extract()?,
                },
            }],
        };
        let backlog: i32 = item(d, "backlog")?.extract()?;
        let core = ferrule_engine::Engine::with_binds(cfg, &binds, backlog).map_err(os_error)?;
        Ok(Self {
            core: Arc::new(core),
            thread: Mutex::new(None),
            eventfd: Mutex::new(None),
            root_path: item(d, "root_path")?.extract()?,
            bridge: OnceLock::new(),
            wsgi: OnceLock::new(),
            ready: Mutex::new(Vec::with_capacity(64)),
            batch: Mutex::new(Vec::with_capacity(64)),
        })
    }

    /// Loads the TLS files the options name, as the engine would, and
    /// raises `TlsError` with one line naming the flag and file if they
    /// cannot be served (the command line checks before it binds).
    #[staticmethod]
    fn check_tls(options: &Bound<'_, PyDict>) -> PyResult<()> {
        tls_acceptor(options).map(|_| ())
    }

    /// Reads the TLS certificate and key files again (SIGHUP): new
    /// handshakes use them, open connections keep theirs. Returns the
    /// reason as one line if the new files cannot be used (the old ones
    /// stay), None if reloaded or not serving TLS.
    fn reload_tls(&self, py: Python<'_>) -> Option<String> {
        let tls = self.core.shared().cfg.tls.as_ref()?;
        // File reads and key decryption: not under the GIL.
        py.detach(|| tls.reload().err().map(|e| e.to_string()))
    }

    /// True when the engine serves TLS.
    #[getter]
    fn tls(&self) -> bool {
        self.core.shared().cfg.tls.is_some()
    }

    /// `(host, port)` actually bound (port 0 resolved).
    #[getter]
    fn bound_address(&self) -> (String, u16) {
        self.core.bound_address()
    }

    /// Every listener's `(host, port)` (`(path, 0)` for a Unix socket).
    #[getter]
    fn bound_addresses(&self) -> Vec<(String, u16)> {
        self.core.bound_addresses().to_vec()
    }

    /// Embedded mode: runs the engine on a thread of its own and returns
    /// the eventfd that turns readable when events wait; the loop calls
    /// `on_ready()` then (`loop.add_reader(fd, engine.on_ready)`).
    fn start_thread(&self) -> PyResult<i32> {
        if self.wsgi.get().is_some() {
            return Err(PyRuntimeError::new_err(
                "a WSGI app is served by Server.run(), not on the caller's loop",
            ));
        }
        let mut slot = lock(&self.thread);
        if slot.is_some() {
            return Err(PyRuntimeError::new_err("engine thread already running"));
        }
        let efd = Arc::new(EventFd::new().map_err(os_error)?);
        let fd = efd.fd();
        let core = self.core.clone();
        let notify = efd.clone();
        let handle = std::thread::Builder::new()
            .name("ferrule-engine".into())
            .spawn(move || core.run_threaded(&|| notify.notify()))
            .map_err(os_error)?;
        *slot = Some(handle);
        *lock(&self.eventfd) = Some(efd);
        Ok(fd)
    }

    /// The loop's reader callback: hands the queued events to the bridge.
    fn on_ready(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(efd) = lock(&self.eventfd).as_ref() {
            efd.drain();
        }
        let mut batch = std::mem::take(&mut *lock(&self.batch));
        self.core.take_notified(&mut batch);
        self.dispatch_batch(py, batch)
    }

    /// Ends the engine thread and waits for it; closes the eventfd (remove
    /// the loop's reader first).
    fn stop_thread(&self, py: Python<'_>) {
        let handle = lock(&self.thread).take();
        if let Some(h) = handle {
            self.core.stop_thread();
            // The thread only leaves its poll: a short wait, off the GIL.
            py.detach(|| {
                let _ = h.join();
            });
        }
        lock(&self.eventfd).take();
    }

    fn register(&self, fd: i32, events: u32) -> PyResult<()> {
        Ok(self.core.poller().register(fd, events)?)
    }

    fn modify(&self, fd: i32, events: u32) -> PyResult<()> {
        Ok(self.core.poller().modify(fd, events)?)
    }

    fn unregister(&self, fd: i32) -> PyResult<()> {
        Ok(self.core.poller().unregister(fd)?)
    }

    /// Starts accepting and serving `app` on `event_loop`. `report(exc)`
    /// logs an app failure; `runner(awaitable, send)` is the coroutine an
    /// asyncio Task runs when requests cannot run as RequestTasks.
    /// `debug_log(line)` gets the engine's debug lines; `durations` turns on
    /// the request duration histogram (read by the metrics endpoint);
    /// `reset_contextvars` starts each request in an empty context.
    /// `wsgi_environ`: `app` is a WSGI app, run by the threads that call
    /// `wsgi_work()`; each request's environ is a copy of this dict (its
    /// `wsgi.file_wrapper` is the type sent by sendfile) plus the request's
    /// keys.
    #[pyo3(signature = (event_loop, app, runner, report, *, state = None, access_log = None,
                        task_name = "ferrule-http", native_tasks = true, debug_log = None,
                        durations = false, reset_contextvars = false,
                        body_end_event = false, wsgi_environ = None))]
    #[allow(clippy::too_many_arguments)]
    fn start(
        &self,
        py: Python<'_>,
        event_loop: &Bound<'_, PyAny>,
        app: Py<PyAny>,
        runner: Py<PyAny>,
        report: Py<PyAny>,
        state: Option<Py<PyAny>>,
        access_log: Option<Py<PyAny>>,
        task_name: &str,
        native_tasks: bool,
        debug_log: Option<Py<PyAny>>,
        durations: bool,
        reset_contextvars: bool,
        body_end_event: bool,
        wsgi_environ: Option<Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        if wsgi_environ.is_some() != self.core.shared().cfg.app_threads {
            return Err(PyValueError::new_err(
                "wsgi_environ goes with interface='wsgi', and only with it",
            ));
        }
        let wsgi_app = wsgi_environ.as_ref().map(|_| app.clone_ref(py));
        let wsgi_report = report.clone_ref(py);
        let done = event_loop.call_method0("create_future")?;
        let tasks_mod = py.import("asyncio")?.getattr("tasks")?;
        let has_factory = !event_loop.call_method0("get_task_factory")?.is_none();
        let task_kwargs = PyDict::new(py);
        // A constant name spares asyncio formatting "Task-N" per task.
        task_kwargs.set_item("name", task_name)?;
        let spawn = if has_factory {
            event_loop.getattr("create_task")?
        } else {
            task_kwargs.set_item("loop", event_loop)?;
            tasks_mod.getattr("Task")?
        };
        // Requests run as RequestTasks unless something needs real asyncio
        // Tasks: a task factory, debug mode (its checks and tracebacks
        // assume Tasks), or an asyncio without _enter_task/_leave_task.
        let enter_task = tasks_mod.getattr_opt("_enter_task")?;
        let leave_task = tasks_mod.getattr_opt("_leave_task")?;
        let task_driver = native_tasks
            && !has_factory
            && !event_loop.call_method0("get_debug")?.is_truthy()?
            && enter_task.is_some()
            && leave_task.is_some();
        done.call_method1("set_result", (py.None(),))?;
        let scope = ScopeTemplate::new(py, &self.root_path, state)?;
        let tasks = Arc::new(TaskEnv {
            event_loop: event_loop.clone().unbind(),
            enter_task: enter_task.map_or_else(|| py.None(), Bound::unbind),
            leave_task: leave_task.map_or_else(|| py.None(), Bound::unbind),
            task_name: PyString::new(py, task_name).into_any().unbind(),
            report,
            slab: Mutex::new(Default::default()),
        });
        let refs = PyRefs {
            app,
            runner,
            task_driver,
            create_future: event_loop.getattr("create_future")?.unbind(),
            spawn: spawn.unbind(),
            task_kwargs: task_kwargs.unbind(),
            done: done.unbind(),
            access_log,
            fresh_context: reset_contextvars,
            body_end_event,
            debug_log,
        };
        let shared = self.core.shared();
        shared.set_debug(refs.debug_log.is_some());
        shared
            .stats
            .timing
            .store(durations, std::sync::atomic::Ordering::Relaxed);
        let bridge = Arc::new(Bridge::new(refs, scope, tasks));
        if let (Some(environ), Some(app)) = (wsgi_environ, wsgi_app) {
            let file_wrapper = environ
                .get_item("wsgi.file_wrapper")?
                .ok_or_else(|| PyValueError::new_err("wsgi_environ needs wsgi.file_wrapper"))?;
            let pool = WsgiPool::new(
                bridge.clone(),
                app,
                environ.unbind(),
                file_wrapper.unbind(),
                wsgi_report,
            );
            if self.wsgi.set(Arc::new(pool)).is_err() {
                return Err(PyRuntimeError::new_err("engine already started"));
            }
        }
        if self.bridge.set(bridge).is_err() {
            return Err(PyRuntimeError::new_err("engine already started"));
        }
        self.core
            .start()
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// Runs the engine until a Python fd is ready, a request or wake-up is
    /// waiting, or `timeout` passes; then starts apps for parsed requests and
    /// returns the ready Python fds as `[(fd, events)]`.
    #[pyo3(signature = (timeout = None))]
    fn select(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Vec<(i32, u32)>> {
        let wait = Wait::from_timeout(timeout);
        let core = &self.core;
        let wsgi = self.wsgi.get();
        let exiting = py.detach(|| {
            match wsgi {
                None => core.wait(wait),
                Some(pool) => self.wait_wsgi(pool, wait),
            }
            finalizing()
        });
        if exiting {
            // A daemon thread at interpreter exit: taking the GIL back
            // would end this thread by a forced unwind through Rust frames
            // (an abort). Wait here for the process to end instead.
            loop {
                std::thread::park();
            }
        }
        let ready = {
            let mut out = lock(&self.ready);
            core.ready_fds(&mut out);
            out.clone()
        };
        self.dispatch(py)?;
        Ok(ready)
    }

    /// Stops accepting; idle keep-alive connections close, busy ones close
    /// after their current response (which carries `Connection: close`).
    fn shutdown(&self) {
        self.core.shutdown();
    }

    /// Serving is over: ends the engine thread, closes every connection
    /// and listener now (not when the engine is collected).
    fn close(&self, py: Python<'_>) {
        self.stop_thread(py);
        self.core.shutdown();
        self.core.close();
        // Pending request tasks hold the bridge, which holds them.
        if let Some(b) = self.bridge.get() {
            let tasks = b.tasks.tasks().clear();
            drop(tasks);
        }
    }

    /// Request tasks still running (when requests run as RequestTasks).
    fn tasks(&self, py: Python<'_>) -> Vec<Py<RequestTask>> {
        match self.bridge.get() {
            Some(b) => b.tasks.tasks().live(py),
            None => Vec::new(),
        }
    }

    /// True when requests run as RequestTasks rather than asyncio Tasks.
    fn native_tasks(&self) -> bool {
        self.bridge.get().is_some_and(|b| b.refs.task_driver)
    }

    /// A WSGI worker thread's body: runs requests until `wsgi_stop()`
    /// (the GIL is released while the queue is empty).
    fn wsgi_work(&self, py: Python<'_>) -> PyResult<()> {
        let pool = self
            .wsgi
            .get()
            .ok_or_else(|| PyRuntimeError::new_err("no WSGI app is served"))?
            .clone();
        pool.work(py)
    }

    /// WSGI requests queued or running (0 without a WSGI app).
    fn wsgi_busy(&self) -> usize {
        self.wsgi.get().map_or(0, |p| p.busy())
    }

    /// The WSGI workers end once the queue is empty; `abort`: reads and
    /// writes still blocked give up as if the client had gone, and queued
    /// requests are settled without the app.
    #[pyo3(signature = (abort = false))]
    fn wsgi_stop(&self, py: Python<'_>, abort: bool) {
        if let Some(p) = self.wsgi.get() {
            p.stop(py, abort);
        }
    }

    /// Requests whose response is not complete yet.
    fn in_flight(&self) -> usize {
        self.core.in_flight()
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.core.stats() {
            d.set_item(k, v)?;
        }
        d.set_item("in_flight", self.in_flight())?;
        Ok(d)
    }
}

impl Engine {
    /// `select()`'s wait with a WSGI app: requests and wake-ups go to its
    /// threads, and the wait goes on until Python has something to do (an
    /// fd ready, another event, the timeout), so the loop thread does not
    /// take the GIL from the apps per request.
    fn wait_wsgi(&self, pool: &WsgiPool, wait: Wait) {
        let core = &self.core;
        let deadline = match wait {
            Wait::For(d) => Instant::now().checked_add(d),
            _ => None,
        };
        let mut wait = wait;
        let mut fds = Vec::new();
        loop {
            core.wait(wait);
            if self.route_wsgi(pool) || matches!(wait, Wait::Poll) {
                return;
            }
            core.ready_fds(&mut fds);
            if !fds.is_empty() {
                return;
            }
            if let Wait::For(_) = wait {
                match deadline.and_then(|d| d.checked_duration_since(Instant::now())) {
                    Some(left) if !left.is_zero() => wait = Wait::For(left),
                    _ => return,
                }
            }
        }
    }

    /// Returns true if events are left for the bridge.
    fn route_wsgi(&self, pool: &WsgiPool) -> bool {
        let mut batch = std::mem::take(&mut *lock(&self.batch));
        self.core.take_events(&mut batch);
        let rest: Vec<Event> = batch.drain(..).filter_map(|ev| pool.route(ev)).collect();
        let left = !rest.is_empty();
        let shared = self.core.shared();
        for ev in rest {
            shared.push_event(ev);
        }
        *lock(&self.batch) = batch;
        left
    }

    /// Hands the queued events to the bridge. Responses that end during the
    /// batch are written when it ends.
    fn dispatch(&self, py: Python<'_>) -> PyResult<()> {
        let mut batch = std::mem::take(&mut *lock(&self.batch));
        self.core.take_events(&mut batch);
        self.dispatch_batch(py, batch)
    }

    fn dispatch_batch(&self, py: Python<'_>, mut batch: Vec<Event>) -> PyResult<()> {
        if batch.is_empty() {
            *lock(&self.batch) = batch;
            return Ok(());
        }
        let bridge = self.bridge()?;
        self.core.begin_batch();
        let r = dispatch(py, bridge, self.wsgi.get().map(|p| &**p), &mut batch);
        self.core.end_batch();
        *lock(&self.batch) = batch;
        r
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(h) = lock(&self.thread).take() {
            self.core.stop_thread();
            let _ = h.join();
        }
        // Request tasks still pending (an app that ignored its
        // cancellation) hold the bridge, which holds them: break the cycle.
        if let Some(b) = self.bridge.get() {
            let tasks = b.tasks.tasks().clear();
            drop(tasks);
        }
    }
}
