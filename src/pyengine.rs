//! `ferrule._ferrule.Engine`: the Python face of the engine. It is both the
//! listening server and the selector behind asyncio's event loop.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::asgi;
use crate::engine::executor::TaskId;
use crate::engine::listener;
use crate::engine::poller::Poller;
use crate::engine::stats::Stats;
use crate::engine::{lock, EngineConfig, Event, PyRefs, Shared};
use crate::http1::{Limits, ResponseDefaults};

type PollScratch = (Vec<libc::epoll_event>, Vec<(i32, u32)>);

#[pyclass(frozen, module = "ferrule._ferrule")]
pub struct Engine {
    rt: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    poller: Poller,
    listener: Mutex<Option<listener::StdListener>>,
    accept: Mutex<Option<TaskId>>,
    /// `(host, port)`, or `(path, 0)` on a Unix domain socket.
    addr: (String, u16),
    /// epoll_wait buffer and the (fd, events) list handed to Python.
    scratch: Mutex<PollScratch>,
    spare_events: Mutex<Vec<Event>>,
}

enum Wait {
    Poll,
    Forever,
    For(Duration),
}

fn secs(v: f64, name: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(v).map_err(|_| {
        PyValueError::new_err(format!("{name} must be a non-negative number of seconds"))
    })
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (
        host = "127.0.0.1".to_string(), port = 8000, *, fd = None, uds = None, backlog = 2048,
        server_header = true, date_header = true, headers = Vec::new(),
        timeout_keep_alive = 5.0, timeout_request_header = 10.0, root_path = String::new(),
        max_head_bytes = 65536, max_headers = 100, max_target_bytes = 8192,
        body_buffer = 65536, write_high_water = 65536,
        timeout_request_body = 30.0, timeout_send = 30.0, max_body_size = None,
        limit_concurrency = None, forwarded_allow_ips = Vec::new(),
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        host: String,
        port: u16,
        fd: Option<i32>,
        uds: Option<String>,
        backlog: i32,
        server_header: bool,
        date_header: bool,
        headers: Vec<(String, String)>,
        timeout_keep_alive: f64,
        timeout_request_header: f64,
        root_path: String,
        max_head_bytes: usize,
        max_headers: usize,
        max_target_bytes: usize,
        body_buffer: usize,
        write_high_water: usize,
        timeout_request_body: f64,
        timeout_send: f64,
        max_body_size: Option<u64>,
        limit_concurrency: Option<usize>,
        forwarded_allow_ips: Vec<String>,
    ) -> PyResult<Self> {
        let cfg = EngineConfig {
            limits: Limits {
                max_head_bytes,
                max_headers,
                max_target_bytes,
            },
            defaults: ResponseDefaults {
                server_header,
                date_header,
                extra: headers
                    .into_iter()
                    .map(|(n, v)| (n.into_bytes(), v.into_bytes()))
                    .collect(),
            },
            keep_alive_timeout: secs(timeout_keep_alive, "timeout_keep_alive")?,
            header_timeout: secs(timeout_request_header, "timeout_request_header")?,
            body_timeout: secs(timeout_request_body, "timeout_request_body")?,
            send_timeout: secs(timeout_send, "timeout_send")?,
            max_body: max_body_size,
            limit_concurrency,
            proxies: crate::engine::proxy::TrustedProxies::parse(&forwarded_allow_ips),
            body_buffer: body_buffer.max(1),
            write_high_water: write_high_water.max(1),
            root_path,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        let std_listener = match (fd, &uds) {
            (Some(fd), _) => listener::from_fd(fd)?,
            (None, Some(path)) => listener::bind_unix(path, backlog)?,
            (None, None) => listener::bind(&host, port, backlog)?,
        };
        let addr = std_listener.describe()?;
        let poller = {
            let _guard = rt.enter();
            Poller::new()?
        };
        Ok(Self {
            rt,
            shared: Arc::new(Shared::new(cfg)),
            poller,
            listener: Mutex::new(Some(std_listener)),
            accept: Mutex::new(None),
            addr,
            scratch: Mutex::new((Vec::with_capacity(64), Vec::with_capacity(64))),
            spare_events: Mutex::new(Vec::with_capacity(64)),
        })
    }

    /// `(host, port)` actually bound (port 0 resolved).
    #[getter]
    fn bound_address(&self) -> (String, u16) {
        self.addr.clone()
    }

    fn register(&self, fd: i32, events: u32) -> PyResult<()> {
        Ok(self.poller.register(fd, events)?)
    }

    fn modify(&self, fd: i32, events: u32) -> PyResult<()> {
        Ok(self.poller.modify(fd, events)?)
    }

    fn unregister(&self, fd: i32) -> PyResult<()> {
        Ok(self.poller.unregister(fd)?)
    }

    /// Starts accepting and serving `app` on `event_loop`. `report(exc)`
    /// logs an app failure; `runner(awaitable, send)` is the coroutine an
    /// asyncio Task runs when requests cannot run as RequestTasks.
    #[pyo3(signature = (event_loop, app, runner, report, *, state = None, access_log = None,
                        task_name = "ferrule-http", native_tasks = true))]
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
    ) -> PyResult<()> {
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
        let root_path = self
            .shared
            .cfg
            .root_path
            .clone()
            .into_pyobject(py)?
            .into_any();
        let (scope_template, asgi_template) =
            crate::asgi::scope_template(py, &root_path, state.is_some())?;
        let refs = PyRefs {
            event_loop: event_loop.clone().unbind(),
            app,
            report,
            task_driver,
            enter_task: enter_task.map_or_else(|| py.None(), Bound::unbind),
            leave_task: leave_task.map_or_else(|| py.None(), Bound::unbind),
            task_name: PyString::new(py, task_name).into_any().unbind(),
            scope_template: scope_template.unbind(),
            asgi_template: asgi_template.unbind(),
            runner,
            create_future: event_loop.getattr("create_future")?.unbind(),
            spawn: spawn.unbind(),
            task_kwargs: task_kwargs.unbind(),
            done: done.unbind(),
            access_log,
            state,
            root_path: root_path.unbind(),
        };
        if self.shared.py.set(refs).is_err() {
            return Err(PyRuntimeError::new_err("engine already started"));
        }
        let std_listener = lock(&self.listener)
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("listener already closed"))?;
        let _guard = self.rt.enter();
        let l = std_listener.into_tokio()?;
        let id = self
            .shared
            .exec
            .spawn(listener::accept_loop(l, self.shared.clone()));
        *lock(&self.accept) = Some(id);
        Ok(())
    }

    /// Runs tokio until a Python fd is ready, a request or wake-up is
    /// waiting, or `timeout` passes; then starts apps for parsed requests and
    /// returns the ready Python fds as `[(fd, events)]`.
    #[pyo3(signature = (timeout = None))]
    fn select(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Vec<(i32, u32)>> {
        Stats::inc(&self.shared.stats.selects);
        let wait = match timeout {
            None => Wait::Forever,
            Some(t) if t <= 0.0 || t.is_nan() => Wait::Poll,
            Some(t) => {
                Wait::For(Duration::try_from_secs_f64(t).unwrap_or(Duration::from_secs(86400)))
            }
        };
        let shared = &*self.shared;
        // The loop iteration that called us has ended: write what it
        // deferred before waiting.
        shared.flush_deferred();
        let poller = &self.poller;
        let rt = &self.rt;
        let exec = &shared.exec;
        py.detach(|| {
            rt.block_on(async {
                let woken = std::mem::take(&mut *lock(&shared.to_wake));
                for c in woken {
                    c.wake.notify_one();
                }
                let mut sleep = match wait {
                    Wait::For(d) => Some(Box::pin(tokio::time::sleep(d))),
                    _ => None,
                };
                let mut first = true;
                std::future::poll_fn(|cx| {
                    // Connections read and parse right here, so a parsed
                    // request returns at once (see engine::executor).
                    exec.run_ready(cx);
                    if !lock(&shared.events).is_empty() {
                        return Poll::Ready(());
                    }
                    if poller.poll_readable(cx) {
                        return Poll::Ready(());
                    }
                    match wait {
                        // Python is busy: let the I/O driver run once (a
                        // non-blocking epoll_wait), so accepts and reads
                        // progress, then return.
                        Wait::Poll if first => {
                            first = false;
                            cx.waker().wake_by_ref();
                            Poll::Pending
                        }
                        Wait::Poll => Poll::Ready(()),
                        Wait::Forever => Poll::Pending,
                        Wait::For(_) => match sleep.as_mut() {
                            Some(s) => s.as_mut().poll(cx),
                            None => Poll::Ready(()),
                        },
                    }
                })
                .await
            })
        });
        let ready = {
            let mut scratch = lock(&self.scratch);
            let (evs, out) = &mut *scratch;
            self.poller.poll_now(evs, out);
            out.clone()
        };
        self.dispatch(py)?;
        Ok(ready)
    }

    /// Stops accepting; idle keep-alive connections close, busy ones close
    /// after their current response (which carries `Connection: close`).
    fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Release);
        if let Some(id) = lock(&self.accept).take() {
            let _guard = self.rt.enter();
            self.shared.exec.cancel(id);
        }
        lock(&self.listener).take();
        self.shared.shutdown.notify_waiters();
        // Busy connections: a pending receive() that only waits for a
        // disconnect now gets one.
        let conns: Vec<_> = lock(&self.shared.conns).values().cloned().collect();
        for c in conns {
            if lock(&c.state).recv_waiter.is_some() {
                self.shared.push_event(Event::Wake(c.clone()));
            }
            // Connections whose response ended without waking their task
            // look like busy ones: wake them so they close.
            self.shared.schedule(&c);
        }
    }

    /// Request tasks still running (when requests run as RequestTasks).
    fn tasks(&self, py: Python<'_>) -> Vec<Py<crate::task::RequestTask>> {
        lock(&self.shared.tasks).live(py)
    }

    /// True when requests run as RequestTasks rather than asyncio Tasks.
    fn native_tasks(&self) -> bool {
        self.shared.py.get().is_some_and(|r| r.task_driver)
    }

    /// Requests whose response is not complete yet.
    fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.shared.stats.snapshot() {
            d.set_item(k, v)?;
        }
        d.set_item("in_flight", self.in_flight())?;
        Ok(d)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // The connection futures hold the engine's shared state (a cycle):
        // drop them, inside the runtime their sockets and timers belong to.
        let _guard = self.rt.enter();
        self.shared.exec.clear();
        // So do request tasks still pending (an app that ignored its
        // cancellation): each holds the shared state too.
        let tasks = std::mem::take(&mut *lock(&self.shared.tasks));
        drop(tasks);
    }
}

