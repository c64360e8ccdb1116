//! The engine: tokio tasks that accept, read, parse and write, and the state
//! they share with the Python side (which runs on the same thread, between
//! two `select()` calls, with the GIL held).
//!
//! Hand-off rules (see docs/design.md):
//! - tokio tasks never touch Python objects; they push [`Event`]s and wake
//!   nothing else: they run inside `select()`'s poll (see `executor`),
//!   which returns once events are queued;
//! - the Python side never wakes a tokio task directly (that would be a
//!   remote wake through the driver's eventfd): it queues the connection in
//!   `to_wake`, which the next `select()` drains inside `block_on`.

pub mod conn;
pub mod date;
pub mod executor;
pub mod listener;
pub mod poller;
pub mod proxy;
pub mod stats;
pub mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokio::sync::Notify;

use crate::http1::{Limits, RequestHead, ResponseDefaults};
use conn::Conn;
use date::DateCache;
use stats::Stats;

/// Immutable engine settings, fixed when the engine is built.
pub struct EngineConfig {
    pub limits: Limits,
    pub defaults: ResponseDefaults,
    pub keep_alive_timeout: Duration,
    pub header_timeout: Duration,
    /// Idle time allowed while the app waits for request body bytes.
    pub body_timeout: Duration,
    /// Time allowed without write progress to a client that stops reading.
    pub send_timeout: Duration,
    /// Largest request body accepted (413 beyond); None = unlimited.
    pub max_body: Option<u64>,
    /// In-flight requests beyond which new ones get 503.
    pub limit_concurrency: Option<usize>,
    /// Peers whose X-Forwarded-For/-Proto set the scope's client/scheme.
    pub proxies: proxy::TrustedProxies,
    /// Bytes of request body buffered for an app that has not read them yet
    /// before ferrule stops reading the socket.
    pub body_buffer: usize,
    /// Unsent response bytes above which `send()` suspends.
    pub write_high_water: usize,
    pub root_path: String,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            defaults: ResponseDefaults {
                server_header: true,
                date_header: true,
                extra: Vec::new(),
            },
            keep_alive_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(30),
            max_body: None,
            limit_concurrency: None,
            proxies: proxy::TrustedProxies::default(),
            body_buffer: 64 * 1024,
            write_high_water: 64 * 1024,
            root_path: String::new(),
        }
    }
}

/// Python objects the engine needs on the hot path; set once by `start()`.
pub struct PyRefs {
    pub event_loop: Py<PyAny>,
    /// The ASGI application.
    pub app: Py<PyAny>,
    /// `runner(awaitable, send)`: the coroutine an asyncio Task runs when
    /// requests do not run as [`crate::task::RequestTask`]s.
    pub runner: Py<PyAny>,
    /// `report(exc)`: logs an app failure (None: returned without a
    /// complete response).
    pub report: Py<PyAny>,
    /// True: requests run as `RequestTask`s; false: as asyncio Tasks.
    pub task_driver: bool,
    pub enter_task: Py<PyAny>,
    pub leave_task: Py<PyAny>,
    pub task_name: Py<PyAny>,
    pub create_future: Py<PyAny>,
    /// Starts an app task when requests run as asyncio Tasks:
    /// `asyncio.Task` called with `task_kwargs` (`loop=`, `name=`), or
    /// `loop.create_task` (`name=`) when the loop has a task factory.
    pub spawn: Py<PyAny>,
    pub task_kwargs: Py<PyDict>,
    pub scope_template: Py<PyDict>,
    pub asgi_template: Py<PyDict>,
    /// An already-completed future: `send()` returns it when it need not wait.
    pub done: Py<PyAny>,
    pub access_log: Option<Py<PyAny>>,
    pub state: Option<Py<PyAny>>,
    pub root_path: Py<PyAny>,
}

/// Something a tokio task wants the Python side to act on.
pub enum Event {
    /// A request head was parsed: build the scope and start the app.
    Request(Arc<Conn>, RequestHead),
    /// A connection's body data, drain progress or disconnect changed:
    /// complete the app's waiting `receive()`/`send()` if any.
    Wake(Arc<Conn>),
}

pub struct Shared {
    pub cfg: EngineConfig,
    pub stats: Stats,
    pub date: DateCache,
    pub events: Mutex<Vec<Event>>,
    /// Runs the accept loop and the connection futures.
    pub exec: executor::Executor,
    pub to_wake: Mutex<Vec<Arc<Conn>>>,
    /// Connections with non-final response bytes to write at the end of the
    /// current loop iteration (coalesces several body messages sent without
    /// an await in between into one write).
    pub deferred: Mutex<Vec<Arc<Conn>>>,
    /// True while select() dispatches a batch: a response that ends then is
    /// written at the end of the batch (see asgi::Sender::flush_and_finish).
    pub in_dispatch: AtomicBool,
    pub shutting_down: AtomicBool,
    pub shutdown: Notify,
    pub in_flight: AtomicUsize,
    pub next_id: AtomicU64,
    pub py: OnceLock<PyRefs>,
    /// Open connections, so shutdown can reach the busy ones.
    pub conns: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Running request tasks, so shutdown can cancel them.
    pub tasks: Mutex<crate::task::TaskSlab>,
}

/// Locks a mutex, ignoring poisoning: every critical section here leaves the
/// data consistent even if a panic unwinds through it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(cfg: EngineConfig) -> Self {
        Self {
            cfg,
            stats: Stats::default(),
            date: DateCache::new(),
            events: Mutex::new(Vec::with_capacity(64)),
            exec: executor::Executor::new(),
            to_wake: Mutex::new(Vec::with_capacity(64)),
            deferred: Mutex::new(Vec::with_capacity(64)),
            in_dispatch: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            shutdown: Notify::new(),
            in_flight: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            py: OnceLock::new(),
            conns: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Default::default()),
        }
    }

    /// From a tokio task: hand an event to the Python side.
    pub fn push_event(&self, ev: Event) {
        lock(&self.events).push(ev);
    }

    /// From the Python side: ask the connection's task to look at its state.
    pub fn schedule(&self, conn: &Arc<Conn>) {
        lock(&self.to_wake).push(conn.clone());
    }

    /// Writes what `send()` deferred: at the end of a dispatch batch and of
    /// each loop iteration.
    pub fn flush_deferred(&self) {
        let list = std::mem::take(&mut *lock(&self.deferred));
        for conn in list {
            let mut st = lock(&conn.state);
            st.deferred = false;
            let failed = conn.write_now(&mut st).is_err();
            // A response that ended the usual way during the batch ends
            // quietly now if all its bytes left; otherwise (partial write,
            // error) its connection's task takes over, as for any other end.
            let mut wake_task = false;
            if std::mem::take(&mut st.quiet_pending) {
                if !failed && st.out.is_empty() && !st.write_pending && !self.is_shutting_down() {
                    st.end_quietly(self);
                } else {
                    wake_task = true;
                }
            }
            let waiting = st.recv_waiter.is_some() || st.send_waiter.is_some();
            drop(st);
            if wake_task {
                self.schedule(&conn);
            }
            if failed && waiting {
                self.push_event(Event::Wake(conn));
            }
        }
    }

    /// The Python objects set by `start()`.
    pub fn refs(&self) -> PyResult<&PyRefs> {
        self.py
            .get()
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("engine not started"))
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
            .load(std::sync::atomic::Ordering::Acquire)
    }
}