impl Engine {
    /// Starts apps and completes waiters for what the tasks reported. An
    /// error here concerns one connection and is logged, because an
    /// exception out of `select()` stops the whole event loop; only an app's
    /// KeyboardInterrupt/SystemExit is raised (that is meant to stop it).
    fn dispatch(&self, py: Python<'_>) -> PyResult<()> {
        let mut batch = std::mem::take(&mut *lock(&self.spare_events));
        std::mem::swap(&mut batch, &mut *lock(&self.shared.events));
        let mut fatal = None;
        // Responses that end during the batch are written when it ends.
        self.shared.in_dispatch.store(true, Ordering::Relaxed);
        for ev in batch.drain(..) {
            let r = match ev {
                Event::Request(conn, head) => asgi::start_app(py, &conn, &head),
                Event::Wake(conn) => asgi::on_wake(py, &conn),
            };
            match r {
                Ok(()) => {}
                // An app raised KeyboardInterrupt/SystemExit: it stops the
                // loop, as it would from an asyncio Task, once the rest of
                // the batch is dispatched.
                Err(e) if crate::task::is_fatal(py, &e) => {
                    fatal.get_or_insert(e);
                }
                Err(e) => log_error(
                    py,
                    "ferrule engine: error while dispatching a connection event",
                    e,
                ),
            }
        }
        self.shared.in_dispatch.store(false, Ordering::Relaxed);
        self.shared.flush_deferred();
        *lock(&self.spare_events) = batch;
        match fatal {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Logs `err` with its traceback on `ferrule.error` (stderr if logging
/// itself fails).
pub fn log_error(py: Python<'_>, msg: &str, err: PyErr) {
    let logged = (|| -> PyResult<()> {
        let logger = py
            .import("logging")?
            .call_method1("getLogger", ("ferrule.error",))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("exc_info", err.clone_ref(py).into_value(py))?;
        logger.call_method("error", (msg,), Some(&kwargs))?;
        Ok(())
    })();
    if logged.is_err() {
        err.display(py);
    }
}
